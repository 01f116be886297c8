/* err.h: the project's one error convention.
 * Every fallible function returns 0 on success or a negative VLM_E* code, and fills a
 * vlm_error whose message names the file, the object and the values involved.
 * Library code never prints and never exits; main programs print the message. */
#ifndef VLM_ERR_H
#define VLM_ERR_H

#include <stddef.h>

enum {
    VLM_OK = 0,
    VLM_EIO = -1,          /* cannot open, read, map or write a file */
    VLM_EFORMAT = -2,      /* malformed input bytes */
    VLM_ERANGE = -3,       /* a value outside the supported limits */
    VLM_ENOMEM = -4,       /* allocation failed or over the memory budget */
    VLM_EUNSUPPORTED = -5, /* valid input using a feature we do not implement */
    VLM_EARG = -6,         /* bad argument from the caller */
    VLM_ECANCELLED = -7,   /* the caller's callback asked to stop */
};

typedef struct vlm_error {
    int code;
    char msg[512];
} vlm_error;

/* Formats msg into e (if e is not NULL) and returns code, so callers can write
 * `return vlm_fail(e, VLM_EFORMAT, "%s: ...", path);`. */
int vlm_fail(vlm_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short English name of an error code ("format error", ...). */
const char *vlm_strerror(int code);

#endif
