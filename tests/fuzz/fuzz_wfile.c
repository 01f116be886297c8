/* fuzz_wfile.c: fuzz target for the weight-file loader and model binding (wf_open + every
 * check of model_open), fed through an in-memory file so the real mmap path is exercised. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.vlm", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        model m;
        vlm_error e;
        if (model_open(path, 1, "ref", &m, &e) == 0)
            model_close(&m);
    }
    close(fd);
    return 0;
}
