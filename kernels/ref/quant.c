/* quant.c (ref): the q8/q4 block quantizers (one implementation, shared by the converter and
 * the runtime's activation quantization), row dequantization for embedding lookups, and the
 * f32 -> f16 conversion of rows written to the KV cache. */
#include <math.h>

#include "kernels_ref.h"

void quant_row_q8(int n, const float *x, blk_q8 *y)
{
    for (int b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0;
        for (int j = 0; j < QK; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        /* An all-zero block gets d = 0 and zero codes, never a division by zero. */
        float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = f32_to_f16(d);
        for (int j = 0; j < QK; j++)
            y[b].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

void quant_row_q4(int n, const float *x, uint8_t *row)
{
    int nb = n / QK;
    for (int b = 0; b < nb; b++) {
        const float *xb = x + b * QK;
        /* The signed value of largest magnitude maps to -8, so the full 16 levels are used. */
        float amax = 0;
        float vmax = 0;
        for (int j = 0; j < QK; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                vmax = xb[j];
            }
        float d = vmax / -8.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t dh = f32_to_f16(d);
        uint8_t *sc = row + q4_scale_off(b);
        uint8_t *qs = row + q4_nibbles_off(nb, b);
        sc[0] = (uint8_t)dh;
        sc[1] = (uint8_t)(dh >> 8);
        for (int j = 0; j < QK / 2; j++) {
            float lo = xb[j] * id + 8.5f;
            float hi = xb[j + QK / 2] * id + 8.5f;
            int ql = lo < 15.0f ? (int)lo : 15;
            int qh = hi < 15.0f ? (int)hi : 15;
            if (ql < 0)
                ql = 0;
            if (qh < 0)
                qh = 0;
            qs[j] = (uint8_t)(ql | (qh << 4));
        }
    }
}

void quant_q8_ref(int n, const float *x, blk_q8 *y) { quant_row_q8(n, x, y); }

void dequant_row_ref(int type, int n, const void *row, float *y)
{
    switch (type) {
    case WT_F32:
        for (int i = 0; i < n; i++)
            y[i] = ((const float *)row)[i];
        break;
    case WT_F16:
        for (int i = 0; i < n; i++)
            y[i] = f16_to_f32(((const uint16_t *)row)[i]);
        break;
    case WT_Q8:
        for (int b = 0; b < n / QK; b++) {
            const blk_q8 *q = (const blk_q8 *)row + b;
            float d = f16_to_f32(q->d);
            for (int j = 0; j < QK; j++)
                y[b * QK + j] = d * q->qs[j];
        }
        break;
    case WT_Q4:
        for (int b = 0; b < n / QK; b++) {
            const uint8_t *qs = (const uint8_t *)row + q4_nibbles_off(n / QK, b);
            float d = f16_to_f32(q4_scale(row, b));
            for (int j = 0; j < QK / 2; j++) {
                y[b * QK + j] = d * ((qs[j] & 0x0f) - 8);
                y[b * QK + j + QK / 2] = d * ((qs[j] >> 4) - 8);
            }
        }
        break;
    }
}

void to_f16_ref(size_t i0, size_t i1, const float *x, uint16_t *y)
{
    for (size_t i = i0; i < i1; i++)
        y[i] = f32_to_f16(x[i]);
}
