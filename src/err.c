/* err.c: formatting of vlm_error messages, and the checked open of every file reader (see
 * err.h). */
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int open_regular(const char *path, const char *what, struct stat *st, vlm_error *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return vlm_fail(e, VLM_EIO, "%s: cannot open the %s: %s", path, what, strerror(errno));
    if (fstat(fd, st) != 0) {
        int err = errno;
        close(fd);
        return vlm_fail(e, VLM_EIO, "%s: cannot stat the %s: %s", path, what, strerror(err));
    }
    if (!S_ISREG(st->st_mode)) {
        mode_t m = st->st_mode;
        close(fd);
        return vlm_fail(e, VLM_EIO, "%s: the %s is not a regular file but a %s", path, what,
                        S_ISDIR(m)    ? "directory"
                        : S_ISFIFO(m) ? "FIFO"
                        : S_ISCHR(m)  ? "character device"
                        : S_ISBLK(m)  ? "block device"
                        : S_ISSOCK(m) ? "socket"
                                      : "special file");
    }
    return fd;
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
