/* softpipe/transform.h — feature transforms, one definition for training and serving
 * (module src/serve/).
 *
 * A transform spec is a JSON file listing, per input column, a chain of steps: fill missing
 * values, clip, log1p, standardize, bucketize, vocabulary lookup and one-hot (docs/transform.md
 * documents the format, with an example). Fitting reads each input column once and computes the
 * statistics the steps need (means, standard deviations, medians, quantile boundaries,
 * vocabularies); the fitted transform saves as readable JSON that holds the same spec plus those
 * statistics and the names of the output features, in order. Applying a fitted transform turns
 * input rows into a dense row-major float32 matrix (n_rows x n_features), the input of
 * sp_tree_predict (tree.h). The training loader, `softpipe transform apply`, `softpipe predict`,
 * the Python softpipe.transform.Transform and the server all run the same apply code below, so
 * a model sees the same features in training and in serving.
 *
 * Missing values: NaN (numbers), NULL (strings) or a nonzero is_null flag. A fill step replaces
 * them; without one, a missing value stays missing through every step and comes out as NaN (in
 * every column of a one-hot block), which tree models route by their default direction.
 *
 * Thread-safety: a fitted transform is read-only; the apply functions may run on one transform
 * from any number of threads at once. Fitting modifies the transform (one thread, nothing else
 * using it).
 */
#ifndef SOFTPIPE_TRANSFORM_H
#define SOFTPIPE_TRANSFORM_H

#include "softpipe/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declared in ingest.h and shard.h; the table and dataset conveniences below take them. */
typedef struct sp_table sp_table;
typedef struct sp_dataset sp_dataset;

/* A transform: a spec (fitted or not) parsed and validated. */
typedef struct sp_transform sp_transform;

/* Limits that keep a hostile spec file from asking for unbounded memory. */
#define SP_TRANSFORM_MAX_COLUMNS  4096     /* column entries in one spec */
#define SP_TRANSFORM_MAX_STEPS    64       /* steps in one column entry */
#define SP_TRANSFORM_MAX_FEATURES 16777216 /* output features (2^24) */
#define SP_TRANSFORM_MAX_BUCKETS  65536    /* "quantiles" and boundaries + 1 */

/* ---------------------------------------------------------------- loading and saving */

/* Reads and validates a spec or a fitted transform from the JSON file at `path`. An unfitted spec
 * loads fine (fit it with sp_transform_fit*); apply refuses it. Every key is checked: unknown keys
 * and steps are errors, as are steps that do not fit the column's type (log1p on a string column,
 * vocabulary on a number column), and, in a fitted file, statistics that contradict each other or
 * a "features" list that differs from the one the steps give.
 * Errors (sp_errmsg() names the file and the JSON path at fault, e.g. "spec.json: columns[1]
 * (\"city\"): steps[0]: unknown step \"stanardize\" (expected fill, clip, ...)"):
 *   SP_EINVAL (a NULL argument), SP_ENOTFOUND, SP_EIO, SP_ENOMEM, SP_EBADINPUT (bad JSON, with
 *   "path:line:col", or a bad spec), SP_EUNSUPPORTED (a newer "version").
 * On success *out is the transform (free with sp_transform_free); on failure NULL. Thread-safe. */
SP_API sp_status sp_transform_load(const char *path, sp_transform **out /* OUT */);

/* The same from `len` bytes of JSON at `data` (need not be NUL-terminated); `name` stands for the
 * file in messages (NULL = "transform"). Thread-safe. */
SP_API sp_status sp_transform_load_buffer(const char *name, const void *data, size_t len,
                                          sp_transform **out /* OUT */);

/* Frees the transform and everything borrowed from it. NULL is a no-op. */
SP_API void sp_transform_free(sp_transform *tf);

/* The transform as JSON text (2-space indented, numbers in the shortest form that reads back to
 * the same double): the spec, plus, once fitted, every statistic, "features" and "fitted"
 * ({"rows": N}). Loading that text gives back a transform that applies identically.
 * *json is NUL-terminated, caller frees with sp_free(); *len (may be NULL) is its length.
 * Errors: SP_EINVAL, SP_ENOMEM. */
SP_API sp_status sp_transform_to_json(const sp_transform *tf, char **json /* OUT */,
                                      size_t *len /* OUT, may be NULL */);

/* Writes sp_transform_to_json's text to `path` atomically (temporary file, fsync, rename); an
 * existing file is replaced. Errors: SP_EINVAL, SP_ENOMEM, SP_EIO (naming the path). */
SP_API sp_status sp_transform_save(const sp_transform *tf, const char *path);

/* ---------------------------------------------------------------- describing */

/* 1 when every step has its statistics (apply is allowed), else 0 (also for NULL). */
SP_API int sp_transform_fitted(const sp_transform *tf);

/* Rows the statistics were computed from (0 when unfitted or fitted by hand). */
SP_API uint64_t sp_transform_fit_rows(const sp_transform *tf);

/* Output features: columns of the apply matrix. 0 when unfitted (widths of vocabularies and
 * quantile buckets are known only after fitting) or NULL. */
SP_API size_t sp_transform_n_features(const sp_transform *tf);

/* The name of output feature i: the column's name ("age"), "name=value" for a vocabulary's
 * one-hot column ("city=paris"), "name:oov" for its out-of-vocabulary column, "name[k]" for
 * bucket k's one-hot column. Borrowed: lives until sp_transform_free(tf). NULL when out of range
 * or unfitted. */
SP_API const char *sp_transform_feature_name(const sp_transform *tf, size_t i);

/* Distinct input columns the transform reads, in first-use order. */
SP_API size_t sp_transform_n_inputs(const sp_transform *tf);

/* Input column i's name (borrowed until sp_transform_free(tf); NULL when out of range), and in
 * *is_string (may be NULL) 1 when some step reads it as text (vocabulary or a text fill), 0 when
 * it is read as numbers. */
SP_API const char *sp_transform_input_name(const sp_transform *tf, size_t i,
                                           int *is_string /* OUT, may be NULL */);

/* ---------------------------------------------------------------- data */

/* One named input column of n_rows values. Exactly one of f64, i64 and str is set:
 *   f64   numbers; NaN is missing.
 *   i64   integers (converted to double for numeric steps, exact as text for vocabularies).
 *   str   UTF-8 strings, NUL-terminated unless str_len is given; a NULL pointer is missing.
 * A text column (vocabulary) also accepts numbers: integral values below 2^53 read as their
 * decimal digits ("12345"), others in the shortest form that round-trips ("0.5"), so a
 * vocabulary over integer ids works from numeric and text inputs alike. A number column given
 * text is an error. */
typedef struct sp_transform_column {
    const char *name;
    const double *f64;
    const int64_t *i64;
    const char *const *str;
    const size_t *str_len;  /* bytes of each str[i]; NULL = NUL-terminated */
    const uint8_t *is_null; /* optional: nonzero marks row i missing, whatever its value */
} sp_transform_column;

/* Rows as named columns; the transform looks its inputs up by name (extra columns are ignored).
 * The arrays are borrowed for the duration of the call. */
typedef struct sp_transform_input {
    const sp_transform_column *columns;
    size_t n_columns;
    uint64_t n_rows;
} sp_transform_input;

typedef struct sp_transform_opts {
    /* Names the data in messages ("data.csv" gives "data.csv:18: column \"income\": ..." for a
     * table, "data.csv: row 16: ..." otherwise). NULL = no name. */
    const char *source;
    /* Index of the first row, added to row numbers in messages (apply of a batch that starts at
     * row first_row of a larger input). */
    uint64_t first_row;
    /* Apply: threads splitting the rows (0 = all cores when there are at least 65536 rows, else
     * the caller's thread; 1 = the caller's thread). Fit: columns fitted in parallel (0 = all
     * cores). The result is identical for every value. */
    int n_threads;
    /* More fields may be added; always call sp_transform_opts_init first. */
} sp_transform_opts;

SP_API void sp_transform_opts_init(sp_transform_opts *opts);

/* ---------------------------------------------------------------- fitting */

/* Fits the transform to the rows of `in`: for each column entry, reads its input once into
 * memory (8 bytes per row, or a pointer and length for text) and runs the steps in order over
 * it, so each statistic sees the values as the earlier steps left them (a standardize after a
 * fill "mean" counts the filled values). Statistics are exact: means and population standard
 * deviations in double, medians and quantiles from a sort (NumPy's "linear" rule), vocabularies
 * from exact counts. Missing values are left out of every statistic. Replaces any statistics the
 * transform held; steps given as constants (a fill value, explicit boundaries, clip) stay.
 * opts may be NULL (defaults).
 * Errors, the transform unchanged: SP_EINVAL (NULL argument, or a column entry of `in` with no
 * or several value arrays, naming it); SP_EBADINPUT naming the column (and row): an input column
 * is absent, a number column given text, no rows, a statistic over a column with no values
 * ("column \"age\": steps[0] fill \"mean\": no values to fit (all 12 rows are missing)"), an
 * infinite value under a statistic, log1p of a value <= -1, a vocabulary value that is not valid
 * UTF-8; SP_ENOMEM. */
SP_API sp_status sp_transform_fit(sp_transform *tf, const sp_transform_input *in,
                                  const sp_transform_opts *opts);

/* sp_transform_fit over a CSV/JSONL table (ingest.h), its columns looked up by name
 * (sp_table_column_index's rules); messages give the file's line. */
SP_API sp_status sp_transform_fit_table(sp_transform *tf, const sp_table *t,
                                        const sp_transform_opts *opts);

/* sp_transform_fit over every row of a dataset (shard.h), its columns looked up by name. int32 and
 * int64 columns are integers, float64 numbers, string columns text; nulls are missing. */
SP_API sp_status sp_transform_fit_dataset(sp_transform *tf, const sp_dataset *ds,
                                          const sp_transform_opts *opts);

/* ---------------------------------------------------------------- applying */

/* Transforms the n_rows rows of `in` into out[0, n_rows * n_features): row r's features are
 * out[r * n_features + j], j in sp_transform_feature_name order. Values are computed in double
 * and rounded once to float32. Allocates nothing (with n_threads > 1 it starts that many threads
 * for the call); out_cap is the number of floats out holds.
 * opts may be NULL (defaults).
 * Errors (out is then unspecified): SP_EINVAL (NULL argument, out_cap too small, a column entry
 * without exactly one value array, or an unfitted transform: "transform is not fitted: column
 * \"age\" steps[2] standardize has no mean/std; run `softpipe transform fit`");
 * SP_EBADINPUT naming the row and the column: an input column is absent, a number column given
 * text, log1p of a value <= -1.
 * Thread-safe. */
SP_API sp_status sp_transform_apply(const sp_transform *tf, const sp_transform_input *in,
                                    const sp_transform_opts *opts, float *out, size_t out_cap);

/* Applies the transform to every row of a CSV/JSONL table into out (n_rows x n_features).
 * Allocates one column buffer per input for the call. Errors as sp_transform_apply, naming the
 * file's line. Thread-safe. */
SP_API sp_status sp_transform_apply_table(const sp_transform *tf, const sp_table *t,
                                          const sp_transform_opts *opts, float *out,
                                          size_t out_cap);

/* Applies the transform to rows [first, first + n_rows) of a dataset into out
 * (n_rows x n_features), so a large dataset goes through in batches; messages count rows from
 * the dataset's start. Allocates one batch-sized buffer per input for the call. Errors as
 * sp_transform_apply, plus SP_EINVAL when the range passes the dataset's end. Thread-safe. */
SP_API sp_status sp_transform_apply_dataset(const sp_transform *tf, const sp_dataset *ds,
                                            uint64_t first, uint64_t n_rows,
                                            const sp_transform_opts *opts, float *out,
                                            size_t out_cap);

#ifdef __cplusplus
}
#endif
#endif
