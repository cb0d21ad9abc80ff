/* ingest_table_api.c — the public read-only table (sp_table_* in softpipe/ingest.h): a thin owner
 * of the sp__table that ingest_table.c parses from a CSV or JSONL file, with lookups by column name
 * and a float64 column copy for tools such as `softpipe eval --csv preds.csv`.
 *
 * Column names in the table are sanitized to [A-Za-z0-9_] by ingest_table.c; sp_table_column_index
 * applies the same rewrite (sanitize_name below repeats ingest_table.c's, which is file-local
 * there) so a caller may also use the name as the file spells it. */
#include "ingest_table.h"

#include "core_internal.h"
#include "softpipe/ingest.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sp_table {
    sp__table *t;
    char *path;
};

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

sp_status sp_table_read(const char *path, sp_table **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_table_read: out is NULL");
    *out = NULL;
    if (!path) return sp__fail(SP_EINVAL, "sp_table_read: path is NULL");
    sp_table *tab = sp__calloc(1, sizeof *tab);
    char *p = sp__strdup(path);
    if (!tab || !p) {
        sp__free(tab);
        sp__free(p);
        return sp__fail(SP_ENOMEM, "%s: out of memory", path);
    }
    tab->path = p;
    sp_status rc = ends_with(path, ".jsonl") || ends_with(path, ".ndjson")
                       ? sp__table_read_jsonl(path, NULL, &tab->t)
                       : sp__table_read_csv(path, NULL, &tab->t);
    if (rc < 0) {
        sp_table_close(tab);
        return rc;
    }
    *out = tab;
    return SP_OK;
}

uint64_t sp_table_n_rows(const sp_table *t) {
    return t ? t->t->n_rows : 0;
}

size_t sp_table_n_columns(const sp_table *t) {
    return t ? t->t->n_cols : 0;
}

const char *sp_table_column_name(const sp_table *t, size_t col) {
    return t && col < t->t->n_cols ? t->t->cols[col].name : NULL;
}

/* Same rewrite as ingest_table.c's sanitize_name() for an unescaped name: any character outside
 * [A-Za-z0-9_] (a whole UTF-8 sequence counts as one) becomes '_', a leading digit gets a '_' in
 * front, and the result is cut to SP_MAX_NAME - 1 characters. */
static void sanitize_name(const char *s, char out[SP_MAX_NAME]) {
    size_t o = 0, n = strlen(s);
    if (n > 0 && s[0] >= '0' && s[0] <= '9') out[o++] = '_';
    for (size_t i = 0; i < n && o < SP_MAX_NAME - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        int keep =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        out[o++] = keep ? (char)c : '_';
        if (c >= 0xC0)
            while (i + 1 < n && ((unsigned char)s[i + 1] & 0xC0) == 0x80)
                i++;
    }
    out[o] = '\0';
}

int sp_table_column_index(const sp_table *t, const char *name) {
    if (!t || !name) return -1;
    const sp__table *tt = t->t;
    for (size_t c = 0; c < tt->n_cols; c++)
        if (!strcmp(tt->cols[c].name, name)) return (int)c;
    char s[SP_MAX_NAME];
    sanitize_name(name, s);
    if (!s[0]) return -1;
    for (size_t c = 0; c < tt->n_cols; c++)
        if (!strcmp(tt->cols[c].name, s)) return (int)c;
    return -1;
}

/* Whether the NUL-terminated s[0, n) reads as a number the way the table parser infers one: a
 * decimal literal (no hex, no spaces) or an optionally signed inf, infinity or nan. */
static int is_number(const char *s, size_t n) {
    size_t i = n > 0 && (s[0] == '+' || s[0] == '-');
    static const char *const words[] = {"inf", "infinity", "nan"};
    for (size_t k = 0; k < 3; k++)
        if (n - i == strlen(words[k]) && !strncasecmp(s + i, words[k], n - i)) return 1;
    int digits = 0;
    for (size_t k = i; k < n; k++) {
        char c = s[k];
        if (c >= '0' && c <= '9')
            digits = 1;
        else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-')
            return 0;
    }
    if (!digits) return 0;
    char *end;
    (void)strtod(s, &end);
    return end == s + n;
}

/* Writes s[0, n) into out[cap] between double quotes, printable ASCII only, cut with "...". */
static void quote_value(char *out, size_t cap, const char *s, size_t n) {
    size_t o = 0, shown = 40;
    out[o++] = '"';
    for (size_t i = 0; i < n && i < shown && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o++] = '"';
    if (n > shown && o + 4 <= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

sp_status sp_table_column_f64(const sp_table *t, size_t col, double *dst, uint64_t cap) {
    if (!t) return sp__fail(SP_EINVAL, "sp_table_column_f64: t is NULL");
    const sp__table *tt = t->t;
    if (col >= tt->n_cols)
        return sp__fail(SP_EINVAL, "%s: column index %zu is out of range (the table has %zu)",
                        t->path, col, tt->n_cols);
    const sp__table_col *c = &tt->cols[col];
    if (cap < tt->n_rows)
        return sp__fail(SP_EINVAL,
                        "%s: column \"%s\": dst holds %" PRIu64 " values, the table has %" PRIu64
                        " rows",
                        t->path, c->name, cap, tt->n_rows);
    if (!dst && tt->n_rows > 0) return sp__fail(SP_EINVAL, "sp_table_column_f64: dst is NULL");
    if (c->type == SP_TYPE_STRING) {
        for (uint64_t r = 0; r < tt->n_rows; r++) {
            const sp_value *v = &c->cells[r];
            if (v->is_null || is_number(v->v.str.s, v->v.str.len)) continue;
            char q[160];
            quote_value(q, sizeof q, v->v.str.s, v->v.str.len);
            return sp__fail(SP_EBADINPUT,
                            "%s:%" PRIu64 ": column \"%s\": %s is not a number (the column "
                            "holds text)",
                            t->path, tt->line[r], c->name, q);
        }
    }
    for (uint64_t r = 0; r < tt->n_rows; r++) {
        const sp_value *v = &c->cells[r];
        if (v->is_null)
            dst[r] = NAN;
        else if (c->type == SP_TYPE_FLOAT64)
            dst[r] = v->v.f;
        else if (c->type == SP_TYPE_STRING) /* checked above: numeric text */
            dst[r] = strtod(v->v.str.s, NULL);
        else
            dst[r] = (double)v->v.i;
    }
    return SP_OK;
}

uint64_t sp_table_line(const sp_table *t, uint64_t row) {
    return t && row < t->t->n_rows ? t->t->line[row] : 0;
}

void sp_table_close(sp_table *t) {
    if (!t) return;
    sp__table_free(t->t);
    sp__free(t->path);
    sp__free(t);
}

int sp_table_column_type(const sp_table *t, size_t col) {
    return t && col < t->t->n_cols ? (int)t->t->cols[col].type : 0;
}

sp_status sp_table_value(const sp_table *t, uint64_t row, size_t col, sp_value *out) {
    if (!t || !out) return sp__fail(SP_EINVAL, "sp_table_value: %s is NULL", t ? "out" : "t");
    if (col >= t->t->n_cols || row >= t->t->n_rows)
        return sp__fail(SP_EINVAL, "%s: row %" PRIu64 ", column %zu is out of range", t->path, row,
                        col);
    *out = t->t->cols[col].cells[row];
    return SP_OK;
}
