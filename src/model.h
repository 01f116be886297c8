/* model.h: a loaded model: the validated weight file bound to typed views per layer, the kernel
 * table, the thread pool, the activation buffers and the KV cache; and the three forward
 * passes (vision tower, projector, LLM). Everything the forward passes read was checked
 * against the configuration by model_open. */
#ifndef VLM_MODEL_H
#define VLM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "kernels.h"
#include "pool.h"
#include "tokenizer.h"
#include "wfile.h"

/* A weight matrix (n, k) of any type, used as y = x W^T. */
typedef struct matrix {
    uint32_t type; /* WT_F32 .. WT_Q4 */
    int n;         /* output features (rows) */
    int k;         /* input features (columns) */
    const void *w; /* (n, k) elements or (n, k/32) blocks, in the mapping */
} matrix;

typedef struct vit_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (v_dim) each */
    matrix wq, wk, wv, wo;                      /* (v_dim, v_dim) */
    const float *bq, *bk, *bv, *bo;             /* (v_dim) */
    matrix fc1;                                 /* (v_hidden, v_dim) */
    const float *fc1_b;                         /* (v_hidden) */
    matrix fc2;                                 /* (v_dim, v_hidden) */
    const float *fc2_b;                         /* (v_dim) */
} vit_layer;

typedef struct ldp_block {
    const float *dw;               /* (dim, 9) depthwise 3x3, no bias */
    const float *ln1_w, *ln1_b;    /* (dim) */
    matrix se1;                    /* (se_dim, dim) */
    const float *se1_b;            /* (se_dim) */
    matrix se2;                    /* (dim, se_dim) */
    const float *se2_b;            /* (dim) */
    matrix pw;                     /* (dim, dim) pointwise, no bias */
    const float *ln2_w, *ln2_b;    /* (dim) */
} ldp_block;

typedef struct llm_layer {
    const float *attn_norm, *ffn_norm; /* (dim) */
    matrix wq;                         /* (n_heads * head_dim, dim) */
    matrix wk, wv;                     /* (n_kv_heads * head_dim, dim) */
    matrix wo;                         /* (dim, n_heads * head_dim) */
    matrix gate, up;                   /* (hidden_dim, dim) */
    matrix down;                       /* (dim, hidden_dim) */
} llm_layer;

/* Called with each intermediate result when set (tests compare them with goldens).
 * stage names: vision_patch_embeds, vision_hidden (layer 0 = after pre-LN), projector_mlp,
 * projector_pooled, projector_block1, projector_output, llm_layer, llm_final_norm. */
typedef void (*model_probe_fn)(void *ctx, const char *stage, int layer, const float *data,
                               int rows, int cols);

typedef struct model {
    wfile wf;
    wf_config cfg;
    kernel_table kt;        /* this model's own copy: models with different levels coexist */
    const kernel_table *K;  /* &kt */
    pool *pool;
    tokenizer *tok;
    model_probe_fn probe;
    void *probe_ctx;

    /* vision tower */
    int v_grid, v_tokens;          /* grid g = image/patch; tokens = g*g + 1 (CLS) */
    matrix patch;                  /* (v_dim, 3 * patch * patch) */
    const float *cls, *pos_emb;    /* (v_dim), (v_tokens, v_dim) */
    const float *pre_ln_w, *pre_ln_b;
    vit_layer *vit;                /* (v_layers) */
    /* projector: v2 uses mlp_a/mlp_b + peg, v1 uses mlp_a/mlp_b + blocks */
    matrix mlp_a, mlp_b;           /* (dim, v_dim), (dim, dim) */
    const float *mlp_a_b, *mlp_b_b;
    const float *peg_w, *peg_b;    /* (dim, 9), (dim) */
    ldp_block blk[2];
    int n_image_tokens;            /* proj_grid^2 */

    /* LLM */
    uint32_t embed_type;
    const void *embed;             /* (vocab, dim) rows of embed_type */
    matrix out;                    /* (vocab, dim); the embedding when tied */
    const float *norm;             /* (dim) */
    llm_layer *llm;                /* (n_layers) */
    float *inv_freq;               /* (head_dim / 2) */

    /* KV cache: per layer (n_kv_heads, kv_cap, head_dim) elements, head-major (a head's keys
     * are one contiguous stream), grown on demand, of kv_type: WT_F16 (uint16_t, rounded to
     * nearest even; the default), WT_F32 (float), or WT_Q8 (each (head, position) row is
     * head_dim / 32 blk_q8, rounded by quant_q8). */
    void **kcache, **vcache;       /* (n_layers) pointers into kv_mem */
    unsigned char *kv_mem;         /* one mapping of kv_mapped bytes: every layer's K and V */
    size_t kv_mapped;
    int kv_cap;
    int kv_type;                   /* set by model_set_kv_type only */
    int n_past;

    /* milliseconds of the last model_encode_image, split by stage */
    double vit_ms, projector_ms;

    /* scratch, grown on demand to the largest batch seen */
    size_t scratch_floats;
    float *buf[6];
    float *rope_cs;                /* (rows, head_dim): each position's cosines, then sines */
    blk_q8 *qbuf;
    size_t qbuf_blocks;
} model;

/* 0 if the runtime accepts configuration c (bounds, head and grid arithmetic, projector grid,
 * eps and theta ranges), else VLM_EFORMAT with a message that starts with path and names the
 * field and its value. model_open applies it to every file; the converter applies it before
 * writing one, so that it never writes a file the runtime refuses. */
int model_check_config(const char *path, const wf_config *c, vlm_error *e);

/* Opens and validates a .vlm file, binds every tensor with its exact type and shape from the
 * configuration, builds the tokenizer and the thread pool (n_threads >= 1).
 * isa: NULL or a kernel level cap (see kernels_init). */
int model_open(const char *path, int n_threads, const char *isa, model *m, vlm_error *e);
void model_close(model *m);

/* pixels (3, S, S) -> image tokens (n_image_tokens, dim). */
int model_encode_image(model *m, const float *pixels, float *tokens, vlm_error *e);

/* Embedding rows of ids (n) -> out (n, dim); ids must be < vocab_size (VLM_ERANGE). */
int model_embed(model *m, const int *ids, int n, float *out, vlm_error *e);

/* Runs T input embeddings (T, dim) at positions n_past .. n_past + T - 1, appending to the KV
 * cache; writes the logits (vocab) of the last position when logits != NULL. */
int model_forward(model *m, const float *x, int T, float *logits, vlm_error *e);

/* Makes the KV cache hold `positions` positions (at most the context) now, keeping what it
 * holds, so that forward passes up to there never grow it: a growth copies the whole cache, a
 * pause that would otherwise fall in the middle of an answer. The memory is allocated, not
 * touched: pages become resident as positions are written. */
int model_reserve(model *m, int positions, vlm_error *e);

/* Forgets the KV cache contents (a new conversation). */
void model_reset(model *m);

/* Chooses the KV cache's element type: WT_F32 keeps keys and values exact (the arithmetic of
 * the reference implementation), WT_F16 (the default) rounds them to f16 (half the memory and
 * half the bytes attention reads per generated token), WT_Q8 to q8 blocks (34 bytes per 32
 * values; needs head_dim % 32 == 0). A change frees the cache and resets n_past to 0; the same
 * type again changes nothing. VLM_EARG (and nothing changed) for another type, or q8 with a
 * head_dim that 32 does not divide. */
int model_set_kv_type(model *m, int type, vlm_error *e);

/* Bytes of one (kv head, position) row of the KV cache in its current type. */
size_t model_kv_row_bytes(const model *m);

#endif
