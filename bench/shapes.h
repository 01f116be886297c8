/* shapes.h: the matrix shapes of the real models, shared by the kernel benchmark and the kernel
 * tests. MobileLLaMA 1.4B (dim 2048, hidden 5632, vocab 32000), MobileLLaMA 2.7B (dim 2560,
 * hidden 6912) and the CLIP ViT-L/14-336 vision tower (577 tokens x 1024, MLP 4096, patch
 * embedding over 3*14*14 = 588 inputs). m is the number of activation rows of one call:
 * 1 for a decode step, the token count for the vision tower. */
#ifndef VLM_BENCH_SHAPES_H
#define VLM_BENCH_SHAPES_H

typedef struct bench_shape {
    const char *name; /* model.layer */
    int m, n, k;      /* C (m, n) = A (m, k) . W (n, k)^T */
    int llm;          /* 1: decode matrix-vector (weights streamed), 0: vision matrix-matrix */
} bench_shape;

/* Read-only table; the count is VLM_N_SHAPES. */
static const bench_shape vlm_shapes[] = {
    {"1.4b.attn_qkvo", 1, 2048, 2048, 1},
    {"1.4b.mlp_gate_up", 1, 5632, 2048, 1},
    {"1.4b.mlp_down", 1, 2048, 5632, 1},
    {"1.4b.lm_head", 1, 32000, 2048, 1},
    {"2.7b.attn_qkvo", 1, 2560, 2560, 1},
    {"2.7b.mlp_gate_up", 1, 6912, 2560, 1},
    {"2.7b.mlp_down", 1, 2560, 6912, 1},
    {"2.7b.lm_head", 1, 32000, 2560, 1},
    {"vit.patch_embed", 576, 1024, 588, 0},
    {"vit.attn_qkvo", 577, 1024, 1024, 0},
    {"vit.mlp_fc1", 577, 4096, 1024, 0},
    {"vit.mlp_fc2", 577, 1024, 4096, 0},
};
#define VLM_N_SHAPES ((int)(sizeof vlm_shapes / sizeof vlm_shapes[0]))

#endif
