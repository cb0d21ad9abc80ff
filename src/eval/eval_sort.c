/* eval_sort.c — stable ascending argsort of float32/float64 scores (sp__eval_argsort in
 * eval_internal.h). ROC and precision-recall curves and AUC start by putting the scores in order,
 * so on millions of rows this sort is most of their cost.
 *
 * Algorithm: a least-significant-digit radix sort of (key, index) pairs. Each score first becomes
 * an unsigned integer key whose integer order is the score's numeric order: -0.0 is rewritten as
 * +0.0, then a negative number has all its bits flipped (a larger magnitude gives a smaller key)
 * and a non-negative number has its sign bit set (so it lands above every negative one). Infinities
 * and denormals need no special case; NaN never arrives (the caller's promise). The keys are then
 * sorted one SORT_BITS-wide digit at a time, lowest digit first, each pass a stable counting sort.
 * Because every pass is stable, equal scores keep their index order at the end without a tie-break
 * key.
 *
 * Passes: one read of the input computes every key and the histograms of all digits at once. A
 * digit whose histogram puts all n keys in one bucket would leave the order unchanged, so its pass
 * is skipped: scores within a narrow range share their top digits, and rounded scores or small
 * integers share their low ones.
 *
 * Threads: each pass splits its source array into T contiguous chunks, one per thread. Thread t
 * counts the digits of its chunk; output offsets are then handed out in (digit, thread) order, so
 * thread t's keys with digit b are written after those of threads below t and in their source
 * order. A pass is therefore stable for any T, and the permutation does not depend on the thread
 * count. The initial read uses the same chunks, so its per-thread histograms serve the first pass
 * that runs; every later pass recounts, because the previous pass moved keys between chunks. With
 * one thread the digit counts of the whole array never change, so no pass recounts. Threads share
 * only the buffers, each writes positions no other thread writes, and the join at the end of
 * sp__parallel orders one phase before the next, so no lock or atomic is needed.
 *
 * Buffers: keys ping-pong between two scratch arrays. Indices ping-pong between one scratch array
 * and the caller's perm, arranged so that the last pass writes perm directly (and `sorted`, decoded
 * from the keys, in place of keys that nobody would read). The first pass takes each index from the
 * key's position, since the input is still in index order. Peak scratch is two key arrays, one
 * index array and the histograms: 20 bytes per float64 score, 12 per float32 score. Large scratch
 * arrays are advised onto huge pages (advise_huge_pages). */
#include "eval_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Digit width. With 8-bit digits a pass writes to 256 places at once, whose cache lines stay in L1.
 * 11-bit digits save two of eight float64 passes, but each pass ran 2.5 times slower because its
 * 2048 targets thrash L1; 16-bit digits (four passes) lost too. 10M float64 scores in [0, 1), one
 * thread of a two-core AMD EPYC VM: 8 bits 0.21 s, 11 bits 0.38 s, 16 bits 0.32 s. */
#define SORT_BITS       8
#define SORT_BUCKETS    (1u << SORT_BITS)
#define SORT_MASK       (SORT_BUCKETS - 1u)
/* Digits per key: 8 for float64, 4 for float32. */
#define SORT_MAX_DIGITS ((64 + SORT_BITS - 1) / SORT_BITS)

/* Below this many scores one thread is used: starting threads and recounting would cost more than
 * the work they share. Above it, every thread gets at least SORT_MIN_CHUNK scores. */
#define SORT_SERIAL_BELOW 65536
#define SORT_MIN_CHUNK    32768
/* sp__parallel's own limit; histograms cost 4 * 256 * 8 bytes per thread. */
#define SORT_MAX_THREADS  256

#define SORT_SIGN64 (UINT64_C(1) << 63)
#define SORT_SIGN32 (UINT32_C(1) << 31)

/* The pass loops are written once with `wide` (float64 or float32) and a few mode flags as
 * parameters. Forcing them inline into thin per-case wrappers makes every flag a constant there, so
 * the compiler emits one tight loop per case instead of testing the flags per element. */
#if defined(__GNUC__)
#define SORT_INLINE static inline __attribute__((always_inline))
#else
#define SORT_INLINE static inline
#endif

/* What the last pass writes besides perm. */
enum { OUT_KEYS, OUT_SORTED, OUT_NOTHING };

typedef struct sort_ctx {
    const char *scores; /* the caller's input, element i at scores + i * stride */
    size_t stride;
    uint64_t n;
    int n_threads;
    int n_digits; /* SORT_BITS-wide digits per key */
    /* Counts, [thread][digit][bucket]. The initial read fills every digit; a later pass recounts
     * its digit's slots and then turns them into that thread's write offsets in place. */
    uint32_t *hist;
    void *keys[2];         /* scratch keys, ping-pong */
    uint32_t *idx_scratch; /* scratch indices, ping-pong with perm */
    /* The pass being run. */
    int digit;
    const void *src_keys;    /* uint64_t (float64) or uint32_t (float32) keys */
    const uint32_t *src_idx; /* NULL in the first pass: the index is the position */
    void *dst_keys;          /* NULL in the last pass */
    uint32_t *dst_idx;
    double *dst_sorted; /* the last pass only, and only if the caller asked for sorted values */
} sort_ctx;

/* ---- keys */

/* Order-preserving map from float64 bits to uint64: see the file comment. Branch-free, because the
 * sign of random scores is unpredictable. */
static inline uint64_t key_from_f64_bits(uint64_t u) {
    u = u == SORT_SIGN64 ? 0 : u;
    return u ^ ((UINT64_C(0) - (u >> 63)) | SORT_SIGN64);
}

static inline uint32_t key_from_f32_bits(uint32_t u) {
    u = u == SORT_SIGN32 ? 0 : u;
    return u ^ ((UINT32_C(0) - (u >> 31)) | SORT_SIGN32);
}

/* The inverse maps: a key with its top bit set came from a non-negative number. */
static inline double f64_from_key(uint64_t k) {
    uint64_t u = k ^ (((k >> 63) - 1) | SORT_SIGN64);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline double f32_from_key(uint32_t k) {
    uint32_t u = k ^ (((k >> 31) - 1) | SORT_SIGN32);
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

/* Keys of both widths travel as uint64_t inside the loops; with `wide` constant the compiler uses
 * 32-bit loads and stores for float32. */
SORT_INLINE uint64_t load_key(const void *keys, uint64_t i, int wide) {
    return wide ? ((const uint64_t *)keys)[i] : ((const uint32_t *)keys)[i];
}

SORT_INLINE void store_key(void *keys, uint64_t i, uint64_t k, int wide) {
    if (wide)
        ((uint64_t *)keys)[i] = k;
    else
        ((uint32_t *)keys)[i] = (uint32_t)k;
}

SORT_INLINE uint64_t key_from_score(const char *p, int wide) {
    if (wide) {
        uint64_t u;
        memcpy(&u, p, sizeof u);
        return key_from_f64_bits(u);
    }
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return key_from_f32_bits(u);
}

SORT_INLINE double double_from_key(uint64_t k, int wide) {
    return wide ? f64_from_key(k) : f32_from_key((uint32_t)k);
}

static uint32_t *hist_at(const sort_ctx *c, int t, int digit) {
    return c->hist + ((size_t)t * (size_t)c->n_digits + (size_t)digit) * SORT_BUCKETS;
}

/* ---- the three phases, each run on every thread over its chunk */

/* Initial read: writes the keys of chunk t into dst_keys and counts every digit of them. */
SORT_INLINE void phase_keys(sort_ctx *c, int t, int wide) {
    uint64_t lo, hi;
    sp__split_range(c->n, c->n_threads, t, &lo, &hi);
    uint32_t *h = hist_at(c, t, 0);
    const int n_digits = wide ? (64 + SORT_BITS - 1) / SORT_BITS : (32 + SORT_BITS - 1) / SORT_BITS;
    /* Zeroed here rather than by calloc so that each thread's histogram pages are first touched,
     * and so placed, by the thread that uses them. */
    memset(h, 0, (size_t)n_digits * SORT_BUCKETS * sizeof *h);
    const char *p = c->scores + lo * c->stride;
    for (uint64_t i = lo; i < hi; i++, p += c->stride) {
        uint64_t k = key_from_score(p, wide);
        store_key(c->dst_keys, i, k, wide);
        for (int d = 0; d < n_digits; d++)
            h[(size_t)d * SORT_BUCKETS + ((k >> (d * SORT_BITS)) & SORT_MASK)]++;
    }
}

/* Recount: counts digit c->digit over chunk t of src_keys. */
SORT_INLINE void phase_count(sort_ctx *c, int t, int wide) {
    uint64_t lo, hi;
    sp__split_range(c->n, c->n_threads, t, &lo, &hi);
    uint32_t *h = hist_at(c, t, c->digit);
    memset(h, 0, SORT_BUCKETS * sizeof *h);
    const int shift = c->digit * SORT_BITS;
    for (uint64_t i = lo; i < hi; i++)
        h[(load_key(c->src_keys, i, wide) >> shift) & SORT_MASK]++;
}

/* The scatter loop proper; `first` and `out` are constants in each caller. */
SORT_INLINE void scatter_range(const sort_ctx *c, uint32_t *off, uint64_t lo, uint64_t hi, int wide,
                               int first, int out) {
    const int shift = c->digit * SORT_BITS;
    for (uint64_t i = lo; i < hi; i++) {
        uint64_t k = load_key(c->src_keys, i, wide);
        uint32_t p = off[(k >> shift) & SORT_MASK]++;
        c->dst_idx[p] = first ? (uint32_t)i : c->src_idx[i];
        if (out == OUT_KEYS)
            store_key(c->dst_keys, p, k, wide);
        else if (out == OUT_SORTED)
            c->dst_sorted[p] = double_from_key(k, wide);
    }
}

/* Scatter: moves chunk t to the offsets that assign_offsets gave it. */
SORT_INLINE void phase_scatter(sort_ctx *c, int t, int wide) {
    uint64_t lo, hi;
    sp__split_range(c->n, c->n_threads, t, &lo, &hi);
    uint32_t *off = hist_at(c, t, c->digit);
    int out = c->dst_keys ? OUT_KEYS : c->dst_sorted ? OUT_SORTED : OUT_NOTHING;
    if (c->src_idx == NULL) {
        if (out == OUT_KEYS)
            scatter_range(c, off, lo, hi, wide, 1, OUT_KEYS);
        else if (out == OUT_SORTED)
            scatter_range(c, off, lo, hi, wide, 1, OUT_SORTED);
        else
            scatter_range(c, off, lo, hi, wide, 1, OUT_NOTHING);
    } else {
        if (out == OUT_KEYS)
            scatter_range(c, off, lo, hi, wide, 0, OUT_KEYS);
        else if (out == OUT_SORTED)
            scatter_range(c, off, lo, hi, wide, 0, OUT_SORTED);
        else
            scatter_range(c, off, lo, hi, wide, 0, OUT_NOTHING);
    }
}

/* sp__parallel entry points, one per phase and width. */
static void run_keys_f64(void *ctx, int t, int n_threads) {
    assert(n_threads == ((sort_ctx *)ctx)->n_threads);
    (void)n_threads;
    phase_keys(ctx, t, 1);
}
static void run_keys_f32(void *ctx, int t, int n_threads) {
    assert(n_threads == ((sort_ctx *)ctx)->n_threads);
    (void)n_threads;
    phase_keys(ctx, t, 0);
}
static void run_count_f64(void *ctx, int t, int n_threads) {
    (void)n_threads;
    phase_count(ctx, t, 1);
}
static void run_count_f32(void *ctx, int t, int n_threads) {
    (void)n_threads;
    phase_count(ctx, t, 0);
}
static void run_scatter_f64(void *ctx, int t, int n_threads) {
    (void)n_threads;
    phase_scatter(ctx, t, 1);
}
static void run_scatter_f32(void *ctx, int t, int n_threads) {
    (void)n_threads;
    phase_scatter(ctx, t, 0);
}

/* Turns the counts of `digit` into write offsets in place: bucket-major, then thread, which is
 * what keeps a pass stable across chunks (see the file comment). The total is n <= UINT32_MAX, so
 * every offset fits in uint32_t. */
static void assign_offsets(sort_ctx *c, int digit) {
    uint32_t next = 0;
    for (uint32_t b = 0; b < SORT_BUCKETS; b++) {
        for (int t = 0; t < c->n_threads; t++) {
            uint32_t *h = hist_at(c, t, digit) + b;
            uint32_t count = *h;
            *h = next;
            next += count;
        }
    }
    assert(c->n_threads > 1 || (uint64_t)next == c->n);
}

/* A digit needs a pass unless one bucket holds every key. Valid only right after the initial read,
 * while the histograms still hold counts for every digit. */
static int digit_varies(const sort_ctx *c, int digit) {
    for (uint32_t b = 0; b < SORT_BUCKETS; b++) {
        uint64_t total = 0;
        for (int t = 0; t < c->n_threads; t++)
            total += hist_at(c, t, digit)[b];
        if (total == c->n) return 0;
        if (total != 0) return 1;
    }
    return 1; /* not reached: the buckets hold n > 0 keys in all */
}

/* Asks Linux to back a large scratch array with 2 MiB pages. A pass writes all over its output, so
 * with 4 KiB pages most writes miss the TLB, and fresh memory costs a page fault per 4 KiB on first
 * touch; together that was 30% of the time for 10M float64 scores. Advice only: where it is
 * ignored or unknown, the sort is just slower. Must run before the array is first written. */
static void advise_huge_pages(void *p, size_t bytes) {
#if defined(MADV_HUGEPAGE)
    if (p == NULL || bytes < ((size_t)4 << 20)) return;
    long page_size = sysconf(_SC_PAGESIZE);
    uintptr_t page = page_size > 0 ? (uintptr_t)page_size : 4096;
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

static int choose_threads(int n_threads, uint64_t n) {
    if (n_threads == 0) n_threads = sp__ncpu();
    if (n < SORT_SERIAL_BELOW) return 1;
    uint64_t most = n / SORT_MIN_CHUNK;
    if ((uint64_t)n_threads > most) n_threads = (int)most;
    if (n_threads > SORT_MAX_THREADS) n_threads = SORT_MAX_THREADS;
    return n_threads < 1 ? 1 : n_threads;
}

/* The sort proper, for n >= 2 and a filled-in *c. Leaves its scratch in c for the caller to free,
 * whether it succeeds or not. */
static sp_status radix_argsort(sort_ctx *c, int wide, uint32_t *perm, double *sorted) {
    const size_t n = (size_t)c->n;
    const size_t key_size = wide ? sizeof(uint64_t) : sizeof(uint32_t);
    c->hist =
        sp__malloc((size_t)c->n_threads * (size_t)c->n_digits * SORT_BUCKETS * sizeof *c->hist);
    c->keys[0] = sp__malloc(n * key_size);
    if (c->hist == NULL || c->keys[0] == NULL)
        return sp__fail(SP_ENOMEM, "argsort: out of memory for the keys of %zu scores", n);
    advise_huge_pages(c->keys[0], n * key_size);

    c->dst_keys = c->keys[0];
    sp__parallel(c->n_threads, wide ? run_keys_f64 : run_keys_f32, c);

    int active[SORT_MAX_DIGITS];
    int n_active = 0;
    for (int d = 0; d < c->n_digits; d++)
        if (digit_varies(c, d)) active[n_active++] = d;

    if (n_active == 0) {
        /* Every key is the same, so the input order is already sorted and stable. */
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        if (sorted) {
            double v = double_from_key(load_key(c->keys[0], 0, wide), wide);
            for (size_t i = 0; i < n; i++)
                sorted[i] = v;
        }
        return SP_OK;
    }

    if (n_active >= 2) {
        c->keys[1] = sp__malloc(n * key_size);
        c->idx_scratch = sp__malloc(n * sizeof *c->idx_scratch);
        if (c->keys[1] == NULL || c->idx_scratch == NULL)
            return sp__fail(SP_ENOMEM, "argsort: out of memory for the scratch of %zu scores", n);
        advise_huge_pages(c->keys[1], n * key_size);
        advise_huge_pages(c->idx_scratch, n * sizeof *c->idx_scratch);
    }

    /* Pass j reads keys[j % 2] and writes keys[(j + 1) % 2]. Its indices go to perm when an even
     * number of passes remain after it, so that the last pass (none remain) lands in perm. */
    for (int j = 0; j < n_active; j++) {
        int last = j == n_active - 1;
        c->digit = active[j];
        c->src_keys = c->keys[j % 2];
        c->src_idx = j == 0 ? NULL : c->dst_idx;
        c->dst_keys = last ? NULL : c->keys[(j + 1) % 2];
        c->dst_idx = (n_active - 1 - j) % 2 == 0 ? perm : c->idx_scratch;
        c->dst_sorted = last ? sorted : NULL;
        /* The first pass sees the input's own chunks, counted in the initial read. One thread's
         * counts cover the whole array, which no pass changes. Otherwise count again. */
        if (j > 0 && c->n_threads > 1)
            sp__parallel(c->n_threads, wide ? run_count_f64 : run_count_f32, c);
        assign_offsets(c, c->digit);
        sp__parallel(c->n_threads, wide ? run_scatter_f64 : run_scatter_f32, c);
    }
    return SP_OK;
}

sp_status sp__eval_argsort(const void *scores, sp_dtype dtype, size_t stride, size_t n,
                           int n_threads, uint32_t *perm, double *sorted) {
    if (dtype != SP_DTYPE_FLOAT32 && dtype != SP_DTYPE_FLOAT64)
        return sp__fail(SP_EINVAL, "argsort: dtype: expected float32 or float64, got %s",
                        sp_dtype_name(dtype));
    if ((uint64_t)n > UINT32_MAX)
        return sp__fail(SP_EINVAL, "argsort: n: %zu scores, above the limit of %" PRIu32, n,
                        UINT32_MAX);
    if (n_threads < 0)
        return sp__fail(SP_EINVAL, "argsort: n_threads: expected 0 (all cores) or more, got %d",
                        n_threads);
    if (n == 0) return SP_OK;
    if (scores == NULL) return sp__fail(SP_EINVAL, "argsort: scores: NULL with n = %zu", n);
    if (perm == NULL) return sp__fail(SP_EINVAL, "argsort: perm: NULL with n = %zu", n);

    const int wide = dtype == SP_DTYPE_FLOAT64;
    if (n == 1) {
        perm[0] = 0;
        if (sorted) sorted[0] = double_from_key(key_from_score(scores, wide), wide);
        return SP_OK;
    }

    sort_ctx c = {0};
    c.scores = scores;
    c.stride = stride;
    c.n = n;
    c.n_threads = choose_threads(n_threads, n);
    c.n_digits = wide ? (64 + SORT_BITS - 1) / SORT_BITS : (32 + SORT_BITS - 1) / SORT_BITS;
    sp_status rc = radix_argsort(&c, wide, perm, sorted);
    sp__free(c.idx_scratch);
    sp__free(c.keys[1]);
    sp__free(c.keys[0]);
    sp__free(c.hist);
    return rc;
}
