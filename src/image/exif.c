/* exif.c: the EXIF Orientation tag (TIFF header, IFD0, tag 0x0112) of a JPEG APP1 segment,
 * and the 8 orientation transforms applied to a decoded RGB image as PIL's
 * ImageOps.exif_transpose does. The TIFF block is untrusted: every offset and count is
 * checked against its length before use. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "util.h"

static uint16_t tiff_u16(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint16_t)((p[0] << 8) | p[1]) : rd_u16(p);
}

static uint32_t tiff_u32(const uint8_t *p, int big_endian)
{
    return big_endian ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]
                      : rd_u32(p);
}

/* tiff: (len) the bytes after "Exif\0\0". Returns the Orientation value when it is present in
 * IFD0 as a SHORT (or LONG) within 1..8, otherwise 1. Never reads outside tiff[0:len]. */
int exif_orientation(const uint8_t *tiff, size_t len)
{
    if (!tiff || len < 8)
        return 1;
    int be;
    if (tiff[0] == 'I' && tiff[1] == 'I')
        be = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M')
        be = 1;
    else
        return 1;
    if (tiff_u16(tiff + 2, be) != 42)
        return 1;
    uint32_t ifd = tiff_u32(tiff + 4, be);
    if (ifd > len || len - ifd < 2)
        return 1;
    size_t count = tiff_u16(tiff + ifd, be);
    size_t avail = (len - ifd - 2) / 12;
    if (count > avail)
        count = avail; /* a truncated directory: look at the entries that are there */
    for (size_t i = 0; i < count; i++) {
        const uint8_t *ent = tiff + ifd + 2 + 12 * i;
        if (tiff_u16(ent, be) != 0x0112)
            continue;
        uint16_t type = tiff_u16(ent + 2, be);
        uint32_t n = tiff_u32(ent + 4, be);
        uint32_t v;
        if (n < 1)
            return 1;
        if (type == 3)
            v = tiff_u16(ent + 8, be);
        else if (type == 4)
            v = tiff_u32(ent + 8, be);
        else
            return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* orientation: 1..8 (anything else is treated as 1, as PIL ignores invalid values).
 * img->rgb: (height, width, 3). On success img holds the transformed image (width and height
 * swapped for 5..8); on allocation failure img is unchanged and VLM_ENOMEM is returned. */
int image_apply_orientation(vlm_image *img, int orientation, vlm_error *e)
{
    if (!img)
        return vlm_fail(e, VLM_EARG, "image_apply_orientation: NULL image");
    if (orientation < 2 || orientation > 8 || !img->rgb || img->width <= 0 || img->height <= 0)
        return 0;
    size_t w = (size_t)img->width, h = (size_t)img->height, bytes;
    if (ck_mul3(w, h, 3, &bytes))
        return vlm_fail(e, VLM_ERANGE, "image_apply_orientation: %zux%zu image too large", w, h);
    uint8_t *dst = malloc(bytes);
    if (!dst)
        return vlm_fail(e, VLM_ENOMEM, "image_apply_orientation: out of memory for %zux%zu", w, h);
    const uint8_t *src = img->rgb;
    int swap = orientation >= 5;
    size_t ow = swap ? h : w, oh = swap ? w : h;
    for (size_t r = 0; r < oh; r++) {
        uint8_t *o = dst + r * ow * 3;
        for (size_t c = 0; c < ow; c++) {
            size_t sr, sc; /* source row and column of output pixel (r, c) */
            switch (orientation) {
            case 2: sr = r; sc = w - 1 - c; break;         /* mirror left-right */
            case 3: sr = h - 1 - r; sc = w - 1 - c; break; /* rotate 180 */
            case 4: sr = h - 1 - r; sc = c; break;         /* mirror top-bottom */
            case 5: sr = c; sc = r; break;                 /* transpose */
            case 6: sr = h - 1 - c; sc = r; break;         /* rotate 90 clockwise */
            case 7: sr = h - 1 - c; sc = w - 1 - r; break; /* transverse */
            default: sr = c; sc = w - 1 - r; break;        /* 8: rotate 90 counter-clockwise */
            }
            memcpy(o + 3 * c, src + (sr * w + sc) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = (int)ow;
    img->height = (int)oh;
    return 0;
}
