/* fuzz_source.h: the body shared by the checkpoint-reader fuzz targets. One input is loaded as
 * file `name` by `load`; it must load or fail with its code and a message naming the file, and
 * on success every tensor of up to 1M elements is converted to f32, which reads each element the
 * view can reach, so AddressSanitizer proves the extent checks. */
#ifndef VLM_FUZZ_SOURCE_H
#define VLM_FUZZ_SOURCE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "source_internal.h"

typedef int (*fuzz_loader)(src_set *s, const uint8_t *data, size_t size, const char *file, vlm_error *e);

static void fuzz_source_load(const uint8_t *data, size_t size, const char *file, fuzz_loader load)
{
    src_set *s = src_set_new();
    const char *name = s ? src_set_add_file(s, file, NULL, 0) : NULL;
    if (!name) {
        src_close(s);
        return;
    }
    vlm_error e = {0};
    int rc = load(s, data, size, name, &e);
    if (rc == 0)
        rc = src_set_finish(s, &e);
    if (rc != 0 && (e.code != rc || !strstr(e.msg, file)))
        __builtin_trap(); /* every error must be reported with its code and the file name */
    for (int i = 0; rc == 0 && i < src_count(s); i++) {
        const src_tensor *t = src_at(s, i);
        size_t n = src_numel(t);
        if (n > ((size_t)1 << 20))
            continue;
        float *out = malloc((n ? n : 1) * sizeof *out);
        if (out && src_read_f32(t, out, &e) != 0)
            __builtin_trap(); /* a loaded tensor must always be readable */
        free(out);
    }
    src_close(s);
}

#endif
