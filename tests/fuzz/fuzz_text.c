/* fuzz_text.c - a text corpus (text:FILE) cut into windows of characters, both splits. */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("corpus.txt", data, size);
    const int ctx = size ? 1 + data[0] % 64 : 8;
    for (int train = 0; train < 2; train++) {
        lk_dataset d;
        memset(&d, 0, sizeof d);
        lk_status st = lk_tokens_open("text", path, train, ctx, &d);
        FUZZ_EXPECT_MESSAGE(st);
        lk_dataset_free(&d);
    }
    return 0;
}
