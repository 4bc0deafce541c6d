/* residual.c - skip connections in a chain of layers: y = x + f(x) where f is the
 * layers between lk_residual_begin() and its lk_residual_end().
 *
 * begin is an alias of its input (no copy): its forward only notes where x lives (the
 * activation stays in the model's arena for the whole step). end adds it to its own
 * input. In backward, end passes dy through to f and leaves a copy in begin's saved
 * block; begin then adds that copy to the gradient that has come back through f. */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    const float *x; /* begin's input, set by its forward */
    int ended;      /* an end refers to this begin */
} res_begin;

typedef struct {
    lk_layer base;
    res_begin *begin;
} res_end;

static lk_status begin_setup(lk_layer *l)
{
    l->out = l->in;
    return LK_OK;
}

static size_t begin_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    return (size_t)batch * lk_shape_numel(&l->in) * sizeof(float);
}

static lk_status begin_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    (void)c;
    (void)y;
    ((res_begin *)l)->x = x->data;
    return LK_OK;
}

/* alias: dx is dy, so the skip's gradient is added in place */
static lk_status begin_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                                const lk_tensor *dy, lk_tensor *dx)
{
    (void)x;
    (void)y;
    (void)dx;
    return lk_axpy(c->dev, 1.0f, l->saved, dy->data, lk_tensor_numel(dy));
}

static const lk_layer_vt begin_vt = {
    .type = "residual",
    .setup = begin_setup,
    .saved_bytes = begin_saved,
    .forward = begin_forward,
    .backward = begin_backward,
    .alias = 1,
};

static lk_status end_setup(lk_layer *l)
{
    res_end *s = (res_end *)l;
    if (s->begin->base.index < 0 || s->begin->base.index >= l->index) /* not added before */
        return LK_ERR(LK_ERR_ARG, "layer %d (residual add): its begin is not an earlier layer", l->index);
    if (!lk_shape_equal(&l->in, &s->begin->base.in)) {
        char a[64], b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (residual add): the block maps %s to %s; it must keep the shape",
                      l->index, lk_shape_str(&s->begin->base.in, a, sizeof a),
                      lk_shape_str(&l->in, b, sizeof b));
    }
    l->out = l->in;
    l->block_begin = s->begin->base.index + 1;
    return LK_OK;
}

static lk_status end_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    res_end *s = (res_end *)l;
    size_t n = lk_tensor_numel(x);
    if (x->type == LK_BF16) LK_CHECK(lk_widen_bf16(c->dev, (const uint16_t *)x->data, y->data, n));
    else lk_copy_on_device(c->dev, y->data, x->data, n * sizeof(float));
    return lk_axpy(c->dev, 1.0f, s->begin->x, y->data, n);
}

static lk_status end_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                              const lk_tensor *dy, lk_tensor *dx)
{
    (void)x;
    (void)y;
    res_end *s = (res_end *)l;
    size_t bytes = lk_tensor_numel(dy) * sizeof(float);
    lk_copy_on_device(c->dev, s->begin->base.saved, dy->data, bytes);
    if (dx->data) lk_copy_on_device(c->dev, dx->data, dy->data, bytes);
    return LK_OK;
}

static const lk_layer_vt end_vt = {
    .type = "residual_add",
    .reads_bf16 = 1, /* the block's output; the sum (the residual stream) stays float32 */
    .setup = end_setup,
    .forward = end_forward,
    .backward = end_backward,
};

lk_layer *lk_residual_begin(void)
{
    res_begin *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &begin_vt;
    s->base.index = -1;
    return &s->base;
}

lk_layer *lk_residual_end(lk_layer *begin)
{
    if (!begin || begin->vt != &begin_vt) {
        LK_ERR(LK_ERR_ARG, "residual end: needs the layer lk_residual_begin() made");
        return NULL;
    }
    res_begin *b = (res_begin *)begin;
    if (b->ended) {
        LK_ERR(LK_ERR_ARG, "residual end: that begin already has an end");
        return NULL;
    }
    res_end *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &end_vt;
    s->begin = b;
    b->ended = 1;
    return &s->base;
}
