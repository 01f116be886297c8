/* attn.c (avx512): attention for several queries at once (vision tower, prefill), the AVX2
 * design of kernels/avx2/attn.c with 16 query lanes per zmm: per key block of KB keys, the
 * scores S[j] (lane l = query l) are FMAs of the transposed query columns with the key's
 * elements broadcast from memory (embedded broadcast: no separate instruction), the block
 * maximum lane-wise, one rescale when some lane's maximum rises, vector exp, then
 * acc[c] += p_j * v[j][c]. A lane never depends on the others (a masked causal key gives
 * p = 0 and r = 1 exactly), so tiles and head ranges never change a result. nq == 1 (decode)
 * has its own path (decode_head: row after row, accumulators in registers). attention,
 * attention_f16kv and attention_q8kv share one body, specialised by a compile-time element
 * type: f16 and q8 elements are widened exactly (F16C; vpmovsxbd, vcvtdq2ps, times the block's
 * scale), as decode_head loads them and into a stack buffer once per tile, then the arithmetic
 * is the f32 kernel's. */
#ifndef __AVX512F__
#error "kernels/avx512 files must be built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../avx2/kernels_avx2.h"
#include "../avx2/simd.h"
#include "kernels.h"

void attention_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                      int n_keys, int causal, float scale, const float *q, size_t ldq,
                      const float *k, const float *v, size_t ldkv, float *out, size_t ldo);
void attention_f16kv_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                            int n_keys, int causal, float scale, const float *q, size_t ldq,
                            const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo);
void attention_q8kv_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                           int n_keys, int causal, float scale, const float *q, size_t ldq,
                           const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo);

/* Keys per softmax block (KB16 in the f16 and q8 tiles, whose widened value rows must fit the stack),
 * queries per tile. */
enum { KB = 64, KB16 = 16, QL = 16 };

/* exp(x) for 16 lanes, the algorithm and constants of exp8 (kernels/avx2/simd.h): two-part
 * ln 2 range reduction, degree-6 polynomial, 2^n in two factors; x < -87.3 gives 0, x > 88.7
 * +inf, NaN stays NaN. */
static inline __m512 exp16(__m512 x)
{
    const __m512 hi = _mm512_set1_ps(88.72283f), lo = _mm512_set1_ps(-87.33654f);
    __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i ni = _mm512_cvtps_epi32(n);
    __m512i n1 = _mm512_srai_epi32(ni, 1);
    __m512i n2 = _mm512_sub_epi32(ni, n1);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, _mm512_set1_epi32(127)), 23));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(__builtin_inff()));
    y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
    return _mm512_mask_mov_ps(y, nan, x);
}

/* Elements i .. i + 15 (i % 16 == 0) of row p as f32, lanes outside m zero and not read. A q8
 * row has no tails (head_dim % 32 == 0): m is all lanes. */
KV_INLINE __m512 kv_load16(const void *p, int i, __mmask16 m, int et)
{
    if (et == WT_Q8) {
        const blk_q8 *b = (const blk_q8 *)p + (unsigned)i / QK;
        __m128i codes = _mm_loadu_si128((const __m128i *)(b->qs + (unsigned)i % QK));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes)), _mm512_set1_ps(h2f(b->d)));
    }
    if (et == WT_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* y[l] lane i = x[i] lane l times lane l of scale (i, l < 16): unpacks of pairs, then of
 * 64-bit pairs, leave u[4b + e] 128-bit lane k = x[4b..4b+3] lane 4k + e; two rounds of
 * 128-bit lane shuffles gather the four b of each 4k + e. */
static inline void transpose16(const __m512 *x, __m512 scale, __m512 y[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        __m512 a = _mm512_mul_ps(x[i], scale), b = _mm512_mul_ps(x[i + 1], scale);
        t[i] = _mm512_unpacklo_ps(a, b);
        t[i + 1] = _mm512_unpackhi_ps(a, b);
    }
    __m512 u[16];
    for (int i = 0; i < 16; i += 4) {
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), e = _mm512_castps_pd(t[i + 3]);
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
    }
    for (int e = 0; e < 4; e++) {
        __m512 p0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x44), p1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xee);
        __m512 q0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x44), q1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xee);
        y[e] = _mm512_shuffle_f32x4(p0, q0, 0x88);
        y[4 + e] = _mm512_shuffle_f32x4(p0, q0, 0xdd);
        y[8 + e] = _mm512_shuffle_f32x4(p1, q1, 0x88);
        y[12 + e] = _mm512_shuffle_f32x4(p1, q1, 0xdd);
    }
}

/* One tile: queries t0 .. t0 + nt - 1 (nt <= QL) of one head; q, k, v, out already offset to
 * the head (q, out: query t0). f16, q8: blocks of KB16 keys, whose value rows (and each group of
 * 8 key rows) are widened into buf once per tile. */
KV_INLINE void attention_tile(int nt, int t0, int d, int n_keys, int causal, float scale, const float *q, size_t ldq,
                              const void *k, const void *v, size_t ldkv, float *out, size_t ldo, int et)
{
    __m512 qt[256], acc[256], sc[KB];       /* 36 KB: head_dim <= 256 */
    float buf[KB16][256];                   /* 16 KB: the query rows; f16 and q8: widened key or value rows */
    const int blk = et != WT_F32 ? KB16 : KB; /* keys per softmax block */
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    /* The tile's query rows are copied first (row loads stream; a gather per dimension across
     * rows ldq apart waited on a miss per row), into buf (free until the first key block), then
     * gathered from the copy. Missing lanes repeat the last query: finite scores, never stored. */
    for (int l = 0; l < nt; l++)
        memcpy(buf[l], q + (size_t)l * ldq, sizeof(float) * (size_t)d);
    __m512i qidx = _mm512_mullo_epi32(_mm512_min_epi32(lanes, _mm512_set1_epi32(nt - 1)), _mm512_set1_epi32(256));
    for (int c = 0; c < d; c++) {
        qt[c] = _mm512_i32gather_ps(qidx, buf[0] + c, 4);
        acc[c] = _mm512_setzero_ps();
    }
    int nk = n_keys;
    if (causal >= 0 && causal + t0 + nt < nk)
        nk = causal + t0 + nt;
    /* Lane l sees keys j <= lim[l] (causal), else all of [0, nk). */
    const __m512i lim = _mm512_add_epi32(_mm512_set1_epi32(causal + t0), lanes);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf, sum = _mm512_setzero_ps();
    for (int j0 = 0; j0 < nk; j0 += blk) {
        int nb = nk - j0 < blk ? nk - j0 : blk;
        __m512 bmax = ninf;
        for (int jj = 0; jj < nb; jj += 8) {
            int ng = nb - jj < 8 ? nb - jj : 8;
            const float *kr[8];
            for (int u = 0; u < 8; u++)
                kr[u] = u < ng ? kv_row(kv_at(k, (size_t)(j0 + jj + u) * ldkv, et), d, buf[u], et) : kr[ng - 1];
            __m512 s[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                s[u] = _mm512_setzero_ps();
            for (int c = 0; c < d; c++) {
                __m512 qc = qt[c];
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++)
                    s[u] = _mm512_fmadd_ps(qc, _mm512_set1_ps(kr[u][c]), s[u]);
            }
            /* All 8 stored (jj + 8 <= KB16 <= KB), so s stays in registers above. */
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                sc[jj + u] = s[u];
            for (int u = 0; u < ng; u++) {
                __m512 x = _mm512_mul_ps(sc[jj + u], _mm512_set1_ps(scale));
                if (causal >= 0)
                    x = _mm512_mask_mov_ps(x, _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(j0 + jj + u), lim), ninf);
                sc[jj + u] = x;
                bmax = _mm512_max_ps(bmax, x);
            }
        }
        __mmask16 up = _mm512_cmp_ps_mask(bmax, mx, _CMP_GT_OQ);
        if (up) {
            /* Lanes whose maximum rose: r = exp(old - new) (0 on the first block); others 1. */
            __m512 nmx = _mm512_max_ps(mx, bmax);
            __m512 r = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), up, exp16(_mm512_sub_ps(mx, nmx)));
            sum = _mm512_mul_ps(sum, r);
            for (int c = 0; c < d; c++)
                acc[c] = _mm512_mul_ps(acc[c], r);
            mx = nmx;
        }
        for (int j = 0; j < nb; j++) {
            __m512 p = exp16(_mm512_sub_ps(sc[j], mx));
            sc[j] = p;
            sum = _mm512_add_ps(sum, p);
        }
        if (et != WT_F32) /* the block's value rows, widened once */
            for (int j = 0; j < nb; j++)
                kv_widen(kv_at(v, (size_t)(j0 + j) * ldkv, et), d, buf[j], et);
        /* 16 dimensions per pass: one 64-byte line of each value row, 16 independent chains. */
        int c0 = 0;
        for (; c0 + 16 <= d; c0 += 16) {
            __m512 a[16];
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++)
                a[u] = acc[c0 + u];
            for (int j = 0; j < nb; j++) {
                const float *vj = kv_row_f32(v, j0 + j, ldkv, buf, j, et) + c0;
                __m512 p = sc[j];
#pragma GCC unroll 16
                for (int u = 0; u < 16; u++)
                    a[u] = _mm512_fmadd_ps(p, _mm512_set1_ps(vj[u]), a[u]);
            }
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++)
                acc[c0 + u] = a[u];
        }
        for (; c0 + 8 <= d; c0 += 8) {
            __m512 a[8];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                a[u] = acc[c0 + u];
            for (int j = 0; j < nb; j++) {
                const float *vj = kv_row_f32(v, j0 + j, ldkv, buf, j, et) + c0;
                __m512 p = sc[j];
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++)
                    a[u] = _mm512_fmadd_ps(p, _mm512_set1_ps(vj[u]), a[u]);
            }
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                acc[c0 + u] = a[u];
        }
        for (; c0 < d; c0++)
            for (int j = 0; j < nb; j++) {
                const float *vj = kv_row_f32(v, j0 + j, ldkv, buf, j, et);
                acc[c0] = _mm512_fmadd_ps(sc[j], _mm512_set1_ps(vj[c0]), acc[c0]);
            }
    }
    /* sum > 0 in every lane (key 0 is always visible) unless there are no keys. */
    __mmask16 pos = _mm512_cmp_ps_mask(sum, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512 inv = _mm512_maskz_div_ps(pos, _mm512_set1_ps(1.0f), sum);
    /* Transposed so each query's output row is written in order (a store per query and
     * dimension a row apart missed on every store): 16 dimensions at a time in registers (a
     * scalar copy through memory took 5% of the vision tower's attention), the last d % 16
     * through qt, no longer needed. */
    int c0 = 0;
    for (; c0 + 16 <= d; c0 += 16) {
        __m512 y[16];
        transpose16(acc + c0, inv, y);
        for (int l = 0; l < nt; l++)
            _mm512_storeu_ps(out + (size_t)l * ldo + c0, y[l]);
    }
    for (int c = c0; c < d; c++)
        qt[c] = _mm512_mul_ps(acc[c], inv);
    const float *o = (const float *)qt; /* o[16 c + l] = output c of query l */
    for (int l = 0; l < nt; l++)
        for (int c = c0; c < d; c++)
            out[(size_t)l * ldo + c] = o[16 * c + l];
}

/* attention, attention_f16kv and attention_q8kv for nq >= 2 (contract: kernels.h); head_dim
 * <= 256 (q8: a multiple of 32), n_heads a multiple of n_kv_heads, heads [h0, h1), queries
 * 0..nq; reads keys/values 0..n_keys only. ldkv in units (kv_at). */
KV_INLINE void attention_tiles(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys,
                               int causal, float scale, const float *q, size_t ldq, const void *k, const void *v,
                               size_t ldkv, float *out, size_t ldo, int et)
{
    int group = n_heads / n_kv_heads, d = head_dim;
    size_t hu = kv_units(d, et); /* units between kv heads */
    for (int h = h0; h < h1; h++) {
        int g = h / group;
        for (int t0 = 0; t0 < nq; t0 += QL) {
            int nt = nq - t0 < QL ? nq - t0 : QL;
            attention_tile(nt, t0, d, n_keys, causal, scale, q + (size_t)t0 * ldq + (size_t)h * d, ldq,
                           kv_at(k, (size_t)g * hu, et), kv_at(v, (size_t)g * hu, et), ldkv,
                           out + (size_t)t0 * ldo + (size_t)h * d, ldo, et);
        }
    }
}

/* One query (decode), head_dim d <= 16 nv: keys, then values, read row after row (the order
 * DRAM streams best: interleaving 4 key rows or splitting value rows into column halves measured
 * slower from DRAM although faster in cache). The accumulators are nv named registers (nv is a
 * compile-time constant at every call), where an array indexed at run time would sit in memory
 * with a store-to-load chain per key. Per block of KB keys: scores (two alternating partial
 * sums per key, so one key's FMA chain is half as long), one rescale if the block raises the
 * maximum, vector exp, the weighted sum of the value rows. Each stream prefetches KV_PF ahead
 * (simd.h). */
KV_INLINE void decode_head(int d, int nk, float scale, const float *q, const void *k, const void *v, size_t ldkv,
                           float *out, int et, const int nv)
{
    const __mmask16 tail = (__mmask16)(0xffffu >> (16 * nv - d)); /* lanes of the last vector */
    __m512 qv[16], acc[16];
    float sc[KB];
#pragma GCC unroll 16
    for (int i = 0; i < nv; i++) {
        qv[i] = _mm512_maskz_loadu_ps(i == nv - 1 ? tail : 0xffff, q + 16 * i);
        acc[i] = _mm512_setzero_ps();
    }
    float mx = -INFINITY, sum = 0;
    const int ahead = kv_pf_rows(ldkv, et);
    for (int j0 = 0; j0 < nk; j0 += KB) {
        int nb = nk - j0 < KB ? nk - j0 : KB;
        float bmax = -INFINITY;
        for (int j = 0; j < nb; j++) {
            const void *kj = kv_at(k, (size_t)(j0 + j) * ldkv, et);
            kv_prefetch_row(k, j0 + j + ahead, nk, ldkv, d, et);
            __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int i = 0; i < nv; i++) {
                __m512 x = kv_load16(kj, 16 * i, i == nv - 1 ? tail : 0xffff, et);
                if (i & 1)
                    s1 = _mm512_fmadd_ps(qv[i], x, s1);
                else
                    s0 = _mm512_fmadd_ps(qv[i], x, s0);
            }
            sc[j] = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) * scale;
            bmax = sc[j] > bmax ? sc[j] : bmax;
        }
        if (bmax > mx) {
            /* Rescale what was accumulated under the old maximum (0 on the first block). */
            float r = expf(mx - bmax);
            sum *= r;
#pragma GCC unroll 16
            for (int i = 0; i < nv; i++)
                acc[i] = _mm512_mul_ps(acc[i], _mm512_set1_ps(r));
            mx = bmax;
        }
        __m512 psum = _mm512_setzero_ps();
        for (int j = 0; j < nb; j += 16) {
            __mmask16 m = nb - j >= 16 ? 0xffff : (__mmask16)((1u << (nb - j)) - 1);
            __m512 p = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + j), _mm512_set1_ps(mx))));
            _mm512_mask_storeu_ps(sc + j, m, p);
            psum = _mm512_add_ps(psum, p);
        }
        sum += _mm512_reduce_add_ps(psum);
        for (int j = 0; j < nb; j++) {
            const void *vj = kv_at(v, (size_t)(j0 + j) * ldkv, et);
            kv_prefetch_row(v, j0 + j + ahead, nk, ldkv, d, et);
            __m512 p = _mm512_set1_ps(sc[j]);
#pragma GCC unroll 16
            for (int i = 0; i < nv; i++)
                acc[i] = _mm512_fmadd_ps(p, kv_load16(vj, 16 * i, i == nv - 1 ? tail : 0xffff, et), acc[i]);
        }
    }
    __m512 inv = _mm512_set1_ps(sum > 0 ? 1.0f / sum : 0.0f);
#pragma GCC unroll 16
    for (int i = 0; i < nv; i++)
        _mm512_mask_storeu_ps(out + 16 * i, i == nv - 1 ? tail : 0xffff, _mm512_mul_ps(acc[i], inv));
}

/* nq == 1 (contract: kernels.h): decode_head per head, specialised on the number of vectors. */
KV_INLINE void attention_decode(int h0, int h1, int n_heads, int n_kv_heads, int d, int n_keys, int causal,
                                float scale, const float *q, const void *k, const void *v, size_t ldkv, float *out,
                                int et)
{
    int group = n_heads / n_kv_heads;
    size_t hu = kv_units(d, et); /* units between kv heads */
    int nk = causal >= 0 && causal + 1 < n_keys ? causal + 1 : n_keys;
    for (int h = h0; h < h1; h++) {
        const void *kh = kv_at(k, (size_t)(h / group) * hu, et), *vh = kv_at(v, (size_t)(h / group) * hu, et);
        const float *qh = q + (size_t)h * d;
        float *oh = out + (size_t)h * d;
        switch ((d + 15) / 16) {
#define DECODE_NV(n)                                                                                                   \
    case n:                                                                                                            \
        decode_head(d, nk, scale, qh, kh, vh, ldkv, oh, et, n);                                                        \
        break;
            DECODE_NV(1) DECODE_NV(2) DECODE_NV(3) DECODE_NV(4) DECODE_NV(5) DECODE_NV(6) DECODE_NV(7) DECODE_NV(8)
            DECODE_NV(9) DECODE_NV(10) DECODE_NV(11) DECODE_NV(12) DECODE_NV(13) DECODE_NV(14) DECODE_NV(15)
            DECODE_NV(16)
#undef DECODE_NV
        }
    }
}

/* One query: decode_head; several: the tiles. */
KV_INLINE void attention_any(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal,
                             float scale, const float *q, size_t ldq, const void *k, const void *v, size_t ldkv,
                             float *out, size_t ldo, int et)
{
    if (nq < 2)
        attention_decode(h0, h1, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, k, v, ldkv, out, et);
    else
        attention_tiles(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out,
                        ldo, et);
}

void attention_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                      int n_keys, int causal, float scale, const float *q, size_t ldq,
                      const float *k, const float *v, size_t ldkv, float *out, size_t ldo)
{
    attention_any(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                  WT_F32);
}

void attention_f16kv_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                            int n_keys, int causal, float scale, const float *q, size_t ldq,
                            const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo)
{
    attention_any(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                  WT_F16);
}

void attention_q8kv_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                           int n_keys, int causal, float scale, const float *q, size_t ldq,
                           const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo)
{
    attention_any(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                  WT_Q8);
}
