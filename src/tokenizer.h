/* tokenizer.h: LLaMA SentencePiece BPE, encode and decode, from the vocabulary stored in the
 * weight file (pieces, scores, types). Plain SentencePiece semantics: encode adds the dummy
 * prefix '▁' to non-empty text (when the model says so), never adds BOS/EOS, and falls back to
 * <0xXX> byte pieces for symbols outside the vocabulary. Input text is arbitrary bytes. */
#ifndef VLM_TOKENIZER_H
#define VLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* SentencePiece ModelProto.SentencePiece.Type values. */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };
/* flags (TOK_REMOVE_EXTRA_WHITESPACES: NormalizerSpec.remove_extra_whitespaces, as in the
 * stories260K model: leading/trailing spaces dropped, runs of spaces collapsed) */
enum { TOK_ADD_DUMMY_PREFIX = 1, TOK_BYTE_FALLBACK = 2, TOK_REMOVE_EXTRA_WHITESPACES = 4 };

typedef struct tokenizer tokenizer;

/* Builds a tokenizer over caller-owned arrays that must outlive it (typically the mapped
 * weight file). text[offsets[i]:offsets[i+1]] is piece i. Validates offsets (monotonic,
 * inside text_len), types, that byte pieces <0x00>..<0xFF> exist when byte fallback is on,
 * and duplicate pieces. Returns 0 or a VLM_E* code. */
int tok_create(int n_vocab, const uint8_t *text, size_t text_len,
               const uint32_t *offsets /* (n_vocab + 1) */, const float *scores /* (n_vocab) */,
               const uint8_t *types /* (n_vocab) */, uint32_t flags, tokenizer **out, vlm_error *e);
void tok_free(tokenizer *t);

int tok_n_vocab(const tokenizer *t);
/* Piece bytes of id (not NUL-terminated); NULL if id is out of range. */
const char *tok_piece(const tokenizer *t, int id, size_t *len);

/* The byte a byte piece (<0xXX>) stands for, or -1 if id is not one (or out of range). */
int tok_byte_value(const tokenizer *t, int id);

/* Encodes text[0:len] into ids[0:*n]. VLM_ERANGE if more than cap ids would be produced. */
int tok_encode(const tokenizer *t, const char *text, size_t len, int *ids, size_t cap, size_t *n,
               vlm_error *e);

/* Decodes ids as sentencepiece does: byte pieces become bytes, '▁' becomes ' ', the leading
 * space of the first piece is dropped, control pieces give "", unknown gives " ⁇ ", and
 * invalid UTF-8 becomes U+FFFD. Writes a NUL-terminated string to out (cap bytes, truncation
 * is VLM_ERANGE) and its length to *len. Ids out of range are VLM_ERANGE. */
int tok_decode(const tokenizer *t, const int *ids, size_t n, char *out, size_t cap, size_t *len,
               vlm_error *e);

/* Length of the longest prefix of s[0:len] that does not end inside an incomplete (but so
 * far valid) UTF-8 sequence: what a streaming printer can emit now. */
size_t utf8_stable_prefix(const char *s, size_t len);

#endif
