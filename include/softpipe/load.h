/* softpipe/load.h — the loader: a softpipe dataset of JPEG/PNG samples straight into training
 * batches (decode only the crop, at a reduced DCT scale; resize, flip, normalize in one pass into a
 * contiguous batch buffer), on a pool of native threads.
 *
 * Determinism: the sample order is a pure function of (seed, epoch), and each sample's random
 * crop and flip come from a counter-based generator keyed by (seed, epoch, sample id), so the same
 * (seed, epoch) gives byte-identical batches for any thread count.
 *
 * Distributed: rank r of world_size w takes global positions r, r+w, r+2w, ... of the epoch order
 * (as torch's DistributedSampler does); without drop_last the order is padded by wrapping around so
 * every rank gets ceil(N/w) samples, with drop_last every rank gets floor(N/w). Each rank then cuts
 * its samples into batches (the last one short unless drop_last).
 *
 * Resume: the state is (seed, epoch, batches consumed); restoring it is O(1).
 */
#ifndef SOFTPIPE_LOAD_H
#define SOFTPIPE_LOAD_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_crop {
    SP_CROP_RANDOM_RESIZED = 0, /* torchvision RandomResizedCrop(scale, ratio) */
    SP_CROP_CENTER = 1,         /* resize short side to size/0.875, center crop (evaluation) */
    SP_CROP_NONE = 2            /* resize the whole image to size */
} sp_crop;

typedef enum sp_layout { SP_LAYOUT_NCHW = 0, SP_LAYOUT_NHWC = 1 } sp_layout;
typedef enum sp_shuffle {
    SP_SHUFFLE_GLOBAL = 0, /* a permutation of all samples */
    SP_SHUFFLE_BLOCK = 1,  /* blocks in random order, samples shuffled within a block: reads stay
                              sequential within a block */
    SP_SHUFFLE_NONE = 2
} sp_shuffle;
typedef enum sp_decode_mode {
    SP_DECODE_ACCURATE = 0, /* integer slow IDCT, fancy upsampling (PIL's defaults) */
    SP_DECODE_FAST = 1      /* fast integer IDCT (upsampling stays fancy: libjpeg-turbo's merged
                               upsampler is not deterministic after skipped rows) */
} sp_decode_mode;

typedef struct sp_loader_opts {
    uint32_t batch_size;   /* 0 = 256 */
    uint32_t out_h, out_w; /* 0 = 224 */
    sp_crop crop;
    double scale_min, scale_max; /* RandomResizedCrop area range; 0,0 = 0.08, 1.0 */
    double ratio_min, ratio_max; /* aspect range; 0,0 = 3/4, 4/3 */
    double flip;                 /* probability of a horizontal flip */
    int normalize;               /* 1: out = (pixel/255 - mean) / std (float dtypes only) */
    float mean[3], std[3]; /* defaults: ImageNet's (0.485, 0.456, 0.406), (0.229, 0.224, 0.225) */
    sp_dtype dtype;
    sp_layout layout;
    uint64_t seed;
    sp_shuffle shuffle;
    int drop_last;
    uint32_t rank, world_size; /* world_size 0 = 1 */
    int threads;               /* 0 = online CPUs */
    uint32_t prefetch;         /* batches decoded ahead; 0 = threads + 1 */
    const char *filter;        /* e.g. "label in {1, 3} and timestamp >= 1700000000"; NULL = all */
    int fail_on_error;         /* 0: skip a bad sample (undecodable, or failing its CRC-32C:
                                  counted, named); 1: the batch fails */
    sp_decode_mode decode;
    /* Optimizations, on by default; switch off to measure what each one gives. */
    int no_crop_decode; /* 1: decode the full image, then crop */
    int no_dct_scale;   /* 1: always decode at full size */
    size_t mem_budget;  /* bytes for batch buffers and scratch; 0 = 1 GiB */
    /* More fields may be added; always call sp_loader_opts_init first. */
} sp_loader_opts;

SP_API void sp_loader_opts_init(sp_loader_opts *opts);

typedef struct sp_loader sp_loader;

/* One batch: `n` samples of c x h x w in `layout` and `dtype`, contiguous. */
typedef struct sp_batch {
    void *data;      /* n * c * h * w elements */
    int64_t *labels; /* n labels (-1 for a null label) */
    uint64_t *ids;   /* n dataset indices of the samples */
    uint32_t n, c, h, w;
    sp_dtype dtype;
    sp_layout layout;
    uint64_t epoch;
    uint64_t index; /* batch number within this rank's epoch */
    size_t bytes;   /* size of data */
} sp_batch;

/* Opens the dataset at `path` and starts the workers. opts may be NULL (defaults).
 * On failure *out is NULL and sp_errmsg() says why (bad option, unknown filter column, ...). */
SP_API sp_status sp_loader_open(const char *path, const sp_loader_opts *opts,
                                sp_loader **out /* OUT */);

/* Waits for the next batch of the current epoch. Returns SP_OK with *batch set, SP_DONE at the
 * end of the epoch (*batch NULL), or the error a worker met (SP_EBADINPUT naming shard, index and
 * key when fail_on_error). The batch stays valid, its memory untouched, until
 * sp_loader_release(); holding many batches makes the loader allocate more buffers, up to
 * mem_budget (then SP_ENOMEM). Not thread-safe against itself: one consumer thread. */
SP_API sp_status sp_loader_next(sp_loader *ld, const sp_batch **batch /* OUT */);

/* Gives a batch's memory back to the loader. Thread-safe (may run on any thread). */
SP_API void sp_loader_release(sp_loader *ld, const sp_batch *batch);

/* Batches this rank gets per epoch. */
SP_API uint64_t sp_loader_len(const sp_loader *ld);
/* Samples selected (after the filter), before rank slicing. */
SP_API uint64_t sp_loader_n_samples(const sp_loader *ld);

/* Starts epoch `epoch` from its first batch (batches in flight are discarded). */
SP_API sp_status sp_loader_set_epoch(sp_loader *ld, uint64_t epoch);

typedef struct sp_loader_state {
    uint64_t seed, epoch, batches; /* batches consumed in this epoch */
    uint32_t rank, world_size;
} sp_loader_state;

SP_API void sp_loader_state_get(const sp_loader *ld, sp_loader_state *st /* OUT */);
/* Continues exactly where `st` was taken; seed and world must match the loader's. O(1). */
SP_API sp_status sp_loader_state_set(sp_loader *ld, const sp_loader_state *st);

typedef struct sp_loader_stats {
    double read_s, decode_s, augment_s;    /* summed over worker threads */
    double wait_s;                         /* consumer time blocked in sp_loader_next */
    double wall_s;                         /* since the first sp_loader_next */
    double stall_share;                    /* wait_s / wall_s */
    uint64_t samples, batches;             /* delivered */
    uint64_t bytes_read;                   /* payload bytes decoded */
    uint64_t blocks_total, blocks_skipped; /* by the filter's block statistics */
    uint64_t samples_skipped_bad;
    size_t pinned_bytes; /* batch memory page-locked for CUDA (0 without a CUDA runtime) */
} sp_loader_stats;

SP_API void sp_loader_stats_get(const sp_loader *ld, sp_loader_stats *st /* OUT */);

/* The last bad samples skipped: "shard-00002.sps: record 1733 (\"cls/x.jpg\"): truncated JPEG".
 * Borrowed until the next call on ld; NULL when none. i = 0 is the most recent. */
SP_API const char *sp_loader_skipped(const sp_loader *ld, size_t i);

/* Bytes held now by batch buffers and scratch. Thread-safe. */
SP_API size_t sp_loader_mem_usage(const sp_loader *ld);

/* Stops and joins the workers, frees everything (also batches not released). NULL is a no-op. */
SP_API void sp_loader_close(sp_loader *ld);

#ifdef __cplusplus
}
#endif
#endif
