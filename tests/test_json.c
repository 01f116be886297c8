/* test_json.c: tests of the strict JSON parser (weights-tool/json.c): valid documents and
 * their values, escapes and surrogates, numbers, every truncation of a valid document,
 * invalid documents (grammar, UTF-8, depth, duplicates), big-object lookup and file loading. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "th.h"

static json_doc *parse_str(const char *s, vlm_error *e) { return json_parse(s, strlen(s), "test.json", e); }

/* Checks that s fails to parse with the given code and that the message names the input. */
static void expect_fail(const char *s, int code)
{
    vlm_error e = {0};
    json_doc *d = parse_str(s, &e);
    TH_CHECK(d == NULL, "accepted invalid document: %s", s);
    TH_CHECK(!d ? e.code == code : 1, "doc %s: code %d, expected %d (%s)", s, e.code, code, e.msg);
    TH_CHECK(!d ? strstr(e.msg, "test.json") != NULL : 1, "message lacks the name: %s", e.msg);
    json_free(d);
}

static void test_basic(void)
{
    vlm_error e = {0};
    const char *doc = " {\"a\": 1, \"b\": [true, false, null, -2.5e3, \"x\"], \"c\": {\"d\": \"e\"},"
                      " \"empty\": {}, \"arr\": []}\r\n";
    json_doc *d = parse_str(doc, &e);
    TH_CHECK(d != NULL, "%s", e.msg);
    if (!d)
        return;
    const json_value *r = json_root(d);
    TH_CHECK(r->type == JSON_OBJECT && r->len == 5, "root type %d len %zu", r->type, r->len);
    TH_CHECK(strcmp(r->keys[0], "a") == 0 && strcmp(r->keys[4], "arr") == 0, "keys in file order");
    int64_t i;
    TH_CHECK(json_get_int(r, "a", 0, 10, &i) && i == 1, "a");
    TH_CHECK(!json_get_int(r, "a", 2, 10, &i), "a out of range must fail");
    const json_value *b = json_get(r, "b");
    TH_CHECK(b && b->type == JSON_ARRAY && b->len == 5, "b");
    if (b && b->len == 5) {
        TH_CHECK(b->items[0]->type == JSON_BOOL && b->items[0]->boolean == 1, "true");
        TH_CHECK(b->items[1]->type == JSON_BOOL && b->items[1]->boolean == 0, "false");
        TH_CHECK(b->items[2]->type == JSON_NULL, "null");
        TH_CHECK(b->items[3]->type == JSON_NUMBER && b->items[3]->number == -2500.0, "number %g",
                 b->items[3]->number);
        TH_CHECK(b->items[4]->type == JSON_STRING && strcmp(b->items[4]->str, "x") == 0, "string");
    }
    TH_CHECK(strcmp(json_get_str(json_get(r, "c"), "d"), "e") == 0, "nested");
    TH_CHECK(json_get(r, "missing") == NULL, "missing key");
    TH_CHECK(json_get_str(r, "a") == NULL, "type mismatch gives NULL");
    double x;
    TH_CHECK(!json_get_num(r, "c", &x), "object is not a number");
    int bo;
    TH_CHECK(!json_get_bool(r, "a", &bo), "number is not a bool");
    TH_CHECK(json_get(r, "empty")->len == 0 && json_get(r, "arr")->len == 0, "empty containers");
    TH_CHECK(json_get(b, "a") == NULL, "json_get on an array gives NULL");
    json_free(d);

    /* Scalars are valid roots (RFC 8259). */
    d = parse_str("  42 ", &e);
    TH_CHECK(d && json_root(d)->type == JSON_NUMBER && json_root(d)->number == 42, "scalar root");
    json_free(d);
    d = parse_str("\"\"", &e);
    TH_CHECK(d && json_root(d)->type == JSON_STRING && json_root(d)->len == 0, "empty string root");
    json_free(d);
}

static void test_strings(void)
{
    vlm_error e = {0};
    static const struct {
        const char *json;
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
        {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},  /* U+1F600 via a surrogate pair */
        {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4},  /* U+10FFFF */
        {"\"a\\u0000b\"", "a\0b", 3},                   /* embedded NUL: use len */
        {"\"\xe2\x96\x81x\xf0\x9f\x98\x80\"", "\xe2\x96\x81x\xf0\x9f\x98\x80", 8}, /* raw UTF-8 */
        {"\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_doc *d = parse_str(cases[i].json, &e);
        TH_CHECK(d != NULL, "case %zu: %s", i, e.msg);
        if (!d)
            continue;
        const json_value *v = json_root(d);
        TH_CHECK(v->type == JSON_STRING && v->len == cases[i].len && memcmp(v->str, cases[i].bytes, v->len) == 0 &&
                     v->str[v->len] == 0,
                 "case %zu: decoded %zu bytes", i, v->len);
        json_free(d);
    }
    /* Keys are decoded too. */
    json_doc *d = parse_str("{\"\\u0061b\": 7}", &e);
    double x = 0;
    TH_CHECK(d && json_get_num(json_root(d), "ab", &x) && x == 7, "escaped key");
    json_free(d);
}

static void test_numbers(void)
{
    vlm_error e = {0};
    static const struct {
        const char *json;
        double value;
    } cases[] = {
        {"0", 0},           {"-0", -0.0},       {"1", 1},           {"-1", -1},
        {"123456789", 123456789}, {"0.5", 0.5}, {"-0.25", -0.25},   {"1e3", 1000},
        {"1E+3", 1000},     {"25e-2", 0.25},    {"1.5e1", 15},      {"9007199254740993", 9007199254740992.0},
        {"1e-400", 0},      {"1.7976931348623157e308", 1.7976931348623157e308},
        {"0.1", 0.1},       {"1e-05", 1e-05},   {"10000.0", 10000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_doc *d = parse_str(cases[i].json, &e);
        TH_CHECK(d != NULL, "%s: %s", cases[i].json, e.msg);
        if (!d)
            continue;
        const json_value *v = json_root(d);
        TH_CHECK(v->type == JSON_NUMBER && v->number == cases[i].value, "%s -> %.17g", cases[i].json, v->number);
        json_free(d);
    }
    json_doc *d = parse_str("-0", &e);
    TH_CHECK(d && signbit(json_root(d)->number), "-0 keeps its sign");
    json_free(d);

    const char *bad[] = {"01", "-", "+1", ".5", "1.", "1e", "1e+", "--1", "0x10", "1.5.2", "NaN", "Infinity",
                         "-Infinity", "1 2", "00", "-01", "1e1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_fail(bad[i], VLM_EFORMAT);
    expect_fail("1e400", VLM_ERANGE);
    expect_fail("-1e400", VLM_ERANGE);

    /* Integer lookups. */
    d = parse_str("{\"a\": 1.5, \"b\": -3, \"c\": 9223372036854775807, \"d\": 1e2, \"e\": 4294967296}", &e);
    TH_CHECK(d != NULL, "%s", e.msg);
    int64_t i64 = 0;
    const json_value *r = json_root(d);
    TH_CHECK(!json_get_int(r, "a", INT64_MIN, INT64_MAX, &i64), "1.5 is not an integer");
    TH_CHECK(json_get_int(r, "b", -5, 5, &i64) && i64 == -3, "-3");
    TH_CHECK(!json_get_int(r, "c", INT64_MIN, INT64_MAX, &i64), "2^63 (rounded) is out of int64");
    TH_CHECK(json_get_int(r, "d", 0, 100, &i64) && i64 == 100, "1e2 is the integer 100");
    TH_CHECK(!json_get_int(r, "e", 0, UINT32_MAX, &i64), "2^32 over the limit");
    TH_CHECK(json_get_int(r, "e", 0, INT64_MAX, &i64) && i64 == 4294967296LL, "2^32");
    json_free(d);
}

static void test_invalid(void)
{
    const char *bad[] = {
        "", " ", "{", "}", "[", "]", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\"}", "{\"a\" 1}", "{a:1}",
        "{'a':1}", "[1 2]", "tru", "true false", "nul", "nulll", "[\"a\\x\"]", "\"\\u12\"",
        "\"\\u12g4\"", "\"abc", "\"tab\there\"", "\"nl\nhere\"", "\"\\ud800\"", "\"\\udc00\"",
        "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\\udbff\\ud800\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\xe2\x96\"", "\"\x80\"", "\"\xf0\x9f\x98\"", "\xef\xbb\xbf{}",
        "{} x", "[1]]", "/* c */ 1", "[1] // c", "{\"a\":1 \"b\":2}", "\"\\", "\"\\\"",
        "{\"a\":1,\"a\":2}", "{\"k\\u0000\":1,\"k\\u0000\":2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_fail(bad[i], VLM_EFORMAT);
    /* Duplicate keys that differ only after an embedded NUL are distinct keys. */
    vlm_error e = {0};
    json_doc *d = parse_str("{\"k\\u0000a\":1,\"k\\u0000b\":2,\"k\":3}", &e);
    double x = 0;
    TH_CHECK(d && json_get_num(json_root(d), "k", &x) && x == 3, "NUL keys: %s", e.msg);
    json_free(d);
    /* NULs in raw input are control characters inside strings and garbage outside. */
    d = json_parse("\"a\0b\"", 5, "test.json", &e);
    TH_CHECK(!d && e.code == VLM_EFORMAT, "raw NUL in string");
    d = json_parse("1\0", 2, "test.json", &e);
    TH_CHECK(!d && e.code == VLM_EFORMAT, "trailing NUL");
    /* The message locates the error. */
    d = parse_str("{\n  \"a\": [1,\n  2,, 3]}", &e);
    TH_CHECK(!d && strstr(e.msg, "line 3") && strstr(e.msg, "column 5") && strstr(e.msg, "byte offset 17"),
             "location: %s", e.msg);
}

/* Every proper prefix of a valid document must be rejected (a truncated file is never read as
 * a smaller valid one, except where the prefix is itself a complete number). */
static void test_truncations(void)
{
    const char *doc = "{\"name\": \"x\\u00e9\\ud83d\\ude00\", \"v\": [1.5e-3, -0, true, false, null, {\"k\": []}],"
                      " \"s\": \"\xe2\x96\x81\", \"n\": 12}";
    vlm_error e = {0};
    json_doc *d = parse_str(doc, &e);
    TH_CHECK(d != NULL, "full document: %s", e.msg);
    json_free(d);
    size_t n = strlen(doc), rejected = 0;
    for (size_t len = 0; len < n; len++) {
        d = json_parse(doc, len, "test.json", &e);
        rejected += d == NULL;
        TH_CHECK(d == NULL, "prefix of %zu bytes accepted", len);
        json_free(d);
    }
    TH_CHECK(rejected == n, "%zu of %zu prefixes rejected", rejected, n);
}

static void test_depth(void)
{
    char buf[400];
    vlm_error e = {0};
    for (int depth = 63; depth <= 66; depth++) {
        int n = 0;
        for (int i = 0; i < depth; i++)
            buf[n++] = '[';
        for (int i = 0; i < depth; i++)
            buf[n++] = ']';
        json_doc *d = json_parse(buf, (size_t)n, "test.json", &e);
        if (depth <= 64)
            TH_CHECK(d != NULL, "depth %d: %s", depth, e.msg);
        else
            TH_CHECK(!d && e.code == VLM_ERANGE, "depth %d accepted", depth);
        json_free(d);
    }
    /* Very deep input must fail cleanly, not overflow the stack. */
    size_t big = 1 << 20;
    char *deep = malloc(big);
    memset(deep, '[', big);
    json_doc *d = json_parse(deep, big, "test.json", &e);
    TH_CHECK(!d && e.code == VLM_ERANGE, "1M-deep nesting");
    memset(deep, '{', big);
    d = json_parse(deep, big, "test.json", &e);
    TH_CHECK(!d, "1M '{'");
    free(deep);
}

/* A safetensors-like header with 20000 keys: parse and look up every key quickly. */
static void test_big_object(void)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 96 + 16, n = 0;
    char *buf = malloc(cap);
    buf[n++] = '{';
    for (int i = 0; i < N; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"model.layers.%d.weight\": {\"offsets\": [%d, %d]}",
                              i ? ", " : "", (i * 7919) % N, i, i + 1);
    buf[n++] = '}';
    vlm_error e = {0};
    clock_t t0 = clock();
    json_doc *d = json_parse(buf, n, "big.json", &e);
    TH_CHECK(d != NULL, "%s", e.msg);
    int found = 0;
    if (d) {
        const json_value *r = json_root(d);
        TH_CHECK(r->len == N, "len %zu", r->len);
        for (int i = 0; i < N; i++) {
            char key[64];
            snprintf(key, sizeof key, "model.layers.%d.weight", (i * 7919) % N);
            const json_value *v = json_get(json_get(r, key), "offsets");
            found += v && v->len == 2 && v->items[0]->number == i;
        }
        TH_CHECK(json_get(r, "model.layers.20000.weight") == NULL, "absent key");
        TH_CHECK(json_get(r, "") == NULL, "empty key");
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    TH_CHECK(found == N, "found %d of %d", found, N);
    TH_CHECK(secs < 2.0, "parse + %d lookups took %.2f s", N, secs);
    json_free(d);
    free(buf);
}

static void test_file(void)
{
    vlm_error e = {0};
    json_doc *d = json_parse_file(TH_DATA("fixtures/stories260K-hf/config.json"), 1 << 20, &e);
    TH_CHECK(d != NULL, "%s", e.msg);
    int64_t v = 0;
    TH_CHECK(d && json_get_int(json_root(d), "vocab_size", 1, 1 << 20, &v) && v == 512, "vocab_size %lld",
             (long long)v);
    TH_CHECK(d && json_get_int(json_root(d), "hidden_size", 1, 1 << 20, &v) && v == 64, "hidden_size %lld",
             (long long)v);
    json_free(d);
    d = json_parse_file(TH_DATA("fixtures/stories260K-hf/config.json"), 10, &e);
    TH_CHECK(!d && e.code == VLM_ERANGE, "size limit: %s", e.msg);
    d = json_parse_file(TH_DATA("no/such/file.json"), 1 << 20, &e);
    TH_CHECK(!d && e.code == VLM_EIO && strstr(e.msg, "file.json"), "missing file: %s", e.msg);
}

int main(void)
{
    test_basic();
    test_strings();
    test_numbers();
    test_invalid();
    test_truncations();
    test_depth();
    test_big_object();
    test_file();
    return th_report("test_json");
}
