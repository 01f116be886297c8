/* test_png.c: the PNG decoder and the inflate it relies on. Hand-built deflate streams check
 * every refusal path of inflate; PngSuite and real photos are compared byte for byte with
 * Pillow's convert("RGB") (tests/data/images/png, and all of ../shared/assets/png when present);
 * every prefix and every single-bit corruption of small files must be refused cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "imgref.h"
#include "th.h"

/* image_free without pulling image.o (and through it the JPEG decoder) into the link. */
static void release(vlm_image *img)
{
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

/* An LSB-first bit writer for hand-made deflate streams. */
typedef struct bitwriter {
    uint8_t buf[256]; /* (n) bytes written */
    size_t n;
    uint64_t acc;
    int cnt;
} bitwriter;

static void bw_put(bitwriter *w, uint32_t v, int nbits)
{
    w->acc |= (uint64_t)v << w->cnt;
    w->cnt += nbits;
    while (w->cnt >= 8 && w->n < sizeof w->buf) {
        w->buf[w->n++] = (uint8_t)w->acc;
        w->acc >>= 8;
        w->cnt -= 8;
    }
}

/* Huffman codes are sent most significant bit first. */
static void bw_code(bitwriter *w, uint32_t code, int len)
{
    for (int i = len - 1; i >= 0; i--)
        bw_put(w, (code >> i) & 1, 1);
}

static void bw_flush(bitwriter *w)
{
    if (w->cnt & 7)
        bw_put(w, 0, 8 - (w->cnt & 7));
}

/* A symbol of the fixed literal/length code (RFC 1951 3.2.6). */
static void bw_fixed_lit(bitwriter *w, unsigned sym)
{
    if (sym < 144)
        bw_code(w, 0x30 + sym, 8);
    else if (sym < 256)
        bw_code(w, 0x190 + sym - 144, 9);
    else if (sym < 280)
        bw_code(w, sym - 256, 7);
    else
        bw_code(w, 0xc0 + sym - 280, 8);
}

static uint32_t adler32_ref(const uint8_t *p, size_t n)
{
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return b << 16 | a;
}

static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static int inflate_raw(const bitwriter *w, uint8_t *out, size_t cap, size_t *n, vlm_error *e)
{
    return zlib_inflate(w->buf, w->n, 1, out, cap, n, e);
}

static void test_inflate_streams(void)
{
    uint8_t out[64];
    size_t n = 0;
    vlm_error e = {0, ""};

    /* Fixed block: 'a', then a length-3 match at distance 1: "aaaa". */
    bitwriter w = {{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 1, 2);
    bw_fixed_lit(&w, 'a');
    bw_fixed_lit(&w, 257);
    bw_code(&w, 0, 5);
    bw_fixed_lit(&w, 256);
    bw_flush(&w);
    int rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == 0 && n == 4 && memcmp(out, "aaaa", 4) == 0, "fixed block: rc %d n %zu %s", rc,
             n, e.msg);
    rc = inflate_raw(&w, out, 3, &n, &e);
    TH_CHECK(rc == VLM_ERANGE, "output limit: rc %d %s", rc, e.msg);

    /* A match at distance 2 when only 1 byte exists. */
    w = (bitwriter){{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 1, 2);
    bw_fixed_lit(&w, 'a');
    bw_fixed_lit(&w, 257);
    bw_code(&w, 1, 5);
    bw_fixed_lit(&w, 256);
    bw_flush(&w);
    rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "distance"), "distance too far: rc %d %s", rc,
             e.msg);

    /* Literal/length symbol 286 and distance code 30 exist only in the fixed code: invalid. */
    w = (bitwriter){{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 1, 2);
    bw_fixed_lit(&w, 286);
    bw_flush(&w);
    rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT, "symbol 286: rc %d %s", rc, e.msg);
    w = (bitwriter){{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 1, 2);
    bw_fixed_lit(&w, 'a');
    bw_fixed_lit(&w, 257);
    bw_code(&w, 30, 5);
    bw_flush(&w);
    rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT, "distance code 30: rc %d %s", rc, e.msg);

    /* Block type 3. */
    const uint8_t type3[1] = {0x07};
    rc = zlib_inflate(type3, 1, 1, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "block type"), "type 3: rc %d %s", rc, e.msg);

    /* Dynamic block whose code length code is over-subscribed (19 codes of length 1). */
    w = (bitwriter){{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 2, 2);
    bw_put(&w, 0, 5);
    bw_put(&w, 0, 5);
    bw_put(&w, 15, 4);
    for (int i = 0; i < 19; i++)
        bw_put(&w, 1, 3);
    bw_flush(&w);
    rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "over-subscribed"), "over-subscribed: rc %d %s",
             rc, e.msg);

    /* ... and one that is incomplete (a single code of length 2). */
    w = (bitwriter){{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 2, 2);
    bw_put(&w, 0, 5);
    bw_put(&w, 0, 5);
    bw_put(&w, 0, 4);
    bw_put(&w, 0, 3);
    bw_put(&w, 0, 3);
    bw_put(&w, 0, 3);
    bw_put(&w, 2, 3);
    bw_flush(&w);
    rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "incomplete"), "incomplete: rc %d %s", rc, e.msg);

    /* HLIT of 287 (above 286). */
    w = (bitwriter){{0}, 0, 0, 0};
    bw_put(&w, 1, 1);
    bw_put(&w, 2, 2);
    bw_put(&w, 30, 5);
    bw_put(&w, 0, 5);
    bw_put(&w, 0, 4);
    bw_flush(&w);
    rc = inflate_raw(&w, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT, "HLIT 287: rc %d %s", rc, e.msg);

    /* zlib wrapper around a stored block: good, bad Adler-32, bad NLEN, preset dictionary. */
    uint8_t z[32] = {0x78, 0x01, 0x01, 5, 0, 0xfa, 0xff, 'h', 'e', 'l', 'l', 'o'};
    uint32_t ad = adler32_ref((const uint8_t *)"hello", 5);
    z[12] = (uint8_t)(ad >> 24), z[13] = (uint8_t)(ad >> 16), z[14] = (uint8_t)(ad >> 8);
    z[15] = (uint8_t)ad;
    rc = zlib_inflate(z, 16, 0, out, sizeof out, &n, &e);
    TH_CHECK(rc == 0 && n == 5 && memcmp(out, "hello", 5) == 0, "stored: rc %d %s", rc, e.msg);
    for (size_t cut = 0; cut < 16; cut++) {
        rc = zlib_inflate(z, cut, 0, out, sizeof out, &n, &e);
        TH_CHECK(rc == VLM_EFORMAT, "stored truncated to %zu: rc %d", cut, rc);
    }
    z[15] ^= 1;
    rc = zlib_inflate(z, 16, 0, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "Adler"), "adler: rc %d %s", rc, e.msg);
    z[15] ^= 1;
    z[5] ^= 1;
    rc = zlib_inflate(z, 16, 0, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT, "nlen: rc %d %s", rc, e.msg);
    z[5] ^= 1;
    z[1] = 0x20; /* 0x7820 is a multiple of 31 with FDICT set */
    rc = zlib_inflate(z, 16, 0, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "dictionary"), "fdict: rc %d %s", rc, e.msg);
    z[1] = 0x02; /* header check bits wrong */
    rc = zlib_inflate(z, 16, 0, out, sizeof out, &n, &e);
    TH_CHECK(rc == VLM_EFORMAT, "fcheck: rc %d %s", rc, e.msg);
}

/* Every strict prefix and every single-bit flip of a valid file must be refused (a flip lands
 * in the signature, a length, a type, a CRC or CRC-protected data; bytes after IEND excepted)
 * with a message and no output. */
static void test_truncation_and_corruption(const char *rel)
{
    size_t len = 0;
    uint8_t *buf = imgref_read_file(TH_DATA(rel), &len);
    TH_CHECK(buf != NULL && len > 12, "%s: cannot read", rel);
    if (!buf)
        return;
    vlm_image img;
    vlm_error e = {0, ""};
    int rc = png_decode(buf, len, rel, NULL, &img, &e);
    TH_CHECK(rc == 0, "%s: %s", rel, e.msg);
    release(&img);
    int prefix_bad = 0, flip_bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, buf, cut);
        e.msg[0] = '\0';
        rc = png_decode(copy, cut, rel, NULL, &img, &e);
        if (rc == 0 || img.rgb || !e.msg[0]) {
            prefix_bad++;
            release(&img);
        }
        free(copy);
    }
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1 << bit);
            rc = png_decode(buf, len, rel, NULL, &img, &e);
            if (rc == 0) {
                flip_bad++;
                release(&img);
            }
            buf[i] ^= (uint8_t)(1 << bit);
        }
    }
    printf("%-28s %zu prefixes and %zu bit flips: %d prefixes and %d flips accepted\n", rel, len,
           len * 8, prefix_bad, flip_bad);
    TH_CHECK(prefix_bad == 0, "%s: %d truncated prefixes were accepted", rel, prefix_bad);
    TH_CHECK(flip_bad == 0, "%s: %d bit flips were accepted", rel, flip_bad);
    free(buf);
}

static void test_limits(void)
{
    size_t len = 0;
    uint8_t *buf = imgref_read_file(TH_DATA("images/png/pngsuite/basn2c08.png"), &len);
    TH_CHECK(buf != NULL, "basn2c08.png missing");
    if (!buf)
        return;
    vlm_image img;
    vlm_error e = {0, ""};
    image_limits lim = {32 * 32 - 1, 0};
    int rc = png_decode(buf, len, "basn2c08.png", &lim, &img, &e);
    TH_CHECK(rc == VLM_ERANGE && img.rgb == NULL && strstr(e.msg, "1024 pixels"),
             "pixel limit: rc %d %s", rc, e.msg);
    lim = (image_limits){0, 3000};
    rc = png_decode(buf, len, "basn2c08.png", &lim, &img, &e);
    TH_CHECK(rc == VLM_ERANGE && img.rgb == NULL, "byte budget: rc %d %s", rc, e.msg);
    lim = (image_limits){32 * 32, 1 << 20};
    rc = png_decode(buf, len, "basn2c08.png", &lim, &img, &e);
    TH_CHECK(rc == 0 && img.width == 32 && img.height == 32, "at the limit: rc %d %s", rc, e.msg);
    release(&img);

    /* A valid header announcing 2^31-1 x 2^31-1 must be refused before any allocation. */
    uint8_t big[64];
    memcpy(big, buf, 33);
    big[16] = big[20] = 0x7f;
    big[17] = big[18] = big[19] = big[21] = big[22] = big[23] = 0xff;
    uint32_t crc = crc32_ref(big + 12, 17);
    big[29] = (uint8_t)(crc >> 24), big[30] = (uint8_t)(crc >> 16), big[31] = (uint8_t)(crc >> 8);
    big[32] = (uint8_t)crc;
    static const uint8_t tail[24] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e,
                                     0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    memcpy(big + 33, tail, sizeof tail);
    rc = png_decode(big, 57, "huge.png", NULL, &img, &e);
    TH_CHECK(rc == VLM_ERANGE && strstr(e.msg, "huge.png") && strstr(e.msg, "pixels"),
             "huge header: rc %d %s", rc, e.msg);

    /* 10000 x 10000 is within the limits, but an empty IDAT cannot hold it: refused before
     * allocating the 300 MB the image would need. */
    big[16] = big[17] = big[20] = big[21] = 0;
    big[18] = big[22] = 0x27;
    big[19] = big[23] = 0x10;
    crc = crc32_ref(big + 12, 17);
    big[29] = (uint8_t)(crc >> 24), big[30] = (uint8_t)(crc >> 16), big[31] = (uint8_t)(crc >> 8);
    big[32] = (uint8_t)crc;
    rc = png_decode(big, 57, "bomb.png", NULL, &img, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "cannot hold"), "bomb: rc %d %s", rc, e.msg);
    free(buf);
}

int main(void)
{
    test_inflate_streams();
    test_limits();

    imgref_totals t = {0, 0, 0, 0, 0, 0};
    int fails = imgref_run_folder(TH_DATA("images/png/pngsuite"), ".png", png_decode,
                                  IMGREF_NATIVE16_HIGH_BYTE, &t);
    fails += imgref_run_folder(TH_DATA("images/png/photos"), ".png", png_decode,
                               IMGREF_NATIVE16_HIGH_BYTE, &t);
    TH_CHECK(t.files == 178, "expected 175 PngSuite + 3 photo files, ran %d", t.files);
    TH_CHECK(t.refused == 14, "expected the 14 x*.png refusals, got %d", t.refused);
    if (imgref_exists("../shared/assets/png")) {
        const char *dirs[3] = {"../shared/assets/png/pngsuite", "../shared/assets/png/misc",
                               "../shared/assets/png/generated"};
        for (int i = 0; i < 3; i++)
            fails += imgref_run_folder(dirs[i], ".png", png_decode, IMGREF_NATIVE16_HIGH_BYTE, &t);
    } else {
        printf("SKIP ../shared/assets/png not present\n");
    }
    printf("png: %d files: %d identical to Pillow, %d identical to __native16 >> 8, %d refused "
           "as expected, %d failures\n",
           t.files, t.exact, t.native16, t.refused, t.failures);
    TH_CHECK(fails == 0, "%d files differ from their reference or expectation", fails);

    const char *small[5] = {"images/png/pngsuite/basn0g01.png", "images/png/pngsuite/basi6a08.png",
                            "images/png/pngsuite/basn3p02.png", "images/png/pngsuite/z09n2c08.png",
                            "images/png/pngsuite/s01i3p01.png"};
    for (int i = 0; i < 5; i++)
        test_truncation_and_corruption(small[i]);
    return th_report("test_png");
}
