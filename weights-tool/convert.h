/* convert.h: Hugging Face MobileVLM / LLaMA directory -> .vlm weight file. */
#ifndef VLM_CONVERT_H
#define VLM_CONVERT_H

#include <stdint.h>

#include "err.h"

typedef struct convert_opts {
    const char *model_dir;   /* config.json, tokenizer.model, weights */
    const char *vision_dir;  /* CLIP directory; NULL: found from mm_vision_tower */
    const char *out_path;
    int quant;               /* WT_F32 / WT_F16 / WT_Q8 / WT_Q4 for the LLM matrices */
    int vision_quant;        /* same for vision tower + projector; -1: q8 when quant is q4, else quant */
    /* Progress: called after each tensor (done of total, bytes written so far); may be NULL. */
    void (*progress)(void *ctx, int done, int total, const char *name, uint64_t bytes);
    void *progress_ctx;
} convert_opts;

int convert_model(const convert_opts *o, vlm_error *e);

/* Parses "f32" / "f16" / "q8" / "q4"; -1 if unknown. */
int parse_quant(const char *s);

#endif
