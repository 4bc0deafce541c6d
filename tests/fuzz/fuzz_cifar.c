/* fuzz_cifar.c - the CIFAR-10 binary batch reader: one batch, and the same file twice. */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("data_batch_1.bin", data, size);
    const char *paths[2] = {path, path};
    for (int n = 1; n <= 2; n++) {
        lk_dataset d;
        memset(&d, 0, sizeof d);
        lk_status st = lk_cifar10_load(paths, n, &d);
        FUZZ_EXPECT_MESSAGE(st);
        lk_dataset_free(&d);
    }
    return 0;
}
