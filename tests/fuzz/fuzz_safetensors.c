/* fuzz_safetensors.c - the safetensors reader: the header parsed and checked, then every
 * tensor it accepted looked up by name and its bytes read. */
#include "core/checkpoint.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("model.safetensors", data, size);
    lk_safetensors *f = NULL;
    lk_status st = lk_safetensors_read(path, &f);
    FUZZ_EXPECT_MESSAGE(st);
    if (st != LK_OK) return 0;
    unsigned sum = 0; /* every byte read: ASan sees a tensor reaching past the file */
    for (int i = 0; i < lk_safetensors_count(f); i++) {
        const lk_st_entry *listed = lk_safetensors_entry(f, i);
        if (lk_safetensors_find(f, listed->name) != listed) abort(); /* names are unique */
        const unsigned char *p = listed->data;
        for (size_t j = 0; j < listed->bytes; j++) sum += p[j];
    }
    (void)lk_safetensors_meta(f, "format");
    lk_safetensors_free(f);
    return (int)(sum & 0); /* (libFuzzer wants 0) */
}
