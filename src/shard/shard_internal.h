/* shard_internal.h — private to src/shard: the byte layout of a .sps shard (docs/format.md) and
 * the parsed, validated view of one shard that the reader and verify share. */
#ifndef SP_SHARD_INTERNAL_H
#define SP_SHARD_INTERNAL_H

#include "core_internal.h"
#include "softpipe/shard.h"

#define SP__SHARD_MAGIC   "SPSHARD\0" /* 8 bytes at offset 0 */
#define SP__FOOTER_MAGIC  "SPSFOOT\0" /* 8 bytes at the start of the footer */
#define SP__HEADER_SIZE   64
#define SP__FOOTER_SIZE   128
#define SP__PAYLOAD_ALIGN 4096 /* payload starts here; every block starts on a multiple */
#define SP__BLOCK_ENTRY   32   /* offset, bytes, first_sample, n_samples (u64 each) */
#define SP__INDEX_ENTRY   16   /* offset u64, length u32, crc32c u32 */
#define SP__STATS_ENTRY   24   /* min, max (int64 or float64 bits), null_count u64 */

static inline uint64_t sp__align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

/* Bytes one value of a column takes in the shard's column arrays. */
static inline unsigned sp__type_width(sp_type t) {
    return t == SP_TYPE_INT32 ? 4u : 8u;
}

/* A validated shard: all pointers lie inside [map, map + size); every index entry and string
 * reference has been bounds-checked, so accessors below need no further checks. */
typedef struct sp__shard {
    const uint8_t *map;
    uint64_t size;
    uint64_t n_samples, n_blocks;
    uint32_t n_columns;
    uint64_t meta_off;
    const uint8_t *blocks;  /* n_blocks * SP__BLOCK_ENTRY */
    const uint8_t *index;   /* n_samples * SP__INDEX_ENTRY */
    const uint8_t *strings; /* strings_len bytes */
    uint64_t strings_len;
    const uint8_t *stats; /* n_blocks * n_columns * SP__STATS_ENTRY */
    const uint8_t *values[SP_MAX_COLUMNS];
    const uint8_t *nulls[SP_MAX_COLUMNS]; /* bitmap: bit i set = sample i is null */
    sp_column columns[SP_MAX_COLUMNS];
} sp__shard;

/* Parses and validates the shard bytes [map, map+size). `name` starts every error message.
 * Checks magic, version, footer hash, section bounds, metadata hash, schema, block table, every
 * index entry and string reference. Never reads payload bytes. */
sp_status sp__shard_parse(const char *name, const uint8_t *map, uint64_t size, sp__shard *out);

static inline void sp__shard_entry(const sp__shard *s, uint64_t i, uint64_t *off, uint32_t *len,
                                   uint32_t *crc) {
    const uint8_t *e = s->index + i * SP__INDEX_ENTRY;
    *off = sp__get_u64(e);
    *len = sp__get_u32(e + 8);
    *crc = sp__get_u32(e + 12);
}

void sp__shard_value(const sp__shard *s, uint64_t i, uint32_t col, sp_value *out);

/* Streaming shard writer (one shard file), used by the dataset writer. */
typedef struct sp__shard_writer sp__shard_writer;
sp_status sp__shard_writer_open(const char *path, const sp_column *cols, uint32_t n_cols,
                                uint64_t block_size, sp__shard_writer **out);
/* Bytes the shard would have if one more sample of `len` payload bytes and `str_bytes` string
 * bytes were added and the shard then finished. */
uint64_t sp__shard_writer_size_with(const sp__shard_writer *w, size_t len, size_t str_bytes);
uint64_t sp__shard_writer_count(const sp__shard_writer *w);
sp_status sp__shard_writer_add(sp__shard_writer *w, const void *payload, size_t len,
                               const sp_value *values);
/* Writes metadata and footer, fsyncs, closes; returns file size and sha256 (hex). */
sp_status sp__shard_writer_finish(sp__shard_writer *w, uint64_t *file_bytes, char sha256[65]);
void sp__shard_writer_free(sp__shard_writer *w);

/* Maps a whole file read-only (MAP_POPULATE when `populate`). size 0 gives map NULL. */
sp_status sp__map_file(const char *path, int populate, const uint8_t **map, uint64_t *size);
void sp__unmap(const uint8_t *map, uint64_t size);

#endif
