/* gemm.c (neon): the Armv8.0 Advanced SIMD matrix products (f32, f16, q8, q4) and the q8
 * activation quantizer. Baseline aarch64 only: every aarch64 CPU runs this file, so it must
 * not use dotprod/fp16 arithmetic (FCVTL for f16 -> f32 is part of Armv8.0).
 * q8/q4 share their tiling with the dotprod level through qgemm_body.h. */
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon/gemm.c needs aarch64 Advanced SIMD"
#endif
#include <math.h>

#include "neon.h"
#include "util.h"

/* Exact int32 dot product of one 32-element block, as lanes to be summed. Armv8.0 has no
 * int8 dot product: widen with SMULL into int16 lanes and pairwise-accumulate into int32.
 * q8 x q8: a product may be 128 * 128 = 16384, so two of them could overflow int16 (ggml
 * files may hold -128): each product is widened on its own (4 SMULL + SADDLP + 3 SADALP).
 * q4 x q8: |product| <= 8 * 128 = 1024, so four products share an int16 lane safely
 * (SMULL + 3 SMLAL + SADDLP). */
static inline __attribute__((always_inline)) int32x4_t
qg_block_dot(int q4, int8x16_t al, int8x16_t ah, int8x16_t wl, int8x16_t wh)
{
    if (q4) {
        int16x8_t p = vmull_s8(vget_low_s8(al), vget_low_s8(wl));
        p = vmlal_high_s8(p, al, wl);
        p = vmlal_s8(p, vget_low_s8(ah), vget_low_s8(wh));
        p = vmlal_high_s8(p, ah, wh);
        return vpaddlq_s16(p);
    }
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(al), vget_low_s8(wl)));
    s = vpadalq_s16(s, vmull_high_s8(al, wl));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(ah), vget_low_s8(wh)));
    return vpadalq_s16(s, vmull_high_s8(ah, wh));
}

#include "qgemm_body.h"

void gemm_q8_neon(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                  const float *bias, float *c, size_t ldc)
{
    qg_gemm(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void gemm_q4_neon(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                  const float *bias, float *c, size_t ldc)
{
    qg_gemm(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Bit-identical to quant_row_q8: the same amax (FMAXNM ignores NaN like fmaxf), the same
 * scalar d, 1/d and f16 rounding, and FCVTAS, which rounds ties away from zero exactly like
 * roundf (FCVTNS would round ties to even and differ at every x * id = k + 0.5). The codes are
 * within [-127, 127], so the saturating narrows never saturate. */
void quant_q8_neon(int n, const float *x, blk_q8 *y)
{
    for (int b = 0; b < n / QK; b++) {
        const float *xb = x + (size_t)b * QK;
        float32x4_t v[8];
        float32x4_t mx = vdupq_n_f32(0.0f);
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(xb + 4 * j);
            mx = vmaxnmq_f32(mx, vabsq_f32(v[j]));
        }
        float amax = vmaxnmvq_f32(mx);
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        int16x8_t h[4];
        #pragma GCC unroll 8
        for (int j = 0; j < 4; j++) {
            int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(v[2 * j], id));
            int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(v[2 * j + 1], id));
            h[j] = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
        }
        vst1q_s8(y[b].qs, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8(y[b].qs + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    }
}

/* Four f32 weights j..j+3 of one row, from f32 or f16 storage (FCVTL: exact). */
static inline __attribute__((always_inline)) float32x4_t fg_load_w(int f16, const void *row, int j)
{
    if (f16)
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)row + j)));
    return vld1q_f32((const float *)row + j);
}

static inline __attribute__((always_inline)) float fg_w(int f16, const void *row, int j)
{
    return f16 ? f16_to_f32(((const uint16_t *)row)[j]) : ((const float *)row)[j];
}

/* One tile: mr (1..4) activation rows x 4 weight rows; out[t] lane r = C[t, row r] without
 * bias. The summation order of one element is fixed whatever the tile: one 4-lane FMA
 * accumulator over k in chunks of 4, the lanes summed as (l0 + l1) + (l2 + l3), then the
 * k % 4 leftover products added one by one (FMA). So an element computed in a 1-token tile,
 * a 4-token tile or a tail row repeating its neighbour has the same bits. Per chunk: 4 weight
 * loads (+4 FCVTL for f16), mr activation loads, 4 * mr FMA. Over-read: none. */
static inline __attribute__((always_inline)) void
fg_tile(int mr, int f16, int k, const float *a, size_t lda, const void *const rows[4],
        float32x4_t out[4])
{
    float32x4_t acc[4][4];
    #pragma GCC unroll 8
    for (int t = 0; t < 4; t++)
        #pragma GCC unroll 8
        for (int r = 0; r < 4; r++)
            acc[t][r] = vdupq_n_f32(0.0f);
    int k4 = k & ~3;
    for (int j = 0; j < k4; j += 4) {
        float32x4_t wv[4];
        #pragma GCC unroll 8
        for (int r = 0; r < 4; r++)
            wv[r] = fg_load_w(f16, rows[r], j);
        #pragma GCC unroll 8
        for (int t = 0; t < mr; t++) {
            float32x4_t av = vld1q_f32(a + (size_t)t * lda + j);
            #pragma GCC unroll 8
            for (int r = 0; r < 4; r++)
                acc[t][r] = vfmaq_f32(acc[t][r], av, wv[r]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < mr; t++) {
        out[t] = neon_hsum4_f32(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
        if (k4 < k) {
            float tl[4] = {0, 0, 0, 0};
            const float *at = a + (size_t)t * lda;
            for (int j = k4; j < k; j++)
                #pragma GCC unroll 8
                for (int r = 0; r < 4; r++)
                    tl[r] = fmaf(at[j], fg_w(f16, rows[r], j), tl[r]);
            out[t] = vaddq_f32(out[t], vld1q_f32(tl));
        }
    }
}

/* Shared driver of gemm_f32 / gemm_f16 (contract: kernels.h); the same loop structure as
 * qg_gemm: groups of NEON_GROUP_ROWS weight rows outermost, tokens 4 at a time inside, then the
 * group's 4-row strips (a short last strip repeats its last row). */
static inline __attribute__((always_inline)) void
fg_gemm(int f16, int m, int n0, int n1, int k, const float *a, size_t lda, const void *w,
        const float *bias, float *c, size_t ldc)
{
    size_t row_bytes = (size_t)k * (f16 ? sizeof(uint16_t) : sizeof(float));
    for (int jg = n0; jg < n1; jg += NEON_GROUP_ROWS) {
        int je = n1 - jg < NEON_GROUP_ROWS ? n1 : jg + NEON_GROUP_ROWS;
        for (int i = 0; i < m; i += 4) {
            const float *ai = a + (size_t)i * lda;
            int mr = m - i < 4 ? m - i : 4;
            for (int n = jg; n < je; n += 4) {
                int nr = je - n < 4 ? je - n : 4;
                const void *rows[4];
                neon_strip_rows(w, row_bytes, n, nr, rows);
                float32x4_t acc[4];
                if (mr == 4)
                    fg_tile(4, f16, k, ai, lda, rows, acc);
                else if (mr == 3)
                    fg_tile(3, f16, k, ai, lda, rows, acc);
                else if (mr == 2)
                    fg_tile(2, f16, k, ai, lda, rows, acc);
                else
                    fg_tile(1, f16, k, ai, lda, rows, acc);
                neon_store_tile(mr, nr, acc, bias ? bias + n : NULL, c + (size_t)i * ldc + n, ldc);
            }
        }
    }
}

void gemm_f32_neon(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                   const float *bias, float *c, size_t ldc)
{
    fg_gemm(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void gemm_f16_neon(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                   const float *bias, float *c, size_t ldc)
{
    fg_gemm(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}
