/* ingest_pack.c — `softpipe pack`: ImageFolder trees and CSV/JSONL tables into a dataset.
 *
 * The work is a list of items in a fixed order. Reader threads load and check items ahead of the
 * writer (a bounded window of slots), and the calling thread appends them to the dataset writer
 * strictly in item order, so the output is byte-identical for any thread count. */
#include "core_internal.h"
#include "ingest_internal.h"
#include "ingest_table.h"
#include "softpipe/image.h"
#include "softpipe/ingest.h"
#include "softpipe/shard.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define WINDOW 256 /* items read ahead of the writer */

void sp_pack_opts_init(sp_pack_opts *opts) {
    memset(opts, 0, sizeof *opts);
}

const char *sp_pack_format_name(sp_pack_format f) {
    switch (f) {
    case SP_PACK_AUTO:
        return "auto";
    case SP_PACK_IMAGEFOLDER:
        return "imagefolder";
    case SP_PACK_CSV:
        return "csv";
    case SP_PACK_JSONL:
        return "jsonl";
    }
    return "?";
}

/* ------------------------------------------------------------ the ordered read-ahead pipeline */

typedef struct slot {
    uint8_t *data;
    size_t len;
    sp_image_info info;
    sp_status rc;
    char *err; /* message when rc < 0 */
    int ready;
} slot;

typedef struct pipeline {
    char **paths;       /* item i reads paths[i] (NULL: nothing to read) */
    const char **names; /* how item i is named in messages */
    uint64_t n;
    int probe;   /* check the bytes as an image */
    int restart; /* probed baseline JPEGs get restart markers (sp_pack_opts.restart_markers) */
    slot slots[WINDOW];
    uint64_t next_claim, consumed;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
} pipeline;

static void load_item(pipeline *p, uint64_t i, slot *s) {
    s->data = NULL;
    s->len = 0;
    memset(&s->info, 0, sizeof s->info);
    s->rc = SP_OK;
    if (p->paths[i]) {
        s->rc = sp__read_file(p->paths[i], &s->data, &s->len);
        if (s->rc < 0) {
            /* name the item, not the absolute path we opened */
            const char *why = strstr(sp_errmsg(), ": ");
            s->rc = sp__fail(SP_EBADINPUT, "%s: %s", p->names[i], why ? why + 2 : sp_errmsg());
        } else if (p->probe) {
            s->rc = sp_image_probe(p->names[i], s->data, s->len, &s->info);
            if (s->rc == SP_OK && p->restart && s->info.kind == SP_IMAGE_JPEG &&
                !s->info.progressive) {
                uint8_t *t = NULL;
                size_t tlen = 0;
                s->rc = sp__jpeg_add_restarts(p->names[i], s->data, s->len, &t, &tlen);
                if (t) {
                    sp__free(s->data);
                    s->data = t;
                    s->len = tlen;
                }
            }
        }
    }
    s->err = s->rc < 0 ? sp__strdup(sp_errmsg()) : NULL;
}

static void *reader(void *arg) {
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next_claim < p->n && p->next_claim >= p->consumed + WINDOW)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stop || p->next_claim >= p->n) break;
        uint64_t i = p->next_claim++;
        slot *s = &p->slots[i % WINDOW];
        pthread_mutex_unlock(&p->mu);
        load_item(p, i, s);
        pthread_mutex_lock(&p->mu);
        s->ready = 1;
        pthread_cond_broadcast(&p->cv_ready);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* What the writer does with item i, given its loaded bytes. Returns < 0 to stop. */
typedef sp_status (*emit_fn)(void *ctx, uint64_t i, slot *s);

typedef struct pack_state {
    const sp_pack_opts *opts;
    sp_dataset_writer *w;
    uint64_t skipped;
    uint64_t bytes_in;
} pack_state;

/* Reports (skip) or returns (fail) a bad item. */
static sp_status bad_item(pack_state *ps, const char *where, const char *msg) {
    if (!ps->opts->skip_errors) return sp__fail(SP_EBADINPUT, "%s", msg);
    ps->skipped++;
    if (ps->opts->on_skip) {
        /* msg starts with where; pass the reason alone */
        size_t wl = strlen(where);
        const char *reason = (!strncmp(msg, where, wl) && msg[wl] == ':') ? msg + wl + 2 : msg;
        ps->opts->on_skip(ps->opts->user, where, reason);
    }
    return SP_OK;
}

static sp_status run_pipeline(pipeline *p, int threads, pack_state *ps, emit_fn emit, void *ctx) {
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_ready, NULL);
    pthread_t th[64];
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, reader, p) != 0) break;
    sp_status rc = started ? SP_OK : sp__fail(SP_EIO, "cannot start reader threads");
    double last = sp__now();
    for (uint64_t i = 0; rc == SP_OK && i < p->n; i++) {
        slot *s = &p->slots[i % WINDOW];
        pthread_mutex_lock(&p->mu);
        while (!s->ready)
            pthread_cond_wait(&p->cv_ready, &p->mu);
        pthread_mutex_unlock(&p->mu);
        ps->bytes_in += s->len;
        rc = emit(ctx, i, s);
        sp__free(s->data);
        sp__free(s->err);
        s->data = NULL;
        s->err = NULL;
        pthread_mutex_lock(&p->mu);
        s->ready = 0;
        p->consumed = i + 1;
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        if (ps->opts->on_progress && (i + 1 == p->n || sp__now() - last > 0.1)) {
            last = sp__now();
            ps->opts->on_progress(ps->opts->user, i + 1, p->n, ps->bytes_in);
        }
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    for (int k = 0; k < WINDOW; k++) { /* items read ahead of a failure */
        sp__free(p->slots[k].data);
        sp__free(p->slots[k].err);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_ready);
    return rc;
}

/* ------------------------------------------------------------ ImageFolder */

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static sp_status strvec_push(strvec *s, char *str) {
    if (!str) return sp__fail(SP_ENOMEM, "out of memory");
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **v = sp__realloc(s->v, cap * sizeof *v);
        if (!v) {
            sp__free(str);
            return sp__fail(SP_ENOMEM, "out of memory");
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return SP_OK;
}

static void strvec_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++)
        sp__free(s->v[i]);
    sp__free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* torchvision's order: sorted by folder, then by file name within a folder. */
static int cmp_path(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    const char *sx = strrchr(x, '/'), *sy = strrchr(y, '/');
    size_t dx = sx ? (size_t)(sx - x) : 0, dy = sy ? (size_t)(sy - y) : 0;
    size_t m = dx < dy ? dx : dy;
    int c = strncmp(x, y, m);
    if (c) return c;
    if (dx != dy) return dx < dy ? -1 : 1;
    return strcmp(x + dx, y + dy);
}

static int is_image_name(const char *n) {
    const char *dot = strrchr(n, '.');
    return dot &&
           (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

/* Collects image files under root/rel (recursively), as paths relative to root. */
static sp_status walk(const char *root, const char *rel, strvec *out, int depth) {
    if (depth > 64) return sp__fail(SP_EBADINPUT, "%s/%s: folders nested too deep", root, rel);
    char *dir = sp__path_join(root, rel);
    if (!dir) return sp__fail(SP_ENOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (!d) {
        sp_status rc = sp__fail_errno(SP_EIO, errno, "%s: cannot open folder", dir);
        sp__free(dir);
        return rc;
    }
    sp_status rc = SP_OK;
    struct dirent *e;
    while (rc == SP_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* hidden, . and .. */
        char *r = sp__path_join(rel, e->d_name);
        char *full = r ? sp__path_join(root, r) : NULL;
        struct stat st;
        if (!full) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
        } else if (stat(full, &st) != 0) {
            /* a dangling link or a file that vanished: let the reader report it if it's an image */
            if (is_image_name(e->d_name)) {
                rc = strvec_push(out, r);
                r = NULL;
            }
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(root, r, out, depth + 1);
        } else if (is_image_name(e->d_name)) {
            rc = strvec_push(out, r);
            r = NULL;
        }
        sp__free(r);
        sp__free(full);
    }
    closedir(d);
    sp__free(dir);
    return rc;
}

typedef struct folder_ctx {
    pack_state *ps;
    strvec *files;
    int64_t *labels;
} folder_ctx;

static sp_status emit_image(void *vctx, uint64_t i, slot *s) {
    folder_ctx *c = vctx;
    const char *key = c->files->v[i];
    if (s->rc < 0) return bad_item(c->ps, key, s->err);
    sp_value v[SP_N_FIXED_COLS];
    memset(v, 0, sizeof v);
    v[SP_COL_KEY].v.str.s = key;
    v[SP_COL_KEY].v.str.len = (uint32_t)strlen(key);
    v[SP_COL_LABEL].v.i = c->labels[i];
    v[SP_COL_WIDTH].v.i = s->info.width;
    v[SP_COL_HEIGHT].v.i = s->info.height;
    return sp_dataset_writer_add(c->ps->w, s->data, s->len, v);
}

static sp_status pack_imagefolder(const char *src, const char *out, const sp_pack_opts *opts,
                                  sp_pack_report *rep) {
    strvec classes = {0}, files = {0};
    int64_t *labels = NULL;
    char **paths = NULL;
    sp_dataset_writer *w = NULL;
    sp_status rc = SP_OK;
    DIR *d = opendir(src);
    if (!d) return sp__fail_errno(SP_EIO, errno, "%s: cannot open folder", src);
    struct dirent *e;
    while (rc == SP_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = sp__path_join(src, e->d_name);
        struct stat st;
        if (full && stat(full, &st) == 0 && S_ISDIR(st.st_mode))
            rc = strvec_push(&classes, sp__strdup(e->d_name));
        sp__free(full);
    }
    closedir(d);
    if (rc < 0) goto done;
    if (classes.n == 0) {
        rc = sp__fail(SP_EBADINPUT,
                      "%s: no class folders: an ImageFolder tree is SRC/<class>/<image>.jpg", src);
        goto done;
    }
    qsort(classes.v, classes.n, sizeof *classes.v, cmp_str);
    for (size_t c = 0; c < classes.n && rc == SP_OK; c++) {
        size_t before = files.n;
        rc = walk(src, classes.v[c], &files, 0);
        if (rc == SP_OK) qsort(files.v + before, files.n - before, sizeof *files.v, cmp_path);
        int64_t *nl = sp__realloc(labels, (files.n ? files.n : 1) * sizeof *labels);
        if (!nl) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            break;
        }
        labels = nl;
        for (size_t i = before; i < files.n; i++)
            labels[i] = (int64_t)c;
    }
    if (rc < 0) goto done;
    paths = sp__calloc(files.n ? files.n : 1, sizeof *paths);
    if (!paths) {
        rc = sp__fail(SP_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < files.n; i++)
        if (!(paths[i] = sp__path_join(src, files.v[i]))) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            goto done;
        }

    /* pack parameters: format and class names (the label -> name map) */
    json_t *params = json_object();
    json_object_set_new(params, "format", json_string("imagefolder"));
    json_t *cl = json_array();
    for (size_t c = 0; c < classes.n; c++)
        json_array_append_new(cl, json_string(classes.v[c]));
    json_object_set_new(params, "classes", cl);
    char *ptext = json_dumps(params, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(params);
    sp_writer_opts wo;
    sp_writer_opts_init(&wo);
    wo.shard_size = opts->shard_size;
    wo.block_size = opts->block_size;
    wo.params_json = ptext;
    rc = sp_dataset_writer_open(out, NULL, 0, &wo, &w);
    free(ptext);
    if (rc < 0) goto done;

    pipeline *p = sp__calloc(1, sizeof *p);
    if (!p) {
        rc = sp__fail(SP_ENOMEM, "out of memory");
        goto done;
    }
    p->paths = paths;
    p->names = (const char **)files.v;
    p->n = files.n;
    p->probe = 1;
    p->restart = opts->restart_markers;
    pack_state ps = {opts, w, 0, 0};
    folder_ctx fc = {&ps, &files, labels};
    rc = run_pipeline(p, opts->threads > 0 ? opts->threads : sp__ncpu(), &ps, emit_image, &fc);
    sp__free(p);
    if (rc == SP_OK) rc = sp_dataset_writer_commit(w);
    if (rc == SP_OK && rep) {
        rep->samples = sp_dataset_writer_count(w);
        rep->payload_bytes = sp_dataset_writer_bytes(w);
        rep->skipped = ps.skipped;
        rep->shards = sp_dataset_writer_shards(w);
        rep->classes = classes.n;
    }
done:
    sp_dataset_writer_close(w);
    if (paths)
        for (size_t i = 0; i < files.n; i++)
            sp__free(paths[i]);
    sp__free(paths);
    sp__free(labels);
    strvec_free(&files);
    strvec_free(&classes);
    return rc;
}

/* ------------------------------------------------------------ CSV / JSONL */

typedef struct table_ctx {
    pack_state *ps;
    const char *tname;
    sp__table *t;
    int key_col, label_col, time_col, image_col;
    int *user_cols; /* table column of each dataset user column */
    size_t n_user;
    char **label_names; /* string labels: sorted distinct values (index = label) */
    size_t n_label_names;
    sp_value *vals;
    char keybuf[64];
} table_ctx;

static int find_col(const sp__table *t, const char *name) {
    for (size_t c = 0; c < t->n_cols; c++)
        if (!strcmp(t->cols[c].name, name)) return (int)c;
    return -1;
}

static int cmp_label(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static sp_status emit_row(void *vctx, uint64_t r, slot *s) {
    table_ctx *c = vctx;
    sp__table *t = c->t;
    char where[512];
    snprintf(where, sizeof where, "%s:%" PRIu64, c->tname, t->line[r]);
    if (s->rc < 0) {
        char msg[SP_ERRMSG_MAX + 600];
        snprintf(msg, sizeof msg, "%s: %s", where, s->err);
        return bad_item(c->ps, where, msg);
    }
    sp_value *v = c->vals;
    memset(v, 0, (SP_N_FIXED_COLS + 1 + c->n_user) * sizeof *v);
    if (c->key_col >= 0 && !t->cols[c->key_col].cells[r].is_null) {
        const sp__table_col *kc = &t->cols[c->key_col];
        if (kc->type == SP_TYPE_STRING) {
            v[SP_COL_KEY] = kc->cells[r];
        } else {
            if (kc->type == SP_TYPE_INT64)
                snprintf(c->keybuf, sizeof c->keybuf, "%" PRId64, kc->cells[r].v.i);
            else
                snprintf(c->keybuf, sizeof c->keybuf, "%.17g", kc->cells[r].v.f);
            v[SP_COL_KEY].v.str.s = c->keybuf;
            v[SP_COL_KEY].v.str.len = (uint32_t)strlen(c->keybuf);
        }
    } else {
        snprintf(c->keybuf, sizeof c->keybuf, "line %" PRIu64, t->line[r]);
        v[SP_COL_KEY].v.str.s = c->keybuf;
        v[SP_COL_KEY].v.str.len = (uint32_t)strlen(c->keybuf);
    }
    v[SP_COL_LABEL].is_null = 1;
    if (c->label_col >= 0) {
        const sp_value *lv = &t->cols[c->label_col].cells[r];
        if (!lv->is_null) {
            v[SP_COL_LABEL].is_null = 0;
            if (t->cols[c->label_col].type == SP_TYPE_INT64) {
                v[SP_COL_LABEL].v.i = lv->v.i;
            } else if (t->cols[c->label_col].type == SP_TYPE_STRING) {
                char *tmp = sp__strndup(lv->v.str.s, lv->v.str.len);
                if (!tmp) return sp__fail(SP_ENOMEM, "out of memory");
                char **hit =
                    bsearch(&tmp, c->label_names, c->n_label_names, sizeof(char *), cmp_label);
                sp__free(tmp);
                v[SP_COL_LABEL].v.i = hit ? (int64_t)(hit - c->label_names) : -1;
            } else {
                char msg[1024];
                snprintf(msg, sizeof msg,
                         "%s: label column \"%s\" is float64; labels must be "
                         "integers or strings",
                         where, t->cols[c->label_col].name);
                return bad_item(c->ps, where, msg);
            }
        }
    }
    v[SP_COL_WIDTH].is_null = v[SP_COL_HEIGHT].is_null = 1;
    if (s->info.kind != SP_IMAGE_UNKNOWN) {
        v[SP_COL_WIDTH].is_null = v[SP_COL_HEIGHT].is_null = 0;
        v[SP_COL_WIDTH].v.i = s->info.width;
        v[SP_COL_HEIGHT].v.i = s->info.height;
    }
    size_t k = SP_N_FIXED_COLS;
    if (c->time_col >= 0) {
        const sp__table_col *tc = &t->cols[c->time_col];
        const sp_value *tv = &tc->cells[r];
        v[k].is_null = tv->is_null;
        if (!tv->is_null) {
            if (tc->type == SP_TYPE_INT64) {
                v[k].v.i = tv->v.i;
            } else if (tc->type == SP_TYPE_FLOAT64) {
                v[k].v.i = (int64_t)floor(tv->v.f);
            } else if (sp__parse_timestamp(tv->v.str.s, tv->v.str.len, &v[k].v.i) < 0) {
                char msg[SP_ERRMSG_MAX + 600];
                snprintf(msg, sizeof msg, "%s: column \"%s\": %s", where, tc->name, sp_errmsg());
                return bad_item(c->ps, where, msg);
            }
        }
        k++;
    }
    for (size_t u = 0; u < c->n_user; u++)
        v[k + u] = t->cols[c->user_cols[u]].cells[r];
    return sp_dataset_writer_add(c->ps->w, s->data, s->len, v);
}

static const char *table_dir_join(const char *table_path, const char *rel, char *buf, size_t cap) {
    const char *slash = strrchr(table_path, '/');
    if (rel[0] == '/' || !slash)
        snprintf(buf, cap, "%s", rel);
    else
        snprintf(buf, cap, "%.*s/%s", (int)(slash - table_path), table_path, rel);
    return buf;
}

static sp_status pick_col(const sp__table *t, const char *opt_name, const char *given,
                          const char *fallback, const char *tname, int *out) {
    *out = -1;
    if (given) {
        *out = find_col(t, given);
        if (*out < 0)
            return sp__fail(SP_EINVAL, "%s: --%s \"%s\": no such column", tname, opt_name, given);
    } else if (fallback) {
        *out = find_col(t, fallback);
    }
    return SP_OK;
}

static sp_status pack_table(const char *src, const char *out, const sp_pack_opts *opts,
                            sp_pack_format fmt, sp_pack_report *rep) {
    pack_state ps = {opts, NULL, 0, 0};
    sp__table_opts to;
    memset(&to, 0, sizeof to);
    to.schema = opts->schema;
    to.skip_errors = opts->skip_errors;
    to.on_skip = opts->on_skip;
    to.user = opts->user;
    sp__table *t = NULL;
    SP_TRY(fmt == SP_PACK_CSV ? sp__table_read_csv(src, &to, &t)
                              : sp__table_read_jsonl(src, &to, &t));
    table_ctx c;
    memset(&c, 0, sizeof c);
    c.ps = &ps;
    c.tname = src;
    c.t = t;
    char **paths = NULL;
    pipeline *p = NULL;
    sp_column *ucols = NULL;
    json_t *params = NULL;
    sp_status rc;
    if ((rc = pick_col(t, "key-column", opts->key_column, "key", src, &c.key_col)) < 0 ||
        (rc = pick_col(t, "label-column", opts->label_column, "label", src, &c.label_col)) < 0 ||
        (rc = pick_col(t, "time-column", opts->time_column, "timestamp", src, &c.time_col)) < 0 ||
        (rc = pick_col(t, "image-column", opts->image_column, NULL, src, &c.image_col)) < 0)
        goto done;
    if (c.image_col >= 0 && t->cols[c.image_col].type != SP_TYPE_STRING) {
        rc = sp__fail(SP_EINVAL, "%s: --image-column \"%s\" must hold file names (strings)", src,
                      t->cols[c.image_col].name);
        goto done;
    }
    ucols = sp__calloc(t->n_cols + 1, sizeof *ucols);
    c.user_cols = sp__calloc(t->n_cols + 1, sizeof *c.user_cols);
    c.vals = sp__calloc(t->n_cols + SP_N_FIXED_COLS + 1, sizeof *c.vals);
    if (!ucols || !c.user_cols || !c.vals) {
        rc = sp__fail(SP_ENOMEM, "out of memory");
        goto done;
    }
    size_t nu = 0;
    if (c.time_col >= 0) {
        snprintf(ucols[nu].name, SP_MAX_NAME, "timestamp");
        ucols[nu++].type = SP_TYPE_INT64;
    }
    static const char *reserved[] = {"key", "label", "width", "height", "timestamp"};
    for (size_t col = 0; col < t->n_cols; col++) {
        if ((int)col == c.key_col || (int)col == c.label_col || (int)col == c.time_col) continue;
        for (size_t r = 0; r < sizeof reserved / sizeof *reserved; r++)
            if (!strcmp(t->cols[col].name, reserved[r])) {
                rc = sp__fail(SP_EINVAL,
                              "%s: column \"%s\" clashes with the dataset's own \"%s\" column; "
                              "rename it in the table",
                              src, t->cols[col].name, reserved[r]);
                goto done;
            }
        ucols[nu] = (sp_column){{0}, t->cols[col].type};
        snprintf(ucols[nu].name, SP_MAX_NAME, "%s", t->cols[col].name);
        c.user_cols[c.n_user++] = (int)col;
        nu++;
    }
    /* string labels become class indices in sorted order, like ImageFolder */
    params = json_object();
    json_object_set_new(params, "format", json_string(sp_pack_format_name(fmt)));
    if (c.label_col >= 0 && t->cols[c.label_col].type == SP_TYPE_STRING) {
        c.label_names = sp__calloc(t->n_rows + 1, sizeof *c.label_names);
        if (!c.label_names) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            goto done;
        }
        for (uint64_t r = 0; r < t->n_rows; r++) {
            const sp_value *lv = &t->cols[c.label_col].cells[r];
            if (!lv->is_null)
                c.label_names[c.n_label_names++] = sp__strndup(lv->v.str.s, lv->v.str.len);
        }
        qsort(c.label_names, c.n_label_names, sizeof *c.label_names, cmp_label);
        size_t u = 0;
        for (size_t i = 0; i < c.n_label_names; i++) {
            if (u > 0 && !strcmp(c.label_names[u - 1], c.label_names[i])) {
                sp__free(c.label_names[i]);
                continue;
            }
            c.label_names[u++] = c.label_names[i];
        }
        c.n_label_names = u;
        json_t *cl = json_array();
        for (size_t i = 0; i < u; i++)
            json_array_append_new(cl, json_string(c.label_names[i]));
        json_object_set_new(params, "classes", cl);
    }
    char *ptext = json_dumps(params, JSON_COMPACT | JSON_PRESERVE_ORDER);
    sp_writer_opts wo;
    sp_writer_opts_init(&wo);
    wo.shard_size = opts->shard_size;
    wo.block_size = opts->block_size;
    wo.params_json = ptext;
    rc = sp_dataset_writer_open(out, ucols, nu, &wo, &ps.w);
    free(ptext);
    if (rc < 0) goto done;

    paths = sp__calloc(t->n_rows + 1, sizeof *paths);
    char **names = sp__calloc(t->n_rows + 1, sizeof *names);
    p = sp__calloc(1, sizeof *p);
    if (!paths || !names || !p) {
        sp__free(names);
        rc = sp__fail(SP_ENOMEM, "out of memory");
        goto done;
    }
    for (uint64_t r = 0; c.image_col >= 0 && r < t->n_rows; r++) {
        const sp_value *iv = &t->cols[c.image_col].cells[r];
        if (iv->is_null) continue;
        char rel[4096], full[8192];
        snprintf(rel, sizeof rel, "%.*s", (int)iv->v.str.len, iv->v.str.s);
        paths[r] = sp__strdup(table_dir_join(src, rel, full, sizeof full));
        names[r] = sp__strdup(rel);
    }
    p->paths = paths;
    p->names = (const char **)names;
    p->n = t->n_rows;
    p->probe = 1;
    p->restart = opts->restart_markers;
    rc = run_pipeline(p, opts->threads > 0 ? opts->threads : sp__ncpu(), &ps, emit_row, &c);
    for (uint64_t r = 0; r < t->n_rows; r++)
        sp__free(names[r]);
    sp__free(names);
    if (rc == SP_OK) rc = sp_dataset_writer_commit(ps.w);
    if (rc == SP_OK && rep) {
        rep->samples = sp_dataset_writer_count(ps.w);
        rep->payload_bytes = sp_dataset_writer_bytes(ps.w);
        rep->skipped = ps.skipped + t->skipped;
        rep->shards = sp_dataset_writer_shards(ps.w);
        rep->classes = c.n_label_names;
    }
done:
    json_decref(params);
    sp_dataset_writer_close(ps.w);
    if (paths)
        for (uint64_t r = 0; r < t->n_rows; r++)
            sp__free(paths[r]);
    sp__free(paths);
    sp__free(p);
    for (size_t i = 0; i < c.n_label_names; i++)
        sp__free(c.label_names[i]);
    sp__free(c.label_names);
    sp__free(c.user_cols);
    sp__free(c.vals);
    sp__free(ucols);
    sp__table_free(t);
    return rc;
}

/* ------------------------------------------------------------ entry point */

static sp_pack_format detect(const char *src) {
    struct stat st;
    if (stat(src, &st) == 0 && S_ISDIR(st.st_mode)) return SP_PACK_IMAGEFOLDER;
    const char *dot = strrchr(src, '.');
    if (dot && (!strcasecmp(dot, ".csv") || !strcasecmp(dot, ".tsv"))) return SP_PACK_CSV;
    if (dot &&
        (!strcasecmp(dot, ".jsonl") || !strcasecmp(dot, ".ndjson") || !strcasecmp(dot, ".json")))
        return SP_PACK_JSONL;
    return SP_PACK_AUTO;
}

sp_status sp_pack(const char *src, const char *out, const sp_pack_opts *opts,
                  sp_pack_report *report) {
    sp_pack_opts def;
    sp_pack_opts_init(&def);
    if (!opts) opts = &def;
    if (report) memset(report, 0, sizeof *report);
    if (!src || !*src) return sp__fail(SP_EINVAL, "pack: no source given");
    if (!out || !*out) return sp__fail(SP_EINVAL, "pack: no output given");
    struct stat st;
    if (stat(src, &st) != 0) return sp__fail_errno(SP_ENOTFOUND, errno, "%s", src);
    if (stat(out, &st) == 0)
        return sp__fail(SP_EEXIST, "%s: already exists (remove it or choose another output)", out);
    sp_pack_format fmt = opts->format == SP_PACK_AUTO ? detect(src) : opts->format;
    if (fmt == SP_PACK_AUTO)
        return sp__fail(SP_EINVAL,
                        "%s: cannot tell the format: give a folder (ImageFolder), a .csv or a "
                        ".jsonl file, or --format",
                        src);
    sp_status rc = fmt == SP_PACK_IMAGEFOLDER ? pack_imagefolder(src, out, opts, report)
                                              : pack_table(src, out, opts, fmt, report);
    if (rc == SP_OK && report) report->format = fmt;
    return rc;
}
