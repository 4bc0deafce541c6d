/* dropout.c - inverted dropout. The mask is never stored: it is a pure function of
 * (seed, step, layer, element), so backward regenerates it, and every device and
 * rank count draws the same numbers. */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    float p;
} dropout;

static lk_status dropout_setup(lk_layer *l)
{
    l->out = l->in;
    return LK_OK;
}

static uint64_t mask_key(const lk_layer *l, const lk_ctx *c)
{
    return ((uint64_t)c->step << 16) | (uint64_t)(l->index & 0xffff);
}

/* the global index of the batch's first element */
static uint64_t first_of(const lk_layer *l, const lk_ctx *c)
{
    return (uint64_t)c->sample_base * lk_shape_numel(&l->in);
}

static lk_status dropout_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    dropout *s = (dropout *)l;
    if (!c->training || s->p == 0.0f) {
        lk_copy_on_device(c->dev, y->data, x->data, lk_tensor_numel(x) * sizeof(float));
        return LK_OK;
    }
    return lk_dropout_forward(c->dev, s->p, c->seed, mask_key(l, c), first_of(l, c), x, y);
}

static lk_status dropout_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                                  const lk_tensor *dy, lk_tensor *dx)
{
    (void)x;
    (void)y;
    dropout *s = (dropout *)l;
    if (!dx->data) return LK_OK;
    if (!c->training || s->p == 0.0f) {
        lk_copy_on_device(c->dev, dx->data, dy->data, lk_tensor_numel(dy) * sizeof(float));
        return LK_OK;
    }
    return lk_dropout_backward(c->dev, s->p, c->seed, mask_key(l, c), first_of(l, c), dy, dx);
}

static const lk_layer_vt dropout_vt = {
    .type = "dropout",
    .setup = dropout_setup,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

lk_layer *lk_dropout(float p)
{
    if (!(p >= 0.0f && p < 1.0f)) {
        LK_ERR(LK_ERR_ARG, "dropout: probability %g outside [0, 1)", (double)p);
        return NULL;
    }
    dropout *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &dropout_vt;
    s->p = p;
    return &s->base;
}
