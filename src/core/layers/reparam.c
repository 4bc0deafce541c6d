/* reparam.c - the VAE's sampling layer: input [2 * zdim] per sample = the encoder's
 * (mu, logvar), output z = mu + exp(logvar / 2) * eps, eps ~ N(0, 1) from the counter-
 * based generator keyed by (seed, step, layer), so backward regenerates it and every
 * device draws the same numbers. In evaluation z = mu. Its KL divergence from N(0, 1),
 * averaged over the batch, is the layer's own loss term: added to ctx->aux_loss in
 * forward, its gradient added in backward (times ctx->loss_scale, like the main loss). */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int zdim;
} reparam;

static lk_status reparam_setup(lk_layer *l)
{
    reparam *s = (reparam *)l;
    if (l->in.ndim != 1 || l->in.d[0] != 2 * s->zdim) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (reparam %d): expects [%d] (mu, logvar) per sample, got %s",
                      l->index, s->zdim, 2 * s->zdim, lk_shape_str(&l->in, b, sizeof b));
    }
    l->out = lk_shape_make(1, &s->zdim);
    return LK_OK;
}

static size_t reparam_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)l, (void)d, (void)batch;
    return sizeof(float); /* the KL of the last forward */
}

uint64_t lk_reparam_key(const lk_layer *l, long step)
{
    return ((uint64_t)step << 16) | (uint64_t)(l->index & 0xffff);
}

static lk_status reparam_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    reparam *s = (reparam *)l;
    LK_CHECK(lk_reparam_forward(c->dev, x->data, y->data, x->shape.d[0], s->zdim, c->training,
                                c->seed, lk_reparam_key(l, c->step),
                                (uint64_t)c->sample_base * s->zdim, l->saved));
    return lk_axpy(c->dev, 1.0f, l->saved, c->aux_loss, 1);
}

static lk_status reparam_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                                  const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    reparam *s = (reparam *)l;
    if (!dx->data) return LK_OK;
    const int B = x->shape.d[0];
    return lk_reparam_backward(c->dev, x->data, dy->data, dx->data, B, s->zdim, c->seed,
                               lk_reparam_key(l, c->step), (uint64_t)c->sample_base * s->zdim,
                               c->loss_scale / (float)B);
}

static const lk_layer_vt reparam_vt = {
    .type = "reparam",
    .setup = reparam_setup,
    .saved_bytes = reparam_saved,
    .forward = reparam_forward,
    .backward = reparam_backward,
    .own_loss = 1,
};

lk_layer *lk_reparam(int zdim)
{
    if (zdim <= 0) {
        LK_ERR(LK_ERR_ARG, "reparam: latent size must be positive (got %d)", zdim);
        return NULL;
    }
    reparam *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &reparam_vt;
    s->zdim = zdim;
    return &s->base;
}

int lk_layer_is_reparam(const lk_layer *l) { return l->vt == &reparam_vt; }
