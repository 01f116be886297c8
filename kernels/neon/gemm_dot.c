/* gemm_dot.c (neon): the "dot" level, Armv8.2 with the int8 dot product (FEAT_DotProd,
 * SDOT): the q8/q4 matrix products, and dot_fill, which puts them over the "neon" table.
 * Only called after isa_arm.c saw HWCAP_ASIMDDP. The tiling is qgemm_body.h, shared with the
 * Armv8.0 file; only the block dot product differs. */
#if !defined(__ARM_FEATURE_DOTPROD)
#error "kernels/neon/*_dot.c must be built with -march=armv8.2-a+dotprod"
#endif
#include "neon.h"

/* Exact int32 dot product of one 32-element block as 4 lanes: two SDOT, each lane summing
 * 4 products of 16 bytes (|lane| <= 8 * 128 * 128, far from overflow). */
static inline __attribute__((always_inline)) int32x4_t
qg_block_dot(int q4, int8x16_t al, int8x16_t ah, int8x16_t wl, int8x16_t wh)
{
    (void)q4;
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), al, wl), ah, wh);
}

#include "qgemm_body.h"

void gemm_q8_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                 const float *bias, float *c, size_t ldc);
void gemm_q4_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                 const float *bias, float *c, size_t ldc);

void gemm_q8_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                 const float *bias, float *c, size_t ldc)
{
    qg_gemm(0, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

void gemm_q4_dot(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                 const float *bias, float *c, size_t ldc)
{
    qg_gemm(1, m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* The dot level = the neon level (isa_arm.c fills it first) with the int8 products replaced. */
void dot_fill(kernel_table *t)
{
    t->level = "dot";
    t->gemm_q8 = gemm_q8_dot;
    t->gemm_q4 = gemm_q4_dot;
    t->gemm_q8_alone = gemm_q8_dot;
    t->gemm_q4_alone = gemm_q4_dot;
}
