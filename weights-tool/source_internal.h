/* source_internal.h: what source.c, safetensors.c and torchzip.c share, and the
 * from-memory entry points the fuzz targets and tests call. A src_set owns its tensors,
 * the mappings they point into and the file names they cite; the container parsers only
 * append tensors whose every reachable byte they have checked to lie inside the buffer. */
#ifndef VLM_SOURCE_INTERNAL_H
#define VLM_SOURCE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "source.h"

/* One file of the checkpoint: its name (for messages and for tensor->file) and, when
 * it was mapped by src_open, the mapping to release. */
typedef struct src_file {
    char *name;          /* owned, NUL-terminated */
    void *map;           /* (map_size) bytes of mmap, or NULL for caller-owned memory */
    size_t map_size;
} src_file;

struct src_set {
    src_tensor *tensors; /* (count) in load order; cap allocated */
    int count, cap;
    const src_tensor **by_name; /* (count) pointers into tensors sorted by name; from src_set_finish */
    src_file *files;     /* (nfiles) every file the tensors point into; fcap allocated */
    int nfiles, fcap;
};

/* Limits on untrusted metadata (not on tensor data, which is only mapped). */
#define SRC_MAX_TENSORS (1 << 20)
#define SRC_MAX_NAME 4096              /* bytes in a tensor name */
#define SRC_MAX_JSON (100u << 20)      /* safetensors header / index file */
#define SRC_MAX_PICKLE (256u << 20)    /* data.pkl member */

/* An empty set, or NULL when out of memory. */
src_set *src_set_new(void);

/* Registers a file (name copied; map may be NULL) and returns the set's copy of the name,
 * which tensors of that file use as their ->file. NULL when out of memory (then map is
 * not owned by the set and the caller still has to unmap it). */
const char *src_set_add_file(src_set *s, const char *name, void *map, size_t map_size);

/* Appends a tensor; the set takes ownership of t->name (freed even on failure).
 * Errors: VLM_ENOMEM, VLM_ERANGE when over SRC_MAX_TENSORS. */
int src_set_push(src_set *s, const src_tensor *t, vlm_error *e);

/* Builds the name index; a name present twice (in one file or across shards) is a
 * VLM_EFORMAT error naming both files. Call once after the last push. */
int src_set_finish(src_set *s, vlm_error *e);

/* Checks a tensor's shape/stride against a buffer: ndim in [0, SRC_MAX_DIMS], sizes and
 * strides >= 0, numel * elsize representable, and the largest reachable element
 * offset + sum((shape_i - 1) * stride_i) < avail_elems (nothing is checked when numel is 0).
 * Sets *numel. what names the tensor in messages ("file: tensor 'x'"). */
int src_check_extent(const char *what, int ndim, const int64_t *shape, const int64_t *stride,
                     uint64_t offset, uint64_t avail_elems, src_dtype dtype, size_t *numel,
                     vlm_error *e);

/* The container parsers. data[0:size] stays valid for the life of the set; file is the
 * name returned by src_set_add_file. They push every tensor found, and do not call
 * src_set_finish. Errors: VLM_EFORMAT (malformed), VLM_EUNSUPPORTED (valid but a feature
 * not implemented: compression, a pickle global outside the allow-list, ...), VLM_ERANGE,
 * VLM_ENOMEM. */
int src_load_safetensors(src_set *s, const uint8_t *data, size_t size, const char *file, vlm_error *e);
int src_load_torchzip(src_set *s, const uint8_t *data, size_t size, const char *file, vlm_error *e);

#endif
