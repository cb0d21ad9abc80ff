/* cache_store.c — the content-addressed store (.softpipe/cache/) and the run cache
 * (.softpipe/runs/) of a project; docs/cache.md describes both on disk.
 *
 *   .softpipe/cache/<2 hex>/<62 hex>       a blob: the bytes of one output file, named by their
 *                                          sha256, read-only (0444), never modified
 *   .softpipe/cache/tmp/<pid>-<n>          blobs being written; never read, removed by gc when
 *                                          their process is gone
 *   .softpipe/runs/<2 hex>/<62 hex>.json   a stage key's results, oldest first:
 *       {"results": [{"time": <unix s>, "outputs": [{"path", "digest", "size", "mode"}, ...]}]}
 *
 * Invariants (crash safety): a blob or record is only ever made visible by rename() of a
 * complete, fsynced temporary file, so a name in the store always holds its whole content.
 * Blobs are written before the record that names them; a record whose blobs are gone is
 * skipped by lookup and dropped by gc. Restore builds every replacement beside its target
 * (<target>.sp-tmp-<pid>) and renames it over the target only when all of them are complete,
 * so a user's file or folder is never gone before its replacement is complete.
 *
 * Durability is batched: the first few files of a call are fsynced one by one; past that one
 * syncfs() covers them all before they are renamed (100,000 fsyncs would dominate a big save or
 * restore). Hard links write no data, so they need only the directory fsync.
 *
 *   .softpipe/cache/verified                 records of blobs known to match their names
 *                                          (verified-blob records below; advisory)
 *
 * Threads: restore verifies blobs on up to 8 threads that share only the work list, and places
 * a folder output's files on up to 8 threads, each taking whole groups (runs of files in one
 * target folder); workers share only atomics and read-only state (fan-out fds opened before,
 * the records), and a worker's error is reported by the caller (the lowest failing group). */
#define _GNU_SOURCE
#include "cache_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COPY_BUF      (1u << 20)
#define INLINE_FSYNCS 16 /* beyond this many files in one call, one syncfs() instead */
#define KEEP_RESULTS  16 /* results kept per key by sp__store_record */

static const char hexdig[] = "0123456789abcdef";

/* ---- a set of blob names (32-byte sha256), open addressing keyed by the hash itself */

typedef struct blobset {
    uint8_t (*k)[32];
    uint8_t *used;
    size_t n, cap;
} blobset;

static void blobset_free(blobset *s) {
    sp__free(s->k);
    sp__free(s->used);
    memset(s, 0, sizeof *s);
}

static size_t blob_slot(const uint8_t key[32], size_t cap) {
    uint64_t h;
    memcpy(&h, key, 8);
    return (size_t)h & (cap - 1);
}

static int blobset_has(const blobset *s, const uint8_t key[32]) {
    if (!s->cap) return 0;
    for (size_t h = blob_slot(key, s->cap); s->used[h]; h = (h + 1) & (s->cap - 1))
        if (memcmp(s->k[h], key, 32) == 0) return 1;
    return 0;
}

/* Adds key; returns 1 if added, 0 if present, negative status on failure. */
static int blobset_add(blobset *s, const uint8_t key[32]) {
    if (2 * (s->n + 1) > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        uint8_t(*nk)[32] = sp__malloc(ncap * 32);
        uint8_t *nu = sp__calloc(ncap, 1);
        if (!nk || !nu) {
            sp__free(nk);
            sp__free(nu);
            return sp__fail(SP_ENOMEM, "out of memory for the set of blobs");
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->used[i]) continue;
            size_t h = blob_slot(s->k[i], ncap);
            while (nu[h])
                h = (h + 1) & (ncap - 1);
            memcpy(nk[h], s->k[i], 32);
            nu[h] = 1;
        }
        sp__free(s->k);
        sp__free(s->used);
        s->k = nk;
        s->used = nu;
        s->cap = ncap;
    }
    size_t h = blob_slot(key, s->cap);
    for (; s->used[h]; h = (h + 1) & (s->cap - 1))
        if (memcmp(s->k[h], key, 32) == 0) return 0;
    memcpy(s->k[h], key, 32);
    s->used[h] = 1;
    s->n++;
    return 1;
}

/* ---- verified-blob records: .softpipe/cache/verified
 *
 * "SPVERIF1", then one 72-byte record per blob (host byte order): the blob's sha256 (32 bytes),
 * st_dev, st_ino, st_size, mtime_ns, ctime_ns (8 bytes each) as they were when the blob's
 * content was known to match its name. A blob whose stat still equals its record is trusted
 * without hashing; any change to a blob (chmod, write, replacement) moves its ctime or inode, so
 * it is hashed again. A record is only made when the blob's ctime is more than VREC_RACY_NS older
 * than the moment its content was known (a change in the same timestamp tick would keep the
 * ctime). The file is advisory: a missing, short or foreign file counts as empty. */

#define VREC_MAGIC   "SPVERIF1"
#define VREC_SIZE    72
#define VREC_RACY_NS 100000000LL /* 100 ms: timestamps tick at least every 10 ms */

typedef struct vrec {
    uint8_t raw[32];
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
} vrec;

typedef struct vtable {
    vrec *r;
    size_t n, rcap;
    uint32_t *slot; /* open addressing: index + 1 into r, 0 = empty */
    size_t cap;
    int loaded, dirty;
} vtable;

static void vtable_free(vtable *v) {
    sp__free(v->r);
    sp__free(v->slot);
    memset(v, 0, sizeof *v);
}

static int64_t ts_ns(struct timespec t) {
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void vrec_fill(vrec *r, const uint8_t raw[32], const struct stat *sb) {
    memcpy(r->raw, raw, 32);
    r->dev = (uint64_t)sb->st_dev;
    r->ino = (uint64_t)sb->st_ino;
    r->size = (uint64_t)sb->st_size;
    r->mtime_ns = ts_ns(sb->st_mtim);
    r->ctime_ns = ts_ns(sb->st_ctim);
}

static const vrec *vtable_get(const vtable *v, const uint8_t raw[32]) {
    if (!v->cap) return NULL;
    for (size_t h = blob_slot(raw, v->cap); v->slot[h]; h = (h + 1) & (v->cap - 1))
        if (memcmp(v->r[v->slot[h] - 1].raw, raw, 32) == 0) return &v->r[v->slot[h] - 1];
    return NULL;
}

/* Adds or replaces the record of r->raw. */
static sp_status vtable_put(vtable *v, const vrec *r) {
    if (2 * (v->n + 1) > v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 1024;
        uint32_t *ns = sp__calloc(ncap, sizeof *ns);
        if (!ns) return sp__fail(SP_ENOMEM, "out of memory for blob records");
        for (size_t i = 0; i < v->n; i++) {
            size_t h = blob_slot(v->r[i].raw, ncap);
            while (ns[h])
                h = (h + 1) & (ncap - 1);
            ns[h] = (uint32_t)(i + 1);
        }
        sp__free(v->slot);
        v->slot = ns;
        v->cap = ncap;
    }
    size_t h = blob_slot(r->raw, v->cap);
    for (; v->slot[h]; h = (h + 1) & (v->cap - 1))
        if (memcmp(v->r[v->slot[h] - 1].raw, r->raw, 32) == 0) {
            v->r[v->slot[h] - 1] = *r;
            v->dirty = 1;
            return SP_OK;
        }
    if (v->n == v->rcap) {
        size_t nc = v->rcap ? v->rcap * 2 : 1024;
        vrec *nr = sp__realloc(v->r, nc * sizeof *nr);
        if (!nr) return sp__fail(SP_ENOMEM, "out of memory for blob records");
        v->r = nr;
        v->rcap = nc;
    }
    v->r[v->n++] = *r;
    v->slot[h] = (uint32_t)v->n;
    v->dirty = 1;
    return SP_OK;
}

/* Whether the blob's current stat `now` equals its record. */
static int vtable_trusts(const vtable *v, const vrec *now) {
    const vrec *r = vtable_get(v, now->raw);
    return r && r->dev == now->dev && r->ino == now->ino && r->size == now->size &&
           r->mtime_ns == now->mtime_ns && r->ctime_ns == now->ctime_ns;
}

/* ---- the store */

struct sp__store {
    char *root;       /* project root */
    char *cache_dir;  /* <root>/.softpipe/cache */
    char *tmp_dir;    /* <root>/.softpipe/cache/tmp */
    char *runs_dir;   /* <root>/.softpipe/runs */
    blobset verified; /* blobs whose content was hashed by this process (saved or verified) */
    vtable vt;        /* the records of .softpipe/cache/verified (loaded on first use) */
    char *vt_path;    /* <root>/.softpipe/cache/verified */
    vtable seen;      /* the blobs' stats taken by the last lookup, used once by restore */
    int64_t seen_ns;  /* when that lookup began */
    uint64_t tmp_counter;
    _Atomic int reflink_off;  /* FICLONE failed with "not supported" once: stop trying */
    _Atomic int hardlink_off; /* link() failed with EXDEV/EPERM once */
    int fan_fd[256];          /* open fan-out folders cache/<2 hex> + 1 (0: not open yet) */
};

/* An open fd of the fan-out folder of blob `raw` (kept until close), or -1 with errno set.
 * Lookups and links name the blob relative to it: no walk of the long path per blob. */
static int fan_fd(sp__store *st, const uint8_t raw[32]) {
    int *slot = &st->fan_fd[raw[0]];
    if (*slot) return *slot - 1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%c%c", st->cache_dir, hexdig[raw[0] >> 4], hexdig[raw[0] & 15]);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) *slot = fd + 1;
    return fd;
}

/* The fan-out fd of blob `raw` if it is already open, else -1 (ENOENT): never opens, so
 * restore workers can call it while the caller's fan_fd() calls are done. */
static int fan_fd_get(const sp__store *st, const uint8_t raw[32]) {
    int fd = st->fan_fd[raw[0]] - 1;
    if (fd < 0) errno = ENOENT;
    return fd;
}

/* Loads .softpipe/cache/verified once (one read); anything unreadable counts as empty. */
static sp_status vtable_load(sp__store *st) {
    vtable *v = &st->vt;
    if (v->loaded) return SP_OK;
    v->loaded = 1;
    uint8_t *data;
    size_t len;
    sp_status rc = sp__read_file(st->vt_path, &data, &len);
    if (rc != SP_OK) {
        sp__errmsg_clear();
        return rc == SP_ENOMEM ? sp__fail(SP_ENOMEM, "out of memory for blob records") : SP_OK;
    }
    if (len >= 8 && memcmp(data, VREC_MAGIC, 8) == 0 && (len - 8) % VREC_SIZE == 0) {
        for (size_t off = 8; off < len && rc == SP_OK; off += VREC_SIZE) {
            vrec r;
            memcpy(r.raw, data + off, 32);
            memcpy(&r.dev, data + off + 32, 8);
            memcpy(&r.ino, data + off + 40, 8);
            memcpy(&r.size, data + off + 48, 8);
            memcpy(&r.mtime_ns, data + off + 56, 8);
            memcpy(&r.ctime_ns, data + off + 64, 8);
            rc = vtable_put(v, &r);
        }
    }
    sp__free(data);
    v->dirty = 0;
    return rc;
}

/* Rewrites .softpipe/cache/verified atomically (temp + fsync + rename) if records were added. */
static sp_status vtable_save(sp__store *st) {
    vtable *v = &st->vt;
    if (!v->dirty) return SP_OK;
    size_t len = 8 + v->n * VREC_SIZE;
    uint8_t *data = sp__malloc(len);
    if (!data) return sp__fail(SP_ENOMEM, "out of memory writing blob records");
    memcpy(data, VREC_MAGIC, 8);
    for (size_t i = 0; i < v->n; i++) {
        uint8_t *o = data + 8 + i * VREC_SIZE;
        memcpy(o, v->r[i].raw, 32);
        memcpy(o + 32, &v->r[i].dev, 8);
        memcpy(o + 40, &v->r[i].ino, 8);
        memcpy(o + 48, &v->r[i].size, 8);
        memcpy(o + 56, &v->r[i].mtime_ns, 8);
        memcpy(o + 64, &v->r[i].ctime_ns, 8);
    }
    sp_status rc = sp__file_commit(st->vt_path, data, len);
    sp__free(data);
    if (rc == SP_OK) v->dirty = 0;
    return rc;
}

/* Records blob `raw` (its content known to match at time `known_ns`) if its stat `sb` is not
 * racy: a change in the same timestamp tick as its ctime would not move the ctime. */
static sp_status vtable_note_rec(sp__store *st, const vrec *r, int64_t known_ns) {
    if (r->ctime_ns >= known_ns - VREC_RACY_NS || r->mtime_ns >= known_ns - VREC_RACY_NS)
        return SP_OK;
    return vtable_put(&st->vt, r);
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return ts_ns(t);
}

/* The blob's name inside its fan-out folder (62 hex digits). */
static void blob_name(const uint8_t raw[32], char name[63]) {
    for (int i = 1; i < 32; i++) {
        name[2 * i - 2] = hexdig[raw[i] >> 4];
        name[2 * i - 1] = hexdig[raw[i] & 15];
    }
    name[62] = '\0';
}

static int unhex(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int parse_digest(const char *d, uint8_t raw[32]) {
    if (strncmp(d, "sha256:", 7) != 0) return -1;
    d += 7;
    for (int i = 0; i < 64; i++) {
        int v = unhex(d[i]);
        if (v < 0) return -1;
        if (i & 1)
            raw[i / 2] = (uint8_t)(raw[i / 2] | v);
        else
            raw[i / 2] = (uint8_t)(v << 4);
    }
    return d[64] == '\0' ? 0 : -1;
}

static void raw_hex(const uint8_t raw[32], char hex[65]) {
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = hexdig[raw[i] >> 4];
        hex[2 * i + 1] = hexdig[raw[i] & 15];
    }
    hex[64] = '\0';
}

/* <cache>/<ab>/<cdef...> into buf. */
static void blob_path(const sp__store *st, const uint8_t raw[32], char *buf, size_t cap) {
    char hex[65];
    raw_hex(raw, hex);
    snprintf(buf, cap, "%s/%.2s/%s", st->cache_dir, hex, hex + 2);
}

static sp_status mkdir_ok(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", path);
    return SP_OK;
}

sp_status sp__store_open(const char *project_root, sp__store **out) {
    *out = NULL;
    sp__store *st = sp__calloc(1, sizeof *st);
    if (!st) return sp__fail(SP_ENOMEM, "out of memory opening the cache");
    st->root = sp__strdup(project_root);
    st->cache_dir = sp__path_join(project_root, ".softpipe/cache");
    st->tmp_dir = sp__path_join(project_root, ".softpipe/cache/tmp");
    st->runs_dir = sp__path_join(project_root, ".softpipe/runs");
    st->vt_path = sp__path_join(project_root, ".softpipe/cache/verified");
    char *sp_dir = sp__path_join(project_root, ".softpipe");
    if (!st->root || !st->cache_dir || !st->tmp_dir || !st->runs_dir || !st->vt_path || !sp_dir) {
        sp__free(sp_dir);
        sp__store_close(st);
        return sp__fail(SP_ENOMEM, "out of memory opening the cache");
    }
    sp_status rc = mkdir_ok(sp_dir);
    if (rc == SP_OK) rc = mkdir_ok(st->cache_dir);
    if (rc == SP_OK) rc = mkdir_ok(st->tmp_dir);
    if (rc == SP_OK) rc = mkdir_ok(st->runs_dir);
    sp__free(sp_dir);
    if (rc != SP_OK) {
        sp__store_close(st);
        return rc;
    }
    if (getenv("SP_CACHE_NO_REFLINK")) st->reflink_off = 1;
    *out = st;
    return SP_OK;
}

void sp__store_close(sp__store *st) {
    if (!st) return;
    sp__free(st->root);
    sp__free(st->cache_dir);
    sp__free(st->tmp_dir);
    sp__free(st->runs_dir);
    sp__free(st->vt_path);
    blobset_free(&st->verified);
    vtable_free(&st->vt);
    vtable_free(&st->seen);
    for (int i = 0; i < 256; i++)
        if (st->fan_fd[i]) close(st->fan_fd[i] - 1);
    sp__free(st);
}

void sp__manifest_free(sp__manifest *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++)
        sp__free(m->e[i].path);
    sp__free(m->e);
    m->e = NULL;
    m->n = 0;
}

static sp_status manifest_push(sp__manifest *m, size_t *cap, const char *path) {
    if (m->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        sp__manifest_entry *ne = sp__realloc(m->e, ncap * sizeof *ne);
        if (!ne) return sp__fail(SP_ENOMEM, "out of memory for a manifest");
        m->e = ne;
        *cap = ncap;
    }
    sp__manifest_entry *e = &m->e[m->n];
    memset(e, 0, sizeof *e);
    e->path = sp__strdup(path);
    if (!e->path) return sp__fail(SP_ENOMEM, "out of memory for a manifest");
    m->n++;
    return SP_OK;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const sp__manifest_entry *)a)->path, ((const sp__manifest_entry *)b)->path);
}

/* ---- durability batching */

typedef struct pending {
    char (*tmp)[64]; /* names inside tmp_dir */
    uint8_t (*blob)[32];
    size_t n, cap;
    size_t n_inline; /* files fsynced one by one so far */
    uint8_t fanout_touched[256];
    vrec *made; /* the blobs this call committed, with their stat after the rename */
    size_t n_made, made_cap;
} pending;

static void pending_free(pending *p) {
    sp__free(p->tmp);
    sp__free(p->blob);
    sp__free(p->made);
}

/* ---- save */

/* Renames the complete, durable temporary `tmp` to the blob `raw`. */
static sp_status blob_commit(sp__store *st, const char *tmp, const uint8_t raw[32], pending *p) {
    char path[4096], dir[4096];
    blob_path(st, raw, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/%c%c", st->cache_dir, hexdig[raw[0] >> 4], hexdig[raw[0] & 15]);
    if (!p->fanout_touched[raw[0]]) SP_TRY(mkdir_ok(dir));
    if (rename(tmp, path) != 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot rename", tmp);
    p->fanout_touched[raw[0]] = 1;
    /* Its record for .softpipe/cache/verified (best effort: a blob without one is hashed). */
    struct stat sb;
    if (stat(path, &sb) != 0) return SP_OK;
    if (p->n_made == p->made_cap) {
        size_t nc = p->made_cap ? p->made_cap * 2 : 256;
        vrec *nm = sp__realloc(p->made, nc * sizeof *nm);
        if (!nm) return SP_OK;
        p->made = nm;
        p->made_cap = nc;
    }
    vrec_fill(&p->made[p->n_made++], raw, &sb);
    return SP_OK;
}

/* Copies (or reflinks) one file into a new temporary blob, hashing the bytes written. */
static sp_status ingest_file(sp__store *st, const char *src, sp__manifest_entry *e, pending *p,
                             uint8_t *buf) {
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (in < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot open", src);
    struct stat sst;
    if (fstat(in, &sst) != 0) {
        int err = errno;
        close(in);
        return sp__fail_errno(SP_EIO, err, "%s: cannot stat", src);
    }
    e->mode = (sst.st_mode & S_IXUSR) ? 0755 : 0644;
    (void)posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
    char name[64], tmp[4096];
    snprintf(name, sizeof name, "%d-%llu", (int)getpid(), (unsigned long long)st->tmp_counter++);
    snprintf(tmp, sizeof tmp, "%s/%s", st->tmp_dir, name);
    int out = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int err = errno;
        close(in);
        return sp__fail_errno(SP_EIO, err, "%s: cannot create", tmp);
    }
    sp_status rc = SP_OK;
    sp__sha256 h;
    rc = sp__sha256_init(&h);
    uint64_t size = 0;
    int cloned = 0;
    if (rc == SP_OK && !st->reflink_off) {
        if (ioctl(out, FICLONE, in) == 0)
            cloned = 1;
        else if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == EINVAL ||
                 errno == ENOSYS)
            st->reflink_off = 1;
    }
    /* The digest is of the bytes now in the temporary file (read back after a clone), so the
     * blob always matches its name even if the source changes meanwhile. */
    int rfd = cloned ? out : in;
    while (rc == SP_OK) {
        ssize_t r = pread(rfd, buf, COPY_BUF, (off_t)size);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = sp__fail_errno(SP_EIO, errno, "%s: read failed", cloned ? tmp : src);
            break;
        }
        if (r == 0) break;
        sp__sha256_update(&h, buf, (size_t)r);
        if (!cloned) rc = sp__write_all(out, buf, (size_t)r, tmp);
        size += (uint64_t)r;
    }
    close(in);
    char hex[65];
    if (rc == SP_OK) {
        sp__sha256_final(&h, hex);
    } else {
        sp__sha256_free(&h);
        close(out);
        unlink(tmp);
        return rc;
    }
    snprintf(e->digest, sizeof e->digest, "sha256:%s", hex);
    e->size = size;
    uint8_t raw[32];
    parse_digest(e->digest, raw);
    char path[4096];
    blob_path(st, raw, path, sizeof path);
    struct stat bst;
    if (blobset_has(&st->verified, raw) ||
        (lstat(path, &bst) == 0 && S_ISREG(bst.st_mode) && (uint64_t)bst.st_size == size)) {
        close(out);
        unlink(tmp); /* the store already has it */
        return SP_OK;
    }
    if (fchmod(out, 0444) != 0) rc = sp__fail_errno(SP_EIO, errno, "%s: cannot chmod", tmp);
    if (rc == SP_OK && p->n_inline < INLINE_FSYNCS) {
        if (fsync(out) != 0) rc = sp__fail_errno(SP_EIO, errno, "%s: fsync failed", tmp);
        if (close(out) != 0 && rc == SP_OK)
            rc = sp__fail_errno(SP_EIO, errno, "%s: close failed", tmp);
        p->n_inline++;
        if (rc == SP_OK) rc = blob_commit(st, tmp, raw, p);
    } else if (rc == SP_OK) {
        if (close(out) != 0) rc = sp__fail_errno(SP_EIO, errno, "%s: close failed", tmp);
        if (rc == SP_OK && p->n == p->cap) {
            size_t ncap = p->cap ? p->cap * 2 : 256;
            char(*nt)[64] = sp__realloc(p->tmp, ncap * 64);
            if (nt) p->tmp = nt;
            uint8_t(*nb)[32] = nt ? sp__realloc(p->blob, ncap * 32) : NULL;
            if (nb) p->blob = nb;
            if (!nt || !nb)
                rc = sp__fail(SP_ENOMEM, "out of memory");
            else
                p->cap = ncap;
        }
        if (rc == SP_OK) {
            memcpy(p->tmp[p->n], name, sizeof name);
            memcpy(p->blob[p->n], raw, 32);
            p->n++;
        }
    } else {
        close(out);
    }
    if (rc != SP_OK) {
        unlink(tmp);
        return rc;
    }
    int added = blobset_add(&st->verified, raw);
    return added < 0 ? (sp_status)added : SP_OK;
}

/* Lists the files of output `rel` (a file or folder, recursively) into m. */
static sp_status list_output(const char *root, const char *rel, sp__manifest *m, size_t *cap,
                             int top) {
    char *abs = sp__path_join(root, rel);
    if (!abs) return sp__fail(SP_ENOMEM, "out of memory");
    struct stat sst;
    sp_status rc = SP_OK;
    if (stat(abs, &sst) != 0) {
        if (top && (errno == ENOENT || errno == ENOTDIR))
            rc = sp__fail(SP_EBADINPUT, "output '%s' was not created by the stage", rel);
        else
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot stat", abs);
    } else if (S_ISREG(sst.st_mode)) {
        rc = manifest_push(m, cap, rel);
    } else if (S_ISDIR(sst.st_mode)) {
        struct stat lst;
        if (!top && lstat(abs, &lst) == 0 && S_ISLNK(lst.st_mode)) {
            rc = sp__fail(SP_EUNSUPPORTED,
                          "output '%s': a symlink to a folder inside an output cannot be cached",
                          rel);
        } else {
            DIR *d = opendir(abs);
            if (!d) rc = sp__fail_errno(SP_EIO, errno, "%s: cannot read folder", abs);
            struct dirent *de;
            while (d && rc == SP_OK && (de = readdir(d)) != NULL) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
                char *sub = sp__path_join(rel, de->d_name);
                if (!sub) {
                    rc = sp__fail(SP_ENOMEM, "out of memory");
                    break;
                }
                rc = list_output(root, sub, m, cap, 0);
                sp__free(sub);
            }
            if (d) closedir(d);
        }
    } else {
        rc = sp__fail(SP_EUNSUPPORTED, "output '%s': not a regular file or folder", rel);
    }
    sp__free(abs);
    return rc;
}

sp_status sp__store_save_outputs(sp__store *st, char *const *outs, size_t n_outs, sp__manifest *m) {
    m->e = NULL;
    m->n = 0;
    size_t cap = 0;
    sp_status rc = SP_OK;
    for (size_t i = 0; i < n_outs && rc == SP_OK; i++)
        rc = list_output(st->root, outs[i], m, &cap, 1);
    if (rc != SP_OK) {
        sp__manifest_free(m);
        return rc;
    }
    if (m->n) qsort(m->e, m->n, sizeof *m->e, entry_cmp);
    pending p = {0};
    uint8_t *buf = sp__malloc(COPY_BUF);
    if (!buf) rc = sp__fail(SP_ENOMEM, "out of memory for a copy buffer");
    for (size_t i = 0; i < m->n && rc == SP_OK; i++) {
        char *src = sp__path_join(st->root, m->e[i].path);
        if (!src) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            break;
        }
        rc = ingest_file(st, src, &m->e[i], &p, buf);
        sp__free(src);
    }
    sp__free(buf);
    char tmp[4096];
    if (rc == SP_OK && p.n) {
        int fd = open(st->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) != 0)
            rc = sp__fail_errno(SP_EIO, errno, "%s: syncfs failed", st->tmp_dir);
        if (fd >= 0) close(fd);
        for (size_t i = 0; i < p.n && rc == SP_OK; i++) {
            snprintf(tmp, sizeof tmp, "%s/%s", st->tmp_dir, p.tmp[i]);
            rc = blob_commit(st, tmp, p.blob[i], &p);
        }
    }
    /* The renames are durable once their folders are fsynced. */
    for (int b = 0; b < 256 && rc == SP_OK; b++) {
        if (!p.fanout_touched[b]) continue;
        snprintf(tmp, sizeof tmp, "%s/%c%c", st->cache_dir, hexdig[b >> 4], hexdig[b & 15]);
        rc = sp__fsync_dir(tmp);
    }
    if (rc == SP_OK) rc = sp__fsync_dir(st->cache_dir);
    if (rc == SP_OK && p.n_made) {
        /* The new blobs' content is known (hashed as written): record those whose ctime is not
         * racy now. Advisory: a failure costs only hashing at the next restore. */
        int64_t t = now_ns();
        sp_status vrc = vtable_load(st);
        for (size_t i = 0; i < p.n_made && vrc == SP_OK; i++)
            vrc = vtable_note_rec(st, &p.made[i], t);
        if (vrc == SP_OK) vrc = vtable_save(st);
        if (vrc != SP_OK) sp__errmsg_clear();
    }
    if (rc != SP_OK) {
        for (size_t i = 0; i < p.n; i++) { /* temps not yet renamed (unlink of renamed fails) */
            snprintf(tmp, sizeof tmp, "%s/%s", st->tmp_dir, p.tmp[i]);
            unlink(tmp);
        }
        blobset_free(&st->verified); /* may name blobs that never made it */
        sp__manifest_free(m);
    }
    pending_free(&p);
    return rc;
}

/* ---- the run cache */

static sp_status record_path(const sp__store *st, const char *key, char *buf, size_t cap, char *dir,
                             size_t dcap) {
    size_t n = strlen(key);
    int ok = n == 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f');
    if (!ok) return sp__fail(SP_EINVAL, "key: expected 64 lowercase hex digits, got '%s'", key);
    snprintf(buf, cap, "%s/%.2s/%s.json", st->runs_dir, key, key + 2);
    if (dir) snprintf(dir, dcap, "%s/%.2s", st->runs_dir, key);
    return SP_OK;
}

/* A project-relative path as the loader makes them: not empty, not absolute, no "." or ".."
 * components, no empty components. */
static int safe_rel_path(const char *p) {
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

/* Parses one result's "outputs" into m (validated). */
static sp_status parse_result(const json_t *res, const char *file, size_t idx, sp__manifest *m) {
    m->e = NULL;
    m->n = 0;
    const json_t *outs = json_is_object(res) ? json_object_get(res, "outputs") : NULL;
    if (!json_is_array(outs))
        return sp__fail(SP_ECORRUPT, "%s: result %zu: expected an object with an \"outputs\" list",
                        file, idx);
    size_t cap = 0, i;
    const json_t *o;
    json_array_foreach(outs, i, o) {
        const char *path = json_string_value(json_object_get(o, "path"));
        const char *dig = json_string_value(json_object_get(o, "digest"));
        const json_t *size = json_object_get(o, "size"), *mode = json_object_get(o, "mode");
        uint8_t raw[32];
        if (!path || !safe_rel_path(path) || !dig || parse_digest(dig, raw) != 0 ||
            !json_is_integer(size) || json_integer_value(size) < 0 || !json_is_integer(mode) ||
            (json_integer_value(mode) != 0644 && json_integer_value(mode) != 0755)) {
            sp__manifest_free(m);
            return sp__fail(SP_ECORRUPT,
                            "%s: result %zu, output %zu: expected {\"path\": a relative path, "
                            "\"digest\": \"sha256:<64 hex>\", \"size\": >= 0, \"mode\": 420 or "
                            "493}",
                            file, idx, i);
        }
        sp_status rc = manifest_push(m, &cap, path);
        if (rc != SP_OK) {
            sp__manifest_free(m);
            return rc;
        }
        sp__manifest_entry *e = &m->e[m->n - 1];
        snprintf(e->digest, sizeof e->digest, "%s", dig);
        e->size = (uint64_t)json_integer_value(size);
        e->mode = (uint32_t)json_integer_value(mode);
    }
    return SP_OK;
}

static json_t *manifest_json(const sp__manifest *m) {
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
    return arr;
}

/* Loads a record: *doc is NULL when there is none. A record that is not valid JSON of the
 * expected shape is SP_ECORRUPT. */
static sp_status record_load(const char *path, json_t **doc) {
    *doc = NULL;
    uint8_t *data;
    size_t len;
    sp_status rc = sp__read_file(path, &data, &len);
    if (rc == SP_ENOTFOUND) {
        sp__errmsg_clear();
        return SP_OK;
    }
    SP_TRY(rc);
    json_error_t jerr;
    json_t *d = json_loadb((const char *)data, len, 0, &jerr);
    sp__free(data);
    if (!d) return sp__fail(SP_ECORRUPT, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    if (!json_is_array(json_object_get(d, "results"))) {
        json_decref(d);
        return sp__fail(SP_ECORRUPT, "%s: expected an object with a \"results\" list", path);
    }
    *doc = d;
    return SP_OK;
}

static sp_status record_write(const char *path, const char *dir, json_t *doc) {
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text) return sp__fail(SP_ENOMEM, "%s: out of memory writing the record", path);
    sp_status rc = mkdir_ok(dir);
    if (rc == SP_OK) rc = sp__file_commit(path, text, strlen(text));
    free(text);
    return rc;
}

static int manifest_equal(const sp__manifest *a, const sp__manifest *b) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].path, b->e[i].path) || strcmp(a->e[i].digest, b->e[i].digest) ||
            a->e[i].mode != b->e[i].mode || a->e[i].size != b->e[i].size)
            return 0;
    return 1;
}

sp_status sp__store_record(sp__store *st, const char *key, const sp__manifest *m) {
    char path[4096], dir[4096];
    SP_TRY(record_path(st, key, path, sizeof path, dir, sizeof dir));
    json_t *doc;
    sp_status rc = record_load(path, &doc);
    if (rc == SP_ECORRUPT) { /* an unreadable record is replaced: the cache is advisory */
        sp__errmsg_clear();
        doc = NULL;
    } else if (rc != SP_OK) {
        return rc;
    }
    if (!doc) doc = json_pack("{s:[]}", "results");
    json_t *results = doc ? json_object_get(doc, "results") : NULL;
    json_t *outs = manifest_json(m);
    json_t *res =
        outs ? json_pack("{s:I, s:o}", "time", (json_int_t)time(NULL), "outputs", outs) : NULL;
    if (!results || !res) {
        json_decref(res);
        json_decref(doc);
        return sp__fail(SP_ENOMEM, "%s: out of memory", path);
    }
    /* The same outputs again (a deterministic stage re-run) move to the end, not duplicated. */
    for (size_t i = json_array_size(results); i-- > 0;) {
        sp__manifest old;
        if (parse_result(json_array_get(results, i), path, i, &old) != SP_OK) {
            sp__errmsg_clear();
            json_array_remove(results, i);
            continue;
        }
        if (manifest_equal(&old, m)) json_array_remove(results, i);
        sp__manifest_free(&old);
    }
    if (json_array_append_new(results, res) != 0) {
        json_decref(doc);
        return sp__fail(SP_ENOMEM, "%s: out of memory", path);
    }
    while (json_array_size(results) > KEEP_RESULTS)
        json_array_remove(results, 0);
    rc = record_write(path, dir, doc);
    json_decref(doc);
    return rc;
}

/* Whether every blob of m is present with its size; with `remember`, the stats are kept in
 * st->seen for the restore that follows (so it need not stat the blobs again). */
static int blobs_present(sp__store *st, const sp__manifest *m, int remember) {
    char name[63];
    for (size_t i = 0; i < m->n; i++) {
        uint8_t raw[32];
        struct stat bst;
        if (parse_digest(m->e[i].digest, raw) != 0) return 0;
        int dfd = fan_fd(st, raw);
        if (dfd < 0) return 0;
        blob_name(raw, name);
        if (fstatat(dfd, name, &bst, 0) != 0 || (uint64_t)bst.st_size != m->e[i].size) return 0;
        if (remember && S_ISREG(bst.st_mode)) {
            vrec r;
            vrec_fill(&r, raw, &bst);
            if (vtable_put(&st->seen, &r) != SP_OK) sp__errmsg_clear(); /* only an optimization */
        }
    }
    return 1;
}

sp_status sp__store_lookup(sp__store *st, const char *key, sp__manifest *m) {
    m->e = NULL;
    m->n = 0;
    char path[4096];
    SP_TRY(record_path(st, key, path, sizeof path, NULL, 0));
    json_t *doc;
    SP_TRY(record_load(path, &doc));
    if (!doc) return sp__fail(SP_ENOTFOUND, "key %s: not in the run cache", key);
    json_t *results = json_object_get(doc, "results");
    sp_status rc = SP_ENOTFOUND;
    vtable_free(&st->seen);
    st->seen_ns = now_ns();
    for (size_t i = json_array_size(results); i-- > 0;) {
        rc = parse_result(json_array_get(results, i), path, i, m);
        if (rc != SP_OK) break;
        if (blobs_present(st, m, 1)) break;
        sp__manifest_free(m);
        rc = SP_ENOTFOUND;
    }
    json_decref(doc);
    if (rc == SP_ENOTFOUND)
        return sp__fail(SP_ENOTFOUND, "key %s: no recorded result has all its blobs", key);
    return rc;
}

/* ---- restore */

typedef struct verify_job {
    sp__store *st;
    uint8_t (*blob)[32];
    uint64_t *size;
    size_t n;
    _Atomic size_t next;
    _Atomic int failed;
    uint8_t *ok;      /* 1: hashed and matches, 2: trusted by its record (no hashing) */
    vrec *cur;        /* the blob's stat before it was hashed (ino 0: unknown) */
    int64_t start_ns; /* when the checks started (before any stat) */
} verify_job;

/* 0 if the blob exists with the expected size and digest; else a status (message set). */
static sp_status verify_blob(const sp__store *st, const uint8_t raw[32], uint64_t size,
                             uint8_t *buf, size_t cap) {
    char path[4096];
    blob_path(st, raw, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return sp__fail_errno(errno == ENOENT ? SP_ENOTFOUND : SP_EIO, errno,
                              "%s: cannot open blob", path);
    sp__sha256 h;
    sp_status rc = sp__sha256_init(&h);
    uint64_t got = 0;
    while (rc == SP_OK) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = sp__fail_errno(SP_EIO, errno, "%s: read failed", path);
            break;
        }
        if (r == 0) break;
        sp__sha256_update(&h, buf, (size_t)r);
        got += (uint64_t)r;
    }
    close(fd);
    if (rc != SP_OK) {
        sp__sha256_free(&h);
        return rc;
    }
    char hex[65], want[65];
    sp__sha256_final(&h, hex);
    raw_hex(raw, want);
    if (strcmp(hex, want) != 0 || got != size)
        return sp__fail(SP_ECORRUPT,
                        "%s: corrupt blob: content hashes to sha256:%s (%llu bytes), expected "
                        "sha256:%s (%llu bytes); delete it and run the stage again",
                        path, hex, (unsigned long long)got, want, (unsigned long long)size);
    return SP_OK;
}

/* Checks blob i of the job: trusted if its stat equals its record, else hashed. */
static sp_status check_blob(verify_job *j, size_t i, uint8_t *buf, size_t cap) {
    vrec *c = &j->cur[i];
    const vrec *seen = vtable_get(&j->st->seen, j->blob[i]);
    memset(c, 0, sizeof *c);
    if (seen) {
        *c = *seen; /* stat by the lookup just before */
    } else {
        char name[63];
        struct stat sb;
        blob_name(j->blob[i], name);
        int dfd = fan_fd_get(j->st, j->blob[i]);
        if (dfd >= 0 && fstatat(dfd, name, &sb, 0) == 0 && S_ISREG(sb.st_mode))
            vrec_fill(c, j->blob[i], &sb);
    }
    if (c->ino && c->size == j->size[i] && vtable_trusts(&j->st->vt, c)) {
        j->ok[i] = 2;
        return SP_OK;
    }
    SP_TRY(verify_blob(j->st, j->blob[i], j->size[i], buf, cap));
    j->ok[i] = 1;
    return SP_OK;
}

static void verify_worker(void *ctx, int t, int n_threads) {
    (void)t;
    (void)n_threads;
    verify_job *j = ctx;
    uint8_t *buf = sp__malloc(COPY_BUF / 4);
    if (!buf) return;
    for (;;) {
        if (atomic_load(&j->failed)) break;
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        if (check_blob(j, i, buf, COPY_BUF / 4) != SP_OK) {
            atomic_store(&j->failed, 1);
            break;
        }
    }
    sp__free(buf);
}

/* Checks every distinct blob of m not yet verified by this process: trusted by its record in
 * .softpipe/cache/verified when its stat is unchanged, else hashed (and then recorded). The
 * fan-out folders of m must be open (fan_fd). */
static sp_status verify_all(sp__store *st, const sp__manifest *m) {
    verify_job j = {0};
    j.st = st;
    blobset seen = {0};
    sp_status rc = vtable_load(st);
    /* Stats taken by the lookup are older than now: the records' racy check starts there. */
    j.start_ns = st->seen.n ? st->seen_ns : now_ns();
    j.blob = sp__malloc((m->n ? m->n : 1) * 32);
    j.size = sp__malloc((m->n ? m->n : 1) * sizeof *j.size);
    j.ok = sp__calloc(m->n ? m->n : 1, 1);
    j.cur = sp__calloc(m->n ? m->n : 1, sizeof *j.cur);
    if (rc == SP_OK && (!j.blob || !j.size || !j.ok || !j.cur))
        rc = sp__fail(SP_ENOMEM, "out of memory verifying blobs");
    for (size_t i = 0; i < m->n && rc == SP_OK; i++) {
        uint8_t raw[32];
        if (parse_digest(m->e[i].digest, raw) != 0) {
            rc = sp__fail(SP_EINVAL, "manifest entry '%s': bad digest '%s'", m->e[i].path,
                          m->e[i].digest);
            break;
        }
        if (blobset_has(&st->verified, raw)) continue;
        int added = blobset_add(&seen, raw);
        if (added < 0) rc = (sp_status)added;
        if (added <= 0) continue;
        memcpy(j.blob[j.n], raw, 32);
        j.size[j.n++] = m->e[i].size;
    }
    if (rc == SP_OK && j.n >= 64 && sp__ncpu() > 1)
        sp__parallel(sp__ncpu() < 8 ? sp__ncpu() : 8, verify_worker, &j);
    uint8_t *buf = NULL;
    for (size_t i = 0; i < j.n && rc == SP_OK; i++) {
        if (!j.ok[i]) {
            if (!buf && !(buf = sp__malloc(COPY_BUF / 4))) {
                rc = sp__fail(SP_ENOMEM, "out of memory verifying blobs");
                break;
            }
            rc = check_blob(&j, i, buf, COPY_BUF / 4);
        }
        if (rc == SP_OK) {
            int added = blobset_add(&st->verified, j.blob[i]);
            if (added < 0) rc = (sp_status)added;
        }
        if (rc == SP_OK && j.ok[i] == 1 && j.cur[i].ino)
            rc = vtable_note_rec(st, &j.cur[i], j.start_ns);
    }
    /* The records are advisory: failing to write them costs only hashing next time. */
    if (rc == SP_OK && vtable_save(st) != SP_OK) sp__errmsg_clear();
    sp__free(buf);
    sp__free(j.cur);
    vtable_free(&st->seen); /* used once: later changes to the blobs need a new stat */
    blobset_free(&seen);
    sp__free(j.blob);
    sp__free(j.size);
    sp__free(j.ok);
    return rc;
}

typedef enum { FORCE_NONE, FORCE_HARDLINK, FORCE_COPY } force_method;

/* State shared by the threads of one restore call. */
typedef struct restore_shared {
    _Atomic size_t n_inline; /* files fsynced one by one so far */
    _Atomic int need_syncfs;
} restore_shared;

/* One thread's view of a restore: shared counters, its own copy buffer and last method. */
typedef struct restore_ctx {
    sp__store *st;
    force_method force;
    restore_shared *sh;
    const char *method;
    uint8_t *buf;
} restore_ctx;

/* Places blob `raw` at `name` in folder `dfd` (AT_FDCWD for a path), which must not exist,
 * with `mode`; `dst` is the full path, for messages. */
static sp_status place_file(restore_ctx *rc_, const sp__manifest_entry *e, int dfd,
                            const char *name, const char *dst) {
    sp__store *st = rc_->st;
    uint8_t raw[32];
    parse_digest(e->digest, raw);
    char blob[4096], bname[63];
    blob_path(st, raw, blob, sizeof blob);
    blob_name(raw, bname);
retry:;
    /* A hard link shares the blob's inode, so it is read-only (0444) and cannot carry an
     * executable bit: only 0644 files are linked. */
    if (rc_->force != FORCE_COPY && (st->reflink_off || rc_->force == FORCE_HARDLINK) &&
        !st->hardlink_off && e->mode == 0644) {
        int ffd = fan_fd_get(st, raw);
        if (ffd >= 0 && linkat(ffd, bname, dfd, name, 0) == 0) {
            rc_->method = "hardlink";
            return SP_OK;
        }
        if (errno == EXDEV || errno == EPERM || errno == ENOSYS || errno == EOPNOTSUPP)
            st->hardlink_off = 1;
        else if (errno != EMLINK)
            return sp__fail_errno(SP_EIO, errno, "%s: cannot link to %s", dst, blob);
    }
    int in = open(blob, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (in < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot open blob", blob);
    int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int err = errno;
        close(in);
        return sp__fail_errno(SP_EIO, err, "%s: cannot create", dst);
    }
    sp_status rc = SP_OK;
    int cloned = 0;
    if (rc_->force == FORCE_NONE && !st->reflink_off) {
        if (ioctl(out, FICLONE, in) == 0)
            cloned = 1;
        else if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == EINVAL ||
                 errno == ENOSYS) {
            /* No reflinks here: start over, so this file may be hard linked like the rest. */
            st->reflink_off = 1;
            close(in);
            close(out);
            unlinkat(dfd, name, 0);
            goto retry;
        }
    }
    if (!cloned) {
        if (!rc_->buf && !(rc_->buf = sp__malloc(COPY_BUF)))
            rc = sp__fail(SP_ENOMEM, "out of memory for a copy buffer");
        while (rc == SP_OK) {
            ssize_t r = read(in, rc_->buf, COPY_BUF);
            if (r < 0) {
                if (errno == EINTR) continue;
                rc = sp__fail_errno(SP_EIO, errno, "%s: read failed", blob);
                break;
            }
            if (r == 0) break;
            rc = sp__write_all(out, rc_->buf, (size_t)r, dst);
        }
    }
    close(in);
    if (rc == SP_OK && fchmod(out, e->mode) != 0)
        rc = sp__fail_errno(SP_EIO, errno, "%s: cannot chmod", dst);
    if (rc == SP_OK) {
        if (atomic_fetch_add(&rc_->sh->n_inline, 1) < INLINE_FSYNCS) {
            if (fsync(out) != 0) rc = sp__fail_errno(SP_EIO, errno, "%s: fsync failed", dst);
        } else {
            atomic_store(&rc_->sh->need_syncfs, 1);
        }
    }
    if (close(out) != 0 && rc == SP_OK) rc = sp__fail_errno(SP_EIO, errno, "%s: close failed", dst);
    if (rc != SP_OK) {
        unlinkat(dfd, name, 0);
        return rc;
    }
    rc_->method = cloned ? "reflink" : "copy";
    return SP_OK;
}

static int under(const char *path, const char *out) {
    size_t n = strlen(out);
    return strncmp(path, out, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* mkdir -p of the folders of `rel` below `base` (base exists). */
static sp_status make_parents(const char *base, const char *rel, sp__buf *dirs) {
    char path[4096];
    int bl = snprintf(path, sizeof path, "%s/%s", base, rel);
    if (bl >= (int)sizeof path) return sp__fail(SP_EINVAL, "%s/%s: path too long", base, rel);
    size_t blen = strlen(base);
    for (char *c = path + blen + 1; (c = strchr(c, '/')) != NULL; c++) {
        *c = '\0';
        if (mkdir(path, 0755) == 0) {
            SP_TRY(sp__buf_append(dirs, path, strlen(path) + 1));
        } else if (errno != EEXIST) {
            return sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", path);
        }
        *c = '/';
    }
    return SP_OK;
}

/* Files of one folder output are placed in groups: a group is a run of consecutive entries
 * (the manifest is sorted) in one target folder, and a thread places whole groups, so two
 * threads rarely add entries to one folder (ext4 serializes that on the folder's lock). */
typedef struct place_group {
    size_t start, end; /* range in place_job.idx */
    size_t plen;       /* length of the folder part of the entries' paths below the output */
    sp_status rc;      /* SP_OK, or the group's first error ... */
    char *msg;         /* ... and its message (the worker's thread-local one, copied) */
    const char *method;
} place_group;

typedef struct place_job {
    sp__store *st;
    force_method force;
    restore_shared *sh;
    const sp__manifest *m;
    const char *tmp; /* the new folder */
    size_t ol;       /* length of the output's name */
    size_t *idx;     /* manifest indices of the output's entries, in manifest order */
    place_group *g;
    size_t n_groups;
    _Atomic size_t next;
    _Atomic int failed;
} place_job;

static sp_status place_group_files(restore_ctx *rc_, place_job *j, place_group *g) {
    char path[4096];
    const char *first = j->m->e[j->idx[g->start]].path + j->ol + 1;
    snprintf(path, sizeof path, "%s/%.*s", j->tmp, (int)g->plen, first);
    int pfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot open folder", path);
    sp_status rc = SP_OK;
    for (size_t x = g->start; x < g->end && rc == SP_OK; x++) {
        const sp__manifest_entry *e = &j->m->e[j->idx[x]];
        const char *rel = e->path + j->ol + 1;
        snprintf(path, sizeof path, "%s/%s", j->tmp, rel);
        rc = place_file(rc_, e, pfd, g->plen ? rel + g->plen + 1 : rel, path);
    }
    close(pfd);
    return rc;
}

/* Takes groups in index order; after a failure no new group is taken, but the groups already
 * taken (all of lower index) finish, so the lowest failing group is the same as in a serial
 * run and its error is the one reported. */
static void place_worker(void *ctx, int t, int n_threads) {
    (void)t;
    (void)n_threads;
    place_job *j = ctx;
    restore_ctx rc_ = {0};
    rc_.st = j->st;
    rc_.force = j->force;
    rc_.sh = j->sh;
    for (;;) {
        if (atomic_load(&j->failed)) break;
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n_groups) break;
        place_group *g = &j->g[i];
        rc_.method = NULL;
        g->rc = place_group_files(&rc_, j, g);
        g->method = rc_.method;
        if (g->rc != SP_OK) {
            g->msg = sp__strdup(sp_errmsg());
            atomic_store(&j->failed, 1);
        }
    }
    sp__free(rc_.buf);
}

/* Places the entries of folder output `out` (number k) into the new folder `tmp` (exists). */
static sp_status place_folder(restore_ctx *rc_, const sp__manifest *m, const char *out,
                              const char *tmp, sp__buf *dirs) {
    place_job j = {0};
    j.st = rc_->st;
    j.force = rc_->force;
    j.sh = rc_->sh;
    j.m = m;
    j.tmp = tmp;
    j.ol = strlen(out);
    sp_status rc = SP_OK;
    size_t n = 0;
    j.idx = sp__malloc((m->n ? m->n : 1) * sizeof *j.idx);
    j.g = sp__malloc((m->n ? m->n : 1) * sizeof *j.g);
    if (!j.idx || !j.g) rc = sp__fail(SP_ENOMEM, "out of memory restoring outputs");
    const char *cur = NULL; /* the entry whose folder the current group is */
    size_t cur_len = 0;
    for (size_t i = 0; i < m->n && rc == SP_OK; i++) {
        if (!under(m->e[i].path, out)) continue;
        if (m->e[i].path[j.ol] != '/') {
            rc = sp__fail(SP_EINVAL, "manifest: output '%s' is both a file and a folder", out);
            break;
        }
        const char *rel = m->e[i].path + j.ol + 1;
        const char *slash = strrchr(rel, '/');
        size_t plen = slash ? (size_t)(slash - rel) : 0;
        if (!cur || plen != cur_len || memcmp(cur, rel, plen) != 0) {
            /* A new group: its folder's parents are made here, once, by the caller. */
            rc = make_parents(tmp, rel, dirs);
            if (rc != SP_OK) break;
            if (j.n_groups) j.g[j.n_groups - 1].end = n;
            place_group *g = &j.g[j.n_groups++];
            memset(g, 0, sizeof *g);
            g->start = n;
            g->plen = plen;
            cur = rel;
            cur_len = plen;
        }
        j.idx[n++] = i;
    }
    if (j.n_groups) j.g[j.n_groups - 1].end = n;
    if (rc == SP_OK && j.n_groups) {
        int nt = sp__ncpu() < 8 ? sp__ncpu() : 8;
        if ((size_t)nt > j.n_groups) nt = (int)j.n_groups;
        if (n < 256) nt = 1;
        sp__parallel(nt, place_worker, &j);
        for (size_t g = 0; g < j.n_groups; g++) {
            if (j.g[g].method) rc_->method = j.g[g].method;
            if (rc == SP_OK && j.g[g].rc != SP_OK)
                rc = j.g[g].msg ? sp__fail(j.g[g].rc, "%s", j.g[g].msg)
                                : sp__fail(SP_ENOMEM, "out of memory restoring outputs");
        }
    }
    for (size_t g = 0; j.g && g < j.n_groups; g++)
        sp__free(j.g[g].msg);
    sp__free(j.idx);
    sp__free(j.g);
    return rc;
}

sp_status sp__store_restore(sp__store *st, char *const *outs, size_t n_outs, const sp__manifest *m,
                            const char **method) {
    if (method) *method = NULL;
    for (size_t i = 0; i < m->n; i++) {
        int found = 0;
        for (size_t k = 0; k < n_outs && !found; k++)
            found = under(m->e[i].path, outs[k]);
        if (!found || !safe_rel_path(m->e[i].path))
            return sp__fail(SP_EINVAL, "manifest entry '%s' is not inside any declared output",
                            m->e[i].path);
    }
    /* The fan-out folders are opened here, before any worker thread reads them. */
    for (size_t i = 0; i < m->n; i++) {
        uint8_t raw[32];
        if (parse_digest(m->e[i].digest, raw) == 0) (void)fan_fd(st, raw);
    }
    SP_TRY(verify_all(st, m));
    restore_shared sh = {0};
    restore_ctx rc_ = {0};
    rc_.st = st;
    rc_.sh = &sh;
    const char *force = getenv("SP_CACHE_RESTORE_METHOD");
    rc_.force = !force                       ? FORCE_NONE
                : !strcmp(force, "copy")     ? FORCE_COPY
                : !strcmp(force, "hardlink") ? FORCE_HARDLINK
                                             : FORCE_NONE;
    char **tmps = sp__calloc(n_outs ? n_outs : 1, sizeof *tmps);
    sp__buf dirs = {0}; /* NUL-separated folders created in the new trees, to fsync */
    sp_status rc = tmps ? SP_OK : sp__fail(SP_ENOMEM, "out of memory restoring outputs");
    int pid = (int)getpid();
    /* 1. Build every replacement beside its target. */
    for (size_t k = 0; k < n_outs && rc == SP_OK; k++) {
        char *target = sp__path_join(st->root, outs[k]);
        size_t tl = target ? strlen(target) + 32 : 0;
        tmps[k] = target ? sp__malloc(tl) : NULL;
        if (!tmps[k]) {
            sp__free(target);
            rc = sp__fail(SP_ENOMEM, "out of memory restoring outputs");
            break;
        }
        snprintf(tmps[k], tl, "%s.sp-tmp-%d", target, pid);
        sp__remove_tree(tmps[k]); /* a leftover of a crashed restore by a process of our pid */
        rc = make_parents(st->root, outs[k], &dirs);
        size_t first = m->n, count = 0;
        for (size_t i = 0; i < m->n; i++)
            if (under(m->e[i].path, outs[k])) {
                if (first == m->n) first = i;
                count++;
            }
        int is_file = count == 1 && strcmp(m->e[first].path, outs[k]) == 0;
        if (rc == SP_OK && is_file) {
            rc = place_file(&rc_, &m->e[first], AT_FDCWD, tmps[k], tmps[k]);
        } else if (rc == SP_OK) {
            if (mkdir(tmps[k], 0755) != 0)
                rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", tmps[k]);
            else
                rc = sp__buf_append(&dirs, tmps[k], strlen(tmps[k]) + 1);
            if (rc == SP_OK) rc = place_folder(&rc_, m, outs[k], tmps[k], &dirs);
        }
        sp__free(target);
    }
    /* 2. Make the new trees durable: one syncfs if many files were written, else the few
     * files were fsynced and each created folder is fsynced once. */
    if (rc == SP_OK && atomic_load(&sh.need_syncfs)) {
        int fd = open(st->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) != 0)
            rc = sp__fail_errno(SP_EIO, errno, "%s: syncfs failed", st->root);
        if (fd >= 0) close(fd);
    } else {
        for (size_t off = 0; off < dirs.len && rc == SP_OK;) {
            const char *d = (const char *)dirs.data + off;
            rc = sp__fsync_dir(d);
            off += strlen(d) + 1;
        }
    }
    /* 3. Swap each replacement in; the old version goes only after the new one is in place. */
    for (size_t k = 0; k < n_outs && rc == SP_OK; k++) {
        char *target = sp__path_join(st->root, outs[k]);
        if (!target) {
            rc = sp__fail(SP_ENOMEM, "out of memory");
            break;
        }
        struct stat tst;
        if (lstat(target, &tst) != 0) {
            if (rename(tmps[k], target) != 0)
                rc = sp__fail_errno(SP_EIO, errno, "%s: cannot rename to %s", tmps[k], target);
        } else if (renameat2(AT_FDCWD, tmps[k], AT_FDCWD, target, RENAME_EXCHANGE) == 0) {
            sp__remove_tree(tmps[k]); /* now the old version */
        } else if (!S_ISDIR(tst.st_mode) && rename(tmps[k], target) == 0) {
            /* replaced atomically */
        } else {
            size_t ol = strlen(target) + 32;
            char *old = sp__malloc(ol);
            if (!old) {
                rc = sp__fail(SP_ENOMEM, "out of memory");
            } else {
                snprintf(old, ol, "%s.sp-old-%d", target, pid);
                sp__remove_tree(old);
                if (rename(target, old) != 0)
                    rc = sp__fail_errno(SP_EIO, errno, "%s: cannot move aside", target);
                else if (rename(tmps[k], target) != 0) {
                    rc = sp__fail_errno(SP_EIO, errno, "%s: cannot rename to %s", tmps[k], target);
                    (void)rename(old, target);
                } else
                    sp__remove_tree(old);
                sp__free(old);
            }
        }
        if (rc == SP_OK) {
            char *slash = strrchr(target, '/');
            *slash = '\0';
            rc = sp__fsync_dir(target);
        }
        sp__free(target);
        if (rc == SP_OK) {
            sp__free(tmps[k]);
            tmps[k] = NULL;
        }
    }
    for (size_t k = 0; tmps && k < n_outs; k++) {
        if (tmps[k]) sp__remove_tree(tmps[k]);
        sp__free(tmps[k]);
    }
    sp__free(tmps);
    sp__buf_free(&dirs);
    sp__free(rc_.buf);
    if (rc == SP_OK && method) *method = rc_.method ? rc_.method : "hardlink";
    return rc;
}

/* ---- gc */

static int pid_alive(const char *name) {
    char *end;
    long pid = strtol(name, &end, 10);
    if (end == name || pid <= 0) return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Visits runs/<2 hex>/<62 hex>.json; fn returns a status. Other files: temps of dead writers
 * are removed (not in a dry run), the rest ignored. */
typedef sp_status (*record_fn)(void *ctx, const char *path, const char *dir);

static sp_status each_record(sp__store *st, int dry_run, record_fn fn, void *ctx) {
    DIR *top = opendir(st->runs_dir);
    if (!top)
        return errno == ENOENT ? SP_OK
                               : sp__fail_errno(SP_EIO, errno, "%s: cannot read", st->runs_dir);
    sp_status rc = SP_OK;
    struct dirent *de;
    char dir[4096], path[8192];
    while (rc == SP_OK && (de = readdir(top)) != NULL) {
        if (strlen(de->d_name) != 2 || de->d_name[0] == '.') continue;
        snprintf(dir, sizeof dir, "%s/%s", st->runs_dir, de->d_name);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *fe;
        while (rc == SP_OK && (fe = readdir(d)) != NULL) {
            const char *n = fe->d_name;
            size_t nl = strlen(n);
            snprintf(path, sizeof path, "%s/%s", dir, n);
            if (nl == 67 && strcmp(n + 62, ".json") == 0) {
                rc = fn(ctx, path, dir);
            } else if (!dry_run && nl > 67 && strncmp(n + 62, ".json.tmp-", 10) == 0 &&
                       !pid_alive(n + 72)) {
                unlink(path);
            }
        }
        closedir(d);
    }
    closedir(top);
    return rc;
}

typedef struct gc_ctx {
    sp__store *st;
    uint32_t keep_last;
    int dry_run;
    blobset live;
    uint64_t records_dropped;
} gc_ctx;

static sp_status gc_record(void *ctx, const char *path, const char *dir) {
    gc_ctx *g = ctx;
    json_t *doc;
    sp_status rc = record_load(path, &doc);
    if (rc == SP_ECORRUPT) { /* unreadable: it references nothing we can trust */
        sp__errmsg_clear();
        g->records_dropped++;
        if (!g->dry_run) unlink(path);
        return SP_OK;
    }
    if (rc != SP_OK || !doc) return rc;
    json_t *results = json_object_get(doc, "results");
    size_t n = json_array_size(results);
    int changed = 0;
    for (size_t i = n; i-- > 0;) {
        size_t rank = n - 1 - i; /* 0 = newest */
        sp__manifest m;
        int keep = g->keep_last == 0 || rank < g->keep_last;
        if (keep && parse_result(json_array_get(results, i), path, i, &m) == SP_OK) {
            keep = blobs_present(g->st, &m, 0);
            for (size_t k = 0; keep && k < m.n; k++) {
                uint8_t raw[32];
                parse_digest(m.e[k].digest, raw);
                int added = blobset_add(&g->live, raw);
                if (added < 0) {
                    sp__manifest_free(&m);
                    json_decref(doc);
                    return (sp_status)added;
                }
            }
            sp__manifest_free(&m);
        } else {
            sp__errmsg_clear();
            keep = 0;
        }
        if (!keep) {
            json_array_remove(results, i);
            g->records_dropped++;
            changed = 1;
        }
    }
    if (changed && !g->dry_run) {
        if (json_array_size(results) == 0) {
            if (unlink(path) != 0 && errno != ENOENT)
                rc = sp__fail_errno(SP_EIO, errno, "%s: cannot remove", path);
        } else {
            rc = record_write(path, dir, doc);
        }
    }
    json_decref(doc);
    return rc;
}

sp_status sp__store_gc(sp__store *st, uint32_t keep_last, int dry_run, uint64_t *blobs_removed,
                       uint64_t *bytes_removed, uint64_t *records_dropped) {
    *blobs_removed = *bytes_removed = *records_dropped = 0;
    gc_ctx g = {0};
    g.st = st;
    g.keep_last = keep_last;
    g.dry_run = dry_run;
    sp_status rc = each_record(st, dry_run, gc_record, &g);
    *records_dropped = g.records_dropped;
    DIR *top = rc == SP_OK ? opendir(st->cache_dir) : NULL;
    if (rc == SP_OK && !top) rc = sp__fail_errno(SP_EIO, errno, "%s: cannot read", st->cache_dir);
    struct dirent *de;
    char dir[4096], path[8192];
    while (top && rc == SP_OK && (de = readdir(top)) != NULL) {
        const char *dn = de->d_name;
        if (!strcmp(dn, "tmp")) { /* temporaries of writers that are gone */
            DIR *d = dry_run ? NULL : opendir(st->tmp_dir);
            struct dirent *te;
            while (d && (te = readdir(d)) != NULL) {
                if (te->d_name[0] == '.' || pid_alive(te->d_name)) continue;
                snprintf(path, sizeof path, "%s/%s", st->tmp_dir, te->d_name);
                unlink(path);
            }
            if (d) closedir(d);
            continue;
        }
        if (strlen(dn) != 2 || unhex(dn[0]) < 0 || unhex(dn[1]) < 0) continue;
        snprintf(dir, sizeof dir, "%s/%s", st->cache_dir, dn);
        DIR *d = opendir(dir);
        if (!d) continue;
        int removed_any = 0;
        struct dirent *fe;
        while (rc == SP_OK && (fe = readdir(d)) != NULL) {
            char digest[SP__DIGEST_MAX];
            uint8_t raw[32];
            if (strlen(fe->d_name) != 62) continue;
            memcpy(digest, "sha256:", 7);
            memcpy(digest + 7, dn, 2);
            memcpy(digest + 9, fe->d_name, 63);
            if (parse_digest(digest, raw) != 0 || blobset_has(&g.live, raw)) continue;
            snprintf(path, sizeof path, "%s/%s", dir, fe->d_name);
            struct stat bst;
            if (lstat(path, &bst) != 0) continue;
            if (!dry_run && unlink(path) != 0) {
                rc = sp__fail_errno(SP_EIO, errno, "%s: cannot remove", path);
                break;
            }
            (*blobs_removed)++;
            *bytes_removed += (uint64_t)bst.st_size;
            removed_any = 1;
        }
        closedir(d);
        if (rc == SP_OK && removed_any && !dry_run) rc = sp__fsync_dir(dir);
    }
    if (top) closedir(top);
    blobset_free(&g.live);
    /* Forget verifications of blobs that may be gone (the records file is rebuilt by hashing
     * at later restores). */
    if (!dry_run && *blobs_removed) {
        blobset_free(&st->verified);
        vtable_free(&st->vt);
        if (unlink(st->vt_path) != 0 && errno != ENOENT && rc == SP_OK)
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot remove", st->vt_path);
    }
    return rc;
}
