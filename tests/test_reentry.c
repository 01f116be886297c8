/* test_reentry.c: API calls made from inside a running call's callbacks. A question or a
 * tokenization started from on_token or on_progress would rewrite the conversation, the KV
 * cache and the answer buffers the running call still uses (the outer answer came back mixed
 * with the inner one, the chat's turns wrong): each must fail with VLM_EARG and leave the
 * running answer exactly what it is without the callback. stories260K, greedy. */
#include <stdio.h>
#include <string.h>

#include "golden.h"
#include "kernels.h"
#include "th.h"
#include "vlm.h"

typedef struct probe {
    vlm_model *m;
    vlm_chat *c;
    int what;  /* which call the callback makes: 0 generate, 1 chat_ask, 2 chat_tokenize,
                  3 tokenize_prompt, 4 chat_add_turn */
    int calls; /* callbacks seen */
    int rc;    /* the nested call's result (the first one made) */
    char msg[512];
} probe;

/* Makes the nested call p->what once, on the third token, and records its result. */
static void nested(probe *p)
{
    if (p->calls++ != 2)
        return;
    vlm_result r;
    vlm_error e = {0};
    int ids[1024], n;
    vlm_request rq = {.prompt = "a different and longer prompt that would change the cache", .max_new_tokens = 30};
    switch (p->what) {
    case 0: p->rc = vlm_generate(p->m, &rq, &r, &e); break;
    case 1: p->rc = vlm_chat_ask(p->c, &rq, NULL, &r, &e); break;
    case 2: p->rc = vlm_chat_tokenize(p->c, "q", 0, ids, 1024, &n, &e); break;
    case 3: p->rc = vlm_tokenize_prompt(p->m, &rq, ids, 1024, &n, &e); break;
    default: p->rc = vlm_chat_add_turn(p->c, "q", NULL, "a", &e); break;
    }
    snprintf(p->msg, sizeof p->msg, "%s", e.msg);
}

static int on_token(void *ctx, int id, const char *text)
{
    (void)id;
    (void)text;
    nested(ctx);
    return 0;
}

static void on_progress(void *ctx, const char *stage, int done, int total)
{
    (void)stage;
    (void)done;
    (void)total;
    nested(ctx);
}

int main(void)
{
    char path[1024];
    if (golden_convert("stories260K-hf", WT_F32, -1, path, sizeof path)) {
        TH_CHECK(0, "stories260K conversion failed");
        return th_report("test_reentry");
    }
    vlm_model *m;
    vlm_error e;
    int rc = vlm_open(path, 1, &m, &e);
    TH_CHECK(rc == 0, "open: %s", e.msg);
    if (rc)
        return th_report("test_reentry");

    /* the answers without nested calls */
    char want1[4096], want2[4096];
    vlm_chat *c;
    vlm_result r;
    vlm_chat_new(m, &c, &e);
    vlm_chat_ask(c, &(vlm_request){.prompt = "Once upon", .max_new_tokens = 10}, NULL, &r, &e);
    rc = vlm_chat_ask(c, &(vlm_request){.prompt = "then", .max_new_tokens = 20}, NULL, &r, &e);
    snprintf(want1, sizeof want1, "%s", r.text);
    rc |= vlm_chat_ask(c, &(vlm_request){.prompt = "after", .max_new_tokens = 8}, NULL, &r, &e);
    snprintf(want2, sizeof want2, "%s", r.text);
    TH_CHECK(rc == 0, "reference chat: %s", e.msg);
    vlm_chat_free(c);

    for (int cb = 0; cb < 2; cb++)
        for (int what = 0; what < 5; what++) {
            probe p = {.m = m, .what = what, .rc = 1};
            vlm_chat_new(m, &c, &e);
            p.c = c;
            vlm_chat_ask(c, &(vlm_request){.prompt = "Once upon", .max_new_tokens = 10}, NULL, &r, &e);
            vlm_request rq = {.prompt = "then", .max_new_tokens = 20, .ctx = &p};
            if (cb == 0)
                rq.on_token = on_token;
            else
                rq.on_progress = on_progress;
            /* on_progress comes twice per long step: make the nested call on the first */
            if (cb == 1)
                p.calls = 2;
            rc = vlm_chat_ask(c, &rq, NULL, &r, &e);
            TH_CHECK(p.rc == VLM_EARG && strstr(p.msg, "generating"), "%s, call %d: nested rc %d '%s'",
                     cb ? "on_progress" : "on_token", what, p.rc, p.msg);
            TH_CHECK(rc == 0 && !strcmp(r.text, want1) && vlm_chat_turns(c) == 2,
                     "%s, call %d: outer rc %d turns %d answer '%s', want '%s'", cb ? "on_progress" : "on_token",
                     what, rc, vlm_chat_turns(c), rc ? e.msg : r.text, want1);
            rc = vlm_chat_ask(c, &(vlm_request){.prompt = "after", .max_new_tokens = 8}, NULL, &r, &e);
            TH_CHECK(rc == 0 && !strcmp(r.text, want2), "%s, call %d: next turn '%s', want '%s'",
                     cb ? "on_progress" : "on_token", what, rc ? e.msg : r.text, want2);
            vlm_chat_free(c);
        }
    vlm_close(m);
    remove(path);
    return th_report("test_reentry");
}
