/* model.c: binding a validated weight file to the model structure (every tensor by name, with
 * its exact type and shape derived from the bounded configuration) and the forward passes:
 * CLIP vision tower, LDPv2 / LDP projector, LLaMA with grouped-query attention and a KV cache
 * (f16 by default, f32 or q8 on request: see model_set_kv_type).
 * The forward passes are straight-line code over the kernel table; threads split output
 * ranges through the pool (ops below), never the arithmetic of one element. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "util.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---------------------------------------------------------------------------------------- */
/* Parallel ops: each splits an output range over the pool and calls one kernel per range.  */

typedef struct op_job {
    const kernel_table *K;
    int rows, n, h, w, c, stride, oh, ow, nq, n_heads, n_kv, head_dim, n_keys, causal, kv_type;
    size_t kv_head_stride; /* attention: units (elements, q8: blocks) between kv heads */
    const float *x, *wt, *b, *bias;
    const void *k, *v; /* attention: float, uint16_t or blk_q8 by kv_type (WT_F32, WT_F16, WT_Q8) */
    size_t ldx, ldy, ldkv;
    float *y;
    float eps, scale;
    void (*elem)(size_t, size_t, float *);
    void (*elem2)(size_t, size_t, float *, const float *); /* add, silu_mul */
} op_job;

/* Items per task: about 4 tasks per thread (dynamic claiming evens out uneven progress), a
 * multiple of align; n divides evenly when it can, so the last task is not a sliver. */
static size_t grain_for(const model *m, size_t n, size_t align)
{
    size_t tasks = (size_t)pool_threads(m->pool) * 4;
    size_t per = (n + tasks - 1) / tasks;
    per = (per + align - 1) / align * align;
    return per ? per : align;
}

/* One output of a group of products that share their input x (q, k, v; gate, up). */
typedef struct linear_out {
    const matrix *W;
    const float *bias;
    float *y;
    size_t ldy;
} linear_out;

typedef struct linear_job {
    const kernel_table *K;
    int rows, count, k;
    int alone;         /* one thread streams the weights: the *_alone products (kernels.h) */
    const float *x;
    size_t ldx;
    blk_q8 *xq;        /* (rows, k/32) quantized x, when a weight is q8/q4 */
    linear_out out[3];
    size_t start[4];   /* output i owns [start[i], start[i+1]) of the concatenated columns */
} linear_job;

static void gemm_range(const linear_job *j, const linear_out *o, int n0, int n1)
{
    const matrix *W = o->W;
    size_t ldq = (size_t)j->k / QK;
    switch (W->type) {
    case WT_F32:
        j->K->gemm_f32(j->rows, n0, n1, W->k, j->x, j->ldx, W->w, o->bias, o->y, o->ldy);
        break;
    case WT_F16:
        j->K->gemm_f16(j->rows, n0, n1, W->k, j->x, j->ldx, W->w, o->bias, o->y, o->ldy);
        break;
    case WT_Q8:
        (j->alone ? j->K->gemm_q8_alone : j->K->gemm_q8)(j->rows, n0, n1, W->k, j->xq, ldq, W->w, o->bias, o->y,
                                                         o->ldy);
        break;
    case WT_Q4:
        (j->alone ? j->K->gemm_q4_alone : j->K->gemm_q4)(j->rows, n0, n1, W->k, j->xq, ldq, W->w, o->bias, o->y,
                                                         o->ldy);
        break;
    }
}

/* Columns [a, b) of the concatenated outputs, cut at the output boundaries. */
static void linear_task(void *ctx, size_t a, size_t b)
{
    const linear_job *j = ctx;
    for (int i = 0; i < j->count; i++) {
        size_t lo = a > j->start[i] ? a : j->start[i];
        size_t hi = b < j->start[i + 1] ? b : j->start[i + 1];
        if (lo < hi)
            gemm_range(j, &j->out[i], (int)(lo - j->start[i]), (int)(hi - j->start[i]));
    }
}

static void quant_task(void *ctx, size_t r0, size_t r1)
{
    const linear_job *j = ctx;
    size_t ldq = (size_t)j->k / QK;
    for (size_t r = r0; r < r1; r++)
        j->K->quant_q8(j->k, j->x + r * j->ldx, j->xq + r * ldq);
}

/* out[i].y[0:rows, 0:W.n] = x[0:rows, 0:k] out[i].W^T (+ bias) for each of count (1..3)
 * products with the same input: x is quantized once and one parallel job covers all outputs,
 * which matters in decoding, where each job is short. */
static void linear_group(model *m, const float *x, size_t ldx, int rows, const linear_out *out, int count)
{
    linear_job j = {.K = m->K, .rows = rows, .count = count, .k = out[0].W->k, .alone = pool_threads(m->pool) == 1,
                    .x = x, .ldx = ldx, .xq = m->qbuf};
    int quantized = 0;
    for (int i = 0; i < count; i++) {
        j.out[i] = out[i];
        j.start[i + 1] = j.start[i] + (size_t)out[i].W->n;
        quantized |= out[i].W->type == WT_Q8 || out[i].W->type == WT_Q4;
    }
    if (quantized)
        pool_for(m->pool, (size_t)rows, 1, quant_task, &j);
    size_t n = j.start[count];
    /* Guided chunks: large first, 16 rows (decode) or one 64-column panel (products) last, so
     * both threads end a product close together: decoding has ~5 of them per layer, and ending
     * them within a small chunk of each other measured 2-3 points of the roofline better than
     * 4 equal tasks per thread. */
    pool_for_guided(m->pool, n, rows > 1 ? 64 : 16, linear_task, &j);
}

/* y[0:rows, 0:W.n] = x[0:rows, 0:W.k] W^T (+ bias); x row stride ldx, y row stride ldy. */
static void linear(model *m, const matrix *W, const float *x, size_t ldx, int rows,
                   const float *bias, float *y, size_t ldy)
{
    linear_out o = {W, bias, y, ldy};
    linear_group(m, x, ldx, rows, &o, 1);
}

static void layernorm_task(void *ctx, size_t r0, size_t r1)
{
    const op_job *j = ctx;
    j->K->layernorm((int)r0, (int)r1, j->n, j->x, j->ldx, j->wt, j->b, j->eps, j->y);
}

static void rmsnorm_task(void *ctx, size_t r0, size_t r1)
{
    const op_job *j = ctx;
    j->K->rmsnorm((int)r0, (int)r1, j->n, j->x, j->ldx, j->wt, j->eps, j->y);
}

static void layernorm(model *m, int rows, int n, const float *x, const float *w, const float *b,
                      float eps, float *y)
{
    op_job j = {.K = m->K, .n = n, .x = x, .ldx = (size_t)n, .wt = w, .b = b, .eps = eps, .y = y};
    pool_for(m->pool, (size_t)rows, 8, layernorm_task, &j);
}

static void rmsnorm(model *m, int rows, int n, const float *x, const float *w, float eps, float *y)
{
    op_job j = {.K = m->K, .n = n, .x = x, .ldx = (size_t)n, .wt = w, .eps = eps, .y = y};
    pool_for(m->pool, (size_t)rows, 8, rmsnorm_task, &j);
}

static void elem_task(void *ctx, size_t i0, size_t i1)
{
    const op_job *j = ctx;
    j->elem(i0, i1, j->y);
}

static void elementwise(model *m, void (*fn)(size_t, size_t, float *), float *x, size_t n)
{
    op_job j = {.elem = fn, .y = x};
    pool_for(m->pool, n, grain_for(m, n, 1024), elem_task, &j);
}

static void elem2_task(void *ctx, size_t i0, size_t i1)
{
    const op_job *j = ctx;
    j->elem2(i0, i1, j->y, j->x);
}

/* fn (add or silu_mul) over y[0:n], x[0:n]; on the pool from 64K elements (a residual of the
 * vision tower: 577 x 1024; the MLP of a prefill: tokens x 5632), below on the caller, where
 * waking the threads costs more than the work. */
static void elementwise2(model *m, void (*fn)(size_t, size_t, float *, const float *), float *y, const float *x,
                         size_t n)
{
    op_job j = {.elem2 = fn, .x = x, .y = y};
    pool_for(m->pool, n, n < 65536 ? n : grain_for(m, n, 1024), elem2_task, &j);
}

/* Query heads [h0, h1), one kernel call per run of heads sharing a kv head: the kernel is given
 * that kv head alone (so it may sit anywhere: kv_head_stride elements apart). */
static void attention_task(void *ctx, size_t h0, size_t h1)
{
    const op_job *j = ctx;
    int group = j->n_heads / j->n_kv, d = j->head_dim;
    for (int h = (int)h0; h < (int)h1;) {
        int g = h / group, he = (g + 1) * group < (int)h1 ? (g + 1) * group : (int)h1;
        const float *qg = j->x + (size_t)g * group * d;
        float *og = j->y + (size_t)g * group * d;
        size_t ko = (size_t)g * j->kv_head_stride;
        int a = h - g * group, b = he - g * group;
        switch (j->kv_type) {
        case WT_F16:
            j->K->attention_f16kv(a, b, j->nq, group, 1, d, j->n_keys, j->causal, j->scale, qg, j->ldx,
                                  (const uint16_t *)j->k + ko, (const uint16_t *)j->v + ko, j->ldkv, og, j->ldy);
            break;
        case WT_Q8:
            j->K->attention_q8kv(a, b, j->nq, group, 1, d, j->n_keys, j->causal, j->scale, qg, j->ldx,
                                 (const blk_q8 *)j->k + ko, (const blk_q8 *)j->v + ko, j->ldkv, og, j->ldy);
            break;
        default:
            j->K->attention(a, b, j->nq, group, 1, d, j->n_keys, j->causal, j->scale, qg, j->ldx,
                            (const float *)j->k + ko, (const float *)j->v + ko, j->ldkv, og, j->ldy);
        }
        h = he;
    }
}

/* out (nq, n_heads*head_dim) = attention of q over n_keys keys/values of type kv_type (WT_F32,
 * WT_F16, WT_Q8): kv head g's key j at k[g * kv_head_stride + j * ldkv], in units of the type
 * (elements; q8: blocks). */
static void attention(model *m, int nq, int n_heads, int n_kv, int head_dim, int n_keys, int causal,
                      const float *q, const void *k, const void *v, size_t kv_head_stride, size_t ldkv, int kv_type,
                      float *out)
{
    op_job j = {.K = m->K, .nq = nq, .n_heads = n_heads, .n_kv = n_kv, .head_dim = head_dim,
                .n_keys = n_keys, .causal = causal, .kv_type = kv_type, .scale = 1.0f / sqrtf((float)head_dim),
                .x = q, .ldx = (size_t)n_heads * head_dim, .k = k, .v = v, .kv_head_stride = kv_head_stride,
                .ldkv = ldkv, .y = out, .ldy = (size_t)n_heads * head_dim};
    pool_for(m->pool, (size_t)n_heads, 1, attention_task, &j);
}

/* Rotary embedding of tokens [t0, t1): their query heads and new key heads. */
typedef struct rope_job {
    const kernel_table *K;
    float *q, *k;     /* (T, n_heads * head_dim), (T, n_kv * head_dim) */
    const float *cs;  /* (T, head_dim): model.h rope_cs */
    int n_heads, n_kv, head_dim;
} rope_job;

static void rope_task(void *ctx, size_t t0, size_t t1)
{
    const rope_job *j = ctx;
    size_t d = (size_t)j->head_dim;
    for (size_t t = t0; t < t1; t++) {
        j->K->rope(0, j->n_heads, j->head_dim, j->q + t * j->n_heads * d, j->cs + t * d);
        j->K->rope(0, j->n_kv, j->head_dim, j->k + t * j->n_kv * d, j->cs + t * d);
    }
}

/* Writing new rows into the KV cache: item i = (token i / n_kv, kv head i % n_kv), head_dim
 * elements of k and v, f32, to the cache's type and head-major place. */
typedef struct kv_store_job {
    const kernel_table *K;
    const float *k, *v; /* (T, n_kv * head_dim) */
    void *kc, *vc;      /* (n_kv, kv_cap, head_dim) of type: float, uint16_t or head_dim/32 blk_q8 */
    int n_kv, head_dim, pos0, cap, type;
    size_t row;         /* bytes of one (kv head, position) row */
} kv_store_job;

static void kv_store_task(void *ctx, size_t i0, size_t i1)
{
    const kv_store_job *j = ctx;
    size_t d = (size_t)j->head_dim;
    for (size_t i = i0; i < i1; i++) {
        size_t t = i / (size_t)j->n_kv, g = i % (size_t)j->n_kv;
        const float *ks = j->k + (t * (size_t)j->n_kv + g) * d, *vs = j->v + (t * (size_t)j->n_kv + g) * d;
        size_t off = (g * (size_t)j->cap + (size_t)j->pos0 + t) * j->row;
        void *kd = (char *)j->kc + off, *vd = (char *)j->vc + off;
        switch (j->type) {
        case WT_F32:
            memcpy(kd, ks, d * sizeof(float));
            memcpy(vd, vs, d * sizeof(float));
            break;
        case WT_Q8: /* rounded exactly as activations are: quant_q8 */
            j->K->quant_q8((int)d, ks, kd);
            j->K->quant_q8((int)d, vs, vd);
            break;
        default:
            j->K->to_f16(0, d, ks, kd);
            j->K->to_f16(0, d, vs, vd);
        }
    }
}

/* Brings the cache rows that positions pos0 .. pos0 + T - 1 of layer l will be stored in into
 * the cache for writing, ahead of kv_store: a decoding step stores 2 x n_kv rows far apart
 * (1.7B: 32 rows of 256 bytes, 128 KB apart), each line a read from DRAM before it can be
 * written while the other thread waits. Issued at the layer's start, they arrive during its
 * q, k, v product: the store took 105-112 us per token, 45-55 with this (bench_e2e -t 2
 * --no-vision, timers around it, two pairs of invocations). */
static void kv_prefetch_store(const model *m, uint32_t l, int pos0, int T)
{
    size_t row = model_kv_row_bytes(m);
    for (int kv = 0; kv < 2; kv++) {
        const unsigned char *base = kv ? m->vcache[l] : m->kcache[l];
        for (size_t g = 0; g < m->cfg.n_kv_heads; g++) {
            const unsigned char *r0 = base + (g * (size_t)m->kv_cap + (size_t)pos0) * row;
            for (size_t o = 0; o < (size_t)T * row; o += 64)
                __builtin_prefetch(r0 + o, 1, 3);
        }
    }
}

/* Positions pos0 .. pos0 + T - 1 of layer l's cache = k, v (T, kv_dim) in f32. */
static void kv_store(model *m, uint32_t l, int pos0, int T, const float *k, const float *v)
{
    int n_kv = (int)m->cfg.n_kv_heads;
    size_t n = (size_t)T * (size_t)n_kv;
    kv_store_job j = {.K = m->K, .k = k, .v = v, .kc = m->kcache[l], .vc = m->vcache[l], .n_kv = n_kv,
                      .head_dim = (int)m->cfg.head_dim, .pos0 = pos0, .cap = m->kv_cap, .type = m->kv_type,
                      .row = model_kv_row_bytes(m)};
    /* One token's rows (a few thousand elements) are not worth waking the threads. */
    pool_for(m->pool, n, n <= 64 ? n : grain_for(m, n, 16), kv_store_task, &j);
}

static void dwconv_task(void *ctx, size_t c0, size_t c1)
{
    const op_job *j = ctx;
    j->K->dwconv3x3((int)c0, (int)c1, j->h, j->w, j->c, j->stride, j->x, j->wt, j->bias, j->y);
}

static void dwconv3x3(model *m, int h, int w, int c, int stride, const float *in, const float *wt,
                      const float *bias, float *out)
{
    op_job j = {.K = m->K, .h = h, .w = w, .c = c, .stride = stride, .x = in, .wt = wt, .bias = bias, .y = out};
    pool_for(m->pool, (size_t)c, grain_for(m, (size_t)c, 16), dwconv_task, &j);
}

static void im2col_task(void *ctx, size_t r0, size_t r1)
{
    const op_job *j = ctx;
    j->K->im2col_patch((int)r0, (int)r1, j->h, j->w, j->stride, j->x, j->y);
}

/* ---------------------------------------------------------------------------------------- */
/* Vision tower and projectors.                                                              */

static void probe(model *m, const char *stage, int layer, const float *data, int rows, int cols)
{
    if (m->probe)
        m->probe(m->probe_ctx, stage, layer, data, rows, cols);
}

/* pixels (3, S, S) -> m->buf[0] = features (g*g, v_dim) (CLS dropped). */
static void vit_forward(model *m, const float *pixels)
{
    const wf_config *c = &m->cfg;
    int T = m->v_tokens;
    int C = (int)c->v_dim;
    int F = (int)c->v_hidden_dim;
    int S = (int)c->v_image_size;
    float *x = m->buf[0];   /* (T, C) residual stream */
    float *y = m->buf[1];   /* (T, C) normalized */
    float *q = m->buf[2];   /* (T, C) */
    float *k = m->buf[3];   /* (T, C) */
    float *v = m->buf[4];   /* (T, C) */
    float *f = m->buf[5];   /* (T, F) MLP hidden; also (g*g, 3*p*p) patches */

    op_job ij = {.K = m->K, .h = S, .w = S, .stride = (int)c->v_patch_size, .x = pixels, .y = f};
    pool_for(m->pool, (size_t)m->v_grid, 1, im2col_task, &ij);
    linear(m, &m->patch, f, (size_t)m->patch.k, T - 1, NULL, x + C, (size_t)C);
    memcpy(x, m->cls, sizeof(float) * (size_t)C);
    elementwise2(m, m->K->add, x, m->pos_emb, (size_t)T * C);
    probe(m, "vision_patch_embeds", 0, x, T, C);
    layernorm(m, T, C, x, m->pre_ln_w, m->pre_ln_b, c->v_ln_eps, x);
    probe(m, "vision_hidden", 0, x, T, C);

    for (uint32_t l = 0; l < c->v_layers; l++) {
        const vit_layer *L = &m->vit[l];
        layernorm(m, T, C, x, L->ln1_w, L->ln1_b, c->v_ln_eps, y);
        linear_out qkv[3] = {{&L->wq, L->bq, q, C}, {&L->wk, L->bk, k, C}, {&L->wv, L->bv, v, C}};
        linear_group(m, y, C, T, qkv, 3);
        attention(m, T, (int)c->v_heads, (int)c->v_heads, C / (int)c->v_heads, T, -1, q, k, v,
                  (size_t)(C / (int)c->v_heads), (size_t)C, WT_F32, y);
        linear(m, &L->wo, y, C, T, L->bo, q, C);
        elementwise2(m, m->K->add, x, q, (size_t)T * C);
        layernorm(m, T, C, x, L->ln2_w, L->ln2_b, c->v_ln_eps, y);
        linear(m, &L->fc1, y, C, T, L->fc1_b, f, F);
        elementwise(m, m->K->quick_gelu, f, (size_t)T * F);
        linear(m, &L->fc2, f, F, T, L->fc2_b, q, C);
        elementwise2(m, m->K->add, x, q, (size_t)T * C);
        probe(m, "vision_hidden", (int)l + 1, x, T, C);
    }
    /* Drop the CLS row: features are rows 1..T-1. */
    memmove(x, x + C, sizeof(float) * (size_t)(T - 1) * C);
}

/* LDP v1 block on a (g, g, D) map in place of `map`; uses tmp buffers a, b (g*g*D each). */
static void ldp_block_forward(model *m, const ldp_block *B, int g, int stride, const float *map,
                              float *a, float *b, float *out)
{
    int D = (int)m->cfg.dim;
    int S = (int)m->cfg.se_dim;
    int go = (g - 1) / stride + 1;
    int P = go * go;
    dwconv3x3(m, g, g, D, stride, map, B->dw, NULL, a);
    layernorm(m, P, D, a, B->ln1_w, B->ln1_b, 1e-5f, a);
    elementwise(m, m->K->hardswish, a, (size_t)P * D);
    /* Squeeze-excitation: per-channel mean, two small linears, channel scaling. */
    float *s = b;         /* (D) */
    float *s1 = b + D;    /* (S) */
    m->K->avgpool(0, 1, go, go, D, 1, 1, a, s);
    linear(m, &B->se1, s, (size_t)D, 1, B->se1_b, s1, (size_t)S);
    m->K->relu(0, (size_t)S, s1);
    linear(m, &B->se2, s1, (size_t)S, 1, B->se2_b, s, (size_t)D);
    m->K->hardsigmoid(0, (size_t)D, s);
    for (int p = 0; p < P; p++)
        for (int ch = 0; ch < D; ch++)
            a[(size_t)p * D + ch] *= s[ch];
    linear(m, &B->pw, a, (size_t)D, P, NULL, out, (size_t)D);
    layernorm(m, P, D, out, B->ln2_w, B->ln2_b, 1e-5f, out);
    if (stride == 1)
        elementwise2(m, m->K->add, out, map, (size_t)P * D);
}

int model_encode_image(model *m, const float *pixels, float *tokens, vlm_error *e)
{
    const wf_config *c = &m->cfg;
    if (c->arch == ARCH_LLAMA)
        return vlm_fail(e, VLM_EARG, "%s: this model has no vision tower", m->wf.path);
    double t0 = now_ms();
    vit_forward(m, pixels);
    double t1 = now_ms();
    m->vit_ms = t1 - t0;
    int g = m->v_grid;
    int N = g * g;
    int D = (int)c->dim;
    int pg = (int)c->proj_grid;
    float *feat = m->buf[0]; /* (N, v_dim) */
    float *h = m->buf[1];    /* (N, D) */
    float *mp = m->buf[2];   /* (N, D) */
    probe(m, "vision_selected_features", 0, feat, N, (int)c->v_dim);

    linear(m, &m->mlp_a, feat, c->v_dim, N, m->mlp_a_b, h, D);
    elementwise(m, m->K->gelu_erf, h, (size_t)N * D);
    linear(m, &m->mlp_b, h, D, N, m->mlp_b_b, mp, D);
    probe(m, "projector_mlp", 0, mp, N, D);
    if (c->arch == ARCH_MOBILEVLM_V2) {
        float *pooled = m->buf[3]; /* (pg*pg, D) */
        m->K->avgpool(0, pg, g, g, D, pg, pg, mp, pooled);
        probe(m, "projector_pooled", 0, pooled, pg * pg, D);
        dwconv3x3(m, pg, pg, D, 1, pooled, m->peg_w, m->peg_b, tokens);
        elementwise2(m, m->K->add, tokens, pooled, (size_t)pg * pg * D);
    } else {
        float *b1 = m->buf[3]; /* (N, D) */
        ldp_block_forward(m, &m->blk[0], g, 1, mp, m->buf[4], m->buf[5], b1);
        probe(m, "projector_block1", 0, b1, N, D);
        ldp_block_forward(m, &m->blk[1], g, 2, b1, m->buf[4], m->buf[5], tokens);
    }
    probe(m, "projector_output", 0, tokens, pg * pg, D);
    m->projector_ms = now_ms() - t1;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* LLM.                                                                                      */

int model_embed(model *m, const int *ids, int n, float *out, vlm_error *e)
{
    int D = (int)m->cfg.dim;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= m->cfg.vocab_size)
            return vlm_fail(e, VLM_ERANGE, "token id %d out of range [0, %u)", ids[i], m->cfg.vocab_size);
        size_t stride;
        switch (m->embed_type) {
        case WT_F32: stride = (size_t)D * 4; break;
        case WT_F16: stride = (size_t)D * 2; break;
        case WT_Q8: stride = (size_t)D / QK * sizeof(blk_q8); break;
        default: stride = q4_row_bytes(D / QK); break;
        }
        m->K->dequant_row((int)m->embed_type, D, (const uint8_t *)m->embed + (size_t)ids[i] * stride,
                          out + (size_t)i * D);
    }
    return 0;
}

size_t model_kv_row_bytes(const model *m)
{
    size_t d = m->cfg.head_dim;
    switch (m->kv_type) {
    case WT_F32: return d * sizeof(float);
    case WT_Q8: return d / QK * sizeof(blk_q8);
    default: return d * sizeof(uint16_t);
    }
}

enum { KV_HUGE = 2 << 20 }; /* a transparent huge page (x86-64, arm64 with 4 KB base pages) */

/* A zeroed, private anonymous mapping of at least bytes, KV_HUGE-aligned and marked for
 * transparent huge pages where the kernel offers them; *mapped = its length (for munmap).
 * Why: decoding writes each new position's rows into untouched memory, and with 4 KB pages
 * every (layer, K/V, head) row faulted once per 16 positions (1.7B f16: 768 faults per 16
 * tokens), measured at 0.3-1 ms per token, 1-4% of decoding, in this VM; a 2 MB page faults
 * once for all the head regions it holds (16 heads of 512 positions for 1.7B f16), and one TLB
 * entry serves the attention's reads of them.
 * NULL if the memory cannot be mapped. */
static unsigned char *kv_map(size_t bytes, size_t *mapped)
{
    size_t len = (bytes + KV_HUGE - 1) / KV_HUGE * KV_HUGE;
    if (len < bytes || len + KV_HUGE < len)
        return NULL;
    unsigned char *p = mmap(NULL, len + KV_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Trim to the aligned len bytes inside. */
    size_t head = (KV_HUGE - (uintptr_t)p % KV_HUGE) % KV_HUGE;
    if (head)
        munmap(p, head);
    munmap(p + head + len, KV_HUGE - head);
#ifdef MADV_HUGEPAGE
    madvise(p + head, len, MADV_HUGEPAGE); /* advice only: small pages work too */
#endif
    *mapped = len;
    return p + head;
}

/* Unmaps the KV cache (if any); every layer's pointers (when the arrays exist) become NULL. */
static void kv_unmap(model *m)
{
    if (m->kv_mem)
        munmap(m->kv_mem, m->kv_mapped);
    m->kv_mem = NULL;
    m->kv_mapped = 0;
    for (uint32_t l = 0; m->kcache && m->vcache && l < m->cfg.n_layers; l++)
        m->kcache[l] = m->vcache[l] = NULL;
    m->kv_cap = 0;
}

/* Grows the cache to hold `needed` positions (capacity doubling from 256, at most the
 * context), keeping the n_past positions it holds. One mapping for all layers, per layer a K
 * and a V buffer of (n_kv_heads, kv_cap, head_dim), head-major: one head's keys are
 * contiguous, so decoding reads them as one stream; with position-major rows a head's keys
 * are a 4 KB stride apart (1.7B: 16 heads x 128 x f16) and decoding attention read them at 6
 * GB/s instead of 20 (one thread, Zen 4). Growing therefore copies head by head into a new
 * mapping (rarely: the capacity doubles). Pages are committed as rows are first written. */
static int ensure_kv(model *m, int needed, vlm_error *e)
{
    if (needed <= m->kv_cap)
        return 0;
    int cap = m->kv_cap ? m->kv_cap : 256;
    while (cap < needed)
        cap *= 2;
    if ((uint32_t)cap > m->cfg.max_seq_len)
        cap = (int)m->cfg.max_seq_len;
    size_t n_kv = m->cfg.n_kv_heads;
    size_t row = model_kv_row_bytes(m); /* bytes of one position of one head */
    size_t per, total, mapped;
    if (ck_mul3(n_kv * row, (size_t)cap, 1, &per) || ck_mul3(per, 2, m->cfg.n_layers, &total))
        return vlm_fail(e, VLM_ENOMEM, "a KV cache of %d positions overflows", cap);
    unsigned char *mem = kv_map(total, &mapped);
    if (!mem)
        return vlm_fail(e, VLM_ENOMEM, "cannot grow the KV cache to %d positions (%zu bytes)", cap, total);
    for (uint32_t l = 0; l < m->cfg.n_layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            void **slot = kv ? &m->vcache[l] : &m->kcache[l];
            unsigned char *nb = mem + (2 * (size_t)l + (size_t)kv) * per;
            if (*slot)
                for (size_t g = 0; g < n_kv; g++)
                    memcpy(nb + g * (size_t)cap * row, (unsigned char *)*slot + g * (size_t)m->kv_cap * row,
                           (size_t)m->n_past * row);
            *slot = nb;
        }
    if (m->kv_mem)
        munmap(m->kv_mem, m->kv_mapped);
    m->kv_mem = mem;
    m->kv_mapped = mapped;
    m->kv_cap = cap;
    return 0;
}

int model_reserve(model *m, int positions, vlm_error *e)
{
    uint32_t n = positions < 0 ? 0 : (uint32_t)positions;
    return ensure_kv(m, (int)(n < m->cfg.max_seq_len ? n : m->cfg.max_seq_len), e);
}

int model_set_kv_type(model *m, int type, vlm_error *e)
{
    if (type != WT_F32 && type != WT_F16 && type != WT_Q8)
        return vlm_fail(e, VLM_EARG, "KV cache element type %d is not f32, f16 or q8", type);
    if (type == WT_Q8 && m->cfg.head_dim % QK)
        return vlm_fail(e, VLM_EARG, "%s: a q8 KV cache needs head_dim a multiple of %d; this model's head_dim is %u",
                        m->wf.path, QK, m->cfg.head_dim);
    if (type == m->kv_type)
        return 0;
    kv_unmap(m);
    m->n_past = 0;
    m->kv_type = type;
    return 0;
}

/* Grows the activation buffers to `rows` rows of the widest layer. */
static int ensure_scratch(model *m, int rows, vlm_error *e);

int model_forward(model *m, const float *emb, int T, float *logits, vlm_error *e)
{
    const wf_config *c = &m->cfg;
    int D = (int)c->dim;
    int F = (int)c->hidden_dim;
    int H = (int)c->n_heads;
    int KV = (int)c->n_kv_heads;
    int hd = (int)c->head_dim;
    int kv_dim = KV * hd;
    size_t kv_units = m->kv_type == WT_Q8 ? (size_t)hd / QK : (size_t)hd; /* of a cache row */
    int pos0 = m->n_past;
    if (T < 1 || (uint32_t)pos0 + (uint32_t)T > c->max_seq_len)
        return vlm_fail(e, VLM_ERANGE, "%d tokens at position %d exceed the context of %u", T, pos0, c->max_seq_len);
    int rc = ensure_kv(m, pos0 + T, e);
    if (!rc)
        rc = ensure_scratch(m, T, e);
    if (rc)
        return rc;
    float *x = m->buf[0];  /* (T, D) residual stream */
    float *xb = m->buf[1]; /* (T, D) */
    float *q = m->buf[2];  /* (T, H*hd) */
    float *att = m->buf[3]; /* (T, H*hd) */
    float *g = m->buf[4];  /* (T, F) */
    float *u = m->buf[5];  /* (T, F) */
    /* The new keys and values (T, kv_dim) in f32, in the MLP's buffers (free until then and
     * kv_dim <= dim <= their width), until they are stored into the cache. */
    float *kn = g;
    float *vn = u;
    memmove(x, emb, sizeof(float) * (size_t)T * D);
    /* Each position's rotation, computed once for every layer and head (libm cosf and sinf of
     * the float angle pos * inv_freq[i]). */
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float angle = (float)(pos0 + t) * m->inv_freq[i];
            m->rope_cs[(size_t)t * hd + i] = cosf(angle);
            m->rope_cs[(size_t)t * hd + half + i] = sinf(angle);
        }

    for (uint32_t l = 0; l < c->n_layers; l++) {
        const llm_layer *L = &m->llm[l];
        if (T <= 16) /* longer batches stream their stores */
            kv_prefetch_store(m, l, pos0, T);
        rmsnorm(m, T, D, x, L->attn_norm, c->rms_eps, xb);
        linear_out qkv[3] = {{&L->wq, NULL, q, (size_t)H * hd}, {&L->wk, NULL, kn, kv_dim}, {&L->wv, NULL, vn, kv_dim}};
        linear_group(m, xb, D, T, qkv, 3);
        rope_job rj = {m->K, q, kn, m->rope_cs, H, KV, hd};
        pool_for(m->pool, (size_t)T, grain_for(m, (size_t)T, 1), rope_task, &rj);
        /* The new positions attend to themselves as stored: the same values a later call
         * reads from the cache, so results do not depend on how positions are batched. */
        kv_store(m, l, pos0, T, kn, vn);
        attention(m, T, H, KV, hd, pos0 + T, pos0, q, m->kcache[l], m->vcache[l], (size_t)m->kv_cap * kv_units,
                  kv_units, m->kv_type, att);
        linear(m, &L->wo, att, (size_t)H * hd, T, NULL, xb, D);
        elementwise2(m, m->K->add, x, xb, (size_t)T * D);
        rmsnorm(m, T, D, x, L->ffn_norm, c->rms_eps, xb);
        linear_out gate_up[2] = {{&L->gate, NULL, g, F}, {&L->up, NULL, u, F}};
        linear_group(m, xb, D, T, gate_up, 2);
        elementwise2(m, m->K->silu_mul, g, u, (size_t)T * F);
        linear(m, &L->down, g, F, T, NULL, xb, D);
        elementwise2(m, m->K->add, x, xb, (size_t)T * D);
        probe(m, "llm_layer", (int)l, x, T, D);
    }
    m->n_past += T;
    if (m->probe) {
        rmsnorm(m, T, D, x, m->norm, c->rms_eps, xb);
        probe(m, "llm_final_norm", 0, xb, T, D);
    }
    if (logits) {
        float *last = xb + (size_t)(T - 1) * D;
        rmsnorm(m, 1, D, x + (size_t)(T - 1) * D, m->norm, c->rms_eps, last);
        linear(m, &m->out, last, D, 1, NULL, logits, c->vocab_size);
    }
    return 0;
}

void model_reset(model *m) { m->n_past = 0; }

/* ---------------------------------------------------------------------------------------- */
/* Binding and validation.                                                                   */

static int check_range(const char *path, const char *what, uint32_t v, uint32_t lo, uint32_t hi, vlm_error *e)
{
    if (v < lo || v > hi)
        return vlm_fail(e, VLM_EFORMAT, "%s: config %s = %u not in [%u, %u]", path, what, v, lo, hi);
    return 0;
}

/* See model.h. */
int model_check_config(const char *path, const wf_config *c, vlm_error *e)
{
    int rc = 0;
#define RANGE(f, lo, hi) \
    if (!rc)             \
    rc = check_range(path, #f, c->f, lo, hi, e)
    RANGE(arch, 0, 2);
    RANGE(chat_template, 0, 1);
    RANGE(dim, 1, 1 << 16);
    RANGE(hidden_dim, 1, 1 << 20);
    RANGE(n_layers, 1, 1024);
    RANGE(n_heads, 1, 1024);
    RANGE(n_kv_heads, 1, c->n_heads);
    RANGE(head_dim, 2, 256);
    RANGE(vocab_size, 3, 1 << 20);
    RANGE(max_seq_len, 1, 1 << 20);
    RANGE(bos_id, 0, c->vocab_size - 1);
    RANGE(eos_id, 0, c->vocab_size - 1);
    RANGE(unk_id, 0, c->vocab_size - 1);
    RANGE(tied_embeddings, 0, 1);
    RANGE(tok_flags, 0, 7);
    if (rc)
        return rc;
    if (c->n_heads % c->n_kv_heads || c->head_dim % 2 || (uint64_t)c->n_heads * c->head_dim != c->dim)
        return vlm_fail(e, VLM_EFORMAT, "%s: heads %u, kv heads %u, head_dim %u do not fit dim %u", path,
                        c->n_heads, c->n_kv_heads, c->head_dim, c->dim);
    if (!(c->rms_eps > 0 && c->rms_eps < 1) || !(c->rope_theta > 1 && c->rope_theta < 1e9))
        return vlm_fail(e, VLM_EFORMAT, "%s: rms_eps %g or rope_theta %g out of range", path, c->rms_eps, c->rope_theta);
    if (c->arch == ARCH_LLAMA)
        return 0;
    RANGE(v_image_size, 1, 4096);
    RANGE(v_patch_size, 1, c->v_image_size);
    RANGE(v_dim, 1, 1 << 16);
    RANGE(v_hidden_dim, 1, 1 << 20);
    RANGE(v_layers, 0, 1024);
    RANGE(v_heads, 1, c->v_dim);
    if (rc)
        return rc;
    uint32_t g = c->v_image_size / c->v_patch_size;
    if (c->v_image_size % c->v_patch_size || c->v_dim % c->v_heads || c->v_dim / c->v_heads > 256 || g < 2)
        return vlm_fail(e, VLM_EFORMAT, "%s: vision image %u, patch %u, dim %u, heads %u inconsistent", path,
                        c->v_image_size, c->v_patch_size, c->v_dim, c->v_heads);
    uint32_t want_grid = c->arch == ARCH_MOBILEVLM_V1 ? (g - 1) / 2 + 1 : c->proj_grid;
    if (c->proj_grid < 1 || c->proj_grid > g || c->proj_grid != want_grid)
        return vlm_fail(e, VLM_EFORMAT, "%s: projector grid %u invalid for a %u x %u patch grid", path, c->proj_grid, g, g);
    if (c->arch == ARCH_MOBILEVLM_V1)
        RANGE(se_dim, 1, c->dim);
    if (!rc && !(c->v_ln_eps > 0 && c->v_ln_eps < 1))
        rc = vlm_fail(e, VLM_EFORMAT, "%s: vision layer-norm eps %g out of range", path, c->v_ln_eps);
    for (int i = 0; i < 3 && !rc; i++)
        if (!(c->image_std[i] > 1e-3f && c->image_std[i] < 1e3f) || !(fabsf(c->image_mean[i]) <= 1))
            rc = vlm_fail(e, VLM_EFORMAT, "%s: image mean/std out of range", path);
#undef RANGE
    return rc;
}

typedef struct binder {
    model *m;
    vlm_error *e;
    int rc;
} binder;

static const wf_tensor *need(binder *b, const char *name, uint32_t ndim, uint32_t d0, uint32_t d1)
{
    if (b->rc)
        return NULL;
    const char *path = b->m->wf.path;
    const wf_tensor *t = wf_find(&b->m->wf, name);
    if (!t) {
        b->rc = vlm_fail(b->e, VLM_EFORMAT, "%s: tensor '%s' is missing", path, name);
        return NULL;
    }
    uint32_t want[2] = {d0, d1};
    int bad = t->ndim != ndim;
    for (uint32_t i = 0; i < ndim && !bad; i++)
        bad = t->dims[i] != want[i];
    if (bad) {
        b->rc = vlm_fail(b->e, VLM_EFORMAT, "%s: tensor '%s' has shape [%u %u %u %u], expected [%u %u]", path, name,
                         t->dims[0], t->dims[1], t->dims[2], t->dims[3], d0, ndim > 1 ? d1 : 0);
        return NULL;
    }
    return t;
}

static const void *need_typed(binder *b, const char *name, uint32_t type, uint32_t ndim, uint32_t d0, uint32_t d1)
{
    const wf_tensor *t = need(b, name, ndim, d0, d1);
    if (t && t->type != type) {
        b->rc = vlm_fail(b->e, VLM_EFORMAT, "%s: tensor '%s' has type %s, expected %s", b->m->wf.path, name,
                         wt_name(t->type), wt_name(type));
        return NULL;
    }
    return t ? t->data : NULL;
}

static const float *vec(binder *b, const char *name, uint32_t n)
{
    return need_typed(b, name, WT_F32, 1, n, 0);
}

static matrix mat(binder *b, const char *name, uint32_t n, uint32_t k)
{
    matrix mx = {0};
    const wf_tensor *t = need(b, name, 2, n, k);
    if (t && t->type > WT_Q4) {
        b->rc = vlm_fail(b->e, VLM_EFORMAT, "%s: tensor '%s' has type %s, expected a matrix type", b->m->wf.path,
                         name, wt_name(t->type));
        return mx;
    }
    if (t) {
        mx.type = t->type;
        mx.n = (int)n;
        mx.k = (int)k;
        mx.w = t->data;
    }
    return mx;
}

static const char *nm(char *buf, const char *fmt, int i, const char *suffix)
{
    snprintf(buf, 64, fmt, i, suffix);
    return buf;
}

static void bind_vision(binder *b)
{
    model *m = b->m;
    const wf_config *c = &m->cfg;
    uint32_t C = c->v_dim;
    uint32_t p = c->v_patch_size;
    char n[64];
    m->v_grid = (int)(c->v_image_size / p);
    m->v_tokens = m->v_grid * m->v_grid + 1;
    m->patch = mat(b, "v.patch", C, 3 * p * p);
    m->cls = vec(b, "v.cls", C);
    m->pos_emb = need_typed(b, "v.pos", WT_F32, 2, (uint32_t)m->v_tokens, C);
    m->pre_ln_w = vec(b, "v.pre_ln.w", C);
    m->pre_ln_b = vec(b, "v.pre_ln.b", C);
    for (uint32_t l = 0; l < c->v_layers; l++) {
        vit_layer *L = &m->vit[l];
        int i = (int)l;
        L->ln1_w = vec(b, nm(n, "v.%d.%s", i, "ln1.w"), C);
        L->ln1_b = vec(b, nm(n, "v.%d.%s", i, "ln1.b"), C);
        L->ln2_w = vec(b, nm(n, "v.%d.%s", i, "ln2.w"), C);
        L->ln2_b = vec(b, nm(n, "v.%d.%s", i, "ln2.b"), C);
        L->wq = mat(b, nm(n, "v.%d.%s", i, "q.w"), C, C);
        L->wk = mat(b, nm(n, "v.%d.%s", i, "k.w"), C, C);
        L->wv = mat(b, nm(n, "v.%d.%s", i, "v.w"), C, C);
        L->wo = mat(b, nm(n, "v.%d.%s", i, "o.w"), C, C);
        L->bq = vec(b, nm(n, "v.%d.%s", i, "q.b"), C);
        L->bk = vec(b, nm(n, "v.%d.%s", i, "k.b"), C);
        L->bv = vec(b, nm(n, "v.%d.%s", i, "v.b"), C);
        L->bo = vec(b, nm(n, "v.%d.%s", i, "o.b"), C);
        L->fc1 = mat(b, nm(n, "v.%d.%s", i, "fc1.w"), c->v_hidden_dim, C);
        L->fc1_b = vec(b, nm(n, "v.%d.%s", i, "fc1.b"), c->v_hidden_dim);
        L->fc2 = mat(b, nm(n, "v.%d.%s", i, "fc2.w"), C, c->v_hidden_dim);
        L->fc2_b = vec(b, nm(n, "v.%d.%s", i, "fc2.b"), C);
    }
    uint32_t D = c->dim;
    m->mlp_a = mat(b, "p.mlp_a.w", D, C);
    m->mlp_a_b = vec(b, "p.mlp_a.b", D);
    m->mlp_b = mat(b, "p.mlp_b.w", D, D);
    m->mlp_b_b = vec(b, "p.mlp_b.b", D);
    m->n_image_tokens = (int)(c->proj_grid * c->proj_grid);
    if (c->arch == ARCH_MOBILEVLM_V2) {
        m->peg_w = need_typed(b, "p.peg.w", WT_F32, 2, D, 9);
        m->peg_b = vec(b, "p.peg.b", D);
        return;
    }
    for (int i = 0; i < 2; i++) {
        ldp_block *B = &m->blk[i];
        B->dw = need_typed(b, nm(n, "p.b%d.%s", i + 1, "dw"), WT_F32, 2, D, 9);
        B->ln1_w = vec(b, nm(n, "p.b%d.%s", i + 1, "ln1.w"), D);
        B->ln1_b = vec(b, nm(n, "p.b%d.%s", i + 1, "ln1.b"), D);
        B->se1 = mat(b, nm(n, "p.b%d.%s", i + 1, "se1.w"), c->se_dim, D);
        B->se1_b = vec(b, nm(n, "p.b%d.%s", i + 1, "se1.b"), c->se_dim);
        B->se2 = mat(b, nm(n, "p.b%d.%s", i + 1, "se2.w"), D, c->se_dim);
        B->se2_b = vec(b, nm(n, "p.b%d.%s", i + 1, "se2.b"), D);
        B->pw = mat(b, nm(n, "p.b%d.%s", i + 1, "pw.w"), D, D);
        B->ln2_w = vec(b, nm(n, "p.b%d.%s", i + 1, "ln2.w"), D);
        B->ln2_b = vec(b, nm(n, "p.b%d.%s", i + 1, "ln2.b"), D);
    }
}

static void bind_llm(binder *b)
{
    model *m = b->m;
    const wf_config *c = &m->cfg;
    uint32_t D = c->dim;
    uint32_t F = c->hidden_dim;
    uint32_t qd = c->n_heads * c->head_dim;
    uint32_t kvd = c->n_kv_heads * c->head_dim;
    char n[64];
    matrix emb = mat(b, "t.embed", c->vocab_size, D);
    m->embed_type = emb.type;
    m->embed = emb.w;
    m->out = c->tied_embeddings ? emb : mat(b, "t.out", c->vocab_size, D);
    m->norm = vec(b, "t.norm", D);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        llm_layer *L = &m->llm[l];
        int i = (int)l;
        L->attn_norm = vec(b, nm(n, "t.%d.%s", i, "attn_norm"), D);
        L->ffn_norm = vec(b, nm(n, "t.%d.%s", i, "ffn_norm"), D);
        L->wq = mat(b, nm(n, "t.%d.%s", i, "q"), qd, D);
        L->wk = mat(b, nm(n, "t.%d.%s", i, "k"), kvd, D);
        L->wv = mat(b, nm(n, "t.%d.%s", i, "v"), kvd, D);
        L->wo = mat(b, nm(n, "t.%d.%s", i, "o"), D, qd);
        L->gate = mat(b, nm(n, "t.%d.%s", i, "gate"), F, D);
        L->up = mat(b, nm(n, "t.%d.%s", i, "up"), F, D);
        L->down = mat(b, nm(n, "t.%d.%s", i, "down"), D, F);
    }
}

static int bind_tokenizer(binder *b)
{
    model *m = b->m;
    const wf_config *c = &m->cfg;
    /* The piece text has no length fixed by the config: any 1-d u8 tensor. */
    const wf_tensor *text = wf_find(&m->wf, "tok.text");
    if (!text || text->type != WT_U8 || text->ndim != 1)
        return b->rc = vlm_fail(b->e, VLM_EFORMAT, "%s: tensor 'tok.text' missing or not a 1-d u8 tensor", m->wf.path);
    const uint32_t *offsets = need_typed(b, "tok.offsets", WT_I32, 1, c->vocab_size + 1, 0);
    const float *scores = vec(b, "tok.scores", c->vocab_size);
    const uint8_t *types = need_typed(b, "tok.types", WT_U8, 1, c->vocab_size, 0);
    if (b->rc)
        return b->rc;
    int rc = tok_create((int)c->vocab_size, text->data, text->dims[0], offsets, scores, types, c->tok_flags,
                        &m->tok, b->e);
    if (rc)
        return b->rc = rc;
    return 0;
}

static int ensure_scratch(model *m, int rows, vlm_error *e)
{
    const wf_config *c = &m->cfg;
    size_t width = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if (c->arch != ARCH_LLAMA) {
        size_t pp = 3 * (size_t)c->v_patch_size * c->v_patch_size;
        size_t vis[] = {c->v_dim, c->v_hidden_dim, pp};
        for (int i = 0; i < 3; i++)
            if (vis[i] > width)
                width = vis[i];
        if (rows < m->v_tokens)
            rows = m->v_tokens;
    }
    size_t need;
    if (ck_mul((size_t)rows, width, &need))
        return vlm_fail(e, VLM_ENOMEM, "activation buffer of %d x %zu overflows", rows, width);
    if (need <= m->scratch_floats)
        return 0;
    for (int i = 0; i < 6; i++) {
        float *p = realloc(m->buf[i], need * sizeof(float));
        if (!p)
            return vlm_fail(e, VLM_ENOMEM, "cannot allocate %zu activation floats", need);
        m->buf[i] = p;
    }
    /* head_dim <= dim <= width: no overflow */
    float *cs = realloc(m->rope_cs, (size_t)rows * c->head_dim * sizeof(float));
    if (!cs)
        return vlm_fail(e, VLM_ENOMEM, "cannot allocate the rotary table");
    m->rope_cs = cs;
    blk_q8 *q = realloc(m->qbuf, (need / QK + rows) * sizeof(blk_q8));
    if (!q)
        return vlm_fail(e, VLM_ENOMEM, "cannot allocate the activation quantization buffer");
    m->qbuf = q;
    m->scratch_floats = need;
    return 0;
}

int model_open(const char *path, int n_threads, const char *isa, model *m, vlm_error *e)
{
    memset(m, 0, sizeof *m);
    int rc = wf_open(path, &m->wf, e);
    if (rc)
        return rc;
    m->cfg = m->wf.cfg;
    m->kv_type = WT_F16;
    const wf_config *c = &m->cfg;
    rc = model_check_config(path, c, e);
    if (rc)
        goto fail;
    kernels_init(isa, &m->kt);
    m->K = &m->kt;
    m->llm = calloc(c->n_layers, sizeof *m->llm);
    m->kcache = calloc(c->n_layers, sizeof *m->kcache);
    m->vcache = calloc(c->n_layers, sizeof *m->vcache);
    m->inv_freq = calloc(c->head_dim / 2, sizeof *m->inv_freq);
    if (c->arch != ARCH_LLAMA && c->v_layers)
        m->vit = calloc(c->v_layers, sizeof *m->vit);
    if (!m->llm || !m->kcache || !m->vcache || !m->inv_freq || (c->arch != ARCH_LLAMA && c->v_layers && !m->vit)) {
        rc = vlm_fail(e, VLM_ENOMEM, "%s: out of memory for the model structure", path);
        goto fail;
    }
    binder b = {.m = m, .e = e};
    bind_llm(&b);
    if (c->arch != ARCH_LLAMA)
        bind_vision(&b);
    if (b.rc || (rc = bind_tokenizer(&b)) != 0) {
        rc = b.rc;
        goto fail;
    }
    /* As the reference computes it: fp32 theta^(2i/d), then its reciprocal. */
    for (uint32_t i = 0; i < c->head_dim / 2; i++)
        m->inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
    rc = ensure_scratch(m, 1, e);
    if (rc)
        goto fail;
    m->pool = pool_create(n_threads);
    if (!m->pool) {
        rc = vlm_fail(e, VLM_ENOMEM, "cannot start %d threads", n_threads);
        goto fail;
    }
    return 0;
fail:
    model_close(m);
    return rc;
}

void model_close(model *m)
{
    pool_destroy(m->pool);
    if (m->tok)
        tok_free(m->tok);
    /* model_open may fail between the two callocs: either array may be NULL alone. */
    kv_unmap(m);
    free(m->kcache);
    free(m->vcache);
    free(m->llm);
    free(m->vit);
    free(m->inv_freq);
    for (int i = 0; i < 6; i++)
        free(m->buf[i]);
    free(m->rope_cs);
    free(m->qbuf);
    wf_close(&m->wf);
    memset(m, 0, sizeof *m);
}
