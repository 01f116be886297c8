/* fuzz_tokenizer.c: fuzz target for the BPE tokenizer (src/tokenizer.c). The LLaMA vocabulary
 * is loaded once from tests/data/tokenizer/tokenizer.model (run from the repository root, or
 * set VLM_TEST_DATA). Each input is encoded, every id must be in range, the ids are decoded,
 * and for valid UTF-8 without U+2581 (which decodes to a space) the round trip must give the
 * input back exactly. The same runs on a variant of the vocabulary where some pieces are made
 * UNUSED (merge intermediates that are split again) or USER_DEFINED (atomic), to reach those
 * paths with real data; the round trip holds there too. utf8_stable_prefix is checked as well. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spm.h"
#include "tokenizer.h"

static spm_model model;
static tokenizer *tok, *variant;
static uint8_t *variant_types; /* (model.n_pieces) */

static void load_once(void)
{
    if (tok)
        return;
    const char *root = getenv("VLM_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/tokenizer.model", root ? root : "tests/data");
    vlm_error e;
    if (spm_load_file(path, &model, &e) != 0 ||
        tok_create(model.n_pieces, model.text, model.text_len, model.offsets, model.scores, model.types,
                   TOK_ADD_DUMMY_PREFIX | TOK_BYTE_FALLBACK, &tok, &e) != 0) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, e.msg);
        abort();
    }
    variant_types = malloc((size_t)model.n_pieces);
    if (!variant_types)
        abort();
    for (int i = 0; i < model.n_pieces; i++) {
        uint8_t ty = model.types[i];
        if (ty == TOK_NORMAL && i % 5 == 0)
            ty = TOK_UNUSED;
        else if (ty == TOK_NORMAL && i % 97 == 1)
            ty = TOK_USER_DEFINED;
        variant_types[i] = ty;
    }
    if (tok_create(model.n_pieces, model.text, model.text_len, model.offsets, model.scores, variant_types,
                   TOK_ADD_DUMMY_PREFIX | TOK_BYTE_FALLBACK, &variant, &e) != 0) {
        fprintf(stderr, "fuzz_tokenizer: variant vocabulary: %s\n", e.msg);
        abort();
    }
}

/* 1 if s[0:n] is well-formed UTF-8 without U+2581, judged by a simple independent decoder. */
static int plain_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i], cp;
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || k > n - i)
            return 0;
        cp = k == 1 ? c : c & (0x7F >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581)
            return 0;
        i += k;
    }
    return 1;
}

/* Encodes, checks ids, decodes and checks the round trip with one tokenizer. */
static void run(const tokenizer *t, const uint8_t *data, size_t size, int round_trip)
{
    size_t cap = 3 * size + 8, n = 0, len = 0;
    int *ids = malloc(cap * sizeof *ids);
    char *out = malloc(4 * cap + 16);
    vlm_error e;
    if (!ids || !out)
        abort();
    if (tok_encode(t, (const char *)data, size, ids, cap, &n, &e) != 0)
        __builtin_trap(); /* the capacity is always enough: at most 3 ids per input byte + 1 */
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= model.n_pieces)
            __builtin_trap();
    if (tok_decode(t, ids, n, out, 4 * cap + 16, &len, &e) != 0)
        __builtin_trap();
    if (round_trip && (len != size || memcmp(out, data, size) != 0))
        __builtin_trap();
    free(ids);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once();
    int plain = plain_utf8(data, size);
    run(tok, data, size, plain);
    run(variant, data, size, plain);
    if (utf8_stable_prefix((const char *)data, size) > size)
        __builtin_trap();
    return 0;
}
