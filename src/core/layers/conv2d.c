/* conv2d.c - 2-D convolution over NCHW, weights [out][in][k][k] as torch.nn.Conv2d. */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int cin, cout, k, stride, pad, bias;
} conv2d;

static lk_conv2d_desc conv_desc(const lk_layer *l, int batch)
{
    const conv2d *s = (const conv2d *)l;
    lk_conv2d_desc cd = {.n = batch, .c = l->in.d[0], .h = l->in.d[1], .w = l->in.d[2],
                         .k = s->cout, .kh = s->k, .kw = s->k, .stride_h = s->stride,
                         .stride_w = s->stride, .pad_h = s->pad, .pad_w = s->pad,
                         .compute = l->compute,
                         .f32_weights = l->compute == LK_BF16 && lk_layer_weights(l, &l->params[0]).type == LK_F32};
    lk_conv2d_desc_init(&cd); /* checked once in setup */
    return cd;
}

static lk_status conv_setup(lk_layer *l)
{
    conv2d *s = (conv2d *)l;
    char b[64];
    if (l->in.ndim != 3 || l->in.d[0] != s->cin)
        return LK_ERR(LK_ERR_SHAPE, "layer %d (conv2d %d->%d): expects input [%d, H, W], got %s",
                      l->index, s->cin, s->cout, s->cin, lk_shape_str(&l->in, b, sizeof b));
    lk_conv2d_desc cd = {.n = 1, .c = l->in.d[0], .h = l->in.d[1], .w = l->in.d[2], .k = s->cout,
                         .kh = s->k, .kw = s->k, .stride_h = s->stride, .stride_w = s->stride,
                         .pad_h = s->pad, .pad_w = s->pad};
    lk_status st = lk_conv2d_desc_init(&cd);
    if (st != LK_OK) return LK_ERR(st, "layer %d: %s", l->index, lk_error_message());
    int out[3] = {s->cout, cd.oh, cd.ow};
    l->out = lk_shape_make(3, out);
    int wshape[4] = {s->cout, s->cin, s->k, s->k};
    int rf = s->k * s->k;
    lk_layer_add_param(l, "weight", 4, wshape, s->cin * rf, s->cout * rf, 0);
    if (s->bias) lk_layer_add_param(l, "bias", 1, &s->cout, s->cin * rf, s->cout * rf, 1);
    return LK_OK;
}

static size_t conv_saved(const lk_layer *l, lk_device *d, int batch)
{
    lk_conv2d_desc cd = conv_desc(l, batch);
    return lk_conv2d_saved(d, &cd);
}

static size_t conv_workspace(const lk_layer *l, lk_device *d, int batch)
{
    lk_conv2d_desc cd = conv_desc(l, batch);
    return lk_conv2d_workspace(d, &cd);
}

static lk_status conv_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    conv2d *s = (conv2d *)l;
    lk_conv2d_desc cd = conv_desc(l, x->shape.d[0]);
    return lk_conv2d_forward(c->dev, &cd, x->data, lk_layer_weights(l, &l->params[0]).p, s->bias ? l->params[1].w : NULL,
                             y->data, l->saved, c->workspace);
}

static lk_status conv_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                               const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    conv2d *s = (conv2d *)l;
    lk_conv2d_desc cd = conv_desc(l, x->shape.d[0]);
    return lk_conv2d_backward(c->dev, &cd, x->data, lk_layer_weights(l, &l->params[0]).p, dy->data, dx->data,
                              l->params[0].g, s->bias ? l->params[1].g : NULL,
                              c->replace_grads ? 0.0f : 1.0f, l->saved, c->workspace);
}

static double conv_flops(const lk_layer *l)
{
    const conv2d *s = (const conv2d *)l;
    return 2.0 * (double)lk_shape_numel(&l->out) * s->cin * s->k * s->k;
}

static const lk_layer_vt conv_vt = {
    .type = "conv2d",
    .flops = conv_flops,
    .setup = conv_setup,
    .saved_bytes = conv_saved,
    .workspace_bytes = conv_workspace,
    .forward = conv_forward,
    .backward = conv_backward,
};

lk_layer *lk_conv2d(int in_channels, int out_channels, int kernel, int stride, int padding, int bias)
{
    if (in_channels <= 0 || out_channels <= 0 || kernel <= 0 || stride <= 0 || padding < 0) {
        LK_ERR(LK_ERR_ARG, "conv2d: bad configuration (in=%d out=%d kernel=%d stride=%d pad=%d)",
               in_channels, out_channels, kernel, stride, padding);
        return NULL;
    }
    conv2d *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &conv_vt;
    s->cin = in_channels;
    s->cout = out_channels;
    s->k = kernel;
    s->stride = stride;
    s->pad = padding;
    s->bias = bias;
    return &s->base;
}
