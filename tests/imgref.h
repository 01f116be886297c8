/* imgref.h: test support shared by the image decoder tests: runs every file of an asset folder
 * (manifest.json + ref_pil.npz, see ../shared/assets/PROVENANCE.md) through a decoder, checks
 * each refusal against the manifest's expectation and each decode against Pillow's reference,
 * and prints one table row per file (max / mean absolute difference). */
#ifndef VLM_TESTS_IMGREF_H
#define VLM_TESTS_IMGREF_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

typedef int (*imgref_decode_fn)(const uint8_t *buf, size_t len, const char *name,
                                const image_limits *lim, vlm_image *out, vlm_error *e);

/* How 16-bit samples stored as <file>__native16 map to our 8-bit output (Pillow's own RGB of
 * those files clips instead of scaling and is not a meaningful reference). */
enum {
    IMGREF_NATIVE16_HIGH_BYTE = 0, /* v >> 8 (PNG, like Pillow's 16-bit RGB) */
    IMGREF_NATIVE16_ROUND = 1,     /* round(v * 255 / 65535), half to even (PNM, like P6) */
};

typedef struct imgref_totals {
    int files;      /* manifest entries seen */
    int exact;      /* decoded identical to the reference */
    int native16;   /* decoded identical to the documented __native16 mapping */
    int refused;    /* refused as the manifest expects */
    int robustness; /* ROBUSTNESS entries (any outcome but a crash) */
    int failures;   /* anything else: each one is printed with FAIL */
} imgref_totals;

/* Reads a whole file into a malloc'd buffer (NULL if it cannot). */
uint8_t *imgref_read_file(const char *path, size_t *len);

/* Runs the folder dir (with manifest.json and ref_pil.npz; only files whose name ends with
 * suffix, or all when suffix is NULL). Adds to *t. Returns the number of failures. */
int imgref_run_folder(const char *dir, const char *suffix, imgref_decode_fn decode,
                      int native16_rule, imgref_totals *t);

/* Returns nonzero if path exists (the ../shared assets are optional). */
int imgref_exists(const char *path);

#endif
