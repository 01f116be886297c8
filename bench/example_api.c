/* example_api.c: the library API in one page: open a model, encode a photo once, then ask two
 * questions in one conversation, streaming each answer as it is generated. The second turn
 * reuses the KV cache and computes only its own tokens.
 *   build/example_api MODEL.vlm PHOTO.jpg
 * Outside this tree: cc example_api.c $(pkg-config --cflags --libs vlm) */
#include <stdio.h>
#include <vlm.h>

/* Streams each piece of the answer; returning nonzero would stop (>0) or cancel (<0). */
static int print_piece(void *ctx, int token_id, const char *text)
{
    (void)ctx;
    (void)token_id;
    fputs(text, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.vlm PHOTO\n", argv[0]);
        return 2;
    }
    vlm_error err;
    vlm_model *model = NULL;
    vlm_image_embed *photo = NULL;
    vlm_chat *chat = NULL;
    uint8_t *rgb = NULL;
    int w, h, rc;
    if ((rc = vlm_open(argv[1], 4, &model, &err)) || (rc = vlm_read_image(argv[2], 1, &rgb, &w, &h, &err)) ||
        (rc = vlm_encode_image(model, rgb, w, h, &photo, &err)) || (rc = vlm_chat_new(model, &chat, &err)))
        goto done;
    const char *questions[2] = {"What is in the image?", "What colours stand out?"};
    for (int i = 0; i < 2; i++) {
        vlm_request rq = {.prompt = questions[i], .max_new_tokens = 64, .on_token = print_piece};
        vlm_result res;
        printf("Q: %s\nA: ", questions[i]);
        /* the photo goes with the first question; later turns see it in the history */
        if ((rc = vlm_chat_ask(chat, &rq, i == 0 ? photo : NULL, &res, &err)))
            goto done;
        printf("\n   (%d positions computed, %d reused, %.0f tokens/s)\n", res.n_prefilled, res.n_reused,
               res.generate_ms > 0 ? res.n_ids / (res.generate_ms / 1e3) : 0.0);
    }
done:
    if (rc)
        fprintf(stderr, "error: %s (%s)\n", err.msg, vlm_strerror(rc));
    vlm_chat_free(chat);
    vlm_image_embed_free(photo);
    vlm_free_rgb(rgb);
    vlm_close(model);
    return rc ? 1 : 0;
}
