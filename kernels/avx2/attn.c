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

/* Several queries at once (nq >= 2: vision tower, prefill): the queries of a tile are the QL
 * lanes. Per key block of KB keys: scores S[j] (lane l = query l) by FMAs of the transposed
 * query columns with the key's elements broadcast (each key row is read once per tile, not
 * once per query), the block maximum lane-wise, one rescale when some lane's maximum rises,
 * vector exp, then acc[c] += p_j * v[j][c] (v broadcast). Per lane the operations are those of
 * the one-query path below (dot in element order, then * scale; per block rescale, exp, sums
 * in key order), and a lane never depends on the others: a masked (causal) key gives p = 0,
 * r = 1 exactly. */
enum { QL = 8 };

/* One tile: queries t0 .. t0 + nt - 1 (nt <= QL) of one head; q, k, v, out already offset to
 * the head (q, out: query t0). */
static void attention_tile(int nt, int t0, int d, int n_keys, int causal, float scale, const float *q,
                           size_t ldq, const float *k, const float *v, size_t ldkv, float *out, size_t ldo)
{
    __m256 qt[256], acc[256], sc[KB]; /* 18 KB: head_dim <= 256 */
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i qidx = _mm256_mullo_epi32(_mm256_min_epi32(lanes, _mm256_set1_epi32(nt - 1)), _mm256_set1_epi32((int)ldq));
    for (int c = 0; c < d; c++) {
        /* Missing lanes repeat the last query: finite scores, never stored. */
        qt[c] = _mm256_i32gather_ps(q + c, qidx, 4);
        acc[c] = _mm256_setzero_ps();
    }
    int nk = n_keys;
    if (causal >= 0 && causal + t0 + nt < nk)
        nk = causal + t0 + nt;
    /* Lane l sees keys j <= lim[l] (causal), else all of [0, nk). */
    __m256i lim = _mm256_add_epi32(_mm256_set1_epi32(causal + t0), lanes);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf, sum = _mm256_setzero_ps();
    for (int j0 = 0; j0 < nk; j0 += KB) {
        int nb = nk - j0 < KB ? nk - j0 : KB;
        __m256 bmax = ninf;
        for (int jj = 0; jj < nb; jj += 8) {
            int ng = nb - jj < 8 ? nb - jj : 8;
            const float *kr[8];
            for (int u = 0; u < 8; u++)
                kr[u] = k + (size_t)(j0 + jj + (u < ng ? u : ng - 1)) * ldkv;
            __m256 s[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                s[u] = _mm256_setzero_ps();
            for (int c = 0; c < d; c++) {
                __m256 qc = qt[c];
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++)
                    s[u] = _mm256_fmadd_ps(qc, _mm256_broadcast_ss(kr[u] + c), s[u]);
            }
            /* All 8 stored (sc has room: jj + 8 <= KB), so s stays in registers above. */
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                sc[jj + u] = s[u];
            for (int u = 0; u < ng; u++) {
                __m256 x = _mm256_mul_ps(sc[jj + u], _mm256_set1_ps(scale));
                if (causal >= 0)
                    x = _mm256_blendv_ps(x, ninf, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(j0 + jj + u), lim)));
                sc[jj + u] = x;
                bmax = _mm256_max_ps(bmax, x);
            }
        }
        __m256 up = _mm256_cmp_ps(bmax, mx, _CMP_GT_OQ);
        if (_mm256_movemask_ps(up)) {
            /* Lanes whose maximum rose: r = exp(old - new) (0 on the first block); others 1. */
            __m256 nmx = _mm256_max_ps(mx, bmax);
            __m256 r = _mm256_blendv_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(mx, nmx)), up);
            sum = _mm256_mul_ps(sum, r);
            for (int c = 0; c < d; c++)
                acc[c] = _mm256_mul_ps(acc[c], r);
            mx = nmx;
        }
        for (int j = 0; j < nb; j++) {
            __m256 p = exp8(_mm256_sub_ps(sc[j], mx));
            sc[j] = p;
            sum = _mm256_add_ps(sum, p);
        }
        int c0 = 0;
        for (; c0 + 8 <= d; c0 += 8) {
            __m256 a[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                a[u] = acc[c0 + u];
            for (int j = 0; j < nb; j++) {
                const float *vj = v + (size_t)(j0 + j) * ldkv + c0;
                __m256 p = sc[j];
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++)
                    a[u] = _mm256_fmadd_ps(p, _mm256_broadcast_ss(vj + u), a[u]);
            }
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                acc[c0 + u] = a[u];
        }
        for (; c0 < d; c0++)
            for (int j = 0; j < nb; j++)
                acc[c0] = _mm256_fmadd_ps(sc[j], _mm256_broadcast_ss(v + (size_t)(j0 + j) * ldkv + c0), acc[c0]);
    }
    /* sum > 0 in every valid lane (key 0 is always visible) unless there are no keys. */
    __m256 pos = _mm256_cmp_ps(sum, _mm256_setzero_ps(), _CMP_GT_OQ);
    __m256 inv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), sum), pos);
    for (int c = 0; c < d; c++) {
        float o[8];
        _mm256_storeu_ps(o, _mm256_mul_ps(acc[c], inv));
        for (int l = 0; l < nt; l++)
            out[(size_t)l * ldo + c] = o[l];
    }
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
    if (nq >= 2) {
        for (int h = h0; h < h1; h++) {
            int g = h / group;
            for (int t0 = 0; t0 < nq; t0 += QL) {
                int nt = nq - t0 < QL ? nq - t0 : QL;
                attention_tile(nt, t0, d, n_keys, causal, scale, q + (size_t)t0 * ldq + (size_t)h * d, ldq,
                               k + (size_t)g * d, v + (size_t)g * d, ldkv, out + (size_t)t0 * ldo + (size_t)h * d, ldo);
            }
        }
        return;
    }
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
