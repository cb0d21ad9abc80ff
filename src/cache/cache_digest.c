/* cache_digest.c — content digests for the pipeline cache, and the stat cache.
 *
 * Files are hashed with SHA-256 (OpenSSL EVP, which takes the SHA-NI path where the CPU has
 * it) over large preads, and named "sha256:<hex>". A folder is named "tree-sha256:<hex>", the
 * SHA-256 of its canonical manifest: one line per regular file or symlink below it,
 *     "<type> <mode> <digest> <path>\n"
 * type 'f' (file: mode 644 or 755 from the owner's executable bit, digest of the bytes) or 'l'
 * (symlink: mode 777, digest of the link's target text), path relative to the folder with '/'
 * separators, lines sorted by the path's bytes (strcmp). Folders themselves, empty ones
 * included, add no line; an empty folder hashes the empty text. docs/cache.md has examples.
 *
 * The stat cache (.softpipe/statcache) maps a path to (dev, ino, size, mtime_ns, ctime_ns,
 * sha256) so that a file whose stat is unchanged is not read again. Racy-timestamp guard (git's
 * "racily clean" entries): a file whose mtime or ctime lies within RACY_NS of the moment it was
 * hashed is never cached (a write in the same clock tick could leave its stat unchanged), and a
 * loaded record whose times are not older than the file's write time minus RACY_NS is not
 * trusted. The file is read whole with one read into an arena that also holds the paths; lookups
 * go through an open-addressing hash table keyed by the project-relative path. Layout, all
 * little-endian:
 *     header 32 bytes: "SPSTAT01" | u64 written_ns (CLOCK_REALTIME) | u64 n_records |
 *                      u64 xxh3 of everything after the header
 *     record: u64 dev | u64 ino | u64 size | i64 mtime_ns | i64 ctime_ns | 32 bytes sha256 |
 *             u16 path_len | path bytes
 * A file that fails these checks is ignored (the cache is only an accelerator) and rewritten.
 * Records of files that no longer exist are dropped when the cache is written.
 *
 * Threads: a folder digest hashes its uncached files on sp__ncpu() threads; workers share only
 * the work list (an atomic counter hands out items) and never touch the stat cache. */
#define _GNU_SOURCE
#include "cache_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HASH_BUF_MAX (2u << 20)   /* read size for big files */
#define WALK_BUF     (256u << 10) /* per-thread buffer for a folder's files */
#define RACY_NS      1000000000LL /* timestamp granularity we guard against: 1 s */
#define SC_MAGIC     "SPSTAT01"
#define SC_HEADER    32
#define SC_FIXED     (5 * 8 + 32 + 2)

static const char hexdig[] = "0123456789abcdef";

static int64_t now_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t ts_ns(struct timespec t) {
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int unhex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "sha256:<64 hex>" -> 32 bytes; 0 on success. */
static int digest_raw(const char *d, uint8_t raw[32]) {
    if (strncmp(d, "sha256:", 7) != 0) return -1;
    d += 7;
    for (int i = 0; i < 32; i++) {
        int a = unhex_digit(d[2 * i]), b = a < 0 ? -1 : unhex_digit(d[2 * i + 1]);
        if (b < 0) return -1;
        raw[i] = (uint8_t)(a << 4 | b);
    }
    return d[64] == '\0' ? 0 : -1;
}

static void digest_text(const uint8_t raw[32], char out[SP__DIGEST_MAX]) {
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hexdig[raw[i] >> 4];
        out[8 + 2 * i] = hexdig[raw[i] & 15];
    }
    out[71] = '\0';
}

/* Hashes an open file from offset 0 to its end into "sha256:<hex>". */
static sp_status hash_fd(int fd, const char *path, uint8_t *buf, size_t cap,
                         char out[SP__DIGEST_MAX]) {
    sp__sha256 h;
    SP_TRY(sp__sha256_init(&h));
    uint64_t off = 0;
    for (;;) {
        ssize_t r = pread(fd, buf, cap, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            sp__sha256_free(&h);
            return sp__fail_errno(SP_EIO, e, "%s: read failed", path);
        }
        if (r == 0) break;
        sp__sha256_update(&h, buf, (size_t)r);
        off += (uint64_t)r;
    }
    char hex[65];
    sp__sha256_final(&h, hex);
    memcpy(out, "sha256:", 7);
    memcpy(out + 7, hex, 65);
    return SP_OK;
}

static sp_status hash_path(const char *path, uint8_t *buf, size_t cap, char out[SP__DIGEST_MAX]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return sp__fail_errno(errno == ENOENT ? SP_ENOTFOUND : SP_EIO, errno, "%s: cannot open",
                              path);
    sp_status rc = hash_fd(fd, path, buf, cap, out);
    close(fd);
    return rc;
}

sp_status sp__digest_file(const char *path, char out[SP__DIGEST_MAX]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return sp__fail_errno(errno == ENOENT ? SP_ENOTFOUND : SP_EIO, errno, "%s: cannot open",
                              path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sp__fail_errno(SP_EIO, e, "%s: cannot stat", path);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return sp__fail(SP_EINVAL, "%s: is a folder, expected a file", path);
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    /* Small files get a small buffer; big ones 2 MiB reads (page-aligned by malloc's mmap). */
    size_t cap = (uint64_t)st.st_size + 1 < HASH_BUF_MAX ? (size_t)st.st_size + 1 : HASH_BUF_MAX;
    if (cap < 4096) cap = 4096;
    uint8_t *buf = sp__malloc(cap);
    if (!buf) {
        close(fd);
        return sp__fail(SP_ENOMEM, "%s: out of memory for a read buffer", path);
    }
    sp_status rc = hash_fd(fd, path, buf, cap, out);
    sp__free(buf);
    close(fd);
    return rc;
}

/* ---- the stat cache */

/* What a record is keyed on besides the path. */
typedef struct file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
} file_id;

static file_id file_id_of(const struct stat *st) {
    return (file_id){(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                     ts_ns(st->st_mtim), ts_ns(st->st_ctim)};
}

typedef struct sc_rec {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
    uint8_t sha[32];
    size_t path_off; /* into sc->arena */
    uint32_t path_len;
    uint8_t fresh; /* hashed in this session (already passed the racy check) */
    uint8_t seen;  /* looked up or stored in this session */
} sc_rec;

struct sp__statcache {
    char *root;    /* absolute project root, no trailing '/' */
    char *file;    /* <root>/.softpipe/statcache */
    sp__buf arena; /* the loaded file, then appended paths */
    sc_rec *recs;
    size_t n, cap;
    uint32_t *table;  /* record index + 1; 0 = empty slot */
    size_t table_cap; /* power of two, at least 2n */
    int64_t written_ns;
    int dirty;
};

static sp_status sc_table_rebuild(sp__statcache *sc, size_t want) {
    size_t cap = 64;
    while (cap < 2 * want)
        cap *= 2;
    uint32_t *t = sp__calloc(cap, sizeof *t);
    if (!t) return sp__fail(SP_ENOMEM, "%s: out of memory for the stat cache", sc->file);
    for (size_t i = 0; i < sc->n; i++) {
        const sc_rec *r = &sc->recs[i];
        size_t h = (size_t)sp__xxh3(sc->arena.data + r->path_off, r->path_len) & (cap - 1);
        while (t[h])
            h = (h + 1) & (cap - 1);
        t[h] = (uint32_t)(i + 1);
    }
    sp__free(sc->table);
    sc->table = t;
    sc->table_cap = cap;
    return SP_OK;
}

static sc_rec *sc_find(sp__statcache *sc, const char *key, size_t len) {
    if (!sc->table_cap) return NULL;
    size_t h = (size_t)sp__xxh3(key, len) & (sc->table_cap - 1);
    for (uint32_t v; (v = sc->table[h]) != 0; h = (h + 1) & (sc->table_cap - 1)) {
        sc_rec *r = &sc->recs[v - 1];
        if (r->path_len == len && memcmp(sc->arena.data + r->path_off, key, len) == 0) return r;
    }
    return NULL;
}

/* Appends a record for `key` (not present). */
static sp_status sc_add(sp__statcache *sc, const char *key, size_t len, sc_rec **out) {
    if (len > UINT16_MAX) return sp__fail(SP_EINVAL, "%s: path too long for the stat cache", key);
    if (sc->n == sc->cap) {
        size_t ncap = sc->cap ? sc->cap * 2 : 256;
        sc_rec *nr = sp__realloc(sc->recs, ncap * sizeof *nr);
        if (!nr) return sp__fail(SP_ENOMEM, "out of memory growing the stat cache");
        sc->recs = nr;
        sc->cap = ncap;
    }
    if (2 * (sc->n + 1) > sc->table_cap) SP_TRY(sc_table_rebuild(sc, sc->n + 1));
    size_t off = sc->arena.len;
    SP_TRY(sp__buf_append(&sc->arena, key, len));
    sc_rec *r = &sc->recs[sc->n];
    memset(r, 0, sizeof *r);
    r->path_off = off;
    r->path_len = (uint32_t)len;
    size_t h = (size_t)sp__xxh3(key, len) & (sc->table_cap - 1);
    while (sc->table[h])
        h = (h + 1) & (sc->table_cap - 1);
    sc->table[h] = (uint32_t)(sc->n + 1);
    sc->n++;
    *out = r;
    return SP_OK;
}

/* Parses a loaded file; on any inconsistency leaves the cache empty. */
static void sc_parse(sp__statcache *sc) {
    const uint8_t *p = sc->arena.data;
    size_t len = sc->arena.len;
    if (len < SC_HEADER || memcmp(p, SC_MAGIC, 8) != 0) return;
    uint64_t n = sp__get_u64(p + 16);
    if (sp__get_u64(p + 24) != sp__xxh3(p + SC_HEADER, len - SC_HEADER)) return;
    if (n > (len - SC_HEADER) / SC_FIXED) return;
    sc->recs = sp__malloc((n ? n : 1) * sizeof *sc->recs);
    if (!sc->recs) return;
    sc->cap = n ? n : 1;
    size_t off = SC_HEADER;
    for (uint64_t i = 0; i < n; i++) {
        if (len - off < SC_FIXED) goto bad;
        sc_rec *r = &sc->recs[i];
        const uint8_t *q = p + off;
        r->dev = sp__get_u64(q);
        r->ino = sp__get_u64(q + 8);
        r->size = sp__get_u64(q + 16);
        r->mtime_ns = (int64_t)sp__get_u64(q + 24);
        r->ctime_ns = (int64_t)sp__get_u64(q + 32);
        memcpy(r->sha, q + 40, 32);
        r->path_len = (uint32_t)q[72] | (uint32_t)q[73] << 8;
        r->path_off = off + SC_FIXED;
        r->fresh = r->seen = 0;
        off += SC_FIXED + r->path_len;
        if (off > len) goto bad;
    }
    if (off != len) goto bad;
    sc->n = (size_t)n;
    if (sc_table_rebuild(sc, sc->n) != SP_OK) goto bad;
    sc->written_ns = (int64_t)sp__get_u64(p + 8);
    return;
bad:
    sp__free(sc->recs);
    sc->recs = NULL;
    sc->n = sc->cap = 0;
}

static char *abs_path(const char *path) {
    if (path[0] == '/') return sp__strdup(path);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    return sp__path_join(cwd, path);
}

sp_status sp__statcache_open(const char *project_root, sp__statcache **out) {
    *out = NULL;
    sp__statcache *sc = sp__calloc(1, sizeof *sc);
    if (!sc) return sp__fail(SP_ENOMEM, "out of memory opening the stat cache");
    sc->root = abs_path(project_root);
    if (!sc->root) {
        sp__free(sc);
        return sp__fail(SP_ENOMEM, "%s: out of memory", project_root);
    }
    size_t rl = strlen(sc->root);
    while (rl > 1 && sc->root[rl - 1] == '/')
        sc->root[--rl] = '\0';
    sc->file = sp__path_join(sc->root, ".softpipe/statcache");
    if (!sc->file) {
        sp__statcache_free(sc);
        return sp__fail(SP_ENOMEM, "%s: out of memory", project_root);
    }
    uint8_t *data;
    size_t len;
    sp_status rc = sp__read_file(sc->file, &data, &len);
    if (rc == SP_OK) {
        sc->arena.data = data;
        sc->arena.len = len;
        sc->arena.cap = len + 1;
        sc_parse(sc);
        if (sc->n == 0 && len > 0) sc->dirty = 1; /* unreadable: rewrite it */
    } else if (rc == SP_ENOMEM) {
        sp__statcache_free(sc);
        return rc;
    } else {
        sp__errmsg_clear(); /* no cache yet (or unreadable): start empty */
    }
    *out = sc;
    return SP_OK;
}

void sp__statcache_free(sp__statcache *sc) {
    if (!sc) return;
    sp__free(sc->root);
    sp__free(sc->file);
    sp__buf_free(&sc->arena);
    sp__free(sc->recs);
    sp__free(sc->table);
    sp__free(sc);
}

sp_status sp__statcache_close(sp__statcache *sc) {
    if (!sc) return SP_OK;
    if (!sc->dirty) {
        sp__statcache_free(sc);
        return SP_OK;
    }
    sp__buf b = {0};
    sp_status rc = sp__buf_reserve(&b, SC_HEADER + sc->n * (SC_FIXED + 32));
    uint64_t kept = 0;
    if (rc == SP_OK) {
        uint8_t hdr[SC_HEADER] = {0};
        rc = sp__buf_append(&b, hdr, sizeof hdr);
    }
    char path[4096];
    for (size_t i = 0; i < sc->n && rc == SP_OK; i++) {
        const sc_rec *r = &sc->recs[i];
        const char *key = (const char *)sc->arena.data + r->path_off;
        if (!r->seen) { /* drop records of files that are gone */
            int pl = key[0] == '/'
                         ? snprintf(path, sizeof path, "%.*s", (int)r->path_len, key)
                         : snprintf(path, sizeof path, "%s/%.*s", sc->root, (int)r->path_len, key);
            struct stat st;
            if (pl < (int)sizeof path && lstat(path, &st) != 0 && errno == ENOENT) continue;
        }
        uint8_t q[SC_FIXED];
        sp__put_u64(q, r->dev);
        sp__put_u64(q + 8, r->ino);
        sp__put_u64(q + 16, r->size);
        sp__put_u64(q + 24, (uint64_t)r->mtime_ns);
        sp__put_u64(q + 32, (uint64_t)r->ctime_ns);
        memcpy(q + 40, r->sha, 32);
        q[72] = (uint8_t)r->path_len;
        q[73] = (uint8_t)(r->path_len >> 8);
        rc = sp__buf_append(&b, q, sizeof q);
        if (rc == SP_OK) rc = sp__buf_append(&b, key, r->path_len);
        kept++;
    }
    if (rc == SP_OK) {
        memcpy(b.data, SC_MAGIC, 8);
        sp__put_u64(b.data + 8, (uint64_t)now_realtime_ns());
        sp__put_u64(b.data + 16, kept);
        sp__put_u64(b.data + 24, sp__xxh3(b.data + SC_HEADER, b.len - SC_HEADER));
        char *dir = sp__path_join(sc->root, ".softpipe");
        if (!dir) rc = sp__fail(SP_ENOMEM, "out of memory");
        if (rc == SP_OK && mkdir(dir, 0755) != 0 && errno != EEXIST)
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot create folder", dir);
        sp__free(dir);
        if (rc == SP_OK) rc = sp__file_commit(sc->file, b.data, b.len);
    }
    sp__buf_free(&b);
    sp__statcache_free(sc);
    return rc;
}

/* The cache's key for an absolute path: project-relative when inside the project. */
static void sc_key(const sp__statcache *sc, const char *abs, const char **key, size_t *len) {
    size_t rl = strlen(sc->root);
    if (strncmp(abs, sc->root, rl) == 0 && abs[rl] == '/' && rl > 1) abs += rl + 1;
    *key = abs;
    *len = strlen(abs);
}

static int sc_trusted(const sp__statcache *sc, const sc_rec *r, const file_id *id) {
    if (r->dev != id->dev || r->ino != id->ino || r->size != id->size ||
        r->mtime_ns != id->mtime_ns || r->ctime_ns != id->ctime_ns)
        return 0;
    if (r->fresh) return 1;
    int64_t t = r->mtime_ns > r->ctime_ns ? r->mtime_ns : r->ctime_ns;
    return t < sc->written_ns - RACY_NS;
}

/* Stores (stat, digest) unless the file is racy: changed within RACY_NS of `hashed_ns`. */
static sp_status sc_store(sp__statcache *sc, const char *key, size_t len, const file_id *id,
                          const uint8_t raw[32], int64_t hashed_ns) {
    int64_t t = id->mtime_ns > id->ctime_ns ? id->mtime_ns : id->ctime_ns;
    sc_rec *r = sc_find(sc, key, len);
    if (t >= hashed_ns - RACY_NS) {
        if (r && r->seen == 0) r->seen = 1; /* keep the old record; it no longer matches */
        return SP_OK;
    }
    if (!r) SP_TRY(sc_add(sc, key, len, &r));
    r->dev = id->dev;
    r->ino = id->ino;
    r->size = id->size;
    r->mtime_ns = id->mtime_ns;
    r->ctime_ns = id->ctime_ns;
    memcpy(r->sha, raw, 32);
    r->fresh = r->seen = 1;
    sc->dirty = 1;
    return SP_OK;
}

/* ---- folders */

typedef struct walk_ent {
    char *rel; /* path relative to the folder */
    char type; /* 'f' or 'l' */
    uint16_t mode;
    uint8_t need_hash;
    _Atomic uint8_t hashed;
    file_id id;
    uint8_t sha[32];
} walk_ent;

typedef struct walk_dir_range {
    char *rel; /* folder path relative to top ("" for top) */
    size_t rel_len;
    size_t first, count; /* its files: entries [first, first + count) */
} walk_dir_range;

typedef struct walk {
    sp__statcache *sc;
    const char *top;     /* the folder as given (for opening and messages) */
    const char *top_key; /* its stat-cache key */
    size_t top_key_len;
    walk_ent *e;
    size_t n, cap;
    sp__buf key;  /* scratch for "<top_key>/<rel>" */
    size_t *todo; /* indices of entries to hash */
    size_t n_todo;
    _Atomic size_t next;
    _Atomic int failed;
    int top_fd;
    walk_dir_range *dirs; /* every folder below top (top itself first) */
    size_t n_dirs, cap_dirs;
    _Atomic size_t next_dir;
    sp_status err_rc; /* the first worker error, with its message */
    char errmsg[SP_ERRMSG_MAX];
} walk;

static sp_status walk_push(walk *w, walk_ent **out) {
    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 1024;
        walk_ent *ne = sp__realloc(w->e, ncap * sizeof *ne);
        if (!ne) return sp__fail(SP_ENOMEM, "%s: out of memory listing the folder", w->top);
        w->e = ne;
        w->cap = ncap;
    }
    *out = &w->e[w->n];
    memset(*out, 0, sizeof **out);
    w->n++;
    return SP_OK;
}

/* Phase 1 (serial): lists the folder tree with readdir, using d_type to find subfolders, so
 * that the files of each folder are contiguous entries [first, first + count). */
static sp_status list_dir(walk *w, int dfd, const char *prefix) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return sp__fail_errno(SP_EIO, e, "%s/%s: cannot read folder", w->top, prefix);
    }
    sp_status rc = SP_OK;
    size_t plen = strlen(prefix);
    if (w->n_dirs == w->cap_dirs) {
        size_t ncap = w->cap_dirs ? w->cap_dirs * 2 : 64;
        walk_dir_range *nd = sp__realloc(w->dirs, ncap * sizeof *nd);
        if (!nd) rc = sp__fail(SP_ENOMEM, "%s: out of memory listing the folder", w->top);
        if (nd) {
            w->dirs = nd;
            w->cap_dirs = ncap;
        }
    }
    size_t me = w->n_dirs;
    if (rc == SP_OK) {
        w->dirs[me] = (walk_dir_range){NULL, plen, w->n, 0};
        w->dirs[me].rel = sp__strdup(prefix);
        w->n_dirs++;
        if (!w->dirs[me].rel) rc = sp__fail(SP_ENOMEM, "%s: out of memory", w->top);
    }
    sp__buf subdirs = {0}; /* NUL-separated names, walked after this folder is listed */
    struct dirent *de;
    while (rc == SP_OK && (errno = 0, de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) { /* filesystems without d_type */
            struct stat st;
            if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                rc = sp__fail_errno(SP_EIO, errno, "%s/%s/%s: cannot stat", w->top, prefix, name);
                break;
            }
            type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
        }
        if (strchr(name, '\n')) {
            rc = sp__fail(SP_EUNSUPPORTED, "%s/%s/%s: file names with a newline are not supported",
                          w->top, prefix, name);
            break;
        }
        if (type == DT_DIR) {
            rc = sp__buf_append(&subdirs, name, strlen(name) + 1);
            continue;
        }
        size_t nl = strlen(name);
        char *rel = sp__malloc(plen + nl + 2);
        walk_ent *e = NULL;
        if (!rel || (rc = walk_push(w, &e)) != SP_OK) {
            sp__free(rel);
            rc = sp__fail(SP_ENOMEM, "%s: out of memory listing the folder", w->top);
            break;
        }
        if (plen) {
            memcpy(rel, prefix, plen);
            rel[plen] = '/';
            memcpy(rel + plen + 1, name, nl + 1);
        } else {
            memcpy(rel, name, nl + 1);
        }
        e->rel = rel;
    }
    if (rc == SP_OK && errno != 0 && !de)
        rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot read folder", w->top, prefix);
    if (rc == SP_OK) w->dirs[me].count = w->n - w->dirs[me].first;
    for (size_t off = 0; rc == SP_OK && off < subdirs.len;) {
        const char *name = (const char *)subdirs.data + off;
        size_t nl = strlen(name);
        off += nl + 1;
        char *rel = plen ? sp__malloc(plen + nl + 2) : sp__strdup(name);
        if (!rel) {
            rc = sp__fail(SP_ENOMEM, "%s: out of memory listing the folder", w->top);
            break;
        }
        if (plen) snprintf(rel, plen + nl + 2, "%s/%s", prefix, name);
        int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot open folder", w->top, rel);
        else
            rc = list_dir(w, sub, rel);
        sp__free(rel);
    }
    sp__buf_free(&subdirs);
    closedir(d);
    return rc;
}

/* Records the first error of a worker thread (code and message) for the caller's thread. */
static void walk_error(walk *w, sp_status rc) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&w->failed, &expected, 1)) {
        w->err_rc = rc;
        snprintf(w->errmsg, sizeof w->errmsg, "%s", sp_errmsg());
    }
}

/* Phase 2 (parallel, one folder at a time): lstat of each file, symlink targets, and the stat
 * cache lookup (read-only here, so threads may share it). */
static sp_status stat_dir(walk *w, const walk_dir_range *dr, sp__buf *key) {
    if (!dr->count) return SP_OK;
    int dfd = dr->rel_len ? openat(w->top_fd, dr->rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                          : dup(w->top_fd);
    if (dfd < 0) return sp__fail_errno(SP_EIO, errno, "%s/%s: cannot open folder", w->top, dr->rel);
    sp_status rc = SP_OK;
    for (size_t i = dr->first; i < dr->first + dr->count && rc == SP_OK; i++) {
        walk_ent *e = &w->e[i];
        const char *name = e->rel + (dr->rel_len ? dr->rel_len + 1 : 0);
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot stat", w->top, e->rel);
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t tl = readlinkat(dfd, name, target, sizeof target);
            if (tl < 0) {
                rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot read symlink", w->top, e->rel);
                break;
            }
            e->type = 'l';
            e->mode = 0777;
            sp__sha256 h;
            rc = sp__sha256_init(&h);
            if (rc != SP_OK) break;
            sp__sha256_update(&h, target, (size_t)tl);
            char hex[65], text[SP__DIGEST_MAX];
            sp__sha256_final(&h, hex);
            memcpy(text, "sha256:", 7);
            memcpy(text + 7, hex, 65);
            digest_raw(text, e->sha);
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            rc = sp__fail(S_ISDIR(st.st_mode) ? SP_EIO : SP_EUNSUPPORTED,
                          S_ISDIR(st.st_mode) ? "%s/%s: changed while being read"
                                              : "%s/%s: not a regular file, symlink or folder "
                                                "(sockets, fifos and devices cannot be digested)",
                          w->top, e->rel);
            break;
        }
        e->type = 'f';
        e->mode = (st.st_mode & S_IXUSR) ? 0755 : 0644;
        e->id = file_id_of(&st);
        if (w->sc) {
            key->len = 0;
            rc = sp__buf_append(key, w->top_key, w->top_key_len);
            if (rc == SP_OK && w->top_key_len) rc = sp__buf_append(key, "/", 1);
            if (rc == SP_OK) rc = sp__buf_append(key, e->rel, strlen(e->rel));
            if (rc != SP_OK) break;
            sc_rec *r = sc_find(w->sc, (const char *)key->data, key->len);
            if (r) r->seen = 1;
            if (r && sc_trusted(w->sc, r, &e->id)) {
                memcpy(e->sha, r->sha, 32);
                continue;
            }
        }
        e->need_hash = 1;
    }
    close(dfd);
    return rc;
}

static void stat_worker(void *ctx, int t, int n_threads) {
    (void)t;
    (void)n_threads;
    walk *w = ctx;
    sp__buf key = {0};
    for (;;) {
        if (atomic_load(&w->failed)) break;
        size_t i = atomic_fetch_add(&w->next_dir, 1);
        if (i >= w->n_dirs) break;
        sp_status rc = stat_dir(w, &w->dirs[i], &key);
        if (rc != SP_OK) {
            walk_error(w, rc);
            break;
        }
    }
    sp__buf_free(&key);
}

static sp_status walk_dir(walk *w, int dfd) {
    w->top_fd = dfd;
    int lfd = dup(dfd);
    if (lfd < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot open folder", w->top);
    SP_TRY(list_dir(w, lfd, ""));
    int nt = sp__ncpu() < 8 ? sp__ncpu() : 8;
    if (w->n < 2000 || w->n_dirs < 2) nt = 1;
    sp__parallel(nt, stat_worker, w);
    if (atomic_load(&w->failed)) return sp__fail(w->err_rc, "%s", w->errmsg);
    return SP_OK;
}

static char *ent_path(const walk *w, const walk_ent *e) {
    return sp__path_join(w->top, e->rel);
}

static void hash_worker(void *ctx, int t, int n_threads) {
    (void)t;
    (void)n_threads;
    walk *w = ctx;
    uint8_t *buf = sp__malloc(WALK_BUF);
    if (!buf) return; /* the caller hashes what is left */
    for (;;) {
        if (atomic_load(&w->failed)) break;
        size_t i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n_todo) break;
        walk_ent *e = &w->e[w->todo[i]];
        char *p = ent_path(w, e);
        char text[SP__DIGEST_MAX];
        if (!p || hash_path(p, buf, WALK_BUF, text) != SP_OK || digest_raw(text, e->sha) != 0) {
            atomic_store(&w->failed, 1);
            sp__free(p);
            break;
        }
        sp__free(p);
        atomic_store(&e->hashed, 1);
    }
    sp__free(buf);
}

static int ent_cmp(const void *a, const void *b) {
    return strcmp((*(const walk_ent *const *)a)->rel, (*(const walk_ent *const *)b)->rel);
}

static sp_status digest_folder(sp__statcache *sc, const char *path, const char *key, size_t key_len,
                               char out[SP__DIGEST_MAX], uint64_t *n_files) {
    walk w = {0};
    w.sc = sc;
    w.top = path;
    w.top_key = key;
    w.top_key_len = key_len;
    int64_t t0 = now_realtime_ns();
    sp_status rc = SP_OK;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        rc = sp__fail_errno(errno == ENOENT ? SP_ENOTFOUND : SP_EIO, errno,
                            "%s: cannot open folder", path);
    else
        rc = walk_dir(&w, dfd);
    if (rc == SP_OK && w.n) {
        w.todo = sp__malloc(w.n * sizeof *w.todo);
        if (!w.todo) rc = sp__fail(SP_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; rc == SP_OK && i < w.n; i++)
            if (w.e[i].need_hash) w.todo[w.n_todo++] = i;
    }
    if (rc == SP_OK && w.n_todo >= 64 && sp__ncpu() > 1) {
        int nt = sp__ncpu() < 8 ? sp__ncpu() : 8;
        sp__parallel(nt, hash_worker, &w);
    }
    /* Whatever the workers did not finish (or failed on) is hashed here, so errors carry
     * their message on the caller's thread. */
    uint8_t *buf = NULL;
    for (size_t k = 0; rc == SP_OK && k < w.n_todo; k++) {
        walk_ent *e = &w.e[w.todo[k]];
        if (atomic_load(&e->hashed)) continue;
        if (!buf && !(buf = sp__malloc(WALK_BUF))) {
            rc = sp__fail(SP_ENOMEM, "%s: out of memory for a read buffer", path);
            break;
        }
        char *p = ent_path(&w, e);
        if (!p) {
            rc = sp__fail(SP_ENOMEM, "%s: out of memory", path);
            break;
        }
        char text[SP__DIGEST_MAX];
        rc = hash_path(p, buf, WALK_BUF, text);
        sp__free(p);
        if (rc == SP_OK) digest_raw(text, e->sha);
    }
    sp__free(buf);
    if (rc == SP_OK && sc) {
        for (size_t k = 0; rc == SP_OK && k < w.n_todo; k++) {
            walk_ent *e = &w.e[w.todo[k]];
            w.key.len = 0;
            rc = sp__buf_append(&w.key, key, key_len);
            if (rc == SP_OK && key_len) rc = sp__buf_append(&w.key, "/", 1);
            if (rc == SP_OK) rc = sp__buf_append(&w.key, e->rel, strlen(e->rel));
            if (rc == SP_OK)
                rc = sc_store(sc, (const char *)w.key.data, w.key.len, &e->id, e->sha, t0);
        }
    }
    if (rc == SP_OK) {
        /* Sort pointers, not the entries: a quarter of the memory traffic. */
        walk_ent **order = sp__malloc((w.n ? w.n : 1) * sizeof *order);
        if (!order) rc = sp__fail(SP_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; order && i < w.n; i++)
            order[i] = &w.e[i];
        if (order && w.n) qsort(order, w.n, sizeof *order, ent_cmp);
        sp__sha256 h;
        if (rc == SP_OK) rc = sp__sha256_init(&h);
        if (rc == SP_OK) {
            sp__buf text = {0}; /* lines batched into ~64 KiB updates */
            char line[SP__DIGEST_MAX + 16];
            for (size_t i = 0; i < w.n && rc == SP_OK; i++) {
                const walk_ent *e = order[i];
                /* "<type> <mode> sha256:<hex> " formatted by hand (snprintf is slow here). */
                line[0] = e->type;
                memcpy(line + 1,
                       e->mode == 0755   ? " 755 "
                       : e->mode == 0644 ? " 644 "
                                         : " 777 ",
                       5);
                digest_text(e->sha, line + 6);
                line[6 + 71] = ' ';
                rc = sp__buf_append(&text, line, 6 + 72);
                if (rc == SP_OK) rc = sp__buf_append(&text, e->rel, strlen(e->rel));
                if (rc == SP_OK) rc = sp__buf_append(&text, "\n", 1);
                if (rc == SP_OK && (text.len >= (64u << 10) || i + 1 == w.n)) {
                    sp__sha256_update(&h, text.data, text.len);
                    text.len = 0;
                }
            }
            sp__buf_free(&text);
            if (rc != SP_OK) {
                sp__sha256_free(&h);
                sp__free(order);
                goto done;
            }
            char hex[65];
            sp__sha256_final(&h, hex);
            snprintf(out, SP__DIGEST_MAX, "tree-sha256:%s", hex);
            if (n_files) *n_files = w.n;
        }
        sp__free(order);
    }
done:
    if (dfd >= 0) close(dfd);
    for (size_t i = 0; i < w.n_dirs; i++)
        sp__free(w.dirs[i].rel);
    sp__free(w.dirs);
    for (size_t i = 0; i < w.n; i++)
        sp__free(w.e[i].rel);
    sp__free(w.e);
    sp__free(w.todo);
    sp__buf_free(&w.key);
    return rc;
}

sp_status sp__digest_path(sp__statcache *sc, const char *path, char out[SP__DIGEST_MAX],
                          uint64_t *n_files) {
    if (n_files) *n_files = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return sp__fail_errno(errno == ENOENT || errno == ENOTDIR ? SP_ENOTFOUND : SP_EIO, errno,
                              "%s: cannot stat", path);
    char *abs = NULL;
    const char *key = "";
    size_t key_len = 0;
    if (sc) {
        abs = abs_path(path);
        if (!abs) return sp__fail(SP_ENOMEM, "%s: out of memory", path);
        sc_key(sc, abs, &key, &key_len);
    }
    sp_status rc;
    if (S_ISDIR(st.st_mode)) {
        rc = digest_folder(sc, path, key, key_len, out, n_files);
    } else if (S_ISREG(st.st_mode)) {
        sc_rec *r = sc ? sc_find(sc, key, key_len) : NULL;
        if (r) r->seen = 1;
        file_id id = file_id_of(&st);
        if (r && sc_trusted(sc, r, &id)) {
            digest_text(r->sha, out);
            rc = SP_OK;
        } else {
            int64_t t0 = now_realtime_ns();
            rc = sp__digest_file(path, out);
            uint8_t raw[32];
            if (rc == SP_OK && sc && digest_raw(out, raw) == 0)
                rc = sc_store(sc, key, key_len, &id, raw, t0);
        }
        if (rc == SP_OK && n_files) *n_files = 1;
    } else {
        rc = sp__fail(SP_EUNSUPPORTED, "%s: not a regular file or folder", path);
    }
    sp__free(abs);
    return rc;
}
