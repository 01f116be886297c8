/* png.c: the PNG decoder (ISO/IEC 15948): every color type and bit depth, PLTE, Adam7
 * interlace and the five filters, to 8-bit RGB exactly as Pillow's Image.open().convert("RGB")
 * (alpha and tRNS dropped, palette expanded, 16-bit samples keep their high byte).
 * Chunk structure, CRC-32 of every chunk and chunk ordering are checked strictly; the image
 * data is inflated by inflate.c into a buffer sized from the (limit-checked) header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "util.h"

/* Absolute pixel ceiling (2^40), independent of the caller's limits. */
#define PNG_MAX_PIXELS ((uint64_t)1 << 40)

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

enum { COLOR_GRAY = 0, COLOR_RGB = 2, COLOR_PALETTE = 3, COLOR_GRAY_ALPHA = 4, COLOR_RGBA = 6 };

typedef struct png_header {
    uint32_t width, height;
    unsigned depth;       /* bits per sample: 1, 2, 4, 8 or 16 */
    unsigned color;       /* COLOR_* */
    unsigned interlace;   /* 0 none, 1 Adam7 */
    unsigned pixel_bits;  /* depth * samples per pixel */
    uint8_t palette[768]; /* (256, 3); entries beyond PLTE keep Pillow's gray ramp */
    int has_palette;
} png_header;

/* Adam7 pass geometry: first column/row and steps. Pass 7 of a non-interlaced image is the
 * whole image, which lets one code path serve both. */
static const uint8_t ADAM7_X0[7] = {0, 4, 0, 2, 0, 1, 0};
static const uint8_t ADAM7_Y0[7] = {0, 0, 4, 0, 2, 0, 1};
static const uint8_t ADAM7_DX[7] = {8, 8, 4, 4, 2, 2, 1};
static const uint8_t ADAM7_DY[7] = {8, 8, 8, 4, 4, 2, 2};

/* PNG integers are big-endian. */
static uint32_t rd_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* CRC-32 (ISO 3309, reflected polynomial 0xEDB88320), slicing by 8 bytes. The tables are built
 * per decode (~4k operations, far below a chunk walk), which keeps the file global-free. */
typedef struct crc_tables {
    uint32_t t[8][256]; /* t[0]: byte table; t[k][n]: CRC of byte n followed by k zero bytes */
} crc_tables;

static void crc_tables_init(crc_tables *c)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t v = n;
        for (int k = 0; k < 8; k++)
            v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
        c->t[0][n] = v;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++)
            c->t[k][n] = (c->t[k - 1][n] >> 8) ^ c->t[0][c->t[k - 1][n] & 0xff];
}

static uint32_t crc32_of(const crc_tables *c, const uint8_t *p, size_t n)
{
    uint32_t v = 0xffffffffu;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = v ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        v = c->t[7][lo & 0xff] ^ c->t[6][(lo >> 8) & 0xff] ^ c->t[5][(lo >> 16) & 0xff] ^
            c->t[4][lo >> 24] ^ c->t[3][p[4]] ^ c->t[2][p[5]] ^ c->t[1][p[6]] ^ c->t[0][p[7]];
    }
    while (n--)
        v = c->t[0][(v ^ *p++) & 0xff] ^ (v >> 8);
    return v ^ 0xffffffffu;
}

/* Chunk type bytes must be ASCII letters (their case bits carry the chunk properties). */
static int is_chunk_letter(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* Bytes of one filtered row without its filter byte: ceil(width * pixel_bits / 8). width is
 * below 2^31 and pixel_bits at most 64, so the product fits 64 bits. */
static uint64_t row_bytes(uint64_t width, unsigned pixel_bits) { return (width * pixel_bits + 7) / 8; }

/* Pixels of one axis of an Adam7 pass: those at start, start + step, ... below size. */
static uint32_t pass_extent(uint32_t size, unsigned start, unsigned step)
{
    return size > start ? (size - start + step - 1) / step : 0;
}

/* Reads and validates IHDR (13 bytes at d) into h. Returns 0 or VLM_EFORMAT. */
static int parse_ihdr(const uint8_t *d, uint32_t len, const char *name, png_header *h,
                      vlm_error *e)
{
    if (len != 13)
        return vlm_fail(e, VLM_EFORMAT, "%s: IHDR chunk has %u bytes (expected 13)", name, len);
    h->width = rd_be32(d);
    h->height = rd_be32(d + 4);
    h->depth = d[8];
    h->color = d[9];
    h->interlace = d[12];
    if (h->width == 0 || h->height == 0 || h->width > 0x7fffffffu || h->height > 0x7fffffffu)
        return vlm_fail(e, VLM_EFORMAT, "%s: IHDR size %ux%u is invalid (1..2^31-1 each)", name,
                        h->width, h->height);
    unsigned samples, depths; /* depths: bit set of allowed depths */
    switch (h->color) {
    case COLOR_GRAY: samples = 1; depths = 1 | 2 | 4 | 8 | 16; break;
    case COLOR_RGB: samples = 3; depths = 8 | 16; break;
    case COLOR_PALETTE: samples = 1; depths = 1 | 2 | 4 | 8; break;
    case COLOR_GRAY_ALPHA: samples = 2; depths = 8 | 16; break;
    case COLOR_RGBA: samples = 4; depths = 8 | 16; break;
    default:
        return vlm_fail(e, VLM_EFORMAT, "%s: IHDR color type %u is invalid (0, 2, 3, 4 or 6)",
                        name, h->color);
    }
    if (h->depth > 16 || !(h->depth & depths) || (h->depth & (h->depth - 1)))
        return vlm_fail(e, VLM_EFORMAT, "%s: IHDR bit depth %u is invalid for color type %u", name,
                        h->depth, h->color);
    if (d[10] != 0 || d[11] != 0)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: IHDR compression method %u / filter method %u (expected 0 / 0)", name,
                        d[10], d[11]);
    if (h->interlace > 1)
        return vlm_fail(e, VLM_EFORMAT, "%s: IHDR interlace method %u (expected 0 or 1)", name,
                        h->interlace);
    h->pixel_bits = samples * h->depth;
    return 0;
}

/* The Paeth predictor of the PNG specification: whichever of a (left), b (up), c (up-left)
 * is closest to a + b - c, ties going to a, then b. Written with selects, not branches. */
static inline int paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    if (pb < pa) {
        pa = pb;
        a = b;
    }
    return pc < pa ? c : a;
}

/* Paeth for a constant bpp: the bpp byte lanes are independent dependency chains, which the
 * compiler interleaves once bpp is known. Bytes before bpp were done by the caller. */
static inline void unpaeth(uint8_t *cur, const uint8_t *prev, size_t n, size_t bpp)
{
    for (size_t i = bpp; i < n; i++)
        cur[i] = (uint8_t)(cur[i] + paeth(cur[i - bpp], prev[i], prev[i - bpp]));
}

/* Reverses the PNG filter of one row in place. prev is the unfiltered previous row of the same
 * pass (zeros for its first row); bpp is the filter's byte distance (1..8). */
static int unfilter_row(uint8_t *cur, const uint8_t *prev, size_t n, size_t bpp, unsigned type)
{
    size_t i;
    switch (type) {
    case 0:
        break;
    case 1:
        for (i = bpp; i < n; i++)
            cur[i] = (uint8_t)(cur[i] + cur[i - bpp]);
        break;
    case 2:
        for (i = 0; i < n; i++)
            cur[i] = (uint8_t)(cur[i] + prev[i]);
        break;
    case 3:
        for (i = 0; i < bpp && i < n; i++)
            cur[i] = (uint8_t)(cur[i] + (prev[i] >> 1));
        for (; i < n; i++)
            cur[i] = (uint8_t)(cur[i] + ((cur[i - bpp] + prev[i]) >> 1));
        break;
    case 4:
        for (i = 0; i < bpp && i < n; i++)
            cur[i] = (uint8_t)(cur[i] + prev[i]);
        switch (bpp) {
        case 1: unpaeth(cur, prev, n, 1); break;
        case 2: unpaeth(cur, prev, n, 2); break;
        case 3: unpaeth(cur, prev, n, 3); break;
        case 4: unpaeth(cur, prev, n, 4); break;
        case 6: unpaeth(cur, prev, n, 6); break;
        default: unpaeth(cur, prev, n, 8); break;
        }
        break;
    default:
        return -1;
    }
    return 0;
}

/* Writes npix pixels of the unfiltered row to dst, one every `step` bytes, as RGB8 the way
 * Pillow converts them: gray of depth < 8 scaled to 0..255, 16-bit samples keep the high
 * byte, alpha dropped, palette indices expanded. */
static void emit_row(const png_header *h, const uint8_t *row, uint32_t npix, uint8_t *dst,
                     size_t step)
{
    uint32_t x;
    switch (h->color << 5 | h->depth) {
    case COLOR_GRAY << 5 | 1:
    case COLOR_GRAY << 5 | 2:
    case COLOR_GRAY << 5 | 4:
    case COLOR_PALETTE << 5 | 1:
    case COLOR_PALETTE << 5 | 2:
    case COLOR_PALETTE << 5 | 4:
    case COLOR_PALETTE << 5 | 8: {
        unsigned d = h->depth, mask = (1u << d) - 1, scale = 255 / mask;
        int pal = h->color == COLOR_PALETTE;
        for (x = 0; x < npix; x++, dst += step) {
            size_t bit = (size_t)x * d;
            unsigned v = (row[bit >> 3] >> (8 - d - (bit & 7))) & mask;
            if (pal) {
                memcpy(dst, h->palette + 3 * v, 3);
            } else {
                dst[0] = dst[1] = dst[2] = (uint8_t)(v * scale);
            }
        }
        break;
    }
    case COLOR_GRAY << 5 | 8:
        for (x = 0; x < npix; x++, dst += step)
            dst[0] = dst[1] = dst[2] = row[x];
        break;
    case COLOR_GRAY << 5 | 16:
    case COLOR_GRAY_ALPHA << 5 | 8:
        for (x = 0; x < npix; x++, dst += step)
            dst[0] = dst[1] = dst[2] = row[2 * (size_t)x];
        break;
    case COLOR_GRAY_ALPHA << 5 | 16:
        for (x = 0; x < npix; x++, dst += step)
            dst[0] = dst[1] = dst[2] = row[4 * (size_t)x];
        break;
    case COLOR_RGB << 5 | 8:
        if (step == 3) {
            memcpy(dst, row, 3 * (size_t)npix);
            break;
        }
        for (x = 0; x < npix; x++, dst += step)
            memcpy(dst, row + 3 * (size_t)x, 3);
        break;
    case COLOR_RGB << 5 | 16:
        for (x = 0; x < npix; x++, dst += step) {
            const uint8_t *s = row + 6 * (size_t)x;
            dst[0] = s[0], dst[1] = s[2], dst[2] = s[4];
        }
        break;
    case COLOR_RGBA << 5 | 8:
        for (x = 0; x < npix; x++, dst += step)
            memcpy(dst, row + 4 * (size_t)x, 3);
        break;
    case COLOR_RGBA << 5 | 16:
        for (x = 0; x < npix; x++, dst += step) {
            const uint8_t *s = row + 8 * (size_t)x;
            dst[0] = s[0], dst[1] = s[2], dst[2] = s[4];
        }
        break;
    }
}

/* Walks the chunks once: validates structure, CRCs and ordering, reads IHDR and PLTE and sums
 * the IDAT payload. *idat_total receives the compressed byte count. */
static int scan_chunks(const uint8_t *buf, size_t len, const char *name, png_header *h,
                       size_t *idat_total, vlm_error *e)
{
    crc_tables crc;
    crc_tables_init(&crc);
    size_t pos = 8, total = 0;
    int seen_ihdr = 0, seen_iend = 0;
    int idat_run = 0; /* 0: none yet, 1: inside the IDAT run, 2: run ended */
    for (unsigned index = 0; !seen_iend; index++) {
        if (len - pos < 12)
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: truncated: chunk %u header at offset %zu needs 12 bytes, %zu left "
                            "(no IEND chunk)",
                            name, index, pos, len - pos);
        uint32_t clen = rd_be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (!is_chunk_letter(type[0]) || !is_chunk_letter(type[1]) || !is_chunk_letter(type[2]) ||
            !is_chunk_letter(type[3]))
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: chunk %u at offset %zu has an invalid type %02x %02x %02x %02x",
                            name, index, pos, type[0], type[1], type[2], type[3]);
        if (clen > 0x7fffffffu)
            return vlm_fail(e, VLM_EFORMAT, "%s: chunk %u '%.4s' length %u exceeds 2^31-1", name,
                            index, (const char *)type, clen);
        if (len - pos - 12 < clen)
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: truncated: chunk %u '%.4s' at offset %zu needs %u data bytes, %zu "
                            "left",
                            name, index, (const char *)type, pos, clen, len - pos - 12);
        const uint8_t *data = type + 4;
        uint32_t want = rd_be32(data + clen);
        uint32_t got = crc32_of(&crc, type, (size_t)clen + 4);
        if (want != got)
            return vlm_fail(e, VLM_EFORMAT,
                            "%s: chunk %u '%.4s' at offset %zu: CRC-32 mismatch (stored %08x, "
                            "computed %08x)",
                            name, index, (const char *)type, pos, want, got);
        int rc = 0;
        if (index == 0 && memcmp(type, "IHDR", 4) != 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: first chunk is '%.4s' (expected IHDR)", name,
                            (const char *)type);
        if (memcmp(type, "IDAT", 4) == 0) {
            if (idat_run == 2)
                return vlm_fail(e, VLM_EFORMAT,
                                "%s: IDAT chunk %u at offset %zu is separated from the previous "
                                "IDAT chunks",
                                name, index, pos);
            if (h->color == COLOR_PALETTE && !h->has_palette)
                return vlm_fail(e, VLM_EFORMAT,
                                "%s: palette image has no PLTE chunk before its IDAT", name);
            idat_run = 1;
            total += clen; /* at most len: cannot overflow */
        } else {
            if (idat_run == 1)
                idat_run = 2;
            if (memcmp(type, "IHDR", 4) == 0) {
                if (seen_ihdr)
                    return vlm_fail(e, VLM_EFORMAT, "%s: second IHDR chunk at offset %zu", name,
                                    pos);
                seen_ihdr = 1;
                rc = parse_ihdr(data, clen, name, h, e);
            } else if (memcmp(type, "PLTE", 4) == 0) {
                if (h->has_palette)
                    return vlm_fail(e, VLM_EFORMAT, "%s: second PLTE chunk at offset %zu", name,
                                    pos);
                if (idat_run)
                    return vlm_fail(e, VLM_EFORMAT, "%s: PLTE chunk after the image data", name);
                if (clen == 0 || clen % 3 != 0 || clen > 768)
                    return vlm_fail(e, VLM_EFORMAT,
                                    "%s: PLTE chunk has %u bytes (expected 3..768, a multiple of 3)",
                                    name, clen);
                /* Grayscale images must not carry a palette; like Pillow and libpng, ignore it. */
                if (h->color != COLOR_GRAY && h->color != COLOR_GRAY_ALPHA) {
                    memcpy(h->palette, data, clen);
                    h->has_palette = 1;
                }
            } else if (memcmp(type, "IEND", 4) == 0) {
                if (!idat_run)
                    return vlm_fail(e, VLM_EFORMAT, "%s: no IDAT chunk before IEND", name);
                seen_iend = 1;
            } else if (!(type[0] & 0x20)) {
                return vlm_fail(e, VLM_EUNSUPPORTED,
                                "%s: unknown critical chunk '%.4s' at offset %zu", name,
                                (const char *)type, pos);
            }
            /* Ancillary chunks (tRNS, gAMA, iCCP, text, ...) do not change Pillow's RGB. */
        }
        if (rc)
            return rc;
        pos += 12 + (size_t)clen;
    }
    *idat_total = total;
    return 0;
}

/* Copies the IDAT payloads of the already validated chunk sequence into dst. */
static void gather_idat(const uint8_t *buf, uint8_t *dst)
{
    size_t pos = 8;
    for (;;) {
        uint32_t clen = rd_be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        if (memcmp(type, "IDAT", 4) == 0) {
            memcpy(dst, type + 4, clen);
            dst += clen;
        } else if (memcmp(type, "IEND", 4) == 0) {
            return;
        }
        pos += 12 + (size_t)clen;
    }
}

/* Contract in decoders.h. Errors: VLM_EFORMAT (corrupt, truncated or misordered chunks, bad
 * CRC, bad image data), VLM_EUNSUPPORTED (unknown critical chunk), VLM_ERANGE (over lim or
 * more image data than the header allows), VLM_ENOMEM. */
int png_decode(const uint8_t *buf, size_t len, const char *name, const image_limits *lim,
               vlm_image *out, vlm_error *e)
{
    memset(out, 0, sizeof *out);
    if (!name)
        name = "png";
    if (len < 8 || memcmp(buf, PNG_SIGNATURE, 8) != 0)
        return vlm_fail(e, VLM_EFORMAT, "%s: not a PNG file (bad 8-byte signature)", name);
    uint64_t max_pixels = lim && lim->max_pixels ? lim->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : IMAGE_DEFAULT_MAX_BYTES;

    png_header h;
    memset(&h, 0, sizeof h);
    for (unsigned i = 0; i < 256; i++) /* Pillow's default palette: a gray ramp */
        h.palette[3 * i] = h.palette[3 * i + 1] = h.palette[3 * i + 2] = (uint8_t)i;
    size_t idat_total = 0;
    int rc = scan_chunks(buf, len, name, &h, &idat_total, e);
    if (rc)
        return rc;

    uint64_t pixels = (uint64_t)h.width * h.height;
    /* The fixed 2^40 ceiling keeps every size below in 64 bits whatever limits the caller set. */
    if (pixels > max_pixels || pixels > PNG_MAX_PIXELS)
        return vlm_fail(e, VLM_ERANGE, "%s: %ux%u = %llu pixels exceeds the limit of %llu", name,
                        h.width, h.height, (unsigned long long)pixels,
                        (unsigned long long)max_pixels);
    /* Size of the filtered image data over the passes, and of the widest row. */
    unsigned first_pass = h.interlace ? 0 : 6;
    uint64_t raw_size = 0, widest = 0;
    for (unsigned p = first_pass; p < 7; p++) {
        uint32_t pw = pass_extent(h.width, h.interlace ? ADAM7_X0[p] : 0, h.interlace ? ADAM7_DX[p] : 1);
        uint32_t ph = pass_extent(h.height, h.interlace ? ADAM7_Y0[p] : 0, h.interlace ? ADAM7_DY[p] : 1);
        if (!pw || !ph)
            continue;
        uint64_t rb = row_bytes(pw, h.pixel_bits);
        raw_size += (rb + 1) * ph; /* <= 8 * 2^40 + 2^31 per pass: no overflow */
        if (rb > widest)
            widest = rb;
    }
    /* Deflate expands at most 1032:1 (a 258-byte match in two 1-bit codes): refuse data that
     * cannot fill the image before allocating for it. */
    if (raw_size / 1032 > (uint64_t)idat_total + 1)
        return vlm_fail(e, VLM_EFORMAT,
                        "%s: %zu bytes of image data cannot hold the %llu bytes a %ux%u image needs "
                        "(file truncated?)",
                        name, idat_total, (unsigned long long)raw_size, h.width, h.height);
    uint64_t rgb_size = pixels * 3;
    uint64_t need = rgb_size + raw_size + idat_total + widest;
    if (need > max_bytes || raw_size > SIZE_MAX || need > SIZE_MAX)
        return vlm_fail(e, VLM_ERANGE,
                        "%s: %ux%u decoding needs %llu bytes of memory, over the budget of %zu",
                        name, h.width, h.height, (unsigned long long)need, max_bytes);

    uint8_t *idat = malloc(idat_total ? idat_total : 1);
    uint8_t *raw = malloc((size_t)raw_size);
    uint8_t *zero_row = calloc(1, (size_t)widest + 1);
    uint8_t *rgb = malloc((size_t)rgb_size);
    if (!idat || !raw || !zero_row || !rgb) {
        rc = vlm_fail(e, VLM_ENOMEM, "%s: out of memory for a %ux%u image", name, h.width,
                      h.height);
        goto done;
    }
    gather_idat(buf, idat);
    size_t produced = 0;
    vlm_error ze;
    rc = zlib_inflate(idat, idat_total, 0, raw, (size_t)raw_size, &produced, &ze);
    if (rc) {
        rc = vlm_fail(e, rc, "%s: image data: %s", name, ze.msg);
        goto done;
    }
    if (produced != raw_size) {
        rc = vlm_fail(e, VLM_EFORMAT,
                      "%s: image data ends early: %zu of %llu bytes (file truncated?)", name,
                      produced, (unsigned long long)raw_size);
        goto done;
    }
    size_t bpp = h.pixel_bits < 8 ? 1 : h.pixel_bits / 8;
    uint8_t *row = raw;
    for (unsigned p = first_pass; p < 7; p++) {
        unsigned x0 = h.interlace ? ADAM7_X0[p] : 0, y0 = h.interlace ? ADAM7_Y0[p] : 0;
        unsigned dx = h.interlace ? ADAM7_DX[p] : 1, dy = h.interlace ? ADAM7_DY[p] : 1;
        uint32_t pw = pass_extent(h.width, x0, dx), ph = pass_extent(h.height, y0, dy);
        if (!pw || !ph)
            continue;
        size_t rb = (size_t)row_bytes(pw, h.pixel_bits);
        const uint8_t *prev = zero_row;
        for (uint32_t y = 0; y < ph; y++) {
            if (unfilter_row(row + 1, prev, rb, bpp, row[0])) {
                rc = vlm_fail(e, VLM_EFORMAT,
                              "%s: row %u of pass %u has filter type %u (expected 0..4)", name, y,
                              h.interlace ? p + 1 : 1, row[0]);
                goto done;
            }
            uint8_t *dst = rgb + ((size_t)(y0 + (size_t)y * dy) * h.width + x0) * 3;
            emit_row(&h, row + 1, pw, dst, (size_t)dx * 3);
            prev = row + 1;
            row += rb + 1;
        }
    }
    out->width = (int)h.width;
    out->height = (int)h.height;
    out->rgb = rgb;
    rgb = NULL;
    rc = 0;
done:
    free(idat);
    free(raw);
    free(zero_row);
    free(rgb);
    return rc;
}
