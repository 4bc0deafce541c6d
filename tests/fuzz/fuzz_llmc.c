/* fuzz_llmc.c - what `lockstep convert` reads: an llm.c GPT-2 checkpoint (version 3 or 5),
 * and (the input's first byte odd) a Hugging Face GPT-2 model.safetensors with the heads
 * in that byte's bits 1-3, each into a checkpoint directory. */
#include "fuzz.h"
#include "train/convert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    char out[600];
    snprintf(out, sizeof out, "%s/converted", fuzz_dir());
    lk_status st;
    if (data[0] & 1)
        st = lk_convert_from_hf(fuzz_file("model.safetensors", data + 1, size - 1), (data[0] >> 1) & 7, out, NULL);
    else st = lk_convert_from_llmc(fuzz_file("gpt2.bin", data + 1, size - 1), out, NULL);
    FUZZ_EXPECT_MESSAGE(st);
    return 0;
}
