/* attention.c - causal multi-head self-attention over [T, C] per sample, as GPT-2's
 * CausalSelfAttention: qkv = x W_attn^T + b_attn ([T, 3C]: q, k, v side by side, head h
 * at columns h*hd of each), per head softmax(q k^T / sqrt(hd)) with a causal mask
 * (one fused, max-subtracted pass per row), times v, heads side by side again, then
 * y = att W_proj^T + b_proj. Parameter names follow GPT-2: c_attn.*, c_proj.*.
 *
 * Every head of a sample is one batched product (q, k and v are read in place with
 * row stride 3C, no transposes); the qkv rows, the probabilities [heads, T, T] and
 * the heads' outputs are kept from forward to backward. */
#include <math.h>

#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int dim, heads, T;
} attention;

/* saved: qkv [B][T][3C] | probabilities [B][heads][T][T] | att [B][T][C]
 * workspace: datt [B][T][C] | dqkv [B][T][3C] | dp [heads][T][T] */
static size_t probs_per_sample(const attention *s) { return (size_t)s->heads * s->T * s->T; }

static size_t att_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const attention *s = (const attention *)l;
    return (size_t)batch * ((size_t)4 * s->T * s->dim + probs_per_sample(s)) * sizeof(float);
}

static size_t att_workspace(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const attention *s = (const attention *)l;
    return ((size_t)batch * 4 * s->T * s->dim + probs_per_sample(s)) * sizeof(float);
}

static lk_status att_setup(lk_layer *l)
{
    attention *s = (attention *)l;
    if (l->in.ndim != 2 || l->in.d[1] != s->dim) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (attention, dim %d): expects [T, %d] per sample, got %s",
                      l->index, s->dim, s->dim, lk_shape_str(&l->in, b, sizeof b));
    }
    s->T = l->in.d[0];
    l->out = l->in;
    const int C = s->dim;
    lk_layer_add_param(l, "c_attn.weight", 2, (int[]){3 * C, C}, C, 3 * C, 0);
    lk_layer_add_param(l, "c_attn.bias", 1, (int[]){3 * C}, C, 3 * C, 1);
    lk_layer_add_param(l, "c_proj.weight", 2, (int[]){C, C}, C, C, 0);
    lk_layer_add_param(l, "c_proj.bias", 1, &s->dim, C, C, 1);
    return LK_OK;
}

typedef struct {
    float *qkv, *p, *att;    /* saved */
    float *datt, *dqkv, *dp; /* workspace */
} att_plan;

static att_plan plan(const attention *s, int B, void *saved, void *ws)
{
    const size_t TC = (size_t)s->T * s->dim;
    att_plan p;
    p.qkv = saved;
    p.p = p.qkv + (size_t)B * 3 * TC;
    p.att = p.p + (size_t)B * probs_per_sample(s);
    p.datt = ws;
    p.dqkv = p.datt ? p.datt + (size_t)B * TC : NULL;
    p.dp = p.dqkv ? p.dqkv + (size_t)B * 3 * TC : NULL;
    return p;
}

static lk_status att_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    attention *s = (attention *)l;
    lk_device *d = c->dev;
    const int B = x->shape.d[0], T = s->T, C = s->dim, H = s->heads, hd = C / H, rows = B * T;
    const long tt = (long)T * T;
    att_plan p = plan(s, B, l->saved, c->workspace);
    LK_CHECK(lk_gemm(d, 0, 1, rows, 3 * C, C, 1.0f, x->data, C, l->params[0].w, C, 0.0f, p.qkv, 3 * C));
    LK_CHECK(lk_bias_add(d, p.qkv, l->params[1].w, rows, 3 * C, 1));
    for (int b = 0; b < B; b++) { /* scores of every head: q k^T */
        const float *q = p.qkv + (size_t)b * T * 3 * C;
        LK_CHECK(lk_gemm_batched(d, 0, 1, T, T, hd, 1.0f, q, 3 * C, hd, q + C, 3 * C, hd, 0.0f,
                                 p.p + (size_t)b * H * tt, T, tt, H));
    }
    LK_CHECK(lk_softmax_causal_forward(d, p.p, B * H * T, T, 1.0f / sqrtf((float)hd)));
    for (int b = 0; b < B; b++) { /* att = p v, each head into its columns */
        const float *v = p.qkv + (size_t)b * T * 3 * C + 2 * C;
        LK_CHECK(lk_gemm_batched(d, 0, 0, T, hd, T, 1.0f, p.p + (size_t)b * H * tt, T, tt, v, 3 * C,
                                 hd, 0.0f, p.att + (size_t)b * T * C, C, hd, H));
    }
    LK_CHECK(lk_gemm(d, 0, 1, rows, C, C, 1.0f, p.att, C, l->params[2].w, C, 0.0f, y->data, C));
    return lk_bias_add(d, y->data, l->params[3].w, rows, C, 1);
}

static lk_status att_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                              const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    attention *s = (attention *)l;
    lk_device *d = c->dev;
    const int B = x->shape.d[0], T = s->T, C = s->dim, H = s->heads, hd = C / H, rows = B * T;
    const long tt = (long)T * T;
    const float beta = c->replace_grads ? 0.0f : 1.0f;
    att_plan p = plan(s, B, l->saved, c->workspace);
    /* the output projection */
    LK_CHECK(lk_gemm(d, 1, 0, C, C, rows, 1.0f, dy->data, C, p.att, C, beta, l->params[2].g, C));
    LK_CHECK(lk_bias_grad(d, l->params[3].g, dy->data, rows, C, 1, beta));
    LK_CHECK(lk_gemm(d, 0, 0, rows, C, C, 1.0f, dy->data, C, l->params[2].w, C, 0.0f, p.datt, C));
    for (int b = 0; b < B; b++) {
        const float *q = p.qkv + (size_t)b * T * 3 * C, *k = q + C, *v = q + 2 * C;
        const float *pb = p.p + (size_t)b * H * tt, *da = p.datt + (size_t)b * T * C;
        float *dq = p.dqkv + (size_t)b * T * 3 * C, *dk = dq + C, *dv = dq + 2 * C;
        /* dp = datt v^T, dv = p^T datt */
        LK_CHECK(lk_gemm_batched(d, 0, 1, T, T, hd, 1.0f, da, C, hd, v, 3 * C, hd, 0.0f, p.dp, T, tt, H));
        LK_CHECK(lk_gemm_batched(d, 1, 0, T, hd, T, 1.0f, pb, T, tt, da, C, hd, 0.0f, dv, 3 * C, hd, H));
        /* through the softmax (and the 1/sqrt(hd) scale): dp becomes ds */
        LK_CHECK(lk_softmax_causal_backward(d, pb, p.dp, H * T, T, 1.0f / sqrtf((float)hd)));
        /* dq = ds k, dk = ds^T q */
        LK_CHECK(lk_gemm_batched(d, 0, 0, T, hd, T, 1.0f, p.dp, T, tt, k, 3 * C, hd, 0.0f, dq, 3 * C, hd, H));
        LK_CHECK(lk_gemm_batched(d, 1, 0, T, hd, T, 1.0f, p.dp, T, tt, q, 3 * C, hd, 0.0f, dk, 3 * C, hd, H));
    }
    /* the input projection */
    LK_CHECK(lk_gemm(d, 1, 0, 3 * C, C, rows, 1.0f, p.dqkv, 3 * C, x->data, C, beta, l->params[0].g, C));
    LK_CHECK(lk_bias_grad(d, l->params[1].g, p.dqkv, rows, 3 * C, 1, beta));
    if (dx->data)
        LK_CHECK(lk_gemm(d, 0, 0, rows, C, 3 * C, 1.0f, p.dqkv, 3 * C, l->params[0].w, C, 0.0f,
                         dx->data, C));
    return LK_OK;
}

static const lk_layer_vt attention_vt = {
    .type = "attention",
    .setup = att_setup,
    .saved_bytes = att_saved,
    .workspace_bytes = att_workspace,
    .forward = att_forward,
    .backward = att_backward,
};

lk_layer *lk_attention(int dim, int heads)
{
    if (dim <= 0 || heads <= 0 || dim % heads) {
        LK_ERR(LK_ERR_ARG, "attention: dim %d must be a positive multiple of heads %d", dim, heads);
        return NULL;
    }
    attention *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &attention_vt;
    s->dim = dim;
    s->heads = heads;
    return &s->base;
}
