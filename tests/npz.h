/* npz.h: test support for NumPy .npz archives (zip files of .npy members, stored or deflated),
 * used by the tests that compare against ../shared reference decodes (ref_pil.npz).
 * Members are inflated with the library's zlib_inflate and parsed with npy_parse. */
#ifndef VLM_TESTS_NPZ_H
#define VLM_TESTS_NPZ_H

#include "err.h"
#include "npy.h"

typedef struct npz_file npz_file; /* an opened archive: the whole file in memory */

/* Opens the archive at path and indexes its central directory. Returns NULL with e set. */
npz_file *npz_open(const char *path, vlm_error *e);
/* Reads member (its name with or without the ".npy" suffix) into *out (npy_free it).
 * Errors: VLM_EFORMAT (missing member, corrupt zip or npy, CRC-32 mismatch),
 * VLM_EUNSUPPORTED (compression other than stored/deflate, encryption), VLM_ENOMEM. */
int npz_get(const npz_file *z, const char *member, npy_array *out, vlm_error *e);
/* Number of members and the name of member i (0 <= i < count), for listing. */
size_t npz_count(const npz_file *z);
const char *npz_name(const npz_file *z, size_t i);
void npz_close(npz_file *z);

/* One-shot: npz_open + npz_get + npz_close. */
int npz_read(const char *path, const char *member, npy_array *out, vlm_error *e);

#endif
