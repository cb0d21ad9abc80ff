/* fuzz_filter.c — fuzzes the loader's filter (src/load/load_filter.c) on arbitrary text.
 *
 * Once, a small dataset is written with the writer API into a temporary folder (nulls, NaN,
 * infinities, int32 and int64 extremes, values beyond 2^53, a sorted timestamp, several shards and
 * blocks) and opened; the folder is removed right away, the mappings stay. Each input is then
 * parsed as filter text. A text that parses must be sound and consistent:
 *   - sp__filter_block_may_match never says 0 for a block that holds a row sp__filter_match
 *     accepts;
 *   - "not (TEXT)" parses too (unless that one extra level passes the nesting limit) and matches
 *     exactly the rows TEXT does not, with the same soundness.
 * A text that does not parse must say where: "filter:LINE:COL: ...". Anything else aborts. */
#include "load/load_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_ROWS 240

static const sp_column extra[] = {{"timestamp", SP_TYPE_INT64},
                                  {"score", SP_TYPE_FLOAT64},
                                  {"big", SP_TYPE_INT64},
                                  {"note", SP_TYPE_STRING}};

static const int64_t big_pool[] = {9007199254740991LL,
                                   9007199254740992LL,
                                   9007199254740993LL,
                                   -9007199254740993LL,
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_MAX - 1,
                                   0,
                                   -1,
                                   4611686018427387905LL};

static void die(const char *what) {
    fprintf(stderr, "fuzz_filter: %s: %s\n", what, sp_errmsg());
    abort();
}

static sp_dataset *dataset(void) {
    static sp_dataset *ds;
    if (ds) return ds;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fuzz_filter.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) die("mkdtemp");
    char path[600];
    snprintf(path, sizeof path, "%s/ds", dir);
    sp_writer_opts o;
    sp_writer_opts_init(&o);
    o.block_size = 4096;     /* 4 rows of 820 bytes per block */
    o.shard_size = 64 << 10; /* several shards */
    sp_dataset_writer *w;
    if (sp_dataset_writer_open(path, extra, 4, &o, &w) < 0) die("writer_open");
    static uint8_t payload[820];
    for (int i = 0; i < N_ROWS; i++) {
        sp_value v[8];
        memset(v, 0, sizeof v);
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        v[0].v.str.s = key;
        v[0].v.str.len = (uint32_t)strlen(key);
        v[1].is_null = i % 7 == 0;
        v[1].v.i = (i / 12 + i % 3) % 10;
        v[2].is_null = i % 11 == 0;
        v[2].v.i = i % 17 == 0 ? INT32_MIN : i % 19 == 0 ? INT32_MAX : (i / 8) * 3 % 100;
        v[3].is_null = (i / 30) % 2 == 0; /* whole blocks of nulls */
        v[3].v.i = i % 50;
        v[4].v.i = 1700000000 + (int64_t)i * 60;
        v[5].is_null = i % 29 == 0;
        v[5].v.f = i % 13 == 0   ? NAN
                   : i % 31 == 0 ? INFINITY
                   : i % 37 == 0 ? -INFINITY
                   : i % 41 == 0 ? -0.0
                   : i % 43 == 0 ? 9007199254740992.0
                                 : (i / 10) * 0.25 - 3 + (i % 4) * 0.1;
        v[6].is_null = i % 23 == 0;
        v[6].v.i = big_pool[(i / 6 + i % 2) % (int)(sizeof big_pool / sizeof *big_pool)];
        v[7].is_null = i % 2;
        v[7].v.str.s = "note";
        v[7].v.str.len = 4;
        memset(payload, i, sizeof payload);
        if (sp_dataset_writer_add(w, payload, sizeof payload, v) < 0) die("writer_add");
    }
    if (sp_dataset_writer_commit(w) < 0) die("writer_commit");
    sp_dataset_writer_close(w);
    if (sp_dataset_open(path, &ds) < 0) die("dataset_open");
    sp__remove_tree(dir); /* the mappings stay valid */
    return ds;
}

/* Checks soundness of f; writes match(i) into m[i]. */
static void check(const sp__filter *f, const sp_dataset *ds, const char *text, uint8_t *m) {
    uint64_t nb = sp_dataset_n_blocks(ds);
    for (uint64_t b = 0; b < nb; b++) {
        sp_block_info bi;
        if (sp_dataset_block(ds, b, &bi) < 0) die("block");
        int may = sp__filter_block_may_match(f, ds, b);
        for (uint64_t i = bi.first_sample; i < bi.first_sample + bi.n_samples; i++) {
            m[i] = (uint8_t)sp__filter_match(f, ds, i);
            if (m[i] > 1) abort();
            if (m[i] && !may) {
                fprintf(stderr,
                        "fuzz_filter: [%s]: block %" PRIu64 " skipped, row %" PRIu64 " matches\n",
                        text, b, i);
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_dataset *ds = dataset();
    char *text = malloc(size + 16);
    if (!text) return 0;
    memcpy(text, "not (", 5);
    memcpy(text + 5, data, size);
    text[5 + size] = '\0';
    char *plain = text + 5;
    sp__filter *f = NULL;
    sp_status rc = sp__filter_parse(plain, ds, &f);
    if (rc < 0) {
        if (f || rc != SP_EINVAL || strncmp(sp_errmsg(), "filter:", 7) != 0) die("bad failure");
        free(text);
        return 0;
    }
    static uint8_t m[N_ROWS], nm[N_ROWS];
    check(f, ds, plain, m);
    sp__filter_free(f);
    /* the negation: "not (" TEXT ")" — TEXT may contain a NUL, which ends it early */
    size_t len = strlen(plain);
    memcpy(plain + len, ")", 2);
    rc = sp__filter_parse(text, ds, &f);
    if (rc < 0) {
        if (!strstr(sp_errmsg(), "nesting deeper")) die("the negation does not parse");
    } else {
        check(f, ds, text, nm);
        sp__filter_free(f);
        for (int i = 0; i < N_ROWS; i++)
            if (nm[i] != !m[i]) {
                fprintf(stderr, "fuzz_filter: [%s]: row %d: %d, negation %d\n", text, i, m[i],
                        nm[i]);
                abort();
            }
    }
    free(text);
    return 0;
}
