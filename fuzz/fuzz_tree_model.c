/* fuzz_tree_model.c — fuzzes the XGBoost JSON model loader and compiler (sp_tree_model_load_buffer:
 * src/serve/serve_json.c, serve_tree_load.c, serve_tree.c).
 *
 * The input is copied into a buffer of exactly its size, so a read one past the end is caught. A
 * model that loads must answer its getters sanely and predict a few rows (NaN, zeros, huge and
 * negative values, small integers that hit categorical sets, pseudo-random values) on one thread
 * as a batch and alone, margins and outputs: every output written, margins never NaN (sums of
 * finite leaves may overflow to infinity, which is allowed, but never to both infinities),
 * probabilities in [0, 1], class indices in range, an identity link's outputs equal to its
 * margins, and one row predicted alone equal to the same row in the batch. A load that fails must
 * return a documented code, a NULL model and a message naming the input. */
#include "core_internal.h"
#include "softpipe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { ROWS = 12, MAX_FEATURES = 4096, MAX_OUT = 1024 };

static void fill_rows(float *x, uint32_t nf) {
    uint32_t s = 12345;
    for (uint32_t r = 0; r < ROWS; r++)
        for (uint32_t f = 0; f < nf; f++) {
            float v;
            s = s * 1103515245u + 12345u;
            switch (r) {
            case 0:
                v = NAN;
                break;
            case 1:
                v = 0.0f;
                break;
            case 2:
                v = 3.0e38f;
                break;
            case 3:
                v = -3.0e38f;
                break;
            case 4:
                v = (float)(f % 7);
                break; /* categories */
            case 5:
                v = -1.0f;
                break;
            case 6:
                v = INFINITY;
                break;
            case 7:
                v = (f % 2) ? NAN : 1.0f;
                break;
            default:
                v = (float)((int32_t)(s >> 8) % 2000) / 100.0f;
                break;
            }
            x[(size_t)r * nf + f] = v;
        }
}

/* Outputs of one row given its margins (k of them). */
static void check_row(const sp_tree_model *m, const float *mg, uint32_t k, const float *out,
                      uint32_t no) {
    const char *obj = sp_tree_model_objective(m);
    int finite = 1;
    for (uint32_t g = 0; g < k; g++)
        finite &= isfinite(mg[g]) != 0;
    for (uint32_t i = 0; i < no; i++) {
        float v = out[i];
        if (!strcmp(obj, "multi:softmax")) {
            if (!(v >= 0 && v < (float)k) || v != floorf(v)) abort();
        } else if (!strcmp(obj, "multi:softprob")) {
            if (finite && !(v >= 0 && v <= 1)) abort(); /* softmax of infinities is NaN */
        } else if (strstr(obj, "logistic")) {
            if (!(v >= 0 && v <= 1)) abort();
        } else if (!strcmp(obj, "count:poisson") || !strcmp(obj, "reg:gamma") ||
                   !strcmp(obj, "reg:tweedie")) {
            if (!(v >= 0)) abort();
        } else if (no == k && memcmp(&v, &mg[i], sizeof v) != 0) {
            abort(); /* identity link */
        }
    }
}

static int predict_checked(const sp_tree_model *m, const float *x, uint32_t nf, int margin,
                           uint32_t no, float *out) {
    size_t n = (size_t)ROWS * no;
    for (size_t i = 0; i < n; i++)
        out[i] = -12345.0f; /* every output must be written */
    if (sp_tree_predict(m, x, ROWS, nf, margin, 1, out) != SP_OK) abort();
    float *one = malloc(no * sizeof(float));
    if (!one) return -1;
    for (uint32_t r = 0; r < ROWS; r += 5) { /* a row alone equals the row in the batch */
        if (sp_tree_predict(m, x + (size_t)r * nf, 1, nf, margin, 1, one) != SP_OK) abort();
        if (memcmp(one, out + (size_t)r * no, no * sizeof(float)) != 0) abort();
    }
    free(one);
    for (size_t i = 0; i < n; i++)
        if (out[i] == -12345.0f) abort();
    return 0;
}

static void exercise(const sp_tree_model *m) {
    uint32_t nf = sp_tree_model_num_features(m), k = sp_tree_model_num_classes(m);
    const char *obj = sp_tree_model_objective(m), *layout = sp_tree_model_layout(m);
    if (nf == 0 || k == 0 || !obj || !obj[0]) abort();
    if (strcmp(layout, "perfect") != 0 && strcmp(layout, "general") != 0) abort();
    if (sp_tree_model_mem_usage(m) == 0) abort();
    (void)sp_tree_model_num_trees(m);
    uint32_t nm = sp_tree_model_num_outputs(m, 1), no = sp_tree_model_num_outputs(m, 0);
    if (nm != k || (no != 1 && no != k)) abort();
    if (nf > MAX_FEATURES || k > MAX_OUT) return; /* keep it small; the loader ran anyway */
    float *x = malloc((size_t)ROWS * nf * sizeof(float));
    float *mg = malloc((size_t)ROWS * k * sizeof(float));
    float *out = malloc((size_t)ROWS * no * sizeof(float));
    if (x && mg && out) {
        fill_rows(x, nf);
        if (predict_checked(m, x, nf, 1, k, mg) == 0 && predict_checked(m, x, nf, 0, no, out) == 0)
            for (uint32_t r = 0; r < ROWS; r++) {
                for (uint32_t g = 0; g < k; g++)
                    if (isnan(mg[(size_t)r * k + g])) abort(); /* finite leaves: never NaN */
                check_row(m, mg + (size_t)r * k, k, out + (size_t)r * no, no);
            }
    }
    free(x);
    free(mg);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    sp_tree_model *m = (sp_tree_model *)buf; /* must be reset */
    sp__errmsg_clear();
    sp_status rc = sp_tree_model_load_buffer("fuzz.json", buf, size, &m);
    if (rc == SP_OK) {
        if (!m) abort();
        exercise(m);
        sp_tree_model_free(m);
    } else {
        if (rc != SP_EBADINPUT && rc != SP_EUNSUPPORTED && rc != SP_ENOMEM) abort();
        if (m != NULL) abort();
        if (strncmp(sp_errmsg(), "fuzz.json", 9) != 0) abort();
    }
    free(buf);
    return 0;
}
