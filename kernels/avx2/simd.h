/* simd.h (avx2): small AVX2 helpers shared by the kernels of this directory and of
 * kernels/avx512/ (which is built with a superset of the flags): fixed-order horizontal sums,
 * tail loads, f16 conversion (scales, K/V rows), q8 K/V rows, and a vector exp. All static
 * inline: files built with different -m flags must never share an out-of-line copy. */
#ifndef VLM_AVX2_SIMD_H
#define VLM_AVX2_SIMD_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* Sum of the 8 lanes in one fixed order ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)): every kernel
 * reduces its accumulators through here, so an output never depends on which code path
 * (tile shape, range edge) computed it. */
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A mask of the first r (0..8) lanes, for maskload/maskstore of tails (masked-off lanes are
 * neither read nor written, so a tail never over-reads). */
static inline __m256i lane_mask(int r)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* f16 -> f32 of one scale, exact (subnormals included). */
static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* The first r (0..8) f16 values at p as 8 f32 lanes, the rest zero; reads only p[0:r]. */
static inline __m256 load_h8_tail(const uint16_t *p, int r)
{
    uint16_t t[8] = {0};
    for (int i = 0; i < r; i++)
        t[i] = p[i];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
}

/* f16 -> f32 of a row of n elements (exact); reads src[0:n], writes dst[0:n]. */
static inline void h2f_row(const uint16_t *src, float *dst, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    if (i < n)
        _mm256_maskstore_ps(dst + i, lane_mask(n - i), load_h8_tail(src + i, n - i));
}

/* Weight streaming of the matrix-vector kernels (avx2/gemv_q.h, avx512/gemv_q4.h): one row
 * after another, and every step prefetches its bytes ahead, short q4 groups included (a gap of
 * 2-3 lines per row left to demand loads cost 30 points of read bandwidth at 2.7B's
 * mlp_down), never past the call's last row (pf_end: with threads a call is a chunk of rows).
 * Two ways, by who shares the memory:
 *   threads sharing it (the plain slots) prefetch into L2 (T1) only the first two lines of each
 *   4 KB page WEIGHT_PF_L2 = 16 KB ahead: the hardware prefetcher stops at 4 KB boundaries and
 *   restarts from those lines, and that is enough. Every line prefetched into L2 made two threads
 *   3-4 points of the roofline slower in generation (84-85% against 87-89%) with slow memory.
 *   Nothing into L1: lines prefetched into L1 2 KB ahead (non-temporally, as until the seventh
 *   session) each held one of the core's few L1 miss buffers for a whole DRAM latency when the
 *   line was not in L2 yet. Measured in bench_e2e -t 2, steps rotating between the variants in
 *   one process, grouped by the speed of each step's paired plain read: 78-79% of the roofline
 *   against 73-74% with fast memory (> 40 GB/s), 90-92% against 88-90% with slow (< 33 GB/s);
 *   into L1 512 B (T0) or 1 KB (NTA) ahead: worse; at the AVX2 level (VLM_ISA=avx2): level.
 *   a thread streaming alone (kernel_table's *_alone slots: one thread) prefetches every line
 *   into L2 and into L1 (NTA, WEIGHT_PF = 2 KB ahead): one core's bandwidth is the bytes it has
 *   in flight over the latency, and a core tracks more outstanding L2 fills than L1 fills (NTA
 *   alone gave one thread 75-79% of the paired read against 93-97%, bench_kernels -t 1 -k q4
 *   -l gfni); without the L1 prefetch, level (one thread: 79% against 80%).
 * The out-of-order window covers only ~1 KB of those loops. */
enum { WEIGHT_PF = 2048, WEIGHT_PF_L2 = 16384, PAGE_4K = 4096 };

/* Prefetches the bytes [p + d, p + d + n) that lie before pf_end, as said above (alone: every
 * line at both distances; else the first two lines of each 4 KB page starting in that range, at
 * the L2 distance). Addresses are integers: they may lie past the matrix, where pointer
 * arithmetic is undefined. */
static inline __attribute__((always_inline)) void prefetch_weights(const unsigned char *p, size_t n,
                                                                   uintptr_t pf_end, int alone)
{
    uintptr_t a = (uintptr_t)p + WEIGHT_PF_L2;
    if (!alone) {
        uintptr_t pg = (a + PAGE_4K - 1) & ~(uintptr_t)(PAGE_4K - 1);
        if (pg < a + n)
            for (uintptr_t o = 0; o < 128 && pg + o < pf_end; o += 64)
                _mm_prefetch((const char *)(pg + o), _MM_HINT_T1);
        return;
    }
    for (size_t o = 0; o < n && a + o < pf_end; o += 64)
        _mm_prefetch((const char *)(a + o), _MM_HINT_T1);
    a = (uintptr_t)p + WEIGHT_PF;
    for (size_t o = 0; o < n && a + o < pf_end; o += 64)
        _mm_prefetch((const char *)(a + o), _MM_HINT_NTA);
}

/* Rows [r, r1) of a matrix (row stride wrow bytes), bytes [lo, hi) of each: the weights a q8/q4
 * product for m > 1 (avx2/gemm_q.c, avx512/gemm.c) packs next, the next k-chunk of its rows or
 * the first of the next rows, prefetched into L2 a few lines per token tile while the tiles
 * work on what was packed last. The packing otherwise met every weight line as a miss to DRAM
 * (in prefill the q4 scale gather was the hottest instruction); prefetching all of a chunk at
 * once stalled the tiles behind the misses in flight. Measured with bench_e2e -t 2: at
 * AVX-512, runs alternating with and without it in one process (medians of 10), prefill 192
 * against 166 tokens/s, q8 vision tower 951 against 1017 ms; at AVX2 (VLM_ISA=avx2, three
 * pairs of invocations) prefill 68-89 -> 80-86 tokens/s, vision 2373-2733 -> 2245-2425 ms.
 * (The f16 panels of the vision tower, prefetched the same way: level.) */
typedef struct next_pf {
    const unsigned char *w;
    size_t wrow, lo, hi, at; /* at: the next line's offset in row r */
    int r, r1, per_step;
} next_pf;

/* What a q8/q4 product packs after blocks [b0, b0 + nbc) of its row group [jg, je): the next
 * chunk of qkc blocks of those rows, or the first of the next group (up to group rows, not past
 * n1); nothing after the last. Spread over steps token tiles. q4 from the first scale to the
 * last nibble byte (a chunk in the second half of a group so includes the first half's
 * nibbles, already read). */
static inline next_pf q_next_chunk(int q4, int nb, int b0, int nbc, int qkc, const void *w, size_t wrow, int jg,
                                   int je, int n1, int group, int steps)
{
    int r0 = jg, r1 = je;
    if (b0 + nbc < nb) {
        b0 += nbc;
    } else if (je < n1) {
        b0 = 0;
        r0 = je;
        r1 = n1 - je < group ? n1 : je + group;
    } else {
        return (next_pf){.r = 0};
    }
    nbc = nb - b0 < qkc ? nb - b0 : qkc;
    size_t lo = q4 ? q4_scale_off(b0) : (size_t)b0 * sizeof(blk_q8);
    size_t hi = q4 ? q4_nibbles_off(nb, b0 + nbc - 1) + 16 : (size_t)(b0 + nbc) * sizeof(blk_q8);
    next_pf p = {.w = w, .wrow = wrow, .lo = lo & ~(size_t)63, .hi = hi, .at = lo & ~(size_t)63, .r = r0, .r1 = r1};
    size_t lines = (size_t)(r1 - r0) * ((hi - p.lo + 63) / 64);
    p.per_step = (int)((lines + (size_t)steps - 1) / (size_t)steps);
    return p;
}

/* The next per_step prefetches of p (none once its rows are done). */
static inline void next_pf_step(next_pf *p)
{
    for (int n = p->per_step; n > 0 && p->r < p->r1; n--) {
        _mm_prefetch((const char *)(p->w + (size_t)p->r * p->wrow + p->at), _MM_HINT_T1);
        p->at += 64;
        if (p->at >= p->hi) {
            p->r++;
            p->at = p->lo;
        }
    }
}

/* K/V rows of the attention kernels (kernels/avx2/attn.c, kernels/avx512/attn.c): elements of
 * type et = WT_F32, WT_F16 or WT_Q8 (rows of head_dim / 32 blk_q8); et is a compile-time
 * constant at every call (the functions taking it are always inlined into each level's three
 * exported kernels, one per element type). Offsets between rows and heads count units:
 * elements, or blocks for q8. Widening is exact: f16 by F16C, a q8 element as (float)code
 * times the block's f16 scale, a product that f32 holds exactly. */
#define KV_INLINE static inline __attribute__((always_inline))

/* The units of a row of d elements (d % 32 == 0 for q8). */
KV_INLINE size_t kv_units(int d, int et) { return et == WT_Q8 ? (size_t)d / QK : (size_t)d; }

/* The address n units after p. */
KV_INLINE const void *kv_at(const void *p, size_t n, int et)
{
    if (et == WT_Q8)
        return (const blk_q8 *)p + n;
    return et == WT_F16 ? (const void *)((const uint16_t *)p + n) : (const void *)((const float *)p + n);
}

/* Decoding attention reads a head's keys, then its values, as two streams of short rows (1.7B:
 * 256 B) and only 64 KB each at a 256-token context, where the hardware prefetcher is still
 * ramping up. Every line of the row KV_PF bytes ahead, prefetched into L2, made the attention of
 * two threads read the cache 13% faster (timers around it in bench_e2e -t 2: 28.8 against
 * 25.4 GB/s, means of four interleaved rounds; 6 KB ahead better than 4, 8 or 16 KB; into L1 or
 * non-temporally slower) and generation +0.6 points of the roofline (steps alternating with and
 * without it in one process, both parities). */
enum { KV_PF = 6144 };

/* Bytes of a unit. */
KV_INLINE size_t kv_unit_bytes(int et) { return et == WT_Q8 ? sizeof(blk_q8) : et == WT_F16 ? 2 : 4; }

/* Rows between a decoding row and the one it prefetches: KV_PF bytes of rows ld units apart,
 * at least one (at most KV_PF / 2). */
KV_INLINE int kv_pf_rows(size_t ld, int et)
{
    size_t rows = ld ? KV_PF / (ld * kv_unit_bytes(et)) : 1;
    return rows ? (int)rows : 1;
}

/* Prefetches into L2 every line holding a byte of row j (d elements, rows ld units apart) of p,
 * if j < n. */
KV_INLINE void kv_prefetch_row(const void *p, int j, int n, size_t ld, int d, int et)
{
    if (j >= n)
        return;
    uintptr_t r = (uintptr_t)kv_at(p, (size_t)j * ld, et), end = r + kv_units(d, et) * kv_unit_bytes(et);
    for (uintptr_t a = r & ~(uintptr_t)63; a < end; a += 64)
        _mm_prefetch((const char *)a, _MM_HINT_T1);
}

/* Elements i .. i + 7 (i % 8 == 0) of the q8 row p as f32: vpmovsxbd, vcvtdq2ps, times the
 * block's scale. */
KV_INLINE __m256 q8_load8(const void *p, int i)
{
    const blk_q8 *b = (const blk_q8 *)p + (unsigned)i / QK;
    __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + (unsigned)i % QK))));
    return _mm256_mul_ps(x, _mm256_set1_ps(h2f(b->d)));
}

/* The f16 or q8 row p (d elements) widened into buf[0:d]. */
KV_INLINE void kv_widen(const void *p, int d, float *buf, int et)
{
    if (et == WT_F16) {
        h2f_row((const uint16_t *)p, buf, d);
        return;
    }
    for (int i = 0; i < d; i += 8)
        _mm256_storeu_ps(buf + i, q8_load8(p, i));
}

/* Row p (d elements) as f32: an f32 row in place, an f16 or q8 row widened into buf. */
KV_INLINE const float *kv_row(const void *p, int d, float *buf, int et)
{
    if (et == WT_F32)
        return (const float *)p;
    kv_widen(p, d, buf, et);
    return buf;
}

/* Row j (stride ld) of an f32 array; f16, q8: row jb of buf, where the caller widened it. */
KV_INLINE const float *kv_row_f32(const void *p, int j, size_t ld, float (*buf)[256], int jb, int et)
{
    return et != WT_F32 ? buf[jb] : (const float *)p + (size_t)j * ld;
}

/* exp(x) for 8 lanes: range reduction x = n ln2 + r with a two-part ln2 (|r| <= ln2/2), a
 * degree-6 polynomial for e^r (relative error < 2e-7, about 2 ulp with the final scaling), and
 * 2^n built in the exponent field. x < -87.3 gives 0 (no subnormals), x > 88.7 gives +inf,
 * NaN stays NaN. */
static inline __m256 exp8(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.72283f), lo = _mm256_set1_ps(-87.33654f);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* n in [-126, 128]: split 2^n = 2^(n/2) 2^(n - n/2) so n = 128 (x near 88.7) stays finite. */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
    y = _mm256_andnot_ps(under, y);
    /* NaN in, NaN out (min/max above dropped it). */
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

#endif
