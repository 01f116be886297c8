/* convert.c: Hugging Face directory -> .vlm. Reads config.json (MobileVLM V2 'ldpnetv2',
 * MobileVLM 'ldpnet', or a plain LlamaForCausalLM), tokenizer.model, the weights in any
 * container source.h reads, and the CLIP vision tower (from the checkpoint when it carries one,
 * else from the CLIP directory). Every source tensor is checked against the planned shape. */
#include "convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "kernels.h"
#include "model.h"
#include "plan.h"
#include "spm.h"
#include "tokenizer.h"

#define VISION_IN_CKPT "model.vision_tower.vision_tower."

int parse_quant(const char *s)
{
    static const char *const names[] = {"f32", "f16", "q8", "q4"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i]))
            return i;
    return -1;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int get_u32(const json_value *o, const char *key, const char *file, int64_t lo, int64_t hi, int64_t def,
                   uint32_t *out, vlm_error *e)
{
    int64_t v;
    if (!json_get(o, key)) {
        if (def < 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: \"%s\" is missing", file, key);
        *out = (uint32_t)def;
        return 0;
    }
    if (!json_get_int(o, key, lo, hi, &v))
        return vlm_fail(e, VLM_EFORMAT, "%s: \"%s\" must be an integer in [%lld, %lld]", file, key, (long long)lo,
                        (long long)hi);
    *out = (uint32_t)v;
    return 0;
}

static int get_f32(const json_value *o, const char *key, const char *file, double def, float *out, vlm_error *e)
{
    double v = def;
    if (json_get(o, key) && !json_get_num(o, key, &v))
        return vlm_fail(e, VLM_EFORMAT, "%s: \"%s\" must be a number", file, key);
    *out = (float)v;
    return 0;
}

/* LLM hyperparameters from a LlamaConfig-style object. */
static int read_llm_config(const json_value *j, const char *file, wf_config *c, vlm_error *e)
{
    int rc = 0;
    int64_t big = 1 << 20;
    if (!rc) rc = get_u32(j, "hidden_size", file, 1, 1 << 16, -1, &c->dim, e);
    if (!rc) rc = get_u32(j, "intermediate_size", file, 1, big, -1, &c->hidden_dim, e);
    if (!rc) rc = get_u32(j, "num_hidden_layers", file, 1, 1024, -1, &c->n_layers, e);
    if (!rc) rc = get_u32(j, "num_attention_heads", file, 1, 1024, -1, &c->n_heads, e);
    if (!rc) rc = get_u32(j, "num_key_value_heads", file, 1, 1024, c->n_heads, &c->n_kv_heads, e);
    if (!rc) rc = get_u32(j, "vocab_size", file, 3, big, -1, &c->vocab_size, e);
    if (!rc) rc = get_u32(j, "bos_token_id", file, 0, big, 1, &c->bos_id, e);
    if (!rc) rc = get_u32(j, "eos_token_id", file, 0, big, 2, &c->eos_id, e);
    uint32_t ctx = 0;
    if (!rc) rc = get_u32(j, "max_position_embeddings", file, 1, big, 2048, &ctx, e);
    /* Upstream MobileVLM uses max_sequence_length when present as the context length. */
    if (!rc) rc = get_u32(j, "max_sequence_length", file, 1, big, ctx, &c->max_seq_len, e);
    if (!rc) rc = get_f32(j, "rms_norm_eps", file, 1e-6, &c->rms_eps, e);
    if (!rc) rc = get_f32(j, "rope_theta", file, 10000.0, &c->rope_theta, e);
    if (rc)
        return rc;
    int tied = 0;
    if (json_get(j, "tie_word_embeddings") && !json_get_bool(j, "tie_word_embeddings", &tied))
        return vlm_fail(e, VLM_EFORMAT, "%s: \"tie_word_embeddings\" must be true or false", file);
    c->tied_embeddings = (uint32_t)tied;
    const json_value *rs = json_get(j, "rope_scaling");
    if (rs && rs->type != JSON_NULL)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: rope_scaling is not supported (only plain RoPE)", file);
    const char *act = json_get_str(j, "hidden_act");
    if (act && strcmp(act, "silu"))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: hidden_act \"%s\" is not supported (only silu)", file, act);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || c->n_kv_heads > c->n_heads)
        return vlm_fail(e, VLM_EFORMAT, "%s: hidden_size %u, heads %u, kv heads %u are inconsistent", file, c->dim,
                        c->n_heads, c->n_kv_heads);
    c->head_dim = c->dim / c->n_heads;
    /* Newer configs may state head_dim; the runtime derives it from hidden_size / heads. */
    int64_t hd;
    if (json_get(j, "head_dim") && (!json_get_int(j, "head_dim", 0, 1 << 20, &hd) || hd != c->head_dim))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: head_dim must equal hidden_size / num_attention_heads = %u / %u = %u",
                        file, c->dim, c->n_heads, c->head_dim);
    /* Rotary embeddings rotate pairs, and the attention kernels hold one head in 256 floats. */
    if (c->head_dim % 2 || c->head_dim > 256)
        return vlm_fail(e, VLM_EUNSUPPORTED,
                        "%s: head_dim %u (hidden_size %u / num_attention_heads %u) is not supported: it must be even "
                        "and at most 256",
                        file, c->head_dim, c->dim, c->n_heads);
    if (!(c->rms_eps > 0 && c->rms_eps < 1))
        return vlm_fail(e, VLM_EFORMAT, "%s: rms_norm_eps %g is not in (0, 1)", file, c->rms_eps);
    if (!(c->rope_theta > 1 && c->rope_theta < 1e9))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: rope_theta %g is not in (1, 1e9)", file, c->rope_theta);
    /* LLaMA variants with biases (attention_bias, mlp_bias) would have them ignored. */
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        int on = 0;
        if (json_get(j, biases[i]) && (!json_get_bool(j, biases[i], &on) || on))
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: \"%s\" is not supported (LLaMA has no biases)", file, biases[i]);
    }
    return 0;
}

typedef struct conv_state {
    src_set *main;
    src_set *vision; /* NULL when the checkpoint carries the tower */
    const char *model_dir;
} conv_state;

/* Finds the CLIP directory: --vision, else mm_vision_tower as a path, else its last path
 * component next to the model directory (the layout of cloning the CLIP repo beside it). */
static int find_vision_dir(const convert_opts *o, const char *tower, char *out, size_t cap)
{
    if (o->vision_dir) {
        snprintf(out, cap, "%s", o->vision_dir);
        return is_dir(out);
    }
    if (!tower)
        return 0;
    snprintf(out, cap, "%s", tower);
    if (is_dir(out))
        return 1;
    const char *base = strrchr(tower, '/');
    base = base ? base + 1 : tower;
    snprintf(out, cap, "%s/../%s", o->model_dir, base);
    return is_dir(out);
}

/* A size entry of preprocessor_config.json: an integer, or an object whose keys (of those in
 * keys, all present ones) hold the same integer. 1 and *out set; 0 if absent; -1 if malformed
 * or the keys disagree. */
static int pp_size(const json_value *pj, const char *key, const char *const *keys, int n_keys, int64_t *out)
{
    const json_value *v = json_get(pj, key);
    if (!v)
        return 0;
    if (v->type != JSON_OBJECT)
        return json_get_int(pj, key, 1, 1 << 20, out) ? 1 : -1;
    int found = 0;
    for (int i = 0; i < n_keys; i++) {
        int64_t x;
        if (!json_get(v, keys[i]))
            continue;
        if (!json_get_int(v, keys[i], 1, 1 << 20, &x) || (found && x != *out))
            return -1;
        *out = x;
        found = 1;
    }
    return found ? 1 : -1;
}

/* The CLIP preprocessing this runtime implements (src/preprocess.c): resize the shortest side
 * to image_size with Pillow's bicubic filter, centre crop image_size, x / 255, (x - mean) / std.
 * Any other setting in preprocessor_config.json would be ignored and give different pixels,
 * so it is refused: a size or crop_size (integer, {"shortest_edge"}, {"height","width"})
 * other than image_size, resample other than 3 (bicubic), a rescale_factor other than 1/255,
 * a do_resize / do_center_crop / do_rescale / do_normalize that is false. */
static int check_preprocessor(const json_value *pj, const char *path, uint32_t image_size, vlm_error *e)
{
    static const char *const size_keys[] = {"shortest_edge", "height", "width"};
    static const char *const crop_keys[] = {"height", "width"};
    const char *names[2] = {"size", "crop_size"};
    for (int k = 0; k < 2; k++) {
        int64_t v = 0;
        int got = k ? pp_size(pj, names[k], crop_keys, 2, &v) : pp_size(pj, names[k], size_keys, 3, &v);
        if (got < 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: \"%s\" must be an integer or an object of equal integers", path,
                            names[k]);
        if (got && v != image_size)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: %s %lld differs from the tower's image_size %u", path, names[k],
                            (long long)v, image_size);
    }
    int64_t resample;
    if (json_get(pj, "resample") && (!json_get_int(pj, "resample", 0, 16, &resample) || resample != 3))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: resample must be 3 (bicubic), the only filter implemented", path);
    double f;
    if (json_get(pj, "rescale_factor") &&
        (!json_get_num(pj, "rescale_factor", &f) || !(f > 0.99999 / 255 && f < 1.00001 / 255)))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: rescale_factor must be 1/255", path);
    static const char *const flags[] = {"do_resize", "do_center_crop", "do_rescale", "do_normalize"};
    for (int i = 0; i < 4; i++) {
        int on = 1;
        if (json_get(pj, flags[i]) && (!json_get_bool(pj, flags[i], &on) || !on))
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: %s must be true (the preprocessing always does it)", path,
                            flags[i]);
    }
    return 0;
}

static int read_vision_config(const convert_opts *o, const json_value *cfgj, conv_state *st, wf_config *c,
                              const char **vision_prefix, vlm_error *e)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/config.json", o->model_dir);
    const char *tower = json_get_str(cfgj, "mm_vision_tower");
    const char *feature = json_get_str(cfgj, "mm_vision_select_feature");
    if (feature && strcmp(feature, "patch"))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: mm_vision_select_feature \"%s\" is not supported (only patch)",
                        file, feature);
    int64_t select = -2;
    if (json_get(cfgj, "mm_vision_select_layer") && !json_get_int(cfgj, "mm_vision_select_layer", -1024, 1024, &select))
        return vlm_fail(e, VLM_EFORMAT, "%s: mm_vision_select_layer must be an integer", file);
    /* Upstream pads to a square only for "pad"; without the key it resizes and crops, which
     * this runtime does not implement (every released MobileVLM config says "pad"). */
    const char *aspect = json_get_str(cfgj, "image_aspect_ratio");
    if (!aspect || strcmp(aspect, "pad"))
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: image_aspect_ratio %s%s%s is not supported (only \"pad\")", file,
                        aspect ? "\"" : "", aspect ? aspect : "absent", aspect ? "\"" : "");

    char dir[4096];
    if (!find_vision_dir(o, tower, dir, sizeof dir))
        return vlm_fail(e, VLM_EIO,
                        "%s: cannot find the CLIP directory for mm_vision_tower \"%s\": clone it next to the model "
                        "directory or pass --vision DIR",
                        o->model_dir, tower ? tower : "(none)");
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_doc *vd = json_parse_file(path, 1 << 20, e);
    if (!vd)
        return e->code;
    const json_value *vj = json_root(vd);
    const json_value *sub = json_get(vj, "vision_config");
    if (sub && sub->type == JSON_OBJECT)
        vj = sub;
    int rc = 0;
    uint32_t layers = 0;
    if (!rc) rc = get_u32(vj, "hidden_size", path, 1, 1 << 16, -1, &c->v_dim, e);
    if (!rc) rc = get_u32(vj, "intermediate_size", path, 1, 1 << 20, -1, &c->v_hidden_dim, e);
    if (!rc) rc = get_u32(vj, "num_hidden_layers", path, 1, 1024, -1, &layers, e);
    if (!rc) rc = get_u32(vj, "num_attention_heads", path, 1, 1024, -1, &c->v_heads, e);
    if (!rc) rc = get_u32(vj, "image_size", path, 1, 4096, -1, &c->v_image_size, e);
    if (!rc) rc = get_u32(vj, "patch_size", path, 1, 4096, -1, &c->v_patch_size, e);
    if (!rc) rc = get_f32(vj, "layer_norm_eps", path, 1e-5, &c->v_ln_eps, e);
    const char *act = rc ? NULL : json_get_str(vj, "hidden_act");
    if (!rc && act && strcmp(act, "quick_gelu"))
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: vision hidden_act \"%s\" is not supported (only quick_gelu)", path, act);
    json_free(vd);
    if (rc)
        return rc;
    int64_t kept = select < 0 ? (int64_t)layers + 1 + select : select;
    if (kept < 0 || kept > (int64_t)layers)
        return vlm_fail(e, VLM_EFORMAT, "%s: mm_vision_select_layer %lld invalid for %u layers", file, (long long)select,
                        layers);
    c->v_layers = (uint32_t)kept;
    if (c->v_image_size % c->v_patch_size)
        return vlm_fail(e, VLM_EFORMAT, "%s: image_size %u is not a multiple of patch_size %u", path, c->v_image_size,
                        c->v_patch_size);
    if (c->v_image_size / c->v_patch_size < 2)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: image_size %u / patch_size %u gives a patch grid below 2 x 2", path,
                        c->v_image_size, c->v_patch_size);
    if (c->v_dim % c->v_heads || c->v_dim / c->v_heads > 256)
        return vlm_fail(e, VLM_EUNSUPPORTED,
                        "%s: hidden_size %u with num_attention_heads %u: heads must divide it into at most 256 each",
                        path, c->v_dim, c->v_heads);
    if (!(c->v_ln_eps > 0 && c->v_ln_eps < 1))
        return vlm_fail(e, VLM_EFORMAT, "%s: layer_norm_eps %g is not in (0, 1)", path, c->v_ln_eps);

    /* Normalization constants; CLIP's when the preprocessor file is absent. */
    static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(c->image_mean, clip_mean, sizeof clip_mean);
    memcpy(c->image_std, clip_std, sizeof clip_std);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        json_doc *pd = json_parse_file(path, 1 << 20, e);
        if (!pd)
            return e->code;
        const json_value *pj = json_root(pd);
        const char *keys[2] = {"image_mean", "image_std"};
        float *dst[2] = {c->image_mean, c->image_std};
        for (int k = 0; k < 2 && !rc; k++) {
            const json_value *a = json_get(pj, keys[k]);
            if (!a)
                continue;
            if (a->type != JSON_ARRAY || a->len != 3)
                rc = vlm_fail(e, VLM_EFORMAT, "%s: \"%s\" must be an array of 3 numbers", path, keys[k]);
            for (size_t i = 0; !rc && i < 3; i++) {
                if (a->items[i]->type != JSON_NUMBER)
                    rc = vlm_fail(e, VLM_EFORMAT, "%s: \"%s\" must be an array of 3 numbers", path, keys[k]);
                else
                    dst[k][i] = (float)a->items[i]->number;
            }
        }
        if (!rc)
            rc = check_preprocessor(pj, path, c->v_image_size, e);
        json_free(pd);
        if (rc)
            return rc;
    }

    /* Weights: the checkpoint's copy of the tower when present, else the CLIP directory's. */
    if (src_find(st->main, VISION_IN_CKPT "vision_model.embeddings.class_embedding")) {
        *vision_prefix = VISION_IN_CKPT;
        return 0;
    }
    *vision_prefix = "";
    return src_open(dir, &st->vision, e);
}

static int get_values(void *ctx, const plan_tensor *t, float *out, vlm_error *e)
{
    (void)ctx;
    return src_read_f32(t->src, out, e);
}

/* Binds each planned tensor to its source and checks the element count and leading dim. */
static int bind_sources(conv_state *st, plan *p, vlm_error *e)
{
    for (int i = 0; i < p->n; i++) {
        plan_tensor *t = &p->t[i];
        const src_set *set = t->name[0] == 'v' && st->vision ? st->vision : st->main;
        const src_tensor *s = src_find(set, t->hf);
        if (!s && !strcmp(t->name, "t.out"))
            return vlm_fail(e, VLM_EFORMAT, "%s: lm_head.weight is missing and tie_word_embeddings is false",
                            st->model_dir);
        if (!s)
            return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s' is missing from the checkpoint", st->model_dir, t->hf);
        size_t want = t->dims[0] * (size_t)(t->ndim > 1 ? t->dims[1] : 1);
        if (src_numel(s) != want || (s->ndim > 0 && (uint64_t)s->shape[0] != t->dims[0]))
            return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s' has %zu elements (first dim %lld), expected %u x %u",
                            s->file, t->hf, src_numel(s), s->ndim ? (long long)s->shape[0] : 1LL, t->dims[0],
                            t->ndim > 1 ? t->dims[1] : 1);
        t->src = s;
    }
    return 0;
}

int convert_model(const convert_opts *o, vlm_error *e)
{
    char path[4200];
    wf_config c;
    memset(&c, 0, sizeof c);
    conv_state st = {.model_dir = o->model_dir};
    spm_model sp;
    memset(&sp, 0, sizeof sp);
    plan p = {0};
    snprintf(path, sizeof path, "%s/config.json", o->model_dir);
    json_doc *cd = json_parse_file(path, 1 << 20, e);
    if (!cd)
        return e->code;
    const json_value *cj = json_root(cd);
    int rc = 0;

    /* Architecture: test 'ldpnetv2' before 'ldpnet' (one is a prefix of the other). */
    const char *proj = json_get_str(cj, "mm_projector_type");
    const json_value *archs = json_get(cj, "architectures");
    const char *arch0 = archs && archs->type == JSON_ARRAY && archs->len ? archs->items[0]->str : NULL;
    const char *mtype = json_get_str(cj, "model_type");
    if (proj && !strncmp(proj, "ldpnetv2", 8))
        c.arch = ARCH_MOBILEVLM_V2;
    else if (proj && !strncmp(proj, "ldpnet", 6))
        c.arch = ARCH_MOBILEVLM_V1;
    else if (proj)
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: mm_projector_type \"%s\" is not supported (ldpnetv2 or ldpnet)", path, proj);
    else if ((arch0 && !strcmp(arch0, "LlamaForCausalLM")) || (!arch0 && mtype && !strcmp(mtype, "llama")))
        c.arch = ARCH_LLAMA;
    else
        rc = vlm_fail(e, VLM_EUNSUPPORTED,
                      "%s: unknown architecture \"%s\" (model_type \"%s\"): supported are MobileVLM V2 (ldpnetv2), "
                      "MobileVLM (ldpnet) and LlamaForCausalLM",
                      path, arch0 ? arch0 : "?", mtype ? mtype : "?");
    c.chat_template = c.arch == ARCH_LLAMA ? TEMPLATE_NONE : TEMPLATE_VICUNA_V1;
    if (!rc)
        rc = read_llm_config(cj, path, &c, e);

    /* Tokenizer. */
    if (!rc) {
        snprintf(path, sizeof path, "%s/tokenizer.model", o->model_dir);
        rc = spm_load_file(path, &sp, e);
    }
    if (!rc && sp.model_type != 2)
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: SentencePiece model type %d is not supported (only BPE)", path, sp.model_type);
    if (!rc && (sp.charsmap_len || sp.treat_whitespace_as_suffix || !sp.escape_whitespaces || sp.has_denormalizer))
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: normalizer \"%s\" is not supported (only identity)", path,
                      sp.normalizer_name);
    if (!rc && (uint32_t)sp.n_pieces != c.vocab_size)
        rc = vlm_fail(e, VLM_EFORMAT, "%s: %d pieces, but config vocab_size is %u", path, sp.n_pieces, c.vocab_size);
    if (!rc && (sp.unk_id < 0 || sp.unk_id >= sp.n_pieces))
        rc = vlm_fail(e, VLM_EFORMAT, "%s: unk id %d out of range", path, sp.unk_id);
    /* The runtime starts every prompt with the config's bos_token_id; upstream's tokenizer adds
     * its own BOS (tokenizer.model's). Where they differ the prompt would start differently. */
    if (!rc && sp.bos_id >= 0 && sp.bos_id < sp.n_pieces && (uint32_t)sp.bos_id != c.bos_id)
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: BOS id %d differs from config.json bos_token_id %u", path, sp.bos_id,
                      c.bos_id);
    if (!rc) {
        c.unk_id = (uint32_t)sp.unk_id;
        c.tok_flags = (sp.add_dummy_prefix ? TOK_ADD_DUMMY_PREFIX : 0) | (sp.byte_fallback ? TOK_BYTE_FALLBACK : 0) |
                      (sp.remove_extra_whitespaces ? TOK_REMOVE_EXTRA_WHITESPACES : 0);
    }

    const char *vision_prefix = "";
    if (!rc)
        rc = src_open(o->model_dir, &st.main, e);
    if (!rc && c.arch != ARCH_LLAMA)
        rc = read_vision_config(o, cj, &st, &c, &vision_prefix, e);
    if (!rc && c.arch != ARCH_LLAMA) {
        uint32_t g = c.v_image_size / c.v_patch_size;
        /* V2 pools to half the grid (AdaptiveAvgPool2d((12,12)) on the 24x24 grid); V1's stride-2 conv. */
        c.proj_grid = c.arch == ARCH_MOBILEVLM_V2 ? g / 2 : (g - 1) / 2 + 1;
        if (c.arch == ARCH_MOBILEVLM_V1) {
            const src_tensor *fc1 = src_find(st.main, "model.mm_projector.model.mb_block.1.block.1.fc1.weight");
            if (!fc1 || fc1->ndim < 1 || fc1->shape[0] < 1 || fc1->shape[0] > c.dim)
                rc = vlm_fail(e, VLM_EFORMAT, "%s: LDP squeeze-excitation weight missing or malformed", o->model_dir);
            else
                c.se_dim = (uint32_t)fc1->shape[0];
        }
    }
    /* The runtime's own checks, on the configuration as the file will carry it. */
    if (!rc) {
        snprintf(path, sizeof path, "%s/config.json", o->model_dir);
        rc = model_check_config(path, &c, e);
    }
    int vq = o->vision_quant >= 0 ? o->vision_quant : o->quant == WT_Q4 ? WT_Q8 : o->quant;
    if (!rc)
        rc = plan_model(&c, vision_prefix, o->quant, vq, &p, e);
    if (!rc)
        rc = bind_sources(&st, &p, e);
    if (!rc) {
        tok_arrays ta = {.n = sp.n_pieces, .text = sp.text, .text_len = (uint32_t)sp.text_len,
                         .offsets = sp.offsets, .scores = sp.scores, .types = sp.types};
        if (sp.text_len > 0x7fffffff)
            rc = vlm_fail(e, VLM_ERANGE, "tokenizer text too large");
        else
            rc = plan_write(o->out_path, &c, &ta, &p, get_values, &st, o->progress, o->progress_ctx, e);
    }
    plan_free(&p);
    spm_free(&sp);
    if (st.vision)
        src_close(st.vision);
    if (st.main)
        src_close(st.main);
    json_free(cd);
    return rc;
}
