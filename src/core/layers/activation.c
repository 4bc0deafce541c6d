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

static lk_status act_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    activation *s = (activation *)l;
    return lk_act_forward(c->dev, s->act, s->alpha, x, y);
}

static lk_status act_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                              const lk_tensor *dy, lk_tensor *dx)
{
    activation *s = (activation *)l;
    if (!dx->data) return LK_OK;
    return lk_act_backward(c->dev, s->act, s->alpha, x, y, dy, dx);
}

#define ACT_VT(id, nm) \
    static const lk_layer_vt id = {.type = nm, .setup = act_setup, .forward = act_forward, .backward = act_backward, \
                                   .cheap = 1}
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
