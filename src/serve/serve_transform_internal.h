/* serve_transform_internal.h — private to the feature-transform files of src/serve/:
 * serve_transform.c (parse, validate, describe, write JSON), serve_transform_fit.c (statistics)
 * and serve_transform_apply.c (the per-row kernel and the table/dataset readers).
 *
 * A transform is a list of column entries; each entry reads one input column and runs its steps
 * in order. The steps move a value through three domains: TEXT (a string, before a vocabulary),
 * NUMBER and CATEGORY (an index from vocabulary or bucketize, with a known number of categories,
 * which one_hot may expand). The parser checks that every step suits the domain it meets, so the
 * kernel never has to. Fitted statistics live in the steps; `fitted` on a step says they are
 * there. Everything is immutable once fitted, which is what makes apply thread-safe. */
#ifndef SP_SERVE_TRANSFORM_INTERNAL_H
#define SP_SERVE_TRANSFORM_INTERNAL_H

#include "core_internal.h"
#include "softpipe/transform.h"

typedef enum tf_kind {
    TF_FILL = 1,
    TF_CLIP,
    TF_LOG1P,
    TF_STANDARDIZE,
    TF_BUCKETIZE,
    TF_VOCABULARY,
    TF_ONE_HOT
} tf_kind;

typedef enum tf_strategy {
    TF_CONSTANT = 0, /* fill: a given value; bucketize: given boundaries */
    TF_MEAN,
    TF_MEDIAN,
    TF_MOST_FREQUENT,
    TF_QUANTILES
} tf_strategy;

typedef struct tf_str {
    char *s; /* NUL-terminated copy (the value may hold NULs; len counts every byte) */
    size_t len;
} tf_str;

/* A vocabulary: values in index order and an open-addressing table of index + 1 (0 = empty),
 * keyed by xxh3 of the bytes; the table is at most half full. */
typedef struct tf_vocab {
    tf_str *values;
    uint64_t *counts; /* fit-time counts, or NULL when the file gave none */
    size_t n;
    uint32_t *slots;
    size_t mask; /* slots has mask + 1 entries (a power of two) */
} tf_vocab;

typedef struct tf_step {
    tf_kind kind;
    int fitted;
    tf_strategy strategy;
    /* fill */
    int text;   /* the fill is in the TEXT domain */
    double num; /* number fill value */
    tf_str str; /* text fill value */
    /* clip: -inf / +inf when a side is open (null in JSON) */
    double lo, hi;
    /* standardize: x -> (x - mean) / scale, scale = std, or 1 when std is 0 */
    double mean, std;
    /* bucketize: bucket of x = number of boundaries <= x */
    uint32_t quantiles;
    double *bounds;
    size_t n_bounds;
    /* vocabulary */
    uint64_t max_size, min_count;
    tf_vocab vocab;
} tf_step;

typedef struct tf_column {
    char *name;   /* input column */
    char *output; /* feature name prefix ("as"), or NULL for name */
    int text;     /* the input is read as text (the first steps are in the TEXT domain) */
    tf_step *steps;
    size_t n_steps;
    /* Once fitted: */
    size_t width;         /* output features of this entry */
    size_t first_feature; /* its first column in the output */
    size_t input;         /* index into sp_transform.inputs */
} tf_column;

struct sp_transform {
    char *name; /* the file, for messages */
    tf_column *cols;
    size_t n_cols;
    char **inputs; /* distinct input names, first-use order */
    int *input_text;
    size_t n_inputs;
    int fitted;
    uint64_t fit_rows;
    char **features;
    size_t n_features;
};

/* Names of kinds and strategies as the JSON spells them. */
const char *sp__tf_kind_name(tf_kind k);

/* Validates the domains of a column's steps and, when every step is fitted, computes the
 * entry's width; recomputes tf->fitted, the feature list and offsets. Called after parsing and
 * after fitting. */
sp_status sp__tf_finish(sp_transform *tf);

/* Builds the lookup table of a vocabulary whose values are set; SP_EBADINPUT on a duplicate
 * (naming `where`). */
sp_status sp__tf_vocab_index(tf_vocab *v, const char *where);
/* Index of s[0, len) in the vocabulary, or v->n when absent (the out-of-vocabulary index). */
size_t sp__tf_vocab_find(const tf_vocab *v, const char *s, size_t len);
void sp__tf_vocab_free(tf_vocab *v);
void sp__tf_step_clear(tf_step *s);

/* Formats a number the way text steps read it: integral values below 2^53 as digits, others in
 * the shortest round-trip form. buf holds at least 32 bytes; returns the length. */
size_t sp__tf_format_number(double x, char *buf);
size_t sp__tf_format_int(int64_t x, char *buf);

/* Whether s[0, len) is valid UTF-8 (what JSON text must be). */
int sp__tf_utf8_valid(const char *s, size_t len);

/* Reading inputs. A source resolves a column entry's input into arrays the kernel reads:
 * numbers (f64 or i64) or text (ptr/len), plus optional null flags, for rows [0, n). */
typedef struct tf_view {
    const double *f64;
    const int64_t *i64;
    const char *const *str;
    const size_t *str_len;
    const uint8_t *is_null;
} tf_view;

/* Finds entry `c`'s input in `in`; SP_EBADINPUT when absent, SP_EINVAL when malformed. */
sp_status sp__tf_view_input(const sp_transform *tf, const tf_column *c,
                            const sp_transform_input *in, tf_view *out);

/* Where a row is, for messages: "<source>: row N", or "<source>:LINE" for tables. */
typedef struct tf_where {
    const char *source;
    uint64_t first_row;
    const sp_table *table; /* rows map to file lines */
} tf_where;
void sp__tf_where_row(const tf_where *w, uint64_t row, char *buf, size_t cap);

/* The number steps, shared by fit and apply so both compute exactly the same values. NaN
 * (missing) passes through each of them unchanged. */
static inline double sp__tf_clip(const tf_step *s, double x) {
    return x < s->lo ? s->lo : x > s->hi ? s->hi : x;
}
static inline double sp__tf_standardize(const tf_step *s, double x) {
    return (x - s->mean) / (s->std > 0 ? s->std : 1.0);
}
/* The bucket of x: how many boundaries are <= x (NumPy's searchsorted(side="right")). */
static inline double sp__tf_bucket(const tf_step *s, double x) {
    if (x != x) return x;
    size_t lo = 0, hi = s->n_bounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->bounds[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (double)lo;
}

/* The per-row kernel: entry c over rows [lo, hi) of view v into out (row r at
 * out + r * n_features). Returns 0, or 1 when a value is outside log1p's domain: *bad_row is then
 * its row and *bad_value the value. Allocates nothing. */
int sp__tf_apply_column(const sp_transform *tf, const tf_column *c, const tf_view *v, uint64_t lo,
                        uint64_t hi, float *out, uint64_t *bad_row, double *bad_value);

/* Fits tf over `in` (serve_transform_fit.c); the public sp_transform_fit* wrap it. */
sp_status sp__tf_fit_core(sp_transform *tf, const sp_transform_input *in, const tf_where *w,
                          int n_threads);

/* The message for an apply on an unfitted transform (SP_EINVAL). */
sp_status sp__tf_not_fitted(const sp_transform *tf);

#endif
