/* plan.c: the tensor list of a configuration and the writer that quantizes and streams it into
 * a .vlm file (see plan.h). Quantization uses the one reference quantizer (kernels/ref/quant.c). */
#include "plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"
#include "wwrite.h"

static int add(plan *p, vlm_error *e, int role, uint32_t type, uint32_t d0, uint32_t d1, const char *hf,
               const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static int add(plan *p, vlm_error *e, int role, uint32_t type, uint32_t d0, uint32_t d1, const char *hf,
               const char *fmt, ...)
{
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 256;
        plan_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t)
            return vlm_fail(e, VLM_ENOMEM, "out of memory");
        p->t = t;
        p->cap = cap;
    }
    plan_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    snprintf(t->hf, sizeof t->hf, "%s", hf);
    t->role = role;
    t->ndim = d1 ? 2 : 1;
    t->dims[0] = d0;
    t->dims[1] = d1;
    if (role == ROLE_MATRIX)
        t->type = (type == WT_Q8 || type == WT_Q4) && d1 % QK ? WT_F16 : type;
    else
        t->type = WT_F32;
    return 0;
}

int plan_model(const wf_config *c, const char *vp, int lt, int vt, plan *p, vlm_error *e)
{
    memset(p, 0, sizeof *p);
    char hf[160];
    int rc = 0;
#define ADD(role, type, d0, d1, ...)                                  \
    do {                                                              \
        if (!rc)                                                      \
            rc = add(p, e, role, type, d0, d1, hf, __VA_ARGS__);      \
    } while (0)
#define HF(...) snprintf(hf, sizeof hf, __VA_ARGS__)
    uint32_t D = c->dim;
    uint32_t F = c->hidden_dim;
    uint32_t qd = c->n_heads * c->head_dim;
    uint32_t kvd = c->n_kv_heads * c->head_dim;
    HF("model.embed_tokens.weight");
    ADD(ROLE_MATRIX, lt, c->vocab_size, D, "t.embed");
    if (!c->tied_embeddings) {
        HF("lm_head.weight");
        ADD(ROLE_MATRIX, lt, c->vocab_size, D, "t.out");
    }
    HF("model.norm.weight");
    ADD(ROLE_NORM, WT_F32, D, 0, "t.norm");
    static const struct {
        const char *ours, *hf;
        int kind; /* 0 norm, 1 q, 2 kv, 3 o, 4 ffn in, 5 ffn out */
    } llm[] = {
        {"attn_norm", "input_layernorm.weight", 0},
        {"ffn_norm", "post_attention_layernorm.weight", 0},
        {"q", "self_attn.q_proj.weight", 1},
        {"k", "self_attn.k_proj.weight", 2},
        {"v", "self_attn.v_proj.weight", 2},
        {"o", "self_attn.o_proj.weight", 3},
        {"gate", "mlp.gate_proj.weight", 4},
        {"up", "mlp.up_proj.weight", 4},
        {"down", "mlp.down_proj.weight", 5},
    };
    for (uint32_t l = 0; l < c->n_layers; l++)
        for (size_t i = 0; i < sizeof llm / sizeof llm[0]; i++) {
            HF("model.layers.%u.%s", l, llm[i].hf);
            uint32_t shapes[6][2] = {{D, 0}, {qd, D}, {kvd, D}, {D, qd}, {F, D}, {D, F}};
            const uint32_t *s = shapes[llm[i].kind];
            ADD(llm[i].kind ? ROLE_MATRIX : ROLE_NORM, lt, s[0], s[1], "t.%u.%s", l, llm[i].ours);
        }
    if (c->arch != ARCH_LLAMA) {
        uint32_t C = c->v_dim;
        uint32_t g = c->v_image_size / c->v_patch_size;
        uint32_t pp = 3 * c->v_patch_size * c->v_patch_size;
        HF("%svision_model.embeddings.patch_embedding.weight", vp);
        ADD(ROLE_MATRIX, vt, C, pp, "v.patch");
        HF("%svision_model.embeddings.class_embedding", vp);
        ADD(ROLE_VECTOR, WT_F32, C, 0, "v.cls");
        HF("%svision_model.embeddings.position_embedding.weight", vp);
        ADD(ROLE_TABLE, WT_F32, g * g + 1, C, "v.pos");
        HF("%svision_model.pre_layrnorm.weight", vp);
        ADD(ROLE_NORM, WT_F32, C, 0, "v.pre_ln.w");
        HF("%svision_model.pre_layrnorm.bias", vp);
        ADD(ROLE_VECTOR, WT_F32, C, 0, "v.pre_ln.b");
        static const struct {
            const char *ours, *hf;
            int kind; /* 0 norm weight, 1 bias C, 2 matrix CxC, 3 fc1, 4 fc1 bias, 5 fc2 */
        } vit[] = {
            {"ln1.w", "layer_norm1.weight", 0}, {"ln1.b", "layer_norm1.bias", 1},
            {"ln2.w", "layer_norm2.weight", 0}, {"ln2.b", "layer_norm2.bias", 1},
            {"q.w", "self_attn.q_proj.weight", 2}, {"q.b", "self_attn.q_proj.bias", 1},
            {"k.w", "self_attn.k_proj.weight", 2}, {"k.b", "self_attn.k_proj.bias", 1},
            {"v.w", "self_attn.v_proj.weight", 2}, {"v.b", "self_attn.v_proj.bias", 1},
            {"o.w", "self_attn.out_proj.weight", 2}, {"o.b", "self_attn.out_proj.bias", 1},
            {"fc1.w", "mlp.fc1.weight", 3}, {"fc1.b", "mlp.fc1.bias", 4},
            {"fc2.w", "mlp.fc2.weight", 5}, {"fc2.b", "mlp.fc2.bias", 1},
        };
        for (uint32_t l = 0; l < c->v_layers; l++)
            for (size_t i = 0; i < sizeof vit / sizeof vit[0]; i++) {
                HF("%svision_model.encoder.layers.%u.%s", vp, l, vit[i].hf);
                uint32_t H = c->v_hidden_dim;
                uint32_t shapes[6][2] = {{C, 0}, {C, 0}, {C, C}, {H, C}, {H, 0}, {C, H}};
                const uint32_t *s = shapes[vit[i].kind];
                int role = vit[i].kind == 0 ? ROLE_NORM : s[1] ? ROLE_MATRIX : ROLE_VECTOR;
                ADD(role, vt, s[0], s[1], "v.%u.%s", l, vit[i].ours);
            }
        const char *mp = "model.mm_projector.";
        int v2 = c->arch == ARCH_MOBILEVLM_V2;
        HF("%s%s.weight", mp, v2 ? "mlp.mlp.0" : "model.mlp.1");
        ADD(ROLE_MATRIX, vt, D, C, "p.mlp_a.w");
        HF("%s%s.bias", mp, v2 ? "mlp.mlp.0" : "model.mlp.1");
        ADD(ROLE_VECTOR, WT_F32, D, 0, "p.mlp_a.b");
        HF("%s%s.weight", mp, v2 ? "mlp.mlp.2" : "model.mlp.3");
        ADD(ROLE_MATRIX, vt, D, D, "p.mlp_b.w");
        HF("%s%s.bias", mp, v2 ? "mlp.mlp.2" : "model.mlp.3");
        ADD(ROLE_VECTOR, WT_F32, D, 0, "p.mlp_b.b");
        if (v2) {
            HF("%speg.peg.0.weight", mp);
            ADD(ROLE_CONV9, WT_F32, D, 9, "p.peg.w");
            HF("%speg.peg.0.bias", mp);
            ADD(ROLE_VECTOR, WT_F32, D, 0, "p.peg.b");
        } else {
            uint32_t S = c->se_dim;
            for (int b = 1; b <= 2; b++) {
                const char *bp = "model.mm_projector.model.mb_block";
                HF("%s.%d.block.0.0.weight", bp, b);
                ADD(ROLE_CONV9, WT_F32, D, 9, "p.b%d.dw", b);
                HF("%s.%d.block.0.1.weight", bp, b);
                ADD(ROLE_NORM, WT_F32, D, 0, "p.b%d.ln1.w", b);
                HF("%s.%d.block.0.1.bias", bp, b);
                ADD(ROLE_VECTOR, WT_F32, D, 0, "p.b%d.ln1.b", b);
                HF("%s.%d.block.1.fc1.weight", bp, b);
                ADD(ROLE_MATRIX, vt, S, D, "p.b%d.se1.w", b);
                HF("%s.%d.block.1.fc1.bias", bp, b);
                ADD(ROLE_VECTOR, WT_F32, S, 0, "p.b%d.se1.b", b);
                HF("%s.%d.block.1.fc2.weight", bp, b);
                ADD(ROLE_MATRIX, vt, D, S, "p.b%d.se2.w", b);
                HF("%s.%d.block.1.fc2.bias", bp, b);
                ADD(ROLE_VECTOR, WT_F32, D, 0, "p.b%d.se2.b", b);
                HF("%s.%d.block.2.0.weight", bp, b);
                ADD(ROLE_MATRIX, vt, D, D, "p.b%d.pw.w", b);
                HF("%s.%d.block.2.1.weight", bp, b);
                ADD(ROLE_NORM, WT_F32, D, 0, "p.b%d.ln2.w", b);
                HF("%s.%d.block.2.1.bias", bp, b);
                ADD(ROLE_VECTOR, WT_F32, D, 0, "p.b%d.ln2.b", b);
            }
        }
    }
#undef ADD
#undef HF
    if (rc)
        plan_free(p);
    return rc;
}

void plan_free(plan *p)
{
    free(p->t);
    memset(p, 0, sizeof *p);
}

/* Encodes f32 values into the tensor's type; out must hold its nbytes. */
static void encode(const plan_tensor *t, const float *x, void *out)
{
    size_t n = t->dims[0] * (size_t)(t->ndim > 1 ? t->dims[1] : 1);
    size_t row = t->ndim > 1 ? t->dims[1] : n;
    switch (t->type) {
    case WT_F32:
        memcpy(out, x, n * sizeof(float));
        break;
    case WT_F16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)out)[i] = f32_to_f16(x[i]);
        break;
    case WT_Q8:
        for (size_t r = 0; r < n / row; r++)
            quant_row_q8((int)row, x + r * row, (blk_q8 *)out + r * (row / QK));
        break;
    case WT_Q4:
        for (size_t r = 0; r < n / row; r++)
            quant_row_q4((int)row, x + r * row, (uint8_t *)out + r * q4_row_bytes((int)(row / QK)));
        break;
    }
}

int plan_write(const char *path, const wf_config *cfg, const tok_arrays *tok, const plan *p,
               int (*get)(void *ctx, const plan_tensor *t, float *out, vlm_error *e), void *ctx,
               void (*progress)(void *, int, int, const char *, uint64_t), void *progress_ctx, vlm_error *e)
{
    wwriter *w;
    int total = p->n + 4;
    int rc = ww_begin(path, cfg, (uint32_t)total, &w, e);
    if (rc)
        return rc;
    uint32_t n = (uint32_t)tok->n;
    uint32_t d_text[1] = {tok->text_len};
    uint32_t d_off[1] = {n + 1};
    uint32_t d_n[1] = {n};
    rc = ww_add(w, "tok.text", WT_U8, 1, d_text, tok->text, tok->text_len, e);
    if (!rc)
        rc = ww_add(w, "tok.offsets", WT_I32, 1, d_off, tok->offsets, (uint64_t)(n + 1) * 4, e);
    if (!rc)
        rc = ww_add(w, "tok.scores", WT_F32, 1, d_n, tok->scores, (uint64_t)n * 4, e);
    if (!rc)
        rc = ww_add(w, "tok.types", WT_U8, 1, d_n, tok->types, n, e);
    float *vals = NULL;
    void *enc = NULL;
    size_t cap = 0;
    uint64_t written = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        const plan_tensor *t = &p->t[i];
        size_t numel = t->dims[0] * (size_t)(t->ndim > 1 ? t->dims[1] : 1);
        int ok;
        uint64_t bytes = wf_tensor_bytes(t->type, t->ndim, t->dims, &ok);
        if (!ok) {
            rc = vlm_fail(e, VLM_ERANGE, "tensor '%s': shape not representable", t->name);
            break;
        }
        if (numel > cap) {
            free(vals);
            free(enc);
            vals = malloc(numel * sizeof(float));
            enc = malloc(numel * sizeof(float));
            cap = numel;
            if (!vals || !enc) {
                rc = vlm_fail(e, VLM_ENOMEM, "tensor '%s': cannot allocate %zu floats", t->name, numel);
                cap = 0;
                break;
            }
        }
        rc = get(ctx, t, vals, e);
        if (rc)
            break;
        encode(t, vals, enc);
        rc = ww_add(w, t->name, t->type, t->ndim, t->dims, enc, bytes, e);
        written += bytes;
        if (!rc && progress)
            progress(progress_ctx, i + 1, p->n, t->name, written);
    }
    free(vals);
    free(enc);
    if (rc) {
        ww_abort(w);
        return rc;
    }
    return ww_finish(w, e);
}
