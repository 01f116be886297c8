/* isa_x86.c: x86-64 CPU feature detection and table filling. Compiled for the baseline so it
 * runs on every x86-64 CPU; the fill functions live in files built with their ISA flags and are
 * only called after cpuid and xgetbv (the OS saves the wide registers) say the CPU has them. */
#if defined(__x86_64__)
#include <cpuid.h>
#include <string.h>

#include "kernels_isa.h"

void avx2_fill(kernel_table *t);
void avx2vnni_fill(kernel_table *t);
void avx2vnni_evex_fill(kernel_table *t);
double peak_int8_avx2vnni(long iters);
double peak_int8_avx2vnni_evex(long iters);
extern const int avx2vnni_vex_built;
void avx512_fill(kernel_table *t);
void gfni_fill(kernel_table *t);

static unsigned xcr0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

/* AVX2 + FMA + F16C, and the OS saves YMM state (XCR0 bits 1 and 2). */
static int cpu_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!(osxsave && avx && fma && f16c) || (xcr0() & 6) != 6 || __get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}

/* AVX-512 F, BW, VL and VNNI (cpuid leaf 7: EBX bits 16, 30, 31; ECX bit 11), and the OS
 * saves the opmask, upper-ZMM and high-ZMM state (XCR0 bits 5, 6, 7) besides SSE/AVX (1, 2).
 * Only asked after cpu_has_avx2, so leaf 7 exists. */
static int cpu_has_avx512(void)
{
    unsigned a, b, c, d;
    if ((xcr0() & 0xe6) != 0xe6)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    (void)a;
    (void)d;
    int f = (b >> 16) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    return f && bw && vl && vnni;
}

/* AVX-VNNI (cpuid leaf 7 sub-leaf 1, EAX bit 4; the VEX-encoded 256-bit vpdpbusd), usable
 * when this build has the VEX kernels (kernels/avx2vnni/vex.c); asked only after cpu_has_avx2
 * (the OS saves YMM state, leaf 7 exists). */
static int cpu_has_avxvnni(void)
{
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    if (a < 1 || !avx2vnni_vex_built)
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    (void)b;
    (void)c;
    (void)d;
    return (a >> 4) & 1;
}

/* GFNI (cpuid leaf 7, ECX bit 8); asked only after cpu_has_avx512. */
static int cpu_has_gfni(void)
{
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    (void)a;
    (void)b;
    (void)d;
    return (c >> 8) & 1;
}

void isa_fill(kernel_table *t, const char *force, int (*allowed)(const char *, const char *),
              char *available, size_t cap)
{
    if (cpu_has_avx2()) {
        isa_append(available, cap, "avx2");
        if (allowed(force, "avx2"))
            avx2_fill(t);
        /* The avx2vnni level in the encoding the CPU runs: VEX with AVX-VNNI, else EVEX on
         * AVX-512 VNNI CPUs (which then take the avx512 level above it). */
        int vex = cpu_has_avxvnni(), evex = cpu_has_avx512();
        if (vex || evex) {
            isa_append(available, cap, "avx2vnni");
            if (allowed(force, "avx2vnni"))
                (vex ? avx2vnni_fill : avx2vnni_evex_fill)(t);
        }
        if (evex) {
            isa_append(available, cap, "avx512");
            if (allowed(force, "avx512"))
                avx512_fill(t);
            if (cpu_has_gfni()) {
                isa_append(available, cap, "gfni");
                if (allowed(force, "gfni"))
                    gfni_fill(t);
            }
        }
    }
}

/* bench_kernels' int8 peak loop of the avx2vnni level, in the encoding isa_fill chooses
 * (int8 ops = iters * 12 * 64). */
double peak_int8_avx2vnni_level(long iters);
double peak_int8_avx2vnni_level(long iters)
{
    return cpu_has_avxvnni() ? peak_int8_avx2vnni(iters) : peak_int8_avx2vnni_evex(iters);
}
#endif
