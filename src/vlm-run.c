/* vlm-run.c: the command line. One question about one or several photos (batch captioning),
 * or an interactive chat about a photo whose questions come from stdin (a terminal or a
 * pipe): the photo is encoded once and every turn computes only its new tokens. Answers
 * stream to stdout, or come as one JSON object per answer with --json. Errors are one line on
 * stderr; exit codes: 0 ok, 1 an error (in batch and chat modes: any answer failed), 2 usage. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "kernels.h"
#include "err.h"
#include "npy.h"
#include "vlm.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vlm-run -m MODEL.vlm [-i IMAGE]... [-p PROMPT] [options]\n"
            "  With -p: answers PROMPT about each -i IMAGE in turn (or continues the text, for text-only\n"
            "  models), then exits. Without -p (or with --chat): a chat; questions are read line by line\n"
            "  from stdin (a terminal or a pipe), the image is encoded once and each turn reuses the\n"
            "  conversation so far. Chat commands:\n"
            "    /image FILE   switch to another photo (starts a new conversation)\n"
            "    /reset        start a new conversation about the same photo\n"
            "    /stats        timings and token counts of the last answer\n"
            "    /help         this list          /quit  leave (so does end of input)\n"
            "options:\n"
            "  -m FILE            model converted with weights-tool\n"
            "  -i FILE            photo (JPEG, PNG or PNM); repeat for several photos (with -p)\n"
            "  -p TEXT            question (MobileVLM conversation template) or raw text (text-only models)\n"
            "  --chat             chat even with -p (PROMPT is the first question)\n"
            "  -n N               max new tokens per answer (default 256; 0 = until EOS or the context is full)\n"
            "  -t N               threads (default: the fast cores, or all usable CPUs)\n"
            "  --kv-cache T       f16 (default: half the memory and the attention reads per token),\n"
            "                     f32 (keys and values exact, as the reference implementation computes) or\n"
            "                     q8 (int8, an f16 scale per 32 values: 0.53 of f16's bytes, less exact;\n"
            "                     needs a head size divisible by 32)\n"
            "  --temp X           temperature (default 0 = greedy)\n"
            "  --top-k N          keep the N most likely tokens when sampling (default 50, as\n"
            "                     transformers' generate; 0 = off)\n"
            "  --top-p X          nucleus sampling threshold (default 1 = off)\n"
            "  --seed N           sampling seed\n"
            "  --ignore-eos       do not stop at EOS\n"
            "  --json             one JSON object per answer on stdout (text, ids, counts, timings)\n"
            "  --print-ids        print the generated token ids after the text\n"
            "  --logits-out FILE  write the logits of the last prompt position as float32 .npy\n"
            "  --stats            print timings per stage, tokens/s and peak RSS to stderr\n"
            "  --dump-rgb FILE    write the decoded (and oriented) photo as binary PPM and exit\n"
            "  --no-exif-rotate   feed the pixels as stored (ignore EXIF orientation, as upstream does)\n"
            "  -v, --version      print the kernel level and the kernel of each op, and exit\n"
            "  -h, --help         this help\n"
            "exit codes: 0 ok; 1 error (one line on stderr; with several photos or in a chat, 1 if any\n"
            "  answer failed, the others are still given); 2 usage error\n"
            "environment: VLM_ISA=ref|avx2|avx2vnni|avx512|gfni|neon|dot caps the kernel level\n");
}

/* The largest -t: more threads than this only add synchronisation on any CPU we run on. */
enum { MAX_THREADS = 256 };

/* --kv-cache names, indexed by VLM_KV_*. */
static const char *const kv_names[] = {[VLM_KV_F16] = "f16", [VLM_KV_F32] = "f32", [VLM_KV_Q8] = "q8"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

typedef struct options {
    const char *model_path;
    const char **images; /* (n_images) */
    int n_images;
    const char *prompt;
    const char *logits_path;
    const char *dump_path;
    int chat, json, print_ids, stats, exif, threads;
    int kv_cache; /* VLM_KV_F16, VLM_KV_F32 or VLM_KV_Q8 */
    vlm_request rq; /* sampling settings shared by every answer */
} options;

/* The state of a run: the model, the conversation, the photo and the last answer's figures. */
typedef struct app {
    options o;
    vlm_model *m;
    vlm_chat *chat;
    vlm_image_embed *img;  /* the photo of the conversation, or NULL */
    char *img_name;        /* (owned) its file name */
    int img_pending;       /* attach img to the next question (first turn of a conversation) */
    double img_decode_ms;  /* for the next answer's figures */
    int tty_err;           /* progress lines on stderr */
    int progress_shown;
    int streamed;          /* some text of the current answer is on stdout */
    int out_errno;         /* errno of the first failed write to stdout (0: none) */
    float *logits;         /* (vocab) for --logits-out */
    vlm_result last;       /* counts and timings (ids/text not kept) */
    int have_last, turn;
    double last_decode_ms, last_pre_ms, last_vis_ms;
} app;

/* A transient status line on stderr (terminals only): replaced by the next, erased by NULL. */
static void status(app *a, const char *msg)
{
    if (!a->tty_err)
        return;
    if (msg)
        fprintf(stderr, "\r\033[K%s", msg);
    else if (a->progress_shown)
        fputs("\r\033[K", stderr);
    a->progress_shown = msg != NULL;
    fflush(stderr);
}

static void on_progress(void *ctx, const char *stage, int done, int total)
{
    app *a = ctx;
    char msg[96];
    if (done >= total) {
        status(a, NULL);
        return;
    }
    snprintf(msg, sizeof msg, "[%s: %d %s...]", !strcmp(stage, "vision") ? "encoding the image" : "reading the prompt",
             total, !strcmp(stage, "vision") ? "image tokens" : "positions");
    status(a, msg);
}

/* Flushes stdout; -1 (and a->out_errno set) if it cannot be written: closed, full disk, or a
 * reader gone while SIGPIPE is ignored. Without this check answers were lost with exit code 0,
 * and a chat fed from a pipe went on generating for a reader that had left. */
static int flush_out(app *a)
{
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    if (!a->out_errno)
        a->out_errno = errno ? errno : EIO;
    return -1;
}

/* on_token: streams the answer (text mode); cancels the answer when stdout fails. */
static int print_piece(void *ctx, int id, const char *text)
{
    app *a = ctx;
    (void)id;
    if (!a->o.json) {
        fputs(text, stdout);
        if (*text)
            a->streamed = 1;
        if (flush_out(a))
            return -1;
    }
    return 0;
}

/* A JSON string: escapes quotes, backslashes and control characters; bytes that are not valid
 * UTF-8 become U+FFFD so that the output is always valid JSON. */
static void json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
            p++;
        } else if (c < 0x20) {
            const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (esc)
                fputs(esc, f);
            else
                fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc((int)c, f);
            p++;
        } else {
            /* length of a well-formed sequence (no overlongs, surrogates or > U+10FFFF) */
            int n = 0;
            if (c >= 0xc2 && c <= 0xdf)
                n = 2;
            else if (c >= 0xe0 && c <= 0xef)
                n = 3;
            else if (c >= 0xf0 && c <= 0xf4)
                n = 4;
            int ok = n > 0;
            for (int i = 1; ok && i < n; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok && n == 3)
                ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
            if (ok && n == 4)
                ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
            if (ok) {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

static const char *stop_name(int reason)
{
    switch (reason) {
    case VLM_STOP_EOS: return "eos";
    case VLM_STOP_LENGTH: return "length";
    case VLM_STOP_CONTEXT: return "context";
    case VLM_STOP_CALLBACK: return "callback";
    }
    return "none";
}

static void print_stats(const app *a, FILE *f)
{
    const vlm_result *r = &a->last;
    if (!a->have_last) {
        fprintf(f, "no answer yet\n");
        return;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(f,
            "turn %d: %d positions in the conversation, %d computed, %d reused from the cache\n"
            "  kernels %s, %d threads, KV cache %s\n",
            a->turn, r->n_prompt_tokens, r->n_prefilled, r->n_reused, vlm_get_info(a->m)->kernels, a->o.threads,
            kv_names[vlm_get_info(a->m)->kv_cache]);
    if (a->last_decode_ms > 0 || a->last_vis_ms > 0)
        fprintf(f,
                "  image decode     %8.1f ms\n"
                "  preprocess       %8.1f ms\n"
                "  vision+projector %8.1f ms\n",
                a->last_decode_ms, a->last_pre_ms, a->last_vis_ms);
    fprintf(f,
            "  prefill          %8.1f ms  %d positions  %.1f positions/s\n"
            "  generation       %8.1f ms  %d tokens  %.1f tokens/s  (stop: %s)\n"
            "  peak RSS         %8.1f MB\n",
            r->prefill_ms, r->n_prefilled, r->prefill_ms > 0 ? r->n_prefilled / (r->prefill_ms / 1e3) : 0,
            r->generate_ms, r->n_ids, r->generate_ms > 0 ? r->n_ids / (r->generate_ms / 1e3) : 0, stop_name(r->stop_reason),
            ru.ru_maxrss / 1024.0);
}

/* --json: a question that got no answer still gets its line, so that a script reading one
 * object per question stays in step: {"image", "question", "error"} (question null when the
 * photo itself failed). */
static void json_error(app *a, const char *image, const char *question, const vlm_error *e)
{
    printf("{\"image\":");
    if (image)
        json_str(stdout, image);
    else
        printf("null");
    printf(",\"question\":");
    if (question)
        json_str(stdout, question);
    else
        printf("null");
    printf(",\"error\":");
    json_str(stdout, e->msg);
    printf("}\n");
    flush_out(a);
}

/* Decodes and encodes a photo; on success it becomes the conversation's photo (a new
 * conversation starts). */
static int load_image(app *a, const char *path, vlm_error *e)
{
    status(a, "[decoding the photo...]");
    double t0 = now_ms();
    vlm_image im = {0};
    int rc = image_decode_file(path, a->o.exif, NULL, &im, e);
    double t1 = now_ms();
    vlm_image_embed *emb = NULL;
    if (!rc) {
        on_progress(a, "vision", 0, vlm_get_info(a->m)->n_image_tokens);
        rc = vlm_encode_image(a->m, im.rgb, im.width, im.height, &emb, e);
    }
    status(a, NULL);
    image_free(&im);
    char *name = rc ? NULL : strdup(path);
    if (!rc && !name)
        rc = vlm_fail(e, VLM_ENOMEM, "out of memory");
    if (rc) {
        vlm_image_embed_free(emb);
        return rc;
    }
    vlm_image_embed_free(a->img);
    free(a->img_name);
    a->img = emb;
    a->img_name = name;
    a->img_pending = 1;
    a->img_decode_ms = t1 - t0;
    vlm_chat_reset(a->chat);
    return 0;
}

/* Asks one question in the current conversation and prints the answer (streamed text, or a
 * JSON object). */
static int ask(app *a, const char *question, vlm_error *e)
{
    vlm_request rq = a->o.rq;
    rq.prompt = question;
    rq.on_token = print_piece;
    rq.on_progress = on_progress;
    rq.ctx = a;
    rq.logits_out = a->logits;
    vlm_result r;
    const vlm_image_embed *img = a->img_pending ? a->img : NULL;
    a->streamed = 0;
    int rc = vlm_chat_ask(a->chat, &rq, img, &r, e);
    status(a, NULL);
    if (rc) {
        /* end a partly streamed answer's line (only then: no stray empty line) */
        if (a->streamed)
            fputc('\n', stdout);
        flush_out(a);
        if (a->out_errno)
            return vlm_fail(e, VLM_EIO, "stdout: cannot write the answer: %s", strerror(a->out_errno));
        if (a->o.json)
            json_error(a, a->img_name, question, e);
        return rc;
    }
    const vlm_image_info *ii = img ? vlm_image_embed_info(img) : NULL;
    a->last = r;
    a->have_last = 1;
    a->turn = vlm_chat_turns(a->chat);
    a->last_decode_ms = img ? a->img_decode_ms : 0;
    a->last_pre_ms = ii ? ii->preprocess_ms : 0;
    a->last_vis_ms = ii ? ii->vision_ms : 0;
    a->img_pending = 0;
    if (a->o.json) {
        printf("{\"image\":");
        if (a->img_name)
            json_str(stdout, a->img_name);
        else
            printf("null");
        printf(",\"turn\":%d,\"question\":", a->turn);
        json_str(stdout, question);
        printf(",\"text\":");
        json_str(stdout, r.text);
        printf(",\"ids\":[");
        for (int i = 0; i < r.n_ids; i++)
            printf(i ? ",%d" : "%d", r.ids[i]);
        printf("],\"stop\":\"%s\",\"n_prompt\":%d,\"n_reused\":%d,\"n_prefilled\":%d,"
               "\"timings_ms\":{\"image_decode\":%.3f,\"preprocess\":%.3f,\"vision\":%.3f,\"prefill\":%.3f,"
               "\"generate\":%.3f}}\n",
               stop_name(r.stop_reason), r.n_prompt_tokens, r.n_reused, r.n_prefilled, a->last_decode_ms,
               a->last_pre_ms, a->last_vis_ms, r.prefill_ms, r.generate_ms);
    } else {
        fputc('\n', stdout);
        if (a->o.print_ids) {
            for (int i = 0; i < r.n_ids; i++)
                printf(i ? " %d" : "%d", r.ids[i]);
            fputc('\n', stdout);
        }
    }
    if (flush_out(a))
        return vlm_fail(e, VLM_EIO, "stdout: cannot write the answer: %s", strerror(a->out_errno));
    if (r.stop_reason == VLM_STOP_CONTEXT)
        fprintf(stderr, "vlm-run: the answer stopped: the context of %d positions is full%s\n",
                vlm_get_info(a->m)->context_length, a->o.chat ? " (/reset starts a new conversation)" : "");
    if (a->o.logits_path) {
        int64_t shape[1] = {vlm_get_info(a->m)->vocab_size};
        rc = npy_write_f32(a->o.logits_path, a->logits, 1, shape, e);
    }
    if (!rc && a->o.stats)
        print_stats(a, stderr);
    return rc;
}

/* Reads questions and commands from stdin until /quit or the end of input. Returns the
 * number of failed answers. */
static int chat_loop(app *a)
{
    int interactive = isatty(STDIN_FILENO);
    int failed = 0;
    vlm_error e = {0};
    if (interactive)
        fprintf(stderr, "chat with %s%s%s: type a question, /help for commands\n", a->o.model_path,
                a->img_name ? " about " : "", a->img_name ? a->img_name : "");
    /* /stats and /help go where they cannot break --json's one object per line */
    FILE *info = a->o.json ? stderr : stdout;
    char *line = NULL;
    size_t cap = 0;
    for (int lineno = 1; !a->out_errno; lineno++) {
        if (interactive) {
            fputs("> ", stdout);
            if (flush_out(a))
                break;
        }
        errno = 0;
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {
            /* a read error is not the end of the questions: it ended a chat with exit code 0 */
            if (ferror(stdin)) {
                fprintf(stderr, "vlm-run: stdin: cannot read the questions: %s\n", strerror(errno ? errno : EIO));
                failed++;
            }
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (memchr(line, 0, (size_t)len)) {
            /* a C string would end there: the question asked would silently lose its end */
            fprintf(stderr, "vlm-run: stdin line %d: a NUL byte in the question (not asked)\n", lineno);
            failed++;
            continue;
        }
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            continue;
        if (*s != '/') {
            if (ask(a, s, &e)) {
                fprintf(stderr, "vlm-run: %s\n", e.msg);
                if (e.code == VLM_ERANGE && vlm_chat_turns(a->chat) > 0)
                    fprintf(stderr, "vlm-run: the conversation so far fills the context: /reset starts a new one\n");
                failed++;
            }
            continue;
        }
        char *arg = s + strcspn(s, " \t");
        if (*arg)
            *arg++ = 0;
        while (*arg == ' ' || *arg == '\t')
            arg++;
        for (size_t n = strlen(arg); n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t');)
            arg[--n] = 0;
        if (!strcmp(s, "/quit") || !strcmp(s, "/exit"))
            break;
        else if (!strcmp(s, "/reset")) {
            vlm_chat_reset(a->chat);
            a->img_pending = a->img != NULL;
            fprintf(stderr, "(new conversation)\n");
        } else if (!strcmp(s, "/stats"))
            print_stats(a, info);
        else if (!strcmp(s, "/help"))
            usage(info);
        else if (!strcmp(s, "/image")) {
            if (!vlm_get_info(a->m)->has_vision) {
                fprintf(stderr, "vlm-run: %s is a text-only model: it cannot take an image\n", a->o.model_path);
                failed++;
            } else if (!*arg) {
                fprintf(stderr, "vlm-run: /image needs a file name\n");
            } else if (load_image(a, arg, &e)) {
                fprintf(stderr, "vlm-run: %s\n", e.msg);
                failed++;
            } else {
                fprintf(stderr, "(photo %s, new conversation)\n", arg);
            }
        } else
            fprintf(stderr, "vlm-run: unknown command %s (/help lists them)\n", s);
        flush_out(a);
    }
    free(line);
    return failed;
}

/* Option values are parsed strictly: atoi/atof read "abc" as 0 and "4x" as 4 and wrap on
 * overflow, which turned a typo into greedy decoding, an unlimited answer or one thread. */

/* *out = v as a decimal integer in lo..hi (all of v, no overflow); else prints an error naming
 * the option and the value and returns -1. */
static int parse_int(const char *opt, const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno == ERANGE || x < lo || x > hi) {
        fprintf(stderr, "vlm-run: %s takes an integer in %ld..%ld, not '%s'\n", opt, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* *out = v as a number in lo..hi that stays finite as a float (NaN, inf and 1e39 refused); else
 * prints an error naming the option and the value and returns -1. */
static int parse_float(const char *opt, const char *v, double lo, double hi, float *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite((float)x) || !(x >= lo && x <= hi)) {
        fprintf(stderr, "vlm-run: %s takes a number in %g..%g, not '%s'\n", opt, lo, hi, v);
        return -1;
    }
    *out = (float)x;
    return 0;
}

/* *out = v as an unsigned 64-bit decimal (strtoull would wrap "-1" silently); else prints an
 * error naming the value and returns -1. */
static int parse_seed(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end || errno == ERANGE || strchr(v, '-')) {
        fprintf(stderr, "vlm-run: --seed takes an integer in 0..%llu, not '%s'\n", (unsigned long long)UINT64_MAX, v);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

/* Parses argv into o; returns 0, or the exit code (0 for --help/--version after printing). */
static int parse(int argc, char **argv, options *o, int *exit_now)
{
    *exit_now = 0;
    o->exif = IMAGE_EXIF_APPLY;
    /* the default too stays within -t's range (a machine may have more CPUs) */
    o->threads = vlm_default_threads();
    if (o->threads > MAX_THREADS)
        o->threads = MAX_THREADS;
    o->kv_cache = VLM_KV_F16;
    /* top_k 50: transformers' default, which upstream's inference script samples with. */
    o->rq = (vlm_request){.top_k = 50, .top_p = 1.0f, .max_new_tokens = 256};
    o->images = calloc((size_t)argc, sizeof *o->images);
    if (!o->images) {
        fprintf(stderr, "vlm-run: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "-m") && v)
            o->model_path = v;
        else if (!strcmp(a, "-i") && v)
            o->images[o->n_images++] = v;
        else if (!strcmp(a, "-p") && v)
            o->prompt = v;
        else if (!strcmp(a, "-n") && v) {
            if (parse_int(a, v, 0, INT_MAX, &o->rq.max_new_tokens))
                return 2;
        } else if (!strcmp(a, "-t") && v) {
            if (parse_int(a, v, 1, MAX_THREADS, &o->threads))
                return 2;
        } else if (!strcmp(a, "--temp") && v) {
            if (parse_float(a, v, 0, HUGE_VAL, &o->rq.temperature))
                return 2;
        } else if (!strcmp(a, "--top-k") && v) {
            if (parse_int(a, v, 0, INT_MAX, &o->rq.top_k))
                return 2;
        } else if (!strcmp(a, "--top-p") && v) {
            if (parse_float(a, v, 0, 1, &o->rq.top_p))
                return 2;
        } else if (!strcmp(a, "--seed") && v) {
            if (parse_seed(v, &o->rq.seed))
                return 2;
        } else if (!strcmp(a, "--logits-out") && v)
            o->logits_path = v;
        else if (!strcmp(a, "--dump-rgb") && v)
            o->dump_path = v;
        else if (!strcmp(a, "--kv-cache") && v) {
            o->kv_cache = -1;
            for (int t = 0; t < (int)(sizeof kv_names / sizeof kv_names[0]); t++)
                if (!strcmp(v, kv_names[t]))
                    o->kv_cache = t;
            if (o->kv_cache < 0) {
                fprintf(stderr, "vlm-run: --kv-cache takes f16, f32 or q8, not '%s'\n", v);
                return 2;
            }
        } else {
            takes = 0;
            if (!strcmp(a, "--ignore-eos"))
                o->rq.ignore_eos = 1;
            else if (!strcmp(a, "--print-ids"))
                o->print_ids = 1;
            else if (!strcmp(a, "--stats"))
                o->stats = 1;
            else if (!strcmp(a, "--json"))
                o->json = 1;
            else if (!strcmp(a, "--chat"))
                o->chat = 1;
            else if (!strcmp(a, "--no-exif-rotate"))
                o->exif = IMAGE_EXIF_IGNORE;
            else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                usage(stdout);
                *exit_now = 1;
                return 0;
            } else if (!strcmp(a, "-v") || !strcmp(a, "--version")) {
                kernel_table k;
                char avail[64];
                char slots[1024];
                kernels_init(NULL, &k);
                kernels_available(avail, sizeof avail);
                kernels_describe(&k, slots, sizeof slots);
                printf("vlm-run 0.2: kernels %s (available: %s; VLM_ISA caps the level)\n%s\n", k.level, avail,
                       slots);
                *exit_now = 1;
                return 0;
            } else {
                fprintf(stderr, "vlm-run: unknown or incomplete option '%s' (see --help)\n", a);
                return 2;
            }
        }
        i += takes;
    }
    if (!o->prompt)
        o->chat = 1;
    if (o->chat && o->n_images > 1) {
        fprintf(stderr, "vlm-run: a chat takes one -i photo (switch with /image FILE); several photos need -p\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    app a = {0};
    options *o = &a.o;
    int exit_now;
    int rc = parse(argc, argv, o, &exit_now);
    if (rc || exit_now) {
        free(o->images);
        return rc;
    }
    vlm_error e = {0};
    a.tty_err = isatty(STDERR_FILENO);
    if (o->dump_path) {
        vlm_image img = {0};
        if (!o->n_images) {
            fprintf(stderr, "vlm-run: --dump-rgb needs -i IMAGE\n");
            rc = 2;
        } else if (image_decode_file(o->images[0], o->exif, NULL, &img, &e) ||
                   image_write_ppm(o->dump_path, &img, &e)) {
            fprintf(stderr, "vlm-run: %s\n", e.msg);
            rc = 1;
        }
        image_free(&img);
        free(o->images);
        return rc;
    }
    if (!o->model_path) {
        fprintf(stderr, "vlm-run: -m MODEL is required (see --help)\n");
        free(o->images);
        return 2;
    }
    status(&a, "[loading the model...]");
    double t0 = now_ms();
    rc = vlm_open(o->model_path, o->threads, &a.m, &e);
    double t_load = now_ms() - t0;
    status(&a, NULL);
    if (!rc)
        rc = vlm_set_kv_cache(a.m, o->kv_cache, &e);
    if (!rc)
        rc = vlm_chat_new(a.m, &a.chat, &e);
    /* (not rc = -1 for this one: that is VLM_EIO, and every unreadable model was reported as
     * "out of memory") */
    if (!rc && o->logits_path &&
        !(a.logits = malloc((size_t)vlm_get_info(a.m)->vocab_size * sizeof *a.logits)))
        rc = vlm_fail(&e, VLM_ENOMEM, "out of memory for the --logits-out buffer (%d floats)",
                      vlm_get_info(a.m)->vocab_size);
    if (rc) {
        fprintf(stderr, "vlm-run: %s\n", e.msg);
        vlm_close(a.m);
        free(o->images);
        return 1;
    }
    if (o->stats)
        fprintf(stderr, "stats: model load %.1f ms, kernels %s, %d threads, KV cache %s\n", t_load,
                vlm_get_info(a.m)->kernels, o->threads, kv_names[o->kv_cache]);
    int failed = 0;
    if (o->n_images && !vlm_get_info(a.m)->has_vision) {
        fprintf(stderr, "vlm-run: %s is a text-only model: it cannot take an image\n", o->model_path);
        failed = 1;
    } else if (o->chat) {
        if (o->n_images && load_image(&a, o->images[0], &e)) {
            fprintf(stderr, "vlm-run: %s\n", e.msg);
            failed = 1;
        } else {
            if (o->prompt && ask(&a, o->prompt, &e)) {
                fprintf(stderr, "vlm-run: %s\n", e.msg);
                failed++;
            }
            failed += chat_loop(&a);
        }
    } else {
        /* One question per photo, each a new conversation (batch captioning). */
        int n = o->n_images ? o->n_images : 1;
        for (int i = 0; i < n; i++) {
            if (o->n_images) {
                if (load_image(&a, o->images[i], &e)) {
                    fprintf(stderr, "vlm-run: %s\n", e.msg);
                    if (o->json)
                        json_error(&a, o->images[i], NULL, &e);
                    failed++;
                    continue;
                }
                if (n > 1 && !o->json)
                    printf("== %s\n", o->images[i]);
            }
            vlm_chat_reset(a.chat);
            if (ask(&a, o->prompt, &e)) {
                fprintf(stderr, "vlm-run: %s\n", e.msg);
                failed++;
            }
            if (a.out_errno)
                break; /* nobody reads the other answers */
        }
    }
    /* what was printed outside ask() ("== photo" lines, /stats) must have reached stdout too */
    if (!a.out_errno && flush_out(&a)) {
        fprintf(stderr, "vlm-run: stdout: cannot write: %s\n", strerror(a.out_errno));
        failed++;
    }
    free(a.img_name);
    vlm_image_embed_free(a.img);
    vlm_chat_free(a.chat);
    vlm_close(a.m);
    free(a.logits);
    free(o->images);
    return failed ? 1 : 0;
}
