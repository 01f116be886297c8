/* fuzz_convert.c: fuzz target for the converter's reading of an untrusted config.json
 * (architecture, LLM and vision hyperparameters, vision-tower lookup, the tensor plan and its
 * binding to checkpoint tensors): the input is written as config.json into a scratch model
 * directory whose weights and tokenizer are the tiny-v2 fixture's (symlinks, made once), with
 * the tiny CLIP directory beside it, and convert_model runs on it. Any input must convert or
 * fail with its code and a message; the output file is removed. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "kernels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base_dir[400], model_dir[512], config_path[600], out_path[600];

/* Removes the scratch directory at exit (the symlinks only, never their targets). */
static void cleanup(void)
{
    char p[700];
    remove(config_path);
    remove(out_path);
    snprintf(p, sizeof p, "%s/model.safetensors", model_dir);
    remove(p);
    snprintf(p, sizeof p, "%s/tokenizer.model", model_dir);
    remove(p);
    snprintf(p, sizeof p, "%s/clip-vit-tiny-patch14-112", base_dir);
    remove(p);
    rmdir(model_dir);
    rmdir(base_dir);
}

/* Creates <tmp>/vlm-fuzz-convert-<pid>/{model/, clip-vit-tiny-patch14-112} once. */
static int setup(void)
{
    if (model_dir[0])
        return 0;
    const char *root = getenv("VLM_TEST_DATA");
    char data[PATH_MAX];
    if (!realpath(root ? root : "tests/data", data))
        return -1;
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(base_dir, sizeof base_dir, "%s/vlm-fuzz-convert-%ld", tmp, (long)getpid());
    snprintf(model_dir, sizeof model_dir, "%s/model", base_dir);
    mkdir(base_dir, 0700);
    mkdir(model_dir, 0700);
    snprintf(config_path, sizeof config_path, "%s/config.json", model_dir);
    snprintf(out_path, sizeof out_path, "%s/out.vlm", base_dir);
    atexit(cleanup);
    char link[700], target[PATH_MAX + 100];
    static const char *const files[] = {"model.safetensors", "tokenizer.model"};
    for (int i = 0; i < 2; i++) {
        snprintf(link, sizeof link, "%s/%s", model_dir, files[i]);
        snprintf(target, sizeof target, "%s/fixtures/tiny-v2/%s", data, files[i]);
        if (symlink(target, link) != 0)
            return -1;
    }
    snprintf(link, sizeof link, "%s/clip-vit-tiny-patch14-112", base_dir);
    snprintf(target, sizeof target, "%s/fixtures/clip-vit-tiny-patch14-112", data);
    if (symlink(target, link) != 0)
        return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (setup() != 0) {
        fprintf(stderr, "fuzz_convert: cannot set up the scratch directory\n");
        abort();
    }
    FILE *f = fopen(config_path, "wb");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    convert_opts o = {.model_dir = model_dir, .out_path = out_path, .quant = WT_F16, .vision_quant = WT_F16};
    vlm_error e = {0};
    int rc = convert_model(&o, &e);
    if (rc != 0 && (e.code != rc || e.msg[0] == 0))
        __builtin_trap(); /* every failure carries its code and a message */
    remove(out_path);
    return 0;
}
