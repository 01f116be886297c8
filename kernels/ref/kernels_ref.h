/* kernels_ref.h: the reference kernels by name, so that tests and ISA files can call a
 * reference directly (for edges they do not handle). Semantics: see kernels.h. */
#ifndef VLM_KERNELS_REF_H
#define VLM_KERNELS_REF_H

#include "kernels.h"
#include "util.h"

void gemm_f32_ref(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                  const float *bias, float *c, size_t ldc);
void gemm_f16_ref(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                  const float *bias, float *c, size_t ldc);
void gemm_q8_ref(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                 const float *bias, float *c, size_t ldc);
void gemm_q4_ref(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                 const float *bias, float *c, size_t ldc);
void quant_q8_ref(int n, const float *x, blk_q8 *y);
void dequant_row_ref(int type, int n, const void *row, float *y);
void rmsnorm_ref(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                 float *y);
void layernorm_ref(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                   const float *b, float eps, float *y);
void gelu_erf_ref(size_t i0, size_t i1, float *x);
void quick_gelu_ref(size_t i0, size_t i1, float *x);
void hardswish_ref(size_t i0, size_t i1, float *x);
void hardsigmoid_ref(size_t i0, size_t i1, float *x);
void relu_ref(size_t i0, size_t i1, float *x);
void silu_mul_ref(size_t i0, size_t i1, float *gate, const float *up);
void add_ref(size_t i0, size_t i1, float *y, const float *x);
void rope_ref(int h0, int h1, int head_dim, float *x, const float *cs);
void attention_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                   int n_keys, int causal, float scale, const float *q, size_t ldq,
                   const float *k, const float *v, size_t ldkv, float *out, size_t ldo);
void attention_f16kv_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo);
void attention_q8kv_ref(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                        int n_keys, int causal, float scale, const float *q, size_t ldq,
                        const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo);
void to_f16_ref(size_t i0, size_t i1, const float *x, uint16_t *y);
void im2col_patch_ref(int r0, int r1, int h, int w, int p, const float *img, float *cols);
void dwconv3x3_ref(int c0, int c1, int h, int w, int c, int stride, const float *in,
                   const float *wt, const float *bias, float *out);
void avgpool_ref(int oy0, int oy1, int h, int w, int c, int oh, int ow, const float *in,
                 float *out);

#endif
