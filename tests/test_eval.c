/* test_eval.c — unit tests of the metrics engine (sp_eval_run and friends) on small inputs whose
 * answers are worked out by hand, plus the properties that need no oracle: identical bootstrap
 * replicates for any thread count, Poisson(1) moments of the weights, exact quick-sample sizes,
 * error codes and messages, and clean failure when any allocation fails. The comparison with
 * scikit-learn on a large corpus lives in tests/python/test_metrics.py. */
#include "core_internal.h"
#include "softpipe.h"
#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static double metric(const sp_eval_result *r, const char *name) {
    const sp_eval_metric *m = sp_eval_result_find(r, name);
    assert_non_null(m);
    return m->value;
}

static void assert_close(double a, double b) {
    if (!(fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b)))) fail_msg("%.17g != %.17g", a, b);
}

/* Four rows: scores 0.1 0.4 0.35 0.8, labels 0 0 1 1 (scikit-learn's roc_auc_score docstring
 * example): AUC 0.75, AP 0.8333.., at 0.5: TP 1, FP 0, FN 1, TN 2. */
static void test_eval_binary_small(void **state) {
    (void)state;
    const double s[4] = {0.1, 0.4, 0.35, 0.8};
    const int64_t y[4] = {0, 0, 1, 1};
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, 4), as = sp_array_1d(s, SP_DTYPE_FLOAT64, 4);
    sp_eval_result *r = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, NULL, &r), SP_OK);
    sp_eval_info info;
    sp_eval_result_info(r, &info);
    assert_int_equal(info.task, SP_EVAL_BINARY);
    assert_int_equal(info.n_rows, 4);
    assert_close(metric(r, "roc_auc"), 0.75);
    assert_close(metric(r, "average_precision"), (1.0 + 2.0 / 3.0) / 2.0);
    assert_close(metric(r, "accuracy"), 0.75);
    assert_close(metric(r, "precision"), 1.0);
    assert_close(metric(r, "recall"), 0.5);
    assert_close(metric(r, "f1"), 2.0 / 3.0);
    double brier = (0.01 + 0.16 + 0.65 * 0.65 + 0.04) / 4;
    assert_close(metric(r, "brier"), brier);
    double ll = -(log(0.9) + log(0.6) + log(0.35) + log(0.8)) / 4;
    assert_close(metric(r, "log_loss"), ll);
    size_t k;
    const double *cm = sp_eval_result_confusion(r, 0, &k);
    assert_non_null(cm);
    assert_int_equal(k, 2);
    assert_true(cm[0] == 2 && cm[1] == 0 && cm[2] == 1 && cm[3] == 1);
    assert_int_equal(sp_eval_result_n_warnings(r), 0);
    sp_eval_result_free(r);
}

/* Ties count one half: all scores equal gives AUC 0.5; one pair tied across classes. */
static void test_eval_binary_ties(void **state) {
    (void)state;
    const double s[4] = {0.5, 0.5, 0.5, 0.5};
    const uint8_t y[4] = {0, 1, 0, 1};
    sp_array ay = sp_array_1d(y, SP_DTYPE_BOOL, 4), as = sp_array_1d(s, SP_DTYPE_FLOAT64, 4);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.metrics = "roc_auc,average_precision,pr_curve,roc_curve";
    sp_eval_result *r = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_OK);
    assert_close(metric(r, "roc_auc"), 0.5);
    assert_close(metric(r, "average_precision"), 0.5);
    sp_eval_curve pr, roc;
    assert_int_equal(sp_eval_result_curve(r, "pr", &pr), SP_OK);
    assert_int_equal(pr.n, 2); /* one threshold + the (recall 0, precision 1) end */
    assert_close(pr.y[0], 0.5);
    assert_close(pr.x[0], 1.0);
    assert_int_equal(sp_eval_result_curve(r, "roc", &roc), SP_OK);
    assert_int_equal(roc.n, 2);
    assert_close(roc.threshold[0], 1.5);
    assert_int_equal(sp_eval_result_curve(r, "reliability", &roc), SP_ENOTFOUND);
    sp_eval_result_free(r);

    /* -0.0 and +0.0 are one score */
    const double z[2] = {-0.0, 0.0};
    const int32_t y2[2] = {1, 0};
    ay = sp_array_1d(y2, SP_DTYPE_INT32, 2);
    as = sp_array_1d(z, SP_DTYPE_FLOAT64, 2);
    o.metrics = "roc_auc";
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_OK);
    assert_close(metric(r, "roc_auc"), 0.5);
    sp_eval_result_free(r);
}

/* One class present: AUC is NaN with a warning, not an error. */
static void test_eval_binary_one_class(void **state) {
    (void)state;
    const float s[3] = {0.2f, 0.7f, 0.9f};
    const double y[3] = {1, 1, 1};
    sp_array ay = sp_array_1d(y, SP_DTYPE_FLOAT64, 3), as = sp_array_1d(s, SP_DTYPE_FLOAT32, 3);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.task = SP_EVAL_BINARY;
    sp_eval_result *r = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_OK);
    assert_true(isnan(metric(r, "roc_auc")));
    assert_true(sp_eval_result_n_warnings(r) >= 1);
    assert_non_null(strstr(sp_eval_result_warning(r, 0), "one class"));
    sp_eval_result_free(r);
}

static void test_eval_errors(void **state) {
    (void)state;
    double s[5] = {0.1, 0.2, NAN, 0.4, 0.5};
    int64_t y[5] = {0, 1, 0, 1, 0};
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, 5), as = sp_array_1d(s, SP_DTYPE_FLOAT64, 5);
    sp_eval_result *r = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, NULL, &r), SP_EBADINPUT);
    assert_null(r);
    assert_non_null(strstr(sp_errmsg(), "y_score: row 2: NaN"));

    /* drop: 4 rows left */
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.nan = SP_EVAL_NAN_DROP;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_OK);
    sp_eval_info info;
    sp_eval_result_info(r, &info);
    assert_int_equal(info.n_dropped, 1);
    assert_int_equal(info.n_used, 4);
    sp_eval_result_free(r);

    /* labels outside {0, 1} for a binary task */
    s[2] = 0.3;
    y[3] = 2;
    sp_eval_opts_init(&o);
    o.task = SP_EVAL_BINARY;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "row 3: label 2 is not 0 or 1"));
    y[3] = 1;

    /* lengths differ, empty input, unknown metric, bad option */
    sp_array short_s = sp_array_1d(s, SP_DTYPE_FLOAT64, 4);
    assert_int_equal(sp_eval_run(&ay, &short_s, NULL, NULL, &r), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "y_score has 4 rows but y_true has 5"));
    sp_array empty = sp_array_1d(y, SP_DTYPE_INT64, 0),
             empty_s = sp_array_1d(s, SP_DTYPE_FLOAT64, 0);
    assert_int_equal(sp_eval_run(&empty, &empty_s, NULL, NULL, &r), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "empty"));
    sp_eval_opts_init(&o);
    o.metrics = "roc_auc,nonsense";
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "unknown metric 'nonsense'"));
    sp_eval_opts_init(&o);
    o.level = 1.5;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "level"));

    /* a negative weight names its row */
    double w[5] = {1, 1, 1, -1, 1};
    sp_array aw = sp_array_1d(w, SP_DTYPE_FLOAT64, 5);
    assert_int_equal(sp_eval_run(&ay, &as, &aw, NULL, &r), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "row 3"));

    /* scores that are not probabilities: log_loss asked for is an error */
    s[1] = 3.5;
    sp_eval_opts_init(&o);
    o.metrics = "log_loss";
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "row 1: score 3.5 is not a probability"));
    /* ... and skipped with a warning when not asked for */
    assert_int_equal(sp_eval_run(&ay, &as, NULL, NULL, &r), SP_OK);
    assert_null(sp_eval_result_find(r, "log_loss"));
    assert_non_null(sp_eval_result_find(r, "roc_auc"));
    sp_eval_result_free(r);
}

static void make_data(size_t n, uint64_t seed, double *s, int64_t *y) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        y[i] = (x >> 11) % 10 < 3;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0;
        s[i] = 0.7 * u + 0.25 * (double)y[i] + 0.02; /* overlapping classes */
        s[i] = round(s[i] * 100) / 100;              /* ties */
    }
}

/* The bootstrap gives the same replicates for any thread count. */
static void test_eval_bootstrap_threads(void **state) {
    (void)state;
    enum { N = 20000 };
    double *s = malloc(N * sizeof *s);
    int64_t *y = malloc(N * sizeof *y);
    make_data(N, 3, s, y);
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, N), as = sp_array_1d(s, SP_DTYPE_FLOAT64, N);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.ci = SP_EVAL_CI_BOOTSTRAP;
    o.replicates = 37; /* not a multiple of the block */
    o.seed = 11;
    sp_eval_result *r1 = NULL, *r3 = NULL;
    o.n_threads = 1;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r1), SP_OK);
    o.n_threads = 3;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r3), SP_OK);
    assert_int_equal(sp_eval_result_n_metrics(r1), sp_eval_result_n_metrics(r3));
    for (size_t i = 0; i < sp_eval_result_n_metrics(r1); i++) {
        size_t n1, n3;
        const double *a = sp_eval_result_replicates(r1, i, &n1);
        const double *b = sp_eval_result_replicates(r3, i, &n3);
        assert_non_null(a);
        assert_int_equal(n1, 37);
        assert_int_equal(n3, 37);
        assert_memory_equal(a, b, 37 * sizeof(double));
        const sp_eval_metric *m = sp_eval_result_metric(r1, i);
        assert_true(m->lo <= m->hi);
    }
    /* the AUC interval holds the point estimate */
    const sp_eval_metric *auc = sp_eval_result_find(r1, "roc_auc");
    assert_true(auc->lo <= auc->value && auc->value <= auc->hi);
    sp_eval_result_free(r1);
    sp_eval_result_free(r3);
    free(s);
    free(y);
}

/* Poisson(1): mean and variance 1, P(0) = 1/e. */
static void test_eval_poisson_weights(void **state) {
    (void)state;
    enum { N = 400000 };
    uint32_t *w = malloc(N * sizeof *w);
    sp_eval_poisson_weights(5, 3, 0, N, w);
    double sum = 0, sq = 0, zeros = 0;
    for (size_t i = 0; i < N; i++) {
        sum += w[i];
        sq += (double)w[i] * w[i];
        zeros += w[i] == 0;
    }
    double mean = sum / N, var = sq / N - mean * mean;
    assert_true(fabs(mean - 1) < 0.01);
    assert_true(fabs(var - 1) < 0.02);
    assert_true(fabs(zeros / N - exp(-1.0)) < 0.005);
    /* a window of rows matches the same rows drawn from 0 */
    uint32_t part[10];
    sp_eval_poisson_weights(5, 3, 1000, 10, part);
    assert_memory_equal(part, w + 1000, sizeof part);
    /* another replicate differs */
    sp_eval_poisson_weights(5, 4, 1000, 10, part);
    assert_true(memcmp(part, w + 1000, sizeof part) != 0);
    free(w);
}

/* DeLong: a model against itself has difference 0 and p-value 1; the delong interval contains
 * the AUC. */
static void test_eval_delong(void **state) {
    (void)state;
    enum { N = 3000 };
    double *s = malloc(N * sizeof *s), *s2 = malloc(N * sizeof *s2);
    int64_t *y = malloc(N * sizeof *y);
    make_data(N, 9, s, y);
    for (size_t i = 0; i < N; i++)
        s2[i] = 1 - s[i];
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, N), as = sp_array_1d(s, SP_DTYPE_FLOAT64, N);
    sp_array as2 = sp_array_1d(s2, SP_DTYPE_FLOAT64, N);
    sp_eval_delong t;
    assert_int_equal(sp_eval_delong_test(&ay, &as, &as, NULL, &t), SP_OK);
    assert_close(t.diff, 0);
    assert_close(t.p_value, 1);
    assert_close(t.var_a, t.cov);
    assert_int_equal(sp_eval_delong_test(&ay, &as, &as2, NULL, &t), SP_OK);
    assert_close(t.auc_a + t.auc_b, 1); /* reversed scores mirror the AUC */
    assert_close(t.var_a, t.var_b);
    assert_true(t.p_value < 1e-10);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.ci = SP_EVAL_CI_DELONG;
    o.metrics = "roc_auc";
    sp_eval_result *r = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_OK);
    const sp_eval_metric *m = sp_eval_result_find(r, "roc_auc");
    assert_true(m->lo < m->value && m->value < m->hi);
    assert_close((m->hi - m->lo) / 2, 1.959963984540054 * sqrt(t.var_a));
    sp_eval_result_free(r);
    free(s);
    free(s2);
    free(y);
}

/* Quick mode: exact sample size, stable for a seed, different for another. */
static void test_eval_quick(void **state) {
    (void)state;
    enum { N = 50000 };
    double *s = malloc(N * sizeof *s);
    int64_t *y = malloc(N * sizeof *y);
    make_data(N, 21, s, y);
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, N), as = sp_array_1d(s, SP_DTYPE_FLOAT64, N);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.quick = 0.1;
    o.replicates = 50;
    o.metrics = "roc_auc";
    sp_eval_result *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &a), SP_OK);
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &b), SP_OK);
    o.seed = 1;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &c), SP_OK);
    sp_eval_info ia;
    sp_eval_result_info(a, &ia);
    assert_true(ia.quick);
    assert_true(ia.n_used >= 4990 && ia.n_used <= 5010); /* rounding per stratum */
    assert_int_equal(ia.ci, SP_EVAL_CI_BOOTSTRAP);
    assert_true(metric(a, "roc_auc") == metric(b, "roc_auc"));
    assert_true(metric(a, "roc_auc") != metric(c, "roc_auc"));
    sp_eval_result_free(a);
    sp_eval_result_free(b);
    sp_eval_result_free(c);
    free(s);
    free(y);
}

/* Multiclass and regression on tiny hand-checked inputs. */
static void test_eval_multiclass_regression(void **state) {
    (void)state;
    const double p[4][3] = {{0.7, 0.2, 0.1}, {0.1, 0.8, 0.1}, {0.3, 0.3, 0.4}, {0.5, 0.4, 0.1}};
    const int64_t y[4] = {0, 1, 2, 1};
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, 4), as = sp_array_2d(p, SP_DTYPE_FLOAT64, 4, 3);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.top_k = 2;
    sp_eval_result *r = NULL;
    assert_int_equal(sp_eval_run(&ay, &as, NULL, &o, &r), SP_OK);
    assert_close(metric(r, "accuracy"), 0.75);
    assert_close(metric(r, "top_2_accuracy"), 1.0);
    assert_close(metric(r, "log_loss"), -(log(0.7) + log(0.8) + log(0.4) + log(0.4)) / 4);
    /* class 0: tp 1, predicted 2; class 1: tp 1, predicted 1, true 2; class 2: tp 1 */
    assert_close(metric(r, "precision_macro"), (0.5 + 1 + 1) / 3);
    assert_close(metric(r, "recall_macro"), (1 + 0.5 + 1) / 3);
    size_t k;
    const double *cm = sp_eval_result_confusion(r, 0, &k);
    assert_int_equal(k, 3);
    assert_true(cm[1 * 3 + 0] == 1 && cm[1 * 3 + 1] == 1 && cm[2 * 3 + 2] == 1);
    sp_eval_result_free(r);

    const double yt[4] = {3, -0.5, 2, 7}, yp[4] = {2.5, 0.0, 2, 8};
    ay = sp_array_1d(yt, SP_DTYPE_FLOAT64, 4);
    as = sp_array_1d(yp, SP_DTYPE_FLOAT64, 4);
    assert_int_equal(sp_eval_run(&ay, &as, NULL, NULL, &r), SP_OK);
    assert_close(metric(r, "mae"), 0.5);
    assert_close(metric(r, "mse"), 0.375);
    assert_close(metric(r, "rmse"), sqrt(0.375));
    double mean = 2.875, tot = 0;
    for (int i = 0; i < 4; i++)
        tot += (yt[i] - mean) * (yt[i] - mean);
    assert_close(metric(r, "r2"), 1 - 1.5 / tot);
    assert_close(metric(r, "mape"), (0.5 / 3 + 1 + 0 + 1.0 / 7) / 4);
    sp_eval_result_free(r);
}

/* Every allocation that can fail fails cleanly with SP_ENOMEM (ASan checks nothing leaks). */
static void test_eval_out_of_memory(void **state) {
    (void)state;
    enum { N = 3000 };
    double *s = malloc(N * sizeof *s);
    int64_t *y = malloc(N * sizeof *y);
    make_data(N, 4, s, y);
    sp_array ay = sp_array_1d(y, SP_DTYPE_INT64, N), as = sp_array_1d(s, SP_DTYPE_FLOAT64, N);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.ci = SP_EVAL_CI_BOOTSTRAP;
    o.replicates = 20;
    o.metrics = "roc_auc,average_precision,log_loss,f1,ece,roc_curve,pr_curve,confusion_matrix";
    o.n_threads = 1;
    int failures = 0;
    for (uint64_t k = 1; k < 500; k++) {
        sp_eval_result *r = NULL;
        sp__malloc_fail_after(k);
        sp_status rc = sp_eval_run(&ay, &as, NULL, &o, &r);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            sp_eval_result_free(r);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(r);
        failures++;
    }
    assert_true(failures > 10);
    free(s);
    free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_binary_small),
        cmocka_unit_test(test_eval_binary_ties),
        cmocka_unit_test(test_eval_binary_one_class),
        cmocka_unit_test(test_eval_errors),
        cmocka_unit_test(test_eval_bootstrap_threads),
        cmocka_unit_test(test_eval_poisson_weights),
        cmocka_unit_test(test_eval_delong),
        cmocka_unit_test(test_eval_quick),
        cmocka_unit_test(test_eval_multiclass_regression),
        cmocka_unit_test(test_eval_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
