/* softpipe/shard.h — the softpipe dataset: a folder of checksummed, indexed shards.
 *
 * A dataset is a folder holding manifest.json and shard-NNNNN.sps files; the byte layout is in
 * docs/format.md. Every sample has a payload (opaque bytes, e.g. a JPEG) and one value per column.
 * Columns 0..3 are always present, in this order:
 *   0 "key"    string  the sample's name (the path relative to the source, the id, or the line)
 *   1 "label"  int64   class index (null when the source has no labels)
 *   2 "width"  int32   image width from the file header (null when there is no image)
 *   3 "height" int32   image height
 * followed by optional "timestamp" (int64, seconds since the epoch) and user columns.
 *
 * Writing: sp_dataset_writer_* appends samples in order and commits the folder atomically: shards
 * and manifest are written under a temporary name, fsync'ed and renamed; the folder is renamed
 * last. Reading: sp_dataset_open maps every shard, checks its footer, hash and every offset once,
 * and then gives zero-copy access to sample i in O(1).
 */
#ifndef SOFTPIPE_SHARD_H
#define SOFTPIPE_SHARD_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_SHARD_FORMAT_VERSION 1

typedef enum sp_type {
    SP_TYPE_INT32 = 1,
    SP_TYPE_INT64 = 2,
    SP_TYPE_FLOAT64 = 3,
    SP_TYPE_STRING = 4
} sp_type;

/* The fixed columns every dataset has. */
enum { SP_COL_KEY = 0, SP_COL_LABEL = 1, SP_COL_WIDTH = 2, SP_COL_HEIGHT = 3, SP_N_FIXED_COLS = 4 };

#define SP_MAX_COLUMNS 256
#define SP_MAX_NAME    64

/* "int32", "int64", "float64", "string"; "?" for anything else. */
SP_API const char *sp_type_name(sp_type type);

/* One cell. For strings, `s`/`len` point into the dataset's mapping (reader) or the caller's
 * memory (writer) and are not NUL-terminated. */
typedef struct sp_value {
    int is_null;
    union {
        int64_t i; /* SP_TYPE_INT32 and SP_TYPE_INT64 */
        double f;  /* SP_TYPE_FLOAT64 */
        struct {
            const char *s;
            uint32_t len;
        } str; /* SP_TYPE_STRING */
    } v;
} sp_value;

typedef struct sp_column {
    char name[SP_MAX_NAME]; /* NUL-terminated, [A-Za-z_][A-Za-z0-9_]* */
    sp_type type;
} sp_column;

/* ---------------------------------------------------------------- writing */

typedef struct sp_writer_opts {
    uint64_t shard_size;     /* upper bound of a shard file in bytes; 0 = 256 MiB */
    uint64_t block_size;     /* payload block size in bytes; 0 = 4 MiB */
    const char *params_json; /* a JSON object stored as "pack" in the manifest; NULL = {} */
    /* More fields may be added; always call sp_writer_opts_init first. */
} sp_writer_opts;

SP_API void sp_writer_opts_init(sp_writer_opts *opts);

typedef struct sp_dataset_writer sp_dataset_writer;

/* Starts a dataset that will appear at `path` when committed. `path` must not exist.
 * `columns` lists the columns after the four fixed ones (may be NULL when n_extra is 0); it is
 * copied. On failure *out is NULL. */
SP_API sp_status sp_dataset_writer_open(const char *path, const sp_column *extra_columns,
                                        size_t n_extra, const sp_writer_opts *opts,
                                        sp_dataset_writer **out /* OUT */);

/* Appends one sample: `payload` of `len` bytes (may be 0) and `values`, one per column
 * (4 fixed + n_extra), in column order. The values are copied. */
SP_API sp_status sp_dataset_writer_add(sp_dataset_writer *w, const void *payload, size_t len,
                                       const sp_value *values);

/* Finishes the last shard, writes manifest.json and renames the folder into place.
 * After this call (success or not) only sp_dataset_writer_close() may be called. */
SP_API sp_status sp_dataset_writer_commit(sp_dataset_writer *w);

/* Frees the writer. If not committed, removes everything it wrote; nothing appears at `path`.
 * NULL is a no-op. */
SP_API void sp_dataset_writer_close(sp_dataset_writer *w);

/* Samples and payload bytes added so far. */
SP_API uint64_t sp_dataset_writer_count(const sp_dataset_writer *w);
SP_API uint64_t sp_dataset_writer_bytes(const sp_dataset_writer *w);
/* Shard files started so far (after commit: the dataset's shard count). */
SP_API uint64_t sp_dataset_writer_shards(const sp_dataset_writer *w);

/* ---------------------------------------------------------------- reading */

typedef struct sp_dataset sp_dataset;

/* Opens the dataset folder `path` (or a path to its manifest.json): reads the manifest, maps every
 * shard and validates each footer, metadata hash and index bound. Payload bytes are not read.
 * On failure *out is NULL and sp_errmsg() names the file and what is wrong. */
SP_API sp_status sp_dataset_open(const char *path, sp_dataset **out /* OUT */);

/* Unmaps and frees. NULL is a no-op. */
SP_API void sp_dataset_close(sp_dataset *ds);

SP_API uint64_t sp_dataset_len(const sp_dataset *ds);
SP_API uint64_t sp_dataset_payload_bytes(const sp_dataset *ds);
SP_API size_t sp_dataset_n_columns(const sp_dataset *ds);
SP_API size_t sp_dataset_n_shards(const sp_dataset *ds);

/* Column `i`'s description; NULL when out of range. Borrowed until sp_dataset_close(). */
SP_API const sp_column *sp_dataset_column(const sp_dataset *ds, size_t i);

/* Index of the column called `name`, or -1. */
SP_API int sp_dataset_column_index(const sp_dataset *ds, const char *name);

/* The manifest text (JSON). Borrowed until sp_dataset_close(). */
SP_API const char *sp_dataset_manifest(const sp_dataset *ds);

typedef struct sp_sample {
    const uint8_t *data; /* payload inside the read-only mapping; valid until sp_dataset_close() */
    size_t size;
    uint32_t crc32c; /* stored checksum of the payload */
    uint32_t shard;  /* which shard holds it */
    uint64_t index_in_shard;
} sp_sample;

/* Sample i (0 <= i < len): zero-copy view of its payload. O(log n_shards). Thread-safe. */
SP_API sp_status sp_dataset_sample(const sp_dataset *ds, uint64_t i, sp_sample *out /* OUT */);

/* Copies sample i's payload into dst (capacity `cap` bytes) with pread, without touching the
 * mapping, so the caller's resident memory does not grow with the dataset; *len is the payload
 * size (also when SP_EINVAL says the buffer is too small). Thread-safe. */
SP_API sp_status sp_dataset_read(const sp_dataset *ds, uint64_t i, void *dst, size_t cap,
                                 size_t *len /* OUT */);

/* Value of column `col` for sample i. Strings point into the mapping. Thread-safe. */
SP_API sp_status sp_dataset_value(const sp_dataset *ds, uint64_t i, size_t col,
                                  sp_value *out /* OUT */);

/* Copies the whole scalar column `col` (int32, int64 or float64) into dst, which holds `cap`
 * elements of the column's type (int32 columns are written as int32). Nulls are written as 0 (or
 * NaN for float64) and, when `nulls` is not NULL, flagged 1 in nulls[i]. Thread-safe. */
SP_API sp_status sp_dataset_read_column(const sp_dataset *ds, size_t col, void *dst, uint64_t cap,
                                        uint8_t *nulls /* OUT, may be NULL */);

/* Per-column statistics over the whole dataset, merged from the block statistics. */
typedef struct sp_column_stats {
    uint64_t null_count;
    uint64_t count;       /* non-null values */
    int has_minmax;       /* 0 for strings and all-null columns */
    double min_f, max_f;  /* float64 */
    int64_t min_i, max_i; /* int32/int64 */
} sp_column_stats;

SP_API sp_status sp_dataset_column_stats(const sp_dataset *ds, size_t col,
                                         sp_column_stats *out /* OUT */);

/* Shard i's file name (relative to the dataset folder), sample count and size in bytes. */
typedef struct sp_shard_info {
    const char *file; /* borrowed until sp_dataset_close() */
    uint64_t n_samples;
    uint64_t n_blocks;
    uint64_t file_bytes;
    uint64_t first_sample; /* global index of its first sample */
} sp_shard_info;

SP_API sp_status sp_dataset_shard_info(const sp_dataset *ds, size_t shard,
                                       sp_shard_info *out /* OUT */);

/* Payload blocks, numbered globally across shards (shard 0's blocks first). */
typedef struct sp_block_info {
    uint32_t shard;
    uint64_t first_sample; /* global index of its first sample */
    uint64_t n_samples;
    uint64_t offset, bytes; /* inside the shard file */
} sp_block_info;

SP_API uint64_t sp_dataset_n_blocks(const sp_dataset *ds);
SP_API sp_status sp_dataset_block(const sp_dataset *ds, uint64_t block,
                                  sp_block_info *out /* OUT */);
/* Statistics of column `col` within one block (what filter pushdown reads). */
SP_API sp_status sp_dataset_block_stats(const sp_dataset *ds, uint64_t block, size_t col,
                                        sp_column_stats *out /* OUT */);

/* ---------------------------------------------------------------- verifying */

typedef struct sp_verify_opts {
    int deep;    /* also decode every image payload (JPEG/PNG) */
    int threads; /* 0 = number of online CPUs */
    /* Called once per problem found, from the calling thread, in shard order. May be NULL. */
    void (*on_issue)(void *user, const char *shard_file, int64_t sample /* -1 = whole shard */,
                     const char *key /* may be NULL */, const char *message);
    void *user;
    /* Called now and then with bytes checked so far; may be NULL. */
    void (*on_progress)(void *user, uint64_t bytes_done, uint64_t bytes_total);
} sp_verify_opts;

SP_API void sp_verify_opts_init(sp_verify_opts *opts);

typedef struct sp_verify_report {
    uint64_t shards, shards_bad;
    uint64_t samples, samples_bad;
    uint64_t bytes; /* bytes read and checked */
    uint64_t issues;
} sp_verify_report;

/* Checks the manifest, every shard's sha256 against it, every footer and metadata hash, every
 * index entry's bounds and every payload's crc32c (and with `deep`, decodes every image).
 * Returns SP_OK when clean, SP_ECORRUPT when any problem was found (each one reported through
 * opts->on_issue), or another error when it could not check at all (missing folder, I/O). */
SP_API sp_status sp_dataset_verify(const char *path, const sp_verify_opts *opts,
                                   sp_verify_report *report /* OUT, may be NULL */);

#ifdef __cplusplus
}
#endif
#endif
