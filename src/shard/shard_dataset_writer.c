/* shard_dataset_writer.c — writes a dataset folder: shards of bounded size plus manifest.json.
 * Everything goes into a hidden temporary folder beside the target; commit fsyncs it and renames it
 * into place with RENAME_NOREPLACE, so a dataset is either complete or absent. */
#define _GNU_SOURCE
#include "shard_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_SHARD_SIZE (256ull << 20)
#define DEFAULT_BLOCK_SIZE (4ull << 20)

typedef struct shard_rec {
    char file[32];
    uint64_t samples, bytes;
    char sha256[65];
} shard_rec;

struct sp_dataset_writer {
    char *path, *tmp_dir;
    sp_column cols[SP_MAX_COLUMNS];
    uint32_t n_cols;
    uint64_t shard_size, block_size;
    json_t *params;
    sp__shard_writer *cur;
    shard_rec *shards;
    size_t n_shards, cap_shards;
    uint64_t count, bytes;
    int done; /* committed or failed at commit */
};

void sp_writer_opts_init(sp_writer_opts *opts) {
    memset(opts, 0, sizeof *opts);
}

static int valid_col_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= SP_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9')))
            return 0;
    }
    return 1;
}

/* Removes ".<base>.tmp-<pid>" folders left by packs that were killed (their pid is gone). */
static void remove_stale_tmp(const char *path, int dlen, const char *base) {
    char parent[4096], prefix[512];
    snprintf(parent, sizeof parent, "%.*s", dlen ? dlen : 1, dlen ? path : ".");
    int np = snprintf(prefix, sizeof prefix, ".%s.tmp-", base);
    DIR *d = opendir(parent);
    if (!d || np <= 0 || (size_t)np >= sizeof prefix) {
        if (d) closedir(d);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)np) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + np, &end, 10);
        if (*end || pid <= 0) continue;
        if (pid != getpid() && !(kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue;
        char *p = sp__path_join(parent, e->d_name);
        if (p) sp__remove_tree(p);
        sp__free(p);
    }
    closedir(d);
}

sp_status sp_dataset_writer_open(const char *path, const sp_column *extra, size_t n_extra,
                                 const sp_writer_opts *opts, sp_dataset_writer **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_dataset_writer_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return sp__fail(SP_EINVAL, "sp_dataset_writer_open: path is empty");
    if (n_extra + SP_N_FIXED_COLS > SP_MAX_COLUMNS)
        return sp__fail(SP_EINVAL, "%zu columns: at most %d are supported", n_extra + 4,
                        SP_MAX_COLUMNS);
    sp_writer_opts def;
    sp_writer_opts_init(&def);
    if (!opts) opts = &def;
    struct stat st;
    if (stat(path, &st) == 0)
        return sp__fail(SP_EEXIST, "%s: already exists (remove it or choose another output)", path);

    sp_dataset_writer *w = sp__calloc(1, sizeof *w);
    if (!w) return sp__fail(SP_ENOMEM, "out of memory");
    static const sp_column fixed[SP_N_FIXED_COLS] = {{"key", SP_TYPE_STRING},
                                                     {"label", SP_TYPE_INT64},
                                                     {"width", SP_TYPE_INT32},
                                                     {"height", SP_TYPE_INT32}};
    memcpy(w->cols, fixed, sizeof fixed);
    for (size_t i = 0; i < n_extra; i++) {
        if (!valid_col_name(extra[i].name)) {
            sp__free(w);
            return sp__fail(SP_EINVAL,
                            "column name \"%.*s\" is invalid: use [A-Za-z_][A-Za-z0-9_]*",
                            SP_MAX_NAME, extra[i].name);
        }
        if (extra[i].type < SP_TYPE_INT32 || extra[i].type > SP_TYPE_STRING) {
            sp__free(w);
            return sp__fail(SP_EINVAL, "column \"%s\": unknown type %d", extra[i].name,
                            (int)extra[i].type);
        }
        for (size_t j = 0; j < SP_N_FIXED_COLS + i; j++)
            if (!strcmp(w->cols[j].name, extra[i].name)) {
                sp__free(w);
                return sp__fail(SP_EINVAL, "column \"%s\" appears twice", extra[i].name);
            }
        w->cols[SP_N_FIXED_COLS + i] = extra[i];
    }
    w->n_cols = (uint32_t)(SP_N_FIXED_COLS + n_extra);
    w->shard_size = opts->shard_size ? opts->shard_size : DEFAULT_SHARD_SIZE;
    w->block_size = opts->block_size ? opts->block_size : DEFAULT_BLOCK_SIZE;
    if (w->block_size < 4096 || w->shard_size < 2 * SP__PAYLOAD_ALIGN) {
        sp__free(w);
        return sp__fail(SP_EINVAL, "block size must be at least 4096 bytes and shard size at least "
                                   "8192 bytes");
    }
    json_error_t jerr;
    w->params = opts->params_json ? json_loads(opts->params_json, 0, &jerr) : json_object();
    if (!w->params || !json_is_object(w->params)) {
        json_decref(w->params);
        sp__free(w);
        return sp__fail(SP_EINVAL, "params_json is not a JSON object");
    }
    w->path = sp__strdup(path);
    /* the temporary folder: ".<name>.tmp-<pid>" beside the target */
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    size_t n = dlen + strlen(base) + 64;
    w->tmp_dir = sp__malloc(n);
    if (!w->path || !w->tmp_dir) {
        sp_dataset_writer_close(w);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    snprintf(w->tmp_dir, n, "%.*s.%s.tmp-%d", (int)dlen, path, base, (int)getpid());
    remove_stale_tmp(dlen ? path : ".", (int)dlen, base);
    if (mkdir(w->tmp_dir, 0755) != 0) {
        sp_status rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", w->tmp_dir);
        sp__free(w->tmp_dir);
        w->tmp_dir = NULL;
        sp_dataset_writer_close(w);
        return rc;
    }
    *out = w;
    return SP_OK;
}

static sp_status finish_shard(sp_dataset_writer *w) {
    if (!w->cur) return SP_OK;
    shard_rec *r = &w->shards[w->n_shards - 1];
    r->samples = sp__shard_writer_count(w->cur);
    sp_status rc = sp__shard_writer_finish(w->cur, &r->bytes, r->sha256);
    sp__shard_writer_free(w->cur);
    w->cur = NULL;
    return rc;
}

static sp_status start_shard(sp_dataset_writer *w) {
    if (w->n_shards == w->cap_shards) {
        size_t cap = w->cap_shards ? w->cap_shards * 2 : 16;
        shard_rec *s = sp__realloc(w->shards, cap * sizeof *s);
        if (!s) return sp__fail(SP_ENOMEM, "out of memory");
        w->shards = s;
        w->cap_shards = cap;
    }
    shard_rec *r = &w->shards[w->n_shards];
    memset(r, 0, sizeof *r);
    snprintf(r->file, sizeof r->file, "shard-%05zu.sps", w->n_shards);
    char *p = sp__path_join(w->tmp_dir, r->file);
    if (!p) return sp__fail(SP_ENOMEM, "out of memory");
    sp_status rc = sp__shard_writer_open(p, w->cols, w->n_cols, w->block_size, &w->cur);
    sp__free(p);
    if (rc == SP_OK) w->n_shards++;
    return rc;
}

sp_status sp_dataset_writer_add(sp_dataset_writer *w, const void *payload, size_t len,
                                const sp_value *values) {
    if (!w || w->done) return sp__fail(SP_EINVAL, "sp_dataset_writer_add: writer is closed");
    if (!values) return sp__fail(SP_EINVAL, "sp_dataset_writer_add: values is NULL");
    if (len && !payload) return sp__fail(SP_EINVAL, "sp_dataset_writer_add: payload is NULL");
    size_t str_bytes = 0;
    for (uint32_t c = 0; c < w->n_cols; c++)
        if (w->cols[c].type == SP_TYPE_STRING && !values[c].is_null)
            str_bytes += values[c].v.str.len;
    if (w->cur && sp__shard_writer_count(w->cur) > 0 &&
        sp__shard_writer_size_with(w->cur, len, str_bytes) > w->shard_size)
        SP_TRY(finish_shard(w));
    if (!w->cur) SP_TRY(start_shard(w));
    SP_TRY(sp__shard_writer_add(w->cur, payload, len, values));
    w->count++;
    w->bytes += len;
    return SP_OK;
}

uint64_t sp_dataset_writer_count(const sp_dataset_writer *w) {
    return w ? w->count : 0;
}

uint64_t sp_dataset_writer_shards(const sp_dataset_writer *w) {
    return w ? (uint64_t)w->n_shards : 0;
}

uint64_t sp_dataset_writer_bytes(const sp_dataset_writer *w) {
    return w ? w->bytes : 0;
}

static char *manifest_text(sp_dataset_writer *w) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("softpipe-dataset"));
    json_object_set_new(root, "version", json_integer(SP_SHARD_FORMAT_VERSION));
    json_object_set_new(root, "samples", json_integer((json_int_t)w->count));
    json_object_set_new(root, "payload_bytes", json_integer((json_int_t)w->bytes));
    json_t *cols = json_array();
    for (uint32_t c = 0; c < w->n_cols; c++)
        json_array_append_new(cols, json_pack("{s:s,s:s}", "name", w->cols[c].name, "type",
                                              sp_type_name(w->cols[c].type)));
    json_object_set_new(root, "columns", cols);
    json_t *shards = json_array();
    for (size_t i = 0; i < w->n_shards; i++) {
        const shard_rec *r = &w->shards[i];
        json_array_append_new(shards, json_pack("{s:s,s:I,s:I,s:s}", "file", r->file, "samples",
                                                (json_int_t)r->samples, "bytes",
                                                (json_int_t)r->bytes, "sha256", r->sha256));
    }
    json_object_set_new(root, "shards", shards);
    json_t *pack = json_object();
    json_object_set_new(pack, "block_size", json_integer((json_int_t)w->block_size));
    json_object_set_new(pack, "shard_size", json_integer((json_int_t)w->shard_size));
    json_object_update(pack, w->params);
    json_object_set_new(root, "pack", pack);
    json_object_set_new(root, "softpipe_version", json_string(sp_version()));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

sp_status sp_dataset_writer_commit(sp_dataset_writer *w) {
    if (!w || w->done) return sp__fail(SP_EINVAL, "sp_dataset_writer_commit: writer is closed");
    w->done = 1;
    SP_TRY(finish_shard(w));
    char *text = manifest_text(w);
    if (!text) return sp__fail(SP_ENOMEM, "out of memory writing the manifest");
    char *mpath = sp__path_join(w->tmp_dir, "manifest.json");
    sp_status rc = mpath ? SP_OK : sp__fail(SP_ENOMEM, "out of memory");
    if (rc == SP_OK) {
        size_t tl = strlen(text);
        text[tl] = '\n'; /* json_dumps' NUL becomes a final newline */
        rc = sp__file_commit(mpath, text, tl + 1);
    }
    free(text);
    sp__free(mpath);
    SP_TRY(rc);
    SP_TRY(sp__fsync_dir(w->tmp_dir));
    if (renameat2(AT_FDCWD, w->tmp_dir, AT_FDCWD, w->path, RENAME_NOREPLACE) != 0)
        return sp__fail_errno(errno == EEXIST ? SP_EEXIST : SP_EIO, errno,
                              "%s: cannot move the finished dataset into place", w->path);
    sp__free(w->tmp_dir);
    w->tmp_dir = NULL; /* committed: nothing to clean up */
    const char *slash = strrchr(w->path, '/');
    char *parent = slash ? sp__strndup(w->path, slash == w->path ? 1 : (size_t)(slash - w->path))
                         : sp__strdup(".");
    rc = parent ? sp__fsync_dir(parent) : SP_OK;
    sp__free(parent);
    return rc;
}

void sp_dataset_writer_close(sp_dataset_writer *w) {
    if (!w) return;
    sp__shard_writer_free(w->cur);
    if (w->tmp_dir) sp__remove_tree(w->tmp_dir);
    json_decref(w->params);
    sp__free(w->tmp_dir);
    sp__free(w->path);
    sp__free(w->shards);
    sp__free(w);
}
