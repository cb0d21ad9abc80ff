/* eval_multi.c — multiclass and regression metrics.
 *
 * Multiclass: one linear pass over the n x k score matrix gives, per row, the predicted class
 * (the first column holding the row maximum, as argmax does), whether the true class is in the
 * top k (scikit-learn's tie rule: among equal scores the higher class index ranks first), the
 * renormalized clipped log loss and the top-label confidence; per class it accumulates true
 * positives, predicted and true counts, from which every averaged precision, recall and F1 come.
 * One-vs-rest AUC sorts each column once and reuses the binary rank sweep. Regression is one pass
 * for the errors and the label mean, and a second for R²'s total sum of squares.
 *
 * Bootstrap: per-row results of the first pass are kept (class, predicted class, top-k hit, loss,
 * calibration bin) so a replicate only sums Poisson-weighted rows; one-vs-rest AUC replicates run
 * the binary bootstrap sweep per column. */
#include "eval_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- multiclass: the per-row pass */

typedef struct mc_rows {
    int32_t *pred;
    uint8_t *hit;
    double *loss;
    double *conf;
} mc_rows;

typedef struct mc_part {
    sp__ksum w, correct, hit, loss;
    double *tp, *pp, *tc; /* per class */
    double *confusion;    /* k x k or NULL */
    double *bins;         /* ece_bins x 3 */
    uint64_t clipped;
    uint64_t first_bad;
    double bad_value;
} mc_part;

typedef struct mc_ctx {
    const sp__eval_data *d;
    const sp_eval_opts *o;
    mc_rows rows;
    mc_part *parts;
    int want_loss, want_bins;
} mc_ctx;

static void mc_worker(void *p, int t, int nt) {
    mc_ctx *c = p;
    const sp__eval_data *d = c->d;
    mc_part *q = &c->parts[t];
    const uint32_t k = d->k;
    const double eps = d->eps, one_eps = 1 - d->eps;
    uint64_t lo, hi;
    sp__split_range(d->n, nt, t, &lo, &hi);
    for (uint64_t i = lo; i < hi; i++) {
        const int32_t y = d->ycls[i];
        const double w = d->w ? d->w[i] : 1.0;
        const double sy = sp__eval_score(d, i, (uint32_t)y);
        uint32_t arg = 0, above = 0;
        double best = sp__eval_score(d, i, 0), sum = 0;
        int clipped = 0;
        for (uint32_t j = 0; j < k; j++) {
            double v = sp__eval_score(d, i, j);
            if (v > best) best = v, arg = j;
            if (v > sy || (v == sy && j > (uint32_t)y)) above++;
            if (!(v >= 0 && v <= 1) && q->first_bad == UINT64_MAX)
                q->first_bad = i, q->bad_value = v;
            double cl = v < eps ? eps : v > one_eps ? one_eps : v;
            clipped |= cl != v;
            sum += cl;
        }
        const int hit = above < c->o->top_k;
        sp__ksum_add(&q->w, w);
        if ((int32_t)arg == y) sp__ksum_add(&q->correct, w);
        if (hit) sp__ksum_add(&q->hit, w);
        q->tc[y] += w;
        q->pp[arg] += w;
        if ((int32_t)arg == y) q->tp[y] += w;
        if (q->confusion) q->confusion[(size_t)y * k + arg] += w;
        double l = 0;
        if (c->want_loss) {
            double cy = sy < eps ? eps : sy > one_eps ? one_eps : sy;
            l = -log(cy / sum);
            q->clipped += clipped;
            sp__ksum_add(&q->loss, w * l);
        }
        if (q->bins) {
            int b = sp__eval_bin_of(best, c->o->ece_bins);
            q->bins[3 * b] += w;
            q->bins[3 * b + 1] += w * best;
            if ((int32_t)arg == y) q->bins[3 * b + 2] += w;
        }
        if (c->rows.pred) {
            c->rows.pred[i] = (int32_t)arg;
            c->rows.hit[i] = (uint8_t)hit;
            if (c->rows.loss) c->rows.loss[i] = l;
            if (c->rows.conf) c->rows.conf[i] = best;
        }
    }
}

/* precision, recall and F1 of one class; a zero denominator gives 0 */
static void prf(double tp, double pp, double tc, double *p, double *r, double *f) {
    *p = pp > 0 ? tp / pp : 0;
    *r = tc > 0 ? tp / tc : 0;
    *f = (*p + *r) > 0 ? 2 * *p * *r / (*p + *r) : 0;
}

/* The nine averaged metrics from per-class counts, over classes present in labels or
 * predictions. out order: P/R/F1 macro, micro, weighted. */
static void averaged(const double *tp, const double *pp, const double *tc, uint32_t k,
                     double out[9]) {
    double sp = 0, sr = 0, sf = 0, wp = 0, wr = 0, wf = 0, tps = 0, pps = 0, tcs = 0;
    uint32_t present = 0;
    for (uint32_t j = 0; j < k; j++) {
        if (!(pp[j] > 0 || tc[j] > 0)) continue;
        present++;
        double p, r, f;
        prf(tp[j], pp[j], tc[j], &p, &r, &f);
        sp += p, sr += r, sf += f;
        wp += tc[j] * p, wr += tc[j] * r, wf += tc[j] * f;
        tps += tp[j], pps += pp[j], tcs += tc[j];
    }
    out[0] = present ? sp / present : 0;
    out[1] = present ? sr / present : 0;
    out[2] = present ? sf / present : 0;
    double p, r, f;
    prf(tps, pps, tcs, &p, &r, &f);
    out[3] = p, out[4] = r, out[5] = f;
    out[6] = tcs > 0 ? wp / tcs : 0;
    out[7] = tcs > 0 ? wr / tcs : 0;
    out[8] = tcs > 0 ? wf / tcs : 0;
}

static const int AVG_METRICS[9] = {M_PRECISION_MACRO,    M_RECALL_MACRO,    M_F1_MACRO,
                                   M_PRECISION_MICRO,    M_RECALL_MICRO,    M_F1_MICRO,
                                   M_PRECISION_WEIGHTED, M_RECALL_WEIGHTED, M_F1_WEIGHTED};

/* ---- multiclass bootstrap */

typedef struct mcb_ctx {
    const sp__eval_data *d;
    const sp_eval_opts *o;
    const mc_rows *rows;
    const uint16_t *bin;
    uint64_t key;
    double *out[14]; /* accuracy, topk, loss, ece, 9 averaged, (unused) */
} mcb_ctx;

#define BB SP__BOOT_B

static void mcb_block(void *p, uint32_t r0, uint32_t r1) {
    mcb_ctx *c = p;
    const sp__eval_data *d = c->d;
    const uint32_t k = d->k, nr = r1 - r0, nb = c->o->ece_bins;
    double *acc = sp__calloc((size_t)BB * (4 + 3 * (size_t)k + 3 * (size_t)nb), sizeof(double));
    int scale_failed;
    double *scale = sp__eval_strata_scale(d, c->key, r0, &scale_failed);
    if (!acc || scale_failed) {
        sp__free(acc);
        sp__free(scale);
        for (int s = 0; s < 14; s++)
            if (c->out[s])
                for (uint32_t b = 0; b < nr; b++)
                    c->out[s][r0 + b] = NAN;
        return;
    }
    double *W = acc, *C = acc + BB, *H = acc + 2 * BB, *L = acc + 3 * BB;
    double *tp = acc + 4 * BB, *pp = tp + (size_t)k * BB, *tc = pp + (size_t)k * BB;
    double *bins = tc + (size_t)k * BB;
    double w[BB];
    for (uint64_t i = 0; i < d->n; i++) {
        sp__eval_boot_row(d, c->key, r0, i, scale, w);
        const int32_t y = d->ycls[i], pr = c->rows->pred[i];
        const double l = c->rows->loss ? c->rows->loss[i] : 0;
        const int hit = c->rows->hit[i], ok = pr == y;
        double *tcy = tc + (size_t)y * BB, *ppr = pp + (size_t)pr * BB, *tpy = tp + (size_t)y * BB;
        for (uint32_t b = 0; b < BB; b++) {
            W[b] += w[b];
            L[b] += w[b] * l;
            tcy[b] += w[b];
            ppr[b] += w[b];
        }
        if (ok)
            for (uint32_t b = 0; b < BB; b++) {
                C[b] += w[b];
                tpy[b] += w[b];
            }
        if (hit)
            for (uint32_t b = 0; b < BB; b++)
                H[b] += w[b];
        if (c->bin) {
            double *bw = bins + (size_t)c->bin[i] * 3 * BB, cf = c->rows->conf[i];
            for (uint32_t b = 0; b < BB; b++) {
                bw[b] += w[b];
                bw[BB + b] += w[b] * cf;
                bw[2 * BB + b] += w[b] * ok;
            }
        }
    }
    double *t1 = sp__malloc(3 * (size_t)k * sizeof(double));
    for (uint32_t b = 0; b < nr; b++) {
        uint32_t r = r0 + b;
        if (c->out[0]) c->out[0][r] = W[b] > 0 ? C[b] / W[b] : NAN;
        if (c->out[1]) c->out[1][r] = W[b] > 0 ? H[b] / W[b] : NAN;
        if (c->out[2]) c->out[2][r] = W[b] > 0 ? L[b] / W[b] : NAN;
        if (c->out[3]) {
            double e = 0;
            for (uint32_t q = 0; q < nb; q++) {
                const double *bw = bins + (size_t)q * 3 * BB;
                if (bw[b] > 0) e += fabs(bw[BB + b] - bw[2 * BB + b]);
            }
            c->out[3][r] = W[b] > 0 ? e / W[b] : NAN;
        }
        if (t1) {
            for (uint32_t j = 0; j < k; j++) {
                t1[j] = tp[(size_t)j * BB + b];
                t1[k + j] = pp[(size_t)j * BB + b];
                t1[2 * k + j] = tc[(size_t)j * BB + b];
            }
            double av[9];
            averaged(t1, t1 + k, t1 + 2 * k, k, av);
            for (int s = 0; s < 9; s++)
                if (c->out[4 + s]) c->out[4 + s][r] = av[s];
        }
    }
    sp__free(t1);
    sp__free(acc);
    sp__free(scale);
}

/* ---- binary bootstrap of AUC over one sorted column (shared with one-vs-rest) */

typedef struct auc_boot {
    const sp__eval_data *d;
    const uint32_t *perm;
    const double *sorted;
    const uint8_t *ys;
    uint64_t key;
    double *out;     /* AUC of each replicate */
    double *out_pos; /* the replicate's positive weight (the class's support) */
} auc_boot;

static void auc_block(void *p, uint32_t r0, uint32_t r1) {
    auc_boot *c = p;
    const sp__eval_data *d = c->d;
    double w[BB], gpos[BB] = {0}, gneg[BB] = {0}, tp[BB] = {0}, fp[BB] = {0}, auc2[BB] = {0};
    int scale_failed;
    double *scale = sp__eval_strata_scale(d, c->key, r0, &scale_failed);
    if (scale_failed) {
        for (uint32_t b = 0; b < r1 - r0; b++)
            c->out[r0 + b] = c->out_pos[r0 + b] = NAN;
        return;
    }
    for (uint64_t jj = d->n; jj-- > 0;) {
        uint32_t row = c->perm[jj];
        sp__eval_boot_row(d, c->key, r0, row, scale, w);
        if (c->ys[jj])
            for (uint32_t b = 0; b < BB; b++)
                gpos[b] += w[b];
        else
            for (uint32_t b = 0; b < BB; b++)
                gneg[b] += w[b];
        if (jj == 0 || c->sorted[jj - 1] != c->sorted[jj])
            for (uint32_t b = 0; b < BB; b++) {
                auc2[b] += gneg[b] * (2 * tp[b] + gpos[b]);
                tp[b] += gpos[b];
                fp[b] += gneg[b];
                gpos[b] = gneg[b] = 0;
            }
    }
    for (uint32_t b = 0; b < r1 - r0; b++) {
        c->out[r0 + b] = tp[b] > 0 && fp[b] > 0 ? auc2[b] / (2 * tp[b] * fp[b]) : NAN;
        c->out_pos[r0 + b] = tp[b];
    }
    sp__free(scale);
}

/* One-vs-rest AUC of every class, and (with reps) its bootstrap replicates reps[j * R + r]. */
static sp_status ovr(sp__eval_ctx *c, const sp__eval_data *d, double *auc, double *support,
                     double *reps, double *reps_pos) {
    const uint64_t n = d->n;
    uint32_t *perm = sp__malloc(n * sizeof(uint32_t));
    double *sorted = sp__malloc(n * sizeof(double));
    uint8_t *y01 = sp__malloc(n), *ys = sp__malloc(n);
    sp_status rc = SP_OK;
    if (!perm || !sorted || !y01 || !ys) rc = sp__fail(SP_ENOMEM, "out of memory");
    for (uint32_t j = 0; j < d->k && rc == SP_OK; j++) {
        for (uint64_t i = 0; i < n; i++)
            y01[i] = d->ycls[i] == (int32_t)j;
        rc = sp__eval_argsort(d->s + (int64_t)j * d->s_col, d->s_dtype, (size_t)d->s_row, n,
                              c->n_threads, perm, sorted);
        if (rc < 0) break;
        for (uint64_t q = 0; q < n; q++)
            ys[q] = y01[perm[q]];
        sp__eval_rank rk = {n, perm, sorted, y01, d->w, ys};
        sp__eval_rank_out ro;
        rc = sp__eval_rank_sweep(&rk, 0, &ro);
        auc[j] = ro.auc;
        support[j] = ro.pos;
        if (rc == SP_OK && reps) {
            auc_boot ab = {d,
                           perm,
                           sorted,
                           ys,
                           sp__eval_seed_key(c->o.seed),
                           reps + (size_t)j * c->o.replicates,
                           reps_pos + (size_t)j * c->o.replicates};
            sp__eval_boot_blocks(c->n_threads, c->o.replicates, BB, auc_block, &ab);
        }
    }
    sp__free(perm);
    sp__free(sorted);
    sp__free(y01);
    sp__free(ys);
    return rc;
}

static void ovr_average(const double *auc, const double *support, uint32_t k, double *macro,
                        double *weighted, uint32_t *undefined) {
    double s = 0, ws = 0, wt = 0;
    uint32_t m = 0;
    *undefined = 0;
    for (uint32_t j = 0; j < k; j++) {
        if (isnan(auc[j])) {
            (*undefined)++;
            continue;
        }
        s += auc[j];
        ws += support[j] * auc[j];
        wt += support[j];
        m++;
    }
    *macro = m ? s / m : NAN;
    *weighted = wt > 0 ? ws / wt : NAN;
}

sp_status sp__eval_multiclass(sp__eval_ctx *c, const sp__eval_data *d) {
    const sp_eval_opts *o = &c->o;
    const uint32_t k = d->k;
    const uint64_t n = d->n;
    const int boot = o->ci == SP_EVAL_CI_BOOTSTRAP;
    const int want_cal = c->want[M_ECE] || c->want[M_RELIABILITY];
    int want_conf = c->want[M_CONFUSION];
    sp_status rc = SP_OK;
    if (want_conf && k > 2048) {
        SP_TRY(sp__eval_warn(c,
                             "confusion_matrix: skipped, %" PRIu32 " classes is more than "
                             "2048",
                             k));
        want_conf = 0;
    }
    int nt = n < 20000 ? 1 : c->n_threads;
    mc_part *parts = sp__calloc((size_t)nt, sizeof *parts);
    mc_ctx mc = {d, o, {0}, parts, 1, want_cal};
    if (!parts) return sp__fail(SP_ENOMEM, "out of memory");
    for (int t = 0; t < nt && rc == SP_OK; t++) {
        mc_part *q = &parts[t];
        q->first_bad = UINT64_MAX;
        q->tp = sp__calloc(3 * (size_t)k, sizeof(double));
        if (q->tp) q->pp = q->tp + k, q->tc = q->tp + 2 * (size_t)k;
        if (want_conf) q->confusion = sp__calloc((size_t)k * k, sizeof(double));
        if (want_cal && !o->ece_equal_mass)
            q->bins = sp__calloc(3 * (size_t)o->ece_bins, sizeof(double));
        if (!q->tp || (want_conf && !q->confusion) || (want_cal && !o->ece_equal_mass && !q->bins))
            rc = sp__fail(SP_ENOMEM, "out of memory");
    }
    if (rc == SP_OK && (boot || (want_cal && o->ece_equal_mass))) {
        mc.rows.pred = sp__malloc(n * sizeof(int32_t));
        mc.rows.hit = sp__malloc(n);
        mc.rows.loss = sp__malloc(n * sizeof(double));
        mc.rows.conf = sp__malloc(n * sizeof(double));
        if (!mc.rows.pred || !mc.rows.hit || !mc.rows.loss || !mc.rows.conf)
            rc = sp__fail(SP_ENOMEM, "out of memory");
    }
    if (rc == SP_OK) sp__parallel(nt, mc_worker, &mc);

    /* combine */
    sp__ksum W = {0}, C = {0}, H = {0}, L = {0};
    double *tp = sp__calloc(3 * (size_t)k, sizeof(double));
    double *conf = want_conf ? sp__calloc((size_t)k * k, sizeof(double)) : NULL;
    double *bins = want_cal ? sp__calloc(3 * (size_t)o->ece_bins, sizeof(double)) : NULL;
    uint64_t clipped = 0, first_bad = UINT64_MAX;
    double bad_value = 0;
    if (rc == SP_OK && (!tp || (want_conf && !conf) || (want_cal && !bins)))
        rc = sp__fail(SP_ENOMEM, "out of memory");
    for (int t = 0; t < nt && rc == SP_OK; t++) {
        mc_part *q = &parts[t];
        sp__ksum_add(&W, sp__ksum_get(&q->w));
        sp__ksum_add(&C, sp__ksum_get(&q->correct));
        sp__ksum_add(&H, sp__ksum_get(&q->hit));
        sp__ksum_add(&L, sp__ksum_get(&q->loss));
        for (size_t j = 0; j < 3 * (size_t)k; j++)
            tp[j] += q->tp[j];
        if (conf)
            for (size_t j = 0; j < (size_t)k * k; j++)
                conf[j] += q->confusion[j];
        if (bins && q->bins)
            for (size_t j = 0; j < 3 * (size_t)o->ece_bins; j++)
                bins[j] += q->bins[j];
        clipped += q->clipped;
        if (q->first_bad < first_bad) first_bad = q->first_bad, bad_value = q->bad_value;
    }
    for (int t = 0; t < nt; t++) {
        sp__free(parts[t].tp);
        sp__free(parts[t].confusion);
        sp__free(parts[t].bins);
    }
    sp__free(parts);
    const double w_tot = sp__ksum_get(&W);
    int want_loss = c->want[M_LOG_LOSS];
    if (rc == SP_OK && first_bad != UINT64_MAX && (want_loss || want_cal)) {
        uint64_t row = d->rowid ? d->rowid[first_bad] : first_bad;
        if (c->asked[M_LOG_LOSS] || c->asked[M_BRIER] || c->asked[M_ECE] ||
            c->asked[M_RELIABILITY]) {
            rc = sp__fail(SP_EBADINPUT,
                          "%s: row %" PRIu64 ": score %g is not a probability in "
                          "[0, 1]; log_loss and ece need probabilities",
                          o->s_name, row, bad_value);
        } else {
            rc = sp__eval_warn(c,
                               "log_loss and ece skipped: %s is not a probability (row "
                               "%" PRIu64 " has %g)",
                               o->s_name, row, bad_value);
            c->want[M_LOG_LOSS] = c->want[M_ECE] = c->want[M_RELIABILITY] = 0;
            want_loss = 0;
        }
    }
    /* equal-mass calibration bins need the confidences sorted */
    uint16_t *bin_row = NULL;
    if (rc == SP_OK && (c->want[M_ECE] || c->want[M_RELIABILITY])) {
        if (o->ece_equal_mass || boot) {
            bin_row = sp__malloc(n * sizeof(uint16_t));
            if (!bin_row) rc = sp__fail(SP_ENOMEM, "out of memory");
        }
        if (rc == SP_OK && o->ece_equal_mass) {
            uint32_t *perm = sp__malloc(n * sizeof(uint32_t));
            if (!perm) rc = sp__fail(SP_ENOMEM, "out of memory");
            if (rc == SP_OK)
                rc = sp__eval_argsort(mc.rows.conf, SP_DTYPE_FLOAT64, sizeof(double), n,
                                      c->n_threads, perm, NULL);
            if (rc == SP_OK) {
                memset(bins, 0, 3 * (size_t)o->ece_bins * sizeof(double));
                for (uint64_t j = 0; j < n; j++) {
                    uint64_t i = perm[j];
                    uint16_t b = (uint16_t)((j * o->ece_bins) / n);
                    double w = d->w ? d->w[i] : 1.0;
                    bin_row[i] = b;
                    bins[3 * b] += w;
                    bins[3 * b + 1] += w * mc.rows.conf[i];
                    if (mc.rows.pred[i] == d->ycls[i]) bins[3 * b + 2] += w;
                }
            }
            sp__free(perm);
        } else if (rc == SP_OK && bin_row) {
            for (uint64_t i = 0; i < n; i++)
                bin_row[i] = (uint16_t)sp__eval_bin_of(mc.rows.conf[i], o->ece_bins);
        }
    }
    sp__eval_set_info(c, want_loss ? clipped : 0, w_tot, NAN);

    /* the metrics */
    size_t idx[16];
    int have[16] = {0}; /* 0 accuracy, 1 topk, 2 loss, 3 ece, 4..12 averaged, 13 ovr, 14 ovr_w */
    double av[9];
    if (rc == SP_OK) averaged(tp, tp + k, tp + 2 * (size_t)k, k, av);
    if (rc == SP_OK && c->want[M_ACCURACY])
        rc = sp__eval_add(c, M_ACCURACY, NULL, sp__ksum_get(&C) / w_tot, &idx[0]), have[0] = 1;
    if (rc == SP_OK && c->want[M_TOPK]) {
        if (o->top_k >= k)
            rc = sp__eval_warn(c,
                               "top_%" PRIu32 "_accuracy: k >= the %" PRIu32 " classes, so it "
                               "is 1",
                               o->top_k, k);
        if (rc == SP_OK)
            rc = sp__eval_add(c, M_TOPK, NULL, sp__ksum_get(&H) / w_tot, &idx[1]), have[1] = 1;
    }
    if (rc == SP_OK && c->want[M_LOG_LOSS])
        rc = sp__eval_add(c, M_LOG_LOSS, NULL, sp__ksum_get(&L) / w_tot, &idx[2]), have[2] = 1;
    for (int s = 0; s < 9 && rc == SP_OK; s++)
        if (c->want[AVG_METRICS[s]])
            rc = sp__eval_add(c, AVG_METRICS[s], NULL, av[s], &idx[4 + s]), have[4 + s] = 1;
    double *auc = NULL, *support = NULL, *auc_reps = NULL, *pos_reps = NULL;
    if (rc == SP_OK && (c->want[M_AUC_OVR] || c->want[M_AUC_OVR_WEIGHTED])) {
        auc = sp__malloc(k * sizeof(double));
        support = sp__malloc(k * sizeof(double));
        if (boot) {
            auc_reps = sp__malloc((size_t)k * o->replicates * sizeof(double));
            pos_reps = sp__malloc((size_t)k * o->replicates * sizeof(double));
        }
        if (!auc || !support || (boot && (!auc_reps || !pos_reps)))
            rc = sp__fail(SP_ENOMEM, "out of memory");
        if (rc == SP_OK) rc = ovr(c, d, auc, support, auc_reps, pos_reps);
        double macro = NAN, weighted = NAN;
        uint32_t undefined = 0;
        if (rc == SP_OK) ovr_average(auc, support, k, &macro, &weighted, &undefined);
        if (rc == SP_OK && undefined)
            rc = sp__eval_warn(c,
                               "roc_auc_ovr: %" PRIu32 " of %" PRIu32 " classes have no rows "
                               "(or all rows); their AUC is undefined and left out of the "
                               "averages",
                               undefined, k);
        if (rc == SP_OK && c->want[M_AUC_OVR])
            rc = sp__eval_add(c, M_AUC_OVR, NULL, macro, &idx[13]), have[13] = 1;
        if (rc == SP_OK && c->want[M_AUC_OVR_WEIGHTED])
            rc = sp__eval_add(c, M_AUC_OVR_WEIGHTED, NULL, weighted, &idx[14]), have[14] = 1;
    }
    if (rc == SP_OK && (c->want[M_ECE] || c->want[M_RELIABILITY])) {
        double e = 0;
        size_t used = 0;
        for (uint32_t b = 0; b < o->ece_bins; b++)
            if (bins[3 * b] > 0) e += fabs(bins[3 * b + 1] - bins[3 * b + 2]), used++;
        if (c->want[M_ECE]) rc = sp__eval_add(c, M_ECE, NULL, e / w_tot, &idx[3]), have[3] = 1;
        double *x = sp__malloc((used + 1) * sizeof(double));
        double *y = sp__malloc((used + 1) * sizeof(double));
        double *t = sp__malloc((used + 1) * sizeof(double));
        if (!x || !y || !t) {
            sp__free(x);
            sp__free(y);
            sp__free(t);
            if (rc == SP_OK) rc = sp__fail(SP_ENOMEM, "out of memory");
        } else {
            size_t q = 0;
            for (uint32_t b = 0; b < o->ece_bins; b++)
                if (bins[3 * b] > 0) {
                    x[q] = bins[3 * b + 1] / bins[3 * b];
                    y[q] = bins[3 * b + 2] / bins[3 * b];
                    t[q] = bins[3 * b];
                    q++;
                }
            sp__eval_set_curve(c, 2, used, x, y, t);
        }
    }
    if (rc == SP_OK && conf) {
        sp__eval_set_confusion(c, 0, k, conf);
        conf = NULL;
    }

    /* bootstrap */
    if (rc == SP_OK && boot) {
        mcb_ctx bc = {d, o, &mc.rows, bin_row, sp__eval_seed_key(o->seed), {0}};
        for (int s = 0; s < 13 && rc == SP_OK; s++) {
            if (!have[s]) continue;
            bc.out[s] = sp__malloc((size_t)o->replicates * sizeof(double));
            if (!bc.out[s]) rc = sp__fail(SP_ENOMEM, "out of memory");
        }
        if (rc == SP_OK) sp__eval_boot_blocks(c->n_threads, o->replicates, BB, mcb_block, &bc);
        for (int s = 0; s < 13; s++) {
            if (!bc.out[s]) continue;
            if (rc == SP_OK)
                sp__eval_set_replicates(c, idx[s], bc.out[s], o->replicates);
            else
                sp__free(bc.out[s]);
        }
        if (rc == SP_OK && auc_reps && (have[13] || have[14])) {
            double *rm = sp__malloc((size_t)o->replicates * sizeof(double));
            double *rw = sp__malloc((size_t)o->replicates * sizeof(double));
            double *one = sp__malloc(2 * (size_t)k * sizeof(double));
            if (!rm || !rw || !one) {
                rc = sp__fail(SP_ENOMEM, "out of memory");
            } else {
                for (uint32_t r = 0; r < o->replicates; r++) {
                    /* each replicate weighs the classes by its own supports */
                    for (uint32_t j = 0; j < k; j++) {
                        one[j] = auc_reps[(size_t)j * o->replicates + r];
                        one[k + j] = pos_reps[(size_t)j * o->replicates + r];
                    }
                    uint32_t undefined;
                    ovr_average(one, one + k, k, &rm[r], &rw[r], &undefined);
                }
            }
            sp__free(one);
            if (rc == SP_OK && have[13]) {
                sp__eval_set_replicates(c, idx[13], rm, o->replicates);
                rm = NULL;
            }
            if (rc == SP_OK && have[14]) {
                sp__eval_set_replicates(c, idx[14], rw, o->replicates);
                rw = NULL;
            }
            sp__free(rm);
            sp__free(rw);
        }
    }
    sp__free(auc);
    sp__free(support);
    sp__free(auc_reps);
    sp__free(pos_reps);
    sp__free(bin_row);
    sp__free(tp);
    sp__free(conf);
    sp__free(bins);
    sp__free(mc.rows.pred);
    sp__free(mc.rows.hit);
    sp__free(mc.rows.loss);
    sp__free(mc.rows.conf);
    return rc;
}

/* ---- regression */

typedef struct rb_ctx {
    const sp__eval_data *d;
    uint64_t key;
    double *out[5]; /* mae, mse, rmse, r2, mape */
} rb_ctx;

static const double EPS64 = 2.220446049250313e-16;

static void rb_block(void *p, uint32_t r0, uint32_t r1) {
    rb_ctx *c = p;
    const sp__eval_data *d = c->d;
    double w[BB], W[BB] = {0}, A[BB] = {0}, S[BB] = {0}, M[BB] = {0}, Y[BB] = {0}, Y2[BB] = {0};
    int scale_failed;
    double *scale = sp__eval_strata_scale(d, c->key, r0, &scale_failed);
    if (scale_failed) {
        for (int s = 0; s < 5; s++)
            if (c->out[s])
                for (uint32_t b = 0; b < r1 - r0; b++)
                    c->out[s][r0 + b] = NAN;
        return;
    }
    for (uint64_t i = 0; i < d->n; i++) {
        sp__eval_boot_row(d, c->key, r0, i, scale, w);
        const double y = d->yreal[i], e = y - sp__eval_score(d, i, 0);
        const double ae = fabs(e), ape = ae / fmax(fabs(y), EPS64);
        for (uint32_t b = 0; b < BB; b++) {
            W[b] += w[b];
            A[b] += w[b] * ae;
            S[b] += w[b] * e * e;
            M[b] += w[b] * ape;
            Y[b] += w[b] * y;
            Y2[b] += w[b] * y * y;
        }
    }
    for (uint32_t b = 0; b < r1 - r0; b++) {
        uint32_t r = r0 + b;
        double ok = W[b] > 0, mse = S[b] / W[b], tot = Y2[b] - Y[b] * Y[b] / W[b];
        if (c->out[0]) c->out[0][r] = ok ? A[b] / W[b] : NAN;
        if (c->out[1]) c->out[1][r] = ok ? mse : NAN;
        if (c->out[2]) c->out[2][r] = ok ? sqrt(mse) : NAN;
        if (c->out[3]) c->out[3][r] = !ok ? NAN : tot > 0 ? 1 - S[b] / tot : (S[b] == 0 ? 1 : 0);
        if (c->out[4]) c->out[4][r] = ok ? M[b] / W[b] : NAN;
    }
    sp__free(scale);
}

sp_status sp__eval_regression(sp__eval_ctx *c, const sp__eval_data *d) {
    const sp_eval_opts *o = &c->o;
    sp__ksum W = {0}, A = {0}, S = {0}, M = {0}, Y = {0}, T = {0};
    for (uint64_t i = 0; i < d->n; i++) {
        double w = d->w ? d->w[i] : 1.0, y = d->yreal[i], e = y - sp__eval_score(d, i, 0);
        sp__ksum_add(&W, w);
        sp__ksum_add(&A, w * fabs(e));
        sp__ksum_add(&S, w * e * e);
        sp__ksum_add(&M, w * (fabs(e) / fmax(fabs(y), EPS64)));
        sp__ksum_add(&Y, w * y);
    }
    double w_tot = sp__ksum_get(&W), mean = sp__ksum_get(&Y) / w_tot;
    for (uint64_t i = 0; i < d->n; i++) {
        double w = d->w ? d->w[i] : 1.0, dy = d->yreal[i] - mean;
        sp__ksum_add(&T, w * dy * dy);
    }
    sp__eval_set_info(c, 0, w_tot, NAN);
    if (!(w_tot > 0))
        return sp__fail(SP_EBADINPUT, "%s: the weights sum to 0; no metric is defined", o->w_name);
    double mse = sp__ksum_get(&S) / w_tot, tot = sp__ksum_get(&T), res = sp__ksum_get(&S);
    double vals[5] = {sp__ksum_get(&A) / w_tot, mse, sqrt(mse),
                      tot != 0 ? 1 - res / tot : (res == 0 ? 1.0 : 0.0), sp__ksum_get(&M) / w_tot};
    if (d->n < 2) {
        vals[3] = NAN; /* scikit-learn: R2 is not defined for fewer than two rows */
        if (c->want[M_R2]) SP_TRY(sp__eval_warn(c, "r2: undefined with fewer than two rows (NaN)"));
    }
    static const int ids[5] = {M_MAE, M_MSE, M_RMSE, M_R2, M_MAPE};
    size_t idx[5];
    int have[5] = {0};
    if (tot == 0 && d->n >= 2 && c->want[M_R2])
        SP_TRY(sp__eval_warn(c, "r2: %s is constant; R2 is %g by scikit-learn's convention",
                             o->y_name, vals[3]));
    for (int s = 0; s < 5; s++)
        if (c->want[ids[s]]) {
            SP_TRY(sp__eval_add(c, ids[s], NULL, vals[s], &idx[s]));
            have[s] = 1;
        }
    if (o->ci != SP_EVAL_CI_BOOTSTRAP) return SP_OK;
    rb_ctx bc = {d, sp__eval_seed_key(o->seed), {0}};
    sp_status rc = SP_OK;
    for (int s = 0; s < 5 && rc == SP_OK; s++)
        if (have[s] && !(bc.out[s] = sp__malloc((size_t)o->replicates * sizeof(double))))
            rc = sp__fail(SP_ENOMEM, "out of memory");
    if (rc == SP_OK) sp__eval_boot_blocks(c->n_threads, o->replicates, BB, rb_block, &bc);
    for (int s = 0; s < 5; s++) {
        if (!bc.out[s]) continue;
        if (rc == SP_OK)
            sp__eval_set_replicates(c, idx[s], bc.out[s], o->replicates);
        else
            sp__free(bc.out[s]);
    }
    return rc;
}
