/* fuzz_spm.c: fuzz target for the SentencePiece model parser (weights-tool/spm.c). Any input
 * must parse or fail cleanly; on success the arrays must be consistent: offsets monotonic and
 * inside the text, no empty piece, types in TOK_NORMAL..TOK_BYTE. */
#include <stdint.h>

#include "spm.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vlm_error e;
    spm_model m;
    if (spm_parse(data, size, "fuzz.model", &m, &e) != 0)
        return 0;
    if (m.n_pieces <= 0 || m.offsets[0] != 0 || m.offsets[m.n_pieces] != m.text_len)
        __builtin_trap();
    for (int i = 0; i < m.n_pieces; i++) {
        if (m.offsets[i + 1] <= m.offsets[i] || m.types[i] < TOK_NORMAL || m.types[i] > TOK_BYTE)
            __builtin_trap();
        volatile uint8_t last = m.text[m.offsets[i + 1] - 1]; /* ASan checks the bounds */
        (void)last;
    }
    spm_free(&m);
    return 0;
}
