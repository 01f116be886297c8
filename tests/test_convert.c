/* test_convert.c: weights-tool's converter on directories it must refuse (unknown
 * architecture, unsupported projector, missing tokenizer, missing tensors, no CLIP directory,
 * head sizes, biases, a BOS id other than the tokenizer's, vision shapes and preprocessing
 * settings the runtime does not implement)
 * with a clear message, and on the real fixtures with every quantization (types as planned:
 * matrices quantized, rows not a multiple of 32 in f16, norms and biases f32). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "kernels.h"
#include "th.h"
#include "wfile.h"

static char tmpdir[512];

/* A model directory in tmpdir/name: config.json with text, and links to the tiny-v2 files. */
static const char *make_dir(const char *name, const char *config, int with_tokenizer, const char *weights_from)
{
    static char dir[700];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    char path[800], target[800], cwd[512];
    if (!getcwd(cwd, sizeof cwd))
        return dir;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    if (with_tokenizer) {
        snprintf(path, sizeof path, "%s/tokenizer.model", dir);
        snprintf(target, sizeof target, "%s/%s", cwd, TH_DATA("tokenizer/tokenizer.model"));
        if (symlink(target, path)) {
        }
    }
    if (weights_from) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        snprintf(target, sizeof target, "%s/%s", cwd, TH_DATA(weights_from));
        if (symlink(target, path)) {
        }
    }
    return dir;
}

/* A CLIP directory tmpdir/name holding only config.json and, unless NULL, preprocessor_config.json
 * (tiny-v2 carries its own tower, so no weights are read from it). */
static void make_clip(const char *name, const char *config, const char *preprocessor)
{
    char dir[700], path[800];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    const char *files[2] = {"config.json", "preprocessor_config.json"};
    const char *text[2] = {config, preprocessor};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
        FILE *f = text[i] ? fopen(path, "w") : NULL;
        if (f) {
            fputs(text[i], f);
            fclose(f);
        }
    }
}

static void expect_refusal(const char *what, const char *dir, const char *want)
{
    char out[800];
    snprintf(out, sizeof out, "%s/out.vlm", tmpdir);
    convert_opts o = {.model_dir = dir, .out_path = out, .quant = WT_F32, .vision_quant = -1};
    vlm_error e = {0};
    int rc = convert_model(&o, &e);
    fprintf(stderr, "  %-26s -> %s\n", what, rc ? e.msg : "(accepted)");
    TH_CHECK(rc < 0, "%s: accepted", what);
    TH_CHECK(rc >= 0 || strstr(e.msg, want), "%s: '%s' lacks '%s'", what, e.msg, want);
    TH_CHECK(access(out, F_OK) != 0, "%s: left an output file", what);
}

static void check_types(const char *fixture, int quant, int vquant)
{
    char dir[600], out[800];
    snprintf(dir, sizeof dir, "%s", TH_DATA(fixture));
    snprintf(out, sizeof out, "%s/types.vlm", tmpdir);
    convert_opts o = {.model_dir = dir, .out_path = out, .quant = quant, .vision_quant = vquant};
    vlm_error e;
    int rc = convert_model(&o, &e);
    TH_CHECK(rc == 0, "%s: %s", fixture, e.msg);
    wfile wf;
    if (rc || wf_open(out, &wf, &e))
        return;
    int bad = 0;
    for (uint32_t i = 0; i < wf.n_tensors; i++) {
        const wf_tensor *t = &wf.tensors[i];
        int is_matrix = t->ndim == 2 && strcmp(t->name, "v.pos") && !strstr(t->name, ".dw") && !strstr(t->name, "peg.w");
        uint32_t want;
        if (!strncmp(t->name, "tok.", 4))
            continue;
        if (!is_matrix)
            want = WT_F32;
        else {
            want = (uint32_t)(t->name[0] == 't' ? quant : vquant);
            if ((want == WT_Q8 || want == WT_Q4) && t->dims[1] % 32)
                want = WT_F16;
        }
        if (t->type != want) {
            bad++;
            fprintf(stderr, "  %s: %s is %s, expected %s\n", fixture, t->name, wt_name(t->type), wt_name(want));
        }
    }
    TH_CHECK(bad == 0, "%s: %d tensors with unexpected types", fixture, bad);
    wf_close(&wf);
    remove(out);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vlm-test-convert-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir))
        return 1;
    const char *llama = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64,"
                        " \"intermediate_size\": 256, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                        " \"num_key_value_heads\": 2, \"vocab_size\": 32000, \"tie_word_embeddings\": false}";
    expect_refusal("unknown architecture",
                   make_dir("gpt2", "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\"}", 1, NULL),
                   "unknown architecture \"GPT2LMHeadModel\"");
    expect_refusal("unsupported projector",
                   make_dir("mlp", "{\"mm_projector_type\": \"mlp2x_gelu\", \"hidden_size\": 64}", 1, NULL),
                   "mm_projector_type \"mlp2x_gelu\"");
    expect_refusal("missing tokenizer", make_dir("notok", llama, 0, NULL), "tokenizer.model");
    expect_refusal("no weights", make_dir("noweights", llama, 1, NULL), "");
    /* tiny-v2's LLM weights are all there, but its names carry a vision tower and projector the
     * config does not ask for: the LLaMA view converts; drop a layer count to force a miss. */
    const char *llama3 = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 256,"
                         " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
                         " \"vocab_size\": 32000}";
    expect_refusal("missing tensor", make_dir("short", llama3, 1, "fixtures/tiny-v2/model.safetensors"),
                   "model.layers.2.input_layernorm.weight");
    expect_refusal("rope scaling",
                   make_dir("rope", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
                                    "\"intermediate_size\": 256, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                                    "\"vocab_size\": 32000, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}",
                            1, "fixtures/tiny-v2/model.safetensors"),
                   "rope_scaling");
    const char *v2 = "{\"mm_projector_type\": \"ldpnetv2\", \"mm_vision_tower\": \"nowhere/clip-missing\","
                     " \"image_aspect_ratio\": \"pad\","
                     " \"hidden_size\": 64, \"intermediate_size\": 256, \"num_hidden_layers\": 2,"
                     " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 32000}";
    expect_refusal("no CLIP directory", make_dir("noclip", v2, 1, "fixtures/tiny-v2/model.safetensors"),
                   "cannot find the CLIP directory");

    /* Settings the runtime does not implement are refused here, naming the file and the value,
     * rather than converted into a file that computes something else or that the runtime
     * refuses at load. LLM: head_dim beyond the kernels, a head_dim key that disagrees,
     * biases, rope_theta out of range, a bos_token_id that is not the tokenizer's. */
    const char *llm_bad[][2] = {
        {"\"hidden_size\": 512, \"num_attention_heads\": 1, \"num_key_value_heads\": 1", "head_dim 512"},
        {"\"hidden_size\": 30, \"num_attention_heads\": 2, \"num_key_value_heads\": 1", "head_dim 15"},
        {"\"hidden_size\": 64, \"num_attention_heads\": 4, \"head_dim\": 32", "head_dim must equal"},
        {"\"hidden_size\": 64, \"num_attention_heads\": 4, \"attention_bias\": true", "\"attention_bias\""},
        {"\"hidden_size\": 64, \"num_attention_heads\": 4, \"mlp_bias\": true", "\"mlp_bias\""},
        {"\"hidden_size\": 64, \"num_attention_heads\": 4, \"rope_theta\": 5e9", "rope_theta 5e+09"},
        {"\"hidden_size\": 64, \"num_attention_heads\": 4, \"bos_token_id\": 0", "bos_token_id 0"},
    };
    for (size_t i = 0; i < sizeof llm_bad / sizeof llm_bad[0]; i++) {
        char cfg[600], name[32];
        snprintf(cfg, sizeof cfg,
                 "{\"architectures\": [\"LlamaForCausalLM\"], \"intermediate_size\": 256, \"num_hidden_layers\": 2, "
                 "\"vocab_size\": 32000, %s}", llm_bad[i][0]);
        snprintf(name, sizeof name, "llmbad%zu", i);
        expect_refusal(llm_bad[i][1], make_dir(name, cfg, 1, "fixtures/tiny-v2/model.safetensors"), llm_bad[i][1]);
    }
    /* Vision: tiny-v2's LLM and tower with a CLIP directory of this test's making. */
    const char *v2t = "{\"mm_projector_type\": \"ldpnetv2\", \"mm_vision_tower\": \"x/clip-t\", %s"
                      " \"hidden_size\": 64, \"intermediate_size\": 256, \"num_hidden_layers\": 2,"
                      " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 32000}";
    const char *clip = "{\"hidden_size\": 64, \"intermediate_size\": 256, \"num_hidden_layers\": 3,"
                       " \"num_attention_heads\": %d, \"image_size\": %d, \"patch_size\": 14}";
    static const struct {
        const char *cfg_extra;
        int heads, image;
        const char *preprocessor, *want;
    } vis_bad[] = {
        {"", 4, 112, NULL, "image_aspect_ratio absent"},
        {"\"image_aspect_ratio\": \"pad\",", 5, 112, NULL, "num_attention_heads 5"},
        {"\"image_aspect_ratio\": \"pad\",", 4, 14, NULL, "patch grid below 2 x 2"},
        {"\"image_aspect_ratio\": \"pad\",", 4, 112, "{\"size\": 128, \"crop_size\": 112}", "size 128 differs"},
        {"\"image_aspect_ratio\": \"pad\",", 4, 112, "{\"crop_size\": {\"height\": 96, \"width\": 96}}",
         "crop_size 96 differs"},
        {"\"image_aspect_ratio\": \"pad\",", 4, 112, "{\"size\": {\"shortest_edge\": 112}, \"resample\": 2}",
         "resample must be 3"},
        {"\"image_aspect_ratio\": \"pad\",", 4, 112, "{\"do_normalize\": false}", "do_normalize must be true"},
        {"\"image_aspect_ratio\": \"pad\",", 4, 112, "{\"rescale_factor\": 1.0}", "rescale_factor"},
    };
    for (size_t i = 0; i < sizeof vis_bad / sizeof vis_bad[0]; i++) {
        char cfg[800], ccfg[400], name[32];
        snprintf(cfg, sizeof cfg, v2t, vis_bad[i].cfg_extra);
        snprintf(ccfg, sizeof ccfg, clip, vis_bad[i].heads, vis_bad[i].image);
        make_clip("clip-t", ccfg, vis_bad[i].preprocessor);
        snprintf(name, sizeof name, "visbad%zu", i);
        expect_refusal(vis_bad[i].want, make_dir(name, cfg, 1, "fixtures/tiny-v2/model.safetensors"), vis_bad[i].want);
    }
    /* The same directory with the object forms of size and crop_size converts. */
    {
        char cfg[800], ccfg[400], vout[800];
        snprintf(cfg, sizeof cfg, v2t, "\"image_aspect_ratio\": \"pad\",");
        snprintf(ccfg, sizeof ccfg, clip, 4, 112);
        make_clip("clip-t", ccfg,
                  "{\"size\": {\"shortest_edge\": 112}, \"crop_size\": {\"height\": 112, \"width\": 112},"
                  " \"resample\": 3, \"do_resize\": true, \"rescale_factor\": 0.00392156862745098}");
        snprintf(vout, sizeof vout, "%s/visgood.vlm", tmpdir);
        convert_opts vo = {.model_dir = make_dir("visgood", cfg, 1, "fixtures/tiny-v2/model.safetensors"),
                           .out_path = vout, .quant = WT_F32, .vision_quant = -1};
        vlm_error ve;
        TH_CHECK(convert_model(&vo, &ve) == 0, "tiny-v2 with object-form preprocessor sizes: %s", ve.msg);
        remove(vout);
    }

    /* The LLaMA view of tiny-v2's checkpoint converts (extra tensors are ignored). */
    char out[800];
    snprintf(out, sizeof out, "%s/llama.vlm", tmpdir);
    convert_opts o = {.model_dir = make_dir("llama", llama, 1, "fixtures/tiny-v2/model.safetensors"),
                      .out_path = out, .quant = WT_Q8, .vision_quant = -1};
    vlm_error e;
    TH_CHECK(convert_model(&o, &e) == 0, "LLaMA view of tiny-v2: %s", e.msg);
    remove(out);

    check_types("fixtures/tiny-v2", WT_Q4, WT_Q8);
    check_types("fixtures/tiny-v1", WT_Q8, WT_F16);
    check_types("fixtures/stories260K-hf", WT_Q4, WT_Q4);
    check_types("fixtures/tiny-v1", WT_F16, WT_Q4);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {
    }
    return th_report("test_convert");
}
