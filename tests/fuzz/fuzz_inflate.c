/* fuzz_inflate.c: fuzz target for zlib_inflate (src/image/inflate.c) on its own, so mutations
 * reach every block type and tree check without passing PNG chunk CRCs. The first input byte
 * selects a raw deflate or a zlib stream and the output capacity (so the output limit path is
 * exercised too); the rest is the stream. Any input must succeed within the capacity or fail
 * with a message. */
#include <stdint.h>
#include <stdlib.h>

#include "decoders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int raw = data[0] & 1;
    size_t cap = (size_t)(data[0] >> 1) << 10; /* 0..127 KiB */
    uint8_t *out = malloc(cap ? cap : 1);
    if (!out)
        return 0;
    size_t n = 0;
    vlm_error e;
    e.msg[0] = '\0';
    int rc = zlib_inflate(data + 1, size - 1, raw, out, cap, &n, &e);
    if ((rc == 0 && n > cap) || (rc != 0 && e.msg[0] == '\0'))
        __builtin_trap();
    free(out);
    return 0;
}
