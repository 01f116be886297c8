/* golden.h: test support shared by the end-to-end tests: converting a fixture directory into
 * a temporary .vlm file, and comparing float arrays with the goldens' tolerance
 * |a - b| <= 1e-4 * max(1, max|b|). */
#ifndef VLM_TESTS_GOLDEN_H
#define VLM_TESTS_GOLDEN_H

#include <stddef.h>

#include "npy.h"

/* Converts tests/data/fixtures/<fixture> with the given quant types (WT_*; vision_quant -1 =
 * default) into a temporary file whose path is written to out (cap bytes). Returns 0 on
 * success, printing the error otherwise. */
int golden_convert(const char *fixture, int quant, int vision_quant, char *out, size_t cap);

/* Loads tests/data/fixtures/<fixture>/goldens/<name>.npy; returns 0 on success. */
int golden_load(const char *fixture, const char *name, npy_array *a);

/* Max |a-b| over n floats and the allowed bound; returns 1 if within tolerance. Prints a line
 * "  stage: max diff X (bound Y)". */
int golden_close(const char *stage, const float *got, const float *want, size_t n);

double cosine_similarity(const float *a, const float *b, size_t n);

#endif
