/* fill.c (avx2): the AVX2+FMA+F16C level. Slots not set here keep the reference kernel. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include "kernels.h"

void avx2_fill(kernel_table *t);

void avx2_fill(kernel_table *t)
{
    t->level = "avx2";
}
