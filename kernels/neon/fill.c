/* fill.c (neon): the "neon" level, Armv8.0 Advanced SIMD, present on every aarch64 CPU.
 * Slots not set here keep the reference kernel (dequant_row, im2col_patch, avgpool and the
 * cheap piecewise-linear activations: they are a negligible share of the time). */
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "kernels/neon/fill.c needs aarch64 Advanced SIMD"
#endif
#include "neon.h"

void neon_fill(kernel_table *t)
{
    t->level = "neon";
    t->gemm_f32 = gemm_f32_neon;
    t->gemm_f16 = gemm_f16_neon;
    t->gemm_q8 = gemm_q8_neon;
    t->gemm_q4 = gemm_q4_neon;
    t->gemm_q8_alone = gemm_q8_neon;
    t->gemm_q4_alone = gemm_q4_neon;
    t->quant_q8 = quant_q8_neon;
    t->rmsnorm = rmsnorm_neon;
    t->layernorm = layernorm_neon;
    t->gelu_erf = gelu_erf_neon;
    t->quick_gelu = quick_gelu_neon;
    t->silu_mul = silu_mul_neon;
    t->add = add_neon;
    t->rope = rope_neon;
    t->attention = attention_neon;
    t->attention_f16kv = attention_f16kv_neon;
    t->attention_q8kv = attention_q8kv_neon;
    t->to_f16 = to_f16_neon;
    t->dwconv3x3 = dwconv3x3_neon;
}
