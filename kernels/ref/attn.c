/* attn.c (ref): rotary position embedding and scaled dot-product attention with grouped
 * KV heads, over f32 or f16 keys and values. Attention uses a streaming (online) softmax: one
 * pass over the keys with a running maximum, so no score buffer is needed whatever the
 * sequence length. */
#include <math.h>

#include "kernels_ref.h"

void rope_ref(int h0, int h1, int head_dim, float *x, int pos, const float *inv_freq)
{
    int half = head_dim / 2;
    for (int h = h0; h < h1; h++) {
        float *xh = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float angle = (float)pos * inv_freq[i];
            float c = cosf(angle);
            float s = sinf(angle);
            float a = xh[i];
            float b = xh[i + half];
            xh[i] = a * c - b * s;
            xh[i + half] = b * c + a * s;
        }
    }
}

/* One K or V element as f32: an f16 cache element converts exactly, an f32 one is read. f16 is
 * a compile-time constant at every call, so each kernel below has its own straight loop. */
static inline __attribute__((always_inline)) float kv_elem(const void *p, size_t i, int f16)
{
    return f16 ? f16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* attention and attention_f16kv (kernels.h): the same arithmetic, K/V elements through kv_elem. */
static inline __attribute__((always_inline)) void attention_body(
    int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal, float scale,
    const float *q, size_t ldq, const void *k, const void *v, size_t ldkv, float *out, size_t ldo, int f16)
{
    int group = n_heads / n_kv_heads;
    float acc[256]; /* (head_dim) */
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
                size_t row = (size_t)j * ldkv + (size_t)g * head_dim; /* key j, kv head g */
                float sc = 0;
                for (int i = 0; i < head_dim; i++)
                    sc += qt[i] * kv_elem(k, row + (size_t)i, f16);
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
                for (int i = 0; i < head_dim; i++)
                    acc[i] += p * kv_elem(v, row + (size_t)i, f16);
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
                   0);
}

void attention_f16kv_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   1);
}
