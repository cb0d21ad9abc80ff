/* core_pool.c — a persistent pool of worker threads for objects that split many short jobs
 * (a model predicting batch after batch): starting threads per call costs tens of
 * microseconds each time, a pool pays it once.
 *
 * One job at a time: sp__pool_run hands fn(ctx, t, n) for t = 1 .. n-1 to the workers, runs
 * t = 0 itself and waits for all. A second caller arriving while a job runs does not wait: it
 * gets SP_DONE back and runs its job some other way (sp__parallel), so a shared pool never
 * serializes independent callers. Shared state (job, generation, remaining count) is guarded by
 * the pool's mutex; workers sleep on `start`, the caller on `done`. */
#include "core_internal.h"

#include <pthread.h>

struct sp__pool {
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    pthread_t *tid;
    int n_workers, n_started;
    int busy;            /* a job is running (a second caller backs off) */
    uint64_t generation; /* bumped per job */
    int parts;           /* parts of the current job (workers take 1 .. parts-1) */
    int next;            /* next part to hand out */
    int remaining;       /* parts not finished */
    int quit;
    void (*fn)(void *ctx, int t, int n);
    void *ctx;
};

static void *worker(void *arg) {
    sp__pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && (p->generation == seen || p->next >= p->parts))
            pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        while (p->next < p->parts) {
            int t = p->next++;
            void (*fn)(void *, int, int) = p->fn;
            void *ctx = p->ctx;
            int n = p->parts;
            pthread_mutex_unlock(&p->mu);
            fn(ctx, t, n);
            pthread_mutex_lock(&p->mu);
            if (--p->remaining == 0) pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sp_status sp__pool_new(int n_threads, sp__pool **out) {
    *out = NULL;
    sp__pool *p = sp__calloc(1, sizeof *p);
    if (!p) return sp__fail(SP_ENOMEM, "out of memory");
    p->n_workers = n_threads > 1 ? n_threads - 1 : 0;
    p->tid = sp__calloc((size_t)p->n_workers + 1, sizeof(pthread_t));
    if (!p->tid) {
        sp__free(p);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < p->n_workers; i++) {
        if (pthread_create(&p->tid[i], NULL, worker, p) != 0) break;
        p->n_started++;
    }
    *out = p;
    return SP_OK;
}

sp_status sp__pool_run(sp__pool *p, int parts, void (*fn)(void *ctx, int t, int n), void *ctx) {
    if (parts < 1) parts = 1;
    pthread_mutex_lock(&p->mu);
    if (p->busy || p->n_started == 0) {
        pthread_mutex_unlock(&p->mu);
        return SP_DONE; /* busy: the caller runs the job another way */
    }
    p->busy = 1;
    p->fn = fn;
    p->ctx = ctx;
    p->parts = parts;
    p->next = 1; /* part 0 is the caller's */
    p->remaining = parts - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, parts);
    pthread_mutex_lock(&p->mu);
    /* parts no worker has taken yet run here too */
    while (p->next < p->parts) {
        int t = p->next++;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, t, parts);
        pthread_mutex_lock(&p->mu);
        p->remaining--;
    }
    while (p->remaining > 0)
        pthread_cond_wait(&p->done, &p->mu);
    p->busy = 0;
    pthread_mutex_unlock(&p->mu);
    return SP_OK;
}

int sp__pool_size(const sp__pool *p) {
    return p ? p->n_started + 1 : 1;
}

void sp__pool_free(sp__pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    sp__free(p->tid);
    sp__free(p);
}
