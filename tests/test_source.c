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

int main(void)
{
    test_tiny_v1();
    test_clip();
    test_tiny_v2();
    test_stories();
    test_towers_match_clip();
    return th_report("test_source");
}
