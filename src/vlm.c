/* vlm.c: the public API (vlm.h): prompt construction with the MobileVLM conversation template,
 * image-token splicing, prefill, sampling and streaming generation over model.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "preprocess.h"
#include "util.h"
#include "vlm.h"

#define IMAGE_TOKEN (-200) /* upstream IMAGE_TOKEN_INDEX: the place of the image in the ids */

static const char system_prompt[] =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";

struct vlm_model {
    model m;
    vlm_info info;
    int *ids;          /* (cap_ids) prompt ids, then generated ids */
    size_t cap_ids;
    char *text;        /* (cap_text) decoded answer */
    size_t cap_text;
    float *emb;        /* (context, dim) prompt embeddings */
    float *logits;     /* (vocab) */
    float *probs;      /* (vocab) sampling scratch */
    int *order;        /* (vocab) sampling scratch */
    int *order_tmp;    /* (vocab) */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int vlm_open(const char *path, int n_threads, vlm_model **out, vlm_error *err)
{
    *out = NULL;
    vlm_model *v = calloc(1, sizeof *v);
    if (!v)
        return vlm_fail(err, VLM_ENOMEM, "out of memory");
    int rc = model_open(path, n_threads, NULL, &v->m, err);
    if (rc) {
        free(v);
        return rc;
    }
    const wf_config *c = &v->m.cfg;
    v->cap_ids = c->max_seq_len + 16;
    v->cap_text = 4096;
    v->ids = malloc(v->cap_ids * sizeof *v->ids);
    v->text = malloc(v->cap_text);
    v->logits = malloc(c->vocab_size * sizeof *v->logits);
    v->probs = malloc(c->vocab_size * sizeof *v->probs);
    v->order = malloc(c->vocab_size * sizeof *v->order);
    v->order_tmp = malloc(c->vocab_size * sizeof *v->order_tmp);
    if (!v->ids || !v->text || !v->logits || !v->probs || !v->order || !v->order_tmp) {
        vlm_close(v);
        return vlm_fail(err, VLM_ENOMEM, "out of memory");
    }
    v->info.has_vision = c->arch != ARCH_LLAMA;
    v->info.image_size = (int)c->v_image_size;
    v->info.n_image_tokens = v->m.n_image_tokens;
    v->info.vocab_size = (int)c->vocab_size;
    v->info.context_length = (int)c->max_seq_len;
    v->info.dim = (int)c->dim;
    v->info.n_layers = (int)c->n_layers;
    v->info.kernels = v->m.K->level;
    *out = v;
    return 0;
}

void vlm_close(vlm_model *v)
{
    if (!v)
        return;
    model_close(&v->m);
    free(v->ids);
    free(v->text);
    free(v->emb);
    free(v->logits);
    free(v->probs);
    free(v->order);
    free(v->order_tmp);
    free(v);
}

const vlm_info *vlm_get_info(const vlm_model *v) { return &v->info; }

/* Appends the encoding of text to ids[*n .. cap). */
static int encode(vlm_model *v, const char *text, int *ids, int cap, int *n, vlm_error *err)
{
    size_t got = 0;
    int rc = tok_encode(v->m.tok, text, strlen(text), ids + *n, (size_t)(cap - *n), &got, err);
    if (rc == VLM_ERANGE)
        return vlm_fail(err, VLM_ERANGE, "the prompt needs more than %d tokens (context %u)", cap,
                        v->m.cfg.max_seq_len);
    *n += (int)got;
    return rc;
}

int vlm_tokenize_prompt(vlm_model *v, const vlm_request *rq, int *ids, int cap, int *n, vlm_error *err)
{
    const wf_config *c = &v->m.cfg;
    const char *q = rq->prompt ? rq->prompt : "";
    *n = 0;
    if (cap < 2)
        return vlm_fail(err, VLM_ERANGE, "token buffer too small");
    ids[(*n)++] = (int)c->bos_id;
    if (c->chat_template == TEMPLATE_NONE) {
        if (rq->image_rgb)
            return vlm_fail(err, VLM_EARG, "this is a text-only model: it cannot take an image");
        return encode(v, q, ids, cap, n, err);
    }
    /* conv "v1": system + " USER: " + [<image> + "\n"] + question + " ASSISTANT:". Upstream
     * splits the prompt at <image> and encodes each chunk on its own (each with its own dummy
     * prefix), so the image sits between two separately encoded texts. */
    size_t qlen = strlen(q);
    char *buf = malloc(sizeof system_prompt + qlen + 32);
    if (!buf)
        return vlm_fail(err, VLM_ENOMEM, "out of memory");
    int rc;
    if (rq->image_rgb) {
        if (c->arch == ARCH_LLAMA) {
            free(buf);
            return vlm_fail(err, VLM_EARG, "this model has no vision tower");
        }
        snprintf(buf, sizeof system_prompt + 16, "%s USER: ", system_prompt);
        rc = encode(v, buf, ids, cap, n, err);
        if (!rc && *n >= cap)
            rc = vlm_fail(err, VLM_ERANGE, "the prompt does not fit the context");
        if (!rc) {
            ids[(*n)++] = IMAGE_TOKEN;
            sprintf(buf, "\n%s ASSISTANT:", q);
            rc = encode(v, buf, ids, cap, n, err);
        }
    } else {
        sprintf(buf, "%s USER: %s ASSISTANT:", system_prompt, q);
        rc = encode(v, buf, ids, cap, n, err);
    }
    free(buf);
    return rc;
}

typedef struct rng {
    uint64_t s;
} rng;

static float rng_uniform(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (float)((r->s >> 40) * (1.0 / 16777216.0));
}


/* Stable merge sort of ord[0:n] by descending p (ties keep the lower id first). */
static void sort_by_prob(int *ord, int *tmp, int n, const float *p)
{
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n;
            int hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = p[ord[j]] > p[ord[i]] ? ord[j++] : ord[i++];
            while (i < mid)
                tmp[k++] = ord[i++];
            while (j < hi)
                tmp[k++] = ord[j++];
        }
        memcpy(ord, tmp, (size_t)n * sizeof *ord);
    }
}

/* Greedy (first maximum) at temperature 0; else temperature, top-k, top-p, then a draw. */
static int sample(vlm_model *v, const vlm_request *rq, rng *r)
{
    int n = v->info.vocab_size;
    const float *lg = v->logits;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (lg[i] > lg[best])
            best = i;
    if (!(rq->temperature > 0))
        return best;
    float *p = v->probs;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        p[i] = expf((lg[i] - lg[best]) / rq->temperature);
        sum += p[i];
    }
    for (int i = 0; i < n; i++)
        p[i] = (float)(p[i] / sum);
    int *ord = v->order;
    for (int i = 0; i < n; i++)
        ord[i] = i;
    /* Sorting all candidates is simple and costs ~1 ms at 32000; fine next to a forward pass. */
    sort_by_prob(ord, v->order_tmp, n, p);
    int keep = rq->top_k > 0 && rq->top_k < n ? rq->top_k : n;
    float top_p = rq->top_p > 0 && rq->top_p < 1 ? rq->top_p : 1.0f;
    double cum = 0;
    int k = 0;
    while (k < keep) {
        cum += p[ord[k++]];
        if (cum >= top_p)
            break;
    }
    double x = rng_uniform(r) * cum;
    double acc = 0;
    for (int i = 0; i < k; i++) {
        acc += p[ord[i]];
        if (x < acc)
            return ord[i];
    }
    return ord[k - 1];
}

static int ensure_text(vlm_model *v, size_t need, vlm_error *err)
{
    if (need <= v->cap_text)
        return 0;
    size_t cap = v->cap_text * 2 > need ? v->cap_text * 2 : need;
    char *t = realloc(v->text, cap);
    if (!t)
        return vlm_fail(err, VLM_ENOMEM, "out of memory for the answer text");
    v->text = t;
    v->cap_text = cap;
    return 0;
}

int vlm_generate(vlm_model *v, const vlm_request *rq, vlm_result *res, vlm_error *err)
{
    model *m = &v->m;
    const wf_config *c = &m->cfg;
    int D = (int)c->dim;
    int ctx = (int)c->max_seq_len;
    memset(res, 0, sizeof *res);
    model_reset(m);
    int n_ids = 0;
    int rc = vlm_tokenize_prompt(v, rq, v->ids, (int)v->cap_ids, &n_ids, err);
    if (rc)
        return rc;
    int has_image = n_ids > 0 && rq->image_rgb;
    int T = n_ids + (has_image ? m->n_image_tokens - 1 : 0);
    if (T > ctx)
        return vlm_fail(err, VLM_ERANGE, "the prompt needs %d positions, the context holds %d", T, ctx);
    if (!v->emb) {
        v->emb = malloc((size_t)ctx * D * sizeof(float));
        if (!v->emb)
            return vlm_fail(err, VLM_ENOMEM, "cannot allocate prompt embeddings (%d x %d)", ctx, D);
    }
    /* Embeddings: text ids, with all image tokens in place of the placeholder. */
    int row = 0;
    for (int i = 0; i < n_ids; i++) {
        if (v->ids[i] != IMAGE_TOKEN) {
            rc = model_embed(m, &v->ids[i], 1, v->emb + (size_t)row * D, err);
            row++;
            if (rc)
                return rc;
            continue;
        }
        int S = (int)c->v_image_size;
        float *pixels = malloc((size_t)3 * S * S * sizeof(float));
        if (!pixels)
            return vlm_fail(err, VLM_ENOMEM, "out of memory for pixels");
        double t0 = now_ms();
        uint8_t pad[3];
        for (int ch = 0; ch < 3; ch++) /* int(mean * 255): truncation, as upstream */
            pad[ch] = (uint8_t)(int)(c->image_mean[ch] * 255.0f);
        rc = clip_preprocess(rq->image_rgb, rq->image_width, rq->image_height, S, pad, c->image_mean, c->image_std,
                             pixels, NULL, err);
        double t1 = now_ms();
        if (!rc)
            rc = model_encode_image(m, pixels, v->emb + (size_t)row * D, err);
        free(pixels);
        if (rc)
            return rc;
        res->preprocess_ms = t1 - t0;
        res->vision_ms = now_ms() - t1;
        row += m->n_image_tokens;
    }
    res->n_prompt_tokens = T;

    double t0 = now_ms();
    rc = model_forward(m, v->emb, T, v->logits, err);
    if (rc)
        return rc;
    res->prefill_ms = now_ms() - t0;
    if (rq->logits_out)
        memcpy(rq->logits_out, v->logits, c->vocab_size * sizeof(float));

    /* Generation: ids of the answer follow the prompt ids in v->ids. */
    int *gen = v->ids + n_ids;
    int cap_gen = (int)v->cap_ids - n_ids;
    int limit = rq->max_new_tokens > 0 ? rq->max_new_tokens : ctx;
    if (limit > ctx - T + 1)
        limit = ctx - T + 1;
    if (limit > cap_gen)
        limit = cap_gen;
    rng r = {rq->seed ? rq->seed : 0x2545f4914f6cdd1dull};
    size_t emitted = 0;
    t0 = now_ms();
    v->text[0] = 0;
    int n_gen = 0;
    while (n_gen < limit) {
        int id = sample(v, rq, &r);
        if (!rq->ignore_eos && (id == (int)c->eos_id || id == (int)c->bos_id)) {
            res->stopped_by_eos = 1;
            break;
        }
        gen[n_gen++] = id;
        /* Streaming text: decode the whole answer and emit what is new and complete. */
        size_t len = 0;
        for (;;) {
            rc = tok_decode(m->tok, gen, (size_t)n_gen, v->text, v->cap_text, &len, err);
            if (rc != VLM_ERANGE)
                break;
            rc = ensure_text(v, v->cap_text * 2, err);
            if (rc)
                return rc;
        }
        if (rc)
            return rc;
        size_t stable = utf8_stable_prefix(v->text, len);
        if (rq->on_token) {
            char saved = v->text[stable];
            v->text[stable] = 0;
            int stop = rq->on_token(rq->ctx, id, stable > emitted ? v->text + emitted : "");
            v->text[stable] = saved;
            if (stop)
                break;
        }
        if (stable > emitted)
            emitted = stable;
        if (n_gen == limit || m->n_past >= ctx)
            break;
        float *e = v->emb; /* one row of scratch */
        rc = model_embed(m, &id, 1, e, err);
        if (!rc)
            rc = model_forward(m, e, 1, v->logits, err);
        if (rc)
            return rc;
    }
    res->generate_ms = now_ms() - t0;
    res->ids = gen;
    res->n_ids = n_gen;
    res->text = v->text;
    if (n_gen == 0)
        v->text[0] = 0;
    return 0;
}
