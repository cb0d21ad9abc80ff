/* softpipe/cache.h — preprocessing once: the pipeline cache (module src/cache/).
 *
 * A project is a folder with a pipeline file (softpipe.yaml, docs/pipeline.md) of stages, each a
 * command with its deps, params, env and outs. A stage's key is the sha256 of a canonical text of
 * everything that determines its outputs: the command, the working directory, the values of the
 * named params, the content digests of the deps, the declared env variables' values, the declared
 * outs and the key format's version (see src/cache/cache_run.c for the exact encoding). Outputs
 * of a finished stage are saved in a content-addressed store (.softpipe/cache/) and the key is
 * recorded in the run cache (.softpipe/runs/), so a stage whose key was seen before is restored
 * instead of rerun, on any branch. `status` says, for each stage, whether it is up to date,
 * restorable from the cache or stale, and why (which param, dep, env variable or the command
 * changed since the stage last ran or was restored here; docs/cache.md).
 *
 * Thread-safety: a project object is used by one thread at a time. Two processes running the
 * same project serialize on .softpipe/lock.
 */
#ifndef SOFTPIPE_CACHE_H
#define SOFTPIPE_CACHE_H

#include "softpipe/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_project sp_project;

/* Opens the project in `dir` and parses its pipeline file (`pipeline` relative to dir; NULL =
 * "softpipe.yaml"). Errors name the file, line and stage. */
SP_API sp_status sp_project_open(const char *dir, const char *pipeline, sp_project **out /* OUT */);
SP_API void sp_project_close(sp_project *p);

SP_API size_t sp_project_n_stages(const sp_project *p);
/* Stage i's name (pipeline order: a stage after those it depends on). Borrowed. */
SP_API const char *sp_project_stage_name(const sp_project *p, size_t i);

typedef enum sp_stage_state {
    SP_STAGE_UP_TO_DATE = 0, /* its key is the one it last ran or was restored with here, and
                                its outputs are intact */
    SP_STAGE_RESTORABLE = 1, /* the run cache holds a result for its current key */
    SP_STAGE_STALE = 2       /* it must run */
} sp_stage_state;

typedef struct sp_stage_status {
    const char *name;
    sp_stage_state state;
    char key[65];     /* the current key (hex); "" when a dep is missing */
    size_t n_reasons; /* why it is not up to date ("param train.lr changed 0.1 -> 0.01") */
    const char *const *reasons;
} sp_stage_status;

/* The status of every stage, in pipeline order; *out is borrowed until the next call on p.
 * A stage downstream of one that must run or be restored is stale with the reason
 * "upstream stage 'x' is not up to date" (running may still cut it off early). */
SP_API sp_status sp_project_status(sp_project *p, const sp_stage_status **out /* OUT */,
                                   size_t *n /* OUT */);

typedef struct sp_run_opts {
    int jobs;                  /* stages run in parallel where the graph allows; 0 = 1 */
    int force;                 /* run the selected stages even if up to date or restorable */
    int dry_run;               /* report what would happen, change nothing */
    const char *const *stages; /* run these and what they depend on; NULL = all */
    size_t n_stages;
    /* Called on the caller's thread for each event: "up to date", "restored", "running",
     * "done", "failed", "skipped", "waiting" (for the project lock); detail is free text
     * ("from cache (hardlink), 0.012 s"). May be NULL. */
    void (*on_event)(void *user, const char *stage, const char *event, const char *detail);
    void *user;
    /* A remote cache ("http(s)://host:port/base", docs/cache.md "Remotes"), or NULL: a stage
     * whose key is not in the local run cache is first looked up there (its result and blobs are
     * fetched, every blob verified against its digest, then restored as usual: event "pulled"),
     * and results of stages that ran are pushed there (event "pushed"). */
    const char *remote;
} sp_run_opts;

SP_API void sp_run_opts_init(sp_run_opts *opts);

/* Brings the selected stages up to date in dependency order: a stage whose key is current is
 * left alone, one whose key is in the run cache is restored (digest-verified), any other runs
 * (`/bin/sh -c` per command line, in its wdir, with the project root as SOFTPIPE_ROOT). A stage
 * that fails keeps its previous outputs, records nothing, and its downstream stages are skipped;
 * the call then returns SP_EBADINPUT naming the stage and its exit status. Outputs of a stage
 * that succeeds are stored and its key recorded atomically. Early cutoff: a downstream stage
 * whose deps came out of an upstream rerun unchanged keeps its key and does not run. */
SP_API sp_status sp_project_run(sp_project *p, const sp_run_opts *opts);

typedef struct sp_gc_report {
    uint64_t blobs_removed, bytes_removed, records_dropped;
} sp_gc_report;

/* Removes blobs no kept run-cache result references; keep_last = results kept per key (0 =
 * all). With dry_run, only counts. */
SP_API sp_status sp_project_gc(sp_project *p, uint32_t keep_last, int dry_run,
                               sp_gc_report *out /* OUT */);

/* What a push or pull moved. */
typedef struct sp_remote_report {
    uint64_t results;       /* run-cache results pushed or pulled */
    uint64_t blobs;         /* blobs uploaded or downloaded */
    uint64_t bytes;         /* their bytes */
    uint64_t blobs_present; /* blobs the other side already had */
    uint64_t skipped;       /* pull: stages with a missing dep, or that the remote lacks */
} sp_remote_report;

/* Pushes the newest complete result of every key in the local run cache (all of them, not only
 * the current pipeline's) to the remote cache at `url` ("http(s)://host[:port]/base"): each
 * blob the remote lacks (HEAD <base>/cas/<sha256>) is PUT, up to 8 at a time, then the record
 * (PUT <base>/ac/<key>). Transfers are retried 3 times with exponential backoff on connection
 * errors and HTTP 5xx; an error names the URL and the HTTP status (SP_EIO). */
SP_API sp_status sp_project_push(sp_project *p, const char *url, sp_remote_report *out /* OUT */);

/* Fetches from the remote cache at `url` the results of the selected stages' current keys
 * (stages/n_stages as in sp_run_opts; NULL = all) into the local cache, without restoring
 * them: a later run restores them. A stage whose deps do not exist yet (the outputs of an
 * upstream stage not yet restored) is skipped: `sp_project_run` with opts.remote pulls a
 * whole chain. Every downloaded blob is verified against its digest; a mismatch is
 * SP_ECORRUPT naming the URL and the digest, and that blob is not stored. */
SP_API sp_status sp_project_pull(sp_project *p, const char *url, const char *const *stages,
                                 size_t n_stages, sp_remote_report *out /* OUT */);

/* The content digest of a file ("sha256:<hex>") or folder ("tree-sha256:<hex>"), as stage keys
 * use them. out holds at least 80 bytes. */
SP_API sp_status sp_path_digest(const char *path, char *out /* OUT */);

#ifdef __cplusplus
}
#endif
#endif
