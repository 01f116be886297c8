/* tolerance.h: how far an ISA kernel may be from the reference (kernels/ref/), one row per kind
 * of operation, used by tests/test_kernels.c and explained in docs/kernels.md. x passes against
 * the reference r when |x - r| <= max(atol, rtol |r|) * s, s = sqrt(len) for sqrt_len rows
 * (len: reduction length, k of a gemm, keys of attention), else 1. layernorm's len is
 * n (1 + |mean|/std)^2: centering costs the reference itself |mean|/std digits. */
#ifndef VLM_TOLERANCE_H
#define VLM_TOLERANCE_H

#include <math.h>

typedef enum tol_op {
    TOL_EXACT,    /* bit for bit: copies, quant_q8 blocks, dequant, integer block sums, to_f16 */
    TOL_GEMM_F32, /* f32 dot products summed in another order (lanes, FMA) */
    TOL_GEMM_F16, /* the same with f16 weights (converted exactly, so the same bound) */
    TOL_GEMM_Q,   /* q8/q4: exact int32 per block, f32 sum over blocks in another order */
    TOL_NORM,     /* rmsnorm / layernorm: sums in lanes; layernorm's len is n (1 + |mean|/std)^2 */
    TOL_ACT,      /* activations built on a vector exp / erf (silu, quick_gelu, gelu_erf) */
    TOL_ATTN,     /* attention: dot products, vector exp, weighted sums over the keys */
    TOL_ATTN_F16KV, /* the same with f16 keys and values (converted exactly, so the same bound) */
    TOL_ATTN_Q8KV, /* the same with q8 keys and values (dequantized exactly, so the same bound) */
    TOL_ROPE,     /* rotary embedding: same cos/sin, products possibly fused */
    TOL_CONV,     /* dwconv3x3, avgpool: 9-term sums, window means */
    TOL_COUNT
} tol_op;

typedef struct tol_row {
    const char *name;
    float atol, rtol;
    int sqrt_len; /* bounds grow as sqrt(len): rounding errors of a long sum are a random walk */
} tol_row;

/* Inputs of the tests are O(1) (uniform in [-1, 1] unless a case says otherwise), so atol is
 * an absolute error on O(1) data; rtol covers large outputs. */
static inline tol_row tol_get(tol_op op)
{
    static const tol_row rows[TOL_COUNT] = {
        [TOL_EXACT] = {"exact", 0.0f, 0.0f, 0},
        [TOL_GEMM_F32] = {"gemm_f32", 2e-6f, 2e-6f, 1},
        [TOL_GEMM_F16] = {"gemm_f16", 2e-6f, 2e-6f, 1},
        [TOL_GEMM_Q] = {"gemm_q", 2e-6f, 2e-6f, 1},
        [TOL_NORM] = {"norm", 2e-6f, 2e-6f, 1},
        [TOL_ACT] = {"activation", 1e-6f, 4e-6f, 0},
        [TOL_ATTN] = {"attention", 1e-6f, 1e-5f, 1},
        [TOL_ATTN_F16KV] = {"attention_f16kv", 1e-6f, 1e-5f, 1},
        [TOL_ATTN_Q8KV] = {"attention_q8kv", 1e-6f, 1e-5f, 1},
        [TOL_ROPE] = {"rope", 1e-6f, 1e-6f, 0},
        [TOL_CONV] = {"conv", 1e-6f, 1e-6f, 0},
    };
    return rows[op];
}

/* The largest |x - ref| allowed for one output of a reduction of length len. */
static inline float tol_bound(tol_op op, float ref, int len)
{
    tol_row t = tol_get(op);
    float b = fmaxf(t.atol, t.rtol * fabsf(ref));
    return t.sqrt_len && len > 1 ? b * sqrtf((float)len) : b;
}

/* Nonzero when x passes against ref: exact rows compare bits (so -0 != +0 and NaN fails),
 * the others the bound above; a NaN in x never passes. */
static inline int tol_ok(tol_op op, float x, float ref, int len)
{
    if (op == TOL_EXACT) {
        union { float f; unsigned u; } a = {x}, b = {ref};
        return a.u == b.u;
    }
    return fabsf(x - ref) <= tol_bound(op, ref, len);
}

#endif
