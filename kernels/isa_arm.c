/* isa_arm.c: aarch64 CPU feature detection (getauxval HWCAP bits on Linux) and table filling.
 * Compiled for Armv8.0 so it runs on every aarch64 CPU; the NEON baseline is always present.
 * The dot level's fill function lives in a file built with +dotprod and is only called after
 * the kernel reports FEAT_DotProd (HWCAP_ASIMDDP). */
#if defined(__aarch64__)
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "kernels_isa.h"

void neon_fill(kernel_table *t);
void dot_fill(kernel_table *t);

/* The HWCAP bits of the Linux arm64 ABI, for C libraries whose headers predate them. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

/* Feature bits: 1 = Advanced SIMD, 2 = int8 dot product. Without Linux there is no HWCAP;
 * then only what the compiler was told the baseline has is trusted. */
static unsigned cpu_features(void)
{
    unsigned f = 0;
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    if (hw & HWCAP_ASIMD)
        f |= 1;
    if ((f & 1) && (hw & HWCAP_ASIMDDP))
        f |= 2;
#else
#if defined(__ARM_NEON)
    f |= 1;
#endif
#if defined(__ARM_FEATURE_DOTPROD)
    f |= 2;
#endif
#endif
    return f;
}

void isa_fill(kernel_table *t, const char *force, int (*allowed)(const char *, const char *),
              char *available, size_t cap)
{
    unsigned f = cpu_features();
    if (f & 1) {
        isa_append(available, cap, "neon");
        if (allowed(force, "neon"))
            neon_fill(t);
    }
    if (f & 2) {
        isa_append(available, cap, "dot");
        if (allowed(force, "dot"))
            dot_fill(t);
    }
}
#endif
