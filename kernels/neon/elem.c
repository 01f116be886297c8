/* elem.c (neon): the Armv8.0 Advanced SIMD row and elementwise kernels: rmsnorm, layernorm,
 * silu_mul, quick_gelu, gelu_erf, add, to_f16, rope, dwconv3x3.
 * Elementwise kernels compute a ragged tail through a 4-lane scratch vector with the same code
 * as the body, so an element's bits never depend on where [i0, i1) starts or ends. */
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon/elem.c needs aarch64 Advanced SIMD"
#endif
#include <math.h>
#include <string.h>

#include "neon.h"

/* Sum of (x[i] - sub)^2 over one row: two 4-lane accumulators over chunks of 8, then one
 * chunk of 4, then the lanes, then the leftovers one by one. Rows are never split between
 * threads, so any fixed order is deterministic. */
static inline float row_sumsq(const float *x, int n, float sub)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    float32x4_t vs = vdupq_n_f32(sub);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t a = vsubq_f32(vld1q_f32(x + i), vs);
        float32x4_t b = vsubq_f32(vld1q_f32(x + i + 4), vs);
        s0 = vfmaq_f32(s0, a, a);
        s1 = vfmaq_f32(s1, b, b);
    }
    if (i + 4 <= n) {
        float32x4_t a = vsubq_f32(vld1q_f32(x + i), vs);
        s0 = vfmaq_f32(s0, a, a);
        i += 4;
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++)
        s += (x[i] - sub) * (x[i] - sub);
    return s;
}

/* Rows r0..r1; y = w * (x * inv) in the reference's order, only the sum of squares differs. */
void rmsnorm_neon(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                  float *y)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * ld;
        float *yr = y + (size_t)r * ld;
        float inv = 1.0f / sqrtf(row_sumsq(xr, n, 0.0f) / n + eps);
        int i = 0;
        for (; i + 4 <= n; i += 4)
            vst1q_f32(yr + i, vmulq_f32(vld1q_f32(w + i), vmulq_n_f32(vld1q_f32(xr + i), inv)));
        for (; i < n; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}

/* Rows r0..r1, two passes like the reference (mean, then the centred variance), so there is
 * no cancellation; y = ((x - mean) * inv) * w + b in the reference's order.
 * The mean is summed one element after the other exactly as the reference sums it: when the
 * row sits far from 0 (|mean| >> std) a sum in any other order moves the mean by more than
 * the norm tolerance (the reference's own rounding error, ~sqrt(n) ulp of the sum, is
 * amplified by 1/std), so only the same order agrees. The chain costs n dependent FADDs per
 * row; the variance (a sum of positive terms, well conditioned) and the output are vector. */
void layernorm_neon(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                    const float *b, float eps, float *y)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * ld;
        float *yr = y + (size_t)r * ld;
        float mean = 0;
        for (int i = 0; i < n; i++)
            mean += xr[i];
        mean /= n;
        float inv = 1.0f / sqrtf(row_sumsq(xr, n, mean) / n + eps);
        float32x4_t vm = vdupq_n_f32(mean);
        int i = 0;
        for (; i + 4 <= n; i += 4) {
            float32x4_t t = vmulq_n_f32(vsubq_f32(vld1q_f32(xr + i), vm), inv);
            vst1q_f32(yr + i, vaddq_f32(vmulq_f32(t, vld1q_f32(w + i)), vld1q_f32(b + i)));
        }
        for (; i < n; i++)
            yr[i] = (xr[i] - mean) * inv * w[i] + b[i];
    }
}

/* x / (1 + e^(-k x)): silu (k = 1) and quick_gelu (k = 1.702). Error: that of neon_exp
 * (2.5e-7 relative) plus two roundings; saturates to x (or to 0 below) as the reference. */
static inline float32x4_t sigmoid_mul(float32x4_t x, float kk)
{
    float32x4_t e = neon_exp_f32(vmulq_n_f32(x, -kk));
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

/* gelu(x) = x/2 (1 + erf(x / sqrt 2)). 1 + erf(z) is erfc(|z|) for z < 0 and 2 - erfc(z) for
 * z >= 0, so it is never formed by cancellation. erfc(z) = t P(t) e^(-z^2), t = 1/(1 + p z):
 * Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7 on erf, i.e. below 7.5e-8 |x| on
 * gelu, plus a few roundings. */
static inline float32x4_t gelu_erf4(float32x4_t x)
{
    float32x4_t z = vmulq_n_f32(vabsq_f32(x), 0.70710678118654752f);
    float32x4_t t = vdivq_f32(vdupq_n_f32(1.0f), vfmaq_n_f32(vdupq_n_f32(1.0f), z, 0.3275911f));
    float32x4_t p = vdupq_n_f32(1.061405429f);
    p = vfmaq_f32(vdupq_n_f32(-1.453152027f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.421413741f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.284496736f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.254829592f), p, t);
    float32x4_t erfc = vmulq_f32(vmulq_f32(p, t), neon_exp_f32(vnegq_f32(vmulq_f32(z, z))));
    uint32x4_t neg = vcltq_f32(x, vdupq_n_f32(0.0f));
    float32x4_t onep = vbslq_f32(neg, erfc, vsubq_f32(vdupq_n_f32(2.0f), erfc));
    return vmulq_f32(vmulq_n_f32(x, 0.5f), onep);
}

enum { ACT_QUICK_GELU, ACT_GELU_ERF };

static inline __attribute__((always_inline)) float32x4_t act4(int kind, float32x4_t v)
{
    return kind == ACT_QUICK_GELU ? sigmoid_mul(v, 1.702f) : gelu_erf4(v);
}

static inline __attribute__((always_inline)) void act_range(int kind, size_t i0, size_t i1, float *x)
{
    size_t i = i0;
    for (; i + 4 <= i1; i += 4)
        vst1q_f32(x + i, act4(kind, vld1q_f32(x + i)));
    if (i < i1) {
        float tmp[4] = {0, 0, 0, 0};
        memcpy(tmp, x + i, (i1 - i) * sizeof *x);
        vst1q_f32(tmp, act4(kind, vld1q_f32(tmp)));
        memcpy(x + i, tmp, (i1 - i) * sizeof *x);
    }
}

void quick_gelu_neon(size_t i0, size_t i1, float *x) { act_range(ACT_QUICK_GELU, i0, i1, x); }

void gelu_erf_neon(size_t i0, size_t i1, float *x) { act_range(ACT_GELU_ERF, i0, i1, x); }

/* gate = gate / (1 + e^-gate) * up, in the reference's order. */
void silu_mul_neon(size_t i0, size_t i1, float *gate, const float *up)
{
    size_t i = i0;
    for (; i + 4 <= i1; i += 4)
        vst1q_f32(gate + i, vmulq_f32(sigmoid_mul(vld1q_f32(gate + i), 1.0f), vld1q_f32(up + i)));
    if (i < i1) {
        float g[4] = {0, 0, 0, 0}, u[4] = {0, 0, 0, 0};
        memcpy(g, gate + i, (i1 - i) * sizeof *g);
        memcpy(u, up + i, (i1 - i) * sizeof *u);
        vst1q_f32(g, vmulq_f32(sigmoid_mul(vld1q_f32(g), 1.0f), vld1q_f32(u)));
        memcpy(gate + i, g, (i1 - i) * sizeof *g);
    }
}

/* One add per element: exact like the reference, so the scalar tail is harmless. */
void add_neon(size_t i0, size_t i1, float *y, const float *x)
{
    size_t i = i0;
    for (; i + 16 <= i1; i += 16)
        for (int j = 0; j < 16; j += 4)
            vst1q_f32(y + i + j, vaddq_f32(vld1q_f32(y + i + j), vld1q_f32(x + i + j)));
    for (; i + 4 <= i1; i += 4)
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < i1; i++)
        y[i] += x[i];
}

/* Bit for bit the reference: fcvtn rounds to nearest even (the default FPCR mode; FZ and DN
 * clear, as Linux starts every thread), keeps subnormal results and NaN payloads as
 * f32_to_f16 does. The tail goes through a zero-padded 4-lane vector. */
void to_f16_neon(size_t i0, size_t i1, const float *x, uint16_t *y)
{
    size_t i = i0;
    for (; i + 4 <= i1; i += 4)
        vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    if (i < i1) {
        float t[4] = {0, 0, 0, 0};
        uint16_t h[4];
        memcpy(t, x + i, (i1 - i) * sizeof *t);
        vst1_u16(h, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(t))));
        memcpy(y + i, h, (i1 - i) * sizeof *h);
    }
}

/* Bit-identical to rope_ref: unfused a*c - b*s, b*c + a*s. */
void rope_neon(int h0, int h1, int head_dim, float *x, const float *cs)
{
    int half = head_dim / 2;
    const float *sn = cs + half;
    for (int h = h0; h < h1; h++) {
        float *lo = x + (size_t)h * head_dim;
        float *hi = lo + half;
        int i = 0;
        for (; i + 4 <= half; i += 4) {
            float32x4_t a = vld1q_f32(lo + i), b = vld1q_f32(hi + i);
            float32x4_t c = vld1q_f32(cs + i), s = vld1q_f32(sn + i);
            vst1q_f32(lo + i, vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s)));
            vst1q_f32(hi + i, vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s)));
        }
        for (; i < half; i++) {
            float a = lo[i], b = hi[i];
            lo[i] = a * cs[i] - b * sn[i];
            hi[i] = b * cs[i] + a * sn[i];
        }
    }
}

/* Bit-identical to dwconv3x3_ref: 4 channels per vector, the taps summed in the same (u, v)
 * order from 0 with unfused multiply-adds, out-of-image taps skipped. Channel groups are the
 * outer loop so a group's 9 tap vectors (gathered from the (c, 9) layout once) stay in
 * registers across all output pixels; leftover channels run the same sum in scalar. */
void dwconv3x3_neon(int c0, int c1, int h, int w, int c, int stride, const float *in,
                    const float *wt, const float *bias, float *out)
{
    int ho = (h - 1) / stride + 1;
    int wo = (w - 1) / stride + 1;
    int ch = c0;
    for (; ch + 4 <= c1; ch += 4) {
        float32x4_t tap[9];
        for (int q = 0; q < 9; q++) {
            float g[4] = {wt[(ch + 0) * 9 + q], wt[(ch + 1) * 9 + q], wt[(ch + 2) * 9 + q],
                          wt[(ch + 3) * 9 + q]};
            tap[q] = vld1q_f32(g);
        }
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float32x4_t s = vdupq_n_f32(0.0f);
                for (int u = 0; u < 3; u++) {
                    int iy = oy * stride + u - 1;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int v = 0; v < 3; v++) {
                        int ix = ox * stride + v - 1;
                        if (ix < 0 || ix >= w)
                            continue;
                        float32x4_t xv = vld1q_f32(in + ((size_t)iy * w + ix) * c + ch);
                        s = vaddq_f32(s, vmulq_f32(tap[u * 3 + v], xv));
                    }
                }
                if (bias)
                    s = vaddq_f32(s, vld1q_f32(bias + ch));
                vst1q_f32(out + ((size_t)oy * wo + ox) * c + ch, s);
            }
    }
    for (; ch < c1; ch++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float s = 0;
                for (int u = 0; u < 3; u++) {
                    int iy = oy * stride + u - 1;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int v = 0; v < 3; v++) {
                        int ix = ox * stride + v - 1;
                        if (ix < 0 || ix >= w)
                            continue;
                        s += wt[ch * 9 + u * 3 + v] * in[((size_t)iy * w + ix) * c + ch];
                    }
                }
                out[((size_t)oy * wo + ox) * c + ch] = bias ? s + bias[ch] : s;
            }
}
