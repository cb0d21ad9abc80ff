/* cache_remote.c — remote caches: `softpipe push`, `pull` and `run --remote` against the Bazel
 * HTTP cache protocol (docs/cache.md, "Remotes"), through libcurl.
 *
 *   GET/PUT/HEAD <base>/ac/<stage key, 64 hex>   a run-cache record: the JSON the local store
 *                                                keeps ({"results": [{"time", "outputs"}]}),
 *                                                with one result, the newest
 *   GET/PUT/HEAD <base>/cas/<sha256, 64 hex>      a blob: the bytes of one output file
 *
 * Transfers run in batches on one curl multi handle, up to MAX_PARALLEL at a time, sharing its
 * connections. A transfer that fails to connect, times out, breaks off or gets HTTP 5xx, 408 or
 * 429 is retried after 0.2, 0.4, 0.8 s (SOFTPIPE_REMOTE_BACKOFF sets the first wait, in
 * seconds); 404 means "not there"; any other status is an error naming the URL and the status.
 *
 * Trust: the remote is not trusted. A downloaded blob is written to .softpipe/cache/tmp/, hashed
 * as it arrives, and renamed into the store only when its sha256 is the one in its name; a
 * record's outputs are validated (relative paths, sha256 digests, sizes, modes) before anything
 * of it is fetched, and restore checks that every path lies inside the stage's declared outs.
 * Blobs are committed as the store commits its own: complete, fsynced, 0444, then renamed, so a
 * blob name never holds partial content. The record is written after all its blobs.
 *
 * Threads: none; libcurl runs every transfer on the caller's thread. */
#define _GNU_SOURCE
#include "cache_internal.h"
#include "softpipe/cache.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PARALLEL  8
#define MAX_TRIES     4           /* the first attempt and 3 retries */
#define MAX_RECORD    (64u << 20) /* a record larger than this is refused */
#define DEFAULT_DELAY 0.2         /* seconds before the first retry, doubling */
#define IO_BUF        (256u << 10)

struct sp__remote {
    char *base; /* the URL without trailing slashes */
    CURLM *multi;
    struct curl_slist *headers;
    double first_delay;
    uint64_t tmp_counter;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

sp_status sp__remote_open(const char *url, sp__remote **out) {
    *out = NULL;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return sp__fail(SP_EINVAL, "remote '%s': expected an http:// or https:// URL",
                        url ? url : "(null)");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return sp__fail(SP_EIO, "remote %s: libcurl: %s", url, curl_easy_strerror(curl_init_rc));
    sp__remote *r = sp__calloc(1, sizeof *r);
    if (!r) return sp__fail(SP_ENOMEM, "out of memory");
    r->base = sp__strdup(url);
    if (r->base) {
        size_t n = strlen(r->base);
        while (n > 0 && r->base[n - 1] == '/')
            r->base[--n] = '\0';
    }
    r->multi = curl_multi_init();
    r->headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip per PUT */
    if (!r->base || !r->multi || !r->headers) {
        sp__remote_close(r);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)MAX_PARALLEL);
    r->first_delay = DEFAULT_DELAY;
    const char *d = getenv("SOFTPIPE_REMOTE_BACKOFF");
    if (d && *d) {
        char *end;
        double v = strtod(d, &end);
        if (*end == '\0' && v >= 0 && v <= 60) r->first_delay = v;
    }
    *out = r;
    return SP_OK;
}

void sp__remote_close(sp__remote *r) {
    if (!r) return;
    if (r->multi) curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    sp__free(r->base);
    sp__free(r);
}

const char *sp__remote_url(const sp__remote *r) {
    return r->base;
}

/* ---- a batch of transfers */

enum { X_HEAD, X_GET_MEM, X_GET_FILE, X_PUT_FILE, X_PUT_MEM };
enum { XR_PENDING, XR_OK, XR_NOT_FOUND, XR_ERROR };

typedef struct xfer {
    int kind;
    char url[1024];
    /* X_GET_FILE: the temporary file; X_PUT_FILE: the local blob */
    char path[4096];
    int fd;
    uint64_t off, size;
    sp__sha256 h;
    int h_open;
    char got_hex[65]; /* X_GET_FILE: the sha256 of the bytes received */
    /* X_PUT_MEM: the body; X_GET_MEM: what arrived */
    const char *body;
    size_t body_len;
    sp__buf got;
    /* state */
    int result, tries, active;
    CURL *easy; /* while active */
    double not_before;
    long http;
    sp_status local_rc; /* an error of ours inside a callback */
    char err[1024 + CURL_ERROR_SIZE + 128];
    char curl_err[CURL_ERROR_SIZE];
} xfer;

static size_t on_write(char *p, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    if (x->kind == X_GET_MEM) {
        if (x->got.len + n > MAX_RECORD) {
            x->local_rc = sp__fail(SP_ECORRUPT, "%s: larger than %u bytes", x->url, MAX_RECORD);
            return 0;
        }
        if ((x->local_rc = sp__buf_append(&x->got, p, n)) < 0) return 0;
        return n;
    }
    if ((x->local_rc = sp__write_all(x->fd, p, n, x->path)) < 0) return 0;
    sp__sha256_update(&x->h, p, n);
    x->off += n;
    return n;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t want = size * nmemb;
    if (x->kind == X_PUT_MEM) {
        size_t n = x->body_len - x->off < want ? x->body_len - x->off : want;
        memcpy(p, x->body + x->off, n);
        x->off += n;
        return n;
    }
    for (;;) {
        ssize_t r = pread(x->fd, p, want, (off_t)x->off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            x->local_rc = sp__fail_errno(SP_EIO, errno, "%s: read failed", x->path);
            return CURL_READFUNC_ABORT;
        }
        x->off += (uint64_t)r;
        return (size_t)r;
    }
}

static void attempt_end_files(xfer *x) {
    if (x->h_open) {
        sp__sha256_free(&x->h);
        x->h_open = 0;
    }
    if (x->fd >= 0) close(x->fd);
    x->fd = -1;
}

/* Prepares one attempt of x on a new easy handle. */
static sp_status attempt_start(sp__remote *r, xfer *x, CURL **out) {
    *out = NULL;
    x->off = 0;
    x->local_rc = SP_OK;
    x->curl_err[0] = '\0';
    x->got.len = 0;
    if (x->kind == X_GET_FILE) {
        x->fd = open(x->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (x->fd < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot create", x->path);
        SP_TRY(sp__sha256_init(&x->h));
        x->h_open = 1;
    } else if (x->kind == X_PUT_FILE) {
        x->fd = open(x->path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (x->fd < 0 || fstat(x->fd, &sb) != 0)
            return sp__fail_errno(SP_EIO, errno, "%s: cannot open", x->path);
        x->size = (uint64_t)sb.st_size;
    }
    CURL *e = curl_easy_init();
    if (!e) return sp__fail(SP_ENOMEM, "out of memory for a transfer");
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L); /* stalled for a minute: give up */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "softpipe");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    switch (x->kind) {
    case X_HEAD:
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case X_GET_MEM:
    case X_GET_FILE:
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);
        break;
    default:
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, (void *)x);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)(x->kind == X_PUT_MEM ? x->body_len : x->size));
        break;
    }
    *out = e;
    return SP_OK;
}

/* Sorts out a finished attempt: done (ok, not found, error) or to be retried. */
static void attempt_end(sp__remote *r, xfer *x, CURL *e, CURLcode cc) {
    long http = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
    x->http = http;
    if (x->kind == X_GET_FILE && x->h_open && cc == CURLE_OK) {
        sp__sha256_final(&x->h, x->got_hex);
        x->h_open = 0;
        if (fsync(x->fd) != 0)
            x->local_rc = sp__fail_errno(SP_EIO, errno, "%s: fsync failed", x->path);
    }
    attempt_end_files(x);
    x->tries++;
    int retry = 0;
    if (x->local_rc < 0) {
        x->result = XR_ERROR;
        snprintf(x->err, sizeof x->err, "%s", sp_errmsg());
        return;
    }
    if (cc == CURLE_OK && http >= 200 && http < 300) {
        x->result = XR_OK;
        return;
    }
    if (http == 404 && x->kind != X_PUT_FILE && x->kind != X_PUT_MEM) {
        x->result = XR_NOT_FOUND;
        return;
    }
    if (cc == CURLE_HTTP_RETURNED_ERROR || (cc == CURLE_OK && http)) {
        retry = http >= 500 || http == 408 || http == 429;
        snprintf(x->err, sizeof x->err, "%s: HTTP %ld", x->url, http);
    } else {
        retry = 1; /* connection refused, reset, timed out, cut short */
        snprintf(x->err, sizeof x->err, "%s: %s", x->url,
                 x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc));
    }
    if (retry && x->tries < MAX_TRIES) {
        double delay = r->first_delay;
        for (int i = 1; i < x->tries; i++)
            delay *= 2;
        x->not_before = sp__now() + delay;
        return;
    }
    x->result = XR_ERROR;
    if (retry) {
        size_t l = strlen(x->err);
        snprintf(x->err + l, sizeof x->err - l, " (after %d tries)", x->tries);
    }
}

/* Runs every transfer of x to its end (ok, not found or error, in x[i].result). Returns an
 * error only when the batch itself cannot go on (out of memory, curl refuses). */
static sp_status run_batch(sp__remote *r, xfer *x, size_t n) {
    size_t done = 0, next = 0, waiting = 0; /* waiting: retries not yet started again */
    int active = 0;
    sp_status rc = SP_OK;
    for (size_t i = 0; i < n; i++) {
        x[i].fd = -1;
        x[i].result = XR_PENDING;
    }
    while (done < n && rc == SP_OK) {
        double now = sp__now();
        /* retries whose wait is over first, then fresh transfers */
        for (size_t i = 0; waiting && i < next && active < MAX_PARALLEL && rc == SP_OK; i++) {
            if (x[i].result != XR_PENDING || x[i].active || x[i].not_before > now) continue;
            CURL *e;
            rc = attempt_start(r, &x[i], &e);
            if (rc == SP_OK && curl_multi_add_handle(r->multi, e) != CURLM_OK)
                rc = sp__fail(SP_EIO, "%s: libcurl refused the transfer", x[i].url);
            if (rc == SP_OK) {
                x[i].active = 1;
                x[i].easy = e;
                active++;
                waiting--;
            } else {
                if (e) curl_easy_cleanup(e);
                attempt_end_files(&x[i]);
            }
        }
        while (next < n && active < MAX_PARALLEL && rc == SP_OK) {
            CURL *e;
            rc = attempt_start(r, &x[next], &e);
            if (rc == SP_OK && curl_multi_add_handle(r->multi, e) != CURLM_OK)
                rc = sp__fail(SP_EIO, "%s: libcurl refused the transfer", x[next].url);
            if (rc != SP_OK) {
                if (e) curl_easy_cleanup(e);
                attempt_end_files(&x[next]);
                break;
            }
            x[next].easy = e;
            x[next++].active = 1;
            active++;
        }
        if (rc != SP_OK) break;
        int still;
        if (curl_multi_perform(r->multi, &still) != CURLM_OK) {
            rc = sp__fail(SP_EIO, "remote %s: libcurl multi failed", r->base);
            break;
        }
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(r->multi, &q)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            CURLcode cc = msg->data.result;
            char *priv = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            xfer *t = (xfer *)priv;
            curl_multi_remove_handle(r->multi, e);
            attempt_end(r, t, e, cc);
            curl_easy_cleanup(e);
            t->active = 0;
            t->easy = NULL;
            active--;
            if (t->result != XR_PENDING)
                done++;
            else
                waiting++;
        }
        if (done < n) {
            int wait_ms = active ? 1000 : 20; /* nothing active: only retries are waiting */
            curl_multi_poll(r->multi, NULL, 0, wait_ms, NULL);
        }
    }
    if (rc != SP_OK) { /* take back whatever still runs */
        for (size_t i = 0; i < n; i++) {
            if (!x[i].active) continue;
            curl_multi_remove_handle(r->multi, x[i].easy);
            curl_easy_cleanup(x[i].easy);
            x[i].easy = NULL;
            x[i].active = 0;
            attempt_end_files(&x[i]);
        }
    }
    return rc;
}

static void batch_free(xfer *x, size_t n) {
    for (size_t i = 0; x && i < n; i++) {
        attempt_end_files(&x[i]);
        sp__buf_free(&x[i].got);
    }
    sp__free(x);
}

/* ---- records */

static int hex64(const char *s) {
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[64] == '\0';
}

/* A project-relative path as the loader makes them (no "", ".", ".." or absolute parts). */
static int rel_path_ok(const char *p) {
    if (!*p || *p == '/') return 0;
    for (const char *c = p; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
        c += n;
        if (*c == '/') c++;
        if (e && !*c) return 0;
    }
    return 1;
}

/* The newest result of a record's text, validated, into m. */
static sp_status parse_record(const char *url, const uint8_t *text, size_t len, sp__manifest *m) {
    m->e = NULL;
    m->n = 0;
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)text, len, 0, &jerr);
    if (!doc) return sp__fail(SP_ECORRUPT, "%s:%d:%d: %s", url, jerr.line, jerr.column, jerr.text);
    json_t *results = json_object_get(doc, "results");
    size_t nr = json_array_size(results);
    json_t *outs = nr ? json_object_get(json_array_get(results, nr - 1), "outputs") : NULL;
    sp_status rc = SP_OK;
    if (!json_is_array(outs))
        rc = sp__fail(SP_ECORRUPT, "%s: expected {\"results\": [{\"outputs\": [...]}, ...]}", url);
    size_t n = json_array_size(outs);
    if (rc == SP_OK && n) {
        m->e = sp__calloc(n, sizeof *m->e);
        if (!m->e) rc = sp__fail(SP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && rc == SP_OK; i++) {
        json_t *o = json_array_get(outs, i);
        const char *path = json_string_value(json_object_get(o, "path"));
        const char *dig = json_string_value(json_object_get(o, "digest"));
        json_t *size = json_object_get(o, "size"), *mode = json_object_get(o, "mode");
        if (!path || !rel_path_ok(path) || !dig || strncmp(dig, "sha256:", 7) != 0 ||
            !hex64(dig + 7) || !json_is_integer(size) || json_integer_value(size) < 0 ||
            !json_is_integer(mode) ||
            (json_integer_value(mode) != 0644 && json_integer_value(mode) != 0755)) {
            rc = sp__fail(SP_ECORRUPT,
                          "%s: output %zu: expected {\"path\": a relative path, \"digest\": "
                          "\"sha256:<64 hex>\", \"size\": >= 0, \"mode\": 420 or 493}",
                          url, i);
            break;
        }
        sp__manifest_entry *e = &m->e[m->n];
        if (!(e->path = sp__strdup(path))) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            break;
        }
        snprintf(e->digest, sizeof e->digest, "%s", dig);
        e->size = (uint64_t)json_integer_value(size);
        e->mode = (uint32_t)json_integer_value(mode);
        m->n++;
    }
    json_decref(doc);
    if (rc != SP_OK) sp__manifest_free(m);
    return rc;
}

static char *record_text(const sp__manifest *m) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < m->n; i++) {
        json_t *o =
            json_pack("{s:s, s:s, s:I, s:i}", "path", m->e[i].path, "digest", m->e[i].digest,
                      "size", (json_int_t)m->e[i].size, "mode", (int)m->e[i].mode);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    json_t *doc = arr ? json_pack("{s:[{s:I, s:o}]}", "results", "time", (json_int_t)time(NULL),
                                  "outputs", arr)
                      : NULL;
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

static void blob_local_path(const char *root, const char *hex, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/.softpipe/cache/%.2s/%s", root, hex, hex + 2);
}

/* The distinct blobs of m (pointers to the hex inside m's digests). */
static sp_status distinct_blobs(const sp__manifest *m, const char ***out, size_t *n_out) {
    const char **v = sp__calloc(m->n + 1, sizeof *v);
    if (!v) return sp__fail(SP_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const char *hex = m->e[i].digest + 7;
        int dup = 0;
        for (size_t k = 0; k < n && !dup; k++) /* manifests are small next to the transfers */
            dup = strcmp(v[k], hex) == 0;
        if (!dup) v[n++] = hex;
    }
    *out = v;
    *n_out = n;
    return SP_OK;
}

/* ---- fetch */

sp_status sp__remote_fetch(sp__remote *r, sp__store *st, const char *root, const char *key,
                           int dry_run, int *found, sp__remote_stats *stats) {
    *found = 0;
    if (strlen(key) != 64 || !hex64(key))
        return sp__fail(SP_EINVAL, "key: expected 64 lowercase hex digits, got '%s'", key);
    xfer *rec = sp__calloc(1, sizeof *rec);
    if (!rec) return sp__fail(SP_ENOMEM, "out of memory");
    rec->kind = dry_run ? X_HEAD : X_GET_MEM;
    snprintf(rec->url, sizeof rec->url, "%s/ac/%s", r->base, key);
    sp_status rc = run_batch(r, rec, 1);
    if (rc == SP_OK && rec->result == XR_ERROR) rc = sp__fail(SP_EIO, "%s", rec->err);
    if (rc != SP_OK || rec->result == XR_NOT_FOUND || dry_run) {
        if (rc == SP_OK && rec->result == XR_OK) *found = 1;
        batch_free(rec, 1);
        return rc;
    }
    sp__manifest m = {0};
    rc = parse_record(rec->url, rec->got.data, rec->got.len, &m);
    batch_free(rec, 1);
    SP_TRY(rc);

    /* the blobs the local store lacks */
    const char **blobs = NULL;
    size_t nb = 0;
    rc = distinct_blobs(&m, &blobs, &nb);
    xfer *x = rc == SP_OK ? sp__calloc(nb + 1, sizeof *x) : NULL;
    if (rc == SP_OK && !x) rc = sp__fail(SP_ENOMEM, "out of memory");
    size_t nx = 0;
    char path[4096];
    for (size_t i = 0; i < nb && rc == SP_OK; i++) {
        struct stat sb;
        blob_local_path(root, blobs[i], path, sizeof path);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (stats) stats->blobs_present++;
            continue;
        }
        x[nx].kind = X_GET_FILE;
        snprintf(x[nx].url, sizeof x[nx].url, "%s/cas/%s", r->base, blobs[i]);
        snprintf(x[nx].path, sizeof x[nx].path, "%s/.softpipe/cache/tmp/%d-r%llu", root,
                 (int)getpid(), (unsigned long long)r->tmp_counter++);
        nx++;
    }
    if (rc == SP_OK && nx) rc = run_batch(r, x, nx);
    /* every blob is checked before any is committed: one bad blob rejects the result */
    for (size_t i = 0; i < nx && rc == SP_OK; i++) {
        const char *want = x[i].url + strlen(x[i].url) - 64;
        if (x[i].result == XR_NOT_FOUND)
            rc = sp__fail(SP_ENOTFOUND,
                          "%s: HTTP 404: the remote has the record of key %s but "
                          "not this blob",
                          x[i].url, key);
        else if (x[i].result == XR_ERROR)
            rc = sp__fail(SP_EIO, "%s", x[i].err);
        else if (strcmp(x[i].got_hex, want) != 0)
            rc = sp__fail(SP_ECORRUPT,
                          "%s: downloaded blob does not match its digest: expected sha256:%s, "
                          "got sha256:%s; rejected",
                          x[i].url, want, x[i].got_hex);
    }
    uint8_t touched[256] = {0};
    for (size_t i = 0; i < nx && rc == SP_OK; i++) {
        const char *hex = x[i].url + strlen(x[i].url) - 64;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/.softpipe/cache/%.2s", root, hex);
        blob_local_path(root, hex, path, sizeof path);
        if (chmod(x[i].path, 0444) != 0)
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot chmod", x[i].path);
        else if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", dir);
        else if (rename(x[i].path, path) != 0)
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot rename", x[i].path);
        if (rc == SP_OK) {
            int v = (hex[0] <= '9' ? hex[0] - '0' : hex[0] - 'a' + 10) * 16 +
                    (hex[1] <= '9' ? hex[1] - '0' : hex[1] - 'a' + 10);
            touched[v] = 1;
            x[i].path[0] = '\0';
            if (stats) {
                stats->blobs++;
                stats->bytes += x[i].off;
            }
        }
    }
    for (int b = 0; b < 256 && rc == SP_OK; b++) {
        if (!touched[b]) continue;
        snprintf(path, sizeof path, "%s/.softpipe/cache/%02x", root, b);
        rc = sp__fsync_dir(path);
    }
    for (size_t i = 0; i < nx; i++) /* temporaries not committed */
        if (x[i].path[0]) unlink(x[i].path);
    batch_free(x, nx);
    sp__free(blobs);
    if (rc == SP_OK) rc = sp__store_record(st, key, &m);
    sp__manifest_free(&m);
    if (rc == SP_OK) {
        *found = 1;
        if (stats) stats->results++;
    }
    return rc;
}

/* ---- push */

sp_status sp__remote_push(sp__remote *r, const char *root, const char *key, const sp__manifest *m,
                          sp__remote_stats *stats) {
    const char **blobs = NULL;
    size_t nb = 0;
    SP_TRY(distinct_blobs(m, &blobs, &nb));
    xfer *x = sp__calloc(nb + 1, sizeof *x);
    sp_status rc = x ? SP_OK : sp__fail(SP_ENOMEM, "out of memory");
    for (size_t i = 0; i < nb && rc == SP_OK; i++) {
        x[i].kind = X_HEAD;
        snprintf(x[i].url, sizeof x[i].url, "%s/cas/%s", r->base, blobs[i]);
    }
    if (rc == SP_OK && nb) rc = run_batch(r, x, nb);
    /* HEAD answered: upload the missing ones, reusing the slots */
    size_t nput = 0;
    for (size_t i = 0; i < nb && rc == SP_OK; i++) {
        if (x[i].result == XR_ERROR) {
            rc = sp__fail(SP_EIO, "%s", x[i].err);
            break;
        }
        if (x[i].result == XR_OK) {
            if (stats) stats->blobs_present++;
            continue;
        }
        xfer *p = &x[nput++];
        char url[1024];
        snprintf(url, sizeof url, "%s", x[i].url);
        sp__buf_free(&x[i].got);
        memset(p, 0, sizeof *p);
        p->kind = X_PUT_FILE;
        snprintf(p->url, sizeof p->url, "%s", url);
        blob_local_path(root, blobs[i], p->path, sizeof p->path);
    }
    if (rc == SP_OK && nput) rc = run_batch(r, x, nput);
    for (size_t i = 0; i < nput && rc == SP_OK; i++) {
        if (x[i].result != XR_OK) {
            rc = sp__fail(SP_EIO, "%s", x[i].err);
            break;
        }
        if (stats) {
            stats->blobs++;
            stats->bytes += x[i].size;
        }
    }
    batch_free(x, nb);
    sp__free(blobs);
    SP_TRY(rc);
    /* the record goes last, so a remote record never names a blob it lacks */
    char *text = record_text(m);
    if (!text) return sp__fail(SP_ENOMEM, "out of memory");
    xfer *rec = sp__calloc(1, sizeof *rec);
    if (!rec) {
        free(text);
        return sp__fail(SP_ENOMEM, "out of memory");
    }
    rec->kind = X_PUT_MEM;
    rec->body = text;
    rec->body_len = strlen(text);
    snprintf(rec->url, sizeof rec->url, "%s/ac/%s", r->base, key);
    rc = run_batch(r, rec, 1);
    if (rc == SP_OK && rec->result != XR_OK) rc = sp__fail(SP_EIO, "%s", rec->err);
    if (rc == SP_OK && stats) stats->results++;
    batch_free(rec, 1);
    free(text);
    return rc;
}

/* ---- the public calls */

/* Takes .softpipe/lock like a run does, so a push or pull does not race a run's records. */
static sp_status lock_root(const char *root, int *fd_out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/.softpipe", root);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", path);
    snprintf(path, sizeof path, "%s/.softpipe/lock", root);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return sp__fail_errno(SP_EIO, errno, "%s", path);
    if (flock(fd, LOCK_EX) < 0) {
        int err = errno;
        close(fd);
        return sp__fail_errno(SP_EIO, err, "%s: lock", path);
    }
    *fd_out = fd;
    return SP_OK;
}

static void report_add(sp_remote_report *out, const sp__remote_stats *s) {
    out->results += s->results;
    out->blobs += s->blobs;
    out->bytes += s->bytes;
    out->blobs_present += s->blobs_present;
}

sp_status sp_project_push(sp_project *p, const char *url, sp_remote_report *out) {
    if (!p || !out) return sp__fail(SP_EINVAL, "sp_project_push: NULL argument");
    memset(out, 0, sizeof *out);
    const char *root = sp__project_root(p);
    sp__remote *r = NULL;
    SP_TRY(sp__remote_open(url, &r));
    int fd = -1;
    sp__store *st = NULL;
    sp_status rc = lock_root(root, &fd);
    if (rc == SP_OK) rc = sp__store_open(root, &st);
    char runs[4096];
    snprintf(runs, sizeof runs, "%s/.softpipe/runs", root);
    DIR *top = rc == SP_OK ? opendir(runs) : NULL;
    if (rc == SP_OK && !top && errno != ENOENT)
        rc = sp__fail_errno(SP_EIO, errno, "%s: cannot read", runs);
    struct dirent *de;
    while (top && rc == SP_OK && (de = readdir(top)) != NULL) {
        if (strlen(de->d_name) != 2 || de->d_name[0] == '.') continue;
        char pre[3] = {de->d_name[0], de->d_name[1], '\0'}, dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", runs, pre);
        DIR *d = opendir(dir);
        struct dirent *fe;
        while (d && rc == SP_OK && (fe = readdir(d)) != NULL) {
            const char *n = fe->d_name;
            if (strlen(n) != 67 || strcmp(n + 62, ".json") != 0) continue;
            char key[65];
            memcpy(key, pre, 2);
            memcpy(key + 2, n, 62);
            key[64] = '\0';
            if (!hex64(key)) continue;
            sp__manifest m = {0};
            if (sp__store_lookup(st, key, &m) != SP_OK) { /* no complete result: nothing to send */
                sp__errmsg_clear();
                continue;
            }
            sp__remote_stats s = {0};
            rc = sp__remote_push(r, root, key, &m, &s);
            report_add(out, &s);
            sp__manifest_free(&m);
        }
        if (d) closedir(d);
    }
    if (top) closedir(top);
    sp__store_close(st);
    if (fd >= 0) close(fd);
    sp__remote_close(r);
    return rc;
}

sp_status sp_project_pull(sp_project *p, const char *url, const char *const *stages,
                          size_t n_stages, sp_remote_report *out) {
    if (!p || !out) return sp__fail(SP_EINVAL, "sp_project_pull: NULL argument");
    memset(out, 0, sizeof *out);
    const size_t n = sp_project_n_stages(p);
    for (size_t k = 0; stages && k < n_stages; k++) {
        size_t i = 0;
        while (i < n && strcmp(sp_project_stage_name(p, i), stages[k]) != 0)
            i++;
        if (i == n) return sp__fail(SP_ENOTFOUND, "no stage '%s' in the pipeline", stages[k]);
    }
    const char *root = sp__project_root(p);
    sp__remote *r = NULL;
    SP_TRY(sp__remote_open(url, &r));
    int fd = -1;
    sp__store *st = NULL;
    sp_status rc = lock_root(root, &fd);
    if (rc == SP_OK) rc = sp__store_open(root, &st);
    for (size_t i = 0; i < n && rc == SP_OK; i++) {
        int want = !stages || n_stages == 0;
        for (size_t k = 0; !want && k < n_stages; k++)
            want = strcmp(sp_project_stage_name(p, i), stages[k]) == 0;
        if (!want) continue;
        char key[65];
        rc = sp__project_stage_key(p, i, key);
        if (rc == SP_ENOTFOUND) { /* a dep is not there yet */
            sp__errmsg_clear();
            rc = SP_OK;
            out->skipped++;
            continue;
        }
        if (rc != SP_OK) break;
        sp__manifest m = {0};
        if (sp__store_lookup(st, key, &m) == SP_OK) { /* already here */
            sp__manifest_free(&m);
            continue;
        }
        sp__errmsg_clear();
        sp__remote_stats s = {0};
        int found = 0;
        rc = sp__remote_fetch(r, st, root, key, 0, &found, &s);
        report_add(out, &s);
        if (rc == SP_OK && !found) out->skipped++;
    }
    sp__store_close(st);
    if (fd >= 0) close(fd);
    sp__remote_close(r);
    return rc;
}
