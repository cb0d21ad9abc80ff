/* test_ingest_npy.c — unit tests of the NumPy .npy reader (sp_npy_*, sp__npy_parse in
 * src/ingest/ingest_npy.c) and of the public read-only table API (sp_table_*, in
 * src/ingest/ingest_table_api.c).
 *
 * Most .npy files are built byte by byte here (magic, version, length, header dict, data) so each
 * header variant and each error has its own small case; tests/data/npy/ holds files written by
 * NumPy itself (make_fixtures.py there), read back with the values that script wrote. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "core_internal.h"
#include "ingest/ingest_npy.h"
#include "softpipe/ingest.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

static char *g_dir; /* a fresh folder for each test */

static int setup(void **state) {
    (void)state;
    g_dir = tu_tmpdir("npy");
    return g_dir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tu_rmrf(g_dir);
    free(g_dir);
    g_dir = NULL;
    return 0;
}

typedef struct bytes {
    uint8_t data[4096];
    size_t len;
} bytes;

/* Builds a .npy file: magic, version major.0, the header length, `dict`, and then — when `pad` —
 * spaces and a '\n' so the data starts at a multiple of 64 as NumPy writes it; then `data`. */
static void build(bytes *b, int major, const char *dict, int pad, const void *data, size_t n) {
    size_t len_size = major == 1 ? 2 : 4, pre = 8 + len_size, hlen = strlen(dict);
    if (pad) hlen = (pre + hlen + 1 + 63) / 64 * 64 - pre;
    assert_true(pre + hlen + n <= sizeof b->data);
    memcpy(b->data, "\x93NUMPY", 6);
    b->data[6] = (uint8_t)major;
    b->data[7] = 0;
    if (major == 1) {
        assert_true(hlen < 65536);
        b->data[8] = (uint8_t)hlen;
        b->data[9] = (uint8_t)(hlen >> 8);
    } else {
        sp__put_u32(b->data + 8, (uint32_t)hlen);
    }
    memcpy(b->data + pre, dict, strlen(dict));
    if (pad) {
        memset(b->data + pre + strlen(dict), ' ', hlen - strlen(dict));
        b->data[pre + hlen - 1] = '\n';
    }
    if (n) memcpy(b->data + pre + hlen, data, n);
    b->len = pre + hlen + n;
}

/* Writes `b` as g_dir/name into path[4096]. */
static void put(char *path, const char *name, const void *data, size_t len) {
    snprintf(path, 4096, "%s/%s", g_dir, name);
    assert_int_equal(tu_write_file(path, data, len), 0);
}

static sp_npy *open_ok(const char *path) {
    sp_npy *npy = NULL;
    sp_status rc = sp_npy_open(path, &npy);
    if (rc != SP_OK) fail_msg("%s: %s: %s", path, sp_status_name(rc), sp_errmsg());
    assert_non_null(npy);
    assert_non_null(sp_npy_array(npy));
    return npy;
}

/* Writes `b` to a file and expects sp_npy_open to fail with `code`, *out NULL, and a message that
 * starts with the path and contains `what`. */
static void open_error(const bytes *b, sp_status code, const char *what) {
    char path[4096];
    put(path, "bad.npy", b->data, b->len);
    sp_npy *npy = (sp_npy *)1;
    sp_status rc = sp_npy_open(path, &npy);
    assert_null(npy);
    if (rc != code)
        fail_msg("expected %s, got %s: %s", sp_status_name(code), sp_status_name(rc), sp_errmsg());
    if (strncmp(sp_errmsg(), path, strlen(path)) != 0)
        fail_msg("message \"%s\" does not start with the path", sp_errmsg());
    if (!strstr(sp_errmsg(), what))
        fail_msg("message \"%s\" does not contain \"%s\"", sp_errmsg(), what);

    /* the in-memory parser says the same with its own name */
    sp_array a;
    assert_int_equal(sp__npy_parse("mem.npy", b->data, b->len, &a), code);
    assert_null(a.data);
    assert_int_equal(a.ndim, 0);
    assert_true(strncmp(sp_errmsg(), "mem.npy: ", 9) == 0);
}

/* A header dict with padding, then an error is expected. */
static void dict_error(const char *dict, sp_status code, const char *what) {
    static const uint8_t data[64];
    bytes b;
    build(&b, 1, dict, 1, data, sizeof data);
    open_error(&b, code, what);
}

static void fixture_path(char *buf, size_t n, const char *name) {
    const char *f = __FILE__, *slash = strrchr(f, '/');
    if (slash)
        snprintf(buf, n, "%.*s/data/npy/%s", (int)(slash - f), f, name);
    else
        snprintf(buf, n, "data/npy/%s", name);
}

static const void *at2(const sp_array *a, uint64_t i, uint64_t j) {
    return (const char *)a->data + (int64_t)i * a->strides[0] + (int64_t)j * a->strides[1];
}

static double f64_at(const sp_array *a, uint64_t i) {
    double v;
    memcpy(&v, (const char *)a->data + (int64_t)i * a->strides[0], sizeof v);
    return v;
}

/* ---------------------------------------------------------------- dtypes and layouts */

static void test_npy_each_dtype(void **state) {
    (void)state;
    static const struct {
        const char *descr;
        sp_dtype dtype;
    } cases[] = {
        {"|b1", SP_DTYPE_BOOL},
        {"|i1", SP_DTYPE_INT8},
        {"|u1", SP_DTYPE_UINT8},
        {"<i2", SP_DTYPE_INT16},
        {"<u2", SP_DTYPE_UINT16},
        {"<i4", SP_DTYPE_INT32},
        {"<u4", SP_DTYPE_UINT32},
        {"<i8", SP_DTYPE_INT64},
        {"<u8", SP_DTYPE_UINT64},
        {"<f4", SP_DTYPE_FLOAT32},
        {"<f8", SP_DTYPE_FLOAT64},
        /* other spellings of the same types: native '=', none, '|' for any size, any order for
         * one-byte types */
        {"=f8", SP_DTYPE_FLOAT64},
        {"f8", SP_DTYPE_FLOAT64},
        {"|i4", SP_DTYPE_INT32},
        {"<u1", SP_DTYPE_UINT8},
        {">i1", SP_DTYPE_INT8},
        {"=b1", SP_DTYPE_BOOL},
        {"u2", SP_DTYPE_UINT16},
    };
    uint8_t data[24];
    tu_fill_random(data, sizeof data, 7);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dict[128], path[4096];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }",
                 cases[c].descr);
        size_t item = sp_dtype_size(cases[c].dtype);
        bytes b;
        build(&b, 1, dict, 1, data, 3 * item);
        assert_int_equal(b.len % 64, (3 * item) % 64); /* data at 64 */
        put(path, "x.npy", b.data, b.len);
        sp_npy *npy = open_ok(path);
        const sp_array *a = sp_npy_array(npy);
        assert_int_equal(a->dtype, cases[c].dtype);
        assert_int_equal(a->ndim, 1);
        assert_int_equal(a->shape[0], 3);
        assert_int_equal(a->strides[0], (int64_t)item);
        assert_int_equal((uintptr_t)a->data % item, 0);
        assert_memory_equal(a->data, data, 3 * item);
        sp_npy_close(npy);
    }
}

static void test_npy_versions(void **state) {
    (void)state;
    const int32_t v[4] = {-5, 0, 7, INT32_MAX};
    const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }";
    for (int major = 1; major <= 3; major++) {
        bytes b;
        char path[4096];
        build(&b, major, dict, 1, v, sizeof v);
        put(path, "v.npy", b.data, b.len);
        sp_npy *npy = open_ok(path);
        const sp_array *a = sp_npy_array(npy);
        assert_int_equal(a->ndim, 2);
        assert_int_equal(a->strides[0], 8);
        assert_int_equal(a->strides[1], 4);
        int32_t x;
        memcpy(&x, at2(a, 1, 1), 4);
        assert_int_equal(x, INT32_MAX);
        memcpy(&x, at2(a, 0, 0), 4);
        assert_int_equal(x, -5);
        sp_npy_close(npy);
    }
}

static void test_npy_fortran_order(void **state) {
    (void)state;
    /* a 2 x 3 array a[i][j] = 10 i + j stored column by column; and 3-D 2 x 3 x 2 */
    double col_major[6];
    for (int j = 0, k = 0; j < 3; j++)
        for (int i = 0; i < 2; i++)
            col_major[k++] = 10 * i + j;
    bytes b;
    char path[4096];
    build(&b, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", 1, col_major,
          sizeof col_major);
    put(path, "f.npy", b.data, b.len);
    sp_npy *npy = open_ok(path);
    const sp_array *a = sp_npy_array(npy);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->strides[0], 8);
    assert_int_equal(a->strides[1], 16);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            double x;
            memcpy(&x, at2(a, (uint64_t)i, (uint64_t)j), 8);
            assert_true(x == 10 * i + j);
        }
    sp_npy_close(npy);

    uint16_t v3[12];
    for (int i = 0; i < 12; i++)
        v3[i] = (uint16_t)i;
    build(&b, 1, "{'descr': '<u2', 'fortran_order': True, 'shape': (2, 3, 2), }", 1, v3, sizeof v3);
    put(path, "f3.npy", b.data, b.len);
    npy = open_ok(path);
    a = sp_npy_array(npy);
    assert_int_equal(a->strides[0], 2);
    assert_int_equal(a->strides[1], 4);
    assert_int_equal(a->strides[2], 12);
    sp_npy_close(npy);
}

static void test_npy_scalar_and_4d(void **state) {
    (void)state;
    double pi = 3.25;
    bytes b;
    char path[4096];
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 1, &pi, sizeof pi);
    put(path, "s.npy", b.data, b.len);
    sp_npy *npy = open_ok(path);
    const sp_array *a = sp_npy_array(npy);
    assert_int_equal(a->ndim, 0);
    assert_int_equal(a->dtype, SP_DTYPE_FLOAT64);
    double x;
    memcpy(&x, a->data, 8);
    assert_true(x == 3.25);
    sp_npy_close(npy);

    uint8_t v[2 * 3 * 4 * 5];
    for (size_t i = 0; i < sizeof v; i++)
        v[i] = (uint8_t)i;
    build(&b, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4, 5), }", 1, v,
          sizeof v);
    put(path, "4d.npy", b.data, b.len);
    npy = open_ok(path);
    a = sp_npy_array(npy);
    assert_int_equal(a->ndim, 4);
    const int64_t want[4] = {60, 20, 5, 1};
    for (int k = 0; k < 4; k++)
        assert_int_equal(a->strides[k], want[k]);
    const uint8_t *p = a->data;
    assert_int_equal(p[1 * 60 + 2 * 20 + 3 * 5 + 4], 119);
    sp_npy_close(npy);
}

static void test_npy_empty(void **state) {
    (void)state;
    static const char *const dicts[] = {
        "{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }",
        "{'descr': '<i2', 'fortran_order': False, 'shape': (3, 0), }",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (0, 5, 7), }",
        /* a zero makes the array empty however big the other dimensions are */
        "{'descr': '<u8', 'fortran_order': False, 'shape': (0, 1000000000000), }",
    };
    for (size_t k = 0; k < 4; k++) {
        bytes b;
        char path[4096];
        build(&b, 1, dicts[k], 1, NULL, 0); /* the file ends with the header */
        put(path, "e.npy", b.data, b.len);
        sp_npy *npy = open_ok(path);
        const sp_array *a = sp_npy_array(npy);
        assert_non_null(a->data);
        int zero = 0;
        for (int i = 0; i < a->ndim; i++)
            zero |= a->shape[i] == 0;
        assert_true(zero);
        sp_npy_close(npy);
    }
    bytes b;
    char path[4096];
    build(&b, 1, dicts[1], 1, NULL, 0);
    put(path, "e.npy", b.data, b.len);
    sp_npy *npy = open_ok(path);
    /* a zero dimension does not scale the strides, as with np.load: (2, 2) */
    assert_int_equal(sp_npy_array(npy)->strides[0], 2);
    assert_int_equal(sp_npy_array(npy)->strides[1], 2);
    sp_npy_close(npy);
}

static void test_npy_header_variants(void **state) {
    (void)state;
    static const char *const dicts[] = {
        /* the six key orders */
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
        "{'descr': '<f8', 'shape': (3,), 'fortran_order': False, }",
        "{'fortran_order': False, 'descr': '<f8', 'shape': (3,), }",
        "{'fortran_order': False, 'shape': (3,), 'descr': '<f8', }",
        "{'shape': (3,), 'descr': '<f8', 'fortran_order': False, }",
        "{'shape': (3,), 'fortran_order': False, 'descr': '<f8', }",
        /* spacing, trailing commas, quotes */
        "{'descr':'<f8','fortran_order':False,'shape':(3,)}",
        "  {  'descr' :  '<f8' ,\t'fortran_order' : False ,\n 'shape' : ( 3 , ) , }  ",
        "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3,)}",
        "{'descr': '<f8',\n 'fortran_order': False,\n 'shape': (3,),\n}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3L,), }", /* Python 2 NumPy */
        "{'descr': '<f8', 'fortran_order': False, 'shape': (\r\n3,\r\n), }",
    };
    const double v[3] = {1.5, -2.0, 1e300};
    for (size_t k = 0; k < sizeof dicts / sizeof dicts[0]; k++) {
        bytes b;
        char path[4096];
        build(&b, 1, dicts[k], 1, v, sizeof v);
        put(path, "h.npy", b.data, b.len);
        sp_npy *npy = open_ok(path);
        const sp_array *a = sp_npy_array(npy);
        assert_int_equal(a->ndim, 1);
        assert_int_equal(a->shape[0], 3);
        assert_true(f64_at(a, 2) == 1e300);
        sp_npy_close(npy);
    }
    /* no padding at all, and the multi-dimension trailing-comma forms */
    static const char *const shapes[] = {"(2, 3)", "(2, 3,)", "( 2,3 , )", "(2,3)"};
    for (size_t k = 0; k < 4; k++) {
        char dict[128], path[4096];
        snprintf(dict, sizeof dict, "{'descr': '|u1', 'fortran_order': False, 'shape': %s}",
                 shapes[k]);
        bytes b;
        build(&b, 1, dict, 0, "abcdef", 6);
        put(path, "h.npy", b.data, b.len);
        sp_npy *npy = open_ok(path);
        const sp_array *a = sp_npy_array(npy);
        assert_int_equal(a->ndim, 2);
        assert_int_equal(*(const char *)at2(a, 1, 2), 'f');
        sp_npy_close(npy);
    }
}

static void test_npy_trailing_bytes_and_alignment(void **state) {
    (void)state;
    /* extra bytes after the data are ignored */
    const double v[4] = {1, 2, 3, 4};
    bytes b;
    char path[4096];
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 1, v, sizeof v);
    put(path, "t.npy", b.data, b.len);
    sp_npy *npy = open_ok(path);
    assert_int_equal(sp_npy_array(npy)->shape[0], 3);
    sp_npy_close(npy);

    /* an unpadded header leaves float64 data at an odd offset: the view is an aligned copy */
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (4,)}";
    build(&b, 1, dict, 0, v, sizeof v);
    assert_true((10 + strlen(dict)) % 8 != 0);
    put(path, "odd.npy", b.data, b.len);
    npy = open_ok(path);
    const sp_array *a = sp_npy_array(npy);
    assert_int_equal((uintptr_t)a->data % 8, 0);
    for (int i = 0; i < 4; i++)
        assert_true(f64_at(a, (uint64_t)i) == v[i]);
    sp_npy_close(npy);

    /* the same bytes through the in-memory parser: a view at the odd offset, inside the buffer */
    sp_array m;
    assert_int_equal(sp__npy_parse(NULL, b.data, b.len, &m), SP_OK);
    assert_ptr_equal(m.data, b.data + 10 + strlen(dict));
}

/* ---------------------------------------------------------------- files NumPy wrote */

static sp_npy *open_fixture(const char *name) {
    char path[4096];
    fixture_path(path, sizeof path, name);
    sp_npy *npy = NULL;
    sp_status rc = sp_npy_open(path, &npy);
    if (rc != SP_OK)
        fail_msg("%s: %s (run tests/data/npy/make_fixtures.py)", sp_errmsg(), sp_status_name(rc));
    return npy;
}

static void test_npy_numpy_files(void **state) {
    (void)state;
    sp_npy *npy = open_fixture("f64_1d.npy");
    const sp_array *a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_FLOAT64);
    assert_int_equal(a->ndim, 1);
    assert_int_equal(a->shape[0], 10);
    for (uint64_t i = 0; i < 10; i++)
        assert_true(f64_at(a, i) == (double)i * 0.5 - 1.0);
    sp_npy_close(npy);

    npy = open_fixture("f32_2d.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_FLOAT32);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 3);
    assert_int_equal(a->shape[1], 4);
    for (uint64_t i = 0; i < 3; i++)
        for (uint64_t j = 0; j < 4; j++) {
            float x;
            memcpy(&x, at2(a, i, j), 4);
            assert_true(x == (float)(4 * i + j) / 4);
        }
    sp_npy_close(npy);

    npy = open_fixture("i64_1d.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_INT64);
    const int64_t want[5] = {-(INT64_C(1) << 62), -1, 0, 1, (INT64_C(1) << 62) + 7};
    assert_int_equal(a->shape[0], 5);
    assert_memory_equal(a->data, want, sizeof want);
    sp_npy_close(npy);

    npy = open_fixture("bool_1d.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_BOOL);
    assert_int_equal(a->shape[0], 5);
    assert_memory_equal(a->data, "\1\0\0\1\1", 5);
    sp_npy_close(npy);

    npy = open_fixture("u8_2d.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_UINT8);
    for (uint64_t i = 0; i < 2; i++)
        for (uint64_t j = 0; j < 3; j++)
            assert_int_equal(*(const uint8_t *)at2(a, i, j), 40 * (3 * i + j));
    sp_npy_close(npy);

    npy = open_fixture("f64_fortran.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->strides[0], 8);
    assert_int_equal(a->strides[1], 16);
    for (uint64_t i = 0; i < 2; i++)
        for (uint64_t j = 0; j < 3; j++) {
            double x;
            memcpy(&x, at2(a, i, j), 8);
            assert_true(x == (double)(3 * i + j));
        }
    sp_npy_close(npy);

    npy = open_fixture("i32_v2.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_INT32);
    assert_int_equal(a->shape[0], 7);
    for (int i = 0; i < 7; i++) {
        int32_t x;
        memcpy(&x, (const char *)a->data + 4 * i, 4);
        assert_int_equal(x, i - 3);
    }
    sp_npy_close(npy);

    npy = open_fixture("u16_v3.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_UINT16);
    assert_memory_equal(a->data, "\0\0\1\0\xff\xff", 6);
    sp_npy_close(npy);

    npy = open_fixture("f64_scalar.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->ndim, 0);
    double x;
    memcpy(&x, a->data, 8);
    assert_true(x == 2.25);
    sp_npy_close(npy);

    npy = open_fixture("i16_empty.npy");
    a = sp_npy_array(npy);
    assert_int_equal(a->dtype, SP_DTYPE_INT16);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 0);
    assert_int_equal(a->shape[1], 3);
    sp_npy_close(npy);
}

/* ---------------------------------------------------------------- errors */

static void test_npy_bad_magic_and_version(void **state) {
    (void)state;
    bytes b;
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", 1, "12345678", 8);
    b.data[1] = 'n';
    open_error(&b, SP_EBADINPUT, "not a NumPy .npy file");
    b.len = 0;
    open_error(&b, SP_EBADINPUT, "the file is empty");
    memcpy(b.data, "PK\3\4", 4);
    b.len = 4;
    open_error(&b, SP_EBADINPUT, "expected '\\x93NUMPY'");

    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", 1, "12345678", 8);
    b.data[6] = 4;
    open_error(&b, SP_EUNSUPPORTED, "version 4.0 is not supported");
    b.data[6] = 1;
    b.data[7] = 1;
    open_error(&b, SP_EUNSUPPORTED, "version 1.1");
    b.data[6] = 0;
    b.data[7] = 0;
    open_error(&b, SP_EUNSUPPORTED, "version 0.0");
}

static void test_npy_truncated(void **state) {
    (void)state;
    bytes b;
    const double v[6] = {0};
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 1, v, sizeof v);
    bytes t = b;
    /* inside the magic: still looks like .npy, so it is cut short rather than foreign */
    t.len = 7;
    open_error(&t, SP_ECORRUPT, "truncated");
    t.len = 3;
    open_error(&t, SP_ECORRUPT, "truncated");
    t.len = 9; /* inside the header length */
    open_error(&t, SP_ECORRUPT, "ends inside the 2-byte header length");
    t.len = 40; /* inside the header */
    open_error(&t, SP_ECORRUPT,
               "offset 8: truncated: the header length is 118 bytes, but only "
               "30 bytes follow offset 10");
    t.len = b.len - 1; /* one byte of data short */
    open_error(&t, SP_ECORRUPT,
               "data is 47 bytes, the header promises 48 (shape (2, 3) of "
               "float64 from offset 128)");
    t.len = 128; /* no data at all */
    open_error(&t, SP_ECORRUPT, "data is 0 bytes, the header promises 48");

    /* format 2.0: a header length past the end of the file */
    build(&b, 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 1, v, sizeof v);
    sp__put_u32(b.data + 8, 0xFFFFFFF0u);
    open_error(&b, SP_ECORRUPT, "the header length is 4294967280 bytes");
    b.len = 11;
    open_error(&b, SP_ECORRUPT, "ends inside the 4-byte header length");
}

static void test_npy_dtype_errors(void **state) {
    (void)state;
    dict_error("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "dtype '>f8' is big-endian");
    dict_error("{'descr': '>i2', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "big-endian");
    dict_error("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "dtype '|O' (Python objects) is not supported; supported: bool '|b1'");
    dict_error("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "'<c16' (complex)");
    dict_error("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "'<f2' (float16)");
    dict_error("{'descr': '|S5', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "'|S5' (strings)");
    dict_error("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "'<U3' (strings)");
    dict_error("{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "datetime");
    dict_error("{'descr': '<f16', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "'<f16' (extended float)");
    dict_error("{'descr': '', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "dtype '' (empty)");
    dict_error("{'descr': [('a', '<i4'), ('b', '<f8')], 'fortran_order': False, 'shape': (1,), }",
               SP_EUNSUPPORTED, "offset 20: 'descr' is a structured dtype");
    dict_error("{'descr': '<f8\xff', 'fortran_order': False, 'shape': (1,), }", SP_EUNSUPPORTED,
               "'<f8\\xff'");
}

static void test_npy_shape_errors(void **state) {
    (void)state;
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1), }",
               SP_EUNSUPPORTED, "'shape' has 5 dimensions; at most 4 are supported");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (2, -3), }", SP_EBADINPUT,
               "offset 64: header: 'shape' dimension 2 is negative");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (a,), }", SP_EBADINPUT,
               "expected a non-negative integer in 'shape', found 'a'");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (1.5,), }", SP_EBADINPUT,
               "expected ',' or ')' in 'shape', found '.'");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (5), }", SP_EBADINPUT,
               "'shape' (N) is not a tuple");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': [5], }", SP_EBADINPUT,
               "expected a tuple");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (5,,), }", SP_EBADINPUT,
               "expected a non-negative integer in 'shape', found ','");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (,), }", SP_EBADINPUT,
               "found ','");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (05,), }", SP_EBADINPUT,
               "leading zero");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (5x,), }", SP_EBADINPUT,
               "expected ',' or ')' after a 'shape' dimension, found 'x'");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,), }",
               SP_EBADINPUT, "does not fit in 64 bits");
    dict_error("{'descr': '|u1', 'fortran_order': False, 'shape': (3 4,), }", SP_EBADINPUT,
               "expected ',' or ')' in 'shape', found '4'");
    dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
               SP_EUNSUPPORTED, "'shape' is too big");
    dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }",
               SP_EUNSUPPORTED, "'shape' is too big");
    /* 'L' is Python 2 only: format 3.0 refuses it */
    bytes b;
    build(&b, 3, "{'descr': '|u1', 'fortran_order': False, 'shape': (1L,), }", 1, "x", 1);
    open_error(&b, SP_EBADINPUT, "after a 'shape' dimension, found 'L'");
}

static void test_npy_dict_errors(void **state) {
    (void)state;
    dict_error("", SP_EBADINPUT,
               "offset 64: header: expected '{' at the start of the header "
               "dict, found the end");
    dict_error("['descr']", SP_EBADINPUT, "expected '{'");
    dict_error("{'descr': '<f8', 'fortran_order': False}", SP_EBADINPUT,
               "the dict has no 'shape' key");
    dict_error("{'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT, "no 'descr' key");
    dict_error("{}", SP_EBADINPUT, "no 'descr' key");
    dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1}", SP_EBADINPUT,
               "unknown key 'extra'");
    dict_error("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}",
               SP_EBADINPUT, "offset 27: header: key 'descr' appears twice");
    dict_error("{'descr': '<f8' 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT,
               "expected ',' or '}' after a value");
    dict_error("{'descr': '<f8',, 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT,
               "expected a quoted string, found ','");
    dict_error("{'descr' '<f8', 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT,
               "expected ':' after a key");
    dict_error("{descr: '<f8', 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT,
               "expected a quoted string, found 'd'");
    dict_error("{'descr': <f8, 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT, "found '<'");
    dict_error("{'descr': \"<f8, 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT,
               "offset 20: header: string is not closed on its line");
    dict_error("{'descr': '<f\\x38', 'fortran_order': False, 'shape': (1,)}", SP_EBADINPUT,
               "escape sequences");
    dict_error("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}", SP_EBADINPUT,
               "expected True or False for 'fortran_order', found '0'");
    dict_error("{'descr': '<f8', 'fortran_order': Falsey, 'shape': (1,)}", SP_EBADINPUT,
               "expected True or False");
    dict_error("{'descr': '<f8', 'fortran_order': false, 'shape': (1,)}", SP_EBADINPUT,
               "expected True or False");
    dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} x", SP_EBADINPUT,
               "expected only spaces and a newline after the header dict, found 'x'");
    dict_error("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", SP_EBADINPUT,
               "expected ',' or '}' after a value, found the end");
    /* an unpadded header that stops mid-dict */
    bytes b;
    build(&b, 1, "{'descr': '<f8', 'fortran_order': Fa", 0, NULL, 0);
    open_error(&b, SP_EBADINPUT, "expected True or False for 'fortran_order', found 'F'");
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,", 0, NULL, 0);
    open_error(&b, SP_EBADINPUT, "expected a non-negative integer in 'shape', found the end");
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1", 0, NULL, 0);
    open_error(&b, SP_EBADINPUT, "expected ',' or ')' in 'shape', found the end");
    build(&b, 1, "{'descr': '<f8", 0, NULL, 0);
    open_error(&b, SP_EBADINPUT, "offset 20: header: string is not closed before the end");
    /* a NUL byte in the header */
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}\0  ", 1, NULL, 0);
    b.data[10 + 55] = 0;
    open_error(&b, SP_EBADINPUT, "found byte 0x00");
}

static void test_npy_api_errors(void **state) {
    (void)state;
    sp_npy *npy = (sp_npy *)1;
    assert_int_equal(sp_npy_open(NULL, &npy), SP_EINVAL);
    assert_null(npy);
    assert_int_equal(sp_npy_open("x.npy", NULL), SP_EINVAL);
    char path[4096];
    snprintf(path, sizeof path, "%s/missing.npy", g_dir);
    npy = (sp_npy *)1;
    assert_int_equal(sp_npy_open(path, &npy), SP_ENOTFOUND);
    assert_null(npy);
    assert_non_null(strstr(sp_errmsg(), path));
    assert_int_equal(sp_npy_open(g_dir, &npy), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "not a regular file"));
    assert_null(sp_npy_array(NULL));
    sp_npy_close(NULL);

    sp_array a;
    assert_int_equal(sp__npy_parse("m", NULL, 10, &a), SP_EINVAL);
    assert_int_equal(sp__npy_parse("m", NULL, 0, &a), SP_EBADINPUT);
    assert_int_equal(sp__npy_parse("m", (const uint8_t *)"", 0, NULL), SP_EINVAL);

    /* an allocation that fails gives SP_ENOMEM and no object */
    bytes b;
    build(&b, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", 0, "12345678", 8);
    put(path, "m.npy", b.data, b.len);
    for (uint64_t n = 1;; n++) {
        sp__malloc_fail_after(n);
        npy = (sp_npy *)1;
        sp_status rc = sp_npy_open(path, &npy);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            assert_true(n > 1);
            sp_npy_close(npy);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(npy);
        assert_non_null(strstr(sp_errmsg(), path));
    }
}

/* ---------------------------------------------------------------- sp_table */

static sp_table *table_ok(const char *name, const char *text) {
    char path[4096];
    put(path, name, text, strlen(text));
    sp_table *t = NULL;
    sp_status rc = sp_table_read(path, &t);
    if (rc != SP_OK) fail_msg("%s: %s", sp_status_name(rc), sp_errmsg());
    assert_non_null(t);
    return t;
}

static void test_table_columns(void **state) {
    (void)state;
    sp_table *t = table_ok("preds.csv", "id,pred score,label,name,note\n"
                                        "1,0.25,1,alice,\n"
                                        "\n"
                                        "2,,0,\"bob\nsmith\",\n"
                                        "3,7,1,7,\n");
    assert_int_equal(sp_table_n_rows(t), 3);
    assert_int_equal(sp_table_n_columns(t), 5);
    assert_string_equal(sp_table_column_name(t, 0), "id");
    assert_string_equal(sp_table_column_name(t, 1), "pred_score");
    assert_null(sp_table_column_name(t, 5));
    assert_int_equal(sp_table_column_index(t, "id"), 0);
    assert_int_equal(sp_table_column_index(t, "pred_score"), 1);
    assert_int_equal(sp_table_column_index(t, "pred score"), 1); /* as the file spells it */
    assert_int_equal(sp_table_column_index(t, "pred-score"), 1); /* same sanitized name */
    assert_int_equal(sp_table_column_index(t, "label"), 2);
    assert_int_equal(sp_table_column_index(t, "Label"), -1);
    assert_int_equal(sp_table_column_index(t, "missing"), -1);
    assert_int_equal(sp_table_column_index(t, ""), -1);
    assert_int_equal(sp_table_column_index(t, NULL), -1);
    assert_int_equal(sp_table_line(t, 0), 2);
    assert_int_equal(sp_table_line(t, 1), 4);
    assert_int_equal(sp_table_line(t, 2), 6);
    assert_int_equal(sp_table_line(t, 3), 0);

    double d[4] = {0, 0, 0, 42};
    assert_int_equal(sp_table_column_f64(t, 0, d, 4), SP_OK); /* int64 */
    assert_true(d[0] == 1 && d[1] == 2 && d[2] == 3 && d[3] == 42);
    assert_int_equal(sp_table_column_f64(t, 1, d, 3), SP_OK); /* float64 with a null */
    assert_true(d[0] == 0.25 && isnan(d[1]) && d[2] == 7);
    assert_int_equal(sp_table_column_f64(t, 4, d, 3), SP_OK); /* all null */
    assert_true(isnan(d[0]) && isnan(d[1]) && isnan(d[2]));

    /* a string column: the first value that is not a number, with its line */
    assert_int_equal(sp_table_column_f64(t, 3, d, 3), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "preds.csv:2: column \"name\": \"alice\" is not a number"));

    /* misuse */
    assert_int_equal(sp_table_column_f64(t, 0, d, 2), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "dst holds 2 values, the table has 3 rows"));
    assert_int_equal(sp_table_column_f64(t, 5, d, 3), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "column index 5 is out of range"));
    assert_int_equal(sp_table_column_f64(t, 0, NULL, 3), SP_EINVAL);
    assert_int_equal(sp_table_column_f64(NULL, 0, d, 3), SP_EINVAL);
    sp_table_close(t);

    /* the first non-number after numeric text in a string column */
    t = table_ok("s.csv", "x\n1\n2.5\n\nnan\nhello\n");
    assert_int_equal(sp_table_column_f64(t, 0, d, 4), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "s.csv:6: column \"x\": \"hello\" is not a number"));
    sp_table_close(t);

    /* no rows: dst may be NULL */
    t = table_ok("empty.csv", "a,b\n");
    assert_int_equal(sp_table_n_rows(t), 0);
    assert_int_equal(sp_table_column_f64(t, 1, NULL, 0), SP_OK);
    sp_table_close(t);

    assert_int_equal(sp_table_n_rows(NULL), 0);
    assert_int_equal(sp_table_n_columns(NULL), 0);
    assert_null(sp_table_column_name(NULL, 0));
    assert_int_equal(sp_table_column_index(NULL, "a"), -1);
    assert_int_equal(sp_table_line(NULL, 0), 0);
    sp_table_close(NULL);
}

static void test_table_jsonl_and_errors(void **state) {
    (void)state;
    sp_table *t =
        table_ok("p.JSONL", "{\"y\": 1, \"p\": 0.5}\n{\"y\": 0, \"p\": null, \"é\": 2}\n");
    assert_int_equal(sp_table_n_rows(t), 2);
    assert_int_equal(sp_table_n_columns(t), 3);
    assert_int_equal(sp_table_column_index(t, "p"), 1);
    assert_int_equal(sp_table_column_index(t, "é"), 2); /* sanitized to "_" */
    assert_string_equal(sp_table_column_name(t, 2), "_");
    double d[2];
    assert_int_equal(sp_table_column_f64(t, 1, d, 2), SP_OK);
    assert_true(d[0] == 0.5 && isnan(d[1]));
    sp_table_close(t);

    /* JSON strings that hold numbers make a string column whose values still convert */
    t = table_ok("q.jsonl", "{\"a\": \"1.5\", \"b\": true}\n{\"a\": null, \"b\": false}\n");
    assert_int_equal(sp_table_column_f64(t, 0, d, 2), SP_OK);
    assert_true(d[0] == 1.5 && isnan(d[1]));
    assert_int_equal(sp_table_column_f64(t, 1, d, 2), SP_OK);
    assert_true(d[0] == 1 && d[1] == 0);
    sp_table_close(t);

    /* a long value with control bytes is quoted printably and cut */
    t = table_ok("long.csv",
                 "v\n\"tab\there and a very long text that goes on past forty bytes\"\n");
    assert_int_equal(sp_table_column_f64(t, 0, d, 2), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "long.csv:2: column \"v\": \"tab\\x09here and a very long "
                                        "text that goes \"... is not a number"));
    sp_table_close(t);

    t = table_ok("p.ndjson", "{\"a\": \"x\"}\n");
    assert_int_equal(sp_table_column_f64(t, 0, d, 2), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "p.ndjson:1: column \"a\": \"x\" is not a number"));
    sp_table_close(t);

    /* a leading digit and a long name are sanitized the way the parser does it */
    char text[256];
    snprintf(text, sizeof text, "1st,%s\n1,2\n",
             "a_very_long_column_name_that_goes_on_and_on_past_sixty_three_characters_x");
    t = table_ok("n.csv", text);
    assert_int_equal(sp_table_column_index(t, "1st"), 0);
    assert_int_equal(sp_table_column_index(t, "_1st"), 0);
    assert_int_equal(
        sp_table_column_index(
            t, "a_very_long_column_name_that_goes_on_and_on_past_sixty_three_characters_x"),
        1);
    sp_table_close(t);

    /* an allocation that fails gives SP_ENOMEM, no table and no leak */
    char path[4096];
    put(path, "m.csv", "a,b\n1,x\n", 8);
    for (uint64_t n = 1;; n++) {
        sp__malloc_fail_after(n);
        sp_table *m = (sp_table *)1;
        sp_status rc = sp_table_read(path, &m);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            assert_true(n > 2);
            sp_table_close(m);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(m);
    }

    sp_table *bad = (sp_table *)1;
    snprintf(path, sizeof path, "%s/none.csv", g_dir);
    assert_int_equal(sp_table_read(path, &bad), SP_ENOTFOUND);
    assert_null(bad);
    assert_non_null(strstr(sp_errmsg(), path));
    put(path, "bad.csv", "a,b\n1,2\n3\n", 10);
    bad = (sp_table *)1;
    assert_int_equal(sp_table_read(path, &bad), SP_EBADINPUT);
    assert_null(bad);
    char want[4200];
    snprintf(want, sizeof want, "%s:3:", path);
    assert_non_null(strstr(sp_errmsg(), want));
    assert_int_equal(sp_table_read(NULL, &bad), SP_EINVAL);
    assert_int_equal(sp_table_read(path, NULL), SP_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_npy_each_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_fortran_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_scalar_and_4d, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_header_variants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_trailing_bytes_and_alignment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_numpy_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_bad_magic_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_dtype_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_shape_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_dict_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy_api_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_jsonl_and_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
