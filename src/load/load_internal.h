/* load_internal.h — private to src/load: the per-sample decode+augment kernel, the filter, and
 * the counter-based random numbers they share. */
#ifndef SP_LOAD_INTERNAL_H
#define SP_LOAD_INTERNAL_H

#include "core_internal.h"
#include "softpipe/load.h"
#include "softpipe/shard.h"

/* ------------------------------------------------------------ counter-based random numbers */

static inline uint64_t sp__mix64(uint64_t x) { /* splitmix64's finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* A tiny stream keyed by (seed, epoch, sample id): independent of threads and of order. */
typedef struct sp__rng {
    uint64_t state;
} sp__rng;

static inline void sp__rng_init(sp__rng *r, uint64_t seed, uint64_t epoch, uint64_t id) {
    r->state = sp__mix64(seed ^ sp__mix64(epoch + 0x9e3779b97f4a7c15ull) ^
                         sp__mix64(id * 0xd1b54a32d192ed03ull + 1));
}
static inline uint64_t sp__rng_next(sp__rng *r) {
    r->state += 0x9e3779b97f4a7c15ull;
    return sp__mix64(r->state);
}
/* uniform in [0, 1) with 53 bits */
static inline double sp__rng_uniform(sp__rng *r) {
    return (double)(sp__rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------ the per-sample kernel */

/* Where the output crop comes from, in source-image pixels (a float box), and the flip. */
typedef struct sp__aug {
    double x, y, w, h;
    int flip;
} sp__aug;

/* Draws the augmentation of one sample of a src_w x src_h image, as torchvision does
 * (RandomResizedCrop.get_params with 10 attempts then the center fallback; CenterCrop after a
 * short-side resize to size/0.875; or the whole image), and the flip with probability opts->flip.
 */
void sp__aug_draw(const sp_loader_opts *opts, int32_t src_w, int32_t src_h, sp__rng *rng,
                  sp__aug *out);

/* How to write one sample into its slot of the batch. */
typedef struct sp__out_spec {
    uint32_t out_h, out_w;
    sp_dtype dtype;
    sp_layout layout;
    int normalize;
    float scale[3], bias[3]; /* out = pixel * scale + bias, pixel in 0..255 (float dtypes) */
    sp_decode_mode decode;
    int crop_decode; /* decode only the rows and iMCU columns the crop needs */
    int dct_scale;   /* decode at the smallest of 1/8, 1/4, 1/2, 1 that still covers the output */
} sp__out_spec;

typedef struct sp__stage_times {
    double decode_s, augment_s;
} sp__stage_times;

/* Per-thread decoder state (libjpeg decompressor, libpng, scratch buffers). Not thread-safe:
 * one per worker. */
typedef struct sp__decoder sp__decoder;
sp_status sp__decoder_new(sp__decoder **out);
void sp__decoder_free(sp__decoder *d);
size_t sp__decoder_mem_usage(const sp__decoder *d);

/* Decodes the JPEG or PNG in data[0..len), crops aug's box, resizes it to out_h x out_w with an
 * antialiased bilinear (triangle) filter comparable to PIL's BILINEAR, flips, converts to dtype and
 * layout, and writes exactly one sample (3 * out_h * out_w elements) at dst. Grey and CMYK
 * JPEGs and grey/palette/alpha PNGs come out RGB. `name` starts error messages. Never reads
 * outside data[0..len) and never crashes on bad bytes: returns SP_EBADINPUT. */
sp_status sp__decode_sample(sp__decoder *d, const char *name, const uint8_t *data, size_t len,
                            const sp__aug *aug, const sp__out_spec *spec, void *dst,
                            sp__stage_times *times /* OUT, may be NULL */);

/* ------------------------------------------------------------ pinned memory */

/* Page-locks [ptr, ptr+size) with cudaHostRegister when a CUDA runtime can be loaded (dlopen);
 * returns 1 when pinned, 0 otherwise (no CUDA, or SOFTPIPE_NO_PIN set). */
int sp__pin(void *ptr, size_t size);
void sp__unpin(void *ptr);

/* ------------------------------------------------------------ filters */

/* A parsed filter over a dataset's scalar columns. Grammar (case-sensitive keywords):
 *   expr    := or
 *   or      := and ( "or" and )*
 *   and     := not ( "and" not )*
 *   not     := "not" not | primary
 *   primary := "(" expr ")" | column op number | column ["not"] "in" "{" number ("," number)* "}"
 *   op      := "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
 * Numbers are integers or decimals (with optional exponent); a null value matches nothing
 * except "!=" and "not in". */
typedef struct sp__filter sp__filter;

/* Parses `text` against ds's columns. Errors point at the place: "filter:1:7: unknown column
 * \"lable\" (columns: key, label, ...)". String columns are refused. */
sp_status sp__filter_parse(const char *text, const sp_dataset *ds, sp__filter **out);
void sp__filter_free(sp__filter *f);

/* 0 when no row of block `block` (global numbering, see sp_dataset_block) can match, judging by
 * its statistics only; 1 when some might. */
int sp__filter_block_may_match(const sp__filter *f, const sp_dataset *ds, uint64_t block);

/* Exact test of sample i, on the index only (never the payload). */
int sp__filter_match(const sp__filter *f, const sp_dataset *ds, uint64_t i);

#endif
