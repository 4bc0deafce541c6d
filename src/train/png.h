/* png.h - PNGs of images (sampled digits, reconstructions, attribution maps): zlib's
 * deflate and CRC-32, written atomically. */
#ifndef LK_PNG_H
#define LK_PNG_H

#include "../core/common.h"

/* Writes an 8-bit grayscale PNG of w x h pixels (row-major, values clamped to [0, 1]). */
lk_status lk_png_write_gray(const char *path, const float *pixels, int w, int h);
/* ... of 1 (grey) or 3 (RGB, interleaved: [h][w][3]) channels. */
lk_status lk_png_write(const char *path, const float *pixels, int w, int h, int channels);

/* Lays n images of ih x iw out on a grid of `cols` columns with a 2-pixel gap (grey) and
 * writes it; rows = ceil(n / cols). */
lk_status lk_png_write_grid(const char *path, const float *images, int n, int ih, int iw, int cols);

#endif
