/* gemm.c (avx512): the AVX-512 F/BW/VL + VNNI matrix products. f32/f16: 6x4 tiles of 16-lane
 * FMA accumulators over k-chunks of KC (chunk sums added in C, bias last). q8/q4: vpdpbusd on two
 * blocks per zmm, the weight made the unsigned operand (q8: w ^ 0x80 = w + 128; q4: the stored
 * q + 8) and the excess 128 or 8 * sum(a) subtracted exactly in int32; m = 1 goes through
 * gemv_q.h. Every element runs the same sequence in every tile: ranges never change results. */
#ifndef __AVX512VNNI__
#error "kernels/avx512 files must be built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif
#include "../avx2/simd.h"

#define GEMV_VNNI 1
#include "../avx2/gemv_q.h"
#include "kernels.h"

void gemm_f32_avx512(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                     const float *bias, float *c, size_t ldc);
void gemm_f16_avx512(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                     const float *bias, float *c, size_t ldc);
void gemm_q8_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                    const float *bias, float *c, size_t ldc);
void gemm_q4_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q4 *w,
                    const float *bias, float *c, size_t ldc);

/* 16 lanes reduced in a fixed order: the two halves added, then hsum8. */
static inline float hsum16(__m512 v)
{
    /* (64-bit lane extract: the 32-bit one needs AVX512DQ, which this level does not assume) */
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}

/* ---------------------------------------------------------------------------------------- */
/* f32 / f16                                                                                 */

enum { KC = 1024 }; /* k-chunk: multiple of 16; long enough that the reductions after it cost little */

/* 16 weights of a row at off (f16 converted exactly), lanes outside mk zero and not read. */
static inline __m512 wload16(int f16, const void *w, size_t off, __mmask16 mk)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + off));
    return _mm512_maskz_loadu_ps(mk, (const float *)w + off);
}

/* One tile: mr (<= 6) tokens x nr (<= 4) weight rows over columns [k0, k1); first/last as in
 * the AVX2 version. Masked loads never touch memory past k1. */
static inline __attribute__((always_inline)) void tile_f(int mr, int nr, int f16, int k, int k0, int k1, const float *a,
                          size_t lda, const void *w, const float *bias, float *c, size_t ldc,
                          int first, int last)
{
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm512_setzero_ps();
    for (int kk = k0; kk < k1; kk += 16) {
        __mmask16 mk = k1 - kk >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k1 - kk)) - 1);
        __m512 wv[4] = {_mm512_setzero_ps()}; /* set below for j < nr */
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            wv[j] = wload16(f16, w, (size_t)j * k + kk, mk);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m512 av = _mm512_maskz_loadu_ps(mk, a + (size_t)i * lda + kk);
#pragma GCC unroll 4
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm512_fmadd_ps(av, wv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            float *cij = c + (size_t)i * ldc + j;
            float s = hsum16(acc[i][j]);
            if (!first)
                s = *cij + s;
            if (last && bias)
                s = s + bias[j];
            *cij = s;
        }
}

#define TILE_F(MR, NR) tile_f(MR, NR, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last)

/* Contract of gemm_f32/f16_avx512 (below); f16 selects the weight type. Tokens six at a time,
 * weight rows four at a time (then one); m = 1 streams each row alone through its chunks. */
static inline __attribute__((always_inline)) void gemm_f(int f16, int m, int n0, int n1, int k, const float *a, size_t lda,
                          const void *w, const float *bias, float *c, size_t ldc)
{
    if (m == 1) {
        /* Decode: each row runs through all its k-chunks before the next, so the weights
         * stream as one sequential read (the hardware prefetcher keeps up with one stream, not
         * with several); same arithmetic as below. */
        const size_t es = f16 ? 2 : 4;
        for (int j = n0; j < n1;) {
            int nr = 1;
            for (int k0 = 0;; k0 += KC) {
                int k1 = k0 + KC < k ? k0 + KC : k;
                const void *wj = (const char *)w + (size_t)j * k * es;
                const float *bj = bias ? bias + j : NULL;
                tile_f(1, 1, f16, k, k0, k1, a, lda, wj, bj, c + j, ldc, k0 == 0, k1 == k);
                if (k1 >= k)
                    break;
            }
            j += nr;
        }
        return;
    }
    const int NC = f16 ? 48 : 24; /* NC x KC weights stay in L1 */
    size_t esz = f16 ? 2 : 4;
    const char *wb = w;
    for (int k0 = 0;; k0 += KC) {
        int k1 = k0 + KC < k ? k0 + KC : k;
        int first = k0 == 0, last = k1 == k;
        for (int jc = n0; jc < n1; jc += NC) {
            int je = jc + NC < n1 ? jc + NC : n1;
            for (int i = 0; i < m; i += 6) {
                int mr = m - i < 6 ? m - i : 6;
                const float *ai = a + (size_t)i * lda;
                float *ci = c + (size_t)i * ldc;
                int j = jc;
                for (; j < je; j += 4) {
                    const void *wj = wb + (size_t)j * k * esz;
                    const float *bj = bias ? bias + j : NULL;
                    if (je - j >= 4) {
                        switch (mr) {
                        case 6: TILE_F(6, 4); break;
                        case 5: TILE_F(5, 4); break;
                        case 4: TILE_F(4, 4); break;
                        case 3: TILE_F(3, 4); break;
                        case 2: TILE_F(2, 4); break;
                        default: TILE_F(1, 4); break;
                        }
                    } else {
                        for (; j < je; j++) {
                            wj = wb + (size_t)j * k * esz;
                            bj = bias ? bias + j : NULL;
                            switch (mr) {
                            case 6: TILE_F(6, 1); break;
                            case 5: TILE_F(5, 1); break;
                            case 4: TILE_F(4, 1); break;
                            case 3: TILE_F(3, 1); break;
                            case 2: TILE_F(2, 1); break;
                            default: TILE_F(1, 1); break;
                            }
                        }
                    }
                }
            }
        }
        if (k1 >= k)
            break;
    }
}

/* Contract: kernels.h gemm_f32; any k >= 1, any m and range, no alignment, no over-read. */
void gemm_f32_avx512(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                     const float *bias, float *c, size_t ldc)
{
    gemm_f(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_f16; as gemm_f32_avx512 with weights converted exactly. */
void gemm_f16_avx512(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                     const float *bias, float *c, size_t ldc)
{
    gemm_f(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* ---------------------------------------------------------------------------------------- */
/* q8 / q4 with VNNI                                                                         */

/* Codes of blocks b and b + 1 in the low and high halves (hi == NULL: an odd last block, the
 * high half zero). Reads exactly the 32 code bytes of each block. */
static inline __m512i load2_q8(const blk_q8 *lo, const blk_q8 *hi)
{
    __m256i l = _mm256_loadu_si256((const __m256i *)lo->qs);
    __m256i h = hi ? _mm256_loadu_si256((const __m256i *)hi->qs) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(l), h, 1);
}

/* q4: the unsigned nibbles (q + 8) of two blocks in element order. */
static inline __m256i q4_codes(const blk_q4 *b)
{
    __m128i x = _mm_loadu_si128((const __m128i *)b->qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0f));
}

/* q4 codes of blocks b, b + 1 in the two halves (hi == NULL: high half zero). */
static inline __m512i load2_q4(const blk_q4 *lo, const blk_q4 *hi)
{
    __m256i h = hi ? q4_codes(hi) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(q4_codes(lo)), h, 1);
}

/* Scales of blocks b, b + 1 broadcast over the two halves (0 for a missing high block). */
static inline __m512 scale2(uint16_t lo, const uint16_t *hi)
{
    __m256 l = _mm256_set1_ps(h2f(lo));
    __m256 h = _mm256_set1_ps(hi ? h2f(*hi) : 0.0f);
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(l)), _mm256_castps_pd(h), 1));
}

/* One tile: mr (<= 4) tokens x nr (<= 4) weight rows, all nb blocks, two at a time. For q8 the
 * weights become unsigned by flipping the sign bit (w + 128); the activations are the signed
 * operand. Exact: |sum| per lane <= 4 * 255 * 127. */
static inline __attribute__((always_inline)) void tile_q(int mr, int nr, int q4, int nb, const blk_q8 *a, size_t lda,
                          const void *w, const float *bias, float *c, size_t ldc)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm512_setzero_ps();
    const blk_q8 *w8 = w;
    const blk_q4 *w4 = w;
    const __m512i bias_u8 = _mm512_set1_epi8(q4 ? 8 : (char)0x80);
    for (int b = 0; b < nb; b += 2) {
        int two = b + 1 < nb;
        __m512i av[4] = {_mm512_setzero_si512()}, corr[4] = {av[0]};
        __m512 ad[4] = {_mm512_setzero_ps()};
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            const blk_q8 *ab = a + (size_t)i * lda + b;
            av[i] = load2_q8(ab, two ? ab + 1 : NULL);
            ad[i] = scale2(ab->d, two ? &ab[1].d : NULL);
            corr[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias_u8, av[i]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            __m512i wv;
            __m512 wd;
            if (q4) {
                const blk_q4 *wb = w4 + (size_t)j * nb + b;
                wv = load2_q4(wb, two ? wb + 1 : NULL);
                wd = scale2(wb->d, two ? &wb[1].d : NULL);
            } else {
                const blk_q8 *wb = w8 + (size_t)j * nb + b;
                wv = _mm512_xor_si512(load2_q8(wb, two ? wb + 1 : NULL), _mm512_set1_epi8((char)0x80));
                wd = scale2(wb->d, two ? &wb[1].d : NULL);
            }
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++) {
                __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, av[i]), corr[i]);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(ad[i], wd), acc[i][j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            float s = hsum16(acc[i][j]);
            c[(size_t)i * ldc + j] = bias ? s + bias[j] : s;
        }
}

#define TILE_Q(MR, NR) tile_q(MR, NR, q4, nb, ai, lda, wj, bj, ci + j, ldc)

/* Tokens four at a time, weight rows four at a time (m = 1: gemv_q.h), in chunks
 * of NC rows kept in L2 while all tokens pass. */
static inline __attribute__((always_inline)) void gemm_q(int q4, int m, int n0, int n1, int k, const blk_q8 *a, size_t lda,
                          const void *w, const float *bias, float *c, size_t ldc)
{
    enum { NC = 64 };
    if (m == 1) {
        /* Decode: a separate arithmetic (see gemv_q.h), chosen by m, which every thread of
         * one call shares, so splits of [n0, n1) still agree bit for bit. */
        gemv_q(q4, n0, n1, k, a, w, bias, c);
        return;
    }
    int nb = k / QK;
    size_t wrow = (size_t)nb * (q4 ? sizeof(blk_q4) : sizeof(blk_q8));
    const char *wc = w;
    for (int jc = n0; jc < n1; jc += NC) {
        int je = jc + NC < n1 ? jc + NC : n1;
        for (int i = 0; i < m; i += 4) {
            int mr = m - i < 4 ? m - i : 4;
            const blk_q8 *ai = a + (size_t)i * lda;
            float *ci = c + (size_t)i * ldc;
            int j = jc;
            for (; j + 4 <= je; j += 4) {
                const void *wj = wc + (size_t)j * wrow;
                const float *bj = bias ? bias + j : NULL;
                switch (mr) {
                case 4: TILE_Q(4, 4); break;
                case 3: TILE_Q(3, 4); break;
                case 2: TILE_Q(2, 4); break;
                default: TILE_Q(1, 4); break;
                }
            }
            for (; j < je; j++) {
                const void *wj = wc + (size_t)j * wrow;
                const float *bj = bias ? bias + j : NULL;
                switch (mr) {
                case 4: TILE_Q(4, 1); break;
                case 3: TILE_Q(3, 1); break;
                case 2: TILE_Q(2, 1); break;
                default: TILE_Q(1, 1); break;
                }
            }
        }
    }
}

/* Contract: kernels.h gemm_q8; k % 32 == 0, any int8 codes on both sides (the activation is
 * the signed operand of vpdpbusd); any m and range, no alignment. */
void gemm_q8_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                    const float *bias, float *c, size_t ldc)
{
    gemm_q(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q4; k % 32 == 0; any m and range, no alignment. */
void gemm_q4_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q4 *w,
                    const float *bias, float *c, size_t ldc)
{
    gemm_q(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}
