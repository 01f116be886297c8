/* spm.h: parser of SentencePiece tokenizer.model files (a ModelProto protobuf), written from
 * the protobuf wire format: only the fields the LLaMA tokenizer needs are kept; unknown fields
 * are skipped; every length is checked against the bytes left. */
#ifndef VLM_SPM_H
#define VLM_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct spm_model {
    int n_pieces;
    uint8_t *text;       /* all pieces concatenated (UTF-8), owned */
    size_t text_len;
    uint32_t *offsets;   /* (n_pieces + 1): piece i = text[offsets[i]:offsets[i+1]] */
    float *scores;       /* (n_pieces) */
    uint8_t *types;      /* (n_pieces) TOK_NORMAL.. TOK_BYTE (default TOK_NORMAL) */
    int model_type;      /* TrainerSpec.model_type: 1 unigram, 2 bpe, 3 word, 4 char */
    int byte_fallback;   /* TrainerSpec.byte_fallback */
    int add_dummy_prefix;          /* NormalizerSpec.add_dummy_prefix (default true) */
    int remove_extra_whitespaces;  /* NormalizerSpec (default true) */
    int unk_id, bos_id, eos_id, pad_id; /* TrainerSpec (defaults 0, 1, 2, -1) */
    /* Added for converters that must refuse what the tokenizer cannot reproduce: */
    int escape_whitespaces;          /* NormalizerSpec (default true) */
    int treat_whitespace_as_suffix;  /* TrainerSpec (default false) */
    size_t charsmap_len;             /* NormalizerSpec.precompiled_charsmap bytes; 0 = identity */
    char normalizer_name[64];        /* NormalizerSpec.name (truncated), "" when absent */
    int has_denormalizer;            /* ModelProto.denormalizer_spec present */
} spm_model;

int spm_parse(const uint8_t *buf, size_t len, const char *name, spm_model *out, vlm_error *e);
int spm_load_file(const char *path, spm_model *out, vlm_error *e);
void spm_free(spm_model *m);

#endif
