/* test_source.c: tests of the checkpoint readers (weights-tool/source.c, safetensors.c,
 * torchzip.c): the four Hugging Face fixtures (names, shapes, dtypes, values, tied
 * storages, bf16/fp16 towers against the fp32 CLIP), and synthetic files built here in a
 * temporary directory: sharded sets, strided torch tensors, ZIP64, and malformed inputs
 * that must all give an error and never a crash. Expected values come from numpy reads. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source.h"
#include "source_internal.h"
#include "th.h"
#include "util.h"

/* ------------------------------------------------------------------ helpers */

/* Reads a tensor as f32 into a new buffer (NULL and a failed check on error). */
static float *read_all(const src_tensor *t)
{
    size_t n = src_numel(t);
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    vlm_error e = {0};
    int rc = buf ? src_read_f32(t, buf, &e) : VLM_ENOMEM;
    TH_CHECK(rc == 0, "read %s: %s", t->name, e.msg);
    if (rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

static double sum_of(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

/* Checks a tensor's dtype, shape, leading values (exactly) and sum (to tol). */
static void check_tensor(const src_set *s, const char *name, src_dtype dtype, int ndim, const int64_t *shape,
                         const float *head, int nhead, double sum, double tol)
{
    const src_tensor *t = src_find(s, name);
    TH_CHECK(t != NULL, "tensor %s missing", name);
    if (!t)
        return;
    TH_CHECK(t->dtype == dtype, "%s: dtype %s, expected %s", name, src_dtype_name(t->dtype), src_dtype_name(dtype));
    TH_CHECK(t->ndim == ndim, "%s: ndim %d, expected %d", name, t->ndim, ndim);
    for (int i = 0; i < ndim && i < t->ndim; i++)
        TH_CHECK(t->shape[i] == shape[i], "%s: shape[%d] %lld, expected %lld", name, i, (long long)t->shape[i],
                 (long long)shape[i]);
    float *v = read_all(t);
    if (!v)
        return;
    for (int i = 0; i < nhead; i++)
        TH_CHECK(v[i] == head[i], "%s[%d] = %.9g, expected %.9g", name, i, v[i], head[i]);
    double got = sum_of(v, src_numel(t));
    TH_CHECK(fabs(got - sum) <= tol, "%s: sum %.9g, expected %.9g", name, got, sum);
    free(v);
}

static src_set *open_ok(const char *path)
{
    src_set *s = NULL;
    vlm_error e = {0};
    int rc = src_open(path, &s, &e);
    TH_CHECK(rc == 0 && s != NULL, "open %s: %s", path, e.msg);
    return rc ? NULL : s;
}

/* ------------------------------------------------------------------ fixtures */

static void test_tiny_v1(void)
{
    src_set *s = open_ok(TH_DATA("fixtures/tiny-v1"));
    if (!s)
        return;
    TH_CHECK(src_count(s) == 100, "tiny-v1: %d tensors, expected 100", src_count(s));
    TH_CHECK(strcmp(src_at(s, 0)->name, "model.embed_tokens.weight") == 0, "first tensor %s", src_at(s, 0)->name);
    TH_CHECK(strstr(src_at(s, 0)->file, "pytorch_model.bin") != NULL, "file %s", src_at(s, 0)->file);
    const int64_t s96[] = {96}, s96x96[] = {96, 96}, semb[] = {32000, 96};
    const float norm[] = {2.6875f, 2.9375f, 2.8125f, 2.59375f};
    check_tensor(s, "model.norm.weight", SRC_BF16, 1, s96, norm, 4, 288.875, 1e-9);
    const float q[] = {-0.126953125f, 0.0289306640625f, -0.1650390625f, 0.3359375f};
    check_tensor(s, "model.layers.0.self_attn.q_proj.weight", SRC_BF16, 2, s96x96, q, 4, 3.186174124479294, 1e-6);
    const float head[] = {-0.054443359375f, -0.052490234375f, -0.16015625f, 0.03759765625f};
    check_tensor(s, "lm_head.weight", SRC_BF16, 2, semb, head, 4, -210.9318294087425, 1e-6);
    /* Tied embeddings: one storage, two names, identical values. */
    const src_tensor *a = src_find(s, "lm_head.weight"), *b = src_find(s, "model.embed_tokens.weight");
    TH_CHECK(a && b && a->data == b->data, "lm_head and embed_tokens should share their storage");
    TH_CHECK(src_find(s, "no.such.tensor") == NULL, "found a tensor that does not exist");
    src_close(s);
}

static void test_clip(void)
{
    src_set *s = open_ok(TH_DATA("fixtures/clip-vit-tiny-patch14-112"));
    if (!s)
        return;
    TH_CHECK(src_count(s) == 80, "clip: %d tensors, expected 80", src_count(s));
    const float scale[] = {2.6592f};
    check_tensor(s, "logit_scale", SRC_F32, 0, NULL, scale, 1, 2.6592f, 1e-9);
    const int64_t pos_shape[] = {1, 65};
    float pos[65];
    for (int i = 0; i < 65; i++)
        pos[i] = (float)i;
    check_tensor(s, "vision_model.embeddings.position_ids", SRC_I64, 2, pos_shape, pos, 65, 2080.0, 0);
    const int64_t patch_shape[] = {64, 3, 14, 14};
    const float patch[] = {-0.0174560546875f, 0.0198974609375f, 0.00848388671875f, 0.06494140625f};
    check_tensor(s, "vision_model.embeddings.patch_embedding.weight", SRC_F32, 4, patch_shape, patch, 4,
                 0.10729345679283142, 1e-5);
    const src_tensor *p = src_find(s, "vision_model.embeddings.patch_embedding.weight");
    TH_CHECK(p && p->stride[0] == 588 && p->stride[1] == 196 && p->stride[2] == 14 && p->stride[3] == 1,
             "patch_embedding strides");
    src_close(s);
}

static void test_tiny_v2(void)
{
    src_set *s = open_ok(TH_DATA("fixtures/tiny-v2"));
    if (!s)
        return;
    TH_CHECK(src_count(s) == 82, "tiny-v2: %d tensors, expected 82", src_count(s));
    const int64_t s64[] = {64}, semb[] = {32000, 64};
    const float norm[] = {1.0380859375f, 0.9541015625f, 0.86279296875f, 0.85400390625f};
    check_tensor(s, "model.norm.weight", SRC_F16, 1, s64, norm, 4, 64.0068359375, 1e-9);
    const float head[] = {-0.06365966796875f, -0.2188720703125f, 0.42724609375f, -0.335205078125f};
    check_tensor(s, "lm_head.weight", SRC_F16, 2, semb, head, 4, 263.3376563191414, 1e-5);
    const src_tensor *t = src_find(s, "model.mm_projector.peg.peg.0.weight");
    TH_CHECK(t != NULL, "tiny-v2 has the ldpnetv2 PEG weight");
    src_close(s);
}

static void test_stories(void)
{
    src_set *s = open_ok(TH_DATA("fixtures/stories260K-hf/model.safetensors"));
    if (!s)
        return;
    TH_CHECK(src_count(s) == 47, "stories260K: %d tensors, expected 47", src_count(s));
    const int64_t emb_shape[] = {512, 64}, s64[] = {64};
    const float emb[] = {-0.29474878311157227f, 0.5618956089019775f, 0.1754225343465805f, 0.34057360887527466f};
    check_tensor(s, "model.embed_tokens.weight", SRC_F32, 2, emb_shape, emb, 4, -752.3677446640068, 1e-3);
    const float norm[] = {2.4583089351654053f, 1.3673226833343506f, 1.7504382133483887f, 1.1078318357467651f};
    check_tensor(s, "model.norm.weight", SRC_F32, 1, s64, norm, 4, 115.95276230573654, 1e-4);
    src_close(s);
}

/* tiny-v1's bf16 tower equals the fp32 CLIP exactly (its weights are bf16-representable)
 * and tiny-v2's fp16 tower equals their f16 rounding. */
static void test_towers_match_clip(void)
{
    src_set *clip = open_ok(TH_DATA("fixtures/clip-vit-tiny-patch14-112"));
    src_set *v1 = open_ok(TH_DATA("fixtures/tiny-v1"));
    src_set *v2 = open_ok(TH_DATA("fixtures/tiny-v2"));
    if (!clip || !v1 || !v2)
        goto out;
    const char *prefix = "model.vision_tower.vision_tower.";
    size_t plen = strlen(prefix);
    src_set *towers[2] = {v1, v2};
    for (int w = 0; w < 2; w++) {
        int compared = 0, mismatched = 0;
        for (int i = 0; i < src_count(towers[w]); i++) {
            const src_tensor *t = src_at(towers[w], i);
            if (strncmp(t->name, prefix, plen) != 0)
                continue;
            const src_tensor *c = src_find(clip, t->name + plen);
            TH_CHECK(c != NULL, "%s has no CLIP counterpart", t->name);
            if (!c || src_numel(c) != src_numel(t))
                continue;
            float *x = read_all(t), *y = read_all(c);
            for (size_t k = 0; x && y && k < src_numel(t); k++) {
                float want = w == 0 ? y[k] : f16_to_f32(f32_to_f16(y[k]));
                if (x[k] != want)
                    mismatched++;
            }
            free(x);
            free(y);
            compared++;
        }
        TH_CHECK(compared == 55, "tower %d: compared %d tensors, expected 55", w, compared);
        TH_CHECK(mismatched == 0, "tower %d: %d values differ from CLIP", w, mismatched);
    }
out:
    src_close(clip);
    src_close(v1);
    src_close(v2);
}

/* ------------------------------------------------------------------ builders */

typedef struct bytes {
    uint8_t *p; /* (n) bytes, cap allocated */
    size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *d, size_t n)
{
    if (b->cap - b->n < n) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap - b->n < n)
            ncap *= 2;
        uint8_t *np = realloc(b->p, ncap);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->p = np;
        b->cap = ncap;
    }
    if (n)
        memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_u8(bytes *b, unsigned v)
{
    uint8_t x = (uint8_t)v;
    b_put(b, &x, 1);
}
static void b_u16(bytes *b, unsigned v)
{
    b_u8(b, v & 0xff);
    b_u8(b, (v >> 8) & 0xff);
}
static void b_u32(bytes *b, uint32_t v)
{
    b_u16(b, v & 0xffff);
    b_u16(b, v >> 16);
}
static void b_u64(bytes *b, uint64_t v)
{
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_str(bytes *b, const char *s) { b_put(b, s, strlen(s)); }

/* Pickle pieces as torch.save writes them (protocol 2). */
static void pk_s(bytes *b, const char *s)
{
    b_u8(b, 'X');
    b_u32(b, (uint32_t)strlen(s));
    b_str(b, s);
}
static void pk_i(bytes *b, int32_t v)
{
    b_u8(b, 'J');
    b_u32(b, (uint32_t)v);
}
static void pk_g(bytes *b, const char *mod, const char *name)
{
    b_u8(b, 'c');
    b_str(b, mod);
    b_u8(b, '\n');
    b_str(b, name);
    b_u8(b, '\n');
}
static void pk_tuple_i(bytes *b, int n, const int *v)
{
    b_u8(b, '(');
    for (int i = 0; i < n; i++)
        pk_i(b, v[i]);
    b_u8(b, 't');
}
/* Emits _rebuild_tensor_v2(persistent storage, off, size, stride, False, OrderedDict()) (no key). */
static void pk_tensor(bytes *b, const char *stype, const char *key, int numel, int off, int ndim, const int *size,
                      const int *stride)
{
    pk_g(b, "torch._utils", "_rebuild_tensor_v2");
    b_u8(b, '(');
    b_u8(b, '(');
    pk_s(b, "storage");
    pk_g(b, "torch", stype);
    pk_s(b, key);
    pk_s(b, "cpu");
    pk_i(b, numel);
    b_u8(b, 't');
    b_u8(b, 'Q');
    pk_i(b, off);
    pk_tuple_i(b, ndim, size);
    pk_tuple_i(b, ndim, stride);
    b_u8(b, 0x89);
    pk_g(b, "collections", "OrderedDict");
    b_u8(b, ')');
    b_u8(b, 'R');
    b_u8(b, 't');
    b_u8(b, 'R');
}

typedef struct zmember {
    const char *name;
    const uint8_t *data; /* (size) */
    size_t size;
    int method;
} zmember;

/* Writes a ZIP of stored members; zip64 saturates every 32-bit field and writes the ZIP64
 * extra fields, end record and locator that real >4 GB torch checkpoints carry. */
static void zip_build(bytes *out, const zmember *m, int n, int zip64)
{
    uint64_t offs[16];
    for (int i = 0; i < n; i++) {
        offs[i] = out->n;
        size_t nl = strlen(m[i].name);
        b_u32(out, 0x04034b50);
        b_u16(out, 45);
        b_u16(out, 0);
        b_u16(out, (unsigned)m[i].method);
        b_u32(out, 0);
        b_u32(out, 0); /* crc: not checked */
        b_u32(out, zip64 ? 0xffffffffu : (uint32_t)m[i].size);
        b_u32(out, zip64 ? 0xffffffffu : (uint32_t)m[i].size);
        b_u16(out, (unsigned)nl);
        b_u16(out, zip64 ? 20 : 3); /* local extra lengths differ from the central ones */
        b_str(out, m[i].name);
        if (zip64) {
            b_u16(out, 1);
            b_u16(out, 16);
            b_u64(out, m[i].size);
            b_u64(out, m[i].size);
        } else {
            b_put(out, "pad", 3);
        }
        b_put(out, m[i].data, m[i].size);
    }
    uint64_t cd = out->n;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(m[i].name);
        b_u32(out, 0x02014b50);
        b_u16(out, 45);
        b_u16(out, 45);
        b_u16(out, 0);
        b_u16(out, (unsigned)m[i].method);
        b_u32(out, 0);
        b_u32(out, 0);
        b_u32(out, zip64 ? 0xffffffffu : (uint32_t)m[i].size);
        b_u32(out, zip64 ? 0xffffffffu : (uint32_t)m[i].size);
        b_u16(out, (unsigned)nl);
        b_u16(out, zip64 ? 28 : 0);
        b_u16(out, 0);
        b_u16(out, 0);
        b_u16(out, 0);
        b_u32(out, 0);
        b_u32(out, zip64 ? 0xffffffffu : (uint32_t)offs[i]);
        b_str(out, m[i].name);
        if (zip64) {
            b_u16(out, 1);
            b_u16(out, 24);
            b_u64(out, m[i].size);
            b_u64(out, m[i].size);
            b_u64(out, offs[i]);
        }
    }
    uint64_t cd_size = out->n - cd;
    if (zip64) {
        uint64_t rec = out->n;
        b_u32(out, 0x06064b50);
        b_u64(out, 44);
        b_u16(out, 45);
        b_u16(out, 45);
        b_u32(out, 0);
        b_u32(out, 0);
        b_u64(out, (uint64_t)n);
        b_u64(out, (uint64_t)n);
        b_u64(out, cd_size);
        b_u64(out, cd);
        b_u32(out, 0x07064b50);
        b_u32(out, 0);
        b_u64(out, rec);
        b_u32(out, 1);
    }
    b_u32(out, 0x06054b50);
    b_u16(out, 0);
    b_u16(out, 0);
    b_u16(out, zip64 ? 0xffff : (unsigned)n);
    b_u16(out, zip64 ? 0xffff : (unsigned)n);
    b_u32(out, zip64 ? 0xffffffffu : (uint32_t)cd_size);
    b_u32(out, zip64 ? 0xffffffffu : (uint32_t)cd);
    b_u16(out, 0);
}

/* A torch.save archive: prefix/data.pkl, prefix/byteorder, prefix/data/<k>, prefix/version. */
typedef struct torch_file {
    bytes pkl;
    const char *keys[8];
    bytes storage[8]; /* (nstorage) */
    int nstorage;
    const char *byteorder;
    int method;       /* of data.pkl */
    int zip64;
} torch_file;

static void torch_build(torch_file *tf, bytes *out)
{
    zmember m[12];
    char names[12][64];
    int n = 0;
    snprintf(names[n], 64, "archive/data.pkl");
    m[n] = (zmember){names[n], tf->pkl.p, tf->pkl.n, tf->method};
    n++;
    if (tf->byteorder) {
        snprintf(names[n], 64, "archive/byteorder");
        m[n] = (zmember){names[n], (const uint8_t *)tf->byteorder, strlen(tf->byteorder), 0};
        n++;
    }
    for (int i = 0; i < tf->nstorage; i++) {
        snprintf(names[n], 64, "archive/data/%s", tf->keys[i]);
        m[n] = (zmember){names[n], tf->storage[i].p, tf->storage[i].n, 0};
        n++;
    }
    snprintf(names[n], 64, "archive/version");
    m[n] = (zmember){names[n], (const uint8_t *)"3\n", 2, 0};
    n++;
    out->n = 0;
    zip_build(out, m, n, tf->zip64);
}

static void torch_free(torch_file *tf)
{
    free(tf->pkl.p);
    for (int i = 0; i < tf->nstorage; i++)
        free(tf->storage[i].p);
}

/* Storage "0": 12 floats 0..11; storage "1": 4 halves 1.5, -2, 0.25, 65504; storage "2":
 * 3 int64 -5, 7, 1<<40. The pickle holds a transposed tensor with an offset, a tied view,
 * a 0-dim tensor, an empty tensor, a parameter, a _rebuild_from_type_v2 tensor, an int64
 * tensor, non-tensor values (skipped), memo use (BINPUT/BINGET) and BUILD. */
static void torch_sample(torch_file *tf)
{
    memset(tf, 0, sizeof *tf);
    tf->byteorder = "little";
    tf->nstorage = 3;
    tf->keys[0] = "0";
    tf->keys[1] = "1";
    tf->keys[2] = "2";
    for (int i = 0; i < 12; i++)
        b_u32(&tf->storage[0], f32_bits((float)i));
    const float halves[] = {1.5f, -2.0f, 0.25f, 65504.0f};
    for (int i = 0; i < 4; i++)
        b_u16(&tf->storage[1], f32_to_f16(halves[i]));
    b_u64(&tf->storage[2], (uint64_t)(int64_t)-5);
    b_u64(&tf->storage[2], 7);
    b_u64(&tf->storage[2], (uint64_t)1 << 40);
    bytes *b = &tf->pkl;
    b_put(b, "\x80\x02}q\x00(", 6);
    /* transposed: size (2,3) stride (1,2) offset 3 -> [[3,5,7],[4,6,8]] */
    pk_s(b, "t.transposed");
    pk_tensor(b, "FloatStorage", "0", 12, 3, 2, (const int[]){2, 3}, (const int[]){1, 2});
    /* same storage, contiguous from 0, shape (3,4) */
    pk_s(b, "t.full");
    pk_tensor(b, "FloatStorage", "0", 12, 0, 2, (const int[]){3, 4}, (const int[]){4, 1});
    b_u8(b, 'q');
    b_u8(b, 7); /* BINPUT 7 of the full tensor */
    pk_s(b, "t.tied");
    b_u8(b, 'h');
    b_u8(b, 7); /* BINGET 7: the same object under another name */
    pk_s(b, "t.scalar");
    pk_tensor(b, "FloatStorage", "0", 12, 11, 0, NULL, NULL);
    pk_s(b, "t.empty");
    pk_tensor(b, "FloatStorage", "0", 12, 99, 2, (const int[]){0, 5}, (const int[]){5, 1});
    pk_s(b, "t.half");
    pk_g(b, "torch._utils", "_rebuild_parameter");
    b_u8(b, '(');
    pk_tensor(b, "HalfStorage", "1", 4, 0, 1, (const int[]){4}, (const int[]){1});
    b_u8(b, 0x88);
    pk_g(b, "collections", "OrderedDict");
    b_u8(b, ')');
    b_u8(b, 'R');
    b_u8(b, 't');
    b_u8(b, 'R');
    pk_s(b, "t.long");
    pk_g(b, "torch._tensor", "_rebuild_from_type_v2");
    b_u8(b, '(');
    pk_g(b, "torch._utils", "_rebuild_tensor_v2");
    pk_g(b, "torch", "Tensor");
    b_u8(b, '(');
    b_u8(b, '(');
    pk_s(b, "storage");
    pk_g(b, "torch", "LongStorage");
    pk_s(b, "2");
    pk_s(b, "cpu");
    b_put(b, "\x8a\x01\x03", 3); /* LONG1 3 */
    b_u8(b, 't');
    b_u8(b, 'Q');
    b_u8(b, 'K');
    b_u8(b, 0);
    b_u8(b, 'K');
    b_u8(b, 3);
    b_u8(b, 0x85);
    b_u8(b, 'K');
    b_u8(b, 1);
    b_u8(b, 0x85);
    b_u8(b, 0x89);
    pk_g(b, "collections", "OrderedDict");
    b_u8(b, ')');
    b_u8(b, 'R');
    b_u8(b, 't');
    b_u8(b, '}');
    b_u8(b, 't');
    b_u8(b, 'R');
    pk_s(b, "not.a.tensor");
    pk_i(b, 42);
    b_u8(b, 'u');
    /* BUILD with the state-dict _metadata attribute, as nn.Module.state_dict() leaves it. */
    b_u8(b, '}');
    pk_s(b, "_metadata");
    b_u8(b, '}');
    b_u8(b, 's');
    b_u8(b, 'b');
    b_u8(b, '.');
}

/* Loads a buffer as torch zip (kind 't') or safetensors ('s'); on success reads every
 * tensor (so sanitizers see any out-of-bounds view). Returns the code; *out keeps the set. */
static int load_mem(int kind, const uint8_t *p, size_t n, src_set **out, vlm_error *e)
{
    src_set *s = src_set_new();
    const char *name = s ? src_set_add_file(s, kind == 't' ? "mem.bin" : "mem.safetensors", NULL, 0) : NULL;
    if (!name) {
        src_close(s);
        return VLM_ENOMEM;
    }
    int rc = kind == 't' ? src_load_torchzip(s, p, n, name, e) : src_load_safetensors(s, p, n, name, e);
    if (rc == 0)
        rc = src_set_finish(s, e);
    for (int i = 0; rc == 0 && i < src_count(s); i++) {
        const src_tensor *t = src_at(s, i);
        size_t numel = src_numel(t);
        float *v = malloc((numel ? numel : 1) * sizeof *v);
        if (v)
            rc = src_read_f32(t, v, e);
        free(v);
    }
    if (out && rc == 0)
        *out = s;
    else
        src_close(s);
    return rc;
}

static void expect_values(const src_set *s, const char *name, int ndim, const int64_t *shape, const float *want,
                          size_t n)
{
    const src_tensor *t = src_find(s, name);
    TH_CHECK(t != NULL, "%s missing", name);
    if (!t)
        return;
    TH_CHECK(t->ndim == ndim, "%s: ndim %d, expected %d", name, t->ndim, ndim);
    for (int i = 0; i < ndim && i < t->ndim; i++)
        TH_CHECK(t->shape[i] == shape[i], "%s: shape[%d] = %lld", name, i, (long long)t->shape[i]);
    TH_CHECK(src_numel(t) == n, "%s: numel %zu, expected %zu", name, src_numel(t), n);
    if (src_numel(t) != n)
        return;
    float *v = read_all(t);
    for (size_t i = 0; v && i < n; i++)
        TH_CHECK(v[i] == want[i], "%s[%zu] = %g, expected %g", name, i, v[i], want[i]);
    free(v);
}

static void check_sample(const src_set *s, const char *label)
{
    TH_CHECK(src_count(s) == 7, "%s: %d tensors, expected 7", label, src_count(s));
    expect_values(s, "t.transposed", 2, (const int64_t[]){2, 3}, (const float[]){3, 5, 7, 4, 6, 8}, 6);
    const float full[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    expect_values(s, "t.full", 2, (const int64_t[]){3, 4}, full, 12);
    expect_values(s, "t.tied", 2, (const int64_t[]){3, 4}, full, 12);
    expect_values(s, "t.scalar", 0, NULL, (const float[]){11}, 1);
    expect_values(s, "t.empty", 2, (const int64_t[]){0, 5}, NULL, 0);
    expect_values(s, "t.half", 1, (const int64_t[]){4}, (const float[]){1.5f, -2.0f, 0.25f, 65504.0f}, 4);
    expect_values(s, "t.long", 1, (const int64_t[]){3}, (const float[]){-5, 7, 1099511627776.0f}, 3);
    const src_tensor *a = src_find(s, "t.full"), *b = src_find(s, "t.tied"), *c = src_find(s, "t.transposed");
    TH_CHECK(a && b && c && a->data == b->data && c->data == a->data + 12, "%s: shared storage views", label);
    TH_CHECK(c && c->dtype == SRC_F32 && c->stride[0] == 1 && c->stride[1] == 2, "%s: transposed strides", label);
    TH_CHECK(src_find(s, "not.a.tensor") == NULL, "%s: non-tensor value should be skipped", label);
}

static void test_torch_synthetic(void)
{
    torch_file tf;
    torch_sample(&tf);
    for (int zip64 = 0; zip64 < 2; zip64++) {
        tf.zip64 = zip64;
        bytes z = {0};
        torch_build(&tf, &z);
        src_set *s = NULL;
        vlm_error e = {0};
        int rc = load_mem('t', z.p, z.n, &s, &e);
        TH_CHECK(rc == 0, "synthetic torch zip (zip64 %d): %s", zip64, e.msg);
        if (s)
            check_sample(s, zip64 ? "zip64" : "zip");
        src_close(s);
        /* Every truncation fails cleanly (the end record is at the end). */
        int accepted = 0;
        for (size_t n = 0; n < z.n; n++)
            accepted += load_mem('t', z.p, n, NULL, &e) == 0;
        TH_CHECK(accepted == 0, "zip64 %d: %d truncations were accepted", zip64, accepted);
        /* Every single-byte corruption either fails or yields in-bounds tensors (ASan checks reads). */
        uint8_t *copy = malloc(z.n);
        for (size_t i = 0; copy && i < z.n; i++) {
            memcpy(copy, z.p, z.n);
            copy[i] ^= 0xff;
            load_mem('t', copy, z.n, NULL, &e);
            copy[i] ^= 0x80;
            load_mem('t', copy, z.n, NULL, &e);
        }
        free(copy);
        free(z.p);
    }
    torch_free(&tf);
}

/* Appends a string literal's bytes (embedded NULs included). */
#define B(b, lit) b_put((b), (lit), sizeof(lit) - 1)

static void pk_su(bytes *b, const char *s)
{
    b_u8(b, 0x8c);
    b_u8(b, (unsigned)strlen(s));
    b_str(b, s);
}

/* Protocol 4 as newer torch versions can write it: FRAME, MEMOIZE, STACK_GLOBAL,
 * SHORT_BINUNICODE, TUPLE3; plus a list value with BINFLOAT, NONE, BININT2, LONG1 and APPENDS
 * (skipped: not a tensor). "w" is a 3-d view with strides (1, 4, 2); "y" is the same object. */
static void test_torch_protocol4(void)
{
    torch_file tf;
    memset(&tf, 0, sizeof tf);
    tf.nstorage = 1;
    tf.keys[0] = "0";
    for (int i = 0; i < 16; i++)
        b_u32(&tf.storage[0], f32_bits((float)i));
    bytes body = {0};
    b_put(&body, "}\x94(", 3);
    pk_su(&body, "w");
    b_u8(&body, 0x94);
    pk_su(&body, "torch._utils");
    pk_su(&body, "_rebuild_tensor_v2");
    b_put(&body, "\x93\x94((", 4);
    pk_su(&body, "storage");
    pk_su(&body, "torch");
    pk_su(&body, "FloatStorage");
    b_u8(&body, 0x93);
    pk_su(&body, "0");
    pk_su(&body, "cpu");
    b_put(&body, "K\x10tQK\x00", 6);
    B(&body, "K\x02K\x02K\x02\x87K\x01K\x04K\x02\x87\x89Nt\x94R\x94"); /* memo 4 = tensor */
    pk_su(&body, "x");
    B(&body, "]\x94(G\x3f\xf8\0\0\0\0\0\0N\x88M\x00\x01\x8a\x02\xff\x7f" "e");
    pk_su(&body, "y");
    b_put(&body, "h\x04u\x94.", 5);
    b_put(&tf.pkl, "\x80\x04\x95", 3);
    b_u64(&tf.pkl, body.n);
    b_put(&tf.pkl, body.p, body.n);
    free(body.p);
    bytes z = {0};
    torch_build(&tf, &z);
    src_set *s = NULL;
    vlm_error e = {0};
    int rc = load_mem('t', z.p, z.n, &s, &e);
    TH_CHECK(rc == 0, "protocol 4 pickle: %s", e.msg);
    if (s) {
        TH_CHECK(src_count(s) == 2, "protocol 4: %d tensors, expected 2", src_count(s));
        const float want[] = {0, 2, 4, 6, 1, 3, 5, 7};
        expect_values(s, "w", 3, (const int64_t[]){2, 2, 2}, want, 8);
        expect_values(s, "y", 3, (const int64_t[]){2, 2, 2}, want, 8);
        src_close(s);
    }
    free(z.p);
    torch_free(&tf);
}

/* Builds the sample with one change to the pickle or archive and expects code and a message
 * containing needle. */
typedef void (*torch_mutator)(torch_file *tf);

static void expect_torch_error(torch_mutator mutate, int code, const char *needle, const char *label)
{
    torch_file tf;
    torch_sample(&tf);
    mutate(&tf);
    bytes z = {0};
    torch_build(&tf, &z);
    vlm_error e = {0};
    int rc = load_mem('t', z.p, z.n, NULL, &e);
    TH_CHECK(rc == code, "%s: code %d, expected %d (%s)", label, rc, code, e.msg);
    TH_CHECK(strstr(e.msg, needle) != NULL && strstr(e.msg, "mem.bin") != NULL,
             "%s: message '%s' lacks '%s' or the file name", label, e.msg, needle);
    free(z.p);
    torch_free(&tf);
}

static void reset_pickle(torch_file *tf) { tf->pkl.n = 0; }
static void end_pickle(bytes *b) { b_put(b, "u.", 2); }
static void begin_pickle(bytes *b) { b_put(b, "\x80\x02}(", 4); }

static void mut_global(torch_file *tf)
{
    reset_pickle(tf);
    begin_pickle(&tf->pkl);
    pk_s(&tf->pkl, "x");
    pk_g(&tf->pkl, "os", "system");
    pk_s(&tf->pkl, "echo hi");
    b_u8(&tf->pkl, 0x85);
    b_u8(&tf->pkl, 'R');
    end_pickle(&tf->pkl);
}
static void mut_compressed(torch_file *tf) { tf->method = 8; }
static void mut_bigendian(torch_file *tf) { tf->byteorder = "big"; }
static void mut_short_storage(torch_file *tf) { tf->storage[0].n = 40; /* 10 of 12 floats */ }
static void one_tensor(torch_file *tf, int numel, int off, int ndim, const int *size, const int *stride)
{
    reset_pickle(tf);
    begin_pickle(&tf->pkl);
    pk_s(&tf->pkl, "model.norm.weight");
    pk_tensor(&tf->pkl, "FloatStorage", "0", numel, off, ndim, size, stride);
    end_pickle(&tf->pkl);
}
static void mut_extent(torch_file *tf) { one_tensor(tf, 12, 3, 2, (const int[]){3, 4}, (const int[]){4, 1}); }
static void mut_negative_stride(torch_file *tf) { one_tensor(tf, 12, 11, 1, (const int[]){4}, (const int[]){-1}); }
static void mut_missing_storage(torch_file *tf) { tf->keys[0] = "zero"; }
static void mut_opcode(torch_file *tf)
{
    reset_pickle(tf);
    begin_pickle(&tf->pkl);
    b_put(&tf->pkl, "I1\n", 3); /* text INT: not written by torch.save */
    end_pickle(&tf->pkl);
}
static void mut_no_stop(torch_file *tf) { tf->pkl.n--; }
static void mut_not_dict(torch_file *tf)
{
    reset_pickle(tf);
    b_put(&tf->pkl, "\x80\x02]q\x00.", 6);
}
static void mut_dup_name(torch_file *tf)
{
    reset_pickle(tf);
    begin_pickle(&tf->pkl);
    for (int i = 0; i < 2; i++) {
        pk_s(&tf->pkl, "w");
        pk_tensor(&tf->pkl, "FloatStorage", "0", 12, 0, 1, (const int[]){12}, (const int[]){1});
    }
    end_pickle(&tf->pkl);
}
static void mut_deep_marks(torch_file *tf)
{
    reset_pickle(tf);
    begin_pickle(&tf->pkl);
    for (int i = 0; i < 100; i++)
        b_u8(&tf->pkl, '(');
    end_pickle(&tf->pkl);
}
static void mut_memo_get(torch_file *tf)
{
    reset_pickle(tf);
    begin_pickle(&tf->pkl);
    b_put(&tf->pkl, "j\xff\xff\xff\x7f", 5);
    end_pickle(&tf->pkl);
}

static void test_torch_errors(void)
{
    expect_torch_error(mut_global, VLM_EUNSUPPORTED, "pickle global 'os.system' is not allowed", "global");
    expect_torch_error(mut_compressed, VLM_EUNSUPPORTED, "compressed", "compressed member");
    expect_torch_error(mut_bigendian, VLM_EUNSUPPORTED, "byteorder", "big endian");
    expect_torch_error(mut_short_storage, VLM_EFORMAT, "storage 'data/0' has 40 bytes", "short storage");
    expect_torch_error(mut_extent, VLM_EFORMAT, "tensor 'model.norm.weight': storage 'data/0': reaches element 14",
                       "extent");
    expect_torch_error(mut_negative_stride, VLM_EUNSUPPORTED, "negative stride", "negative stride");
    expect_torch_error(mut_missing_storage, VLM_EFORMAT, "no member 'archive/data/0'", "missing storage");
    expect_torch_error(mut_opcode, VLM_EUNSUPPORTED, "opcode 0x49", "unknown opcode");
    expect_torch_error(mut_no_stop, VLM_EFORMAT, "without STOP", "no STOP");
    expect_torch_error(mut_not_dict, VLM_EUNSUPPORTED, "not a state dict", "list at top");
    expect_torch_error(mut_dup_name, VLM_EFORMAT, "present twice", "duplicate name");
    expect_torch_error(mut_deep_marks, VLM_ERANGE, "MARKs nested", "deep marks");
    expect_torch_error(mut_memo_get, VLM_EFORMAT, "memo get", "memo get");
}

/* A safetensors file from a header text and a data area. */
static void st_build(bytes *out, const char *header, const uint8_t *data, size_t n)
{
    out->n = 0;
    b_u64(out, strlen(header));
    b_str(out, header);
    b_put(out, data, n);
}

static void expect_st(const char *header, size_t data_bytes, int code, const char *needle)
{
    uint8_t data[64] = {0};
    bytes f = {0};
    st_build(&f, header, data, data_bytes);
    vlm_error e = {0};
    int rc = load_mem('s', f.p, f.n, NULL, &e);
    TH_CHECK(rc == code, "header %s: code %d, expected %d (%s)", header, rc, code, e.msg);
    TH_CHECK(rc == 0 || (strstr(e.msg, needle) != NULL && strstr(e.msg, "mem.safetensors") != NULL),
             "header %s: message '%s' lacks '%s' or the file name", header, e.msg, needle);
    free(f.p);
}

static void test_safetensors_synthetic(void)
{
    /* a: bf16 [2] = 1.0, -2.5; b: i32 [] = -7; c: u8 [0]; d: f64 [1] = 0.1 */
    bytes data = {0};
    b_u16(&data, 0x3f80);
    b_u16(&data, 0xc020);
    b_u32(&data, (uint32_t)-7);
    double tenth = 0.1;
    b_put(&data, &tenth, 8);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[4,8]},"
                      "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,8]},"
                      "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1],\"data_offsets\":[8,16]}}  ";
    bytes f = {0};
    st_build(&f, hdr, data.p, data.n);
    src_set *s = NULL;
    vlm_error e = {0};
    int rc = load_mem('s', f.p, f.n, &s, &e);
    TH_CHECK(rc == 0, "synthetic safetensors: %s", e.msg);
    if (s) {
        TH_CHECK(src_count(s) == 4, "%d tensors", src_count(s));
        expect_values(s, "a", 1, (const int64_t[]){2}, (const float[]){1.0f, -2.5f}, 2);
        expect_values(s, "b", 0, NULL, (const float[]){-7}, 1);
        expect_values(s, "c", 1, (const int64_t[]){0}, NULL, 0);
        expect_values(s, "d", 2, (const int64_t[]){1, 1}, (const float[]){0.1f}, 1);
        src_close(s);
    }
    int accepted = 0;
    for (size_t n = 0; n < f.n; n++)
        accepted += load_mem('s', f.p, n, NULL, &e) == 0;
    /* Cutting only trailing header padding or nothing of the data area is impossible here:
     * the header length is fixed, so every shorter file is refused. */
    TH_CHECK(accepted == 0, "%d truncations of a safetensors file were accepted", accepted);
    uint8_t *copy = malloc(f.n);
    for (size_t i = 0; copy && i < f.n; i++) {
        memcpy(copy, f.p, f.n);
        copy[i] ^= 0xff;
        load_mem('s', copy, f.n, NULL, &e);
        copy[i] ^= 0x8f;
        load_mem('s', copy, f.n, NULL, &e);
    }
    free(copy);
    free(f.p);
    free(data.p);

    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8, VLM_EFORMAT,
              "outside the 8-byte data area");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, VLM_EFORMAT, "hold 4 bytes");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, VLM_EFORMAT, "data_offsets [8, 0]");
    expect_st("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8, VLM_EUNSUPPORTED,
              "dtype 'F8_E4M3'");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, VLM_EFORMAT, "overlap");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, VLM_EFORMAT, "shape[0]");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, VLM_EFORMAT, "shape[0]");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8,
              VLM_ERANGE, "overflow");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, VLM_EFORMAT, "data_offsets");
    expect_st("{\"a\":[1,2]}", 8, VLM_EFORMAT, "not an object");
    expect_st("[1,2]", 8, VLM_EFORMAT, "JSON object");
    expect_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, VLM_EFORMAT, "mem.safetensors");
    bytes huge = {0};
    b_u64(&huge, (uint64_t)1 << 62);
    b_str(&huge, "{}");
    rc = load_mem('s', huge.p, huge.n, NULL, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "header length"), "huge header length: %d %s", rc, e.msg);
    free(huge.p);
}

/* ------------------------------------------------------------------ files on disk */

typedef struct tmpdir {
    char path[256];
    char files[16][64]; /* (nfiles) names created, for cleanup */
    int nfiles;
} tmpdir;

static void td_write(tmpdir *td, const char *name, const void *data, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", td->path, name);
    FILE *f = fopen(p, "wb");
    TH_CHECK(f != NULL, "cannot create %s", p);
    if (!f)
        return;
    fwrite(data, 1, n, f);
    fclose(f);
    for (int i = 0; i < td->nfiles; i++)
        if (strcmp(td->files[i], name) == 0)
            return;
    if (td->nfiles < 16)
        snprintf(td->files[td->nfiles++], 64, "%s", name);
}

static void td_remove(tmpdir *td, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", td->path, name);
    unlink(p);
}

static void td_cleanup(tmpdir *td)
{
    for (int i = 0; i < td->nfiles; i++)
        td_remove(td, td->files[i]);
    rmdir(td->path);
}

static const char *td_file(tmpdir *td, const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", td->path, name);
    return p;
}

static int open_code(const char *path, vlm_error *e)
{
    src_set *s = NULL;
    int rc = src_open(path, &s, e);
    src_close(s);
    return rc;
}

static void write_shard(tmpdir *td, const char *file, const char *n1, const char *n2, float v)
{
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", n1, n2);
    bytes data = {0}, f = {0};
    for (int i = 0; i < 3; i++)
        b_u32(&data, f32_bits(v + (float)i));
    st_build(&f, hdr, data.p, data.n);
    td_write(td, file, f.p, f.n);
    free(data.p);
    free(f.p);
}

static void test_sharded(void)
{
    tmpdir td = {.nfiles = 0};
    const char *base = getenv("TMPDIR");
    snprintf(td.path, sizeof td.path, "%s/vlm_source_XXXXXX", base && *base ? base : "/tmp");
    TH_CHECK(mkdtemp(td.path) != NULL, "mkdtemp %s", td.path);
    write_shard(&td, "model-00001-of-00002.safetensors", "x.a", "x.b", 10);
    write_shard(&td, "model-00002-of-00002.safetensors", "y.a", "y.b", 20);
    const char *index = "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
                        "\"x.a\":\"model-00001-of-00002.safetensors\",\"x.b\":\"model-00001-of-00002.safetensors\","
                        "\"y.a\":\"model-00002-of-00002.safetensors\",\"y.b\":\"model-00002-of-00002.safetensors\"}}";
    td_write(&td, "model.safetensors.index.json", index, strlen(index));
    src_set *s = open_ok(td.path);
    if (s) {
        TH_CHECK(src_count(s) == 4, "sharded: %d tensors", src_count(s));
        expect_values(s, "x.a", 1, (const int64_t[]){2}, (const float[]){10, 11}, 2);
        expect_values(s, "y.b", 1, (const int64_t[]){1}, (const float[]){22}, 1);
        const src_tensor *t = src_find(s, "y.a");
        TH_CHECK(t && strstr(t->file, "model-00002-of-00002.safetensors"), "y.a file %s", t ? t->file : "-");
        src_close(s);
    }
    vlm_error e = {0};
    int rc;
    /* A tensor listed for a shard that lacks it. */
    const char *missing = "{\"weight_map\":{\"x.a\":\"model-00001-of-00002.safetensors\","
                          "\"z\":\"model-00002-of-00002.safetensors\"}}";
    td_write(&td, "model.safetensors.index.json", missing, strlen(missing));
    rc = open_code(td.path, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "'z'") && strstr(e.msg, "index.json"), "missing: %d %s", rc, e.msg);
    /* A tensor listed for the wrong shard. */
    const char *wrong = "{\"weight_map\":{\"x.a\":\"model-00002-of-00002.safetensors\","
                        "\"y.a\":\"model-00001-of-00002.safetensors\"}}";
    td_write(&td, "model.safetensors.index.json", wrong, strlen(wrong));
    rc = open_code(td.path, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "found in"), "wrong shard: %d %s", rc, e.msg);
    /* Shard names that leave the directory. */
    const char *bad_names[] = {"../model.safetensors", "sub/x.safetensors", "..", "", "/etc/passwd"};
    for (int i = 0; i < 5; i++) {
        char idx[256];
        snprintf(idx, sizeof idx, "{\"weight_map\":{\"x.a\":\"%s\"}}", bad_names[i]);
        td_write(&td, "model.safetensors.index.json", idx, strlen(idx));
        rc = open_code(td.path, &e);
        TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "plain file name"), "shard '%s': %d %s", bad_names[i], rc, e.msg);
    }
    /* The same tensor in two shards. */
    write_shard(&td, "model-00002-of-00002.safetensors", "x.a", "y.b", 20);
    td_write(&td, "model.safetensors.index.json", index, strlen(index));
    rc = open_code(td.path, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "'x.a' is present twice"), "duplicate: %d %s", rc, e.msg);
    /* A shard that does not exist. */
    const char *absent = "{\"weight_map\":{\"x.a\":\"model-00009-of-00009.safetensors\"}}";
    td_write(&td, "model.safetensors.index.json", absent, strlen(absent));
    rc = open_code(td.path, &e);
    TH_CHECK(rc == VLM_EIO && strstr(e.msg, "model-00009-of-00009.safetensors"), "absent shard: %d %s", rc, e.msg);
    td_remove(&td, "model.safetensors.index.json");

    /* A sharded torch set: pytorch_model.bin.index.json with the sample as its one shard. */
    torch_file tf;
    torch_sample(&tf);
    bytes z = {0};
    torch_build(&tf, &z);
    td_write(&td, "pytorch_model-00001-of-00001.bin", z.p, z.n);
    const char *tindex = "{\"weight_map\":{\"t.full\":\"pytorch_model-00001-of-00001.bin\","
                         "\"t.transposed\":\"pytorch_model-00001-of-00001.bin\"}}";
    td_write(&td, "pytorch_model.bin.index.json", tindex, strlen(tindex));
    for (int i = 0; i < td.nfiles; i++)
        if (strstr(td.files[i], ".safetensors"))
            td_remove(&td, td.files[i]);
    s = open_ok(td.path);
    if (s)
        check_sample(s, "sharded torch");
    src_close(s);
    /* A single file path works too, and an empty file is refused. */
    s = open_ok(td_file(&td, "pytorch_model-00001-of-00001.bin"));
    src_close(s);
    td_write(&td, "legacy.bin", "\x80\x02\x8a\x0a", 4);
    rc = open_code(td_file(&td, "legacy.bin"), &e);
    TH_CHECK(rc == VLM_EUNSUPPORTED && strstr(e.msg, "legacy"), "legacy torch file: %d %s", rc, e.msg);
    /* A safetensors header of 640 bytes: its length starts with the bytes of a pickle PROTO
     * 2 opcode (80 02), and the file is still safetensors (it was refused as legacy). */
    char hdr640[641];
    int hl = snprintf(hdr640, sizeof hdr640, "{\"p\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
    memset(hdr640 + hl, ' ', sizeof hdr640 - 1 - (size_t)hl);
    hdr640[640] = 0;
    bytes st640 = {0};
    st_build(&st640, hdr640, (const uint8_t *)"\0\0\x80\x3f", 4);
    TH_CHECK(st640.n == 8 + 640 + 4 && st640.p[0] == 0x80 && st640.p[1] == 0x02, "640-byte header layout");
    td_write(&td, "h640.safetensors", st640.p, st640.n);
    s = open_ok(td_file(&td, "h640.safetensors"));
    if (s)
        expect_values(s, "p", 1, (const int64_t[]){1}, (const float[]){1.0f}, 1);
    src_close(s);
    free(st640.p);
    td_write(&td, "empty.safetensors", "", 0);
    rc = open_code(td_file(&td, "empty.safetensors"), &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "empty"), "empty file: %d %s", rc, e.msg);
    td_remove(&td, "pytorch_model.bin.index.json");
    td_remove(&td, "pytorch_model-00001-of-00001.bin");
    rc = open_code(td.path, &e);
    TH_CHECK(rc == VLM_EIO && strstr(e.msg, "no model.safetensors"), "empty directory: %d %s", rc, e.msg);
    free(z.p);
    torch_free(&tf);
    td_cleanup(&td);
}

int main(void)
{
    test_tiny_v1();
    test_clip();
    test_tiny_v2();
    test_stories();
    test_towers_match_clip();
    test_torch_synthetic();
    test_torch_protocol4();
    test_torch_errors();
    test_safetensors_synthetic();
    test_sharded();
    return th_report("test_source");
}
