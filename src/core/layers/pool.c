/* pool.c - max and average 2-D pooling (torch.nn.MaxPool2d / AvgPool2d). */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int k, stride, pad, is_max;
} pool2d;

static lk_pool2d_desc pool_desc(const lk_layer *l, int batch)
{
    const pool2d *s = (const pool2d *)l;
    lk_pool2d_desc pd = {.n = batch, .c = l->in.d[0], .h = l->in.d[1], .w = l->in.d[2],
                         .kh = s->k, .kw = s->k, .stride_h = s->stride, .stride_w = s->stride,
                         .pad_h = s->pad, .pad_w = s->pad, .is_max = s->is_max};
    lk_pool2d_desc_init(&pd); /* checked once in setup */
    return pd;
}

static lk_status pool_setup(lk_layer *l)
{
    char b[64];
    if (l->in.ndim != 3)
        return LK_ERR(LK_ERR_SHAPE, "layer %d (%s): expects input [C, H, W], got %s", l->index,
                      l->vt->type, lk_shape_str(&l->in, b, sizeof b));
    lk_pool2d_desc pd = pool_desc(l, 1);
    lk_status st = lk_pool2d_desc_init(&pd);
    if (st != LK_OK) return LK_ERR(st, "layer %d: %s", l->index, lk_error_message());
    int out[3] = {pd.c, pd.oh, pd.ow};
    l->out = lk_shape_make(3, out);
    return LK_OK;
}

static size_t pool_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const pool2d *s = (const pool2d *)l;
    return s->is_max ? (size_t)batch * lk_shape_numel(&l->out) * sizeof(int32_t) : 0;
}

static lk_status pool_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    lk_pool2d_desc pd = pool_desc(l, x->shape.d[0]);
    return lk_pool2d_forward(c->dev, &pd, x->data, y->data, l->saved);
}

static lk_status pool_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                               const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    if (!dx->data) return LK_OK;
    lk_pool2d_desc pd = pool_desc(l, x->shape.d[0]);
    return lk_pool2d_backward(c->dev, &pd, dy->data, l->saved, dx->data);
}

static const lk_layer_vt maxpool_vt = {
    .type = "maxpool2d",
    .setup = pool_setup,
    .saved_bytes = pool_saved,
    .forward = pool_forward,
    .backward = pool_backward,
};
static const lk_layer_vt avgpool_vt = {
    .type = "avgpool2d",
    .setup = pool_setup,
    .saved_bytes = pool_saved,
    .forward = pool_forward,
    .backward = pool_backward,
};

static lk_layer *pool_new(const lk_layer_vt *vt, int is_max, int kernel, int stride, int padding)
{
    if (stride <= 0) stride = kernel; /* PyTorch: stride defaults to the kernel */
    if (kernel <= 0 || padding < 0 || 2 * padding > kernel) {
        LK_ERR(LK_ERR_ARG, "%s: bad configuration (kernel=%d stride=%d pad=%d)", vt->type, kernel,
               stride, padding);
        return NULL;
    }
    pool2d *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = vt;
    s->k = kernel;
    s->stride = stride;
    s->pad = padding;
    s->is_max = is_max;
    return &s->base;
}

lk_layer *lk_maxpool2d(int kernel, int stride, int padding)
{
    return pool_new(&maxpool_vt, 1, kernel, stride, padding);
}

lk_layer *lk_avgpool2d(int kernel, int stride, int padding)
{
    return pool_new(&avgpool_vt, 0, kernel, stride, padding);
}
