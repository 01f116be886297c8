/* th.h: the test harness. A test program calls TH_CHECK for each assertion and returns
 * th_report() from main: the exit code is the number of failed checks.
 * TH_DATA(path) resolves a file under tests/data (override the root with VLM_TEST_DATA). */
#ifndef VLM_TH_H
#define VLM_TH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int th_checks __attribute__((unused));
static int th_failures __attribute__((unused));

#define TH_CHECK(cond, ...)                                                   \
    do {                                                                      \
        th_checks++;                                                          \
        if (!(cond)) {                                                        \
            th_failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

static inline const char *th_data(const char *rel)
{
    static char buf[8][1024];
    static int slot;
    const char *root = getenv("VLM_TEST_DATA");
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root ? root : "tests/data", rel);
    return b;
}
#define TH_DATA(rel) th_data(rel)

/* The shell command that runs the vlm-run built beside this test program (the directory of
 * argv0, then ../vlm-run), behind $VLM_RUN_WRAPPER when set (qemu for cross builds). */
__attribute__((unused)) static inline void th_vlm_run_command(const char *argv0, char *cmd, size_t cap)
{
    char exe[1024];
    snprintf(exe, sizeof exe, "%s", argv0);
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(exe, sizeof exe, ".");
    const char *wrap = getenv("VLM_RUN_WRAPPER");
    snprintf(cmd, cap, "%s%s%s/../vlm-run", wrap ? wrap : "", wrap ? " " : "", exe);
}

__attribute__((unused)) static inline int th_report(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", name, th_checks, th_failures);
    return th_failures > 255 ? 255 : th_failures;
}

#endif
