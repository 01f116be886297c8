/* sample.h: turning the logits of one position into the next token, with the semantics of
 * Hugging Face transformers' sampling path (the one upstream MobileVLM generates with):
 * greedy is the first maximum (torch.argmax); sampling applies temperature, then top-k, then
 * top-p (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, min_tokens_to_keep 1)
 * and draws from what is left. Differences from transformers are listed in sample.c. */
#ifndef VLM_SAMPLE_H
#define VLM_SAMPLE_H

#include <stdint.h>

#include "vlm.h"

/* The seeded generator (xorshift64); the same seed gives the same draws on every platform. */
typedef struct sample_rng {
    uint64_t s;
} sample_rng;

/* A generator started from seed (0 stands for a fixed non-zero seed: xorshift needs one). */
sample_rng sample_rng_seed(uint64_t seed);

/* A uniform double in [0, 1) with 53 random bits; advances r. */
double sample_uniform(sample_rng *r);

/* Checks settings from the caller: temperature finite and >= 0 (0: greedy), top_k >= 0
 * (0: off), top_p in [0, 1] (0 or 1: off). VLM_EARG naming the value otherwise. */
int sample_check(float temperature, int top_k, float top_p, vlm_error *err);

/* The distribution a draw is made from, for temperature > 0 (finite) and checked settings:
 * prob[0:n] gets each token's probability (0 for the tokens top-k / top-p removed),
 * kept[0:*n_kept] the ids of the tokens left (by descending logit, lower id first among
 * equal logits, when top-k or top-p is on; in id order otherwise). tmp is (n) scratch.
 * VLM_ERANGE when a logit is NaN or every logit is -inf: there is no distribution. */
int sample_dist(const float *logits, int n, float temperature, int top_k, float top_p, float *prob, int *kept,
                int *tmp, int *n_kept, vlm_error *err);

/* The next token: the first maximum when temperature is 0, else a draw from sample_dist with
 * r. prob, kept and tmp are (n) scratch. Errors as sample_dist (NaN logits also when greedy). */
int sample_next(const float *logits, int n, float temperature, int top_k, float top_p, float *prob, int *kept,
                int *tmp, sample_rng *r, int *id, vlm_error *err);

#endif
