/* fuzz_decode.c — the loader's per-sample kernel (sp__decode_sample) on arbitrary bytes.
 *
 * The first 12 bytes choose how to decode, the rest is the image:
 *   0-3  crop box: x and y as fractions of the free room, w and h as fractions of the image
 *   4    bit 0: flip
 *   5-6  output width and height - 1 (mod 96)
 *   7    bits 0-1: dtype (mod 3), bit 2: NHWC, bit 3: fast decode, bit 4: crop decode,
 *        bit 5: DCT scaling, bit 6: normalize-like scale and bias
 *   8    bit 0: push the box past the image's edges; bit 1: draw the box with sp__aug_draw
 *   9-11 sp__aug_draw: crop kind (mod 3), seed
 * One decoder is kept across inputs, as a loader worker keeps it across samples, so decoding after
 * an error is exercised too. The output buffer is exactly one sample, so any overrun is caught. */
#include "load/load_internal.h"
#include "softpipe/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sp__decoder *g_dec;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 12) return 0;
    if (!g_dec && sp__decoder_new(&g_dec) != SP_OK) return 0;
    const uint8_t *h = data;
    data += 12;
    size -= 12;

    /* keep each run fast: skip images whose header promises more than 4 Mpixels */
    int32_t W = 64, H = 64;
    sp_image_info info;
    if (sp_image_probe("fuzz", data, size, &info) == SP_OK) {
        if ((uint64_t)info.width * (uint64_t)info.height > (1u << 22)) return 0;
        W = info.width;
        H = info.height;
    }

    sp__aug a;
    if (h[8] & 2) {
        sp_loader_opts o;
        memset(&o, 0, sizeof o);
        o.crop = (sp_crop)(h[9] % 3);
        o.out_w = 1 + h[5] % 96u;
        o.out_h = 1 + h[6] % 96u;
        o.flip = 0.5;
        sp__rng r;
        sp__rng_init(&r, h[10], 0, h[11]);
        sp__aug_draw(&o, W, H, &r, &a);
    } else {
        a.w = W * ((h[2] + 1) / 256.0);
        a.h = H * ((h[3] + 1) / 256.0);
        a.x = (W - a.w) * (h[0] / 255.0);
        a.y = (H - a.h) * (h[1] / 255.0);
        if (h[8] & 1) {
            a.x -= 0.25 * W;
            a.y -= 0.25 * H;
            a.w *= 1.5;
            a.h *= 1.5;
        }
        a.flip = h[4] & 1;
    }

    sp__out_spec s;
    memset(&s, 0, sizeof s);
    s.out_w = 1 + h[5] % 96u;
    s.out_h = 1 + h[6] % 96u;
    s.dtype = (sp_dtype)((h[7] & 3) % 3);
    s.layout = (h[7] & 4) ? SP_LAYOUT_NHWC : SP_LAYOUT_NCHW;
    s.decode = (h[7] & 8) ? SP_DECODE_FAST : SP_DECODE_ACCURATE;
    s.crop_decode = (h[7] >> 4) & 1;
    s.dct_scale = (h[7] >> 5) & 1;
    s.normalize = (h[7] >> 6) & 1;
    for (int c = 0; c < 3; c++) {
        s.scale[c] = s.normalize ? 1.0f / (255.0f * 0.225f) : 1.0f / 255.0f;
        s.bias[c] = s.normalize ? -0.45f / 0.225f : 0.0f;
    }

    size_t esize = s.dtype == SP_DTYPE_UINT8 ? 1 : s.dtype == SP_DTYPE_FLOAT32 ? 4 : 2;
    void *out = malloc((size_t)s.out_w * s.out_h * 3 * esize);
    uint8_t *m = malloc(size ? size : 1); /* exactly `size` bytes: reads past the end are caught */
    if (out && m) {
        memcpy(m, data, size);
        sp__stage_times t;
        sp__decode_sample(g_dec, "fuzz", m, size, &a, &s, out, &t);
    }
    free(m);
    free(out);
    return 0;
}
