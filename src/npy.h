/* npy.h: NumPy .npy files (format version 1.0/2.0, little-endian, C order): writing float32
 * arrays (vlm-run --logits-out) and reading the golden arrays in tests. */
#ifndef VLM_NPY_H
#define VLM_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                  vlm_error *e);

typedef struct npy_array {
    char dtype[8];      /* "<f4", "|u1", "<i8", "<i4", ... as in the header */
    int ndim;
    int64_t shape[8];   /* (ndim) */
    size_t numel;
    size_t elem_size;
    void *data;         /* (numel * elem_size) bytes, owned */
} npy_array;

/* Reads a whole .npy file; refuses Fortran order, big-endian and object dtypes. */
int npy_read(const char *path, npy_array *out, vlm_error *e);
void npy_free(npy_array *a);

#endif
