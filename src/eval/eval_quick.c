/* eval_quick.c — quick mode: a stratified sample of the rows.
 *
 * Strata are (label, score decile) for binary tasks, the class for multiclass and the label
 * decile for regression; deciles come from a systematic sub-sample of at most 10,000 rows, so
 * the whole selection is two linear passes and no full sort. Every stratum contributes
 * round(fraction * its size) rows, at least one (proportional allocation), chosen with Knuth's
 * selection sampling (Algorithm S): row i of a stratum with R rows left, of which m are still to
 * be chosen, is kept when R * u < m, with u uniform from the counter-based generator keyed by
 * (seed, row) — exact sizes, one pass, the same sample for the same seed.
 *
 * Each sampled row carries a design weight N_h / m_h (scaled so the weights sum to the sample
 * size), which undoes the rounding of the strata's shares, and its stratum: the bootstrap then
 * resamples within strata (eval_boot.c, sp__eval_strata_scale), as the sample was drawn. Because
 * fixing each (label, score decile) share removes most of the sampling variance of rank metrics,
 * those intervals are several times narrower than a simple random sample's and still cover (the
 * 200-trial test in tests/python/test_metrics.py). */
#include "eval_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The value the strata are cut on: the score (binary) or the label (regression). */
static double strat_value(const sp__eval_data *d, uint64_t i) {
    return d->task == SP_EVAL_REGRESSION ? d->yreal[i] : sp__eval_score(d, i, 0);
}

static int decile_of(const double *edges, double v) {
    int b = 0;
    while (b < 9 && v > edges[b])
        b++;
    return b;
}

sp_status sp__eval_quick_sample(const sp__eval_data *d, double quick, uint64_t seed,
                                sp__eval_data *out) {
    memset(out, 0, sizeof *out);
    const uint64_t n = d->n;
    const uint32_t k = d->k;
    double f = quick < 1 ? quick : quick / (double)n;
    if (f > 1) f = 1;

    /* decile edges from a systematic sub-sample */
    double edges[9] = {0};
    if (d->task != SP_EVAL_MULTICLASS) {
        uint64_t m = n < 10000 ? n : 10000;
        double *sub = sp__malloc(m * sizeof(double));
        if (!sub) return sp__fail(SP_ENOMEM, "out of memory");
        for (uint64_t j = 0; j < m; j++)
            sub[j] = strat_value(d, j * n / m);
        qsort(sub, m, sizeof(double), cmp_double);
        for (int q = 0; q < 9; q++)
            edges[q] = sub[(m * (uint64_t)(q + 1)) / 10 < m ? (m * (uint64_t)(q + 1)) / 10 : m - 1];
        sp__free(sub);
    }
    uint64_t n_strata = d->task == SP_EVAL_BINARY ? 20 : d->task == SP_EVAL_MULTICLASS ? k : 10;
    if (n_strata > 65535) n_strata = 65535; /* strata ids are 16-bit; classes beyond share one */
    uint64_t *size = sp__calloc(n_strata * 3, sizeof(uint64_t));
    if (!size) return sp__fail(SP_ENOMEM, "out of memory");
    uint64_t *want = size + n_strata, *taken = size + 2 * n_strata;
    uint32_t *st = sp__malloc(n * sizeof(uint32_t));
    if (!st) {
        sp__free(size);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t s;
        if (d->task == SP_EVAL_BINARY)
            s = (uint32_t)(d->y01[i] * 10 + decile_of(edges, strat_value(d, i)));
        else if (d->task == SP_EVAL_MULTICLASS)
            s = (uint32_t)d->ycls[i] < n_strata ? (uint32_t)d->ycls[i] : (uint32_t)n_strata - 1;
        else
            s = (uint32_t)decile_of(edges, strat_value(d, i));
        st[i] = s;
        size[s]++;
    }
    /* every non-empty stratum keeps at least one row, so each is represented */
    uint64_t total = 0;
    for (uint64_t s = 0; s < n_strata; s++) {
        want[s] = (uint64_t)llround(f * (double)size[s]);
        if (want[s] == 0 && size[s] > 0) want[s] = 1;
        total += want[s];
    }
    if (total == 0) {
        sp__free(size);
        sp__free(st);
        return sp__fail(SP_EINVAL, "quick: a sample of %g of %llu rows is empty; ask for more", f,
                        (unsigned long long)n);
    }

    /* the compacted sample */
    out->task = d->task;
    out->k = k;
    out->n = total;
    out->eps = d->eps;
    out->s_dtype = SP_DTYPE_FLOAT64;
    out->s_row = (int64_t)(k * sizeof(double));
    out->s_col = sizeof(double);
    double *s_out = sp__malloc(total * k * sizeof(double));
    out->owned[0] = s_out;
    out->s = (const char *)s_out;
    out->rowid = sp__malloc(total * sizeof(uint32_t));
    if (d->y01) out->y01 = sp__malloc(total);
    if (d->ycls) out->ycls = sp__malloc(total * sizeof(int32_t));
    if (d->yreal) out->yreal = sp__malloc(total * sizeof(double));
    out->w = sp__malloc(total * sizeof(double));
    out->stratum = sp__malloc(total * sizeof(uint16_t));
    out->n_strata = (uint32_t)n_strata;
    if (!s_out || !out->rowid || (d->y01 && !out->y01) || (d->ycls && !out->ycls) ||
        (d->yreal && !out->yreal) || !out->w || !out->stratum) {
        sp__free(size);
        sp__free(st);
        sp__eval_data_free(out);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    /* design weights: a row stands for N_h / m_h rows of its stratum; scaled so that the sample's
     * weights sum to its size. They undo the rounding of each stratum's share. */
    double *design = sp__malloc(n_strata * sizeof(double));
    if (!design) {
        sp__free(size);
        sp__free(st);
        sp__eval_data_free(out);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    for (uint64_t s = 0; s < n_strata; s++)
        design[s] = want[s] ? ((double)size[s] / (double)want[s]) * ((double)total / (double)n) : 0;
    const uint64_t key = sp__eval_seed_key(seed ^ 0x9c1c5a3f17e5d00bull);
    uint64_t j = 0;
    for (uint64_t i = 0; i < n && j < total; i++) {
        uint32_t s = st[i];
        uint64_t remaining = size[s]--;
        if (taken[s] >= want[s]) continue;
        uint32_t rid = sp__eval_rowid(d, i);
        double u = (double)(sp__eval_draw(key, 0, rid) >> 11) * (1.0 / 9007199254740992.0);
        if ((double)remaining * u >= (double)(want[s] - taken[s])) continue;
        taken[s]++;
        for (uint32_t q = 0; q < k; q++)
            s_out[j * k + q] = sp__eval_score(d, i, q);
        out->rowid[j] = rid;
        if (d->y01) out->y01[j] = d->y01[i];
        if (d->ycls) out->ycls[j] = d->ycls[i];
        if (d->yreal) out->yreal[j] = d->yreal[i];
        out->w[j] = design[s] * (d->w ? d->w[i] : 1.0);
        out->stratum[j] = (uint16_t)s;
        j++;
    }
    sp__free(design);
    sp__free(size);
    sp__free(st);
    out->n = j;
    return SP_OK;
}
