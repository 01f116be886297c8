/* dispatch.c: picks the kernel table at start-up. It starts from the complete reference
 * table and lets each ISA level the CPU supports overwrite the slots it implements, lowest
 * level first. $VLM_ISA (or the force argument) caps the level, for tests and bug reports.
 * CPU features come from cpuid + xgetbv (x86: the OS must save the wide registers) or
 * getauxval(AT_HWCAP) (Linux/aarch64). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_isa.h"

/* Each architecture's levels form a ladder; force names the highest level allowed. */
static int allowed(const char *force, const char *level)
{
    static const char *const ladders[][6] = {{"ref", "avx2", "avx2vnni", "avx512", "gfni", NULL},
                                             {"ref", "neon", "dot", NULL}};
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

/* The function-pointer slots of kernel_table, by name, for kernels_describe. */
#define SLOT(name) {#name, offsetof(kernel_table, name)}
static const struct {
    const char *name;
    size_t offset;
} slots[] = {
    SLOT(gemm_f32), SLOT(gemm_f16), SLOT(gemm_q8), SLOT(gemm_q4), SLOT(gemm_q8_alone), SLOT(gemm_q4_alone),
    SLOT(quant_q8), SLOT(dequant_row), SLOT(rmsnorm), SLOT(layernorm), SLOT(gelu_erf), SLOT(quick_gelu),
    SLOT(hardswish), SLOT(hardsigmoid), SLOT(relu), SLOT(silu_mul), SLOT(add), SLOT(rope), SLOT(attention),
    SLOT(attention_f16kv), SLOT(attention_q8kv), SLOT(to_f16), SLOT(im2col_patch), SLOT(dwconv3x3),
    SLOT(avgpool),
};
#undef SLOT

static void (*slot_fn(const kernel_table *t, size_t offset))(void)
{
    void (*fn)(void);
    memcpy(&fn, (const char *)t + offset, sizeof fn);
    return fn;
}

void kernels_describe(const kernel_table *t, char *buf, size_t cap)
{
    char avail[64];
    kernels_available(avail, sizeof avail);
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        /* The lowest available level whose table holds the same function provides the slot. */
        const char *from = "?";
        char levels[64];
        snprintf(levels, sizeof levels, "%s", avail);
        for (char *save = NULL, *lv = strtok_r(levels, " ", &save); lv; lv = strtok_r(NULL, " ", &save)) {
            kernel_table at;
            kernels_init(lv, &at);
            if (slot_fn(&at, slots[i].offset) == slot_fn(t, slots[i].offset)) {
                from = lv;
                break;
            }
        }
        int w = snprintf(buf + n, n < cap ? cap - n : 0, "%s%s=%s", i ? " " : "", slots[i].name, from);
        if (w > 0)
            n += (size_t)w;
    }
}
