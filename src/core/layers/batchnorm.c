/* batchnorm.c - torch.nn.BatchNorm1d/2d: per-channel statistics over the batch (and
 * the image) in training, the running statistics in evaluation; weight 1 and bias 0
 * at start, buffers running_mean, running_var and num_batches_tracked as PyTorch's.
 * Input [C] or [C, H, W] per sample.
 *
 * Synchronised (SyncBatchNorm) when the model has a sync_sum hook: the per-channel
 * sums (and the count) of forward and of backward are summed over every rank, so all
 * ranks normalise with the statistics of the global batch. The parameter gradients
 * stay this rank's own (the gradient all-reduce adds them like any other). */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int channels;
    float eps, momentum;
} batchnorm;

enum { P_WEIGHT, P_BIAS, P_RUN_MEAN, P_RUN_VAR, P_TRACKED };

static lk_status bn_setup(lk_layer *l)
{
    batchnorm *s = (batchnorm *)l;
    if ((l->in.ndim != 1 && l->in.ndim != 3) || l->in.d[0] != s->channels) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (batchnorm %d): expects [%d] or [%d, H, W] per sample, got %s",
                      l->index, s->channels, s->channels, s->channels, lk_shape_str(&l->in, b, sizeof b));
    }
    l->out = l->in;
    const int *c = &s->channels;
    lk_layer_add_param(l, "weight", 1, c, *c, *c, 0)->fixed = LK_PINIT_ONES;
    lk_layer_add_param(l, "bias", 1, c, *c, *c, 1)->fixed = LK_PINIT_ZEROS;
    lk_layer_add_buffer(l, "running_mean", 1, c, LK_PINIT_ZEROS);
    lk_layer_add_buffer(l, "running_var", 1, c, LK_PINIT_ONES);
    lk_layer_add_buffer(l, "num_batches_tracked", 0, NULL, LK_PINIT_ZEROS);
    return LK_OK;
}

/* saved: mean [C] | rstd [C] | sums [2C + 1] */
static size_t bn_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)d, (void)batch;
    return (4 * (size_t)((const batchnorm *)l)->channels + 1) * sizeof(float);
}

static int inner_of(const lk_layer *l) { return (int)(lk_shape_numel(&l->in) / (size_t)l->in.d[0]); }

static lk_status bn_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    batchnorm *s = (batchnorm *)l;
    const int C = s->channels, n = x->shape.d[0], inner = inner_of(l);
    float *mean = l->saved, *rstd = mean + C, *sums = rstd + C;
    lk_param *p = l->params;
    if (c->training) {
        LK_CHECK(lk_bn_sums(c->dev, x->data, NULL, NULL, NULL, n, C, inner, sums));
        if (c->sync_sum) LK_CHECK(c->sync_sum(c->sync_user, sums, 2 * (size_t)C + 1));
        LK_CHECK(lk_bn_stats(c->dev, sums, C, s->eps, s->momentum, mean, rstd, p[P_RUN_MEAN].w,
                             p[P_RUN_VAR].w, p[P_TRACKED].w));
    } else {
        LK_CHECK(lk_bn_stats(c->dev, NULL, C, s->eps, s->momentum, mean, rstd, p[P_RUN_MEAN].w,
                             p[P_RUN_VAR].w, p[P_TRACKED].w));
    }
    return lk_bn_forward(c->dev, x->data, mean, rstd, p[P_WEIGHT].w, p[P_BIAS].w, y->data, n, C, inner);
}

static lk_status bn_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                             const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    batchnorm *s = (batchnorm *)l;
    const int C = s->channels, n = x->shape.d[0], inner = inner_of(l);
    float *mean = l->saved, *rstd = mean + C, *sums = rstd + C;
    lk_param *p = l->params;
    LK_CHECK(lk_bn_sums(c->dev, x->data, dy->data, mean, rstd, n, C, inner, sums));
    /* this rank's parameter gradients: db = sum dy, dw = sum dy * xhat */
    const size_t cb = (size_t)C * sizeof(float);
    if (c->replace_grads) {
        lk_copy_on_device(c->dev, p[P_BIAS].g, sums, cb);
        lk_copy_on_device(c->dev, p[P_WEIGHT].g, sums + C, cb);
    } else {
        LK_CHECK(lk_axpy(c->dev, 1.0f, sums, p[P_BIAS].g, (size_t)C));
        LK_CHECK(lk_axpy(c->dev, 1.0f, sums + C, p[P_WEIGHT].g, (size_t)C));
    }
    if (!dx->data) return LK_OK;
    if (!c->training) { /* the running statistics are constants: dx = dy * weight * rstd */
        lk_zero(c->dev, sums, cb); /* (as the mean and the bias) */
        return lk_bn_forward(c->dev, dy->data, sums, rstd, p[P_WEIGHT].w, sums, dx->data, n, C, inner);
    }
    if (c->sync_sum) LK_CHECK(c->sync_sum(c->sync_user, sums, 2 * (size_t)C + 1));
    return lk_bn_backward(c->dev, x->data, dy->data, mean, rstd, p[P_WEIGHT].w, sums, dx->data, n,
                          C, inner);
}

static const lk_layer_vt batchnorm_vt = {
    .stateful = 1,
    .type = "batchnorm",
    .setup = bn_setup,
    .saved_bytes = bn_saved,
    .forward = bn_forward,
    .backward = bn_backward,
};

lk_layer *lk_batchnorm(int channels, float eps, float momentum)
{
    if (channels <= 0 || !(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
        LK_ERR(LK_ERR_ARG, "batchnorm: channels > 0, eps > 0 and momentum in [0, 1] (got %d, %g, %g)",
               channels, (double)eps, (double)momentum);
        return NULL;
    }
    batchnorm *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &batchnorm_vt;
    s->channels = channels;
    s->eps = eps;
    s->momentum = momentum;
    return &s->base;
}
