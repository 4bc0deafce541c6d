/* fuzz_config.c - a checkpoint's config.json (what a resume and predict rebuild from). */
#include "fuzz.h"
#include "train/ckptdir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file("config.json", data, size);
    lk_run_config c;
    lk_status st = lk_ckptdir_load_config(fuzz_dir(), &c);
    FUZZ_EXPECT_MESSAGE(st);
    return 0;
}
