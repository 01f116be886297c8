/* golden.c: see golden.h. */
#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "th.h"
#include "util.h"
#include "wfile.h"

int golden_convert(const char *fixture, int quant, int vision_quant, char *out, size_t cap)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", TH_DATA("fixtures"));
    char model_dir[600];
    snprintf(model_dir, sizeof model_dir, "%s/%s", dir, fixture);
    const char *tmp = getenv("TMPDIR");
    snprintf(out, cap, "%s/vlm-test-%s-%d-%d-%ld.vlm", tmp ? tmp : "/tmp", fixture, quant, vision_quant,
             (long)getpid());
    convert_opts o = {.model_dir = model_dir, .out_path = out, .quant = quant, .vision_quant = vision_quant};
    vlm_error e;
    if (convert_model(&o, &e)) {
        fprintf(stderr, "convert %s: %s\n", fixture, e.msg);
        return -1;
    }
    return 0;
}

int golden_widen_heads(const char *path, const char *out)
{
    size_t n;
    unsigned char *b = read_whole_file(path, &n);
    int ok = b && n >= WF_HEADER_SIZE;
    if (ok) {
        /* Config words 5, 6, 7: n_heads, n_kv_heads, head_dim (docs/format.md). */
        unsigned char *w = b + WF_CONFIG_OFFSET + 4 * 5;
        uint32_t v[3] = {rd_u32(w) / 2, rd_u32(w + 4) / 2, rd_u32(w + 8) * 2};
        ok = rd_u32(w) % 2 == 0 && rd_u32(w + 4) % 2 == 0;
        memcpy(w, v, sizeof v);
        vlm_image_fix_crc(b, n);
    }
    FILE *f = ok ? fopen(out, "wb") : NULL;
    ok = f && fwrite(b, 1, n, f) == n;
    if (f && fclose(f))
        ok = 0;
    if (!ok)
        fprintf(stderr, "%s: cannot widen the heads\n", path);
    free(b);
    return ok ? 0 : -1;
}

int golden_load(const char *fixture, const char *name, npy_array *a)
{
    char rel[256];
    snprintf(rel, sizeof rel, "fixtures/%s/goldens/%s.npy", fixture, name);
    vlm_error e;
    if (npy_read(TH_DATA(rel), a, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

int golden_close(const char *stage, const float *got, const float *want, size_t n)
{
    return golden_close_rel(stage, got, want, n, 1e-4);
}

int golden_close_rel(const char *stage, const float *got, const float *want, size_t n, double rel)
{
    double maxb = 0;
    double maxd = 0;
    for (size_t i = 0; i < n; i++) {
        maxb = fmax(maxb, fabs(want[i]));
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= maxd)) /* NaN propagates as a failure */
            maxd = isnan(d) ? INFINITY : d;
    }
    double bound = rel * fmax(1.0, maxb);
    fprintf(stderr, "  %-28s max diff %.3g (bound %.3g)\n", stage, maxd, bound);
    return maxd <= bound;
}

double cosine_similarity(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb + 1e-300);
}

unsigned char *read_whole_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = size >= 0 ? malloc((size_t)size + 1) : NULL;
    *n = size >= 0 ? (size_t)size : 0;
    if (b && fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

void vlm_image_fix_crc(unsigned char *b, size_t len)
{
    uint32_t n = rd_u32(b + 12);
    if (len < WF_HEADER_SIZE || (uint64_t)n * WF_RECORD_SIZE > len - WF_HEADER_SIZE)
        return;
    memset(b + 40, 0, 4);
    uint32_t crc = crc32_update(0, b, WF_HEADER_SIZE);
    crc = crc32_update(crc, b + WF_HEADER_SIZE, (size_t)n * WF_RECORD_SIZE);
    memcpy(b + 40, &crc, 4);
}
