/* softpipe/tree.h — the tree-ensemble runtime: load XGBoost models, compile them into a flat
 * layout, predict single rows and batches (module src/serve/).
 *
 * A model is read once from XGBoost's JSON format (XGBoost 1.x to 3.x: gbtree and dart boosters,
 * regression, binary, multiclass and ranking objectives, numeric and categorical splits, missing
 * values following each node's default direction) and compiled, with no external compiler, into
 * one of two layouts chosen per model (see src/serve/serve_tree.c for the measurements):
 *   - "perfect": every tree padded to a perfect binary tree of the model's largest depth (up to
 *     SP_TREE_PERFECT_MAX_DEPTH) with nodes in breadth-first order, so a row walks a tree in a
 *     fixed number of branch-free steps (child = 2 i + 1 + go_right) and a block of rows walks it
 *     together, interleaved;
 *   - "general": nodes in pre-order, the left child implicit (the next node), for deep trees and
 *     categorical splits.
 * Predicting parses nothing and allocates nothing per call; batches run on a pool of threads the
 * model starts on its first large batch. Outputs match XGBoost's to float32 rounding: a numeric
 * split goes left iff x < threshold compared in float32, NaN follows default_left, a categorical
 * split sends the categories in its set right and all others left.
 *
 * Thread-safety: a loaded model is read-only; sp_tree_predict may run on one model from any number
 * of threads at once.
 */
#ifndef SOFTPIPE_TREE_H
#define SOFTPIPE_TREE_H

#include "softpipe/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_TREE_PERFECT_MAX_DEPTH 10

typedef struct sp_tree_model sp_tree_model;

/* Loads and compiles an XGBoost model file: JSON (.json) or Universal Binary JSON (.ubj),
 * recognized by content. Errors: SP_ENOTFOUND / SP_EIO / SP_EINVAL
 * (a folder) for the file; SP_EUNSUPPORTED for a tree deeper than 2,000 levels;
 * SP_EBADINPUT for malformed JSON or a model that breaks XGBoost's invariants, the message naming
 * the JSON path ("learner/gradient_booster/model/trees/12/left_children/3: child 999 is out of
 * range (the tree has 41 nodes)"); SP_EUNSUPPORTED for an objective or booster this runtime does
 * not implement, naming it. *out is the model (free with sp_tree_model_free) or NULL. */
SP_API sp_status sp_tree_model_load(const char *path, sp_tree_model **out /* OUT */);

/* The same from bytes in memory; `name` is used in messages. */
SP_API sp_status sp_tree_model_load_buffer(const char *name, const void *data, size_t len,
                                           sp_tree_model **out /* OUT */);

SP_API void sp_tree_model_free(sp_tree_model *model);

/* Features each row must have (XGBoost's num_feature). */
SP_API uint32_t sp_tree_model_num_features(const sp_tree_model *model);
/* Classes of a multiclass model (num_class), else 1. */
SP_API uint32_t sp_tree_model_num_classes(const sp_tree_model *model);
/* Values predicted per row: num_classes for multi:softprob and for margins of multiclass
 * models, 1 otherwise (multi:softmax predicts the class index). */
SP_API uint32_t sp_tree_model_num_outputs(const sp_tree_model *model, int margin);
/* The objective's name ("binary:logistic"); static storage. */
SP_API const char *sp_tree_model_objective(const sp_tree_model *model);
/* Trees in the model, and the layout it was compiled to ("perfect" or "general"). */
SP_API uint32_t sp_tree_model_num_trees(const sp_tree_model *model);
SP_API const char *sp_tree_model_layout(const sp_tree_model *model);
/* Bytes held by the compiled model. */
SP_API size_t sp_tree_model_mem_usage(const sp_tree_model *model);

/* Predicts n_rows rows of a dense float32 matrix.
 *   x:          row i starts at x + i * row_stride (in floats; row_stride >= num_features);
 *               NaN is a missing value. Columns past num_features are ignored.
 *   margin:     0 = the objective's output (probability, expected count, class index, ...),
 *               1 = the raw margin (sum of leaves plus the base margin).
 *   n_threads:  0 = all cores for large batches (single rows and small batches always run on the
 *               caller's thread), 1 = the caller's thread only.
 *   out:        n_rows * sp_tree_model_num_outputs(model, margin) floats, row-major.
 * Returns SP_OK or SP_EINVAL (a NULL pointer, row_stride < num_features). Thread-safe. */
SP_API sp_status sp_tree_predict(const sp_tree_model *model, const float *x, size_t n_rows,
                                 size_t row_stride, int margin, int n_threads, float *out);

#ifdef __cplusplus
}
#endif
#endif
