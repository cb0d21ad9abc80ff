/* fuzz_csv.c — fuzzes the CSV table parser (sp__table_parse_csv in src/ingest/ingest_table.c).
 *
 * Each input is parsed four ways: strict, with skip_errors, with a schema that may not match
 * ("a:int64,b:timestamp"), and with its first line taken as the schema for the rest. A table that
 * comes back is checked: sanitized unique names, known types, NUL-terminated valid UTF-8 strings
 * (every byte is read, so ASan sees any bad pointer), increasing line numbers and a skip count
 * that matches the callback. A strict parse that succeeds must give the same rows with
 * skip_errors. A failure must leave *out NULL and a message. */
#include "fuzz_table_check.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    uint64_t strict_rows = 0, skip_rows = 0, rows = 0;
    sp_status strict =
        run_parser(sp__table_parse_csv, "fuzz.csv", text, size, NULL, 0, &strict_rows);
    sp_status skipping =
        run_parser(sp__table_parse_csv, "fuzz.csv", text, size, NULL, 1, &skip_rows);
    if (strict == SP_OK && (skipping != SP_OK || skip_rows != strict_rows)) abort();
    run_parser(sp__table_parse_csv, "fuzz.csv", text, size, "a:int64,b:timestamp", 0, &rows);
    run_parser(sp__table_parse_csv, "fuzz.csv", text, size, "a:int64,b:timestamp", 1, &rows);

    /* the first line (up to 200 bytes) as the schema of the rest */
    const char *nl = memchr(text, '\n', size < 200 ? size : 200);
    if (nl) {
        size_t n = (size_t)(nl - text);
        char schema[201];
        memcpy(schema, text, n);
        schema[n] = '\0';
        run_parser(sp__table_parse_csv, "fuzz.csv", nl + 1, size - n - 1, schema, 1, &rows);
    }

    /* an allocation that fails somewhere along the way must give SP_ENOMEM and leak nothing */
    sp__malloc_fail_after(1 + size % 23);
    run_parser(sp__table_parse_csv, "fuzz.csv", text, size, NULL, 1, &rows);
    sp__malloc_fail_after(0);
    return 0;
}
