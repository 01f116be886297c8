/* test_stream.c: the text streamed through on_token, piece after piece, must be the answer:
 * every piece valid UTF-8 and their concatenation equal to the result's text. Byte-fallback
 * pieces (<0xE4> <0xBD> <0xA0> for one CJK character) make this non-trivial: while a character
 * is unfinished the decoded text ends in U+FFFD replacement characters that the finished text
 * does not contain. stories260K (512 pieces, 256 of them bytes) sampled at a high temperature
 * emits many byte pieces, also lead bytes of multi-byte characters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "kernels.h"
#include "th.h"
#include "vlm.h"

typedef struct stream {
    char text[8192];
    size_t n;
    int bad_piece; /* pieces that were not valid UTF-8 */
    int overflow;
} stream;

/* 1 if s[0:n] is well-formed UTF-8 (no overlongs, surrogates or values above U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!need || n - i < need)
            return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (need > 1 && (s[i + 1] < lo || s[i + 1] > hi))
            return 0;
        for (size_t k = 2; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += need;
    }
    return 1;
}

/* on_token: appends the piece, notes an invalid one. */
static int collect(void *ctx, int id, const char *text)
{
    stream *st = ctx;
    (void)id;
    size_t k = strlen(text);
    if (!utf8_valid((const unsigned char *)text, k))
        st->bad_piece++;
    if (st->n + k >= sizeof st->text) {
        st->overflow = 1;
        return 0;
    }
    memcpy(st->text + st->n, text, k + 1);
    st->n += k;
    return 0;
}

/* 1 if ids a, b are the byte pieces of a multi-byte lead (0xC2..0xF4) and a continuation
 * byte that may follow it (0x80..0xBF, narrower after E0 ED F0 F4): the unfinished character
 * whose first byte was U+FFFD in the decoded text and is part of a character one id later.
 * In the stories260K vocabulary, as in the LLaMA one, <0x00>..<0xFF> are ids 3..258. */
static int is_lead_and_next(int a, int b)
{
    unsigned x = (unsigned)(a - 3), y = (unsigned)(b - 3);
    if (x < 0xC2 || x > 0xF4 || y > 0xFF)
        return 0;
    unsigned lo = x == 0xE0 ? 0xA0 : x == 0xF0 ? 0x90 : 0x80;
    unsigned hi = x == 0xED ? 0x9F : x == 0xF4 ? 0x8F : 0xBF;
    return y >= lo && y <= hi;
}

int main(void)
{
    char path[1024];
    if (golden_convert("stories260K-hf", WT_F32, -1, path, sizeof path)) {
        TH_CHECK(0, "stories260K conversion failed");
        return th_report("test_stream");
    }
    vlm_model *m;
    vlm_error e;
    int rc = vlm_open(path, 1, &m, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc) {
        remove(path);
        return th_report("test_stream");
    }
    int leads = 0, answers = 0;
    for (int seed = 1; seed <= 300; seed++) {
        stream st = {.n = 0};
        vlm_request rq = {.prompt = "Once upon a time", .max_new_tokens = 64, .ignore_eos = 1,
                          .temperature = 50.0f, .seed = (uint64_t)seed, .on_token = collect, .ctx = &st};
        vlm_result r;
        rc = vlm_generate(m, &rq, &r, &e);
        TH_CHECK(rc == 0, "seed %d: %s", seed, e.msg);
        if (rc)
            break;
        int nul = 0;
        for (int i = 0; i < r.n_ids; i++) {
            leads += i + 1 < r.n_ids && is_lead_and_next(r.ids[i], r.ids[i + 1]);
            nul |= r.ids[i] == 3;
        }
        if (nul) /* <0x00> decodes to a NUL byte, which ends both C strings early: not comparable */
            continue;
        TH_CHECK(r.stop_reason == VLM_STOP_LENGTH && r.n_ids == 64, "seed %d: stop %d after %d ids", seed,
                 r.stop_reason, r.n_ids);
        TH_CHECK(!st.overflow && st.bad_piece == 0, "seed %d: %d streamed pieces are not valid UTF-8", seed,
                 st.bad_piece);
        TH_CHECK(strcmp(st.text, r.text) == 0, "seed %d: streamed text differs from the answer:\n  streamed %s\n  answer   %s",
                 seed, st.text, r.text);
        answers++;
    }
    /* The case under test must occur: lead bytes of multi-byte characters among the samples. */
    TH_CHECK(leads >= 20, "only %d lead bytes followed by a continuation byte in %d answers", leads, answers);
    fprintf(stderr, "  %d answers, %d lead bytes followed by a continuation byte\n", answers, leads);
    vlm_close(m);
    remove(path);
    return th_report("test_stream");
}
