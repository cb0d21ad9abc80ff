/* shard_format.c — validating parser of the .sps shard layout (docs/format.md), value access, and
 * read-only file mapping. A hostile file must give an error here, never an out-of-bounds read
 * later: everything an accessor will dereference is checked once at parse time. */
#include "shard_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *sp_type_name(sp_type type) {
    switch (type) {
    case SP_TYPE_INT32:
        return "int32";
    case SP_TYPE_INT64:
        return "int64";
    case SP_TYPE_FLOAT64:
        return "float64";
    case SP_TYPE_STRING:
        return "string";
    }
    return "?";
}

sp_status sp__map_file(const char *path, int populate, const uint8_t **map, uint64_t *size) {
    *map = NULL;
    *size = 0;
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
    if (st.st_size == 0) {
        close(fd);
        return SP_OK;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0),
                   fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return sp__fail_errno(SP_EIO, e, "%s: mmap failed", path);
    *map = m;
    *size = (uint64_t)st.st_size;
    return SP_OK;
}

void sp__unmap(const uint8_t *map, uint64_t size) {
    if (map && size) munmap((void *)map, (size_t)size);
}

/* Checks that [off, off + len) lies in [lo, hi) without overflow. */
static int in_range(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi) {
    return off >= lo && off <= hi && len <= hi - off;
}

static int valid_name(const char *s, size_t n) {
    if (n == 0 || n >= SP_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

sp_status sp__shard_parse(const char *name, const uint8_t *map, uint64_t size, sp__shard *s) {
    memset(s, 0, sizeof *s);
    if (size < SP__PAYLOAD_ALIGN + SP__FOOTER_SIZE)
        return sp__fail(SP_ECORRUPT, "%s: file is %" PRIu64 " bytes, too small to be a shard", name,
                        size);
    if (memcmp(map, SP__SHARD_MAGIC, 8) != 0)
        return sp__fail(SP_ECORRUPT, "%s: offset 0x0: bad magic, not a softpipe shard", name);
    uint32_t hver = sp__get_u32(map + 8);
    if (hver != SP_SHARD_FORMAT_VERSION)
        return sp__fail(SP_EUNSUPPORTED,
                        "%s: shard format version %u, this softpipe reads version %d", name, hver,
                        SP_SHARD_FORMAT_VERSION);

    uint64_t foot_off = size - SP__FOOTER_SIZE;
    const uint8_t *f = map + foot_off;
    if (memcmp(f, SP__FOOTER_MAGIC, 8) != 0)
        return sp__fail(SP_ECORRUPT,
                        "%s: footer (offset 0x%" PRIx64 "): bad magic; the file is truncated or "
                        "overwritten",
                        name, foot_off);
    uint64_t fhash = sp__xxh3(f, 120);
    if (sp__get_u64(f + 120) != fhash)
        return sp__fail(SP_ECORRUPT,
                        "%s: footer (offset 0x%" PRIx64 "): xxh3 mismatch (stored %016" PRIx64
                        ", computed %016" PRIx64 ")",
                        name, foot_off, sp__get_u64(f + 120), fhash);
    if (sp__get_u32(f + 8) != SP_SHARD_FORMAT_VERSION || sp__get_u32(f + 12) != SP__FOOTER_SIZE)
        return sp__fail(SP_EUNSUPPORTED, "%s: footer: version %u / size %u not supported", name,
                        sp__get_u32(f + 8), sp__get_u32(f + 12));
    s->map = map;
    s->size = size;
    s->n_samples = sp__get_u64(f + 16);
    s->n_blocks = sp__get_u64(f + 24);
    s->n_columns = sp__get_u32(f + 32);
    s->meta_off = sp__get_u64(f + 40);
    uint64_t schema_off = sp__get_u64(f + 48), blocks_off = sp__get_u64(f + 56),
             index_off = sp__get_u64(f + 64), columns_off = sp__get_u64(f + 72),
             strings_off = sp__get_u64(f + 80);
    s->strings_len = sp__get_u64(f + 88);
    uint64_t stats_off = sp__get_u64(f + 96);
    uint64_t meta_hash = sp__get_u64(f + 112);

    uint64_t lo = s->meta_off, hi = foot_off;
    if (lo < SP__PAYLOAD_ALIGN || lo > hi || lo % 8)
        return sp__fail(SP_ECORRUPT, "%s: footer: metadata offset 0x%" PRIx64 " out of range", name,
                        lo);
    if (s->n_columns < SP_N_FIXED_COLS || s->n_columns > SP_MAX_COLUMNS)
        return sp__fail(SP_ECORRUPT, "%s: footer: %u columns (expected %d..%d)", name, s->n_columns,
                        SP_N_FIXED_COLS, SP_MAX_COLUMNS);
    /* Counts are bounded by the file size before any multiplication can overflow. */
    if (s->n_samples > size / SP__INDEX_ENTRY || s->n_blocks > size / SP__BLOCK_ENTRY ||
        s->n_blocks > s->n_samples || (s->n_samples > 0 && s->n_blocks == 0))
        return sp__fail(SP_ECORRUPT,
                        "%s: footer: %" PRIu64 " samples in %" PRIu64
                        " blocks is impossible for a %" PRIu64 "-byte file",
                        name, s->n_samples, s->n_blocks, size);
    if (!in_range(schema_off, 4, lo, hi) ||
        !in_range(blocks_off, s->n_blocks * SP__BLOCK_ENTRY, lo, hi) ||
        !in_range(index_off, s->n_samples * SP__INDEX_ENTRY, lo, hi) ||
        !in_range(columns_off, 0, lo, hi) || !in_range(strings_off, s->strings_len, lo, hi) ||
        s->n_blocks * s->n_columns > size / SP__STATS_ENTRY ||
        !in_range(stats_off, s->n_blocks * s->n_columns * SP__STATS_ENTRY, lo, hi))
        return sp__fail(SP_ECORRUPT, "%s: footer: a section lies outside the metadata region",
                        name);
    if ((schema_off | blocks_off | index_off | columns_off | stats_off) % 8)
        return sp__fail(SP_ECORRUPT, "%s: footer: a section offset is not 8-byte aligned", name);

    uint64_t mhash = sp__xxh3(map + lo, hi - lo);
    if (mhash != meta_hash)
        return sp__fail(SP_ECORRUPT,
                        "%s: metadata (offset 0x%" PRIx64 "..0x%" PRIx64 "): xxh3 mismatch "
                        "(stored %016" PRIx64 ", computed %016" PRIx64 ")",
                        name, lo, hi, meta_hash, mhash);

    /* schema */
    const uint8_t *p = map + schema_off;
    uint64_t pos = schema_off;
    if (sp__get_u32(p) != s->n_columns)
        return sp__fail(SP_ECORRUPT, "%s: schema: %u columns, footer says %u", name, sp__get_u32(p),
                        s->n_columns);
    pos += 8;
    for (uint32_t c = 0; c < s->n_columns; c++) {
        if (!in_range(pos, 8, lo, hi))
            return sp__fail(SP_ECORRUPT, "%s: schema: column %u lies outside the metadata", name,
                            c);
        uint32_t type = sp__get_u32(map + pos), nlen = sp__get_u32(map + pos + 4);
        if (type < SP_TYPE_INT32 || type > SP_TYPE_STRING)
            return sp__fail(SP_ECORRUPT, "%s: schema: column %u has unknown type %u", name, c,
                            type);
        if (!in_range(pos + 8, nlen, lo, hi) || !valid_name((const char *)map + pos + 8, nlen))
            return sp__fail(SP_ECORRUPT, "%s: schema: column %u has an invalid name", name, c);
        memcpy(s->columns[c].name, map + pos + 8, nlen);
        s->columns[c].name[nlen] = '\0';
        s->columns[c].type = (sp_type)type;
        pos = sp__align_up(pos + 8 + nlen, 8);
    }
    static const char *fixed[SP_N_FIXED_COLS] = {"key", "label", "width", "height"};
    static const sp_type fixed_t[SP_N_FIXED_COLS] = {SP_TYPE_STRING, SP_TYPE_INT64, SP_TYPE_INT32,
                                                     SP_TYPE_INT32};
    for (int c = 0; c < SP_N_FIXED_COLS; c++)
        if (strcmp(s->columns[c].name, fixed[c]) || s->columns[c].type != fixed_t[c])
            return sp__fail(SP_ECORRUPT, "%s: schema: column %d must be \"%s\" (%s)", name, c,
                            fixed[c], sp_type_name(fixed_t[c]));

    /* column arrays: values then null bitmap, each padded to 8 bytes */
    pos = columns_off;
    uint64_t bitmap_bytes = sp__align_up((s->n_samples + 7) / 8, 8);
    for (uint32_t c = 0; c < s->n_columns; c++) {
        uint64_t vbytes = sp__align_up(s->n_samples * sp__type_width(s->columns[c].type), 8);
        if (!in_range(pos, vbytes + bitmap_bytes, lo, hi))
            return sp__fail(SP_ECORRUPT, "%s: column \"%s\": values lie outside the metadata", name,
                            s->columns[c].name);
        s->values[c] = map + pos;
        s->nulls[c] = map + pos + vbytes;
        pos += vbytes + bitmap_bytes;
    }
    s->blocks = map + blocks_off;
    s->index = map + index_off;
    s->strings = map + strings_off;
    s->stats = map + stats_off;

    /* block table: contiguous sample ranges, each block inside the payload region */
    uint64_t next = 0, prev_end = SP__PAYLOAD_ALIGN;
    for (uint64_t b = 0; b < s->n_blocks; b++) {
        const uint8_t *e = s->blocks + b * SP__BLOCK_ENTRY;
        uint64_t boff = sp__get_u64(e), bbytes = sp__get_u64(e + 8), first = sp__get_u64(e + 16),
                 cnt = sp__get_u64(e + 24);
        if (first != next || cnt == 0 || cnt > s->n_samples - next || boff < prev_end ||
            boff % SP__PAYLOAD_ALIGN || !in_range(boff, bbytes, SP__PAYLOAD_ALIGN, lo))
            return sp__fail(SP_ECORRUPT, "%s: block %" PRIu64 ": entry out of range", name, b);
        /* every sample of the block lies inside the block */
        for (uint64_t i = first; i < first + cnt; i++) {
            uint64_t off;
            uint32_t len, crc;
            sp__shard_entry(s, i, &off, &len, &crc);
            if (!in_range(off, len, boff, boff + bbytes))
                return sp__fail(SP_ECORRUPT,
                                "%s: record %" PRIu64 ": payload 0x%" PRIx64 "+%u lies outside "
                                "its block %" PRIu64,
                                name, i, off, len, b);
        }
        next = first + cnt;
        prev_end = boff + bbytes;
    }
    if (next != s->n_samples)
        return sp__fail(SP_ECORRUPT, "%s: block table covers %" PRIu64 " of %" PRIu64 " samples",
                        name, next, s->n_samples);

    /* string references */
    for (uint32_t c = 0; c < s->n_columns; c++) {
        if (s->columns[c].type != SP_TYPE_STRING) continue;
        for (uint64_t i = 0; i < s->n_samples; i++) {
            const uint8_t *v = s->values[c] + i * 8;
            uint32_t off = sp__get_u32(v), len = sp__get_u32(v + 4);
            if (!in_range(off, len, 0, s->strings_len))
                return sp__fail(SP_ECORRUPT,
                                "%s: record %" PRIu64 ": column \"%s\": string out of range", name,
                                i, s->columns[c].name);
        }
    }
    return SP_OK;
}

void sp__shard_value(const sp__shard *s, uint64_t i, uint32_t col, sp_value *out) {
    memset(out, 0, sizeof *out);
    if ((s->nulls[col][i >> 3] >> (i & 7)) & 1) {
        out->is_null = 1;
        return;
    }
    const uint8_t *v = s->values[col];
    switch (s->columns[col].type) {
    case SP_TYPE_INT32:
        out->v.i = (int32_t)sp__get_u32(v + i * 4);
        break;
    case SP_TYPE_INT64:
        out->v.i = (int64_t)sp__get_u64(v + i * 8);
        break;
    case SP_TYPE_FLOAT64: {
        uint64_t bits = sp__get_u64(v + i * 8);
        memcpy(&out->v.f, &bits, 8);
        break;
    }
    case SP_TYPE_STRING:
        out->v.str.s = (const char *)s->strings + sp__get_u32(v + i * 8);
        out->v.str.len = sp__get_u32(v + i * 8 + 4);
        break;
    }
}
