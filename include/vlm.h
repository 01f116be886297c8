/* vlm.h: the public C API of the MobileVLM runtime (libvlm.a).
 *
 *   vlm_model *m;  vlm_error err;
 *   if (vlm_open("model.vlm", 4, &m, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *   vlm_request rq = {.prompt = "What is in the image?", .image_rgb = rgb, .image_width = w,
 *                     .image_height = h, .max_new_tokens = 256, .on_token = print_piece};
 *   vlm_generate(m, &rq, &result, &err);
 *   vlm_close(m);
 *
 * Every function returns 0 or a negative VLM_E* code and fills the vlm_error with a message
 * naming the file, the object and the values. A vlm_model is used by one thread at a time;
 * several models (contexts) may live in one process. */
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
} vlm_info;

/* Opens a .vlm file (validated completely) with n_threads worker threads (>= 1). */
int vlm_open(const char *path, int n_threads, vlm_model **out, vlm_error *err);
void vlm_close(vlm_model *m);
const vlm_info *vlm_get_info(const vlm_model *m);

/* Called with each generated token as soon as it is sampled: text is the new UTF-8 text it
 * completes (may be "" while a multi-byte character is incomplete). Return nonzero to stop. */
typedef int (*vlm_token_fn)(void *ctx, int token_id, const char *text);

typedef struct vlm_request {
    const char *prompt;          /* the user's question (or raw text for text-only models) */
    const uint8_t *image_rgb;    /* (image_height, image_width, 3), or NULL for no image */
    int image_width, image_height;
    int max_new_tokens;          /* <= 0: until EOS or the end of the context */
    int ignore_eos;
    float temperature;           /* 0: greedy (argmax) */
    int top_k;                   /* 0: off */
    float top_p;                 /* 1 (or 0): off */
    uint64_t seed;
    vlm_token_fn on_token;
    void *ctx;
    float *logits_out;           /* (vocab_size) logits of the last prompt position, or NULL */
} vlm_request;

typedef struct vlm_result {
    int *ids;            /* (n_ids) generated token ids, owned by the model until the next call */
    int n_ids;
    const char *text;    /* the whole decoded answer, owned likewise */
    int n_prompt_tokens; /* positions prefilled (text tokens + image tokens) */
    int stopped_by_eos;
    /* milliseconds */
    double preprocess_ms, vision_ms, projector_ms, prefill_ms, generate_ms;
} vlm_result;

/* Builds the model's prompt (the MobileVLM conversation template with the image, or BOS +
 * raw text for text-only models), runs it and generates. Each call starts a new conversation. */
int vlm_generate(vlm_model *m, const vlm_request *rq, vlm_result *res, vlm_error *err);

/* Token ids the prompt of rq becomes (the image is -200, as upstream writes it). */
int vlm_tokenize_prompt(vlm_model *m, const vlm_request *rq, int *ids, int cap, int *n, vlm_error *err);

const char *vlm_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
