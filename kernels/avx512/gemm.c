/* gemm.c (avx512): the AVX-512 F/BW/VL + VNNI matrix products. f32/f16 with m > 1: outer
 * products of packed 64-row weight panels with 6-token tiles; m = 1: one row at a time, 16-lane
 * FMA accumulators over k-chunks of KC (chunk sums added in C, bias last). q8/q4 with m > 1:
 * the output rows are the 16 lanes of vpdpbusd (weights packed per k-chunk, the weight the
 * unsigned operand: q8 w ^ 0x80 = w + 128, q4 the stored q + 8, the excess 128 or 8 * sum(a)
 * taken off exactly in int32), bit-identical to the reference; m = 1 goes through gemv_q.h.
 * Every element runs the same sequence in every tile: ranges never change results. */
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
void gemm_q4_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                    const float *bias, float *c, size_t ldc);

void gemm_q8_alone_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                          const float *bias, float *c, size_t ldc);
void gemm_q4_alone_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                          const float *bias, float *c, size_t ldc);
void gemv_q4_avx512(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c);
void gemv_q4_alone_avx512(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c);

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

/* m = 1: c = (first ? 0 : c) + a[k0:k1] . w[k0:k1] (+ bias on last): four 16-lane FMA
 * accumulators (columns kk + 16u + lane, u = 0..3: one chain would wait on the FMA latency),
 * added pairwise and reduced by hsum16. Masked loads never touch memory past k1. */
static inline __attribute__((always_inline)) void row_chunk_f(int f16, int k0, int k1, const float *a, const void *w,
                                                              const float *bias, float *c, int first, int last)
{
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int kk = k0;
    const char *wc = (const char *)w + (size_t)k0 * (f16 ? 2 : 4);
    for (; kk + 64 <= k1; kk += 64, wc += f16 ? 128 : 256) {
        /* Weights are read once: prefetched non-temporally well ahead (see gemv.c). */
        for (int o = 0; o < (f16 ? 128 : 256); o += 64)
            _mm_prefetch(wc + 2048 + o, _MM_HINT_NTA);
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++)
            acc[u] = _mm512_fmadd_ps(_mm512_loadu_ps(a + kk + 16 * u), wload16(f16, w, (size_t)kk + 16 * u, 0xffff),
                                     acc[u]);
    }
    for (int u = 0; kk < k1; kk += 16, u++) {
        __mmask16 mk = k1 - kk >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k1 - kk)) - 1);
        acc[u] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + kk), wload16(f16, w, (size_t)kk, mk), acc[u]);
    }
    float s = hsum16(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    if (!first)
        s = *c + s;
    if (last && bias)
        s = s + *bias;
    *c = s;
}

/* m > 1 (vision tower, prefill): outer products. A panel of PNR = 64 weight rows x kc columns
 * is packed once per k-chunk, transposed to (kc, 64) and kept in the weights' own type (f16 is
 * converted in the inner loop: measured as fast as an f32 panel, at half the stack), and every
 * tile of up to PMR tokens passes over it: per column kk, 4 zmm of weights times each token's
 * a[i][kk] broadcast, into 4 x PMR accumulators (output columns are the lanes: no horizontal
 * sums). One output element is c = ((a0 w0 + a1 w1) + ...) + bias: FMAs in k order, the running
 * sum parked in C between k-chunks, the same sequence in every tile and lane, so ranges and
 * thread splits never change a result. Measured on Zen 4 (ViT shapes, 1 thread): 6 x 64 tiles
 * 90% of the FMA peak with 1024-column chunks, 86% with 256; 12 x 32 tiles 80%; the former dot
 * form (lanes over k, horizontal sums) 72%. */
enum { PNZ = 4,          /* zmm per panel row */
       PNR = 16 * PNZ,   /* weight rows per panel */
       PMR = 6,          /* tokens per tile: 24 accumulators */
       PANEL_BYTES = 128 << 10 }; /* stack: f16 panels of 1024 columns, f32 of 512 */

/* panel[kk][r] = w[r][k0 + kk] for r < nr, 0 for r >= nr, kk < kc (kc * PNR elements of the
 * weight type: 2 or 4 bytes). */
static inline __attribute__((always_inline)) void pack_panel(int f16, int nr, int k, int k0, int kc, const void *w,
                                                             void *panel)
{
    size_t es = f16 ? 2 : 4;
    int r = 0, kk0 = 0;
    if (f16 && nr == PNR) {
        /* 8 x 8 blocks of halves transposed in registers (the scalar loop below cost 6% of
         * a ViT product); the columns past a multiple of 8 go through that loop. */
        const uint16_t *ws = (const uint16_t *)w + k0;
        uint16_t *pp = panel;
        kk0 = kc & ~7;
        for (int r0 = 0; r0 < PNR; r0 += 8)
            for (int kk = 0; kk < kk0; kk += 8) {
                __m128i x[8];
                for (int i = 0; i < 8; i++)
                    x[i] = _mm_loadu_si128((const __m128i *)(ws + (size_t)(r0 + i) * k + kk));
                __m128i a0 = _mm_unpacklo_epi16(x[0], x[1]), a1 = _mm_unpackhi_epi16(x[0], x[1]);
                __m128i a2 = _mm_unpacklo_epi16(x[2], x[3]), a3 = _mm_unpackhi_epi16(x[2], x[3]);
                __m128i a4 = _mm_unpacklo_epi16(x[4], x[5]), a5 = _mm_unpackhi_epi16(x[4], x[5]);
                __m128i a6 = _mm_unpacklo_epi16(x[6], x[7]), a7 = _mm_unpackhi_epi16(x[6], x[7]);
                __m128i b0 = _mm_unpacklo_epi32(a0, a2), b1 = _mm_unpackhi_epi32(a0, a2);
                __m128i b2 = _mm_unpacklo_epi32(a1, a3), b3 = _mm_unpackhi_epi32(a1, a3);
                __m128i b4 = _mm_unpacklo_epi32(a4, a6), b5 = _mm_unpackhi_epi32(a4, a6);
                __m128i b6 = _mm_unpacklo_epi32(a5, a7), b7 = _mm_unpackhi_epi32(a5, a7);
                /* column kk + c = the c-th 64-bit half pair */
                __m128i y[8] = {_mm_unpacklo_epi64(b0, b4), _mm_unpackhi_epi64(b0, b4), _mm_unpacklo_epi64(b1, b5),
                                _mm_unpackhi_epi64(b1, b5), _mm_unpacklo_epi64(b2, b6), _mm_unpackhi_epi64(b2, b6),
                                _mm_unpacklo_epi64(b3, b7), _mm_unpackhi_epi64(b3, b7)};
                for (int c = 0; c < 8; c++)
                    _mm_storeu_si128((__m128i *)(pp + (size_t)(kk + c) * PNR + r0), y[c]);
            }
    }
    for (; r < PNR; r++)
        for (int kk = kk0; kk < kc; kk++) {
            unsigned char *dst = (unsigned char *)panel + ((size_t)kk * PNR + r) * es;
            if (r < nr)
                memcpy(dst, (const unsigned char *)w + ((size_t)r * k + k0 + kk) * es, es);
            else
                memset(dst, 0, es);
        }
}

/* Tokens 0..mr-1 (rows of a from column k0, stride lda) x the packed panel over kc columns:
 * C[i][0:64] (lanes masked by mk) = (first ? 0 : C) + sum_kk a[i][kk] panel[kk] (+ bias on last). */
static inline __attribute__((always_inline)) void panel_tile(int f16, int mr, int kc, const float *a, size_t lda,
                                                             const void *panel, const float *bias, float *c,
                                                             size_t ldc, const __mmask16 *mk, int first, int last)
{
    __m512 acc[PMR][PNZ];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int z = 0; z < PNZ; z++)
            acc[i][z] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk[z], c + (size_t)i * ldc + 16 * z);
    for (int kk = 0; kk < kc; kk++) {
        __m512 wv[PNZ];
#pragma GCC unroll 4
        for (int z = 0; z < PNZ; z++)
            wv[z] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)panel + (size_t)kk * PNR) + z))
                        : _mm512_loadu_ps((const float *)panel + (size_t)kk * PNR + 16 * z);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m512 av = _mm512_set1_ps(a[(size_t)i * lda + kk]);
#pragma GCC unroll 4
            for (int z = 0; z < PNZ; z++)
                acc[i][z] = _mm512_fmadd_ps(av, wv[z], acc[i][z]);
        }
    }
#pragma GCC unroll 4
    for (int z = 0; z < PNZ; z++) {
        __m512 b = last && bias ? _mm512_maskz_loadu_ps(mk[z], bias + 16 * z) : _mm512_setzero_ps();
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++)
            _mm512_mask_storeu_ps(c + (size_t)i * ldc + 16 * z, mk[z],
                                  last && bias ? _mm512_add_ps(acc[i][z], b) : acc[i][z]);
    }
}

#define PANEL_TILE(MR) panel_tile(f16, MR, kc, ai, lda, panel, bj, ci, ldc, mk, first, last)

/* Contract of gemm_f32/f16_avx512 (below); f16 selects the weight type. */
static inline __attribute__((always_inline)) void gemm_f(int f16, int m, int n0, int n1, int k, const float *a, size_t lda,
                          const void *w, const float *bias, float *c, size_t ldc)
{
    if (m == 1) {
        /* Decode: each row runs through all its k-chunks before the next, so the weights
         * stream as one sequential read (the hardware prefetcher keeps up with one stream, not
         * with several). */
        const size_t es = f16 ? 2 : 4;
        for (int j = n0; j < n1; j++)
            for (int k0 = 0;; k0 += KC) {
                int k1 = k0 + KC < k ? k0 + KC : k;
                const void *wj = (const char *)w + (size_t)j * k * es;
                row_chunk_f(f16, k0, k1, a, wj, bias ? bias + j : NULL, c + j, k0 == 0, k1 == k);
                if (k1 >= k)
                    break;
            }
        return;
    }
    const size_t esz = f16 ? 2 : 4;
    const int pkc = PANEL_BYTES / (PNR * (int)esz); /* columns per k-chunk */
    _Alignas(64) unsigned char panel[PANEL_BYTES];  /* (pkc, PNR) weights */
    for (int jc = n0; jc < n1; jc += PNR) {
        int nr = n1 - jc < PNR ? n1 - jc : PNR;
        __mmask16 mk[PNZ];
        for (int z = 0; z < PNZ; z++)
            mk[z] = nr >= 16 * (z + 1) ? (__mmask16)0xffff : nr > 16 * z ? (__mmask16)((1u << (nr - 16 * z)) - 1) : 0;
        const void *wj = (const char *)w + (size_t)jc * k * esz;
        const float *bj = bias ? bias + jc : NULL;
        for (int k0 = 0; k0 < k; k0 += pkc) {
            int kc = k - k0 < pkc ? k - k0 : pkc;
            int first = k0 == 0, last = k0 + kc == k;
            pack_panel(f16, nr, k, k0, kc, wj, panel);
            for (int i = 0; i < m; i += PMR) {
                const float *ai = a + (size_t)i * lda + k0;
                float *ci = c + (size_t)i * ldc + jc;
                switch (m - i < PMR ? m - i : PMR) {
                case 6: PANEL_TILE(6); break;
                case 5: PANEL_TILE(5); break;
                case 4: PANEL_TILE(4); break;
                case 3: PANEL_TILE(3); break;
                case 2: PANEL_TILE(2); break;
                default: PANEL_TILE(1); break;
                }
            }
        }
    }
}
#undef PANEL_TILE

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
/* q8 / q4 with VNNI, m > 1: the output rows are the lanes                                   */

/* A k-chunk of QKC blocks of a tile of 16 weight rows is packed (qpack) so that one zmm holds
 * 4 consecutive codes of each of the 16 rows (lane r = row r), the operand layout of vpdpbusd:
 * one vpdpbusd with 4 activation codes of a token broadcast adds 4 products to the dot of every
 * row, so a block costs 8 vpdpbusd per token for 16 rows and no horizontal sum. The weights are
 * the unsigned operand (q8: w ^ 0x80 = w + 128; q4: the stored q + 8), and each dot starts from
 * -(128 or 8) * sum(a codes of the block): exact in int32. Then per block, lane-wise,
 * s = s + (float)dot * (dw * da): the reference's operations in the reference's order (no FMA),
 * so every output equals the reference bit for bit, whatever tile, range or split reaches it.
 * Between k-chunks the running sums live in C. */
enum { QT = 4,   /* tokens per register tile (x 2 row tiles: 8 independent vpdpbusd chains) */
       QKC = 8,  /* blocks per k-chunk (tree8 reduces the activation sums 8 at a time) */
       QG = 8 }; /* 16-row tiles per row group: QG x QKC packed blocks = 36 KB of stack */

typedef struct qpack {
    __m512i w[8]; /* w[g] lane r = codes 4g..4g+3 of row r, unsigned */
    __m512 d;     /* lane r = scale of row r */
} qpack;

/* 4 bytes at p as an int (unaligned). */
static inline int ld32(const void *p)
{
    int v;
    memcpy(&v, p, 4);
    return v;
}

/* 16 bytes at p, or zero when !ok (p is then never read). */
static inline __m128i ld128(const unsigned char *p, int ok)
{
    return ok ? _mm_loadu_si128((const __m128i *)p) : _mm_setzero_si128();
}

/* z[i] 128-bit lane p = 16 bytes at rp[4p + i] + off (rows with a clear bit in mk read as 0);
 * then a 4x4 dword transpose inside every 128-bit lane, so that z[g] lane r = dword g of those
 * 16 bytes of row r. */
static inline __attribute__((always_inline)) void load_tr16(const unsigned char *const rp[16], size_t off,
                                                            unsigned mk, __m512i z[4])
{
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512i t = _mm512_castsi128_si512(ld128(rp[i] + off, mk >> i & 1));
        t = _mm512_inserti32x4(t, ld128(rp[4 + i] + off, mk >> (4 + i) & 1), 1);
        t = _mm512_inserti32x4(t, ld128(rp[8 + i] + off, mk >> (8 + i) & 1), 2);
        z[i] = _mm512_inserti32x4(t, ld128(rp[12 + i] + off, mk >> (12 + i) & 1), 3);
    }
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    z[0] = _mm512_unpacklo_epi64(t0, t2);
    z[1] = _mm512_unpackhi_epi64(t0, t2);
    z[2] = _mm512_unpacklo_epi64(t1, t3);
    z[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Packs rows [0, nr) (1 <= nr <= 16; the other lanes zero) of blocks [b0, b0 + nbc) of the rows
 * at w (row stride wrow bytes, nb blocks per row) into pk[0:nbc]: 16-byte row loads transposed
 * in registers, the 16 scales of a block by scalar loads (scales8: one vpgatherdd per block was
 * 12% of prefill in perf; the loads made prefill 7% faster: 215 against 201 tokens/s, three
 * pairs of bench_e2e -t 2 invocations). Reads only the bytes of those blocks in rows [0, nr). */
static inline __attribute__((always_inline)) void pack_q(int q4, int nr, int nb, int b0, int nbc,
                                                         const unsigned char *w, size_t wrow, qpack *pk)
{
    const __mmask16 mk = (__mmask16)((1u << nr) - 1);
    const unsigned char *rp[16];
    for (int r = 0; r < 16; r++)
        rp[r] = w + (size_t)(r < nr ? r : 0) * wrow;
    for (int q = 0; q < nbc; q++) {
        int b = b0 + q;
        /* q4: the grouped row layout (kernels.h); q8: scale and codes of one blk_q8. */
        size_t so = q4 ? q4_scale_off(b) : (size_t)b * sizeof(blk_q8);
        size_t co = q4 ? q4_nibbles_off(nb, b) : so + 2;
        /* The scales of rows 0..7 and 8..15 as gemm_q.c (avx2) builds them (lanes past nr 0). */
        __m256 d0 = scales8(w + so, wrow, nr < 8 ? nr : 8);
        __m256 d1 = nr > 8 ? scales8(w + 8 * wrow + so, wrow, nr - 8) : _mm256_setzero_ps();
        pk[q].d = _mm512_castpd_ps(
            _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(d0)), _mm256_castps_pd(d1), 1));
        __m512i z[4];
        if (q4) {
            const __m512i lo = _mm512_set1_epi8(0x0f);
            load_tr16(rp, co, mk, z);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                pk[q].w[g] = _mm512_and_si512(z[g], lo);                          /* elements 4g.. */
                pk[q].w[g + 4] = _mm512_and_si512(_mm512_srli_epi32(z[g], 4), lo); /* 16 + 4g.. */
            }
        } else {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                load_tr16(rp, co + 16 * (size_t)h, mk, z);
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++)
                    pk[q].w[4 * h + g] = _mm512_maskz_xor_epi32(mk, z[g], _mm512_set1_epi8((char)0x80));
            }
        }
    }
}

/* Per token t of ap[0:QT] (pointers to block 0 of the chunk) and block q < nbc: the dot's start
 * ex = -(unit) * sum(codes), unit = 1 << shift, and the scale da as f32. */
static inline void act_tables(int shift, int nbc, const blk_q8 *const ap[QT], int32_t ex[QT][8],
                              float ad[QT][8])
{
    const __m256i ones = _mm256_set1_epi8(1), z = _mm256_setzero_si256();
    for (int t = 0; t < QT; t++) {
        __m256i r;
        if (nbc == 8) {
            /* The tree built as the sums come (no array through the stack). */
#define SUMA(q) _mm256_dpbusd_epi32(z, ones, _mm256_loadu_si256((const __m256i *)ap[t][q].qs))
            __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(SUMA(0), SUMA(1)), _mm256_hadd_epi32(SUMA(2), SUMA(3)));
            __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(SUMA(4), SUMA(5)), _mm256_hadd_epi32(SUMA(6), SUMA(7)));
#undef SUMA
            r = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
        } else {
            __m256i p[8];
            for (int q = 0; q < 8; q++)
                p[q] = q < nbc ? _mm256_dpbusd_epi32(z, ones, _mm256_loadu_si256((const __m256i *)ap[t][q].qs)) : z;
            r = tree8(p);
        }
        _mm256_storeu_si256((__m256i *)ex[t], _mm256_sub_epi32(z, _mm256_slli_epi32(r, shift)));
        _mm256_storeu_ps(ad[t], scales8((const unsigned char *)&ap[t]->d, sizeof(blk_q8), nbc));
    }
}

/* One register tile: the QT tokens ap[] x the RT * 16 rows of pk[0:RT] over nbc blocks,
 * running sums at cp[t] + off + 16 r (lanes in mk[r]; zero instead when first), stored back for
 * t < nt (+ bias when bias != NULL: the last chunk). Tokens t >= nt repeat token nt - 1 and are
 * not stored. The 8 code groups go in two halves so that 4 RT weight vectors, RT QT dots and
 * RT QT sums stay in registers; each broadcast activation group serves RT tiles. */
static inline __attribute__((always_inline)) void qtile(int qt, int rt, int nbc, const qpack (*pk)[QKC],
                                                        const blk_q8 *const ap[QT], const int32_t ex[QT][8],
                                                        const float ad[QT][8], float *const cp[QT], size_t off,
                                                        int nt, const __mmask16 mk[2], int first, const float *bias)
{
    __m512 acc[2][QT];
#pragma GCC unroll 2
    for (int r = 0; r < rt; r++)
#pragma GCC unroll 8
        for (int t = 0; t < qt; t++)
            acc[r][t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk[r], cp[t] + off + 16 * r);
    for (int q = 0; q < nbc; q++) {
        __m512i dot[2][QT];
#pragma GCC unroll 2
        for (int r = 0; r < rt; r++)
#pragma GCC unroll 8
            for (int t = 0; t < qt; t++)
                dot[r][t] = _mm512_set1_epi32(ex[t][q]);
#pragma GCC unroll 2
        for (int h = 0; h < 8; h += 4) {
            __m512i wg[2][4];
#pragma GCC unroll 2
            for (int r = 0; r < rt; r++)
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++)
                    wg[r][g] = _mm512_load_si512(&pk[r][q].w[h + g]);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
#pragma GCC unroll 8
                for (int t = 0; t < qt; t++) {
                    __m512i av = _mm512_set1_epi32(ld32(ap[t][q].qs + 4 * (h + g)));
#pragma GCC unroll 2
                    for (int r = 0; r < rt; r++)
                        dot[r][t] = _mm512_dpbusd_epi32(dot[r][t], wg[r][g], av);
                }
        }
#pragma GCC unroll 2
        for (int r = 0; r < rt; r++) {
            __m512 dw = _mm512_load_ps(&pk[r][q].d);
#pragma GCC unroll 8
            for (int t = 0; t < qt; t++)
                acc[r][t] = _mm512_add_ps(acc[r][t], _mm512_mul_ps(_mm512_cvtepi32_ps(dot[r][t]),
                                                                   _mm512_mul_ps(dw, _mm512_set1_ps(ad[t][q]))));
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < rt; r++) {
        __m512 bv = bias ? _mm512_maskz_loadu_ps(mk[r], bias + 16 * r) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int t = 0; t < qt; t++)
            if (t < nt)
                _mm512_mask_storeu_ps(cp[t] + off + 16 * r, mk[r], bias ? _mm512_add_ps(acc[r][t], bv) : acc[r][t]);
    }
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

/* gemm_q8/q4 for m > 1: row groups of QG x 16 rows; per k-chunk the group is packed once and
 * every token tile passes over it. m = 1 takes gemv_q.h (its own arithmetic, chosen by m,
 * which all threads of one call share). */
static inline __attribute__((always_inline)) void gemm_q(int q4, int m, int n0, int n1, int k, const blk_q8 *a,
                                                         size_t lda, const void *w, const float *bias, float *c,
                                                         size_t ldc)
{
    if (m == 1) {
        if (q4)
            gemv_q4_avx512(n0, n1, k, a, w, bias, c);
        else
            gemv_q(q4, 0, n0, n1, k, a, w, bias, c);
        return;
    }
    const int nb = k / QK;
    const size_t wrow = q4 ? q4_row_bytes(nb) : (size_t)nb * sizeof(blk_q8);
    qpack pk[QG][QKC];
    int32_t ex[QT][8];
    float ad[QT][8];
    for (int jg = n0; jg < n1; jg += 16 * QG) {
        int je = n1 - jg < 16 * QG ? n1 : jg + 16 * QG;
        int ng = (je - jg + 15) / 16;
        for (int b0 = 0; b0 < nb; b0 += QKC) {
            int nbc = nb - b0 < QKC ? nb - b0 : QKC;
            int first = b0 == 0, last = b0 + nbc == nb;
            for (int g = 0; g < ng; g++) {
                int r0 = jg + 16 * g, nr = je - r0 < 16 ? je - r0 : 16;
                pack_q(q4, nr, nb, b0, nbc, (const unsigned char *)w + (size_t)r0 * wrow, wrow, pk[g]);
            }
            /* Prefetched while the token tiles work (simd.h). */
            next_pf pf = q_next_chunk(q4, nb, b0, nbc, QKC, w, wrow, jg, je, n1, 16 * QG, (m + QT - 1) / QT);
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
                act_tables(q4 ? 3 : 7, nbc, ap, ex, ad);
                for (int g = 0; g < ng; g += 2) {
                    __mmask16 mk[2];
                    for (int r = 0; r < 2; r++) {
                        int r0 = jg + 16 * (g + r), nr = je - r0 < 16 ? je - r0 : 16;
                        mk[r] = nr > 0 ? (__mmask16)((1u << nr) - 1) : 0;
                    }
                    size_t r0 = (size_t)jg + 16 * (size_t)g;
                    const float *bg = last && bias ? bias + r0 : NULL;
                    if (g + 1 < ng)
                        QTILE(2, nbc, pk + g, ap, (const int32_t(*)[8])ex, (const float(*)[8])ad, cp, r0, nt,
                              mk, first, bg);
                    else
                        QTILE(1, nbc, pk + g, ap, (const int32_t(*)[8])ex, (const float(*)[8])ad, cp, r0, nt,
                              mk, first, bg);
                }
            }
        }
    }
}

/* Contract: kernels.h gemm_q8; k % 32 == 0, any int8 codes on both sides (the activation is
 * the signed operand of vpdpbusd); any m and range, no alignment. m > 1: bit-identical to the
 * reference. */
void gemm_q8_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                    const float *bias, float *c, size_t ldc)
{
    gemm_q(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q4; k % 32 == 0; any m and range, no alignment. m > 1:
 * bit-identical to the reference. */
void gemm_q4_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                    const float *bias, float *c, size_t ldc)
{
    gemm_q(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q8_alone / gemm_q4_alone: gemm_q8_avx512 / gemm_q4_avx512 with the
 * prefetch of one thread streaming alone when m == 1. */
void gemm_q8_alone_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                          const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q(0, 1, n0, n1, k, a, w, bias, c);
    else
        gemm_q8_avx512(m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void gemm_q4_alone_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                          const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q4_alone_avx512(n0, n1, k, a, w, bias, c);
    else
        gemm_q4_avx512(m, n0, n1, k, a, lda, w, bias, c, ldc);
}
