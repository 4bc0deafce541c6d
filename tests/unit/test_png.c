/* test_png.c - the PNG writer: signature, chunk layout and CRCs, and the pixels back
 * through zlib; the grid's layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/checkpoint.h"
#include "testutil.h"
#include "train/png.h"

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* parses the file: checks every chunk's CRC, returns the inflated scanlines */
static unsigned char *read_png(const char *path, int *w, int *h)
{
    void *data;
    size_t n;
    TU_OK(lk_read_file(path, &data, &n));
    const unsigned char *p = data;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_memory_equal(p, sig, 8);
    size_t at = 8;
    unsigned char *raw = NULL;
    int seen_end = 0;
    while (at + 12 <= n) {
        uint32_t len = be32(p + at);
        const unsigned char *type = p + at + 4;
        assert_true(at + 12 + len <= n);
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, len + 4);
        assert_int_equal(crc, be32(p + at + 8 + len));
        if (!memcmp(type, "IHDR", 4)) {
            *w = (int)be32(type + 4), *h = (int)be32(type + 8);
            assert_int_equal(type[12], 8); /* bit depth */
            assert_int_equal(type[13], 0); /* grayscale */
        } else if (!memcmp(type, "IDAT", 4)) {
            uLongf rn = (uLongf)(*h) * (*w + 1);
            raw = malloc(rn);
            assert_int_equal(uncompress(raw, &rn, type + 4, len), Z_OK);
            assert_int_equal(rn, (uLongf)(*h) * (*w + 1));
        } else if (!memcmp(type, "IEND", 4)) {
            seen_end = 1;
        }
        at += 12 + len;
    }
    assert_true(seen_end && at == n);
    lk_free(data);
    return raw;
}

static void test_gray(void **state)
{
    (void)state;
    const int w = 5, h = 3;
    float px[15];
    for (int i = 0; i < 15; i++) px[i] = (float)i / 14.0f;
    px[0] = -1.0f, px[14] = 2.0f; /* clamped */
    char path[600];
    snprintf(path, sizeof path, "%s/g.png", tu_tmpdir());
    TU_OK(lk_png_write_gray(path, px, w, h));
    int rw = 0, rh = 0;
    unsigned char *raw = read_png(path, &rw, &rh);
    assert_int_equal(rw, w);
    assert_int_equal(rh, h);
    for (int y = 0; y < h; y++) {
        assert_int_equal(raw[y * (w + 1)], 0); /* filter none */
        for (int x = 0; x < w; x++) {
            float v = px[y * w + x];
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            assert_int_equal(raw[y * (w + 1) + 1 + x], (int)(v * 255.0f + 0.5f));
        }
    }
    free(raw);
    assert_int_equal(lk_png_write_gray(path, px, 0, 3), LK_ERR_ARG);
    TU_FAILS_WITH(lk_png_write_gray("/no/such/dir/x.png", px, w, h), LK_ERR_IO, "/no/such/dir");
}

static void test_grid(void **state)
{
    (void)state;
    /* 5 images of 2x3 on 3 columns: 2 rows, a 2-pixel grey gap around each */
    float img[5 * 6];
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 6; i++) img[k * 6 + i] = k == 4 ? 1.0f : 0.0f;
    char path[600];
    snprintf(path, sizeof path, "%s/grid.png", tu_tmpdir());
    TU_OK(lk_png_write_grid(path, img, 5, 2, 3, 3));
    int w = 0, h = 0;
    unsigned char *raw = read_png(path, &w, &h);
    assert_int_equal(w, 3 * 3 + 4 * 2);
    assert_int_equal(h, 2 * 2 + 3 * 2);
    /* image 4 (row 1, column 1) is white at its top-left pixel; the gap is grey */
    int y0 = 2 + 1 * (2 + 2), x0 = 2 + 1 * (3 + 2);
    assert_int_equal(raw[y0 * (w + 1) + 1 + x0], 255);
    assert_int_equal(raw[0 * (w + 1) + 1 + 0], 128);
    assert_int_equal(raw[2 * (w + 1) + 1 + 2], 0); /* image 0 */
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gray),
        cmocka_unit_test(test_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
