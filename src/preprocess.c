/* preprocess.c: MobileVLM's CLIP image preprocessing, bit-exact with the upstream Python path
 * (expand2square -> Pillow BICUBIC resize of the shortest edge -> center crop -> x/255 in
 * float64 -> (x - mean) / std in float32 -> CHW). Owns the Pillow resampling arithmetic
 * (antialiased bicubic, 22-bit fixed point, horizontal pass first into 8 bits); see
 * docs/preprocessing.md for the exact rules and how they are tested. */
#include "preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Pillow's fixed-point precision for 8-bit images: 32 - 8 (pixel) - 2 (headroom for
 * negative lobes and sums slightly above 1). */
#define PIL_PRECISION_BITS 22
/* Bicubic kernel support in input pixels at scale 1 (Pillow's filter table). */
#define PIL_BICUBIC_SUPPORT 2.0
/* Largest side we accept: keeps every index and fixed-point sum far from int overflow. */
#define PP_MAX_SIDE (1 << 24)

/* Pillow's bicubic kernel with a = -0.5 (Keys' kernel, the one PIL calls BICUBIC). */
static double pil_bicubic_kernel(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* The resampling weights of one axis, computed once and reused for every row or column. */
typedef struct pp_axis {
    int out_size;
    int ksize;       /* taps per output sample (table stride) */
    int *first;      /* (out_size) first input index used by each output sample */
    int *count;      /* (out_size) number of taps used, <= ksize */
    int32_t *coeffs; /* (out_size, ksize) weights in 22-bit fixed point */
} pp_axis;

static void pp_axis_free(pp_axis *ax)
{
    free(ax->first);
    free(ax->count);
    free(ax->coeffs);
    memset(ax, 0, sizeof *ax);
}

/* Builds the weight table for resampling in_size samples to out_size, exactly as Pillow's
 * precompute_coeffs + normalize_coeffs_8bpc: the kernel is stretched by the downscale factor
 * (antialiasing), each output's weights are normalized by their double-precision sum, then
 * rounded half away from zero to 22-bit fixed point. The expressions keep Pillow's operation
 * order (multiply by 1/filterscale, (x + xmin) - center + 0.5) because the weights are rounded
 * and any reordering can move a result by one LSB.
 * Preconditions: 1 <= in_size, out_size <= PP_MAX_SIDE. Errors: VLM_ENOMEM. */
static int pp_axis_init(pp_axis *ax, int in_size, int out_size, vlm_error *e)
{
    memset(ax, 0, sizeof *ax);
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = PIL_BICUBIC_SUPPORT * filterscale;
    double inv_filterscale = 1.0 / filterscale;
    int ksize = (int)ceil(support) * 2 + 1; /* <= 4 * PP_MAX_SIDE + 1 */
    size_t table;
    if (ck_mul((size_t)out_size, (size_t)ksize, &table))
        return vlm_fail(e, VLM_ENOMEM, "resize %d -> %d: weight table too large", in_size,
                        out_size);
    double *weights = malloc((size_t)ksize * sizeof *weights); /* (ksize) one output's weights */
    ax->first = malloc((size_t)out_size * sizeof *ax->first);
    ax->count = malloc((size_t)out_size * sizeof *ax->count);
    ax->coeffs = table <= SIZE_MAX / sizeof *ax->coeffs ? malloc(table * sizeof *ax->coeffs) : NULL;
    if (!weights || !ax->first || !ax->count || !ax->coeffs) {
        free(weights);
        pp_axis_free(ax);
        return vlm_fail(e, VLM_ENOMEM, "resize %d -> %d: cannot allocate the %d x %d weight table",
                        in_size, out_size, out_size, ksize);
    }
    ax->out_size = out_size;
    ax->ksize = ksize;
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation toward zero, as Pillow */
        int hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        int n = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            double w = pil_bicubic_kernel((j + lo - center + 0.5) * inv_filterscale);
            weights[j] = w;
            sum += w;
        }
        int32_t *q = ax->coeffs + (size_t)i * ksize;
        for (int j = 0; j < ksize; j++) {
            double w = j < n ? (sum != 0.0 ? weights[j] / sum : weights[j]) : 0.0;
            double fixed = w * (1 << PIL_PRECISION_BITS);
            q[j] = (int32_t)(w < 0 ? fixed - 0.5 : fixed + 0.5);
        }
        ax->first[i] = lo;
        ax->count[i] = n;
    }
    free(weights);
    return 0;
}

/* Pillow's clip8: a fixed-point sum (already offset by one half) to 0..255. */
static inline uint8_t pil_clip8(int32_t v)
{
    if (v >= (256 << PIL_PRECISION_BITS))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PIL_PRECISION_BITS);
}

/* Horizontal pass of one RGB row: in (ax->first/count range of in_w, 3) -> out (ax->out_size, 3).
 * Sums stay below 2^31: |sum| <= 2^21 + 255 * sum|q| with sum|q| < 1.3 * 2^22. */
static void pp_resample_row(const uint8_t *in, uint8_t *out, const pp_axis *ax)
{
    const int32_t half = 1 << (PIL_PRECISION_BITS - 1);
    for (int x = 0; x < ax->out_size; x++) {
        const int32_t *q = ax->coeffs + (size_t)x * ax->ksize;
        const uint8_t *p = in + (size_t)ax->first[x] * 3;
        /* Two interleaved accumulator sets shorten the add chains; integer sums are exact,
         * so the split does not change the result. */
        int32_t s0 = half, s1 = half, s2 = half, t0 = 0, t1 = 0, t2 = 0;
        int j = 0, n = ax->count[x];
        for (; j + 1 < n; j += 2, p += 6) {
            s0 += p[0] * q[j];
            s1 += p[1] * q[j];
            s2 += p[2] * q[j];
            t0 += p[3] * q[j + 1];
            t1 += p[4] * q[j + 1];
            t2 += p[5] * q[j + 1];
        }
        if (j < n) {
            s0 += p[0] * q[j];
            s1 += p[1] * q[j];
            s2 += p[2] * q[j];
        }
        out[3 * x + 0] = pil_clip8(s0 + t0);
        out[3 * x + 1] = pil_clip8(s1 + t1);
        out[3 * x + 2] = pil_clip8(s2 + t2);
    }
}

/* The image being resized, seen as a src_w x src_h canvas of pad color with the RGB image
 * (img_w, img_h) at (off_x, off_y). This lets clip_preprocess resize the expand2square result
 * without building it: a 4000x3000 photo would otherwise need a 48 MB padded copy. */
typedef struct pp_canvas {
    const uint8_t *rgb; /* (img_h, img_w, 3) */
    int img_w, img_h;
    int src_w, src_h;
    int off_x, off_y;
    uint8_t pad[3];
} pp_canvas;

static int pp_canvas_row_is_pad(const pp_canvas *cv, int y)
{
    return y < cv->off_y || y >= cv->off_y + cv->img_h;
}

/* Returns canvas row y (src_w, 3): a pointer into the image when the row needs no side
 * padding, otherwise the row assembled in scratch (src_w, 3). */
static const uint8_t *pp_canvas_row(const pp_canvas *cv, int y, uint8_t *scratch)
{
    if (pp_canvas_row_is_pad(cv, y)) {
        for (int x = 0; x < cv->src_w; x++)
            memcpy(scratch + 3 * (size_t)x, cv->pad, 3);
        return scratch;
    }
    const uint8_t *row = cv->rgb + (size_t)(y - cv->off_y) * cv->img_w * 3;
    if (cv->img_w == cv->src_w)
        return row;
    for (int x = 0; x < cv->src_w; x++)
        if (x < cv->off_x || x >= cv->off_x + cv->img_w)
            memcpy(scratch + 3 * (size_t)x, cv->pad, 3);
    memcpy(scratch + 3 * (size_t)cv->off_x, row, (size_t)cv->img_w * 3);
    return scratch;
}

/* Resizes the canvas to out (out_h, out_w, 3) with Pillow's two-pass BICUBIC: horizontal first
 * into 8 bits, then vertical; a pass whose axis keeps its size is skipped. Only the rows the
 * vertical pass reads are resampled horizontally, and all pad rows share one computed row.
 * Preconditions: canvas and output sizes in 1..PP_MAX_SIDE. Errors: VLM_ENOMEM. */
static int pp_resize_canvas(const pp_canvas *cv, uint8_t *out, int out_w, int out_h, vlm_error *e)
{
    int need_h = out_w != cv->src_w, need_v = out_h != cv->src_h;
    pp_axis hax = {0}, vax = {0};
    int rc = 0;
    size_t src_row_bytes = (size_t)cv->src_w * 3, mid_row_bytes = (size_t)out_w * 3;
    uint8_t *scratch = malloc(src_row_bytes);              /* (src_w, 3) assembled canvas row */
    uint8_t *pad_row = malloc(mid_row_bytes);              /* (out_w, 3) a pad row after pass 1 */
    const uint8_t **mid_rows = malloc((size_t)cv->src_h * sizeof *mid_rows); /* (src_h) */
    uint8_t *mid = NULL;   /* (rows used, out_w, 3) horizontal pass output, when needed */
    int32_t *acc = NULL;   /* (out_w * 3) vertical pass sums */
    if (!scratch || !pad_row || !mid_rows) {
        rc = vlm_fail(e, VLM_ENOMEM, "resize %dx%d -> %dx%d: out of memory", cv->src_w, cv->src_h,
                      out_w, out_h);
        goto out_free;
    }
    if (need_h && (rc = pp_axis_init(&hax, cv->src_w, out_w, e)) != 0)
        goto out_free;
    if (need_v && (rc = pp_axis_init(&vax, cv->src_h, out_h, e)) != 0)
        goto out_free;

    /* Rows of the canvas that the vertical pass reads (all of them if it is skipped). */
    int row_lo = 0, row_hi = cv->src_h;
    if (need_v) {
        row_lo = vax.first[0];
        row_hi = vax.first[out_h - 1] + vax.count[out_h - 1];
    }

    /* Pass 1: horizontal, or just point at the canvas rows. */
    if (need_h) {
        size_t mid_bytes;
        if (ck_mul((size_t)(row_hi - row_lo), mid_row_bytes, &mid_bytes) ||
            !(mid = malloc(mid_bytes ? mid_bytes : 1))) {
            rc = vlm_fail(e, VLM_ENOMEM, "resize %dx%d -> %dx%d: cannot allocate the intermediate",
                          cv->src_w, cv->src_h, out_w, out_h);
            goto out_free;
        }
        int pad_row_done = 0;
        for (int y = row_lo; y < row_hi; y++) {
            uint8_t *dst = mid + (size_t)(y - row_lo) * mid_row_bytes;
            if (pp_canvas_row_is_pad(cv, y)) {
                if (!pad_row_done) {
                    pp_resample_row(pp_canvas_row(cv, y, scratch), pad_row, &hax);
                    pad_row_done = 1;
                }
                mid_rows[y] = pad_row;
                continue;
            }
            pp_resample_row(pp_canvas_row(cv, y, scratch), dst, &hax);
            mid_rows[y] = dst;
        }
    } else {
        /* Pad rows all look alike: one copy serves them all. Image rows are used in place
         * unless they need side padding, which would need one scratch row each. */
        for (int x = 0; x < cv->src_w; x++)
            memcpy(pad_row + 3 * (size_t)x, cv->pad, 3);
        int side_pad = cv->img_w != cv->src_w;
        if (side_pad) {
            size_t mid_bytes;
            if (ck_mul((size_t)cv->img_h, src_row_bytes, &mid_bytes) ||
                !(mid = malloc(mid_bytes ? mid_bytes : 1))) {
                rc = vlm_fail(e, VLM_ENOMEM, "resize %dx%d -> %dx%d: cannot allocate the canvas",
                              cv->src_w, cv->src_h, out_w, out_h);
                goto out_free;
            }
        }
        for (int y = row_lo; y < row_hi; y++) {
            if (pp_canvas_row_is_pad(cv, y)) {
                mid_rows[y] = pad_row;
            } else if (side_pad) {
                uint8_t *dst = mid + (size_t)(y - cv->off_y) * src_row_bytes;
                memcpy(dst, pp_canvas_row(cv, y, scratch), src_row_bytes);
                mid_rows[y] = dst;
            } else {
                mid_rows[y] = pp_canvas_row(cv, y, scratch);
            }
        }
    }

    /* Pass 2: vertical. Accumulating tap by tap over a whole row gives the same integer sums
     * as Pillow's per-pixel loop (integer addition is exact) and vectorizes. */
    if (!need_v) {
        for (int y = 0; y < out_h; y++)
            memcpy(out + (size_t)y * mid_row_bytes, mid_rows[y], mid_row_bytes);
        goto out_free;
    }
    acc = malloc(mid_row_bytes * sizeof *acc);
    if (!acc) {
        rc = vlm_fail(e, VLM_ENOMEM, "resize %dx%d -> %dx%d: out of memory", cv->src_w, cv->src_h,
                      out_w, out_h);
        goto out_free;
    }
    for (int y = 0; y < out_h; y++) {
        const int32_t *q = vax.coeffs + (size_t)y * vax.ksize;
        for (size_t i = 0; i < mid_row_bytes; i++)
            acc[i] = 1 << (PIL_PRECISION_BITS - 1);
        for (int j = 0; j < vax.count[y]; j++) {
            const uint8_t *row = mid_rows[vax.first[y] + j];
            int32_t w = q[j];
            for (size_t i = 0; i < mid_row_bytes; i++)
                acc[i] += row[i] * w;
        }
        uint8_t *dst = out + (size_t)y * mid_row_bytes;
        for (size_t i = 0; i < mid_row_bytes; i++)
            dst[i] = pil_clip8(acc[i]);
    }

out_free:
    free(acc);
    free(mid);
    free(mid_rows);
    free(pad_row);
    free(scratch);
    pp_axis_free(&hax);
    pp_axis_free(&vax);
    return rc;
}

int pil_resize_bicubic(const uint8_t *in, int iw, int ih, uint8_t *out, int ow, int oh,
                       vlm_error *e)
{
    if (!in || !out)
        return vlm_fail(e, VLM_EARG, "pil_resize_bicubic: NULL %s", !in ? "input" : "output");
    if (iw < 1 || ih < 1 || ow < 1 || oh < 1 || iw > PP_MAX_SIDE || ih > PP_MAX_SIDE ||
        ow > PP_MAX_SIDE || oh > PP_MAX_SIDE)
        return vlm_fail(e, VLM_EARG, "pil_resize_bicubic: sizes %dx%d -> %dx%d (expected 1..%d)",
                        iw, ih, ow, oh, PP_MAX_SIDE);
    pp_canvas cv = {in, iw, ih, iw, ih, 0, 0, {0, 0, 0}};
    return pp_resize_canvas(&cv, out, ow, oh, e);
}

int clip_preprocess(const uint8_t *rgb, int w, int h, int size, const uint8_t pad_rgb[3],
                    const float mean[3], const float std[3], float *out, uint8_t *resized,
                    vlm_error *e)
{
    if (!rgb || !pad_rgb || !mean || !std || !out)
        return vlm_fail(e, VLM_EARG, "clip_preprocess: NULL argument");
    if (w < 1 || h < 1 || w > PP_MAX_SIDE || h > PP_MAX_SIDE || size < 1 || size > PP_MAX_SIDE)
        return vlm_fail(e, VLM_EARG, "clip_preprocess: image %dx%d, size %d (expected 1..%d)", w,
                        h, size, PP_MAX_SIDE);

    /* expand2square: the image pasted at floor offsets on a max(w, h) square of pad color. */
    int side = w > h ? w : h;
    pp_canvas cv = {rgb, w, h, side, side, (side - w) / 2, (side - h) / 2,
                    {pad_rgb[0], pad_rgb[1], pad_rgb[2]}};

    /* Shortest edge to size: short, long = sorted; long -> int(size * long / short). The
     * canvas is square, so this is size x size, but keep the rule for what it is. */
    int rw = size, rh = size;
    if (cv.src_w != cv.src_h) {
        int shorter = cv.src_w < cv.src_h ? cv.src_w : cv.src_h;
        int longer = cv.src_w < cv.src_h ? cv.src_h : cv.src_w;
        int new_long = (int)((double)size * longer / shorter);
        if (cv.src_w < cv.src_h)
            rh = new_long;
        else
            rw = new_long;
    }
    size_t resized_bytes;
    if (ck_mul3((size_t)rw, (size_t)rh, 3, &resized_bytes))
        return vlm_fail(e, VLM_ERANGE, "clip_preprocess: resized size %dx%d overflows", rw, rh);
    uint8_t *full = malloc(resized_bytes); /* (rh, rw, 3) */
    if (!full)
        return vlm_fail(e, VLM_ENOMEM, "clip_preprocess: cannot allocate %zu bytes", resized_bytes);
    int rc = pp_resize_canvas(&cv, full, rw, rh, e);
    if (rc) {
        free(full);
        return rc;
    }

    /* Center crop with floor offsets; then rescale in float64 and cast (numpy's
     * astype(float64) * (1/255) then astype(float32)), then normalize in float32. */
    int top = (rh - size) / 2, left = (rw - size) / 2;
    const double rescale = 1.0 / 255.0;
    size_t plane = (size_t)size * size;
    for (int y = 0; y < size; y++) {
        const uint8_t *src = full + ((size_t)(y + top) * rw + left) * 3;
        if (resized)
            memcpy(resized + (size_t)y * size * 3, src, (size_t)size * 3);
        for (int x = 0; x < size; x++)
            for (int c = 0; c < 3; c++) {
                float v = (float)(src[3 * x + c] * rescale);
                out[c * plane + (size_t)y * size + x] = (v - mean[c]) / std[c];
            }
    }
    free(full);
    return 0;
}
