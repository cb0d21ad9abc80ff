/* serve_transform_fit.c — fitting a transform's statistics (sp_transform_fit and, through
 * sp__tf_fit_core, the table and dataset variants in serve_transform_apply.c).
 *
 * Each column entry reads its input once. A number column is copied into one array of doubles
 * (NaN = missing) and the steps run over it in order, each computing its statistic from the
 * values as the steps before left them and then transforming the array in place, so a
 * standardize after a fill "mean" sees the filled values, exactly as apply will produce them
 * (the number steps are the inline functions both share). Statistics are exact: the mean is a
 * compensated (Neumaier) sum, the standard deviation the two-pass population one, medians and
 * quantiles come from a sorted copy (NumPy's default "linear" rule, including its lerp), the most
 * frequent number from runs of that sorted copy. A text column needs no array: its values go
 * into a count table (open addressing on xxh3, strings copied once into one buffer) from which
 * most_frequent and the vocabulary are read; a text fill adds the missing rows to its value's
 * count, which is what the vocabulary then sees.
 *
 * The fit builds a new set of steps and swaps it in only when every column succeeded, so a
 * failed fit leaves the transform as it was. Column entries fit on several threads; the error
 * reported is the first failing entry's, whatever the thread count. */
#include "serve_transform_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ the count table */

typedef struct cm_entry {
    uint64_t off; /* into bytes */
    size_t len;
    uint64_t count;
    uint64_t first_row;
} cm_entry;

typedef struct cmap {
    cm_entry *e;
    size_t n, cap;
    uint32_t *slots; /* entry index + 1; 0 = empty; at most half full */
    size_t mask;
    sp__buf bytes;
} cmap;

static void cmap_free(cmap *m) {
    sp__free(m->e);
    sp__free(m->slots);
    sp__buf_free(&m->bytes);
    memset(m, 0, sizeof *m);
}

static const char *cm_str(const cmap *m, const cm_entry *e) {
    return (const char *)m->bytes.data + e->off;
}

static sp_status cmap_grow(cmap *m) {
    size_t cap = m->mask ? 2 * (m->mask + 1) : 64;
    uint32_t *slots = sp__calloc(cap, sizeof *slots);
    if (!slots) return SP_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        size_t h = (size_t)sp__xxh3(cm_str(m, &m->e[i]), m->e[i].len) & (cap - 1);
        while (slots[h])
            h = (h + 1) & (cap - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    sp__free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return SP_OK;
}

static sp_status cmap_add(cmap *m, const char *s, size_t len, uint64_t count, uint64_t row) {
    if (2 * (m->n + 1) > m->mask + 1 && cmap_grow(m) < 0) return SP_ENOMEM;
    size_t h = (size_t)sp__xxh3(s, len) & m->mask;
    while (m->slots[h]) {
        cm_entry *e = &m->e[m->slots[h] - 1];
        if (e->len == len && !memcmp(cm_str(m, e), s, len)) {
            e->count += count;
            return SP_OK;
        }
        h = (h + 1) & m->mask;
    }
    if (m->n >= UINT32_MAX - 1) return SP_ENOMEM;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        cm_entry *e = sp__realloc(m->e, cap * sizeof *e);
        if (!e) return SP_ENOMEM;
        m->e = e;
        m->cap = cap;
    }
    uint64_t off = m->bytes.len;
    if (sp__buf_append(&m->bytes, s, len) < 0 || sp__buf_append(&m->bytes, "", 1) < 0)
        return SP_ENOMEM;
    m->e[m->n] = (cm_entry){off, len, count, row};
    m->slots[h] = (uint32_t)(++m->n);
    return SP_OK;
}

/* Byte order, shorter first on a common prefix. */
static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* qsort has no context argument; the table being sorted is passed through this thread-local. */
static _Thread_local const cmap *sort_map;

/* Most frequent first; equal counts in byte order (deterministic, like sorting the strings). */
static int by_count(const void *pa, const void *pb) {
    const cm_entry *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return bytes_cmp(cm_str(sort_map, a), a->len, cm_str(sort_map, b), b->len);
}

/* ------------------------------------------------------------------ per-column context */

typedef struct fit_col {
    const sp_transform *tf; /* the old transform, for names */
    const tf_column *c;     /* the new entry being fitted */
    size_t index;
    const tf_where *w;
    uint64_t n;
} fit_col;

static sp_status col_fail(const fit_col *f, size_t j, const char *fmt, ...) SP__PRINTF(3, 4);
static sp_status col_fail(const fit_col *f, size_t j, const char *fmt, ...) {
    char what[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const tf_step *s = &f->c->steps[j];
    return sp__fail(SP_EBADINPUT, "%s%scolumn \"%s\": steps[%zu] (%s): %s",
                    f->w->source ? f->w->source : "", f->w->source ? ": " : "", f->c->name, j,
                    sp__tf_kind_name(s->kind), what);
}

static sp_status row_fail(const fit_col *f, size_t j, uint64_t row, const char *fmt, ...)
    SP__PRINTF(4, 5);
static sp_status row_fail(const fit_col *f, size_t j, uint64_t row, const char *fmt, ...) {
    char what[600], where[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    sp__tf_where_row(f->w, row, where, sizeof where);
    return sp__fail(SP_EBADINPUT, "%s: column \"%s\": steps[%zu] (%s): %s", where, f->c->name, j,
                    sp__tf_kind_name(f->c->steps[j].kind), what);
}

static sp_status oom(const fit_col *f) {
    return sp__fail(SP_ENOMEM, "column \"%s\": out of memory while fitting", f->c->name);
}

static sp_status dup_str(const fit_col *f, const char *s, size_t len, tf_str *out) {
    out->s = sp__malloc(len + 1);
    if (!out->s) return oom(f);
    memcpy(out->s, s, len);
    out->s[len] = '\0';
    out->len = len;
    return SP_OK;
}

/* ------------------------------------------------------------------ text columns */

static sp_status fit_text(const fit_col *f, tf_column *c, const tf_view *v) {
    cmap m = {0};
    uint64_t missing = 0;
    sp_status rc = SP_OK;
    for (uint64_t r = 0; r < f->n && rc == SP_OK; r++) {
        char buf[32];
        const char *s = NULL;
        size_t n = 0;
        if (!(v->is_null && v->is_null[r])) {
            if (v->str) {
                s = v->str[r];
                if (s) n = v->str_len ? v->str_len[r] : strlen(s);
            } else if (v->i64) {
                n = sp__tf_format_int(v->i64[r], buf);
                s = buf;
            } else if (!isnan(v->f64[r])) {
                n = sp__tf_format_number(v->f64[r], buf);
                s = buf;
            }
        }
        if (!s)
            missing++;
        else if (cmap_add(&m, s, n, 1, r) < 0)
            rc = oom(f);
    }
    for (size_t j = 0; j < c->n_steps && rc == SP_OK; j++) {
        tf_step *st = &c->steps[j];
        if (st->kind == TF_FILL) {
            if (st->strategy == TF_MOST_FREQUENT) {
                if (m.n == 0) {
                    rc =
                        col_fail(f, j, "no values to fit (all %" PRIu64 " rows are missing)", f->n);
                    break;
                }
                sort_map = &m;
                const cm_entry *best = &m.e[0];
                for (size_t i = 1; i < m.n; i++)
                    if (by_count(&m.e[i], best) < 0) best = &m.e[i];
                if (!sp__tf_utf8_valid(cm_str(&m, best), best->len)) {
                    rc = row_fail(f, j, best->first_row,
                                  "the most frequent value is not valid UTF-8 (the fitted "
                                  "transform is JSON text)");
                    break;
                }
                if ((rc = dup_str(f, cm_str(&m, best), best->len, &st->str)) < 0) break;
                st->fitted = 1;
            }
            if (missing && cmap_add(&m, st->str.s, st->str.len, missing, UINT64_MAX) < 0) {
                rc = oom(f);
                break;
            }
            missing = 0;
            continue;
        }
        /* The vocabulary: every value with count >= min_count, the most frequent first, cut to
         * max_size. */
        size_t keep = 0;
        for (size_t i = 0; i < m.n; i++)
            if (m.e[i].count >= st->min_count) m.e[keep++] = m.e[i];
        sort_map = &m;
        qsort(m.e, keep, sizeof *m.e, by_count);
        if (st->max_size && keep > st->max_size) keep = (size_t)st->max_size;
        if (keep >= SP_TRANSFORM_MAX_FEATURES) {
            rc = col_fail(f, j,
                          "%zu distinct values, more than the %d a vocabulary may hold; set "
                          "\"max_size\"",
                          keep, SP_TRANSFORM_MAX_FEATURES - 1);
            break;
        }
        tf_vocab *vo = &st->vocab;
        vo->values = sp__calloc(keep ? keep : 1, sizeof *vo->values);
        vo->counts = sp__calloc(keep ? keep : 1, sizeof *vo->counts);
        if (!vo->values || !vo->counts) {
            rc = oom(f);
            break;
        }
        for (size_t i = 0; i < keep && rc == SP_OK; i++) {
            const cm_entry *e = &m.e[i];
            if (!sp__tf_utf8_valid(cm_str(&m, e), e->len)) {
                rc = e->first_row == UINT64_MAX
                         ? col_fail(f, j, "the fill value is not valid UTF-8")
                         : row_fail(f, j, e->first_row,
                                    "the value is not valid UTF-8 (the fitted transform is "
                                    "JSON text)");
                break;
            }
            rc = dup_str(f, cm_str(&m, e), e->len, &vo->values[i]);
            vo->counts[i] = e->count;
            vo->n = i + 1;
        }
        if (rc == SP_OK && (rc = sp__tf_vocab_index(vo, c->name)) == SP_OK) st->fitted = 1;
        break; /* what follows (one_hot) has nothing to fit */
    }
    cmap_free(&m);
    return rc;
}

/* ------------------------------------------------------------------ number columns */

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* The non-missing values of x, or an error when one is infinite or there are none.
 * *sorted (optional) gets them in a new sorted array (sp__free). */
static sp_status values_of(const fit_col *f, size_t j, const double *x, uint64_t *count,
                           double **sorted) {
    uint64_t k = 0;
    for (uint64_t r = 0; r < f->n; r++) {
        if (isnan(x[r])) continue;
        if (isinf(x[r]))
            return row_fail(f, j, r,
                            "the value is %s; statistics need finite values (clip before this "
                            "step)",
                            x[r] > 0 ? "inf" : "-inf");
        k++;
    }
    if (k == 0) return col_fail(f, j, "no values to fit (all %" PRIu64 " rows are missing)", f->n);
    *count = k;
    if (!sorted) return SP_OK;
    double *s = sp__malloc(k * sizeof *s);
    if (!s) return oom(f);
    k = 0;
    for (uint64_t r = 0; r < f->n; r++)
        if (!isnan(x[r])) s[k++] = x[r];
    qsort(s, k, sizeof *s, cmp_double);
    *sorted = s;
    return SP_OK;
}

/* Neumaier's compensated sum of the non-missing values, over their count. */
static double mean_of(const double *x, uint64_t n, uint64_t count) {
    double sum = 0, comp = 0;
    for (uint64_t r = 0; r < n; r++) {
        double v = x[r];
        if (isnan(v)) continue;
        double t = sum + v;
        comp += fabs(sum) >= fabs(v) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    return (sum + comp) / (double)count;
}

/* NumPy's quantile, method "linear": virtual index q (k - 1), and its lerp, which computes from
 * the upper neighbour when the fraction is >= 0.5 so that it is monotonic and exact at the
 * ends. */
static double quantile_of(const double *s, uint64_t k, double q) {
    double pos = q * (double)(k - 1);
    double fl = floor(pos);
    uint64_t i = (uint64_t)fl;
    if (i + 1 >= k) return s[k - 1];
    double t = pos - fl, a = s[i], b = s[i + 1], d = b - a;
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
}

static sp_status fit_number(const fit_col *f, tf_column *c, const tf_view *v) {
    double *x = sp__malloc((f->n ? f->n : 1) * sizeof *x);
    if (!x) return oom(f);
    for (uint64_t r = 0; r < f->n; r++)
        x[r] = (v->is_null && v->is_null[r]) ? NAN : v->i64 ? (double)v->i64[r] : v->f64[r];
    sp_status rc = SP_OK;
    for (size_t j = 0; j < c->n_steps && rc == SP_OK; j++) {
        tf_step *st = &c->steps[j];
        uint64_t k = 0;
        double *s = NULL;
        switch (st->kind) {
        case TF_FILL:
            if (st->strategy == TF_MEAN) {
                if ((rc = values_of(f, j, x, &k, NULL)) < 0) break;
                st->num = mean_of(x, f->n, k);
            } else if (st->strategy == TF_MEDIAN) {
                if ((rc = values_of(f, j, x, &k, &s)) < 0) break;
                st->num = (s[(k - 1) / 2] + s[k / 2]) / 2;
            } else if (st->strategy == TF_MOST_FREQUENT) {
                if ((rc = values_of(f, j, x, &k, &s)) < 0) break;
                uint64_t best = 0, run = 0;
                for (uint64_t i = 0; i < k; i++) {
                    run = i > 0 && s[i] == s[i - 1] ? run + 1 : 1;
                    if (run > best) { /* strictly more: ties keep the smallest value */
                        best = run;
                        st->num = s[i];
                    }
                }
            }
            if (!isfinite(st->num)) {
                rc = col_fail(f, j, "the statistic overflows (values too large)");
                break;
            }
            st->fitted = 1;
            for (uint64_t r = 0; r < f->n; r++)
                if (isnan(x[r])) x[r] = st->num;
            break;
        case TF_CLIP:
            for (uint64_t r = 0; r < f->n; r++)
                x[r] = sp__tf_clip(st, x[r]);
            break;
        case TF_LOG1P:
            for (uint64_t r = 0; r < f->n && rc == SP_OK; r++) {
                if (x[r] <= -1)
                    rc = row_fail(f, j, r,
                                  "log1p of %g is undefined (it needs values > -1; clip before "
                                  "log1p)",
                                  x[r]);
                x[r] = log1p(x[r]);
            }
            break;
        case TF_STANDARDIZE: {
            if ((rc = values_of(f, j, x, &k, NULL)) < 0) break;
            double mean = mean_of(x, f->n, k), ss = 0;
            for (uint64_t r = 0; r < f->n; r++)
                if (!isnan(x[r])) ss += (x[r] - mean) * (x[r] - mean);
            st->mean = mean;
            st->std = sqrt(ss / (double)k);
            if (!isfinite(st->std) || !isfinite(st->mean)) {
                rc = col_fail(f, j, "the standard deviation overflows (values too large)");
                break;
            }
            st->fitted = 1;
            for (uint64_t r = 0; r < f->n; r++)
                x[r] = sp__tf_standardize(st, x[r]);
            break;
        }
        case TF_BUCKETIZE:
            if (st->strategy == TF_QUANTILES) {
                if ((rc = values_of(f, j, x, &k, &s)) < 0) break;
                st->bounds = sp__malloc(st->quantiles * sizeof *st->bounds);
                if (!st->bounds) {
                    rc = oom(f);
                    break;
                }
                /* Boundaries at i / K for i = 1 .. K-1; repeated values (ties in the data)
                 * collapse, so there may be fewer than K buckets. */
                st->n_bounds = 0;
                for (uint32_t i = 1; i < st->quantiles; i++) {
                    double b = quantile_of(s, k, (double)i / (double)st->quantiles);
                    if (!isfinite(b)) {
                        rc = col_fail(f, j, "a quantile overflows (values too large)");
                        break;
                    }
                    if (st->n_bounds == 0 || b > st->bounds[st->n_bounds - 1])
                        st->bounds[st->n_bounds++] = b;
                }
                if (rc < 0) break;
                st->fitted = 1;
            }
            for (uint64_t r = 0; r < f->n; r++)
                x[r] = sp__tf_bucket(st, x[r]);
            break;
        case TF_VOCABULARY: /* not in a number column (the parser saw to it) */
        case TF_ONE_HOT:
            break;
        }
        sp__free(s);
    }
    sp__free(x);
    return rc;
}

/* ------------------------------------------------------------------ the new transform */

/* A copy of column `src` keeping its configuration and constants, without fitted statistics. */
static sp_status copy_config(const tf_column *src, tf_column *dst) {
    memset(dst, 0, sizeof *dst);
    dst->name = sp__strdup(src->name);
    dst->output = src->output ? sp__strdup(src->output) : NULL;
    dst->steps = sp__calloc(src->n_steps ? src->n_steps : 1, sizeof *dst->steps);
    if (!dst->name || (src->output && !dst->output) || !dst->steps) return SP_ENOMEM;
    dst->text = src->text;
    dst->input = src->input;
    for (size_t j = 0; j < src->n_steps; j++) {
        const tf_step *a = &src->steps[j];
        tf_step *b = &dst->steps[j];
        dst->n_steps = j + 1;
        *b = *a;
        b->str = (tf_str){0};
        b->bounds = NULL;
        b->n_bounds = 0;
        memset(&b->vocab, 0, sizeof b->vocab);
        int constant =
            a->kind == TF_CLIP || a->kind == TF_LOG1P || a->kind == TF_ONE_HOT ||
            ((a->kind == TF_FILL || a->kind == TF_BUCKETIZE) && a->strategy == TF_CONSTANT);
        b->fitted = constant;
        if (!constant) continue;
        if (a->kind == TF_FILL && a->text) {
            b->str.s = sp__malloc(a->str.len + 1);
            if (!b->str.s) return SP_ENOMEM;
            memcpy(b->str.s, a->str.s, a->str.len + 1);
            b->str.len = a->str.len;
        }
        if (a->kind == TF_BUCKETIZE) {
            b->bounds = sp__malloc((a->n_bounds ? a->n_bounds : 1) * sizeof *b->bounds);
            if (!b->bounds) return SP_ENOMEM;
            if (a->n_bounds) memcpy(b->bounds, a->bounds, a->n_bounds * sizeof *b->bounds);
            b->n_bounds = a->n_bounds;
        }
    }
    return SP_OK;
}

typedef struct fit_job {
    const sp_transform *tf;
    sp_transform *nt;
    const sp_transform_input *in;
    const tf_where *w;
    /* per thread: the first failing column entry (SIZE_MAX = none), its status and message */
    size_t *bad_col;
    sp_status *bad_rc;
    char (*bad_msg)[SP_ERRMSG_MAX];
} fit_job;

static sp_status fit_one(const fit_job *job, size_t i) {
    tf_column *c = &job->nt->cols[i];
    fit_col f = {job->tf, c, i, job->w, job->in->n_rows};
    tf_view v;
    sp_status rc = sp__tf_view_input(job->tf, c, job->in, &v);
    if (rc < 0) {
        if (job->w->source) sp__errmsg_prefix("%s", job->w->source);
        return rc;
    }
    if (!c->text && v.str)
        return sp__fail(SP_EBADINPUT,
                        "%s%scolumn \"%s\": the input holds text, but its steps need numbers "
                        "(text needs a vocabulary step)",
                        job->w->source ? job->w->source : "", job->w->source ? ": " : "", c->name);
    return c->text ? fit_text(&f, c, &v) : fit_number(&f, c, &v);
}

static void fit_worker(void *ctx, int t, int n_threads) {
    fit_job *job = ctx;
    job->bad_col[t] = SIZE_MAX;
    for (size_t i = (size_t)t; i < job->nt->n_cols; i += (size_t)n_threads) {
        sp_status rc = fit_one(job, i);
        if (rc < 0) {
            job->bad_col[t] = i;
            job->bad_rc[t] = rc;
            snprintf(job->bad_msg[t], SP_ERRMSG_MAX, "%s", sp_errmsg());
            return;
        }
    }
}

sp_status sp__tf_fit_core(sp_transform *tf, const sp_transform_input *in, const tf_where *w,
                          int n_threads) {
    if (!tf || !in || (!in->columns && in->n_columns))
        return sp__fail(SP_EINVAL, "sp_transform_fit: %s is NULL",
                        !tf   ? "tf"
                        : !in ? "in"
                              : "in->columns");
    if (in->n_rows == 0)
        return sp__fail(SP_EBADINPUT, "%s%sno rows to fit the transform to",
                        w->source ? w->source : "", w->source ? ": " : "");
    sp_transform *nt = sp__calloc(1, sizeof *nt);
    if (!nt) return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    nt->name = sp__strdup(tf->name);
    nt->cols = sp__calloc(tf->n_cols, sizeof *nt->cols);
    sp_status rc = nt->name && nt->cols ? SP_OK : SP_ENOMEM;
    for (size_t i = 0; i < tf->n_cols && rc == SP_OK; i++) {
        nt->n_cols = i + 1;
        rc = copy_config(&tf->cols[i], &nt->cols[i]);
    }
    if (rc < 0) {
        sp_transform_free(nt);
        return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    }
    enum { MAX_T = 64 };
    if (n_threads <= 0) n_threads = in->n_rows < 65536 ? 1 : sp__ncpu();
    if (n_threads > MAX_T) n_threads = MAX_T;
    if ((size_t)n_threads > tf->n_cols) n_threads = (int)tf->n_cols;
    size_t bad_col[MAX_T];
    sp_status bad_rc[MAX_T];
    char(*bad_msg)[SP_ERRMSG_MAX] = sp__malloc((size_t)n_threads * sizeof *bad_msg);
    if (!bad_msg) {
        sp_transform_free(nt);
        return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    }
    fit_job job = {tf, nt, in, w, bad_col, bad_rc, bad_msg};
    if (n_threads == 1)
        fit_worker(&job, 0, 1);
    else
        sp__parallel(n_threads, fit_worker, &job);
    int first = -1;
    for (int t = 0; t < n_threads; t++)
        if (bad_col[t] != SIZE_MAX && (first < 0 || bad_col[t] < bad_col[first])) first = t;
    if (first >= 0) {
        rc = sp__fail(bad_rc[first], "%s", bad_msg[first]);
    } else {
        nt->fit_rows = in->n_rows;
        rc = sp__tf_finish(nt);
        if (rc == SP_OK && !nt->fitted)
            rc = sp__fail(SP_EINTERNAL, "%s: fit left a step unfitted", tf->name);
    }
    sp__free(bad_msg);
    if (rc < 0) {
        sp_transform_free(nt);
        return rc;
    }
    /* Swap the fitted columns in; the inputs and the name stay with tf. */
    tf_column *old = tf->cols;
    char **old_features = tf->features;
    size_t old_n_features = tf->n_features;
    tf->cols = nt->cols;
    tf->features = nt->features;
    tf->n_features = nt->n_features;
    tf->fitted = nt->fitted;
    tf->fit_rows = nt->fit_rows;
    nt->cols = old;
    nt->features = old_features;
    nt->n_features = old_n_features;
    sp_transform_free(nt);
    return SP_OK;
}

sp_status sp_transform_fit(sp_transform *tf, const sp_transform_input *in,
                           const sp_transform_opts *opts) {
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    if (opts) o = *opts;
    tf_where w = {o.source, o.first_row, NULL};
    return sp__tf_fit_core(tf, in, &w, o.n_threads);
}
