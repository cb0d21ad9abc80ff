/* softpipe/eval.h — evaluation in one pass: every metric from one sort, with confidence intervals.
 *
 * Predictions are evaluated from arrays the caller owns (NumPy buffers, .npy files, dataset
 * columns; see sp_array in core.h), never copied wholesale. For a binary task the scores are sorted
 * once (a multi-threaded radix sort) and one descending sweep over the sorted scores builds the
 * table of distinct-score cumulative (weighted) counts from which ROC AUC, average precision and
 * the ROC and precision-recall curves are read; log loss, Brier score, calibration error and the
 * thresholded metrics come from one linear pass. Multiclass and regression metrics are linear
 * passes (plus one sort per class for one-vs-rest AUC).
 *
 * Definitions follow scikit-learn 1.2 and match it to 1e-12 relative on float64 input:
 *   roc_auc            area under the ROC curve; a positive and a negative with the same score
 *                      count one half. NaN (with a warning) when one class is absent.
 *   average_precision  sum over distinct thresholds, from the highest score down, of
 *                      (R_j - R_{j-1}) * P_j; rows with tied scores enter together.
 *   log_loss           mean of -log p(true class), p clipped to [eps, 1 - eps] where eps is the
 *                      machine epsilon of the score dtype; rows are renormalized after clipping
 *                      (scikit-learn's rule). sp_eval_info.n_clipped counts the clipped rows.
 *   brier              mean of (y - p)^2.
 *   accuracy, precision, recall, f1, confusion_matrix
 *                      at each threshold t a row is predicted positive when its score >= t
 *                      (binary); multiclass predicts the first column holding the row maximum.
 *                      A zero denominator gives 0 and a warning (scikit-learn's zero_division).
 *   ece                expected calibration error of the top label (Guo et al. 2017): confidence
 *                      is the largest class probability (max(p, 1 - p) for binary), correct is
 *                      whether that class is the true one; rows fall in `ece_bins` equal-width
 *                      right-closed bins (lo, hi] (a confidence of exactly 0 goes to the first
 *                      bin), or equal-mass bins of consecutive sorted confidences with
 *                      ece_equal_mass; ECE = sum over bins of (bin weight / total weight) *
 *                      |mean confidence - accuracy|.
 *   multiclass         accuracy (top-1), top_k_accuracy (scikit-learn's tie rule: among equal
 *                      scores the higher class index ranks first), log_loss, precision / recall /
 *                      f1 with _macro, _micro and _weighted averages over the classes present in
 *                      the labels or the predictions, roc_auc_ovr (macro mean of one-vs-rest AUCs)
 *                      and roc_auc_ovr_weighted (weighted by class prevalence).
 *   regression         mae, mse, rmse, r2 (1 when the labels are constant and predicted exactly,
 *                      else 0 for constant labels), mape (|y - p| / max(|y|, eps64)).
 *
 * Confidence intervals: SP_EVAL_CI_DELONG gives roc_auc a normal interval from DeLong's variance
 * (computed in O(n log n) from the same sorted table); SP_EVAL_CI_BOOTSTRAP reweights every row
 * of replicate r by an independent Poisson(1) count drawn from a counter-based generator keyed by
 * (seed, r, row), so every replicate, and so every interval, is identical for any thread count,
 * and gives percentile intervals for every scalar metric. Quick mode evaluates a sample stratified
 * by label and score decile and reports its size; its intervals say how far the full-data value
 * may be.
 *
 * Thread-safety: sp_eval_run and sp_eval_delong_test are thread-safe (they share nothing); a
 * result is read-only after it is returned and may be read from any thread.
 */
#ifndef SOFTPIPE_EVAL_H
#define SOFTPIPE_EVAL_H

#include "softpipe/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_eval_task {
    SP_EVAL_AUTO = 0,       /* 2-D scores: multiclass; 0/1 labels: binary; otherwise regression */
    SP_EVAL_BINARY = 1,     /* labels 0/1, one score per row (higher = more likely positive) */
    SP_EVAL_MULTICLASS = 2, /* labels 0..k-1, an n x k score matrix (probabilities for log_loss) */
    SP_EVAL_REGRESSION = 3  /* real labels and predictions */
} sp_eval_task;

typedef enum sp_eval_ci {
    SP_EVAL_CI_AUTO = 0,      /* none, except bootstrap in quick mode */
    SP_EVAL_CI_BOOTSTRAP = 1, /* Poisson bootstrap percentile intervals, every scalar metric */
    SP_EVAL_CI_DELONG = 2,    /* DeLong normal interval for roc_auc (binary only, no weights) */
    SP_EVAL_CI_NONE = 3       /* no intervals, also in quick mode */
} sp_eval_ci;

typedef enum sp_eval_nan {
    SP_EVAL_NAN_ERROR = 0, /* a NaN or infinite score or label is an error naming its row */
    SP_EVAL_NAN_DROP = 1   /* such rows are dropped and counted (sp_eval_info.n_dropped) */
} sp_eval_nan;

#define SP_EVAL_MAX_THRESHOLDS 16

typedef struct sp_eval_opts {
    sp_eval_task task;   /* default SP_EVAL_AUTO */
    const char *metrics; /* comma-separated names (see the file comment, plus "roc_curve",
                            "pr_curve", "reliability", "confusion_matrix"); NULL or "" = the
                            default set of the task, which has no curves */
    size_t n_thresholds; /* 0 = one threshold, 0.5 */
    double thresholds[SP_EVAL_MAX_THRESHOLDS];
    sp_eval_ci ci;       /* default SP_EVAL_CI_NONE (quick mode: bootstrap) */
    uint32_t replicates; /* bootstrap replicates; 0 = 1000 */
    double level;        /* interval level in (0, 1); 0 = 0.95 */
    uint64_t seed;       /* bootstrap and quick-mode sampling seed */
    double quick;        /* 0 = off; 0 < q < 1: that fraction of rows; q >= 1: that many rows */
    sp_eval_nan nan;     /* default SP_EVAL_NAN_ERROR */
    int n_threads;       /* 0 = all cores */
    uint32_t ece_bins;   /* 0 = 15 */
    int ece_equal_mass;  /* 0 = equal-width bins, 1 = equal-mass bins */
    uint32_t top_k;      /* multiclass top-k accuracy; 0 = 5 */
    const char *y_name;  /* names used in error messages; NULL = "y_true", "y_score", */
    const char *s_name;  /* "sample_weight" */
    const char *w_name;
    int curves; /* 1: a binary task also keeps the ROC and PR curves and the calibration bins
                   (what sp_eval_result_plot draws) without listing them in metrics; other tasks
                   ignore it */
} sp_eval_opts;

/* Fills opts with the defaults above. */
SP_API void sp_eval_opts_init(sp_eval_opts *opts);

typedef struct sp_eval_result sp_eval_result;

/* Evaluates predictions.
 *   y_true:  1-D, n rows: 0/1 (binary; bool, integer or float holding 0 and 1), class index
 *            0..k-1 (multiclass, integer or integral float) or real values (regression).
 *   y_score: 1-D with n rows (binary, regression) or 2-D n x k (multiclass); float32 or float64
 *            (integer dtypes are converted). Any strides.
 *   weights: NULL or 1-D n non-negative finite sample weights.
 *   opts:    NULL = defaults. Every field is validated; an error names it.
 * Errors: SP_EINVAL (bad option or shape; names it), SP_EBADINPUT (a bad value: names the array
 * and the first bad row), SP_ENOMEM. On success *out is a result to free with sp_eval_result_free.
 * Thread-safe. */
SP_API sp_status sp_eval_run(const sp_array *y_true, const sp_array *y_score,
                             const sp_array *weights, const sp_eval_opts *opts,
                             sp_eval_result **out /* OUT */);

typedef struct sp_eval_metric {
    const char *name; /* "roc_auc", "f1", "f1@0.3" (with several thresholds), "top_5_accuracy" */
    double value;     /* NaN when undefined (see the result's warnings) */
    double lo, hi;    /* interval at opts.level; NaN when none was asked or it is undefined */
} sp_eval_metric;

typedef struct sp_eval_info {
    sp_eval_task task;   /* the task evaluated (never SP_EVAL_AUTO) */
    uint64_t n_rows;     /* rows given */
    uint64_t n_used;     /* rows evaluated: n_rows - n_dropped, or the quick sample's size */
    uint64_t n_dropped;  /* rows dropped for NaN/inf (SP_EVAL_NAN_DROP) */
    uint64_t n_clipped;  /* rows whose probability was clipped for log_loss */
    uint32_t n_classes;  /* 2 for binary, k for multiclass, 0 for regression */
    int quick;           /* 1 when the metrics come from a quick-mode sample */
    sp_eval_ci ci;       /* the interval method used */
    uint32_t replicates; /* bootstrap replicates computed (0 without bootstrap) */
    double level;
    double weight_total;    /* sum of the weights of the rows evaluated */
    double weight_positive; /* binary: sum of the weights of positive rows */
    double seconds;         /* wall time of sp_eval_run */
} sp_eval_info;

/* Summary numbers of the run. */
SP_API void sp_eval_result_info(const sp_eval_result *res, sp_eval_info *out /* OUT */);

/* The scalar metrics, in the order of opts.metrics (or the default order). Borrowed: valid until
 * sp_eval_result_free. i out of range returns NULL. */
SP_API size_t sp_eval_result_n_metrics(const sp_eval_result *res);
SP_API const sp_eval_metric *sp_eval_result_metric(const sp_eval_result *res, size_t i);
/* The metric called `name`, or NULL. */
SP_API const sp_eval_metric *sp_eval_result_find(const sp_eval_result *res, const char *name);

/* The bootstrap replicate values of metric i (NaN where a replicate left it undefined); NULL and
 * *n = 0 without bootstrap. Borrowed like the metrics. */
SP_API const double *sp_eval_result_replicates(const sp_eval_result *res, size_t i,
                                               size_t *n /* OUT */);

typedef struct sp_eval_curve {
    size_t n;                /* points */
    const double *x, *y;     /* roc: fpr, tpr; pr: recall, precision; reliability: confidence,
                                accuracy */
    const double *threshold; /* roc: n thresholds (the first is the top score + 1, scikit-learn
                                1.2's rule); pr: n - 1 thresholds, ascending; reliability: the
                                total weight in each bin (n values) */
} sp_eval_curve;

/* A curve by name: "roc" (scikit-learn's roc_curve with drop_intermediate), "pr" (exactly
 * precision_recall_curve's arrays) or "reliability" (the ECE bins, empty bins omitted). Only
 * available when asked for in opts.metrics ("roc_curve", "pr_curve", "reliability") or implied
 * by "ece" (reliability). SP_ENOTFOUND otherwise. Arrays are borrowed like the metrics. */
SP_API sp_status sp_eval_result_curve(const sp_eval_result *res, const char *name,
                                      sp_eval_curve *out /* OUT */);

/* The confusion matrix (weighted counts, row = true class, column = predicted class) of
 * threshold t (binary: 2 x 2, [[TN, FP], [FN, TP]]; multiclass: k x k, t must be 0). NULL when
 * not computed. Borrowed. */
SP_API const double *sp_eval_result_confusion(const sp_eval_result *res, size_t t,
                                              size_t *k /* OUT */);

/* Warnings the run produced ("roc_auc: only one class present in y_true; AUC is undefined").
 * Borrowed. */
SP_API size_t sp_eval_result_n_warnings(const sp_eval_result *res);
SP_API const char *sp_eval_result_warning(const sp_eval_result *res, size_t i);

/* Draws the ROC, precision-recall and reliability curves of a binary result into a PNG file
 * (written atomically). The result must hold the ROC and PR curves (opts.curves, or metrics
 * "roc_curve" and "pr_curve"); the reliability panel is left empty when the scores were not
 * probabilities. SP_EINVAL says what is missing, or that the task is not binary. */
SP_API sp_status sp_eval_result_plot(const sp_eval_result *res, const char *path,
                                     const char *title);

SP_API void sp_eval_result_free(sp_eval_result *res);

/* The paired DeLong test of two models' ROC AUC on the same rows (DeLong, DeLong &
 * Clarke-Pearson 1988), in O(n log n). y_true is 0/1; both score arrays have n rows. */
typedef struct sp_eval_delong {
    double auc_a, auc_b;
    double var_a, var_b, cov; /* DeLong variances of each AUC and their covariance */
    double diff;              /* auc_a - auc_b */
    double z;                 /* diff / sqrt(var_a + var_b - 2 cov) */
    double p_value;           /* two-sided */
    uint64_t n_positive, n_negative;
} sp_eval_delong;

/* opts may be NULL; only nan and n_threads are used. Thread-safe. */
SP_API sp_status sp_eval_delong_test(const sp_array *y_true, const sp_array *score_a,
                                     const sp_array *score_b, const sp_eval_opts *opts,
                                     sp_eval_delong *out /* OUT */);

/* The bootstrap weights: out[i] = the Poisson(1) count of row first_row + i in replicate
 * `replicate` under `seed`, exactly as sp_eval_run draws them (for reproducing a replicate with
 * another tool). Thread-safe. */
SP_API void sp_eval_poisson_weights(uint64_t seed, uint32_t replicate, uint64_t first_row, size_t n,
                                    uint32_t *out);

#ifdef __cplusplus
}
#endif
#endif
