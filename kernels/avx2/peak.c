/* peak.c (avx2): the machine-limit loops of bench_kernels at this level: FMA throughput, int8
 * dot-product throughput (maddubs + madd + add, the sequence gemm_q8/q4 use) and streaming read
 * bandwidth. Not in the kernel table: only the benchmark calls them, after kernels_available()
 * reported "avx2". */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <stddef.h>
#include <stdint.h>

#include "simd.h"

double peak_fma_avx2(long iters);
double peak_int8_avx2(long iters);
double read_sum_avx2(const void *buf, size_t bytes);

/* iters x 10 independent 8-lane FMAs (enough chains to cover latency x pipes); returns a value
 * derived from the result so the loop cannot be removed. Flops = iters * 10 * 16. */
double peak_fma_avx2(long iters)
{
    __m256 a[10];
    for (int i = 0; i < 10; i++)
        a[i] = _mm256_set1_ps((float)i * 1e-3f);
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 10
        for (int i = 0; i < 10; i++)
            a[i] = _mm256_fmadd_ps(a[i], x, y);
    __m256 s = a[0];
    for (int i = 1; i < 10; i++)
        s = _mm256_add_ps(s, a[i]);
    return hsum8(s);
}

/* iters x 12 independent chains of (maddubs, madd, add) on 32 byte pairs, each step's bytes
 * taken from its own accumulator so nothing can be hoisted: 32 MACs per step, so
 * int8 ops = iters * 12 * 64. */
double peak_int8_avx2(long iters)
{
    __m256i acc[12];
    for (int i = 0; i < 12; i++)
        acc[i] = _mm256_set1_epi32(i);
    const __m256i s = _mm256_set1_epi8(-5), ones = _mm256_set1_epi16(1);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(acc[i], s), ones));
    __m256i t = acc[0];
    for (int i = 1; i < 12; i++)
        t = _mm256_add_epi32(t, acc[i]);
    return (double)_mm256_extract_epi32(t, 0);
}

/* Reads bytes (a multiple of 256) with 8 streams of 32-byte loads; returns a checksum. */
double read_sum_avx2(const void *buf, size_t bytes)
{
    const __m256i *p = buf;
    __m256i s[8];
    for (int i = 0; i < 8; i++)
        s[i] = _mm256_setzero_si256();
    for (size_t i = 0; i < bytes / 32; i += 8)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            s[j] = _mm256_add_epi32(s[j], _mm256_loadu_si256(p + i + j));
    __m256i t = s[0];
    for (int i = 1; i < 8; i++)
        t = _mm256_add_epi32(t, s[i]);
    return (double)_mm256_extract_epi32(t, 0);
}
