/* wfile.c: the only code that reads .vlm file bytes. It maps the file and validates the header,
 * the directory and the placement of every tensor before any pointer into the mapping leaves
 * this file; afterwards the rest of the runtime may trust struct wfile. Format: wfile.h. */
#include "wfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels.h"
#include "util.h"

_Static_assert(sizeof(wf_config) % 4 == 0 && sizeof(wf_config) <= WF_HEADER_SIZE - WF_CONFIG_OFFSET,
               "wf_config must be 4-byte words that fit the header");

const char *wt_name(uint32_t type)
{
    static const char *const names[WT_COUNT] = {"f32", "f16", "q8", "q4", "i32", "u8"};
    return type < WT_COUNT ? names[type] : "?";
}

uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
    static uint32_t table[256];
    if (!table[1]) { /* Idempotent: concurrent first calls compute the same values. */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    }
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void wf_config_store(const wf_config *c, uint8_t *header) { memcpy(header + WF_CONFIG_OFFSET, c, sizeof *c); }
void wf_config_load(wf_config *c, const uint8_t *header) { memcpy(c, header + WF_CONFIG_OFFSET, sizeof *c); }

uint64_t wf_tensor_bytes(uint32_t type, uint32_t ndim, const uint32_t *dims, int *ok)
{
    size_t n = 1;
    *ok = 0;
    if (ndim < 1 || ndim > 4 || type >= WT_COUNT)
        return 0;
    for (uint32_t i = 0; i < ndim; i++)
        if (dims[i] == 0 || dims[i] > 0x7fffffffu || ck_mul(n, dims[i], &n))
            return 0;
    size_t bytes;
    switch (type) {
    case WT_F32:
    case WT_I32:
        if (ck_mul(n, 4, &bytes))
            return 0;
        break;
    case WT_F16:
        if (ck_mul(n, 2, &bytes))
            return 0;
        break;
    case WT_U8:
        bytes = n;
        break;
    default: /* q8/q4: whole blocks along the innermost dimension */
        if (dims[ndim - 1] % QK)
            return 0;
        if (ck_mul(n / QK, type == WT_Q8 ? sizeof(blk_q8) : q4_row_bytes(1), &bytes))
            return 0;
    }
    *ok = 1;
    return bytes;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const wf_tensor *)a)->name, ((const wf_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const wf_tensor *x = *(const wf_tensor *const *)a;
    const wf_tensor *y = *(const wf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Parses and checks record i; the name is checked before it is used in messages. */
static int parse_record(const char *path, const uint8_t *r, uint32_t i, wf_tensor *t, vlm_error *e)
{
    memcpy(t->name, r, WF_NAME_MAX);
    size_t len = strnlen(t->name, WF_NAME_MAX);
    if (len == 0 || len == WF_NAME_MAX)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor record %u: name is empty or not NUL-terminated", path, i);
    for (size_t j = 0; j < WF_NAME_MAX; j++) {
        unsigned char ch = (unsigned char)t->name[j];
        if (j < len ? (ch < 0x21 || ch > 0x7e) : ch != 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: tensor record %u: name has byte 0x%02x at %zu", path, i, ch, j);
    }
    t->type = rd_u32(r + 64);
    t->ndim = rd_u32(r + 68);
    for (int d = 0; d < 4; d++)
        t->dims[d] = rd_u32(r + 72 + 4 * d);
    t->offset = rd_u64(r + 88);
    t->nbytes = rd_u64(r + 96);
    if (t->type >= WT_COUNT)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': unknown type %u", path, t->name, t->type);
    if (t->ndim < 1 || t->ndim > 4)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': ndim %u not in 1..4", path, t->name, t->ndim);
    for (uint32_t d = t->ndim; d < 4; d++)
        if (t->dims[d] != 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': unused dim %u is %u, not 0", path, t->name, d, t->dims[d]);
    for (int j = 104; j < WF_RECORD_SIZE; j++)
        if (r[j])
            return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': reserved record byte %d is not 0", path, t->name, j);
    int ok;
    uint64_t want = wf_tensor_bytes(t->type, t->ndim, t->dims, &ok);
    if (!ok)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': invalid %s shape [%u %u %u %u] (dims must be 1..2^31-1%s)",
                        path, t->name, wt_name(t->type), t->dims[0], t->dims[1], t->dims[2], t->dims[3],
                        t->type == WT_Q8 || t->type == WT_Q4 ? ", innermost a multiple of 32" : "");
    if (t->nbytes != want)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': nbytes %llu, expected %llu for its shape", path, t->name,
                        (unsigned long long)t->nbytes, (unsigned long long)want);
    if (t->offset % WF_ALIGN)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': offset %llu is not a multiple of %d", path, t->name,
                        (unsigned long long)t->offset, WF_ALIGN);
    return 0;
}

static int validate(wfile *wf, vlm_error *e)
{
    const char *path = wf->path;
    const uint8_t *h = wf->map;
    if (wf->size < WF_HEADER_SIZE)
        return vlm_fail(e, VLM_EFORMAT, "%s: %zu bytes, smaller than the %d-byte header", path, wf->size, WF_HEADER_SIZE);
    if (memcmp(h, WF_MAGIC, 8))
        return vlm_fail(e, VLM_EFORMAT, "%s: not a .vlm weight file (bad magic; convert checkpoints with weights-tool)", path);
    uint32_t version = rd_u32(h + 8);
    if (version != WF_VERSION)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: format version %u, this build reads version %d%s", path, version,
                        WF_VERSION,
                        version < WF_VERSION ? " (q4 rows changed layout in version 2): reconvert the checkpoint "
                                               "with weights-tool"
                                             : " (a newer file: update vlm)");
    uint32_t n = rd_u32(h + 12);
    uint64_t fsize = rd_u64(h + 16);
    uint64_t dir_off = rd_u64(h + 24);
    uint64_t data_off = rd_u64(h + 32);
    if (fsize != wf->size)
        return vlm_fail(e, VLM_EFORMAT, "%s: header says %llu bytes, file has %zu (truncated or appended?)", path,
                        (unsigned long long)fsize, wf->size);
    if (n < 1 || n > WF_MAX_TENSORS)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor count %u not in 1..%d", path, n, WF_MAX_TENSORS);
    if (dir_off != WF_HEADER_SIZE)
        return vlm_fail(e, VLM_EFORMAT, "%s: directory offset %llu, expected %d", path, (unsigned long long)dir_off,
                        WF_HEADER_SIZE);
    size_t dir_end = WF_HEADER_SIZE + (size_t)n * WF_RECORD_SIZE; /* n is bounded: no overflow */
    size_t want_data = (dir_end + WF_ALIGN - 1) / WF_ALIGN * WF_ALIGN;
    if (data_off != want_data || data_off > wf->size)
        return vlm_fail(e, VLM_EFORMAT, "%s: data offset %llu, expected %zu within the file of %zu bytes", path,
                        (unsigned long long)data_off, want_data, wf->size);
    uint8_t hdr[WF_HEADER_SIZE];
    memcpy(hdr, h, WF_HEADER_SIZE);
    memset(hdr + 40, 0, 4);
    uint32_t crc = crc32_update(0, hdr, WF_HEADER_SIZE);
    crc = crc32_update(crc, h + WF_HEADER_SIZE, dir_end - WF_HEADER_SIZE);
    if (crc != rd_u32(h + 40))
        return vlm_fail(e, VLM_EFORMAT, "%s: header/directory CRC mismatch (stored %08x, computed %08x): file corrupt",
                        path, rd_u32(h + 40), crc);
    wf->data_crc = rd_u32(h + 44);
    wf->data_offset = data_off;
    wf_config_load(&wf->cfg, h);

    wf->tensors = calloc(n, sizeof *wf->tensors);
    wf_tensor **by_offset = calloc(n, sizeof *by_offset);
    if (!wf->tensors || !by_offset) {
        free(by_offset);
        return vlm_fail(e, VLM_ENOMEM, "%s: cannot allocate the directory of %u tensors", path, n);
    }
    wf->n_tensors = n;
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++) {
        rc = parse_record(path, h + WF_HEADER_SIZE + (size_t)i * WF_RECORD_SIZE, i, &wf->tensors[i], e);
        by_offset[i] = &wf->tensors[i];
    }
    if (!rc) {
        /* Placement: each tensor inside [data_offset, size), none overlapping the next. */
        qsort(by_offset, n, sizeof *by_offset, cmp_offset);
        uint64_t end = data_off;
        for (uint32_t i = 0; i < n && !rc; i++) {
            const wf_tensor *t = by_offset[i];
            if (t->offset < end || t->offset > wf->size || t->nbytes > wf->size - t->offset)
                rc = vlm_fail(e, VLM_EFORMAT,
                              "%s: tensor '%s': bytes [%llu, +%llu) overlap the previous tensor or leave the file (%zu bytes)",
                              path, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes, wf->size);
            else
                end = t->offset + t->nbytes;
        }
    }
    free(by_offset);
    if (!rc) {
        qsort(wf->tensors, n, sizeof *wf->tensors, cmp_name);
        for (uint32_t i = 1; i < n && !rc; i++)
            if (!strcmp(wf->tensors[i - 1].name, wf->tensors[i].name))
                rc = vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s' appears twice", path, wf->tensors[i].name);
    }
    if (rc)
        return rc;
    for (uint32_t i = 0; i < n; i++)
        wf->tensors[i].data = wf->map + wf->tensors[i].offset;
    return 0;
}

int wf_open(const char *path, wfile *wf, vlm_error *e)
{
    memset(wf, 0, sizeof *wf);
    struct stat st;
    int fd = open_regular(path, "model file", &st, e);
    if (fd < 0)
        return fd;
    if (st.st_size <= 0) {
        close(fd);
        return vlm_fail(e, VLM_EFORMAT, "%s: the model file is empty", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return vlm_fail(e, VLM_ERANGE, "%s: too large to map", path);
    }
    wf->size = (size_t)st.st_size;
    void *m = mmap(NULL, wf->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (m == MAP_FAILED)
        return vlm_fail(e, err == ENOMEM ? VLM_ENOMEM : VLM_EIO, "%s: cannot map %zu bytes: %s", path, wf->size,
                        strerror(err));
    wf->map = m;
    wf->path = strdup(path);
    int rc = wf->path ? validate(wf, e) : vlm_fail(e, VLM_ENOMEM, "out of memory");
    if (rc)
        wf_close(wf);
    return rc;
}

void wf_close(wfile *wf)
{
    if (wf->map)
        munmap((void *)wf->map, wf->size);
    free((void *)wf->path);
    free(wf->tensors);
    memset(wf, 0, sizeof *wf);
}

const wf_tensor *wf_find(const wfile *wf, const char *name)
{
    size_t lo = 0;
    size_t hi = wf->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(wf->tensors[mid].name, name);
        if (!c)
            return &wf->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int wf_verify_data(const wfile *wf, vlm_error *e)
{
    uint32_t crc = crc32_update(0, wf->map + wf->data_offset, wf->size - wf->data_offset);
    if (crc != wf->data_crc)
        return vlm_fail(e, VLM_EFORMAT, "%s: data CRC mismatch (stored %08x, computed %08x): tensor data corrupt",
                        wf->path, wf->data_crc, crc);
    return 0;
}
