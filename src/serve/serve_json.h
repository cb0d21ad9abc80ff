/* serve_json.h — private to src/serve: a small read-only JSON reader for large model files.
 *
 * XGBoost models are megabytes of number arrays. A general JSON library allocates an object per
 * number and converts each one on the spot (jansson: 190 ms for a 1,000-tree, 5.8 MB model);
 * this reader makes one pass that records every value as a span of the text in a flat array,
 * with containers pointing into one array of child indices, and converts a number only when it
 * is read — as a float32 straight from its decimal text (strtof, no double rounding) where the
 * model stores float32. Values are addressed by index; index 0 is the root. */
#ifndef SP_SERVE_JSON_H
#define SP_SERVE_JSON_H

#include "core_internal.h"

enum { SP__J_NULL, SP__J_FALSE, SP__J_TRUE, SP__J_NUMBER, SP__J_STRING, SP__J_ARRAY, SP__J_OBJECT };

#define SP__J_NONE UINT32_MAX

typedef struct sp__jv {
    uint8_t type;
    uint8_t escaped; /* string: holds a backslash escape */
    uint32_t a;      /* number/string: offset of the text (inside the quotes); array/object:
                        first entry in kids */
    uint32_t b;      /* text length; array: elements; object: members (kids holds key, value) */
} sp__jv;

typedef struct sp__json {
    const char *text;
    sp__jv *v;
    uint32_t nv, cap_v;
    uint32_t *kids;
    uint32_t nk, cap_k;
} sp__json;

/* Parses text (RFC 8259; nesting up to 512 levels; at most 4 GiB). Errors are SP_EBADINPUT
 * "name:LINE:COL: what". text must outlive the result. */
sp_status sp__json_parse(const char *name, const char *text, size_t len, sp__json *out);
void sp__json_free(sp__json *j);

/* The member `key` of object `obj` (SP__J_NONE if obj is not an object or has no such key). */
uint32_t sp__json_get(const sp__json *j, uint32_t obj, const char *key);
/* Elements of an array (0 for anything else), and element i. */
uint32_t sp__json_len(const sp__json *j, uint32_t arr);
uint32_t sp__json_at(const sp__json *j, uint32_t arr, uint32_t i);
static inline int sp__json_type(const sp__json *j, uint32_t v) {
    return v == SP__J_NONE ? -1 : j->v[v].type;
}
/* A number (true/false read as 1/0): 0 on success, -1 if v is not one. */
int sp__json_double(const sp__json *j, uint32_t v, double *out);
int sp__json_float(const sp__json *j, uint32_t v, float *out);
/* A string value copied into buf (escapes decoded; truncated to cap - 1). -1 if not a string. */
int sp__json_string(const sp__json *j, uint32_t v, char *buf, size_t cap);

#endif
