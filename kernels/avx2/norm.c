/* norm.c (avx2): rmsnorm, layernorm and the elementwise ops (activations, add, to_f16).
 * Reductions use one 8-lane accumulator and hsum8; elementwise ops run 8 lanes at a time from
 * i0 with a masked tail, lanes independent, so any split of [i0, i1) gives the same bits.
 * exp comes from exp8 (simd.h, ~2 ulp), erf from a rational/exponential fit (abs error < 2e-7);
 * both are inside the activation row of kernels/tolerance.h. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <math.h>

#include "kernels_avx2.h"
#include "simd.h"

/* Sum of x[0:n] and of (x - mu)^2 (sq != 0), 8 lanes then hsum8; masked tail, no over-read. */
static inline float lane_sum(const float *x, int n, int sq, float mu)
{
    __m256 acc = _mm256_setzero_ps();
    __m256 vm = _mm256_set1_ps(mu);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (sq) {
            v = _mm256_sub_ps(v, vm);
            acc = _mm256_fmadd_ps(v, v, acc);
        } else {
            acc = _mm256_add_ps(acc, v);
        }
    }
    if (i < n) {
        __m256i mk = lane_mask(n - i);
        __m256 v = _mm256_maskload_ps(x + i, mk);
        if (sq) {
            v = _mm256_and_ps(_mm256_sub_ps(v, vm), _mm256_castsi256_ps(mk));
            acc = _mm256_fmadd_ps(v, v, acc);
        } else {
            acc = _mm256_add_ps(acc, v);
        }
    }
    return hsum8(acc);
}

/* Contract: kernels.h rmsnorm; rows [r0, r1), any n >= 1, any ld, x and y may alias row-wise. */
void rmsnorm_avx2(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                  float *y)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * ld;
        float *yr = y + (size_t)r * ld;
        float ss = lane_sum(xr, n, 1, 0.0f);
        float inv = 1.0f / sqrtf(ss / n + eps);
        __m256 vi = _mm256_set1_ps(inv);
        int i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(xr + i), vi)));
        if (i < n) {
            __m256i mk = lane_mask(n - i);
            __m256 v = _mm256_mul_ps(_mm256_maskload_ps(w + i, mk), _mm256_mul_ps(_mm256_maskload_ps(xr + i, mk), vi));
            _mm256_maskstore_ps(yr + i, mk, v);
        }
    }
}

/* Contract: kernels.h layernorm; two passes (mean, then the variance of x - mean) so a large
 * common offset does not cancel; rows [r0, r1), any n >= 1. */
void layernorm_avx2(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                    const float *b, float eps, float *y)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * ld;
        float *yr = y + (size_t)r * ld;
        float mean = lane_sum(xr, n, 0, 0.0f) / n;
        float var = lane_sum(xr, n, 1, mean);
        float inv = 1.0f / sqrtf(var / n + eps);
        __m256 vm = _mm256_set1_ps(mean), vi = _mm256_set1_ps(inv);
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), vm), vi), _mm256_loadu_ps(w + i));
            _mm256_storeu_ps(yr + i, _mm256_add_ps(v, _mm256_loadu_ps(b + i)));
        }
        if (i < n) {
            __m256i mk = lane_mask(n - i);
            __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + i, mk), vm), vi),
                                     _mm256_maskload_ps(w + i, mk));
            _mm256_maskstore_ps(yr + i, mk, _mm256_add_ps(v, _mm256_maskload_ps(b + i, mk)));
        }
    }
}

/* erf(x): Abramowitz & Stegun 7.1.26 on |x| (abs error 1.5e-7, plus rounding), sign restored;
 * saturates to +-1 where the f32 result is +-1 anyway. */
static inline __m256 erf8(__m256 x)
{
    const __m256 sgn = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_min_ps(_mm256_andnot_ps(sgn, x), _mm256_set1_ps(6.0f));
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), ax), ax));
    __m256 y = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(y, _mm256_and_ps(x, sgn));
}

/* The activations as 8-lane functions of 8 lanes. */
enum { ACT_GELU, ACT_QGELU, ACT_HSWISH, ACT_HSIG, ACT_RELU };

static inline __m256 act8(int op, __m256 v)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    switch (op) {
    case ACT_GELU:
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v),
                             _mm256_add_ps(one, erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)))));
    case ACT_QGELU:
        return _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_mul_ps(v, _mm256_set1_ps(-1.702f)))));
    case ACT_HSWISH:
    case ACT_HSIG: {
        __m256 r6 = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, _mm256_set1_ps(3.0f)), zero), _mm256_set1_ps(6.0f));
        if (op == ACT_HSWISH)
            r6 = _mm256_mul_ps(v, r6);
        return _mm256_div_ps(r6, _mm256_set1_ps(6.0f));
    }
    default:
        return _mm256_max_ps(v, zero);
    }
}

/* x[i0:i1) in place, 8 lanes from i0 (unaligned), masked tail: no access outside the range. */
static inline void act_range(int op, size_t i0, size_t i1, float *x)
{
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(x + i, act8(op, _mm256_loadu_ps(x + i)));
    if (i < i1) {
        __m256i mk = lane_mask((int)(i1 - i));
        _mm256_maskstore_ps(x + i, mk, act8(op, _mm256_maskload_ps(x + i, mk)));
    }
}

/* Contracts: kernels.h, in place on x[i0:i1), no alignment, no access outside the range. */
void gelu_erf_avx2(size_t i0, size_t i1, float *x) { act_range(ACT_GELU, i0, i1, x); }
void quick_gelu_avx2(size_t i0, size_t i1, float *x) { act_range(ACT_QGELU, i0, i1, x); }
void hardswish_avx2(size_t i0, size_t i1, float *x) { act_range(ACT_HSWISH, i0, i1, x); }
void hardsigmoid_avx2(size_t i0, size_t i1, float *x) { act_range(ACT_HSIG, i0, i1, x); }
void relu_avx2(size_t i0, size_t i1, float *x) { act_range(ACT_RELU, i0, i1, x); }

/* silu(g) * u, as the reference: g / (1 + exp(-g)) * u (g < -88 gives -0 * u). */
static inline __m256 silu_mul8(__m256 g, __m256 u)
{
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

/* Contract: kernels.h silu_mul; gate[i0:i1) updated, up read over the same range only. */
void silu_mul_avx2(size_t i0, size_t i1, float *gate, const float *up)
{
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(gate + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < i1) {
        __m256i mk = lane_mask((int)(i1 - i));
        _mm256_maskstore_ps(gate + i, mk, silu_mul8(_mm256_maskload_ps(gate + i, mk), _mm256_maskload_ps(up + i, mk)));
    }
}

/* Contract: kernels.h add; exact (one IEEE add per element). */
void add_avx2(size_t i0, size_t i1, float *y, const float *x)
{
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    if (i < i1) {
        __m256i mk = lane_mask((int)(i1 - i));
        _mm256_maskstore_ps(y + i, mk, _mm256_add_ps(_mm256_maskload_ps(y + i, mk), _mm256_maskload_ps(x + i, mk)));
    }
}

/* Contract: kernels.h to_f16; bit for bit the reference (vcvtps2ph rounds to nearest even,
 * keeps subnormals and NaN payloads as f32_to_f16 does). The tail goes through a zero-padded
 * vector: only x[i0:i1] is read and y[i0:i1] written. */
void to_f16_avx2(size_t i0, size_t i1, const float *x, uint16_t *y)
{
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < i1) {
        int r = (int)(i1 - i);
        uint16_t t[8];
        __m256 xt = _mm256_maskload_ps(x + i, lane_mask(r));
        _mm_storeu_si128((__m128i *)t, _mm256_cvtps_ph(xt, _MM_FROUND_TO_NEAREST_INT));
        for (int j = 0; j < r; j++)
            y[i + j] = t[j];
    }
}
