/* read_loop.h: the streaming read both benchmarks take as the machine's read bandwidth
 * (bench_kernels' limit, bench_e2e's in-place roofline), so the two figures mean the same. The
 * x86 loops live in the library (kernels/avx2/peak.c, kernels/avx512/peak.c). */
#ifndef VLM_BENCH_READ_LOOP_H
#define VLM_BENCH_READ_LOOP_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
double read_sum_avx2(const void *buf, size_t bytes);
double read_sum_avx512(const void *buf, size_t bytes);
#endif

/* Reads bytes (a multiple of 256) at buf with the widest loads of the kernel level ("gfni" is
 * the AVX-512 level plus one kernel, "avx2vnni" the AVX2 level plus two); returns a checksum so
 * the reads cannot be removed. */
static inline double read_bytes(const char *level, const void *buf, size_t bytes)
{
#if defined(__x86_64__)
    if (!strcmp(level, "avx512") || !strcmp(level, "gfni"))
        return read_sum_avx512(buf, bytes);
    if (!strcmp(level, "avx2") || !strcmp(level, "avx2vnni"))
        return read_sum_avx2(buf, bytes);
#else
    (void)level;
#endif
    const unsigned char *p = buf;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 32 <= bytes; i += 32) {
        uint64_t v[4];
        memcpy(v, p + i, sizeof v);
        s0 += v[0];
        s1 += v[1];
        s2 += v[2];
        s3 += v[3];
    }
    return (double)(s0 + s1 + s2 + s3);
}

#endif
