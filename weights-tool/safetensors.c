/* safetensors.c: reads .safetensors files: an 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}, "__metadata__": {...}} and a data area.
 * Owns the header validation: known dtypes, integral non-negative shapes and offsets,
 * end - begin == numel * elsize, every tensor inside the file, no two tensors overlapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "source_internal.h"
#include "util.h"

/* JSON numbers are doubles: integers above 2^53 would silently round, so refuse them. */
#define ST_MAX_EXACT 9007199254740992.0

/* Byte range of one tensor in the data area, for the overlap check. */
typedef struct st_range {
    uint64_t begin, end;
    const char *name; /* the tensor, for messages (owned by the set) */
} st_range;

static int cmp_range(const void *a, const void *b)
{
    const st_range *ra = a, *rb = b;
    if (ra->begin != rb->begin)
        return ra->begin < rb->begin ? -1 : 1;
    return (ra->end > rb->end) - (ra->end < rb->end);
}

/* Contract: v may be NULL; returns 1 and sets *out for an integral number in [0, 2^53]. */
static int json_uint(const json_value *v, uint64_t *out)
{
    if (!v || v->type != JSON_NUMBER || !(v->number >= 0 && v->number <= ST_MAX_EXACT))
        return 0;
    uint64_t u = (uint64_t)v->number;
    if ((double)u != v->number)
        return 0;
    *out = u;
    return 1;
}

static int parse_dtype(const char *s, src_dtype *out)
{
    static const struct {
        const char *name;
        src_dtype d;
    } table[] = {{"F32", SRC_F32}, {"F16", SRC_F16}, {"BF16", SRC_BF16}, {"F64", SRC_F64}, {"I64", SRC_I64},
                 {"I32", SRC_I32}, {"I16", SRC_I16}, {"I8", SRC_I8},     {"U8", SRC_U8},   {"BOOL", SRC_BOOL}};
    for (size_t i = 0; s && i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(s, table[i].name) == 0) {
            *out = table[i].d;
            return 1;
        }
    }
    return 0;
}

/* Validates one header entry against the data area (data_size bytes) and pushes it. */
static int load_entry(src_set *s, const char *file, const char *name, const json_value *v, const uint8_t *area,
                      uint64_t data_size, st_range *range, vlm_error *e)
{
    if (!v || v->type != JSON_OBJECT)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': header entry is not an object", file, name);
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > SRC_MAX_NAME)
        return vlm_fail(e, VLM_EFORMAT, "%s: a tensor name is empty or longer than %d bytes", file, SRC_MAX_NAME);
    const char *dt = json_get_str(v, "dtype");
    src_tensor t;
    memset(&t, 0, sizeof t);
    if (!parse_dtype(dt, &t.dtype))
        return vlm_fail(e, dt ? VLM_EUNSUPPORTED : VLM_EFORMAT, "%s: tensor '%s': dtype '%s' is not supported "
                        "(F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)", file, name, dt ? dt : "(missing)");
    const json_value *shape = json_get(v, "shape");
    if (!shape || shape->type != JSON_ARRAY)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': \"shape\" is missing or not an array", file, name);
    if (shape->len > SRC_MAX_DIMS)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: tensor '%s' has %zu dimensions (at most %d)", file, name,
                        shape->len, SRC_MAX_DIMS);
    t.ndim = (int)shape->len;
    for (int i = 0; i < t.ndim; i++) {
        uint64_t d;
        if (!json_uint(shape->items[i], &d) || d > (uint64_t)INT64_MAX)
            return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer below 2^53",
                            file, name, i);
        t.shape[i] = (int64_t)d;
    }
    /* Row-major strides; the product is checked by src_check_extent before it matters. */
    int64_t st = 1;
    for (int i = t.ndim - 1; i >= 0; i--) {
        t.stride[i] = st;
        if (t.shape[i] > 0 && __builtin_mul_overflow(st, t.shape[i], &st))
            st = INT64_MAX;
    }
    const json_value *offs = json_get(v, "data_offsets");
    uint64_t begin, end;
    if (!offs || offs->type != JSON_ARRAY || offs->len != 2 || !json_uint(offs->items[0], &begin) ||
        !json_uint(offs->items[1], &end))
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end] of integers", file,
                        name);
    if (begin > end || end > data_size)
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte data area",
                        file, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)data_size);
    char what[SRC_MAX_NAME + 300];
    snprintf(what, sizeof what, "%s: tensor '%s'", file, name);
    size_t numel, es = src_dtype_size(t.dtype);
    /* Only the element count matters here: with row-major strides every element is in
     * [begin, end) once end - begin == numel * elsize. */
    int rc = src_check_extent(what, t.ndim, t.shape, t.stride, 0, UINT64_MAX, t.dtype, &numel, e);
    if (rc)
        return rc;
    if ((uint64_t)numel * es != end - begin) /* no overflow: checked by src_check_extent */
        return vlm_fail(e, VLM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, shape and %s need %zu",
                        file, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin), src_dtype_name(t.dtype), numel * es);
    t.name = malloc(nlen + 1);
    if (!t.name)
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", file);
    memcpy(t.name, name, nlen + 1);
    t.data = area + begin;
    t.file = file;
    range->begin = begin;
    range->end = end;
    range->name = t.name;
    return src_set_push(s, &t, e);
}

int src_load_safetensors(src_set *s, const uint8_t *data, size_t size, const char *file, vlm_error *e)
{
    if (size < 8)
        return vlm_fail(e, VLM_EFORMAT, "%s: %zu bytes is too short for a safetensors file", file, size);
    uint64_t hlen = rd_u64(data);
    if (hlen > SRC_MAX_JSON || hlen > size - 8)
        return vlm_fail(e, VLM_EFORMAT, "%s: safetensors header length %llu exceeds the file (%zu bytes) or the "
                        "%u-byte limit", file, (unsigned long long)hlen, size, SRC_MAX_JSON);
    if (hlen < 2 || data[8] != '{')
        return vlm_fail(e, VLM_EFORMAT, "%s: safetensors header does not start with a JSON object", file);
    json_doc *doc = json_parse((const char *)data + 8, (size_t)hlen, file, e);
    if (!doc)
        return e ? e->code : VLM_EFORMAT;
    const json_value *root = json_root(doc);
    int rc = 0;
    st_range *ranges = NULL;
    if (!root || root->type != JSON_OBJECT) {
        rc = vlm_fail(e, VLM_EFORMAT, "%s: safetensors header is not a JSON object", file);
        goto out;
    }
    ranges = malloc((root->len ? root->len : 1) * sizeof *ranges);
    if (!ranges) {
        rc = vlm_fail(e, VLM_ENOMEM, "%s: out of memory for %zu header entries", file, root->len);
        goto out;
    }
    const uint8_t *area = data + 8 + hlen;
    uint64_t area_size = size - 8 - hlen;
    size_t n = 0;
    for (size_t i = 0; i < root->len && rc == 0; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0)
            continue;
        rc = load_entry(s, file, root->keys[i], root->items[i], area, area_size, &ranges[n], e);
        if (rc == 0)
            n++;
    }
    if (rc == 0 && n > 1) {
        /* Empty tensors occupy no bytes and cannot overlap anything. */
        qsort(ranges, n, sizeof *ranges, cmp_range);
        const st_range *prev = NULL;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (ranges[i].begin == ranges[i].end)
                continue;
            if (prev && ranges[i].begin < prev->end)
                rc = vlm_fail(e, VLM_EFORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", file,
                              prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                              ranges[i].name, (unsigned long long)ranges[i].begin,
                              (unsigned long long)ranges[i].end);
            prev = &ranges[i];
        }
    }
out:
    free(ranges);
    json_free(doc);
    return rc;
}
