/* png.c - the smallest correct PNG: signature, IHDR (8-bit grey or RGB), one zlib IDAT
 * of filter-0 scanlines, IEND; every chunk with its CRC-32. */
#include "png.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../core/checkpoint.h"

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* appends a chunk (length, type, data, CRC of type + data) at *at */
static void chunk(unsigned char **at, const char *type, const unsigned char *data, uint32_t n)
{
    unsigned char *p = *at;
    be32(p, n);
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, data, n);
    be32(p + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + 4, n + 4));
    *at = p + 12 + n;
}

lk_status lk_png_write_gray(const char *path, const float *pixels, int w, int h)
{
    return lk_png_write(path, pixels, w, h, 1);
}

lk_status lk_png_write(const char *path, const float *pixels, int w, int h, int channels)
{
    if (w <= 0 || h <= 0 || w > 1 << 15 || h > 1 << 15 || (channels != 1 && channels != 3))
        return LK_ERR(LK_ERR_ARG, "png %s: bad size %dx%d (%d channels)", path, w, h, channels);
    const size_t line = (size_t)w * channels, raw_n = (size_t)h * (line + 1);
    unsigned char *raw = lk_malloc(raw_n);
    uLongf zn = compressBound((uLong)raw_n);
    unsigned char *file = lk_malloc(8 + 25 + 12 + zn + 12);
    unsigned char *z = lk_malloc(zn);
    lk_status st = LK_OK;
    if (!raw || !file || !z) st = LK_ERR(LK_ERR_NOMEM, "png %s: out of memory", path);
    if (st == LK_OK) {
        for (int y = 0; y < h; y++) {
            unsigned char *row = raw + (size_t)y * (line + 1);
            row[0] = 0; /* filter: none */
            for (size_t x = 0; x < line; x++) {
                float v = pixels[(size_t)y * line + x];
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                row[1 + x] = (unsigned char)(v * 255.0f + 0.5f);
            }
        }
        if (compress2(z, &zn, raw, (uLong)raw_n, 9) != Z_OK)
            st = LK_ERR(LK_ERR_STATE, "png %s: zlib could not compress the image", path);
    }
    if (st == LK_OK) {
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        unsigned char ihdr[13], *at = file + 8;
        memcpy(file, sig, 8);
        be32(ihdr, (uint32_t)w);
        be32(ihdr + 4, (uint32_t)h);
        ihdr[8] = 8, ihdr[9] = channels == 3 ? 2 : 0, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0; /* 8-bit grey, RGB */
        chunk(&at, "IHDR", ihdr, 13);
        chunk(&at, "IDAT", z, (uint32_t)zn);
        chunk(&at, "IEND", NULL, 0);
        st = lk_write_file_atomic(path, file, (size_t)(at - file));
    }
    lk_free(raw);
    lk_free(file);
    lk_free(z);
    return st;
}

lk_status lk_png_write_grid(const char *path, const float *images, int n, int ih, int iw, int cols)
{
    if (n <= 0 || cols <= 0) return LK_ERR(LK_ERR_ARG, "png %s: no images to lay out", path);
    const int gap = 2, rows = (n + cols - 1) / cols;
    const int W = cols * iw + (cols + 1) * gap, H = rows * ih + (rows + 1) * gap;
    float *canvas = lk_malloc((size_t)W * H * sizeof *canvas);
    if (!canvas) return LK_ERR(LK_ERR_NOMEM, "png %s: out of memory", path);
    for (size_t i = 0; i < (size_t)W * H; i++) canvas[i] = 0.5f;
    for (int k = 0; k < n; k++) {
        int r = k / cols, c = k % cols, y0 = gap + r * (ih + gap), x0 = gap + c * (iw + gap);
        for (int y = 0; y < ih; y++)
            memcpy(canvas + (size_t)(y0 + y) * W + x0, images + ((size_t)k * ih + y) * iw,
                   (size_t)iw * sizeof *canvas);
    }
    lk_status st = lk_png_write_gray(path, canvas, W, H);
    lk_free(canvas);
    return st;
}
