/* json.c: strict RFC 8259 JSON parser into a DOM held in one arena (see json.h).
 * Owns: grammar validation, string decoding (all escapes, surrogate pairs, UTF-8 validation),
 * number parsing, limits (depth 64, input 256 MiB, arena 1 GiB) and keyed lookup.
 * Conventions: duplicate keys in one object are an ERROR (they make a document ambiguous: two
 * readers could see two different headers); a leading UTF-8 BOM is an error; any value may be
 * the root; errors name the input, the line, the column and the byte offset. */
#include "json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum {
    JSON_MAX_DEPTH = 64,
    JSON_MAX_NUMBER_CHARS = 1024, /* longer literals are legal JSON but never in our inputs */
};
#define JSON_MAX_INPUT ((size_t)256 << 20)
#define JSON_MAX_ARENA ((size_t)1 << 30)
#define JSON_CHUNK_BYTES ((size_t)64 << 10)
/* Objects with at least this many keys get a sorted index; smaller ones are scanned. */
#define JSON_INDEX_MIN 8

typedef struct arena_chunk arena_chunk;
struct arena_chunk {
    arena_chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char data[]; /* (cap) bytes */
};

struct json_doc {
    arena_chunk *chunks; /* newest first */
    size_t total;        /* bytes of all chunks, for the budget */
    json_value *root;
};

/* Object storage: `items` points at the start of one arena block laid out as
 *   json_value *items[len]; size_t key_len[len]; uint32_t order[len];
 * where order is the permutation sorting the keys (by bytes, then length). Hidden from the
 * public struct so that json.h stays as declared; only this file ever looks past items[len]. */
/* Hidden per-object arrays (see above); obj must be a JSON_OBJECT built by this file. */
static size_t *obj_key_len(const json_value *obj) { return (size_t *)(obj->items + obj->len); }
static uint32_t *obj_order(const json_value *obj) { return (uint32_t *)(obj_key_len(obj) + obj->len); }

typedef struct pending {
    json_value *value;
    const char *key; /* NULL inside arrays */
    size_t key_len;
} pending;

typedef struct parser {
    const char *text; /* (len) input bytes */
    size_t len, pos;
    const char *name;
    vlm_error *e;
    json_doc *doc;
    pending *stack; /* (cap) children of every open container, innermost last */
    size_t n_stack, cap_stack;
    int depth;
} parser;

/* Allocates n bytes (max-aligned) from the arena; NULL when out of memory or over budget. */
static void *arena_alloc(json_doc *d, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    size_t rounded;
    if (ck_add(n, align - 1, &rounded))
        return NULL;
    rounded &= ~(align - 1);
    if (!rounded)
        rounded = align;
    arena_chunk *c = d->chunks;
    if (!c || c->cap - c->used < rounded) {
        size_t cap = rounded > JSON_CHUNK_BYTES ? rounded : JSON_CHUNK_BYTES;
        size_t bytes, total;
        if (ck_add(cap, sizeof(arena_chunk), &bytes) || ck_add(d->total, bytes, &total) ||
            total > JSON_MAX_ARENA)
            return NULL;
        c = malloc(bytes);
        if (!c)
            return NULL;
        c->next = d->chunks;
        c->used = 0;
        c->cap = cap;
        d->chunks = c;
        d->total = total;
    }
    void *p = c->data + c->used;
    c->used += rounded;
    return p;
}

/* Reports an error at byte offset at, with its line and column (1-based). */
static int fail_at(parser *p, size_t at, int code, const char *what)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return vlm_fail(p->e, code, "%s: JSON %s at line %zu column %zu (byte offset %zu of %zu)",
                    p->name, what, line, col, at, p->len);
}

/* The arena or the pending stack could not grow: VLM_ENOMEM naming the input. */
static int fail_nomem(parser *p)
{
    return vlm_fail(p->e, VLM_ENOMEM, "%s: JSON document needs more than the %zu MiB budget",
                    p->name, JSON_MAX_ARENA >> 20);
}

/* Advances over JSON whitespace (space, tab, LF, CR only: RFC 8259 allows nothing else). */
static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* Appends a parsed child to the shared stack of open containers; 0 or VLM_ENOMEM. */
static int push_pending(parser *p, json_value *v, const char *key, size_t key_len)
{
    if (p->n_stack == p->cap_stack) {
        size_t cap = p->cap_stack ? p->cap_stack * 2 : 64, bytes;
        if (ck_mul(cap, sizeof(pending), &bytes))
            return fail_nomem(p);
        pending *s = realloc(p->stack, bytes);
        if (!s)
            return fail_nomem(p);
        p->stack = s;
        p->cap_stack = cap;
    }
    p->stack[p->n_stack++] = (pending){v, key, key_len};
    return 0;
}

/* Reads 4 hex digits at text[at..at+3] into *out; returns 0 or -1. at+4 <= len is checked. */
static int read_hex4(const parser *p, size_t at, unsigned *out)
{
    if (p->len - at < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->text[at + (size_t)i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* Writes code point cp (<= U+10FFFF, not a surrogate) as UTF-8 to o (room for 4); returns bytes. */
static size_t put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length (1..4) of the well-formed UTF-8 sequence at s[0:n] (RFC 3629: no overlongs, no
 * surrogates, max U+10FFFF), or 0 if it is not well formed. n >= 1. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return need;
}

/* Parses the string starting at the opening quote at p->pos. On success *out is an
 * arena copy (NUL-terminated, decoded) and *out_len its byte length. */
static int parse_string(parser *p, const char **out, size_t *out_len)
{
    size_t start = p->pos + 1, end = start;
    /* Find the closing quote first: decoded bytes never exceed raw bytes, so one
     * allocation of the raw length suffices. */
    while (end < p->len && p->text[end] != '"') {
        if (p->text[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->len)
        return fail_at(p, p->pos, VLM_EFORMAT, "string without a closing quote");
    unsigned char *o = arena_alloc(p->doc, end - start + 1);
    if (!o)
        return fail_nomem(p);
    size_t n = 0, i = start;
    const unsigned char *s = (const unsigned char *)p->text;
    while (i < end) {
        unsigned c = s[i];
        if (c < 0x20)
            return fail_at(p, i, VLM_EFORMAT, "control character (< 0x20) unescaped in a string");
        if (c >= 0x80) {
            size_t k = utf8_seq_len(s + i, end - i);
            if (!k)
                return fail_at(p, i, VLM_EFORMAT, "invalid UTF-8 in a string");
            memcpy(o + n, s + i, k);
            n += k;
            i += k;
            continue;
        }
        if (c != '\\') {
            o[n++] = (unsigned char)c;
            i++;
            continue;
        }
        /* i + 1 < end holds: the scan above never stops between a backslash and its byte. */
        char esc = p->text[i + 1];
        const char *simple = strchr("\"\\/bfnrt", esc);
        if (esc && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            o[n++] = (unsigned char)decoded[simple - "\"\\/bfnrt"];
            i += 2;
            continue;
        }
        if (esc != 'u')
            return fail_at(p, i, VLM_EFORMAT, "invalid escape sequence in a string");
        unsigned cp;
        if (i + 6 > end || read_hex4(p, i + 2, &cp))
            return fail_at(p, i, VLM_EFORMAT, "\\u escape without 4 hex digits");
        size_t esc_at = i;
        i += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return fail_at(p, esc_at, VLM_EFORMAT, "lone low surrogate \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (i + 6 > end || p->text[i] != '\\' || p->text[i + 1] != 'u' || read_hex4(p, i + 2, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return fail_at(p, esc_at, VLM_EFORMAT, "high surrogate \\u escape not followed by a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        }
        n += put_utf8(o + n, cp);
    }
    o[n] = 0;
    *out = (const char *)o;
    *out_len = n;
    p->pos = end + 1;
    return 0;
}

/* ASCII digit test that ignores the locale, unlike isdigit. */
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Parses the number at p->pos into v after checking the RFC 8259 grammar by hand, so strtod
 * never sees hex, inf, nan or a leading '+'. VLM_EFORMAT on bad grammar, VLM_ERANGE on overflow. */
static int parse_number(parser *p, json_value *v)
{
    size_t start = p->pos, i = start;
    const char *t = p->text;
    if (i < p->len && t[i] == '-')
        i++;
    if (i >= p->len || !is_digit(t[i]))
        return fail_at(p, i, VLM_EFORMAT, "number without digits");
    if (t[i] == '0') {
        i++;
        if (i < p->len && is_digit(t[i]))
            return fail_at(p, i, VLM_EFORMAT, "number with a leading zero");
    } else {
        while (i < p->len && is_digit(t[i]))
            i++;
    }
    size_t dot = (size_t)-1;
    if (i < p->len && t[i] == '.') {
        dot = i - start;
        i++;
        if (i >= p->len || !is_digit(t[i]))
            return fail_at(p, i, VLM_EFORMAT, "number without digits after '.'");
        while (i < p->len && is_digit(t[i]))
            i++;
    }
    if (i < p->len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < p->len && (t[i] == '+' || t[i] == '-'))
            i++;
        if (i >= p->len || !is_digit(t[i]))
            return fail_at(p, i, VLM_EFORMAT, "number without exponent digits");
        while (i < p->len && is_digit(t[i]))
            i++;
    }
    size_t n = i - start;
    if (n > JSON_MAX_NUMBER_CHARS)
        return fail_at(p, start, VLM_ERANGE, "number literal longer than 1024 characters");
    /* strtod needs a NUL-terminated copy and reads the locale's decimal point: if a program
     * changed LC_NUMERIC, substitute its separator so "0.5" still parses as one half. */
    char buf[JSON_MAX_NUMBER_CHARS + 8];
    const char *point = localeconv()->decimal_point;
    size_t point_len = point ? strlen(point) : 0;
    if (dot != (size_t)-1 && point_len >= 1 && point_len <= 4 && strcmp(point, ".") != 0) {
        memcpy(buf, t + start, dot);
        memcpy(buf + dot, point, point_len);
        memcpy(buf + dot + point_len, t + start + dot + 1, n - dot - 1);
        buf[n - 1 + point_len] = 0;
    } else {
        memcpy(buf, t + start, n);
        buf[n] = 0;
    }
    errno = 0;
    char *endp;
    double d = strtod(buf, &endp);
    if (*endp != 0)
        return fail_at(p, start, VLM_EFORMAT, "number not understood by strtod");
    if (errno == ERANGE && isinf(d))
        return fail_at(p, start, VLM_ERANGE, "number too large for a double");
    v->type = JSON_NUMBER;
    v->number = d;
    p->pos = i;
    return 0;
}

/* Consumes the literal word (true/false/null) at p->pos or fails with VLM_EFORMAT. */
static int parse_literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
        return fail_at(p, p->pos, VLM_EFORMAT, "unexpected character (expected a value)");
    p->pos += n;
    return 0;
}

/* Orders keys by bytes, then by length (keys may hold NUL, so strcmp would be wrong). */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Sorts order[0:n] by key with a bottom-up merge sort (stable, O(n log n), no qsort context). */
static void sort_keys(const char **keys, const size_t *key_len, uint32_t *order, uint32_t *tmp, size_t n)
{
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                uint32_t x = order[a], y = order[b];
                if (key_cmp(keys[y], key_len[y], keys[x], key_len[x]) < 0) {
                    tmp[k++] = y;
                    b++;
                } else {
                    tmp[k++] = x;
                    a++;
                }
            }
            while (a < mid)
                tmp[k++] = order[a++];
            while (b < hi)
                tmp[k++] = order[b++];
        }
        memcpy(order, tmp, n * sizeof *order);
    }
}

static int parse_value(parser *p, json_value **out);

/* Parses an array or object whose opening bracket is at p->pos. */
static int parse_container(parser *p, json_value *v, int is_object)
{
    size_t open_at = p->pos;
    if (++p->depth > JSON_MAX_DEPTH)
        return fail_at(p, open_at, VLM_ERANGE, "nesting deeper than 64 levels");
    char close = is_object ? '}' : ']';
    size_t base = p->n_stack;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->text[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            const char *key = NULL;
            size_t key_len = 0;
            skip_ws(p);
            if (is_object) {
                if (p->pos >= p->len || p->text[p->pos] != '"')
                    return fail_at(p, p->pos, VLM_EFORMAT, "object member without a string key");
                int rc = parse_string(p, &key, &key_len);
                if (rc)
                    return rc;
                skip_ws(p);
                if (p->pos >= p->len || p->text[p->pos] != ':')
                    return fail_at(p, p->pos, VLM_EFORMAT, "missing ':' after an object key");
                p->pos++;
            }
            json_value *child;
            int rc = parse_value(p, &child);
            if (rc)
                return rc;
            if ((rc = push_pending(p, child, key, key_len)))
                return rc;
            skip_ws(p);
            if (p->pos < p->len && p->text[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->text[p->pos] == close) {
                p->pos++;
                break;
            }
            return fail_at(p, p->pos, VLM_EFORMAT,
                           is_object ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
        }
    }
    size_t n = p->n_stack - base, bytes;
    if (n > UINT32_MAX)
        return fail_at(p, open_at, VLM_ERANGE, "container with more than 2^32 items");
    size_t per_item = is_object ? sizeof(json_value *) + sizeof(size_t) + 2 * sizeof(uint32_t)
                                : sizeof(json_value *);
    if (ck_mul(n, per_item, &bytes))
        return fail_nomem(p);
    v->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    v->len = n;
    v->items = n ? arena_alloc(p->doc, bytes) : NULL;
    if (n && !v->items)
        return fail_nomem(p);
    for (size_t i = 0; i < n; i++)
        v->items[i] = p->stack[base + i].value;
    if (is_object && n) {
        v->keys = arena_alloc(p->doc, n * sizeof(const char *));
        if (!v->keys)
            return fail_nomem(p);
        size_t *key_len = obj_key_len(v);
        uint32_t *order = obj_order(v), *tmp = order + n; /* tmp: the spare (n) slots */
        for (size_t i = 0; i < n; i++) {
            v->keys[i] = p->stack[base + i].key;
            key_len[i] = p->stack[base + i].key_len;
            order[i] = (uint32_t)i;
        }
        sort_keys(v->keys, key_len, order, tmp, n);
        for (size_t i = 1; i < n; i++) {
            uint32_t a = order[i - 1], b = order[i];
            if (key_cmp(v->keys[a], key_len[a], v->keys[b], key_len[b]) == 0) {
                char what[200];
                snprintf(what, sizeof what, "duplicate key \"%.120s\" in the object starting", v->keys[b]);
                return fail_at(p, open_at, VLM_EFORMAT, what);
            }
        }
    }
    p->n_stack = base;
    p->depth--;
    return 0;
}

/* Parses one value at p->pos (after whitespace) into a new arena node *out. 0 or VLM_E*. */
static int parse_value(parser *p, json_value **out)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return fail_at(p, p->pos, VLM_EFORMAT, "unexpected end of input (expected a value)");
    json_value *v = arena_alloc(p->doc, sizeof *v);
    if (!v)
        return fail_nomem(p);
    memset(v, 0, sizeof *v);
    *out = v;
    char c = p->text[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, 1);
    case '[': return parse_container(p, v, 0);
    case '"':
        v->type = JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
        v->type = JSON_BOOL;
        v->boolean = 1;
        return parse_literal(p, "true");
    case 'f':
        v->type = JSON_BOOL;
        return parse_literal(p, "false");
    case 'n':
        v->type = JSON_NULL;
        return parse_literal(p, "null");
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p, v);
        if ((unsigned char)c == 0xEF)
            return fail_at(p, p->pos, VLM_EFORMAT, "byte-order mark or stray byte (expected a value)");
        return fail_at(p, p->pos, VLM_EFORMAT, "unexpected character (expected a value)");
    }
}

/* See json.h. text need not be NUL-terminated; len <= 256 MiB. */
json_doc *json_parse(const char *text, size_t len, const char *name, vlm_error *e)
{
    if (!name)
        name = "<json>";
    if (!text && len) {
        vlm_fail(e, VLM_EARG, "%s: json_parse given NULL text of %zu bytes", name, len);
        return NULL;
    }
    if (len > JSON_MAX_INPUT) {
        vlm_fail(e, VLM_ERANGE, "%s: JSON input of %zu bytes exceeds the %zu MiB limit", name, len,
                 JSON_MAX_INPUT >> 20);
        return NULL;
    }
    json_doc *d = calloc(1, sizeof *d);
    if (!d) {
        vlm_fail(e, VLM_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    parser p = {.text = text ? text : "", .len = len, .name = name, .e = e, .doc = d};
    int rc = parse_value(&p, &d->root);
    if (!rc) {
        skip_ws(&p);
        if (p.pos != p.len)
            rc = fail_at(&p, p.pos, VLM_EFORMAT, "trailing characters after the value");
    }
    free(p.stack);
    if (rc) {
        json_free(d);
        return NULL;
    }
    return d;
}

/* See json.h. Files over max_bytes are VLM_ERANGE, unreadable ones VLM_EIO. */
json_doc *json_parse_file(const char *path, size_t max_bytes, vlm_error *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        vlm_fail(e, VLM_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 0, n = 0;
    char *buf = NULL;
    for (;;) {
        if (n == cap) {
            size_t grow = cap ? cap * 2 : 4096;
            if (grow > max_bytes + 1 && max_bytes + 1 > n)
                grow = max_bytes + 1;
            char *nb = realloc(buf, grow);
            if (!nb) {
                free(buf);
                fclose(f);
                vlm_fail(e, VLM_ENOMEM, "%s: out of memory reading %zu bytes", path, grow);
                return NULL;
            }
            buf = nb;
            cap = grow;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n > max_bytes) {
            free(buf);
            fclose(f);
            vlm_fail(e, VLM_ERANGE, "%s: JSON file larger than the %zu-byte limit", path, max_bytes);
            return NULL;
        }
    }
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(buf);
        vlm_fail(e, VLM_EIO, "%s: read error", path);
        return NULL;
    }
    json_doc *d = json_parse(buf, n, path, e);
    free(buf);
    return d;
}

/* The root value; NULL only for a NULL doc. */
const json_value *json_root(const json_doc *d) { return d ? d->root : NULL; }

/* Frees the document and every value and string in it; NULL is allowed. */
void json_free(json_doc *d)
{
    if (!d)
        return;
    arena_chunk *c = d->chunks;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(d);
}

/* Value of key in obj (binary search on the sorted index for 8+ keys, else a scan), or NULL. */
const json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT || !key || !obj->len)
        return NULL;
    size_t klen = strlen(key), n = obj->len;
    const size_t *key_len = obj_key_len(obj);
    if (n < JSON_INDEX_MIN) {
        for (size_t i = 0; i < n; i++)
            if (key_len[i] == klen && memcmp(obj->keys[i], key, klen) == 0)
                return obj->items[i];
        return NULL;
    }
    const uint32_t *order = obj_order(obj);
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t k = order[mid];
        int c = key_cmp(obj->keys[k], key_len[k], key, klen);
        if (c == 0)
            return obj->items[k];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* See json.h: NULL when absent or not a string. */
const char *json_get_str(const json_value *obj, const char *key)
{
    const json_value *v = json_get(obj, key);
    return v && v->type == JSON_STRING ? v->str : NULL;
}

/* See json.h. */
int json_get_num(const json_value *obj, const char *key, double *out)
{
    const json_value *v = json_get(obj, key);
    if (!v || v->type != JSON_NUMBER)
        return 0;
    *out = v->number;
    return 1;
}

/* See json.h: integral values only; 1.0 counts, 1.5 does not. */
int json_get_int(const json_value *obj, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const json_value *v = json_get(obj, key);
    if (!v || v->type != JSON_NUMBER)
        return 0;
    double d = v->number;
    /* 2^63 is exactly representable; (double)INT64_MAX would round up to it. */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
        return 0;
    int64_t i = (int64_t)d;
    if (i < lo || i > hi)
        return 0;
    *out = i;
    return 1;
}

/* See json.h. */
int json_get_bool(const json_value *obj, const char *key, int *out)
{
    const json_value *v = json_get(obj, key);
    if (!v || v->type != JSON_BOOL)
        return 0;
    *out = v->boolean;
    return 1;
}
