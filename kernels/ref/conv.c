/* conv.c (ref): the convolutions of the patch embedding and the projectors, and adaptive
 * average pooling. Feature maps are channels-last (h, w, c): a token-major matrix, as the
 * linear layers produce it. */
#include "kernels_ref.h"

void im2col_patch_ref(int r0, int r1, int h, int w, int p, const float *img, float *cols)
{
    int g = w / p;
    int kk = 3 * p * p;
    for (int r = r0; r < r1; r++)
        for (int c = 0; c < g; c++) {
            float *dst = cols + ((size_t)r * g + c) * kk;
            for (int ch = 0; ch < 3; ch++)
                for (int u = 0; u < p; u++)
                    for (int v = 0; v < p; v++)
                        dst[(ch * p + u) * p + v] =
                            img[((size_t)ch * h + (size_t)r * p + u) * w + (size_t)c * p + v];
        }
}

void dwconv3x3_ref(int c0, int c1, int h, int w, int c, int stride, const float *in,
                   const float *wt, const float *bias, float *out)
{
    int ho = (h - 1) / stride + 1;
    int wo = (w - 1) / stride + 1;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++)
            for (int ch = c0; ch < c1; ch++) {
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

void avgpool_ref(int oy0, int oy1, int h, int w, int c, int oh, int ow, const float *in,
                 float *out)
{
    for (int oy = oy0; oy < oy1; oy++) {
        /* PyTorch adaptive bins: [floor(i*h/oh), ceil((i+1)*h/oh)). */
        int y0 = oy * h / oh;
        int y1 = ((oy + 1) * h + oh - 1) / oh;
        for (int ox = 0; ox < ow; ox++) {
            int x0 = ox * w / ow;
            int x1 = ((ox + 1) * w + ow - 1) / ow;
            float *dst = out + ((size_t)oy * ow + ox) * c;
            for (int ch = 0; ch < c; ch++)
                dst[ch] = 0;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    for (int ch = 0; ch < c; ch++)
                        dst[ch] += in[((size_t)y * w + x) * c + ch];
            float inv = 1.0f / (float)((y1 - y0) * (x1 - x0));
            for (int ch = 0; ch < c; ch++)
                dst[ch] *= inv;
        }
    }
}
