/* test_shard.c — the dataset writer and reader: round trips of payloads and every column type,
 * shard and block boundaries, statistics, column reads, atomic commit, and corruption of each
 * section of a shard (open must refuse it, verify must name it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "shard/shard_internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const sp_column extra[] = {
    {"ts", SP_TYPE_INT64}, {"score", SP_TYPE_FLOAT64}, {"note", SP_TYPE_STRING}};

/* Sample i's payload: deterministic bytes of length len_of(i). */
static size_t len_of(uint64_t i) {
    return (size_t)((i * 7919) % 3000) + (i % 5 == 0 ? 0 : 1);
}

static void fill_values(uint64_t i, sp_value v[7], char *keybuf, char *notebuf) {
    memset(v, 0, 7 * sizeof *v);
    snprintf(keybuf, 64, "cls/img_%06llu.jpg", (unsigned long long)i);
    v[0].v.str.s = keybuf;
    v[0].v.str.len = (uint32_t)strlen(keybuf);
    v[1].v.i = (int64_t)(i % 10);
    v[2].v.i = (int64_t)(100 + i % 50);
    v[3].is_null = (i % 7 == 0);
    v[3].v.i = 200;
    v[4].v.i = 1700000000 + (int64_t)i * 60;
    v[5].v.f = (i % 11 == 0) ? NAN : (double)i * 0.5 - 3.0;
    v[6].is_null = (i % 3 == 0);
    snprintf(notebuf, 64, "note \xc3\xa9 %llu", (unsigned long long)i);
    v[6].v.str.s = notebuf;
    v[6].v.str.len = (uint32_t)strlen(notebuf);
}

static uint64_t g_last_shards; /* shard count the writer reported for the last dataset */

/* Writes n samples into dir/name with small shards and blocks. */
static char *write_dataset(const char *dir, const char *name, uint64_t n, uint64_t shard_size,
                           uint64_t block_size) {
    char *path = sp__path_join(dir, name);
    sp_writer_opts o;
    sp_writer_opts_init(&o);
    o.shard_size = shard_size;
    o.block_size = block_size;
    o.params_json = "{\"format\":\"test\"}";
    sp_dataset_writer *w;
    assert_int_equal(sp_dataset_writer_open(path, extra, 3, &o, &w), SP_OK);
    uint8_t *buf = malloc(4096);
    for (uint64_t i = 0; i < n; i++) {
        sp_value v[7];
        char kb[64], nb[64];
        fill_values(i, v, kb, nb);
        size_t len = len_of(i);
        tu_fill_random(buf, len, i);
        assert_int_equal(sp_dataset_writer_add(w, buf, len, v), SP_OK);
    }
    assert_int_equal(sp_dataset_writer_count(w), n);
    assert_int_equal(sp_dataset_writer_commit(w), SP_OK);
    g_last_shards = sp_dataset_writer_shards(w);
    sp_dataset_writer_close(w);
    free(buf);
    return path;
}

static void round_trip(void **state) {
    (void)state;
    char *dir = tu_tmpdir("shard");
    uint64_t n = 3000;
    char *path = write_dataset(dir, "ds", n, 1 << 20, 64 << 10);
    sp_dataset *ds;
    assert_int_equal(sp_dataset_open(path, &ds), SP_OK);
    assert_int_equal(sp_dataset_len(ds), n);
    assert_true(sp_dataset_n_shards(ds) > 3); /* ~4.5 MB of payload in 1 MiB shards */
    assert_int_equal(sp_dataset_n_shards(ds), g_last_shards);
    assert_int_equal(sp_dataset_n_columns(ds), 7);
    assert_string_equal(sp_dataset_column(ds, 4)->name, "ts");
    assert_int_equal(sp_dataset_column(ds, 6)->type, SP_TYPE_STRING);
    assert_int_equal(sp_dataset_column_index(ds, "score"), 5);
    assert_int_equal(sp_dataset_column_index(ds, "nope"), -1);
    uint8_t *buf = malloc(4096);
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        sp_sample s;
        assert_int_equal(sp_dataset_sample(ds, i, &s), SP_OK);
        size_t len = len_of(i);
        tu_fill_random(buf, len, i);
        assert_int_equal(s.size, len);
        assert_memory_equal(s.data, buf, len);
        assert_int_equal(s.crc32c, sp_crc32c(0, buf, len));
        if (i % 97 == 0) { /* the pread path returns the same bytes */
            uint8_t copy[4096];
            size_t got = 0;
            assert_int_equal(sp_dataset_read(ds, i, copy, sizeof copy, &got), SP_OK);
            assert_int_equal(got, len);
            assert_memory_equal(copy, buf, len);
            if (len > 1) {
                assert_int_equal(sp_dataset_read(ds, i, copy, len - 1, &got), SP_EINVAL);
                assert_int_equal(got, len);
            }
        }
        total += len;
        sp_value want[7], got;
        char kb[64], nb[64];
        fill_values(i, want, kb, nb);
        for (size_t c = 0; c < 7; c++) {
            assert_int_equal(sp_dataset_value(ds, i, c, &got), SP_OK);
            int wnull = want[c].is_null || (c == 5 && isnan(want[c].v.f));
            assert_int_equal(got.is_null, wnull);
            if (wnull) continue;
            const sp_column *col = sp_dataset_column(ds, c);
            if (col->type == SP_TYPE_STRING) {
                assert_int_equal(got.v.str.len, want[c].v.str.len);
                assert_memory_equal(got.v.str.s, want[c].v.str.s, got.v.str.len);
            } else if (col->type == SP_TYPE_FLOAT64) {
                assert_true(got.v.f == want[c].v.f);
            } else {
                assert_int_equal(got.v.i, want[c].v.i);
            }
        }
    }
    assert_int_equal(sp_dataset_payload_bytes(ds), total);
    /* shards are contiguous ranges */
    uint64_t next = 0;
    for (size_t k = 0; k < sp_dataset_n_shards(ds); k++) {
        sp_shard_info si;
        assert_int_equal(sp_dataset_shard_info(ds, k, &si), SP_OK);
        assert_int_equal(si.first_sample, next);
        assert_true(si.file_bytes <= (1 << 20));
        assert_true(si.n_blocks > 1);
        next += si.n_samples;
    }
    assert_int_equal(next, n);
    /* errors name what is wrong */
    sp_sample s;
    assert_int_equal(sp_dataset_sample(ds, n, &s), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "out of range"));
    free(buf);
    sp_dataset_close(ds);
    sp__free(path);
    tu_rmrf(dir);
    free(dir);
}

static void columns_and_stats(void **state) {
    (void)state;
    char *dir = tu_tmpdir("shard");
    uint64_t n = 1000;
    char *path = write_dataset(dir, "ds", n, 512 << 10, 32 << 10);
    sp_dataset *ds;
    assert_int_equal(sp_dataset_open(path, &ds), SP_OK);
    int64_t *lab = malloc(n * 8);
    int32_t *h = malloc(n * 4);
    double *sc = malloc(n * 8);
    uint8_t *nulls = malloc(n);
    assert_int_equal(sp_dataset_read_column(ds, 1, lab, n, NULL), SP_OK);
    assert_int_equal(sp_dataset_read_column(ds, 3, h, n, nulls), SP_OK);
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(lab[i], (int64_t)(i % 10));
        assert_int_equal(nulls[i], i % 7 == 0);
        assert_int_equal(h[i], i % 7 == 0 ? 0 : 200);
    }
    assert_int_equal(sp_dataset_read_column(ds, 5, sc, n, nulls), SP_OK);
    assert_true(isnan(sc[0]) && nulls[0]);
    assert_true(sc[1] == -2.5 && !nulls[1]);
    assert_int_equal(sp_dataset_read_column(ds, 0, lab, n, NULL), SP_EINVAL);     /* string */
    assert_int_equal(sp_dataset_read_column(ds, 1, lab, n - 1, NULL), SP_EINVAL); /* too small */

    sp_column_stats st;
    assert_int_equal(sp_dataset_column_stats(ds, 1, &st), SP_OK);
    assert_true(st.has_minmax);
    assert_int_equal(st.min_i, 0);
    assert_int_equal(st.max_i, 9);
    assert_int_equal(sp_dataset_column_stats(ds, 3, &st), SP_OK);
    assert_int_equal(st.null_count, (n + 6) / 7);
    assert_int_equal(st.count + st.null_count, n);
    assert_int_equal(sp_dataset_column_stats(ds, 4, &st), SP_OK);
    assert_int_equal(st.min_i, 1700000000);
    assert_int_equal(st.max_i, 1700000000 + (int64_t)(n - 1) * 60);
    assert_int_equal(sp_dataset_column_stats(ds, 5, &st), SP_OK);
    assert_true(st.min_f == -2.5); /* sample 0 is NaN */
    assert_true(st.max_f == (double)(n - 1) * 0.5 - 3.0);
    assert_int_equal(st.null_count, (n + 10) / 11); /* NaN counts as null */
    assert_int_equal(sp_dataset_column_stats(ds, 0, &st), SP_OK);
    assert_false(st.has_minmax);
    /* per-block stats bound every value in the block (what filter pushdown relies on) */
    const char *manifest = sp_dataset_manifest(ds);
    assert_non_null(strstr(manifest, "\"format\": \"test\""));
    free(lab);
    free(h);
    free(sc);
    free(nulls);
    sp_dataset_close(ds);
    sp__free(path);
    tu_rmrf(dir);
    free(dir);
}

static void big_sample_and_empty_dataset(void **state) {
    (void)state;
    char *dir = tu_tmpdir("shard");
    char *path = sp__path_join(dir, "big");
    sp_writer_opts o;
    sp_writer_opts_init(&o);
    o.block_size = 4096;
    o.shard_size = 64 << 10;
    sp_dataset_writer *w;
    assert_int_equal(sp_dataset_writer_open(path, NULL, 0, &o, &w), SP_OK);
    size_t big = 200000; /* bigger than a block and a shard: gets its own */
    uint8_t *buf = malloc(big);
    tu_fill_random(buf, big, 3);
    sp_value v[4] = {{0}};
    v[0].v.str.s = "a";
    v[0].v.str.len = 1;
    assert_int_equal(sp_dataset_writer_add(w, buf, 10, v), SP_OK);
    assert_int_equal(sp_dataset_writer_add(w, buf, big, v), SP_OK);
    assert_int_equal(sp_dataset_writer_add(w, buf, 0, v), SP_OK);
    assert_int_equal(sp_dataset_writer_commit(w), SP_OK);
    sp_dataset_writer_close(w);
    sp_dataset *ds;
    assert_int_equal(sp_dataset_open(path, &ds), SP_OK);
    assert_int_equal(sp_dataset_len(ds), 3);
    sp_sample s;
    assert_int_equal(sp_dataset_sample(ds, 1, &s), SP_OK);
    assert_int_equal(s.size, big);
    assert_memory_equal(s.data, buf, big);
    assert_int_equal(sp_dataset_sample(ds, 2, &s), SP_OK);
    assert_int_equal(s.size, 0);
    sp_dataset_close(ds);
    assert_int_equal(sp_dataset_verify(path, NULL, NULL), SP_OK);
    sp__free(path);

    path = sp__path_join(dir, "empty");
    assert_int_equal(sp_dataset_writer_open(path, NULL, 0, NULL, &w), SP_OK);
    assert_int_equal(sp_dataset_writer_commit(w), SP_OK);
    sp_dataset_writer_close(w);
    assert_int_equal(sp_dataset_open(path, &ds), SP_OK);
    assert_int_equal(sp_dataset_len(ds), 0);
    assert_int_equal(sp_dataset_n_shards(ds), 0);
    sp_dataset_close(ds);
    sp__free(path);
    free(buf);
    tu_rmrf(dir);
    free(dir);
}

static void nothing_visible_until_commit(void **state) {
    (void)state;
    char *dir = tu_tmpdir("shard");
    char *path = sp__path_join(dir, "ds");
    sp_dataset_writer *w;
    assert_int_equal(sp_dataset_writer_open(path, NULL, 0, NULL, &w), SP_OK);
    sp_value v[4] = {{0}};
    assert_int_equal(sp_dataset_writer_add(w, "abc", 3, v), SP_OK);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    sp_dataset_writer_close(w); /* abandoned: removes its temporary folder */
    assert_int_not_equal(stat(path, &st), 0);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
    assert_int_equal(system(cmd), 0);
    /* an existing target is refused, before and at commit */
    mkdir(path, 0755);
    assert_int_equal(sp_dataset_writer_open(path, NULL, 0, NULL, &w), SP_EEXIST);
    assert_null(w);
    rmdir(path);
    assert_int_equal(sp_dataset_writer_open(path, NULL, 0, NULL, &w), SP_OK);
    mkdir(path, 0755);
    assert_int_equal(sp_dataset_writer_commit(w), SP_EEXIST);
    sp_dataset_writer_close(w);
    rmdir(path);
    /* bad columns */
    sp_column bad[] = {{"label", SP_TYPE_INT64}};
    assert_int_equal(sp_dataset_writer_open(path, bad, 1, NULL, &w), SP_EINVAL);
    sp_column bad2[] = {{"9x", SP_TYPE_INT64}};
    assert_int_equal(sp_dataset_writer_open(path, bad2, 1, NULL, &w), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "9x"));
    sp__free(path);
    tu_rmrf(dir);
    free(dir);
}

static void copy_file(const char *from, const char *to) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static void flip_byte(const char *path, uint64_t off) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

typedef struct seen {
    int n;
    char first[1024];
    int64_t sample;
} seen;

static void on_issue(void *user, const char *shard, int64_t sample, const char *key,
                     const char *msg) {
    (void)shard;
    (void)key;
    seen *s = user;
    if (s->n++ == 0) {
        snprintf(s->first, sizeof s->first, "%s", msg);
        s->sample = sample;
    }
}

/* Flips one byte in each section of shard 0 and checks that open refuses (metadata) or verify
 * names the sample (payload), and that the message says where. */
static void corruption_in_each_section(void **state) {
    (void)state;
    char *dir = tu_tmpdir("shard");
    char *clean = write_dataset(dir, "clean", 400, 1 << 20, 16 << 10);
    assert_int_equal(sp_dataset_verify(clean, NULL, NULL), SP_OK);
    sp_dataset *ds;
    assert_int_equal(sp_dataset_open(clean, &ds), SP_OK);
    sp_sample s5;
    assert_int_equal(sp_dataset_sample(ds, 5, &s5), SP_OK);
    sp_shard_info si;
    sp_dataset_shard_info(ds, 0, &si);
    uint64_t size = si.file_bytes;
    sp_dataset_close(ds);

    /* find the sections of shard 0 */
    char *shard0 = sp__path_join(clean, "shard-00000.sps");
    const uint8_t *map;
    uint64_t msize;
    assert_int_equal(sp__map_file(shard0, 0, &map, &msize), SP_OK);
    sp__shard sh;
    assert_int_equal(sp__shard_parse("x", map, msize, &sh), SP_OK);
    uint64_t off5;
    uint32_t len5, crc5;
    sp__shard_entry(&sh, 5, &off5, &len5, &crc5);
    assert_int_equal(len5, s5.size);
    uint64_t payload_off = off5 + len5 / 2;
    struct {
        const char *what;
        uint64_t off;
        int open_fails;
    } cases[] = {
        {"header magic", 2, 1},
        {"payload of record 5", payload_off, 0},
        {"schema", (uint64_t)(sh.blocks - map) - 8, 1},
        {"block table", (uint64_t)(sh.blocks - map) + 3, 1},
        {"index", (uint64_t)(sh.index - map) + 16 * 7 + 9, 1},
        {"column values", (uint64_t)(sh.values[1] - map) + 8, 1},
        {"strings", (uint64_t)(sh.strings - map) + 4, 1},
        {"stats", (uint64_t)(sh.stats - map) + 1, 1},
        {"footer", size - 100, 1},
        {"footer hash", size - 2, 1},
    };
    sp__unmap(map, msize);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", k);
        char *bad = sp__path_join(dir, name);
        copy_file(clean, bad);
        char *bad0 = sp__path_join(bad, "shard-00000.sps");
        flip_byte(bad0, cases[k].off);
        sp_status rc = sp_dataset_open(bad, &ds);
        if (cases[k].open_fails) {
            if (rc == SP_OK) fail_msg("open accepted a corrupt %s", cases[k].what);
            assert_true(rc == SP_ECORRUPT || rc == SP_EUNSUPPORTED);
            assert_non_null(strstr(sp_errmsg(), "shard-00000.sps"));
        } else {
            assert_int_equal(rc, SP_OK);
            sp_dataset_close(ds);
        }
        seen s = {0};
        sp_verify_opts vo;
        sp_verify_opts_init(&vo);
        vo.on_issue = on_issue;
        vo.user = &s;
        vo.threads = 2;
        sp_verify_report rep;
        assert_int_equal(sp_dataset_verify(bad, &vo, &rep), SP_ECORRUPT);
        assert_true(s.n >= 1);
        assert_int_equal(rep.shards_bad, 1);
        assert_non_null(strstr(s.first, "shard-00000.sps"));
        if (!cases[k].open_fails) {
            assert_int_equal(s.sample, 5);
            assert_non_null(strstr(s.first, "record 5"));
            assert_non_null(strstr(s.first, "CRC32C mismatch"));
            assert_non_null(strstr(s.first, "img_000005.jpg"));
            assert_int_equal(rep.samples_bad, 1);
        }
        sp__free(bad0);
        sp__free(bad);
    }
    /* a truncated shard and a manifest that lies */
    char *bad = sp__path_join(dir, "trunc");
    copy_file(clean, bad);
    char *bad0 = sp__path_join(bad, "shard-00000.sps");
    assert_int_equal(truncate(bad0, (off_t)(size - 1000)), 0);
    assert_int_equal(sp_dataset_open(bad, &ds), SP_ECORRUPT);
    assert_int_equal(sp_dataset_verify(bad, NULL, NULL), SP_ECORRUPT);
    sp__free(bad0);
    bad0 = sp__path_join(bad, "manifest.json");
    unlink(bad0);
    assert_int_equal(sp_dataset_open(bad, &ds), SP_ENOTFOUND);
    assert_non_null(strstr(sp_errmsg(), "manifest.json"));
    sp__free(bad0);
    sp__free(bad);
    sp__free(shard0);
    sp__free(clean);
    tu_rmrf(dir);
    free(dir);
}

/* Random garbage and random mutations of a valid shard never crash the parser. */
static void hostile_bytes(void **state) {
    (void)state;
    char *dir = tu_tmpdir("shard");
    char *clean = write_dataset(dir, "clean", 50, 1 << 20, 4096);
    char *shard0 = sp__path_join(clean, "shard-00000.sps");
    uint8_t *orig;
    size_t n;
    assert_int_equal(sp__read_file(shard0, &orig, &n), SP_OK);
    uint8_t *m = malloc(n);
    for (uint64_t trial = 0; trial < 3000; trial++) {
        memcpy(m, orig, n);
        uint64_t r = trial * 0x9E3779B97F4A7C15ull;
        size_t len = n;
        if (trial % 3 == 0) len = (size_t)(r % n);
        size_t pos = (size_t)((r >> 20) % n);
        m[pos] ^= (uint8_t)(1u << (trial % 8));
        sp__shard s;
        if (sp__shard_parse("fuzz", m, len, &s) == SP_OK) {
            for (uint64_t i = 0; i < s.n_samples; i++) {
                uint64_t off;
                uint32_t l, crc;
                sp__shard_entry(&s, i, &off, &l, &crc);
                assert_true(off + l <= len);
                for (uint32_t c = 0; c < s.n_columns; c++) {
                    sp_value v;
                    sp__shard_value(&s, i, c, &v);
                }
            }
        }
    }
    free(m);
    sp__free(orig);
    sp__free(shard0);
    sp__free(clean);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(columns_and_stats),
        cmocka_unit_test(big_sample_and_empty_dataset),
        cmocka_unit_test(nothing_visible_until_commit),
        cmocka_unit_test(corruption_in_each_section),
        cmocka_unit_test(hostile_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
