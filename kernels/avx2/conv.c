/* conv.c (avx2): patch extraction (im2col) and the depthwise 3x3 convolution.
 * dwconv3x3 vectorizes over channels (channels-last), with the taps of a block of channels
 * transposed once into a small stack table; each output sums its valid taps in the reference's
 * order with unfused multiply-adds, so it equals the reference bit for bit. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <string.h>

#include "kernels_avx2.h"
#include "simd.h"

/* Contract: kernels.h im2col_patch; a copy, exact; patch rows [r0, r1). */
void im2col_patch_avx2(int r0, int r1, int h, int w, int p, const float *img, float *cols)
{
    int g = w / p;
    size_t kk = (size_t)3 * p * p;
    for (int r = r0; r < r1; r++)
        for (int c = 0; c < g; c++) {
            float *dst = cols + ((size_t)r * g + c) * kk;
            for (int ch = 0; ch < 3; ch++)
                for (int u = 0; u < p; u++)
                    memcpy(dst + ((size_t)ch * p + u) * p,
                           img + ((size_t)ch * h + (size_t)r * p + u) * w + (size_t)c * p,
                           (size_t)p * sizeof(float));
        }
}

enum { CB = 64 }; /* channels per block: 9 x 64 transposed taps = 2.3 KB on the stack */

/* Contract: kernels.h dwconv3x3; stride 1 or 2, channels [c0, c1) (any), exact. */
void dwconv3x3_avx2(int c0, int c1, int h, int w, int c, int stride, const float *in,
                    const float *wt, const float *bias, float *out)
{
    int ho = (h - 1) / stride + 1;
    int wo = (w - 1) / stride + 1;
    float tap[9][CB];
    for (int cb = c0; cb < c1; cb += CB) {
        int nc = c1 - cb < CB ? c1 - cb : CB;
        memset(tap, 0, sizeof tap); /* lanes past nc are loaded (then masked): keep them defined */
        for (int t = 0; t < 9; t++)
            for (int q = 0; q < nc; q++)
                tap[t][q] = wt[(size_t)(cb + q) * 9 + t];
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float *dst = out + ((size_t)oy * wo + ox) * c + cb;
                for (int q = 0; q < nc; q += 8) {
                    __m256i mk = lane_mask(nc - q);
                    __m256 s = _mm256_setzero_ps();
                    for (int u = 0; u < 3; u++) {
                        int iy = oy * stride + u - 1;
                        if (iy < 0 || iy >= h)
                            continue;
                        for (int vv = 0; vv < 3; vv++) {
                            int ix = ox * stride + vv - 1;
                            if (ix < 0 || ix >= w)
                                continue;
                            const float *src = in + ((size_t)iy * w + ix) * c + cb + q;
                            __m256 x = _mm256_maskload_ps(src, mk);
                            s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_loadu_ps(&tap[u * 3 + vv][q]), x));
                        }
                    }
                    if (bias)
                        s = _mm256_add_ps(s, _mm256_maskload_ps(bias + cb + q, mk));
                    _mm256_maskstore_ps(dst + q, mk, s);
                }
            }
    }
}
