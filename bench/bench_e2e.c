/* bench_e2e.c: the whole pipeline on a model with the real shapes (weights-tool synth, cached
 * under build/bench/), median of N runs: load, image decode + preprocess, vision tower,
 * projector, prompt prefill tokens/s, generation tokens/s at a given context, time to first
 * token for a photo and a question, peak RSS. Human table or --json.
 *   build/bench_e2e --preset mobilevlm-v2-1.7b --quant q4 --vision-quant q8 -t 2 --runs 5
 *   [--kv-cache f16|f32|q8] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "image.h"
#include "kernels.h"
#include "model.h"
#include "preprocess.h"
#include "read_loop.h"
#include "synth.h"
#include "vlm.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Process CPU time (all threads): on a shared machine wall time also counts other work. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

enum { M_LOAD, M_IMAGE, M_VIT, M_PROJ, M_PREFILL_TPS, M_GEN_TPS, M_TTFT, M_VIT_CPU, M_PREFILL_CPU, M_GEN_CPU,
       M_READ_GBS, M_ROOF_FRAC, M_ROOF_KV_FRAC, M_COUNT };
static const char *const metric_names[M_COUNT] = {"load_ms", "image_decode_preprocess_ms", "vision_tower_ms",
                                                  "projector_ms", "prefill_tokens_per_s", "generation_tokens_per_s",
                                                  "time_to_first_token_ms", "vision_tower_cpu_ms",
                                                  "prefill_cpu_ms_per_token", "generation_cpu_ms_per_token",
                                                  "weights_read_gb_per_s", "generation_of_roofline",
                                                  "generation_of_roofline_with_kv_cache"};

/* ---------------------------------------------------------------------------------------- */
/* The roofline of generation: the time plain loads take to read, with the same threads, the
 * bytes of weights one generated token reads (every LLM tensor but the embedding table, of
 * which a token reads one row; all of it when it is also the output matrix), in place in the
 * mapping: the same pages, the same moment as the generation it is compared with. */

enum { READ_CHUNK = 4 << 20 }; /* 4096 chunks hold 16 GB: every preset and quant */

typedef struct weight_read {
    const unsigned char *p[4096]; /* (n) chunks of at most READ_CHUNK bytes, multiples of 256 */
    size_t len[4096];
    size_t n, bytes;
    const char *level; /* kernel level: which loads read_bytes uses */
    double sink[4096];
} weight_read;

static void read_task(void *ctx, size_t i0, size_t i1)
{
    weight_read *w = ctx;
    for (size_t i = i0; i < i1; i++)
        w->sink[i] = read_bytes(w->level, w->p[i], w->len[i]);
}

/* Chunks of the tensors a generated token reads; 0, or -1 if there are more than fit. */
static int weight_read_init(const model *m, const char *level, weight_read *w)
{
    w->n = w->bytes = 0;
    w->level = level;
    for (uint32_t i = 0; i < m->wf.n_tensors; i++) {
        const wf_tensor *t = &m->wf.tensors[i];
        if (strncmp(t->name, "t.", 2) || (!strcmp(t->name, "t.embed") && !m->cfg.tied_embeddings))
            continue;
        for (size_t o = 0; o < t->nbytes; o += READ_CHUNK) {
            size_t len = t->nbytes - o < READ_CHUNK ? t->nbytes - o : READ_CHUNK;
            len &= ~(size_t)255;
            if (!len)
                continue;
            if (w->n == sizeof w->p / sizeof w->p[0])
                return -1;
            w->p[w->n] = (const unsigned char *)t->data + o;
            w->len[w->n++] = len;
            w->bytes += len;
        }
    }
    return 0;
}

/* Milliseconds plain loads take to read the chunks with the model's threads: the better of
 * two passes (one pass alone is sometimes slowed by a neighbour's burst). */
static double weight_read_ms(model *m, weight_read *w)
{
    double best = 1e30;
    for (int r = 0; r < 2; r++) {
        double t0 = now_ms();
        pool_for(m->pool, w->n, 1, read_task, w);
        double t = now_ms() - t0;
        best = t < best ? t : best;
    }
    return best;
}

typedef struct first_token {
    double t;
} first_token;

static int on_first(void *ctx, int id, const char *text)
{
    (void)id;
    (void)text;
    ((first_token *)ctx)->t = now_ms();
    return 1; /* stop after the first token */
}

/* --kv-cache: the names, the API's types and the model's element types. */
static const struct {
    const char *name;
    int api, elem;
} kv_types[] = {{"f16", VLM_KV_F16, WT_F16}, {"f32", VLM_KV_F32, WT_F32}, {"q8", VLM_KV_Q8, WT_Q8}};

static int parse_kv(const char *s)
{
    for (int i = 0; i < (int)(sizeof kv_types / sizeof kv_types[0]); i++)
        if (!strcmp(s, kv_types[i].name))
            return i;
    return -1;
}

static int die(const char *what, const vlm_error *e)
{
    fprintf(stderr, "bench_e2e: %s: %s\n", what, e->msg);
    return 1;
}

int main(int argc, char **argv)
{
    double t_process = now_ms();
    const char *preset = "mobilevlm-v2-1.7b";
    const char *model_path = NULL;
    const char *image_path = "tests/data/fixtures/tiny-v2/goldens/image.jpg";
    int quant = WT_Q4;
    int vquant = -1;
    int threads = 2;
    int runs = 5;
    int n_prefill = 200;
    int ctx = 256;
    int n_gen = 16;
    int json = 0;
    int skip_vision = 0;
    int kv = 0; /* index in kv_types */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--preset")) preset = v, i++;
        else if (!strcmp(a, "--model")) model_path = v, i++;
        else if (!strcmp(a, "--image")) image_path = v, i++;
        else if (!strcmp(a, "--quant")) quant = parse_quant(v), i++;
        else if (!strcmp(a, "--vision-quant")) vquant = parse_quant(v), i++;
        else if (!strcmp(a, "-t")) threads = atoi(v), i++;
        else if (!strcmp(a, "--runs")) runs = atoi(v), i++;
        else if (!strcmp(a, "--prefill")) n_prefill = atoi(v), i++;
        else if (!strcmp(a, "--ctx")) ctx = atoi(v), i++;
        else if (!strcmp(a, "--gen")) n_gen = atoi(v), i++;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-vision")) skip_vision = 1;
        else if (!strcmp(a, "--kv-cache")) kv = parse_kv(v), i++;
        else {
            fprintf(stderr,
                    "usage: bench_e2e [--preset NAME | --model FILE] [--quant q4] [--vision-quant q8] [-t N]\n"
                    "                 [--runs N] [--prefill N] [--ctx N] [--gen N] [--kv-cache f16|f32|q8]\n"
                    "                 [--image FILE] [--no-vision] [--json]\n");
            return 2;
        }
    }
    if (quant < 0 || kv < 0 || runs < 1 || runs > 100 || threads < 1 || n_prefill < 1 || ctx < 1 || n_gen < 1)
        return 2;
    if (vquant < 0)
        vquant = quant == WT_Q4 ? WT_Q8 : quant;
    vlm_error e;
    char synth_path[512];
    if (!model_path) {
        static const char *const qn[] = {"f32", "f16", "q8", "q4"};
        mkdir("build", 0755);
        mkdir("build/bench", 0755);
        snprintf(synth_path, sizeof synth_path, "build/bench/%s-%s-%s-tok.vlm", preset, qn[quant], qn[vquant]);
        struct stat st;
        if (stat(synth_path, &st) != 0) {
            wf_config c;
            if (synth_preset(preset, &c))
                return fprintf(stderr, "bench_e2e: unknown preset %s\n", preset), 2;
            /* The LLaMA tokenizer, when the checkout has it, makes prompts as long as for the real
             * model (the synthetic vocabulary spells most words byte by byte). */
            const char *tok = access("tests/data/tokenizer/tokenizer.model", R_OK) == 0
                                  ? "tests/data/tokenizer/tokenizer.model"
                                  : NULL;
            fprintf(stderr, "writing %s ...\n", synth_path);
            if (synth_write(synth_path, &c, quant, vquant, 1, tok, NULL, NULL, &e))
                return die("synth", &e);
        }
        model_path = synth_path;
    }

    double ttft = 0;
    double samples[M_COUNT][100];
    uint64_t weight_bytes = 0, weight_bytes_per_token = 0;
    double kv_bytes_per_token = 0;
    for (int r = 0; r < runs; r++) {
        /* Time to first token: the user's path (decode, load, encode, prefill, sample). The first
         * run counts from process start; later runs from the start of the run. */
        double t0 = r == 0 ? t_process : now_ms();
        vlm_image img;
        if (!skip_vision && image_decode_file(image_path, IMAGE_EXIF_APPLY, NULL, &img, &e))
            return die(image_path, &e);
        vlm_model *vm;
        if (vlm_open(model_path, threads, &vm, &e) || vlm_set_kv_cache(vm, kv_types[kv].api, &e))
            return die(model_path, &e);
        first_token ft = {0};
        vlm_request rq = {.prompt = "What is in the image?", .max_new_tokens = 1, .on_token = on_first, .ctx = &ft};
        if (!skip_vision) {
            rq.image_rgb = img.rgb;
            rq.image_width = img.width;
            rq.image_height = img.height;
        }
        vlm_result res;
        if (vlm_generate(vm, &rq, &res, &e))
            return die("generate", &e);
        ttft = ft.t - t0;
        vlm_close(vm);

        /* Stage by stage through model.c. */
        model m;
        double t1 = now_ms();
        if (model_open(model_path, threads, NULL, &m, &e) || model_set_kv_type(&m, kv_types[kv].elem, &e))
            return die(model_path, &e);
        samples[M_LOAD][r] = now_ms() - t1;
        weight_bytes = m.wf.size;
        int D = (int)m.cfg.dim;
        if (!skip_vision && m.cfg.arch != ARCH_LLAMA) {
            int S = (int)m.cfg.v_image_size;
            float *pix = malloc(sizeof(float) * 3 * S * S);
            float *tok = malloc(sizeof(float) * (size_t)m.n_image_tokens * D);
            image_free(&img);
            t1 = now_ms();
            if (image_decode_file(image_path, IMAGE_EXIF_APPLY, NULL, &img, &e))
                return die(image_path, &e);
            uint8_t pad[3] = {122, 116, 104};
            if (clip_preprocess(img.rgb, img.width, img.height, S, pad, m.cfg.image_mean, m.cfg.image_std, pix, NULL, &e))
                return die("preprocess", &e);
            samples[M_IMAGE][r] = now_ms() - t1;
            double c0 = cpu_ms();
            if (model_encode_image(&m, pix, tok, &e))
                return die("vision", &e);
            samples[M_VIT_CPU][r] = (cpu_ms() - c0) * m.vit_ms / (m.vit_ms + m.projector_ms);
            samples[M_VIT][r] = m.vit_ms;
            samples[M_PROJ][r] = m.projector_ms;
            free(pix);
            free(tok);
            image_free(&img);
        } else {
            samples[M_IMAGE][r] = samples[M_VIT][r] = samples[M_PROJ][r] = samples[M_VIT_CPU][r] = 0;
        }
        int n_max = n_prefill > ctx ? n_prefill : ctx;
        int *ids = malloc(sizeof(int) * (size_t)n_max);
        float *emb = malloc(sizeof(float) * (size_t)n_max * D);
        float *logits = malloc(sizeof(float) * m.cfg.vocab_size);
        for (int i = 0; i < n_max; i++)
            ids[i] = 300 + (i * 7919) % ((int)m.cfg.vocab_size - 300);
        model_embed(&m, ids, n_prefill, emb, &e);
        model_reset(&m);
        t1 = now_ms();
        double c1 = cpu_ms();
        if (model_forward(&m, emb, n_prefill, logits, &e))
            return die("prefill", &e);
        samples[M_PREFILL_TPS][r] = n_prefill / ((now_ms() - t1) / 1e3);
        samples[M_PREFILL_CPU][r] = (cpu_ms() - c1) / n_prefill;
        /* Generation at a ctx-token context: the cache reserved for the context and the answer
         * (as vlm_generate does: no growth, a copy of the cache, inside the timed steps), the
         * context filled, then n_gen single steps timed. */
        model_reset(&m);
        if (model_reserve(&m, ctx + n_gen, &e))
            return die("reserve", &e);
        model_embed(&m, ids, ctx, emb, &e);
        if (model_forward(&m, emb, ctx, logits, &e))
            return die("context", &e);
        /* Each step is paired with a plain read of the same weights right after it
         * (weight_read_ms): the memory of a shared machine changes speed from second to second,
         * so a step is judged against what the memory gave at that moment, as bench_kernels
         * judges each kernel run. The run's fraction of the roofline is the median over its
         * steps of read time / step time. */
        static weight_read wr;
        if (weight_read_init(&m, m.K->level, &wr)) {
            fprintf(stderr, "bench_e2e: %s: more weight chunks than the roofline pass holds\n", model_path);
            return 1;
        }
        double gen_ms = 0, gen_cpu = 0;
        double *frac = malloc(sizeof(double) * 3 * (size_t)n_gen); /* (3, n_gen) */
        if (!frac) {
            fprintf(stderr, "bench_e2e: out of memory\n");
            return 1;
        }
        double *frac_kv = frac + n_gen, *gbs = frac + 2 * n_gen;
        /* The cache a step's attention reads too: every layer's keys and values so far. */
        double kv_row_all = (double)m.cfg.n_layers * 2 * m.cfg.n_kv_heads * model_kv_row_bytes(&m);
        for (int g = 0; g < n_gen; g++) {
            int id = ids[g];
            t1 = now_ms();
            c1 = cpu_ms();
            model_embed(&m, &id, 1, emb, &e);
            if (model_forward(&m, emb, 1, logits, &e))
                return die("decode", &e);
            double step = now_ms() - t1;
            gen_cpu += cpu_ms() - c1;
            gen_ms += step;
            double rd = weight_read_ms(&m, &wr);
            double kv_bytes = kv_row_all * (ctx + g + 1);
            frac[g] = rd / step;
            frac_kv[g] = rd * (1 + kv_bytes / (double)wr.bytes) / step;
            gbs[g] = (double)wr.bytes / rd / 1e6;
        }
        kv_bytes_per_token = kv_row_all * (ctx + n_gen / 2);
        samples[M_GEN_TPS][r] = n_gen / (gen_ms / 1e3);
        samples[M_GEN_CPU][r] = gen_cpu / n_gen;
        samples[M_READ_GBS][r] = median(gbs, n_gen);
        samples[M_ROOF_FRAC][r] = median(frac, n_gen);
        samples[M_ROOF_KV_FRAC][r] = median(frac_kv, n_gen);
        free(frac);
        weight_bytes_per_token = wr.bytes;
        samples[M_TTFT][r] = ttft;
        free(ids);
        free(emb);
        free(logits);
        model_close(&m);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double med[M_COUNT];
    for (int k = 0; k < M_COUNT; k++)
        med[k] = median(samples[k], runs);
    kernel_table kt;
    kernels_init(NULL, &kt);
    if (json) {
        printf("{\"model\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"runs\": %d, \"prefill_tokens\": %d, "
               "\"context\": %d, \"kv_cache\": \"%s\", \"model_bytes\": %llu",
               model_path, kt.level, threads, runs, n_prefill, ctx, kv_types[kv].name,
               (unsigned long long)weight_bytes);
        for (int k = 0; k < M_COUNT; k++)
            printf(", \"%s\": %.2f", metric_names[k], med[k]);
        printf(", \"weight_bytes_per_token\": %llu, \"peak_rss_mb\": %.1f}\n",
               (unsigned long long)weight_bytes_per_token, ru.ru_maxrss / 1024.0);
    } else {
        printf("model %s (%.1f MB), kernels %s, %d threads, KV cache %s, median of %d runs\n", model_path,
               weight_bytes / 1e6, kt.level, threads, kv_types[kv].name, runs);
        printf("  load                        %9.1f ms\n", med[M_LOAD]);
        printf("  image decode + preprocess   %9.1f ms   (%s)\n", med[M_IMAGE], image_path);
        printf("  vision tower                %9.1f ms\n", med[M_VIT]);
        printf("  projector                   %9.1f ms\n", med[M_PROJ]);
        printf("  prefill (%d tokens)        %9.1f tokens/s\n", n_prefill, med[M_PREFILL_TPS]);
        printf("  generation (context %d)    %9.2f tokens/s   (%.0f%% of the roofline: weights read at %.1f GB/s,\n"
               "                                               %.1f MB per token -> %.1f tokens/s; %.0f%% counting\n"
               "                                               the %.1f MB of KV cache read too)\n",
               ctx, med[M_GEN_TPS], 100 * med[M_ROOF_FRAC], med[M_READ_GBS], weight_bytes_per_token / 1e6,
               med[M_READ_GBS] * 1e9 / (double)weight_bytes_per_token, 100 * med[M_ROOF_KV_FRAC],
               kv_bytes_per_token / 1e6);
        printf("  time to first token         %9.1f ms   (first run from process start)\n", med[M_TTFT]);
        printf("  CPU time (all threads): vision %.1f ms, prefill %.2f ms/token, generation %.2f ms/token\n",
               med[M_VIT_CPU], med[M_PREFILL_CPU], med[M_GEN_CPU]);
        printf("  peak RSS                    %9.1f MB\n", ru.ru_maxrss / 1024.0);
    }
    return 0;
}
