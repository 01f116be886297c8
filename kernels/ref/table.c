/* table.c (ref): the reference kernel table, complete: every slot is valid on every CPU. */
#include "kernels_ref.h"

const kernel_table kernels_ref = {
    .level = "ref",
    .gemm_f32 = gemm_f32_ref,
    .gemm_f16 = gemm_f16_ref,
    .gemm_q8 = gemm_q8_ref,
    .gemm_q4 = gemm_q4_ref,
    .quant_q8 = quant_q8_ref,
    .dequant_row = dequant_row_ref,
    .rmsnorm = rmsnorm_ref,
    .layernorm = layernorm_ref,
    .gelu_erf = gelu_erf_ref,
    .quick_gelu = quick_gelu_ref,
    .hardswish = hardswish_ref,
    .hardsigmoid = hardsigmoid_ref,
    .relu = relu_ref,
    .silu_mul = silu_mul_ref,
    .add = add_ref,
    .rope = rope_ref,
    .attention = attention_ref,
    .attention_f16kv = attention_f16kv_ref,
    .attention_q8kv = attention_q8kv_ref,
    .to_f16 = to_f16_ref,
    .im2col_patch = im2col_patch_ref,
    .dwconv3x3 = dwconv3x3_ref,
    .avgpool = avgpool_ref,
};
