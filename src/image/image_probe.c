/* image_probe.c — JPEG and PNG header parsing (by hand: a walk over markers / chunks,
 * bounds-checked at every step) and full-decode checks (libjpeg-turbo, libpng). */
#include "core_internal.h"
#include "softpipe/image.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <string.h>

static sp_status probe_jpeg(const char *name, const uint8_t *d, size_t n, sp_image_info *info) {
    /* Truncation: the last marker must be EOI (FF D9), allowing trailing zero/space padding. */
    size_t end = n;
    while (end > 2 &&
           (d[end - 1] == 0 || d[end - 1] == ' ' || d[end - 1] == '\n' || d[end - 1] == '\r'))
        end--;
    if (end < 4 || d[end - 2] != 0xFF || d[end - 1] != 0xD9)
        return sp__fail(SP_EBADINPUT, "%s: truncated JPEG (no end-of-image marker)", name);
    size_t p = 2;
    for (;;) {
        while (p < n && d[p] != 0xFF)
            p++; /* tolerate junk between segments, as decoders do */
        while (p < n && d[p] == 0xFF)
            p++; /* fill bytes */
        if (p >= n) break;
        uint8_t m = d[p++];
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) continue; /* no length */
        if (m == 0xD9 || m == 0xDA) break; /* image data starts before any frame header */
        if (p + 2 > n) break;
        size_t seglen = ((size_t)d[p] << 8) | d[p + 1];
        if (seglen < 2 || p + seglen > n)
            return sp__fail(SP_EBADINPUT,
                            "%s: corrupt JPEG (segment at offset %zu overruns the file)", name,
                            p - 2);
        int sof = (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC);
        if (sof) {
            if (seglen < 8)
                return sp__fail(SP_EBADINPUT, "%s: corrupt JPEG (short frame header)", name);
            const uint8_t *s = d + p + 2;
            int32_t h = (s[1] << 8) | s[2], w = (s[3] << 8) | s[4], nc = s[5];
            if (w == 0 || h == 0 || nc == 0 || seglen < 8 + 3 * (size_t)nc)
                return sp__fail(SP_EBADINPUT, "%s: corrupt JPEG (frame %dx%d with %d components)",
                                name, w, h, nc);
            info->kind = SP_IMAGE_JPEG;
            info->width = w;
            info->height = h;
            info->components = nc;
            info->progressive = (m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE);
            info->subsampling_h = s[7] >> 4;
            info->subsampling_v = s[7] & 15;
            return SP_OK;
        }
        p += seglen;
    }
    return sp__fail(SP_EBADINPUT, "%s: corrupt JPEG (no frame header)", name);
}

static sp_status probe_png(const char *name, const uint8_t *d, size_t n, sp_image_info *info) {
    if (n < 8 + 25 || memcmp(d + 12, "IHDR", 4) != 0)
        return sp__fail(SP_EBADINPUT, "%s: corrupt PNG (no IHDR chunk)", name);
    uint32_t w = ((uint32_t)d[16] << 24) | ((uint32_t)d[17] << 16) | ((uint32_t)d[18] << 8) | d[19];
    uint32_t h = ((uint32_t)d[20] << 24) | ((uint32_t)d[21] << 16) | ((uint32_t)d[22] << 8) | d[23];
    if (w == 0 || h == 0 || w > INT32_MAX || h > INT32_MAX)
        return sp__fail(SP_EBADINPUT, "%s: corrupt PNG (size %ux%u)", name, w, h);
    if (n < 12 + 33 || memcmp(d + n - 8, "IEND", 4) != 0)
        return sp__fail(SP_EBADINPUT, "%s: truncated PNG (no IEND chunk at the end)", name);
    static const int comps[7] = {1, 0, 3, 1, 2, 0, 4};
    uint8_t ct = d[25];
    info->kind = SP_IMAGE_PNG;
    info->width = (int32_t)w;
    info->height = (int32_t)h;
    info->components = ct < 7 ? comps[ct] : 0;
    info->subsampling_h = info->subsampling_v = 1;
    return SP_OK;
}

sp_status sp_image_probe(const char *name, const uint8_t *data, size_t len, sp_image_info *info) {
    if (!info) return sp__fail(SP_EINVAL, "sp_image_probe: info is NULL");
    memset(info, 0, sizeof *info);
    if (!name) name = "image";
    if (len == 0) return sp__fail(SP_EBADINPUT, "%s: empty file (0 bytes)", name);
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return probe_jpeg(name, data, len, info);
    if (len >= 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8)) return probe_png(name, data, len, info);
    return sp__fail(SP_EBADINPUT, "%s: not a JPEG or PNG file (starts with %02x %02x %02x)", name,
                    data[0], len > 1 ? data[1] : 0, len > 2 ? data[2] : 0);
}

/* ---- full decodes */

typedef struct jerr_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int warned;
} jerr_mgr;

static void jerr_exit(j_common_ptr cinfo) {
    jerr_mgr *e = (jerr_mgr *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jerr_emit(j_common_ptr cinfo, int level) {
    jerr_mgr *e = (jerr_mgr *)cinfo->err;
    if (level < 0 && !e->warned) { /* a warning: corrupt data the decoder papered over */
        e->warned = 1;
        e->pub.format_message(cinfo, e->msg);
    }
}

static sp_status decode_jpeg(const char *name, const uint8_t *data, size_t len) {
    struct jpeg_decompress_struct cinfo;
    jerr_mgr err;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jerr_exit;
    err.pub.emit_message = jerr_emit;
    JSAMPARRAY row = NULL;
    if (setjmp(err.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return sp__fail(SP_EBADINPUT, "%s: JPEG does not decode: %s", name, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.dct_method = JDCT_IFAST;
    jpeg_start_decompress(&cinfo);
    row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE,
                                     cinfo.output_width * (JDIMENSION)cinfo.output_components, 1);
    while (cinfo.output_scanline < cinfo.output_height)
        jpeg_read_scanlines(&cinfo, row, 1);
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (err.warned) return sp__fail(SP_EBADINPUT, "%s: JPEG data is corrupt: %s", name, err.msg);
    return SP_OK;
}

static sp_status decode_png(const char *name, const uint8_t *data, size_t len) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, len))
        return sp__fail(SP_EBADINPUT, "%s: PNG does not decode: %s", name, img.message);
    img.format = PNG_FORMAT_RGBA;
    size_t bytes = PNG_IMAGE_SIZE(img);
    void *buf = sp__malloc(bytes);
    if (!buf) {
        png_image_free(&img);
        return sp__fail(SP_ENOMEM, "%s: out of memory decoding %zu bytes", name, bytes);
    }
    int ok = png_image_finish_read(&img, NULL, buf, 0, NULL);
    sp__free(buf);
    if (!ok || (img.warning_or_error & PNG_IMAGE_ERROR)) {
        sp_status rc = sp__fail(SP_EBADINPUT, "%s: PNG does not decode: %s", name, img.message);
        png_image_free(&img);
        return rc;
    }
    png_image_free(&img);
    return SP_OK;
}

sp_status sp_image_check_decode(const char *name, const uint8_t *data, size_t len) {
    sp_image_info info;
    SP_TRY(sp_image_probe(name, data, len, &info));
    if ((uint64_t)info.width * (uint64_t)info.height > (1ull << 28))
        return sp__fail(SP_EBADINPUT, "%s: image of %dx%d pixels is too large to check", name,
                        info.width, info.height);
    return info.kind == SP_IMAGE_JPEG ? decode_jpeg(name, data, len) : decode_png(name, data, len);
}
