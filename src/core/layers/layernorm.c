/* layernorm.c - torch.nn.LayerNorm(dim): normalises the last axis of every row,
 * weight 1 and bias 0 at start; the rows' mean and 1/std are kept for backward. */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int dim;
    float eps;
} layernorm;

static lk_status layernorm_setup(lk_layer *l)
{
    layernorm *s = (layernorm *)l;
    if (l->in.ndim < 1 || l->in.d[l->in.ndim - 1] != s->dim) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (layernorm %d): expects input [..., %d] per sample, got %s",
                      l->index, s->dim, s->dim, lk_shape_str(&l->in, b, sizeof b));
    }
    l->out = l->in;
    lk_layer_add_param(l, "weight", 1, &s->dim, s->dim, s->dim, 0)->fixed = LK_PINIT_ONES;
    lk_layer_add_param(l, "bias", 1, &s->dim, s->dim, s->dim, 1)->fixed = LK_PINIT_ZEROS;
    return LK_OK;
}

static int rows_per_sample(const lk_layer *l) { return (int)(lk_shape_numel(&l->in) / (size_t)((layernorm *)l)->dim); }

static size_t layernorm_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    return 2 * (size_t)batch * rows_per_sample(l) * sizeof(float);
}

/* bf16 input and output are staged in float32 in the workspace: [x | y] */
static size_t layernorm_workspace(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const size_t n = (size_t)batch * lk_shape_numel(&l->in);
    return lk_layer_staging(l->in_type, n) + lk_layer_staging(l->out_type, n);
}

static lk_status layernorm_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    layernorm *s = (layernorm *)l;
    int rows = x->shape.d[0] * rows_per_sample(l);
    float *mean = l->saved, *rstd = mean + rows, *ws = c->workspace;
    const float *in;
    LK_CHECK(lk_layer_f32(c->dev, x, ws, &in));
    float *out = lk_layer_f32_out(y, ws + (x->type == LK_BF16 ? lk_tensor_numel(x) : 0));
    LK_CHECK(lk_layernorm_forward(c->dev, in, l->params[0].w, l->params[1].w, out, mean, rstd, rows,
                                  s->dim, s->eps));
    return lk_layer_store(c->dev, y, out);
}

static lk_status layernorm_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x,
                                    const lk_tensor *y, const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    layernorm *s = (layernorm *)l;
    int rows = x->shape.d[0] * rows_per_sample(l);
    const float *mean = l->saved, *rstd = mean + rows, *in;
    LK_CHECK(lk_layer_f32(c->dev, x, c->workspace, &in));
    return lk_layernorm_backward(c->dev, in, l->params[0].w, mean, rstd, dy->data, dx->data,
                                 l->params[0].g, l->params[1].g, rows, s->dim,
                                 c->replace_grads ? 0.0f : 1.0f);
}

static const lk_layer_vt layernorm_vt = {
    .cheap = 1,
    .type = "layernorm",
    .setup = layernorm_setup,
    .saved_bytes = layernorm_saved,
    .workspace_bytes = layernorm_workspace,
    .reads_bf16 = 1,
    .writes_bf16 = 1,
    .forward = layernorm_forward,
    .backward = layernorm_backward,
};

lk_layer *lk_layernorm(int dim, float eps)
{
    if (dim <= 0 || !(eps > 0.0f)) {
        LK_ERR(LK_ERR_ARG, "layernorm: dim must be positive and eps > 0 (dim=%d eps=%g)", dim,
               (double)eps);
        return NULL;
    }
    layernorm *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &layernorm_vt;
    s->dim = dim;
    s->eps = eps;
    return &s->base;
}
