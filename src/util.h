/* util.h: small always-inline helpers shared by every module: overflow-checked size
 * arithmetic, little-endian loads, and f16/bf16 <-> f32 conversion.
 * Everything here is static inline so that files compiled with different ISA flags
 * never share an out-of-line copy. */
#ifndef VLM_UTIL_H
#define VLM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vlm supports little-endian hosts only"
#endif

/* Return nonzero on overflow; *r is the (wrapped) result otherwise unused. */
static inline int ck_mul(size_t a, size_t b, size_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int ck_add(size_t a, size_t b, size_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int ck_mul3(size_t a, size_t b, size_t c, size_t *r)
{
    size_t t;
    return ck_mul(a, b, &t) || ck_mul(t, c, r);
}

static inline uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t rd_u64(const uint8_t *p) { return rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32); }
static inline float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* IEEE binary16 -> binary32, exact for every input including subnormals, inf and NaN. */
static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f)
        return f32_from_bits(sign | 0x7f800000 | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return f32_from_bits(sign);
        /* Subnormal: value = man * 2^-24, exactly representable in f32. */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

/* binary32 -> binary16 with round-to-nearest-even; overflow gives inf; subnormal results are
 * kept (no flush to zero); a NaN keeps its sign and the top 9 bits of its payload with the
 * quiet bit set. That is bit for bit what F16C vcvtps2ph (imm 0) and Arm fcvt/fcvtn (default
 * FPCR) give: checked over all 2^32 inputs against F16C. */
static inline uint16_t f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffff;
    if (a >= 0x7f800000) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000 ? 0x200 | ((a >> 13) & 0x3ff) : 0));
    if (a >= 0x477ff000) /* rounds to >= 65536: overflow */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000) { /* below the smallest normal f16 (2^-14): subnormal or zero */
        if (a < 0x33000000) /* < 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfff + ((a >> 13) & 1); /* round to nearest even on the 13 dropped bits */
    return (uint16_t)(sign | ((r - 0x38000000) >> 13));
}

static inline float bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

#endif
