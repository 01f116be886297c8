/* vlm.h: the public C API of the MobileVLM runtime (libvlm.a, pkg-config name "vlm").
 *
 *   vlm_model *m;  vlm_error err;
 *   if (vlm_open("model.vlm", 4, &m, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *   vlm_request rq = {.prompt = "What is in the image?", .image_rgb = rgb, .image_width = w,
 *                     .image_height = h, .max_new_tokens = 256, .on_token = print_piece};
 *   vlm_generate(m, &rq, &result, &err);        // one question, or:
 *   vlm_encode_image(m, rgb, w, h, &img, &err); // encode once,
 *   vlm_chat_new(m, &chat, &err);               // then a conversation that keeps its KV cache:
 *   vlm_chat_ask(chat, &rq, img, &result, &err);  ... vlm_chat_ask(chat, &rq2, NULL, ...);
 *   vlm_chat_free(chat); vlm_image_embed_free(img); vlm_close(m);
 *
 * Every function returns 0 or a negative VLM_E* code and fills the vlm_error with a message
 * naming the file, the object and the values. There is no global state: a vlm_model (with its
 * chats and image embeddings) is used by one thread at a time, and any number of models may be
 * used at once, one per thread. Results do not depend on the number of threads. The calling
 * thread computes its share of the work too: give it at least 256 KB of stack (the default of
 * glibc threads and of main threads is 8 MB; musl threads need pthread_attr_setstacksize). */
#ifndef VLM_H
#define VLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    VLM_OK = 0,
    VLM_EIO = -1,          /* cannot open, read, map or write a file */
    VLM_EFORMAT = -2,      /* malformed input bytes */
    VLM_ERANGE = -3,       /* a value outside the supported limits */
    VLM_ENOMEM = -4,       /* allocation failed or over the memory budget */
    VLM_EUNSUPPORTED = -5, /* valid input using a feature we do not implement */
    VLM_EARG = -6,         /* bad argument from the caller */
    VLM_ECANCELLED = -7,   /* the caller's callback asked to stop */
};

typedef struct vlm_error {
    int code;
    char msg[512];
} vlm_error;

typedef struct vlm_model vlm_model;

typedef struct vlm_info {
    int has_vision;      /* 0 for text-only LLaMA models */
    int image_size;      /* model input side in pixels (336 for MobileVLM) */
    int n_image_tokens;  /* 144 for MobileVLM */
    int vocab_size;
    int context_length;
    int dim, n_layers;
    const char *kernels; /* kernel level in use, e.g. "avx2" */
    int kv_cache;        /* VLM_KV_F16, VLM_KV_F32 or VLM_KV_Q8: the KV cache's element type now */
} vlm_info;

/* A good n_threads for vlm_open: the fast CPUs this process may run on (the big and prime cores
 * of a big.LITTLE CPU, the performance cores of an Intel hybrid one: src/pool.h says how they
 * are found), or every CPU it may run on when they cannot be told apart. */
int vlm_default_threads(void);

/* Opens a .vlm file (validated completely) with n_threads worker threads (>= 1). */
int vlm_open(const char *path, int n_threads, vlm_model **out, vlm_error *err);
void vlm_close(vlm_model *m);
const vlm_info *vlm_get_info(const vlm_model *m);

/* Element types of the KV cache (vlm_set_kv_cache). */
enum {
    VLM_KV_F16 = 0, /* the default: IEEE half, rounded to nearest even */
    VLM_KV_F32 = 1, /* float: the arithmetic of the reference implementation */
    VLM_KV_Q8 = 2,  /* int8 codes with one f16 scale per 32 values (34 bytes per 32) */
};

/* Chooses the element type of m's KV cache (the keys and values of every position computed so far,
 * per layer). VLM_KV_F16, the default, takes half the memory (1.7B: 192 KB per position instead of
 * 384 KB) and halves the bytes attention reads per generated token; keys and values are rounded to
 * f16 once as they are stored (relative error <= 2^-11), which typically moves logits by about
 * 1e-3 of their scale. VLM_KV_F32 keeps them exactly: results match the PyTorch reference within
 * 1e-4. VLM_KV_Q8 takes 0.53 of the f16 cache's bytes: each (head, position) row of keys or values
 * is stored as blocks of 32 int8 codes with one f16 scale, rounded as quantized activations are
 * (error <= 1/225 of the block's largest |value|), which moved the logits of the test models by
 * 0.7-3.3% of their scale, 25-36 times as much as f16; it suits long contexts, where the cache
 * dominates what a generated token reads. It needs head_dim % 32 == 0 (MobileVLM 1.7B and 7B: 128;
 * not the 3B models, 80) and fails with VLM_EARG otherwise. Choose before the first question;
 * calling it later is safe between calls: changing the type frees the cache, so the next call
 * recomputes everything (n_reused 0), and chats keep their turns (their next question reads the
 * whole conversation again, in the new type). The type already in use changes nothing. VLM_EARG
 * for another value, or from a callback while m is generating. */
int vlm_set_kv_cache(vlm_model *m, int kv_type, vlm_error *err);

/* Called with each generated token as soon as it is sampled: text is the new UTF-8 text it
 * completes (may be "" while a multi-byte character is incomplete). Return
 *    0  to go on,
 *   >0  to stop cleanly: the call returns 0 with stop_reason VLM_STOP_CALLBACK, and in a chat
 *       the answer so far (this token included) stays in the history;
 *   <0  to cancel: the call returns VLM_ECANCELLED and a chat forgets the whole turn (the
 *       result still holds the tokens generated so far). */
typedef int (*vlm_token_fn)(void *ctx, int token_id, const char *text);

/* Called (when set) before and after each long step: stage is "vision" (encoding the image)
 * or "prefill" (reading the prompt); done/total count image tokens or prompt positions.
 * Meant for progress displays; it cannot stop the work. */
typedef void (*vlm_progress_fn)(void *ctx, const char *stage, int done, int total);

typedef struct vlm_request {
    const char *prompt;          /* the user's question (or raw text for text-only models) */
    const uint8_t *image_rgb;    /* (image_height, image_width, 3), or NULL for no image */
    int image_width, image_height;
    int max_new_tokens;          /* <= 0: until EOS or the end of the context */
    int ignore_eos;
    float temperature;           /* 0: greedy (argmax); finite and >= 0, else VLM_EARG */
    int top_k;                   /* 0: off (transformers' default is 50); >= 0, else VLM_EARG */
    float top_p;                 /* 1 (or 0): off; in [0, 1], else VLM_EARG. A NaN logit while
                                    sampling or choosing greedily is VLM_ERANGE */
    uint64_t seed;
    vlm_token_fn on_token;
    void *ctx;
    float *logits_out;           /* (vocab_size) logits of the last prompt position, or NULL */
    vlm_progress_fn on_progress; /* NULL: none; called with ctx */
} vlm_request;

typedef struct vlm_result {
    int *ids;            /* (n_ids) generated token ids, owned by the model until the next call */
    int n_ids;
    const char *text;    /* the whole decoded answer, owned likewise */
    int n_prompt_tokens; /* positions prefilled (text tokens + image tokens) */
    int stopped_by_eos;
    /* milliseconds; preprocess and vision (tower + projector; projector_ms stays 0) only when
     * this call encoded the image */
    double preprocess_ms, vision_ms, projector_ms, prefill_ms, generate_ms;
    /* n_prompt_tokens = n_reused + n_prefilled: positions found in the KV cache (the earlier
     * turns of a conversation, or a prefix shared with the previous call) and positions
     * computed by this call. */
    int n_reused, n_prefilled;
    int n_past;          /* positions held in the KV cache after the call */
    int stop_reason;     /* VLM_STOP_* */
} vlm_result;

enum {
    VLM_STOP_EOS = 1,      /* the model ended its answer (EOS, or BOS) */
    VLM_STOP_LENGTH = 2,   /* max_new_tokens reached */
    VLM_STOP_CONTEXT = 3,  /* the context is full */
    VLM_STOP_CALLBACK = 4, /* on_token returned > 0 (or < 0: VLM_ECANCELLED) */
};

/* Builds the model's prompt (the MobileVLM conversation template with the image, or BOS +
 * raw text for text-only models), runs it and generates. Each call starts a new conversation
 * (a prefix it shares with the previous call, such as the system prompt, is taken from the KV
 * cache: the result is the same). The result's ids and text are owned by the model and valid
 * until the next call on it. */
int vlm_generate(vlm_model *m, const vlm_request *rq, vlm_result *res, vlm_error *err);

/* Token ids the prompt of rq becomes (the image is -200, as upstream writes it). */
int vlm_tokenize_prompt(vlm_model *m, const vlm_request *rq, int *ids, int cap, int *n, vlm_error *err);

/* ---- Images: encode once, use in any number of questions and conversations. ---- */

typedef struct vlm_image_embed vlm_image_embed;

typedef struct vlm_image_info {
    int n_tokens, dim;                /* shape of data: (n_tokens, dim) */
    const float *data;                /* the projector's output, read-only */
    double preprocess_ms, vision_ms;  /* time spent by vlm_encode_image */
} vlm_image_info;

/* Resizes, normalises and encodes an RGB photo (height, width, 3) with the vision tower and the
 * projector of m. The embedding belongs to m (use it only with m) and is freed with
 * vlm_image_embed_free; it may be freed while conversations that used it go on. VLM_EARG for a
 * text-only model. */
int vlm_encode_image(vlm_model *m, const uint8_t *rgb, int width, int height, vlm_image_embed **out,
                     vlm_error *err);
/* Decodes a JPEG, PNG or PNM file into *rgb (height, width, 3), freed with vlm_free_rgb.
 * exif_rotate: 1 turns camera photos upright by their EXIF orientation (upstream feeds the
 * pixels as stored: 0). Untrusted files are safe: sizes are checked, bombs refused. */
int vlm_read_image(const char *path, int exif_rotate, uint8_t **rgb, int *width, int *height, vlm_error *err);
void vlm_free_rgb(uint8_t *rgb);
void vlm_image_embed_free(vlm_image_embed *img);
const vlm_image_info *vlm_image_embed_info(const vlm_image_embed *img);

/* ---- Conversations: multi-turn chat that reuses the KV cache. ----
 *
 * The conversation is the MobileVLM "v1" template over all turns,
 *   SYSTEM USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:
 * tokenized the way upstream tokenizes such a prompt: split at the image, each chunk encoded on
 * its own with the special-token strings <s>, </s>, <unk> mapped to their ids (the Hugging Face
 * slow tokenizer's behaviour), Ai being the answer text as decoded and stripped. Each turn
 * computes only the positions that differ from what the KV cache holds, so an answer is the
 * one a fresh run on the whole conversation text gives. Text-only models without a template
 * continue the text instead: BOS, then each prompt's tokens followed by the generated ids.
 * A question's own text is literal: "<image>" in it is text, not an image slot. */

typedef struct vlm_chat vlm_chat;

int vlm_chat_new(vlm_model *m, vlm_chat **out, vlm_error *err);
void vlm_chat_free(vlm_chat *c);
/* Forgets the turns: the next question starts a new conversation. NULL: nothing. */
void vlm_chat_reset(vlm_chat *c);
int vlm_chat_turns(const vlm_chat *c);

/* Asks rq->prompt as the next turn, with image (NULL: none; or rq->image_rgb, encoded here) in
 * front of the question, and generates the answer with rq's sampling settings and callbacks.
 * The result is owned by the model as for vlm_generate. VLM_ERANGE when the conversation no
 * longer fits the context (the chat is unchanged: reset it or start a new one). */
int vlm_chat_ask(vlm_chat *c, const vlm_request *rq, const vlm_image_embed *image, vlm_result *res,
                 vlm_error *err);

/* Appends a finished turn (question, optional image, answer text) without generating: restores
 * a saved conversation. The answer is used as given (upstream strips it). Nothing is computed
 * until the next vlm_chat_ask. For template-less text models the answer is appended as text. */
int vlm_chat_add_turn(vlm_chat *c, const char *question, const vlm_image_embed *image, const char *answer,
                      vlm_error *err);

/* The ids a fresh run on the whole conversation with the question rq->prompt (and image when
 * has_image) appended would read: images appear as -200. */
int vlm_chat_tokenize(vlm_chat *c, const char *question, int has_image, int *ids, int cap, int *n, vlm_error *err);

/* ---- Tokens. ---- */

/* Plain tokenizer: text (no template, no BOS; special-token strings are text) -> ids. */
int vlm_tokenize(vlm_model *m, const char *text, int *ids, int cap, int *n, vlm_error *err);
/* ids -> UTF-8 text (NUL-terminated, cap bytes); VLM_ERANGE for an id outside the vocabulary or
 * a too small buffer. *len gets the length. */
int vlm_detokenize(vlm_model *m, const int *ids, int n, char *out, size_t cap, size_t *len, vlm_error *err);

const char *vlm_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
