/* fuzz_spec.c - a model spec (--model-file, a checkpoint's model.json): parsed, then built
 * for an image, a token window (the input's first byte picks, and the classes) - no
 * parameters allocated, only the layers' shapes and declarations. */
#include "fuzz.h"
#include "core/model.h"
#include "models/spec.h"

static lk_device *dev;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    if (!dev && lk_device_open(&dev, "cpu", 1) != LK_OK) abort();
    char *text = malloc(size);
    if (!text) abort();
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    lk_spec *s = NULL;
    lk_status st = lk_spec_parse(text, "fuzz.json", &s);
    if (st == LK_OK) {
        static const lk_shape samples[4] = {{3, {1, 28, 28}}, {1, {16}}, {2, {12, 5}}, {1, {784}}};
        lk_model *m = NULL;
        st = lk_model_create(&m, dev, &samples[data[0] & 3]);
        if (st == LK_OK) st = lk_spec_build(s, m, 1 + (data[0] >> 2), NULL);
        lk_model_destroy(m);
    }
    FUZZ_EXPECT_MESSAGE(st);
    lk_spec_free(s);
    free(text);
    return 0;
}
