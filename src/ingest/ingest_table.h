/* ingest_table.h — internal: parsing CSV and JSONL files into an in-memory typed table.
 * Private to src/ingest. */
#ifndef SP_INGEST_TABLE_H
#define SP_INGEST_TABLE_H

#include "softpipe/shard.h"

typedef struct sp__table_opts {
    /* "name:type,..." overrides inference for the named columns; type is
     * int64|float64|string|timestamp (timestamp = int64 seconds since the epoch, parsed from
     * ISO-8601 or epoch seconds). NULL = infer everything. */
    const char *schema;
    int skip_errors; /* 0: the first bad line fails the parse; 1: skip it and report it */
    void (*on_skip)(void *user, const char *where, const char *reason);
    void *user;
} sp__table_opts;

typedef struct sp__table_col {
    char name[SP_MAX_NAME]; /* sanitized to [A-Za-z0-9_] */
    sp_type type;           /* SP_TYPE_INT64, SP_TYPE_FLOAT64 or SP_TYPE_STRING */
    int is_timestamp;       /* schema said "timestamp": values are int64 epoch seconds */
    sp_value *cells;        /* n_rows values; strings point into the table's own memory */
} sp__table_col;

typedef struct sp__table {
    size_t n_cols;
    sp__table_col *cols;
    uint64_t n_rows;
    uint64_t *line;   /* 1-based source line of each row */
    uint64_t skipped; /* rows skipped (skip_errors) */
    void *arena;      /* private */
} sp__table;

/* Parses CSV (RFC 4180: header row, comma separator, "" quoting, CRLF or LF, quoted fields may
 * span lines; UTF-8, a BOM is ignored) from memory. `name` is used in messages:
 * "name:LINE:COL: what". */
sp_status sp__table_parse_csv(const char *name, const char *buf, size_t len,
                              const sp__table_opts *opts, sp__table **out);

/* Parses JSONL: one JSON object per line; blank lines ignored. Columns are the union of keys in
 * first-seen order; a missing key is null; true/false are int64 1/0; nested values are stored as
 * their compact JSON text (string). */
sp_status sp__table_parse_jsonl(const char *name, const char *buf, size_t len,
                                const sp__table_opts *opts, sp__table **out);

/* Reads the file at `path` and calls the parser above. */
sp_status sp__table_read_csv(const char *path, const sp__table_opts *opts, sp__table **out);
sp_status sp__table_read_jsonl(const char *path, const sp__table_opts *opts, sp__table **out);

void sp__table_free(sp__table *t);

/* ISO-8601 ("2024-05-01", "2024-05-01T12:00:00Z", "...+02:00", fractional seconds truncated,
 * 'T' or ' ') or integer/decimal epoch seconds, to int64 seconds since the epoch (UTC). */
sp_status sp__parse_timestamp(const char *s, size_t len, int64_t *out);

#endif
