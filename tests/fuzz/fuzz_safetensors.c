/* fuzz_safetensors.c: fuzz target for the safetensors reader (weights-tool/safetensors.c).
 * Any input must load or fail with a message naming the file; on success every tensor of
 * up to 1M elements is converted to f32, which reads each element the view can reach, so
 * AddressSanitizer proves the extent checks (the input is an exact-size buffer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "source_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    src_set *s = src_set_new();
    const char *name = s ? src_set_add_file(s, "fuzz.safetensors", NULL, 0) : NULL;
    if (!name) {
        src_close(s);
        return 0;
    }
    vlm_error e = {0};
    int rc = src_load_safetensors(s, data, size, name, &e);
    if (rc == 0)
        rc = src_set_finish(s, &e);
    if (rc != 0 && (e.code != rc || !strstr(e.msg, "fuzz.safetensors")))
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
    return 0;
}
