/* loader.c — the loader: a pool of worker threads fills batch slots, in any order, while the
 * consumer takes them in batch order.
 *
 * DESIGN. A batch is the unit of work: a worker claims batch b (at most `prefetch` ahead of the
 * consumer), takes a free slot (allocating one while under mem_budget), and decodes every sample
 * of b straight into the slot. Which samples b holds and how each is augmented depend only on
 * (seed, epoch, b), never on which thread did the work or when, so batches are byte-identical for
 * any thread count. A delivered slot is HELD until released (Python releases it when the last
 * tensor viewing it dies), so the loader never writes over memory somebody still reads.
 * set_epoch / state_set bump a generation counter: slots being filled for the old generation are
 * dropped when their worker finishes. Errors met by a worker are stored in the slot and returned
 * by sp_loader_next when the consumer reaches that batch. */
#include "load_internal.h"
#include "load_order.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };
#define N_SKIPPED_KEPT 64

typedef struct slot {
    sp_batch b; /* first: a const sp_batch * converts back to its slot */
    uint8_t *mem;
    int pinned;
    int state;
    uint64_t gen;
    sp_status rc;
    char *err;
} slot;

struct sp_loader {
    sp_dataset *ds;
    sp_loader_opts o;
    sp__out_spec spec;
    sp__filter *filter;
    sp__selection sel;
    size_t sample_bytes, slot_bytes;
    uint32_t world, rank;
    uint64_t per_rank, n_batches;
    int col_label;

    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    uint64_t gen, epoch;
    sp__order *order; /* current epoch's order; replaced under mu */
    sp__order *old_orders[8];
    int n_old;
    uint64_t next_claim, next_deliver;
    int filling; /* workers inside fill() */
    slot **slots;
    size_t n_slots;
    int stop;
    pthread_t *threads;
    int n_threads;
    sp__decoder **decoders;

    /* stats, under mu */
    double read_s, decode_s, augment_s, wait_s, t_first;
    uint64_t delivered_samples, delivered_batches, bytes_read, skipped_bad;
    uint64_t blocks_total, blocks_skipped;
    size_t pinned_bytes;
    char *skipped[N_SKIPPED_KEPT];
    size_t n_skipped;
};

void sp_loader_opts_init(sp_loader_opts *o) {
    memset(o, 0, sizeof *o);
    o->crop = SP_CROP_RANDOM_RESIZED;
    o->flip = 0.5;
    o->normalize = 1;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(o->mean, mean, sizeof mean);
    memcpy(o->std, std, sizeof std);
    o->dtype = SP_DTYPE_FLOAT32;
    o->layout = SP_LAYOUT_NCHW;
    o->shuffle = SP_SHUFFLE_GLOBAL;
}

static size_t dtype_size(sp_dtype t) {
    return t == SP_DTYPE_UINT8 ? 1 : t == SP_DTYPE_FLOAT16 ? 2 : 4;
}

/* ------------------------------------------------------------ selection (filter pushdown) */

static sp_status build_selection(sp_loader *ld) {
    sp_dataset *ds = ld->ds;
    uint64_t nb = sp_dataset_n_blocks(ds);
    ld->blocks_total = nb;
    sp__buf ids = {0}, starts = {0};
    sp_status rc = SP_OK;
    uint64_t count = 0;
    for (uint64_t b = 0; b < nb && rc == SP_OK; b++) {
        sp_block_info bi;
        if ((rc = sp_dataset_block(ds, b, &bi)) < 0) break;
        if (ld->filter && !sp__filter_block_may_match(ld->filter, ds, b)) {
            ld->blocks_skipped++;
            continue;
        }
        uint64_t start = count;
        for (uint64_t i = bi.first_sample; i < bi.first_sample + bi.n_samples; i++) {
            if (ld->filter && !sp__filter_match(ld->filter, ds, i)) continue;
            if (ld->filter && (rc = sp__buf_append(&ids, &i, sizeof i)) < 0) break;
            count++;
        }
        if (rc == SP_OK && count > start) rc = sp__buf_append(&starts, &start, sizeof start);
    }
    if (rc == SP_OK) rc = sp__buf_append(&starts, &count, sizeof count);
    if (rc < 0) {
        sp__buf_free(&ids);
        sp__buf_free(&starts);
        return rc;
    }
    ld->sel.n = count;
    ld->sel.ids = ld->filter ? (uint64_t *)ids.data : NULL;
    if (!ld->filter) sp__buf_free(&ids);
    ld->sel.group_start = (uint64_t *)starts.data;
    ld->sel.n_groups = starts.len / sizeof(uint64_t) - 1;
    return SP_OK;
}

/* ------------------------------------------------------------ filling one batch */

/* Global epoch position of the k-th sample of this rank (wrapping around for the padding). */
static uint64_t rank_position(const sp_loader *ld, uint64_t k) {
    uint64_t q = ld->rank + k * ld->world;
    return ld->sel.n ? q % ld->sel.n : 0;
}

static void note_skip(sp_loader *ld, const char *msg) {
    pthread_mutex_lock(&ld->mu);
    ld->skipped_bad++;
    sp__free(ld->skipped[ld->n_skipped % N_SKIPPED_KEPT]);
    ld->skipped[ld->n_skipped % N_SKIPPED_KEPT] = sp__strdup(msg);
    ld->n_skipped++;
    pthread_mutex_unlock(&ld->mu);
}

/* "shard-00002.sps: record 17 (\"cls/x.jpg\")": how messages name a sample. */
static void sample_name(sp_loader *ld, uint64_t id, const sp_sample *s, char *buf, size_t cap) {
    sp_value key;
    sp_dataset_value(ld->ds, id, SP_COL_KEY, &key);
    sp_shard_info si;
    sp_dataset_shard_info(ld->ds, s->shard, &si);
    snprintf(buf, cap, "%s: record %" PRIu64 " (\"%.*s\")", si.file, s->index_in_shard,
             (int)(key.v.str.len > 200 ? 200 : key.v.str.len), key.v.str.s);
}

/* Decodes dataset sample `id` into dst. */
static sp_status decode_one(sp_loader *ld, sp__decoder *dec, sp__buf *io, const sp__order *ord,
                            uint64_t id, void *dst, double *read_s, uint64_t *bytes,
                            sp__stage_times *t) {
    sp_sample s;
    SP_TRY(sp_dataset_sample(ld->ds, id, &s));
    sp_value w, h;
    sp_dataset_value(ld->ds, id, SP_COL_WIDTH, &w);
    sp_dataset_value(ld->ds, id, SP_COL_HEIGHT, &h);
    char name[320];
    if (w.is_null || h.is_null || w.v.i <= 0 || h.v.i <= 0) {
        sample_name(ld, id, &s, name, sizeof name);
        return sp__fail(SP_EBADINPUT, "%s: no image size in the index (not an image sample?)",
                        name);
    }
    /* Read the payload into this worker's buffer (pread): the shard's pages stay page cache and
     * never count in the process's resident memory, and "read" measures real I/O. */
    double t0 = sp__now();
    io->len = 0;
    SP_TRY(sp__buf_reserve(io, s.size));
    size_t got;
    SP_TRY(sp_dataset_read(ld->ds, id, io->data, io->cap, &got));
    uint32_t crc = sp_crc32c(0, io->data, got); /* ~2 us for 90 KB: every byte is checked */
    *read_s += sp__now() - t0;
    if (crc != s.crc32c) {
        sample_name(ld, id, &s, name, sizeof name);
        return sp__fail(SP_ECORRUPT, "%s: CRC32C mismatch (stored %08x, computed %08x)", name,
                        s.crc32c, crc);
    }
    *bytes += s.size;
    sp__rng rng;
    sp__rng_init(&rng, ld->o.seed, ord->epoch, id);
    sp__aug aug;
    sp__aug_draw(&ld->o, (int32_t)w.v.i, (int32_t)h.v.i, &rng, &aug);
    /* The sample's name is formatted only when something goes wrong. */
    sp_status rc = sp__decode_sample(dec, "", io->data, got, &aug, &ld->spec, dst, t);
    if (rc < 0) {
        char why[SP_ERRMSG_MAX];
        const char *m = sp_errmsg();
        snprintf(why, sizeof why, "%s", m[0] == ':' && m[1] == ' ' ? m + 2 : m);
        sample_name(ld, id, &s, name, sizeof name);
        rc = sp__fail(rc, "%s: %s", name, why);
    }
    return rc;
}

static void fill(sp_loader *ld, sp__decoder *dec, sp__buf *io, const sp__order *ord, slot *sl,
                 uint64_t b) {
    sp_batch *bt = &sl->b;
    uint64_t first = b * ld->o.batch_size;
    uint64_t n = ld->per_rank - first < ld->o.batch_size ? ld->per_rank - first : ld->o.batch_size;
    bt->n = (uint32_t)n;
    bt->index = b;
    bt->epoch = ord->epoch;
    bt->bytes = n * ld->sample_bytes;
    sl->rc = SP_OK;
    double read_s = 0;
    uint64_t bytes = 0;
    sp__stage_times t = {0, 0}, tt;
    for (uint64_t k = 0; k < n && sl->rc == SP_OK; k++) {
        uint64_t pos = rank_position(ld, first + k);
        uint8_t *dst = sl->mem + k * ld->sample_bytes;
        /* a bad sample is replaced by the next sample of the epoch order (deterministic) */
        for (uint64_t attempt = 0;; attempt++) {
            uint64_t id = sp__order_sample(ord, (pos + attempt) % ld->sel.n);
            memset(&tt, 0, sizeof tt);
            sp_status rc = decode_one(ld, dec, io, ord, id, dst, &read_s, &bytes, &tt);
            t.decode_s += tt.decode_s;
            t.augment_s += tt.augment_s;
            if (rc == SP_OK) {
                sp_value lab;
                sp_dataset_value(ld->ds, id, (size_t)ld->col_label, &lab);
                bt->labels[k] = lab.is_null ? -1 : lab.v.i;
                bt->ids[k] = id;
                break;
            }
            if ((rc != SP_EBADINPUT && rc != SP_ECORRUPT) || ld->o.fail_on_error) {
                sl->rc = rc;
                sl->err = sp__strdup(sp_errmsg());
                break;
            }
            note_skip(ld, sp_errmsg());
            if (attempt + 1 >= ld->sel.n) {
                sl->rc = sp__fail(SP_EBADINPUT, "every sample failed to decode; last: %s",
                                  ld->skipped[(ld->n_skipped - 1) % N_SKIPPED_KEPT]);
                sl->err = sp__strdup(sp_errmsg());
                break;
            }
        }
    }
    pthread_mutex_lock(&ld->mu);
    ld->read_s += read_s;
    ld->decode_s += t.decode_s;
    ld->augment_s += t.augment_s;
    ld->bytes_read += bytes;
    pthread_mutex_unlock(&ld->mu);
}

/* A free slot, allocating one while under budget; NULL when none (caller waits). Under mu. */
static slot *take_slot(sp_loader *ld) {
    for (size_t i = 0; i < ld->n_slots; i++)
        if (ld->slots[i]->state == SLOT_FREE) return ld->slots[i];
    size_t budget = ld->o.mem_budget ? ld->o.mem_budget : ((size_t)1 << 30);
    if ((ld->n_slots + 1) * ld->slot_bytes > budget && ld->n_slots >= 2) return NULL;
    slot *s = sp__calloc(1, sizeof *s);
    slot **ns = sp__realloc(ld->slots, (ld->n_slots + 1) * sizeof *ns);
    if (!s || !ns) {
        sp__free(s);
        if (ns) ld->slots = ns;
        return NULL;
    }
    ld->slots = ns;
    s->mem = sp__malloc(ld->slot_bytes);
    s->b.labels = sp__malloc(ld->o.batch_size * sizeof(int64_t));
    s->b.ids = sp__malloc(ld->o.batch_size * sizeof(uint64_t));
    if (!s->mem || !s->b.labels || !s->b.ids) {
        sp__free(s->mem);
        sp__free(s->b.labels);
        sp__free(s->b.ids);
        sp__free(s);
        return NULL;
    }
    s->pinned = sp__pin(s->mem, ld->slot_bytes);
    ld->pinned_bytes += s->pinned ? ld->slot_bytes : 0;
    s->b.data = s->mem;
    s->b.c = 3;
    s->b.h = ld->o.out_h;
    s->b.w = ld->o.out_w;
    s->b.dtype = ld->o.dtype;
    s->b.layout = ld->o.layout;
    s->state = SLOT_FREE;
    ld->slots[ld->n_slots++] = s;
    return s;
}

typedef struct worker_arg {
    sp_loader *ld;
    int idx;
} worker_arg;

static void *worker(void *arg) {
    sp_loader *ld = ((worker_arg *)arg)->ld;
    sp__decoder *dec = ld->decoders[((worker_arg *)arg)->idx];
    sp__buf io = {0}; /* this worker's payload buffer, reused */
    sp__free(arg);
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop) {
        uint32_t ahead = ld->o.prefetch;
        slot *sl = NULL;
        if (ld->next_claim < ld->n_batches && ld->next_claim < ld->next_deliver + ahead)
            sl = take_slot(ld);
        if (!sl) {
            pthread_cond_wait(&ld->cv_work, &ld->mu);
            continue;
        }
        uint64_t b = ld->next_claim++, gen = ld->gen;
        const sp__order *ord = ld->order;
        sl->state = SLOT_FILLING;
        sl->gen = gen;
        ld->filling++;
        pthread_mutex_unlock(&ld->mu);
        fill(ld, dec, &io, ord, sl, b);
        pthread_mutex_lock(&ld->mu);
        ld->filling--;
        if (sl->gen == ld->gen) {
            sl->state = SLOT_READY;
        } else { /* the epoch changed while we worked */
            sl->state = SLOT_FREE;
            sp__free(sl->err);
            sl->err = NULL;
        }
        pthread_cond_broadcast(&ld->cv_ready);
        pthread_cond_broadcast(&ld->cv_work);
    }
    pthread_mutex_unlock(&ld->mu);
    sp__buf_free(&io);
    return NULL;
}

/* ------------------------------------------------------------ public API */

static sp_status check_opts(sp_loader_opts *o) {
    if (o->batch_size == 0) o->batch_size = 256;
    if (o->out_h == 0) o->out_h = 224;
    if (o->out_w == 0) o->out_w = o->out_h;
    if (o->world_size == 0) o->world_size = 1;
    if (o->threads <= 0) o->threads = sp__ncpu();
    if (o->threads > 256) return sp__fail(SP_EINVAL, "threads %d: at most 256", o->threads);
    /* one batch in progress per thread and one ready: more buys no speed, only memory */
    if (o->prefetch == 0) o->prefetch = (uint32_t)o->threads + 1;
    if (o->batch_size > (1u << 20))
        return sp__fail(SP_EINVAL, "batch_size %u is too large", o->batch_size);
    if (o->out_h > 8192 || o->out_w > 8192)
        return sp__fail(SP_EINVAL, "size %ux%u: at most 8192x8192", o->out_h, o->out_w);
    if (o->rank >= o->world_size)
        return sp__fail(SP_EINVAL, "rank %u must be below world_size %u", o->rank, o->world_size);
    if (!(o->flip >= 0 && o->flip <= 1))
        return sp__fail(SP_EINVAL, "flip %g: a probability in [0, 1]", o->flip);
    if ((unsigned)o->crop > SP_CROP_NONE || (unsigned)o->dtype > SP_DTYPE_FLOAT16 ||
        (unsigned)o->layout > SP_LAYOUT_NHWC || (unsigned)o->shuffle > SP_SHUFFLE_NONE ||
        (unsigned)o->decode > SP_DECODE_FAST)
        return sp__fail(SP_EINVAL, "crop, dtype, layout, shuffle or decode out of range");
    if (o->scale_min == 0 && o->scale_max == 0) o->scale_min = 0.08, o->scale_max = 1.0;
    if (o->ratio_min == 0 && o->ratio_max == 0) o->ratio_min = 3.0 / 4, o->ratio_max = 4.0 / 3;
    if (!(o->scale_min > 0 && o->scale_min <= o->scale_max && o->scale_max <= 1))
        return sp__fail(SP_EINVAL, "scale (%g, %g): need 0 < min <= max <= 1", o->scale_min,
                        o->scale_max);
    if (!(o->ratio_min > 0 && o->ratio_min <= o->ratio_max))
        return sp__fail(SP_EINVAL, "ratio (%g, %g): need 0 < min <= max", o->ratio_min,
                        o->ratio_max);
    for (int c = 0; c < 3; c++)
        if (o->normalize && !(o->std[c] > 0))
            return sp__fail(SP_EINVAL, "std[%d] = %g: must be positive", c, (double)o->std[c]);
    return SP_OK;
}

static void set_counts(sp_loader *ld) {
    uint64_t n = ld->sel.n, w = ld->world, bs = ld->o.batch_size;
    ld->per_rank = n == 0 ? 0 : ld->o.drop_last ? n / w : (n + w - 1) / w;
    ld->n_batches = ld->o.drop_last ? ld->per_rank / bs : (ld->per_rank + bs - 1) / bs;
}

static void stop_workers(sp_loader *ld) {
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->n_threads; t++)
        pthread_join(ld->threads[t], NULL);
    ld->n_threads = 0;
}

void sp_loader_close(sp_loader *ld) {
    if (!ld) return;
    if (ld->threads) stop_workers(ld);
    for (size_t i = 0; i < ld->n_slots; i++) {
        if (ld->slots[i]->pinned) sp__unpin(ld->slots[i]->mem);
        sp__free(ld->slots[i]->mem);
        sp__free(ld->slots[i]->b.labels);
        sp__free(ld->slots[i]->b.ids);
        sp__free(ld->slots[i]->err);
        sp__free(ld->slots[i]);
    }
    sp__free(ld->slots);
    if (ld->decoders)
        for (int t = 0; t < ld->o.threads; t++)
            sp__decoder_free(ld->decoders[t]);
    sp__free(ld->decoders);
    sp__free(ld->threads);
    sp__order_free(ld->order);
    for (int i = 0; i < ld->n_old; i++)
        sp__order_free(ld->old_orders[i]);
    for (size_t i = 0; i < N_SKIPPED_KEPT; i++)
        sp__free(ld->skipped[i]);
    sp__free(ld->sel.ids);
    sp__free(ld->sel.group_start);
    sp__filter_free(ld->filter);
    sp_dataset_close(ld->ds);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv_work);
    pthread_cond_destroy(&ld->cv_ready);
    sp__free(ld);
}

sp_status sp_loader_open(const char *path, const sp_loader_opts *opts, sp_loader **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_loader_open: out is NULL");
    *out = NULL;
    sp_loader *ld = sp__calloc(1, sizeof *ld);
    if (!ld) return sp__fail(SP_ENOMEM, "out of memory");
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv_work, NULL);
    pthread_cond_init(&ld->cv_ready, NULL);
    if (opts)
        ld->o = *opts;
    else
        sp_loader_opts_init(&ld->o);
    ld->o.filter = NULL; /* not kept: parsed below */
    sp_status rc = check_opts(&ld->o);
    if (rc == SP_OK) rc = sp_dataset_open(path, &ld->ds);
    if (rc == SP_OK && opts && opts->filter && *opts->filter)
        rc = sp__filter_parse(opts->filter, ld->ds, &ld->filter);
    if (rc == SP_OK) rc = build_selection(ld);
    if (rc < 0) {
        sp_loader_close(ld);
        return rc;
    }
    ld->col_label = SP_COL_LABEL;
    ld->world = ld->o.world_size;
    ld->rank = ld->o.rank;
    sp__out_spec *sp = &ld->spec;
    sp->out_h = ld->o.out_h;
    sp->out_w = ld->o.out_w;
    sp->dtype = ld->o.dtype;
    sp->layout = ld->o.layout;
    sp->normalize = ld->o.normalize;
    for (int c = 0; c < 3; c++) {
        if (ld->o.normalize) {
            sp->scale[c] = 1.0f / (255.0f * ld->o.std[c]);
            sp->bias[c] = -ld->o.mean[c] / ld->o.std[c];
        } else {
            sp->scale[c] = 1.0f / 255.0f;
            sp->bias[c] = 0;
        }
    }
    sp->decode = ld->o.decode;
    sp->crop_decode = !ld->o.no_crop_decode;
    sp->dct_scale = !ld->o.no_dct_scale;
    ld->sample_bytes = (size_t)3 * ld->o.out_h * ld->o.out_w * dtype_size(ld->o.dtype);
    ld->slot_bytes = ld->sample_bytes * ld->o.batch_size;
    set_counts(ld);
    rc = sp__order_new(&ld->sel, ld->o.shuffle, ld->o.seed, 0, &ld->order);
    ld->decoders = sp__calloc((size_t)ld->o.threads, sizeof *ld->decoders);
    ld->threads = sp__calloc((size_t)ld->o.threads, sizeof *ld->threads);
    if (rc == SP_OK && (!ld->decoders || !ld->threads)) rc = sp__fail(SP_ENOMEM, "out of memory");
    for (int t = 0; rc == SP_OK && t < ld->o.threads; t++)
        rc = sp__decoder_new(&ld->decoders[t]);
    for (int t = 0; rc == SP_OK && t < ld->o.threads; t++) {
        worker_arg *wa = sp__malloc(sizeof *wa);
        if (!wa) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            break;
        }
        wa->ld = ld;
        wa->idx = t;
        if (pthread_create(&ld->threads[t], NULL, worker, wa) != 0) {
            sp__free(wa);
            rc = sp__fail(SP_EIO, "cannot start loader thread %d", t);
            break;
        }
        ld->n_threads++;
    }
    if (rc < 0) {
        sp_loader_close(ld);
        return rc;
    }
    *out = ld;
    return SP_OK;
}

static slot *slot_of(const sp_batch *b) {
    return (slot *)(void *)b; /* sp_batch is the first member of slot */
}

sp_status sp_loader_next(sp_loader *ld, const sp_batch **batch) {
    if (!ld || !batch) return sp__fail(SP_EINVAL, "sp_loader_next: NULL argument");
    *batch = NULL;
    double t0 = sp__now();
    pthread_mutex_lock(&ld->mu);
    if (ld->t_first == 0) ld->t_first = t0;
    if (ld->next_deliver >= ld->n_batches) {
        pthread_mutex_unlock(&ld->mu);
        return SP_DONE;
    }
    slot *found = NULL;
    for (;;) {
        int free_or_filling = 0;
        for (size_t i = 0; i < ld->n_slots; i++) {
            slot *s = ld->slots[i];
            if (s->state == SLOT_READY && s->gen == ld->gen && s->b.index == ld->next_deliver) {
                found = s;
                break;
            }
            if (s->state == SLOT_FREE || s->state == SLOT_FILLING || s->state == SLOT_READY)
                free_or_filling = 1;
        }
        if (found) break;
        size_t budget = ld->o.mem_budget ? ld->o.mem_budget : ((size_t)1 << 30);
        if (!free_or_filling && ld->n_slots >= 2 && (ld->n_slots + 1) * ld->slot_bytes > budget) {
            size_t held = ld->n_slots;
            pthread_mutex_unlock(&ld->mu);
            return sp__fail(SP_ENOMEM,
                            "all %zu batch buffers are held by the caller and mem_budget (%zu "
                            "bytes) allows no more: release batches (or raise mem_budget)",
                            held, budget);
        }
        pthread_cond_broadcast(&ld->cv_work);
        pthread_cond_wait(&ld->cv_ready, &ld->mu);
    }
    found->state = SLOT_HELD;
    ld->next_deliver++;
    double waited = sp__now() - t0;
    ld->wait_s += waited;
    pthread_cond_broadcast(&ld->cv_work);
    if (found->rc < 0) {
        sp_status rc = found->rc;
        sp__fail(rc, "%s", found->err ? found->err : "worker failed");
        sp__free(found->err);
        found->err = NULL;
        found->state = SLOT_FREE;
        pthread_mutex_unlock(&ld->mu);
        return rc;
    }
    ld->delivered_batches++;
    ld->delivered_samples += found->b.n;
    pthread_mutex_unlock(&ld->mu);
    *batch = &found->b;
    return SP_OK;
}

void sp_loader_release(sp_loader *ld, const sp_batch *batch) {
    if (!ld || !batch) return;
    pthread_mutex_lock(&ld->mu);
    slot *s = slot_of(batch);
    if (s->state == SLOT_HELD) s->state = SLOT_FREE;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_cond_broadcast(&ld->cv_ready);
    pthread_mutex_unlock(&ld->mu);
}

uint64_t sp_loader_len(const sp_loader *ld) {
    return ld ? ld->n_batches : 0;
}

uint64_t sp_loader_n_samples(const sp_loader *ld) {
    return ld ? ld->sel.n : 0;
}

/* Moves to (epoch, batches) under a new generation. */
static sp_status restart(sp_loader *ld, uint64_t epoch, uint64_t batches) {
    sp__order *ord;
    SP_TRY(sp__order_new(&ld->sel, ld->o.shuffle, ld->o.seed, epoch, &ord));
    pthread_mutex_lock(&ld->mu);
    ld->gen++;
    /* workers may still read the old order: keep it until close (a few per loader) */
    if (ld->n_old == (int)(sizeof ld->old_orders / sizeof *ld->old_orders)) {
        /* wait until no worker is filling, then free the oldest ones */
        while (ld->filling > 0)
            pthread_cond_wait(&ld->cv_ready, &ld->mu);
        for (int i = 0; i < ld->n_old; i++)
            sp__order_free(ld->old_orders[i]);
        ld->n_old = 0;
    }
    ld->old_orders[ld->n_old++] = ld->order;
    ld->order = ord;
    ld->epoch = epoch;
    ld->next_claim = ld->next_deliver = batches;
    for (size_t i = 0; i < ld->n_slots; i++)
        if (ld->slots[i]->state == SLOT_READY) {
            ld->slots[i]->state = SLOT_FREE;
            sp__free(ld->slots[i]->err);
            ld->slots[i]->err = NULL;
        }
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    return SP_OK;
}

sp_status sp_loader_set_epoch(sp_loader *ld, uint64_t epoch) {
    if (!ld) return sp__fail(SP_EINVAL, "sp_loader_set_epoch: loader is NULL");
    return restart(ld, epoch, 0);
}

void sp_loader_state_get(const sp_loader *ld, sp_loader_state *st) {
    memset(st, 0, sizeof *st);
    if (!ld) return;
    pthread_mutex_lock((pthread_mutex_t *)&ld->mu);
    st->seed = ld->o.seed;
    st->epoch = ld->epoch;
    st->batches = ld->next_deliver;
    st->rank = ld->rank;
    st->world_size = ld->world;
    pthread_mutex_unlock((pthread_mutex_t *)&ld->mu);
}

sp_status sp_loader_state_set(sp_loader *ld, const sp_loader_state *st) {
    if (!ld || !st) return sp__fail(SP_EINVAL, "sp_loader_state_set: NULL argument");
    if (st->seed != ld->o.seed)
        return sp__fail(SP_EINVAL, "state is for seed %" PRIu64 ", this loader has seed %" PRIu64,
                        st->seed, ld->o.seed);
    if (st->world_size != ld->world || st->rank != ld->rank)
        return sp__fail(SP_EINVAL, "state is for rank %u of %u, this loader is rank %u of %u",
                        st->rank, st->world_size, ld->rank, ld->world);
    if (st->batches > ld->n_batches)
        return sp__fail(SP_EINVAL,
                        "state says %" PRIu64 " batches consumed; the epoch has %" PRIu64,
                        st->batches, ld->n_batches);
    return restart(ld, st->epoch, st->batches);
}

void sp_loader_stats_get(const sp_loader *ld, sp_loader_stats *st) {
    memset(st, 0, sizeof *st);
    if (!ld) return;
    pthread_mutex_lock((pthread_mutex_t *)&ld->mu);
    st->read_s = ld->read_s;
    st->decode_s = ld->decode_s;
    st->augment_s = ld->augment_s;
    st->wait_s = ld->wait_s;
    st->wall_s = ld->t_first > 0 ? sp__now() - ld->t_first : 0;
    st->stall_share = st->wall_s > 0 ? st->wait_s / st->wall_s : 0;
    st->samples = ld->delivered_samples;
    st->batches = ld->delivered_batches;
    st->bytes_read = ld->bytes_read;
    st->blocks_total = ld->blocks_total;
    st->blocks_skipped = ld->blocks_skipped;
    st->samples_skipped_bad = ld->skipped_bad;
    st->pinned_bytes = ld->pinned_bytes;
    pthread_mutex_unlock((pthread_mutex_t *)&ld->mu);
}

const char *sp_loader_skipped(const sp_loader *ld, size_t i) {
    if (!ld || i >= ld->n_skipped || i >= N_SKIPPED_KEPT) return NULL;
    return ld->skipped[(ld->n_skipped - 1 - i) % N_SKIPPED_KEPT];
}

size_t sp_loader_mem_usage(const sp_loader *ld) {
    if (!ld) return 0;
    pthread_mutex_lock((pthread_mutex_t *)&ld->mu);
    size_t n = ld->n_slots * (ld->slot_bytes + ld->o.batch_size * 16 + sizeof(slot));
    for (int t = 0; ld->decoders && t < ld->o.threads; t++)
        if (ld->decoders[t]) n += sp__decoder_mem_usage(ld->decoders[t]);
    pthread_mutex_unlock((pthread_mutex_t *)&ld->mu);
    return n;
}
