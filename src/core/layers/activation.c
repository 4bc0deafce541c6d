/* activation.c - element-wise activations (ReLU, LeakyReLU, sigmoid, tanh, GELU in its
 * exact and tanh forms). */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    lk_act act;
    float alpha;
} activation;

static lk_status act_setup(lk_layer *l)
{
    l->out = l->in;
    return LK_OK;
}

/* bf16 input and output are staged in float32 in the workspace: [x | y] */
static size_t act_workspace(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const size_t n = (size_t)batch * lk_shape_numel(&l->in);
    return lk_layer_staging(l->in_type, n) + lk_layer_staging(l->out_type, n);
}

/* x and y as float32 tensors, staged where stored in bf16 - of those read only the ones
 * wanted (read_x, read_y); y, when not read, is where forward computes its output */
static lk_status views(const lk_ctx *c, const lk_tensor *x, const lk_tensor *y, int read_x, int read_y,
                       lk_tensor *fx, lk_tensor *fy)
{
    float *ws = c->workspace, *ybuf = ws + (x->type == LK_BF16 ? lk_tensor_numel(x) : 0);
    const float *p = x->data;
    *fx = *x, *fy = *y;
    fx->type = fy->type = LK_F32;
    if (read_x) LK_CHECK(lk_layer_f32(c->dev, x, ws, &p));
    fx->data = (float *)p;
    p = lk_layer_f32_out(y, ybuf);
    if (read_y) LK_CHECK(lk_layer_f32(c->dev, y, ybuf, &p));
    fy->data = (float *)p;
    return LK_OK;
}

static lk_status act_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    activation *s = (activation *)l;
    lk_tensor fx, fy;
    LK_CHECK(views(c, x, y, 1, 0, &fx, &fy));
    LK_CHECK(lk_act_forward(c->dev, s->act, s->alpha, &fx, &fy));
    return lk_layer_store(c->dev, y, fy.data);
}

/* only the operand the rule reads is widened (lk_act_reads_output) */
static lk_status act_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                              const lk_tensor *dy, lk_tensor *dx)
{
    activation *s = (activation *)l;
    if (!dx->data) return LK_OK;
    const int out = lk_act_reads_output(s->act), any = s->act != LK_ACT_IDENTITY;
    lk_tensor fx, fy;
    LK_CHECK(views(c, x, y, any && !out, any && out, &fx, &fy));
    return lk_act_backward(c->dev, s->act, s->alpha, &fx, &fy, dy, dx);
}

#define ACT_VT(id, nm) \
    static const lk_layer_vt id = {.type = nm, .setup = act_setup, .workspace_bytes = act_workspace, \
                                   .forward = act_forward, .backward = act_backward, .cheap = 1, \
                                   .reads_bf16 = 1, .writes_bf16 = 1}
ACT_VT(identity_vt, "identity");
ACT_VT(relu_vt, "relu");
ACT_VT(leaky_vt, "leaky_relu");
ACT_VT(sigmoid_vt, "sigmoid");
ACT_VT(tanh_vt, "tanh");
ACT_VT(gelu_vt, "gelu");
ACT_VT(gelu_tanh_vt, "gelu_tanh");

lk_layer *lk_activation(lk_act act, float alpha)
{
    static const lk_layer_vt *const vts[] = {
        [LK_ACT_IDENTITY] = &identity_vt, [LK_ACT_RELU] = &relu_vt,   [LK_ACT_LEAKY_RELU] = &leaky_vt,
        [LK_ACT_SIGMOID] = &sigmoid_vt,   [LK_ACT_TANH] = &tanh_vt,   [LK_ACT_GELU] = &gelu_vt,
        [LK_ACT_GELU_TANH] = &gelu_tanh_vt,
    };
    if ((int)act < 0 || act >= LK_ACT_COUNT) {
        LK_ERR(LK_ERR_ARG, "unknown activation %d", (int)act);
        return NULL;
    }
    activation *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = vts[act];
    s->act = act;
    s->alpha = alpha;
    return &s->base;
}
