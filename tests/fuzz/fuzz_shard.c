/* fuzz_shard.c - llm.c token shards (tokens:GLOB): two shards cut from the input, both
 * splits, a context length the input's first byte chooses. */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    fuzz_file("shard_train_000000.bin", a, na);
    fuzz_file("shard_val_000000.bin", b, nb);
    char glob[300];
    snprintf(glob, sizeof glob, "%s/shard_*.bin", fuzz_dir());
    const int ctx = size ? 1 + data[size - 1] % 64 : 8;
    FUZZ_TOKENS("tokens", glob, ctx);
    return 0;
}
