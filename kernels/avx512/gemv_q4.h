/* gemv_q4.h (avx512): gemm_q4 for one activation row (m = 1, token generation), the kernel that
 * decides tokens/s. Included by gemv.c (GEMV_GFNI 0: AVX-512 F/BW/VL/VNNI) and gfni.c
 * (GEMV_GFNI 1: the high nibbles in one GFNI affine instead of a shift and a mask), each
 * defining GEMV_Q4_NAME.
 *
 * 16 blocks (288 bytes of a row, 4 groups of 4) per step:
 *   per group, two loads cover its 72 bytes and one vpermt2w (word granularity suffices: a block
 *   is 9 words) gathers the 4 x 16 nibble bytes so that dword lane 4i + q holds nibble bytes
 *   4i..4i+3 of block q; low and high nibbles (elements 0..15 and 16..31) meet activation codes
 *   repacked once per call into the same order, in two vpdpbusd;
 *   the 4 groups' partial dots are summed across 128-bit lanes (6 shuffles, 3 adds) into one
 *   register with block b in lane b, plus the excess -8 * sum(codes) of each block (the nibble
 *   is q + 8), exact in int32;
 *   the 16 weight scales, gathered by two vpermt2w from the groups' first loads, are converted
 *   once, times the activation scales, and one FMA adds the 16 block products.
 * So the per-block float work (convert, scale, FMA) is done once per block, not once per dword
 * lane: measured on Zen 4 (in L2) 29 GB/s with per-group float work, 32 with this, 33.6 with
 * GFNI. One row at a time: two interleaved rows computed faster in cache but streamed DRAM at
 * half the rate (the same finding as avx2/gemv_q.h). Every row runs the same sequence whatever
 * the range, so thread splits never change a result. */
#ifndef VLM_GEMV_Q4_H
#define VLM_GEMV_Q4_H

#include <string.h>

#include "../avx2/simd.h"
#include "kernels.h"

enum { QB = 16,     /* blocks per step (4 groups of 4) */
       SCQ = 32 };  /* steps per super-chunk: 512 blocks (k <= 16384 in one); tables fit the stack */

/* Activation side of one step of 16 blocks, in the lane order of the weight registers. */
typedef struct act_step {
    int8_t lo[4][64]; /* (group g, dword lane 4i + q, byte j) = code 4i + j of block 4g + q */
    int8_t hi[4][64]; /* the same for codes 16 + 4i + j */
    int32_t ex[16];   /* (block) -8 * sum of its codes */
    float d[16];      /* (block) scale */
} act_step;

/* Tables for blocks [b0, b0 + nbc) of a; the missing blocks of the last step are zero (they
 * add nothing: zero codes, zero excess, zero scale). */
static void act_tables(const blk_q8 *a, int b0, int nbc, act_step *t)
{
    int ns = (nbc + QB - 1) / QB;
    memset(t, 0, sizeof *t * (size_t)ns);
    for (int b = 0; b < nbc; b++) {
        const blk_q8 *ab = a + b0 + b;
        act_step *u = t + b / QB;
        int g = b % QB / 4, q = b % 4, s = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                u->lo[g][4 * (4 * i + q) + j] = ab->qs[4 * i + j];
                u->hi[g][4 * (4 * i + q) + j] = ab->qs[16 + 4 * i + j];
            }
        for (int e = 0; e < QK; e++)
            s += ab->qs[e];
        u->ex[b % QB] = -8 * s;
        u->d[b % QB] = h2f(ab->d);
    }
}

/* Word indexes for _mm512_set_epi16 (highest first): result word 8i + 2q + h <- word
 * 9q + 1 + 2i + h of the group's 72 bytes (>= 32: the second load). */
#define NIB_W(i, q) 9 * (q) + 2 + 2 * (i), 9 * (q) + 1 + 2 * (i)
#define NIB_ROW(i) NIB_W(i, 3), NIB_W(i, 2), NIB_W(i, 1), NIB_W(i, 0)

/* Software prefetch distance: the OoO window covers only ~1 KB of this loop, too little to keep
 * enough DRAM reads in flight; 2 KB ahead measured best of 1-4 KB. Non-temporal, because weights
 * are used once per token: NTA keeps them out of the (victim) L3 and measured 10-15% faster
 * than T0 on Zen 4. */
enum { PF_AHEAD = 2048 };

/* acc + the products of nb (1..16) blocks of a row at p with the step's tables; nb < 16 loads
 * only the blocks' own bytes (masked), so the end of a matrix is never over-read. */
static inline __attribute__((always_inline)) __m512 step_dot(__m512 acc, const unsigned char *p, const act_step *t,
                                                             int nb)
{
    const __m512i nib_idx = _mm512_set_epi16(NIB_ROW(3), NIB_ROW(2), NIB_ROW(1), NIB_ROW(0));
    /* words 0, 9, 18, 27 (the scales) of the first source, then of the second */
    const __m512i sc_idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 59,
                                            50, 41, 32, 27, 18, 9, 0);
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i l0[4], d[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const unsigned char *pg = p + 4 * sizeof(blk_q4) * g;
        __m512i l1;
        if (nb == QB) {
            /* The second load is 64-bit: exactly the group's last 8 bytes. */
            l0[g] = _mm512_loadu_si512(pg);
            l1 = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(pg + 64)));
        } else {
            int bytes = (int)sizeof(blk_q4) * (nb - 4 * g);
            bytes = bytes < 0 ? 0 : bytes > 72 ? 72 : bytes;
            __mmask64 m0 = bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << bytes) - 1;
            __mmask64 m1 = bytes > 64 ? ((__mmask64)1 << (bytes - 64)) - 1 : 0;
            l0[g] = _mm512_maskz_loadu_epi8(m0, pg);
            l1 = _mm512_maskz_loadu_epi8(m1, pg + 64);
        }
        __m512i nib = _mm512_permutex2var_epi16(l0[g], nib_idx, l1);
        __m512i lo = _mm512_and_si512(nib, low4);
#if GEMV_GFNI
        /* Affine map over GF(2) per byte: output bit i = input bit i + 4 (matrix row for bit i
         * in byte 7 - i). */
        __m512i hi = _mm512_gf2p8affine_epi64_epi8(nib, _mm512_set1_epi64(0x1020408000000000LL), 0);
#else
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(nib, 4), low4);
#endif
        d[g] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(t->lo[g]));
        d[g] = _mm512_dpbusd_epi32(d[g], hi, _mm512_loadu_si512(t->hi[g]));
    }
    /* d[g] 128-bit lane i = partial dots of blocks 4g..4g+3; sum over i, groups side by side. */
    __m512i e01 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[0], d[1], 0x44), _mm512_shuffle_i32x4(d[0], d[1], 0xee));
    __m512i e23 = _mm512_add_epi32(_mm512_shuffle_i32x4(d[2], d[3], 0x44), _mm512_shuffle_i32x4(d[2], d[3], 0xee));
    __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(e01, e23, 0x88), _mm512_shuffle_i32x4(e01, e23, 0xdd));
    r = _mm512_add_epi32(r, _mm512_loadu_si512(t->ex));
    __m512i sa = _mm512_permutex2var_epi16(l0[0], sc_idx, l0[1]), sb = _mm512_permutex2var_epi16(l0[2], sc_idx, l0[3]);
    __m256i sc = _mm256_inserti128_si256(_mm512_castsi512_si256(sa), _mm512_castsi512_si128(sb), 1);
    __m512 s = _mm512_mul_ps(_mm512_cvtph_ps(sc), _mm512_loadu_ps(t->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(r), s, acc);
}

/* One row over the nbc blocks of a super-chunk: the sum of their products. */
static inline float row_chunk(const unsigned char *wr, int nbc, const act_step *t)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int b = 0, s = 0;
    for (; b + QB <= nbc; b += QB, s++) {
        const unsigned char *p = wr + (size_t)b * sizeof(blk_q4);
        for (int o = 0; o < QB * (int)sizeof(blk_q4); o += 64)
            _mm_prefetch((const char *)p + PF_AHEAD + o, _MM_HINT_NTA);
        /* Two accumulators: the FMA latency chain halves. */
        if (s & 1)
            acc1 = step_dot(acc1, p, t + s, QB);
        else
            acc0 = step_dot(acc0, p, t + s, QB);
    }
    if (b < nbc)
        acc0 = step_dot(acc0, wr + (size_t)b * sizeof(blk_q4), t + s, nbc - b);
    __m512 v = _mm512_add_ps(acc0, acc1);
    __m256 hi8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi8));
}

/* Contract: kernels.h gemm_q4 with m = 1: c[n0:n1] = a . w[n0:n1]^T (+ bias); k % 32 == 0.
 * Within a row the blocks are summed in a fixed lane order, not in block order: the result
 * matches the reference within kernels/tolerance.h, and is the same for any [n0, n1). */
void GEMV_Q4_NAME(int n0, int n1, int k, const blk_q8 *a, const blk_q4 *w, const float *bias, float *c)
{
    int nb = k / QK;
    size_t wrow = (size_t)nb * sizeof(blk_q4);
    act_step t[SCQ]; /* 24 KB */
    for (int b0 = 0; b0 < nb; b0 += SCQ * QB) {
        int nbc = nb - b0 < SCQ * QB ? nb - b0 : SCQ * QB;
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

#endif
