/* err.h: the project's one error convention (codes and struct in the public vlm.h).
 * Every fallible function returns 0 on success or a negative VLM_E* code, and fills a
 * vlm_error whose message names the file, the object and the values involved.
 * Library code never prints and never exits; main programs print the message. */
#ifndef VLM_ERR_H
#define VLM_ERR_H

#include <stddef.h>

#include "vlm.h"

/* Formats msg into e (if e is not NULL) and returns code, so callers can write
 * `return vlm_fail(e, VLM_EFORMAT, "%s: ...", path);`. */
int vlm_fail(vlm_error *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct stat;

/* Opens path read-only for a reader that needs a regular file (what: "model file", "photo",
 * ...): a descriptor >= 0 with *st filled, or VLM_EIO (< 0) with e naming the path, what was
 * expected and the reason or what the path is instead (a directory, a FIFO, ...). The open is
 * non-blocking: a FIFO nobody writes to would otherwise block the caller for ever; on a
 * regular file the flag changes nothing. */
int open_regular(const char *path, const char *what, struct stat *st, vlm_error *e);

#endif
