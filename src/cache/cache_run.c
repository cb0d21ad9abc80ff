/* cache_run.c — stage keys, status with reasons, the scheduler, the project lock, gc.
 *
 * Stage key: the sha256 (hex) of this text, every free-form field length-prefixed so that no
 * two different stages encode alike:
 *     softpipe-stage-key 1\n
 *     cmd <n>\n            then per command line: <len>:<text>\n
 *     wdir <len>:<text>\n
 *     param <len>:<file> <len>:<key> <len>:<canonical JSON value, or "null!" when missing>\n
 *                          (sorted by file, then key)
 *     dep <len>:<path> <digest>\n            (sorted by path; digests name their hash function)
 *     env <len>:<name> <len>:<value>\n, or env <len>:<name> unset\n      (sorted by name)
 *     out <len>:<path>\n                      (sorted)
 * The stage's name is not part of it, so renaming a stage or moving it to another branch keeps
 * its cached results.
 *
 * Why a stage is stale: after every run or restore, .softpipe/state/<stage>.json records the
 * key, the components above and the digests of the outputs as written. Status recomputes the
 * components and names each difference ("param train.lr changed 0.1 -> 0.01", "dep data/raw.csv
 * changed (sha256 1f3a… -> 9b2c…)", "command changed", "output models/m.bin was modified").
 *
 * Running: stages are taken in pipeline (topological) order; a stage is ready when its upstream
 * stages are done, its key is computed then (so an upstream rerun that reproduced the same bytes
 * leaves it up to date: early cutoff), and up to `jobs` commands run at once as child processes.
 * Before a command runs, its existing outputs are moved aside; if it fails they are moved back,
 * so a failed stage keeps its previous outputs. */
#include "cache_internal.h"
#include "softpipe/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct stage_rt {
    sp_stage_status st;
    char **reasons;
    size_t n_reasons;
} stage_rt;

struct sp_project {
    sp__pipeline pl;
    stage_rt *rt;
    sp_stage_status *view; /* what sp_project_status hands out */
};

/* ---- small helpers */

static char *abs_path(const sp_project *p, const char *rel) {
    return sp__path_join(p->pl.root, rel);
}

static sp_status add_reason(stage_rt *r, const char *fmt, ...) SP__PRINTF(2, 3);
static sp_status add_reason(stage_rt *r, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **nr = sp__realloc(r->reasons, (r->n_reasons + 1) * sizeof *nr);
    if (!nr) return sp__fail(SP_ENOMEM, "out of memory");
    r->reasons = nr;
    if (!(nr[r->n_reasons] = sp__strdup(buf))) return sp__fail(SP_ENOMEM, "out of memory");
    r->n_reasons++;
    return SP_OK;
}

static void clear_reasons(stage_rt *r) {
    for (size_t i = 0; i < r->n_reasons; i++)
        sp__free(r->reasons[i]);
    sp__free(r->reasons);
    r->reasons = NULL;
    r->n_reasons = 0;
}

static sp_status mkdirs(const char *path) {
    char *tmp = sp__strdup(path);
    if (!tmp) return sp__fail(SP_ENOMEM, "out of memory");
    for (char *q = tmp + 1; *q; q++) {
        if (*q != '/') continue;
        *q = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
            sp_status rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create the folder", tmp);
            sp__free(tmp);
            return rc;
        }
        *q = '/';
    }
    sp_status rc = SP_OK;
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create the folder", tmp);
    sp__free(tmp);
    return rc;
}

/* ---- the stage's current inputs and key */

typedef struct inputs {
    char **dep_digest; /* per dep, or NULL when missing */
    int missing;       /* index+1 of the first missing dep, 0 = none */
    char **env_value;  /* per env name, or NULL when unset */
    char key[65];
} inputs;

static void inputs_free(inputs *in, const sp__stage *s) {
    for (size_t i = 0; in->dep_digest && i < s->n_deps; i++)
        sp__free(in->dep_digest[i]);
    for (size_t i = 0; in->env_value && i < s->n_env; i++)
        sp__free(in->env_value[i]);
    sp__free(in->dep_digest);
    sp__free(in->env_value);
    memset(in, 0, sizeof *in);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static sp_status buf_field(sp__buf *b, const char *s) {
    return sp__buf_printf(b, "%zu:%s", strlen(s), s);
}

/* Digests the deps (through the stat cache) and computes the key. */
static sp_status compute_inputs(sp_project *p, sp__statcache *sc, const sp__stage *s, inputs *in) {
    memset(in, 0, sizeof *in);
    in->dep_digest = sp__calloc(s->n_deps + 1, sizeof(char *));
    in->env_value = sp__calloc(s->n_env + 1, sizeof(char *));
    if (!in->dep_digest || !in->env_value) return sp__fail(SP_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n_deps; i++) {
        char *path = abs_path(p, s->deps[i]);
        if (!path) return sp__fail(SP_ENOMEM, "out of memory");
        char d[SP__DIGEST_MAX];
        sp_status rc = sp__digest_path(sc, path, d, NULL);
        sp__free(path);
        if (rc == SP_ENOTFOUND) {
            if (!in->missing) in->missing = (int)i + 1;
            continue;
        }
        if (rc < 0) return rc;
        if (!(in->dep_digest[i] = sp__strdup(d))) return sp__fail(SP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < s->n_env; i++) {
        const char *v = getenv(s->env[i]);
        if (v && !(in->env_value[i] = sp__strdup(v))) return sp__fail(SP_ENOMEM, "out of memory");
    }
    if (in->missing) return SP_OK; /* no key without every dep */

    /* the canonical text (see the file header) */
    sp__buf b = {0};
    sp_status rc = sp__buf_printf(&b, "softpipe-stage-key 1\ncmd %zu\n", s->n_cmd);
    for (size_t i = 0; i < s->n_cmd && rc == SP_OK; i++) {
        rc = buf_field(&b, s->cmd[i]);
        if (rc == SP_OK) rc = sp__buf_append(&b, "\n", 1);
    }
    if (rc == SP_OK) rc = sp__buf_append(&b, "wdir ", 5);
    if (rc == SP_OK) rc = buf_field(&b, s->wdir ? s->wdir : "");
    if (rc == SP_OK) rc = sp__buf_append(&b, "\n", 1);
    /* sorted views of params, deps, env, outs */
    size_t nl = s->n_params + s->n_deps + s->n_env + s->n_outs;
    char **lines = sp__calloc(nl + 1, sizeof(char *));
    if (!lines && rc == SP_OK) rc = sp__fail(SP_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < s->n_params && rc == SP_OK; i++) {
        sp__buf l = {0};
        const sp__param *q = &s->params[i];
        rc = sp__buf_printf(&l, "param %zu:%s %zu:%s %zu:%s", strlen(q->file), q->file,
                            strlen(q->key), q->key, strlen(q->value ? q->value : "null!"),
                            q->value ? q->value : "null!");
        if (rc == SP_OK) rc = sp__buf_append(&l, "", 1);
        lines[k++] = (char *)l.data;
    }
    for (size_t i = 0; i < s->n_deps && rc == SP_OK; i++) {
        sp__buf l = {0};
        rc = sp__buf_printf(&l, "dep %zu:%s %s", strlen(s->deps[i]), s->deps[i], in->dep_digest[i]);
        if (rc == SP_OK) rc = sp__buf_append(&l, "", 1);
        lines[k++] = (char *)l.data;
    }
    for (size_t i = 0; i < s->n_env && rc == SP_OK; i++) {
        sp__buf l = {0};
        if (in->env_value[i])
            rc = sp__buf_printf(&l, "env %zu:%s %zu:%s", strlen(s->env[i]), s->env[i],
                                strlen(in->env_value[i]), in->env_value[i]);
        else
            rc = sp__buf_printf(&l, "env %zu:%s unset", strlen(s->env[i]), s->env[i]);
        if (rc == SP_OK) rc = sp__buf_append(&l, "", 1);
        lines[k++] = (char *)l.data;
    }
    for (size_t i = 0; i < s->n_outs && rc == SP_OK; i++) {
        sp__buf l = {0};
        rc = sp__buf_printf(&l, "out %zu:%s", strlen(s->outs[i]), s->outs[i]);
        if (rc == SP_OK) rc = sp__buf_append(&l, "", 1);
        lines[k++] = (char *)l.data;
    }
    if (rc == SP_OK) {
        /* each section keeps its prefix ("dep", "env", ...), so one sort orders sections and
         * their entries together, deterministically */
        qsort(lines, k, sizeof(char *), cmp_str);
        for (size_t i = 0; i < k && rc == SP_OK; i++) {
            rc = sp__buf_append(&b, lines[i], strlen(lines[i]));
            if (rc == SP_OK) rc = sp__buf_append(&b, "\n", 1);
        }
    }
    for (size_t i = 0; lines && i < k; i++)
        sp__free(lines[i]);
    sp__free(lines);
    if (rc == SP_OK) {
        sp__sha256 h;
        rc = sp__sha256_init(&h);
        if (rc == SP_OK) {
            sp__sha256_update(&h, b.data, b.len);
            sp__sha256_final(&h, in->key);
        }
    }
    sp__buf_free(&b);
    return rc;
}

/* ---- the per-stage state file */

static char *state_path(const sp_project *p, const char *stage) {
    char rel[512];
    snprintf(rel, sizeof rel, ".softpipe/state/%s.json", stage);
    return abs_path(p, rel);
}

static sp_status write_state(sp_project *p, const sp__stage *s, const inputs *in,
                             const sp__manifest *m) {
    json_t *o = json_object(), *cmd = json_array(), *params = json_object(), *deps = json_object();
    json_t *env = json_object(), *outs = json_array(), *outputs = json_array();
    json_object_set_new(o, "key", json_string(in->key));
    for (size_t i = 0; i < s->n_cmd; i++)
        json_array_append_new(cmd, json_string(s->cmd[i]));
    json_object_set_new(o, "cmd", cmd);
    json_object_set_new(o, "wdir", json_string(s->wdir ? s->wdir : ""));
    for (size_t i = 0; i < s->n_params; i++) {
        char k[512];
        snprintf(k, sizeof k, "%s:%s", s->params[i].file, s->params[i].key);
        json_object_set_new(params, k,
                            s->params[i].value ? json_string(s->params[i].value) : json_null());
    }
    json_object_set_new(o, "params", params);
    for (size_t i = 0; i < s->n_deps; i++)
        json_object_set_new(deps, s->deps[i], json_string(in->dep_digest[i]));
    json_object_set_new(o, "deps", deps);
    for (size_t i = 0; i < s->n_env; i++)
        json_object_set_new(env, s->env[i],
                            in->env_value[i] ? json_string(in->env_value[i]) : json_null());
    json_object_set_new(o, "env", env);
    for (size_t i = 0; i < s->n_outs; i++)
        json_array_append_new(outs, json_string(s->outs[i]));
    json_object_set_new(o, "outs", outs);
    for (size_t i = 0; m && i < m->n; i++)
        json_array_append_new(
            outputs, json_pack("{s:s,s:s}", "path", m->e[i].path, "digest", m->e[i].digest));
    json_object_set_new(o, "outputs", outputs);
    char *text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(o);
    if (!text) return sp__fail(SP_ENOMEM, "out of memory");
    char *path = state_path(p, s->name);
    char *dir = abs_path(p, ".softpipe/state");
    sp_status rc = path && dir ? mkdirs(dir) : sp__fail(SP_ENOMEM, "out of memory");
    if (rc == SP_OK) rc = sp__file_commit(path, text, strlen(text));
    free(text);
    sp__free(path);
    sp__free(dir);
    return rc;
}

static json_t *read_state(const sp_project *p, const char *stage) {
    char *path = state_path(p, stage);
    if (!path) return NULL;
    json_t *o = json_load_file(path, 0, NULL);
    sp__free(path);
    return json_is_object(o) ? o : (json_decref(o), NULL);
}

static void short_digest(const char *d, char *out, size_t cap) {
    const char *colon = strchr(d, ':');
    if (!colon) {
        snprintf(out, cap, "%.8s", d);
        return;
    }
    snprintf(out, cap, "%.*s %.4s…", (int)(colon - d), d, colon + 1);
}

/* Reasons why the stage's current inputs differ from its recorded state. */
static sp_status diff_state(sp_project *p, sp__statcache *sc, const sp__stage *s, const inputs *in,
                            json_t *old, stage_rt *r, int *outputs_ok) {
    *outputs_ok = 1;
    json_t *cmd = json_object_get(old, "cmd");
    int cmd_same = json_array_size(cmd) == s->n_cmd;
    for (size_t i = 0; cmd_same && i < s->n_cmd; i++) {
        const char *c = json_string_value(json_array_get(cmd, i));
        cmd_same = c && strcmp(c, s->cmd[i]) == 0;
    }
    if (!cmd_same) SP_TRY(add_reason(r, "command changed"));
    const char *wd = json_string_value(json_object_get(old, "wdir"));
    if (!wd || strcmp(wd, s->wdir ? s->wdir : "") != 0) SP_TRY(add_reason(r, "wdir changed"));
    json_t *params = json_object_get(old, "params");
    for (size_t i = 0; i < s->n_params; i++) {
        char k[512];
        snprintf(k, sizeof k, "%s:%s", s->params[i].file, s->params[i].key);
        json_t *ov = json_object_get(params, k);
        const char *nv = s->params[i].value;
        const char *was = json_is_string(ov) ? json_string_value(ov) : NULL;
        const char *shown = strcmp(s->params[i].file, "params.yaml") == 0 ? s->params[i].key : k;
        if (!ov)
            SP_TRY(add_reason(r, "param %s added", shown));
        else if ((was == NULL) != (nv == NULL) || (was && strcmp(was, nv) != 0))
            SP_TRY(add_reason(r, "param %s changed %s -> %s", shown, was ? was : "(missing)",
                              nv ? nv : "(missing)"));
    }
    if (json_object_size(params) > s->n_params) SP_TRY(add_reason(r, "a param was removed"));
    json_t *deps = json_object_get(old, "deps");
    for (size_t i = 0; i < s->n_deps; i++) {
        const char *was = json_string_value(json_object_get(deps, s->deps[i]));
        const char *now = in->dep_digest[i];
        if (!now) continue; /* reported as missing by the caller */
        if (!was) {
            SP_TRY(add_reason(r, "dep %s added", s->deps[i]));
        } else if (strcmp(was, now) != 0) {
            char a[40], b2[40];
            short_digest(was, a, sizeof a);
            short_digest(now, b2, sizeof b2);
            SP_TRY(add_reason(r, "dep %s changed (%s -> %s)", s->deps[i], a, b2));
        }
    }
    if (json_object_size(deps) > s->n_deps) SP_TRY(add_reason(r, "a dep was removed"));
    json_t *env = json_object_get(old, "env");
    for (size_t i = 0; i < s->n_env; i++) {
        json_t *ov = json_object_get(env, s->env[i]);
        const char *was = json_string_value(ov), *now = in->env_value[i];
        if ((was == NULL) != (now == NULL) || (was && strcmp(was, now) != 0))
            SP_TRY(add_reason(r, "env %s changed", s->env[i]));
    }
    json_t *outs = json_object_get(old, "outs");
    int outs_same = json_array_size(outs) == s->n_outs;
    for (size_t i = 0; outs_same && i < s->n_outs; i++) {
        const char *o = json_string_value(json_array_get(outs, i));
        outs_same = o && strcmp(o, s->outs[i]) == 0;
    }
    if (!outs_same) SP_TRY(add_reason(r, "outs changed"));
    /* the outputs as written */
    json_t *outputs = json_object_get(old, "outputs");
    for (size_t i = 0; i < json_array_size(outputs); i++) {
        json_t *e = json_array_get(outputs, i);
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *digest = json_string_value(json_object_get(e, "digest"));
        if (!path || !digest) continue;
        char *ap = abs_path(p, path);
        if (!ap) return sp__fail(SP_ENOMEM, "out of memory");
        char d[SP__DIGEST_MAX];
        sp_status rc = sp__digest_path(sc, ap, d, NULL);
        sp__free(ap);
        if (rc == SP_ENOTFOUND) {
            *outputs_ok = 0;
            SP_TRY(add_reason(r, "output %s is missing", path));
        } else if (rc < 0) {
            return rc;
        } else if (strcmp(d, digest) != 0) {
            *outputs_ok = 0;
            SP_TRY(add_reason(r, "output %s was modified", path));
        }
    }
    return SP_OK;
}

/* ---- project */

sp_status sp_project_open(const char *dir, const char *pipeline, sp_project **out) {
    if (!out || !dir) return sp__fail(SP_EINVAL, "sp_project_open: NULL argument");
    *out = NULL;
    char *root = realpath(dir, NULL);
    if (!root) return sp__fail_errno(errno == ENOENT ? SP_ENOTFOUND : SP_EIO, errno, "%s", dir);
    char *file = sp__path_join(root, pipeline ? pipeline : "softpipe.yaml");
    uint8_t *text = NULL;
    size_t len = 0;
    sp_status rc = file ? sp__read_file(file, &text, &len) : sp__fail(SP_ENOMEM, "out of memory");
    sp_project *p = NULL;
    if (rc == SP_OK) {
        p = sp__calloc(1, sizeof *p);
        if (!p) rc = sp__fail(SP_ENOMEM, "out of memory");
    }
    if (rc == SP_OK)
        rc = sp__pipeline_parse(root, pipeline ? pipeline : "softpipe.yaml", (const char *)text,
                                len, &p->pl);
    if (rc == SP_OK) {
        p->rt = sp__calloc(p->pl.n_stages + 1, sizeof(stage_rt));
        if (!p->rt) rc = sp__fail(SP_ENOMEM, "out of memory");
    }
    free(root);
    sp__free(file);
    sp__free(text);
    if (rc < 0) {
        if (p && p->pl.stages) sp__pipeline_free(&p->pl);
        sp__free(p);
        return rc;
    }
    *out = p;
    return SP_OK;
}

void sp_project_close(sp_project *p) {
    if (!p) return;
    for (size_t i = 0; p->rt && i < p->pl.n_stages; i++)
        clear_reasons(&p->rt[i]);
    sp__free(p->rt);
    sp__free(p->view);
    sp__pipeline_free(&p->pl);
    sp__free(p);
}

size_t sp_project_n_stages(const sp_project *p) {
    return p->pl.n_stages;
}

const char *sp_project_stage_name(const sp_project *p, size_t i) {
    return i < p->pl.n_stages ? p->pl.stages[i].name : NULL;
}

void sp_run_opts_init(sp_run_opts *o) {
    memset(o, 0, sizeof *o);
    o->jobs = 1;
}

/* Fills rt[i] for stage i: state, key and reasons. upstream_ok: all upstream stages are up to
 * date. */
static sp_status stage_status(sp_project *p, sp__statcache *sc, sp__store *st, size_t i,
                              int upstream_ok, inputs *in) {
    const sp__stage *s = &p->pl.stages[i];
    stage_rt *r = &p->rt[i];
    clear_reasons(r);
    r->st.name = s->name;
    r->st.key[0] = '\0';
    SP_TRY(compute_inputs(p, sc, s, in));
    if (in->missing) {
        r->st.state = SP_STAGE_STALE;
        SP_TRY(add_reason(r, "dep %s is missing", s->deps[in->missing - 1]));
    } else {
        memcpy(r->st.key, in->key, 65);
        json_t *old = read_state(p, s->name);
        int outputs_ok = 0;
        if (!old)
            SP_TRY(add_reason(r, "never run here"));
        else {
            sp_status rc = diff_state(p, sc, s, in, old, r, &outputs_ok);
            const char *k = json_string_value(json_object_get(old, "key"));
            if (rc == SP_OK && (!k || strcmp(k, in->key) != 0) && r->n_reasons == 0)
                rc = add_reason(r, "key changed (format or encoding)");
            if (rc == SP_OK && k && strcmp(k, in->key) == 0 && outputs_ok && upstream_ok) {
                json_decref(old);
                r->st.state = SP_STAGE_UP_TO_DATE;
                clear_reasons(r);
                goto out;
            }
            json_decref(old);
            SP_TRY(rc);
        }
        sp__manifest m = {0};
        if (!upstream_ok) {
            r->st.state = SP_STAGE_STALE;
        } else if (st && sp__store_lookup(st, in->key, &m) == SP_OK) {
            r->st.state = SP_STAGE_RESTORABLE;
            sp__manifest_free(&m);
        } else {
            r->st.state = SP_STAGE_STALE;
        }
    }
out:
    if (!upstream_ok)
        for (size_t u = 0; u < s->n_upstream; u++) {
            const stage_rt *ur = &p->rt[s->upstream[u]];
            if (ur->st.state != SP_STAGE_UP_TO_DATE) {
                r->st.state = SP_STAGE_STALE;
                SP_TRY(add_reason(r, "upstream stage '%s' is not up to date", ur->st.name));
                break;
            }
        }
    r->st.reasons = (const char *const *)r->reasons;
    r->st.n_reasons = r->n_reasons;
    return SP_OK;
}

sp_status sp_project_status(sp_project *p, const sp_stage_status **out, size_t *n) {
    sp__statcache *sc = NULL;
    sp__store *st = NULL;
    SP_TRY(sp__statcache_open(p->pl.root, &sc));
    sp_status rc = sp__store_open(p->pl.root, &st);
    for (size_t i = 0; i < p->pl.n_stages && rc == SP_OK; i++) {
        const sp__stage *s = &p->pl.stages[i];
        int upstream_ok = 1;
        for (size_t u = 0; u < s->n_upstream; u++)
            if (p->rt[s->upstream[u]].st.state != SP_STAGE_UP_TO_DATE) upstream_ok = 0;
        inputs in;
        rc = stage_status(p, sc, st, i, upstream_ok, &in);
        inputs_free(&in, s);
    }
    sp__store_close(st);
    if (rc == SP_OK)
        rc = sp__statcache_close(sc);
    else
        sp__statcache_free(sc);
    if (rc < 0) return rc;
    /* a contiguous array of the public structs */
    sp__free(p->view);
    p->view = sp__calloc(p->pl.n_stages + 1, sizeof *p->view);
    if (!p->view) return sp__fail(SP_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->pl.n_stages; i++)
        p->view[i] = p->rt[i].st;
    *out = p->view;
    *n = p->pl.n_stages;
    return SP_OK;
}

/* ---- running */

enum { PENDING, RUNNING, DONE, FAILED, SKIPPED };

typedef struct job {
    int state;
    pid_t pid;
    double t0;
    inputs in;
    char **backup; /* per out: where its previous version was moved, or NULL */
} job;

static void event(const sp_run_opts *o, const char *stage, const char *what, const char *fmt, ...)
    SP__PRINTF(4, 5);
static void event(const sp_run_opts *o, const char *stage, const char *what, const char *fmt, ...) {
    if (!o->on_event) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    o->on_event(o->user, stage, what, buf);
}

static int lock_project(sp_project *p, const sp_run_opts *o, int *fd_out) {
    char *dir = abs_path(p, ".softpipe");
    char *path = abs_path(p, ".softpipe/lock");
    sp_status rc = dir && path ? mkdirs(dir) : sp__fail(SP_ENOMEM, "out of memory");
    int fd = -1;
    if (rc == SP_OK) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) rc = sp__fail_errno(SP_EIO, errno, "%s", path);
    }
    if (rc == SP_OK && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        event(o, "", "waiting", "another softpipe run holds %s; waiting for it to finish", path);
        if (flock(fd, LOCK_EX) < 0) rc = sp__fail_errno(SP_EIO, errno, "%s: lock", path);
    }
    sp__free(dir);
    sp__free(path);
    if (rc < 0) {
        if (fd >= 0) close(fd);
        return rc;
    }
    *fd_out = fd;
    return SP_OK;
}

/* Moves the stage's existing outputs aside (into .softpipe/tmp/) before its command runs. */
static sp_status backup_outputs(sp_project *p, const sp__stage *s, job *j) {
    j->backup = sp__calloc(s->n_outs + 1, sizeof(char *));
    if (!j->backup) return sp__fail(SP_ENOMEM, "out of memory");
    char *tmpdir = abs_path(p, ".softpipe/tmp");
    if (!tmpdir) return sp__fail(SP_ENOMEM, "out of memory");
    sp_status rc = mkdirs(tmpdir);
    for (size_t i = 0; i < s->n_outs && rc == SP_OK; i++) {
        char *ap = abs_path(p, s->outs[i]);
        if (!ap) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            break;
        }
        /* the output's folder must exist for the command */
        char *slash = strrchr(ap, '/');
        if (slash && slash != ap) {
            *slash = '\0';
            rc = mkdirs(ap);
            *slash = '/';
        }
        struct stat sb;
        if (rc == SP_OK && lstat(ap, &sb) == 0) {
            char name[600];
            snprintf(name, sizeof name, "%s/backup-%ld-%s-%zu", tmpdir, (long)getpid(), s->name, i);
            if (rename(ap, name) < 0)
                rc = sp__fail_errno(SP_EIO, errno, "%s: cannot move aside", ap);
            else if (!(j->backup[i] = sp__strdup(name)))
                rc = sp__fail(SP_ENOMEM, "out of memory");
        }
        sp__free(ap);
    }
    sp__free(tmpdir);
    return rc;
}

/* After a failure: whatever the command wrote goes, the previous outputs come back. */
static void restore_backup(sp_project *p, const sp__stage *s, job *j, int keep_new) {
    for (size_t i = 0; j->backup && i < s->n_outs; i++) {
        if (!j->backup[i]) continue;
        if (keep_new) {
            sp__remove_tree(j->backup[i]);
        } else {
            char *ap = abs_path(p, s->outs[i]);
            if (ap) {
                sp__remove_tree(ap);
                if (rename(j->backup[i], ap) < 0) sp__remove_tree(j->backup[i]);
            }
            sp__free(ap);
        }
        sp__free(j->backup[i]);
    }
    if (!keep_new)
        for (size_t i = 0; j->backup && i < s->n_outs; i++)
            if (!j->backup[i]) {
                /* no previous version: remove what the failed command left */
                char *ap = abs_path(p, s->outs[i]);
                if (ap) sp__remove_tree(ap);
                sp__free(ap);
            }
    sp__free(j->backup);
    j->backup = NULL;
}

static sp_status start_stage(sp_project *p, const sp__stage *s, job *j) {
    SP_TRY(backup_outputs(p, s, j));
    sp__buf script = {0};
    sp_status rc = sp__buf_printf(&script, "set -e\n");
    for (size_t i = 0; i < s->n_cmd && rc == SP_OK; i++)
        rc = sp__buf_printf(&script, "%s\n", s->cmd[i]);
    if (rc == SP_OK) rc = sp__buf_append(&script, "", 1);
    char *wdir = abs_path(p, s->wdir && *s->wdir ? s->wdir : ".");
    if (rc == SP_OK && !wdir) rc = sp__fail(SP_ENOMEM, "out of memory");
    if (rc < 0) {
        sp__buf_free(&script);
        sp__free(wdir);
        return rc;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(wdir) < 0) _exit(127);
        setenv("SOFTPIPE_ROOT", p->pl.root, 1);
        execl("/bin/sh", "sh", "-c", (const char *)script.data, (char *)NULL);
        _exit(127);
    }
    sp__buf_free(&script);
    sp__free(wdir);
    if (pid < 0) return sp__fail_errno(SP_EIO, errno, "stage '%s': cannot start", s->name);
    j->pid = pid;
    j->state = RUNNING;
    j->t0 = sp__now();
    return SP_OK;
}

/* Is stage i wanted (selected or upstream of a selected stage)? */
static sp_status select_stages(sp_project *p, const sp_run_opts *o, uint8_t *want) {
    if (!o->stages || o->n_stages == 0) {
        memset(want, 1, p->pl.n_stages);
        return SP_OK;
    }
    for (size_t k = 0; k < o->n_stages; k++) {
        size_t found = SIZE_MAX;
        for (size_t i = 0; i < p->pl.n_stages; i++)
            if (strcmp(p->pl.stages[i].name, o->stages[k]) == 0) found = i;
        if (found == SIZE_MAX)
            return sp__fail(SP_ENOTFOUND, "%s: no stage '%s'", p->pl.file, o->stages[k]);
        want[found] = 1;
    }
    /* upstream closure: stages come in topological order, so one backward pass suffices */
    for (size_t i = p->pl.n_stages; i-- > 0;)
        if (want[i])
            for (size_t u = 0; u < p->pl.stages[i].n_upstream; u++)
                want[p->pl.stages[i].upstream[u]] = 1;
    return SP_OK;
}

sp_status sp_project_run(sp_project *p, const sp_run_opts *opts) {
    sp_run_opts o;
    if (opts)
        o = *opts;
    else
        sp_run_opts_init(&o);
    if (o.jobs < 1) o.jobs = 1;
    const size_t n = p->pl.n_stages;
    uint8_t *want = sp__calloc(n + 1, 1);
    job *jobs = sp__calloc(n + 1, sizeof *jobs);
    if (!want || !jobs) {
        sp__free(want);
        sp__free(jobs);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    sp_status rc = select_stages(p, &o, want);
    int lock_fd = -1;
    if (rc == SP_OK && !o.dry_run) rc = lock_project(p, &o, &lock_fd);
    sp__statcache *sc = NULL;
    sp__store *st = NULL;
    if (rc == SP_OK) rc = sp__statcache_open(p->pl.root, &sc);
    if (rc == SP_OK) rc = sp__store_open(p->pl.root, &st);
    sp__remote *rem = NULL;
    if (rc == SP_OK && o.remote) rc = sp__remote_open(o.remote, &rem);
    sp_status failure = SP_OK;
    char failed_msg[512] = "";
    size_t running = 0;
    for (size_t i = 0; i < n; i++)
        jobs[i].state = want[i] ? PENDING : DONE;
    while (rc == SP_OK) {
        int progress = 0, pending = 0;
        for (size_t i = 0; i < n && rc == SP_OK; i++) {
            job *j = &jobs[i];
            const sp__stage *s = &p->pl.stages[i];
            if (j->state != PENDING) continue;
            pending++;
            int blocked = 0, dead = 0;
            for (size_t u = 0; u < s->n_upstream; u++) {
                int us = jobs[s->upstream[u]].state;
                if (us == FAILED || us == SKIPPED) dead = 1;
                if (us == PENDING || us == RUNNING) blocked = 1;
            }
            if (dead) {
                j->state = SKIPPED;
                event(&o, s->name, "skipped", "an upstream stage failed");
                progress = 1;
                continue;
            }
            if (blocked || running >= (size_t)o.jobs) continue;
            /* ready: what is its key now? */
            inputs_free(&j->in, s);
            rc = compute_inputs(p, sc, s, &j->in);
            if (rc < 0) break;
            if (j->in.missing) {
                j->state = FAILED;
                snprintf(failed_msg, sizeof failed_msg, "stage '%s': dep %s is missing", s->name,
                         s->deps[j->in.missing - 1]);
                event(&o, s->name, "failed", "dep %s is missing", s->deps[j->in.missing - 1]);
                failure = SP_EBADINPUT;
                progress = 1;
                continue;
            }
            if (!o.force) {
                json_t *old = read_state(p, s->name);
                const char *k = old ? json_string_value(json_object_get(old, "key")) : NULL;
                int outputs_ok = 0;
                if (k && strcmp(k, j->in.key) == 0) {
                    stage_rt tmp = {0};
                    rc = diff_state(p, sc, s, &j->in, old, &tmp, &outputs_ok);
                    clear_reasons(&tmp);
                }
                json_decref(old);
                if (rc < 0) break;
                if (k && outputs_ok) {
                    j->state = DONE;
                    event(&o, s->name, "up to date", "key %.12s", j->in.key);
                    progress = 1;
                    continue;
                }
                sp__manifest m = {0};
                int found = sp__store_lookup(st, j->in.key, &m) == SP_OK;
                if (!found && rem) { /* not here: does the remote have it? */
                    sp__remote_stats rs = {0};
                    rc = sp__remote_fetch(rem, st, p->pl.root, j->in.key, o.dry_run, &found, &rs);
                    if (rc < 0) break;
                    if (found && !o.dry_run) {
                        event(&o, s->name, "pulled", "%" PRIu64 " blobs, %" PRIu64 " bytes from %s",
                              rs.blobs, rs.bytes, sp__remote_url(rem));
                        found = sp__store_lookup(st, j->in.key, &m) == SP_OK;
                    }
                }
                if (found) {
                    if (o.dry_run) {
                        event(&o, s->name, "would restore", "key %.12s", j->in.key);
                    } else {
                        const char *method = "";
                        double t0 = sp__now();
                        rc = sp__store_restore(st, s->outs, s->n_outs, &m, &method);
                        if (rc == SP_OK) rc = write_state(p, s, &j->in, &m);
                        if (rc == SP_OK)
                            event(&o, s->name, "restored", "from cache (%s), %.3f s", method,
                                  sp__now() - t0);
                    }
                    sp__manifest_free(&m);
                    if (rc < 0) break;
                    j->state = DONE;
                    progress = 1;
                    continue;
                }
            }
            if (o.dry_run) {
                event(&o, s->name, "would run", "key %.12s", j->in.key);
                j->state = DONE;
                progress = 1;
                continue;
            }
            event(&o, s->name, "running", "%s", s->cmd[0]);
            rc = start_stage(p, s, j);
            if (rc < 0) break;
            running++;
            progress = 1;
        }
        if (rc < 0) break;
        if (!running) {
            if (!pending || !progress) break;
            continue;
        }
        /* wait for a child */
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            rc = sp__fail_errno(SP_EIO, errno, "waitpid");
            break;
        }
        for (size_t i = 0; i < n; i++) {
            job *j = &jobs[i];
            if (j->state != RUNNING || j->pid != pid) continue;
            const sp__stage *s = &p->pl.stages[i];
            running--;
            double dt = sp__now() - j->t0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                sp__manifest m = {0};
                sp_status r2 = sp__store_save_outputs(st, s->outs, s->n_outs, &m);
                if (r2 == SP_OK) r2 = sp__store_record(st, j->in.key, &m);
                if (r2 == SP_OK) r2 = write_state(p, s, &j->in, &m);
                if (r2 == SP_OK) {
                    restore_backup(p, s, j, 1);
                    j->state = DONE;
                    event(&o, s->name, "done", "%.3f s", dt);
                    sp__remote_stats rs = {0};
                    if (rem && sp__remote_push(rem, p->pl.root, j->in.key, &m, &rs) == SP_OK) {
                        event(&o, s->name, "pushed", "%" PRIu64 " blobs, %" PRIu64 " bytes to %s",
                              rs.blobs, rs.bytes, sp__remote_url(rem));
                    } else if (rem) { /* the result is kept here; the run reports the error */
                        snprintf(failed_msg, sizeof failed_msg, "stage '%s': push: %s", s->name,
                                 sp_errmsg());
                        event(&o, s->name, "push failed", "%s", sp_errmsg());
                        failure = SP_EIO;
                    }
                    sp__manifest_free(&m);
                } else {
                    sp__manifest_free(&m);
                    restore_backup(p, s, j, 0);
                    j->state = FAILED;
                    snprintf(failed_msg, sizeof failed_msg, "stage '%s': %s", s->name, sp_errmsg());
                    event(&o, s->name, "failed", "%s", sp_errmsg());
                    failure = r2 == SP_ENOMEM ? SP_ENOMEM : SP_EBADINPUT;
                }
            } else {
                restore_backup(p, s, j, 0);
                j->state = FAILED;
                int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                snprintf(failed_msg, sizeof failed_msg,
                         "stage '%s' failed with exit status %d; its previous outputs are kept",
                         s->name, code);
                event(&o, s->name, "failed", "exit status %d after %.3f s", code, dt);
                failure = SP_EBADINPUT;
            }
        }
    }
    /* on an internal error, wait for what still runs */
    for (size_t i = 0; i < n; i++)
        if (jobs[i].state == RUNNING) {
            int status;
            waitpid(jobs[i].pid, &status, 0);
            restore_backup(p, &p->pl.stages[i], &jobs[i], 0);
        }
    for (size_t i = 0; i < n; i++) {
        inputs_free(&jobs[i].in, &p->pl.stages[i]);
        sp__free(jobs[i].backup);
    }
    sp__store_close(st);
    sp__remote_close(rem);
    if (sc) {
        if (rc == SP_OK)
            rc = sp__statcache_close(sc);
        else
            sp__statcache_free(sc);
    }
    if (lock_fd >= 0) close(lock_fd);
    sp__free(want);
    sp__free(jobs);
    if (rc < 0) return rc;
    if (failure < 0) return sp__fail(failure, "%s", failed_msg);
    return SP_OK;
}

sp_status sp_project_gc(sp_project *p, uint32_t keep_last, int dry_run, sp_gc_report *out) {
    memset(out, 0, sizeof *out);
    sp_run_opts o;
    sp_run_opts_init(&o);
    int fd = -1;
    if (!dry_run) SP_TRY(lock_project(p, &o, &fd));
    sp__store *st = NULL;
    sp_status rc = sp__store_open(p->pl.root, &st);
    if (rc == SP_OK)
        rc = sp__store_gc(st, keep_last, dry_run, &out->blobs_removed, &out->bytes_removed,
                          &out->records_dropped);
    sp__store_close(st);
    if (fd >= 0) close(fd);
    return rc;
}

sp_status sp_path_digest(const char *path, char *out) {
    if (!path || !out) return sp__fail(SP_EINVAL, "sp_path_digest: NULL argument");
    return sp__digest_path(NULL, path, out, NULL);
}

const char *sp__project_root(const sp_project *p) {
    return p->pl.root;
}

sp_status sp__project_stage_key(sp_project *p, size_t i, char key[65]) {
    const sp__stage *s = &p->pl.stages[i];
    sp__statcache *sc = NULL;
    SP_TRY(sp__statcache_open(p->pl.root, &sc));
    inputs in;
    sp_status rc = compute_inputs(p, sc, s, &in);
    if (rc == SP_OK && in.missing)
        rc = sp__fail(SP_ENOTFOUND, "stage '%s': dep %s is missing", s->name,
                      s->deps[in.missing - 1]);
    if (rc == SP_OK) memcpy(key, in.key, 65);
    inputs_free(&in, s);
    if (rc == SP_OK)
        rc = sp__statcache_close(sc);
    else
        sp__statcache_free(sc);
    return rc;
}
