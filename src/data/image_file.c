/* image_file.c - the images `lockstep predict` classifies: an IDX image file (plain or
 * gzip) or a binary PGM (P5). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../core/checkpoint.h"
#include "dataset.h"

/* A binary PGM (P5, maxval < 256) as a one-sample dataset. */
static lk_status load_pgm(const char *path, const void *bytes, size_t n, lk_dataset *out)
{
    const char *p = bytes, *end = p + n;
    long vals[3];
    p += 2;
    for (int k = 0; k < 3; k++) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '#')) {
            if (*p == '#')
                while (p < end && *p != '\n') p++;
            else
                p++;
        }
        long v = 0;
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9' && digits < 9) v = v * 10 + (*p++ - '0'), digits++;
        if (!digits) return LK_ERR(LK_ERR_FORMAT, "%s: malformed PGM header", path);
        vals[k] = v;
    }
    p++; /* the single whitespace before the pixels */
    long w = vals[0], h = vals[1], maxval = vals[2];
    if (w < 1 || h < 1 || maxval < 1 || maxval > 255)
        return LK_ERR(LK_ERR_FORMAT, "%s: PGM %ldx%ld with maxval %ld is not supported (8-bit only)",
                      path, w, h, maxval);
    if (p > end || (size_t)(end - p) < (size_t)(w * h))
        return LK_ERR(LK_ERR_FORMAT, "%s: truncated: %ld pixels expected, %td present", path, w * h,
                      p > end ? (ptrdiff_t)0 : end - p);
    memset(out, 0, sizeof *out);
    snprintf(out->source, sizeof out->source, "%s", path);
    out->n = 1;
    int shape[3] = {1, (int)h, (int)w};
    out->sample = lk_shape_make(3, shape);
    out->x = lk_malloc((size_t)(w * h));
    out->y = lk_calloc(1, sizeof(int32_t));
    if (!out->x || !out->y) return LK_ERR(LK_ERR_NOMEM, "%s: out of memory", path);
    for (long i = 0; i < w * h; i++) /* to the 0..255 range of every dataset */
        out->x[i] = (uint8_t)(((unsigned char)p[i] > maxval ? maxval : (unsigned char)p[i]) * 255 / maxval);
    return LK_OK;
}

lk_status lk_image_file_load(const char *path, lk_dataset *d)
{
    void *bytes = NULL;
    size_t n = 0;
    memset(d, 0, sizeof *d);
    LK_CHECK(lk_read_file(path, &bytes, &n));
    lk_status s;
    if (n >= 2 && ((const char *)bytes)[0] == 'P' && ((const char *)bytes)[1] == '5')
        s = load_pgm(path, bytes, n, d);
    else
        s = lk_idx_load_images(path, d);
    lk_free(bytes);
    return s;
}

