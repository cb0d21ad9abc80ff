/* test_pack.c — sp_pack on ImageFolder trees: torchvision's class and file order, byte-identical
 * output for any thread count (the threaded path also runs under TSan), skip and fail policies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "core_internal.h"
#include "softpipe.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *make_tree(const char *dir, int n_per_class) {
    char *src = sp__path_join(dir, "src");
    const char *classes[] = {"b", "a", "c"};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < n_per_class; i++) {
            char p[4096];
            /* files in the class folder and in a sub-folder, to check the order */
            snprintf(p, sizeof p, "%s/%s/%s%03d.jpg", src, classes[c], i % 4 == 3 ? "sub/" : "", i);
            size_t len;
            unsigned char *j = tu_jpeg(16 + i % 7, 12 + c, 3, (uint64_t)(c * 1000 + i), &len);
            assert_int_equal(tu_write_file(p, j, len), 0);
            free(j);
        }
    return src;
}

static void same_bytes_for_any_thread_count(void **state) {
    (void)state;
    char *dir = tu_tmpdir("pack");
    char *src = make_tree(dir, 40);
    char *outs[3];
    int threads[3] = {1, 2, 5};
    for (int k = 0; k < 3; k++) {
        char name[16];
        snprintf(name, sizeof name, "ds%d", threads[k]);
        outs[k] = sp__path_join(dir, name);
        sp_pack_opts o;
        sp_pack_opts_init(&o);
        o.threads = threads[k];
        o.shard_size = 32 << 10;
        o.block_size = 4096;
        sp_pack_report r;
        assert_int_equal(sp_pack(src, outs[k], &o, &r), SP_OK);
        assert_int_equal(r.samples, 120);
        assert_int_equal(r.classes, 3);
        assert_true(r.shards > 2);
    }
    for (int k = 1; k < 3; k++) {
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "diff -r '%s' '%s' >/dev/null", outs[0], outs[k]);
        assert_int_equal(system(cmd), 0);
    }
    /* order: classes sorted (a, b, c); within a class the folder's own files, then sub/ */
    sp_dataset *ds;
    assert_int_equal(sp_dataset_open(outs[0], &ds), SP_OK);
    sp_value key, label;
    assert_int_equal(sp_dataset_value(ds, 0, SP_COL_KEY, &key), SP_OK);
    assert_int_equal((int)key.v.str.len, 9);
    assert_memory_equal(key.v.str.s, "a/000.jpg", 9);
    assert_int_equal(sp_dataset_value(ds, 29, SP_COL_KEY, &key), SP_OK);
    assert_memory_equal(key.v.str.s, "a/038.jpg", 9);
    assert_int_equal(sp_dataset_value(ds, 30, SP_COL_KEY, &key), SP_OK);
    assert_memory_equal(key.v.str.s, "a/sub/003.jpg", 13);
    assert_int_equal(sp_dataset_value(ds, 40, SP_COL_LABEL, &label), SP_OK);
    assert_int_equal(label.v.i, 1);
    sp_dataset_close(ds);
    for (int k = 0; k < 3; k++)
        sp__free(outs[k]);
    sp__free(src);
    tu_rmrf(dir);
    free(dir);
}

static int skips;
static void on_skip(void *user, const char *where, const char *reason) {
    (void)user;
    (void)reason;
    if (strcmp(where, "a/bad.jpg") == 0) skips++;
}

static void skip_and_fail(void **state) {
    (void)state;
    char *dir = tu_tmpdir("pack");
    char *src = make_tree(dir, 5);
    char p[4096];
    snprintf(p, sizeof p, "%s/a/bad.jpg", src);
    assert_int_equal(tu_write_file(p, "\xff\xd8\xff\xe0 truncated", 15), 0);
    char *out = sp__path_join(dir, "ds");
    sp_pack_opts o;
    sp_pack_opts_init(&o);
    o.threads = 3;
    assert_int_equal(sp_pack(src, out, &o, NULL), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "a/bad.jpg: truncated JPEG"));
    o.skip_errors = 1;
    o.on_skip = on_skip;
    sp_pack_report r;
    assert_int_equal(sp_pack(src, out, &o, &r), SP_OK);
    assert_int_equal(r.samples, 15);
    assert_int_equal(r.skipped, 1);
    assert_int_equal(skips, 1);
    assert_int_equal(sp_pack(src, out, &o, &r), SP_EEXIST);
    sp__free(out);
    sp__free(src);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_bytes_for_any_thread_count),
        cmocka_unit_test(skip_and_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
