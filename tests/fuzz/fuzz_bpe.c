/* fuzz_bpe.c - GPT-2's tokenizer files (encoder.json, vocab.bpe) and any text through them:
 * the input is ENCODER \0 MERGES \0 TEXT. A vocabulary that loads must encode the text
 * into ids that decode to its bytes exactly. */
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *z1 = memchr(p, 0, size);
    const char *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(end - z1 - 1)) : NULL;
    if (!z2) return 0;
    lk_bpe *b = NULL;
    lk_status st = lk_bpe_load(&b, p, (size_t)(z1 - p), "encoder.json", z1 + 1, (size_t)(z2 - z1 - 1), "vocab.bpe");
    FUZZ_EXPECT_MESSAGE(st);
    if (st != LK_OK) return 0;
    const char *text = z2 + 1;
    const size_t len = (size_t)(end - text);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    st = lk_bpe_encode(b, text, len, &ids, &n, &cap);
    FUZZ_EXPECT_MESSAGE(st);
    if (st == LK_OK) { /* ... and back, byte for byte */
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            size_t tl = 0;
            const char *t = lk_bpe_token(b, ids[i], &tl);
            if (!t || at + tl > len || memcmp(text + at, t, tl)) abort();
            at += tl;
        }
        if (at != len) abort();
    }
    lk_free(ids);
    lk_bpe_free(b);
    return 0;
}
