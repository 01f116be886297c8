/* torchzip.c: reads torch.save checkpoints (pytorch_model.bin): the ZIP container (stored
 * members only, ZIP64 included) and a restricted pickle machine for data.pkl. The machine
 * implements only the opcodes torch.save writes and resolves only an allow-list of
 * globals, so nothing in the file is ever executed; every object, stack, memo and string
 * is bounded. Tensors point into the stored data/<key> members after an extent check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source_internal.h"
#include "util.h"

/* ======================================================================= ZIP */

#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP_EOCD_LEN 22
#define ZIP64_LOCATOR_LEN 20
#define ZIP64_EOCD_LEN 56
#define ZIP_CENTRAL_LEN 46
#define ZIP_LOCAL_LEN 30
#define ZIP_MAX_NAME 4096

typedef struct zip_member {
    const char *name;    /* (name_len) bytes inside the central directory, not NUL-terminated */
    size_t name_len;
    const uint8_t *data; /* (size) stored bytes inside the file */
    size_t size;
} zip_member;

typedef struct zip_archive {
    zip_member *members; /* (count) sorted by name */
    size_t count;
} zip_archive;

/* Values of the end-of-central-directory records that matter. */
typedef struct zip_dir {
    uint64_t entries, cd_size, cd_offset;
} zip_dir;

static int cmp_member(const void *a, const void *b)
{
    const zip_member *ma = a, *mb = b;
    size_t n = ma->name_len < mb->name_len ? ma->name_len : mb->name_len;
    int c = memcmp(ma->name, mb->name, n);
    if (c)
        return c;
    return ma->name_len < mb->name_len ? -1 : ma->name_len > mb->name_len;
}

/* Finds a member by exact name; NULL if absent. */
static const zip_member *zip_find(const zip_archive *z, const char *name, size_t len)
{
    zip_member key = {name, len, NULL, 0};
    return bsearch(&key, z->members, z->count, sizeof key, cmp_member);
}

/* Locates the EOCD (the last signature whose comment fits exactly or within the file)
 * and, when present, the ZIP64 locator and record that supersede its 16/32-bit fields. */
static int zip_read_eocd(const uint8_t *d, size_t size, const char *file, zip_dir *dir, vlm_error *e)
{
    if (size < ZIP_EOCD_LEN)
        return vlm_fail(e, VLM_EFORMAT, "%s: %zu bytes is too short for a ZIP archive", file, size);
    size_t lowest = size - ZIP_EOCD_LEN > 65535 ? size - ZIP_EOCD_LEN - 65535 : 0;
    size_t pos = size - ZIP_EOCD_LEN;
    int found = 0;
    for (;;) {
        if (rd_u32(d + pos) == ZIP_EOCD_SIG && pos + ZIP_EOCD_LEN + rd_u16(d + pos + 20) <= size) {
            found = 1;
            break;
        }
        if (pos == lowest)
            break;
        pos--;
    }
    if (!found)
        return vlm_fail(e, VLM_EFORMAT, "%s: no ZIP end-of-central-directory record (not a torch.save file?)", file);
    const uint8_t *r = d + pos;
    if (rd_u16(r + 4) != 0 || rd_u16(r + 6) != 0)
        return vlm_fail(e, VLM_EUNSUPPORTED, "%s: multi-disk ZIP archives are not supported (disk %u, %u)", file,
                        rd_u16(r + 4), rd_u16(r + 6));
    dir->entries = rd_u16(r + 10);
    dir->cd_size = rd_u32(r + 12);
    dir->cd_offset = rd_u32(r + 16);
    if (pos >= ZIP64_LOCATOR_LEN && rd_u32(d + pos - ZIP64_LOCATOR_LEN) == ZIP64_LOCATOR_SIG) {
        const uint8_t *loc = d + pos - ZIP64_LOCATOR_LEN;
        uint64_t off = rd_u64(loc + 8);
        if (rd_u32(loc + 4) != 0 || rd_u32(loc + 16) > 1)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: multi-disk ZIP64 archives are not supported", file);
        if (off > pos - ZIP64_LOCATOR_LEN || pos - ZIP64_LOCATOR_LEN - off < ZIP64_EOCD_LEN)
            return vlm_fail(e, VLM_EFORMAT, "%s: ZIP64 end record offset %llu is outside the file (locator at %zu)",
                            file, (unsigned long long)off, pos - ZIP64_LOCATOR_LEN);
        const uint8_t *r64 = d + off;
        if (rd_u32(r64) != ZIP64_EOCD_SIG)
            return vlm_fail(e, VLM_EFORMAT, "%s: no ZIP64 end record at offset %llu", file, (unsigned long long)off);
        if (rd_u32(r64 + 16) != 0 || rd_u32(r64 + 20) != 0)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: multi-disk ZIP64 archives are not supported", file);
        dir->entries = rd_u64(r64 + 32);
        dir->cd_size = rd_u64(r64 + 40);
        dir->cd_offset = rd_u64(r64 + 48);
    } else if (dir->entries == 0xffff || dir->cd_size == 0xffffffffu || dir->cd_offset == 0xffffffffu) {
        /* Saturated fields are legal without ZIP64 only when the values really are that big,
         * which the bounds checks below then verify. */
    }
    if (dir->cd_offset > pos || dir->cd_size > pos - dir->cd_offset)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: central directory (offset %llu, %llu bytes) does not end before its end record at %zu",
                        file, (unsigned long long)dir->cd_offset, (unsigned long long)dir->cd_size, pos);
    if (dir->entries > dir->cd_size / ZIP_CENTRAL_LEN)
        return vlm_fail(e, VLM_EFORMAT, "%s: %llu ZIP entries cannot fit in a %llu-byte central directory", file,
                        (unsigned long long)dir->entries, (unsigned long long)dir->cd_size);
    return 0;
}

/* Applies a central entry's ZIP64 extra field (id 1): it holds, in this order, only the
 * values whose 32/16-bit fields are saturated. */
static int zip_apply_zip64(const uint8_t *extra, size_t extra_len, uint64_t *usize, uint64_t *csize,
                           uint64_t *local, const char *file, const char *what, vlm_error *e)
{
    int need_u = *usize == 0xffffffffu, need_c = *csize == 0xffffffffu, need_l = *local == 0xffffffffu;
    if (!need_u && !need_c && !need_l)
        return 0;
    size_t p = 0;
    while (extra_len - p >= 4) {
        unsigned id = rd_u16(extra + p), len = rd_u16(extra + p + 2);
        if (len > extra_len - p - 4)
            break;
        if (id == 1) {
            const uint8_t *f = extra + p + 4;
            unsigned have = len;
            uint64_t *targets[3] = {need_u ? usize : NULL, need_c ? csize : NULL, need_l ? local : NULL};
            for (int i = 0; i < 3; i++) {
                if (!targets[i])
                    continue;
                if (have < 8)
                    return vlm_fail(e, VLM_EFORMAT, "%s: member '%s': ZIP64 extra field too short (%u bytes)", file,
                                    what, len);
                *targets[i] = rd_u64(f);
                f += 8;
                have -= 8;
            }
            return 0;
        }
        p += 4 + (size_t)len;
    }
    return vlm_fail(e, VLM_EFORMAT, "%s: member '%s' has saturated 32-bit sizes but no ZIP64 extra field", file,
                    what);
}

/* Parses the central directory and each member's local header. Every member must be
 * stored (method 0), unencrypted, and lie between its local header and the directory. */
static int zip_open(const uint8_t *d, size_t size, const char *file, zip_archive *z, vlm_error *e)
{
    zip_dir dir = {0, 0, 0};
    int rc = zip_read_eocd(d, size, file, &dir, e);
    if (rc)
        return rc;
    z->count = 0;
    z->members = calloc(dir.entries ? (size_t)dir.entries : 1, sizeof *z->members);
    if (!z->members)
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory for %llu ZIP entries", file, (unsigned long long)dir.entries);
    const uint8_t *cd = d + dir.cd_offset;
    size_t cd_size = (size_t)dir.cd_size, p = 0;
    char shown[128]; /* the member name cut for messages */
    for (uint64_t i = 0; i < dir.entries; i++) {
        if (cd_size - p < ZIP_CENTRAL_LEN || rd_u32(cd + p) != ZIP_CENTRAL_SIG)
            return vlm_fail(e, VLM_EFORMAT, "%s: ZIP central entry %llu at offset %llu is truncated or has a bad signature",
                            file, (unsigned long long)i, (unsigned long long)(dir.cd_offset + p));
        const uint8_t *c = cd + p;
        unsigned flags = rd_u16(c + 8), method = rd_u16(c + 10);
        uint64_t csize = rd_u32(c + 20), usize = rd_u32(c + 24), local = rd_u32(c + 42);
        size_t nlen = rd_u16(c + 28), xlen = rd_u16(c + 30), clen = rd_u16(c + 32);
        if (cd_size - p - ZIP_CENTRAL_LEN < nlen + xlen + clen)
            return vlm_fail(e, VLM_EFORMAT, "%s: ZIP central entry %llu runs past the central directory", file,
                            (unsigned long long)i);
        const char *name = (const char *)c + ZIP_CENTRAL_LEN;
        snprintf(shown, sizeof shown, "%.*s", (int)(nlen < 100 ? nlen : 100), name);
        if (nlen == 0 || memchr(name, 0, nlen))
            return vlm_fail(e, VLM_EFORMAT, "%s: ZIP central entry %llu has an empty name or a NUL in it", file,
                            (unsigned long long)i);
        rc = zip_apply_zip64(c + ZIP_CENTRAL_LEN + nlen, xlen, &usize, &csize, &local, file, shown, e);
        if (rc)
            return rc;
        if (flags & 1)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: member '%s' is encrypted", file, shown);
        if (method != 0)
            return vlm_fail(e, VLM_EUNSUPPORTED,
                            "%s: member '%s' is compressed (method %u); only stored members are supported "
                            "(torch.save never compresses; re-save the checkpoint)", file, shown, method);
        if (csize != usize)
            return vlm_fail(e, VLM_EFORMAT, "%s: stored member '%s' has compressed size %llu != size %llu", file,
                            shown, (unsigned long long)csize, (unsigned long long)usize);
        if (local > dir.cd_offset || dir.cd_offset - local < ZIP_LOCAL_LEN)
            return vlm_fail(e, VLM_EFORMAT, "%s: member '%s' local header offset %llu is not before the central directory (%llu)",
                            file, shown, (unsigned long long)local, (unsigned long long)dir.cd_offset);
        const uint8_t *l = d + local;
        if (rd_u32(l) != ZIP_LOCAL_SIG)
            return vlm_fail(e, VLM_EFORMAT, "%s: member '%s' has no local header at offset %llu", file, shown,
                            (unsigned long long)local);
        uint64_t lnlen = rd_u16(l + 26), lxlen = rd_u16(l + 28);
        uint64_t start = local + ZIP_LOCAL_LEN + lnlen + lxlen; /* no overflow: each term < 2^48 */
        if (start > dir.cd_offset || usize > dir.cd_offset - start)
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: member '%s' data (offset %llu, %llu bytes) runs into the central directory at %llu",
                            file, shown, (unsigned long long)start, (unsigned long long)usize,
                            (unsigned long long)dir.cd_offset);
        if (lnlen != nlen || memcmp(l + ZIP_LOCAL_LEN, name, nlen) != 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: member '%s': local header name differs from the central directory",
                            file, shown);
        if (rd_u16(l + 8) != 0)
            return vlm_fail(e, VLM_EUNSUPPORTED, "%s: member '%s' local header says method %u", file, shown,
                            rd_u16(l + 8));
        z->members[z->count].name = name;
        z->members[z->count].name_len = nlen;
        z->members[z->count].data = d + start;
        z->members[z->count].size = (size_t)usize;
        z->count++;
        p += ZIP_CENTRAL_LEN + nlen + xlen + clen;
    }
    qsort(z->members, z->count, sizeof *z->members, cmp_member);
    for (size_t i = 1; i < z->count; i++) {
        if (cmp_member(&z->members[i - 1], &z->members[i]) == 0) {
            snprintf(shown, sizeof shown, "%.*s", (int)(z->members[i].name_len < 100 ? z->members[i].name_len : 100),
                     z->members[i].name);
            return vlm_fail(e, VLM_EFORMAT, "%s: ZIP member '%s' is present twice", file, shown);
        }
    }
    return 0;
}

/* ==================================================================== PICKLE */

#define PK_MAX_OBJECTS (1u << 20)
#define PK_MAX_STACK (1u << 20)
#define PK_MAX_MARKS 64
#define PK_MAX_MEMO (1u << 20)
#define PK_MAX_STRING (1u << 16)

/* The globals the machine can name; anything else is refused at GLOBAL. */
typedef enum {
    G_ORDERED_DICT,
    G_REBUILD_TENSOR_V2,
    G_REBUILD_FROM_TYPE_V2,
    G_REBUILD_PARAMETER,
    G_TENSOR_TYPE,
    G_STORAGE_TYPE,
} pk_global;

typedef enum { O_NONE, O_BOOL, O_INT, O_FLOAT, O_STR, O_TUPLE, O_LIST, O_DICT, O_GLOBAL, O_STORAGE, O_TENSOR } pk_kind;

typedef struct pk_obj pk_obj;
struct pk_obj {
    pk_kind kind;
    int64_t i;              /* O_INT, O_BOOL */
    double f;               /* O_FLOAT */
    const char *s;          /* O_STR (and storage key of O_STORAGE, O_TENSOR): (len) bytes in data.pkl */
    size_t len;             /* O_STR: bytes; O_TUPLE/O_LIST: items; O_DICT: pairs */
    pk_obj **items;         /* O_TUPLE/O_LIST: (len); O_DICT: (2 * len) key, value, ... */
    size_t cap;             /* allocated entries of items */
    pk_global global;       /* O_GLOBAL */
    src_dtype dtype;        /* O_GLOBAL storage type, O_STORAGE, O_TENSOR */
    const zip_member *mem;  /* O_STORAGE: the data/<key> member; O_TENSOR: its storage */
    uint64_t storage_elems; /* O_STORAGE, O_TENSOR: elements the storage holds */
    int ndim;               /* O_TENSOR */
    int64_t shape[SRC_MAX_DIMS];  /* O_TENSOR: (ndim) */
    int64_t stride[SRC_MAX_DIMS]; /* O_TENSOR: (ndim) */
    uint64_t offset;        /* O_TENSOR: storage offset in elements */
};

typedef struct pk_machine {
    const uint8_t *p;       /* (size) the pickle bytes */
    size_t size, pos;
    const char *file;
    const zip_archive *zip;
    const char *prefix;     /* (prefix_len) archive folder holding data.pkl */
    size_t prefix_len;
    pk_obj **objs;          /* (nobjs) every object allocated, for freeing */
    size_t nobjs, objs_cap;
    pk_obj **stack;         /* (depth) */
    size_t depth, stack_cap;
    size_t marks[PK_MAX_MARKS]; /* (nmarks) stack depths at each MARK */
    int nmarks;
    pk_obj **memo;          /* (memo_cap) NULL where unset */
    size_t memo_cap, memo_used;
    vlm_error *e;
    int rc;                 /* the code of the last failure, for callers of pk_new */
} pk_machine;

static int pk_fail_at(pk_machine *m, int code, const char *what)
{
    m->rc = code;
    return vlm_fail(m->e, code, "%s: data.pkl offset %zu: %s", m->file, m->pos, what);
}

static pk_obj *pk_new(pk_machine *m, pk_kind kind)
{
    if (m->nobjs >= PK_MAX_OBJECTS) {
        pk_fail_at(m, VLM_ERANGE, "more than 1M pickle objects");
        return NULL;
    }
    if (m->nobjs == m->objs_cap) {
        size_t ncap = m->objs_cap ? m->objs_cap * 2 : 256;
        pk_obj **n = realloc(m->objs, ncap * sizeof *n);
        if (!n) {
            pk_fail_at(m, VLM_ENOMEM, "out of memory for pickle objects");
            return NULL;
        }
        m->objs = n;
        m->objs_cap = ncap;
    }
    pk_obj *o = calloc(1, sizeof *o);
    if (!o) {
        pk_fail_at(m, VLM_ENOMEM, "out of memory for a pickle object");
        return NULL;
    }
    o->kind = kind;
    m->objs[m->nobjs++] = o;
    return o;
}

static void pk_free(pk_machine *m)
{
    for (size_t i = 0; i < m->nobjs; i++) {
        free(m->objs[i]->items);
        free(m->objs[i]);
    }
    free(m->objs);
    free(m->stack);
    free(m->memo);
}

static int pk_push(pk_machine *m, pk_obj *o)
{
    if (!o)
        return m->rc;
    if (m->depth >= PK_MAX_STACK)
        return pk_fail_at(m, VLM_ERANGE, "pickle stack deeper than 1M entries");
    if (m->depth == m->stack_cap) {
        size_t ncap = m->stack_cap ? m->stack_cap * 2 : 64;
        pk_obj **n = realloc(m->stack, ncap * sizeof *n);
        if (!n)
            return pk_fail_at(m, VLM_ENOMEM, "out of memory for the pickle stack");
        m->stack = n;
        m->stack_cap = ncap;
    }
    m->stack[m->depth++] = o;
    return 0;
}

/* Pops into *o; the stack may not be popped below the innermost MARK. */
static int pk_pop(pk_machine *m, pk_obj **o)
{
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->depth <= floor)
        return pk_fail_at(m, VLM_EFORMAT, "pickle stack underflow");
    *o = m->stack[--m->depth];
    return 0;
}

/* Appends n items to a list/tuple/dict item array (n is 1 or 2 for dict pairs). */
static int pk_append(pk_machine *m, pk_obj *c, pk_obj *const *add, size_t n)
{
    size_t used = c->kind == O_DICT ? 2 * c->len : c->len;
    if (c->cap - used < n) {
        size_t ncap = c->cap ? c->cap * 2 : 8;
        while (ncap - used < n)
            ncap *= 2;
        if (ncap > PK_MAX_STACK * 2)
            return pk_fail_at(m, VLM_ERANGE, "pickle container with more than 1M items");
        pk_obj **ni = realloc(c->items, ncap * sizeof *ni);
        if (!ni)
            return pk_fail_at(m, VLM_ENOMEM, "out of memory for a pickle container");
        c->items = ni;
        c->cap = ncap;
    }
    memcpy(c->items + used, add, n * sizeof *add);
    c->len += c->kind == O_DICT ? n / 2 : n;
    return 0;
}

/* Builds a tuple of the stack's top n entries (or everything above the last MARK). */
static int pk_make_tuple(pk_machine *m, size_t n)
{
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->depth - floor < n)
        return pk_fail_at(m, VLM_EFORMAT, "pickle stack underflow building a tuple");
    pk_obj *t = pk_new(m, O_TUPLE);
    if (!t)
        return m->rc;
    if (n) {
        int rc = pk_append(m, t, m->stack + m->depth - n, n);
        if (rc)
            return rc;
    }
    m->depth -= n;
    return pk_push(m, t);
}

static int pk_pop_mark(pk_machine *m, size_t *base)
{
    if (m->nmarks == 0)
        return pk_fail_at(m, VLM_EFORMAT, "pickle opcode needs a MARK but there is none");
    *base = m->marks[--m->nmarks];
    return 0;
}

static int pk_need(pk_machine *m, size_t n)
{
    if (m->size - m->pos < n)
        return pk_fail_at(m, VLM_EFORMAT, "pickle truncated inside an opcode argument");
    return 0;
}

static int pk_memo_put(pk_machine *m, uint64_t key)
{
    if (m->depth == 0)
        return pk_fail_at(m, VLM_EFORMAT, "pickle memo store with an empty stack");
    if (key >= PK_MAX_MEMO)
        return pk_fail_at(m, VLM_ERANGE, "pickle memo key above 1M");
    if (key >= m->memo_cap) {
        size_t ncap = m->memo_cap ? m->memo_cap : 256;
        while (ncap <= key)
            ncap *= 2;
        pk_obj **n = realloc(m->memo, ncap * sizeof *n);
        if (!n)
            return pk_fail_at(m, VLM_ENOMEM, "out of memory for the pickle memo");
        memset(n + m->memo_cap, 0, (ncap - m->memo_cap) * sizeof *n);
        m->memo = n;
        m->memo_cap = ncap;
    }
    if (!m->memo[key])
        m->memo_used++;
    m->memo[key] = m->stack[m->depth - 1];
    return 0;
}

static int pk_memo_get(pk_machine *m, uint64_t key)
{
    if (key >= m->memo_cap || !m->memo[key])
        return pk_fail_at(m, VLM_EFORMAT, "pickle memo get of an unset key");
    return pk_push(m, m->memo[key]);
}

static int str_is(const pk_obj *o, const char *lit)
{
    size_t n = strlen(lit);
    return o->kind == O_STR && o->len == n && memcmp(o->s, lit, n) == 0;
}

/* Resolves module.name against the allow-list. */
static int pk_global_lookup(pk_machine *m, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    static const struct {
        const char *mod, *name;
        pk_global g;
        src_dtype dtype;
    } allowed[] = {
        {"collections", "OrderedDict", G_ORDERED_DICT, SRC_F32},
        {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, SRC_F32},
        {"torch._tensor", "_rebuild_from_type_v2", G_REBUILD_FROM_TYPE_V2, SRC_F32},
        {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, SRC_F32},
        {"torch", "Tensor", G_TENSOR_TYPE, SRC_F32},
        {"torch", "FloatStorage", G_STORAGE_TYPE, SRC_F32},
        {"torch", "HalfStorage", G_STORAGE_TYPE, SRC_F16},
        {"torch", "BFloat16Storage", G_STORAGE_TYPE, SRC_BF16},
        {"torch", "DoubleStorage", G_STORAGE_TYPE, SRC_F64},
        {"torch", "LongStorage", G_STORAGE_TYPE, SRC_I64},
        {"torch", "IntStorage", G_STORAGE_TYPE, SRC_I32},
        {"torch", "ShortStorage", G_STORAGE_TYPE, SRC_I16},
        {"torch", "CharStorage", G_STORAGE_TYPE, SRC_I8},
        {"torch", "ByteStorage", G_STORAGE_TYPE, SRC_U8},
        {"torch", "BoolStorage", G_STORAGE_TYPE, SRC_BOOL},
    };
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (strlen(allowed[i].mod) == mlen && memcmp(allowed[i].mod, mod, mlen) == 0 &&
            strlen(allowed[i].name) == nlen && memcmp(allowed[i].name, name, nlen) == 0) {
            pk_obj *g = pk_new(m, O_GLOBAL);
            if (!g)
                return m->rc;
            g->global = allowed[i].g;
            g->dtype = allowed[i].dtype;
            return pk_push(m, g);
        }
    }
    return vlm_fail(m->e, VLM_EUNSUPPORTED, "%s: data.pkl offset %zu: pickle global '%.*s.%.*s' is not allowed",
                    m->file, m->pos, (int)(mlen < 100 ? mlen : 100), mod, (int)(nlen < 100 ? nlen : 100), name);
}

/* Reads a pickle int argument (bools count as 0/1 as in Python). */
static int pk_int(pk_machine *m, const pk_obj *o, const char *what, int64_t *out)
{
    if (o->kind != O_INT && o->kind != O_BOOL) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s is not an integer", what);
        return pk_fail_at(m, VLM_EFORMAT, msg);
    }
    *out = o->i;
    return 0;
}

/* ('storage', StorageType, key, location, numel) -> the data/<key> member, size-checked. */
static int pk_persistent_load(pk_machine *m, pk_obj *pid)
{
    if (pid->kind != O_TUPLE || pid->len != 5 || !str_is(pid->items[0], "storage"))
        return pk_fail_at(m, VLM_EUNSUPPORTED, "persistent id is not a ('storage', type, key, location, numel) tuple");
    pk_obj *type = pid->items[1], *key = pid->items[2], *count = pid->items[4];
    if (type->kind != O_GLOBAL || type->global != G_STORAGE_TYPE)
        return pk_fail_at(m, VLM_EFORMAT, "persistent id storage type is not a torch.*Storage");
    if (key->kind != O_STR || key->len == 0 || key->len > 256 || pid->items[3]->kind != O_STR)
        return pk_fail_at(m, VLM_EFORMAT, "persistent id key or location is not a short string");
    int64_t numel = 0;
    int rc = pk_int(m, count, "storage element count", &numel);
    if (rc)
        return rc;
    if (numel < 0)
        return pk_fail_at(m, VLM_EFORMAT, "storage has a negative element count");
    char member[4096 + 300];
    int mlen = snprintf(member, sizeof member, "%.*sdata/%.*s", (int)m->prefix_len, m->prefix, (int)key->len, key->s);
    if (mlen < 0 || (size_t)mlen >= sizeof member)
        return pk_fail_at(m, VLM_ERANGE, "storage member name too long");
    const zip_member *zm = zip_find(m->zip, member, (size_t)mlen);
    if (!zm)
        return vlm_fail(m->e, VLM_EFORMAT, "%s: storage '%.*s' has no member '%s' in the archive", m->file,
                        (int)key->len, key->s, member);
    size_t es = src_dtype_size(type->dtype), bytes;
    if (ck_mul((size_t)numel, es, &bytes) || bytes > zm->size)
        return vlm_fail(m->e, VLM_EFORMAT, "%s: storage 'data/%.*s' has %zu bytes, needs %lld elements of %s",
                        m->file, (int)key->len, key->s, zm->size, (long long)numel, src_dtype_name(type->dtype));
    pk_obj *st = pk_new(m, O_STORAGE);
    if (!st)
        return m->rc;
    st->dtype = type->dtype;
    st->mem = zm;
    st->s = key->s;
    st->len = key->len;
    st->storage_elems = (uint64_t)numel;
    return pk_push(m, st);
}

/* Reads a tuple of non-negative ints into dims; n must match ndim when ndim >= 0. */
static int pk_dims(pk_machine *m, const pk_obj *t, const char *what, int64_t *dims, int *ndim)
{
    if (t->kind != O_TUPLE) {
        char msg[160];
        snprintf(msg, sizeof msg, "tensor %s is not a tuple", what);
        return pk_fail_at(m, VLM_EFORMAT, msg);
    }
    if (t->len > SRC_MAX_DIMS)
        return vlm_fail(m->e, VLM_EUNSUPPORTED, "%s: data.pkl offset %zu: tensor with %zu dimensions (at most %d)",
                        m->file, m->pos, t->len, SRC_MAX_DIMS);
    for (size_t i = 0; i < t->len; i++) {
        int rc = pk_int(m, t->items[i], what, &dims[i]);
        if (rc)
            return rc;
    }
    *ndim = (int)t->len;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]). */
static int pk_rebuild_tensor(pk_machine *m, const pk_obj *args, pk_obj **out)
{
    if (args->len < 4 || args->len > 7)
        return pk_fail_at(m, VLM_EFORMAT, "_rebuild_tensor_v2 takes 6 or 7 arguments");
    const pk_obj *st = args->items[0];
    if (st->kind != O_STORAGE)
        return pk_fail_at(m, VLM_EFORMAT, "_rebuild_tensor_v2 argument 1 is not a storage");
    int64_t offset = 0;
    int rc = pk_int(m, args->items[1], "tensor storage offset", &offset);
    if (rc)
        return rc;
    if (offset < 0)
        return pk_fail_at(m, VLM_EFORMAT, "negative tensor storage offset");
    pk_obj *t = pk_new(m, O_TENSOR);
    if (!t)
        return m->rc;
    int nstride;
    if ((rc = pk_dims(m, args->items[2], "size", t->shape, &t->ndim)) ||
        (rc = pk_dims(m, args->items[3], "stride", t->stride, &nstride)))
        return rc;
    if (nstride != t->ndim)
        return vlm_fail(m->e, VLM_EFORMAT, "%s: data.pkl offset %zu: tensor has %d sizes but %d strides", m->file,
                        m->pos, t->ndim, nstride);
    t->dtype = st->dtype;
    t->mem = st->mem;
    t->storage_elems = st->storage_elems;
    t->offset = (uint64_t)offset;
    t->s = st->s; /* the storage key, for messages */
    t->len = st->len;
    *out = t;
    return 0;
}

/* Applies an allow-listed callable; the result replaces func and args on the stack. */
static int pk_call(pk_machine *m, const pk_obj *func, const pk_obj *args, pk_obj **out, int depth)
{
    if (func->kind != O_GLOBAL)
        return pk_fail_at(m, VLM_EFORMAT, "REDUCE of something that is not a global");
    if (args->kind != O_TUPLE)
        return pk_fail_at(m, VLM_EFORMAT, "REDUCE arguments are not a tuple");
    switch (func->global) {
    case G_ORDERED_DICT:
        if (args->len != 0)
            return pk_fail_at(m, VLM_EUNSUPPORTED, "OrderedDict called with arguments");
        *out = pk_new(m, O_DICT);
        return *out ? 0 : (m->rc);
    case G_REBUILD_TENSOR_V2:
        return pk_rebuild_tensor(m, args, out);
    case G_REBUILD_PARAMETER:
        if (args->len != 3 || args->items[0]->kind != O_TENSOR)
            return pk_fail_at(m, VLM_EFORMAT, "_rebuild_parameter expects (tensor, requires_grad, hooks)");
        *out = args->items[0];
        return 0;
    case G_REBUILD_FROM_TYPE_V2:
        /* (func, type, args, state): only plain tensors, whose state carries nothing. */
        if (args->len != 4 || args->items[2]->kind != O_TUPLE)
            return pk_fail_at(m, VLM_EFORMAT, "_rebuild_from_type_v2 expects (func, type, args, state)");
        if (args->items[1]->kind != O_GLOBAL || args->items[1]->global != G_TENSOR_TYPE)
            return pk_fail_at(m, VLM_EUNSUPPORTED, "_rebuild_from_type_v2 of a type other than torch.Tensor");
        if (depth > 4)
            return pk_fail_at(m, VLM_EFORMAT, "_rebuild_from_type_v2 nested too deeply");
        if (args->items[0]->kind == O_GLOBAL && args->items[0]->global == G_REBUILD_FROM_TYPE_V2)
            return pk_fail_at(m, VLM_EFORMAT, "_rebuild_from_type_v2 applied to itself");
        {
            int rc = pk_call(m, args->items[0], args->items[2], out, depth + 1);
            if (rc)
                return rc;
            if ((*out)->kind != O_TENSOR)
                return pk_fail_at(m, VLM_EFORMAT, "_rebuild_from_type_v2 did not produce a tensor");
            return 0;
        }
    case G_TENSOR_TYPE:
    case G_STORAGE_TYPE:
        break;
    }
    return pk_fail_at(m, VLM_EUNSUPPORTED, "REDUCE of a type global (torch.Tensor / torch.*Storage) is not supported");
}

/* Reads a length-prefixed UTF-8 string argument of n bytes. */
static int pk_string(pk_machine *m, uint64_t n)
{
    if (n > PK_MAX_STRING)
        return pk_fail_at(m, VLM_ERANGE, "pickle string longer than 64 KiB");
    int rc = pk_need(m, (size_t)n);
    if (rc)
        return rc;
    pk_obj *o = pk_new(m, O_STR);
    if (!o)
        return m->rc;
    o->s = (const char *)m->p + m->pos;
    o->len = (size_t)n;
    m->pos += (size_t)n;
    return pk_push(m, o);
}

static int pk_int_obj(pk_machine *m, pk_kind kind, int64_t v)
{
    pk_obj *o = pk_new(m, kind);
    if (!o)
        return m->rc;
    o->i = v;
    return pk_push(m, o);
}

/* Runs the pickle to STOP; *result is the object it returns. */
static int pk_run(pk_machine *m, pk_obj **result)
{
    int rc = 0;
    while (rc == 0) {
        if (m->pos >= m->size)
            return pk_fail_at(m, VLM_EFORMAT, "pickle ends without STOP");
        uint8_t op = m->p[m->pos++];
        pk_obj *a, *b, *c;
        size_t base = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if ((rc = pk_need(m, 1)))
                break;
            if (m->p[m->pos] < 2 || m->p[m->pos] > 5)
                return pk_fail_at(m, VLM_EUNSUPPORTED, "pickle protocol outside 2..5");
            m->pos++;
            break;
        case 0x95: /* FRAME: framing is only a read-ahead hint */
            if ((rc = pk_need(m, 8)))
                break;
            if (rd_u64(m->p + m->pos) > m->size - m->pos - 8)
                return pk_fail_at(m, VLM_EFORMAT, "pickle frame runs past the end");
            m->pos += 8;
            break;
        case '.': /* STOP */
            if ((rc = pk_pop(m, result)))
                return rc;
            return 0;
        case '}': /* EMPTY_DICT */
            rc = pk_push(m, pk_new(m, O_DICT));
            break;
        case ']': /* EMPTY_LIST */
            rc = pk_push(m, pk_new(m, O_LIST));
            break;
        case ')': /* EMPTY_TUPLE */
            rc = pk_make_tuple(m, 0);
            break;
        case '(': /* MARK */
            if (m->nmarks >= PK_MAX_MARKS)
                return pk_fail_at(m, VLM_ERANGE, "pickle MARKs nested deeper than 64");
            m->marks[m->nmarks++] = m->depth;
            break;
        case 'X': /* BINUNICODE */
            if ((rc = pk_need(m, 4)))
                break;
            m->pos += 4;
            rc = pk_string(m, rd_u32(m->p + m->pos - 4));
            break;
        case 0x8c: /* SHORT_BINUNICODE */
            if ((rc = pk_need(m, 1)))
                break;
            m->pos += 1;
            rc = pk_string(m, m->p[m->pos - 1]);
            break;
        case 0x8d: /* BINUNICODE8 */
            if ((rc = pk_need(m, 8)))
                break;
            m->pos += 8;
            rc = pk_string(m, rd_u64(m->p + m->pos - 8));
            break;
        case 'q': /* BINPUT */
            if ((rc = pk_need(m, 1)))
                break;
            m->pos += 1;
            rc = pk_memo_put(m, m->p[m->pos - 1]);
            break;
        case 'r': /* LONG_BINPUT */
            if ((rc = pk_need(m, 4)))
                break;
            m->pos += 4;
            rc = pk_memo_put(m, rd_u32(m->p + m->pos - 4));
            break;
        case 0x94: /* MEMOIZE */
            rc = pk_memo_put(m, m->memo_used);
            break;
        case 'h': /* BINGET */
            if ((rc = pk_need(m, 1)))
                break;
            m->pos += 1;
            rc = pk_memo_get(m, m->p[m->pos - 1]);
            break;
        case 'j': /* LONG_BINGET */
            if ((rc = pk_need(m, 4)))
                break;
            m->pos += 4;
            rc = pk_memo_get(m, rd_u32(m->p + m->pos - 4));
            break;
        case 'c': { /* GLOBAL: "module\nname\n" */
            const uint8_t *s = m->p + m->pos;
            size_t left = m->size - m->pos, cap = left < 512 ? left : 512;
            const uint8_t *nl1 = memchr(s, '\n', cap);
            const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', cap - (size_t)(nl1 + 1 - s)) : NULL;
            if (!nl2)
                return pk_fail_at(m, VLM_EFORMAT, "pickle GLOBAL without two newline-terminated names");
            m->pos += (size_t)(nl2 + 1 - s);
            rc = pk_global_lookup(m, (const char *)s, (size_t)(nl1 - s), (const char *)nl1 + 1,
                                  (size_t)(nl2 - nl1 - 1));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((rc = pk_pop(m, &b)) || (rc = pk_pop(m, &a)))
                break;
            if (a->kind != O_STR || b->kind != O_STR)
                return pk_fail_at(m, VLM_EFORMAT, "STACK_GLOBAL of non-strings");
            rc = pk_global_lookup(m, a->s, a->len, b->s, b->len);
            break;
        case 'J': /* BININT */
            if ((rc = pk_need(m, 4)))
                break;
            m->pos += 4;
            rc = pk_int_obj(m, O_INT, (int32_t)rd_u32(m->p + m->pos - 4));
            break;
        case 'K': /* BININT1 */
            if ((rc = pk_need(m, 1)))
                break;
            m->pos += 1;
            rc = pk_int_obj(m, O_INT, m->p[m->pos - 1]);
            break;
        case 'M': /* BININT2 */
            if ((rc = pk_need(m, 2)))
                break;
            m->pos += 2;
            rc = pk_int_obj(m, O_INT, rd_u16(m->p + m->pos - 2));
            break;
        case 0x8a: { /* LONG1: n-byte little-endian two's complement */
            if ((rc = pk_need(m, 1)))
                break;
            size_t n = m->p[m->pos];
            if (n > 8)
                return pk_fail_at(m, VLM_ERANGE, "pickle LONG1 wider than 64 bits");
            m->pos++;
            if ((rc = pk_need(m, n)))
                break;
            uint64_t u = 0;
            for (size_t i = 0; i < n; i++)
                u |= (uint64_t)m->p[m->pos + i] << (8 * i);
            if (n > 0 && n < 8 && (m->p[m->pos + n - 1] & 0x80))
                u |= ~(uint64_t)0 << (8 * n);
            m->pos += n;
            rc = pk_int_obj(m, O_INT, (int64_t)u);
            break;
        }
        case 0x88: /* NEWTRUE */
            rc = pk_int_obj(m, O_BOOL, 1);
            break;
        case 0x89: /* NEWFALSE */
            rc = pk_int_obj(m, O_BOOL, 0);
            break;
        case 'N': /* NONE */
            rc = pk_push(m, pk_new(m, O_NONE));
            break;
        case 'G': { /* BINFLOAT: big-endian double */
            if ((rc = pk_need(m, 8)))
                break;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = u << 8 | m->p[m->pos + (size_t)i];
            m->pos += 8;
            pk_obj *o = pk_new(m, O_FLOAT);
            if (o)
                memcpy(&o->f, &u, 8);
            rc = pk_push(m, o);
            break;
        }
        case 't': /* TUPLE */
            if ((rc = pk_pop_mark(m, &base)))
                break;
            rc = pk_make_tuple(m, m->depth - base);
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
            rc = pk_make_tuple(m, (size_t)(op - 0x84));
            break;
        case 's': /* SETITEM */
            if ((rc = pk_pop(m, &b)) || (rc = pk_pop(m, &a)))
                break;
            if (m->depth == 0 || m->stack[m->depth - 1]->kind != O_DICT)
                return pk_fail_at(m, VLM_EFORMAT, "SETITEM on something that is not a dict");
            {
                pk_obj *kv[2] = {a, b};
                rc = pk_append(m, m->stack[m->depth - 1], kv, 2);
            }
            break;
        case 'u': /* SETITEMS */
            if ((rc = pk_pop_mark(m, &base)))
                break;
            if (base == 0 || m->stack[base - 1]->kind != O_DICT || (m->depth - base) % 2)
                return pk_fail_at(m, VLM_EFORMAT, "SETITEMS needs a dict and key/value pairs");
            if (m->depth > base)
                rc = pk_append(m, m->stack[base - 1], m->stack + base, m->depth - base);
            m->depth = base;
            break;
        case 'a': /* APPEND */
            if ((rc = pk_pop(m, &a)))
                break;
            if (m->depth == 0 || m->stack[m->depth - 1]->kind != O_LIST)
                return pk_fail_at(m, VLM_EFORMAT, "APPEND to something that is not a list");
            rc = pk_append(m, m->stack[m->depth - 1], &a, 1);
            break;
        case 'e': /* APPENDS */
            if ((rc = pk_pop_mark(m, &base)))
                break;
            if (base == 0 || m->stack[base - 1]->kind != O_LIST)
                return pk_fail_at(m, VLM_EFORMAT, "APPENDS to something that is not a list");
            if (m->depth > base)
                rc = pk_append(m, m->stack[base - 1], m->stack + base, m->depth - base);
            m->depth = base;
            break;
        case 'R': /* REDUCE */
            if ((rc = pk_pop(m, &b)) || (rc = pk_pop(m, &a)))
                break;
            if ((rc = pk_call(m, a, b, &c, 0)))
                break;
            rc = pk_push(m, c);
            break;
        case 'Q': /* BINPERSID */
            if ((rc = pk_pop(m, &a)))
                break;
            rc = pk_persistent_load(m, a);
            break;
        case 'b': /* BUILD: state of a dict (e.g. _metadata) or tensor carries no weights */
            if ((rc = pk_pop(m, &a)))
                break;
            if (m->depth == 0 || (m->stack[m->depth - 1]->kind != O_DICT && m->stack[m->depth - 1]->kind != O_TENSOR))
                return pk_fail_at(m, VLM_EUNSUPPORTED, "BUILD on something other than a dict or tensor");
            break;
        default: {
            char msg[80];
            snprintf(msg, sizeof msg, "pickle opcode 0x%02x is not supported", op);
            m->pos--;
            return pk_fail_at(m, VLM_EUNSUPPORTED, msg);
        }
        }
    }
    return rc;
}

/* Pushes one tensor of the top-level dict into the set. */
static int push_tensor(src_set *s, const char *file, const pk_obj *key, const pk_obj *t, vlm_error *e)
{
    if (key->len == 0 || key->len > SRC_MAX_NAME || memchr(key->s, 0, key->len))
        return vlm_fail(e, VLM_EFORMAT, "%s: a tensor name is empty, longer than %d bytes or contains NUL", file,
                        SRC_MAX_NAME);
    src_tensor st;
    memset(&st, 0, sizeof st);
    st.name = malloc(key->len + 1);
    if (!st.name)
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory", file);
    memcpy(st.name, key->s, key->len);
    st.name[key->len] = 0;
    st.dtype = t->dtype;
    st.ndim = t->ndim;
    memcpy(st.shape, t->shape, sizeof st.shape);
    memcpy(st.stride, t->stride, sizeof st.stride);
    st.file = file;
    /* Checked here rather than at REDUCE so that the message can name the tensor. */
    char what[SRC_MAX_NAME + 400];
    snprintf(what, sizeof what, "%s: tensor '%s': storage 'data/%.*s'", file, st.name, (int)(t->len < 256 ? t->len : 256),
             t->s);
    size_t numel;
    int rc = src_check_extent(what, t->ndim, t->shape, t->stride, t->offset, t->storage_elems, t->dtype, &numel, e);
    if (rc) {
        free(st.name);
        return rc;
    }
    /* An empty tensor may carry any offset; point it at the storage start. */
    st.data = numel ? t->mem->data + t->offset * src_dtype_size(t->dtype) : t->mem->data;
    return src_set_push(s, &st, e);
}

int src_load_torchzip(src_set *s, const uint8_t *data, size_t size, const char *file, vlm_error *e)
{
    zip_archive z = {NULL, 0};
    pk_machine m;
    memset(&m, 0, sizeof m);
    int rc = zip_open(data, size, file, &z, e);
    if (rc)
        goto out;
    /* data.pkl sits in one top-level folder whose name torch takes from the file name. */
    const zip_member *pkl = NULL;
    for (size_t i = 0; i < z.count; i++) {
        const zip_member *zm = &z.members[i];
        const char *slash = memchr(zm->name, '/', zm->name_len);
        if (slash && zm->name_len - (size_t)(slash - zm->name) == 9 && memcmp(slash, "/data.pkl", 9) == 0) {
            if (pkl) {
                rc = vlm_fail(e, VLM_EFORMAT, "%s: more than one data.pkl in the archive", file);
                goto out;
            }
            pkl = zm;
        }
    }
    if (!pkl) {
        rc = vlm_fail(e, VLM_EFORMAT, "%s: no <folder>/data.pkl member (not a torch.save archive)", file);
        goto out;
    }
    size_t prefix_len = pkl->name_len - 8; /* keeps the '/' */
    if (prefix_len > ZIP_MAX_NAME) {
        rc = vlm_fail(e, VLM_EFORMAT, "%s: archive folder name longer than %d bytes", file, ZIP_MAX_NAME);
        goto out;
    }
    char member[ZIP_MAX_NAME + 16];
    int mlen = snprintf(member, sizeof member, "%.*sbyteorder", (int)prefix_len, pkl->name);
    const zip_member *bo = zip_find(&z, member, (size_t)mlen);
    if (bo && !(bo->size == 6 && memcmp(bo->data, "little", 6) == 0)) {
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: byteorder is '%.*s', only 'little' is supported", file,
                      (int)(bo->size < 16 ? bo->size : 16), (const char *)bo->data);
        goto out;
    }
    if (pkl->size > SRC_MAX_PICKLE) {
        rc = vlm_fail(e, VLM_ERANGE, "%s: data.pkl is %zu bytes (limit %u)", file, pkl->size, SRC_MAX_PICKLE);
        goto out;
    }
    m.p = pkl->data;
    m.size = pkl->size;
    m.file = file;
    m.zip = &z;
    m.prefix = pkl->name;
    m.prefix_len = prefix_len;
    m.e = e;
    pk_obj *top = NULL;
    rc = pk_run(&m, &top);
    if (rc == 0 && top->kind != O_DICT)
        rc = vlm_fail(e, VLM_EUNSUPPORTED, "%s: data.pkl holds a %s, not a state dict of tensors", file,
                      top->kind == O_TENSOR ? "single tensor" : "non-dict object");
    /* Values that are not tensors (nested dicts, numbers) are skipped: real checkpoints are
     * flat state dicts and the converter reports any weight it cannot find. */
    for (size_t i = 0; rc == 0 && i < top->len; i++) {
        const pk_obj *key = top->items[2 * i], *val = top->items[2 * i + 1];
        if (val->kind != O_TENSOR)
            continue;
        if (key->kind != O_STR)
            rc = vlm_fail(e, VLM_EFORMAT, "%s: a state dict key is not a string", file);
        else
            rc = push_tensor(s, file, key, val, e);
    }
out:
    pk_free(&m);
    free(z.members);
    return rc;
}
