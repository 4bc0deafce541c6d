/* linear.c - y = x W^T + b with W [out][in], as torch.nn.Linear: over the last axis
 * of its input ([in], or [T, in] for sequences: every row alike). */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int in, out, bias;
} linear;

static lk_status linear_setup(lk_layer *l)
{
    linear *s = (linear *)l;
    if (l->in.ndim < 1 || l->in.d[l->in.ndim - 1] != s->in) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (linear %d->%d): expects input [%d] (or [..., %d]) per sample, got %s",
                      l->index, s->in, s->out, s->in, s->in, lk_shape_str(&l->in, b, sizeof b));
    }
    l->out = l->in;
    l->out.d[l->in.ndim - 1] = s->out;
    int wshape[2] = {s->out, s->in};
    lk_layer_add_param(l, "weight", 2, wshape, s->in, s->out, 0);
    if (s->bias) lk_layer_add_param(l, "bias", 1, &s->out, s->in, s->out, 1);
    return LK_OK;
}

static int rows(const linear *s, const lk_tensor *x) { return (int)(lk_tensor_numel(x) / (size_t)s->in); }

/* an output stored in bf16 is computed into the workspace first */
static size_t linear_workspace(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    return lk_layer_staging(l->out_type, (size_t)batch * lk_shape_numel(&l->out));
}

static lk_status linear_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    linear *s = (linear *)l;
    const int B = rows(s, x);
    float *out = lk_layer_f32_out(y, c->workspace);
    LK_CHECK(lk_gemm_ex(c->dev, l->compute, 0, 1, B, s->out, s->in, 1.0f, lk_tensor_in(x), s->in,
                        lk_layer_weights(l, &l->params[0]), s->in, 0.0f, out, s->out));
    if (s->bias) LK_CHECK(lk_bias_add(c->dev, out, l->params[1].w, B, s->out, 1));
    return lk_layer_store(c->dev, y, out);
}

static lk_status linear_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                                 const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    linear *s = (linear *)l;
    const int B = rows(s, x);
    const float beta = c->replace_grads ? 0.0f : 1.0f;
    LK_CHECK(lk_gemm_ex(c->dev, l->compute, 1, 0, s->out, s->in, B, 1.0f, lk_in_f32(dy->data), s->out,
                        lk_tensor_in(x), s->in, beta, l->params[0].g, s->in));
    if (s->bias) LK_CHECK(lk_bias_grad(c->dev, l->params[1].g, dy->data, B, s->out, 1, beta));
    if (dx->data)
        LK_CHECK(lk_gemm_ex(c->dev, l->compute, 0, 0, B, s->in, s->out, 1.0f, lk_in_f32(dy->data),
                            s->out, lk_layer_weights(l, &l->params[0]), s->in, 0.0f, dx->data, s->in));
    return LK_OK;
}

static double linear_flops(const lk_layer *l)
{
    const linear *s = (const linear *)l;
    return 2.0 * (double)lk_shape_numel(&l->in) * s->out; /* rows x in x out */
}

static const lk_layer_vt linear_vt = {
    .type = "linear",
    .flops = linear_flops,
    .setup = linear_setup,
    .workspace_bytes = linear_workspace,
    .reads_bf16 = 1,
    .writes_bf16 = 1,
    .forward = linear_forward,
    .backward = linear_backward,
};

lk_layer *lk_linear(int in_features, int out_features, int bias)
{
    if (in_features <= 0 || out_features <= 0) {
        LK_ERR(LK_ERR_ARG, "linear: features must be positive (in=%d out=%d)", in_features,
               out_features);
        return NULL;
    }
    linear *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &linear_vt;
    s->in = in_features;
    s->out = out_features;
    s->bias = bias;
    return &s->base;
}
