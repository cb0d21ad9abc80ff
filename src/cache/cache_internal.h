/* cache_internal.h — private to src/cache: the pieces of the pipeline cache.
 *   cache_yaml.c    softpipe.yaml and params files (libyaml) -> sp__pipeline, validated
 *   cache_digest.c  content digests: files (sha256), folders (a Merkle hash of a sorted
 *                   manifest), and the stat cache that makes a no-op status one stat per file
 *   cache_store.c   the content-addressed store .softpipe/cache/ and the run cache .softpipe/runs/
 *   cache_run.c     stage keys, status with reasons, the scheduler, locking, gc
 * Not installed. All paths inside a project are relative to the project root, '/'-separated,
 * without "." or ".." components (the loader normalizes them). */
#ifndef SP_CACHE_INTERNAL_H
#define SP_CACHE_INTERNAL_H

#include "core_internal.h"

/* ---- the pipeline (cache_yaml.c) */

typedef struct sp__param {
    char *file;  /* params file, relative to the project ("params.yaml" by default) */
    char *key;   /* dotted key ("train.lr") */
    char *value; /* the value's canonical JSON text (docs/pipeline.md): "0.01", "\"adam\"",
                    "[1,2]", "{\"a\":1}"; a missing file or key is a parse error */
} sp__param;

typedef struct sp__stage {
    char *name;
    uint32_t line; /* line of the stage's name in the pipeline file */
    char **cmd;    /* the command: n_cmd entries (a string cmd is one entry, run with
                      /bin/sh -c; a list is run as one shell line per entry, in order) */
    size_t n_cmd;
    char *wdir;  /* working directory relative to the project, "" = the root */
    char **deps; /* files or folders, project-relative */
    size_t n_deps;
    char **outs;
    size_t n_outs;
    sp__param *params;
    size_t n_params;
    char **env; /* names of environment variables that belong to the key */
    size_t n_env;
    size_t *upstream; /* indices of the stages whose outputs this stage depends on */
    size_t n_upstream;
} sp__stage;

typedef struct sp__pipeline {
    char *root;        /* absolute project folder */
    char *file;        /* the pipeline file's path as given (for messages) */
    sp__stage *stages; /* in topological order (a stage comes after its upstream stages) */
    size_t n_stages;
} sp__pipeline;

/* Parses `text` (the pipeline file named `file`, for messages) of the project at `root`:
 * stages with cmd, deps, params, outs, wdir, env; params values read from the params files
 * under root. Errors (SP_EBADINPUT) name "file:line:col: stage 'x': what": unknown keys, a
 * missing cmd, a cycle (naming the stages in it), two stages writing one output (or one output
 * inside another), an output or dep outside the project, a params file or key that does not
 * exist. */
sp_status sp__pipeline_parse(const char *root, const char *file, const char *text, size_t len,
                             sp__pipeline *out);
void sp__pipeline_free(sp__pipeline *p);

/* ---- digests (cache_digest.c) */

/* A content digest: "sha256:" + 64 hex digits for files and blobs; folders use
 * "tree-sha256:" + 64 hex digits (the sha256 of the folder's canonical manifest, see
 * cache_digest.c). The name of the hash is part of the text so old digests stay readable. */
#define SP__DIGEST_MAX 80

/* sha256 of a file's bytes, as "sha256:<hex>" (reads with large preads; >= 0.9x openssl). */
sp_status sp__digest_file(const char *path, char out[SP__DIGEST_MAX]);

/* The stat cache: maps (device, inode, size, mtime_ns, ctime_ns) of a path to its digest, in one
 * compact file .softpipe/statcache (loaded whole, rewritten atomically when it changed). A
 * record is trusted only if the file's mtime is older than the moment the record was written
 * (git's racy-timestamp guard): a file modified in the same clock tick as it was hashed is
 * hashed again. */
typedef struct sp__statcache sp__statcache;
sp_status sp__statcache_open(const char *project_root, sp__statcache **out);
/* Writes the cache back if it changed (atomic); frees it. */
sp_status sp__statcache_close(sp__statcache *sc);
void sp__statcache_free(sp__statcache *sc); /* without writing */

/* The digest of a file or folder (path absolute or relative to the cwd), using and updating
 * the stat cache (sc may be NULL: always hash). A folder's digest is the Merkle hash of its
 * sorted manifest (every regular file and symlink below it, recursively). A missing path is
 * SP_ENOTFOUND naming it. *n_files (may be NULL) is the number of files covered. */
sp_status sp__digest_path(sp__statcache *sc, const char *path, char out[SP__DIGEST_MAX],
                          uint64_t *n_files);

/* ---- the store (cache_store.c) */

/* A manifest of a stage's outputs: one entry per file (a folder output lists its files), with
 * the file's path relative to the project, its digest, size and mode (0644 or 0755). */
typedef struct sp__manifest_entry {
    char *path;
    char digest[SP__DIGEST_MAX];
    uint64_t size;
    uint32_t mode;
} sp__manifest_entry;

typedef struct sp__manifest {
    sp__manifest_entry *e;
    size_t n;
} sp__manifest;
void sp__manifest_free(sp__manifest *m);

/* The store of a project: blobs in <root>/.softpipe/cache/<2 hex>/<62 hex> (read-only files),
 * run-cache records in <root>/.softpipe/runs/<2 hex>/<62 hex>.json (stage key -> a list of
 * results, newest last, each {"time": ..., "outputs": manifest}). */
typedef struct sp__store sp__store;
sp_status sp__store_open(const char *project_root, sp__store **out);
void sp__store_close(sp__store *st);

/* Adds every file of the stage's outputs (project-relative paths; files or folders) to the
 * store: each blob is copied (or reflinked) to a temporary file, its digest verified, fsynced
 * and renamed into place; an existing blob is not rewritten. Fills *m. */
sp_status sp__store_save_outputs(sp__store *st, char *const *outs, size_t n_outs, sp__manifest *m);

/* Records `m` as a result of `key` (64 hex digits) in the run cache, atomically (the record is
 * rewritten whole via temp + fsync + rename). */
sp_status sp__store_record(sp__store *st, const char *key, const sp__manifest *m);

/* The newest recorded result of `key` whose blobs are all present: SP_OK and *m filled, or
 * SP_ENOTFOUND. */
sp_status sp__store_lookup(sp__store *st, const char *key, sp__manifest *m);

/* Restores a manifest's files into the project: for each, a reflink (FICLONE), else a read-only
 * hard link, else a copy, into a temporary name next to the target, its digest verified (a
 * corrupt blob is SP_ECORRUPT naming it, and nothing is replaced), then renamed over the
 * target. A declared output folder is replaced only after all its files are in place (the new
 * folder is built beside it and swapped in). *method (may be NULL) receives "reflink",
 * "hardlink" or "copy" (the method of the last file). */
sp_status sp__store_restore(sp__store *st, char *const *outs, size_t n_outs, const sp__manifest *m,
                            const char **method);

/* gc: keeps the newest keep_last results of every key (0 = all), removes the other records'
 * references, deletes blobs no kept record references, and drops records whose blobs are
 * gone. Counts what it removed (or would remove with dry_run). */
sp_status sp__store_gc(sp__store *st, uint32_t keep_last, int dry_run, uint64_t *blobs_removed,
                       uint64_t *bytes_removed, uint64_t *records_dropped);

/* ---- remotes (cache_remote.c) */

/* A remote cache speaking the Bazel HTTP cache protocol (docs/cache.md, "Remotes"): run-cache
 * records at <base>/ac/<stage key>, blobs at <base>/cas/<sha256 hex>, through libcurl with up to
 * 8 parallel transfers and retries with exponential backoff. */
typedef struct sp__remote sp__remote;

/* Validates `url` ("http://" or "https://", trailing slashes dropped) and prepares the
 * transfers; nothing is contacted yet. */
sp_status sp__remote_open(const char *url, sp__remote **out);
void sp__remote_close(sp__remote *r);
const char *sp__remote_url(const sp__remote *r);

typedef struct sp__remote_stats {
    uint64_t results, blobs, bytes, blobs_present;
} sp__remote_stats;

/* Fetches the newest result of `key` from the remote into the local store of the project at
 * `root`: its record (<base>/ac/<key>), then the blobs the local store lacks, each verified
 * against its sha256 before it is renamed into .softpipe/cache/ (a mismatch is SP_ECORRUPT
 * naming the URL and the expected digest; that blob is not stored and nothing is recorded);
 * then records the result locally (sp__store_record). *found = 0 and SP_OK when the remote has
 * no record. With dry_run, only asks whether the record exists (HEAD). stats may be NULL. */
sp_status sp__remote_fetch(sp__remote *r, sp__store *st, const char *root, const char *key,
                           int dry_run, int *found, sp__remote_stats *stats);

/* Pushes the result `m` of `key`: HEADs each blob, PUTs the missing ones from the local store of
 * the project at `root`, then PUTs the record. stats may be NULL. */
sp_status sp__remote_push(sp__remote *r, const char *root, const char *key, const sp__manifest *m,
                          sp__remote_stats *stats);

/* Helpers in cache_run.c for push and pull: the project's root, and stage i's current key
 * (SP_ENOTFOUND naming the dep when one is missing). */
struct sp_project;
const char *sp__project_root(const struct sp_project *p);
sp_status sp__project_stage_key(struct sp_project *p, size_t i, char key[65]);

#endif
