/* wwrite.h: writes .vlm weight files (format: src/wfile.h). The tensor count is fixed up front
 * so the directory can sit before the data; tensors are streamed to disk one by one, so a
 * conversion never holds more than one tensor in memory. */
#ifndef VLM_WWRITE_H
#define VLM_WWRITE_H

#include <stdint.h>

#include "err.h"
#include "wfile.h"

typedef struct wwriter wwriter;

int ww_begin(const char *path, const wf_config *cfg, uint32_t n_tensors, wwriter **out, vlm_error *e);
/* Appends one tensor; nbytes must equal the size of dims for type. */
int ww_add(wwriter *w, const char *name, uint32_t type, uint32_t ndim, const uint32_t *dims,
           const void *data, uint64_t nbytes, vlm_error *e);
/* Writes the header and directory (with CRCs) and closes; fails if fewer tensors were added
 * than announced. */
int ww_finish(wwriter *w, vlm_error *e);
/* Closes and deletes a partial file after an error. */
void ww_abort(wwriter *w);

#endif
