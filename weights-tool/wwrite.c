/* wwrite.c: the .vlm writer (see wwrite.h). Output is written to path + ".tmp" and renamed at
 * the end, so an interrupted conversion never leaves a file that looks complete. */
#include "wwrite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct wwriter {
    FILE *f;
    char *path;
    char *tmp_path;
    uint8_t header[WF_HEADER_SIZE];
    uint8_t *dir;      /* (n, WF_RECORD_SIZE) */
    uint32_t n;
    uint32_t added;
    uint64_t pos;      /* current end of file */
    uint32_t data_crc;
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static int write_zeros(wwriter *w, uint64_t n, int count_crc)
{
    static const uint8_t zeros[WF_ALIGN];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, w->f) != k)
            return -1;
        if (count_crc)
            w->data_crc = crc32_update(w->data_crc, zeros, k);
        n -= k;
        w->pos += k;
    }
    return 0;
}

int ww_begin(const char *path, const wf_config *cfg, uint32_t n_tensors, wwriter **out, vlm_error *e)
{
    *out = NULL;
    if (n_tensors < 1 || n_tensors > WF_MAX_TENSORS)
        return vlm_fail(e, VLM_ERANGE, "%s: %u tensors, the format allows 1..%d", path, n_tensors, WF_MAX_TENSORS);
    wwriter *w = calloc(1, sizeof *w);
    if (!w)
        return vlm_fail(e, VLM_ENOMEM, "out of memory");
    w->n = n_tensors;
    w->dir = calloc(n_tensors, WF_RECORD_SIZE);
    w->path = strdup(path);
    w->tmp_path = malloc(strlen(path) + 5);
    if (!w->dir || !w->path || !w->tmp_path) {
        ww_abort(w);
        return vlm_fail(e, VLM_ENOMEM, "out of memory");
    }
    sprintf(w->tmp_path, "%s.tmp", path);
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        int err = errno; /* the reason (ENOENT, EACCES, ENOMEM), before ww_abort can change it */
        ww_abort(w);
        return vlm_fail(e, VLM_EIO, "%s: cannot create: %s", path, strerror(err));
    }
    memcpy(w->header, WF_MAGIC, 8);
    put_u32(w->header + 8, WF_VERSION);
    put_u32(w->header + 12, n_tensors);
    put_u64(w->header + 24, WF_HEADER_SIZE);
    uint64_t dir_end = WF_HEADER_SIZE + (uint64_t)n_tensors * WF_RECORD_SIZE;
    uint64_t data_off = (dir_end + WF_ALIGN - 1) / WF_ALIGN * WF_ALIGN;
    put_u64(w->header + 32, data_off);
    wf_config_store(cfg, w->header);
    /* Placeholder header and directory, rewritten by ww_finish. */
    if (write_zeros(w, data_off, 0)) {
        ww_abort(w);
        return vlm_fail(e, VLM_EIO, "%s: write failed", path);
    }
    *out = w;
    return 0;
}

int ww_add(wwriter *w, const char *name, uint32_t type, uint32_t ndim, const uint32_t *dims,
           const void *data, uint64_t nbytes, vlm_error *e)
{
    int ok;
    uint64_t want = wf_tensor_bytes(type, ndim, dims, &ok);
    if (w->added >= w->n)
        return vlm_fail(e, VLM_EARG, "%s: more tensors than the %u announced", w->path, w->n);
    if (strlen(name) >= WF_NAME_MAX)
        return vlm_fail(e, VLM_EARG, "%s: tensor name '%s' longer than %d bytes", w->path, name, WF_NAME_MAX - 1);
    if (!ok || want != nbytes)
        return vlm_fail(e, VLM_EARG, "%s: tensor '%s': %llu bytes do not fit its %s shape", w->path, name,
                        (unsigned long long)nbytes, wt_name(type));
    uint64_t pad = (WF_ALIGN - w->pos % WF_ALIGN) % WF_ALIGN;
    if (write_zeros(w, pad, 1))
        return vlm_fail(e, VLM_EIO, "%s: write failed", w->path);
    uint8_t *r = w->dir + (size_t)w->added * WF_RECORD_SIZE;
    memcpy(r, name, strlen(name));
    put_u32(r + 64, type);
    put_u32(r + 68, ndim);
    for (uint32_t d = 0; d < ndim; d++)
        put_u32(r + 72 + 4 * d, dims[d]);
    put_u64(r + 88, w->pos);
    put_u64(r + 96, nbytes);
    if (fwrite(data, 1, (size_t)nbytes, w->f) != nbytes)
        return vlm_fail(e, VLM_EIO, "%s: write failed", w->path);
    w->data_crc = crc32_update(w->data_crc, data, (size_t)nbytes);
    w->pos += nbytes;
    w->added++;
    return 0;
}

int ww_finish(wwriter *w, vlm_error *e)
{
    int rc = 0;
    if (w->added != w->n) {
        rc = vlm_fail(e, VLM_EARG, "%s: %u tensors written, %u announced", w->path, w->added, w->n);
        ww_abort(w);
        return rc;
    }
    put_u64(w->header + 16, w->pos);
    put_u32(w->header + 44, w->data_crc);
    uint32_t crc = crc32_update(0, w->header, WF_HEADER_SIZE);
    crc = crc32_update(crc, w->dir, (size_t)w->n * WF_RECORD_SIZE);
    put_u32(w->header + 40, crc);
    if (fseek(w->f, 0, SEEK_SET) || fwrite(w->header, 1, WF_HEADER_SIZE, w->f) != WF_HEADER_SIZE ||
        fwrite(w->dir, WF_RECORD_SIZE, w->n, w->f) != w->n || fclose(w->f)) {
        w->f = NULL;
        rc = vlm_fail(e, VLM_EIO, "%s: write failed", w->path);
        ww_abort(w);
        return rc;
    }
    w->f = NULL;
    if (rename(w->tmp_path, w->path)) {
        rc = vlm_fail(e, VLM_EIO, "%s: cannot rename the finished file into place", w->path);
        ww_abort(w);
        return rc;
    }
    free(w->dir);
    free(w->path);
    free(w->tmp_path);
    free(w);
    return 0;
}

void ww_abort(wwriter *w)
{
    if (!w)
        return;
    if (w->f)
        fclose(w->f);
    if (w->tmp_path)
        remove(w->tmp_path);
    free(w->dir);
    free(w->path);
    free(w->tmp_path);
    free(w);
}
