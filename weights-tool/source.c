/* source.c: the public checkpoint API of source.h. Owns src_open (directories, single
 * files, sharded *.index.json sets), the tensor set and its name index, the shared
 * shape/stride bounds check used by both containers, and the conversion of any stored
 * dtype and stride pattern to row-major float32. Container parsing lives in
 * safetensors.c and torchzip.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "source_internal.h"
#include "util.h"

/* Contract: d is a valid src_dtype; anything else reports 1 so callers never divide by 0. */
size_t src_dtype_size(src_dtype d)
{
    switch (d) {
    case SRC_F64:
    case SRC_I64: return 8;
    case SRC_F32:
    case SRC_I32: return 4;
    case SRC_F16:
    case SRC_BF16:
    case SRC_I16: return 2;
    case SRC_I8:
    case SRC_U8:
    case SRC_BOOL: return 1;
    }
    return 1;
}

/* Contract: returns a static string for every input ("?" when out of range). */
const char *src_dtype_name(src_dtype d)
{
    static const char *const names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
    if ((unsigned)d >= sizeof names / sizeof names[0])
        return "?";
    return names[d];
}

/* Contract: returns a new empty set or NULL when out of memory. */
src_set *src_set_new(void)
{
    return calloc(1, sizeof(src_set));
}

/* Contract: name is NUL-terminated; map (may be NULL) is owned by the set on success. */
const char *src_set_add_file(src_set *s, const char *name, void *map, size_t map_size)
{
    if (s->nfiles == s->fcap) {
        int ncap = s->fcap ? s->fcap * 2 : 4;
        src_file *nf = realloc(s->files, (size_t)ncap * sizeof *nf);
        if (!nf)
            return NULL;
        s->files = nf;
        s->fcap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    s->files[s->nfiles].name = copy;
    s->files[s->nfiles].map = map;
    s->files[s->nfiles].map_size = map_size;
    s->nfiles++;
    return copy;
}

/* Contract: t->name is heap-allocated; ownership passes to the set even on failure. */
int src_set_push(src_set *s, const src_tensor *t, vlm_error *e)
{
    if (s->count >= SRC_MAX_TENSORS) {
        free(t->name);
        return vlm_fail(e, VLM_ERANGE, "%s: more than %d tensors", t->file, SRC_MAX_TENSORS);
    }
    if (s->count == s->cap) {
        int ncap = s->cap ? s->cap * 2 : 64;
        src_tensor *nt = realloc(s->tensors, (size_t)ncap * sizeof *nt);
        if (!nt) {
            free(t->name);
            return vlm_fail(e, VLM_ENOMEM, "%s: out of memory for %d tensors", t->file, ncap);
        }
        s->tensors = nt;
        s->cap = ncap;
    }
    s->tensors[s->count++] = *t;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const src_tensor *ta = *(const src_tensor *const *)a;
    const src_tensor *tb = *(const src_tensor *const *)b;
    return strcmp(ta->name, tb->name);
}

/* Contract: called once after the last src_set_push; the tensors array must not grow
 * afterwards because the index points into it. */
int src_set_finish(src_set *s, vlm_error *e)
{
    free(s->by_name);
    s->by_name = NULL;
    if (s->count == 0)
        return 0;
    s->by_name = malloc((size_t)s->count * sizeof *s->by_name);
    if (!s->by_name)
        return vlm_fail(e, VLM_ENOMEM, "out of memory indexing %d tensors", s->count);
    for (int i = 0; i < s->count; i++)
        s->by_name[i] = &s->tensors[i];
    qsort(s->by_name, (size_t)s->count, sizeof *s->by_name, cmp_tensor_name);
    for (int i = 1; i < s->count; i++) {
        if (strcmp(s->by_name[i - 1]->name, s->by_name[i]->name) == 0)
            return vlm_fail(e, VLM_EFORMAT, "tensor '%s' is present twice (in %s and in %s)",
                            s->by_name[i]->name, s->by_name[i - 1]->file, s->by_name[i]->file);
    }
    return 0;
}

/* Contract: accepts NULL; releases every mapping and name. */
void src_close(src_set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->count; i++)
        free(s->tensors[i].name);
    free(s->tensors);
    free(s->by_name);
    for (int i = 0; i < s->nfiles; i++) {
        if (s->files[i].map)
            munmap(s->files[i].map, s->files[i].map_size);
        free(s->files[i].name);
    }
    free(s->files);
    free(s);
}

int src_count(const src_set *s) { return s ? s->count : 0; }

/* Contract: i in [0, src_count(s)); NULL otherwise. */
const src_tensor *src_at(const src_set *s, int i)
{
    if (!s || i < 0 || i >= s->count)
        return NULL;
    return &s->tensors[i];
}

/* Contract: needs src_set_finish to have run (src_open does it). */
const src_tensor *src_find(const src_set *s, const char *name)
{
    if (!s || !s->by_name || !name)
        return NULL;
    size_t lo = 0, hi = (size_t)s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->by_name[mid]->name, name);
        if (c == 0)
            return s->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Contract: t passed src_check_extent at load, so the product cannot overflow. */
size_t src_numel(const src_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

int src_check_extent(const char *what, int ndim, const int64_t *shape, const int64_t *stride,
                     uint64_t offset, uint64_t avail_elems, src_dtype dtype, size_t *numel,
                     vlm_error *e)
{
    if (ndim < 0 || ndim > SRC_MAX_DIMS)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: %d dimensions (at most %d supported)", what, ndim,
                        SRC_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: dimension %d has negative size %lld", what, i,
                            (long long)shape[i]);
        if (stride[i] < 0)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: dimension %d has negative stride %lld", what, i,
                            (long long)stride[i]);
        if (ck_mul(n, (size_t)shape[i], &n))
            return vlm_fail(e, VLM_ERANGE, "%s: element count overflows at dimension %d (size %lld)",
                            what, i, (long long)shape[i]);
    }
    size_t bytes;
    if (ck_mul(n, src_dtype_size(dtype), &bytes) || n > (size_t)INT64_MAX)
        return vlm_fail(e, VLM_ERANGE, "%s: %zu elements of %s overflow the address space", what, n,
                        src_dtype_name(dtype));
    *numel = n;
    if (n == 0)
        return 0;
    uint64_t last = offset;
    for (int i = 0; i < ndim; i++) {
        uint64_t step;
        if (__builtin_mul_overflow((uint64_t)(shape[i] - 1), (uint64_t)stride[i], &step) ||
            __builtin_add_overflow(last, step, &last))
            return vlm_fail(e, VLM_EFORMAT, "%s: offset %llu with strides reaches past 2^64 at dimension %d",
                            what, (unsigned long long)offset, i);
    }
    if (last >= avail_elems)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: reaches element %llu (offset %llu, shape and strides) but its storage has %llu",
                        what, (unsigned long long)last, (unsigned long long)offset,
                        (unsigned long long)avail_elems);
    return 0;
}

/* Converts n elements spaced step bytes apart starting at p. */
static void convert_run(src_dtype d, const uint8_t *p, size_t step, size_t n, float *out)
{
    switch (d) {
    case SRC_F32:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = rd_f32(p);
        break;
    case SRC_F16:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = f16_to_f32(rd_u16(p));
        break;
    case SRC_BF16:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = bf16_to_f32(rd_u16(p));
        break;
    case SRC_F64:
        for (size_t i = 0; i < n; i++, p += step) {
            uint64_t u = rd_u64(p);
            double v;
            memcpy(&v, &u, 8);
            out[i] = (float)v;
        }
        break;
    case SRC_I64:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = (float)(int64_t)rd_u64(p);
        break;
    case SRC_I32:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = (float)(int32_t)rd_u32(p);
        break;
    case SRC_I16:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = (float)(int16_t)rd_u16(p);
        break;
    case SRC_I8:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = (float)(int8_t)p[0];
        break;
    case SRC_U8:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = (float)p[0];
        break;
    case SRC_BOOL:
        for (size_t i = 0; i < n; i++, p += step)
            out[i] = p[0] ? 1.0f : 0.0f;
        break;
    }
}

/* Contract: t comes from a src_set (its extent was checked at load); out holds
 * src_numel(t) floats. The innermost dimension is converted as one run; the outer
 * dimensions are walked with an odometer so any stride pattern works. */
int src_read_f32(const src_tensor *t, float *out, vlm_error *e)
{
    if (!t || (!out && src_numel(t) > 0))
        return vlm_fail(e, VLM_EARG, "src_read_f32: NULL tensor or output");
    if ((unsigned)t->dtype > SRC_BOOL)
        return vlm_fail(e, VLM_EARG, "%s: tensor '%s' has invalid dtype %d", t->file, t->name, (int)t->dtype);
    size_t numel = src_numel(t);
    if (numel == 0)
        return 0;
    size_t es = src_dtype_size(t->dtype);
    if (t->ndim == 0) {
        convert_run(t->dtype, t->data, es, 1, out);
        return 0;
    }
    /* Contiguous row-major (size-1 dimensions may carry any stride): one run. */
    int contiguous = 1;
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect)
            contiguous = 0;
        expect *= t->shape[i];
    }
    if (contiguous) {
        convert_run(t->dtype, t->data, es, numel, out);
        return 0;
    }
    int last = t->ndim - 1;
    size_t run = (size_t)t->shape[last];
    size_t step = (size_t)t->stride[last] * es;
    int64_t idx[SRC_MAX_DIMS] = {0};
    size_t done = 0;
    while (done < numel) {
        size_t off = 0;
        for (int i = 0; i < last; i++)
            off += (size_t)idx[i] * (size_t)t->stride[i];
        convert_run(t->dtype, t->data + off * es, step, run, out + done);
        done += run;
        for (int i = last - 1; i >= 0; i--) {
            if (++idx[i] < t->shape[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

/* ---- files ---- */

/* Maps path read-only and registers it in s. *name gets the set's copy of the path. */
static int map_file(src_set *s, const char *path, const uint8_t **data, size_t *size, const char **name,
                    vlm_error *e)
{
    struct stat st;
    int fd = open_regular(path, "checkpoint file", &st, e);
    if (fd < 0)
        return fd;
    if (st.st_size <= 0) {
        close(fd);
        return vlm_fail(e, VLM_EFORMAT, "%s: empty file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return vlm_fail(e, VLM_ERANGE, "%s: %lld bytes do not fit in memory", path, (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED)
        return vlm_fail(e, VLM_EIO, "%s: cannot map %zu bytes: %s", path, len, strerror(err));
    const char *kept = src_set_add_file(s, path, map, len);
    if (!kept) {
        munmap(map, len);
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", path);
    }
    *data = map;
    *size = len;
    *name = kept;
    return 0;
}

/* Maps one checkpoint file and parses it by its first bytes: a ZIP local header means
 * torch.save, anything else is read as safetensors. *kept_name may be NULL. */
static int load_file(src_set *s, const char *path, const char **kept_name, vlm_error *e)
{
    const uint8_t *data = NULL;
    size_t size = 0;
    const char *name = NULL;
    int rc = map_file(s, path, &data, &size, &name, e);
    if (rc)
        return rc;
    if (kept_name)
        *kept_name = name;
    if (size >= 4 && memcmp(data, "PK\003\004", 4) == 0)
        return src_load_torchzip(s, data, size, name, e);
    /* torch.save before 1.6 wrote a bare pickle stream (magic number, protocol, sys info,
     * then tensors in a legacy layout): recognisable by the PROTO opcode in front. A
     * safetensors header length can begin with the same two bytes (a header of 640 bytes is
     * 80 02 00 ...; one padded header in 32 ends in 0x80), so a file whose JSON header opens
     * at byte 8 is safetensors whatever its first bytes; a legacy stream has the magic
     * number's bytes there, never '{'. */
    if (size >= 2 && data[0] == 0x80 && data[1] <= 5 && !(size > 8 && data[8] == '{'))
        return vlm_fail(e, VLM_EUNSUPPORTED,
                        "%s: legacy (pre-1.6) torch.save format is not supported; re-save it with a newer torch "
                        "or convert it to safetensors", name);
    return src_load_safetensors(s, data, size, name, e);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A shard name from an index must be a plain file name in the index's directory. */
static int shard_name_ok(const json_value *v)
{
    if (!v || v->type != JSON_STRING || v->len == 0 || v->len > 1024 || strlen(v->str) != v->len)
        return 0;
    if (strchr(v->str, '/') || strchr(v->str, '\\'))
        return 0;
    return strcmp(v->str, ".") != 0 && strcmp(v->str, "..") != 0;
}

/* Loads every shard an index names, then checks that each listed tensor came from the
 * shard the index says. Duplicates across shards are caught by src_set_finish. */
static int load_index(src_set *s, const char *path, vlm_error *e)
{
    json_doc *doc = json_parse_file(path, SRC_MAX_JSON, e);
    if (!doc)
        return e ? e->code : VLM_EFORMAT;
    int rc = 0;
    const char **kept = NULL; /* (map->len) the loaded name of each entry's shard */
    size_t *first_of = NULL; /* (nshards) the first weight_map entry naming each distinct shard */
    size_t nshards = 0;
    char *joined = NULL;
    const json_value *map = json_get(json_root(doc), "weight_map");
    if (!map || map->type != JSON_OBJECT) {
        rc = vlm_fail(e, VLM_EFORMAT, "%s: no \"weight_map\" object", path);
        goto out;
    }
    if (map->len == 0) {
        rc = vlm_fail(e, VLM_EFORMAT, "%s: \"weight_map\" is empty", path);
        goto out;
    }
    kept = calloc(map->len, sizeof *kept);
    first_of = malloc(map->len * sizeof *first_of);
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    joined = malloc(dirlen + 1025);
    if (!kept || !joined || !first_of) {
        rc = vlm_fail(e, VLM_ENOMEM, "%s: out of memory for %zu entries", path, map->len);
        goto out;
    }
    memcpy(joined, path, dirlen);
    for (size_t i = 0; i < map->len && rc == 0; i++) {
        const json_value *v = map->items[i];
        if (!shard_name_ok(v)) {
            rc = vlm_fail(e, VLM_EFORMAT,
                          "%s: weight_map['%s'] is not a plain file name in the index's directory (got '%s')",
                          path, map->keys[i], v && v->type == JSON_STRING ? v->str : "(not a string)");
            break;
        }
        /* Each distinct shard is loaded once; shards are few, so a scan of them is cheap
         * even for indexes of 100k tensors. */
        for (size_t j = 0; j < nshards; j++) {
            if (strcmp(map->items[first_of[j]]->str, v->str) == 0) {
                kept[i] = kept[first_of[j]];
                break;
            }
        }
        if (!kept[i]) {
            memcpy(joined + dirlen, v->str, v->len + 1);
            rc = load_file(s, joined, &kept[i], e);
            first_of[nshards++] = i;
        }
    }
    if (rc == 0)
        rc = src_set_finish(s, e);
    for (size_t i = 0; i < map->len && rc == 0; i++) {
        const src_tensor *t = src_find(s, map->keys[i]);
        if (!t)
            rc = vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s' is listed for %s but that file does not have it",
                          path, map->keys[i], kept[i]);
        else if (t->file != kept[i])
            rc = vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s' is listed for %s but found in %s", path,
                          map->keys[i], kept[i], t->file);
    }
out:
    free(first_of);
    free(joined);
    free(kept);
    json_free(doc);
    return rc;
}

int src_open(const char *path, src_set **out, vlm_error *e)
{
    static const char *const candidates[] = {"model.safetensors", "model.safetensors.index.json",
                                             "pytorch_model.bin", "pytorch_model.bin.index.json"};
    if (!path || !out)
        return vlm_fail(e, VLM_EARG, "src_open: NULL argument");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return vlm_fail(e, VLM_EIO, "%s: cannot open: %s", path, strerror(errno));
    src_set *s = src_set_new();
    if (!s)
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", path);
    char *file = NULL;
    int rc;
    if (S_ISDIR(st.st_mode)) {
        size_t plen = strlen(path);
        file = malloc(plen + 64);
        if (!file) {
            src_close(s);
            return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", path);
        }
        int found = 0;
        for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !found; i++) {
            snprintf(file, plen + 64, "%s%s%s", path, plen && path[plen - 1] == '/' ? "" : "/", candidates[i]);
            struct stat fst;
            found = stat(file, &fst) == 0 && S_ISREG(fst.st_mode);
        }
        if (!found) {
            free(file);
            src_close(s);
            return vlm_fail(e, VLM_EIO,
                            "%s: no model.safetensors, model.safetensors.index.json, pytorch_model.bin "
                            "or pytorch_model.bin.index.json in this directory", path);
        }
    } else {
        file = strdup(path);
        if (!file) {
            src_close(s);
            return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", path);
        }
    }
    if (ends_with(file, ".index.json"))
        rc = load_index(s, file, e);
    else {
        rc = load_file(s, file, NULL, e);
        if (rc == 0)
            rc = src_set_finish(s, e);
    }
    free(file);
    if (rc) {
        src_close(s);
        return rc;
    }
    *out = s;
    return 0;
}
