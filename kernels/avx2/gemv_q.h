/* gemv_q.h (avx2; included through gemm_q.h, and by kernels/avx512/gemm.c, with GEMV_VNNI 1
 * for vpdpbusd block dots, else GEMV_VNNI 0 for maddubs): the m = 1 path of gemm_q8/q4 (at
 * AVX-512 only q8 uses it). Blocks go in steps of 8: 8 exact int32 block dots reduced by an
 * hadd tree to one vector (q8: lane q = block q; q4: a fixed permutation, see gemv_row_q4),
 * converted once, times the 8 scale products in one FMA. One element = over super-chunks of SC blocks in order: an 8-lane
 * accumulator over its steps, hsum8, summed in C; bias last. */
#ifndef VLM_GEMV_Q_H
#define VLM_GEMV_Q_H

#include <string.h>

#include "kernels.h"
#include "simd.h"

/* vpdpbusd on 256 bits (acc + the dword sums of 4 products u8 x s8) in the encoding the file is
 * built for: EVEX (AVX-512 VNNI + VL) or VEX (AVX-VNNI). Same operation, same results. */
#if GEMV_VNNI
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define dpbusd256(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#elif defined(__AVXVNNI__)
#define dpbusd256(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#else
#error "GEMV_VNNI needs -mavxvnni or -mavx512vnni -mavx512vl"
#endif
#endif

enum { SC = 256 }; /* blocks per super-chunk: the per-block activation data fits the stack */

/* Lane q of the result = sum of the 8 lanes of p[q]. */
static inline __m256i tree8(const __m256i p[8])
{
    __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i h0 = _mm256_hadd_epi32(h01, h23), h1 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}

/* An unaligned little-endian u16 (the f16 scale of a block). */
static inline int ld16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* 8 f16 scales at p, p + stride, ... (the first ng; the rest 0), as f32. Built in a register:
 * a store/reload through memory would stall on store forwarding every group. */
static inline __m256 scales8(const unsigned char *p, size_t stride, int ng)
{
    __m128i t = _mm_setzero_si128();
    if (ng == 8) {
        t = _mm_insert_epi16(t, ld16(p), 0);
        t = _mm_insert_epi16(t, ld16(p + stride), 1);
        t = _mm_insert_epi16(t, ld16(p + 2 * stride), 2);
        t = _mm_insert_epi16(t, ld16(p + 3 * stride), 3);
        t = _mm_insert_epi16(t, ld16(p + 4 * stride), 4);
        t = _mm_insert_epi16(t, ld16(p + 5 * stride), 5);
        t = _mm_insert_epi16(t, ld16(p + 6 * stride), 6);
        t = _mm_insert_epi16(t, ld16(p + 7 * stride), 7);
    } else {
        uint16_t v[8] = {0};
        for (int q = 0; q < ng; q++)
            v[q] = (uint16_t)ld16(p + (size_t)q * stride);
        t = _mm_loadu_si128((const __m128i *)v);
    }
    return _mm256_cvtph_ps(t);
}

/* The exact int32 dot (8 lanes of 4 products each) of activation codes av with q8 weight block
 * wb. VNNI: the weight side is unsigned (w + 128), the excess 128 * sum(a) is subtracted per
 * group by the caller. maddubs (AVX2): |w| and a with w's sign (no excess). */
static inline __m256i block_dot(__m256i av, const blk_q8 *b)
{
    __m256i wv = _mm256_loadu_si256((const __m256i *)b->qs);
#if GEMV_VNNI
    return dpbusd256(_mm256_setzero_si256(), _mm256_xor_si256(wv, _mm256_set1_epi8((char)0x80)), av);
#else
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv)), ones);
#endif
}

/* One q8 weight row w against one activation row over the nbc blocks of a super-chunk: the sum
 * of their products. ad, ex: per-block activation scales and excess (index 0 = the chunk's
 * first block). */
static inline __attribute__((always_inline)) float gemv_row_q8(int nbc, const blk_q8 *a, const unsigned char *w,
                                                               const float *ad, const int32_t *ex, uintptr_t pf_end,
                                                               int alone)
{
    const size_t bsz = sizeof(blk_q8);
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < nbc; g += 8) {
        int ng = nbc - g < 8 ? nbc - g : 8;
        __m256 da = ng == 8 ? _mm256_loadu_ps(ad + g) : _mm256_maskload_ps(ad + g, lane_mask(ng));
        __m256i xs = ng == 8 ? _mm256_loadu_si256((const __m256i *)(ex + g))
                             : _mm256_maskload_epi32((const int *)(ex + g), lane_mask(ng));
        const unsigned char *wg = w + (size_t)g * bsz;
        prefetch_weights(wg, 8 * bsz, pf_end, alone);
        __m256i r;
        if (ng == 8) {
            /* The tree built as the dots come, so few registers are live. */
#define DOT(q) block_dot(_mm256_loadu_si256((const __m256i *)a[g + (q)].qs), (const blk_q8 *)wg + (q))
            __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(DOT(0), DOT(1)), _mm256_hadd_epi32(DOT(2), DOT(3)));
            __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(DOT(4), DOT(5)), _mm256_hadd_epi32(DOT(6), DOT(7)));
#undef DOT
            r = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
        } else {
            __m256i p[8];
            for (int q = 0; q < 8; q++)
                p[q] = q < ng ? block_dot(_mm256_loadu_si256((const __m256i *)a[g + q].qs), (const blk_q8 *)wg + q)
                              : _mm256_setzero_si256();
            r = tree8(p);
        }
        r = _mm256_sub_epi32(r, xs);
        __m256 s = _mm256_mul_ps(da, scales8(wg, bsz, ng));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r), s, acc);
    }
    return hsum8(acc);
}

/* q4 (the grouped row layout of kernels.h): 8 blocks per step, which lie in one group, so their
 * 8 scales are 16 contiguous bytes and their nibbles 128. A 32-byte load covers the nibbles of
 * blocks 2h and 2h + 1 (one per 128-bit lane); they meet activation codes rearranged once per
 * super-chunk (aq: per pair of blocks, codes 0..15 of both, then codes 16..31 of both), so the
 * dot of register h has block 2h in lanes 0..3 and block 2h + 1 in lanes 4..7, and three hadd
 * leave lane i = block 2i, lane 4 + i = block 2i + 1. The per-block activation tables are kept
 * in that lane order; the weight scales are permuted into it. */
static inline __m256i q4_pair_dot(__m256i x, const int8_t *ap)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    /* x in a register: GCC would otherwise load it twice (into the and and the shift). */
    __asm__("" : "+x"(x));
    __m256i lo = _mm256_and_si256(x, m4), hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
    __m256i al = _mm256_loadu_si256((const __m256i *)ap), ah = _mm256_loadu_si256((const __m256i *)(ap + 32));
#if GEMV_VNNI
    return dpbusd256(dpbusd256(_mm256_setzero_si256(), lo, al), hi, ah);
#else
    /* A pair sum of maddubs is at most 2 * 15 * 128 = 3840: lo + hi fits int16. */
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, al), _mm256_maddubs_epi16(hi, ah));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
#endif
}

/* One q4 row (w at a group boundary, nrem blocks from there to the row end) over the nbc blocks
 * of a super-chunk: the sum of their products. aq, ad, ex: the chunk's tables (above). Reads
 * only the row's bytes. */
static inline __attribute__((always_inline)) float gemv_row_q4(int nbc, int nrem, const int8_t *aq,
                                                               const unsigned char *w, const float *ad,
                                                               const int32_t *ex, uintptr_t pf_end, int alone)
{
    const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    __m256 acc = _mm256_setzero_ps();
    for (int g = 0; g < nbc; g += 8) {
        int ng = nbc - g < 8 ? nbc - g : 8;
        prefetch_weights(w + (size_t)g * Q4_BLOCK_BYTES, 8 * Q4_BLOCK_BYTES, pf_end, alone);
        const unsigned char *nib = w + q4_nibbles_off(nrem, g);
        /* 16 bytes from the first scale stay inside the group (its nibbles follow the scales);
         * the lanes of missing blocks are cleared. */
        __m128i sc = _mm_loadu_si128((const __m128i *)(w + q4_scale_off(g)));
        __m256i d[4];
        if (ng == 8) {
#pragma GCC unroll 4
            for (int h = 0; h < 4; h++)
                d[h] = q4_pair_dot(_mm256_loadu_si256((const __m256i *)(nib + 32 * h)), aq + 32 * (g + 2 * h));
        } else {
            sc = _mm_and_si128(sc, _mm_cmpgt_epi16(_mm_set1_epi16((short)ng), _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7)));
            for (int h = 0; h < 4; h++) {
                __m256i x = _mm256_setzero_si256();
                if (2 * h + 1 < ng)
                    x = _mm256_loadu_si256((const __m256i *)(nib + 32 * h));
                else if (2 * h < ng)
                    x = _mm256_inserti128_si256(x, _mm_loadu_si128((const __m128i *)(nib + 32 * h)), 0);
                d[h] = q4_pair_dot(x, aq + 32 * (g + 2 * h));
            }
        }
        __m256i r = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
        r = _mm256_sub_epi32(r, _mm256_loadu_si256((const __m256i *)(ex + g)));
        __m256 s = _mm256_mul_ps(_mm256_loadu_ps(ad + g), _mm256_permutevar8x32_ps(_mm256_cvtph_ps(sc), perm));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(r), s, acc);
    }
    return hsum8(acc);
}

/* The q4 activation tables of blocks [0, nbc) of a (see gemv_row_q4); the missing blocks of a
 * last partial step of 8 are zero. */
static inline void q4_act_tables(int nbc, const blk_q8 *a, int8_t *aq, float *ad, int32_t *ex)
{
    int n8 = (nbc + 7) / 8 * 8;
    memset(aq + 32 * (size_t)nbc, 0, 32 * (size_t)(n8 - nbc));
    for (int q = nbc; q < n8; q++) {
        int lane = q / 8 * 8 + q % 8 / 2 + 4 * (q % 2);
        ad[lane] = 0;
        ex[lane] = 0;
    }
    for (int q = 0; q < nbc; q++) {
        const blk_q8 *ab = a + q;
        int8_t *ap = aq + 32 * (q & ~1) + 16 * (q & 1);
        memcpy(ap, ab->qs, 16);
        memcpy(ap + 32, ab->qs + 16, 16);
        int s = 0;
        for (int e = 0; e < QK; e++)
            s += ab->qs[e];
        int lane = q / 8 * 8 + q % 8 / 2 + 4 * (q % 2);
        ad[lane] = h2f(ab->d);
        ex[lane] = 8 * s;
    }
}

/* gemm_q8/q4 for m == 1, rows [n0, n1): weights streamed once, one row at a time (on Zen 4 a
 * single sequential stream reads DRAM 2-3x faster than 2 or 4 interleaved rows), prefetched as
 * simd.h's prefetch_weights says (alone: for the *_alone slots). */
static inline __attribute__((always_inline)) void gemv_q(int q4, int alone, int n0, int n1, int k, const blk_q8 *a,
                                                         const void *w, const float *bias, float *c)
{
    int nb = k / QK;
    size_t wrow = q4 ? q4_row_bytes(nb) : (size_t)nb * sizeof(blk_q8);
    float ad[SC];
    int32_t ex[SC];
    int8_t aq[SC * QK]; /* q4 only: 8 KB */
    for (int b0 = 0; b0 < nb; b0 += SC) {
        int nbc = nb - b0 < SC ? nb - b0 : SC;
        if (q4) {
            q4_act_tables(nbc, a + b0, aq, ad, ex);
        } else {
            /* The excess the unsigned weight operand adds: 128 * sum of the block's codes. */
            int unit = GEMV_VNNI ? 128 : 0;
            for (int q = 0; q < nbc; q++) {
                const blk_q8 *ab = a + b0 + q;
                int s = 0;
                for (int e = 0; e < QK; e++)
                    s += ab->qs[e];
                ad[q] = h2f(ab->d);
                ex[q] = unit * s;
            }
        }
        int first = b0 == 0, last = b0 + nbc == nb;
        /* q4: b0 is a multiple of 16, so the chunk starts at a group boundary. */
        const unsigned char *wb = (const unsigned char *)w + (size_t)b0 * (q4 ? Q4_BLOCK_BYTES : sizeof(blk_q8));
        uintptr_t pf_end = (uintptr_t)wb + (uintptr_t)n1 * wrow; /* prefetches stop at the last row */
        for (int j = n0; j < n1; j++) {
            const unsigned char *wr = wb + (size_t)j * wrow;
            float s = q4 ? gemv_row_q4(nbc, nb - b0, aq, wr, ad, ex, pf_end, alone)
                         : gemv_row_q8(nbc, a + b0, wr, ad, ex, pf_end, alone);
            if (!first)
                s = c[j] + s;
            if (last && bias)
                s = s + bias[j];
            c[j] = s;
        }
    }
}

#endif
