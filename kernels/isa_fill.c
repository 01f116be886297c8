/* isa_fill.c: the shared helper of the per-architecture detection files, and the fallback
 * isa_fill for architectures with no SIMD level (the reference table only). */
#include <string.h>

#include "kernels_isa.h"

void isa_append(char *available, size_t cap, const char *level)
{
    size_t n = strlen(available);
    if (n + strlen(level) + 2 <= cap) {
        available[n] = ' ';
        strcpy(available + n + 1, level);
    }
}

#if !defined(__x86_64__) && !defined(__aarch64__)
void isa_fill(kernel_table *t, const char *force, int (*allowed)(const char *, const char *),
              char *available, size_t cap)
{
    (void)t;
    (void)force;
    (void)allowed;
    (void)available;
    (void)cap;
}
#endif
