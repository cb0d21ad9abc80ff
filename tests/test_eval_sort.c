/* test_eval_sort.c — sp__eval_argsort (src/eval/eval_sort.c): every result is checked against a
 * qsort reference ordered by (value, index), which is what a stable ascending argsort must return.
 * Covers float64 and float32, ties, signed zeros, infinities and denormals, strided input, sizes on
 * both sides of the single-thread cutoff, thread counts, bad arguments and allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "eval/eval_internal.h"
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers */

/* splitmix64: a seeded generator, so every failure replays. */
static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double next_unit(uint64_t *state) {
    return (double)(next_u64(state) >> 11) * 0x1.0p-53;
}

/* Any float64 except NaN: random bit patterns cover every exponent, sign and denormal. */
static double next_any_f64(uint64_t *state) {
    for (;;) {
        uint64_t u = next_u64(state);
        double d;
        memcpy(&d, &u, sizeof d);
        if (!isnan(d)) return d;
    }
}

static float next_any_f32(uint64_t *state) {
    for (;;) {
        uint32_t u = (uint32_t)(next_u64(state) >> 32);
        float f;
        memcpy(&f, &u, sizeof f);
        if (!isnan(f)) return f;
    }
}

typedef struct ref_item {
    double value;
    uint32_t index;
} ref_item;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_item *a = pa, *b = pb;
    /* -0.0 == 0.0 here, so signed zeros tie and fall through to the index. */
    if (a->value < b->value) return -1;
    if (a->value > b->value) return 1;
    return (a->index > b->index) - (a->index < b->index);
}

static double score_at(const void *scores, sp_dtype dtype, size_t stride, size_t i) {
    const char *p = (const char *)scores + i * stride;
    if (dtype == SP_DTYPE_FLOAT64) {
        double d;
        memcpy(&d, p, sizeof d);
        return d;
    }
    float f;
    memcpy(&f, p, sizeof f);
    return (double)f;
}

/* Sorts with sp__eval_argsort (with and without `sorted`) and checks perm and sorted against the
 * reference, element by element. Returns the perm for callers that compare across runs; the caller
 * frees it with free(). */
static uint32_t *check_sort(const void *scores, sp_dtype dtype, size_t stride, size_t n,
                            int n_threads) {
    size_t n_alloc = n ? n : 1;
    uint32_t *perm = malloc(n_alloc * sizeof *perm);
    uint32_t *perm2 = malloc(n_alloc * sizeof *perm2);
    double *sorted = malloc(n_alloc * sizeof *sorted);
    ref_item *ref = malloc(n_alloc * sizeof *ref);
    assert_non_null(perm);
    assert_non_null(perm2);
    assert_non_null(sorted);
    assert_non_null(ref);
    memset(perm, 0xAB, n_alloc * sizeof *perm);
    memset(perm2, 0xCD, n_alloc * sizeof *perm2);

    assert_int_equal(sp__eval_argsort(scores, dtype, stride, n, n_threads, perm, sorted), SP_OK);
    assert_int_equal(sp__eval_argsort(scores, dtype, stride, n, n_threads, perm2, NULL), SP_OK);

    for (size_t i = 0; i < n; i++)
        ref[i] = (ref_item){score_at(scores, dtype, stride, i), (uint32_t)i};
    qsort(ref, n, sizeof *ref, ref_cmp);

    for (size_t j = 0; j < n; j++) {
        if (perm[j] != ref[j].index || perm2[j] != ref[j].index) {
            fail_msg("n=%zu threads=%d dtype=%s: perm[%zu] = %u (without sorted: %u), want %u "
                     "(value %.17g)",
                     n, n_threads, sp_dtype_name(dtype), j, perm[j], perm2[j], ref[j].index,
                     ref[j].value);
        }
        /* Bitwise: +0.0 for either zero, and exactly the gathered score otherwise. */
        double want = ref[j].value == 0.0 ? 0.0 : ref[j].value;
        if (memcmp(&sorted[j], &want, sizeof want) != 0)
            fail_msg("n=%zu threads=%d: sorted[%zu] = %.17g, want %.17g", n, n_threads, j,
                     sorted[j], want);
    }
    free(ref);
    free(sorted);
    free(perm2);
    return perm;
}

static void check_sort_f64(const double *v, size_t n, int n_threads) {
    free(check_sort(v, SP_DTYPE_FLOAT64, sizeof *v, n, n_threads));
}

static void check_sort_f32(const float *v, size_t n, int n_threads) {
    free(check_sort(v, SP_DTYPE_FLOAT32, sizeof *v, n, n_threads));
}

/* ---- tests */

static void test_argsort_random_f64(void **state) {
    (void)state;
    size_t sizes[] = {3, 100, 5000, 100000, 300000};
    uint64_t rng = 1;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        double *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++)
            v[i] = next_unit(&rng);
        check_sort_f64(v, n, 0);
        check_sort_f64(v, n, 2);
        for (size_t i = 0; i < n; i++)
            v[i] = next_any_f64(&rng);
        check_sort_f64(v, n, 0);
        check_sort_f64(v, n, 3);
        free(v);
    }
}

static void test_argsort_random_f32(void **state) {
    (void)state;
    size_t sizes[] = {3, 100, 5000, 100000, 300000};
    uint64_t rng = 2;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        float *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++)
            v[i] = (float)next_unit(&rng);
        check_sort_f32(v, n, 0);
        check_sort_f32(v, n, 2);
        for (size_t i = 0; i < n; i++)
            v[i] = next_any_f32(&rng);
        check_sort_f32(v, n, 0);
        check_sort_f32(v, n, 3);
        free(v);
    }
}

static void test_argsort_many_ties(void **state) {
    (void)state;
    size_t n = 200000;
    uint64_t rng = 3;
    double *v = malloc(n * sizeof *v);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        v[i] = (double)(next_u64(&rng) % 7) * 0.5 - 1.0;
        f[i] = (float)v[i];
    }
    check_sort_f64(v, n, 1);
    check_sort_f64(v, n, 2);
    check_sort_f32(f, n, 1);
    check_sort_f32(f, n, 2);
    /* Two values only, which differ in one digit: most passes are skipped. */
    for (size_t i = 0; i < n; i++) {
        v[i] = next_u64(&rng) & 1 ? 0.75 : 0.5;
        f[i] = (float)v[i];
    }
    check_sort_f64(v, n, 2);
    check_sort_f32(f, n, 2);
    free(f);
    free(v);
}

static void test_argsort_all_equal(void **state) {
    (void)state;
    size_t sizes[] = {2, 7, 100000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        double *v = malloc(n * sizeof *v);
        float *f = malloc(n * sizeof *f);
        for (size_t i = 0; i < n; i++) {
            v[i] = 0.25;
            f[i] = 0.25f;
        }
        check_sort_f64(v, n, 0);
        check_sort_f32(f, n, 0);
        /* Signed zeros only: one key after -0.0 becomes +0.0, so no pass runs at all. */
        for (size_t i = 0; i < n; i++) {
            v[i] = i % 3 ? 0.0 : -0.0;
            f[i] = i % 3 ? 0.0f : -0.0f;
        }
        check_sort_f64(v, n, 0);
        check_sort_f32(f, n, 0);
        free(f);
        free(v);
    }
}

static void test_argsort_signed_zeros_tie(void **state) {
    (void)state;
    const double v[] = {0.0, -0.0, -1.0, 1.0, -0.0, 0.0, -2.5, -0.0};
    size_t n = sizeof v / sizeof *v;
    uint32_t perm[8];
    double sorted[8];
    assert_int_equal(sp__eval_argsort(v, SP_DTYPE_FLOAT64, sizeof *v, n, 1, perm, sorted), SP_OK);
    const uint32_t want[] = {6, 2, 0, 1, 4, 5, 7, 3};
    assert_memory_equal(perm, want, sizeof want);
    for (size_t j = 2; j < 7; j++) {
        assert_true(sorted[j] == 0.0);
        assert_false(signbit(sorted[j]));
    }
    check_sort_f64(v, n, 1);

    /* Mixed negatives, positives and both zeros, large enough for several threads. */
    size_t big = 150000;
    uint64_t rng = 4;
    double *d = malloc(big * sizeof *d);
    float *f = malloc(big * sizeof *f);
    for (size_t i = 0; i < big; i++) {
        uint64_t r = next_u64(&rng);
        switch (r % 4) {
        case 0:
            d[i] = -0.0;
            break;
        case 1:
            d[i] = 0.0;
            break;
        default:
            d[i] = (next_unit(&rng) - 0.5) * 1e3;
            break;
        }
        f[i] = (float)d[i];
    }
    check_sort_f64(d, big, 2);
    check_sort_f32(f, big, 2);
    free(f);
    free(d);
}

static void test_argsort_inf_and_denormals(void **state) {
    (void)state;
    const double special64[] = {
        INFINITY, -INFINITY, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN, DBL_TRUE_MIN, -DBL_TRUE_MIN,
        0.0,      -0.0,      1.0,     -1.0,     0.5,     -0.5,     DBL_MIN / 2,  -DBL_MIN / 3};
    const float special32[] = {
        INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN,
        0.0f,     -0.0f,     1.0f,    -1.0f,    0.5f,    -0.5f,    FLT_MIN / 2,  -FLT_MIN / 3};
    size_t n_special = sizeof special64 / sizeof *special64;
    size_t n = 100000;
    uint64_t rng = 5;
    double *d = malloc(n * sizeof *d);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = next_u64(&rng);
        if (r % 2) {
            d[i] = special64[(r >> 8) % n_special];
            f[i] = special32[(r >> 8) % n_special];
        } else {
            /* A random denormal of either sign: exponent bits zero, mantissa random. */
            uint64_t u64 = (next_u64(&rng) & ((UINT64_C(1) << 52) - 1)) | (r & (UINT64_C(1) << 63));
            uint32_t u32 = (uint32_t)(next_u64(&rng) & ((UINT32_C(1) << 23) - 1)) |
                           (uint32_t)((r >> 32) & UINT32_C(0x80000000));
            memcpy(&d[i], &u64, sizeof u64);
            memcpy(&f[i], &u32, sizeof u32);
        }
    }
    check_sort_f64(d, n, 2);
    check_sort_f32(f, n, 2);
    check_sort_f64(special64, n_special, 1);
    check_sort_f32(special32, n_special, 1);
    free(f);
    free(d);
}

static void test_argsort_tiny_n(void **state) {
    (void)state;
    uint32_t perm[2] = {7, 7};
    double sorted[2] = {7, 7};
    /* n = 0 touches nothing, so NULL pointers are fine. */
    assert_int_equal(sp__eval_argsort(NULL, SP_DTYPE_FLOAT64, 8, 0, 0, NULL, NULL), SP_OK);
    assert_int_equal(sp__eval_argsort(NULL, SP_DTYPE_FLOAT32, 4, 0, 0, perm, sorted), SP_OK);
    assert_int_equal(perm[0], 7);

    const double one = -0.0;
    assert_int_equal(sp__eval_argsort(&one, SP_DTYPE_FLOAT64, 8, 1, 0, perm, sorted), SP_OK);
    assert_int_equal(perm[0], 0);
    assert_true(sorted[0] == 0.0 && !signbit(sorted[0]));
    const float onef = 3.5f;
    assert_int_equal(sp__eval_argsort(&onef, SP_DTYPE_FLOAT32, 4, 1, 0, perm, sorted), SP_OK);
    assert_int_equal(perm[0], 0);
    assert_true(sorted[0] == 3.5);

    const double up[] = {1.0, 2.0}, down[] = {2.0, 1.0}, tie[] = {5.0, 5.0};
    assert_int_equal(sp__eval_argsort(up, SP_DTYPE_FLOAT64, 8, 2, 0, perm, sorted), SP_OK);
    assert_true(perm[0] == 0 && perm[1] == 1 && sorted[0] == 1.0 && sorted[1] == 2.0);
    assert_int_equal(sp__eval_argsort(down, SP_DTYPE_FLOAT64, 8, 2, 0, perm, sorted), SP_OK);
    assert_true(perm[0] == 1 && perm[1] == 0 && sorted[0] == 1.0 && sorted[1] == 2.0);
    assert_int_equal(sp__eval_argsort(tie, SP_DTYPE_FLOAT64, 8, 2, 0, perm, sorted), SP_OK);
    assert_true(perm[0] == 0 && perm[1] == 1 && sorted[0] == 5.0 && sorted[1] == 5.0);
    const float downf[] = {2.0f, -1.0f};
    assert_int_equal(sp__eval_argsort(downf, SP_DTYPE_FLOAT32, 4, 2, 0, perm, NULL), SP_OK);
    assert_true(perm[0] == 1 && perm[1] == 0);
}

static void test_argsort_strided_column(void **state) {
    (void)state;
    size_t sizes[] = {1000, 100000};
    uint64_t rng = 6;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        /* Row-major n x 3; column 1 is sorted, columns 0 and 2 are poison that must be ignored. */
        double *m = malloc(n * 3 * sizeof *m);
        float *mf = malloc(n * 3 * sizeof *mf);
        for (size_t i = 0; i < n; i++) {
            m[3 * i] = -INFINITY;
            m[3 * i + 1] = next_unit(&rng) - 0.25;
            m[3 * i + 2] = INFINITY;
            mf[3 * i] = NAN;
            mf[3 * i + 1] = (float)m[3 * i + 1];
            mf[3 * i + 2] = NAN;
        }
        free(check_sort(m + 1, SP_DTYPE_FLOAT64, 3 * sizeof *m, n, 2));
        free(check_sort(mf + 1, SP_DTYPE_FLOAT32, 3 * sizeof *mf, n, 2));
        free(mf);
        free(m);
    }
}

static void test_argsort_threads_agree(void **state) {
    (void)state;
    size_t n = 300000;
    uint64_t rng = 7;
    double *v = malloc(n * sizeof *v);
    /* Rounded to 1e-3, so many values tie and stability across chunks is exercised. */
    for (size_t i = 0; i < n; i++)
        v[i] = floor(next_unit(&rng) * 1000.0) / 1000.0;
    uint32_t *p1 = check_sort(v, SP_DTYPE_FLOAT64, sizeof *v, n, 1);
    uint32_t *p2 = check_sort(v, SP_DTYPE_FLOAT64, sizeof *v, n, 2);
    uint32_t *p7 = check_sort(v, SP_DTYPE_FLOAT64, sizeof *v, n, 7);
    assert_memory_equal(p1, p2, n * sizeof *p1);
    assert_memory_equal(p1, p7, n * sizeof *p1);
    free(p7);
    free(p2);
    free(p1);
    free(v);
}

static void test_argsort_cutoff_sizes(void **state) {
    (void)state;
    size_t sizes[] = {65535, 65536, 70000, 1000003};
    uint64_t rng = 8;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        double *v = malloc(n * sizeof *v);
        float *f = malloc(n * sizeof *f);
        for (size_t i = 0; i < n; i++) {
            v[i] = next_unit(&rng);
            f[i] = (float)next_unit(&rng);
        }
        check_sort_f64(v, n, 0);
        check_sort_f64(v, n, 2);
        check_sort_f32(f, n, 2);
        free(f);
        free(v);
    }
}

static void test_argsort_sorted_is_gathered(void **state) {
    (void)state;
    size_t n = 120000;
    uint64_t rng = 9;
    double *v = malloc(n * sizeof *v);
    uint32_t *perm = malloc(n * sizeof *perm);
    double *sorted = malloc(n * sizeof *sorted);
    for (size_t i = 0; i < n; i++)
        v[i] = next_any_f64(&rng);
    assert_int_equal(sp__eval_argsort(v, SP_DTYPE_FLOAT64, sizeof *v, n, 2, perm, sorted), SP_OK);
    for (size_t j = 0; j < n; j++) {
        assert_memory_equal(&sorted[j], &v[perm[j]], sizeof *sorted);
        if (j > 0) assert_true(sorted[j - 1] <= sorted[j]);
    }
    free(sorted);
    free(perm);
    free(v);
}

static void test_argsort_bad_arguments(void **state) {
    (void)state;
    const double v[] = {1.0, 2.0, 3.0};
    const int32_t ints[] = {1, 2, 3};
    uint32_t perm[3];
    assert_int_equal(sp__eval_argsort(ints, SP_DTYPE_INT32, 4, 3, 0, perm, NULL), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "dtype"));
    assert_non_null(strstr(sp_errmsg(), "int32"));
    assert_int_equal(sp__eval_argsort(v, SP_DTYPE_FLOAT64, 8, 3, -1, perm, NULL), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "n_threads"));
    assert_int_equal(sp__eval_argsort(v, SP_DTYPE_FLOAT64, 8, 3, 0, NULL, NULL), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "perm"));
    assert_int_equal(sp__eval_argsort(NULL, SP_DTYPE_FLOAT64, 8, 3, 0, perm, NULL), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "scores"));
#if SIZE_MAX > UINT32_MAX
    /* Rejected before anything is read, so the short array is never overrun. */
    assert_int_equal(
        sp__eval_argsort(v, SP_DTYPE_FLOAT64, 8, (size_t)UINT32_MAX + 1, 0, perm, NULL), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "n:"));
#endif
}

/* Fails allocation k = 1, 2, ... until the call succeeds: every failure must be SP_ENOMEM with a
 * message and leave perm untouched (ASan checks that nothing leaks). */
static void fault_loop(const void *scores, sp_dtype dtype, size_t stride, size_t n, int n_threads,
                       int min_failures) {
    uint32_t *perm = malloc(n * sizeof *perm);
    double *sorted = malloc(n * sizeof *sorted);
    int failures = 0;
    for (uint64_t k = 1;; k++) {
        assert_true(k < 100);
        memset(perm, 0xEE, n * sizeof *perm);
        sp__errmsg_clear();
        sp__malloc_fail_after(k);
        sp_status rc = sp__eval_argsort(scores, dtype, stride, n, n_threads, perm, sorted);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) break;
        assert_int_equal(rc, SP_ENOMEM);
        assert_non_null(strstr(sp_errmsg(), "out of memory"));
        for (size_t i = 0; i < n; i++)
            assert_int_equal(perm[i], 0xEEEEEEEEu);
        failures++;
    }
    assert_true(failures >= min_failures);
    free(sorted);
    free(perm);
}

static void test_argsort_out_of_memory(void **state) {
    (void)state;
    size_t n = 70000;
    uint64_t rng = 10;
    double *v = malloc(n * sizeof *v);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        v[i] = next_unit(&rng);
        f[i] = (float)v[i];
    }
    /* Histograms, two key arrays and the index scratch: four allocations can fail. */
    fault_loop(v, SP_DTYPE_FLOAT64, sizeof *v, n, 2, 4);
    fault_loop(f, SP_DTYPE_FLOAT32, sizeof *f, 1000, 1, 4);
    /* Four scores, one thread: allocations 1 to 4 fail in turn; with k = 5 nothing fails. */
    for (uint64_t k = 1; k <= 5; k++) {
        uint32_t perm[4];
        sp__malloc_fail_after(k);
        sp_status rc = sp__eval_argsort(v, SP_DTYPE_FLOAT64, sizeof *v, 4, 1, perm, NULL);
        sp__malloc_fail_after(0);
        assert_true(rc == (k <= 4 ? SP_ENOMEM : SP_OK));
    }
    free(f);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argsort_random_f64),
        cmocka_unit_test(test_argsort_random_f32),
        cmocka_unit_test(test_argsort_many_ties),
        cmocka_unit_test(test_argsort_all_equal),
        cmocka_unit_test(test_argsort_signed_zeros_tie),
        cmocka_unit_test(test_argsort_inf_and_denormals),
        cmocka_unit_test(test_argsort_tiny_n),
        cmocka_unit_test(test_argsort_strided_column),
        cmocka_unit_test(test_argsort_threads_agree),
        cmocka_unit_test(test_argsort_cutoff_sizes),
        cmocka_unit_test(test_argsort_sorted_is_gathered),
        cmocka_unit_test(test_argsort_bad_arguments),
        cmocka_unit_test(test_argsort_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
