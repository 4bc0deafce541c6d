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
    const linear *s = (const linear *)l;
    size_t norms = l->sample_norms && lk_shape_numel(&l->in) > (size_t)s->in /* (a sequence) */
                       ? ((size_t)s->out * s->in + (size_t)s->out + 1) * sizeof(float)
                       : 0;
    return LK_MAX(lk_layer_staging(l->out_type, (size_t)batch * lk_shape_numel(&l->out)), norms);
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

/* Per-sample gradient norms. One row per sample: |dy_i x_i^T|^2 = |x_i|^2 |dy_i|^2, never formed.
 * Rows of a sequence (T per sample): sample i's gradient is dy_i^T x_i, summed over its T rows,
 * so it is formed, one sample at a time, in the workspace (out x in, then the bias's). */
static lk_status linear_sqnorms(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *dy, float *sq)
{
    linear *s = (linear *)l;
    const int n = x->shape.d[0], T = rows(s, x) / LK_MAX(n, 1);
    if (x->type != LK_F32 || dy->type != LK_F32)
        return LK_ERR(LK_ERR_ARG, "layer %d (linear): per-sample norms take float32 activations", l->index);
    if (T == 1) return lk_ghost_norm(c->dev, x->data, dy->data, n, s->in, s->out, s->bias, sq);
    float *g = c->workspace, *gb = g + (size_t)s->out * s->in, *t = gb + s->out;
    for (int i = 0; i < n; i++) {
        const float *xi = x->data + (size_t)i * T * s->in, *di = dy->data + (size_t)i * T * s->out;
        LK_CHECK(lk_gemm(c->dev, 1, 0, s->out, s->in, T, 1.0f, di, s->out, xi, s->in, 0.0f, g, s->in));
        LK_CHECK(lk_sumsq(c->dev, g, (size_t)s->out * s->in, t));
        LK_CHECK(lk_axpy(c->dev, 1.0f, t, sq + i, 1));
        if (!s->bias) continue;
        LK_CHECK(lk_bias_grad(c->dev, gb, di, T, s->out, 1, 0.0f));
        LK_CHECK(lk_sumsq(c->dev, gb, (size_t)s->out, t));
        LK_CHECK(lk_axpy(c->dev, 1.0f, t, sq + i, 1));
    }
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
    .sample_sqnorms = linear_sqnorms,
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
