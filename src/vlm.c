/* vlm.c: the public API (vlm.h): conversations with the MobileVLM template, their
 * tokenization as upstream does it, image embeddings, the KV-cache bookkeeping that lets each
 * turn compute only the positions that changed, sampling and streaming generation over
 * model.c. The model keeps one KV cache; a key per position says what it holds, so any chat or
 * single question reuses exactly the prefix it shares with what was computed before. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "model.h"
#include "pool.h"
#include "preprocess.h"
#include "sample.h"
#include "util.h"
#include "vlm.h"

#define IMAGE_TOKEN (-200) /* upstream IMAGE_TOKEN_INDEX: the place of the image in the ids */

static const char system_prompt[] =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";

/* An image slot of a conversation: the embedding rows and the id that names them in the KV
 * cache keys. */
typedef struct image_ref {
    const float *data; /* (n_image_tokens, dim) */
    uint64_t id;
} image_ref;

struct vlm_model {
    model m;
    vlm_info info;
    /* The KV cache's contents: keys[p] for p < n_keys (== m.n_past) names what position p
     * holds: a text id (>= 0), or image id k, row j as -1 - (k * n_image_tokens + j). */
    int64_t *keys;      /* (context) */
    int n_keys;
    uint64_t next_image_id; /* ids of this model's embeddings, never reused */
    /* The current call's conversation. */
    int *conv;          /* (context) ids with IMAGE_TOKEN slots */
    image_ref *imgs;    /* (cap_imgs) one per IMAGE_TOKEN slot, in order */
    int cap_imgs;
    int64_t *pkeys;     /* (context) keys of the conversation's positions */
    const float **psrc; /* (context) image row of each position, NULL for text */
    int *gen;           /* (context + 1) generated ids */
    char *text;         /* (cap_text) decoded answer */
    size_t cap_text;
    float *emb;         /* (cap_emb_rows, dim) embeddings of the positions to compute */
    int cap_emb_rows;
    int generating;     /* inside run(): the cache is in use */
    float *logits;      /* (vocab) */
    float *probs;       /* (vocab) sampling scratch */
    int *order;         /* (vocab) sampling scratch */
    int *order_tmp;     /* (vocab) */
};

struct vlm_image_embed {
    vlm_model *owner;
    uint64_t id;
    float *data; /* (n_image_tokens, dim) */
    vlm_image_info info;
};

/* A finished turn. The image rows are the chat's own copy, so the caller may free its
 * embedding; answer_ids is used by template-less text models only. */
typedef struct turn {
    char *question;
    float *image; /* (n_image_tokens, dim) or NULL */
    uint64_t image_id;
    char *answer;    /* stripped answer text (NULL when answer_ids hold the answer) */
    int *answer_ids; /* (n_answer_ids) */
    int n_answer_ids;
} turn;

struct vlm_chat {
    vlm_model *v;
    turn *turns; /* (cap) */
    int n, cap;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

int vlm_default_threads(void)
{
    return pool_default_threads();
}

/* Opens the model and allocates the per-position bookkeeping (context-sized, small next to the
 * KV cache). */
int vlm_open(const char *path, int n_threads, vlm_model **out, vlm_error *err)
{
    *out = NULL;
    if (!path)
        return vlm_fail(err, VLM_EARG, "vlm_open: no path");
    if (n_threads < 1)
        return vlm_fail(err, VLM_EARG, "%s: n_threads must be >= 1, got %d", path, n_threads);
    vlm_model *v = calloc(1, sizeof *v);
    if (!v)
        return vlm_fail(err, VLM_ENOMEM, "out of memory");
    int rc = model_open(path, n_threads, NULL, &v->m, err);
    if (rc) {
        free(v);
        return rc;
    }
    const wf_config *c = &v->m.cfg;
    size_t ctx = c->max_seq_len;
    v->cap_text = 4096;
    v->keys = malloc(ctx * sizeof *v->keys);
    v->conv = malloc(ctx * sizeof *v->conv);
    v->pkeys = malloc(ctx * sizeof *v->pkeys);
    v->psrc = malloc(ctx * sizeof *v->psrc);
    v->gen = malloc((ctx + 1) * sizeof *v->gen);
    v->text = malloc(v->cap_text);
    v->logits = malloc(c->vocab_size * sizeof *v->logits);
    v->probs = malloc(c->vocab_size * sizeof *v->probs);
    v->order = malloc(c->vocab_size * sizeof *v->order);
    v->order_tmp = malloc(c->vocab_size * sizeof *v->order_tmp);
    if (!v->keys || !v->conv || !v->pkeys || !v->psrc || !v->gen || !v->text || !v->logits || !v->probs ||
        !v->order || !v->order_tmp) {
        vlm_close(v);
        return vlm_fail(err, VLM_ENOMEM, "%s: out of memory for the context of %zu positions", path, ctx);
    }
    v->text[0] = 0;
    v->info.has_vision = c->arch != ARCH_LLAMA;
    v->info.image_size = (int)c->v_image_size;
    v->info.n_image_tokens = v->m.n_image_tokens;
    v->info.vocab_size = (int)c->vocab_size;
    v->info.context_length = (int)c->max_seq_len;
    v->info.dim = (int)c->dim;
    v->info.n_layers = (int)c->n_layers;
    v->info.kernels = v->m.K->level;
    v->info.kv_cache = VLM_KV_F16;
    *out = v;
    return 0;
}

/* Frees the model; its embeddings and chats must be freed by the caller (before or after). */
void vlm_close(vlm_model *v)
{
    if (!v)
        return;
    model_close(&v->m);
    free(v->keys);
    free(v->conv);
    free(v->imgs);
    free(v->pkeys);
    free(v->psrc);
    free(v->gen);
    free(v->text);
    free(v->emb);
    free(v->logits);
    free(v->probs);
    free(v->order);
    free(v->order_tmp);
    free(v);
}

const vlm_info *vlm_get_info(const vlm_model *v) { return &v->info; }

int vlm_set_kv_cache(vlm_model *v, int kv_type, vlm_error *err)
{
    static const int elem[] = {[VLM_KV_F16] = WT_F16, [VLM_KV_F32] = WT_F32, [VLM_KV_Q8] = WT_Q8};
    if (kv_type != VLM_KV_F16 && kv_type != VLM_KV_F32 && kv_type != VLM_KV_Q8)
        return vlm_fail(err, VLM_EARG, "vlm_set_kv_cache: type %d is not VLM_KV_F16, VLM_KV_F32 or VLM_KV_Q8",
                        kv_type);
    if (v->generating)
        return vlm_fail(err, VLM_EARG, "vlm_set_kv_cache: the model is generating (called from a callback)");
    if (kv_type == v->info.kv_cache)
        return 0;
    int rc = model_set_kv_type(&v->m, elem[kv_type], err);
    if (rc)
        return rc;
    v->n_keys = 0; /* the cache holds nothing now */
    v->info.kv_cache = kv_type;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Tokenization of a conversation.                                                          */

/* The conversation being built in v->conv: n ids (at most cap = context), n_img image slots,
 * n_pos positions (an image slot spans n_image_tokens positions). */
typedef struct builder {
    vlm_model *v;
    int n, n_img, n_pos;
} builder;

static int too_long(builder *b, vlm_error *err)
{
    return vlm_fail(err, VLM_ERANGE,
                    "the prompt needs more than the %u positions of the context: shorten the question or "
                    "start a new conversation",
                    b->v->m.cfg.max_seq_len);
}

/* Appends one id (a text id or IMAGE_TOKEN with its image). */
static int put_id(builder *b, int id, const image_ref *img, vlm_error *err)
{
    vlm_model *v = b->v;
    int span = id == IMAGE_TOKEN ? v->m.n_image_tokens : 1;
    if (b->n_pos + span > (int)v->m.cfg.max_seq_len)
        return too_long(b, err);
    if (id == IMAGE_TOKEN) {
        if (b->n_img == v->cap_imgs) {
            int cap = v->cap_imgs ? 2 * v->cap_imgs : 4;
            image_ref *r = realloc(v->imgs, (size_t)cap * sizeof *r);
            if (!r)
                return vlm_fail(err, VLM_ENOMEM, "out of memory for the conversation's images");
            v->imgs = r;
            v->cap_imgs = cap;
        }
        v->imgs[b->n_img++] = img ? *img : (image_ref){NULL, 0};
    }
    v->conv[b->n++] = id;
    b->n_pos += span;
    return 0;
}

/* Appends sentencepiece's encoding of text[0:len] (dummy prefix included when non-empty). */
static int put_text(builder *b, const char *text, size_t len, vlm_error *err)
{
    if (!len)
        return 0;
    vlm_model *v = b->v;
    int ctx = (int)v->m.cfg.max_seq_len;
    size_t got = 0;
    int rc = tok_encode(v->m.tok, text, len, v->conv + b->n, (size_t)(ctx - b->n), &got, err);
    if (rc == VLM_ERANGE)
        return too_long(b, err);
    if (rc)
        return rc;
    if (b->n_pos + (int)got > ctx)
        return too_long(b, err);
    b->n += (int)got;
    b->n_pos += (int)got;
    return 0;
}

/* Appends a chunk the way the Hugging Face slow tokenizer reads it: the strings of the special
 * tokens (<s>, </s>, <unk>) become their ids, the text between them is encoded piece by piece. */
static int put_chunk(builder *b, const char *s, size_t len, vlm_error *err)
{
    const wf_config *c = &b->v->m.cfg;
    int special[3] = {(int)c->bos_id, (int)c->eos_id, 0};
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        int hit = -1;
        size_t hit_len = 0;
        if (s[i] == '<') {
            for (int k = 0; k < 3 && hit < 0; k++) {
                size_t pl;
                const char *p = tok_piece(b->v->m.tok, special[k], &pl);
                if (p && pl > 1 && p[0] == '<' && pl <= len - i && !memcmp(s + i, p, pl)) {
                    hit = special[k];
                    hit_len = pl;
                }
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        int rc = put_text(b, s + start, i - start, err);
        if (!rc)
            rc = put_id(b, hit, NULL, err);
        if (rc)
            return rc;
        i += hit_len;
        start = i;
    }
    return put_text(b, s + start, len - start, err);
}

/* A growable string: the text of the chunk between two images. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static int sb_add(sbuf *sb, const char *s, vlm_error *err)
{
    size_t len = strlen(s), need;
    if (ck_add(sb->n, len, &need) || ck_add(need, 1, &need))
        return vlm_fail(err, VLM_ERANGE, "conversation text too long");
    if (need > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 1024;
        while (cap < need)
            cap *= 2;
        char *t = realloc(sb->s, cap);
        if (!t)
            return vlm_fail(err, VLM_ENOMEM, "out of memory for the conversation text (%zu bytes)", need);
        sb->s = t;
        sb->cap = cap;
    }
    memcpy(sb->s + sb->n, s, len + 1);
    sb->n += len;
    return 0;
}

/* Ends the current chunk: encodes it, then the image slot if img is given. */
static int sb_flush(builder *b, sbuf *sb, const image_ref *img, vlm_error *err)
{
    int rc = put_chunk(b, sb->s ? sb->s : "", sb->n, err);
    sb->n = 0;
    if (!rc && img)
        rc = put_id(b, IMAGE_TOKEN, img, err);
    return rc;
}

/* Builds the ids of the conversation: the turns of c (NULL: none), then the pending question q
 * with its image (pending_img, or a slot without data when has_image and pending_img is NULL,
 * for tokenization only) and the assistant's cue. */
static int build(vlm_model *v, const vlm_chat *c, const char *q, int has_image, const image_ref *pending_img,
                 builder *b, vlm_error *err)
{
    const wf_config *cfg = &v->m.cfg;
    *b = (builder){v, 0, 0, 0};
    /* Every question and tokenization passes here. From an on_token or on_progress callback it
     * would rewrite the conversation, the KV cache and the answer the running call is still
     * using: the outer answer came back mixed with the inner one and the chat's turns wrong. */
    if (v->generating)
        return vlm_fail(err, VLM_EARG,
                        "the model is generating: a question or tokenization cannot be started from "
                        "its callback");
    if (has_image && cfg->chat_template == TEMPLATE_NONE)
        return vlm_fail(err, VLM_EARG, "this is a text-only model: it cannot take an image");
    if (has_image && cfg->arch == ARCH_LLAMA)
        return vlm_fail(err, VLM_EARG, "this model has no vision tower: it cannot take an image");
    int rc = put_id(b, (int)cfg->bos_id, NULL, err);
    if (rc)
        return rc;
    int n_turns = c ? c->n : 0;
    if (cfg->chat_template == TEMPLATE_NONE) {
        /* Text continuation: each prompt encoded on its own, answers as generated. */
        for (int t = 0; t <= n_turns && !rc; t++) {
            const char *s = t < n_turns ? c->turns[t].question : q;
            rc = put_text(b, s, strlen(s), err);
            if (rc || t == n_turns)
                break;
            const turn *tu = &c->turns[t];
            if (tu->answer)
                rc = put_text(b, tu->answer, strlen(tu->answer), err);
            for (int i = 0; !rc && i < tu->n_answer_ids; i++)
                rc = put_id(b, tu->answer_ids[i], NULL, err);
        }
        return rc;
    }
    /* conv "v1" (sep " ", sep2 "</s>"): system + " ", then per turn "USER: " [+ "<image>\n"]
     * + question + " " and "ASSISTANT: " + answer + "</s>", the last one ending at "ASSISTANT:".
     * get_prompt() writes an empty message like the pending one (`if message:` is false for
     * ""): the role and ":" without the space and the separator, so an empty question without
     * an image gives "USER:ASSISTANT:" and an empty answer "ASSISTANT:USER: ...".
     * Upstream splits the whole string at each <image> and encodes every chunk on its own. */
    sbuf sb = {0};
    rc = sb_add(&sb, system_prompt, err);
    if (!rc)
        rc = sb_add(&sb, " ", err);
    for (int t = 0; t <= n_turns && !rc; t++) {
        const turn *tu = t < n_turns ? &c->turns[t] : NULL;
        const char *question = tu ? tu->question : q;
        int img = tu ? tu->image != NULL : has_image;
        if (!img && !*question) {
            rc = sb_add(&sb, "USER:", err);
        } else {
            rc = sb_add(&sb, "USER: ", err);
            if (!rc && img) {
                image_ref r = tu ? (image_ref){tu->image, tu->image_id} : pending_img ? *pending_img : (image_ref){0};
                rc = sb_flush(b, &sb, &r, err);
                if (!rc)
                    rc = sb_add(&sb, "\n", err);
            }
            if (!rc)
                rc = sb_add(&sb, question, err);
            if (!rc)
                rc = sb_add(&sb, " ", err);
        }
        if (rc)
            break;
        const char *answer = tu && tu->answer ? tu->answer : "";
        if (!*answer) { /* the pending turn's cue, or an empty (stripped) answer */
            rc = sb_add(&sb, "ASSISTANT:", err);
            continue;
        }
        rc = sb_add(&sb, "ASSISTANT: ", err);
        if (!rc)
            rc = sb_add(&sb, answer, err);
        if (!rc)
            rc = sb_add(&sb, "</s>", err);
    }
    if (!rc)
        rc = sb_flush(b, &sb, NULL, err);
    free(sb.s);
    return rc;
}

/* Copies v->conv[0:b->n] to the caller's buffer. */
static int copy_ids(const builder *b, int *ids, int cap, int *n, vlm_error *err)
{
    if (b->n > cap)
        return vlm_fail(err, VLM_ERANGE, "the prompt has %d ids, the buffer holds %d", b->n, cap);
    memcpy(ids, b->v->conv, (size_t)b->n * sizeof *ids);
    *n = b->n;
    return 0;
}

int vlm_tokenize_prompt(vlm_model *v, const vlm_request *rq, int *ids, int cap, int *n, vlm_error *err)
{
    *n = 0;
    builder b;
    int rc = build(v, NULL, rq->prompt ? rq->prompt : "", rq->image_rgb != NULL, NULL, &b, err);
    return rc ? rc : copy_ids(&b, ids, cap, n, err);
}

int vlm_tokenize(vlm_model *v, const char *text, int *ids, int cap, int *n, vlm_error *err)
{
    *n = 0;
    if (!text || cap < 0)
        return vlm_fail(err, VLM_EARG, "vlm_tokenize: no text or negative capacity");
    size_t got = 0;
    int rc = tok_encode(v->m.tok, text, strlen(text), ids, (size_t)cap, &got, err);
    if (rc == VLM_ERANGE)
        return vlm_fail(err, VLM_ERANGE, "the text needs more than %d tokens", cap);
    *n = (int)got;
    return rc;
}

int vlm_detokenize(vlm_model *v, const int *ids, int n, char *out, size_t cap, size_t *len, vlm_error *err)
{
    *len = 0;
    if (n < 0 || (n > 0 && !ids) || !out || !cap)
        return vlm_fail(err, VLM_EARG, "vlm_detokenize: bad arguments (n %d, cap %zu)", n, cap);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v->info.vocab_size)
            return vlm_fail(err, VLM_ERANGE, "token id %d (at %d) outside the vocabulary [0, %d)", ids[i], i,
                            v->info.vocab_size);
    return tok_decode(v->m.tok, ids, (size_t)n, out, cap, len, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Images.                                                                                  */

int vlm_encode_image(vlm_model *v, const uint8_t *rgb, int width, int height, vlm_image_embed **out, vlm_error *err)
{
    *out = NULL;
    model *m = &v->m;
    const wf_config *c = &m->cfg;
    if (c->arch == ARCH_LLAMA)
        return vlm_fail(err, VLM_EARG, "%s: this is a text-only model: it cannot take an image", m->wf.path);
    if (!rgb || width < 1 || height < 1)
        return vlm_fail(err, VLM_EARG, "vlm_encode_image: no pixels or bad size %d x %d", width, height);
    int S = (int)c->v_image_size;
    int D = (int)c->dim;
    vlm_image_embed *img = calloc(1, sizeof *img);
    float *pixels = malloc((size_t)3 * S * S * sizeof(float));
    if (img)
        img->data = malloc((size_t)m->n_image_tokens * D * sizeof(float));
    if (!img || !pixels || !img->data) {
        free(pixels);
        vlm_image_embed_free(img);
        return vlm_fail(err, VLM_ENOMEM, "out of memory for the image embedding (%d x %d)", m->n_image_tokens, D);
    }
    double t0 = now_ms();
    uint8_t pad[3];
    for (int ch = 0; ch < 3; ch++) /* int(mean * 255): truncation, as upstream */
        pad[ch] = (uint8_t)(int)(c->image_mean[ch] * 255.0f);
    int rc = clip_preprocess(rgb, width, height, S, pad, c->image_mean, c->image_std, pixels, NULL, err);
    double t1 = now_ms();
    if (!rc)
        rc = model_encode_image(m, pixels, img->data, err);
    free(pixels);
    if (rc) {
        vlm_image_embed_free(img);
        return rc;
    }
    img->owner = v;
    img->id = v->next_image_id++;
    img->info = (vlm_image_info){m->n_image_tokens, D, img->data, t1 - t0, now_ms() - t1};
    *out = img;
    return 0;
}

int vlm_read_image(const char *path, int exif_rotate, uint8_t **rgb, int *width, int *height, vlm_error *err)
{
    *rgb = NULL;
    *width = *height = 0;
    vlm_image im;
    int rc = image_decode_file(path, exif_rotate ? IMAGE_EXIF_APPLY : IMAGE_EXIF_IGNORE, NULL, &im, err);
    if (rc)
        return rc;
    *rgb = im.rgb;
    *width = im.width;
    *height = im.height;
    return 0;
}

void vlm_free_rgb(uint8_t *rgb)
{
    vlm_image im = {0, 0, rgb};
    image_free(&im);
}

void vlm_image_embed_free(vlm_image_embed *img)
{
    if (!img)
        return;
    free(img->data);
    free(img);
}

const vlm_image_info *vlm_image_embed_info(const vlm_image_embed *img) { return &img->info; }

/* ---------------------------------------------------------------------------------------- */
/* The answer's text (sampling is in sample.c).                                            */

static int ensure_text(vlm_model *v, size_t need, vlm_error *err)
{
    if (need <= v->cap_text)
        return 0;
    size_t cap = v->cap_text * 2 > need ? v->cap_text * 2 : need;
    char *t = realloc(v->text, cap);
    if (!t)
        return vlm_fail(err, VLM_ENOMEM, "out of memory for the answer text (%zu bytes)", cap);
    v->text = t;
    v->cap_text = cap;
    return 0;
}

/* Decodes gen[0:n] into v->text, growing it as needed; *len gets the length. */
static int decode_answer(vlm_model *v, const int *gen, int n, size_t *len, vlm_error *err)
{
    for (;;) {
        int rc = tok_decode(v->m.tok, gen, (size_t)n, v->text, v->cap_text, len, err);
        if (rc != VLM_ERANGE || v->cap_text >= ((size_t)1 << 26)) /* 64 MB: not a real answer */
            return rc;
        rc = ensure_text(v, v->cap_text * 2, err);
        if (rc)
            return rc;
    }
}

/* Text bytes at the end of v->text, the decoded gen[0:n], that stand for an unfinished UTF-8
 * character: the answer's trailing byte pieces (<0xXX>) whose bytes can still become a valid
 * character when more bytes follow. Why: tok_decode writes each such byte as U+FFFD (3 bytes),
 * which the finished character replaces; streaming them printed replacement characters the
 * answer does not contain, and then the rest of the longer text from a byte offset inside the
 * finished character (invalid UTF-8). Returns 3 per unfinished byte (0 to 9). */
static size_t unfinished_tail(const vlm_model *v, const int *gen, int n)
{
    uint8_t tail[4];
    int k = 0;
    for (int i = n - 1, b; i >= 0 && k < 4 && (b = tok_byte_value(v->m.tok, gen[i])) >= 0; i--)
        tail[3 - k++] = (uint8_t)b;
    size_t stable = utf8_stable_prefix((const char *)tail + 4 - k, (size_t)k);
    return ((size_t)k - stable) * 3;
}

/* ---------------------------------------------------------------------------------------- */
/* Running a conversation.                                                                  */

/* Grows v->emb to rows rows of dim floats. */
static int ensure_emb(vlm_model *v, int rows, vlm_error *err)
{
    if (rows <= v->cap_emb_rows)
        return 0;
    size_t bytes;
    if (ck_mul3((size_t)rows, v->m.cfg.dim, sizeof(float), &bytes))
        return vlm_fail(err, VLM_ENOMEM, "prompt embeddings of %d rows overflow", rows);
    float *e = realloc(v->emb, bytes);
    if (!e)
        return vlm_fail(err, VLM_ENOMEM, "cannot allocate prompt embeddings (%d x %u)", rows, v->m.cfg.dim);
    v->emb = e;
    v->cap_emb_rows = rows;
    return 0;
}

/* Runs the conversation in v->conv (b): finds how many leading positions the KV cache already
 * holds, computes the others (at least the last one, for its logits), then samples and
 * streams the answer into v->gen / v->text. Returns VLM_ECANCELLED when on_token asks so. */
static int run_cached(vlm_model *v, const builder *b, const vlm_request *rq, vlm_result *res, vlm_error *err)
{
    model *m = &v->m;
    const wf_config *c = &m->cfg;
    int D = (int)c->dim;
    int ctx = (int)c->max_seq_len;
    int NI = m->n_image_tokens;
    int T = b->n_pos;

    /* The key and the source of each position. */
    int p = 0, img = 0;
    for (int i = 0; i < b->n; i++) {
        int id = v->conv[i];
        if (id != IMAGE_TOKEN) {
            v->pkeys[p] = id;
            v->psrc[p++] = NULL;
            continue;
        }
        const image_ref *r = &v->imgs[img++];
        for (int j = 0; j < NI; j++) {
            v->pkeys[p] = -1 - ((int64_t)r->id * NI + j);
            v->psrc[p++] = r->data + (size_t)j * D;
        }
    }
    int reuse = 0;
    while (reuse < v->n_keys && reuse < T && v->keys[reuse] == v->pkeys[reuse])
        reuse++;
    if (reuse == T) /* the last position is computed again: its logits start the answer */
        reuse--;
    m->n_past = reuse; /* the cache is append-only: truncating is forgetting the tail */
    v->n_keys = reuse;
    res->n_prompt_tokens = T;
    res->n_reused = reuse;
    res->n_prefilled = T - reuse;

    int P = T - reuse;
    int max_new = rq->max_new_tokens > 0 ? rq->max_new_tokens : INT_MAX;
    /* Room for the prompt and the whole answer before prefill, so the cache never grows (a
     * copy of all of it) between two tokens of the answer. */
    int rc = model_reserve(m, max_new < INT_MAX - T ? T + max_new : INT_MAX, err);
    if (!rc)
        rc = ensure_emb(v, P, err);
    if (rc)
        return rc;
    for (int q = 0; q < P; q++) {
        float *row = v->emb + (size_t)q * D;
        if (v->psrc[reuse + q])
            memcpy(row, v->psrc[reuse + q], (size_t)D * sizeof *row);
        else {
            int id = (int)v->pkeys[reuse + q];
            rc = model_embed(m, &id, 1, row, err);
            if (rc)
                return rc;
        }
    }
    if (rq->on_progress)
        rq->on_progress(rq->ctx, "prefill", 0, P);
    double t0 = now_ms();
    rc = model_forward(m, v->emb, P, v->logits, err);
    if (rc) {
        m->n_past = reuse;
        return rc;
    }
    memcpy(v->keys + reuse, v->pkeys + reuse, (size_t)P * sizeof *v->keys);
    v->n_keys = T;
    res->prefill_ms = now_ms() - t0;
    if (rq->on_progress)
        rq->on_progress(rq->ctx, "prefill", P, P);
    if (rq->logits_out)
        memcpy(rq->logits_out, v->logits, c->vocab_size * sizeof(float));

    /* Generation: each sampled id is fed back unless the answer ends with it. */
    sample_rng r = sample_rng_seed(rq->seed);
    int *gen = v->gen;
    size_t emitted = 0;
    int n_gen = 0, cancelled = 0;
    t0 = now_ms();
    v->text[0] = 0;
    res->ids = gen;
    res->text = v->text;
    for (;;) {
        int id;
        rc = sample_next(v->logits, (int)c->vocab_size, rq->temperature, rq->top_k, rq->top_p, v->probs, v->order,
                         v->order_tmp, &r, &id, err);
        if (rc)
            return rc;
        if (!rq->ignore_eos && (id == (int)c->eos_id || id == (int)c->bos_id)) {
            res->stop_reason = VLM_STOP_EOS;
            res->stopped_by_eos = 1;
            break;
        }
        gen[n_gen++] = id;
        res->n_ids = n_gen;
        /* Streaming text: decode the whole answer and emit what is new and complete; an
         * unfinished character is held back, unless this is the answer's last token (length or
         * context reached), so that the pieces add up to the answer's text. */
        size_t len = 0;
        rc = decode_answer(v, gen, n_gen, &len, err);
        if (rc)
            return rc;
        int last = n_gen >= max_new || m->n_past >= ctx;
        size_t stable = last ? len : len - unfinished_tail(v, gen, n_gen);
        if (rq->on_token) {
            char saved = v->text[stable];
            v->text[stable] = 0;
            int stop = rq->on_token(rq->ctx, id, stable > emitted ? v->text + emitted : "");
            v->text[stable] = saved;
            if (stop) {
                res->stop_reason = VLM_STOP_CALLBACK;
                cancelled = stop < 0;
                break;
            }
        }
        if (stable > emitted)
            emitted = stable;
        if (n_gen >= max_new) {
            res->stop_reason = VLM_STOP_LENGTH;
            break;
        }
        if (m->n_past >= ctx) {
            res->stop_reason = VLM_STOP_CONTEXT;
            break;
        }
        float *e = v->emb; /* one row of scratch */
        rc = model_embed(m, &id, 1, e, err);
        if (!rc)
            rc = model_forward(m, e, 1, v->logits, err);
        if (rc)
            return rc;
        v->keys[v->n_keys++] = id;
    }
    res->generate_ms = now_ms() - t0;
    res->n_past = m->n_past;
    if (cancelled)
        return vlm_fail(err, VLM_ECANCELLED, "cancelled by the token callback after %d tokens", n_gen);
    return 0;
}

/* run_cached with the cache marked in use, so that callbacks cannot change it underneath. */
static int run(vlm_model *v, const builder *b, const vlm_request *rq, vlm_result *res, vlm_error *err)
{
    /* Before anything changes: bad settings must leave the cache and the chat as they were. */
    int rc = sample_check(rq->temperature, rq->top_k, rq->top_p, err);
    if (rc)
        return rc;
    v->generating = 1;
    rc = run_cached(v, b, rq, res, err);
    v->generating = 0;
    return rc;
}

int vlm_generate(vlm_model *v, const vlm_request *rq, vlm_result *res, vlm_error *err)
{
    memset(res, 0, sizeof *res);
    vlm_image_embed *img = NULL;
    image_ref ref = {0};
    if (rq->image_rgb) {
        if (v->m.cfg.chat_template == TEMPLATE_NONE || v->m.cfg.arch == ARCH_LLAMA)
            return vlm_fail(err, VLM_EARG, "this is a text-only model: it cannot take an image");
        if (rq->on_progress)
            rq->on_progress(rq->ctx, "vision", 0, v->m.n_image_tokens);
        int rc = vlm_encode_image(v, rq->image_rgb, rq->image_width, rq->image_height, &img, err);
        if (rc)
            return rc;
        if (rq->on_progress)
            rq->on_progress(rq->ctx, "vision", v->m.n_image_tokens, v->m.n_image_tokens);
        res->preprocess_ms = img->info.preprocess_ms;
        res->vision_ms = img->info.vision_ms;
        ref = (image_ref){img->data, img->id};
    }
    builder b;
    int rc = build(v, NULL, rq->prompt ? rq->prompt : "", img != NULL, &ref, &b, err);
    if (!rc)
        rc = run(v, &b, rq, res, err);
    vlm_image_embed_free(img); /* its id is never reused: the cache keys stay unambiguous */
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Chats.                                                                                   */

int vlm_chat_new(vlm_model *v, vlm_chat **out, vlm_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return vlm_fail(err, VLM_ENOMEM, "out of memory for a chat");
    (*out)->v = v;
    return 0;
}

static void turn_free(turn *t)
{
    free(t->question);
    free(t->image);
    free(t->answer);
    free(t->answer_ids);
}

void vlm_chat_reset(vlm_chat *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        turn_free(&c->turns[i]);
    c->n = 0;
}

void vlm_chat_free(vlm_chat *c)
{
    if (!c)
        return;
    vlm_chat_reset(c);
    free(c->turns);
    free(c);
}

int vlm_chat_turns(const vlm_chat *c) { return c->n; }

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Byte length (1..3) of the character at s[0:n] when it is one Python's str.isspace()
 * accepts (what str.strip() removes: ASCII \t..\r, \x1c..\x1f and space, U+0085, U+00A0,
 * U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), else 0. Reads at most n
 * bytes, so any bytes are safe. */
static size_t py_space_at(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (n >= 1 && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r') || (s[0] >= 0x1c && s[0] <= 0x1f)))
        return 1;
    if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (n < 3)
        return 0;
    if ((s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) || (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) ||
        (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f))
        return 3;
    if (s[0] == 0xe2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3;
    return 0;
}

/* Byte length of the str.isspace() character that ends s[0:n], or 0 (see py_space_at). The
 * candidates of 1, 2 and 3 bytes cannot overlap: a space's last byte is ASCII or a
 * continuation byte, and only one lead byte can start each. */
static size_t py_space_before(const char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (py_space_at(s + n - k, k) == k)
            return k;
    return 0;
}

/* Checks that img may be used with the chat's model. */
static int check_image(const vlm_chat *c, const vlm_image_embed *img, vlm_error *err)
{
    if (img && img->owner != c->v)
        return vlm_fail(err, VLM_EARG, "the image embedding was made by another model: encode it with this one");
    return 0;
}

/* Appends a finished turn; answer_text (stripped here) or ids hold the answer. */
static int push_turn(vlm_chat *c, const char *q, const vlm_image_embed *img, const char *answer_text,
                     const int *ids, int n_ids, vlm_error *err)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        turn *t = realloc(c->turns, (size_t)cap * sizeof *t);
        if (!t)
            return vlm_fail(err, VLM_ENOMEM, "out of memory for the chat history");
        c->turns = t;
        c->cap = cap;
    }
    turn t = {0};
    int bad = !(t.question = dup_str(q));
    if (img && !bad) {
        size_t n = (size_t)img->info.n_tokens * img->info.dim;
        if ((t.image = malloc(n * sizeof(float))) != NULL)
            memcpy(t.image, img->data, n * sizeof(float));
        t.image_id = img->id;
        bad = !t.image;
    }
    if (answer_text && !bad) {
        /* upstream keeps outputs.strip() as the assistant's message: Python strips every
         * character str.isspace() accepts, not only ASCII whitespace */
        const char *s = answer_text;
        size_t len = strlen(s), k;
        while ((k = py_space_at(s, len)) != 0) {
            s += k;
            len -= k;
        }
        while ((k = py_space_before(s, len)) != 0)
            len -= k;
        if ((t.answer = malloc(len + 1)) != NULL) {
            memcpy(t.answer, s, len);
            t.answer[len] = 0;
        }
        bad = !t.answer;
    }
    if (ids && !bad) {
        t.answer_ids = malloc((size_t)(n_ids ? n_ids : 1) * sizeof *ids);
        if (t.answer_ids)
            memcpy(t.answer_ids, ids, (size_t)n_ids * sizeof *ids);
        t.n_answer_ids = n_ids;
        bad = !t.answer_ids;
    }
    if (bad) {
        turn_free(&t);
        return vlm_fail(err, VLM_ENOMEM, "out of memory for the chat history");
    }
    c->turns[c->n++] = t;
    return 0;
}

int vlm_chat_add_turn(vlm_chat *c, const char *question, const vlm_image_embed *image, const char *answer,
                      vlm_error *err)
{
    int rc = check_image(c, image, err);
    if (rc)
        return rc;
    if (!question || !answer)
        return vlm_fail(err, VLM_EARG, "vlm_chat_add_turn: question and answer are required");
    /* The turn must fit: build the conversation with it as a check. */
    builder b;
    image_ref r = image ? (image_ref){image->data, image->id} : (image_ref){0};
    rc = build(c->v, c, question, image != NULL, &r, &b, err);
    if (!rc)
        rc = push_turn(c, question, image, answer, NULL, 0, err);
    return rc;
}

int vlm_chat_tokenize(vlm_chat *c, const char *question, int has_image, int *ids, int cap, int *n, vlm_error *err)
{
    *n = 0;
    builder b;
    int rc = build(c->v, c, question ? question : "", has_image, NULL, &b, err);
    return rc ? rc : copy_ids(&b, ids, cap, n, err);
}

int vlm_chat_ask(vlm_chat *c, const vlm_request *rq, const vlm_image_embed *image, vlm_result *res, vlm_error *err)
{
    vlm_model *v = c->v;
    memset(res, 0, sizeof *res);
    int rc = check_image(c, image, err);
    if (rc)
        return rc;
    if (image && rq->image_rgb)
        return vlm_fail(err, VLM_EARG, "vlm_chat_ask: give the image either encoded or as pixels, not both");
    vlm_image_embed *own = NULL;
    if (rq->image_rgb) {
        if (v->m.cfg.chat_template == TEMPLATE_NONE || v->m.cfg.arch == ARCH_LLAMA)
            return vlm_fail(err, VLM_EARG, "this is a text-only model: it cannot take an image");
        if (rq->on_progress)
            rq->on_progress(rq->ctx, "vision", 0, v->m.n_image_tokens);
        rc = vlm_encode_image(v, rq->image_rgb, rq->image_width, rq->image_height, &own, err);
        if (rc)
            return rc;
        if (rq->on_progress)
            rq->on_progress(rq->ctx, "vision", v->m.n_image_tokens, v->m.n_image_tokens);
        res->preprocess_ms = own->info.preprocess_ms;
        res->vision_ms = own->info.vision_ms;
        image = own;
    }
    const char *q = rq->prompt ? rq->prompt : "";
    image_ref r = image ? (image_ref){image->data, image->id} : (image_ref){0};
    builder b;
    rc = build(v, c, q, image != NULL, &r, &b, err);
    if (!rc)
        rc = run(v, &b, rq, res, err);
    if (!rc) {
        if (v->m.cfg.chat_template == TEMPLATE_NONE)
            rc = push_turn(c, q, image, NULL, res->ids, res->n_ids, err);
        else
            rc = push_turn(c, q, image, res->text, NULL, 0, err);
    }
    vlm_image_embed_free(own);
    return rc;
}
