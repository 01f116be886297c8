/* evex.c (avx2vnni): the avx2vnni level on AVX-512 VNNI CPUs without AVX-VNNI (Cascade Lake,
 * Ice Lake, Tiger Lake, Zen 4): vex.c's source, gemm_q.h, built with -mavx512vl
 * -mavx512vnni so that each 256-bit vpdpbusd is EVEX-encoded (same operation, same results).
 * Those CPUs run the AVX-512 level for speed; this build is how the level's code is tested and
 * measured where AVX-VNNI is missing (make test on a Zen 4 checks it against the reference
 * like every level). GCC builds it with -ffixed-xmm16 .. -ffixed-xmm31, so it allocates the
 * 16 vector registers a VEX build has and its timings reflect that code. */
#if !defined(__AVX512VNNI__) || !defined(__AVX512VL__)
#error "kernels/avx2vnni/evex.c must be built with the AVX2 flags and -mavx512vl -mavx512vnni"
#endif
#include "kernels.h"

#define GEMM_Q_VNNI 1
#define GEMM_Q_LEVEL avx2vnni_evex
#include "../avx2/gemm_q.h"
