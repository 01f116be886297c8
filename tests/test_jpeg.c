/* test_jpeg.c: the JPEG decoder and EXIF orientation. Decodes the subset in
 * tests/data/images/jpeg (every subsampling, progressive, restarts, gray, CMYK/YCCK, odd sizes,
 * 16-bit quantizers, no DHT, corrupt and unsupported files) and compares byte for byte with
 * Pillow 9.4 / libjpeg-turbo 2.1.5 (<file>.npy); checks refusal classes, limits, every prefix
 * of a file, EXIF parsing of malformed blocks and the 8 orientations; and, when ../shared/assets
 * exists, runs every JPEG there against its manifest.json and ref_pil.npz. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "imgref.h"
#include "json.h"
#include "npy.h"
#include "npz.h"
#include "th.h"

/* Largest allowed difference from Pillow: the decoder reproduces libjpeg-turbo's integer
 * arithmetic (ISLOW IDCT, fancy upsampling, fixed-point color), so every sample must match. */
enum { MAX_DIFF_ALLOWED = 0 };

enum { EXPECT_EXACT, EXPECT_FORMAT, EXPECT_UNSUPPORTED, EXPECT_ANY };

typedef struct local_case {
    const char *file;
    int expect;
    const char *what;
} local_case;

static const local_case local_cases[] = {
    {"testorig.jpg", EXPECT_EXACT, "baseline 4:2:0 (IJG)"},
    {"testimgp.jpg", EXPECT_EXACT, "progressive 4:2:0"},
    {"testimggray.jpg", EXPECT_EXACT, "grayscale"},
    {"testimgcrop.jpg", EXPECT_EXACT, "124x92 lossless crop"},
    {"crop_1x1_420.jpg", EXPECT_EXACT, "1x1"},
    {"crop_2x3_420.jpg", EXPECT_EXACT, "2x3 (narrow: no fancy h2)"},
    {"crop_17x1_420.jpg", EXPECT_EXACT, "17x1"},
    {"crop_1x17_420.jpg", EXPECT_EXACT, "1x17"},
    {"crop_9x17_420.jpg", EXPECT_EXACT, "9x17"},
    {"crop_15x15_420.jpg", EXPECT_EXACT, "15x15"},
    {"crop_17x9_420.jpg", EXPECT_EXACT, "17x9"},
    {"crop_17x9_444.jpg", EXPECT_EXACT, "4:4:4"},
    {"crop_31x33_420.jpg", EXPECT_EXACT, "31x33 4:2:0"},
    {"crop_31x33_422.jpg", EXPECT_EXACT, "4:2:2"},
    {"crop_65x47_420.jpg", EXPECT_EXACT, "65x47 4:2:0"},
    {"crop_65x47_440.jpg", EXPECT_EXACT, "4:4:0 (fancy h1v2)"},
    {"crop_65x47_prog_420.jpg", EXPECT_EXACT, "progressive odd size"},
    {"dog_s411.jpg", EXPECT_EXACT, "4:1:1"},
    {"dog_s410.jpg", EXPECT_EXACT, "4:1:0"},
    {"dog_ycck_adobe_imagemagick.jpg", EXPECT_EXACT, "Adobe YCCK"},
    {"jpg-cmyk-1.jpg", EXPECT_EXACT, "Adobe CMYK"},
    {"dog_rgb_no_ycc.jpg", EXPECT_EXACT, "Adobe RGB"},
    {"dog_prog_restart.jpg", EXPECT_EXACT, "progressive + restarts"},
    {"restarts.jpg", EXPECT_EXACT, "restart markers"},
    {"16bit-qtables.jpg", EXPECT_EXACT, "16-bit quantizers"},
    {"nodht_31x33_420.jpg", EXPECT_EXACT, "no DHT (Annex K tables)"},
    {"non-interleaved-mcu.jpg", EXPECT_EXACT, "non-interleaved scans"},
    {"grayscale_16x24_sampling2x2.jpg", EXPECT_EXACT, "gray with 2x2 factors"},
    {"partial_progressive.jpg", EXPECT_EXACT, "incomplete progressive"},
    {"progressive-missing-ac.jpg", EXPECT_EXACT, "progressive, no AC"},
    {"progressive-missing-dc.jpg", EXPECT_EXACT, "progressive, no DC"},
    {"extraneous-data.jpg", EXPECT_EXACT, "garbage before markers"},
    {"jpg-size-33x33.jpg", EXPECT_EXACT, "33x33"},
    {"testorig12.jpg", EXPECT_UNSUPPORTED, "12-bit"},
    {"testimgari.jpg", EXPECT_UNSUPPORTED, "arithmetic"},
    {"dog_arith_prog.jpg", EXPECT_UNSUPPORTED, "arithmetic progressive"},
    {"jpeg_lossless_sel1.jpg", EXPECT_UNSUPPORTED, "lossless SOF3"},
    {"corrupt_truncated_50pct.jpg", EXPECT_FORMAT, "truncated scan"},
    {"corrupt_truncated_in_headers.jpg", EXPECT_FORMAT, "truncated headers"},
    {"corrupt_no_soi.jpg", EXPECT_FORMAT, "no SOI"},
    {"corrupt_headers_only.jpg", EXPECT_FORMAT, "no scan data"},
    {"corrupt_progressive_truncated_60pct.jpg", EXPECT_FORMAT, "truncated progressive"},
    {"empty.jpg", EXPECT_FORMAT, "empty file"},
    {"corrupt_bitflips_in_scan.jpg", EXPECT_ANY, "bit flips in scan"},
    {"dc-predictor-overflow.jpg", EXPECT_ANY, "DC predictor overflow"},
    {"derive-huffman-codes-overflow.jpg", EXPECT_ANY, "bad Huffman table"},
    {"invalid-dimensions.jpg", EXPECT_ANY, "bad dimensions"},
    {"max_size.jpg", EXPECT_ANY, "65535x65535 header"},
};

static void release(vlm_image *img)
{
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

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

/* Compares img with an (h, w, 3) uint8 reference array; prints and checks the difference. */
static void check_against(const char *label, const vlm_image *img, const npy_array *ref)
{
    int shape_ok = strcmp(ref->dtype, "|u1") == 0 && ref->ndim == 3 &&
                   ref->shape[0] == img->height && ref->shape[1] == img->width && ref->shape[2] == 3;
    TH_CHECK(shape_ok, "%s: size %dx%d differs from the reference", label, img->width,
             img->height);
    if (!shape_ok)
        return;
    int mx;
    double mean;
    diff_stats(img->rgb, ref->data, ref->numel, &mx, &mean);
    printf("  %-44s %5dx%-5d max %3d mean %.4f\n", label, img->width, img->height, mx, mean);
    TH_CHECK(mx <= MAX_DIFF_ALLOWED, "%s: max difference %d from Pillow", label, mx);
}

static int decode_path(const char *path, const image_limits *lim, vlm_image *img, int *orient,
                       vlm_error *e)
{
    size_t len = 0;
    uint8_t *buf = imgref_read_file(path, &len);
    if (!buf)
        return vlm_fail(e, VLM_EIO, "%s: cannot read", path);
    int rc = jpeg_decode(buf, len, path, lim, img, orient, e);
    free(buf);
    return rc;
}

static void run_local_cases(void)
{
    printf("== local subset (tests/data/images/jpeg) vs Pillow 9.4\n");
    for (size_t i = 0; i < sizeof local_cases / sizeof local_cases[0]; i++) {
        const local_case *c = &local_cases[i];
        char rel[256];
        snprintf(rel, sizeof rel, "images/jpeg/%s", c->file);
        const char *path = TH_DATA(rel);
        vlm_image img;
        vlm_error e = {0, ""};
        int orient;
        int rc = decode_path(path, NULL, &img, &orient, &e);
        char label[200];
        snprintf(label, sizeof label, "%s (%s)", c->file, c->what);
        if (c->expect == EXPECT_EXACT) {
            TH_CHECK(rc == 0, "%s: %s", label, e.msg);
            if (rc == 0) {
                npy_array ref;
                char rpath[300];
                snprintf(rpath, sizeof rpath, "%s.npy", path);
                vlm_error re = {0, ""};
                int r = npy_read(rpath, &ref, &re);
                TH_CHECK(r == 0, "%s", re.msg);
                if (r == 0)
                    check_against(label, &img, &ref);
                npy_free(&ref);
            }
        } else if (c->expect == EXPECT_ANY) {
            printf("  %-44s robustness: %s\n", label, rc ? e.msg : "decoded");
        } else {
            int want = c->expect == EXPECT_FORMAT ? VLM_EFORMAT : VLM_EUNSUPPORTED;
            printf("  %-44s refused: %s\n", label, e.msg);
            TH_CHECK(rc == want, "%s: code %d, expected %d (%s)", label, rc, want, e.msg);
            TH_CHECK(img.rgb == NULL && img.width == 0, "%s: output not zeroed", label);
            TH_CHECK(strstr(e.msg, path) != NULL, "%s: message does not name the file", label);
            if (want == VLM_EUNSUPPORTED)
                TH_CHECK(strstr(e.msg, "unsupported JPEG feature") != NULL, "%s: %s", label, e.msg);
        }
        release(&img);
    }
}

/* The 8 EXIF orientations on a 17x9 image (little- and big-endian TIFF), vs exif_transpose. */
static void run_orientation_cases(void)
{
    printf("== EXIF orientation (vs PIL.ImageOps.exif_transpose)\n");
    for (int o = 1; o <= 8; o++) {
        char rel[128];
        snprintf(rel, sizeof rel, "images/jpeg/orient_%d.jpg", o);
        const char *path = TH_DATA(rel);
        vlm_image img;
        vlm_error e = {0, ""};
        int orient = -1;
        int rc = decode_path(path, NULL, &img, &orient, &e);
        TH_CHECK(rc == 0, "%s", e.msg);
        TH_CHECK(orient == o, "%s: orientation %d, expected %d", path, orient, o);
        if (rc)
            continue;
        rc = image_apply_orientation(&img, orient, &e);
        TH_CHECK(rc == 0, "%s", e.msg);
        char rpath[300];
        snprintf(rpath, sizeof rpath, "%s.oriented.npy", path);
        npy_array ref;
        vlm_error re = {0, ""};
        if (npy_read(rpath, &ref, &re) == 0) {
            check_against(path + strlen(path) - 12, &img, &ref);
            npy_free(&ref);
        } else {
            TH_CHECK(0, "%s", re.msg);
        }
        release(&img);
    }
}

/* Malformed TIFF blocks must give 1, never read out of bounds (run under ASan in CI). */
static void run_exif_parser_cases(void)
{
    static const uint8_t good_le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0,
                                      1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t good_be[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3,
                                      0, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0};
    TH_CHECK(exif_orientation(good_le, sizeof good_le) == 6, "little-endian orientation 6");
    TH_CHECK(exif_orientation(good_be, sizeof good_be) == 3, "big-endian orientation 3");
    uint8_t b[sizeof good_le];
    /* Every truncation of the block. */
    for (size_t n = 0; n < 20; n++)
        TH_CHECK(exif_orientation(good_le, n) == 1, "truncated to %zu bytes", n);
    /* IFD offset past the end, or pointing at the last byte. */
    memcpy(b, good_le, sizeof b);
    b[4] = 0xF0;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "IFD offset past the end");
    b[4] = (uint8_t)(sizeof b - 1);
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "IFD offset at the last byte");
    b[4] = 0xFF;
    b[5] = b[6] = b[7] = 0xFF;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "IFD offset 0xFFFFFFFF");
    /* Entry count far beyond the data. */
    memcpy(b, good_le, sizeof b);
    b[8] = 0xFF;
    b[9] = 0xFF;
    TH_CHECK(exif_orientation(b, sizeof b) == 6, "huge entry count: entries present still read");
    /* Values out of range, wrong type, zero count, bad magic. */
    memcpy(b, good_le, sizeof b);
    b[18] = 9;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "orientation 9 is invalid");
    b[18] = 0;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "orientation 0 is invalid");
    memcpy(b, good_le, sizeof b);
    b[12] = 2;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "ASCII type ignored");
    memcpy(b, good_le, sizeof b);
    b[14] = 0;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "zero count ignored");
    memcpy(b, good_le, sizeof b);
    b[2] = 43;
    TH_CHECK(exif_orientation(b, sizeof b) == 1, "bad TIFF magic");
    TH_CHECK(exif_orientation(NULL, 0) == 1, "NULL block");

    /* The transforms on a 3x2 image with distinct pixels: output pixel -> source pixel. */
    static const int want[9][6] = {
        {0}, {0}, {2, 1, 0, 5, 4, 3}, {5, 4, 3, 2, 1, 0}, {3, 4, 5, 0, 1, 2},
        {0, 3, 1, 4, 2, 5}, {3, 0, 4, 1, 5, 2}, {5, 2, 4, 1, 3, 0}, {2, 5, 1, 4, 0, 3}};
    for (int o = 2; o <= 8; o++) {
        vlm_image img = {3, 2, malloc(18)};
        for (int i = 0; i < 18; i++)
            img.rgb[i] = (uint8_t)(i / 3);
        vlm_error e;
        int rc = image_apply_orientation(&img, o, &e);
        TH_CHECK(rc == 0, "orientation %d", o);
        int ok = (o >= 5 ? img.width == 2 && img.height == 3 : img.width == 3 && img.height == 2);
        for (int i = 0; i < 6 && ok; i++)
            ok = img.rgb[3 * i] == want[o][i] && img.rgb[3 * i + 2] == want[o][i];
        TH_CHECK(ok, "orientation %d permutes pixels wrongly", o);
        release(&img);
    }
}

/* Limits are enforced before any large allocation; every prefix of a file is handled. */
static void run_limit_and_prefix_cases(void)
{
    const char *path = TH_DATA("images/jpeg/testorig.jpg");
    size_t len = 0;
    uint8_t *buf = imgref_read_file(path, &len);
    TH_CHECK(buf != NULL, "cannot read %s", path);
    if (!buf)
        return;
    vlm_image img;
    vlm_error e = {0, ""};
    int orient;
    image_limits lim = {227 * 149 - 1, 0};
    TH_CHECK(jpeg_decode(buf, len, path, &lim, &img, &orient, &e) == VLM_ERANGE,
             "max_pixels not enforced");
    TH_CHECK(strstr(e.msg, "227x149") != NULL, "limit message lacks the size: %s", e.msg);
    image_limits lim2 = {0, 100000};
    TH_CHECK(jpeg_decode(buf, len, path, &lim2, &img, &orient, &e) == VLM_ENOMEM,
             "max_bytes not enforced");
    image_limits lim3 = {227 * 149, 1 << 20};
    TH_CHECK(jpeg_decode(buf, len, path, &lim3, &img, &orient, &e) == 0, "exact limits: %s",
             e.msg);
    release(&img);

    int decoded = 0, refused = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        int rc = jpeg_decode(copy, n, "prefix", NULL, &img, &orient, &e);
        if (rc == 0)
            decoded++;
        else
            refused++;
        TH_CHECK(rc == 0 || (img.rgb == NULL && e.msg[0]), "prefix %zu: bad failure state", n);
        release(&img);
        free(copy);
    }
    /* Only prefixes that lose nothing but the EOI marker may decode. */
    printf("  every prefix of testorig.jpg: %d refused, %d decoded (EOI missing only)\n", refused,
           decoded);
    TH_CHECK(decoded <= 2, "%d truncated prefixes decoded", decoded);
    free(buf);
}

/* ---------------------------------------------------------------- ../shared sweep */

typedef struct sweep_totals {
    int files, exact, refused, lenient, robustness, failures;
} sweep_totals;

static int starts_with(const char *s, const char *p) { return s && strncmp(s, p, strlen(p)) == 0; }

/* One manifest entry of a shared folder. */
static void sweep_entry(const char *dir, npz_file *npz, const json_value *f, sweep_totals *t)
{
    const char *file = json_get_str(f, "file");
    const char *status = json_get_str(f, "status");
    const char *expect = json_get_str(f, "expect");
    const char *fmt = json_get_str(f, "pil_format");
    if (!file || !status)
        return;
    if (fmt && strcmp(fmt, "JPEG") != 0)
        return; /* a PNG in the folder (photos/, mozilla's misnamed jpg-size-6x6.jpg) */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    vlm_image img;
    vlm_error e = {0, ""};
    int orient = 0;
    int rc = decode_path(path, NULL, &img, &orient, &e);
    t->files++;
    int failed = 0;
    if (starts_with(expect, "ROBUSTNESS") || starts_with(expect, "CORRUPT") ||
        starts_with(expect, "malformed")) {
        t->robustness++;
        printf("  %-44s robustness: %s\n", file, rc ? e.msg : "decoded");
    } else if (starts_with(expect, "UNSUPPORTED") || (expect && strstr(expect, "arithmetic"))) {
        failed = rc != VLM_EUNSUPPORTED;
        t->refused += !failed;
        printf("  %-44s %s unsupported: %s\n", file, failed ? "FAIL" : "ok  ", e.msg);
    } else if (starts_with(expect, "ERROR") || starts_with(expect, "REJECT") ||
               strcmp(status, "ok") != 0) {
        /* Pillow refuses; a decoder may refuse or return what was fully decoded. */
        int lenient_ok = starts_with(expect, "ERROR") && rc == 0;
        failed = rc != 0 && !lenient_ok ? (img.rgb != NULL) : (rc == 0 && !lenient_ok);
        if (rc == 0)
            t->lenient++;
        else
            t->refused++;
        printf("  %-44s %s %s\n", file, failed ? "FAIL" : "ok  ",
               rc ? e.msg : "decoded (lenient: Pillow refuses)");
    } else if (rc != 0) {
        failed = 1;
        printf("  FAIL %-39s %s\n", file, e.msg);
    } else {
        int64_t w = 0, h = 0, want_orient = 0;
        json_get_int(f, "width", 1, 1 << 30, &w);
        json_get_int(f, "height", 1, 1 << 30, &h);
        if (json_get_int(f, "exif_orientation", 0, 65535, &want_orient)) {
            int wo = want_orient >= 1 && want_orient <= 8 ? (int)want_orient : 1;
            failed |= orient != wo;
            if (orient != wo)
                printf("  FAIL %s: orientation %d, manifest %d\n", file, orient, wo);
        }
        const json_value *keys = json_get(f, "ref_keys");
        const char *key = json_get_str(f, "ref_key");
        if (key && npz) {
            npy_array ref;
            vlm_error re = {0, ""};
            if (npz_get(npz, key, &ref, &re) == 0) {
                int before = th_failures;
                check_against(file, &img, &ref);
                failed |= th_failures != before;
                th_failures = before; /* counted once below */
                npy_free(&ref);
            } else {
                failed = 1;
                printf("  FAIL %s: %s\n", file, re.msg);
            }
        } else if (keys && npz && keys->type == JSON_ARRAY) {
            /* EXIF set: strided and cropped samples of the raw and oriented decodes. */
            int mx = 0;
            for (int pass = 0; pass < 2 && !failed; pass++) {
                if (pass == 1 && image_apply_orientation(&img, orient, &e) != 0) {
                    failed = 1;
                    break;
                }
                for (int kind = 0; kind < 2; kind++) {
                    char member[512];
                    snprintf(member, sizeof member, "%s__%s_%s", file, pass ? "oriented" : "raw",
                             kind ? "crop64" : "stride8");
                    npy_array ref;
                    vlm_error re = {0, ""};
                    if (npz_get(npz, member, &ref, &re) != 0 || ref.ndim != 3) {
                        failed = 1;
                        printf("  FAIL %s: %s\n", member, re.msg);
                        npy_free(&ref);
                        continue;
                    }
                    int step = kind ? 1 : 8;
                    const uint8_t *r = ref.data;
                    for (int64_t y = 0; y < ref.shape[0]; y++)
                        for (int64_t x = 0; x < ref.shape[1]; x++)
                            for (int ch = 0; ch < 3; ch++) {
                                int64_t sy = y * step, sx = x * step;
                                int d = 255;
                                if (sy < img.height && sx < img.width)
                                    d = abs((int)img.rgb[((size_t)sy * img.width + sx) * 3 + ch] -
                                            (int)r[(y * ref.shape[1] + x) * 3 + ch]);
                                mx = d > mx ? d : mx;
                            }
                    npy_free(&ref);
                }
            }
            failed |= mx > MAX_DIFF_ALLOWED;
            printf("  %-44s %5dx%-5d orientation %d, raw+oriented stride8/crop64 max %d\n", file,
                   img.width, img.height, orient, mx);
        } else {
            failed = 1;
            printf("  FAIL %s: no reference\n", file);
        }
        (void)w;
        (void)h;
        t->exact += !failed;
    }
    release(&img);
    if (failed) {
        t->failures++;
        TH_CHECK(0, "%s: unexpected outcome against the manifest", path);
    }
}

static void run_shared_sweep(void)
{
    static const char *const dirs[] = {
        "../shared/assets/jpeg/libjpeg-turbo", "../shared/assets/jpeg/generated",
        "../shared/assets/jpeg/jpeg-decoder", "../shared/assets/jpeg/jpeg-decoder/mozilla",
        "../shared/assets/jpeg/jpeg-decoder/lossless", "../shared/assets/jpeg/jpeg-decoder/crashtest",
        "../shared/assets/jpeg/exif-orientation", "../shared/assets/photos"};
    if (!imgref_exists("../shared/assets/jpeg/generated/manifest.json")) {
        printf("SKIP ../shared/assets not present: shared JPEG sweep not run\n");
        return;
    }
    sweep_totals t = {0};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[1024];
        vlm_error e = {0, ""};
        snprintf(path, sizeof path, "%s/manifest.json", dirs[i]);
        json_doc *doc = json_parse_file(path, 64 << 20, &e);
        TH_CHECK(doc != NULL, "%s", e.msg);
        if (!doc)
            continue;
        snprintf(path, sizeof path, "%s/ref_pil.npz", dirs[i]);
        npz_file *npz = imgref_exists(path) ? npz_open(path, &e) : NULL;
        const json_value *files = json_get(json_root(doc), "files");
        printf("== %s\n", dirs[i]);
        for (size_t k = 0; files && files->type == JSON_ARRAY && k < files->len; k++)
            sweep_entry(dirs[i], npz, files->items[k], &t);
        npz_close(npz);
        json_free(doc);
    }
    printf("shared JPEG sweep: %d files: %d identical to Pillow, %d refused as expected, "
           "%d decoded leniently where Pillow refuses, %d robustness-only, %d failures\n",
           t.files, t.exact, t.refused, t.lenient, t.robustness, t.failures);
    TH_CHECK(t.files > 150, "only %d shared JPEG files found", t.files);
}

int main(void)
{
    run_local_cases();
    run_orientation_cases();
    run_exif_parser_cases();
    run_limit_and_prefix_cases();
    run_shared_sweep();
    return th_report("test_jpeg");
}
