/* test_restart.c — `pack --restart-markers` (a lossless JPEG transcode with a restart marker per
 * MCU row) and the loader's restart-marker seek: decoding starts at the crop's first MCU row and
 * gives exactly the pixels of a decode from the top. */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */
/* clang-format on */

#include "ingest/ingest_internal.h"
#include "load/load_internal.h"
#include "softpipe/ingest.h"
#include "softpipe/shard.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

/* counter in load_decode.c: samples whose decode started at a restart marker */
extern unsigned long sp__decode_restart_hits;

/* ------------------------------------------------------------ images */

typedef struct cfg {
    int w, h, comps; /* comps 1 grey, 3 RGB, 4 CMYK */
    int hs, vs;      /* luma sampling (3 components); 0 = libjpeg's 2x2 */
    int progressive, restart_rows, quality;
} cfg;

/* Noise plus a smooth gradient: Huffman-heavy, with structure for the resampler. */
static uint8_t *pixels(int w, int h, int comps, uint64_t seed) {
    size_t n = (size_t)w * h * comps;
    uint8_t *p = malloc(n);
    tu_fill_random(p, n, seed);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++) {
                size_t i = ((size_t)y * w + x) * comps + c;
                double v = 128 + 90 * sin(x * 0.02 + y * 0.013 + c) + (p[i] - 128) * 0.3;
                p[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static uint8_t *enc(const cfg *c, uint64_t seed, size_t *len) {
    uint8_t *pix = pixels(c->w, c->h, c->comps, seed);
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&ci, &out, &outlen);
    ci.image_width = (JDIMENSION)c->w;
    ci.image_height = (JDIMENSION)c->h;
    ci.input_components = c->comps;
    ci.in_color_space = c->comps == 1 ? JCS_GRAYSCALE : c->comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, c->quality ? c->quality : 90, TRUE);
    if (c->comps == 3 && c->hs) {
        ci.comp_info[0].h_samp_factor = c->hs;
        ci.comp_info[0].v_samp_factor = c->vs;
    }
    if (c->progressive) jpeg_simple_progression(&ci);
    if (c->restart_rows) ci.restart_in_rows = c->restart_rows;
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * c->w * c->comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(pix);
    uint8_t *r = malloc(outlen);
    memcpy(r, out, outlen);
    free(out);
    *len = outlen;
    return r;
}

/* Full libjpeg decode (RGB, or CMYK as stored); also reports the restart interval and MCUs per
 * row. free() the result. */
static uint8_t *full_decode(const uint8_t *p, size_t n, size_t *size, unsigned *ri,
                            unsigned *mcus_per_row) {
    struct jpeg_decompress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, p, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&ci);
    if (ri) *ri = ci.restart_interval;
    if (mcus_per_row) *mcus_per_row = ci.MCUs_per_row;
    size_t stride = (size_t)ci.output_width * ci.output_components;
    *size = stride * ci.output_height;
    uint8_t *out = malloc(*size);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = out + (size_t)ci.output_scanline * stride;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    assert_int_equal(err.num_warnings, 0);
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    return out;
}

static const cfg CFGS[] = {
    {301, 237, 3, 0, 0, 0, 0, 90}, /* 4:2:0, sizes off the MCU grid */
    {256, 320, 3, 2, 1, 0, 0, 85}, /* 4:2:2 */
    {200, 150, 3, 1, 1, 0, 0, 95}, /* 4:4:4 */
    {123, 301, 3, 1, 2, 0, 0, 90}, /* 4:4:0 */
    {190, 211, 1, 0, 0, 0, 0, 90}, /* grey */
    {150, 170, 4, 0, 0, 0, 0, 90}, /* CMYK */
    {640, 480, 3, 0, 0, 0, 0, 75},
};
#define NCFG (sizeof CFGS / sizeof CFGS[0])

/* ------------------------------------------------------------ the transcode */

static void transcode_is_lossless(void **state) {
    (void)state;
    for (size_t k = 0; k < NCFG; k++) {
        size_t n, m, sa, sb;
        uint8_t *a = enc(&CFGS[k], 100 + k, &n);
        uint8_t *b = NULL;
        assert_int_equal(sp__jpeg_add_restarts("t.jpg", a, n, &b, &m), SP_OK);
        assert_non_null(b);
        unsigned ri_a, ri_b, mpr;
        uint8_t *pa = full_decode(a, n, &sa, &ri_a, NULL);
        uint8_t *pb = full_decode(b, m, &sb, &ri_b, &mpr);
        assert_int_equal(ri_a, 0);
        assert_int_equal(ri_b, mpr); /* one restart interval per MCU row */
        assert_int_equal(sa, sb);
        assert_memory_equal(pa, pb, sa);
        /* already marked: kept as it is */
        uint8_t *c = (uint8_t *)1;
        size_t cl = 1;
        assert_int_equal(sp__jpeg_add_restarts("t.jpg", b, m, &c, &cl), SP_OK);
        assert_null(c);
        assert_int_equal(cl, 0);
        free(pa);
        free(pb);
        free(a);
        sp__free(b);
    }
}

static void transcode_passes_through_or_rejects(void **state) {
    (void)state;
    size_t n;
    cfg pc = {200, 160, 3, 0, 0, 1, 0, 90};
    uint8_t *p = enc(&pc, 7, &n), *out = NULL;
    size_t ol = 0;
    assert_int_equal(sp__jpeg_add_restarts("p.jpg", p, n, &out, &ol), SP_OK); /* progressive */
    assert_null(out);
    free(p);
    cfg rc = {200, 160, 3, 0, 0, 0, 2, 90}; /* restart markers already (every 2 rows) */
    p = enc(&rc, 7, &n);
    assert_int_equal(sp__jpeg_add_restarts("r.jpg", p, n, &out, &ol), SP_OK);
    assert_null(out);
    free(p);
    const uint8_t png[] = "\x89PNG\r\n\x1a\n....";
    assert_int_equal(sp__jpeg_add_restarts("x.png", png, sizeof png, &out, &ol), SP_OK);
    assert_null(out);
    /* truncated and corrupt baseline JPEGs are bad inputs */
    cfg bc = {300, 200, 3, 0, 0, 0, 0, 90};
    p = enc(&bc, 8, &n);
    assert_int_equal(sp__jpeg_add_restarts("t.jpg", p, n / 2, &out, &ol), SP_EBADINPUT);
    assert_null(out);
    assert_non_null(strstr(sp_errmsg(), "t.jpg"));
    for (size_t i = n / 3; i < n / 3 + 64; i++)
        p[i] = 0xFF; /* marker soup in the data */
    sp_status st = sp__jpeg_add_restarts("c.jpg", p, n, &out, &ol);
    assert_true(st == SP_EBADINPUT || (st == SP_OK && out));
    sp__free(out);
    out = NULL;
    assert_int_equal(sp__jpeg_add_restarts("h.jpg", p, 40, &out, &ol), SP_EBADINPUT);
    assert_null(out);
    free(p);
}

/* ------------------------------------------------------------ the loader's seek */

static sp_status dec(sp__decoder *d, const uint8_t *p, size_t n, const sp__aug *aug,
                     const sp__out_spec *s, uint8_t *out) {
    return sp__decode_sample(d, "t.jpg", p, n, aug, s, out, NULL);
}

/* Random boxes over every mode: the restart-marked file with the seek, the same file decoded
 * from the top (crop_decode off) and the original (no markers) all give the same bytes, and the
 * seek triggers. */
static void seek_is_bit_identical(void **state) {
    (void)state;
    sp__decoder *d;
    assert_int_equal(sp__decoder_new(&d), SP_OK);
    uint64_t seed = 12345;
    for (size_t k = 0; k < NCFG; k++) {
        const cfg *c = &CFGS[k];
        size_t n, m;
        uint8_t *a = enc(c, 200 + k, &n), *b = NULL;
        assert_int_equal(sp__jpeg_add_restarts("t.jpg", a, n, &b, &m), SP_OK);
        assert_non_null(b);
        unsigned long hits0 = sp__decode_restart_hits;
        for (int it = 0; it < 400; it++) {
            sp__rng rng;
            sp__rng_init(&rng, seed, k, (uint64_t)it);
            sp__aug aug;
            aug.w = 8 + sp__rng_uniform(&rng) * (c->w - 8);
            aug.h = 8 + sp__rng_uniform(&rng) * (c->h - 8);
            aug.x = sp__rng_uniform(&rng) * (c->w - aug.w);
            aug.y = sp__rng_uniform(&rng) * (c->h - aug.h);
            if (it % 7 == 0) aug.y = floor(aug.y); /* on and near MCU boundaries */
            if (it % 11 == 0) aug.y = (double)(((int)aug.y / 16) * 16);
            aug.flip = it & 1;
            sp__out_spec s;
            memset(&s, 0, sizeof s);
            s.out_w = it % 3 == 0 ? 16 : 24 + (uint32_t)(it % 5);
            s.out_h = it % 4 == 0 ? 8 : 20 + (uint32_t)(it % 3);
            s.dtype = SP_DTYPE_UINT8;
            s.layout = SP_LAYOUT_NHWC;
            s.decode = (it / 2) % 2 ? SP_DECODE_FAST : SP_DECODE_ACCURATE;
            s.dct_scale = (it / 4) % 2;
            size_t sz = (size_t)s.out_w * s.out_h * 3;
            uint8_t *o1 = malloc(sz), *o2 = malloc(sz), *o3 = malloc(sz);
            s.crop_decode = 1;
            assert_int_equal(dec(d, b, m, &aug, &s, o1), SP_OK);
            assert_int_equal(dec(d, a, n, &aug, &s, o3), SP_OK);
            s.crop_decode = 0;
            assert_int_equal(dec(d, b, m, &aug, &s, o2), SP_OK);
            /* the seek must not change a bit. Fast mode with h2v1 / h2v2 sampling uses the merged
             * upsampler, which the seek leaves alone and whose crop decode (libjpeg-turbo 2.1's
             * jpeg_skip_scanlines) depends on the decoder's earlier samples: not compared */
            int merged = s.decode == SP_DECODE_FAST && c->comps == 3 && (c->hs == 0 || c->hs == 2);
            if (!merged && (memcmp(o1, o3, sz) || memcmp(o1, o2, sz))) {
                fail_msg("cfg %zu it %d: box (%g %g %g %g) out %ux%u mode %d dct %d differs", k, it,
                         aug.x, aug.y, aug.w, aug.h, s.out_w, s.out_h, (int)s.decode, s.dct_scale);
            }
            free(o1);
            free(o2);
            free(o3);
        }
        unsigned long hits = sp__decode_restart_hits - hits0;
        if (hits < 80) fail_msg("cfg %zu: the seek triggered %lu times of 400", k, hits);
        free(a);
        sp__free(b);
    }
    sp__decoder_free(d);
}

/* Files the seek must not use, or must fall back from, decode as before (or fail cleanly). */
static void seek_falls_back(void **state) {
    (void)state;
    sp__decoder *d;
    assert_int_equal(sp__decoder_new(&d), SP_OK);
    sp__out_spec s;
    memset(&s, 0, sizeof s);
    s.out_w = s.out_h = 16;
    s.dtype = SP_DTYPE_UINT8;
    s.layout = SP_LAYOUT_NHWC;
    s.crop_decode = 1;
    sp__aug aug = {10, 200, 64, 64, 0};
    uint8_t o1[16 * 16 * 3], o2[16 * 16 * 3];
    size_t n;
    /* restart markers every 2 MCU rows, progressive: no seek, same pixels as a full decode */
    cfg cs[2] = {{300, 300, 3, 0, 0, 0, 2, 90}, {300, 300, 3, 0, 0, 1, 0, 90}};
    for (int k = 0; k < 2; k++) {
        uint8_t *p = enc(&cs[k], 9, &n);
        unsigned long h0 = sp__decode_restart_hits;
        s.crop_decode = 1;
        assert_int_equal(dec(d, p, n, &aug, &s, o1), SP_OK);
        assert_int_equal(sp__decode_restart_hits, h0);
        s.crop_decode = 0;
        assert_int_equal(dec(d, p, n, &aug, &s, o2), SP_OK);
        assert_memory_equal(o1, o2, sizeof o1);
        free(p);
    }
    s.crop_decode = 1;
    /* a marked file with its markers damaged: out of sequence, or turned into another marker */
    cfg bc = {300, 300, 3, 0, 0, 0, 0, 90};
    uint8_t *a = enc(&bc, 10, &n), *b;
    size_t m;
    assert_int_equal(sp__jpeg_add_restarts("t.jpg", a, n, &b, &m), SP_OK);
    assert_int_equal(dec(d, a, n, &aug, &s, o2), SP_OK);
    int found = 0;
    for (size_t i = m / 4; i + 1 < m && !found; i++)
        if (b[i] == 0xFF && b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7) found = (int)i + 1;
    assert_true(found > 0);
    const uint8_t bad[] = {0xD0, 0xD7, 0xC4, 0xFE, 0x00};
    for (size_t v = 0; v < sizeof bad; v++) {
        if (b[found] == bad[v]) continue;
        uint8_t *c = malloc(m);
        memcpy(c, b, m);
        c[found] = bad[v];
        sp_status rc = dec(d, c, m, &aug, &s, o1);
        assert_true(rc == SP_OK || rc == SP_EBADINPUT);
        free(c);
    }
    /* the damaged marker above the crop: no seek past it */
    {
        uint8_t *c = malloc(m);
        memcpy(c, b, m);
        int first = 0;
        for (size_t i = 700; i + 1 < m && !first; i++)
            if (c[i] == 0xFF && c[i + 1] >= 0xD0 && c[i + 1] <= 0xD7) first = (int)i + 1;
        c[first] = c[first] == 0xD3 ? 0xD4 : 0xD3;
        unsigned long h0 = sp__decode_restart_hits;
        sp_status rc = dec(d, c, m, &aug, &s, o1);
        assert_true(rc == SP_OK || rc == SP_EBADINPUT);
        assert_int_equal(sp__decode_restart_hits, h0);
        free(c);
    }
    /* truncations of the marked file fail cleanly */
    for (size_t cut = 200; cut < m; cut += m / 13) {
        sp_status rc = dec(d, b, cut, &aug, &s, o1);
        assert_true(rc == SP_OK || rc == SP_EBADINPUT);
    }
    /* the intact one seeks and matches */
    unsigned long h0 = sp__decode_restart_hits;
    assert_int_equal(dec(d, b, m, &aug, &s, o1), SP_OK);
    assert_int_equal(sp__decode_restart_hits, h0 + 1);
    assert_memory_equal(o1, o2, sizeof o1);
    free(a);
    sp__free(b);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ pack */

static char *pack_tree(const char *dir) {
    char *src = sp__path_join(dir, "src");
    char path[4096];
    for (int i = 0; i < 12; i++) {
        cfg c = {96 + 17 * i, 80 + 23 * i, i % 5 == 4 ? 1 : 3, 0,
                 0,           i % 4 == 3,  i == 5 ? 1 : 0,     80};
        size_t n;
        uint8_t *p = enc(&c, 300 + (uint64_t)i, &n);
        snprintf(path, sizeof path, "%s/c%d/img%02d.jpg", src, i % 2, i);
        assert_int_equal(tu_write_file(path, p, n), 0);
        free(p);
    }
    return src;
}

static void pack_with_restart_markers(void **state) {
    (void)state;
    char *dir = tu_tmpdir("restart");
    char *src = pack_tree(dir);
    char *plain = sp__path_join(dir, "plain");
    char *outs[2] = {sp__path_join(dir, "rst1"), sp__path_join(dir, "rst3")};
    sp_pack_opts o;
    sp_pack_opts_init(&o);
    assert_int_equal(o.restart_markers, 0);
    assert_int_equal(sp_pack(src, plain, &o, NULL), SP_OK);
    for (int k = 0; k < 2; k++) {
        sp_pack_opts_init(&o);
        o.restart_markers = 1;
        o.threads = k ? 3 : 1;
        sp_pack_report r;
        assert_int_equal(sp_pack(src, outs[k], &o, &r), SP_OK);
        assert_int_equal(r.samples, 12);
    }
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s' >/dev/null", outs[0], outs[1]);
    assert_int_equal(system(cmd), 0);

    sp_dataset *dp, *dr;
    assert_int_equal(sp_dataset_open(plain, &dp), SP_OK);
    assert_int_equal(sp_dataset_open(outs[0], &dr), SP_OK);
    assert_int_equal(sp_dataset_len(dr), 12);
    int changed = 0;
    for (uint64_t i = 0; i < 12; i++) {
        sp_sample a, b;
        assert_int_equal(sp_dataset_sample(dp, i, &a), SP_OK);
        assert_int_equal(sp_dataset_sample(dr, i, &b), SP_OK);
        size_t sa, sb;
        unsigned ri_a, ri_b, mpr;
        uint8_t *pa = full_decode(a.data, a.size, &sa, &ri_a, NULL);
        uint8_t *pb = full_decode(b.data, b.size, &sb, &ri_b, &mpr);
        assert_int_equal(sa, sb);
        assert_memory_equal(pa, pb, sa);
        if (a.size != b.size || memcmp(a.data, b.data, a.size)) {
            changed++;
            assert_int_equal(ri_a, 0);
            assert_int_equal(ri_b, mpr);
        }
        free(pa);
        free(pb);
    }
    assert_int_equal(changed, 8); /* 3 progressive and 1 already marked are kept */
    sp_dataset_close(dp);
    sp_dataset_close(dr);
    tu_rmrf(dir);
    free(dir);
    sp__free(src);
    sp__free(plain);
    sp__free(outs[0]);
    sp__free(outs[1]);
}

static void pack_rejects_or_skips_bad_jpeg(void **state) {
    (void)state;
    char *dir = tu_tmpdir("restart_bad");
    char *src = pack_tree(dir);
    /* a JPEG whose header and EOI are fine but whose data is cut short in the middle */
    cfg c = {256, 256, 3, 0, 0, 0, 0, 90};
    size_t n;
    uint8_t *p = enc(&c, 5, &n);
    size_t keep = n / 2;
    memmove(p + keep, p + n - 2, 2); /* EOI right after half the data */
    char path[4096];
    snprintf(path, sizeof path, "%s/c0/zz_bad.jpg", src);
    assert_int_equal(tu_write_file(path, p, keep + 2), 0);
    free(p);
    char *o1 = sp__path_join(dir, "out1"), *o2 = sp__path_join(dir, "out2");
    sp_pack_opts o;
    sp_pack_opts_init(&o);
    o.restart_markers = 1;
    assert_int_equal(sp_pack(src, o1, &o, NULL), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "zz_bad.jpg"));
    o.skip_errors = 1;
    sp_pack_report r;
    assert_int_equal(sp_pack(src, o2, &o, &r), SP_OK);
    assert_int_equal(r.samples, 12);
    assert_int_equal(r.skipped, 1);
    tu_rmrf(dir);
    free(dir);
    sp__free(src);
    sp__free(o1);
    sp__free(o2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transcode_is_lossless),
        cmocka_unit_test(transcode_passes_through_or_rejects),
        cmocka_unit_test(seek_is_bit_identical),
        cmocka_unit_test(seek_falls_back),
        cmocka_unit_test(pack_with_restart_markers),
        cmocka_unit_test(pack_rejects_or_skips_bad_jpeg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
