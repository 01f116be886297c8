/* attn.c (ref): rotary position embedding and scaled dot-product attention with grouped
 * KV heads, over f32, f16 or q8 keys and values. Attention uses a streaming (online) softmax:
 * one pass over the keys with a running maximum, so no score buffer is needed whatever the
 * sequence length. */
#include <math.h>

#include "kernels_ref.h"

void rope_ref(int h0, int h1, int head_dim, float *x, const float *cs)
{
    int half = head_dim / 2;
    for (int h = h0; h < h1; h++) {
        float *xh = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float c = cs[i];
            float s = cs[half + i];
            float a = xh[i];
            float b = xh[i + half];
            xh[i] = a * c - b * s;
            xh[i + half] = b * c + a * s;
        }
    }
}

/* Key or value row j of kv head g as f32: an f32 row is read in place; f16 and q8 rows (type
 * WT_F16, WT_Q8: ldkv and the head offset in elements, or in blocks for q8) are dequantized
 * exactly into buf. type is a compile-time constant at every call. */
static inline __attribute__((always_inline)) const float *kv_row(const void *p, int j, size_t ldkv, int g, int d,
                                                                 float *buf, int type)
{
    switch (type) {
    case WT_F16:
        dequant_row_ref(WT_F16, d, (const uint16_t *)p + (size_t)j * ldkv + (size_t)g * d, buf);
        return buf;
    case WT_Q8:
        dequant_row_ref(WT_Q8, d, (const blk_q8 *)p + (size_t)j * ldkv + (size_t)g * (d / QK), buf);
        return buf;
    default:
        return (const float *)p + (size_t)j * ldkv + (size_t)g * d;
    }
}

/* attention, attention_f16kv and attention_q8kv (kernels.h): the same arithmetic on the K/V
 * rows as f32 (kv_row). */
static inline __attribute__((always_inline)) void attention_body(
    int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal, float scale,
    const float *q, size_t ldq, const void *k, const void *v, size_t ldkv, float *out, size_t ldo, int type)
{
    int group = n_heads / n_kv_heads;
    float acc[256]; /* (head_dim) */
    float kbuf[256], vbuf[256]; /* (head_dim): a widened key and value row */
    for (int h = h0; h < h1; h++) {
        int g = h / group;
        for (int t = 0; t < nq; t++) {
            const float *qt = q + (size_t)t * ldq + (size_t)h * head_dim;
            int nk = causal >= 0 ? causal + t + 1 : n_keys;
            if (nk > n_keys)
                nk = n_keys;
            float mx = -INFINITY;
            float sum = 0;
            for (int i = 0; i < head_dim; i++)
                acc[i] = 0;
            for (int j = 0; j < nk; j++) {
                const float *kj = kv_row(k, j, ldkv, g, head_dim, kbuf, type);
                float sc = 0;
                for (int i = 0; i < head_dim; i++)
                    sc += qt[i] * kj[i];
                sc *= scale;
                if (sc > mx) {
                    /* Rescale what was accumulated under the old maximum. */
                    float r = expf(mx - sc);
                    sum *= r;
                    for (int i = 0; i < head_dim; i++)
                        acc[i] *= r;
                    mx = sc;
                }
                float p = expf(sc - mx);
                sum += p;
                const float *vj = kv_row(v, j, ldkv, g, head_dim, vbuf, type);
                for (int i = 0; i < head_dim; i++)
                    acc[i] += p * vj[i];
            }
            float *ot = out + (size_t)t * ldo + (size_t)h * head_dim;
            float inv = sum > 0 ? 1.0f / sum : 0.0f;
            for (int i = 0; i < head_dim; i++)
                ot[i] = acc[i] * inv;
        }
    }
}

void attention_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                   int n_keys, int causal, float scale, const float *q, size_t ldq,
                   const float *k, const float *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_F32);
}

void attention_f16kv_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_F16);
}

void attention_q8kv_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                        int n_keys, int causal, float scale, const float *q, size_t ldq,
                        const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_Q8);
}
