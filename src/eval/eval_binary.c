/* eval_binary.c — binary metrics: one linear pass, one sort, one descending sweep.
 *
 * The linear pass (split over threads, compensated sums) gives the totals, log loss, Brier score,
 * the confusion counts at every threshold and the equal-width calibration bins. The scores are
 * then sorted once (eval_sort.c) and the labels gathered into sorted order; one sweep from the
 * highest score down walks the groups of tied scores, keeping the cumulative weighted counts of
 * positives (tp) and negatives (fp) above the current threshold. That table is all that ROC AUC
 * (each negative in a group scores fp-pairs with every positive above it, half with the tied
 * ones), average precision (sum of recall steps times precision), the ROC and PR curves and
 * DeLong's variance need. The cumulative counts are accumulated in scikit-learn's order
 * (descending score, ties in reverse index order), so its curves are reproduced exactly.
 *
 * The bootstrap (when asked) sweeps the same sorted rows once per block of SP__BOOT_B replicates,
 * reweighting each row by its Poisson counts; every metric of a replicate comes out of that one
 * sweep. */
#include "eval_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- the linear pass */

typedef struct lin_part {
    sp__ksum w, pos, loss, brier;
    sp__ksum tp[SP_EVAL_MAX_THRESHOLDS], pp[SP_EVAL_MAX_THRESHOLDS];
    uint64_t clipped;
    uint64_t first_bad; /* first row with a score outside [0, 1], or UINT64_MAX */
    double bad_value;
    sp__ksum *bins; /* ece_bins x 3: weight, weight * confidence, weight * correct */
} lin_part;

typedef struct lin_ctx {
    const sp__eval_data *d;
    const sp_eval_opts *o;
    int want_loss, want_bins;
    lin_part *parts;
} lin_ctx;

/* The top-label view of a binary probability: class 1 when p > 0.5 (ties go to class 0, the
 * first column of (1 - p, p), as argmax does), confidence = that class's probability. */

SP__VECTOR_CLONES static void lin_worker(void *p, int t, int nt) {
    lin_ctx *c = p;
    const sp__eval_data *d = c->d;
    lin_part *part = &c->parts[t];
    uint64_t lo, hi;
    sp__split_range(d->n, nt, t, &lo, &hi);
    const double eps = d->eps, one_eps = 1 - d->eps;
    const size_t nth = c->o->n_thresholds;
    for (uint64_t i = lo; i < hi; i++) {
        double p1 = sp__eval_score(d, i, 0);
        double w = d->w ? d->w[i] : 1.0;
        int y = d->y01[i];
        sp__ksum_add(&part->w, w);
        if (y) sp__ksum_add(&part->pos, w);
        if (!(p1 >= 0 && p1 <= 1) && part->first_bad == UINT64_MAX) {
            part->first_bad = i;
            part->bad_value = p1;
        }
        for (size_t k = 0; k < nth; k++) {
            if (p1 >= c->o->thresholds[k]) {
                sp__ksum_add(&part->pp[k], w);
                if (y) sp__ksum_add(&part->tp[k], w);
            }
        }
        {
            const double e = y - p1;
            sp__ksum_add(&part->brier, w * e * e);
        }
        if (c->want_loss) {
            /* scikit-learn: clip, form (1 - p, p), renormalize by its sum, -log of the true one */
            double q = p1;
            if (q < eps || q > one_eps) {
                part->clipped++;
                q = q < eps ? eps : one_eps;
            }
            double q0 = 1 - q, s = q0 + q;
            double l = -log((y ? q : q0) / s);
            sp__ksum_add(&part->loss, w * l);
        }
        if (c->want_bins) {
            int cls = p1 > 0.5;
            double conf = cls ? p1 : 1 - p1;
            int b = sp__eval_bin_of(conf, c->o->ece_bins);
            sp__ksum_add(&part->bins[3 * b], w);
            sp__ksum_add(&part->bins[3 * b + 1], w * conf);
            if (cls == y) sp__ksum_add(&part->bins[3 * b + 2], w);
        }
    }
}

/* ---- the rank sweep */

sp_status sp__eval_rank_sweep(const sp__eval_rank *r, int want_delong, sp__eval_rank_out *out) {
    const uint64_t n = r->n;
    /* totals in sweep order, as scikit-learn's cumulative sums are */
    double tp = 0, fp = 0;
    double auc2 = 0; /* twice the pair count: integer-valued without weights */
    double ap = 0;
    double gpos = 0, gneg = 0;
    for (uint64_t jj = n; jj-- > 0;) {
        const uint32_t row = r->perm ? r->perm[jj] : 0; /* no perm: ys given, no weights */
        int y = r->ys ? r->ys[jj] : r->y01[row];
        double w = r->w ? r->w[row] : 1.0;
        if (y)
            gpos += w;
        else
            gneg += w;
        if (jj == 0 || r->sorted[jj - 1] != r->sorted[jj]) {
            /* end of a group of tied scores */
            auc2 += gneg * (2 * tp + gpos);
            tp += gpos;
            fp += gneg;
            if (gpos > 0) ap += gpos * (tp / (tp + fp));
            gpos = gneg = 0;
        }
    }
    out->pos = tp;
    out->neg = fp;
    out->auc = (tp > 0 && fp > 0) ? auc2 / (2 * tp * fp) : NAN;
    out->ap = tp > 0 ? ap / tp : 0;
    out->delong_var = NAN;
    if (!want_delong || !(tp > 1 && fp > 1) || r->w) return SP_OK;

    /* DeLong: the structural components are V10 = (negatives below + half the tied) / N for a
     * positive, V01 = (positives above + half the tied) / P for a negative; both have mean AUC,
     * and var(AUC) = var(V10) / P + var(V01) / N with sample variances. */
    const double P = tp, N = fp, A = out->auc;
    double s10 = 0, s01 = 0, pos_above = 0, neg_above = 0;
    gpos = gneg = 0;
    for (uint64_t jj = n; jj-- > 0;) {
        const uint32_t row = r->perm ? r->perm[jj] : 0;
        int y = r->ys ? r->ys[jj] : r->y01[row];
        if (y)
            gpos += 1;
        else
            gneg += 1;
        if (jj == 0 || r->sorted[jj - 1] != r->sorted[jj]) {
            double v10 = (N - neg_above - gneg + 0.5 * gneg) / N - A;
            double v01 = (pos_above + 0.5 * gpos) / P - A;
            s10 += gpos * v10 * v10;
            s01 += gneg * v01 * v01;
            pos_above += gpos;
            neg_above += gneg;
            gpos = gneg = 0;
        }
    }
    out->delong_var = s10 / (P - 1) / P + s01 / (N - 1) / N;
    return SP_OK;
}

sp_status sp__eval_rank_components(const sp__eval_rank *r, double *v) {
    const uint64_t n = r->n;
    double P = 0, N = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (r->y01[i])
            P++;
        else
            N++;
    }
    double pos_above = 0, neg_above = 0, gpos = 0, gneg = 0;
    uint64_t gstart = n; /* the group spans sorted positions [jj, gstart) */
    for (uint64_t jj = n; jj-- > 0;) {
        uint32_t row = r->perm[jj];
        if (r->y01[row])
            gpos += 1;
        else
            gneg += 1;
        if (jj == 0 || r->sorted[jj - 1] != r->sorted[jj]) {
            double v10 = N > 0 ? (N - neg_above - 0.5 * gneg) / N : NAN;
            double v01 = P > 0 ? (pos_above + 0.5 * gpos) / P : NAN;
            for (uint64_t q = jj; q < gstart; q++) {
                uint32_t rr = r->perm[q];
                v[rr] = r->y01[rr] ? v10 : v01;
            }
            pos_above += gpos;
            neg_above += gneg;
            gpos = gneg = 0;
            gstart = jj;
        }
    }
    return SP_OK;
}

/* ---- curves */

/* Fills the ROC curve (scikit-learn 1.2 roc_curve, drop_intermediate=True) and the PR curve
 * (precision_recall_curve) from the sorted rows, as asked. Two passes over the sorted rows: the
 * first counts the distinct thresholds and the final cumulative counts, the second writes the
 * curves straight into their output arrays (PR in reverse, as scikit-learn returns it), so no
 * table of per-threshold counts is ever held. The counts accumulate row by row in
 * scikit-learn's order (its stable_cumsum), which reproduces its arrays exactly. When the caller
 * no longer needs the sorted scores (take_sorted), their distinct values are compacted in place
 * and become the PR thresholds, saving a copy the size of the input. */
static sp_status curves(sp__eval_ctx *c, const sp__eval_rank *r, int want_roc, int want_pr,
                        double **take_sorted) {
    const uint64_t n = r->n;
    /* rows of weight 0 are left out, as scikit-learn filters them: a score held only by such
     * rows is no threshold */
    uint64_t m = 0;
    double tp = 0, fp = 0;
    int live = !r->w; /* the current group has a row of non-zero weight */
    for (uint64_t jj = n; jj-- > 0;) {
        const uint32_t row = r->perm ? r->perm[jj] : 0;
        const int y = r->ys ? r->ys[jj] : r->y01[row];
        if (r->w) {
            tp += y * r->w[row];
            fp += (1 - y) * r->w[row];
            live |= r->w[row] != 0;
        } else {
            tp += y;
        }
        if (jj == 0 || r->sorted[jj - 1] != r->sorted[jj]) {
            m += live;
            live = !r->w;
        }
    }
    const double tl = tp, fl = r->w ? fp : (double)n - tp;
    double *prec = NULL, *rec = NULL, *pth = NULL, *x = NULL, *y = NULL, *rth = NULL;
    if (want_pr) {
        prec = sp__malloc((m + 1) * sizeof(double));
        rec = sp__malloc((m + 1) * sizeof(double));
        pth = take_sorted ? NULL : sp__malloc(m * sizeof(double));
        if (!prec || !rec || (!take_sorted && !pth)) goto oom;
    }
    if (want_roc) {
        x = sp__malloc((m + 1) * sizeof(double));
        y = sp__malloc((m + 1) * sizeof(double));
        rth = sp__malloc((m + 1) * sizeof(double));
        if (!x || !y || !rth) goto oom;
    }
    /* ROC points are kept unless collinear with both neighbours (np.diff(a, 2) != 0, computed
     * as a difference of differences like NumPy); the decision on point g waits for g + 1 */
    double f1 = 0, t1 = 0, h1 = 0, f2 = 0, t2 = 0; /* points g-1 and g-2 */
    size_t k = 1;
    tp = fp = 0;
    live = !r->w;
    uint64_t g = 0;
    for (uint64_t jj = n; jj-- > 0;) {
        const uint32_t row = r->perm ? r->perm[jj] : 0;
        const int yy = r->ys ? r->ys[jj] : r->y01[row];
        if (r->w) {
            tp += yy * r->w[row];
            fp += (1 - yy) * r->w[row];
            live |= r->w[row] != 0;
        } else {
            tp += yy;
        }
        if (!(jj == 0 || r->sorted[jj - 1] != r->sorted[jj])) continue;
        if (!live) continue; /* only zero-weight rows: no threshold */
        live = !r->w;
        const double fps = r->w ? fp : (double)(n - jj) - tp; /* scikit-learn: 1 + i - tps */
        const double thr = r->sorted[jj];
        if (want_pr) {
            const double ps = tp + fps;
            prec[m - 1 - g] = ps != 0 ? tp / ps : 0;
            rec[m - 1 - g] = tl == 0 ? 1 : tp / tl;
            if (pth) pth[m - 1 - g] = thr;
        }
        if (want_roc) {
            if (g == 0) rth[0] = thr + 1;
            if (g >= 1) {
                /* decide on point g - 1 now that g is known */
                int keep = 1;
                if (m > 2 && g >= 2) {
                    double d2f = (fps - f1) - (f1 - f2), d2t = (tp - t1) - (t1 - t2);
                    keep = d2f != 0 || d2t != 0;
                }
                if (keep) {
                    x[k] = f1;
                    y[k] = t1;
                    rth[k] = h1;
                    k++;
                }
            }
            f2 = f1, t2 = t1;
            f1 = fps, t1 = tp, h1 = thr;
        }
        g++;
    }
    if (want_roc && m == 0) {
        k = 1; /* no row of non-zero weight: only the origin */
        x[0] = y[0] = 0;
        rth[0] = INFINITY;
        sp__eval_set_curve(c, 0, k, x, y, rth);
    } else if (want_roc) {
        x[k] = f1; /* the last point is always kept */
        y[k] = t1;
        rth[k] = h1;
        k++;
        x[0] = y[0] = 0;
        for (size_t i = 0; i < k; i++) {
            x[i] = fl > 0 ? x[i] / fl : NAN;
            y[i] = tl > 0 ? y[i] / tl : NAN;
        }
        sp__eval_set_curve(c, 0, k, x, y, rth);
    }
    if (want_pr) {
        prec[m] = 1;
        rec[m] = 0;
        if (!pth) {
            /* the distinct sorted scores, ascending, are exactly the PR thresholds */
            double *v = (double *)r->sorted;
            uint64_t u = 0;
            for (uint64_t j = 0; j < n; j++)
                if (u == 0 || v[j] != v[u - 1]) v[u++] = v[j];
            pth = sp__realloc(v, (u ? u : 1) * sizeof(double));
            if (!pth) pth = v; /* shrinking failed: keep the larger block */
            *take_sorted = NULL;
        }
        sp__eval_set_curve(c, 1, m + 1, rec, prec, pth);
    }
    return SP_OK;
oom:
    sp__free(prec);
    sp__free(rec);
    sp__free(pth);
    sp__free(x);
    sp__free(y);
    sp__free(rth);
    return sp__fail(SP_ENOMEM, "out of memory building curves of %" PRIu64 " points", m);
}

/* ---- equal-mass calibration bins */

/* Assigns rows to ece_bins bins of consecutive confidences with (near) equal row counts. */
static sp_status equal_mass_bins(const sp__eval_data *d, uint32_t n_bins, uint16_t *bin_of_row,
                                 int n_threads) {
    double *conf = sp__malloc(d->n * sizeof(double));
    uint32_t *perm = sp__malloc(d->n * sizeof(uint32_t));
    if (!conf || !perm) {
        sp__free(conf);
        sp__free(perm);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < d->n; i++) {
        double p1 = sp__eval_score(d, i, 0);
        conf[i] = p1 > 0.5 ? p1 : 1 - p1;
    }
    sp_status rc =
        sp__eval_argsort(conf, SP_DTYPE_FLOAT64, sizeof(double), d->n, n_threads, perm, NULL);
    if (rc == SP_OK) {
        for (uint64_t j = 0; j < d->n; j++)
            bin_of_row[perm[j]] = (uint16_t)((j * n_bins) / d->n);
    }
    sp__free(conf);
    sp__free(perm);
    return rc;
}

/* ---- the bootstrap sweep */

typedef struct boot_ctx {
    const sp__eval_data *d;
    const sp_eval_opts *o;
    const uint32_t *perm;
    const double *sorted;
    const uint8_t *ys;
    const double *ws;    /* sample weights in sorted order, or NULL */
    const double *loss;  /* per-row log loss in sorted order, or NULL */
    const uint16_t *bin; /* calibration bin in sorted order, or NULL */
    const uint64_t *cut; /* cut[k]: rows with score >= threshold k */
    int want_rank, want_prob;
    uint64_t key;
    double **out; /* per output slot: replicate values */
    size_t slot_auc, slot_ap, slot_loss, slot_brier, slot_ece;
    size_t slot_thr; /* 4 per threshold: accuracy, precision, recall, f1 */
} boot_ctx;

#define BB SP__BOOT_B

/* The bootstrap sweep is written with GCC vector extensions: a replicate block is two vectors of
 * 8 lanes, which the compiler lowers to whatever the target level has (4 SSE2 registers, 2 AVX2
 * or 1 AVX-512 register each), so the lane loops stay vectorized instead of being left to the
 * auto-vectorizer. */
typedef double v8d __attribute__((vector_size(64)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef int64_t v8l __attribute__((vector_size(64)));

#if SP__BOOT_B != 16
#error "the bootstrap sweep assumes blocks of 16 replicates"
#endif

/* The Poisson counts of one row for replicates r0 .. r0 + 15 (r0 even) as two vectors of 8:
 * the 32-bit uniforms are biased to signed so that the CDF comparisons are plain signed
 * compares, each adding -1 (true) or 0. */
static inline void boot_weights(uint64_t key, uint32_t r0, uint32_t rid, v8d *w0, v8d *w1) {
    int32_t u[16];
    for (uint32_t p = 0; p < 8; p++) {
        const uint64_t h = sp__eval_draw(key, (r0 >> 1) + p, rid);
        u[2 * p] = (int32_t)((uint32_t)h ^ 0x80000000u);
        u[2 * p + 1] = (int32_t)((uint32_t)(h >> 32) ^ 0x80000000u);
    }
    v8i a, b, ca = {0}, cb = {0};
    memcpy(&a, u, sizeof a);
    memcpy(&b, u + 8, sizeof b);
    for (int i = 0; i < 12; i++) {
        const int32_t t = (int32_t)(sp__eval_pois_t[i] ^ 0x80000000u);
        ca -= a >= t;
        cb -= b >= t;
    }
    *w0 = __builtin_convertvector(ca, v8d);
    *w1 = __builtin_convertvector(cb, v8d);
}

SP__VECTOR_CLONES static void boot_block(void *p, uint32_t r0, uint32_t r1) {
    boot_ctx *c = p;
    const sp__eval_data *d = c->d;
    const uint64_t n = d->n;
    const uint32_t nr = r1 - r0;
    const size_t nth = c->o->n_thresholds;
    const uint32_t n_bins = c->o->ece_bins;
    const int want_ap = c->out[c->slot_ap] != NULL;
    const int want_brier = c->out[c->slot_brier] != NULL;
    const v8d one = {1, 1, 1, 1, 1, 1, 1, 1};
    v8d gpos[2] = {{0}}, gneg[2] = {{0}}, tp[2] = {{0}}, fp[2] = {{0}};
    v8d auc2[2] = {{0}}, ap[2] = {{0}}, ll[2] = {{0}}, br[2] = {{0}};
    double tpk[SP_EVAL_MAX_THRESHOLDS][BB], ppk[SP_EVAL_MAX_THRESHOLDS][BB];
    double *bins = NULL;
    if (c->bin) {
        bins = sp__calloc((size_t)n_bins * 3 * BB, sizeof(double));
        if (!bins) {
            for (uint32_t b = 0; b < nr; b++) /* leaves this block's replicates undefined */
                for (size_t s = 0; s < c->slot_thr + 4 * nth; s++)
                    if (c->out[s]) c->out[s][r0 + b] = NAN;
            return;
        }
    }
    int scale_failed;
    double *scale = sp__eval_strata_scale(d, c->key, r0, &scale_failed);
    if (scale_failed) {
        sp__free(bins);
        for (uint32_t b = 0; b < nr; b++)
            for (size_t s = 0; s < c->slot_thr + 4 * nth; s++)
                if (c->out[s]) c->out[s][r0 + b] = NAN;
        return;
    }
    memset(tpk, 0, sizeof tpk);
    memset(ppk, 0, sizeof ppk);
    uint64_t done = 0;
    for (uint64_t jj = n; jj-- > 0;) {
        const uint32_t row = c->perm[jj];
        v8d w[2];
        boot_weights(c->key, r0, d->rowid ? d->rowid[row] : row, &w[0], &w[1]);
        if (c->ws) {
            const double sw = c->ws[jj];
            w[0] *= sw;
            w[1] *= sw;
        }
        if (scale) {
            v8d f[2];
            memcpy(f, scale + (size_t)d->stratum[row] * BB, sizeof f);
            w[0] *= f[0];
            w[1] *= f[1];
        }
        const double yd = c->ys[jj];
        const double p1 = c->sorted[jj];
        for (int h = 0; h < 2; h++) {
            const v8d wp = yd * w[h];
            gpos[h] += wp;
            gneg[h] += w[h] - wp;
        }
        if (c->loss)
            for (int h = 0; h < 2; h++)
                ll[h] += w[h] * c->loss[jj];
        if (want_brier) {
            const double e = (yd - p1) * (yd - p1);
            for (int h = 0; h < 2; h++)
                br[h] += w[h] * e;
        }
        if (bins) {
            const int cls = p1 > 0.5;
            const double conf = cls ? p1 : 1 - p1, corr = cls == (int)yd;
            double *bw = bins + (size_t)c->bin[jj] * 3 * BB;
            double wl[BB];
            memcpy(wl, w, sizeof wl);
            for (uint32_t b = 0; b < BB; b++) {
                bw[b] += wl[b];
                bw[BB + b] += wl[b] * conf;
                bw[2 * BB + b] += wl[b] * corr;
            }
        }
        done++;
        if (jj == 0 || c->sorted[jj - 1] != p1) {
            /* the end of a group of tied scores */
            for (int h = 0; h < 2; h++) {
                auc2[h] += gneg[h] * (2 * tp[h] + gpos[h]);
                tp[h] += gpos[h];
                fp[h] += gneg[h];
                if (want_ap) {
                    /* gpos * tp / (tp + fp), with 1 for an empty denominator (gpos is 0) */
                    const v8d den = tp[h] + fp[h];
                    const v8l pos = den > 0;
                    ap[h] += gpos[h] * tp[h] / (v8d)(((v8l)den & pos) | ((v8l)one & ~pos));
                }
                gpos[h] = (v8d){0};
                gneg[h] = (v8d){0};
            }
            for (size_t k = 0; k < nth; k++)
                if (c->cut[k] == done) {
                    v8d pp0 = tp[0] + fp[0], pp1 = tp[1] + fp[1];
                    memcpy(tpk[k], &tp[0], sizeof tp[0]);
                    memcpy(tpk[k] + 8, &tp[1], sizeof tp[1]);
                    memcpy(ppk[k], &pp0, sizeof pp0);
                    memcpy(ppk[k] + 8, &pp1, sizeof pp1);
                }
        }
    }
    double TPv[BB], FPv[BB], AUC[BB], AP[BB], LL[BB], BR[BB];
    memcpy(TPv, tp, sizeof TPv);
    memcpy(FPv, fp, sizeof FPv);
    memcpy(AUC, auc2, sizeof AUC);
    memcpy(AP, ap, sizeof AP);
    memcpy(LL, ll, sizeof LL);
    memcpy(BR, br, sizeof BR);
    for (uint32_t b = 0; b < nr; b++) {
        uint32_t r = r0 + b;
        double P = TPv[b], N = FPv[b], W = P + N;
        if (c->out[c->slot_auc])
            c->out[c->slot_auc][r] = P > 0 && N > 0 ? AUC[b] / (2 * P * N) : NAN;
        if (c->out[c->slot_ap]) c->out[c->slot_ap][r] = P > 0 ? AP[b] / P : NAN;
        if (c->out[c->slot_loss]) c->out[c->slot_loss][r] = W > 0 ? LL[b] / W : NAN;
        if (c->out[c->slot_brier]) c->out[c->slot_brier][r] = W > 0 ? BR[b] / W : NAN;
        if (bins && c->out[c->slot_ece]) {
            double e = 0;
            for (uint32_t q = 0; q < n_bins; q++) {
                const double *bw = bins + (size_t)q * 3 * BB;
                if (bw[b] > 0) e += fabs(bw[BB + b] - bw[2 * BB + b]);
            }
            c->out[c->slot_ece][r] = W > 0 ? e / W : NAN;
        }
        for (size_t k = 0; k < nth; k++) {
            double TP = tpk[k][b], PP = ppk[k][b], FN = P - TP, TN = N - (PP - TP);
            double *const *o = &c->out[c->slot_thr + 4 * k];
            if (o[0]) o[0][r] = W > 0 ? (TP + TN) / W : NAN;
            if (o[1]) o[1][r] = PP > 0 ? TP / PP : 0;
            if (o[2]) o[2][r] = P > 0 ? TP / P : 0;
            if (o[3])
                o[3][r] = (2 * TP + (PP - TP) + FN) > 0 ? 2 * TP / (2 * TP + (PP - TP) + FN) : 0;
        }
    }
    sp__free(bins);
    sp__free(scale);
}

/* ---- the task */

typedef struct slot {
    int metric;
    size_t thr; /* threshold index for thresholded metrics */
    double value;
    size_t index; /* in the result */
} slot;

sp_status sp__eval_binary(sp__eval_ctx *c, const sp__eval_data *d) {
    const sp_eval_opts *o = &c->o;
    const uint64_t n = d->n;
    const size_t nth = o->n_thresholds;
    const int boot = o->ci == SP_EVAL_CI_BOOTSTRAP;
    sp_status rc = SP_OK;

    /* 1. the linear pass */
    int want_prob = c->want[M_LOG_LOSS] || c->want[M_BRIER];
    int want_cal = c->want[M_ECE] || c->want[M_RELIABILITY];
    int nt = n < 100000 ? 1 : c->n_threads;
    lin_part *parts = sp__calloc((size_t)nt, sizeof *parts);
    if (!parts) return sp__fail(SP_ENOMEM, "out of memory");
    for (int t = 0; t < nt; t++) {
        parts[t].first_bad = UINT64_MAX;
        if (want_cal && !o->ece_equal_mass) {
            parts[t].bins = sp__calloc((size_t)o->ece_bins * 3, sizeof(sp__ksum));
            if (!parts[t].bins) rc = sp__fail(SP_ENOMEM, "out of memory");
        }
    }
    lin_ctx lc = {d, o, c->want[M_LOG_LOSS], want_cal && !o->ece_equal_mass, parts};
    if (rc == SP_OK) sp__parallel(nt, lin_worker, &lc);
    sp__ksum W = {0}, P = {0}, L = {0}, Br = {0}, TP[SP_EVAL_MAX_THRESHOLDS] = {{0}},
             PP[SP_EVAL_MAX_THRESHOLDS] = {{0}};
    uint64_t clipped = 0, first_bad = UINT64_MAX;
    double bad_value = 0;
    double *bins = want_cal ? sp__calloc((size_t)o->ece_bins * 3, sizeof(double)) : NULL;
    if (want_cal && !bins && rc == SP_OK) rc = sp__fail(SP_ENOMEM, "out of memory");
    for (int t = 0; t < nt && rc == SP_OK; t++) {
        lin_part *q = &parts[t];
        sp__ksum_add(&W, sp__ksum_get(&q->w));
        sp__ksum_add(&P, sp__ksum_get(&q->pos));
        sp__ksum_add(&L, sp__ksum_get(&q->loss));
        sp__ksum_add(&Br, sp__ksum_get(&q->brier));
        for (size_t k = 0; k < nth; k++) {
            sp__ksum_add(&TP[k], sp__ksum_get(&q->tp[k]));
            sp__ksum_add(&PP[k], sp__ksum_get(&q->pp[k]));
        }
        clipped += q->clipped;
        if (q->first_bad < first_bad) first_bad = q->first_bad, bad_value = q->bad_value;
        if (q->bins)
            for (uint32_t b = 0; b < 3 * o->ece_bins; b++)
                bins[b] += sp__ksum_get(&q->bins[b]);
    }
    for (int t = 0; t < nt; t++)
        sp__free(parts[t].bins);
    sp__free(parts);
    if (rc < 0) {
        sp__free(bins);
        return rc;
    }
    const double w_tot = sp__ksum_get(&W), w_pos = sp__ksum_get(&P), w_neg = w_tot - w_pos;

    /* probabilities: log_loss, brier and ece need scores in [0, 1] */
    if (first_bad != UINT64_MAX && (want_prob || want_cal)) {
        uint64_t row = d->rowid ? d->rowid[first_bad] : first_bad;
        if (c->asked[M_LOG_LOSS] || c->asked[M_BRIER] || c->asked[M_ECE] ||
            c->asked[M_RELIABILITY]) {
            sp__free(bins);
            return sp__fail(SP_EBADINPUT,
                            "%s: row %" PRIu64 ": score %g is not a probability "
                            "in [0, 1]; log_loss, brier, ece and reliability need "
                            "probabilities (leave them out to rank raw scores)",
                            o->s_name, row, bad_value);
        }
        SP_TRY(sp__eval_warn(c,
                             "log_loss, brier and ece skipped: %s is not a probability (row "
                             "%" PRIu64 " has %g)",
                             o->s_name, row, bad_value));
        c->want[M_LOG_LOSS] = c->want[M_BRIER] = c->want[M_ECE] = c->want[M_RELIABILITY] = 0;
        want_prob = want_cal = 0;
    }
    sp__eval_set_info(c, want_prob ? clipped : 0, w_tot, w_pos);

    /* 2. the sort, when a rank metric, a curve, DeLong or the bootstrap needs it */
    int want_rank = c->want[M_ROC_AUC] || c->want[M_AP] || c->want[M_ROC_CURVE] ||
                    c->want[M_PR_CURVE] || o->ci == SP_EVAL_CI_DELONG;
    int need_sort = want_rank || boot;
    uint32_t *perm = NULL;
    double *sorted = NULL;
    uint8_t *ys = NULL;
    double *ws = NULL, *loss = NULL;
    uint16_t *bin_sorted = NULL, *bin_row = NULL;
    if (want_cal && o->ece_equal_mass) {
        bin_row = sp__malloc(n * sizeof(uint16_t));
        if (!bin_row) rc = sp__fail(SP_ENOMEM, "out of memory");
        if (rc == SP_OK) rc = equal_mass_bins(d, o->ece_bins, bin_row, c->n_threads);
        if (rc == SP_OK) {
            for (uint64_t i = 0; i < n; i++) {
                double p1 = sp__eval_score(d, i, 0), w = d->w ? d->w[i] : 1.0;
                int cls = p1 > 0.5;
                double conf = cls ? p1 : 1 - p1;
                bins[3 * bin_row[i]] += w;
                bins[3 * bin_row[i] + 1] += w * conf;
                if (cls == d->y01[i]) bins[3 * bin_row[i] + 2] += w;
            }
        }
    }
    if (rc == SP_OK && need_sort) {
        perm = sp__malloc(n * sizeof(uint32_t));
        sorted = sp__malloc(n * sizeof(double));
        if (!perm || !sorted)
            rc = sp__fail(SP_ENOMEM, "out of memory sorting %" PRIu64 " scores", n);
        if (rc == SP_OK)
            rc =
                sp__eval_argsort(d->s, d->s_dtype, (size_t)d->s_row, n, c->n_threads, perm, sorted);
        if (rc == SP_OK && !(ys = sp__malloc(n))) rc = sp__fail(SP_ENOMEM, "out of memory");
        if (rc == SP_OK)
            for (uint64_t j = 0; j < n; j++)
                ys[j] = d->y01[perm[j]];
        /* without weights or a bootstrap, labels in sorted order are all the sweeps need */
        if (rc == SP_OK && !d->w && !boot) {
            sp__free(perm);
            perm = NULL;
        }
    }

    /* 3. the sweep */
    sp__eval_rank_out ro = {NAN, 0, w_pos, w_neg, NAN};
    sp__eval_rank rk = {n, perm, sorted, d->y01, d->w, ys};
    if (rc == SP_OK && want_rank) rc = sp__eval_rank_sweep(&rk, o->ci == SP_EVAL_CI_DELONG, &ro);
    if (rc == SP_OK && (c->want[M_ROC_CURVE] || c->want[M_PR_CURVE]))
        rc = curves(c, &rk, c->want[M_ROC_CURVE], c->want[M_PR_CURVE],
                    boot || d->w ? NULL : &sorted);

    /* 4. the metrics, in a fixed order */
    slot slots[8 + 4 * SP_EVAL_MAX_THRESHOLDS];
    size_t ns = 0;
    if (rc == SP_OK) {
        if (c->want[M_ROC_AUC]) {
            if (!(w_pos > 0 && w_neg > 0))
                rc = sp__eval_warn(c,
                                   "roc_auc: only one class present in %s; ROC AUC is "
                                   "undefined (NaN)",
                                   o->y_name);
            slots[ns++] = (slot){M_ROC_AUC, 0, ro.auc, 0};
        }
        if (c->want[M_AP]) {
            if (!(w_pos > 0))
                rc =
                    sp__eval_warn(c, "average_precision: no positive rows; it is 0 (scikit-learn's "
                                     "convention)");
            slots[ns++] = (slot){M_AP, 0, ro.ap, 0};
        }
        if (c->want[M_LOG_LOSS]) slots[ns++] = (slot){M_LOG_LOSS, 0, sp__ksum_get(&L) / w_tot, 0};
        if (c->want[M_BRIER]) slots[ns++] = (slot){M_BRIER, 0, sp__ksum_get(&Br) / w_tot, 0};
        for (size_t k = 0; k < nth; k++) {
            double tp = sp__ksum_get(&TP[k]), pp = sp__ksum_get(&PP[k]);
            double fpv = pp - tp, fn = w_pos - tp, tn = w_neg - fpv;
            if (c->want[M_ACCURACY]) slots[ns++] = (slot){M_ACCURACY, k, (tp + tn) / w_tot, 0};
            if (c->want[M_PRECISION]) {
                if (!(pp > 0))
                    rc = sp__eval_warn(c,
                                       "precision: no row is predicted positive at threshold "
                                       "%g; it is 0",
                                       o->thresholds[k]);
                slots[ns++] = (slot){M_PRECISION, k, pp > 0 ? tp / pp : 0, 0};
            }
            if (c->want[M_RECALL]) slots[ns++] = (slot){M_RECALL, k, w_pos > 0 ? tp / w_pos : 0, 0};
            if (c->want[M_F1]) {
                double prec = pp > 0 ? tp / pp : 0, rec = w_pos > 0 ? tp / w_pos : 0;
                slots[ns++] =
                    (slot){M_F1, k, prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0, 0};
            }
            if (c->want[M_CONFUSION]) {
                double *m = sp__malloc(4 * sizeof(double));
                if (!m) {
                    rc = sp__fail(SP_ENOMEM, "out of memory");
                    break;
                }
                m[0] = tn;
                m[1] = fpv;
                m[2] = fn;
                m[3] = tp;
                sp__eval_set_confusion(c, k, 2, m);
            }
        }
        if (c->want[M_ECE] || c->want[M_RELIABILITY]) {
            double e = 0;
            size_t used = 0;
            for (uint32_t b = 0; b < o->ece_bins; b++)
                if (bins[3 * b] > 0) {
                    e += fabs(bins[3 * b + 1] - bins[3 * b + 2]);
                    used++;
                }
            if (c->want[M_ECE]) slots[ns++] = (slot){M_ECE, 0, e / w_tot, 0};
            double *x = sp__malloc((used + 1) * sizeof(double));
            double *y = sp__malloc((used + 1) * sizeof(double));
            double *t = sp__malloc((used + 1) * sizeof(double));
            if (!x || !y || !t) {
                sp__free(x);
                sp__free(y);
                sp__free(t);
                rc = sp__fail(SP_ENOMEM, "out of memory");
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
        for (size_t s = 0; s < ns && rc == SP_OK; s++) {
            char suffix[40] = "";
            if (nth > 1 && (slots[s].metric == M_ACCURACY || slots[s].metric == M_PRECISION ||
                            slots[s].metric == M_RECALL || slots[s].metric == M_F1))
                sp__eval_threshold_name(o->thresholds[slots[s].thr], suffix, sizeof suffix);
            rc = sp__eval_add(c, slots[s].metric, suffix, slots[s].value, &slots[s].index);
        }
    }

    /* 5. intervals */
    if (rc == SP_OK && o->ci == SP_EVAL_CI_DELONG && c->want[M_ROC_AUC]) {
        double z = 0;
        /* the normal quantile at (1 + level) / 2 by bisection on erfc (no libm inverse) */
        double lo_z = 0, hi_z = 40, target = 1 - o->level;
        for (int it = 0; it < 200; it++) {
            z = 0.5 * (lo_z + hi_z);
            if (erfc(z / sqrt(2.0)) > target)
                lo_z = z;
            else
                hi_z = z;
        }
        double se = sqrt(ro.delong_var);
        double lo = ro.auc - z * se, hi = ro.auc + z * se;
        if (lo < 0) lo = 0;
        if (hi > 1) hi = 1;
        sp__eval_set_interval(c, slots[0].index, lo, hi);
    }
    if (rc == SP_OK && boot) {
        /* per-row inputs of the sweep, in sorted order */
        if (d->w) {
            ws = sp__malloc(n * sizeof(double));
            if (!ws) rc = sp__fail(SP_ENOMEM, "out of memory");
            for (uint64_t j = 0; ws && j < n; j++)
                ws[j] = d->w[perm[j]];
        }
        if (rc == SP_OK && c->want[M_LOG_LOSS]) {
            loss = sp__malloc(n * sizeof(double));
            if (!loss) rc = sp__fail(SP_ENOMEM, "out of memory");
            for (uint64_t j = 0; loss && j < n; j++) {
                double q = sorted[j];
                if (q < d->eps) q = d->eps;
                if (q > 1 - d->eps) q = 1 - d->eps;
                double q0 = 1 - q, s = q0 + q;
                loss[j] = -log((ys[j] ? q : q0) / s);
            }
        }
        if (rc == SP_OK && (c->want[M_ECE])) {
            bin_sorted = sp__malloc(n * sizeof(uint16_t));
            if (!bin_sorted) rc = sp__fail(SP_ENOMEM, "out of memory");
            for (uint64_t j = 0; bin_sorted && j < n; j++) {
                if (bin_row) {
                    bin_sorted[j] = bin_row[perm[j]];
                } else {
                    double p1 = sorted[j];
                    bin_sorted[j] = (uint16_t)sp__eval_bin_of(p1 > 0.5 ? p1 : 1 - p1, o->ece_bins);
                }
            }
        }
        uint64_t cut[SP_EVAL_MAX_THRESHOLDS];
        for (size_t k = 0; k < nth; k++) {
            /* rows with score >= t: n minus the first sorted position holding >= t */
            uint64_t lo = 0, hi = n;
            while (lo < hi) {
                uint64_t mid = lo + (hi - lo) / 2;
                if (sorted[mid] < o->thresholds[k])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            cut[k] = n - lo;
        }
        /* output slots: one replicate array per scalar metric */
        size_t n_out = 5 + 4 * nth;
        double *outs[5 + 4 * SP_EVAL_MAX_THRESHOLDS] = {0};
        size_t idx_of[5 + 4 * SP_EVAL_MAX_THRESHOLDS];
        boot_ctx bc = {d,    o,          perm, sorted,    ys,        ws,
                       loss, bin_sorted, cut,  want_rank, want_prob, sp__eval_seed_key(o->seed),
                       outs, 0,          1,    2,         3,         4,
                       5};
        for (size_t s = 0; s < ns && rc == SP_OK; s++) {
            size_t at;
            switch (slots[s].metric) {
            case M_ROC_AUC:
                at = 0;
                break;
            case M_AP:
                at = 1;
                break;
            case M_LOG_LOSS:
                at = 2;
                break;
            case M_BRIER:
                at = 3;
                break;
            case M_ECE:
                at = 4;
                break;
            case M_ACCURACY:
                at = 5 + 4 * slots[s].thr;
                break;
            case M_PRECISION:
                at = 6 + 4 * slots[s].thr;
                break;
            case M_RECALL:
                at = 7 + 4 * slots[s].thr;
                break;
            default:
                at = 8 + 4 * slots[s].thr;
                break;
            }
            outs[at] = sp__malloc((size_t)o->replicates * sizeof(double));
            if (!outs[at]) rc = sp__fail(SP_ENOMEM, "out of memory");
            idx_of[at] = slots[s].index;
        }
        if (rc == SP_OK) sp__eval_boot_blocks(c->n_threads, o->replicates, BB, boot_block, &bc);
        for (size_t s = 0; s < n_out; s++) {
            if (!outs[s]) continue;
            if (rc == SP_OK)
                sp__eval_set_replicates(c, idx_of[s], outs[s], o->replicates);
            else
                sp__free(outs[s]);
        }
    }
    sp__free(perm);
    sp__free(sorted);
    sp__free(ys);
    sp__free(ws);
    sp__free(loss);
    sp__free(bin_sorted);
    sp__free(bin_row);
    sp__free(bins);
    return rc;
}

/* ---- the paired DeLong test */

sp_status sp_eval_delong_test(const sp_array *y_true, const sp_array *score_a,
                              const sp_array *score_b, const sp_eval_opts *opts,
                              sp_eval_delong *out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_eval_delong_test: out is NULL");
    memset(out, 0, sizeof *out);
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    if (opts) o.n_threads = opts->n_threads;
    o.nan = SP_EVAL_NAN_ERROR; /* rows must stay paired: NaN is always an error here */
    o.task = SP_EVAL_BINARY;
    o.metrics = "roc_auc";
    sp__eval_data da, db;
    memset(&da, 0, sizeof da);
    memset(&db, 0, sizeof db);
    sp__eval_ctx c;
    sp_status rc = sp__eval_begin(&c, &o);
    if (rc == SP_OK) {
        o.s_name = "score_a";
        c.o.s_name = "score_a";
        rc = sp__eval_prepare(&c, y_true, score_a, NULL, &da);
    }
    if (rc == SP_OK) {
        c.o.s_name = "score_b";
        rc = sp__eval_prepare(&c, y_true, score_b, NULL, &db);
    }
    sp_eval_result_free(c.res);
    const uint64_t n = da.n;
    const int nt = c.n_threads;
    uint32_t *perm = NULL;
    double *sorted = NULL, *va = NULL, *vb = NULL;
    if (rc == SP_OK) {
        perm = sp__malloc(n * sizeof(uint32_t));
        sorted = sp__malloc(n * sizeof(double));
        va = sp__malloc(n * sizeof(double));
        vb = sp__malloc(n * sizeof(double));
        if (!perm || !sorted || !va || !vb) rc = sp__fail(SP_ENOMEM, "out of memory");
    }
    sp__eval_rank_out ra = {0}, rb = {0};
    for (int which = 0; which < 2 && rc == SP_OK; which++) {
        const sp__eval_data *d = which ? &db : &da;
        rc = sp__eval_argsort(d->s, d->s_dtype, (size_t)d->s_row, n, nt, perm, sorted);
        sp__eval_rank rk = {n, perm, sorted, da.y01, NULL, NULL};
        if (rc == SP_OK) rc = sp__eval_rank_sweep(&rk, 1, which ? &rb : &ra);
        if (rc == SP_OK) rc = sp__eval_rank_components(&rk, which ? vb : va);
    }
    if (rc == SP_OK) {
        double P = ra.pos, N = ra.neg;
        if (!(P > 1 && N > 1)) {
            rc = sp__fail(SP_EBADINPUT,
                          "y_true: the DeLong test needs at least 2 positive and 2 "
                          "negative rows (found %.0f and %.0f)",
                          P, N);
        } else {
            double s10[3] = {0}, s01[3] = {0}; /* aa, bb, ab */
            for (uint64_t i = 0; i < n; i++) {
                double a = va[i] - ra.auc, b = vb[i] - rb.auc;
                double *s = da.y01[i] ? s10 : s01;
                s[0] += a * a;
                s[1] += b * b;
                s[2] += a * b;
            }
            out->auc_a = ra.auc;
            out->auc_b = rb.auc;
            out->var_a = s10[0] / (P - 1) / P + s01[0] / (N - 1) / N;
            out->var_b = s10[1] / (P - 1) / P + s01[1] / (N - 1) / N;
            out->cov = s10[2] / (P - 1) / P + s01[2] / (N - 1) / N;
            out->diff = ra.auc - rb.auc;
            double v = out->var_a + out->var_b - 2 * out->cov;
            out->z = v > 0 ? out->diff / sqrt(v) : (out->diff == 0 ? 0 : INFINITY);
            out->p_value = v > 0 ? erfc(fabs(out->z) / sqrt(2.0)) : (out->diff == 0 ? 1 : 0);
            out->n_positive = (uint64_t)P;
            out->n_negative = (uint64_t)N;
        }
    }
    sp__free(perm);
    sp__free(sorted);
    sp__free(va);
    sp__free(vb);
    sp__eval_data_free(&da);
    sp__eval_data_free(&db);
    return rc;
}
