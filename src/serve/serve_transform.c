/* serve_transform.c — feature transforms (softpipe/transform.h): parsing and validating the spec
 * and fitted JSON, the derived layout (entry widths, feature names, inputs), and writing the
 * transform back as readable JSON. Fitting is in serve_transform_fit.c, the apply kernel in
 * serve_transform_apply.c; serve_transform_internal.h describes the structures they share.
 *
 * The spec is outside input (a user's file, a fitted file that may have been edited, the
 * fuzzer's bytes), so the parser accepts exactly the documented keys (docs/transform.md), checks
 * every value's type and range, and names the JSON path at fault. jansson parses; the writer is
 * our own so that numbers come out in their shortest round-trip form ("0.1", not jansson's
 * "0.10000000000000001") and short arrays stay on one line. */
#include "serve_transform_internal.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TF_FORMAT  "softpipe-transform"
#define TF_VERSION 1

static const char STEP_LIST[] = "fill, clip, log1p, standardize, bucketize, vocabulary, one_hot";

const char *sp__tf_kind_name(tf_kind k) {
    switch (k) {
    case TF_FILL:
        return "fill";
    case TF_CLIP:
        return "clip";
    case TF_LOG1P:
        return "log1p";
    case TF_STANDARDIZE:
        return "standardize";
    case TF_BUCKETIZE:
        return "bucketize";
    case TF_VOCABULARY:
        return "vocabulary";
    case TF_ONE_HOT:
        return "one_hot";
    }
    return "?";
}

static const char *strategy_name(tf_strategy s) {
    switch (s) {
    case TF_MEAN:
        return "mean";
    case TF_MEDIAN:
        return "median";
    case TF_MOST_FREQUENT:
        return "most_frequent";
    case TF_QUANTILES:
        return "quantiles";
    case TF_CONSTANT:
        break;
    }
    return "constant";
}

/* ------------------------------------------------------------------ small helpers */

size_t sp__tf_format_int(int64_t x, char *buf) {
    return (size_t)snprintf(buf, 32, "%" PRId64, x);
}

/* Shortest %.Ng that strtod reads back to x (N <= 17 always does). */
static size_t shortest(double x, char *buf) {
    int n = 0;
    for (int d = 1; d <= 17; d++) {
        n = snprintf(buf, 32, "%.*g", d, x);
        if (strtod(buf, NULL) == x) break;
    }
    return (size_t)n;
}

size_t sp__tf_format_number(double x, char *buf) {
    if (x == 0) x = 0; /* -0 reads as "0" */
    if (x == floor(x) && fabs(x) < 9007199254740992.0) return (size_t)snprintf(buf, 32, "%.0f", x);
    if (isinf(x)) return (size_t)snprintf(buf, 32, "%s", x < 0 ? "-inf" : "inf");
    return shortest(x, buf);
}

int sp__tf_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8 (RFC 3629). */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

void sp__tf_vocab_free(tf_vocab *v) {
    for (size_t i = 0; i < v->n; i++)
        sp__free(v->values[i].s);
    sp__free(v->values);
    sp__free(v->counts);
    sp__free(v->slots);
    memset(v, 0, sizeof *v);
}

void sp__tf_step_clear(tf_step *s) {
    sp__free(s->str.s);
    s->str.s = NULL;
    s->str.len = 0;
    sp__free(s->bounds);
    s->bounds = NULL;
    s->n_bounds = 0;
    sp__tf_vocab_free(&s->vocab);
}

sp_status sp__tf_vocab_index(tf_vocab *v, const char *where) {
    size_t cap = 16;
    while (cap < 2 * v->n)
        cap *= 2;
    sp__free(v->slots);
    v->slots = sp__calloc(cap, sizeof *v->slots);
    if (!v->slots) return sp__fail(SP_ENOMEM, "%s: out of memory", where);
    v->mask = cap - 1;
    for (size_t i = 0; i < v->n; i++) {
        const tf_str *s = &v->values[i];
        size_t h = (size_t)sp__xxh3(s->s, s->len) & v->mask;
        while (v->slots[h]) {
            const tf_str *o = &v->values[v->slots[h] - 1];
            if (o->len == s->len && !memcmp(o->s, s->s, s->len))
                return sp__fail(SP_EBADINPUT, "%s: values[%zu] \"%.60s\" repeats values[%u]", where,
                                i, s->s, v->slots[h] - 1);
            h = (h + 1) & v->mask;
        }
        v->slots[h] = (uint32_t)(i + 1);
    }
    return SP_OK;
}

size_t sp__tf_vocab_find(const tf_vocab *v, const char *s, size_t len) {
    size_t h = (size_t)sp__xxh3(s, len) & v->mask;
    for (;;) {
        uint32_t k = v->slots[h];
        if (!k) return v->n;
        const tf_str *o = &v->values[k - 1];
        if (o->len == len && !memcmp(o->s, s, len)) return k - 1;
        h = (h + 1) & v->mask;
    }
}

void sp_transform_free(sp_transform *tf) {
    if (!tf) return;
    for (size_t i = 0; i < tf->n_cols; i++) {
        tf_column *c = &tf->cols[i];
        for (size_t j = 0; j < c->n_steps; j++)
            sp__tf_step_clear(&c->steps[j]);
        sp__free(c->steps);
        sp__free(c->name);
        sp__free(c->output);
    }
    sp__free(tf->cols);
    for (size_t i = 0; i < tf->n_inputs; i++)
        sp__free(tf->inputs[i]);
    sp__free(tf->inputs);
    sp__free(tf->input_text);
    for (size_t i = 0; i < tf->n_features; i++)
        sp__free(tf->features[i]);
    sp__free(tf->features);
    sp__free(tf->name);
    sp__free(tf);
}

/* ------------------------------------------------------------------ parsing */

/* Parse context: the file name and the JSON path of the value being read, for messages. */
typedef struct pctx {
    const char *name;
    char path[256];
} pctx;

static sp_status bad(const pctx *p, const char *fmt, ...) SP__PRINTF(2, 3);
static sp_status bad(const pctx *p, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->path[0]) return sp__fail(SP_EBADINPUT, "%s: %s: %s", p->name, p->path, what);
    return sp__fail(SP_EBADINPUT, "%s: %s", p->name, what);
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Rejects keys of object `o` not in the NULL-terminated list `allowed`. */
static sp_status only_keys(const pctx *p, json_t *o, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(key, *a);
        if (!ok) {
            char list[256] = "";
            size_t at = 0;
            for (const char *const *a = allowed; *a; a++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", at ? ", " : "", *a);
            return bad(p, "unknown key \"%.60s\" (expected %s)", key, list);
        }
    }
    return SP_OK;
}

static sp_status get_finite(const pctx *p, const json_t *v, const char *what, double *out) {
    if (!json_is_number(v)) return bad(p, "%s must be a number, not %s", what, json_type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x)) return bad(p, "%s must be finite", what);
    *out = x;
    return SP_OK;
}

/* A non-negative integer (JSON integer, or a real with an integral value) up to `max`. */
static sp_status get_count(const pctx *p, const json_t *v, const char *what, uint64_t max,
                           uint64_t *out) {
    double x;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t)i > max)
            return bad(p, "%s is %" JSON_INTEGER_FORMAT ", expected 0 to %" PRIu64, what, i, max);
        *out = (uint64_t)i;
        return SP_OK;
    }
    if (!json_is_real(v)) return bad(p, "%s must be an integer, not %s", what, json_type_name(v));
    x = json_real_value(v);
    if (!(x >= 0 && x <= (double)max && x == floor(x)))
        return bad(p, "%s is %g, expected an integer from 0 to %" PRIu64, what, x, max);
    *out = (uint64_t)x;
    return SP_OK;
}

static sp_status copy_string(const pctx *p, const json_t *v, tf_str *out) {
    size_t n = json_string_length(v);
    out->s = sp__malloc(n + 1);
    if (!out->s) return sp__fail(SP_ENOMEM, "%s: out of memory", p->name);
    memcpy(out->s, json_string_value(v), n);
    out->s[n] = '\0';
    out->len = n;
    return SP_OK;
}

/* Appends a segment (": steps[2]") to the context path; path_pop restores the old end. */
static size_t path_push(pctx *p, const char *fmt, ...) SP__PRINTF(2, 3);
static size_t path_push(pctx *p, const char *fmt, ...) {
    size_t at = strlen(p->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->path + at, sizeof p->path - at, fmt, ap);
    va_end(ap);
    return at;
}
static void path_pop(pctx *p, size_t at) {
    p->path[at] = '\0';
}

static sp_status parse_fill(pctx *p, json_t *v, tf_step *s) {
    json_t *value = NULL;
    const char *strategy = NULL;
    if (json_is_object(v)) {
        static const char *const keys[] = {"strategy", "value", NULL};
        SP_TRY(only_keys(p, v, keys));
        json_t *st = json_object_get(v, "strategy");
        if (st) {
            if (!json_is_string(st))
                return bad(p, "\"strategy\" must be a string, not %s", json_type_name(st));
            strategy = json_string_value(st);
        }
        value = json_object_get(v, "value");
        if (!st && !value) return bad(p, "fill needs \"value\" or \"strategy\"");
    } else if (json_is_string(v)) {
        strategy = json_string_value(v);
    } else if (json_is_number(v)) {
        value = v;
    } else {
        return bad(p,
                   "fill must be a number, \"mean\", \"median\", \"most_frequent\" or an "
                   "object {\"value\": ...}, not %s",
                   json_type_name(v));
    }
    s->strategy = TF_CONSTANT;
    if (strategy) {
        if (!strcmp(strategy, "mean"))
            s->strategy = TF_MEAN;
        else if (!strcmp(strategy, "median"))
            s->strategy = TF_MEDIAN;
        else if (!strcmp(strategy, "most_frequent"))
            s->strategy = TF_MOST_FREQUENT;
        else if (strcmp(strategy, "constant") != 0 || !value)
            return bad(p,
                       "unknown fill strategy \"%.60s\" (expected mean, median, most_frequent, "
                       "or a constant: {\"value\": ...})",
                       strategy);
    }
    if (value) {
        if (json_is_string(value)) {
            s->text = 1;
            SP_TRY(copy_string(p, value, &s->str));
        } else {
            SP_TRY(get_finite(p, value, "the fill value", &s->num));
        }
        s->fitted = 1;
    }
    return SP_OK;
}

static sp_status parse_clip(pctx *p, json_t *v, tf_step *s) {
    if (!json_is_array(v) || json_array_size(v) != 2)
        return bad(p, "clip must be [low, high] (null for an open side)");
    json_t *lo = json_array_get(v, 0), *hi = json_array_get(v, 1);
    s->lo = -INFINITY;
    s->hi = INFINITY;
    if (!json_is_null(lo)) SP_TRY(get_finite(p, lo, "clip's low bound", &s->lo));
    if (!json_is_null(hi)) SP_TRY(get_finite(p, hi, "clip's high bound", &s->hi));
    if (s->lo > s->hi)
        return bad(p, "clip's low bound %g is above its high bound %g", s->lo, s->hi);
    s->fitted = 1;
    return SP_OK;
}

static sp_status parse_empty(pctx *p, json_t *v, tf_step *s) {
    if (!json_is_object(v) || json_object_size(v) != 0)
        return bad(p, "%s takes no parameters: write {}", sp__tf_kind_name(s->kind));
    s->fitted = 1;
    return SP_OK;
}

static sp_status parse_standardize(pctx *p, json_t *v, tf_step *s) {
    static const char *const keys[] = {"mean", "std", NULL};
    if (!json_is_object(v)) return bad(p, "standardize must be an object ({} to fit)");
    SP_TRY(only_keys(p, v, keys));
    json_t *m = json_object_get(v, "mean"), *sd = json_object_get(v, "std");
    if (!m != !sd) return bad(p, "standardize needs both \"mean\" and \"std\", or neither");
    if (m) {
        SP_TRY(get_finite(p, m, "\"mean\"", &s->mean));
        SP_TRY(get_finite(p, sd, "\"std\"", &s->std));
        if (s->std < 0) return bad(p, "\"std\" is %g, expected >= 0", s->std);
        s->fitted = 1;
    }
    return SP_OK;
}

static sp_status parse_bucketize(pctx *p, json_t *v, tf_step *s) {
    static const char *const keys[] = {"quantiles", "boundaries", NULL};
    if (!json_is_object(v))
        return bad(p, "bucketize must be an object: {\"quantiles\": K} or {\"boundaries\": [...]}");
    SP_TRY(only_keys(p, v, keys));
    json_t *q = json_object_get(v, "quantiles"), *b = json_object_get(v, "boundaries");
    if (!q && !b) return bad(p, "bucketize needs \"quantiles\" or \"boundaries\"");
    s->strategy = q ? TF_QUANTILES : TF_CONSTANT;
    if (q) {
        uint64_t k;
        SP_TRY(get_count(p, q, "\"quantiles\"", SP_TRANSFORM_MAX_BUCKETS, &k));
        if (k < 2) return bad(p, "\"quantiles\" is %" PRIu64 ", expected at least 2", k);
        s->quantiles = (uint32_t)k;
    }
    if (b) {
        if (!json_is_array(b)) return bad(p, "\"boundaries\" must be an array of numbers");
        size_t n = json_array_size(b);
        if (n >= SP_TRANSFORM_MAX_BUCKETS)
            return bad(p, "%zu boundaries, at most %d allowed", n, SP_TRANSFORM_MAX_BUCKETS - 1);
        if (n == 0 && !q) return bad(p, "\"boundaries\" is empty");
        if (q && n >= s->quantiles)
            return bad(p, "%zu boundaries for %u quantiles (at most %u)", n, s->quantiles,
                       s->quantiles - 1);
        s->bounds = sp__malloc((n ? n : 1) * sizeof *s->bounds);
        if (!s->bounds) return sp__fail(SP_ENOMEM, "%s: out of memory", p->name);
        s->n_bounds = n;
        for (size_t i = 0; i < n; i++) {
            size_t at = path_push(p, ": boundaries[%zu]", i);
            SP_TRY(get_finite(p, json_array_get(b, i), "a boundary", &s->bounds[i]));
            if (i > 0 && !(s->bounds[i] > s->bounds[i - 1]))
                return bad(p, "%g does not increase on the one before (%g)", s->bounds[i],
                           s->bounds[i - 1]);
            path_pop(p, at);
        }
        s->fitted = 1;
    }
    return SP_OK;
}

static sp_status parse_vocabulary(pctx *p, json_t *v, tf_step *s) {
    static const char *const keys[] = {"max_size", "min_count", "values", "counts", NULL};
    if (!json_is_object(v)) return bad(p, "vocabulary must be an object ({} to fit)");
    SP_TRY(only_keys(p, v, keys));
    json_t *ms = json_object_get(v, "max_size"), *mc = json_object_get(v, "min_count");
    json_t *vals = json_object_get(v, "values"), *cnt = json_object_get(v, "counts");
    s->max_size = 0;
    s->min_count = 1;
    if (ms) SP_TRY(get_count(p, ms, "\"max_size\"", SP_TRANSFORM_MAX_FEATURES - 1, &s->max_size));
    if (mc) SP_TRY(get_count(p, mc, "\"min_count\"", UINT32_MAX, &s->min_count));
    if (s->min_count < 1) s->min_count = 1;
    if (cnt && !vals) return bad(p, "\"counts\" without \"values\"");
    if (!vals) return SP_OK;
    if (!json_is_array(vals)) return bad(p, "\"values\" must be an array of strings");
    size_t n = json_array_size(vals);
    if (n >= SP_TRANSFORM_MAX_FEATURES)
        return bad(p, "%zu values, at most %d allowed", n, SP_TRANSFORM_MAX_FEATURES - 1);
    if (s->max_size && n > s->max_size)
        return bad(p, "%zu values, more than \"max_size\" %" PRIu64, n, s->max_size);
    if (cnt && (!json_is_array(cnt) || json_array_size(cnt) != n))
        return bad(p, "\"counts\" must be an array of %zu integers, one per value", n);
    tf_vocab *vo = &s->vocab;
    vo->values = sp__calloc(n ? n : 1, sizeof *vo->values);
    if (cnt) vo->counts = sp__calloc(n ? n : 1, sizeof *vo->counts);
    if (!vo->values || (cnt && !vo->counts))
        return sp__fail(SP_ENOMEM, "%s: out of memory", p->name);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(vals, i);
        size_t at = path_push(p, ": values[%zu]", i);
        if (!json_is_string(e)) return bad(p, "must be a string, not %s", json_type_name(e));
        SP_TRY(copy_string(p, e, &vo->values[i]));
        vo->n = i + 1;
        path_pop(p, at);
        if (cnt) {
            at = path_push(p, ": counts[%zu]", i);
            SP_TRY(
                get_count(p, json_array_get(cnt, i), "a count", UINT64_MAX >> 11, &vo->counts[i]));
            path_pop(p, at);
        }
    }
    char where[320];
    snprintf(where, sizeof where, "%s: %s", p->name, p->path);
    SP_TRY(sp__tf_vocab_index(vo, where));
    s->fitted = 1;
    return SP_OK;
}

static sp_status parse_step(pctx *p, json_t *v, tf_step *s) {
    if (!json_is_object(v) || json_object_size(v) != 1)
        return bad(p, "a step must be an object with one key, the step's name (%s)", STEP_LIST);
    const char *key = json_object_iter_key(json_object_iter(v));
    json_t *arg = json_object_iter_value(json_object_iter(v));
    static const tf_kind kinds[] = {TF_FILL,      TF_CLIP,       TF_LOG1P,  TF_STANDARDIZE,
                                    TF_BUCKETIZE, TF_VOCABULARY, TF_ONE_HOT};
    s->kind = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(key, sp__tf_kind_name(kinds[i]))) s->kind = kinds[i];
    if (!s->kind) return bad(p, "unknown step \"%.60s\" (expected %s)", key, STEP_LIST);
    size_t at = path_push(p, " (%s)", key);
    sp_status rc = SP_EINTERNAL;
    switch (s->kind) {
    case TF_FILL:
        rc = parse_fill(p, arg, s);
        break;
    case TF_CLIP:
        rc = parse_clip(p, arg, s);
        break;
    case TF_LOG1P:
    case TF_ONE_HOT:
        rc = parse_empty(p, arg, s);
        break;
    case TF_STANDARDIZE:
        rc = parse_standardize(p, arg, s);
        break;
    case TF_BUCKETIZE:
        rc = parse_bucketize(p, arg, s);
        break;
    case TF_VOCABULARY:
        rc = parse_vocabulary(p, arg, s);
        break;
    }
    if (rc >= 0) path_pop(p, at);
    return rc;
}

static sp_status dup_name(const pctx *p, const json_t *v, const char *what, char **out) {
    if (!json_is_string(v)) return bad(p, "%s must be a string", what);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || strlen(s) != n) return bad(p, "%s must be a non-empty string without NUL", what);
    if (n >= 256) return bad(p, "%s is %zu bytes long, at most 255 allowed", what, n);
    *out = sp__strdup(s);
    return *out ? SP_OK : sp__fail(SP_ENOMEM, "%s: out of memory", p->name);
}

static sp_status parse_column(pctx *p, json_t *v, tf_column *c) {
    static const char *const keys[] = {"name", "as", "type", "steps", "comment", NULL};
    if (!json_is_object(v)) return bad(p, "a column must be an object, not %s", json_type_name(v));
    SP_TRY(only_keys(p, v, keys));
    json_t *name = json_object_get(v, "name");
    if (!name) return bad(p, "missing \"name\"");
    SP_TRY(dup_name(p, name, "\"name\"", &c->name));
    size_t at = path_push(p, " (\"%.60s\")", c->name);
    json_t *as = json_object_get(v, "as");
    if (as) SP_TRY(dup_name(p, as, "\"as\"", &c->output));
    json_t *steps = json_object_get(v, "steps");
    if (!steps) return bad(p, "missing \"steps\" (an array; [] passes the number through)");
    if (!json_is_array(steps)) return bad(p, "\"steps\" must be an array");
    size_t n = json_array_size(steps);
    if (n > SP_TRANSFORM_MAX_STEPS)
        return bad(p, "%zu steps, at most %d allowed", n, SP_TRANSFORM_MAX_STEPS);
    c->steps = sp__calloc(n ? n : 1, sizeof *c->steps);
    if (!c->steps) return sp__fail(SP_ENOMEM, "%s: out of memory", p->name);
    int has_vocab = 0;
    for (size_t j = 0; j < n; j++) {
        size_t at2 = path_push(p, ": steps[%zu]", j);
        c->n_steps = j + 1;
        SP_TRY(parse_step(p, json_array_get(steps, j), &c->steps[j]));
        has_vocab |= c->steps[j].kind == TF_VOCABULARY;
        path_pop(p, at2);
    }
    /* The input is text exactly when a vocabulary turns it into a category; "type" may say so
     * explicitly, and must then agree. */
    c->text = has_vocab;
    json_t *type = json_object_get(v, "type");
    if (type) {
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(t, "number") != 0 && strcmp(t, "string") != 0)
            return bad(p, "\"type\" must be \"number\" or \"string\"");
        if (!strcmp(t, "string") && !has_vocab)
            return bad(p, "a string column needs a vocabulary step to turn its text into numbers");
        if (!strcmp(t, "number") && has_vocab)
            return bad(p, "a vocabulary step needs text, but \"type\" is \"number\"");
    }
    path_pop(p, at);
    return SP_OK;
}

/* Walks the steps through the TEXT -> NUMBER -> CATEGORY domains; fills in fill steps' text flag
 * and, when fitted, the width. */
static sp_status check_domains(pctx *p, tf_column *c, int *fitted) {
    enum { TEXT, NUMBER, CATEGORY, ONE_HOT } dom = c->text ? TEXT : NUMBER;
    size_t n_cat = 0;
    int all = 1;
    size_t at = path_push(p, " (\"%.60s\")", c->name);
    for (size_t j = 0; j < c->n_steps; j++) {
        tf_step *s = &c->steps[j];
        const char *k = sp__tf_kind_name(s->kind);
        size_t at2 = path_push(p, ": steps[%zu] (%s)", j, k);
        if (dom == ONE_HOT) return bad(p, "one_hot must be the column's last step");
        all &= s->fitted;
        switch (s->kind) {
        case TF_FILL:
            if (dom == CATEGORY)
                return bad(p, "fill after vocabulary or bucketize: fill missing values before");
            if (dom == TEXT) {
                if (s->strategy == TF_MEAN || s->strategy == TF_MEDIAN)
                    return bad(p, "fill \"%s\" needs numbers, but the column is text here",
                               strategy_name(s->strategy));
                if (s->fitted && !s->text)
                    return bad(p,
                               "the fill value %g is a number, but the column is text here: "
                               "write it as a string",
                               s->num);
            } else if (s->fitted && s->text) {
                return bad(p, "the fill value \"%.60s\" is text, but the column holds numbers here",
                           s->str.s);
            }
            s->text = dom == TEXT;
            break;
        case TF_CLIP:
        case TF_LOG1P:
        case TF_STANDARDIZE:
        case TF_BUCKETIZE:
            if (dom == TEXT)
                return bad(p, "%s needs numbers, but the column is text (until its vocabulary)", k);
            if (dom == CATEGORY)
                return bad(p,
                           "%s after vocabulary or bucketize: the value is a category index "
                           "there; put %s before",
                           k, k);
            if (s->kind == TF_BUCKETIZE) {
                dom = CATEGORY;
                n_cat = s->n_bounds + 1;
            }
            break;
        case TF_VOCABULARY:
            if (dom != TEXT)
                return bad(p, "vocabulary needs text, and the column holds numbers here");
            dom = CATEGORY;
            n_cat = s->vocab.n + 1;
            break;
        case TF_ONE_HOT:
            if (dom != CATEGORY)
                return bad(p, "one_hot needs a vocabulary or bucketize step before it");
            dom = ONE_HOT;
            break;
        }
        path_pop(p, at2);
    }
    if (dom == TEXT) return bad(p, "the column is still text after its steps: add a vocabulary");
    path_pop(p, at);
    c->width = dom == ONE_HOT ? n_cat : 1;
    *fitted &= all;
    return SP_OK;
}

static sp_status add_feature(sp_transform *tf, size_t cap, const char *prefix, const char *sep,
                             const char *value, size_t value_len) {
    size_t a = strlen(prefix), b = strlen(sep);
    char *f = sp__malloc(a + b + value_len + 1);
    if (!f) return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    memcpy(f, prefix, a);
    memcpy(f + a, sep, b);
    if (value_len) memcpy(f + a + b, value, value_len);
    f[a + b + value_len] = '\0';
    if (tf->n_features >= cap) {
        sp__free(f);
        return sp__fail(SP_EINTERNAL, "%s: feature count mismatch", tf->name);
    }
    tf->features[tf->n_features++] = f;
    return SP_OK;
}

static void free_features(sp_transform *tf) {
    for (size_t i = 0; i < tf->n_features; i++)
        sp__free(tf->features[i]);
    sp__free(tf->features);
    tf->features = NULL;
    tf->n_features = 0;
}

sp_status sp__tf_finish(sp_transform *tf) {
    pctx p = {.name = tf->name};
    int fitted = 1;
    uint64_t total = 0;
    free_features(tf);
    for (size_t i = 0; i < tf->n_cols; i++) {
        snprintf(p.path, sizeof p.path, "columns[%zu]", i);
        SP_TRY(check_domains(&p, &tf->cols[i], &fitted));
        total += tf->cols[i].width;
    }
    tf->fitted = fitted;
    if (!fitted) return SP_OK;
    if (total > SP_TRANSFORM_MAX_FEATURES)
        return sp__fail(SP_EBADINPUT, "%s: %" PRIu64 " output features, at most %d allowed",
                        tf->name, total, SP_TRANSFORM_MAX_FEATURES);
    tf->features = sp__calloc(total ? total : 1, sizeof *tf->features);
    if (!tf->features) return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    for (size_t i = 0; i < tf->n_cols; i++) {
        tf_column *c = &tf->cols[i];
        const char *prefix = c->output ? c->output : c->name;
        c->first_feature = tf->n_features;
        const tf_step *last = c->n_steps ? &c->steps[c->n_steps - 1] : NULL;
        if (!last || last->kind != TF_ONE_HOT) {
            SP_TRY(add_feature(tf, total, prefix, "", "", 0));
            continue;
        }
        const tf_step *cat = &c->steps[c->n_steps - 2];
        if (cat->kind == TF_VOCABULARY) {
            for (size_t k = 0; k < cat->vocab.n; k++)
                SP_TRY(add_feature(tf, total, prefix, "=", cat->vocab.values[k].s,
                                   strlen(cat->vocab.values[k].s)));
            SP_TRY(add_feature(tf, total, prefix, ":oov", "", 0));
        } else {
            for (size_t k = 0; k <= cat->n_bounds; k++) {
                char num[32];
                int n = snprintf(num, sizeof num, "[%zu]", k);
                SP_TRY(add_feature(tf, total, prefix, "", num, (size_t)n));
            }
        }
    }
    return SP_OK;
}

static sp_status collect_inputs(sp_transform *tf) {
    tf->inputs = sp__calloc(tf->n_cols ? tf->n_cols : 1, sizeof *tf->inputs);
    tf->input_text = sp__calloc(tf->n_cols ? tf->n_cols : 1, sizeof *tf->input_text);
    if (!tf->inputs || !tf->input_text) return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    for (size_t i = 0; i < tf->n_cols; i++) {
        tf_column *c = &tf->cols[i];
        size_t k = 0;
        while (k < tf->n_inputs && strcmp(tf->inputs[k], c->name) != 0)
            k++;
        if (k == tf->n_inputs) {
            if (!(tf->inputs[k] = sp__strdup(c->name)))
                return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
            tf->n_inputs++;
        }
        tf->input_text[k] |= c->text;
        c->input = k;
    }
    return SP_OK;
}

static sp_status parse_root(pctx *p, json_t *root, sp_transform *tf) {
    static const char *const keys[] = {"format",   "version", "comment", "fitted",
                                       "features", "columns", NULL};
    if (!json_is_object(root)) return bad(p, "the transform must be a JSON object");
    SP_TRY(only_keys(p, root, keys));
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
    if (fmt && (!json_is_string(fmt) || strcmp(json_string_value(fmt), TF_FORMAT) != 0))
        return bad(p, "\"format\" must be \"" TF_FORMAT "\"");
    if (ver) {
        uint64_t v;
        SP_TRY(get_count(p, ver, "\"version\"", UINT32_MAX, &v));
        if (v != TF_VERSION)
            return sp__fail(SP_EUNSUPPORTED,
                            "%s: \"version\" is %" PRIu64 "; this softpipe reads version %d",
                            p->name, v, TF_VERSION);
    }
    json_t *fitted = json_object_get(root, "fitted");
    if (fitted) {
        static const char *const fkeys[] = {"rows", NULL};
        snprintf(p->path, sizeof p->path, "fitted");
        if (!json_is_object(fitted)) return bad(p, "must be an object {\"rows\": N}");
        SP_TRY(only_keys(p, fitted, fkeys));
        json_t *rows = json_object_get(fitted, "rows");
        if (rows) SP_TRY(get_count(p, rows, "\"rows\"", UINT64_MAX >> 11, &tf->fit_rows));
        p->path[0] = '\0';
    }
    json_t *cols = json_object_get(root, "columns");
    if (!cols || !json_is_array(cols) || json_array_size(cols) == 0)
        return bad(p, "\"columns\" must be a non-empty array of column entries");
    size_t n = json_array_size(cols);
    if (n > SP_TRANSFORM_MAX_COLUMNS)
        return bad(p, "%zu columns, at most %d allowed", n, SP_TRANSFORM_MAX_COLUMNS);
    tf->cols = sp__calloc(n, sizeof *tf->cols);
    if (!tf->cols) return sp__fail(SP_ENOMEM, "%s: out of memory", p->name);
    for (size_t i = 0; i < n; i++) {
        snprintf(p->path, sizeof p->path, "columns[%zu]", i);
        tf->n_cols = i + 1;
        SP_TRY(parse_column(p, json_array_get(cols, i), &tf->cols[i]));
    }
    p->path[0] = '\0';
    SP_TRY(sp__tf_finish(tf));
    SP_TRY(collect_inputs(tf));
    json_t *feats = json_object_get(root, "features");
    if (feats) {
        if (!tf->fitted)
            return bad(p, "\"features\" is given, but the transform is not fitted (a step lacks "
                          "its statistics)");
        if (!json_is_array(feats)) return bad(p, "\"features\" must be an array of strings");
        if (json_array_size(feats) != tf->n_features)
            return bad(p, "\"features\" lists %zu names, but the steps give %zu",
                       json_array_size(feats), tf->n_features);
        for (size_t i = 0; i < tf->n_features; i++) {
            json_t *f = json_array_get(feats, i);
            if (!json_is_string(f) || strcmp(json_string_value(f), tf->features[i]) != 0)
                return bad(p, "features[%zu] is not \"%.80s\", the name the steps give", i,
                           tf->features[i]);
        }
    }
    return SP_OK;
}

sp_status sp_transform_load_buffer(const char *name, const void *data, size_t len,
                                   sp_transform **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_transform_load_buffer: out is NULL");
    *out = NULL;
    if (!name) name = "transform";
    if (!data && len) return sp__fail(SP_EINVAL, "sp_transform_load_buffer: data is NULL");
    sp_transform *tf = sp__calloc(1, sizeof *tf);
    if (!tf || !(tf->name = sp__strdup(name))) {
        sp__free(tf);
        return sp__fail(SP_ENOMEM, "%s: out of memory", name);
    }
    json_error_t err;
    json_t *root = json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!root) {
        sp_transform_free(tf);
        return sp__fail(SP_EBADINPUT, "%s:%d:%d: not valid JSON: %s", name, err.line, err.column,
                        err.text);
    }
    pctx p = {.name = tf->name};
    sp_status rc = parse_root(&p, root, tf);
    json_decref(root);
    if (rc < 0) {
        sp_transform_free(tf);
        return rc;
    }
    *out = tf;
    return SP_OK;
}

sp_status sp_transform_load(const char *path, sp_transform **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_transform_load: out is NULL");
    *out = NULL;
    if (!path) return sp__fail(SP_EINVAL, "sp_transform_load: path is NULL");
    uint8_t *data;
    size_t len;
    SP_TRY(sp__read_file(path, &data, &len));
    sp_status rc = sp_transform_load_buffer(path, data, len, out);
    sp__free(data);
    return rc;
}

/* ------------------------------------------------------------------ describing */

int sp_transform_fitted(const sp_transform *tf) {
    return tf ? tf->fitted : 0;
}

uint64_t sp_transform_fit_rows(const sp_transform *tf) {
    return tf ? tf->fit_rows : 0;
}

size_t sp_transform_n_features(const sp_transform *tf) {
    return tf ? tf->n_features : 0;
}

const char *sp_transform_feature_name(const sp_transform *tf, size_t i) {
    return tf && i < tf->n_features ? tf->features[i] : NULL;
}

size_t sp_transform_n_inputs(const sp_transform *tf) {
    return tf ? tf->n_inputs : 0;
}

const char *sp_transform_input_name(const sp_transform *tf, size_t i, int *is_string) {
    if (!tf || i >= tf->n_inputs) return NULL;
    if (is_string) *is_string = tf->input_text[i];
    return tf->inputs[i];
}

void sp_transform_opts_init(sp_transform_opts *opts) {
    if (opts) memset(opts, 0, sizeof *opts);
}

/* ------------------------------------------------------------------ writing */

/* JSON writer state: the buffer and the first error (checked once at the end). */
typedef struct jw {
    sp__buf b;
    sp_status rc;
} jw;

static void put(jw *w, const char *s) {
    if (w->rc == SP_OK) w->rc = sp__buf_append(&w->b, s, strlen(s));
}

static void put_string(jw *w, const char *s, size_t n) {
    if (w->rc != SP_OK) return;
    w->rc = sp__buf_reserve(&w->b, n * 6 + 2);
    if (w->rc != SP_OK) return;
    uint8_t *o = w->b.data + w->b.len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c < 0x20 || c == 0x7F) {
            o += snprintf((char *)o, 7, "\\u%04x", c);
        } else {
            *o++ = c;
        }
    }
    *o++ = '"';
    w->b.len = (size_t)(o - w->b.data);
}

/* Finite values only (the parser and fit see to it): integers as digits, others shortest. */
static void put_number(jw *w, double x) {
    char buf[32];
    sp__tf_format_number(x, buf);
    put(w, buf);
}

static void put_u64(jw *w, uint64_t x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, x);
    put(w, buf);
}

/* Items of an array, wrapped at ~100 columns with `indent` spaces on continuation lines. */
typedef struct jarr {
    jw *w;
    size_t line_start, n, indent;
} jarr;

static void arr_begin(jarr *a, jw *w, size_t indent) {
    a->w = w;
    a->n = 0;
    a->indent = indent;
    a->line_start = w->b.len;
    put(w, "[");
}

static void arr_sep(jarr *a) {
    if (a->n++ == 0) return;
    if (a->w->b.len - a->line_start > 96) {
        put(a->w, ",\n");
        a->line_start = a->w->b.len;
        for (size_t i = 0; i < a->indent; i++)
            put(a->w, " ");
    } else {
        put(a->w, ", ");
    }
}

static void write_step(jw *w, const tf_step *s, int fitted_out) {
    put(w, "{\"");
    put(w, sp__tf_kind_name(s->kind));
    put(w, "\": ");
    switch (s->kind) {
    case TF_FILL:
        put(w, "{");
        if (s->strategy != TF_CONSTANT) {
            put(w, "\"strategy\": \"");
            put(w, strategy_name(s->strategy));
            put(w, "\"");
        }
        if (s->fitted && (fitted_out || s->strategy == TF_CONSTANT)) {
            put(w, s->strategy != TF_CONSTANT ? ", \"value\": " : "\"value\": ");
            if (s->text)
                put_string(w, s->str.s, s->str.len);
            else
                put_number(w, s->num);
        }
        put(w, "}");
        break;
    case TF_CLIP:
        put(w, "[");
        if (isinf(s->lo))
            put(w, "null");
        else
            put_number(w, s->lo);
        put(w, ", ");
        if (isinf(s->hi))
            put(w, "null");
        else
            put_number(w, s->hi);
        put(w, "]");
        break;
    case TF_LOG1P:
    case TF_ONE_HOT:
        put(w, "{}");
        break;
    case TF_STANDARDIZE:
        if (s->fitted && fitted_out) {
            put(w, "{\"mean\": ");
            put_number(w, s->mean);
            put(w, ", \"std\": ");
            put_number(w, s->std);
            put(w, "}");
        } else {
            put(w, "{}");
        }
        break;
    case TF_BUCKETIZE: {
        put(w, "{");
        if (s->strategy == TF_QUANTILES) {
            put(w, "\"quantiles\": ");
            put_u64(w, s->quantiles);
        }
        if (s->fitted && (fitted_out || s->strategy == TF_CONSTANT)) {
            put(w, s->strategy == TF_QUANTILES ? ", \"boundaries\": " : "\"boundaries\": ");
            jarr a;
            arr_begin(&a, w, 14);
            for (size_t i = 0; i < s->n_bounds; i++) {
                arr_sep(&a);
                put_number(w, s->bounds[i]);
            }
            put(w, "]");
        }
        put(w, "}");
        break;
    }
    case TF_VOCABULARY: {
        put(w, "{\"max_size\": ");
        put_u64(w, s->max_size);
        put(w, ", \"min_count\": ");
        put_u64(w, s->min_count);
        if (s->fitted && fitted_out) {
            jarr a;
            put(w, ",\n            \"values\": ");
            arr_begin(&a, w, 14);
            for (size_t i = 0; i < s->vocab.n; i++) {
                arr_sep(&a);
                put_string(w, s->vocab.values[i].s, s->vocab.values[i].len);
            }
            put(w, "]");
            if (s->vocab.counts) {
                put(w, ",\n            \"counts\": ");
                arr_begin(&a, w, 14);
                for (size_t i = 0; i < s->vocab.n; i++) {
                    arr_sep(&a);
                    put_u64(w, s->vocab.counts[i]);
                }
                put(w, "]");
            }
        }
        put(w, "}");
        break;
    }
    }
    put(w, "}");
}

sp_status sp_transform_to_json(const sp_transform *tf, char **json, size_t *len) {
    if (json) *json = NULL;
    if (len) *len = 0;
    if (!tf || !json)
        return sp__fail(SP_EINVAL, "sp_transform_to_json: %s is NULL", tf ? "json" : "tf");
    jw w = {{0}, SP_OK};
    put(&w, "{\n  \"format\": \"" TF_FORMAT "\",\n  \"version\": 1,\n");
    if (tf->fitted) {
        put(&w, "  \"fitted\": {\"rows\": ");
        put_u64(&w, tf->fit_rows);
        put(&w, "},\n  \"features\": [");
        for (size_t i = 0; i < tf->n_features; i++) {
            put(&w, i ? ",\n    " : "\n    ");
            put_string(&w, tf->features[i], strlen(tf->features[i]));
        }
        put(&w, tf->n_features ? "\n  ],\n" : "],\n");
    }
    put(&w, "  \"columns\": [");
    for (size_t i = 0; i < tf->n_cols; i++) {
        const tf_column *c = &tf->cols[i];
        put(&w, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        put_string(&w, c->name, strlen(c->name));
        if (c->output) {
            put(&w, ", \"as\": ");
            put_string(&w, c->output, strlen(c->output));
        }
        put(&w, c->text ? ", \"type\": \"string\", \"steps\": ["
                        : ", \"type\": \"number\", \"steps\": [");
        for (size_t j = 0; j < c->n_steps; j++) {
            put(&w, j ? ",\n        " : "\n        ");
            /* Statistics are written only when the whole transform is fitted, so a file is either
             * a spec or a complete fitted transform. */
            write_step(&w, &c->steps[j], tf->fitted);
        }
        put(&w, c->n_steps ? "\n      ]}" : "]}");
    }
    put(&w, "\n  ]\n}\n");
    if (w.rc == SP_OK) w.rc = sp__buf_append(&w.b, "", 1);
    if (w.rc != SP_OK) {
        sp__buf_free(&w.b);
        return sp__fail(SP_ENOMEM, "%s: out of memory writing JSON", tf->name);
    }
    *json = (char *)w.b.data;
    if (len) *len = w.b.len - 1;
    return SP_OK;
}

sp_status sp_transform_save(const sp_transform *tf, const char *path) {
    if (!tf || !path)
        return sp__fail(SP_EINVAL, "sp_transform_save: %s is NULL", tf ? "path" : "tf");
    char *json;
    size_t len;
    SP_TRY(sp_transform_to_json(tf, &json, &len));
    sp_status rc = sp__file_commit(path, json, len);
    sp__free(json);
    return rc;
}
