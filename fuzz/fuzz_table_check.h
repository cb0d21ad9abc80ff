/* fuzz_table_check.h — shared by fuzz_csv.c and fuzz_jsonl.c: runs a table parser and checks
 * every invariant of what it returns (names, types, NUL-terminated valid UTF-8 strings, line
 * numbers, skip counts); abort() on any violation. Included by exactly those two targets. */
#ifndef SP_FUZZ_TABLE_CHECK_H
#define SP_FUZZ_TABLE_CHECK_H

#include "core_internal.h"
#include "ingest/ingest_table.h"

#include <stdlib.h>
#include <string.h>

static void count_skip(void *user, const char *where, const char *reason) {
    uint64_t *n = user;
    if (!where[0] || !reason[0]) abort();
    (*n)++;
}

static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], len = c < 0x80                ? 1
                                 : c >= 0xC2 && c < 0xE0 ? 2
                                 : c >= 0xE0 && c < 0xF0 ? 3
                                 : c >= 0xF0 && c < 0xF5 ? 4
                                                         : 0;
        if (!len || n - i < len) return 0;
        uint32_t cp = len == 1 ? c : c & (0x7F >> len);
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static void check_table(const sp__table *t, uint64_t skips) {
    if (t->n_cols > SP_MAX_COLUMNS || t->skipped != skips) abort();
    for (size_t c = 0; c < t->n_cols; c++) {
        const sp__table_col *col = &t->cols[c];
        size_t n = strlen(col->name);
        if (n == 0 || n >= SP_MAX_NAME || (col->name[0] >= '0' && col->name[0] <= '9')) abort();
        for (size_t i = 0; i < n; i++) {
            char ch = col->name[i];
            if (!(ch == '_' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z')))
                abort();
        }
        for (size_t k = 0; k < c; k++)
            if (!strcmp(t->cols[k].name, col->name)) abort();
        if (col->type != SP_TYPE_INT64 && col->type != SP_TYPE_FLOAT64 &&
            col->type != SP_TYPE_STRING)
            abort();
        if (col->is_timestamp && col->type != SP_TYPE_INT64) abort();
        for (uint64_t r = 0; r < t->n_rows; r++) {
            const sp_value *v = &col->cells[r];
            if (v->is_null != 0 && v->is_null != 1) abort();
            if (v->is_null || col->type != SP_TYPE_STRING) continue;
            if (!v->v.str.s || v->v.str.len == 0 || v->v.str.s[v->v.str.len] != '\0') abort();
            if (!valid_utf8((const unsigned char *)v->v.str.s, v->v.str.len)) abort();
        }
    }
    for (uint64_t r = 0; r < t->n_rows; r++)
        if (t->line[r] == 0 || (r > 0 && t->line[r] <= t->line[r - 1])) abort();
}

typedef sp_status (*table_parser)(const char *name, const char *buf, size_t len,
                                  const sp__table_opts *opts, sp__table **out);

/* Parses with `parse` and checks; returns the status, and the row count in *rows. */
static sp_status run_parser(table_parser parse, const char *name, const char *text, size_t len,
                            const char *schema, int skip, uint64_t *rows) {
    uint64_t skips = 0;
    sp__table_opts o;
    memset(&o, 0, sizeof o);
    o.schema = schema;
    o.skip_errors = skip;
    o.on_skip = count_skip;
    o.user = &skips;
    sp__table *t = (sp__table *)&o;
    sp_status rc = parse(name, text, len, &o, &t);
    if (rc == SP_OK) {
        check_table(t, skips);
        if (!skip && skips) abort();
        *rows = t->n_rows;
    } else {
        if (t != NULL || !sp_errmsg()[0]) abort();
        if (rc != SP_EBADINPUT && rc != SP_EINVAL && rc != SP_ENOMEM) abort();
    }
    sp__table_free(t);
    return rc;
}

#endif
