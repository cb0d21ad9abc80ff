/* serve_ubjson.c — XGBoost's binary model format (.ubj, Universal Binary JSON) turned into JSON
 * text, so one loader (serve_tree_load.c) reads both formats.
 *
 * UBJSON values are a one-byte marker and a big-endian payload: Z null, T/F booleans, i/U/I/l/L
 * integers of 1 (signed and unsigned), 2, 4 and 8 bytes, d/D float32/float64, H a number as text,
 * C a character, S a string (an integer length, then bytes); [ ] arrays and { } objects, whose
 * keys are strings without the S marker. Containers may be optimized: "$<type>" makes every
 * element that type (no per-element marker) and "#<count>" gives the count (then there is no
 * closing bracket). XGBoost writes its big arrays as [$d#L..., [$l#L..., [$U#L....
 *
 * float32 values are written with 9 significant digits, which read back (strtof) as the same
 * float32, so thresholds survive the detour exactly; NaN and infinities become the tokens
 * NaN/Infinity that serve_json.c accepts. Nesting is limited to 512 levels and every length is
 * checked against the bytes left, so a hostile file is an error, never an overread. */
#include "serve_ubjson.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct rd {
    const char *name;
    const uint8_t *p;
    size_t n, i;
} rd;

static sp_status bad(const rd *r, const char *what) {
    return sp__fail(SP_EBADINPUT, "%s: byte %zu: not valid UBJSON: %s", r->name, r->i, what);
}

static sp_status need(const rd *r, size_t k) {
    return r->n - r->i >= k ? SP_OK : bad(r, "the data ends inside a value");
}

static uint64_t be(const uint8_t *p, size_t k) {
    uint64_t v = 0;
    for (size_t j = 0; j < k; j++)
        v = (v << 8) | p[j];
    return v;
}

/* An integer payload of type t (i U I l L). */
static sp_status read_int(rd *r, uint8_t t, int64_t *out) {
    size_t k = t == 'i' || t == 'U' ? 1 : t == 'I' ? 2 : t == 'l' ? 4 : t == 'L' ? 8 : 0;
    if (!k) return bad(r, "expected an integer");
    SP_TRY(need(r, k));
    uint64_t v = be(r->p + r->i, k);
    r->i += k;
    if (t == 'i')
        *out = (int8_t)v;
    else if (t == 'U')
        *out = (int64_t)v;
    else if (t == 'I')
        *out = (int16_t)v;
    else if (t == 'l')
        *out = (int32_t)v;
    else
        *out = (int64_t)v;
    return SP_OK;
}

static sp_status read_len(rd *r, int64_t *out) {
    SP_TRY(need(r, 1));
    uint8_t t = r->p[r->i++];
    SP_TRY(read_int(r, t, out));
    if (*out < 0 || (uint64_t)*out > r->n) return bad(r, "a length is negative or too large");
    return SP_OK;
}

static sp_status put_string(rd *r, sp__buf *o, size_t len) {
    SP_TRY(need(r, len));
    SP_TRY(sp__buf_append(o, "\"", 1));
    for (size_t j = 0; j < len; j++) {
        uint8_t c = r->p[r->i + j];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            SP_TRY(sp__buf_append(o, esc, 2));
        } else if (c < 0x20) {
            SP_TRY(sp__buf_printf(o, "\\u%04x", c));
        } else {
            SP_TRY(sp__buf_append(o, &c, 1));
        }
    }
    r->i += len;
    return sp__buf_append(o, "\"", 1);
}

static sp_status put_float(sp__buf *o, double v, int single) {
    if (isnan(v)) return sp__buf_append(o, "NaN", 3);
    if (isinf(v))
        return v > 0 ? sp__buf_append(o, "Infinity", 8) : sp__buf_append(o, "-Infinity", 9);
    char t[40];
    int k = snprintf(t, sizeof t, single ? "%.9g" : "%.17g", v);
    return sp__buf_append(o, t, (size_t)k);
}

static sp_status put_int(sp__buf *o, int64_t v) {
    char t[24], *e = t + sizeof t, *q = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--q = '-';
    return sp__buf_append(o, q, (size_t)(e - q));
}

/* A scalar of type t (its marker already read) to JSON. */
static sp_status scalar(rd *r, uint8_t t, sp__buf *o) {
    int64_t v;
    switch (t) {
    case 'Z':
        return sp__buf_append(o, "null", 4);
    case 'T':
        return sp__buf_append(o, "true", 4);
    case 'F':
        return sp__buf_append(o, "false", 5);
    case 'N':
        return SP_OK; /* no-op */
    case 'i':
    case 'U':
    case 'I':
    case 'l':
    case 'L':
        SP_TRY(read_int(r, t, &v));
        return put_int(o, v);
    case 'd': {
        SP_TRY(need(r, 4));
        uint32_t bits = (uint32_t)be(r->p + r->i, 4);
        r->i += 4;
        float f;
        memcpy(&f, &bits, 4);
        return put_float(o, f, 1);
    }
    case 'D': {
        SP_TRY(need(r, 8));
        uint64_t bits = be(r->p + r->i, 8);
        r->i += 8;
        double d;
        memcpy(&d, &bits, 8);
        return put_float(o, d, 0);
    }
    case 'C':
        return put_string(r, o, 1);
    case 'S':
        SP_TRY(read_len(r, &v));
        return put_string(r, o, (size_t)v);
    case 'H': {
        SP_TRY(read_len(r, &v));
        SP_TRY(need(r, (size_t)v));
        for (int64_t j = 0; j < v; j++) {
            uint8_t c = r->p[r->i + (size_t)j];
            if (!(c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' ||
                  (c >= '0' && c <= '9')))
                return bad(r, "a high-precision number holds a non-numeric character");
        }
        SP_TRY(sp__buf_append(o, r->p + r->i, (size_t)v));
        r->i += (size_t)v;
        return SP_OK;
    }
    }
    return bad(r, "unknown type marker");
}

typedef struct frame {
    int object;
    uint8_t type;  /* optimized element type, 0 = each element has its marker */
    int64_t count; /* optimized count, -1 = until the closing bracket */
    int64_t done;  /* elements written */
} frame;

/* Reads an optimized container header ($type #count) after '[' or '{'. */
static sp_status container_header(rd *r, frame *f) {
    f->type = 0;
    f->count = -1;
    f->done = 0;
    if (r->i < r->n && r->p[r->i] == '$') {
        r->i++;
        SP_TRY(need(r, 1));
        f->type = r->p[r->i++];
        if (f->type == '[' || f->type == '{') return bad(r, "containers as optimized element type");
        if (r->i >= r->n || r->p[r->i] != '#') return bad(r, "'$' must be followed by '#'");
    }
    if (r->i < r->n && r->p[r->i] == '#') {
        r->i++;
        SP_TRY(read_len(r, &f->count));
    }
    return SP_OK;
}

sp_status sp__ubjson_to_json(const char *name, const uint8_t *p, size_t n, sp__buf *out) {
    enum { MAX_DEPTH = 512 };
    frame st[MAX_DEPTH];
    int depth = 0;
    rd r = {name, p, n, 0};
    int started = 0;
    for (;;) {
        frame *top = depth ? &st[depth - 1] : NULL;
        if (top) {
            /* end of the container? */
            if (top->count >= 0 ? top->done == top->count
                                : (r.i < r.n && r.p[r.i] == (top->object ? '}' : ']'))) {
                if (top->count < 0) r.i++;
                SP_TRY(sp__buf_append(out, top->object ? "}" : "]", 1));
                depth--;
                if (!depth) break;
                continue;
            }
            if (top->done) SP_TRY(sp__buf_append(out, ",", 1));
            top->done++;
            if (top->object) {
                int64_t kl;
                SP_TRY(read_len(&r, &kl));
                SP_TRY(put_string(&r, out, (size_t)kl));
                SP_TRY(sp__buf_append(out, ":", 1));
            }
        } else if (started) {
            break;
        }
        started = 1;
        uint8_t t;
        if (top && top->type) {
            t = top->type;
        } else {
            do {
                SP_TRY(need(&r, 1));
                t = r.p[r.i++];
            } while (t == 'N');
        }
        if (t == '[' || t == '{') {
            if (depth == MAX_DEPTH) return bad(&r, "nested deeper than 512 levels");
            frame *f = &st[depth++];
            f->object = t == '{';
            SP_TRY(container_header(&r, f));
            SP_TRY(sp__buf_append(out, t == '{' ? "{" : "[", 1));
            continue;
        }
        if (t == ']' || t == '}') return bad(&r, "a closing bracket where a value belongs");
        SP_TRY(scalar(&r, t, out));
        if (!depth) break;
    }
    if (r.i != r.n) return bad(&r, "bytes after the value");
    return SP_OK;
}

int sp__ubjson_sniff(const uint8_t *p, size_t n) {
    /* a UBJSON object starts with '{' then a key length marker or an optimization marker; a JSON
     * object continues with whitespace, '"' or '}' */
    return n >= 2 && p[0] == '{' && strchr("iUIlL$#", p[1]) != NULL && p[1] != '\0';
}
