/* json.h: a strict JSON parser (RFC 8259) for config.json, safetensors headers, index files
 * and test manifests. Builds a small DOM in one allocation arena. Input is untrusted:
 * depth, sizes and numbers are checked; strings are decoded to UTF-8 (\u escapes included). */
#ifndef VLM_JSON_H
#define VLM_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    int boolean;        /* JSON_BOOL */
    double number;      /* JSON_NUMBER */
    const char *str;    /* JSON_STRING: NUL-terminated UTF-8 (may contain NUL via \u0000: use len) */
    size_t len;         /* JSON_STRING: bytes; JSON_ARRAY/OBJECT: number of items */
    json_value **items; /* JSON_ARRAY: (len) values; JSON_OBJECT: (len) values */
    const char **keys;  /* JSON_OBJECT: (len) keys, in file order */
};

typedef struct json_doc json_doc; /* owns every value */

/* Parses text[0:len]. name is for error messages. Returns NULL with e set on error. */
json_doc *json_parse(const char *text, size_t len, const char *name, vlm_error *e);
/* Reads and parses a file (at most max_bytes). */
json_doc *json_parse_file(const char *path, size_t max_bytes, vlm_error *e);
const json_value *json_root(const json_doc *d);
void json_free(json_doc *d);

/* Lookups return NULL when absent or of another type. */
const json_value *json_get(const json_value *obj, const char *key);
const char *json_get_str(const json_value *obj, const char *key);
/* Returns 1 and sets *out if key holds a number, else 0. */
int json_get_num(const json_value *obj, const char *key, double *out);
/* Returns 1 and sets *out if key holds a number that is an integer in [lo, hi], else 0. */
int json_get_int(const json_value *obj, const char *key, int64_t lo, int64_t hi, int64_t *out);
/* Returns 1 and sets *out if key holds true/false, else 0. */
int json_get_bool(const json_value *obj, const char *key, int *out);

#endif
