/* plan.h: the list of tensors a .vlm file holds for a configuration, with their types and
 * shapes, and the Hugging Face names they come from. Shared by convert (real checkpoints) and
 * synth (random weights with the real shapes), so both write exactly what model_open binds. */
#ifndef VLM_PLAN_H
#define VLM_PLAN_H

#include <stdint.h>

#include "err.h"
#include "source.h"
#include "wfile.h"

enum { ROLE_MATRIX, ROLE_VECTOR, ROLE_NORM, ROLE_CONV9, ROLE_TABLE };

typedef struct plan_tensor {
    char name[WF_NAME_MAX]; /* ours, e.g. "t.3.q" */
    char hf[160];           /* Hugging Face name, e.g. "model.layers.3.self_attn.q_proj.weight" */
    int role;               /* ROLE_*: matrices get the quantized type, the rest f32 */
    uint32_t type;
    uint32_t ndim;
    uint32_t dims[2];
    const src_tensor *src;  /* convert: bound source tensor */
} plan_tensor;

typedef struct plan {
    plan_tensor *t; /* (n) */
    int n;
    int cap;
} plan;

/* Lists every tensor for cfg (tokenizer tensors excluded). vision_prefix is the HF prefix of
 * vision tower names ("model.vision_tower.vision_tower." or ""). llm_type / vis_type: the
 * matrix types; matrices whose row length is not a multiple of 32 fall back to f16. */
int plan_model(const wf_config *cfg, const char *vision_prefix, int llm_type, int vis_type, plan *p,
               vlm_error *e);
void plan_free(plan *p);

/* Writes cfg, the tokenizer arrays and the planned tensors to path. get(ctx, t, out) fills
 * out (numel floats, row-major) with the values of t. */
typedef struct tok_arrays {
    int n;
    const uint8_t *text;
    uint32_t text_len;
    const uint32_t *offsets; /* (n + 1) */
    const float *scores;     /* (n) */
    const uint8_t *types;    /* (n) */
} tok_arrays;

int plan_write(const char *path, const wf_config *cfg, const tok_arrays *tok, const plan *p,
               int (*get)(void *ctx, const plan_tensor *t, float *out, vlm_error *e), void *ctx,
               void (*progress)(void *ctx, int done, int total, const char *name, uint64_t bytes),
               void *progress_ctx, vlm_error *e);

#endif
