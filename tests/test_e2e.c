/* test_e2e.c: the MobileVLM fixtures end to end against the independent PyTorch goldens.
 * Each fixture is converted to f32 with weights-tool's converter; with the f32 KV cache every
 * stage (pixels, patch embeddings, each vision layer, selected features, projector, input
 * embeddings, each LLM layer, final norm, last logits) must match within
 * 1e-4 * max(1, max|golden|), and the prompt ids and the 24 greedy ids must be identical, also
 * when the image comes from our own JPEG decoder (which must reproduce PIL's decode of image.jpg
 * exactly). With the f16 KV cache (the default) the same, except that the LLM stages get the
 * bound derived from f16 rounding below. The q8 KV cache needs head_dim % 32 == 0, which the
 * fixtures (16) do not have: it is checked on the fixtures with their heads widened to 32,
 * against the f32 cache of that model, within a bound derived from q8 rounding. q8/q4
 * conversions must stay close (cosine and top-5 agreement of the last logits, bounds below). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "image.h"
#include "json.h"
#include "kernels.h"
#include "model.h"
#include "preprocess.h"
#include "th.h"
#include "vlm.h"

typedef struct probe_state {
    const char *fixture;
    int v2;
    int kv_f16;   /* the LLM stages get kv_f16_bound */
    int n_layers; /* of the LLM */
} probe_state;

/* The LLM stages' bound with the f16 KV cache. Storing a key or value in f16 rounds it once,
 * relative error <= u = 2^-11. One attention output o = sum_j p_j v_j then moves by at most
 * u max|v| through the values (a convex combination) plus 2 max|ds| max|v| through the
 * softmax weights, where a score moves by |ds| <= u sigma, sigma = scale * sum_i |q_i k_i|
 * (the size of a score before cancellation). For scores of a few units (sigma <= 3.5) that is
 * (1 + 2 sigma) u <= 8u of the values' scale per layer; the residual stream adds each layer's
 * error, and the final norm and the output head carry it along. Hence 8u per layer up to the
 * stage (layers = its index + 1; all of them for the final norm and the logits), relative to
 * the stage's scale: from the f16 format and this first-order model, not from the measured
 * differences (they are printed: at most about 2u on these fixtures). The greedy ids must
 * still equal the goldens exactly. */
static double kv_f16_bound(int layers) { return 8.0 * layers / 2048.0; }

/* The bound of a stage: 1e-4 (the goldens' tolerance), or kv_f16_bound for the LLM stages
 * with the f16 cache (layer: the probe's layer index). */
static double stage_bound(const probe_state *ps, const char *stage, int layer)
{
    if (!ps->kv_f16 || strncmp(stage, "llm_", 4))
        return 1e-4;
    return kv_f16_bound(!strcmp(stage, "llm_layer") ? layer + 1 : ps->n_layers);
}

/* Compares each probed stage with its golden. */
static void check_stage(void *ctx, const char *stage, int layer, const float *data, int rows, int cols)
{
    const probe_state *ps = ctx;
    const char *file = NULL;
    size_t offset = 0;
    size_t n = (size_t)rows * cols;
    char label[64];
    snprintf(label, sizeof label, "%s[%d]", stage, layer);
    if (!strcmp(stage, "vision_hidden")) {
        file = "vision_hidden_states";
        offset = (size_t)layer * n;
    } else if (!strcmp(stage, "llm_layer")) {
        file = "llm_layer_outputs";
        offset = (size_t)layer * n;
    } else {
        file = stage;
    }
    double rel = stage_bound(ps, stage, layer);
    npy_array g;
    if (golden_load(ps->fixture, file, &g)) {
        TH_CHECK(0, "%s: golden %s missing", ps->fixture, file);
        return;
    }
    TH_CHECK(offset + n <= g.numel, "%s: %s has %zu values, golden %zu", ps->fixture, label, offset + n, g.numel);
    if (offset + n <= g.numel)
        TH_CHECK(golden_close_rel(label, data, (const float *)g.data + offset, n, rel), "%s: %s differs", ps->fixture,
                 label);
    npy_free(&g);
}

/* The question of the fixture's goldens.json (into buf). */
static const char *question_of(const char *fixture, char *buf, size_t cap)
{
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s/goldens/goldens.json", fixture);
    vlm_error e;
    json_doc *d = json_parse_file(TH_DATA(rel), 1 << 20, &e);
    const char *q = d ? json_get_str(json_root(d), "question") : NULL;
    snprintf(buf, cap, "%s", q ? q : "");
    TH_CHECK(q != NULL, "%s: no question in goldens.json", fixture);
    json_free(d);
    return buf;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* The input embeddings emb (np - 1 + n_image_tokens, dim) of the prompt ids pids (np, the image
 * slot -200 among them), with the image (pixels, preprocessed) encoded by m. */
static int prompt_embeds(model *m, const float *pixels, const int *pids, int np, float *emb, vlm_error *e)
{
    int D = (int)m->cfg.dim;
    int row = 0, rc = 0;
    for (int i = 0; i < np && !rc; i++) {
        if (pids[i] == -200) {
            rc = model_encode_image(m, pixels, emb + (size_t)row * D, e);
            row += m->n_image_tokens;
        } else {
            rc = model_embed(m, &pids[i], 1, emb + (size_t)row * D, e);
            row++;
        }
    }
    return rc;
}

/* The stages of one fixture converted to f32, with the KV cache in kv_type (VLM_KV_*). */
static void check_fixture(const char *fixture, int threads, int kv_type)
{
    int kv_f32 = kv_type == VLM_KV_F32;
    fprintf(stderr, "%s (f32, %d threads, KV cache %s):\n", fixture, threads, kv_f32 ? "f32" : "f16");
    char path[1024];
    if (golden_convert(fixture, WT_F32, WT_F32, path, sizeof path)) {
        TH_CHECK(0, "%s: conversion failed", fixture);
        return;
    }
    model m;
    vlm_error e;
    int rc = model_open(path, threads, NULL, &m, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    if (rc) {
        remove(path);
        return;
    }
    model_set_kv_type(&m, kv_f32 ? WT_F32 : WT_F16, &e);
    probe_state ps = {fixture, m.cfg.arch == ARCH_MOBILEVLM_V2, !kv_f32, (int)m.cfg.n_layers};
    npy_array rgb, pix, ids, embeds, logits_g, greedy;
    if (golden_load(fixture, "image_rgb", &rgb) || golden_load(fixture, "pixel_values", &pix) ||
        golden_load(fixture, "prompt_input_ids", &ids) || golden_load(fixture, "input_embeds", &embeds) ||
        golden_load(fixture, "last_logits", &logits_g) || golden_load(fixture, "greedy_ids", &greedy)) {
        TH_CHECK(0, "%s: goldens missing", fixture);
        model_close(&m);
        remove(path);
        return;
    }
    int S = (int)m.cfg.v_image_size;
    int D = (int)m.cfg.dim;
    int V = (int)m.cfg.vocab_size;
    float *pixels = malloc(sizeof(float) * 3 * S * S);
    uint8_t pad[3] = {122, 116, 104};
    rc = clip_preprocess(rgb.data, (int)rgb.shape[1], (int)rgb.shape[0], S, pad, m.cfg.image_mean, m.cfg.image_std,
                         pixels, NULL, &e);
    TH_CHECK(rc == 0, "%s: preprocess: %s", fixture, e.msg);
    TH_CHECK(golden_close("pixel_values", pixels, pix.data, pix.numel), "%s: pixel values differ", fixture);

    /* Prompt ids through the public API, the image as decoded by PIL. */
    vlm_model *vm;
    rc = vlm_open(path, threads, &vm, &e);
    if (!rc)
        rc = vlm_set_kv_cache(vm, kv_type, &e);
    TH_CHECK(rc == 0, "%s: vlm_open: %s", fixture, e.msg);
    char question[512];
    vlm_request rq = {.prompt = question_of(fixture, question, sizeof question), .image_rgb = rgb.data,
                      .image_width = (int)rgb.shape[1], .image_height = (int)rgb.shape[0],
                      .max_new_tokens = (int)greedy.numel, .ignore_eos = 1};
    int pids[512];
    int np = 0;
    rc = vlm_tokenize_prompt(vm, &rq, pids, 512, &np, &e);
    TH_CHECK(rc == 0 && (size_t)np == ids.numel, "%s: %d prompt ids, golden %zu (%s)", fixture, np, ids.numel,
             rc ? e.msg : "");
    for (int i = 0; i < np && (size_t)i < ids.numel; i++)
        TH_CHECK(pids[i] == ((const int64_t *)ids.data)[i], "%s: prompt id %d is %d, golden %lld", fixture, i, pids[i],
                 (long long)((const int64_t *)ids.data)[i]);

    /* Stage by stage through model.c with probes. */
    m.probe = check_stage;
    m.probe_ctx = &ps;
    int T = np - 1 + m.n_image_tokens;
    float *emb = calloc((size_t)T * D, sizeof(float));
    rc = prompt_embeds(&m, pixels, pids, np, emb, &e);
    TH_CHECK(rc == 0, "%s: embeddings: %s", fixture, e.msg);
    TH_CHECK((size_t)T * D == embeds.numel, "%s: %d x %d input embeds, golden %zu", fixture, T, D, embeds.numel);
    if ((size_t)T * D == embeds.numel)
        TH_CHECK(golden_close("input_embeds", emb, embeds.data, embeds.numel), "%s: input embeds differ", fixture);
    float *logits = malloc(sizeof(float) * V);
    rc = model_forward(&m, emb, T, logits, &e);
    TH_CHECK(rc == 0, "%s: forward: %s", fixture, e.msg);
    TH_CHECK(golden_close_rel("last_logits", logits, logits_g.data, (size_t)V, stage_bound(&ps, "llm_logits", 0)),
             "%s: last logits differ", fixture);

    /* 24 greedy steps with the KV cache, model.c level. */
    m.probe = NULL;
    for (size_t s = 0; s < greedy.numel; s++) {
        int id = argmax(logits, V);
        int want = (int)((const int64_t *)greedy.data)[s];
        TH_CHECK(id == want, "%s: greedy step %zu gives %d, golden %d", fixture, s, id, want);
        model_embed(&m, &id, 1, emb, &e);
        model_forward(&m, emb, 1, logits, &e);
    }

    /* The same through vlm_generate: identical ids. */
    vlm_result res;
    rc = vlm_generate(vm, &rq, &res, &e);
    TH_CHECK(rc == 0 && (size_t)res.n_ids == greedy.numel, "%s: vlm_generate gave %d ids (%s)", fixture, res.n_ids,
             rc ? e.msg : "");
    for (int i = 0; i < res.n_ids && (size_t)i < greedy.numel; i++)
        TH_CHECK(res.ids[i] == (int)((const int64_t *)greedy.data)[i], "%s: vlm_generate id %d differs", fixture, i);
    /* From the JPEG itself: our decoder must give PIL's pixels exactly, hence the same answer. */
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s/goldens/image.jpg", fixture);
    vlm_image jpg;
    rc = image_decode_file(TH_DATA(rel), IMAGE_EXIF_IGNORE, NULL, &jpg, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    if (!rc) {
        TH_CHECK(jpg.width == (int)rgb.shape[1] && jpg.height == (int)rgb.shape[0] &&
                     !memcmp(jpg.rgb, rgb.data, (size_t)jpg.width * jpg.height * 3),
                 "%s: image.jpg decodes differently from PIL", fixture);
        vlm_request rj = rq;
        rj.image_rgb = jpg.rgb;
        rc = vlm_generate(vm, &rj, &res, &e);
        TH_CHECK(rc == 0 && (size_t)res.n_ids == greedy.numel, "%s: from image.jpg: %s", fixture, rc ? e.msg : "");
        for (int i = 0; i < res.n_ids && (size_t)i < greedy.numel; i++)
            TH_CHECK(res.ids[i] == (int)((const int64_t *)greedy.data)[i], "%s: from image.jpg, id %d differs", fixture, i);
        image_free(&jpg);
    }
    vlm_close(vm);
    free(emb);
    free(logits);
    free(pixels);
    npy_free(&rgb);
    npy_free(&pix);
    npy_free(&ids);
    npy_free(&embeds);
    npy_free(&logits_g);
    npy_free(&greedy);
    model_close(&m);
    remove(path);
}

/* The LLM stages' bound with the q8 KV cache, relative to the same model with the f32 cache
 * (the tiny fixtures' goldens cannot serve: q8 rows need head_dim % 32 == 0, so the test widens
 * their heads to 32, a model PyTorch never ran). A stored key or value x of a block whose
 * largest |value| is M becomes d q with d = f16(M / 127) and q = round(x / (M / 127)): off by
 * at most M / 254 from the rounding plus 127 |d - M / 127| <= 127 2^-11 M / 127 from the f16
 * scale, so |error| <= u M with u = (1/2 + 127/2048) / 127 < 1/225: an absolute error on the
 * scale of the block's values, where f16 gives a relative one (2^-11 of each element). The
 * first-order model of kv_f16_bound carries over with u in place of 2^-11 and max|v| as the
 * scale: an attention output moves by at most u max|v| through the values plus
 * 2 max|ds| max|v| through the softmax weights, a score by |ds| <= u scale sum_i |q_i| M_i
 * (M_i: the block maximum of key element i); for scores of a few units that sum is again at
 * most 3.5, so (1 + 2 * 3.5) u = 8u per layer, added up along the residual stream. Hence 8u
 * per layer up to the stage, from the q8 format and this model, not from the measured
 * differences (printed). */
static double kv_q8_bound(int layers) { return 8.0 * layers / 225.0; }

/* The f32 cache's LLM stages (record), then the q8 cache's compared with them. */
typedef struct q8_probe {
    int record;
    int n_layers;
    float **stage; /* (n_layers + 1): llm_layer 0..n_layers-1, llm_final_norm; each (rows, cols) */
    size_t n;      /* rows * cols of every stage */
} q8_probe;

static void q8_stage(void *ctx, const char *stage, int layer, const float *data, int rows, int cols)
{
    q8_probe *p = ctx;
    int i = !strcmp(stage, "llm_layer") ? layer : !strcmp(stage, "llm_final_norm") ? p->n_layers : -1;
    size_t n = (size_t)rows * cols;
    if (i < 0 || i > p->n_layers)
        return;
    if (p->record) {
        p->stage[i] = malloc(n * sizeof(float));
        memcpy(p->stage[i], data, n * sizeof(float));
        p->n = n;
        return;
    }
    char label[64];
    snprintf(label, sizeof label, "%s[%d]", stage, layer);
    TH_CHECK(p->stage[i] && n == p->n &&
                 golden_close_rel(label, data, p->stage[i], n, kv_q8_bound(i < p->n_layers ? i + 1 : p->n_layers)),
             "q8 cache: %s differs", label);
}

/* The fixture's prompt and its greedy steps with the q8 KV cache against the f32 cache, on the
 * fixture with its heads widened to 32 (golden_widen_heads): every LLM stage of the prompt and
 * the logits of each step within kv_q8_bound, the q8 run fed the f32 run's greedy ids so that
 * both have the same history. The greedy ids themselves are only reported: the bound (about
 * 0.07 of the logits' scale) is larger than the gap between the top two logits of these
 * random-weight models at most steps, so a q8 cache may legitimately pick another id. Then
 * vlm_generate with the q8 cache must give the model-level q8 run's prompt logits bit for bit
 * and its ids as long as their histories agree (the same arithmetic). */
static void check_q8_cache(const char *fixture)
{
    fprintf(stderr, "%s, heads widened to 32 (f32), KV cache q8 against f32:\n", fixture);
    char path[1024];
    if (golden_convert(fixture, WT_F32, WT_F32, path, sizeof path) || golden_widen_heads(path, path)) {
        TH_CHECK(0, "%s: conversion failed", fixture);
        return;
    }
    model m;
    vlm_model *vm = NULL;
    vlm_error e;
    npy_array rgb, greedy;
    int rc = model_open(path, 2, NULL, &m, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    if (rc) {
        remove(path);
        return;
    }
    rc = vlm_open(path, 2, &vm, &e);
    if (!rc)
        rc = vlm_set_kv_cache(vm, VLM_KV_Q8, &e);
    TH_CHECK(rc == 0 && vlm_get_info(vm)->kv_cache == VLM_KV_Q8, "%s: %s", fixture, e.msg);
    if (rc || golden_load(fixture, "image_rgb", &rgb) || golden_load(fixture, "greedy_ids", &greedy)) {
        vlm_close(vm);
        model_close(&m);
        remove(path);
        return;
    }
    int S = (int)m.cfg.v_image_size, D = (int)m.cfg.dim, V = (int)m.cfg.vocab_size, L = (int)m.cfg.n_layers;
    int N = (int)greedy.numel;
    float *pixels = malloc(sizeof(float) * 3 * S * S);
    uint8_t pad[3] = {122, 116, 104};
    rc = clip_preprocess(rgb.data, (int)rgb.shape[1], (int)rgb.shape[0], S, pad, m.cfg.image_mean, m.cfg.image_std,
                         pixels, NULL, &e);
    char question[512];
    vlm_request rq = {.prompt = question_of(fixture, question, sizeof question), .image_rgb = rgb.data,
                      .image_width = (int)rgb.shape[1], .image_height = (int)rgb.shape[0], .max_new_tokens = N,
                      .ignore_eos = 1};
    int pids[512], np = 0;
    if (!rc)
        rc = vlm_tokenize_prompt(vm, &rq, pids, 512, &np, &e);
    int T = np - 1 + m.n_image_tokens;
    float *emb = calloc((size_t)T * D, sizeof(float));
    if (!rc)
        rc = prompt_embeds(&m, pixels, pids, np, emb, &e);
    TH_CHECK(rc == 0, "%s: prompt: %s", fixture, e.msg);
    float *ref = malloc(sizeof(float) * V * (size_t)N); /* (N, V): the f32 cache's logits per step */
    float *first = malloc(sizeof(float) * V);          /* the q8 cache's prompt logits */
    float *logits = malloc(sizeof(float) * V);
    float *step = malloc(sizeof(float) * D);           /* a generated token's embedding */
    int *ids = malloc(sizeof(int) * (size_t)N);        /* the f32 cache's greedy ids */
    int *ids8 = malloc(sizeof(int) * (size_t)N);       /* the q8 cache's, after the f32 history */
    q8_probe pr = {.n_layers = L, .stage = calloc((size_t)L + 1, sizeof(float *))};
    m.probe_ctx = &pr;
    int agree = 0;
    double min_margin = INFINITY, worst = 0; /* worst: max |logit difference| / the step's scale */
    for (int q8 = 0; q8 < 2 && !rc; q8++) {
        rc = model_set_kv_type(&m, q8 ? WT_Q8 : WT_F32, &e);
        pr.record = !q8;
        m.probe = q8_stage;
        if (!rc)
            rc = model_forward(&m, emb, T, q8 ? first : ref, &e);
        m.probe = NULL;
        for (int s = 0; s < N && !rc; s++) {
            const float *r = ref + (size_t)s * V;
            const float *x = q8 ? (s ? logits : first) : r;
            if (!q8) {
                ids[s] = argmax(r, V);
            } else {
                ids8[s] = argmax(x, V);
                double md = 0, scale = 1;
                float second = -INFINITY;
                for (int i = 0; i < V; i++) {
                    double d = fabs(x[i] - r[i]);
                    md = d <= md ? md : isnan(d) ? INFINITY : d;
                    scale = fmax(scale, fabs(r[i]));
                    if (i != ids[s] && r[i] > second)
                        second = r[i];
                }
                TH_CHECK(md <= kv_q8_bound(L) * scale, "%s: q8 cache: logits of step %d differ by %g (bound %g)",
                         fixture, s, md, kv_q8_bound(L) * scale);
                worst = fmax(worst, md / scale);
                min_margin = fmin(min_margin, r[ids[s]] - second);
                agree += ids8[s] == ids[s];
            }
            if (s + 1 == N)
                break;
            rc = model_embed(&m, &ids[s], 1, step, &e);
            if (!rc)
                rc = model_forward(&m, step, 1, q8 ? logits : ref + (size_t)(s + 1) * V, &e);
        }
    }
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    fprintf(stderr, "  logits of %d steps: max diff %.4f of their scale (bound %.4f)\n", N, worst, kv_q8_bound(L));
    fprintf(stderr, "  greedy: %d of %d ids with the q8 cache equal the f32 cache's after the same history (not "
            "asserted: the top two f32 logits come within %.4f)\n", agree, N, min_margin);

    /* The API: the same prompt logits, and the same ids while the histories agree. */
    vlm_result res;
    rq.logits_out = logits;
    rc = vlm_generate(vm, &rq, &res, &e);
    TH_CHECK(rc == 0 && res.n_ids == N, "%s: vlm_generate: %s", fixture, rc ? e.msg : "");
    TH_CHECK(rc || !memcmp(logits, first, sizeof(float) * V), "%s: vlm_generate's q8 prompt logits differ", fixture);
    for (int s = 0; s < res.n_ids && s < N; s++) {
        TH_CHECK(res.ids[s] == ids8[s], "%s: vlm_generate's q8 id %d is %d, the model's %d", fixture, s, res.ids[s],
                 ids8[s]);
        if (ids8[s] != ids[s])
            break;
    }
    for (int i = 0; i <= L; i++)
        free(pr.stage[i]);
    free(pr.stage);
    free(ids);
    free(ids8);
    free(step);
    free(logits);
    free(first);
    free(ref);
    free(emb);
    free(pixels);
    npy_free(&rgb);
    npy_free(&greedy);
    vlm_close(vm);
    model_close(&m);
    remove(path);
}

/* Quantized conversions: last-logit cosine and top-5 agreement with the f32 golden. The KV
 * cache is f32, so that the bounds measure the weights' quantization alone (the f16 cache has
 * its own check above). */
static void check_fixture_quant(const char *fixture, int quant, double min_cos, int min_top5)
{
    char path[1024];
    if (golden_convert(fixture, quant, -1, path, sizeof path)) {
        TH_CHECK(0, "%s: %s conversion failed", fixture, quant == WT_Q8 ? "q8" : "q4");
        return;
    }
    vlm_model *vm;
    vlm_error e;
    npy_array rgb, logits_g, top5;
    int rc = vlm_open(path, 2, &vm, &e);
    if (!rc)
        rc = vlm_set_kv_cache(vm, VLM_KV_F32, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    if (rc || golden_load(fixture, "image_rgb", &rgb) || golden_load(fixture, "last_logits", &logits_g) ||
        golden_load(fixture, "prompt_top5_ids", &top5)) {
        remove(path);
        return;
    }
    int V = vlm_get_info(vm)->vocab_size;
    float *logits = malloc(sizeof(float) * V);
    char question[512];
    vlm_request rq = {.prompt = question_of(fixture, question, sizeof question), .image_rgb = rgb.data, .image_width = (int)rgb.shape[1],
                      .image_height = (int)rgb.shape[0], .max_new_tokens = 1, .logits_out = logits};
    vlm_result res;
    rc = vlm_generate(vm, &rq, &res, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    double cs = cosine_similarity(logits, logits_g.data, (size_t)V);
    /* Top-5 of our logits vs the golden top-5 of the last prompt position. */
    const int64_t *g5 = (const int64_t *)top5.data + (top5.numel - 5);
    int ours[5];
    for (int k = 0; k < 5; k++) {
        int b = -1;
        for (int i = 0; i < V; i++) {
            int taken = 0;
            for (int j = 0; j < k; j++)
                taken |= ours[j] == i;
            if (!taken && (b < 0 || logits[i] > logits[b]))
                b = i;
        }
        ours[k] = b;
    }
    int agree = 0;
    for (int k = 0; k < 5; k++)
        for (int j = 0; j < 5; j++)
            agree += ours[k] == (int)g5[j];
    fprintf(stderr, "%s %s: last-logits cosine %.6f, top-5 overlap %d/5, top-1 %s\n", fixture,
            quant == WT_Q8 ? "q8" : "q4", cs, agree, ours[0] == (int)g5[0] ? "same" : "differs");
    TH_CHECK(cs >= min_cos, "%s: cosine %.6f < %.6f", fixture, cs, min_cos);
    TH_CHECK(agree >= min_top5, "%s: top-5 overlap %d < %d", fixture, agree, min_top5);
    free(logits);
    npy_free(&rgb);
    npy_free(&logits_g);
    npy_free(&top5);
    vlm_close(vm);
    remove(path);
}

/* Results must be bit-identical for any thread count: last-prompt logits and greedy ids with
 * 1, 2 and 3 threads. */
static void check_thread_determinism(const char *fixture, int quant)
{
    char path[1024];
    if (golden_convert(fixture, quant, -1, path, sizeof path)) {
        TH_CHECK(0, "%s: conversion failed", fixture);
        return;
    }
    npy_array rgb;
    if (golden_load(fixture, "image_rgb", &rgb)) {
        remove(path);
        return;
    }
    float *first = NULL;
    int first_ids[32];
    for (int threads = 1; threads <= 3; threads++) {
        vlm_model *vm;
        vlm_error e;
        if (vlm_open(path, threads, &vm, &e)) {
            TH_CHECK(0, "%s", e.msg);
            break;
        }
        int V = vlm_get_info(vm)->vocab_size;
        float *logits = malloc(sizeof(float) * V);
        char question[512];
        vlm_request rq = {.prompt = question_of(fixture, question, sizeof question), .image_rgb = rgb.data,
                          .image_width = (int)rgb.shape[1], .image_height = (int)rgb.shape[0],
                          .max_new_tokens = 32, .ignore_eos = 1, .logits_out = logits};
        vlm_result res;
        int rc = vlm_generate(vm, &rq, &res, &e);
        TH_CHECK(rc == 0 && res.n_ids == 32, "%s: %s", fixture, e.msg);
        if (!first) {
            first = logits;
            memcpy(first_ids, res.ids, sizeof first_ids);
        } else {
            TH_CHECK(!memcmp(first, logits, sizeof(float) * V), "%s: logits with %d threads differ from 1 thread",
                     fixture, threads);
            TH_CHECK(!memcmp(first_ids, res.ids, sizeof first_ids), "%s: ids with %d threads differ from 1 thread",
                     fixture, threads);
            free(logits);
        }
        vlm_close(vm);
    }
    free(first);
    npy_free(&rgb);
    remove(path);
}

/* Bounds for random-weight fixtures: their logits have no structure, so q4 noise (about 1/16
 * of each block's range) shows much more than on trained weights; q8 stays near-exact. */
/* n single steps after a t-token prompt of fixed ids from an empty cache; the last logits. */
static int run_steps(model *m, int t, int n, float *emb, float *logits, vlm_error *e)
{
    for (int i = 0; i < t + n; i++) {
        int id = 3 + (i * 7) % ((int)m->cfg.vocab_size - 3);
        if (model_embed(m, &id, 1, emb, e) || model_forward(m, emb, 1, i == t + n - 1 ? logits : NULL, e))
            return -1;
    }
    return 0;
}

/* model_reserve: the cache reserved up front holds the whole run without growing, and the
 * result equals a run whose cache grew past 256 positions on the way (a growth copies every
 * head; a reserve copies nothing). A reserve past the context stops at the context. */
static void check_reserve(const char *fixture)
{
    char path[1024];
    if (golden_convert(fixture, WT_Q8, -1, path, sizeof path)) {
        TH_CHECK(0, "%s: conversion failed", fixture);
        return;
    }
    model m;
    vlm_error e;
    int rc = model_open(path, 2, NULL, &m, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    if (rc) {
        remove(path);
        return;
    }
    enum { PROMPT = 5, STEPS = 300 };
    int V = (int)m.cfg.vocab_size;
    float *emb = malloc(sizeof(float) * m.cfg.dim), *grown = malloc(sizeof(float) * V),
          *reserved = malloc(sizeof(float) * V);
    TH_CHECK(m.cfg.max_seq_len >= PROMPT + STEPS, "%s: context %u too short for this test", fixture,
             m.cfg.max_seq_len);
    rc = run_steps(&m, PROMPT, STEPS, emb, grown, &e);
    TH_CHECK(rc == 0 && m.kv_cap >= PROMPT + STEPS, "%s: %s (cap %d)", fixture, rc ? e.msg : "", m.kv_cap);
    /* A type change frees the cache: start again from none. */
    model_set_kv_type(&m, WT_F32, &e);
    model_set_kv_type(&m, WT_F16, &e);
    TH_CHECK(m.kv_cap == 0, "%s: cache of %d positions after a type change", fixture, m.kv_cap);
    rc = model_reserve(&m, PROMPT + STEPS, &e);
    int cap = m.kv_cap;
    TH_CHECK(rc == 0 && cap >= PROMPT + STEPS, "%s: reserve gave %d positions", fixture, cap);
    rc = run_steps(&m, PROMPT, STEPS, emb, reserved, &e);
    TH_CHECK(rc == 0 && m.kv_cap == cap, "%s: the reserved cache grew from %d to %d", fixture, cap, m.kv_cap);
    TH_CHECK(!memcmp(grown, reserved, sizeof(float) * V), "%s: logits differ between grown and reserved caches",
             fixture);
    rc = model_reserve(&m, INT_MAX, &e);
    TH_CHECK(rc == 0 && m.kv_cap == (int)m.cfg.max_seq_len && m.n_past == PROMPT + STEPS,
             "%s: reserve past the context: cap %d (context %u), n_past %d", fixture, m.kv_cap, m.cfg.max_seq_len,
             m.n_past);
    free(emb);
    free(grown);
    free(reserved);
    model_close(&m);
    remove(path);
}

int main(void)
{
    check_fixture("tiny-v2", 1, VLM_KV_F32);
    check_fixture("tiny-v1", 1, VLM_KV_F32);
    /* Thread count must not change any result: rerun with 3 threads, same bounds and ids. */
    check_fixture("tiny-v2", 3, VLM_KV_F32);
    /* The default f16 KV cache: the f16 bound for the LLM stages, the same greedy ids. */
    check_fixture("tiny-v2", 1, VLM_KV_F16);
    check_fixture("tiny-v1", 2, VLM_KV_F16);
    check_q8_cache("tiny-v2");
    check_q8_cache("tiny-v1");
    check_thread_determinism("tiny-v2", WT_F32);
    check_thread_determinism("tiny-v1", WT_Q4);
    check_reserve("tiny-v2");
    check_fixture_quant("tiny-v2", WT_Q8, 0.998, 4);
    check_fixture_quant("tiny-v1", WT_Q8, 0.998, 4);
    check_fixture_quant("tiny-v2", WT_Q4, 0.93, 2);
    check_fixture_quant("tiny-v1", WT_Q4, 0.85, 2);
    return th_report("test_e2e");
}
