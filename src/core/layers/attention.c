/* attention.c - causal multi-head self-attention over [T, C] per sample, as GPT-2's
 * CausalSelfAttention: qkv = x W_attn^T + b_attn ([T, 3C]: q, k, v side by side, head h
 * at columns h*hd of each), per head softmax(q k^T / sqrt(hd)) with a causal mask
 * (one fused, max-subtracted pass per row), times v, heads side by side again, then
 * y = att W_proj^T + b_proj. Parameter names follow GPT-2: c_attn.*, c_proj.*.
 *
 * The heads' products run head-major: qkv [B*T][3H][hd] is transposed once into
 * [3H][B*T][hd], so q, k and v of every (head, sample) pair are contiguous [T, hd]
 * matrices T*hd apart, and each product over all of them is ONE batched call of
 * H*B products (dense, as oneDNN's fast batched kernels and cuBLAS's strided batches
 * want them); the heads' outputs are transposed back to [B*T, C] for the projection.
 * Kept from forward to backward: q, k, v head-major, the probabilities [H*B][T][T]
 * and the heads' outputs token-major (in bf16 in a bf16 model: the products read them in
 * bf16 anyway, and the softmax's backward widens the probabilities). */
#include <math.h>

#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int dim, heads, T;
} attention;

/* In a bf16 model what is kept is stored in bf16 (the products read it so either way):
 * saved:  qkvh [3H][B*T][hd] | probabilities [H*B][T][T] | att [B*T][C]
 * ws, forward:  qkv [B*T][3C] (later the output, staged) | att_h [H][B*T][hd] |
 *               (bf16: the transposes' float32 staging [3C][B*T] | one head's scores [B][T][T])
 * ws, backward: datt [B*T][C], later dqkv [B*T][3C] | datt_h [H][B*T][hd] |
 *               dqkvh [3H][B*T][hd] | dp [H*B][T][T] | (bf16: one head's probabilities
 *               widened [B][T][T]; the softmax's gradient is then rounded over the saved
 *               probabilities, which the products read as they are) */
static size_t probs(const attention *s, int B) { return (size_t)B * s->heads * s->T * s->T; }
static size_t tokens(const attention *s, int B) { return (size_t)B * s->T * s->dim; } /* B*T*C */

static size_t att_saved(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const attention *s = (const attention *)l;
    return (4 * tokens(s, batch) + probs(s, batch)) * lk_dtype_size(l->compute);
}

static size_t att_workspace(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const attention *s = (const attention *)l;
    const size_t head = l->compute == LK_BF16 ? probs(s, batch) / (size_t)s->heads : 0;
    return (7 * tokens(s, batch) + probs(s, batch) + head) * sizeof(float);
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
    lk_dtype t;                /* how the saved tensors are stored (the layer's compute type) */
    void *qkvh, *p, *att;      /* saved */
    float *qkv, *att_h;        /* workspace, forward */
    float *stage, *scores;     /* workspace, forward: float32 before the saved tensors' rounding
                                  (bf16, scores one head at a time; else NULL: the saved tensors
                                  are written directly) */
    float *datt, *dqkv, *datt_h, *dqkvh, *dp; /* workspace, backward (datt and dqkv share) */
    float *p32;                /* workspace, backward: the probabilities in float32 (bf16: one
                                  head's) */
} att_plan;

static att_plan plan(const attention *s, int B, void *saved, void *ws)
{
    const size_t BTC = tokens(s, B), es = lk_dtype_size(s->base.compute);
    att_plan p = {.t = s->base.compute};
    char *sv = saved;
    p.qkvh = sv;
    p.p = sv ? sv + 3 * BTC * es : NULL;
    p.att = sv ? sv + (3 * BTC + probs(s, B)) * es : NULL;
    p.qkv = p.datt = p.dqkv = ws;
    p.att_h = p.qkv ? p.qkv + 3 * BTC : NULL;
    p.datt_h = p.att_h;
    p.dqkvh = p.datt_h ? p.datt_h + BTC : NULL;
    p.dp = p.dqkvh ? p.dqkvh + 3 * BTC : NULL;
    if (p.t == LK_BF16) {
        p.stage = p.dqkvh;
        p.scores = p.dp;
        p.p32 = p.dp ? p.dp + probs(s, B) : NULL;
    } else {
        p.p32 = p.p;
    }
    return p;
}

/* a saved tensor as a product's operand */
static lk_in kept(const att_plan *p, const void *x) { return (lk_in){x, p->t}; }

/* n float32 values computed at f (the staging, or the saved tensor itself) into a saved tensor */
static lk_status keep(lk_device *d, const att_plan *p, const float *f, void *saved, size_t n)
{
    if (p->t != LK_BF16) return LK_OK;
    return lk_cast_bf16_rne(d, f, saved, n);
}

/* where a saved tensor is computed in float32 */
static float *at(const att_plan *p, void *saved, float *staging) { return p->t == LK_BF16 ? staging : saved; }

static lk_status att_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    attention *s = (attention *)l;
    lk_device *d = c->dev;
    const int B = x->shape.d[0], T = s->T, C = s->dim, H = s->heads, hd = C / H, rows = B * T;
    const long th = (long)T * hd, tt = (long)T * T, BTC = (long)tokens(s, B);
    const size_t es = lk_dtype_size(l->compute);
    att_plan p = plan(s, B, l->saved, c->workspace);
    LK_CHECK(lk_gemm_ex(d, l->compute, 0, 1, rows, 3 * C, C, 1.0f, lk_tensor_in(x), C,
                        lk_layer_weights(l, &l->params[0]), C, 0.0f, p.qkv, 3 * C));
    LK_CHECK(lk_bias_add(d, p.qkv, l->params[1].w, rows, 3 * C, 1));
    float *f = at(&p, p.qkvh, p.stage);
    LK_CHECK(lk_transpose(d, p.qkv, f, 1, rows, 3 * H, hd)); /* -> [3H][B*T][hd] */
    LK_CHECK(keep(d, &p, f, p.qkvh, 3 * (size_t)BTC));
    const char *q = p.qkvh, *k = q + BTC * es, *v = k + BTC * es;
    /* scores of every (head, sample): q k^T, then the causal softmax; in bf16 a head at a
     * time in float32, each rounded into the saved probabilities */
    const int per = p.t == LK_BF16 ? B : H * B; /* (head, sample) pairs at a time */
    for (int h = 0; h < H * B; h += per) {
        const size_t at_h = (size_t)h * th * es, pt = (size_t)h * tt;
        f = p.t == LK_BF16 ? p.scores : (float *)p.p + pt;
        LK_CHECK(lk_gemm_batched_ex(d, l->compute, 0, 1, T, T, hd, 1.0f, kept(&p, q + at_h), hd, th,
                                    kept(&p, k + at_h), hd, th, 0.0f, f, T, tt, per));
        LK_CHECK(lk_softmax_causal_forward(d, f, per * T, T, 1.0f / sqrtf((float)hd)));
        LK_CHECK(keep(d, &p, f, (char *)p.p + pt * es, (size_t)per * tt));
    }
    LK_CHECK(lk_gemm_batched_ex(d, l->compute, 0, 0, T, hd, T, 1.0f, kept(&p, p.p), T, tt, kept(&p, v),
                                hd, th, 0.0f, p.att_h, hd, th, H * B));
    f = at(&p, p.att, p.stage);
    LK_CHECK(lk_transpose(d, p.att_h, f, 1, H, rows, hd)); /* -> [B*T][H][hd] */
    LK_CHECK(keep(d, &p, f, p.att, (size_t)BTC));
    float *out = lk_layer_f32_out(y, p.qkv); /* (qkv is consumed) */
    LK_CHECK(lk_gemm_ex(d, l->compute, 0, 1, rows, C, C, 1.0f, kept(&p, p.att), C,
                        lk_layer_weights(l, &l->params[2]), C, 0.0f, out, C));
    LK_CHECK(lk_bias_add(d, out, l->params[3].w, rows, C, 1));
    return lk_layer_store(d, y, out);
}

static lk_status att_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                              const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    attention *s = (attention *)l;
    lk_device *d = c->dev;
    const int B = x->shape.d[0], T = s->T, C = s->dim, H = s->heads, hd = C / H, rows = B * T;
    const long th = (long)T * hd, tt = (long)T * T, BTC = (long)tokens(s, B);
    const size_t es = lk_dtype_size(l->compute);
    const float beta = c->replace_grads ? 0.0f : 1.0f;
    att_plan p = plan(s, B, l->saved, c->workspace);
    const char *q = p.qkvh, *k = q + BTC * es, *v = k + BTC * es;
    float *dq = p.dqkvh, *dk = dq + BTC, *dv = dk + BTC;
    /* the output projection */
    LK_CHECK(lk_gemm_ex(d, l->compute, 1, 0, C, C, rows, 1.0f, lk_in_f32(dy->data), C, kept(&p, p.att), C,
                        beta, l->params[2].g, C));
    LK_CHECK(lk_bias_grad(d, l->params[3].g, dy->data, rows, C, 1, beta));
    LK_CHECK(lk_gemm_ex(d, l->compute, 0, 0, rows, C, C, 1.0f, lk_in_f32(dy->data), C,
                        lk_layer_weights(l, &l->params[2]), C, 0.0f, p.datt, C));
    LK_CHECK(lk_transpose(d, p.datt, p.datt_h, 1, rows, H, hd)); /* -> [H][B*T][hd] */
    /* dp = datt v^T, dv = p^T datt */
    LK_CHECK(lk_gemm_batched_ex(d, l->compute, 0, 1, T, T, hd, 1.0f, lk_in_f32(p.datt_h), hd, th,
                                kept(&p, v), hd, th, 0.0f, p.dp, T, tt, H * B));
    LK_CHECK(lk_gemm_batched_ex(d, l->compute, 1, 0, T, hd, T, 1.0f, kept(&p, p.p), T, tt,
                                lk_in_f32(p.datt_h), hd, th, 0.0f, dv, hd, th, H * B));
    /* through the softmax (and the 1/sqrt(hd) scale): dp becomes ds; in bf16 the saved
     * probabilities are widened a head at a time, and ds is rounded over them (p is read
     * no more), where the products below read it */
    const int per = p.t == LK_BF16 ? B : H * B;
    for (int h = 0; h < H * B; h += per) {
        const size_t pt = (size_t)h * tt;
        const float *p32 = (const float *)p.p32 + (p.t == LK_BF16 ? 0 : pt);
        if (p.t == LK_BF16)
            LK_CHECK(lk_widen_bf16(d, (const uint16_t *)p.p + pt, p.p32, (size_t)per * tt));
        LK_CHECK(lk_softmax_causal_backward(d, p32, p.dp + pt, per * T, T, 1.0f / sqrtf((float)hd)));
    }
    LK_CHECK(keep(d, &p, p.dp, p.p, probs(s, B)));
    const lk_in ds = p.t == LK_BF16 ? kept(&p, p.p) : lk_in_f32(p.dp);
    /* dq = ds k, dk = ds^T q */
    LK_CHECK(lk_gemm_batched_ex(d, l->compute, 0, 0, T, hd, T, 1.0f, ds, T, tt, kept(&p, k), hd, th, 0.0f,
                                dq, hd, th, H * B));
    LK_CHECK(lk_gemm_batched_ex(d, l->compute, 1, 0, T, hd, T, 1.0f, ds, T, tt, kept(&p, q), hd, th, 0.0f,
                                dk, hd, th, H * B));
    LK_CHECK(lk_transpose(d, p.dqkvh, p.dqkv, 1, 3 * H, rows, hd)); /* -> [B*T][3H][hd] */
    /* the input projection */
    LK_CHECK(lk_gemm_ex(d, l->compute, 1, 0, 3 * C, C, rows, 1.0f, lk_in_f32(p.dqkv), 3 * C,
                        lk_tensor_in(x), C, beta, l->params[0].g, C));
    LK_CHECK(lk_bias_grad(d, l->params[1].g, p.dqkv, rows, 3 * C, 1, beta));
    if (dx->data)
        LK_CHECK(lk_gemm_ex(d, l->compute, 0, 0, rows, C, 3 * C, 1.0f, lk_in_f32(p.dqkv), 3 * C,
                            lk_layer_weights(l, &l->params[0]), C, 0.0f, dx->data, C));
    return LK_OK;
}

/* the projections (T x C x 3C, T x C x C) and, as PaLM and llm.c count them, the scores
 * and their weighted sum over every (query, key) pair, masked or not (2 x T x T x C) */
static double att_flops(const lk_layer *l)
{
    const attention *s = (const attention *)l;
    const double T = s->T, C = s->dim;
    return 2.0 * (T * C * 4.0 * C + 2.0 * T * T * C);
}

static const lk_layer_vt attention_vt = {
    .type = "attention",
    .flops = att_flops,
    .setup = att_setup,
    .saved_bytes = att_saved,
    .workspace_bytes = att_workspace,
    .reads_bf16 = 1,
    .writes_bf16 = 1,
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
