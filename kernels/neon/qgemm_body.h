/* qgemm_body.h (neon): the q8/q4 matrix products, written once for both aarch64 levels.
 * The including file (kernels/neon/gemm.c for Armv8.0, kernels/neon/gemm_dot.c for dotprod)
 * first defines qg_block_dot, the exact int32 dot product of one 32-element block; everything
 * here is static, so each level gets its own copy built with its own -march flags.
 * Every output element is computed bit for bit as the reference does it (exact block sums,
 * then s += (float)dot * (da * dw) over blocks in order), so results cannot depend on how
 * callers split [n0, n1) nor on the tile an element lands in. */
#ifndef VLM_QGEMM_BODY_H
#define VLM_QGEMM_BODY_H

#include "neon.h"

/* Block b (of nb per row) of four weight rows as signed codes (lo = elements 0..15, hi =
 * 16..31) and their four f16 scales widened to f32 (FCVTL is exact for every f16, like
 * f16_to_f32). q4 rows have the grouped layout of kernels.h; the nibbles are stored as q + 8:
 * the low nibbles are elements 0..15 and the high ones 16..31, which lines them up with the
 * two halves of the activation block. */
static inline __attribute__((always_inline)) float32x4_t
qg_load_w(int q4, const void *const rows[4], int nb, int b, int8x16_t wl[4], int8x16_t wh[4])
{
    uint16_t ds[4];
    size_t no = q4 ? q4_nibbles_off(nb, b) : 0; /* the same in all rows */
    #pragma GCC unroll 8
    for (int r = 0; r < 4; r++) {
        if (q4) {
            const uint8_t *row = rows[r];
            uint8x16_t v = vld1q_u8(row + no);
            wl[r] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
            wh[r] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
            ds[r] = q4_scale(row, b);
        } else {
            const blk_q8 *p = (const blk_q8 *)rows[r] + b;
            wl[r] = vld1q_s8(p->qs);
            wh[r] = vld1q_s8(p->qs + 16);
            ds[r] = p->d;
        }
    }
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(ds)));
}

/* One tile: mr (1..4) activation rows x 4 weight rows over all nb blocks; acc[t] lane r is
 * C[t, row r]. Each weight block is loaded (and for q4 unpacked) once and used by mr tokens;
 * each activation block once and used by 4 rows. mr and q4 are constants after inlining. */
static inline __attribute__((always_inline)) void
qg_tile(int mr, int q4, int nb, const blk_q8 *a, size_t lda, const void *const rows[4],
        float32x4_t acc[4])
{
    /* Locals, copied out at the end, so the sums stay in registers (no store per block). */
    float32x4_t s[4];
    #pragma GCC unroll 8
    for (int t = 0; t < 4; t++)
        s[t] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        int8x16_t wl[4], wh[4];
        float32x4_t dw = qg_load_w(q4, rows, nb, b, wl, wh);
        #pragma GCC unroll 8
        for (int t = 0; t < mr; t++) {
            const blk_q8 *ab = a + (size_t)t * lda + b;
            int8x16_t al = vld1q_s8(ab->qs);
            int8x16_t ah = vld1q_s8(ab->qs + 16);
            int32x4_t d = neon_hsum4_s32(qg_block_dot(q4, al, ah, wl[0], wh[0]),
                                         qg_block_dot(q4, al, ah, wl[1], wh[1]),
                                         qg_block_dot(q4, al, ah, wl[2], wh[2]),
                                         qg_block_dot(q4, al, ah, wl[3], wh[3]));
            float32x4_t da = vcvt_f32_f16(vreinterpret_f16_u16(vld1_dup_u16(&ab->d)));
            /* The reference's order: (float)dot * (da * dw), then added to the running sum;
             * |dot| < 2^24 so the conversion is exact. */
            s[t] = vaddq_f32(s[t], vmulq_f32(vcvtq_f32_s32(d), vmulq_f32(da, dw)));
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < 4; t++)
        acc[t] = s[t];
}

/* Weight rows per group of the strip-tiled products (qg_gemm, fg_gemm in gemm.c): the tokens
 * pass over a group 4 at a time, so the 4 tokens' activations are read from L1 by the group's
 * 4 strips, and all m tokens' activations stream once per 16 rows instead of once per 4 (a
 * vision product's activations, 577 x k, are larger than a Cortex-A78's L2). m = 1 streams the
 * weights strip after strip either way. */
enum { NEON_GROUP_ROWS = 16 };

/* Shared driver of gemm_q8 / gemm_q4 (contract: kernels.h). Weight rows go 4 at a time (a
 * short last strip repeats its last row and stores only the real ones), tokens 4 at a time,
 * in groups of NEON_GROUP_ROWS rows. Over-read: none. */
static inline __attribute__((always_inline)) void
qg_gemm(int q4, int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const void *w,
        const float *bias, float *c, size_t ldc)
{
    int nb = k / QK;
    size_t row_bytes = q4 ? q4_row_bytes(nb) : (size_t)nb * sizeof(blk_q8);
    for (int jg = n0; jg < n1; jg += NEON_GROUP_ROWS) {
        int je = n1 - jg < NEON_GROUP_ROWS ? n1 : jg + NEON_GROUP_ROWS;
        for (int i = 0; i < m; i += 4) {
            const blk_q8 *ai = a + (size_t)i * lda;
            int mr = m - i < 4 ? m - i : 4;
            for (int n = jg; n < je; n += 4) {
                int nr = je - n < 4 ? je - n : 4;
                const void *rows[4];
                neon_strip_rows(w, row_bytes, n, nr, rows);
                float32x4_t acc[4];
                if (mr == 4)
                    qg_tile(4, q4, nb, ai, lda, rows, acc);
                else if (mr == 3)
                    qg_tile(3, q4, nb, ai, lda, rows, acc);
                else if (mr == 2)
                    qg_tile(2, q4, nb, ai, lda, rows, acc);
                else
                    qg_tile(1, q4, nb, ai, lda, rows, acc);
                neon_store_tile(mr, nr, acc, bias ? bias + n : NULL, c + (size_t)i * ldc + n, ldc);
            }
        }
    }
}

#endif
