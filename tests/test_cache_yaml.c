/* test_cache_yaml.c — unit tests of the pipeline file reader (sp__pipeline_parse in
 * src/cache/cache_yaml.c): every accepted form of a stage, path normalization, the topological
 * order and upstream indices, the canonical JSON of params values (which goes into stage keys, so
 * equal values must give equal text), every error the file can cause (code, and a message naming
 * the file, line and stage), and clean failure when any allocation fails. */
#include "cache/cache_internal.h"
#include "core_internal.h"
#include "testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char *g_root; /* a project with params.yaml and other_params.yaml */

static const char PARAMS[] = "prepare:\n"
                             "  seed: 42\n"
                             "train:\n"
                             "  lr: 0.010\n"
                             "  opt: adam\n"
                             "  layers: [64, 32]\n"
                             "  sched: {warmup: 10, decay: 0.5}\n"
                             "flag: true\n";
static const char OTHER[] = "batch_size: 128\n"
                            "model:\n"
                            "  depth: 6\n";

static void write_in(const char *root, const char *name, const char *text) {
    char *p = sp__path_join(root, name);
    assert_non_null(p);
    assert_int_equal(tu_write_file(p, text, strlen(text)), 0);
    sp__free(p);
}

static int setup(void **state) {
    (void)state;
    g_root = tu_tmpdir("cache_yaml");
    write_in(g_root, "params.yaml", PARAMS);
    write_in(g_root, "other_params.yaml", OTHER);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tu_rmrf(g_root);
    free(g_root);
    return 0;
}

static sp_status parse(const char *text, sp__pipeline *p) {
    return sp__pipeline_parse(g_root, "softpipe.yaml", text, strlen(text), p);
}

/* Parses `text`, expecting SP_EBADINPUT and a message holding each of the NULL-terminated
 * substrings. */
static void expect_error(const char *text, ...) {
    sp__pipeline p;
    sp_status rc = parse(text, &p);
    if (rc != SP_EBADINPUT)
        fail_msg("expected SP_EBADINPUT, got %d (%s) for:\n%s", rc, sp_errmsg(), text);
    assert_null(p.stages);
    assert_null(p.root);
    va_list ap;
    va_start(ap, text);
    for (const char *want; (want = va_arg(ap, const char *));)
        if (!strstr(sp_errmsg(), want))
            fail_msg("message \"%s\" lacks \"%s\" for:\n%s", sp_errmsg(), want, text);
    va_end(ap);
}

static const sp__stage *find_stage(const sp__pipeline *p, const char *name, size_t *at) {
    for (size_t i = 0; i < p->n_stages; i++)
        if (!strcmp(p->stages[i].name, name)) {
            if (at) *at = i;
            return &p->stages[i];
        }
    fail_msg("no stage %s", name);
    return NULL;
}

static const char EXAMPLE[] = "stages:\n"
                              "  train:\n"
                              "    cmd: [python train.py, echo done]\n"
                              "    wdir: .\n"
                              "    deps: [train.py, data/clean.csv]\n"
                              "    params:\n"
                              "      - train.lr\n"
                              "      - other_params.yaml: [batch_size, model.depth]\n"
                              "    env: [CUDA_VISIBLE_DEVICES]\n"
                              "    outs: [models/]\n"
                              "  prepare:\n"
                              "    cmd: python prepare.py data/raw.csv data/clean.csv\n"
                              "    deps: [prepare.py, data/raw.csv]\n"
                              "    params: [prepare.seed]\n"
                              "    outs: [data/clean.csv]\n";

static void test_pipeline_example(void **state) {
    (void)state;
    sp__pipeline p;
    assert_int_equal(parse(EXAMPLE, &p), SP_OK);
    assert_int_equal(p.n_stages, 2);
    assert_string_equal(p.file, "softpipe.yaml");
    assert_string_equal(p.root, g_root);
    const sp__stage *a = &p.stages[0], *b = &p.stages[1];
    assert_string_equal(a->name, "prepare"); /* moved before train, which needs its output */
    assert_string_equal(b->name, "train");
    assert_int_equal(a->line, 11);
    assert_int_equal(b->line, 2);
    assert_int_equal(a->n_cmd, 1);
    assert_string_equal(a->cmd[0], "python prepare.py data/raw.csv data/clean.csv");
    assert_string_equal(a->wdir, "");
    assert_int_equal(a->n_deps, 2);
    assert_string_equal(a->deps[1], "data/raw.csv");
    assert_int_equal(a->n_params, 1);
    assert_string_equal(a->params[0].file, "params.yaml");
    assert_string_equal(a->params[0].key, "prepare.seed");
    assert_string_equal(a->params[0].value, "42");
    assert_int_equal(a->n_upstream, 0);
    assert_int_equal(a->n_env, 0);

    assert_int_equal(b->n_cmd, 2);
    assert_string_equal(b->cmd[0], "python train.py");
    assert_string_equal(b->cmd[1], "echo done");
    assert_string_equal(b->wdir, "");
    assert_int_equal(b->n_params, 3);
    assert_string_equal(b->params[0].key, "train.lr");
    assert_string_equal(b->params[0].value, "0.01");
    assert_string_equal(b->params[1].file, "other_params.yaml");
    assert_string_equal(b->params[1].key, "batch_size");
    assert_string_equal(b->params[1].value, "128");
    assert_string_equal(b->params[2].key, "model.depth");
    assert_string_equal(b->params[2].value, "6");
    assert_int_equal(b->n_env, 1);
    assert_string_equal(b->env[0], "CUDA_VISIBLE_DEVICES");
    assert_int_equal(b->n_outs, 1);
    assert_string_equal(b->outs[0], "models"); /* trailing slash dropped */
    assert_int_equal(b->n_upstream, 1);
    assert_int_equal(b->upstream[0], 0);
    sp__pipeline_free(&p);
    assert_null(p.stages);
    sp__pipeline_free(&p); /* twice is fine */
    sp__pipeline_free(NULL);
}

/* Single strings for lists, nulls for empty lists, quoted scalars, flow and block styles, and path
 * normalization. */
static void test_pipeline_forms(void **state) {
    (void)state;
    sp__pipeline p;
    assert_int_equal(parse("stages:\n"
                           "  one:\n"
                           "    cmd: \"make all\"\n"
                           "    deps: ./src//main.c/\n"
                           "    outs: 'build/../out/bin'\n"
                           "    params: flag\n"
                           "    env: HOME\n"
                           "    wdir: sub/./dir/\n"
                           "  two:\n"
                           "    cmd:\n"
                           "      - a\n"
                           "      - 'b c'\n"
                           "    deps:\n"
                           "    outs: ~\n"
                           "    params: []\n"
                           "    env: []\n"
                           "    wdir:\n"
                           "  three: {cmd: x, deps: [out/bin/sub], outs: [o3]}\n",
                           &p),
                     SP_OK);
    assert_int_equal(p.n_stages, 3);
    const sp__stage *s = &p.stages[0];
    assert_string_equal(s->name, "one");
    assert_string_equal(s->cmd[0], "make all");
    assert_string_equal(s->deps[0], "src/main.c");
    assert_string_equal(s->outs[0], "out/bin");
    assert_string_equal(s->params[0].key, "flag");
    assert_string_equal(s->params[0].value, "true");
    assert_string_equal(s->env[0], "HOME");
    assert_string_equal(s->wdir, "sub/dir");
    s = &p.stages[1];
    assert_string_equal(s->name, "two");
    assert_int_equal(s->n_cmd, 2);
    assert_string_equal(s->cmd[1], "b c");
    assert_int_equal(s->n_deps + s->n_outs + s->n_params + s->n_env, 0);
    assert_string_equal(s->wdir, "");
    s = &p.stages[2];
    assert_string_equal(s->name, "three");
    assert_int_equal(s->n_upstream, 1); /* a dep inside one's output folder */
    assert_int_equal(s->upstream[0], 0);
    sp__pipeline_free(&p);

    /* no stages at all is a valid, empty pipeline; a document marker and comments are fine */
    assert_int_equal(parse("# nothing yet\n---\nstages: {}\n", &p), SP_OK);
    assert_int_equal(p.n_stages, 0);
    sp__pipeline_free(&p);

    /* an anchor without an alias is harmless */
    assert_int_equal(parse("stages:\n  a: &x\n    cmd: run\n", &p), SP_OK);
    sp__pipeline_free(&p);
}

/* Stages come after every stage they depend on; independent stages keep file order. */
static void test_pipeline_topological_order(void **state) {
    (void)state;
    sp__pipeline p;
    assert_int_equal(parse("stages:\n"
                           "  report:\n"
                           "    cmd: r\n"
                           "    deps: [metrics.json, models/best.pt, data]\n"
                           "  lone1: {cmd: x}\n"
                           "  evaluate:\n"
                           "    cmd: e\n"
                           "    deps: [models, data/clean.csv, data/extra/a.csv]\n"
                           "    outs: [metrics.json]\n"
                           "  train:\n"
                           "    cmd: t\n"
                           "    deps: [data/clean.csv, data/clean.csv.bak]\n"
                           "    outs: [models]\n"
                           "  lone2: {cmd: y}\n"
                           "  prepare:\n"
                           "    cmd: p\n"
                           "    outs: [data/clean.csv]\n"
                           "  extra:\n"
                           "    cmd: p\n"
                           "    outs: [data/extra]\n",
                           &p),
                     SP_OK);
    const char *want[] = {"lone1", "lone2", "prepare", "train", "extra", "evaluate", "report"};
    assert_int_equal(p.n_stages, 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(p.stages[i].name, want[i]);
    for (size_t i = 0; i < p.n_stages; i++)
        for (size_t u = 0; u < p.stages[i].n_upstream; u++) {
            assert_true(p.stages[i].upstream[u] < i);
            if (u) assert_true(p.stages[i].upstream[u - 1] < p.stages[i].upstream[u]);
        }
    size_t pr, tr, ex, ev;
    const sp__stage *s = find_stage(&p, "train", &tr);
    find_stage(&p, "prepare", &pr);
    find_stage(&p, "extra", &ex);
    assert_int_equal(s->n_upstream, 1); /* data/clean.csv.bak is not inside data/clean.csv */
    assert_int_equal(s->upstream[0], pr);
    s = find_stage(&p, "evaluate", &ev);
    assert_int_equal(s->n_upstream, 3);
    assert_int_equal(s->upstream[0], pr);
    assert_int_equal(s->upstream[1], tr);
    assert_int_equal(s->upstream[2], ex);
    s = find_stage(&p, "report", NULL); /* "data" contains the outputs of prepare and extra */
    assert_int_equal(s->n_upstream, 4);
    assert_int_equal(s->upstream[0], pr);
    assert_int_equal(s->upstream[1], tr);
    assert_int_equal(s->upstream[2], ex);
    assert_int_equal(s->upstream[3], ev);
    sp__pipeline_free(&p);
}

static void test_pipeline_syntax_errors(void **state) {
    (void)state;
    expect_error("stages:\n  a:\n    cmd: [x\n", "softpipe.yaml:4:1: ", "flow sequence", NULL);
    expect_error("stages:\n  a: {cmd: x}\n\tb: 1\n", "softpipe.yaml:3:", NULL);
    expect_error("stages:\n  a:\n    cmd: \"x\x01\"\n", "softpipe.yaml:3:", "control", NULL);
    expect_error("stages:\n  a:\n    cmd: \xff\n", "softpipe.yaml:3:10: ", NULL);
    expect_error("", "softpipe.yaml:1:1: ", "empty", NULL);
    expect_error("# only a comment\n", "softpipe.yaml:1:1: ", "empty", NULL);
    expect_error("- a\n- b\n", "softpipe.yaml:1:1: ", "found a list", NULL);
    expect_error("hello\n", "softpipe.yaml:1:1: ", "found a string", NULL);
    expect_error("stagse:\n  a: {cmd: x}\n",
                 "softpipe.yaml:1:1: ", "unknown key 'stagse' (did you mean 'stages'?)", NULL);
    expect_error("version: 2\n", "softpipe.yaml:1:1: unknown key 'version'", NULL);
    expect_error("stages:\n", "softpipe.yaml:1:8: ", "'stages' must be a mapping", NULL);
    expect_error("stages: [a, b]\n", "softpipe.yaml:1:9: ", "found a list", NULL);
    expect_error("stages: {}\nstages: {}\n", "softpipe.yaml:2:1: duplicate key 'stages'", NULL);
    expect_error("stages: {}\n---\nstages: {}\n", "softpipe.yaml:2:1: ", "second YAML document",
                 NULL);
    expect_error("stages:\n  a: &s {cmd: x}\n  b: *s\n",
                 "softpipe.yaml:3:6: ", "aliases (*s) are not supported", NULL);
    expect_error("stages:\n  a:\n    cmd: !!int 5\n", "softpipe.yaml:3:10: ", "unsupported tag",
                 NULL);
    expect_error("stages:\n  ? [a]\n  : {cmd: x}\n",
                 "softpipe.yaml:2:5: ", "a mapping key must be a string", NULL);
    char deep[400] = "stages: ";
    for (int i = 0; i < 70; i++)
        strcat(deep, "[");
    expect_error(deep, "softpipe.yaml:1:", "nested deeper than 64 levels", NULL);
}

static void test_pipeline_stage_errors(void **state) {
    (void)state;
    expect_error("stages:\n  a:\n    cmd: x\n    dpes: [y]\n",
                 "softpipe.yaml:4:5: stage 'a': unknown key 'dpes' (did you mean 'deps'?)", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    output: [y]\n",
                 "softpipe.yaml:4:5: stage 'a': unknown key 'output'", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [y]\n    outs: [z]\n",
                 "softpipe.yaml:5:5: stage 'a': duplicate key 'outs' (first at line 4)", NULL);
    expect_error("stages:\n  a: {cmd: x}\n  b: {cmd: y}\n  a: {cmd: z}\n",
                 "softpipe.yaml:4:3: duplicate stage 'a' (first at line 2)", NULL);
    expect_error("stages:\n  a: run it\n",
                 "softpipe.yaml:2:6: stage 'a': ", "must be a mapping, found a string", NULL);
    expect_error("stages:\n  a:\n", "softpipe.yaml:2:5: stage 'a': ", "found nothing", NULL);
    expect_error("stages:\n  a b: {cmd: x}\n", "softpipe.yaml:2:3: ", "bad stage name 'a b'", NULL);
    expect_error("stages:\n  \"\": {cmd: x}\n", "softpipe.yaml:2:3: ", "bad stage name", NULL);
    expect_error("stages:\n  a:\n    deps: [x]\n", "softpipe.yaml:2:3: stage 'a': missing 'cmd'",
                 NULL);
    expect_error("stages:\n  a:\n    cmd:\n", "softpipe.yaml:3:", "stage 'a': 'cmd' is empty",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: []\n", "softpipe.yaml:3:10: stage 'a': 'cmd' is empty",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: '  '\n",
                 "softpipe.yaml:3:10: stage 'a': 'cmd' entry is empty", NULL);
    expect_error("stages:\n  a:\n    cmd: [x, [y]]\n",
                 "softpipe.yaml:3:14: stage 'a': 'cmd' entries must be strings, found a list",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: {x: y}\n",
                 "softpipe.yaml:3:10: stage 'a': 'cmd' must be a list of strings", NULL);
    expect_error("stages:\n  a:\n    cmd: \"x\\0y\"\n", "softpipe.yaml:3:10: stage 'a': ", "NUL",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    deps: {a: b}\n",
                 "softpipe.yaml:4:11: stage 'a': 'deps' must be a list of strings", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [a, {b: c}]\n",
                 "softpipe.yaml:4:15: stage 'a': 'outs' entries must be strings, found a mapping",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    wdir: [a]\n",
                 "softpipe.yaml:4:11: stage 'a': 'wdir' must be a string", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    env: [1PATH]\n",
                 "softpipe.yaml:4:11: stage 'a': '1PATH' is not an environment variable name",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    env: [A, A]\n",
                 "softpipe.yaml:4:14: stage 'a': env lists 'A' twice", NULL);
}

static void test_pipeline_path_errors(void **state) {
    (void)state;
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [/tmp/x]\n",
                 "softpipe.yaml:4:12: stage 'a': outs path '/tmp/x' is absolute", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    deps: [data/../../x]\n",
                 "softpipe.yaml:4:12: stage 'a': deps path 'data/../../x' leaves the project",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    deps: ['']\n",
                 "softpipe.yaml:4:12: stage 'a': deps path '' is empty", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [./]\n",
                 "softpipe.yaml:4:12: stage 'a': outs path './' is the project root", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [.softpipe/cache]\n",
                 "stage 'a': outs path '.softpipe/cache' is inside softpipe's own folder", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    wdir: ../up\n",
                 "softpipe.yaml:4:11: stage 'a': wdir '../up' leaves the project", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    deps: [x, ./x]\n",
                 "softpipe.yaml:4:15: stage 'a': deps lists 'x' twice", NULL);
    /* outputs that overlap */
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [m]\n  b:\n    cmd: y\n    outs: [./m/]\n",
                 "softpipe.yaml:7:12: stage 'b': output 'm' is also an output of stage 'a' (line "
                 "4)",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [m/x.pt]\n  b:\n    cmd: y\n    outs: [m]\n",
                 "softpipe.yaml:7:12: stage 'b': output 'm' contains output 'm/x.pt' of stage 'a'",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [m]\n  b:\n    cmd: y\n    outs: [m/x.pt]\n",
                 "softpipe.yaml:7:12: stage 'b': output 'm/x.pt' is inside output 'm' of stage 'a'",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    outs: [m, m/y]\n",
                 "softpipe.yaml:4:15: stage 'a': output 'm/y' is inside its own output 'm'", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    deps: [m/in]\n    outs: [m]\n",
                 "softpipe.yaml:4:12: stage 'a': dep 'm/in' overlaps its own output 'm'", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    deps: [m]\n    outs: [m/out]\n",
                 "softpipe.yaml:4:12: stage 'a': dep 'm' overlaps its own output 'm/out'", NULL);
}

static void test_pipeline_cycles(void **state) {
    (void)state;
    expect_error(
        "stages:\n"
        "  prepare:\n    cmd: p\n    deps: [b]\n    outs: [a]\n"
        "  train:\n    cmd: t\n    deps: [a]\n    outs: [b]\n",
        "softpipe.yaml:2:3: stage 'prepare': dependency cycle: prepare -> train -> prepare", NULL);
    /* a cycle of three behind an acyclic head, named from its first stage in the file */
    expect_error("stages:\n"
                 "  head: {cmd: h, deps: [z], outs: [h]}\n"
                 "  y: {cmd: y, deps: [x], outs: [y]}\n"
                 "  x: {cmd: x, deps: [w/f], outs: [x]}\n"
                 "  w: {cmd: w, deps: [y], outs: [w]}\n"
                 "  z: {cmd: z, deps: [h2], outs: [z]}\n"
                 "  h2: {cmd: h2, outs: [h2]}\n",
                 "softpipe.yaml:3:3: stage 'y': dependency cycle: y -> w -> x -> y", NULL);
}

static void test_pipeline_params_errors(void **state) {
    (void)state;
    expect_error("stages:\n  a:\n    cmd: x\n    params: [train.momentum]\n",
                 "softpipe.yaml:4:14: stage 'a': params key 'train.momentum' not found in "
                 "params.yaml",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [train.lr.x]\n",
                 "stage 'a': params key 'train.lr.x' not found in params.yaml", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [train..lr]\n",
                 "softpipe.yaml:4:14: stage 'a': bad params key 'train..lr'", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params:\n      - nope.yaml: [k]\n",
                 "softpipe.yaml:5:21: stage 'a': params file 'nope.yaml' not found", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params:\n      - other_params.yaml: [depth]\n",
                 "softpipe.yaml:5:29: stage 'a': params key 'depth' not found in "
                 "other_params.yaml",
                 NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params:\n      - ../p.yaml: [k]\n",
                 "softpipe.yaml:5:9: stage 'a': params file '../p.yaml' leaves the project", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params:\n      - other_params.yaml:\n",
                 "stage 'a': params of other_params.yaml must be a list of keys", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: {train: [lr]}\n",
                 "softpipe.yaml:4:13: stage 'a': 'params' must be a list", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [train.lr, train.lr]\n",
                 "softpipe.yaml:4:24: stage 'a': params lists 'train.lr' of params.yaml twice",
                 NULL);
    /* problems inside params files name the params file */
    write_in(g_root, "bad1.yaml", "a: 1\nb: [\n");
    write_in(g_root, "bad2.yaml", "- 1\n");
    write_in(g_root, "bad3.yaml", "a: &x 1\nb: *x\n");
    write_in(g_root, "bad4.yaml", "a: 1\nb: 2\na: 3\n");
    expect_error("stages:\n  a:\n    cmd: x\n    params: [{bad1.yaml: [a]}]\n",
                 "bad1.yaml:3:1: ", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [{bad2.yaml: [a]}]\n",
                 "bad2.yaml:1:1: a params file must be a mapping", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [{bad3.yaml: [a]}]\n",
                 "bad3.yaml:2:4: aliases", NULL);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [{bad4.yaml: [a]}]\n",
                 "bad4.yaml:3:1: duplicate key 'a' (first at line 1)", NULL);
    /* a folder where a params file should be */
    char *dir = sp__path_join(g_root, "pdir/x");
    assert_int_equal(tu_write_file(dir, "", 0), 0);
    sp__free(dir);
    expect_error("stages:\n  a:\n    cmd: x\n    params: [{pdir: [a]}]\n",
                 "stage 'a': params file 'pdir' is a folder", NULL);
}

/* The canonical text of `value` written as key v of a fresh params file. */
static char *canon_of(const char *yaml_value) {
    char text[512];
    snprintf(text, sizeof text, "v: %s\n", yaml_value);
    write_in(g_root, "canon.yaml", text);
    sp__pipeline p;
    sp_status rc = parse("stages:\n  a:\n    cmd: x\n    params: [{canon.yaml: [v]}]\n", &p);
    if (rc != SP_OK) fail_msg("%s: %s", yaml_value, sp_errmsg());
    char *v = strdup(p.stages[0].params[0].value);
    sp__pipeline_free(&p);
    return v;
}

static void expect_canon(const char *yaml_value, const char *want) {
    char *got = canon_of(yaml_value);
    if (strcmp(got, want) != 0) fail_msg("%s -> %s, expected %s", yaml_value, got, want);
    free(got);
}

static void test_pipeline_params_canonical(void **state) {
    (void)state;
    /* one spelling per number */
    expect_canon("0.010", "0.01");
    expect_canon("1e-2", "0.01");
    expect_canon("+.01", "0.01");
    expect_canon("0.1", "0.1");
    expect_canon("1.0", "1.0");
    expect_canon("1.", "1.0");
    expect_canon("100e0", "100.0");
    expect_canon("-0.0", "-0.0");
    expect_canon("1e21", "1e+21");
    expect_canon("1.5e300", "1.5e+300");
    expect_canon("1e-7", "1e-7");
    expect_canon("0.000001", "0.000001");
    expect_canon("123.456", "123.456");
    expect_canon("1e999", "Infinity");
    expect_canon("-.inf", "-Infinity");
    expect_canon(".NaN", "NaN");
    expect_canon("42", "42");
    expect_canon("+007", "7");
    expect_canon("-0", "0");
    expect_canon("-12", "-12");
    expect_canon("123456789012345678901234567890", "123456789012345678901234567890");
    expect_canon("0x1F", "31");
    expect_canon("0o17", "15");
    expect_canon("0x1ffffffffffffffffff", "\"0x1ffffffffffffffffff\"");
    /* null, booleans (the YAML 1.2 core schema: yes/no/on/off are strings) */
    expect_canon("~", "null");
    expect_canon("", "null");
    expect_canon("Null", "null");
    expect_canon("TRUE", "true");
    expect_canon("false", "false");
    expect_canon("yes", "\"yes\"");
    /* quoted and tagged scalars are always strings */
    expect_canon("'0.01'", "\"0.01\"");
    expect_canon("\"true\"", "\"true\"");
    expect_canon("!!str 12", "\"12\"");
    expect_canon("! 12", "\"12\"");
    expect_canon("'null'", "\"null\"");
    /* strings, escaped for JSON; other forms stay text */
    expect_canon("adam", "\"adam\"");
    expect_canon("1_000", "\"1_000\"");
    expect_canon("1.2.3", "\"1.2.3\"");
    expect_canon("\"a\\\"b\\\\c\\n\\t\\x01\\u00e9\"", "\"a\\\"b\\\\c\\n\\t\\u0001\xc3\xa9\"");
    expect_canon("\"nul\\0\"", "\"nul\\u0000\"");
    /* containers: no whitespace, mapping keys sorted, list order kept */
    expect_canon("[3, 1, 2]", "[3,1,2]");
    expect_canon("{b: 1, a: [x, 2.50], c: {z: ~, y: 'q'}}",
                 "{\"a\":[\"x\",2.5],\"b\":1,\"c\":{\"y\":\"q\",\"z\":null}}");
    char *x = canon_of("{lr: 0.01, opt: adam, 1: one}");
    char *y = canon_of("\n  opt: adam\n  1: one\n  lr: 1.0e-2\n");
    assert_string_equal(x, y);
    assert_string_equal(x, "{\"1\":\"one\",\"lr\":0.01,\"opt\":\"adam\"}");
    free(x);
    free(y);
    expect_canon("{}", "{}");
    expect_canon("[]", "[]");

    /* a whole subtree by its dotted key, from the default params.yaml */
    sp__pipeline p;
    assert_int_equal(
        parse("stages:\n  a:\n    cmd: x\n    params: [train.sched, train, flag]\n", &p), SP_OK);
    assert_string_equal(p.stages[0].params[0].value, "{\"decay\":0.5,\"warmup\":10}");
    assert_string_equal(p.stages[0].params[1].value,
                        "{\"layers\":[64,32],\"lr\":0.01,\"opt\":\"adam\",\"sched\":{\"decay\":0.5,"
                        "\"warmup\":10}}");
    assert_string_equal(p.stages[0].params[2].value, "true");
    sp__pipeline_free(&p);
}

/* The root is stored absolute and normalized. */
static void test_pipeline_root(void **state) {
    (void)state;
    char *twisted = malloc(strlen(g_root) + 32);
    sprintf(twisted, "%s//./sub/..//", g_root);
    sp__pipeline p;
    assert_int_equal(sp__pipeline_parse(twisted, "f.yaml", "stages: {}", 10, &p), SP_OK);
    assert_string_equal(p.root, g_root);
    sp__pipeline_free(&p);
    free(twisted);

    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(sp__pipeline_parse(".", "f.yaml", "stages: {}", 10, &p), SP_OK);
    assert_string_equal(p.root, cwd);
    sp__pipeline_free(&p);
    assert_int_equal(sp__pipeline_parse("/", "f.yaml", "stages: {}", 10, &p), SP_OK);
    assert_string_equal(p.root, "/");
    sp__pipeline_free(&p);
    assert_int_equal(sp__pipeline_parse(NULL, "f.yaml", "stages: {}", 10, &p), SP_EINVAL);
    assert_int_equal(sp__pipeline_parse("/", "f.yaml", NULL, 10, &p), SP_EINVAL);
    assert_int_equal(sp__pipeline_parse("/", "f.yaml", NULL, 0, &p), SP_EBADINPUT); /* empty */
}

/* Allocation failure at every step gives SP_ENOMEM, a zeroed result and no leak (ASan). */
static void test_pipeline_out_of_memory(void **state) {
    (void)state;
    int failures = 0;
    for (uint64_t k = 1; k < 5000; k++) {
        sp__pipeline p;
        sp__malloc_fail_after(k);
        sp_status rc = parse(EXAMPLE, &p);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) {
            assert_int_equal(p.n_stages, 2);
            assert_string_equal(p.stages[1].params[0].value, "0.01");
            sp__pipeline_free(&p);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        assert_null(p.stages);
        assert_null(p.root);
        failures++;
    }
    assert_true(failures > 50);
    /* and on the error paths: a cycle's message is built from allocated memory */
    static const char CYCLE[] = "stages:\n  a: {cmd: p, deps: [b], outs: [a]}\n"
                                "  b: {cmd: t, deps: [a], outs: [b]}\n";
    for (uint64_t k = 1; k < 5000; k++) {
        sp__pipeline p;
        sp__malloc_fail_after(k);
        sp_status rc = parse(CYCLE, &p);
        sp__malloc_fail_after(0);
        if (rc == SP_EBADINPUT) break;
        assert_int_equal(rc, SP_ENOMEM);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_example),
        cmocka_unit_test(test_pipeline_forms),
        cmocka_unit_test(test_pipeline_topological_order),
        cmocka_unit_test(test_pipeline_syntax_errors),
        cmocka_unit_test(test_pipeline_stage_errors),
        cmocka_unit_test(test_pipeline_path_errors),
        cmocka_unit_test(test_pipeline_cycles),
        cmocka_unit_test(test_pipeline_params_errors),
        cmocka_unit_test(test_pipeline_params_canonical),
        cmocka_unit_test(test_pipeline_root),
        cmocka_unit_test(test_pipeline_out_of_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
