/* fuzz_pnm.c: fuzz target for the PNM decoder (src/image/pnm.c): any input must decode
 * within small limits or fail with a message and no output. */
#include <stdint.h>
#include <stdlib.h>

#include "decoders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    image_limits lim = {1u << 20, 32u << 20};
    vlm_image img;
    vlm_error e;
    e.msg[0] = '\0';
    int rc = pnm_decode(data, size, "fuzz.pnm", &lim, &img, &e);
    if (rc == 0) {
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
    return 0;
}
