/* gemm_q.h (avx2): gemm_q8 / gemm_q4 on 256-bit vectors, m > 1 here and m = 1 through
 * gemv_q.h. Included by avx2/gemm_q.c (GEMM_Q_VNNI 0: the AVX2 level, dots by maddubs + madd)
 * and by avx2vnni/vex.c and avx2vnni/evex.c (GEMM_Q_VNNI 1: the avx2vnni level, dots by
 * 256-bit vpdpbusd), each defining GEMM_Q_LEVEL, the suffix of the exported names.
 *
 * m > 1: the output rows are the 8 lanes of a ymm. A k-chunk of QKC blocks of a tile of 8
 * weight rows is packed (qpack) so that one ymm holds 4 consecutive codes of each of the 8 rows
 * (lane r = row r); with a token's 4 activation codes broadcast, one dot step (maddubs, or one
 * vpdpbusd) adds their products to every row's dot, so a block costs 8 steps per token for 8
 * rows and no horizontal sum. All of it is exact in integers:
 * - maddubs (u8 x s8 -> s16 pairs) then madd (-> int32). q4: the unsigned nibbles (q + 8) times
 *   the signed activations; a pair sum is at most 2 * 15 * 128 = 3840, so the 8 groups of a
 *   block are added in int16 (<= 30720, no saturation) before one madd, and the dot starts from
 *   -8 * sum(a codes). q8: |w| times (a with w's sign), pair sums <= 2 * 128 * 127 = 32512
 *   (quant_q8 codes are in [-127, 127]; w = -128 works as |w| = 128 unsigned), each group
 *   madd'ed to int32.
 * - vpdpbusd (u8 x s8, 4 products added into int32): the weights are the unsigned operand (q4:
 *   the stored q + 8; q8: w ^ 0x80 = w + 128) and the dot starts from -8 or -128 times
 *   sum(a codes), so q8 and q4 share the tile. Each token's 8 steps form two chains of 4 (the
 *   even and the odd code groups), added at the end: a core issuing two vpdpbusd per cycle at a
 *   latency of ~5 would otherwise need 2.5 blocks in flight to stay busy.
 *   (On Zen 4, one ymm vpdpbusd per cycle, the EVEX build runs the same with one chain or two.)
 * Then per block, lane-wise, s = s + (float)dot * (dw * da): the reference's operations in the
 * reference's order (no FMA), so outputs equal the reference bit for bit whatever tile, range,
 * split or level reaches them. Between k-chunks the running sums live in C. */
#ifndef VLM_AVX2_GEMM_Q_H
#define VLM_AVX2_GEMM_Q_H

#include <string.h>

#include "kernels.h"
#include "simd.h"

#define GEMV_VNNI GEMM_Q_VNNI
#include "gemv_q.h"

#define GQ_JOIN2(a, b) a##_##b
#define GQ_JOIN(a, b) GQ_JOIN2(a, b)
#define GQ_NAME(base) GQ_JOIN(base, GEMM_Q_LEVEL) /* gemm_q8 -> gemm_q8_avx2, ... */

enum { QT = 4,   /* tokens per register tile */
       QKC = 8,  /* blocks per k-chunk (tree8 reduces activation sums 8 at a time) */
       QG = 8 }; /* 8-row tiles per row group: QG x QKC packed blocks <= 35 KB of stack */

typedef struct qpack {
    __m256i w[8]; /* w[g] lane r = codes 4g..4g+3 of row r, unsigned: q4 nibbles; q8 |w| (maddubs)
                     or w + 128 (vpdpbusd) */
#if !GEMM_Q_VNNI
    __m256i s[8]; /* q8: the signed codes (their signs go onto the activations); q4: unused */
#endif
    __m256 d;     /* lane r = scale of row r */
} qpack;

/* 4 bytes at p as an int (unaligned). */
static inline int ld32(const void *p)
{
    int v;
    memcpy(&v, p, 4);
    return v;
}

/* 4x4 dword transpose inside each 128-bit lane of z[0..3]. */
static inline void tr4x4(__m256i z[4])
{
    __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
    __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
    z[0] = _mm256_unpacklo_epi64(t0, t2);
    z[1] = _mm256_unpackhi_epi64(t0, t2);
    z[2] = _mm256_unpacklo_epi64(t1, t3);
    z[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* 16 bytes at p, or zero when !ok (p is then never read). */
static inline __m128i ld128(const unsigned char *p, int ok)
{
    return ok ? _mm_loadu_si128((const __m128i *)p) : _mm_setzero_si128();
}

/* z[g] lane r = dword g of the 16 bytes at rp[r] + off (rows r >= nr read as 0). */
static inline __attribute__((always_inline)) void load_tr8(const unsigned char *const rp[8], size_t off, int nr,
                                                           __m256i z[4])
{
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        z[i] = _mm256_set_m128i(ld128(rp[4 + i] + off, 4 + i < nr), ld128(rp[i] + off, i < nr));
    tr4x4(z);
}

/* Packs rows [0, nr) (1 <= nr <= 8; other lanes zero, never stored) of blocks [b0, b0 + nbc)
 * of the rows at w (row stride wrow bytes, nb blocks per row) into pk[0:nbc]. Reads only the
 * bytes of those blocks. */
static inline __attribute__((always_inline)) void pack_q(int q4, int nr, int nb, int b0, int nbc,
                                                         const unsigned char *w, size_t wrow, qpack *pk)
{
    const unsigned char *rp[8];
    for (int r = 0; r < 8; r++)
        rp[r] = w + (size_t)(r < nr ? r : 0) * wrow;
    for (int q = 0; q < nbc; q++) {
        int b = b0 + q;
        /* q4: the grouped row layout (kernels.h); q8: scale and codes of one blk_q8. */
        size_t so = q4 ? q4_scale_off(b) : (size_t)b * sizeof(blk_q8);
        size_t co = q4 ? q4_nibbles_off(nb, b) : so + 2;
        pk[q].d = scales8(w + so, wrow, nr);
        __m256i z[4];
        if (q4) {
            const __m256i lo = _mm256_set1_epi8(0x0f);
            load_tr8(rp, co, nr, z);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                pk[q].w[g] = _mm256_and_si256(z[g], lo);                          /* elements 4g.. */
                pk[q].w[g + 4] = _mm256_and_si256(_mm256_srli_epi32(z[g], 4), lo); /* 16 + 4g.. */
            }
        } else {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                load_tr8(rp, co + 16 * (size_t)h, nr, z);
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
#if GEMM_Q_VNNI
                    pk[q].w[4 * h + g] = _mm256_and_si256(_mm256_xor_si256(z[g], _mm256_set1_epi8((char)0x80)),
                                                          lane_mask(nr));
#else
                    pk[q].s[4 * h + g] = z[g];
                    pk[q].w[4 * h + g] = _mm256_abs_epi8(z[g]);
#endif
                }
            }
        }
    }
}

/* Lane i = the sum of the 32 codes of block i of a (i < n, others 0), exact in int32. */
static inline __m256i code_sums8(const blk_q8 *a, int n)
{
    const __m256i ones8 = _mm256_set1_epi8(1), z = _mm256_setzero_si256();
    __m256i p[8];
    for (int q = 0; q < 8; q++) {
        __m256i v = q < n ? _mm256_loadu_si256((const __m256i *)a[q].qs) : z;
#if GEMM_Q_VNNI
        p[q] = dpbusd256(z, ones8, v);
#else
        p[q] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), _mm256_set1_epi16(1));
#endif
    }
    return tree8(p);
}

/* Per token t of ap[0:QT] (pointers to block 0 of the chunk) and block q < nbc: the dot's start
 * ex (the excess of the unsigned weight operand: -8 (q4) or -128 (q8 with vpdpbusd) times
 * sum(codes); 0 for q8 with maddubs, which has none) and the scale da as f32. */
static inline void act_tables(int q4, int nbc, const blk_q8 *const ap[QT], int32_t ex[QT][8], float ad[QT][8])
{
    const int shift = q4 ? 3 : GEMM_Q_VNNI ? 7 : -1;
    for (int t = 0; t < QT; t++) {
        if (shift >= 0)
            _mm256_storeu_si256((__m256i *)ex[t], _mm256_sub_epi32(_mm256_setzero_si256(),
                                                                   _mm256_slli_epi32(code_sums8(ap[t], nbc), shift)));
        _mm256_storeu_ps(ad[t], scales8((const unsigned char *)&ap[t]->d, sizeof(blk_q8), nbc));
    }
}

/* The int32 dots of block q of tokens ap[0:qt] with the 8 packed rows of pk (see above). */
static inline __attribute__((always_inline)) void block_dots(int qt, int q4, int q, const qpack *pk,
                                                             const blk_q8 *const ap[QT], const int32_t ex[QT][8],
                                                             __m256i dot[QT])
{
#if GEMM_Q_VNNI
    (void)q4;
    __m256i odd[QT];
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++) {
        __m256i wg = _mm256_load_si256(&pk[q].w[g]);
#pragma GCC unroll 4
        for (int t = 0; t < qt; t++) {
            __m256i av = _mm256_set1_epi32(ld32(ap[t][q].qs + 4 * g));
            if (g == 0)
                dot[t] = dpbusd256(_mm256_set1_epi32(ex[t][q]), wg, av);
            else if (g == 1)
                odd[t] = dpbusd256(_mm256_setzero_si256(), wg, av);
            else if (g % 2)
                odd[t] = dpbusd256(odd[t], wg, av);
            else
                dot[t] = dpbusd256(dot[t], wg, av);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < qt; t++)
        dot[t] = _mm256_add_epi32(dot[t], odd[t]);
#else
    const __m256i ones16 = _mm256_set1_epi16(1);
    if (q4) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i wg = _mm256_load_si256(&pk[q].w[g]);
#pragma GCC unroll 4
            for (int t = 0; t < qt; t++) {
                __m256i p = _mm256_maddubs_epi16(wg, _mm256_set1_epi32(ld32(ap[t][q].qs + 4 * g)));
                dot[t] = g ? _mm256_add_epi16(dot[t], p) : p;
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < qt; t++)
            dot[t] = _mm256_add_epi32(_mm256_madd_epi16(dot[t], ones16), _mm256_set1_epi32(ex[t][q]));
    } else {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i wg = _mm256_load_si256(&pk[q].w[g]), sg = _mm256_load_si256(&pk[q].s[g]);
#pragma GCC unroll 4
            for (int t = 0; t < qt; t++) {
                __m256i av = _mm256_sign_epi8(_mm256_set1_epi32(ld32(ap[t][q].qs + 4 * g)), sg);
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wg, av), ones16);
                dot[t] = g ? _mm256_add_epi32(dot[t], p) : p;
            }
        }
    }
#endif
}

/* One register tile: the QT tokens ap[] x the 8 rows of pk over nbc blocks, running sums at
 * cp[t] + off (lanes < nr; zero instead when first), stored back for t < nt (+ bias when
 * bias != NULL: the last chunk). Tokens t >= nt repeat token nt - 1 and are not stored. */
static inline __attribute__((always_inline)) void qtile(int qt, int q4, int nbc, const qpack *pk, const blk_q8 *const ap[QT],
                                                        const int32_t ex[QT][8], const float ad[QT][8],
                                                        float *const cp[QT], size_t off, int nt, int nr, int first,
                                                        const float *bias)
{
    const __m256i mk = lane_mask(nr);
    __m256 acc[QT];
#pragma GCC unroll 4
    for (int t = 0; t < qt; t++)
        acc[t] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(cp[t] + off, mk);
    for (int q = 0; q < nbc; q++) {
        __m256i dot[QT];
        block_dots(qt, q4, q, pk, ap, ex, dot);
        __m256 dw = _mm256_load_ps((const float *)&pk[q].d);
#pragma GCC unroll 4
        for (int t = 0; t < qt; t++)
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_mul_ps(dw, _mm256_set1_ps(ad[t][q]))));
    }
    __m256 bv = bias ? _mm256_maskload_ps(bias, mk) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int t = 0; t < qt; t++)
        if (t < nt)
            _mm256_maskstore_ps(cp[t] + off, mk, bias ? _mm256_add_ps(acc[t], bv) : acc[t]);
}

/* The token tile: 1 or 2 tokens alone (small m: no work on repeated tokens), else QT (a
 * partial tile repeats its last token). */
#define QTILE(...)                   \
    do {                             \
        if (nt == 1)                 \
            qtile(1, __VA_ARGS__);   \
        else if (nt == 2)            \
            qtile(2, __VA_ARGS__);   \
        else                         \
            qtile(QT, __VA_ARGS__);  \
    } while (0)

/* gemm_q8/q4: m == 1 takes gemv_q.h (its own arithmetic, chosen by m, which all threads of one
 * call share); m > 1 row groups of QG x 8 rows, per k-chunk packed once while every token tile
 * passes over them. */
static inline __attribute__((always_inline)) void gemm_q(int q4, int m, int n0, int n1, int k, const blk_q8 *a,
                                                         size_t lda, const void *w, const float *bias, float *c,
                                                         size_t ldc)
{
    if (m == 1) {
        gemv_q(q4, 0, n0, n1, k, a, w, bias, c);
        return;
    }
    const int nb = k / QK;
    const size_t wrow = q4 ? q4_row_bytes(nb) : (size_t)nb * sizeof(blk_q8);
    qpack pk[QG][QKC];
    int32_t ex[QT][8];
    float ad[QT][8];
    for (int jg = n0; jg < n1; jg += 8 * QG) {
        int je = n1 - jg < 8 * QG ? n1 : jg + 8 * QG;
        int ng = (je - jg + 7) / 8;
        for (int b0 = 0; b0 < nb; b0 += QKC) {
            int nbc = nb - b0 < QKC ? nb - b0 : QKC;
            int first = b0 == 0, last = b0 + nbc == nb;
            for (int g = 0; g < ng; g++) {
                int r0 = jg + 8 * g, nr = je - r0 < 8 ? je - r0 : 8;
                pack_q(q4, nr, nb, b0, nbc, (const unsigned char *)w + (size_t)r0 * wrow, wrow, pk[g]);
            }
            /* Prefetched while the token tiles work (simd.h). */
            next_pf pf = q_next_chunk(q4, nb, b0, nbc, QKC, w, wrow, jg, je, n1, 8 * QG, (m + QT - 1) / QT);
            for (int i = 0; i < m; i += QT) {
                next_pf_step(&pf);
                int nt = m - i < QT ? m - i : QT;
                const blk_q8 *ap[QT];
                float *cp[QT];
                for (int t = 0; t < QT; t++) {
                    int ti = i + (t < nt ? t : nt - 1);
                    ap[t] = a + (size_t)ti * lda + b0;
                    cp[t] = c + (size_t)ti * ldc;
                }
                act_tables(q4, nbc, ap, ex, ad);
                for (int g = 0; g < ng; g++) {
                    int r0 = jg + 8 * g, nr = je - r0 < 8 ? je - r0 : 8;
                    QTILE(q4, nbc, pk[g], ap, (const int32_t(*)[8])ex, (const float(*)[8])ad, cp, (size_t)r0, nt, nr,
                          first, last && bias ? bias + r0 : NULL);
                }
            }
        }
    }
}

/* Contract: kernels.h gemm_q8; k % 32 == 0, activation codes in [-127, 127] (quant_q8), any m,
 * any [n0, n1), no alignment needed. m > 1: bit-identical to the reference. */
void GQ_NAME(gemm_q8)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                      const float *bias, float *c, size_t ldc)
{
    gemm_q(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q4; k % 32 == 0, any m, any [n0, n1), no alignment needed. m > 1:
 * bit-identical to the reference. */
void GQ_NAME(gemm_q4)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                      const float *bias, float *c, size_t ldc)
{
    gemm_q(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q8_alone / gemm_q4_alone: gemm_q8 / gemm_q4 above with the prefetch
 * of one thread streaming alone when m == 1. */
void GQ_NAME(gemm_q8_alone)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                            const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q(0, 1, n0, n1, k, a, w, bias, c);
    else
        gemm_q(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void GQ_NAME(gemm_q4_alone)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                            const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q(1, 1, n0, n1, k, a, w, bias, c);
    else
        gemm_q(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

#if GEMM_Q_VNNI
void GQ_JOIN(GEMM_Q_LEVEL, fill)(kernel_table *t);
double GQ_NAME(peak_int8)(long iters);

/* The avx2vnni level: the AVX2 table (filled before) with these products. Called by isa_fill
 * only when the CPU runs this file's encoding. */
void GQ_JOIN(GEMM_Q_LEVEL, fill)(kernel_table *t)
{
    t->level = "avx2vnni";
    t->gemm_q8 = GQ_NAME(gemm_q8);
    t->gemm_q4 = GQ_NAME(gemm_q4);
    t->gemm_q8_alone = GQ_NAME(gemm_q8_alone);
    t->gemm_q4_alone = GQ_NAME(gemm_q4_alone);
}

/* bench_kernels' int8 limit at this level: iters x 12 independent vpdpbusd chains, each step's
 * bytes taken from its own accumulator so nothing can be hoisted; int8 ops = iters * 12 * 64. */
double GQ_NAME(peak_int8)(long iters)
{
    __m256i acc[12];
    for (int i = 0; i < 12; i++)
        acc[i] = _mm256_set1_epi32(i);
    const __m256i s = _mm256_set1_epi8(-5);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            acc[i] = dpbusd256(acc[i], acc[i], s);
    __m256i t = acc[0];
    for (int i = 1; i < 12; i++)
        t = _mm256_add_epi32(t, acc[i]);
    return (double)_mm256_extract_epi32(t, 0);
}
#endif

#endif
