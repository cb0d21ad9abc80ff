/* ingest_npy.c — reads NumPy .npy files (format versions 1.0, 2.0 and 3.0) as strided array views
 * over a read-only private mapping of the file (sp_npy_* in softpipe/ingest.h).
 *
 * Layout (numpy/lib/format.py): the magic "\x93NUMPY"; one byte each of major and minor version;
 * the header length, a little-endian u16 (1.0) or u32 (2.0, 3.0); the header, a Python dict
 * literal such as "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }" padded with spaces
 * and ended by '\n' (NumPy pads so the data starts at a multiple of 64); then the data, C or
 * Fortran order, and nothing after it (extra bytes are tolerated).
 *
 * The header is read by a small strict recursive-descent parser for exactly the literal subset a
 * .npy header uses: a dict of three string keys whose values are a string, True/False and a tuple
 * of non-negative integers, with optional whitespace and trailing commas as Python allows. It never
 * evaluates anything, never allocates, and checks every byte it reads against the header's end, so
 * a hostile file fails with a message instead of reading out of bounds.
 *
 * Invariant of a parsed view: the nonzero dimensions times the element size fit in int64 (so every
 * stride does), and when no dimension is 0 that product is at most the bytes after the header.
 * The data is not copied unless its offset is misaligned for the dtype (NumPy never does that;
 * other writers might), in which case sp_npy_open() keeps an aligned copy. */
#include "ingest_npy.h"

#include "core_internal.h"
#include "softpipe/ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Byte order of multi-byte elements this machine reads natively, as a .npy descr writes it. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define NATIVE_ORDER '>'
#else
#define NATIVE_ORDER '<'
#endif

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define QUOTE_MAX     48 /* bytes of a header string quoted in a message before "..." */

static const char supported_dtypes[] =
    "supported: bool '|b1', int8/16/32/64 '|i1' '<i2' '<i4' '<i8', uint8/16/32/64 '|u1' '<u2' "
    "'<u4' '<u8', float32 '<f4', float64 '<f8' (little-endian or native byte order)";

/* ---------------------------------------------------------------- message helpers */

/* Writes s[0, n) into out as printable ASCII between single quotes, with \xNN for other bytes
 * and "..." when cut. out needs 4 * QUOTE_MAX + 8 bytes. */
static void quote_bytes(char *out, const uint8_t *s, size_t n) {
    size_t o = 0;
    out[o++] = '\'';
    for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\' && s[i] != '\'') {
            out[o++] = (char)s[i];
        } else {
            snprintf(out + o, 5, "\\x%02x", s[i]);
            o += 4;
        }
    }
    out[o++] = '\'';
    if (n > QUOTE_MAX) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

#define QUOTE_BUF (4 * QUOTE_MAX + 8)

/* ---------------------------------------------------------------- the header dict */

typedef struct hdr {
    const char *name;
    const uint8_t *base; /* start of the file: offsets in messages count from here */
    const uint8_t *p;    /* next unread header byte */
    const uint8_t *end;  /* end of the header */
    int allow_long;      /* accept Python 2's "3L" integers (format 1.0 and 2.0, as NumPy does) */
} hdr;

static size_t hdr_offset(const hdr *h, const uint8_t *at) {
    return (size_t)(at - h->base);
}

/* Fails with `code` and "<name>: offset <at>: <what>". */
static sp_status hdr_fail(const hdr *h, sp_status code, const uint8_t *at, const char *fmt, ...)
    SP__PRINTF(4, 5);
static sp_status hdr_fail(const hdr *h, sp_status code, const uint8_t *at, const char *fmt, ...) {
    char what[SP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sp__fail(code, "%s: offset %zu: %s", h->name, hdr_offset(h, at), what);
}

/* Describes the byte at h->p for "expected X, found Y" messages. */
static void found_text(const hdr *h, char out[16]) {
    if (h->p >= h->end)
        snprintf(out, 16, "the end");
    else if (*h->p >= 0x20 && *h->p < 0x7F)
        snprintf(out, 16, "'%c'", *h->p);
    else
        snprintf(out, 16, "byte 0x%02x", *h->p);
}

static sp_status expected(const hdr *h, const char *what) {
    char f[16];
    found_text(h, f);
    return hdr_fail(h, SP_EBADINPUT, h->p, "header: expected %s, found %s", what, f);
}

static void skip_ws(hdr *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int at_char(const hdr *h, uint8_t c) {
    return h->p < h->end && *h->p == c;
}

static int is_ident_char(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* A string literal in single or double quotes without escapes (a .npy header needs none). */
static sp_status parse_string(hdr *h, const uint8_t **s, size_t *n) {
    if (!at_char(h, '\'') && !at_char(h, '"')) return expected(h, "a quoted string");
    const uint8_t *open = h->p;
    uint8_t q = *h->p++;
    const uint8_t *start = h->p;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\')
            return hdr_fail(h, SP_EBADINPUT, h->p,
                            "header: escape sequences in strings are not supported");
        if (*h->p == '\n')
            return hdr_fail(h, SP_EBADINPUT, open, "header: string is not closed on its line");
        h->p++;
    }
    if (h->p == h->end)
        return hdr_fail(h, SP_EBADINPUT, open, "header: string is not closed before the end");
    *s = start;
    *n = (size_t)(h->p - start);
    h->p++;
    return SP_OK;
}

/* True or False. */
static sp_status parse_bool(hdr *h, int *v) {
    static const char *const words[2] = {"False", "True"};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(words[k]);
        if ((size_t)(h->end - h->p) >= n && !memcmp(h->p, words[k], n) &&
            (h->p + n == h->end || !is_ident_char(h->p[n]))) {
            h->p += n;
            *v = k;
            return SP_OK;
        }
    }
    return expected(h, "True or False for 'fortran_order'");
}

/* A non-negative decimal integer that fits int64: "0" or digits without a leading zero, and for
 * format 1.0/2.0 an optional Python 2 'L' suffix. */
static sp_status parse_dim(hdr *h, int index, uint64_t *v) {
    const uint8_t *start = h->p;
    if (at_char(h, '-'))
        return hdr_fail(h, SP_EBADINPUT, start, "header: 'shape' dimension %d is negative",
                        index + 1);
    if (h->p >= h->end || *h->p < '0' || *h->p > '9')
        return expected(h, "a non-negative integer in 'shape'");
    uint64_t x = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
        unsigned d = (unsigned)(*h->p - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10)
            return hdr_fail(h, SP_EBADINPUT, start,
                            "header: 'shape' dimension %d does not fit in 64 bits", index + 1);
        x = x * 10 + d;
        h->p++;
    }
    if (*start == '0' && h->p - start > 1)
        return hdr_fail(h, SP_EBADINPUT, start,
                        "header: 'shape' dimension %d has a leading zero (not a Python integer)",
                        index + 1);
    if (h->allow_long && at_char(h, 'L')) h->p++;
    if (h->p < h->end && is_ident_char(*h->p))
        return expected(h, "',' or ')' after a 'shape' dimension");
    *v = x;
    return SP_OK;
}

/* A tuple of integers: "()", "(5,)", "(2, 3)", "(2, 3,)". Stores up to SP_ARRAY_MAX_DIMS values
 * and counts them all in *ndim. "(5)" is an integer, not a tuple, and is refused as NumPy does. */
static sp_status parse_shape(hdr *h, uint64_t shape[SP_ARRAY_MAX_DIMS], int *ndim) {
    if (!at_char(h, '(')) return expected(h, "a tuple such as (3,) or (2, 3) for 'shape'");
    const uint8_t *open = h->p++;
    int n = 0, comma = 0;
    for (;;) {
        skip_ws(h);
        if (at_char(h, ')')) break;
        if (n > 0 && !comma) return expected(h, "',' or ')' in 'shape'");
        uint64_t d = 0;
        SP_TRY(parse_dim(h, n, &d));
        if (n < SP_ARRAY_MAX_DIMS) shape[n] = d;
        if (n < INT32_MAX) n++;
        skip_ws(h);
        comma = at_char(h, ',');
        if (comma) h->p++;
    }
    if (n == 1 && !comma)
        return hdr_fail(h, SP_EBADINPUT, open,
                        "header: 'shape' (N) is not a tuple; a 1-D shape is written (N,)");
    h->p++;
    *ndim = n;
    return SP_OK;
}

typedef struct npy_header {
    const uint8_t *descr;
    size_t descr_len;
    const uint8_t *descr_at;
    int fortran;
    uint64_t shape[SP_ARRAY_MAX_DIMS];
    int ndim;
    const uint8_t *shape_at;
} npy_header;

enum { KEY_DESCR, KEY_FORTRAN, KEY_SHAPE, N_KEYS };
static const char *const key_names[N_KEYS] = {"descr", "fortran_order", "shape"};

/* The dict: '{' key ':' value (',' key ':' value)* ','? '}', each key exactly once, then only
 * whitespace to the end of the header. */
static sp_status parse_dict(hdr *h, npy_header *out) {
    int seen[N_KEYS] = {0};
    skip_ws(h);
    if (!at_char(h, '{')) return expected(h, "'{' at the start of the header dict");
    h->p++;
    int comma = 1;
    for (;;) {
        skip_ws(h);
        if (at_char(h, '}')) break;
        if (!comma) return expected(h, "',' or '}' after a value");
        const uint8_t *key_at = h->p, *k;
        size_t kn;
        SP_TRY(parse_string(h, &k, &kn));
        int key = -1;
        for (int i = 0; i < N_KEYS; i++)
            if (strlen(key_names[i]) == kn && !memcmp(key_names[i], k, kn)) key = i;
        if (key < 0) {
            char q[QUOTE_BUF];
            quote_bytes(q, k, kn);
            return hdr_fail(h, SP_EBADINPUT, key_at,
                            "header: unknown key %s (a .npy header has exactly 'descr', "
                            "'fortran_order' and 'shape')",
                            q);
        }
        if (seen[key])
            return hdr_fail(h, SP_EBADINPUT, key_at, "header: key '%s' appears twice",
                            key_names[key]);
        seen[key] = 1;
        skip_ws(h);
        if (!at_char(h, ':')) return expected(h, "':' after a key");
        h->p++;
        skip_ws(h);
        switch (key) {
        case KEY_DESCR:
            out->descr_at = h->p;
            if (at_char(h, '['))
                return hdr_fail(h, SP_EUNSUPPORTED, h->p,
                                "'descr' is a structured dtype (a list of fields), which is not "
                                "supported; %s",
                                supported_dtypes);
            SP_TRY(parse_string(h, &out->descr, &out->descr_len));
            break;
        case KEY_FORTRAN:
            SP_TRY(parse_bool(h, &out->fortran));
            break;
        default:
            out->shape_at = h->p;
            SP_TRY(parse_shape(h, out->shape, &out->ndim));
            break;
        }
        skip_ws(h);
        comma = at_char(h, ',');
        if (comma) h->p++;
    }
    h->p++;
    for (int i = 0; i < N_KEYS; i++)
        if (!seen[i])
            return hdr_fail(h, SP_EBADINPUT, h->p - 1, "header: the dict has no '%s' key",
                            key_names[i]);
    skip_ws(h);
    if (h->p < h->end) return expected(h, "only spaces and a newline after the header dict");
    return SP_OK;
}

/* ---------------------------------------------------------------- dtype */

typedef struct descr_entry {
    const char *code; /* without the byte-order character */
    sp_dtype dtype;
} descr_entry;

static const descr_entry descr_table[] = {
    {"b1", SP_DTYPE_BOOL},    {"i1", SP_DTYPE_INT8},    {"u1", SP_DTYPE_UINT8},
    {"i2", SP_DTYPE_INT16},   {"u2", SP_DTYPE_UINT16},  {"i4", SP_DTYPE_INT32},
    {"u4", SP_DTYPE_UINT32},  {"i8", SP_DTYPE_INT64},   {"u8", SP_DTYPE_UINT64},
    {"f4", SP_DTYPE_FLOAT32}, {"f8", SP_DTYPE_FLOAT64},
};

/* What an unsupported type code is, for the message. */
static const char *kind_hint(const uint8_t *s, size_t n) {
    if (n == 0) return "empty";
    switch (s[0]) {
    case 'O':
        return "Python objects";
    case 'S':
    case 'a':
    case 'U':
        return "strings";
    case 'V':
        return "raw or structured records";
    case 'c':
        return "complex";
    case 'M':
    case 'm':
        return "datetime/timedelta";
    case 'e':
        return "float16";
    case 'g':
        return "long double";
    case 'f':
        if (n == 2 && s[1] == '2') return "float16";
        if (n >= 2 && s[1] != '4' && s[1] != '8') return "extended float";
        break;
    }
    return "unknown";
}

/* Maps a descr string ("<f8", "|b1", "=i4", "u2") to a dtype; SP_EUNSUPPORTED for the rest. */
static sp_status descr_dtype(const hdr *h, const npy_header *nh, sp_dtype *out) {
    const uint8_t *s = nh->descr;
    size_t n = nh->descr_len;
    char q[QUOTE_BUF];
    quote_bytes(q, s, n);
    uint8_t order = 0;
    if (n > 0 && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
        order = s[0];
        s++;
        n--;
    }
    for (size_t i = 0; i < sizeof descr_table / sizeof descr_table[0]; i++) {
        const descr_entry *e = &descr_table[i];
        if (strlen(e->code) != n || memcmp(e->code, s, n) != 0) continue;
        /* '|' (not applicable), '=' and no character all mean native order, as in NumPy. */
        if (order == 0 || order == '|' || order == '=') order = NATIVE_ORDER;
        if (sp_dtype_size(e->dtype) > 1 && order != NATIVE_ORDER)
            return hdr_fail(h, SP_EUNSUPPORTED, nh->descr_at,
                            "dtype %s is %s-endian; only %s-endian (native) data is supported "
                            "(convert with a.astype(a.dtype.newbyteorder('=')))",
                            q, order == '>' ? "big" : "little",
                            NATIVE_ORDER == '>' ? "big" : "little");
        *out = e->dtype;
        return SP_OK;
    }
    return hdr_fail(h, SP_EUNSUPPORTED, nh->descr_at, "dtype %s (%s) is not supported; %s", q,
                    kind_hint(s, n), supported_dtypes);
}

/* ---------------------------------------------------------------- the file */

/* "(2, 3)" into out[cap]. */
static void format_shape(char *out, size_t cap, const sp_array *a) {
    size_t o = (size_t)snprintf(out, cap, "(");
    for (int i = 0; i < a->ndim && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%" PRIu64, i ? ", " : "", a->shape[i]);
    if (o < cap) snprintf(out + o, cap - o, a->ndim == 1 ? ",)" : ")");
}

sp_status sp__npy_parse(const char *name, const uint8_t *buf, size_t len, sp_array *out) {
    if (!out) return sp__fail(SP_EINVAL, "sp__npy_parse: out is NULL");
    memset(out, 0, sizeof *out);
    if (!name) name = "<input>";
    if (!buf && len > 0) return sp__fail(SP_EINVAL, "%s: buf is NULL", name);

    size_t m = len < NPY_MAGIC_LEN ? len : NPY_MAGIC_LEN;
    if (m == 0 || memcmp(buf, NPY_MAGIC, m) != 0) {
        char q[QUOTE_BUF];
        quote_bytes(q, buf, m);
        return sp__fail(SP_EBADINPUT,
                        "%s: not a NumPy .npy file: it starts with %s, expected '\\x93NUMPY'", name,
                        len ? q : "nothing (the file is empty)");
    }
    if (len < NPY_MAGIC_LEN + 2)
        return sp__fail(SP_ECORRUPT,
                        "%s: truncated: the file is %zu bytes and ends before the format version "
                        "at offset 6",
                        name, len);
    unsigned major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return sp__fail(SP_EUNSUPPORTED,
                        "%s: offset 6: .npy format version %u.%u is not supported (1.0, 2.0 and "
                        "3.0 are)",
                        name, major, minor);
    size_t len_size = major == 1 ? 2 : 4, hstart = 8 + len_size;
    if (len < hstart)
        return sp__fail(SP_ECORRUPT,
                        "%s: truncated: the file is %zu bytes and ends inside the %zu-byte header "
                        "length at offset 8",
                        name, len, len_size);
    size_t hlen = major == 1 ? (size_t)buf[8] | (size_t)buf[9] << 8 : (size_t)sp__get_u32(buf + 8);
    if (hlen > len - hstart)
        return sp__fail(SP_ECORRUPT,
                        "%s: offset 8: truncated: the header length is %zu bytes, but only %zu "
                        "bytes follow offset %zu",
                        name, hlen, len - hstart, hstart);

    hdr h = {name, buf, buf + hstart, buf + hstart + hlen, major < 3};
    npy_header nh;
    memset(&nh, 0, sizeof nh);
    SP_TRY(parse_dict(&h, &nh));
    sp_dtype dtype = SP_DTYPE_UINT8;
    SP_TRY(descr_dtype(&h, &nh, &dtype));
    if (nh.ndim > SP_ARRAY_MAX_DIMS)
        return hdr_fail(&h, SP_EUNSUPPORTED, nh.shape_at,
                        "'shape' has %d dimensions; at most %d are supported", nh.ndim,
                        SP_ARRAY_MAX_DIMS);

    /* The span: element size times the nonzero dimensions, which must fit in int64 so that every
     * stride does (NumPy refuses such shapes too: "array is too big"). */
    size_t item = sp_dtype_size(dtype);
    uint64_t span = item;
    int empty = 0;
    for (int i = 0; i < nh.ndim; i++) {
        uint64_t d = nh.shape[i];
        if (d == 0) {
            empty = 1;
            continue;
        }
        if (span > (uint64_t)INT64_MAX / d)
            return hdr_fail(&h, SP_EUNSUPPORTED, nh.shape_at,
                            "'shape' is too big: its size in bytes does not fit in 63 bits");
        span *= d;
    }
    uint64_t need = empty ? 0 : span;

    sp_array a;
    memset(&a, 0, sizeof a);
    a.dtype = dtype;
    a.ndim = nh.ndim;
    int64_t stride = (int64_t)item;
    for (int k = 0; k < a.ndim; k++) {
        int i = nh.fortran ? k : a.ndim - 1 - k; /* the fastest-varying axis first */
        a.shape[i] = nh.shape[i];
        a.strides[i] = stride;
        if (nh.shape[i] > 0) stride *= (int64_t)nh.shape[i];
    }
    size_t data_off = hstart + hlen, have = len - data_off;
    if (need > have) {
        char shape[160];
        format_shape(shape, sizeof shape, &a);
        return sp__fail(SP_ECORRUPT,
                        "%s: data is %zu bytes, the header promises %" PRIu64
                        " (shape %s of %s from offset %zu): the file is truncated",
                        name, have, need, shape, sp_dtype_name(dtype), data_off);
    }
    a.data = buf + data_off;
    *out = a;
    return SP_OK;
}

/* ---------------------------------------------------------------- sp_npy */

struct sp_npy {
    sp_array array;
    const uint8_t *map; /* the private read-only mapping, or NULL for an empty file */
    size_t map_len;
    void *copy; /* aligned copy of misaligned data, or NULL */
};

/* Bytes spanned by a parsed view (see the invariant at the top). */
static size_t array_bytes(const sp_array *a) {
    size_t n = sp_dtype_size(a->dtype);
    for (int i = 0; i < a->ndim; i++)
        n *= (size_t)a->shape[i];
    return n;
}

sp_status sp_npy_open(const char *path, sp_npy **out) {
    if (!out) return sp__fail(SP_EINVAL, "sp_npy_open: out is NULL");
    *out = NULL;
    if (!path) return sp__fail(SP_EINVAL, "sp_npy_open: path is NULL");
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
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return sp__fail(SP_EINVAL, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return sp__fail(SP_EUNSUPPORTED, "%s: the file is too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *map = NULL;
    if (size > 0) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sp__fail_errno(SP_EIO, e, "%s: mmap failed", path);
        }
        map = m;
    }
    close(fd);

    sp_array a;
    sp_status rc = sp__npy_parse(path, map, size, &a);
    sp_npy *npy = NULL;
    if (rc == SP_OK) {
        npy = sp__calloc(1, sizeof *npy);
        if (!npy) rc = sp__fail(SP_ENOMEM, "%s: out of memory", path);
    }
    if (rc == SP_OK) {
        npy->array = a;
        npy->map = map;
        npy->map_len = size;
        size_t item = sp_dtype_size(a.dtype), bytes = array_bytes(&a);
        if (bytes > 0 && (uintptr_t)a.data % item != 0) {
            npy->copy = sp__malloc(bytes);
            if (!npy->copy) {
                rc = sp__fail(SP_ENOMEM,
                              "%s: out of memory copying %zu bytes of misaligned data "
                              "(the header length is not a multiple of the element size)",
                              path, bytes);
            } else {
                memcpy(npy->copy, a.data, bytes);
                npy->array.data = npy->copy;
                munmap((void *)map, size); /* the copy is all that is needed now */
                npy->map = map = NULL;
            }
        }
    }
    if (rc != SP_OK) {
        if (npy) sp__free(npy);
        if (map) munmap((void *)map, size);
        return rc;
    }
    *out = npy;
    return SP_OK;
}

const sp_array *sp_npy_array(const sp_npy *npy) {
    return npy ? &npy->array : NULL;
}

void sp_npy_close(sp_npy *npy) {
    if (!npy) return;
    if (npy->map) munmap((void *)npy->map, npy->map_len);
    sp__free(npy->copy);
    sp__free(npy);
}
