/* testutil.h — small helpers shared by the C unit tests. */
#ifndef SP_TESTUTIL_H
#define SP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh empty folder under $SP_TEST_TMP (or /tmp) named after `tag`; caller frees with free(). */
char *tu_tmpdir(const char *tag);
/* Writes a file (creating parent folders). Returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* rm -rf */
void tu_rmrf(const char *path);
/* Deterministic pseudo-random bytes. */
void tu_fill_random(void *dst, size_t n, uint64_t seed);

/* A baseline JPEG of w x h (components 1 or 3) with seeded noise; caller frees with free(). */
unsigned char *tu_jpeg(int w, int h, int components, uint64_t seed, size_t *len);

#endif
