/* load_order.c — the epoch order as a pure function of (seed, epoch): keyed Feistel permutations
 * with cycle walking give position -> sample in O(1) time and memory, so resuming at any batch is
 * O(1) too. Block shuffle permutes the filter's groups (one per payload block) and the samples
 * within each group, so reads stay sequential within a block. */
#include "load_order.h"

#include <string.h>

/* A permutation of [0, n): a balanced Feistel network on the smallest even-width power of two
 * that holds n, walking the cycle until the value lands inside [0, n) (expected < 4 steps). */
uint64_t sp__perm(uint64_t x, uint64_t n, uint64_t key) {
    if (n <= 1) return 0;
    unsigned bits = 2;
    while (bits < 64 && (1ull << bits) < n)
        bits += 2;
    unsigned half = bits / 2;
    uint64_t mask = (1ull << half) - 1;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (unsigned round = 0; round < 4; round++) {
            uint64_t f =
                sp__mix64(key ^ (r * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)round << 56)) & mask;
            uint64_t t = l ^ f;
            l = r;
            r = t;
        }
        x = (l << half) | r;
    } while (x >= n);
    return x;
}

sp_status sp__order_new(const sp__selection *sel, sp_shuffle shuffle, uint64_t seed, uint64_t epoch,
                        sp__order **out) {
    *out = NULL;
    sp__order *o = sp__calloc(1, sizeof *o);
    if (!o) return sp__fail(SP_ENOMEM, "out of memory");
    o->sel = sel;
    o->shuffle = shuffle;
    o->key = sp__mix64(seed ^ sp__mix64(epoch ^ 0x5851f42d4c957f2dull));
    o->epoch = epoch;
    if (shuffle == SP_SHUFFLE_BLOCK && sel->n_groups > 0) {
        o->group_order = sp__malloc(sel->n_groups * sizeof *o->group_order);
        o->group_off = sp__malloc((sel->n_groups + 1) * sizeof *o->group_off);
        if (!o->group_order || !o->group_off) {
            sp__order_free(o);
            return sp__fail(SP_ENOMEM, "out of memory");
        }
        uint64_t off = 0;
        for (uint64_t k = 0; k < sel->n_groups; k++) {
            uint64_t g = sp__perm(k, sel->n_groups, o->key);
            o->group_order[k] = g;
            o->group_off[k] = off;
            off += sel->group_start[g + 1] - sel->group_start[g];
        }
        o->group_off[sel->n_groups] = off;
    }
    *out = o;
    return SP_OK;
}

void sp__order_free(sp__order *o) {
    if (!o) return;
    sp__free(o->group_order);
    sp__free(o->group_off);
    sp__free(o);
}

uint64_t sp__order_sample(const sp__order *o, uint64_t p) {
    const sp__selection *s = o->sel;
    uint64_t q;
    switch (o->shuffle) {
    case SP_SHUFFLE_GLOBAL:
        q = sp__perm(p, s->n, o->key);
        break;
    case SP_SHUFFLE_BLOCK: {
        size_t lo = 0, hi = s->n_groups; /* last k with group_off[k] <= p */
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (o->group_off[mid] <= p)
                lo = mid;
            else
                hi = mid;
        }
        uint64_t g = o->group_order[lo];
        uint64_t size = s->group_start[g + 1] - s->group_start[g];
        q = s->group_start[g] + sp__perm(p - o->group_off[lo], size, o->key ^ sp__mix64(g + 1));
        break;
    }
    default:
        q = p;
        break;
    }
    return s->ids ? s->ids[q] : q;
}
