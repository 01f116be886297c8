/* vlm-run.c: the command line. Decodes the photo, asks the model, streams the answer.
 *   vlm-run -m model.vlm -i photo.jpg -p "What is in the image?"
 * Errors are one line on stderr and exit code 1 (2 for usage errors). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "kernels.h"
#include "npy.h"
#include "vlm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vlm-run -m MODEL.vlm [-i IMAGE] -p PROMPT [options]\n"
            "  -m FILE            model converted with weights-tool\n"
            "  -i FILE            photo (JPEG, PNG or PNM); omit for text-only use\n"
            "  -p TEXT            question (MobileVLM conversation template) or raw text (text-only models)\n"
            "  -n N               max new tokens (default 256; 0 = until EOS or the context is full)\n"
            "  -t N               threads (default: online CPUs)\n"
            "  --temp X           temperature (default 0 = greedy)\n"
            "  --top-k N          keep the N most likely tokens (default 0 = off)\n"
            "  --top-p X          nucleus sampling threshold (default 1 = off)\n"
            "  --seed N           sampling seed\n"
            "  --ignore-eos       do not stop at EOS\n"
            "  --print-ids        print the generated token ids after the text\n"
            "  --logits-out FILE  write the logits of the last prompt position as float32 .npy\n"
            "  --stats            print timings per stage, tokens/s and peak RSS to stderr\n"
            "  --dump-rgb FILE    write the decoded (and oriented) photo as binary PPM and exit\n"
            "  --no-exif-rotate   feed the pixels as stored (ignore EXIF orientation, as upstream does)\n"
            "  -v, --version      print the kernel level and exit\n"
            "exit codes: 0 ok, 1 error (one line on stderr), 2 usage\n"
            "environment: VLM_ISA=ref|avx2|... caps the kernel level\n");
}

static int print_piece(void *ctx, int id, const char *text)
{
    (void)ctx;
    (void)id;
    fputs(text, stdout);
    fflush(stdout);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int die(const vlm_error *e)
{
    fprintf(stderr, "vlm-run: %s\n", e->msg);
    return 1;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL;
    const char *image_path = NULL;
    const char *prompt = NULL;
    const char *logits_path = NULL;
    const char *dump_path = NULL;
    int n_new = 256;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cpus > 0 ? (int)cpus : 1;
    int print_ids = 0;
    int stats = 0;
    int exif = IMAGE_EXIF_APPLY;
    vlm_request rq = {.top_p = 1.0f, .on_token = print_piece};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "-m") && v)
            model_path = v;
        else if (!strcmp(a, "-i") && v)
            image_path = v;
        else if (!strcmp(a, "-p") && v)
            prompt = v;
        else if (!strcmp(a, "-n") && v)
            n_new = atoi(v);
        else if (!strcmp(a, "-t") && v)
            threads = atoi(v);
        else if (!strcmp(a, "--temp") && v)
            rq.temperature = (float)atof(v);
        else if (!strcmp(a, "--top-k") && v)
            rq.top_k = atoi(v);
        else if (!strcmp(a, "--top-p") && v)
            rq.top_p = (float)atof(v);
        else if (!strcmp(a, "--seed") && v)
            rq.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--logits-out") && v)
            logits_path = v;
        else if (!strcmp(a, "--dump-rgb") && v)
            dump_path = v;
        else {
            takes = 0;
            if (!strcmp(a, "--ignore-eos"))
                rq.ignore_eos = 1;
            else if (!strcmp(a, "--print-ids"))
                print_ids = 1;
            else if (!strcmp(a, "--stats"))
                stats = 1;
            else if (!strcmp(a, "--no-exif-rotate"))
                exif = IMAGE_EXIF_IGNORE;
            else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                usage(stdout);
                return 0;
            } else if (!strcmp(a, "-v") || !strcmp(a, "--version")) {
                kernel_table k;
                char avail[64];
                kernels_init(NULL, &k);
                kernels_available(avail, sizeof avail);
                printf("vlm-run 0.1: kernels %s (available: %s)\n", k.level, avail);
                return 0;
            } else {
                fprintf(stderr, "vlm-run: unknown or incomplete option '%s' (see --help)\n", a);
                return 2;
            }
        }
        i += takes;
    }
    if (threads < 1 || threads > 256 || n_new < 0 || rq.temperature < 0) {
        fprintf(stderr, "vlm-run: -t must be 1..256, -n >= 0, --temp >= 0\n");
        return 2;
    }
    vlm_error e = {0};
    double t_start = now_ms();
    vlm_image img = {0};
    if (image_path) {
        if (image_decode_file(image_path, exif, NULL, &img, &e))
            return die(&e);
        if (dump_path) {
            int rc = image_write_ppm(dump_path, &img, &e);
            image_free(&img);
            return rc ? die(&e) : 0;
        }
    } else if (dump_path) {
        fprintf(stderr, "vlm-run: --dump-rgb needs -i IMAGE\n");
        return 2;
    }
    double t_image = now_ms();
    if (!model_path || !prompt) {
        image_free(&img);
        fprintf(stderr, "vlm-run: -m MODEL and -p PROMPT are required (see --help)\n");
        return 2;
    }
    vlm_model *m;
    if (vlm_open(model_path, threads, &m, &e)) {
        image_free(&img);
        return die(&e);
    }
    double t_load = now_ms();
    const vlm_info *info = vlm_get_info(m);
    float *logits = NULL;
    if (logits_path && !(logits = malloc((size_t)info->vocab_size * sizeof *logits))) {
        fprintf(stderr, "vlm-run: out of memory\n");
        return 1;
    }
    rq.prompt = prompt;
    rq.image_rgb = img.rgb;
    rq.image_width = img.width;
    rq.image_height = img.height;
    rq.max_new_tokens = n_new;
    rq.logits_out = logits;
    vlm_result res;
    int rc = vlm_generate(m, &rq, &res, &e);
    if (!rc) {
        fputc('\n', stdout);
        if (print_ids) {
            for (int i = 0; i < res.n_ids; i++)
                printf(i ? " %d" : "%d", res.ids[i]);
            fputc('\n', stdout);
        }
        fflush(stdout);
    }
    if (!rc && logits_path) {
        int64_t shape[1] = {info->vocab_size};
        rc = npy_write_f32(logits_path, logits, 1, shape, &e);
    }
    if (!rc && stats) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double gen_tps = res.generate_ms > 0 ? res.n_ids / (res.generate_ms / 1e3) : 0;
        fprintf(stderr,
                "stats: kernels %s, %d threads\n"
                "  image decode     %8.1f ms\n"
                "  model load       %8.1f ms\n"
                "  preprocess       %8.1f ms\n"
                "  vision+projector %8.1f ms\n"
                "  prefill          %8.1f ms  %d tokens  %.1f tokens/s\n"
                "  generation       %8.1f ms  %d tokens  %.1f tokens/s\n"
                "  peak RSS         %8.1f MB\n",
                info->kernels, threads, t_image - t_start, t_load - t_image, res.preprocess_ms, res.vision_ms,
                res.prefill_ms, res.n_prompt_tokens, res.prefill_ms > 0 ? res.n_prompt_tokens / (res.prefill_ms / 1e3) : 0,
                res.generate_ms, res.n_ids, gen_tps, ru.ru_maxrss / 1024.0);
    }
    free(logits);
    vlm_close(m);
    image_free(&img);
    return rc ? die(&e) : 0;
}
