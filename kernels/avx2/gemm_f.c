/* gemm_f.c (avx2): f32 activations x f32 or f16 weights (F16C converts 8 weights at a time).
 * One output element is defined as: over k-chunks of KC (in order), an 8-lane FMA accumulator
 * over the chunk (a masked tail for k % 8), reduced by hsum8, and the chunk sums added in order
 * in C (bias last). Every tile shape and range edge runs exactly that sequence, so results do
 * not depend on how threads split [n0, n1). The chunking bounds the working set: a tile of
 * tokens x KC stays in L1 while a block of NC weight rows (in L1/L2) passes over it. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include "kernels_avx2.h"
#include "simd.h"

enum { KC = 512 }; /* k-chunk: multiple of 8; long enough that the reductions after it cost little */

/* Weights j, columns kk..kk+7 as f32 (f16: converted; exact). */
static inline __m256 wload(int f16, const void *w, size_t off)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + off)));
    return _mm256_loadu_ps((const float *)w + off);
}

/* The last r (1..7) columns: f32 via a masked load (no over-read), f16 via a zero-padded copy. */
static inline __m256 wload_tail(int f16, const void *w, size_t off, int r)
{
    if (f16)
        return load_h8_tail((const uint16_t *)w + off, r);
    return _mm256_maskload_ps((const float *)w + off, lane_mask(r));
}

/* One tile: tokens 0..mr-1 (rows of a, stride lda) x weight rows 0..nr-1 (stride k), columns
 * [k0, k1) of the reduction; first: the chunk sum initializes C, else it is added to C; last:
 * bias (if any) is added after. Reads a[i][k0:k1] and w[j][k0:k1] only. */
static inline __attribute__((always_inline)) void tile_f(int mr, int nr, int f16, int k, int k0, int k1, const float *a,
                          size_t lda, const void *w, const float *bias, float *c, size_t ldc,
                          int first, int last)
{
    __m256 acc[4][6];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm256_setzero_ps();
    int kk = k0;
    for (; kk + 8 <= k1; kk += 8) {
        __m256 wv[6] = {_mm256_setzero_ps()}; /* all set below for j < nr; zeroed for -Wmaybe-uninitialized */
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++)
            wv[j] = wload(f16, w, (size_t)j * k + kk);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 av = _mm256_loadu_ps(a + (size_t)i * lda + kk);
#pragma GCC unroll 6
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm256_fmadd_ps(av, wv[j], acc[i][j]);
        }
    }
    if (kk < k1) {
        int r = k1 - kk;
        __m256i mask = lane_mask(r);
        __m256 wv[6] = {_mm256_setzero_ps()}; /* all set below for j < nr; zeroed for -Wmaybe-uninitialized */
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++)
            wv[j] = wload_tail(f16, w, (size_t)j * k + kk, r);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m256 av = _mm256_maskload_ps(a + (size_t)i * lda + kk, mask);
#pragma GCC unroll 6
            for (int j = 0; j < nr; j++)
                acc[i][j] = _mm256_fmadd_ps(av, wv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
        for (int j = 0; j < nr; j++) {
            float *cij = c + (size_t)i * ldc + j;
            float s = hsum8(acc[i][j]);
            if (!first)
                s = *cij + s;
            if (last && bias)
                s = s + bias[j];
            *cij = s;
        }
}

/* Tiles of 4 tokens x 3 weight rows (16 registers: 12 accumulators, 3 weights, 1 activation);
 * a single token (decode) takes 6 rows at a time for more independent accumulators. */
/* Contract of gemm_f32/f16_avx2 (below); f16 selects the weight type. Always inlined so that
 * each entry point gets its own copy specialized on f16. */
static inline __attribute__((always_inline)) void gemm_f(int f16, int m, int n0, int n1, int k, const float *a, size_t lda,
                          const void *w, const float *bias, float *c, size_t ldc)
{
    if (m == 1) {
        /* Decode: each group of 6 rows runs through all its k-chunks before the next, so the
         * weights stream row after row; 6 rows = 6 independent FMA chains (fewer rows were
         * latency-bound at 8 lanes, measured); same arithmetic as below. */
        const size_t es = f16 ? 2 : 4;
        for (int j = n0; j < n1;) {
            int nr = n1 - j >= 6 ? 6 : 1;
            for (int k0 = 0;; k0 += KC) {
                int k1 = k0 + KC < k ? k0 + KC : k;
                const void *wj = (const char *)w + (size_t)j * k * es;
                const float *bj = bias ? bias + j : NULL;
                if (nr == 6)
                    tile_f(1, 6, f16, k, k0, k1, a, lda, wj, bj, c + j, ldc, k0 == 0, k1 == k);
                else
                    tile_f(1, 1, f16, k, k0, k1, a, lda, wj, bj, c + j, ldc, k0 == 0, k1 == k);
                if (k1 >= k)
                    break;
            }
            j += nr;
        }
        return;
    }
    const int NC = f16 ? 48 : 24; /* weight rows per block: NC x KC weights fit in L1 */
    size_t esz = f16 ? 2 : 4;
    const char *wb = w;
    for (int k0 = 0; k0 < k || k0 == 0; k0 += KC) {
        int k1 = k0 + KC < k ? k0 + KC : k;
        int first = k0 == 0, last = k1 == k;
        for (int jc = n0; jc < n1; jc += NC) {
            int je = jc + NC < n1 ? jc + NC : n1;
            for (int i = 0; i < m; i += 4) {
                int mr = m - i < 4 ? m - i : 4;
                const float *ai = a + (size_t)i * lda;
                float *ci = c + (size_t)i * ldc;
                int j = jc;
                if (mr == 1)
                    for (; j + 6 <= je; j += 6)
                        tile_f(1, 6, f16, k, k0, k1, ai, lda, wb + (size_t)j * k * esz,
                               bias ? bias + j : NULL, ci + j, ldc, first, last);
                for (; j + 3 <= je; j += 3) {
                    const void *wj = wb + (size_t)j * k * esz;
                    const float *bj = bias ? bias + j : NULL;
                    switch (mr) {
                    case 4: tile_f(4, 3, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    case 3: tile_f(3, 3, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    case 2: tile_f(2, 3, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    default: tile_f(1, 3, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    }
                }
                for (; j < je; j++) {
                    const void *wj = wb + (size_t)j * k * esz;
                    const float *bj = bias ? bias + j : NULL;
                    switch (mr) {
                    case 4: tile_f(4, 1, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    case 3: tile_f(3, 1, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    case 2: tile_f(2, 1, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    default: tile_f(1, 1, f16, k, k0, k1, ai, lda, wj, bj, ci + j, ldc, first, last); break;
                    }
                }
            }
        }
        if (k1 == k)
            break;
    }
}

/* Contract: kernels.h gemm_f32; any k >= 1 (tails masked, no over-read), any m and range, no
 * alignment needed. C may hold partial sums between k-chunks: only C[0:m, n0:n1] is touched. */
void gemm_f32_avx2(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                   const float *bias, float *c, size_t ldc)
{
    gemm_f(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_f16; as gemm_f32_avx2, weights converted exactly by F16C. */
void gemm_f16_avx2(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                   const float *bias, float *c, size_t ldc)
{
    gemm_f(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}
