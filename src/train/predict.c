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

lk_status lk_predict(const char *named, const char *input, const char *device, int threads, int top,
                     int limit, FILE *out)
{
    lk_run_config rc;
    char dir[600];
    LK_CHECK(lk_ckptdir_resolve(named, dir, sizeof dir)); /* (step checkpoints: the latest) */
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    lk_dataset d;
    LK_CHECK(lk_image_file_load(input, &d));
    if (limit > 0 && limit < d.n) lk_dataset_truncate(&d, limit);
    char a[64], b[64];
    lk_spec *spec = NULL;
    lk_status s = lk_ckptdir_open_spec(dir, &rc, &spec);
    const lk_zoo_entry *z = spec ? lk_spec_entry(spec) : NULL;
    if (s == LK_OK && (z->tokens || z->target != LK_TARGET_LABELS || rc.in_shape.ndim == 1))
        s = LK_ERR(LK_ERR_ARG, "checkpoint %s holds a %s, not an image classifier: use lockstep sample", dir,
                   rc.model);
    else if (s == LK_OK && !lk_shape_equal(&d.sample, &rc.in_shape))
        s = LK_ERR(LK_ERR_SHAPE, "%s: images are %s but checkpoint %s expects %s", input,
                   lk_shape_str(&d.sample, a, sizeof a), dir, lk_shape_str(&rc.in_shape, b, sizeof b));
    lk_replica r;
    memset(&r, 0, sizeof r);
    if (s == LK_OK)
        s = lk_replica_open(&r, &(lk_replica_spec){device, threads, spec, rc.arch, rc.in_shape,
                                                    rc.nclasses, 1, LK_MIN(d.n, 256),
                                                    LK_INIT_DEFAULT, 0, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL,
                                                    LK_F32, 0, 0});
    if (s == LK_OK) s = run(dir, &rc, &d, &r, top, out);
    lk_replica_free(&r);
    lk_dataset_free(&d);
    lk_spec_free(spec);
    return s;
}
