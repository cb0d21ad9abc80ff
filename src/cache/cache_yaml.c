/* cache_yaml.c — the pipeline file (softpipe.yaml) and its params files, read with libyaml into a
 * validated sp__pipeline (see docs/pipeline.md for the format, cache_internal.h for the result).
 *
 * Reading happens in three steps:
 *   1. libyaml's event parser builds a small tree of our own (ynode). Building it ourselves, rather
 *      than with yaml_parser_load, keeps what the document API forgets: whether a scalar was plain
 *      and untagged (only those are typed as numbers, booleans or null), where an alias appears (we
 *      reject aliases, which also rules out alias bombs and cycles), and a nesting limit. Tree
 *      memory comes from sp__malloc, so the allocation-failure tests reach it.
 *   2. The walk over the tree checks every key and value and fills the stages in file order, with
 *      project-relative paths normalized (no ".", "..", "//" or trailing "/"), and reads each
 *      params value as canonical JSON text (mapping keys sorted, no whitespace, numbers in one
 *      spelling), so that the value can go into a stage key and stays stable across rewrites.
 *   3. The graph: outputs are sorted with '/' ordering lowest, so that a path and every path inside
 *      it are adjacent; two outputs that overlap are then neighbours. Each dep finds the outputs it
 *      equals, lies inside or contains by binary search; their stages are its upstream. Kahn's
 *      algorithm, taking the ready stage that comes first in the file, gives the order; what is
 *      left over holds a cycle, which we walk to name it.
 * Invariants of a returned pipeline: every stage has n_cmd >= 1 non-empty commands; every path is
 * relative, normalized and non-empty (wdir may be "" = the root); stage i's upstream indices are
 * < i; no two outputs overlap; params values are never NULL (a missing key is an error). Errors
 * are SP_EBADINPUT with "file:line:col: [stage 'x': ]what", SP_ENOMEM, or SP_EIO from reading a
 * params file; on failure *out is zeroed. */
#include "cache_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

/* ---- the tree */

enum { Y_SCALAR, Y_SEQ, Y_MAP };
#define Y_MAX_DEPTH 64

typedef struct ynode {
    int kind;
    int typed;          /* a scalar that was plain and untagged: typed by the core schema */
    uint32_t line, col; /* 1-based */
    char *str;          /* scalar text, NUL-terminated (may also contain NULs: see len) */
    size_t len;
    struct ynode **kid; /* SEQ: the items; MAP: key, value, key, value, ... */
    size_t n, cap;
} ynode;

static void y_free(ynode *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n; i++)
        y_free(n->kid[i]);
    sp__free(n->kid);
    sp__free(n->str);
    sp__free(n);
}

static const char *y_kind(const ynode *n) {
    if (n->kind == Y_SEQ) return "a list";
    if (n->kind == Y_MAP) return "a mapping";
    return "a string";
}

static int y_is_null(const ynode *n) {
    if (n->kind != Y_SCALAR || !n->typed) return 0;
    return n->len == 0 || !strcmp(n->str, "~") || !strcmp(n->str, "null") ||
           !strcmp(n->str, "Null") || !strcmp(n->str, "NULL");
}

/* "file:line:col: [stage 'x': ]what" as SP_EBADINPUT. */
static sp_status yfail(const char *file, uint32_t line, uint32_t col, const char *stage,
                       const char *fmt, ...) SP__PRINTF(5, 6);
static sp_status yfail(const char *file, uint32_t line, uint32_t col, const char *stage,
                       const char *fmt, ...) {
    char what[SP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (stage)
        return sp__fail(SP_EBADINPUT, "%s:%u:%u: stage '%s': %s", file, line, col, stage, what);
    return sp__fail(SP_EBADINPUT, "%s:%u:%u: %s", file, line, col, what);
}

static sp_status oom(void) {
    return sp__fail(SP_ENOMEM, "out of memory reading the pipeline");
}

/* libyaml's error, with the position of the problem. A reader error (bad UTF-8, a control
 * character) has only a byte offset, which we turn into line and column. */
static sp_status y_parser_error(const yaml_parser_t *ps, const char *file, const char *text,
                                size_t len) {
    if (ps->error == YAML_MEMORY_ERROR) return oom();
    const char *problem = ps->problem ? ps->problem : "malformed YAML";
    if (ps->error == YAML_READER_ERROR) {
        uint32_t line = 1, col = 1;
        for (size_t i = 0; i < ps->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return yfail(file, line, col, NULL, "%s", problem);
    }
    uint32_t line = (uint32_t)ps->problem_mark.line + 1,
             col = (uint32_t)ps->problem_mark.column + 1;
    if (ps->context)
        return yfail(file, line, col, NULL, "%s %s (line %u)", problem, ps->context,
                     (uint32_t)ps->context_mark.line + 1);
    return yfail(file, line, col, NULL, "%s", problem);
}

static sp_status y_add(ynode *parent, ynode *kid) {
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        ynode **k = sp__realloc(parent->kid, cap * sizeof *k);
        if (!k) return oom();
        parent->kid = k;
        parent->cap = cap;
    }
    parent->kid[parent->n++] = kid;
    return SP_OK;
}

static int key_cmp(const void *a, const void *b) {
    const ynode *x = *(const ynode *const *)a, *y = *(const ynode *const *)b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->str, y->str, m);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int y_before(const ynode *a, const ynode *b) {
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/* Duplicate keys in a mapping (libyaml keeps both): the later one is the error. `what` is "key"
 * or "stage"; `stage` names the enclosing stage, if any. */
static sp_status y_check_dups(const char *file, const ynode *map, const char *stage,
                              const char *what) {
    size_t nk = map->n / 2;
    if (nk < 2) return SP_OK;
    const ynode **keys = sp__malloc(nk * sizeof *keys);
    if (!keys) return oom();
    for (size_t i = 0; i < nk; i++)
        keys[i] = map->kid[2 * i];
    if (nk > 1) qsort(keys, nk, sizeof *keys, key_cmp);
    sp_status rc = SP_OK;
    for (size_t i = 1; i < nk; i++) {
        if (key_cmp(&keys[i - 1], &keys[i]) != 0) continue;
        const ynode *first = keys[i - 1], *second = keys[i];
        if (y_before(second, first)) {
            const ynode *t = first;
            first = second;
            second = t;
        }
        rc = yfail(file, second->line, second->col, stage, "duplicate %s '%s' (first at line %u)",
                   what, second->str, first->line);
        break;
    }
    sp__free(keys);
    return rc;
}

#define Y_STR_TAG "tag:yaml.org,2002:str"

/* Parses one YAML document into a tree. *root is NULL for an empty stream. `dups` checks every
 * mapping for duplicate keys (params files; the pipeline walk checks its own with context). */
static sp_status y_load(const char *file, const char *text, size_t len, int dups,
                        ynode **root /* OUT */) {
    *root = NULL;
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return oom();
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    ynode *stack[Y_MAX_DEPTH];
    int depth = 0, docs = 0;
    sp_status rc = SP_OK;
    for (int done = 0; !done && rc == SP_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = y_parser_error(&ps, file, text, len);
            break;
        }
        uint32_t line = (uint32_t)ev.start_mark.line + 1, col = (uint32_t)ev.start_mark.column + 1;
        ynode *n = NULL;
        const char *tag = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0)
                rc = yfail(file, line, col, NULL, "a second YAML document (one is expected)");
            break;
        case YAML_ALIAS_EVENT:
            rc = yfail(file, line, col, NULL, "aliases (*%s) are not supported",
                       (const char *)ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            n = sp__calloc(1, sizeof *n);
            if (!n) {
                rc = oom();
                break;
            }
            n->line = line;
            n->col = col;
            if (ev.type == YAML_SCALAR_EVENT) {
                n->kind = Y_SCALAR;
                tag = (const char *)ev.data.scalar.tag;
                n->len = ev.data.scalar.length;
                n->str = sp__strndup((const char *)ev.data.scalar.value, n->len);
                n->typed = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag;
                if (!n->str)
                    rc = oom();
                else if (tag && strcmp(tag, "!") != 0 && strcmp(tag, Y_STR_TAG) != 0)
                    rc =
                        yfail(file, line, col, NULL, "unsupported tag '%s' (quote the value)", tag);
            } else if (ev.type == YAML_SEQUENCE_START_EVENT) {
                n->kind = Y_SEQ;
                tag = (const char *)ev.data.sequence_start.tag;
                if (tag && strcmp(tag, "!") != 0 && strcmp(tag, "tag:yaml.org,2002:seq") != 0)
                    rc = yfail(file, line, col, NULL, "unsupported tag '%s'", tag);
            } else {
                n->kind = Y_MAP;
                tag = (const char *)ev.data.mapping_start.tag;
                if (tag && strcmp(tag, "!") != 0 && strcmp(tag, "tag:yaml.org,2002:map") != 0)
                    rc = yfail(file, line, col, NULL, "unsupported tag '%s'", tag);
            }
            if (rc == SP_OK && n->kind != Y_SCALAR && depth == Y_MAX_DEPTH)
                rc = yfail(file, line, col, NULL, "nested deeper than %d levels", Y_MAX_DEPTH);
            if (rc == SP_OK && depth > 0) {
                ynode *parent = stack[depth - 1];
                if (parent->kind == Y_MAP && parent->n % 2 == 0 && n->kind != Y_SCALAR)
                    rc = yfail(file, line, col, NULL, "a mapping key must be a string, found %s",
                               y_kind(n));
                else if (parent->kind == Y_MAP && parent->n % 2 == 0 && strlen(n->str) != n->len)
                    rc = yfail(file, line, col, NULL, "a mapping key contains a NUL character");
            }
            if (rc == SP_OK) {
                if (depth == 0)
                    *root = n;
                else
                    rc = y_add(stack[depth - 1], n);
            }
            if (rc < 0) {
                y_free(n);
                break;
            }
            if (n->kind != Y_SCALAR) stack[depth++] = n;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            n = stack[--depth];
            if (n->kind == Y_MAP && dups) rc = y_check_dups(file, n, NULL, "key");
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ps);
    if (rc < 0) {
        y_free(*root);
        *root = NULL;
    }
    return rc;
}

/* The value of `key` in a mapping, or NULL. */
static const ynode *y_get(const ynode *map, const char *key, size_t klen) {
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const ynode *k = map->kid[i];
        if (k->len == klen && !memcmp(k->str, key, klen)) return map->kid[i + 1];
    }
    return NULL;
}

/* ---- canonical JSON of params values */

static sp_status buf_str(sp__buf *b, const char *s, size_t n) {
    return sp__buf_append(b, s, n);
}

static sp_status canon_string(sp__buf *b, const char *s, size_t n) {
    SP_TRY(buf_str(b, "\"", 1));
    size_t run = 0; /* bytes copied as they are, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        SP_TRY(buf_str(b, s + run, i - run));
        run = i + 1;
        static const char short_esc[] = "\"\"\\\\\nn\rr\tt\bb\ff"; /* char, letter */
        char esc[8] = "\\";
        const char *se = NULL;
        for (size_t k = 0; k < sizeof short_esc - 1 && !se; k += 2)
            if ((unsigned char)short_esc[k] == c) se = &short_esc[k + 1];
        if (se)
            esc[1] = *se, esc[2] = 0;
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        SP_TRY(buf_str(b, esc, strlen(esc)));
    }
    SP_TRY(buf_str(b, s + run, n - run));
    return buf_str(b, "\"", 1);
}

static int all_in(const char *s, size_t n, const char *set) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(set, s[i])) return 0;
    return 1;
}

/* A float in its shortest round-trip digits, laid out as ECMAScript's Number::toString (which is
 * also RFC 8785's JSON canonical form), plus ".0" on integral values so that a float never reads
 * as an integer: 0.01, 1e-7, 100.0, 1.5e+300. */
static void format_double(double d, char out[48]) {
    if (isnan(d)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, fabs(d));
        if (strtod(e, NULL) == fabs(d)) break;
    }
    char digits[24];
    size_t k = 0;
    const char *q = e;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[k++] = *q;
    int exp10 = *q == 'e' ? atoi(q + 1) : 0;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = 0;
    int n = exp10 + 1; /* the value is 0.digits x 10^n */
    char *o = out;
    if (signbit(d)) *o++ = '-';
    if ((int)k <= n && n <= 21) {
        memcpy(o, digits, k);
        o += k;
        for (int i = (int)k; i < n; i++)
            *o++ = '0';
        memcpy(o, ".0", 3);
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, k - (size_t)n + 1);
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = n; i < 0; i++)
            *o++ = '0';
        memcpy(o, digits, k + 1);
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, k - 1);
            o += k - 1;
        }
        snprintf(o, 16, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
}

/* A plain untagged scalar, typed by the YAML 1.2 core schema. */
static sp_status canon_typed(sp__buf *b, const ynode *n) {
    const char *s = n->str;
    size_t len = n->len;
    if (strlen(s) != len) return canon_string(b, s, len);
    if (y_is_null(n)) return buf_str(b, "null", 4);
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return buf_str(b, "true", 4);
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return buf_str(b, "false", 5);
    const char *body = s + (s[0] == '-' || s[0] == '+');
    size_t blen = len - (size_t)(body - s);
    if (all_in(body, blen, "0123456789")) { /* decimal integer: exact digits, any size */
        while (blen > 1 && body[0] == '0') {
            body++;
            blen--;
        }
        if (s[0] == '-' && !(blen == 1 && body[0] == '0')) SP_TRY(buf_str(b, "-", 1));
        return buf_str(b, body, blen);
    }
    if (len > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x') &&
        all_in(s + 2, len - 2, s[1] == 'o' ? "01234567" : "0123456789abcdefABCDEF")) {
        errno = 0;
        unsigned long long v = strtoull(s + 2, NULL, s[1] == 'o' ? 8 : 16);
        if (errno == 0) {
            char t[32];
            int m = snprintf(t, sizeof t, "%llu", v);
            return buf_str(b, t, (size_t)m);
        }
        return canon_string(b, s, len); /* wider than 64 bits: kept as text */
    }
    if (!strcmp(body, ".inf") || !strcmp(body, ".Inf") || !strcmp(body, ".INF"))
        return buf_str(b, s[0] == '-' ? "-Infinity" : "Infinity", s[0] == '-' ? 9 : 8);
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) return buf_str(b, "NaN", 3);
    /* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    size_t i = 0, mant = 0;
    while (i < blen && body[i] >= '0' && body[i] <= '9')
        i++, mant++;
    if (i < blen && body[i] == '.') {
        i++;
        while (i < blen && body[i] >= '0' && body[i] <= '9')
            i++, mant++;
    }
    int ok = mant > 0;
    if (ok && i < blen && (body[i] == 'e' || body[i] == 'E')) {
        i++;
        if (i < blen && (body[i] == '-' || body[i] == '+')) i++;
        size_t ed = 0;
        while (i < blen && body[i] >= '0' && body[i] <= '9')
            i++, ed++;
        ok = ed > 0;
    }
    if (ok && i == blen) {
        char t[48];
        format_double(strtod(s, NULL), t);
        return buf_str(b, t, strlen(t));
    }
    return canon_string(b, s, len);
}

static int slot_cmp(const void *a, const void *b) {
    return key_cmp(*(ynode *const *const *)a, *(ynode *const *const *)b);
}

static sp_status canon(sp__buf *b, const ynode *n) {
    if (n->kind == Y_SCALAR) return n->typed ? canon_typed(b, n) : canon_string(b, n->str, n->len);
    if (n->kind == Y_SEQ) {
        SP_TRY(buf_str(b, "[", 1));
        for (size_t i = 0; i < n->n; i++) {
            if (i) SP_TRY(buf_str(b, ",", 1));
            SP_TRY(canon(b, n->kid[i]));
        }
        return buf_str(b, "]", 1);
    }
    /* Pointers to the key slots, sorted by the keys' bytes: the value sits in the next slot. */
    size_t nk = n->n / 2;
    ynode *const **keys = sp__malloc((nk ? nk : 1) * sizeof *keys);
    if (!keys) return oom();
    for (size_t i = 0; i < nk; i++)
        keys[i] = &n->kid[2 * i];
    if (nk > 1) qsort(keys, nk, sizeof *keys, slot_cmp);
    sp_status rc = buf_str(b, "{", 1);
    for (size_t i = 0; i < nk && rc == SP_OK; i++) {
        if (i) rc = buf_str(b, ",", 1);
        if (rc == SP_OK) rc = canon_string(b, keys[i][0]->str, keys[i][0]->len);
        if (rc == SP_OK) rc = buf_str(b, ":", 1);
        if (rc == SP_OK) rc = canon(b, keys[i][1]);
    }
    sp__free(keys);
    SP_TRY(rc);
    return buf_str(b, "}", 1);
}

/* ---- paths and names */

/* Normalizes a project-relative path: drops "." and empty components, resolves "..". Returns
 * SP_EBADINPUT with *why set when the path is empty, absolute, or leaves the project; "" (the root
 * itself) is returned as is, for the caller to judge. */
static sp_status norm_rel(const ynode *n, char **out /* OUT */, const char **why /* OUT */) {
    *out = NULL;
    *why = NULL;
    if (strlen(n->str) != n->len) return *why = "contains a NUL character", SP_EBADINPUT;
    if (n->len == 0) return *why = "is empty", SP_EBADINPUT;
    if (n->str[0] == '/')
        return *why = "is absolute (paths are relative to the project)", SP_EBADINPUT;
    char *o = sp__malloc(n->len + 1);
    if (!o) return oom();
    size_t olen = 0;
    const char *s = n->str;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t c = e ? (size_t)(e - s) : strlen(s);
        if (c == 2 && s[0] == '.' && s[1] == '.') {
            if (olen == 0) {
                sp__free(o);
                return *why = "leaves the project ('..')", SP_EBADINPUT;
            }
            while (olen > 0 && o[olen - 1] != '/')
                olen--;
            if (olen > 0) olen--;
        } else if (c > 0 && !(c == 1 && s[0] == '.')) {
            if (olen) o[olen++] = '/';
            memcpy(o + olen, s, c);
            olen += c;
        }
        s += c;
        if (*s == '/') s++;
    }
    o[olen] = 0;
    *out = o;
    return SP_OK;
}

/* The root as an absolute path, normalized the same way ("/" stays "/"). */
static sp_status norm_root(const char *root, char **out /* OUT */) {
    *out = NULL;
    char *abs = NULL;
    if (root[0] != '/') {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) return sp__fail_errno(SP_EIO, errno, "getcwd");
        abs = sp__path_join(cwd, root);
    } else {
        abs = sp__strdup(root);
    }
    if (!abs) return oom();
    size_t olen = 0;
    const char *s = abs;
    char *o = sp__malloc(strlen(abs) + 2);
    if (!o) {
        sp__free(abs);
        return oom();
    }
    while (*s) {
        while (*s == '/')
            s++;
        const char *e = strchr(s, '/');
        size_t c = e ? (size_t)(e - s) : strlen(s);
        if (c == 2 && s[0] == '.' && s[1] == '.') {
            while (olen > 0 && o[olen - 1] != '/')
                olen--;
            if (olen > 0) olen--;
        } else if (c > 0 && !(c == 1 && s[0] == '.')) {
            o[olen++] = '/';
            memcpy(o + olen, s, c);
            olen += c;
        }
        s += c;
    }
    if (olen == 0) o[olen++] = '/';
    o[olen] = 0;
    sp__free(abs);
    *out = o;
    return SP_OK;
}

static int valid_stage_name(const ynode *n) {
    if (n->len == 0 || strlen(n->str) != n->len) return 0;
    for (size_t i = 0; i < n->len; i++) {
        char c = n->str[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int valid_env_name(const ynode *n) {
    if (n->len == 0 || strlen(n->str) != n->len || (n->str[0] >= '0' && n->str[0] <= '9')) return 0;
    for (size_t i = 0; i < n->len; i++) {
        char c = n->str[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* Levenshtein distance, for "did you mean"; long strings count as far. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32) return 99;
    size_t row[33];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            if (up + 1 < best) best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static sp_status unknown_key(const char *file, const ynode *k, const char *stage,
                             const char *const *known, size_t n_known) {
    const char *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < n_known; i++) {
        size_t d = edit_distance(k->str, known[i]);
        if (d < bd) {
            bd = d;
            best = known[i];
        }
    }
    if (best)
        return yfail(file, k->line, k->col, stage, "unknown key '%s' (did you mean '%s'?)", k->str,
                     best);
    return yfail(file, k->line, k->col, stage, "unknown key '%s'", k->str);
}

/* '/' sorts before every other byte, so a path is followed directly by the paths inside it. `b`
 * is read for bl bytes. */
static int path_cmp_n(const char *a, const char *b, size_t bl) {
    for (size_t i = 0;; i++) {
        unsigned ca = (unsigned char)a[i], cb = i < bl ? (unsigned char)b[i] : 0;
        if (ca == cb) {
            if (!ca) return 0;
            continue;
        }
        if (!ca) return -1;
        if (!cb) return 1;
        if (ca == '/') return -1;
        if (cb == '/') return 1;
        return ca < cb ? -1 : 1;
    }
}

/* a equals b, or lies inside folder b. */
static int path_within(const char *a, const char *b) {
    size_t lb = strlen(b);
    return !strncmp(a, b, lb) && (a[lb] == 0 || a[lb] == '/');
}

/* ---- the walk */

typedef struct sx { /* what we keep of a stage beside sp__stage, for messages */
    const ynode *name;
    const ynode **dep_at, **out_at, **param_at;
} sx;

typedef struct pfile {
    char *name;
    ynode *root;
} pfile;

typedef struct pctx {
    const char *file;
    const char *root;
    sp__stage *st; /* file order; cap allocated (zeroed), n read so far */
    sx *x;
    size_t n, cap;
    int moved; /* the stages went to the pipeline */
    pfile *pf;
    size_t n_pf;
} pctx;

/* The items of a string-list field: a list of strings, one string, or null (none). */
static sp_status str_list(const pctx *c, const char *stage, const char *field, const ynode *v,
                          const ynode ***items /* OUT */, size_t *n /* OUT */) {
    *items = NULL;
    *n = 0;
    if (y_is_null(v)) return SP_OK;
    if (v->kind == Y_MAP)
        return yfail(c->file, v->line, v->col, stage,
                     "'%s' must be a list of strings, found a mapping", field);
    size_t m = v->kind == Y_SEQ ? v->n : 1;
    const ynode **it = sp__malloc((m ? m : 1) * sizeof *it);
    if (!it) return oom();
    for (size_t i = 0; i < m; i++) {
        const ynode *e = v->kind == Y_SEQ ? v->kid[i] : v;
        if (e->kind != Y_SCALAR) {
            sp__free(it);
            return yfail(c->file, e->line, e->col, stage, "'%s' entries must be strings, found %s",
                         field, y_kind(e));
        }
        it[i] = e;
    }
    *items = it;
    *n = m;
    return SP_OK;
}

static sp_status stage_paths(const pctx *c, const char *stage, const char *field, const ynode *v,
                             char ***paths /* OUT */, const ynode ***at /* OUT */,
                             size_t *n /* OUT */) {
    SP_TRY(str_list(c, stage, field, v, at, n));
    if (*n == 0) return SP_OK;
    *paths = sp__calloc(*n, sizeof **paths);
    if (!*paths) return oom();
    for (size_t i = 0; i < *n; i++) {
        const ynode *e = (*at)[i];
        const char *why;
        sp_status rc = norm_rel(e, &(*paths)[i], &why);
        if (rc == SP_ENOMEM) return rc;
        if (rc == SP_OK && (*paths)[i][0] == 0) why = "is the project root itself";
        if (rc == SP_OK && !why && path_within((*paths)[i], ".softpipe"))
            why = "is inside softpipe's own folder .softpipe";
        if (why)
            return yfail(c->file, e->line, e->col, stage, "%s path '%s' %s", field, e->str, why);
        for (size_t j = 0; j < i; j++)
            if (!strcmp((*paths)[j], (*paths)[i]))
                return yfail(c->file, e->line, e->col, stage, "%s lists '%s' twice", field,
                             (*paths)[i]);
    }
    return SP_OK;
}

static sp_status stage_cmd(const pctx *c, sp__stage *s, const ynode *v) {
    const ynode **it = NULL;
    size_t m = 0;
    SP_TRY(str_list(c, s->name, "cmd", v, &it, &m));
    sp_status rc = SP_OK;
    if (m == 0) rc = yfail(c->file, v->line, v->col, s->name, "'cmd' is empty");
    if (rc == SP_OK) {
        s->cmd = sp__calloc(m, sizeof *s->cmd);
        if (!s->cmd) rc = oom();
    }
    for (size_t i = 0; i < m && rc == SP_OK; i++) {
        const ynode *e = it[i];
        size_t k = 0;
        while (k < e->len && strchr(" \t\r\n", e->str[k]))
            k++;
        if (k == e->len)
            rc = yfail(c->file, e->line, e->col, s->name, "'cmd' entry is empty");
        else if (strlen(e->str) != e->len)
            rc = yfail(c->file, e->line, e->col, s->name, "'cmd' contains a NUL character");
        else if (!(s->cmd[i] = sp__strdup(e->str)))
            rc = oom();
        else
            s->n_cmd = i + 1;
    }
    sp__free(it);
    return rc;
}

static sp_status stage_env(const pctx *c, sp__stage *s, const ynode *v) {
    const ynode **it = NULL;
    size_t m = 0;
    SP_TRY(str_list(c, s->name, "env", v, &it, &m));
    sp_status rc = SP_OK;
    if (m) {
        s->env = sp__calloc(m, sizeof *s->env);
        if (!s->env) rc = oom();
    }
    for (size_t i = 0; i < m && rc == SP_OK; i++) {
        const ynode *e = it[i];
        if (!valid_env_name(e)) {
            rc = yfail(c->file, e->line, e->col, s->name,
                       "'%s' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", e->str);
            break;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s->env[j], e->str))
                rc = yfail(c->file, e->line, e->col, s->name, "env lists '%s' twice", e->str);
        if (rc == SP_OK && !(s->env[i] = sp__strdup(e->str))) rc = oom();
        if (rc == SP_OK) s->n_env = i + 1;
    }
    sp__free(it);
    return rc;
}

static int valid_params_key(const ynode *k) {
    if (k->len == 0 || strlen(k->str) != k->len) return 0;
    if (k->str[0] == '.' || k->str[k->len - 1] == '.' || strstr(k->str, "..")) return 0;
    return 1;
}

static sp_status add_param(const pctx *c, sp__stage *s, sx *x, size_t *cap, const char *file,
                           const ynode *key) {
    if (key->kind != Y_SCALAR)
        return yfail(c->file, key->line, key->col, s->name, "params keys must be strings, found %s",
                     y_kind(key));
    if (!valid_params_key(key))
        return yfail(c->file, key->line, key->col, s->name,
                     "bad params key '%s' (expected names joined by '.')", key->str);
    for (size_t i = 0; i < s->n_params; i++)
        if (!strcmp(s->params[i].file, file) && !strcmp(s->params[i].key, key->str))
            return yfail(c->file, key->line, key->col, s->name, "params lists '%s' of %s twice",
                         key->str, file);
    if (s->n_params == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        sp__param *p = sp__realloc(s->params, nc * sizeof *p);
        if (!p) return oom();
        s->params = p;
        const ynode **a = sp__realloc(x->param_at, nc * sizeof *a);
        if (!a) return oom();
        x->param_at = a;
        *cap = nc;
    }
    sp__param *p = &s->params[s->n_params];
    memset(p, 0, sizeof *p);
    s->n_params++;
    x->param_at[s->n_params - 1] = key;
    if (!(p->file = sp__strdup(file)) || !(p->key = sp__strdup(key->str))) return oom();
    return SP_OK;
}

static sp_status stage_params(const pctx *c, sp__stage *s, sx *x, const ynode *v) {
    if (y_is_null(v)) return SP_OK;
    if (v->kind == Y_MAP)
        return yfail(c->file, v->line, v->col, s->name,
                     "'params' must be a list (of keys, or of {file: [keys]}), found a mapping");
    size_t cap = 0;
    size_t m = v->kind == Y_SEQ ? v->n : 1;
    for (size_t i = 0; i < m; i++) {
        const ynode *e = v->kind == Y_SEQ ? v->kid[i] : v;
        if (e->kind == Y_SCALAR) {
            SP_TRY(add_param(c, s, x, &cap, "params.yaml", e));
            continue;
        }
        if (e->kind == Y_SEQ)
            return yfail(c->file, e->line, e->col, s->name,
                         "'params' entries must be keys or {file: [keys]}, found a list");
        SP_TRY(y_check_dups(c->file, e, s->name, "key"));
        for (size_t j = 0; j + 1 < e->n; j += 2) {
            const ynode *fk = e->kid[j], *keys = e->kid[j + 1];
            char *file = NULL;
            const char *why;
            sp_status rc = norm_rel(fk, &file, &why);
            if (rc == SP_ENOMEM) return rc;
            if (rc == SP_OK && file[0] == 0) why = "is the project root itself";
            if (why) {
                sp__free(file);
                return yfail(c->file, fk->line, fk->col, s->name, "params file '%s' %s", fk->str,
                             why);
            }
            if (keys->kind == Y_MAP || y_is_null(keys))
                rc = yfail(c->file, keys->line, keys->col, s->name,
                           "params of %s must be a list of keys, found %s", file,
                           y_is_null(keys) ? "nothing" : "a mapping");
            size_t nk = keys->kind == Y_SEQ ? keys->n : 1;
            for (size_t k = 0; k < nk && rc == SP_OK; k++)
                rc = add_param(c, s, x, &cap, file, keys->kind == Y_SEQ ? keys->kid[k] : keys);
            sp__free(file);
            SP_TRY(rc);
        }
    }
    return SP_OK;
}

static const char *const STAGE_KEYS[] = {"cmd", "deps", "params", "outs", "wdir", "env"};
static const char *const TOP_KEYS[] = {"stages"};

static sp_status parse_stage(const pctx *c, sp__stage *s, sx *x, const ynode *map) {
    SP_TRY(y_check_dups(c->file, map, s->name, "key"));
    const ynode *cmd = NULL;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const ynode *k = map->kid[i], *v = map->kid[i + 1];
        if (!strcmp(k->str, "cmd")) {
            cmd = v;
            if (y_is_null(v)) return yfail(c->file, v->line, v->col, s->name, "'cmd' is empty");
            SP_TRY(stage_cmd(c, s, v));
        } else if (!strcmp(k->str, "deps")) {
            SP_TRY(stage_paths(c, s->name, "deps", v, &s->deps, &x->dep_at, &s->n_deps));
        } else if (!strcmp(k->str, "outs")) {
            SP_TRY(stage_paths(c, s->name, "outs", v, &s->outs, &x->out_at, &s->n_outs));
        } else if (!strcmp(k->str, "params")) {
            SP_TRY(stage_params(c, s, x, v));
        } else if (!strcmp(k->str, "env")) {
            SP_TRY(stage_env(c, s, v));
        } else if (!strcmp(k->str, "wdir")) {
            if (y_is_null(v)) continue;
            if (v->kind != Y_SCALAR)
                return yfail(c->file, v->line, v->col, s->name, "'wdir' must be a string, found %s",
                             y_kind(v));
            const char *why;
            sp__free(s->wdir);
            s->wdir = NULL;
            sp_status rc = norm_rel(v, &s->wdir, &why);
            if (rc == SP_ENOMEM) return rc;
            if (why) return yfail(c->file, v->line, v->col, s->name, "wdir '%s' %s", v->str, why);
        } else {
            return unknown_key(c->file, k, s->name, STAGE_KEYS,
                               sizeof STAGE_KEYS / sizeof *STAGE_KEYS);
        }
    }
    if (!cmd) return yfail(c->file, x->name->line, x->name->col, s->name, "missing 'cmd'");
    if (!s->wdir && !(s->wdir = sp__strdup(""))) return oom();
    return SP_OK;
}

/* ---- params values */

static sp_status params_file(pctx *c, const sp__stage *s, const ynode *at, const char *name,
                             const ynode **root /* OUT */) {
    for (size_t i = 0; i < c->n_pf; i++)
        if (!strcmp(c->pf[i].name, name)) {
            *root = c->pf[i].root;
            return SP_OK;
        }
    pfile *pf = sp__realloc(c->pf, (c->n_pf + 1) * sizeof *pf);
    if (!pf) return oom();
    c->pf = pf;
    pfile *f = &c->pf[c->n_pf];
    f->root = NULL;
    if (!(f->name = sp__strdup(name))) return oom();
    c->n_pf++;
    char *path = sp__path_join(c->root, name);
    if (!path) return oom();
    uint8_t *text = NULL;
    size_t len = 0;
    sp_status rc = sp__read_file(path, &text, &len);
    if (rc == SP_ENOTFOUND || rc == SP_EINVAL)
        rc = yfail(c->file, at->line, at->col, s->name, "params file '%s' %s (%s)", name,
                   rc == SP_EINVAL ? "is a folder" : "not found", path);
    else if (rc < 0)
        sp__errmsg_prefix("%s:%u:%u: stage '%s'", c->file, at->line, at->col, s->name);
    sp__free(path);
    SP_TRY(rc);
    rc = y_load(name, (const char *)text, len, 1, &f->root);
    sp__free(text);
    SP_TRY(rc);
    if (f->root && f->root->kind != Y_MAP)
        return yfail(name, f->root->line, f->root->col, NULL,
                     "a params file must be a mapping, found %s", y_kind(f->root));
    *root = f->root;
    return SP_OK;
}

static sp_status params_values(pctx *c) {
    for (size_t i = 0; i < c->n; i++) {
        sp__stage *s = &c->st[i];
        for (size_t j = 0; j < s->n_params; j++) {
            sp__param *p = &s->params[j];
            const ynode *at = c->x[i].param_at[j], *v = NULL;
            SP_TRY(params_file(c, s, at, p->file, &v));
            for (const char *seg = p->key; v && *seg;) {
                const char *dot = strchr(seg, '.');
                size_t sl = dot ? (size_t)(dot - seg) : strlen(seg);
                v = v->kind == Y_MAP ? y_get(v, seg, sl) : NULL;
                seg += sl + (dot != NULL);
            }
            if (!v)
                return yfail(c->file, at->line, at->col, s->name, "params key '%s' not found in %s",
                             p->key, p->file);
            sp__buf b = {0};
            sp_status rc = canon(&b, v);
            if (rc == SP_OK) rc = sp__buf_append(&b, "", 1);
            if (rc < 0) {
                sp__buf_free(&b);
                return rc;
            }
            p->value = (char *)b.data;
        }
    }
    return SP_OK;
}

/* ---- the graph */

typedef struct outref {
    const char *path;
    size_t stage; /* file order */
    const ynode *at;
} outref;

static int outref_cmp(const void *a, const void *b) {
    const outref *x = a, *y = b;
    int c = path_cmp_n(x->path, y->path, strlen(y->path));
    if (c) return c;
    return x->stage < y->stage ? -1 : x->stage > y->stage;
}

/* First index whose path is >= key[0..kl). */
static size_t lower_bound(const outref *o, size_t n, const char *key, size_t kl) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (path_cmp_n(o[mid].path, key, kl) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static sp_status check_outs(const pctx *c, const outref *o, size_t n) {
    for (size_t i = 1; i < n; i++) {
        const outref *a = &o[i - 1], *b = &o[i];
        if (!path_within(b->path, a->path)) continue;
        int same = !strcmp(a->path, b->path);
        const outref *later = y_before(b->at, a->at) ? a : b, *other = later == a ? b : a;
        const char *sn = c->st[later->stage].name, *on = c->st[other->stage].name;
        if (later->stage == other->stage)
            return yfail(c->file, later->at->line, later->at->col, sn,
                         "output '%s' is inside its own output '%s'", b->path, a->path);
        if (same)
            return yfail(c->file, later->at->line, later->at->col, sn,
                         "output '%s' is also an output of stage '%s' (line %u)", later->path, on,
                         other->at->line);
        return yfail(c->file, later->at->line, later->at->col, sn,
                     "output '%s' %s output '%s' of stage '%s' (line %u)", later->path,
                     later == b ? "is inside" : "contains", other->path, on, other->at->line);
    }
    return SP_OK;
}

/* Adds stage j to stage i's upstream (once); a stage depending on itself is an error. */
static sp_status add_upstream(const pctx *c, size_t i, size_t d, const outref *o, size_t *cap) {
    sp__stage *s = &c->st[i];
    const ynode *at = c->x[i].dep_at[d];
    if (o->stage == i)
        return yfail(c->file, at->line, at->col, s->name, "dep '%s' overlaps its own output '%s'",
                     s->deps[d], o->path);
    for (size_t k = 0; k < s->n_upstream; k++)
        if (s->upstream[k] == o->stage) return SP_OK;
    if (s->n_upstream == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        size_t *u = sp__realloc(s->upstream, nc * sizeof *u);
        if (!u) return oom();
        s->upstream = u;
        *cap = nc;
    }
    s->upstream[s->n_upstream++] = o->stage;
    return SP_OK;
}

static sp_status link_stages(const pctx *c, const outref *o, size_t n_o) {
    for (size_t i = 0; i < c->n; i++) {
        sp__stage *s = &c->st[i];
        size_t cap = 0;
        for (size_t d = 0; d < s->n_deps; d++) {
            const char *dep = s->deps[d];
            size_t dl = strlen(dep);
            /* outputs equal to the dep or a folder above it: each prefix ending at a '/' */
            for (size_t k = 1; k <= dl; k++) {
                if (k < dl && dep[k] != '/') continue;
                size_t at = lower_bound(o, n_o, dep, k);
                if (at < n_o && path_cmp_n(o[at].path, dep, k) == 0)
                    SP_TRY(add_upstream(c, i, d, &o[at], &cap));
            }
            /* outputs inside the dep: they follow "dep" directly in '/'-lowest order */
            for (size_t at = lower_bound(o, n_o, dep, dl); at < n_o; at++) {
                if (!path_within(o[at].path, dep)) break;
                if (o[at].path[dl] == '/') SP_TRY(add_upstream(c, i, d, &o[at], &cap));
            }
        }
    }
    return SP_OK;
}

/* Names a cycle among the stages not yet ordered (each has an unordered upstream stage). */
static sp_status cycle_error(const pctx *c, const unsigned char *done) {
    size_t start = 0;
    while (done[start])
        start++;
    size_t *seq = sp__malloc(c->n * sizeof *seq), *pos = sp__malloc(c->n * sizeof *pos);
    if (!seq || !pos) {
        sp__free(seq);
        sp__free(pos);
        return oom();
    }
    for (size_t i = 0; i < c->n; i++)
        pos[i] = SIZE_MAX;
    size_t len = 0, cur = start;
    while (pos[cur] == SIZE_MAX) {
        pos[cur] = len;
        seq[len++] = cur;
        const sp__stage *s = &c->st[cur];
        size_t next = SIZE_MAX;
        for (size_t k = 0; k < s->n_upstream && next == SIZE_MAX; k++)
            if (!done[s->upstream[k]]) next = s->upstream[k];
        cur = next;
    }
    /* seq[pos[cur]..len) walks upstream; print it downstream, from the stage first in the file */
    size_t first = pos[cur], m = len - first, lo = first;
    for (size_t k = first; k < len; k++)
        if (seq[k] < seq[lo]) lo = k;
    sp__buf b = {0};
    sp_status rc = SP_OK;
    for (size_t t = 0; t <= m && rc == SP_OK; t++) {
        size_t k = first + (lo - first + m - t % m) % m;
        if (t == m) k = lo;
        rc = sp__buf_printf(&b, "%s%s", t ? " -> " : "", c->st[seq[k]].name);
    }
    if (rc == SP_OK) {
        const ynode *at = c->x[seq[lo]].name;
        rc = yfail(c->file, at->line, at->col, c->st[seq[lo]].name, "dependency cycle: %s",
                   (const char *)b.data);
    }
    sp__buf_free(&b);
    sp__free(seq);
    sp__free(pos);
    return rc;
}

/* Kahn's algorithm, taking the ready stage first in the file: order[k] = file index. */
static sp_status topo_order(const pctx *c, size_t *order) {
    unsigned char *done = sp__calloc(c->n ? c->n : 1, 1);
    size_t *indeg = sp__calloc(c->n ? c->n : 1, sizeof *indeg);
    sp_status rc = SP_OK;
    if (!done || !indeg) rc = oom();
    for (size_t i = 0; i < c->n && rc == SP_OK; i++)
        indeg[i] = c->st[i].n_upstream;
    for (size_t k = 0; k < c->n && rc == SP_OK; k++) {
        size_t pick = SIZE_MAX;
        for (size_t i = 0; i < c->n && pick == SIZE_MAX; i++)
            if (!done[i] && indeg[i] == 0) pick = i;
        if (pick == SIZE_MAX) {
            rc = cycle_error(c, done);
            break;
        }
        done[pick] = 1;
        order[k] = pick;
        for (size_t i = 0; i < c->n; i++)
            for (size_t u = 0; u < c->st[i].n_upstream; u++)
                if (c->st[i].upstream[u] == pick) indeg[i]--;
    }
    sp__free(done);
    sp__free(indeg);
    return rc;
}

static int size_cmp(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- the whole */

static void stage_free(sp__stage *s) {
    sp__free(s->name);
    for (size_t i = 0; s->cmd && i < s->n_cmd; i++)
        sp__free(s->cmd[i]);
    sp__free(s->cmd);
    sp__free(s->wdir);
    for (size_t i = 0; s->deps && i < s->n_deps; i++)
        sp__free(s->deps[i]);
    sp__free(s->deps);
    for (size_t i = 0; s->outs && i < s->n_outs; i++)
        sp__free(s->outs[i]);
    sp__free(s->outs);
    for (size_t i = 0; i < s->n_params; i++) {
        sp__free(s->params[i].file);
        sp__free(s->params[i].key);
        sp__free(s->params[i].value);
    }
    sp__free(s->params);
    for (size_t i = 0; i < s->n_env; i++)
        sp__free(s->env[i]);
    sp__free(s->env);
    sp__free(s->upstream);
}

void sp__pipeline_free(sp__pipeline *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_stages; i++)
        stage_free(&p->stages[i]);
    sp__free(p->stages);
    sp__free(p->root);
    sp__free(p->file);
    memset(p, 0, sizeof *p);
}

/* Reads the stages mapping into c->st / c->x, in file order. */
static sp_status parse_stages(pctx *c, const ynode *doc) {
    if (!doc) return yfail(c->file, 1, 1, NULL, "the pipeline file is empty (expected 'stages:')");
    if (doc->kind != Y_MAP)
        return yfail(c->file, doc->line, doc->col, NULL,
                     "expected a mapping with 'stages' at the top, found %s", y_kind(doc));
    SP_TRY(y_check_dups(c->file, doc, NULL, "key"));
    const ynode *stages = NULL;
    for (size_t i = 0; i + 1 < doc->n; i += 2) {
        if (!strcmp(doc->kid[i]->str, "stages"))
            stages = doc->kid[i + 1];
        else
            return unknown_key(c->file, doc->kid[i], NULL, TOP_KEYS, 1);
    }
    if (!stages) return yfail(c->file, doc->line, doc->col, NULL, "no 'stages' in the file");
    if (stages->kind != Y_MAP)
        return yfail(c->file, stages->line, stages->col, NULL,
                     "'stages' must be a mapping of stage names to stages, found %s",
                     y_is_null(stages) ? "nothing" : y_kind(stages));
    SP_TRY(y_check_dups(c->file, stages, NULL, "stage"));
    size_t n = stages->n / 2;
    c->st = sp__calloc(n ? n : 1, sizeof *c->st);
    c->x = sp__calloc(n ? n : 1, sizeof *c->x);
    if (!c->st || !c->x) return oom();
    c->cap = n;
    for (size_t i = 0; i < n; i++) {
        const ynode *k = stages->kid[2 * i], *v = stages->kid[2 * i + 1];
        if (!valid_stage_name(k))
            return yfail(c->file, k->line, k->col, NULL,
                         "bad stage name '%s' (letters, digits, '_', '.', '-')", k->str);
        sp__stage *s = &c->st[i];
        c->n = i + 1;
        c->x[i].name = k;
        s->line = k->line;
        if (!(s->name = sp__strdup(k->str))) return oom();
        if (v->kind != Y_MAP)
            return yfail(c->file, v->line, v->col, s->name, "a stage must be a mapping, found %s",
                         y_is_null(v) ? "nothing" : y_kind(v));
        SP_TRY(parse_stage(c, s, &c->x[i], v));
    }
    return SP_OK;
}

static sp_status build(pctx *c, sp__pipeline *out) {
    size_t n_o = 0;
    for (size_t i = 0; i < c->n; i++)
        n_o += c->st[i].n_outs;
    outref *o = sp__malloc((n_o ? n_o : 1) * sizeof *o);
    size_t *order = sp__malloc((c->n ? c->n : 1) * sizeof *order);
    size_t *newpos = sp__malloc((c->n ? c->n : 1) * sizeof *newpos);
    sp_status rc = SP_OK;
    if (!o || !order || !newpos) rc = oom();
    for (size_t i = 0, m = 0; i < c->n && rc == SP_OK; i++)
        for (size_t k = 0; k < c->st[i].n_outs; k++)
            o[m++] = (outref){c->st[i].outs[k], i, c->x[i].out_at[k]};
    if (rc == SP_OK) {
        if (n_o > 1) qsort(o, n_o, sizeof *o, outref_cmp);
        rc = check_outs(c, o, n_o);
    }
    if (rc == SP_OK) rc = link_stages(c, o, n_o);
    if (rc == SP_OK) rc = topo_order(c, order);
    if (rc == SP_OK && !(out->stages = sp__calloc(c->n ? c->n : 1, sizeof *out->stages)))
        rc = oom();
    if (rc == SP_OK) {
        for (size_t k = 0; k < c->n; k++)
            newpos[order[k]] = k;
        for (size_t k = 0; k < c->n; k++) {
            sp__stage *s = &out->stages[k];
            *s = c->st[order[k]];
            for (size_t u = 0; u < s->n_upstream; u++)
                s->upstream[u] = newpos[s->upstream[u]];
            if (s->n_upstream > 1) qsort(s->upstream, s->n_upstream, sizeof *s->upstream, size_cmp);
        }
        out->n_stages = c->n;
        c->moved = 1;
    }
    sp__free(o);
    sp__free(order);
    sp__free(newpos);
    return rc;
}

sp_status sp__pipeline_parse(const char *root, const char *file, const char *text, size_t len,
                             sp__pipeline *out) {
    if (!out) return sp__fail(SP_EINVAL, "sp__pipeline_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!root || !file || (!text && len))
        return sp__fail(SP_EINVAL, "sp__pipeline_parse: %s is NULL",
                        !root   ? "root"
                        : !file ? "file"
                                : "text");
    pctx c = {.file = file};
    ynode *doc = NULL;
    sp_status rc = norm_root(root, &out->root);
    if (rc == SP_OK && !(out->file = sp__strdup(file))) rc = oom();
    c.root = out->root;
    if (rc == SP_OK) rc = y_load(file, text ? text : "", len, 0, &doc);
    if (rc == SP_OK) rc = parse_stages(&c, doc);
    if (rc == SP_OK) rc = params_values(&c);
    if (rc == SP_OK) rc = build(&c, out);
    for (size_t i = 0; i < c.cap; i++) {
        if (!c.moved) stage_free(&c.st[i]);
        sp__free(c.x[i].dep_at);
        sp__free(c.x[i].out_at);
        sp__free(c.x[i].param_at);
    }
    sp__free(c.st);
    sp__free(c.x);
    for (size_t i = 0; i < c.n_pf; i++) {
        sp__free(c.pf[i].name);
        y_free(c.pf[i].root);
    }
    sp__free(c.pf);
    y_free(doc);
    if (rc < 0) sp__pipeline_free(out);
    return rc;
}
