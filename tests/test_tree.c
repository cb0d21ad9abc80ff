/* test_tree.c — unit tests of the tree-ensemble runtime (softpipe/tree.h) on hand-written XGBoost
 * JSON models whose answers are worked out by hand: a stump (left iff x < threshold in float32,
 * NaN follows default_left, margin vs each link's output, base_score through the link), multiclass
 * grouping by tree_info, DART weights, categorical splits; random models checked against a small
 * reference walker written here, on both layouts ("perfect" and "general"); every error path with
 * its code and the JSON path in the message; a fault loop over every allocation; and four threads
 * predicting on one shared model (test_tree_predict_concurrent, run under TSan). Parity with
 * XGBoost itself lives in tests/python/test_tree.py. */
#include "core_internal.h"
#include "softpipe.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- building model text */

typedef struct sb {
    char *s;
    size_t n, cap;
} sb;

static void sb_printf(sb *b, const char *fmt, ...) SP__PRINTF(2, 3);
static void sb_printf(sb *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        assert_true(k >= 0);
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->n + (size_t)k)
            cap *= 2;
        b->s = realloc(b->s, cap);
        assert_non_null(b->s);
        b->cap = cap;
    }
}

/* A copy of s with the first occurrence of `from` replaced by `to` (which must occur). */
static char *subst(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) fail_msg("'%s' does not occur in the model text", from);
    size_t a = (size_t)(at - s), fl = strlen(from), tl = strlen(to), n = strlen(s);
    char *r = malloc(n - fl + tl + 1);
    assert_non_null(r);
    memcpy(r, s, a);
    memcpy(r + a, to, tl);
    memcpy(r + a + tl, at + fl, n - a - fl + 1);
    return r;
}

#define MODEL_HEAD(obj, bs, ncls, nfeat)                                                           \
    "{\"learner\":{\"learner_model_param\":{\"base_score\":\"" bs "\",\"num_class\":\"" ncls       \
    "\",\"num_feature\":\"" nfeat "\"},\"objective\":{\"name\":\"" obj "\"},"
#define GBTREE(trees, info)                                                                        \
    "\"gradient_booster\":{\"name\":\"gbtree\",\"model\":{\"trees\":[" trees                       \
    "],\"tree_info\":[" info "]}}},\"version\":[1,7,4]}"
#define DART(trees, info, weights)                                                                 \
    "\"gradient_booster\":{\"name\":\"dart\",\"gbtree\":{\"name\":\"gbtree\",\"model\":{"          \
    "\"trees\":[" trees "],\"tree_info\":[" info "]}},\"weight_drop\":[" weights                   \
    "]}},\"version\":[1,7,4]}"
#define NO_CATS                                                                                    \
    "\"categories\":[],\"categories_nodes\":[],\"categories_segments\":[],\"categories_sizes\":[]"
/* One split on feature f at threshold thr, leaves l (x < thr) and r. */
#define STUMP(f, thr, l, r, dl)                                                                    \
    "{\"tree_param\":{\"num_nodes\":\"3\",\"size_leaf_vector\":\"0\"},"                            \
    "\"left_children\":[1,-1,-1],\"right_children\":[2,-1,-1],\"split_indices\":[" f ",0,0],"      \
    "\"split_conditions\":[" thr "," l "," r "],\"default_left\":[" dl ",0,0],"                    \
    "\"split_type\":[0,0,0]," NO_CATS "}"
/* A tree that is one leaf. */
#define LEAF(v)                                                                                    \
    "{\"tree_param\":{\"num_nodes\":\"1\",\"size_leaf_vector\":\"0\"},"                            \
    "\"left_children\":[-1],\"right_children\":[-1],\"split_indices\":[0],"                        \
    "\"split_conditions\":[" v "],\"default_left\":[0],\"split_type\":[0]," NO_CATS "}"
/* A categorical split on feature f: categories 1, 3 and 40 go right (leaf 5), others left (-5). */
#define CAT_STUMP(f, dl)                                                                           \
    "{\"tree_param\":{\"num_nodes\":\"3\",\"size_leaf_vector\":\"0\"},"                            \
    "\"left_children\":[1,-1,-1],\"right_children\":[2,-1,-1],\"split_indices\":[" f ",0,0],"      \
    "\"split_conditions\":[0.0,-5.0,5.0],\"default_left\":[" dl ",0,0],"                           \
    "\"split_type\":[1,0,0],\"categories\":[1,3,40],\"categories_nodes\":[0],"                     \
    "\"categories_segments\":[0],\"categories_sizes\":[3]}"

/* binary:logistic, base_score 0.5 (margin 0), x1 < 0.5 -> -1.5 else 2, NaN left. */
static const char STUMP_MODEL[] = MODEL_HEAD("binary:logistic", "5E-1", "0", "2")
    GBTREE(STUMP("1", "0.5", "-1.5", "2.0", "1"), "0");

static sp_tree_model *load_text(const char *text) {
    sp_tree_model *m = NULL;
    sp_status rc = sp_tree_model_load_buffer("m.json", text, strlen(text), &m);
    if (rc != SP_OK) fail_msg("load failed (%d): %s", rc, sp_errmsg());
    assert_non_null(m);
    return m;
}

/* Loading must fail with `code` and a message holding every non-NULL substring. */
static void expect_error(const char *text, sp_status code, const char *sub1, const char *sub2) {
    sp_tree_model *m = (sp_tree_model *)&m; /* must be reset to NULL */
    sp__errmsg_clear();
    sp_status rc = sp_tree_model_load_buffer("m.json", text, strlen(text), &m);
    if (rc != code) {
        if (rc == SP_OK) sp_tree_model_free(m);
        fail_msg("expected %d, got %d (%s) for: %.300s", code, rc, rc ? sp_errmsg() : "", text);
    }
    assert_null(m);
    const char *msg = sp_errmsg();
    if (strncmp(msg, "m.json", 6) != 0) fail_msg("message does not name the model: %s", msg);
    if (sub1 && !strstr(msg, sub1)) fail_msg("'%s' not in message: %s", sub1, msg);
    if (sub2 && !strstr(msg, sub2)) fail_msg("'%s' not in message: %s", sub2, msg);
}

static void expect_subst_error(const char *base, const char *from, const char *to, sp_status code,
                               const char *sub1, const char *sub2) {
    char *t = subst(base, from, to);
    expect_error(t, code, sub1, sub2);
    free(t);
}

static float predict1(const sp_tree_model *m, float x0, float x1, int margin) {
    const float x[2] = {x0, x1};
    float out = NAN;
    assert_int_equal(sp_tree_predict(m, x, 1, 2, margin, 1, &out), SP_OK);
    return out;
}

static float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

/* ---- hand-worked models */

static void test_tree_stump_numeric(void **state) {
    (void)state;
    sp_tree_model *m = load_text(STUMP_MODEL);
    assert_int_equal(sp_tree_model_num_features(m), 2);
    assert_int_equal(sp_tree_model_num_classes(m), 1);
    assert_int_equal(sp_tree_model_num_outputs(m, 0), 1);
    assert_int_equal(sp_tree_model_num_outputs(m, 1), 1);
    assert_int_equal(sp_tree_model_num_trees(m), 1);
    assert_string_equal(sp_tree_model_objective(m), "binary:logistic");
    assert_string_equal(sp_tree_model_layout(m), "perfect");
    assert_true(sp_tree_model_mem_usage(m) > 0);

    /* left iff x < threshold; the threshold itself goes right */
    assert_true(predict1(m, 0, 0.25f, 1) == -1.5f);
    assert_true(predict1(m, 0, 0.5f, 1) == 2.0f);
    assert_true(predict1(m, 0, nextafterf(0.5f, 0), 1) == -1.5f);
    assert_true(predict1(m, 0, -INFINITY, 1) == -1.5f);
    assert_true(predict1(m, 0, INFINITY, 1) == 2.0f);
    assert_true(predict1(m, 0, 1e30f, 1) == 2.0f);
    assert_true(predict1(m, 0, NAN, 1) == -1.5f);    /* default_left */
    assert_true(predict1(m, NAN, 0.75f, 1) == 2.0f); /* the other feature does not matter */
    assert_true(predict1(m, 1e30f, 0.25f, 1) == -1.5f);
    /* output: the logistic of the margin */
    assert_true(predict1(m, 0, 0.25f, 0) == sigmoidf(-1.5f));
    assert_true(predict1(m, 0, 0.75f, 0) == sigmoidf(2.0f));
    assert_true(predict1(m, 0, NAN, 0) == sigmoidf(-1.5f));

    /* a batch with a wider row stride (the extra column is ignored) */
    const float x[4 * 3] = {0, 0.25f, 99, 0, 0.5f, -99, 0, NAN, 0, 7, 0.75f, NAN};
    float out[4];
    assert_int_equal(sp_tree_predict(m, x, 4, 3, 1, 1, out), SP_OK);
    assert_true(out[0] == -1.5f && out[1] == 2.0f && out[2] == -1.5f && out[3] == 2.0f);
    sp_tree_model_free(m);

    /* default right */
    char *t = subst(STUMP_MODEL, "\"default_left\":[1,0,0]", "\"default_left\":[0,0,0]");
    m = load_text(t);
    assert_true(predict1(m, 0, NAN, 1) == 2.0f);
    assert_true(predict1(m, 0, 0.25f, 1) == -1.5f);
    sp_tree_model_free(m);
    free(t);
    /* default_left written as true/false */
    t = subst(STUMP_MODEL, "\"default_left\":[1,0,0]", "\"default_left\":[false,true,true]");
    m = load_text(t);
    assert_true(predict1(m, 0, NAN, 1) == 2.0f);
    sp_tree_model_free(m);
    free(t);
    sp_tree_model_free(NULL);
}

/* Thresholds are float32: the text 0.1 is 0.1f, and 0.1f itself is not < 0.1f. */
static void test_tree_stump_float32_threshold(void **state) {
    (void)state;
    static const char *thr[] = {"0.1", "1.00000001490116119384765625E-1", "0.100000001"};
    for (size_t k = 0; k < sizeof thr / sizeof thr[0]; k++) {
        char *t = subst(STUMP_MODEL, "[0.5,-1.5,2.0]", "[THR,-1.5,2.0]");
        char *t2 = subst(t, "THR", thr[k]);
        sp_tree_model *m = load_text(t2);
        assert_true(predict1(m, 0, 0.1f, 1) == 2.0f);
        assert_true(predict1(m, 0, nextafterf(0.1f, 0), 1) == -1.5f);
        assert_true(predict1(m, 0, nextafterf(0.1f, 1), 1) == 2.0f);
        sp_tree_model_free(m);
        free(t);
        free(t2);
    }
}

/* base_score is given in output space; the margin starts at link(base_score) in float32. */
static void test_tree_base_score_links(void **state) {
    (void)state;
    struct {
        const char *obj, *bs;
        float margin0, out0; /* margin and output of a one-leaf model with leaf 0.25 */
    } cases[] = {
        {"binary:logistic", "3E-1", -logf(1.0f / 0.3f - 1.0f) + 0.25f, 0},
        {"binary:logistic", "[3E-1]", -logf(1.0f / 0.3f - 1.0f) + 0.25f, 0},
        {"reg:logistic", "2E-1", -logf(1.0f / 0.2f - 1.0f) + 0.25f, 0},
        {"reg:squarederror", "2.5E0", 2.75f, 2.75f},
        {"reg:squarederror", "[2.5E0]", 2.75f, 2.75f},
        {"rank:pairwise", "5E-1", 0.75f, 0.75f},
        {"count:poisson", "2.5E0", logf(2.5f) + 0.25f, 0},
        {"reg:gamma", "2.5E0", logf(2.5f) + 0.25f, 0},
        {"reg:tweedie", "2.5E0", logf(2.5f) + 0.25f, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sb b = {0};
        sb_printf(&b,
                  "{\"learner\":{\"learner_model_param\":{\"base_score\":\"%s\",\"num_class\":"
                  "\"0\",\"num_feature\":\"3\"},\"objective\":{\"name\":\"%s\"},"
                  "%s",
                  cases[k].bs, cases[k].obj, GBTREE(LEAF("0.25"), "0"));
        sp_tree_model *m = load_text(b.s);
        assert_string_equal(sp_tree_model_objective(m), cases[k].obj);
        assert_string_equal(sp_tree_model_layout(m), "perfect");
        float x[3] = {NAN, 1, 2}, mg, out;
        assert_int_equal(sp_tree_predict(m, x, 1, 3, 1, 1, &mg), SP_OK);
        assert_int_equal(sp_tree_predict(m, x, 1, 3, 0, 1, &out), SP_OK);
        if (fabsf(mg - cases[k].margin0) > 1e-6f)
            fail_msg("%s base %s: margin %.9g, expected %.9g", cases[k].obj, cases[k].bs, mg,
                     cases[k].margin0);
        float want = cases[k].out0;
        if (strstr(cases[k].obj, "logistic")) want = sigmoidf(mg);
        if (strstr(cases[k].obj, "poisson") || strstr(cases[k].obj, "gamma") ||
            strstr(cases[k].obj, "tweedie"))
            want = expf(mg);
        if (fabsf(out - want) > 1e-6f * fmaxf(1, fabsf(want)))
            fail_msg("%s: output %.9g, expected %.9g", cases[k].obj, out, want);
        sp_tree_model_free(m);
        free(b.s);
    }
    /* base_score may be absent (0.5) or a JSON number */
    char *t = subst(STUMP_MODEL, "\"base_score\":\"5E-1\",", "");
    sp_tree_model *m = load_text(t);
    assert_true(predict1(m, 0, 0, 1) == -1.5f);
    sp_tree_model_free(m);
    free(t);
    t = subst(STUMP_MODEL, "\"base_score\":\"5E-1\"", "\"base_score\":0.5");
    m = load_text(t);
    assert_true(predict1(m, 0, 0, 1) == -1.5f);
    sp_tree_model_free(m);
    free(t);
}

/* binary:logitraw: XGBoost 1.7 adds base_score to the margin as it is (no logit). */
static void test_tree_base_score_logitraw(void **state) {
    (void)state;
    /* Regression test (was a bug): serve_tree_load.c applies logit() to binary:logitraw's
     * base_score (and rejects values outside (0, 1)); XGBoost 1.7.4's LogisticRaw::ProbToMargin is
     * the identity, so a default model (base_score 0.5) predicts margins 0.5 higher in XGBoost than
     * in softpipe. Expected: margin = 0.5 + 0.25 = 0.75; actual: 0 + 0.25. */
    const char text[] = MODEL_HEAD("binary:logitraw", "5E-1", "0", "1") GBTREE(LEAF("0.25"), "0");
    sp_tree_model *m = load_text(text);
    float x = 0, mg = 0, out = 0;
    assert_int_equal(sp_tree_predict(m, &x, 1, 1, 1, 1, &mg), SP_OK);
    assert_int_equal(sp_tree_predict(m, &x, 1, 1, 0, 1, &out), SP_OK);
    assert_true(out == mg); /* logitraw outputs the margin */
    if (mg != 0.75f) fail_msg("binary:logitraw margin %.9g, expected 0.75 as XGBoost", mg);
    sp_tree_model_free(m);
}

/* Three classes, six trees: tree_info says which class each tree adds to. */
static void test_tree_multiclass_grouping(void **state) {
    (void)state;
    const char prob[] = MODEL_HEAD("multi:softprob", "5E-1", "3", "2")
        GBTREE(STUMP("0", "0", "1.0", "2.0", "0") "," LEAF("10.0") "," LEAF("100.0") "," LEAF(
                   "0.5") "," STUMP("1", "0", "-3.0", "3.0", "1") "," LEAF("0.25"),
               "2,0,1,2,1,0");
    sp_tree_model *m = load_text(prob);
    assert_int_equal(sp_tree_model_num_classes(m), 3);
    assert_int_equal(sp_tree_model_num_outputs(m, 0), 3);
    assert_int_equal(sp_tree_model_num_outputs(m, 1), 3);
    assert_int_equal(sp_tree_model_num_trees(m), 6);
    const float x[3 * 2] = {-1, -1, 1, 1, NAN, NAN};
    float mg[9], out[9];
    assert_int_equal(sp_tree_predict(m, x, 3, 2, 1, 1, mg), SP_OK);
    assert_int_equal(sp_tree_predict(m, x, 3, 2, 0, 1, out), SP_OK);
    /* class 0: 10 + 0.25; class 1: 100 + (-3 | 3); class 2: (1 | 2) + 0.5; all + 0.5 */
    const float want[9] = {10.75f, 97.5f, 2.0f, 10.75f, 103.5f, 3.0f, 10.75f, 97.5f, 3.0f};
    for (int i = 0; i < 9; i++)
        if (mg[i] != want[i]) fail_msg("margin %d: %.9g, expected %.9g", i, mg[i], want[i]);
    for (int r = 0; r < 3; r++) {
        float mx = fmaxf(mg[3 * r], fmaxf(mg[3 * r + 1], mg[3 * r + 2])), s = 0;
        for (int g = 0; g < 3; g++)
            s += expf(mg[3 * r + g] - mx);
        for (int g = 0; g < 3; g++) {
            float p = expf(mg[3 * r + g] - mx) / s;
            assert_true(fabsf(out[3 * r + g] - p) <= 1e-6f);
        }
    }
    sp_tree_model_free(m);

    char *t = subst(prob, "multi:softprob", "multi:softmax");
    m = load_text(t);
    assert_string_equal(sp_tree_model_objective(m), "multi:softmax");
    assert_int_equal(sp_tree_model_num_outputs(m, 0), 1);
    assert_int_equal(sp_tree_model_num_outputs(m, 1), 3);
    float cls[3];
    assert_int_equal(sp_tree_predict(m, x, 3, 2, 0, 1, cls), SP_OK);
    assert_true(cls[0] == 1.0f && cls[1] == 1.0f && cls[2] == 1.0f);
    sp_tree_model_free(m);
    free(t);
}

/* DART: each tree's leaves are scaled by its weight_drop. */
static void test_tree_dart_weights(void **state) {
    (void)state;
    const char text[] = MODEL_HEAD("reg:squarederror", "5E-1", "0", "2") DART(
        STUMP("0", "1.0", "1.0", "4.0", "1") "," LEAF("3.0") "," LEAF("8.0"), "0,0,0", "0.5,2.0,0");
    sp_tree_model *m = load_text(text);
    assert_int_equal(sp_tree_model_num_trees(m), 3);
    assert_true(predict1(m, 0, 0, 1) == 0.5f + 0.5f + 6.0f);
    assert_true(predict1(m, 2, 0, 1) == 0.5f + 2.0f + 6.0f);
    assert_true(predict1(m, 2, 0, 0) == 8.5f);
    sp_tree_model_free(m);
    /* weight_drop must have one finite weight per tree */
    expect_subst_error(text, "\"weight_drop\":[0.5,2.0,0]", "\"weight_drop\":[0.5,2.0]",
                       SP_EBADINPUT, "weight_drop", NULL);
    expect_subst_error(text, "\"weight_drop\":[0.5,2.0,0]", "\"weight_drop\":[0.5,1e999,0]",
                       SP_EBADINPUT, "weight_drop/1", NULL);
}

/* Categories 1, 3, 40 in the set go right; other categories (negative, unseen, huge) go left;
 * NaN follows default_left. A fractional value is truncated to its category, as XGBoost does. */
static void test_tree_categorical_split(void **state) {
    (void)state;
    for (int dl = 0; dl < 2; dl++) {
        const char *text =
            dl ? MODEL_HEAD("reg:squarederror", "0E0", "0", "2") GBTREE(CAT_STUMP("1", "1"), "0")
               : MODEL_HEAD("reg:squarederror", "0E0", "0", "2") GBTREE(CAT_STUMP("1", "0"), "0");
        sp_tree_model *m = load_text(text);
        assert_string_equal(sp_tree_model_layout(m), "general");
        const float right[] = {1, 3, 40, 1.5f, 3.99f, 40.5f};
        const float left[] = {0,    2,     4,  39, 41,  31,    32,       63,        64,         100,
                              1e9f, 1e30f, -1, -3, -40, -0.5f, INFINITY, -INFINITY, 16777217.0f};
        for (size_t i = 0; i < sizeof right / sizeof right[0]; i++)
            if (predict1(m, 0, right[i], 1) != 5.0f) fail_msg("%g should go right", right[i]);
        for (size_t i = 0; i < sizeof left / sizeof left[0]; i++)
            if (predict1(m, 0, left[i], 1) != -5.0f) fail_msg("%g should go left", left[i]);
        assert_true(predict1(m, 0, NAN, 1) == (dl ? -5.0f : 5.0f));
        assert_true(predict1(m, 1, 2, 1) == -5.0f); /* feature 0 does not matter */
        sp_tree_model_free(m);
    }
    /* an empty category set sends every category left */
    const char base[] =
        MODEL_HEAD("reg:squarederror", "0E0", "0", "2") GBTREE(CAT_STUMP("0", "0"), "0");
    char *t = subst(base, "\"categories_sizes\":[3]", "\"categories_sizes\":[0]");
    sp_tree_model *m = load_text(t);
    assert_true(predict1(m, 1, 0, 1) == -5.0f);
    assert_true(predict1(m, 3, 0, 1) == -5.0f);
    assert_true(predict1(m, NAN, 0, 1) == 5.0f);
    sp_tree_model_free(m);
    free(t);
    /* the segment selects the node's part of `categories`: categories [7, 1, 3, 40], node 0
     * owns [1, 3] */
    t = subst(base, "\"categories\":[1,3,40]", "\"categories\":[7,1,3,40]");
    char *t2 = subst(t, "\"categories_segments\":[0],\"categories_sizes\":[3]",
                     "\"categories_segments\":[1],\"categories_sizes\":[2]");
    m = load_text(t2);
    assert_true(predict1(m, 1, 0, 1) == 5.0f);
    assert_true(predict1(m, 3, 0, 1) == 5.0f);
    assert_true(predict1(m, 7, 0, 1) == -5.0f);
    assert_true(predict1(m, 40, 0, 1) == -5.0f);
    sp_tree_model_free(m);
    free(t);
    free(t2);
}

/* XGBoost writes the unused split_conditions of categorical nodes as the bare token NaN. */
static void test_tree_categorical_nan_condition(void **state) {
    (void)state;
    /* Regression test (was a bug): XGBoost 1.7.4 (Booster.save_model("m.json")) writes
     * "split_conditions":[NaN,5.878788E-1,-5.922581E-1] for a categorical root. serve_json.c
     * rejects the token ("m.json:1:N: not valid JSON: unexpected character"), and
     * serve_tree_load.c would also reject the non-finite condition ("is not a finite float32")
     * although categorical nodes never read it. Expected: the model loads and predicts as with
     * 0.0 in its place; actual: SP_EBADINPUT, so no categorical XGBoost model can be loaded. */
    const char base[] =
        MODEL_HEAD("reg:squarederror", "0E0", "0", "2") GBTREE(CAT_STUMP("1", "1"), "0");
    char *t = subst(base, "[0.0,-5.0,5.0]", "[NaN,-5.0,5.0]");
    sp_tree_model *m = NULL;
    sp_status rc = sp_tree_model_load_buffer("m.json", t, strlen(t), &m);
    if (rc != SP_OK) {
        free(t);
        fail_msg("a categorical node with split_conditions NaN (as XGBoost writes it): %s",
                 sp_errmsg());
    }
    assert_true(predict1(m, 0, 3, 1) == 5.0f);
    assert_true(predict1(m, 0, 2, 1) == -5.0f);
    sp_tree_model_free(m);
    free(t);
}

/* ---- random models against a reference walker */

enum { MAXN = 6000, NFEAT = 6, NCAT_FEAT = 2 };

typedef struct rtree {
    int n;
    int left[MAXN], right[MAXN], feat[MAXN], dl[MAXN], cat[MAXN];
    float cond[MAXN];
    uint32_t set[MAXN]; /* categories 0..31 going right */
} rtree;

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static float rndf(float lo, float hi) {
    return lo + (hi - lo) * (float)(rnd() % 1000000) / 1e6f;
}

/* Grows a random tree in pre-order; `spine` forces one path down to max_depth. */
static int grow(rtree *t, int depth, int max_depth, int spine, int categorical) {
    int i = t->n++;
    int leaf = depth == max_depth || t->n + 2 >= MAXN || (!spine && depth > 0 && rnd() % 4 == 0);
    if (leaf) {
        t->left[i] = t->right[i] = -1;
        t->feat[i] = 0;
        t->cat[i] = 0;
        t->dl[i] = 0;
        t->cond[i] = (float)((int)(rnd() % 2001) - 1000) / 256.0f; /* exact in text */
        return i;
    }
    t->feat[i] = (int)(rnd() % NFEAT);
    t->cat[i] = categorical && t->feat[i] < NCAT_FEAT && rnd() % 2;
    t->dl[i] = (int)(rnd() % 2);
    t->set[i] = rnd() & 0xffffu;
    t->cond[i] = t->cat[i] ? 0.0f : rndf(-2, 2);
    int go_left = rnd() % 2;
    t->left[i] = grow(t, depth + 1, max_depth, spine && go_left, categorical);
    t->right[i] = grow(t, depth + 1, max_depth, spine && !go_left, categorical);
    return i;
}

/* Renumbers the nodes (root stays 0) so that the order is not pre-order. */
static void shuffle(rtree *t) {
    int perm[MAXN], inv[MAXN];
    for (int i = 0; i < t->n; i++)
        perm[i] = i;
    for (int i = t->n - 1; i > 1; i--) {
        int j = 1 + (int)(rnd() % (uint32_t)i);
        int s = perm[i];
        perm[i] = perm[j];
        perm[j] = s;
    }
    static rtree u;
    u.n = t->n;
    for (int i = 0; i < t->n; i++)
        inv[perm[i]] = i;
    for (int i = 0; i < t->n; i++) {
        int k = inv[i];
        u.left[k] = t->left[i] < 0 ? -1 : inv[t->left[i]];
        u.right[k] = t->right[i] < 0 ? -1 : inv[t->right[i]];
        u.feat[k] = t->feat[i];
        u.dl[k] = t->dl[i];
        u.cat[k] = t->cat[i];
        u.cond[k] = t->cond[i];
        u.set[k] = t->set[i];
    }
    *t = u;
}

static void emit_ints(sb *b, const char *key, const int *v, int n) {
    sb_printf(b, "\"%s\":[", key);
    for (int i = 0; i < n; i++)
        sb_printf(b, "%s%d", i ? "," : "", v[i]);
    sb_printf(b, "],");
}

static void emit_tree(sb *b, const rtree *t) {
    sb_printf(b, "{\"tree_param\":{\"num_nodes\":\"%d\",\"size_leaf_vector\":\"0\"},", t->n);
    emit_ints(b, "left_children", t->left, t->n);
    emit_ints(b, "right_children", t->right, t->n);
    emit_ints(b, "split_indices", t->feat, t->n);
    emit_ints(b, "default_left", t->dl, t->n);
    emit_ints(b, "split_type", t->cat, t->n);
    sb_printf(b, "\"split_conditions\":[");
    for (int i = 0; i < t->n; i++)
        sb_printf(b, "%s%.9g", i ? "," : "", (double)t->cond[i]);
    sb_printf(b, "],\"categories\":[");
    int first = 1;
    for (int i = 0; i < t->n; i++)
        if (t->cat[i])
            for (int c = 0; c < 32; c++)
                if (t->set[i] >> c & 1) sb_printf(b, "%s%d", first ? "" : ",", c), first = 0;
    sb_printf(b, "],\"categories_nodes\":[");
    first = 1;
    for (int i = 0; i < t->n; i++)
        if (t->cat[i]) sb_printf(b, "%s%d", first ? "" : ",", i), first = 0;
    sb_printf(b, "],\"categories_segments\":[");
    first = 1;
    int seg = 0;
    for (int i = 0; i < t->n; i++)
        if (t->cat[i]) {
            sb_printf(b, "%s%d", first ? "" : ",", seg), first = 0;
            seg += __builtin_popcount(t->set[i]);
        }
    sb_printf(b, "],\"categories_sizes\":[");
    first = 1;
    for (int i = 0; i < t->n; i++)
        if (t->cat[i])
            sb_printf(b, "%s%d", first ? "" : ",", __builtin_popcount(t->set[i])), first = 0;
    sb_printf(b, "]}");
}

typedef struct rmodel {
    int n_trees, n_class;
    rtree *trees;
    char *text;
} rmodel;

/* A random reg:squarederror (or multi:softprob) model, base_score 0.5. */
static void rmodel_make(rmodel *rm, uint64_t seed, int n_trees, int max_depth, int n_class,
                        int categorical) {
    rng_state = seed;
    rm->n_trees = n_trees;
    rm->n_class = n_class;
    rm->trees = calloc((size_t)n_trees, sizeof(rtree));
    assert_non_null(rm->trees);
    sb b = {0};
    sb_printf(&b,
              "{\"learner\":{\"learner_model_param\":{\"base_score\":\"5E-1\",\"num_class\":"
              "\"%d\",\"num_feature\":\"%d\"},\"objective\":{\"name\":\"%s\"},"
              "\"gradient_booster\":{\"name\":\"gbtree\",\"model\":{\"trees\":[",
              n_class > 1 ? n_class : 0, NFEAT,
              n_class > 1 ? "multi:softprob" : "reg:squarederror");
    for (int k = 0; k < n_trees; k++) {
        rtree *t = &rm->trees[k];
        grow(t, 0, max_depth, k == 0, categorical);
        shuffle(t);
        if (k) sb_printf(&b, ",");
        emit_tree(&b, t);
    }
    sb_printf(&b, "],\"tree_info\":[");
    for (int k = 0; k < n_trees; k++)
        sb_printf(&b, "%s%d", k ? "," : "", k % (n_class > 1 ? n_class : 1));
    sb_printf(&b, "]}}},\"version\":[1,7,4]}");
    rm->text = b.s;
}

static void rmodel_free(rmodel *rm) {
    free(rm->trees);
    free(rm->text);
}

static float ref_tree(const rtree *t, const float *row) {
    int i = 0;
    while (t->left[i] >= 0) {
        float v = row[t->feat[i]];
        int right;
        if (isnan(v))
            right = !t->dl[i];
        else if (t->cat[i])
            right = v >= 0 && v < 32 && (t->set[i] >> (uint32_t)v & 1);
        else
            right = !(v < t->cond[i]);
        i = right ? t->right[i] : t->left[i];
    }
    return t->cond[i];
}

/* Margins: float32 sums from the base margin in tree order, as XGBoost adds them. */
static void ref_predict(const rmodel *rm, const float *x, size_t n, float *out) {
    int g = rm->n_class > 1 ? rm->n_class : 1;
    for (size_t r = 0; r < n; r++) {
        for (int c = 0; c < g; c++)
            out[r * (size_t)g + (size_t)c] = 0.5f;
        for (int k = 0; k < rm->n_trees; k++)
            out[r * (size_t)g + (size_t)(k % g)] += ref_tree(&rm->trees[k], x + r * NFEAT);
    }
}

static float *random_rows(size_t n, uint64_t seed) {
    float *x = malloc(n * NFEAT * sizeof(float));
    assert_non_null(x);
    rng_state = seed;
    for (size_t i = 0; i < n * NFEAT; i++) {
        uint32_t u = rnd() % 100;
        size_t f = i % NFEAT;
        if (u < 10)
            x[i] = NAN;
        else if (f < NCAT_FEAT)
            x[i] = u < 15   ? -(float)(rnd() % 5)
                   : u < 20 ? 30 + (float)(rnd() % 100)
                            : (float)(rnd() % 17) + (u < 30 ? 0.5f : 0);
        else if (u < 13)
            x[i] = u == 10 ? 1e30f : u == 11 ? -1e30f : 0.0f;
        else
            x[i] = rndf(-2.5f, 2.5f);
    }
    return x;
}

static void check_random_model(int n_trees, int depth, int n_class, int categorical,
                               const char *layout, uint64_t seed) {
    rmodel rm;
    rmodel_make(&rm, seed, n_trees, depth, n_class, categorical);
    sp_tree_model *m = load_text(rm.text);
    assert_string_equal(sp_tree_model_layout(m), layout);
    assert_int_equal(sp_tree_model_num_trees(m), n_trees);
    enum { N = 3001 };
    float *x = random_rows(N, seed + 1);
    size_t g = n_class > 1 ? (size_t)n_class : 1;
    float *want = malloc(N * g * sizeof(float)), *got = malloc(N * g * sizeof(float));
    assert_true(want && got);
    ref_predict(&rm, x, N, want);
    for (int threads = 1; threads <= 3; threads++) {
        memset(got, 0, N * g * sizeof(float));
        assert_int_equal(sp_tree_predict(m, x, N, NFEAT, 1, threads, got), SP_OK);
        for (size_t i = 0; i < N * g; i++)
            if (got[i] != want[i])
                fail_msg("%s depth %d: row %zu output %zu: %.9g, expected %.9g", layout, depth,
                         i / g, i % g, got[i], want[i]);
    }
    /* row by row */
    for (size_t r = 0; r < 50; r++) {
        assert_int_equal(sp_tree_predict(m, x + r * NFEAT, 1, NFEAT, 1, 1, got), SP_OK);
        assert_memory_equal(got, want + r * g, g * sizeof(float));
    }
    free(x);
    free(want);
    free(got);
    sp_tree_model_free(m);
    rmodel_free(&rm);
}

static void test_tree_random_perfect(void **state) {
    (void)state;
    check_random_model(20, 1, 1, 0, "perfect", 11);
    check_random_model(30, 6, 1, 0, "perfect", 12);
    check_random_model(10, 10, 1, 0, "perfect", 13); /* SP_TREE_PERFECT_MAX_DEPTH */
    check_random_model(24, 5, 3, 0, "perfect", 14);
}

static void test_tree_random_general(void **state) {
    (void)state;
    check_random_model(8, 11, 1, 0, "general", 21); /* one past the perfect layout */
    check_random_model(4, 16, 1, 0, "general", 22);
    check_random_model(30, 6, 1, 1, "general", 23); /* categorical */
    check_random_model(24, 5, 4, 1, "general", 24);
}

/* More than 64 classes take the row-by-row path. */
static void test_tree_many_classes(void **state) {
    (void)state;
    check_random_model(140, 3, 70, 0, "perfect", 31);
    check_random_model(140, 3, 70, 1, "general", 32);
}

static void test_tree_load_file(void **state) {
    (void)state;
    char *dir = tu_tmpdir("tree");
    assert_non_null(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/stump.json", dir);
    assert_int_equal(tu_write_file(path, STUMP_MODEL, strlen(STUMP_MODEL)), 0);
    sp_tree_model *m = NULL;
    assert_int_equal(sp_tree_model_load(path, &m), SP_OK);
    assert_true(predict1(m, 0, 0.75f, 1) == 2.0f);
    sp_tree_model_free(m);
    /* errors name the file */
    char *bad = subst(STUMP_MODEL, "[1,-1,-1]", "[7,-1,-1]");
    assert_int_equal(tu_write_file(path, bad, strlen(bad)), 0);
    free(bad);
    m = (sp_tree_model *)&m;
    assert_int_equal(sp_tree_model_load(path, &m), SP_EBADINPUT);
    assert_null(m);
    assert_non_null(strstr(sp_errmsg(), path));
    assert_non_null(strstr(sp_errmsg(), "trees/0/left_children/0"));
    snprintf(path, sizeof path, "%s/missing.json", dir);
    m = (sp_tree_model *)&m;
    assert_int_equal(sp_tree_model_load(path, &m), SP_ENOTFOUND);
    assert_null(m);
    assert_non_null(strstr(sp_errmsg(), path));
    tu_rmrf(dir);
    free(dir);
}

/* ---- errors */

static void test_tree_errors_json(void **state) {
    (void)state;
    expect_error("", SP_EBADINPUT, "m.json:1:1", NULL);
    expect_error("{", SP_EBADINPUT, "m.json:1:2", NULL);
    expect_error("{\n  \"learner\": x\n}", SP_EBADINPUT, "m.json:2:14", NULL);
    expect_error("[1,]", SP_EBADINPUT, "m.json:1:", "trailing comma");
    expect_error("{\"a\":1} x", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\" 1}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":\"x\ty\"}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":\"\\q\"}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":01}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":1.}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":-}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":tru}", SP_EBADINPUT, "m.json:1:", NULL);
    expect_error("{\"a\":[1,2}", SP_EBADINPUT, "m.json:1:", "mismatched");
    /* nesting past 512 levels is an error, not a stack overflow */
    char deep[1300];
    memset(deep, '[', 1200);
    deep[1200] = '\0';
    expect_error(deep, SP_EBADINPUT, "512", NULL);
    /* valid JSON that is not a model */
    expect_error("[1,2,3]", SP_EBADINPUT, "learner", NULL);
    expect_error("{\"learner\":{\"a\":1}}", SP_EBADINPUT, "learner", NULL);
    /* binary garbage */
    const char bin[] = {'{', 'L', (char)0x80, (char)0xff, 0};
    expect_error(bin, SP_EBADINPUT, NULL, NULL);
}

static void test_tree_errors_model(void **state) {
    (void)state;
    const char *S = STUMP_MODEL;
    const sp_status BAD = SP_EBADINPUT, UNS = SP_EUNSUPPORTED;
    struct {
        const char *from, *to;
        sp_status code;
        const char *sub1, *sub2;
    } cases[] = {
        {"\"num_feature\":\"2\"", "\"num_feature\":\"0\"", BAD, "features", NULL},
        {"\"num_feature\":\"2\"", "\"num_feature\":\"two\"", BAD,
         "learner/learner_model_param/num_feature", "two"},
        {"\"num_feature\":\"2\"", "\"num_feature\":\"-1\"", BAD, "num_feature", NULL},
        {"\"num_feature\":\"2\"", "\"num_feature\":\"2.5\"", BAD, "num_feature", NULL},
        {",\"num_feature\":\"2\"", "", BAD, "num_feature", "missing"},
        {"\"num_class\":\"0\"", "\"num_class\":\"1e9\"", BAD, "num_class", NULL},
        {"\"base_score\":\"5E-1\"", "\"base_score\":\"1.5\"", BAD, "base_score", NULL},
        {"\"base_score\":\"5E-1\"", "\"base_score\":\"0\"", BAD, "base_score", NULL},
        {"\"base_score\":\"5E-1\"", "\"base_score\":\"abc\"", BAD, "base_score", "abc"},
        {"\"base_score\":\"5E-1\"", "\"base_score\":\"[5E-1,3E-1]\"", BAD, "base_score", NULL},
        {"\"base_score\":\"5E-1\"", "\"base_score\":[0.5]", BAD, "base_score", NULL},
        {"binary:logistic", "survival:cox", UNS, "learner/objective/name", "survival:cox"},
        {"binary:logistic", "binary:hinge", UNS, "binary:hinge", NULL},
        {"{\"name\":\"binary:logistic\"}", "{}", BAD, "learner/objective/name", NULL},
        {"\"name\":\"gbtree\"", "\"name\":\"gblinear\"", UNS, "gradient_booster/name", "gblinear"},
        {"\"name\":\"gbtree\"", "\"name\":7", BAD, "gradient_booster/name", NULL},
        {"\"trees\":[", "\"trunks\":[", BAD, "learner/gradient_booster/model/trees", NULL},
        {"\"tree_info\":[0]", "\"tree_info\":[0,0]", BAD, "model/tree_info", NULL},
        {"\"tree_info\":[0]", "\"tree_info\":[1]", BAD, "model/tree_info/0", NULL},
        {"\"tree_info\":[0]", "\"tree_info\":[-1]", BAD, "model/tree_info/0", NULL},
        {"\"tree_info\":[0]", "\"tree_info\":[\"0\"]", BAD, "model/tree_info/0", NULL},
        {"\"num_nodes\":\"3\"", "\"num_nodes\":\"0\"", BAD, "trees/0", "one node"},
        {"\"num_nodes\":\"3\"", "\"num_nodes\":\"5\"", BAD, "trees/0/left_children", "5 nodes"},
        {"\"num_nodes\":\"3\",", "", BAD, "trees/0/tree_param/num_nodes", "missing"},
        {"\"size_leaf_vector\":\"0\"", "\"size_leaf_vector\":\"3\"", UNS,
         "trees/0/tree_param/size_leaf_vector", "vector leaves"},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":[999,-1,-1]", BAD,
         "learner/gradient_booster/model/trees/0/left_children/0", "999"},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":[0,-1,-1]", BAD,
         "trees/0/left_children/0", NULL},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":[1.5,-1,-1]", BAD,
         "trees/0/left_children/0", NULL},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":[-2,-1,-1]", BAD,
         "trees/0/left_children/0", NULL},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":[\"1\",-1,-1]", BAD,
         "trees/0/left_children", "entry 0"},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":[1,-1]", BAD, "trees/0/left_children",
         "2 entries"},
        {"\"left_children\":[1,-1,-1]", "\"left_children\":{}", BAD, "trees/0/left_children", NULL},
        {"\"right_children\":[2,-1,-1]", "\"right_children\":[3,-1,-1]", BAD,
         "trees/0/right_children/0", "3"},
        {"\"right_children\":[2,-1,-1]", "\"right_children\":[1,-1,-1]", BAD, "trees/0", "twice"},
        {"\"split_indices\":[1,0,0]", "\"split_indices\":[2,0,0]", BAD, "trees/0/split_indices/0",
         "2 features"},
        {"\"split_indices\":[1,0,0]", "\"split_indices\":[-1,0,0]", BAD, "trees/0/split_indices/0",
         NULL},
        {"[0.5,-1.5,2.0]", "[1e39,-1.5,2.0]", BAD, "trees/0/split_conditions/0", NULL},
        {"[0.5,-1.5,2.0]", "[0.5,-1.5,-1e300]", BAD, "trees/0/split_conditions/2", NULL},
        {"[0.5,-1.5,2.0]", "[0.5,null,2.0]", BAD, "trees/0/split_conditions", "entry 1"},
        {"\"default_left\":[1,0,0]", "\"default_left\":[1,0]", BAD, "trees/0/default_left", NULL},
        {"\"split_type\":[0,0,0]", "\"split_type\":[0,0]", BAD, "trees/0/split_type", NULL},
        {"\"categories_nodes\":[]", "\"categories_nodes\":[0]", BAD, "trees/0", "categories"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        expect_subst_error(S, cases[k].from, cases[k].to, cases[k].code, cases[k].sub1,
                           cases[k].sub2);

    /* a node no path reaches */
    const char unreachable[] = MODEL_HEAD("binary:logistic", "5E-1", "0", "2")
        GBTREE("{\"tree_param\":{\"num_nodes\":\"5\",\"size_leaf_vector\":\"0\"},"
               "\"left_children\":[1,-1,-1,-1,-1],\"right_children\":[2,-1,-1,-1,-1],"
               "\"split_indices\":[0,0,0,0,0],\"split_conditions\":[0,1,2,3,4],"
               "\"default_left\":[0,0,0,0,0],\"split_type\":[0,0,0,0,0]," NO_CATS "}",
               "0");
    expect_error(unreachable, BAD, "trees/0", "not reachable");
    /* a cycle below the root */
    const char cycle[] = MODEL_HEAD("binary:logistic", "5E-1", "0", "2")
        GBTREE("{\"tree_param\":{\"num_nodes\":\"5\",\"size_leaf_vector\":\"0\"},"
               "\"left_children\":[1,3,-1,1,-1],\"right_children\":[2,4,-1,4,-1],"
               "\"split_indices\":[0,0,0,0,0],\"split_conditions\":[0,1,2,3,4],"
               "\"default_left\":[0,0,0,0,0],\"split_type\":[0,0,0,0,0]," NO_CATS "}",
               "0");
    expect_error(cycle, BAD, "trees/0", NULL);
    /* the error names the right tree */
    const char two[] = MODEL_HEAD("binary:logistic", "5E-1", "0", "2")
        GBTREE(STUMP("1", "0.5", "-1.5", "2.0", "1") "," STUMP(
                   "1", "0.5", "-1.5", "2.0", "1") "," STUMP("9", "0.5", "-1.5", "2.0", "1"),
               "0,0,0");
    expect_error(two, BAD, "learner/gradient_booster/model/trees/2/split_indices/0", NULL);
    /* dart paths */
    const char dart[] = MODEL_HEAD("reg:squarederror", "5E-1", "0", "2")
        DART(STUMP("0", "1.0", "1.0", "4.0", "1") "," STUMP("5", "1.0", "1.0", "4.0", "1"), "0,0",
             "1,1");
    expect_error(dart, BAD, "learner/gradient_booster/gbtree/model/trees/1/split_indices/0", NULL);

    /* categorical metadata */
    const char cat[] =
        MODEL_HEAD("reg:squarederror", "0E0", "0", "2") GBTREE(CAT_STUMP("1", "1"), "0");
    expect_subst_error(cat, "\"categories_sizes\":[3]", "\"categories_sizes\":[4]", BAD,
                       "trees/0/categories_nodes/0", NULL);
    expect_subst_error(cat, "\"categories_segments\":[0]", "\"categories_segments\":[-1]", BAD,
                       "trees/0/categories_nodes/0", NULL);
    expect_subst_error(cat, "\"categories_nodes\":[0]", "\"categories_nodes\":[1]", BAD,
                       "trees/0/categories_nodes/0", "not a categorical split");
    expect_subst_error(cat, "\"categories_nodes\":[0]", "\"categories_nodes\":[7]", BAD,
                       "trees/0/categories_nodes/0", NULL);
    expect_subst_error(cat, "\"categories\":[1,3,40]", "\"categories\":[1,-3,40]", BAD,
                       "trees/0/categories/1", NULL);
    expect_subst_error(cat, "\"categories\":[1,3,40]", "\"categories\":[1,3.5,40]", BAD,
                       "trees/0/categories/1", NULL);
    expect_subst_error(cat, "\"categories\":[1,3,40]", "\"categories\":[1,3,99999999]", BAD,
                       "trees/0/categories/2", NULL);
    expect_subst_error(cat, "\"categories_sizes\":[3]", "\"categories_sizes\":[3,1]", BAD,
                       "trees/0", "one length");
}

static void test_tree_errors_predict(void **state) {
    (void)state;
    sp_tree_model *m = load_text(STUMP_MODEL);
    float x[4] = {0, 1, 2, 3}, out[2];
    assert_int_equal(sp_tree_predict(NULL, x, 1, 2, 0, 1, out), SP_EINVAL);
    assert_int_equal(sp_tree_predict(m, NULL, 1, 2, 0, 1, out), SP_EINVAL);
    assert_int_equal(sp_tree_predict(m, x, 1, 2, 0, 1, NULL), SP_EINVAL);
    assert_int_equal(sp_tree_predict(m, x, 1, 1, 0, 1, out), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "1"));
    assert_non_null(strstr(sp_errmsg(), "2 features"));
    assert_int_equal(sp_tree_predict(m, x, 1, 2, 0, -1, out), SP_EINVAL);
    /* zero rows need no buffers */
    assert_int_equal(sp_tree_predict(m, NULL, 0, 2, 0, 1, NULL), SP_OK);
    assert_int_equal(sp_tree_predict(m, x, 2, 2, 1, 0, out), SP_OK);
    sp_tree_model_free(m);

    sp_tree_model *o = (sp_tree_model *)&o;
    assert_int_equal(sp_tree_model_load_buffer("m.json", NULL, 5, &o), SP_EINVAL);
    assert_null(o);
    assert_int_equal(sp_tree_model_load_buffer("m.json", STUMP_MODEL, 4, NULL), SP_EINVAL);
    assert_int_equal(sp_tree_model_load(NULL, &o), SP_EINVAL);
    assert_int_equal(sp_tree_model_load_buffer(NULL, "", 0, &o), SP_EBADINPUT);
    assert_null(o);
}

/* A chain of d levels on feature 0: node 2k splits x < k + 1 with its left leaf 2k + 1 (value k)
 * and goes right to node 2k + 2; the last leaf (value d) catches x >= d and NaN. */
static char *chain_model(int d) {
    sb b = {0};
    sb_printf(&b, "%s", MODEL_HEAD("reg:squarederror", "5E-1", "0", "1"));
    sb_printf(&b,
              "\"gradient_booster\":{\"name\":\"gbtree\",\"model\":{\"trees\":[{\"tree_param\""
              ":{\"num_nodes\":\"%d\",\"size_leaf_vector\":\"0\"},\"left_children\":[",
              2 * d + 1);
    for (int i = 0; i <= 2 * d; i++)
        sb_printf(&b, "%s%d", i ? "," : "", i % 2 == 0 && i < 2 * d ? i + 1 : -1);
    sb_printf(&b, "],\"right_children\":[");
    for (int i = 0; i <= 2 * d; i++)
        sb_printf(&b, "%s%d", i ? "," : "", i % 2 == 0 && i < 2 * d ? i + 2 : -1);
    sb_printf(&b, "],\"split_indices\":[");
    for (int i = 0; i <= 2 * d; i++)
        sb_printf(&b, "%s0", i ? "," : "");
    sb_printf(&b, "],\"default_left\":[");
    for (int i = 0; i <= 2 * d; i++)
        sb_printf(&b, "%s0", i ? "," : "");
    sb_printf(&b, "],\"split_conditions\":[");
    for (int i = 0; i <= 2 * d; i++)
        sb_printf(&b, "%s%d", i ? "," : "", i % 2 == 0 && i < 2 * d ? i / 2 + 1 : i / 2);
    sb_printf(&b, "],\"split_type\":[]," NO_CATS "}],\"tree_info\":[0]}}},\"version\":[1,7,4]}");
    return b.s;
}

static void *load_chain(void *arg) {
    const char *text = arg;
    sp_tree_model *m = NULL;
    sp_status rc = sp_tree_model_load_buffer("chain.json", text, strlen(text), &m);
    if (rc == SP_OK) {
        float x = 5.5f, out = 0;
        rc = sp_tree_predict(m, &x, 1, 1, 1, 1, &out);
        if (out != 0.5f + 5.0f) rc = SP_EINTERNAL;
        sp_tree_model_free(m);
    } else if (!strstr(sp_errmsg(), "chain.json: learner/gradient_booster/model/trees/0")) {
        rc = SP_EINTERNAL;
    }
    return (void *)(intptr_t)rc;
}

/* Deep trees load and predict on the general layout. */
static void test_tree_deep_chain(void **state) {
    (void)state;
    enum { D = 1000 };
    char *text = chain_model(D);
    sp_tree_model *m = load_text(text);
    assert_string_equal(sp_tree_model_layout(m), "general");
    for (int k = 0; k <= D + 2; k += 7) {
        float x = (float)k + 0.5f, out = 0;
        assert_int_equal(sp_tree_predict(m, &x, 1, 1, 1, 1, &out), SP_OK);
        assert_true(out == 0.5f + (float)(k < D ? k : D));
    }
    float x = NAN, out = 0;
    assert_int_equal(sp_tree_predict(m, &x, 1, 1, 1, 1, &out), SP_OK);
    assert_true(out == 0.5f + (float)D);
    sp_tree_model_free(m);
    free(text);
}

/* A hostile tree as deep as it is long (a 100,000-level chain, 6 MB of JSON) must not exhaust the
 * C stack while loading (serve_tree.c compiles trees recursively): loading it in a thread with a
 * 256 KiB stack, as a server's worker might have, either works or fails with a message naming the
 * tree. Runs in a child process, so that a crash fails this test only. */
static void test_tree_hostile_depth(void **state) {
    (void)state;
    enum { D = 100000 };
    char *text = chain_model(D);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        pthread_t th;
        void *ret = (void *)(intptr_t)SP_EINTERNAL;
        if (pthread_create(&th, &attr, load_chain, text) == 0) pthread_join(th, &ret);
        sp_status rc = (sp_status)(intptr_t)ret;
        _exit(rc == SP_OK || rc == SP_EUNSUPPORTED || rc == SP_EBADINPUT ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    free(text);
    if (WIFSIGNALED(st))
        fail_msg("loading a %d-level chain killed the process: signal %d", D, WTERMSIG(st));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("loading a %d-level chain: exit status %d (a sanitizer report, a wrong "
                 "prediction or an error message without the tree's path)",
                 D, WEXITSTATUS(st));
}

/* ---- faults */

static void test_tree_out_of_memory(void **state) {
    (void)state;
    static const char *texts[] = {
        MODEL_HEAD("multi:softprob", "5E-1", "3", "2")
            GBTREE(STUMP("0", "0", "1.0", "2.0", "0") "," LEAF("10.0") "," STUMP("1", "0", "-3.0",
                                                                                 "3.0", "1"),
                   "2,0,1"),
        MODEL_HEAD("reg:squarederror", "0E0", "0", "2")
            DART(CAT_STUMP("1", "1") "," STUMP("0", "1.0", "1.0", "4.0", "1"), "0,0", "0.5,2"),
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int failures = 0;
        for (uint64_t k = 1; k < 500; k++) {
            sp_tree_model *m = (sp_tree_model *)&m;
            sp__malloc_fail_after(k);
            sp_status rc = sp_tree_model_load_buffer("m.json", texts[t], strlen(texts[t]), &m);
            sp__malloc_fail_after(0);
            if (rc == SP_OK) {
                assert_non_null(m);
                sp_tree_model_free(m);
                break;
            }
            assert_int_equal(rc, SP_ENOMEM);
            assert_null(m);
            assert_true(sp_errmsg()[0] != '\0');
            failures++;
        }
        assert_true(failures >= 5);
    }
    /* the wide (> 64 classes) predict path allocates its accumulator */
    rmodel rm;
    rmodel_make(&rm, 5, 70, 2, 70, 0);
    sp_tree_model *m = load_text(rm.text);
    float *x = random_rows(4, 6), out[4 * 70];
    sp__malloc_fail_after(1);
    sp_status rc = sp_tree_predict(m, x, 4, NFEAT, 1, 1, out);
    sp__malloc_fail_after(0);
    assert_int_equal(rc, SP_ENOMEM);
    assert_int_equal(sp_tree_predict(m, x, 4, NFEAT, 1, 1, out), SP_OK);
    free(x);
    sp_tree_model_free(m);
    rmodel_free(&rm);
}

/* ---- threads */

enum { CONC_THREADS = 4, CONC_ROWS = 5000, CONC_REPEAT = 3 };

typedef struct conc_arg {
    const sp_tree_model *m;
    const float *x;
    float *out;
    size_t n_out;
    int n_threads; /* passed to sp_tree_predict */
    sp_status rc;
} conc_arg;

static void *conc_worker(void *p) {
    conc_arg *a = p;
    a->rc = SP_OK;
    for (int k = 0; k < CONC_REPEAT && a->rc == SP_OK; k++) {
        a->rc = sp_tree_predict(a->m, a->x, CONC_ROWS, NFEAT, k % 2, a->n_threads, a->out);
        if (a->rc == SP_OK && k % 2 == 0) /* margin */
            a->rc = sp_tree_predict(a->m, a->x, CONC_ROWS, NFEAT, 1, a->n_threads, a->out);
    }
    return NULL;
}

/* Four threads predict different rows on one shared model at once (some of them fanning out to
 * worker threads themselves); each result equals the single-threaded one. */
static void test_tree_predict_concurrent(void **state) {
    (void)state;
    static const struct {
        int depth, n_class, categorical;
        const char *layout;
    } kinds[] = {{6, 1, 0, "perfect"}, {12, 1, 0, "general"}, {5, 3, 1, "general"}};
    for (size_t kd = 0; kd < sizeof kinds / sizeof kinds[0]; kd++) {
        rmodel rm;
        rmodel_make(&rm, 100 + kd, 12, kinds[kd].depth, kinds[kd].n_class, kinds[kd].categorical);
        sp_tree_model *m = load_text(rm.text);
        assert_string_equal(sp_tree_model_layout(m), kinds[kd].layout);
        size_t g = (size_t)(kinds[kd].n_class > 1 ? kinds[kd].n_class : 1);
        float *x[CONC_THREADS], *want[CONC_THREADS];
        conc_arg args[CONC_THREADS];
        pthread_t th[CONC_THREADS];
        for (int t = 0; t < CONC_THREADS; t++) {
            x[t] = random_rows(CONC_ROWS, 1000 + (uint64_t)t);
            want[t] = malloc(CONC_ROWS * g * sizeof(float));
            assert_int_equal(sp_tree_predict(m, x[t], CONC_ROWS, NFEAT, 1, 1, want[t]), SP_OK);
            args[t] = (conc_arg){
                m,    x[t], malloc(CONC_ROWS * g * sizeof(float)), CONC_ROWS * g, t % 2 ? 2 : 1,
                SP_OK};
            assert_non_null(args[t].out);
        }
        for (int t = 0; t < CONC_THREADS; t++)
            assert_int_equal(pthread_create(&th[t], NULL, conc_worker, &args[t]), 0);
        for (int t = 0; t < CONC_THREADS; t++)
            pthread_join(th[t], NULL);
        for (int t = 0; t < CONC_THREADS; t++) {
            assert_int_equal(args[t].rc, SP_OK);
            assert_memory_equal(args[t].out, want[t], CONC_ROWS * g * sizeof(float));
            free(x[t]);
            free(want[t]);
            free(args[t].out);
        }
        sp_tree_model_free(m);
        rmodel_free(&rm);
    }
}

/* Numbers that are finite as doubles but overflow float32, where the model stores float32. */
static void test_tree_float32_overflow(void **state) {
    (void)state;
    const char dart[] = MODEL_HEAD("reg:squarederror", "5E-1", "0", "2")
        DART(STUMP("0", "1.0", "1.0", "4.0", "1") "," LEAF("0.0"), "0,0", "0.5,2.0");
    /* Regression test (was a bug): serve_tree_load.c checks weight_drop with isfinite() on the
     * double, then stores (float)1e300 = inf; the compiler folds it into the leaves, 0.0 * inf =
     * NaN, so every prediction is NaN. Expected: SP_EBADINPUT naming ".../weight_drop/1" (as 1e999
     * is, and as split_conditions are checked: "is not a finite float32"); actual: SP_OK and NaN
     * margins. */
    expect_subst_error(dart, "\"weight_drop\":[0.5,2.0]", "\"weight_drop\":[0.5,1e300]",
                       SP_EBADINPUT, "weight_drop/1", NULL);
    /* Regression test (was a bug): likewise base_score "1e39" for an identity link becomes an
     * infinite base margin, so every prediction is inf. Expected: SP_EBADINPUT naming base_score.
     */
    const char reg[] = MODEL_HEAD("reg:squarederror", "1e39", "0", "2")
        GBTREE(STUMP("1", "0.5", "-1.5", "2.0", "1"), "0");
    expect_error(reg, SP_EBADINPUT, "base_score", NULL);
}

/* Empty containers are valid JSON. Registered last: under -fno-sanitize-recover a UBSan report
 * ends the process, and the other tests should have run by then. */
static void test_tree_json_empty_containers(void **state) {
    (void)state;
    /* Regression test (was a bug): serve_json.c close_container() calls memcpy(j->kids + j->nk,
     * p->scratch + ..., 0) while j->kids is still NULL when the first container to close is empty,
     * e.g. "[]",
     * "{}", "{\"learner\":{}}" or "[[],1]": UBSan reports "null pointer passed as argument 1"
     * (serve_json.c:158) and, built with -fno-sanitize-recover (SP_SANITIZE), aborts. Expected:
     * SP_EBADINPUT "... learner ..." (not a model); also replayed by
     * fuzz/corpus/tree_model/bad_empty_object.json and bad_empty_array.json. */
    expect_error("{\"learner\":{}}", SP_EBADINPUT, "learner", NULL);
    expect_error("[]", SP_EBADINPUT, "learner", NULL);
    expect_error("{}", SP_EBADINPUT, "learner", NULL);
    expect_error("[[],1]", SP_EBADINPUT, "learner", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_stump_numeric),
        cmocka_unit_test(test_tree_stump_float32_threshold),
        cmocka_unit_test(test_tree_base_score_links),
        cmocka_unit_test(test_tree_base_score_logitraw),
        cmocka_unit_test(test_tree_multiclass_grouping),
        cmocka_unit_test(test_tree_dart_weights),
        cmocka_unit_test(test_tree_categorical_split),
        cmocka_unit_test(test_tree_categorical_nan_condition),
        cmocka_unit_test(test_tree_random_perfect),
        cmocka_unit_test(test_tree_random_general),
        cmocka_unit_test(test_tree_many_classes),
        cmocka_unit_test(test_tree_load_file),
        cmocka_unit_test(test_tree_errors_json),
        cmocka_unit_test(test_tree_errors_model),
        cmocka_unit_test(test_tree_errors_predict),
        cmocka_unit_test(test_tree_deep_chain),
        cmocka_unit_test(test_tree_hostile_depth),
        cmocka_unit_test(test_tree_out_of_memory),
        cmocka_unit_test(test_tree_predict_concurrent),
        cmocka_unit_test(test_tree_float32_overflow),
        cmocka_unit_test(test_tree_json_empty_containers), /* keep last: see its comment */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
