/* test_load_decode.c — the loader's per-sample kernel: sp__aug_draw (torchvision's crop
 * semantics) and sp__decode_sample (crop decode, DCT scaling, resampling against Pillow, flip,
 * layouts, dtypes, bad inputs). */
/* cmocka.h needs these first */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */
/* clang-format on */

#include "load/load_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

/* test hook in load_decode.c: 0 scalar, 1 SSE2, 2 AVX2 (capped by what the CPU has) */
void sp__decode_set_simd(int level);

/* ------------------------------------------------------------ image makers */

/* A smooth RGB / grey / CMYK pattern (low frequencies only). */
static uint8_t *smooth_pixels(int w, int h, int comps) {
    uint8_t *p = malloc((size_t)w * h * comps);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++) {
                double v = 127.5 + 100 * sin(x * (0.011 + 0.004 * c) + y * 0.007 + c) +
                           25 * cos(y * 0.019 - x * 0.005 * c);
                p[((size_t)y * w + x) * comps + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static uint8_t *noise_pixels(int w, int h, int comps, uint64_t seed) {
    uint8_t *p = malloc((size_t)w * h * comps);
    tu_fill_random(p, (size_t)w * h * comps, seed);
    return p;
}

typedef struct jpeg_opts {
    int quality;
    int progressive;
    int restart_rows;
    int h_samp, v_samp; /* luma sampling (3 components); 0 = libjpeg's default 2x2 */
} jpeg_opts;

/* comps 1 (grey), 3 (RGB) or 4 (CMYK, written with libjpeg's Adobe marker). free() the result. */
static uint8_t *enc_jpeg(const uint8_t *pix, int w, int h, int comps, const jpeg_opts *o,
                         size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&c, &out, &outlen);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, o && o->quality ? o->quality : 90, TRUE);
    if (o && comps == 3 && o->h_samp) {
        c.comp_info[0].h_samp_factor = o->h_samp;
        c.comp_info[0].v_samp_factor = o->v_samp;
    }
    if (o && o->progressive) jpeg_simple_progression(&c);
    if (o && o->restart_rows) c.restart_in_rows = o->restart_rows;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = outlen;
    return out;
}

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void png_wr(png_structp png, png_bytep data, size_t n) {
    membuf *m = png_get_io_ptr(png);
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}

static void png_fl(png_structp png) {
    (void)png;
}

/* rows already packed for (color_type, depth); stride bytes per row. free() the result. */
static uint8_t *enc_png(const uint8_t *rows, size_t stride, int w, int h, int color_type, int depth,
                        int interlace, const png_color *pal, int npal, size_t *len) {
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        fail_msg("libpng write failed");
    }
    png_set_write_fn(png, &m, png_wr, png_fl);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    png_bytep *rp = malloc((size_t)h * sizeof *rp);
    for (int y = 0; y < h; y++)
        rp[y] = (png_bytep)(rows + (size_t)y * stride);
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rp);
    *len = m.n;
    return m.p;
}

/* ------------------------------------------------------------ decode helper */

typedef struct dec_args {
    double x, y, w, h;
    int flip;
    uint32_t ow, oh;
    int crop, dct;
    sp_decode_mode mode;
    sp_dtype dtype;
    sp_layout layout;
    float scale[3], bias[3];
} dec_args;

static dec_args args_u8(double x, double y, double w, double h, uint32_t ow, uint32_t oh) {
    dec_args a;
    memset(&a, 0, sizeof a);
    a.x = x;
    a.y = y;
    a.w = w;
    a.h = h;
    a.ow = ow;
    a.oh = oh;
    a.dtype = SP_DTYPE_UINT8;
    a.layout = SP_LAYOUT_NHWC;
    for (int c = 0; c < 3; c++)
        a.scale[c] = 1.0f / 255.0f;
    return a;
}

static size_t elem_size(sp_dtype t) {
    return t == SP_DTYPE_UINT8 ? 1 : t == SP_DTYPE_FLOAT32 ? 4 : 2;
}

static sp_status dec(sp__decoder *d, const char *name, const uint8_t *p, size_t n,
                     const dec_args *a, void *out) {
    sp__aug aug = {a->x, a->y, a->w, a->h, a->flip};
    sp__out_spec s;
    memset(&s, 0, sizeof s);
    s.out_w = a->ow;
    s.out_h = a->oh;
    s.dtype = a->dtype;
    s.layout = a->layout;
    memcpy(s.scale, a->scale, sizeof s.scale);
    memcpy(s.bias, a->bias, sizeof s.bias);
    s.decode = a->mode;
    s.crop_decode = a->crop;
    s.dct_scale = a->dct;
    sp__stage_times t;
    sp_status rc = sp__decode_sample(d, name, p, n, &aug, &s, out, &t);
    if (rc == SP_OK) {
        assert_true(t.decode_s >= 0 && t.augment_s >= 0);
        assert_true(t.decode_s + t.augment_s > 0);
    }
    return rc;
}

/* decodes into a fresh malloc'ed buffer; fails the test on error */
static uint8_t *dec_ok(sp__decoder *d, const uint8_t *p, size_t n, const dec_args *a) {
    uint8_t *out = malloc((size_t)a->ow * a->oh * 3 * elem_size(a->dtype));
    sp_status rc = dec(d, "t.img", p, n, a, out);
    if (rc != SP_OK) fail_msg("decode failed: %s", sp_errmsg());
    return out;
}

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n, double *mean) {
    int m = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
        s += d;
    }
    if (mean) *mean = n ? s / (double)n : 0;
    return m;
}

static sp__decoder *new_decoder(void) {
    sp__decoder *d = NULL;
    assert_int_equal(sp__decoder_new(&d), SP_OK);
    assert_non_null(d);
    return d;
}

/* ------------------------------------------------------------ sp__aug_draw */

/* torchvision 0.14 RandomResizedCrop.get_params + flip, transcribed statement by statement, drawing
 * from the same generator in the same order; the draws of unused attempts are skipped so that
 * every sample consumes 2 * 10 + 2 draws before the flip. */
static void ref_rrc(double W, double H, double smin, double smax, double rmin, double rmax,
                    sp__rng *rng, double out[4]) {
    double area = H * W;
    double log_ratio[2] = {log(rmin), log(rmax)};
    int used = 0;
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * (smin + (smax - smin) * sp__rng_uniform(rng));
        double aspect_ratio =
            exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * sp__rng_uniform(rng));
        used += 2;
        double w = nearbyint(sqrt(target_area * aspect_ratio)); /* int(round(...)) */
        double h = nearbyint(sqrt(target_area / aspect_ratio));
        if (0 < w && w <= W && 0 < h && h <= H) {
            double i = floor(sp__rng_uniform(rng) * (H - h + 1)); /* randint(0, H - h + 1) */
            double j = floor(sp__rng_uniform(rng) * (W - w + 1));
            used += 2;
            while (used++ < 22)
                sp__rng_next(rng);
            out[0] = j;
            out[1] = i;
            out[2] = w;
            out[3] = h;
            return;
        }
    }
    sp__rng_next(rng);
    sp__rng_next(rng);
    double in_ratio = W / H, w, h;
    if (in_ratio < fmin(rmin, rmax)) {
        w = W;
        h = nearbyint(w / fmin(rmin, rmax));
    } else if (in_ratio > fmax(rmin, rmax)) {
        h = H;
        w = nearbyint(h * fmax(rmin, rmax));
    } else {
        w = W;
        h = H;
    }
    out[0] = floor((W - w) / 2);
    out[1] = floor((H - h) / 2);
    out[2] = w;
    out[3] = h;
}

static void aug_matches_torchvision(void **state) {
    (void)state;
    static const int sizes[][2] = {{469, 401}, {500, 375}, {375, 500}, {1, 1},    {2, 300},
                                   {300, 2},   {640, 480}, {33, 31},   {4000, 7}, {224, 224}};
    static const double params[][4] = {
        {0, 0, 0, 0}, {0.08, 1.0, 3.0 / 4, 4.0 / 3}, {0.25, 0.5, 0.5, 2.0}, {0.9, 1.0, 1.0, 1.0}};
    int flips = 0, n = 0, fallbacks = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t pi = 0; pi < sizeof params / sizeof params[0]; pi++)
            for (uint64_t id = 0; id < 300; id++) {
                sp_loader_opts o;
                memset(&o, 0, sizeof o);
                o.crop = SP_CROP_RANDOM_RESIZED;
                o.scale_min = params[pi][0];
                o.scale_max = params[pi][1];
                o.ratio_min = params[pi][2];
                o.ratio_max = params[pi][3];
                o.flip = 0.5;
                sp__rng r1, r2;
                sp__rng_init(&r1, 42, 3, id);
                sp__rng_init(&r2, 42, 3, id);
                sp__aug a;
                sp__aug_draw(&o, sizes[si][0], sizes[si][1], &r1, &a);
                double smin = pi ? params[pi][0] : 0.08, smax = pi ? params[pi][1] : 1.0;
                double rmin = pi ? params[pi][2] : 3.0 / 4, rmax = pi ? params[pi][3] : 4.0 / 3;
                double ref[4];
                ref_rrc(sizes[si][0], sizes[si][1], smin, smax, rmin, rmax, &r2, ref);
                int flip = sp__rng_uniform(&r2) < 0.5;
                assert_true(a.x == ref[0] && a.y == ref[1] && a.w == ref[2] && a.h == ref[3]);
                assert_int_equal(a.flip, flip);
                /* the same number of draws on every path */
                assert_true(sp__rng_next(&r1) == sp__rng_next(&r2));
                /* integers inside the image */
                assert_true(a.w >= 1 && a.h >= 1 && a.x >= 0 && a.y >= 0);
                assert_true(a.x + a.w <= sizes[si][0] && a.y + a.h <= sizes[si][1]);
                assert_true(a.x == floor(a.x) && a.w == floor(a.w));
                if (a.w == sizes[si][0] || a.h == sizes[si][1]) fallbacks++;
                flips += a.flip;
                n++;
            }
    assert_true(flips > n * 0.45 && flips < n * 0.55);
    assert_true(fallbacks > 0);
}

static void aug_center_and_none(void **state) {
    (void)state;
    /* boxes computed with torchvision 0.14.1: Resize(int(out_h / 0.875)) then CenterCrop */
    static const struct {
        int W, H, oh, ow;
        double x, y, w, h;
    } cases[] = {
        {500, 375, 224, 224, 85.04398826979471, 23.4375, 328.4457478005865, 328.125},
        {375, 500, 224, 224, 23.4375, 85.04398826979471, 328.125, 328.4457478005865},
        {469, 401, 224, 224, 59.60535117056857, 25.0625, 351.3578595317726, 350.875},
        {640, 480, 288, 224, 156.34703196347033, 29.179331306990882, 327.3059360730594,
         420.18237082066867},
        {1000, 10, 224, 224, 495.625, 0.625, 8.75, 8.75},
        {257, 256, 224, 224, 16.0, 16.0, 224.0, 224.0},
        {300, 300, 100, 150, -47.368421052631575, 18.42105263157895, 394.7368421052632,
         263.1578947368421},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_loader_opts o;
        memset(&o, 0, sizeof o);
        o.crop = SP_CROP_CENTER;
        o.out_h = (uint32_t)cases[i].oh;
        o.out_w = (uint32_t)cases[i].ow;
        sp__rng r;
        sp__rng_init(&r, 1, 0, i);
        sp__aug a;
        sp__aug_draw(&o, cases[i].W, cases[i].H, &r, &a);
        assert_true(fabs(a.x - cases[i].x) < 1e-9 && fabs(a.y - cases[i].y) < 1e-9);
        assert_true(fabs(a.w - cases[i].w) < 1e-9 && fabs(a.h - cases[i].h) < 1e-9);
        assert_int_equal(a.flip, 0);
    }
    sp_loader_opts o;
    memset(&o, 0, sizeof o);
    o.crop = SP_CROP_NONE;
    o.flip = 1.0;
    sp__rng r;
    sp__rng_init(&r, 1, 0, 0);
    sp__aug a;
    sp__aug_draw(&o, 123, 45, &r, &a);
    assert_true(a.x == 0 && a.y == 0 && a.w == 123 && a.h == 45 && a.flip == 1);
}

static void aug_is_deterministic(void **state) {
    (void)state;
    sp_loader_opts o;
    memset(&o, 0, sizeof o);
    o.flip = 0.5;
    int differ = 0;
    for (uint64_t id = 0; id < 200; id++) {
        sp__rng r1, r2, r3;
        sp__rng_init(&r1, 7, 1, id);
        sp__rng_init(&r2, 7, 1, id);
        sp__rng_init(&r3, 7, 2, id);
        sp__aug a, b, c;
        sp__aug_draw(&o, 469, 401, &r1, &a);
        sp__aug_draw(&o, 469, 401, &r2, &b);
        sp__aug_draw(&o, 469, 401, &r3, &c);
        assert_true(a.x == b.x && a.y == b.y && a.w == b.w && a.h == b.h && a.flip == b.flip);
        differ += !(a.x == c.x && a.y == c.y && a.w == c.w && a.h == c.h && a.flip == c.flip);
    }
    assert_true(differ > 190);
}

/* ------------------------------------------------------------ crop decode and DCT scaling */

static void crop_decode_matches_full_decode(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    struct {
        int w, h, comps, smooth;
        jpeg_opts o;
    } kinds[] = {
        {301, 203, 3, 0, {90, 0, 0, 0, 0}}, /* 4:2:0 noise */
        {256, 190, 3, 1, {90, 0, 0, 1, 1}}, /* 4:4:4 */
        {199, 257, 3, 1, {90, 0, 0, 2, 1}}, /* 4:2:2 */
        {220, 180, 1, 0, {85, 0, 0, 0, 0}}, /* grey */
        {300, 211, 3, 1, {90, 1, 0, 0, 0}}, /* progressive 4:2:0 */
        {230, 170, 3, 0, {90, 0, 2, 0, 0}}, /* restart markers every 2 MCU rows */
        {97, 61, 4, 1, {95, 0, 0, 0, 0}},   /* CMYK */
    };
    sp_loader_opts o;
    memset(&o, 0, sizeof o);
    o.flip = 0.5;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        uint8_t *pix = kinds[k].smooth ? smooth_pixels(kinds[k].w, kinds[k].h, kinds[k].comps)
                                       : noise_pixels(kinds[k].w, kinds[k].h, kinds[k].comps, k);
        size_t len;
        uint8_t *j = enc_jpeg(pix, kinds[k].w, kinds[k].h, kinds[k].comps, &kinds[k].o, &len);
        for (uint64_t id = 0; id < 24; id++) {
            sp__rng r;
            sp__rng_init(&r, 9, k, id);
            sp__aug a;
            sp__aug_draw(&o, kinds[k].w, kinds[k].h, &r, &a);
            if (id == 0) a = (sp__aug){0, 0, kinds[k].w, kinds[k].h, 0};
            if (id == 1) a = (sp__aug){kinds[k].w - 17.5, kinds[k].h - 9.25, 17.5, 9.25, 1};
            if (id == 2) a = (sp__aug){0.5, 0.25, 1.5, 2.0, 0};
            uint32_t ow = id % 3 == 0 ? 224 : 48, oh = id % 3 == 0 ? 224 : 40;
            for (int mode = 0; mode < 2; mode++)
                for (int dct = 0; dct < 2; dct++) {
                    dec_args da = args_u8(a.x, a.y, a.w, a.h, ow, oh);
                    da.flip = a.flip;
                    da.mode = (sp_decode_mode)mode;
                    da.dct = dct;
                    da.crop = 0;
                    uint8_t *full = dec_ok(d, j, len, &da);
                    da.crop = 1;
                    uint8_t *crop = dec_ok(d, j, len, &da);
                    double mean;
                    int m = max_abs_diff(full, crop, (size_t)ow * oh * 3, &mean);
                    if (m > 2)
                        fail_msg("kind %zu id %d mode %d dct %d: crop decode differs by %d", k,
                                 (int)id, mode, dct, m);
                    free(full);
                    free(crop);
                }
        }
        free(j);
        free(pix);
    }
    sp__decoder_free(d);
}

static void dct_scaled_close_to_full_scale(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    int w = 1024, h = 768;
    uint8_t *pix = smooth_pixels(w, h, 3);
    size_t len;
    uint8_t *j = enc_jpeg(pix, w, h, 3, NULL, &len);
    static const double boxes[][4] = {
        {0, 0, 1024, 768}, {100.5, 37.25, 801.0, 600.5}, {512, 384, 512, 384}, {3, 5, 1000, 700}};
    static const uint32_t outs[][2] = {{64, 48}, {120, 90}, {224, 224}, {300, 200}};
    for (size_t b = 0; b < 4; b++)
        for (size_t s = 0; s < 4; s++) {
            dec_args da =
                args_u8(boxes[b][0], boxes[b][1], boxes[b][2], boxes[b][3], outs[s][0], outs[s][1]);
            da.crop = 1;
            uint8_t *full = dec_ok(d, j, len, &da);
            da.dct = 1;
            uint8_t *scaled = dec_ok(d, j, len, &da);
            double mean;
            max_abs_diff(full, scaled, (size_t)outs[s][0] * outs[s][1] * 3, &mean);
            if (mean > 1.0) fail_msg("box %zu out %zu: mean abs diff %.3f", b, s, mean);
            free(full);
            free(scaled);
        }
    free(j);
    free(pix);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ flip, layouts, dtypes */

static void flip_mirrors_exactly(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    uint8_t *pix = noise_pixels(173, 121, 3, 5);
    size_t len;
    uint8_t *j = enc_jpeg(pix, 173, 121, 3, NULL, &len);
    static const uint32_t sizes[][2] = {{224, 224}, {31, 17}, {1, 5}, {64, 64}};
    for (size_t s = 0; s < 4; s++) {
        uint32_t ow = sizes[s][0], oh = sizes[s][1];
        dec_args da = args_u8(11.3, 7.9, 140.2, 101.7, ow, oh);
        da.crop = 1;
        uint8_t *a = dec_ok(d, j, len, &da);
        da.flip = 1;
        uint8_t *b = dec_ok(d, j, len, &da);
        for (uint32_t y = 0; y < oh; y++)
            for (uint32_t x = 0; x < ow; x++)
                assert_memory_equal(a + ((size_t)y * ow + x) * 3,
                                    b + ((size_t)y * ow + (ow - 1 - x)) * 3, 3);
        free(a);
        free(b);
    }
    free(j);
    free(pix);
    sp__decoder_free(d);
}

static float half_to_float(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

/* h is f rounded to the nearest half, ties to even */
static int is_rne_half(float f, uint16_t h) {
    if (isnan(f)) return isnan(half_to_float(h));
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if ((h & 0x8000) != sign && a != 0) return 0;
    uint16_t mag = h & 0x7fff;
    if (a >= 65520.0f) return mag == 0x7c00;
    if (mag >= 0x7c00) return 0;
    float hv = half_to_float(mag);
    if (mag < 0x7bff) {
        float up = half_to_float((uint16_t)(mag + 1));
        if (fabsf(up - a) < fabsf(hv - a)) return 0;
        if (fabsf(up - a) == fabsf(hv - a) && (mag & 1)) return 0;
    }
    if (mag > 0) {
        float dn = half_to_float((uint16_t)(mag - 1));
        if (fabsf(dn - a) < fabsf(hv - a)) return 0;
        if (fabsf(dn - a) == fabsf(hv - a) && (mag & 1)) return 0;
    }
    return 1;
}

static void layouts_dtypes_and_normalization(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    int w = 150, h = 97;
    uint8_t *pix = noise_pixels(w, h, 3, 11);
    size_t len;
    uint8_t *j = enc_jpeg(pix, w, h, 3, NULL, &len);
    static const float scales[][6] = {
        {1.0f / 255, 1.0f / 255, 1.0f / 255, 0, 0, 0},
        {1.0f / (255 * 0.229f), 1.0f / (255 * 0.224f), 1.0f / (255 * 0.225f), -0.485f / 0.229f,
         -0.456f / 0.224f, -0.406f / 0.225f},
        {1e-7f, 3e-8f, 2e-6f, 0, 0, 1e-6f}, /* half subnormals */
        {300.0f, 257.0f, -300.0f, -20000.0f, 0, 0},
        /* overflow to inf */
    };
    static const uint32_t sizes[][2] = {{224, 224}, {13, 7}, {9, 1}};
    for (int isa = 0; isa <= 2; isa++) {
        sp__decode_set_simd(isa);
        for (size_t sz = 0; sz < 3; sz++) {
            uint32_t ow = sizes[sz][0], oh = sizes[sz][1];
            size_t n = (size_t)ow * oh;
            dec_args da = args_u8(5.5, 3.25, 131.0, 90.5, ow, oh);
            da.crop = 1;
            da.flip = 1;
            uint8_t *hwc = dec_ok(d, j, len, &da);
            da.layout = SP_LAYOUT_NCHW;
            uint8_t *chw = dec_ok(d, j, len, &da);
            for (size_t i = 0; i < n; i++)
                for (int c = 0; c < 3; c++)
                    assert_int_equal(hwc[i * 3 + c], chw[c * n + i]);
            for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
                for (int c = 0; c < 3; c++) {
                    da.scale[c] = scales[si][c];
                    da.bias[c] = scales[si][3 + c];
                }
                for (int lay = 0; lay < 2; lay++) {
                    da.layout = (sp_layout)lay;
                    da.dtype = SP_DTYPE_FLOAT32;
                    float *f = (float *)dec_ok(d, j, len, &da);
                    da.dtype = SP_DTYPE_FLOAT16;
                    uint16_t *hf = (uint16_t *)dec_ok(d, j, len, &da);
                    da.dtype = SP_DTYPE_UINT8;
                    for (size_t i = 0; i < n; i++)
                        for (int c = 0; c < 3; c++) {
                            size_t at = lay == SP_LAYOUT_NHWC ? i * 3 + c : c * n + i;
                            float want = (float)hwc[i * 3 + c] * da.scale[c] + da.bias[c];
                            assert_memory_equal(&f[at], &want, sizeof want);
                            if (!is_rne_half(want, hf[at]))
                                fail_msg("half of %a is %04x (isa %d)", (double)want, hf[at], isa);
#ifdef __FLT16_MANT_DIG__
                            _Float16 hh = (_Float16)want;
                            uint16_t bits;
                            memcpy(&bits, &hh, 2);
                            if (!isnan(want)) assert_int_equal(bits, hf[at]);
#endif
                        }
                    free(f);
                    free(hf);
                }
            }
            free(hwc);
            free(chw);
        }
    }
    sp__decode_set_simd(2);
    free(j);
    free(pix);
    sp__decoder_free(d);
}

static void simd_levels_are_bit_identical(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    uint8_t *pix = noise_pixels(333, 250, 3, 3);
    size_t len;
    uint8_t *j = enc_jpeg(pix, 333, 250, 3, NULL, &len);
    sp_loader_opts o;
    memset(&o, 0, sizeof o);
    o.flip = 0.5;
    for (uint64_t id = 0; id < 40; id++) {
        sp__rng r;
        sp__rng_init(&r, 5, 0, id);
        sp__aug a;
        sp__aug_draw(&o, 333, 250, &r, &a);
        uint32_t ow = 1 + (uint32_t)(id * 37 % 250), oh = 1 + (uint32_t)(id * 53 % 200);
        dec_args da = args_u8(a.x, a.y, a.w, a.h, ow, oh);
        da.flip = a.flip;
        da.crop = 1;
        da.dct = (int)(id & 1);
        uint8_t *out[3];
        for (int isa = 0; isa <= 2; isa++) {
            sp__decode_set_simd(isa);
            out[isa] = dec_ok(d, j, len, &da);
        }
        assert_memory_equal(out[0], out[1], (size_t)ow * oh * 3);
        assert_memory_equal(out[0], out[2], (size_t)ow * oh * 3);
        for (int isa = 0; isa <= 2; isa++)
            free(out[isa]);
    }
    sp__decode_set_simd(2);
    free(j);
    free(pix);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ colour kinds, PNG */

static void grey_jpeg_is_rgb_equal(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    uint8_t *pix = noise_pixels(120, 80, 1, 2);
    size_t len;
    uint8_t *j = enc_jpeg(pix, 120, 80, 1, NULL, &len);
    dec_args da = args_u8(10, 5, 100.5, 70.25, 64, 48);
    da.crop = 1;
    uint8_t *o = dec_ok(d, j, len, &da);
    for (size_t i = 0; i < 64 * 48; i++) {
        assert_int_equal(o[3 * i], o[3 * i + 1]);
        assert_int_equal(o[3 * i], o[3 * i + 2]);
    }
    free(o);
    /* identity: the decoded grey values themselves */
    da = args_u8(0, 0, 120, 80, 120, 80);
    o = dec_ok(d, j, len, &da);
    double mean;
    uint8_t *rgb = malloc(120 * 80 * 3);
    for (size_t i = 0; i < 120 * 80; i++)
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = pix[i];
    max_abs_diff(o, rgb, 120 * 80 * 3, &mean);
    assert_true(mean < 12); /* JPEG noise at quality 90 on pure noise */
    free(rgb);
    free(o);
    free(j);
    free(pix);
    sp__decoder_free(d);
}

static void cmyk_jpeg_converts_like_pil(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    /* flat colours survive JPEG exactly, so the conversion can be checked exactly: PIL reads CMYK
     * JPEGs as Adobe-inverted and converts R = (255 - K') - (255 - K') * C' / 255, with C' = 255 -
     * stored C and K' = 255 - stored K */
    static const uint8_t cmyk[][4] = {{0, 0, 0, 0},
                                      {255, 255, 255, 255},
                                      {200, 100, 50, 180},
                                      {30, 220, 128, 255},
                                      {255, 0, 128, 64}};
    for (size_t i = 0; i < sizeof cmyk / sizeof cmyk[0]; i++) {
        uint8_t pix[16 * 16 * 4];
        for (int p = 0; p < 256; p++)
            memcpy(pix + 4 * p, cmyk[i], 4);
        size_t len;
        jpeg_opts jo = {100, 0, 0, 0, 0};
        uint8_t *j = enc_jpeg(pix, 16, 16, 4, &jo, &len);
        dec_args da = args_u8(0, 0, 16, 16, 4, 4);
        uint8_t *o = dec_ok(d, j, len, &da);
        int nk = cmyk[i][3];
        for (int c = 0; c < 3; c++) {
            int t = (255 - cmyk[i][c]) * nk + 128;
            int want = nk - ((t + (t >> 8)) >> 8);
            assert_true(abs((int)o[c] - want) <= 1);
        }
        free(o);
        free(j);
    }
    sp__decoder_free(d);
}

static void png_variants(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    int w = 19, h = 13;
    uint8_t *rgb = noise_pixels(w, h, 3, 4);
    size_t len;
    dec_args da = args_u8(0, 0, w, h, (uint32_t)w, (uint32_t)h);
    /* RGB 8-bit, plain and interlaced */
    for (int il = 0; il < 2; il++) {
        uint8_t *p = enc_png(rgb, (size_t)w * 3, w, h, PNG_COLOR_TYPE_RGB, 8, il, NULL, 0, &len);
        uint8_t *o = dec_ok(d, p, len, &da);
        assert_memory_equal(o, rgb, (size_t)w * h * 3);
        free(o);
        free(p);
    }
    /* RGBA: alpha dropped */
    uint8_t *rgba = noise_pixels(w, h, 4, 5);
    uint8_t *p = enc_png(rgba, (size_t)w * 4, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, NULL, 0, &len);
    uint8_t *o = dec_ok(d, p, len, &da);
    for (int i = 0; i < w * h; i++)
        assert_memory_equal(o + 3 * i, rgba + 4 * i, 3);
    free(o);
    free(p);
    /* 16-bit grey: the high byte */
    uint8_t *g16 = noise_pixels(w, h, 2, 6);
    p = enc_png(g16, (size_t)w * 2, w, h, PNG_COLOR_TYPE_GRAY, 16, 0, NULL, 0, &len);
    o = dec_ok(d, p, len, &da);
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++)
            assert_int_equal(o[3 * i + c], g16[2 * i]);
    free(o);
    free(p);
    /* 1-bit grey: 0 and 255 */
    uint8_t bits[13 * 3];
    tu_fill_random(bits, sizeof bits, 8);
    p = enc_png(bits, 3, w, h, PNG_COLOR_TYPE_GRAY, 1, 0, NULL, 0, &len);
    o = dec_ok(d, p, len, &da);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int bit = (bits[y * 3 + x / 8] >> (7 - x % 8)) & 1;
            assert_int_equal(o[(y * w + x) * 3 + 1], bit ? 255 : 0);
        }
    free(o);
    free(p);
    /* palette */
    png_color pal[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {12, 34, 56}};
    uint8_t idx[13 * 19];
    for (int i = 0; i < w * h; i++)
        idx[i] = (uint8_t)(i * 7 % 4);
    p = enc_png(idx, (size_t)w, w, h, PNG_COLOR_TYPE_PALETTE, 8, 0, pal, 4, &len);
    o = dec_ok(d, p, len, &da);
    for (int i = 0; i < w * h; i++) {
        assert_int_equal(o[3 * i], pal[idx[i]].red);
        assert_int_equal(o[3 * i + 1], pal[idx[i]].green);
        assert_int_equal(o[3 * i + 2], pal[idx[i]].blue);
    }
    free(o);
    /* and through the resampler, flipped, crop flag ignored */
    dec_args db = args_u8(1.5, 2.5, 15, 9, 40, 30);
    db.crop = 1;
    db.dct = 1;
    db.flip = 1;
    o = dec_ok(d, p, len, &db);
    free(o);
    free(p);
    free(g16);
    free(rgba);
    free(rgb);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ bad inputs */

/* the box covers a 64x64 image, so even the crop decode reads every row */
static void expect_bad(sp__decoder *d, const char *name, const uint8_t *p, size_t n,
                       const char *what) {
    dec_args da = args_u8(0, 0, 64, 64, 8, 8);
    uint8_t out[8 * 8 * 3];
    for (int crop = 0; crop < 2; crop++) {
        da.crop = crop;
        sp_status rc = dec(d, name, p, n, &da, out);
        if (rc != SP_EBADINPUT) fail_msg("%s: got %d (%s)", name, rc, sp_errmsg());
        const char *m = sp_errmsg();
        if (strncmp(m, name, strlen(name)) != 0 || m[strlen(name)] != ':')
            fail_msg("message does not start with the name: %s", m);
        if (what && !strstr(m, what)) fail_msg("message lacks \"%s\": %s", what, m);
    }
}

static void bad_inputs_are_named_errors(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    size_t len;
    uint8_t *pix = noise_pixels(64, 64, 3, 1);
    uint8_t *j = enc_jpeg(pix, 64, 64, 3, NULL, &len);
    expect_bad(d, "zero.jpg", j, 0, "empty");
    expect_bad(d, "garbage.bin", (const uint8_t *)"hello, world", 12, "not a JPEG or PNG");
    expect_bad(d, "half.jpg", j, len / 2, "truncated JPEG");
    expect_bad(d, "three.jpg", j, 3, "truncated JPEG");
    /* cut in the entropy-coded data but ending with EOI: libjpeg's premature end */
    uint8_t *cut = malloc(len);
    memcpy(cut, j, len / 2);
    cut[len / 2] = 0xFF;
    cut[len / 2 + 1] = 0xD9;
    expect_bad(d, "cut.jpg", cut, len / 2 + 2, "bad JPEG");
    /* damaged entropy-coded data */
    uint8_t *bad = malloc(len);
    memcpy(bad, j, len);
    for (size_t i = len / 3; i < len / 3 + 40; i++)
        bad[i] = (uint8_t)(i * 37);
    bad[len / 3 + 40] = 0xFF;
    bad[len / 3 + 41] = 0xD3; /* an out-of-order restart marker */
    expect_bad(d, "bad.jpg", bad, len, "bad JPEG");
    /* only a header */
    expect_bad(d, "hdr.jpg", (const uint8_t *)"\xFF\xD8\xFF\xD9", 4, "bad JPEG");
    /* a frame header claiming 40000 columns */
    memcpy(bad, j, len);
    for (size_t i = 2; i + 8 < len; i++)
        if (bad[i] == 0xFF && bad[i + 1] == 0xC0) {
            bad[i + 7] = 40000 >> 8;
            bad[i + 8] = 40000 & 255;
            break;
        }
    expect_bad(d, "wide.jpg", bad, len, "too large");
    /* 10000 x 10000: each side is fine, 300 MB of pixels is not */
    memcpy(bad, j, len);
    for (size_t i = 2; i + 8 < len; i++)
        if (bad[i] == 0xFF && bad[i + 1] == 0xC0) {
            bad[i + 5] = bad[i + 7] = 10000 >> 8;
            bad[i + 6] = bad[i + 8] = 10000 & 255;
            break;
        }
    expect_bad(d, "big.jpg", bad, len, "too large");
    /* PNG: truncated, bad CRC, garbage after the signature */
    uint8_t *rgb = noise_pixels(20, 20, 3, 2);
    size_t plen;
    uint8_t *p = enc_png(rgb, 60, 20, 20, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, &plen);
    expect_bad(d, "half.png", p, plen / 2, "bad PNG");
    uint8_t *pb = malloc(plen);
    memcpy(pb, p, plen);
    pb[20] ^= 0x55; /* inside IHDR: its CRC fails */
    expect_bad(d, "crc.png", pb, plen, "bad PNG");
    memcpy(pb, p, plen);
    for (size_t i = 8; i < plen; i++)
        pb[i] = (uint8_t)(i * 131);
    expect_bad(d, "junk.png", pb, plen, "bad PNG");
    /* the decoder still works afterwards */
    dec_args da = args_u8(0, 0, 64, 64, 32, 32);
    uint8_t *o = dec_ok(d, j, len, &da);
    free(o);
    /* misuse */
    uint8_t out[3 * 4];
    da = args_u8(0, 0, 0, 5, 2, 2);
    assert_int_equal(dec(d, "box.jpg", j, len, &da, out), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "box.jpg: bad crop box"));
    da = args_u8(NAN, 0, 5, 5, 2, 2);
    assert_int_equal(dec(d, "box.jpg", j, len, &da, out), SP_EINVAL);
    da = args_u8(0, 0, 5, 5, 0, 2);
    assert_int_equal(dec(d, "size.jpg", j, len, &da, out), SP_EINVAL);
    da = args_u8(0, 0, 5, 5, 2, 2);
    assert_int_equal(dec(d, "null.jpg", NULL, 10, &da, out), SP_EINVAL);
    assert_int_equal(dec(d, "null.jpg", j, len, &da, NULL), SP_EINVAL);
    free(pb);
    free(p);
    free(rgb);
    free(bad);
    free(cut);
    free(j);
    free(pix);
    sp__decoder_free(d);
    sp__decoder_free(NULL);
}

/* A progressive grey JPEG with a legal but absurd scan script: every AC coefficient in its own
 * scan, refined bit by bit (2 + 63 * 5 = 317 scans). */
static uint8_t *many_scans_jpeg(size_t *len) {
    static jpeg_scan_info scans[2 + 63 * 5];
    int n = 0;
    scans[n++] = (jpeg_scan_info){1, {0, 0, 0, 0}, 0, 0, 0, 1};
    scans[n++] = (jpeg_scan_info){1, {0, 0, 0, 0}, 0, 0, 1, 0};
    for (int k = 1; k < 64; k++) {
        scans[n++] = (jpeg_scan_info){1, {0, 0, 0, 0}, k, k, 0, 4};
        for (int al = 4; al > 0; al--)
            scans[n++] = (jpeg_scan_info){1, {0, 0, 0, 0}, k, k, al, al - 1};
    }
    uint8_t *pix = smooth_pixels(32, 24, 1);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&c, &out, &outlen);
    c.image_width = 32;
    c.image_height = 24;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    c.scan_info = scans;
    c.num_scans = n;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * 32);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(pix);
    *len = outlen;
    return out;
}

static void jpeg_warning_policy(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    size_t len;
    uint8_t *pix = noise_pixels(48, 32, 3, 4);
    uint8_t *j = enc_jpeg(pix, 48, 32, 3, NULL, &len);
    dec_args da = args_u8(0, 0, 48, 32, 24, 16);
    uint8_t *clean = dec_ok(d, j, len, &da);
    /* junk between the entropy-coded data and EOI: libjpeg warns ("extraneous bytes"), the pixels
     * are intact, so it decodes */
    uint8_t *junk = malloc(len + 5);
    memcpy(junk, j, len - 2);
    memcpy(junk + len - 2, "junk!\xFF\xD9", 7);
    uint8_t *o = dec_ok(d, junk, len + 5, &da);
    assert_memory_equal(o, clean, 24 * 16 * 3);
    free(o);
    /* more than 256 progressive scans: refused before decoding them all */
    size_t mlen;
    uint8_t *many = many_scans_jpeg(&mlen);
    expect_bad(d, "scans.jpg", many, mlen, "progressive scans");
    free(many);
    free(junk);
    free(clean);
    free(j);
    free(pix);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ small and edge cases */

static void one_pixel_images_and_outputs(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    uint8_t px[3] = {200, 40, 90};
    size_t len;
    jpeg_opts jo = {100, 0, 0, 1, 1};
    uint8_t *j = enc_jpeg(px, 1, 1, 3, &jo, &len);
    size_t plen;
    uint8_t *p = enc_png(px, 3, 1, 1, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, &plen);
    for (int crop = 0; crop < 2; crop++)
        for (int dct = 0; dct < 2; dct++) {
            dec_args da = args_u8(0, 0, 1, 1, 224, 224);
            da.crop = crop;
            da.dct = dct;
            uint8_t *oj = dec_ok(d, j, len, &da);
            uint8_t *op = dec_ok(d, p, plen, &da);
            for (int i = 0; i < 224 * 224; i++) {
                assert_memory_equal(op + 3 * i, px, 3);
                assert_memory_equal(oj + 3 * i, oj, 3); /* flat */
            }
            assert_true(abs(oj[0] - 200) <= 3 && abs(oj[1] - 40) <= 3 && abs(oj[2] - 90) <= 3);
            free(oj);
            free(op);
        }
    free(j);
    free(p);
    /* a big image into one pixel: the mean of a flat image */
    uint8_t *flat = malloc(500 * 300 * 3);
    for (int i = 0; i < 500 * 300; i++)
        memcpy(flat + 3 * i, px, 3);
    p = enc_png(flat, 1500, 500, 300, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, &plen);
    dec_args da = args_u8(0, 0, 500, 300, 1, 1);
    uint8_t *o = dec_ok(d, p, plen, &da);
    assert_memory_equal(o, px, 3);
    free(o);
    free(p);
    free(flat);
    sp__decoder_free(d);
}

static void boxes_touching_the_edges(void **state) {
    (void)state;
    sp__decoder *d = new_decoder();
    int w = 250, h = 170;
    uint8_t *pix = noise_pixels(w, h, 3, 9);
    size_t len;
    uint8_t *j = enc_jpeg(pix, w, h, 3, NULL, &len);
    static const double boxes[][4] = {
        {0, 0, 250, 170},         {0, 0, 30, 20},      {220, 150, 30, 20},
        {0, 150, 250, 20},        {240, 0, 10, 170},   {0, 0, 250, 0.5},
        {249.5, 169.5, 0.5, 0.5}, {-10, -5, 270, 180}, /* past the edges (centre crops of odd aspect
                                                          do this) */
    };
    for (size_t b = 0; b < sizeof boxes / sizeof boxes[0]; b++)
        for (int mode = 0; mode < 4; mode++) {
            dec_args da = args_u8(boxes[b][0], boxes[b][1], boxes[b][2], boxes[b][3], 37, 23);
            da.mode = (sp_decode_mode)(mode & 1);
            da.dct = mode >> 1;
            uint8_t *full = dec_ok(d, j, len, &da);
            da.crop = 1;
            uint8_t *crop = dec_ok(d, j, len, &da);
            double mean;
            int m = max_abs_diff(full, crop, 37 * 23 * 3, &mean);
            if (m > 2) fail_msg("box %zu: crop decode differs by %d", b, m);
            free(full);
            free(crop);
        }
    free(j);
    free(pix);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ against Pillow */

static void fixture_path(char *buf, size_t n, const char *name) {
    const char *f = __FILE__, *slash = strrchr(f, '/');
    if (slash)
        snprintf(buf, n, "%.*s/data/load/%s", (int)(slash - f), f, name);
    else
        snprintf(buf, n, "data/load/%s", name);
}

static void resize_matches_pillow(void **state) {
    (void)state;
    char path[4096];
    fixture_path(path, sizeof path, "cases.txt");
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s: missing (run tests/data/load/make_fixtures.py)", path);
    fixture_path(path, sizeof path, "refs.bin");
    uint8_t *refs;
    size_t refs_len;
    assert_int_equal(sp__read_file(path, &refs, &refs_len), SP_OK);
    sp__decoder *d = new_decoder();
    char file[256];
    double x0, y0, x1, y1;
    unsigned ow, oh, flip;
    size_t off;
    int cases = 0;
    while (fscanf(f, "%255s %lf %lf %lf %lf %u %u %u %zu", file, &x0, &y0, &x1, &y1, &ow, &oh,
                  &flip, &off) == 9) {
        fixture_path(path, sizeof path, file);
        uint8_t *img;
        size_t len;
        assert_int_equal(sp__read_file(path, &img, &len), SP_OK);
        assert_true(off + (size_t)ow * oh * 3 <= refs_len);
        int identity = x0 == 0 && y0 == 0 && (unsigned)x1 == ow && (unsigned)y1 == oh;
        for (int isa = 0; isa <= 2; isa++)
            for (int crop = 0; crop < 2; crop++) {
                sp__decode_set_simd(isa);
                dec_args da = args_u8(x0, y0, x1 - x0, y1 - y0, ow, oh);
                da.flip = (int)flip;
                da.crop = crop;
                uint8_t *o = dec_ok(d, img, len, &da);
                double mean;
                int m = max_abs_diff(o, refs + off, (size_t)ow * oh * 3, &mean);
                if (mean > 1.0 || (identity && m != 0))
                    fail_msg("%s box (%g %g %g %g) -> %ux%u: mean abs diff %.3f, max %d", file, x0,
                             y0, x1, y1, ow, oh, mean, m);
                free(o);
            }
        sp__free(img);
        cases++;
    }
    sp__decode_set_simd(2);
    assert_true(cases >= 10);
    fclose(f);
    sp__free(refs);
    sp__decoder_free(d);
}

/* ------------------------------------------------------------ reuse, memory */

static void decoder_reuse_and_memory(void **state) {
    (void)state;
    size_t jl, pl;
    uint8_t *jp = noise_pixels(210, 160, 3, 21);
    uint8_t *j = enc_jpeg(jp, 210, 160, 3, NULL, &jl);
    jpeg_opts prog = {90, 1, 0, 0, 0};
    size_t gl;
    uint8_t *gp = smooth_pixels(300, 200, 1);
    uint8_t *g = enc_jpeg(gp, 300, 200, 1, &prog, &gl);
    uint8_t *p = enc_png(jp, 210 * 3, 210, 160, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, &pl);
    const uint8_t *inputs[] = {j, g, p, (const uint8_t *)"junk", j};
    size_t lens[] = {jl, gl, pl, 4, jl};
    dec_args da = args_u8(20.5, 10.25, 150, 120.5, 96, 64);
    da.crop = 1;
    da.dct = 1;
    da.flip = 1;
    sp__decoder *shared = new_decoder();
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < 5; i++) {
            uint8_t out[96 * 64 * 3];
            sp_status rc = dec(shared, "r", inputs[i], lens[i], &da, out);
            if (i == 3) {
                assert_int_equal(rc, SP_EBADINPUT);
                continue;
            }
            assert_int_equal(rc, SP_OK);
            sp__decoder *fresh = new_decoder();
            uint8_t *o = dec_ok(fresh, inputs[i], lens[i], &da);
            assert_memory_equal(o, out, sizeof out);
            free(o);
            sp__decoder_free(fresh);
        }
    /* steady state: the same work again allocates nothing more */
    size_t before = sp__decoder_mem_usage(shared);
    assert_true(before > 0);
    for (int k = 0; k < 5; k++) {
        uint8_t out[96 * 64 * 3];
        assert_int_equal(dec(shared, "r", j, jl, &da, out), SP_OK);
        assert_int_equal(dec(shared, "r", p, pl, &da, out), SP_OK);
    }
    assert_int_equal(sp__decoder_mem_usage(shared), before);
    sp__decoder_free(shared);
    free(p);
    free(g);
    free(gp);
    free(j);
    free(jp);
}

static void out_of_memory_is_reported(void **state) {
    (void)state;
    size_t jl, pl;
    uint8_t *jp = noise_pixels(120, 90, 3, 2);
    uint8_t *j = enc_jpeg(jp, 120, 90, 3, NULL, &jl);
    uint8_t *p = enc_png(jp, 360, 120, 90, PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, &pl);
    dec_args da = args_u8(3, 4, 100, 80, 50, 40);
    da.crop = 1;
    int failures = 0;
    for (uint64_t n = 1; n < 60; n++) {
        sp__malloc_fail_after(n);
        sp__decoder *d = NULL;
        sp_status rc = sp__decoder_new(&d);
        if (rc != SP_OK) {
            assert_int_equal(rc, SP_ENOMEM);
            assert_null(d);
            failures++;
            continue;
        }
        uint8_t out[50 * 40 * 3];
        rc = dec(d, "m.jpg", j, jl, &da, out);
        assert_true(rc == SP_OK || rc == SP_ENOMEM);
        failures += rc == SP_ENOMEM;
        rc = dec(d, "m.png", p, pl, &da, out);
        if (rc != SP_OK && rc != SP_ENOMEM) fail_msg("n=%d: %d %s", (int)n, rc, sp_errmsg());
        failures += rc == SP_ENOMEM;
        sp__decoder_free(d);
    }
    sp__malloc_fail_after(0);
    assert_true(failures > 5);
    free(p);
    free(j);
    free(jp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aug_matches_torchvision),
        cmocka_unit_test(aug_center_and_none),
        cmocka_unit_test(aug_is_deterministic),
        cmocka_unit_test(crop_decode_matches_full_decode),
        cmocka_unit_test(dct_scaled_close_to_full_scale),
        cmocka_unit_test(flip_mirrors_exactly),
        cmocka_unit_test(layouts_dtypes_and_normalization),
        cmocka_unit_test(simd_levels_are_bit_identical),
        cmocka_unit_test(grey_jpeg_is_rgb_equal),
        cmocka_unit_test(cmyk_jpeg_converts_like_pil),
        cmocka_unit_test(png_variants),
        cmocka_unit_test(bad_inputs_are_named_errors),
        cmocka_unit_test(jpeg_warning_policy),
        cmocka_unit_test(one_pixel_images_and_outputs),
        cmocka_unit_test(boxes_touching_the_edges),
        cmocka_unit_test(resize_matches_pillow),
        cmocka_unit_test(decoder_reuse_and_memory),
        cmocka_unit_test(out_of_memory_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
