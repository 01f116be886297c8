/* isa_fill.c: CPU feature detection and the per-architecture table filling. Each ISA file
 * exports one fill function that sets only the slots it implements. This file is compiled
 * for the baseline so it runs on every CPU; the fill functions live in files built with
 * their ISA flags and are only called after detection says the CPU has the feature. */
#include <string.h>

#include "kernels_isa.h"

static void append(char *available, size_t cap, const char *level)
{
    size_t n = strlen(available);
    if (n + strlen(level) + 2 <= cap) {
        available[n] = ' ';
        strcpy(available + n + 1, level);
    }
}

#if defined(__x86_64__)
#include <cpuid.h>

void avx2_fill(kernel_table *t);

/* AVX2 + FMA + F16C, and the OS saves YMM state (XCR0 bits 1 and 2). */
static int cpu_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int osxsave = (c >> 27) & 1;
    int avx = (c >> 28) & 1;
    int fma = (c >> 12) & 1;
    int f16c = (c >> 29) & 1;
    if (!(osxsave && avx && fma && f16c))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6)
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}

void isa_fill(kernel_table *t, const char *force, int (*allowed)(const char *, const char *),
              char *available, size_t cap)
{
    if (cpu_has_avx2()) {
        append(available, cap, "avx2");
        if (allowed(force, "avx2"))
            avx2_fill(t);
    }
}

#else
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
