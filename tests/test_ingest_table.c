/* test_ingest_table.c — unit tests of the CSV/JSONL table parser and sp__parse_timestamp
 * (src/ingest/ingest_table.c): syntax, type inference, schema overrides, error messages with their
 * file:line:col, skip_errors, allocation failures and timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "core_internal.h"
#include "ingest/ingest_table.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

typedef struct skips {
    int n;
    char where[8][128];
    char reason[8][512];
} skips;

static void on_skip(void *user, const char *where, const char *reason) {
    skips *s = user;
    if (s->n < 8) {
        snprintf(s->where[s->n], sizeof s->where[0], "%s", where);
        snprintf(s->reason[s->n], sizeof s->reason[0], "%s", reason);
    }
    s->n++;
}

static sp_status parse(int jsonl, const char *text, size_t len, const char *schema, skips *sk,
                       sp__table **out) {
    sp__table_opts o;
    memset(&o, 0, sizeof o);
    o.schema = schema;
    if (sk) {
        o.skip_errors = 1;
        o.on_skip = on_skip;
        o.user = sk;
    }
    return jsonl ? sp__table_parse_jsonl("t.jsonl", text, len, &o, out)
                 : sp__table_parse_csv("t.csv", text, len, &o, out);
}

static sp__table *csv_ok(const char *text, const char *schema) {
    sp__table *t = NULL;
    sp_status rc = parse(0, text, strlen(text), schema, NULL, &t);
    if (rc != SP_OK) fail_msg("parse failed: %s: %s", sp_status_name(rc), sp_errmsg());
    assert_non_null(t);
    return t;
}

static sp__table *jsonl_ok(const char *text, const char *schema) {
    sp__table *t = NULL;
    sp_status rc = parse(1, text, strlen(text), schema, NULL, &t);
    if (rc != SP_OK) fail_msg("parse failed: %s: %s", sp_status_name(rc), sp_errmsg());
    assert_non_null(t);
    return t;
}

/* Parses and expects `code` with exactly `msg` (or, when msg ends with '*', a message starting
 * with it). */
static void expect_error(int jsonl, const char *text, size_t len, const char *schema,
                         sp_status code, const char *msg) {
    sp__table *t = (sp__table *)1;
    sp_status rc = parse(jsonl, text, len, schema, NULL, &t);
    assert_null(t);
    if (rc != code)
        fail_msg("expected %s, got %s: %s", sp_status_name(code), sp_status_name(rc), sp_errmsg());
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '*') {
        if (strncmp(sp_errmsg(), msg, n - 1) != 0)
            fail_msg("message \"%s\" does not start with \"%.*s\"", sp_errmsg(), (int)n - 1, msg);
    } else {
        assert_string_equal(sp_errmsg(), msg);
    }
}

static void csv_error(const char *text, const char *schema, sp_status code, const char *msg) {
    expect_error(0, text, strlen(text), schema, code, msg);
}

static void jsonl_error(const char *text, const char *schema, sp_status code, const char *msg) {
    expect_error(1, text, strlen(text), schema, code, msg);
}

static const sp_value *cell(const sp__table *t, size_t col, uint64_t row) {
    assert_true(col < t->n_cols);
    assert_true(row < t->n_rows);
    return &t->cols[col].cells[row];
}

static void assert_str(const sp__table *t, size_t col, uint64_t row, const char *want) {
    assert_int_equal(t->cols[col].type, SP_TYPE_STRING);
    const sp_value *v = cell(t, col, row);
    assert_false(v->is_null);
    size_t n = strlen(want);
    if (v->v.str.len != n || memcmp(v->v.str.s, want, n) != 0)
        fail_msg("col %zu row %llu: \"%.*s\" != \"%s\"", col, (unsigned long long)row,
                 (int)v->v.str.len, v->v.str.s, want);
    assert_int_equal(v->v.str.s[n], '\0');
}

static void assert_int(const sp__table *t, size_t col, uint64_t row, int64_t want) {
    assert_int_equal(t->cols[col].type, SP_TYPE_INT64);
    const sp_value *v = cell(t, col, row);
    assert_false(v->is_null);
    assert_true(v->v.i == want);
}

static void assert_f64(const sp__table *t, size_t col, uint64_t row, double want) {
    assert_int_equal(t->cols[col].type, SP_TYPE_FLOAT64);
    const sp_value *v = cell(t, col, row);
    assert_false(v->is_null);
    if (isnan(want))
        assert_true(isnan(v->v.f));
    else
        assert_true(v->v.f == want);
}

static void assert_null_cell(const sp__table *t, size_t col, uint64_t row) {
    assert_true(cell(t, col, row)->is_null);
}

/* ---------------------------------------------------------------- CSV syntax */

static void test_csv_basic(void **state) {
    (void)state;
    sp__table *t = csv_ok("id,name,score\n1,alice,1.5\n2,bob,2\n", NULL);
    assert_int_equal(t->n_cols, 3);
    assert_int_equal(t->n_rows, 2);
    assert_string_equal(t->cols[0].name, "id");
    assert_string_equal(t->cols[1].name, "name");
    assert_string_equal(t->cols[2].name, "score");
    assert_int(t, 0, 0, 1);
    assert_int(t, 0, 1, 2);
    assert_str(t, 1, 0, "alice");
    assert_str(t, 1, 1, "bob");
    assert_f64(t, 2, 0, 1.5);
    assert_f64(t, 2, 1, 2.0);
    assert_int_equal(t->line[0], 2);
    assert_int_equal(t->line[1], 3);
    assert_int_equal(t->skipped, 0);
    for (size_t c = 0; c < 3; c++)
        assert_false(t->cols[c].is_timestamp);
    sp__table_free(t);
    sp__table_free(NULL);
}

static void test_csv_quoting(void **state) {
    (void)state;
    sp__table *t = csv_ok("a,b\n"
                          "\"x,y\",\"he said \"\"hi\"\"\"\n"
                          "\"multi\nline\",z\n"
                          "\"\"\"\",plain\"quote\n"
                          "last,\"\"\n",
                          NULL);
    assert_int_equal(t->n_rows, 4);
    assert_str(t, 0, 0, "x,y");
    assert_str(t, 1, 0, "he said \"hi\"");
    assert_str(t, 0, 1, "multi\nline");
    assert_str(t, 1, 1, "z");
    assert_str(t, 0, 2, "\"");
    assert_str(t, 1, 2, "plain\"quote");
    assert_str(t, 0, 3, "last");
    assert_null_cell(t, 1, 3);
    assert_int_equal(t->line[0], 2);
    assert_int_equal(t->line[1], 3);
    assert_int_equal(t->line[2], 5);
    assert_int_equal(t->line[3], 6);
    sp__table_free(t);
}

static void test_csv_crlf(void **state) {
    (void)state;
    sp__table *t = csv_ok("a,b\r\n1,x\r\n\"p\r\nq\",y\r\nbare\rcr,z\r\n3,w\r", NULL);
    assert_int_equal(t->n_rows, 4);
    assert_string_equal(t->cols[1].name, "b");
    assert_str(t, 0, 1, "p\r\nq");
    assert_str(t, 0, 2, "bare\rcr");
    assert_str(t, 1, 0, "x");
    assert_str(t, 1, 3, "w");
    assert_int_equal(t->line[2], 5);
    assert_int_equal(t->line[3], 6);
    sp__table_free(t);
}

static void test_csv_bom_and_final_line(void **state) {
    (void)state;
    sp__table *t = csv_ok("\xEF\xBB\xBF"
                          "a,b\n1,2",
                          NULL);
    assert_string_equal(t->cols[0].name, "a");
    assert_int_equal(t->n_rows, 1);
    assert_int(t, 0, 0, 1);
    assert_int(t, 1, 0, 2);
    sp__table_free(t);

    t = csv_ok("a,b\n1,", NULL); /* the last field is empty */
    assert_int_equal(t->n_rows, 1);
    assert_null_cell(t, 1, 0);
    assert_int_equal(t->cols[1].type, SP_TYPE_STRING);
    sp__table_free(t);

    t = csv_ok("a\n\"q\"", NULL);
    assert_str(t, 0, 0, "q");
    sp__table_free(t);
}

static void test_csv_blank_lines(void **state) {
    (void)state;
    sp__table *t = csv_ok("\n\na\n1\n\n2\r\n\r\n", NULL);
    assert_int_equal(t->n_rows, 2);
    assert_int_equal(t->line[0], 4);
    assert_int_equal(t->line[1], 6);
    sp__table_free(t);
}

static void test_csv_empty_input(void **state) {
    (void)state;
    csv_error("", NULL, SP_EBADINPUT, "t.csv:1: no header row (the input is empty)");
    csv_error("\n\r\n", NULL, SP_EBADINPUT, "t.csv:3: no header row (the input is empty)");
    csv_error("\xEF\xBB\xBF", NULL, SP_EBADINPUT, "t.csv:1: no header row*");
    sp__table *t = NULL;
    assert_int_equal(sp__table_parse_csv("t.csv", NULL, 0, NULL, &t), SP_EBADINPUT);
    assert_null(t);
    assert_int_equal(sp__table_parse_csv("t.csv", NULL, 5, NULL, &t), SP_EINVAL);
}

static void test_csv_header_only(void **state) {
    (void)state;
    sp__table *t = csv_ok("a,b\n", NULL);
    assert_int_equal(t->n_cols, 2);
    assert_int_equal(t->n_rows, 0);
    assert_int_equal(t->cols[0].type, SP_TYPE_STRING);
    sp__table_free(t);
    t = csv_ok("a,b", "b:int64");
    assert_int_equal(t->n_rows, 0);
    assert_int_equal(t->cols[1].type, SP_TYPE_INT64);
    sp__table_free(t);
}

static void test_csv_names_sanitized(void **state) {
    (void)state;
    char text[512];
    snprintf(text, sizeof text, "first name,2nd,h\xC3\xA9llo,a-b,\"q\"\"t\",%s\n", /* 70 x's */
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    sp__table *t = csv_ok(text, NULL);
    assert_string_equal(t->cols[0].name, "first_name");
    assert_string_equal(t->cols[1].name, "_2nd");
    assert_string_equal(t->cols[2].name, "h_llo");
    assert_string_equal(t->cols[3].name, "a_b");
    assert_string_equal(t->cols[4].name, "q_t");
    assert_int_equal(strlen(t->cols[5].name), SP_MAX_NAME - 1);
    sp__table_free(t);
}

static void test_csv_header_errors(void **state) {
    (void)state;
    csv_error("a,a\n", NULL, SP_EBADINPUT,
              "t.csv:1:3: duplicate column name \"a\" (columns 1 and 2)");
    csv_error("x,a b,a_b\n", NULL, SP_EBADINPUT,
              "t.csv:1:7: duplicate column name \"a_b\" (columns 2 and 3)");
    csv_error("a,,b\n1,2,3\n", NULL, SP_EBADINPUT,
              "t.csv:1:3: column 2 has an empty name in the header row");
    csv_error("a,\"b\n", NULL, SP_EBADINPUT, "t.csv:1:3: unterminated quoted field");
    /* a header error is not skipped even with skip_errors */
    skips sk = {0};
    sp__table *t = NULL;
    assert_int_equal(parse(0, "a,a\n1,2\n", 8, NULL, &sk, &t), SP_EBADINPUT);
    assert_null(t);
    assert_int_equal(sk.n, 0);
    /* too many columns */
    char *big = malloc(8 * 300);
    size_t o = 0;
    for (int i = 0; i < 257; i++)
        o += (size_t)sprintf(big + o, "%sc%d", i ? "," : "", i);
    expect_error(0, big, o, NULL, SP_EBADINPUT, "t.csv:1: the header row has 257 columns*");
    o = 0;
    for (int i = 0; i < 256; i++)
        o += (size_t)sprintf(big + o, "%sc%d", i ? "," : "", i);
    assert_int_equal(parse(0, big, o, NULL, NULL, &t), SP_OK);
    assert_int_equal(t->n_cols, 256);
    sp__table_free(t);
    free(big);
}

/* ---------------------------------------------------------------- CSV types */

static void test_csv_infer_types(void **state) {
    (void)state;
    sp__table *t = csv_ok("i,big,f,s1,s2,s3,sp,n,mix\n"
                          "9223372036854775807,9223372036854775808,1e3,0x10,abc, 1,inf,,1\n"
                          "-9223372036854775808,1,-Infinity,5,6,7,NaN,,x\n"
                          "+5,2,.5,6,7,8,-inf,,2.5\n",
                          NULL);
    assert_int(t, 0, 0, INT64_MAX);
    assert_int(t, 0, 1, INT64_MIN);
    assert_int(t, 0, 2, 5);
    assert_f64(t, 1, 0, 9223372036854775808.0);
    assert_f64(t, 1, 1, 1.0);
    assert_f64(t, 2, 0, 1000.0);
    assert_f64(t, 2, 1, -INFINITY);
    assert_f64(t, 2, 2, 0.5);
    assert_str(t, 3, 0, "0x10"); /* no hex */
    assert_str(t, 3, 1, "5");
    assert_str(t, 4, 0, "abc");
    assert_str(t, 5, 0, " 1"); /* no spaces around numbers */
    assert_f64(t, 6, 0, INFINITY);
    assert_f64(t, 6, 1, NAN);
    assert_f64(t, 6, 2, -INFINITY);
    assert_int_equal(t->cols[7].type, SP_TYPE_STRING); /* all null */
    assert_null_cell(t, 7, 0);
    assert_str(t, 8, 0, "1");
    assert_str(t, 8, 1, "x");
    assert_str(t, 8, 2, "2.5");
    sp__table_free(t);

    t = csv_ok("a,b,c\n1e,nan(1),1.5.5\n", NULL);
    assert_str(t, 0, 0, "1e");
    assert_str(t, 1, 0, "nan(1)");
    assert_str(t, 2, 0, "1.5.5");
    sp__table_free(t);
}

static void test_csv_nulls(void **state) {
    (void)state;
    sp__table *t = csv_ok("a,b,c\n1,,\"\"\n,2.5,\n3,,x\n", NULL);
    assert_int(t, 0, 0, 1);
    assert_null_cell(t, 0, 1);
    assert_int(t, 0, 2, 3);
    assert_null_cell(t, 1, 0);
    assert_f64(t, 1, 1, 2.5);
    assert_null_cell(t, 2, 0);
    assert_null_cell(t, 2, 1);
    assert_str(t, 2, 2, "x");
    sp__table_free(t);
}

static void test_csv_schema_override(void **state) {
    (void)state;
    sp__table *t = csv_ok("id,when,x,zip,f\n"
                          "1,2024-05-01,3,007,\n"
                          "2,1714521600.9,4,010,2\n",
                          " id : float64 , when:timestamp,x:string,zip:int64,f:float64");
    assert_f64(t, 0, 0, 1.0);
    assert_int(t, 1, 0, 1714521600);
    assert_int(t, 1, 1, 1714521600);
    assert_true(t->cols[1].is_timestamp);
    assert_false(t->cols[0].is_timestamp);
    assert_str(t, 2, 0, "3");
    assert_int(t, 3, 0, 7);
    assert_int(t, 3, 1, 10);
    assert_null_cell(t, 4, 0);
    assert_f64(t, 4, 1, 2.0);
    sp__table_free(t);

    /* schema names are sanitized like the header */
    t = csv_ok("first name\n5\n", "first name:string");
    assert_str(t, 0, 0, "5");
    sp__table_free(t);
}

static void test_csv_schema_bad(void **state) {
    (void)state;
    const char *text = "a,b\n1,2\n";
    csv_error(text, "a:int", SP_EINVAL,
              "schema: entry \"a:int\": unknown type \"int\" (expected int64, float64, string or "
              "timestamp)");
    csv_error(text, "a", SP_EINVAL, "schema: entry \"a\" is not name:type*");
    csv_error(text, "a:int64,", SP_EINVAL, "schema: entry \"\" is not name:type*");
    csv_error(text, ":int64", SP_EINVAL, "schema: entry \":int64\" has no column name");
    csv_error(text, "a:int64,a:string", SP_EINVAL, "schema: column \"a\" is given twice");
    csv_error(text, "zz:int64", SP_EINVAL, "schema: no column \"zz\" in t.csv (columns: a, b)");
    sp__table *t = csv_ok(text, "  ");
    assert_int(t, 0, 0, 1);
    sp__table_free(t);
}

static void test_csv_schema_value_errors(void **state) {
    (void)state;
    csv_error("id,age\n1,30\n2,abc\n", "age:int64", SP_EBADINPUT,
              "t.csv:3:3: column \"age\" (int64): cannot parse \"abc\"");
    csv_error("x\n1.5\n", "x:int64", SP_EBADINPUT,
              "t.csv:2:1: column \"x\" (int64): cannot parse \"1.5\"");
    csv_error("x\n\"1,5\"\n", "x:float64", SP_EBADINPUT,
              "t.csv:2:1: column \"x\" (float64): cannot parse \"1,5\"");
    csv_error("a,t\n1,2024-13-01\n", "t:timestamp", SP_EBADINPUT,
              "t.csv:2:3: column \"t\" (timestamp): cannot parse \"2024-13-01\": month 13 out of "
              "range 01-12");
    csv_error("x\n99999999999999999999\n", "x:int64", SP_EBADINPUT,
              "t.csv:2:1: column \"x\" (int64): cannot parse \"99999999999999999999\"");
    /* values are quoted printable and cut short in messages */
    csv_error(
        "x\n\"a\"\"b\nc\td\\\xC3\xA9\x01\"\n", "x:float64", SP_EBADINPUT,
        "t.csv:2:1: column \"x\" (float64): cannot parse \"a\\\"b\\nc\\td\\\\\xC3\xA9\\x01\"");
    csv_error(
        "x\n0123456789012345678901234567890123456789012345678901234567890123456789\n",
        "x:timestamp", SP_EBADINPUT,
        "t.csv:2:1: column \"x\" (timestamp): cannot parse "
        "\"012345678901234567890123456789012345678901234567\"...: epoch seconds out of range");
    /* with skip_errors the line is skipped */
    skips sk = {0};
    sp__table *t = NULL;
    const char *text = "id,age\n1,30\n2,abc\n3,40\n";
    assert_int_equal(parse(0, text, strlen(text), "age:int64", &sk, &t), SP_OK);
    assert_int_equal(t->n_rows, 2);
    assert_int_equal(t->skipped, 1);
    assert_int(t, 1, 1, 40);
    assert_int_equal(t->line[1], 4);
    assert_int_equal(sk.n, 1);
    assert_string_equal(sk.where[0], "t.csv:3");
    assert_string_equal(sk.reason[0], "column \"age\" (int64): cannot parse \"abc\"");
    sp__table_free(t);
}

/* ---------------------------------------------------------------- CSV errors */

static void test_csv_field_count_fail(void **state) {
    (void)state;
    csv_error("a,b,c,d\n1,2,3,4\n1,2,3\n", NULL, SP_EBADINPUT,
              "t.csv:3: expected 4 fields, found 3");
    csv_error("a,b\n1,2,3\n", NULL, SP_EBADINPUT, "t.csv:2: expected 2 fields, found 3");
}

static void test_csv_field_count_skip(void **state) {
    (void)state;
    skips sk = {0};
    sp__table *t = NULL;
    const char *text = "a,b,c,d\n1,2,3,4\n1,2,3\n5,6,7,8\n1,2,3,4,5\n\"x\ny\",1,2,3\n";
    assert_int_equal(parse(0, text, strlen(text), NULL, &sk, &t), SP_OK);
    assert_int_equal(t->n_rows, 3);
    assert_int_equal(t->skipped, 2);
    assert_int_equal(sk.n, 2);
    assert_string_equal(sk.where[0], "t.csv:3");
    assert_string_equal(sk.reason[0], "expected 4 fields, found 3");
    assert_string_equal(sk.where[1], "t.csv:5");
    assert_string_equal(sk.reason[1], "expected 4 fields, found 5");
    assert_int_equal(t->line[0], 2);
    assert_int_equal(t->line[1], 4);
    assert_int_equal(t->line[2], 6);
    assert_str(t, 0, 2, "x\ny");
    assert_int_equal(t->cols[1].type, SP_TYPE_INT64);
    assert_int(t, 1, 1, 6);
    sp__table_free(t);

    /* skip without a callback still counts */
    sp__table_opts o = {0};
    o.skip_errors = 1;
    assert_int_equal(sp__table_parse_csv("t.csv", text, strlen(text), &o, &t), SP_OK);
    assert_int_equal(t->skipped, 2);
    sp__table_free(t);
}

static void test_csv_unterminated_quote(void **state) {
    (void)state;
    csv_error("a,b\n1,2\n3,\"abc\n4,5\n", NULL, SP_EBADINPUT,
              "t.csv:3:3: unterminated quoted field");
    csv_error("a,b\n1,\"", NULL, SP_EBADINPUT, "t.csv:2:3: unterminated quoted field");
    skips sk = {0};
    sp__table *t = NULL;
    const char *text = "a,b\n1,2\n3,\"abc\n4,5\n";
    assert_int_equal(parse(0, text, strlen(text), NULL, &sk, &t), SP_OK);
    assert_int_equal(t->n_rows, 1);
    assert_int_equal(t->skipped, 1);
    assert_string_equal(sk.where[0], "t.csv:3");
    assert_string_equal(sk.reason[0], "unterminated quoted field");
    sp__table_free(t);
}

static void test_csv_text_after_quote(void **state) {
    (void)state;
    csv_error("a\n\"x\"y\n", NULL, SP_EBADINPUT,
              "t.csv:2:4: unexpected \"y\" after a closing quote (a quote inside a quoted field "
              "is written \"\")");
    skips sk = {0};
    sp__table *t = NULL;
    const char *text = "a,b\n\"x\" ,1\n2,3\n";
    assert_int_equal(parse(0, text, strlen(text), NULL, &sk, &t), SP_OK);
    assert_int_equal(t->n_rows, 1);
    assert_int(t, 0, 0, 2);
    assert_string_equal(sk.where[0], "t.csv:2");
    sp__table_free(t);
}

static void test_csv_invalid_utf8(void **state) {
    (void)state;
    csv_error("a,b\n1,\xFF\n", NULL, SP_EBADINPUT, "t.csv:2:3: invalid UTF-8 (byte 0xff)");
    csv_error("a,b\n1,\"\xC3\xA9\xC0\x80\"\n", NULL, SP_EBADINPUT,
              "t.csv:2:5: invalid UTF-8 (byte 0xc0)"); /* overlong NUL */
    csv_error("a\n\"x\n\xED\xA0\x80\"\n", NULL, SP_EBADINPUT,
              "t.csv:3:1: invalid UTF-8 (byte 0xed)"); /* surrogate, on a continued line */
    csv_error("a,\xF4\x90\x80\x80\n", NULL, SP_EBADINPUT,
              "t.csv:1:3: invalid UTF-8 (byte 0xf4)"); /* above U+10FFFF, in the header */
    csv_error("a\nx\xE2\x82\n", NULL, SP_EBADINPUT, "t.csv:2:2: invalid UTF-8 (byte 0xe2)");
    /* columns count characters, not bytes */
    csv_error("a,b\n\xC3\xA9\xC3\xA9,\xFF\n", NULL, SP_EBADINPUT,
              "t.csv:2:4: invalid UTF-8 (byte 0xff)");
}

static void test_csv_valid_utf8(void **state) {
    (void)state;
    sp__table *t = NULL;
    skips sk = {0};
    const char *text = "a\n\xF0\x9F\x98\x80\n\xC3\xA9t\xC3\xA9\n";
    assert_int_equal(parse(0, text, strlen(text), NULL, &sk, &t), SP_OK);
    assert_int_equal(sk.n, 0);
    assert_str(t, 0, 0, "\xF0\x9F\x98\x80");
    assert_str(t, 0, 1, "\xC3\xA9t\xC3\xA9");
    sp__table_free(t);
}

static void test_csv_skip_reports_utf8(void **state) {
    (void)state;
    skips sk = {0};
    sp__table *t = NULL;
    const char *text = "a\n1\n\xFF\n2\n";
    assert_int_equal(parse(0, text, strlen(text), NULL, &sk, &t), SP_OK);
    assert_int_equal(t->n_rows, 2);
    assert_int_equal(sk.n, 1);
    assert_string_equal(sk.where[0], "t.csv:3");
    assert_string_equal(sk.reason[0], "invalid UTF-8 (byte 0xff)");
    sp__table_free(t);
}

/* ---------------------------------------------------------------- CSV size, memory, files */

static void test_csv_large(void **state) {
    (void)state;
    size_t rows = 200000, cap = rows * 40 + 600000;
    char *buf = malloc(cap);
    size_t o = (size_t)sprintf(buf, "id,val,name\n");
    for (size_t i = 0; i < rows; i++) {
        if (i == 1000) { /* a value bigger than an arena chunk's quarter */
            o += (size_t)sprintf(buf + o, "%zu,0.5,\"", i);
            memset(buf + o, 'z', 500000);
            o += 500000;
            o += (size_t)sprintf(buf + o, "\"\n");
            continue;
        }
        o += (size_t)sprintf(buf + o, "%zu,%zu.25,name%zu\n", i, i, i);
    }
    sp__table *t = NULL;
    double t0 = sp__now();
    assert_int_equal(parse(0, buf, o, NULL, NULL, &t), SP_OK);
    double dt = sp__now() - t0;
    print_message("parsed %zu rows (%.1f MB) in %.3f s\n", rows, o / 1e6, dt);
    assert_int_equal(t->n_rows, rows);
    for (size_t i = 0; i < rows; i += 997) {
        char want[32];
        assert_int(t, 0, i, (int64_t)i);
        if (i == 1000) continue;
        snprintf(want, sizeof want, "name%zu", i);
        assert_str(t, 2, i, want);
        assert_f64(t, 1, i, (double)i + 0.25);
    }
    const sp_value *v = cell(t, 2, 1000);
    assert_int_equal(v->v.str.len, 500000);
    assert_int_equal(v->v.str.s[0], 'z');
    assert_int_equal(v->v.str.s[499999], 'z');
    assert_str(t, 2, rows - 1, "name199999");
    sp__table_free(t);
    free(buf);
}

static void test_csv_out_of_memory(void **state) {
    (void)state;
    const char *text = "a,b,t\n1,x,2024-01-01\n2,\"y\"\"z\",5\n";
    sp_status rc = SP_ENOMEM;
    uint64_t n;
    for (n = 1; n < 100; n++) {
        sp__table *t = (sp__table *)1;
        sp__malloc_fail_after(n);
        rc = parse(0, text, strlen(text), "t:timestamp", NULL, &t);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            assert_int(t, 0, 1, 2);
            assert_str(t, 1, 1, "y\"z");
            sp__table_free(t);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(t);
        assert_non_null(strstr(sp_errmsg(), "out of memory"));
    }
    assert_int_equal(rc, SP_OK);
    assert_true(n > 3);
}

static void test_jsonl_out_of_memory(void **state) {
    (void)state;
    const char *text = "{\"a\":1,\"b\":[1,2]}\n{\"c\":\"x\",\"a\":2.5}\n{\"b\":3}\n";
    sp_status rc = SP_ENOMEM;
    for (uint64_t n = 1; n < 100; n++) {
        sp__table *t = (sp__table *)1;
        sp__malloc_fail_after(n);
        rc = parse(1, text, strlen(text), NULL, NULL, &t);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            assert_f64(t, 0, 1, 2.5);
            assert_str(t, 1, 0, "[1,2]");
            assert_str(t, 1, 2, "3");
            sp__table_free(t);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(t);
    }
    assert_int_equal(rc, SP_OK);
}

static void test_table_read_files(void **state) {
    (void)state;
    char *dir = tu_tmpdir("ingest_table");
    assert_non_null(dir);
    char path[4200], jpath[4200];
    snprintf(path, sizeof path, "%s/data.csv", dir);
    snprintf(jpath, sizeof jpath, "%s/data.jsonl", dir);
    const char *csv = "a,b\n1,2\n3\n";
    const char *jl = "{\"a\":1}\n[]\n";
    assert_int_equal(tu_write_file(path, csv, strlen(csv)), 0);
    assert_int_equal(tu_write_file(jpath, jl, strlen(jl)), 0);
    sp__table *t = NULL;
    assert_int_equal(sp__table_read_csv(path, NULL, &t), SP_EBADINPUT);
    char want[4400];
    snprintf(want, sizeof want, "%s:3: expected 2 fields, found 1", path);
    assert_string_equal(sp_errmsg(), want);
    assert_int_equal(sp__table_read_jsonl(jpath, NULL, &t), SP_EBADINPUT);
    snprintf(want, sizeof want, "%s:2: expected a JSON object, found an array", jpath);
    assert_string_equal(sp_errmsg(), want);
    sp__table_opts o = {0};
    o.skip_errors = 1;
    assert_int_equal(sp__table_read_csv(path, &o, &t), SP_OK);
    assert_int_equal(t->n_rows, 1);
    sp__table_free(t);
    assert_int_equal(sp__table_read_jsonl(jpath, &o, &t), SP_OK);
    assert_int_equal(t->n_rows, 1);
    assert_int_equal(t->skipped, 1);
    sp__table_free(t);
    snprintf(path, sizeof path, "%s/missing.csv", dir);
    assert_int_equal(sp__table_read_csv(path, NULL, &t), SP_ENOTFOUND);
    assert_null(t);
    assert_non_null(strstr(sp_errmsg(), "missing.csv"));
    tu_rmrf(dir);
    free(dir);
}

/* ---------------------------------------------------------------- JSONL */

static void test_jsonl_union_of_keys(void **state) {
    (void)state;
    sp__table *t = jsonl_ok("{\"a\":1,\"b\":\"x\"}\n"
                            "{\"c\":2.5,\"a\":3}\n"
                            "\n"
                            "  \r\n"
                            "{\"b\":null}\r\n"
                            "{}",
                            NULL);
    assert_int_equal(t->n_cols, 3);
    assert_int_equal(t->n_rows, 4);
    assert_string_equal(t->cols[0].name, "a");
    assert_string_equal(t->cols[1].name, "b");
    assert_string_equal(t->cols[2].name, "c");
    assert_int(t, 0, 0, 1);
    assert_int(t, 0, 1, 3);
    assert_null_cell(t, 0, 2);
    assert_str(t, 1, 0, "x");
    assert_null_cell(t, 1, 1);
    assert_null_cell(t, 1, 2);
    assert_null_cell(t, 2, 0);
    assert_f64(t, 2, 1, 2.5);
    assert_null_cell(t, 2, 3);
    assert_int_equal(t->line[0], 1);
    assert_int_equal(t->line[1], 2);
    assert_int_equal(t->line[2], 5);
    assert_int_equal(t->line[3], 6);
    sp__table_free(t);
}

static void test_jsonl_values(void **state) {
    (void)state;
    sp__table *t =
        jsonl_ok("\xEF\xBB\xBF{\"n\": {\"x\": [1, 2], \"y\": \"\xC3\xA9\"}, \"arr\": [1, "
                 "2], \"t\": true, \"f\": false, \"z\": null, \"first name\": \"q\"}\n",
                 NULL);
    assert_int_equal(t->n_cols, 6);
    assert_str(t, 0, 0, "{\"x\":[1,2],\"y\":\"\xC3\xA9\"}");
    assert_str(t, 1, 0, "[1,2]");
    assert_int(t, 2, 0, 1);
    assert_int(t, 3, 0, 0);
    assert_int_equal(t->cols[4].type, SP_TYPE_STRING);
    assert_null_cell(t, 4, 0);
    assert_string_equal(t->cols[5].name, "first_name");
    sp__table_free(t);
}

static void test_jsonl_mixed_types(void **state) {
    (void)state;
    sp__table *t =
        jsonl_ok("{\"ir\":1,\"si\":\"a\",\"sr\":2.5,\"bs\":true,\"br\":false,\"nest\":5}\n"
                 "{\"ir\":2.5,\"si\":5,\"sr\":\"b\",\"bs\":\"x\",\"br\":0.5,"
                 "\"nest\":[1]}\n"
                 "{\"sr\":1.0,\"si\":-7,\"nest\":0.1}\n",
                 NULL);
    assert_f64(t, 0, 0, 1.0);
    assert_f64(t, 0, 1, 2.5);
    assert_str(t, 1, 0, "a");
    assert_str(t, 1, 1, "5");
    assert_str(t, 1, 2, "-7");
    assert_str(t, 2, 0, "2.5");
    assert_str(t, 2, 1, "b");
    assert_str(t, 2, 2, "1.0");
    assert_str(t, 3, 0, "true");
    assert_str(t, 3, 1, "x");
    assert_f64(t, 4, 0, 0.0);
    assert_f64(t, 4, 1, 0.5);
    assert_str(t, 5, 0, "5");
    assert_str(t, 5, 1, "[1]");
    assert_str(t, 5, 2, "0.1");
    sp__table_free(t);
}

static void test_jsonl_errors(void **state) {
    (void)state;
    jsonl_error("{\"a\":1}\n[1,2]\n", NULL, SP_EBADINPUT,
                "t.jsonl:2: expected a JSON object, found an array");
    jsonl_error("5\n", NULL, SP_EBADINPUT, "t.jsonl:1:1: *");
    jsonl_error("{\"a\":1}\n{\"a\":\n", NULL, SP_EBADINPUT, "t.jsonl:2:*");
    jsonl_error("{\"a\":1} x\n", NULL, SP_EBADINPUT, "t.jsonl:1:*");
    jsonl_error("{\"a\":\"\xFF\"}\n", NULL, SP_EBADINPUT, "t.jsonl:1:*");
    jsonl_error("{\"a b\":1,\"a_b\":2}\n", NULL, SP_EBADINPUT,
                "t.jsonl:1: keys \"a b\" and \"a_b\" both make column \"a_b\"");
    jsonl_error("{\"\":1}\n", NULL, SP_EBADINPUT, "t.jsonl:1: empty key (keys name the columns)");
    /* the message carries jansson's text */
    sp__table *t = NULL;
    assert_int_equal(parse(1, "{\"a\":tru}", 9, NULL, NULL, &t), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "invalid token"));
}

static void test_jsonl_skip(void **state) {
    (void)state;
    skips sk = {0};
    sp__table *t = NULL;
    const char *text = "{\"a\":1}\n"
                       "{\"a\":\n"
                       "[1]\n"
                       "{\"new\":1,\"a\":\"x\"}\n" /* bad for a:int64; "new" must not appear */
                       "{\"a\":4}\n";
    assert_int_equal(parse(1, text, strlen(text), "a:int64", &sk, &t), SP_OK);
    assert_int_equal(t->n_rows, 2);
    assert_int_equal(t->n_cols, 1);
    assert_int_equal(t->skipped, 3);
    assert_int_equal(sk.n, 3);
    assert_string_equal(sk.where[0], "t.jsonl:2");
    assert_string_equal(sk.where[1], "t.jsonl:3");
    assert_string_equal(sk.reason[1], "expected a JSON object, found an array");
    assert_string_equal(sk.where[2], "t.jsonl:4");
    assert_string_equal(sk.reason[2], "column \"a\" (int64): cannot parse \"x\"");
    assert_int(t, 0, 1, 4);
    assert_int_equal(t->line[1], 5);
    sp__table_free(t);
}

static void test_jsonl_empty(void **state) {
    (void)state;
    sp__table *t = jsonl_ok("", NULL);
    assert_int_equal(t->n_cols, 0);
    assert_int_equal(t->n_rows, 0);
    sp__table_free(t);
    t = jsonl_ok("\n  \n\r\n", NULL);
    assert_int_equal(t->n_rows, 0);
    sp__table_free(t);
    jsonl_error("", "a:int64", SP_EINVAL, "schema: no column \"a\" in t.jsonl (columns: none)");
}

static void test_jsonl_schema(void **state) {
    (void)state;
    sp__table *t = jsonl_ok("{\"ts\":\"2024-05-01T00:00:00Z\",\"n\":3,\"s\":5,\"i\":true,"
                            "\"e\":1714521600.5,\"j\":{\"k\":1},\"r\":2.0,\"fs\":\"1e2\"}\n"
                            "{\"ts\":1714521600,\"n\":null,\"s\":1.5,\"i\":\"-4\",\"e\":-0.5,"
                            "\"j\":false,\"r\":-3,\"fs\":7}\n",
                            "ts:timestamp,n:float64,s:string,i:int64,e:timestamp,j:string,"
                            "r:int64,fs:float64");
    assert_true(t->cols[0].is_timestamp);
    assert_int(t, 0, 0, 1714521600);
    assert_int(t, 0, 1, 1714521600);
    assert_f64(t, 1, 0, 3.0);
    assert_null_cell(t, 1, 1);
    assert_str(t, 2, 0, "5");
    assert_str(t, 2, 1, "1.5");
    assert_int(t, 3, 0, 1);
    assert_int(t, 3, 1, -4);
    assert_true(t->cols[4].is_timestamp);
    assert_int(t, 4, 0, 1714521600);
    assert_int(t, 4, 1, -1);
    assert_str(t, 5, 0, "{\"k\":1}");
    assert_str(t, 5, 1, "false");
    assert_int(t, 6, 0, 2);
    assert_int(t, 6, 1, -3);
    assert_f64(t, 7, 0, 100.0);
    assert_f64(t, 7, 1, 7.0);
    sp__table_free(t);

    jsonl_error("{\"n\":3.5}\n", "n:int64", SP_EBADINPUT,
                "t.jsonl:1: column \"n\" (int64): cannot convert 3.5");
    jsonl_error("{\"n\":[1]}\n", "n:float64", SP_EBADINPUT,
                "t.jsonl:1: column \"n\" (float64): cannot convert an array");
    jsonl_error("{\"n\":true}\n", "n:timestamp", SP_EBADINPUT,
                "t.jsonl:1: column \"n\" (timestamp): cannot convert true");
    jsonl_error("{\"n\":\"2024-02-30\"}\n", "n:timestamp", SP_EBADINPUT,
                "t.jsonl:1: column \"n\" (timestamp): cannot parse \"2024-02-30\": day 30 out of "
                "range for 2024-02");
    jsonl_error("{\"n\":1e300}\n", "n:int64", SP_EBADINPUT,
                "t.jsonl:1: column \"n\" (int64): cannot convert 1e+300");
    jsonl_error("{\"n\":1}\n", "zz:int64", SP_EINVAL,
                "schema: no column \"zz\" in t.jsonl (columns: n)");
    jsonl_error("{\"n\":1}\n", "n:int32", SP_EINVAL, "schema: entry \"n:int32\": unknown type*");
}

static void test_jsonl_many_rows(void **state) {
    (void)state;
    size_t rows = 20000;
    char *buf = malloc(rows * 40);
    size_t o = 0;
    for (size_t i = 0; i < rows; i++) {
        if (i < 5000)
            o += (size_t)sprintf(buf + o, "{\"a\":%zu}\n", i);
        else
            o += (size_t)sprintf(buf + o, "{\"a\":%zu,\"late\":\"v%zu\"}\n", i, i);
    }
    sp__table *t = NULL;
    assert_int_equal(parse(1, buf, o, NULL, NULL, &t), SP_OK);
    assert_int_equal(t->n_rows, rows);
    assert_int(t, 0, 19999, 19999);
    assert_null_cell(t, 1, 0);
    assert_null_cell(t, 1, 4999);
    assert_str(t, 1, 5000, "v5000");
    assert_str(t, 1, 19999, "v19999");
    sp__table_free(t);
    free(buf);

    /* more than SP_MAX_COLUMNS keys */
    buf = malloc(300 * 16);
    o = (size_t)sprintf(buf, "{");
    for (int i = 0; i < 257; i++)
        o += (size_t)sprintf(buf + o, "%s\"k%d\":1", i ? "," : "", i);
    o += (size_t)sprintf(buf + o, "}\n");
    expect_error(1, buf, o, NULL, SP_EBADINPUT,
                 "t.jsonl:1: key \"k256\" would be column 257; at most 256 columns");
    free(buf);
}

/* ---------------------------------------------------------------- timestamps */

static int64_t ts(const char *s) {
    int64_t v = 0;
    sp_status rc = sp__parse_timestamp(s, strlen(s), &v);
    if (rc != SP_OK) fail_msg("\"%s\": %s", s, sp_errmsg());
    return v;
}

static void ts_bad(const char *s, const char *why) {
    int64_t v = 12345;
    assert_int_equal(sp__parse_timestamp(s, strlen(s), &v), SP_EBADINPUT);
    assert_true(v == 12345);
    char q[300];
    snprintf(q, sizeof q, "\"%s\"", s);
    if (!strstr(sp_errmsg(), q)) fail_msg("message \"%s\" does not name %s", sp_errmsg(), q);
    if (why && !strstr(sp_errmsg(), why))
        fail_msg("message \"%s\" does not say \"%s\"", sp_errmsg(), why);
}

static void test_timestamp_forms(void **state) {
    (void)state;
    assert_true(ts("1970-01-01") == 0);
    assert_true(ts("2024-05-01") == 1714521600);
    assert_true(ts("2024-05-01T12:34:56") == 1714566896);
    assert_true(ts("2024-05-01 12:34:56") == 1714566896);
    assert_true(ts("2024-05-01t12:34:56z") == 1714566896);
    assert_true(ts("2024-05-01T12:34:56Z") == 1714566896);
    assert_true(ts("2024-05-01T12:34:56.999999Z") == 1714566896);
    assert_true(ts("2024-05-01T12:34:56,5") == 1714566896);
    assert_true(ts("2024-05-01T12:34") == 1714566840);
    assert_true(ts("2024-05-01T12:34:56+02:00") == 1714566896 - 7200);
    assert_true(ts("2024-05-01T12:34:56-0130") == 1714566896 + 5400);
    assert_true(ts("2024-05-01T12:34:56.123+05") == 1714566896 - 18000);
    assert_true(ts("2000-02-29") == 951782400);
    assert_true(ts("2024-02-29T23:59:59Z") == 1709251199);
    assert_true(ts("2024-02-29T23:59:60Z") == 1709251200); /* leap second */
    assert_true(ts("1969-12-31T23:00:00Z") == -3600);
    assert_true(ts("0001-01-01") == -62135596800);
    assert_true(ts("9999-12-31T23:59:59Z") == 253402300799);
}

static void test_timestamp_epoch(void **state) {
    (void)state;
    assert_true(ts("0") == 0);
    assert_true(ts("1714521600") == 1714521600);
    assert_true(ts("+5") == 5);
    assert_true(ts("-1") == -1);
    assert_true(ts("1.9") == 1);
    assert_true(ts("-1.5") == -2);
    assert_true(ts("-2.0") == -2);
    assert_true(ts("-0.5") == -1);
    assert_true(ts("2024") == 2024);
    assert_true(ts("9223372036854775807") == INT64_MAX);
    assert_true(ts("-9223372036854775808") == INT64_MIN);
    assert_true(ts("-9223372036854775807.5") == INT64_MIN);
    ts_bad("9223372036854775808", "out of range");
    ts_bad("-9223372036854775808.1", "out of range");
    ts_bad("99999999999999999999999", "out of range");
    ts_bad("1.", "digits after the decimal point");
    ts_bad("1e9", NULL);
    ts_bad(".5", NULL);
    ts_bad("-", NULL);
    ts_bad(" 1", NULL);
}

static void test_timestamp_invalid(void **state) {
    (void)state;
    ts_bad("2023-02-29", "day 29 out of range for 2023-02");
    ts_bad("1900-02-29", "day 29 out of range");
    ts_bad("2024-04-31", "day 31 out of range");
    ts_bad("2024-01-00", "day 00 out of range");
    ts_bad("2024-13-01", "month 13 out of range");
    ts_bad("2024-00-10", "month 00 out of range");
    ts_bad("2024-05-01T24:00:00", "hour 24 out of range");
    ts_bad("2024-05-01T12:60:00", "minute 60 out of range");
    ts_bad("2024-05-01T12:00:61", "second 61 out of range");
    ts_bad("2024-5-1", "expected a date");
    ts_bad("2024-05-01T", "expected a time");
    ts_bad("2024-05-01T12", "expected a time");
    ts_bad("2024-05-01T12:00:0", "seconds");
    ts_bad("2024-05-01T12:00:00.", "fractional");
    ts_bad("2024-05-01Z", "expected 'T'");
    ts_bad("2024-05-01T12:00+25:00", "offset");
    ts_bad("2024-05-01T12:00+05:", "offset");
    ts_bad("2024-05-01T12:00:00 UTC", "unexpected text");
    ts_bad("2024-05-01x", NULL);
    ts_bad("abc", NULL);
    ts_bad("", "empty");
    int64_t v;
    /* the length bounds the text: "2024-05-01" + garbage beyond len is ignored */
    assert_int_equal(sp__parse_timestamp("2024-05-01XYZ", 10, &v), SP_OK);
    assert_true(v == 1714521600);
    assert_int_equal(sp__parse_timestamp("2024\x00-05", 7, &v), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "\\x00"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_basic),
        cmocka_unit_test(test_csv_quoting),
        cmocka_unit_test(test_csv_crlf),
        cmocka_unit_test(test_csv_bom_and_final_line),
        cmocka_unit_test(test_csv_blank_lines),
        cmocka_unit_test(test_csv_empty_input),
        cmocka_unit_test(test_csv_header_only),
        cmocka_unit_test(test_csv_names_sanitized),
        cmocka_unit_test(test_csv_header_errors),
        cmocka_unit_test(test_csv_infer_types),
        cmocka_unit_test(test_csv_nulls),
        cmocka_unit_test(test_csv_schema_override),
        cmocka_unit_test(test_csv_schema_bad),
        cmocka_unit_test(test_csv_schema_value_errors),
        cmocka_unit_test(test_csv_field_count_fail),
        cmocka_unit_test(test_csv_field_count_skip),
        cmocka_unit_test(test_csv_unterminated_quote),
        cmocka_unit_test(test_csv_text_after_quote),
        cmocka_unit_test(test_csv_invalid_utf8),
        cmocka_unit_test(test_csv_valid_utf8),
        cmocka_unit_test(test_csv_skip_reports_utf8),
        cmocka_unit_test(test_csv_large),
        cmocka_unit_test(test_csv_out_of_memory),
        cmocka_unit_test(test_jsonl_out_of_memory),
        cmocka_unit_test(test_table_read_files),
        cmocka_unit_test(test_jsonl_union_of_keys),
        cmocka_unit_test(test_jsonl_values),
        cmocka_unit_test(test_jsonl_mixed_types),
        cmocka_unit_test(test_jsonl_errors),
        cmocka_unit_test(test_jsonl_skip),
        cmocka_unit_test(test_jsonl_empty),
        cmocka_unit_test(test_jsonl_schema),
        cmocka_unit_test(test_jsonl_many_rows),
        cmocka_unit_test(test_timestamp_forms),
        cmocka_unit_test(test_timestamp_epoch),
        cmocka_unit_test(test_timestamp_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
