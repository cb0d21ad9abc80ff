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
    size_t *folders; /* indices of folder records (keys starting with '\0') */
    size_t n_folders, cap_folders;
    sp__buf hit_keys; /* NUL-separated keys of folders whose fast path hit: their files' records
                         were not looked up, and are kept when the cache is rewritten */
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

/* The table is built lazily (a status whose folders all hit their fast path never needs it):
 * sc_prepare before any sc_find, serially, since workers share the table read-only. */
static sp_status sc_prepare(sp__statcache *sc) {
    if (sc->n && !sc->table_cap) return sc_table_rebuild(sc, sc->n);
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
    if (len && key[0] == '\0' && sc->n_folders == sc->cap_folders) {
        size_t ncap = sc->cap_folders ? sc->cap_folders * 2 : 16;
        size_t *nf = sp__realloc(sc->folders, ncap * sizeof *nf);
        if (!nf) return sp__fail(SP_ENOMEM, "out of memory growing the stat cache");
        sc->folders = nf;
        sc->cap_folders = ncap;
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
    if (len && key[0] == '\0') sc->folders[sc->n_folders++] = sc->n;
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
        if (r->path_len && p[r->path_off] == '\0') {
            if (sc->n_folders == sc->cap_folders) {
                size_t ncap = sc->cap_folders ? sc->cap_folders * 2 : 16;
                size_t *nf = sp__realloc(sc->folders, ncap * sizeof *nf);
                if (!nf) goto bad;
                sc->folders = nf;
                sc->cap_folders = ncap;
            }
            sc->folders[sc->n_folders++] = (size_t)i;
        }
    }
    if (off != len) goto bad;
    sc->n = (size_t)n;
    sc->written_ns = (int64_t)sp__get_u64(p + 8);
    return;
bad:
    sp__free(sc->recs);
    sc->recs = NULL;
    sc->n = sc->cap = 0;
    sc->n_folders = 0;
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
    sp__free(sc->folders);
    sp__buf_free(&sc->hit_keys);
    sp__free(sc);
}

/* Whether `key` (a file record's) lies below a folder whose fast path hit in this session. */
static int sc_under_hit(const sp__statcache *sc, const char *key, size_t len) {
    for (size_t off = 0; off < sc->hit_keys.len;) {
        const char *h = (const char *)sc->hit_keys.data + off;
        size_t hl = strlen(h);
        off += hl + 1;
        if (hl == 0 && key[0] != '/') return 1; /* the project root itself */
        if (len > hl && memcmp(key, h, hl) == 0 && key[hl] == '/') return 1;
    }
    return 0;
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
        if (!r->seen && key[0] != '\0' && sc_under_hit(sc, key, r->path_len)) {
            /* a file of a folder whose fast path hit: its record was not looked up */
        } else if (!r->seen) { /* drop records of files (and folders) that are gone */
            const char *pk = key[0] == '\0' ? key + 1 : key;
            int pkl = key[0] == '\0' ? (int)r->path_len - 1 : (int)r->path_len;
            int pl = pk[0] == '/' ? snprintf(path, sizeof path, "%.*s", pkl, pk)
                                  : snprintf(path, sizeof path, "%s/%.*s", sc->root, pkl, pk);
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
    SP_TRY(sc_prepare(sc));
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

/* ---- folders
 *
 * A folder digest runs in phases:
 *   1. list (serial): readdir of every folder below the top, d_type telling subfolders apart;
 *      relative names go into one arena (w->names), the files of each folder contiguous.
 *   2. stat (parallel, a folder at a time): one fstatat per entry; each folder's entries are
 *      folded into an XXH3 fingerprint of (name, dev, ino, size, mtime_ns, ctime_ns, st_mode).
 *   3. the fast path: the fingerprint of the whole tree (XXH3 over its folders' fingerprints in
 *      listing order) is compared with the folder's record in the stat cache; a match returns
 *      the stored digest without any per-file lookup, sort or manifest hash.
 *   4. otherwise (parallel): symlink targets and per-file stat cache lookups; then the files
 *      not in the cache are hashed, the sorted manifest is hashed, and the folder record is
 *      stored for next time.
 * A folder record reuses the file record's layout under the key "\0" + the folder's key (no
 * path contains a NUL): dev = fingerprint, ino = files, size = folders, mtime_ns = the newest
 * mtime or ctime of any entry, ctime_ns = when the walk began, sha = the tree digest. It obeys
 * the same racy guard as files: stored only if every entry is older than the walk's start minus
 * RACY_NS, and trusted only if that newest time is older than the cache's written_ns minus
 * RACY_NS. Any change of a file (content changes always move ctime, even when mtime is put
 * back), a rename, an added or removed file changes the fingerprint. */

typedef struct walk_ent {
    const char *rel; /* path relative to the folder: into w->names, set once listing is done */
    size_t rel_off;
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
    uint64_t fp;         /* phase 2: fingerprint of its entries */
    int64_t max_t;       /* phase 2: newest mtime or ctime among them */
} walk_dir_range;

typedef struct walk {
    sp__statcache *sc;
    const char *top;     /* the folder as given (for opening and messages) */
    const char *top_key; /* its stat-cache key */
    size_t top_key_len;
    walk_ent *e;
    size_t n, cap;
    sp__buf names; /* NUL-terminated relative paths of the entries */
    sp__buf key;   /* scratch for "<top_key>/<rel>" */
    size_t *todo;  /* indices of entries to hash */
    size_t n_todo;
    _Atomic size_t next;
    _Atomic int failed;
    int top_fd;
    int phase;            /* 2: stat, 4: lookup */
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
        w->dirs[me] = (walk_dir_range){NULL, plen, w->n, 0, 0, 0};
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
        walk_ent *e = NULL;
        /* One arena for all names: no allocation per file. */
        if ((rc = sp__buf_reserve(&w->names, plen + nl + 2)) != SP_OK ||
            (rc = walk_push(w, &e)) != SP_OK)
            break;
        char *rel = (char *)w->names.data + w->names.len;
        if (plen) {
            memcpy(rel, prefix, plen);
            rel[plen] = '/';
            memcpy(rel + plen + 1, name, nl + 1);
        } else {
            memcpy(rel, name, nl + 1);
        }
        e->rel_off = w->names.len;
        w->names.len += (plen ? plen + 1 : 0) + nl + 1;
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

static int open_dir_of(const walk *w, const walk_dir_range *dr) {
    return dr->rel_len ? openat(w->top_fd, dr->rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                       : dup(w->top_fd);
}

/* Phase 2 (parallel, one folder at a time): lstat of each entry, and the folder's fingerprint
 * (only when there is a stat cache to compare it with). Touches only this folder's entries. */
static sp_status stat_dir(walk *w, walk_dir_range *dr, sp__buf *fp) {
    dr->fp = 0;
    dr->max_t = INT64_MIN;
    if (!dr->count) return SP_OK;
    int dfd = open_dir_of(w, dr);
    if (dfd < 0) return sp__fail_errno(SP_EIO, errno, "%s/%s: cannot open folder", w->top, dr->rel);
    sp_status rc = SP_OK;
    fp->len = 0;
    size_t skip = dr->rel_len ? dr->rel_len + 1 : 0;
    for (size_t i = dr->first; i < dr->first + dr->count && rc == SP_OK; i++) {
        walk_ent *e = &w->e[i];
        const char *name = e->rel + skip;
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot stat", w->top, e->rel);
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            e->type = 'l';
            e->mode = 0777;
        } else if (S_ISREG(st.st_mode)) {
            e->type = 'f';
            e->mode = (st.st_mode & S_IXUSR) ? 0755 : 0644;
        } else {
            rc = sp__fail(S_ISDIR(st.st_mode) ? SP_EIO : SP_EUNSUPPORTED,
                          S_ISDIR(st.st_mode) ? "%s/%s: changed while being read"
                                              : "%s/%s: not a regular file, symlink or folder "
                                                "(sockets, fifos and devices cannot be digested)",
                          w->top, e->rel);
            break;
        }
        e->id = file_id_of(&st);
        int64_t t = e->id.mtime_ns > e->id.ctime_ns ? e->id.mtime_ns : e->id.ctime_ns;
        if (t > dr->max_t) dr->max_t = t;
        if (!w->sc) continue;
        /* name NUL dev ino size mtime ctime st_mode (a symlink's target cannot change without
         * a new inode, so its stat covers the target too) */
        size_t nl = strlen(name) + 1;
        rc = sp__buf_reserve(fp, nl + 48);
        if (rc != SP_OK) break;
        uint8_t *q = fp->data + fp->len;
        memcpy(q, name, nl);
        sp__put_u64(q + nl, e->id.dev);
        sp__put_u64(q + nl + 8, e->id.ino);
        sp__put_u64(q + nl + 16, e->id.size);
        sp__put_u64(q + nl + 24, (uint64_t)e->id.mtime_ns);
        sp__put_u64(q + nl + 32, (uint64_t)e->id.ctime_ns);
        sp__put_u64(q + nl + 40, (uint64_t)st.st_mode);
        fp->len += nl + 48;
    }
    if (rc == SP_OK && w->sc) dr->fp = sp__xxh3(fp->data, fp->len);
    close(dfd);
    return rc;
}

/* Phase 4 (parallel, one folder at a time): symlink targets and the stat cache lookups
 * (read-only here, so threads may share it). */
static sp_status lookup_dir(walk *w, const walk_dir_range *dr, sp__buf *key) {
    if (!dr->count) return SP_OK;
    int dfd = -1; /* opened for symlinks only */
    sp_status rc = SP_OK;
    size_t skip = dr->rel_len ? dr->rel_len + 1 : 0;
    key->len = 0;
    if (w->sc) {
        rc = sp__buf_append(key, w->top_key, w->top_key_len);
        if (rc == SP_OK && w->top_key_len) rc = sp__buf_append(key, "/", 1);
    }
    size_t base = key->len;
    for (size_t i = dr->first; i < dr->first + dr->count && rc == SP_OK; i++) {
        walk_ent *e = &w->e[i];
        if (e->type == 'l') {
            if (dfd < 0 && (dfd = open_dir_of(w, dr)) < 0) {
                rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot open folder", w->top, dr->rel);
                break;
            }
            char target[4096];
            ssize_t tl = readlinkat(dfd, e->rel + skip, target, sizeof target);
            if (tl < 0) {
                rc = sp__fail_errno(SP_EIO, errno, "%s/%s: cannot read symlink", w->top, e->rel);
                break;
            }
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
        if (w->sc) {
            key->len = base;
            rc = sp__buf_append(key, e->rel, strlen(e->rel));
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
    if (dfd >= 0) close(dfd);
    return rc;
}

static void dir_worker(void *ctx, int t, int n_threads) {
    (void)t;
    (void)n_threads;
    walk *w = ctx;
    sp__buf scratch = {0};
    for (;;) {
        if (atomic_load(&w->failed)) break;
        size_t i = atomic_fetch_add(&w->next_dir, 1);
        if (i >= w->n_dirs) break;
        sp_status rc = w->phase == 2 ? stat_dir(w, &w->dirs[i], &scratch)
                                     : lookup_dir(w, &w->dirs[i], &scratch);
        if (rc != SP_OK) {
            walk_error(w, rc);
            break;
        }
    }
    sp__buf_free(&scratch);
}

static sp_status walk_phase(walk *w, int phase) {
    int nt = sp__ncpu() < 8 ? sp__ncpu() : 8;
    if (w->n < 2000 || w->n_dirs < 2) nt = 1;
    w->phase = phase;
    atomic_store(&w->next_dir, 0);
    sp__parallel(nt, dir_worker, w);
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

/* The folder record of `key` (its key is "\0" + key), or NULL. Few: a linear scan. */
static sc_rec *sc_find_folder(sp__statcache *sc, const char *key, size_t len) {
    for (size_t i = 0; i < sc->n_folders; i++) {
        sc_rec *r = &sc->recs[sc->folders[i]];
        const char *k = (const char *)sc->arena.data + r->path_off;
        if (r->path_len == len + 1 && memcmp(k + 1, key, len) == 0) return r;
    }
    return NULL;
}

static sp_status note_hit(sp__statcache *sc, const char *key, size_t len) {
    for (size_t off = 0; off < sc->hit_keys.len;) {
        const char *h = (const char *)sc->hit_keys.data + off;
        size_t hl = strlen(h);
        if (hl == len && memcmp(h, key, len) == 0) return SP_OK;
        off += hl + 1;
    }
    SP_TRY(sp__buf_append(&sc->hit_keys, key, len));
    return sp__buf_append(&sc->hit_keys, "", 1);
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
    uint64_t fp = 0;
    int64_t max_t = INT64_MIN;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        rc = sp__fail_errno(errno == ENOENT ? SP_ENOTFOUND : SP_EIO, errno,
                            "%s: cannot open folder", path);
    } else {
        w.top_fd = dfd;
        int lfd = dup(dfd);
        if (lfd < 0)
            rc = sp__fail_errno(SP_EIO, errno, "%s: cannot open folder", path);
        else
            rc = list_dir(&w, lfd, "");
    }
    for (size_t i = 0; rc == SP_OK && i < w.n; i++)
        w.e[i].rel = (const char *)w.names.data + w.e[i].rel_off;
    if (rc == SP_OK) rc = walk_phase(&w, 2);
    /* 3. The fast path. */
    if (rc == SP_OK && sc) {
        w.key.len = 0;
        for (size_t i = 0; rc == SP_OK && i < w.n_dirs; i++) {
            const walk_dir_range *dr = &w.dirs[i];
            uint8_t q[16];
            sp__put_u64(q, dr->fp);
            sp__put_u64(q + 8, dr->count);
            rc = sp__buf_append(&w.key, dr->rel, dr->rel_len + 1);
            if (rc == SP_OK) rc = sp__buf_append(&w.key, q, sizeof q);
            if (dr->max_t > max_t) max_t = dr->max_t;
        }
        if (rc == SP_OK) fp = sp__xxh3(w.key.data, w.key.len);
        sc_rec *r = rc == SP_OK ? sc_find_folder(sc, key, key_len) : NULL;
        if (r && r->dev == fp && r->ino == w.n && r->size == w.n_dirs && r->mtime_ns == max_t &&
            (r->fresh || max_t < sc->written_ns - RACY_NS)) {
            rc = note_hit(sc, key, key_len);
            if (rc == SP_OK) {
                r->seen = 1;
                char hex[65];
                for (int i = 0; i < 32; i++) {
                    hex[2 * i] = hexdig[r->sha[i] >> 4];
                    hex[2 * i + 1] = hexdig[r->sha[i] & 15];
                }
                hex[64] = '\0';
                snprintf(out, SP__DIGEST_MAX, "tree-sha256:%s", hex);
                if (n_files) *n_files = w.n;
            }
            goto done;
        }
        if (rc == SP_OK) rc = sc_prepare(sc);
    }
    if (rc == SP_OK) rc = walk_phase(&w, 4);
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
    uint8_t tree[32];
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
            for (int i = 0; i < 32; i++)
                tree[i] = (uint8_t)(unhex_digit(hex[2 * i]) << 4 | unhex_digit(hex[2 * i + 1]));
            if (n_files) *n_files = w.n;
        }
        sp__free(order);
    }
    /* The folder record, under the same racy guard as a file's. */
    if (rc == SP_OK && sc) {
        w.key.len = 0;
        rc = sp__buf_append(&w.key, "", 1);
        if (rc == SP_OK) rc = sp__buf_append(&w.key, key, key_len);
        sc_rec *r = rc == SP_OK ? sc_find_folder(sc, key, key_len) : NULL;
        if (rc == SP_OK && max_t < t0 - RACY_NS) {
            if (!r) rc = sc_add(sc, (const char *)w.key.data, w.key.len, &r);
            if (rc == SP_OK) {
                r->dev = fp;
                r->ino = w.n;
                r->size = w.n_dirs;
                r->mtime_ns = max_t;
                r->ctime_ns = t0;
                memcpy(r->sha, tree, 32);
                r->fresh = r->seen = 1;
                sc->dirty = 1;
            }
        } else if (r) {
            r->seen = 1;
        }
    }
done:
    if (dfd >= 0) close(dfd);
    for (size_t i = 0; i < w.n_dirs; i++)
        sp__free(w.dirs[i].rel);
    sp__free(w.dirs);
    sp__buf_free(&w.names);
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
        rc = sc ? sc_prepare(sc) : SP_OK;
        if (rc != SP_OK) {
            sp__free(abs);
            return rc;
        }
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
