/* fuzz_torchzip.c: fuzz target for the torch.save ZIP + pickle reader (weights-tool/torchzip.c).
 * An input starting with "PK" is a whole archive; any other input is taken as a data.pkl and
 * wrapped here in a fixed archive with storages "0", "1", "2" (64 bytes each), so the fuzzer
 * reaches the pickle machine without having to rediscover the ZIP layout. Any input must load
 * or fail with a message naming the file; on success every tensor of up to 1M elements is
 * converted to f32, reading each element the view can reach, so AddressSanitizer proves the
 * extent checks (the archive is an exact-size buffer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

/* Writes a stored-members ZIP of (names[i], data[i], sizes[i]) into out (large enough:
 * sum of sizes + 100 bytes per member + 22). Returns its length. */
static size_t wrap_zip(uint8_t *out, int n, const char *const *names, const uint8_t *const *data, const size_t *sizes)
{
    size_t pos = 0, offs[4];
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        offs[i] = pos;
        memset(out + pos, 0, 30);
        put32(out + pos, 0x04034b50);
        put32(out + pos + 18, (uint32_t)sizes[i]);
        put32(out + pos + 22, (uint32_t)sizes[i]);
        put16(out + pos + 26, (unsigned)nl);
        memcpy(out + pos + 30, names[i], nl);
        if (sizes[i])
            memcpy(out + pos + 30 + nl, data[i], sizes[i]);
        pos += 30 + nl + sizes[i];
    }
    size_t cd = pos;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        memset(out + pos, 0, 46);
        put32(out + pos, 0x02014b50);
        put32(out + pos + 20, (uint32_t)sizes[i]);
        put32(out + pos + 24, (uint32_t)sizes[i]);
        put16(out + pos + 28, (unsigned)nl);
        put32(out + pos + 42, (uint32_t)offs[i]);
        memcpy(out + pos + 46, names[i], nl);
        pos += 46 + nl;
    }
    memset(out + pos, 0, 22);
    put32(out + pos, 0x06054b50);
    put16(out + pos + 8, (unsigned)n);
    put16(out + pos + 10, (unsigned)n);
    put32(out + pos + 12, (uint32_t)(pos - cd));
    put32(out + pos + 16, (uint32_t)cd);
    return pos + 22;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *archive = NULL;
    if (!(size >= 2 && data[0] == 'P' && data[1] == 'K')) {
        if (size > (1u << 20))
            return 0;
        uint8_t storage[64];
        for (int i = 0; i < 64; i++)
            storage[i] = (uint8_t)(i * 29 + 3);
        const char *names[4] = {"a/data.pkl", "a/data/0", "a/data/1", "a/data/2"};
        const uint8_t *parts[4] = {data, storage, storage, storage};
        const size_t sizes[4] = {size, 64, 64, 64};
        uint8_t *buf = malloc(size + 4 * 100 + 22 + 3 * 64);
        if (!buf)
            return 0;
        size_t n = wrap_zip(buf, 4, names, parts, sizes);
        archive = malloc(n); /* exact size, for AddressSanitizer */
        if (archive)
            memcpy(archive, buf, n);
        free(buf);
        if (!archive)
            return 0;
        data = archive;
        size = n;
    }
    fuzz_source_load(data, size, "fuzz.bin", src_load_torchzip);
    free(archive);
    return 0;
}
