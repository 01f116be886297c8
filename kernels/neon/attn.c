/* attn.c (neon): Armv8.0 Advanced SIMD scaled dot-product attention with grouped KV heads,
 * over f32, f16 or q8 keys and values. The same streaming (online) softmax as the reference, but
 * over blocks of 4 keys: 4 scores from 4 vector dot products, one running-maximum update per
 * block, 4 exponentials in one neon_exp_f32, then the weighted sum of the 4 value rows into the
 * accumulator. attention, attention_f16kv and attention_q8kv share one body, specialised by a
 * compile-time element type: f16 elements are widened exactly (fcvtl, part of Armv8.0), q8 ones
 * exactly (sxtl twice, scvtf, times the block's scale) as they are loaded, then the arithmetic
 * is the f32 kernel's. */
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon/attn.c needs aarch64 Advanced SIMD"
#endif
#include <math.h>
#include <string.h>

#include "neon.h"

/* K/V access for the three element types et = WT_F32, WT_F16, WT_Q8 (rows of head_dim / 32
 * blk_q8); et is a compile-time constant at every call (the functions taking it are always
 * inlined into the three exported kernels). Offsets between rows and heads count units:
 * elements, or blocks for q8. */
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

/* The f16 scale of a q8 block as f32 (exact). */
KV_INLINE float q8_scale(const blk_q8 *b)
{
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(b->d))), 0);
}

/* Elements i .. i + 3 (i % 4 == 0) of row p as f32. q8: the 4 codes (a 4-byte load inside the
 * block) sign-extended twice, converted, times the block's scale: the product is exact. */
KV_INLINE float32x4_t kv_load4(const void *p, int i, int et)
{
    if (et == WT_Q8) {
        const blk_q8 *b = (const blk_q8 *)p + (unsigned)i / QK;
        int32_t w;
        memcpy(&w, b->qs + (unsigned)i % QK, sizeof w);
        int16x8_t x16 = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w)));
        return vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(x16))), q8_scale(b));
    }
    if (et == WT_F16)
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)p + i)));
    return vld1q_f32((const float *)p + i);
}

/* Element i of row p as f32. */
KV_INLINE float kv_load1(const void *p, int i, int et)
{
    if (et == WT_Q8) {
        const blk_q8 *b = (const blk_q8 *)p + (unsigned)i / QK;
        return q8_scale(b) * (float)b->qs[(unsigned)i % QK];
    }
    if (et == WT_F16)
        return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(((const uint16_t *)p)[i]))), 0);
    return ((const float *)p)[i];
}

/* Scores of one query against 4 key rows (kr[3] may repeat a real row: the caller masks),
 * each q . k summed as one 4-lane FMA accumulator then (l0 + l1) + (l2 + l3) then the
 * head_dim % 4 leftovers. */
KV_INLINE float32x4_t scores4(const float *qt, const void *const kr[4], int d, int et)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 4 <= d; i += 4) {
        float32x4_t qv = vld1q_f32(qt + i);
        s0 = vfmaq_f32(s0, qv, kv_load4(kr[0], i, et));
        s1 = vfmaq_f32(s1, qv, kv_load4(kr[1], i, et));
        s2 = vfmaq_f32(s2, qv, kv_load4(kr[2], i, et));
        s3 = vfmaq_f32(s3, qv, kv_load4(kr[3], i, et));
    }
    float32x4_t s = neon_hsum4_f32(s0, s1, s2, s3);
    if (i < d) {
        float tl[4] = {0, 0, 0, 0};
        for (; i < d; i++)
            for (int r = 0; r < 4; r++)
                tl[r] = fmaf(qt[i], kv_load1(kr[r], i, et), tl[r]);
        s = vaddq_f32(s, vld1q_f32(tl));
    }
    return s;
}

/* attention, attention_f16kv and attention_q8kv. Contract: kernels.h (head_dim <= 256; q8: a
 * multiple of 32; ldkv in units). Keys of a block past
 * the causal/n_keys limit read a real key row again and get weight exactly 0, so nothing past
 * the limit is read. Heads are what threads split, and a head's arithmetic does not depend on
 * h0/h1. Accuracy: scores like a gemm row, exponentials within 2.5e-7 relative
 * (neon_exp_f32), sums in another order. */
KV_INLINE void attention_body(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal,
                              float scale, const float *q, size_t ldq, const void *k, const void *v, size_t ldkv,
                              float *out, size_t ldo, int et)
{
    int group = n_heads / n_kv_heads;
    int d = head_dim;
    size_t hu = kv_units(d, et); /* units between kv heads */
    float acc[256]; /* (head_dim) */
    for (int h = h0; h < h1; h++) {
        int g = h / group;
        for (int t = 0; t < nq; t++) {
            const float *qt = q + (size_t)t * ldq + (size_t)h * d;
            int nk = causal >= 0 ? causal + t + 1 : n_keys;
            if (nk > n_keys)
                nk = n_keys;
            float mx = -INFINITY;
            float sum = 0;
            for (int i = 0; i < d; i++)
                acc[i] = 0;
            for (int j = 0; j < nk; j += 4) {
                int jn = nk - j < 4 ? nk - j : 4;
                const void *kr[4], *vr[4];
                for (int r = 0; r < 4; r++) {
                    size_t off = (size_t)(j + (r < jn ? r : jn - 1)) * ldkv + (size_t)g * hu;
                    kr[r] = kv_at(k, off, et);
                    vr[r] = kv_at(v, off, et);
                }
                float sc[4];
                vst1q_f32(sc, vmulq_n_f32(scores4(qt, kr, d, et), scale));
                float bmax = sc[0];
                for (int r = 1; r < jn; r++)
                    bmax = sc[r] > bmax ? sc[r] : bmax;
                if (bmax > mx) {
                    /* Rescale what was accumulated under the old maximum (nothing, the first
                     * time: acc and sum are 0, and expf(-inf) = 0 keeps them so). */
                    float rs = expf(mx - bmax);
                    sum *= rs;
                    float32x4_t vrs = vdupq_n_f32(rs);
                    int i = 0;
                    for (; i + 4 <= d; i += 4)
                        vst1q_f32(acc + i, vmulq_f32(vld1q_f32(acc + i), vrs));
                    for (; i < d; i++)
                        acc[i] *= rs;
                    mx = bmax;
                }
                float p[4];
                vst1q_f32(p, neon_exp_f32(vsubq_f32(vld1q_f32(sc), vdupq_n_f32(mx))));
                for (int r = jn; r < 4; r++)
                    p[r] = 0.0f;
                sum += (p[0] + p[1]) + (p[2] + p[3]);
                int i = 0;
                for (; i + 4 <= d; i += 4) {
                    float32x4_t a = vld1q_f32(acc + i);
                    a = vfmaq_n_f32(a, kv_load4(vr[0], i, et), p[0]);
                    a = vfmaq_n_f32(a, kv_load4(vr[1], i, et), p[1]);
                    a = vfmaq_n_f32(a, kv_load4(vr[2], i, et), p[2]);
                    a = vfmaq_n_f32(a, kv_load4(vr[3], i, et), p[3]);
                    vst1q_f32(acc + i, a);
                }
                for (; i < d; i++) {
                    float a = fmaf(kv_load1(vr[0], i, et), p[0], acc[i]);
                    a = fmaf(kv_load1(vr[1], i, et), p[1], a);
                    a = fmaf(kv_load1(vr[2], i, et), p[2], a);
                    acc[i] = fmaf(kv_load1(vr[3], i, et), p[3], a);
                }
            }
            float *ot = out + (size_t)t * ldo + (size_t)h * d;
            float inv = sum > 0 ? 1.0f / sum : 0.0f;
            int i = 0;
            for (; i + 4 <= d; i += 4)
                vst1q_f32(ot + i, vmulq_n_f32(vld1q_f32(acc + i), inv));
            for (; i < d; i++)
                ot[i] = acc[i] * inv;
        }
    }
}

void attention_neon(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                    int n_keys, int causal, float scale, const float *q, size_t ldq,
                    const float *k, const float *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_F32);
}

void attention_f16kv_neon(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                          int n_keys, int causal, float scale, const float *q, size_t ldq,
                          const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_F16);
}

void attention_q8kv_neon(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_Q8);
}
