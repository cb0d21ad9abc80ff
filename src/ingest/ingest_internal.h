/* ingest_internal.h — private to src/ingest: helpers shared by the pack pipeline. */
#ifndef SP_INGEST_INTERNAL_H
#define SP_INGEST_INTERNAL_H

#include "core_internal.h"

/* Rewrites a baseline (sequential, Huffman-coded) JPEG losslessly — the same DCT coefficients,
 * quantization tables and sampling, optimized Huffman tables — with a restart marker after every
 * MCU row (restart interval = MCUs per row, as `jpegtran -restart 1` does), keeping ICC profile
 * (APP2) markers and dropping other APPn/COM markers. On SP_OK, *out is a new buffer (sp__free)
 * of *out_len bytes, or NULL when the input is to be kept as it is: progressive or
 * arithmetic-coded JPEGs, JPEGs that already have restart markers, and anything that is not a
 * JPEG. Returns SP_EBADINPUT (message starts with `name`) when libjpeg cannot read the
 * coefficients or reports corrupt data, SP_ENOMEM when out of memory. Thread-safe. */
sp_status sp__jpeg_add_restarts(const char *name, const uint8_t *data, size_t len, uint8_t **out,
                                size_t *out_len);

#endif
