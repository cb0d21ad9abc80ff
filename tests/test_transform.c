/* test_transform.c — unit tests of the feature transforms (softpipe/transform.h): every step on
 * small inputs worked out by hand, fitted statistics (mean, population std, median, NumPy-linear
 * quantiles, vocabularies with their tie rule), missing values, the JSON round trip, errors with
 * their messages (spec paths, columns, rows), thread-count independence, datasets and tables, and
 * clean failure when any allocation fails. The comparison with a NumPy reference and the
 * CLI-versus-Python byte identity live in tests/python/test_transform.py and
 * tests/cli/test_cli_transform.py. */
#include "core_internal.h"
#include "serve/serve_transform_internal.h"
#include "softpipe.h"
#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static sp_transform *load(const char *json) {
    sp_transform *tf = NULL;
    sp_status rc = sp_transform_load_buffer("spec.json", json, strlen(json), &tf);
    if (rc != SP_OK) fail_msg("load: %s", sp_errmsg());
    return tf;
}

static void expect_load_error(const char *json, sp_status code, const char *needle) {
    sp_transform *tf = (sp_transform *)1;
    sp_status rc = sp_transform_load_buffer("spec.json", json, strlen(json), &tf);
    if (rc != code) fail_msg("%s\n  -> %d (%s), expected %d", json, rc, sp_errmsg(), code);
    assert_null(tf);
    if (!strstr(sp_errmsg(), needle))
        fail_msg("%s\n  message \"%s\" lacks \"%s\"", json, sp_errmsg(), needle);
    assert_int_equal(strncmp(sp_errmsg(), "spec.json", 9), 0);
}

static void assert_close(double a, double b) {
    if (!(fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b)))) fail_msg("%.17g != %.17g", a, b);
}

static void assert_msg(const char *needle) {
    if (!strstr(sp_errmsg(), needle)) fail_msg("message \"%s\" lacks \"%s\"", sp_errmsg(), needle);
}

static const double NA = NAN;

/* One numeric column "x" of n values. */
static sp_transform_input num_input(sp_transform_column *col, const char *name, const double *v,
                                    uint64_t n) {
    memset(col, 0, sizeof *col);
    col->name = name;
    col->f64 = v;
    return (sp_transform_input){col, 1, n};
}

static void fit_ok(sp_transform *tf, const sp_transform_input *in) {
    if (sp_transform_fit(tf, in, NULL) != SP_OK) fail_msg("fit: %s", sp_errmsg());
    assert_true(sp_transform_fitted(tf));
}

static void apply_ok(const sp_transform *tf, const sp_transform_input *in, float *out, size_t cap) {
    if (sp_transform_apply(tf, in, NULL, out, cap) != SP_OK) fail_msg("apply: %s", sp_errmsg());
}

/* ------------------------------------------------------------------ number steps */

/* x = 1, NaN, 4, 7, 100: fill mean -> 28 (of 1,4,7,100), clip [0, 10] -> 1 10 4 7 10,
 * standardize: mean 6.4, population std sqrt(((5.4)^2 + 3.6^2 + 2.4^2 + 0.6^2 + 3.6^2) / 5). */
static void test_transform_number_chain(void **state) {
    (void)state;
    sp_transform *tf = load("{\"columns\": [{\"name\": \"x\", \"steps\": [{\"fill\": \"mean\"}, "
                            "{\"clip\": [0, 10]}, {\"standardize\": {}}]}]}");
    assert_false(sp_transform_fitted(tf));
    assert_int_equal(sp_transform_n_features(tf), 0);
    const double x[5] = {1, NA, 4, 7, 100};
    sp_transform_column col;
    sp_transform_input in = num_input(&col, "x", x, 5);
    fit_ok(tf, &in);
    const tf_step *s = tf->cols[0].steps;
    assert_close(s[0].num, 28.0);
    double sd = sqrt((5.4 * 5.4 + 3.6 * 3.6 + 2.4 * 2.4 + 0.6 * 0.6 + 3.6 * 3.6) / 5);
    assert_close(s[2].mean, 6.4);
    assert_close(s[2].std, sd);
    assert_int_equal(sp_transform_fit_rows(tf), 5);
    assert_int_equal(sp_transform_n_features(tf), 1);
    assert_string_equal(sp_transform_feature_name(tf, 0), "x");
    float out[5];
    apply_ok(tf, &in, out, 5);
    const double want[5] = {1, 10, 4, 7, 10};
    for (int i = 0; i < 5; i++)
        assert_true(out[i] == (float)((want[i] - 6.4) / sd));
    sp_transform_free(tf);
}

/* Median of an even count averages the middle two; of an odd count takes the middle. Without a
 * fill, a missing value stays NaN through clip, log1p and standardize. */
static void test_transform_median_and_missing(void **state) {
    (void)state;
    sp_transform *tf = load("{\"columns\": [{\"name\": \"x\", \"steps\": [{\"fill\": "
                            "\"median\"}]}, {\"name\": \"y\", \"steps\": [{\"clip\": [null, 5]}, "
                            "{\"log1p\": {}}, {\"standardize\": {}}]}]}");
    const double x[5] = {9, 1, NA, 3, 4}, y[5] = {0, NA, 1, 9, 2};
    sp_transform_column cols[2] = {{.name = "y", .f64 = y}, {.name = "x", .f64 = x}};
    sp_transform_input in = {cols, 2, 5};
    fit_ok(tf, &in);
    assert_close(tf->cols[0].steps[0].num, 3.5); /* 1 3 4 9 */
    float out[10];
    apply_ok(tf, &in, out, 10);
    assert_true(out[2 * 2] == 3.5f);
    assert_true(isnan(out[1 * 2 + 1]));
    /* y after clip: 0, -, 1, 5, 2 -> log1p -> standardized over 4 values */
    double l[4] = {log1p(0), log1p(1), log1p(5), log1p(2)}, m = 0, ss = 0;
    for (int i = 0; i < 4; i++)
        m += l[i] / 4;
    for (int i = 0; i < 4; i++)
        ss += (l[i] - m) * (l[i] - m);
    assert_close(tf->cols[1].steps[2].mean, m);
    assert_close(tf->cols[1].steps[2].std, sqrt(ss / 4));
    assert_true(out[3 * 2 + 1] == (float)((log1p(5) - m) / sqrt(ss / 4)));
    /* A constant fill and most_frequent on numbers (ties -> the smallest value). */
    sp_transform *t2 = load("{\"columns\": [{\"name\": \"x\", \"steps\": [{\"fill\": -1}]}, "
                            "{\"name\": \"y\", \"steps\": [{\"fill\": \"most_frequent\"}]}]}");
    const double y2[6] = {5, 2, NA, 5, 2, 7};
    cols[0].f64 = y2;
    in.n_rows = 5;
    sp_transform_column c2[2] = {{.name = "x", .f64 = x}, {.name = "y", .f64 = y2}};
    sp_transform_input in2 = {c2, 2, 6};
    const double x6[6] = {NA, 1, 2, 3, 4, 5};
    c2[0].f64 = x6;
    fit_ok(t2, &in2);
    assert_close(t2->cols[1].steps[0].num, 2.0);
    float o2[12];
    apply_ok(t2, &in2, o2, 12);
    assert_true(o2[0] == -1.0f && o2[2 * 2 + 1] == 2.0f);
    sp_transform_free(t2);
    sp_transform_free(tf);
}

/* Quantiles 1..10 at 1/4, 2/4, 3/4 with NumPy's linear rule: 3.25, 5.5, 7.75; a value equal to a
 * boundary goes to the bucket above it; ties collapse boundaries. */
static void test_transform_bucketize(void **state) {
    (void)state;
    sp_transform *tf = load("{\"columns\": [{\"name\": \"x\", \"steps\": [{\"bucketize\": "
                            "{\"quantiles\": 4}}]}, {\"name\": \"x\", \"as\": \"xb\", \"steps\": "
                            "[{\"bucketize\": {\"boundaries\": [2, 5]}}, {\"one_hot\": {}}]}]}");
    double x[10];
    for (int i = 0; i < 10; i++)
        x[i] = i + 1;
    sp_transform_column col;
    sp_transform_input in = num_input(&col, "x", x, 10);
    fit_ok(tf, &in);
    const tf_step *b = &tf->cols[0].steps[0];
    assert_int_equal(b->n_bounds, 3);
    assert_close(b->bounds[0], 3.25);
    assert_close(b->bounds[1], 5.5);
    assert_close(b->bounds[2], 7.75);
    assert_int_equal(sp_transform_n_features(tf), 4);
    assert_string_equal(sp_transform_feature_name(tf, 1), "xb[0]");
    assert_string_equal(sp_transform_feature_name(tf, 3), "xb[2]");
    const double q[4] = {3.25, 3.0, 100, NA};
    in = num_input(&col, "x", q, 4);
    float out[16];
    apply_ok(tf, &in, out, 16);
    assert_true(out[0] == 1 && out[4] == 0 && out[8] == 3 && isnan(out[12]));
    /* 3.25 in [2, 5) -> one-hot bucket 1; 100 -> bucket 2; NaN -> all NaN */
    assert_true(out[1] == 0 && out[2] == 1 && out[3] == 0);
    assert_true(out[9] == 0 && out[10] == 0 && out[11] == 1);
    assert_true(isnan(out[13]) && isnan(out[14]) && isnan(out[15]));
    sp_transform_free(tf);
    /* All values equal: every quantile is the same, one boundary, two buckets. */
    tf = load("{\"columns\": [{\"name\": \"x\", \"steps\": [{\"bucketize\": {\"quantiles\": 10}}, "
              "{\"one_hot\": {}}]}]}");
    const double same[3] = {2, 2, 2};
    in = num_input(&col, "x", same, 3);
    fit_ok(tf, &in);
    assert_int_equal(tf->cols[0].steps[0].n_bounds, 1);
    assert_int_equal(sp_transform_n_features(tf), 2);
    sp_transform_free(tf);
}

/* ------------------------------------------------------------------ text steps */

/* Counts: b 3, a 2, c 2, d 1 (+ missing 2). Ties break in byte order (a before c); min_count 2
 * drops d; max_size 2 keeps b, a. A fill "most_frequent" adds the missing rows to b. */
static void test_transform_vocabulary(void **state) {
    (void)state;
    sp_transform *tf =
        load("{\"columns\": [{\"name\": \"s\", \"steps\": [{\"vocabulary\": {\"min_count\": 2}}, "
             "{\"one_hot\": {}}]}, {\"name\": \"s\", \"as\": \"t\", \"steps\": [{\"fill\": "
             "\"most_frequent\"}, {\"vocabulary\": {\"max_size\": 2}}]}]}");
    const char *s[10] = {"c", "b", NULL, "a", "b", "d", "c", "a", "b", NULL};
    sp_transform_column col = {.name = "s", .str = s};
    sp_transform_input in = {&col, 1, 10};
    fit_ok(tf, &in);
    const tf_vocab *v = &tf->cols[0].steps[0].vocab;
    assert_int_equal(v->n, 3);
    assert_string_equal(v->values[0].s, "b");
    assert_string_equal(v->values[1].s, "a");
    assert_string_equal(v->values[2].s, "c");
    assert_int_equal(v->counts[0], 3);
    const tf_vocab *v2 = &tf->cols[1].steps[1].vocab;
    assert_int_equal(v2->n, 2);
    assert_string_equal(tf->cols[1].steps[0].str.s, "b");
    assert_int_equal(v2->counts[0], 5); /* 3 + the 2 filled rows */
    assert_int_equal(sp_transform_n_features(tf), 5);
    const char *names[5] = {"s=b", "s=a", "s=c", "s:oov", "t"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(sp_transform_feature_name(tf, (size_t)i), names[i]);
    float out[50];
    apply_ok(tf, &in, out, 50);
    /* row 0 "c": one-hot index 2, t: "c" is out of t's vocabulary -> index 2 (= its OOV) */
    assert_true(out[0] == 0 && out[1] == 0 && out[2] == 1 && out[3] == 0 && out[4] == 2);
    /* row 2 missing: one-hot all NaN; t filled with "b" -> 0 */
    for (int k = 0; k < 4; k++)
        assert_true(isnan(out[2 * 5 + k]));
    assert_true(out[2 * 5 + 4] == 0);
    /* row 5 "d": OOV */
    assert_true(out[5 * 5 + 3] == 1 && out[5 * 5 + 0] == 0);
    sp_transform_free(tf);
}

/* A vocabulary over numbers: int64 12345 and float64 12345.0 are the same text "12345", 0.5 is
 * "0.5"; strings with lengths need no NUL. */
static void test_transform_vocabulary_numbers(void **state) {
    (void)state;
    sp_transform *tf = load("{\"columns\": [{\"name\": \"id\", \"type\": \"string\", \"steps\": "
                            "[{\"vocabulary\": {}}]}]}");
    const int64_t ids[4] = {12345, 7, 12345, -3};
    sp_transform_column col = {.name = "id", .i64 = ids};
    sp_transform_input in = {&col, 1, 4};
    fit_ok(tf, &in);
    const tf_vocab *v = &tf->cols[0].steps[0].vocab;
    assert_int_equal(v->n, 3);
    assert_string_equal(v->values[0].s, "12345");
    assert_string_equal(v->values[1].s, "-3");
    const double f[4] = {12345.0, 0.5, NA, -3};
    col = (sp_transform_column){.name = "id", .f64 = f};
    float out[4];
    apply_ok(tf, &in, out, 4);
    assert_true(out[0] == 0 && out[1] == 3 && isnan(out[2]) && out[3] == 1);
    const char *raw[2] = {"7xx", "12345yyy"};
    const size_t len[2] = {1, 5};
    col = (sp_transform_column){.name = "id", .str = raw, .str_len = len};
    in.n_rows = 2;
    apply_ok(tf, &in, out, 2);
    assert_true(out[0] == 2 && out[1] == 0);
    /* is_null overrides the value */
    const uint8_t nul[2] = {1, 0};
    col.is_null = nul;
    apply_ok(tf, &in, out, 2);
    assert_true(isnan(out[0]) && out[1] == 0);
    sp_transform_free(tf);
}

/* ------------------------------------------------------------------ JSON */

static void test_transform_json_roundtrip(void **state) {
    (void)state;
    sp_transform *tf = load(
        "{\"columns\": [{\"name\": \"a\", \"steps\": [{\"fill\": {\"value\": 0.1}}, {\"clip\": "
        "[-1, null]}, {\"standardize\": {}}]}, {\"name\": \"s\", \"steps\": [{\"fill\": "
        "{\"value\": \"na\\\"me\\n\"}}, {\"vocabulary\": {\"max_size\": 10}}, {\"one_hot\": "
        "{}}]}, {\"name\": \"a\", \"as\": \"ab\", \"steps\": [{\"log1p\": {}}, {\"bucketize\": "
        "{\"quantiles\": 3}}]}]}");
    /* An unfitted spec writes back as a spec (no statistics) and loads again. */
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(sp_transform_to_json(tf, &json, &len), SP_OK);
    assert_null(strstr(json, "\"features\""));
    sp_transform *again = load(json);
    sp_transform_free(again);
    sp_free(json);
    const double a[6] = {0.5, NA, 2.25, 1e-7, 3, 1.0 / 3};
    const char *s[6] = {"x", "y", NULL, "x", "\xc3\xa9t\xc3\xa9", "y"};
    sp_transform_column cols[2] = {{.name = "a", .f64 = a}, {.name = "s", .str = s}};
    sp_transform_input in = {cols, 2, 6};
    fit_ok(tf, &in);
    assert_int_equal(sp_transform_to_json(tf, &json, &len), SP_OK);
    assert_int_equal(strlen(json), len);
    assert_non_null(strstr(json, "\"fill\": {\"value\": 0.1}"));
    assert_non_null(strstr(json, "\"s=\\u00e9t\\u00e9\"") == NULL ? strstr(json, "s=\xc3\xa9t")
                                                                  : json);
    sp_transform *back = load(json);
    assert_true(sp_transform_fitted(back));
    char *json2;
    assert_int_equal(sp_transform_to_json(back, &json2, NULL), SP_OK);
    assert_string_equal(json, json2); /* the text is a fixed point */
    float o1[6 * 8], o2[6 * 8];
    size_t nf = sp_transform_n_features(tf);
    assert_int_equal(nf, sp_transform_n_features(back));
    apply_ok(tf, &in, o1, sizeof o1 / 4);
    apply_ok(back, &in, o2, sizeof o2 / 4);
    assert_memory_equal(o1, o2, 6 * nf * sizeof(float));
    /* save + load from a file */
    char *dir = tu_tmpdir("transform_json");
    char *path = sp__path_join(dir, "fitted.json");
    assert_int_equal(sp_transform_save(tf, path), SP_OK);
    sp_transform *f = NULL;
    assert_int_equal(sp_transform_load(path, &f), SP_OK);
    assert_int_equal(sp_transform_n_features(f), nf);
    size_t n_in = sp_transform_n_inputs(f);
    assert_int_equal(n_in, 2);
    int text = -1;
    assert_string_equal(sp_transform_input_name(f, 1, &text), "s");
    assert_int_equal(text, 1);
    sp_transform_free(f);
    assert_int_equal(sp_transform_load("/nonexistent/t.json", &f), SP_ENOTFOUND);
    sp__free(path);
    tu_rmrf(dir);
    free(dir);
    sp_free(json);
    sp_free(json2);
    sp_transform_free(back);
    sp_transform_free(tf);
}

static void test_transform_spec_errors(void **state) {
    (void)state;
    expect_load_error("{\"columns\": [", SP_EBADINPUT, "spec.json:1:");
    expect_load_error("[]", SP_EBADINPUT, "must be a JSON object");
    expect_load_error("{\"columns\": []}", SP_EBADINPUT, "non-empty array");
    expect_load_error("{\"colums\": []}", SP_EBADINPUT, "unknown key \"colums\"");
    expect_load_error("{\"version\": 2, \"columns\": [{\"name\": \"a\", \"steps\": []}]}",
                      SP_EUNSUPPORTED, "version");
    expect_load_error("{\"columns\": [{\"steps\": []}]}", SP_EBADINPUT,
                      "columns[0]: missing \"name\"");
    expect_load_error("{\"columns\": [{\"name\": \"\", \"steps\": []}]}", SP_EBADINPUT,
                      "non-empty");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"stanardize\": {}}]}]}",
                      SP_EBADINPUT,
                      "columns[0] (\"a\"): steps[0]: unknown step \"stanardize\" (expected fill");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"log1p\": {}, \"clip\": "
                      "[0, 1]}]}]}",
                      SP_EBADINPUT, "one key");
    expect_load_error("{\"columns\": [{\"name\": \"city\", \"steps\": [{\"vocabulary\": {}}, "
                      "{\"log1p\": {}}]}]}",
                      SP_EBADINPUT, "(\"city\"): steps[1] (log1p): log1p after vocabulary");
    expect_load_error("{\"columns\": [{\"name\": \"city\", \"steps\": [{\"log1p\": {}}, "
                      "{\"vocabulary\": {}}]}]}",
                      SP_EBADINPUT, "steps[0] (log1p): log1p needs numbers");
    expect_load_error("{\"columns\": [{\"name\": \"c\", \"type\": \"string\", \"steps\": "
                      "[{\"fill\": \"mean\"}, {\"vocabulary\": {}}]}]}",
                      SP_EBADINPUT, "fill \"mean\" needs numbers");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"type\": \"string\", \"steps\": []}]}",
                      SP_EBADINPUT, "needs a vocabulary");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"one_hot\": {}}]}]}",
                      SP_EBADINPUT, "one_hot needs a vocabulary or bucketize");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"bucketize\": "
                      "{\"boundaries\": [1]}}, {\"one_hot\": {}}, {\"one_hot\": {}}]}]}",
                      SP_EBADINPUT, "last step");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"clip\": [5, 1]}]}]}",
                      SP_EBADINPUT, "above its high bound");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"bucketize\": "
                      "{\"boundaries\": [1, 1]}}]}]}",
                      SP_EBADINPUT, "boundaries[1]: 1 does not increase");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"bucketize\": "
                      "{\"quantiles\": 1}}]}]}",
                      SP_EBADINPUT, "at least 2");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"standardize\": "
                      "{\"mean\": 1}}]}]}",
                      SP_EBADINPUT, "both");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"standardize\": "
                      "{\"mean\": 1, \"std\": -1}}]}]}",
                      SP_EBADINPUT, "expected >= 0");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"vocabulary\": "
                      "{\"values\": [\"x\", \"x\"]}}]}]}",
                      SP_EBADINPUT, "repeats values[0]");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"fill\": \"avg\"}]}]}",
                      SP_EBADINPUT, "unknown fill strategy \"avg\"");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"fill\": \"x\"}]}]}",
                      SP_EBADINPUT, "unknown fill strategy");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"fill\": {\"value\": "
                      "\"x\"}}]}]}",
                      SP_EBADINPUT, "is text, but the column holds numbers");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"log1p\": 1}]}]}",
                      SP_EBADINPUT, "write {}");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"standardize\": {}}]}], "
                      "\"features\": [\"a\"]}",
                      SP_EBADINPUT, "not fitted");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"clip\": [0, 1]}]}], "
                      "\"features\": [\"b\"]}",
                      SP_EBADINPUT, "features[0] is not \"a\"");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"vocabulary\": "
                      "{\"max_size\": 1, \"values\": [\"x\", \"y\"]}}]}]}",
                      SP_EBADINPUT, "more than \"max_size\"");
    expect_load_error("{\"columns\": [{\"name\": \"a\", \"steps\": [{\"vocabulary\": "
                      "{\"max_size\": -1}}]}]}",
                      SP_EBADINPUT, "expected 0 to");
}

/* ------------------------------------------------------------------ data errors */

static void test_transform_apply_errors(void **state) {
    (void)state;
    sp_transform *tf = load("{\"columns\": [{\"name\": \"income\", \"steps\": [{\"log1p\": {}}]}, "
                            "{\"name\": \"age\", \"steps\": [{\"standardize\": {}}]}]}");
    const double inc[4] = {1, 2, 3, 4}, age[4] = {1, 1, 1, 1};
    sp_transform_column cols[2] = {{.name = "income", .f64 = inc}, {.name = "age", .f64 = age}};
    sp_transform_input in = {cols, 2, 4};
    float out[8];
    /* unfitted */
    assert_int_equal(sp_transform_apply(tf, &in, NULL, out, 8), SP_EINVAL);
    assert_msg("not fitted: columns[1] (\"age\") steps[0] (standardize) has no statistics");
    fit_ok(tf, &in);
    assert_close(tf->cols[1].steps[0].std, 0); /* constant column: scale 1 */
    apply_ok(tf, &in, out, 8);
    assert_true(out[1] == 0);
    /* out too small */
    assert_int_equal(sp_transform_apply(tf, &in, NULL, out, 7), SP_EINVAL);
    assert_msg("out holds 7 floats");
    /* log1p domain, with the row (plus first_row) and the column; the lowest bad row wins */
    const double bad[4] = {1, -2, 3, -5};
    cols[0].f64 = bad;
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.source = "batch";
    o.first_row = 100;
    assert_int_equal(sp_transform_apply(tf, &in, &o, out, 8), SP_EBADINPUT);
    assert_string_equal(sp_errmsg(), "batch: row 101: column \"income\": log1p of -2 is undefined "
                                     "(it needs values > -1; clip before log1p)");
    /* fit reports it too, and leaves the fitted transform unchanged */
    double before = tf->cols[1].steps[0].mean;
    assert_int_equal(sp_transform_fit(tf, &in, NULL), SP_EBADINPUT);
    assert_msg("row 1: column \"income\": steps[0] (log1p): log1p of -2");
    assert_true(sp_transform_fitted(tf));
    assert_close(tf->cols[1].steps[0].mean, before);
    /* a missing column, and text for a number column */
    in.n_columns = 1;
    cols[0].f64 = inc;
    assert_int_equal(sp_transform_apply(tf, &in, NULL, out, 8), SP_EBADINPUT);
    assert_msg("no input column \"age\" (the transform reads income, age)");
    const char *txt[4] = {"a", "b", "c", "d"};
    sp_transform_column tcols[2] = {{.name = "income", .f64 = inc}, {.name = "age", .str = txt}};
    sp_transform_input tin = {tcols, 2, 4};
    assert_int_equal(sp_transform_apply(tf, &tin, NULL, out, 8), SP_EBADINPUT);
    assert_msg("column \"age\": the input holds text, but its steps need numbers");
    tcols[1] = (sp_transform_column){.name = "age", .f64 = age, .i64 = (const int64_t *)age};
    assert_int_equal(sp_transform_apply(tf, &tin, NULL, out, 8), SP_EINVAL);
    assert_msg("set exactly one of f64, i64 and str");
    sp_transform_free(tf);

    /* fit errors: no rows, all missing, infinity under a statistic */
    tf = load("{\"columns\": [{\"name\": \"age\", \"steps\": [{\"fill\": \"mean\"}]}]}");
    const double nan2[2] = {NA, NA}, inf2[2] = {1, INFINITY};
    sp_transform_column c;
    in = num_input(&c, "age", nan2, 0);
    assert_int_equal(sp_transform_fit(tf, &in, NULL), SP_EBADINPUT);
    assert_msg("no rows");
    in.n_rows = 2;
    assert_int_equal(sp_transform_fit(tf, &in, NULL), SP_EBADINPUT);
    assert_msg("column \"age\": steps[0] (fill): no values to fit (all 2 rows are missing)");
    c.f64 = inf2;
    assert_int_equal(sp_transform_fit(tf, &in, NULL), SP_EBADINPUT);
    assert_msg("row 1: column \"age\": steps[0] (fill): the value is inf");
    assert_false(sp_transform_fitted(tf));
    sp_transform_free(tf);
}

/* ------------------------------------------------------------------ threads */

static void test_transform_threads_identical(void **state) {
    (void)state;
    sp_transform *tf = load(
        "{\"columns\": [{\"name\": \"x\", \"steps\": [{\"fill\": \"median\"}, {\"log1p\": {}}, "
        "{\"standardize\": {}}]}, {\"name\": \"x\", \"as\": \"q\", \"steps\": [{\"bucketize\": "
        "{\"quantiles\": 16}}, {\"one_hot\": {}}]}, {\"name\": \"k\", \"steps\": "
        "[{\"vocabulary\": {\"max_size\": 50}}, {\"one_hot\": {}}]}]}");
    enum { N = 200003 };
    double *x = malloc(N * sizeof *x);
    int64_t *k = malloc(N * sizeof *k);
    uint64_t st = 42;
    for (size_t i = 0; i < N; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (i % 97 == 0) ? NA : (double)(st >> 40) / 1e3;
        k[i] = (int64_t)((st >> 20) % 300);
    }
    sp_transform_column cols[2] = {{.name = "x", .f64 = x}, {.name = "k", .i64 = k}};
    sp_transform_input in = {cols, 2, N};
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.n_threads = 4;
    assert_int_equal(sp_transform_fit(tf, &in, &o), SP_OK);
    size_t nf = sp_transform_n_features(tf);
    assert_int_equal(nf, 1 + 16 + 51);
    float *a = malloc(N * nf * sizeof *a), *b = malloc(N * nf * sizeof *b);
    o.n_threads = 1;
    assert_int_equal(sp_transform_apply(tf, &in, &o, a, N * nf), SP_OK);
    o.n_threads = 7;
    assert_int_equal(sp_transform_apply(tf, &in, &o, b, N * nf), SP_OK);
    assert_memory_equal(a, b, N * nf * sizeof *a);
    o.n_threads = 0;
    assert_int_equal(sp_transform_apply(tf, &in, &o, b, N * nf), SP_OK);
    assert_memory_equal(a, b, N * nf * sizeof *a);
    /* The reported bad row is the lowest one for any thread count. */
    x[150000] = -7;
    x[190000] = -9;
    for (int t = 1; t <= 8; t += 7) {
        o.n_threads = t;
        assert_int_equal(sp_transform_apply(tf, &in, &o, b, N * nf), SP_EBADINPUT);
        assert_msg("row 150000: column \"x\": log1p of -7");
    }
    free(a);
    free(b);
    free(x);
    free(k);
    sp_transform_free(tf);
}

/* ------------------------------------------------------------------ datasets and tables */

static void test_transform_dataset(void **state) {
    (void)state;
    char *dir = tu_tmpdir("transform_ds");
    char *path = sp__path_join(dir, "ds");
    sp_column extra[2] = {{"age", SP_TYPE_FLOAT64}, {"city", SP_TYPE_STRING}};
    sp_dataset_writer *w = NULL;
    assert_int_equal(sp_dataset_writer_open(path, extra, 2, NULL, &w), SP_OK);
    const char *cities[6] = {"paris", "lyon", NULL, "paris", "nice", "paris"};
    const double ages[6] = {30, 40, NA, 50, 20, 10};
    for (int i = 0; i < 6; i++) {
        sp_value v[6] = {0};
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        v[0].v.str.s = key;
        v[0].v.str.len = (uint32_t)strlen(key);
        v[1].v.i = i % 2; /* label */
        v[2].is_null = v[3].is_null = 1;
        v[4].is_null = isnan(ages[i]);
        v[4].v.f = ages[i];
        v[5].is_null = cities[i] == NULL;
        if (cities[i]) {
            v[5].v.str.s = cities[i];
            v[5].v.str.len = (uint32_t)strlen(cities[i]);
        }
        assert_int_equal(sp_dataset_writer_add(w, "", 0, v), SP_OK);
    }
    assert_int_equal(sp_dataset_writer_commit(w), SP_OK);
    sp_dataset_writer_close(w);
    sp_dataset *ds = NULL;
    assert_int_equal(sp_dataset_open(path, &ds), SP_OK);
    sp_transform *tf = load("{\"columns\": [{\"name\": \"age\", \"steps\": [{\"fill\": "
                            "\"mean\"}]}, {\"name\": \"city\", \"steps\": [{\"vocabulary\": {}}, "
                            "{\"one_hot\": {}}]}, {\"name\": \"label\", \"steps\": []}]}");
    assert_int_equal(sp_transform_fit_dataset(tf, ds, NULL), SP_OK);
    assert_close(tf->cols[0].steps[0].num, 30.0);
    size_t nf = sp_transform_n_features(tf);
    assert_int_equal(nf, 1 + 4 + 1);
    float all[36], part[36];
    assert_int_equal(sp_transform_apply_dataset(tf, ds, 0, 6, NULL, all, 36), SP_OK);
    assert_true(all[2 * 6] == 30.0f);
    assert_true(all[0 * 6 + 1] == 1.0f); /* paris is index 0 */
    assert_true(isnan(all[2 * 6 + 1]));
    assert_true(all[5 * 6 + 5] == 1.0f); /* label of row 5 */
    assert_int_equal(sp_transform_apply_dataset(tf, ds, 0, 4, NULL, part, 24), SP_OK);
    assert_int_equal(sp_transform_apply_dataset(tf, ds, 4, 2, NULL, part + 24, 12), SP_OK);
    assert_memory_equal(all, part, sizeof all);
    assert_int_equal(sp_transform_apply_dataset(tf, ds, 5, 2, NULL, part, 12), SP_EINVAL);
    sp_transform *t2 = load("{\"columns\": [{\"name\": \"city\", \"steps\": [{\"log1p\": {}}]}]}");
    assert_int_equal(sp_transform_fit_dataset(t2, ds, NULL), SP_EBADINPUT);
    assert_msg("column \"city\" holds text, but its steps need numbers");
    sp_transform_free(t2);
    t2 = load("{\"columns\": [{\"name\": \"zip\", \"steps\": []}]}");
    assert_int_equal(sp_transform_fit_dataset(t2, ds, NULL), SP_EBADINPUT);
    assert_msg("no column \"zip\" (the dataset has key, label, width, height, age, city)");
    sp_transform_free(t2);
    sp_transform_free(tf);
    sp_dataset_close(ds);
    sp__free(path);
    tu_rmrf(dir);
    free(dir);
}

static void test_transform_table(void **state) {
    (void)state;
    char *dir = tu_tmpdir("transform_table");
    char *path = sp__path_join(dir, "data.csv");
    const char csv[] = "age,city,income\n30,paris,100\n,lyon,-3\n45,paris,\n";
    assert_int_equal(tu_write_file(path, csv, sizeof csv - 1), 0);
    sp_table *t = NULL;
    assert_int_equal(sp_table_read(path, &t), SP_OK);
    sp_transform *tf = load("{\"columns\": [{\"name\": \"age\", \"steps\": [{\"fill\": "
                            "\"mean\"}]}, {\"name\": \"income\", \"steps\": [{\"log1p\": {}}]}]}");
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.source = "data.csv";
    /* log1p of -3 on the file's line 3 */
    assert_int_equal(sp_transform_fit_table(tf, t, &o), SP_EBADINPUT);
    assert_msg("data.csv:3: column \"income\": steps[0] (log1p): log1p of -3");
    sp_transform_free(tf);
    tf = load("{\"columns\": [{\"name\": \"age\", \"steps\": [{\"fill\": \"mean\"}]}, "
              "{\"name\": \"city\", \"steps\": [{\"vocabulary\": {}}]}]}");
    sp_status rc = sp_transform_fit_table(tf, t, &o);
    assert_int_equal(rc, SP_OK);
    float out[6];
    assert_int_equal(sp_transform_apply_table(tf, t, &o, out, 6), SP_OK);
    assert_true(out[0] == 30 && out[1] == 0 && out[2] == 37.5f && out[3] == 1);
    sp_transform_free(tf);
    sp_table_close(t);
    sp__free(path);
    tu_rmrf(dir);
    free(dir);
}

/* ------------------------------------------------------------------ allocation failures */

static void test_transform_alloc_failures(void **state) {
    (void)state;
    const char *spec =
        "{\"columns\": [{\"name\": \"a\", \"steps\": [{\"fill\": \"median\"}, {\"bucketize\": "
        "{\"quantiles\": 3}}, {\"one_hot\": {}}]}, {\"name\": \"s\", \"steps\": [{\"fill\": "
        "\"most_frequent\"}, {\"vocabulary\": {}}, {\"one_hot\": {}}]}]}";
    const double a[5] = {1, NA, 3, 4, 5};
    const char *s[5] = {"x", "y", NULL, "x", "z"};
    sp_transform_column cols[2] = {{.name = "a", .f64 = a}, {.name = "s", .str = s}};
    sp_transform_input in = {cols, 2, 5};
    int succeeded = 0;
    for (uint64_t n = 1; n < 400 && !succeeded; n++) {
        sp__malloc_fail_after(n);
        sp_transform *tf = NULL;
        sp_status rc = sp_transform_load_buffer("spec.json", spec, strlen(spec), &tf);
        char *json = NULL;
        if (rc == SP_OK) {
            rc = sp_transform_fit(tf, &in, NULL);
            /* a failed fit changes nothing */
            if (rc < 0) assert_false(sp_transform_fitted(tf));
        }
        if (rc == SP_OK) rc = sp_transform_to_json(tf, &json, NULL);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            succeeded = 1;
            assert_true(sp_transform_fitted(tf));
        } else {
            assert_int_equal(rc, SP_ENOMEM);
        }
        sp_free(json);
        sp_transform_free(tf);
    }
    assert_true(succeeded);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transform_number_chain),
        cmocka_unit_test(test_transform_median_and_missing),
        cmocka_unit_test(test_transform_bucketize),
        cmocka_unit_test(test_transform_vocabulary),
        cmocka_unit_test(test_transform_vocabulary_numbers),
        cmocka_unit_test(test_transform_json_roundtrip),
        cmocka_unit_test(test_transform_spec_errors),
        cmocka_unit_test(test_transform_apply_errors),
        cmocka_unit_test(test_transform_threads_identical),
        cmocka_unit_test(test_transform_dataset),
        cmocka_unit_test(test_transform_table),
        cmocka_unit_test(test_transform_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
