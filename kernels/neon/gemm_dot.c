/* gemm_dot.c (neon): the "dot" level, Armv8.2 with the int8 dot product (FEAT_DotProd,
 * SDOT): the q8/q4 matrix products, and dot_fill, which puts them over the "neon" table.
 * Only called after isa_arm.c saw HWCAP_ASIMDDP. The tiling is qgemm_body.h, shared with the
 * Armv8.0 file; only the block dot product differs. */
#if !defined(__ARM_FEATURE_DOTPROD)
#error "kernels/neon/*_dot.c must be built with -march=armv8.2-a+dotprod"
#endif
#include <string.h>

#include "neon.h"

/* Exact int32 dot product of one 32-element block as 4 lanes: two SDOT, each lane summing
 * 4 products of 16 bytes (|lane| <= 8 * 128 * 128, far from overflow). */
static inline __attribute__((always_inline)) int32x4_t
qg_block_dot(int q4, int8x16_t al, int8x16_t ah, int8x16_t wl, int8x16_t wh)
{
    (void)q4;
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), al, wl), ah, wh);
}

#include "qgemm_body.h"

/* ---------------------------------------------------------------------------------------- */
/* m >= 4 (vision tower, prefill): packed weights, SDOT by element.
 *
 * qg_tile spends, per block, token and 4 rows, 8 SDOT and then 3 pairwise adds to gather each
 * row's lanes, and unpacks the q4 nibbles again for every 4 tokens. Here the weights of a group
 * of up to 16 rows are packed once per k-chunk so that one register holds 4 consecutive codes
 * of each of 4 rows (lane r = row r); SDOT by element (vdotq_laneq_s32) with 4 codes of one
 * token then adds 4 products to each row's dot, so a block costs 8 SDOT per token and 4 rows
 * with the sums already in row lanes, and the scale arithmetic that follows is the reference's
 * (float)dot * (da * dw), added to the running sum, lane-wise: bit-identical to qg_tile and
 * the reference, whatever tile or range reaches an output. Counted per block, token and 4 rows
 * in the disassembly: 8 SDOT + ~5 other vector operations (qg_tile: 8 + ~15 for q8, ~19 for
 * q4; docs/kernels-arm.md). */
enum { PS = 4,     /* 4-row strips per group: the 4 share each token's activation loads from L1 */
       PKC = 32 }; /* blocks per k-chunk: a packed group is 16 x 32 x 36 B = 18 KB */

typedef struct pblk {
    int8x16_t w[8]; /* w[g] lane r = codes 4g .. 4g + 3 of row r (signed) */
    float32x4_t d;  /* lane r = scale of row r */
} pblk;

/* out[g] lane r = 32-bit word g of v[r]: a 4 x 4 transpose of words. */
static inline void tr_words(const int8x16_t v[4], int8x16_t out[4])
{
    int32x4_t t0 = vtrn1q_s32(vreinterpretq_s32_s8(v[0]), vreinterpretq_s32_s8(v[1]));
    int32x4_t t1 = vtrn2q_s32(vreinterpretq_s32_s8(v[0]), vreinterpretq_s32_s8(v[1]));
    int32x4_t t2 = vtrn1q_s32(vreinterpretq_s32_s8(v[2]), vreinterpretq_s32_s8(v[3]));
    int32x4_t t3 = vtrn2q_s32(vreinterpretq_s32_s8(v[2]), vreinterpretq_s32_s8(v[3]));
    out[0] = vreinterpretq_s8_s64(vtrn1q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2)));
    out[1] = vreinterpretq_s8_s64(vtrn1q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)));
    out[2] = vreinterpretq_s8_s64(vtrn2q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2)));
    out[3] = vreinterpretq_s8_s64(vtrn2q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)));
}

/* Blocks [b0, b0 + nbc) of the 4 rows (a short strip repeats its last row) into pk[0:nbc]. */
static inline __attribute__((always_inline)) void pack_strip(int q4, int nb, int b0, int nbc,
                                                             const void *const rows[4], pblk *pk)
{
    for (int q = 0; q < nbc; q++) {
        int8x16_t wl[4], wh[4];
        pk[q].d = qg_load_w(q4, rows, nb, b0 + q, wl, wh);
        tr_words(wl, pk[q].w);
        tr_words(wh, pk[q].w + 4);
    }
}

/* s[t] (lane r = running sum of token t, row r of the strip) over the nbc packed blocks, for
 * tokens ap[0:mr] (each pointing at the chunk's first block), whose scales are ad[t][q]. */
static inline __attribute__((always_inline)) void ptile(int mr, int nbc, const pblk *pk,
                                                        const blk_q8 *const ap[4],
                                                        const float ad[4][PKC], float32x4_t s[4])
{
    for (int q = 0; q < nbc; q++) {
        const pblk *p = pk + q;
        #pragma GCC unroll 4
        for (int t = 0; t < mr; t++) {
            int8x16_t al = vld1q_s8(ap[t][q].qs), ah = vld1q_s8(ap[t][q].qs + 16);
            int32x4_t d = vdotq_laneq_s32(vdupq_n_s32(0), p->w[0], al, 0);
            d = vdotq_laneq_s32(d, p->w[1], al, 1);
            d = vdotq_laneq_s32(d, p->w[2], al, 2);
            d = vdotq_laneq_s32(d, p->w[3], al, 3);
            d = vdotq_laneq_s32(d, p->w[4], ah, 0);
            d = vdotq_laneq_s32(d, p->w[5], ah, 1);
            d = vdotq_laneq_s32(d, p->w[6], ah, 2);
            d = vdotq_laneq_s32(d, p->w[7], ah, 3);
            s[t] = vaddq_f32(s[t], vmulq_f32(vcvtq_f32_s32(d), vmulq_f32(vld1q_dup_f32(&ad[t][q]), p->d)));
        }
    }
}

/* gemm_q8 / gemm_q4 for m >= 4: groups of PS strips of 4 rows; per k-chunk the group is packed
 * once and every token tile passes over it, its activations read from L1 by all the strips.
 * Between k-chunks the running sums live in C (exact: stored and reloaded as f32). */
static inline __attribute__((always_inline)) void pq_gemm(int q4, int m, int n0, int n1, int k, const blk_q8 *a,
                                                          size_t lda, const void *w, const float *bias, float *c,
                                                          size_t ldc)
{
    const int nb = k / QK;
    const size_t row_bytes = q4 ? q4_row_bytes(nb) : (size_t)nb * sizeof(blk_q8);
    pblk pk[PS][PKC];
    float ad[4][PKC];
    for (int jg = n0; jg < n1; jg += 4 * PS) {
        int je = n1 - jg < 4 * PS ? n1 : jg + 4 * PS;
        int ns = (je - jg + 3) / 4;
        for (int b0 = 0; b0 < nb; b0 += PKC) {
            int nbc = nb - b0 < PKC ? nb - b0 : PKC;
            int first = b0 == 0, last = b0 + nbc == nb;
            for (int g = 0; g < ns; g++) {
                int r0 = jg + 4 * g, nr = je - r0 < 4 ? je - r0 : 4;
                const void *rows[4];
                neon_strip_rows(w, row_bytes, r0, nr, rows);
                pack_strip(q4, nb, b0, nbc, rows, pk[g]);
            }
            for (int i = 0; i < m; i += 4) {
                int mr = m - i < 4 ? m - i : 4;
                const blk_q8 *ap[4];
                for (int t = 0; t < 4; t++) {
                    ap[t] = a + (size_t)(i + (t < mr ? t : mr - 1)) * lda + b0;
                    for (int q = 0; q < nbc; q++)
                        ad[t][q] = neon_f16_to_f32(ap[t][q].d);
                }
                for (int g = 0; g < ns; g++) {
                    int r0 = jg + 4 * g, nr = je - r0 < 4 ? je - r0 : 4;
                    float *ct = c + (size_t)i * ldc + r0;
                    float32x4_t s[4];
                    for (int t = 0; t < 4; t++)
                        s[t] = first || t >= mr ? vdupq_n_f32(0.0f) : neon_load_lanes(nr, ct + (size_t)t * ldc);
                    if (mr == 4)
                        ptile(4, nbc, pk[g], ap, (const float(*)[PKC])ad, s);
                    else if (mr == 3)
                        ptile(3, nbc, pk[g], ap, (const float(*)[PKC])ad, s);
                    else if (mr == 2)
                        ptile(2, nbc, pk[g], ap, (const float(*)[PKC])ad, s);
                    else
                        ptile(1, nbc, pk[g], ap, (const float(*)[PKC])ad, s);
                    neon_store_tile(mr, nr, s, last && bias ? bias + r0 : NULL, ct, ldc);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* m = 1, q4 (token generation: every weight byte is used once, so the vector operations per
 * byte decide whether a core keeps up with its share of the memory).
 *
 * qg_tile unpacks each row's nibbles to signed codes (AND, USHR, then 2 SUB of 8), gathers the
 * 4 rows' scales lane by lane and widens the activation scale for every block. Here the stored
 * nibbles n = q + 8 (0..15, valid SDOT operands) are used as they are and the block's dot for
 * the 4 rows is corrected once: dot(n - 8, a) = dot(n, a) - 8 sum(a), exact in int32; -8 sum(a)
 * and the activation scales come from tables built once per call, and the 4 rows' weight
 * scales of a whole group (16 blocks) are transposed into lanes and widened together. The f32
 * steps are qg_tile's, so results are unchanged bit for bit. */
enum { GVC = 512 }; /* blocks per table (a multiple of Q4_GROUP): k <= 16384 in one */

/* dw[i] lane r = the f32 scale of block i of the group at byte `base` (rb blocks) of rows[r]. */
static inline void group_scales(const void *const rows[4], size_t base, int rb, float32x4_t dw[Q4_GROUP])
{
    uint16x8_t v[4][2];
    for (int r = 0; r < 4; r++) {
        /* A short group may be shorter than 32 bytes (the end of the matrix): copied. */
        uint8_t tmp[32] = {0};
        const uint8_t *p = (const uint8_t *)rows[r] + base;
        if (rb < Q4_GROUP) {
            memcpy(tmp, p, 2 * (size_t)rb);
            p = tmp;
        }
        v[r][0] = vreinterpretq_u16_u8(vld1q_u8(p));
        v[r][1] = vreinterpretq_u16_u8(vld1q_u8(p + 16));
    }
    for (int h = 0; h < 2; h++) {
        uint16x8_t ab0 = vzip1q_u16(v[0][h], v[1][h]), ab1 = vzip2q_u16(v[0][h], v[1][h]);
        uint16x8_t cd0 = vzip1q_u16(v[2][h], v[3][h]), cd1 = vzip2q_u16(v[2][h], v[3][h]);
        /* t[j] holds blocks 2j, 2j + 1 of this half: (r0, r1, r2, r3) each. */
        uint16x8_t t[4] = {vreinterpretq_u16_u32(vzip1q_u32(vreinterpretq_u32_u16(ab0), vreinterpretq_u32_u16(cd0))),
                           vreinterpretq_u16_u32(vzip2q_u32(vreinterpretq_u32_u16(ab0), vreinterpretq_u32_u16(cd0))),
                           vreinterpretq_u16_u32(vzip1q_u32(vreinterpretq_u32_u16(ab1), vreinterpretq_u32_u16(cd1))),
                           vreinterpretq_u16_u32(vzip2q_u32(vreinterpretq_u32_u16(ab1), vreinterpretq_u32_u16(cd1)))};
        for (int j = 0; j < 4; j++) {
            dw[8 * h + 2 * j] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(t[j])));
            dw[8 * h + 2 * j + 1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(t[j]));
        }
    }
}

static void gemv_q4_dot(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c)
{
    const int nb = k / QK;
    const size_t row_bytes = q4_row_bytes(nb);
    const int8x16_t ones = vdupq_n_s8(1);
    const uint8x16_t low4 = vdupq_n_u8(0x0f);
    int32x4_t exv[GVC]; /* (block) -8 * sum of the activation codes, in every lane: 8 KB */
    float ad[GVC];      /* (block) activation scale */
    for (int b0 = 0; b0 < nb; b0 += GVC) {
        int nbc = nb - b0 < GVC ? nb - b0 : GVC;
        int first = b0 == 0, last = b0 + nbc == nb;
        for (int q = 0; q < nbc; q++) {
            const blk_q8 *ab = a + b0 + q;
            int32x4_t t = vdotq_s32(vdotq_s32(vdupq_n_s32(0), vld1q_s8(ab->qs), ones), vld1q_s8(ab->qs + 16), ones);
            exv[q] = vdupq_n_s32(-8 * vaddvq_s32(t));
            ad[q] = neon_f16_to_f32(ab->d);
        }
        for (int n = n0; n < n1; n += 4) {
            int nr = n1 - n < 4 ? n1 - n : 4;
            const void *rows[4];
            neon_strip_rows(w, row_bytes, n, nr, rows);
            float32x4_t s = first ? vdupq_n_f32(0.0f) : neon_load_lanes(nr, c + n);
            for (int g0 = 0; g0 < nbc; g0 += Q4_GROUP) {
                int rb = nbc - g0 < Q4_GROUP ? nbc - g0 : Q4_GROUP; /* < 16: the row's last group */
                size_t base = q4_scale_off(b0 + g0);
                float32x4_t dw[Q4_GROUP];
                group_scales(rows, base, rb, dw);
                for (int i = 0; i < rb; i++) {
                    int q = g0 + i;
                    size_t no = base + 2 * (size_t)rb + 16 * (size_t)i;
                    int8x16_t al = vld1q_s8(a[b0 + q].qs), ah = vld1q_s8(a[b0 + q].qs + 16);
                    int32x4_t d[4];
                    uint8x16_t v[4];
                    #pragma GCC unroll 4
                    for (int r = 0; r < 4; r++) {
                        v[r] = vld1q_u8((const uint8_t *)rows[r] + no);
                        d[r] = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(v[r], low4)), al);
                    }
                    #pragma GCC unroll 4
                    for (int r = 0; r < 4; r++)
                        d[r] = vdotq_s32(d[r], vreinterpretq_s8_u8(vshrq_n_u8(v[r], 4)), ah);
                    int32x4_t dot = vaddq_s32(neon_hsum4_s32(d[0], d[1], d[2], d[3]), exv[q]);
                    s = vaddq_f32(s, vmulq_f32(vcvtq_f32_s32(dot), vmulq_f32(vld1q_dup_f32(&ad[q]), dw[i])));
                }
            }
            const float32x4_t tile[4] = {s, s, s, s}; /* neon_store_tile reads a 4-token tile */
            neon_store_tile(1, nr, tile, last && bias ? bias + n : NULL, c + n, 0);
        }
    }
}

void gemm_q8_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                 const float *bias, float *c, size_t ldc);
void gemm_q4_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                 const float *bias, float *c, size_t ldc);

/* m = 2, 3 (and q8 at m = 1) keep qg_gemm: packing would cost as much as the products it
 * serves. */
void gemm_q8_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                 const float *bias, float *c, size_t ldc)
{
    if (m >= 4)
        pq_gemm(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
    else
        qg_gemm(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void gemm_q4_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                 const float *bias, float *c, size_t ldc)
{
    if (m >= 4)
        pq_gemm(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
    else if (m == 1)
        gemv_q4_dot(n0, n1, k, a, w, bias, c);
    else
        qg_gemm(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* The dot level = the neon level (isa_arm.c fills it first) with the int8 products replaced. */
void dot_fill(kernel_table *t)
{
    t->level = "dot";
    t->gemm_q8 = gemm_q8_dot;
    t->gemm_q4 = gemm_q4_dot;
    t->gemm_q8_alone = gemm_q8_dot;
    t->gemm_q4_alone = gemm_q4_dot;
}
