/* imgref.c: the manifest-driven reference comparison of the image decoder tests (imgref.h).
 * Per file: decode, then either check the refusal the manifest expects or compare every byte
 * with Pillow's convert("RGB") (or with the documented mapping of the __native16 samples);
 * prints a table row per file and a FAIL line for every unexpected outcome. */
#include "imgref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "npz.h"

/* image_free without pulling image.o (and through it the JPEG decoder) into the link. */
static void release(vlm_image *img)
{
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

uint8_t *imgref_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        uint8_t *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

int imgref_exists(const char *path) { return access(path, R_OK) == 0; }

/* Max and mean absolute difference of n bytes. */
static void diff_stats(const uint8_t *a, const uint8_t *b, size_t n, int *max, double *mean)
{
    int mx = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        mx = d > mx ? d : mx;
        sum += (uint64_t)d;
    }
    *max = mx;
    *mean = n ? (double)sum / (double)n : 0.0;
}

/* Builds the expected RGB of a __native16 reference: (h, w) gray or (h, w, 3) samples. */
static uint8_t *native16_expected(const npy_array *a, int w, int h, int rule)
{
    size_t pixels = (size_t)w * (size_t)h;
    if (strcmp(a->dtype, "<u2") != 0 || (a->numel != pixels && a->numel != pixels * 3))
        return NULL;
    uint8_t *rgb = malloc(pixels * 3);
    if (!rgb)
        return NULL;
    const uint16_t *v = a->data;
    int gray = a->numel == pixels;
    for (size_t i = 0; i < pixels * 3; i++) {
        uint16_t s = v[gray ? i / 3 : i];
        rgb[i] = rule == IMGREF_NATIVE16_HIGH_BYTE ? (uint8_t)(s >> 8)
                                                   : (uint8_t)nearbyint((double)s / 65535.0 * 255.0);
    }
    return rgb;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The refusal must name the defect the manifest describes (PngSuite x*.png wording): each
 * row maps words of the expectation to words the error message must contain. */
static int reason_matches(const char *expect, const char *msg)
{
    static const char *const RULES[][2] = {
        {"color type", "color type"},   {"bit depth", "bit depth"},
        {"CRC", "CRC"},                 {"checksum", "CRC"},
        {"signature", "signature"},     {"CR bytes", "signature"},
        {"LF bytes", "signature"},      {"missing IDAT", "IDAT"},
    };
    if (!expect)
        return 1;
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++)
        if (strstr(expect, RULES[i][0]) && !strstr(msg, RULES[i][1]))
            return 0;
    return 1;
}

/* One manifest entry; returns 1 on an unexpected outcome. */
static int run_entry(const char *dir, npz_file *npz, const json_value *f, imgref_decode_fn decode,
                     int native16_rule, imgref_totals *t)
{
    const char *file = json_get_str(f, "file");
    const char *status = json_get_str(f, "status");
    const char *expect = json_get_str(f, "expect");
    const char *ref_key = json_get_str(f, "ref_key");
    /* Only files Pillow opens in mode "I" have a clipped, meaningless RGB reference. */
    const char *pil_mode = json_get_str(f, "pil_mode");
    const char *native_key = pil_mode && strcmp(pil_mode, "I") == 0
                                 ? json_get_str(f, "ref_key_native16")
                                 : NULL;
    if (!file || !status) {
        printf("FAIL %s: manifest entry without file/status\n", dir);
        return 1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len = 0;
    uint8_t *buf = imgref_read_file(path, &len);
    if (!buf) {
        printf("FAIL %s: cannot read\n", path);
        return 1;
    }
    vlm_image img;
    vlm_error e = {0, ""};
    int rc = decode(buf, len, path, NULL, &img, &e);
    free(buf);
    t->files++;

    int must_fail = (expect && (strncmp(expect, "REJECT", 6) == 0 || strncmp(expect, "ERROR", 5) == 0 ||
                                strncmp(expect, "UNSUPPORTED", 11) == 0)) ||
                    (!expect && strcmp(status, "ok") != 0);
    if (expect && strncmp(expect, "ROBUSTNESS", 10) == 0) {
        printf("%-28s robustness: %s\n", file, rc ? e.msg : "decoded");
        t->robustness++;
        release(&img);
        return 0;
    }
    if (must_fail) {
        int ok = rc != 0 && img.rgb == NULL && e.msg[0] != '\0' && strstr(e.msg, path) != NULL &&
                 reason_matches(expect, e.msg);
        printf("%-28s %s refused: %s\n", file, ok ? "ok  " : "FAIL", rc ? e.msg : "(decoded)");
        release(&img);
        if (ok)
            t->refused++;
        return !ok;
    }
    if (rc) {
        printf("FAIL %-23s decode error: %s\n", file, e.msg);
        return 1;
    }
    int64_t w = 0, h = 0;
    int failed = 0;
    if (!json_get_int(f, "width", 1, 1 << 30, &w) || !json_get_int(f, "height", 1, 1 << 30, &h) ||
        img.width != w || img.height != h) {
        printf("FAIL %-23s size %dx%d, manifest %lldx%lld\n", file, img.width, img.height,
               (long long)w, (long long)h);
        release(&img);
        return 1;
    }
    size_t n = (size_t)w * (size_t)h * 3;
    npy_array ref, nat;
    memset(&nat, 0, sizeof nat);
    vlm_error re = {0, ""};
    if (!ref_key || npz_get(npz, ref_key, &ref, &re) || ref.numel != n ||
        strcmp(ref.dtype, "|u1") != 0) {
        printf("FAIL %-23s reference '%s': %s\n", file, ref_key ? ref_key : "(none)",
               re.msg[0] ? re.msg : "wrong shape/dtype");
        release(&img);
        npy_free(&ref);
        return 1;
    }
    int max_pil;
    double mean_pil;
    diff_stats(img.rgb, ref.data, n, &max_pil, &mean_pil);
    if (native_key) {
        uint8_t *want = NULL;
        if (npz_get(npz, native_key, &nat, &re) == 0)
            want = native16_expected(&nat, (int)w, (int)h, native16_rule);
        int max16 = -1;
        double mean16 = 0;
        if (want)
            diff_stats(img.rgb, want, n, &max16, &mean16);
        failed = max16 != 0;
        if (!failed)
            t->native16++;
        printf("%-28s %5lldx%-5lld %s vs __native16 %s: max %d mean %.4f (Pillow's clipped RGB: "
               "max %d mean %.2f)\n",
               file, (long long)w, (long long)h, failed ? "FAIL" : "ok  ",
               native16_rule == IMGREF_NATIVE16_HIGH_BYTE ? ">>8" : "*255/65535", max16, mean16,
               max_pil, mean_pil);
        free(want);
    } else {
        failed = max_pil != 0;
        if (!failed)
            t->exact++;
        printf("%-28s %5lldx%-5lld %s max %d mean %.4f\n", file, (long long)w, (long long)h,
               failed ? "FAIL" : "ok  ", max_pil, mean_pil);
    }
    npy_free(&ref);
    npy_free(&nat);
    release(&img);
    return failed;
}

int imgref_run_folder(const char *dir, const char *suffix, imgref_decode_fn decode,
                      int native16_rule, imgref_totals *t)
{
    char path[1024];
    vlm_error e = {0, ""};
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    json_doc *doc = json_parse_file(path, 64 << 20, &e);
    if (!doc) {
        printf("FAIL %s\n", e.msg);
        t->failures++;
        return 1;
    }
    snprintf(path, sizeof path, "%s/ref_pil.npz", dir);
    npz_file *npz = npz_open(path, &e);
    const json_value *files = json_get(json_root(doc), "files");
    if (!npz || !files || files->type != JSON_ARRAY) {
        printf("FAIL %s: %s\n", dir, npz ? "manifest has no files array" : e.msg);
        json_free(doc);
        npz_close(npz);
        t->failures++;
        return 1;
    }
    printf("== %s\n", dir);
    int failures = 0;
    for (size_t i = 0; i < files->len; i++) {
        const char *file = json_get_str(files->items[i], "file");
        if (suffix && (!file || !ends_with(file, suffix)))
            continue;
        failures += run_entry(dir, npz, files->items[i], decode, native16_rule, t);
    }
    json_free(doc);
    npz_close(npz);
    t->failures += failures;
    return failures;
}
