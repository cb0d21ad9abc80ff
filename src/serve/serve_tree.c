/* serve_tree.c — compiles a loaded XGBoost model (serve_tree_load.c) into a flat layout and
 * predicts with it.
 *
 * Two layouts, chosen per model at load time:
 *
 * "perfect" (every tree at most SP_TREE_PERFECT_MAX_DEPTH deep, no categorical split): each tree
 * is padded to a perfect binary tree of the model's largest depth D, internal nodes in
 * breadth-first (heap) order as 8-byte records {float threshold; uint32 feature | default_left
 * << 31}, then its 2^D leaves. A leaf that XGBoost put at depth d < D owns all 2^(D-d) leaf
 * slots below it, so the padding nodes' tests do not matter. Walking a tree is D steps of
 *     go_right = !(x < threshold) && (x is a number || !default_left);  i = 2 i + 1 + go_right
 * with no branch and no leaf test; a block of rows walks each tree together, so the D-step
 * chains of different rows overlap in the CPU. Depth-6 XGBoost trees (the default) cost 127
 * node records + 64 leaves = 0.76 KB each, so a 500-tree model (380 KB) stays in L2.
 *
 * "general" (deeper trees, or categorical splits): nodes in pre-order as 16-byte records
 * {float threshold or leaf value; uint32 feature | flags; uint32 right child; uint32 category
 * set}, the left child implicit (the next record); a category set is a bitset in one array.
 *
 * Batches run on a persistent pool of threads owned by the model (core_pool.c), started by the
 * first batch that needs them; a batch that finds the pool busy (another thread predicting at
 * the same time) starts its own threads instead, so callers never wait for each other.
 *
 * Both accumulate each row's margin in float32, tree by tree in model order, starting from the
 * base margin, as XGBoost's CPU predictor does; DART weights are folded into the leaves.
 * Prediction allocates nothing: batches split into row ranges, one per thread (sp__parallel). */
#include "serve_tree_internal.h"
#include "serve_ubjson.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define FD_FEATURE           0x1fffffffu
#define FD_DEFAULT_LEFT      0x80000000u
/* The perfect layout reads doubled rows (see double_rows) from a 64 KB stack buffer, so it is
 * used for models of at most PERFECT_MAX_FEATURES features (8 rows at a time at the most). */
#define PERFECT_MAX_FEATURES 1024
#define DOUBLED_FLOATS       16384
#define FD_LEAF              0x40000000u
#define FD_CATEGORICAL       0x20000000u

typedef struct gnode {
    float thr; /* threshold, or the leaf value */
    uint32_t fd;
    uint32_t right;
    uint32_t cat; /* categorical: offset in catbits of {n_words, words...} */
} gnode;

struct sp_tree_model {
    uint32_t num_feature, num_class, n_groups, n_trees;
    float base_margin;
    sp__link link;
    char objective[48];
    int perfect;
    uint32_t depth;  /* perfect: D */
    int nan_right;   /* perfect: every split sends NaN right (1), left (2), or it varies (0) */
    float *pthr;     /* perfect: n_trees * (2^D - 1) thresholds, heap order */
    uint32_t *pfd;   /* perfect: the same nodes' feature | default_left << 31 */
    float *pleaves;  /* perfect: n_trees * 2^D */
    gnode *gnodes;   /* general: all trees' nodes */
    uint32_t *groot; /* general: first node of each tree */
    uint32_t *catbits;
    uint32_t *group; /* output group of each tree */
    size_t bytes;
    /* batches: a persistent pool of sp__ncpu() threads, started by the first batch that needs
     * threads (pool_mu guards the start); a batch that finds it busy starts its own threads */
    pthread_mutex_t pool_mu;
    sp__pool *pool;
    int pool_failed;
};

/* ---- compiling */

static uint32_t tree_depth(const sp__xtree *t, uint32_t i) {
    if (t->left[i] < 0) return 0;
    uint32_t a = tree_depth(t, (uint32_t)t->left[i]), b = tree_depth(t, (uint32_t)t->right[i]);
    return 1 + (a > b ? a : b);
}

static void fill_perfect(const sp__xtree *t, uint32_t i, uint32_t slot, uint32_t level,
                         uint32_t depth, uint32_t nf, float *thr, uint32_t *fd, float *leaves) {
    if (t->left[i] < 0) {
        uint32_t first = slot;
        for (uint32_t l = level; l < depth; l++)
            first = 2 * first + 1;
        uint32_t base = (1u << depth) - 1, span = 1u << (depth - level);
        for (uint32_t j = 0; j < span; j++)
            leaves[first - base + j] = t->value[i] * t->weight;
        return;
    }
    thr[slot] = t->value[i];
    /* the column in the doubled row: NaN reads as -inf (goes left) or +inf (goes right) */
    fd[slot] = t->feature[i] + (t->default_left[i] ? 0 : nf);
    fill_perfect(t, (uint32_t)t->left[i], 2 * slot + 1, level + 1, depth, nf, thr, fd, leaves);
    fill_perfect(t, (uint32_t)t->right[i], 2 * slot + 2, level + 1, depth, nf, thr, fd, leaves);
}

/* Pre-order copy of tree t into g starting at *at; returns SP_OK. */
static void fill_general(const sp__xtree *t, uint32_t i, gnode *g, uint32_t *at, uint32_t *catbits,
                         uint32_t *cat_at) {
    uint32_t me = (*at)++;
    if (t->left[i] < 0) {
        g[me] = (gnode){t->value[i] * t->weight, FD_LEAF, 0, 0};
        return;
    }
    g[me].thr = t->value[i];
    g[me].fd = t->feature[i] | (t->default_left[i] ? FD_DEFAULT_LEFT : 0);
    g[me].cat = 0;
    if (t->categorical[i]) {
        uint32_t maxc = 0;
        for (uint32_t q = 0; q < t->cat_count[i]; q++)
            if (t->cats[t->cat_begin[i] + q] > maxc) maxc = t->cats[t->cat_begin[i] + q];
        uint32_t words = t->cat_count[i] ? maxc / 32 + 1 : 0;
        g[me].fd |= FD_CATEGORICAL;
        g[me].cat = *cat_at;
        catbits[(*cat_at)++] = words;
        for (uint32_t q = 0; q < t->cat_count[i]; q++) {
            uint32_t v = t->cats[t->cat_begin[i] + q];
            catbits[*cat_at + v / 32] |= 1u << (v % 32);
        }
        *cat_at += words;
    }
    fill_general(t, (uint32_t)t->left[i], g, at, catbits, cat_at);
    g[me].right = *at;
    fill_general(t, (uint32_t)t->right[i], g, at, catbits, cat_at);
}

static sp_status compile(const sp__xmodel *x, sp_tree_model *m) {
    m->num_feature = x->num_feature;
    m->num_class = x->num_class;
    m->n_groups = x->n_groups;
    m->n_trees = x->n_trees;
    m->base_margin = x->base_margin;
    m->link = x->link;
    memcpy(m->objective, x->objective, sizeof m->objective);
    m->group = sp__malloc((x->n_trees ? x->n_trees : 1) * sizeof(uint32_t));
    if (!m->group) return sp__fail(SP_ENOMEM, "out of memory compiling the model");
    uint32_t depth = 0;
    int categorical = 0;
    uint64_t total_nodes = 0, total_cats = 0;
    for (uint32_t t = 0; t < x->n_trees; t++) {
        const sp__xtree *tr = &x->trees[t];
        m->group[t] = tr->group;
        uint32_t d = tree_depth(tr, 0);
        if (d > depth) depth = d;
        total_nodes += tr->n;
        for (uint32_t i = 0; i < tr->n; i++)
            if (tr->categorical[i]) {
                categorical = 1;
                uint32_t maxc = 0;
                for (uint32_t q = 0; q < tr->cat_count[i]; q++)
                    if (tr->cats[tr->cat_begin[i] + q] > maxc)
                        maxc = tr->cats[tr->cat_begin[i] + q];
                total_cats += 1 + maxc / 32 + 1;
            }
    }
    m->perfect = !categorical && depth <= SP_TREE_PERFECT_MAX_DEPTH &&
                 x->num_feature <= PERFECT_MAX_FEATURES;
    if (m->perfect) {
        m->depth = depth;
        size_t ni = ((size_t)1 << depth) - 1, nl = (size_t)1 << depth;
        m->pthr = sp__malloc((x->n_trees * ni + 1) * sizeof(float));
        m->pfd = sp__malloc((x->n_trees * ni + 1) * sizeof(uint32_t));
        m->pleaves = sp__malloc((x->n_trees * nl + 1) * sizeof(float));
        if (!m->pthr || !m->pfd || !m->pleaves)
            return sp__fail(SP_ENOMEM, "out of memory compiling");
        for (uint32_t t = 0; t < x->n_trees; t++) {
            float *thr = m->pthr + t * ni;
            uint32_t *fd = m->pfd + t * ni;
            for (size_t i = 0; i < ni; i++) {
                thr[i] = -INFINITY; /* padding: every test goes right */
                fd[i] = 0;
            }
            fill_perfect(&x->trees[t], 0, 0, 0, depth, x->num_feature, thr, fd,
                         m->pleaves + t * nl);
        }
        m->bytes = x->n_trees * (ni * (sizeof(float) + sizeof(uint32_t)) + nl * sizeof(float));
    } else {
        m->gnodes = sp__malloc((total_nodes + 1) * sizeof(gnode));
        m->groot = sp__malloc((x->n_trees + 1) * sizeof(uint32_t));
        m->catbits = sp__calloc(total_cats + 1, sizeof(uint32_t));
        if (!m->gnodes || !m->groot || !m->catbits)
            return sp__fail(SP_ENOMEM, "out of memory compiling");
        uint32_t at = 0, cat_at = 0;
        for (uint32_t t = 0; t < x->n_trees; t++) {
            m->groot[t] = at;
            fill_general(&x->trees[t], 0, m->gnodes, &at, m->catbits, &cat_at);
        }
        m->bytes = total_nodes * sizeof(gnode) + (total_cats + 1) * sizeof(uint32_t);
    }
    m->bytes += sizeof *m + x->n_trees * sizeof(uint32_t);
    return SP_OK;
}

void sp_tree_model_free(sp_tree_model *m) {
    if (!m) return;
    sp__pool_free(m->pool);
    pthread_mutex_destroy(&m->pool_mu);
    sp__free(m->pthr);
    sp__free(m->pfd);
    sp__free(m->pleaves);
    sp__free(m->gnodes);
    sp__free(m->groot);
    sp__free(m->catbits);
    sp__free(m->group);
    sp__free(m);
}

sp_status sp_tree_model_load_buffer(const char *name, const void *data, size_t len,
                                    sp_tree_model **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_tree_model_load: out is NULL");
    *out = NULL;
    if (!data && len) return sp__fail(SP_EINVAL, "sp_tree_model_load: data is NULL");
    sp__xmodel x;
    if (data && sp__ubjson_sniff(data, len)) {
        /* XGBoost's binary format: the same model through its JSON text */
        sp__buf text = {0};
        sp_status rc = sp__ubjson_to_json(name ? name : "model", data, len, &text);
        if (rc == SP_OK)
            rc = sp__xmodel_parse(name ? name : "model", text.data ? (const char *)text.data : "",
                                  text.len, &x);
        sp__buf_free(&text);
        SP_TRY(rc);
    } else {
        SP_TRY(sp__xmodel_parse(name ? name : "model", data ? data : "", len, &x));
    }
    sp_tree_model *m = sp__calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->pool_mu, NULL);
    sp_status rc = m ? compile(&x, m) : sp__fail(SP_ENOMEM, "out of memory");
    sp__xmodel_free(&x);
    if (rc < 0) {
        sp_tree_model_free(m);
        return rc;
    }
    *out = m;
    return SP_OK;
}

sp_status sp_tree_model_load(const char *path, sp_tree_model **out) {
    if (!out || !path) return sp__fail(SP_EINVAL, "sp_tree_model_load: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t len;
    SP_TRY(sp__read_file(path, &data, &len));
    sp_status rc = sp_tree_model_load_buffer(path, data, len, out);
    sp__free(data);
    return rc;
}

uint32_t sp_tree_model_num_features(const sp_tree_model *m) {
    return m->num_feature;
}

uint32_t sp_tree_model_num_classes(const sp_tree_model *m) {
    return m->n_groups;
}

uint32_t sp_tree_model_num_outputs(const sp_tree_model *m, int margin) {
    if (m->link == SP__LINK_ARGMAX && !margin) return 1;
    return m->n_groups;
}

const char *sp_tree_model_objective(const sp_tree_model *m) {
    return m->objective;
}

uint32_t sp_tree_model_num_trees(const sp_tree_model *m) {
    return m->n_trees;
}

const char *sp_tree_model_layout(const sp_tree_model *m) {
    return m->perfect ? "perfect" : "general";
}

size_t sp_tree_model_mem_usage(const sp_tree_model *m) {
    return m->bytes;
}

/* ---- predicting */

/* Rows walked together through each tree. A block's rows stay in L1 while the model streams
 * past once per block; 16-row blocks re-read the whole model (760 KB for 1,000 depth-6 trees)
 * eight times as often and ran 1.4x slower. */
enum { RB = 128 };

/* Missing values without a branch or a second comparison: a block of rows is first copied into
 * "doubled" rows of 2 * num_feature floats, the first half with NaN replaced by -inf, the second
 * with +inf, and each compiled node reads the half of its default direction (fill_perfect). Then
 * every step is one ordered comparison, right = v >= threshold: -inf never passes (left), +inf
 * always does (right), and a real value compares as itself (XGBoost's "left iff x < t"). The
 * copy costs 2 floats a feature per row, against ~6 steps per tree; the step went from ~14
 * instructions to ~7 and the batch from 104k to 161k rows/s on one core (1,000 trees). */

static void double_rows(const float *x, size_t stride, size_t nr, uint32_t nf, float *xx) {
    for (size_t r = 0; r < nr; r++) {
        const float *row = x + r * stride;
        float *lo = xx + r * 2 * (size_t)nf, *hi = lo + nf;
        for (uint32_t j = 0; j < nf; j++) {
            const float v = row[j];
            lo[j] = v == v ? v : -INFINITY;
            hi[j] = v == v ? v : INFINITY;
        }
    }
}

/* Margins of nr rows of doubled data (stride 2 * num_feature) into acc[nr * n_groups]: nr
 * independent scalar chains per tree level, which the CPU overlaps. Vector gathers measured
 * slower on these machines (1,000 trees, one core: auto-vectorized 83k, AVX-512 gathers 70k,
 * scalar 102k rows/s), so the loop is kept scalar. */
__attribute__((optimize("no-tree-vectorize"))) static void
block_perfect(const sp_tree_model *m, const float *xx, size_t nr, float *acc) {
    const uint32_t D = m->depth, G = m->n_groups, stride = 2 * m->num_feature;
    const size_t ni = ((size_t)1 << D) - 1, nl = (size_t)1 << D;
    for (uint32_t t = 0; t < m->n_trees; t++) {
        const float *thr = m->pthr + t * ni;
        const uint32_t *fd = m->pfd + t * ni;
        const float *lf = m->pleaves + t * nl - ni; /* indexed by the heap slot */
        const uint32_t g = m->group[t];
        size_t r0 = 0;
        /* groups of 8 rows whose node indices stay in registers (the tree's nodes stay in L1
         * from one group to the next) */
        for (; r0 + 8 <= nr; r0 += 8) {
            const float *b = xx + r0 * stride;
            uint32_t i0 = 0, i1 = 0, i2 = 0, i3 = 0, i4 = 0, i5 = 0, i6 = 0, i7 = 0;
            for (uint32_t l = 0; l < D; l++) {
#define SP__STEP(i, r) i = 2 * i + 1 + (uint32_t)(b[(r)*stride + fd[i]] >= thr[i])
                SP__STEP(i0, 0);
                SP__STEP(i1, 1);
                SP__STEP(i2, 2);
                SP__STEP(i3, 3);
                SP__STEP(i4, 4);
                SP__STEP(i5, 5);
                SP__STEP(i6, 6);
                SP__STEP(i7, 7);
#undef SP__STEP
            }
            float *a = acc + r0 * G + g;
            a[0] += lf[i0];
            a[G] += lf[i1];
            a[2 * G] += lf[i2];
            a[3 * G] += lf[i3];
            a[4 * G] += lf[i4];
            a[5 * G] += lf[i5];
            a[6 * G] += lf[i6];
            a[7 * G] += lf[i7];
        }
        for (; r0 < nr; r0++) {
            const float *b = xx + r0 * stride;
            uint32_t i = 0;
            for (uint32_t l = 0; l < D; l++)
                i = 2 * i + 1 + (uint32_t)(b[fd[i]] >= thr[i]);
            acc[r0 * G + g] += lf[i];
        }
    }
}

/* One doubled row: TG trees walked together, so their D-step chains overlap (one tree's chain is
 * a sequence of dependent loads, ~3.2 ns a level); the leaves are then added in tree order, so
 * the float32 sum is the same as tree by tree. */
enum { TG = 8 };
static void row_perfect(const sp_tree_model *m, const float *xx, float *acc) {
    const uint32_t D = m->depth;
    const size_t ni = ((size_t)1 << D) - 1, nl = (size_t)1 << D;
    uint32_t t = 0;
    for (; t + TG <= m->n_trees; t += TG) {
        uint32_t idx[TG] = {0};
        for (uint32_t l = 0; l < D; l++)
            for (uint32_t k = 0; k < TG; k++) {
                const size_t base = (t + k) * ni;
                const uint32_t n = idx[k];
                idx[k] = 2 * n + 1 + (uint32_t)(xx[m->pfd[base + n]] >= m->pthr[base + n]);
            }
        for (uint32_t k = 0; k < TG; k++)
            acc[m->group[t + k]] += m->pleaves[(t + k) * nl - ni + idx[k]];
    }
    for (; t < m->n_trees; t++) {
        const size_t base = t * ni;
        uint32_t n = 0;
        for (uint32_t l = 0; l < D; l++)
            n = 2 * n + 1 + (uint32_t)(xx[m->pfd[base + n]] >= m->pthr[base + n]);
        acc[m->group[t]] += m->pleaves[t * nl - ni + n];
    }
}

/* Margins of 1 .. RB rows into acc[nr * n_groups], through the doubled-row buffer on the stack
 * (so nothing is allocated): as many rows at a time as fit. */
static void margins_perfect(const sp_tree_model *m, const float *x, size_t stride, size_t nr,
                            float *acc) {
    float xx[DOUBLED_FLOATS];
    const uint32_t nf = m->num_feature, G = m->n_groups;
    size_t per = DOUBLED_FLOATS / (2 * (size_t)nf);
    if (per > RB) per = RB;
    if (nr == 1) {
        double_rows(x, stride, 1, nf, xx);
        row_perfect(m, xx, acc);
        return;
    }
    for (size_t r0 = 0; r0 < nr; r0 += per) {
        size_t k = nr - r0 < per ? nr - r0 : per;
        double_rows(x + r0 * stride, stride, k, nf, xx);
        block_perfect(m, xx, k, acc + r0 * G);
    }
}

static inline int cat_goes_right(const uint32_t *set, float v) {
    /* XGBoost: a category in the split's set goes right, any other (including a negative or
     * out-of-range one) left */
    if (!(v >= 0) || v >= 4294967296.0f) return 0;
    uint32_t c = (uint32_t)v, words = set[0];
    if (c / 32 >= words) return 0;
    return (set[1 + c / 32] >> (c % 32)) & 1;
}

static void margins_general(const sp_tree_model *m, const float *x, size_t stride, size_t nr,
                            float *acc) {
    const uint32_t G = m->n_groups;
    for (size_t r = 0; r < nr; r++) {
        const float *row = x + r * stride;
        for (uint32_t t = 0; t < m->n_trees; t++) {
            const gnode *g = m->gnodes;
            uint32_t i = m->groot[t];
            while (!(g[i].fd & FD_LEAF)) {
                const float v = row[g[i].fd & FD_FEATURE];
                int right;
                if (v != v)
                    right = !(g[i].fd & FD_DEFAULT_LEFT);
                else if (g[i].fd & FD_CATEGORICAL)
                    right = cat_goes_right(m->catbits + g[i].cat, v);
                else
                    right = !(v < g[i].thr);
                i = right ? g[i].right : i + 1;
            }
            acc[r * G + m->group[t]] += g[i].thr;
        }
    }
}

static void transform(const sp_tree_model *m, const float *margin, int want_margin, float *out) {
    const uint32_t G = m->n_groups;
    if (want_margin) {
        memcpy(out, margin, G * sizeof(float));
        return;
    }
    switch (m->link) {
    case SP__LINK_IDENTITY:
        memcpy(out, margin, G * sizeof(float));
        break;
    case SP__LINK_LOGISTIC:
        for (uint32_t g = 0; g < G; g++)
            out[g] = 1.0f / (1.0f + expf(-margin[g]));
        break;
    case SP__LINK_LOG:
        for (uint32_t g = 0; g < G; g++)
            out[g] = expf(margin[g]);
        break;
    case SP__LINK_SOFTMAX: {
        float mx = margin[0], sum = 0;
        for (uint32_t g = 1; g < G; g++)
            mx = margin[g] > mx ? margin[g] : mx;
        for (uint32_t g = 0; g < G; g++)
            sum += out[g] = expf(margin[g] - mx);
        for (uint32_t g = 0; g < G; g++)
            out[g] /= sum;
        break;
    }
    case SP__LINK_ARGMAX: {
        uint32_t best = 0;
        for (uint32_t g = 1; g < G; g++)
            if (margin[g] > margin[best]) best = g;
        out[0] = (float)best;
        break;
    }
    }
}

typedef struct pred_ctx {
    const sp_tree_model *m;
    const float *x;
    size_t n, stride;
    int margin;
    float *out;
} pred_ctx;

static void predict_range(const pred_ctx *c, size_t lo, size_t hi) {
    const sp_tree_model *m = c->m;
    const uint32_t G = m->n_groups, no = sp_tree_model_num_outputs(m, c->margin);
    float acc[RB * 64]; /* the caller sends models with more than 64 outputs elsewhere */
    for (size_t r0 = lo; r0 < hi; r0 += RB) {
        size_t nr = hi - r0 < RB ? hi - r0 : RB;
        for (size_t i = 0; i < nr * G; i++)
            acc[i] = m->base_margin;
        const float *xb = c->x + r0 * c->stride;
        if (m->perfect)
            margins_perfect(m, xb, c->stride, nr, acc);
        else
            margins_general(m, xb, c->stride, nr, acc);
        for (size_t r = 0; r < nr; r++)
            transform(m, acc + r * G, c->margin, c->out + (r0 + r) * no);
    }
}

/* Models with many classes: one row at a time with a caller-sized accumulator. */
static void predict_range_wide(const pred_ctx *c, size_t lo, size_t hi, float *acc) {
    const sp_tree_model *m = c->m;
    const uint32_t G = m->n_groups, no = sp_tree_model_num_outputs(m, c->margin);
    for (size_t r = lo; r < hi; r++) {
        for (uint32_t g = 0; g < G; g++)
            acc[g] = m->base_margin;
        if (m->perfect)
            margins_perfect(m, c->x + r * c->stride, c->stride, 1, acc);
        else
            margins_general(m, c->x + r * c->stride, c->stride, 1, acc);
        transform(m, acc, c->margin, c->out + r * no);
    }
}

static void predict_worker(void *p, int t, int nt) {
    const pred_ctx *c = p;
    uint64_t lo, hi;
    /* split on block boundaries so every thread runs whole blocks */
    uint64_t blocks = (c->n + RB - 1) / RB;
    sp__split_range(blocks, nt, t, &lo, &hi);
    lo *= RB;
    hi = hi * RB < c->n ? hi * RB : c->n;
    if (lo < hi) predict_range(c, lo, hi);
}

sp_status sp_tree_predict(const sp_tree_model *m, const float *x, size_t n_rows, size_t row_stride,
                          int margin, int n_threads, float *out) {
    if (!m || (!x && n_rows) || (!out && n_rows))
        return sp__fail(SP_EINVAL, "sp_tree_predict: NULL model, input or output");
    if (row_stride < m->num_feature)
        return sp__fail(SP_EINVAL,
                        "sp_tree_predict: rows have %zu values, the model needs %u "
                        "features",
                        row_stride, m->num_feature);
    if (n_threads < 0) return sp__fail(SP_EINVAL, "sp_tree_predict: n_threads %d < 0", n_threads);
    pred_ctx c = {m, x, n_rows, row_stride, margin, out};
    if ((size_t)RB * m->n_groups > RB * 64) {
        /* more than 64 classes: row by row, with an accumulator on the heap (rare) */
        float *acc = sp__malloc(m->n_groups * sizeof(float));
        if (!acc) return sp__fail(SP_ENOMEM, "out of memory");
        predict_range_wide(&c, 0, n_rows, acc);
        sp__free(acc);
        return SP_OK;
    }
    int nt = n_threads ? n_threads : sp__ncpu();
    /* below ~2k rows the threads cost more than they share */
    if (n_rows < 2048 || nt == 1) {
        predict_range(&c, 0, n_rows);
        return SP_OK;
    }
    if ((size_t)nt * 256 > n_rows) nt = (int)(n_rows / 256) + 1;
    if (nt == sp__ncpu()) {
        sp_tree_model *mm = (sp_tree_model *)m; /* the pool is the model's only mutable part */
        pthread_mutex_lock(&mm->pool_mu);
        if (!mm->pool && !mm->pool_failed && sp__pool_new(nt, &mm->pool) < 0) mm->pool_failed = 1;
        pthread_mutex_unlock(&mm->pool_mu);
        if (mm->pool && sp__pool_size(mm->pool) == nt &&
            sp__pool_run(mm->pool, nt, predict_worker, &c) == SP_OK)
            return SP_OK;
    }
    sp__parallel(nt, predict_worker, &c);
    return SP_OK;
}
