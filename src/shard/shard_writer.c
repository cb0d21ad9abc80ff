/* shard_writer.c — writes one .sps shard as a stream: payload blocks first, then the metadata
 * sections and the footer (docs/format.md). The file is written under "<path>.tmp", hashed with
 * SHA-256 as it is written, fsync'ed and renamed to <path> by sp__shard_writer_finish.
 *
 * Bytes are staged in two 4 MiB buffers. While the caller fills one, an I/O thread hashes the
 * other (SHA-256 is the costliest step of pack), writes it, and starts its writeback with
 * sync_file_range, so the final fsync finds little left to do. Buffers alternate strictly, so the
 * file's bytes stay in order. */
#define _GNU_SOURCE
#include "shard_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define STAGE_BYTES     (1u << 20)
#define WRITEBACK_BYTES (8u << 20)

typedef struct col_stats {
    int64_t min_i, max_i;
    double min_f, max_f;
    uint64_t nulls;
} col_stats;

struct sp__shard_writer {
    char *path, *tmp_path;
    int fd;
    sp_column cols[SP_MAX_COLUMNS];
    uint32_t n_cols;
    uint64_t block_size;
    uint64_t file_off;        /* logical bytes written, staged included */
    uint64_t written, synced; /* bytes handed to write(), and to sync_file_range() */
    sp__buf stage;            /* the buffer being filled: bufs[cur] */
    sp__buf bufs[2];
    int stage_idx, pending[2], io_next, io_stop, io_started;
    sp_status io_rc;
    char io_err[SP_ERRMSG_MAX];
    pthread_t io;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp__sha256 sha;
    int block_open;
    uint64_t blk_off, blk_first, blk_bytes;
    uint64_t n, n_blocks;
    sp__buf blocks, index, strings, stats;
    sp__buf vals[SP_MAX_COLUMNS], nulls[SP_MAX_COLUMNS];
    col_stats cur[SP_MAX_COLUMNS];
    uint64_t schema_bytes;
};

/* Hashes, writes and starts writeback of one staged buffer. On the I/O thread. */
static sp_status io_write(sp__shard_writer *w, const sp__buf *b) {
    sp__sha256_update(&w->sha, b->data, b->len);
    SP_TRY(sp__write_all(w->fd, b->data, b->len, w->tmp_path));
    w->written += b->len;
    if (w->written - w->synced >= WRITEBACK_BYTES) {
        sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->written - w->synced),
                        SYNC_FILE_RANGE_WRITE);
        w->synced = w->written;
    }
    return SP_OK;
}

static void *io_main(void *arg) {
    sp__shard_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        int k = w->io_next;
        while (!w->pending[k] && !w->io_stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->pending[k]) break; /* stopped with nothing left */
        pthread_mutex_unlock(&w->mu);
        sp_status rc = w->io_rc < 0 ? w->io_rc : io_write(w, &w->bufs[k]);
        pthread_mutex_lock(&w->mu);
        if (rc < 0 && w->io_rc == SP_OK) {
            w->io_rc = rc;
            snprintf(w->io_err, sizeof w->io_err, "%s", sp_errmsg());
        }
        w->bufs[k].len = 0;
        w->pending[k] = 0;
        w->io_next = 1 - k;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Hands the filled stage to the I/O thread and continues in the other buffer. */
static sp_status flush_stage(sp__shard_writer *w) {
    if (w->stage.len == 0) return SP_OK;
    pthread_mutex_lock(&w->mu);
    w->bufs[w->stage_idx] = w->stage;
    w->pending[w->stage_idx] = 1;
    w->stage_idx = 1 - w->stage_idx;
    pthread_cond_broadcast(&w->cv);
    while (w->pending[w->stage_idx])
        pthread_cond_wait(&w->cv, &w->mu);
    w->stage = w->bufs[w->stage_idx];
    w->stage.len = 0;
    sp_status rc = w->io_rc;
    pthread_mutex_unlock(&w->mu);
    if (rc < 0) return sp__fail(rc, "%s", w->io_err);
    return SP_OK;
}

/* Waits until everything staged so far is written. */
static sp_status drain(sp__shard_writer *w) {
    SP_TRY(flush_stage(w));
    pthread_mutex_lock(&w->mu);
    while (w->pending[0] || w->pending[1])
        pthread_cond_wait(&w->cv, &w->mu);
    sp_status rc = w->io_rc;
    pthread_mutex_unlock(&w->mu);
    if (rc < 0) return sp__fail(rc, "%s", w->io_err);
    return SP_OK;
}

static void stop_io(sp__shard_writer *w) {
    if (!w->io_started) return;
    pthread_mutex_lock(&w->mu);
    w->io_stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->io, NULL);
    w->io_started = 0;
}

static sp_status emit(sp__shard_writer *w, const void *p, size_t n) {
    SP_TRY(sp__buf_append(&w->stage, p, n));
    w->file_off += n;
    if (w->stage.len >= STAGE_BYTES) SP_TRY(flush_stage(w));
    return SP_OK;
}

static sp_status emit_zeros(sp__shard_writer *w, size_t n) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        SP_TRY(emit(w, zeros, k));
        n -= k;
    }
    return SP_OK;
}

static void stats_reset(sp__shard_writer *w) {
    for (uint32_t c = 0; c < w->n_cols; c++) {
        w->cur[c].min_i = INT64_MAX;
        w->cur[c].max_i = INT64_MIN;
        w->cur[c].min_f = INFINITY;
        w->cur[c].max_f = -INFINITY;
        w->cur[c].nulls = 0;
    }
}

sp_status sp__shard_writer_open(const char *path, const sp_column *cols, uint32_t n_cols,
                                uint64_t block_size, sp__shard_writer **out) {
    *out = NULL;
    sp__shard_writer *w = sp__calloc(1, sizeof *w);
    if (!w) return sp__fail(SP_ENOMEM, "out of memory");
    w->fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->path = sp__strdup(path);
    size_t n = strlen(path) + 5;
    w->tmp_path = sp__malloc(n);
    if (!w->path || !w->tmp_path) {
        sp__shard_writer_free(w);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    snprintf(w->tmp_path, n, "%s.tmp", path);
    memcpy(w->cols, cols, n_cols * sizeof *cols);
    w->n_cols = n_cols;
    w->block_size = block_size;
    w->schema_bytes = 8;
    for (uint32_t c = 0; c < n_cols; c++)
        w->schema_bytes += sp__align_up(8 + strlen(cols[c].name), 8);
    stats_reset(w);
    sp_status rc = sp__sha256_init(&w->sha);
    if (rc < 0) {
        sp__shard_writer_free(w);
        return rc;
    }
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create", w->tmp_path);
        sp__shard_writer_free(w);
        return rc;
    }
    if (pthread_create(&w->io, NULL, io_main, w) != 0) {
        sp__shard_writer_free(w);
        return sp__fail(SP_EIO, "%s: cannot start the I/O thread", path);
    }
    w->io_started = 1;
    uint8_t hdr[SP__HEADER_SIZE] = {0};
    memcpy(hdr, SP__SHARD_MAGIC, 8);
    sp__put_u32(hdr + 8, SP_SHARD_FORMAT_VERSION);
    sp__put_u32(hdr + 12, SP__HEADER_SIZE);
    sp__put_u64(hdr + 16, SP__PAYLOAD_ALIGN);
    if ((rc = emit(w, hdr, sizeof hdr)) < 0 ||
        (rc = emit_zeros(w, SP__PAYLOAD_ALIGN - SP__HEADER_SIZE)) < 0) {
        sp__shard_writer_free(w);
        return rc;
    }
    *out = w;
    return SP_OK;
}

uint64_t sp__shard_writer_count(const sp__shard_writer *w) {
    return w->n;
}

static uint64_t meta_bytes(const sp__shard_writer *w, uint64_t n, uint64_t n_blocks,
                           uint64_t str_len) {
    uint64_t m = w->schema_bytes + n_blocks * SP__BLOCK_ENTRY + n * SP__INDEX_ENTRY;
    for (uint32_t c = 0; c < w->n_cols; c++)
        m += sp__align_up(n * sp__type_width(w->cols[c].type), 8) + sp__align_up((n + 7) / 8, 8);
    m += sp__align_up(str_len, 8) + n_blocks * w->n_cols * SP__STATS_ENTRY;
    return m + SP__FOOTER_SIZE;
}

uint64_t sp__shard_writer_size_with(const sp__shard_writer *w, size_t len, size_t str_bytes) {
    uint64_t off = w->file_off, blocks = w->n_blocks + (w->block_open ? 1 : 0);
    if (!w->block_open || (w->blk_bytes > 0 && w->blk_bytes + len > w->block_size)) {
        off = sp__align_up(off, SP__PAYLOAD_ALIGN);
        blocks++;
    }
    off = sp__align_up(off + len, SP__PAYLOAD_ALIGN);
    return off + meta_bytes(w, w->n + 1, blocks, w->strings.len + str_bytes);
}

static sp_status close_block(sp__shard_writer *w) {
    if (!w->block_open) return SP_OK;
    uint8_t e[SP__BLOCK_ENTRY];
    sp__put_u64(e, w->blk_off);
    sp__put_u64(e + 8, w->blk_bytes);
    sp__put_u64(e + 16, w->blk_first);
    sp__put_u64(e + 24, w->n - w->blk_first);
    SP_TRY(sp__buf_append(&w->blocks, e, sizeof e));
    for (uint32_t c = 0; c < w->n_cols; c++) {
        uint8_t st[SP__STATS_ENTRY];
        const col_stats *cs = &w->cur[c];
        if (w->cols[c].type == SP_TYPE_FLOAT64) {
            uint64_t a, b;
            memcpy(&a, &cs->min_f, 8);
            memcpy(&b, &cs->max_f, 8);
            sp__put_u64(st, a);
            sp__put_u64(st + 8, b);
        } else if (w->cols[c].type == SP_TYPE_STRING) {
            sp__put_u64(st, (uint64_t)INT64_MAX);
            sp__put_u64(st + 8, (uint64_t)INT64_MIN);
        } else {
            sp__put_u64(st, (uint64_t)cs->min_i);
            sp__put_u64(st + 8, (uint64_t)cs->max_i);
        }
        sp__put_u64(st + 16, cs->nulls);
        SP_TRY(sp__buf_append(&w->stats, st, sizeof st));
    }
    stats_reset(w);
    w->n_blocks++;
    w->block_open = 0;
    uint64_t pad = sp__align_up(w->file_off, SP__PAYLOAD_ALIGN) - w->file_off;
    return emit_zeros(w, (size_t)pad);
}

sp_status sp__shard_writer_add(sp__shard_writer *w, const void *payload, size_t len,
                               const sp_value *values) {
    if (len > UINT32_MAX)
        return sp__fail(SP_EINVAL, "%s: a payload of %zu bytes exceeds the 4 GiB limit", w->path,
                        len);
    if (w->block_open && w->blk_bytes > 0 && w->blk_bytes + len > w->block_size)
        SP_TRY(close_block(w));
    if (!w->block_open) {
        w->block_open = 1;
        w->blk_off = w->file_off;
        w->blk_first = w->n;
        w->blk_bytes = 0;
    }
    uint8_t e[SP__INDEX_ENTRY];
    sp__put_u64(e, w->file_off);
    sp__put_u32(e + 8, (uint32_t)len);
    sp__put_u32(e + 12, sp_crc32c(0, payload, len));
    SP_TRY(sp__buf_append(&w->index, e, sizeof e));
    SP_TRY(emit(w, payload, len));
    w->blk_bytes += len;

    uint64_t i = w->n;
    for (uint32_t c = 0; c < w->n_cols; c++) {
        const sp_value *v = &values[c];
        sp__buf *nb = &w->nulls[c];
        if ((i & 7) == 0) SP_TRY(sp__buf_append(nb, "\0", 1));
        uint8_t cell[8] = {0};
        unsigned width = sp__type_width(w->cols[c].type);
        col_stats *cs = &w->cur[c];
        if (v->is_null || (w->cols[c].type == SP_TYPE_FLOAT64 && isnan(v->v.f))) {
            nb->data[i >> 3] |= (uint8_t)(1u << (i & 7));
            cs->nulls++;
            if (w->cols[c].type == SP_TYPE_STRING) {
                sp__put_u32(cell, (uint32_t)w->strings.len); /* empty ref, in range */
            } else if (w->cols[c].type == SP_TYPE_FLOAT64 && !v->is_null) {
                memcpy(cell, &v->v.f, 8); /* keep the NaN bits; flagged null */
            }
        } else {
            switch (w->cols[c].type) {
            case SP_TYPE_INT32:
                if (v->v.i < INT32_MIN || v->v.i > INT32_MAX)
                    return sp__fail(SP_EINVAL, "column \"%s\": value %lld does not fit int32",
                                    w->cols[c].name, (long long)v->v.i);
                sp__put_u32(cell, (uint32_t)(int32_t)v->v.i);
                break;
            case SP_TYPE_INT64:
                sp__put_u64(cell, (uint64_t)v->v.i);
                break;
            case SP_TYPE_FLOAT64:
                memcpy(cell, &v->v.f, 8);
                break;
            case SP_TYPE_STRING:
                if (w->strings.len + v->v.str.len > UINT32_MAX)
                    return sp__fail(SP_EINVAL,
                                    "%s: string heap exceeds 4 GiB; use a smaller "
                                    "--shard-size",
                                    w->path);
                sp__put_u32(cell, (uint32_t)w->strings.len);
                sp__put_u32(cell + 4, v->v.str.len);
                SP_TRY(sp__buf_append(&w->strings, v->v.str.s, v->v.str.len));
                break;
            }
            if (w->cols[c].type == SP_TYPE_FLOAT64) {
                if (v->v.f < cs->min_f) cs->min_f = v->v.f;
                if (v->v.f > cs->max_f) cs->max_f = v->v.f;
            } else if (w->cols[c].type != SP_TYPE_STRING) {
                if (v->v.i < cs->min_i) cs->min_i = v->v.i;
                if (v->v.i > cs->max_i) cs->max_i = v->v.i;
            }
        }
        SP_TRY(sp__buf_append(&w->vals[c], cell, width));
    }
    w->n++;
    return SP_OK;
}

static sp_status meta_pad8(sp__buf *m) {
    static const uint8_t zeros[8];
    return sp__buf_append(m, zeros, (size_t)(sp__align_up(m->len, 8) - m->len));
}

sp_status sp__shard_writer_finish(sp__shard_writer *w, uint64_t *file_bytes, char sha256[65]) {
    SP_TRY(close_block(w));
    uint64_t meta_off = w->file_off; /* block-aligned, so 8-aligned */
    sp__buf m = {0};
    sp_status rc = SP_OK;
    uint64_t schema_off, blocks_off, index_off, columns_off, strings_off, stats_off;
#define M(expr)                                                                                    \
    do {                                                                                           \
        if ((rc = (expr)) < 0) goto fail;                                                          \
    } while (0)
    schema_off = meta_off + m.len;
    uint8_t u[8] = {0};
    sp__put_u32(u, w->n_cols);
    M(sp__buf_append(&m, u, 8));
    for (uint32_t c = 0; c < w->n_cols; c++) {
        uint8_t h[8];
        size_t nl = strlen(w->cols[c].name);
        sp__put_u32(h, (uint32_t)w->cols[c].type);
        sp__put_u32(h + 4, (uint32_t)nl);
        M(sp__buf_append(&m, h, 8));
        M(sp__buf_append(&m, w->cols[c].name, nl));
        M(meta_pad8(&m));
    }
    blocks_off = meta_off + m.len;
    M(sp__buf_append(&m, w->blocks.data, w->blocks.len));
    index_off = meta_off + m.len;
    M(sp__buf_append(&m, w->index.data, w->index.len));
    columns_off = meta_off + m.len;
    for (uint32_t c = 0; c < w->n_cols; c++) {
        M(sp__buf_append(&m, w->vals[c].data, w->vals[c].len));
        M(meta_pad8(&m));
        M(sp__buf_append(&m, w->nulls[c].data, w->nulls[c].len));
        M(meta_pad8(&m));
    }
    strings_off = meta_off + m.len;
    M(sp__buf_append(&m, w->strings.data, w->strings.len));
    M(meta_pad8(&m));
    stats_off = meta_off + m.len;
    M(sp__buf_append(&m, w->stats.data, w->stats.len));

    uint8_t f[SP__FOOTER_SIZE] = {0};
    memcpy(f, SP__FOOTER_MAGIC, 8);
    sp__put_u32(f + 8, SP_SHARD_FORMAT_VERSION);
    sp__put_u32(f + 12, SP__FOOTER_SIZE);
    sp__put_u64(f + 16, w->n);
    sp__put_u64(f + 24, w->n_blocks);
    sp__put_u32(f + 32, w->n_cols);
    sp__put_u64(f + 40, meta_off);
    sp__put_u64(f + 48, schema_off);
    sp__put_u64(f + 56, blocks_off);
    sp__put_u64(f + 64, index_off);
    sp__put_u64(f + 72, columns_off);
    sp__put_u64(f + 80, strings_off);
    sp__put_u64(f + 88, w->strings.len);
    sp__put_u64(f + 96, stats_off);
    sp__put_u64(f + 104, 0); /* reserved */
    sp__put_u64(f + 112, sp__xxh3(m.data, m.len));
    sp__put_u64(f + 120, sp__xxh3(f, 120));
    M(emit(w, m.data, m.len));
    M(emit(w, f, sizeof f));
    M(drain(w));
#undef M
    stop_io(w);
    sp__buf_free(&m);
    if (fsync(w->fd) != 0) return sp__fail_errno(SP_EIO, errno, "%s: fsync failed", w->tmp_path);
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) return sp__fail_errno(SP_EIO, errno, "%s: close failed", w->tmp_path);
    if (rename(w->tmp_path, w->path) != 0)
        return sp__fail_errno(SP_EIO, errno, "%s: cannot rename to %s", w->tmp_path, w->path);
    *file_bytes = w->file_off;
    sp__sha256_final(&w->sha, sha256);
    return SP_OK;
fail:
    sp__buf_free(&m);
    return rc;
}

void sp__shard_writer_free(sp__shard_writer *w) {
    if (!w) return;
    stop_io(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    sp__buf_free(&w->bufs[1 - w->stage_idx]); /* bufs[cur] aliases stage, freed below */
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp_path);
    }
    sp__sha256_free(&w->sha);
    sp__buf_free(&w->stage);
    sp__buf_free(&w->blocks);
    sp__buf_free(&w->index);
    sp__buf_free(&w->strings);
    sp__buf_free(&w->stats);
    for (uint32_t c = 0; c < w->n_cols; c++) {
        sp__buf_free(&w->vals[c]);
        sp__buf_free(&w->nulls[c]);
    }
    sp__free(w->path);
    sp__free(w->tmp_path);
    sp__free(w);
}
