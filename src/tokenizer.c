/* tokenizer.c: SentencePiece BPE encode/decode over a borrowed vocabulary (see tokenizer.h and
 * docs/tokenizer.md). Owns: the piece hash index, the normalizer (identity rules: whitespace
 * escaping, dummy prefix, optional extra-whitespace removal, invalid UTF-8 byte -> U+FFFD), the
 * O(n log n) merge loop (heap of candidate pairs over a linked list of symbols), byte fallback,
 * decoding with sentencepiece's leading-space rule, and utf8_stable_prefix.
 * Not supported (the converter must refuse such models): precompiled charsmaps, suffix whitespace. */
#include "tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TOK_MAX_VOCAB (1 << 24)
#define TOK_KNOWN_FLAGS (TOK_ADD_DUMMY_PREFIX | TOK_BYTE_FALLBACK | TOK_REMOVE_EXTRA_WHITESPACES)
/* A bound on normalized text so that int symbol indices and 3x growth stay safe. */
#define TOK_MAX_TEXT ((size_t)1 << 28)

static const char SPACE_SYMBOL[] = "\xe2\x96\x81"; /* U+2581, 3 bytes */
static const char REPLACEMENT[] = "\xef\xbf\xbd";  /* U+FFFD, 3 bytes */
static const char UNK_SURFACE[] = " \xe2\x81\x87 "; /* " ⁇ " */

struct tokenizer {
    int n_vocab;
    const uint8_t *text;      /* borrowed piece bytes */
    const uint32_t *offsets;  /* borrowed (n_vocab + 1) */
    const float *scores;      /* borrowed (n_vocab) */
    const uint8_t *types;     /* borrowed (n_vocab) */
    uint32_t flags;
    int32_t *slots;           /* (n_slots) open-addressing table of ids, -1 = empty */
    size_t n_slots;           /* power of two >= 2 * n_vocab */
    int byte_ids[256];        /* id of <0xXX>, -1 when absent */
    int unk_id;
    int has_unused;           /* any TOK_UNUSED piece: merges through them are undone */
    size_t max_user_len;      /* longest TOK_USER_DEFINED piece, 0 if none */
    size_t max_piece_len;     /* longest piece: no id covers more normalized bytes (min 4) */
};

/* ---- piece index ---- */

/* Hash of piece bytes for the open-addressing index. */
static uint64_t hash_bytes(const uint8_t *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Bytes and start of piece id; 0 <= id < n_vocab (validated by tok_create). */
static size_t piece_len(const tokenizer *t, int id) { return t->offsets[id + 1] - t->offsets[id]; }
static const uint8_t *piece_ptr(const tokenizer *t, int id) { return t->text + t->offsets[id]; }

/* Id of the piece equal to s[0:n], or -1. */
static int lookup(const tokenizer *t, const uint8_t *s, size_t n)
{
    size_t mask = t->n_slots - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        int32_t id = t->slots[i];
        if (id < 0)
            return -1;
        if (piece_len(t, id) == n && memcmp(piece_ptr(t, id), s, n) == 0)
            return id;
        i = (i + 1) & mask;
    }
}

/* Pieces that BPE may produce by merging (sentencepiece's "pieces_" map). */
static int is_mergeable(uint8_t type) { return type == TOK_NORMAL || type == TOK_USER_DEFINED || type == TOK_UNUSED; }

/* ---- UTF-8 ---- */

/* Length (1..4) of the well-formed UTF-8 character at s[0:n] (no overlongs, no surrogates,
 * at most U+10FFFF), or 0 if the bytes there are not one. n >= 1. */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return need;
}

size_t utf8_stable_prefix(const char *s, size_t len)
{
    const uint8_t *u = (const uint8_t *)s;
    /* Only the last 3 bytes can belong to an unfinished 4-byte character. */
    size_t stop = len > 3 ? len - 3 : 0;
    for (size_t p = len; p > stop; p--) {
        unsigned c = u[p - 1];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: look further back for its lead */
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        size_t have = len - (p - 1);
        if (need <= have)
            return len; /* complete (or invalid, which never becomes valid) */
        /* Incomplete: hold it back only if the bytes so far can still become valid. */
        if (have >= 2) {
            unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (u[p] < lo || u[p] > hi)
                return len;
        }
        return p - 1;
    }
    return len;
}

/* ---- creation ---- */

/* Value of a byte piece named exactly <0xXX> (uppercase hex, as sentencepiece writes
 * them), or -1 for any other text. */
static int byte_piece_value(const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    const char *h1 = memchr(hex, s[3], 16), *h2 = memchr(hex, s[4], 16);
    if (!h1 || !h2)
        return -1;
    return (int)((h1 - hex) * 16 + (h2 - hex));
}

int tok_byte_value(const tokenizer *t, int id)
{
    if (id < 0 || id >= t->n_vocab || t->types[id] != TOK_BYTE)
        return -1;
    return byte_piece_value(piece_ptr(t, id), piece_len(t, id));
}

/* See tokenizer.h. Also requires exactly one UNKNOWN piece, valid UTF-8 in every non-byte
 * piece, no NaN score, byte pieces only with TOK_BYTE_FALLBACK, and no unknown flag bits. */
int tok_create(int n_vocab, const uint8_t *text, size_t text_len, const uint32_t *offsets, const float *scores,
               const uint8_t *types, uint32_t flags, tokenizer **out, vlm_error *e)
{
    *out = NULL;
    if (n_vocab < 1 || n_vocab > TOK_MAX_VOCAB)
        return vlm_fail(e, VLM_ERANGE, "tokenizer: vocabulary size %d outside 1..%d", n_vocab, TOK_MAX_VOCAB);
    if (!text || !offsets || !scores || !types)
        return vlm_fail(e, VLM_EARG, "tokenizer: NULL vocabulary array");
    if (flags & ~(uint32_t)TOK_KNOWN_FLAGS)
        return vlm_fail(e, VLM_EARG, "tokenizer: unknown flags 0x%x", flags);
    if (offsets[0] > text_len)
        return vlm_fail(e, VLM_EFORMAT, "tokenizer: piece 0 starts at %u, past the %zu text bytes", offsets[0],
                        text_len);
    for (int i = 0; i < n_vocab; i++) {
        if (offsets[i + 1] <= offsets[i] || offsets[i + 1] > text_len)
            return vlm_fail(e, VLM_EFORMAT,
                            "tokenizer: piece %d spans [%u, %u) (expected non-empty and inside %zu text bytes)", i,
                            offsets[i], offsets[i + 1], text_len);
        if (types[i] < TOK_NORMAL || types[i] > TOK_BYTE)
            return vlm_fail(e, VLM_EFORMAT, "tokenizer: piece %d has type %u (expected %d..%d)", i, types[i],
                            TOK_NORMAL, TOK_BYTE);
        if (isnan(scores[i]))
            return vlm_fail(e, VLM_EFORMAT, "tokenizer: piece %d has a NaN score", i);
    }
    tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return vlm_fail(e, VLM_ENOMEM, "tokenizer: out of memory");
    t->n_vocab = n_vocab;
    t->text = text;
    t->offsets = offsets;
    t->scores = scores;
    t->types = types;
    t->flags = flags;
    t->unk_id = -1;
    t->max_piece_len = 4; /* an unknown character (up to 4 bytes) becomes one id */
    for (int b = 0; b < 256; b++)
        t->byte_ids[b] = -1;
    t->n_slots = 16;
    while (t->n_slots < 2 * (size_t)n_vocab)
        t->n_slots *= 2;
    t->slots = malloc(t->n_slots * sizeof *t->slots);
    if (!t->slots) {
        size_t n_slots = t->n_slots;
        free(t);
        return vlm_fail(e, VLM_ENOMEM, "tokenizer: out of memory for a %zu-slot index", n_slots);
    }
    memset(t->slots, 0xff, t->n_slots * sizeof *t->slots);
    int rc = 0;
    for (int id = 0; id < n_vocab && !rc; id++) {
        const uint8_t *s = piece_ptr(t, id);
        size_t n = piece_len(t, id);
        size_t mask = t->n_slots - 1, i = (size_t)hash_bytes(s, n) & mask;
        while (t->slots[i] >= 0) {
            int other = t->slots[i];
            if (piece_len(t, other) == n && memcmp(piece_ptr(t, other), s, n) == 0) {
                rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: pieces %d and %d are both \"%.*s\"", other, id,
                              (int)(n < 64 ? n : 64), (const char *)s);
                break;
            }
            i = (i + 1) & mask;
        }
        if (rc)
            break;
        t->slots[i] = id;
        if (n > t->max_piece_len)
            t->max_piece_len = n;
        switch (types[id]) {
        case TOK_UNKNOWN:
            if (t->unk_id >= 0)
                rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: pieces %d and %d are both of type UNKNOWN", t->unk_id, id);
            t->unk_id = id;
            break;
        case TOK_BYTE: {
            int b = byte_piece_value(s, n);
            if (!(flags & TOK_BYTE_FALLBACK))
                rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: byte piece %d found but byte fallback is off", id);
            else if (b < 0)
                rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: byte piece %d is \"%.*s\" (expected <0xXX>)", id,
                              (int)(n < 64 ? n : 64), (const char *)s);
            else
                t->byte_ids[b] = id;
            break;
        }
        case TOK_UNUSED: t->has_unused = 1; break;
        case TOK_USER_DEFINED:
            if (n > t->max_user_len)
                t->max_user_len = n;
            break;
        default: break;
        }
        /* Decode copies non-byte pieces verbatim, so they must be valid UTF-8 themselves. */
        for (size_t k = 0; !rc && types[id] != TOK_BYTE && k < n;) {
            size_t c = utf8_char_len(s + k, n - k);
            if (!c)
                rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: piece %d has invalid UTF-8 at byte %zu", id, k);
            k += c;
        }
    }
    if (!rc && t->unk_id < 0)
        rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: no piece of type UNKNOWN (sentencepiece requires one)");
    for (int b = 0; !rc && (flags & TOK_BYTE_FALLBACK) && b < 256; b++)
        if (t->byte_ids[b] < 0)
            rc = vlm_fail(e, VLM_EFORMAT, "tokenizer: byte fallback is on but piece <0x%02X> is missing", b);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* Frees the index (never the borrowed arrays); NULL is allowed. */
void tok_free(tokenizer *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

/* Number of pieces. */
int tok_n_vocab(const tokenizer *t) { return t->n_vocab; }

/* See tokenizer.h; len may be NULL. */
const char *tok_piece(const tokenizer *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    if (len)
        *len = piece_len(t, id);
    return (const char *)piece_ptr(t, id);
}

/* ---- encode ---- */

/* Longest user-defined piece that prefixes s[0:n], as a length, or 0. */
static size_t match_user_defined(const tokenizer *t, const uint8_t *s, size_t n)
{
    for (size_t k = n < t->max_user_len ? n : t->max_user_len; k > 0; k--) {
        int id = lookup(t, s, k);
        if (id >= 0 && t->types[id] == TOK_USER_DEFINED)
            return k;
    }
    return 0;
}

/* Appends s[0:k] at out + *n; the caller sized out. */
static void put_bytes(uint8_t *out, size_t *n, const void *s, size_t k)
{
    memcpy(out + *n, s, k);
    *n += k;
}

/* sentencepiece's normalizer with an identity rule set: writes the normalized form of
 * text[0:len] to norm (capacity 3 * len + 3) and returns its length. Spaces become U+2581,
 * each invalid UTF-8 byte becomes U+FFFD, user-defined pieces are copied whole. */
static size_t normalize(const tokenizer *t, const uint8_t *text, size_t len, uint8_t *norm)
{
    int remove_extra = (t->flags & TOK_REMOVE_EXTRA_WHITESPACES) != 0;
    size_t pos = 0, n = 0;
    if (remove_extra)
        while (pos < len && text[pos] == ' ')
            pos++;
    if (pos == len)
        return 0;
    if (t->flags & TOK_ADD_DUMMY_PREFIX)
        put_bytes(norm, &n, SPACE_SYMBOL, 3);
    int prev_space = remove_extra;
    while (pos < len) {
        const uint8_t *unit = text + pos;
        size_t consumed = t->max_user_len ? match_user_defined(t, unit, len - pos) : 0, unit_len;
        if (consumed) {
            unit_len = consumed;
        } else {
            consumed = utf8_char_len(unit, len - pos);
            unit_len = consumed;
            if (!consumed) {
                unit = (const uint8_t *)REPLACEMENT;
                unit_len = 3;
                consumed = 1;
            }
        }
        size_t k = 0;
        if (prev_space)
            while (k < unit_len && unit[k] == ' ')
                k++;
        if (k < unit_len) {
            for (; k < unit_len; k++) {
                if (unit[k] == ' ')
                    put_bytes(norm, &n, SPACE_SYMBOL, 3);
                else
                    norm[n++] = unit[k];
            }
            prev_space = unit[unit_len - 1] == ' ';
        }
        pos += consumed;
        if (!remove_extra)
            prev_space = 0;
    }
    if (remove_extra)
        while (n >= 3 && memcmp(norm + n - 3, SPACE_SYMBOL, 3) == 0)
            n -= 3;
    return n;
}

typedef struct symbol {
    uint32_t start, len; /* bytes norm[start:start+len]; len 0 = merged away */
    int32_t prev, next;  /* neighbours in the list, -1 at the ends */
    uint8_t frozen;      /* user-defined piece: never merged */
} symbol;

typedef struct pair {
    float score;
    int32_t left, right;
    uint32_t len; /* bytes of the merged piece, to detect stale entries */
} pair;

/* Heap order: higher score first, then the leftmost pair (sentencepiece's agenda order). */
static int pair_before(const pair *a, const pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* Binary max-heap over pair_before; heap has room for one more entry. */
static void heap_push(pair *heap, size_t *n, pair p)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = p;
}

/* Removes and returns the best pair; *n > 0. */
static pair heap_pop(pair *heap, size_t *n)
{
    pair top = heap[0], last = heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && pair_before(&heap[c + 1], &heap[c]))
            c++;
        if (!pair_before(&heap[c], &last))
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n)
        heap[i] = last;
    return top;
}

/* Where a merge into an UNUSED piece came from, to split it again at the end. */
typedef struct rev_merge {
    int32_t id; /* -1 = empty slot */
    uint32_t left_start, left_len, right_start, right_len;
} rev_merge;

typedef struct encoder {
    const tokenizer *t;
    const uint8_t *norm;
    symbol *syms;
    pair *heap;
    size_t n_heap;
    rev_merge *rev; /* (n_rev) open-addressing table, only when the vocabulary has UNUSED pieces */
    size_t n_rev;
} encoder;

/* Remembers that UNUSED piece id can be formed from l and r (the last record wins, as in
 * sentencepiece). The table is never full: it has 2x the maximum number of pushes. */
static void rev_record(encoder *en, int id, const symbol *l, const symbol *r)
{
    size_t mask = en->n_rev - 1, i = ((size_t)id * 2654435761u) & mask;
    while (en->rev[i].id >= 0 && en->rev[i].id != id)
        i = (i + 1) & mask;
    en->rev[i] = (rev_merge){id, l->start, l->len, r->start, r->len};
}

/* The record for UNUSED piece id, or NULL if it was never formed by a merge. */
static const rev_merge *rev_find(const encoder *en, int id)
{
    size_t mask = en->n_rev - 1, i = ((size_t)id * 2654435761u) & mask;
    while (en->rev[i].id >= 0) {
        if (en->rev[i].id == id)
            return &en->rev[i];
        i = (i + 1) & mask;
    }
    return NULL;
}

/* Queues the merge of adjacent symbols left and right if their concatenation is a mergeable
 * piece and neither is frozen; -1 for either side means no neighbour. */
static void maybe_add_pair(encoder *en, int left, int right)
{
    if (left < 0 || right < 0)
        return;
    const symbol *l = &en->syms[left], *r = &en->syms[right];
    if (l->frozen || r->frozen)
        return;
    int id = lookup(en->t, en->norm + l->start, (size_t)l->len + r->len);
    if (id < 0 || !is_mergeable(en->t->types[id]))
        return;
    heap_push(en->heap, &en->n_heap, (pair){en->t->scores[id], left, right, l->len + r->len});
    if (en->t->types[id] == TOK_UNUSED)
        rev_record(en, id, l, r);
}

/* Appends the ids of one final piece norm[start:start+len] to ids, as sentencepiece's
 * output stage does: unknown pieces become byte pieces (byte fallback) or one <unk> per run. */
typedef struct emitter {
    int *ids;
    size_t cap, n;
    int prev_unk;
    int overflow;
} emitter;

/* Stores id if there is room; otherwise only counts it and flags the overflow. */
static void emit_id(emitter *em, int id)
{
    if (em->n < em->cap)
        em->ids[em->n] = id;
    else
        em->overflow = 1;
    em->n++;
}

/* Emits final piece s[0:n] whose id is id (-1: not in the vocabulary, i.e. unknown). */
static void emit_piece(const tokenizer *t, emitter *em, const uint8_t *s, size_t n, int id)
{
    if (id < 0)
        id = t->unk_id;
    int is_unk = t->types[id] == TOK_UNKNOWN;
    if (is_unk && (t->flags & TOK_BYTE_FALLBACK)) {
        for (size_t i = 0; i < n; i++)
            emit_id(em, t->byte_ids[s[i]]);
    } else if (!(is_unk && em->prev_unk)) {
        emit_id(em, id);
    }
    em->prev_unk = is_unk;
}

/* Emits the final symbol norm[start:start+len], first undoing merges into UNUSED pieces
 * (depth-first, left part first). stack has room for len entries. */
static void emit_symbol(const encoder *en, emitter *em, uint32_t start, uint32_t len, uint32_t *stack)
{
    const tokenizer *t = en->t;
    size_t top = 0;
    stack[top++] = start, stack[top++] = len;
    while (top) {
        uint32_t l = stack[--top], s = stack[--top];
        int id = lookup(t, en->norm + s, l);
        const rev_merge *rm = id >= 0 && t->types[id] == TOK_UNUSED && en->rev ? rev_find(en, id) : NULL;
        if (!rm) {
            emit_piece(t, em, en->norm + s, l, id);
            continue;
        }
        /* Split pieces are strictly shorter and disjoint, so the stack never exceeds 2 * len. */
        stack[top++] = rm->right_start, stack[top++] = rm->right_len;
        stack[top++] = rm->left_start, stack[top++] = rm->left_len;
    }
}

/* See tokenizer.h. text is arbitrary bytes (len <= 256 MiB; NULL only with len 0); on
 * VLM_ERANGE *n is 0. Each input byte gives at most 3 ids (plus 1 for the dummy prefix). */
int tok_encode(const tokenizer *t, const char *text, size_t len, int *ids, size_t cap, size_t *n, vlm_error *e)
{
    *n = 0;
    if (!text && len)
        return vlm_fail(e, VLM_EARG, "tokenizer: NULL text of %zu bytes", len);
    if (len > TOK_MAX_TEXT)
        return vlm_fail(e, VLM_ERANGE, "tokenizer: text of %zu bytes exceeds the %zu MiB limit", len,
                        TOK_MAX_TEXT >> 20);
    if (len == 0)
        return 0;
    /* Each id covers at most max_piece_len normalized bytes (merges only form pieces of the
     * vocabulary), so text that cannot fit in cap ids is refused before the work arrays (about
     * 60 bytes per byte of text) are allocated: a huge prompt costs no memory. Without
     * whitespace removal the normalized text is never shorter than the input. */
    if (!(t->flags & TOK_REMOVE_EXTRA_WHITESPACES) && len / t->max_piece_len > cap)
        return vlm_fail(e, VLM_ERANGE, "tokenizer: %zu bytes of text need more than the %zu ids allowed", len, cap);
    encoder en = {.t = t};
    uint8_t *norm = malloc(3 * len + 3);
    if (!norm)
        return vlm_fail(e, VLM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    size_t norm_len = normalize(t, (const uint8_t *)text, len, norm);
    if (norm_len / t->max_piece_len > cap) {
        free(norm);
        return vlm_fail(e, VLM_ERANGE, "tokenizer: %zu bytes of text need more than the %zu ids allowed", len, cap);
    }
    en.norm = norm;
    /* Symbols: at most one per byte. Heap: n - 1 initial pairs + 2 per merge < 3n. */
    size_t max_syms = norm_len ? norm_len : 1;
    en.syms = malloc(max_syms * sizeof *en.syms);
    en.heap = malloc(3 * max_syms * sizeof *en.heap);
    uint32_t *stack = malloc(2 * max_syms * sizeof *stack + 2 * sizeof *stack);
    if (t->has_unused) {
        en.n_rev = 16;
        while (en.n_rev < 6 * max_syms)
            en.n_rev *= 2;
        en.rev = malloc(en.n_rev * sizeof *en.rev);
        if (en.rev)
            for (size_t i = 0; i < en.n_rev; i++)
                en.rev[i].id = -1;
    }
    int rc = 0;
    if (!en.syms || !en.heap || !stack || (t->has_unused && !en.rev)) {
        rc = vlm_fail(e, VLM_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
        goto done;
    }
    int n_syms = 0;
    for (size_t pos = 0; pos < norm_len;) {
        size_t k = t->max_user_len ? match_user_defined(t, norm + pos, norm_len - pos) : 0;
        int frozen = k > 0;
        if (!k) {
            /* normalize() wrote valid UTF-8, so the lead byte gives the length. */
            unsigned c = norm[pos];
            k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            if (k > norm_len - pos)
                k = norm_len - pos;
        }
        en.syms[n_syms] = (symbol){(uint32_t)pos, (uint32_t)k, n_syms - 1, -1, (uint8_t)frozen};
        if (n_syms > 0)
            en.syms[n_syms - 1].next = n_syms;
        n_syms++;
        pos += k;
    }
    for (int i = 1; i < n_syms; i++)
        maybe_add_pair(&en, i - 1, i);
    while (en.n_heap) {
        pair top = heap_pop(en.heap, &en.n_heap);
        symbol *l = &en.syms[top.left], *r = &en.syms[top.right];
        if (l->len == 0 || r->len == 0 || l->next != top.right || l->len + r->len != top.len)
            continue; /* stale: one side was merged since this pair was queued */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0)
            en.syms[r->next].prev = top.left;
        r->len = 0;
        maybe_add_pair(&en, l->prev, top.left);
        maybe_add_pair(&en, top.left, l->next);
    }
    emitter em = {.ids = ids, .cap = cap};
    for (int i = n_syms ? 0 : -1; i >= 0; i = en.syms[i].next)
        emit_symbol(&en, &em, en.syms[i].start, en.syms[i].len, stack);
    if (em.overflow)
        rc = vlm_fail(e, VLM_ERANGE, "tokenizer: %zu bytes of text give %zu ids, more than the %zu allowed", len,
                      em.n, cap);
    else
        *n = em.n;
done:
    free(norm);
    free(en.syms);
    free(en.heap);
    free(stack);
    free(en.rev);
    return rc;
}

/* ---- decode ---- */

typedef struct out_buf {
    char *s;
    size_t cap, n;
    int overflow;
} out_buf;

/* Appends p[0:k] unless that leaves no room for the NUL; then only flags the overflow. */
static void out_put(out_buf *o, const void *p, size_t k)
{
    /* Keep one byte for the NUL terminator. */
    if (o->overflow || k > o->cap || o->n + 1 > o->cap - k) {
        o->overflow = 1;
        return;
    }
    memcpy(o->s + o->n, p, k);
    o->n += k;
}

/* Writes the bytes of a run of byte pieces: each well-formed UTF-8 character as is, each
 * byte that does not start one as U+FFFD. */
static void flush_bytes(out_buf *o, const uint8_t *bytes, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char_len(bytes + i, n - i);
        if (k) {
            out_put(o, bytes + i, k);
            i += k;
        } else {
            out_put(o, REPLACEMENT, 3);
            i++;
        }
    }
}

/* See tokenizer.h. cap >= 1; ids may be NULL only with n == 0. On error out is "". */
int tok_decode(const tokenizer *t, const int *ids, size_t n, char *out, size_t cap, size_t *len, vlm_error *e)
{
    *len = 0;
    if (!out || cap == 0)
        return vlm_fail(e, VLM_EARG, "tokenizer: decode needs an output buffer of at least 1 byte");
    out[0] = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return vlm_fail(e, VLM_ERANGE, "tokenizer: id %d at position %zu is outside the vocabulary 0..%d", ids[i],
                            i, t->n_vocab - 1);
    out_buf o = {out, cap, 0, 0};
    uint8_t bytes[64]; /* pending byte-piece run; flushed early only at character boundaries */
    size_t n_bytes = 0;
    int strip_candidate = 1, bos_space_seen = 0;
    int strip_enabled = (t->flags & (TOK_ADD_DUMMY_PREFIX | TOK_REMOVE_EXTRA_WHITESPACES)) != 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        uint8_t type = t->types[id];
        if (type == TOK_BYTE) {
            bytes[n_bytes++] = (uint8_t)byte_piece_value(piece_ptr(t, id), piece_len(t, id));
            if (n_bytes == sizeof bytes) {
                /* Flush all but a possibly unfinished character at the end. */
                size_t keep = n_bytes - utf8_stable_prefix((const char *)bytes, n_bytes);
                flush_bytes(&o, bytes, n_bytes - keep);
                memmove(bytes, bytes + n_bytes - keep, keep);
                n_bytes = keep;
            }
            continue;
        }
        flush_bytes(&o, bytes, n_bytes);
        n_bytes = 0;
        if (bos_space_seen || o.n > 0 || o.overflow)
            strip_candidate = 0;
        bos_space_seen = 0;
        if (type == TOK_CONTROL)
            continue;
        if (type == TOK_UNKNOWN) {
            out_put(&o, UNK_SURFACE, sizeof UNK_SURFACE - 1);
            continue;
        }
        const uint8_t *s = piece_ptr(t, id);
        size_t k = piece_len(t, id);
        if (strip_candidate && strip_enabled && k >= 3 && memcmp(s, SPACE_SYMBOL, 3) == 0) {
            s += 3, k -= 3;
            /* With extra-whitespace removal every leading space is dropped, not just one. */
            bos_space_seen = !(t->flags & TOK_REMOVE_EXTRA_WHITESPACES);
        }
        for (size_t j = 0; j < k;) {
            if (k - j >= 3 && memcmp(s + j, SPACE_SYMBOL, 3) == 0) {
                out_put(&o, " ", 1);
                j += 3;
            } else {
                out_put(&o, s + j, 1);
                j++;
            }
        }
    }
    flush_bytes(&o, bytes, n_bytes);
    if (o.overflow) {
        out[0] = 0;
        return vlm_fail(e, VLM_ERANGE, "tokenizer: decoded text of %zu ids does not fit in %zu bytes", n, cap);
    }
    out[o.n] = 0;
    *len = o.n;
    return 0;
}
