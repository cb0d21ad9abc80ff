/* eval_internal.h — private to src/eval: the pieces the metrics engine is built from.
 *   eval_sort.c   multi-threaded LSD radix argsort of float32/float64 scores
 *   eval_plot.c   ROC, precision-recall and reliability curves drawn into a PNG file
 * Not installed. */
#ifndef SP_EVAL_INTERNAL_H
#define SP_EVAL_INTERNAL_H

#include "core_internal.h"

#include <math.h>

/* ---- sorting (eval_sort.c) */

/* Stable ascending argsort of n floating-point scores by value.
 *   scores: element i is at (const char *)scores + i * stride; dtype SP_DTYPE_FLOAT32 or
 * SP_DTYPE_FLOAT64. The caller guarantees that no score is NaN. -0.0 sorts as +0.0 (they are
 * equal). stride: bytes between consecutive scores (8 for contiguous float64; 8*k for one column of
 * a row-major n x k float64 matrix). n:      at most UINT32_MAX. n_threads: 0 = all cores. perm:
 * OUT, n entries: perm[j] is the index of the j-th smallest score; ties keep index order. sorted:
 * OUT, may be NULL; n entries: sorted[j] = (double)score[perm[j]] (with -0.0 as +0.0). Scratch is
 * allocated inside and freed before return. Returns SP_OK, SP_ENOMEM or SP_EINVAL. */
sp_status sp__eval_argsort(const void *scores, sp_dtype dtype, size_t stride, size_t n,
                           int n_threads, uint32_t *perm, double *sorted);

/* ---- plotting (eval_plot.c) */

typedef struct sp__eval_plot {
    const char *title; /* drawn above the panels; may be NULL */
    /* ROC curve: n points (fpr, tpr), fpr ascending, from (0,0) to (1,1). */
    const double *roc_fpr, *roc_tpr;
    size_t roc_n;
    double roc_auc; /* printed in the panel's legend; NaN = not shown */
    /* Precision-recall curve: n points (recall, precision), recall descending (as scikit-learn's
     * precision_recall_curve returns it). */
    const double *pr_recall, *pr_precision;
    size_t pr_n;
    double average_precision; /* legend; NaN = not shown */
    double prevalence;        /* drawn as the no-skill horizontal line; NaN = none */
    /* Reliability diagram: n bins with mean confidence, observed accuracy and row count; bins with
     * count 0 are skipped. */
    const double *rel_confidence, *rel_accuracy, *rel_count;
    size_t rel_n;
    double ece; /* legend; NaN = not shown */
} sp__eval_plot;

/* Draws the three panels side by side (ROC, PR, reliability with the diagonal) into an RGB PNG
 * at `path`, written atomically. Returns SP_OK, SP_ENOMEM, SP_EIO (message names the path). */
sp_status sp__eval_plot_png(const char *path, const sp__eval_plot *plot);

#endif

/* ---- the engine (eval_core.c, eval_binary.c, eval_multi.c, eval_boot.c, eval_quick.c) */

#include "softpipe/eval.h"

/* Metric ids. Binary, multiclass and regression share the enum; each task accepts its own. */
enum {
    M_ROC_AUC,
    M_AP,
    M_LOG_LOSS,
    M_BRIER,
    M_ACCURACY,
    M_PRECISION,
    M_RECALL,
    M_F1,
    M_ECE,
    M_TOPK,
    M_PRECISION_MACRO,
    M_RECALL_MACRO,
    M_F1_MACRO,
    M_PRECISION_MICRO,
    M_RECALL_MICRO,
    M_F1_MICRO,
    M_PRECISION_WEIGHTED,
    M_RECALL_WEIGHTED,
    M_F1_WEIGHTED,
    M_AUC_OVR,
    M_AUC_OVR_WEIGHTED,
    M_MAE,
    M_MSE,
    M_RMSE,
    M_R2,
    M_MAPE,
    M_ROC_CURVE, /* curves and tables: not scalars */
    M_PR_CURVE,
    M_RELIABILITY,
    M_CONFUSION,
    M__COUNT
};

/* The rows evaluated, after validation, NaN dropping and quick-mode sampling. Scores are a
 * strided view (borrowed from the caller, or owned when they had to be compacted or
 * converted). */
typedef struct sp__eval_data {
    sp_eval_task task;
    uint64_t n;    /* rows */
    uint32_t k;    /* score columns: 1, or the classes of a multiclass task */
    const char *s; /* scores: element (i, j) at s + i * s_row + j * s_col */
    int64_t s_row, s_col;
    sp_dtype s_dtype;  /* SP_DTYPE_FLOAT32 or SP_DTYPE_FLOAT64 */
    double eps;        /* machine epsilon of the score dtype (log_loss clipping) */
    uint8_t *y01;      /* binary labels */
    int32_t *ycls;     /* multiclass labels */
    double *yreal;     /* regression labels */
    double *w;         /* sample weights, or NULL (all 1) */
    uint32_t *rowid;   /* original row of each row (bootstrap keys); NULL = identity */
    uint16_t *stratum; /* quick mode: the stratum of each row (the bootstrap keeps every
                          stratum's total weight fixed); NULL otherwise */
    uint32_t n_strata;
    void *owned[4]; /* compacted copies, freed with the data */
} sp__eval_data;

static inline double sp__eval_score(const sp__eval_data *d, uint64_t i, uint32_t j) {
    const char *p = d->s + (int64_t)i * d->s_row + (int64_t)j * d->s_col;
    if (d->s_dtype == SP_DTYPE_FLOAT64) return *(const double *)(const void *)p;
    return (double)*(const float *)(const void *)p;
}
static inline uint32_t sp__eval_rowid(const sp__eval_data *d, uint64_t i) {
    return d->rowid ? d->rowid[i] : (uint32_t)i;
}
void sp__eval_data_free(sp__eval_data *d);

/* Everything the task code needs besides the data: options, requested metrics, the result. */
typedef struct sp__eval_ctx {
    sp_eval_opts o;                /* validated, defaults filled in */
    unsigned char want[M__COUNT];  /* computed */
    unsigned char asked[M__COUNT]; /* named in opts.metrics (a metric that cannot be computed
                                      is an error only when asked for by name) */
    int explicit_metrics; /* opts.metrics was given (a metric that cannot be computed errors) */
    int n_threads;
    sp_eval_result *res;
} sp__eval_ctx;

/* Validates opts into c (defaults filled in) and makes an empty result c->res. */
sp_status sp__eval_begin(sp__eval_ctx *c, const sp_eval_opts *opts);
/* Validates the arrays and fills d (sp__eval_data_free frees it even on failure); infers the
 * task and the default metrics into c when opts left them open. */
sp_status sp__eval_prepare(sp__eval_ctx *c, const sp_array *y, const sp_array *s, const sp_array *w,
                           sp__eval_data *d);

/* ---- result building (eval_core.c) */
sp_status sp__eval_add(sp__eval_ctx *c, int metric, const char *suffix, double value,
                       size_t *index /* OUT, may be NULL */);
sp_status sp__eval_warn(sp__eval_ctx *c, const char *fmt, ...) SP__PRINTF(2, 3);
/* Attaches R replicate values (taken over: freed with the result) to metric i and sets its
 * percentile interval. */
void sp__eval_set_replicates(sp__eval_ctx *c, size_t i, double *values, uint32_t r);
void sp__eval_set_interval(sp__eval_ctx *c, size_t i, double lo, double hi);
/* Takes over the arrays (sp__malloc'ed). which: 0 roc, 1 pr, 2 reliability. */
void sp__eval_set_curve(sp__eval_ctx *c, int which, size_t n, double *x, double *y, double *t);
/* Takes over a k x k matrix for threshold t. */
void sp__eval_set_confusion(sp__eval_ctx *c, size_t t, size_t k, double *m);
void sp__eval_set_info(sp__eval_ctx *c, uint64_t n_clipped, double w_total, double w_pos);
const char *sp__eval_metric_name(int metric);
/* "@0.3": the shortest text of a threshold that reads back as the same double. */
void sp__eval_threshold_name(double t, char *buf, size_t cap);

/* ---- the tasks */
sp_status sp__eval_binary(sp__eval_ctx *c, const sp__eval_data *d);
sp_status sp__eval_multiclass(sp__eval_ctx *c, const sp__eval_data *d);
sp_status sp__eval_regression(sp__eval_ctx *c, const sp__eval_data *d);

/* ---- shared helpers */

/* The calibration bin of a confidence: right-closed (lo, hi], so conf in (b/B, (b+1)/B] goes to
 * bin b, and 0 goes to bin 0. */
static inline int sp__eval_bin_of(double conf, uint32_t n_bins) {
    double x = ceil(conf * n_bins) - 1;
    if (x < 0) x = 0;
    if (x > n_bins - 1) x = n_bins - 1;
    return (int)x;
}
/* Neumaier-compensated running sum. */
typedef struct sp__ksum {
    double s, c;
} sp__ksum;
static inline void sp__ksum_add(sp__ksum *k, double x) {
    double t = k->s + x;
    if ((k->s >= 0 ? k->s : -k->s) >= (x >= 0 ? x : -x))
        k->c += (k->s - t) + x;
    else
        k->c += (x - t) + k->s;
    k->s = t;
}
static inline double sp__ksum_get(const sp__ksum *k) {
    return k->s + k->c;
}

/* ---- the rank table (eval_binary.c): one descending sweep over sorted scores */

/* Binary rank statistics of one scored column: labels `y01` (1 = positive), optional weights, a
 * stable ascending argsort `perm` and the sorted scores. */
typedef struct sp__eval_rank {
    uint64_t n;
    const uint32_t *perm;
    const double *sorted;
    const uint8_t *y01; /* indexed by row */
    const double *w;    /* indexed by row, or NULL */
    const uint8_t *ys;  /* optional: labels in sorted order (faster); NULL = gather via perm */
} sp__eval_rank;

typedef struct sp__eval_rank_out {
    double auc;        /* NaN when a class is absent */
    double ap;         /* 0 with no positives (scikit-learn) */
    double pos, neg;   /* total weights */
    double delong_var; /* DeLong variance of the AUC (unweighted only; NaN otherwise) */
} sp__eval_rank_out;

sp_status sp__eval_rank_sweep(const sp__eval_rank *r, int want_delong,
                              sp__eval_rank_out *out /* OUT */);

/* DeLong structural components for each row (indexed by row): V10 for positives, V01 for
 * negatives (DeLong 1988). v has n entries. */
sp_status sp__eval_rank_components(const sp__eval_rank *r, double *v /* OUT */);

/* ---- bootstrap (eval_boot.c) */

/* The Poisson(1) count of (seed, replicate, row). See eval_boot.c for the construction. */
uint32_t sp__eval_poisson(uint64_t seed, uint32_t replicate, uint32_t row);

/* The stream key of a seed, and the inline pieces of sp__eval_poisson for the kernels: the
 * 64-bit draw of replicate pair p at a row, and a 32-bit uniform turned into a Poisson(1) count
 * by counting the CDF thresholds at or below it. */
uint64_t sp__eval_seed_key(uint64_t seed);
extern const uint32_t sp__eval_pois_t[12];
static inline uint64_t sp__eval_draw(uint64_t key, uint32_t pair, uint32_t row) {
    uint64_t z = key + (((uint64_t)pair << 32) | row) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint32_t sp__eval_pois(uint32_t u) {
    uint32_t c = 0;
    for (int i = 0; i < 12; i++)
        c += u >= sp__eval_pois_t[i];
    return c;
}
/* Replicates are processed in blocks of this many (even) per sweep over the rows. */
#define SP__BOOT_B 16

/* The bootstrap weight of row i of d in replicates r0 .. r0 + SP__BOOT_B - 1 (r0 even): its
 * Poisson counts times its sample weight, times its stratum's factor in quick mode (scale from
 * sp__eval_strata_scale, or NULL). The scalar form, for the linear kernels. */
static inline void sp__eval_boot_row(const sp__eval_data *d, uint64_t key, uint32_t r0, uint64_t i,
                                     const double *scale, double *w) {
    const uint32_t rid = d->rowid ? d->rowid[i] : (uint32_t)i;
    for (uint32_t b = 0; b < SP__BOOT_B; b += 2) {
        const uint64_t h = sp__eval_draw(key, (r0 + b) >> 1, rid);
        w[b] = sp__eval_pois((uint32_t)h);
        w[b + 1] = sp__eval_pois((uint32_t)(h >> 32));
    }
    if (d->w)
        for (uint32_t b = 0; b < SP__BOOT_B; b++)
            w[b] *= d->w[i];
    if (scale)
        for (uint32_t b = 0; b < SP__BOOT_B; b++)
            w[b] *= scale[(size_t)d->stratum[i] * SP__BOOT_B + b];
}

/* Percentile interval of values (NaNs ignored) at level, numpy's 'linear' rule. Sorts values. */
void sp__eval_percentiles(double *values, uint32_t n, double level, double *lo, double *hi);

/* Quick mode's stratified bootstrap: for replicates r0 .. r0 + SP__BOOT_B - 1, scale[h * B + b]
 * is the factor that brings stratum h's Poisson-reweighted total weight back to its total weight
 * (so each replicate resamples within strata, as the sample was drawn). Returns NULL when the data
 * has no strata; the caller frees the array with sp__free. On allocation failure returns NULL and
 * sets *failed. */
double *sp__eval_strata_scale(const sp__eval_data *d, uint64_t key, uint32_t r0, int *failed);

/* Runs fn(ctx, r0, r1) over blocks of replicates [r0, r1) on n_threads threads. */
void sp__eval_boot_blocks(int n_threads, uint32_t replicates, uint32_t block,
                          void (*fn)(void *ctx, uint32_t r0, uint32_t r1), void *ctx);

/* ---- quick mode (eval_quick.c) */

/* Picks a stratified sample: strata are (label, score decile) for binary, (class) for
 * multiclass, (label decile) for regression; each stratum contributes round(fraction * size)
 * rows, chosen by selection sampling with a counter-based generator keyed by seed. Writes the
 * compacted sample into *out (its rowid = original rows). */
sp_status sp__eval_quick_sample(const sp__eval_data *d, double quick, uint64_t seed,
                                sp__eval_data *out /* OUT */);
