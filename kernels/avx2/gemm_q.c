/* gemm_q.c (avx2): q8 activations x q8/q4 weights at the AVX2 level (gemm_q.h with maddubs
 * dots), and quant_q8. */
#ifndef __AVX2__
#error "kernels/avx2 files must be built with -mavx2 -mfma -mf16c"
#endif
#include <math.h>
#include <string.h>

#include "kernels_avx2.h"
#include "simd.h"

#define GEMM_Q_VNNI 0
#define GEMM_Q_LEVEL avx2
#include "gemm_q.h"
#include "util.h"

/* Rounds half away from zero like roundf (the vector round instruction rounds half to even):
 * truncate, then step away from zero when the dropped fraction is >= 0.5 (exact for |t| < 2^23;
 * larger values are already integers). */
static inline __m256 round_away(__m256 t)
{
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 sign = _mm256_and_ps(t, _mm256_set1_ps(-0.0f));
    __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, r));
    __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_set1_ps(1.0f));
    return _mm256_add_ps(r, _mm256_or_ps(step, sign));
}

/* Lane i = max |x| over the 32 floats at x + 32 i for i < nq (<= 8), 0 for the others: each
 * block's 4 vectors maxed, then the 8 block vectors reduced together (unpacks, shuffles, one
 * 128-bit swap) instead of one horizontal max each. */
static inline __m256 block_amax8(const float *x, int nq)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m[8];
    for (int b = 0; b < 8; b++) {
        const float *xb = x + 32 * b;
        m[b] = b >= nq ? _mm256_setzero_ps()
                       : _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb), absmask),
                                                     _mm256_and_ps(_mm256_loadu_ps(xb + 8), absmask)),
                                       _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb + 16), absmask),
                                                     _mm256_and_ps(_mm256_loadu_ps(xb + 24), absmask)));
    }
    __m256 h[2];
    for (int g = 0; g < 2; g++) {
        /* Per 128-bit half: lanes (b, b+1) pairwise, then the four blocks 4g..4g+3 in order. */
        __m256 a = _mm256_max_ps(_mm256_unpacklo_ps(m[4 * g], m[4 * g + 1]), _mm256_unpackhi_ps(m[4 * g], m[4 * g + 1]));
        __m256 c = _mm256_max_ps(_mm256_unpacklo_ps(m[4 * g + 2], m[4 * g + 3]),
                                 _mm256_unpackhi_ps(m[4 * g + 2], m[4 * g + 3]));
        h[g] = _mm256_max_ps(_mm256_shuffle_ps(a, c, 0x44), _mm256_shuffle_ps(a, c, 0xee));
    }
    return _mm256_max_ps(_mm256_permute2f128_ps(h[0], h[1], 0x20), _mm256_permute2f128_ps(h[0], h[1], 0x31));
}

/* Contract: kernels.h quant_q8; n % 32 == 0; bit-identical to the reference for finite inputs
 * (the same IEEE f32 divisions for d and 1/d, the same product, roundf's rounding; the f16
 * scale by vcvtps2ph, round to nearest even like f32_to_f16). Eight blocks at a time: their
 * maxima, scales and inverse scales as one vector each (a scalar maximum, two scalar divisions
 * and the bit-level f16 conversion per block were most of its time). */
void quant_q8_avx2(int n, const float *x, blk_q8 *y)
{
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const int nb = n / QK;
    for (int b0 = 0; b0 < nb; b0 += 8) {
        int nq = nb - b0 < 8 ? nb - b0 : 8;
        __m256 amax = block_amax8(x + (size_t)b0 * QK, nq);
        __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
        __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d),
                                  _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ));
        uint16_t dh[8];
        _mm_storeu_si128((__m128i *)dh, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
        for (int b = 0; b < nq; b++) {
            const float *xb = x + (size_t)(b0 + b) * QK;
            y[b0 + b].d = dh[b];
            __m256 vid = _mm256_permutevar8x32_ps(id, _mm256_set1_epi32(b));
            __m256i q0 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb), vid)));
            __m256i q1 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb + 8), vid)));
            __m256i q2 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb + 16), vid)));
            __m256i q3 = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(_mm256_loadu_ps(xb + 24), vid)));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            _mm256_storeu_si256((__m256i *)y[b0 + b].qs, _mm256_permutevar8x32_epi32(p, perm));
        }
    }
}
