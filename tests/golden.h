/* golden.h: test support shared by the end-to-end tests: converting a fixture directory into
 * a temporary .vlm file, comparing float arrays with the goldens' tolerance
 * |a - b| <= 1e-4 * max(1, max|b|), and reading / patching .vlm images for the failure tests. */
#ifndef VLM_TESTS_GOLDEN_H
#define VLM_TESTS_GOLDEN_H

#include <stddef.h>

#include "npy.h"

/* Converts tests/data/fixtures/<fixture> with the given quant types (WT_*; vision_quant -1 =
 * default) into a temporary file whose path is written to out (cap bytes). Returns 0 on
 * success, printing the error otherwise. */
int golden_convert(const char *fixture, int quant, int vision_quant, char *out, size_t cap);

/* Writes to out (which may be path) the converted fixture at path with half as many query and
 * KV heads in its LLM, each twice as wide: the same tensors (n_heads * head_dim and
 * n_kv_heads * head_dim do not change), so a different but valid model. The tiny fixtures have
 * head_dim 16; this gives 32, which the q8 KV cache needs. Returns 0 on success, printing the
 * error otherwise. */
int golden_widen_heads(const char *path, const char *out);

/* Loads tests/data/fixtures/<fixture>/goldens/<name>.npy; returns 0 on success. */
int golden_load(const char *fixture, const char *name, npy_array *a);

/* Max |a-b| over n floats and the allowed bound; returns 1 if within tolerance. Prints a line
 * "  stage: max diff X (bound Y)". */
int golden_close(const char *stage, const float *got, const float *want, size_t n);
/* The same with |a - b| <= rel * max(1, max|b|). */
int golden_close_rel(const char *stage, const float *got, const float *want, size_t n, double rel);

double cosine_similarity(const float *a, const float *b, size_t n);

/* Reads a whole file into a malloc'd buffer of *n bytes; NULL on error. */
unsigned char *read_whole_file(const char *path, size_t *n);

/* Recomputes the header + directory CRC of a .vlm image buf[0:len] after a test edited it; a
 * tensor count whose directory would pass len leaves the CRC as it is (still wrong). */
void vlm_image_fix_crc(unsigned char *buf, size_t len);

#endif
