/* serve_json.c — the span-recording JSON reader of serve_json.h.
 *
 * One pass with an explicit stack (no recursion, so hostile nesting cannot overflow the C stack):
 * scalars become records {type, offset, length}; when a container closes, the indices of its
 * children, collected on a scratch stack, are copied into `kids` in one block, so element i of an
 * array is kids[a + i]. Numbers are checked against the JSON grammar here and converted only when
 * read. Strings are checked for well-formed escapes and control characters; UTF-8 is passed
 * through. Beyond RFC 8259, the tokens NaN, Infinity and -Infinity are numbers: XGBoost writes
 * NaN for the unused threshold of a categorical split. */
#include "serve_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct frame {
    uint32_t value;     /* the container's record */
    uint32_t first_kid; /* where its children start on the scratch stack */
    int object;
    int expect_key; /* object: next token is a key (or '}') */
} frame;

typedef struct parser {
    const char *name, *s;
    size_t n, i;
    sp__json *j;
    uint32_t *scratch;
    size_t n_scratch, cap_scratch;
} parser;

static sp_status perr(const parser *p, const char *what) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n')
            line++, col = 1;
        else
            col++;
    }
    return sp__fail(SP_EBADINPUT, "%s:%zu:%zu: not valid JSON: %s", p->name, line, col, what);
}

static sp_status push_value(parser *p, uint8_t type, uint32_t a, uint32_t b, uint32_t *idx) {
    sp__json *j = p->j;
    if (j->nv == j->cap_v) {
        uint32_t cap = j->cap_v ? 2 * j->cap_v : 1024;
        if (cap < j->cap_v) return sp__fail(SP_EUNSUPPORTED, "%s: too many JSON values", p->name);
        sp__jv *v = sp__realloc(j->v, (size_t)cap * sizeof *v);
        if (!v) return sp__fail(SP_ENOMEM, "%s: out of memory reading JSON", p->name);
        j->v = v;
        j->cap_v = cap;
    }
    j->v[j->nv] = (sp__jv){type, 0, a, b};
    *idx = j->nv++;
    return SP_OK;
}

static sp_status push_scratch(parser *p, uint32_t v) {
    if (p->n_scratch == p->cap_scratch) {
        size_t cap = p->cap_scratch ? 2 * p->cap_scratch : 1024;
        uint32_t *s = sp__realloc(p->scratch, cap * sizeof *s);
        if (!s) return sp__fail(SP_ENOMEM, "%s: out of memory reading JSON", p->name);
        p->scratch = s;
        p->cap_scratch = cap;
    }
    p->scratch[p->n_scratch++] = v;
    return SP_OK;
}

static void skip_ws(parser *p) {
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\n' || p->s[p->i] == '\r' || p->s[p->i] == '\t'))
        p->i++;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static sp_status scan_number(parser *p, uint32_t *idx) {
    size_t st = p->i;
    const char *s = p->s;
    if (p->i < p->n && s[p->i] == '-') p->i++;
    if (p->i >= p->n || !is_digit(s[p->i])) return perr(p, "a number needs digits");
    if (s[p->i] == '0')
        p->i++;
    else
        while (p->i < p->n && is_digit(s[p->i]))
            p->i++;
    if (p->i < p->n && s[p->i] == '.') {
        p->i++;
        if (p->i >= p->n || !is_digit(s[p->i])) return perr(p, "digits must follow '.'");
        while (p->i < p->n && is_digit(s[p->i]))
            p->i++;
    }
    if (p->i < p->n && (s[p->i] == 'e' || s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (s[p->i] == '+' || s[p->i] == '-')) p->i++;
        if (p->i >= p->n || !is_digit(s[p->i])) return perr(p, "an exponent needs digits");
        while (p->i < p->n && is_digit(s[p->i]))
            p->i++;
    }
    if (p->i - st > 400) return perr(p, "a number longer than 400 characters");
    return push_value(p, SP__J_NUMBER, (uint32_t)st, (uint32_t)(p->i - st), idx);
}

static int hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static sp_status scan_string(parser *p, uint32_t *idx) {
    p->i++; /* opening quote */
    size_t st = p->i;
    int escaped = 0;
    const char *s = p->s;
    for (;;) {
        if (p->i >= p->n) return perr(p, "a string is not closed");
        unsigned char c = (unsigned char)s[p->i];
        if (c == '"') break;
        if (c < 0x20) return perr(p, "a control character inside a string");
        if (c != '\\') {
            p->i++;
            continue;
        }
        escaped = 1;
        if (p->i + 1 >= p->n) return perr(p, "a string is not closed");
        char e = s[p->i + 1];
        if (e == 'u') {
            if (p->i + 5 >= p->n || !hex(s[p->i + 2]) || !hex(s[p->i + 3]) || !hex(s[p->i + 4]) ||
                !hex(s[p->i + 5]))
                return perr(p, "\\u needs four hex digits");
            p->i += 6;
        } else if (e && strchr("\"\\/bfnrt", e)) {
            p->i += 2;
        } else {
            return perr(p, "an unknown escape in a string");
        }
    }
    uint32_t len = (uint32_t)(p->i - st);
    p->i++; /* closing quote */
    SP_TRY(push_value(p, SP__J_STRING, (uint32_t)st, len, idx));
    p->j->v[*idx].escaped = (uint8_t)escaped;
    return SP_OK;
}

/* Copies the children of the container in frame f into kids. */
static sp_status close_container(parser *p, const frame *f) {
    sp__json *j = p->j;
    size_t count = p->n_scratch - f->first_kid;
    if (j->nk + count > j->cap_k) {
        size_t cap = j->cap_k ? j->cap_k : 1024;
        while (cap < j->nk + count)
            cap *= 2;
        if (cap > UINT32_MAX) return sp__fail(SP_EUNSUPPORTED, "%s: JSON too large", p->name);
        uint32_t *k = sp__realloc(j->kids, cap * sizeof *k);
        if (!k) return sp__fail(SP_ENOMEM, "%s: out of memory reading JSON", p->name);
        j->kids = k;
        j->cap_k = (uint32_t)cap;
    }
    if (count) memcpy(j->kids + j->nk, p->scratch + f->first_kid, count * sizeof(uint32_t));
    j->v[f->value].a = j->nk;
    j->v[f->value].b = (uint32_t)(f->object ? count / 2 : count);
    j->nk += (uint32_t)count;
    p->n_scratch = f->first_kid;
    return SP_OK;
}

sp_status sp__json_parse(const char *name, const char *text, size_t len, sp__json *out) {
    memset(out, 0, sizeof *out);
    if (len > UINT32_MAX - 1) return sp__fail(SP_EUNSUPPORTED, "%s: JSON larger than 4 GiB", name);
    enum { MAX_DEPTH = 512 };
    frame stack[MAX_DEPTH];
    int depth = 0;
    parser p = {name, text, len, 0, out, NULL, 0, 0};
    sp_status rc = SP_OK;
    out->text = text;
    int done = 0;
    while (rc == SP_OK && !done) {
        skip_ws(&p);
        if (p.i >= p.n) {
            rc = perr(&p, depth ? "the text ends inside a container" : "no value");
            break;
        }
        frame *top = depth ? &stack[depth - 1] : NULL;
        char c = text[p.i];
        /* closing a container, or the separators between members */
        if (top && (c == ']' || c == '}')) {
            if ((c == ']') != !top->object) {
                rc = perr(&p, "mismatched bracket");
                break;
            }
            if (top->object && !top->expect_key && p.n_scratch > top->first_kid &&
                (p.n_scratch - top->first_kid) % 2) {
                rc = perr(&p, "an object member has no value");
                break;
            }
            p.i++;
            rc = close_container(&p, top);
            depth--;
            goto after_value;
        }
        if (top && top->object && top->expect_key && c != '"') {
            rc = perr(&p, "expected a member name in quotes");
            break;
        }
        uint32_t idx = 0;
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH) {
                rc = perr(&p, "nested deeper than 512 levels");
                break;
            }
            rc = push_value(&p, c == '{' ? SP__J_OBJECT : SP__J_ARRAY, 0, 0, &idx);
            if (rc == SP_OK && top) rc = push_scratch(&p, idx);
            if (rc < 0) break;
            p.i++;
            stack[depth++] = (frame){idx, (uint32_t)p.n_scratch, c == '{', c == '{'};
            /* an empty container closes at once */
            skip_ws(&p);
            continue;
        }
        if (c == '"')
            rc = scan_string(&p, &idx);
        else if (c == '-' || is_digit(c))
            rc = (p.n - p.i >= 9 && memcmp(text + p.i, "-Infinity", 9) == 0)
                     ? (rc = push_value(&p, SP__J_NUMBER, (uint32_t)p.i, 9, &idx), p.i += 9, rc)
                     : scan_number(&p, &idx);
        else if (p.n - p.i >= 3 && memcmp(text + p.i, "NaN", 3) == 0) /* XGBoost writes NaN */
            rc = push_value(&p, SP__J_NUMBER, (uint32_t)p.i, 3, &idx), p.i += 3;
        else if (p.n - p.i >= 8 && memcmp(text + p.i, "Infinity", 8) == 0)
            rc = push_value(&p, SP__J_NUMBER, (uint32_t)p.i, 8, &idx), p.i += 8;
        else if (p.n - p.i >= 4 && memcmp(text + p.i, "true", 4) == 0)
            rc = push_value(&p, SP__J_TRUE, (uint32_t)p.i, 4, &idx), p.i += 4;
        else if (p.n - p.i >= 5 && memcmp(text + p.i, "false", 5) == 0)
            rc = push_value(&p, SP__J_FALSE, (uint32_t)p.i, 5, &idx), p.i += 5;
        else if (p.n - p.i >= 4 && memcmp(text + p.i, "null", 4) == 0)
            rc = push_value(&p, SP__J_NULL, (uint32_t)p.i, 4, &idx), p.i += 4;
        else
            rc = perr(&p, "unexpected character");
        if (rc < 0) break;
        if (top) {
            rc = push_scratch(&p, idx);
            if (rc < 0) break;
            if (top->object && top->expect_key) {
                top->expect_key = 0;
                skip_ws(&p);
                if (p.i >= p.n || text[p.i] != ':') {
                    rc = perr(&p, "expected ':' after a member name");
                    break;
                }
                p.i++;
                continue;
            }
        }
    after_value:
        if (rc < 0) break;
        if (!depth) {
            done = 1;
            break;
        }
        top = &stack[depth - 1];
        skip_ws(&p);
        if (p.i >= p.n) {
            rc = perr(&p, "the text ends inside a container");
            break;
        }
        if (text[p.i] == ',') {
            p.i++;
            if (top->object) top->expect_key = 1;
            skip_ws(&p);
            if (p.i < p.n && (text[p.i] == ']' || text[p.i] == '}')) {
                rc = perr(&p, "a trailing comma");
                break;
            }
        } else if (text[p.i] != ']' && text[p.i] != '}') {
            rc = perr(&p, "expected ',' or a closing bracket");
            break;
        }
    }
    if (rc == SP_OK) {
        skip_ws(&p);
        if (p.i != p.n) rc = perr(&p, "text after the JSON value");
    }
    sp__free(p.scratch);
    if (rc < 0) sp__json_free(out);
    return rc;
}

void sp__json_free(sp__json *j) {
    sp__free(j->v);
    sp__free(j->kids);
    memset(j, 0, sizeof *j);
}

int sp__json_string(const sp__json *j, uint32_t v, char *buf, size_t cap) {
    if (v == SP__J_NONE || j->v[v].type != SP__J_STRING || cap == 0) return -1;
    const char *s = j->text + j->v[v].a;
    size_t n = j->v[v].b, o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            char e = s[++i];
            switch (e) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u':
                c = '?', i += 4;
                break; /* names we compare are ASCII */
            default:
                c = e;
                break;
            }
        }
        buf[o++] = c;
    }
    buf[o] = '\0';
    return 0;
}

uint32_t sp__json_get(const sp__json *j, uint32_t obj, const char *key) {
    if (obj == SP__J_NONE || j->v[obj].type != SP__J_OBJECT) return SP__J_NONE;
    size_t kl = strlen(key);
    const uint32_t *k = j->kids + j->v[obj].a;
    for (uint32_t m = 0; m < j->v[obj].b; m++) {
        const sp__jv *kv = &j->v[k[2 * m]];
        if (!kv->escaped) {
            if (kv->b == kl && memcmp(j->text + kv->a, key, kl) == 0) return k[2 * m + 1];
        } else {
            char buf[256];
            sp__json_string(j, k[2 * m], buf, sizeof buf);
            if (strcmp(buf, key) == 0) return k[2 * m + 1];
        }
    }
    return SP__J_NONE;
}

uint32_t sp__json_len(const sp__json *j, uint32_t arr) {
    if (arr == SP__J_NONE || j->v[arr].type != SP__J_ARRAY) return 0;
    return j->v[arr].b;
}

uint32_t sp__json_at(const sp__json *j, uint32_t arr, uint32_t i) {
    if (i >= sp__json_len(j, arr)) return SP__J_NONE;
    return j->kids[j->v[arr].a + i];
}

/* Copies a number's text into buf (NUL-terminated) for the C converters. */
static int number_text(const sp__json *j, uint32_t v, char *buf, size_t cap) {
    if (v == SP__J_NONE || j->v[v].type != SP__J_NUMBER || j->v[v].b >= cap) return -1;
    memcpy(buf, j->text + j->v[v].a, j->v[v].b);
    buf[j->v[v].b] = '\0';
    return 0;
}

int sp__json_double(const sp__json *j, uint32_t v, double *out) {
    if (v != SP__J_NONE && (j->v[v].type == SP__J_TRUE || j->v[v].type == SP__J_FALSE)) {
        *out = j->v[v].type == SP__J_TRUE;
        return 0;
    }
    if (v == SP__J_NONE || j->v[v].type != SP__J_NUMBER) return -1;
    /* fast path: small integers, the bulk of a model (children, features, flags) */
    const char *s = j->text + j->v[v].a;
    uint32_t n = j->v[v].b, i = 0;
    int neg = 0;
    if (n && s[0] == '-') neg = 1, i = 1;
    if (n - i > 0 && n - i <= 15) {
        int64_t x = 0;
        uint32_t q = i;
        while (q < n && is_digit(s[q]))
            x = x * 10 + (s[q++] - '0');
        if (q == n) {
            *out = neg ? -(double)x : (double)x;
            return 0;
        }
    }
    char buf[416];
    if (number_text(j, v, buf, sizeof buf) < 0) return -1;
    *out = strtod(buf, NULL);
    return 0;
}

int sp__json_float(const sp__json *j, uint32_t v, float *out) {
    char buf[416];
    if (v != SP__J_NONE && j->v[v].type != SP__J_NUMBER) {
        double d;
        if (sp__json_double(j, v, &d) < 0) return -1;
        *out = (float)d;
        return 0;
    }
    if (number_text(j, v, buf, sizeof buf) < 0) return -1;
    *out = strtof(buf, NULL);
    return 0;
}
