/* npy.h: NumPy .npy files (format version 1.0/2.0/3.0, little-endian, C order): writing arrays
 * (vlm-run --logits-out, test references) and reading the golden arrays in tests, from a file
 * or from memory (members of .npz archives). */
#ifndef VLM_NPY_H
#define VLM_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Writes data (shape[0] x ... x shape[ndim-1] float32, C order) as a version 1.0 .npy file whose
 * data starts at a multiple of 64 bytes. ndim in 0..8 (0 = a scalar, shape may be NULL).
 * Errors: VLM_EARG (bad ndim, negative or overflowing shape), VLM_EIO. */
int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                  vlm_error *e);

/* Same for any dtype npy_read accepts ("<f4", "|u1", "<i8", ...); data holds the raw
 * little-endian elements. */
int npy_write(const char *path, const char *dtype, const void *data, int ndim,
              const int64_t *shape, vlm_error *e);

typedef struct npy_array {
    char dtype[8];      /* "<f4", "|u1", "<i8", "<i4", ... as in the header */
    int ndim;
    int64_t shape[8];   /* (ndim) */
    size_t numel;
    size_t elem_size;
    void *data;         /* (numel * elem_size) bytes, owned */
} npy_array;

/* Reads a whole .npy file. Accepted dtypes: <f4 <f8 <f2 <i8 <i4 <i2 |i1 <u8 <u4 <u2 |u1 |b1;
 * the header dict must hold exactly 'descr', 'fortran_order' (False) and 'shape' (at most 8
 * dims), and the file must hold exactly numel * elem_size data bytes after the header.
 * On error *out is zeroed (npy_free on it is harmless). Errors: VLM_EIO, VLM_EFORMAT (malformed,
 * truncated, size overflow), VLM_EUNSUPPORTED (Fortran order, big-endian/object/structured
 * dtypes, > 8 dims, version not 1-3), VLM_ERANGE (a dim above 2^63-1), VLM_ENOMEM. */
int npy_read(const char *path, npy_array *out, vlm_error *e);

/* Parses a whole .npy image buf[0, len) with the rules of npy_read; the data is copied, so buf
 * may be freed afterwards. name (may be NULL) is used in error messages. */
int npy_parse(const uint8_t *buf, size_t len, const char *name, npy_array *out, vlm_error *e);

/* Frees a->data and zeroes *a; a may be NULL. */
void npy_free(npy_array *a);

#endif
