/* test_load_filter.c — the loader's filter: parse errors with their exact messages, exact
 * comparisons between int64 columns and decimal literals (and float64 columns and integer
 * literals), null semantics, a property test against an independent brute-force evaluator
 * (~1000 random filters: match must agree on every row, block_may_match must never skip a block
 * holding a match), block skipping on a sorted column, and out-of-memory paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "load/load_internal.h"
#include "testutil.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ test datasets */

enum { C_KEY, C_LABEL, C_WIDTH, C_HEIGHT, C_TS, C_SCORE, C_BIG, C_NOTE, NCOLS };
static const char *const col_names[NCOLS] = {"key",       "label", "width", "height",
                                             "timestamp", "score", "big",   "note"};
static const sp_column extra[] = {{"timestamp", SP_TYPE_INT64},
                                  {"score", SP_TYPE_FLOAT64},
                                  {"big", SP_TYPE_INT64},
                                  {"note", SP_TYPE_STRING}};

/* The test's own copy of every value, for the brute-force evaluator. */
typedef struct row {
    uint8_t null[NCOLS];
    int64_t i[NCOLS]; /* int columns */
    double f;         /* score */
} row;

typedef struct tds {
    char *dir, *path;
    sp_dataset *ds;
    row *rows;
    uint64_t n;
} tds;

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static unsigned rnd(uint64_t *s, unsigned n) {
    return (unsigned)(rng_next(s) % n);
}

static const int64_t big_pool[] = {9007199254740991LL,
                                   9007199254740992LL,
                                   9007199254740993LL,
                                   9007199254740994LL,
                                   -9007199254740993LL,
                                   INT64_MAX,
                                   INT64_MAX - 1,
                                   INT64_MIN,
                                   INT64_MIN + 1,
                                   4611686018427387905LL,
                                   0,
                                   -1,
                                   1000,
                                   -1000};

static void gen_row(uint64_t i, uint64_t *s, row *r) {
    memset(r, 0, sizeof *r);
    r->null[C_KEY] = 0;
    /* label: clustered by block, some nulls */
    r->null[C_LABEL] = rnd(s, 10) == 0;
    r->i[C_LABEL] = (int64_t)((i / 50 + rnd(s, 3)) % 10);
    /* width: int32 with extremes */
    unsigned k = rnd(s, 20);
    r->null[C_WIDTH] = k == 0;
    r->i[C_WIDTH] = k == 1   ? INT32_MIN
                    : k == 2 ? INT32_MAX
                    : k == 3 ? (int64_t)(int32_t)(uint32_t)rng_next(s)
                             : (int64_t)((i / 40) * 7 % 500 + rnd(s, 5));
    /* height: null over whole regions (all-null blocks) */
    r->null[C_HEIGHT] = (i / 100) % 3 == 0;
    r->i[C_HEIGHT] = (int64_t)rnd(s, 1000);
    /* timestamp: increasing */
    r->i[C_TS] = 1700000000 + (int64_t)i * 60;
    /* score: NaN (stored as null), nulls, infinities, zeros of both signs, 2^53, 0.1, clusters */
    k = rnd(s, 40);
    double f;
    switch (k) {
    case 0:
    case 1:
        f = NAN;
        break;
    case 2:
        f = INFINITY;
        break;
    case 3:
        f = -INFINITY;
        break;
    case 4:
        f = -0.0;
        break;
    case 5:
        f = 0.0;
        break;
    case 6:
    case 7:
        f = 9007199254740992.0;
        break;
    case 8:
        f = 0.1;
        break;
    case 9:
        f = 1e300;
        break;
    case 10:
        f = -2.5;
        break;
    default:
        f = (double)((i / 30) % 20) * 0.25 - 2.0 + (double)rnd(s, 8) * 0.125;
        break;
    }
    r->f = f;
    r->null[C_SCORE] = isnan(f) || k == 11;
    /* big: values where int64 -> double loses precision */
    k = rnd(s, 20);
    r->null[C_BIG] = k == 0;
    r->i[C_BIG] = k == 1 ? (int64_t)rng_next(s)
                         : big_pool[(i / 20 + rnd(s, 3)) % (sizeof big_pool / sizeof *big_pool)];
    r->null[C_NOTE] = rnd(s, 2) == 0;
}

/* Writes n rows (payloads of random length so blocks vary) and opens the dataset. */
static void make_ds(tds *t, const char *tag, uint64_t n, uint64_t block_size, uint64_t shard_size,
                    int fixed_len, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->dir = tu_tmpdir(tag);
    assert_non_null(t->dir);
    t->path = sp__path_join(t->dir, "ds");
    t->n = n;
    t->rows = calloc(n, sizeof *t->rows);
    sp_writer_opts o;
    sp_writer_opts_init(&o);
    o.block_size = block_size;
    o.shard_size = shard_size;
    sp_dataset_writer *w;
    assert_int_equal(sp_dataset_writer_open(t->path, extra, 4, &o, &w), SP_OK);
    uint64_t s = seed;
    uint8_t payload[1024];
    for (uint64_t i = 0; i < n; i++) {
        row *r = &t->rows[i];
        gen_row(i, &s, r);
        char key[32], note[32];
        snprintf(key, sizeof key, "k%06" PRIu64, i);
        snprintf(note, sizeof note, "note %" PRIu64, i % 7);
        sp_value v[NCOLS];
        memset(v, 0, sizeof v);
        for (int c = 0; c < NCOLS; c++) {
            v[c].is_null = r->null[c];
            v[c].v.i = r->i[c];
        }
        v[C_SCORE].is_null = r->null[C_SCORE] && !isnan(r->f);
        v[C_SCORE].v.f = r->f;
        v[C_KEY].v.str.s = key;
        v[C_KEY].v.str.len = (uint32_t)strlen(key);
        v[C_NOTE].v.str.s = note;
        v[C_NOTE].v.str.len = (uint32_t)strlen(note);
        size_t len = fixed_len ? (size_t)fixed_len : 1 + rnd(&s, 800);
        memset(payload, (int)(i & 0xff), len);
        assert_int_equal(sp_dataset_writer_add(w, payload, len, v), SP_OK);
    }
    assert_int_equal(sp_dataset_writer_commit(w), SP_OK);
    sp_dataset_writer_close(w);
    assert_int_equal(sp_dataset_open(t->path, &t->ds), SP_OK);
    assert_int_equal(sp_dataset_len(t->ds), n);
}

static void free_ds(tds *t) {
    sp_dataset_close(t->ds);
    tu_rmrf(t->dir);
    free(t->dir);
    sp__free(t->path);
    free(t->rows);
}

static tds g_prop;   /* ~300 blocks of varying size over several shards */
static tds g_sorted; /* 500 blocks of exactly 10 rows */

static int group_setup(void **state) {
    (void)state;
    make_ds(&g_prop, "filter-prop", 3000, 4096, 512 << 10, 0, 42);
    make_ds(&g_sorted, "filter-sorted", 5000, 4100, 0, 410, 7);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    free_ds(&g_prop);
    free_ds(&g_sorted);
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Parses `text`, expecting failure with exactly `msg`. */
static void expect_error(const char *text, const char *msg) {
    sp__filter *f = (sp__filter *)(uintptr_t)1;
    sp_status rc = sp__filter_parse(text, g_prop.ds, &f);
    if (rc == SP_OK) {
        sp__filter_free(f);
        fail_msg("filter %s parsed, expected: %s", text, msg);
    }
    assert_int_equal(rc, SP_EINVAL);
    assert_null(f);
    if (strcmp(sp_errmsg(), msg) != 0)
        fail_msg("filter [%s]\n  got:  %s\n  want: %s", text, sp_errmsg(), msg);
}

/* Rows matching `text` on ds (checking every block's may_match on the way); *skipped counts
 * the blocks skipped. */
static uint64_t count_matches(const tds *t, const char *text, uint64_t *skipped) {
    sp__filter *f;
    if (sp__filter_parse(text, t->ds, &f) != SP_OK) fail_msg("[%s]: %s", text, sp_errmsg());
    uint64_t n = 0, sk = 0, nb = sp_dataset_n_blocks(t->ds);
    for (uint64_t b = 0; b < nb; b++) {
        sp_block_info bi;
        assert_int_equal(sp_dataset_block(t->ds, b, &bi), SP_OK);
        int may = sp__filter_block_may_match(f, t->ds, b);
        sk += !may;
        for (uint64_t i = bi.first_sample; i < bi.first_sample + bi.n_samples; i++) {
            int m = sp__filter_match(f, t->ds, i);
            if (m && !may)
                fail_msg("[%s]: block %" PRIu64 " skipped, row %" PRIu64 " matches", text, b, i);
            n += (uint64_t)m;
        }
    }
    sp__filter_free(f);
    if (skipped) *skipped = sk;
    return n;
}

/* ------------------------------------------------------------ the brute-force evaluator */

typedef struct lit {
    int is_int;
    int64_t i;
    double d;
    char text[48];
} lit;

enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
static const char *const op_text[] = {"==", "!=", "<", "<=", ">", ">="};

enum { K_CMP, K_IN, K_NOT, K_AND, K_OR };
typedef struct tnode {
    int kind, col, op, neg, n;
    lit lits[5];
    struct tnode *kids[4];
} tnode;

/* Exact sign of (value - literal): long double holds every int64 and every double exactly. */
static int cmp_exact(const row *r, int col, const lit *L) {
    long double v = col == C_SCORE ? (long double)r->f : (long double)r->i[col];
    long double l = L->is_int ? (long double)L->i : (long double)L->d;
    return (v > l) - (v < l);
}

static int oracle(const tnode *n, const row *r) {
    switch (n->kind) {
    case K_NOT:
        return !oracle(n->kids[0], r);
    case K_AND:
        for (int k = 0; k < n->n; k++)
            if (!oracle(n->kids[k], r)) return 0;
        return 1;
    case K_OR:
        for (int k = 0; k < n->n; k++)
            if (oracle(n->kids[k], r)) return 1;
        return 0;
    case K_IN: {
        if (r->null[n->col]) return n->neg;
        int in = 0;
        for (int k = 0; k < n->n; k++)
            in |= cmp_exact(r, n->col, &n->lits[k]) == 0;
        return in ^ n->neg;
    }
    default: {
        if (r->null[n->col]) return n->op == OP_NE;
        int c = cmp_exact(r, n->col, &n->lits[0]);
        switch (n->op) {
        case OP_EQ:
            return c == 0;
        case OP_NE:
            return c != 0;
        case OP_LT:
            return c < 0;
        case OP_LE:
            return c <= 0;
        case OP_GT:
            return c > 0;
        default:
            return c >= 0;
        }
    }
    }
}

/* ------------------------------------------------------------ random filters */

static void lit_from_text(lit *L, const char *text) {
    snprintf(L->text, sizeof L->text, "%s", text);
    L->is_int = strpbrk(text, ".eE") == NULL;
    if (L->is_int)
        L->i = strtoll(text, NULL, 10);
    else
        L->d = strtod(text, NULL);
}
static void lit_int(lit *L, int64_t v) {
    char b[48];
    snprintf(b, sizeof b, "%" PRId64, v);
    lit_from_text(L, b);
}
static void lit_dbl(lit *L, double d) {
    char b[48];
    snprintf(b, sizeof b, "%.17g", d);
    if (!strpbrk(b, ".eE")) strcat(b, ".0");
    lit_from_text(L, b);
}

static const char *const specials[] = {"0",
                                       "-0.0",
                                       "2.5",
                                       "-2.5",
                                       "0.1",
                                       "1e-320",
                                       "1e300",
                                       "-1e300",
                                       "9007199254740992",
                                       "9007199254740993",
                                       "9007199254740993.0",
                                       "9007199254740992.5",
                                       "-9007199254740993",
                                       "9223372036854775807",
                                       "-9223372036854775808",
                                       "9223372036854775807.0",
                                       "-9223372036854775808.0",
                                       "9.2233720368547748e18",
                                       "-9.2233720368547758e18",
                                       "1.7e9",
                                       "1700000000",
                                       "2147483647",
                                       "-2147483648",
                                       "2147483647.5",
                                       "-2147483648.5",
                                       "4.5",
                                       "1e3"};

static void gen_lit(uint64_t *s, const tds *t, int col, lit *L) {
    const row *r = &t->rows[rnd(s, (unsigned)t->n)];
    unsigned k = rnd(s, 10);
    if (k < 2) {
        lit_from_text(L, specials[rnd(s, sizeof specials / sizeof *specials)]);
        return;
    }
    if (col == C_SCORE) {
        double f = r->f;
        if (isnan(f) || isinf(f)) f = (double)rnd(s, 5) - 2.0;
        if (k < 5)
            lit_dbl(L, f);
        else if (k < 6)
            lit_dbl(L, nextafter(f, k & 1 ? INFINITY : -INFINITY));
        else if (k < 8 && fabs(f) < 9e18 && floor(f) == f)
            lit_int(L, (int64_t)f + (int64_t)rnd(s, 3) - 1);
        else
            lit_dbl(L, f + 0.5 * ((double)rnd(s, 3) - 1.0));
        return;
    }
    int64_t v = r->i[col];
    if (k < 5)
        lit_int(L, v);
    else if (k < 7)
        lit_int(L, v == INT64_MAX ? v : v + 1 - 2 * (int64_t)(k & 1 && v != INT64_MIN));
    else if (k < 8)
        lit_dbl(L, (double)v);
    else
        lit_dbl(L, (double)v + (k & 1 ? 0.5 : -0.5));
}

static const int scalar_cols[] = {C_LABEL, C_WIDTH, C_HEIGHT, C_TS, C_SCORE, C_BIG};

static tnode *gen_node(uint64_t *s, const tds *t, tnode *pool, int *used, int depth) {
    tnode *n = &pool[(*used)++];
    memset(n, 0, sizeof *n);
    unsigned k = rnd(s, 10);
    if (depth >= 4 || k < 4) {
        n->col = scalar_cols[rnd(s, 6)];
        if (rnd(s, 10) < 7) {
            n->kind = K_CMP;
            n->op = (int)rnd(s, 6);
            gen_lit(s, t, n->col, &n->lits[0]);
        } else {
            n->kind = K_IN;
            n->neg = rnd(s, 3) == 0;
            n->n = 1 + (int)rnd(s, 5);
            for (int j = 0; j < n->n; j++)
                gen_lit(s, t, n->col, &n->lits[j]);
        }
        return n;
    }
    if (k < 6) {
        n->kind = K_NOT;
        n->n = 1;
        n->kids[0] = gen_node(s, t, pool, used, depth + 1);
        return n;
    }
    n->kind = k < 8 ? K_AND : K_OR;
    n->n = 2 + (int)rnd(s, 3);
    for (int j = 0; j < n->n; j++)
        n->kids[j] = gen_node(s, t, pool, used, depth + 1);
    return n;
}

typedef struct sbuf {
    char b[1 << 16];
    size_t len;
} sbuf;

static void put(sbuf *o, const char *str) {
    size_t l = strlen(str);
    assert_true(o->len + l < sizeof o->b);
    memcpy(o->b + o->len, str, l + 1);
    o->len += l;
}
/* optional whitespace */
static void ws(sbuf *o, uint64_t *s) {
    static const char *const w[] = {"", "", " ", " ", "  ", "\n", "\t"};
    put(o, w[rnd(s, 7)]);
}

static void print_node(sbuf *o, uint64_t *s, const tnode *n) {
    int extra_parens = rnd(s, 8) == 0;
    if (extra_parens) {
        put(o, "(");
        ws(o, s);
    }
    switch (n->kind) {
    case K_CMP:
        put(o, col_names[n->col]);
        ws(o, s);
        put(o, n->op == OP_EQ && rnd(s, 3) == 0 ? "=" : op_text[n->op]);
        ws(o, s);
        put(o, n->lits[0].text);
        break;
    case K_IN:
        put(o, col_names[n->col]);
        put(o, n->neg ? " not in" : " in");
        ws(o, s);
        put(o, "{");
        for (int j = 0; j < n->n; j++) {
            if (j) {
                ws(o, s);
                put(o, ",");
            }
            ws(o, s);
            put(o, n->lits[j].text);
        }
        ws(o, s);
        put(o, "}");
        break;
    case K_NOT: {
        const tnode *c = n->kids[0];
        put(o, "not");
        if (c->kind == K_AND || c->kind == K_OR) {
            ws(o, s);
            put(o, "(");
            print_node(o, s, c);
            put(o, ")");
        } else {
            put(o, " ");
            print_node(o, s, c);
        }
        break;
    }
    default:
        for (int j = 0; j < n->n; j++) {
            const tnode *c = n->kids[j];
            if (j) put(o, n->kind == K_AND ? " and " : " or ");
            if (n->kind == K_AND && c->kind == K_OR) {
                put(o, "(");
                print_node(o, s, c);
                put(o, ")");
            } else {
                print_node(o, s, c);
            }
        }
        break;
    }
    if (extra_parens) {
        ws(o, s);
        put(o, ")");
    }
}

/* ------------------------------------------------------------ tests */

static void property_random_filters(void **state) {
    (void)state;
    if (LDBL_MANT_DIG < 64) skip(); /* the oracle compares exactly in long double */
    const tds *t = &g_prop;
    uint64_t nb = sp_dataset_n_blocks(t->ds);
    assert_true(nb > 100);
    assert_true(sp_dataset_n_shards(t->ds) > 1);
    uint64_t s = 12345, filters = 0, skipped = 0, empty_blocks = 0, matched = 0, rows_checked = 0;
    tnode pool[512];
    for (int iter = 0; iter < 1000; iter++) {
        int used = 0;
        tnode *root = gen_node(&s, t, pool, &used, 0);
        static sbuf o;
        o.len = 0;
        o.b[0] = '\0';
        ws(&o, &s);
        print_node(&o, &s, root);
        ws(&o, &s);
        sp__filter *f;
        if (sp__filter_parse(o.b, t->ds, &f) != SP_OK)
            fail_msg("filter [%s] did not parse: %s", o.b, sp_errmsg());
        filters++;
        for (uint64_t b = 0; b < nb; b++) {
            sp_block_info bi;
            assert_int_equal(sp_dataset_block(t->ds, b, &bi), SP_OK);
            int may = sp__filter_block_may_match(f, t->ds, b), any = 0;
            for (uint64_t i = bi.first_sample; i < bi.first_sample + bi.n_samples; i++) {
                int want = oracle(root, &t->rows[i]), got = sp__filter_match(f, t->ds, i);
                if (got != want)
                    fail_msg("filter [%s], row %" PRIu64 ": match %d, brute force %d", o.b, i, got,
                             want);
                any |= want;
                matched += (uint64_t)want;
                rows_checked++;
            }
            if (any && !may)
                fail_msg("filter [%s]: block %" PRIu64 " skipped but holds a match", o.b, b);
            skipped += !may;
            empty_blocks += !any;
        }
        sp__filter_free(f);
    }
    printf("  %" PRIu64 " filters, %" PRIu64 " rows checked (%" PRIu64 " matches), %" PRIu64
           " of %" PRIu64 " blocks without a match skipped\n",
           filters, rows_checked, matched, skipped, empty_blocks);
    /* the test is not vacuous: filters both match and skip */
    assert_true(matched > rows_checked / 20 && matched < rows_checked - rows_checked / 20);
    assert_true(skipped > empty_blocks / 4);
}

static void parse_errors(void **state) {
    (void)state;
    expect_error("lable == 1", "filter:1:1: unknown column \"lable\" (did you mean \"label\"?)");
    expect_error("label == 1 and lable < 3",
                 "filter:1:16: unknown column \"lable\" (did you mean \"label\"?)");
    expect_error("label == 1 and\n  foo > 2",
                 "filter:2:3: unknown column \"foo\" (columns: key, label, width, height, "
                 "timestamp, score, big, note)");
    expect_error("Label == 1", "filter:1:1: unknown column \"Label\" (did you mean \"label\"?)");
    expect_error("NOT label == 1",
                 "filter:1:1: unknown column \"NOT\" (keywords are lowercase: \"not\")");
    expect_error("label in {x}", "filter:1:11: expected a number after \"in {\", found \"x\"");
    expect_error("width in {1, x}", "filter:1:14: expected a number after \",\", found \"x\"");
    expect_error("label in {}", "filter:1:11: expected a number after \"in {\", found \"}\"");
    expect_error("label in {1,}", "filter:1:13: expected a number after \",\", found \"}\"");
    expect_error("label in {1 2}", "filter:1:13: expected \",\" or \"}\" in the set, found \"2\"");
    expect_error("label in {1", "filter:1:12: expected \",\" or \"}\" in the set, found the end "
                                "of the filter");
    expect_error("label in 1", "filter:1:10: expected \"{\" after \"in\", found \"1\"");
    expect_error("label not 1", "filter:1:11: expected \"in\" after \"not\", found \"1\"");
    expect_error("key == 1",
                 "filter:1:1: column \"key\" is a string column; filters work on scalar columns");
    expect_error("label == 1 or note in {1}",
                 "filter:1:15: column \"note\" is a string column; filters work on scalar "
                 "columns");
    expect_error("", "filter:1:1: empty filter (expected a column name, \"not\" or \"(\")");
    expect_error("  \n ", "filter:2:2: empty filter (expected a column name, \"not\" or \"(\")");
    expect_error("label == 1 x",
                 "filter:1:12: expected \"and\", \"or\" or the end of the filter, found \"x\"");
    expect_error("label == 1 AND width > 3",
                 "filter:1:12: expected \"and\", \"or\" or the end of the filter, found \"AND\" "
                 "(keywords are lowercase: \"and\")");
    expect_error("(label == 1", "filter:1:12: expected \")\" to close the \"(\" at 1:1, found "
                                "the end of the filter");
    expect_error("(label == 1 or (width > 2)",
                 "filter:1:27: expected \")\" to close the \"(\" at 1:1, found the end of the "
                 "filter");
    expect_error("label == 1)", "filter:1:11: unexpected \")\" without a matching \"(\"");
    expect_error("()", "filter:1:2: expected a column name, \"not\" or \"(\" after \"(\", found "
                       "\")\"");
    expect_error("label == 1 and", "filter:1:15: expected a column name, \"not\" or \"(\" after "
                                   "\"and\", found the end of the filter");
    expect_error("not", "filter:1:4: expected a column name, \"not\" or \"(\" after \"not\", "
                        "found the end of the filter");
    expect_error("3 < label", "filter:1:1: expected a column name, \"not\" or \"(\", found the "
                              "number \"3\" (write the column first, as in \"label < 3\")");
    expect_error("label", "filter:1:6: expected a comparison (\"==\", \"!=\", \"<\", \"<=\", "
                          "\">\", \">=\") or \"in\" after column \"label\", found the end of the "
                          "filter");
    expect_error("label < x", "filter:1:9: expected a number after \"<\", found \"x\"");
    expect_error("label === 1", "filter:1:9: expected a number after \"==\", found \"=\"");
    expect_error("label ! 1", "filter:1:7: unexpected \"!\" (write \"!=\", or \"not\" to negate)");
    expect_error("label == 1 && width == 2", "filter:1:12: unexpected \"&\" (write \"and\")");
    expect_error("label == 1 || width == 2", "filter:1:12: unexpected \"|\" (write \"or\")");
    expect_error("label == 1 \xc3\xa9", "filter:1:12: unexpected character \"\\xc3\"");
    expect_error("label - 1 == 2", "filter:1:7: unexpected character \"-\"");
    expect_error("label < 1.2.3", "filter:1:9: malformed number \"1.2.3\"");
    expect_error("label < 1e", "filter:1:9: malformed number \"1e\"");
    expect_error("label < 0x10", "filter:1:9: malformed number \"0x10\"");
    expect_error("label<1and width>2", "filter:1:7: malformed number \"1and\"");
    expect_error("label == 99999999999999999999",
                 "filter:1:10: number \"99999999999999999999\" is out of range: integers must fit "
                 "in 64 bits (write it as a decimal, e.g. 1e20, to compare as a float)");
    expect_error("label == 9223372036854775808",
                 "filter:1:10: number \"9223372036854775808\" is out of range: integers must fit "
                 "in 64 bits (write it as a decimal, e.g. 1e20, to compare as a float)");
    expect_error("label > -9223372036854775809",
                 "filter:1:9: number \"-9223372036854775809\" is out of range: integers must fit "
                 "in 64 bits (write it as a decimal, e.g. 1e20, to compare as a float)");
    expect_error("score > 1e400",
                 "filter:1:9: number \"1e400\" is out of range for a 64-bit float");
    expect_error("score in {1, -1.8e308}",
                 "filter:1:14: number \"-1.8e308\" is out of range for a 64-bit float");
    /* long tokens are shortened in messages */
    expect_error("label == 1 and aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                 "aaaaaaaaaaaaaaaaaaaa == 1",
                 "filter:1:16: unknown column \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
                 "(columns: key, label, width, height, timestamp, score, big, note)");

    /* the extremes parse */
    const char *ok[] = {"label == -9223372036854775808",
                        "label <= 9223372036854775807",
                        "score > 1e-400",
                        "score < -1.7976931348623157e308",
                        "label = 1",
                        "label==1",
                        "label==-1",
                        "label<-1",
                        "label<=+1",
                        "score>.5",
                        "score>-.5e1",
                        "not not label == 1",
                        "label not in {1,2,3}",
                        "(((label == 1)))",
                        "label == 1 or width == 2 and height == 3"};
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++) {
        sp__filter *f;
        if (sp__filter_parse(ok[k], g_prop.ds, &f) != SP_OK)
            fail_msg("[%s]: %s", ok[k], sp_errmsg());
        sp__filter_free(f);
    }
    sp__filter *f;
    assert_int_equal(sp__filter_parse(NULL, g_prop.ds, &f), SP_EINVAL);
    assert_null(f);
}

static void nesting_limit(void **state) {
    (void)state;
    size_t big = 200000;
    char *t = malloc(2 * big + 64);
    /* 64 levels are fine, 65 are refused at the 65th */
    for (int levels = 64; levels <= 65; levels++) {
        size_t o = 0;
        for (int k = 0; k < levels; k++)
            t[o++] = '(';
        o += (size_t)sprintf(t + o, "label == 1");
        for (int k = 0; k < levels; k++)
            t[o++] = ')';
        t[o] = '\0';
        sp__filter *f;
        if (levels == 64) {
            assert_int_equal(sp__filter_parse(t, g_prop.ds, &f), SP_OK);
            sp__filter_free(f);
        } else {
            expect_error(t, "filter:1:65: nesting deeper than 64 levels of \"(\" and \"not\"");
        }
    }
    /* "not" counts too */
    size_t o = 0;
    for (int k = 0; k < 65; k++)
        o += (size_t)sprintf(t + o, "not ");
    sprintf(t + o, "label == 1");
    expect_error(t, "filter:1:257: nesting deeper than 64 levels of \"(\" and \"not\"");
    /* hostile: 200000 "(" or "not" never overflow the stack */
    memset(t, '(', big);
    t[big] = '\0';
    expect_error(t, "filter:1:65: nesting deeper than 64 levels of \"(\" and \"not\"");
    /* long flat chains are not nesting */
    o = 0;
    for (int k = 0; k < 20000; k++)
        o += (size_t)sprintf(t + o, "%slabel == %d", k ? " or " : "", k);
    sp__filter *f;
    assert_int_equal(sp__filter_parse(t, g_prop.ds, &f), SP_OK);
    sp__filter_free(f);
    uint64_t n = count_matches(&g_prop, t, NULL);
    uint64_t want = 0;
    for (uint64_t i = 0; i < g_prop.n; i++)
        want += !g_prop.rows[i].null[C_LABEL];
    assert_int_equal(n, want);
    free(t);
}

/* A dataset with chosen values, one block per row, for the exact semantics. */
static void exact_comparisons(void **state) {
    (void)state;
    tds t;
    memset(&t, 0, sizeof t);
    t.dir = tu_tmpdir("filter-exact");
    t.path = sp__path_join(t.dir, "ds");
    sp_writer_opts o;
    sp_writer_opts_init(&o);
    o.block_size = 4096; /* payloads of 4096 bytes: every row its own block */
    sp_dataset_writer *w;
    assert_int_equal(sp_dataset_writer_open(t.path, extra, 4, &o, &w), SP_OK);
    /* rows: label, big, score (null marks) */
    const int64_t labels[] = {0, 1, 2, 3, -1, 0};
    const int64_t bigs[] = {9007199254740992LL, 9007199254740993LL, INT64_MAX, INT64_MIN, 0, 0};
    const double scores[] = {9007199254740992.0, 0.1, -0.0, INFINITY, NAN, 0};
    const int null_row = 5; /* every column null */
    static const uint8_t page[4096];
    for (int i = 0; i < 6; i++) {
        sp_value v[NCOLS];
        memset(v, 0, sizeof v);
        v[C_KEY].v.str.s = "k";
        v[C_KEY].v.str.len = 1;
        v[C_LABEL].v.i = labels[i];
        v[C_WIDTH].is_null = v[C_HEIGHT].is_null = 1;
        v[C_TS].v.i = i;
        v[C_SCORE].v.f = scores[i];
        v[C_BIG].v.i = bigs[i];
        if (i == null_row)
            for (int c = 0; c < NCOLS; c++)
                v[c].is_null = 1;
        assert_int_equal(sp_dataset_writer_add(w, page, sizeof page, v), SP_OK);
    }
    assert_int_equal(sp_dataset_writer_commit(w), SP_OK);
    sp_dataset_writer_close(w);
    assert_int_equal(sp_dataset_open(t.path, &t.ds), SP_OK);
    assert_int_equal(sp_dataset_n_blocks(t.ds), 6);
    struct {
        const char *filter;
        const char *rows; /* which of the 6 rows match */
    } cases[] = {
        /* int column vs decimal literal: exact */
        {"label < 2.5", "111010"},
        {"label <= 2.5", "111010"},
        {"label > 2.5", "000100"},
        {"label >= 2.5", "000100"},
        {"label == 2.5", "000000"},
        {"label != 2.5", "111111"},
        {"label == 2.0", "001000"},
        {"label in {2.5, 3e0, -1}", "000110"},
        {"label > -0.5", "111100"},
        {"label < -0.5", "000010"},
        /* int64 beyond 2^53: decimal literals are doubles, compared without rounding the int */
        {"big == 9007199254740993", "010000"},
        {"big == 9007199254740993.0", "100000"}, /* the literal is the double 2^53 */
        {"big > 9007199254740992.0", "011000"},
        {"big >= 9223372036854775807", "001000"},
        {"big >= 9223372036854775807.0", "000000"}, /* that double is 2^63 */
        {"big < -9223372036854775808.0", "000000"},
        {"big <= -9223372036854775808.0", "000100"},
        {"big > -1e300 and big < 1e300", "111110"},
        {"big in {9223372036854775807.0, 9007199254740993}", "010000"},
        /* float column vs integer literal: exact */
        {"score == 9007199254740992", "100000"},
        {"score == 9007199254740993", "000000"},
        {"score < 9007199254740993", "111000"},
        {"score >= 9007199254740993", "000100"},
        {"score in {9007199254740993}", "000000"},
        {"score <= 0.1", "011000"}, /* the literal 0.1 is the double 0.1 */
        {"score == 0", "001000"},   /* -0.0 == 0 */
        {"score < 0", "000000"},
        {"score > 1e308", "000100"},
        /* nulls (and NaN): false except != and not in; not negates */
        {"label == 0", "100000"},
        {"label != 0", "011111"},
        {"not (label == 0)", "011111"},
        {"not (label != 0)", "100000"},
        {"label not in {0, 1}", "001111"},
        {"not label in {0, 1}", "001111"},
        {"label < 100 or label >= 100", "111110"},
        {"score != 1", "111111"},
        {"score == score", NULL}, /* not a valid filter: skipped below */
        {"score >= -1e308 or score < -1e308", "111100"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        if (!cases[k].rows) continue;
        sp__filter *f;
        if (sp__filter_parse(cases[k].filter, t.ds, &f) != SP_OK)
            fail_msg("[%s]: %s", cases[k].filter, sp_errmsg());
        char got[7];
        for (uint64_t i = 0; i < 6; i++) {
            got[i] = sp__filter_match(f, t.ds, i) ? '1' : '0';
            /* one row per block: block_may_match must say 1 where the row matches */
            if (got[i] == '1') assert_true(sp__filter_block_may_match(f, t.ds, i));
        }
        got[6] = '\0';
        if (strcmp(got, cases[k].rows) != 0)
            fail_msg("[%s]: rows %s, want %s", cases[k].filter, got, cases[k].rows);
        /* with one row per block the statistics are exact: every unmatched block is skipped */
        for (uint64_t i = 0; i < 6; i++)
            if (got[i] == '0' && sp__filter_block_may_match(f, t.ds, i))
                fail_msg("[%s]: block %" PRIu64 " not skipped", cases[k].filter, i);
        sp__filter_free(f);
    }
    assert_true(sp__filter_match(NULL, t.ds, 0) == 0);
    free_ds(&t);
}

static void sorted_column_skips_blocks(void **state) {
    (void)state;
    const tds *t = &g_sorted;
    uint64_t nb = sp_dataset_n_blocks(t->ds), sk;
    assert_int_equal(nb, 500); /* 10 rows of 410 bytes per 4100-byte block */
    char f[256];
    int64_t t0 = 1700000000;
    /* 50 rows out of 5000: 5 blocks of 500 are read */
    snprintf(f, sizeof f, "timestamp >= %" PRId64 " and timestamp < %" PRId64, t0 + 2000 * 60,
             t0 + 2050 * 60);
    assert_int_equal(count_matches(t, f, &sk), 50);
    assert_int_equal(sk, 495);
    /* a decimal bound on an int column */
    snprintf(f, sizeof f, "timestamp > %" PRId64 ".5 and timestamp <= %" PRId64 ".0",
             t0 + 2000 * 60 - 1, t0 + 2009 * 60);
    assert_int_equal(count_matches(t, f, &sk), 10);
    assert_int_equal(sk, 499);
    snprintf(f, sizeof f, "timestamp in {%" PRId64 ", %" PRId64 ", 12.5}", t0 + 10 * 60,
             t0 + 4000 * 60);
    assert_int_equal(count_matches(t, f, &sk), 2);
    assert_int_equal(sk, 498);
    /* not: "not (timestamp < x)" keeps only the blocks at the end */
    snprintf(f, sizeof f, "not (timestamp < %" PRId64 ")", t0 + 4990 * 60);
    assert_int_equal(count_matches(t, f, &sk), 10);
    assert_int_equal(sk, 499);
    snprintf(f, sizeof f, "not not (timestamp < %" PRId64 ")", t0 + 10 * 60);
    assert_int_equal(count_matches(t, f, &sk), 10);
    assert_int_equal(sk, 499);
    assert_int_equal(count_matches(t, "timestamp < 0 or timestamp > 1e18", &sk), 0);
    assert_int_equal(sk, 500);
    assert_int_equal(count_matches(t, "timestamp >= 1.7e9", &sk), 5000);
    assert_int_equal(sk, 0);
    /* and with another column */
    snprintf(f, sizeof f, "label == 3 and timestamp < %" PRId64, t0 + 1000 * 60);
    uint64_t want = 0;
    for (uint64_t i = 0; i < 1000; i++)
        want += !t->rows[i].null[C_LABEL] && t->rows[i].i[C_LABEL] == 3;
    assert_int_equal(count_matches(t, f, &sk), want);
    assert_true(sk >= 400);
    /* a set that holds every value of a block: "not in" skips the blocks without nulls */
    uint64_t no_null_blocks = 0, null_labels = 0;
    for (uint64_t b = 0; b < nb; b++) {
        sp_column_stats st;
        assert_int_equal(sp_dataset_block_stats(t->ds, b, C_LABEL, &st), SP_OK);
        no_null_blocks += st.null_count == 0;
        null_labels += st.null_count;
    }
    assert_true(no_null_blocks > 50);
    assert_int_equal(count_matches(t, "label not in {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 2}", &sk),
                     null_labels);
    assert_int_equal(sk, no_null_blocks);
    /* all-null blocks: "height == 5" skips them, "height != 5" must keep them (null != 5) */
    uint64_t null_blocks = 0;
    for (uint64_t b = 0; b < nb; b++) {
        sp_column_stats st;
        assert_int_equal(sp_dataset_block_stats(t->ds, b, C_HEIGHT, &st), SP_OK);
        null_blocks += st.count == 0;
    }
    assert_true(null_blocks > 100);
    count_matches(t, "height == 5", &sk);
    assert_true(sk >= null_blocks);
    uint64_t n_ne = count_matches(t, "height != 5", &sk);
    assert_true(n_ne >= null_blocks * 10);
    assert_int_equal(count_matches(t, "height not in {1, 2} and not (height >= 0)", &sk),
                     null_blocks * 10);
    assert_true(sk >= nb - null_blocks);
    printf("  skipping on timestamp: 495/500 blocks for a 1%% range; %" PRIu64 " all-null blocks\n",
           null_blocks);
}

static void out_of_memory(void **state) {
    (void)state;
    const char *text = "(label in {3, 1, 2} or not width < 2.5) and (score != 0.5 or big in {1})";
    int failures = 0;
    for (uint64_t n = 1; n < 200; n++) {
        sp__filter *f = (sp__filter *)(uintptr_t)1;
        sp__malloc_fail_after(n);
        sp_status rc = sp__filter_parse(text, g_prop.ds, &f);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            sp__filter_free(f);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(f);
        failures++;
    }
    assert_true(failures > 3);
    sp__filter_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_errors),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(exact_comparisons),
        cmocka_unit_test(sorted_column_skips_blocks),
        cmocka_unit_test(property_random_filters),
        cmocka_unit_test(out_of_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
