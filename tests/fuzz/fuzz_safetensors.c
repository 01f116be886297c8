/* fuzz_safetensors.c: fuzz target for the safetensors reader (weights-tool/safetensors.c).
 * The checks are those of fuzz_source.h (the input is an exact-size buffer). */
#include "fuzz_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_source_load(data, size, "fuzz.safetensors", src_load_safetensors);
    return 0;
}
