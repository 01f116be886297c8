/* kernels_isa.h: the hook through which the ISA levels of this architecture fill the table.
 * isa_fill (kernels/isa_x86.c, kernels/isa_arm.c, or the fallback in isa_fill.c) detects the CPU,
 * appends the supported level names to available, and overwrites the slots of each level
 * that allowed(force, level) permits. */
#ifndef VLM_KERNELS_ISA_H
#define VLM_KERNELS_ISA_H

#include <stddef.h>

#include "kernels.h"

void isa_fill(kernel_table *t, const char *force, int (*allowed)(const char *, const char *),
              char *available, size_t cap);

/* Appends " level" to available (cap bytes). */
void isa_append(char *available, size_t cap, const char *level);

#endif
