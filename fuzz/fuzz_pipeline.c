/* fuzz_pipeline.c — fuzzes the pipeline file reader (sp__pipeline_parse in src/cache/cache_yaml.c).
 *
 * The input is the pipeline file of a fixed project: a temporary folder, made at the first call,
 * holding params.yaml and other.yaml (so that params lookups succeed as well as fail). A pipeline
 * that comes back is checked against the reader's promises: every stage has at least one non-empty
 * command; its upstream stages come before it; every dep, output and params file is a relative,
 * normalized path (no "", ".", ".." or empty components, no trailing '/'), wdir the same or "";
 * no output overlaps another; every params value is set. A failure must leave a zeroed result and
 * a message. The input is copied into a buffer of exactly its size, so a read past the end is
 * caught by ASan. */
#include "cache/cache_internal.h"
#include "core_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_root[64];

static void remove_root(void) {
    sp__remove_tree(g_root);
}

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static void make_root(void) {
    strcpy(g_root, "/tmp/fuzz_pipeline-XXXXXX");
    if (!mkdtemp(g_root)) abort();
    write_file("params.yaml", "lr: 0.01\nseed: 42\ntrain: {lr: 1e-3, layers: [64, 32], opt: adam}\n"
                              "prepare:\n  split: 0.2\n  name: 'x'\n");
    write_file("other.yaml", "a: {b: {c: [1, {d: ~}]}}\nflag: true\n");
    atexit(remove_root);
}

/* A relative normalized path; `empty_ok` allows "" (wdir = the root). */
static void check_path(const char *p, int empty_ok) {
    if (!p) abort();
    if (!*p) {
        if (!empty_ok) abort();
        return;
    }
    if (p[0] == '/' || p[strlen(p) - 1] == '/' || strstr(p, "//")) abort();
    for (const char *c = p; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) abort();
        c += n + (e != NULL);
    }
}

static int within(const char *a, const char *b) { /* a equals b or lies inside b */
    size_t n = strlen(b);
    return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '/');
}

static void check_pipeline(const sp__pipeline *p) {
    if (!p->root || p->root[0] != '/' || strcmp(p->file, "fuzz.yaml") != 0) abort();
    if (p->n_stages && !p->stages) abort();
    for (size_t i = 0; i < p->n_stages; i++) {
        const sp__stage *s = &p->stages[i];
        if (!s->name || !s->name[0] || s->n_cmd == 0 || s->line == 0) abort();
        for (size_t k = 0; k < s->n_cmd; k++)
            if (!s->cmd[k] || !s->cmd[k][0]) abort();
        check_path(s->wdir, 1);
        for (size_t k = 0; k < s->n_deps; k++)
            check_path(s->deps[k], 0);
        for (size_t k = 0; k < s->n_outs; k++)
            check_path(s->outs[k], 0);
        for (size_t k = 0; k < s->n_params; k++) {
            check_path(s->params[k].file, 0);
            if (!s->params[k].key || !s->params[k].value || !s->params[k].value[0]) abort();
        }
        for (size_t k = 0; k < s->n_env; k++)
            if (!s->env[k] || !s->env[k][0]) abort();
        for (size_t u = 0; u < s->n_upstream; u++)
            if (s->upstream[u] >= i) abort(); /* topological order */
        for (size_t j = 0; j <= i; j++) {     /* outputs never overlap */
            const sp__stage *t = &p->stages[j];
            for (size_t a = 0; a < s->n_outs; a++)
                for (size_t b = 0; b < t->n_outs; b++) {
                    if (j == i && a == b) continue;
                    if (within(s->outs[a], t->outs[b]) || within(t->outs[b], s->outs[a])) abort();
                }
        }
        /* a dep overlapping another stage's output makes that stage upstream */
        for (size_t j = 0; j < p->n_stages; j++) {
            const sp__stage *t = &p->stages[j];
            int linked = 0;
            for (size_t d = 0; d < s->n_deps; d++)
                for (size_t o = 0; o < t->n_outs; o++)
                    if (within(s->deps[d], t->outs[o]) || within(t->outs[o], s->deps[d]))
                        linked = 1;
            if (j == i && linked) abort();
            int listed = 0;
            for (size_t u = 0; u < s->n_upstream; u++)
                listed |= s->upstream[u] == j;
            if (linked != listed) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_root[0]) make_root();
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    sp__pipeline p;
    memset(&p, 0xA5, sizeof p);
    sp__errmsg_clear();
    sp_status rc = sp__pipeline_parse(g_root, "fuzz.yaml", buf, size, &p);
    if (rc == SP_OK) {
        check_pipeline(&p);
        sp__pipeline_free(&p);
    } else {
        if (rc != SP_EBADINPUT && rc != SP_EIO) abort();
        if (!sp_errmsg()[0]) abort();
        if (p.stages || p.root || p.file || p.n_stages) abort();
    }
    free(buf);
    return 0;
}
