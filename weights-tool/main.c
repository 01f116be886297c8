/* main.c (weights-tool): the command line of the converter.
 *   weights-tool convert MODEL_DIR -o OUT.vlm [--quant f32|f16|q8|q4] [--vision-quant ...] [--vision DIR]
 *   weights-tool info FILE
 *   weights-tool verify FILE
 *   weights-tool synth --preset NAME [--quant q4] [--vision-quant q8] [--seed N] -o FILE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "kernels.h"
#include "model.h"
#include "synth.h"
#include "wfile.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct progress_state {
    int tty;
    double t0;
    int last_pct;
} progress_state;

/* A live percentage on a terminal; a line every 10% otherwise (logs stay short). */
static void progress(void *ctx, int done, int total, const char *name, uint64_t bytes)
{
    progress_state *ps = ctx;
    int pct = (int)(100.0 * done / total);
    if (ps->tty)
        fprintf(stderr, "\r  %3d%%  %d/%d tensors  %.1f MB  %-24s", pct, done, total, bytes / 1e6, name);
    else if (pct / 10 != ps->last_pct / 10 || done == total)
        fprintf(stderr, "  %3d%%  %d/%d tensors  %.1f MB  %.1f s\n", pct, done, total, bytes / 1e6, now_s() - ps->t0);
    ps->last_pct = pct;
    if (ps->tty && done == total)
        fputc('\n', stderr);
}

static int usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  weights-tool convert MODEL_DIR -o OUT.vlm [--quant f32|f16|q8|q4] [--vision-quant f32|f16|q8|q4]\n"
            "                       [--vision CLIP_DIR]\n"
            "  weights-tool info FILE.vlm\n"
            "  weights-tool verify FILE.vlm\n"
            "  weights-tool synth --preset NAME [--quant q4] [--vision-quant q8] [--seed N] [--tokenizer FILE] -o OUT.vlm\n"
            "presets: %s\n"
            "Default quant: q4 for the LLM; the vision tower and projector use q8 when the LLM is q4,\n"
            "else the LLM's type. Matrices whose rows are not a multiple of 32 are stored as f16.\n",
            synth_preset_names());
    return 2;
}

static int fail(const vlm_error *e)
{
    fprintf(stderr, "weights-tool: %s\n", e->msg);
    return 1;
}

static void print_summary(const char *path)
{
    wfile wf;
    vlm_error e;
    if (wf_open(path, &wf, &e)) {
        fprintf(stderr, "weights-tool: %s\n", e.msg);
        return;
    }
    uint64_t by_type[WT_COUNT] = {0};
    for (uint32_t i = 0; i < wf.n_tensors; i++)
        by_type[wf.tensors[i].type] += wf.tensors[i].nbytes;
    fprintf(stderr, "wrote %s: %u tensors, %.1f MB (", path, wf.n_tensors, wf.size / 1e6);
    for (int t = 0; t < WT_COUNT; t++)
        if (by_type[t])
            fprintf(stderr, " %s %.1f MB", wt_name((uint32_t)t), by_type[t] / 1e6);
    fprintf(stderr, " )\n");
    wf_close(&wf);
}

static int cmd_info(const char *path)
{
    wfile wf;
    vlm_error e;
    if (wf_open(path, &wf, &e))
        return fail(&e);
    const wf_config *c = &wf.cfg;
    static const char *const arch[] = {"llama (text only)", "mobilevlm v1 (ldpnet)", "mobilevlm v2 (ldpnetv2)"};
    printf("file          %s (%zu bytes, format version %d)\n", path, wf.size, WF_VERSION);
    printf("architecture  %s\n", c->arch <= 2 ? arch[c->arch] : "?");
    printf("llm           dim %u, hidden %u, layers %u, heads %u, kv heads %u, head dim %u\n", c->dim,
           c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
    printf("              vocab %u, context %u, rms eps %g, rope theta %g, bos %u, eos %u, tied %u\n",
           c->vocab_size, c->max_seq_len, c->rms_eps, c->rope_theta, c->bos_id, c->eos_id, c->tied_embeddings);
    printf("tokenizer     flags %u (1 dummy prefix, 2 byte fallback, 4 remove extra spaces), unk %u, template %s\n", c->tok_flags,
           c->unk_id, c->chat_template ? "vicuna v1" : "none (raw completion)");
    if (c->arch) {
        printf("vision        image %u, patch %u, dim %u, hidden %u, layers kept %u, heads %u, eps %g\n",
               c->v_image_size, c->v_patch_size, c->v_dim, c->v_hidden_dim, c->v_layers, c->v_heads, c->v_ln_eps);
        printf("              mean %.8g %.8g %.8g, std %.8g %.8g %.8g\n", c->image_mean[0], c->image_mean[1],
               c->image_mean[2], c->image_std[0], c->image_std[1], c->image_std[2]);
        printf("projector     %u image tokens (grid %u)%s\n", c->proj_grid * c->proj_grid, c->proj_grid,
               c->arch == ARCH_MOBILEVLM_V1 ? ", squeeze width" : "");
        if (c->arch == ARCH_MOBILEVLM_V1)
            printf("              squeeze width %u\n", c->se_dim);
    }
    printf("\n%-28s %-5s %-22s %14s\n", "tensor", "type", "shape", "bytes");
    uint64_t by_type[WT_COUNT] = {0};
    for (uint32_t i = 0; i < wf.n_tensors; i++) {
        const wf_tensor *t = &wf.tensors[i];
        char shape[64];
        int n = 0;
        for (uint32_t d = 0; d < t->ndim; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, d ? " x %u" : "%u", t->dims[d]);
        printf("%-28s %-5s %-22s %14llu\n", t->name, wt_name(t->type), shape, (unsigned long long)t->nbytes);
        by_type[t->type] += t->nbytes;
    }
    printf("\n%u tensors", wf.n_tensors);
    for (int t = 0; t < WT_COUNT; t++)
        if (by_type[t])
            printf(", %s %.2f MB", wt_name((uint32_t)t), by_type[t] / 1e6);
    printf("\n");
    wf_close(&wf);
    return 0;
}

static int cmd_verify(const char *path)
{
    vlm_error e;
    model m;
    if (model_open(path, 1, NULL, &m, &e))
        return fail(&e);
    int rc = wf_verify_data(&m.wf, &e);
    model_close(&m);
    if (rc)
        return fail(&e);
    printf("%s: OK (structure, tensors bound to the configuration, tokenizer, data CRC-32)\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    const char *in = NULL;
    const char *out = NULL;
    const char *vision = NULL;
    const char *preset = NULL;
    const char *tokenizer_model = NULL;
    int quant = WT_Q4;
    int vquant = -1;
    unsigned long long seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--quant") && v) {
            if ((quant = parse_quant(v)) < 0)
                return usage();
            i++;
        } else if (!strcmp(a, "--vision-quant") && v) {
            if ((vquant = parse_quant(v)) < 0)
                return usage();
            i++;
        } else if (!strcmp(a, "--vision") && v) {
            vision = v;
            i++;
        } else if (!strcmp(a, "--tokenizer") && v) {
            tokenizer_model = v;
            i++;
        } else if (!strcmp(a, "--preset") && v) {
            preset = v;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            seed = strtoull(v, NULL, 10);
            i++;
        } else if (a[0] != '-' && !in) {
            in = a;
        } else {
            fprintf(stderr, "weights-tool: unknown or incomplete option '%s'\n", a);
            return usage();
        }
    }
    vlm_error e;
    progress_state ps = {.tty = isatty(2), .t0 = now_s(), .last_pct = -1};
    if (!strcmp(cmd, "info") && in)
        return cmd_info(in);
    if (!strcmp(cmd, "verify") && in)
        return cmd_verify(in);
    if (!strcmp(cmd, "convert") && in && out) {
        convert_opts o = {.model_dir = in, .vision_dir = vision, .out_path = out, .quant = quant,
                          .vision_quant = vquant, .progress = progress, .progress_ctx = &ps};
        fprintf(stderr, "converting %s -> %s\n", in, out);
        if (convert_model(&o, &e))
            return fail(&e);
        print_summary(out);
        fprintf(stderr, "done in %.1f s\n", now_s() - ps.t0);
        return 0;
    }
    if (!strcmp(cmd, "synth") && preset && out) {
        wf_config c;
        if (synth_preset(preset, &c)) {
            fprintf(stderr, "weights-tool: unknown preset '%s' (known: %s)\n", preset, synth_preset_names());
            return 2;
        }
        int vq = vquant >= 0 ? vquant : quant == WT_Q4 ? WT_Q8 : quant;
        if (synth_write(out, &c, quant, vq, seed, tokenizer_model, progress, &ps, &e))
            return fail(&e);
        print_summary(out);
        fprintf(stderr, "done in %.1f s\n", now_s() - ps.t0);
        return 0;
    }
    return usage();
}
