/* soak.c: a long-running process check (`make soak`, not part of `make test`). One process
 * opens the tiny MobileVLM V2 fixture and stories260K and runs N rounds (default 200); each
 * round decodes a different test image from its file, asks the VLM a new question about it and
 * continues a new text on stories260K. The resident set (/proc/self/statm) and the heap in use
 * (glibc mallinfo2) after a warm-up must stay flat through the middle and the end: no leak, no
 * growth. Usage: soak [ROUNDS [noflat]] (run from the repository root; VLM_TEST_DATA moves
 * tests/data); noflat skips the RSS/heap checks, for runs under valgrind (its own memory grows). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../golden.h"
#include "image.h"
#include "kernels.h"
#include "../th.h"
#include "vlm.h"

/* Resident set size in KiB (second field of /proc/self/statm, in pages); -1 if unavailable. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Heap bytes in use (allocated and not freed), the exact leak measure; -1 without glibc. */
static long heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (long)(mi.uordblks + mi.hblkhd);
#else
    return -1;
#endif
}

/* Images of every decoder path, cycled through: each round decodes its file anew. */
static const char *const images[] = {
    "fixtures/tiny-v2/goldens/image.jpg",   "images/jpeg/crop_65x47_420.jpg",
    "images/jpeg/crop_65x47_prog_420.jpg",  "images/jpeg/crop_31x33_422.jpg",
    "images/jpeg/grayscale_16x24_sampling2x2.jpg", "images/jpeg/jpg-cmyk-1.jpg",
    "images/jpeg/orient_2.jpg",             "images/png/pngsuite/basn2c08.png",
    "images/png/pngsuite/basi3p08.png",     "images/png/pngsuite/basn6a16.png",
    "images/png/pngsuite/basn0g01.png",     "images/ppm/monkey16.pgm",
    "images/ppm/testorig.ppm",              "images/ppm/dog_crop_65x47_ascii_P3.ppm",
};
#define N_IMAGES (sizeof images / sizeof *images)

static const char *const questions[] = {
    "What is in the image?", "Describe the scene in detail.", "What colors do you see?",
    "Is there a person here? Answer briefly.", "Count the objects.", "Where was this photo taken?",
};
static const char *const stories[] = {"Once upon a time", "The little dog", "Lily and Tom went", "One day, a big"};

typedef struct sample {
    long rss, heap;
} sample;

static sample measure(void) { return (sample){rss_kib(), heap_bytes()}; }

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    int check_flat = !(argc > 2 && !strcmp(argv[2], "noflat"));
    if (rounds < 4)
        rounds = 4;
    char vlm_path[1024], txt_path[1024];
    if (golden_convert("tiny-v2", WT_Q8, -1, vlm_path, sizeof vlm_path) ||
        golden_convert("stories260K-hf", WT_F32, -1, txt_path, sizeof txt_path)) {
        TH_CHECK(0, "cannot convert the fixtures");
        return th_report("soak");
    }
    vlm_model *vm = NULL, *tm = NULL;
    vlm_error e;
    int rc = vlm_open(vlm_path, 2, &vm, &e);
    if (!rc)
        rc = vlm_open(txt_path, 2, &tm, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc) {
        vlm_close(vm);
        return th_report("soak");
    }
    /* Warm-up: the first rounds grow every buffer (KV cache, activations) to its final size. */
    int warm = rounds / 10 > 2 ? rounds / 10 : 2;
    sample at_warm = {0, 0}, at_mid = {0, 0}, at_end = {0, 0}, at_start = measure();
    long tokens = 0;
    for (int r = 0; r < rounds; r++) {
        vlm_image img;
        const char *file = images[(size_t)r % N_IMAGES];
        rc = image_decode_file(TH_DATA(file), IMAGE_EXIF_APPLY, NULL, &img, &e);
        TH_CHECK(rc == 0, "round %d: %s", r, e.msg);
        if (rc)
            break;
        char prompt[256];
        snprintf(prompt, sizeof prompt, "%s (round %d, %s)", questions[r % 6], r, strrchr(file, '/') + 1);
        vlm_request rq = {.prompt = prompt, .image_rgb = img.rgb, .image_width = img.width,
                          .image_height = img.height, .max_new_tokens = 6 + r % 7, .ignore_eos = 1,
                          .temperature = r % 3 ? 0.8f : 0, .top_k = r % 5 * 10, .top_p = 0.9f, .seed = (uint64_t)r + 1};
        vlm_result res;
        rc = vlm_generate(vm, &rq, &res, &e);
        TH_CHECK(rc == 0 && res.n_ids == rq.max_new_tokens, "round %d: vlm: %d ids (%s)", r, res.n_ids, rc ? e.msg : "");
        tokens += res.n_ids;
        image_free(&img);
        snprintf(prompt, sizeof prompt, "%s %d", stories[r % 4], r);
        vlm_request tq = {.prompt = prompt, .max_new_tokens = 10 + r % 23, .temperature = r % 2 ? 0.7f : 0,
                          .seed = (uint64_t)r + 7};
        rc = vlm_generate(tm, &tq, &res, &e);
        TH_CHECK(rc == 0 && res.n_ids > 0, "round %d: stories: %s", r, rc ? e.msg : "no ids");
        tokens += res.n_ids;
        if (r + 1 == warm)
            at_warm = measure();
        if (r + 1 == rounds / 2)
            at_mid = measure();
    }
    at_end = measure();
    fprintf(stderr, "soak: %d rounds (%d generations), %ld tokens\n", rounds, 2 * rounds, tokens);
    fprintf(stderr, "  %-22s RSS %7ld KiB, heap in use %9ld bytes\n", "start (models open)", at_start.rss, at_start.heap);
    fprintf(stderr, "  after %3d (warm-up)    RSS %7ld KiB, heap in use %9ld bytes\n", warm, at_warm.rss, at_warm.heap);
    fprintf(stderr, "  after %3d (middle)     RSS %7ld KiB, heap in use %9ld bytes\n", rounds / 2, at_mid.rss, at_mid.heap);
    fprintf(stderr, "  after %3d (end)        RSS %7ld KiB, heap in use %9ld bytes\n", rounds, at_end.rss, at_end.heap);
    /* Flat after the warm-up: the heap may move by allocator rounding only (a leak of one
     * small block per round would add 200+ blocks), the RSS by page-cache noise of the maps. */
    if (check_flat && at_warm.heap >= 0) {
        TH_CHECK(at_end.heap - at_warm.heap <= 64 * 1024 && at_mid.heap - at_warm.heap <= 64 * 1024,
                 "heap in use grew: %ld -> %ld -> %ld bytes", at_warm.heap, at_mid.heap, at_end.heap);
    }
    if (check_flat && at_warm.rss > 0)
        TH_CHECK(at_end.rss - at_warm.rss <= 2048 && at_mid.rss - at_warm.rss <= 2048,
                 "RSS grew: %ld -> %ld -> %ld KiB", at_warm.rss, at_mid.rss, at_end.rss);
    vlm_close(vm);
    vlm_close(tm);
    remove(vlm_path);
    remove(txt_path);
    return th_report("soak");
}
