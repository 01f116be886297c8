/* fuzz_npy.c: fuzz target for the .npy parser (src/npy.c). Any input must either parse or fail
 * with a message; on success the announced size must match the input exactly (the data is all
 * that follows the header), the element size must match the dtype, and every data byte is read
 * so that a short allocation shows up under ASan. */
#include <stdint.h>
#include <string.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_array a;
    vlm_error e = {0};
    int rc = npy_parse(data, size, "fuzz.npy", &a, &e);
    if (rc != 0) {
        if (e.msg[0] == 0 || a.data != NULL)
            __builtin_trap();
        return 0;
    }
    if (a.numel * a.elem_size > size || a.ndim < 0 || a.ndim > 8 || a.elem_size == 0 ||
        a.elem_size > 8 || memcmp(data + size - a.numel * a.elem_size, a.data,
                                  a.numel * a.elem_size) != 0)
        __builtin_trap();
    size_t numel = 1;
    for (int d = 0; d < a.ndim; d++)
        numel *= (size_t)a.shape[d];
    if (numel != a.numel)
        __builtin_trap();
    npy_free(&a);
    return 0;
}
