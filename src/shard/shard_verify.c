/* shard_verify.c — full integrity check of a dataset folder. Each shard is checked by one worker:
 * SHA-256 of the whole file against the manifest, footer + metadata (sp__shard_parse), and the
 * CRC-32C of every payload, walked block by block so each block is hashed and checked while it is
 * still in cache. Problems are reported from the calling thread, in shard order. */
#include "shard_internal.h"
#include "softpipe/image.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define HASH_AHEAD (256u << 10)

typedef struct issue {
    int64_t sample;
    char *key;
    char *msg;
} issue;

typedef struct shard_job {
    char file[256];
    char *path;
    uint64_t m_samples, m_bytes;
    char m_sha[65];
    /* results */
    issue *issues;
    size_t n_issues, cap_issues;
    uint64_t samples, samples_bad, bytes;
    int bad, done;
} shard_job;

typedef struct verify_ctx {
    const sp_verify_opts *opts;
    shard_job *jobs;
    size_t n_jobs;
    atomic_size_t next;
    _Atomic uint64_t bytes_done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} verify_ctx;

static void add_issue(shard_job *j, int64_t sample, const char *key, uint32_t key_len,
                      const char *fmt, ...) SP__PRINTF(5, 6);
static void add_issue(shard_job *j, int64_t sample, const char *key, uint32_t key_len,
                      const char *fmt, ...) {
    if (j->n_issues == j->cap_issues) {
        size_t cap = j->cap_issues ? j->cap_issues * 2 : 8;
        issue *n = sp__realloc(j->issues, cap * sizeof *n);
        if (!n) return;
        j->issues = n;
        j->cap_issues = cap;
    }
    char buf[SP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    issue *is = &j->issues[j->n_issues++];
    is->sample = sample;
    is->key = key ? sp__strndup(key, key_len) : NULL;
    is->msg = sp__strdup(buf);
}

static void check_shard(verify_ctx *ctx, shard_job *j) {
    const uint8_t *map;
    uint64_t size;
    sp_status rc = sp__map_file(j->path, 1, &map, &size);
    if (rc < 0) {
        add_issue(j, -1, NULL, 0, "%s", sp_errmsg());
        j->bad = 1;
        return;
    }
    if (size != j->m_bytes)
        add_issue(j, -1, NULL, 0, "%s: %" PRIu64 " bytes, manifest says %" PRIu64, j->file, size,
                  j->m_bytes),
            j->bad = 1;
    sp__sha256 sha;
    if (sp__sha256_init(&sha) < 0) {
        add_issue(j, -1, NULL, 0, "%s", sp_errmsg());
        j->bad = 1;
        sp__unmap(map, size);
        return;
    }
    sp__shard s;
    rc = sp__shard_parse(j->file, map, size, &s);
    uint64_t hashed = 0;
    if (rc < 0) {
        add_issue(j, -1, NULL, 0, "%s", sp_errmsg());
        j->bad = 1;
    } else {
        if (s.n_samples != j->m_samples)
            add_issue(j, -1, NULL, 0, "%s: %" PRIu64 " samples, manifest says %" PRIu64, j->file,
                      s.n_samples, j->m_samples),
                j->bad = 1;
        j->samples = s.n_samples;
        for (uint64_t b = 0; b < s.n_blocks; b++) {
            const uint8_t *be = s.blocks + b * SP__BLOCK_ENTRY;
            uint64_t boff = sp__get_u64(be), bbytes = sp__get_u64(be + 8);
            uint64_t first = sp__get_u64(be + 16), cnt = sp__get_u64(be + 24);
            uint64_t end = boff + bbytes, before = hashed;
            for (uint64_t i = first; i < first + cnt; i++) {
                uint64_t off;
                uint32_t len, crc;
                sp__shard_entry(&s, i, &off, &len, &crc);
                /* Hash a little ahead, then check the CRCs of the samples just hashed while
                 * their bytes are still in L2: one trip through memory instead of two. */
                if (off + len > hashed) {
                    uint64_t to = off + len;
                    if (to < hashed + HASH_AHEAD)
                        to = hashed + HASH_AHEAD < end ? hashed + HASH_AHEAD : end;
                    sp__sha256_update(&sha, map + hashed, to - hashed);
                    hashed = to;
                }
                uint32_t got = sp_crc32c(0, map + off, len);
                int bad_crc = got != crc;
                if (!bad_crc && !(ctx->opts->deep && len > 0)) continue;
                sp_value key;
                sp__shard_value(&s, i, SP_COL_KEY, &key);
                if (bad_crc) {
                    add_issue(j, (int64_t)i, key.v.str.s, key.v.str.len,
                              "%s: record %" PRIu64 " (\"%.*s\", offset 0x%" PRIx64
                              "): CRC32C mismatch (stored %08x, computed %08x)",
                              j->file, i, (int)key.v.str.len, key.v.str.s, off, crc, got);
                    j->samples_bad++;
                    j->bad = 1;
                } else if (sp_image_check_decode("", map + off, len) < 0) {
                    /* the message starts with ": " since the name given was empty */
                    add_issue(j, (int64_t)i, key.v.str.s, key.v.str.len,
                              "%s: record %" PRIu64 " (\"%.*s\")%s", j->file, i, (int)key.v.str.len,
                              key.v.str.s, sp_errmsg());
                    j->samples_bad++;
                    j->bad = 1;
                }
            }
            if (end > hashed) {
                sp__sha256_update(&sha, map + hashed, end - hashed);
                hashed = end;
            }
            atomic_fetch_add(&ctx->bytes_done, end - before);
        }
    }
    sp__sha256_update(&sha, map + hashed, size - hashed);
    char hex[65];
    sp__sha256_final(&sha, hex);
    if (strcmp(hex, j->m_sha))
        add_issue(j, -1, NULL, 0, "%s: sha256 mismatch (manifest %.12s..., file %.12s...)", j->file,
                  j->m_sha, hex),
            j->bad = 1;
    j->bytes = size;
    sp__unmap(map, size);
}

static void *worker(void *arg) {
    verify_ctx *ctx = arg;
    for (;;) {
        size_t k = atomic_fetch_add(&ctx->next, 1);
        if (k >= ctx->n_jobs) break;
        check_shard(ctx, &ctx->jobs[k]);
        pthread_mutex_lock(&ctx->mu);
        ctx->jobs[k].done = 1;
        pthread_cond_broadcast(&ctx->cv);
        pthread_mutex_unlock(&ctx->mu);
    }
    return NULL;
}

void sp_verify_opts_init(sp_verify_opts *opts) {
    memset(opts, 0, sizeof *opts);
}

static sp_status load_jobs(const char *dir, verify_ctx *ctx, uint64_t *total_bytes,
                           uint64_t *m_total) {
    char *mpath = sp__path_join(dir, "manifest.json");
    if (!mpath) return sp__fail(SP_ENOMEM, "out of memory");
    uint8_t *text;
    size_t len;
    sp_status rc = sp__read_file(mpath, &text, &len);
    if (rc < 0) {
        sp__free(mpath);
        return rc == SP_ENOTFOUND ? sp__fail(SP_ENOTFOUND,
                                             "%s: no manifest.json: not a softpipe "
                                             "dataset, or its pack did not finish",
                                             dir)
                                  : rc;
    }
    json_error_t err;
    json_t *root = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &err);
    sp__free(text);
    if (!root) {
        rc = sp__fail(SP_ECORRUPT, "%s:%d:%d: invalid JSON: %s", mpath, err.line, err.column,
                      err.text);
        sp__free(mpath);
        return rc;
    }
    json_t *shards = json_object_get(root, "shards");
    json_t *ns = json_object_get(root, "samples");
    if (!json_is_array(shards) || !json_is_integer(ns)) {
        json_decref(root);
        rc = sp__fail(SP_ECORRUPT, "%s: \"shards\" or \"samples\" missing", mpath);
        sp__free(mpath);
        return rc;
    }
    *m_total = (uint64_t)json_integer_value(ns);
    ctx->n_jobs = json_array_size(shards);
    ctx->jobs = sp__calloc(ctx->n_jobs ? ctx->n_jobs : 1, sizeof *ctx->jobs);
    for (size_t i = 0; ctx->jobs && i < ctx->n_jobs; i++) {
        json_t *sh = json_array_get(shards, i);
        const char *file = json_string_value(json_object_get(sh, "file"));
        const char *sha = json_string_value(json_object_get(sh, "sha256"));
        json_t *nsamp = json_object_get(sh, "samples"), *nbytes = json_object_get(sh, "bytes");
        if (!file || strchr(file, '/') || !sha || strlen(sha) != 64 || !json_is_integer(nsamp) ||
            !json_is_integer(nbytes)) {
            rc = sp__fail(SP_ECORRUPT, "%s: shards[%zu] is malformed", mpath, i);
            break;
        }
        shard_job *j = &ctx->jobs[i];
        snprintf(j->file, sizeof j->file, "%s", file);
        memcpy(j->m_sha, sha, 65);
        j->m_samples = (uint64_t)json_integer_value(nsamp);
        j->m_bytes = (uint64_t)json_integer_value(nbytes);
        *total_bytes += j->m_bytes;
        j->path = sp__path_join(dir, file);
    }
    if (!ctx->jobs) rc = sp__fail(SP_ENOMEM, "out of memory");
    json_decref(root);
    sp__free(mpath);
    return rc;
}

sp_status sp_dataset_verify(const char *path, const sp_verify_opts *opts,
                            sp_verify_report *report) {
    sp_verify_opts def;
    sp_verify_opts_init(&def);
    if (!opts) opts = &def;
    if (report) memset(report, 0, sizeof *report);
    if (!path) return sp__fail(SP_EINVAL, "sp_dataset_verify: path is NULL");
    verify_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.opts = opts;
    uint64_t total = 0, m_total = 0;
    sp_status rc = load_jobs(path, &ctx, &total, &m_total);
    if (rc < 0) goto out;
    pthread_mutex_init(&ctx.mu, NULL);
    pthread_cond_init(&ctx.cv, NULL);
    int nt = opts->threads > 0 ? opts->threads : sp__ncpu();
    if ((size_t)nt > ctx.n_jobs) nt = ctx.n_jobs ? (int)ctx.n_jobs : 1;
    pthread_t th[256];
    if (nt > 256) nt = 256;
    int started = 0;
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, worker, &ctx) != 0) break;
    if (started == 0) worker(&ctx); /* no threads available: check inline */

    sp_verify_report r;
    memset(&r, 0, sizeof r);
    uint64_t sum_samples = 0;
    for (size_t k = 0; k < ctx.n_jobs; k++) {
        pthread_mutex_lock(&ctx.mu);
        while (!ctx.jobs[k].done) {
            if (opts->on_progress) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 100000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&ctx.cv, &ctx.mu, &ts);
                pthread_mutex_unlock(&ctx.mu);
                opts->on_progress(opts->user, atomic_load(&ctx.bytes_done), total);
                pthread_mutex_lock(&ctx.mu);
            } else {
                pthread_cond_wait(&ctx.cv, &ctx.mu);
            }
        }
        pthread_mutex_unlock(&ctx.mu);
        shard_job *j = &ctx.jobs[k];
        r.shards++;
        r.shards_bad += j->bad ? 1 : 0;
        r.samples += j->samples;
        r.samples_bad += j->samples_bad;
        r.bytes += j->bytes;
        sum_samples += j->m_samples;
        for (size_t i = 0; i < j->n_issues; i++) {
            r.issues++;
            if (opts->on_issue)
                opts->on_issue(opts->user, j->file, j->issues[i].sample, j->issues[i].key,
                               j->issues[i].msg);
        }
    }
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    if (sum_samples != m_total) {
        r.issues++;
        if (opts->on_issue) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "manifest.json: \"samples\" is %" PRIu64 " but its shards hold %" PRIu64,
                     m_total, sum_samples);
            opts->on_issue(opts->user, "manifest.json", -1, NULL, msg);
        }
    }
    if (opts->on_progress) opts->on_progress(opts->user, total, total);
    if (report) *report = r;
    pthread_mutex_destroy(&ctx.mu);
    pthread_cond_destroy(&ctx.cv);
    rc = r.issues
             ? sp__fail(SP_ECORRUPT,
                        "%s: %" PRIu64 " problem(s) found in %" PRIu64 " of %" PRIu64 " shards",
                        path, r.issues, r.shards_bad, r.shards)
             : SP_OK;
out:
    for (size_t k = 0; k < ctx.n_jobs; k++) {
        for (size_t i = 0; i < ctx.jobs[k].n_issues; i++) {
            sp__free(ctx.jobs[k].issues[i].key);
            sp__free(ctx.jobs[k].issues[i].msg);
        }
        sp__free(ctx.jobs[k].issues);
        sp__free(ctx.jobs[k].path);
    }
    sp__free(ctx.jobs);
    return rc;
}
