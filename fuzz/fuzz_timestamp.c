/* fuzz_timestamp.c — fuzzes sp__parse_timestamp (src/ingest/ingest_table.c).
 *
 * A text that parses must round-trip: its value printed as epoch seconds parses to the same
 * value, and so does the value printed as "YYYY-MM-DDTHH:MM:SSZ" when it falls in years
 * 0000-9999 (converted back with an independent civil_from_days). A text that does not parse must
 * leave *out alone and set a message. */
#include "core_internal.h"
#include "ingest/ingest_table.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* H. Hinnant's civil_from_days: days since 1970-01-01 to y-m-d. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t parse_or_die(const char *s) {
    int64_t v = 0;
    if (sp__parse_timestamp(s, strlen(s), &v) != SP_OK) abort();
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const int64_t sentinel = 0x5A5A5A5A;
    int64_t v = sentinel;
    sp_status rc = sp__parse_timestamp((const char *)data, size, &v);
    if (rc != SP_OK) {
        if (rc != SP_EBADINPUT || v != sentinel || !sp_errmsg()[0]) abort();
        return 0;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    if (parse_or_die(buf) != v) abort();
    /* years 0000-9999 */
    if (v >= -62167219200 && v <= 253402300799) {
        int64_t days = v >= 0 ? v / 86400 : -((-v + 86399) / 86400), y;
        int64_t secs = v - days * 86400;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        snprintf(buf, sizeof buf, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02dZ", y, m, d,
                 (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
        if (parse_or_die(buf) != v) abort();
    }
    return 0;
}
