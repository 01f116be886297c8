/* test_sample.c: sampling (src/sample.c) against Hugging Face transformers' sampling path
 * (temperature, then top-k keeping ties with the k-th, then top-p over the renormalised rest,
 * min_tokens_to_keep 1). The expected distributions were computed with a float64 re-derivation
 * of transformers' TemperatureLogitsWarper / TopKLogitsWarper / TopPLogitsWarper; they are
 * stored here as data. Also: draws follow the distribution and never leave it, the same seed
 * gives the same tokens, greedy takes the first maximum, and bad logits or settings give an
 * error naming the value. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"
#include "th.h"

#define MAXV 12

typedef struct dist_case {
    const char *name;
    int n;
    float logits[MAXV];
    float temperature;
    int top_k;
    float top_p;
    double want[MAXV]; /* probability per token, 0 for removed ones */
} dist_case;

static const dist_case cases[] = {
    {"ties with the k-th stay", 6, {3.0f, 2.0f, 2.0f, 2.0f, 1.0f, 0.0f}, 1.0f, 2, 1.0f,
     {0.475366886, 0.174877705, 0.174877705, 0.174877705, 0, 0}},
    /* 0.4 / 0.75 = 0.533 >= 0.5 of what top-k left: one token (the whole vocabulary's mass,
     * 0.4 < 0.5, kept two before) */
    {"top-p over the renormalised top-k", 3, {-0.9162907600402832f, -1.0498220920562744f, -1.3862943649291992f},
     1.0f, 2, 0.5f, {1, 0, 0}},
    {"temperature, top-k, top-p", 12,
     {0.3f, -1.2f, 2.5f, 0.9f, 2.4f, -0.5f, 1.7f, 0.0f, 2.5f, -3.0f, 1.1f, 0.6f}, 0.7f, 5, 0.9f,
     {0, 0, 0.313894418, 0, 0.27210817, 0, 0.100102993, 0, 0.313894418, 0, 0, 0}},
    {"-inf logits", 6, {1.0f, -INFINITY, 0.5f, -INFINITY, 2.0f, 0.1f}, 2.0f, 0, 0.95f,
     {0.24599337, 0, 0.191579829, 0, 0.405574502, 0.156852298}},
    /* differences of logits near FLT_MAX overflow to -inf, which exp takes to 0: no NaN */
    {"huge logits", 5, {3e38f, -3e38f, 2.9e38f, 1e38f, 0.0f}, 1e38f, 0, 0.9f, {0.524979185, 0, 0.475020815, 0, 0}},
    /* the boundary falls inside equal logits: the lower ids stay (transformers: torch.sort's order) */
    {"equal logits at the top-p boundary", 8, {0}, 1.0f, 0, 0.5f, {0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0}},
    /* one float step apart: (l - max) / T keeps the 0.119 difference exactly */
    {"tiny temperature", 3, {1.0f, 1.0000001192092896f, 0.5f}, 1e-6f, 0, 1.0f, {0.47023292, 0.52976708, 0}},
    {"top_k above the vocabulary", 3, {0.5f, 1.5f, -0.5f}, 1.0f, 7, 1.0f, {0.244728471, 0.665240956, 0.0900305732}},
    {"top_p 0.1 keeps one", 4, {0.5f, 1.5f, -0.5f, 1.4f}, 1.0f, 0, 0.1f, {0, 1, 0, 0}},
    {"top_k 1", 4, {0.5f, 1.5f, -0.5f, 1.4f}, 3.0f, 1, 1.0f, {0, 1, 0, 0}},
};

/* Each stored case: the exact set left and its probabilities (float rounding only). */
static void test_cases(void)
{
    float prob[MAXV];
    int kept[MAXV], tmp[MAXV];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const dist_case *d = &cases[c];
        int nk = -1;
        vlm_error e = {0};
        int rc = sample_dist(d->logits, d->n, d->temperature, d->top_k, d->top_p, prob, kept, tmp, &nk, &e);
        TH_CHECK(rc == 0, "%s: %s", d->name, e.msg);
        if (rc)
            continue;
        int want_n = 0;
        for (int i = 0; i < d->n; i++) {
            want_n += d->want[i] > 0;
            TH_CHECK((prob[i] > 0) == (d->want[i] > 0) && fabs(prob[i] - d->want[i]) < 2e-6,
                     "%s: token %d has probability %.9g, want %.9g", d->name, i, prob[i], d->want[i]);
        }
        /* kept[] lists every token with probability (and may list some whose exp underflowed) */
        double in_kept = 0;
        for (int i = 0; i < nk && i < d->n; i++)
            in_kept += kept[i] >= 0 && kept[i] < d->n ? prob[kept[i]] : 2;
        TH_CHECK(nk >= want_n && nk <= d->n && fabs(in_kept - 1) < 1e-6, "%s: %d tokens kept (want %d), mass %.9g",
                 d->name, nk, want_n, in_kept);
    }
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A 32000-token vocabulary: the kept set is the prefix by logit, top-k's count, and top-p's
 * smallest prefix whose mass (of what top-k left) reaches top_p. */
static void test_large(void)
{
    enum { N = 32000 };
    float *lg = malloc(N * sizeof *lg), *prob = malloc(N * sizeof *prob), *q = malloc(N * sizeof *q);
    int *kept = malloc(N * sizeof *kept), *tmp = malloc(N * sizeof *tmp);
    if (!lg || !prob || !q || !kept || !tmp) {
        TH_CHECK(0, "out of memory");
        goto out;
    }
    uint64_t s = 77;
    for (int i = 0; i < N; i++) /* a few hundred distinct values: many ties */
        lg[i] = (float)((int)(xs(&s) % 400) - 300) / 40.0f;
    static const struct { float t; int k; float p; } set[] = {
        {0.7f, 40, 0.9f}, {1.0f, 0, 0.95f}, {2.0f, 1000, 0.5f}, {0.1f, 2, 1.0f}, {100.0f, 0, 0.1f}};
    for (size_t c = 0; c < sizeof set / sizeof *set; c++) {
        int nk;
        vlm_error e = {0};
        /* q: what top-k alone leaves, the distribution top-p reads */
        int rc = sample_dist(lg, N, set[c].t, set[c].k, 1, q, kept, tmp, &nk, &e);
        if (!rc)
            rc = sample_dist(lg, N, set[c].t, set[c].k, set[c].p, prob, kept, tmp, &nk, &e);
        TH_CHECK(rc == 0, "case %zu: %s", c, e.msg);
        if (rc)
            continue;
        double sum = 0, q_before_last = 0, q_kept = 0;
        float lo = INFINITY;
        for (int i = 0; i < nk; i++) {
            sum += prob[kept[i]];
            q_kept += q[kept[i]];
            if (i < nk - 1)
                q_before_last += q[kept[i]];
            lo = lg[kept[i]] < lo ? lg[kept[i]] : lo;
        }
        TH_CHECK(fabs(sum - 1) < 1e-5, "case %zu: kept mass %.9g", c, sum);
        int above = 0, at_lo = 0;
        for (int i = 0; i < N; i++) {
            above += lg[i] > lo;
            at_lo += lg[i] == lo;
            if (lg[i] > lo)
                TH_CHECK(prob[i] > 0, "case %zu: token %d (logit %g) above the cut was removed", c, i, lg[i]);
            if (lg[i] < lo)
                TH_CHECK(prob[i] == 0, "case %zu: token %d (logit %g) below the cut was kept", c, i, lg[i]);
        }
        if (set[c].p >= 1) /* top-k alone: all the ties of the k-th, never fewer than k */
            TH_CHECK(nk == above + at_lo && above < set[c].k && nk >= set[c].k,
                     "case %zu: %d kept, %d above the k-th, %d tied", c, nk, above, at_lo);
        else /* top-p: the smallest prefix (by logit) of top-k's distribution reaching top_p */
            TH_CHECK(q_before_last < set[c].p + 1e-6 && q_kept >= set[c].p - 1e-6,
                     "case %zu: %d kept, mass %.9g, before the last %.9g", c, nk, q_kept, q_before_last);
    }
out:
    free(lg);
    free(prob);
    free(q);
    free(kept);
    free(tmp);
}

/* Draws: frequencies within 5 standard deviations of the stored distribution, none outside
 * it; the same seed repeats the same tokens. */
static void test_draws(void)
{
    const dist_case *d = &cases[2];
    float prob[MAXV];
    int kept[MAXV], tmp[MAXV];
    long count[MAXV] = {0};
    enum { DRAWS = 200000 };
    sample_rng r = sample_rng_seed(5);
    for (int i = 0; i < DRAWS; i++) {
        int id = -1;
        vlm_error e = {0};
        int rc = sample_next(d->logits, d->n, d->temperature, d->top_k, d->top_p, prob, kept, tmp, &r, &id, &e);
        if (rc || id < 0 || id >= d->n) {
            TH_CHECK(0, "draw %d: rc %d id %d: %s", i, rc, id, e.msg);
            return;
        }
        count[id]++;
    }
    for (int i = 0; i < d->n; i++) {
        double want = d->want[i] * DRAWS, sd = sqrt(DRAWS * d->want[i] * (1 - d->want[i]));
        TH_CHECK(d->want[i] > 0 ? fabs(count[i] - want) <= 5 * sd + 1 : count[i] == 0,
                 "token %d drawn %ld times of %d, want %.0f", i, count[i], DRAWS, want);
    }
    int a[64], b[64];
    for (int pass = 0; pass < 2; pass++) {
        sample_rng rr = sample_rng_seed(1234);
        for (int i = 0; i < 64; i++) {
            vlm_error e = {0};
            sample_next(d->logits, d->n, 1.0f, 0, 1.0f, prob, kept, tmp, &rr, pass ? &b[i] : &a[i], &e);
        }
    }
    TH_CHECK(memcmp(a, b, sizeof a) == 0, "seed 1234 gave different tokens on a second run");
    sample_rng z = sample_rng_seed(0);
    TH_CHECK(z.s != 0, "seed 0 must start a working generator");
    double u = sample_uniform(&z);
    TH_CHECK(u >= 0 && u < 1, "uniform %.17g", u);
    /* Every answer draws its first token with the first uniform of its seed, and callers pass
     * small seeds (1, 2, ...): those first draws must be spread over [0, 1) like any others
     * (raw xorshift from a small state gave ~1e-9 for all of them). */
    int low = 0;
    double mean = 0;
    for (uint64_t seed = 0; seed < 1000; seed++) {
        sample_rng s = sample_rng_seed(seed);
        double x = sample_uniform(&s);
        low += x < 0.01;
        mean += x / 1000;
    }
    TH_CHECK(low <= 30 && mean > 0.45 && mean < 0.55, "first draws of seeds 0..999: %d below 0.01, mean %.3f", low,
             mean);
}

/* Greedy is torch.argmax: the first maximum; +inf logits share all the mass; NaN logits,
 * all -inf and bad settings are errors naming the value. */
static void test_edges(void)
{
    float prob[MAXV];
    int kept[MAXV], tmp[MAXV], id = -1, nk;
    vlm_error e = {0};
    sample_rng r = sample_rng_seed(9);
    const float ties[] = {1, 3, 2, 3};
    TH_CHECK(sample_next(ties, 4, 0, 0, 1, prob, kept, tmp, &r, &id, &e) == 0 && id == 1, "greedy gave %d", id);
    const float inf[] = {1, INFINITY, 2, INFINITY};
    TH_CHECK(sample_dist(inf, 4, 0.5f, 0, 1, prob, kept, tmp, &nk, &e) == 0 && prob[1] == 0.5f && prob[3] == 0.5f &&
                 prob[0] == 0 && prob[2] == 0,
             "+inf logits: %g %g %g %g", prob[0], prob[1], prob[2], prob[3]);
    const float nan[] = {1, NAN, 2};
    TH_CHECK(sample_next(nan, 3, 0, 0, 1, prob, kept, tmp, &r, &id, &e) == VLM_ERANGE && strstr(e.msg, "token 1"),
             "NaN greedy: %s", e.msg);
    TH_CHECK(sample_next(nan, 3, 1, 0, 1, prob, kept, tmp, &r, &id, &e) == VLM_ERANGE && strstr(e.msg, "NaN"),
             "NaN sampled: %s", e.msg);
    const float none[] = {-INFINITY, -INFINITY};
    TH_CHECK(sample_next(none, 2, 1, 0, 1, prob, kept, tmp, &r, &id, &e) == VLM_ERANGE, "all -inf: %s", e.msg);
    TH_CHECK(sample_check(0, 0, 0, &e) == 0 && sample_check(0.2f, 50, 1, &e) == 0, "valid settings: %s", e.msg);
    TH_CHECK(sample_check(INFINITY, 0, 1, &e) == VLM_EARG && strstr(e.msg, "temperature inf"), "%s", e.msg);
    TH_CHECK(sample_check(NAN, 0, 1, &e) == VLM_EARG && strstr(e.msg, "temperature"), "%s", e.msg);
    TH_CHECK(sample_check(-0.5f, 0, 1, &e) == VLM_EARG && strstr(e.msg, "-0.5"), "%s", e.msg);
    TH_CHECK(sample_check(1, -3, 1, &e) == VLM_EARG && strstr(e.msg, "top_k -3"), "%s", e.msg);
    TH_CHECK(sample_check(1, 0, 1.5f, &e) == VLM_EARG && strstr(e.msg, "top_p 1.5"), "%s", e.msg);
    TH_CHECK(sample_check(1, 0, NAN, &e) == VLM_EARG && strstr(e.msg, "top_p"), "%s", e.msg);
}

int main(void)
{
    test_cases();
    test_large();
    test_draws();
    test_edges();
    return th_report("test_sample");
}
