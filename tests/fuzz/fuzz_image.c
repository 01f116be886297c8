/* fuzz_image.c: fuzz target for image_decode_buffer (src/image/image.c): format detection and
 * every decoder behind it (JPEG, PNG, PNM) with small limits and EXIF orientation applied.
 * Any input must decode or fail with a message, leaving *out zeroed on failure. */
#include <stdint.h>
#include <stdlib.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    image_limits lim = {1u << 20, 32u << 20};
    vlm_image img;
    vlm_error e;
    e.msg[0] = '\0';
    int rc = image_decode_buffer(data, size, "fuzz.img", IMAGE_EXIF_APPLY, &lim, &img, &e);
    if (rc == 0) {
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * (size_t)img.height * 3; i++)
            sum += img.rgb[i];
        if (img.width <= 0 || img.height <= 0 || (uint64_t)img.width * img.height > lim.max_pixels)
            __builtin_trap();
        (void)sum;
    } else if (img.rgb != NULL || img.width || img.height || e.msg[0] == '\0') {
        __builtin_trap();
    }
    image_free(&img);
    return 0;
}
