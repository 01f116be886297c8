/* test_api.c: the public API (vlm.h) beyond single questions: image embeddings reused across
 * questions, multi-turn chats that compute only their new positions and answer exactly as a
 * fresh run on the whole conversation (with either KV cache type, and across a change of
 * type), cancellation and clean stops, two models in two threads giving the ids of sequential
 * runs, and the error paths (prompt too long, ids out of range, images for text-only models,
 * embeddings of another model). Fixtures: tiny-v2 (random weights, real 32000-piece
 * tokenizer) and stories260K (a real tiny text model). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "th.h"
#include "vlm.h"
#include "kernels.h"

#define IMAGE_TOKEN (-200)
#define MAXIDS 4096

static const char Q1[] = "What is in the image?";
static const char Q2[] = "What colour is it?";
static const char Q3[] = "Thanks. Anything else?";

typedef struct photo {
    const uint8_t *rgb; /* (h, w, 3) */
    int w, h;
} photo;

/* Positions an id list spans (an image slot is n_image positions). */
static int positions(const int *ids, int n, int n_image)
{
    int p = 0;
    for (int i = 0; i < n; i++)
        p += ids[i] == IMAGE_TOKEN ? n_image : 1;
    return p;
}

/* Length, in positions, of the common prefix of two id lists (image slots equal each other:
 * the same embedding is used throughout a chat). */
static int common_positions(const int *a, int na, const int *b, int nb, int n_image)
{
    int p = 0;
    for (int i = 0; i < na && i < nb && a[i] == b[i]; i++)
        p += a[i] == IMAGE_TOKEN ? n_image : 1;
    return p;
}

/* The result of one scenario, for comparisons between runs. */
typedef struct outcome {
    int ids[3][64];
    int n[3];
    int prefilled[3];
    int rc;
} outcome;

/* A three-turn chat on the photo, greedy, short answers. */
static void chat_scenario(vlm_model *m, const photo *ph, outcome *o)
{
    memset(o, 0, sizeof *o);
    vlm_error e;
    vlm_image_embed *img = NULL;
    vlm_chat *c = NULL;
    o->rc = vlm_encode_image(m, ph->rgb, ph->w, ph->h, &img, &e);
    if (!o->rc)
        o->rc = vlm_chat_new(m, &c, &e);
    const char *qs[3] = {Q1, Q2, Q3};
    for (int t = 0; t < 3 && !o->rc; t++) {
        vlm_request rq = {.prompt = qs[t], .max_new_tokens = 12};
        vlm_result r;
        o->rc = vlm_chat_ask(c, &rq, t == 0 ? img : NULL, &r, &e);
        if (o->rc)
            break;
        o->n[t] = r.n_ids;
        o->prefilled[t] = r.n_prefilled;
        memcpy(o->ids[t], r.ids, (size_t)r.n_ids * sizeof(int));
    }
    vlm_chat_free(c);
    vlm_image_embed_free(img);
}

/* ---- Multi-turn: only new positions computed, answers equal a fresh run. ---- */

static void test_multi_turn(const char *path, const photo *ph)
{
    fprintf(stderr, "multi-turn chat (tiny-v2)\n");
    vlm_model *m, *fresh;
    vlm_error e;
    if (vlm_open(path, 2, &m, &e) || vlm_open(path, 1, &fresh, &e)) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    const vlm_info *info = vlm_get_info(m);
    int NI = info->n_image_tokens;
    int V = info->vocab_size;
    vlm_image_embed *img;
    int rc = vlm_encode_image(m, ph->rgb, ph->w, ph->h, &img, &e);
    TH_CHECK(rc == 0, "encode: %s", e.msg);
    const vlm_image_info *ii = vlm_image_embed_info(img);
    TH_CHECK(ii->n_tokens == NI && ii->dim == info->dim, "embedding shape %d x %d", ii->n_tokens, ii->dim);

    vlm_chat *c;
    vlm_chat_new(m, &c, &e);
    static int p1[MAXIDS], p2[MAXIDS], want[MAXIDS], cached[MAXIDS], tmp[MAXIDS];
    int n1, n2;
    rc = vlm_chat_tokenize(c, Q1, 1, p1, MAXIDS, &n1, &e);
    TH_CHECK(rc == 0, "tokenize turn 1: %s", e.msg);

    /* Turn 1 equals vlm_generate on the same question (the single-question API). */
    vlm_request rq = {.prompt = Q1, .max_new_tokens = 10};
    vlm_result r1;
    rc = vlm_chat_ask(c, &rq, img, &r1, &e);
    TH_CHECK(rc == 0, "turn 1: %s", e.msg);
    int T1 = positions(p1, n1, NI);
    TH_CHECK(r1.n_prompt_tokens == T1 && r1.n_reused + r1.n_prefilled == T1, "turn 1: %d positions (%d + %d), want %d",
             r1.n_prompt_tokens, r1.n_reused, r1.n_prefilled, T1);
    int a1[64], na1 = r1.n_ids;
    memcpy(a1, r1.ids, (size_t)na1 * sizeof *a1);
    char answer1[4096];
    snprintf(answer1, sizeof answer1, "%s", r1.text);
    int stop1 = r1.stop_reason;
    {
        int pids[MAXIDS], np;
        vlm_tokenize_prompt(m, &(vlm_request){.prompt = Q1, .image_rgb = ph->rgb}, pids, MAXIDS, &np, &e);
        TH_CHECK(np == n1 && !memcmp(pids, p1, (size_t)np * sizeof *pids), "chat turn 1 ids differ from vlm_tokenize_prompt");
        vlm_request g = {.prompt = Q1, .image_rgb = ph->rgb, .image_width = ph->w, .image_height = ph->h,
                         .max_new_tokens = 10};
        vlm_result rg;
        rc = vlm_generate(fresh, &g, &rg, &e);
        TH_CHECK(rc == 0 && rg.n_ids == na1 && !memcmp(rg.ids, a1, (size_t)na1 * sizeof *a1),
                 "turn 1 differs from vlm_generate (%d vs %d ids)", rg.n_ids, na1);
    }
    fprintf(stderr, "  turn 1: %d positions, answer \"%s\"\n", T1, answer1);

    /* The whole conversation for turn 2, built by hand from the template:
     *   BOS SYS USER: <image> \nQ1 ASSISTANT: A1 </s> USER: Q2 ASSISTANT:  */
    rc = vlm_chat_tokenize(c, Q2, 0, p2, MAXIDS, &n2, &e);
    TH_CHECK(rc == 0, "tokenize turn 2: %s", e.msg);
    const char *sys = "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                      "helpful, detailed, and polite answers to the user's questions. USER: ";
    char chunk[8192];
    const char *s = answer1; /* stripped, as upstream keeps it */
    while (*s == ' ' || *s == '\n')
        s++;
    snprintf(chunk, sizeof chunk, "\n%s ASSISTANT: %s", Q1, s);
    size_t L = strlen(chunk);
    while (L && (chunk[L - 1] == ' ' || chunk[L - 1] == '\n'))
        chunk[--L] = 0;
    int nw = 0, k;
    want[nw++] = 1;
    vlm_tokenize(m, sys, want + nw, MAXIDS - nw, &k, &e);
    nw += k;
    want[nw++] = IMAGE_TOKEN;
    if (!strstr(chunk, "</s>") && !strstr(chunk, "<s>") && !strstr(chunk, "<unk>")) {
        vlm_tokenize(m, chunk, want + nw, MAXIDS - nw, &k, &e);
        nw += k;
        want[nw++] = 2;
        snprintf(chunk, sizeof chunk, "USER: %s ASSISTANT:", Q2);
        vlm_tokenize(m, chunk, want + nw, MAXIDS - nw, &k, &e);
        nw += k;
        TH_CHECK(nw == n2 && !memcmp(want, p2, (size_t)nw * sizeof *want), "turn 2 ids (%d) differ from the template (%d)",
                 n2, nw);
    }

    /* Turn 2 computes only what the cache lacks: the cache holds turn 1's prompt and the answer
     * ids that were fed back (all of them after EOS, all but the last otherwise). */
    int nc = 0;
    memcpy(cached, p1, (size_t)n1 * sizeof *cached);
    nc = n1;
    int fed = stop1 == VLM_STOP_EOS ? na1 : na1 - 1;
    memcpy(cached + nc, a1, (size_t)fed * sizeof *a1);
    nc += fed;
    int T2 = positions(p2, n2, NI);
    int common = common_positions(cached, nc, p2, n2, NI);
    float *lg_chat = malloc(sizeof(float) * V), *lg_fresh = malloc(sizeof(float) * V);
    rq = (vlm_request){.prompt = Q2, .max_new_tokens = 10, .logits_out = lg_chat};
    vlm_result r2;
    rc = vlm_chat_ask(c, &rq, NULL, &r2, &e);
    TH_CHECK(rc == 0, "turn 2: %s", e.msg);
    TH_CHECK(r2.n_prompt_tokens == T2, "turn 2: %d positions, want %d", r2.n_prompt_tokens, T2);
    TH_CHECK(r2.n_prefilled == T2 - common && r2.n_reused == common, "turn 2 computed %d positions (reused %d), want %d",
             r2.n_prefilled, r2.n_reused, T2 - common);
    TH_CHECK(r2.n_reused >= T1, "turn 2 reused %d positions, less than turn 1's prompt (%d)", r2.n_reused, T1);
    TH_CHECK(r2.n_prefilled < 40, "turn 2 computed %d positions", r2.n_prefilled);
    fprintf(stderr, "  turn 2: %d positions, %d computed, answer \"%s\"\n", T2, r2.n_prefilled, r2.text);
    int a2[64], na2 = r2.n_ids;
    memcpy(a2, r2.ids, (size_t)na2 * sizeof *a2);
    char answer2[4096];
    snprintf(answer2, sizeof answer2, "%s", r2.text);

    /* A fresh run on the whole conversation: another model, the history restored as text. */
    vlm_image_embed *img2 = NULL;
    vlm_chat *c2 = NULL, *c3 = NULL;
    rc = vlm_encode_image(fresh, ph->rgb, ph->w, ph->h, &img2, &e);
    if (!rc)
        rc = vlm_chat_new(fresh, &c2, &e);
    if (!rc)
        rc = vlm_chat_add_turn(c2, Q1, img2, answer1, &e);
    TH_CHECK(rc == 0, "fresh chat: %s", e.msg);
    vlm_image_embed_free(img2); /* the chat keeps its own copy */
    if (rc)
        goto done;
    int nf;
    rc = vlm_chat_tokenize(c2, Q2, 0, tmp, MAXIDS, &nf, &e);
    TH_CHECK(rc == 0 && nf == n2 && !memcmp(tmp, p2, (size_t)nf * sizeof *tmp), "fresh conversation ids differ");
    /* Make sure nothing of the fresh model's cache matches: ask something else first. */
    vlm_result rf;
    vlm_generate(fresh, &(vlm_request){.prompt = "x", .max_new_tokens = 1}, &rf, &e);
    rq.logits_out = lg_fresh;
    rc = vlm_chat_ask(c2, &rq, NULL, &rf, &e);
    TH_CHECK(rc == 0, "fresh turn 2: %s", e.msg);
    TH_CHECK(rf.n_reused < 40 && rf.n_prefilled > T2 - 40, "fresh run reused %d positions", rf.n_reused);
    TH_CHECK(rf.n_ids == na2 && !memcmp(rf.ids, a2, (size_t)na2 * sizeof *a2) && !strcmp(rf.text, answer2),
             "turn 2 answer differs from a fresh run: \"%s\" vs \"%s\"", answer2, rf.text);
    float md = 0;
    for (int i = 0; i < V; i++) {
        float d = lg_chat[i] - lg_fresh[i];
        md = d < 0 ? -d > md ? -d : md : d > md ? d : md;
    }
    TH_CHECK(md <= 1e-4f, "turn 2 logits differ from a fresh run by %g", (double)md);
    fprintf(stderr, "  fresh run: %d positions computed, same answer, logits max diff %g\n", rf.n_prefilled, (double)md);

    /* Turn 3 on both: still identical. */
    rq = (vlm_request){.prompt = Q3, .max_new_tokens = 8};
    vlm_result r3;
    rc = vlm_chat_ask(c, &rq, NULL, &r3, &e);
    int a3[64], na3 = r3.n_ids;
    memcpy(a3, r3.ids, (size_t)na3 * sizeof *a3);
    TH_CHECK(rc == 0 && r3.n_reused >= T2, "turn 3: %s (reused %d)", rc ? e.msg : "", r3.n_reused);
    rc = vlm_chat_ask(c2, &rq, NULL, &rf, &e);
    TH_CHECK(rc == 0 && rf.n_ids == na3 && !memcmp(rf.ids, a3, (size_t)na3 * sizeof *a3), "turn 3 differs between chats");
    TH_CHECK(vlm_chat_turns(c) == 3 && vlm_chat_turns(c2) == 3, "turns %d %d", vlm_chat_turns(c), vlm_chat_turns(c2));

    /* Two chats alternating on one model: each still gets its own answers. */
    vlm_chat_new(m, &c3, &e);
    rc = vlm_chat_ask(c3, &(vlm_request){.prompt = Q1, .max_new_tokens = 10}, img, &r1, &e);
    TH_CHECK(rc == 0 && r1.n_ids == na1 && !memcmp(r1.ids, a1, (size_t)na1 * sizeof *a1), "second chat, turn 1 differs");
    TH_CHECK(r1.n_reused == T1 - 1, "second chat reused %d of turn 1's %d positions", r1.n_reused, T1);

    /* Reset: the next question is a new conversation (its prefix still comes from the cache). */
    vlm_chat_reset(c);
    TH_CHECK(vlm_chat_turns(c) == 0, "reset");
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = Q1, .max_new_tokens = 10}, img, &r1, &e);
    TH_CHECK(rc == 0 && r1.n_ids == na1 && !memcmp(r1.ids, a1, (size_t)na1 * sizeof *a1), "after reset, turn 1 differs");
done:
    vlm_chat_free(c3);
    vlm_chat_free(c2);
    vlm_chat_free(c);
    vlm_image_embed_free(img);
    free(lg_chat);
    free(lg_fresh);
    vlm_close(fresh);
    vlm_close(m);
}

/* ---- The KV cache type (vlm_set_kv_cache). ---- */

/* An answer and the logits of its last prompt position. */
typedef struct answer {
    int ids[64];
    int n, n_reused, n_prefilled;
    float *logits; /* (vocab) */
} answer;

static int ask_into(vlm_chat *c, const char *q, const vlm_image_embed *img, answer *a, vlm_error *e)
{
    vlm_result r;
    int rc = vlm_chat_ask(c, &(vlm_request){.prompt = q, .max_new_tokens = 10, .logits_out = a->logits}, img, &r, e);
    a->n = rc ? 0 : r.n_ids;
    a->n_reused = r.n_reused;
    a->n_prefilled = r.n_prefilled;
    memcpy(a->ids, r.ids, (size_t)a->n * sizeof *a->ids);
    return rc;
}

/* Same ids, logits within 1e-4 (the chat computes fewer rows at once than a fresh run; each
 * row's result does not depend on that beyond summation order). */
static void same_answer(const answer *x, const answer *y, int V, const char *what)
{
    float md = 0;
    for (int i = 0; i < V; i++)
        md = fmaxf(md, fabsf(x->logits[i] - y->logits[i]));
    TH_CHECK(x->n == y->n && !memcmp(x->ids, y->ids, (size_t)x->n * sizeof *x->ids) && md <= 1e-4f,
             "%s: %d vs %d ids, logits max diff %g", what, x->n, y->n, (double)md);
    fprintf(stderr, "  %s: same %d ids, logits max diff %g\n", what, x->n, (double)md);
}

/* A fresh model in kv_type answering `q` after the restored turns (q_i, a_i) with the photo in
 * the first one. */
static void fresh_answer(const char *path, const photo *ph, int kv_type, const char *const *qs, const char *const *as,
                         int turns, const char *q, answer *out)
{
    vlm_model *m;
    vlm_error e;
    vlm_image_embed *img = NULL;
    vlm_chat *c = NULL;
    int rc = vlm_open(path, 1, &m, &e);
    if (rc) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    rc = vlm_set_kv_cache(m, kv_type, &e);
    if (!rc)
        rc = vlm_encode_image(m, ph->rgb, ph->w, ph->h, &img, &e);
    if (!rc)
        rc = vlm_chat_new(m, &c, &e);
    for (int t = 0; t < turns && !rc; t++)
        rc = vlm_chat_add_turn(c, qs[t], t == 0 ? img : NULL, as[t], &e);
    if (!rc)
        rc = ask_into(c, q, turns ? NULL : img, out, &e);
    TH_CHECK(rc == 0 && vlm_get_info(m)->kv_cache == kv_type, "fresh run: %s", e.msg);
    vlm_chat_free(c);
    vlm_image_embed_free(img);
    vlm_close(m);
}

typedef struct setter_probe {
    vlm_model *m;
    int rc;
} setter_probe;

/* A token callback that tries to change the cache type in the middle of a generation. */
static int set_from_callback(void *ctx, int id, const char *text)
{
    (void)id;
    (void)text;
    setter_probe *p = ctx;
    vlm_error e;
    p->rc = vlm_set_kv_cache(p->m, VLM_KV_F32, &e);
    return 0;
}

/* Types that cannot be set: an unknown one, and q8 with a head_dim (path: 16) that 32 does not
 * divide, refused with a message naming it; the type in use stays. */
static void test_kv_cache_refused(const char *path)
{
    fprintf(stderr, "KV cache types refused\n");
    vlm_model *m;
    vlm_error e;
    if (vlm_open(path, 1, &m, &e)) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    TH_CHECK(vlm_get_info(m)->kv_cache == VLM_KV_F16, "the default is not f16");
    int rc = vlm_set_kv_cache(m, 3, &e);
    TH_CHECK(rc == VLM_EARG && vlm_get_info(m)->kv_cache == VLM_KV_F16, "type 3: %d", rc);
    rc = vlm_set_kv_cache(m, VLM_KV_Q8, &e);
    TH_CHECK(rc == VLM_EARG && strstr(e.msg, "head_dim is 16") && vlm_get_info(m)->kv_cache == VLM_KV_F16,
             "q8 with head_dim 16: %d (%s)", rc, e.msg);
    fprintf(stderr, "  q8: %s\n", e.msg);
    vlm_close(m);
}

/* path: a model whose head_dim 32 divides (q8 is one of the types). */
static void test_kv_cache(const char *path, const photo *ph)
{
    fprintf(stderr, "KV cache type\n");
    static const char *const names[] = {[VLM_KV_F16] = "f16", [VLM_KV_F32] = "f32", [VLM_KV_Q8] = "q8"};
    vlm_model *m;
    vlm_error e;
    if (vlm_open(path, 2, &m, &e)) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    int V = vlm_get_info(m)->vocab_size;
    int rc;
    vlm_image_embed *img;
    vlm_encode_image(m, ph->rgb, ph->w, ph->h, &img, &e);
    answer a[3], f;
    for (int i = 0; i < 3; i++)
        a[i].logits = malloc(sizeof(float) * V);
    f.logits = malloc(sizeof(float) * V);
    const char *qs[3] = {Q1, Q2, Q3};
    char as[2][4096];
    const char *asp[2] = {as[0], as[1]};

    /* Per type: a chat's turn 2 equals a fresh run on the whole conversation in that type. */
    static const int types[3] = {VLM_KV_F16, VLM_KV_F32, VLM_KV_Q8};
    int ids2[3][64], n2[3];
    for (int ti = 0; ti < 3; ti++) {
        int kt = types[ti];
        rc = vlm_set_kv_cache(m, kt, &e);
        TH_CHECK(rc == 0 && vlm_get_info(m)->kv_cache == kt, "set %d: %s", kt, e.msg);
        vlm_chat *c;
        vlm_chat_new(m, &c, &e);
        vlm_result r;
        rc = vlm_chat_ask(c, &(vlm_request){.prompt = Q1, .max_new_tokens = 10}, img, &r, &e);
        snprintf(as[0], sizeof as[0], "%s", rc ? "" : r.text);
        /* After a change of type nothing is reused (the first round starts empty anyway). */
        TH_CHECK(rc == 0 && r.n_reused == 0, "%s turn 1: %s (reused %d)", names[kt], e.msg, r.n_reused);
        rc = ask_into(c, Q2, NULL, &a[1], &e);
        TH_CHECK(rc == 0 && a[1].n_reused > a[1].n_prefilled, "%s turn 2: %s (reused %d, computed %d)",
                 names[kt], e.msg, a[1].n_reused, a[1].n_prefilled);
        fresh_answer(path, ph, kt, qs, asp, 1, Q2, &f);
        char what[64];
        snprintf(what, sizeof what, "%s cache, turn 2 vs a fresh run", names[kt]);
        same_answer(&a[1], &f, V, what);
        n2[ti] = a[1].n;
        memcpy(ids2[ti], a[1].ids, sizeof ids2[ti]);
        vlm_chat_free(c);
    }
    for (int ti = 0; ti < 3; ti += 2)
        fprintf(stderr, "  turn 2 ids %s between the %s and the f32 cache (random weights: either may happen)\n",
                n2[ti] == n2[1] && !memcmp(ids2[ti], ids2[1], (size_t)n2[1] * sizeof(int)) ? "equal" : "differ",
                names[types[ti]]);

    /* A change of type in the middle of a conversation: the chat keeps its turns, the cache is
     * rebuilt from them, and the answer is a fresh f32 run's. */
    vlm_set_kv_cache(m, VLM_KV_F16, &e);
    vlm_chat *c;
    vlm_chat_new(m, &c, &e);
    vlm_result r;
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = Q1, .max_new_tokens = 10}, img, &r, &e);
    snprintf(as[0], sizeof as[0], "%s", rc ? "" : r.text);
    rc |= vlm_chat_ask(c, &(vlm_request){.prompt = Q2, .max_new_tokens = 10}, NULL, &r, &e);
    snprintf(as[1], sizeof as[1], "%s", rc ? "" : r.text);
    TH_CHECK(rc == 0, "f16 chat: %s", e.msg);
    rc = vlm_set_kv_cache(m, VLM_KV_F32, &e);
    TH_CHECK(rc == 0 && vlm_get_info(m)->kv_cache == VLM_KV_F32 && vlm_chat_turns(c) == 2, "switch to f32: %s", e.msg);
    rc = ask_into(c, Q3, NULL, &a[2], &e);
    TH_CHECK(rc == 0 && a[2].n_reused == 0, "turn 3 after the switch: %s (reused %d)", e.msg, a[2].n_reused);
    fresh_answer(path, ph, VLM_KV_F32, qs, asp, 2, Q3, &f);
    same_answer(&a[2], &f, V, "turn 3 after switching to f32 vs a fresh f32 run");
    /* The same type again keeps the cache. */
    rc = vlm_set_kv_cache(m, VLM_KV_F32, &e);
    rc |= ask_into(c, "And then?", NULL, &a[0], &e);
    TH_CHECK(rc == 0 && a[0].n_reused > a[0].n_prefilled, "same type again: the cache was dropped (reused %d)",
             a[0].n_reused);

    /* From a callback during a generation: refused, and the generation goes on. */
    setter_probe sp = {m, 0};
    rc = vlm_generate(m, &(vlm_request){.prompt = Q1, .max_new_tokens = 3, .ignore_eos = 1,
                                        .on_token = set_from_callback, .ctx = &sp}, &r, &e);
    TH_CHECK(rc == 0 && r.n_ids == 3 && sp.rc == VLM_EARG, "set from a callback: rc %d, %d ids, set gave %d", rc,
             r.n_ids, sp.rc);
    vlm_chat_free(c);
    for (int i = 0; i < 3; i++)
        free(a[i].logits);
    free(f.logits);
    vlm_image_embed_free(img);
    vlm_close(m);
}

/* ---- Cancellation and clean stops. ---- */

typedef struct counter {
    int seen, at, ret;
} counter;

static int stop_at(void *ctx, int id, const char *text)
{
    (void)id;
    (void)text;
    counter *k = ctx;
    return ++k->seen == k->at ? k->ret : 0;
}

static void test_cancel(const char *path, const photo *ph)
{
    fprintf(stderr, "cancellation\n");
    vlm_model *m;
    vlm_error e;
    if (vlm_open(path, 1, &m, &e)) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    vlm_image_embed *img;
    vlm_encode_image(m, ph->rgb, ph->w, ph->h, &img, &e);
    vlm_chat *c;
    vlm_chat_new(m, &c, &e);
    counter k = {0, 3, -1};
    vlm_request rq = {.prompt = Q1, .max_new_tokens = 10, .ignore_eos = 1, .on_token = stop_at, .ctx = &k};
    vlm_result r;
    int rc = vlm_chat_ask(c, &rq, img, &r, &e);
    TH_CHECK(rc == VLM_ECANCELLED && e.code == VLM_ECANCELLED, "cancel: rc %d", rc);
    TH_CHECK(r.n_ids == 3 && r.stop_reason == VLM_STOP_CALLBACK, "cancel: %d ids, reason %d", r.n_ids, r.stop_reason);
    TH_CHECK(vlm_chat_turns(c) == 0, "a cancelled turn stays out of the history (%d turns)", vlm_chat_turns(c));
    k = (counter){0, 4, 1};
    rc = vlm_chat_ask(c, &rq, img, &r, &e);
    TH_CHECK(rc == 0 && r.n_ids == 4 && r.stop_reason == VLM_STOP_CALLBACK, "stop: rc %d, %d ids", rc, r.n_ids);
    TH_CHECK(vlm_chat_turns(c) == 1, "a stopped turn stays in the history (%d turns)", vlm_chat_turns(c));
    k = (counter){0, 2, -5};
    rc = vlm_generate(m, &(vlm_request){.prompt = Q1, .max_new_tokens = 10, .on_token = stop_at, .ctx = &k}, &r, &e);
    TH_CHECK(rc == VLM_ECANCELLED && r.n_ids == 2, "vlm_generate cancel: rc %d, %d ids", rc, r.n_ids);
    k = (counter){0, 2, 1};
    rc = vlm_generate(m, &(vlm_request){.prompt = Q1, .max_new_tokens = 10, .on_token = stop_at, .ctx = &k}, &r, &e);
    TH_CHECK(rc == 0 && r.n_ids == 2, "vlm_generate stop: rc %d, %d ids", rc, r.n_ids);
    rc = vlm_generate(m, &(vlm_request){.prompt = Q1, .max_new_tokens = 5, .ignore_eos = 1}, &r, &e);
    TH_CHECK(rc == 0 && r.n_ids == 5 && r.stop_reason == VLM_STOP_LENGTH, "length stop: %d ids, reason %d", r.n_ids,
             r.stop_reason);
    vlm_chat_free(c);
    vlm_image_embed_free(img);
    vlm_close(m);
}

/* ---- Two models in two threads. ---- */

typedef struct job {
    const char *path;
    const photo *ph;
    int threads;
    outcome out;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    vlm_model *m;
    vlm_error e;
    j->out.rc = vlm_open(j->path, j->threads, &m, &e);
    if (j->out.rc)
        return NULL;
    chat_scenario(m, j->ph, &j->out);
    vlm_close(m);
    return NULL;
}

static void test_threads(const char *path, const char *q4path, const photo *ph)
{
    fprintf(stderr, "two models in two threads\n");
    job seq[2] = {{.path = path, .ph = ph, .threads = 1}, {.path = q4path, .ph = ph, .threads = 2}};
    job par[2] = {{.path = path, .ph = ph, .threads = 2}, {.path = q4path, .ph = ph, .threads = 1}};
    run_job(&seq[0]);
    run_job(&seq[1]);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, run_job, &par[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        TH_CHECK(seq[i].out.rc == 0 && par[i].out.rc == 0, "job %d failed", i);
        TH_CHECK(!memcmp(&seq[i].out, &par[i].out, sizeof seq[i].out), "job %d: threads differ from sequential runs", i);
        TH_CHECK(seq[i].out.n[0] > 0 && seq[i].out.prefilled[1] < seq[i].out.prefilled[0], "job %d: %d ids", i,
                 seq[i].out.n[0]);
    }
}

/* ---- Errors. ---- */

static void test_errors(const char *vpath, const char *spath, const photo *ph)
{
    fprintf(stderr, "errors\n");
    vlm_model *m, *s, *m2;
    vlm_error e;
    int rc = vlm_open("no/such/model.vlm", 1, &m, &e);
    TH_CHECK(rc == VLM_EIO && strstr(e.msg, "no/such/model.vlm"), "missing file: %d %s", rc, e.msg);
    rc = vlm_open(vpath, 0, &m, &e);
    TH_CHECK(rc == VLM_EARG && m == NULL, "0 threads: %d", rc);
    if (vlm_open(vpath, 1, &m, &e) || vlm_open(spath, 1, &s, &e) || vlm_open(vpath, 1, &m2, &e)) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    /* A prompt too long for the context. */
    size_t big = 3 * (size_t)vlm_get_info(m)->context_length * 6;
    char *q = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        q[i] = "word "[i % 5];
    q[big] = 0;
    vlm_result r;
    rc = vlm_generate(m, &(vlm_request){.prompt = q, .max_new_tokens = 2}, &r, &e);
    TH_CHECK(rc == VLM_ERANGE && strstr(e.msg, "context"), "too long: %d %s", rc, e.msg);
    vlm_chat *c;
    vlm_chat_new(m, &c, &e);
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = q, .max_new_tokens = 2}, NULL, &r, &e);
    TH_CHECK(rc == VLM_ERANGE && vlm_chat_turns(c) == 0, "chat too long: %d", rc);
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = "Hi", .max_new_tokens = 2}, NULL, &r, &e);
    TH_CHECK(rc == 0 && vlm_chat_turns(c) == 1, "the chat goes on after an error: %s", e.msg);
    /* Filling the context turn by turn ends in VLM_ERANGE too. */
    q[big / 8] = 0;
    int turns = 0;
    while (turns < 50 && !(rc = vlm_chat_ask(c, &(vlm_request){.prompt = q, .max_new_tokens = 4}, NULL, &r, &e)))
        turns++;
    TH_CHECK(rc == VLM_ERANGE && turns > 0 && turns < 50, "filling the context: %d after %d turns", rc, turns);
    vlm_chat_free(c);
    free(q);

    /* Ids out of range. */
    int ids[3] = {5, 40000, 7};
    char out[256];
    size_t len;
    rc = vlm_detokenize(m, ids, 3, out, sizeof out, &len, &e);
    TH_CHECK(rc == VLM_ERANGE && strstr(e.msg, "40000"), "id 40000: %d %s", rc, e.msg);
    ids[1] = -3;
    rc = vlm_detokenize(s, ids, 3, out, sizeof out, &len, &e);
    TH_CHECK(rc == VLM_ERANGE, "id -3: %d", rc);
    ids[1] = 600;
    rc = vlm_detokenize(s, ids, 3, out, sizeof out, &len, &e);
    TH_CHECK(rc == VLM_ERANGE, "id 600 for a 512-piece model: %d", rc);
    int tk[16], n;
    rc = vlm_tokenize(s, "Once upon a time", tk, 16, &n, &e);
    TH_CHECK(rc == 0 && n > 0, "tokenize: %s", e.msg);
    rc = vlm_detokenize(s, tk, n, out, sizeof out, &len, &e);
    TH_CHECK(rc == 0 && !strcmp(out, "Once upon a time"), "round trip: \"%s\"", out);
    rc = vlm_tokenize(s, "Once upon a time", tk, 2, &n, &e);
    TH_CHECK(rc == VLM_ERANGE, "small buffer: %d", rc);

    /* Images for a text-only model, embeddings of another model. */
    vlm_request rq = {.prompt = "Hi", .image_rgb = ph->rgb, .image_width = ph->w, .image_height = ph->h};
    rc = vlm_generate(s, &rq, &r, &e);
    TH_CHECK(rc == VLM_EARG && strstr(e.msg, "text-only"), "text-only + image: %d %s", rc, e.msg);
    vlm_image_embed *img = NULL;
    rc = vlm_encode_image(s, ph->rgb, ph->w, ph->h, &img, &e);
    TH_CHECK(rc == VLM_EARG && img == NULL, "encode on a text-only model: %d", rc);
    int pids[64], np;
    rc = vlm_tokenize_prompt(s, &rq, pids, 64, &np, &e);
    TH_CHECK(rc == VLM_EARG, "tokenize text-only + image: %d", rc);
    vlm_chat_new(s, &c, &e);
    rc = vlm_chat_ask(c, &rq, NULL, &r, &e);
    TH_CHECK(rc == VLM_EARG, "chat text-only + image: %d", rc);
    vlm_chat_free(c);
    rc = vlm_encode_image(m, ph->rgb, ph->w, 0, &img, &e);
    TH_CHECK(rc == VLM_EARG, "0-pixel image: %d", rc);
    rc = vlm_encode_image(m2, ph->rgb, ph->w, ph->h, &img, &e);
    vlm_chat_new(m, &c, &e);
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = "Hi"}, img, &r, &e);
    TH_CHECK(rc == VLM_EARG && strstr(e.msg, "another model"), "foreign embedding: %d %s", rc, e.msg);
    rc = vlm_chat_ask(c, &rq, img, &r, &e);
    TH_CHECK(rc == VLM_EARG, "pixels and embedding: %d", rc);
    vlm_chat_free(c);
    vlm_image_embed_free(img);
    vlm_close(m2);
    vlm_close(s);
    vlm_close(m);
}

/* ---- Text-only continuation chats. ---- */

static void test_text_chat(const char *spath)
{
    fprintf(stderr, "text-only chat (stories260K)\n");
    vlm_model *s;
    vlm_error e;
    if (vlm_open(spath, 1, &s, &e)) {
        TH_CHECK(0, "open: %s", e.msg);
        return;
    }
    vlm_chat *c;
    vlm_chat_new(s, &c, &e);
    vlm_result r;
    int rc = vlm_chat_ask(c, &(vlm_request){.prompt = "Once upon a time", .max_new_tokens = 20}, NULL, &r, &e);
    TH_CHECK(rc == 0 && r.n_ids == 20, "turn 1: %s", e.msg);
    int t2[16], n2;
    vlm_tokenize(s, "Then", t2, 16, &n2, &e);
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = "Then", .max_new_tokens = 20}, NULL, &r, &e);
    TH_CHECK(rc == 0 && r.n_prefilled == 1 + n2, "turn 2 computed %d positions, want %d", r.n_prefilled, 1 + n2);
    fprintf(stderr, "  turn 2 computed %d positions: \"%s\"\n", r.n_prefilled, r.text);
    vlm_chat_free(c);
    vlm_close(s);
}

int main(void)
{
    char vpath[1024], qpath[1024], spath[1024], wpath[1024];
    /* wpath: tiny-v2 with 2 heads of 32 (golden_widen_heads), for the q8 KV cache. */
    if (golden_convert("tiny-v2", WT_F32, WT_F32, vpath, sizeof vpath) ||
        snprintf(wpath, sizeof wpath, "%s.wide", vpath) >= (int)sizeof wpath || golden_widen_heads(vpath, wpath) ||
        golden_convert("tiny-v2", WT_Q4, WT_Q8, qpath, sizeof qpath) ||
        golden_convert("stories260K-hf", WT_F32, -1, spath, sizeof spath)) {
        TH_CHECK(0, "conversion failed");
        return th_report("test_api");
    }
    npy_array rgb;
    if (golden_load("tiny-v2", "image_rgb", &rgb)) {
        TH_CHECK(0, "image_rgb golden missing");
        return th_report("test_api");
    }
    photo ph = {rgb.data, (int)rgb.shape[1], (int)rgb.shape[0]};
    test_multi_turn(vpath, &ph);
    test_kv_cache_refused(vpath);
    test_kv_cache(wpath, &ph);
    test_cancel(vpath, &ph);
    test_threads(vpath, qpath, &ph);
    test_errors(vpath, spath, &ph);
    test_text_chat(spath);
    npy_free(&rgb);
    remove(vpath);
    remove(wpath);
    remove(qpath);
    remove(spath);
    return th_report("test_api");
}
