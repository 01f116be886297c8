/* inflate.c: zlib (RFC 1950) and raw deflate (RFC 1951) decompression into a buffer whose
 * size the caller knows in advance (PNG image data, .npz members read by the tests).
 * Decoding is table-driven: a 10-bit lookup table per Huffman tree resolves most codes in one
 * step and the rare longer codes finish with a short canonical walk. Input is untrusted: every
 * tree is validated, every back-reference and every output byte is bounds-checked. */
#include <stdint.h>
#include <string.h>

#include "decoders.h"

enum {
    FAST_BITS = 10,
    MAX_CODE_BITS = 15,
    LITLEN_SYMS = 288, /* 286 usable + 2 that only the fixed tree assigns */
    DIST_SYMS = 32,    /* 30 usable + 2 that only the fixed tree assigns */
    CODELEN_SYMS = 19,
};

/* A canonical Huffman decoder. fast[] maps the next FAST_BITS input bits (LSB first) to
 * (length << 9 | symbol) for codes of at most FAST_BITS bits; 0 means "use the slow walk". */
typedef struct huff {
    uint16_t fast[1 << FAST_BITS];     /* (2^FAST_BITS) */
    uint16_t count[MAX_CODE_BITS + 1]; /* (16) number of codes of each length */
    uint16_t symbol[LITLEN_SYMS];      /* (nsym) symbols in canonical code order */
} huff;

/* The LSB-first bit reader. Past the end of the input it feeds zero bytes and remembers that
 * it did, so the hot loop never tests for the end; `over` is then checked once per symbol. */
typedef struct bitreader {
    const uint8_t *in;
    size_t len;   /* bytes in in[] */
    size_t pos;   /* next byte to load (may exceed len by the zero padding) */
    uint64_t buf; /* pending bits, next bit in bit 0 */
    unsigned cnt; /* number of valid bits in buf */
    int over;     /* set once bits beyond the input were consumed */
} bitreader;

/* Tops buf up to at least 57 bits. */
static inline void br_refill(bitreader *b)
{
    if (b->pos + 8 <= b->len) {
        uint64_t w;
        memcpy(&w, b->in + b->pos, 8);
        b->buf |= w << b->cnt;
        b->pos += (63 - b->cnt) >> 3;
        b->cnt |= 56;
        return;
    }
    /* Near the end: bytes one at a time, zero padding beyond it. Consumed bits that came from
     * the padding mean the stream was truncated. */
    if (b->pos > b->len && (b->pos - b->len) * 8 > b->cnt)
        b->over = 1;
    while (b->cnt <= 56) {
        uint64_t byte = b->pos < b->len ? b->in[b->pos] : 0;
        b->buf |= byte << b->cnt;
        b->pos++;
        b->cnt += 8;
    }
}

/* Takes n (0..32) bits; the caller has refilled enough of them. */
static inline uint32_t br_take(bitreader *b, unsigned n)
{
    uint32_t v = (uint32_t)(b->buf & ((1ull << n) - 1));
    b->buf >>= n;
    b->cnt -= n;
    return v;
}

/* Byte offset of the next unread input byte once the reader is byte-aligned; sets over when
 * the aligned position lies beyond the input. */
static size_t br_byte_pos(bitreader *b)
{
    br_take(b, b->cnt & 7);
    size_t p = b->pos - b->cnt / 8;
    if (p > b->len)
        b->over = 1;
    return p;
}

/* The low len bits of code in reverse order (deflate sends Huffman codes MSB first into an
 * LSB-first stream, so table indices are bit-reversed codes). */
static unsigned reverse_bits(unsigned code, unsigned len)
{
    unsigned r = 0;
    for (unsigned i = 0; i < len; i++, code >>= 1)
        r = (r << 1) | (code & 1);
    return r;
}

enum { TREE_CODELEN, TREE_LITLEN, TREE_DIST };

/* Builds h from lens[0:nsym] (each 0..15). Refuses over-subscribed sets and incomplete ones,
 * except (as zlib does) a single code of length 1 in the literal/length or distance trees and
 * an empty distance tree; decoding a code absent from such a tree is an error later. */
static int huff_build(huff *h, const uint8_t *lens, unsigned nsym, int kind, const char **why)
{
    memset(h->count, 0, sizeof h->count);
    for (unsigned s = 0; s < nsym; s++)
        h->count[lens[s]]++;
    h->count[0] = 0;
    int left = 1;
    unsigned max_len = 0;
    for (unsigned len = 1; len <= MAX_CODE_BITS; len++) {
        left = (left << 1) - h->count[len];
        if (left < 0) {
            *why = "over-subscribed Huffman code lengths";
            return -1;
        }
        if (h->count[len])
            max_len = len;
    }
    if (max_len == 0 && kind != TREE_DIST) {
        *why = "Huffman tree without any code";
        return -1;
    }
    if (left > 0 && max_len != 0 && (kind == TREE_CODELEN || max_len != 1)) {
        *why = "incomplete Huffman code lengths";
        return -1;
    }
    uint16_t offs[MAX_CODE_BITS + 2];
    offs[1] = 0;
    for (unsigned len = 1; len <= MAX_CODE_BITS; len++)
        offs[len + 1] = (uint16_t)(offs[len] + h->count[len]);
    for (unsigned s = 0; s < nsym; s++)
        if (lens[s])
            h->symbol[offs[lens[s]]++] = (uint16_t)s;

    memset(h->fast, 0, sizeof h->fast);
    unsigned code = 0, idx = 0;
    for (unsigned len = 1; len <= FAST_BITS; len++) {
        for (unsigned k = 0; k < h->count[len]; k++, idx++, code++) {
            unsigned rev = reverse_bits(code, len);
            uint16_t entry = (uint16_t)(len << 9 | h->symbol[idx]);
            for (unsigned j = rev; j < (1u << FAST_BITS); j += 1u << len)
                h->fast[j] = entry;
        }
        code <<= 1;
    }
    return 0;
}

/* Decodes one symbol; -1 for a code that is not in the tree. buf must hold >= 15 bits (past
 * the end of the input they are zero padding, which the caller detects through over). */
static inline int huff_decode(bitreader *b, const huff *h)
{
    unsigned entry = h->fast[b->buf & ((1u << FAST_BITS) - 1)];
    if (entry) {
        br_take(b, entry >> 9);
        return (int)(entry & 511);
    }
    /* Canonical walk (codes longer than FAST_BITS, or invalid ones). */
    uint64_t bits = b->buf;
    int code = 0, first = 0, index = 0;
    for (unsigned len = 1; len <= MAX_CODE_BITS; len++) {
        code |= (int)(bits & 1);
        bits >>= 1;
        int count = h->count[len];
        if (code - first < count) {
            br_take(b, len);
            return h->symbol[index + code - first];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}

static const uint16_t LEN_BASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                       33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                       1025, 1537, 2049, 3073, 4097, 6145,  8193,  12289, 16385,
                                       24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t CODELEN_ORDER[CODELEN_SYMS] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                                    11, 4,  12, 3, 13, 2, 14, 1, 15};

typedef struct inflater {
    bitreader br;
    uint8_t *out;
    size_t cap; /* bytes available in out */
    size_t n;   /* bytes produced */
    huff lit, dist;
    vlm_error *e;
} inflater;

/* The error for input that ends inside the stream. Returns VLM_EFORMAT. */
static int fail_truncated(inflater *z)
{
    return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: truncated (input ends after %zu bytes)",
                    z->br.len);
}

/* Decodes the symbols of one Huffman block with z->lit / z->dist up to end-of-block. */
static int inflate_codes(inflater *z)
{
    /* A local copy: stores to out[] (bytes) could alias the reader's fields in *z, which would
     * force a reload of the bit buffer after every output byte. */
    bitreader local = z->br;
    bitreader *b = &local;
    uint8_t *out = z->out;
    size_t n = z->n, cap = z->cap;
    for (;;) {
        /* A literal/length code and its extra bits take at most 15 + 5 bits: refilling only
         * below that lets several literals share one refill. */
        if (b->cnt < 20) {
            br_refill(b);
            if (b->over)
                return fail_truncated(z);
        }
        int sym = huff_decode(b, &z->lit);
        if (sym < 256) {
            if (sym < 0)
                return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: invalid literal/length code");
            if (n >= cap)
                return vlm_fail(z->e, VLM_ERANGE,
                                "deflate stream: output exceeds the expected %zu bytes", cap);
            out[n++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256)
            break;
        sym -= 257;
        if (sym >= 29)
            return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: invalid length symbol %d",
                            sym + 257);
        size_t len = LEN_BASE[sym] + br_take(b, LEN_EXTRA[sym]);
        if (b->cnt < 28) /* a distance code and its extra bits: at most 15 + 13 bits */
            br_refill(b);
        int dsym = huff_decode(b, &z->dist);
        if (dsym < 0 || dsym >= 30)
            return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: invalid distance code %d", dsym);
        size_t dist = DIST_BASE[dsym] + br_take(b, DIST_EXTRA[dsym]);
        if (dist > n)
            return vlm_fail(z->e, VLM_EFORMAT,
                            "deflate stream: distance %zu reaches before the start of the output "
                            "(%zu bytes produced)",
                            dist, n);
        if (len > cap - n)
            return vlm_fail(z->e, VLM_ERANGE,
                            "deflate stream: output exceeds the expected %zu bytes", cap);
        uint8_t *d = out + n;
        const uint8_t *src = d - dist;
        n += len;
        if (dist >= len) {
            memcpy(d, src, len);
        } else if (dist == 1) {
            memset(d, src[0], len);
        } else {
            /* Overlapping copy of a periodic pattern: the copied run doubles each time. */
            size_t avail = dist;
            while (len) {
                size_t k = avail < len ? avail : len;
                memcpy(d, src, k);
                d += k;
                len -= k;
                avail += k;
            }
        }
    }
    z->n = n;
    z->br = local;
    return 0;
}

/* Copies one stored block (after its 3 header bits): LEN/NLEN checked, bounds checked.
 * Returns 0, VLM_EFORMAT or VLM_ERANGE. */
static int inflate_stored(inflater *z)
{
    bitreader *b = &z->br;
    size_t p = br_byte_pos(b);
    if (b->over || b->len - p < 4)
        return fail_truncated(z);
    unsigned len = b->in[p] | (unsigned)b->in[p + 1] << 8;
    unsigned nlen = b->in[p + 2] | (unsigned)b->in[p + 3] << 8;
    if ((len ^ 0xffffu) != nlen)
        return vlm_fail(z->e, VLM_EFORMAT,
                        "deflate stream: stored block length %u does not match its complement %u",
                        len, nlen);
    p += 4;
    if (b->len - p < len)
        return fail_truncated(z);
    if (len > z->cap - z->n)
        return vlm_fail(z->e, VLM_ERANGE, "deflate stream: output exceeds the expected %zu bytes",
                        z->cap);
    memcpy(z->out + z->n, b->in + p, len);
    z->n += len;
    b->pos = p + len;
    b->buf = 0;
    b->cnt = 0;
    return 0;
}

/* Loads the fixed literal/length and distance trees (RFC 1951 3.2.6) into z. */
static int build_fixed(inflater *z)
{
    uint8_t lens[LITLEN_SYMS];
    const char *why = "";
    memset(lens, 8, 144);
    memset(lens + 144, 9, 112);
    memset(lens + 256, 7, 24);
    memset(lens + 280, 8, 8);
    if (huff_build(&z->lit, lens, LITLEN_SYMS, TREE_LITLEN, &why))
        return vlm_fail(z->e, VLM_EFORMAT, "deflate: %s", why);
    memset(lens, 5, DIST_SYMS);
    if (huff_build(&z->dist, lens, DIST_SYMS, TREE_DIST, &why))
        return vlm_fail(z->e, VLM_EFORMAT, "deflate: %s", why);
    return 0;
}

/* Reads the code length code and the code lengths of a dynamic block header and builds
 * z->lit and z->dist from them. Returns 0 or VLM_EFORMAT naming the broken rule. */
static int build_dynamic(inflater *z)
{
    bitreader *b = &z->br;
    const char *why = "";
    br_refill(b);
    unsigned hlit = br_take(b, 5) + 257, hdist = br_take(b, 5) + 1, hclen = br_take(b, 4) + 4;
    if (hlit > 286 || hdist > 30)
        return vlm_fail(z->e, VLM_EFORMAT,
                        "deflate stream: dynamic block declares %u literal/length and %u distance "
                        "codes (at most 286 and 30)",
                        hlit, hdist);
    uint8_t cl_lens[CODELEN_SYMS] = {0};
    for (unsigned i = 0; i < hclen; i++) {
        br_refill(b);
        cl_lens[CODELEN_ORDER[i]] = (uint8_t)br_take(b, 3);
    }
    huff cl;
    if (huff_build(&cl, cl_lens, CODELEN_SYMS, TREE_CODELEN, &why))
        return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: code length code: %s", why);

    uint8_t lens[286 + 30];
    unsigned total = hlit + hdist, i = 0;
    while (i < total) {
        br_refill(b);
        if (b->over)
            return fail_truncated(z);
        int sym = huff_decode(b, &cl);
        if (sym < 0)
            return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: invalid code length code");
        if (sym < 16) {
            lens[i++] = (uint8_t)sym;
            continue;
        }
        unsigned rep;
        uint8_t val = 0;
        if (sym == 16) {
            if (i == 0)
                return vlm_fail(z->e, VLM_EFORMAT,
                                "deflate stream: code length repeat with no previous length");
            val = lens[i - 1];
            rep = 3 + br_take(b, 2);
        } else if (sym == 17) {
            rep = 3 + br_take(b, 3);
        } else {
            rep = 11 + br_take(b, 7);
        }
        if (rep > total - i)
            return vlm_fail(z->e, VLM_EFORMAT,
                            "deflate stream: code length repeat of %u overruns the %u lengths", rep,
                            total);
        memset(lens + i, val, rep);
        i += rep;
    }
    if (lens[256] == 0)
        return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: dynamic block has no end-of-block code");
    if (huff_build(&z->lit, lens, hlit, TREE_LITLEN, &why))
        return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: literal/length tree: %s", why);
    if (huff_build(&z->dist, lens + hlit, hdist, TREE_DIST, &why))
        return vlm_fail(z->e, VLM_EFORMAT, "deflate stream: distance tree: %s", why);
    return 0;
}

/* Adler-32 (RFC 1950) of p[0:n]. */
static uint32_t adler32(const uint8_t *p, size_t n)
{
    uint32_t a = 1, s = 0;
    while (n) {
        /* 5552 is the largest run for which s cannot overflow 32 bits before the modulo. */
        size_t k = n < 5552 ? n : 5552;
        n -= k;
        while (k >= 8) {
            a += p[0]; s += a; a += p[1]; s += a; a += p[2]; s += a; a += p[3]; s += a;
            a += p[4]; s += a; a += p[5]; s += a; a += p[6]; s += a; a += p[7]; s += a;
            p += 8;
            k -= 8;
        }
        while (k--) {
            a += *p++;
            s += a;
        }
        a %= 65521;
        s %= 65521;
    }
    return s << 16 | a;
}

/* Contract in decoders.h. in may be followed by unrelated bytes (they are ignored); out needs
 * out_cap bytes; errors: VLM_EFORMAT (malformed or truncated stream, bad header or Adler-32),
 * VLM_ERANGE (more output than out_cap), VLM_EARG (NULL pointers). */
int zlib_inflate(const uint8_t *in, size_t in_len, int raw, uint8_t *out, size_t out_cap,
                 size_t *out_len, vlm_error *e)
{
    if (out_len)
        *out_len = 0;
    if ((!in && in_len) || (!out && out_cap) || !out_len)
        return vlm_fail(e, VLM_EARG, "zlib_inflate: NULL buffer");
    size_t start = 0;
    if (!raw) {
        if (in_len < 2)
            return vlm_fail(e, VLM_EFORMAT, "zlib stream: truncated header (%zu bytes)", in_len);
        unsigned cmf = in[0], flg = in[1];
        if ((cmf & 15) != 8 || (cmf >> 4) > 7)
            return vlm_fail(e, VLM_EFORMAT,
                            "zlib stream: compression method %u / window %u is not deflate "
                            "(expected 8 / at most 7)",
                            cmf & 15, cmf >> 4);
        if ((cmf * 256 + flg) % 31 != 0)
            return vlm_fail(e, VLM_EFORMAT, "zlib stream: header check bits wrong (%02x %02x)",
                            cmf, flg);
        if (flg & 0x20)
            return vlm_fail(e, VLM_EFORMAT, "zlib stream: preset dictionary is not allowed");
        start = 2;
    }
    inflater z;
    z.br.in = in + start;
    z.br.len = in_len - start;
    z.br.pos = 0;
    z.br.buf = 0;
    z.br.cnt = 0;
    z.br.over = 0;
    z.out = out;
    z.cap = out_cap;
    z.n = 0;
    z.e = e;
    int last;
    do {
        br_refill(&z.br);
        if (z.br.over)
            return fail_truncated(&z);
        last = (int)br_take(&z.br, 1);
        unsigned type = br_take(&z.br, 2);
        int rc;
        if (type == 0) {
            rc = inflate_stored(&z);
        } else if (type == 3) {
            return vlm_fail(e, VLM_EFORMAT, "deflate stream: invalid block type 3");
        } else {
            rc = type == 1 ? build_fixed(&z) : build_dynamic(&z);
            if (!rc)
                rc = inflate_codes(&z);
        }
        if (rc)
            return rc;
    } while (!last);
    size_t p = br_byte_pos(&z.br);
    if (z.br.over)
        return fail_truncated(&z);
    if (!raw) {
        if (z.br.len - p < 4)
            return vlm_fail(e, VLM_EFORMAT, "zlib stream: truncated before the Adler-32 checksum");
        const uint8_t *q = z.br.in + p;
        uint32_t want = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
        uint32_t got = adler32(out, z.n);
        if (want != got)
            return vlm_fail(e, VLM_EFORMAT,
                            "zlib stream: Adler-32 mismatch (stored %08x, computed %08x)", want,
                            got);
    }
    *out_len = z.n;
    return 0;
}
