/* softpipe/core.h — status codes, error messages, version, memory.
 *
 * Every public softpipe call that can fail returns an sp_status: 0 is success, positive values are
 * normal outcomes (SP_DONE), negative values are errors, so `rc < 0` tests for failure. A failing
 * call also sets a thread-local message, read with sp_errmsg(), of the form
 * "<where>: <what>[: <why>]" where <where> names the file, record, line or byte offset at fault.
 * Status values are pinned: they never change once released.
 */
#ifndef SOFTPIPE_CORE_H
#define SOFTPIPE_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SP_API __attribute__((visibility("default")))
#else
#define SP_API
#endif

#define SP_VERSION_MAJOR 0
#define SP_VERSION_MINOR 1
#define SP_VERSION_PATCH 0

typedef enum sp_status {
    SP_OK = 0,
    SP_DONE = 1,          /* normal end: no more items */
    SP_EINVAL = -1,       /* API misuse or a bad argument/option; the message names it */
    SP_ENOMEM = -2,       /* out of memory */
    SP_EIO = -3,          /* the operating system refused: open/read/write/fsync/rename failed */
    SP_ECORRUPT = -4,     /* a softpipe file fails its checks (magic, bounds, checksum) */
    SP_EBADINPUT = -5,    /* outside input data is malformed (bad JPEG, bad CSV line, ...) */
    SP_ENOTFOUND = -6,    /* a file, column or key does not exist */
    SP_EEXIST = -7,       /* the destination already exists */
    SP_EUNSUPPORTED = -8, /* well-formed but not supported (format version, feature) */
    SP_EINTERNAL = -70    /* a bug in softpipe: please report it */
} sp_status;

/* The message of the last failing softpipe call on this thread ("" if none).
 * Borrowed: valid until the next softpipe call on this thread. Thread-safe. */
SP_API const char *sp_errmsg(void);

/* A short constant name for a status: "SP_ECORRUPT". Never NULL. Thread-safe. */
SP_API const char *sp_status_name(sp_status status);

/* The library version as "MAJOR.MINOR.PATCH". Static storage. */
SP_API const char *sp_version(void);

/* Frees memory that a softpipe call documents as "caller frees with sp_free()". NULL is a no-op. */
SP_API void sp_free(void *ptr);

/* Hashes exposed for tools and tests.
 * sp_crc32c: CRC-32C (Castagnoli) of buf, continuing from `crc` (start with 0); uses the SSE4.2
 * instruction when the CPU has it, else a table-driven fallback with identical results. */
SP_API uint32_t sp_crc32c(uint32_t crc, const void *buf, size_t len);

/* Element types: of loader batches (uint8, float32, float16) and of the arrays softpipe reads
 * without copying (NumPy .npy files, NumPy/torch buffers). Values are pinned. */
typedef enum sp_dtype {
    SP_DTYPE_UINT8 = 0,
    SP_DTYPE_FLOAT32 = 1,
    SP_DTYPE_FLOAT16 = 2, /* IEEE half */
    SP_DTYPE_BOOL = 3,    /* one byte, 0 or 1 */
    SP_DTYPE_INT8 = 4,
    SP_DTYPE_INT16 = 5,
    SP_DTYPE_UINT16 = 6,
    SP_DTYPE_INT32 = 7,
    SP_DTYPE_UINT32 = 8,
    SP_DTYPE_INT64 = 9,
    SP_DTYPE_UINT64 = 10,
    SP_DTYPE_FLOAT64 = 11
} sp_dtype;

/* Bytes per element of `dtype` (0 for an unknown value). Thread-safe. */
SP_API size_t sp_dtype_size(sp_dtype dtype);
/* NumPy's name of `dtype` ("float64", "bool", ...; "unknown" for an unknown value). Thread-safe. */
SP_API const char *sp_dtype_name(sp_dtype dtype);

#define SP_ARRAY_MAX_DIMS 4

/* A borrowed view of a strided n-dimensional array (NumPy's model): element (i, j) of a 2-D array
 * lives at (const char *)data + i * strides[0] + j * strides[1]. Strides are in bytes and may be
 * any multiple of the element size, including 0 and negative values. Native byte order. The view
 * owns nothing: whoever made it says how long `data` lives. */
typedef struct sp_array {
    const void *data;
    sp_dtype dtype;
    int ndim; /* 0 .. SP_ARRAY_MAX_DIMS; 0 is a scalar */
    uint64_t shape[SP_ARRAY_MAX_DIMS];
    int64_t strides[SP_ARRAY_MAX_DIMS];
} sp_array;

/* A 1-D contiguous view of n elements at data. */
SP_API sp_array sp_array_1d(const void *data, sp_dtype dtype, uint64_t n);
/* A 2-D C-contiguous (row-major) view of rows x cols elements at data. */
SP_API sp_array sp_array_2d(const void *data, sp_dtype dtype, uint64_t rows, uint64_t cols);

/* Element (i, j) of a 1-D (j ignored) or 2-D array, converted to double (float16 included).
 * No bounds check: the caller keeps i, j inside the shape. Thread-safe. */
SP_API double sp_array_get_f64(const sp_array *a, uint64_t i, uint64_t j);

#ifdef __cplusplus
}
#endif
#endif
