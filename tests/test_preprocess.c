/* test_preprocess.c: tests of src/preprocess.c against Pillow and the MobileVLM goldens.
 * - clip_preprocess on the tiny-v2 / tiny-v1 fixture images: resized bytes and pixel_values
 *   must equal the goldens exactly;
 * - pil_resize_bicubic and the expand2square path on xorshift inputs against Pillow 9.4 outputs
 *   (tests/data/preprocess, see tests/data/README.md): every byte, or a 64-bit digest for outputs
 *   too large to store;
 * - argument errors, and the time to preprocess a 12-megapixel image (printed). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npy.h"
#include "preprocess.h"
#include "th.h"

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const uint8_t clip_pad[3] = {122, 116, 104};

/* The xorshift32 byte pattern of tests/data/preprocess/make_refs.py: n bytes, top byte of
 * each state. */
static void xorshift_fill(uint8_t *dst, size_t n, uint32_t seed)
{
    uint32_t x = seed * 0x9E3779B1u;
    if (x == 0)
        x = 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        dst[i] = (uint8_t)(x >> 24);
    }
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Loads path, checking dtype and that it is (d0, d1, d2) when d0 >= 0. */
static int load(const char *path, const char *dtype, int64_t d0, int64_t d1, int64_t d2,
                npy_array *a)
{
    vlm_error e = {0};
    int rc = npy_read(path, a, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return -1;
    int ok = strcmp(a->dtype, dtype) == 0 && a->ndim == 3 &&
             (d0 < 0 || (a->shape[0] == d0 && a->shape[1] == d1 && a->shape[2] == d2));
    TH_CHECK(ok, "%s: dtype %s ndim %d", path, a->dtype, a->ndim);
    if (!ok)
        npy_free(a);
    return ok ? 0 : -1;
}

/* Compares n bytes; reports the count, the first mismatch and the largest difference. */
static void check_bytes(const char *what, const uint8_t *got, const uint8_t *want, size_t n)
{
    size_t bad = 0, first = 0;
    int max_diff = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            if (bad++ == 0)
                first = i;
            int d = abs(got[i] - want[i]);
            max_diff = d > max_diff ? d : max_diff;
        }
    TH_CHECK(bad == 0, "%s: %zu of %zu bytes differ (first at %zu: %u vs %u, max diff %d)", what,
             bad, n, first, bad ? got[first] : 0, bad ? want[first] : 0, max_diff);
}

static void test_golden(const char *dir)
{
    char path[3][160];
    snprintf(path[0], sizeof path[0], "%s/image_rgb.npy", dir);
    snprintf(path[1], sizeof path[1], "%s/image_resized_rgb.npy", dir);
    snprintf(path[2], sizeof path[2], "%s/pixel_values.npy", dir);
    npy_array rgb, resized_ref, pixels_ref;
    if (load(TH_DATA(path[0]), "|u1", -1, 0, 0, &rgb))
        return;
    int w = (int)rgb.shape[1], h = (int)rgb.shape[0];
    TH_CHECK(rgb.shape[2] == 3 && w != h, "%s: expected a non-square RGB image", path[0]);
    if (load(TH_DATA(path[1]), "|u1", 112, 112, 3, &resized_ref)) {
        npy_free(&rgb);
        return;
    }
    if (load(TH_DATA(path[2]), "<f4", 3, 112, 112, &pixels_ref)) {
        npy_free(&rgb);
        npy_free(&resized_ref);
        return;
    }
    float *pixels = malloc(3 * 112 * 112 * sizeof *pixels); /* (3, 112, 112) */
    uint8_t *resized = malloc(112 * 112 * 3);                /* (112, 112, 3) */
    vlm_error e = {0};
    int rc = clip_preprocess(rgb.data, w, h, 112, clip_pad, clip_mean, clip_std, pixels, resized,
                             &e);
    TH_CHECK(rc == 0, "%s: %s", dir, e.msg);
    if (rc == 0) {
        check_bytes(path[1], resized, resized_ref.data, 112 * 112 * 3);
        const float *want = pixels_ref.data;
        size_t bad = 0;
        double max_diff = 0;
        for (size_t i = 0; i < 3 * 112 * 112; i++)
            if (memcmp(&pixels[i], &want[i], sizeof(float)) != 0) {
                bad++;
                double d = fabs((double)pixels[i] - want[i]);
                max_diff = d > max_diff ? d : max_diff;
            }
        TH_CHECK(bad == 0, "%s: %zu pixel values differ (max |diff| %g)", path[2], bad, max_diff);
        /* The same call without the optional resized output gives the same pixels. */
        float *again = malloc(3 * 112 * 112 * sizeof *again);
        rc = clip_preprocess(rgb.data, w, h, 112, clip_pad, clip_mean, clip_std, again, NULL, &e);
        TH_CHECK(rc == 0 && memcmp(again, pixels, 3 * 112 * 112 * sizeof *again) == 0,
                 "%s: resized == NULL changes the result", dir);
        free(again);
    }
    free(pixels);
    free(resized);
    npy_free(&rgb);
    npy_free(&resized_ref);
    npy_free(&pixels_ref);
}

/* Each row of cases.npy: in_w, in_h, out_w, out_h, seed, kind (0 = pil_resize_bicubic,
 * 1 = clip_preprocess at size out_w), full (case_NN.npy exists), fnv1a64 digest. */
static void test_pillow_cases(void)
{
    npy_array cases;
    vlm_error e = {0};
    int rc = npy_read(TH_DATA("preprocess/cases.npy"), &cases, &e);
    TH_CHECK(rc == 0 && strcmp(cases.dtype, "<i8") == 0 && cases.ndim == 2 &&
                 cases.shape[1] == 8, "cases.npy: %s", e.msg);
    if (rc || cases.ndim != 2 || cases.shape[1] != 8) {
        npy_free(&cases);
        return;
    }
    const int64_t *t = cases.data;
    int n_full = 0, n_kind1 = 0;
    for (int64_t i = 0; i < cases.shape[0]; i++) {
        const int64_t *c = t + i * 8;
        int iw = (int)c[0], ih = (int)c[1], ow = (int)c[2], oh = (int)c[3], kind = (int)c[5];
        char what[96];
        snprintf(what, sizeof what, "case %02d (%dx%d -> %dx%d, %s)", (int)i, iw, ih, ow, oh,
                 kind ? "expand2square" : "resize");
        uint8_t *in = malloc((size_t)iw * ih * 3);   /* (ih, iw, 3) */
        uint8_t *out = malloc((size_t)ow * oh * 3);  /* (oh, ow, 3) */
        memset(out, 0xAA, (size_t)ow * oh * 3);
        xorshift_fill(in, (size_t)iw * ih * 3, (uint32_t)c[4]);
        if (kind == 0) {
            rc = pil_resize_bicubic(in, iw, ih, out, ow, oh, &e);
        } else {
            float *pixels = malloc((size_t)3 * ow * ow * sizeof *pixels); /* (3, ow, ow) */
            rc = clip_preprocess(in, iw, ih, ow, clip_pad, clip_mean, clip_std, pixels, out, &e);
            free(pixels);
            n_kind1++;
        }
        TH_CHECK(rc == 0, "%s: %s", what, e.msg);
        uint64_t digest = fnv1a64(out, (size_t)ow * oh * 3);
        TH_CHECK(digest == (uint64_t)c[7], "%s: digest %016llx, Pillow %016llx", what,
                 (unsigned long long)digest, (unsigned long long)(uint64_t)c[7]);
        if (c[6]) {
            char rel[64];
            snprintf(rel, sizeof rel, "preprocess/case_%02d.npy", (int)i);
            npy_array ref;
            if (load(TH_DATA(rel), "|u1", oh, ow, 3, &ref) == 0) {
                check_bytes(what, out, ref.data, (size_t)ow * oh * 3);
                n_full++;
                npy_free(&ref);
            }
        }
        free(in);
        free(out);
    }
    TH_CHECK(cases.shape[0] >= 19 && n_full >= 15 && n_kind1 >= 5,
             "expected at least 19 cases (%lld), 15 stored in full (%d), 5 expand2square (%d)",
             (long long)cases.shape[0], n_full, n_kind1);
    npy_free(&cases);
}

/* Rescale and normalize: a 1x1 image keeps its bytes through a 1 -> 1 resize, so every output
 * is a float32 formula of one byte; all 256 values are checked against numpy's order
 * (u8 * (1/255) in float64, cast, then float32 (x - mean) / std). */
static void test_rescale_normalize(void)
{
    vlm_error e = {0};
    int bad = 0;
    for (int v = 0; v < 256; v++) {
        const uint8_t px[3] = {(uint8_t)v, (uint8_t)(255 - v), (uint8_t)(v ^ 0x55)};
        float out[3];
        uint8_t resized[3];
        int rc = clip_preprocess(px, 1, 1, 1, clip_pad, clip_mean, clip_std, out, resized, &e);
        bad += rc != 0 || memcmp(resized, px, 3) != 0;
        for (int c = 0; c < 3; c++) {
            float x = (float)(px[c] * (1.0 / 255.0));
            float want = (x - clip_mean[c]) / clip_std[c];
            bad += memcmp(&out[c], &want, sizeof want) != 0;
        }
    }
    TH_CHECK(bad == 0, "%d of 768 rescaled/normalized values differ", bad);
    /* Independent values: 254/255 rounds to 0.996078432f (multiplying in float32 by
     * float32(1/255) would give 0.996078491f, one ulp off). */
    const uint8_t px[3] = {254, 0, 255};
    float out[3];
    TH_CHECK(clip_preprocess(px, 1, 1, 1, clip_pad, clip_mean, clip_std, out, NULL, &e) == 0,
             "%s", e.msg);
    float r = (0.996078432f - 0.48145466f) / 0.26862954f;
    float g = (0.0f - 0.4578275f) / 0.26130258f;
    float b = (1.0f - 0.40821073f) / 0.27577711f;
    TH_CHECK(out[0] == r && out[1] == g && out[2] == b, "1x1: %.9g %.9g %.9g vs %.9g %.9g %.9g",
             out[0], out[1], out[2], r, g, b);
    TH_CHECK(fabsf(out[1] - -1.75209713f) < 1e-6f && fabsf(out[2] - 2.14589699f) < 1e-6f,
             "normalized extremes %.9g %.9g", out[1], out[2]);
}

static void test_arguments(void)
{
    uint8_t in[12] = {0}, out[12];
    float px[12];
    vlm_error e = {0};
    TH_CHECK(pil_resize_bicubic(NULL, 2, 2, out, 2, 2, &e) == VLM_EARG, "NULL input");
    TH_CHECK(pil_resize_bicubic(in, 0, 2, out, 2, 2, &e) == VLM_EARG, "zero width");
    TH_CHECK(pil_resize_bicubic(in, 2, 2, out, -1, 2, &e) == VLM_EARG, "negative width");
    TH_CHECK(pil_resize_bicubic(in, 2, 2, out, 2, 1 << 30, &e) == VLM_EARG, "huge height");
    TH_CHECK(clip_preprocess(in, 2, 2, 0, clip_pad, clip_mean, clip_std, px, NULL, &e) ==
                 VLM_EARG, "size 0");
    TH_CHECK(clip_preprocess(in, 2, 2, 2, NULL, clip_mean, clip_std, px, NULL, &e) == VLM_EARG,
             "NULL pad");
    TH_CHECK(strstr(e.msg, "clip_preprocess") != NULL, "message names the function: %s", e.msg);
    /* Identity resize copies. */
    for (int i = 0; i < 12; i++)
        in[i] = (uint8_t)(i * 21);
    TH_CHECK(pil_resize_bicubic(in, 2, 2, out, 2, 2, &e) == 0 && memcmp(in, out, 12) == 0,
             "identity resize");
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A 12-megapixel photo (4000x3000) to 336: printed, not checked (machines differ). The
 * result must still be deterministic: two runs agree. */
static void test_speed(void)
{
    const int w = 4000, h = 3000, size = 336;
    uint8_t *img = malloc((size_t)w * h * 3);               /* (h, w, 3) */
    float *px = malloc((size_t)3 * size * size * sizeof *px); /* (3, size, size) */
    uint8_t *r1 = malloc((size_t)size * size * 3), *r2 = malloc((size_t)size * size * 3);
    /* A smooth gradient with a little noise, like a photo. */
    xorshift_fill(img, (size_t)w * h * 3, 99);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t *p = img + ((size_t)y * w + x) * 3 + c;
                *p = (uint8_t)((x * 255 / w + y * 255 / h * c) / 2 + (*p >> 5));
            }
    vlm_error e = {0};
    double best = 1e9;
    int rc = 0;
    for (int rep = 0; rep < 3 && rc == 0; rep++) {
        double t0 = seconds_now();
        rc = clip_preprocess(img, w, h, size, clip_pad, clip_mean, clip_std, px,
                             rep ? r2 : r1, &e);
        double dt = seconds_now() - t0;
        best = dt < best ? dt : best;
    }
    TH_CHECK(rc == 0, "12 MP: %s", e.msg);
    TH_CHECK(memcmp(r1, r2, (size_t)size * size * 3) == 0, "12 MP: runs differ");
    /* The pad bands (rows 0..41 and 294..335 for a 4:3 image) are the pad color's resample. */
    TH_CHECK(r1[0] == 122 && r1[1] == 116 && r1[2] == 104, "12 MP: corner %u %u %u", r1[0],
             r1[1], r1[2]);
    fprintf(stderr, "clip_preprocess %dx%d -> %d: %.1f ms (best of 3)\n", w, h, size, best * 1e3);
    free(img);
    free(px);
    free(r1);
    free(r2);
}

int main(void)
{
    test_golden("fixtures/tiny-v2/goldens");
    test_golden("fixtures/tiny-v1/goldens");
    test_pillow_cases();
    test_rescale_normalize();
    test_arguments();
    test_speed();
    return th_report("test_preprocess");
}
