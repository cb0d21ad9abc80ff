/* serve_tree_internal.h — private to src/serve: the tree model as loaded (serve_tree_load.c) and as
 * compiled for prediction (serve_tree.c). Not installed. */
#ifndef SP_SERVE_TREE_INTERNAL_H
#define SP_SERVE_TREE_INTERNAL_H

#include "core_internal.h"
#include "softpipe/tree.h"

/* ---- the loaded model: XGBoost's arrays, validated */

typedef struct sp__xtree {
    uint32_t n;    /* nodes */
    int32_t *left; /* -1 for a leaf */
    int32_t *right;
    uint32_t *feature;
    float *value; /* threshold of a split, value of a leaf (XGBoost's split_conditions) */
    uint8_t *default_left;
    uint8_t *categorical; /* split_type == 1 */
    uint32_t *cat_begin;  /* per node: first index into cats (categorical nodes only) */
    uint32_t *cat_count;
    uint32_t *cats; /* the categories of all categorical nodes, sorted per node */
    uint32_t n_cats;
    uint32_t group; /* output group (class) of the tree: tree_info */
    float weight;   /* dart weight_drop, else 1 */
} sp__xtree;

typedef enum sp__link {
    SP__LINK_IDENTITY = 0,
    SP__LINK_LOGISTIC = 1, /* margin = logit(p); output = sigmoid(margin) */
    SP__LINK_LOG = 2,      /* margin = log(y); output = exp(margin) */
    SP__LINK_SOFTMAX = 3,  /* multi:softprob */
    SP__LINK_ARGMAX = 4    /* multi:softmax */
} sp__link;

typedef struct sp__xmodel {
    uint32_t num_feature;
    uint32_t num_class; /* 0 or 1 for single-output models, as XGBoost writes it */
    uint32_t n_groups;  /* outputs of the margin: max(1, num_class) */
    float base_margin;  /* base_score turned into margin space by the objective's link */
    char objective[48];
    sp__link link;
    uint32_t n_trees;
    sp__xtree *trees;
} sp__xmodel;

/* Parses an XGBoost JSON model. `name` is used in messages. On failure *out is untouched and the
 * message names the JSON path at fault. */
sp_status sp__xmodel_parse(const char *name, const char *json, size_t len, sp__xmodel *out);
void sp__xmodel_free(sp__xmodel *m);

#endif
