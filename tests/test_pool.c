/* test_pool.c — the persistent worker pool (core_pool.c): every part of every job runs exactly
 * once, from one caller or several at a time (a busy pool sends the others back with SP_DONE). */
#include "core_internal.h"
#include "testutil.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

typedef struct job {
    _Atomic int hits[64];
    int parts;
} job;

static void part(void *ctx, int t, int n) {
    job *j = ctx;
    assert_int_equal(n, j->parts);
    atomic_fetch_add(&j->hits[t], 1);
}

static void test_pool_runs_every_part_once(void **state) {
    (void)state;
    sp__pool *p;
    assert_int_equal(sp__pool_new(4, &p), SP_OK);
    assert_int_equal(sp__pool_size(p), 4);
    for (int round = 0; round < 500; round++) {
        job j;
        memset(&j, 0, sizeof j);
        j.parts = 1 + round % 9;
        assert_int_equal(sp__pool_run(p, j.parts, part, &j), SP_OK);
        for (int t = 0; t < 64; t++)
            assert_int_equal(atomic_load(&j.hits[t]), t < j.parts ? 1 : 0);
    }
    sp__pool_free(p);
    sp__pool_free(NULL);
}

typedef struct caller {
    sp__pool *pool;
    int ran, backed_off;
} caller;

static void *call_many(void *arg) {
    caller *c = arg;
    for (int i = 0; i < 300; i++) {
        job j;
        memset(&j, 0, sizeof j);
        j.parts = 3;
        sp_status rc = sp__pool_run(c->pool, 3, part, &j);
        if (rc == SP_DONE) {
            c->backed_off++;
            continue;
        }
        assert_int_equal(rc, SP_OK);
        for (int t = 0; t < 3; t++)
            assert_int_equal(atomic_load(&j.hits[t]), 1);
        c->ran++;
    }
    return NULL;
}

static void test_pool_concurrent_callers(void **state) {
    (void)state;
    sp__pool *p;
    assert_int_equal(sp__pool_new(3, &p), SP_OK);
    pthread_t tid[3];
    caller c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (caller){p, 0, 0};
        assert_int_equal(pthread_create(&tid[i], NULL, call_many, &c[i]), 0);
    }
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(tid[i], NULL);
        ran += c[i].ran;
        assert_int_equal(c[i].ran + c[i].backed_off, 300);
    }
    assert_true(ran > 0);
    sp__pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_runs_every_part_once),
        cmocka_unit_test(test_pool_concurrent_callers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
