/* fuzz_idx.c - the IDX reader (plain or gzip): an images file and a labels file cut from
 * the input, as a labelled pair and as images alone. */
#include "data/dataset.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    const char *images = fuzz_file("images-idx3-ubyte", a, na), *labels = fuzz_file("labels-idx1-ubyte", b, nb);
    lk_dataset d;
    memset(&d, 0, sizeof d);
    lk_status st = lk_idx_load(images, labels, &d);
    FUZZ_EXPECT_MESSAGE(st);
    lk_dataset_free(&d);
    memset(&d, 0, sizeof d);
    st = lk_idx_load_images(images, &d);
    FUZZ_EXPECT_MESSAGE(st);
    lk_dataset_free(&d);
    return 0;
}
