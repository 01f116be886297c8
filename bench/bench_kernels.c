/* bench_kernels.c: the kernel microbenchmark. It measures this machine's limits (read bandwidth
 * far beyond the caches with 1 and N threads; f32 FMA and int8 dot peaks per level), then prints
 * one TSV line per gemm x level x real shape (bench/shapes.h): median time after warm-up, GFLOP/s
 * or GOP/s, weight GB/s, fraction of the limit; then the attention of the vision tower and of a
 * decoding step (-k attn). Threads split n (attention: the heads) as the runtime does. Usage:
 *   build/bench_kernels [-t threads] [-q] [-l level] [-s shape-substring] [-k f32|f16|q8|q4|attn] */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"
#include "read_loop.h"
#include "shapes.h"
#include "util.h"

#if defined(__x86_64__)
double peak_fma_avx2(long iters);
double peak_int8_avx2(long iters);
double peak_fma_avx512(long iters);
double peak_int8_avx512(long iters);
double peak_int8_avx2vnni_level(long iters);
#endif

/* One thread: its CPU time, so that time the scheduler gives to other processes of a shared
 * machine is not counted; several threads: wall time (they must all be running anyway). */
static double now(int cpu_clock)
{
    struct timespec ts;
    clock_gettime(cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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

/* ---------------------------------------------------------------------------------------- */
/* A minimal fork-join team: worker w runs job(ctx, w) when the generation counter moves.    */

typedef struct team team;

typedef struct worker_arg {
    team *t;
    int id;
} worker_arg;

struct team {
    int n;
    pthread_t th[64];
    worker_arg args[64];
    atomic_int gen, done, quit;
    void (*job)(void *, int);
    void *ctx;
};

static void *worker(void *p)
{
    worker_arg *wa = p;
    team *t = wa->t;
    int seen = 0;
    for (;;) {
        int g;
        while ((g = atomic_load(&t->gen)) == seen && !atomic_load(&t->quit))
            sched_yield(); /* a shared machine: let whoever holds the core finish */
        if (atomic_load(&t->quit))
            break;
        seen = g;
        t->job(t->ctx, wa->id);
        atomic_fetch_add(&t->done, 1);
    }
    return NULL;
}

static void team_start(team *t, int n)
{
    t->n = n;
    atomic_init(&t->gen, 0);
    atomic_init(&t->done, 0);
    atomic_init(&t->quit, 0);
    for (int i = 1; i < n; i++) {
        t->args[i] = (worker_arg){t, i};
        pthread_create(&t->th[i], NULL, worker, &t->args[i]);
    }
}

/* Runs job(ctx, 0..n-1), the caller doing part 0; returns when all parts are done. */
static void team_run(team *t, void (*job)(void *, int), void *ctx)
{
    t->job = job;
    t->ctx = ctx;
    atomic_store(&t->done, 0);
    atomic_fetch_add(&t->gen, 1);
    job(ctx, 0);
    while (atomic_load(&t->done) < t->n - 1)
        sched_yield();
}

static void team_stop(team *t)
{
    atomic_store(&t->quit, 1);
    for (int i = 1; i < t->n; i++)
        pthread_join(t->th[i], NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Machine limits                                                                            */

typedef struct read_job {
    const char *buf;
    size_t bytes;
    int parts;
    const char *level;
    double sink[64];
} read_job;

static void read_part(void *ctx, int id)
{
    read_job *j = ctx;
    size_t per = j->bytes / (size_t)j->parts / 4096 * 4096;
    const char *p = j->buf + per * (size_t)id;
    j->sink[id] = read_bytes(j->level, p, per);
}

/* The level whose limit loops measure a level's machine limits: "gfni" is the AVX-512 level
 * plus one kernel, on the same machine limits. */
static const char *limit_level(const char *level)
{
    return strcmp(level, "gfni") ? level : "avx512";
}

/* Median read bandwidth (bytes/s) over reps passes of a buffer of bytes, split over the team. */
static double read_bw(team *t, const char *buf, size_t bytes, const char *level, int reps)
{
    read_job j = {.buf = buf, .bytes = bytes, .parts = t->n, .level = limit_level(level)};
    double ts[32];
    team_run(t, read_part, &j); /* warm-up: page faults, frequency */
    for (int r = 0; r < reps; r++) {
        double t0 = now(t->n == 1);
        team_run(t, read_part, &j);
        ts[r] = now(t->n == 1) - t0;
    }
    size_t per = bytes / (size_t)t->n / 4096 * 4096;
    return (double)(per * (size_t)t->n) / median(ts, reps);
}

/* A kernel run that read `bytes` in `seconds`, against a plain read of as many bytes at buf (not
 * in cache) by the team right after it: the memory of a shared machine changes speed from
 * second to second, and a kernel is judged against what the memory gave at that moment. */
static double paired_read_ratio(team *t, const char *level, const void *buf, size_t bytes, double seconds)
{
    read_job rj = {.buf = buf, .bytes = bytes, .parts = t->n, .level = limit_level(level)};
    size_t rbytes = bytes / (size_t)t->n / 4096 * 4096 * (size_t)t->n; /* what read_part reads */
    double t0 = now(t->n == 1);
    team_run(t, read_part, &rj);
    return ((double)bytes / seconds) / ((double)rbytes / (now(t->n == 1) - t0));
}

typedef struct peak_job {
    const char *level;
    int int8;
    long iters;
    double sink[64];
} peak_job;

static void peak_part(void *ctx, int id)
{
    peak_job *j = ctx;
    double s = 0;
#if defined(__x86_64__)
    if (!strcmp(j->level, "avx512"))
        s = j->int8 ? peak_int8_avx512(j->iters) : peak_fma_avx512(j->iters);
    else if (!strcmp(j->level, "avx2"))
        s = j->int8 ? peak_int8_avx2(j->iters) : peak_fma_avx2(j->iters);
    else if (!strcmp(j->level, "avx2vnni")) /* the AVX2 level's FMA, its own int8 dot */
        s = j->int8 ? peak_int8_avx2vnni_level(j->iters) : peak_fma_avx2(j->iters);
#endif
    j->sink[id] = s;
}

/* Peak ops/s of the team at a level: f32 FMA (2 flops each) or int8 dot (2 ops per product);
 * 0 when this build has no peak loop for the level. */
static double peak(team *t, const char *level, int int8, int reps)
{
    double per_iter; /* ops per iteration of one thread's loop */
    level = limit_level(level);
    if (!strcmp(level, "avx512"))
        per_iter = int8 ? 12.0 * 128 : 12.0 * 32;
    else if (!strcmp(level, "avx2") || !strcmp(level, "avx2vnni"))
        per_iter = int8 ? 12.0 * 64 : 10.0 * 16;
    else
        return 0;
    peak_job j = {.level = level, .int8 = int8, .iters = 2000000};
    double ts[32];
    team_run(t, peak_part, &j);
    for (int r = 0; r < reps; r++) {
        double t0 = now(t->n == 1);
        team_run(t, peak_part, &j);
        ts[r] = now(t->n == 1) - t0;
    }
    return per_iter * (double)j.iters * t->n / median(ts, reps);
}

/* ---------------------------------------------------------------------------------------- */
/* gemm cases                                                                                */

typedef struct gemm_job {
    const kernel_table *K;
    int type, m, n, k;
    const float *a;
    const blk_q8 *aq;
    const void *w;
    float *c;
    int parts;
} gemm_job;

/* Part id of the n range, in multiples of 16 rows, as the runtime's pool splits it. */
static void gemm_part(void *ctx, int id)
{
    gemm_job *j = ctx;
    int per = (j->n / j->parts + 15) / 16 * 16;
    int n0 = id * per, n1 = n0 + per < j->n ? n0 + per : j->n;
    if (n0 >= n1)
        return;
    size_t nb = (size_t)j->k / QK;
    switch (j->type) {
    case WT_F32:
        j->K->gemm_f32(j->m, n0, n1, j->k, j->a, (size_t)j->k, j->w, NULL, j->c, (size_t)j->n);
        break;
    case WT_F16:
        j->K->gemm_f16(j->m, n0, n1, j->k, j->a, (size_t)j->k, j->w, NULL, j->c, (size_t)j->n);
        break;
    case WT_Q8:
        j->K->gemm_q8(j->m, n0, n1, j->k, j->aq, nb, j->w, NULL, j->c, (size_t)j->n);
        break;
    case WT_Q4:
        j->K->gemm_q4(j->m, n0, n1, j->k, j->aq, nb, j->w, NULL, j->c, (size_t)j->n);
        break;
    }
}

static size_t weight_bytes(int type, int n, int k)
{
    switch (type) {
    case WT_F32: return (size_t)n * k * 4;
    case WT_F16: return (size_t)n * k * 2;
    case WT_Q8: return (size_t)n * (k / QK) * sizeof(blk_q8);
    default: return (size_t)n * q4_row_bytes(k / QK);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

typedef struct limits {
    double bw;          /* read bytes/s with the team */
    double fma, int8;   /* ops/s with the team, per level */
} limits;

static const char *const type_names[] = {"f32", "f16", "q8", "q4"};

/* Whether tables a and b have the same matrix-product kernel for weight type `type`. */
static int same_gemm(const kernel_table *a, const kernel_table *b, int type)
{
    switch (type) {
    case WT_F32: return a->gemm_f32 == b->gemm_f32;
    case WT_F16: return a->gemm_f16 == b->gemm_f16;
    case WT_Q8: return a->gemm_q8 == b->gemm_q8;
    default: return a->gemm_q4 == b->gemm_q4;
    }
}

static void bench_case(team *t, const kernel_table *K, const char *level, const bench_shape *s,
                       int type, int reps, const limits *lim, int threads, size_t rotate)
{
    int m = s->m, n = s->n, k = s->k;
    if (type >= WT_Q8 && k % QK)
        return;
    size_t wb = weight_bytes(type, n, k);
    /* Decode shapes: as many copies of the weights as make rotate bytes, used in turn, so each
     * call streams its weights from memory as a real model's layers do (one layer's matrix
     * alone would sit in L3). */
    int ncopy = s->llm ? (int)((rotate + wb - 1) / wb) : 1;
    if (ncopy > 64)
        ncopy = 64;
    unsigned char *w = xmalloc(wb * (size_t)ncopy);
    /* Weights: random bytes are valid codes for q8/q4; scales and f16/f32 values are set to
     * small finite numbers (no NaN/inf slowing anything down). */
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < wb; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        w[i] = (unsigned char)(x >> 24);
    }
    if (type == WT_F32)
        for (size_t i = 0; i < (size_t)n * k; i++)
            ((float *)w)[i] = (float)(i % 61) * 0.01f - 0.3f;
    if (type == WT_F16)
        for (size_t i = 0; i < (size_t)n * k; i++)
            ((uint16_t *)w)[i] = f32_to_f16((float)(i % 61) * 0.01f - 0.3f);
    if (type == WT_Q8)
        for (size_t b = 0; b < wb / sizeof(blk_q8); b++)
            ((blk_q8 *)w)[b].d = f32_to_f16(0.01f);
    if (type == WT_Q4) {
        /* Every block's scale, where the grouped row layout (kernels.h) puts it. */
        uint16_t d = f32_to_f16(0.01f);
        for (int r = 0; r < n; r++)
            for (int b = 0; b < k / QK; b++) {
                unsigned char *sc = w + (size_t)r * q4_row_bytes(k / QK) + q4_scale_off(b);
                sc[0] = (unsigned char)d;
                sc[1] = (unsigned char)(d >> 8);
            }
    }
    for (int i = 1; i < ncopy; i++)
        memcpy(w + wb * (size_t)i, w, wb);
    float *a = xmalloc((size_t)m * k * sizeof(float));
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = (float)(i % 37) * 0.02f - 0.35f;
    blk_q8 *aq = NULL;
    if (type >= WT_Q8) {
        aq = xmalloc((size_t)m * (k / QK) * sizeof(blk_q8));
        for (int i = 0; i < m; i++)
            K->quant_q8(k, a + (size_t)i * k, aq + (size_t)i * (k / QK));
    }
    float *c = xmalloc((size_t)m * n * sizeof(float));
    /* One thread streams alone: the products the model then calls (kernels.h *_alone). */
    kernel_table Ka = *K;
    if (threads == 1) {
        Ka.gemm_q8 = K->gemm_q8_alone;
        Ka.gemm_q4 = K->gemm_q4_alone;
    }
    gemm_job j = {.K = &Ka, .type = type, .m = m, .n = n, .k = k, .a = a, .aq = aq, .w = w, .c = c, .parts = t->n};
    double ts[64], ratio[64];
    team_run(t, gemm_part, &j);
    team_run(t, gemm_part, &j);
    for (int r = 0; r < reps; r++) {
        j.w = w + wb * (size_t)((2 * r + 1) % ncopy);
        double t0 = now(t->n == 1);
        team_run(t, gemm_part, &j);
        ts[r] = now(t->n == 1) - t0;
        if (s->llm) {
            /* Paired with a plain read of another copy of the same size. */
            ratio[r] = paired_read_ratio(t, level, w + wb * (size_t)((2 * r + 2) % ncopy), wb, ts[r]);
        }
    }
    double med = median(ts, reps);
    double ops = 2.0 * m * n * k;
    double gops = ops / med * 1e-9;
    double gbs = (double)wb / med * 1e-9;
    /* Decode shapes are judged against read bandwidth, vision shapes against the compute peak
     * of the level (f32 FMA for f32/f16 weights, int8 dot for q8/q4). */
    double frac;
    const char *limit;
    if (s->llm) {
        frac = median(ratio, reps);
        limit = "read_bw";
    } else if (type >= WT_Q8) {
        frac = lim->int8 > 0 ? gops * 1e9 / lim->int8 : 0;
        limit = "int8_peak";
    } else {
        frac = lim->fma > 0 ? gops * 1e9 / lim->fma : 0;
        limit = "fma_peak";
    }
    printf("gemm_%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.4f\t%.2f\t%.2f\t%.1f%%\t%s\n", type_names[type], level,
           s->name, m, n, k, threads, med * 1e3, gops, gbs, 100 * frac, limit);
    fflush(stdout);
    free(w);
    free(a);
    free(aq);
    free(c);
}

/* ---------------------------------------------------------------------------------------- */
/* attention cases                                                                           */

/* The attention a model runs: the vision tower's (577 queries over 577 f32 keys and values,
 * token-major, 16 heads of 64) and a decoding step's (one query over a 256-token f16 cache plus
 * the new position, head-major with the capacity of 512 that bench_e2e's reservation gives,
 * 1.4B: 16 heads of 128, 2.7B: 20 of 128). */
typedef struct attn_shape {
    const char *name;
    int nq, heads, d, n_keys, cap; /* cap: positions per head in the cache (decode) */
} attn_shape;

static const attn_shape attn_shapes[] = {
    {"vit.attention", 577, 16, 64, 577, 0},
    {"1.4b.decode_attention", 1, 16, 128, 257, 512},
    {"2.7b.decode_attention", 1, 20, 128, 257, 512},
};

typedef struct attn_job {
    const kernel_table *K;
    const attn_shape *s;
    const float *q;    /* (nq, heads * d) */
    const void *k, *v; /* vision: f32 (n_keys, heads * d); decode: f16 (heads, cap, d) */
    float *out;        /* (nq, heads * d) */
    int parts;
} attn_job;

/* Part id's heads, one kernel call per head as the model makes them (model.c attention_task). */
static void attn_part(void *ctx, int id)
{
    const attn_job *j = ctx;
    const attn_shape *s = j->s;
    int h0 = s->heads * id / j->parts, h1 = s->heads * (id + 1) / j->parts;
    size_t ld = (size_t)s->heads * s->d;
    float scale = 1.0f / sqrtf((float)s->d);
    for (int h = h0; h < h1; h++) {
        size_t qo = (size_t)h * s->d;
        if (s->cap) {
            size_t ko = (size_t)h * s->cap * s->d;
            j->K->attention_f16kv(0, 1, 1, 1, 1, s->d, s->n_keys, s->n_keys - 1, scale, j->q + qo, ld,
                                  (const uint16_t *)j->k + ko, (const uint16_t *)j->v + ko, (size_t)s->d,
                                  j->out + qo, ld);
        } else {
            j->K->attention(0, 1, s->nq, 1, 1, s->d, s->n_keys, -1, scale, j->q + qo, ld, (const float *)j->k + qo,
                            (const float *)j->v + qo, ld, j->out + qo, ld);
        }
    }
}

/* One attention case: median time over reps; the vision case against the level's f32 FMA peak
 * (4 nq n_keys heads d flops: scores and weighted sums), a decoding case against a plain read
 * of as many bytes right after each run, as the decode products are judged (its caches rotate
 * over copies filling `rotate` bytes, so each run reads from memory). */
static void bench_attention(team *t, const kernel_table *K, const char *level, const attn_shape *s, int reps,
                            const limits *lim, int threads, size_t rotate)
{
    size_t ld = (size_t)s->heads * s->d;
    size_t kv_elems = s->cap ? (size_t)s->heads * s->cap * s->d : (size_t)s->n_keys * ld; /* of K (or V) */
    size_t esize = s->cap ? 2 : 4;
    size_t copy = 2 * kv_elems * esize; /* K and V */
    int ncopy = s->cap ? (int)((rotate + copy - 1) / copy) : 1;
    if (ncopy > 64)
        ncopy = 64;
    unsigned char *kv = xmalloc(copy * (size_t)ncopy);
    for (size_t i = 0; i < kv_elems * 2 * (size_t)ncopy; i++) {
        float x = (float)(i % 53) * 0.02f - 0.5f;
        if (s->cap)
            ((uint16_t *)kv)[i] = f32_to_f16(x);
        else
            ((float *)kv)[i] = x;
    }
    float *q = xmalloc((size_t)s->nq * ld * sizeof(float)), *out = xmalloc((size_t)s->nq * ld * sizeof(float));
    for (size_t i = 0; i < (size_t)s->nq * ld; i++)
        q[i] = (float)(i % 41) * 0.03f - 0.6f;
    attn_job j = {.K = K, .s = s, .q = q, .k = kv, .v = kv + copy / 2, .out = out, .parts = t->n};
    double ts[128], ratio[128];
    if (s->cap)
        reps *= 8; /* ~0.1 ms a run: many more runs for a stable median */
    team_run(t, attn_part, &j);
    size_t kv_read = 2 * (size_t)s->heads * s->n_keys * s->d * esize; /* bytes a run reads */
    for (int r = 0; r < reps; r++) {
        unsigned char *c = kv + copy * (size_t)((2 * r + 1) % ncopy);
        j.k = c;
        j.v = c + copy / 2;
        double t0 = now(t->n == 1);
        team_run(t, attn_part, &j);
        ts[r] = now(t->n == 1) - t0;
        if (s->cap)
            ratio[r] = paired_read_ratio(t, level, kv + copy * (size_t)((2 * r + 2) % ncopy), kv_read, ts[r]);
    }
    double med = median(ts, reps);
    double gflops = 4.0 * s->nq * s->n_keys * (double)ld / med * 1e-9;
    double frac = s->cap ? median(ratio, reps) : lim->fma > 0 ? gflops * 1e9 / lim->fma : 0;
    printf("attention_%s\t%s\t%s\t%d\t%d\t%zu\t%d\t%.4f\t%.2f\t%.2f\t%.1f%%\t%s\n", s->cap ? "f16kv" : "f32",
           level, s->name, s->nq, s->n_keys, ld, threads, med * 1e3, gflops, (double)kv_read / med * 1e-9, 100 * frac,
           s->cap ? "read_bw" : "fma_peak");
    fflush(stdout);
    free(kv);
    free(q);
    free(out);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_kernels [-t threads] [-q] [-l level] [-s shape] [-k f32|f16|q8|q4|attn]\n"
                    "  -t N   threads (default: 1 and all online CPUs)\n"
                    "  -q     quick: fewer repetitions, smaller bandwidth buffer, one shape per group\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int quick = 0, tsel = 0;
    const char *lsel = NULL, *ssel = NULL, *ksel = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-q"))
            quick = 1;
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            tsel = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 1 < argc)
            lsel = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            ssel = argv[++i];
        else if (!strcmp(argv[i], "-k") && i + 1 < argc)
            ksel = argv[++i];
        else
            usage();
    }
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    if (ncpu > 64)
        ncpu = 64;
    int tlist[2] = {1, ncpu};
    int nt = ncpu > 1 ? 2 : 1;
    if (tsel > 0) {
        tlist[0] = tsel > 64 ? 64 : tsel;
        nt = 1;
    }
    int reps = quick ? 5 : 15;

    char avail[128];
    kernels_available(avail, sizeof avail);
    char levels[8][16];
    int nl = 0;
    for (char *p = strtok(avail, " "); p && nl < 8; p = strtok(NULL, " "))
        if (strcmp(p, "ref") && (!lsel || !strcmp(lsel, p)))
            snprintf(levels[nl++], sizeof levels[0], "%s", p);
    if (lsel && !strcmp(lsel, "ref"))
        snprintf(levels[nl++], sizeof levels[0], "ref");

    size_t bwbytes = (size_t)(quick ? 256 : 1024) << 20; /* >> any L3 here (tens of MB) */
    char *buf = xmalloc(bwbytes);
    memset(buf, 1, bwbytes);

    printf("# bench_kernels: %d CPUs online, levels:", ncpu);
    for (int l = 0; l < nl; l++)
        printf(" %s", levels[l]);
    printf("; medians of %d runs after warm-up; 1 thread: thread CPU time, N threads: wall time\n", reps);
    limits lim[2][8];
    for (int ti = 0; ti < nt; ti++) {
        team t;
        team_start(&t, tlist[ti]);
        for (int l = 0; l < nl; l++) {
            lim[ti][l].bw = read_bw(&t, buf, bwbytes, levels[l], quick ? 3 : 7);
            lim[ti][l].fma = peak(&t, levels[l], 0, quick ? 3 : 7);
            lim[ti][l].int8 = peak(&t, levels[l], 1, quick ? 3 : 7);
            printf("# limits\t%s\tthreads=%d\tread_bw=%.2f GB/s\tfma_f32=%.1f GFLOP/s\tint8_dot=%.1f GOP/s\n",
                   levels[l], tlist[ti], lim[ti][l].bw * 1e-9, lim[ti][l].fma * 1e-9, lim[ti][l].int8 * 1e-9);
        }
        team_stop(&t);
    }
    free(buf);

    printf("kernel\tlevel\tshape\tm\tn\tk\tthreads\tmedian_ms\tgops\tweight_gbs\tof_limit\tlimit\n");
    for (int ti = 0; ti < nt; ti++) {
        team t;
        team_start(&t, tlist[ti]);
        kernel_table below = kernels_ref; /* the level below: its kernels are not run again */
        for (int l = 0; l < nl; l++) {
            kernel_table K;
            kernels_init(levels[l], &K);
            for (int si = 0; si < VLM_N_SHAPES; si++) {
                const bench_shape *s = &vlm_shapes[si];
                if (ssel && !strstr(s->name, ssel))
                    continue;
                /* quick: the 1.4B decode shapes and the vision MLP only */
                if (quick && !ssel && !(strstr(s->name, "1.4b.mlp") || strstr(s->name, "vit.mlp_fc1")))
                    continue;
                for (int type = WT_F32; type <= WT_Q4; type++) {
                    if (ksel && strcmp(ksel, type_names[type]))
                        continue;
                    if (s->llm && type == WT_F32)
                        continue; /* LLM weights are stored f16 or quantized */
                    if (l > 0 && same_gemm(&K, &below, type))
                        continue; /* this level kept the kernel of the level below */
                    bench_case(&t, &K, levels[l], s, type, reps, &lim[ti][l], tlist[ti], bwbytes / 2);
                }
            }
            for (int ai = 0; ai < (int)(sizeof attn_shapes / sizeof attn_shapes[0]); ai++) {
                const attn_shape *s = &attn_shapes[ai];
                if ((ksel && strcmp(ksel, "attn")) || (ssel && !strstr(s->name, ssel)) || (quick && ai == 2))
                    continue;
                /* a level that kept the attention of the level below is not run again */
                if (l > 0 && (s->cap ? K.attention_f16kv == below.attention_f16kv : K.attention == below.attention))
                    continue;
                bench_attention(&t, &K, levels[l], s, reps, &lim[ti][l], tlist[ti], bwbytes / 2);
            }
            below = K;
        }
        team_stop(&t);
    }
    return 0;
}
