/* eval_core.c — the front of the metrics engine: options, input validation, the task and metric
 * choice, quick-mode and NaN compaction, and the result object with its accessors.
 *
 * sp_eval_run turns the caller's arrays into an sp__eval_data (labels converted to the task's
 * compact type, scores kept as a borrowed strided view when they are float32/float64, rows with
 * NaN dropped or reported), then hands it to the task (eval_binary.c, eval_multi.c), which adds
 * metrics, intervals, curves and warnings to the result through the sp__eval_set_* helpers here.
 * Nothing in the result points into the caller's arrays. */
#include "eval_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sp_eval_result {
    sp_eval_info info;
    sp_eval_metric *metrics;
    double **reps; /* per metric: replicate values or NULL */
    size_t n_metrics, cap_metrics;
    struct {
        size_t n;
        double *x, *y, *t;
    } curve[3];
    double *confusion[SP_EVAL_MAX_THRESHOLDS];
    size_t confusion_k;
    char **warnings;
    size_t n_warnings;
};

/* ---- metric names */

typedef struct metric_def {
    const char *name;
    unsigned tasks;  /* bit (1 << task) */
    int thresholded; /* binary: one value per threshold */
    int in_default;  /* part of the task's default set */
} metric_def;

#define B  (1u << SP_EVAL_BINARY)
#define MC (1u << SP_EVAL_MULTICLASS)
#define R  (1u << SP_EVAL_REGRESSION)
static const metric_def METRICS[M__COUNT] = {
    [M_ROC_AUC] = {"roc_auc", B, 0, 1},
    [M_AP] = {"average_precision", B, 0, 1},
    [M_LOG_LOSS] = {"log_loss", B | MC, 0, 1},
    [M_BRIER] = {"brier", B, 0, 1},
    [M_ACCURACY] = {"accuracy", B | MC, 1, 1},
    [M_PRECISION] = {"precision", B, 1, 1},
    [M_RECALL] = {"recall", B, 1, 1},
    [M_F1] = {"f1", B, 1, 1},
    [M_ECE] = {"ece", B | MC, 0, 1},
    [M_TOPK] = {"top_k_accuracy", MC, 0, 1},
    [M_PRECISION_MACRO] = {"precision_macro", MC, 0, 1},
    [M_RECALL_MACRO] = {"recall_macro", MC, 0, 1},
    [M_F1_MACRO] = {"f1_macro", MC, 0, 1},
    [M_PRECISION_MICRO] = {"precision_micro", MC, 0, 1},
    [M_RECALL_MICRO] = {"recall_micro", MC, 0, 1},
    [M_F1_MICRO] = {"f1_micro", MC, 0, 1},
    [M_PRECISION_WEIGHTED] = {"precision_weighted", MC, 0, 1},
    [M_RECALL_WEIGHTED] = {"recall_weighted", MC, 0, 1},
    [M_F1_WEIGHTED] = {"f1_weighted", MC, 0, 1},
    [M_AUC_OVR] = {"roc_auc_ovr", MC, 0, 1},
    [M_AUC_OVR_WEIGHTED] = {"roc_auc_ovr_weighted", MC, 0, 1},
    [M_MAE] = {"mae", R, 0, 1},
    [M_MSE] = {"mse", R, 0, 1},
    [M_RMSE] = {"rmse", R, 0, 1},
    [M_R2] = {"r2", R, 0, 1},
    [M_MAPE] = {"mape", R, 0, 1},
    [M_ROC_CURVE] = {"roc_curve", B, 0, 0},
    [M_PR_CURVE] = {"pr_curve", B, 0, 0},
    [M_RELIABILITY] = {"reliability", B | MC, 0, 0},
    [M_CONFUSION] = {"confusion_matrix", B | MC, 0, 1},
};

static const struct {
    const char *alias;
    int metric;
} ALIASES[] = {
    {"auc", M_ROC_AUC},
    {"roc_auc_score", M_ROC_AUC},
    {"ap", M_AP},
    {"average_precision_score", M_AP},
    {"logloss", M_LOG_LOSS},
    {"brier_score", M_BRIER},
    {"brier_score_loss", M_BRIER},
    {"accuracy_score", M_ACCURACY},
    {"f1_score", M_F1},
    {"precision_recall_curve", M_PR_CURVE},
    {"pr", M_PR_CURVE},
    {"roc", M_ROC_CURVE},
    {"calibration_curve", M_RELIABILITY},
    {"confusion", M_CONFUSION},
    {"top_k", M_TOPK},
    {"r2_score", M_R2},
    {"mean_absolute_error", M_MAE},
    {"mean_squared_error", M_MSE},
    {"mean_absolute_percentage_error", M_MAPE},
};

const char *sp__eval_metric_name(int metric) {
    return METRICS[metric].name;
}

static const char *task_name(sp_eval_task t) {
    switch (t) {
    case SP_EVAL_BINARY:
        return "binary";
    case SP_EVAL_MULTICLASS:
        return "multiclass";
    case SP_EVAL_REGRESSION:
        return "regression";
    default:
        return "auto";
    }
}

/* Parses opts.metrics into c->want; a name is matched case-sensitively after trimming spaces. */
static sp_status parse_metrics(sp__eval_ctx *c, const char *list) {
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *end = e;
        while (end > p && end[-1] == ' ')
            end--;
        size_t len = (size_t)(end - p);
        int found = -1;
        for (int m = 0; m < M__COUNT && found < 0; m++)
            if (strlen(METRICS[m].name) == len && memcmp(METRICS[m].name, p, len) == 0) found = m;
        for (size_t a = 0; a < sizeof ALIASES / sizeof ALIASES[0] && found < 0; a++)
            if (strlen(ALIASES[a].alias) == len && memcmp(ALIASES[a].alias, p, len) == 0)
                found = ALIASES[a].metric;
        unsigned topk = 0;
        char tail[16] = "";
        if (found < 0 && len < 40) {
            char word[48];
            memcpy(word, p, len);
            word[len] = '\0';
            if (sscanf(word, "top_%u_accurac%15s", &topk, tail) == 2 && strcmp(tail, "y") == 0 &&
                topk >= 1) {
                found = M_TOPK;
                c->o.top_k = topk;
            }
        }
        if (found < 0) {
            char known[1024] = "";
            for (int m = 0; m < M__COUNT; m++) {
                strncat(known, METRICS[m].name, sizeof known - strlen(known) - 3);
                if (m + 1 < M__COUNT) strncat(known, ", ", sizeof known - strlen(known) - 1);
            }
            return sp__fail(SP_EINVAL, "metrics: unknown metric '%.*s' (known: %s)", (int)len, p,
                            known);
        }
        c->want[found] = 1;
        c->asked[found] = 1;
        p = e;
    }
    return SP_OK;
}

void sp__eval_threshold_name(double t, char *buf, size_t cap) {
    /* the shortest form that reads back as the same double, so distinct thresholds get distinct
     * names */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "@%.*g", prec, t);
        if (strtod(buf + 1, NULL) == t) return;
    }
}

void sp_eval_opts_init(sp_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->task = SP_EVAL_AUTO;
    o->n_thresholds = 1;
    o->thresholds[0] = 0.5;
    o->replicates = 1000;
    o->level = 0.95;
    o->ece_bins = 15;
    o->top_k = 5;
}

static sp_status check_opts(sp__eval_ctx *c, const sp_eval_opts *in) {
    if (in)
        c->o = *in;
    else
        sp_eval_opts_init(&c->o);
    sp_eval_opts *o = &c->o;
    if (o->task < SP_EVAL_AUTO || o->task > SP_EVAL_REGRESSION)
        return sp__fail(SP_EINVAL,
                        "task: %d is not a task (0 auto, 1 binary, 2 multiclass, "
                        "3 regression)",
                        (int)o->task);
    if (o->n_thresholds == 0) {
        o->n_thresholds = 1;
        o->thresholds[0] = 0.5;
    }
    if (o->n_thresholds > SP_EVAL_MAX_THRESHOLDS)
        return sp__fail(SP_EINVAL, "thresholds: %zu given, at most %d", o->n_thresholds,
                        SP_EVAL_MAX_THRESHOLDS);
    for (size_t i = 0; i < o->n_thresholds; i++)
        if (!isfinite(o->thresholds[i]))
            return sp__fail(SP_EINVAL, "thresholds: %g (threshold %zu) is not a finite number",
                            o->thresholds[i], i);
    for (size_t i = 0; i < o->n_thresholds; i++)
        for (size_t j = 0; j < i; j++)
            if (o->thresholds[i] == o->thresholds[j])
                return sp__fail(SP_EINVAL, "thresholds: %g is given twice", o->thresholds[i]);
    if (o->ci < SP_EVAL_CI_AUTO || o->ci > SP_EVAL_CI_NONE)
        return sp__fail(SP_EINVAL,
                        "ci: %d is not an interval method (0 auto, 1 bootstrap, "
                        "2 delong, 3 none)",
                        (int)o->ci);
    if (o->replicates == 0) o->replicates = 1000;
    if (o->replicates > 1000000)
        return sp__fail(SP_EINVAL, "replicates: %" PRIu32 " is more than 1000000", o->replicates);
    if (o->level == 0) o->level = 0.95;
    if (!(o->level > 0 && o->level < 1))
        return sp__fail(SP_EINVAL, "level: %g is not in (0, 1) (e.g. 0.95)", o->level);
    if (!(o->quick >= 0) || !isfinite(o->quick))
        return sp__fail(SP_EINVAL,
                        "quick: %g must be 0 (off), a fraction in (0, 1) or a "
                        "sample size >= 1",
                        o->quick);
    if (o->nan != SP_EVAL_NAN_ERROR && o->nan != SP_EVAL_NAN_DROP)
        return sp__fail(SP_EINVAL, "nan: %d is not a policy (0 error, 1 drop)", (int)o->nan);
    if (o->n_threads < 0 || o->n_threads > 256)
        return sp__fail(SP_EINVAL, "n_threads: %d is not in 0..256", o->n_threads);
    if (o->ece_bins == 0) o->ece_bins = 15;
    if (o->ece_bins > 10000)
        return sp__fail(SP_EINVAL, "ece_bins: %" PRIu32 " is more than 10000", o->ece_bins);
    if (o->top_k == 0) o->top_k = 5;
    if (!o->y_name) o->y_name = "y_true";
    if (!o->s_name) o->s_name = "y_score";
    if (!o->w_name) o->w_name = "sample_weight";
    c->n_threads = o->n_threads ? o->n_threads : sp__ncpu();
    if (o->ci == SP_EVAL_CI_AUTO) o->ci = o->quick > 0 ? SP_EVAL_CI_BOOTSTRAP : SP_EVAL_CI_NONE;
    if (o->metrics && *o->metrics) {
        c->explicit_metrics = 1;
        SP_TRY(parse_metrics(c, o->metrics));
    }
    return SP_OK;
}

/* ---- reading any dtype */

static sp_status check_array(const sp_array *a, const char *name, int max_ndim) {
    if (!a || !a->data) return sp__fail(SP_EINVAL, "%s: no array given", name);
    if (sp_dtype_size(a->dtype) == 0)
        return sp__fail(SP_EINVAL, "%s: unknown dtype %d", name, (int)a->dtype);
    if (a->ndim < 1 || a->ndim > max_ndim)
        return sp__fail(SP_EINVAL, "%s: has %d dimensions, expected %s", name, a->ndim,
                        max_ndim == 1 ? "1" : "1 or 2");
    return SP_OK;
}

void sp__eval_data_free(sp__eval_data *d) {
    if (!d) return;
    sp__free(d->y01);
    sp__free(d->ycls);
    sp__free(d->yreal);
    sp__free(d->w);
    sp__free(d->rowid);
    sp__free(d->stratum);
    for (int i = 0; i < 4; i++)
        sp__free(d->owned[i]);
    memset(d, 0, sizeof *d);
}

/* ---- the row scan: one parallel pass that finds bad rows and, speculatively, 0/1 labels */

#define NONE UINT64_MAX

typedef struct scan_part {
    uint64_t first_bad, n_bad; /* NaN/inf label or score */
    uint64_t first_bad_w;      /* a weight that is negative or not finite */
    uint64_t first_nonbinary;  /* a finite label other than 0 and 1 */
} scan_part;

typedef struct scan_ctx {
    const sp_array *y, *w;
    const sp__eval_data *d;
    uint8_t *y01;
    scan_part part[256];
} scan_ctx;

static void scan_worker(void *p, int t, int nt) {
    scan_ctx *c = p;
    const sp__eval_data *d = c->d;
    const uint32_t k = d->k;
    scan_part q = {NONE, 0, NONE, NONE};
    uint64_t lo, hi;
    sp__split_range(c->y->shape[0], nt, t, &lo, &hi);
    for (uint64_t i = lo; i < hi; i++) {
        const double v = sp_array_get_f64(c->y, i, 0);
        int bad = !isfinite(v);
        for (uint32_t j = 0; j < k; j++)
            bad |= !isfinite(sp__eval_score(d, i, j));
        if (c->w) {
            const double wv = sp_array_get_f64(c->w, i, 0);
            if (!(isfinite(wv) && wv >= 0) && q.first_bad_w == NONE) q.first_bad_w = i;
        }
        if (bad) {
            if (q.first_bad == NONE) q.first_bad = i;
            q.n_bad++;
        } else if (v != 0 && v != 1 && q.first_nonbinary == NONE) {
            q.first_nonbinary = i;
        }
        if (c->y01) c->y01[i] = v == 1;
    }
    c->part[t] = q;
}

/* Validates every row, drops or reports bad ones, and converts labels and weights. */
sp_status sp__eval_prepare(sp__eval_ctx *c, const sp_array *y, const sp_array *s, const sp_array *w,
                           sp__eval_data *d) {
    const sp_eval_opts *o = &c->o;
    SP_TRY(check_array(y, o->y_name, 2));
    SP_TRY(check_array(s, o->s_name, 2));
    if (w) SP_TRY(check_array(w, o->w_name, 1));
    if (y->ndim == 2 && y->shape[1] != 1)
        return sp__fail(SP_EINVAL,
                        "%s: is %" PRIu64 " x %" PRIu64 "; labels are one column (class "
                        "indices, not one-hot)",
                        o->y_name, y->shape[0], y->shape[1]);
    uint64_t n = y->shape[0];
    if (n == 0) return sp__fail(SP_EINVAL, "%s: empty input (0 rows)", o->y_name);
    if (s->shape[0] != n)
        return sp__fail(SP_EINVAL, "%s has %" PRIu64 " rows but %s has %" PRIu64, o->s_name,
                        s->shape[0], o->y_name, n);
    if (w && w->shape[0] != n)
        return sp__fail(SP_EINVAL, "%s has %" PRIu64 " rows but %s has %" PRIu64, o->w_name,
                        w->shape[0], o->y_name, n);
    if (n > UINT32_MAX)
        return sp__fail(SP_EUNSUPPORTED, "%s: %" PRIu64 " rows; at most %" PRIu32 " are supported",
                        o->y_name, n, UINT32_MAX);
    uint32_t k = s->ndim == 2 ? (uint32_t)s->shape[1] : 1;
    if (s->ndim == 2 && (s->shape[1] == 0 || s->shape[1] > 100000))
        return sp__fail(SP_EINVAL, "%s: %" PRIu64 " columns; expected 1 .. 100000", o->s_name,
                        s->shape[1]);

    /* scores: a borrowed view when float, else a converted copy */
    d->k = k;
    d->s_dtype = s->dtype;
    d->s = s->data;
    d->s_row = s->strides[0];
    d->s_col = s->ndim == 2 ? s->strides[1] : 0;
    if (s->dtype != SP_DTYPE_FLOAT32 && s->dtype != SP_DTYPE_FLOAT64) {
        double *conv = sp__malloc(n * k * sizeof(double));
        if (!conv) return sp__fail(SP_ENOMEM, "%s: out of memory converting scores", o->s_name);
        for (uint64_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < k; j++)
                conv[i * k + j] = sp_array_get_f64(s, i, j);
        d->owned[0] = conv;
        d->s = (const char *)conv;
        d->s_dtype = SP_DTYPE_FLOAT64;
        d->s_row = (int64_t)(k * sizeof(double));
        d->s_col = sizeof(double);
    }
    d->eps = s->dtype == SP_DTYPE_FLOAT32 ? (double)1.1920928955078125e-07 : 2.220446049250313e-16;

    /* one parallel scan: bad rows, bad weights, whether labels are 0/1 */
    sp_eval_task task = o->task;
    uint8_t *y01 = NULL;
    if (k == 1 && (task == SP_EVAL_AUTO || task == SP_EVAL_BINARY)) {
        y01 = sp__malloc(n);
        if (!y01) return sp__fail(SP_ENOMEM, "out of memory");
    }
    scan_ctx *sc = sp__malloc(sizeof *sc);
    if (!sc) {
        sp__free(y01);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    sc->y = y;
    sc->w = w;
    sc->d = d;
    sc->y01 = y01;
    int nt = n < 100000 ? 1 : c->n_threads;
    sp__parallel(nt, scan_worker, sc);
    uint64_t first_bad = NONE, n_bad = 0, first_bad_w = NONE, first_nonbinary = NONE;
    for (int t = 0; t < nt; t++) {
        scan_part *q = &sc->part[t];
        if (q->first_bad < first_bad) first_bad = q->first_bad;
        if (q->first_bad_w < first_bad_w) first_bad_w = q->first_bad_w;
        if (q->first_nonbinary < first_nonbinary) first_nonbinary = q->first_nonbinary;
        n_bad += q->n_bad;
    }
    sp__free(sc);
    d->y01 = y01; /* freed with d on every path from here */
    if (first_bad_w != NONE)
        return sp__fail(SP_EBADINPUT,
                        "%s: row %" PRIu64 ": weight %g; weights must be finite and "
                        ">= 0",
                        o->w_name, first_bad_w, sp_array_get_f64(w, first_bad_w, 0));

    /* the task */
    if (task == SP_EVAL_AUTO) {
        int wants_regression = 0;
        for (int m = 0; m < M__COUNT; m++)
            if (c->want[m] && METRICS[m].tasks == R) wants_regression = 1;
        if (k >= 2)
            task = SP_EVAL_MULTICLASS;
        else if (wants_regression || first_nonbinary != NONE)
            task = SP_EVAL_REGRESSION;
        else
            task = SP_EVAL_BINARY;
    }
    if (task == SP_EVAL_MULTICLASS && k < 2)
        return sp__fail(SP_EINVAL, "%s: multiclass needs an n x k score matrix (k >= 2); got %s",
                        o->s_name, s->ndim == 1 ? "one column" : "k = 1");
    if (task != SP_EVAL_MULTICLASS && k != 1)
        return sp__fail(SP_EINVAL, "%s: %s needs one score per row; got %" PRIu32 " columns",
                        o->s_name, task_name(task), k);
    if (task == SP_EVAL_BINARY && first_nonbinary != NONE)
        return sp__fail(SP_EBADINPUT,
                        "%s: row %" PRIu64 ": label %g is not 0 or 1 (binary "
                        "metrics need 0/1 labels; for multiclass pass an n x k "
                        "score matrix)",
                        o->y_name, first_nonbinary, sp_array_get_f64(y, first_nonbinary, 0));
    if (task != SP_EVAL_BINARY) {
        sp__free(d->y01);
        d->y01 = NULL;
    }
    for (int m = 0; m < M__COUNT; m++)
        if (c->want[m] && !(METRICS[m].tasks & (1u << task)))
            return sp__fail(SP_EINVAL, "metrics: '%s' is not a %s metric (the task is %s%s)",
                            METRICS[m].name, task_name(task), task_name(task),
                            o->task == SP_EVAL_AUTO ? ", inferred from the data; set the task "
                                                      "to choose another"
                                                    : "");
    if (!c->explicit_metrics)
        for (int m = 0; m < M__COUNT; m++)
            if ((METRICS[m].tasks & (1u << task)) && METRICS[m].in_default) c->want[m] = 1;
    if (o->curves && task == SP_EVAL_BINARY)
        c->want[M_ROC_CURVE] = c->want[M_PR_CURVE] = c->want[M_RELIABILITY] = 1;
    d->task = task;

    /* rows with NaN or infinite values: an error naming the first, or dropped */
    uint8_t *drop = NULL;
    uint64_t n_drop = n_bad;
    if (n_bad && o->nan == SP_EVAL_NAN_ERROR) {
        const char *what = "NaN", *arr = o->y_name;
        double v = sp_array_get_f64(y, first_bad, 0);
        if (!isfinite(v)) {
            what = isnan(v) ? "NaN" : "infinite";
        } else {
            arr = o->s_name;
            for (uint32_t j = 0; j < k; j++) {
                double sv = sp__eval_score(d, first_bad, j);
                if (!isfinite(sv)) {
                    what = isnan(sv) ? "NaN" : "infinite";
                    break;
                }
            }
        }
        return sp__fail(SP_EBADINPUT,
                        "%s: row %" PRIu64 ": %s value (use nan='drop' / --nan "
                        "drop to drop and count such rows)",
                        arr, first_bad, what);
    }
    if (n_bad) {
        drop = sp__calloc(n, 1);
        if (!drop) return sp__fail(SP_ENOMEM, "out of memory");
        for (uint64_t i = first_bad; i < n; i++) {
            int bad = !isfinite(sp_array_get_f64(y, i, 0));
            for (uint32_t j = 0; j < k && !bad; j++)
                bad = !isfinite(sp__eval_score(d, i, j));
            drop[i] = (uint8_t)bad;
        }
    }
    c->res->info.n_rows = n;
    c->res->info.n_dropped = n_drop;
    uint64_t m = n - n_drop;
    if (m == 0) {
        sp__free(drop);
        return sp__fail(SP_EBADINPUT, "%s: all %" PRIu64 " rows have NaN or infinite values",
                        o->s_name, n);
    }
    if (drop) {
        /* compact scores (contiguous float64 copy) and remember the original rows */
        double *cs = sp__malloc(m * k * sizeof(double));
        d->rowid = sp__malloc(m * sizeof(uint32_t));
        if (!cs || !d->rowid) {
            sp__free(cs);
            sp__free(drop);
            return sp__fail(SP_ENOMEM, "out of memory");
        }
        uint64_t j = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (drop[i]) continue;
            for (uint32_t q = 0; q < k; q++)
                cs[j * k + q] = sp__eval_score(d, i, q);
            d->rowid[j++] = (uint32_t)i;
        }
        sp__free(d->owned[0]);
        d->owned[0] = cs;
        d->s = (const char *)cs;
        d->s_dtype = SP_DTYPE_FLOAT64;
        d->s_row = (int64_t)(k * sizeof(double));
        d->s_col = sizeof(double);
    }
    sp__free(drop);
    d->n = m;

#define ORIG(i) (d->rowid ? d->rowid[i] : (i))
    if (w) {
        d->w = sp__malloc(m * sizeof(double));
        if (!d->w) return sp__fail(SP_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < m; i++)
            d->w[i] = sp_array_get_f64(w, ORIG(i), 0);
    }
    if (task == SP_EVAL_BINARY && d->rowid) {
        /* the scan wrote labels by original row: compact them in place (rowid is increasing) */
        for (uint64_t i = 0; i < m; i++)
            d->y01[i] = d->y01[d->rowid[i]];
    } else if (task == SP_EVAL_MULTICLASS) {
        d->ycls = sp__malloc(m * sizeof(int32_t));
        if (!d->ycls) return sp__fail(SP_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < m; i++) {
            double v = sp_array_get_f64(y, ORIG(i), 0);
            if (v != floor(v) || v < 0 || v >= k)
                return sp__fail(SP_EBADINPUT,
                                "%s: row %" PRIu64 ": label %g is not a class "
                                "index in 0..%" PRIu32 " (%s has %" PRIu32 " columns)",
                                o->y_name, (uint64_t)ORIG(i), v, k - 1, o->s_name, k);
            d->ycls[i] = (int32_t)v;
        }
    } else {
        d->yreal = sp__malloc(m * sizeof(double));
        if (!d->yreal) return sp__fail(SP_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < m; i++)
            d->yreal[i] = sp_array_get_f64(y, ORIG(i), 0);
    }
#undef ORIG
    return SP_OK;
}

/* ---- result building */

static sp_status result_new(sp_eval_result **out) {
    sp_eval_result *r = sp__calloc(1, sizeof *r);
    if (!r) return sp__fail(SP_ENOMEM, "out of memory");
    *out = r;
    return SP_OK;
}

sp_status sp__eval_begin(sp__eval_ctx *c, const sp_eval_opts *opts) {
    memset(c, 0, sizeof *c);
    SP_TRY(check_opts(c, opts));
    return result_new(&c->res);
}

sp_status sp__eval_add(sp__eval_ctx *c, int metric, const char *suffix, double value,
                       size_t *index) {
    sp_eval_result *r = c->res;
    if (r->n_metrics == r->cap_metrics) {
        size_t cap = r->cap_metrics ? 2 * r->cap_metrics : 16;
        sp_eval_metric *m = sp__realloc(r->metrics, cap * sizeof *m);
        if (!m) return sp__fail(SP_ENOMEM, "out of memory");
        r->metrics = m;
        double **reps = sp__realloc(r->reps, cap * sizeof *reps);
        if (!reps) return sp__fail(SP_ENOMEM, "out of memory");
        r->reps = reps;
        r->cap_metrics = cap;
    }
    char name[96];
    if (metric == M_TOPK)
        snprintf(name, sizeof name, "top_%" PRIu32 "_accuracy%s", c->o.top_k, suffix ? suffix : "");
    else
        snprintf(name, sizeof name, "%s%s", METRICS[metric].name, suffix ? suffix : "");
    char *dup = sp__strdup(name);
    if (!dup) return sp__fail(SP_ENOMEM, "out of memory");
    size_t i = r->n_metrics++;
    r->metrics[i] = (sp_eval_metric){dup, value, NAN, NAN};
    r->reps[i] = NULL;
    if (index) *index = i;
    return SP_OK;
}

sp_status sp__eval_warn(sp__eval_ctx *c, const char *fmt, ...) {
    sp_eval_result *r = c->res;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < r->n_warnings; i++)
        if (strcmp(r->warnings[i], buf) == 0) return SP_OK;
    char **w = sp__realloc(r->warnings, (r->n_warnings + 1) * sizeof *w);
    if (!w) return sp__fail(SP_ENOMEM, "out of memory");
    r->warnings = w;
    if (!(w[r->n_warnings] = sp__strdup(buf))) return sp__fail(SP_ENOMEM, "out of memory");
    r->n_warnings++;
    return SP_OK;
}

void sp__eval_set_replicates(sp__eval_ctx *c, size_t i, double *values, uint32_t n) {
    sp_eval_result *r = c->res;
    sp__free(r->reps[i]);
    r->reps[i] = values;
    /* the interval comes from a sorted copy: the replicate order stays as drawn */
    double *tmp = sp__malloc((n ? n : 1) * sizeof(double));
    if (!tmp) return; /* the interval stays NaN; the values are still there */
    memcpy(tmp, values, n * sizeof(double));
    double lo, hi;
    sp__eval_percentiles(tmp, n, c->o.level, &lo, &hi);
    sp__free(tmp);
    r->metrics[i].lo = lo;
    r->metrics[i].hi = hi;
}

void sp__eval_set_interval(sp__eval_ctx *c, size_t i, double lo, double hi) {
    c->res->metrics[i].lo = lo;
    c->res->metrics[i].hi = hi;
}

void sp__eval_set_curve(sp__eval_ctx *c, int which, size_t n, double *x, double *y, double *t) {
    sp_eval_result *r = c->res;
    sp__free(r->curve[which].x);
    sp__free(r->curve[which].y);
    sp__free(r->curve[which].t);
    r->curve[which].n = n;
    r->curve[which].x = x;
    r->curve[which].y = y;
    r->curve[which].t = t;
}

void sp__eval_set_confusion(sp__eval_ctx *c, size_t t, size_t k, double *m) {
    sp__free(c->res->confusion[t]);
    c->res->confusion[t] = m;
    c->res->confusion_k = k;
}

void sp__eval_set_info(sp__eval_ctx *c, uint64_t n_clipped, double w_total, double w_pos) {
    c->res->info.n_clipped = n_clipped;
    c->res->info.weight_total = w_total;
    c->res->info.weight_positive = w_pos;
}

void sp_eval_result_free(sp_eval_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_metrics; i++) {
        sp__free((char *)r->metrics[i].name);
        sp__free(r->reps[i]);
    }
    sp__free(r->metrics);
    sp__free(r->reps);
    for (int i = 0; i < 3; i++) {
        sp__free(r->curve[i].x);
        sp__free(r->curve[i].y);
        sp__free(r->curve[i].t);
    }
    for (int i = 0; i < SP_EVAL_MAX_THRESHOLDS; i++)
        sp__free(r->confusion[i]);
    for (size_t i = 0; i < r->n_warnings; i++)
        sp__free(r->warnings[i]);
    sp__free(r->warnings);
    sp__free(r);
}

sp_status sp_eval_run(const sp_array *y_true, const sp_array *y_score, const sp_array *weights,
                      const sp_eval_opts *opts, sp_eval_result **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_eval_run: out is NULL");
    *out = NULL;
    double t0 = sp__now();
    sp__eval_ctx c;
    SP_TRY(sp__eval_begin(&c, opts));
    sp__eval_data d;
    memset(&d, 0, sizeof d);
    sp_status rc = sp__eval_prepare(&c, y_true, y_score, weights, &d);
    if (rc == SP_OK && c.o.ci == SP_EVAL_CI_DELONG) {
        if (d.task != SP_EVAL_BINARY)
            rc = sp__fail(SP_EINVAL,
                          "ci: DeLong intervals are for binary ROC AUC; the task is "
                          "%s (use bootstrap)",
                          task_name(d.task));
        else if (d.w)
            rc = sp__fail(SP_EINVAL, "ci: DeLong intervals do not take sample weights (use "
                                     "bootstrap)");
        else if (c.o.quick > 0)
            rc = sp__fail(SP_EINVAL, "ci: DeLong intervals are not available in quick mode (the "
                                     "sample is stratified and weighted; use bootstrap)");
    }
    sp__eval_data sample;
    memset(&sample, 0, sizeof sample);
    const sp__eval_data *use = &d;
    if (rc == SP_OK && c.o.quick > 0) {
        rc = sp__eval_quick_sample(&d, c.o.quick, c.o.seed, &sample);
        use = &sample;
        c.res->info.quick = 1;
    }
    if (rc == SP_OK) {
        c.res->info.task = use->task;
        c.res->info.n_used = use->n;
        c.res->info.n_classes = use->task == SP_EVAL_BINARY       ? 2
                                : use->task == SP_EVAL_MULTICLASS ? use->k
                                                                  : 0;
        c.res->info.ci = c.o.ci;
        c.res->info.replicates = c.o.ci == SP_EVAL_CI_BOOTSTRAP ? c.o.replicates : 0;
        c.res->info.level = c.o.level;
        if (use->task == SP_EVAL_BINARY)
            rc = sp__eval_binary(&c, use);
        else if (use->task == SP_EVAL_MULTICLASS)
            rc = sp__eval_multiclass(&c, use);
        else
            rc = sp__eval_regression(&c, use);
    }
    sp__eval_data_free(&sample);
    sp__eval_data_free(&d);
    if (rc < 0) {
        sp_eval_result_free(c.res);
        return rc;
    }
    c.res->info.seconds = sp__now() - t0;
    *out = c.res;
    return SP_OK;
}

/* ---- accessors */

void sp_eval_result_info(const sp_eval_result *r, sp_eval_info *out) {
    *out = r->info;
}

size_t sp_eval_result_n_metrics(const sp_eval_result *r) {
    return r->n_metrics;
}

const sp_eval_metric *sp_eval_result_metric(const sp_eval_result *r, size_t i) {
    return i < r->n_metrics ? &r->metrics[i] : NULL;
}

const sp_eval_metric *sp_eval_result_find(const sp_eval_result *r, const char *name) {
    for (size_t i = 0; name && i < r->n_metrics; i++)
        if (strcmp(r->metrics[i].name, name) == 0) return &r->metrics[i];
    return NULL;
}

const double *sp_eval_result_replicates(const sp_eval_result *r, size_t i, size_t *n) {
    if (i >= r->n_metrics || !r->reps[i]) {
        *n = 0;
        return NULL;
    }
    *n = r->info.replicates;
    return r->reps[i];
}

sp_status sp_eval_result_curve(const sp_eval_result *r, const char *name, sp_eval_curve *out) {
    memset(out, 0, sizeof *out);
    int which = -1;
    if (name && strcmp(name, "roc") == 0) which = 0;
    if (name && strcmp(name, "pr") == 0) which = 1;
    if (name && strcmp(name, "reliability") == 0) which = 2;
    if (which < 0)
        return sp__fail(SP_EINVAL, "curve: '%s' is not a curve (roc, pr, reliability)",
                        name ? name : "(null)");
    if (!r->curve[which].x)
        return sp__fail(SP_ENOTFOUND, "curve: '%s' was not computed (ask for metric '%s')", name,
                        which == 0   ? "roc_curve"
                        : which == 1 ? "pr_curve"
                                     : "reliability");
    out->n = r->curve[which].n;
    out->x = r->curve[which].x;
    out->y = r->curve[which].y;
    out->threshold = r->curve[which].t;
    return SP_OK;
}

const double *sp_eval_result_confusion(const sp_eval_result *r, size_t t, size_t *k) {
    if (t >= SP_EVAL_MAX_THRESHOLDS || !r->confusion[t]) {
        *k = 0;
        return NULL;
    }
    *k = r->confusion_k;
    return r->confusion[t];
}

size_t sp_eval_result_n_warnings(const sp_eval_result *r) {
    return r->n_warnings;
}

const char *sp_eval_result_warning(const sp_eval_result *r, size_t i) {
    return i < r->n_warnings ? r->warnings[i] : NULL;
}

sp_status sp_eval_result_plot(const sp_eval_result *r, const char *path, const char *title) {
    if (!path) return sp__fail(SP_EINVAL, "plot: no path given");
    if (r->info.task != SP_EVAL_BINARY)
        return sp__fail(SP_EINVAL,
                        "plot: the ROC, precision-recall and reliability plot is drawn "
                        "for binary tasks; this result is %s",
                        task_name(r->info.task));
    static const char *const need[2] = {"roc_curve", "pr_curve"};
    for (int i = 0; i < 2; i++)
        if (!r->curve[i].x)
            return sp__fail(SP_EINVAL,
                            "plot: the result has no %s (evaluate with opts.curves = 1 "
                            "or metric '%s')",
                            need[i], need[i]);
    const sp_eval_metric *auc = sp_eval_result_find(r, "roc_auc");
    const sp_eval_metric *ap = sp_eval_result_find(r, "average_precision");
    const sp_eval_metric *ece = sp_eval_result_find(r, "ece");
    sp__eval_plot p = {
        .title = title,
        .roc_fpr = r->curve[0].x,
        .roc_tpr = r->curve[0].y,
        .roc_n = r->curve[0].n,
        .roc_auc = auc ? auc->value : NAN,
        .pr_recall = r->curve[1].x,
        .pr_precision = r->curve[1].y,
        .pr_n = r->curve[1].n,
        .average_precision = ap ? ap->value : NAN,
        .prevalence = r->info.weight_total > 0 && r->info.task == SP_EVAL_BINARY
                          ? r->info.weight_positive / r->info.weight_total
                          : NAN,
        .rel_confidence = r->curve[2].x,
        .rel_accuracy = r->curve[2].y,
        .rel_count = r->curve[2].t,
        .rel_n = r->curve[2].n,
        .ece = ece ? ece->value : NAN,
    };
    return sp__eval_plot_png(path, &p);
}
