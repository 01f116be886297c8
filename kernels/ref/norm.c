/* norm.c (ref): normalizations and elementwise activations, in f32. */
#include <math.h>

#include "kernels_ref.h"

void rmsnorm_ref(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                 float *y)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * ld;
        float *yr = y + (size_t)r * ld;
        float ss = 0;
        for (int i = 0; i < n; i++)
            ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / n + eps);
        for (int i = 0; i < n; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}

void layernorm_ref(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                   const float *b, float eps, float *y)
{
    for (int r = r0; r < r1; r++) {
        const float *xr = x + (size_t)r * ld;
        float *yr = y + (size_t)r * ld;
        float mean = 0;
        for (int i = 0; i < n; i++)
            mean += xr[i];
        mean /= n;
        float var = 0;
        for (int i = 0; i < n; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        float inv = 1.0f / sqrtf(var / n + eps);
        for (int i = 0; i < n; i++)
            yr[i] = (xr[i] - mean) * inv * w[i] + b[i];
    }
}

void gelu_erf_ref(size_t i0, size_t i1, float *x)
{
    for (size_t i = i0; i < i1; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void quick_gelu_ref(size_t i0, size_t i1, float *x)
{
    for (size_t i = i0; i < i1; i++)
        x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

static float relu6(float v) { return fminf(fmaxf(v, 0.0f), 6.0f); }

void hardswish_ref(size_t i0, size_t i1, float *x)
{
    for (size_t i = i0; i < i1; i++)
        x[i] = x[i] * relu6(x[i] + 3.0f) / 6.0f;
}

void hardsigmoid_ref(size_t i0, size_t i1, float *x)
{
    for (size_t i = i0; i < i1; i++)
        x[i] = relu6(x[i] + 3.0f) / 6.0f;
}

/* -0 and NaN give +0, as a vector max(x, 0) does. Not fmaxf: C leaves fmaxf(-0, +0) to the
 * library, and clang's build returned -0 where GCC's returned +0. */
void relu_ref(size_t i0, size_t i1, float *x)
{
    for (size_t i = i0; i < i1; i++)
        x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void silu_mul_ref(size_t i0, size_t i1, float *gate, const float *up)
{
    for (size_t i = i0; i < i1; i++)
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void add_ref(size_t i0, size_t i1, float *y, const float *x)
{
    for (size_t i = i0; i < i1; i++)
        y[i] += x[i];
}
