/* gemm.c (ref): the matrix products, the specification of every SIMD gemm.
 * One output element = one dot product over k in increasing order (f32), or over blocks in
 * increasing order with an exact int32 sum inside each block (q8/q4). */
#include "kernels_ref.h"

void gemm_f32_ref(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                  const float *bias, float *c, size_t ldc)
{
    for (int i = 0; i < m; i++)
        for (int n = n0; n < n1; n++) {
            const float *wr = w + (size_t)n * k;
            const float *ar = a + (size_t)i * lda;
            float s = 0;
            for (int j = 0; j < k; j++)
                s += ar[j] * wr[j];
            c[(size_t)i * ldc + n] = bias ? s + bias[n] : s;
        }
}

void gemm_f16_ref(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                  const float *bias, float *c, size_t ldc)
{
    for (int i = 0; i < m; i++)
        for (int n = n0; n < n1; n++) {
            const uint16_t *wr = w + (size_t)n * k;
            const float *ar = a + (size_t)i * lda;
            float s = 0;
            for (int j = 0; j < k; j++)
                s += ar[j] * f16_to_f32(wr[j]);
            c[(size_t)i * ldc + n] = bias ? s + bias[n] : s;
        }
}

void gemm_q8_ref(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                 const float *bias, float *c, size_t ldc)
{
    int nb = k / QK;
    for (int i = 0; i < m; i++)
        for (int n = n0; n < n1; n++) {
            const blk_q8 *wr = w + (size_t)n * nb;
            const blk_q8 *ar = a + (size_t)i * lda;
            float s = 0;
            for (int b = 0; b < nb; b++) {
                int32_t dot = 0; /* |dot| <= 32 * 127 * 127: no overflow */
                for (int j = 0; j < QK; j++)
                    dot += (int32_t)ar[b].qs[j] * wr[b].qs[j];
                s += (float)dot * (f16_to_f32(ar[b].d) * f16_to_f32(wr[b].d));
            }
            c[(size_t)i * ldc + n] = bias ? s + bias[n] : s;
        }
}

void gemm_q4_ref(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                 const float *bias, float *c, size_t ldc)
{
    int nb = k / QK;
    for (int i = 0; i < m; i++)
        for (int n = n0; n < n1; n++) {
            const uint8_t *wr = w + (size_t)n * q4_row_bytes(nb);
            const blk_q8 *ar = a + (size_t)i * lda;
            float s = 0;
            for (int b = 0; b < nb; b++) {
                const uint8_t *qs = wr + q4_nibbles_off(nb, b);
                int32_t dot = 0;
                for (int j = 0; j < QK / 2; j++) {
                    /* Stored nibbles are q + 8. */
                    int lo = (qs[j] & 0x0f) - 8;
                    int hi = (qs[j] >> 4) - 8;
                    dot += lo * ar[b].qs[j] + hi * ar[b].qs[j + QK / 2];
                }
                s += (float)dot * (f16_to_f32(ar[b].d) * f16_to_f32(q4_scale(wr, b)));
            }
            c[(size_t)i * ldc + n] = bias ? s + bias[n] : s;
        }
}
