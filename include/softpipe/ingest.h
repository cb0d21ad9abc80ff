/* softpipe/ingest.h — packing outside data into a softpipe dataset.
 *
 * sp_pack() reads an ImageFolder tree (SRC/<class>/... with .jpg, .jpeg or .png files), a CSV file
 * or a JSONL file and writes a dataset folder (see shard.h). Output is byte-identical for any
 * thread count, and the dataset appears only when complete.
 */
#ifndef SOFTPIPE_INGEST_H
#define SOFTPIPE_INGEST_H

#include "core.h"

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

#ifdef __cplusplus
}
#endif
#endif
