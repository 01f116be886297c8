/* attn.c (avx2): rotary embedding and attention over f32, f16 (F16C) or q8 keys and values.
 * Attention keeps the reference's one-pass (online) softmax but takes keys in blocks of KB:
 * the block's scores, one rescale of the accumulator when the block raises the maximum, vector
 * exp of the block, then the weighted sum of the block's values. One query (decode): 8-lane dot
 * products per key. Several queries: tiles of 16 queries as the lanes of two vectors (below).
 * Each (head, query) is computed by its own lane or loop, so the head range [h0, h1) and the
 * tiling never change a result. attention, attention_f16kv and attention_q8kv share one body,
 * specialised by a compile-time element type: f16 elements are widened exactly (vcvtph2ps), q8
 * ones exactly (vpmovsxbd, vcvtdq2ps, times the block's scale) as they are loaded, then the
 * arithmetic is the f32 kernel's, instruction for instruction. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <math.h>

#include "kernels_avx2.h"
#include "simd.h"

/* Contract: kernels.h rope; head_dim even; products and differences unfused, so the result
 * equals the reference bit for bit. */
void rope_avx2(int h0, int h1, int head_dim, float *x, const float *cs)
{
    int half = head_dim / 2;
    const float *sn = cs + half;
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

/* Keys per softmax block; KB16 in the f16 and q8 tiles, whose widened value rows must fit the
 * stack. */
enum { KB = 64, KB16 = 16 };

/* Elements i .. i + 7 (i % 8 == 0) of row p as f32. */
KV_INLINE __m256 kv_load8(const void *p, int i, int et)
{
    if (et == WT_Q8)
        return q8_load8(p, i);
    if (et == WT_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_loadu_ps((const float *)p + i);
}

/* Elements i .. i + r - 1 (r 1..7) of row p as f32, the other lanes 0; reads only those r
 * (f32, f16). A q8 row has no tails (head_dim % 32 == 0). */
KV_INLINE __m256 kv_tail8(const void *p, int i, int r, int et)
{
    if (et == WT_F16)
        return load_h8_tail((const uint16_t *)p + i, r);
    return _mm256_maskload_ps((const float *)p + i, lane_mask(r));
}

/* q . k over d (any d >= 1; 8 lanes, masked tail, hsum8). */
KV_INLINE float dot_d(const float *q, const void *k, int d, int et)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= d; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv_load8(k, i, et), acc);
    if (i < d) {
        __m256 kt = kv_tail8(k, i, d - i, et);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + i, lane_mask(d - i)), kt, acc);
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
enum { QL = 16 }; /* two vectors of 8 query lanes: each broadcast key or value element serves two FMAs */

/* One tile: queries t0 .. t0 + nt - 1 (nt <= QL) of one head; q, k, v, out already offset to
 * the head (q, out: query t0). Lanes of half h are queries 8h .. 8h + 7. f16, q8: blocks of
 * KB16 keys, whose value rows (and each group of 4 key rows) are widened into buf once per tile. */
KV_INLINE void attention_tile(int nt, int t0, int d, int n_keys, int causal, float scale, const float *q, size_t ldq,
                              const void *k, const void *v, size_t ldkv, float *out, size_t ldo, int et)
{
    __m256 qt[256][2], acc[256][2], sc[KB][2]; /* 36 KB: head_dim <= 256 */
    float buf[KB16][256];                      /* 16 KB, f16 and q8 only: widened key or value rows */
    const int blk = et != WT_F32 ? KB16 : KB;  /* keys per softmax block */
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lane[2] = {lanes, _mm256_add_epi32(lanes, _mm256_set1_epi32(8))};
    __m256i qidx[2], lim[2];
    for (int h = 0; h < 2; h++) {
        /* Missing lanes repeat the last query: finite scores, never stored. */
        qidx[h] = _mm256_mullo_epi32(_mm256_min_epi32(lane[h], _mm256_set1_epi32(nt - 1)), _mm256_set1_epi32((int)ldq));
        /* Lane l sees keys j <= lim[l] (causal), else all of [0, nk). */
        lim[h] = _mm256_add_epi32(_mm256_set1_epi32(causal + t0), lane[h]);
    }
    for (int c = 0; c < d; c++)
        for (int h = 0; h < 2; h++) {
            qt[c][h] = _mm256_i32gather_ps(q + c, qidx[h], 4);
            acc[c][h] = _mm256_setzero_ps();
        }
    int nk = n_keys;
    if (causal >= 0 && causal + t0 + nt < nk)
        nk = causal + t0 + nt;
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx[2] = {ninf, ninf}, sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int j0 = 0; j0 < nk; j0 += blk) {
        int nb = nk - j0 < blk ? nk - j0 : blk;
        __m256 bmax[2] = {ninf, ninf};
        for (int jj = 0; jj < nb; jj += 4) {
            int ng = nb - jj < 4 ? nb - jj : 4;
            const float *kr[4];
            for (int u = 0; u < 4; u++)
                kr[u] = u < ng ? kv_row(kv_at(k, (size_t)(j0 + jj + u) * ldkv, et), d, buf[u], et) : kr[ng - 1];
            __m256 s0[4], s1[4];
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++)
                s0[u] = s1[u] = _mm256_setzero_ps();
            for (int c = 0; c < d; c++) {
                __m256 qa = qt[c][0], qb = qt[c][1];
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) {
                    __m256 kb = _mm256_broadcast_ss(kr[u] + c);
                    s0[u] = _mm256_fmadd_ps(qa, kb, s0[u]);
                    s1[u] = _mm256_fmadd_ps(qb, kb, s1[u]);
                }
            }
            /* All 4 stored (jj + 4 <= KB16 <= KB), so the sums stay in registers above. */
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                sc[jj + u][0] = s0[u];
                sc[jj + u][1] = s1[u];
            }
            for (int u = 0; u < ng; u++)
                for (int h = 0; h < 2; h++) {
                    __m256 x = _mm256_mul_ps(sc[jj + u][h], _mm256_set1_ps(scale));
                    if (causal >= 0)
                        x = _mm256_blendv_ps(
                            x, ninf, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(j0 + jj + u), lim[h])));
                    sc[jj + u][h] = x;
                    bmax[h] = _mm256_max_ps(bmax[h], x);
                }
        }
        __m256 up[2] = {_mm256_cmp_ps(bmax[0], mx[0], _CMP_GT_OQ), _mm256_cmp_ps(bmax[1], mx[1], _CMP_GT_OQ)};
        if (_mm256_movemask_ps(_mm256_or_ps(up[0], up[1]))) {
            /* Lanes whose maximum rose: r = exp(old - new) (0 on the first block); others 1. */
            __m256 r[2];
            for (int h = 0; h < 2; h++) {
                __m256 nmx = _mm256_max_ps(mx[h], bmax[h]);
                r[h] = _mm256_blendv_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(mx[h], nmx)), up[h]);
                sum[h] = _mm256_mul_ps(sum[h], r[h]);
                mx[h] = nmx;
            }
            for (int c = 0; c < d; c++) {
                acc[c][0] = _mm256_mul_ps(acc[c][0], r[0]);
                acc[c][1] = _mm256_mul_ps(acc[c][1], r[1]);
            }
        }
        for (int j = 0; j < nb; j++)
            for (int h = 0; h < 2; h++) {
                __m256 p = exp8(_mm256_sub_ps(sc[j][h], mx[h]));
                sc[j][h] = p;
                sum[h] = _mm256_add_ps(sum[h], p);
            }
        if (et != WT_F32) /* the block's value rows, widened once */
            for (int j = 0; j < nb; j++)
                kv_widen(kv_at(v, (size_t)(j0 + j) * ldkv, et), d, buf[j], et);
        int c0 = 0;
        for (; c0 + 4 <= d; c0 += 4) {
            __m256 a0[4], a1[4];
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                a0[u] = acc[c0 + u][0];
                a1[u] = acc[c0 + u][1];
            }
            for (int j = 0; j < nb; j++) {
                const float *vj = kv_row_f32(v, j0 + j, ldkv, buf, j, et) + c0;
                __m256 pa = sc[j][0], pb = sc[j][1];
#pragma GCC unroll 4
                for (int u = 0; u < 4; u++) {
                    __m256 vb = _mm256_broadcast_ss(vj + u);
                    a0[u] = _mm256_fmadd_ps(pa, vb, a0[u]);
                    a1[u] = _mm256_fmadd_ps(pb, vb, a1[u]);
                }
            }
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                acc[c0 + u][0] = a0[u];
                acc[c0 + u][1] = a1[u];
            }
        }
        for (; c0 < d; c0++)
            for (int j = 0; j < nb; j++) {
                __m256 vb = _mm256_broadcast_ss(kv_row_f32(v, j0 + j, ldkv, buf, j, et) + c0);
                acc[c0][0] = _mm256_fmadd_ps(sc[j][0], vb, acc[c0][0]);
                acc[c0][1] = _mm256_fmadd_ps(sc[j][1], vb, acc[c0][1]);
            }
    }
    /* sum > 0 in every lane (key 0 is always visible) unless there are no keys. */
    __m256 inv[2];
    for (int h = 0; h < 2; h++)
        inv[h] = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), sum[h]),
                               _mm256_cmp_ps(sum[h], _mm256_setzero_ps(), _CMP_GT_OQ));
    for (int c = 0; c < d; c++) {
        float o[QL];
        _mm256_storeu_ps(o, _mm256_mul_ps(acc[c][0], inv[0]));
        _mm256_storeu_ps(o + 8, _mm256_mul_ps(acc[c][1], inv[1]));
        for (int l = 0; l < nt; l++)
            out[(size_t)l * ldo + c] = o[l];
    }
}

/* attention, attention_f16kv and attention_q8kv (contract: kernels.h); head_dim <= 256 (any
 * value, tails masked; q8: a multiple of 32), n_heads a multiple of n_kv_heads, heads [h0, h1),
 * queries 0..nq; reads keys/values 0..n_keys only. ldkv in units (kv_at). */
KV_INLINE void attention_body(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal,
                              float scale, const float *q, size_t ldq, const void *k, const void *v, size_t ldkv,
                              float *out, size_t ldo, int et)
{
    int group = n_heads / n_kv_heads;
    int d = head_dim;
    size_t hu = kv_units(d, et); /* units between kv heads */
    int dv = d & ~7;
    __m256 acc[32]; /* head_dim <= 256 */
    float sc[KB];
    if (nq >= 2) {
        for (int h = h0; h < h1; h++) {
            int g = h / group;
            for (int t0 = 0; t0 < nq; t0 += QL) {
                int nt = nq - t0 < QL ? nq - t0 : QL;
                attention_tile(nt, t0, d, n_keys, causal, scale, q + (size_t)t0 * ldq + (size_t)h * d, ldq,
                               kv_at(k, (size_t)g * hu, et), kv_at(v, (size_t)g * hu, et), ldkv,
                               out + (size_t)t0 * ldo + (size_t)h * d, ldo, et);
            }
        }
        return;
    }
    const int ahead = kv_pf_rows(ldkv, et); /* one query: each stream prefetched KV_PF ahead (simd.h) */
    for (int h = h0; h < h1; h++) {
        int g = h / group;
        const void *kg = kv_at(k, (size_t)g * hu, et), *vg = kv_at(v, (size_t)g * hu, et);
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
                    kv_prefetch_row(kg, j0 + j + ahead, nk, ldkv, d, et);
                    sc[j] = dot_d(qt, kv_at(kg, (size_t)(j0 + j) * ldkv, et), d, et) * scale;
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
                    const void *vj = kv_at(vg, (size_t)(j0 + j) * ldkv, et);
                    kv_prefetch_row(vg, j0 + j + ahead, nk, ldkv, d, et);
                    __m256 p = _mm256_set1_ps(sc[j]);
                    int i = 0;
                    for (; i < dv; i += 8)
                        acc[i / 8] = _mm256_fmadd_ps(p, kv_load8(vj, i, et), acc[i / 8]);
                    if (i < d)
                        acc[i / 8] = _mm256_fmadd_ps(p, kv_tail8(vj, i, d - i, et), acc[i / 8]);
                }
            }
            float *ot = out + (size_t)t * ldo + (size_t)h * d;
            __m256 inv = _mm256_set1_ps(sum > 0 ? 1.0f / sum : 0.0f);
            int i = 0;
            for (; i < dv; i += 8)
                _mm256_storeu_ps(ot + i, _mm256_mul_ps(acc[i / 8], inv));
            if (i < d)
                _mm256_maskstore_ps(ot + i, lane_mask(d - i), _mm256_mul_ps(acc[i / 8], inv));
        }
    }
}

void attention_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                    int n_keys, int causal, float scale, const float *q, size_t ldq,
                    const float *k, const float *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_F32);
}

void attention_f16kv_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                          int n_keys, int causal, float scale, const float *q, size_t ldq,
                          const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_F16);
}

void attention_q8kv_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo)
{
    attention_body(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                   WT_Q8);
}
