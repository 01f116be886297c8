/* neon.h (neon): the kernels of the aarch64 levels by name, so that the fill functions can
 * reach kernels living in other files of the level, and the small vector helpers they share
 * (horizontal sums, the vector exp). Everything defined here is static inline: the "neon"
 * files are built for Armv8.0 and the "dot" files for Armv8.2, and they must never share an
 * out-of-line copy of a helper compiled for the wrong one. */
#ifndef VLM_KERNELS_NEON_H
#define VLM_KERNELS_NEON_H

#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon files are aarch64 Advanced SIMD code"
#endif

#include <arm_neon.h>

#include "kernels.h"

/* Level fill functions (kernels/neon/fill.c, kernels/neon/gemm_dot.c). */
void neon_fill(kernel_table *t);
void dot_fill(kernel_table *t);

/* Armv8.0 kernels (semantics: kernels.h). */
void gemm_f32_neon(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                   const float *bias, float *c, size_t ldc);
void gemm_f16_neon(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                   const float *bias, float *c, size_t ldc);
void gemm_q8_neon(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                  const float *bias, float *c, size_t ldc);
void gemm_q4_neon(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                  const float *bias, float *c, size_t ldc);
void quant_q8_neon(int n, const float *x, blk_q8 *y);
void rmsnorm_neon(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                  float *y);
void layernorm_neon(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                    const float *b, float eps, float *y);
void gelu_erf_neon(size_t i0, size_t i1, float *x);
void quick_gelu_neon(size_t i0, size_t i1, float *x);
void silu_mul_neon(size_t i0, size_t i1, float *gate, const float *up);
void add_neon(size_t i0, size_t i1, float *y, const float *x);
void rope_neon(int h0, int h1, int head_dim, float *x, const float *cs);
void attention_neon(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                    int n_keys, int causal, float scale, const float *q, size_t ldq,
                    const float *k, const float *v, size_t ldkv, float *out, size_t ldo);
void attention_f16kv_neon(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                          int n_keys, int causal, float scale, const float *q, size_t ldq,
                          const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo);
void attention_q8kv_neon(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo);
void to_f16_neon(size_t i0, size_t i1, const float *x, uint16_t *y);
void dwconv3x3_neon(int c0, int c1, int h, int w, int c, int stride, const float *in,
                    const float *wt, const float *bias, float *out);

/* The four totals of four vectors, lane r = sum of v_r, each summed as (l0 + l1) + (l2 + l3):
 * the same order as vaddvq_f32, so a lone row and a row inside a tile round identically. */
static inline float32x4_t neon_hsum4_f32(float32x4_t v0, float32x4_t v1, float32x4_t v2,
                                         float32x4_t v3)
{
    return vpaddq_f32(vpaddq_f32(v0, v1), vpaddq_f32(v2, v3));
}

/* An f16 value (bits) as f32, exactly (FCVTL, part of Armv8.0). */
static inline float neon_f16_to_f32(uint16_t h)
{
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

static inline int32x4_t neon_hsum4_s32(int32x4_t v0, int32x4_t v1, int32x4_t v2, int32x4_t v3)
{
    return vpaddq_s32(vpaddq_s32(v0, v1), vpaddq_s32(v2, v3));
}

/* e^x for x in [-87, 88] (inputs outside are clamped there, so the result is always a finite
 * normal number: callers use it in x / (1 + e^-x) forms where the clamp cannot matter beyond
 * 1e-37). Cody-Waite reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split in a short high part
 * so n * hi is exact), then the Taylor polynomial of degree 6 (truncation error < 1.2e-7
 * relative at |r| = ln2/2), then the exponent n added to the bits. Measured against glibc expf
 * over [-87, 88]: max relative error 2.5e-7 (about 2 ulp). */
static inline float32x4_t neon_exp_f32(float32x4_t x)
{
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    /* n is in [-126, 127]: 2^n is a normal float built from its exponent field. */
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* rows[r] = row n + r of the row-major matrix at w (rows row_bytes apart), r < 4; a short strip
 * (nr < 4 real rows) repeats its last row, whose lanes are computed but never stored. */
static inline void neon_strip_rows(const void *w, size_t row_bytes, int n, int nr, const void *rows[4])
{
    for (int r = 0; r < 4; r++)
        rows[r] = (const char *)w + (size_t)(n + (r < nr ? r : nr - 1)) * row_bytes;
}

/* p[0:nr] in lanes 0..nr-1, the others 0: running sums of a strip read back from C. */
static inline float32x4_t neon_load_lanes(int nr, const float *p)
{
    if (nr == 4)
        return vld1q_f32(p);
    float v[4] = {0, 0, 0, 0};
    for (int r = 0; r < nr; r++)
        v[r] = p[r];
    return vld1q_f32(v);
}

/* Stores an mr x nr tile (token t in acc[t], lane r = output column r), adding bias[r] when
 * bias is not NULL; only the nr real columns are written. */
static inline void neon_store_tile(int mr, int nr, const float32x4_t acc[4], const float *bias, float *c,
                                   size_t ldc)
{
    for (int t = 0; t < mr; t++) {
        float *ct = c + (size_t)t * ldc;
        if (nr == 4) {
            vst1q_f32(ct, bias ? vaddq_f32(acc[t], vld1q_f32(bias)) : acc[t]);
        } else {
            float o[4];
            vst1q_f32(o, acc[t]);
            for (int r = 0; r < nr; r++)
                ct[r] = bias ? o[r] + bias[r] : o[r];
        }
    }
}

#endif
