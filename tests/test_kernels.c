/* test_kernels.c: every SIMD kernel of every level this CPU runs, against the reference kernels
 * (kernels/ref/, the specification) within the bounds of kernels/tolerance.h. Architecture
 * neutral: the levels come from kernels_available(), each table from kernels_init(level), and a
 * slot is tested when its function differs from the reference (once per distinct function).
 * Outputs are poisoned with NaN, surrounded by canaries, and every kernel is also run over split
 * ranges, which must reproduce the unsplit result bit for bit (thread-count determinism). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/shapes.h"
#include "kernels.h"
#include "tolerance.h"
#include "util.h"

/* Every level name any architecture's ladder knows; those not available are reported SKIP. */
static const char *const known_levels[] = {"avx2", "avx2vnni", "avx512", "gfni", "neon", "dot"};

#define CANARY 0x7fbadc0du /* a NaN payload no kernel produces */
#define GUARD 19           /* canary floats before and after each output buffer */

typedef struct ctx {
    uint64_t seed0;   /* base seed (argv[1] or fixed) */
    uint64_t rng;     /* current xorshift state */
    uint64_t cseed;   /* seed of the current case, printed on failure */
    const char *level;
    const char *op;
    char what[160];   /* description of the current case */
    int fails;
    long checks;
    int quiet;        /* the self-test expects failures and silences them */
} ctx;

/* Starts a case: a fresh seed derived from the base and a running case number. */
static void begin(ctx *c, const char *op)
{
    static const uint64_t mul = 0x9E3779B97F4A7C15ull;
    c->cseed = c->cseed * mul + c->seed0 + 1;
    c->rng = c->cseed | 1;
    c->op = op;
    c->what[0] = 0;
}

static uint64_t rnd(ctx *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static float rndu(ctx *c) /* uniform in [-1, 1) */
{
    return (float)((int32_t)(rnd(c) >> 32)) * (1.0f / 2147483648.0f);
}

static int rndi(ctx *c, int n) { return (int)(rnd(c) % (uint64_t)n); }

static void fill_u(ctx *c, float *x, size_t n, float scale, float off)
{
    for (size_t i = 0; i < n; i++)
        x[i] = off + scale * rndu(c);
}

static float canary(void) { return f32_from_bits(CANARY); }
static int is_canary(float x) { return f32_bits(x) == CANARY; }

/* An output buffer of n floats with GUARD canaries on each side; everything starts as canary. */
static float *obuf(size_t n)
{
    float *b = malloc((n + 2 * GUARD) * sizeof *b);
    if (!b) {
        fprintf(stderr, "test_kernels: out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n + 2 * GUARD; i++)
        b[i] = canary();
    return b + GUARD;
}
static void ofree(float *b) { free(b ? b - GUARD : NULL); }

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_kernels: out of memory\n");
        exit(2);
    }
    return p;
}

static void fail(ctx *c, const char *fmt, size_t idx, float x, float r, float bound)
{
    c->fails++;
    if (c->quiet)
        return;
    if (c->fails > 30)
        return;
    fprintf(stderr, "FAIL [%s] %s %s: %s at %zu: got %.9g (0x%08x), ref %.9g, bound %.3g (seed %llu)\n",
            c->level, c->op, c->what, fmt, idx, x, f32_bits(x), r, bound,
            (unsigned long long)c->cseed);
}

/* A wrong f16 encoding: the input, what the kernel wrote and what the reference wrote. */
static void fail_f16(ctx *c, const char *what, size_t idx, float x, unsigned got, unsigned want)
{
    c->fails++;
    if (c->quiet || c->fails > 30)
        return;
    fprintf(stderr, "FAIL [%s] %s %s: %s at %zu: input %.9g (0x%08x) gave 0x%04x, ref 0x%04x (seed %llu)\n",
            c->level, c->op, c->what, what, idx, x, f32_bits(x), got, want, (unsigned long long)c->cseed);
}

/* Checks the guards of a buffer made by obuf: nothing written before or after it. */
static int check_guards(ctx *c, const float *b, size_t n)
{
    for (int i = 1; i <= GUARD; i++)
        if (!is_canary(b[-i]) || !is_canary(b[n + i - 1])) {
            fail(c, "write outside the buffer", (size_t)i, 0, 0, 0);
            return 0;
        }
    return 1;
}

/* The comparison helper of every float output: x[idx] for idx in [0, n) where inside(idx) must
 * match ref within op's bound, and elsewhere must still hold the canary. Returns 1 on success. */
typedef int (*inside_fn)(const void *shape, size_t idx);

static int compare(ctx *c, tol_op op, int len, const float *x, const float *ref, size_t n,
                   inside_fn inside, const void *shape)
{
    c->checks++;
    if (!check_guards(c, x, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (inside && !inside(shape, i)) {
            if (!is_canary(x[i])) {
                fail(c, "write outside the output range", i, x[i], 0, 0);
                return 0;
            }
        } else if (!tol_ok(op, x[i], ref[i], len)) {
            fail(c, "mismatch", i, x[i], ref[i], tol_bound(op, ref[i], len));
            return 0;
        }
    }
    return 1;
}

/* Bit-identical results (split ranges vs one call). */
static int same_bits(ctx *c, const char *what, const float *x, const float *y, size_t n)
{
    c->checks++;
    for (size_t i = 0; i < n; i++)
        if (f32_bits(x[i]) != f32_bits(y[i])) {
            fail(c, what, i, x[i], y[i], 0);
            return 0;
        }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* gemm                                                                                      */

typedef struct gshape {
    int m, n0, n1, k;
    size_t lda, ldc;
} gshape;

static int gemm_inside(const void *shape, size_t idx)
{
    const gshape *s = shape;
    size_t col = idx % s->ldc;
    return (int)col >= s->n0 && (int)col < s->n1;
}

/* The operands of one gemm case; the weights have n rows of k. */
typedef struct gdata {
    int type;
    float *a;      /* (m, lda) */
    blk_q8 *aq;    /* (m, lda / 32 blocks) quantized a, for q8/q4 */
    void *w;       /* (n, k) in type; q4: n rows of q4_row_bytes(k / 32) */
    float *bias;   /* (n) or NULL */
} gdata;

typedef void (*gemm_f32_fn)(int, int, int, int, const float *, size_t, const float *, const float *,
                            float *, size_t);
typedef void (*gemm_f16_fn)(int, int, int, int, const float *, size_t, const uint16_t *,
                            const float *, float *, size_t);
typedef void (*gemm_q8_fn)(int, int, int, int, const blk_q8 *, size_t, const blk_q8 *,
                           const float *, float *, size_t);
typedef void (*gemm_q4_fn)(int, int, int, int, const blk_q8 *, size_t, const uint8_t *,
                           const float *, float *, size_t);

static void run_gemm(const kernel_table *t, const gdata *d, const gshape *s, int n0, int n1, float *cc)
{
    switch (d->type) {
    case WT_F32:
        t->gemm_f32(s->m, n0, n1, s->k, d->a, s->lda, d->w, d->bias, cc, s->ldc);
        break;
    case WT_F16:
        t->gemm_f16(s->m, n0, n1, s->k, d->a, s->lda, d->w, d->bias, cc, s->ldc);
        break;
    case WT_Q8:
        t->gemm_q8(s->m, n0, n1, s->k, d->aq, s->lda / QK, d->w, d->bias, cc, s->ldc);
        break;
    case WT_Q4:
        t->gemm_q4(s->m, n0, n1, s->k, d->aq, s->lda / QK, d->w, d->bias, cc, s->ldc);
        break;
    }
}

/* Random operands: O(1) activations and weights (q8/q4 through the reference quantizers, some
 * blocks all zero); when exact, every scale is 1 and the codes are random integers including
 * the extremes, so each output is an integer below 2^24 that any summation order gets exactly. */
static void gemm_data(ctx *c, gdata *d, int type, int m, int n, int k, size_t lda, int bias,
                      int exact)
{
    d->type = type;
    d->a = xmalloc((size_t)m * lda * sizeof(float));
    fill_u(c, d->a, (size_t)m * lda, 1.0f, 0.0f);
    d->aq = NULL;
    int nb = k / QK;
    size_t ldb = lda / QK;
    float *row = xmalloc((size_t)k * sizeof(float));
    if (type == WT_Q8 || type == WT_Q4) {
        d->aq = xmalloc((size_t)m * ldb * sizeof(blk_q8));
        memset(d->aq, 0, (size_t)m * ldb * sizeof(blk_q8));
        for (int i = 0; i < m; i++) {
            blk_q8 *ar = d->aq + (size_t)i * ldb;
            quant_row_q8(k, d->a + (size_t)i * lda, ar);
            for (int b = 0; b < nb; b++) {
                if (rndi(c, 11) == 0)
                    memset(&ar[b], 0, sizeof ar[b]);
                if (exact) {
                    ar[b].d = 0x3c00;
                    for (int j = 0; j < QK; j++)
                        ar[b].qs[j] = (int8_t)(rndi(c, 5) == 0 ? (rndi(c, 2) ? 127 : -127)
                                                               : rndi(c, 255) - 127);
                }
            }
        }
    }
    switch (type) {
    case WT_F32: {
        float *w = xmalloc((size_t)n * k * sizeof(float));
        fill_u(c, w, (size_t)n * k, 1.0f, 0.0f);
        d->w = w;
        break;
    }
    case WT_F16: {
        uint16_t *w = xmalloc((size_t)n * k * sizeof(uint16_t));
        for (size_t i = 0; i < (size_t)n * k; i++)
            w[i] = f32_to_f16(rndu(c));
        d->w = w;
        break;
    }
    case WT_Q8: {
        blk_q8 *w = xmalloc((size_t)n * nb * sizeof(blk_q8));
        for (int r = 0; r < n; r++) {
            fill_u(c, row, (size_t)k, 1.0f, 0.0f);
            quant_row_q8(k, row, w + (size_t)r * nb);
        }
        for (size_t b = 0; b < (size_t)n * nb; b++) {
            if (rndi(c, 13) == 0)
                memset(&w[b], 0, sizeof w[b]);
            if (exact) {
                w[b].d = 0x3c00;
                for (int j = 0; j < QK; j++)
                    w[b].qs[j] = (int8_t)(rndi(c, 4) == 0 ? (rndi(c, 2) ? 127 : -128) : rndi(c, 256) - 128);
            }
        }
        d->w = w;
        break;
    }
    case WT_Q4: {
        size_t rb = q4_row_bytes(nb);
        uint8_t *w = xmalloc((size_t)n * rb);
        for (int r = 0; r < n; r++) {
            fill_u(c, row, (size_t)k, 1.0f, 0.0f);
            quant_row_q4(k, row, w + (size_t)r * rb);
        }
        for (int r = 0; r < n; r++)
            for (int b = 0; b < nb; b++) {
                uint8_t *sc = w + (size_t)r * rb + q4_scale_off(b);
                uint8_t *qs = w + (size_t)r * rb + q4_nibbles_off(nb, b);
                if (rndi(c, 13) == 0) {
                    memset(sc, 0, 2);
                    memset(qs, 0, QK / 2);
                }
                if (exact) {
                    sc[0] = 0x00; /* f16 1.0 = 0x3c00, little-endian */
                    sc[1] = 0x3c;
                    for (int j = 0; j < QK / 2; j++)
                        qs[j] = (uint8_t)(rndi(c, 4) == 0 ? (rndi(c, 2) ? 0x0f : 0xf0) : rndi(c, 256));
                }
            }
        d->w = w;
        break;
    }
    }
    free(row);
    d->bias = NULL;
    if (bias) {
        d->bias = xmalloc((size_t)n * sizeof(float));
        fill_u(c, d->bias, (size_t)n, exact ? 0.0f : 1.0f, exact ? 3.0f : 0.0f);
    }
}

static void gemm_free(gdata *d)
{
    free(d->a);
    free(d->aq);
    free(d->w);
    free(d->bias);
}

static const char *const type_names[] = {"f32", "f16", "q8", "q4"};

/* One case: t against the reference on [n0, n1), then the same range split in two at a random
 * point (and in three for wider ranges), which must give the same bits. */
static void gemm_case(ctx *c, const kernel_table *t, int type, int m, int n, int k, int n0, int n1,
                      int pad_a, int pad_c, int bias, int exact)
{
    gshape s = {.m = m, .n0 = n0, .n1 = n1, .k = k};
    s.lda = (size_t)k + (size_t)pad_a * (type >= WT_Q8 ? QK : 1);
    s.ldc = (size_t)n + (size_t)pad_c;
    snprintf(c->what, sizeof c->what, "%s m=%d n=%d k=%d range=[%d,%d) lda=%zu ldc=%zu bias=%d%s",
             type_names[type], m, n, k, n0, n1, s.lda, s.ldc, bias, exact ? " exact" : "");
    gdata d;
    gemm_data(c, &d, type, m, n, k, s.lda, bias, exact);
    size_t nc = (size_t)m * s.ldc;
    float *ref = obuf(nc);
    float *out = obuf(nc);
    float *spl = obuf(nc);
    run_gemm(&kernels_ref, &d, &s, n0, n1, ref);
    for (int i = 0; i < m; i++)
        for (int j = n0; j < n1; j++)
            out[(size_t)i * s.ldc + j] = NAN;
    run_gemm(t, &d, &s, n0, n1, out);
    tol_op op = exact ? TOL_EXACT : type == WT_F32 ? TOL_GEMM_F32 : type == WT_F16 ? TOL_GEMM_F16 : TOL_GEMM_Q;
    int ok = compare(c, op, k, out, ref, nc, gemm_inside, &s);
    /* kernels.h: q8/q4 blocks are summed in order; every level does it bit for bit when m > 1
     * (m = 1 may sum in lanes: the tolerance above). */
    if (ok && type >= WT_Q8 && m > 1)
        ok = same_bits(c, "q8/q4 product with m > 1 differs in bits from the reference", out, ref, nc);
    if (ok && n1 - n0 >= 2) {
        int a = n0 + 1 + rndi(c, n1 - n0 - 1);
        run_gemm(t, &d, &s, n0, a, spl);
        if (n1 - a >= 3) {
            int b = a + 1 + rndi(c, n1 - a - 1);
            run_gemm(t, &d, &s, a, b, spl);
            run_gemm(t, &d, &s, b, n1, spl);
        } else {
            run_gemm(t, &d, &s, a, n1, spl);
        }
        if (check_guards(c, spl, nc))
            same_bits(c, "split range differs from one call", spl, out, nc);
    }
    ofree(ref);
    ofree(out);
    ofree(spl);
    gemm_free(&d);
}

static void test_gemm(ctx *c, const kernel_table *t, int type)
{
    static const int ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33};
    static const int ns[] = {1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 65};
    static const int ks[] = {32, 64, 96, 160, 1, 3, 17, 588};
    static const char *const names[] = {"gemm_f32", "gemm_f16", "gemm_q8", "gemm_q4"};
    int nks = type <= WT_F16 ? 8 : 4;
    int variant = 0;
    for (int ki = 0; ki < nks; ki++)
        for (int mi = 0; mi < 12; mi++)
            for (int ni = 0; ni < 13; ni++, variant++) {
                begin(c, names[type]);
                int m = ms[mi], n = ns[ni], k = ks[ki];
                /* Rotate the range (full, left, right, middle), bias, and strides over the cases. */
                int n0 = 0, n1 = n;
                switch (variant % 4) {
                case 1: n1 = (n + 1) / 2; break;
                case 2: n0 = n / 2; break;
                case 3: n0 = n / 3; n1 = n - n / 4; break;
                }
                gemm_case(c, t, type, m, n, k, n0, n1, (variant / 4) % 3 == 1 ? 3 : 0,
                          (variant / 2) % 3 == 2 ? 5 : 0, (variant / 3) % 2, 0);
            }
    /* A long reduction. */
    static const int lm[] = {1, 4, 5, 17};
    static const int ln[] = {1, 8, 17, 33};
    for (int mi = 0; mi < 4; mi++)
        for (int ni = 0; ni < 4; ni++) {
            begin(c, names[type]);
            gemm_case(c, t, type, lm[mi], ln[ni], 4128, 0, ln[ni], mi & 1, ni & 1, (mi + ni) & 1, 0);
        }
    /* Longer than every kernel's k super-chunk (the m = 1 paths keep 256 or 512 blocks of
     * activation tables), so the chunk sums are carried across. */
    if (type >= WT_Q8)
        for (int mi = 0; mi < 2; mi++) {
            begin(c, names[type]);
            gemm_case(c, t, type, 1 + 2 * mi, 5, 16384 + 96, 1, 5, 0, 0, mi, 0);
        }
    /* Row lengths around the q4 groups of 16 blocks: nb % 16 = 15, 0, 1, 8, 15, 1, 7 and 15,
     * with a short last group inside or after a full super-chunk (512 blocks). */
    if (type >= WT_Q8) {
        static const int gb[] = {15, 16, 17, 24, 47, 513, 519, 527};
        static const int gm[] = {1, 2, 5};
        for (int bi = 0; bi < 8; bi++)
            for (int mi = 0; mi < 3; mi++) {
                begin(c, names[type]);
                int n = 9 + 8 * mi;
                gemm_case(c, t, type, gm[mi], n, gb[bi] * QK, (bi + mi) % 3, n - bi % 2, bi & 1, mi & 1,
                          (bi + mi) & 1, 0);
            }
    }
    /* Exact integer block sums (q8/q4): scales 1, extreme codes, integer outputs. */
    if (type >= WT_Q8) {
        static const int em[] = {1, 2, 5, 17};
        static const int en[] = {1, 7, 16, 33};
        static const int ek[] = {32, 96, 480, 1024};
        for (int ki = 0; ki < 4; ki++)
            for (int mi = 0; mi < 4; mi++)
                for (int ni = 0; ni < 4; ni++) {
                    begin(c, names[type]);
                    gemm_case(c, t, type, em[mi], en[ni], ek[ki], 0, en[ni], ni & 1, 0, mi & 1, 1);
                }
    }
    /* Real shapes (bench/shapes.h) with their k, a window of output columns, 1 and a few rows. */
    for (int i = 0; i < VLM_N_SHAPES; i += 2) {
        const bench_shape *sh = &vlm_shapes[i];
        if (sh->k % QK && type >= WT_Q8)
            continue;
        int n = sh->n < 72 ? sh->n : 72;
        int m = sh->llm ? 1 + (i & 2) : 37;
        begin(c, names[type]);
        gemm_case(c, t, type, m, n, sh->k, 5, n - 2, 0, 0, i & 1, 0);
    }
}

static void test_gemm_f32(ctx *c, const kernel_table *t) { test_gemm(c, t, WT_F32); }
static void test_gemm_f16(ctx *c, const kernel_table *t) { test_gemm(c, t, WT_F16); }
static void test_gemm_q8(ctx *c, const kernel_table *t) { test_gemm(c, t, WT_Q8); }
static void test_gemm_q4(ctx *c, const kernel_table *t) { test_gemm(c, t, WT_Q4); }

/* The *_alone products differ from gemm_q8 / gemm_q4 in their prefetch only: the same checks. */
static void test_gemm_q8_alone(ctx *c, const kernel_table *t)
{
    kernel_table u = *t;
    u.gemm_q8 = t->gemm_q8_alone;
    test_gemm(c, &u, WT_Q8);
}

static void test_gemm_q4_alone(ctx *c, const kernel_table *t)
{
    kernel_table u = *t;
    u.gemm_q4 = t->gemm_q4_alone;
    test_gemm(c, &u, WT_Q4);
}

/* ---------------------------------------------------------------------------------------- */
/* quantization                                                                              */

/* Blocks of every kind: random scales over many decades, all zero, a single nonzero, ties
 * (amax = 127 makes d = 1, so x.5 values are exact ties that round away from zero), negative
 * zeros, huge and tiny values (f16 overflow and subnormal scales). */
static void quant_input(ctx *c, float *x, int n)
{
    for (int b = 0; b < n / QK; b++) {
        float *xb = x + b * QK;
        int kind = rndi(c, 9);
        float sc = powf(10.0f, (float)(rndi(c, 13) - 6));
        for (int j = 0; j < QK; j++)
            xb[j] = sc * rndu(c);
        switch (kind) {
        case 0:
            for (int j = 0; j < QK; j++)
                xb[j] = 0;
            break;
        case 1:
            for (int j = 0; j < QK; j++)
                xb[j] = j == 5 ? -sc : (j & 1 ? -0.0f : 0.0f);
            break;
        case 2:
            for (int j = 0; j < QK; j++)
                xb[j] = (float)(rndi(c, 254) - 127) + 0.5f;
            xb[rndi(c, QK)] = rndi(c, 2) ? 127.0f : -127.0f;
            break;
        case 3:
            xb[rndi(c, QK)] = rndi(c, 2) ? 3e38f : -1e30f;
            break;
        case 4:
            for (int j = 0; j < QK; j++)
                xb[j] *= 1e-28f; /* d stays a normal or subnormal f32 with a finite 1/d */
            break;
        }
    }
}

static void test_quant_q8(ctx *c, const kernel_table *t)
{
    static const int ns[] = {32, 64, 96, 1024, 2048, 4128, 5632};
    for (int i = 0; i < 7; i++)
        for (int rep = 0; rep < 4; rep++) {
            begin(c, "quant_q8");
            int n = ns[i];
            snprintf(c->what, sizeof c->what, "n=%d", n);
            float *x = xmalloc((size_t)n * sizeof(float));
            quant_input(c, x, n);
            int nb = n / QK;
            blk_q8 *r = xmalloc((size_t)(nb + 1) * sizeof(blk_q8));
            blk_q8 *y = xmalloc((size_t)(nb + 1) * sizeof(blk_q8));
            memset(r, 0x5a, (size_t)(nb + 1) * sizeof(blk_q8));
            memset(y, 0x5a, (size_t)(nb + 1) * sizeof(blk_q8));
            kernels_ref.quant_q8(n, x, r);
            t->quant_q8(n, x, y);
            c->checks++;
            for (int b = 0; b <= nb; b++)
                if (memcmp(&r[b], &y[b], sizeof r[b])) {
                    fail(c, b == nb ? "write after the last block" : "block differs", (size_t)b,
                         f16_to_f32(y[b].d), f16_to_f32(r[b].d), 0);
                    break;
                }
            free(x);
            free(r);
            free(y);
        }
}

static void test_dequant_row(ctx *c, const kernel_table *t)
{
    static const int ns[] = {1, 3, 17, 32, 64, 588, 4128};
    for (int type = WT_F32; type <= WT_Q4; type++)
        for (int i = 0; i < 7; i++) {
            int n = ns[i];
            if (type >= WT_Q8 && n % QK)
                continue;
            begin(c, "dequant_row");
            snprintf(c->what, sizeof c->what, "%s n=%d", type_names[type], n);
            gdata d;
            gemm_data(c, &d, type, 1, 1, n, (size_t)n, 0, 0);
            float *r = obuf((size_t)n);
            float *y = obuf((size_t)n);
            kernels_ref.dequant_row(type, n, d.w, r);
            t->dequant_row(type, n, d.w, y);
            compare(c, TOL_EXACT, 1, y, r, (size_t)n, NULL, NULL);
            ofree(r);
            ofree(y);
            gemm_free(&d);
        }
}

/* The q4 row layout of docs/format.md, built by hand without the kernels.h helpers: nb = 19
 * blocks are a full group (16 scales at bytes 0..31, their nibbles at 32..287) and a short
 * group of 3 (scales at 288..293, nibbles at 294..341). The helpers must give these offsets,
 * the reference dequantizer must read each block from there, and quant_row_q4 must write the
 * same bytes back: each block has a power-of-two scale and contains nibble 0 (-8 d, its largest
 * magnitude), so quantization reproduces it exactly. Returns the failures. */
static int test_q4_layout(ctx *c)
{
    enum { NB = 19, N = NB * QK, BYTES = NB * 18 };
    uint8_t row[BYTES], back[BYTES], used[BYTES] = {0};
    float want[N];
    float *y = obuf(N);
    int f0 = c->fails;
    begin(c, "q4 layout");
    c->level = "ref";
    for (int b = 0; b < NB; b++) {
        int g = b / 16, i = b % 16, r = g ? NB - 16 : 16;
        size_t so = 288 * (size_t)g + 2 * (size_t)i, no = 288 * (size_t)g + 2 * (size_t)r + 16 * (size_t)i;
        float d = ldexpf(1.0f, b % 5 - 2);
        uint16_t h = f32_to_f16(d);
        row[so] = (uint8_t)h;
        row[so + 1] = (uint8_t)(h >> 8);
        used[so]++;
        used[so + 1]++;
        for (int j = 0; j < QK / 2; j++) {
            int lo = (j + b) % 16, hi = (3 * j + b) % 16;
            row[no + j] = (uint8_t)(lo | hi << 4);
            used[no + j]++;
            want[QK * b + j] = d * (float)(lo - 8);
            want[QK * b + 16 + j] = d * (float)(hi - 8);
        }
        c->checks++;
        if (q4_scale_off(b) != so || q4_nibbles_off(NB, b) != no)
            fail(c, "helper offsets differ from the documented layout", (size_t)b, (float)q4_nibbles_off(NB, b),
                 (float)no, 0);
    }
    c->checks++;
    for (size_t i = 0; i < sizeof row; i++)
        if (used[i] != 1)
            fail(c, "the documented layout does not use this byte exactly once", i, used[i], 1, 0);
    kernels_ref.dequant_row(WT_Q4, N, row, y);
    compare(c, TOL_EXACT, 1, y, want, N, NULL, NULL);
    memset(back, 0, sizeof back);
    quant_row_q4(N, want, back);
    c->checks++;
    for (size_t i = 0; i < sizeof row; i++)
        if (back[i] != row[i]) {
            fail(c, "quant_row_q4 byte differs", i, back[i], row[i], 0);
            break;
        }
    ofree(y);
    c->level = NULL;
    return c->fails - f0;
}

/* ---------------------------------------------------------------------------------------- */
/* normalizations and elementwise ops                                                        */

typedef struct rshape {
    int r0, r1, n;
    size_t ld;
} rshape;

static int rows_inside(const void *shape, size_t idx)
{
    const rshape *s = shape;
    int r = (int)(idx / s->ld);
    return r >= s->r0 && r < s->r1 && (int)(idx % s->ld) < s->n;
}

static void test_norm(ctx *c, const kernel_table *t, int layer)
{
    static const int ns[] = {1, 3, 8, 17, 64, 588, 1024, 2048, 2560, 4096};
    static const float offs[] = {0.0f, 100.0f, -30.0f};
    for (int i = 0; i < 10; i++)
        for (int o = 0; o < 3; o++) {
            begin(c, layer ? "layernorm" : "rmsnorm");
            int rows = 6, n = ns[i];
            rshape s = {.r0 = o, .r1 = rows - (o == 2), .n = n, .ld = (size_t)n + (size_t)(i & 1) * 3};
            snprintf(c->what, sizeof c->what, "n=%d rows=[%d,%d) ld=%zu offset=%g", n, s.r0, s.r1, s.ld,
                     offs[o]);
            size_t nx = (size_t)rows * s.ld;
            float *x = xmalloc(nx * sizeof(float));
            float *w = xmalloc((size_t)n * sizeof(float));
            float *b = xmalloc((size_t)n * sizeof(float));
            fill_u(c, x, nx, 1.0f, offs[o]);
            fill_u(c, w, (size_t)n, 1.0f, 0.5f);
            fill_u(c, b, (size_t)n, 1.0f, 0.0f);
            float *r = obuf(nx);
            float *y = obuf(nx);
            float *sp = obuf(nx);
            float eps = o == 1 ? 1e-5f : 1e-6f;
            if (layer) {
                kernels_ref.layernorm(s.r0, s.r1, n, x, s.ld, w, b, eps, r);
                t->layernorm(s.r0, s.r1, n, x, s.ld, w, b, eps, y);
                t->layernorm(s.r0, s.r0 + 1, n, x, s.ld, w, b, eps, sp);
                t->layernorm(s.r0 + 1, s.r1, n, x, s.ld, w, b, eps, sp);
            } else {
                kernels_ref.rmsnorm(s.r0, s.r1, n, x, s.ld, w, eps, r);
                t->rmsnorm(s.r0, s.r1, n, x, s.ld, w, eps, y);
                t->rmsnorm(s.r0, s.r0 + 1, n, x, s.ld, w, eps, sp);
                t->rmsnorm(s.r0 + 1, s.r1, n, x, s.ld, w, eps, sp);
            }
            /* layernorm: the reference's own error grows with the offset / spread (tolerance.h). */
            double kappa = layer ? 1.0 + fabs(offs[o]) / 0.57735 : 1.0;
            int len = (int)fmin(n * kappa * kappa, 2e9);
            if (compare(c, TOL_NORM, len, y, r, nx, rows_inside, &s))
                same_bits(c, "split rows differ", sp, y, nx);
            ofree(r);
            ofree(y);
            ofree(sp);
            free(x);
            free(w);
            free(b);
        }
}

static void test_rmsnorm(ctx *c, const kernel_table *t) { test_norm(c, t, 0); }
static void test_layernorm(ctx *c, const kernel_table *t) { test_norm(c, t, 1); }

typedef void (*elem_fn)(size_t, size_t, float *);


/* kind: 0 one-operand op (fn1), 1 silu_mul, 2 add. Inputs span [-scale, scale] with a few
 * large magnitudes that push exp to overflow and underflow. Outside [i0, i1) the buffer must
 * keep its canaries (for in-place ops the input itself lives in the buffer, so the canary
 * check is done on a copy: outside the range the output must equal the input bit for bit). */
static void elem_case(ctx *c, const kernel_table *t, const char *name, elem_fn fr, elem_fn ft,
                      int kind, tol_op op, size_t n, size_t i0, size_t i1, float scale)
{
    begin(c, name);
    snprintf(c->what, sizeof c->what, "n=%zu range=[%zu,%zu) scale=%g", n, i0, i1, scale);
    float *x = obuf(n);
    float *u = xmalloc(n * sizeof(float));
    fill_u(c, x, n, scale, 0.0f);
    fill_u(c, u, n, 2.0f, 0.0f);
    for (size_t i = 0; i < n; i += 1 + (size_t)rndi(c, 29))
        x[i] = (rndi(c, 2) ? 1.0f : -1.0f) * (float)(rndi(c, 4) == 0 ? 200 : 1 + rndi(c, 40));
    if (n > 2) {
        x[0] = 0.0f;
        x[1] = -0.0f;
    }
    float *r = obuf(n);
    float *y = obuf(n);
    float *sp = obuf(n);
    memcpy(r, x, n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    memcpy(sp, x, n * sizeof(float));
    size_t mid = i0 + (i1 > i0 ? (size_t)rndi(c, (int)(i1 - i0)) : 0);
    if (kind == 0) {
        fr(i0, i1, r);
        ft(i0, i1, y);
        ft(i0, mid, sp);
        ft(mid, i1, sp);
    } else if (kind == 1) {
        kernels_ref.silu_mul(i0, i1, r, u);
        t->silu_mul(i0, i1, y, u);
        t->silu_mul(i0, mid, sp, u);
        t->silu_mul(mid, i1, sp, u);
    } else {
        kernels_ref.add(i0, i1, r, u);
        t->add(i0, i1, y, u);
        t->add(i0, mid, sp, u);
        t->add(mid, i1, sp, u);
    }
    /* Outside the range: unchanged input, which r also holds. */
    c->checks++;
    int ok = check_guards(c, y, n);
    for (size_t i = 0; ok && i < n; i++) {
        int in = i >= i0 && i < i1;
        if (in ? !tol_ok(op, y[i], r[i], 1) : f32_bits(y[i]) != f32_bits(x[i])) {
            fail(c, in ? "mismatch" : "write outside the range", i, y[i], r[i], tol_bound(op, r[i], 1));
            ok = 0;
        }
    }
    if (ok)
        same_bits(c, "split range differs", sp, y, n);
    ofree(x);
    ofree(r);
    ofree(y);
    ofree(sp);
    free(u);
}

static void test_elem(ctx *c, const kernel_table *t, const char *name, elem_fn fr, elem_fn ft,
                      int kind, tol_op op)
{
    static const size_t ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1031, 4096 + 13};
    for (int i = 0; i < 13; i++) {
        size_t n = ns[i];
        elem_case(c, t, name, fr, ft, kind, op, n, 0, n, 4.0f);
        elem_case(c, t, name, fr, ft, kind, op, n, n / 3, n - n / 5, 8.0f);
        elem_case(c, t, name, fr, ft, kind, op, n, 1 < n ? 1 : 0, n, 1.0f);
    }
}

static void test_gelu_erf(ctx *c, const kernel_table *t)
{
    test_elem(c, t, "gelu_erf", kernels_ref.gelu_erf, t->gelu_erf, 0, TOL_ACT);
}
static void test_quick_gelu(ctx *c, const kernel_table *t)
{
    test_elem(c, t, "quick_gelu", kernels_ref.quick_gelu, t->quick_gelu, 0, TOL_ACT);
}
static void test_hardswish(ctx *c, const kernel_table *t)
{
    test_elem(c, t, "hardswish", kernels_ref.hardswish, t->hardswish, 0, TOL_ACT);
}
static void test_hardsigmoid(ctx *c, const kernel_table *t)
{
    test_elem(c, t, "hardsigmoid", kernels_ref.hardsigmoid, t->hardsigmoid, 0, TOL_ACT);
}
static void test_relu(ctx *c, const kernel_table *t)
{
    test_elem(c, t, "relu", kernels_ref.relu, t->relu, 0, TOL_EXACT);
}
static void test_silu_mul(ctx *c, const kernel_table *t)
{
    test_elem(c, t, "silu_mul", NULL, NULL, 1, TOL_ACT);
}
static void test_add(ctx *c, const kernel_table *t) { test_elem(c, t, "add", NULL, NULL, 2, TOL_EXACT); }

/* ---------------------------------------------------------------------------------------- */
/* rope and attention                                                                        */

typedef struct hshape {
    size_t lo, hi; /* the written span */
} hshape;

static int span_inside(const void *shape, size_t idx)
{
    const hshape *s = shape;
    return idx >= s->lo && idx < s->hi;
}

static void test_rope(ctx *c, const kernel_table *t)
{
    static const int hds[] = {16, 64, 80, 128};
    static const int poss[] = {0, 1, 17, 577, 4095};
    for (int hi = 0; hi < 4; hi++)
        for (int pi = 0; pi < 5; pi++) {
            begin(c, "rope");
            int hd = hds[hi], nh = 1 + rndi(c, 8), pos = poss[pi];
            int h0 = rndi(c, nh), h1 = h0 + 1 + rndi(c, nh - h0);
            snprintf(c->what, sizeof c->what, "head_dim=%d heads=[%d,%d) of %d pos=%d", hd, h0, h1, nh, pos);
            float cs[256]; /* the model's table: cosines, then sines of pos * inv_freq */
            for (int i = 0; i < hd / 2; i++) {
                float angle = (float)pos * powf(10000.0f, -2.0f * (float)i / (float)hd);
                cs[i] = cosf(angle);
                cs[hd / 2 + i] = sinf(angle);
            }
            size_t n = (size_t)nh * hd;
            float *x = xmalloc(n * sizeof(float));
            fill_u(c, x, n, 2.0f, 0.0f);
            float *r = obuf(n);
            float *y = obuf(n);
            float *sp = obuf(n);
            memcpy(r, x, n * sizeof(float));
            memcpy(y, x, n * sizeof(float));
            memcpy(sp, x, n * sizeof(float));
            kernels_ref.rope(h0, h1, hd, r, cs);
            t->rope(h0, h1, hd, y, cs);
            int mid = h0 + rndi(c, h1 - h0 + 1);
            t->rope(h0, mid, hd, sp, cs);
            t->rope(mid, h1, hd, sp, cs);
            /* Heads outside [h0, h1) are compared too: the reference left them unchanged. */
            if (compare(c, TOL_ROPE, 1, y, r, n, NULL, NULL))
                same_bits(c, "split heads differ", sp, y, n);
            ofree(r);
            ofree(y);
            ofree(sp);
            free(x);
        }
}

/* One attention call over the case's operands: the f32 slot, or attention_f16kv /
 * attention_q8kv over the same keys and values stored as f16 / q8 (et: WT_F32, WT_F16, WT_Q8). */
typedef struct attn_args {
    int nq, n_heads, n_kv, hd, n_keys, causal;
    float scale;
    const float *q, *k, *v;    /* (nq, ldq), (n_keys, ldkv): the K/V values each kernel sees */
    const uint16_t *kh, *vh;   /* k and v as f16 (f16 cases), (n_keys, ldkv) */
    const blk_q8 *kq, *vq;     /* k and v as q8 (q8 cases), (n_keys, ldkvb) blocks */
    size_t ldq, ldkv, ldkvb, ldo;
} attn_args;

static void run_attn(const kernel_table *t, int et, const attn_args *a, int h0, int h1, float *out)
{
    if (et == WT_F16)
        t->attention_f16kv(h0, h1, a->nq, a->n_heads, a->n_kv, a->hd, a->n_keys, a->causal, a->scale, a->q, a->ldq,
                           a->kh, a->vh, a->ldkv, out, a->ldo);
    else if (et == WT_Q8)
        t->attention_q8kv(h0, h1, a->nq, a->n_heads, a->n_kv, a->hd, a->n_keys, a->causal, a->scale, a->q, a->ldq,
                          a->kq, a->vq, a->ldkvb, out, a->ldo);
    else
        t->attention(h0, h1, a->nq, a->n_heads, a->n_kv, a->hd, a->n_keys, a->causal, a->scale, a->q, a->ldq, a->k,
                     a->v, a->ldkv, out, a->ldo);
}

/* Some keys and values of an f16 case: f16 subnormals and signed zeros (exercise the exact
 * widening of every encoding class), then every element rounded to f16 in kh/vh with the
 * widened value written back to k/v (what the reference check below compares against). */
static void attn_f16_operands(ctx *c, float *x, uint16_t *xh, size_t n)
{
    for (size_t i = 0; i < n; i += 1 + (size_t)rndi(c, 23))
        x[i] = rndi(c, 4) ? (rndi(c, 2) ? 1.0f : -1.0f) * (float)(1 + rndi(c, 1023)) * 0x1p-24f
                          : (rndi(c, 2) ? 0.0f : -0.0f);
    for (size_t i = 0; i < n; i++) {
        xh[i] = f32_to_f16(x[i]);
        x[i] = f16_to_f32(xh[i]);
    }
}

/* The keys or values of a q8 case: each (key, kv head) row of x quantized by quant_row_q8 into
 * xq (row stride ldkvb blocks), some blocks then replaced by an all-zero block, a subnormal f16
 * scale, or codes of -128 (never produced by quant_q8, but a valid block) and 127; every row is
 * dequantized back into x (what the reference check below compares against). Padding blocks
 * get a NaN scale: a kernel that read them would show it. */
static void attn_q8_operands(ctx *c, float *x, blk_q8 *xq, const attn_args *a)
{
    int nb = a->hd / QK;
    for (size_t i = 0; i < (size_t)a->n_keys * a->ldkvb; i++)
        xq[i] = (blk_q8){.d = 0x7e00};
    for (int j = 0; j < a->n_keys; j++)
        for (int g = 0; g < a->n_kv; g++) {
            float *row = x + (size_t)j * a->ldkv + (size_t)g * a->hd;
            blk_q8 *bq = xq + (size_t)j * a->ldkvb + (size_t)g * nb;
            quant_row_q8(a->hd, row, bq);
            for (int b = 0; b < nb; b++) {
                int kind = rndi(c, 16);
                if (kind == 0)
                    bq[b] = (blk_q8){.d = 0};
                else if (kind == 1)
                    bq[b].d = (uint16_t)(1 + rndi(c, 1023)); /* subnormal: (1..1023) 2^-24 */
                else if (kind == 2)
                    for (int e = 0; e < QK; e += 1 + rndi(c, 5))
                        bq[b].qs[e] = (int8_t)(rndi(c, 2) ? -128 : 127);
            }
            kernels_ref.dequant_row(WT_Q8, a->hd, bq, row);
        }
}

static void attn_case(ctx *c, const kernel_table *t, int et, int nq, int n_heads, int n_kv, int hd, int n_keys,
                      int causal, int h0, int h1, int pad)
{
    static const char *const names[] = {[WT_F32] = "attention", [WT_F16] = "attention_f16kv",
                                        [WT_Q8] = "attention_q8kv"};
    begin(c, names[et]);
    snprintf(c->what, sizeof c->what, "nq=%d heads=%d kv=%d hd=%d keys=%d causal=%d range=[%d,%d) pad=%d",
             nq, n_heads, n_kv, hd, n_keys, causal, h0, h1, pad);
    attn_args a = {.nq = nq, .n_heads = n_heads, .n_kv = n_kv, .hd = hd, .n_keys = n_keys, .causal = causal,
                   .scale = 1.0f / sqrtf((float)hd), .ldq = (size_t)n_heads * hd + (size_t)pad,
                   .ldkv = (size_t)n_kv * hd + (size_t)pad, .ldkvb = (size_t)n_kv * hd / QK + (pad ? 1 : 0),
                   .ldo = (size_t)n_heads * hd + (size_t)(2 * pad)};
    size_t nkv = (size_t)n_keys * a.ldkv;
    size_t nkvb = et == WT_Q8 ? (size_t)n_keys * a.ldkvb : 0;
    float *q = xmalloc((size_t)nq * a.ldq * sizeof(float));
    float *k = xmalloc(nkv * sizeof(float));
    float *v = xmalloc(nkv * sizeof(float));
    uint16_t *kh = et == WT_F16 ? xmalloc(nkv * sizeof *kh) : NULL;
    uint16_t *vh = et == WT_F16 ? xmalloc(nkv * sizeof *vh) : NULL;
    blk_q8 *kq = nkvb ? xmalloc(nkvb * sizeof *kq) : NULL;
    blk_q8 *vq = nkvb ? xmalloc(nkvb * sizeof *vq) : NULL;
    /* Scores of a few units: a peaked but not one-hot softmax, as in trained models. */
    fill_u(c, q, (size_t)nq * a.ldq, 3.0f, 0.0f);
    fill_u(c, k, nkv, 1.0f, 0.0f);
    fill_u(c, v, nkv, 1.0f, 0.0f);
    if (et == WT_F16) {
        attn_f16_operands(c, k, kh, nkv);
        attn_f16_operands(c, v, vh, nkv);
    } else if (et == WT_Q8) {
        attn_q8_operands(c, k, kq, &a);
        attn_q8_operands(c, v, vq, &a);
    }
    a.q = q;
    a.k = k;
    a.v = v;
    a.kh = kh;
    a.vh = vh;
    a.kq = kq;
    a.vq = vq;
    size_t no = (size_t)nq * a.ldo;
    float *r = obuf(no);
    float *y = obuf(no);
    float *sp = obuf(no);
    run_attn(&kernels_ref, et, &a, h0, h1, r);
    gshape gs = {.n0 = h0 * hd, .n1 = h1 * hd, .ldc = a.ldo};
    if (et != WT_F32) {
        /* The specification: the f16 / q8 reference is the f32 reference on the widened K/V. */
        float *r32 = obuf(no);
        run_attn(&kernels_ref, WT_F32, &a, h0, h1, r32);
        same_bits(c, "reference differs from the f32 reference on widened K/V", r, r32, no);
        ofree(r32);
    }
    for (int i = 0; i < nq; i++)
        for (int j = h0 * hd; j < h1 * hd; j++)
            y[(size_t)i * a.ldo + j] = NAN;
    run_attn(t, et, &a, h0, h1, y);
    int mid = h0 + rndi(c, h1 - h0 + 1);
    run_attn(t, et, &a, h0, mid, sp);
    run_attn(t, et, &a, mid, h1, sp);
    if (compare(c, et == WT_F32 ? TOL_ATTN : et == WT_F16 ? TOL_ATTN_F16KV : TOL_ATTN_Q8KV, n_keys, y, r, no,
                gemm_inside, &gs))
        same_bits(c, "split heads differ", sp, y, no);
    if (et != WT_F32 && nq == 1) {
        /* Decode: every level's one-query path is its f32 arithmetic on the widened values, so
         * the level's f32 kernel on the widened K/V gives the same bits. (The multi-query tiles
         * take 16 keys per softmax block with widened rows instead of 64: there the tolerance
         * against the reference is the check.) */
        float *y32 = obuf(no);
        run_attn(t, WT_F32, &a, h0, h1, y32);
        same_bits(c, "one query: differs from the level's f32 kernel on widened K/V", y, y32, no);
        ofree(y32);
    }
    ofree(r);
    ofree(y);
    ofree(sp);
    free(q);
    free(k);
    free(v);
    free(kh);
    free(vh);
    free(kq);
    free(vq);
}

/* et: attention (WT_F32), attention_f16kv (WT_F16) or attention_q8kv (WT_Q8) over the same
 * shapes; q8 needs head_dim % 32 == 0, so its head dims are 32, 64, 96, 128 where the others
 * take 16, 64, 80, 128, and 32, 96, 256 where they take the odd ones. */
static void attention_shapes(ctx *c, const kernel_table *t, int et)
{
    int q8 = et == WT_Q8;
    const int hds[4] = {q8 ? 32 : 16, 64, q8 ? 96 : 80, 128};
    static const int ratios[] = {1, 2, 4};
    static const int keys[] = {1, 2, 7, 33, 130, 577, 601};
    for (int hi = 0; hi < 4; hi++)
        for (int ri = 0; ri < 3; ri++)
            for (int ki = 0; ki < 7; ki++) {
                int hd = hds[hi], n_kv = 1 + (ki & 1), n_heads = n_kv * ratios[ri];
                int n_keys = keys[ki];
                int h0 = ki % 3 == 1 ? 1 % n_heads : 0, h1 = ki % 3 == 2 && n_heads > 1 ? n_heads - 1 : n_heads;
                /* Decode (1 query at the end), prefill with an offset, full (vision). */
                attn_case(c, t, et, 1, n_heads, n_kv, hd, n_keys, n_keys - 1, h0, h1, ki & 1 ? 3 : 0);
                int nq = n_keys < 5 ? n_keys : 5;
                attn_case(c, t, et, nq, n_heads, n_kv, hd, n_keys, n_keys - nq, h0, h1, ki & 2 ? 3 : 0);
                if (n_keys <= 130 || hd == 64)
                    attn_case(c, t, et, ki == 5 ? 9 : 3, n_heads, n_kv, hd, n_keys, -1, h0, h1, 0);
            }
    /* A causal offset that reaches past the keys (clamped) and a prefill with no offset. */
    attn_case(c, t, et, 4, 4, 2, 64, 6, 4, 0, 4, 0);
    attn_case(c, t, et, 17, 2, 1, hds[2], 17, 0, 0, 2, 1);
    /* Odd head dims (tails of every vector width), the largest head_dim, a 16-query tile
     * plus a partial one over more than one key block. */
    static const int odd[] = {3, 17, 33, 100, 256}, odd_q8[] = {32, 96, 256};
    for (int i = 0; i < (q8 ? 3 : 5); i++) {
        int hd = q8 ? odd_q8[i] : odd[i];
        attn_case(c, t, et, 1, 4, 2, hd, 70, 69, 0, 4, i & 1);
        attn_case(c, t, et, 19, 4, 1, hd, 150, 131, 1, 4, (i + 1) & 1);
    }
}

static void test_attention(ctx *c, const kernel_table *t) { attention_shapes(c, t, WT_F32); }
static void test_attention_f16kv(ctx *c, const kernel_table *t) { attention_shapes(c, t, WT_F16); }
static void test_attention_q8kv(ctx *c, const kernel_table *t) { attention_shapes(c, t, WT_Q8); }

/* ---------------------------------------------------------------------------------------- */
/* f32 -> f16                                                                                */

/* IEEE binary16 encodings of hand-picked binary32 inputs: ties to even in the normal and
 * subnormal ranges, the overflow threshold, NaN payloads (F16C / Arm: quiet bit set, top 9
 * payload bits kept, sign kept). These pin the reference itself. */
static const struct {
    uint32_t f;
    uint16_t h;
} f16_known[] = {
    {0x3f800000, 0x3c00}, /* 1 */
    {0x3f801000, 0x3c00}, /* 1 + 2^-11: tie, to even */
    {0x3f803000, 0x3c02}, /* 1 + 3 * 2^-11: tie, to even (up) */
    {0x3f801001, 0x3c01}, /* just above the tie */
    {0x477fe000, 0x7bff}, /* 65504, the largest f16 */
    {0x477fefff, 0x7bff}, /* just below 65520 */
    {0x477ff000, 0x7c00}, /* 65520: tie between 65504 and 2^16, to even = overflow */
    {0x7f7fffff, 0x7c00}, /* FLT_MAX */
    {0xff7fffff, 0xfc00},
    {0x38800000, 0x0400}, /* 2^-14, the smallest normal f16 */
    {0x387fe000, 0x0400}, /* 2^-14 - 2^-25: tie between 0x3ff and 0x400, to even */
    {0x387fdfff, 0x03ff},
    {0x33800000, 0x0001}, /* 2^-24, the smallest subnormal */
    {0x33000000, 0x0000}, /* 2^-25: tie between 0 and 2^-24, to even */
    {0x33000001, 0x0001},
    {0xb3000001, 0x8001},
    {0x33c00000, 0x0002}, /* 1.5 * 2^-24: tie, to even (up) */
    {0x34200000, 0x0002}, /* 2.5 * 2^-24: tie, to even (down) */
    {0x00000001, 0x0000}, /* f32 subnormals round to zero */
    {0x807fffff, 0x8000},
    {0x00000000, 0x0000},
    {0x80000000, 0x8000},
    {0x7f800000, 0x7c00},
    {0xff800000, 0xfc00},
    {0x7fc00000, 0x7e00}, /* quiet NaN */
    {0x7f800001, 0x7e00}, /* signalling NaN, low payload: quieted */
    {0x7fbfffff, 0x7fff}, /* signalling NaN, full payload: top 9 bits kept */
    {0xffc02000, 0xfe01},
    {0xffffffff, 0xffff},
};

/* The binary32 numbers next to every f16 rounding boundary: each finite f16 value, the
 * midpoint to the next one up (exact in f32; above 65504 the next is 2^16, the overflow
 * threshold), and the floats just either side of the midpoint, both signs; then the table
 * above, and a sweep of bit patterns (NaNs included). Returns the count (<= 7 * 31744 + 70000). */
static size_t f16_inputs(float *x)
{
    size_t n = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = f16_to_f32((uint16_t)h);
        double hi = h == 0x7bff ? 65536.0 : f16_to_f32((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        float xs[4] = {(float)lo, mid, nextafterf(mid, -INFINITY), nextafterf(mid, INFINITY)};
        for (int i = 0; i < 4; i++) {
            x[n++] = xs[i];
            if (i)
                x[n++] = -xs[i];
        }
    }
    for (size_t i = 0; i < sizeof f16_known / sizeof f16_known[0]; i++)
        x[n++] = f32_from_bits(f16_known[i].f);
    for (uint64_t u = 12345; u < (1ull << 32); u += 65521)
        x[n++] = f32_from_bits((uint32_t)u);
    return n;
}

/* to_f16 over [i0, i1) of x (n): bit for bit the reference, nothing written outside the range
 * (the output is filled with a varying canary pattern), and a split of the range in two gives
 * the same bits. */
static void to_f16_case(ctx *c, const kernel_table *t, const float *x, size_t n, size_t i0, size_t i1)
{
    snprintf(c->what, sizeof c->what, "n=%zu range=[%zu,%zu)", n, i0, i1);
    size_t nb = n + 2 * GUARD;
    uint16_t *r = xmalloc(nb * sizeof *r);
    uint16_t *y = xmalloc(nb * sizeof *y);
    uint16_t *sp = xmalloc(nb * sizeof *sp);
    for (size_t i = 0; i < nb; i++)
        r[i] = y[i] = sp[i] = (uint16_t)(0xdead ^ (i * 0x9e37));
    kernels_ref.to_f16(i0, i1, x, r + GUARD);
    t->to_f16(i0, i1, x, y + GUARD);
    size_t mid = i0 + (size_t)rndi(c, (int)(i1 - i0 + 1));
    t->to_f16(i0, mid, x, sp + GUARD);
    t->to_f16(mid, i1, x, sp + GUARD);
    c->checks++;
    for (size_t i = 0; i < nb; i++) {
        int in = i >= GUARD + i0 && i < GUARD + i1;
        if (y[i] != r[i] || sp[i] != r[i]) {
            const char *what = !in ? "write outside the range" : y[i] != r[i] ? "bits differ" : "split range differs";
            size_t at = i - GUARD; /* wraps for the guard before the buffer: printed as a huge index */
            fail_f16(c, what, at, in ? x[at] : 0, y[i] != r[i] ? y[i] : sp[i], r[i]);
            break;
        }
    }
    free(r);
    free(y);
    free(sp);
}

static void test_to_f16(ctx *c, const kernel_table *t)
{
    begin(c, "to_f16");
    snprintf(c->what, sizeof c->what, "known encodings");
    c->checks++;
    for (size_t i = 0; i < sizeof f16_known / sizeof f16_known[0]; i++) {
        float x = f32_from_bits(f16_known[i].f);
        uint16_t h = 0;
        kernels_ref.to_f16(0, 1, &x, &h);
        if (h != f16_known[i].h) {
            fail_f16(c, "reference encoding", i, x, h, f16_known[i].h);
            break;
        }
    }
    size_t cap = 7 * 31744 + 70000;
    float *x = xmalloc(cap * sizeof *x);
    size_t n = f16_inputs(x);
    begin(c, "to_f16");
    to_f16_case(c, t, x, n, 0, n);
    /* Short ranges at every alignment: vector bodies, tails, starts inside a vector. */
    for (int i = 0; i < 300; i++) {
        begin(c, "to_f16");
        size_t len = (size_t)rndi(c, 40);
        size_t i0 = (size_t)rndi(c, (int)(n - len));
        size_t lo = i0 > 7 ? i0 - 7 : 0;
        to_f16_case(c, t, x + lo, len + 14 < n - lo ? len + 14 : n - lo, i0 - lo, i0 - lo + len);
    }
    free(x);
}

/* ---------------------------------------------------------------------------------------- */
/* convolutions and pooling                                                                  */

static void test_im2col(ctx *c, const kernel_table *t)
{
    static const int cfg[][3] = {{336, 336, 14}, {28, 42, 14}, {10, 11, 3}, {9, 9, 1}, {16, 16, 4}, {7, 13, 2}};
    for (int i = 0; i < 6; i++) {
        begin(c, "im2col_patch");
        int h = cfg[i][0], w = cfg[i][1], p = cfg[i][2];
        int gh = h / p, g = w / p;
        int r0 = gh > 2 ? 1 : 0, r1 = gh > 3 ? gh - 1 : gh;
        snprintf(c->what, sizeof c->what, "h=%d w=%d p=%d rows=[%d,%d)", h, w, p, r0, r1);
        float *img = xmalloc((size_t)3 * h * w * sizeof(float));
        fill_u(c, img, (size_t)3 * h * w, 1.0f, 0.0f);
        size_t n = (size_t)gh * g * 3 * p * p;
        float *r = obuf(n);
        float *y = obuf(n);
        kernels_ref.im2col_patch(r0, r1, h, w, p, img, r);
        t->im2col_patch(r0, r1, h, w, p, img, y);
        hshape s = {(size_t)r0 * g * 3 * p * p, (size_t)r1 * g * 3 * p * p};
        compare(c, TOL_EXACT, 1, y, r, n, span_inside, &s);
        ofree(r);
        ofree(y);
        free(img);
    }
}

typedef struct cshape {
    int c0, c1, c;
} cshape;

static int chan_inside(const void *shape, size_t idx)
{
    const cshape *s = shape;
    int ch = (int)(idx % (size_t)s->c);
    return ch >= s->c0 && ch < s->c1;
}

static void test_dwconv3x3(ctx *c, const kernel_table *t)
{
    static const int sizes[][2] = {{1, 1}, {2, 3}, {3, 3}, {5, 7}, {12, 12}, {24, 24}, {7, 2}};
    static const int chans[] = {1, 3, 8, 17, 64, 2048};
    for (int si = 0; si < 7; si++)
        for (int ci = 0; ci < 6; ci++)
            for (int stride = 1; stride <= 2; stride++) {
                begin(c, "dwconv3x3");
                int h = sizes[si][0], w = sizes[si][1], ch = chans[ci];
                if (ch == 2048 && h * w > 200)
                    continue;
                cshape s = {ci & 1 ? ch / 3 : 0, ci & 2 ? ch - ch / 4 : ch, ch};
                int bias = (si + ci + stride) & 1;
                snprintf(c->what, sizeof c->what, "h=%d w=%d c=%d stride=%d chans=[%d,%d) bias=%d", h, w, ch,
                         stride, s.c0, s.c1, bias);
                float *in = xmalloc((size_t)h * w * ch * sizeof(float));
                float *wt = xmalloc((size_t)ch * 9 * sizeof(float));
                float *b = xmalloc((size_t)ch * sizeof(float));
                fill_u(c, in, (size_t)h * w * ch, 1.0f, 0.0f);
                fill_u(c, wt, (size_t)ch * 9, 1.0f, 0.0f);
                fill_u(c, b, (size_t)ch, 1.0f, 0.0f);
                int ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1;
                size_t n = (size_t)ho * wo * ch;
                float *r = obuf(n);
                float *y = obuf(n);
                float *sp = obuf(n);
                kernels_ref.dwconv3x3(s.c0, s.c1, h, w, ch, stride, in, wt, bias ? b : NULL, r);
                t->dwconv3x3(s.c0, s.c1, h, w, ch, stride, in, wt, bias ? b : NULL, y);
                int mid = s.c0 + rndi(c, s.c1 - s.c0 + 1);
                t->dwconv3x3(s.c0, mid, h, w, ch, stride, in, wt, bias ? b : NULL, sp);
                t->dwconv3x3(mid, s.c1, h, w, ch, stride, in, wt, bias ? b : NULL, sp);
                if (compare(c, TOL_CONV, 9, y, r, n, chan_inside, &s))
                    same_bits(c, "split channels differ", sp, y, n);
                ofree(r);
                ofree(y);
                ofree(sp);
                free(in);
                free(wt);
                free(b);
            }
}

static void test_avgpool(ctx *c, const kernel_table *t)
{
    static const int cfg[][4] = {{24, 24, 12, 12}, {24, 24, 1, 1}, {7, 5, 3, 2}, {5, 7, 5, 7}, {12, 12, 2, 3}, {1, 1, 1, 1}};
    static const int chans[] = {1, 17, 64};
    for (int i = 0; i < 6; i++)
        for (int ci = 0; ci < 3; ci++) {
            begin(c, "avgpool");
            int h = cfg[i][0], w = cfg[i][1], oh = cfg[i][2], ow = cfg[i][3], ch = chans[ci];
            int oy0 = oh > 2 ? 1 : 0, oy1 = oh;
            snprintf(c->what, sizeof c->what, "%dx%d -> %dx%d c=%d rows=[%d,%d)", h, w, oh, ow, ch, oy0, oy1);
            float *in = xmalloc((size_t)h * w * ch * sizeof(float));
            fill_u(c, in, (size_t)h * w * ch, 1.0f, 0.0f);
            size_t n = (size_t)oh * ow * ch;
            float *r = obuf(n);
            float *y = obuf(n);
            kernels_ref.avgpool(oy0, oy1, h, w, ch, oh, ow, in, r);
            t->avgpool(oy0, oy1, h, w, ch, oh, ow, in, y);
            hshape s = {(size_t)oy0 * ow * ch, (size_t)oy1 * ow * ch};
            compare(c, TOL_CONV, 1, y, r, n, span_inside, &s);
            ofree(r);
            ofree(y);
            free(in);
        }
}

/* ---------------------------------------------------------------------------------------- */

/* The comparison helpers must be able to fail: a wrong value, a NaN left by a skipped element,
 * a write outside the range, a write past the buffer and a one-bit difference must all be
 * caught. Returns the number of these that went unnoticed. */
static int self_test(ctx *c)
{
    int missed = 0;
    gshape s = {.m = 2, .n0 = 1, .n1 = 3, .k = 64, .ldc = 4};
    float *ref = obuf(8);
    float *x = obuf(8);
    for (int i = 0; i < 2; i++)
        for (int j = 1; j < 3; j++)
            ref[i * 4 + j] = x[i * 4 + j] = 0.25f * (float)(i + j);
    c->quiet = 1;
    for (int trial = 0; trial < 6; trial++) {
        float save[10];
        memcpy(save, x - 1, sizeof save);
        switch (trial) {
        case 0: x[5] += 10 * tol_bound(TOL_GEMM_F32, x[5], 64); break;
        case 1: x[2] = NAN; break;
        case 2: x[4] = 0; break;       /* column 0: outside the range */
        case 3: x[8] = 1; break;       /* just past the buffer */
        case 4: x[-1] = 1; break;      /* just before it */
        case 5: x[6] = f32_from_bits(f32_bits(x[6]) ^ 1); break;
        }
        int before = c->fails;
        int ok = compare(c, trial == 5 ? TOL_EXACT : TOL_GEMM_F32, 64, x, ref, 8, gemm_inside, &s);
        if (ok || c->fails == before)
            missed++;
        memcpy(x - 1, save, sizeof save);
    }
    int before = c->fails;
    if (!compare(c, TOL_GEMM_F32, 64, x, ref, 8, gemm_inside, &s) || c->fails != before)
        missed++; /* and a correct result must pass */
    c->quiet = 0;
    c->fails = 0;
    ofree(ref);
    ofree(x);
    return missed;
}

static void test_im2col_patch(ctx *c, const kernel_table *t) { test_im2col(c, t); }

typedef void (*slot_test)(ctx *, const kernel_table *);
typedef void (*any_fn)(void);

/* A slot: how to read it from a table and how to test it. */
typedef struct slot {
    const char *name;
    size_t offset;
    slot_test test;
} slot;

#define SLOT(f) {#f, offsetof(kernel_table, f), test_##f}

static const slot slots[] = {
    SLOT(gemm_f32), SLOT(gemm_f16), SLOT(gemm_q8), SLOT(gemm_q4), SLOT(gemm_q8_alone), SLOT(gemm_q4_alone),
    SLOT(quant_q8), SLOT(dequant_row), SLOT(rmsnorm), SLOT(layernorm), SLOT(gelu_erf), SLOT(quick_gelu),
    SLOT(hardswish), SLOT(hardsigmoid), SLOT(relu), SLOT(silu_mul), SLOT(add), SLOT(rope), SLOT(attention),
    SLOT(attention_f16kv), SLOT(attention_q8kv), SLOT(to_f16), SLOT(im2col_patch), SLOT(dwconv3x3),
    SLOT(avgpool),
};

static any_fn slot_fn(const kernel_table *t, const slot *s)
{
    any_fn f;
    memcpy(&f, (const char *)t + s->offset, sizeof f);
    return f;
}

int main(int argc, char **argv)
{
    ctx c = {.seed0 = argc > 1 ? strtoull(argv[1], NULL, 0) : 20240611u};
    /* Optional: one slot by name, or "all" to test even slots equal to the reference (this
     * checks the test itself: the reference must pass against itself, splits included). */
    const char *only = argc > 2 && strcmp(argv[2], "all") ? argv[2] : NULL;
    int all = argc > 2 && !strcmp(argv[2], "all");
    printf("test_kernels: seed %llu (run `test_kernels SEED [slot]` to repeat)\n",
           (unsigned long long)c.seed0);
    int missed = self_test(&c);
    if (missed) {
        fprintf(stderr, "FAIL: the comparison helpers missed %d deliberate errors\n", missed);
        return 1;
    }
    if (test_q4_layout(&c)) {
        fprintf(stderr, "FAIL: the q4 row layout differs from docs/format.md\n");
        return 1;
    }
    char avail[128];
    kernels_available(avail, sizeof avail);
    printf("levels available: %s\n", avail);

    any_fn done[64];
    int ndone = 0;
    int total_fails = 0;
    for (size_t li = 0; li < sizeof known_levels / sizeof known_levels[0]; li++) {
        const char *lv = known_levels[li];
        char buf[160];
        snprintf(buf, sizeof buf, " %s ", avail);
        char key[32];
        snprintf(key, sizeof key, " %s ", lv);
        if (!strstr(buf, key)) {
            printf("SKIP %s: not available on this CPU/build\n", lv);
            continue;
        }
        kernel_table t;
        kernels_init(lv, &t);
        c.level = lv;
        int tested = 0;
        for (size_t si = 0; si < sizeof slots / sizeof slots[0]; si++) {
            any_fn f = slot_fn(&t, &slots[si]);
            if ((f == slot_fn(&kernels_ref, &slots[si]) && !all) || (only && strcmp(only, slots[si].name)))
                continue;
            int seen = 0;
            for (int i = 0; i < ndone; i++)
                seen |= done[i] == f;
            if (seen)
                continue;
            if (ndone < 64)
                done[ndone++] = f;
            int f0 = c.fails;
            long k0 = c.checks;
            slots[si].test(&c, &t);
            printf("%-5s %-7s %-15s %6ld checks%s\n", c.fails == f0 ? "ok" : "FAIL", lv, slots[si].name,
                   c.checks - k0, c.fails == f0 ? "" : "  <--");
            tested++;
        }
        printf("level %s (table \"%s\"): %d slots tested\n", lv, t.level, tested);
    }
    total_fails = c.fails;
    printf("test_kernels: %ld checks, %d failed\n", c.checks, total_fails);
    return total_fails ? 1 : 0;
}
