/* serve_tree_load.c — reads XGBoost's JSON model format into an sp__xmodel, checking every
 * invariant the predictor relies on (child indices in range, every node reached exactly once from
 * the root, feature indices below num_feature, categories well formed), so that a malformed or
 * hostile file is an error naming its JSON path and never a crash at predict time.
 *
 * Layout read (XGBoost 1.x to 3.x):
 *   learner/learner_model_param: num_feature, num_class, base_score ("5E-1", or "[5E-1]" since
 *     2.0), all strings
 *   learner/objective/name
 *   learner/gradient_booster: name "gbtree" with model/{trees, tree_info}, or "dart" with
 *     gbtree/model/{...} and weight_drop
 *   trees[i]: left_children, right_children, split_indices, split_conditions, default_left,
 *     split_type, categories, categories_nodes, categories_segments, categories_sizes,
 *     tree_param/num_nodes, tree_param/size_leaf_vector
 * base_score is stored in output space; it becomes margin through the objective's link, in
 * float32 as XGBoost computes it. */
#include "serve_json.h"
#include "serve_tree_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct objective_def {
    const char *name;
    sp__link link;
} objective_def;

static const objective_def OBJECTIVES[] = {
    {"binary:logistic", SP__LINK_LOGISTIC},
    {"binary:logitraw", SP__LINK_IDENTITY},
    {"reg:logistic", SP__LINK_LOGISTIC},
    {"reg:squarederror", SP__LINK_IDENTITY},
    {"reg:linear", SP__LINK_IDENTITY},
    {"reg:squaredlogerror", SP__LINK_IDENTITY},
    {"reg:pseudohubererror", SP__LINK_IDENTITY},
    {"reg:absoluteerror", SP__LINK_IDENTITY},
    {"count:poisson", SP__LINK_LOG},
    {"reg:gamma", SP__LINK_LOG},
    {"reg:tweedie", SP__LINK_LOG},
    {"multi:softprob", SP__LINK_SOFTMAX},
    {"multi:softmax", SP__LINK_ARGMAX},
    {"rank:pairwise", SP__LINK_IDENTITY},
    {"rank:ndcg", SP__LINK_IDENTITY},
    {"rank:map", SP__LINK_IDENTITY},
};

/* ---- JSON helpers that name the path on failure */

typedef struct ctx {
    const char *name;
    const sp__json *j;
    char path[256];
} ctx;

typedef uint32_t jv; /* a value index in c->j */

static sp_status bad(const ctx *c, const char *what, ...) SP__PRINTF(2, 3);
static sp_status bad(const ctx *c, const char *what, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, what);
    vsnprintf(msg, sizeof msg, what, ap);
    va_end(ap);
    return sp__fail(SP_EBADINPUT, "%s: %s: %s", c->name, c->path, msg);
}

static jv get(ctx *c, jv obj, const char *key, const char *base) {
    snprintf(c->path, sizeof c->path, "%s/%s", base, key);
    return sp__json_get(c->j, obj, key);
}

static int is_type(const ctx *c, jv v, int type) {
    return sp__json_type(c->j, v) == type;
}

/* A number written as a JSON string ("50", "5E-1", "[5E-1]") or as a number. */
static sp_status string_number(ctx *c, jv v, double *out) {
    if (is_type(c, v, SP__J_NUMBER)) {
        sp__json_double(c->j, v, out);
        return SP_OK;
    }
    char text[128];
    if (sp__json_string(c->j, v, text, sizeof text) < 0)
        return bad(c, "expected a number or a string holding one");
    const char *s = text;
    while (*s == '[' || *s == ' ')
        s++;
    char *end;
    *out = strtod(s, &end);
    if (end == s) return bad(c, "'%s' is not a number", text);
    while (*end == ']' || *end == ' ')
        end++;
    if (*end) return bad(c, "'%s' is not one number", text);
    return SP_OK;
}

static sp_status count_field(ctx *c, jv obj, const char *key, const char *base, uint32_t max,
                             uint32_t *out) {
    jv v = get(c, obj, key, base);
    if (v == SP__J_NONE) return bad(c, "missing");
    double d;
    SP_TRY(string_number(c, v, &d));
    if (!(d >= 0 && d <= max) || d != floor(d))
        return bad(c, "%g is not a count in 0 .. %u", d, max);
    *out = (uint32_t)d;
    return SP_OK;
}

/* An array of n numbers at base/key (n = 0 allowed when allow_empty). */
static sp_status number_array(ctx *c, jv tree, const char *key, const char *base, size_t n,
                              jv *out) {
    jv a = get(c, tree, key, base);
    if (!is_type(c, a, SP__J_ARRAY)) return bad(c, "missing or not an array");
    if (sp__json_len(c->j, a) != n)
        return bad(c, "has %u entries, the tree has %zu nodes", sp__json_len(c->j, a), n);
    for (uint32_t i = 0; i < n; i++) {
        int t = sp__json_type(c->j, sp__json_at(c->j, a, i));
        if (t != SP__J_NUMBER && t != SP__J_TRUE && t != SP__J_FALSE)
            return bad(c, "entry %u is not a number", i);
    }
    *out = a;
    return SP_OK;
}

static double num_at(const ctx *c, jv a, uint32_t i) {
    double d = NAN;
    sp__json_double(c->j, sp__json_at(c->j, a, i), &d);
    return d;
}

static void tree_free(sp__xtree *t) {
    sp__free(t->left);
    sp__free(t->right);
    sp__free(t->feature);
    sp__free(t->value);
    sp__free(t->default_left);
    sp__free(t->categorical);
    sp__free(t->cat_begin);
    sp__free(t->cat_count);
    sp__free(t->cats);
    memset(t, 0, sizeof *t);
}

void sp__xmodel_free(sp__xmodel *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->n_trees; i++)
        tree_free(&m->trees[i]);
    sp__free(m->trees);
    memset(m, 0, sizeof *m);
}

/* Every node must be reached exactly once from the root (no cycles, no sharing, nothing
 * unreachable), and the tree at most SP__XTREE_MAX_DEPTH deep, so that the compiler's recursive
 * walks have a bounded depth. */
#define SP__XTREE_MAX_DEPTH 2000

static sp_status check_shape(ctx *c, const sp__xtree *t) {
    uint8_t *seen = sp__calloc(t->n, 1);
    uint32_t *stack = sp__malloc((size_t)t->n * 2 * sizeof(uint32_t)); /* node, depth pairs */
    sp_status rc = SP_OK;
    if (!seen || !stack) {
        rc = sp__fail(SP_ENOMEM, "out of memory");
        goto out;
    }
    size_t top = 0, reached = 0;
    stack[top++] = 0;
    stack[top++] = 0;
    while (top) {
        uint32_t depth = stack[--top], i = stack[--top];
        if (seen[i]) {
            rc = bad(c, "node %u is reached twice (the children arrays do not form a tree)", i);
            goto out;
        }
        if (depth > SP__XTREE_MAX_DEPTH) {
            rc = sp__fail(SP_EUNSUPPORTED, "%s: %s: the tree is deeper than %d levels", c->name,
                          c->path, SP__XTREE_MAX_DEPTH);
            goto out;
        }
        seen[i] = 1;
        reached++;
        if (t->left[i] < 0) continue;
        if (top + 4 > 2 * (size_t)t->n) {
            rc = bad(c, "the children arrays do not form a tree");
            goto out;
        }
        stack[top++] = (uint32_t)t->right[i];
        stack[top++] = depth + 1;
        stack[top++] = (uint32_t)t->left[i];
        stack[top++] = depth + 1;
    }
    if (reached != t->n)
        rc = bad(c, "%zu of %u nodes are not reachable from the root", t->n - reached, t->n);
out:
    sp__free(seen);
    sp__free(stack);
    return rc;
}

static sp_status parse_tree(ctx *c, jv jt, const char *base, uint32_t num_feature, sp__xtree *t) {
    jv param = get(c, jt, "tree_param", base);
    char pbase[200];
    snprintf(pbase, sizeof pbase, "%s/tree_param", base);
    uint32_t n, leaf_vec = 0;
    SP_TRY(count_field(c, param, "num_nodes", pbase, 1u << 30, &n));
    if (n == 0) return bad(c, "a tree has at least one node");
    if (sp__json_get(c->j, param, "size_leaf_vector") != SP__J_NONE) {
        SP_TRY(count_field(c, param, "size_leaf_vector", pbase, 1u << 30, &leaf_vec));
        if (leaf_vec > 1)
            return sp__fail(SP_EUNSUPPORTED,
                            "%s: %s: vector leaves (multi-target trees, size %u) "
                            "are not supported",
                            c->name, c->path, leaf_vec);
    }
    jv left, right, feat, cond, dl;
    SP_TRY(number_array(c, jt, "left_children", base, n, &left));
    SP_TRY(number_array(c, jt, "right_children", base, n, &right));
    SP_TRY(number_array(c, jt, "split_indices", base, n, &feat));
    SP_TRY(number_array(c, jt, "split_conditions", base, n, &cond));
    SP_TRY(number_array(c, jt, "default_left", base, n, &dl));
    jv stype = get(c, jt, "split_type", base);
    if (sp__json_len(c->j, stype) != 0)
        SP_TRY(number_array(c, jt, "split_type", base, n, &stype));
    else
        stype = SP__J_NONE;
    t->n = n;
    t->left = sp__malloc(n * sizeof(int32_t));
    t->right = sp__malloc(n * sizeof(int32_t));
    t->feature = sp__malloc(n * sizeof(uint32_t));
    t->value = sp__malloc(n * sizeof(float));
    t->default_left = sp__malloc(n);
    t->categorical = sp__calloc(n, 1);
    t->cat_begin = sp__calloc(n, sizeof(uint32_t));
    t->cat_count = sp__calloc(n, sizeof(uint32_t));
    if (!t->left || !t->right || !t->feature || !t->value || !t->default_left || !t->categorical ||
        !t->cat_begin || !t->cat_count)
        return sp__fail(SP_ENOMEM, "out of memory loading %s", c->name);
    for (uint32_t i = 0; i < n; i++) {
        double l = num_at(c, left, i), r = num_at(c, right, i), f = num_at(c, feat, i);
        if (l == -1) {
            t->left[i] = t->right[i] = -1;
            t->feature[i] = 0;
        } else {
            if (!(l >= 1 && l < n && l == floor(l))) {
                snprintf(c->path, sizeof c->path, "%s/left_children/%u", base, i);
                return bad(c, "child %g is out of range (the tree has %u nodes)", l, n);
            }
            if (!(r >= 1 && r < n && r == floor(r))) {
                snprintf(c->path, sizeof c->path, "%s/right_children/%u", base, i);
                return bad(c, "child %g is out of range (the tree has %u nodes)", r, n);
            }
            if (!(f >= 0 && f < num_feature && f == floor(f))) {
                snprintf(c->path, sizeof c->path, "%s/split_indices/%u", base, i);
                return bad(c, "feature %g is out of range (the model has %u features)", f,
                           num_feature);
            }
            t->left[i] = (int32_t)l;
            t->right[i] = (int32_t)r;
            t->feature[i] = (uint32_t)f;
        }
        float v = NAN;
        sp__json_float(c->j, sp__json_at(c->j, cond, i), &v); /* float32 from the text */
        /* a categorical split's threshold is unused (XGBoost writes NaN there) */
        int cat_node = stype != SP__J_NONE && num_at(c, stype, i) == 1 && t->left[i] >= 0;
        if (cat_node) v = 0;
        if (!isfinite(v)) {
            snprintf(c->path, sizeof c->path, "%s/split_conditions/%u", base, i);
            return bad(c, "%g is not a finite float32", (double)v);
        }
        t->value[i] = v;
        t->default_left[i] = num_at(c, dl, i) != 0;
        if (stype != SP__J_NONE && num_at(c, stype, i) == 1 && t->left[i] >= 0)
            t->categorical[i] = 1;
    }
    snprintf(c->path, sizeof c->path, "%s", base);
    SP_TRY(check_shape(c, t));

    /* categories: categories_nodes[j] has categories_sizes[j] categories starting at
     * categories_segments[j] in categories */
    jv cnodes = get(c, jt, "categories_nodes", base);
    uint32_t ncn = sp__json_len(c->j, cnodes);
    if (ncn) {
        jv cseg = get(c, jt, "categories_segments", base);
        jv csz = get(c, jt, "categories_sizes", base);
        jv cats = get(c, jt, "categories", base);
        if (sp__json_len(c->j, cseg) != ncn || sp__json_len(c->j, csz) != ncn ||
            !is_type(c, cats, SP__J_ARRAY))
            return bad(c, "categories_nodes, _segments and _sizes must be arrays of one length");
        size_t total = sp__json_len(c->j, cats);
        t->cats = sp__malloc((total ? total : 1) * sizeof(uint32_t));
        if (!t->cats) return sp__fail(SP_ENOMEM, "out of memory loading %s", c->name);
        for (uint32_t q = 0; q < total; q++) {
            double v = NAN;
            if (sp__json_double(c->j, sp__json_at(c->j, cats, q), &v) < 0 ||
                !(v >= 0 && v < (1u << 24)) || v != floor(v)) {
                snprintf(c->path, sizeof c->path, "%s/categories/%u", base, q);
                return bad(c, "%g is not a category (a non-negative integer)", v);
            }
            t->cats[q] = (uint32_t)v;
        }
        t->n_cats = (uint32_t)total;
        for (uint32_t j = 0; j < ncn; j++) {
            double nd = num_at(c, cnodes, j), sg = num_at(c, cseg, j), sz = num_at(c, csz, j);
            if (!(nd >= 0 && nd < n && nd == floor(nd)) || !(sg >= 0 && sz >= 0) ||
                sg + sz > (double)total || sg != floor(sg) || sz != floor(sz)) {
                snprintf(c->path, sizeof c->path, "%s/categories_nodes/%u", base, j);
                return bad(c, "node %g, segment %g, size %g do not fit the %zu categories", nd, sg,
                           sz, total);
            }
            uint32_t node = (uint32_t)nd;
            if (!t->categorical[node]) {
                snprintf(c->path, sizeof c->path, "%s/categories_nodes/%u", base, j);
                return bad(c, "node %u has categories but is not a categorical split", node);
            }
            t->cat_begin[node] = (uint32_t)sg;
            t->cat_count[node] = (uint32_t)sz;
        }
    }
    return SP_OK;
}

sp_status sp__xmodel_parse(const char *name, const char *json, size_t len, sp__xmodel *out) {
    memset(out, 0, sizeof *out);
    sp__json js;
    SP_TRY(sp__json_parse(name, json, len, &js));
    ctx c = {name, &js, ""};
    const jv root = 0;
    sp__xmodel m;
    memset(&m, 0, sizeof m);
    sp_status rc = SP_OK;
    jv learner = get(&c, root, "learner", "");
    jv mp = get(&c, learner, "learner_model_param", "learner");
    if (!is_type(&c, learner, SP__J_OBJECT) || !is_type(&c, mp, SP__J_OBJECT)) {
        rc = bad(&c, "missing: this is not an XGBoost JSON model (save it with "
                     "Booster.save_model('model.json'))");
        goto out;
    }
    rc =
        count_field(&c, mp, "num_feature", "learner/learner_model_param", 1u << 24, &m.num_feature);
    if (rc == SP_OK)
        rc =
            count_field(&c, mp, "num_class", "learner/learner_model_param", 1u << 16, &m.num_class);
    double base_score = 0.5;
    if (rc == SP_OK && sp__json_get(&js, mp, "base_score") != SP__J_NONE) {
        jv bs = get(&c, mp, "base_score", "learner/learner_model_param");
        rc = string_number(&c, bs, &base_score);
    }
    if (rc < 0) goto out;
    if (m.num_feature == 0) {
        rc = bad(&c, "the model has no features");
        goto out;
    }
    m.n_groups = m.num_class > 1 ? m.num_class : 1;

    /* the objective and its link */
    jv obj = get(&c, get(&c, learner, "objective", "learner"), "name", "learner/objective");
    char oname[64];
    if (sp__json_string(&js, obj, oname, sizeof oname) < 0) {
        rc = bad(&c, "missing or not a string");
        goto out;
    }
    int found = 0;
    for (size_t i = 0; i < sizeof OBJECTIVES / sizeof OBJECTIVES[0]; i++)
        if (strcmp(OBJECTIVES[i].name, oname) == 0) {
            m.link = OBJECTIVES[i].link;
            snprintf(m.objective, sizeof m.objective, "%s", OBJECTIVES[i].name);
            found = 1;
        }
    if (!found) {
        rc = sp__fail(SP_EUNSUPPORTED,
                      "%s: learner/objective/name: objective '%.60s' is not "
                      "supported (binary:logistic, binary:logitraw, "
                      "reg:logistic, reg:squarederror, count:poisson, reg:gamma, "
                      "reg:tweedie, multi:softprob, multi:softmax, rank:pairwise "
                      "and a few identity-link others are)",
                      name, oname);
        goto out;
    }
    float bsf = (float)base_score;
    if (!isfinite(bsf)) {
        snprintf(c.path, sizeof c.path, "learner/learner_model_param/base_score");
        rc = bad(&c, "%g is not a finite float32", base_score);
        goto out;
    }
    if (m.link == SP__LINK_LOGISTIC) {
        if (!(bsf > 0 && bsf < 1)) {
            snprintf(c.path, sizeof c.path, "learner/learner_model_param/base_score");
            rc = bad(&c, "%g is not a probability in (0, 1)", base_score);
            goto out;
        }
        m.base_margin = -logf(1.0f / bsf - 1.0f);
    } else if (m.link == SP__LINK_LOG) {
        if (!(bsf > 0)) {
            snprintf(c.path, sizeof c.path, "learner/learner_model_param/base_score");
            rc = bad(&c, "%g must be positive for a log link", base_score);
            goto out;
        }
        m.base_margin = logf(bsf);
    } else {
        m.base_margin = bsf;
    }

    /* the booster */
    jv gb = get(&c, learner, "gradient_booster", "learner");
    jv gbname = get(&c, gb, "name", "learner/gradient_booster");
    char bname[48];
    if (sp__json_string(&js, gbname, bname, sizeof bname) < 0) {
        rc = bad(&c, "missing or not a string");
        goto out;
    }
    jv model;
    jv weights = SP__J_NONE;
    const char *mbase;
    if (strcmp(bname, "gbtree") == 0) {
        model = get(&c, gb, "model", "learner/gradient_booster");
        mbase = "learner/gradient_booster/model";
    } else if (strcmp(bname, "dart") == 0) {
        model = get(&c, get(&c, gb, "gbtree", "learner/gradient_booster"), "model",
                    "learner/gradient_booster/gbtree");
        weights = get(&c, gb, "weight_drop", "learner/gradient_booster");
        mbase = "learner/gradient_booster/gbtree/model";
    } else {
        rc = sp__fail(SP_EUNSUPPORTED,
                      "%s: learner/gradient_booster/name: booster '%.40s' is "
                      "not supported (gbtree and dart are)",
                      name, bname);
        goto out;
    }
    jv trees = get(&c, model, "trees", mbase);
    if (!is_type(&c, trees, SP__J_ARRAY)) {
        rc = bad(&c, "missing or not an array");
        goto out;
    }
    jv info = get(&c, model, "tree_info", mbase);
    uint32_t nt = sp__json_len(&js, trees);
    if (!is_type(&c, info, SP__J_ARRAY) || sp__json_len(&js, info) != nt) {
        rc = bad(&c, "must be an array with one entry per tree (%u)", nt);
        goto out;
    }
    if (weights != SP__J_NONE &&
        (!is_type(&c, weights, SP__J_ARRAY) || sp__json_len(&js, weights) != nt)) {
        snprintf(c.path, sizeof c.path, "learner/gradient_booster/weight_drop");
        rc = bad(&c, "must be an array with one weight per tree (%u)", nt);
        goto out;
    }
    m.trees = sp__calloc(nt ? nt : 1, sizeof(sp__xtree));
    if (!m.trees) {
        rc = sp__fail(SP_ENOMEM, "out of memory loading %s", name);
        goto out;
    }
    m.n_trees = (uint32_t)nt;
    for (uint32_t i = 0; i < nt && rc == SP_OK; i++) {
        char base[160];
        snprintf(base, sizeof base, "%s/trees/%u", mbase, i);
        rc = parse_tree(&c, sp__json_at(&js, trees, i), base, m.num_feature, &m.trees[i]);
        if (rc < 0) break;
        double g = num_at(&c, info, i);
        if (!(g >= 0 && g < m.n_groups) || g != floor(g)) {
            snprintf(c.path, sizeof c.path, "%s/tree_info/%u", mbase, i);
            rc = bad(&c, "group %g is out of range (the model has %u outputs)", g, m.n_groups);
            break;
        }
        m.trees[i].group = (uint32_t)g;
        m.trees[i].weight = 1.0f;
        if (weights != SP__J_NONE) {
            double wv = num_at(&c, weights, i);
            if (!isfinite(wv)) {
                snprintf(c.path, sizeof c.path, "learner/gradient_booster/weight_drop/%u", i);
                rc = bad(&c, "not a finite number");
                break;
            }
            m.trees[i].weight = (float)wv;
            if (!isfinite(m.trees[i].weight)) {
                snprintf(c.path, sizeof c.path, "learner/gradient_booster/weight_drop/%u", i);
                rc = bad(&c, "%g is not a finite float32", wv);
                break;
            }
        }
    }
out:
    sp__json_free(&js);
    if (rc < 0) {
        sp__xmodel_free(&m);
        return rc;
    }
    *out = m;
    return SP_OK;
}
