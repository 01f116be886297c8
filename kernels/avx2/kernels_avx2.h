/* kernels_avx2.h: the AVX2 kernels by name, for the fill function of this level (the AVX-512
 * level inherits them through the fill order, not by name). Semantics and contracts: the slot
 * comments of kernels.h; ISA-specific limits: the comment above each definition. */
#ifndef VLM_KERNELS_AVX2_H
#define VLM_KERNELS_AVX2_H

#include "kernels.h"

void gemm_f32_avx2(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                   const float *bias, float *c, size_t ldc);
void gemm_f16_avx2(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                   const float *bias, float *c, size_t ldc);
void gemm_q8_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                  const float *bias, float *c, size_t ldc);
void gemm_q4_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                  const float *bias, float *c, size_t ldc);
void gemm_q8_alone_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                        const float *bias, float *c, size_t ldc);
void gemm_q4_alone_avx2(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                        const float *bias, float *c, size_t ldc);
void quant_q8_avx2(int n, const float *x, blk_q8 *y);
void rmsnorm_avx2(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                  float *y);
void layernorm_avx2(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                    const float *b, float eps, float *y);
void gelu_erf_avx2(size_t i0, size_t i1, float *x);
void quick_gelu_avx2(size_t i0, size_t i1, float *x);
void hardswish_avx2(size_t i0, size_t i1, float *x);
void hardsigmoid_avx2(size_t i0, size_t i1, float *x);
void relu_avx2(size_t i0, size_t i1, float *x);
void silu_mul_avx2(size_t i0, size_t i1, float *gate, const float *up);
void add_avx2(size_t i0, size_t i1, float *y, const float *x);
void rope_avx2(int h0, int h1, int head_dim, float *x, const float *cs);
void attention_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                    int n_keys, int causal, float scale, const float *q, size_t ldq,
                    const float *k, const float *v, size_t ldkv, float *out, size_t ldo);
void attention_f16kv_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                          int n_keys, int causal, float scale, const float *q, size_t ldq,
                          const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo);
void attention_q8kv_avx2(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                         int n_keys, int causal, float scale, const float *q, size_t ldq,
                         const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo);
void to_f16_avx2(size_t i0, size_t i1, const float *x, uint16_t *y);
void im2col_patch_avx2(int r0, int r1, int h, int w, int p, const float *img, float *cols);
void dwconv3x3_avx2(int c0, int c1, int h, int w, int c, int stride, const float *in,
                    const float *wt, const float *bias, float *out);

#endif
