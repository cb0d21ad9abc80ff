/* serve_transform_apply.c — applying a fitted transform (sp_transform_apply*): the per-row
 * kernel, the row-range threading, and the readers that present a CSV/JSONL table or a dataset
 * as named columns.
 *
 * The kernel walks each column entry over a range of rows, one step after another per row, in
 * double, and rounds once to float32 when it stores. It reads only the immutable transform and
 * the caller's arrays and writes only the caller's output, so any number of threads may apply one
 * transform at once; it allocates nothing (a number read as text is formatted into a stack
 * buffer). Several threads split the rows into contiguous ranges; when rows are bad, the lowest
 * bad row (then the first column entry) is reported, whatever the thread count, so messages do
 * not depend on timing.
 *
 * Tables: numbers come from sp_table_column_f64, text from sp_table_column_type and
 * sp_table_value. */
#include "serve_transform_internal.h"

#include "softpipe/ingest.h"
#include "softpipe/shard.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define TF_PARALLEL_MIN_ROWS 65536

void sp__tf_where_row(const tf_where *w, uint64_t row, char *buf, size_t cap) {
    uint64_t r = w->first_row + row;
    const char *src = w->source;
    if (w->table) {
        uint64_t line = sp_table_line(w->table, r);
        if (src)
            snprintf(buf, cap, "%s:%" PRIu64, src, line);
        else
            snprintf(buf, cap, "line %" PRIu64, line);
    } else if (src) {
        snprintf(buf, cap, "%s: row %" PRIu64, src, r);
    } else {
        snprintf(buf, cap, "row %" PRIu64, r);
    }
}

sp_status sp__tf_not_fitted(const sp_transform *tf) {
    for (size_t i = 0; i < tf->n_cols; i++)
        for (size_t j = 0; j < tf->cols[i].n_steps; j++) {
            const tf_step *s = &tf->cols[i].steps[j];
            if (s->fitted) continue;
            return sp__fail(SP_EINVAL,
                            "%s: the transform is not fitted: columns[%zu] (\"%s\") steps[%zu] "
                            "(%s) has no statistics; fit it first (`softpipe transform fit`)",
                            tf->name, i, tf->cols[i].name, j, sp__tf_kind_name(s->kind));
        }
    return sp__fail(SP_EINVAL, "%s: the transform is not fitted", tf->name);
}

sp_status sp__tf_view_input(const sp_transform *tf, const tf_column *c,
                            const sp_transform_input *in, tf_view *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < in->n_columns; i++) {
        const sp_transform_column *col = &in->columns[i];
        if (!col->name || strcmp(col->name, c->name) != 0) continue;
        int set = !!col->f64 + !!col->i64 + !!col->str;
        if (set != 1 && in->n_rows > 0)
            return sp__fail(SP_EINVAL,
                            "input column \"%s\": set exactly one of f64, i64 and str (%d are set)",
                            c->name, set);
        out->f64 = col->f64;
        out->i64 = col->i64;
        out->str = col->str;
        out->str_len = col->str_len;
        out->is_null = col->is_null;
        return SP_OK;
    }
    char list[256] = "";
    size_t at = 0;
    for (size_t i = 0; i < tf->n_inputs && at < sizeof list - 1; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", tf->inputs[i]);
    return sp__fail(SP_EBADINPUT, "no input column \"%s\" (the transform reads %s)", c->name, list);
}

int sp__tf_apply_column(const sp_transform *tf, const tf_column *c, const tf_view *v, uint64_t lo,
                        uint64_t hi, float *out, uint64_t *bad_row, double *bad_value) {
    const size_t stride = tf->n_features;
    const int one_hot = c->n_steps > 0 && c->steps[c->n_steps - 1].kind == TF_ONE_HOT;
    const size_t n_num = one_hot ? c->n_steps - 1 : c->n_steps;
    for (uint64_t r = lo; r < hi; r++) {
        int missing = v->is_null && v->is_null[r];
        size_t j = 0;
        double x = NAN;
        if (c->text) {
            /* TEXT domain: fills, then the vocabulary turns the string into an index. */
            char buf[32];
            const char *s = NULL;
            size_t n = 0;
            if (!missing) {
                if (v->str) {
                    s = v->str[r];
                    if (!s)
                        missing = 1;
                    else
                        n = v->str_len ? v->str_len[r] : strlen(s);
                } else if (v->i64) {
                    n = sp__tf_format_int(v->i64[r], buf);
                    s = buf;
                } else if (isnan(v->f64[r])) {
                    missing = 1;
                } else {
                    n = sp__tf_format_number(v->f64[r], buf);
                    s = buf;
                }
            }
            for (; j < n_num; j++) {
                const tf_step *st = &c->steps[j];
                if (st->kind == TF_FILL) {
                    if (missing) {
                        s = st->str.s;
                        n = st->str.len;
                        missing = 0;
                    }
                    continue;
                }
                /* the vocabulary (the parser allows nothing else here) */
                x = missing ? NAN : (double)sp__tf_vocab_find(&st->vocab, s, n);
                j++;
                break;
            }
        } else if (!missing) {
            x = v->i64 ? (double)v->i64[r] : v->f64[r];
        }
        for (; j < n_num; j++) {
            const tf_step *st = &c->steps[j];
            switch (st->kind) {
            case TF_FILL:
                if (isnan(x)) x = st->num;
                break;
            case TF_CLIP:
                x = sp__tf_clip(st, x);
                break;
            case TF_LOG1P:
                if (x <= -1) {
                    *bad_row = r;
                    *bad_value = x;
                    return 1;
                }
                x = log1p(x);
                break;
            case TF_STANDARDIZE:
                x = sp__tf_standardize(st, x);
                break;
            case TF_BUCKETIZE:
                x = sp__tf_bucket(st, x);
                break;
            case TF_VOCABULARY: /* only in the TEXT domain, consumed above */
            case TF_ONE_HOT:
                break;
            }
        }
        float *o = out + r * stride + c->first_feature;
        if (!one_hot) {
            o[0] = (float)x;
        } else if (isnan(x)) {
            for (size_t k = 0; k < c->width; k++)
                o[k] = NAN;
        } else {
            memset(o, 0, c->width * sizeof *o);
            o[(size_t)x] = 1.0f;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ apply over named columns */

typedef struct apply_job {
    const sp_transform *tf;
    const sp_transform_input *in;
    float *out;
    /* per thread: the lowest bad row found (UINT64_MAX = none), its column entry and value */
    uint64_t *bad_row;
    size_t *bad_col;
    double *bad_value;
} apply_job;

/* Rows [lo, hi) of every column entry; returns the lowest bad row (UINT64_MAX when none). */
static uint64_t apply_range(const apply_job *job, uint64_t lo, uint64_t hi, size_t *bad_col,
                            double *bad_value) {
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < job->tf->n_cols; i++) {
        uint64_t row;
        double value;
        uint64_t end = best < hi ? best : hi; /* rows past a known bad one do not matter */
        tf_view v;                            /* checked by check_inputs: cannot fail here */
        if (sp__tf_view_input(job->tf, &job->tf->cols[i], job->in, &v) < 0) continue;
        if (sp__tf_apply_column(job->tf, &job->tf->cols[i], &v, lo, end, job->out, &row, &value) &&
            row < best) {
            best = row;
            *bad_col = i;
            *bad_value = value;
        }
    }
    return best;
}

static void apply_worker(void *ctx, int t, int n_threads) {
    apply_job *job = ctx;
    uint64_t lo, hi;
    sp__split_range(job->in->n_rows, n_threads, t, &lo, &hi);
    job->bad_row[t] = apply_range(job, lo, hi, &job->bad_col[t], &job->bad_value[t]);
}

static int pick_threads(int requested, uint64_t n_rows) {
    if (requested > 0) return requested;
    if (n_rows < TF_PARALLEL_MIN_ROWS) return 1;
    int n = sp__ncpu();
    uint64_t most = n_rows / (TF_PARALLEL_MIN_ROWS / 4);
    return (uint64_t)n > most ? (int)most : n;
}

/* Checks that every column entry finds its input, of a kind it can read. The workers look the
 * inputs up again (a few string compares per entry), which keeps apply free of allocation. */
static sp_status check_inputs(const sp_transform *tf, const sp_transform_input *in,
                              const tf_where *w) {
    for (size_t i = 0; i < tf->n_cols; i++) {
        const tf_column *c = &tf->cols[i];
        tf_view v;
        sp_status rc = sp__tf_view_input(tf, c, in, &v);
        if (rc == SP_OK && !c->text && v.str)
            rc = sp__fail(SP_EBADINPUT,
                          "column \"%s\": the input holds text, but its steps need numbers "
                          "(text needs a vocabulary step)",
                          c->name);
        if (rc < 0) {
            if (w->source) sp__errmsg_prefix("%s", w->source);
            return rc;
        }
    }
    return SP_OK;
}

static sp_status apply_core(const sp_transform *tf, const sp_transform_input *in, const tf_where *w,
                            int n_threads, float *out, size_t out_cap) {
    if (!tf || !in || (!out && in->n_rows > 0) || (!in->columns && in->n_columns))
        return sp__fail(SP_EINVAL, "sp_transform_apply: %s is NULL",
                        !tf    ? "tf"
                        : !in  ? "in"
                        : !out ? "out"
                               : "in->columns");
    if (!tf->fitted) return sp__tf_not_fitted(tf);
    uint64_t n = in->n_rows;
    if (tf->n_features && n > SIZE_MAX / tf->n_features)
        return sp__fail(SP_EINVAL, "sp_transform_apply: %" PRIu64 " rows overflow", n);
    if (out_cap < n * tf->n_features)
        return sp__fail(SP_EINVAL,
                        "sp_transform_apply: out holds %zu floats, %" PRIu64 " rows x %zu features "
                        "need %" PRIu64,
                        out_cap, n, tf->n_features, n * tf->n_features);
    if (n == 0) return SP_OK;
    SP_TRY(check_inputs(tf, in, w));
    enum { MAX_T = 256 };
    n_threads = pick_threads(n_threads, n);
    if (n_threads > MAX_T) n_threads = MAX_T;
    if ((uint64_t)n_threads > n) n_threads = (int)n;
    uint64_t bad_row[MAX_T];
    size_t bad_col[MAX_T];
    double bad_value[MAX_T];
    apply_job job = {tf, in, out, bad_row, bad_col, bad_value};
    if (n_threads == 1)
        apply_worker(&job, 0, 1);
    else
        sp__parallel(n_threads, apply_worker, &job);
    for (int t = 0; t < n_threads; t++) {
        if (bad_row[t] == UINT64_MAX) continue;
        char where[300];
        sp__tf_where_row(w, bad_row[t], where, sizeof where);
        return sp__fail(SP_EBADINPUT,
                        "%s: column \"%s\": log1p of %g is undefined (it needs values > -1; "
                        "clip before log1p)",
                        where, tf->cols[bad_col[t]].name, bad_value[t]);
    }
    return SP_OK;
}

sp_status sp_transform_apply(const sp_transform *tf, const sp_transform_input *in,
                             const sp_transform_opts *opts, float *out, size_t out_cap) {
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    if (opts) o = *opts;
    tf_where w = {o.source, o.first_row, NULL};
    return apply_core(tf, in, &w, o.n_threads, out, out_cap);
}

/* ------------------------------------------------------------------ tables and datasets */

/* Named columns gathered from a table or a dataset: owned arrays behind an sp_transform_input. */
typedef struct gathered {
    sp_transform_column *cols;
    void **owned; /* 3 per input: values, lengths, null flags */
    sp_transform_input in;
} gathered;

static void gathered_free(gathered *g, size_t n_inputs) {
    if (g->owned)
        for (size_t i = 0; i < 3 * n_inputs; i++)
            sp__free(g->owned[i]);
    sp__free(g->owned);
    sp__free(g->cols);
    memset(g, 0, sizeof *g);
}

static sp_status gathered_init(gathered *g, const sp_transform *tf, uint64_t n_rows) {
    memset(g, 0, sizeof *g);
    g->cols = sp__calloc(tf->n_inputs ? tf->n_inputs : 1, sizeof *g->cols);
    g->owned = sp__calloc(3 * (tf->n_inputs ? tf->n_inputs : 1), sizeof *g->owned);
    if (!g->cols || !g->owned) return sp__fail(SP_ENOMEM, "%s: out of memory", tf->name);
    g->in.columns = g->cols;
    g->in.n_columns = tf->n_inputs;
    g->in.n_rows = n_rows;
    for (size_t i = 0; i < tf->n_inputs; i++)
        g->cols[i].name = tf->inputs[i];
    return SP_OK;
}

static void *grab(gathered *g, size_t input, int slot, size_t bytes) {
    void *p = sp__malloc(bytes ? bytes : 1);
    g->owned[3 * input + (size_t)slot] = p;
    return p;
}

static const char *src_name(const tf_where *w) {
    return w->source ? w->source : "table";
}

static sp_status gather_table(gathered *g, const sp_transform *tf, const sp_table *t,
                              const tf_where *w) {
    uint64_t n = sp_table_n_rows(t);
    SP_TRY(gathered_init(g, tf, n));
    for (size_t i = 0; i < tf->n_inputs; i++) {
        int col = sp_table_column_index(t, tf->inputs[i]);
        if (col < 0) {
            char list[256] = "";
            size_t at = 0;
            for (size_t k = 0; k < sp_table_n_columns(t) && at < sizeof list - 1; k++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", k ? ", " : "",
                                       sp_table_column_name(t, k));
            return sp__fail(SP_EBADINPUT, "%s: no column \"%s\" (the table has %s)", src_name(w),
                            tf->inputs[i], list);
        }
        int type = sp_table_column_type(t, (size_t)col);
        if (type == SP_TYPE_STRING && !tf->input_text[i])
            return sp__fail(SP_EBADINPUT,
                            "%s: column \"%s\" holds text, but its steps need numbers (text "
                            "needs a vocabulary step)",
                            src_name(w), tf->inputs[i]);
        if (type == SP_TYPE_STRING) {
            const char **s = grab(g, i, 0, n * sizeof *s);
            size_t *len = grab(g, i, 1, n * sizeof *len);
            if (!s || !len) return sp__fail(SP_ENOMEM, "%s: out of memory", src_name(w));
            for (uint64_t r = 0; r < n; r++) {
                sp_value v;
                SP_TRY(sp_table_value(t, r, (size_t)col, &v));
                s[r] = v.is_null ? NULL : v.v.str.s;
                len[r] = v.is_null ? 0 : v.v.str.len;
            }
            g->cols[i].str = s;
            g->cols[i].str_len = len;
            continue;
        }
        if (type == SP_TYPE_INT64) {
            int64_t *v64 = grab(g, i, 0, n * sizeof *v64);
            uint8_t *nul = grab(g, i, 2, n);
            if (!v64 || !nul) return sp__fail(SP_ENOMEM, "%s: out of memory", src_name(w));
            for (uint64_t r = 0; r < n; r++) {
                sp_value v;
                SP_TRY(sp_table_value(t, r, (size_t)col, &v));
                nul[r] = (uint8_t) !!v.is_null;
                v64[r] = v.is_null ? 0 : v.v.i;
            }
            g->cols[i].i64 = v64;
            g->cols[i].is_null = nul;
            continue;
        }
        double *f = grab(g, i, 0, n * sizeof *f);
        if (!f) return sp__fail(SP_ENOMEM, "%s: out of memory", src_name(w));
        sp_status rc = sp_table_column_f64(t, (size_t)col, f, n);
        if (rc < 0) return rc;
        g->cols[i].f64 = f;
    }
    return SP_OK;
}

static sp_status gather_dataset(gathered *g, const sp_transform *tf, const sp_dataset *ds,
                                uint64_t first, uint64_t n, const tf_where *w) {
    SP_TRY(gathered_init(g, tf, n));
    const char *src = w->source ? w->source : "dataset";
    for (size_t i = 0; i < tf->n_inputs; i++) {
        int col = sp_dataset_column_index(ds, tf->inputs[i]);
        if (col < 0) {
            char list[256] = "";
            size_t at = 0;
            for (size_t k = 0; k < sp_dataset_n_columns(ds) && at < sizeof list - 1; k++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", k ? ", " : "",
                                       sp_dataset_column(ds, k)->name);
            return sp__fail(SP_EBADINPUT, "%s: no column \"%s\" (the dataset has %s)", src,
                            tf->inputs[i], list);
        }
        sp_type type = sp_dataset_column(ds, (size_t)col)->type;
        if (type == SP_TYPE_STRING && !tf->input_text[i])
            return sp__fail(SP_EBADINPUT,
                            "%s: column \"%s\" holds text, but its steps need numbers (text "
                            "needs a vocabulary step)",
                            src, tf->inputs[i]);
        uint8_t *nul = grab(g, i, 2, n);
        void *vals = grab(g, i, 0, n * 8);
        size_t *len = type == SP_TYPE_STRING ? grab(g, i, 1, n * sizeof *len) : NULL;
        if (!nul || !vals || (type == SP_TYPE_STRING && !len))
            return sp__fail(SP_ENOMEM, "%s: out of memory", src);
        for (uint64_t r = 0; r < n; r++) {
            sp_value v;
            SP_TRY(sp_dataset_value(ds, first + r, (size_t)col, &v));
            nul[r] = (uint8_t) !!v.is_null;
            if (type == SP_TYPE_STRING) {
                ((const char **)vals)[r] = v.is_null ? "" : v.v.str.s;
                len[r] = v.is_null ? 0 : v.v.str.len;
            } else if (type == SP_TYPE_FLOAT64) {
                ((double *)vals)[r] = v.is_null ? NAN : v.v.f;
            } else {
                ((int64_t *)vals)[r] = v.is_null ? 0 : v.v.i;
            }
        }
        g->cols[i].is_null = nul;
        if (type == SP_TYPE_STRING) {
            g->cols[i].str = vals;
            g->cols[i].str_len = len;
        } else if (type == SP_TYPE_FLOAT64) {
            g->cols[i].f64 = vals;
        } else {
            g->cols[i].i64 = vals;
        }
    }
    return SP_OK;
}

sp_status sp_transform_apply_table(const sp_transform *tf, const sp_table *t,
                                   const sp_transform_opts *opts, float *out, size_t out_cap) {
    if (!tf || !t)
        return sp__fail(SP_EINVAL, "sp_transform_apply_table: %s is NULL", tf ? "t" : "tf");
    if (!tf->fitted) return sp__tf_not_fitted(tf);
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    if (opts) o = *opts;
    tf_where w = {o.source, 0, t};
    gathered g;
    sp_status rc = gather_table(&g, tf, t, &w);
    if (rc == SP_OK) rc = apply_core(tf, &g.in, &w, o.n_threads, out, out_cap);
    gathered_free(&g, tf->n_inputs);
    return rc;
}

sp_status sp_transform_apply_dataset(const sp_transform *tf, const sp_dataset *ds, uint64_t first,
                                     uint64_t n_rows, const sp_transform_opts *opts, float *out,
                                     size_t out_cap) {
    if (!tf || !ds)
        return sp__fail(SP_EINVAL, "sp_transform_apply_dataset: %s is NULL", tf ? "ds" : "tf");
    if (!tf->fitted) return sp__tf_not_fitted(tf);
    uint64_t len = sp_dataset_len(ds);
    if (first > len || n_rows > len - first)
        return sp__fail(SP_EINVAL,
                        "sp_transform_apply_dataset: rows %" PRIu64 "..%" PRIu64
                        " pass the dataset's end (%" PRIu64 " rows)",
                        first, first + n_rows, len);
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    if (opts) o = *opts;
    tf_where w = {o.source, first, NULL};
    gathered g;
    sp_status rc = gather_dataset(&g, tf, ds, first, n_rows, &w);
    if (rc == SP_OK) rc = apply_core(tf, &g.in, &w, o.n_threads, out, out_cap);
    gathered_free(&g, tf->n_inputs);
    return rc;
}

/* Fitting over tables and datasets gathers the same way; the statistics are in
 * serve_transform_fit.c. */
sp_status sp_transform_fit_table(sp_transform *tf, const sp_table *t,
                                 const sp_transform_opts *opts) {
    if (!tf || !t)
        return sp__fail(SP_EINVAL, "sp_transform_fit_table: %s is NULL", tf ? "t" : "tf");
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    if (opts) o = *opts;
    tf_where w = {o.source, 0, t};
    gathered g;
    sp_status rc = gather_table(&g, tf, t, &w);
    if (rc == SP_OK) rc = sp__tf_fit_core(tf, &g.in, &w, o.n_threads);
    gathered_free(&g, tf->n_inputs);
    return rc;
}

sp_status sp_transform_fit_dataset(sp_transform *tf, const sp_dataset *ds,
                                   const sp_transform_opts *opts) {
    if (!tf || !ds)
        return sp__fail(SP_EINVAL, "sp_transform_fit_dataset: %s is NULL", tf ? "ds" : "tf");
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    if (opts) o = *opts;
    tf_where w = {o.source, 0, NULL};
    gathered g;
    sp_status rc = gather_dataset(&g, tf, ds, 0, sp_dataset_len(ds), &w);
    if (rc == SP_OK) rc = sp__tf_fit_core(tf, &g.in, &w, o.n_threads);
    gathered_free(&g, tf->n_inputs);
    return rc;
}
