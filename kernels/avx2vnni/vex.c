/* vex.c (avx2vnni): the avx2vnni level as it runs on CPUs with AVX-VNNI (Alder Lake and later
 * Intel cores, Zen 5): the AVX2 level with the q8/q4 products' dots done by 256-bit vpdpbusd
 * (gemm_q.h), VEX-encoded. Built with -mavxvnni besides the AVX2 flags, when the compiler
 * knows it (GCC >= 11, clang >= 12); otherwise this file is empty and avx2vnni_vex_built is 0,
 * so only AVX-512 CPUs get the level (evex.c). evex.c is the same source in the EVEX encoding:
 * it is what the tests run on a CPU without AVX-VNNI. */
#ifndef __AVX2__
#error "kernels/avx2vnni files must be built with the AVX2 flags"
#endif
#include "kernels.h"

extern const int avx2vnni_vex_built;

#if defined(__AVXVNNI__)
const int avx2vnni_vex_built = 1;
#define GEMM_Q_VNNI 1
#define GEMM_Q_LEVEL avx2vnni
#include "../avx2/gemm_q.h"
#else
const int avx2vnni_vex_built = 0;
void avx2vnni_fill(kernel_table *t);
double peak_int8_avx2vnni(long iters);
void avx2vnni_fill(kernel_table *t) { (void)t; }
double peak_int8_avx2vnni(long iters) { return (double)iters * 0; }
#endif
