/* test_tokenizer.c: tests of the SentencePiece model parser (weights-tool/spm.c) and the BPE
 * tokenizer (src/tokenizer.c): every case of tokenizer/cases.json exactly (sentencepiece's own
 * ids and decoded text), the stories260K prompts, the MobileVLM prompt of the spec (§6.3),
 * invalid UTF-8, empty and 100 kB inputs, UNUSED/USER_DEFINED/unk-run rules on a small vocabulary,
 * whitespace removal, decode errors, utf8_stable_prefix and tok_create validation. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "spm.h"
#include "th.h"
#include "tokenizer.h"

/* Builds a tokenizer over an spm_model (which must outlive it) with the model's own flags. */
static tokenizer *tok_from_spm(const spm_model *m)
{
    uint32_t flags = (m->add_dummy_prefix ? TOK_ADD_DUMMY_PREFIX : 0) | (m->byte_fallback ? TOK_BYTE_FALLBACK : 0) |
                     (m->remove_extra_whitespaces ? TOK_REMOVE_EXTRA_WHITESPACES : 0);
    tokenizer *t = NULL;
    vlm_error e = {0};
    int rc = tok_create(m->n_pieces, m->text, m->text_len, m->offsets, m->scores, m->types, flags, &t, &e);
    TH_CHECK(rc == 0, "tok_create: %s", e.msg);
    return t;
}

static int ids_equal(const int *a, size_t na, const int *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void format_ids(char *buf, size_t cap, const int *ids, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && used + 16 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? "," : "", ids[i]);
}

/* Encodes text[0:len] and compares with want[0:n_want]; where names the case. */
static void check_encode(const tokenizer *t, const char *text, size_t len, const int *want, size_t n_want,
                         const char *where)
{
    size_t cap = 4 * len + 8, n = 0;
    int *ids = malloc(cap * sizeof *ids);
    vlm_error e = {0};
    int rc = tok_encode(t, text, len, ids, cap, &n, &e);
    char got_s[512], want_s[512];
    format_ids(got_s, sizeof got_s, ids, rc ? 0 : n);
    format_ids(want_s, sizeof want_s, want, n_want);
    TH_CHECK(rc == 0 && ids_equal(ids, n, want, n_want), "%s: got [%s], want [%s] %s", where, got_s, want_s,
             rc ? e.msg : "");
    free(ids);
}

/* Decodes ids and compares with want[0:want_len]. */
static void check_decode(const tokenizer *t, const int *ids, size_t n, const char *want, size_t want_len,
                         const char *where)
{
    size_t cap = 16 * n + 64, len = 0;
    char *out = malloc(cap);
    vlm_error e = {0};
    int rc = tok_decode(t, ids, n, out, cap, &len, &e);
    TH_CHECK(rc == 0 && len == want_len && memcmp(out, want, len) == 0 && out[len] == 0,
             "%s: decoded \"%.*s\" (%zu bytes), want \"%.*s\" %s", where, (int)(rc ? 0 : len), out, len,
             (int)want_len, want, rc ? e.msg : "");
    free(out);
}

/* Reads a JSON array of integers into a new array; returns NULL if v is not one. */
static int *json_ids(const json_value *v, size_t *n)
{
    if (!v || v->type != JSON_ARRAY)
        return NULL;
    int *ids = malloc((v->len + 1) * sizeof *ids);
    for (size_t i = 0; i < v->len; i++)
        ids[i] = v->items[i]->type == JSON_NUMBER ? (int)v->items[i]->number : -999;
    *n = v->len;
    return ids;
}

static void test_spm_llama(const spm_model *m)
{
    TH_CHECK(m->n_pieces == 32000, "n_pieces %d", m->n_pieces);
    TH_CHECK(m->model_type == 2 && m->byte_fallback == 1 && m->add_dummy_prefix == 1 &&
                 m->remove_extra_whitespaces == 0 && m->escape_whitespaces == 1,
             "specs: type %d bf %d adp %d rew %d esc %d", m->model_type, m->byte_fallback, m->add_dummy_prefix,
             m->remove_extra_whitespaces, m->escape_whitespaces);
    TH_CHECK(m->unk_id == 0 && m->bos_id == 1 && m->eos_id == 2 && m->pad_id == -1, "ids %d %d %d %d", m->unk_id,
             m->bos_id, m->eos_id, m->pad_id);
    TH_CHECK(strcmp(m->normalizer_name, "identity") == 0 && m->charsmap_len == 0 && !m->has_denormalizer &&
                 !m->treat_whitespace_as_suffix,
             "normalizer '%s' charsmap %zu", m->normalizer_name, m->charsmap_len);
    TH_CHECK(m->types[0] == TOK_UNKNOWN && m->types[1] == TOK_CONTROL && m->types[2] == TOK_CONTROL, "special types");
    int bytes_ok = 1;
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        int id = 3 + b;
        bytes_ok &= m->types[id] == TOK_BYTE && m->offsets[id + 1] - m->offsets[id] == 6 &&
                    memcmp(m->text + m->offsets[id], want, 6) == 0;
    }
    TH_CHECK(bytes_ok, "byte pieces 3..258");
    TH_CHECK(m->scores[259] == -1e9f && m->scores[260] == -1.0f && m->scores[31999] == -31740.0f,
             "scores %g %g %g", m->scores[259], m->scores[260], m->scores[31999]);
    TH_CHECK(m->offsets[260] - m->offsets[259] == 6 && memcmp(m->text + m->offsets[259], "\xe2\x96\x81\xe2\x96\x81", 6) == 0,
             "piece 259 is ▁▁");
    TH_CHECK(m->offsets[32000] == m->text_len, "text length %zu", m->text_len);
}

static void test_spm_errors(void)
{
    spm_model m;
    vlm_error e = {0};
    /* A model whose trainer_spec ends in a tag without its value (field 37, varint). */
    static const uint8_t model[] = {
        0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02, /* piece <unk>, type 2 */
        0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0x00, 0x00, 0x80, 0xbf,   /* piece "a", score -1 */
        0x12, 0x04, 0x18, 0x02, 0xa8, 0x02,                          /* trainer_spec: model_type 2, ... */
    };
    static const uint8_t good[] = {0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
                                   0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0x00, 0x00, 0x80, 0xbf,
                                   0x12, 0x02, 0x18, 0x02};
    int rc = spm_parse(good, sizeof good, "good.model", &m, &e);
    TH_CHECK(rc == 0 && m.n_pieces == 2 && m.model_type == 2 && m.scores[1] == -1.0f && m.types[0] == TOK_UNKNOWN &&
                 m.types[1] == TOK_NORMAL && m.add_dummy_prefix == 1 && m.remove_extra_whitespaces == 1 &&
                 m.byte_fallback == 0 && m.pad_id == -1,
             "small model: %s", rc ? e.msg : "fields");
    spm_free(&m);
    int all_fail = 1;
    for (size_t len = 1; len < sizeof good; len++) {
        /* Cutting exactly between top-level fields leaves a valid (smaller) model. */
        if (len == 11 || len == 21)
            continue;
        if (spm_parse(good, len, "cut.model", &m, &e) == 0) {
            all_fail = 0;
            fprintf(stderr, "truncation to %zu bytes accepted\n", len);
            spm_free(&m);
        }
    }
    TH_CHECK(all_fail, "truncations rejected");
    TH_CHECK(spm_parse(model, sizeof model, "bad.model", &m, &e) == VLM_EFORMAT && strstr(e.msg, "bad.model"),
             "truncated varint: %s", e.msg);
    static const uint8_t group[] = {0x0b, 0x0c};
    TH_CHECK(spm_parse(group, sizeof group, "g.model", &m, &e) == VLM_EFORMAT && strstr(e.msg, "group"), "group: %s",
             e.msg);
    static const uint8_t long_len[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
    TH_CHECK(spm_parse(long_len, sizeof long_len, "l.model", &m, &e) == VLM_EFORMAT && strstr(e.msg, "exceeds"),
             "huge length: %s", e.msg);
    static const uint8_t empty_piece[] = {0x0a, 0x02, 0x18, 0x01};
    TH_CHECK(spm_parse(empty_piece, sizeof empty_piece, "e.model", &m, &e) == VLM_EFORMAT, "empty piece: %s", e.msg);
    static const uint8_t bad_type[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x07};
    TH_CHECK(spm_parse(bad_type, sizeof bad_type, "t.model", &m, &e) == VLM_EFORMAT && strstr(e.msg, "type 7"),
             "type 7: %s", e.msg);
    static const uint8_t wrong_wire[] = {0x0a, 0x05, 0x0a, 0x01, 'a', 0x10, 0x01}; /* score as varint */
    TH_CHECK(spm_parse(wrong_wire, sizeof wrong_wire, "w.model", &m, &e) == VLM_EFORMAT && strstr(e.msg, "wire"),
             "wrong wire type: %s", e.msg);
    static const uint8_t overlong[] = {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    TH_CHECK(spm_parse(overlong, sizeof overlong, "o.model", &m, &e) == VLM_EFORMAT, "11-byte varint: %s", e.msg);
    TH_CHECK(spm_parse(good, 0, "z.model", &m, &e) == VLM_EFORMAT && strstr(e.msg, "no pieces"), "empty: %s", e.msg);
    TH_CHECK(spm_load_file(TH_DATA("no/such.model"), &m, &e) == VLM_EIO, "missing file");
}

static void test_cases(const tokenizer *t)
{
    vlm_error e = {0};
    json_doc *d = json_parse_file(TH_DATA("tokenizer/cases.json"), 8 << 20, &e);
    TH_CHECK(d != NULL, "cases.json: %s", e.msg);
    if (!d)
        return;
    const json_value *cases = json_get(json_root(d), "cases");
    const json_value *decode_cases = json_get(json_root(d), "decode_cases");
    TH_CHECK(cases && cases->type == JSON_ARRAY && cases->len == 300, "300 encode cases");
    TH_CHECK(decode_cases && decode_cases->type == JSON_ARRAY && decode_cases->len == 284, "284 decode cases");
    size_t n_ok = 0;
    for (size_t i = 0; cases && i < cases->len; i++) {
        const json_value *c = cases->items[i];
        const json_value *text = json_get(c, "text"), *decoded = json_get(c, "decoded"), *pieces = json_get(c, "pieces");
        size_t n_want = 0;
        int *want = json_ids(json_get(c, "ids"), &n_want);
        if (!text || text->type != JSON_STRING || !want || !decoded || decoded->type != JSON_STRING || !pieces) {
            TH_CHECK(0, "case %zu malformed", i);
            free(want);
            continue;
        }
        char where[96];
        snprintf(where, sizeof where, "encode case %zu \"%.40s\"", i, text->str);
        int before = th_failures;
        check_encode(t, text->str, text->len, want, n_want, where);
        snprintf(where, sizeof where, "decode of encode case %zu", i);
        check_decode(t, want, n_want, decoded->str, decoded->len, where);
        for (size_t k = 0; k < n_want && k < pieces->len; k++) {
            size_t plen = 0;
            const char *p = tok_piece(t, want[k], &plen);
            const json_value *wp = pieces->items[k];
            TH_CHECK(p && wp->type == JSON_STRING && plen == wp->len && memcmp(p, wp->str, plen) == 0,
                     "case %zu piece %zu", i, k);
        }
        n_ok += th_failures == before;
        free(want);
    }
    TH_CHECK(n_ok == 300, "%zu of 300 encode cases exact", n_ok);
    n_ok = 0;
    for (size_t i = 0; decode_cases && i < decode_cases->len; i++) {
        const json_value *c = decode_cases->items[i];
        const json_value *text = json_get(c, "text");
        size_t n = 0;
        int *ids = json_ids(json_get(c, "ids"), &n);
        if (!text || text->type != JSON_STRING || !ids) {
            TH_CHECK(0, "decode case %zu malformed", i);
            free(ids);
            continue;
        }
        char where[64];
        snprintf(where, sizeof where, "decode case %zu", i);
        int before = th_failures;
        check_decode(t, ids, n, text->str, text->len, where);
        n_ok += th_failures == before;
        free(ids);
    }
    TH_CHECK(n_ok == 284, "%zu of 284 decode cases exact", n_ok);
    json_free(d);
}

/* stories260K: its own 512-piece model (remove_extra_whitespaces on). In expected_greedy.json
 * n_prompt_ids counts the BOS, so the prompt ids are ids_with_bos[1 : n_prompt_ids]. */
static void test_stories(void)
{
    spm_model m;
    vlm_error e = {0};
    int rc = spm_load_file(TH_DATA("fixtures/stories260K-hf/tokenizer.model"), &m, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return;
    TH_CHECK(m.n_pieces == 512 && m.model_type == 2 && m.byte_fallback && m.add_dummy_prefix &&
                 m.remove_extra_whitespaces,
             "stories specs: %d pieces, rew %d", m.n_pieces, m.remove_extra_whitespaces);
    tokenizer *t = tok_from_spm(&m);
    json_doc *d = json_parse_file(TH_DATA("fixtures/stories260K-hf/expected_greedy.json"), 1 << 20, &e);
    TH_CHECK(d != NULL, "%s", e.msg);
    const json_value *cases = d ? json_get(json_root(d), "cases") : NULL;
    TH_CHECK(cases && cases->len == 6, "6 stories cases");
    for (size_t i = 0; t && cases && i < cases->len; i++) {
        const json_value *c = cases->items[i];
        const char *prompt = json_get_str(c, "prompt");
        int64_t n_prompt = 0;
        size_t n_all = 0;
        int *all = json_ids(json_get(c, "ids_with_bos"), &n_all);
        if (!prompt || !all || !json_get_int(c, "n_prompt_ids", 1, (int64_t)n_all, &n_prompt) || all[0] != 1) {
            TH_CHECK(0, "stories case %zu malformed", i);
            free(all);
            continue;
        }
        char where[96];
        snprintf(where, sizeof where, "stories prompt %zu \"%s\"", i, prompt);
        check_encode(t, prompt, strlen(prompt), all + 1, (size_t)n_prompt - 1, where);
        /* Generation stops at BOS: decode the generated ids before it and compare with text. */
        const char *text = json_get_str(c, "text");
        size_t n_gen = 0;
        while ((size_t)n_prompt + n_gen < n_all && all[n_prompt + (int64_t)n_gen] != 1)
            n_gen++;
        if (text && *prompt == 0) {
            snprintf(where, sizeof where, "stories greedy text %zu", i);
            check_decode(t, all + n_prompt, n_gen, text, strlen(text), where);
        }
        free(all);
    }
    /* Extra whitespace: leading, trailing and repeated spaces vanish. */
    int want[64];
    size_t n_want = 0, n = 0;
    int ids[64];
    rc = tok_encode(t, "Lily and Ben", 12, want, 64, &n_want, &e);
    TH_CHECK(rc == 0 && n_want == 4, "%s", e.msg);
    rc = tok_encode(t, "   Lily  and     Ben  ", 22, ids, 64, &n, &e);
    TH_CHECK(rc == 0 && ids_equal(ids, n, want, n_want), "spaces collapse: %zu vs %zu ids", n, n_want);
    rc = tok_encode(t, "    ", 4, ids, 64, &n, &e);
    TH_CHECK(rc == 0 && n == 0, "only spaces give no ids (%zu)", n);
    /* Decode drops every leading space with this model. */
    int spaces[] = {0, 0};
    int sp = -1;
    for (int id = 0; id < tok_n_vocab(t); id++) {
        size_t len;
        const char *p = tok_piece(t, id, &len);
        if (len == 3 && memcmp(p, "\xe2\x96\x81", 3) == 0)
            sp = id;
    }
    TH_CHECK(sp >= 0, "stories has a ▁ piece");
    if (sp >= 0) {
        spaces[0] = sp, spaces[1] = want[0];
        check_decode(t, spaces, 2, "Lily", 4, "stories decode ▁ ▁Lily");
    }
    json_free(d);
    tok_free(t);
    spm_free(&m);
}

/* The spec's §6.3 example: chunks around "<image>" encoded separately, BOS once, -200 between. */
static void test_mobilevlm_prompt(const tokenizer *t)
{
    static const char chunk0[] = "A chat between a curious user and an artificial intelligence assistant. The assistant "
                                 "gives helpful, detailed, and polite answers to the user's questions. USER: ";
    static const char chunk1[] = "\nWhat is in the image? ASSISTANT:";
    static const int want[49] = {1,     319,   13563, 1546,  263,   12758, 1404,  322,   385,   23116, 21082, 20255, 29889,
                                 450,   20255, 4076,  8444,  29892, 13173, 29892, 322,   1248,  568,   6089,  304,   278,
                                 1404,  29915, 29879, 5155,  29889, 3148,  1001,  29901, 29871, -200,  29871, 13,    5618,
                                 338,   297,   278,   1967,  29973, 319,   1799,  9047,  13566, 29901};
    int ids[128];
    size_t n = 0, n1 = 0;
    vlm_error e = {0};
    ids[n++] = 1;
    int rc = tok_encode(t, chunk0, strlen(chunk0), ids + n, 100, &n1, &e);
    n += n1;
    ids[n++] = -200;
    rc |= tok_encode(t, chunk1, strlen(chunk1), ids + n, 100, &n1, &e);
    n += n1;
    char got[1024];
    format_ids(got, sizeof got, ids, n);
    TH_CHECK(rc == 0 && ids_equal(ids, n, want, 49), "MobileVLM prompt: %zu ids [%s]", n, got);
}

static void test_invalid_utf8(const tokenizer *t)
{
    /* sentencepiece's normalizer turns each byte that does not start a well-formed character
     * into U+FFFD (EF BF BD) and consumes one byte; LLaMA has the piece U+FFFD (id 30140). */
    static const struct {
        const char *text;
        const char *same_as; /* the same text with U+FFFD in place of each bad byte */
    } cases[] = {
        {"\xff", "\xef\xbf\xbd"},
        {"a\x80z", "a\xef\xbf\xbdz"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                               /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},               /* surrogate */
        {"x\xe4\xbd", "x\xef\xbf\xbd\xef\xbf\xbd"},                             /* truncated 你 */
        {"\xf4\x90\x80\x80!", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!"}, /* > U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int want[64];
        size_t n_want = 0;
        vlm_error e = {0};
        int rc = tok_encode(t, cases[i].same_as, strlen(cases[i].same_as), want, 64, &n_want, &e);
        TH_CHECK(rc == 0, "%s", e.msg);
        char where[64];
        snprintf(where, sizeof where, "invalid UTF-8 case %zu", i);
        check_encode(t, cases[i].text, strlen(cases[i].text), want, n_want, where);
    }
    static const int ff[] = {29871, 26308}; /* "��" is itself a piece */
    check_encode(t, "\xff\xfe", 2, ff, 2, "0xFF 0xFE");
    static const int ff1[] = {29871, 30140};
    check_encode(t, "\xff", 1, ff1, 2, "lone 0xFF");
    /* NUL bytes are ordinary characters: <0x00> is id 3. */
    static const int nul[] = {29871, 3};
    check_encode(t, "\0", 1, nul, 2, "NUL byte");
    /* Decode: byte pieces that do not form UTF-8 give one U+FFFD per byte. */
    static const int bad_bytes[] = {3 + 0xE4, 3 + 0xBD, 3 + 'A', 3 + 0xFF};
    check_decode(t, bad_bytes, 4, "\xef\xbf\xbd\xef\xbf\xbd" "A" "\xef\xbf\xbd", 10, "invalid byte run");
    /* Long byte runs (the decoder buffers them in blocks): 63 'A' bytes then a 4-byte emoji
     * that straddles the block boundary, then 100 bytes 0xFF. */
    int run[63 + 4 + 100];
    char want[63 + 4 + 300];
    size_t n = 0, wn = 0;
    for (int i = 0; i < 63; i++)
        run[n++] = 3 + 'A', want[wn++] = 'A';
    static const uint8_t emoji[] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 4; i++)
        run[n++] = 3 + emoji[i], want[wn++] = (char)emoji[i];
    for (int i = 0; i < 100; i++) {
        run[n++] = 3 + 0xFF;
        memcpy(want + wn, "\xef\xbf\xbd", 3);
        wn += 3;
    }
    check_decode(t, run, n, want, wn, "long byte run");
    /* 30 emoji in a row: encoded by byte fallback (no emoji piece), decoded back exactly. */
    char text[121];
    for (int i = 0; i < 30; i++)
        memcpy(text + 4 * i, emoji, 4);
    int ids[200];
    size_t n_ids = 0, back_len = 0;
    vlm_error e = {0};
    char back[200];
    int rc = tok_encode(t, text, 120, ids, 200, &n_ids, &e);
    TH_CHECK(rc == 0 && n_ids == 121 && ids[0] == 29871 && ids[1] == 3 + 0xF0 && ids[120] == 3 + 0x80,
             "30 emoji: %zu ids", n_ids);
    rc = tok_decode(t, ids, n_ids, back, sizeof back, &back_len, &e);
    TH_CHECK(rc == 0 && back_len == 120 && memcmp(back, text, 120) == 0, "30 emoji round trip");
}

static void test_edges(const tokenizer *t)
{
    vlm_error e = {0};
    int ids[8];
    size_t n = 99;
    TH_CHECK(tok_encode(t, "", 0, ids, 8, &n, &e) == 0 && n == 0, "empty text gives no ids");
    TH_CHECK(tok_encode(t, NULL, 0, ids, 0, &n, &e) == 0 && n == 0, "NULL empty text");
    TH_CHECK(tok_encode(t, "Hello world, this is long", 25, ids, 2, &n, &e) == VLM_ERANGE, "cap overflow: %s", e.msg);
    char out[64];
    size_t len = 0;
    int bad[] = {15043, 32000};
    TH_CHECK(tok_decode(t, bad, 2, out, sizeof out, &len, &e) == VLM_ERANGE && strstr(e.msg, "32000"),
             "id 32000: %s", e.msg);
    int neg[] = {-1};
    TH_CHECK(tok_decode(t, neg, 1, out, sizeof out, &len, &e) == VLM_ERANGE, "id -1");
    int hello[] = {15043, 3186}; /* "Hello world" */
    TH_CHECK(tok_decode(t, hello, 2, out, 11, &len, &e) == VLM_ERANGE, "decode truncation: no room for NUL");
    TH_CHECK(tok_decode(t, hello, 2, out, 12, &len, &e) == 0 && len == 11 && strcmp(out, "Hello world") == 0,
             "decode exact fit: %s", out);
    TH_CHECK(tok_decode(t, hello, 0, out, 1, &len, &e) == 0 && len == 0 && out[0] == 0, "decode of nothing");
    size_t plen;
    TH_CHECK(tok_piece(t, 32000, &plen) == NULL && tok_piece(t, -1, &plen) == NULL, "tok_piece range");
    TH_CHECK(tok_n_vocab(t) == 32000, "n_vocab");
}

/* A 100 kB prompt must encode fast (O(n log n)) and round-trip; so must a single repeated
 * character (all pairs tie) and random bytes. */
static void test_long(const tokenizer *t)
{
    size_t len = 100000;
    char *text = malloc(len + 1), *back = malloc(4 * len + 16);
    int *ids = malloc((4 * len + 16) * sizeof *ids);
    static const char sentence[] = "The quick brown fox jumps over the lazy dog; 数字 123 😀 naïve café.\n";
    for (size_t i = 0; i < len; i++)
        text[i] = sentence[i % (sizeof sentence - 1)];
    len -= len % (sizeof sentence - 1); /* whole sentences: valid UTF-8 */
    vlm_error e = {0};
    size_t n = 0, back_len = 0;
    clock_t t0 = clock();
    int rc = tok_encode(t, text, len, ids, 4 * len + 16, &n, &e);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    TH_CHECK(rc == 0 && n > len / 8, "100 kB encode: %s, %zu ids", e.msg, n);
    TH_CHECK(secs < 1.0, "100 kB encode took %.3f s", secs);
    rc = tok_decode(t, ids, n, back, 4 * len + 16, &back_len, &e);
    TH_CHECK(rc == 0 && back_len == len && memcmp(back, text, len) == 0, "100 kB round trip");
    /* Each sentence encodes the same way after the first (which carries the dummy prefix). */
    int one[256];
    size_t n_one = 0;
    tok_encode(t, sentence, sizeof sentence - 1, one, 256, &n_one, &e);
    TH_CHECK(n_one > 10 && n_one <= 64, "sentence ids %zu", n_one);

    memset(text, 'a', len);
    t0 = clock();
    rc = tok_encode(t, text, len, ids, 4 * len + 16, &n, &e);
    secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    TH_CHECK(rc == 0 && secs < 1.0, "100 kB of 'a': %.3f s, %zu ids", secs, n);
    rc = tok_decode(t, ids, n, back, 4 * len + 16, &back_len, &e);
    TH_CHECK(rc == 0 && back_len == len && memcmp(back, text, len) == 0, "'a' round trip");

    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        text[i] = (char)(x >> 24);
    }
    t0 = clock();
    rc = tok_encode(t, text, len, ids, 4 * len + 16, &n, &e);
    secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    TH_CHECK(rc == 0 && secs < 1.0, "100 kB random bytes: %.3f s, %zu ids", secs, n);
    free(text);
    free(back);
    free(ids);
}

static void test_stable_prefix(void)
{
    static const struct {
        const char *s;
        size_t len, want;
    } cases[] = {
        {"", 0, 0},
        {"abc", 3, 3},
        {"a\xe4", 2, 1},              /* 你 started */
        {"a\xe4\xbd", 3, 1},          /* 你 two of three bytes */
        {"a\xe4\xbd\xa0", 4, 4},      /* 你 complete */
        {"\xf0\x9f\x98", 3, 0},       /* 😀 three of four */
        {"\xf0\x9f\x98\x80", 4, 4},
        {"a\xff", 2, 2},              /* invalid: emit now */
        {"a\xe0\x80", 3, 3},          /* E0 80 can never be valid */
        {"a\xed\xa0", 3, 3},          /* surrogate prefix: never valid */
        {"a\xf4\x90", 3, 3},          /* > U+10FFFF */
        {"a\xc3", 2, 1},
        {"a\x80", 2, 2},              /* stray continuation */
        {"\xe2\x96\x81\xe2\x96", 5, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = utf8_stable_prefix(cases[i].s, cases[i].len);
        TH_CHECK(got == cases[i].want, "stable prefix case %zu: %zu, want %zu", i, got, cases[i].want);
    }
}

/* A hand-made vocabulary for the rules the LLaMA model does not exercise. */
typedef struct mini_vocab {
    uint8_t text[256];
    uint32_t offsets[17];
    float scores[16];
    uint8_t types[16];
    int n;
    size_t len;
} mini_vocab;

static void mini_add(mini_vocab *v, const char *piece, float score, uint8_t type)
{
    size_t k = strlen(piece);
    memcpy(v->text + v->len, piece, k);
    v->offsets[v->n] = (uint32_t)v->len;
    v->len += k;
    v->offsets[v->n + 1] = (uint32_t)v->len;
    v->scores[v->n] = score;
    v->types[v->n] = type;
    v->n++;
}

static void test_mini(void)
{
    mini_vocab v = {0};
    mini_add(&v, "<unk>", 0, TOK_UNKNOWN); /* 0 */
    mini_add(&v, "<s>", 0, TOK_CONTROL);   /* 1 */
    mini_add(&v, "\xe2\x96\x81", -1, TOK_NORMAL); /* 2: ▁ */
    mini_add(&v, "a", -2, TOK_NORMAL);     /* 3 */
    mini_add(&v, "b", -3, TOK_NORMAL);     /* 4 */
    mini_add(&v, "c", -4, TOK_NORMAL);     /* 5 */
    mini_add(&v, "ab", -0.5f, TOK_UNUSED); /* 6: only an intermediate */
    mini_add(&v, "abc", -0.7f, TOK_NORMAL);/* 7 */
    mini_add(&v, "aa", -0.6f, TOK_NORMAL); /* 8 */
    mini_add(&v, "<img>", 0, TOK_USER_DEFINED); /* 9 */
    tokenizer *t = NULL;
    vlm_error e = {0};
    int rc = tok_create(v.n, v.text, v.len, v.offsets, v.scores, v.types, TOK_ADD_DUMMY_PREFIX, &t, &e);
    TH_CHECK(rc == 0, "mini: %s", e.msg);
    if (rc)
        return;
    static const int w_ab[] = {2, 3, 4};       /* "ab" is UNUSED: split back into a b */
    check_encode(t, "ab", 2, w_ab, 3, "UNUSED resegmentation");
    static const int w_abc[] = {2, 7};         /* through the UNUSED "ab" to "abc" */
    check_encode(t, "abc", 3, w_abc, 2, "merge through UNUSED");
    static const int w_aaa[] = {2, 8, 3};      /* equal scores: leftmost pair first */
    check_encode(t, "aaa", 3, w_aaa, 3, "leftmost tie");
    static const int w_unk[] = {2, 0, 3};      /* a run of unknown characters is one <unk> */
    check_encode(t, "xyz\xe4\xbd\xa0" "a", 7, w_unk, 3, "unk run");
    static const int w_user[] = {2, 3, 9, 4};  /* user-defined pieces are atomic */
    check_encode(t, "a<img>b", 7, w_user, 4, "user-defined");
    static const int w_user2[] = {2, 9, 9};
    check_encode(t, "<img><img>", 10, w_user2, 3, "user-defined twice");
    check_decode(t, w_unk, 3, " \xe2\x81\x87 a", 6, "unk decode");
    static const int ctl[] = {1, 2, 3};
    check_decode(t, ctl, 3, "a", 1, "control then leading ▁ dropped");
    static const int two_sp[] = {2, 2, 3};
    check_decode(t, two_sp, 3, " a", 2, "only the first ▁ is dropped");
    tok_free(t);

    rc = tok_create(v.n, v.text, v.len, v.offsets, v.scores, v.types, TOK_ADD_DUMMY_PREFIX | TOK_BYTE_FALLBACK, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "<0x00>"), "byte fallback without byte pieces: %s", e.msg);
    rc = tok_create(v.n, v.text, v.len, v.offsets, v.scores, v.types, 0x100, &t, &e);
    TH_CHECK(rc == VLM_EARG, "unknown flag");
    mini_vocab dup = v;
    mini_add(&dup, "aa", -9, TOK_NORMAL);
    rc = tok_create(dup.n, dup.text, dup.len, dup.offsets, dup.scores, dup.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "both"), "duplicate: %s", e.msg);
    mini_vocab bad = v;
    bad.types[4] = 9;
    rc = tok_create(bad.n, bad.text, bad.len, bad.offsets, bad.scores, bad.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "type 9"), "bad type: %s", e.msg);
    bad = v;
    bad.offsets[3] = bad.offsets[4];
    rc = tok_create(bad.n, bad.text, bad.len, bad.offsets, bad.scores, bad.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT, "empty piece: %s", e.msg);
    rc = tok_create(v.n, v.text, v.len - 1, v.offsets, v.scores, v.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT, "offsets past text: %s", e.msg);
    bad = v;
    bad.types[0] = TOK_NORMAL;
    rc = tok_create(bad.n, bad.text, bad.len, bad.offsets, bad.scores, bad.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "UNKNOWN"), "no unk: %s", e.msg);
    bad = v;
    bad.scores[3] = NAN;
    rc = tok_create(bad.n, bad.text, bad.len, bad.offsets, bad.scores, bad.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "NaN"), "NaN score: %s", e.msg);
    bad = v;
    bad.text[bad.offsets[5]] = 0xff;
    rc = tok_create(bad.n, bad.text, bad.len, bad.offsets, bad.scores, bad.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "UTF-8"), "invalid UTF-8 piece: %s", e.msg);
    bad = v;
    bad.types[5] = TOK_BYTE;
    rc = tok_create(bad.n, bad.text, bad.len, bad.offsets, bad.scores, bad.types, 0, &t, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "byte"), "byte piece without fallback: %s", e.msg);
    rc = tok_create(0, v.text, v.len, v.offsets, v.scores, v.types, 0, &t, &e);
    TH_CHECK(rc == VLM_ERANGE, "empty vocabulary");
}

int main(void)
{
    spm_model m;
    vlm_error e = {0};
    int rc = spm_load_file(TH_DATA("tokenizer/tokenizer.model"), &m, &e);
    TH_CHECK(rc == 0, "LLaMA tokenizer.model: %s", e.msg);
    if (rc == 0) {
        test_spm_llama(&m);
        tokenizer *t = tok_from_spm(&m);
        if (t) {
            test_cases(t);
            test_mobilevlm_prompt(t);
            test_invalid_utf8(t);
            test_edges(t);
            test_long(t);
        }
        tok_free(t);
        spm_free(&m);
    }
    test_spm_errors();
    test_stories();
    test_stable_prefix();
    test_mini();
    return th_report("test_tokenizer");
}
