/* test_loader.c — the loader end to end on small generated datasets: determinism across thread
 * counts, rank slices, O(1) resume, epochs, batch lifetime, bad samples, filters, memory budget.
 * Threaded: CI also runs it under TSan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "core_internal.h"
#include "softpipe.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_IMAGES 70

static char *g_dir, *g_ds;

/* 70 JPEGs of assorted sizes in 3 classes (one grey), packed with small blocks. */
static int setup(void **state) {
    (void)state;
    g_dir = tu_tmpdir("loader");
    char *src = sp__path_join(g_dir, "src");
    for (int i = 0; i < N_IMAGES; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/c%d/%03d.jpg", src, i % 3, i);
        size_t len;
        unsigned char *j =
            tu_jpeg(40 + (i * 37) % 200, 30 + (i * 53) % 180, i == 5 ? 1 : 3, (uint64_t)i, &len);
        if (tu_write_file(p, j, len)) return -1;
        free(j);
    }
    g_ds = sp__path_join(g_dir, "ds");
    sp_pack_opts o;
    sp_pack_opts_init(&o);
    o.block_size = 16 << 10;
    sp_status rc = sp_pack(src, g_ds, &o, NULL);
    sp__free(src);
    return rc == SP_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tu_rmrf(g_dir);
    free(g_dir);
    sp__free(g_ds);
    return 0;
}

static void small_opts(sp_loader_opts *o, int threads) {
    sp_loader_opts_init(o);
    o->batch_size = 8;
    o->out_h = o->out_w = 24;
    o->threads = threads;
    o->seed = 42;
}

static uint64_t batch_hash(const sp_batch *b) {
    return sp__xxh3(b->data, b->bytes) ^ (sp__xxh3(b->labels, b->n * 8) * 31) ^
           (sp__xxh3(b->ids, b->n * 8) * 131);
}

/* Runs one epoch from the loader's current position; hashes into out (returns count). */
static size_t run_epoch(sp_loader *ld, uint64_t *out, size_t cap) {
    size_t n = 0;
    const sp_batch *b;
    sp_status rc;
    while ((rc = sp_loader_next(ld, &b)) == SP_OK) {
        assert_true(n < cap);
        out[n++] = batch_hash(b);
        sp_loader_release(ld, b);
    }
    assert_int_equal(rc, SP_DONE);
    return n;
}

static void same_batches_for_any_thread_count(void **state) {
    (void)state;
    uint64_t ref[32], got[32];
    size_t nref = 0;
    for (int t = 1; t <= 4; t *= 2) {
        sp_loader_opts o;
        small_opts(&o, t);
        sp_loader *ld;
        assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
        assert_int_equal(sp_loader_len(ld), (N_IMAGES + 7) / 8);
        size_t n = run_epoch(ld, t == 1 ? ref : got, 32);
        if (t == 1)
            nref = n;
        else
            assert_memory_equal(ref, got, n * sizeof *got);
        assert_int_equal(n, nref);
        sp_loader_stats st;
        sp_loader_stats_get(ld, &st);
        assert_int_equal(st.samples, N_IMAGES);
        assert_true(st.bytes_read > 0);
        sp_loader_close(ld);
    }
}

/* Fast decode too: the same bytes whatever thread decoded what before. */
static void fast_decode_is_deterministic(void **state) {
    (void)state;
    uint64_t ref[32], got[32];
    size_t n0 = 0;
    for (int t = 1; t <= 3; t += 2) {
        sp_loader_opts o;
        small_opts(&o, t);
        o.decode = SP_DECODE_FAST;
        o.out_h = o.out_w = 48;
        sp_loader *ld;
        assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
        size_t n = run_epoch(ld, t == 1 ? ref : got, 32);
        if (t == 1)
            n0 = n;
        else {
            assert_int_equal(n, n0);
            assert_memory_equal(ref, got, n * sizeof *got);
        }
        sp_loader_close(ld);
    }
}

static void epochs_and_shapes(void **state) {
    (void)state;
    sp_loader_opts o;
    small_opts(&o, 2);
    o.layout = SP_LAYOUT_NHWC;
    o.dtype = SP_DTYPE_UINT8;
    o.drop_last = 1;
    sp_loader *ld;
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
    assert_int_equal(sp_loader_len(ld), N_IMAGES / 8);
    const sp_batch *b;
    assert_int_equal(sp_loader_next(ld, &b), SP_OK);
    assert_int_equal(b->n, 8);
    assert_int_equal(b->bytes, 8 * 24 * 24 * 3);
    assert_int_equal(b->layout, SP_LAYOUT_NHWC);
    uint64_t first0[8];
    memcpy(first0, b->ids, sizeof first0);
    for (int i = 0; i < 8; i++)
        assert_true(b->labels[i] >= 0 && b->labels[i] < 3);
    for (int i = 0; i < 8; i++) { /* ImageFolder: c0/000, c1/001, ... so label = index's class */
        char want[16];
        sp_dataset *dsx;
        assert_int_equal(sp_dataset_open(g_ds, &dsx), SP_OK);
        sp_value key;
        sp_dataset_value(dsx, b->ids[i], SP_COL_KEY, &key);
        snprintf(want, sizeof want, "c%lld/", (long long)b->labels[i]);
        assert_memory_equal(key.v.str.s, want, 3);
        sp_dataset_close(dsx);
    }
    sp_loader_release(ld, b);
    assert_int_equal(sp_loader_set_epoch(ld, 1), SP_OK);
    assert_int_equal(sp_loader_next(ld, &b), SP_OK);
    assert_memory_not_equal(first0, b->ids, sizeof first0); /* a new order */
    sp_loader_release(ld, b);
    assert_int_equal(sp_loader_set_epoch(ld, 0), SP_OK);
    assert_int_equal(sp_loader_next(ld, &b), SP_OK);
    assert_memory_equal(first0, b->ids, sizeof first0); /* the same order again */
    sp_loader_release(ld, b);
    sp_loader_close(ld);
}

static void ranks_cover_the_epoch(void **state) {
    (void)state;
    for (uint32_t w = 1; w <= 4; w++) {
        int seen[N_IMAGES] = {0};
        uint64_t total = 0;
        for (uint32_t r = 0; r < w; r++) {
            sp_loader_opts o;
            small_opts(&o, 2);
            o.world_size = w;
            o.rank = r;
            sp_loader *ld;
            assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
            const sp_batch *b;
            uint64_t mine = 0;
            while (sp_loader_next(ld, &b) == SP_OK) {
                for (uint32_t i = 0; i < b->n; i++)
                    seen[b->ids[i]]++;
                mine += b->n;
                sp_loader_release(ld, b);
            }
            assert_int_equal(mine, (N_IMAGES + w - 1) / w); /* padded like DistributedSampler */
            total += mine;
            sp_loader_close(ld);
        }
        uint64_t pad = total - N_IMAGES;
        assert_true(pad < w);
        uint64_t dup = 0;
        for (int i = 0; i < N_IMAGES; i++) {
            assert_true(seen[i] >= 1); /* complete */
            dup += (uint64_t)(seen[i] - 1);
        }
        assert_int_equal(dup, pad); /* disjoint but for the padding */
    }
}

static void resume_continues_exactly(void **state) {
    (void)state;
    sp_loader_opts o;
    small_opts(&o, 2);
    sp_loader *ld;
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
    assert_int_equal(sp_loader_set_epoch(ld, 3), SP_OK);
    uint64_t ref[32];
    size_t n = run_epoch(ld, ref, 32);
    sp_loader_close(ld);
    uint64_t at[] = {0, 1, 4, n - 1, n};
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
        sp_loader_state st = {42, 3, at[k], 0, 1};
        assert_int_equal(sp_loader_state_set(ld, &st), SP_OK);
        uint64_t got[32];
        size_t m = run_epoch(ld, got, 32);
        assert_int_equal(m, n - at[k]);
        assert_memory_equal(got, ref + at[k], m * sizeof *got);
        sp_loader_state now;
        sp_loader_state_get(ld, &now);
        assert_int_equal(now.batches, n);
        assert_int_equal(now.epoch, 3);
        sp_loader_close(ld);
    }
    /* a state from another seed is refused */
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
    sp_loader_state bad = {7, 0, 0, 0, 1};
    assert_int_equal(sp_loader_state_set(ld, &bad), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "seed"));
    sp_loader_close(ld);
}

static void held_batches_stay_intact(void **state) {
    (void)state;
    sp_loader_opts o;
    small_opts(&o, 3);
    o.prefetch = 2;
    sp_loader *ld;
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
    const sp_batch *held[5];
    uint64_t h[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sp_loader_next(ld, &held[i]), SP_OK);
        h[i] = batch_hash(held[i]);
    }
    const sp_batch *b;
    while (sp_loader_next(ld, &b) == SP_OK)
        sp_loader_release(ld, b);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(batch_hash(held[i]), h[i]);
        sp_loader_release(ld, held[i]);
    }
    sp_loader_close(ld);
    /* a budget that cannot hold what the caller keeps */
    o.mem_budget = 3 * 8 * 24 * 24 * 3 * 4;
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
    sp_status rc = SP_OK;
    for (int i = 0; i < 10 && rc == SP_OK; i++)
        rc = sp_loader_next(ld, &b);
    assert_int_equal(rc, SP_ENOMEM);
    assert_non_null(strstr(sp_errmsg(), "held"));
    sp_loader_close(ld); /* frees batches never released */
}

static void filters_select_and_skip_blocks(void **state) {
    (void)state;
    sp_loader_opts o;
    small_opts(&o, 2);
    o.filter = "label in {1} and width >= 0";
    sp_loader *ld;
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
    uint64_t want = 0;
    for (int i = 0; i < N_IMAGES; i++)
        want += i % 3 == 1;
    assert_int_equal(sp_loader_n_samples(ld), want);
    const sp_batch *b;
    uint64_t got = 0;
    while (sp_loader_next(ld, &b) == SP_OK) {
        for (uint32_t i = 0; i < b->n; i++)
            assert_int_equal(b->labels[i], 1);
        got += b->n;
        sp_loader_release(ld, b);
    }
    assert_int_equal(got, want);
    sp_loader_stats st;
    sp_loader_stats_get(ld, &st);
    assert_true(st.blocks_skipped > 0); /* class folders are packed in order */
    sp_dataset *ds;
    assert_int_equal(sp_dataset_open(g_ds, &ds), SP_OK);
    uint64_t all_bytes = sp_dataset_payload_bytes(ds), want_bytes = 0;
    for (uint64_t i = 0; i < sp_dataset_len(ds); i++) {
        sp_value lab;
        sp_sample smp;
        sp_dataset_value(ds, i, SP_COL_LABEL, &lab);
        sp_dataset_sample(ds, i, &smp);
        if (lab.v.i == 1) want_bytes += smp.size;
    }
    sp_dataset_close(ds);
    /* bytes read shrink with selectivity: exactly the matching samples' payloads */
    assert_int_equal(st.bytes_read, want_bytes);
    assert_true(st.bytes_read < all_bytes / 2);
    sp_loader_close(ld);
    o.filter = "lable == 1";
    assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_EINVAL);
    assert_null(ld);
    assert_non_null(strstr(sp_errmsg(), "lable"));
}

static void bad_samples_skip_or_fail(void **state) {
    (void)state;
    char *src = sp__path_join(g_dir, "badsrc");
    for (int i = 0; i < 12; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/c/%02d.jpg", src, i);
        size_t len;
        unsigned char *j = tu_jpeg(48, 40, 3, (uint64_t)(100 + i), &len);
        if (i == 4) /* damage the entropy-coded data; header and end marker stay valid */
            for (size_t k = len / 2; k < len / 2 + 40 && k + 2 < len; k++)
                j[k] = 0xFF;
        assert_int_equal(tu_write_file(p, j, len), 0);
        free(j);
    }
    char *ds = sp__path_join(g_dir, "badds");
    assert_int_equal(sp_pack(src, ds, NULL, NULL), SP_OK);
    sp_loader_opts o;
    small_opts(&o, 2);
    o.batch_size = 4;
    sp_loader *ld;
    assert_int_equal(sp_loader_open(ds, &o, &ld), SP_OK);
    const sp_batch *b;
    uint64_t n = 0;
    while (sp_loader_next(ld, &b) == SP_OK) {
        for (uint32_t i = 0; i < b->n; i++)
            assert_int_not_equal(b->ids[i], 4);
        n += b->n;
        sp_loader_release(ld, b);
    }
    assert_int_equal(n, 12); /* filled with a replacement */
    sp_loader_stats st;
    sp_loader_stats_get(ld, &st);
    assert_int_equal(st.samples_skipped_bad, 1);
    assert_non_null(sp_loader_skipped(ld, 0));
    assert_non_null(strstr(sp_loader_skipped(ld, 0), "record 4 (\"c/04.jpg\")"));
    sp_loader_close(ld);
    o.fail_on_error = 1;
    assert_int_equal(sp_loader_open(ds, &o, &ld), SP_OK);
    sp_status rc;
    while ((rc = sp_loader_next(ld, &b)) == SP_OK)
        sp_loader_release(ld, b);
    assert_int_equal(rc, SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "shard-00000.sps: record 4 (\"c/04.jpg\")"));
    sp_loader_close(ld);
    /* a flipped byte inside a stored payload: the CRC catches it before the decoder sees it */
    char *shard0 = sp__path_join(ds, "shard-00000.sps");
    sp_dataset *dsx;
    assert_int_equal(sp_dataset_open(ds, &dsx), SP_OK);
    sp_sample s7;
    assert_int_equal(sp_dataset_sample(dsx, 7, &s7), SP_OK);
    FILE *f = fopen(shard0, "r+b");
    assert_non_null(f);
    /* the payload's file offset: its address minus the mapping's start (sample 0 is at 4096) */
    sp_sample s0;
    sp_dataset_sample(dsx, 0, &s0);
    long off = 4096 + (long)(s7.data - s0.data) + (long)s7.size / 2;
    sp_dataset_close(dsx);
    fseek(f, off, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(ch ^ 0x01, f);
    fclose(f);
    o.fail_on_error = 0;
    assert_int_equal(sp_loader_open(ds, &o, &ld), SP_OK);
    while (sp_loader_next(ld, &b) == SP_OK)
        sp_loader_release(ld, b);
    sp_loader_stats_get(ld, &st);
    assert_int_equal(st.samples_skipped_bad, 2); /* record 4 (bad JPEG) and record 7 (bad CRC) */
    int found = 0;
    for (size_t i = 0; sp_loader_skipped(ld, i); i++)
        found |=
            strstr(sp_loader_skipped(ld, i), "record 7 (\"c/07.jpg\"): CRC32C mismatch") != NULL;
    assert_true(found);
    sp_loader_close(ld);
    sp__free(shard0);
    sp__free(ds);
    sp__free(src);
}

static void order_is_a_permutation(void **state) {
    (void)state;
    for (int shuffle = 0; shuffle < 3; shuffle++) {
        sp_loader_opts o;
        small_opts(&o, 2);
        o.shuffle = (sp_shuffle)shuffle;
        sp_loader *ld;
        assert_int_equal(sp_loader_open(g_ds, &o, &ld), SP_OK);
        int seen[N_IMAGES] = {0};
        const sp_batch *b;
        uint64_t prev = 0, ascending = 1, first = 1;
        while (sp_loader_next(ld, &b) == SP_OK) {
            for (uint32_t i = 0; i < b->n; i++) {
                seen[b->ids[i]]++;
                if (!first && b->ids[i] < prev) ascending = 0;
                prev = b->ids[i];
                first = 0;
            }
            sp_loader_release(ld, b);
        }
        for (int i = 0; i < N_IMAGES; i++)
            assert_int_equal(seen[i], 1);
        assert_int_equal(ascending, shuffle == SP_SHUFFLE_NONE);
        sp_loader_close(ld);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_batches_for_any_thread_count),
        cmocka_unit_test(fast_decode_is_deterministic),
        cmocka_unit_test(epochs_and_shapes),
        cmocka_unit_test(ranks_cover_the_epoch),
        cmocka_unit_test(resume_continues_exactly),
        cmocka_unit_test(held_batches_stay_intact),
        cmocka_unit_test(filters_select_and_skip_blocks),
        cmocka_unit_test(bad_samples_skip_or_fail),
        cmocka_unit_test(order_is_a_permutation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
