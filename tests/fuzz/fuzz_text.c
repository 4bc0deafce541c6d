/* fuzz_text.c - a text corpus (text:FILE) cut into windows of characters, both splits. */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("corpus.txt", data, size);
    const int ctx = size ? 1 + data[0] % 64 : 8;
    FUZZ_TOKENS("text", path, ctx);
    return 0;
}
