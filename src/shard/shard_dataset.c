/* shard_dataset.c — opens a dataset folder: parses manifest.json, maps each shard read-only and
 * validates it (sp__shard_parse), then serves samples and column values straight from the maps. */
#include "shard_internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct ds_shard {
    char *file;
    char *path;
    uint64_t first;
    uint64_t first_block;
    sp__shard s;
    int fd; /* for sp_dataset_read: opened on first use, -1 until then */
} ds_shard;

struct sp_dataset {
    char *dir;
    char *manifest;
    uint64_t n, payload_bytes, n_blocks;
    size_t n_cols;
    sp_column cols[SP_MAX_COLUMNS];
    size_t n_shards;
    ds_shard *shards;
};

static sp_type type_from_name(const char *s) {
    if (!strcmp(s, "int32")) return SP_TYPE_INT32;
    if (!strcmp(s, "int64")) return SP_TYPE_INT64;
    if (!strcmp(s, "float64")) return SP_TYPE_FLOAT64;
    if (!strcmp(s, "string")) return SP_TYPE_STRING;
    return (sp_type)0;
}

/* Reads manifest.json into ds (schema, shard list). Does not touch shards. */
static sp_status parse_manifest(sp_dataset *ds, const char *mpath) {
    json_error_t err;
    json_t *root = json_loads(ds->manifest, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return sp__fail(SP_ECORRUPT, "%s:%d:%d: invalid JSON: %s", mpath, err.line, err.column,
                        err.text);
    sp_status rc = SP_OK;
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *ver = json_object_get(root, "version");
    json_t *cols = json_object_get(root, "columns");
    json_t *shards = json_object_get(root, "shards");
    if (!fmt || strcmp(fmt, "softpipe-dataset")) {
        rc = sp__fail(SP_ECORRUPT, "%s: \"format\" is not \"softpipe-dataset\"", mpath);
        goto done;
    }
    if (!json_is_integer(ver) || json_integer_value(ver) != SP_SHARD_FORMAT_VERSION) {
        rc = sp__fail(SP_EUNSUPPORTED, "%s: dataset version %lld, this softpipe reads version %d",
                      mpath, json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL,
                      SP_SHARD_FORMAT_VERSION);
        goto done;
    }
    if (!json_is_array(cols) || json_array_size(cols) < SP_N_FIXED_COLS ||
        json_array_size(cols) > SP_MAX_COLUMNS || !json_is_array(shards)) {
        rc = sp__fail(SP_ECORRUPT, "%s: \"columns\" or \"shards\" missing or malformed", mpath);
        goto done;
    }
    ds->n_cols = json_array_size(cols);
    for (size_t c = 0; c < ds->n_cols; c++) {
        json_t *col = json_array_get(cols, c);
        const char *name = json_string_value(json_object_get(col, "name"));
        const char *type = json_string_value(json_object_get(col, "type"));
        if (!name || !type || strlen(name) >= SP_MAX_NAME || !type_from_name(type)) {
            rc = sp__fail(SP_ECORRUPT, "%s: columns[%zu]: bad name or type", mpath, c);
            goto done;
        }
        snprintf(ds->cols[c].name, SP_MAX_NAME, "%s", name);
        ds->cols[c].type = type_from_name(type);
    }
    ds->n_shards = json_array_size(shards);
    ds->shards = sp__calloc(ds->n_shards ? ds->n_shards : 1, sizeof *ds->shards);
    if (!ds->shards) {
        rc = sp__fail(SP_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ds->n_shards; i++) {
        json_t *sh = json_array_get(shards, i);
        const char *file = json_string_value(json_object_get(sh, "file"));
        if (!file || !*file || strchr(file, '/') || !strcmp(file, "..")) {
            rc = sp__fail(SP_ECORRUPT, "%s: shards[%zu]: bad \"file\"", mpath, i);
            goto done;
        }
        ds->shards[i].fd = -1;
        ds->shards[i].file = sp__strdup(file);
        ds->shards[i].path = sp__path_join(ds->dir, file);
        if (!ds->shards[i].file || !ds->shards[i].path) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            goto done;
        }
    }
done:
    json_decref(root);
    return rc;
}

sp_status sp_dataset_open(const char *path, sp_dataset **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_dataset_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return sp__fail(SP_EINVAL, "sp_dataset_open: path is empty");
    sp_dataset *ds = sp__calloc(1, sizeof *ds);
    if (!ds) return sp__fail(SP_ENOMEM, "out of memory");
    size_t pl = strlen(path);
    if (pl >= 14 && !strcmp(path + pl - 14, "/manifest.json"))
        ds->dir = sp__strndup(path, pl - 14);
    else
        ds->dir = sp__strdup(path);
    char *mpath = ds->dir ? sp__path_join(ds->dir, "manifest.json") : NULL;
    sp_status rc = mpath ? SP_OK : sp__fail(SP_ENOMEM, "out of memory");
    size_t mlen = 0;
    if (rc == SP_OK) {
        struct stat st;
        if (stat(ds->dir, &st) != 0)
            rc = sp__fail(SP_ENOTFOUND, "%s: no such dataset folder", ds->dir);
        else if (!S_ISDIR(st.st_mode))
            rc = sp__fail(SP_EINVAL, "%s: not a dataset folder", ds->dir);
    }
    if (rc == SP_OK) {
        rc = sp__read_file(mpath, (uint8_t **)&ds->manifest, &mlen);
        if (rc == SP_ENOTFOUND)
            rc = sp__fail(SP_ENOTFOUND,
                          "%s: no manifest.json: not a softpipe dataset, or its pack did not "
                          "finish",
                          ds->dir);
    }
    if (rc == SP_OK) rc = parse_manifest(ds, mpath);
    for (size_t i = 0; rc == SP_OK && i < ds->n_shards; i++) {
        ds_shard *sh = &ds->shards[i];
        const uint8_t *map;
        uint64_t size;
        rc = sp__map_file(sh->path, 0, &map, &size);
        if (rc < 0) break;
        rc = sp__shard_parse(sh->path, map, size, &sh->s);
        if (rc < 0) {
            sp__unmap(map, size);
            break;
        }
        if (sh->s.n_columns != ds->n_cols) {
            rc = sp__fail(SP_ECORRUPT, "%s: %u columns, manifest says %zu", sh->path,
                          sh->s.n_columns, ds->n_cols);
            break;
        }
        for (size_t c = 0; c < ds->n_cols; c++)
            if (strcmp(sh->s.columns[c].name, ds->cols[c].name) ||
                sh->s.columns[c].type != ds->cols[c].type) {
                rc = sp__fail(SP_ECORRUPT,
                              "%s: column %zu is \"%s\" (%s), manifest says \"%s\" (%s)", sh->path,
                              c, sh->s.columns[c].name, sp_type_name(sh->s.columns[c].type),
                              ds->cols[c].name, sp_type_name(ds->cols[c].type));
                break;
            }
        sh->first = ds->n;
        ds->n += sh->s.n_samples;
        sh->first_block = ds->n_blocks;
        ds->n_blocks += sh->s.n_blocks;
        for (uint64_t k = 0; k < sh->s.n_blocks; k++)
            ds->payload_bytes += sp__get_u64(sh->s.blocks + k * SP__BLOCK_ENTRY + 8);
    }
    sp__free(mpath);
    if (rc < 0) {
        sp_dataset_close(ds);
        return rc;
    }
    *out = ds;
    return SP_OK;
}

void sp_dataset_close(sp_dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n_shards; i++) {
        if (ds->shards[i].fd >= 0) close(ds->shards[i].fd);
        sp__unmap(ds->shards[i].s.map, ds->shards[i].s.size);
        sp__free(ds->shards[i].file);
        sp__free(ds->shards[i].path);
    }
    sp__free(ds->shards);
    sp__free(ds->manifest);
    sp__free(ds->dir);
    sp__free(ds);
}

uint64_t sp_dataset_len(const sp_dataset *ds) {
    return ds ? ds->n : 0;
}
uint64_t sp_dataset_payload_bytes(const sp_dataset *ds) {
    return ds ? ds->payload_bytes : 0;
}
size_t sp_dataset_n_columns(const sp_dataset *ds) {
    return ds ? ds->n_cols : 0;
}
size_t sp_dataset_n_shards(const sp_dataset *ds) {
    return ds ? ds->n_shards : 0;
}
const char *sp_dataset_manifest(const sp_dataset *ds) {
    return ds ? ds->manifest : NULL;
}

const sp_column *sp_dataset_column(const sp_dataset *ds, size_t i) {
    return ds && i < ds->n_cols ? &ds->cols[i] : NULL;
}

int sp_dataset_column_index(const sp_dataset *ds, const char *name) {
    if (!ds || !name) return -1;
    for (size_t c = 0; c < ds->n_cols; c++)
        if (!strcmp(ds->cols[c].name, name)) return (int)c;
    return -1;
}

/* The shard holding global sample i (binary search over first-sample offsets). */
static const ds_shard *find_shard(const sp_dataset *ds, uint64_t i) {
    size_t lo = 0, hi = ds->n_shards;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ds->shards[mid].first <= i)
            lo = mid;
        else
            hi = mid;
    }
    return &ds->shards[lo];
}

sp_status sp_dataset_sample(const sp_dataset *ds, uint64_t i, sp_sample *out) {
    if (!ds || !out) return sp__fail(SP_EINVAL, "sp_dataset_sample: NULL argument");
    if (i >= ds->n)
        return sp__fail(SP_EINVAL, "sample %" PRIu64 " out of range: the dataset has %" PRIu64, i,
                        ds->n);
    const ds_shard *sh = find_shard(ds, i);
    uint64_t j = i - sh->first, off;
    uint32_t len, crc;
    sp__shard_entry(&sh->s, j, &off, &len, &crc);
    out->data = sh->s.map + off;
    out->size = len;
    out->crc32c = crc;
    out->shard = (uint32_t)(sh - ds->shards);
    out->index_in_shard = j;
    return SP_OK;
}

sp_status sp_dataset_read(const sp_dataset *ds, uint64_t i, void *dst, size_t cap, size_t *len) {
    if (!ds || !len || (!dst && cap)) return sp__fail(SP_EINVAL, "sp_dataset_read: NULL argument");
    sp_sample s;
    SP_TRY(sp_dataset_sample(ds, i, &s));
    *len = s.size;
    if (s.size > cap)
        return sp__fail(SP_EINVAL, "sample %" PRIu64 " has %zu bytes, the buffer holds %zu", i,
                        s.size, cap);
    ds_shard *sh = &((sp_dataset *)ds)->shards[s.shard];
    int fd = __atomic_load_n(&sh->fd, __ATOMIC_ACQUIRE);
    if (fd < 0) {
        int nfd = open(sh->path, O_RDONLY | O_CLOEXEC);
        if (nfd >= 0) {
            int expected = -1;
            if (__atomic_compare_exchange_n(&sh->fd, &expected, nfd, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                fd = nfd;
            else {
                close(nfd); /* another thread won */
                fd = expected;
            }
        }
    }
    uint64_t off = (uint64_t)(s.data - sh->s.map);
    if (fd < 0 || sp__pread_all(fd, dst, s.size, off, sh->path) < 0)
        memcpy(dst, s.data, s.size); /* out of descriptors, or a short read: use the mapping */
    return SP_OK;
}

sp_status sp_dataset_value(const sp_dataset *ds, uint64_t i, size_t col, sp_value *out) {
    if (!ds || !out) return sp__fail(SP_EINVAL, "sp_dataset_value: NULL argument");
    if (i >= ds->n)
        return sp__fail(SP_EINVAL, "sample %" PRIu64 " out of range: the dataset has %" PRIu64, i,
                        ds->n);
    if (col >= ds->n_cols)
        return sp__fail(SP_EINVAL, "column %zu out of range: the dataset has %zu", col, ds->n_cols);
    const ds_shard *sh = find_shard(ds, i);
    sp__shard_value(&sh->s, i - sh->first, (uint32_t)col, out);
    return SP_OK;
}

sp_status sp_dataset_read_column(const sp_dataset *ds, size_t col, void *dst, uint64_t cap,
                                 uint8_t *nulls) {
    if (!ds || (!dst && ds->n)) return sp__fail(SP_EINVAL, "sp_dataset_read_column: NULL argument");
    if (col >= ds->n_cols)
        return sp__fail(SP_EINVAL, "column %zu out of range: the dataset has %zu", col, ds->n_cols);
    sp_type t = ds->cols[col].type;
    if (t == SP_TYPE_STRING)
        return sp__fail(SP_EINVAL, "column \"%s\" is a string column, not scalar",
                        ds->cols[col].name);
    if (cap < ds->n)
        return sp__fail(SP_EINVAL, "destination holds %" PRIu64 " values, the column has %" PRIu64,
                        cap, ds->n);
    unsigned w = sp__type_width(t);
    uint8_t *d = dst;
    for (size_t k = 0; k < ds->n_shards; k++) {
        const sp__shard *s = &ds->shards[k].s;
        uint64_t base = ds->shards[k].first;
        memcpy(d + base * w, s->values[col], s->n_samples * w);
        for (uint64_t i = 0; i < s->n_samples; i++) {
            int isnull = (s->nulls[col][i >> 3] >> (i & 7)) & 1;
            if (nulls) nulls[base + i] = (uint8_t)isnull;
            if (isnull) {
                if (t == SP_TYPE_FLOAT64) {
                    double nan = NAN;
                    memcpy(d + (base + i) * 8, &nan, 8);
                } else {
                    memset(d + (base + i) * w, 0, w);
                }
            }
        }
    }
    return SP_OK;
}

static void stats_begin(sp_column_stats *out) {
    memset(out, 0, sizeof *out);
    out->min_i = INT64_MAX;
    out->max_i = INT64_MIN;
    out->min_f = INFINITY;
    out->max_f = -INFINITY;
}

/* Merges block b of shard s, column col, into out. */
static void stats_add_block(const sp__shard *s, uint64_t b, size_t col, sp_column_stats *out) {
    sp_type t = s->columns[col].type;
    const uint8_t *e = s->stats + (b * s->n_columns + col) * SP__STATS_ENTRY;
    uint64_t bn = sp__get_u64(s->blocks + b * SP__BLOCK_ENTRY + 24);
    uint64_t nn = sp__get_u64(e + 16);
    out->null_count += nn;
    out->count += bn >= nn ? bn - nn : 0;
    if (t == SP_TYPE_FLOAT64) {
        double lo, hi;
        uint64_t a = sp__get_u64(e), c = sp__get_u64(e + 8);
        memcpy(&lo, &a, 8);
        memcpy(&hi, &c, 8);
        if (lo < out->min_f) out->min_f = lo;
        if (hi > out->max_f) out->max_f = hi;
    } else if (t != SP_TYPE_STRING) {
        int64_t lo = (int64_t)sp__get_u64(e), hi = (int64_t)sp__get_u64(e + 8);
        if (lo < out->min_i) out->min_i = lo;
        if (hi > out->max_i) out->max_i = hi;
    }
}

static void stats_end(sp_type t, sp_column_stats *out) {
    if (t == SP_TYPE_FLOAT64)
        out->has_minmax = out->min_f <= out->max_f;
    else if (t != SP_TYPE_STRING)
        out->has_minmax = out->min_i <= out->max_i;
}

sp_status sp_dataset_column_stats(const sp_dataset *ds, size_t col, sp_column_stats *out) {
    if (!ds || !out) return sp__fail(SP_EINVAL, "sp_dataset_column_stats: NULL argument");
    if (col >= ds->n_cols)
        return sp__fail(SP_EINVAL, "column %zu out of range: the dataset has %zu", col, ds->n_cols);
    stats_begin(out);
    for (size_t k = 0; k < ds->n_shards; k++)
        for (uint64_t b = 0; b < ds->shards[k].s.n_blocks; b++)
            stats_add_block(&ds->shards[k].s, b, col, out);
    stats_end(ds->cols[col].type, out);
    return SP_OK;
}

uint64_t sp_dataset_n_blocks(const sp_dataset *ds) {
    return ds ? ds->n_blocks : 0;
}

/* The shard holding global block b. */
static const ds_shard *find_block_shard(const sp_dataset *ds, uint64_t b) {
    size_t lo = 0, hi = ds->n_shards;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ds->shards[mid].first_block <= b)
            lo = mid;
        else
            hi = mid;
    }
    return &ds->shards[lo];
}

sp_status sp_dataset_block(const sp_dataset *ds, uint64_t block, sp_block_info *out) {
    if (!ds || !out) return sp__fail(SP_EINVAL, "sp_dataset_block: NULL argument");
    if (block >= ds->n_blocks)
        return sp__fail(SP_EINVAL, "block %" PRIu64 " out of range: the dataset has %" PRIu64,
                        block, ds->n_blocks);
    const ds_shard *sh = find_block_shard(ds, block);
    const uint8_t *e = sh->s.blocks + (block - sh->first_block) * SP__BLOCK_ENTRY;
    out->shard = (uint32_t)(sh - ds->shards);
    out->offset = sp__get_u64(e);
    out->bytes = sp__get_u64(e + 8);
    out->first_sample = sh->first + sp__get_u64(e + 16);
    out->n_samples = sp__get_u64(e + 24);
    return SP_OK;
}

sp_status sp_dataset_block_stats(const sp_dataset *ds, uint64_t block, size_t col,
                                 sp_column_stats *out) {
    if (!ds || !out) return sp__fail(SP_EINVAL, "sp_dataset_block_stats: NULL argument");
    if (block >= ds->n_blocks || col >= ds->n_cols)
        return sp__fail(SP_EINVAL, "block %" PRIu64 " / column %zu out of range", block, col);
    const ds_shard *sh = find_block_shard(ds, block);
    stats_begin(out);
    stats_add_block(&sh->s, block - sh->first_block, col, out);
    stats_end(ds->cols[col].type, out);
    return SP_OK;
}

sp_status sp_dataset_shard_info(const sp_dataset *ds, size_t shard, sp_shard_info *out) {
    if (!ds || !out) return sp__fail(SP_EINVAL, "sp_dataset_shard_info: NULL argument");
    if (shard >= ds->n_shards)
        return sp__fail(SP_EINVAL, "shard %zu out of range: the dataset has %zu", shard,
                        ds->n_shards);
    const ds_shard *sh = &ds->shards[shard];
    out->file = sh->file;
    out->n_samples = sh->s.n_samples;
    out->n_blocks = sh->s.n_blocks;
    out->file_bytes = sh->s.size;
    out->first_sample = sh->first;
    return SP_OK;
}
