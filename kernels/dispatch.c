/* dispatch.c: picks the kernel table at start-up. It starts from the complete reference
 * table and lets each ISA level the CPU supports overwrite the slots it implements, lowest
 * level first. $VLM_ISA (or the force argument) caps the level, for tests and bug reports.
 * CPU features come from cpuid + xgetbv (x86: the OS must save the wide registers) or
 * getauxval(AT_HWCAP) (Linux/aarch64). */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_isa.h"

static kernel_table active;
static char available[64];

static int allowed(const char *force, const char *level)
{
    if (!force || !*force)
        return 1;
    /* Levels are ordered; force names the highest one allowed. */
    static const char *const order[] = {"ref", "avx2", "avx512", "neon", "dot", NULL};
    int fi = -1;
    int li = -1;
    for (int i = 0; order[i]; i++) {
        if (!strcmp(order[i], force))
            fi = i;
        if (!strcmp(order[i], level))
            li = i;
    }
    if (fi < 0)
        return 1;
    /* x86 and arm levels are separate ladders: ref < avx2 < avx512, ref < neon < dot. */
    if (fi >= 3 && li >= 1 && li <= 2)
        return 0;
    if (fi >= 1 && fi <= 2 && li >= 3)
        return 0;
    return li <= fi;
}

const kernel_table *kernels_init(const char *force)
{
    if (!force)
        force = getenv("VLM_ISA");
    active = kernels_ref;
    strcpy(available, "ref");
    isa_fill(&active, force, allowed, available, sizeof available);
    return &active;
}

const char *kernels_available(void) { return available; }
