/* synth.c: random-weight models with the real shapes (see synth.h). The tokenizer is synthetic
 * too (specials, the 256 byte pieces, then filler pieces), so prompts still encode. */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "plan.h"
#include "spm.h"
#include "tokenizer.h"

static const struct preset {
    const char *name;
    uint32_t arch, dim, hidden, layers, heads, kv_heads, ctx;
    float eps;
} presets[] = {
    {"mobilevlm-v2-1.7b", ARCH_MOBILEVLM_V2, 2048, 5632, 24, 16, 16, 2048, 1e-6f},
    {"mobilevlm-v2-3b", ARCH_MOBILEVLM_V2, 2560, 6912, 32, 32, 32, 2048, 1e-6f},
    {"mobilevlm-v2-7b", ARCH_MOBILEVLM_V2, 4096, 11008, 32, 32, 32, 4096, 1e-5f},
    {"mobilevlm-1.7b", ARCH_MOBILEVLM_V1, 2048, 5632, 24, 16, 16, 2048, 1e-6f},
    {"mobilevlm-3b", ARCH_MOBILEVLM_V1, 2560, 6912, 32, 32, 32, 2048, 1e-6f},
};

const char *synth_preset_names(void)
{
    return "mobilevlm-v2-1.7b mobilevlm-v2-3b mobilevlm-v2-7b mobilevlm-1.7b mobilevlm-3b";
}

int synth_preset(const char *name, wf_config *c)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const struct preset *p = &presets[i];
        if (strcmp(name, p->name))
            continue;
        memset(c, 0, sizeof *c);
        c->arch = p->arch;
        c->chat_template = TEMPLATE_VICUNA_V1;
        c->dim = p->dim;
        c->hidden_dim = p->hidden;
        c->n_layers = p->layers;
        c->n_heads = p->heads;
        c->n_kv_heads = p->kv_heads;
        c->head_dim = p->dim / p->heads;
        c->vocab_size = 32000;
        c->max_seq_len = p->ctx;
        c->bos_id = 1;
        c->eos_id = 2;
        c->rms_eps = p->eps;
        c->rope_theta = 10000.0f;
        c->tok_flags = TOK_ADD_DUMMY_PREFIX | TOK_BYTE_FALLBACK;
        /* CLIP ViT-L/14-336, features of layer 23 of 24 (mm_vision_select_layer -2). */
        c->v_image_size = 336;
        c->v_patch_size = 14;
        c->v_dim = 1024;
        c->v_hidden_dim = 4096;
        c->v_layers = 23;
        c->v_heads = 16;
        c->v_ln_eps = 1e-5f;
        const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
        const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
        memcpy(c->image_mean, mean, sizeof mean);
        memcpy(c->image_std, std, sizeof std);
        c->proj_grid = 12;
        /* torchvision _make_divisible(dim / 4, 8) */
        c->se_dim = (p->dim / 4 + 4) / 8 * 8;
        return 0;
    }
    return -1;
}

typedef struct rng {
    uint64_t s;
} rng;

static float uniform(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (float)((r->s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static int random_values(void *ctx, const plan_tensor *t, float *out, vlm_error *e)
{
    (void)e;
    rng *r = ctx;
    size_t n = t->dims[0] * (size_t)(t->ndim > 1 ? t->dims[1] : 1);
    /* Small weights keep activations in a realistic range; norms start near 1. */
    float scale = t->role == ROLE_MATRIX ? 0.035f : 0.02f;
    float base = t->role == ROLE_NORM ? 1.0f : 0.0f;
    for (size_t i = 0; i < n; i++)
        out[i] = base + scale * uniform(r);
    return 0;
}

int synth_write(const char *path, const wf_config *c, int quant, int vision_quant, uint64_t seed,
                const char *tokenizer_model, void (*progress)(void *, int, int, const char *, uint64_t), void *progress_ctx, vlm_error *e)
{
    int n = (int)c->vocab_size;
    uint8_t *text = malloc((size_t)n * 16);
    uint32_t *offsets = malloc(((size_t)n + 1) * sizeof *offsets);
    float *scores = malloc((size_t)n * sizeof *scores);
    uint8_t *types = malloc((size_t)n);
    int rc = 0;
    if (!text || !offsets || !scores || !types) {
        rc = vlm_fail(e, VLM_ENOMEM, "out of memory");
        goto out;
    }
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        offsets[i] = (uint32_t)len;
        char piece[16];
        if (i == 0)
            strcpy(piece, "<unk>");
        else if (i == 1)
            strcpy(piece, "<s>");
        else if (i == 2)
            strcpy(piece, "</s>");
        else if (i < 259)
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else
            snprintf(piece, sizeof piece, "\xe2\x96\x81w%d", i); /* "▁w<i>" */
        types[i] = i == 0 ? TOK_UNKNOWN : i < 3 ? TOK_CONTROL : i < 259 ? TOK_BYTE : TOK_NORMAL;
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        memcpy(text + len, piece, strlen(piece));
        len += strlen(piece);
    }
    offsets[n] = (uint32_t)len;
    tok_arrays ta = {.n = n, .text = text, .text_len = (uint32_t)len, .offsets = offsets, .scores = scores,
                     .types = types};
    spm_model sp;
    memset(&sp, 0, sizeof sp);
    if (tokenizer_model) {
        rc = spm_load_file(tokenizer_model, &sp, e);
        if (!rc && (uint32_t)sp.n_pieces != c->vocab_size)
            rc = vlm_fail(e, VLM_EARG, "%s: %d pieces, the preset's vocabulary has %u", tokenizer_model, sp.n_pieces,
                          c->vocab_size);
        if (rc) {
            spm_free(&sp);
            goto out;
        }
        ta = (tok_arrays){.n = sp.n_pieces, .text = sp.text, .text_len = (uint32_t)sp.text_len,
                          .offsets = sp.offsets, .scores = sp.scores, .types = sp.types};
    }
    plan p;
    rc = plan_model(c, "", quant, vision_quant, &p, e);
    if (rc) {
        spm_free(&sp);
        goto out;
    }
    rng r = {seed ? seed : 0x9e3779b97f4a7c15ull};
    rc = plan_write(path, c, &ta, &p, random_values, &r, progress, progress_ctx, e);
    plan_free(&p);
    spm_free(&sp);
out:
    free(text);
    free(offsets);
    free(scores);
    free(types);
    return rc;
}
