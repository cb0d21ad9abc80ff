/* ingest_npy.h — internal: the in-memory half of the NumPy .npy reader (ingest_npy.c), split out so
 * the fuzz target (fuzz/fuzz_npy.c) and the tests can parse a buffer without a file. Private to
 * src/ingest, the tests and the fuzzers. */
#ifndef SP_INGEST_NPY_H
#define SP_INGEST_NPY_H

#include "softpipe/core.h"

#include <stddef.h>
#include <stdint.h>

/* Parses and checks the .npy file held in buf[0, len): magic, version, header dict, dtype, shape
 * and that the data fits. On SP_OK, *out views the data inside `buf` (out->data = buf + the data
 * offset, which may be buf + len when the array is empty); the caller keeps `buf` alive. The data
 * pointer may be misaligned for its dtype when a writer padded the header to an odd length.
 * `name` (the path, or NULL for "<input>") starts every message. Errors are those of sp_npy_open()
 * in softpipe/ingest.h; *out is zeroed on failure. Never reads outside buf[0, len). Thread-safe. */
sp_status sp__npy_parse(const char *name, const uint8_t *buf, size_t len, sp_array *out);

#endif
