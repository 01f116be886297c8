/* fuzz_png.c: fuzz target for the PNG decoder and its inflate (src/image/png.c, inflate.c).
 * A fuzzer cannot forge CRC-32s, so when the input's last byte is odd the target first
 * rewrites every chunk CRC to the correct value, letting mutations reach IHDR/PLTE/IDAT
 * parsing, inflate and unfiltering; even inputs exercise the CRC checks themselves. Any input
 * must decode within small limits or fail with a message and no output. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"

static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* Rewrites the CRC of every complete chunk of the PNG in buf[0:len]. */
static void fix_crcs(uint8_t *buf, size_t len)
{
    size_t pos = 8;
    while (len >= pos && len - pos >= 12) {
        uint32_t clen = (uint32_t)buf[pos] << 24 | (uint32_t)buf[pos + 1] << 16 |
                        (uint32_t)buf[pos + 2] << 8 | buf[pos + 3];
        if (clen > len - pos - 12)
            return;
        uint32_t c = crc32_bytes(buf + pos + 4, (size_t)clen + 4);
        uint8_t *q = buf + pos + 8 + clen;
        q[0] = (uint8_t)(c >> 24), q[1] = (uint8_t)(c >> 16), q[2] = (uint8_t)(c >> 8);
        q[3] = (uint8_t)c;
        pos += 12 + (size_t)clen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (size && (data[size - 1] & 1))
        fix_crcs(buf, size);
    image_limits lim = {1u << 20, 32u << 20};
    vlm_image img;
    vlm_error e;
    e.msg[0] = '\0';
    int rc = png_decode(buf, size, "fuzz.png", &lim, &img, &e);
    if (rc == 0) {
        /* Touch every output byte so ASan checks the whole buffer. */
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * (size_t)img.height * 3; i++)
            sum += img.rgb[i];
        if (img.width <= 0 || img.height <= 0 || (uint64_t)img.width * img.height > lim.max_pixels)
            __builtin_trap();
        (void)sum;
        free(img.rgb);
    } else if (img.rgb != NULL || e.msg[0] == '\0') {
        __builtin_trap();
    }
    free(buf);
    return 0;
}
