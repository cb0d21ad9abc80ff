/* core_file.c — whole-file reads and atomic writes (temp file + fsync + rename + fsync folder). */
#define _GNU_SOURCE
#include "core_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

sp_status sp__write_all(int fd, const void *p, size_t n, const char *path) {
    const uint8_t *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return sp__fail_errno(SP_EIO, errno, "%s: write failed", path);
        }
        c += w;
        n -= (size_t)w;
    }
    return SP_OK;
}

sp_status sp__pread_all(int fd, void *p, size_t n, uint64_t off, const char *path) {
    uint8_t *c = p;
    while (n > 0) {
        ssize_t r = pread(fd, c, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return sp__fail_errno(SP_EIO, errno, "%s: read at offset %llu failed", path,
                                  (unsigned long long)off);
        }
        if (r == 0)
            return sp__fail(SP_ECORRUPT, "%s: file ends at offset %llu, %zu bytes short", path,
                            (unsigned long long)off, n);
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return SP_OK;
}

sp_status sp__read_file(const char *path, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 0;
    uint8_t *buf = sp__malloc(cap + 1);
    if (!buf) {
        close(fd);
        return sp__fail(SP_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    size_t got = 0;
    for (;;) {
        if (got == cap) { /* file grew, or size unknown (pipes, /proc) */
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *nb = sp__realloc(buf, ncap + 1);
            if (!nb) {
                sp__free(buf);
                close(fd);
                return sp__fail(SP_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            sp__free(buf);
            close(fd);
            return sp__fail_errno(SP_EIO, e, "%s: read failed", path);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return SP_OK;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return sp__strdup(".");
    if (slash == path) return sp__strdup("/");
    return sp__strndup(path, (size_t)(slash - path));
}

sp_status sp__fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot open folder to fsync", dir);
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) return sp__fail_errno(SP_EIO, e, "%s: fsync failed", dir);
    return SP_OK;
}

sp_status sp__file_commit(const char *path, const void *data, size_t len) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof tmp)
        return sp__fail(SP_EINVAL, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sp__fail_errno(SP_EIO, errno, "%s: cannot create", tmp);
    sp_status rc = sp__write_all(fd, data, len, tmp);
    if (rc == SP_OK && fsync(fd) != 0) rc = sp__fail_errno(SP_EIO, errno, "%s: fsync failed", tmp);
    if (close(fd) != 0 && rc == SP_OK) rc = sp__fail_errno(SP_EIO, errno, "%s: close failed", tmp);
    if (rc == SP_OK && rename(tmp, path) != 0)
        rc = sp__fail_errno(SP_EIO, errno, "%s: cannot rename to %s", tmp, path);
    if (rc != SP_OK) {
        unlink(tmp);
        return rc;
    }
    char *dir = dir_of(path);
    if (!dir) return sp__fail(SP_ENOMEM, "out of memory");
    rc = sp__fsync_dir(dir);
    sp__free(dir);
    return rc;
}

char *sp__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = sp__malloc(a + (size_t)slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

void sp__remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = sp__path_join(path, e->d_name);
        if (!p) break;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            sp__remove_tree(p);
        else
            unlink(p);
        sp__free(p);
    }
    closedir(d);
    rmdir(path);
}
