/* gemm_q.c (avx2): q8 activations x q8/q4 weights, and quant_q8. m = 1 (decode): gemv_q.h.
 * m > 1: output rows as the 8 lanes of a ymm: weight tiles of 8 rows packed per k-chunk in the
 * "4 codes per lane" layout, activations broadcast 4 codes at a time, maddubs (u8 x s8 -> s16
 * pairs) and madd (-> int32), exact; per block s = s + (float)dot * (dw * da) lane-wise in the
 * reference's order, so results equal the reference bit for bit and never depend on the tile or
 * range that reaches them. */
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


/* m > 1: the output rows are the lanes. A k-chunk of QKC blocks of a tile of 8 weight rows is
 * packed (qpack) so that one ymm holds 4 consecutive codes of each of the 8 rows (lane r = row
 * r); maddubs with a token's 4 activation codes broadcast gives the rows' pair sums, so a block
 * costs 8 maddubs per token for 8 rows and no horizontal sum.
 * q4: the unsigned nibbles (q + 8) times the signed activations; a pair sum is at most
 * 2 * 15 * 128 = 3840, so the 8 groups of a block are added in int16 (<= 30720, no saturation)
 * before one madd to int32, and the dot starts from -8 * sum(a codes): exact.
 * q8: |w| times (a with w's sign), pair sums <= 2 * 128 * 127 = 32512 (quant_q8 codes are in
 * [-127, 127]; w = -128 works as |w| = 128 unsigned), each group madd'ed to int32: exact.
 * Then per block, lane-wise, s = s + (float)dot * (dw * da): the reference's operations in the
 * reference's order (no FMA), so outputs equal the reference bit for bit whatever tile, range or
 * split reaches them. Between k-chunks the running sums live in C. */
enum { QT = 4,   /* tokens per register tile */
       QKC = 8,  /* blocks per k-chunk (tree8 reduces activation sums 8 at a time) */
       QG = 8 }; /* 8-row tiles per row group: QG x QKC packed blocks <= 35 KB of stack */

typedef struct qpack {
    __m256i w[8]; /* w[g] lane r = codes 4g..4g+3 of row r: q4 nibbles, q8 |w| (unsigned) */
    __m256i s[8]; /* q8: the signed codes (their signs go onto the activations); q4: unused */
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

/* Packs rows [0, nr) (1 <= nr <= 8; other lanes zero, never read) of blocks [b0, b0 + nbc) of
 * the rows at w (row stride wrow bytes, nb blocks per row) into pk[0:nbc]. Reads only the
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
                    pk[q].s[4 * h + g] = z[g];
                    pk[q].w[4 * h + g] = _mm256_abs_epi8(z[g]);
                }
            }
        }
    }
}

/* Per token t of ap[0:QT] (pointers to block 0 of the chunk) and block q < nbc: the dot's start
 * ex (q4: -8 * sum(codes); q8: 0) and the scale da as f32. */
static inline void act_tables(int q4, int nbc, const blk_q8 *const ap[QT], int32_t ex[QT][8], float ad[QT][8])
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
    for (int t = 0; t < QT; t++) {
        if (q4) {
            __m256i p[8];
            for (int q = 0; q < 8; q++)
                p[q] = q < nbc ? _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)ap[t][q].qs)), ones16)
                               : z;
            _mm256_storeu_si256((__m256i *)ex[t], _mm256_sub_epi32(z, _mm256_slli_epi32(tree8(p), 3)));
        }
        _mm256_storeu_ps(ad[t], scales8((const unsigned char *)&ap[t]->d, sizeof(blk_q8), nbc));
    }
}

/* One register tile: the QT tokens ap[] x the 8 rows of pk over nbc blocks, running sums at
 * cp[t] + off (lanes < nr; zero instead when first), stored back for t < nt (+ bias when
 * bias != NULL: the last chunk). Tokens t >= nt repeat token nt - 1 and are not stored. */
static inline __attribute__((always_inline)) void qtile(int qt, int q4, int nbc, const qpack *pk, const blk_q8 *const ap[QT],
                                                        const int32_t ex[QT][8], const float ad[QT][8],
                                                        float *const cp[QT], size_t off, int nt, int nr, int first,
                                                        const float *bias)
{
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m256i mk = lane_mask(nr);
    __m256 acc[QT];
#pragma GCC unroll 4
    for (int t = 0; t < qt; t++)
        acc[t] = first ? _mm256_setzero_ps() : _mm256_maskload_ps(cp[t] + off, mk);
    for (int q = 0; q < nbc; q++) {
        __m256i dot[QT];
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
void gemm_q8_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                  const float *bias, float *c, size_t ldc)
{
    gemm_q(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q4; k % 32 == 0, any m, any [n0, n1), no alignment needed. m > 1:
 * bit-identical to the reference. */
void gemm_q4_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                  const float *bias, float *c, size_t ldc)
{
    gemm_q(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q8_alone / gemm_q4_alone: gemm_q8_avx2 / gemm_q4_avx2 with the
 * prefetch of one thread streaming alone when m == 1. */
void gemm_q8_alone_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                        const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q(0, 1, n0, n1, k, a, w, bias, c);
    else
        gemm_q8_avx2(m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void gemm_q4_alone_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                        const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q(1, 1, n0, n1, k, a, w, bias, c);
    else
        gemm_q4_avx2(m, n0, n1, k, a, lda, w, bias, c, ldc);
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

/* Lane i = max |x| over the 32 floats at x + 32 i for i < nq (<= 8), 0 for the others: each
 * block's 4 vectors maxed, then the 8 block vectors reduced together (unpacks, shuffles, one
 * 128-bit swap) instead of one horizontal max each. */
static inline __m256 block_amax8(const float *x, int nq)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m[8];
    for (int b = 0; b < 8; b++) {
        const float *xb = x + 32 * b;
        m[b] = b >= nq ? _mm256_setzero_ps()
                       : _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb), absmask),
                                                     _mm256_and_ps(_mm256_loadu_ps(xb + 8), absmask)),
                                       _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb + 16), absmask),
                                                     _mm256_and_ps(_mm256_loadu_ps(xb + 24), absmask)));
    }
    __m256 h[2];
    for (int g = 0; g < 2; g++) {
        /* Per 128-bit half: lanes (b, b+1) pairwise, then the four blocks 4g..4g+3 in order. */
        __m256 a = _mm256_max_ps(_mm256_unpacklo_ps(m[4 * g], m[4 * g + 1]), _mm256_unpackhi_ps(m[4 * g], m[4 * g + 1]));
        __m256 c = _mm256_max_ps(_mm256_unpacklo_ps(m[4 * g + 2], m[4 * g + 3]),
                                 _mm256_unpackhi_ps(m[4 * g + 2], m[4 * g + 3]));
        h[g] = _mm256_max_ps(_mm256_shuffle_ps(a, c, 0x44), _mm256_shuffle_ps(a, c, 0xee));
    }
    return _mm256_max_ps(_mm256_permute2f128_ps(h[0], h[1], 0x20), _mm256_permute2f128_ps(h[0], h[1], 0x31));
}

/* Contract: kernels.h quant_q8; n % 32 == 0; bit-identical to the reference for finite inputs
 * (the same IEEE f32 divisions for d and 1/d, the same product, roundf's rounding; the f16
 * scale by vcvtps2ph, round to nearest even like f32_to_f16). Eight blocks at a time: their
 * maxima, scales and inverse scales as one vector each (a scalar maximum, two scalar divisions
 * and the bit-level f16 conversion per block were most of its time). */
void quant_q8_avx2(int n, const float *x, blk_q8 *y)
{
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const int nb = n / QK;
    for (int b0 = 0; b0 < nb; b0 += 8) {
        int nq = nb - b0 < 8 ? nb - b0 : 8;
        __m256 amax = block_amax8(x + (size_t)b0 * QK, nq);
        __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
        __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d),
                                  _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ));
        uint16_t dh[8];
        _mm_storeu_si128((__m128i *)dh, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
        for (int b = 0; b < nq; b++) {
            const float *xb = x + (size_t)(b0 + b) * QK;
            y[b0 + b].d = dh[b];
            __m256 vid = _mm256_permutevar8x32_ps(id, _mm256_set1_epi32(b));
            __m256i q0 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb), vid)));
            __m256i q1 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb + 8), vid)));
            __m256i q2 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb + 16), vid)));
            __m256i q3 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb + 24), vid)));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            _mm256_storeu_si256((__m256i *)y[b0 + b].qs, _mm256_permutevar8x32_epi32(p, perm));
        }
    }
}
