/* load_decode.c — the per-sample kernel: decode a JPEG (only the rows and iMCU columns the crop
 * needs, at the smallest DCT scale that still covers the output) or a PNG, resample the crop box
 * to out_w x out_h with an antialiased triangle filter (PIL's BILINEAR with box=), flip, convert
 * and write one sample in the batch's layout and dtype.
 *
 * Resampling follows Pillow >= 7's Image.resize(size, BILINEAR, box): per axis, scale = box / out,
 * support = max(1, scale); output pixel i is centered at box0 + (i + 0.5) * scale and takes the
 * source pixels whose centers lie within the support, weighted by the triangle
 * 1 - |src_center - center| / max(1, scale), normalized. The box may sit at a sub-pixel position
 * and the filter reaches past it into the image, as PIL's does. It runs in fixed point: Q14
 * weights, a vertical pass over the decoded rows (8-bit in, Q7 out, as rows stream out of the
 * decoder into a small ring) then a horizontal pass (Q7 in, 8-bit out). The horizontal weight
 * table is built mirrored when the sample is flipped, so the flip costs nothing. Float outputs are
 * (float)pixel * scale + bias, rounded twice exactly as that C expression (half: then rounded to
 * nearest even), from 256-entry tables or vector code. The inner loops have SSE2 and AVX2 (chosen
 * at run time) versions that give bit-identical results to the portable ones.
 *
 * Per-sample work allocates nothing once the decoder's buffers have grown to the largest sample
 * seen (libjpeg's own per-image pools aside; a PNG also creates its libpng reader). */
#include "load_internal.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define SP_HAVE_SSE2 1
#else
#define SP_HAVE_SSE2 0
#endif
#if SP_HAVE_SSE2 && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define SP_HAVE_AVX2 1 /* compiled with target attributes, used when the CPU has it */
#define SP_AVX2      __attribute__((target("avx2")))
#define SP_AVX2_F16C __attribute__((target("avx2,f16c")))
#else
#define SP_HAVE_AVX2 0
#endif

#define MAX_DIM        32768               /* pixels per side */
#define MAX_DECODED    ((size_t)256 << 20) /* bytes of decoded image */
#define MAX_SCANS      256          /* progressive scans (a DoS guard; real files have ~10) */
#define JPEG_MEM_LIMIT (512L << 20) /* libjpeg's big arrays (progressive coefficients) */
#define CHUNK_ROWS     16           /* rows asked of libjpeg at a time */
#define COEF_BITS      14           /* weights are Q14 */
#define MID_BITS       7            /* the vertical pass leaves Q7 */
#define VSHIFT         (COEF_BITS - MID_BITS) /* 8-bit x Q14 -> Q7 */
#define HSHIFT         (COEF_BITS + MID_BITS) /* Q7 x Q14 -> 8-bit */
#define ROW_PAD        64 /* bytes / elements of slack after rows read as vectors */

enum { ISA_SCALAR = 0, ISA_SSE2 = 1, ISA_AVX2 = 2 };

/* Test hook: caps the instruction set the loops may use (ISA_*); every level gives bit-identical
 * output. Not thread-safe: set it before decoding. */
void sp__decode_set_simd(int level);
static int g_isa_cap = ISA_AVX2;
void sp__decode_set_simd(int level) {
    g_isa_cap = level;
}

static int detect_isa(int *f16c) {
    *f16c = 0;
#if SP_HAVE_AVX2
    if (__builtin_cpu_supports("avx2")) {
        unsigned a, b, c, d;
        *f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        return ISA_AVX2;
    }
#endif
    return SP_HAVE_SSE2 ? ISA_SSE2 : ISA_SCALAR;
}

/* ------------------------------------------------------------ the decoder */

typedef struct jerr_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 64];
} jerr_mgr;

/* One axis of the resampling: output i reads k taps from source start[i] (region-relative after
 * rebase), weights coef[i * kp ...] (kp = k rounded up to even, zero-padded). [lo, hi) is the
 * span of source pixels any output reads, in full-image coordinates. */
typedef struct axis {
    int32_t *start;
    int16_t *coef;
    int32_t *nbuf;
    int32_t *vec; /* AVX2 horizontal: per pixel pair and tap pair, both pixels' weights x 4 */
    size_t cap_start, cap_coef, cap_nbuf, cap_vec;
    int k, kp;
    int lo, hi;
} axis;

struct sp__decoder {
    struct jpeg_decompress_struct cinfo;
    jerr_mgr jerr;
    struct jpeg_progress_mgr progress;
    int have_cinfo;
    int isa_hw, f16c, isa; /* what the CPU has; what this sample uses */

    axis ax, ay;
    double *wtmp;
    size_t cap_wtmp;

    uint8_t *ring; /* decoded rows (JPEG), ring_rows x ring_stride */
    size_t cap_ring;
    size_t ring_stride;
    int ring_rows;
    uint8_t *img; /* a whole decoded PNG */
    size_t cap_img;
    uint8_t **rowp; /* row pointers for libpng */
    size_t cap_rowp;
    int16_t *mid; /* one vertically resampled row, Q7 */
    size_t cap_mid;
    uint8_t *orow; /* one finished row, RGB */
    size_t cap_orow;
    const uint8_t **vrows; /* the vertical pass's source rows */
    size_t cap_vrows;
    uint8_t *rst; /* a JPEG rewritten to start at a restart marker (see restart_seek) */
    size_t cap_rst;

    /* float / half tables, cached while scale and bias stay the same */
    int lut_dtype;
    float lut_scale[3], lut_bias[3];
    float lut32[3][256];
    uint16_t lut16[3][256];

    /* per-sample state */
    const sp__out_spec *spec;
    void *dst;
    int next_y;
    int src_x0;   /* first column of the decoded region, in full (scaled) image coordinates */
    int src_row0; /* full-image row of ring slot 0's sequence (= ay.lo) */
    int from_img; /* rows come from img (PNG) rather than the ring */
    size_t img_stride;
    double t_decode, t_aug, t_mark;
    int timing;
    char pngmsg[200];
    int png_oom;
};

static sp_status grow(void *pp, size_t *cap, size_t need) {
    void **p = pp;
    if (need <= *cap) return SP_OK;
    size_t n = need + need / 4 + 64;
    uint8_t *q = sp__realloc(*p, n);
    if (!q) return SP_ENOMEM;
    memset(q + *cap, 0, n - *cap);
    *p = q;
    *cap = n;
    return SP_OK;
}

static void jerr_exit(j_common_ptr ci) {
    jerr_mgr *e = (jerr_mgr *)ci->err;
    e->pub.format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings that say the pixels were made up (truncation, bad Huffman codes, resyncs) are errors;
 * the ones about metadata or junk between segments are not. Trace messages are ignored. */
static void jerr_emit(j_common_ptr ci, int level) {
    jerr_mgr *e = (jerr_mgr *)ci->err;
    if (level >= 0) return;
    switch (e->pub.msg_code) {
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC:
    case JWRN_BOGUS_PROGRESSION:
        e->pub.num_warnings++;
        return;
    default:
        e->pub.format_message(ci, e->msg);
        longjmp(e->jb, 1);
    }
}

static void jerr_output(j_common_ptr ci) {
    (void)ci; /* never print */
}

static void jprogress(j_common_ptr ci) {
    if (!ci->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)ci;
    if (d->input_scan_number > MAX_SCANS) {
        jerr_mgr *e = (jerr_mgr *)ci->err;
        e->pub.msg_code = 0;
        snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

sp_status sp__decoder_new(sp__decoder **out) {
    *out = NULL;
    sp__decoder *d = sp__calloc(1, sizeof *d);
    if (!d) return sp__fail(SP_ENOMEM, "decoder: out of memory");
    d->cinfo.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jerr_exit;
    d->jerr.pub.emit_message = jerr_emit;
    d->jerr.pub.output_message = jerr_output;
    if (setjmp(d->jerr.jb)) { /* only when libjpeg cannot allocate its pools */
        sp_status rc = sp__fail(SP_ENOMEM, "decoder: libjpeg: %s", d->jerr.msg);
        jpeg_destroy_decompress(&d->cinfo);
        sp__free(d);
        return rc;
    }
    jpeg_create_decompress(&d->cinfo);
    d->have_cinfo = 1;
    d->cinfo.mem->max_memory_to_use = JPEG_MEM_LIMIT;
    d->progress.progress_monitor = jprogress;
    d->cinfo.progress = &d->progress;
    d->lut_dtype = -1;
    d->isa_hw = detect_isa(&d->f16c);
    *out = d;
    return SP_OK;
}

static void axis_free(axis *a) {
    sp__free(a->start);
    sp__free(a->coef);
    sp__free(a->nbuf);
    sp__free(a->vec);
}

void sp__decoder_free(sp__decoder *d) {
    if (!d) return;
    if (d->have_cinfo) jpeg_destroy_decompress(&d->cinfo);
    axis_free(&d->ax);
    axis_free(&d->ay);
    sp__free(d->wtmp);
    sp__free(d->ring);
    sp__free(d->img);
    sp__free(d->rowp);
    sp__free(d->mid);
    sp__free(d->orow);
    sp__free(d->vrows);
    sp__free(d->rst);
    sp__free(d);
}

size_t sp__decoder_mem_usage(const sp__decoder *d) {
    if (!d) return 0;
    return sizeof *d + d->ax.cap_start + d->ax.cap_coef + d->ax.cap_nbuf + d->ax.cap_vec +
           d->ay.cap_start + d->ay.cap_coef + d->ay.cap_nbuf + d->ay.cap_vec + d->cap_wtmp +
           d->cap_ring + d->cap_img + d->cap_rowp + d->cap_mid + d->cap_orow + d->cap_vrows +
           d->cap_rst;
}

/* ------------------------------------------------------------ timing */

static void mark(sp__decoder *d, double *into) {
    if (!d->timing) return;
    double t = sp__now();
    *into += t - d->t_mark;
    d->t_mark = t;
}

/* ------------------------------------------------------------ resampling tables */

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Builds one axis for the box [b0, b1) of a source of in_size pixels resampled to out_size. */
static sp_status axis_build(sp__decoder *d, axis *a, double b0, double b1, int in_size,
                            int out_size, int mirror) {
    double scale = (b1 - b0) / out_size;
    double fscale = scale > 1.0 ? scale : 1.0;
    double support = fscale, inv = 1.0 / fscale;
    if (grow(&a->start, &a->cap_start, (size_t)out_size * sizeof *a->start) ||
        grow(&a->nbuf, &a->cap_nbuf, (size_t)out_size * 2 * sizeof *a->nbuf))
        return SP_ENOMEM;
    /* pass 1: each output's window [xmin, xmin + n) */
    int k = 1;
    for (int i = 0; i < out_size; i++) {
        double c = b0 + (i + 0.5) * scale;
        double lo = c - support + 0.5, hi = c + support + 0.5;
        int xmin = lo <= 0 ? 0 : lo >= in_size ? in_size : (int)lo;
        int xmax = hi <= 0 ? 0 : hi >= in_size ? in_size : (int)hi;
        int n = xmax - xmin;
        if (n < 0) n = 0;
        a->nbuf[2 * i] = xmin;
        a->nbuf[2 * i + 1] = n;
        if (n > k) k = n;
    }
    if (k > in_size) k = in_size; /* n <= in_size always; in_size >= 1 */
    int kp = k + (k & 1);
    if (grow(&a->coef, &a->cap_coef, (size_t)out_size * (size_t)kp * sizeof *a->coef) ||
        grow(&d->wtmp, &d->cap_wtmp, (size_t)k * sizeof *d->wtmp))
        return SP_ENOMEM;
    /* pass 2: weights, placed in a window of exactly k taps that stays inside the source */
    int lo_all = INT_MAX, hi_all = 0;
    for (int i = 0; i < out_size; i++) {
        int xmin = a->nbuf[2 * i], n = a->nbuf[2 * i + 1];
        double c = b0 + (i + 0.5) * scale, sum = 0;
        for (int j = 0; j < n; j++) {
            double w = triangle((j + xmin - c + 0.5) * inv);
            d->wtmp[j] = w;
            sum += w;
        }
        double norm = sum > 0 ? (1 << COEF_BITS) / sum : 0;
        int s = xmin < in_size - k ? xmin : in_size - k;
        int pos = mirror ? out_size - 1 - i : i;
        int16_t *co = a->coef + (size_t)pos * (size_t)kp;
        memset(co, 0, (size_t)kp * sizeof *co);
        if (sum > 0) {
            int total = 0, big = 0;
            for (int j = 0; j < n; j++) {
                int q = (int)(d->wtmp[j] * norm + 0.5);
                co[xmin - s + j] = (int16_t)q;
                total += q;
                if (q > co[xmin - s + big]) big = j;
            }
            /* make the weights sum to exactly 1 so flat areas stay flat */
            co[xmin - s + big] = (int16_t)(co[xmin - s + big] + ((1 << COEF_BITS) - total));
        }
        a->start[pos] = s;
        if (s < lo_all) lo_all = s;
        if (s + k > hi_all) hi_all = s + k;
    }
    a->k = k;
    a->kp = kp;
    a->lo = lo_all;
    a->hi = hi_all;
    return SP_OK;
}

/* ------------------------------------------------------------ the passes */

/* Two adjacent Q14 weights as the int32 that pmaddwd pairs with two int16 values. */
static inline int32_t coef_pair(const int16_t *c) {
    return (int32_t)((uint32_t)(uint16_t)c[0] | ((uint32_t)(uint16_t)c[1] << 16));
}

/* Vertical: out[i] = sum_t rows[t][i] * c[t] over kp taps (rows[] has kp entries), 8-bit in,
 * Q7 out. */
static void vpass_scalar(const uint8_t *const *rows, const int16_t *c, int kp, int n,
                         int16_t *out) {
    for (int i = 0; i < n; i++) {
        int32_t s = 1 << (VSHIFT - 1);
        for (int t = 0; t < kp; t++)
            s += rows[t][i] * c[t];
        out[i] = (int16_t)(s >> VSHIFT);
    }
}

/* Horizontal over RGB Q7 pixels, 8-bit RGB out. */
static void hpass_scalar(const int16_t *src, const axis *a, int out_w, uint8_t *dst) {
    int kp = a->kp;
    for (int x = 0; x < out_w; x++) {
        const int16_t *p = src + 3 * (size_t)a->start[x];
        const int16_t *c = a->coef + (size_t)x * (size_t)kp;
        int32_t r = 1 << (HSHIFT - 1), g = r, b = r;
        for (int t = 0; t < kp; t++) {
            r += p[3 * t] * c[t];
            g += p[3 * t + 1] * c[t];
            b += p[3 * t + 2] * c[t];
        }
        r >>= HSHIFT;
        g >>= HSHIFT;
        b >>= HSHIFT;
        dst[3 * x] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
        dst[3 * x + 1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        dst[3 * x + 2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
    }
}

#if SP_HAVE_SSE2
/* Same arithmetic as vpass_scalar, 16 bytes at a time: may compute (and write) up to 15 elements
 * past n, reading up to 15 bytes past each row; both are padded. */
static void vpass_sse2(const uint8_t *const *rows, const int16_t *c, int kp, int n, int16_t *out) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i rnd = _mm_set1_epi32(1 << (VSHIFT - 1));
    for (int i = 0; i < n; i += 16) {
        __m128i a0 = rnd, a1 = rnd, a2 = rnd, a3 = rnd;
        for (int t = 0; t < kp; t += 2) {
            __m128i cc = _mm_set1_epi32(coef_pair(c + t));
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(rows[t] + i));
            __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(rows[t + 1] + i));
            __m128i lo = _mm_unpacklo_epi8(x, y), hi = _mm_unpackhi_epi8(x, y);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi8(lo, zero), cc));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi8(lo, zero), cc));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi8(hi, zero), cc));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi8(hi, zero), cc));
        }
        a0 = _mm_srai_epi32(a0, VSHIFT);
        a1 = _mm_srai_epi32(a1, VSHIFT);
        a2 = _mm_srai_epi32(a2, VSHIFT);
        a3 = _mm_srai_epi32(a3, VSHIFT);
        _mm_storeu_si128((__m128i *)(void *)(out + i), _mm_packs_epi32(a0, a1));
        _mm_storeu_si128((__m128i *)(void *)(out + i + 8), _mm_packs_epi32(a2, a3));
    }
}

/* Same arithmetic as hpass_scalar. Per tap pair it loads 8 values at pixel t ([R G B R' G' B' ..])
 * and pairs them with the copy shifted by one pixel: [R R' G G' B B' . .] x [c c' ...] in one
 * multiply-add. Reads up to 2 pixels past the window and writes 1 byte past 3 * out_w. */
static void hpass_sse2(const int16_t *src, const axis *a, int out_w, uint8_t *dst) {
    const __m128i rnd = _mm_set1_epi32(1 << (HSHIFT - 1));
    int kp = a->kp;
    for (int x = 0; x < out_w; x++) {
        const int16_t *p = src + 3 * (size_t)a->start[x];
        const int16_t *c = a->coef + (size_t)x * (size_t)kp;
        __m128i acc = rnd;
        for (int t = 0; t < kp; t += 2) {
            __m128i px = _mm_loadu_si128((const __m128i *)(const void *)(p + 3 * t));
            __m128i pr = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 6));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(pr, _mm_set1_epi32(coef_pair(c + t))));
        }
        acc = _mm_srai_epi32(acc, HSHIFT);
        acc = _mm_packs_epi32(acc, acc);
        acc = _mm_packus_epi16(acc, acc);
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        memcpy(dst + 3 * (size_t)x, &v, 4);
    }
}
#endif

#if SP_HAVE_AVX2
/* vpass_sse2 32 bytes at a time (over-reads / over-writes up to 31); kp constant when small. */
SP_AVX2 static inline __attribute__((always_inline)) void
vpass_avx2_k(const uint8_t *const *rows, const int16_t *c, int kp, int n, int16_t *out) {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i rnd = _mm256_set1_epi32(1 << (VSHIFT - 1));
    for (int i = 0; i < n; i += 32) {
        __m256i a0 = rnd, a1 = rnd, a2 = rnd, a3 = rnd;
        for (int t = 0; t < kp; t += 2) {
            __m256i cc = _mm256_set1_epi32(coef_pair(c + t));
            __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(rows[t] + i));
            __m256i y = _mm256_loadu_si256((const __m256i *)(const void *)(rows[t + 1] + i));
            /* per 128-bit lane: lo = elements 0-7 | 16-23, hi = 8-15 | 24-31, interleaved x/y */
            __m256i lo = _mm256_unpacklo_epi8(x, y), hi = _mm256_unpackhi_epi8(x, y);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), cc));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), cc));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), cc));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), cc));
        }
        __m256i p0 =
            _mm256_packs_epi32(_mm256_srai_epi32(a0, VSHIFT), _mm256_srai_epi32(a1, VSHIFT));
        __m256i p1 =
            _mm256_packs_epi32(_mm256_srai_epi32(a2, VSHIFT), _mm256_srai_epi32(a3, VSHIFT));
        /* p0 = 0-7 | 16-23, p1 = 8-15 | 24-31 */
        _mm256_storeu_si256((__m256i *)(void *)(out + i), _mm256_permute2x128_si256(p0, p1, 0x20));
        _mm256_storeu_si256((__m256i *)(void *)(out + i + 16),
                            _mm256_permute2x128_si256(p0, p1, 0x31));
    }
}

SP_AVX2 static void vpass_avx2(const uint8_t *const *rows, const int16_t *c, int kp, int n,
                               int16_t *out) {
    switch (kp) {
    case 2:
        vpass_avx2_k(rows, c, 2, n, out);
        break;
    case 4:
        vpass_avx2_k(rows, c, 4, n, out);
        break;
    case 6:
        vpass_avx2_k(rows, c, 6, n, out);
        break;
    default:
        vpass_avx2_k(rows, c, kp, n, out);
        break;
    }
}

/* The weights of pixels 2g and 2g+1 side by side, one 256-bit vector per tap pair. */
static sp_status hvec_build(axis *a, int out_w) {
    int kh = a->kp / 2, groups = (out_w + 1) / 2;
    if (grow(&a->vec, &a->cap_vec, (size_t)groups * (size_t)kh * 8 * sizeof *a->vec))
        return SP_ENOMEM;
    for (int g = 0; g < groups; g++)
        for (int j = 0; j < kh; j++) {
            int32_t *v = a->vec + ((size_t)g * (size_t)kh + (size_t)j) * 8;
            int32_t p0 = coef_pair(a->coef + (size_t)(2 * g) * (size_t)a->kp + 2 * j);
            int32_t p1 = 2 * g + 1 < out_w
                             ? coef_pair(a->coef + (size_t)(2 * g + 1) * (size_t)a->kp + 2 * j)
                             : 0;
            for (int l = 0; l < 4; l++) {
                v[l] = p0;
                v[4 + l] = p1;
            }
        }
    return SP_OK;
}

/* hpass_sse2 two output pixels at a time, one per 128-bit lane; kh (tap pairs) is a constant in
 * the common cases so the tap loop unrolls. */
SP_AVX2 static inline __attribute__((always_inline)) void hpass_avx2_k(const int16_t *src,
                                                                       const int32_t *start,
                                                                       const int32_t *vec, int kh,
                                                                       int out_w, uint8_t *dst) {
    const __m256i rnd = _mm256_set1_epi32(1 << (HSHIFT - 1));
    int x = 0;
    for (; x + 1 < out_w; x += 2) {
        const int16_t *p0 = src + 3 * (size_t)start[x];
        const int16_t *p1 = src + 3 * (size_t)start[x + 1];
        const int32_t *cv = vec + (size_t)(x / 2) * (size_t)kh * 8;
        __m256i acc = rnd;
        for (int j = 0; j < kh; j++) {
            __m128i l0 = _mm_loadu_si128((const __m128i *)(const void *)(p0 + 6 * j));
            __m128i l1 = _mm_loadu_si128((const __m128i *)(const void *)(p1 + 6 * j));
            __m256i px = _mm256_inserti128_si256(_mm256_castsi128_si256(l0), l1, 1);
            __m256i pr = _mm256_unpacklo_epi16(px, _mm256_srli_si256(px, 6));
            __m256i cc = _mm256_loadu_si256((const __m256i *)(const void *)(cv + 8 * j));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pr, cc));
        }
        acc = _mm256_srai_epi32(acc, HSHIFT);
        acc = _mm256_packs_epi32(acc, acc);
        acc = _mm256_packus_epi16(acc, acc);
        uint32_t v0 = (uint32_t)_mm256_cvtsi256_si32(acc);
        uint32_t v1 = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(acc, 1));
        memcpy(dst + 3 * (size_t)x, &v0, 4);
        memcpy(dst + 3 * (size_t)x + 3, &v1, 4);
    }
    if (x < out_w) {
        const int16_t *p = src + 3 * (size_t)start[x];
        const int32_t *cv = vec + (size_t)(x / 2) * (size_t)kh * 8;
        __m128i acc = _mm_set1_epi32(1 << (HSHIFT - 1));
        for (int j = 0; j < kh; j++) {
            __m128i px = _mm_loadu_si128((const __m128i *)(const void *)(p + 6 * j));
            __m128i pr = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 6));
            __m128i cc = _mm_loadu_si128((const __m128i *)(const void *)(cv + 8 * j));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(pr, cc));
        }
        acc = _mm_srai_epi32(acc, HSHIFT);
        acc = _mm_packs_epi32(acc, acc);
        acc = _mm_packus_epi16(acc, acc);
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        memcpy(dst + 3 * (size_t)x, &v, 4);
    }
}

SP_AVX2 static void hpass_avx2(const int16_t *src, const axis *a, int out_w, uint8_t *dst) {
    const int32_t *start = a->start, *vec = a->vec;
    switch (a->kp / 2) {
    case 1:
        hpass_avx2_k(src, start, vec, 1, out_w, dst);
        break;
    case 2:
        hpass_avx2_k(src, start, vec, 2, out_w, dst);
        break;
    case 3:
        hpass_avx2_k(src, start, vec, 3, out_w, dst);
        break;
    default:
        hpass_avx2_k(src, start, vec, a->kp / 2, out_w, dst);
        break;
    }
}
#endif

/* ------------------------------------------------------------ output */

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* inf, nan (kept quiet) */
        return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0));
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (x < 0x38800000u) {                                   /* below 2^-14: subnormal or zero */
        /* adding 0.5 puts the half's subnormal bits at the bottom of the mantissa, and the
         * hardware's round-to-nearest-even does the rounding */
        float v, m = 0.5f;
        memcpy(&v, &x, 4);
        v += m;
        uint32_t y;
        memcpy(&y, &v, 4);
        return (uint16_t)(sign | (y - 0x3f000000u));
    }
    uint32_t odd = (x >> 13) & 1u;
    x += 0xc8000fffu + odd; /* rebias the exponent (-112 << 23) and round to nearest even */
    return (uint16_t)(sign | (x >> 13));
}

static void lut_prepare(sp__decoder *d, const sp__out_spec *s) {
    if (s->dtype == SP_DTYPE_UINT8) return;
    if (d->lut_dtype == (int)s->dtype && !memcmp(d->lut_scale, s->scale, sizeof s->scale) &&
        !memcmp(d->lut_bias, s->bias, sizeof s->bias))
        return;
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float f = (float)v * s->scale[c] + s->bias[c];
            d->lut32[c][v] = f;
            d->lut16[c][v] = f32_to_f16(f);
        }
    memcpy(d->lut_scale, s->scale, sizeof s->scale);
    memcpy(d->lut_bias, s->bias, sizeof s->bias);
    d->lut_dtype = (int)s->dtype;
}

/* Writes columns [x0, out_w) of finished RGB row y into the sample at dst. */
static void write_row_scalar(const sp__decoder *d, const uint8_t *rgb, size_t y, size_t x0) {
    const sp__out_spec *s = d->spec;
    size_t w = s->out_w, plane = (size_t)s->out_h * w;
    int nchw = s->layout == SP_LAYOUT_NCHW;
    switch (s->dtype) {
    case SP_DTYPE_UINT8: {
        uint8_t *o = (uint8_t *)d->dst;
        if (!nchw) {
            memcpy(o + (y * w + x0) * 3, rgb + x0 * 3, (w - x0) * 3);
        } else {
            uint8_t *r = o + y * w, *g = r + plane, *b = g + plane;
            for (size_t x = x0; x < w; x++) {
                r[x] = rgb[3 * x];
                g[x] = rgb[3 * x + 1];
                b[x] = rgb[3 * x + 2];
            }
        }
        break;
    }
    case SP_DTYPE_FLOAT32: {
        float *o = (float *)d->dst;
        const float *l0 = d->lut32[0], *l1 = d->lut32[1], *l2 = d->lut32[2];
        if (!nchw) {
            o += y * w * 3;
            for (size_t x = x0; x < w; x++) {
                o[3 * x] = l0[rgb[3 * x]];
                o[3 * x + 1] = l1[rgb[3 * x + 1]];
                o[3 * x + 2] = l2[rgb[3 * x + 2]];
            }
        } else {
            float *r = o + y * w, *g = r + plane, *b = g + plane;
            for (size_t x = x0; x < w; x++) {
                r[x] = l0[rgb[3 * x]];
                g[x] = l1[rgb[3 * x + 1]];
                b[x] = l2[rgb[3 * x + 2]];
            }
        }
        break;
    }
    case SP_DTYPE_FLOAT16:
    default: {
        uint16_t *o = (uint16_t *)d->dst;
        const uint16_t *l0 = d->lut16[0], *l1 = d->lut16[1], *l2 = d->lut16[2];
        if (!nchw) {
            o += y * w * 3;
            for (size_t x = x0; x < w; x++) {
                o[3 * x] = l0[rgb[3 * x]];
                o[3 * x + 1] = l1[rgb[3 * x + 1]];
                o[3 * x + 2] = l2[rgb[3 * x + 2]];
            }
        } else {
            uint16_t *r = o + y * w, *g = r + plane, *b = g + plane;
            for (size_t x = x0; x < w; x++) {
                r[x] = l0[rgb[3 * x]];
                g[x] = l1[rgb[3 * x + 1]];
                b[x] = l2[rgb[3 * x + 2]];
            }
        }
        break;
    }
    }
}

#if SP_HAVE_AVX2
/* pshufb masks that gather R, G and B of 8 pixels from bytes 0-15 (a) and bytes 8-23 (b) */
static const int8_t deint_a[3][16] = {
    {0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
    {2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}};
static const int8_t deint_b[3][16] = {
    {-1, -1, -1, -1, -1, -1, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, -1, -1, -1, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1},
    {-1, -1, -1, -1, -1, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1}};

/* The R, G, B bytes of the 8 pixels at p, each in the low half of a vector. */
SP_AVX2 static inline void deint8(const uint8_t *p, __m128i ch[3]) {
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 8));
    for (int c = 0; c < 3; c++)
        ch[c] = _mm_or_si128(
            _mm_shuffle_epi8(a, _mm_loadu_si128((const __m128i *)(const void *)deint_a[c])),
            _mm_shuffle_epi8(b, _mm_loadu_si128((const __m128i *)(const void *)deint_b[c])));
}

/* 8 bytes -> 8 floats v * scale + bias (the same two roundings as the scalar table) */
SP_AVX2 static inline __m256 to_f32(__m128i v, __m256 scale, __m256 bias) {
    __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
    return _mm256_add_ps(_mm256_mul_ps(f, scale), bias);
}

/* Vector writers: return how many leading columns they wrote (the scalar writer does the rest). */
SP_AVX2 static size_t write_row_avx2(const sp__decoder *d, const uint8_t *rgb, size_t y) {
    const sp__out_spec *s = d->spec;
    size_t w = s->out_w, plane = (size_t)s->out_h * w, x = 0;
    __m128i ch[3];
    if (s->layout == SP_LAYOUT_NCHW && s->dtype == SP_DTYPE_UINT8) {
        uint8_t *o = (uint8_t *)d->dst + y * w;
        for (; x + 8 <= w; x += 8) {
            deint8(rgb + 3 * x, ch);
            for (int c = 0; c < 3; c++)
                _mm_storel_epi64((__m128i *)(void *)(o + (size_t)c * plane + x), ch[c]);
        }
    } else if (s->layout == SP_LAYOUT_NCHW && s->dtype == SP_DTYPE_FLOAT32) {
        float *o = (float *)d->dst + y * w;
        __m256 sc[3], bi[3];
        for (int c = 0; c < 3; c++) {
            sc[c] = _mm256_set1_ps(s->scale[c]);
            bi[c] = _mm256_set1_ps(s->bias[c]);
        }
        for (; x + 8 <= w; x += 8) {
            deint8(rgb + 3 * x, ch);
            for (int c = 0; c < 3; c++)
                _mm256_storeu_ps(o + (size_t)c * plane + x, to_f32(ch[c], sc[c], bi[c]));
        }
    } else if (s->layout == SP_LAYOUT_NHWC && s->dtype == SP_DTYPE_FLOAT32) {
        float *o = (float *)d->dst + y * w * 3;
        const float *k = s->scale, *b = s->bias;
        __m256 sc[3] = {_mm256_setr_ps(k[0], k[1], k[2], k[0], k[1], k[2], k[0], k[1]),
                        _mm256_setr_ps(k[2], k[0], k[1], k[2], k[0], k[1], k[2], k[0]),
                        _mm256_setr_ps(k[1], k[2], k[0], k[1], k[2], k[0], k[1], k[2])};
        __m256 bi[3] = {_mm256_setr_ps(b[0], b[1], b[2], b[0], b[1], b[2], b[0], b[1]),
                        _mm256_setr_ps(b[2], b[0], b[1], b[2], b[0], b[1], b[2], b[0]),
                        _mm256_setr_ps(b[1], b[2], b[0], b[1], b[2], b[0], b[1], b[2])};
        for (; x + 8 <= w; x += 8)
            for (int c = 0; c < 3; c++) {
                size_t i = 3 * x + 8 * (size_t)c;
                __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)(rgb + i));
                _mm256_storeu_ps(o + i, to_f32(v, sc[c], bi[c]));
            }
    }
    return x;
}

#define F16_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

SP_AVX2_F16C static size_t write_row_f16c(const sp__decoder *d, const uint8_t *rgb, size_t y) {
    const sp__out_spec *s = d->spec;
    size_t w = s->out_w, plane = (size_t)s->out_h * w, x = 0;
    const float *k = s->scale, *b = s->bias;
    if (s->layout == SP_LAYOUT_NCHW) {
        uint16_t *o = (uint16_t *)d->dst + y * w;
        __m256 sc[3], bi[3];
        __m128i ch[3];
        for (int c = 0; c < 3; c++) {
            sc[c] = _mm256_set1_ps(k[c]);
            bi[c] = _mm256_set1_ps(b[c]);
        }
        for (; x + 8 <= w; x += 8) {
            deint8(rgb + 3 * x, ch);
            for (int c = 0; c < 3; c++)
                _mm_storeu_si128((__m128i *)(void *)(o + (size_t)c * plane + x),
                                 _mm256_cvtps_ph(to_f32(ch[c], sc[c], bi[c]), F16_RNE));
        }
    } else {
        uint16_t *o = (uint16_t *)d->dst + y * w * 3;
        __m256 sc[3] = {_mm256_setr_ps(k[0], k[1], k[2], k[0], k[1], k[2], k[0], k[1]),
                        _mm256_setr_ps(k[2], k[0], k[1], k[2], k[0], k[1], k[2], k[0]),
                        _mm256_setr_ps(k[1], k[2], k[0], k[1], k[2], k[0], k[1], k[2])};
        __m256 bi[3] = {_mm256_setr_ps(b[0], b[1], b[2], b[0], b[1], b[2], b[0], b[1]),
                        _mm256_setr_ps(b[2], b[0], b[1], b[2], b[0], b[1], b[2], b[0]),
                        _mm256_setr_ps(b[1], b[2], b[0], b[1], b[2], b[0], b[1], b[2])};
        for (; x + 8 <= w; x += 8)
            for (int c = 0; c < 3; c++) {
                size_t i = 3 * x + 8 * (size_t)c;
                __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)(rgb + i));
                _mm_storeu_si128((__m128i *)(void *)(o + i),
                                 _mm256_cvtps_ph(to_f32(v, sc[c], bi[c]), F16_RNE));
            }
    }
    return x;
}
#endif

static void write_row(const sp__decoder *d, const uint8_t *rgb, size_t y) {
    size_t x0 = 0;
#if SP_HAVE_AVX2
    if (d->isa >= ISA_AVX2) {
        if (d->spec->dtype != SP_DTYPE_FLOAT16)
            x0 = write_row_avx2(d, rgb, y);
        else if (d->f16c)
            x0 = write_row_f16c(d, rgb, y);
    }
#endif
    write_row_scalar(d, rgb, y, x0);
}

/* The address of full-image row r's first used column. */
static const uint8_t *src_row(const sp__decoder *d, int r) {
    size_t col = (size_t)(d->ax.lo - d->src_x0) * 3;
    if (d->from_img) return d->img + (size_t)r * d->img_stride + col;
    return d->ring + (size_t)((r - d->src_row0) % d->ring_rows) * d->ring_stride + col;
}

/* Emits every output row whose source rows are all below `avail` (full-image row number). */
static void emit_rows(sp__decoder *d, int avail) {
    const axis *ay = &d->ay, *ax = &d->ax;
    int out_h = (int)d->spec->out_h, out_w = (int)d->spec->out_w;
    int n = (ax->hi - ax->lo) * 3;
    const uint8_t **rp = d->vrows;
    while (d->next_y < out_h) {
        int y = d->next_y;
        int s = ay->start[y];
        if (s + ay->k > avail) break;
        const int16_t *c = ay->coef + (size_t)y * (size_t)ay->kp;
        for (int t = 0; t < ay->kp; t++)
            rp[t] = src_row(d, s + (t < ay->k ? t : ay->k - 1));
        switch (d->isa) {
#if SP_HAVE_AVX2
        case ISA_AVX2:
            vpass_avx2(rp, c, ay->kp, n, d->mid);
            hpass_avx2(d->mid, ax, out_w, d->orow);
            break;
#endif
#if SP_HAVE_SSE2
        case ISA_SSE2:
            vpass_sse2(rp, c, ay->kp, n, d->mid);
            hpass_sse2(d->mid, ax, out_w, d->orow);
            break;
#endif
        default:
            vpass_scalar(rp, c, ay->kp, n, d->mid);
            hpass_scalar(d->mid, ax, out_w, d->orow);
            break;
        }
        write_row(d, d->orow, (size_t)y);
        d->next_y++;
    }
}

/* ------------------------------------------------------------ per-sample setup */

/* Builds both axes for a source of in_w x in_h pixels at the decode scale f (the box is given in
 * full-size pixels) and sizes the row buffers. */
static sp_status setup(sp__decoder *d, const char *name, const sp__aug *aug, double f, int in_w,
                       int in_h) {
    const sp__out_spec *s = d->spec;
    /* a box far outside the image only yields black; keep the numbers small */
    double x0 = fmin(fmax(aug->x * f, -8.0 * in_w), 9.0 * in_w);
    double x1 = fmin(fmax((aug->x + aug->w) * f, -8.0 * in_w), 9.0 * in_w);
    double y0 = fmin(fmax(aug->y * f, -8.0 * in_h), 9.0 * in_h);
    double y1 = fmin(fmax((aug->y + aug->h) * f, -8.0 * in_h), 9.0 * in_h);
    if (axis_build(d, &d->ax, x0, x1, in_w, (int)s->out_w, aug->flip) ||
        axis_build(d, &d->ay, y0, y1, in_h, (int)s->out_h, 0))
        return sp__fail(SP_ENOMEM, "%s: out of memory for resampling tables", name);
    /* the vertical pass leaves columns [ax.lo, ax.hi) only: make the horizontal taps relative */
    for (uint32_t i = 0; i < s->out_w; i++)
        d->ax.start[i] -= d->ax.lo;
#if SP_HAVE_AVX2
    if (d->isa == ISA_AVX2 && hvec_build(&d->ax, (int)s->out_w))
        return sp__fail(SP_ENOMEM, "%s: out of memory for resampling tables", name);
#endif
    size_t used = (size_t)(d->ax.hi - d->ax.lo) * 3;
    if (grow(&d->mid, &d->cap_mid, (used + ROW_PAD) * sizeof *d->mid) ||
        grow(&d->orow, &d->cap_orow, (size_t)s->out_w * 3 + ROW_PAD) ||
        grow(&d->vrows, &d->cap_vrows, (size_t)d->ay.kp * sizeof *d->vrows))
        return sp__fail(SP_ENOMEM, "%s: out of memory for row buffers", name);
    d->next_y = 0;
    return SP_OK;
}

/* ------------------------------------------------------------ JPEG */

static int jpeg_has_eoi(const uint8_t *p, size_t n) {
    while (n > 2 && (p[n - 1] == 0 || p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    return n >= 4 && p[n - 2] == 0xFF && p[n - 1] == 0xD9;
}

/* In place, 4 bytes -> 3 per pixel, as PIL converts: Adobe (inverted) CMYK always, then
 * R = nk - nk * C / 255 with nk = 255 - K. */
static void cmyk_to_rgb(uint8_t *row, size_t w) {
    for (size_t x = 0; x < w; x++) {
        int c = 255 - row[4 * x], m = 255 - row[4 * x + 1], y = 255 - row[4 * x + 2];
        int nk = row[4 * x + 3];
        int t;
        t = c * nk + 128;
        row[3 * x] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
        t = m * nk + 128;
        row[3 * x + 1] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
        t = y * nk + 128;
        row[3 * x + 2] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
    }
}

static uint8_t *ring_slot(const sp__decoder *d, int r) {
    int i = r >= d->src_row0 ? (r - d->src_row0) % d->ring_rows : r % d->ring_rows;
    return d->ring + (size_t)i * d->ring_stride;
}

/* ------------------------------------------------------------ restart-marker seek */

/* Samples whose entropy decoding started at a restart marker (test and benchmark counter). */
extern unsigned long sp__decode_restart_hits;
unsigned long sp__decode_restart_hits;

/* Output rows decoded above the first row the crop reads: the fancy upsamplers take one chroma
 * row of context from above, which an image starting at the crop would replicate instead. */
#define RST_MARGIN 2

static unsigned be16(const uint8_t *p) {
    return (unsigned)p[0] << 8 | p[1];
}

/* When the JPEG in data[0..len) (its header read into ci) is baseline with a restart marker after
 * every MCU row (restart interval = MCUs per row, as `pack --restart-markers` writes) and output
 * row `want` (at scale num/8) lies at or below MCU row 1, builds in d->rst (*out_len bytes) a JPEG
 * of the image from MCU row r on, r as large as possible with its first row <= want: the original
 * headers with the SOF height reduced by r MCU rows, then the entropy-coded data after the r-th
 * restart marker with the markers that follow renumbered from RST0. DC predictors reset at every
 * restart, so it decodes to exactly the original's rows below. Returns the number of output rows
 * it drops from the top, or 0 (decode the original) when anything does not fit. */
static int restart_seek(sp__decoder *d, j_decompress_ptr ci, const uint8_t *data, size_t len,
                        unsigned num, int want, size_t *out_len) {
    if (want <= 0 || ci->progressive_mode || ci->arith_code || ci->restart_interval == 0 ||
        ci->data_precision != 8 || ci->comps_in_scan != ci->num_components)
        return 0;
    int hmax = 1, vmax = 1;
    for (int c = 0; c < ci->num_components; c++) {
        int h = ci->comp_info[c].h_samp_factor, v = ci->comp_info[c].v_samp_factor;
        if (h < 1 || h > 2 || v < 1 || v > 2) return 0;
        if (h > hmax) hmax = h;
        if (v > vmax) vmax = v;
    }
    if (ci->num_components == 1 && (hmax != 1 || vmax != 1)) return 0;
    /* libjpeg-turbo 2.1's jpeg_skip_scanlines leaves the merged upsampler (fast mode, h2v1 /
     * h2v2) in a state that depends on where decoding started: the rows would differ slightly
     * from a decode from the top, so keep the original path there */
    if (!ci->do_fancy_upsampling && ci->num_components == 3 && hmax == 2) return 0;
    int mcu_w = 8 * hmax, mcu_h = 8 * vmax; /* one component: one 8x8 block */
    if (ci->restart_interval != (ci->image_width + (unsigned)mcu_w - 1) / (unsigned)mcu_w) return 0;
    if (num < 1 || num > 8 || (mcu_h * (int)num) % 8) return 0;
    int mcu_out = mcu_h * (int)num / 8;
    int r = want / mcu_out;
    if (r <= 0 || (unsigned)r >= (ci->image_height + (unsigned)mcu_h - 1) / (unsigned)mcu_h)
        return 0;

    /* the headers: where SOF's height is, where the entropy-coded data starts */
    size_t i = 2, sof = 0, sos_end = 0;
    while (!sos_end) {
        if (i + 4 > len || data[i] != 0xFF) return 0;
        unsigned m = data[i + 1];
        if (m == 0xFF) {
            i++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD9)) return 0; /* no standalone markers here */
        size_t seg = be16(data + i + 2);
        if (seg < 2 || seg > len - i - 2) return 0;
        if (m == 0xC0 || m == 0xC1) {
            if (sof || seg < 8) return 0;
            sof = i;
        } else if (m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            return 0; /* progressive, lossless, arithmetic */
        }
        if (m == 0xDA) sos_end = i + 2 + seg;
        i += 2 + seg;
    }
    if (!sof || be16(data + sof + 5) != ci->image_height) return 0;

    /* the r-th restart marker (RST0..7 in sequence; 0xFF00 is stuffing, 0xFFFF fill) */
    size_t p = sos_end, start = 0;
    unsigned k = 0;
    while (p + 1 < len) {
        const uint8_t *f = memchr(data + p, 0xFF, len - p - 1);
        if (!f) return 0;
        p = (size_t)(f - data);
        unsigned b = data[p + 1];
        if (b == 0x00) {
            p += 2;
        } else if (b == 0xFF) {
            p += 1;
        } else if (b == 0xD0 + (k & 7)) {
            p += 2;
            if (++k == (unsigned)r) {
                start = p;
                break;
            }
        } else {
            return 0; /* another marker, or one out of sequence */
        }
    }
    if (!start) return 0;

    size_t n = sos_end + (len - start);
    if (grow(&d->rst, &d->cap_rst, n)) return 0; /* the original still decodes */
    uint8_t *q = d->rst;
    memcpy(q, data, sos_end);
    unsigned h = ci->image_height - (unsigned)r * (unsigned)mcu_h;
    q[sof + 5] = (uint8_t)(h >> 8);
    q[sof + 6] = (uint8_t)(h & 0xFF);
    memcpy(q + sos_end, data + start, len - start);
    for (p = sos_end, k = 0; p + 1 < n;) {
        uint8_t *f = memchr(q + p, 0xFF, n - p - 1);
        if (!f) break;
        p = (size_t)(f - q);
        unsigned b = q[p + 1];
        if (b == 0x00) {
            p += 2;
        } else if (b == 0xFF) {
            p += 1;
        } else if (b >= 0xD0 && b <= 0xD7) {
            q[p + 1] = (uint8_t)(0xD0 + (k++ & 7));
            p += 2;
        } else {
            break; /* EOI: the rest is copied as it is */
        }
    }
    *out_len = n;
    return r * mcu_out;
}

/* Sets the decode parameters of the header read into ci and computes the output size; returns
 * the DCT scale's numerator (of 8). */
static unsigned jpeg_params(sp__decoder *d, const sp__aug *aug, int cmyk) {
    j_decompress_ptr ci = &d->cinfo;
    const sp__out_spec *s = d->spec;
    ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    if (s->decode == SP_DECODE_FAST) {
        /* Fast IDCT only. Fancy upsampling stays on: without it libjpeg-turbo 2.1 uses its
         * merged upsampler, whose rows after jpeg_skip_scanlines depend on what the decoder
         * decoded before, and output must never depend on thread count or history. */
        ci->dct_method = JDCT_IFAST;
        ci->do_fancy_upsampling = TRUE;
    } else {
        ci->dct_method = JDCT_ISLOW;
        ci->do_fancy_upsampling = TRUE;
    }
    unsigned num = 8;
    if (s->dct_scale)
        for (num = 1; num < 8; num *= 2)
            if (aug->w * num / 8.0 >= s->out_w && aug->h * num / 8.0 >= s->out_h) break;
    ci->scale_num = num;
    ci->scale_denom = 8;
    jpeg_calc_output_dimensions(ci);
    return num;
}

static sp_status jpeg_body(sp__decoder *d, const char *name, const uint8_t *data, size_t len,
                           const sp__aug *aug) {
    j_decompress_ptr ci = &d->cinfo;
    const sp__out_spec *s = d->spec;
    jpeg_mem_src(ci, data, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    if (ci->image_width > MAX_DIM || ci->image_height > MAX_DIM)
        return sp__fail(SP_EBADINPUT, "%s: JPEG of %ux%u pixels is too large (max %d per side)",
                        name, ci->image_width, ci->image_height, MAX_DIM);
    int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    size_t px = cmyk ? 4 : 3;
    if ((size_t)ci->image_width * ci->image_height * px > MAX_DECODED)
        return sp__fail(SP_EBADINPUT,
                        "%s: JPEG of %ux%u pixels is too large (over %zu MiB decoded)", name,
                        ci->image_width, ci->image_height, MAX_DECODED >> 20);
    unsigned num = jpeg_params(d, aug, cmyk);
    JDIMENSION full_w = ci->output_width, full_h = ci->output_height;
    SP_TRY(setup(d, name, aug, num / 8.0, (int)full_w, (int)full_h));

    /* rows above the crop: start entropy decoding at a restart marker when the file allows */
    int roff = 0;
    if (s->crop_decode && d->ay.lo > RST_MARGIN) {
        size_t n = 0;
        roff = restart_seek(d, ci, data, len, num, d->ay.lo - RST_MARGIN, &n);
        if (roff > 0) {
            jpeg_abort_decompress(ci);
            jpeg_mem_src(ci, d->rst, (unsigned long)n);
            jpeg_read_header(ci, TRUE);
            jpeg_params(d, aug, cmyk);
            if (ci->output_width != full_w || ci->output_height + (JDIMENSION)roff != full_h ||
                ci->scale_num != num) {
                jpeg_abort_decompress(ci); /* cannot happen; decode the original */
                jpeg_mem_src(ci, data, (unsigned long)len);
                jpeg_read_header(ci, TRUE);
                jpeg_params(d, aug, cmyk);
                roff = 0;
            } else {
                __atomic_fetch_add(&sp__decode_restart_hits, 1, __ATOMIC_RELAXED);
            }
        }
    }
    jpeg_start_decompress(ci);
    mark(d, &d->t_decode);

    JDIMENSION xoff = 0, width = ci->output_width;
    if (s->crop_decode) {
        /* 2 columns of margin: the fancy upsampler treats the region's edges as image edges */
        int a = d->ax.lo - 2, b = d->ax.hi + 2;
        if (a < 0) a = 0;
        if (b > (int)ci->output_width) b = (int)ci->output_width;
        xoff = (JDIMENSION)a;
        width = (JDIMENSION)(b - a);
        if (width < ci->output_width) jpeg_crop_scanline(ci, &xoff, &width);
        if ((int)xoff > d->ax.lo || (int)(xoff + width) < d->ax.hi)
            return sp__fail(SP_EINTERNAL, "%s: JPEG crop [%u, %u) misses columns [%d, %d)", name,
                            xoff, xoff + width, d->ax.lo, d->ax.hi);
    }
    d->src_x0 = (int)xoff;
    d->src_row0 = d->ay.lo;
    d->from_img = 0;
    d->ring_stride = ((size_t)width * px + ROW_PAD + 15) & ~(size_t)15;
    d->ring_rows = d->ay.k + CHUNK_ROWS;
    if (grow(&d->ring, &d->cap_ring, (size_t)d->ring_rows * d->ring_stride))
        return sp__fail(SP_ENOMEM, "%s: out of memory for decoded rows", name);
    mark(d, &d->t_aug);

    /* rows in full-image numbering; libjpeg's scanline s is full-image row s + roff */
    int lo = d->ay.lo, hi = d->ay.hi;
    int end = s->crop_decode ? hi : (int)full_h;
    if (s->crop_decode && lo > roff) {
        JDIMENSION skip = (JDIMENSION)(lo - roff);
        JDIMENSION skipped = jpeg_skip_scanlines(ci, skip);
        if (skipped != skip || ci->output_scanline != skip)
            return sp__fail(SP_EINTERNAL, "%s: JPEG skipped %u rows of %u", name, skipped, skip);
    }
    JSAMPROW rows[CHUNK_ROWS];
    while ((int)ci->output_scanline + roff < end) {
        int r0 = (int)ci->output_scanline + roff;
        int want = end - r0 < CHUNK_ROWS ? end - r0 : CHUNK_ROWS;
        for (int i = 0; i < want; i++)
            rows[i] = ring_slot(d, r0 + i);
        int got = 0;
        while (got < want) {
            JDIMENSION n = jpeg_read_scanlines(ci, rows + got, (JDIMENSION)(want - got));
            if (n == 0) return sp__fail(SP_EBADINPUT, "%s: bad JPEG: no more rows", name);
            got += (int)n;
        }
        mark(d, &d->t_decode);
        int a = r0 > lo ? r0 : lo, b = r0 + got < hi ? r0 + got : hi;
        if (a < b) {
            if (cmyk)
                for (int r = a; r < b; r++)
                    cmyk_to_rgb(ring_slot(d, r), width);
            emit_rows(d, b);
        }
        mark(d, &d->t_aug);
    }
    if (s->crop_decode)
        jpeg_abort_decompress(ci);
    else
        jpeg_finish_decompress(ci);
    mark(d, &d->t_decode);
    return SP_OK;
}

static sp_status decode_jpeg(sp__decoder *d, const char *name, const uint8_t *data, size_t len,
                             const sp__aug *aug) {
    if (!jpeg_has_eoi(data, len))
        return sp__fail(SP_EBADINPUT, "%s: truncated JPEG (no end-of-image marker)", name);
    if (setjmp(d->jerr.jb)) {
        jpeg_abort_decompress(&d->cinfo);
        if (d->jerr.pub.msg_code == JERR_OUT_OF_MEMORY)
            return sp__fail(SP_ENOMEM, "%s: out of memory decoding a JPEG", name);
        if (d->jerr.pub.msg_code == JERR_NO_BACKING_STORE)
            return sp__fail(SP_EBADINPUT, "%s: JPEG needs more than %ld MiB to decode", name,
                            JPEG_MEM_LIMIT >> 20);
        return sp__fail(SP_EBADINPUT, "%s: bad JPEG: %s", name, d->jerr.msg);
    }
    sp_status rc = jpeg_body(d, name, data, len, aug);
    if (rc != SP_OK) jpeg_abort_decompress(&d->cinfo);
    return rc;
}

/* ------------------------------------------------------------ PNG */

typedef struct png_src {
    const uint8_t *p;
    size_t n, off;
} png_src;

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->n - s->off) png_error(png, "truncated PNG data");
    memcpy(out, s->p + s->off, n);
    s->off += n;
}

static void png_err_cb(png_structp png, png_const_charp msg) {
    sp__decoder *d = png_get_error_ptr(png);
    snprintf(d->pngmsg, sizeof d->pngmsg, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void png_warn_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static png_voidp png_malloc_cb(png_structp png, png_alloc_size_t n) {
    void *p = sp__malloc(n);
    if (!p) ((sp__decoder *)png_get_mem_ptr(png))->png_oom = 1;
    return p;
}

static void png_free_cb(png_structp png, png_voidp p) {
    (void)png;
    sp__free(p);
}

static sp_status png_body(sp__decoder *d, const char *name, png_structp png, png_infop info,
                          png_src *src, const sp__aug *aug) {
    png_set_read_fn(png, src, png_read_cb);
    png_set_user_limits(png, MAX_DIM, MAX_DIM);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if ((size_t)w * h * 3 > MAX_DECODED)
        return sp__fail(SP_EBADINPUT, "%s: PNG of %ux%u pixels is too large (over %zu MiB decoded)",
                        name, (unsigned)w, (unsigned)h, MAX_DECODED >> 20);
    if (depth == 16) png_set_strip_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_bit_depth(png, info) != 8 || png_get_channels(png, info) != 3)
        return sp__fail(SP_EBADINPUT, "%s: PNG of color type %d, depth %d is not supported", name,
                        ctype, depth);
    size_t stride = png_get_rowbytes(png, info);
    if (stride < (size_t)w * 3)
        return sp__fail(SP_EINTERNAL, "%s: PNG rows of %zu bytes", name, stride);
    if (grow(&d->img, &d->cap_img, stride * h + ROW_PAD) ||
        grow(&d->rowp, &d->cap_rowp, (size_t)h * sizeof *d->rowp))
        return sp__fail(SP_ENOMEM, "%s: out of memory for a %ux%u PNG", name, (unsigned)w,
                        (unsigned)h);
    for (size_t r = 0; r < h; r++)
        d->rowp[r] = d->img + r * stride;
    png_read_image(png, d->rowp);
    mark(d, &d->t_decode);
    d->from_img = 1;
    d->img_stride = stride;
    d->src_x0 = 0;
    d->src_row0 = 0;
    SP_TRY(setup(d, name, aug, 1.0, (int)w, (int)h));
    emit_rows(d, (int)h);
    mark(d, &d->t_aug);
    return SP_OK;
}

static sp_status decode_png(sp__decoder *d, const char *name, const uint8_t *data, size_t len,
                            const sp__aug *aug) {
    png_src src = {data, len, 0};
    d->pngmsg[0] = '\0';
    d->png_oom = 0;
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, d, png_err_cb, png_warn_cb, d,
                                               png_malloc_cb, png_free_cb);
    if (!png) return sp__fail(SP_ENOMEM, "%s: out of memory for a PNG reader", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return sp__fail(SP_ENOMEM, "%s: out of memory for a PNG reader", name);
    }
    sp_status rc;
    if (setjmp(png_jmpbuf(png)))
        rc = d->png_oom ? sp__fail(SP_ENOMEM, "%s: out of memory decoding a PNG", name)
                        : sp__fail(SP_EBADINPUT, "%s: bad PNG: %s", name, d->pngmsg);
    else
        rc = png_body(d, name, png, info, &src, aug);
    png_destroy_read_struct(&png, &info, NULL);
    return rc;
}

/* ------------------------------------------------------------ entry */

sp_status sp__decode_sample(sp__decoder *d, const char *name, const uint8_t *data, size_t len,
                            const sp__aug *aug, const sp__out_spec *spec, void *dst,
                            sp__stage_times *times) {
    if (!name) name = "image";
    if (times) times->decode_s = times->augment_s = 0;
    if (!d || !aug || !spec || !dst || (!data && len))
        return sp__fail(SP_EINVAL, "%s: sp__decode_sample: NULL argument", name);
    if (spec->out_w == 0 || spec->out_h == 0 || spec->out_w > MAX_DIM || spec->out_h > MAX_DIM)
        return sp__fail(SP_EINVAL, "%s: output size %ux%u out of range", name, spec->out_w,
                        spec->out_h);
    if (!isfinite(aug->x) || !isfinite(aug->y) || !isfinite(aug->w) || !isfinite(aug->h) ||
        !(aug->w > 0) || !(aug->h > 0))
        return sp__fail(SP_EINVAL, "%s: bad crop box (%g, %g, %g, %g)", name, aug->x, aug->y,
                        aug->w, aug->h);
    if (len == 0) return sp__fail(SP_EBADINPUT, "%s: empty file (0 bytes)", name);
    d->spec = spec;
    d->dst = dst;
    d->next_y = 0;
    d->t_decode = d->t_aug = 0;
    d->timing = times != NULL;
    d->isa = d->isa_hw < g_isa_cap ? d->isa_hw : g_isa_cap;
    if (d->timing) d->t_mark = sp__now();
    lut_prepare(d, spec);
    mark(d, &d->t_aug);
    sp_status rc;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        rc = decode_jpeg(d, name, data, len, aug);
    else if (len >= 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8))
        rc = decode_png(d, name, data, len, aug);
    else
        rc = sp__fail(SP_EBADINPUT, "%s: not a JPEG or PNG file (starts with %02x %02x %02x)", name,
                      data[0], len > 1 ? data[1] : 0, len > 2 ? data[2] : 0);
    if (rc == SP_OK && d->next_y != (int)spec->out_h)
        rc = sp__fail(SP_EINTERNAL, "%s: wrote %d of %u output rows", name, d->next_y, spec->out_h);
    if (times) {
        times->decode_s = d->t_decode;
        times->augment_s = d->t_aug;
    }
    d->spec = NULL;
    d->dst = NULL;
    return rc;
}
