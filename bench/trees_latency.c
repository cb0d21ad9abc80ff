/* trees_latency.c — single-row latency and model load time of softpipe's tree runtime
 * (sp_tree_predict / sp_tree_model_load) against XGBoost's C API, in one process, alternating.
 *
 *   trees_latency latency MODEL.json ROWS.f32 N_ROWS N_FEATURES LIBXGBOOST.so
 *                 [--calls N] [--rounds R]
 *   trees_latency load MODEL.json LIBXGBOOST.so [--repeat R]
 *
 * XGBoost is reached through dlopen (Debian ships libxgboost.so with python3-xgboost but not
 * always its headers), so the few prototypes used are declared here, as in XGBoost 1.7's
 * include/xgboost/c_api.h.
 *
 * latency: ROWS.f32 holds N_ROWS x N_FEATURES float32 (row-major, NaN = missing). Each round
 * times N single-row predictions of XGBoost (XGBoosterPredictFromDense, nthread=1, NULL proxy
 * DMatrix, the __array_interface__ JSON of the row formatted per call as a caller must), then N
 * of softpipe (sp_tree_predict(model, row, 1, n_features, 0, 1, out)), cycling through the rows;
 * the order of the two sides flips every round. Each call is timed alone with
 * clock_gettime(CLOCK_MONOTONIC). One untimed pass over all rows per side precedes the rounds.
 * Prints one JSON object: per side, p50/p90/p99/mean/min/max over all calls (µs) and the p50 and
 * p99 of each round; and the largest |difference| between the two sides' outputs.
 *
 * load: R times, alternating, sp_tree_model_load and XGBoosterCreate + XGBoosterLoadModel of
 * MODEL (file read once first, so the page cache is warm); prints the milliseconds of each.
 *
 * Build (bench/bench_trees.py does it):
 *   cc -O2 -Iinclude -o trees_latency bench/trees_latency.c -Lbuild -lsoftpipe \
 *      -Wl,-rpath,$PWD/build -ldl -lm
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "softpipe/core.h"
#include "softpipe/tree.h"

typedef uint64_t bst_ulong;
typedef void *BoosterHandle;
typedef void *DMatrixHandle;

static int (*XGBoosterCreate)(const DMatrixHandle dmats[], bst_ulong len, BoosterHandle *out);
static int (*XGBoosterLoadModel)(BoosterHandle handle, const char *fname);
static int (*XGBoosterSetParam)(BoosterHandle handle, const char *name, const char *value);
static int (*XGBoosterPredictFromDense)(BoosterHandle handle, const char *values,
                                        const char *config, DMatrixHandle m,
                                        bst_ulong const **out_shape, bst_ulong *out_dim,
                                        const float **out_result);
static int (*XGBoosterFree)(BoosterHandle handle);
static const char *(*XGBGetLastError)(void);

static void die(const char *what, const char *msg) {
    fprintf(stderr, "trees_latency: %s: %s\n", what, msg ? msg : "");
    exit(1);
}

static void xgb_check(int rc, const char *what) {
    if (rc != 0) die(what, XGBGetLastError());
}

static void sp_check(sp_status st, const char *what) {
    if (st != SP_OK) die(what, sp_errmsg());
}

static void *sym(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) die(name, dlerror());
    return p;
}

static void load_xgboost(const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) die("dlopen", dlerror());
    *(void **)&XGBoosterCreate = sym(lib, "XGBoosterCreate");
    *(void **)&XGBoosterLoadModel = sym(lib, "XGBoosterLoadModel");
    *(void **)&XGBoosterSetParam = sym(lib, "XGBoosterSetParam");
    *(void **)&XGBoosterPredictFromDense = sym(lib, "XGBoosterPredictFromDense");
    *(void **)&XGBoosterFree = sym(lib, "XGBoosterFree");
    *(void **)&XGBGetLastError = sym(lib, "XGBGetLastError");
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentile of sorted values by the nearest-rank method, in µs. */
static double pct(const uint64_t *sorted, size_t n, double p) {
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return sorted[k - 1] / 1000.0;
}

static const char XGB_CONFIG[] =
    "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": 0, "
    "\"strict_shape\": false, \"cache_id\": 0, \"missing\": NaN}";

/* One XGBoost single-row prediction, as a C caller writes it: the row's array interface, then
 * the call. Returns the prediction. */
static inline float xgb_one(BoosterHandle h, const float *row, unsigned n_features) {
    char iface[160];
    snprintf(iface, sizeof iface,
             "{\"data\": [%llu, true], \"shape\": [1, %u], \"strides\": null, "
             "\"typestr\": \"<f4\", \"version\": 3}",
             (unsigned long long)(uintptr_t)row, n_features);
    bst_ulong const *shape;
    bst_ulong dim;
    const float *res;
    xgb_check(XGBoosterPredictFromDense(h, iface, XGB_CONFIG, NULL, &shape, &dim, &res),
              "XGBoosterPredictFromDense");
    return res[0];
}

static void print_side(const char *name, uint64_t *t, size_t calls, unsigned rounds) {
    size_t n = calls * rounds;
    printf("  \"%s\": {\"rounds_p50_us\": [", name);
    for (unsigned r = 0; r < rounds; r++) {
        qsort(t + r * calls, calls, sizeof *t, cmp_u64);
        printf("%s%.3f", r ? ", " : "", pct(t + r * calls, calls, 50));
    }
    printf("], \"rounds_p99_us\": [");
    for (unsigned r = 0; r < rounds; r++)
        printf("%s%.3f", r ? ", " : "", pct(t + r * calls, calls, 99));
    printf("], ");
    qsort(t, n, sizeof *t, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)t[i];
    printf("\"calls\": %zu, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
           "\"mean_us\": %.3f, \"min_us\": %.3f, \"max_us\": %.3f}",
           n, pct(t, n, 50), pct(t, n, 90), pct(t, n, 99), sum / n / 1000.0, t[0] / 1000.0,
           t[n - 1] / 1000.0);
}

static int cmd_latency(int argc, char **argv) {
    if (argc < 7) die("usage", "latency MODEL ROWS.f32 N_ROWS N_FEATURES LIBXGBOOST");
    const char *model_path = argv[2], *rows_path = argv[3];
    size_t n_rows = strtoull(argv[4], NULL, 10);
    unsigned n_features = (unsigned)strtoul(argv[5], NULL, 10);
    load_xgboost(argv[6]);
    size_t calls = 20000 / 5;
    unsigned rounds = 5;
    for (int i = 7; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--calls"))
            calls = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else
            die("unknown option", argv[i]);
    }
    if (!n_rows || !n_features || !calls || !rounds) die("usage", "zero count");

    float *x = malloc(n_rows * n_features * sizeof *x);
    FILE *f = fopen(rows_path, "rb");
    if (!f) die("open", rows_path);
    if (fread(x, sizeof *x, n_rows * n_features, f) != n_rows * n_features) die("read", rows_path);
    fclose(f);

    sp_tree_model *model;
    sp_check(sp_tree_model_load(model_path, &model), "sp_tree_model_load");
    if (sp_tree_model_num_features(model) != n_features) die("model", "num_features differs");
    BoosterHandle h;
    xgb_check(XGBoosterCreate(NULL, 0, &h), "XGBoosterCreate");
    xgb_check(XGBoosterLoadModel(h, model_path), "XGBoosterLoadModel");
    xgb_check(XGBoosterSetParam(h, "nthread", "1"), "XGBoosterSetParam");

    /* Warm-up (XGBoost configures its learner on the first call) and output check. */
    double max_diff = 0;
    for (size_t i = 0; i < n_rows; i++) {
        const float *row = x + i * n_features;
        float a = xgb_one(h, row, n_features), b;
        sp_check(sp_tree_predict(model, row, 1, n_features, 0, 1, &b), "sp_tree_predict");
        double d = fabs((double)a - (double)b);
        if (!(d <= max_diff)) max_diff = d; /* NaN propagates */
    }

    uint64_t *t_xgb = malloc(calls * rounds * sizeof *t_xgb);
    uint64_t *t_sp = malloc(calls * rounds * sizeof *t_sp);
    volatile float sink = 0;
    size_t next = 0;
    for (unsigned r = 0; r < rounds; r++) {
        for (int side = 0; side < 2; side++) {
            int do_xgb = (side == 0) ^ (r & 1);
            uint64_t *t = (do_xgb ? t_xgb : t_sp) + r * calls;
            size_t i = next;
            for (size_t c = 0; c < calls; c++) {
                const float *row = x + i * n_features;
                if (++i == n_rows) i = 0;
                float out;
                uint64_t t0 = now_ns();
                if (do_xgb) {
                    out = xgb_one(h, row, n_features);
                } else {
                    sp_tree_predict(model, row, 1, n_features, 0, 1, &out);
                }
                t[c] = now_ns() - t0;
                sink += out;
            }
        }
        next = (next + calls) % n_rows;
    }
    (void)sink;

    printf("{\n  \"calls_per_round\": %zu, \"rounds\": %u, \"rows\": %zu, \"features\": %u,\n",
           calls, rounds, n_rows, n_features);
    printf("  \"max_abs_diff\": %.9g, \"softpipe_layout\": \"%s\", \"trees\": %u,\n", max_diff,
           sp_tree_model_layout(model), sp_tree_model_num_trees(model));
    print_side("xgboost", t_xgb, calls, rounds);
    printf(",\n");
    print_side("softpipe", t_sp, calls, rounds);
    printf("\n}\n");
    XGBoosterFree(h);
    sp_tree_model_free(model);
    free(t_xgb);
    free(t_sp);
    free(x);
    return 0;
}

static int cmd_load(int argc, char **argv) {
    if (argc < 4) die("usage", "load MODEL LIBXGBOOST [--repeat R]");
    const char *model_path = argv[2];
    load_xgboost(argv[3]);
    unsigned repeat = 5;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--repeat"))
            repeat = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else
            die("unknown option", argv[i]);
    }
    /* Read the file once so that every timed load finds it in the page cache. */
    FILE *f = fopen(model_path, "rb");
    if (!f) die("open", model_path);
    char buf[1 << 16];
    size_t bytes = 0, got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        bytes += got;
    fclose(f);

    double *t_sp = calloc(repeat, sizeof *t_sp), *t_xgb = calloc(repeat, sizeof *t_xgb);
    unsigned trees = 0;
    const char *layout = "";
    size_t mem = 0;
    for (unsigned r = 0; r < repeat; r++) {
        for (int side = 0; side < 2; side++) {
            int do_xgb = (side == 0) ^ (r & 1);
            uint64_t t0 = now_ns();
            if (do_xgb) {
                BoosterHandle h;
                xgb_check(XGBoosterCreate(NULL, 0, &h), "XGBoosterCreate");
                xgb_check(XGBoosterLoadModel(h, model_path), "XGBoosterLoadModel");
                t_xgb[r] = (now_ns() - t0) / 1e6;
                XGBoosterFree(h);
            } else {
                sp_tree_model *m;
                sp_check(sp_tree_model_load(model_path, &m), "sp_tree_model_load");
                t_sp[r] = (now_ns() - t0) / 1e6;
                trees = sp_tree_model_num_trees(m);
                layout = sp_tree_model_layout(m);
                mem = sp_tree_model_mem_usage(m);
                sp_tree_model_free(m);
            }
        }
    }
    printf("{\"file_bytes\": %zu, \"trees\": %u, \"softpipe_layout\": \"%s\", "
           "\"softpipe_mem_bytes\": %zu, \"softpipe_ms\": [",
           bytes, trees, layout, mem);
    for (unsigned r = 0; r < repeat; r++)
        printf("%s%.3f", r ? ", " : "", t_sp[r]);
    printf("], \"xgboost_ms\": [");
    for (unsigned r = 0; r < repeat; r++)
        printf("%s%.3f", r ? ", " : "", t_xgb[r]);
    printf("]}\n");
    free(t_sp);
    free(t_xgb);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "latency")) return cmd_latency(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "load")) return cmd_load(argc, argv);
    fprintf(stderr,
            "usage: trees_latency latency MODEL.json ROWS.f32 N_ROWS N_FEATURES LIBXGBOOST.so "
            "[--calls N] [--rounds R]\n"
            "       trees_latency load MODEL.json LIBXGBOOST.so [--repeat R]\n");
    return 2;
}
