/* attn.c (neon): Armv8.0 Advanced SIMD scaled dot-product attention with grouped KV heads,
 * over f32, f16 or q8 keys and values. The same streaming (online) softmax as the reference, but
 * over blocks of keys: one query (decoding) takes blocks of 4 keys, 4 scores from 4 vector dot
 * products, one running-maximum update per block, 4 exponentials in one neon_exp_f32, then the
 * weighted sum of the 4 value rows; several queries go in tiles of 8 query lanes (see
 * attention_tile). attention, attention_f16kv and attention_q8kv share one body, specialised by a
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
    return neon_f16_to_f32(b->d);
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
        return neon_f16_to_f32(((const uint16_t *)p)[i]);
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

/* One query at a time (decoding; the tiles below take nq >= 2). Keys of a block past the
 * causal/n_keys limit read a real key row again and get weight exactly 0, so nothing past the
 * limit is read. Accuracy: scores like a gemm row, exponentials within 2.5e-7 relative
 * (neon_exp_f32), sums in another order. */
KV_INLINE void attention_rows(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal,
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

/* ---------------------------------------------------------------------------------------- */
/* Several queries (vision tower, prefill): tiles of QL queries as vector lanes.
 *
 * One query at a time, a vision head reads its 577 keys and values (295 KB of f32) once per
 * query: more than a Cortex-A78's L2, so they came from L3 577 times per head and layer. A tile
 * of QL = 8 queries (two vectors, lane l = query l) reads them once per 8 queries: per key
 * group and 4 head dimensions, 4 key loads and 8 transposed-query loads feed 32 FMAs by element
 * (vfmaq_laneq_f32), and in the weighted sum one value load feeds 8. Per block of KB keys:
 * scores, the block maximum lane by lane, one rescale when some lane's maximum rises (r = 1
 * exactly in the other lanes), exponentials (a masked key's weight is set to 0 exactly, since
 * neon_exp_f32 clamps its input), then acc[c] += p_j * v[j][c]. A lane never depends on the
 * others, and blocks start at key 0 whatever the tile, so tiles and head ranges never change a
 * result. */
enum { QL = 8, KB = 32 };

/* s[u][h] = the scores of key kr[u] for the tile's queries (lanes of vector h): transposed
 * query element c times the key's element c, summed over c in order. The sums are named
 * variables: GCC stored an array of them to the stack at every step. */
KV_INLINE void tile_scores(int d, const float32x4_t (*qt)[2], const void *const kr[4], int et, float32x4_t s[4][2])
{
    float32x4_t s00 = vdupq_n_f32(0.0f), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    int c = 0;
    for (; c + 4 <= d; c += 4) {
        float32x4_t k0 = kv_load4(kr[0], c, et), k1 = kv_load4(kr[1], c, et);
        float32x4_t k2 = kv_load4(kr[2], c, et), k3 = kv_load4(kr[3], c, et);
#define TILE_SCORE(cc)                                                                                                 \
    {                                                                                                                  \
        float32x4_t q0 = qt[c + cc][0], q1 = qt[c + cc][1];                                                            \
        s00 = vfmaq_laneq_f32(s00, q0, k0, cc), s01 = vfmaq_laneq_f32(s01, q1, k0, cc);                                \
        s10 = vfmaq_laneq_f32(s10, q0, k1, cc), s11 = vfmaq_laneq_f32(s11, q1, k1, cc);                                \
        s20 = vfmaq_laneq_f32(s20, q0, k2, cc), s21 = vfmaq_laneq_f32(s21, q1, k2, cc);                                \
        s30 = vfmaq_laneq_f32(s30, q0, k3, cc), s31 = vfmaq_laneq_f32(s31, q1, k3, cc);                                \
    }
        TILE_SCORE(0) TILE_SCORE(1) TILE_SCORE(2) TILE_SCORE(3)
#undef TILE_SCORE
    }
    for (; c < d; c++) {
        float32x4_t q0 = qt[c][0], q1 = qt[c][1];
        float e0 = kv_load1(kr[0], c, et), e1 = kv_load1(kr[1], c, et);
        float e2 = kv_load1(kr[2], c, et), e3 = kv_load1(kr[3], c, et);
        s00 = vfmaq_n_f32(s00, q0, e0), s01 = vfmaq_n_f32(s01, q1, e0);
        s10 = vfmaq_n_f32(s10, q0, e1), s11 = vfmaq_n_f32(s11, q1, e1);
        s20 = vfmaq_n_f32(s20, q0, e2), s21 = vfmaq_n_f32(s21, q1, e2);
        s30 = vfmaq_n_f32(s30, q0, e3), s31 = vfmaq_n_f32(s31, q1, e3);
    }
    s[0][0] = s00, s[0][1] = s01, s[1][0] = s10, s[1][1] = s11;
    s[2][0] = s20, s[2][1] = s21, s[3][0] = s30, s[3][1] = s31;
}

/* Queries t0 .. t0 + nt - 1 (nt <= QL) of one head; q, k, v, out already offset to the head
 * (q, out: query t0). */
KV_INLINE void attention_tile(int nt, int t0, int d, int n_keys, int causal, float scale, const float *q, size_t ldq,
                              const void *k, const void *v, size_t ldkv, float *out, size_t ldo, int et)
{
    float32x4_t qt[256][2], acc[256][2]; /* 16 KB: (head_dim, 2 vectors of queries) */
    float32x4_t sc[KB][2];               /* (key of the block, queries): scores, then weights */
    for (int c = 0; c < d; c++) {
        float lanes[QL];
        for (int l = 0; l < QL; l++)
            lanes[l] = q[(size_t)(l < nt ? l : nt - 1) * ldq + c];
        qt[c][0] = vld1q_f32(lanes);
        qt[c][1] = vld1q_f32(lanes + 4);
        acc[c][0] = acc[c][1] = vdupq_n_f32(0.0f);
    }
    int nk = n_keys;
    if (causal >= 0 && causal + t0 + nt < nk)
        nk = causal + t0 + nt;
    /* Lane l sees keys j <= lim[l] (causal; missing lanes as the last query), else all. */
    int32x4_t lim[2];
    for (int h = 0; h < 2; h++) {
        int32_t li[4];
        for (int l = 0; l < 4; l++)
            li[l] = causal >= 0 ? causal + t0 + (4 * h + l < nt ? 4 * h + l : nt - 1) : INT32_MAX;
        lim[h] = vld1q_s32(li);
    }
    const float32x4_t ninf = vdupq_n_f32(-INFINITY), zero = vdupq_n_f32(0.0f);
    float32x4_t mx[2] = {ninf, ninf}, sum[2] = {zero, zero};
    for (int j0 = 0; j0 < nk; j0 += KB) {
        int nb = nk - j0 < KB ? nk - j0 : KB;
        float32x4_t bmax[2] = {ninf, ninf};
        for (int jj = 0; jj < nb; jj += 4) {
            int ng = nb - jj < 4 ? nb - jj : 4;
            const void *kr[4];
            for (int u = 0; u < 4; u++)
                kr[u] = kv_at(k, (size_t)(j0 + jj + (u < ng ? u : ng - 1)) * ldkv, et);
            float32x4_t s[4][2];
            tile_scores(d, (const float32x4_t(*)[2])qt, kr, et, s);
            for (int u = 0; u < ng; u++)
                for (int h = 0; h < 2; h++) {
                    float32x4_t x = vmulq_n_f32(s[u][h], scale);
                    uint32x4_t seen = vcleq_s32(vdupq_n_s32(j0 + jj + u), lim[h]);
                    x = vbslq_f32(seen, x, ninf);
                    sc[jj + u][h] = x;
                    bmax[h] = vmaxq_f32(bmax[h], x);
                }
        }
        for (int h = 0; h < 2; h++) {
            uint32x4_t up = vcgtq_f32(bmax[h], mx[h]);
            if (vmaxvq_u32(up)) {
                /* Lanes whose maximum rose: r = exp(old - new) (0 in effect on the first block:
                 * acc and sum are still 0); the others exactly 1. */
                float32x4_t nmx = vmaxq_f32(mx[h], bmax[h]);
                float32x4_t r = vbslq_f32(up, neon_exp_f32(vsubq_f32(mx[h], nmx)), vdupq_n_f32(1.0f));
                sum[h] = vmulq_f32(sum[h], r);
                for (int c = 0; c < d; c++)
                    acc[c][h] = vmulq_f32(acc[c][h], r);
                mx[h] = nmx;
            }
            for (int j = 0; j < nb; j++) {
                /* Masked keys (score -inf) weigh exactly 0. */
                uint32x4_t seen = vcgtq_f32(sc[j][h], ninf);
                float32x4_t p = vreinterpretq_f32_u32(
                    vandq_u32(seen, vreinterpretq_u32_f32(neon_exp_f32(vsubq_f32(sc[j][h], mx[h])))));
                sc[j][h] = p;
                sum[h] = vaddq_f32(sum[h], p);
            }
        }
        /* acc[c] += p_j v[j][c]: 8 dimensions per pass (16 accumulators, named for the reason
         * given at tile_scores), then 4, then 1. */
#define PV_LOAD(i) float32x4_t a##i##0 = acc[c0 + i][0], a##i##1 = acc[c0 + i][1];
#define PV_STORE(i) acc[c0 + i][0] = a##i##0, acc[c0 + i][1] = a##i##1;
#define PV_FMA(i, vv, lane)                                                                                            \
    a##i##0 = vfmaq_laneq_f32(a##i##0, p0, vv, lane), a##i##1 = vfmaq_laneq_f32(a##i##1, p1, vv, lane);
        int c0 = 0;
        for (; c0 + 8 <= d; c0 += 8) {
            PV_LOAD(0) PV_LOAD(1) PV_LOAD(2) PV_LOAD(3) PV_LOAD(4) PV_LOAD(5) PV_LOAD(6) PV_LOAD(7)
            for (int j = 0; j < nb; j++) {
                const void *vj = kv_at(v, (size_t)(j0 + j) * ldkv, et);
                float32x4_t v0 = kv_load4(vj, c0, et), v1 = kv_load4(vj, c0 + 4, et);
                float32x4_t p0 = sc[j][0], p1 = sc[j][1];
                PV_FMA(0, v0, 0) PV_FMA(1, v0, 1) PV_FMA(2, v0, 2) PV_FMA(3, v0, 3)
                PV_FMA(4, v1, 0) PV_FMA(5, v1, 1) PV_FMA(6, v1, 2) PV_FMA(7, v1, 3)
            }
            PV_STORE(0) PV_STORE(1) PV_STORE(2) PV_STORE(3) PV_STORE(4) PV_STORE(5) PV_STORE(6) PV_STORE(7)
        }
        for (; c0 + 4 <= d; c0 += 4) {
            PV_LOAD(0) PV_LOAD(1) PV_LOAD(2) PV_LOAD(3)
            for (int j = 0; j < nb; j++) {
                float32x4_t v0 = kv_load4(kv_at(v, (size_t)(j0 + j) * ldkv, et), c0, et);
                float32x4_t p0 = sc[j][0], p1 = sc[j][1];
                PV_FMA(0, v0, 0) PV_FMA(1, v0, 1) PV_FMA(2, v0, 2) PV_FMA(3, v0, 3)
            }
            PV_STORE(0) PV_STORE(1) PV_STORE(2) PV_STORE(3)
        }
#undef PV_LOAD
#undef PV_STORE
#undef PV_FMA
        for (; c0 < d; c0++)
            for (int j = 0; j < nb; j++) {
                float e = kv_load1(kv_at(v, (size_t)(j0 + j) * ldkv, et), c0, et);
                acc[c0][0] = vfmaq_n_f32(acc[c0][0], sc[j][0], e);
                acc[c0][1] = vfmaq_n_f32(acc[c0][1], sc[j][1], e);
            }
    }
    /* sum > 0 in every lane (key 0 is always seen) unless there are no keys: then 0. */
    float inv[QL];
    for (int h = 0; h < 2; h++)
        vst1q_f32(inv + 4 * h, vbslq_f32(vcgtq_f32(sum[h], zero), vdivq_f32(vdupq_n_f32(1.0f), sum[h]), zero));
    for (int c = 0; c < d; c++) {
        float o[QL];
        vst1q_f32(o, acc[c][0]);
        vst1q_f32(o + 4, acc[c][1]);
        for (int l = 0; l < nt; l++)
            out[(size_t)l * ldo + c] = o[l] * inv[l];
    }
}

/* attention, attention_f16kv and attention_q8kv. Contract: kernels.h (head_dim <= 256; q8: a
 * multiple of 32; ldkv in units). Heads are what threads split, and a head's arithmetic does
 * not depend on h0/h1. */
KV_INLINE void attention_body(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim, int n_keys, int causal,
                              float scale, const float *q, size_t ldq, const void *k, const void *v, size_t ldkv,
                              float *out, size_t ldo, int et)
{
    if (nq < 2) {
        attention_rows(h0, h1, nq, n_heads, n_kv_heads, head_dim, n_keys, causal, scale, q, ldq, k, v, ldkv, out, ldo,
                       et);
        return;
    }
    int group = n_heads / n_kv_heads, d = head_dim;
    size_t hu = kv_units(d, et); /* units between kv heads */
    for (int h = h0; h < h1; h++)
        for (int t0 = 0; t0 < nq; t0 += QL) {
            int nt = nq - t0 < QL ? nq - t0 : QL;
            attention_tile(nt, t0, d, n_keys, causal, scale, q + (size_t)t0 * ldq + (size_t)h * d, ldq,
                           kv_at(k, (size_t)(h / group) * hu, et), kv_at(v, (size_t)(h / group) * hu, et), ldkv,
                           out + (size_t)t0 * ldo + (size_t)h * d, ldo, et);
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
