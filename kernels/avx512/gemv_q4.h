/* gemv_q4.h (avx512): gemm_q4 for one activation row (m = 1, token generation), the kernel that
 * decides tokens/s. Included by gemv.c (GEMV_GFNI 0: AVX-512 F/BW/VL/VNNI) and gfni.c
 * (GEMV_GFNI 1: the high nibbles in one GFNI affine instead of a shift and a mask), each
 * defining GEMV_Q4_NAME and GEMV_Q4_ALONE_NAME (the prefetch of one thread streaming alone).
 *
 * One step per 16-block group of the q4 row layout (kernels.h: 16 scales, then 256 nibble
 * bytes; 288 bytes):
 *   one 256-bit load of the 16 scales and 4 contiguous 512-bit loads of the nibbles at +32,
 *   +96, +160, +224: register g holds blocks 4g..4g+3, block 4g + q in 128-bit lane q, nibble
 *   byte j at byte j of that lane;
 *   lo = v & 0x0f, hi = the high nibbles; d[g] = dpbusd(dpbusd(0, lo, act_lo[g]), hi,
 *   act_hi[g]) with the activation codes in their natural order (act_lo[g] byte 16q + j = code
 *   j of block 4g + q, act_hi code 16 + j), so d[g] dword 4q + i = partial dot i of block 4g + q;
 *   a 4x4 dword transpose inside each 128-bit lane, added as it goes (unpack lo/hi epi32 of
 *   d0, d1 and of d2, d3, then epi64), leaves dword 4q + g = the dot of block 4g + q, plus the
 *   excess -8 * sum(codes) of each block (the nibble is q + 8) from a table in that order,
 *   exact in int32;
 *   the 16 scales converted once, permuted into the same lane order (one vpermps), times the
 *   activation scales (same order), and one FMA adds the 16 block products (two accumulators
 *   alternating steps).
 * The short last group of a row (r < 16 blocks: r scales, then 16 r nibble bytes) is read with
 * loads masked to exactly its bytes, with zero tables for the missing blocks, so the end of a
 * matrix is never over-read. Weights are prefetched as simd.h's prefetch_weights says.
 * Measured on Zen 4 with the weights in L2 (n = 256, k = 2048): 45 GB/s with GFNI and 39-42
 * without when each nibble load was forced into one register (see step_dot for why it no
 * longer is), against 33.5 / 31.5 for the former kernel on plain block_q4_0 arrays (a 64 +
 * 8-byte load per 4 blocks and vpermt2w gathers of nibbles and scales). One row at a time: two
 * interleaved rows computed faster in cache but streamed DRAM at half the rate (the same
 * finding as avx2/gemv_q.h). Every row runs the same sequence whatever the range, so thread
 * splits never change a result. */
#ifndef VLM_GEMV_Q4_H
#define VLM_GEMV_Q4_H

#include <string.h>

#include "../avx2/simd.h"
#include "kernels.h"

enum { QB = Q4_GROUP, /* blocks per step: one group of the row layout */
       SCQ = 32 };    /* steps per super-chunk: 512 blocks (k <= 16384 in one); tables fit the stack */

/* Activation side of one step (16 blocks), in the lane order of the weight registers: the
 * codes in the natural order (register g holds blocks 4g..4g+3, block 4g + q in 128-bit lane
 * q), the per-block values in the order of the lane sums (dword lane 4q + g = block 4g + q). */
typedef struct act_step {
    int8_t lo[QB * 16]; /* (block b, byte j) = code j of block b: register g is lo + 64 g */
    int8_t hi[QB * 16]; /* the same for codes 16 + j */
    int32_t ex[QB];     /* (lane 4q + g) -8 * sum of the codes of block 4g + q */
    float d[QB];        /* (lane 4q + g) scale of block 4g + q */
} act_step;

/* d[g] dword 4q + i = partial sum i of block 4g + q (g = 0..3, i = 0..3): a 4x4 transpose
 * inside each 128-bit lane, added as it goes, leaves dword 4q + g = the sum of block 4g + q. */
static inline __attribute__((always_inline)) __m512i block_sums(const __m512i d[4])
{
    __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
    __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

/* Tables for blocks [b0, b0 + nbc) of a; the missing blocks of the last step are zero (they
 * add nothing: zero codes, zero excess, zero scale). Built once per call, ~2000 calls per token
 * of 1.4B with two threads: the excess is summed in the step's own lane layout (dot products
 * with ones, then block_sums) and only the short last step is cleared, 558 cycles per call in
 * generation against 936 with a scalar sum per block and the whole table cleared. */
static void act_tables(const blk_q8 *a, int b0, int nbc, act_step *t)
{
    int ns = (nbc + QB - 1) / QB;
    if (nbc % QB)
        memset(t + ns - 1, 0, sizeof *t);
    for (int b = 0; b < nbc; b++) {
        const blk_q8 *ab = a + b0 + b;
        act_step *u = t + b / QB;
        int i = b % QB;
        memcpy(u->lo + 16 * i, ab->qs, 16);
        memcpy(u->hi + 16 * i, ab->qs + 16, 16);
        u->d[4 * (i % 4) + i / 4] = h2f(ab->d);
    }
    const __m512i ones = _mm512_set1_epi8(1);
    for (int s = 0; s < ns; s++) {
        __m512i d[4];
        for (int g = 0; g < 4; g++) {
            d[g] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(t[s].lo + 64 * g));
            d[g] = _mm512_dpbusd_epi32(d[g], ones, _mm512_loadu_si512(t[s].hi + 64 * g));
        }
        /* -8 * sum */
        _mm512_storeu_si512(t[s].ex, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(block_sums(d), 3)));
    }
}

/* acc + the products of the group of r (1..16) blocks at p with the step's tables: r scales,
 * then r x 16 nibble bytes. r < 16 (the last group of a row) loads only the group's own bytes
 * (masked), so the end of a matrix is never over-read. */
static inline __attribute__((always_inline)) __m512 step_dot(__m512 acc, const unsigned char *p, const act_step *t,
                                                             int r)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m256i sc;
    __m512i d[4];
    if (r == QB)
        sc = _mm256_loadu_si256((const __m256i *)p);
    else
        sc = _mm256_maskz_loadu_epi16((__mmask16)((1u << r) - 1), p);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        __m512i v;
        if (r == QB) {
            /* GCC folds this load into both the and and the affine (two loads of the same 64
             * bytes). An empty asm forcing one load made the kernel faster in L2 (37.7 -> 45
             * GB/s) but generation from DRAM slower (bench_e2e: 70-76% of the roofline against
             * 83-86% without), so the loads stay as the compiler schedules them. */
            v = _mm512_loadu_si512(p + 2 * r + 64 * g);
        } else {
            int bytes = 16 * r - 64 * g;
            bytes = bytes < 0 ? 0 : bytes > 64 ? 64 : bytes;
            __mmask64 m = bytes == 64 ? ~(__mmask64)0 : ((__mmask64)1 << bytes) - 1;
            v = _mm512_maskz_loadu_epi8(m, p + 2 * r + 64 * g);
        }
        __m512i lo = _mm512_and_si512(v, low4);
#if GEMV_GFNI
        /* Affine map over GF(2) per byte: output bit i = input bit i + 4 (matrix row for bit i
         * in byte 7 - i). */
        __m512i hi = _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(0x1020408000000000LL), 0);
#else
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
#endif
        d[g] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(t->lo + 64 * g));
        d[g] = _mm512_dpbusd_epi32(d[g], hi, _mm512_loadu_si512(t->hi + 64 * g));
    }
    __m512i sum = _mm512_add_epi32(block_sums(d), _mm512_loadu_si512(t->ex));
    /* The weight scales (block order) into the same lane order. */
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512 s = _mm512_mul_ps(_mm512_permutexvar_ps(perm, _mm512_cvtph_ps(sc)), _mm512_loadu_ps(t->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), s, acc);
}

/* One row over the nbc blocks of a super-chunk (starting at a group boundary): the sum of their
 * products; prefetches stop at pf_end. */
static inline __attribute__((always_inline)) float row_chunk(const unsigned char *wr, int nbc, const act_step *t,
                                                             uintptr_t pf_end, int alone)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int b = 0, s = 0;
    for (; b + QB <= nbc; b += QB, s++) {
        const unsigned char *p = wr + (size_t)b * Q4_BLOCK_BYTES;
        prefetch_weights(p, Q4_GROUP_BYTES, pf_end, alone);
        /* Two accumulators: the FMA latency chain halves. */
        if (s & 1)
            acc1 = step_dot(acc1, p, t + s, QB);
        else
            acc0 = step_dot(acc0, p, t + s, QB);
    }
    if (b < nbc) {
        /* The short group's bytes too: a gap of two or three lines per row left to demand
         * loads measured 60% of the paired read instead of 90% at 2.7B's mlp_down (13.5
         * groups per row). */
        const unsigned char *p = wr + (size_t)b * Q4_BLOCK_BYTES;
        prefetch_weights(p, (size_t)(nbc - b) * Q4_BLOCK_BYTES, pf_end, alone);
        acc0 = step_dot(acc0, p, t + s, nbc - b);
    }
    __m512 v = _mm512_add_ps(acc0, acc1);
    __m256 hi8 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi8));
}

/* Contract: kernels.h gemm_q4 with m = 1: c[n0:n1] = a . w[n0:n1]^T (+ bias); k % 32 == 0; w is
 * rows of q4_row_bytes(k / 32) bytes. Within a row the blocks are summed in a fixed lane order,
 * not in block order: the result matches the reference within kernels/tolerance.h, and is the
 * same for any [n0, n1) and either prefetch (alone: simd.h's prefetch_weights). */
static inline __attribute__((always_inline)) void gemv_q4_body(int alone, int n0, int n1, int k, const blk_q8 *a,
                                                               const uint8_t *w, const float *bias, float *c)
{
    int nb = k / QK;
    size_t wrow = q4_row_bytes(nb);
    _Alignas(64) act_step t[SCQ]; /* 20 KB; whole cache lines per table row */
    for (int b0 = 0; b0 < nb; b0 += SCQ * QB) {
        int nbc = nb - b0 < SCQ * QB ? nb - b0 : SCQ * QB;
        act_tables(a, b0, nbc, t);
        /* b0 is a multiple of 16: whole groups of 288 bytes precede it. */
        const unsigned char *wb = w + (size_t)b0 * Q4_BLOCK_BYTES;
        uintptr_t pf_end = (uintptr_t)wb + (uintptr_t)n1 * wrow;
        for (int j = n0; j < n1; j++) {
            float s = row_chunk(wb + (size_t)j * wrow, nbc, t, pf_end, alone);
            c[j] = b0 ? c[j] + s : s;
        }
    }
    if (bias)
        for (int j = n0; j < n1; j++)
            c[j] += bias[j];
}

void GEMV_Q4_NAME(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c)
{
    gemv_q4_body(0, n0, n1, k, a, w, bias, c);
}

void GEMV_Q4_ALONE_NAME(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c)
{
    gemv_q4_body(1, n0, n1, k, a, w, bias, c);
}

#endif
