/* npz.c: reading NumPy .npz archives for the tests (see npz.h). Parses the zip central
 * directory (zip64 extra fields included, as numpy writes members with force_zip64), locates
 * each member through its local header, inflates it with zlib_inflate (raw deflate), checks
 * its CRC-32 and hands the bytes to npy_parse. Archive bytes are treated as untrusted. */
#include "npz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "util.h"

/* Archives larger than this are refused (the biggest reference archive is ~12 MB). */
#define NPZ_MAX_FILE_BYTES ((size_t)1 << 30)

typedef struct npz_entry {
    char *name;         /* NUL-terminated member name, owned */
    unsigned method;    /* 0 stored, 8 deflate */
    unsigned flags;     /* general purpose bit flags */
    uint32_t crc;       /* CRC-32 of the uncompressed bytes */
    uint64_t csize;     /* compressed bytes */
    uint64_t usize;     /* uncompressed bytes */
    uint64_t local_off; /* offset of the local file header */
} npz_entry;

struct npz_file {
    char path[512];
    uint8_t *buf; /* (len) the whole archive */
    size_t len;
    npz_entry *entries; /* (count) */
    size_t count;
};

static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Reads the whole file (at most NPZ_MAX_FILE_BYTES) into a malloc'd buffer. */
static int read_whole(const char *path, uint8_t **out, size_t *len, vlm_error *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return vlm_fail(e, VLM_EIO, "%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return vlm_fail(e, VLM_EIO, "%s: cannot seek", path);
    }
    long size = ftell(f);
    if (size < 0 || (unsigned long)size > NPZ_MAX_FILE_BYTES || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return vlm_fail(e, VLM_ERANGE, "%s: size %ld unreadable or over 1 GiB", path, size);
    }
    uint8_t *buf = malloc((size_t)size ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory (%ld bytes)", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return vlm_fail(e, VLM_EIO, "%s: short read (%zu of %ld bytes)", path, got, size);
    }
    *out = buf;
    *len = (size_t)size;
    return 0;
}

/* Applies a zip64 extended-information extra field (id 1) to the fields saturated at
 * 0xffffffff, in the order the format defines: size, compressed size, offset. */
static int apply_zip64(const uint8_t *extra, size_t n, npz_entry *en)
{
    size_t p = 0;
    while (n - p >= 4) {
        unsigned id = rd_u16(extra + p), sz = rd_u16(extra + p + 2);
        if (sz > n - p - 4)
            return -1;
        if (id == 1) {
            const uint8_t *q = extra + p + 4;
            size_t left = sz;
            uint64_t *fields[3] = {&en->usize, &en->csize, &en->local_off};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xffffffffu)
                    continue;
                if (left < 8)
                    return -1;
                *fields[i] = rd_u64(q);
                q += 8;
                left -= 8;
            }
        }
        p += 4 + (size_t)sz;
    }
    return 0;
}

static int parse_directory(npz_file *z, vlm_error *e)
{
    const uint8_t *b = z->buf;
    size_t len = z->len;
    if (len < 22)
        return vlm_fail(e, VLM_EFORMAT, "%s: %zu bytes is too small for a zip archive", z->path,
                        len);
    /* The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes. */
    size_t eocd = SIZE_MAX;
    size_t lowest = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t p = len - 22 + 1; p-- > lowest;) {
        if (rd_u32(b + p) == 0x06054b50u) {
            eocd = p;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return vlm_fail(e, VLM_EFORMAT, "%s: no zip end-of-central-directory record", z->path);
    uint64_t count = rd_u16(b + eocd + 10);
    uint64_t cd_size = rd_u32(b + eocd + 12);
    uint64_t cd_off = rd_u32(b + eocd + 16);
    if ((count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) && eocd >= 20 &&
        rd_u32(b + eocd - 20) == 0x07064b50u) {
        uint64_t z64 = rd_u64(b + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || rd_u32(b + z64) != 0x06064b50u)
            return vlm_fail(e, VLM_EFORMAT, "%s: bad zip64 end-of-central-directory record",
                            z->path);
        count = rd_u64(b + z64 + 32);
        cd_size = rd_u64(b + z64 + 40);
        cd_off = rd_u64(b + z64 + 48);
    }
    if (cd_off > len || cd_size > len - cd_off || count > cd_size / 46)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: central directory (offset %llu, %llu bytes, %llu entries) does not "
                        "fit the %zu-byte file",
                        z->path, (unsigned long long)cd_off, (unsigned long long)cd_size,
                        (unsigned long long)count, len);
    z->entries = calloc(count ? (size_t)count : 1, sizeof *z->entries);
    if (!z->entries)
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", z->path);
    size_t p = (size_t)cd_off, end = (size_t)(cd_off + cd_size);
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || rd_u32(b + p) != 0x02014b50u)
            return vlm_fail(e, VLM_EFORMAT, "%s: central directory entry %llu is corrupt",
                            z->path, (unsigned long long)i);
        npz_entry *en = &z->entries[z->count];
        en->flags = rd_u16(b + p + 8);
        en->method = rd_u16(b + p + 10);
        en->crc = rd_u32(b + p + 16);
        en->csize = rd_u32(b + p + 20);
        en->usize = rd_u32(b + p + 24);
        size_t nlen = rd_u16(b + p + 28), xlen = rd_u16(b + p + 30), clen = rd_u16(b + p + 32);
        en->local_off = rd_u32(b + p + 42);
        if (end - p - 46 < nlen + xlen + clen)
            return vlm_fail(e, VLM_EFORMAT, "%s: central directory entry %llu overruns", z->path,
                            (unsigned long long)i);
        en->name = malloc(nlen + 1);
        if (!en->name)
            return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", z->path);
        memcpy(en->name, b + p + 46, nlen);
        en->name[nlen] = '\0';
        z->count++;
        if (apply_zip64(b + p + 46 + nlen, xlen, en))
            return vlm_fail(e, VLM_EFORMAT, "%s: member '%s': corrupt zip64 extra field", z->path,
                            en->name);
        p += 46 + nlen + xlen + clen;
    }
    return 0;
}

npz_file *npz_open(const char *path, vlm_error *e)
{
    npz_file *z = calloc(1, sizeof *z);
    if (!z) {
        vlm_fail(e, VLM_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    snprintf(z->path, sizeof z->path, "%s", path);
    if (read_whole(path, &z->buf, &z->len, e) || parse_directory(z, e)) {
        npz_close(z);
        return NULL;
    }
    return z;
}

size_t npz_count(const npz_file *z) { return z ? z->count : 0; }

const char *npz_name(const npz_file *z, size_t i) { return z && i < z->count ? z->entries[i].name : NULL; }

static const npz_entry *find_member(const npz_file *z, const char *member)
{
    size_t mlen = strlen(member);
    for (size_t i = 0; i < z->count; i++) {
        const char *n = z->entries[i].name;
        if (strcmp(n, member) == 0)
            return &z->entries[i];
        if (strncmp(n, member, mlen) == 0 && strcmp(n + mlen, ".npy") == 0)
            return &z->entries[i];
    }
    return NULL;
}

int npz_get(const npz_file *z, const char *member, npy_array *out, vlm_error *e)
{
    memset(out, 0, sizeof *out);
    const npz_entry *en = find_member(z, member);
    if (!en)
        return vlm_fail(e, VLM_EFORMAT, "%s: no member '%s'", z->path, member);
    if (en->flags & 1)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: member '%s' is encrypted", z->path, en->name);
    if (en->method != 0 && en->method != 8)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: member '%s' uses compression method %u", z->path,
                        en->name, en->method);
    uint64_t lo = en->local_off;
    if (lo > z->len || z->len - lo < 30 || rd_u32(z->buf + lo) != 0x04034b50u)
        return vlm_fail(e, VLM_EFORMAT, "%s: member '%s': bad local header offset %llu", z->path,
                        en->name, (unsigned long long)lo);
    uint64_t data = lo + 30 + rd_u16(z->buf + lo + 26) + rd_u16(z->buf + lo + 28);
    if (data > z->len || en->csize > z->len - data)
        return vlm_fail(e, VLM_EFORMAT, "%s: member '%s' (%llu bytes at %llu) overruns the file",
                        z->path, en->name, (unsigned long long)en->csize,
                        (unsigned long long)data);
    if (en->usize > NPZ_MAX_FILE_BYTES || (en->method == 0 && en->usize != en->csize))
        return vlm_fail(e, VLM_EFORMAT, "%s: member '%s' has an implausible size %llu", z->path,
                        en->name, (unsigned long long)en->usize);
    const uint8_t *src = z->buf + data;
    uint8_t *raw = NULL;
    size_t n = (size_t)en->usize;
    if (en->method == 8) {
        raw = malloc(n ? n : 1);
        if (!raw)
            return vlm_fail(e, VLM_ENOMEM, "%s: out of memory for '%s'", z->path, en->name);
        size_t got = 0;
        vlm_error ze;
        int rc = zlib_inflate(src, (size_t)en->csize, 1, raw, n, &got, &ze);
        if (!rc && got != n)
            rc = vlm_fail(&ze, VLM_EFORMAT, "inflated %zu bytes, expected %zu", got, n);
        if (rc) {
            free(raw);
            return vlm_fail(e, rc, "%s: member '%s': %s", z->path, en->name, ze.msg);
        }
        src = raw;
    }
    uint32_t crc = crc32_bytes(src, n);
    int rc;
    if (crc != en->crc)
        rc = vlm_fail(e, VLM_EFORMAT, "%s: member '%s': CRC-32 %08x, expected %08x", z->path,
                      en->name, crc, en->crc);
    else
        rc = npy_parse(src, n, en->name, out, e);
    free(raw);
    return rc;
}

void npz_close(npz_file *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->count; i++)
        free(z->entries[i].name);
    free(z->entries);
    free(z->buf);
    free(z);
}

int npz_read(const char *path, const char *member, npy_array *out, vlm_error *e)
{
    memset(out, 0, sizeof *out);
    npz_file *z = npz_open(path, e);
    if (!z)
        return e ? e->code : VLM_EFORMAT;
    int rc = npz_get(z, member, out, e);
    npz_close(z);
    return rc;
}
