/* synth.h: .vlm files with the real shapes of the released models and random weights, for
 * benchmarks without a download. */
#ifndef VLM_SYNTH_H
#define VLM_SYNTH_H

#include <stdint.h>

#include "err.h"
#include "wfile.h"

/* Fills cfg with the hyperparameters of a preset ("mobilevlm-v2-1.7b", ...); -1 if unknown. */
int synth_preset(const char *name, wf_config *cfg);
/* Names of all presets, space separated. */
const char *synth_preset_names(void);

/* tokenizer_model: NULL for the synthetic vocabulary (specials, bytes, filler pieces), or a
 * SentencePiece tokenizer.model with cfg->vocab_size pieces (prompts then tokenize as with the
 * real model, so prompt lengths in benchmarks are realistic). */
int synth_write(const char *path, const wf_config *cfg, int quant, int vision_quant, uint64_t seed,
                const char *tokenizer_model,
                void (*progress)(void *ctx, int done, int total, const char *name, uint64_t bytes),
                void *progress_ctx, vlm_error *e);

#endif
