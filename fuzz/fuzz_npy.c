/* fuzz_npy.c — fuzzes the NumPy .npy parser (sp__npy_parse in src/ingest/ingest_npy.c).
 *
 * A view that comes back is checked against the input: a known dtype, at most SP_ARRAY_MAX_DIMS
 * dimensions, strides that are multiples of the element size, and data inside the buffer. Then
 * every element is visited through the strides and each of its bytes is read, so ASan sees any
 * bound the parser got wrong. The input is copied into a buffer of exactly its size first, so a
 * read one past the end is caught too. A failure must leave a zeroed view and a message. */
#include "core_internal.h"
#include "ingest/ingest_npy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink; /* keeps the element reads */

/* Visits every element of `a` and folds its bytes; returns the number of elements. */
static uint64_t touch_all(const sp_array *a, const uint8_t *buf, size_t len) {
    size_t item = sp_dtype_size(a->dtype);
    uint64_t count = 1;
    for (int d = 0; d < a->ndim; d++)
        count *= a->shape[d];
    if (count == 0) return 0;
    uint64_t idx[SP_ARRAY_MAX_DIMS] = {0};
    uint8_t acc = 0;
    for (uint64_t n = 0; n < count; n++) {
        int64_t off = 0;
        for (int d = 0; d < a->ndim; d++)
            off += (int64_t)idx[d] * a->strides[d];
        uintptr_t at = (uintptr_t)a->data + (uintptr_t)off; /* checked before it is used */
        if (at < (uintptr_t)buf || at - (uintptr_t)buf > len || len - (at - (uintptr_t)buf) < item)
            abort(); /* outside the input */
        const uint8_t *e = (const uint8_t *)at;
        for (size_t k = 0; k < item; k++)
            acc ^= e[k];
        for (int d = a->ndim - 1; d >= 0; d--) { /* odometer, last axis fastest */
            if (++idx[d] < a->shape[d]) break;
            idx[d] = 0;
        }
    }
    sink = acc;
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    sp_array a;
    memset(&a, 0xA5, sizeof a);
    sp__errmsg_clear();
    sp_status rc = sp__npy_parse("fuzz.npy", buf, size, &a);
    if (rc == SP_OK) {
        size_t item = sp_dtype_size(a.dtype);
        if (item == 0 || a.ndim < 0 || a.ndim > SP_ARRAY_MAX_DIMS) abort();
        uintptr_t p = (uintptr_t)a.data;
        if (p < (uintptr_t)buf || p - (uintptr_t)buf > size) abort();
        for (int d = 0; d < a.ndim; d++)
            if (a.strides[d] <= 0 || a.strides[d] % (int64_t)item != 0) abort();
        touch_all(&a, buf, size);
    } else {
        if (rc != SP_EBADINPUT && rc != SP_ECORRUPT && rc != SP_EUNSUPPORTED) abort();
        if (!sp_errmsg()[0] || strncmp(sp_errmsg(), "fuzz.npy: ", 10) != 0) abort();
        if (a.data != NULL || a.ndim != 0) abort();
    }
    free(buf);
    return 0;
}
