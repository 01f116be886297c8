/* fill.c (avx512): the AVX-512 F/BW/VL + VNNI level (Ice Lake, Sapphire Rapids, Zen 4 and
 * later). It starts from the AVX2 level (the ladder fills avx2 first) and replaces the matrix
 * products and attention (f32, f16 and q8 K/V); slots not set here keep the AVX2 (or reference)
 * kernel. */
#ifndef __AVX512VNNI__
#error "kernels/avx512 files must be built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif
#include "kernels.h"

void avx512_fill(kernel_table *t);
void gemm_f32_avx512(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                     const float *bias, float *c, size_t ldc);
void gemm_f16_avx512(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                     const float *bias, float *c, size_t ldc);
void gemm_q8_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                    const float *bias, float *c, size_t ldc);
void gemm_q4_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                    const float *bias, float *c, size_t ldc);
void gemm_q8_alone_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                          const float *bias, float *c, size_t ldc);
void gemm_q4_alone_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                          const float *bias, float *c, size_t ldc);
void attention_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                      int n_keys, int causal, float scale, const float *q, size_t ldq,
                      const float *k, const float *v, size_t ldkv, float *out, size_t ldo);
void attention_f16kv_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                            int n_keys, int causal, float scale, const float *q, size_t ldq,
                            const uint16_t *k, const uint16_t *v, size_t ldkv, float *out, size_t ldo);
void attention_q8kv_avx512(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                           int n_keys, int causal, float scale, const float *q, size_t ldq,
                           const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo);

/* Called by isa_fill after avx2_fill, only when cpuid/xgetbv confirmed AVX-512 F/BW/VL/VNNI
 * and OS support for the opmask and ZMM state. */
void avx512_fill(kernel_table *t)
{
    t->level = "avx512";
    t->gemm_f32 = gemm_f32_avx512;
    t->gemm_f16 = gemm_f16_avx512;
    t->gemm_q8 = gemm_q8_avx512;
    t->gemm_q4 = gemm_q4_avx512;
    t->gemm_q8_alone = gemm_q8_alone_avx512;
    t->gemm_q4_alone = gemm_q4_alone_avx512;
    t->attention = attention_avx512;
    t->attention_f16kv = attention_f16kv_avx512;
    t->attention_q8kv = attention_q8kv_avx512;
}
