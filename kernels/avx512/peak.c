/* peak.c (avx512): the machine-limit loops of bench_kernels at this level: 512-bit FMA
 * throughput, VNNI int8 dot-product throughput (vpdpbusd) and streaming read bandwidth with
 * 64-byte loads. Only the benchmark calls them, after kernels_available() reported "avx512". */
#ifndef __AVX512VNNI__
#error "kernels/avx512 files must be built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif
#include <stddef.h>

#include <immintrin.h>

double peak_fma_avx512(long iters);
double peak_int8_avx512(long iters);
double read_sum_avx512(const void *buf, size_t bytes);

/* iters x 12 independent 16-lane FMAs: flops = iters * 12 * 32. */
double peak_fma_avx512(long iters)
{
    __m512 a[12];
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i * 1e-3f);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm512_fmadd_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

/* iters x 12 independent vpdpbusd on 64 byte pairs: int8 ops = iters * 12 * 128. */
double peak_int8_avx512(long iters)
{
    __m512i acc[12];
    for (int i = 0; i < 12; i++)
        acc[i] = _mm512_set1_epi32(i);
    const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-5);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            acc[i] = _mm512_dpbusd_epi32(acc[i], u, s);
    __m512i t = acc[0];
    for (int i = 1; i < 12; i++)
        t = _mm512_add_epi32(t, acc[i]);
    return (double)_mm512_reduce_add_epi32(t);
}

/* Reads bytes (a multiple of 512) with 8 streams of 64-byte loads; returns a checksum. */
double read_sum_avx512(const void *buf, size_t bytes)
{
    const __m512i *p = buf;
    __m512i s[8];
    for (int i = 0; i < 8; i++)
        s[i] = _mm512_setzero_si512();
    for (size_t i = 0; i < bytes / 64; i += 8)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            s[j] = _mm512_add_epi32(s[j], _mm512_loadu_si512(p + i + j));
    __m512i t = s[0];
    for (int i = 1; i < 8; i++)
        t = _mm512_add_epi32(t, s[i]);
    return (double)_mm512_reduce_add_epi32(t);
}
