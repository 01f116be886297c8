/* gemv.c (avx512): gemm_q4 for m = 1 at the AVX-512 F/BW/VL/VNNI level; the kernel is
 * gemv_q4.h, built here without GFNI (gfni.c builds it with). */
#ifndef __AVX512VNNI__
#error "kernels/avx512 files must be built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif
#include "kernels.h"

void gemv_q4_avx512(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c);
void gemv_q4_alone_avx512(int n0, int n1, int k, const blk_q8 *a, const uint8_t *w, const float *bias, float *c);

#define GEMV_GFNI 0
#define GEMV_Q4_NAME gemv_q4_avx512
#define GEMV_Q4_ALONE_NAME gemv_q4_alone_avx512
#include "gemv_q4.h"
