/* kernels.h: every numeric operation the models use, as one table of function pointers.
 * kernels_ref (kernels/ref/) is the specification: plain C, one obvious loop per op. ISA files
 * (kernels/avx2/, kernels/neon/, ...) may replace slots when the CPU has the feature; they
 * must agree with the reference within the tolerances of kernels/tolerance.h.
 * Contract shared by all kernels: no allocation, no threads, no globals; a kernel computes an
 * output range [n0, n1) (or [r0, r1)) so callers can split work; arrays are row-major with
 * explicit leading dimensions (in elements, or in blocks for q8/q4 activations). Scratch lives
 * on the stack, at most ~160 KB per call (the AVX-512 f16 product packs a 128 KB panel): call
 * kernels from threads with at least 256 KB of stack (the pool gives its workers 4 MB). */
#ifndef VLM_KERNELS_H
#define VLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Weight/tensor element types; the numbers are the type codes of the weight file. */
enum { WT_F32 = 0, WT_F16 = 1, WT_Q8 = 2, WT_Q4 = 3, WT_I32 = 4, WT_U8 = 5, WT_COUNT = 6 };

#define QK 32 /* elements per q8/q4 block */

/* Bit-compatible with ggml's block_q8_0: value = d * qs[j]. */
typedef struct blk_q8 {
    uint16_t d;     /* f16 scale */
    int8_t qs[QK];  /* (32) */
} blk_q8;

_Static_assert(sizeof(blk_q8) == 34, "blk_q8 must be 34 bytes (ggml block_q8_0)");

/* q4 weights. A block is ggml's block_q4_0: an f16 scale d and 16 nibble bytes, element j =
 * d * ((qs[j] & 15) - 8), element j + 16 = d * ((qs[j] >> 4) - 8). A row of k elements holds
 * nb = k / 32 blocks in 18 * nb bytes, arranged in groups of Q4_GROUP blocks: group s starts at
 * byte 288 s and holds r = min(16, nb - 16 s) blocks, first their r scales (2 r bytes, block
 * order), then their r x 16 nibble bytes (block order). Only the last group of a row may be
 * short. (Contiguous scales and nibbles: one load of 16 scales, 64-byte loads of nibbles;
 * docs/format.md.) Scales are little-endian and not 2-byte aligned in general. */
enum { Q4_GROUP = 16,                     /* blocks per group */
       Q4_BLOCK_BYTES = 2 + QK / 2,       /* 18: scale + nibbles of one block */
       Q4_GROUP_BYTES = Q4_GROUP * Q4_BLOCK_BYTES }; /* 288 */

/* Bytes of a q4 row of nb blocks. */
static inline size_t q4_row_bytes(int nb) { return (size_t)nb * Q4_BLOCK_BYTES; }

/* Byte offset of block b's f16 scale in a q4 row (the same for any row length). */
static inline size_t q4_scale_off(int b)
{
    return (size_t)(b / Q4_GROUP) * Q4_GROUP_BYTES + 2 * (size_t)(b % Q4_GROUP);
}

/* Byte offset of block b's 16 nibble bytes in a q4 row of nb blocks. */
static inline size_t q4_nibbles_off(int nb, int b)
{
    int s = b / Q4_GROUP;
    int r = nb - s * Q4_GROUP < Q4_GROUP ? nb - s * Q4_GROUP : Q4_GROUP;
    return (size_t)s * Q4_GROUP_BYTES + 2 * (size_t)r + 16 * (size_t)(b % Q4_GROUP);
}

/* Block b's f16 scale (bits) in the q4 row at row. */
static inline uint16_t q4_scale(const uint8_t *row, int b)
{
    const uint8_t *p = row + q4_scale_off(b);
    return (uint16_t)(p[0] | p[1] << 8);
}

typedef struct kernel_table {
    const char *level; /* "ref", "avx2", "avx512", "neon", "dot", ... */

    /* C[0:m, n0:n1] = A[0:m, 0:k] . W[n0:n1, 0:k]^T (+ bias[n0:n1] when bias != NULL).
     * W is row-major (n, k), as nn.Linear stores it. f32/f16: A is f32 with row stride lda.
     * q8/q4: A is q8 blocks (quantized with quant_q8) with lda blocks per row, k % 32 == 0;
     * each block's integer dot product is exact (int32) and the f32 sum runs over blocks in
     * order. q8: W is n rows of k / 32 blk_q8. q4: W is n rows of q4_row_bytes(k / 32) bytes in
     * the grouped layout above. Writes only C[0:m, n0:n1] (row stride ldc). */
    void (*gemm_f32)(int m, int n0, int n1, int k, const float *a, size_t lda, const float *w,
                     const float *bias, float *c, size_t ldc);
    void (*gemm_f16)(int m, int n0, int n1, int k, const float *a, size_t lda, const uint16_t *w,
                     const float *bias, float *c, size_t ldc);
    void (*gemm_q8)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                    const float *bias, float *c, size_t ldc);
    void (*gemm_q4)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                    const float *bias, float *c, size_t ldc);
    /* gemm_q8 / gemm_q4 for a caller streaming the weights alone (one thread): the same results;
     * with m = 1 they prefetch more of the weights ahead, which one core needs to reach the read
     * bandwidth and which slows several cores sharing it (avx2/simd.h prefetch_weights). Levels
     * without that difference set the same functions as gemm_q8 / gemm_q4. */
    void (*gemm_q8_alone)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const blk_q8 *w,
                          const float *bias, float *c, size_t ldc);
    void (*gemm_q4_alone)(int m, int n0, int n1, int k, const blk_q8 *a, size_t lda, const uint8_t *w,
                          const float *bias, float *c, size_t ldc);

    /* x[0:n] -> n/32 q8 blocks (n % 32 == 0): d = max|x| / 127, q = round(x / d). */
    void (*quant_q8)(int n, const float *x, blk_q8 *y);
    /* One weight row of any matrix type (WT_F32..WT_Q4; q4 in the grouped layout) -> f32
     * y[0:n] (embedding lookup). */
    void (*dequant_row)(int type, int n, const void *row, float *y);

    /* Rows r0..r1 of x (n columns, row stride ld) normalized into y (same layout).
     * rmsnorm: y = w * x / sqrt(mean(x^2) + eps). layernorm: y = w * (x - mean) / sqrt(var + eps) + b. */
    void (*rmsnorm)(int r0, int r1, int n, const float *x, size_t ld, const float *w, float eps,
                    float *y);
    void (*layernorm)(int r0, int r1, int n, const float *x, size_t ld, const float *w,
                      const float *b, float eps, float *y);

    /* Elementwise, in place on x[i0:i1]. */
    void (*gelu_erf)(size_t i0, size_t i1, float *x);   /* x/2 (1 + erf(x/sqrt 2)) */
    void (*quick_gelu)(size_t i0, size_t i1, float *x); /* x sigmoid(1.702 x) */
    void (*hardswish)(size_t i0, size_t i1, float *x);  /* x relu6(x + 3) / 6 */
    void (*hardsigmoid)(size_t i0, size_t i1, float *x); /* relu6(x + 3) / 6 */
    void (*relu)(size_t i0, size_t i1, float *x);
    /* gate[i] = silu(gate[i]) * up[i] for i in [i0, i1). */
    void (*silu_mul)(size_t i0, size_t i1, float *gate, const float *up);
    /* y[i] += x[i]. */
    void (*add)(size_t i0, size_t i1, float *y, const float *x);

    /* Rotary embedding (rotate_half layout) of heads h0..h1 of one token: x (n_heads,
     * head_dim); pair (i, i + head_dim/2) rotated by the angle whose cosine is cs[i] and sine
     * cs[head_dim/2 + i] (cs: head_dim; the caller computes the token's angles once for all
     * heads and layers). */
    void (*rope)(int h0, int h1, int head_dim, float *x, const float *cs);

    /* Scaled dot-product attention for heads h0..h1 and query rows 0..nq:
     * out[t, h*d:(h+1)*d] = softmax_j(q[t,h] . k[j,g] * scale) v[j,g], g = h / (n_heads / n_kv_heads),
     * over keys j < n_keys, or with causal >= 0 only keys j <= causal + t (query t sits at
     * absolute position causal + t). q: (nq, n_heads*d) stride ldq; k, v: (n_keys, n_kv_heads*d)
     * stride ldkv; out: (nq, n_heads*d) stride ldo. head_dim <= 256. */
    void (*attention)(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                      int n_keys, int causal, float scale, const float *q, size_t ldq,
                      const float *k, const float *v, size_t ldkv, float *out, size_t ldo);
    /* attention with the keys and values stored as f16 (IEEE binary16: the LLM's KV cache):
     * k, v (n_keys, n_kv_heads*d) uint16_t, stride ldkv elements; q and out are f32 and the
     * contract is attention's. Each K/V element converts to f32 exactly; the reference then
     * does attention's f32 arithmetic, so it equals attention on the widened K/V bit for bit. */
    void (*attention_f16kv)(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                            int n_keys, int causal, float scale, const float *q, size_t ldq,
                            const uint16_t *k, const uint16_t *v, size_t ldkv, float *out,
                            size_t ldo);
    /* attention with the keys and values stored as q8 blocks (the LLM's q8 KV cache): a K/V row
     * of a kv head is head_dim / 32 blk_q8 (head_dim % 32 == 0), element i of it = d * qs of
     * block i / 32; key j of kv head g is the row at k + j * ldkv + g * (head_dim / 32), ldkv
     * counted in blocks (the same for v); q and out are f32 and the contract is attention's.
     * Each element dequantizes exactly in f32 (an f16 scale times an int8 code needs 18 of
     * f32's 24 significand bits), so the reference equals attention on the dequantized K/V bit
     * for bit. */
    void (*attention_q8kv)(int h0, int h1, int nq, int n_heads, int n_kv_heads, int head_dim,
                           int n_keys, int causal, float scale, const float *q, size_t ldq,
                           const blk_q8 *k, const blk_q8 *v, size_t ldkv, float *out, size_t ldo);
    /* y[i] = x[i] as f16 for i in [i0, i1): round to nearest even, overflow to inf, subnormal
     * results kept, NaN quiet with its sign and top payload bits (bit for bit what F16C
     * vcvtps2ph and Arm fcvtn give; f32_to_f16 in src/util.h). Writes only y[i0:i1]. */
    void (*to_f16)(size_t i0, size_t i1, const float *x, uint16_t *y);

    /* Patch extraction for a conv with kernel = stride = p, no padding, as a matrix product:
     * img (3, h, w) -> cols[(r*g + c), ch*p*p + u*p + v] = img[ch, r*p + u, c*p + v] for patch
     * rows r0..r1 of the g x g grid (g = w / p, only h/p x w/p patches are read). */
    void (*im2col_patch)(int r0, int r1, int h, int w, int p, const float *img, float *cols);

    /* Depthwise 3x3 convolution, zero padding 1, channels-last: in (h, w, c), weights (c, 9)
     * in (row, col) order, out (ho, wo, c) with ho = (h - 1) / stride + 1; channels c0..c1. */
    void (*dwconv3x3)(int c0, int c1, int h, int w, int c, int stride, const float *in,
                      const float *wt, const float *bias, float *out);
    /* Adaptive average pooling (PyTorch AdaptiveAvgPool2d bins) of (h, w, c) to (oh, ow, c)
     * for output rows oy0..oy1. */
    void (*avgpool)(int oy0, int oy1, int h, int w, int c, int oh, int ow, const float *in,
                    float *out);
} kernel_table;

extern const kernel_table kernels_ref;

/* Fills *out with kernels_ref, then every slot the CPU can do faster replaced.
 * force: NULL (then $VLM_ISA is consulted), or a level name ("ref", "avx2", "avx512", "neon",
 * "dot") that caps the selection, for tests, benchmarks and bug reports. Reentrant. */
void kernels_init(const char *force, kernel_table *out);
/* Writes the levels this binary has and this CPU supports, lowest first, e.g. "ref avx2". */
void kernels_available(char *buf, size_t cap);
/* Writes "slot=level ..." for every slot of t: which level's kernel it runs. */
void kernels_describe(const kernel_table *t, char *buf, size_t cap);

/* Offline quantizers (the converter) and exact references used by tests. */
/* x[0:n] (n % 32 == 0) -> one q4 row of q4_row_bytes(n / 32) bytes at row, grouped layout. */
void quant_row_q4(int n, const float *x, uint8_t *row);
void quant_row_q8(int n, const float *x, blk_q8 *y);

#endif
