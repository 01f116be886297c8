/* test_wfile.c: the weight-file loader refuses every malformed file with an error and never
 * crashes: every truncation length, every header/directory byte flipped (with the CRC fixed up
 * so that the structural checks themselves are exercised), out-of-range, overlapping and
 * unaligned offsets, bad types and shapes, duplicate and missing tensors, config values out of
 * range, and a data byte changed (caught by verify). The file is a tiny synthetic q4 model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "model.h"
#include "synth.h"
#include "golden.h"
#include "th.h"
#include "util.h"
#include "wfile.h"

static char tmp_path[512];
static size_t file_len; /* of the valid file every corruption starts from */

static void tiny_config(wf_config *c)
{
    synth_preset("mobilevlm-v2-1.7b", c);
    c->dim = 64;
    c->hidden_dim = 96;
    c->n_layers = 1;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 16;
    c->vocab_size = 270;
    c->max_seq_len = 64;
    c->v_image_size = 28;
    c->v_patch_size = 14;
    c->v_dim = 32;
    c->v_hidden_dim = 64;
    c->v_layers = 1;
    c->v_heads = 2;
    c->proj_grid = 1;
}

/* Writes buf[0:n] to the temp path and opens it as a model; returns model_open's code. */
static int try_open(const uint8_t *buf, size_t n, vlm_error *e)
{
    FILE *f = fopen(tmp_path, "wb");
    if (!f)
        return -100;
    fwrite(buf, 1, n, f);
    fclose(f);
    model m;
    int rc = model_open(tmp_path, 1, "ref", &m, e);
    if (!rc)
        model_close(&m);
    return rc;
}

static uint8_t *record(uint8_t *b, const char *name)
{
    uint32_t n = rd_u32(b + 12);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *r = b + WF_HEADER_SIZE + (size_t)i * WF_RECORD_SIZE;
        if (!strcmp((const char *)r, name))
            return r;
    }
    return NULL;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Applies one corruption to a fresh copy (CRC fixed) and expects an error mentioning want. */
static void expect_error(const uint8_t *good, size_t n, const char *what, void (*mutate)(uint8_t *), const char *want)
{
    uint8_t *b = malloc(n);
    memcpy(b, good, n);
    mutate(b);
    vlm_image_fix_crc(b, file_len);
    vlm_error e = {0};
    int rc = try_open(b, n, &e);
    TH_CHECK(rc < 0, "%s: accepted", what);
    TH_CHECK(rc >= 0 || strstr(e.msg, want), "%s: message '%s' lacks '%s'", what, e.msg, want);
    fprintf(stderr, "  %-34s -> %s\n", what, e.msg);
    free(b);
}

static void m_type(uint8_t *b) { put32(record(b, "t.norm") + 64, 9); }
static void m_type_q4(uint8_t *b) { put32(record(b, "t.norm") + 64, WT_F16); }
static void m_ndim(uint8_t *b) { put32(record(b, "t.norm") + 68, 5); }
static void m_dim0(uint8_t *b) { put32(record(b, "t.norm") + 72, 0); }
static void m_nbytes(uint8_t *b) { put64(record(b, "t.norm") + 96, 4); }
static void m_unaligned(uint8_t *b) { put64(record(b, "t.norm") + 88, rd_u64(record(b, "t.norm") + 88) + 4); }
static void m_outside(uint8_t *b) { put64(record(b, "t.norm") + 88, (uint64_t)1 << 62); }
static void m_overlap(uint8_t *b) { put64(record(b, "t.norm") + 88, rd_u64(record(b, "t.embed") + 88)); }
static void m_name_unterminated(uint8_t *b) { memset(record(b, "t.norm"), 'x', 64); }
static void m_name_bad_char(uint8_t *b) { record(b, "t.norm")[1] = ' '; }
static void m_duplicate(uint8_t *b) { memcpy(record(b, "t.0.q"), "t.0.k", 6); }
static void m_missing(uint8_t *b) { memcpy(record(b, "t.norm"), "t.nope", 7); }
static void m_shape(uint8_t *b)
{
    /* A consistent record with the wrong shape for the config: t.norm [32] instead of [64]. */
    uint8_t *r = record(b, "t.norm");
    put32(r + 72, 32);
    put64(r + 96, 128);
}
static void m_reserved(uint8_t *b) { record(b, "t.norm")[110] = 1; }
/* Version 1 (q4 rows as plain block_q4_0 arrays) must be refused with a way out. */
static void m_version(uint8_t *b) { put32(b + 8, 1); }
static void m_version_new(uint8_t *b) { put32(b + 8, 3); }
static void m_count(uint8_t *b) { put32(b + 12, 0x7fffffff); }
static void m_size(uint8_t *b) { put64(b + 16, rd_u64(b + 16) + 1); }
static void m_heads(uint8_t *b) { put32(b + WF_CONFIG_OFFSET + 4 * 5, 0); }          /* n_heads */
static void m_kv_heads(uint8_t *b) { put32(b + WF_CONFIG_OFFSET + 4 * 6, 3); }       /* 4 % 3 != 0 */
static void m_vocab(uint8_t *b) { put32(b + WF_CONFIG_OFFSET + 4 * 8, 0xffffffff); } /* vocab */
static void m_bos(uint8_t *b) { put32(b + WF_CONFIG_OFFSET + 4 * 10, 5000); }
static void m_arch(uint8_t *b) { put32(b + WF_CONFIG_OFFSET, 7); }
static void m_tok_offsets(uint8_t *b)
{
    /* Piece offsets must be monotonic and inside tok.text: make one point far away. */
    uint8_t *r = record(b, "tok.offsets");
    uint8_t *data = b + rd_u64(r + 88);
    put32(data + 4 * 5, 0x7fffff00);
}

int main(void)
{
    /* Thousands of small files: prefer a RAM-backed directory. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp && access("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm";
    snprintf(tmp_path, sizeof tmp_path, "%s/vlm-test-wfile-%ld.vlm", tmp ? tmp : "/tmp", (long)getpid());
    char good_path[600];
    snprintf(good_path, sizeof good_path, "%s.good", tmp_path);
    wf_config c;
    tiny_config(&c);
    vlm_error e = {0};
    int rc = synth_write(good_path, &c, WT_Q4, WT_Q8, 7, NULL, NULL, NULL, &e);
    TH_CHECK(rc == 0, "synth: %s", e.msg);
    size_t n = 0;
    uint8_t *good = read_whole_file(good_path, &n);
    TH_CHECK(good != NULL, "cannot read back %s", good_path);
    if (!good)
        return th_report("test_wfile");
    file_len = n;
    fprintf(stderr, "tiny model: %zu bytes\n", n);
    TH_CHECK(try_open(good, n, &e) == 0, "the valid file is refused: %s", e.msg);

    /* Every truncation length of the header and directory, then every 7th byte. */
    size_t data_off = rd_u64(good + 32);
    int accepted = 0;
    for (size_t len = 0; len < n; len += len < data_off ? 1 : 7)
        accepted += try_open(good, len, &e) == 0;
    TH_CHECK(accepted == 0, "%d truncated files accepted", accepted);

    /* Every header/directory byte flipped, CRC not fixed: all refused by the CRC or earlier. */
    uint8_t *b = malloc(n);
    accepted = 0;
    size_t flips = 0;
    for (size_t i = 0; i < data_off; i += i < WF_HEADER_SIZE ? 1 : 3, flips++) {
        memcpy(b, good, n);
        b[i] ^= 0x5a;
        accepted += try_open(b, n, &e) == 0;
    }
    TH_CHECK(accepted == 0, "%d byte flips accepted without a CRC fix", accepted);
    /* Every header/directory byte flipped with the CRC fixed: the structural checks alone must
     * refuse or safely accept (a flip in a name's padding is refused; a flip inside a float
     * config value may be accepted), and must never crash. */
    int refused = 0;
    flips = 0;
    for (size_t i = 0; i < data_off; i += i < WF_HEADER_SIZE ? 1 : 3) {
        if (i >= 40 && i < 44)
            continue;
        flips++;
        memcpy(b, good, n);
        b[i] ^= 0x5a;
        vlm_image_fix_crc(b, file_len);
        refused += try_open(b, n, &e) != 0;
    }
    fprintf(stderr, "  CRC-fixed byte flips refused by structure checks: %d of %zu\n", refused, flips);
    TH_CHECK(refused > (int)(flips * 8 / 10), "only %d of %zu flips refused", refused, flips);
    free(b);

    expect_error(good, n, "unknown type", m_type, "unknown type");
    expect_error(good, n, "type change (size mismatch)", m_type_q4, "nbytes");
    expect_error(good, n, "ndim 5", m_ndim, "ndim");
    expect_error(good, n, "zero dim", m_dim0, "shape");
    expect_error(good, n, "nbytes wrong", m_nbytes, "nbytes");
    expect_error(good, n, "unaligned offset", m_unaligned, "multiple of 64");
    expect_error(good, n, "offset outside the file", m_outside, "leave the file");
    expect_error(good, n, "overlapping tensors", m_overlap, "overlap");
    expect_error(good, n, "name not terminated", m_name_unterminated, "NUL");
    expect_error(good, n, "name with a space", m_name_bad_char, "byte 0x20");
    expect_error(good, n, "duplicate name", m_duplicate, "twice");
    expect_error(good, n, "missing tensor", m_missing, "missing");
    expect_error(good, n, "shape wrong for the config", m_shape, "expected");
    expect_error(good, n, "reserved byte set", m_reserved, "reserved");
    expect_error(good, n, "version 1 (old q4 layout)", m_version, "format version 1, this build reads version 2");
    expect_error(good, n, "version 1 names the way out", m_version, "reconvert the checkpoint with weights-tool");
    expect_error(good, n, "version 3", m_version_new, "version 3");
    expect_error(good, n, "tensor count huge", m_count, "count");
    expect_error(good, n, "file size field wrong", m_size, "header says");
    expect_error(good, n, "zero heads", m_heads, "n_heads");
    expect_error(good, n, "kv heads not dividing", m_kv_heads, "heads");
    expect_error(good, n, "vocab out of range", m_vocab, "vocab_size");
    expect_error(good, n, "bos id out of range", m_bos, "bos_id");
    expect_error(good, n, "unknown architecture", m_arch, "arch");
    expect_error(good, n, "tokenizer offset out of range", m_tok_offsets, "tok");

    /* A changed data byte passes the structural checks and is caught by verify's data CRC. */
    b = malloc(n);
    memcpy(b, good, n);
    b[n - 3] ^= 1;
    FILE *f = fopen(tmp_path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    wfile wf;
    rc = wf_open(tmp_path, &wf, &e);
    TH_CHECK(rc == 0, "a data change must not fail the structure: %s", e.msg);
    if (!rc) {
        TH_CHECK(wf_verify_data(&wf, &e) != 0, "verify missed a changed data byte");
        wf_close(&wf);
    }
    TH_CHECK(wf_open(good_path, &wf, &e) == 0 && wf_verify_data(&wf, &e) == 0, "verify refuses the good file");
    wf_close(&wf);
    free(b);
    TH_CHECK(wf_open("tests/data/no-such-file.vlm", &wf, &e) == VLM_EIO && strstr(e.msg, "no-such-file"),
             "missing file: %s", e.msg);

    free(good);
    remove(tmp_path);
    remove(good_path);
    return th_report("test_wfile");
}
