/* test_pnm.c: the PNM decoder (P1..P6). Small hand-written files check the header grammar
 * (comments, whitespace), maxval scaling with Pillow's rounding, bitmaps and every refusal;
 * the ppm assets are compared with Pillow's convert("RGB") (tests/data/images/ppm, and all of
 * ../shared/assets/ppm when present); prefixes of valid files must be refused cleanly. */
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

typedef struct pnm_case {
    const char *what;
    const char *data; /* file bytes (binary ones written with escapes) */
    size_t len;       /* 0: strlen(data) */
    int rc;           /* expected return code */
    int w, h;
    const char *rgb; /* expected (h, w, 3) bytes when rc == 0 */
    const char *msg; /* expected substring of the error message when rc != 0 */
} pnm_case;

static const pnm_case CASES[] = {
    {"P1 with adjacent digits", "P1\n3 2\n0 1 0\n101\n", 0, 0, 3, 2,
     "\xff\xff\xff\0\0\0\xff\xff\xff" "\0\0\0\xff\xff\xff\0\0\0", NULL},
    {"P4 bit rows padded", "P4 3 2\n\xa0\x40", 0, 0, 3, 2,
     "\0\0\0\xff\xff\xff\0\0\0" "\xff\xff\xff\0\0\0\xff\xff\xff", NULL},
    {"P2 comments and tabs", "P2\n# a comment\n2\t1 # trailing\n255\n0 255", 0, 0, 2, 1,
     "\0\0\0\xff\xff\xff", NULL},
    {"P2 maxval 2: 1 -> round(127.5) = 128 (half to even)", "P2 3 1 2 0 1 2\n", 0, 0, 3, 1,
     "\0\0\0\x80\x80\x80\xff\xff\xff", NULL},
    {"P2 maxval 6: 1 -> round(42.5) = 42", "P2 2 1 6 1 5\n", 0, 0, 2, 1,
     "\x2a\x2a\x2a\xd4\xd4\xd4", NULL},
    {"P3 maxval 1000", "P3 1 1 1000 1000 0 500\n", 0, 0, 1, 1, "\xff\x00\x80", NULL},
    {"P5 raw with comment after maxval", "P5 2 1 255#c\n\x10\x20", 0, 0, 2, 1,
     "\x10\x10\x10\x20\x20\x20", NULL},
    {"P5 raw sample above maxval saturates", "P5 2 1 100\n\x32\xc8", 0, 0, 2, 1,
     "\x80\x80\x80\xff\xff\xff", NULL},
    {"P6 16-bit big-endian", "P6 1 1 65535\n\xff\xff\x80\x80\x00\x01", 19, 0, 1, 1,
     "\xff\x80\x00", NULL},
    {"P5 16-bit maxval 1023", "P5 2 1 1023\n\x03\xff\x02\x00", 16, 0, 2, 1,
     "\xff\xff\xff\x80\x80\x80", NULL},
    {"P6 trailing bytes ignored (next image)", "P6 1 1 255\n\x01\x02\x03P6 1 1 255\n", 0, 0, 1,
     1, "\x01\x02\x03", NULL},
    {"P7 (PAM) is not PNM", "P7\nWIDTH 1\n", 0, VLM_EFORMAT, 0, 0, NULL, "not a PNM"},
    {"magic without whitespace", "P61 1 255\n\0\0\0", 13, VLM_EFORMAT, 0, 0, NULL, "not a PNM"},
    {"width 0", "P6 0 1 255\n", 0, VLM_EFORMAT, 0, 0, NULL, "width is 0"},
    {"maxval 0", "P5 1 1 0\n\0", 10, VLM_EFORMAT, 0, 0, NULL, "maxval is 0"},
    {"maxval 65536", "P5 1 1 65536\n\0\0", 15, VLM_EFORMAT, 0, 0, NULL, "maxval"},
    {"width beyond 2^31", "P5 99999999999 1 255\n\0", 0, VLM_EFORMAT, 0, 0, NULL, "exceeds"},
    {"negative height", "P5 1 -1 255\n\0", 13, VLM_EFORMAT, 0, 0, NULL, "height"},
    {"letters in a number", "P5 1x 1 255\n\0", 13, VLM_EFORMAT, 0, 0, NULL, "width"},
    {"missing maxval", "P5 1 1", 0, VLM_EFORMAT, 0, 0, NULL, "truncated"},
    {"raw raster short", "P6 2 2 255\n\1\2\3\4\5\6\7\10\11\12\13", 22, VLM_EFORMAT, 0, 0, NULL,
     "truncated"},
    {"ASCII sample above maxval", "P2 2 1 15 3 16\n", 0, VLM_EFORMAT, 0, 0, NULL, "maxval 15"},
    {"ASCII garbage sample", "P3 1 1 255 1 2 x\n", 0, VLM_EFORMAT, 0, 0, NULL, "not a number"},
    {"ASCII too few samples", "P3 2 1 255 1 2 3 4 5\n", 0, VLM_EFORMAT, 0, 0, NULL, "truncated"},
    {"P1 bad digit", "P1 2 1 0 2\n", 0, VLM_EFORMAT, 0, 0, NULL, "expected '0' or '1'"},
    {"1e8 pixels in a tiny file", "P5 10000 10000 255\n\1", 0, VLM_EFORMAT, 0, 0, NULL,
     "cannot fit"},
    {"huge image over the pixel limit", "P6 100000 100000 255\n", 0, VLM_ERANGE, 0, 0, NULL,
     "pixels exceeds"},
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const pnm_case *c = &CASES[i];
        size_t len = c->len ? c->len : strlen(c->data);
        uint8_t *buf = malloc(len); /* exact size: ASan sees any over-read */
        memcpy(buf, c->data, len);
        vlm_image img;
        vlm_error e = {0, ""};
        int rc = pnm_decode(buf, len, "case.pnm", NULL, &img, &e);
        free(buf);
        if (c->rc == 0) {
            int same = rc == 0 && img.width == c->w && img.height == c->h &&
                       memcmp(img.rgb, c->rgb, (size_t)c->w * c->h * 3) == 0;
            TH_CHECK(same, "%s: rc %d %s", c->what, rc, e.msg);
        } else {
            TH_CHECK(rc == c->rc && img.rgb == NULL && strstr(e.msg, "case.pnm") &&
                         strstr(e.msg, c->msg),
                     "%s: rc %d (expected %d) '%s' (expected '%s')", c->what, rc, c->rc, e.msg,
                     c->msg);
        }
        release(&img);
    }
}

/* Refusal of prefixes: a binary file must be refused at every strict prefix; an ASCII one at
 * every prefix that ends before its last sample starts (shorter prefixes of the last number
 * are themselves valid numbers), and never crash. */
static void test_prefixes(const char *rel, int ascii)
{
    size_t len = 0;
    uint8_t *buf = imgref_read_file(TH_DATA(rel), &len);
    TH_CHECK(buf != NULL && len > 16, "%s: cannot read", rel);
    if (!buf)
        return;
    size_t last_start = len;
    if (ascii) {
        while (last_start > 0 && !(buf[last_start - 1] >= '0' && buf[last_start - 1] <= '9'))
            last_start--;
        while (last_start > 0 && buf[last_start - 1] >= '0' && buf[last_start - 1] <= '9')
            last_start--;
    }
    int accepted = 0, tried = 0;
    for (size_t cut = 0; cut < len; cut++) {
        /* ASCII decoding is linear in the prefix: sample its prefixes, keep the end dense. */
        if (ascii && cut % 61 != 0 && cut + 64 < len)
            continue;
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        vlm_image img;
        vlm_error e = {0, ""};
        int rc = pnm_decode(copy, cut, rel, NULL, &img, &e);
        free(copy);
        tried++;
        if (rc == 0 && cut <= last_start)
            accepted++;
        if (rc != 0 && (img.rgb || !e.msg[0]))
            accepted++;
        release(&img);
    }
    printf("%-36s %d prefixes tried, %d wrongly accepted\n", rel, tried, accepted);
    TH_CHECK(accepted == 0, "%s: %d prefixes accepted", rel, accepted);
    free(buf);
}

int main(void)
{
    test_cases();
    imgref_totals t = {0, 0, 0, 0, 0, 0};
    int fails = imgref_run_folder(TH_DATA("images/ppm"), NULL, pnm_decode, IMGREF_NATIVE16_ROUND,
                                  &t);
    TH_CHECK(t.files == 4 && t.exact == 3 && t.native16 == 1, "ran %d files, %d exact, %d native16",
             t.files, t.exact, t.native16);
    if (imgref_exists("../shared/assets/ppm"))
        fails += imgref_run_folder("../shared/assets/ppm", NULL, pnm_decode, IMGREF_NATIVE16_ROUND,
                                   &t);
    else
        printf("SKIP ../shared/assets/ppm not present\n");
    printf("pnm: %d files: %d identical to Pillow, %d identical to round(__native16*255/65535), "
           "%d failures\n",
           t.files, t.exact, t.native16, t.failures);
    TH_CHECK(fails == 0, "%d files differ from their reference", fails);
    test_prefixes("images/ppm/testorig.pgm", 0);
    test_prefixes("images/ppm/monkey16.pgm", 0);
    test_prefixes("images/ppm/dog_crop_65x47_ascii_P3.ppm", 1);
    return th_report("test_pnm");
}
