/* gemm_q.c (avx2): q8 activations x q8/q4 weights (m = 1: gemv_q.h), and quant_q8.
 * The integer dot product of one 32-element block is done with maddubs (u8 x s8 -> s16 pairs)
 * and madd (-> 8 int32 lanes), exact; each block then adds cvt(lanes) * (da * dw) to an 8-lane
 * f32 accumulator, reduced by hsum8 at the end. Register tiles of MR tokens x NR weight rows
 * reuse each loaded block; every output element runs the same instruction sequence whatever
 * tile or range it falls in, so thread splits never change a result. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <math.h>
#include <string.h>

#include "kernels_avx2.h"
#include "simd.h"

#define GEMV_VNNI 0
#include "gemv_q.h"
#include "util.h"


/* The 32 nibbles of a q4 block as unsigned bytes 0..15 in element order (low nibbles are
 * elements 0..15, high nibbles 16..31). Reads exactly the 16 code bytes. */
static inline __m256i q4_codes(const blk_q4 *b)
{
    __m128i x = _mm_loadu_si128((const __m128i *)b->qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* One output tile: rows i of a (mr <= 2 tokens) x weight rows j (nr <= 4), all nb blocks.
 * q4 != 0: w is blk_q4 and the unsigned codes (q + 8) are multiplied directly, the 8 * sum(a)
 * per lane (corr) subtracted afterwards, still exact in int32. q8: |w| x (a with w's sign);
 * w = -128 works (|w| = 128 as u8) since quant_q8 codes are within [-127, 127], so pair sums
 * stay below 32767 and maddubs never saturates. */
static inline __attribute__((always_inline)) void tile_q(int mr, int nr, int q4, int nb, const blk_q8 *a, size_t lda,
                          const void *w, const float *bias, float *c, size_t ldc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i eights = _mm256_set1_epi8(8);
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm256_setzero_ps();
    const blk_q8 *w8 = w;
    const blk_q4 *w4 = w;
    for (int b = 0; b < nb; b++) {
        /* Zeroed so that the compiler sees them set for every mr (the unused ones vanish). */
        __m256i av[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, corr[2] = {av[0], av[0]};
        __m256 ad[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
#pragma GCC unroll 2
        for (int i = 0; i < mr; i++) {
            const blk_q8 *ab = a + (size_t)i * lda + b;
            av[i] = _mm256_loadu_si256((const __m256i *)ab->qs);
            ad[i] = _mm256_set1_ps(h2f(ab->d));
            if (q4)
                corr[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(eights, av[i]), ones);
        }
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            __m256i wv, wabs = _mm256_setzero_si256();
            __m256 wd;
            if (q4) {
                const blk_q4 *wb = w4 + (size_t)j * nb + b;
                wv = q4_codes(wb);
                wd = _mm256_set1_ps(h2f(wb->d));
            } else {
                const blk_q8 *wb = w8 + (size_t)j * nb + b;
                wv = _mm256_loadu_si256((const __m256i *)wb->qs);
                wd = _mm256_set1_ps(h2f(wb->d));
                wabs = _mm256_sign_epi8(wv, wv);
            }
#pragma GCC unroll 2
            for (int i = 0; i < mr; i++) {
                __m256i p;
                if (q4)
                    p = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, av[i]), ones), corr[i]);
                else
                    p = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(av[i], wv)), ones);
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(ad[i], wd), acc[i][j]);
            }
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            float s = hsum8(acc[i][j]);
            c[(size_t)i * ldc + j] = bias ? s + bias[j] : s;
        }
}

/* Tokens are taken two at a time (one for an odd last token) and weight rows four at a time
 * (then one), in chunks of NC rows so that a chunk of weights stays in L2 while every token
 * passes over it; m = 1 takes the matrix-vector path of gemv_q.h. */
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
        for (int i = 0; i < m; i += 2) {
            int mr = m - i >= 2 ? 2 : 1;
            const blk_q8 *ai = a + (size_t)i * lda;
            float *ci = c + (size_t)i * ldc;
            int j = jc;
            for (; j + 4 <= je; j += 4) {
                const void *wj = wc + (size_t)j * wrow;
                const float *bj = bias ? bias + j : NULL;
                if (mr == 2)
                    tile_q(2, 4, q4, nb, ai, lda, wj, bj, ci + j, ldc);
                else
                    tile_q(1, 4, q4, nb, ai, lda, wj, bj, ci + j, ldc);
            }
            for (; j < je; j++) {
                const void *wj = wc + (size_t)j * wrow;
                const float *bj = bias ? bias + j : NULL;
                if (mr == 2)
                    tile_q(2, 1, q4, nb, ai, lda, wj, bj, ci + j, ldc);
                else
                    tile_q(1, 1, q4, nb, ai, lda, wj, bj, ci + j, ldc);
            }
        }
    }
}

/* Contract: kernels.h gemm_q8; k % 32 == 0, any m, any [n0, n1), no alignment needed. */
void gemm_q8_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                  const float *bias, float *c, size_t ldc)
{
    gemm_q(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q4; k % 32 == 0, any m, any [n0, n1), no alignment needed. */
void gemm_q4_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q4 *w,
                  const float *bias, float *c, size_t ldc)
{
    gemm_q(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Rounds half away from zero like roundf (the vector round instruction rounds half to even):
 * truncate, then step away from zero when the dropped fraction is >= 0.5 (exact for |t| < 2^23;
 * larger values are already integers). */
static inline __m256 round_away(__m256 t)
{
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 sign = _mm256_and_ps(t, _mm256_set1_ps(-0.0f));
    __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, r));
    __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(r, _mm256_or_ps(step, sign));
}

/* Contract: kernels.h quant_q8; n % 32 == 0; bit-identical to the reference for finite inputs
 * (same f32 division for d and 1/d, same product, roundf's rounding, f16 scale by the same
 * scalar conversion). */
void quant_q8_avx2(int n, const float *x, blk_q8 *y)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < n / QK; b++) {
        const float *xb = x + (size_t)b * QK;
        __m256 v[4];
        for (int q = 0; q < 4; q++)
            v[q] = _mm256_loadu_ps(xb + 8 * q);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absmask), _mm256_and_ps(v[1], absmask)),
                                  _mm256_max_ps(_mm256_and_ps(v[2], absmask), _mm256_and_ps(v[3], absmask)));
        float amax = hmax8(mx);
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q32[4];
        for (int q = 0; q < 4; q++)
            q32[q] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[q], vid)));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q32[0], q32[1]), _mm256_packs_epi32(q32[2], q32[3]));
        _mm256_storeu_si256((__m256i *)y[b].qs, _mm256_permutevar8x32_epi32(p, perm));
    }
}
