/* source.h: read-only views of the tensors in Hugging Face checkpoints, whatever the
 * container: torch.save zip+pickle (pytorch_model.bin), safetensors, or sharded sets of
 * either with their *.index.json. Files are mmap'd; a src_tensor points into the mapping
 * after every byte it can touch (offset, shape, strides) was checked to lie inside it.
 * Nothing from a checkpoint is ever executed: the pickle reader implements the opcode
 * subset torch.save writes and an allow-list of globals. */
#ifndef VLM_SOURCE_H
#define VLM_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SRC_MAX_DIMS 8

typedef enum { SRC_F32, SRC_F16, SRC_BF16, SRC_F64, SRC_I64, SRC_I32, SRC_I16, SRC_I8, SRC_U8, SRC_BOOL } src_dtype;

typedef struct src_tensor {
    char *name;                     /* owned, NUL-terminated */
    src_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[SRC_MAX_DIMS];    /* (ndim) */
    int64_t stride[SRC_MAX_DIMS];   /* (ndim) in elements; contiguous row-major for safetensors */
    const uint8_t *data;            /* element [0,...,0]; every strided element is inside the file */
    const char *file;               /* the file it came from, for messages */
} src_tensor;

typedef struct src_set src_set; /* the tensors of one checkpoint (possibly many files) */

/* Opens a checkpoint. path is either a directory (looked up in this order:
 * model.safetensors, model.safetensors.index.json, pytorch_model.bin,
 * pytorch_model.bin.index.json) or a single .safetensors / .bin file.
 * Duplicate tensor names across shards are an error. */
int src_open(const char *path, src_set **out, vlm_error *e);
void src_close(src_set *s);

int src_count(const src_set *s);
const src_tensor *src_at(const src_set *s, int i);
/* NULL if absent. */
const src_tensor *src_find(const src_set *s, const char *name);

/* Number of elements (product of the shape; 1 for a scalar). */
size_t src_numel(const src_tensor *t);

/* Bytes per element of a dtype (1..8). */
size_t src_dtype_size(src_dtype d);
/* The dtype as safetensors spells it: "F32", "BF16", ... ("?" if out of range). */
const char *src_dtype_name(src_dtype d);

/* Copies the tensor as row-major float32 into out (src_numel(t) floats), following strides
 * and converting f16/bf16/f64/integers. Returns 0 or a VLM_E* code. */
int src_read_f32(const src_tensor *t, float *out, vlm_error *e);

#endif
