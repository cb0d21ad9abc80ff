/* softpipe/ingest.h — packing outside data into a softpipe dataset.
 *
 * sp_pack() reads an ImageFolder tree (SRC/<class>/... with .jpg, .jpeg or .png files), a CSV file
 * or a JSONL file and writes a dataset folder (see shard.h). Output is byte-identical for any
 * thread count, and the dataset appears only when complete.
 */
#ifndef SOFTPIPE_INGEST_H
#define SOFTPIPE_INGEST_H

#include "core.h"
#include "shard.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_pack_format {
    SP_PACK_AUTO = 0, /* a folder is an ImageFolder; *.csv is CSV; *.jsonl / *.ndjson is JSONL */
    SP_PACK_IMAGEFOLDER = 1,
    SP_PACK_CSV = 2,
    SP_PACK_JSONL = 3
} sp_pack_format;

typedef struct sp_pack_opts {
    sp_pack_format format;
    int threads;         /* readers; 0 = number of online CPUs */
    int skip_errors;     /* 0: stop at the first bad input (on-error=fail); 1: skip and report */
    uint64_t shard_size; /* 0 = 256 MiB */
    uint64_t block_size; /* 0 = 4 MiB */
    /* Tables only (NULL = none / inferred): */
    const char *schema;       /* "name:type,..." with type int64|float64|string|timestamp */
    const char *image_column; /* column naming image files, relative to the table's folder */
    const char *label_column; /* int64 column that becomes "label" */
    const char *time_column;  /* ISO-8601 or epoch seconds; becomes "timestamp" */
    const char *key_column;   /* id column that becomes "key"; default: "line N" */
    /* Called for each skipped input (skip_errors = 1): `where` names the file (and line). */
    void (*on_skip)(void *user, const char *where, const char *reason);
    /* Called now and then from the calling thread. */
    void (*on_progress)(void *user, uint64_t items_done, uint64_t items_total, uint64_t bytes_done);
    void *user;
    /* 1: rewrite each baseline (non-progressive) JPEG losslessly (same DCT coefficients) with a
     * restart marker after every MCU row, so the loader can start entropy decoding at a crop's
     * first row instead of the image's top. Progressive JPEGs, JPEGs that already have restart
     * markers, and PNGs are stored unchanged; a JPEG that cannot be transcoded is a bad input.
     * Samples then decode to exactly the same pixels. Default 0. */
    int restart_markers;
    /* More fields may be added; always call sp_pack_opts_init first. */
} sp_pack_opts;

SP_API void sp_pack_opts_init(sp_pack_opts *opts);

typedef struct sp_pack_report {
    uint64_t samples;
    uint64_t skipped;
    uint64_t payload_bytes;
    uint64_t shards;
    uint64_t classes; /* ImageFolder: number of classes */
    sp_pack_format format;
} sp_pack_report;

/* Packs `src` into a new dataset folder `out` (which must not exist).
 * Returns SP_EBADINPUT naming the file (and line) when the input is bad and skip_errors is 0. */
SP_API sp_status sp_pack(const char *src, const char *out, const sp_pack_opts *opts,
                         sp_pack_report *report /* OUT, may be NULL */);

/* "auto", "imagefolder", "csv", "jsonl". */
SP_API const char *sp_pack_format_name(sp_pack_format f);

/* ---- NumPy .npy arrays
 *
 * A .npy file (numpy.save) is the magic "\x93NUMPY", a format version, a header length (u16 for
 * 1.0, u32 for 2.0 and 3.0), a header dict such as {'descr': '<f8', 'fortran_order': False,
 * 'shape': (3, 4), } and then the raw elements. softpipe maps the file and views the elements
 * in place as an sp_array (core.h). */

/* An open .npy file: a read-only mapping and the array view over it. */
typedef struct sp_npy sp_npy;

/* Opens the .npy file at `path` (format version 1.0, 2.0 or 3.0), maps it read-only (mmap,
 * PROT_READ, MAP_PRIVATE) and checks the header and that the data fits in the file.
 * Supported dtypes, in little-endian or native byte order ('<', '=', '|' or none): bool '|b1',
 * int8/16/32/64 '|i1' '<i2' '<i4' '<i8', uint8/16/32/64 '|u1' '<u2' '<u4' '<u8', float32 '<f4'
 * and float64 '<f8'. Shapes have 0 to SP_ARRAY_MAX_DIMS dimensions ('()' is a scalar), any of
 * which may be 0 (an empty array). Fortran-order (column-major) files are read as they are: the
 * view's strides say the order. Bytes after the data are ignored. The data is not copied, unless
 * the header leaves it misaligned for its dtype (NumPy never does; other writers might).
 * The file must not be truncated while it is open.
 * On success *out owns the file: release it with sp_npy_close(). On failure *out is NULL and
 * sp_errmsg() starts with `path`, and gives the byte offset where the header is at fault:
 *   SP_EINVAL        path or out is NULL, or path is not a regular file;
 *   SP_ENOTFOUND     no such file; SP_EIO: open or mmap failed (the message has strerror);
 *   SP_EBADINPUT     not a .npy file (bad magic) or a malformed header dict: syntax, unknown,
 *                    missing or repeated keys, a negative or non-integer dimension;
 *   SP_EUNSUPPORTED  another format version, a big-endian, object, string, structured, complex,
 *                    float16 or other dtype (the message names the descr and lists the supported
 *                    ones), or more than SP_ARRAY_MAX_DIMS dimensions;
 *   SP_ECORRUPT      the file ends inside the header, or holds less data than the shape needs
 *                    ("<path>: data is N bytes, the header promises M ...");
 *   SP_ENOMEM        out of memory.
 * Thread-safe. */
SP_API sp_status sp_npy_open(const char *path, sp_npy **out /* OUT */);

/* The array view of an open file: dtype, ndim, shape (elements) and strides (bytes, C order or,
 * for a Fortran-order file, column-major). Borrowed: the view and the data it points to live until
 * sp_npy_close(npy). The data is read-only. NULL when npy is NULL. */
SP_API const sp_array *sp_npy_array(const sp_npy *npy);

/* Unmaps the file and frees the object; views from sp_npy_array() die with it. NULL is a no-op. */
SP_API void sp_npy_close(sp_npy *npy);

/* ---- Tables: read-only access to a CSV or JSONL file's columns
 *
 * The same parser as sp_pack() (RFC 4180 CSV with a header row, or one JSON object per line),
 * with every column's type inferred: int64 when every value is an integer, else float64 when every
 * value is a number, else string. Empty CSV fields and JSON nulls are null. Column names are
 * sanitized to [A-Za-z0-9_] (other characters become '_', a leading digit gets a '_' in front). */

/* A table held in memory. */
typedef struct sp_table sp_table;

/* Reads the whole file at `path` into memory: JSONL when the name ends in .jsonl or .ndjson (any
 * case), CSV otherwise. On success *out owns the table: release it with sp_table_close(). On
 * failure *out is NULL and the status is SP_EINVAL (a NULL argument, or path is a folder),
 * SP_ENOTFOUND, SP_EIO, SP_ENOMEM, or SP_EBADINPUT with sp_errmsg() naming "path:line:col" and
 * what is wrong there. Thread-safe. */
SP_API sp_status sp_table_read(const char *path, sp_table **out /* OUT */);

/* Data rows (the CSV header row is not one). 0 when t is NULL. */
SP_API uint64_t sp_table_n_rows(const sp_table *t);

/* Columns, in file order (CSV) or first-seen key order (JSONL). 0 when t is NULL. */
SP_API size_t sp_table_n_columns(const sp_table *t);

/* The sanitized name of column `col` (0-based). Borrowed: lives until sp_table_close(t). NULL when
 * t is NULL or col is out of range. */
SP_API const char *sp_table_column_name(const sp_table *t, size_t col);

/* Index of the column named `name`, or -1 when there is none (or t or name is NULL). `name` may
 * be the sanitized name or the name as the file spells it ("pred score" finds "pred_score"). */
SP_API int sp_table_column_index(const sp_table *t, const char *name);

/* Copies column `col` as float64 into dst[0, n_rows): int64 values are converted (exact up to
 * 2^53), float64 values are copied as parsed, null values become NaN. `cap` is the number of
 * doubles dst holds; dst may be NULL when the table has no rows. Returns SP_EINVAL when t is NULL,
 * col is out of range or cap < n_rows, and SP_EBADINPUT for a string column, with sp_errmsg()
 * naming "path:line", the column and the first value that is not a number (a column whose values
 * are all null is not a string column here: it gives all NaN). dst is unspecified on failure. */
SP_API sp_status sp_table_column_f64(const sp_table *t, size_t col, double *dst, uint64_t cap);

/* The type of column `col`: SP_TYPE_INT64, SP_TYPE_FLOAT64 or SP_TYPE_STRING (shard.h); 0 when t
 * is NULL or col is out of range. */
SP_API int sp_table_column_type(const sp_table *t, size_t col);

/* The value of column `col` in row `row` (null: out->is_null). Strings point into the table and
 * live until sp_table_close. SP_EINVAL for a row or column out of range. Thread-safe. */
SP_API sp_status sp_table_value(const sp_table *t, uint64_t row, size_t col,
                                sp_value *out /* OUT */);

/* The 1-based line of the file on which row `row` (0-based) starts, for messages. 0 when t is NULL
 * or row is out of range. */
SP_API uint64_t sp_table_line(const sp_table *t, uint64_t row);

/* Frees the table; names borrowed from it die with it. NULL is a no-op. */
SP_API void sp_table_close(sp_table *t);

#ifdef __cplusplus
}
#endif
#endif
