/* load_filter.c — the loader's row filter: a hand-written tokenizer and recursive-descent parser
 * into a small flat AST over a dataset's scalar columns, an exact per-sample test, and block
 * skipping judged from the per-block statistics.
 *
 * LITERALS. An integer literal ("42", "-7") is an exact 64-bit integer; a decimal literal (with a
 * "." or an exponent: "2.5", "1e9", "-.5") is the nearest double, as in C or Python. Integers must
 * fit in int64 and decimals must be finite doubles; anything else is an error. Numbers follow the
 * "C" numeric locale, as everywhere in the library. Keywords ("and", "or", "not", "in") are
 * case-sensitive and reserved: a column with such a name cannot be named in a filter.
 *
 * ERRORS are SP_EINVAL with "filter:LINE:COL: what was expected, found what" (COL counts bytes
 * from 1), plus a hint where one helps (a close column name, lowercase keywords, "!=" for "!").
 * Nesting of "(" and "not" is limited to 64 levels, so hostile input cannot exhaust the stack;
 * "and"/"or" chains are flat n-ary nodes and may be arbitrarily long.
 *
 * COMPARISONS ARE EXACT. A column value and a literal are compared as the two numbers they are,
 * never through a lossy conversion: for an int column, "label < 2.5" means label <= 2 and
 * "big == 9007199254740993.0" means big == 9007199254740992 (the literal's double); for a float64
 * column, "score == 9007199254740993" is never true (no double has that value) and
 * "score < 9007199254740993" means score <= 9007199254740992. To get there, the parser rewrites
 * every comparison into a closed interval [lo, hi] in the column's own domain (int64 or double;
 * lo > hi is the empty set) and every "in" list into a sorted set of the values the column can
 * actually hold, so evaluation compares like with like and costs one or two compares.
 *
 * NULLS (and NaN, which float64 columns store as null) use two-valued logic, not SQL's three:
 * every comparison and "in" is FALSE on a null value, except "!=" and "not in", which are TRUE:
 * they are the exact complements of "==" and "in". "not" simply negates its operand. So for a
 * null x: "x == 1" is false, "x != 1" is true, "not (x == 1)" is true, "not (x != 1)" is false,
 * "x < 1 or x >= 1" is false, and "x != 1" and "not (x == 1)" agree on every row, null or not.
 *
 * BLOCK SKIPPING. sp__filter_block_may_match evaluates the tree over a whole block at once with
 * a two-bit mask per node: MAY_T (some row of the block may make it true) and MAY_F (some row
 * may make it false). A leaf gets its mask from the block's null count, non-null count and
 * min/max; "and", "or" and "not" combine masks so that every row's actual truth value is always
 * in its node's mask (not swaps the bits; it never negates a "may match"). The block is skipped
 * only when the root cannot be true, which is therefore sound: a block with a matching row is
 * never skipped. */
#include "load_internal.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64 /* nesting of "(" and "not" */

/* ------------------------------------------------------------ the tree */

enum { N_AND, N_OR, N_NOT, N_INT, N_F64, N_SET_INT, N_SET_F64 };

typedef union fval {
    int64_t i;
    double f;
} fval;

typedef struct fnode {
    uint8_t kind;
    uint8_t negate; /* leaves: flip the result; a null value gives true ("!=", "not in") */
    uint32_t col;   /* leaves */
    size_t a, n;    /* and/or: kids[a .. a+n); not: nodes[a]; sets: vals[a .. a+n), sorted */
    fval lo, hi;    /* N_INT / N_F64: matching non-null values are lo <= v <= hi */
} fnode;

struct sp__filter {
    fnode *nodes;
    size_t n_nodes, cap_nodes;
    size_t *kids;
    size_t n_kids, cap_kids;
    fval *vals;
    size_t n_vals, cap_vals;
    size_t root;
};

static sp_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return SP_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return sp__fail(SP_ENOMEM, "filter: too large");
        c *= 2;
    }
    void *q = sp__realloc(*p, c * elem);
    if (!q) return sp__fail(SP_ENOMEM, "filter: out of memory");
    *p = q;
    *cap = c;
    return SP_OK;
}

static sp_status new_node(sp__filter *f, int kind, size_t *idx) {
    SP_TRY(grow((void **)&f->nodes, &f->cap_nodes, f->n_nodes + 1, sizeof *f->nodes));
    fnode *n = &f->nodes[f->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    *idx = f->n_nodes++;
    return SP_OK;
}

void sp__filter_free(sp__filter *f) {
    if (!f) return;
    sp__free(f->nodes);
    sp__free(f->kids);
    sp__free(f->vals);
    sp__free(f);
}

/* ------------------------------------------------------------ tokens */

enum {
    T_END,
    T_IDENT,
    T_INT,
    T_DEC,
    T_AND,
    T_OR,
    T_NOT,
    T_IN,
    T_LPAREN,
    T_RPAREN,
    T_LBRACE,
    T_RBRACE,
    T_COMMA,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE
};

typedef struct tok {
    int kind;
    size_t pos, len;  /* in the text */
    size_t line, col; /* 1-based; col counts bytes */
} tok;

typedef struct parser {
    const char *text;
    const sp_dataset *ds;
    sp__filter *f;
    size_t p, line, line_start; /* the lexer's position */
    tok t;                      /* the current token */
    tok prev;                   /* the one before */
    int depth;
    char qbuf[256], fbuf[512]; /* for error messages: kept out of the recursive frames */
} parser;

static int is_digit(int c) {
    return c >= '0' && c <= '9';
}
static int is_alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_ident(int c) {
    return is_alpha(c) || is_digit(c);
}
static int lower(int c) {
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* `s[0..len)` as a quoted, escaped and possibly shortened string, into buf. */
static const char *quote(char *buf, size_t size, const char *s, size_t len) {
    size_t o = 0, max = 40;
    buf[o++] = '"';
    for (size_t k = 0; k < len && k < max && o + 8 < size; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    if (len > max && o + 5 < size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static const char *const keywords[] = {"and", "or", "not", "in"};

/* Index of the keyword that `s[0..len)` equals ignoring case, or -1. */
static int keyword_nocase(const char *s, size_t len) {
    for (int k = 0; k < 4; k++) {
        size_t kl = strlen(keywords[k]);
        if (kl != len) continue;
        size_t j = 0;
        while (j < len && lower((unsigned char)s[j]) == keywords[k][j])
            j++;
        if (j == len) return k;
    }
    return -1;
}

/* What the parser found, for "found X": the quoted token, or "the end of the filter". */
static const char *found(const parser *P, char *buf, size_t size) {
    const tok *t = &P->t;
    if (t->kind == T_END) return "the end of the filter";
    char q[256];
    quote(q, sizeof q, P->text + t->pos, t->len);
    int kw = t->kind == T_IDENT ? keyword_nocase(P->text + t->pos, t->len) : -1;
    if (kw >= 0)
        snprintf(buf, size, "%s (keywords are lowercase: \"%s\")", q, keywords[kw]);
    else
        snprintf(buf, size, "%s", q);
    return buf;
}

static sp_status fail_at(const tok *t, const char *fmt, ...) SP__PRINTF(2, 3);
static sp_status fail_at(const tok *t, const char *fmt, ...) {
    char msg[SP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sp__fail(SP_EINVAL, "filter:%zu:%zu: %s", t->line, t->col, msg);
}

/* Reads the next token into P->t (the current one moves to P->prev). */
static sp_status next(parser *P) {
    const char *s = P->text;
    size_t p = P->p;
    for (;;) {
        char c = s[p];
        if (c == '\n') {
            p++;
            P->line++;
            P->line_start = p;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            p++;
        } else {
            break;
        }
    }
    P->prev = P->t;
    tok *t = &P->t;
    t->pos = p;
    t->line = P->line;
    t->col = p - P->line_start + 1;
    int c = (unsigned char)s[p], c1 = c ? (unsigned char)s[p + 1] : 0;
    int c2 = c1 ? (unsigned char)s[p + 2] : 0;
    size_t q = p;
    char q1[256];
    if (c == 0) {
        t->kind = T_END;
    } else if (is_alpha(c)) {
        while (is_ident((unsigned char)s[q]))
            q++;
        t->kind = T_IDENT;
        for (int k = 0; k < 4; k++)
            if (strlen(keywords[k]) == q - p && memcmp(s + p, keywords[k], q - p) == 0)
                t->kind = T_AND + k;
    } else if (is_digit(c) || (c == '.' && is_digit(c1)) ||
               ((c == '-' || c == '+') && (is_digit(c1) || (c1 == '.' && is_digit(c2))))) {
        int dec = 0;
        if (c == '-' || c == '+') q++;
        while (is_digit((unsigned char)s[q]))
            q++;
        if (s[q] == '.') {
            dec = 1;
            q++;
            while (is_digit((unsigned char)s[q]))
                q++;
        }
        if (s[q] == 'e' || s[q] == 'E') {
            size_t e = q + 1;
            if (s[e] == '+' || s[e] == '-') e++;
            if (is_digit((unsigned char)s[e])) {
                dec = 1;
                q = e;
                while (is_digit((unsigned char)s[q]))
                    q++;
            }
        }
        if (is_ident((unsigned char)s[q]) || s[q] == '.') {
            while (is_ident((unsigned char)s[q]) || s[q] == '.')
                q++;
            return fail_at(t, "malformed number %s", quote(q1, sizeof q1, s + p, q - p));
        }
        t->kind = dec ? T_DEC : T_INT;
    } else {
        q = p + 1;
        switch (c) {
        case '(':
            t->kind = T_LPAREN;
            break;
        case ')':
            t->kind = T_RPAREN;
            break;
        case '{':
            t->kind = T_LBRACE;
            break;
        case '}':
            t->kind = T_RBRACE;
            break;
        case ',':
            t->kind = T_COMMA;
            break;
        case '=':
            t->kind = T_EQ;
            if (c1 == '=') q++;
            break;
        case '<':
            t->kind = T_LT;
            if (c1 == '=') {
                t->kind = T_LE;
                q++;
            }
            break;
        case '>':
            t->kind = T_GT;
            if (c1 == '=') {
                t->kind = T_GE;
                q++;
            }
            break;
        case '!':
            if (c1 == '=') {
                t->kind = T_NE;
                q++;
                break;
            }
            return fail_at(t, "unexpected \"!\" (write \"!=\", or \"not\" to negate)");
        case '&':
            return fail_at(t, "unexpected \"&\" (write \"and\")");
        case '|':
            return fail_at(t, "unexpected \"|\" (write \"or\")");
        default:
            return fail_at(t, "unexpected character %s", quote(q1, sizeof q1, s + p, 1));
        }
    }
    t->len = q - p;
    P->p = q;
    return SP_OK;
}

/* ------------------------------------------------------------ numbers */

typedef struct lit {
    int is_int;
    int64_t i;
    double d;
} lit;

static sp_status number(parser *P, lit *out) {
    const tok *t = &P->t;
    const char *s = P->text + t->pos;
    char q[256];
    if (t->kind == T_INT) {
        size_t k = 0;
        int neg = 0;
        if (s[0] == '-' || s[0] == '+') {
            neg = s[0] == '-';
            k++;
        }
        uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (; k < t->len; k++) {
            unsigned dg = (unsigned)(s[k] - '0');
            if (mag > (limit - dg) / 10)
                return fail_at(t,
                               "number %s is out of range: integers must fit in 64 bits "
                               "(write it as a decimal, e.g. 1e20, to compare as a float)",
                               quote(q, sizeof q, s, t->len));
            mag = mag * 10 + dg;
        }
        out->is_int = 1;
        out->i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
        out->d = 0;
        return SP_OK;
    }
    /* T_DEC: its syntax is a subset of strtod's, so strtod stops exactly at its end */
    char *end;
    double d = strtod(s, &end);
    if ((size_t)(end - s) != t->len)
        return fail_at(t, "malformed number %s", quote(q, sizeof q, s, t->len));
    if (isinf(d))
        return fail_at(t, "number %s is out of range for a 64-bit float",
                       quote(q, sizeof q, s, t->len));
    out->is_int = 0;
    out->i = 0;
    out->d = d;
    return SP_OK;
}

/* An integral double as int64: -1 when below the range, 1 when above, 0 and *out when inside. */
static int dbl_to_i64(double x, int64_t *out) {
    if (x < -9223372036854775808.0) return -1;
    if (x >= 9223372036854775808.0) return 1;
    *out = (int64_t)x;
    return 0;
}

/* Sign of (d - i), exactly, for an integral double d. */
static int cmp_dbl_i64(double d, int64_t i) {
    int64_t k;
    int r = dbl_to_i64(d, &k);
    if (r) return r;
    return (k > i) - (k < i);
}

/* The literal as a double when it is exactly one; 0 when no double equals it. */
static int lit_exact_double(const lit *L, double *d) {
    if (!L->is_int) {
        *d = L->d;
        return 1;
    }
    *d = (double)L->i;
    return cmp_dbl_i64(*d, L->i) == 0;
}

/* The literal as an int64 when it is exactly one. */
static int lit_exact_i64(const lit *L, int64_t *i) {
    if (L->is_int) {
        *i = L->i;
        return 1;
    }
    return floor(L->d) == L->d && dbl_to_i64(L->d, i) == 0;
}

/* ------------------------------------------------------------ leaves */

/* "v op L" on an int column as [lo, hi] over int64 (negate for "!="). */
static void int_leaf(fnode *n, int op, const lit *L) {
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    const int64_t EMPTY_LO = INT64_MAX, EMPTY_HI = INT64_MIN;
    n->kind = N_INT;
    if (op == T_NE) {
        n->negate = 1;
        op = T_EQ;
    }
    if (L->is_int) {
        int64_t v = L->i;
        switch (op) {
        case T_EQ:
            lo = hi = v;
            break;
        case T_LT:
            if (v == INT64_MIN)
                lo = EMPTY_LO, hi = EMPTY_HI;
            else
                hi = v - 1;
            break;
        case T_LE:
            hi = v;
            break;
        case T_GT:
            if (v == INT64_MAX)
                lo = EMPTY_LO, hi = EMPTY_HI;
            else
                lo = v + 1;
            break;
        default:
            lo = v;
            break; /* T_GE */
        }
    } else {
        /* v < d <=> v < ceil(d);  v <= d <=> v <= floor(d);  v > d <=> v > floor(d);
         * v >= d <=> v >= ceil(d);  v == d <=> d is an integer and v == d. Saturated. */
        double fl = floor(L->d), ce = ceil(L->d);
        int64_t f = 0, c = 0;
        int rf = dbl_to_i64(fl, &f), rc = dbl_to_i64(ce, &c);
        switch (op) {
        case T_EQ:
            if (fl != ce || rf != 0)
                lo = EMPTY_LO, hi = EMPTY_HI;
            else
                lo = hi = f;
            break;
        case T_LT:
            if (rc < 0 || (rc == 0 && c == INT64_MIN))
                lo = EMPTY_LO, hi = EMPTY_HI;
            else if (rc == 0)
                hi = c - 1;
            break;
        case T_LE:
            if (rf < 0)
                lo = EMPTY_LO, hi = EMPTY_HI;
            else if (rf == 0)
                hi = f;
            break;
        case T_GT:
            if (rf > 0 || (rf == 0 && f == INT64_MAX))
                lo = EMPTY_LO, hi = EMPTY_HI;
            else if (rf == 0)
                lo = f + 1;
            break;
        default: /* T_GE */
            if (rc > 0)
                lo = EMPTY_LO, hi = EMPTY_HI;
            else if (rc == 0)
                lo = c;
            break;
        }
    }
    n->lo.i = lo;
    n->hi.i = hi;
}

/* "v op L" on a float64 column as [lo, hi] over doubles (negate for "!="). */
static void f64_leaf(fnode *n, int op, const lit *L) {
    n->kind = N_F64;
    if (op == T_NE) {
        n->negate = 1;
        op = T_EQ;
    }
    double d, below, above;
    int exact = lit_exact_double(L, &d);
    if (exact) {
        below = nextafter(d, -INFINITY); /* the largest double < L */
        above = nextafter(d, INFINITY);  /* the smallest double > L */
    } else if (cmp_dbl_i64(d, L->i) > 0) {
        below = nextafter(d, -INFINITY);
        above = d;
    } else {
        below = d;
        above = nextafter(d, INFINITY);
    }
    double lo = -INFINITY, hi = INFINITY;
    switch (op) {
    case T_EQ:
        if (exact)
            lo = hi = d;
        else
            lo = INFINITY, hi = -INFINITY;
        break;
    case T_LT:
        hi = below;
        break;
    case T_LE:
        hi = exact ? d : below;
        break;
    case T_GT:
        lo = above;
        break;
    default:
        lo = exact ? d : above;
        break; /* T_GE */
    }
    n->lo.f = lo;
    n->hi.f = hi;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = ((const fval *)a)->i, y = ((const fval *)b)->i;
    return (x > y) - (x < y);
}
static int cmp_f64(const void *a, const void *b) {
    double x = ((const fval *)a)->f, y = ((const fval *)b)->f;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------ the parser */

/* Levenshtein distance with transpositions, ignoring case; names of at most 64 bytes. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    size_t r0[65], r1[65], r2[65];
    size_t *pp = r0, *p = r1, *c = r2;
    for (size_t j = 0; j <= lb; j++)
        p[j] = j;
    for (size_t i = 1; i <= la; i++) {
        c[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = lower((unsigned char)a[i - 1]), cb = lower((unsigned char)b[j - 1]);
            size_t v = p[j - 1] + (ca != cb);
            if (p[j] + 1 < v) v = p[j] + 1;
            if (c[j - 1] + 1 < v) v = c[j - 1] + 1;
            if (i > 1 && j > 1 && ca == lower((unsigned char)b[j - 2]) &&
                lower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
        }
        size_t *tmp = pp;
        pp = p;
        p = c;
        c = tmp;
    }
    return p[lb];
}

static sp_status unknown_column(const parser *P, const tok *t) {
    const char *name = P->text + t->pos;
    char q[256], hint[512];
    quote(q, sizeof q, name, t->len);
    int kw = keyword_nocase(name, t->len);
    size_t best = SIZE_MAX, nc = sp_dataset_n_columns(P->ds);
    const char *best_name = NULL;
    if (t->len < SP_MAX_NAME) {
        for (size_t c = 0; c < nc; c++) {
            const char *cn = sp_dataset_column(P->ds, c)->name;
            size_t d = edit_distance(name, t->len, cn, strlen(cn));
            if (d < best) {
                best = d;
                best_name = cn;
            }
        }
    }
    size_t allowed = t->len <= 2 ? 0 : t->len <= 4 ? 1 : t->len <= 8 ? 2 : 3;
    if (kw >= 0) {
        snprintf(hint, sizeof hint, "keywords are lowercase: \"%s\"", keywords[kw]);
    } else if (best_name && best <= allowed) {
        snprintf(hint, sizeof hint, "did you mean \"%s\"?", best_name);
    } else {
        size_t o = (size_t)snprintf(hint, sizeof hint, "columns:");
        for (size_t c = 0; c < nc; c++) {
            const char *cn = sp_dataset_column(P->ds, c)->name;
            if (o + strlen(cn) + 8 >= sizeof hint) {
                snprintf(hint + o, sizeof hint - o, ", ...");
                break;
            }
            o += (size_t)snprintf(hint + o, sizeof hint - o, "%s %s", c ? "," : "", cn);
        }
    }
    return fail_at(t, "unknown column %s (%s)", q, hint);
}

static sp_status parse_or(parser *P, size_t *out);

static sp_status enter(parser *P) {
    if (++P->depth > MAX_DEPTH)
        return fail_at(&P->t, "nesting deeper than %d levels of \"(\" and \"not\"", MAX_DEPTH);
    return SP_OK;
}

/* "expected X after Y, found Z" with Y the previous token (or `after` when given). */
static sp_status expected(parser *P, const char *what, const char *after) {
    char q[256], fb[512];
    if (!after) after = quote(q, sizeof q, P->text + P->prev.pos, P->prev.len);
    return fail_at(&P->t, "expected %s after %s, found %s", what, after, found(P, fb, sizeof fb));
}

static sp_status parse_number(parser *P, lit *L, const char *after) {
    if (P->t.kind != T_INT && P->t.kind != T_DEC) return expected(P, "a number", after);
    SP_TRY(number(P, L));
    return next(P);
}

/* column ["not"] "in" "{" number ("," number)* "}"; the current token is "in". */
static sp_status parse_set(parser *P, size_t idx, uint32_t col) {
    sp__filter *f = P->f;
    int is_f64 = sp_dataset_column(P->ds, col)->type == SP_TYPE_FLOAT64;
    SP_TRY(next(P));
    if (P->t.kind != T_LBRACE) return expected(P, "\"{\"", "\"in\"");
    SP_TRY(next(P));
    size_t first = f->n_vals;
    const char *after = "\"in {\"";
    for (;;) {
        lit L;
        SP_TRY(parse_number(P, &L, after));
        fval v;
        int ok = is_f64 ? lit_exact_double(&L, &v.f) : lit_exact_i64(&L, &v.i);
        if (ok) { /* a value the column cannot hold matches nothing: left out */
            SP_TRY(grow((void **)&f->vals, &f->cap_vals, f->n_vals + 1, sizeof *f->vals));
            f->vals[f->n_vals++] = v;
        }
        if (P->t.kind == T_RBRACE) break;
        if (P->t.kind != T_COMMA) {
            char fb[512];
            return fail_at(&P->t, "expected \",\" or \"}\" in the set, found %s",
                           found(P, fb, sizeof fb));
        }
        SP_TRY(next(P));
        after = "\",\"";
    }
    SP_TRY(next(P));
    /* sort, drop duplicates (-0.0 and 0.0 are one value); f->vals is NULL while empty */
    size_t n = f->n_vals - first, m = 0;
    if (n > 0) {
        fval *v = f->vals + first;
        int (*cmp)(const void *, const void *) = is_f64 ? cmp_f64 : cmp_i64;
        qsort(v, n, sizeof *v, cmp);
        for (size_t k = 0; k < n; k++)
            if (m == 0 || cmp(&v[m - 1], &v[k]) != 0) v[m++] = v[k];
    }
    f->n_vals = first + m;
    fnode *node = &f->nodes[idx];
    node->kind = is_f64 ? N_SET_F64 : N_SET_INT;
    node->a = first;
    node->n = m;
    return SP_OK;
}

static sp_status parse_primary(parser *P, size_t *out) {
    sp__filter *f = P->f;
    char *fb = P->fbuf, *q = P->qbuf;
    const size_t fbsize = sizeof P->fbuf, qsize = sizeof P->qbuf;
    if (P->t.kind == T_LPAREN) {
        tok open = P->t;
        SP_TRY(enter(P));
        SP_TRY(next(P));
        SP_TRY(parse_or(P, out));
        if (P->t.kind != T_RPAREN)
            return fail_at(&P->t, "expected \")\" to close the \"(\" at %zu:%zu, found %s",
                           open.line, open.col, found(P, fb, fbsize));
        P->depth--;
        return next(P);
    }
    if (P->t.kind != T_IDENT) {
        const char *what = "a column name, \"not\" or \"(\"";
        if (P->t.kind == T_END && P->prev.kind == T_END)
            return fail_at(&P->t, "empty filter (expected %s)", what);
        if (P->t.kind == T_INT || P->t.kind == T_DEC)
            return fail_at(&P->t,
                           "expected %s, found the number %s (write the column first, "
                           "as in \"label < 3\")",
                           what, quote(q, qsize, P->text + P->t.pos, P->t.len));
        if (P->prev.kind == T_END)
            return fail_at(&P->t, "expected %s, found %s", what, found(P, fb, fbsize));
        return expected(P, what, NULL);
    }
    /* a column */
    tok ct = P->t;
    const char *name = P->text + ct.pos;
    size_t nc = sp_dataset_n_columns(P->ds), col = nc;
    for (size_t c = 0; c < nc; c++) {
        const sp_column *sc = sp_dataset_column(P->ds, c);
        if (strlen(sc->name) == ct.len && memcmp(sc->name, name, ct.len) == 0) col = c;
    }
    if (col == nc) return unknown_column(P, &ct);
    sp_type type = sp_dataset_column(P->ds, col)->type;
    if (type != SP_TYPE_INT32 && type != SP_TYPE_INT64 && type != SP_TYPE_FLOAT64)
        return fail_at(&ct, "column %s is a %s column; filters work on scalar columns",
                       quote(q, qsize, name, ct.len), sp_type_name(type));
    SP_TRY(new_node(f, N_INT, out));
    f->nodes[*out].col = (uint32_t)col;
    SP_TRY(next(P));
    int op = P->t.kind;
    switch (op) {
    case T_EQ:
    case T_NE:
    case T_LT:
    case T_LE:
    case T_GT:
    case T_GE: {
        SP_TRY(next(P));
        lit L;
        SP_TRY(parse_number(P, &L, NULL));
        if (type == SP_TYPE_FLOAT64)
            f64_leaf(&f->nodes[*out], op, &L);
        else
            int_leaf(&f->nodes[*out], op, &L);
        return SP_OK;
    }
    case T_NOT:
        SP_TRY(next(P));
        if (P->t.kind != T_IN) return expected(P, "\"in\"", "\"not\"");
        f->nodes[*out].negate = 1;
        return parse_set(P, *out, (uint32_t)col);
    case T_IN:
        return parse_set(P, *out, (uint32_t)col);
    default:
        return fail_at(&P->t,
                       "expected a comparison (\"==\", \"!=\", \"<\", \"<=\", \">\", \">=\") or "
                       "\"in\" after column %s, found %s",
                       quote(q, qsize, name, ct.len), found(P, fb, fbsize));
    }
}

static sp_status parse_not(parser *P, size_t *out) {
    if (P->t.kind != T_NOT) return parse_primary(P, out);
    SP_TRY(enter(P));
    SP_TRY(next(P));
    size_t child;
    SP_TRY(parse_not(P, &child));
    P->depth--;
    SP_TRY(new_node(P->f, N_NOT, out));
    P->f->nodes[*out].a = child;
    return SP_OK;
}

/* and := not ("and" not)*  and  or := and ("or" and)*, as one n-ary node each. */
static sp_status parse_list(parser *P, int is_or, size_t *out) {
    sp__filter *f = P->f;
    int sep = is_or ? T_OR : T_AND;
    size_t first;
    SP_TRY(is_or ? parse_list(P, 0, &first) : parse_not(P, &first));
    if (P->t.kind != sep) {
        *out = first;
        return SP_OK;
    }
    sp__buf kids = {0};
    sp_status rc = sp__buf_append(&kids, &first, sizeof first);
    while (rc == SP_OK && P->t.kind == sep) {
        size_t k;
        if ((rc = next(P)) < 0) break;
        if ((rc = is_or ? parse_list(P, 0, &k) : parse_not(P, &k)) < 0) break;
        rc = sp__buf_append(&kids, &k, sizeof k);
    }
    size_t n = kids.len / sizeof(size_t);
    if (rc == SP_OK) rc = grow((void **)&f->kids, &f->cap_kids, f->n_kids + n, sizeof *f->kids);
    if (rc == SP_OK) rc = new_node(f, is_or ? N_OR : N_AND, out);
    if (rc == SP_OK) {
        memcpy(f->kids + f->n_kids, kids.data, n * sizeof(size_t));
        f->nodes[*out].a = f->n_kids;
        f->nodes[*out].n = n;
        f->n_kids += n;
    }
    sp__buf_free(&kids);
    return rc;
}

static sp_status parse_or(parser *P, size_t *out) {
    return parse_list(P, 1, out);
}

sp_status sp__filter_parse(const char *text, const sp_dataset *ds, sp__filter **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp__filter_parse: NULL argument");
    *out = NULL;
    if (!text || !ds) return sp__fail(SP_EINVAL, "sp__filter_parse: NULL argument");
    sp__filter *f = sp__calloc(1, sizeof *f);
    if (!f) return sp__fail(SP_ENOMEM, "filter: out of memory");
    parser P;
    memset(&P, 0, sizeof P);
    P.text = text;
    P.ds = ds;
    P.f = f;
    P.line = 1;
    P.t.kind = T_END;
    sp_status rc = next(&P);
    P.prev.kind = T_END; /* "nothing before" */
    if (rc == SP_OK) rc = parse_or(&P, &f->root);
    if (rc == SP_OK && P.t.kind != T_END) {
        char fb[512];
        if (P.t.kind == T_RPAREN)
            rc = fail_at(&P.t, "unexpected \")\" without a matching \"(\"");
        else
            rc = fail_at(&P.t, "expected \"and\", \"or\" or the end of the filter, found %s",
                         found(&P, fb, sizeof fb));
    }
    if (rc < 0) {
        sp__filter_free(f);
        return rc;
    }
    *out = f;
    return SP_OK;
}

/* ------------------------------------------------------------ exact evaluation */

static int set_has_i64(const fval *v, size_t n, int64_t x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].i < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].i == x;
}

static int set_has_f64(const fval *v, size_t n, double x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].f < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && v[lo].f == x;
}

static int eval_row(const sp__filter *f, const fnode *n, const sp_dataset *ds, uint64_t i) {
    switch (n->kind) {
    case N_AND:
        for (size_t k = 0; k < n->n; k++)
            if (!eval_row(f, &f->nodes[f->kids[n->a + k]], ds, i)) return 0;
        return 1;
    case N_OR:
        for (size_t k = 0; k < n->n; k++)
            if (eval_row(f, &f->nodes[f->kids[n->a + k]], ds, i)) return 1;
        return 0;
    case N_NOT:
        return !eval_row(f, &f->nodes[n->a], ds, i);
    default:
        break;
    }
    sp_value v;
    if (sp_dataset_value(ds, i, n->col, &v) < 0) return 0;
    int in;
    switch (n->kind) {
    case N_INT:
        if (v.is_null) return n->negate;
        in = n->lo.i <= v.v.i && v.v.i <= n->hi.i;
        break;
    case N_F64:
        if (v.is_null || isnan(v.v.f)) return n->negate;
        in = n->lo.f <= v.v.f && v.v.f <= n->hi.f;
        break;
    case N_SET_INT:
        if (v.is_null) return n->negate;
        in = n->n > 0 && set_has_i64(f->vals + n->a, n->n, v.v.i);
        break;
    default: /* N_SET_F64 */
        if (v.is_null || isnan(v.v.f)) return n->negate;
        in = n->n > 0 && set_has_f64(f->vals + n->a, n->n, v.v.f);
        break;
    }
    return in ^ n->negate;
}

int sp__filter_match(const sp__filter *f, const sp_dataset *ds, uint64_t i) {
    if (!f || !ds || i >= sp_dataset_len(ds)) return 0;
    return eval_row(f, &f->nodes[f->root], ds, i);
}

/* ------------------------------------------------------------ block statistics */

enum { MAY_F = 1, MAY_T = 2, MAY_BOTH = 3 };

/* The truth values that rows of `block` may give leaf n, from the column's block statistics. */
static unsigned eval_leaf_block(const sp__filter *f, const fnode *n, const sp_dataset *ds,
                                uint64_t block) {
    sp_column_stats st;
    if (sp_dataset_block_stats(ds, block, n->col, &st) < 0) return MAY_BOTH;
    unsigned mask = 0;
    if (st.null_count > 0) mask |= n->negate ? MAY_T : MAY_F;
    if (st.count == 0) return mask;
    if (!st.has_minmax) return mask | MAY_BOTH;
    int all = 0, none = 0; /* do all (no) non-null values of the block lie in the set? */
    int kind = n->kind;
    if ((kind == N_SET_INT || kind == N_SET_F64) && n->n == 0) {
        none = 1;
        kind = -1;
    }
    switch (kind) {
    case -1:
        break;
    case N_INT:
        all = n->lo.i <= st.min_i && st.max_i <= n->hi.i;
        none = n->lo.i > n->hi.i || st.max_i < n->lo.i || st.min_i > n->hi.i;
        break;
    case N_F64:
        all = n->lo.f <= st.min_f && st.max_f <= n->hi.f;
        none = !(n->lo.f <= n->hi.f) || st.max_f < n->lo.f || st.min_f > n->hi.f;
        break;
    case N_SET_INT: {
        const fval *v = f->vals + n->a;
        size_t lo = 0, hi = n->n; /* first element >= min */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (v[mid].i < st.min_i)
                lo = mid + 1;
            else
                hi = mid;
        }
        none = lo == n->n || v[lo].i > st.max_i;
        /* all: every integer of [min, max] is in the set (the set is sorted and unique) */
        uint64_t span = (uint64_t)st.max_i - (uint64_t)st.min_i;
        all = !none && span < n->n - lo && v[lo].i == st.min_i && v[lo + span].i == st.max_i;
        break;
    }
    default: { /* N_SET_F64 */
        const fval *v = f->vals + n->a;
        size_t lo = 0, hi = n->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (v[mid].f < st.min_f)
                lo = mid + 1;
            else
                hi = mid;
        }
        none = lo == n->n || v[lo].f > st.max_f;
        all = !none && st.min_f == st.max_f && v[lo].f == st.min_f;
        break;
    }
    }
    unsigned pos = all ? MAY_T : none ? MAY_F : MAY_BOTH;
    if (n->negate && pos != MAY_BOTH) pos ^= MAY_BOTH;
    return mask | pos;
}

static unsigned eval_block(const sp__filter *f, const fnode *n, const sp_dataset *ds,
                           uint64_t block) {
    unsigned t, fl, m;
    switch (n->kind) {
    case N_AND: /* true needs every child true; false needs one child false */
        t = MAY_T, fl = 0;
        for (size_t k = 0; k < n->n && !(t == 0 && fl); k++) {
            m = eval_block(f, &f->nodes[f->kids[n->a + k]], ds, block);
            t &= m;
            fl |= m & MAY_F;
        }
        return t | fl;
    case N_OR:
        t = 0, fl = MAY_F;
        for (size_t k = 0; k < n->n && !(t && fl == 0); k++) {
            m = eval_block(f, &f->nodes[f->kids[n->a + k]], ds, block);
            t |= m & MAY_T;
            fl &= m;
        }
        return t | fl;
    case N_NOT:
        m = eval_block(f, &f->nodes[n->a], ds, block);
        return ((m & MAY_T) ? MAY_F : 0) | ((m & MAY_F) ? MAY_T : 0);
    default:
        return eval_leaf_block(f, n, ds, block);
    }
}

int sp__filter_block_may_match(const sp__filter *f, const sp_dataset *ds, uint64_t block) {
    if (!f || !ds) return 1;
    return (eval_block(f, &f->nodes[f->root], ds, block) & MAY_T) != 0;
}
