/* core_internal.h — private to libsoftpipe: helpers every module uses (errors, memory, files,
 * hashes, time). Not installed. Symbols here start with sp__ and are not exported. */
#ifndef SP_CORE_INTERNAL_H
#define SP_CORE_INTERNAL_H

#include "softpipe/core.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SP__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SP__PRINTF(a, b)
#endif

/* Marks a hot numeric kernel to be compiled three times (baseline x86-64, AVX2 and AVX-512
 * levels) with the CPU's best copy picked at load time (GCC function multiversioning), so the
 * lane loops vectorize wider on machines that can run them. Plain elsewhere, and under
 * sanitizers. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(SP_NO_CLONES)
#define SP__VECTOR_CLONES                                                                          \
    __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define SP__VECTOR_CLONES
#endif

/* ---- errors */
#define SP_ERRMSG_MAX 1024

/* Formats the thread-local message and returns `code`:
 *   return sp__fail(SP_ECORRUPT, "%s: record %" PRIu64 ": ...", path, i); */
sp_status sp__fail(sp_status code, const char *fmt, ...) SP__PRINTF(2, 3);
/* Same, appending ": strerror(errno_value)". */
sp_status sp__fail_errno(sp_status code, int errno_value, const char *fmt, ...) SP__PRINTF(3, 4);
/* Prepends "prefix: " to the current message (for adding context while forwarding). */
void sp__errmsg_prefix(const char *fmt, ...) SP__PRINTF(1, 2);
/* Clears the message. */
void sp__errmsg_clear(void);

/* Forwards a negative status unchanged. */
#define SP_TRY(expr)                                                                               \
    do {                                                                                           \
        sp_status sp__rc_ = (expr);                                                                \
        if (sp__rc_ < 0) return sp__rc_;                                                           \
    } while (0)

/* ---- memory: all library allocation goes through these */
void *sp__malloc(size_t n);
void *sp__calloc(size_t count, size_t size);
void *sp__realloc(void *p, size_t n);
void sp__free(void *p);
char *sp__strdup(const char *s);
char *sp__strndup(const char *s, size_t n);
/* Test builds: makes the Nth allocation from now fail (0 = never). */
void sp__malloc_fail_after(uint64_t n);

/* A growable byte buffer. Zero-initialize to start. */
typedef struct sp__buf {
    uint8_t *data;
    size_t len, cap;
} sp__buf;
sp_status sp__buf_reserve(sp__buf *b, size_t extra);
sp_status sp__buf_append(sp__buf *b, const void *p, size_t n);
sp_status sp__buf_printf(sp__buf *b, const char *fmt, ...) SP__PRINTF(2, 3);
void sp__buf_free(sp__buf *b);

/* ---- files */
/* Reads the whole file; *data is NUL-terminated (not counted in *len); free with sp__free. */
sp_status sp__read_file(const char *path, uint8_t **data, size_t *len);
/* Writes `path` atomically: "<path>.tmp-<pid>", write, fsync, rename, fsync the folder. */
sp_status sp__file_commit(const char *path, const void *data, size_t len);
/* fsync of a folder (makes a rename durable). */
sp_status sp__fsync_dir(const char *dir);
/* write() all of it, retrying short writes and EINTR. */
sp_status sp__write_all(int fd, const void *p, size_t n, const char *path);
/* pread() all of it at `off`; a short file is SP_ECORRUPT. */
sp_status sp__pread_all(int fd, void *p, size_t n, uint64_t off, const char *path);
/* rm -r of a folder we created (tmp folders only). Best effort. */
void sp__remove_tree(const char *path);
/* "dir/name" in a new string (sp__free). */
char *sp__path_join(const char *dir, const char *name);

/* ---- hashes */
uint64_t sp__xxh3(const void *p, size_t n);
typedef struct sp__sha256 {
    void *ctx; /* EVP_MD_CTX */
} sp__sha256;
sp_status sp__sha256_init(sp__sha256 *h);
void sp__sha256_update(sp__sha256 *h, const void *p, size_t n);
/* Writes 64 lowercase hex digits and a NUL into hex[65]; frees the context. */
void sp__sha256_final(sp__sha256 *h, char hex[65]);
void sp__sha256_free(sp__sha256 *h);

/* ---- misc */
double sp__now(void); /* monotonic seconds */
int sp__ncpu(void);   /* online CPUs, at least 1 */

/* Runs fn(ctx, t, n_threads) for t = 0 .. n_threads-1, each on its own thread (t = 0 on the
 * caller's), and returns when all have returned. A thread that cannot be started has its call run
 * on the caller's thread afterwards, so every t runs exactly once. n_threads < 1 counts as 1. */
void sp__parallel(int n_threads, void (*fn)(void *ctx, int t, int n_threads), void *ctx);

/* A persistent pool of n_threads - 1 workers (plus the caller) for objects that run many short
 * parallel jobs (core_pool.c). sp__pool_run runs fn(ctx, t, parts) for t = 0 .. parts-1 (t = 0
 * and any part no worker took on the caller's thread) and returns when all are done; when
 * another job is running it returns SP_DONE at once without running anything, so the caller
 * can fall back to sp__parallel. Thread-safe. */
typedef struct sp__pool sp__pool;
sp_status sp__pool_new(int n_threads, sp__pool **out);
sp_status sp__pool_run(sp__pool *p, int parts, void (*fn)(void *ctx, int t, int n), void *ctx);
int sp__pool_size(const sp__pool *p);
void sp__pool_free(sp__pool *p);

/* Splits [0, n) into `parts` near-equal ranges; part `i` is [*lo, *hi). */
static inline void sp__split_range(uint64_t n, int parts, int i, uint64_t *lo, uint64_t *hi) {
    *lo = n * (uint64_t)i / (uint64_t)parts;
    *hi = n * (uint64_t)(i + 1) / (uint64_t)parts;
}

/* Little-endian stores/loads (the machines are little-endian; these keep the intent visible). */
static inline void sp__put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void sp__put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t sp__get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t sp__get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
