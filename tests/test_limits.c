/* test_limits.c: every documented limit is enforced with a clear error and before any
 * allocation sized by the offending value: image pixels (caller limits and headers claiming
 * huge images), weight-file tensor count and dimensions, configuration bounds, prompts longer
 * than the context (also a prompt of many megabytes), token ids out of range, forward passes
 * past the context and caller images outside the preprocessor's range; then one malformed
 * input per converter parser (JSON, .npy, SentencePiece, safetensors, PyTorch ZIP). Each case
 * prints its message (docs/security.md quotes them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "golden.h"
#include "image.h"
#include "json.h"
#include "model.h"
#include "npy.h"
#include "source_internal.h"
#include "spm.h"
#include "th.h"
#include "tokenizer.h"
#include "util.h"
#include "vlm.h"
#include "wfile.h"

/* Checks that rc is the expected code with a message containing want; prints the message. */
static void expect(const char *what, int rc, int code, const vlm_error *e, const char *want)
{
    TH_CHECK(rc == code, "%s: rc %d, expected %d (%s)", what, rc, code, e->msg);
    TH_CHECK(rc == 0 || strstr(e->msg, want), "%s: message '%s' lacks '%s'", what, e->msg, want);
    fprintf(stderr, "  %-40s -> %s\n", what, rc ? e->msg : "(accepted)");
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ---- images ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG signature and IHDR chunk (valid CRCs) declaring w x h 8-bit RGB, a stub IDAT, IEND. */
static size_t png_header(uint8_t *b, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(b, sig, 8);
    put_be32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    put_be32(b + 16, w);
    put_be32(b + 20, h);
    b[24] = 8, b[25] = 2, b[26] = 0, b[27] = 0, b[28] = 0;
    put_be32(b + 29, crc32_update(0, b + 12, 17));
    put_be32(b + 33, 2); /* an IDAT of a bare zlib header: the size is checked first */
    memcpy(b + 37, "IDAT\x78\x9c", 6);
    put_be32(b + 43, crc32_update(0, b + 37, 6));
    put_be32(b + 47, 0);
    memcpy(b + 51, "IEND", 4);
    put_be32(b + 55, crc32_update(0, b + 51, 4));
    return 59;
}

/* SOI and a baseline SOF0 declaring w x h with three components, then EOI. */
static size_t jpeg_header(uint8_t *b, uint16_t w, uint16_t h)
{
    static const uint8_t head[] = {0xff, 0xd8, 0xff, 0xc0, 0, 17, 8};
    size_t n = 0;
    memcpy(b, head, sizeof head);
    n = sizeof head;
    b[n++] = (uint8_t)(h >> 8), b[n++] = (uint8_t)h, b[n++] = (uint8_t)(w >> 8), b[n++] = (uint8_t)w;
    b[n++] = 3;
    for (int c = 0; c < 3; c++)
        b[n++] = (uint8_t)(c + 1), b[n++] = c ? 0x11 : 0x22, b[n++] = 0;
    b[n++] = 0xff, b[n++] = 0xd9;
    return n;
}

static void image_limits_cases(void)
{
    fprintf(stderr, "images:\n");
    vlm_image img;
    vlm_error e;
    image_limits small = {1000, 0};
    int rc = image_decode_file(TH_DATA("images/jpeg/crop_65x47_420.jpg"), IMAGE_EXIF_APPLY, &small, &img, &e);
    expect("JPEG 65x47 over max_pixels 1000", rc, VLM_ERANGE, &e, "3055");
    rc = image_decode_file(TH_DATA("images/png/pngsuite/basn2c08.png"), IMAGE_EXIF_APPLY, &small, &img, &e);
    expect("PNG 32x32 over max_pixels 1000", rc, VLM_ERANGE, &e, "1024");
    rc = image_decode_file(TH_DATA("images/ppm/monkey16.pgm"), IMAGE_EXIF_APPLY, &small, &img, &e);
    expect("PGM 149x227 over max_pixels 1000", rc, VLM_ERANGE, &e, "1000");
    TH_CHECK(img.rgb == NULL && img.width == 0, "a refused image must be zeroed");

    /* Headers claiming huge images, default limits: refused from the header alone. */
    long rss0 = max_rss_kb();
    uint8_t b[64];
    size_t n = png_header(b, 0x7fffffff, 0x7fffffff);
    rc = image_decode_buffer(b, n, "huge.png", IMAGE_EXIF_APPLY, NULL, &img, &e);
    expect("PNG header 2^31-1 x 2^31-1", rc, VLM_ERANGE, &e, "huge.png");
    n = png_header(b, 20000, 20000);
    rc = image_decode_buffer(b, n, "400M.png", IMAGE_EXIF_APPLY, NULL, &img, &e);
    expect("PNG header 20000 x 20000 (4e8 > 1e8)", rc, VLM_ERANGE, &e, "400M.png");
    n = png_header(b, 10000, 10000);
    rc = image_decode_buffer(b, n, "bomb.png", IMAGE_EXIF_APPLY, NULL, &img, &e);
    expect("PNG 10000 x 10000 with a 2-byte IDAT", rc, VLM_EFORMAT, &e, "cannot hold");
    n = jpeg_header(b, 65535, 65535);
    rc = image_decode_buffer(b, n, "huge.jpg", IMAGE_EXIF_APPLY, NULL, &img, &e);
    expect("JPEG SOF 65535 x 65535", rc, VLM_ERANGE, &e, "huge.jpg");
    static const char ppm[] = "P6\n1000000 1000000\n255\n";
    rc = image_decode_buffer((const uint8_t *)ppm, sizeof ppm - 1, "huge.ppm", IMAGE_EXIF_APPLY, NULL, &img, &e);
    expect("PPM header 10^6 x 10^6", rc, VLM_ERANGE, &e, "huge.ppm");
    TH_CHECK(max_rss_kb() - rss0 < 64 * 1024, "huge headers grew the peak RSS by %ld kB", max_rss_kb() - rss0);

    /* The decoder memory budget. */
    image_limits budget = {0, 4096};
    rc = image_decode_file(TH_DATA("images/jpeg/crop_65x47_420.jpg"), IMAGE_EXIF_APPLY, &budget, &img, &e);
    TH_CHECK(rc < 0 && e.msg[0], "a 4 kB memory budget must refuse a 65x47 JPEG");
    fprintf(stderr, "  %-40s -> %s\n", "JPEG 65x47 with a 4 kB memory budget", e.msg);
    image_free(&img);
}

/* ---- weight files ---- */

static char tmp_path[600];

static int open_bytes(const uint8_t *b, size_t n, vlm_error *e)
{
    FILE *f = fopen(tmp_path, "wb");
    if (!f)
        return -100;
    fwrite(b, 1, n, f);
    fclose(f);
    model m;
    int rc = model_open(tmp_path, 1, "ref", &m, e);
    if (!rc)
        model_close(&m);
    return rc;
}

static void put_le32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A one-tensor file: header, one record "x" (f32, the given dims), CRC fixed, no data. */
static size_t one_tensor(uint8_t *b, uint32_t ndim, const uint32_t *dims, uint64_t nbytes)
{
    size_t n = 640;
    memset(b, 0, n);
    memcpy(b, WF_MAGIC, 8);
    put_le32(b + 8, WF_VERSION);
    put_le32(b + 12, 1);
    put_le64(b + 16, n);
    put_le64(b + 24, WF_HEADER_SIZE);
    put_le64(b + 32, 640);
    uint8_t *r = b + WF_HEADER_SIZE;
    memcpy(r, "x", 2);
    put_le32(r + 64, WT_F32);
    put_le32(r + 68, ndim);
    for (uint32_t i = 0; i < ndim; i++)
        put_le32(r + 72 + 4 * i, dims[i]);
    put_le64(r + 88, 640);
    put_le64(r + 96, nbytes);
    vlm_image_fix_crc(b, n);
    return n;
}

/* Sets config word `word` of a copy of good to v and expects model_open to name `field`. */
static void config_case(const uint8_t *good, size_t n, int word, uint32_t v, const char *field)
{
    uint8_t *b = malloc(n);
    memcpy(b, good, n);
    put_le32(b + WF_CONFIG_OFFSET + 4 * word, v);
    vlm_image_fix_crc(b, n);
    vlm_error e = {0};
    char what[80];
    snprintf(what, sizeof what, "config %s = %u", field, v);
    int rc = open_bytes(b, n, &e);
    expect(what, rc, VLM_EFORMAT, &e, field);
    free(b);
}

static void wfile_cases(const char *tiny_path)
{
    fprintf(stderr, "weight files:\n");
    uint8_t b[640];
    vlm_error e;
    memset(b, 0, sizeof b);
    memcpy(b, WF_MAGIC, 8);
    put_le32(b + 8, WF_VERSION);
    put_le32(b + 12, WF_MAX_TENSORS + 1);
    put_le64(b + 16, WF_HEADER_SIZE);
    expect("tensor count 65537", open_bytes(b, WF_HEADER_SIZE, &e), VLM_EFORMAT, &e, "tensor count 65537");
    put_le32(b + 12, 0);
    expect("tensor count 0", open_bytes(b, WF_HEADER_SIZE, &e), VLM_EFORMAT, &e, "tensor count 0");

    uint32_t big[1] = {0x80000000u};
    size_t n = one_tensor(b, 1, big, 0);
    expect("dimension 2^31", open_bytes(b, n, &e), VLM_EFORMAT, &e, "invalid f32 shape");
    uint32_t ovf[4] = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    n = one_tensor(b, 4, ovf, 0);
    expect("dimensions whose product overflows", open_bytes(b, n, &e), VLM_EFORMAT, &e, "invalid f32 shape");
    uint32_t five[4] = {1, 1, 1, 1};
    n = one_tensor(b, 4, five, 4);
    put_le32(b + WF_HEADER_SIZE + 68, 5);
    vlm_image_fix_crc(b, n);
    expect("ndim 5", open_bytes(b, n, &e), VLM_EFORMAT, &e, "ndim 5");
    uint32_t huge[2] = {0x7fffffff, 0x7fffffff};
    n = one_tensor(b, 2, huge, (uint64_t)0x7fffffff * 0x7fffffff * 4);
    expect("2^64-byte tensor in a 640-byte file", open_bytes(b, n, &e), VLM_EFORMAT, &e, "leave the file");

    size_t len = 0;
    uint8_t *good = read_whole_file(tiny_path, &len);
    TH_CHECK(good != NULL, "cannot read %s", tiny_path);
    if (!good)
        return;
    config_case(good, len, 2, (1u << 16) + 1, "dim");
    config_case(good, len, 3, (1u << 20) + 1, "hidden_dim");
    config_case(good, len, 4, 1025, "n_layers");
    config_case(good, len, 5, 1025, "n_heads");
    config_case(good, len, 7, 257, "head_dim");
    config_case(good, len, 8, (1u << 20) + 1, "vocab_size");
    config_case(good, len, 9, (1u << 20) + 1, "max_seq_len");
    config_case(good, len, 9, 0, "max_seq_len");
    config_case(good, len, 11, 1u << 31, "eos_id");
    config_case(good, len, 17, 4097, "v_image_size");
    config_case(good, len, 21, 1025, "v_layers");
    config_case(good, len, 19, (1u << 16) + 1, "v_dim");
    free(good);
}

/* ---- prompts, context, token ids ---- */

static void prompt_cases(const char *tiny_path, const char *stories_path)
{
    fprintf(stderr, "prompts and context:\n");
    vlm_error e;
    vlm_model *vm;
    int rc = vlm_open(tiny_path, 1, &vm, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return;
    const vlm_info *info = vlm_get_info(vm);
    int ctx = info->context_length;
    uint8_t rgb[4 * 4 * 3];
    memset(rgb, 128, sizeof rgb);
    vlm_request rq = {.prompt = "What is in the image?", .image_rgb = rgb, .image_width = 4, .image_height = 4,
                      .max_new_tokens = 4, .ignore_eos = 1};
    vlm_result res;
    size_t big = (size_t)ctx * 8;
    char *p = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        p[i] = "ab c"[i % 4];
    p[big] = 0;
    rq.prompt = p;
    rq.max_new_tokens = 4;
    rc = vlm_generate(vm, &rq, &res, &e);
    expect("prompt of 8 x context bytes, with image", rc, VLM_ERANGE, &e, "context");
    rq.image_rgb = NULL;
    rc = vlm_generate(vm, &rq, &res, &e);
    expect("prompt of 8 x context bytes, no image", rc, VLM_ERANGE, &e, "context");
    free(p);

    /* Text that fits the context alone but not with the image tokens. */
    int n_text = ctx - info->n_image_tokens / 2;
    p = malloc((size_t)n_text * 2 + 1);
    for (int i = 0; i < n_text; i++)
        p[2 * i] = 'x', p[2 * i + 1] = ' ';
    p[2 * n_text] = 0;
    rq.prompt = p;
    rq.image_rgb = rgb;
    rc = vlm_generate(vm, &rq, &res, &e);
    TH_CHECK(rc == VLM_ERANGE, "prompt + image tokens over the context: rc %d", rc);
    fprintf(stderr, "  %-40s -> %s\n", "text + image tokens over the context", e.msg);
    free(p);

    /* Caller images outside the preprocessor's range: refused before the buffer is read. */
    rq.prompt = "Hi";
    rq.image_width = 0;
    rc = vlm_generate(vm, &rq, &res, &e);
    expect("image width 0", rc, VLM_EARG, &e, "0");
    rq.image_width = 1 << 30;
    rq.image_height = 1 << 30;
    rc = vlm_generate(vm, &rq, &res, &e);
    expect("image 2^30 x 2^30 (buffer of 48 bytes)", rc, VLM_EARG, &e, "1073741824");
    rq.image_width = rq.image_height = 4;
    rc = vlm_generate(vm, &rq, &res, &e);
    TH_CHECK(rc == 0, "the model must still work after refused requests: %s", e.msg);
    vlm_close(vm);

    /* Model level: token ids and positions. */
    model m;
    rc = model_open(tiny_path, 1, "ref", &m, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return;
    float *row = malloc(sizeof(float) * m.cfg.dim);
    int bad_ids[] = {-1, (int)m.cfg.vocab_size, -200, 0x7fffffff};
    for (int i = 0; i < 4; i++) {
        char what[64];
        snprintf(what, sizeof what, "model_embed id %d", bad_ids[i]);
        rc = model_embed(&m, &bad_ids[i], 1, row, &e);
        expect(what, rc, VLM_ERANGE, &e, "out of range");
    }
    char text[64];
    size_t tlen;
    rc = tok_decode(m.tok, &bad_ids[1], 1, text, sizeof text, &tlen, &e);
    expect("tok_decode id = vocab", rc, VLM_ERANGE, &e, "");
    size_t n_ids = 0;
    int ids[4];
    rc = tok_encode(m.tok, text, ((size_t)1 << 28) + 1, ids, 4, &n_ids, &e);
    expect("tok_encode of 256 MiB + 1 bytes", rc, VLM_ERANGE, &e, "MiB");
    int T = (int)m.cfg.max_seq_len + 1;
    float *emb = calloc((size_t)T * m.cfg.dim, sizeof(float));
    rc = model_forward(&m, emb, T, NULL, &e);
    expect("model_forward of context + 1 positions", rc, VLM_ERANGE, &e, "exceed the context");
    rc = model_forward(&m, emb, 0, NULL, &e);
    expect("model_forward of 0 positions", rc, VLM_ERANGE, &e, "0 tokens");
    free(emb);
    free(row);
    model_close(&m);

    /* A text-only model and a prompt of 32 MiB: refused without memory growing with it. */
    rc = vlm_open(stories_path, 1, &vm, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return;
    /* max_new_tokens beyond the context is clamped, not an error (stories260K: 512 positions). */
    ctx = vlm_get_info(vm)->context_length;
    vlm_request cq = {.prompt = "Once upon a time", .max_new_tokens = 1 << 30, .ignore_eos = 1};
    rc = vlm_generate(vm, &cq, &res, &e);
    TH_CHECK(rc == 0 && res.n_prompt_tokens + res.n_ids <= ctx + 1, "generation to the end of the context: rc %d %s",
             rc, rc ? e.msg : "");
    fprintf(stderr, "  %-40s -> %d prompt + %d generated positions (context %d)\n", "max_new_tokens 2^30",
            res.n_prompt_tokens, res.n_ids, ctx);
    big = (size_t)32 << 20;
    p = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        p[i] = "Once upon a time "[i % 17];
    p[big] = 0;
    long rss0 = max_rss_kb();
    vlm_request tq = {.prompt = p, .max_new_tokens = 4};
    rc = vlm_generate(vm, &tq, &res, &e);
    long grew = max_rss_kb() - rss0;
    expect("text-only prompt of 32 MiB", rc, VLM_ERANGE, &e, "context");
    fprintf(stderr, "  %-40s -> peak RSS grew by %ld MiB\n", "", grew >> 10);
    TH_CHECK(grew < 256 * 1024, "a 32 MiB prompt grew the peak RSS by %ld MiB", grew >> 10);
    free(p);
    vlm_close(vm);
}

/* ---- converter parsers: one malformed input each ---- */

/* A version-1 .npy preamble and header dict (padded to 64 bytes), without data; returns bytes. */
static size_t npy_bytes(uint8_t *b, const char *dict)
{
    size_t dl = strlen(dict);
    size_t total = (10 + dl + 1 + 63) / 64 * 64;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(total - 10), b[9] = (uint8_t)((total - 10) >> 8);
    memcpy(b + 10, dict, dl);
    memset(b + 10 + dl, ' ', total - 10 - dl - 1);
    b[total - 1] = '\n';
    return total;
}

/* Loads bytes as a safetensors (or PyTorch ZIP) file of a fresh source set. */
static int load_source(const uint8_t *b, size_t n, int zip, vlm_error *e)
{
    src_set *s = src_set_new();
    const char *name = s ? src_set_add_file(s, zip ? "bad.bin" : "bad.safetensors", NULL, 0) : NULL;
    int rc = !name ? VLM_ENOMEM
                   : zip ? src_load_torchzip(s, b, n, name, e) : src_load_safetensors(s, b, n, name, e);
    if (!rc)
        rc = src_set_finish(s, e);
    src_close(s);
    return rc;
}

static void parser_cases(void)
{
    fprintf(stderr, "converter parsers:\n");
    vlm_error e;
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    json_doc *d = json_parse(deep, sizeof deep, "deep.json", &e);
    expect("JSON nested 100 deep (limit 64)", d ? 0 : e.code, VLM_ERANGE, &e, "deep.json");
    json_free(d);
    static const char *const bad_json[] = {"{\"a\": 1,}", "{\"a\": \"\\x\"}", "[1, 2", "{\"a\" 1}", "[1e99999]"};
    for (int i = 0; i < 5; i++) {
        d = json_parse(bad_json[i], strlen(bad_json[i]), "bad.json", &e);
        char what[64];
        snprintf(what, sizeof what, "JSON %s", bad_json[i]);
        TH_CHECK(d == NULL && strstr(e.msg, "bad.json"), "%s accepted", what);
        fprintf(stderr, "  %-40s -> %s\n", what, d ? "(accepted)" : e.msg);
        json_free(d);
    }

    uint8_t npy[256];
    size_t nn = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }");
    npy_array a;
    int rc = npy_parse(npy, nn, "big.npy", &a, &e);
    TH_CHECK(rc < 0, "a .npy of 2^64 elements is accepted");
    fprintf(stderr, "  %-40s -> %s\n", ".npy shape (2^32, 2^32)", e.msg);
    nn = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }");
    rc = npy_parse(npy, nn, "short.npy", &a, &e);
    TH_CHECK(rc < 0, "a .npy without its data is accepted");
    fprintf(stderr, "  %-40s -> %s\n", ".npy data shorter than its shape", e.msg);
    nn = npy_bytes(npy, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }");
    rc = npy_parse(npy, nn, "complex.npy", &a, &e);
    TH_CHECK(rc < 0, "a complex .npy is accepted");
    fprintf(stderr, "  %-40s -> %s\n", ".npy dtype <c8", e.msg);

    spm_model m;
    static const uint8_t spm_trunc[] = {0x0a, 0x80}; /* field 1 (pieces), length varint cut */
    rc = spm_parse(spm_trunc, sizeof spm_trunc, "cut.model", &m, &e);
    TH_CHECK(rc < 0, "a truncated tokenizer.model is accepted");
    fprintf(stderr, "  %-40s -> %s\n", "tokenizer.model cut inside a varint", e.msg);
    static const uint8_t spm_long[] = {0x0a, 0x7f, 0x0a, 0x02, 'a', 'b'}; /* piece longer than the file */
    rc = spm_parse(spm_long, sizeof spm_long, "long.model", &m, &e);
    TH_CHECK(rc < 0, "a tokenizer.model with an overlong field is accepted");
    fprintf(stderr, "  %-40s -> %s\n", "tokenizer.model field past the end", e.msg);

    uint8_t st[64];
    memset(st, 0, sizeof st);
    put_le64(st, (uint64_t)1 << 40); /* header length far beyond the file */
    rc = load_source(st, sizeof st, 0, &e);
    TH_CHECK(rc < 0, "a safetensors header of 2^40 bytes is accepted");
    fprintf(stderr, "  %-40s -> %s\n", "safetensors header length 2^40", e.msg);
    static const char st_json[] = "{\"w\": {\"dtype\": \"F32\", \"shape\": [1000000], \"data_offsets\": [0, 4000000]}}";
    uint8_t st2[128];
    size_t hl = sizeof st_json - 1;
    put_le64(st2, hl);
    memcpy(st2 + 8, st_json, hl);
    rc = load_source(st2, 8 + hl, 0, &e);
    TH_CHECK(rc < 0, "a safetensors tensor outside the file is accepted");
    fprintf(stderr, "  %-40s -> %s\n", "safetensors data_offsets past the end", e.msg);
    static const char st_dt[] = "{\"w\": {\"dtype\": \"C64\", \"shape\": [1], \"data_offsets\": [0, 8]}}";
    hl = sizeof st_dt - 1;
    put_le64(st2, hl);
    memcpy(st2 + 8, st_dt, hl);
    memset(st2 + 8 + hl, 0, 8);
    rc = load_source(st2, 8 + hl + 8, 0, &e);
    TH_CHECK(rc < 0, "a safetensors complex dtype is accepted");
    fprintf(stderr, "  %-40s -> %s\n", "safetensors dtype C64", e.msg);
    static const uint8_t notzip[] = "PK\x03\x04 this is not a whole ZIP archive";
    rc = load_source(notzip, sizeof notzip - 1, 1, &e);
    TH_CHECK(rc < 0, "a truncated ZIP is accepted");
    fprintf(stderr, "  %-40s -> %s\n", "pytorch_model.bin: ZIP without directory", e.msg);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tmp_path, sizeof tmp_path, "%s/vlm-test-limits-%ld.vlm", tmp ? tmp : "/tmp", (long)getpid());
    image_limits_cases();
    char tiny[1024], stories[1024];
    if (golden_convert("tiny-v2", WT_F32, WT_F32, tiny, sizeof tiny) ||
        golden_convert("stories260K-hf", WT_F32, -1, stories, sizeof stories)) {
        TH_CHECK(0, "cannot convert the fixtures");
        return th_report("test_limits");
    }
    wfile_cases(tiny);
    prompt_cases(tiny, stories);
    parser_cases();
    remove(tiny);
    remove(stories);
    remove(tmp_path);
    return th_report("test_limits");
}
