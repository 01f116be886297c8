/* fill.c (avx2): the AVX2+FMA+F16C level (Haswell, Zen 1 and later). Slots not set here keep
 * the reference kernel: dequant_row (one embedding row per token) and avgpool (once per image)
 * are not worth a vector version. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include "kernels.h"
#include "kernels_avx2.h"

void avx2_fill(kernel_table *t);

/* Called by isa_fill only after cpuid/xgetbv confirmed AVX2, FMA, F16C and OS YMM support. */
void avx2_fill(kernel_table *t)
{
    t->level = "avx2";
    t->gemm_f32 = gemm_f32_avx2;
    t->gemm_f16 = gemm_f16_avx2;
    t->gemm_q8 = gemm_q8_avx2;
    t->gemm_q4 = gemm_q4_avx2;
    t->gemm_q8_alone = gemm_q8_alone_avx2;
    t->gemm_q4_alone = gemm_q4_alone_avx2;
    t->quant_q8 = quant_q8_avx2;
    t->rmsnorm = rmsnorm_avx2;
    t->layernorm = layernorm_avx2;
    t->gelu_erf = gelu_erf_avx2;
    t->quick_gelu = quick_gelu_avx2;
    t->hardswish = hardswish_avx2;
    t->hardsigmoid = hardsigmoid_avx2;
    t->relu = relu_avx2;
    t->silu_mul = silu_mul_avx2;
    t->add = add_avx2;
    t->rope = rope_avx2;
    t->attention = attention_avx2;
    t->attention_f16kv = attention_f16kv_avx2;
    t->attention_q8kv = attention_q8kv_avx2;
    t->to_f16 = to_f16_avx2;
    t->im2col_patch = im2col_patch_avx2;
    t->dwconv3x3 = dwconv3x3_avx2;
}
