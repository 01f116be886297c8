/* gemv_q.h (avx2; also included by kernels/avx512/gemm.c with GEMV_VNNI 1 for vpdpbusd block
 * dots, else GEMV_VNNI 0 for maddubs): the m = 1 path of gemm_q8/q4. Blocks go in groups of 8:
 * 8 exact int32 block dots reduced by an hadd tree to one vector (lane q = block q), converted
 * once, times the 8 scale products in one FMA. One element = over super-chunks of SC blocks in
 * order: an 8-lane accumulator over its groups, hsum8, summed in C; bias last. */
#ifndef VLM_GEMV_Q_H
#define VLM_GEMV_Q_H

#include <string.h>

#include "kernels.h"
#include "simd.h"

enum { SC = 256 }; /* blocks per super-chunk: the per-block activation data fits the stack */


/* One weight row at a time, with a software prefetch: measured on Zen 4, a single
 * sequential stream reads DRAM 2-3x faster than 2 or 4 interleaved rows (the hardware
 * prefetcher keeps up with one stream). The software prefetch runs 2 KB ahead, non-temporal (weights
 * are read once per token; see avx512/gemv_q4.h): with q8 on Zen 4 83-93% of the paired read
 * bandwidth against 78-99% with T0 128 bytes ahead (noisier); q4 here is compute-bound. */
enum { GEMV_NR = 1, PF = 2048 };

/* Lane q of the result = sum of the 8 lanes of p[q]. */
static inline __m256i tree8(const __m256i p[8])
{
    __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i h0 = _mm256_hadd_epi32(h01, h23), h1 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}

/* An unaligned little-endian u16 (the f16 scale of a block). */
static inline int ld16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* 8 f16 scales at p, p + stride, ... (the first ng; the rest 0), as f32. Built in a register:
 * a store/reload through memory would stall on store forwarding every group. */
static inline __m256 scales8(const unsigned char *p, size_t stride, int ng)
{
    __m128i t = _mm_setzero_si128();
    if (ng == 8) {
        t = _mm_insert_epi16(t, ld16(p), 0);
        t = _mm_insert_epi16(t, ld16(p + stride), 1);
        t = _mm_insert_epi16(t, ld16(p + 2 * stride), 2);
        t = _mm_insert_epi16(t, ld16(p + 3 * stride), 3);
        t = _mm_insert_epi16(t, ld16(p + 4 * stride), 4);
        t = _mm_insert_epi16(t, ld16(p + 5 * stride), 5);
        t = _mm_insert_epi16(t, ld16(p + 6 * stride), 6);
        t = _mm_insert_epi16(t, ld16(p + 7 * stride), 7);
    } else {
        uint16_t v[8] = {0};
        for (int q = 0; q < ng; q++)
            v[q] = (uint16_t)ld16(p + (size_t)q * stride);
        t = _mm_loadu_si128((const __m128i *)v);
    }
    return _mm256_cvtph_ps(t);
}

/* The exact int32 dot (8 lanes of 4 products each) of activation codes av with weight block
 * wb. VNNI: the weight side is unsigned (q8: w + 128; q4: the stored q + 8), the excess
 * (128 or 8) * sum(a) is subtracted per group by the caller. maddubs (AVX2): q8 uses |w| and a
 * with w's sign (no excess); q4 the stored nibbles, excess 8 * sum(a). */
static inline __m256i block_dot(int q4, __m256i av, const void *wb)
{
    const __m256i ones = _mm256_set1_epi16(1);
    if (q4) {
        const blk_q4 *b = wb;
        __m128i x = _mm_loadu_si128((const __m128i *)b->qs);
        __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0f));
#if GEMV_VNNI
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, av);
#else
        return _mm256_madd_epi16(_mm256_maddubs_epi16(wv, av), ones);
#endif
    }
    const blk_q8 *b = wb;
    __m256i wv = _mm256_loadu_si256((const __m256i *)b->qs);
#if GEMV_VNNI
    (void)ones;
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(wv, _mm256_set1_epi8((char)0x80)), av);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv)), ones);
#endif
}

/* Rows 0..nr-1 (nr <= 4) of w (row stride wrow bytes) against one activation row over blocks
 * [b0, b0 + nbc): adds the super-chunk sums to c[j] (first: sets them), bias on the last. ad,
 * ex: per-block activation scales and excess (index 0 = block b0). */
static inline __attribute__((always_inline)) void gemv_tile(int nr, int q4, int nbc, const blk_q8 *a,
                                                            const unsigned char *w, size_t wrow,
                                                            const float *ad, const int32_t *ex,
                                                            const float *bias, float *c, int first,
                                                            int last)
{
    size_t bsz = q4 ? sizeof(blk_q4) : sizeof(blk_q8);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int j = 0; j < nr; j++)
        acc[j] = _mm256_setzero_ps();
    for (int g = 0; g < nbc; g += 8) {
        int ng = nbc - g < 8 ? nbc - g : 8;
        __m256 da = ng == 8 ? _mm256_loadu_ps(ad + g) : _mm256_maskload_ps(ad + g, lane_mask(ng));
        __m256i xs = ng == 8 ? _mm256_loadu_si256((const __m256i *)(ex + g))
                             : _mm256_maskload_epi32((const int *)(ex + g), lane_mask(ng));
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            const unsigned char *wg = w + (size_t)j * wrow + (size_t)g * bsz;
            /* Prefetch this row PF bytes ahead (past the row end is harmless: a prefetch never
             * faults). */
            for (size_t o = 0; o < 8 * bsz; o += 64)
                _mm_prefetch((const char *)wg + PF + o, _MM_HINT_NTA);
            __m256i r;
            if (ng == 8) {
                /* The tree built as the dots come, so few registers are live. */
#define DOT(q) block_dot(q4, _mm256_loadu_si256((const __m256i *)a[g + (q)].qs), wg + (size_t)(q) * bsz)
                __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(DOT(0), DOT(1)), _mm256_hadd_epi32(DOT(2), DOT(3)));
                __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(DOT(4), DOT(5)), _mm256_hadd_epi32(DOT(6), DOT(7)));
#undef DOT
                r = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
            } else {
                __m256i p[8];
                for (int q = 0; q < 8; q++)
                    p[q] = q < ng ? block_dot(q4, _mm256_loadu_si256((const __m256i *)a[g + q].qs), wg + (size_t)q * bsz)
                                  : _mm256_setzero_si256();
                r = tree8(p);
            }
            r = _mm256_sub_epi32(r, xs);
            __m256 s = _mm256_mul_ps(da, scales8(wg, bsz, ng));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r), s, acc[j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < nr; j++) {
        float s = hsum8(acc[j]);
        if (!first)
            s = c[j] + s;
        if (last && bias)
            s = s + bias[j];
        c[j] = s;
    }
}

/* gemm_q8/q4 for m == 1, rows [n0, n1): weights streamed once, GEMV_NR rows at a time. */
static inline __attribute__((always_inline)) void gemv_q(int q4, int n0, int n1, int k, const blk_q8 *a,
                                                         const void *w, const float *bias, float *c)
{
    int nb = k / QK;
    size_t bsz = q4 ? sizeof(blk_q4) : sizeof(blk_q8);
    size_t wrow = (size_t)nb * bsz;
    float ad[SC];
    int32_t ex[SC];
    for (int b0 = 0; b0 < nb; b0 += SC) {
        int nbc = nb - b0 < SC ? nb - b0 : SC;
        /* The excess the unsigned weight operand adds: (128 or 8) * sum of the block's codes. */
        int unit = GEMV_VNNI ? (q4 ? 8 : 128) : (q4 ? 8 : 0);
        for (int q = 0; q < nbc; q++) {
            const blk_q8 *ab = a + b0 + q;
            int s = 0;
            for (int e = 0; e < QK; e++)
                s += ab->qs[e];
            ad[q] = h2f(ab->d);
            ex[q] = unit * s;
        }
        int first = b0 == 0, last = b0 + nbc == nb;
        const unsigned char *wb = (const unsigned char *)w + (size_t)b0 * bsz;
        int j = n0;
        for (; j + GEMV_NR <= n1; j += GEMV_NR)
            gemv_tile(GEMV_NR, q4, nbc, a + b0, wb + (size_t)j * wrow, wrow, ad, ex, bias ? bias + j : NULL, c + j,
                      first, last);
        for (; j < n1; j++)
            gemv_tile(1, q4, nbc, a + b0, wb + (size_t)j * wrow, wrow, ad, ex, bias ? bias + j : NULL, c + j,
                      first, last);
    }
}

#endif
