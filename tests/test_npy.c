/* test_npy.c: tests of src/npy.c.
 * Round trips through npy_write_f32/npy_read (0-d, 1-d, n-d, empty), the exact header bytes
 * numpy writes, reading the fixture goldens, versions 2.0/3.0, and rejection without a crash of
 * truncated files (every length), malformed dicts, Fortran order, huge shapes and overflow. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"
#include "th.h"

/* A per-process scratch path, so parallel test runs do not collide. */
static const char *scratch_path(const char *tag)
{
    static char buf[4][256];
    static int slot;
    const char *dir = getenv("TMPDIR");
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "%s/vlm_test_npy_%ld_%s.npy", dir && *dir ? dir : "/tmp",
             (long)getpid(), tag);
    return b;
}

/* Reads a whole file into a malloc'ed buffer (*len bytes); NULL on error. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    long n;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* Writes, reads back, checks dtype/shape/data, and checks the header text and alignment. */
static void check_round_trip(int ndim, const int64_t *shape, const char *expect_shape_text)
{
    size_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= (size_t)shape[d];
    float *data = malloc((numel ? numel : 1) * sizeof(float)); /* (numel) */
    for (size_t i = 0; i < numel; i++)
        data[i] = (float)i * 0.25f - 3.0f;
    const char *path = scratch_path("rt");
    vlm_error e = {0};
    int rc = npy_write_f32(path, data, ndim, shape, &e);
    TH_CHECK(rc == 0, "write %s: %s", expect_shape_text, e.msg);

    size_t len = 0;
    uint8_t *raw = slurp(path, &len);
    TH_CHECK(raw != NULL, "cannot reread %s", path);
    if (raw) {
        size_t header_len = (size_t)raw[8] | ((size_t)raw[9] << 8);
        size_t data_off = 10 + header_len;
        TH_CHECK(raw[6] == 1 && raw[7] == 0, "version %u.%u", raw[6], raw[7]);
        TH_CHECK(data_off % 64 == 0, "data offset %zu not 64-aligned", data_off);
        TH_CHECK(len == data_off + numel * 4, "file length %zu, expected %zu", len,
                 data_off + numel * 4);
        TH_CHECK(raw[data_off - 1] == '\n', "header does not end with a newline");
        char expect[160];
        snprintf(expect, sizeof expect, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                 expect_shape_text);
        TH_CHECK(len >= 10 + strlen(expect) && memcmp(raw + 10, expect, strlen(expect)) == 0,
                 "header text differs for %s", expect_shape_text);
        for (size_t i = 10 + strlen(expect); i + 1 < data_off && i < len; i++)
            TH_CHECK(raw[i] == ' ', "padding byte %zu is 0x%02x", i, raw[i]);
        free(raw);
    }

    npy_array a;
    rc = npy_read(path, &a, &e);
    TH_CHECK(rc == 0, "read %s: %s", expect_shape_text, e.msg);
    if (rc == 0) {
        TH_CHECK(strcmp(a.dtype, "<f4") == 0 && a.elem_size == 4, "dtype %s", a.dtype);
        TH_CHECK(a.ndim == ndim, "ndim %d vs %d", a.ndim, ndim);
        for (int d = 0; d < ndim && d < a.ndim; d++)
            TH_CHECK(a.shape[d] == shape[d], "dim %d: %lld vs %lld", d, (long long)a.shape[d],
                     (long long)shape[d]);
        TH_CHECK(a.numel == numel, "numel %zu vs %zu", a.numel, numel);
        TH_CHECK(numel == 0 || memcmp(a.data, data, numel * 4) == 0, "data differs");
    }
    npy_free(&a);
    remove(path);
    free(data);
}

/* Builds a .npy image: version major.0, the given header text padded with spaces + '\n' (no
 * alignment requirement on read), then data_len bytes of a counting pattern. */
static uint8_t *build_npy(int major, const char *dict, size_t data_len, size_t *len)
{
    size_t pre = major == 1 ? 10 : 12;
    size_t hlen = strlen(dict) + 1;
    hlen += (16 - (pre + hlen) % 16) % 16;
    *len = pre + hlen + data_len;
    uint8_t *b = malloc(*len);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (uint8_t)hlen;
        b[9] = (uint8_t)(hlen >> 8);
    } else {
        for (int i = 0; i < 4; i++)
            b[8 + i] = (uint8_t)(hlen >> (8 * i));
    }
    memset(b + pre, ' ', hlen);
    memcpy(b + pre, dict, strlen(dict));
    b[pre + hlen - 1] = '\n';
    for (size_t i = 0; i < data_len; i++)
        b[pre + hlen + i] = (uint8_t)(i * 7 + 1);
    return b;
}

/* Expects npy_parse of the given header (+ data_len bytes) to return want_rc (0 = success). */
static void check_dict(int major, const char *dict, size_t data_len, int want_rc)
{
    size_t len;
    uint8_t *b = build_npy(major, dict, data_len, &len);
    npy_array a;
    vlm_error e = {0};
    int rc = npy_parse(b, len, "case.npy", &a, &e);
    TH_CHECK(rc == want_rc, "header %s (v%d, %zu data bytes): rc %d, expected %d (%s)", dict,
             major, data_len, rc, want_rc, rc ? e.msg : "ok");
    if (rc != 0) {
        TH_CHECK(a.data == NULL, "output not cleared on error");
        TH_CHECK(strstr(e.msg, "case.npy") != NULL, "message does not name the file: %s", e.msg);
    }
    npy_free(&a);
    free(b);
}

static void test_round_trips(void)
{
    int64_t s1[1] = {5};
    int64_t s3[3] = {2, 3, 4};
    int64_t s2[2] = {0, 3};
    int64_t s8[8] = {1, 2, 1, 3, 1, 1, 2, 1};
    check_round_trip(0, NULL, "()");
    check_round_trip(1, s1, "(5,)");
    check_round_trip(3, s3, "(2, 3, 4)");
    check_round_trip(2, s2, "(0, 3)");
    check_round_trip(8, s8, "(1, 2, 1, 3, 1, 1, 2, 1)");

    vlm_error e = {0};
    int64_t bad[1] = {-1};
    float x = 0;
    TH_CHECK(npy_write_f32(scratch_path("bad"), &x, 1, bad, &e) == VLM_EARG, "negative dim");
    TH_CHECK(npy_write_f32(scratch_path("bad"), &x, 9, s8, &e) == VLM_EARG, "9 dims");
    int64_t huge[2] = {INT64_MAX, 4};
    TH_CHECK(npy_write_f32(scratch_path("bad"), &x, 2, huge, &e) == VLM_EARG, "overflow");
    TH_CHECK(npy_write_f32("/nonexistent-dir/x.npy", &x, 1, s1, &e) == VLM_EIO, "bad path");

    /* Another dtype through npy_write. */
    uint8_t bytes[6] = {1, 2, 3, 250, 251, 252};
    int64_t sb[2] = {2, 3};
    const char *path = scratch_path("u1");
    TH_CHECK(npy_write(path, "|u1", bytes, 2, sb, &e) == 0, "write |u1: %s", e.msg);
    npy_array a;
    TH_CHECK(npy_read(path, &a, &e) == 0, "read |u1: %s", e.msg);
    TH_CHECK(strcmp(a.dtype, "|u1") == 0 && a.numel == 6 && a.data &&
                 memcmp(a.data, bytes, 6) == 0, "|u1 round trip");
    npy_free(&a);
    remove(path);
}

static void test_goldens(void)
{
    static const char *const dirs[] = {"fixtures/tiny-v2/goldens", "fixtures/tiny-v1/goldens"};
    for (int i = 0; i < 2; i++) {
        char rel[128];
        vlm_error e = {0};
        npy_array a;
        snprintf(rel, sizeof rel, "%s/pixel_values.npy", dirs[i]);
        int rc = npy_read(TH_DATA(rel), &a, &e);
        TH_CHECK(rc == 0, "%s: %s", rel, e.msg);
        TH_CHECK(rc == 0 && strcmp(a.dtype, "<f4") == 0 && a.ndim == 3 && a.shape[0] == 3 &&
                     a.shape[1] == 112 && a.shape[2] == 112, "%s: dtype/shape", rel);
        /* Normalized pixels of a real photo lie within [(0-mean)/std, (1-mean)/std]. */
        if (rc == 0) {
            const float *v = a.data;
            int in_range = 1;
            for (size_t k = 0; k < a.numel; k++)
                in_range &= v[k] > -1.8f && v[k] < 2.2f;
            TH_CHECK(in_range, "%s: values outside the normalized range", rel);
        }
        npy_free(&a);

        snprintf(rel, sizeof rel, "%s/image_rgb.npy", dirs[i]);
        rc = npy_read(TH_DATA(rel), &a, &e);
        TH_CHECK(rc == 0 && strcmp(a.dtype, "|u1") == 0 && a.ndim == 3 && a.shape[2] == 3 &&
                     a.numel == (size_t)(a.shape[0] * a.shape[1] * 3), "%s: %s", rel, e.msg);
        npy_free(&a);

        snprintf(rel, sizeof rel, "%s/greedy_ids.npy", dirs[i]);
        rc = npy_read(TH_DATA(rel), &a, &e);
        TH_CHECK(rc == 0 && strcmp(a.dtype, "<i8") == 0 && a.ndim == 1 && a.shape[0] == 24,
                 "%s: %s (dtype %s)", rel, e.msg, a.dtype);
        npy_free(&a);
    }
    vlm_error e = {0};
    npy_array a;
    TH_CHECK(npy_read(TH_DATA("no-such-file.npy"), &a, &e) == VLM_EIO, "missing file");
}

/* Every strict prefix of a valid file is an error, from memory and from disk. */
static void test_truncation(void)
{
    int64_t shape[2] = {3, 5};
    float data[15];
    for (int i = 0; i < 15; i++)
        data[i] = (float)i;
    const char *path = scratch_path("trunc");
    vlm_error e = {0};
    TH_CHECK(npy_write_f32(path, data, 2, shape, &e) == 0, "%s", e.msg);
    size_t len = 0;
    uint8_t *raw = slurp(path, &len);
    TH_CHECK(raw != NULL && len == 128 + 60, "written length %zu", len);
    if (!raw)
        return;
    int failures = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* An exact-size heap copy so that an over-read shows up under ASan/valgrind. */
        uint8_t *part = malloc(cut ? cut : 1);
        memcpy(part, raw, cut);
        npy_array a;
        int rc = npy_parse(part, cut, "cut.npy", &a, &e);
        failures += rc == 0;
        npy_free(&a);
        free(part);
    }
    TH_CHECK(failures == 0, "%d truncated buffers parsed without error", failures);

    const char *cut_path = scratch_path("cut");
    int file_failures = 0;
    for (size_t cut = 0; cut < len; cut += 7) {
        FILE *f = fopen(cut_path, "wb");
        if (!f)
            break;
        fwrite(raw, 1, cut, f);
        fclose(f);
        npy_array a;
        int rc = npy_read(cut_path, &a, &e);
        file_failures += rc == 0;
        npy_free(&a);
    }
    TH_CHECK(file_failures == 0, "%d truncated files read without error", file_failures);

    /* Trailing garbage is also refused. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, raw, len);
    longer[len] = 0;
    npy_array a;
    TH_CHECK(npy_parse(longer, len + 1, "long.npy", &a, &e) == VLM_EFORMAT, "trailing byte");
    npy_free(&a);
    free(longer);

    /* Single-byte corruptions anywhere never crash, and the untouched file still parses. */
    static const uint8_t probes[] = {0x00, 0x20, 0x27, 0x28, 0x29, 0x2c, 0x31, 0x39, 0x7b, 0x7d,
                                     0xff};
    for (size_t pos = 0; pos < len; pos++)
        for (size_t k = 0; k < sizeof probes; k++) {
            uint8_t *m = malloc(len);
            memcpy(m, raw, len);
            m[pos] = probes[k];
            int rc = npy_parse(m, len, "mut.npy", &a, &e);
            if (rc == 0)
                TH_CHECK(a.numel * a.elem_size <= len, "accepted size beyond the buffer");
            npy_free(&a);
            free(m);
        }
    TH_CHECK(npy_parse(raw, len, "ok.npy", &a, &e) == 0 && a.numel == 15, "original: %s", e.msg);
    npy_free(&a);
    free(raw);
    remove(path);
    remove(cut_path);
}

static void test_headers(void)
{
    const int F = VLM_EFORMAT, U = VLM_EUNSUPPORTED, R = VLM_ERANGE;
    /* Valid variants. */
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, 0);
    check_dict(1, "{\"shape\": (2,3),\"descr\":\"<i4\",\"fortran_order\":False}", 24, 0);
    check_dict(1, "{'descr': '<f8', 'fortran_order': False, 'shape': ()}", 8, 0);
    check_dict(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (7,)}", 7, 0);
    check_dict(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (0,)}", 0, 0);
    check_dict(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (1, 2,)}", 4, 0);
    check_dict(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,)}", 24, 0);
    check_dict(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 16, 0);
    check_dict(3, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 5, 0);

    /* Data size disagreeing with the shape. */
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 23, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 25, F);
    /* Layouts and dtypes we do not support. */
    check_dict(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, U);
    check_dict(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, U);
    check_dict(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16, U);
    check_dict(1, "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", 24, U);
    check_dict(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, U);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }",
               4, U);
    /* Malformed dicts. */
    check_dict(1, "", 0, F);
    check_dict(1, "{", 0, F);
    check_dict(1, "{}", 0, F);
    check_dict(1, "[]", 0, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False}", 4, F);
    check_dict(1, "{'descr': '<f4', 'shape': (1,)}", 4, F);
    check_dict(1, "{'fortran_order': False, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", 4, F);
    check_dict(1, "{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order' False, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,,)}", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}", 8, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", 4, F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}", 4, F);
    check_dict(1, "{'de\\'scr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, F);
    /* Huge shapes: refused by size arithmetic before any allocation. */
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807,)}", 4,
               F);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808,)}", 4,
               R);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
               4, R);
    check_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
               4, F);
    check_dict(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}", 8,
               F);
    check_dict(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 9223372036854775807)}",
               0, 0);

    /* Preamble problems. */
    size_t len;
    uint8_t *b = build_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, &len);
    npy_array a;
    vlm_error e = {0};
    b[0] = 0x92;
    TH_CHECK(npy_parse(b, len, "m.npy", &a, &e) == F, "bad magic");
    b[0] = 0x93;
    b[6] = 4;
    TH_CHECK(npy_parse(b, len, "m.npy", &a, &e) == U, "version 4");
    b[6] = 1;
    b[8] = 0xff;
    b[9] = 0xff;
    TH_CHECK(npy_parse(b, len, "m.npy", &a, &e) == F, "header length beyond the file");
    free(b);
    b = build_npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, &len);
    b[11] = 0xff; /* header length > 4 GiB */
    TH_CHECK(npy_parse(b, len, "m.npy", &a, &e) == F, "v2 header length beyond the file");
    TH_CHECK(npy_parse(b, 11, "m.npy", &a, &e) == F, "v2 preamble truncated");
    free(b);
    TH_CHECK(npy_parse(NULL, 0, "m.npy", &a, &e) == VLM_EARG, "NULL buffer");
}

int main(void)
{
    test_round_trips();
    test_goldens();
    test_truncation();
    test_headers();
    return th_report("test_npy");
}
