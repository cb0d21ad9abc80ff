/* eval_boot.c — the Poisson bootstrap's random numbers, its scheduler and percentile intervals.
 *
 * Every row of replicate r is reweighted by a Poisson(1) count (the "Poisson bootstrap": it
 * approximates resampling n rows with replacement, and each row's count is independent, so rows
 * can be visited in any order by any thread). The count of (seed, r, row) is a pure function:
 * replicates are paired, and pair p = r / 2 draws one 64-bit value as the splitmix64 output at
 * counter (p << 32 | row) of the stream keyed by seed; the low half serves even r, the high half
 * odd r. A 32-bit uniform u becomes a count by counting the Poisson(1) CDF thresholds at or
 * below it (12 comparisons; the largest count is 12, whose tail probability is under 2^-32).
 * Because nothing depends on which thread drew what, replicates and so intervals are identical
 * for any thread count.
 *
 * Replicates are handed out in blocks through an atomic counter (sp__eval_boot_blocks) so that
 * threads that finish early take more blocks. */
#include "eval_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* floor(2^32 * P(X <= k)) rounded, for X ~ Poisson(1), k = 0 .. 11. */
const uint32_t sp__eval_pois_t[12] = {1580030169u, 3160060337u, 3950075422u, 4213413783u,
                                      4279248374u, 4292415292u, 4294609778u, 4294923276u,
                                      4294962463u, 4294966817u, 4294967253u, 4294967292u};

uint64_t sp__eval_seed_key(uint64_t seed) {
    uint64_t z = seed ^ 0x5eed50f7b0075ea1ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint32_t sp__eval_poisson(uint64_t seed, uint32_t replicate, uint32_t row) {
    uint64_t h = sp__eval_draw(sp__eval_seed_key(seed), replicate >> 1, row);
    return sp__eval_pois((replicate & 1) ? (uint32_t)(h >> 32) : (uint32_t)h);
}

void sp_eval_poisson_weights(uint64_t seed, uint32_t replicate, uint64_t first_row, size_t n,
                             uint32_t *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = sp__eval_poisson(seed, replicate, (uint32_t)(first_row + i));
}

/* ---- percentile intervals */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile_sorted(const double *v, uint32_t m, double q) {
    double h = (m - 1) * q;
    uint32_t lo = (uint32_t)floor(h);
    if (lo + 1 >= m) return v[m - 1];
    return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

void sp__eval_percentiles(double *values, uint32_t n, double level, double *lo, double *hi) {
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!isnan(values[i])) values[m++] = values[i];
    if (m == 0) {
        *lo = *hi = NAN;
        return;
    }
    qsort(values, m, sizeof(double), cmp_double);
    *lo = quantile_sorted(values, m, (1 - level) / 2);
    *hi = quantile_sorted(values, m, (1 + level) / 2);
}

/* ---- the block scheduler */

typedef struct blocks_ctx {
    void (*fn)(void *ctx, uint32_t r0, uint32_t r1);
    void *ctx;
    uint32_t replicates, block;
    _Atomic uint32_t next;
} blocks_ctx;

static void blocks_worker(void *p, int t, int n) {
    (void)t;
    (void)n;
    blocks_ctx *b = p;
    for (;;) {
        uint32_t r0 = atomic_fetch_add(&b->next, b->block);
        if (r0 >= b->replicates) break;
        uint32_t r1 = r0 + b->block < b->replicates ? r0 + b->block : b->replicates;
        b->fn(b->ctx, r0, r1);
    }
}

void sp__eval_boot_blocks(int n_threads, uint32_t replicates, uint32_t block,
                          void (*fn)(void *ctx, uint32_t r0, uint32_t r1), void *ctx) {
    blocks_ctx b = {fn, ctx, replicates, block ? block : 1, 0};
    uint32_t n_blocks = (replicates + b.block - 1) / b.block;
    if ((uint32_t)n_threads > n_blocks) n_threads = (int)n_blocks;
    sp__parallel(n_threads, blocks_worker, &b);
}

double *sp__eval_strata_scale(const sp__eval_data *d, uint64_t key, uint32_t r0, int *failed) {
    *failed = 0;
    if (!d->stratum) return NULL;
    const size_t ns = d->n_strata;
    double *scale = sp__calloc(ns * SP__BOOT_B + ns, sizeof(double));
    if (!scale) {
        *failed = 1;
        return NULL;
    }
    double *total = scale + ns * SP__BOOT_B; /* per stratum: the rows' own weight */
    for (uint64_t i = 0; i < d->n; i++) {
        const uint16_t h = d->stratum[i];
        const double w = d->w ? d->w[i] : 1.0;
        const uint32_t rid = sp__eval_rowid(d, i);
        double *acc = scale + (size_t)h * SP__BOOT_B;
        for (uint32_t b = 0; b < SP__BOOT_B; b += 2) {
            const uint64_t z = sp__eval_draw(key, (r0 + b) >> 1, rid);
            acc[b] += w * sp__eval_pois((uint32_t)z);
            acc[b + 1] += w * sp__eval_pois((uint32_t)(z >> 32));
        }
        total[h] += w;
    }
    for (size_t h = 0; h < ns; h++)
        for (uint32_t b = 0; b < SP__BOOT_B; b++) {
            double *f = &scale[h * SP__BOOT_B + b];
            *f = *f > 0 ? total[h] / *f : 0;
        }
    return scale;
}
