/* wfile.h: the .vlm weight file, one file holding everything vlm-run needs: hyperparameters,
 * tokenizer and tensors, little-endian, mapped read-only and used in place.
 *
 * Byte layout (docs/format.md says the same in prose):
 *   0    u8[8]   magic 89 'M' 'V' 'L' 'M' 0D 0A 1A
 *   8    u32     version (= 2)
 *   12   u32     n_tensors (1 .. WF_MAX_TENSORS)
 *   16   u64     file_size (must equal the real size)
 *   24   u64     dir_offset (= 512)
 *   32   u64     data_offset (first byte after the directory, rounded up to 64)
 *   40   u32     crc32 of bytes [0, 512) with this field zeroed, then of the directory
 *   44   u32     crc32 of bytes [data_offset, file_size) (checked by `weights-tool verify`)
 *   48   u32[116] configuration, see struct wf_config (u32 and f32 fields in order), rest 0
 *   512  n_tensors records of 128 bytes:
 *          0   char[64] name, NUL-padded, printable ASCII, unique
 *          64  u32 type (WT_F32 0, WT_F16 1, WT_Q8 2, WT_Q4 3, WT_I32 4, WT_U8 5)
 *          68  u32 ndim (1..4)
 *          72  u32[4] dims, outermost first (numpy order), unused = 0
 *          88  u64 offset (absolute, multiple of 64)
 *          96  u64 nbytes (= the exact size of the dims for the type)
 *          104 u8[24] zero
 *   data: tensors in directory order, each at its offset, gaps zero. q8 rows are ggml
 *   block_q8_0 arrays; q4 rows are block_q4_0 blocks in groups of 16 (scales, then nibbles; the
 *   layout and its helpers: kernels.h). */
#ifndef VLM_WFILE_H
#define VLM_WFILE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define WF_MAGIC "\x89MVLM\r\n\x1a"
#define WF_VERSION 2 /* 2: q4 rows in 16-block groups (kernels.h); 1 had plain block_q4_0 arrays */
#define WF_HEADER_SIZE 512
#define WF_RECORD_SIZE 128
#define WF_NAME_MAX 64
#define WF_MAX_TENSORS 65536
#define WF_ALIGN 64
#define WF_CONFIG_OFFSET 48

enum { ARCH_LLAMA = 0, ARCH_MOBILEVLM_V1 = 1, ARCH_MOBILEVLM_V2 = 2 };
enum { TEMPLATE_NONE = 0, TEMPLATE_VICUNA_V1 = 1 };

/* Hyperparameters, serialized in this order as u32 (int fields) or f32 (float fields). */
typedef struct wf_config {
    uint32_t arch;          /* ARCH_* */
    uint32_t chat_template; /* TEMPLATE_* */
    /* LLM */
    uint32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, max_seq_len;
    uint32_t bos_id, eos_id, tied_embeddings;
    float rms_eps, rope_theta;
    /* tokenizer (tok_flags: TOK_ADD_DUMMY_PREFIX | TOK_BYTE_FALLBACK | TOK_REMOVE_EXTRA_WHITESPACES) */
    uint32_t tok_flags, unk_id;
    /* vision tower (arch != ARCH_LLAMA); v_layers = layers kept = the selected layer */
    uint32_t v_image_size, v_patch_size, v_dim, v_hidden_dim, v_layers, v_heads;
    float v_ln_eps;
    float image_mean[3], image_std[3];
    /* projector: output tokens = proj_grid^2; se_dim is LDP v1's squeeze width */
    uint32_t proj_grid, se_dim;
} wf_config;

typedef struct wf_tensor {
    char name[WF_NAME_MAX];
    uint32_t type;
    uint32_t ndim;
    uint32_t dims[4];   /* (ndim), outermost first */
    uint64_t offset;
    uint64_t nbytes;
    const void *data;   /* inside the mapping; set by wf_open */
} wf_tensor;

typedef struct wfile {
    const char *path;   /* for messages; owned copy */
    const uint8_t *map; /* (size) bytes, PROT_READ */
    size_t size;
    wf_config cfg;
    uint32_t n_tensors;
    wf_tensor *tensors; /* (n_tensors), sorted by name for lookup */
    uint32_t data_crc;
    size_t data_offset;
} wfile;

/* Maps and validates the whole file structure: header, CRC of header and directory, every
 * record (name, type, dims, exact size), placement (aligned, inside the file, no overlap).
 * It does not check tensor presence or shapes against the config: model_open does that.
 * Returns 0 or a VLM_E* code; on error nothing stays mapped or allocated. */
int wf_open(const char *path, wfile *wf, vlm_error *e);
void wf_close(wfile *wf);

/* NULL if absent. */
const wf_tensor *wf_find(const wfile *wf, const char *name);

/* Bytes of a tensor of this type and dims; 0 with *ok = 0 on overflow or a bad shape. */
uint64_t wf_tensor_bytes(uint32_t type, uint32_t ndim, const uint32_t *dims, int *ok);

/* Checks the CRC-32 of the data region (slow: reads every byte). */
int wf_verify_data(const wfile *wf, vlm_error *e);

uint32_t crc32_update(uint32_t crc, const void *buf, size_t len);

/* Config (de)serialization to the u32 words at WF_CONFIG_OFFSET. */
void wf_config_store(const wf_config *c, uint8_t *header);
void wf_config_load(wf_config *c, const uint8_t *header);

const char *wt_name(uint32_t type);

#endif
