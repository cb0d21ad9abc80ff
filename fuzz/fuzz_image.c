/* fuzz_image.c — the JPEG/PNG header probe and the full-decode check on arbitrary bytes. */
#include "softpipe/image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *m = malloc(size ? size : 1);
    if (!m) return 0;
    memcpy(m, data, size);
    sp_image_info info;
    if (sp_image_probe("fuzz", m, size, &info) == SP_OK &&
        (uint64_t)info.width * (uint64_t)info.height <= (1u << 22))
        sp_image_check_decode("fuzz", m, size);
    free(m);
    return 0;
}
