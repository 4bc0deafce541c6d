/* test_tokens.c - token data: text:FILE (bytes, a 90/10 split) and tokens:PATTERN
 * (llm.c shards: header, length, vocabulary, validation shards by name), windows and
 * their next-token labels, and every kind of bad file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "testutil.h"

/* an llm.c shard of n tokens t[i] = first + i; header fields overridable; the last
 * `cut` bytes left off */
static const char *shard(const char *name, int n, int first, int magic, int version, int count,
                         size_t cut)
{
    size_t bytes = 1024 + 2 * (size_t)n;
    unsigned char *b = calloc(1, bytes);
    int32_t *h = (int32_t *)b;
    h[0] = magic, h[1] = version, h[2] = count;
    uint16_t *t = (uint16_t *)(b + 1024);
    for (int i = 0; i < n; i++) t[i] = (uint16_t)(first + i);
    const char *p = tu_write(name, b, bytes - cut);
    free(b);
    return p;
}

static void test_text(void **state)
{
    (void)state;
    char text[1000];
    for (int i = 0; i < 1000; i++) text[i] = (char)('a' + i % 26);
    const char *path = tu_write("corpus.txt", text, sizeof text);
    char spec[700];
    snprintf(spec, sizeof spec, "text:%s", path);
    lk_dataset tr, va;
    TU_OK(lk_data_open(spec, "train", 16, &tr));
    TU_OK(lk_data_open(spec, "test", 16, &va));
    assert_int_equal(tr.nclasses, 256);
    assert_int_equal(tr.ntok, 900); /* the first 90% */
    assert_int_equal(va.ntok, 100);
    assert_int_equal(tr.n, (900 - 1) / 16);
    assert_int_equal(va.n, (100 - 1) / 16);
    assert_int_equal(lk_dataset_ylen(&tr), 16);
    assert_true(tr.sample.ndim == 1 && tr.sample.d[0] == 16);
    /* window 3 and its labels, one byte on */
    int32_t idx[2] = {3, 0}, y[32];
    float x[32];
    lk_dataset_gather(&tr, idx, 2, x, y);
    for (int k = 0; k < 16; k++) {
        assert_true(x[k] == (float)text[3 * 16 + k]);
        assert_int_equal(y[k], text[3 * 16 + k + 1]);
        assert_true(x[16 + k] == (float)text[k]);
    }
    lk_dataset_gather(&va, idx, 1, x, y); /* validation starts at byte 900 */
    assert_true(x[0] == (float)text[900 + 48]);
    lk_dataset_free(&tr);
    lk_dataset_free(&va);

    /* too short for a window; missing; no file in the spec; no --ctx */
    TU_FAILS_WITH(lk_data_open(spec, "test", 200, &va), LK_ERR_FORMAT, "fewer than one window of --ctx 200");
    TU_FAILS_WITH(lk_data_open("text:/no/such/file", "train", 8, &va), LK_ERR_IO, "/no/such/file");
    TU_FAILS_WITH(lk_data_open("text", "train", 8, &va), LK_ERR_ARG, "needs a file");
    TU_FAILS_WITH(lk_data_open(spec, "train", 0, &va), LK_ERR_ARG, "--ctx");
}

static void test_shards(void **state)
{
    (void)state;
    char spec[700];
    shard("tok_train_000.bin", 300, 0, 20240520, 1, 300, 0);
    shard("tok_train_001.bin", 200, 300, 20240520, 1, 200, 0);
    shard("tok_val_000.bin", 100, 1000, 20240520, 1, 100, 0);
    snprintf(spec, sizeof spec, "tokens:%s/tok_*.bin", tu_tmpdir());
    lk_dataset tr, va;
    TU_OK(lk_data_open(spec, "train", 10, &tr));
    TU_OK(lk_data_open(spec, "test", 10, &va));
    assert_int_equal(tr.nclasses, 50257);
    assert_int_equal(tr.ntok, 500); /* both training shards, in name order */
    assert_int_equal(va.ntok, 100); /* the "val" shard */
    assert_int_equal(tr.n, 49);
    int32_t idx[1] = {31}, y[10];
    float x[10];
    lk_dataset_gather(&tr, idx, 1, x, y); /* window 31 crosses into the second shard */
    for (int k = 0; k < 10; k++) {
        assert_true(x[k] == (float)(310 + k));
        assert_int_equal(y[k], 311 + k);
    }
    lk_dataset_gather(&va, (int32_t[]){0}, 1, x, y);
    assert_true(x[0] == 1000.0f);
    lk_dataset_free(&tr);
    lk_dataset_free(&va);

    /* without a validation shard the last 10% validate */
    snprintf(spec, sizeof spec, "tokens:%s/tok_train_*.bin", tu_tmpdir());
    TU_OK(lk_data_open(spec, "test", 10, &va));
    assert_int_equal(va.ntok, 50);
    lk_dataset_gather(&va, (int32_t[]){0}, 1, x, y);
    assert_true(x[0] == 450.0f);
    lk_dataset_free(&va);
}

static void test_bad_shards(void **state)
{
    (void)state;
    char spec[700];
    lk_dataset d;
#define BAD(name, needle, ...)                                                     \
    do {                                                                           \
        shard(name, __VA_ARGS__);                                                  \
        snprintf(spec, sizeof spec, "tokens:%s/%s", tu_tmpdir(), name);            \
        TU_FAILS_WITH(lk_data_open(spec, "train", 4, &d), LK_ERR_FORMAT, needle);  \
        assert_non_null(strstr(lk_error_message(), name));                         \
    } while (0)
    BAD("magic.bin", "magic 1234", 100, 0, 1234, 1, 100, 0);
    BAD("version.bin", "version 2", 100, 0, 20240520, 2, 100, 0);
    BAD("truncated.bin", "(truncated)", 100, 0, 20240520, 1, 100, 7);
    BAD("count.bin", "the header says 90 tokens", 100, 0, 20240520, 1, 90, 0);
    BAD("header.bin", "shorter than its 1024-byte header", 0, 0, 20240520, 1, 0, 1000);
    BAD("vocab.bin", "token 7 is 50257", 100, 50250, 20240520, 1, 100, 0); /* 50250 + 7 */
    snprintf(spec, sizeof spec, "tokens:%s/nothing-*.bin", tu_tmpdir());
    TU_FAILS_WITH(lk_data_open(spec, "train", 4, &d), LK_ERR_IO, "no file matches");
    shard("only_val.bin", 100, 0, 20240520, 1, 100, 0);
    snprintf(spec, sizeof spec, "tokens:%s/only_val.bin", tu_tmpdir());
    TU_FAILS_WITH(lk_data_open(spec, "train", 4, &d), LK_ERR_IO, "none to train on");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_bad_shards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
