/* fuzz_jpeg.c: fuzz target for the JPEG decoder (src/image/jpeg.c) and EXIF orientation.
 * Any input must decode or fail with a message, within small pixel/memory limits so that the
 * fuzzer explores structure rather than huge allocations; a decoded image is touched in full
 * and put through its EXIF orientation transform. The input is also parsed as a TIFF block. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    image_limits lim = {1u << 20, 64u << 20};
    vlm_image img;
    vlm_error e;
    int orientation = 0;
    int rc = jpeg_decode(data, size, "fuzz.jpg", &lim, &img, &orientation, &e);
    if (rc != 0) {
        if (img.rgb != NULL || e.msg[0] == '\0')
            __builtin_trap();
    } else {
        if (img.width <= 0 || img.height <= 0 || (uint64_t)img.width * img.height > lim.max_pixels)
            __builtin_trap();
        if (orientation < 1 || orientation > 8)
            __builtin_trap();
        size_t n = (size_t)img.width * img.height * 3;
        unsigned sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += img.rgb[i];
        int w = img.width, h = img.height;
        if (image_apply_orientation(&img, orientation, &e) == 0 && orientation >= 5 &&
            (img.width != h || img.height != w))
            __builtin_trap();
        free(img.rgb);
        (void)sum;
    }
    int o = exif_orientation(data, size);
    if (o < 1 || o > 8)
        __builtin_trap();
    return 0;
}
