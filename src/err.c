/* err.c: formatting of vlm_error messages (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int vlm_fail(vlm_error *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

const char *vlm_strerror(int code)
{
    switch (code) {
    case VLM_OK: return "ok";
    case VLM_EIO: return "i/o error";
    case VLM_EFORMAT: return "format error";
    case VLM_ERANGE: return "value out of range";
    case VLM_ENOMEM: return "out of memory";
    case VLM_EUNSUPPORTED: return "unsupported";
    case VLM_EARG: return "bad argument";
    case VLM_ECANCELLED: return "cancelled";
    }
    return "unknown error";
}
