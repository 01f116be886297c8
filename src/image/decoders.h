/* decoders.h: internal interface between image.c (format detection, limits, EXIF
 * orientation) and the per-format decoders. Not part of the public API.
 * Each decoder fills *out with a malloc'd RGB8 buffer or returns a VLM_E* code with a message
 * that names the file (name) and the offending values; it never reads outside buf[0:len]. */
#ifndef VLM_DECODERS_H
#define VLM_DECODERS_H

#include "image.h"

/* JPEG (SOF0/1/2). *exif_orientation receives the EXIF Orientation tag (1..8), or 1 when the
 * file has none or it is invalid. */
int jpeg_decode(const uint8_t *buf, size_t len, const char *name, const image_limits *lim,
                vlm_image *out, int *exif_orientation, vlm_error *e);
int png_decode(const uint8_t *buf, size_t len, const char *name, const image_limits *lim,
               vlm_image *out, vlm_error *e);
int pnm_decode(const uint8_t *buf, size_t len, const char *name, const image_limits *lim,
               vlm_image *out, vlm_error *e);

/* Orientation tag (1..8) of a TIFF/EXIF block (the bytes after "Exif\0\0"); 1 if absent. */
int exif_orientation(const uint8_t *tiff, size_t len);
/* Rotates/flips img in place (reallocating) so it appears as a person sees it. */
int image_apply_orientation(vlm_image *img, int orientation, vlm_error *e);

/* zlib stream (RFC 1950) inflate into out[0:out_cap]; *out_len gets the bytes produced.
 * Refuses output beyond out_cap (VLM_ERANGE) and checks the Adler-32. Shared by PNG and by
 * the tests that read .npz references. raw: 1 for a bare deflate stream (RFC 1951). */
int zlib_inflate(const uint8_t *in, size_t in_len, int raw, uint8_t *out, size_t out_cap,
                 size_t *out_len, vlm_error *e);

#endif
