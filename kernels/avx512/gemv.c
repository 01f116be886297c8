/* gemv.c (avx512): gemm_q4 for one activation row (m = 1, token generation), the kernel that
 * decides tokens/s. The AVX2 path (avx2/gemv_q.h) spends ~3.4 cycles per 18-byte block on
 * Zen 4, below the memory's pace; here 4 blocks (72 bytes) go through one 512-bit register:
 *   two loads cover the 72 bytes; one vpermt2w gathers the 4 x 16 nibble bytes (a block is 9
 *   words, so word granularity suffices and AVX512BW is enough), one vpermw the 4 scales, each
 *   repeated over its block's 4 dword lanes;
 *   low and high nibbles (elements 0..15 and 16..31 of each block) meet activation codes
 *   repacked once per call into the same order, in two vpdpbusd whose accumulator starts at
 *   -8 * sum(block codes) in one lane per block (the nibble is q + 8; the excess comes off
 *   exactly in int32);
 *   the 16 dword partial dots become floats and one FMA adds them times (weight scale x
 *   activation scale) to the row's accumulators.
 * Every row runs the same sequence whatever the range, so thread splits never change a result. */
#ifndef __AVX512VNNI__
#error "kernels/avx512 files must be built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif
#include <string.h>

#include "../avx2/simd.h"
#include "kernels.h"

void gemv_q4_avx512(int n0, int n1, int k, const blk_q8 *a, const blk_q4 *w, const float *bias, float *c);

enum { G4 = 4,      /* blocks per register */
       SCG = 128 }; /* groups per super-chunk (512 blocks, k <= 16384 in one): its tables fit the stack */

/* Activation side of one group of 4 blocks, in the lane order of the weight registers. */
typedef struct act_group {
    int8_t lo[64];   /* (4 blocks, 16): codes 0..15 of each block */
    int8_t hi[64];   /* (4 blocks, 16): codes 16..31 */
    int32_t ex[16];  /* (4 blocks, 4): -8 * sum(codes) in the first lane of each block, else 0 */
    float d[16];     /* (4 blocks, 4): the block's scale in its 4 lanes */
} act_group;

/* Tables for blocks [b0, b0 + nbc) of a; missing blocks of the last group are zero (they add
 * nothing: zero codes, zero excess). */
static void act_tables(const blk_q8 *a, int b0, int nbc, act_group *t)
{
    int ng = (nbc + G4 - 1) / G4;
    memset(t, 0, sizeof *t * (size_t)ng);
    for (int q = 0; q < nbc; q++) {
        const blk_q8 *ab = a + b0 + q;
        act_group *g = t + q / G4;
        int l = q % G4, s = 0;
        memcpy(g->lo + 16 * l, ab->qs, 16);
        memcpy(g->hi + 16 * l, ab->qs + 16, 16);
        for (int e = 0; e < QK; e++)
            s += ab->qs[e];
        g->ex[4 * l] = -8 * s;
        float d = h2f(ab->d);
        for (int e = 0; e < 4; e++)
            g->d[4 * l + e] = d;
    }
}

/* Word indexes, highest first as _mm512_set_epi16 takes them: nibble bytes of block q (words
 * 9q+1 .. 9q+8 of the 72 bytes; >= 32 selects the second register), and block q's scale
 * (word 9q) for result words 4q..4q+3. */
#define NIB_IDX(q) 9 * (q) + 8, 9 * (q) + 7, 9 * (q) + 6, 9 * (q) + 5, 9 * (q) + 4, 9 * (q) + 3, 9 * (q) + 2, 9 * (q) + 1
#define SC_IDX(q) 9 * (q), 9 * (q), 9 * (q), 9 * (q)

/* Software prefetch distance: the OoO window covers only ~1 KB of this loop, too little to keep
 * enough DRAM reads in flight; 2 KB ahead measured best of 1-4 KB. Non-temporal, because weights
 * are used once per token: NTA keeps them out of the (victim) L3 and measured 10-15% faster
 * than T0 on Zen 4. */
enum { PF_AHEAD = 2048 };

/* acc + the products of one group of 4 blocks at p (72 bytes: l0 = bytes 0..63, l1 = 64..71). */
static inline __m512 group_dot(__m512 acc, __m512i l0, __m512i l1, const act_group *t)
{
    const __m512i nib_idx = _mm512_set_epi16(NIB_IDX(3), NIB_IDX(2), NIB_IDX(1), NIB_IDX(0));
    const __m512i sc_idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, SC_IDX(3), SC_IDX(2),
                                            SC_IDX(1), SC_IDX(0));
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i nib = _mm512_permutex2var_epi16(l0, nib_idx, l1);
    __m256i sc = _mm512_castsi512_si256(_mm512_permutexvar_epi16(sc_idx, l0));
    __m512i lo = _mm512_and_si512(nib, low4), hi = _mm512_and_si512(_mm512_srli_epi16(nib, 4), low4);
    __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512(t->ex), lo, _mm512_loadu_si512(t->lo));
    d = _mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512(t->hi));
    __m512 s = _mm512_mul_ps(_mm512_cvtph_ps(sc), _mm512_loadu_ps(t->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, acc);
}

/* One row over the nbc blocks of a super-chunk: the sum of their products. */
static inline float row_chunk(const unsigned char *wr, int nbc, const act_group *t)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int nfull = nbc / G4, g = 0;
    const size_t gsz = G4 * sizeof(blk_q4);
    /* Two groups per step into two accumulators (the FMA latency chain halves). The second
     * load of a group is a 64-bit one: exactly its last 8 bytes, nothing past the matrix. */
#define LOADS(p) _mm512_loadu_si512(p), _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)((p) + 64)))
    for (; g + 2 <= nfull; g += 2) {
        const unsigned char *p = wr + (size_t)g * gsz;
        _mm_prefetch((const char *)p + PF_AHEAD, _MM_HINT_NTA);
        _mm_prefetch((const char *)p + PF_AHEAD + 64, _MM_HINT_NTA);
        _mm_prefetch((const char *)p + PF_AHEAD + 128, _MM_HINT_NTA);
        acc0 = group_dot(acc0, LOADS(p), t + g);
        acc1 = group_dot(acc1, LOADS(p + gsz), t + g + 1);
    }
    if (g < nfull) {
        const unsigned char *p = wr + (size_t)g * gsz;
        acc0 = group_dot(acc0, LOADS(p), t + g);
        g++;
    }
#undef LOADS
    if (nbc % G4) {
        /* 1..3 blocks: only their bytes are loaded; the tables are zero beyond them. */
        __mmask64 mk = ((__mmask64)1 << (sizeof(blk_q4) * (size_t)(nbc % G4))) - 1;
        acc1 = group_dot(acc1, _mm512_maskz_loadu_epi8(mk, wr + (size_t)g * gsz), _mm512_setzero_si512(), t + g);
    }
    __m512 v = _mm512_add_ps(acc0, acc1);
    __m256 hi8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi8));
}

/* Contract: kernels.h gemm_q4 with m = 1: c[n0:n1] = a . w[n0:n1]^T (+ bias); k % 32 == 0.
 * Within a row the blocks are summed in a fixed lane order, not in block order: the result
 * matches the reference within kernels/tolerance.h, and is the same for any [n0, n1). */
void gemv_q4_avx512(int n0, int n1, int k, const blk_q8 *a, const blk_q4 *w, const float *bias, float *c)
{
    int nb = k / QK;
    size_t wrow = (size_t)nb * sizeof(blk_q4);
    act_group t[SCG];
    for (int b0 = 0; b0 < nb; b0 += SCG * G4) {
        int nbc = nb - b0 < SCG * G4 ? nb - b0 : SCG * G4;
        act_tables(a, b0, nbc, t);
        const unsigned char *wb = (const unsigned char *)w + (size_t)b0 * sizeof(blk_q4);
        for (int j = n0; j < n1; j++) {
            float s = row_chunk(wb + (size_t)j * wrow, nbc, t);
            c[j] = b0 ? c[j] + s : s;
        }
    }
    if (bias)
        for (int j = n0; j < n1; j++)
            c[j] += bias[j];
}
