/* fuzz_image.c - what `lockstep predict` reads: a binary PGM (P5) or an IDX image file. */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("input.pgm", data, size);
    lk_dataset d;
    memset(&d, 0, sizeof d);
    lk_status st = lk_image_file_load(path, &d);
    FUZZ_EXPECT_MESSAGE(st);
    lk_dataset_free(&d);
    return 0;
}
