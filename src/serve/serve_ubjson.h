/* serve_ubjson.h — private to src/serve: UBJSON (XGBoost's .ubj models) to JSON text. */
#ifndef SP_SERVE_UBJSON_H
#define SP_SERVE_UBJSON_H

#include "core_internal.h"

/* Appends the JSON text of the UBJSON value in p[0..n) to out. Errors (SP_EBADINPUT) name
 * `name` and the byte offset. */
sp_status sp__ubjson_to_json(const char *name, const uint8_t *p, size_t n, sp__buf *out);

/* 1 when p looks like a UBJSON object rather than JSON text. */
int sp__ubjson_sniff(const uint8_t *p, size_t n);

#endif
