/* sample.c: greedy choice and temperature / top-k / top-p sampling (sample.h).
 *
 * The reference is Hugging Face transformers' sampling path as upstream MobileVLM calls it
 * (generate(do_sample=True, temperature, top_p, num_beams=1)): scores = logits / temperature,
 * then TopKLogitsWarper (removes every token whose score is below the k-th largest, so all
 * tokens tied with the k-th stay), then TopPLogitsWarper over the softmax of what top-k left
 * (renormalised: the smallest set of most probable tokens whose mass reaches top_p, at least
 * one), then a draw from the softmax of the survivors. Where this file differs on purpose:
 *  - top_k 0 and top_p 0 or 1 mean off (the zero-initialised vlm_request samples the whole
 *    vocabulary); transformers' top_p 0 keeps one token, and its GenerationConfig turns
 *    top_k 50 on unless the caller passes top_k=0 (the MobileVLM generation_config.json sets
 *    nothing, so upstream's scripts/inference.py samples with top_k 50; vlm-run defaults to 50
 *    for that reason, the API to what the caller sets).
 *  - Tokens tied in probability at the top-p boundary: the lower ids are kept; transformers'
 *    choice follows torch.sort's unspecified order of equal values.
 *  - The logit maximum is subtracted before dividing by the temperature, so huge logits or a
 *    tiny temperature never overflow (transformers divides first: inf, then NaN, in float32).
 *  - +inf logits take all the probability, shared equally (the limit); a NaN logit, or -inf
 *    everywhere, is an error rather than a draw from nothing (transformers raises too when
 *    sampling; greedy torch.argmax would return the NaN's index). */
#include <math.h>
#include <string.h>

#include "err.h"
#include "sample.h"

/* The seed goes through the splitmix64 finaliser before it becomes xorshift's state: from a
 * small raw state (seed 8) xorshift's first outputs are tiny numbers, so every answer's first
 * draw was ~0 and took the lowest-id token with any probability (stories260K at temperature
 * 0.7: end of text at once for most seeds). */
sample_rng sample_rng_seed(uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (sample_rng){z ? z : 0x2545f4914f6cdd1dull}; /* xorshift's state must not be 0 */
}

/* 53 bits, not 24: with 24, tokens below 2^-24 of the mass (most of a 32000-word tail) were
 * drawn either never or 2^-24 of the time, whatever their probability. */
double sample_uniform(sample_rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (double)(r->s >> 11) * (1.0 / 9007199254740992.0);
}

int sample_check(float temperature, int top_k, float top_p, vlm_error *err)
{
    /* !(x >= 0) also catches NaN; inf would make every finite logit equal and -inf ones NaN. */
    if (!(temperature >= 0) || isinf(temperature))
        return vlm_fail(err, VLM_EARG, "temperature %g: must be a finite number >= 0 (0: greedy)", (double)temperature);
    if (top_k < 0)
        return vlm_fail(err, VLM_EARG, "top_k %d: must be >= 0 (0: off)", top_k);
    if (!(top_p >= 0 && top_p <= 1))
        return vlm_fail(err, VLM_EARG, "top_p %g: must be in [0, 1] (0 or 1: off)", (double)top_p);
    return 0;
}

/* Stable merge sort of ord[0:n] by descending logit: equal logits keep the lower id first,
 * the order transformers' top-k threshold and torch.argmax imply. lg holds no NaN. */
static void sort_by_logit(int *ord, int *tmp, int n, const float *lg)
{
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n;
            int hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = lg[ord[j]] > lg[ord[i]] ? ord[j++] : ord[i++];
            while (i < mid)
                tmp[k++] = ord[i++];
            while (j < hi)
                tmp[k++] = ord[j++];
        }
        memcpy(ord, tmp, (size_t)n * sizeof *ord);
    }
}

/* The first maximum of lg[0:n] into *best; VLM_ERANGE naming the first NaN. */
static int first_max(const float *lg, int n, int *best, vlm_error *err)
{
    int b = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(lg[i]))
            return vlm_fail(err, VLM_ERANGE, "the logit of token %d is NaN: the model's output is broken", i);
        if (lg[i] > lg[b])
            b = i;
    }
    *best = b;
    return 0;
}

int sample_dist(const float *lg, int n, float temperature, int top_k, float top_p, float *prob, int *kept,
                int *tmp, int *n_kept, vlm_error *err)
{
    int best = 0;
    int rc = first_max(lg, n, &best, err);
    if (rc)
        return rc;
    float m = lg[best];
    if (m == -INFINITY)
        return vlm_fail(err, VLM_ERANGE, "every one of the %d logits is -inf: nothing to sample from", n);
    /* Unnormalised weights exp((l - max) / T), in double: their sums below decide top-p. */
    for (int i = 0; i < n; i++) {
        if (m == INFINITY)
            prob[i] = lg[i] == INFINITY ? 1.0f : 0.0f;
        else
            prob[i] = (float)exp(((double)lg[i] - m) / temperature);
        kept[i] = i;
    }
    int use_k = top_k > 0 && top_k < n;
    int use_p = top_p > 0 && top_p < 1;
    int k = n;
    if (use_k || use_p) {
        /* Sorting all 32000 costs ~1 ms, small next to a forward pass. */
        sort_by_logit(kept, tmp, n, lg);
        if (use_k) {
            k = top_k;
            while (k < n && lg[kept[k]] == lg[kept[k - 1]]) /* ties with the k-th stay */
                k++;
        }
        if (use_p) {
            /* top-p sees the distribution top-k left, renormalised: mass relative to its sum. */
            double zk = 0;
            for (int i = 0; i < k; i++)
                zk += prob[kept[i]];
            double cut = top_p * zk, cum = 0;
            int j = 0;
            while (j < k) {
                cum += prob[kept[j++]];
                if (cum >= cut) /* the mass before token j-1 was below top_p: it stays, no more */
                    break;
            }
            k = j;
        }
    }
    double z = 0;
    for (int i = 0; i < k; i++)
        z += prob[kept[i]];
    /* Removed tokens get 0 (after the sums, which read them through kept[]). */
    for (int i = k; i < n; i++)
        prob[kept[i]] = 0;
    for (int i = 0; i < k; i++)
        prob[kept[i]] = (float)(prob[kept[i]] / z);
    *n_kept = k;
    return 0;
}

int sample_next(const float *lg, int n, float temperature, int top_k, float top_p, float *prob, int *kept,
                int *tmp, sample_rng *r, int *id, vlm_error *err)
{
    if (!(temperature > 0))
        return first_max(lg, n, id, err);
    int k;
    int rc = sample_dist(lg, n, temperature, top_k, top_p, prob, kept, tmp, &k, err);
    if (rc)
        return rc;
    double total = 0;
    for (int i = 0; i < k; i++)
        total += prob[kept[i]];
    double x = sample_uniform(r) * total, acc = 0;
    int last = kept[0]; /* the most probable kept token when filtering, else some kept token */
    for (int i = 0; i < k; i++) {
        float p = prob[kept[i]];
        if (p <= 0)
            continue; /* a zero-probability token is never drawn, not even by rounding */
        acc += p;
        last = kept[i];
        if (x < acc) {
            *id = kept[i];
            return 0;
        }
    }
    *id = last; /* x < total always; this only guards against rounding */
    return 0;
}
