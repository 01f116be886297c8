/* npy.c: NumPy .npy reading and writing.
 * Owns the byte layout (magic, version, header length, Python-dict header, raw C-order data),
 * a strict parser for the header dict that numpy writes, and the size checks that keep a
 * malformed or hostile file from causing an over-read or an oversized allocation.
 * Format reference: numpy's "format" module documentation (NEP 1). */
#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* "\x93NUMPY", major, minor. */
#define NPY_MAGIC_LEN 6
#define NPY_PREAMBLE_V1 10 /* magic + 2 version bytes + u16 header length */
#define NPY_PREAMBLE_V2 12 /* magic + 2 version bytes + u32 header length */
#define NPY_MAX_DIMS 8     /* capacity of npy_array.shape */
#define NPY_WRITE_ALIGN 64 /* numpy >= 1.14 aligns the data start to 64 bytes */

static const uint8_t npy_magic[NPY_MAGIC_LEN] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The dtypes we accept: little-endian (or byte-order-free) plain numbers only. Read-only table. */
static const struct npy_dtype_info {
    const char *descr;
    size_t size;
} npy_dtypes[] = {
    {"<f4", 4}, {"<f8", 8}, {"<f2", 2}, {"<i8", 8}, {"<i4", 4}, {"<i2", 2}, {"|i1", 1},
    {"<u8", 8}, {"<u4", 4}, {"<u2", 2}, {"|u1", 1}, {"|b1", 1},
};

/* What the header says, before any data is touched. */
typedef struct npy_header {
    char dtype[8];
    size_t elem_size;
    int ndim;
    int64_t shape[NPY_MAX_DIMS]; /* (ndim) */
    size_t numel;
    size_t data_bytes;  /* numel * elem_size, overflow-checked */
    size_t data_offset; /* preamble + header length */
} npy_header;

/* Reads the fixed preamble of buf[0, len). On success *data_offset is where the data starts
 * and *dict_off, *dict_len locate the header text. len may be shorter than the whole file, but
 * must hold at least the preamble. Errors: VLM_EFORMAT (bad magic, truncated),
 * VLM_EUNSUPPORTED (unknown major version). */
static int npy_parse_preamble(const uint8_t *buf, size_t len, const char *name, size_t *dict_off,
                              size_t *dict_len, vlm_error *e)
{
    if (len < NPY_PREAMBLE_V1)
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy file too short (%zu bytes, need at least %d)",
                        name, len, NPY_PREAMBLE_V1);
    if (memcmp(buf, npy_magic, NPY_MAGIC_LEN) != 0)
        return vlm_fail(e, VLM_EFORMAT, "%s: not a .npy file (bad magic, expected \\x93NUMPY)",
                        name);
    unsigned major = buf[6], minor = buf[7];
    if (major == 1) {
        *dict_off = NPY_PREAMBLE_V1;
        *dict_len = rd_u16(buf + 8);
        return 0;
    }
    if (major == 2 || major == 3) {
        if (len < NPY_PREAMBLE_V2)
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: .npy version %u.%u preamble truncated (%zu bytes, need %d)",
                            name, major, minor, len, NPY_PREAMBLE_V2);
        *dict_off = NPY_PREAMBLE_V2;
        *dict_len = rd_u32(buf + 8);
        return 0;
    }
    return vlm_fail(e, VLM_EUNSUPPORTED, "%s: .npy format version %u.%u (expected 1.0, 2.0 or 3.0)",
                    name, major, minor);
}

/* A cursor over the header text; the dict grammar is the tiny subset of Python literals
 * that numpy writes: {'key': value, ...} with string, bool and int-tuple values. */
typedef struct npy_cursor {
    const char *p;
    const char *end;
} npy_cursor;

static void npy_skip_ws(npy_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Consumes ch after optional whitespace; returns 1 if it was there. */
static int npy_accept(npy_cursor *c, char ch)
{
    npy_skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* Parses a quoted string ('...' or "...", no escapes) into out[cap]. Returns 0 or -1 if it is
 * not a string, is unterminated, holds a backslash or does not fit. */
static int npy_parse_string(npy_cursor *c, char *out, size_t cap)
{
    npy_skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return -1;
    c->p++; /* closing quote */
    out[n] = '\0';
    return 0;
}

/* Parses a Python bool literal. Returns 0 (value in *v) or -1. */
static int npy_parse_bool(npy_cursor *c, int *v)
{
    npy_skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *v = 1;
    } else if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *v = 0;
    } else {
        return -1;
    }
    /* "Falsey" is an identifier, not False. */
    if (c->p < c->end && (*c->p == '_' || (*c->p >= 'a' && *c->p <= 'z') ||
                          (*c->p >= 'A' && *c->p <= 'Z') || (*c->p >= '0' && *c->p <= '9')))
        return -1;
    return 0;
}

/* Parses a shape tuple: "()", "(n,)", "(a, b)", "(a, b,)". A parenthesised single value
 * without a comma is an int in Python, not a tuple, so it is refused. Dimensions are decimal,
 * non-negative and at most INT64_MAX. Returns 0 or a VLM_E* code with the message filled. */
static int npy_parse_shape(npy_cursor *c, const char *name, npy_header *h, vlm_error *e)
{
    if (!npy_accept(c, '('))
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: 'shape' is not a tuple", name);
    h->ndim = 0;
    if (npy_accept(c, ')'))
        return 0;
    for (;;) {
        npy_skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: .npy header: 'shape' entry %d is not a non-negative integer",
                            name, h->ndim);
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            unsigned digit = (unsigned)(*c->p - '0');
            if (v > ((uint64_t)INT64_MAX - digit) / 10)
                return vlm_fail(e, VLM_ERANGE,
                                "%s: .npy header: 'shape' entry %d exceeds 2^63-1", name, h->ndim);
            v = v * 10 + digit;
            c->p++;
        }
        if (h->ndim == NPY_MAX_DIMS)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: .npy array has more than %d dimensions",
                            name, NPY_MAX_DIMS);
        h->shape[h->ndim++] = (int64_t)v;
        if (npy_accept(c, ',')) {
            if (npy_accept(c, ')'))
                return 0;
            continue;
        }
        if (npy_accept(c, ')')) {
            if (h->ndim == 1)
                return vlm_fail(e, VLM_EFORMAT,
                                "%s: .npy header: 'shape' (%lld) lacks the comma of a 1-tuple",
                                name, (long long)h->shape[0]);
            return 0;
        }
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: 'shape' tuple is malformed after entry %d",
                        name, h->ndim - 1);
    }
}

/* Parses the header dict text[0, len) into h (all but data_offset). Exactly the keys 'descr',
 * 'fortran_order' and 'shape', each once, any order; trailing whitespace only after '}'.
 * Errors: VLM_EFORMAT (syntax, keys, size overflow), VLM_EUNSUPPORTED (dtype, Fortran order,
 * too many dimensions), VLM_ERANGE (a dimension above 2^63-1). */
static int npy_parse_dict(const char *text, size_t len, const char *name, npy_header *h,
                          vlm_error *e)
{
    npy_cursor c = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    char descr[32];
    if (!npy_accept(&c, '{'))
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy header does not start with '{'", name);
    while (!npy_accept(&c, '}')) {
        char key[32];
        if (npy_parse_string(&c, key, sizeof key) != 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: expected a quoted key or '}'", name);
        if (!npy_accept(&c, ':'))
            return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: missing ':' after key '%s'", name,
                            key);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            have_descr = 1;
            if (npy_parse_string(&c, descr, sizeof descr) != 0)
                return vlm_fail(e, VLM_EUNSUPPORTED,
                                "%s: .npy header: 'descr' is not a simple dtype string "
                                "(structured dtypes are not supported)", name);
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            have_order = 1;
            int fortran;
            if (npy_parse_bool(&c, &fortran) != 0)
                return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: 'fortran_order' is not True/False",
                                name);
            if (fortran)
                return vlm_fail(e, VLM_EUNSUPPORTED,
                                "%s: .npy array is in Fortran order (only C order is supported)",
                                name);
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            have_shape = 1;
            int rc = npy_parse_shape(&c, name, h, e);
            if (rc)
                return rc;
        } else {
            return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: unexpected or repeated key '%s'",
                            name, key);
        }
        if (!npy_accept(&c, ',')) {
            if (!npy_accept(&c, '}'))
                return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: expected ',' or '}' after '%s'",
                                name, key);
            break;
        }
    }
    npy_skip_ws(&c);
    if (c.p != c.end)
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy header: %zu unexpected bytes after the dict",
                        name, (size_t)(c.end - c.p));
    if (!have_descr || !have_order || !have_shape)
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy header lacks %s", name,
                        !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");

    h->elem_size = 0;
    for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
        if (strcmp(descr, npy_dtypes[i].descr) == 0) {
            h->elem_size = npy_dtypes[i].size;
            memcpy(h->dtype, descr, strlen(descr) + 1);
        }
    if (h->elem_size == 0)
        return vlm_fail(e, VLM_EUNSUPPORTED,
                        "%s: .npy dtype '%s' (expected one of <f4 <f8 <f2 <i8 <i4 <i2 |i1 <u8 "
                        "<u4 <u2 |u1 |b1)", name, descr);

    size_t numel = 1;
    for (int d = 0; d < h->ndim; d++) {
        if ((uint64_t)h->shape[d] > SIZE_MAX || ck_mul(numel, (size_t)h->shape[d], &numel))
            return vlm_fail(e, VLM_EFORMAT, "%s: .npy shape overflows the element count at dim %d "
                            "(value %lld)", name, d, (long long)h->shape[d]);
    }
    h->numel = numel;
    if (ck_mul(numel, h->elem_size, &h->data_bytes))
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy data size overflows (%zu elements of %zu bytes)",
                        name, numel, h->elem_size);
    return 0;
}

/* Parses preamble + header from buf[0, len) (len may stop right after the header) and checks
 * that the file, total_len bytes long, holds exactly the data the header announces. */
static int npy_parse_header(const uint8_t *buf, size_t len, size_t total_len, const char *name,
                            npy_header *h, vlm_error *e)
{
    size_t dict_off, dict_len;
    int rc = npy_parse_preamble(buf, len, name, &dict_off, &dict_len, e);
    if (rc)
        return rc;
    size_t data_offset;
    if (ck_add(dict_off, dict_len, &data_offset) || data_offset > len)
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy header truncated (header length %zu, only %zu "
                        "bytes after the preamble)", name, dict_len, len - dict_off);
    rc = npy_parse_dict((const char *)buf + dict_off, dict_len, name, h, e);
    if (rc)
        return rc;
    h->data_offset = data_offset;
    size_t avail = total_len - data_offset;
    if (avail != h->data_bytes)
        return vlm_fail(e, VLM_EFORMAT, "%s: .npy data is %zu bytes, header announces %zu "
                        "(%zu elements of %s)", name, avail, h->data_bytes, h->numel, h->dtype);
    return 0;
}

/* Fills out from h and takes ownership of data. */
static void npy_fill(npy_array *out, const npy_header *h, void *data)
{
    memset(out, 0, sizeof *out);
    memcpy(out->dtype, h->dtype, sizeof out->dtype);
    out->ndim = h->ndim;
    for (int d = 0; d < h->ndim; d++)
        out->shape[d] = h->shape[d];
    out->numel = h->numel;
    out->elem_size = h->elem_size;
    out->data = data;
}

int npy_parse(const uint8_t *buf, size_t len, const char *name, npy_array *out, vlm_error *e)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!buf || !out)
        return vlm_fail(e, VLM_EARG, "npy_parse: NULL %s", !buf ? "buffer" : "output");
    if (!name)
        name = "(memory)";
    npy_header h;
    int rc = npy_parse_header(buf, len, len, name, &h, e);
    if (rc)
        return rc;
    void *data = malloc(h.data_bytes ? h.data_bytes : 1);
    if (!data)
        return vlm_fail(e, VLM_ENOMEM, "%s: cannot allocate %zu bytes for .npy data", name,
                        h.data_bytes);
    memcpy(data, buf + h.data_offset, h.data_bytes);
    npy_fill(out, &h, data);
    return 0;
}

/* Reads exactly n bytes; returns 0 or -1 on a short read or error. */
static int npy_fread_all(FILE *f, void *dst, size_t n)
{
    return n == 0 || fread(dst, 1, n, f) == n ? 0 : -1;
}

int npy_read(const char *path, npy_array *out, vlm_error *e)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return vlm_fail(e, VLM_EARG, "npy_read: NULL %s", !path ? "path" : "output");
    FILE *f = fopen(path, "rb");
    if (!f)
        return vlm_fail(e, VLM_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = 0;
    uint8_t *head = NULL;
    void *data = NULL;
    long end;
    if (fseek(f, 0, SEEK_END) != 0 || (end = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = vlm_fail(e, VLM_EIO, "%s: cannot determine the file size: %s", path, strerror(errno));
        goto out_close;
    }
    size_t file_len = (size_t)end;

    /* Read the preamble to learn the header length, then the header itself, then the data
     * straight into its final buffer (no whole-file copy). */
    uint8_t pre[NPY_PREAMBLE_V2];
    size_t pre_len = file_len < sizeof pre ? file_len : sizeof pre;
    if (npy_fread_all(f, pre, pre_len) != 0) {
        rc = vlm_fail(e, VLM_EIO, "%s: read error in the .npy preamble", path);
        goto out_close;
    }
    size_t dict_off, dict_len, head_len;
    rc = npy_parse_preamble(pre, pre_len, path, &dict_off, &dict_len, e);
    if (rc)
        goto out_close;
    if (ck_add(dict_off, dict_len, &head_len) || head_len > file_len) {
        rc = vlm_fail(e, VLM_EFORMAT, "%s: .npy header truncated (header length %zu, file %zu "
                      "bytes)", path, dict_len, file_len);
        goto out_close;
    }
    head = malloc(head_len);
    if (!head) {
        rc = vlm_fail(e, VLM_ENOMEM, "%s: cannot allocate %zu bytes for the .npy header", path,
                      head_len);
        goto out_close;
    }
    memcpy(head, pre, pre_len < head_len ? pre_len : head_len);
    if (head_len > pre_len && npy_fread_all(f, head + pre_len, head_len - pre_len) != 0) {
        rc = vlm_fail(e, VLM_EIO, "%s: read error in the .npy header", path);
        goto out_free;
    }
    npy_header h;
    rc = npy_parse_header(head, head_len, file_len, path, &h, e);
    if (rc)
        goto out_free;
    data = malloc(h.data_bytes ? h.data_bytes : 1);
    if (!data) {
        rc = vlm_fail(e, VLM_ENOMEM, "%s: cannot allocate %zu bytes for .npy data", path,
                      h.data_bytes);
        goto out_free;
    }
    if (fseek(f, (long)h.data_offset, SEEK_SET) != 0 || npy_fread_all(f, data, h.data_bytes) != 0) {
        rc = vlm_fail(e, VLM_EIO, "%s: read error in the .npy data (%zu bytes)", path,
                      h.data_bytes);
        free(data);
        goto out_free;
    }
    npy_fill(out, &h, data);
out_free:
    free(head);
out_close:
    fclose(f);
    return rc;
}

void npy_free(npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

int npy_write(const char *path, const char *dtype, const void *data, int ndim,
              const int64_t *shape, vlm_error *e)
{
    if (!path || !dtype || (ndim > 0 && !shape))
        return vlm_fail(e, VLM_EARG, "npy_write: NULL argument");
    size_t elem_size = 0;
    for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
        if (strcmp(dtype, npy_dtypes[i].descr) == 0)
            elem_size = npy_dtypes[i].size;
    if (elem_size == 0)
        return vlm_fail(e, VLM_EARG, "%s: npy_write: unsupported dtype '%s'", path, dtype);
    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return vlm_fail(e, VLM_EARG, "%s: npy_write: ndim %d (expected 0..%d)", path, ndim,
                        NPY_MAX_DIMS);

    /* Header text: the dict, then spaces, then '\n', so that the data starts at a multiple of
     * 64 bytes (numpy's own layout; lets readers mmap aligned data). */
    char dict[64 + 24 * NPY_MAX_DIMS];
    size_t numel = 1;
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     dtype);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (uint64_t)shape[d] > SIZE_MAX || ck_mul(numel, (size_t)shape[d], &numel))
            return vlm_fail(e, VLM_EARG, "%s: npy_write: bad or overflowing dim %d (value %lld)",
                            path, d, (long long)shape[d]);
        n += snprintf(dict + n, sizeof dict - (size_t)n, d == 0 ? "%lld" : ", %lld",
                      (long long)shape[d]);
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    size_t data_bytes;
    if (ck_mul(numel, elem_size, &data_bytes))
        return vlm_fail(e, VLM_EARG, "%s: npy_write: data size overflows (%zu elements)", path,
                        numel);
    if (data_bytes > 0 && !data)
        return vlm_fail(e, VLM_EARG, "%s: npy_write: NULL data for %zu elements", path, numel);

    size_t unpadded = NPY_PREAMBLE_V1 + (size_t)n + 1; /* + '\n' */
    size_t total = (unpadded + NPY_WRITE_ALIGN - 1) / NPY_WRITE_ALIGN * NPY_WRITE_ALIGN;
    size_t header_len = total - NPY_PREAMBLE_V1;
    uint8_t head[NPY_PREAMBLE_V1 + sizeof dict + NPY_WRITE_ALIGN];
    memcpy(head, npy_magic, NPY_MAGIC_LEN);
    head[6] = 1;
    head[7] = 0;
    head[8] = (uint8_t)(header_len & 0xff);
    head[9] = (uint8_t)(header_len >> 8);
    memcpy(head + NPY_PREAMBLE_V1, dict, (size_t)n);
    memset(head + NPY_PREAMBLE_V1 + n, ' ', header_len - (size_t)n - 1);
    head[total - 1] = '\n';

    FILE *f = fopen(path, "wb");
    if (!f)
        return vlm_fail(e, VLM_EIO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(head, 1, total, f) == total &&
             (data_bytes == 0 || fwrite(data, 1, data_bytes, f) == data_bytes);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        return vlm_fail(e, VLM_EIO, "%s: write error (%zu bytes): %s", path, total + data_bytes,
                        strerror(errno));
    return 0;
}

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                  vlm_error *e)
{
    return npy_write(path, "<f4", data, ndim, shape, e);
}
