/* spm.c: reader of SentencePiece tokenizer.model files (a serialized ModelProto), written from
 * the protobuf wire format and sentencepiece_model.proto (google/sentencepiece, src/):
 *   ModelProto: pieces = 1 (repeated SentencePiece), trainer_spec = 2, normalizer_spec = 3,
 *               denormalizer_spec = 5; SentencePiece: piece = 1, score = 2 (float), type = 3;
 *   TrainerSpec: model_type = 3, treat_whitespace_as_suffix = 24, byte_fallback = 35,
 *               unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43;
 *   NormalizerSpec: name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3,
 *               remove_extra_whitespaces = 4, escape_whitespaces = 5.
 * Unknown fields are skipped by wire type; groups (wire types 3/4) are rejected; a known field
 * with the wrong wire type is an error; a repeated scalar keeps the last value (protobuf rule). */
#include "spm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_SGROUP = 3, WIRE_EGROUP = 4, WIRE_I32 = 5 };
/* A piece count well above any real vocabulary; keeps int arithmetic on ids safe. */
#define SPM_MAX_PIECES (1 << 24)
#define SPM_MAX_FILE ((size_t)1 << 30)

/* A bounded reader over buf[pos:end]. */
typedef struct pb_reader {
    const uint8_t *buf;
    size_t pos, end;
} pb_reader;

/* One decoded field: number, wire type and, by wire type, the value or the payload span. */
typedef struct pb_field {
    uint32_t number;
    int wire;
    uint64_t value;      /* VARINT, I64, I32 */
    size_t start, len;   /* LEN: payload buf[start:start+len] */
    size_t at;           /* offset of the tag, for messages */
} pb_field;

typedef struct spm_ctx {
    const char *name;
    vlm_error *e;
} spm_ctx;

/* Reads a base-128 varint of at most 10 bytes; -1 if truncated or longer than 64 bits. */
static int read_varint(pb_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->end)
            return -1;
        uint8_t b = r->buf[r->pos++];
        /* The 10th byte may only carry the top bit of a 64-bit value. */
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Reads the next field of the message in r. Returns 1 with *f filled, 0 at the end of the
 * message, or a negative error code with e set. what names the message for errors. */
static int next_field(pb_reader *r, pb_field *f, const char *what, const spm_ctx *c)
{
    if (r->pos >= r->end)
        return 0;
    f->at = r->pos;
    uint64_t tag;
    if (read_varint(r, &tag))
        return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: truncated or overlong field tag at byte %zu", c->name, what,
                        f->at);
    uint64_t number = tag >> 3;
    f->wire = (int)(tag & 7);
    if (number == 0 || number > 536870911u)
        return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: invalid field number %llu at byte %zu", c->name, what,
                        (unsigned long long)number, f->at);
    f->number = (uint32_t)number;
    switch (f->wire) {
    case WIRE_VARINT:
        if (read_varint(r, &f->value))
            return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: field %u: truncated or overlong varint at byte %zu", c->name,
                            what, f->number, f->at);
        return 1;
    case WIRE_I64:
        if (r->end - r->pos < 8)
            return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: field %u: fixed64 needs 8 bytes, %zu left (byte %zu)",
                            c->name, what, f->number, r->end - r->pos, f->at);
        f->value = rd_u64(r->buf + r->pos);
        r->pos += 8;
        return 1;
    case WIRE_I32:
        if (r->end - r->pos < 4)
            return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: field %u: fixed32 needs 4 bytes, %zu left (byte %zu)",
                            c->name, what, f->number, r->end - r->pos, f->at);
        f->value = rd_u32(r->buf + r->pos);
        r->pos += 4;
        return 1;
    case WIRE_LEN: {
        uint64_t n;
        if (read_varint(r, &n))
            return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: field %u: truncated length at byte %zu", c->name, what,
                            f->number, f->at);
        if (n > r->end - r->pos)
            return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: field %u: length %llu exceeds the %zu bytes left (byte %zu)",
                            c->name, what, f->number, (unsigned long long)n, r->end - r->pos, f->at);
        f->start = r->pos;
        f->len = (size_t)n;
        r->pos += (size_t)n;
        return 1;
    }
    default:
        return vlm_fail(c->e, VLM_EFORMAT, "%s: %s: field %u uses wire type %d (groups are not supported) at byte %zu",
                        c->name, what, f->number, f->wire, f->at);
    }
}

/* 0 if f has the wire type the schema gives field, else VLM_EFORMAT naming it. */
static int expect_wire(const pb_field *f, int wire, const char *what, const char *field, const spm_ctx *c)
{
    if (f->wire == wire)
        return 0;
    return vlm_fail(c->e, VLM_EFORMAT, "%s: %s.%s (field %u) has wire type %d, expected %d (byte %zu)", c->name,
                    what, field, f->number, f->wire, wire, f->at);
}

/* Converts a protobuf int32 varint (negatives are sign-extended to 64 bits) into *out. */
static int get_int32(const pb_field *f, const char *field, int *out, const spm_ctx *c)
{
    int rc = expect_wire(f, WIRE_VARINT, "TrainerSpec", field, c);
    if (rc)
        return rc;
    int64_t v = (int64_t)f->value;
    if (v < INT32_MIN || v > INT32_MAX)
        return vlm_fail(c->e, VLM_EFORMAT, "%s: TrainerSpec.%s = %lld does not fit int32", c->name, field,
                        (long long)v);
    *out = (int)v;
    return 0;
}

/* Reads the TrainerSpec fields we keep from buf[start:start+len] into m. 0 or VLM_EFORMAT. */
static int parse_trainer_spec(const uint8_t *buf, size_t start, size_t len, spm_model *m, const spm_ctx *c)
{
    pb_reader r = {buf, start, start + len};
    pb_field f;
    int rc;
    while ((rc = next_field(&r, &f, "TrainerSpec", c)) == 1) {
        switch (f.number) {
        case 3:
            if ((rc = expect_wire(&f, WIRE_VARINT, "TrainerSpec", "model_type", c)))
                return rc;
            if (f.value < 1 || f.value > 4)
                return vlm_fail(c->e, VLM_EFORMAT, "%s: TrainerSpec.model_type = %llu (expected 1..4)", c->name,
                                (unsigned long long)f.value);
            m->model_type = (int)f.value;
            break;
        case 24:
            if ((rc = expect_wire(&f, WIRE_VARINT, "TrainerSpec", "treat_whitespace_as_suffix", c)))
                return rc;
            m->treat_whitespace_as_suffix = f.value != 0;
            break;
        case 35:
            if ((rc = expect_wire(&f, WIRE_VARINT, "TrainerSpec", "byte_fallback", c)))
                return rc;
            m->byte_fallback = f.value != 0;
            break;
        case 40:
            if ((rc = get_int32(&f, "unk_id", &m->unk_id, c)))
                return rc;
            break;
        case 41:
            if ((rc = get_int32(&f, "bos_id", &m->bos_id, c)))
                return rc;
            break;
        case 42:
            if ((rc = get_int32(&f, "eos_id", &m->eos_id, c)))
                return rc;
            break;
        case 43:
            if ((rc = get_int32(&f, "pad_id", &m->pad_id, c)))
                return rc;
            break;
        default: break;
        }
    }
    return rc;
}

/* Reads the NormalizerSpec fields we keep from buf[start:start+len] into m. 0 or VLM_EFORMAT. */
static int parse_normalizer_spec(const uint8_t *buf, size_t start, size_t len, spm_model *m, const spm_ctx *c)
{
    pb_reader r = {buf, start, start + len};
    pb_field f;
    int rc;
    while ((rc = next_field(&r, &f, "NormalizerSpec", c)) == 1) {
        int *flag = NULL;
        const char *field = NULL;
        switch (f.number) {
        case 1: {
            if ((rc = expect_wire(&f, WIRE_LEN, "NormalizerSpec", "name", c)))
                return rc;
            size_t n = f.len < sizeof m->normalizer_name - 1 ? f.len : sizeof m->normalizer_name - 1;
            memcpy(m->normalizer_name, buf + f.start, n);
            m->normalizer_name[n] = 0;
            break;
        }
        case 2:
            if ((rc = expect_wire(&f, WIRE_LEN, "NormalizerSpec", "precompiled_charsmap", c)))
                return rc;
            m->charsmap_len = f.len;
            break;
        case 3: flag = &m->add_dummy_prefix, field = "add_dummy_prefix"; break;
        case 4: flag = &m->remove_extra_whitespaces, field = "remove_extra_whitespaces"; break;
        case 5: flag = &m->escape_whitespaces, field = "escape_whitespaces"; break;
        default: break;
        }
        if (flag) {
            if ((rc = expect_wire(&f, WIRE_VARINT, "NormalizerSpec", field, c)))
                return rc;
            *flag = f.value != 0;
        }
    }
    return rc;
}

/* Parses one SentencePiece message into piece index i; text_used is the fill level of m->text. */
static int parse_piece(const uint8_t *buf, size_t start, size_t len, int i, spm_model *m, size_t *text_used,
                       const spm_ctx *c)
{
    pb_reader r = {buf, start, start + len};
    pb_field f;
    int rc;
    size_t piece_start = 0, piece_len = 0;
    int have_piece = 0;
    float score = 0.0f;
    uint64_t type = TOK_NORMAL;
    while ((rc = next_field(&r, &f, "SentencePiece", c)) == 1) {
        switch (f.number) {
        case 1:
            if ((rc = expect_wire(&f, WIRE_LEN, "SentencePiece", "piece", c)))
                return rc;
            piece_start = f.start, piece_len = f.len, have_piece = 1;
            break;
        case 2:
            if ((rc = expect_wire(&f, WIRE_I32, "SentencePiece", "score", c)))
                return rc;
            score = f32_from_bits((uint32_t)f.value);
            break;
        case 3:
            if ((rc = expect_wire(&f, WIRE_VARINT, "SentencePiece", "type", c)))
                return rc;
            type = f.value;
            break;
        default: break;
        }
    }
    if (rc)
        return rc;
    if (!have_piece || piece_len == 0)
        return vlm_fail(c->e, VLM_EFORMAT, "%s: piece %d is empty (sentencepiece requires a non-empty piece)",
                        c->name, i);
    if (type < TOK_NORMAL || type > TOK_BYTE)
        return vlm_fail(c->e, VLM_EFORMAT, "%s: piece %d has type %llu (expected %d..%d)", c->name, i,
                        (unsigned long long)type, TOK_NORMAL, TOK_BYTE);
    /* The first pass sized text to the sum of all piece lengths, so this cannot overflow. */
    memcpy(m->text + *text_used, buf + piece_start, piece_len);
    m->offsets[i] = (uint32_t)*text_used;
    *text_used += piece_len;
    m->offsets[i + 1] = (uint32_t)*text_used;
    m->scores[i] = score;
    m->types[i] = (uint8_t)type;
    return 0;
}

/* See spm.h. On error *out is zeroed (spm_free on it is harmless). Proto defaults apply to
 * absent fields: model_type 1, add_dummy_prefix/remove_extra_whitespaces/escape_whitespaces 1. */
int spm_parse(const uint8_t *buf, size_t len, const char *name, spm_model *out, vlm_error *e)
{
    spm_ctx c = {name ? name : "<tokenizer.model>", e};
    spm_model m;
    memset(&m, 0, sizeof m);
    memset(out, 0, sizeof *out);
    m.add_dummy_prefix = 1;
    m.remove_extra_whitespaces = 1;
    m.escape_whitespaces = 1;
    m.model_type = 1; /* proto default UNIGRAM */
    m.unk_id = 0, m.bos_id = 1, m.eos_id = 2, m.pad_id = -1;
    if (!buf && len)
        return vlm_fail(e, VLM_EARG, "%s: spm_parse given NULL with %zu bytes", c.name, len);

    /* Pass 1: validate the top-level framing, count pieces and their bytes, parse the specs. */
    pb_reader r = {buf, 0, len};
    pb_field f;
    int rc;
    size_t n_pieces = 0, text_len = 0;
    while ((rc = next_field(&r, &f, "ModelProto", &c)) == 1) {
        if (f.number == 1) {
            if ((rc = expect_wire(&f, WIRE_LEN, "ModelProto", "pieces", &c)))
                return rc;
            if (++n_pieces > SPM_MAX_PIECES)
                return vlm_fail(e, VLM_ERANGE, "%s: more than %d pieces", c.name, SPM_MAX_PIECES);
            text_len += f.len; /* bounded by len: no overflow */
        } else if (f.number == 2) {
            if ((rc = expect_wire(&f, WIRE_LEN, "ModelProto", "trainer_spec", &c)) ||
                (rc = parse_trainer_spec(buf, f.start, f.len, &m, &c)))
                return rc;
        } else if (f.number == 3) {
            if ((rc = expect_wire(&f, WIRE_LEN, "ModelProto", "normalizer_spec", &c)) ||
                (rc = parse_normalizer_spec(buf, f.start, f.len, &m, &c)))
                return rc;
        } else if (f.number == 5) {
            if ((rc = expect_wire(&f, WIRE_LEN, "ModelProto", "denormalizer_spec", &c)))
                return rc;
            m.has_denormalizer = 1;
        }
    }
    if (rc)
        return rc;
    if (n_pieces == 0)
        return vlm_fail(e, VLM_EFORMAT, "%s: no pieces (is this a SentencePiece model?)", c.name);
    if (text_len > UINT32_MAX)
        return vlm_fail(e, VLM_ERANGE, "%s: %zu bytes of piece text exceed 4 GiB", c.name, text_len);

    /* Pass 2: fill the arrays. */
    m.n_pieces = (int)n_pieces;
    m.text_len = 0;
    m.text = malloc(text_len ? text_len : 1);
    m.offsets = malloc((n_pieces + 1) * sizeof *m.offsets);
    m.scores = malloc(n_pieces * sizeof *m.scores);
    m.types = malloc(n_pieces);
    if (!m.text || !m.offsets || !m.scores || !m.types) {
        spm_free(&m);
        return vlm_fail(e, VLM_ENOMEM, "%s: out of memory for %zu pieces", c.name, n_pieces);
    }
    m.offsets[0] = 0;
    r = (pb_reader){buf, 0, len};
    int i = 0;
    while ((rc = next_field(&r, &f, "ModelProto", &c)) == 1) {
        if (f.number != 1)
            continue;
        if ((rc = parse_piece(buf, f.start, f.len, i, &m, &m.text_len, &c)))
            break;
        i++;
    }
    if (rc) {
        spm_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Reads the whole file (at most 1 GiB) and parses it; VLM_EIO if it cannot be read. */
int spm_load_file(const char *path, spm_model *out, vlm_error *e)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return vlm_fail(e, VLM_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return vlm_fail(e, VLM_ENOMEM, "%s: out of memory reading the file", path);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if (cap >= SPM_MAX_FILE) {
                free(buf);
                fclose(f);
                return vlm_fail(e, VLM_ERANGE, "%s: larger than the %zu MiB limit for a tokenizer model", path,
                                SPM_MAX_FILE >> 20);
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb)
                free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        free(buf);
        return vlm_fail(e, VLM_EIO, "%s: read error", path);
    }
    int rc = spm_parse(buf, n, path, out, e);
    free(buf);
    return rc;
}

/* Frees the arrays and zeroes *m; NULL and zeroed models are allowed. */
void spm_free(spm_model *m)
{
    if (!m)
        return;
    free(m->text);
    free(m->offsets);
    free(m->scores);
    free(m->types);
    memset(m, 0, sizeof *m);
}
