/* bench_image.c: decode-speed benchmark of the JPEG decoder.
 * Usage: build/bench_image [-n RUNS] FILE...  For each file, decodes it RUNS times from memory
 * (default 15) and prints the median CPU time of one decode (this process is single-threaded,
 * and CPU time is not inflated by other load on the machine) in ms and in ms per megapixel.
 * Compare with `djpeg -outfile /dev/null FILE` (see docs/images-jpeg.md); never a dependency. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decoders.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: robust on a shared machine */
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads a whole file; returns NULL on failure. */
static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    int runs = 15;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        runs = atoi(argv[2]);
        first = 3;
    }
    if (runs < 1 || runs > 1000 || first >= argc) {
        fprintf(stderr, "usage: %s [-n RUNS] FILE.jpg...\n", argv[0]);
        return 2;
    }
    double *t = malloc(sizeof(double) * (size_t)runs);
    if (!t)
        return 1;
    printf("%-40s %10s %10s %10s\n", "file", "size", "median ms", "ms/MP");
    int status = 0;
    for (int i = first; i < argc; i++) {
        size_t len;
        unsigned char *buf = read_all(argv[i], &len);
        if (!buf) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            status = 1;
            continue;
        }
        int w = 0, h = 0, ok = 1;
        for (int r = 0; r < runs && ok; r++) {
            vlm_image img;
            vlm_error e;
            int orient;
            double t0 = now_ms();
            int rc = jpeg_decode(buf, len, argv[i], NULL, &img, &orient, &e);
            t[r] = now_ms() - t0;
            if (rc) {
                fprintf(stderr, "%s\n", e.msg);
                ok = 0;
                status = 1;
                break;
            }
            w = img.width;
            h = img.height;
            free(img.rgb);
        }
        if (ok) {
            qsort(t, (size_t)runs, sizeof *t, cmp_double);
            double med = t[runs / 2];
            const char *base = strrchr(argv[i], '/');
            char size[32];
            snprintf(size, sizeof size, "%dx%d", w, h);
            printf("%-40s %10s %10.2f %10.2f\n", base ? base + 1 : argv[i], size, med,
                   med / ((double)w * h / 1e6));
        }
        free(buf);
    }
    free(t);
    return status;
}
