/* predict.c - inference on images from a file, with softmax probabilities. */
#include "predict.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "ckptdir.h"
#include "../data/dataset.h"
#include "replica.h"

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

static lk_status load_input(const char *path, lk_dataset *d)
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

static lk_status run(const char *dir, const lk_run_config *rc, const lk_dataset *d, lk_replica *r,
                     int top, FILE *out)
{
    char path[600];
    LK_CHECK(lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                        r->model));
    int C = rc->nclasses;
    float logits[1 << 12];
    if (C > (int)(sizeof logits / sizeof *logits))
        return LK_ERR(LK_ERR_ARG, "predict supports up to %zu classes", sizeof logits / sizeof *logits);
    top = LK_MIN(top, C);
    for (int start = 0, n = 0; start < d->n; start += n) {
        lk_tensor o;
        LK_CHECK(lk_replica_infer(r, d, start, &n, &o));
        for (int i = 0; i < n; i++) {
            lk_copy_to_host(r->dev, logits, o.data + (size_t)i * C, (size_t)C * sizeof(float));
            LK_CHECK(lk_device_status(r->dev));
            float mx = logits[0], sum = 0.0f;
            for (int j = 1; j < C; j++) mx = fmaxf(mx, logits[j]);
            for (int j = 0; j < C; j++) sum += (logits[j] = expf(logits[j] - mx));
            fprintf(out, "%d", start + i);
            for (int k = 0; k < top; k++) { /* selection of the k-th best */
                int best = -1;
                for (int j = 0; j < C; j++)
                    if (logits[j] >= 0.0f && (best < 0 || logits[j] > logits[best])) best = j;
                fprintf(out, "\t%d\t%s\t%.4f", best, rc->class_names[best < 16 ? best : 0],
                        logits[best] / sum);
                logits[best] = -1.0f;
            }
            fputc('\n', out);
        }
    }
    if (fflush(out) != 0) return LK_ERR(LK_ERR_IO, "writing predictions: %s", strerror(errno));
    return LK_OK;
}

lk_status lk_predict(const char *dir, const char *input, const char *device, int threads, int top,
                     int limit, FILE *out)
{
    lk_run_config rc;
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    lk_dataset d;
    LK_CHECK(load_input(input, &d));
    if (limit > 0 && limit < d.n) lk_dataset_truncate(&d, limit);
    lk_status s = LK_OK;
    char a[64], b[64];
    const lk_zoo_entry *z = lk_zoo_find(rc.model);
    if (z && (z->target != LK_TARGET_LABELS || rc.in_shape.ndim == 1))
        s = LK_ERR(LK_ERR_ARG, "checkpoint %s holds a %s, not an image classifier: use lockstep sample", dir,
                   rc.model);
    else if (!lk_shape_equal(&d.sample, &rc.in_shape))
        s = LK_ERR(LK_ERR_SHAPE, "%s: images are %s but checkpoint %s expects %s", input,
                   lk_shape_str(&d.sample, a, sizeof a), dir, lk_shape_str(&rc.in_shape, b, sizeof b));
    lk_replica r;
    memset(&r, 0, sizeof r);
    if (s == LK_OK)
        s = lk_replica_open(&r, &(lk_replica_spec){device, threads, rc.model, rc.arch, rc.in_shape,
                                                    rc.nclasses, 1, LK_MIN(d.n, 256),
                                                    LK_INIT_DEFAULT, 0, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL,
                                                    LK_F32, 0});
    if (s == LK_OK) s = run(dir, &rc, &d, &r, top, out);
    lk_replica_free(&r);
    lk_dataset_free(&d);
    return s;
}
