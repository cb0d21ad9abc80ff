/* ingest_table.c — parses CSV and JSONL text into an in-memory typed table (ingest_table.h).
 *
 * Both parsers make one pass over the input and write each row straight into per-column cell
 * arrays: preallocated from an upper bound on the row count (CSV) or grown by doubling (JSONL).
 * Strings are copied into the table's arena, a list of chunks that never move once allocated, so
 * cells can point into them; each value is NUL-terminated there (the NUL is not counted in its
 * length), which lets strtod() parse it in place. There is no allocation per cell.
 *
 * Columns whose type the schema fixes are converted while their row is parsed, so a bad value
 * makes a bad line that skip_errors can skip. The other columns keep their text (CSV) or a tagged
 * JSON value (JSONL) until the end, when one pass per column infers the type and converts the
 * cells in place: int64 when every value is an integer, else float64 when every value is a
 * number, else string (an all-null column is a string column).
 *
 * Invariants: cells [0, n_rows) of every column are initialized. While a JSONL parse runs, the
 * is_null field of a cell of an inferred column holds a TAG_* value; TAG_STR is 0 and TAG_NULL is
 * 1, so string and null cells already have their final form.
 *
 * Numbers are parsed with strtod(), which follows LC_NUMERIC: the library assumes the "C"
 * numeric locale, as every program has unless it calls setlocale(LC_NUMERIC, ...).
 */
#include "ingest_table.h"

#include "core_internal.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small helpers */

enum { KIND_INFER = 0, KIND_INT64, KIND_FLOAT64, KIND_STRING, KIND_TIMESTAMP };

static const char *kind_name(int kind) {
    switch (kind) {
    case KIND_INT64:
        return "int64";
    case KIND_FLOAT64:
        return "float64";
    case KIND_STRING:
        return "string";
    case KIND_TIMESTAMP:
        return "timestamp";
    }
    return "inferred";
}

static int is_digit(int c) {
    return c >= '0' && c <= '9';
}

static int is_name_char(int c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Length of the valid UTF-8 sequence at s (1 for ASCII), or 0 when it is invalid (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const char *s, const char *end) {
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - s) < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* 1-based column of `at` in the line that starts at `line_start`, counted in characters. */
static uint64_t column_of(const char *line_start, const char *at) {
    uint64_t col = 1;
    for (const char *p = line_start; p < at; p++)
        if (((unsigned char)*p & 0xC0) != 0x80) col++;
    return col;
}

#define QUOTE_SHOWN 48 /* input bytes quoted in a message before "..." */
#define QBUF        256

/* Writes s[0, n) into out[QBUF] as a double-quoted, printable and possibly shortened string. */
static void quote_text(char *out, const char *s, size_t n) {
    size_t o = 0, i = 0;
    out[o++] = '"';
    while (i < n && i < QUOTE_SHOWN) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        const char *src = esc;
        size_t k, used = 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, k = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\', esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't', k = 2;
        } else if (c >= 0x20 && c < 0x7F) {
            esc[0] = (char)c, k = 1;
        } else if (c >= 0x80 && (used = utf8_len(s + i, s + n)) > 0) {
            src = s + i, k = used;
        } else {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            k = 4, used = 1;
        }
        if (o + k + 5 > QBUF) break; /* keep room for '"', "..." and the NUL */
        memcpy(out + o, src, k);
        o += k;
        i += used;
    }
    out[o++] = '"';
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* Rewrites a column name to [A-Za-z0-9_]: any other character (a whole UTF-8 sequence, or a ""
 * pair when `escaped`) becomes '_', a leading digit gets a '_' in front, and the result is cut
 * to SP_MAX_NAME - 1 characters. An empty input gives "". */
static void sanitize_name(const char *s, size_t n, int escaped, char out[SP_MAX_NAME]) {
    size_t o = 0;
    if (n > 0 && is_digit((unsigned char)s[0])) out[o++] = '_';
    for (size_t i = 0; i < n && o < SP_MAX_NAME - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_name_char(c)) {
            out[o++] = (char)c;
            continue;
        }
        out[o++] = '_';
        if (c == '"' && escaped) {
            i++;
        } else if (c >= 0xC0) {
            while (i + 1 < n && ((unsigned char)s[i + 1] & 0xC0) == 0x80)
                i++;
        }
    }
    out[o] = '\0';
}

/* Strict integer: optional sign, then only digits; must fit int64. */
static int parse_i64(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n) return 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)((unsigned char)s[i] - '0');
        if (d > 9 || v > (limit - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (!neg)
        *out = (int64_t)v;
    else
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    return 1;
}

/* Strict float: the whole text is a decimal floating-point literal (no spaces, no hex), or an
 * optionally signed inf, infinity or nan (any case). s[n] must be '\0'. */
static int parse_f64(const char *s, size_t n, double *out) {
    size_t i = n > 0 && (s[0] == '+' || s[0] == '-');
    const char *w = s + i;
    size_t wn = n - i;
    static const char *const words[] = {"inf", "infinity", "nan"};
    for (size_t k = 0; k < 3; k++) {
        size_t len = strlen(words[k]), j = 0;
        if (wn != len) continue;
        while (j < len && lower((unsigned char)w[j]) == words[k][j])
            j++;
        if (j < len) continue;
        double v = k < 2 ? INFINITY : NAN;
        *out = s[0] == '-' ? -v : v;
        return 1;
    }
    int digits = 0;
    for (size_t k = i; k < n; k++) {
        char c = s[k];
        if (is_digit((unsigned char)c))
            digits = 1;
        else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-')
            return 0;
    }
    if (!digits) return 0;
    char *endp;
    double v = strtod(s, &endp);
    if (endp != s + n) return 0;
    *out = v;
    return 1;
}

/* Shortest "%.Ng" (N = 15..17) that reads back as f, with ".0" added to integral values so the
 * text still reads as a real. Returns the length. */
static size_t format_real(char *buf, size_t cap, double f) {
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, f);
        if (strtod(buf, NULL) == f) break;
    }
    if (n < 0) n = 0;
    if ((size_t)n >= cap) n = (int)cap - 1;
    if (!strpbrk(buf, ".eEn") && (size_t)n + 2 < cap) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

/* ---------------------------------------------------------------- timestamps */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static unsigned days_in_month(unsigned y, unsigned m) {
    static const unsigned char dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* Reads exactly `n` digits at s[*i]; returns -1 when they are not all there. */
static int fixed_digits(const char *s, size_t len, size_t *i, size_t n) {
    int v = 0;
    if (len - *i < n) return -1;
    for (size_t k = 0; k < n; k++) {
        char c = s[*i + k];
        if (!is_digit((unsigned char)c)) return -1;
        v = v * 10 + (c - '0');
    }
    *i += n;
    return v;
}

#define WHY_MAX 96

/* Integer or decimal epoch seconds, floored: [+-]digits[.digits]. */
static int parse_epoch(const char *s, size_t n, int64_t *out, char *why) {
    size_t i = 0;
    int neg = 0;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) neg = s[i++] == '-';
    size_t start = i;
    uint64_t v = 0;
    int big = 0;
    for (; i < n && is_digit((unsigned char)s[i]); i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            big = 1;
        else
            v = v * 10 + d;
    }
    if (i == start) {
        snprintf(why, WHY_MAX, "expected YYYY-MM-DD[THH:MM[:SS]][Z|+hh:mm] or epoch seconds");
        return 0;
    }
    int frac = 0;
    if (i < n && s[i] == '.') {
        size_t f0 = ++i;
        for (; i < n && is_digit((unsigned char)s[i]); i++)
            frac |= s[i] != '0';
        if (i == f0) {
            snprintf(why, WHY_MAX, "expected digits after the decimal point");
            return 0;
        }
    }
    if (i != n) {
        snprintf(why, WHY_MAX, "unexpected text after the epoch seconds");
        return 0;
    }
    /* floor(): a negative value with a fraction goes one second down */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 - (uint64_t)frac : (uint64_t)INT64_MAX;
    if (big || v > limit) {
        snprintf(why, WHY_MAX, "epoch seconds out of range");
        return 0;
    }
    if (!neg)
        *out = (int64_t)v;
    else if (v + (uint64_t)frac == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)v - frac;
    return 1;
}

/* ISO-8601 date or date-time, or epoch seconds; on failure `why` (WHY_MAX bytes) says what. */
static int parse_ts(const char *s, size_t n, int64_t *out, char *why) {
    why[0] = '\0';
    if (n == 0) {
        snprintf(why, WHY_MAX, "empty");
        return 0;
    }
    size_t i = 0;
    int y = fixed_digits(s, n, &i, 4);
    if (y < 0 || i >= n || s[i] != '-') return parse_epoch(s, n, out, why);
    i++;
    int mo = fixed_digits(s, n, &i, 2), d = -1;
    if (mo >= 0 && i < n && s[i] == '-') {
        i++;
        d = fixed_digits(s, n, &i, 2);
    }
    if (d < 0) {
        snprintf(why, WHY_MAX, "expected a date YYYY-MM-DD");
        return 0;
    }
    if (mo < 1 || mo > 12) {
        snprintf(why, WHY_MAX, "month %02d out of range 01-12", mo);
        return 0;
    }
    if (d < 1 || (unsigned)d > days_in_month((unsigned)y, (unsigned)mo)) {
        snprintf(why, WHY_MAX, "day %02d out of range for %04d-%02d", d, y, mo);
        return 0;
    }
    int h = 0, mi = 0, sec = 0, off = 0;
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') {
            snprintf(why, WHY_MAX, "expected 'T' or ' ' after the date");
            return 0;
        }
        i++;
        h = fixed_digits(s, n, &i, 2);
        mi = -1;
        if (h >= 0 && i < n && s[i] == ':') {
            i++;
            mi = fixed_digits(s, n, &i, 2);
        }
        if (mi < 0) {
            snprintf(why, WHY_MAX, "expected a time HH:MM[:SS[.fff]]");
            return 0;
        }
        if (i < n && s[i] == ':') {
            i++;
            sec = fixed_digits(s, n, &i, 2);
            if (sec < 0) {
                snprintf(why, WHY_MAX, "expected two digits of seconds");
                return 0;
            }
            if (i < n && (s[i] == '.' || s[i] == ',')) { /* fractional seconds: truncated */
                size_t f0 = ++i;
                while (i < n && is_digit((unsigned char)s[i]))
                    i++;
                if (i == f0) {
                    snprintf(why, WHY_MAX, "expected digits of fractional seconds");
                    return 0;
                }
            }
        }
        if (h > 23) {
            snprintf(why, WHY_MAX, "hour %02d out of range 00-23", h);
            return 0;
        }
        if (mi > 59) {
            snprintf(why, WHY_MAX, "minute %02d out of range 00-59", mi);
            return 0;
        }
        if (sec > 60) {
            snprintf(why, WHY_MAX, "second %02d out of range 00-60", sec);
            return 0;
        }
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i++] == '-' ? -1 : 1;
            int oh = fixed_digits(s, n, &i, 2), om = 0;
            if (oh >= 0 && i < n) {
                if (s[i] == ':') i++;
                om = fixed_digits(s, n, &i, 2);
            }
            if (oh < 0 || om < 0 || oh > 23 || om > 59) {
                snprintf(why, WHY_MAX, "bad UTC offset (expected +hh:mm, +hhmm or +hh)");
                return 0;
            }
            off = sign * (oh * 3600 + om * 60);
        }
        if (i != n) {
            snprintf(why, WHY_MAX, "unexpected text after the time");
            return 0;
        }
    }
    *out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return 1;
}

sp_status sp__parse_timestamp(const char *s, size_t len, int64_t *out) {
    char why[WHY_MAX], q[QBUF];
    if (!s && len > 0) return sp__fail(SP_EINVAL, "sp__parse_timestamp: text is NULL");
    if (parse_ts(s ? s : "", len, out, why)) return SP_OK;
    quote_text(q, s ? s : "", len);
    return sp__fail(SP_EBADINPUT, "bad timestamp %s: %s", q, why);
}

/* ---------------------------------------------------------------- the table and its arena */

#define ARENA_FIRST_CHUNK ((size_t)4 << 10)
#define ARENA_CHUNK       ((size_t)1 << 20) /* chunks double from ARENA_FIRST_CHUNK up to this */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap, used;
    char data[];
} arena_chunk;

/* What t->arena points to. */
typedef struct table_priv {
    arena_chunk *chunks;  /* all of them; small values go into the first */
    arena_chunk *pending; /* the chunk of the last arena_reserve() */
    size_t next_chunk;    /* size of the next small-value chunk */
    size_t rows_cap;      /* cells allocated in each column, and entries of t->line */
} table_priv;

/* Room for n bytes that stays put; arena_commit() then keeps the part used. NULL: no memory. */
static char *arena_reserve(sp__table *t, size_t n) {
    table_priv *tp = t->arena;
    arena_chunk *c = tp->chunks;
    if (c && c->cap - c->used >= n) {
        tp->pending = c;
        return c->data + c->used;
    }
    if (tp->next_chunk < ARENA_FIRST_CHUNK) tp->next_chunk = ARENA_FIRST_CHUNK;
    int big = n > ARENA_CHUNK / 4;
    size_t cap = big || n > tp->next_chunk ? n : tp->next_chunk;
    if (!big && tp->next_chunk < ARENA_CHUNK) tp->next_chunk *= 2;
    if (cap > SIZE_MAX - sizeof(arena_chunk)) return NULL;
    arena_chunk *nc = sp__malloc(sizeof(arena_chunk) + cap);
    if (!nc) return NULL;
    nc->cap = cap;
    nc->used = 0;
    if (big && c) { /* a big value gets a chunk of its own; small ones keep filling the first */
        nc->next = c->next;
        c->next = nc;
    } else {
        nc->next = c;
        tp->chunks = nc;
    }
    tp->pending = nc;
    return nc->data;
}

static void arena_commit(sp__table *t, size_t n) {
    table_priv *tp = t->arena;
    tp->pending->used += n;
}

void sp__table_free(sp__table *t) {
    if (!t) return;
    if (t->cols)
        for (size_t i = 0; i < t->n_cols; i++)
            sp__free(t->cols[i].cells);
    sp__free(t->cols);
    sp__free(t->line);
    table_priv *tp = t->arena;
    if (tp) {
        for (arena_chunk *c = tp->chunks, *next; c; c = next) {
            next = c->next;
            sp__free(c);
        }
        sp__free(tp);
    }
    sp__free(t);
}

static sp_status table_new(const char *name, sp__table **out) {
    sp__table *t = sp__calloc(1, sizeof *t);
    if (t) {
        t->arena = sp__calloc(1, sizeof(table_priv));
        t->cols = sp__calloc(SP_MAX_COLUMNS, sizeof *t->cols);
    }
    if (!t || !t->arena || !t->cols) {
        sp__table_free(t);
        return sp__fail(SP_ENOMEM, "%s: out of memory", name);
    }
    *out = t;
    return SP_OK;
}

/* Makes every column (and t->line) hold at least `want` rows. */
static sp_status table_reserve_rows(sp__table *t, const char *name, size_t want) {
    table_priv *tp = t->arena;
    if (want <= tp->rows_cap) return SP_OK;
    if (want > SIZE_MAX / sizeof(sp_value))
        return sp__fail(SP_ENOMEM, "%s: too many rows (%zu)", name, want);
    for (size_t i = 0; i < t->n_cols; i++) {
        sp_value *c = sp__realloc(t->cols[i].cells, want * sizeof(sp_value));
        if (!c) return sp__fail(SP_ENOMEM, "%s: out of memory for %zu rows", name, want);
        t->cols[i].cells = c;
    }
    uint64_t *l = sp__realloc(t->line, want * sizeof(uint64_t));
    if (!l) return sp__fail(SP_ENOMEM, "%s: out of memory for %zu rows", name, want);
    t->line = l;
    tp->rows_cap = want;
    return SP_OK;
}

/* Gives back most of what an over-estimated row count left unused. Best effort. */
static void table_shrink_rows(sp__table *t) {
    table_priv *tp = t->arena;
    size_t n = (size_t)t->n_rows;
    if (tp->rows_cap <= n + n / 4 + 64) return;
    size_t keep = n ? n : 1;
    for (size_t i = 0; i < t->n_cols; i++) {
        sp_value *c = sp__realloc(t->cols[i].cells, keep * sizeof(sp_value));
        if (!c) return;
        t->cols[i].cells = c;
    }
    uint64_t *l = sp__realloc(t->line, keep * sizeof(uint64_t));
    if (l) {
        t->line = l;
        tp->rows_cap = keep;
    }
}

static void set_null(sp_value *v) {
    v->is_null = 1;
    v->v.i = 0;
}

/* ---------------------------------------------------------------- parser state, schema, errors */

typedef struct schema_entry {
    char name[SP_MAX_NAME]; /* sanitized */
    int kind;
} schema_entry;

typedef struct parser {
    const char *name;
    const sp__table_opts *opts;
    sp__table *t;
    schema_entry *schema;
    size_t n_schema;
    int kind[SP_MAX_COLUMNS]; /* KIND_* of each column */
    sp__buf scratch;          /* CSV: a copy of a value to parse */
    /* the current line's first error */
    int bad;
    uint64_t bad_line, bad_col; /* bad_col 0: no column */
    char what[768];
    /* CSV scanner */
    const char *p, *end, *line_start;
    uint64_t line;
    /* JSONL: each column's key (in the arena) and an open-addressing hash from key to column */
    const char *key[SP_MAX_COLUMNS];
    size_t key_len[SP_MAX_COLUMNS];
    uint16_t slot[4 * SP_MAX_COLUMNS]; /* column + 1; 0 = empty */
} parser;

static void set_bad(parser *ps, uint64_t line, uint64_t col, const char *fmt, ...) SP__PRINTF(4, 5);
static void set_bad_at(parser *ps, uint64_t line, const char *line_start, const char *at,
                       const char *fmt, ...) SP__PRINTF(5, 6);

/* Records the current line's error at `col` (0: none); only the first one counts. */
static void set_bad(parser *ps, uint64_t line, uint64_t col, const char *fmt, ...) {
    if (ps->bad) return;
    ps->bad = 1;
    ps->bad_line = line;
    ps->bad_col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->what, sizeof ps->what, fmt, ap);
    va_end(ap);
}

/* Same, at the column of `at` in the line that starts at line_start. The column is counted only
 * for the first error, so a line full of errors stays linear. */
static void set_bad_at(parser *ps, uint64_t line, const char *line_start, const char *at,
                       const char *fmt, ...) {
    if (ps->bad) return;
    ps->bad = 1;
    ps->bad_line = line;
    ps->bad_col = column_of(line_start, at);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->what, sizeof ps->what, fmt, ap);
    va_end(ap);
}

/* The current line is bad: fail the parse, or with skip_errors report it and go on. */
static sp_status report_bad_line(parser *ps) {
    ps->bad = 0;
    if (ps->opts->skip_errors) {
        char where[4200];
        snprintf(where, sizeof where, "%s:%" PRIu64, ps->name, ps->bad_line);
        if (ps->opts->on_skip) ps->opts->on_skip(ps->opts->user, where, ps->what);
        ps->t->skipped++;
        return SP_OK;
    }
    if (ps->bad_col)
        return sp__fail(SP_EBADINPUT, "%s:%" PRIu64 ":%" PRIu64 ": %s", ps->name, ps->bad_line,
                        ps->bad_col, ps->what);
    return sp__fail(SP_EBADINPUT, "%s:%" PRIu64 ": %s", ps->name, ps->bad_line, ps->what);
}

static sp_status out_of_memory(const parser *ps) {
    return sp__fail(SP_ENOMEM, "%s: out of memory", ps->name);
}

static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

/* Parses "name:type,..." into ps->schema. */
static sp_status schema_parse(parser *ps, const char *schema) {
    if (!schema) return SP_OK;
    const char *s = schema, *end = s + strlen(s);
    trim(&s, &end);
    if (s == end) return SP_OK;
    size_t n = 1;
    for (const char *p = s; p < end; p++)
        n += *p == ',';
    ps->schema = sp__calloc(n, sizeof *ps->schema);
    if (!ps->schema) return out_of_memory(ps);
    static const char *const types[] = {"int64", "float64", "string", "timestamp"};
    static const int kinds[] = {KIND_INT64, KIND_FLOAT64, KIND_STRING, KIND_TIMESTAMP};
    for (const char *p = s; p <= end;) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        if (!e) e = end;
        const char *es = p, *ee = e;
        trim(&es, &ee);
        char q[QBUF];
        quote_text(q, es, (size_t)(ee - es));
        const char *colon = memchr(es, ':', (size_t)(ee - es));
        if (!colon)
            return sp__fail(SP_EINVAL,
                            "schema: entry %s is not name:type (types: int64, float64, "
                            "string, timestamp)",
                            q);
        const char *ns = es, *ne = colon, *ts = colon + 1, *te = ee;
        trim(&ns, &ne);
        trim(&ts, &te);
        if (ns == ne) return sp__fail(SP_EINVAL, "schema: entry %s has no column name", q);
        schema_entry *se = &ps->schema[ps->n_schema];
        sanitize_name(ns, (size_t)(ne - ns), 0, se->name);
        se->kind = KIND_INFER;
        for (size_t k = 0; k < 4; k++)
            if ((size_t)(te - ts) == strlen(types[k]) && !memcmp(ts, types[k], strlen(types[k])))
                se->kind = kinds[k];
        if (se->kind == KIND_INFER) {
            char tq[QBUF];
            quote_text(tq, ts, (size_t)(te - ts));
            return sp__fail(SP_EINVAL,
                            "schema: entry %s: unknown type %s (expected int64, "
                            "float64, string or timestamp)",
                            q, tq);
        }
        for (size_t k = 0; k < ps->n_schema; k++)
            if (!strcmp(ps->schema[k].name, se->name))
                return sp__fail(SP_EINVAL, "schema: column \"%s\" is given twice", se->name);
        ps->n_schema++;
        p = e + 1;
    }
    return SP_OK;
}

static int schema_kind(const parser *ps, const char *name) {
    for (size_t k = 0; k < ps->n_schema; k++)
        if (!strcmp(ps->schema[k].name, name)) return ps->schema[k].kind;
    return KIND_INFER;
}

/* Every schema name must be a column of the table. */
static sp_status schema_check_names(const parser *ps) {
    const sp__table *t = ps->t;
    for (size_t k = 0; k < ps->n_schema; k++) {
        size_t i = 0;
        while (i < t->n_cols && strcmp(t->cols[i].name, ps->schema[k].name))
            i++;
        if (i < t->n_cols) continue;
        char list[512];
        size_t o = 0;
        list[0] = '\0';
        for (i = 0; i < t->n_cols && o + SP_MAX_NAME + 8 < sizeof list; i++)
            o +=
                (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", t->cols[i].name);
        if (i < t->n_cols) snprintf(list + o, sizeof list - o, ", ...");
        return sp__fail(SP_EINVAL, "schema: no column \"%s\" in %s (columns: %s)",
                        ps->schema[k].name, ps->name, t->n_cols ? list : "none");
    }
    return SP_OK;
}

static void set_column_type(sp__table_col *c, int kind) {
    c->is_timestamp = kind == KIND_TIMESTAMP;
    c->type = kind == KIND_INT64 || kind == KIND_TIMESTAMP ? SP_TYPE_INT64
              : kind == KIND_FLOAT64                       ? SP_TYPE_FLOAT64
                                                           : SP_TYPE_STRING;
}

static const sp__table_opts default_opts;

/* ---------------------------------------------------------------- CSV */

/* One field as it appears in the input. */
typedef struct csv_field {
    const char *text; /* inside the quotes for a quoted field */
    size_t len;
    int escaped; /* holds "" pairs */
    const char *start, *line_start;
    uint64_t line;
} csv_field;

/* At p: a field ends here (comma, LF, CRLF, or a CR that ends the input). */
static int csv_at_delim(const char *p, const char *end) {
    return *p == ',' || *p == '\n' || (*p == '\r' && (p + 1 == end || p[1] == '\n'));
}

/* Scans unquoted field text from p; returns where it ends. */
static const char *csv_scan_plain(parser *ps, const char *p) {
    const char *end = ps->end;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x80) {
            if (c == ',' || c == '\n' || (c == '\r' && (p + 1 == end || p[1] == '\n'))) break;
            p++;
            continue;
        }
        size_t n = utf8_len(p, end);
        if (!n) {
            set_bad_at(ps, ps->line, ps->line_start, p, "invalid UTF-8 (byte 0x%02x)", c);
            n = 1;
        }
        p += n;
    }
    return p;
}

/* Scans the field at ps->p and leaves ps->p at its delimiter (or the end of input). */
static void csv_scan_field(parser *ps, csv_field *f) {
    const char *p = ps->p, *end = ps->end;
    f->start = p;
    f->line_start = ps->line_start;
    f->line = ps->line;
    f->escaped = 0;
    if (p == end || *p != '"') {
        const char *q = csv_scan_plain(ps, p);
        f->text = p;
        f->len = (size_t)(q - p);
        ps->p = q;
        return;
    }
    const char *q = p + 1;
    for (;;) {
        while (q < end && *q != '"' && *q != '\n' && (unsigned char)*q < 0x80)
            q++;
        if (q == end) {
            set_bad_at(ps, f->line, f->line_start, p, "unterminated quoted field");
            f->text = p + 1;
            f->len = (size_t)(end - f->text);
            ps->p = end;
            return;
        }
        if (*q == '"') {
            if (q + 1 < end && q[1] == '"') {
                f->escaped = 1;
                q += 2;
                continue;
            }
            break;
        }
        if (*q == '\n') {
            ps->line++;
            ps->line_start = ++q;
            continue;
        }
        size_t n = utf8_len(q, end);
        if (!n) {
            set_bad_at(ps, ps->line, ps->line_start, q, "invalid UTF-8 (byte 0x%02x)",
                       (unsigned char)*q);
            n = 1;
        }
        q += n;
    }
    f->text = p + 1;
    f->len = (size_t)(q - f->text);
    q++;
    if (q < end && !csv_at_delim(q, end)) {
        char c[QBUF];
        quote_text(c, q, utf8_len(q, end) ? utf8_len(q, end) : 1);
        set_bad_at(ps, ps->line, ps->line_start, q,
                   "unexpected %s after a closing quote (a quote inside a quoted field is written "
                   "\"\")",
                   c);
        q = csv_scan_plain(ps, q); /* the rest of the field belongs to the bad line */
    }
    ps->p = q;
}

/* Passes the line end at ps->p, if any. */
static void csv_skip_eol(parser *ps) {
    if (ps->p < ps->end && *ps->p == '\r') ps->p++;
    if (ps->p < ps->end && *ps->p == '\n') {
        ps->p++;
        ps->line++;
        ps->line_start = ps->p;
    }
}

/* Scans the record at ps->p, calling `field` for each field, and passes its line end.
 * Returns the number of fields, or a negative status when `field` fails. */
typedef sp_status (*csv_field_fn)(parser *ps, size_t i, const csv_field *f);

static int64_t csv_record(parser *ps, csv_field_fn field) {
    int64_t n = 0;
    for (;;) {
        csv_field f;
        csv_scan_field(ps, &f);
        sp_status rc = field(ps, (size_t)n, &f);
        if (rc < 0) return rc;
        n++;
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        csv_skip_eol(ps);
        return n;
    }
}

static sp_status csv_header_field(parser *ps, size_t i, const csv_field *f) {
    sp__table *t = ps->t;
    if (ps->bad || i >= SP_MAX_COLUMNS) return SP_OK;
    char *name = t->cols[i].name;
    sanitize_name(f->text, f->len, f->escaped, name);
    if (!name[0]) {
        set_bad_at(ps, f->line, f->line_start, f->start,
                   "column %zu has an empty name in the header row", i + 1);
        return SP_OK;
    }
    for (size_t k = 0; k < i; k++)
        if (!strcmp(t->cols[k].name, name)) {
            set_bad_at(ps, f->line, f->line_start, f->start,
                       "duplicate column name \"%s\" (columns %zu and %zu)", name, k + 1, i + 1);
            return SP_OK;
        }
    return SP_OK;
}

static sp_status csv_data_field(parser *ps, size_t j, const csv_field *f) {
    sp__table *t = ps->t;
    if (ps->bad || j >= t->n_cols) return SP_OK;
    sp_value *cell = &t->cols[j].cells[t->n_rows];
    if (f->len == 0) {
        set_null(cell);
        return SP_OK;
    }
    /* Text goes into the arena; a value the schema types is parsed from a scratch copy. */
    int kind = ps->kind[j];
    char *dst;
    if (kind == KIND_INFER || kind == KIND_STRING) {
        dst = arena_reserve(t, f->len + 1);
    } else {
        dst = sp__buf_reserve(&ps->scratch, f->len + 1) < 0 ? NULL : (char *)ps->scratch.data;
    }
    if (!dst) return out_of_memory(ps);
    size_t m = f->len;
    if (f->escaped) {
        m = 0;
        for (size_t k = 0; k < f->len; k++) {
            dst[m++] = f->text[k];
            if (f->text[k] == '"') k++; /* "" is one quote */
        }
    } else {
        memcpy(dst, f->text, m);
    }
    dst[m] = '\0';
    cell->is_null = 0;
    char why[WHY_MAX] = "";
    switch (kind) {
    case KIND_INT64:
        if (parse_i64(dst, m, &cell->v.i)) return SP_OK;
        break;
    case KIND_FLOAT64:
        if (parse_f64(dst, m, &cell->v.f)) return SP_OK;
        break;
    case KIND_TIMESTAMP:
        if (parse_ts(dst, m, &cell->v.i, why)) return SP_OK;
        break;
    default:
        if (m > UINT32_MAX) {
            set_bad_at(ps, f->line, f->line_start, f->start,
                       "column \"%s\": value of %zu bytes is too long (at most 4 GiB)",
                       t->cols[j].name, m);
            return SP_OK;
        }
        arena_commit(t, m + 1);
        cell->v.str.s = dst;
        cell->v.str.len = (uint32_t)m;
        return SP_OK;
    }
    char q[QBUF];
    quote_text(q, dst, m);
    set_bad_at(ps, f->line, f->line_start, f->start, "column \"%s\" (%s): cannot parse %s%s%s",
               t->cols[j].name, kind_name(kind), q, why[0] ? ": " : "", why);
    return SP_OK;
}

/* Infers the type of each column the schema left open and converts its cells from text. */
static sp_status csv_finish(parser *ps) {
    sp__table *t = ps->t;
    size_t n = (size_t)t->n_rows;
    union num {
        int64_t i;
        double f;
    } *tmp = sp__malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) return out_of_memory(ps);
    for (size_t j = 0; j < t->n_cols; j++) {
        sp__table_col *c = &t->cols[j];
        set_column_type(c, ps->kind[j]);
        if (ps->kind[j] != KIND_INFER) continue;
        int state = 0, any = 0; /* 0: all integers so far; 1: all numbers; 2: text */
        for (size_t r = 0; r < n && state < 2; r++) {
            const sp_value *v = &c->cells[r];
            if (v->is_null) continue;
            any = 1;
            if (state == 0) {
                if (parse_i64(v->v.str.s, v->v.str.len, &tmp[r].i)) continue;
                for (size_t k = 0; k < r; k++)
                    if (!c->cells[k].is_null) tmp[k].f = (double)tmp[k].i;
                state = 1;
            }
            if (!parse_f64(v->v.str.s, v->v.str.len, &tmp[r].f)) state = 2;
        }
        if (!any || state == 2) continue; /* string */
        c->type = state == 0 ? SP_TYPE_INT64 : SP_TYPE_FLOAT64;
        for (size_t r = 0; r < n; r++) {
            if (c->cells[r].is_null) continue;
            if (state == 0)
                c->cells[r].v.i = tmp[r].i;
            else
                c->cells[r].v.f = tmp[r].f;
        }
    }
    sp__free(tmp);
    return SP_OK;
}

static sp_status csv_parse(parser *ps, const char *buf, size_t len) {
    sp__table *t = ps->t;
    ps->p = buf;
    ps->end = buf + len;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) ps->p += 3;
    ps->line_start = ps->p;
    ps->line = 1;

    while (ps->p < ps->end && (*ps->p == '\n' || (*ps->p == '\r' && csv_at_delim(ps->p, ps->end))))
        csv_skip_eol(ps);
    if (ps->p == ps->end)
        return sp__fail(SP_EBADINPUT, "%s:%" PRIu64 ": no header row (the input is empty)",
                        ps->name, ps->line);
    uint64_t header_line = ps->line;
    int64_t nf = csv_record(ps, csv_header_field);
    if (nf < 0) return (sp_status)nf;
    if (!ps->bad && nf > SP_MAX_COLUMNS)
        set_bad(ps, header_line, 0, "the header row has %" PRId64 " columns (at most %d)", nf,
                SP_MAX_COLUMNS);
    if (ps->bad) {
        ps->opts = &default_opts; /* a bad header cannot be skipped */
        return report_bad_line(ps);
    }
    t->n_cols = (size_t)nf;
    SP_TRY(schema_check_names(ps));
    for (size_t j = 0; j < t->n_cols; j++)
        ps->kind[j] = schema_kind(ps, t->cols[j].name);

    /* Each row but the last ends with a LF and holds n_cols - 1 commas and a line end. */
    size_t rest = (size_t)(ps->end - ps->p), lf = 0;
    for (const char *q = ps->p; (q = memchr(q, '\n', (size_t)(ps->end - q))) != NULL; q++)
        lf++;
    size_t bound = rest / t->n_cols + 1;
    SP_TRY(table_reserve_rows(t, ps->name, (lf + 1 < bound ? lf + 1 : bound)));

    for (;;) {
        while (ps->p < ps->end &&
               (*ps->p == '\n' || (*ps->p == '\r' && csv_at_delim(ps->p, ps->end))))
            csv_skip_eol(ps); /* blank lines */
        if (ps->p == ps->end) break;
        table_priv *tp = t->arena;
        if (t->n_rows == tp->rows_cap) SP_TRY(table_reserve_rows(t, ps->name, tp->rows_cap * 2));
        uint64_t line = ps->line;
        nf = csv_record(ps, csv_data_field);
        if (nf < 0) return (sp_status)nf;
        if ((size_t)nf != t->n_cols)
            set_bad(ps, line, 0, "expected %zu fields, found %" PRId64, t->n_cols, nf);
        if (ps->bad) {
            SP_TRY(report_bad_line(ps));
            continue;
        }
        t->line[t->n_rows++] = line;
    }
    SP_TRY(csv_finish(ps));
    table_shrink_rows(t);
    return SP_OK;
}

/* ---------------------------------------------------------------- JSONL */

enum { TAG_STR = 0, TAG_NULL = 1, TAG_INT = 2, TAG_BOOL = 3, TAG_REAL = 4 };

static uint32_t key_hash(const char *k, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

#define SLOT_MASK (4 * SP_MAX_COLUMNS - 1)

static int jl_find(const parser *ps, const char *k, size_t n) {
    for (uint32_t h = key_hash(k, n) & SLOT_MASK;; h = (h + 1) & SLOT_MASK) {
        unsigned s = ps->slot[h];
        if (!s) return -1;
        if (ps->key_len[s - 1] == n && !memcmp(ps->key[s - 1], k, n)) return (int)s - 1;
    }
}

static void jl_insert(parser *ps, size_t col) {
    uint32_t h = key_hash(ps->key[col], ps->key_len[col]) & SLOT_MASK;
    while (ps->slot[h])
        h = (h + 1) & SLOT_MASK;
    ps->slot[h] = (uint16_t)(col + 1);
}

/* Adds the column for key k (first seen on this line); sets *col, or -1 after set_bad(). */
static sp_status jl_add_column(parser *ps, const char *k, size_t n, uint64_t line, int *col) {
    sp__table *t = ps->t;
    char kq[QBUF], name[SP_MAX_NAME];
    *col = -1;
    quote_text(kq, k, n);
    if (t->n_cols == SP_MAX_COLUMNS) {
        set_bad(ps, line, 0, "key %s would be column %d; at most %d columns", kq,
                SP_MAX_COLUMNS + 1, SP_MAX_COLUMNS);
        return SP_OK;
    }
    sanitize_name(k, n, 0, name);
    if (!name[0]) {
        set_bad(ps, line, 0, "empty key (keys name the columns)");
        return SP_OK;
    }
    for (size_t i = 0; i < t->n_cols; i++)
        if (!strcmp(t->cols[i].name, name)) {
            char oq[QBUF];
            quote_text(oq, ps->key[i], ps->key_len[i]);
            set_bad(ps, line, 0, "keys %s and %s both make column \"%s\"", oq, kq, name);
            return SP_OK;
        }
    table_priv *tp = t->arena;
    char *kc = arena_reserve(t, n + 1);
    sp_value *cells = kc ? sp__malloc(tp->rows_cap * sizeof(sp_value)) : NULL;
    if (!cells) return out_of_memory(ps);
    memcpy(kc, k, n);
    kc[n] = '\0';
    arena_commit(t, n + 1);
    for (size_t r = 0; r <= t->n_rows; r++)
        set_null(&cells[r]);
    sp__table_col *c = &t->cols[t->n_cols];
    memcpy(c->name, name, sizeof name);
    c->cells = cells;
    c->type = SP_TYPE_STRING;
    c->is_timestamp = 0;
    ps->kind[t->n_cols] = schema_kind(ps, name);
    ps->key[t->n_cols] = kc;
    ps->key_len[t->n_cols] = n;
    jl_insert(ps, t->n_cols);
    *col = (int)t->n_cols++;
    return SP_OK;
}

/* Drops the columns that a bad line added. */
static void jl_rollback(parser *ps, size_t n_cols) {
    sp__table *t = ps->t;
    if (t->n_cols == n_cols) return;
    while (t->n_cols > n_cols) {
        sp__table_col *c = &t->cols[--t->n_cols];
        sp__free(c->cells);
        memset(c, 0, sizeof *c);
    }
    memset(ps->slot, 0, sizeof ps->slot);
    for (size_t i = 0; i < t->n_cols; i++)
        jl_insert(ps, i);
}

/* Copies n bytes into the arena as a string cell. */
static sp_status jl_store_text(parser *ps, const char *s, size_t n, sp_value *cell, uint64_t line,
                               size_t col) {
    if (n > UINT32_MAX) {
        set_bad(ps, line, 0, "column \"%s\": value of %zu bytes is too long (at most 4 GiB)",
                ps->t->cols[col].name, n);
        return SP_OK;
    }
    char *dst = arena_reserve(ps->t, n + 1);
    if (!dst) return out_of_memory(ps);
    memcpy(dst, s, n);
    dst[n] = '\0';
    arena_commit(ps->t, n + 1);
    cell->is_null = TAG_STR;
    cell->v.str.s = dst;
    cell->v.str.len = (uint32_t)n;
    return SP_OK;
}

/* A nested array or object as its compact JSON text. */
static sp_status jl_store_json(parser *ps, const json_t *v, sp_value *cell, uint64_t line,
                               size_t col) {
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
    if (n == 0) return out_of_memory(ps);
    if (n > UINT32_MAX) return jl_store_text(ps, NULL, n, cell, line, col); /* reports it */
    char *dst = arena_reserve(ps->t, n + 1);
    if (!dst) return out_of_memory(ps);
    if (json_dumpb(v, dst, n, JSON_COMPACT) != n) return out_of_memory(ps);
    dst[n] = '\0';
    arena_commit(ps->t, n + 1);
    cell->is_null = TAG_STR;
    cell->v.str.s = dst;
    cell->v.str.len = (uint32_t)n;
    return SP_OK;
}

/* A number or boolean as text: 12, 1.5, true. */
static sp_status jl_store_scalar_text(parser *ps, int tag, int64_t i, double f, sp_value *cell,
                                      uint64_t line, size_t col) {
    char buf[64];
    size_t n;
    if (tag == TAG_BOOL)
        n = (size_t)snprintf(buf, sizeof buf, "%s", i ? "true" : "false");
    else if (tag == TAG_INT)
        n = (size_t)snprintf(buf, sizeof buf, "%" PRId64, i);
    else
        n = format_real(buf, sizeof buf, f);
    return jl_store_text(ps, buf, n, cell, line, col);
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* Stores value v of column `col` in this line's cell: tagged for an inferred column, converted
 * for a column the schema types. */
static sp_status jl_set(parser *ps, size_t col, const json_t *v, uint64_t line) {
    sp__table *t = ps->t;
    sp_value *cell = &t->cols[col].cells[t->n_rows];
    int kind = ps->kind[col];
    if (json_is_null(v)) {
        set_null(cell);
        return SP_OK;
    }
    int tag = json_is_boolean(v)   ? TAG_BOOL
              : json_is_integer(v) ? TAG_INT
              : json_is_real(v)    ? TAG_REAL
                                   : TAG_STR;
    int64_t i = tag == TAG_BOOL ? json_is_true(v) : tag == TAG_INT ? json_integer_value(v) : 0;
    double f = tag == TAG_REAL ? json_real_value(v) : (double)i;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t sn = s ? json_string_length(v) : 0;
    if (kind == KIND_INFER || kind == KIND_STRING) {
        if (s) return jl_store_text(ps, s, sn, cell, line, col);
        if (tag == TAG_STR) return jl_store_json(ps, v, cell, line, col);
        if (kind == KIND_STRING) return jl_store_scalar_text(ps, tag, i, f, cell, line, col);
        cell->is_null = tag;
        if (tag == TAG_REAL)
            cell->v.f = f;
        else
            cell->v.i = i;
        return SP_OK;
    }
    char why[WHY_MAX] = "", q[QBUF];
    cell->is_null = 0;
    if (kind == KIND_FLOAT64) {
        if (tag != TAG_STR) {
            cell->v.f = f;
            return SP_OK;
        }
        if (s && parse_f64(s, sn, &cell->v.f)) return SP_OK;
    } else if (kind == KIND_INT64 || kind == KIND_TIMESTAMP) {
        if (tag == TAG_INT || (tag == TAG_BOOL && kind == KIND_INT64)) {
            cell->v.i = i;
            return SP_OK;
        }
        if (tag == TAG_REAL && kind == KIND_TIMESTAMP) f = floor(f);
        if (tag == TAG_REAL && f == floor(f) && f >= -0x1p63 && f < 0x1p63) {
            cell->v.i = (int64_t)f;
            return SP_OK;
        }
        if (s &&
            (kind == KIND_INT64 ? parse_i64(s, sn, &cell->v.i) : parse_ts(s, sn, &cell->v.i, why)))
            return SP_OK;
    }
    if (s) {
        quote_text(q, s, sn);
        set_bad(ps, line, 0, "column \"%s\" (%s): cannot parse %s%s%s", t->cols[col].name,
                kind_name(kind), q, why[0] ? ": " : "", why);
    } else if (tag == TAG_REAL) {
        format_real(q, sizeof q, f);
        set_bad(ps, line, 0, "column \"%s\" (%s): cannot convert %s", t->cols[col].name,
                kind_name(kind), q);
    } else {
        set_bad(ps, line, 0, "column \"%s\" (%s): cannot convert %s", t->cols[col].name,
                kind_name(kind), json_kind(v));
    }
    return SP_OK;
}

static sp_status jl_line(parser *ps, const char *s, size_t n, uint64_t line) {
    sp__table *t = ps->t;
    json_error_t jerr;
    json_t *obj = json_loadb(s, n, 0, &jerr);
    if (!obj) {
        if (json_error_code(&jerr) == json_error_out_of_memory) return out_of_memory(ps);
        set_bad(ps, line, jerr.column > 0 ? (uint64_t)jerr.column : 0, "%s", jerr.text);
        return report_bad_line(ps);
    }
    if (!json_is_object(obj)) {
        set_bad(ps, line, 0, "expected a JSON object, found %s", json_kind(obj));
        json_decref(obj);
        return report_bad_line(ps);
    }
    table_priv *tp = t->arena;
    sp_status rc = SP_OK;
    if (t->n_rows == tp->rows_cap)
        rc = table_reserve_rows(t, ps->name, tp->rows_cap ? tp->rows_cap * 2 : 256);
    if (rc < 0) {
        json_decref(obj);
        return rc;
    }
    size_t n_cols0 = t->n_cols;
    for (size_t j = 0; j < t->n_cols; j++)
        set_null(&t->cols[j].cells[t->n_rows]);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (rc < 0 || ps->bad) break;
        size_t kn = strlen(key);
        int col = jl_find(ps, key, kn);
        if (col < 0) rc = jl_add_column(ps, key, kn, line, &col);
        if (rc >= 0 && col >= 0) rc = jl_set(ps, (size_t)col, v, line);
    }
    json_decref(obj);
    if (rc < 0) return rc;
    if (ps->bad) {
        jl_rollback(ps, n_cols0);
        return report_bad_line(ps);
    }
    t->line[t->n_rows++] = line;
    return SP_OK;
}

/* Infers each open column's type from its tags and converts its cells. */
static sp_status jl_finish(parser *ps) {
    sp__table *t = ps->t;
    size_t n = (size_t)t->n_rows;
    for (size_t j = 0; j < t->n_cols; j++) {
        sp__table_col *c = &t->cols[j];
        set_column_type(c, ps->kind[j]);
        if (ps->kind[j] != KIND_INFER) continue;
        int has_int = 0, has_real = 0, has_str = 0;
        for (size_t r = 0; r < n; r++) {
            int tag = c->cells[r].is_null;
            has_int |= tag == TAG_INT || tag == TAG_BOOL;
            has_real |= tag == TAG_REAL;
            has_str |= tag == TAG_STR;
        }
        c->type = has_str    ? SP_TYPE_STRING
                  : has_real ? SP_TYPE_FLOAT64
                  : has_int  ? SP_TYPE_INT64
                             : SP_TYPE_STRING;
        for (size_t r = 0; r < n; r++) {
            sp_value *v = &c->cells[r];
            int tag = v->is_null;
            if (tag == TAG_NULL || tag == TAG_STR) continue;
            if (has_str) {
                SP_TRY(jl_store_scalar_text(ps, tag, v->v.i, v->v.f, v, t->line[r], j));
                if (ps->bad) return sp__fail(SP_EINTERNAL, "%s: %s", ps->name, ps->what);
            } else if (has_real && tag != TAG_REAL) {
                v->v.f = (double)v->v.i;
            }
            v->is_null = 0;
        }
    }
    return SP_OK;
}

static sp_status jl_parse(parser *ps, const char *buf, size_t len) {
    const char *p = buf, *end = buf + len;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) p += 3;
    for (uint64_t line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *e = nl ? nl : end, *b = s;
        p = nl ? nl + 1 : end;
        while (b < e && (*b == ' ' || *b == '\t' || *b == '\r'))
            b++;
        if (b == e) continue; /* blank line */
        SP_TRY(jl_line(ps, s, (size_t)(e - s), line));
    }
    SP_TRY(schema_check_names(ps));
    SP_TRY(jl_finish(ps));
    table_shrink_rows(ps->t);
    return SP_OK;
}

/* ---------------------------------------------------------------- entry points */

typedef sp_status (*parse_fn)(parser *ps, const char *buf, size_t len);

static sp_status parse_common(const char *name, const char *buf, size_t len,
                              const sp__table_opts *opts, sp__table **out, parse_fn fn) {
    if (!out) return sp__fail(SP_EINVAL, "sp__table_parse: out is NULL");
    *out = NULL;
    if (!name) name = "<input>";
    if (!buf && len > 0) return sp__fail(SP_EINVAL, "%s: buf is NULL", name);
    parser *ps = sp__calloc(1, sizeof *ps);
    if (!ps) return sp__fail(SP_ENOMEM, "%s: out of memory", name);
    ps->name = name;
    ps->opts = opts ? opts : &default_opts;
    sp_status rc = schema_parse(ps, ps->opts->schema);
    if (rc >= 0) rc = table_new(name, &ps->t);
    if (rc >= 0) rc = fn(ps, buf ? buf : "", len);
    if (rc < 0) {
        sp__table_free(ps->t);
    } else {
        *out = ps->t;
        rc = SP_OK;
    }
    sp__free(ps->schema);
    sp__buf_free(&ps->scratch);
    sp__free(ps);
    return rc;
}

sp_status sp__table_parse_csv(const char *name, const char *buf, size_t len,
                              const sp__table_opts *opts, sp__table **out) {
    return parse_common(name, buf, len, opts, out, csv_parse);
}

sp_status sp__table_parse_jsonl(const char *name, const char *buf, size_t len,
                                const sp__table_opts *opts, sp__table **out) {
    return parse_common(name, buf, len, opts, out, jl_parse);
}

static sp_status read_common(const char *path, const sp__table_opts *opts, sp__table **out,
                             parse_fn fn) {
    if (!out) return sp__fail(SP_EINVAL, "sp__table_read: out is NULL");
    *out = NULL;
    if (!path) return sp__fail(SP_EINVAL, "sp__table_read: path is NULL");
    uint8_t *data;
    size_t len;
    SP_TRY(sp__read_file(path, &data, &len));
    sp_status rc = parse_common(path, (const char *)data, len, opts, out, fn);
    sp__free(data);
    return rc;
}

sp_status sp__table_read_csv(const char *path, const sp__table_opts *opts, sp__table **out) {
    return read_common(path, opts, out, csv_parse);
}

sp_status sp__table_read_jsonl(const char *path, const sp__table_opts *opts, sp__table **out) {
    return read_common(path, opts, out, jl_parse);
}
