/* dispatch.c: picks the kernel table at start-up. It starts from the complete reference
 * table and lets each ISA level the CPU supports overwrite the slots it implements, lowest
 * level first. $VLM_ISA (or the force argument) caps the level, for tests and bug reports.
 * CPU features come from cpuid + xgetbv (x86: the OS must save the wide registers) or
 * getauxval(AT_HWCAP) (Linux/aarch64). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_isa.h"

/* Each architecture's levels form a ladder; force names the highest level allowed. */
static int allowed(const char *force, const char *level)
{
    static const char *const ladders[][4] = {{"ref", "avx2", "avx512", NULL}, {"ref", "neon", "dot", NULL}};
    if (!force || !*force)
        return 1;
    for (int l = 0; l < 2; l++) {
        int fi = -1;
        int li = -1;
        for (int i = 0; ladders[l][i]; i++) {
            if (!strcmp(ladders[l][i], force))
                fi = i;
            if (!strcmp(ladders[l][i], level))
                li = i;
        }
        if (fi >= 0 && li >= 0)
            return li <= fi;
    }
    return 0;
}

void kernels_init(const char *force, kernel_table *out)
{
    char available[64] = "ref";
    if (!force)
        force = getenv("VLM_ISA");
    *out = kernels_ref;
    isa_fill(out, force, allowed, available, sizeof available);
}

void kernels_available(char *buf, size_t cap)
{
    kernel_table t;
    snprintf(buf, cap, "ref");
    isa_fill(&t, "ref", allowed, buf, cap);
}
