/* test_image.c: the public image API (image.c): format detection by magic bytes, the error for
 * unknown formats, limits passed through to the decoders, file reading (missing file,
 * directory, > 1 GiB) and the binary PPM writer (round trip through the PNM decoder). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decoders.h"
#include "imgref.h"
#include "th.h"

static void test_detection(void)
{
    vlm_image img;
    vlm_error e = {0, ""};
    int rc = image_decode_buffer((const uint8_t *)"", 0, "empty.bin", 0, NULL, &img, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "empty.bin: empty file"), "empty: %d %s", rc,
             e.msg);
    const uint8_t gif[10] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
    rc = image_decode_buffer(gif, sizeof gif, "x.gif", 0, NULL, &img, &e);
    TH_CHECK(rc == VLM_EFORMAT &&
                 strcmp(e.msg, "x.gif: not a JPEG, PNG or PNM file (starts with 47 49 46 38)") == 0,
             "gif: %d %s", rc, e.msg);
    TH_CHECK(img.rgb == NULL && img.width == 0 && img.height == 0, "output not zeroed");
    rc = image_decode_buffer((const uint8_t *)"\xff\xd8", 2, "two.jpg", 0, NULL, &img, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "starts with ff d8"), "2 bytes: %d %s", rc, e.msg);
    rc = image_decode_buffer(gif, sizeof gif, "x", 0, NULL, NULL, &e);
    TH_CHECK(rc == VLM_EARG, "NULL out: %d", rc);
    /* PngSuite's xcrn0g04: the signature's CR LF altered as a text-mode transfer does. */
    const uint8_t crlf[12] = {0x89, 'P', 'N', 'G', 0x0d, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0};
    rc = image_decode_buffer(crlf, sizeof crlf, "x.png", 0, NULL, &img, &e);
    TH_CHECK(rc == VLM_EFORMAT && strstr(e.msg, "x.png: damaged PNG signature"), "damaged PNG: %d %s", rc, e.msg);

    /* Each format reaches its decoder; PNM and PNG results equal the direct decoders'. */
    const char *files[3] = {"images/png/pngsuite/basn3p08.png", "images/ppm/testorig.pgm",
                            "fixtures/tiny-v2/goldens/image.jpg"};
    for (int i = 0; i < 3; i++) {
        size_t len = 0;
        uint8_t *buf = imgref_read_file(TH_DATA(files[i]), &len);
        TH_CHECK(buf != NULL, "%s missing", files[i]);
        if (!buf)
            continue;
        rc = image_decode_file(TH_DATA(files[i]), IMAGE_EXIF_APPLY, NULL, &img, &e);
        TH_CHECK(rc == 0 && img.width > 0 && img.height > 0, "%s: %d %s", files[i], rc, e.msg);
        vlm_image direct;
        int drc = i == 0   ? png_decode(buf, len, files[i], NULL, &direct, &e)
                  : i == 1 ? pnm_decode(buf, len, files[i], NULL, &direct, &e)
                           : image_decode_buffer(buf, len, files[i], 0, NULL, &direct, &e);
        TH_CHECK(drc == 0 && rc == 0 && direct.width == img.width && direct.height == img.height &&
                     memcmp(direct.rgb, img.rgb, (size_t)img.width * img.height * 3) == 0,
                 "%s: dispatch differs from the direct decoder", files[i]);
        /* Limits are passed through. */
        image_limits lim = {(uint64_t)img.width * img.height - 1, 0};
        vlm_image small;
        int lrc = image_decode_buffer(buf, len, files[i], 0, &lim, &small, &e);
        TH_CHECK(lrc == VLM_ERANGE && small.rgb == NULL, "%s: limit not applied: %d %s", files[i],
                 lrc, e.msg);
        image_free(&small);
        image_free(&direct);
        image_free(&img);
        free(buf);
    }
}

static void test_files(void)
{
    vlm_image img;
    vlm_error e = {0, ""};
    int rc = image_decode_file("tests/data/images/no-such-file.png", 0, NULL, &img, &e);
    TH_CHECK(rc == VLM_EIO && strstr(e.msg, "no-such-file.png: cannot open"), "missing: %d %s",
             rc, e.msg);
    rc = image_decode_file(TH_DATA("images"), 0, NULL, &img, &e);
    TH_CHECK(rc == VLM_EIO && strstr(e.msg, "not a regular file"), "directory: %d %s", rc, e.msg);

    /* A sparse file just over 1 GiB is refused from its size alone. */
    char path[] = "/tmp/vlm_test_image_XXXXXX";
    int fd = mkstemp(path);
    TH_CHECK(fd >= 0, "mkstemp failed");
    if (fd >= 0) {
        int ok = ftruncate(fd, ((off_t)1 << 30) + 1) == 0;
        close(fd);
        if (ok) {
            rc = image_decode_file(path, 0, NULL, &img, &e);
            TH_CHECK(rc == VLM_ERANGE && strstr(e.msg, "1 GiB"), "big file: %d %s", rc, e.msg);
        }
        unlink(path);
    }
}

static void test_write_ppm(void)
{
    vlm_image img;
    vlm_error e = {0, ""};
    int rc = image_decode_file(TH_DATA("images/png/pngsuite/basn2c08.png"), 0, NULL, &img, &e);
    TH_CHECK(rc == 0, "basn2c08: %s", e.msg);
    if (rc)
        return;
    char path[] = "/tmp/vlm_test_ppm_XXXXXX";
    int fd = mkstemp(path);
    TH_CHECK(fd >= 0, "mkstemp failed");
    if (fd < 0) {
        image_free(&img);
        return;
    }
    close(fd);
    rc = image_write_ppm(path, &img, &e);
    TH_CHECK(rc == 0, "write: %s", e.msg);
    size_t len = 0;
    uint8_t *buf = imgref_read_file(path, &len);
    const char *header = "P6\n32 32\n255\n";
    size_t hl = strlen(header);
    TH_CHECK(buf && len == hl + 32 * 32 * 3 && memcmp(buf, header, hl) == 0 &&
                 memcmp(buf + hl, img.rgb, 32 * 32 * 3) == 0,
             "written PPM differs (%zu bytes)", len);
    vlm_image back;
    rc = image_decode_file(path, 0, NULL, &back, &e);
    TH_CHECK(rc == 0 && back.width == 32 && memcmp(back.rgb, img.rgb, 32 * 32 * 3) == 0,
             "round trip: %d %s", rc, e.msg);
    image_free(&back);
    free(buf);
    unlink(path);

    rc = image_write_ppm("tests/data/images/no-such-dir/x.ppm", &img, &e);
    TH_CHECK(rc == VLM_EIO && strstr(e.msg, "cannot create"), "unwritable: %d %s", rc, e.msg);
    vlm_image bad = {0, 0, NULL};
    rc = image_write_ppm(path, &bad, &e);
    TH_CHECK(rc == VLM_EARG, "empty image: %d", rc);
    image_free(&img);
    image_free(&img); /* harmless twice */
}

int main(void)
{
    test_detection();
    test_files();
    test_write_ppm();
    return th_report("test_image");
}
