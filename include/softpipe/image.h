/* softpipe/image.h — image headers and integrity checks (JPEG, PNG).
 *
 * sp_image_probe reads only the header (and looks at the file's end for truncation), so it is cheap
 * enough to run on every file at pack time; sp_image_check_decode decodes fully. */
#ifndef SOFTPIPE_IMAGE_H
#define SOFTPIPE_IMAGE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_image_kind {
    SP_IMAGE_UNKNOWN = 0,
    SP_IMAGE_JPEG = 1,
    SP_IMAGE_PNG = 2
} sp_image_kind;

typedef struct sp_image_info {
    sp_image_kind kind;
    int32_t width, height;
    int32_t components;    /* 1 grey, 3 YCbCr/RGB, 4 CMYK/RGBA */
    int32_t progressive;   /* JPEG only */
    int32_t subsampling_h; /* JPEG: luma horizontal sampling factor (2 for 4:2:0), else 1 */
    int32_t subsampling_v;
} sp_image_info;

/* Parses the header of a JPEG or PNG in memory and checks that the data is not truncated (a JPEG
 * ends with the EOI marker, a PNG with its IEND chunk). `name` starts every error message.
 * Returns SP_EBADINPUT for an empty, truncated, corrupt or unknown file. */
SP_API sp_status sp_image_probe(const char *name, const uint8_t *data, size_t len,
                                sp_image_info *info /* OUT */);

/* Decodes the whole image (libjpeg-turbo / libpng) and discards the pixels: SP_OK when it decodes
 * without error or warning about corrupt data, SP_EBADINPUT otherwise. Thread-safe. */
SP_API sp_status sp_image_check_decode(const char *name, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
