/* attn.c (avx2): rotary embedding and attention.
 * Attention keeps the reference's one-pass (online) softmax but takes keys in blocks of KB:
 * the block's scores (8-lane dot products), one rescale of the accumulator when the block
 * raises the maximum, vector exp of the block, then the weighted sum of the block's values.
 * Each (head, query) is computed alone, so the head range [h0, h1) never changes a result. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <math.h>

#include "kernels_avx2.h"
#include "simd.h"

/* Contract: kernels.h rope; head_dim even, <= 256; cos/sin from libm exactly as the reference,
 * products and differences unfused, so the result equals the reference bit for bit. */
void rope_avx2(int h0, int h1, int head_dim, float *x, int pos, const float *inv_freq)
{
    int half = head_dim / 2;
    float cs[128], sn[128];
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        cs[i] = cosf(angle);
        sn[i] = sinf(angle);
    }
    for (int h = h0; h < h1; h++) {
        float *xh = x + (size_t)h * head_dim;
        int i = 0;
        for (; i + 8 <= half; i += 8) {
            __m256 a = _mm256_loadu_ps(xh + i), b = _mm256_loadu_ps(xh + i + half);
            __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
            _mm256_storeu_ps(xh + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
            _mm256_storeu_ps(xh + i + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
        }
        for (; i < half; i++) {
            float a = xh[i], b = xh[i + half];
            xh[i] = a * cs[i] - b * sn[i];
            xh[i + half] = b * cs[i] + a * sn[i];
        }
    }
}

enum { KB = 64 }; /* keys per softmax block */

/* q . k over d (any d >= 1; 8 lanes, masked tail, hsum8). */
static inline float dot_d(const float *q, const float *k, int d)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc);
    if (i < d) {
        __m256i mk = lane_mask(d - i);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, mk), _mm256_maskload_ps(k + i, mk), acc);
    }
    return hsum8(acc);
}

/* Contract: kernels.h attention; head_dim <= 256 (any value, tails masked), n_heads a multiple
 * of n_kv_heads, heads [h0, h1), queries 0..nq; reads keys/values 0..n_keys only. */
void attention_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                    int n_keys, int causal, float scale, const float *q, size_t ldq,
                    const float *k, const float *v, size_t ldkv, float *out, size_t ldo)
{
    int group = n_heads / n_kv_heads;
    int d = head_dim;
    int dv = d & ~7;
    __m256i dmask = lane_mask(d - dv);
    __m256 acc[32]; /* head_dim <= 256 */
    float sc[KB];
    for (int h = h0; h < h1; h++) {
        int g = h / group;
        for (int t = 0; t < nq; t++) {
            const float *qt = q + (size_t)t * ldq + (size_t)h * d;
            int nk = causal >= 0 ? causal + t + 1 : n_keys;
            if (nk > n_keys)
                nk = n_keys;
            float mx = -INFINITY, sum = 0;
            for (int i = 0; i * 8 < d; i++)
                acc[i] = _mm256_setzero_ps();
            for (int j0 = 0; j0 < nk; j0 += KB) {
                int nb = nk - j0 < KB ? nk - j0 : KB;
                float bmax = -INFINITY;
                for (int j = 0; j < nb; j++) {
                    sc[j] = dot_d(qt, k + (size_t)(j0 + j) * ldkv + (size_t)g * d, d) * scale;
                    bmax = sc[j] > bmax ? sc[j] : bmax;
                }
                if (bmax > mx) {
                    /* Rescale what was accumulated under the old maximum (0 on the first block). */
                    float r = expf(mx - bmax);
                    sum *= r;
                    __m256 vr = _mm256_set1_ps(r);
                    for (int i = 0; i * 8 < d; i++)
                        acc[i] = _mm256_mul_ps(acc[i], vr);
                    mx = bmax;
                }
                /* p_j = exp(s_j - max), summed in 8 lanes in a fixed order. */
                __m256 vmx = _mm256_set1_ps(mx), psum = _mm256_setzero_ps();
                int j = 0;
                for (; j + 8 <= nb; j += 8) {
                    __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + j), vmx));
                    _mm256_storeu_ps(sc + j, p);
                    psum = _mm256_add_ps(psum, p);
                }
                if (j < nb) {
                    __m256i mk = lane_mask(nb - j);
                    __m256 p = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(sc + j, mk), vmx)),
                                             _mm256_castsi256_ps(mk));
                    _mm256_maskstore_ps(sc + j, mk, p);
                    psum = _mm256_add_ps(psum, p);
                }
                sum += hsum8(psum);
                for (j = 0; j < nb; j++) {
                    const float *vj = v + (size_t)(j0 + j) * ldkv + (size_t)g * d;
                    __m256 p = _mm256_set1_ps(sc[j]);
                    int i = 0;
                    for (; i < dv; i += 8)
                        acc[i / 8] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + i), acc[i / 8]);
                    if (i < d)
                        acc[i / 8] = _mm256_fmadd_ps(p, _mm256_maskload_ps(vj + i, dmask), acc[i / 8]);
                }
            }
            float *ot = out + (size_t)t * ldo + (size_t)h * d;
            __m256 inv = _mm256_set1_ps(sum > 0 ? 1.0f / sum : 0.0f);
            int i = 0;
            for (; i < dv; i += 8)
                _mm256_storeu_ps(ot + i, _mm256_mul_ps(acc[i / 8], inv));
            if (i < d)
                _mm256_maskstore_ps(ot + i, dmask, _mm256_mul_ps(acc[i / 8], inv));
        }
    }
}
