/* test_stories.c: stories260K (a real trained tiny LLaMA: GQA 8/4 heads, tied embeddings, its
 * own 512-piece tokenizer) converted from its Hugging Face directory to f32 must reproduce every
 * greedy continuation of expected_greedy.json (llama2.c run.c's output) token for token:
 * prompt ids (BOS + sentencepiece with dummy prefix; n_prompt_ids counts the BOS) and generated
 * ids, stopping at BOS. With the default f16 KV cache (1 and 2 threads) and the f32 one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "json.h"
#include "kernels.h"
#include "th.h"
#include "vlm.h"

static void run_cases(const char *path, int threads, int kv_type)
{
    vlm_error e;
    json_doc *d = json_parse_file(TH_DATA("fixtures/stories260K-hf/expected_greedy.json"), 1 << 22, &e);
    TH_CHECK(d != NULL, "%s", e.msg);
    if (!d)
        return;
    vlm_model *m;
    int rc = vlm_open(path, threads, &m, &e);
    if (!rc && kv_type != VLM_KV_F16) /* f16: the default, left as vlm_open sets it */
        rc = vlm_set_kv_cache(m, kv_type, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    const json_value *cases = json_get(json_root(d), "cases");
    TH_CHECK(cases && cases->type == JSON_ARRAY && cases->len >= 6, "expected_greedy.json has no cases");
    for (size_t c = 0; !rc && cases && c < cases->len; c++) {
        const json_value *k = cases->items[c];
        const char *prompt = json_get_str(k, "prompt");
        const json_value *ids = json_get(k, "ids_with_bos");
        int64_t n_prompt = 0;
        json_get_int(k, "n_prompt_ids", 0, 1 << 20, &n_prompt);
        if (!prompt || !ids || ids->type != JSON_ARRAY) {
            TH_CHECK(0, "case %zu malformed", c);
            continue;
        }
        vlm_request rq = {.prompt = prompt, .max_new_tokens = (int)(ids->len - (size_t)n_prompt)};
        int pids[1024];
        int np = 0;
        rc = vlm_tokenize_prompt(m, &rq, pids, 1024, &np, &e);
        TH_CHECK(rc == 0 && np == n_prompt, "case %zu: %d prompt ids, expected %lld", c, np, (long long)n_prompt);
        for (int i = 0; i < np && (size_t)i < ids->len; i++)
            TH_CHECK(pids[i] == (int)ids->items[i]->number, "case %zu: prompt id %d is %d, expected %d", c, i, pids[i],
                     (int)ids->items[i]->number);
        vlm_result res;
        rc = vlm_generate(m, &rq, &res, &e);
        TH_CHECK(rc == 0, "case %zu: %s", c, e.msg);
        size_t want = ids->len - (size_t)n_prompt;
        int bad = (size_t)res.n_ids != want;
        for (int i = 0; !bad && i < res.n_ids; i++)
            bad = res.ids[i] != (int)ids->items[n_prompt + i]->number;
        TH_CHECK(!bad, "case %zu (\"%s\", %d threads, %s KV cache): %d generated ids differ from the %zu expected",
                 c, prompt, threads, kv_type == VLM_KV_F32 ? "f32" : "f16", res.n_ids, want);
        const char *text = json_get_str(k, "text");
        if (text && c == 0)
            fprintf(stderr, "  case 0 text: %.60s...\n", res.text);
    }
    vlm_close(m);
    json_free(d);
}

int main(void)
{
    char path[1024];
    if (golden_convert("stories260K-hf", WT_F32, -1, path, sizeof path)) {
        TH_CHECK(0, "stories260K conversion failed");
        return th_report("test_stories");
    }
    run_cases(path, 1, VLM_KV_F16);
    run_cases(path, 2, VLM_KV_F16);
    run_cases(path, 1, VLM_KV_F32);
    remove(path);
    return th_report("test_stories");
}
