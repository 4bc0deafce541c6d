/* predict.h - class predictions of a checkpoint for the images in a file. */
#ifndef LK_PREDICT_H
#define LK_PREDICT_H

#include <stdio.h>

#include "../core/common.h"

/* input: an IDX image file (plain or gzip) or a binary PGM (P5) image of the
 * checkpoint's input size. Writes one line per image: index, the top-k classes
 * with names and probabilities. limit > 0 stops after that many images. */
lk_status lk_predict(const char *ckpt_dir, const char *input, const char *device, int threads,
                     int top, int limit, FILE *out);

#endif
