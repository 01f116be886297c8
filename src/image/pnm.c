/* pnm.c: the Netpbm decoders P1..P6 (bitmap, graymap, pixmap; ASCII and binary) to 8-bit RGB
 * as Pillow's Image.open().convert("RGB") gives them: samples scaled by round(v * 255 / maxval)
 * (round half to even, in double precision, as Python does), gray expanded to RGB, 1 = black
 * in bitmaps. Header numbers, comments and every raster sample are bounds-checked. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "util.h"

typedef struct pnm_reader {
    const uint8_t *buf;
    size_t len; /* bytes in buf */
    size_t pos; /* next unread byte */
    const char *name;
    vlm_error *e;
} pnm_reader;

/* Netpbm whitespace: space, TAB, LF, VT, FF, CR. */
static int is_pnm_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Skips whitespace and '#' comments (which run to the next CR or LF). */
static void skip_space(pnm_reader *r)
{
    while (r->pos < r->len) {
        uint8_t c = r->buf[r->pos];
        if (c == '#') {
            while (r->pos < r->len && r->buf[r->pos] != '\n' && r->buf[r->pos] != '\r')
                r->pos++;
        } else if (is_pnm_space(c)) {
            r->pos++;
        } else {
            break;
        }
    }
}

/* Reads one header number in 1..max after whitespace/comments. what names it in errors. */
static int read_header_number(pnm_reader *r, const char *what, uint32_t max, uint32_t *out)
{
    skip_space(r);
    size_t start = r->pos;
    uint64_t v = 0;
    while (r->pos < r->len && r->buf[r->pos] >= '0' && r->buf[r->pos] <= '9') {
        v = v * 10 + (uint64_t)(r->buf[r->pos] - '0');
        if (v > max)
            return vlm_fail(r->e, VLM_EFORMAT, "%s: header %s at offset %zu exceeds %u", r->name,
                            what, start, max);
        r->pos++;
    }
    if (r->pos == start && r->pos >= r->len)
        return vlm_fail(r->e, VLM_EFORMAT, "%s: truncated: header %s expected at offset %zu",
                        r->name, what, start);
    if (r->pos == start)
        return vlm_fail(r->e, VLM_EFORMAT, "%s: header %s expected at offset %zu, found byte %02x",
                        r->name, what, start, r->buf[r->pos]);
    if (r->pos < r->len && !is_pnm_space(r->buf[r->pos]) && r->buf[r->pos] != '#')
        return vlm_fail(r->e, VLM_EFORMAT, "%s: header %s at offset %zu is followed by byte %02x",
                        r->name, what, start, r->buf[r->pos]);
    if (v == 0)
        return vlm_fail(r->e, VLM_EFORMAT, "%s: header %s is 0 (expected 1..%u)", r->name, what,
                        max);
    *out = (uint32_t)v;
    return 0;
}

/* Reads one ASCII raster sample in 0..maxval; bitmaps (P1) take single '0'/'1' digits, which
 * may be written without separators. index is the sample number for error messages. */
static int read_ascii_sample(pnm_reader *r, int bitmap, uint32_t maxval, size_t index,
                             uint32_t *out)
{
    skip_space(r);
    if (r->pos >= r->len)
        return vlm_fail(r->e, VLM_EFORMAT, "%s: truncated: raster ends at sample %zu", r->name,
                        index);
    uint8_t c = r->buf[r->pos];
    if (bitmap) {
        if (c != '0' && c != '1')
            return vlm_fail(r->e, VLM_EFORMAT,
                            "%s: sample %zu at offset %zu is byte %02x (expected '0' or '1')",
                            r->name, index, r->pos, c);
        r->pos++;
        *out = (uint32_t)(c - '0');
        return 0;
    }
    size_t start = r->pos;
    uint32_t v = 0;
    while (r->pos < r->len && r->buf[r->pos] >= '0' && r->buf[r->pos] <= '9') {
        v = v * 10 + (uint32_t)(r->buf[r->pos] - '0');
        if (v > maxval)
            return vlm_fail(r->e, VLM_EFORMAT,
                            "%s: sample %zu at offset %zu exceeds maxval %u", r->name, index,
                            start, maxval);
        r->pos++;
    }
    if (r->pos == start || (r->pos < r->len && !is_pnm_space(r->buf[r->pos]) &&
                            r->buf[r->pos] != '#'))
        return vlm_fail(r->e, VLM_EFORMAT, "%s: sample %zu at offset %zu is not a number",
                        r->name, index, start);
    *out = v;
    return 0;
}

/* Contract in decoders.h. Errors: VLM_EFORMAT (bad magic, header or raster, truncation),
 * VLM_ERANGE (over lim), VLM_ENOMEM. Bytes after the raster are ignored (Netpbm allows
 * several images per file; the first one is decoded). */
int pnm_decode(const uint8_t *buf, size_t len, const char *name, const image_limits *lim,
               vlm_image *out, vlm_error *e)
{
    memset(out, 0, sizeof *out);
    if (!name)
        name = "pnm";
    if (len < 3 || buf[0] != 'P' || buf[1] < '1' || buf[1] > '6' || !is_pnm_space(buf[2]))
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: not a PNM file (expected P1..P6 and whitespace at the start)", name);
    uint64_t max_pixels = lim && lim->max_pixels ? lim->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : IMAGE_DEFAULT_MAX_BYTES;
    int kind = buf[1] - '0';
    int ascii = kind <= 3;
    int bitmap = kind == 1 || kind == 4;
    unsigned channels = (kind == 3 || kind == 6) ? 3 : 1;
    pnm_reader r = {buf, len, 2, name, e};
    uint32_t width, height, maxval = 1;
    int rc = read_header_number(&r, "width", 0x7fffffffu, &width);
    if (!rc)
        rc = read_header_number(&r, "height", 0x7fffffffu, &height);
    if (!rc && !bitmap)
        rc = read_header_number(&r, "maxval", 65535, &maxval);
    if (rc)
        return rc;
    uint64_t pixels = (uint64_t)width * height;
    if (pixels > max_pixels)
        return vlm_fail(e, VLM_ERANGE, "%s: %ux%u = %llu pixels exceeds the limit of %llu", name,
                        width, height, (unsigned long long)pixels, (unsigned long long)max_pixels);
    /* Every pixel takes at least one bit of the file (P4): this bounds pixels by 2^36 before
     * the sizes below are computed, whatever limits the caller set. */
    if (pixels / 8 > len)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: truncated: a %ux%u image cannot fit in a %zu-byte file", name, width,
                        height, len);
    uint64_t samples = pixels * channels;
    size_t sample_bytes = maxval > 255 ? 2 : 1;
    /* Raster bytes the header promises; checked against the file before any allocation. */
    uint64_t need;
    if (ascii) {
        need = bitmap ? samples : 2 * samples - 1; /* one digit each, separators between */
        skip_space(&r);
    } else {
        /* Exactly one whitespace byte ends the header (read_header_number left it unread);
         * a comment there is consumed with its line end. */
        if (r.pos < len && r.buf[r.pos] == '#') {
            while (r.pos < len && r.buf[r.pos] != '\n' && r.buf[r.pos] != '\r')
                r.pos++;
        }
        if (r.pos >= len)
            return vlm_fail(e, VLM_EFORMAT, "%s: truncated: header ends without the raster", name);
        r.pos++;
        need = bitmap ? (uint64_t)height * ((width + 7) / 8) : samples * sample_bytes;
    }
    if (need > len - r.pos)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: truncated: %ux%u raster needs %s%llu bytes, the file has %zu left",
                        name, width, height, ascii ? "at least " : "", (unsigned long long)need,
                        len - r.pos);
    uint64_t rgb_size = pixels * 3;
    uint64_t lut_size = maxval == 255 || bitmap ? 0 : (uint64_t)(sample_bytes == 2 ? 65536 : 256);
    if (rgb_size + lut_size > max_bytes || rgb_size > SIZE_MAX)
        return vlm_fail(e, VLM_ERANGE, "%s: %ux%u needs %llu bytes of memory, over the budget of %zu",
                        name, width, height, (unsigned long long)(rgb_size + lut_size), max_bytes);
    uint8_t *rgb = malloc((size_t)rgb_size);
    uint8_t *lut = lut_size ? malloc((size_t)lut_size) : NULL;
    if (!rgb || (lut_size && !lut)) {
        free(rgb);
        free(lut);
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory for a %ux%u image", name, width, height);
    }
    if (lut) {
        /* Pillow: min(255, round(v / maxval * 255)) in doubles with Python's half-to-even
         * rounding; binary samples above maxval saturate at 255. */
        for (size_t v = 0; v < lut_size; v++) {
            double s = (double)v / maxval * 255.0;
            lut[v] = v > maxval ? 255 : (uint8_t)nearbyint(s);
        }
    }
    const uint8_t *p = buf + r.pos;
    size_t n_samples = (size_t)samples;
    if (bitmap && !ascii) {
        size_t stride = (width + 7) / 8;
        for (uint32_t y = 0; y < height; y++) {
            const uint8_t *src = p + (size_t)y * stride;
            uint8_t *dst = rgb + (size_t)y * width * 3;
            for (uint32_t x = 0; x < width; x++, dst += 3)
                dst[0] = dst[1] = dst[2] = (src[x >> 3] >> (7 - (x & 7)) & 1) ? 0 : 255;
        }
    } else if (!ascii) {
        uint8_t *dst = rgb;
        for (size_t i = 0; i < n_samples; i++) {
            uint8_t v;
            if (sample_bytes == 2)
                v = lut[(size_t)p[2 * i] << 8 | p[2 * i + 1]];
            else
                v = lut ? lut[p[i]] : p[i];
            if (channels == 3) {
                *dst++ = v;
            } else {
                dst[0] = dst[1] = dst[2] = v;
                dst += 3;
            }
        }
    } else {
        uint8_t *dst = rgb;
        for (size_t i = 0; i < n_samples; i++) {
            uint32_t s = 0;
            rc = read_ascii_sample(&r, bitmap, maxval, i, &s);
            if (rc) {
                free(rgb);
                free(lut);
                return rc;
            }
            uint8_t v = bitmap ? (s ? 0 : 255) : lut ? lut[s] : (uint8_t)s;
            if (channels == 3) {
                *dst++ = v;
            } else {
                dst[0] = dst[1] = dst[2] = v;
                dst += 3;
            }
        }
    }
    free(lut);
    out->width = (int)width;
    out->height = (int)height;
    out->rgb = rgb;
    return 0;
}
