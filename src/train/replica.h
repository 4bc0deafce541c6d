/* replica.h - one model replica: its device, model and the buffers a step uses. */
#ifndef LK_REPLICA_H
#define LK_REPLICA_H

#include "../core/layers.h"
#include "../core/model.h"
#include "../data/dataset.h"

typedef struct {
    lk_device *dev;
    lk_model *model;
    lk_loss_kind loss;
    int32_t *labels;       /* device, max_batch */
    float *scalars;        /* device: [0] batch loss, [1] correct, [2] loss sum */
    float *x_host;         /* staging for one batch */
    int32_t *y_host, *idx;
} lk_replica;

/* Opens the device, builds the zoo model for `sample`/`nclasses` at `batch`,
 * initialises it and allocates every buffer a step needs. */
lk_status lk_replica_open(lk_replica *r, const char *device, int threads, const char *model,
                          const lk_shape *sample, int nclasses, int batch, lk_init_kind init,
                          uint64_t seed);
void lk_replica_free(lk_replica *r);
/* Copies samples idx[0..n) of d into the model input and label buffers. */
void lk_replica_load_batch(lk_replica *r, const lk_dataset *d, const int32_t *idx, int n);
/* Inference on samples [start, start + *n) of d, *n = min(max_batch, d->n - start):
 * loads them in order and runs the model in eval mode; out is the output view. */
lk_status lk_replica_infer(lk_replica *r, const lk_dataset *d, int start, int *n, lk_tensor *out);

#endif
