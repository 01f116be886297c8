/* image.c: the public image API (image.h): reading a photo file, detecting its format from the
 * magic bytes, dispatching to the JPEG/PNG/PNM decoders with the caller's limits, applying the
 * EXIF orientation on request, and writing RGB images as binary PPM (vlm-run --dump-rgb).
 * Inputs are untrusted: the file size is checked before reading and every decoder is bounded. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decoders.h"
#include "util.h"

/* Files larger than this are refused before reading (no photo we accept is that big). */
#define IMAGE_MAX_FILE_BYTES ((uint64_t)1 << 30)

static const uint8_t PNG_MAGIC[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* Contract in image.h. Errors: VLM_EARG (NULL arguments), VLM_EFORMAT (unknown format or
 * malformed file), and whatever the format decoder returns (VLM_ERANGE, VLM_EUNSUPPORTED,
 * VLM_ENOMEM). *out is zeroed on failure. */
int image_decode_buffer(const uint8_t *buf, size_t len, const char *name, int exif,
                        const image_limits *lim, vlm_image *out, vlm_error *e)
{
    if (!out)
        return vlm_fail(e, VLM_EARG, "image_decode_buffer: NULL output");
    memset(out, 0, sizeof *out);
    if (!name)
        name = "image";
    if (!buf && len)
        return vlm_fail(e, VLM_EARG, "%s: NULL buffer", name);
    image_limits defaults = {IMAGE_DEFAULT_MAX_PIXELS, IMAGE_DEFAULT_MAX_BYTES};
    if (lim) {
        if (lim->max_pixels)
            defaults.max_pixels = lim->max_pixels;
        if (lim->max_bytes)
            defaults.max_bytes = lim->max_bytes;
    }
    int rc;
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) {
        int orientation = 1;
        rc = jpeg_decode(buf, len, name, &defaults, out, &orientation, e);
        if (rc == 0 && exif == IMAGE_EXIF_APPLY && orientation != 1) {
            rc = image_apply_orientation(out, orientation, e);
            if (rc)
                image_free(out);
        }
    } else if (len >= 8 && memcmp(buf, PNG_MAGIC, 8) == 0) {
        rc = png_decode(buf, len, name, &defaults, out, e);
    } else if (len >= 2 && buf[0] == 'P' && buf[1] >= '1' && buf[1] <= '6') {
        rc = pnm_decode(buf, len, name, &defaults, out, e);
    } else {
        if (len == 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: empty file, not a JPEG, PNG or PNM image", name);
        /* "\x89PNG" then a damaged line-ending check (the bytes a text-mode transfer alters). */
        if (len >= 4 && memcmp(buf, PNG_MAGIC, 4) == 0)
            return vlm_fail(e, VLM_EFORMAT, "%s: damaged PNG signature (bytes 4-7 should be 0d 0a 1a 0a)", name);
        char head[16] = ""; /* up to 4 bytes as "xx xx xx xx" */
        size_t n = len < 4 ? len : 4, off = 0;
        for (size_t i = 0; i < n; i++)
            off += (size_t)snprintf(head + off, sizeof head - off, "%s%02x", i ? " " : "", buf[i]);
        return vlm_fail(e, VLM_EFORMAT, "%s: not a JPEG, PNG or PNM file (starts with %s)", name,
                        head);
    }
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

/* Contract in image.h. Errors: VLM_EIO (cannot open/stat/read, not a regular file),
 * VLM_ERANGE (file over 1 GiB), then those of image_decode_buffer. */
int image_decode_file(const char *path, int exif, const image_limits *lim, vlm_image *out,
                      vlm_error *e)
{
    if (!out || !path)
        return vlm_fail(e, VLM_EARG, "image_decode_file: NULL argument");
    memset(out, 0, sizeof *out);
    struct stat st;
    int fd = open_regular(path, "photo", &st, e);
    if (fd < 0)
        return fd;
    if (st.st_size < 0 || (uint64_t)st.st_size > IMAGE_MAX_FILE_BYTES) {
        close(fd);
        return vlm_fail(e, VLM_ERANGE, "%s: file size %lld exceeds the 1 GiB limit", path,
                        (long long)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int err = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return vlm_fail(e, VLM_EIO, "%s: read failed after %zu of %zu bytes%s%s", path, got,
                            size, err ? ": " : " (file shrank)", err ? strerror(err) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    int rc = image_decode_buffer(buf, size, path, exif, lim, out, e);
    free(buf);
    return rc;
}

/* Contract in image.h. img must hold width x height >= 1 pixels. Errors: VLM_EARG (invalid
 * image), VLM_EIO (cannot create or write the file). */
int image_write_ppm(const char *path, const vlm_image *img, vlm_error *e)
{
    if (!path || !img || !img->rgb || img->width <= 0 || img->height <= 0)
        return vlm_fail(e, VLM_EARG, "image_write_ppm: invalid image or path");
    size_t bytes;
    if (ck_mul3((size_t)img->width, (size_t)img->height, 3, &bytes))
        return vlm_fail(e, VLM_EARG, "%s: image %dx%d too large", path, img->width, img->height);
    FILE *f = fopen(path, "wb");
    if (!f)
        return vlm_fail(e, VLM_EIO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fprintf(f, "P6\n%d %d\n255\n", img->width, img->height) > 0;
    ok = ok && fwrite(img->rgb, 1, bytes, f) == bytes;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        err = errno;
        ok = 0;
    }
    if (!ok)
        return vlm_fail(e, VLM_EIO, "%s: write failed: %s", path, strerror(err));
    return 0;
}

/* Frees the pixels of img (which may be NULL or already freed) and zeroes it. */
void image_free(vlm_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}
