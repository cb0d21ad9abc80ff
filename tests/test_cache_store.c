/* test_cache_store.c — unit tests of the pipeline cache's digests (files, folders, the stat
 * cache and its racy-timestamp guard) and of the store (save, record, lookup, restore by hard
 * link and by copy, corruption detection, verified-blob records, gc), plus clean failure when any
 * allocation fails. */
#include "cache/cache_internal.h"
#include "core_internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void put(const char *dir, const char *rel, const char *text) {
    char *p = join(dir, rel);
    assert_int_equal(tu_write_file(p, text, strlen(text)), 0);
    free(p);
}

static char *slurp(const char *dir, const char *rel) {
    char *p = join(dir, rel);
    uint8_t *data = NULL;
    size_t len;
    sp_status rc = sp__read_file(p, &data, &len);
    free(p);
    if (rc != SP_OK) return NULL;
    char *s = strdup((const char *)data);
    sp__free(data);
    return s;
}

static void sha_text(const void *p, size_t n, const char *prefix, char out[SP__DIGEST_MAX]) {
    sp__sha256 h;
    assert_int_equal(sp__sha256_init(&h), SP_OK);
    sp__sha256_update(&h, p, n);
    char hex[65];
    sp__sha256_final(&h, hex);
    snprintf(out, SP__DIGEST_MAX, "%s%s", prefix, hex);
}

/* Sets a file's mtime to `ago` seconds in the past. */
static void age(const char *dir, const char *rel, int ago) {
    char *p = join(dir, rel);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= ago;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    free(p);
}

static int count_leftovers(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.sp-tmp-*' -o -name '*.sp-old-*' | grep -q .",
             dir);
    return system(cmd) == 0;
}

static void test_digest_file_matches_sha256(void **state) {
    (void)state;
    char *dir = tu_tmpdir("cs-file");
    size_t n = (3u << 20) + 17;
    uint8_t *data = malloc(n);
    tu_fill_random(data, n, 7);
    char *p = join(dir, "big.bin");
    assert_int_equal(tu_write_file(p, data, n), 0);
    char want[SP__DIGEST_MAX], got[SP__DIGEST_MAX];
    sha_text(data, n, "sha256:", want);
    assert_int_equal(sp__digest_file(p, got), SP_OK);
    assert_string_equal(got, want);
    uint64_t nf = 0;
    assert_int_equal(sp__digest_path(NULL, p, got, &nf), SP_OK);
    assert_string_equal(got, want);
    assert_int_equal(nf, 1);
    /* The empty file. */
    put(dir, "empty", "");
    char *e = join(dir, "empty");
    assert_int_equal(sp__digest_file(e, got), SP_OK);
    assert_string_equal(got,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* Missing paths are SP_ENOTFOUND naming the path. */
    char *missing = join(dir, "nope");
    assert_int_equal(sp__digest_path(NULL, missing, got, NULL), SP_ENOTFOUND);
    assert_non_null(strstr(sp_errmsg(), missing));
    assert_int_equal(sp__digest_file(missing, got), SP_ENOTFOUND);
    free(missing);
    free(e);
    free(p);
    free(data);
    tu_rmrf(dir);
    free(dir);
}

static void digest_of(const char *dir, const char *rel, char out[SP__DIGEST_MAX]) {
    char *p = join(dir, rel);
    assert_int_equal(sp__digest_path(NULL, p, out, NULL), SP_OK);
    free(p);
}

static void test_digest_folder_stable(void **state) {
    (void)state;
    char *dir = tu_tmpdir("cs-folder");
    /* The same tree created in two orders. */
    put(dir, "a/x.txt", "one");
    put(dir, "a/sub/y.txt", "two");
    put(dir, "a/z", "three");
    put(dir, "b/z", "three");
    put(dir, "b/sub/y.txt", "two");
    put(dir, "b/x.txt", "one");
    char da[SP__DIGEST_MAX], db[SP__DIGEST_MAX], dc[SP__DIGEST_MAX];
    digest_of(dir, "a", da);
    digest_of(dir, "b", db);
    assert_string_equal(da, db);
    assert_memory_equal(da, "tree-sha256:", 12);
    assert_int_equal(strlen(da), 12 + 64);
    uint64_t nf = 0;
    char *pa = join(dir, "a");
    assert_int_equal(sp__digest_path(NULL, pa, dc, &nf), SP_OK);
    assert_int_equal(nf, 3);
    free(pa);
    /* Content, mode and name changes all change it. */
    put(dir, "b/x.txt", "One");
    digest_of(dir, "b", db);
    assert_string_not_equal(da, db);
    put(dir, "b/x.txt", "one");
    digest_of(dir, "b", db);
    assert_string_equal(da, db);
    char *xb = join(dir, "b/x.txt");
    chmod(xb, 0755);
    digest_of(dir, "b", db);
    assert_string_not_equal(da, db);
    chmod(xb, 0644);
    char *xr = join(dir, "b/x2.txt");
    rename(xb, xr);
    digest_of(dir, "b", db);
    assert_string_not_equal(da, db);
    rename(xr, xb);
    digest_of(dir, "b", db);
    assert_string_equal(da, db);
    /* A symlink is its target text. */
    char *lk = join(dir, "b/link");
    assert_int_equal(symlink("x.txt", lk), 0);
    digest_of(dir, "b", db);
    assert_string_not_equal(da, db);
    unlink(lk);
    free(lk);
    free(xb);
    free(xr);
    /* The exact encoding: one line per file. */
    put(dir, "c/hi", "hi");
    char fd_[SP__DIGEST_MAX], line[256], want[SP__DIGEST_MAX];
    sha_text("hi", 2, "sha256:", fd_);
    int ll = snprintf(line, sizeof line, "f 644 %s hi\n", fd_);
    sha_text(line, (size_t)ll, "tree-sha256:", want);
    digest_of(dir, "c", dc);
    assert_string_equal(dc, want);
    /* An empty folder hashes the empty text. */
    char *empty = join(dir, "empty");
    mkdir(empty, 0755);
    digest_of(dir, "empty", dc);
    assert_string_equal(
        dc, "tree-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(empty);
    tu_rmrf(dir);
    free(dir);
}

/* Rewrites every record of the stat cache file with a fake digest (0x11...) and a correct
 * checksum, so a later digest that returns the fake one proves the cache was trusted. */
static uint64_t tamper_statcache(const char *root) {
    char *p = join(root, ".softpipe/statcache");
    uint8_t *data;
    size_t len;
    assert_int_equal(sp__read_file(p, &data, &len), SP_OK);
    assert_true(len >= 32);
    assert_memory_equal(data, "SPSTAT01", 8);
    uint64_t n = sp__get_u64(data + 16);
    size_t off = 32;
    for (uint64_t i = 0; i < n; i++) {
        memset(data + off + 40, 0x11, 32);
        off += 74 + (size_t)(data[off + 72] | data[off + 73] << 8);
    }
    assert_int_equal(off, len);
    sp__put_u64(data + 24, sp__xxh3(data + 32, len - 32));
    assert_int_equal(tu_write_file(p, data, len), 0);
    sp__free(data);
    free(p);
    return n;
}

static const char *fake = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

static void test_statcache_trust_and_racy(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-stat");
    put(root, "data/a.txt", "AAAA");
    put(root, "data/b.txt", "BBBB");
    put(root, "f.txt", "FFFF");
    age(root, "data/a.txt", 3600);
    age(root, "data/b.txt", 3600);
    age(root, "f.txt", 3600);
    sleep(2); /* let the ctimes (set just now by utimensat) fall out of the racy window */
    char *data = join(root, "data"), *f = join(root, "f.txt");
    char d1[SP__DIGEST_MAX], d2[SP__DIGEST_MAX], fd1[SP__DIGEST_MAX], fd2[SP__DIGEST_MAX];
    sp__statcache *sc;
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, data, d1, NULL), SP_OK);
    assert_int_equal(sp__digest_path(sc, f, fd1, NULL), SP_OK);
    assert_int_equal(sp__statcache_close(sc), SP_OK);
    assert_int_equal(tamper_statcache(root), 4); /* 3 files and the folder "data" */
    /* Unchanged stat: the (fake) cached digests are trusted without reading the files. */
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, f, fd2, NULL), SP_OK);
    assert_string_equal(fd2, fake);
    assert_int_equal(sp__digest_path(sc, data, d2, NULL), SP_OK);
    assert_string_not_equal(d2, d1); /* the folder record's (fake) digest */
    /* A changed file (new size, mtime, ctime) is read again. */
    put(root, "f.txt", "FFFFF");
    assert_int_equal(sp__digest_path(sc, f, fd2, NULL), SP_OK);
    assert_string_not_equal(fd2, fake);
    char want[SP__DIGEST_MAX];
    sha_text("FFFFF", 5, "sha256:", want);
    assert_string_equal(fd2, want);
    sp__statcache_free(sc);
    /* The racy guard: a file modified in the same second it is hashed is not cached, so a
     * same-size rewrite right after is seen. */
    put(root, "r.txt", "1111");
    char *r = join(root, "r.txt");
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, r, d1, NULL), SP_OK);
    assert_int_equal(sp__statcache_close(sc), SP_OK);
    put(root, "r.txt", "2222");
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, r, d2, NULL), SP_OK);
    sha_text("2222", 4, "sha256:", want);
    assert_string_equal(d2, want);
    assert_int_equal(sp__statcache_close(sc), SP_OK);
    /* A garbled cache file is ignored. */
    put(root, ".softpipe/statcache", "garbage");
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, r, d2, NULL), SP_OK);
    assert_string_equal(d2, want);
    assert_int_equal(sp__statcache_close(sc), SP_OK);
    free(r);
    free(data);
    free(f);
    tu_rmrf(root);
    free(root);
}

/* The number of records in the stat cache file. */
static uint64_t statcache_records(const char *root) {
    char *p = join(root, ".softpipe/statcache");
    uint8_t *data;
    size_t len;
    assert_int_equal(sp__read_file(p, &data, &len), SP_OK);
    assert_true(len >= 32);
    uint64_t n = sp__get_u64(data + 16);
    sp__free(data);
    free(p);
    return n;
}

/* The folder fast path: an unchanged tree is answered from its folder record alone; any change
 * inside it, even one that keeps the size and puts the mtime back, falls back to the files. */
static void test_statcache_folder_fast_path(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-fast");
    put(root, "data/a.txt", "AAAA");
    put(root, "data/sub/b.txt", "BBBB");
    put(root, "data/sub/c.txt", "CCCC");
    age(root, "data/a.txt", 3600);
    age(root, "data/sub/b.txt", 3600);
    age(root, "data/sub/c.txt", 3600);
    sleep(2); /* let the ctimes fall out of the racy window */
    char *data = join(root, "data");
    char d1[SP__DIGEST_MAX], d2[SP__DIGEST_MAX], want[SP__DIGEST_MAX];
    uint64_t nf = 0;
    sp__statcache *sc;
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, data, d1, &nf), SP_OK);
    assert_int_equal(nf, 3);
    assert_int_equal(sp__statcache_close(sc), SP_OK);
    assert_int_equal(statcache_records(root), 4);
    /* With every record faked, a hit returns the folder record's digest as is. */
    assert_int_equal(tamper_statcache(root), 4);
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    nf = 0;
    assert_int_equal(sp__digest_path(sc, data, d2, &nf), SP_OK);
    assert_string_equal(d2, "tree-sha256:"
                            "1111111111111111111111111111111111111111111111111111111111111111");
    assert_int_equal(nf, 3);
    /* The files' records were not looked up, yet survive a rewrite of the cache (the
     * fake a.txt and c.txt digests below come from them). */
    put(root, "g.txt", "GGGG");
    age(root, "g.txt", 3600);
    char *g = join(root, "g.txt");
    /* g.txt's ctime is now (racy, not stored): a new folder makes the cache dirty instead. */
    put(root, "other/o.txt", "OOOO");
    char *other = join(root, "other");
    assert_int_equal(sp__digest_path(sc, other, d2, NULL), SP_OK);
    assert_int_equal(sp__digest_path(sc, g, d2, NULL), SP_OK);
    assert_int_equal(sp__statcache_close(sc), SP_OK);
    assert_true(statcache_records(root) >= 4);
    /* Same size, mtime put back (touch -d): only the ctime moved. Seen, and rehashed. */
    char *b = join(root, "data/sub/b.txt");
    struct stat before;
    assert_int_equal(stat(b, &before), 0);
    sleep(1); /* a new ctime second */
    put(root, "data/sub/b.txt", "bbbb");
    struct timespec ts[2] = {before.st_atim, before.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, b, ts, 0), 0);
    assert_int_equal(sp__statcache_open(root, &sc), SP_OK);
    assert_int_equal(sp__digest_path(sc, data, d2, NULL), SP_OK);
    assert_string_not_equal(d2, "tree-sha256:"
                                "1111111111111111111111111111111111111111111111111111111111111111");
    /* a.txt and c.txt still come from their (fake) file records; b.txt was read again. */
    assert_string_not_equal(d2, d1);
    char line[512], fa[SP__DIGEST_MAX], fb[SP__DIGEST_MAX];
    sha_text("bbbb", 4, "sha256:", fb);
    memcpy(fa, fake, strlen(fake) + 1);
    int ll = snprintf(line, sizeof line, "f 644 %s a.txt\nf 644 %s sub/b.txt\nf 644 %s sub/c.txt\n",
                      fa, fb, fake);
    sha_text(line, (size_t)ll, "tree-sha256:", want);
    assert_string_equal(d2, want);
    sp__statcache_free(sc);
    /* Without a cache the digest is the true one, and differs from the first. */
    assert_int_equal(sp__digest_path(NULL, data, d2, NULL), SP_OK);
    assert_string_not_equal(d2, d1);
    free(b);
    free(g);
    free(other);
    free(data);
    tu_rmrf(root);
    free(root);
}

static const char *key1 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char *key2 = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

static void make_outputs(const char *root, const char *tag) {
    char text[64];
    snprintf(text, sizeof text, "model %s", tag);
    put(root, "model.bin", text);
    put(root, "out/a/b.txt", "bee");
    put(root, "out/c.sh", "#!/bin/sh\necho hi\n");
    put(root, "out/d.txt", "bee"); /* same content as a/b.txt: one blob */
    char *sh = join(root, "out/c.sh");
    chmod(sh, 0755);
    free(sh);
}

static void roundtrip(const char *method) {
    if (method)
        setenv("SP_CACHE_RESTORE_METHOD", method, 1);
    else
        unsetenv("SP_CACHE_RESTORE_METHOD");
    char *root = tu_tmpdir("cs-rt");
    make_outputs(root, "v1");
    char *outs[] = {"model.bin", "out"};
    char *out_dir = join(root, "out"), *model = join(root, "model.bin");
    char before[SP__DIGEST_MAX], after[SP__DIGEST_MAX];
    assert_int_equal(sp__digest_path(NULL, out_dir, before, NULL), SP_OK);
    sp__store *st;
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    sp__manifest m;
    assert_int_equal(sp__store_save_outputs(st, outs, 2, &m), SP_OK);
    assert_int_equal(m.n, 4);
    assert_string_equal(m.e[0].path, "model.bin");
    assert_string_equal(m.e[1].path, "out/a/b.txt");
    assert_string_equal(m.e[2].path, "out/c.sh");
    assert_int_equal(m.e[2].mode, 0755);
    assert_int_equal(m.e[1].mode, 0644);
    assert_int_equal(m.e[0].size, 8);
    assert_string_equal(m.e[1].digest, m.e[3].digest);
    assert_int_equal(sp__store_record(st, key1, &m), SP_OK);
    sp__manifest_free(&m);
    sp__store_close(st);

    /* The user changes the outputs. */
    put(root, "out/a/b.txt", "changed");
    put(root, "out/extra", "extra");
    char *mb = join(root, "model.bin");
    unlink(mb);
    free(mb);

    assert_int_equal(sp__store_open(root, &st), SP_OK);
    assert_int_equal(sp__store_lookup(st, key2, &m), SP_ENOTFOUND);
    assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
    assert_int_equal(m.n, 4);
    const char *how = NULL;
    assert_int_equal(sp__store_restore(st, outs, 2, &m, &how), SP_OK);
    assert_non_null(how);
    if (method && !strcmp(method, "copy")) assert_string_equal(how, "copy");
    if (method && !strcmp(method, "hardlink")) assert_string_equal(how, "hardlink");
    char *t = slurp(root, "model.bin");
    assert_string_equal(t, "model v1");
    free(t);
    t = slurp(root, "out/a/b.txt");
    assert_string_equal(t, "bee");
    free(t);
    assert_null(slurp(root, "out/extra"));
    assert_int_equal(sp__digest_path(NULL, out_dir, after, NULL), SP_OK);
    assert_string_equal(before, after);
    struct stat s;
    assert_int_equal(stat(model, &s), 0);
    if (!strcmp(how, "hardlink")) {
        assert_true(s.st_nlink >= 2);
        assert_int_equal(s.st_mode & 0777, 0444);
    } else {
        assert_int_equal(s.st_nlink, 1);
        assert_int_equal(s.st_mode & 0777, 0644);
    }
    char *sh = join(root, "out/c.sh");
    assert_int_equal(stat(sh, &s), 0);
    assert_int_equal(s.st_mode & 0777, 0755);
    free(sh);
    assert_false(count_leftovers(root));
    /* Restoring again over the restored outputs works too. */
    assert_int_equal(sp__store_restore(st, outs, 2, &m, &how), SP_OK);
    assert_int_equal(sp__digest_path(NULL, out_dir, after, NULL), SP_OK);
    assert_string_equal(before, after);
    sp__manifest_free(&m);
    sp__store_close(st);
    unsetenv("SP_CACHE_RESTORE_METHOD");
    free(out_dir);
    free(model);
    tu_rmrf(root);
    free(root);
}

static void test_store_roundtrip_hardlink(void **state) {
    (void)state;
    roundtrip("hardlink");
}

static void test_store_roundtrip_copy(void **state) {
    (void)state;
    roundtrip("copy");
}

static void test_store_roundtrip_default(void **state) {
    (void)state;
    roundtrip(NULL);
}

static void test_store_missing_output(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-miss");
    sp__store *st;
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    char *outs[] = {"nope"};
    sp__manifest m;
    assert_int_equal(sp__store_save_outputs(st, outs, 1, &m), SP_EBADINPUT);
    assert_non_null(strstr(sp_errmsg(), "output 'nope' was not created by the stage"));
    assert_int_equal(m.n, 0);
    assert_int_equal(sp__store_record(st, "xyz", &m), SP_EINVAL);
    sp__store_close(st);
    tu_rmrf(root);
    free(root);
}

/* Flips the first byte of a blob the way a user would (chmod, then write): its ctime moves. */
static void tamper(const char *blob) {
    chmod(blob, 0644);
    FILE *fp = fopen(blob, "r+b");
    assert_non_null(fp);
    int c = fgetc(fp);
    fseek(fp, 0, SEEK_SET);
    fputc(c ^ 1, fp);
    fclose(fp);
}

/* Sets the record of `digest` in .softpipe/cache/verified to the blob's current stat (a forged
 * record, to see that a blob matching its record is not hashed). */
static void forge_record(const char *root, const char *digest, const char *blob) {
    char path[4096];
    snprintf(path, sizeof path, "%s/.softpipe/cache/verified", root);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    uint8_t raw[32];
    for (int i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(digest + 7 + 2 * i, "%2x", &v), 1);
        raw[i] = (uint8_t)v;
    }
    struct stat sb;
    assert_int_equal(stat(blob, &sb), 0);
    uint8_t rec[72];
    int found = 0;
    fseek(fp, 8, SEEK_SET);
    for (long off = 8; fread(rec, 1, 72, fp) == 72; off += 72) {
        if (memcmp(rec, raw, 32) != 0) continue;
        uint64_t v[3] = {(uint64_t)sb.st_dev, (uint64_t)sb.st_ino, (uint64_t)sb.st_size};
        int64_t t[2] = {(int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec,
                        (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec};
        memcpy(rec + 32, v, 24);
        memcpy(rec + 56, t, 16);
        fseek(fp, off, SEEK_SET);
        assert_int_equal(fwrite(rec, 1, 72, fp), 72);
        found = 1;
        break;
    }
    fclose(fp);
    assert_true(found);
}

static void test_store_verified_records(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-verified");
    make_outputs(root, "v1");
    char *outs[] = {"model.bin", "out"};
    sp__store *st;
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    sp__manifest m;
    assert_int_equal(sp__store_save_outputs(st, outs, 2, &m), SP_OK);
    assert_int_equal(sp__store_record(st, key1, &m), SP_OK);
    char blob_a[4096], blob_b[4096], dig_a[SP__DIGEST_MAX], vpath[4096];
    snprintf(blob_a, sizeof blob_a, "%s/.softpipe/cache/%.2s/%s", root, m.e[0].digest + 7,
             m.e[0].digest + 9);
    snprintf(blob_b, sizeof blob_b, "%s/.softpipe/cache/%.2s/%s", root, m.e[2].digest + 7,
             m.e[2].digest + 9);
    snprintf(dig_a, sizeof dig_a, "%s", m.e[0].digest);
    snprintf(vpath, sizeof vpath, "%s/.softpipe/cache/verified", root);
    sp__manifest_free(&m);
    sp__store_close(st);
    /* Past the racy window, a restore (by copy: hard links move the blobs' ctime) hashes the
     * blobs and records all three. */
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    setenv("SP_CACHE_RESTORE_METHOD", "copy", 1);
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
    assert_int_equal(sp__store_restore(st, outs, 2, &m, NULL), SP_OK);
    sp__manifest_free(&m);
    sp__store_close(st);
    struct stat vs;
    assert_int_equal(stat(vpath, &vs), 0);
    assert_int_equal(vs.st_size, 8 + 3 * 72);
    /* Unchanged blobs are trusted without hashing: a changed blob whose record was forged to
     * its new stat is not noticed (only a record can make that happen). */
    tamper(blob_a);
    forge_record(root, dig_a, blob_a);
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
    assert_int_equal(sp__store_restore(st, outs, 2, &m, NULL), SP_OK);
    sp__manifest_free(&m);
    sp__store_close(st);
    /* A blob changed after it was verified has a new ctime: hashed again, SP_ECORRUPT. */
    tamper(blob_b);
    put(root, "out/c.sh", "user script");
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
    assert_int_equal(sp__store_restore(st, outs, 2, &m, NULL), SP_ECORRUPT);
    assert_non_null(strstr(sp_errmsg(), blob_b));
    char *t = slurp(root, "out/c.sh");
    assert_string_equal(t, "user script");
    free(t);
    assert_false(count_leftovers(root));
    sp__manifest_free(&m);
    sp__store_close(st);
    unsetenv("SP_CACHE_RESTORE_METHOD");
    /* A record file that is not ours counts as empty: everything is hashed (and found). */
    FILE *fp = fopen(vpath, "wb");
    assert_non_null(fp);
    fputs("garbage", fp);
    fclose(fp);
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
    assert_int_equal(sp__store_restore(st, outs, 2, &m, NULL), SP_ECORRUPT);
    sp__manifest_free(&m);
    sp__store_close(st);
    tu_rmrf(root);
    free(root);
}

/* Enough files in several folders that restore places them on several threads (and verifies
 * them on several threads): every file comes back with its content. */
static void test_store_restore_many(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-many");
    char rel[64], text[64];
    for (int i = 0; i < 600; i++) {
        snprintf(rel, sizeof rel, "out/d%d/f%03d", i % 6, i);
        snprintf(text, sizeof text, "file %d", i);
        put(root, rel, text);
    }
    char *outs[] = {"out"};
    const char *methods[] = {"hardlink", "copy"};
    for (int k = 0; k < 2; k++) {
        setenv("SP_CACHE_RESTORE_METHOD", methods[k], 1);
        sp__store *st;
        assert_int_equal(sp__store_open(root, &st), SP_OK);
        sp__manifest m;
        assert_int_equal(sp__store_save_outputs(st, outs, 1, &m), SP_OK);
        assert_int_equal(m.n, 600);
        assert_int_equal(sp__store_record(st, key1, &m), SP_OK);
        sp__manifest_free(&m);
        sp__store_close(st);
        char *out = join(root, "out");
        tu_rmrf(out);
        free(out);
        assert_int_equal(sp__store_open(root, &st), SP_OK);
        assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
        const char *method = NULL;
        assert_int_equal(sp__store_restore(st, outs, 1, &m, &method), SP_OK);
        assert_string_equal(method, methods[k]);
        sp__manifest_free(&m);
        sp__store_close(st);
        for (int i = 0; i < 600; i += 37) {
            snprintf(rel, sizeof rel, "out/d%d/f%03d", i % 6, i);
            snprintf(text, sizeof text, "file %d", i);
            char *t = slurp(root, rel);
            assert_string_equal(t, text);
            free(t);
        }
        assert_false(count_leftovers(root));
    }
    unsetenv("SP_CACHE_RESTORE_METHOD");
    tu_rmrf(root);
    free(root);
}

static void test_store_corrupt_blob(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-corrupt");
    make_outputs(root, "v1");
    char *outs[] = {"model.bin", "out"};
    sp__store *st;
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    sp__manifest m;
    assert_int_equal(sp__store_save_outputs(st, outs, 2, &m), SP_OK);
    assert_int_equal(sp__store_record(st, key1, &m), SP_OK);
    /* Flip a byte of the blob of out/c.sh. */
    char blob[4096];
    snprintf(blob, sizeof blob, "%s/.softpipe/cache/%.2s/%s", root, m.e[2].digest + 7,
             m.e[2].digest + 9);
    sp__manifest_free(&m);
    sp__store_close(st);
    chmod(blob, 0644);
    FILE *fp = fopen(blob, "r+b");
    assert_non_null(fp);
    int c = fgetc(fp);
    fseek(fp, 0, SEEK_SET);
    fputc(c ^ 1, fp);
    fclose(fp);
    /* The user's outputs. */
    put(root, "model.bin", "user model");
    put(root, "out/c.sh", "user script");
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    assert_int_equal(sp__store_lookup(st, key1, &m), SP_OK);
    assert_int_equal(sp__store_restore(st, outs, 2, &m, NULL), SP_ECORRUPT);
    assert_non_null(strstr(sp_errmsg(), blob));
    char *t = slurp(root, "model.bin");
    assert_string_equal(t, "user model");
    free(t);
    t = slurp(root, "out/c.sh");
    assert_string_equal(t, "user script");
    free(t);
    assert_false(count_leftovers(root));
    sp__manifest_free(&m);
    sp__store_close(st);
    tu_rmrf(root);
    free(root);
}

static void save_one(sp__store *st, const char *root, const char *text, sp__manifest *m) {
    put(root, "o.txt", text);
    char *outs[] = {"o.txt"};
    assert_int_equal(sp__store_save_outputs(st, outs, 1, m), SP_OK);
}

static void blob_of(const char *root, const sp__manifest *m, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/.softpipe/cache/%.2s/%s", root, m->e[0].digest + 7, m->e[0].digest + 9);
}

static void test_store_record_several(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-rec");
    sp__store *st;
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    sp__manifest m1, m2, m3, got;
    save_one(st, root, "first", &m1);
    save_one(st, root, "second", &m2);
    save_one(st, root, "third", &m3);
    assert_int_equal(sp__store_record(st, key1, &m1), SP_OK);
    assert_int_equal(sp__store_record(st, key1, &m2), SP_OK);
    assert_int_equal(sp__store_record(st, key1, &m3), SP_OK);
    assert_int_equal(sp__store_record(st, key1, &m3), SP_OK); /* not duplicated */
    assert_int_equal(sp__store_lookup(st, key1, &got), SP_OK);
    assert_string_equal(got.e[0].digest, m3.e[0].digest);
    sp__manifest_free(&got);
    char blob[4096];
    blob_of(root, &m3, blob, sizeof blob);
    assert_int_equal(unlink(blob), 0);
    assert_int_equal(sp__store_lookup(st, key1, &got), SP_OK);
    assert_string_equal(got.e[0].digest, m2.e[0].digest);
    sp__manifest_free(&got);
    char rec[4096];
    snprintf(rec, sizeof rec, ".softpipe/runs/%.2s/%s.json", key1, key1 + 2);
    char *text = slurp(root, rec);
    assert_non_null(text);
    int n = 0;
    for (const char *c = text; (c = strstr(c, "\"time\"")) != NULL; c++)
        n++;
    assert_int_equal(n, 3);
    free(text);
    /* At most 16 results are kept. */
    for (int i = 0; i < 20; i++) {
        char t[32];
        snprintf(t, sizeof t, "run %d", i);
        sp__manifest mi;
        save_one(st, root, t, &mi);
        assert_int_equal(sp__store_record(st, key2, &mi), SP_OK);
        sp__manifest_free(&mi);
    }
    snprintf(rec, sizeof rec, ".softpipe/runs/%.2s/%s.json", key2, key2 + 2);
    text = slurp(root, rec);
    n = 0;
    for (const char *c = text; (c = strstr(c, "\"time\"")) != NULL; c++)
        n++;
    assert_int_equal(n, 16);
    free(text);
    /* A garbled record is SP_ECORRUPT naming the file. */
    put(root, rec, "{not json");
    assert_int_equal(sp__store_lookup(st, key2, &got), SP_ECORRUPT);
    assert_non_null(strstr(sp_errmsg(), ".json"));
    sp__manifest_free(&m1);
    sp__manifest_free(&m2);
    sp__manifest_free(&m3);
    sp__store_close(st);
    tu_rmrf(root);
    free(root);
}

static int exists(const char *p) {
    struct stat s;
    return stat(p, &s) == 0;
}

static void test_store_gc(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-gc");
    sp__store *st;
    assert_int_equal(sp__store_open(root, &st), SP_OK);
    sp__manifest ma, mb, mc, md;
    save_one(st, root, "A", &ma);
    save_one(st, root, "BB", &mb);
    save_one(st, root, "CCC", &mc);
    save_one(st, root, "DDDD", &md); /* never recorded */
    assert_int_equal(sp__store_record(st, key1, &ma), SP_OK);
    assert_int_equal(sp__store_record(st, key1, &mb), SP_OK);
    assert_int_equal(sp__store_record(st, key2, &mc), SP_OK);
    char ba[4096], bb[4096], bc[4096], bd[4096];
    blob_of(root, &ma, ba, sizeof ba);
    blob_of(root, &mb, bb, sizeof bb);
    blob_of(root, &mc, bc, sizeof bc);
    blob_of(root, &md, bd, sizeof bd);
    /* A temporary left by a dead writer. */
    char *stale = join(root, ".softpipe/cache/tmp/999999999-0");
    assert_int_equal(tu_write_file(stale, "x", 1), 0);
    uint64_t blobs, bytes, recs;
    assert_int_equal(sp__store_gc(st, 0, 1, &blobs, &bytes, &recs), SP_OK);
    assert_int_equal(blobs, 1);
    assert_int_equal(bytes, 4);
    assert_int_equal(recs, 0);
    assert_int_equal(sp__store_gc(st, 1, 1, &blobs, &bytes, &recs), SP_OK); /* dry run */
    assert_int_equal(blobs, 2);
    assert_int_equal(bytes, 5);
    assert_int_equal(recs, 1);
    assert_true(exists(ba) && exists(bd) && exists(stale));
    assert_int_equal(sp__store_gc(st, 1, 0, &blobs, &bytes, &recs), SP_OK);
    assert_int_equal(blobs, 2);
    assert_int_equal(recs, 1);
    assert_false(exists(ba) || exists(bd) || exists(stale));
    assert_true(exists(bb) && exists(bc));
    sp__manifest got;
    assert_int_equal(sp__store_lookup(st, key1, &got), SP_OK);
    assert_string_equal(got.e[0].digest, mb.e[0].digest);
    sp__manifest_free(&got);
    /* A record whose blob is gone is dropped. */
    unlink(bc);
    assert_int_equal(sp__store_gc(st, 0, 0, &blobs, &bytes, &recs), SP_OK);
    assert_int_equal(blobs, 0);
    assert_int_equal(recs, 1);
    char rec[4096];
    snprintf(rec, sizeof rec, "%s/.softpipe/runs/%.2s/%s.json", root, key2, key2 + 2);
    assert_false(exists(rec));
    assert_int_equal(sp__store_lookup(st, key2, &got), SP_ENOTFOUND);
    free(stale);
    sp__manifest_free(&ma);
    sp__manifest_free(&mb);
    sp__manifest_free(&mc);
    sp__manifest_free(&md);
    sp__store_close(st);
    tu_rmrf(root);
    free(root);
}

static void test_cache_out_of_memory(void **state) {
    (void)state;
    char *root = tu_tmpdir("cs-oom");
    for (int i = 0; i < 80; i++) {
        char rel[64], text[64];
        snprintf(rel, sizeof rel, "out/d%d/f%d.txt", i % 7, i);
        snprintf(text, sizeof text, "file %d", i);
        put(root, rel, text);
    }
    put(root, "model.bin", "model");
    char *outs[] = {"model.bin", "out"};
    char *out_dir = join(root, "out");
    char want[SP__DIGEST_MAX], got[SP__DIGEST_MAX];
    assert_int_equal(sp__digest_path(NULL, out_dir, want, NULL), SP_OK);
    int failures = 0;
    /* digest with a stat cache */
    for (uint64_t k = 1;; k++) {
        sp__statcache *sc = NULL;
        sp__malloc_fail_after(k);
        sp_status rc = sp__statcache_open(root, &sc);
        if (rc == SP_OK) rc = sp__digest_path(sc, out_dir, got, NULL);
        if (rc == SP_OK) {
            rc = sp__statcache_close(sc);
            sc = NULL;
        }
        sp__malloc_fail_after(0);
        sp__statcache_free(sc);
        if (rc == SP_OK) {
            assert_string_equal(got, want);
            break;
        }
        assert_int_equal(rc, SP_ENOMEM);
        failures++;
    }
    /* save + record */
    sp__manifest m;
    for (uint64_t k = 1;; k++) {
        sp__store *st = NULL;
        sp__malloc_fail_after(k);
        sp_status rc = sp__store_open(root, &st);
        if (rc == SP_OK) rc = sp__store_save_outputs(st, outs, 2, &m);
        if (rc == SP_OK) {
            rc = sp__store_record(st, key1, &m);
            sp__manifest_free(&m);
        }
        sp__malloc_fail_after(0);
        sp__store_close(st);
        if (rc == SP_OK) break;
        assert_int_equal(rc, SP_ENOMEM);
        failures++;
    }
    /* lookup + restore over changed outputs: a failed restore leaves them as they were */
    put(root, "out/d0/f0.txt", "user");
    for (uint64_t k = 1;; k++) {
        sp__store *st = NULL;
        sp__malloc_fail_after(k);
        sp_status rc = sp__store_open(root, &st);
        int looked = 0;
        if (rc == SP_OK) rc = sp__store_lookup(st, key1, &m);
        if (rc == SP_OK) {
            looked = 1;
            rc = sp__store_restore(st, outs, 2, &m, NULL);
        }
        sp__malloc_fail_after(0);
        if (looked) sp__manifest_free(&m);
        sp__store_close(st);
        if (rc == SP_OK) break;
        assert_int_equal(rc, SP_ENOMEM);
        char *t = slurp(root, "out/d0/f0.txt");
        assert_string_equal(t, "user");
        free(t);
        assert_false(count_leftovers(root));
        failures++;
    }
    assert_int_equal(sp__digest_path(NULL, out_dir, got, NULL), SP_OK);
    assert_string_equal(got, want);
    assert_true(failures > 10);
    free(out_dir);
    tu_rmrf(root);
    free(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_file_matches_sha256),
        cmocka_unit_test(test_digest_folder_stable),
        cmocka_unit_test(test_statcache_trust_and_racy),
        cmocka_unit_test(test_statcache_folder_fast_path),
        cmocka_unit_test(test_store_roundtrip_hardlink),
        cmocka_unit_test(test_store_roundtrip_copy),
        cmocka_unit_test(test_store_roundtrip_default),
        cmocka_unit_test(test_store_missing_output),
        cmocka_unit_test(test_store_corrupt_blob),
        cmocka_unit_test(test_store_verified_records),
        cmocka_unit_test(test_store_restore_many),
        cmocka_unit_test(test_store_record_several),
        cmocka_unit_test(test_store_gc),
        cmocka_unit_test(test_cache_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
