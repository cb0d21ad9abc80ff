/* test_image.c — JPEG/PNG header probing and full-decode checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "softpipe/image.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void probe_jpeg(void **state) {
    (void)state;
    size_t len;
    unsigned char *j = tu_jpeg(37, 21, 3, 1, &len);
    sp_image_info info;
    assert_int_equal(sp_image_probe("a.jpg", j, len, &info), SP_OK);
    assert_int_equal(info.kind, SP_IMAGE_JPEG);
    assert_int_equal(info.width, 37);
    assert_int_equal(info.height, 21);
    assert_int_equal(info.components, 3);
    assert_int_equal(info.subsampling_h, 2); /* libjpeg's default is 4:2:0 */
    assert_int_equal(info.progressive, 0);
    assert_int_equal(sp_image_check_decode("a.jpg", j, len), SP_OK);
    /* trailing zero padding is tolerated */
    unsigned char *pad = malloc(len + 16);
    memcpy(pad, j, len);
    memset(pad + len, 0, 16);
    assert_int_equal(sp_image_probe("a.jpg", pad, len + 16, &info), SP_OK);
    free(pad);
    free(j);
    j = tu_jpeg(8, 9, 1, 2, &len);
    assert_int_equal(sp_image_probe("g.jpg", j, len, &info), SP_OK);
    assert_int_equal(info.components, 1);
    free(j);
}

static void bad_images_are_named(void **state) {
    (void)state;
    size_t len;
    unsigned char *j = tu_jpeg(64, 64, 3, 3, &len);
    sp_image_info info;
    assert_int_equal(sp_image_probe("e.jpg", j, 0, &info), SP_EBADINPUT);
    assert_string_equal(sp_errmsg(), "e.jpg: empty file (0 bytes)");
    assert_int_equal(sp_image_probe("t.jpg", j, len / 2, &info), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "t.jpg: truncated JPEG"));
    assert_int_equal(sp_image_probe("x.jpg", (const uint8_t *)"hello world", 11, &info),
                     SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "x.jpg: not a JPEG or PNG"));
    /* damage inside the entropy-coded data: the header is fine, the decode is not */
    unsigned char *bad = malloc(len);
    memcpy(bad, j, len);
    for (size_t i = len / 2; i < len / 2 + 64; i++)
        bad[i] = 0xFF;
    bad[len / 2 + 64] = 0xD0; /* make it a stray marker sequence */
    assert_int_equal(sp_image_probe("d.jpg", bad, len, &info), SP_OK);
    assert_int_equal(sp_image_check_decode("d.jpg", bad, len), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "d.jpg: JPEG"));
    free(bad);
    free(j);
}

static void probe_png(void **state) {
    (void)state;
    /* a 1x1 RGB PNG */
    static const uint8_t png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
        0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00,
        0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08,
        0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00, 0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d,
        0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    sp_image_info info;
    assert_int_equal(sp_image_probe("p.png", png, sizeof png, &info), SP_OK);
    assert_int_equal(info.kind, SP_IMAGE_PNG);
    assert_int_equal(info.width, 1);
    assert_int_equal(info.height, 1);
    assert_int_equal(info.components, 3);
    assert_int_equal(sp_image_check_decode("p.png", png, sizeof png), SP_OK);
    assert_int_equal(sp_image_probe("p.png", png, sizeof png - 10, &info), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "truncated PNG"));
    uint8_t bad[sizeof png];
    memcpy(bad, png, sizeof png);
    bad[45] ^= 0x55; /* inside IDAT: CRC and zlib both notice */
    assert_int_equal(sp_image_check_decode("p.png", bad, sizeof bad), SP_EBADINPUT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probe_jpeg),
        cmocka_unit_test(bad_images_are_named),
        cmocka_unit_test(probe_png),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
