/* gfni.c (avx512 + GFNI): the "gfni" level, the AVX-512 level plus one kernel that uses
 * gf2p8affineqb (Ice Lake, Zen 4 and later have it; Cascade Lake has AVX-512 VNNI without
 * it): gemm_q4 for m = 1 with the high nibbles in one instruction (gemv_q4.h); m > 1 keeps the
 * AVX-512 kernel. Built with -mgfni besides the AVX-512 flags. */
#if !defined(__AVX512VNNI__) || !defined(__GFNI__)
#error "kernels/avx512/gfni.c must be built with the AVX-512 flags and -mgfni"
#endif
#include "kernels.h"

void gfni_fill(kernel_table *t);
void gemv_q4_gfni(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c);
void gemv_q4_alone_gfni(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c);
void gemm_q4_avx512(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                    const float *bias, float *c, size_t ldc);

#define GEMV_GFNI 1
#define GEMV_Q4_NAME gemv_q4_gfni
#define GEMV_Q4_ALONE_NAME gemv_q4_alone_gfni
#include "gemv_q4.h"

/* Contract: kernels.h gemm_q4, as gemm_q4_avx512. */
static void gemm_q4_gfni(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                         const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q4_gfni(n0, n1, k, a, w, bias, c);
    else
        gemm_q4_avx512(m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Contract: kernels.h gemm_q4_alone, as gemm_q4_gfni. */
static void gemm_q4_alone_gfni(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                               const float *bias, float *c, size_t ldc)
{
    if (m == 1)
        gemv_q4_alone_gfni(n0, n1, k, a, w, bias, c);
    else
        gemm_q4_avx512(m, n0, n1, k, a, lda, w, bias, c, ldc);
}

/* Called by isa_fill after avx512_fill, only when cpuid also reports GFNI. */
void gfni_fill(kernel_table *t)
{
    t->level = "gfni";
    t->gemm_q4 = gemm_q4_gfni;
    t->gemm_q4_alone = gemm_q4_alone_gfni;
}
