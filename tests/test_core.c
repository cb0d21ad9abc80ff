/* test_core.c — core helpers: CRC-32C (hardware vs portable, known vectors), SHA-256, XXH3, the
 * growable buffer, atomic file commit, error messages and the failing allocator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "core_internal.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint32_t sp__crc32c_portable(uint32_t crc, const void *buf, size_t len);

static void crc32c_known_vectors(void **state) {
    (void)state;
    assert_int_equal(sp_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(sp__crc32c_portable(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(sp_crc32c(0, "", 0), 0u);
    uint8_t zeros[32] = {0};
    assert_int_equal(sp_crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
    uint8_t ones[32];
    memset(ones, 0xff, sizeof ones);
    assert_int_equal(sp_crc32c(0, ones, 32), 0x62A8AB43u);
}

static void crc32c_hw_matches_portable(void **state) {
    (void)state;
    size_t n = 1 << 20;
    uint8_t *buf = malloc(n + 16);
    tu_fill_random(buf, n + 16, 7);
    size_t lens[] = {0,    1,    7,    8,     9,     31,    32,    33,     100,  255,
                     256,  257,  511,  512,   1023,  1024,  1025,  1279,   1280, 1281,
                     2047, 4095, 4096, 24575, 24576, 24577, 65543, 100000, n};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++)
        for (size_t off = 0; off < 8; off += 3)
            assert_int_equal(sp_crc32c(0, buf + off, lens[k]),
                             sp__crc32c_portable(0, buf + off, lens[k]));
    /* chaining: crc(a||b) == crc(crc(a), b), also with a non-zero start on the long paths */
    uint32_t whole = sp_crc32c(0, buf, 5000);
    assert_int_equal(sp_crc32c(sp_crc32c(0, buf, 1234), buf + 1234, 5000 - 1234), whole);
    for (size_t cut = 1; cut < 3000; cut += 331)
        assert_int_equal(sp_crc32c(sp_crc32c(0, buf, cut), buf + cut, 70000 - cut),
                         sp__crc32c_portable(0, buf, 70000));
    free(buf);
}

static void sha256_and_xxh3(void **state) {
    (void)state;
    sp__sha256 h;
    assert_int_equal(sp__sha256_init(&h), SP_OK);
    sp__sha256_update(&h, "ab", 2);
    sp__sha256_update(&h, "c", 1);
    char hex[65];
    sp__sha256_final(&h, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(sp__xxh3("abc", 3) != sp__xxh3("abd", 3));
    assert_true(sp__xxh3("abc", 3) == sp__xxh3("abc", 3));
}

static void buf_grows(void **state) {
    (void)state;
    sp__buf b = {0};
    for (int i = 0; i < 10000; i++)
        assert_int_equal(sp__buf_append(&b, "xy", 2), SP_OK);
    assert_int_equal(b.len, 20000);
    assert_int_equal(sp__buf_printf(&b, "%d-%s", 42, "z"), SP_OK);
    assert_memory_equal(b.data + 20000, "42-z", 4);
    sp__buf_free(&b);
    assert_null(b.data);
}

static void file_commit_is_atomic(void **state) {
    (void)state;
    char *dir = tu_tmpdir("core");
    char *p = sp__path_join(dir, "f.txt");
    assert_int_equal(sp__file_commit(p, "hello", 5), SP_OK);
    uint8_t *data;
    size_t len;
    assert_int_equal(sp__read_file(p, &data, &len), SP_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    sp__free(data);
    /* no temporary left behind */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", p, (int)getpid());
    struct stat st;
    assert_int_not_equal(stat(tmp, &st), 0);
    /* writing into a missing folder fails with a message naming the file */
    char *bad = sp__path_join(dir, "missing/f.txt");
    assert_int_equal(sp__file_commit(bad, "x", 1), SP_EIO);
    assert_non_null(strstr(sp_errmsg(), "missing/f.txt"));
    assert_int_equal(sp__read_file(bad, &data, &len), SP_ENOTFOUND);
    sp__free(bad);
    sp__free(p);
    tu_rmrf(dir);
    free(dir);
}

static void errors_and_names(void **state) {
    (void)state;
    assert_int_equal(sp__fail(SP_ECORRUPT, "%s: record %d: bad", "a.sps", 7), SP_ECORRUPT);
    assert_string_equal(sp_errmsg(), "a.sps: record 7: bad");
    sp__errmsg_prefix("ctx");
    assert_string_equal(sp_errmsg(), "ctx: a.sps: record 7: bad");
    assert_string_equal(sp_status_name(SP_EBADINPUT), "SP_EBADINPUT");
    assert_string_equal(sp_status_name((sp_status)12345), "SP_E?");
    assert_non_null(strchr(sp_version(), '.'));
}

static void failing_allocator(void **state) {
    (void)state;
    sp__malloc_fail_after(2);
    void *a = sp__malloc(10);
    void *b = sp__malloc(10);
    void *c = sp__malloc(10);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    sp__free(a);
    sp__free(c);
    sp__malloc_fail_after(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_known_vectors),  cmocka_unit_test(crc32c_hw_matches_portable),
        cmocka_unit_test(sha256_and_xxh3),       cmocka_unit_test(buf_grows),
        cmocka_unit_test(file_commit_is_atomic), cmocka_unit_test(errors_and_names),
        cmocka_unit_test(failing_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
