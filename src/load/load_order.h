/* load_order.h — private to src/load: the selected samples and the epoch order over them. */
#ifndef SP_LOAD_ORDER_H
#define SP_LOAD_ORDER_H

#include "load_internal.h"

/* The samples a loader reads (after the filter), grouped by payload block. */
typedef struct sp__selection {
    uint64_t n;            /* selected samples */
    uint64_t *ids;         /* n dataset indices, ascending; NULL = identity (no filter) */
    uint64_t n_groups;     /* non-empty blocks */
    uint64_t *group_start; /* n_groups + 1 offsets into the selection */
} sp__selection;

/* One epoch's order. */
typedef struct sp__order {
    const sp__selection *sel;
    sp_shuffle shuffle;
    uint64_t key, epoch;
    uint64_t *group_order, *group_off; /* block shuffle: permuted groups, prefix sums */
} sp__order;

uint64_t sp__perm(uint64_t x, uint64_t n, uint64_t key);
sp_status sp__order_new(const sp__selection *sel, sp_shuffle shuffle, uint64_t seed, uint64_t epoch,
                        sp__order **out);
void sp__order_free(sp__order *o);
/* Dataset index of the sample at position p (0 <= p < sel->n) of the epoch order. */
uint64_t sp__order_sample(const sp__order *o, uint64_t p);

#endif
