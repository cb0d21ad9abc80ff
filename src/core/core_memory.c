/* core_memory.c — the library's allocator wrappers and a growable buffer.
 * Every allocation in libsoftpipe goes through sp__malloc & co. Test builds can make the Nth
 * allocation fail (sp__malloc_fail_after) to exercise out-of-memory paths. */
#include "core_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t fail_countdown; /* 0 = never fail */

void sp__malloc_fail_after(uint64_t n) {
    atomic_store(&fail_countdown, n);
}

static int should_fail(void) {
    uint64_t c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (c == 0) return 0;
    return atomic_fetch_sub(&fail_countdown, 1) == 1;
}

void *sp__malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *sp__calloc(size_t count, size_t size) {
    if (should_fail()) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *sp__realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void sp__free(void *p) {
    free(p);
}

void sp_free(void *p) {
    free(p);
}

char *sp__strndup(const char *s, size_t n) {
    char *d = sp__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sp__strdup(const char *s) {
    return sp__strndup(s, strlen(s));
}

sp_status sp__buf_reserve(sp__buf *b, size_t extra) {
    if (b->cap - b->len >= extra) return SP_OK;
    size_t need = b->len + extra;
    if (need < b->len) return sp__fail(SP_ENOMEM, "buffer size overflow");
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *d = sp__realloc(b->data, cap);
    if (!d) return sp__fail(SP_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = d;
    b->cap = cap;
    return SP_OK;
}

sp_status sp__buf_append(sp__buf *b, const void *p, size_t n) {
    if (n == 0) return SP_OK;
    SP_TRY(sp__buf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return SP_OK;
}

sp_status sp__buf_printf(sp__buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return sp__fail(SP_EINTERNAL, "bad format string");
    SP_TRY(sp__buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SP_OK;
}

void sp__buf_free(sp__buf *b) {
    sp__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
