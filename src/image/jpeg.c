/* jpeg.c: the JPEG decoder (ITU T.81): baseline, extended 8-bit and progressive Huffman
 * coding, any legal sampling factors, restart intervals with libjpeg-style resynchronisation,
 * Adobe RGB/YCbCr/CMYK/YCCK. Output reproduces Pillow 9.4 on libjpeg-turbo 2.1.5 defaults:
 * accurate integer IDCT, fancy (triangle) chroma upsampling, fixed-point YCbCr->RGB, block
 * smoothing of progressive files left with inexact low-frequency coefficients. The IDCT
 * and the fused upsampling + colour conversion have SSE2 (x86-64) and NEON (aarch64) versions
 * that reproduce the same integer results (docs/images-jpeg.md explains why they are exact).
 * Untrusted input: every size is checked before allocating, every read is bounds-checked and
 * every loop is bounded by the input size or by the checked image size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decoders.h"
#include "util.h"

/* SIMD through the baseline ISA of each target only (no run-time detection): SSE2 on x86-64,
 * NEON on aarch64. Every kernel has a plain C twin that other targets use; building with
 * -DJPEG_NO_SIMD selects the C twins everywhere so the test can cross-check both. */
#if defined(__SSE2__) && !defined(JPEG_NO_SIMD)
#include <emmintrin.h>
#define JPEG_SSE2 1
#elif defined(__aarch64__) && !defined(JPEG_NO_SIMD)
#include <arm_neon.h>
#define JPEG_NEON 1
#endif

enum {
    JPEG_MAX_COMPONENTS = 4,
    JPEG_MAX_BLOCKS_IN_MCU = 10, /* T.81 B.2.3 and libjpeg's D_MAX_BLOCKS_IN_MCU */
    JPEG_MAX_SCANS = 1000,       /* no real file has more; bounds the work on hostile input */
    JPEG_FAST_BITS = 9,          /* Huffman lookahead table index width */
};

/* Position of the k-th zigzag coefficient in natural (row-major) order. The 16 extra entries
 * absorb run lengths that overshoot the block on corrupt data, as libjpeg does. */
static const uint8_t zigzag_to_natural[80] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33,
    40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36,
    29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

/* Standard Huffman tables of T.81 Annex K.3 (Tables K.3-K.6), used when a scan refers to
 * table 0 or 1 that the file never defined (Motion-JPEG frames omit DHT). */
static const uint8_t std_dc_luma_bits[16] = {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t std_dc_chroma_bits[16] = {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
static const uint8_t std_dc_vals[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const uint8_t std_ac_luma_bits[16] = {0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d};
static const uint8_t std_ac_luma_vals[162] = {
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
    0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
    0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
    0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
    0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
    0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
    0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
    0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
    0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};
static const uint8_t std_ac_chroma_bits[16] = {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77};
static const uint8_t std_ac_chroma_vals[162] = {
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
    0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
    0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
    0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
    0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
    0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
    0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
    0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
    0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
    0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
    0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa};

typedef struct huff_table {
    uint16_t fast[1 << JPEG_FAST_BITS]; /* (1<<9): (length << 8) | symbol for codes of length
                                           <= 9 indexed by the next 9 bits; 0 = longer code */
    int32_t fast_ac[1 << JPEG_FAST_BITS]; /* (1<<9): AC tables, for a code and its magnitude bits
                                           that fit in 9 bits together: (value << 16) |
                                           (run << 8) | total length; 0 = use `fast` */
    int32_t maxcode[17];                /* (17): largest code of each length, -1 if none */
    int32_t valoffset[17];              /* (17): symbol index = code + valoffset[length] */
    uint8_t vals[256];                  /* (256): symbols in code order, zero-filled */
    int nsym;
    int max_symbol;
    int defined;
} huff_table;

/* Reads the entropy-coded segment with byte unstuffing. Once a marker (or the end of the
 * buffer) is reached, zero bits are supplied, as libjpeg does; `pad` counts them so that
 * running into them can be detected (bits < pad). */
typedef struct bitreader {
    const uint8_t *p;   /* next unread byte */
    const uint8_t *end; /* end of the file buffer */
    uint64_t acc;       /* the valid bits are the top `bits` bits */
    int bits;
    int pad;
    int at_marker; /* p points at a marker's 0xFF, or at the end of the buffer */
} bitreader;

typedef struct jpeg_component {
    int id, h, v, tq;
    int ds_w, ds_h;     /* size of the component's sample grid (ceil(W*h/hmax), ...) */
    int bw, bh;         /* blocks covering ds_w x ds_h: the non-interleaved scan order */
    int pbw, pbh;       /* blocks covering the padded MCU grid (mcux*h, mcuy*v) */
    int hr, vr;         /* upsampling ratios hmax/h, vmax/v */
    int16_t q[64];      /* (64) latched quantizer, natural order, as libjpeg's 16-bit table */
    int q_latched;
    uint8_t *plane;     /* (pbh*8, pbw*8) decoded samples */
    size_t stride;      /* pbw*8 */
    int16_t *coefs;     /* (pbh, pbw, 64) coefficients in natural order (buffered mode only) */
    /* Progressive mode: the successive-approximation bit Al of the last scan that coded each of
     * zigzag coefficients 0..9 (-1: never coded), and the same values as they were before the
     * last scan of this component (libjpeg's coef_bits and its "previous scan" copy). They
     * decide whether and how block smoothing estimates missing low-frequency coefficients. */
    int coef_bits[10];
    int prev_bits[10];
    int dc_tab, ac_tab; /* tables of the current scan */
    int dc_pred;
} jpeg_component;

enum { CS_GRAY, CS_YCC, CS_RGB, CS_CMYK, CS_YCCK };

typedef struct jpeg_dec {
    const uint8_t *buf; /* (len) the whole file */
    size_t len;
    const char *name;
    vlm_error *e;
    uint64_t max_pixels;
    size_t max_bytes;

    uint16_t qt[4][64]; /* (4, 64) quantization tables, natural order */
    int qt_defined[4];
    huff_table dc[4], ac[4];
    int restart_interval;
    int jfif, adobe, adobe_transform;
    int orientation;

    int frame_seen, progressive;
    int width, height, ncomp, hmax, vmax, mcux, mcuy;
    int color_space;
    jpeg_component comp[JPEG_MAX_COMPONENTS];
    int buffered;          /* coefficients kept for the whole image (progressive/multi-scan) */
    int scans;
    int last_good_imcu;    /* iMCU row of the last MCU decoded from real data (libjpeg's
                              last_good_iMCU_row: later rows smooth with prev_bits) */
    uint64_t block_budget; /* block visits left across all scans (bounds hostile inputs) */
    int any_insufficient;  /* some entropy-coded data was missing */
    int stream_done;       /* the single-scan (streamed) frame has been fully decoded */
    int rows_emitted;

    uint8_t *rgb;     /* (height, width, 3) output */
    uint8_t *rowtmp;  /* (ncomp, width + 64) upsampled rows */
    size_t rowtmp_stride;
    int16_t *sums;    /* (2, sums_stride) chroma rows prepared for the fused YCbCr path */
    size_t sums_stride;
    int fused;        /* emit_rows uses ycc_row_fused (see fused_eligible) */

    /* YCbCr->RGB lookup tables (libjpeg's jdcolor.c arithmetic, precomputed per decode). */
    int cr_r[256], cb_b[256];  /* (256) rounded red/blue offsets of Cr/Cb */
    int32_t cr_g[256], cb_g[256]; /* (256) green terms with 16 fraction bits (+1/2 in cb_g) */
    uint8_t clamp[1024];          /* (1024) clamp of v - 384 to 0..255: index v + 384 */
} jpeg_dec;

typedef struct jpeg_scan {
    int ns;
    jpeg_component *c[JPEG_MAX_COMPONENTS]; /* (ns) components in scan order */
    int ss, se, ah, al;
} jpeg_scan;

/* ---------------------------------------------------------------- Huffman tables */

/* The signed value of an n-bit magnitude category (T.81 F.2.2.1 EXTEND), n in 1..15. */
static inline int extend_bits(uint32_t v, int n)
{
    return v < (1u << (n - 1)) ? (int)v - (1 << n) + 1 : (int)v;
}

/* Builds the canonical code of T.81 Annex C from the 16 length counts and the symbols.
 * Refuses tables that overflow the code space, as libjpeg does. Returns 0 or -1. */
static int huff_build(huff_table *t, const uint8_t counts[16], const uint8_t *vals, int nsym)
{
    memset(t, 0, sizeof *t);
    memcpy(t->vals, vals, (size_t)nsym);
    t->nsym = nsym;
    int maxlen = 0;
    for (int l = 1; l <= 16; l++)
        if (counts[l - 1])
            maxlen = l;
    int32_t code = 0;
    int k = 0;
    for (int l = 1; l <= 16; l++) {
        int n = counts[l - 1];
        t->valoffset[l] = k - code;
        t->maxcode[l] = n ? code + n - 1 : -1;
        for (int i = 0; i < n; i++, code++, k++) {
            if (l <= JPEG_FAST_BITS && code < (1 << l)) {
                int shift = JPEG_FAST_BITS - l;
                for (int j = 0; j < (1 << shift); j++)
                    t->fast[(code << shift) | j] = (uint16_t)((l << 8) | vals[k]);
            }
        }
        /* The all-ones code of each length is reserved (T.81 C.2); libjpeg rejects more. */
        if (l <= maxlen && code >= (1 << l))
            return -1;
        code <<= 1;
    }
    for (int i = 0; i < nsym; i++)
        if (vals[i] > t->max_symbol)
            t->max_symbol = vals[i];
    /* Run/size symbols whose magnitude bits are also in the 9-bit lookahead decode in one step
     * (only meaningful for AC tables; the DC decoder never reads fast_ac). */
    for (int i = 0; i < (1 << JPEG_FAST_BITS); i++) {
        unsigned e = t->fast[i];
        int l = (int)(e >> 8), rs = (int)(e & 255), r = rs >> 4, sz = rs & 15;
        if (!e || sz == 0 || l + sz > JPEG_FAST_BITS)
            continue;
        uint32_t bits = ((uint32_t)i >> (JPEG_FAST_BITS - l - sz)) & ((1u << sz) - 1);
        int v = extend_bits(bits, sz);
        t->fast_ac[i] = (int32_t)((uint32_t)v << 16) | (r << 8) | (l + sz);
    }
    t->defined = 1;
    return 0;
}

static void huff_load_standard(huff_table *t, int is_dc, int index)
{
    if (is_dc)
        huff_build(t, index ? std_dc_chroma_bits : std_dc_luma_bits, std_dc_vals, 12);
    else if (index)
        huff_build(t, std_ac_chroma_bits, std_ac_chroma_vals, 162);
    else
        huff_build(t, std_ac_luma_bits, std_ac_luma_vals, 162);
}

/* ---------------------------------------------------------------- bit reader */

static void br_init(bitreader *br, const uint8_t *p, const uint8_t *end)
{
    br->p = p;
    br->end = end;
    br->acc = 0;
    br->bits = 0;
    br->pad = 0;
    br->at_marker = p >= end;
}

/* Tops the accumulator up to at least 57 bits, unstuffing 0xFF00 and stopping at markers. */
static void br_fill(bitreader *br)
{
    /* Fast path: the next 8 bytes are in the buffer and none is 0xFF (no stuffing, no
     * marker): take as many whole bytes as fit at once. */
    if (!br->at_marker && br->end - br->p >= 8 && br->bits <= 56) {
        const uint8_t *q = br->p;
        uint64_t v = (uint64_t)q[0] << 56 | (uint64_t)q[1] << 48 | (uint64_t)q[2] << 40 |
                     (uint64_t)q[3] << 32 | (uint64_t)q[4] << 24 | (uint64_t)q[5] << 16 |
                     (uint64_t)q[6] << 8 | (uint64_t)q[7];
        uint64_t x = ~v; /* a 0xFF byte of v is a zero byte of x */
        if (((x - 0x0101010101010101u) & ~x & 0x8080808080808080u) == 0) {
            int n = (64 - br->bits) >> 3; /* 1..8 */
            br->acc |= (v & (~(uint64_t)0 << (64 - 8 * n))) >> br->bits;
            br->p += n;
            br->bits += 8 * n;
            return;
        }
    }
    while (br->bits <= 56) {
        unsigned b = 0;
        if (!br->at_marker) {
            if (br->p < br->end) {
                b = *br->p;
                if (b == 0xFF) {
                    if (br->p + 1 < br->end && br->p[1] == 0) {
                        br->p += 2;
                    } else {
                        br->at_marker = 1;
                        b = 0;
                    }
                } else {
                    br->p++;
                }
            } else {
                br->at_marker = 1;
            }
        }
        if (br->at_marker)
            br->pad += 8;
        br->acc |= (uint64_t)b << (56 - br->bits);
        br->bits += 8;
    }
}

/* n in 1..16; the caller has ensured bits >= n. */
static inline uint32_t br_get(bitreader *br, int n)
{
    uint32_t v = (uint32_t)(br->acc >> (64 - n));
    br->acc <<= n;
    br->bits -= n;
    return v;
}

static int huff_decode_slow(bitreader *br, const huff_table *t)
{
    for (int l = JPEG_FAST_BITS + 1; l <= 16; l++) {
        int32_t c = (int32_t)(br->acc >> (64 - l));
        if (c <= t->maxcode[l]) {
            br->acc <<= l;
            br->bits -= l;
            return t->vals[(c + t->valoffset[l]) & 255];
        }
    }
    /* Not a code: libjpeg reads one more bit (its sentinel length 17) before giving up and
     * substitutes a zero symbol; so do we, consuming the same 17 bits (callers have >= 32). */
    br->acc <<= 17;
    br->bits -= 17;
    return 0;
}

/* Decodes one symbol; the caller has ensured bits >= 17 (every caller refills below 32). */
static inline int huff_decode(bitreader *br, const huff_table *t)
{
    unsigned e = t->fast[br->acc >> (64 - JPEG_FAST_BITS)];
    if (e) {
        int l = (int)(e >> 8);
        br->acc <<= l;
        br->bits -= l;
        return (int)(e & 255);
    }
    return huff_decode_slow(br, t);
}

/* ---------------------------------------------------------------- markers */

/* Finds the next marker at or after *pos, skipping garbage bytes and 0xFF fill bytes as
 * libjpeg's next_marker does. Returns the marker code with *pos at its 0xFF, or -1 with
 * *pos = len when the buffer ends first. */
static int find_marker(const uint8_t *buf, size_t len, size_t *pos)
{
    size_t p = *pos;
    while (p + 1 < len) {
        if (buf[p] != 0xFF) {
            p++;
            continue;
        }
        size_t q = p + 1;
        while (q < len && buf[q] == 0xFF)
            q++;
        if (q >= len)
            break;
        if (buf[q] != 0) {
            *pos = q - 1;
            return buf[q];
        }
        p = q + 1; /* stuffed 0xFF00 outside a scan: garbage */
    }
    *pos = len;
    return -1;
}

/* ---------------------------------------------------------------- IDCT */

typedef int64_t jlong; /* libjpeg's JLONG is 64-bit on LP64 hosts; keep its overflow behaviour */

enum { CONST_BITS = 13, PASS1_BITS = 2 };
#define FIX_0_298631336 2446
#define FIX_0_390180644 3196
#define FIX_0_541196100 4433
#define FIX_0_765366865 6270
#define FIX_0_899976223 7373
#define FIX_1_175875602 9633
#define FIX_1_501321110 12299
#define FIX_1_847759065 15137
#define FIX_1_961570560 16069
#define FIX_2_053119869 16819
#define FIX_2_562915447 20995
#define FIX_3_072711026 25172

/* Rounding right shift of libjpeg's DESCALE (arithmetic shift on every supported compiler). */
static inline jlong descale(jlong x, int n) { return (x + ((jlong)1 << (n - 1))) >> n; }

/* libjpeg's post-IDCT range limit: the value is taken modulo 1024 first (RANGE_MASK), so wild
 * values from corrupt data wrap exactly as in libjpeg, then clamped to 0..255 around 128. */
static inline uint8_t idct_clamp(jlong v)
{
    int w = (int)((v + 512) & 1023) - 512 + 128;
    return (uint8_t)(w < 0 ? 0 : w > 255 ? 255 : w);
}

/* One 8-point LL&M inverse DCT (13-bit constants) of dequantized inputs x (frequency order):
 * out (spatial order) scaled by 2^CONST_BITS, before descaling. Both passes use it. */
static inline void idct8(const jlong x[8], jlong out[8])
{
    jlong z2 = x[2], z3 = x[6];
    jlong z1 = (z2 + z3) * FIX_0_541196100;
    jlong tmp2 = z1 + z3 * -FIX_1_847759065;
    jlong tmp3 = z1 + z2 * FIX_0_765366865;
    jlong tmp0 = (x[0] + x[4]) * (1 << CONST_BITS);
    jlong tmp1 = (x[0] - x[4]) * (1 << CONST_BITS);
    jlong tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3;
    jlong tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;

    jlong o0 = x[7], o1 = x[5], o2 = x[3], o3 = x[1];
    z1 = o0 + o3;
    z2 = o1 + o2;
    z3 = o0 + o2;
    jlong z4 = o1 + o3;
    jlong z5 = (z3 + z4) * FIX_1_175875602;
    o0 *= FIX_0_298631336;
    o1 *= FIX_2_053119869;
    o2 *= FIX_3_072711026;
    o3 *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 = z3 * -FIX_1_961570560 + z5;
    z4 = z4 * -FIX_0_390180644 + z5;
    o0 += z1 + z3;
    o1 += z2 + z4;
    o2 += z2 + z3;
    o3 += z1 + z4;

    out[0] = tmp10 + o3;
    out[7] = tmp10 - o3;
    out[1] = tmp11 + o2;
    out[6] = tmp11 - o2;
    out[2] = tmp12 + o1;
    out[5] = tmp12 - o1;
    out[3] = tmp13 + o0;
    out[4] = tmp13 - o0;
}

/* Accurate integer inverse DCT (the LL&M algorithm with 13-bit constants and 2 extra bits of
 * precision between passes), bit-exact with libjpeg's jpeg_idct_islow. coef: (64) natural
 * order, q: (64) quantizer; out: 8 rows of 8 samples, stride bytes apart. */
static void idct_islow(const int16_t *coef, const int16_t *q, uint8_t *out, size_t stride)
{
    int32_t ws[64]; /* (8, 8) intermediate, row-major; int as in libjpeg's workspace */
    jlong x[8];
    jlong y[8];
    for (int col = 0; col < 8; col++) {
        const int16_t *c = coef + col;
        const int16_t *qq = q + col;
        if (c[8] == 0 && c[16] == 0 && c[24] == 0 && c[32] == 0 && c[40] == 0 && c[48] == 0 &&
            c[56] == 0) {
            int32_t dc = (int32_t)((uint32_t)(c[0] * qq[0]) << PASS1_BITS);
            for (int r = 0; r < 8; r++)
                ws[r * 8 + col] = dc;
            continue;
        }
        for (int i = 0; i < 8; i++)
            x[i] = c[8 * i] * qq[8 * i];
        idct8(x, y);
        for (int i = 0; i < 8; i++)
            ws[i * 8 + col] = (int32_t)descale(y[i], CONST_BITS - PASS1_BITS);
    }
    for (int row = 0; row < 8; row++, out += stride) {
        const int32_t *w = ws + row * 8;
        if (w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 &&
            w[7] == 0) {
            uint8_t v = idct_clamp(descale(w[0], PASS1_BITS + 3));
            memset(out, v, 8);
            continue;
        }
        for (int i = 0; i < 8; i++)
            x[i] = w[i];
        idct8(x, y);
        for (int i = 0; i < 8; i++)
            out[i] = idct_clamp(descale(y[i], CONST_BITS + PASS1_BITS + 3));
    }
}

/* SIMD ISLOW IDCT. Both passes are linear in their inputs, so each output of a pass is written
 * as one sum of products of the inputs with combined constants (e.g. the odd part's
 * tmp0 = z1*-c0.899 + z3*-c1.961 + z5 + o0*c0.298 becomes o0*-11363 + o1*9633 + o2*-6436 +
 * o3*2260): pmaddwd / vmlal then compute it from int16 inputs in 32-bit lanes. Integer sums are
 * exact whatever the order, and two's-complement wrapping cannot change a result that fits in
 * 32 bits, so the outputs equal libjpeg's 64-bit arithmetic whenever (a) every dequantized
 * coefficient fits in int16 and (b) every column-pass result fits in int16: then each pass's
 * largest possible sum is 61214 * 32768 + 2^17 < 2^31 (61214 = the largest sum of absolute
 * combined constants). Both conditions are checked on every block; a block that fails them
 * (only possible with corrupt data) returns 0 and goes through idct_islow. Valid 8-bit JPEG
 * data always passes: its dequantized coefficients and column results stay far below 2^15. */
/* The 1-D passes are used twice per block; GCC would otherwise call them out of line. */
#if defined(__GNUC__)
#define JPEG_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define JPEG_ALWAYS_INLINE inline
#endif
#define IDCT_PAIR(a, b) ((int)(((uint32_t)(uint16_t)(b) << 16) | (uint16_t)(a)))

#if defined(JPEG_SSE2)
/* Half of one 1-D pass: 4 transforms whose inputs come interleaved in pairs (p04 = inputs 0
 * and 4, p26, a = inputs 7 and 5, b = inputs 3 and 1); o[k] receives output k before the
 * descale. */
static JPEG_ALWAYS_INLINE void idct_half_sse2(__m128i p04, __m128i p26, __m128i a, __m128i b, __m128i o[8])
{
    const __m128i k_t0 = _mm_set1_epi32(IDCT_PAIR(8192, 8192));
    const __m128i k_t1 = _mm_set1_epi32(IDCT_PAIR(8192, -8192));
    const __m128i k_t3 = _mm_set1_epi32(IDCT_PAIR(10703, 4433));
    const __m128i k_t2 = _mm_set1_epi32(IDCT_PAIR(4433, -10704));
    const __m128i k_a0 = _mm_set1_epi32(IDCT_PAIR(-11363, 9633));
    const __m128i k_b0 = _mm_set1_epi32(IDCT_PAIR(-6436, 2260));
    const __m128i k_a1 = _mm_set1_epi32(IDCT_PAIR(9633, 2261));
    const __m128i k_b1 = _mm_set1_epi32(IDCT_PAIR(-11362, 6437));
    const __m128i k_a2 = _mm_set1_epi32(IDCT_PAIR(-6436, -11362));
    const __m128i k_b2 = _mm_set1_epi32(IDCT_PAIR(-2259, 9633));
    const __m128i k_a3 = _mm_set1_epi32(IDCT_PAIR(2260, 6437));
    const __m128i k_b3 = _mm_set1_epi32(IDCT_PAIR(9633, 11363));
    __m128i t0 = _mm_madd_epi16(p04, k_t0), t1 = _mm_madd_epi16(p04, k_t1);
    __m128i t2 = _mm_madd_epi16(p26, k_t2), t3 = _mm_madd_epi16(p26, k_t3);
    __m128i t10 = _mm_add_epi32(t0, t3), t13 = _mm_sub_epi32(t0, t3);
    __m128i t11 = _mm_add_epi32(t1, t2), t12 = _mm_sub_epi32(t1, t2);
    __m128i o0 = _mm_add_epi32(_mm_madd_epi16(a, k_a0), _mm_madd_epi16(b, k_b0));
    __m128i o1 = _mm_add_epi32(_mm_madd_epi16(a, k_a1), _mm_madd_epi16(b, k_b1));
    __m128i o2 = _mm_add_epi32(_mm_madd_epi16(a, k_a2), _mm_madd_epi16(b, k_b2));
    __m128i o3 = _mm_add_epi32(_mm_madd_epi16(a, k_a3), _mm_madd_epi16(b, k_b3));
    o[0] = _mm_add_epi32(t10, o3);
    o[7] = _mm_sub_epi32(t10, o3);
    o[1] = _mm_add_epi32(t11, o2);
    o[6] = _mm_sub_epi32(t11, o2);
    o[2] = _mm_add_epi32(t12, o1);
    o[5] = _mm_sub_epi32(t12, o1);
    o[3] = _mm_add_epi32(t13, o0);
    o[4] = _mm_sub_epi32(t13, o0);
}

/* One 1-D pass over 8 transforms at once: in[k] holds input k of each (one per int16 lane);
 * lo[k] / hi[k] receive output k of lanes 0-3 / 4-7 before descaling. */
static JPEG_ALWAYS_INLINE void idct_1d_sse2(const __m128i in[8], __m128i lo[8], __m128i hi[8])
{
    idct_half_sse2(_mm_unpacklo_epi16(in[0], in[4]), _mm_unpacklo_epi16(in[2], in[6]),
                   _mm_unpacklo_epi16(in[7], in[5]), _mm_unpacklo_epi16(in[3], in[1]), lo);
    idct_half_sse2(_mm_unpackhi_epi16(in[0], in[4]), _mm_unpackhi_epi16(in[2], in[6]),
                   _mm_unpackhi_epi16(in[7], in[5]), _mm_unpackhi_epi16(in[3], in[1]), hi);
}

/* In-place transpose of an 8x8 int16 matrix held as 8 row vectors. */
static inline void transpose8x8_sse2(__m128i r[8])
{
    __m128i a0 = _mm_unpacklo_epi16(r[0], r[1]), a1 = _mm_unpackhi_epi16(r[0], r[1]);
    __m128i a2 = _mm_unpacklo_epi16(r[2], r[3]), a3 = _mm_unpackhi_epi16(r[2], r[3]);
    __m128i a4 = _mm_unpacklo_epi16(r[4], r[5]), a5 = _mm_unpackhi_epi16(r[4], r[5]);
    __m128i a6 = _mm_unpacklo_epi16(r[6], r[7]), a7 = _mm_unpackhi_epi16(r[6], r[7]);
    __m128i b0 = _mm_unpacklo_epi32(a0, a2), b1 = _mm_unpackhi_epi32(a0, a2);
    __m128i b2 = _mm_unpacklo_epi32(a1, a3), b3 = _mm_unpackhi_epi32(a1, a3);
    __m128i b4 = _mm_unpacklo_epi32(a4, a6), b5 = _mm_unpackhi_epi32(a4, a6);
    __m128i b6 = _mm_unpacklo_epi32(a5, a7), b7 = _mm_unpackhi_epi32(a5, a7);
    r[0] = _mm_unpacklo_epi64(b0, b4);
    r[1] = _mm_unpackhi_epi64(b0, b4);
    r[2] = _mm_unpacklo_epi64(b1, b5);
    r[3] = _mm_unpackhi_epi64(b1, b5);
    r[4] = _mm_unpacklo_epi64(b2, b6);
    r[5] = _mm_unpackhi_epi64(b2, b6);
    r[6] = _mm_unpacklo_epi64(b3, b7);
    r[7] = _mm_unpackhi_epi64(b3, b7);
}

/* idct_islow for blocks meeting the conditions above; returns 0 (nothing written) otherwise. */
static int idct_islow_simd(const int16_t *coef, const int16_t *q, uint8_t *out, size_t stride)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i v[8], lo[8], hi[8], bad = zero;
    for (int r = 0; r < 8; r++) {
        __m128i c = _mm_loadu_si128((const __m128i *)(coef + 8 * r));
        __m128i qq = _mm_loadu_si128((const __m128i *)(q + 8 * r));
        __m128i pl = _mm_mullo_epi16(c, qq), ph = _mm_mulhi_epi16(c, qq);
        bad = _mm_or_si128(bad, _mm_xor_si128(ph, _mm_srai_epi16(pl, 15))); /* (a) */
        v[r] = pl;
    }
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(bad, zero)) != 0xFFFF)
        return 0;
    idct_1d_sse2(v, lo, hi);
    const __m128i round1 = _mm_set1_epi32(1 << (CONST_BITS - PASS1_BITS - 1));
    const __m128i k8000 = _mm_set1_epi32(0x8000);
    for (int k = 0; k < 8; k++) {
        __m128i a = _mm_srai_epi32(_mm_add_epi32(lo[k], round1), CONST_BITS - PASS1_BITS);
        __m128i b = _mm_srai_epi32(_mm_add_epi32(hi[k], round1), CONST_BITS - PASS1_BITS);
        /* (b): x fits in int16 iff (x + 0x8000) >> 16 is 0 as unsigned */
        bad = _mm_or_si128(bad, _mm_srli_epi32(_mm_add_epi32(a, k8000), 16));
        bad = _mm_or_si128(bad, _mm_srli_epi32(_mm_add_epi32(b, k8000), 16));
        v[k] = _mm_packs_epi32(a, b);
    }
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(bad, zero)) != 0xFFFF)
        return 0;
    transpose8x8_sse2(v); /* v[k]: workspace column k, one row per lane */
    idct_1d_sse2(v, lo, hi);
    const int sh = CONST_BITS + PASS1_BITS + 3;
    const __m128i round2 = _mm_set1_epi32(1 << (sh - 1));
    const __m128i k512 = _mm_set1_epi32(512), k1023 = _mm_set1_epi32(1023);
    const __m128i k384 = _mm_set1_epi32(384);
    for (int k = 0; k < 8; k++) {
        /* idct_clamp: wrap modulo 1024 around 0, then packus clamps to 0..255 */
        __m128i a = _mm_srai_epi32(_mm_add_epi32(lo[k], round2), sh);
        __m128i b = _mm_srai_epi32(_mm_add_epi32(hi[k], round2), sh);
        a = _mm_sub_epi32(_mm_and_si128(_mm_add_epi32(a, k512), k1023), k384);
        b = _mm_sub_epi32(_mm_and_si128(_mm_add_epi32(b, k512), k1023), k384);
        v[k] = _mm_packs_epi32(a, b);
    }
    transpose8x8_sse2(v); /* v[r]: output row r */
    for (int r = 0; r < 8; r += 2) {
        __m128i p = _mm_packus_epi16(v[r], v[r + 1]);
        _mm_storel_epi64((__m128i *)(out + r * stride), p);
        _mm_storel_epi64((__m128i *)(out + (r + 1) * stride), _mm_srli_si128(p, 8));
    }
    return 1;
}
#elif defined(JPEG_NEON)
/* As idct_1d_sse2, for one half (4 lanes) of 8 int16 inputs. */
static JPEG_ALWAYS_INLINE void idct_1d_neon_half(const int16x4_t in[8], int32x4_t o[8])
{
    int32x4_t t0 = vshlq_n_s32(vaddl_s16(in[0], in[4]), CONST_BITS);
    int32x4_t t1 = vshlq_n_s32(vsubl_s16(in[0], in[4]), CONST_BITS);
    int32x4_t t3 = vmlal_n_s16(vmull_n_s16(in[2], 10703), in[6], 4433);
    int32x4_t t2 = vmlal_n_s16(vmull_n_s16(in[2], 4433), in[6], -10704);
    int32x4_t t10 = vaddq_s32(t0, t3), t13 = vsubq_s32(t0, t3);
    int32x4_t t11 = vaddq_s32(t1, t2), t12 = vsubq_s32(t1, t2);
    /* (o0, o1, o2, o3) = (in7, in5, in3, in1) */
    int32x4_t o0 = vmull_n_s16(in[7], -11363), o1 = vmull_n_s16(in[7], 9633);
    int32x4_t o2 = vmull_n_s16(in[7], -6436), o3 = vmull_n_s16(in[7], 2260);
    o0 = vmlal_n_s16(o0, in[5], 9633);
    o1 = vmlal_n_s16(o1, in[5], 2261);
    o2 = vmlal_n_s16(o2, in[5], -11362);
    o3 = vmlal_n_s16(o3, in[5], 6437);
    o0 = vmlal_n_s16(o0, in[3], -6436);
    o1 = vmlal_n_s16(o1, in[3], -11362);
    o2 = vmlal_n_s16(o2, in[3], -2259);
    o3 = vmlal_n_s16(o3, in[3], 9633);
    o0 = vmlal_n_s16(o0, in[1], 2260);
    o1 = vmlal_n_s16(o1, in[1], 6437);
    o2 = vmlal_n_s16(o2, in[1], 9633);
    o3 = vmlal_n_s16(o3, in[1], 11363);
    o[0] = vaddq_s32(t10, o3);
    o[7] = vsubq_s32(t10, o3);
    o[1] = vaddq_s32(t11, o2);
    o[6] = vsubq_s32(t11, o2);
    o[2] = vaddq_s32(t12, o1);
    o[5] = vsubq_s32(t12, o1);
    o[3] = vaddq_s32(t13, o0);
    o[4] = vsubq_s32(t13, o0);
}

static JPEG_ALWAYS_INLINE void idct_1d_neon(const int16x8_t in[8], int32x4_t lo[8], int32x4_t hi[8])
{
    int16x4_t l[8], h[8];
    for (int k = 0; k < 8; k++) {
        l[k] = vget_low_s16(in[k]);
        h[k] = vget_high_s16(in[k]);
    }
    idct_1d_neon_half(l, lo);
    idct_1d_neon_half(h, hi);
}

/* As idct_islow_simd for SSE2. */
static int idct_islow_simd(const int16_t *coef, const int16_t *q, uint8_t *out, size_t stride)
{
    int16x8_t v[8];
    int32x4_t lo[8], hi[8];
    uint32x4_t bad = vdupq_n_u32(0);
    for (int r = 0; r < 8; r++) {
        int16x8_t c = vld1q_s16(coef + 8 * r), qq = vld1q_s16(q + 8 * r);
        int32x4_t pl = vmull_s16(vget_low_s16(c), vget_low_s16(qq));
        int32x4_t ph = vmull_high_s16(c, qq);
        int16x4_t nl = vmovn_s32(pl), nh = vmovn_s32(ph);
        /* (a): the product survives narrowing iff sign-extending it back gives it again */
        bad = vorrq_u32(bad, vreinterpretq_u32_s32(veorq_s32(vmovl_s16(nl), pl)));
        bad = vorrq_u32(bad, vreinterpretq_u32_s32(veorq_s32(vmovl_s16(nh), ph)));
        v[r] = vcombine_s16(nl, nh);
    }
    if (vmaxvq_u32(bad))
        return 0;
    idct_1d_neon(v, lo, hi);
    for (int k = 0; k < 8; k++) {
        int32x4_t a = vrshrq_n_s32(lo[k], CONST_BITS - PASS1_BITS);
        int32x4_t b = vrshrq_n_s32(hi[k], CONST_BITS - PASS1_BITS);
        int16x4_t na = vmovn_s32(a), nb = vmovn_s32(b);
        bad = vorrq_u32(bad, vreinterpretq_u32_s32(veorq_s32(vmovl_s16(na), a))); /* (b) */
        bad = vorrq_u32(bad, vreinterpretq_u32_s32(veorq_s32(vmovl_s16(nb), b)));
        v[k] = vcombine_s16(na, nb);
    }
    if (vmaxvq_u32(bad))
        return 0;
    /* Transpose: v[k] becomes workspace column k, one row per lane. */
    int16x8x2_t t0 = vtrnq_s16(v[0], v[1]), t1 = vtrnq_s16(v[2], v[3]);
    int16x8x2_t t2 = vtrnq_s16(v[4], v[5]), t3 = vtrnq_s16(v[6], v[7]);
    int32x4x2_t u0 = vtrnq_s32(vreinterpretq_s32_s16(t0.val[0]), vreinterpretq_s32_s16(t1.val[0]));
    int32x4x2_t u1 = vtrnq_s32(vreinterpretq_s32_s16(t0.val[1]), vreinterpretq_s32_s16(t1.val[1]));
    int32x4x2_t u2 = vtrnq_s32(vreinterpretq_s32_s16(t2.val[0]), vreinterpretq_s32_s16(t3.val[0]));
    int32x4x2_t u3 = vtrnq_s32(vreinterpretq_s32_s16(t2.val[1]), vreinterpretq_s32_s16(t3.val[1]));
#define JPEG_CAT(a, b, half) vreinterpretq_s16_s32(vcombine_s32(vget_##half##_s32(a), vget_##half##_s32(b)))
    v[0] = JPEG_CAT(u0.val[0], u2.val[0], low);
    v[4] = JPEG_CAT(u0.val[0], u2.val[0], high);
    v[1] = JPEG_CAT(u1.val[0], u3.val[0], low);
    v[5] = JPEG_CAT(u1.val[0], u3.val[0], high);
    v[2] = JPEG_CAT(u0.val[1], u2.val[1], low);
    v[6] = JPEG_CAT(u0.val[1], u2.val[1], high);
    v[3] = JPEG_CAT(u1.val[1], u3.val[1], low);
    v[7] = JPEG_CAT(u1.val[1], u3.val[1], high);
#undef JPEG_CAT
    idct_1d_neon(v, lo, hi);
    const int32x4_t k512 = vdupq_n_s32(512), k1023 = vdupq_n_s32(1023), k384 = vdupq_n_s32(384);
    uint8x8_t c[8];
    for (int k = 0; k < 8; k++) {
        /* idct_clamp: wrap modulo 1024 around 0, then saturate to 0..255 */
        int32x4_t a = vrshrq_n_s32(lo[k], CONST_BITS + PASS1_BITS + 3);
        int32x4_t b = vrshrq_n_s32(hi[k], CONST_BITS + PASS1_BITS + 3);
        a = vsubq_s32(vandq_s32(vaddq_s32(a, k512), k1023), k384);
        b = vsubq_s32(vandq_s32(vaddq_s32(b, k512), k1023), k384);
        c[k] = vqmovun_s16(vcombine_s16(vmovn_s32(a), vmovn_s32(b))); /* output column k */
    }
    uint8x8x2_t b0 = vtrn_u8(c[0], c[1]), b1 = vtrn_u8(c[2], c[3]);
    uint8x8x2_t b2 = vtrn_u8(c[4], c[5]), b3 = vtrn_u8(c[6], c[7]);
    uint16x4x2_t h0 = vtrn_u16(vreinterpret_u16_u8(b0.val[0]), vreinterpret_u16_u8(b1.val[0]));
    uint16x4x2_t h1 = vtrn_u16(vreinterpret_u16_u8(b0.val[1]), vreinterpret_u16_u8(b1.val[1]));
    uint16x4x2_t h2 = vtrn_u16(vreinterpret_u16_u8(b2.val[0]), vreinterpret_u16_u8(b3.val[0]));
    uint16x4x2_t h3 = vtrn_u16(vreinterpret_u16_u8(b2.val[1]), vreinterpret_u16_u8(b3.val[1]));
    uint32x2x2_t w0 = vtrn_u32(vreinterpret_u32_u16(h0.val[0]), vreinterpret_u32_u16(h2.val[0]));
    uint32x2x2_t w1 = vtrn_u32(vreinterpret_u32_u16(h1.val[0]), vreinterpret_u32_u16(h3.val[0]));
    uint32x2x2_t w2 = vtrn_u32(vreinterpret_u32_u16(h0.val[1]), vreinterpret_u32_u16(h2.val[1]));
    uint32x2x2_t w3 = vtrn_u32(vreinterpret_u32_u16(h1.val[1]), vreinterpret_u32_u16(h3.val[1]));
    vst1_u8(out + 0 * stride, vreinterpret_u8_u32(w0.val[0]));
    vst1_u8(out + 1 * stride, vreinterpret_u8_u32(w1.val[0]));
    vst1_u8(out + 2 * stride, vreinterpret_u8_u32(w2.val[0]));
    vst1_u8(out + 3 * stride, vreinterpret_u8_u32(w3.val[0]));
    vst1_u8(out + 4 * stride, vreinterpret_u8_u32(w0.val[1]));
    vst1_u8(out + 5 * stride, vreinterpret_u8_u32(w1.val[1]));
    vst1_u8(out + 6 * stride, vreinterpret_u8_u32(w2.val[1]));
    vst1_u8(out + 7 * stride, vreinterpret_u8_u32(w3.val[1]));
    return 1;
}
#endif

/* The IDCT of one block: SIMD when the target has it and the block allows it (see above). */
static inline void idct_block(const int16_t *coef, const int16_t *q, uint8_t *out, size_t stride)
{
#if defined(JPEG_SSE2) || defined(JPEG_NEON)
    if (idct_islow_simd(coef, q, out, stride))
        return;
#endif
    idct_islow(coef, q, out, stride);
}

/* A block whose only nonzero coefficient is DC: the IDCT reduces to one value. */
static void idct_dc_only(int dc, const int16_t *q, uint8_t *out, size_t stride)
{
    int32_t w0 = (int32_t)((uint32_t)(dc * q[0]) << PASS1_BITS);
    uint8_t v = idct_clamp(descale(w0, PASS1_BITS + 3));
    for (int r = 0; r < 8; r++, out += stride)
        memset(out, v, 8);
}

/* ---------------------------------------------------------------- block decoding */

/* Sequential (baseline/extended) block: DC difference then run-length AC (T.81 F.2.2).
 * blk must be zeroed. Returns the zigzag index past the last coded AC (1 = DC only). */
static int decode_block_seq(bitreader *br, const huff_table *dc, const huff_table *ac, int *pred,
                            int16_t *blk)
{
    if (br->bits < 32)
        br_fill(br);
    int s = huff_decode(br, dc) & 15;
    if (s)
        *pred = (int)((unsigned)*pred + (unsigned)extend_bits(br_get(br, s), s));
    blk[0] = (int16_t)*pred;
    int k = 1;
    for (; k < 64; k++) {
        if (br->bits < 32)
            br_fill(br);
        int32_t f = ac->fast_ac[br->acc >> (64 - JPEG_FAST_BITS)];
        if (f) {
            int l = f & 255;
            k += (f >> 8) & 15;
            br->acc <<= l;
            br->bits -= l;
            blk[zigzag_to_natural[k]] = (int16_t)(f >> 16);
            continue;
        }
        int rs = huff_decode(br, ac);
        int r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            blk[zigzag_to_natural[k]] = (int16_t)extend_bits(br_get(br, s), s);
        } else {
            if (r != 15)
                break;
            k += 15;
        }
    }
    return k;
}

static void decode_dc_first(bitreader *br, const huff_table *dc, int al, int *pred, int16_t *blk)
{
    if (br->bits < 32)
        br_fill(br);
    int s = huff_decode(br, dc) & 15;
    if (s)
        *pred = (int)((unsigned)*pred + (unsigned)extend_bits(br_get(br, s), s));
    blk[0] = (int16_t)(uint16_t)((unsigned)*pred << al);
}

static void decode_dc_refine(bitreader *br, int al, int16_t *blk)
{
    if (br->bits < 32)
        br_fill(br);
    if (br_get(br, 1))
        blk[0] = (int16_t)(blk[0] | (1 << al));
}

static void decode_ac_first(bitreader *br, const huff_table *ac, const jpeg_scan *sc,
                            int *eobrun, int16_t *blk)
{
    if (*eobrun > 0) {
        (*eobrun)--;
        return;
    }
    for (int k = sc->ss; k <= sc->se; k++) {
        if (br->bits < 32)
            br_fill(br);
        int rs = huff_decode(br, ac);
        int r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            int v = extend_bits(br_get(br, s), s);
            blk[zigzag_to_natural[k]] = (int16_t)(uint16_t)((unsigned)v << sc->al);
        } else if (r == 15) {
            k += 15;
        } else {
            *eobrun = 1 << r;
            if (r)
                *eobrun += (int)br_get(br, r);
            (*eobrun)--;
            break;
        }
    }
}

/* Successive-approximation refinement of AC coefficients (T.81 G.1.2.3). */
static void decode_ac_refine(bitreader *br, const huff_table *ac, const jpeg_scan *sc,
                             int *eobrun, int16_t *blk)
{
    int p1 = 1 << sc->al;
    int m1 = -p1;
    int k = sc->ss;
    if (*eobrun == 0) {
        for (; k <= sc->se; k++) {
            if (br->bits < 32)
                br_fill(br);
            int rs = huff_decode(br, ac);
            int r = rs >> 4, s = rs & 15;
            if (s) {
                s = br_get(br, 1) ? p1 : m1;
            } else if (r != 15) {
                *eobrun = 1 << r;
                if (r)
                    *eobrun += (int)br_get(br, r);
                break;
            }
            /* Skip r zero coefficients, refining the nonzero ones passed on the way. */
            do {
                int16_t *cf = blk + zigzag_to_natural[k];
                if (*cf != 0) {
                    if (br->bits < 32)
                        br_fill(br);
                    if (br_get(br, 1) && (*cf & p1) == 0)
                        *cf = (int16_t)(*cf >= 0 ? *cf + p1 : *cf + m1);
                } else if (--r < 0) {
                    break;
                }
                k++;
            } while (k <= sc->se);
            if (s)
                blk[zigzag_to_natural[k]] = (int16_t)s;
        }
    }
    if (*eobrun > 0) {
        for (; k <= sc->se; k++) {
            int16_t *cf = blk + zigzag_to_natural[k];
            if (*cf != 0) {
                if (br->bits < 32)
                    br_fill(br);
                if (br_get(br, 1) && (*cf & p1) == 0)
                    *cf = (int16_t)(*cf >= 0 ? *cf + p1 : *cf + m1);
            }
        }
        (*eobrun)--;
    }
}

/* ---------------------------------------------------------------- output */

/* One output row of component c, upsampled to the full width as libjpeg-turbo's defaults do:
 * triangle filter for 2:1 horizontal (when the component is wider than 2 samples), 2:1
 * vertical, and 2:1 both; replication for every other integral ratio. Returns a pointer to
 * width samples, either into the plane or into tmp ((width + 64) bytes). */
static const uint8_t *upsample_row(const jpeg_dec *d, const jpeg_component *c, int y, uint8_t *tmp)
{
    int w = d->width;
    if (c->hr == 1 && c->vr == 1)
        return c->plane + (size_t)y * c->stride;
    int fancy_h = c->hr == 2 && c->ds_w > 2;
    if (c->vr == 2 && (c->hr == 1 || fancy_h)) {
        int cy = y >> 1;
        int ny = (y & 1) ? cy + 1 : cy - 1;
        if (ny < 0)
            ny = 0;
        if (ny > c->ds_h - 1)
            ny = c->ds_h - 1;
        const uint8_t *r0 = c->plane + (size_t)cy * c->stride;
        const uint8_t *r1 = c->plane + (size_t)ny * c->stride;
        if (c->hr == 1) {
            int bias = (y & 1) ? 2 : 1;
            for (int x = 0; x < w; x++)
                tmp[x] = (uint8_t)((r0[x] * 3 + r1[x] + bias) >> 2);
            return tmp;
        }
        int n = c->ds_w;
        int this_sum = r0[0] * 3 + r1[0];
        int next_sum = r0[1] * 3 + r1[1];
        tmp[0] = (uint8_t)((this_sum * 4 + 8) >> 4);
        tmp[1] = (uint8_t)((this_sum * 3 + next_sum + 7) >> 4);
        int last_sum = this_sum;
        this_sum = next_sum;
        for (int i = 1; i < n - 1; i++) {
            next_sum = r0[i + 1] * 3 + r1[i + 1];
            tmp[2 * i] = (uint8_t)((this_sum * 3 + last_sum + 8) >> 4);
            tmp[2 * i + 1] = (uint8_t)((this_sum * 3 + next_sum + 7) >> 4);
            last_sum = this_sum;
            this_sum = next_sum;
        }
        tmp[2 * n - 2] = (uint8_t)((this_sum * 3 + last_sum + 8) >> 4);
        tmp[2 * n - 1] = (uint8_t)((this_sum * 4 + 7) >> 4);
        return tmp;
    }
    if (c->vr == 1 && fancy_h) {
        const uint8_t *r = c->plane + (size_t)y * c->stride;
        int n = c->ds_w;
        tmp[0] = r[0];
        tmp[1] = (uint8_t)((r[0] * 3 + r[1] + 2) >> 2);
        for (int i = 1; i < n - 1; i++) {
            int v = r[i] * 3;
            tmp[2 * i] = (uint8_t)((v + r[i - 1] + 1) >> 2);
            tmp[2 * i + 1] = (uint8_t)((v + r[i + 1] + 2) >> 2);
        }
        tmp[2 * n - 2] = (uint8_t)((r[n - 1] * 3 + r[n - 2] + 1) >> 2);
        tmp[2 * n - 1] = r[n - 1];
        return tmp;
    }
    const uint8_t *r = c->plane + (size_t)(y / c->vr) * c->stride;
    if (c->hr == 1)
        return r;
    for (int x = 0; x < w; x++)
        tmp[x] = r[x / c->hr];
    return tmp;
}

static inline uint8_t clamp255(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* PIL's "CMYK;I" unpacking (Adobe files store inverted ink: C = 255 - stored) followed by
 * Pillow 9.4's CMYK->RGB: R = clip(nk - C*nk/255) with nk = 255 - K and its rounded
 * division by 255 ((t + (t >> 8)) >> 8 with t = a*b + 128). No colour management. */
static inline uint8_t cmyk_to_channel(int stored_c, int stored_k)
{
    int nk = stored_k; /* 255 - K where K = 255 - stored_k */
    int t = (255 - stored_c) * nk + 128;
    return clamp255(nk - (((t >> 8) + t) >> 8));
}

/* ---------------------------------------------------------------- fused YCbCr output */

/* The common case (YCbCr, full-resolution Y, each chroma component at ratio 1 or 2 in each
 * direction: 4:4:4, 4:2:2, 4:4:0, 4:2:0) is converted row by row without materialising
 * upsampled chroma rows, 16 pixels at a time with SIMD. For each output row, chroma_prep turns
 * the one or two source rows of a chroma component into an int16 row S (the vertical part of
 * libjpeg's filter); the horizontal part and the colour conversion then read S:
 *   hr 1, vr 1: S[i] = r0[i]                       out[x] = S[x]
 *   hr 1, vr 2: S[i] = (3*r0[i] + r1[i] + b) >> 2   out[x] = S[x]    (b = 1 above, 2 below)
 *   hr 2, vr 1: S[i] = r0[i]         out[2i] = (3*S[i] + S[i-1] + 1) >> 2,
 *                                    out[2i+1] = (3*S[i] + S[i+1] + 2) >> 2
 *   hr 2, vr 2: S[i] = 3*r0[i] + r1[i]  out[2i] = (3*S[i] + S[i-1] + 8) >> 4,
 *                                       out[2i+1] = (3*S[i] + S[i+1] + 7) >> 4
 * (r1 is the nearer neighbouring source row, clamped to the image.) With S[-1] = S[0] and
 * S[n] = S[n-1], libjpeg's edge formulas are the interior ones, so the loops have no special
 * cases; the results are those of upsample_row followed by the CS_YCC loop of emit_rows. */

typedef struct chroma_mode {
    int hr;         /* 1 or 2 */
    int be, bo, sh; /* hr 2: rounding biases of even/odd outputs and the final shift */
} chroma_mode;

/* Whether emit_rows can use ycc_row_fused: the layouts above, with fancy horizontal
 * upsampling wherever hr is 2 (upsample_row replicates for components of <= 2 samples). */
static int fused_eligible(const jpeg_dec *d)
{
    if (d->color_space != CS_YCC || d->ncomp != 3 || d->comp[0].hr != 1 || d->comp[0].vr != 1)
        return 0;
    for (int i = 1; i < 3; i++) {
        const jpeg_component *c = &d->comp[i];
        if (c->hr > 2 || c->vr > 2 || (c->hr == 2 && c->ds_w <= 2))
            return 0;
    }
    return 1;
}

/* Fills S[-1 .. n] (n = c->ds_w; S has room for n rounded up to 8, plus 2) for output row y
 * and returns the horizontal mode. Reads whole 8-sample groups, which stay inside the plane's
 * row because the stride is a multiple of 8 blocks' width that covers ds_w. */
static chroma_mode chroma_prep(const jpeg_component *c, int y, int16_t *S)
{
    chroma_mode m = {c->hr, 0, 0, 0};
    int n = c->ds_w;
    const uint8_t *r0, *r1;
    int mul, bias, shift; /* S = (mul*r0 + r1 + bias) >> shift, or S = r0 when mul is 0 */
    if (c->vr == 1) {
        r0 = r1 = c->plane + (size_t)y * c->stride;
        mul = 0, bias = 0, shift = 0;
        m.be = 1, m.bo = 2, m.sh = 2;
    } else {
        int cy = y >> 1;
        int ny = (y & 1) ? cy + 1 : cy - 1;
        if (ny < 0)
            ny = 0;
        if (ny > c->ds_h - 1)
            ny = c->ds_h - 1;
        r0 = c->plane + (size_t)cy * c->stride;
        r1 = c->plane + (size_t)ny * c->stride;
        mul = 3;
        bias = c->hr == 1 ? ((y & 1) ? 2 : 1) : 0;
        shift = c->hr == 1 ? 2 : 0;
        m.be = 8, m.bo = 7, m.sh = 4;
    }
    int i = 0;
#if defined(JPEG_SSE2)
    {
        int n8 = (n + 7) & ~7;
        const __m128i zero = _mm_setzero_si128();
        const __m128i vb = _mm_set1_epi16((short)bias);
        const __m128i vs = _mm_cvtsi32_si128(shift);
        for (; i < n8; i += 8) {
            __m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r0 + i)), zero);
            if (mul) {
                __m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r1 + i)), zero);
                a = _mm_add_epi16(_mm_add_epi16(a, _mm_add_epi16(a, a)), _mm_add_epi16(b, vb));
                a = _mm_srl_epi16(a, vs);
            }
            _mm_storeu_si128((__m128i *)(S + i), a);
        }
    }
#elif defined(JPEG_NEON)
    {
        int n8 = (n + 7) & ~7;
        const uint16x8_t vb = vdupq_n_u16((uint16_t)bias);
        const int16x8_t vs = vdupq_n_s16((int16_t)-shift);
        for (; i < n8; i += 8) {
            uint16x8_t a = vmovl_u8(vld1_u8(r0 + i));
            if (mul) {
                a = vmlaq_n_u16(vaddw_u8(vb, vld1_u8(r1 + i)), a, 3);
                a = vshlq_u16(a, vs);
            }
            vst1q_s16(S + i, vreinterpretq_s16_u16(a));
        }
    }
#endif
    for (; i < n; i++)
        S[i] = (int16_t)(mul ? (mul * r0[i] + r1[i] + bias) >> shift : r0[i]);
    S[-1] = S[0];
    S[n] = S[n - 1];
    return m;
}

/* Upsampled chroma of output column x (the scalar form of the table above). */
static inline int chroma_at(const int16_t *S, const chroma_mode *m, int x)
{
    if (m->hr == 1)
        return S[x];
    int i = x >> 1, t = 3 * S[i];
    return (x & 1) ? (t + S[i + 1] + m->bo) >> m->sh : (t + S[i - 1] + m->be) >> m->sh;
}

#if defined(JPEG_SSE2)
/* Upsampled chroma of output columns x .. x+15 as two vectors of 8 int16. */
static inline void chroma16_sse2(const int16_t *S, const chroma_mode *m, int x, __m128i *lo,
                                 __m128i *hi)
{
    if (m->hr == 1) {
        *lo = _mm_loadu_si128((const __m128i *)(S + x));
        *hi = _mm_loadu_si128((const __m128i *)(S + x + 8));
        return;
    }
    const int16_t *s = S + (x >> 1);
    __m128i c = _mm_loadu_si128((const __m128i *)s);
    __m128i t = _mm_add_epi16(c, _mm_add_epi16(c, c));
    __m128i sh = _mm_cvtsi32_si128(m->sh);
    __m128i ev = _mm_add_epi16(_mm_add_epi16(t, _mm_loadu_si128((const __m128i *)(s - 1))),
                               _mm_set1_epi16((short)m->be));
    __m128i od = _mm_add_epi16(_mm_add_epi16(t, _mm_loadu_si128((const __m128i *)(s + 1))),
                               _mm_set1_epi16((short)m->bo));
    ev = _mm_srl_epi16(ev, sh);
    od = _mm_srl_epi16(od, sh);
    *lo = _mm_unpacklo_epi16(ev, od);
    *hi = _mm_unpackhi_epi16(ev, od);
}

/* libjpeg's YCbCr->RGB offsets for 8 int16 chroma pairs, exactly: its tables compute
 * (K*x + 32768) >> 16 with K = 91881 (R), 116130 (B) and -22554*xb - 46802*xr + 32768 (G),
 * x = C - 128. K does not fit pmaddwd's 16-bit operands, so the whole multiples of 65536 are
 * taken out first (91881 = 65536 + 26345, 116130 = 131072 - 14942, -46802 = -65536 + 18734):
 * they add x, 2x or -xr exactly after the shift. The constant 32768 rides in the second
 * operand pair as 2 * 16384. */
static inline void ycc_offsets_sse2(__m128i cb, __m128i cr, __m128i *ro, __m128i *go, __m128i *bo)
{
    const __m128i k128 = _mm_set1_epi16(128), two = _mm_set1_epi16(2);
    const __m128i kr = _mm_set1_epi32((int)((16384u << 16) | 26345u));
    const __m128i kb = _mm_set1_epi32((int)((16384u << 16) | (uint16_t)-14942));
    const __m128i kg = _mm_set1_epi32((int)((18734u << 16) | (uint16_t)-22554));
    const __m128i half = _mm_set1_epi32(32768);
    __m128i xb = _mm_sub_epi16(cb, k128), xr = _mm_sub_epi16(cr, k128);
    __m128i rl = _mm_srai_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(xr, two), kr), 16);
    __m128i rh = _mm_srai_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(xr, two), kr), 16);
    *ro = _mm_add_epi16(_mm_packs_epi32(rl, rh), xr);
    __m128i bl = _mm_srai_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(xb, two), kb), 16);
    __m128i bh = _mm_srai_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(xb, two), kb), 16);
    *bo = _mm_add_epi16(_mm_packs_epi32(bl, bh), _mm_add_epi16(xb, xb));
    __m128i gl = _mm_madd_epi16(_mm_unpacklo_epi16(xb, xr), kg);
    __m128i gh = _mm_madd_epi16(_mm_unpackhi_epi16(xb, xr), kg);
    gl = _mm_srai_epi32(_mm_add_epi32(gl, half), 16);
    gh = _mm_srai_epi32(_mm_add_epi32(gh, half), 16);
    *go = _mm_sub_epi16(_mm_packs_epi32(gl, gh), xr);
}

/* Packs 4 RGBX pixels (X = 0, 32-bit lanes) into 12 bytes at the bottom of the vector. */
static inline __m128i rgbx_to_rgb12_sse2(__m128i p)
{
    const __m128i lo24 = _mm_set_epi32(0, 0xFFFFFF, 0, 0xFFFFFF);
    const __m128i hi24 = _mm_set_epi32(0xFFFF, (int)0xFF000000u, 0xFFFF, (int)0xFF000000u);
    __m128i q = _mm_or_si128(_mm_and_si128(p, lo24), _mm_and_si128(_mm_srli_epi64(p, 8), hi24));
    return _mm_or_si128(_mm_move_epi64(q), _mm_slli_si128(_mm_srli_si128(q, 8), 6));
}

/* 16 pixels to o[0 .. 47], writing 4 more (zero) bytes at o[48 .. 51]: the caller makes sure
 * they lie inside the row, where later pixels overwrite them. */
static inline void ycc16_store_sse2(const uint8_t *py, __m128i cb0, __m128i cb1, __m128i cr0,
                                    __m128i cr1, uint8_t *o)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i yv = _mm_loadu_si128((const __m128i *)py);
    __m128i y0 = _mm_unpacklo_epi8(yv, zero), y1 = _mm_unpackhi_epi8(yv, zero);
    __m128i r0, g0, b0, r1, g1, b1;
    ycc_offsets_sse2(cb0, cr0, &r0, &g0, &b0);
    ycc_offsets_sse2(cb1, cr1, &r1, &g1, &b1);
    /* Y + offset lies in -180 .. 433: packus's saturation is libjpeg's range clamp. */
    __m128i R = _mm_packus_epi16(_mm_add_epi16(y0, r0), _mm_add_epi16(y1, r1));
    __m128i G = _mm_packus_epi16(_mm_add_epi16(y0, g0), _mm_add_epi16(y1, g1));
    __m128i B = _mm_packus_epi16(_mm_add_epi16(y0, b0), _mm_add_epi16(y1, b1));
    __m128i rg0 = _mm_unpacklo_epi8(R, G), rg1 = _mm_unpackhi_epi8(R, G);
    __m128i bz0 = _mm_unpacklo_epi8(B, zero), bz1 = _mm_unpackhi_epi8(B, zero);
    _mm_storeu_si128((__m128i *)o, rgbx_to_rgb12_sse2(_mm_unpacklo_epi16(rg0, bz0)));
    _mm_storeu_si128((__m128i *)(o + 12), rgbx_to_rgb12_sse2(_mm_unpackhi_epi16(rg0, bz0)));
    _mm_storeu_si128((__m128i *)(o + 24), rgbx_to_rgb12_sse2(_mm_unpacklo_epi16(rg1, bz1)));
    _mm_storeu_si128((__m128i *)(o + 36), rgbx_to_rgb12_sse2(_mm_unpackhi_epi16(rg1, bz1)));
}
#endif

#if defined(JPEG_NEON)
/* As chroma16_sse2. */
static inline void chroma16_neon(const int16_t *S, const chroma_mode *m, int x, int16x8_t *lo,
                                 int16x8_t *hi)
{
    if (m->hr == 1) {
        *lo = vld1q_s16(S + x);
        *hi = vld1q_s16(S + x + 8);
        return;
    }
    const int16_t *s = S + (x >> 1);
    int16x8_t t = vmulq_n_s16(vld1q_s16(s), 3);
    int16x8_t nsh = vdupq_n_s16((int16_t)-m->sh);
    int16x8_t ev = vaddq_s16(vaddq_s16(t, vld1q_s16(s - 1)), vdupq_n_s16((int16_t)m->be));
    int16x8_t od = vaddq_s16(vaddq_s16(t, vld1q_s16(s + 1)), vdupq_n_s16((int16_t)m->bo));
    ev = vshlq_s16(ev, nsh);
    od = vshlq_s16(od, nsh);
    *lo = vzip1q_s16(ev, od);
    *hi = vzip2q_s16(ev, od);
}

/* 8 pixels' R, G, B as uint8 (see ycc_offsets_sse2 for the arithmetic). */
static inline void ycc8_neon(uint8x8_t y, int16x8_t cb, int16x8_t cr, uint8x8_t *R, uint8x8_t *G,
                             uint8x8_t *B)
{
    const int32x4_t half = vdupq_n_s32(32768);
    int16x8_t xb = vsubq_s16(cb, vdupq_n_s16(128)), xr = vsubq_s16(cr, vdupq_n_s16(128));
    int16x8_t yy = vreinterpretq_s16_u16(vmovl_u8(y));
    int16x8_t r = vcombine_s16(vshrn_n_s32(vmlal_n_s16(half, vget_low_s16(xr), 26345), 16),
                               vshrn_n_s32(vmlal_high_n_s16(half, xr, 26345), 16));
    int16x8_t b = vcombine_s16(vshrn_n_s32(vmlal_n_s16(half, vget_low_s16(xb), -14942), 16),
                               vshrn_n_s32(vmlal_high_n_s16(half, xb, -14942), 16));
    int32x4_t gl = vmlal_n_s16(vmlal_n_s16(half, vget_low_s16(xb), -22554), vget_low_s16(xr), 18734);
    int32x4_t gh = vmlal_high_n_s16(vmlal_high_n_s16(half, xb, -22554), xr, 18734);
    int16x8_t g = vcombine_s16(vshrn_n_s32(gl, 16), vshrn_n_s32(gh, 16));
    *R = vqmovun_s16(vaddq_s16(yy, vaddq_s16(r, xr)));
    *G = vqmovun_s16(vaddq_s16(yy, vsubq_s16(g, xr)));
    *B = vqmovun_s16(vaddq_s16(yy, vaddq_s16(b, vaddq_s16(xb, xb))));
}
#endif

/* Output row y of a fused_eligible image into o (width * 3 bytes). */
static void ycc_row_fused(jpeg_dec *d, int y, uint8_t *o)
{
    int w = d->width;
    int16_t *sb = d->sums + 8, *sr = d->sums + d->sums_stride + 8;
    chroma_mode mb = chroma_prep(&d->comp[1], y, sb);
    chroma_mode mr = chroma_prep(&d->comp[2], y, sr);
    const uint8_t *py = d->comp[0].plane + (size_t)y * d->comp[0].stride;
    int x = 0;
#if defined(JPEG_SSE2)
    for (; x + 18 <= w; x += 16) { /* + 2: room for the 4 spare bytes of ycc16_store_sse2 */
        __m128i cb0, cb1, cr0, cr1;
        chroma16_sse2(sb, &mb, x, &cb0, &cb1);
        chroma16_sse2(sr, &mr, x, &cr0, &cr1);
        ycc16_store_sse2(py + x, cb0, cb1, cr0, cr1, o + 3 * x);
    }
#elif defined(JPEG_NEON)
    for (; x + 16 <= w; x += 16) {
        int16x8_t cb0, cb1, cr0, cr1;
        chroma16_neon(sb, &mb, x, &cb0, &cb1);
        chroma16_neon(sr, &mr, x, &cr0, &cr1);
        uint8x16_t yv = vld1q_u8(py + x);
        uint8x8_t r0, g0, b0, r1, g1, b1;
        ycc8_neon(vget_low_u8(yv), cb0, cr0, &r0, &g0, &b0);
        ycc8_neon(vget_high_u8(yv), cb1, cr1, &r1, &g1, &b1);
        uint8x16x3_t rgb = {{vcombine_u8(r0, r1), vcombine_u8(g0, g1), vcombine_u8(b0, b1)}};
        vst3q_u8(o + 3 * x, rgb);
    }
#endif
    const uint8_t *lim = d->clamp + 384;
    for (; x < w; x++) {
        int yy = py[x], cb = chroma_at(sb, &mb, x), cr = chroma_at(sr, &mr, x);
        o[3 * x] = lim[yy + d->cr_r[cr]];
        o[3 * x + 1] = lim[yy + (int)((d->cb_g[cb] + d->cr_g[cr]) >> 16)];
        o[3 * x + 2] = lim[yy + d->cb_b[cb]];
    }
}

/* Converts rows [y0, y1) of the component planes into RGB output. */
static void emit_rows(jpeg_dec *d, int y0, int y1)
{
    int w = d->width;
    if (d->fused) {
        for (int y = y0; y < y1; y++)
            ycc_row_fused(d, y, d->rgb + (size_t)y * w * 3);
        d->rows_emitted = y1;
        return;
    }
    for (int y = y0; y < y1; y++) {
        const uint8_t *r[JPEG_MAX_COMPONENTS];
        for (int c = 0; c < d->ncomp; c++)
            r[c] = upsample_row(d, &d->comp[c], y, d->rowtmp + (size_t)c * d->rowtmp_stride);
        uint8_t *o = d->rgb + (size_t)y * w * 3;
        switch (d->color_space) {
        case CS_GRAY:
            for (int x = 0; x < w; x++)
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = r[0][x];
            break;
        case CS_RGB:
            for (int x = 0; x < w; x++) {
                o[3 * x] = r[0][x];
                o[3 * x + 1] = r[1][x];
                o[3 * x + 2] = r[2][x];
            }
            break;
        case CS_YCC:
            /* libjpeg's jdcolor.c fixed point: 16 fraction bits, constants FIX(1.402),
             * FIX(1.772), FIX(0.71414), FIX(0.34414), rounding as its lookup tables. */
            {
                const uint8_t *lim = d->clamp + 384;
                const uint8_t *py = r[0], *pb = r[1], *pr = r[2];
                for (int x = 0; x < w; x++) {
                    int yy = py[x], cb = pb[x], cr = pr[x];
                    o[3 * x] = lim[yy + d->cr_r[cr]];
                    o[3 * x + 1] = lim[yy + (int)((d->cb_g[cb] + d->cr_g[cr]) >> 16)];
                    o[3 * x + 2] = lim[yy + d->cb_b[cb]];
                }
            }
            break;
        case CS_CMYK:
            for (int x = 0; x < w; x++) {
                int k = r[3][x];
                o[3 * x] = cmyk_to_channel(r[0][x], k);
                o[3 * x + 1] = cmyk_to_channel(r[1][x], k);
                o[3 * x + 2] = cmyk_to_channel(r[2][x], k);
            }
            break;
        default: /* CS_YCCK: libjpeg turns YCC into inverted CMY, K passes through */
            for (int x = 0; x < w; x++) {
                int yy = r[0][x], cb = r[1][x] - 128, cr = r[2][x] - 128, k = r[3][x];
                int cc = 255 - clamp255(yy + ((91881 * cr + 32768) >> 16));
                int mm = 255 - clamp255(yy + ((-22554 * cb - 46802 * cr + 32768) >> 16));
                int ye = 255 - clamp255(yy + ((116130 * cb + 32768) >> 16));
                o[3 * x] = cmyk_to_channel(cc, k);
                o[3 * x + 1] = cmyk_to_channel(mm, k);
                o[3 * x + 2] = cmyk_to_channel(ye, k);
            }
            break;
        }
    }
    d->rows_emitted = y1;
}

/* ---------------------------------------------------------------- frame setup */

static int fail_trunc(jpeg_dec *d, const char *what, size_t pos)
{
    return vlm_fail(d->e, VLM_EFORMAT, "%s: truncated JPEG: %s at byte %zu of %zu", d->name, what,
                    pos, d->len);
}

static int parse_sof(jpeg_dec *d, int marker, const uint8_t *p, size_t n)
{
    if (d->frame_seen)
        return vlm_fail(d->e, VLM_EFORMAT, "%s: second SOF marker (0xFF%02X) in one JPEG", d->name,
                        marker);
    if (n < 6)
        return vlm_fail(d->e, VLM_EFORMAT, "%s: SOF segment too short (%zu bytes, expected >= 6)",
                        d->name, n);
    int precision = p[0];
    d->height = (p[1] << 8) | p[2];
    d->width = (p[3] << 8) | p[4];
    d->ncomp = p[5];
    if (precision != 8)
        return vlm_fail(d->e, VLM_EUNSUPPORTED,
                        "%s: unsupported JPEG feature: %d-bit sample precision (only 8)", d->name,
                        precision);
    if (d->width == 0 || d->height == 0)
        return vlm_fail(d->e, VLM_EFORMAT,
                        "%s: JPEG frame size %dx%d is empty (DNL-defined height unsupported)",
                        d->name, d->width, d->height);
    if (d->ncomp != 1 && d->ncomp != 3 && d->ncomp != 4)
        return vlm_fail(d->e, d->ncomp == 0 ? VLM_EFORMAT : VLM_EUNSUPPORTED,
                        "%s: unsupported JPEG feature: %d color components (expected 1, 3 or 4)",
                        d->name, d->ncomp);
    if (n < 6 + 3 * (size_t)d->ncomp)
        return vlm_fail(d->e, VLM_EFORMAT, "%s: SOF segment too short (%zu bytes for %d components)",
                        d->name, n, d->ncomp);
    d->progressive = marker == 0xC2;
    d->hmax = d->vmax = 1;
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        c->id = p[6 + 3 * i];
        c->h = p[7 + 3 * i] >> 4;
        c->v = p[7 + 3 * i] & 15;
        c->tq = p[8 + 3 * i];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: JPEG component %d sampling factors %dx%d (expected 1..4)", d->name,
                            i, c->h, c->v);
        if (c->tq > 3)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: JPEG component %d quantization table %d (expected 0..3)", d->name, i,
                            c->tq);
        if (c->h > d->hmax)
            d->hmax = c->h;
        if (c->v > d->vmax)
            d->vmax = c->v;
    }
    int blocks = 0;
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        if (d->hmax % c->h || d->vmax % c->v)
            return vlm_fail(d->e, VLM_EUNSUPPORTED,
                            "%s: unsupported JPEG feature: non-integral sampling ratio (component "
                            "%d is %dx%d, maximum %dx%d)",
                            d->name, i, c->h, c->v, d->hmax, d->vmax);
        blocks += c->h * c->v;
    }
    if (d->ncomp > 1 && blocks > JPEG_MAX_BLOCKS_IN_MCU)
        return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG MCU of %d blocks (at most %d are legal)",
                        d->name, blocks, JPEG_MAX_BLOCKS_IN_MCU);
    uint64_t pixels = (uint64_t)d->width * (uint64_t)d->height;
    if (pixels > d->max_pixels)
        return vlm_fail(d->e, VLM_ERANGE, "%s: JPEG of %dx%d = %llu pixels exceeds the limit %llu",
                        d->name, d->width, d->height, (unsigned long long)pixels,
                        (unsigned long long)d->max_pixels);
    d->mcux = (d->width + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->height + 8 * d->vmax - 1) / (8 * d->vmax);
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        c->ds_w = (int)(((int64_t)d->width * c->h + d->hmax - 1) / d->hmax);
        c->ds_h = (int)(((int64_t)d->height * c->v + d->vmax - 1) / d->vmax);
        c->bw = (c->ds_w + 7) / 8;
        c->bh = (c->ds_h + 7) / 8;
        c->pbw = d->mcux * c->h;
        c->pbh = d->mcuy * c->v;
        c->hr = d->hmax / c->h;
        c->vr = d->vmax / c->v;
        c->stride = (size_t)c->pbw * 8;
        for (int k = 0; k < 10; k++)
            c->coef_bits[k] = c->prev_bits[k] = -1;
    }
    /* Color space as libjpeg's default_decompress_parms chooses it. */
    if (d->ncomp == 1) {
        d->color_space = CS_GRAY;
    } else if (d->ncomp == 3) {
        if (d->jfif)
            d->color_space = CS_YCC;
        else if (d->adobe)
            d->color_space = d->adobe_transform == 0 ? CS_RGB : CS_YCC;
        else if (d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B')
            d->color_space = CS_RGB;
        else
            d->color_space = CS_YCC;
    } else {
        d->color_space = (d->adobe && d->adobe_transform != 0) ? CS_YCCK : CS_CMYK;
    }
    d->frame_seen = 1;
    return 0;
}

/* Allocates the planes, the output and (buffered mode) the coefficients, within the budget. */
static int alloc_frame(jpeg_dec *d)
{
    size_t total = 0, t;
    size_t out_bytes;
    if (ck_mul3((size_t)d->width, (size_t)d->height, 3, &out_bytes))
        return vlm_fail(d->e, VLM_ERANGE, "%s: JPEG output size overflows", d->name);
    total = out_bytes;
    size_t plane_bytes[JPEG_MAX_COMPONENTS], coef_bytes[JPEG_MAX_COMPONENTS];
    uint64_t blocks_total = 0;
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        size_t nblocks;
        if (ck_mul((size_t)c->pbw, (size_t)c->pbh, &nblocks) || ck_mul(nblocks, 64, &plane_bytes[i]))
            return vlm_fail(d->e, VLM_ERANGE, "%s: JPEG plane size overflows", d->name);
        coef_bytes[i] = 0;
        if (d->buffered && ck_mul(nblocks, 128, &coef_bytes[i]))
            return vlm_fail(d->e, VLM_ERANGE, "%s: JPEG coefficient size overflows", d->name);
        if (ck_add(total, plane_bytes[i], &t) || ck_add(t, coef_bytes[i], &total))
            return vlm_fail(d->e, VLM_ERANGE, "%s: JPEG memory size overflows", d->name);
        blocks_total += nblocks;
    }
    d->rowtmp_stride = (size_t)d->width + 64;
    d->sums_stride = (size_t)d->width + 32; /* chroma_prep: 8 before, n rounded up to 8, + 1 */
    if (ck_add(total, d->rowtmp_stride * JPEG_MAX_COMPONENTS, &total) ||
        ck_add(total, d->sums_stride * 2 * sizeof(int16_t), &total) || total > d->max_bytes)
        return vlm_fail(d->e, VLM_ENOMEM,
                        "%s: decoding this %dx%d JPEG needs %zu bytes, over the budget of %zu",
                        d->name, d->width, d->height, total, d->max_bytes);
    d->block_budget = blocks_total * 80 + (1u << 20);
    d->rgb = malloc(out_bytes);
    d->rowtmp = malloc(d->rowtmp_stride * JPEG_MAX_COMPONENTS);
    d->sums = malloc(d->sums_stride * 2 * sizeof(int16_t));
    d->fused = fused_eligible(d);
    if (!d->rgb || !d->rowtmp || !d->sums)
        return vlm_fail(d->e, VLM_ENOMEM, "%s: out of memory for a %dx%d JPEG", d->name, d->width,
                        d->height);
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        c->plane = malloc(plane_bytes[i]);
        if (!c->plane)
            return vlm_fail(d->e, VLM_ENOMEM, "%s: out of memory for a %dx%d JPEG", d->name,
                            d->width, d->height);
        if (d->buffered) {
            c->coefs = calloc(coef_bytes[i] / 2, 2);
            if (!c->coefs)
                return vlm_fail(d->e, VLM_ENOMEM, "%s: out of memory for a %dx%d JPEG", d->name,
                                d->width, d->height);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- scans */

typedef struct scan_state {
    bitreader br;
    int restarts_to_go;
    int next_rst;
    int insufficient;
    int eobrun;
} scan_state;

/* Handles the end of a restart interval like libjpeg's read_restart_marker and
 * jpeg_resync_to_restart: the expected RSTn is consumed; a marker that is not a restart (or
 * the end of data) is left for the marker parser and the rest of the scan reads as zeros;
 * RST markers just ahead of the expected one are left (the missing intervals become zeros);
 * earlier ones are skipped; any other RST is taken as the expected one. */
static void process_restart(jpeg_dec *d, jpeg_scan *sc, scan_state *st)
{
    bitreader *br = &st->br;
    size_t pos = (size_t)(br->p - d->buf);
    int m = find_marker(d->buf, d->len, &pos);
    int desired = st->next_rst;
    for (int guard = 0; guard < 1000000; guard++) {
        if (m < 0)
            break; /* end of data: leave it */
        if (m < 0xC0) {
            pos += 2; /* invalid marker: discard and look further */
        } else if (m < 0xD0 || m > 0xD7) {
            break; /* a real marker: leave it */
        } else if (m == 0xD0 + ((desired + 1) & 7) || m == 0xD0 + ((desired + 2) & 7)) {
            break;
        } else if (m == 0xD0 + ((desired - 1) & 7) || m == 0xD0 + ((desired - 2) & 7)) {
            pos += 2;
        } else {
            pos += 2; /* the expected restart, or one too far away to judge: take it */
            m = 0;
            break;
        }
        m = find_marker(d->buf, d->len, &pos);
    }
    br_init(br, d->buf + pos, d->buf + d->len);
    /* Left against a marker: the next interval reads zero bits. libjpeg's process_restart
     * clears its out-of-data flag only when the restart marker was found, and otherwise leaves
     * it as it was: if the data had not run out yet, the first MCU of the interval is still
     * decoded (from the zero bits; running into them then sets the flag), else it and the
     * rest of the interval are skipped. */
    br->at_marker = m != 0;
    if (m == 0)
        st->insufficient = 0;
    st->next_rst = (st->next_rst + 1) & 7;
    st->restarts_to_go = d->restart_interval;
    st->eobrun = 0;
    for (int i = 0; i < sc->ns; i++)
        sc->c[i]->dc_pred = 0;
}

/* Decodes one block of the scan into blk (coefficient storage) per the scan's mode. */
static int decode_one_block(jpeg_dec *d, jpeg_scan *sc, scan_state *st, jpeg_component *c,
                            int16_t *blk)
{
    if (!d->progressive)
        return decode_block_seq(&st->br, &d->dc[c->dc_tab], &d->ac[c->ac_tab], &c->dc_pred, blk);
    if (sc->ss == 0) {
        if (sc->ah == 0)
            decode_dc_first(&st->br, &d->dc[c->dc_tab], sc->al, &c->dc_pred, blk);
        else
            decode_dc_refine(&st->br, sc->al, blk);
    } else if (sc->ah == 0) {
        decode_ac_first(&st->br, &d->ac[c->ac_tab], sc, &st->eobrun, blk);
    } else {
        decode_ac_refine(&st->br, &d->ac[c->ac_tab], sc, &st->eobrun, blk);
    }
    return 64;
}

/* Decodes the entropy-coded data of one scan starting at *pos; leaves *pos after it. */
static int decode_scan(jpeg_dec *d, jpeg_scan *sc, size_t *pos)
{
    scan_state st;
    memset(&st, 0, sizeof st);
    br_init(&st.br, d->buf + *pos, d->buf + d->len);
    st.restarts_to_go = d->restart_interval;
    int single = sc->ns == 1;
    int mx_n = single ? sc->c[0]->bw : d->mcux;
    int my_n = single ? sc->c[0]->bh : d->mcuy;
    uint64_t visits = (uint64_t)mx_n * (uint64_t)my_n;
    if (!single)
        for (int i = 0; i < sc->ns; i++)
            visits += (uint64_t)d->mcux * d->mcuy * (uint64_t)(sc->c[i]->h * sc->c[i]->v - 1);
    if (visits > d->block_budget)
        return vlm_fail(d->e, VLM_EFORMAT,
                        "%s: JPEG has too many scans for its size (work limit reached at scan %d)",
                        d->name, d->scans);
    d->block_budget -= visits;
    int16_t tmpblk[64];

    for (int my = 0; my < my_n; my++) {
        for (int mx = 0; mx < mx_n; mx++) {
            /* Before the restart check, as libjpeg's consume_data notes it before decode_mcu. */
            if (!st.insufficient)
                d->last_good_imcu = single ? my / sc->c[0]->v : my;
            if (d->restart_interval) {
                if (st.restarts_to_go == 0)
                    process_restart(d, sc, &st);
                st.restarts_to_go--;
            }
            if (st.insufficient && d->buffered && st.br.at_marker) {
                /* No more data before a non-restart marker: every remaining block of a buffered
                 * scan stays as it is, so stop here (libjpeg would skip them one by one). */
                size_t mp = (size_t)(st.br.p - d->buf);
                int m = find_marker(d->buf, d->len, &mp);
                if (m < 0xD0 || m > 0xD7)
                    goto done;
            }
            for (int i = 0; i < sc->ns; i++) {
                jpeg_component *c = sc->c[i];
                int nh = single ? 1 : c->h, nv = single ? 1 : c->v;
                for (int by = 0; by < nv; by++) {
                    for (int bx = 0; bx < nh; bx++) {
                        int bxx = single ? mx : mx * c->h + bx;
                        int byy = single ? my : my * c->v + by;
                        if (d->buffered) {
                            if (!st.insufficient) {
                                int16_t *blk = c->coefs + ((size_t)byy * c->pbw + bxx) * 64;
                                decode_one_block(d, sc, &st, c, blk);
                            }
                            continue;
                        }
                        uint8_t *out = c->plane + (size_t)byy * 8 * c->stride + (size_t)bxx * 8;
                        int kend = 1;
                        memset(tmpblk, 0, sizeof tmpblk);
                        if (!st.insufficient)
                            kend = decode_one_block(d, sc, &st, c, tmpblk);
                        if (kend <= 1)
                            idct_dc_only(tmpblk[0], c->q, out, c->stride);
                        else
                            idct_block(tmpblk, c->q, out, c->stride);
                    }
                }
            }
            if (st.br.bits < st.br.pad)
                st.insufficient = 1;
            d->any_insufficient |= st.insufficient;
        }
        if (!d->buffered) {
            /* Rows whose upsampling context (one component row below) is now decoded. */
            int ready = single ? (my + 1) * 8 : my * 8 * d->vmax;
            if (ready > d->height)
                ready = d->height;
            if (ready > d->rows_emitted)
                emit_rows(d, d->rows_emitted, ready);
        }
    }
done:
    if (!d->buffered) {
        emit_rows(d, d->rows_emitted, d->height);
        d->stream_done = 1;
    }
    *pos = (size_t)(st.br.p - d->buf);
    return 0;
}

static int parse_sos(jpeg_dec *d, const uint8_t *p, size_t n, jpeg_scan *sc)
{
    if (!d->frame_seen)
        return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG SOS marker before any SOF", d->name);
    if (n < 1 || p[0] < 1 || p[0] > 4 || n < 4 + 2 * (size_t)p[0])
        return vlm_fail(d->e, VLM_EFORMAT, "%s: bad JPEG SOS segment (%zu bytes, %d components)",
                        d->name, n, n ? p[0] : 0);
    sc->ns = p[0];
    if (sc->ns > d->ncomp)
        return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG scan of %d components in a %d-component frame",
                        d->name, sc->ns, d->ncomp);
    for (int i = 0; i < sc->ns; i++) {
        int id = p[1 + 2 * i], tabs = p[2 + 2 * i];
        jpeg_component *c = NULL;
        for (int j = 0; j < d->ncomp; j++)
            if (d->comp[j].id == id)
                c = &d->comp[j];
        if (!c)
            return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG scan refers to unknown component id %d",
                            d->name, id);
        for (int j = 0; j < i; j++)
            if (sc->c[j] == c)
                return vlm_fail(d->e, VLM_EFORMAT,
                                "%s: JPEG scan lists component id %d twice", d->name, id);
        c->dc_tab = tabs >> 4;
        c->ac_tab = tabs & 15;
        if (c->dc_tab > 3 || c->ac_tab > 3)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: JPEG scan uses Huffman tables %d/%d (expected 0..3)", d->name,
                            c->dc_tab, c->ac_tab);
        sc->c[i] = c;
    }
    const uint8_t *q = p + 1 + 2 * sc->ns;
    sc->ss = q[0];
    sc->se = q[1];
    sc->ah = q[2] >> 4;
    sc->al = q[2] & 15;
    if (d->progressive) {
        int bad = 0;
        if (sc->ss == 0)
            bad = sc->se != 0;
        else
            bad = sc->ss > sc->se || sc->se > 63 || sc->ns != 1;
        if (sc->ah != 0 && sc->al != sc->ah - 1)
            bad = 1;
        if (sc->al > 13)
            bad = 1;
        if (bad)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: invalid progressive JPEG scan (Ss %d, Se %d, Ah %d, Al %d)",
                            d->name, sc->ss, sc->se, sc->ah, sc->al);
    }
    /* Which tables this scan decodes with; missing 0/1 fall back to the standard ones. */
    int need_dc = !d->progressive || (sc->ss == 0 && sc->ah == 0);
    int need_ac = !d->progressive || sc->ss != 0;
    for (int i = 0; i < sc->ns; i++) {
        jpeg_component *c = sc->c[i];
        if (need_dc) {
            huff_table *t = &d->dc[c->dc_tab];
            if (!t->defined && c->dc_tab < 2)
                huff_load_standard(t, 1, c->dc_tab);
            if (!t->defined)
                return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG scan uses undefined DC table %d",
                                d->name, c->dc_tab);
            if (t->max_symbol > 15)
                return vlm_fail(d->e, VLM_EFORMAT,
                                "%s: JPEG DC Huffman table %d has symbol %d (expected <= 15)",
                                d->name, c->dc_tab, t->max_symbol);
        }
        if (need_ac) {
            huff_table *t = &d->ac[c->ac_tab];
            if (!t->defined && c->ac_tab < 2)
                huff_load_standard(t, 0, c->ac_tab);
            if (!t->defined)
                return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG scan uses undefined AC table %d",
                                d->name, c->ac_tab);
        }
        if (!c->q_latched) {
            if (!d->qt_defined[c->tq])
                return vlm_fail(d->e, VLM_EFORMAT,
                                "%s: JPEG component id %d uses undefined quantization table %d",
                                d->name, c->id, c->tq);
            for (int k = 0; k < 64; k++)
                c->q[k] = (int16_t)d->qt[c->tq][k];
            c->q_latched = 1;
        }
        c->dc_pred = 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- table segments */

static int parse_dqt(jpeg_dec *d, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int pq = p[i] >> 4, tq = p[i] & 15;
        if (pq > 1 || tq > 3)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: JPEG DQT table %d with precision %d (expected 0..3, 0/1)", d->name,
                            tq, pq);
        size_t need = pq ? 128 : 64;
        if (n - i - 1 < need)
            return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG DQT segment too short for table %d",
                            d->name, tq);
        for (int k = 0; k < 64; k++) {
            const uint8_t *v = p + i + 1 + (pq ? 2 * k : k);
            d->qt[tq][zigzag_to_natural[k]] = (uint16_t)(pq ? (v[0] << 8) | v[1] : v[0]);
        }
        d->qt_defined[tq] = 1;
        i += 1 + need;
    }
    return 0;
}

static int parse_dht(jpeg_dec *d, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (n - i < 17)
            return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG DHT segment too short", d->name);
        int tc = p[i] >> 4, th = p[i] & 15;
        if (tc > 1 || th > 3)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: JPEG DHT class %d index %d (expected 0/1 and 0..3)", d->name, tc,
                            th);
        int nsym = 0;
        for (int l = 0; l < 16; l++)
            nsym += p[i + 1 + l];
        if (nsym > 256 || n - i - 17 < (size_t)nsym)
            return vlm_fail(d->e, VLM_EFORMAT,
                            "%s: JPEG DHT table %d/%d has %d symbols (at most 256, %zu bytes left)",
                            d->name, tc, th, nsym, n - i - 17);
        huff_table *t = tc ? &d->ac[th] : &d->dc[th];
        if (huff_build(t, p + i + 1, p + i + 17, nsym) != 0)
            return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG DHT table %d/%d is not a valid prefix code",
                            d->name, tc, th);
        i += 17 + (size_t)nsym;
    }
    return 0;
}

static void parse_app(jpeg_dec *d, int marker, const uint8_t *p, size_t n)
{
    if (marker == 0xE0 && n >= 14 && memcmp(p, "JFIF\0", 5) == 0)
        d->jfif = 1;
    if (marker == 0xEE && n >= 12 && memcmp(p, "Adobe", 5) == 0) {
        d->adobe = 1;
        d->adobe_transform = p[11];
    }
    if (marker == 0xE1 && n >= 6 && memcmp(p, "Exif\0\0", 6) == 0)
        d->orientation = exif_orientation(p + 6, n - 6);
}

static const char *unsupported_sof_name(int m)
{
    switch (m) {
    case 0xC3: return "lossless (SOF3)";
    case 0xC5: return "hierarchical/differential sequential (SOF5)";
    case 0xC6: return "hierarchical/differential progressive (SOF6)";
    case 0xC7: return "hierarchical/differential lossless (SOF7)";
    case 0xC9: return "arithmetic coding (SOF9)";
    case 0xCA: return "arithmetic coding, progressive (SOF10)";
    case 0xCB: return "arithmetic coding, lossless (SOF11)";
    case 0xCD: return "arithmetic coding, hierarchical (SOF13)";
    case 0xCE: return "arithmetic coding, hierarchical progressive (SOF14)";
    case 0xCF: return "arithmetic coding, hierarchical lossless (SOF15)";
    case 0xDE: return "hierarchical (DHP)";
    default: return "hierarchical (EXP)";
    }
}

/* Records which coefficients a progressive scan codes, as libjpeg's start_pass_phuff_decoder
 * does, for block smoothing: for each component of the scan, prev_bits[1..9] (and [0] for a DC
 * scan) take the current values (0 in the first scan of the file), then coef_bits[Ss..Se]
 * become Al. Called once per scan after d->scans counts it. */
static void note_scan_bits(jpeg_dec *d, const jpeg_scan *sc)
{
    for (int i = 0; i < sc->ns; i++) {
        jpeg_component *c = sc->c[i];
        for (int k = sc->ss < 1 ? sc->ss : 1; k < 10; k++)
            c->prev_bits[k] = d->scans > 1 ? c->coef_bits[k] : 0;
        for (int k = sc->ss; k <= sc->se && k < 10; k++)
            c->coef_bits[k] = sc->al;
    }
}

/* Block smoothing (libjpeg's BLOCK_SMOOTHING_SUPPORTED, on by default, so Pillow applies it):
 * when a progressive file ends with some of zigzag coefficients 1..9 not known to full
 * precision (never sent, or last sent with Al > 0), libjpeg estimates those that are still
 * zero from the DC values of the 5x5 neighbourhood of blocks before the IDCT. When none of
 * 1..9 was ever sent ("DC only"), it uses wider kernels, estimates 1..9 and also re-estimates
 * the DC. Each table below is one estimate: the weights of the 5x5 DC neighbourhood (rows
 * -2..+2, columns -2..+2). The arithmetic is libjpeg-turbo 2.1's decompress_smooth_data. */
static const int8_t smooth_ac[5][5][5] = {
    /* coefficient 1 (natural position 1) */
    {{0}, {0}, {-7, 50, 0, -50, 7}, {0}, {0}},
    /* 2 (position 8) */
    {{0, 0, -7, 0, 0}, {0, 0, 50, 0, 0}, {0}, {0, 0, -50, 0, 0}, {0, 0, 7, 0, 0}},
    /* 3 (position 16) */
    {{0, 0, -1, 0, 0}, {0, 0, 13, 0, 0}, {0, 0, -24, 0, 0}, {0, 0, 13, 0, 0}, {0, 0, -1, 0, 0}},
    /* 4 (position 9) */
    {{0, -1, 0, 1, 0}, {-1, 10, 0, -10, 1}, {0}, {1, -10, 0, 10, -1}, {0, 1, 0, -1, 0}},
    /* 5 (position 2) */
    {{0}, {0}, {-1, 13, -24, 13, -1}, {0}, {0}},
};
static const int8_t smooth_dc_only[9][5][5] = {
    /* 1 */ {{-1, -1, 0, 1, 1}, {-3, 13, 0, -13, 3}, {-3, 38, 0, -38, 3}, {-3, 13, 0, -13, 3},
             {-1, -1, 0, 1, 1}},
    /* 2 */ {{-1, -3, -3, -3, -1}, {-1, 13, 38, 13, -1}, {0}, {1, -13, -38, -13, 1},
             {1, 3, 3, 3, 1}},
    /* 3 */ {{0, 0, 1, 0, 0}, {0, 2, 7, 2, 0}, {0, -5, -14, -5, 0}, {0, 2, 7, 2, 0},
             {0, 0, 1, 0, 0}},
    /* 4 */ {{-1, 0, 0, 0, 1}, {0, 9, 0, -9, 0}, {0}, {0, -9, 0, 9, 0}, {1, 0, 0, 0, -1}},
    /* 5 */ {{0}, {0, 2, -5, 2, 0}, {1, 7, -14, 7, 1}, {0, 2, -5, 2, 0}, {0}},
    /* 6 */ {{0}, {0, 1, 0, -1, 0}, {0, 2, 0, -2, 0}, {0, 1, 0, -1, 0}, {0}},
    /* 7 */ {{0}, {0, 1, -3, 1, 0}, {0}, {0, -1, 3, -1, 0}, {0}},
    /* 8 */ {{0}, {0, 1, 0, -1, 0}, {0, -3, 0, 3, 0}, {0, 1, 0, -1, 0}, {0}},
    /* 9 */ {{0}, {0, 1, 2, 1, 0}, {0}, {0, -1, -2, -1, 0}, {0}},
};
/* The DC re-estimate of the DC-only case (weights sum to 256: a flat area keeps its DC). */
static const int16_t smooth_dc[5][5] = {{-2, -6, -8, -6, -2},
                                        {-6, 6, 42, 6, -6},
                                        {-8, 42, 152, 42, -8},
                                        {-6, 6, 42, 6, -6},
                                        {-2, -6, -8, -6, -2}};

/* One estimate: round(q00 * sum(w * dc) / (256 * qk)) with the sign handled separately, capped
 * below 2^al when al > 0 (the value must fit in the bits not yet sent). The int64 quotient is
 * narrowed to int and later to the 16-bit coefficient by wrapping, as libjpeg's casts do (only
 * reachable with absurd DC values from corrupt files). */
static int smooth_predict(int64_t q00, int64_t qk, const int dc[5][5], const int8_t w8[5][5],
                          const int16_t w16[5][5], int al)
{
    int64_t sum = 0;
    for (int r = 0; r < 5; r++)
        for (int x = 0; x < 5; x++)
            sum += (int64_t)dc[r][x] * (w8 ? w8[r][x] : w16[r][x]);
    int64_t num = q00 * sum;
    int neg = num < 0;
    uint64_t mag = neg ? (uint64_t)0 - (uint64_t)num : (uint64_t)num;
    uint64_t quot = ((uint64_t)qk * 128 + mag) / ((uint64_t)qk * 256);
    int pred = (int)(uint32_t)quot;
    if (al > 0 && pred >= (1 << al))
        pred = (1 << al) - 1;
    return neg ? (int)(0u - (unsigned)pred) : pred;
}

/* Whether libjpeg's smoothing_ok holds at the end of the file: progressive, every component
 * has (part of) its DC, the DC and coefficients 1..9 have non-zero quantizers, and some
 * component has one of coefficients 1..9 not known exactly. */
static int smoothing_wanted(const jpeg_dec *d)
{
    static const uint8_t pos[10] = {0, 1, 8, 16, 9, 2, 3, 10, 17, 24};
    int useful = 0;
    if (!d->progressive)
        return 0;
    for (int i = 0; i < d->ncomp; i++) {
        const jpeg_component *c = &d->comp[i];
        for (int k = 0; k < 10; k++)
            if ((uint16_t)c->q[pos[k]] == 0)
                return 0;
        if (c->coef_bits[0] < 0)
            return 0;
        for (int k = 1; k < 10; k++)
            useful |= c->coef_bits[k] != 0;
    }
    return useful;
}

/* IDCT of component c with block smoothing, block row by block row. The 5x5 neighbourhood is
 * chosen exactly as libjpeg-turbo 2.1.5 (Pillow 9.4's library) chooses it, including two edge
 * quirks that libjpeg-turbo 3.0.1 later fixed (its commits "Fix block smoothing w/vert.-
 * subsampled prog. JPEGs" and "Fix interblock smoothing with narrow prog. JPEGs"):
 * - rows: within iMCU row r (v block rows, fewer in the last one), the row two above is taken
 *   only when the block row inside the iMCU row is > 1 or r > 1 (else the row above is used
 *   again), the row two below only when the block row is < rows - 2 or r + 1 < last iMCU row
 *   (else the row below again); so with v = 2 the second and second-to-last iMCU rows see a
 *   nearer row. The row above/below exist unless at the very top/bottom of the image. Rows
 *   below the image inside the MCU padding (dummy blocks of interleaved scans) are read.
 * - columns: replicated at the edges, except that a component exactly 2 blocks wide sees
 *   columns (0,0,0,1,0) around block 0 and (0,0,1,0,0) around block 1. */
static void smooth_component(const jpeg_dec *d, jpeg_component *c)
{
    static const uint8_t pos[10] = {0, 1, 8, 16, 9, 2, 3, 10, 17, 24};
    static const int8_t cols2[2][5] = {{0, 0, 0, 1, 0}, {0, 0, 1, 0, 0}};
    int last_imcu = d->mcuy - 1, v = c->v, last_col = c->bw - 1;
    for (int r = 0; r <= last_imcu; r++) {
        int rows = v;
        if (r == last_imcu) {
            rows = c->bh % v;
            if (rows == 0)
                rows = v;
        }
        /* Rows beyond the last good iMCU row use the bits as before the last scan (that
         * scan's data ended early there); after a file's only scan, nothing counts as known
         * (libjpeg's smoothing_ok latches -1 when input_scan_number is 1). */
        static const int unknown[10] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
        const int *bits = c->coef_bits;
        if (r > d->last_good_imcu)
            bits = d->scans > 1 ? c->prev_bits : unknown;
        int dc_only = 1;
        for (int k = 1; k < 10; k++)
            dc_only &= bits[k] == -1;
        int64_t q00 = (uint16_t)c->q[0];
        for (int b = 0; b < rows; b++) {
            int by = r * v + b;
            int nb[5]; /* block rows of the neighbourhood: -2, -1, 0, +1, +2 */
            nb[2] = by;
            nb[1] = (b > 0 || r > 0) ? by - 1 : by;
            nb[0] = (b > 1 || r > 1) ? by - 2 : nb[1];
            nb[3] = (b < rows - 1 || r < last_imcu) ? by + 1 : by;
            nb[4] = (b < rows - 2 || r + 1 < last_imcu) ? by + 2 : nb[3];
            for (int k = 0; k < 5; k++)
                if (nb[k] < 0 || nb[k] >= c->pbh)
                    nb[k] = by; /* cannot happen (rows exist in the padded grid); stay inside */
            for (int bx = 0; bx < c->bw; bx++) {
                int dc[5][5];
                for (int x = 0; x < 5; x++) {
                    int col = bx + x - 2;
                    if (c->bw == 2)
                        col = cols2[bx][x];
                    col = col < 0 ? 0 : col > last_col ? last_col : col;
                    for (int y = 0; y < 5; y++)
                        dc[y][x] = c->coefs[((size_t)nb[y] * c->pbw + col) * 64];
                }
                int16_t ws[64];
                memcpy(ws, c->coefs + ((size_t)by * c->pbw + bx) * 64, sizeof ws);
                int nk = dc_only ? 9 : 5;
                for (int k = 1; k <= nk; k++) {
                    if (bits[k] == 0 || ws[pos[k]] != 0)
                        continue;
                    int p = smooth_predict(q00, (uint16_t)c->q[pos[k]], (const int(*)[5])dc,
                                           dc_only ? smooth_dc_only[k - 1] : smooth_ac[k - 1],
                                           NULL, bits[k]);
                    ws[pos[k]] = (int16_t)(uint16_t)(unsigned)p;
                }
                if (dc_only)
                    ws[0] = (int16_t)(uint16_t)(unsigned)smooth_predict(
                        q00, q00, (const int(*)[5])dc, NULL, smooth_dc, 0);
                idct_block(ws, c->q, c->plane + (size_t)by * 8 * c->stride + (size_t)bx * 8,
                           c->stride);
            }
        }
    }
}

/* Coefficient mode: the IDCT of every block once all scans are in (with libjpeg's block
 * smoothing when a progressive file left low-frequency coefficients inexact). */
static void finish_buffered(jpeg_dec *d)
{
    int smooth = smoothing_wanted(d);
    for (int i = 0; i < d->ncomp; i++) {
        jpeg_component *c = &d->comp[i];
        if (smooth) {
            smooth_component(d, c);
            continue;
        }
        for (int by = 0; by < c->bh; by++)
            for (int bx = 0; bx < c->bw; bx++)
                idct_block(c->coefs + ((size_t)by * c->pbw + bx) * 64, c->q,
                           c->plane + (size_t)by * 8 * c->stride + (size_t)bx * 8, c->stride);
    }
    emit_rows(d, 0, d->height);
}

static int decode_all(jpeg_dec *d)
{
    size_t pos = 2;
    for (;;) {
        int m = find_marker(d->buf, d->len, &pos);
        if (m < 0) {
            /* The data ended without EOI: keep a fully decoded single-scan image (the
             * encoder only lost its last bytes), refuse anything incomplete. */
            if (d->stream_done && !d->any_insufficient)
                return 0;
            return fail_trunc(d, d->frame_seen ? "image data ends before EOI" : "no image data",
                              d->len);
        }
        pos += 2;
        if (m == 0xD8)
            return vlm_fail(d->e, VLM_EFORMAT, "%s: second SOI marker in JPEG at byte %zu",
                            d->name, pos - 2);
        if (m == 0xD9) {
            if (!d->frame_seen || (!d->stream_done && !d->buffered) || d->scans == 0)
                return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG ends (EOI) before any image data",
                                d->name);
            if (d->buffered)
                finish_buffered(d);
            return 0;
        }
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01)
            continue; /* parameterless markers outside a scan are ignored, as libjpeg does */
        if (pos + 2 > d->len)
            return fail_trunc(d, "marker segment length", pos);
        size_t seglen = ((size_t)d->buf[pos] << 8) | d->buf[pos + 1];
        if (seglen < 2)
            return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG marker 0xFF%02X has length %zu (< 2)",
                            d->name, m, seglen);
        if (seglen > d->len - pos)
            return fail_trunc(d, "marker segment", pos);
        const uint8_t *p = d->buf + pos + 2;
        size_t n = seglen - 2;
        size_t seg_start = pos;
        pos += seglen;
        int rc = 0;
        if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            rc = parse_sof(d, m, p, n);
        } else if ((m >= 0xC3 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xDE ||
                   m == 0xDF) {
            return vlm_fail(d->e, VLM_EUNSUPPORTED, "%s: unsupported JPEG feature: %s", d->name,
                            unsupported_sof_name(m));
        } else if (m == 0xC4) {
            rc = parse_dht(d, p, n);
        } else if (m == 0xDB) {
            rc = parse_dqt(d, p, n);
        } else if (m == 0xDD) {
            if (n < 2)
                return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG DRI segment too short", d->name);
            d->restart_interval = (p[0] << 8) | p[1];
        } else if (m == 0xDA) {
            if (d->stream_done)
                return 0; /* a stray scan after a complete single-scan frame: ignore it */
            jpeg_scan sc;
            rc = parse_sos(d, p, n, &sc);
            if (rc)
                return rc;
            if (d->scans == 0) {
                d->buffered = d->progressive || sc.ns < d->ncomp;
                rc = alloc_frame(d);
                if (rc)
                    return rc;
            }
            if (++d->scans > JPEG_MAX_SCANS)
                return vlm_fail(d->e, VLM_EFORMAT, "%s: JPEG has more than %d scans", d->name,
                                JPEG_MAX_SCANS);
            if (d->progressive)
                note_scan_bits(d, &sc);
            rc = decode_scan(d, &sc, &pos);
        } else if (m >= 0xE0 || m == 0xFE || m == 0xDC || m == 0xCC) {
            if (m >= 0xE0 && m <= 0xEF)
                parse_app(d, m, p, n);
            else if (m > 0xEF && m != 0xFE)
                return vlm_fail(d->e, VLM_EFORMAT, "%s: unknown JPEG marker 0xFF%02X at byte %zu",
                                d->name, m, seg_start - 2);
        } else {
            return vlm_fail(d->e, VLM_EFORMAT, "%s: unknown JPEG marker 0xFF%02X at byte %zu",
                            d->name, m, seg_start - 2);
        }
        if (rc)
            return rc;
    }
}

int jpeg_decode(const uint8_t *buf, size_t len, const char *name, const image_limits *lim,
                vlm_image *out, int *exif_orient, vlm_error *e)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (exif_orient)
        *exif_orient = 1;
    if (!buf || !out || !name)
        return vlm_fail(e, VLM_EARG, "jpeg_decode: NULL argument");
    if (len < 2 || buf[0] != 0xFF || buf[1] != 0xD8)
        return vlm_fail(e, VLM_EFORMAT, "%s: not a JPEG file (no SOI marker, %zu bytes)", name, len);
    jpeg_dec *d = calloc(1, sizeof *d);
    if (!d)
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory for the JPEG decoder", name);
    d->buf = buf;
    d->len = len;
    d->name = name;
    d->e = e;
    d->max_pixels = lim && lim->max_pixels ? lim->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
    d->max_bytes = lim && lim->max_bytes ? lim->max_bytes : IMAGE_DEFAULT_MAX_BYTES;
    d->orientation = 1;
    for (int i = 0; i < 256; i++) {
        int x = i - 128;
        d->cr_r[i] = (91881 * x + 32768) >> 16;
        d->cb_b[i] = (116130 * x + 32768) >> 16;
        d->cr_g[i] = -46802 * x;
        d->cb_g[i] = -22554 * x + 32768;
    }
    for (int i = 0; i < 1024; i++)
        d->clamp[i] = clamp255(i - 384);
    int rc = decode_all(d);
    if (rc == 0) {
        out->width = d->width;
        out->height = d->height;
        out->rgb = d->rgb;
        d->rgb = NULL;
        if (exif_orient)
            *exif_orient = d->orientation;
    }
    for (int i = 0; i < JPEG_MAX_COMPONENTS; i++) {
        free(d->comp[i].plane);
        free(d->comp[i].coefs);
    }
    free(d->rgb);
    free(d->rowtmp);
    free(d->sums);
    free(d);
    return rc;
}
