/* test_prompt.c: the ids of conversations that the other tests do not build, against the ids
 * upstream MobileVLM feeds its model: conv "v1" rendered by get_prompt() (SeparatorStyle.TWO,
 * where an empty message is written as the bare role and ":"), the earlier answers kept as
 * outputs.strip() (Python's whitespace), tokenizer_image_token over the slow LLaMA tokenizer
 * (special-token strings become their ids). The expected lists were computed once by a script
 * written from upstream's conversation.py and utils.py with the sentencepiece library (see
 * tests/data/README.md, "test_prompt"); they are data here, so the test needs no Python.
 * Fixture: tiny-v2 (its real 32000-piece LLaMA tokenizer). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "golden.h"
#include "th.h"
#include "vlm.h"
#include "kernels.h"

#define IMG (-200)
#define MAXIDS 512

/* The 31 ids every conversation starts with: BOS and the system prompt ("A chat ... questions.").
 * Each case's list below is what follows it. */
static const int sys_ids[] = {1,     319,  13563, 1546,  263,   12758, 1404,  322,  385,  23116, 21082,
                              20255, 29889, 450,  20255, 4076,  8444,  29892, 13173, 29892, 322,  1248,
                              568,   6089,  304,  278,   1404,  29915, 29879, 5155,  29889};

typedef struct turn_in {
    int image; /* 1: this turn shows a photo */
    const char *question, *answer;
} turn_in;

typedef struct prompt_case {
    const char *what;
    turn_in turns[2];
    int n_turns;
    const char *question; /* the pending question */
    int image;            /* the pending question shows a photo */
    int n;                /* ids after sys_ids */
    int ids[64];
} prompt_case;

static const prompt_case cases[] = {
    /* "USER:ASSISTANT:": get_prompt() writes an empty user message as the role and ":" only. */
    {"empty question, no photo", {{0}}, 0, "", 0, 7, {3148, 1001, 29901, 22933, 9047, 13566, 29901}},
    /* An empty answer: "ASSISTANT:USER: ...", no "</s>" and no space. */
    {"empty answer",
     {{1, "What is in the image?", ""}},
     1,
     "What colour is it?",
     0,
     30,
     {3148, 1001, 29901, 29871, IMG,   29871, 13,   5618, 338,  297,   278,  1967,  29973, 319,  1799,
      9047, 13566, 29901, 11889, 29901, 1724,  12384, 338, 372,  29973, 319,   1799, 9047,  13566, 29901}},
    /* U+00A0 and U+3000 around an answer are stripped as str.strip() does; an empty question
     * in the middle of a chat is "USER:" too. */
    {"Unicode whitespace around an answer, empty question",
     {{1, "Hi", "\xc2\xa0ok\xe3\x80\x80"}, {0, "", "Sure."}},
     2,
     "Bye",
     0,
     35,
     {3148,  1001,  29901, 29871, IMG,  29871, 13,   18567, 319,  1799,  9047, 13566,
      29901, 3431,  2,     3148,  1001, 29901, 22933, 9047, 13566, 29901, 18585, 29889,
      2,     3148,  1001,  29901, 2648, 29872, 319,  1799, 9047,  13566, 29901}},
    /* <s>, </s>, <unk> typed in questions and answers are the special ids, the text around
     * them encoded piece by piece (each with its dummy prefix). */
    {"special-token strings typed by the user",
     {{1, "x</s></s>y", "ends </s>"}, {0, "<unk>", "ok"}},
     2,
     "<s>bos",
     0,
     44,
     {3148,  1001, 29901, 29871, IMG,   29871, 13,    29916, 2,     2,     343,  319,  1799,  9047, 13566,
      29901, 10614, 29871, 2,    2,     3148,  1001,  29901, 29871, 0,     29871, 319, 1799,  9047,  13566,
      29901, 3431, 2,     3148,  1001, 29901, 29871, 1,     13601, 319,   1799, 9047, 13566, 29901}},
    /* A second photo in turn 2: its own "<image>\n" in that turn; U+2003 and U+2028 stripped. */
    {"a second photo in turn 2",
     {{1, "What is in the image?", "A man ironing."}, {1, "And this one?", "\xe2\x80\x83" "A cat.\xe2\x80\xa8"}},
     2,
     "Which is bigger?",
     0,
     56,
     {3148,  1001, 29901, 29871, IMG,   29871, 13,   5618,  338,   297,  278,  1967, 29973, 319,
      1799,  9047, 13566, 29901, 319,   767,   13977, 292,  29889, 2,     3148, 1001, 29901, 29871,
      IMG,   29871, 13,   2855,  445,   697,   29973, 319,  1799,  9047,  13566, 29901, 319, 6635,
      29889, 2,    3148,  1001,  29901, 8449,  338,   16600, 29973, 319,  1799, 9047, 13566, 29901}},
    /* The one documented difference: "<image>" typed in a question is text, not an image slot
     * (upstream's prompt.split('<image>') would add a second -200). */
    {"<image> typed by the user stays text",
     {{0}},
     0,
     "<image>",
     1,
     15,
     {3148, 1001, 29901, 29871, IMG, 29871, 13, 29966, 3027, 29958, 319, 1799, 9047, 13566, 29901}},
};

/* Index of the first difference between got[0:n] and want[0:m] (min(n, m) if one is a prefix). */
static int first_diff(const int *got, int n, const int *want, int m)
{
    int i = 0;
    while (i < n && i < m && got[i] == want[i])
        i++;
    return i;
}

/* Builds case k in a fresh chat (turns restored with vlm_chat_add_turn) and checks the ids of
 * vlm_chat_tokenize, and, for a case without turns, those of vlm_tokenize_prompt. */
static void check_case(vlm_model *m, const vlm_image_embed *img, const uint8_t *rgb, int side, const prompt_case *pc)
{
    vlm_error e;
    vlm_chat *c;
    if (vlm_chat_new(m, &c, &e)) {
        TH_CHECK(0, "%s: vlm_chat_new: %s", pc->what, e.msg);
        return;
    }
    int rc = 0;
    for (int t = 0; t < pc->n_turns && !rc; t++) {
        rc = vlm_chat_add_turn(c, pc->turns[t].question, pc->turns[t].image ? img : NULL, pc->turns[t].answer, &e);
        TH_CHECK(rc == 0, "%s: turn %d: %s", pc->what, t + 1, e.msg);
    }
    int want[MAXIDS], got[MAXIDS], n_sys = (int)(sizeof sys_ids / sizeof *sys_ids), n;
    memcpy(want, sys_ids, sizeof sys_ids);
    memcpy(want + n_sys, pc->ids, (size_t)pc->n * sizeof *want);
    int m_want = n_sys + pc->n;
    if (!rc) {
        rc = vlm_chat_tokenize(c, pc->question, pc->image, got, MAXIDS, &n, &e);
        int d = rc ? 0 : first_diff(got, n, want, m_want);
        TH_CHECK(rc == 0 && n == m_want && d == m_want, "%s: vlm_chat_tokenize: %s%d ids, want %d; first difference at %d: %d, want %d",
                 pc->what, rc ? e.msg : "", rc ? 0 : n, m_want, d, !rc && d < n ? got[d] : -1, d < m_want ? want[d] : -1);
    }
    if (!pc->n_turns) {
        vlm_request rq = {.prompt = pc->question};
        if (pc->image) {
            rq.image_rgb = rgb;
            rq.image_width = rq.image_height = side;
        }
        rc = vlm_tokenize_prompt(m, &rq, got, MAXIDS, &n, &e);
        int d = rc ? 0 : first_diff(got, n, want, m_want);
        TH_CHECK(rc == 0 && n == m_want && d == m_want, "%s: vlm_tokenize_prompt: %s%d ids, want %d; first difference at %d",
                 pc->what, rc ? e.msg : "", rc ? 0 : n, m_want, d);
    }
    vlm_chat_free(c);
}

int main(void)
{
    char vpath[1024];
    if (golden_convert("tiny-v2", WT_F32, WT_F32, vpath, sizeof vpath)) {
        TH_CHECK(0, "conversion of tiny-v2 failed");
        return th_report("test_prompt");
    }
    vlm_model *m;
    vlm_error e;
    if (vlm_open(vpath, 1, &m, &e)) {
        TH_CHECK(0, "open %s: %s", vpath, e.msg);
        remove(vpath);
        return th_report("test_prompt");
    }
    /* Any photo will do: only the place of its slot in the ids is checked. */
    enum { SIDE = 16 };
    static uint8_t rgb[SIDE * SIDE * 3];
    for (int i = 0; i < SIDE * SIDE * 3; i++)
        rgb[i] = (uint8_t)(i * 37);
    vlm_image_embed *img = NULL;
    int rc = vlm_encode_image(m, rgb, SIDE, SIDE, &img, &e);
    TH_CHECK(rc == 0, "encode: %s", e.msg);
    for (size_t k = 0; !rc && k < sizeof cases / sizeof *cases; k++)
        check_case(m, img, rgb, SIDE, &cases[k]);
    vlm_image_embed_free(img);
    vlm_close(m);
    remove(vpath);
    return th_report("test_prompt");
}
