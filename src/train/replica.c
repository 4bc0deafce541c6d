/* replica.c - one replica's device, model and batch buffers. */
#include "replica.h"

#include <string.h>

#include "../core/ops.h"
#include "../models/zoo.h"

void lk_replica_free(lk_replica *r)
{
    if (r->dev) {
        lk_dev_free(r->dev, r->labels);
        lk_dev_free(r->dev, r->scalars);
    }
    lk_model_destroy(r->model);
    lk_free(r->x_host);
    lk_free(r->y_host);
    lk_free(r->idx);
    lk_device_close(r->dev);
    memset(r, 0, sizeof *r);
}

lk_status lk_replica_open(lk_replica *r, const lk_replica_spec *sp)
{
    memset(r, 0, sizeof *r);
    LK_CHECK(lk_device_open(&r->dev, sp->device, sp->threads));
    if (sp->check) LK_CHECK(sp->check(sp->check_user, r->dev));
    const lk_zoo_entry *z = lk_spec_entry(sp->model);
    LK_CHECK(lk_model_create(&r->model, r->dev, &sp->sample));
    LK_CHECK(lk_spec_build(sp->model, r->model, sp->nclasses, &sp->arch));
    r->zoo = z;
    r->ylen = sp->ylen > 0 ? sp->ylen : 1;
    const int batch = sp->batch;
    LK_CHECK(lk_model_set_recompute(r->model, sp->recompute));
    if (sp->sample_norms) lk_model_set_sample_norms(r->model);
    LK_CHECK(lk_zoo_set_precision(r->model, z, sp->precision,
                                  &(lk_round){sp->stochastic_round, sp->seed ^ 0x5eed0bf16ULL, 0, 0, NULL}));
    LK_CHECK(lk_model_build_ex(r->model, batch, sp->build));
    /* --init default: the spec's own scheme */
    LK_CHECK(lk_model_init(r->model, sp->init != LK_INIT_DEFAULT ? sp->init : z->init, sp->seed));
    size_t numel = lk_shape_numel(&sp->sample), nlab = (size_t)batch * r->ylen;
    r->labels = lk_dev_alloc(r->dev, nlab * sizeof(int32_t));
    r->scalars = lk_dev_alloc(r->dev, 4 * sizeof(float));
    r->x_host = lk_malloc((size_t)batch * numel * sizeof(float));
    r->y_host = lk_malloc(nlab * sizeof(int32_t));
    r->idx = lk_malloc((size_t)batch * sizeof(int32_t));
    if (!r->labels || !r->scalars || !r->x_host || !r->y_host || !r->idx)
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate batch buffers (batch %d)", batch);
    lk_zero(r->dev, r->scalars, 4 * sizeof(float));
    return LK_OK;
}

lk_status lk_replica_loss(lk_replica *r, const lk_tensor *out, int n, int grad, float scale,
                          int correct)
{
    lk_model *m = r->model;
    const int per = (int)(lk_tensor_numel(out) / (size_t)n); /* outputs per sample */
    lk_loss_args la = {.out = out->data, .batch = n * r->ylen, .features = lk_model_out_valid(m),
                       .ld = per / r->ylen, /* a padded vocabulary: fewer classes than values */
                       .type = out->type};
    if (r->zoo->target == LK_TARGET_INPUT) {
        la.targets = lk_model_input(m);
        la.batch = n;
        la.features = per;
        la.ld = 0;
    } else {
        la.labels = r->labels;
    }
    const float sum = r->zoo->loss_sum ? (float)la.features : 1.0f;
    m->loss_scale = scale;
    LK_CHECK(lk_loss(r->dev, r->zoo->loss, &la, &r->scalars[0], grad ? m->dout : NULL, scale * sum));
    if (sum != 1.0f) LK_CHECK(lk_scale(r->dev, &r->scalars[0], sum, 1));
    if (m->has_aux) LK_CHECK(lk_axpy(r->dev, 1.0f, m->aux_loss, &r->scalars[0], 1));
    if (correct && lk_replica_classifies(r))
        LK_CHECK(lk_count_correct(r->dev, out->type, out->data, r->labels, la.batch, la.features, la.ld,
                                  &r->scalars[1]));
    return LK_OK;
}

lk_status lk_replica_infer(lk_replica *r, const lk_dataset *d, int start, int *n, lk_tensor *out)
{
    *n = LK_MIN(r->model->max_batch, d->n - start);
    for (int i = 0; i < *n; i++) r->idx[i] = start + i;
    lk_replica_load_batch(r, d, r->idx, *n);
    return lk_model_forward(r->model, *n, 0, 0, out);
}

void lk_replica_load_batch(lk_replica *r, const lk_dataset *d, const int32_t *idx, int n)
{
    lk_replica_load_into(r, d, idx, n, lk_model_input(r->model));
}

void lk_replica_load_into(lk_replica *r, const lk_dataset *d, const int32_t *idx, int n, float *x)
{
    if (r->dev->host_addressable) { /* gather straight into the model's input */
        lk_dataset_gather(d, idx, n, x, r->labels);
        return;
    }
    lk_dataset_gather(d, idx, n, r->x_host, r->y_host);
    lk_copy_to_device(r->dev, x, r->x_host, (size_t)n * lk_dataset_sample_numel(d) * sizeof(float));
    lk_copy_to_device(r->dev, r->labels, r->y_host, (size_t)n * r->ylen * sizeof(int32_t));
}
