/* image.h: decoders of untrusted photo files (JPEG, PNG, PNM) to 8-bit RGB.
 * This module is separate from the model and kernel code; it only depends on err.h/util.h.
 * Every size is checked; decoding is refused beyond the limits below with a clear error. */
#ifndef VLM_IMAGE_H
#define VLM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct vlm_image {
    int width;
    int height;
    uint8_t *rgb; /* (height, width, 3), row-major, owned: free with image_free */
} vlm_image;

/* Limits against decompression bombs. Zero fields take the defaults below. */
typedef struct image_limits {
    uint64_t max_pixels; /* default IMAGE_DEFAULT_MAX_PIXELS */
    size_t max_bytes;    /* total decoder memory budget, default IMAGE_DEFAULT_MAX_BYTES */
} image_limits;

#define IMAGE_DEFAULT_MAX_PIXELS (100ull * 1000 * 1000)
#define IMAGE_DEFAULT_MAX_BYTES ((size_t)1 << 30)

enum { IMAGE_EXIF_IGNORE = 0, IMAGE_EXIF_APPLY = 1 };

/* Decodes a whole file held in memory. The format is detected from the magic bytes.
 * name is used in error messages only. exif: IMAGE_EXIF_APPLY rotates/flips JPEG photos
 * according to their EXIF Orientation tag. lim may be NULL (defaults).
 * Returns 0 and fills *out, or a negative VLM_E* code with e->msg set and *out zeroed. */
int image_decode_buffer(const uint8_t *buf, size_t len, const char *name, int exif,
                        const image_limits *lim, vlm_image *out, vlm_error *e);

/* Reads the file at path and decodes it as image_decode_buffer does. */
int image_decode_file(const char *path, int exif, const image_limits *lim, vlm_image *out,
                      vlm_error *e);

/* Writes img as binary PPM (P6, maxval 255). */
int image_write_ppm(const char *path, const vlm_image *img, vlm_error *e);

void image_free(vlm_image *img);

#endif
