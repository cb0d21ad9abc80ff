/* fuzz_shard.c — the shard parser on arbitrary bytes: parse, then touch every sample's payload
 * range and every column value, as a reader would. Any out-of-bounds access is a bug.
 * Each input is tried twice: as is, and with its two XXH3 hashes recomputed, so that mutations
 * get past the hash checks and reach the structural validation behind them. */
#include "shard/shard_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_parse(uint8_t *m, size_t size) {
    sp__shard s;
    if (sp__shard_parse("fuzz.sps", m, size, &s) == SP_OK) {
        uint32_t acc = 0;
        for (uint64_t i = 0; i < s.n_samples; i++) {
            uint64_t off;
            uint32_t len, crc;
            sp__shard_entry(&s, i, &off, &len, &crc);
            acc ^= sp_crc32c(0, m + off, len) ^ crc;
            for (uint32_t c = 0; c < s.n_columns; c++) {
                sp_value v;
                sp__shard_value(&s, i, c, &v);
                if (!v.is_null && s.columns[c].type == SP_TYPE_STRING && v.v.str.len)
                    acc += (uint8_t)v.v.str.s[v.v.str.len - 1];
            }
        }
        (void)acc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy so ASan knows the exact bounds */
    uint8_t *m = malloc(size ? size : 1);
    if (!m) return 0;
    memcpy(m, data, size);
    try_parse(m, size);
    if (size >= SP__PAYLOAD_ALIGN + SP__FOOTER_SIZE) {
        uint8_t *f = m + size - SP__FOOTER_SIZE;
        uint64_t meta = sp__get_u64(f + 40);
        if (meta <= size - SP__FOOTER_SIZE) {
            sp__put_u64(f + 112, sp__xxh3(m + meta, size - SP__FOOTER_SIZE - meta));
            sp__put_u64(f + 120, sp__xxh3(f, 120));
            try_parse(m, size);
        }
    }
    free(m);
    return 0;
}
