/* core_error.c — status names and the thread-local error message. */
#include "core_internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char tls_msg[SP_ERRMSG_MAX];

/* Appends ": " and `tail` to tls_msg at `pos`, truncating to fit. */
static void append_tail(size_t pos, const char *tail) {
    if (pos >= sizeof tls_msg - 1) pos = sizeof tls_msg - 1;
    size_t room = sizeof tls_msg - 1 - pos;
    if (room >= 2) {
        memcpy(tls_msg + pos, ": ", 2);
        pos += 2;
        room -= 2;
        size_t k = strnlen(tail, room);
        memmove(tls_msg + pos, tail, k);
        pos += k;
    }
    tls_msg[pos] = '\0';
}

const char *sp_errmsg(void) {
    return tls_msg;
}

void sp__errmsg_clear(void) {
    tls_msg[0] = '\0';
}

sp_status sp__fail(sp_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    return code;
}

sp_status sp__fail_errno(sp_status code, int errno_value, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    if (n >= 0) append_tail((size_t)n, strerror(errno_value));
    return code;
}

void sp__errmsg_prefix(const char *fmt, ...) {
    char old[SP_ERRMSG_MAX];
    memcpy(old, tls_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    if (n >= 0) append_tail((size_t)n, old);
}

const char *sp_status_name(sp_status status) {
    switch (status) {
    case SP_OK:
        return "SP_OK";
    case SP_DONE:
        return "SP_DONE";
    case SP_EINVAL:
        return "SP_EINVAL";
    case SP_ENOMEM:
        return "SP_ENOMEM";
    case SP_EIO:
        return "SP_EIO";
    case SP_ECORRUPT:
        return "SP_ECORRUPT";
    case SP_EBADINPUT:
        return "SP_EBADINPUT";
    case SP_ENOTFOUND:
        return "SP_ENOTFOUND";
    case SP_EEXIST:
        return "SP_EEXIST";
    case SP_EUNSUPPORTED:
        return "SP_EUNSUPPORTED";
    case SP_EINTERNAL:
        return "SP_EINTERNAL";
    }
    return "SP_E?";
}

const char *sp_version(void) {
#define SP__STR2(x) #x
#define SP__STR(x)  SP__STR2(x)
    return SP__STR(SP_VERSION_MAJOR) "." SP__STR(SP_VERSION_MINOR) "." SP__STR(SP_VERSION_PATCH);
}
