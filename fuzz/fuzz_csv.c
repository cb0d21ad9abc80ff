/* fuzz_csv.c — fuzzes the CSV table parser (sp__table_parse_csv in src/ingest/ingest_table.c).
 *
 * Each input is parsed four ways: strict, with skip_errors, with a schema that may not match
 * ("a:int64,b:timestamp"), and with its first line taken as the schema for the rest. A table that
 * comes back is checked: sanitized unique names, known types, NUL-terminated valid UTF-8 strings
 * (every byte is read, so ASan sees any bad pointer), increasing line numbers and a skip count
 * that matches the callback. A strict parse that succeeds must give the same rows with
 * skip_errors. A failure must leave *out NULL and a message. */
#include "core_internal.h"
#include "ingest/ingest_table.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

/* Parses and checks; returns the status, and the row count in *rows. */
static sp_status run(const char *text, size_t len, const char *schema, int skip, uint64_t *rows) {
    uint64_t skips = 0;
    sp__table_opts o;
    memset(&o, 0, sizeof o);
    o.schema = schema;
    o.skip_errors = skip;
    o.on_skip = count_skip;
    o.user = &skips;
    sp__table *t = (sp__table *)&o;
    sp_status rc = sp__table_parse_csv("fuzz.csv", text, len, &o, &t);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    uint64_t strict_rows = 0, skip_rows = 0, rows = 0;
    sp_status strict = run(text, size, NULL, 0, &strict_rows);
    sp_status skipping = run(text, size, NULL, 1, &skip_rows);
    if (strict == SP_OK && (skipping != SP_OK || skip_rows != strict_rows)) abort();
    run(text, size, "a:int64,b:timestamp", 0, &rows);
    run(text, size, "a:int64,b:timestamp", 1, &rows);

    /* the first line (up to 200 bytes) as the schema of the rest */
    const char *nl = memchr(text, '\n', size < 200 ? size : 200);
    if (nl) {
        size_t n = (size_t)(nl - text);
        char schema[201];
        memcpy(schema, text, n);
        schema[n] = '\0';
        run(nl + 1, size - n - 1, schema, 1, &rows);
    }

    /* an allocation that fails somewhere along the way must give SP_ENOMEM and leak nothing */
    sp__malloc_fail_after(1 + size % 23);
    run(text, size, NULL, 1, &rows);
    sp__malloc_fail_after(0);
    return 0;
}
