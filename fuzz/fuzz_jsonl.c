/* fuzz_jsonl.c — fuzzes the JSONL table parser (sp__table_parse_jsonl in
 * src/ingest/ingest_table.c).
 *
 * Each input is parsed five ways: strict, with skip_errors, and with schemas that may not match
 * ("a:int64,b:timestamp" strict and skipping, "a:string,b:float64" skipping). A table that comes
 * back is checked: sanitized unique names, known types, NUL-terminated valid UTF-8 strings (every
 * byte is read, so ASan sees any bad pointer), increasing line numbers and a skip count that
 * matches the callback. With skip_errors and no schema the parse always succeeds, with the same
 * rows as a strict parse that succeeds. A failure must leave *out NULL and a message. */
#include "fuzz_table_check.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    uint64_t strict_rows = 0, skip_rows = 0, rows = 0;
    sp_status strict =
        run_parser(sp__table_parse_jsonl, "fuzz.jsonl", text, size, NULL, 0, &strict_rows);
    sp_status skipping =
        run_parser(sp__table_parse_jsonl, "fuzz.jsonl", text, size, NULL, 1, &skip_rows);
    if (skipping != SP_OK || (strict == SP_OK && skip_rows != strict_rows)) abort();
    run_parser(sp__table_parse_jsonl, "fuzz.jsonl", text, size, "a:int64,b:timestamp", 0, &rows);
    run_parser(sp__table_parse_jsonl, "fuzz.jsonl", text, size, "a:int64,b:timestamp", 1, &rows);
    run_parser(sp__table_parse_jsonl, "fuzz.jsonl", text, size, "a:string,b:float64", 1, &rows);

    /* an allocation that fails somewhere along the way must give SP_ENOMEM and leak nothing */
    sp__malloc_fail_after(1 + size % 23);
    run_parser(sp__table_parse_jsonl, "fuzz.jsonl", text, size, NULL, 1, &rows);
    sp__malloc_fail_after(0);
    return 0;
}
