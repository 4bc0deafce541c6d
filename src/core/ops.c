/* ops.c - argument checks, then dispatch through the device's backend. */
#include "ops.h"

#include <math.h>

#define NEED(cond, ...)                                       \
    do {                                                      \
        if (!(cond)) return LK_ERR(LK_ERR_ARG, __VA_ARGS__);  \
    } while (0)

/* Dispatches a compute (or copy) entry, except while the device plans: then the
 * arguments are still checked, but nothing runs (see lk_model_build's dry run). */
#define RUN(d, entry, ...)                                   \
    do {                                                     \
        if (!(d)->planning) (d)->ops->entry((d), __VA_ARGS__); \
    } while (0)

void *lk_dev_alloc(lk_device *d, size_t bytes) { return d->ops->alloc(d, bytes); }
void lk_dev_free(lk_device *d, void *p)
{
    if (p) d->ops->free(d, p);
}
void lk_copy_to_device(lk_device *d, void *dst, const void *src, size_t bytes)
{
    if (bytes) RUN(d, copy_h2d, dst, src, bytes);
}
void lk_copy_to_host(lk_device *d, void *dst, const void *src, size_t bytes)
{
    if (bytes) RUN(d, copy_d2h, dst, src, bytes);
}
void lk_copy_on_device(lk_device *d, void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) RUN(d, copy_d2d, dst, src, bytes);
}
void lk_zero(lk_device *d, void *p, size_t bytes)
{
    if (bytes) RUN(d, memset0, p, bytes);
}
void lk_sync(lk_device *d) { d->ops->sync(d); }
lk_status lk_device_status(lk_device *d) { return d->ops->status(d); }

float lk_read_scalar(lk_device *d, const float *p)
{
    float v = 0.0f;
    RUN(d, copy_d2h, &v, p, sizeof v);
    return v;
}

/* A product met while the device plans goes to the backend's gemm_plan, if any. */
static lk_status gemm_plan(lk_device *d, const lk_gemm_desc *g)
{
    return d->ops->gemm_plan ? d->ops->gemm_plan(d, g) : LK_OK;
}

static lk_status gemm_check(const char *op, const lk_gemm_desc *g, const void *a, const void *b,
                            const float *c)
{
    NEED(g->m > 0 && g->n > 0 && g->k > 0, "%s: dimensions must be positive (m=%d n=%d k=%d)", op,
         g->m, g->n, g->k);
    NEED(a && b && c, "%s: null matrix", op);
    NEED(g->lda >= (g->trans_a ? g->m : g->k) && g->ldb >= (g->trans_b ? g->k : g->n) && g->ldc >= g->n,
         "%s: leading dimension too small (lda=%d ldb=%d ldc=%d for m=%d n=%d k=%d)", op, g->lda,
         g->ldb, g->ldc, g->m, g->n, g->k);
    NEED(g->count >= 0 && g->stride_a >= 0 && g->stride_b >= 0 && g->stride_c >= 0,
         "%s: negative count or stride", op);
    NEED((g->compute == LK_F32 || g->compute == LK_BF16) && (g->a_type == LK_F32 || g->a_type == LK_BF16) &&
             (g->b_type == LK_F32 || g->b_type == LK_BF16),
         "%s: unknown storage or compute type", op);
    NEED(g->compute == LK_BF16 || (g->a_type == LK_F32 && g->b_type == LK_F32),
         "%s: a bf16 operand needs bf16 compute", op);
    return LK_OK;
}

lk_status lk_matmul(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *c)
{
    LK_CHECK(gemm_check(g->count == 1 ? "gemm" : "gemm_batched", g, a, b, c));
    if (!g->count) return LK_OK;
    if (d->planning) return gemm_plan(d, g);
    d->ops->matmul(d, g, a, b, c);
    return LK_OK;
}

lk_status lk_gemm(lk_device *d, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    return lk_gemm_ex(d, LK_F32, ta, tb, m, n, k, alpha, lk_in_f32(a), lda, lk_in_f32(b), ldb, beta, c,
                      ldc);
}

lk_status lk_gemm_ex(lk_device *d, lk_dtype compute, int ta, int tb, int m, int n, int k,
                     float alpha, lk_in a, int lda, lk_in b, int ldb, float beta, float *c, int ldc)
{
    lk_gemm_desc g = {ta, tb, m, n, k, lda, ldb, ldc, 1, 0, 0, 0, alpha, beta, compute, a.type, b.type};
    return lk_matmul(d, &g, a.p, b.p, c);
}

lk_status lk_gemm_batched_ex(lk_device *d, lk_dtype compute, int ta, int tb, int m, int n, int k,
                             float alpha, lk_in a, int lda, long sa, lk_in b, int ldb, long sb,
                             float beta, float *c, int ldc, long sc, int count)
{
    lk_gemm_desc g = {ta, tb, m, n, k, lda, ldb, ldc, count, sa, sb, sc, alpha, beta, compute,
                      a.type, b.type};
    return lk_matmul(d, &g, a.p, b.p, c);
}

lk_status lk_bias_add(lk_device *d, float *y, const float *b, int outer, int c, int inner)
{
    NEED(y && b && outer >= 0 && c > 0 && inner > 0, "bias_add: bad arguments");
    if (outer) RUN(d, bias_add, y, b, outer, c, inner);
    return LK_OK;
}

lk_status lk_bias_grad(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                       float beta)
{
    NEED(db && dy && outer >= 0 && c > 0 && inner > 0, "bias_grad: bad arguments");
    NEED(beta == 0.0f || beta == 1.0f, "bias_grad: beta must be 0 or 1");
    if (outer) RUN(d, bias_grad, db, dy, outer, c, inner, beta);
    else if (beta == 0.0f) RUN(d, memset0, db, (size_t)c * sizeof(float));
    return LK_OK;
}

const char *lk_act_name(lk_act act)
{
    switch (act) {
    case LK_ACT_IDENTITY: return "identity";
    case LK_ACT_RELU: return "relu";
    case LK_ACT_LEAKY_RELU: return "leaky_relu";
    case LK_ACT_SIGMOID: return "sigmoid";
    case LK_ACT_TANH: return "tanh";
    case LK_ACT_GELU: return "gelu";
    case LK_ACT_GELU_TANH: return "gelu_tanh";
    case LK_ACT_COUNT: break;
    }
    return "?";
}

int lk_act_reads_output(lk_act act) { return act == LK_ACT_SIGMOID || act == LK_ACT_TANH; }

static lk_status same_numel(const char *op, const lk_tensor *a, const lk_tensor *b)
{
    if (lk_tensor_numel(a) != lk_tensor_numel(b)) {
        char sa[64], sb[64];
        return LK_ERR(LK_ERR_SHAPE, "%s: shapes %s and %s differ in size", op,
                      lk_shape_str(&a->shape, sa, sizeof sa), lk_shape_str(&b->shape, sb, sizeof sb));
    }
    return LK_OK;
}

lk_status lk_act_forward(lk_device *d, lk_act act, float alpha, const lk_tensor *x, lk_tensor *y)
{
    LK_CHECK(same_numel(lk_act_name(act), x, y));
    RUN(d, act_forward, act, alpha, x->data, y->data, lk_tensor_numel(x));
    return LK_OK;
}

lk_status lk_act_backward(lk_device *d, lk_act act, float alpha, const lk_tensor *x,
                          const lk_tensor *y, const lk_tensor *dy, lk_tensor *dx)
{
    LK_CHECK(same_numel(lk_act_name(act), x, y));
    LK_CHECK(same_numel(lk_act_name(act), dy, dx));
    LK_CHECK(same_numel(lk_act_name(act), x, dx));
    RUN(d, act_backward, act, alpha, x->data, y->data, dy->data, dx->data, lk_tensor_numel(x));
    return LK_OK;
}

static int out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

lk_status lk_conv2d_desc_init(lk_conv2d_desc *cd)
{
    NEED(cd->n >= 0 && cd->c > 0 && cd->h > 0 && cd->w > 0 && cd->k > 0 && cd->kh > 0 && cd->kw > 0,
         "conv2d: bad shape (c=%d h=%d w=%d k=%d kernel %dx%d)", cd->c, cd->h, cd->w, cd->k,
         cd->kh, cd->kw);
    NEED(cd->stride_h > 0 && cd->stride_w > 0 && cd->pad_h >= 0 && cd->pad_w >= 0,
         "conv2d: stride must be positive and padding non-negative");
    NEED(cd->h + 2 * cd->pad_h >= cd->kh && cd->w + 2 * cd->pad_w >= cd->kw,
         "conv2d: kernel %dx%d larger than padded input %dx%d", cd->kh, cd->kw,
         cd->h + 2 * cd->pad_h, cd->w + 2 * cd->pad_w);
    cd->oh = out_size(cd->h, cd->kh, cd->stride_h, cd->pad_h);
    cd->ow = out_size(cd->w, cd->kw, cd->stride_w, cd->pad_w);
    return LK_OK;
}

lk_status lk_pool2d_desc_init(lk_pool2d_desc *pd)
{
    NEED(pd->n >= 0 && pd->c > 0 && pd->h > 0 && pd->w > 0 && pd->kh > 0 && pd->kw > 0,
         "pool2d: bad shape (c=%d h=%d w=%d kernel %dx%d)", pd->c, pd->h, pd->w, pd->kh, pd->kw);
    NEED(pd->stride_h > 0 && pd->stride_w > 0 && pd->pad_h >= 0 && pd->pad_w >= 0,
         "pool2d: stride must be positive and padding non-negative");
    NEED(2 * pd->pad_h <= pd->kh && 2 * pd->pad_w <= pd->kw,
         "pool2d: padding must be at most half the kernel");
    NEED(pd->h + 2 * pd->pad_h >= pd->kh && pd->w + 2 * pd->pad_w >= pd->kw,
         "pool2d: kernel %dx%d larger than padded input %dx%d", pd->kh, pd->kw,
         pd->h + 2 * pd->pad_h, pd->w + 2 * pd->pad_w);
    pd->oh = out_size(pd->h, pd->kh, pd->stride_h, pd->pad_h);
    pd->ow = out_size(pd->w, pd->kw, pd->stride_w, pd->pad_w);
    return LK_OK;
}

size_t lk_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd)
{
    return d->ops->conv2d_saved(d, cd);
}

size_t lk_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd)
{
    return d->ops->conv2d_workspace(d, cd);
}

lk_status lk_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *b, float *y, void *saved, void *ws)
{
    NEED(x && w && y, "conv2d_forward: null tensor");
    NEED(cd->oh > 0 && cd->ow > 0, "conv2d_forward: descriptor not initialised");
    NEED(cd->compute == LK_F32 || cd->compute == LK_BF16, "conv2d_forward: unknown compute type");
    NEED(!cd->f32_weights || (cd->compute == LK_BF16 && d->kind == LK_DEV_CPU),
         "conv2d_forward: float32 weights in a bf16 convolution are read only on the CPU");
    if (cd->n) RUN(d, conv2d_forward, cd, x, w, b, y, saved, ws);
    return LK_OK;
}

lk_status lk_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x,
                             const void *w, const float *dy, float *dx, float *dw, float *db,
                             float beta, void *saved, void *ws)
{
    NEED(x && w && dy && dw, "conv2d_backward: null tensor");
    NEED(beta == 0.0f || beta == 1.0f, "conv2d_backward: beta must be 0 or 1");
    NEED(cd->oh > 0 && cd->ow > 0, "conv2d_backward: descriptor not initialised");
    NEED(!cd->f32_weights || (cd->compute == LK_BF16 && d->kind == LK_DEV_CPU),
         "conv2d_backward: float32 weights in a bf16 convolution are read only on the CPU");
    if (cd->n) RUN(d, conv2d_backward, cd, x, w, dy, dx, dw, db, beta, saved, ws);
    return LK_OK;
}

lk_status lk_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                            int32_t *argmax)
{
    NEED(x && y && (argmax || !pd->is_max), "pool2d_forward: null tensor");
    NEED(pd->oh > 0 && pd->ow > 0, "pool2d_forward: descriptor not initialised");
    if (pd->n) RUN(d, pool2d_forward, pd, x, y, argmax);
    return LK_OK;
}

lk_status lk_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                             const int32_t *argmax, float *dx)
{
    NEED(dy && dx && (argmax || !pd->is_max), "pool2d_backward: null tensor");
    if (pd->n) RUN(d, pool2d_backward, pd, dy, argmax, dx);
    return LK_OK;
}

lk_status lk_dropout_forward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                             const lk_tensor *x, lk_tensor *y)
{
    NEED(p >= 0.0f && p < 1.0f, "dropout: probability %g outside [0, 1)", (double)p);
    LK_CHECK(same_numel("dropout", x, y));
    RUN(d, dropout_forward, p, seed, a, first, x->data, y->data, lk_tensor_numel(x));
    return LK_OK;
}

lk_status lk_dropout_backward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                              const lk_tensor *dy, lk_tensor *dx)
{
    NEED(p >= 0.0f && p < 1.0f, "dropout: probability %g outside [0, 1)", (double)p);
    LK_CHECK(same_numel("dropout", dy, dx));
    RUN(d, dropout_backward, p, seed, a, first, dy->data, dx->data, lk_tensor_numel(dy));
    return LK_OK;
}

lk_status lk_softmax_xent(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                          int c, int ld, float *loss, void *dlogits, float scale)
{
    NEED(logits && labels && loss && n > 0 && c > 0 && ld >= c,
         "softmax_xent: bad arguments (n=%d c=%d ld=%d)", n, c, ld);
    NEED(t == LK_F32 || t == LK_BF16, "softmax_xent: unknown storage type %d", (int)t);
    RUN(d, softmax_xent, t, logits, labels, n, c, ld, loss, dlogits, scale);
    return LK_OK;
}

lk_status lk_mse(lk_device *d, const float *pred, const float *target, size_t n, float *loss,
                 float *dpred, float scale)
{
    NEED(pred && target && loss && n > 0, "mse: bad arguments");
    RUN(d, mse, pred, target, n, loss, dpred, scale);
    return LK_OK;
}

lk_status lk_bce_logits(lk_device *d, const float *logits, const float *target, size_t n,
                        float *loss, float *dlogits, float scale)
{
    NEED(logits && target && loss && n > 0, "bce_logits: bad arguments");
    RUN(d, bce_logits, logits, target, n, loss, dlogits, scale);
    return LK_OK;
}

lk_status lk_count_correct(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                           int c, int ld, float *correct)
{
    NEED(logits && labels && correct && n > 0 && c > 0 && ld >= c, "count_correct: bad arguments");
    NEED(t == LK_F32 || t == LK_BF16, "count_correct: unknown storage type %d", (int)t);
    RUN(d, count_correct, t, logits, labels, n, c, ld, correct);
    return LK_OK;
}

lk_status lk_transpose(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner)
{
    NEED(x && y && x != y, "transpose: needs distinct input and output");
    NEED(outer >= 0 && a >= 0 && b >= 0 && inner > 0, "transpose: bad shape [%d, %d, %d, %d]",
         outer, a, b, inner);
    if (outer && a && b) RUN(d, transpose, x, y, outer, a, b, inner);
    return LK_OK;
}

lk_status lk_lstm_cell_forward(lk_device *d, int n, int h, float *g, const float *c_prev, float *c,
                               float *hout)
{
    NEED(g && c_prev && c && hout && n > 0 && h > 0, "lstm_cell_forward: bad arguments (n=%d h=%d)",
         n, h);
    RUN(d, lstm_cell_forward, n, h, g, c_prev, c, hout);
    return LK_OK;
}

lk_status lk_lstm_cell_backward(lk_device *d, int n, int h, const float *g, const float *c_prev,
                                const float *c, const float *dh, const float *dh_out, float *dc,
                                float *dg)
{
    NEED(g && c_prev && c && dh && dc && dg && n > 0 && h > 0,
         "lstm_cell_backward: bad arguments (n=%d h=%d)", n, h);
    RUN(d, lstm_cell_backward, n, h, g, c_prev, c, dh, dh_out, dc, dg);
    return LK_OK;
}

lk_status lk_gru_cell_forward(lk_device *d, int n, int h, float *gx, const float *gh,
                              const float *h_prev, float *hout, float *ghn)
{
    NEED(gx && gh && h_prev && hout && ghn && n > 0 && h > 0,
         "gru_cell_forward: bad arguments (n=%d h=%d)", n, h);
    RUN(d, gru_cell_forward, n, h, gx, gh, h_prev, hout, ghn);
    return LK_OK;
}

lk_status lk_gru_cell_backward(lk_device *d, int n, int h, const float *g, const float *ghn,
                               const float *h_prev, float *dh, const float *dh_out, float *dgx,
                               float *dgh)
{
    NEED(g && ghn && h_prev && dh && dgx && dgh && n > 0 && h > 0,
         "gru_cell_backward: bad arguments (n=%d h=%d)", n, h);
    RUN(d, gru_cell_backward, n, h, g, ghn, h_prev, dh, dh_out, dgx, dgh);
    return LK_OK;
}

lk_status lk_gemm_batched(lk_device *d, int ta, int tb, int m, int n, int k, float alpha,
                          const float *a, int lda, long sa, const float *b, int ldb, long sb,
                          float beta, float *c, int ldc, long sc, int count)
{
    return lk_gemm_batched_ex(d, LK_F32, ta, tb, m, n, k, alpha, lk_in_f32(a), lda, sa, lk_in_f32(b),
                              ldb, sb, beta, c, ldc, sc, count);
}

lk_status lk_softmax_causal_forward(lk_device *d, float *s, int rows, int t, float scale)
{
    NEED(s && t > 0 && rows >= 0 && rows % t == 0,
         "softmax_causal: %d rows are not whole sequences of %d", rows, t);
    if (rows) RUN(d, softmax_causal_forward, s, rows, t, scale);
    return LK_OK;
}

lk_status lk_softmax_causal_backward(lk_device *d, const float *p, float *dp, int rows, int t,
                                     float scale)
{
    NEED(p && dp && t > 0 && rows >= 0 && rows % t == 0,
         "softmax_causal: %d rows are not whole sequences of %d", rows, t);
    if (rows) RUN(d, softmax_causal_backward, p, dp, rows, t, scale);
    return LK_OK;
}

lk_status lk_layernorm_forward(lk_device *d, const float *x, const float *w, const float *b,
                               float *y, float *mean, float *rstd, int rows, int dim, float eps)
{
    NEED(x && w && b && y && mean && rstd && rows >= 0 && dim > 0 && eps > 0.0f,
         "layernorm_forward: bad arguments (rows=%d dim=%d)", rows, dim);
    if (rows) RUN(d, layernorm_forward, x, w, b, y, mean, rstd, rows, dim, eps);
    return LK_OK;
}

lk_status lk_layernorm_backward(lk_device *d, const float *x, const float *w, const float *mean,
                                const float *rstd, const float *dy, float *dx, float *dw,
                                float *db, int rows, int dim, float beta)
{
    NEED(x && w && mean && rstd && dy && dw && db && rows >= 0 && dim > 0,
         "layernorm_backward: bad arguments (rows=%d dim=%d)", rows, dim);
    NEED(beta == 0.0f || beta == 1.0f, "layernorm_backward: beta must be 0 or 1");
    if (rows) RUN(d, layernorm_backward, x, w, mean, rstd, dy, dx, dw, db, rows, dim, beta);
    else if (beta == 0.0f) {
        RUN(d, memset0, dw, (size_t)dim * sizeof(float));
        RUN(d, memset0, db, (size_t)dim * sizeof(float));
    }
    return LK_OK;
}

lk_status lk_embed_forward(lk_device *d, const float *idx, const float *w, float *y, int n, int dim)
{
    NEED(idx && w && y && n >= 0 && dim > 0, "embed_forward: bad arguments (n=%d dim=%d)", n, dim);
    if (n) RUN(d, embed_forward, idx, w, y, n, dim);
    return LK_OK;
}

lk_status lk_embed_backward(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                            int dim)
{
    NEED(idx && dy && dw && n >= 0 && dim > 0, "embed_backward: bad arguments (n=%d dim=%d)", n, dim);
    if (n) RUN(d, embed_backward, idx, dy, dw, n, dim);
    return LK_OK;
}

lk_status lk_reparam_forward(lk_device *d, const float *ml, float *z, int n, int zdim, int noise,
                             uint64_t seed, uint64_t key, uint64_t first, float *kl)
{
    NEED(ml && z && kl && n > 0 && zdim > 0, "reparam_forward: bad arguments (n=%d zdim=%d)", n, zdim);
    RUN(d, reparam_forward, ml, z, n, zdim, noise, seed, key, first, kl);
    return LK_OK;
}

lk_status lk_reparam_backward(lk_device *d, const float *ml, const float *dz, float *dml, int n,
                              int zdim, uint64_t seed, uint64_t key, uint64_t first, float kl_scale)
{
    NEED(ml && dz && dml && n > 0 && zdim > 0, "reparam_backward: bad arguments (n=%d zdim=%d)", n, zdim);
    RUN(d, reparam_backward, ml, dz, dml, n, zdim, seed, key, first, kl_scale);
    return LK_OK;
}

lk_status lk_bn_sums(lk_device *d, const float *x, const float *dy, const float *mean,
                     const float *rstd, int n, int c, int inner, float *out)
{
    NEED(x && out && n > 0 && c > 0 && inner > 0 && (!dy || (mean && rstd)),
         "bn_sums: bad arguments (n=%d c=%d inner=%d)", n, c, inner);
    RUN(d, bn_sums, x, dy, mean, rstd, n, c, inner, out);
    return LK_OK;
}

lk_status lk_bn_stats(lk_device *d, const float *sums, int c, float eps, float momentum, float *mean,
                      float *rstd, float *run_mean, float *run_var, float *tracked)
{
    NEED(mean && rstd && c > 0 && eps > 0.0f && momentum >= 0.0f && momentum <= 1.0f,
         "bn_stats: bad arguments (c=%d)", c);
    NEED((run_mean != NULL) == (run_var != NULL) && (sums || run_mean) && (!run_mean || tracked),
         "bn_stats: running statistics incomplete");
    RUN(d, bn_stats, sums, c, eps, momentum, mean, rstd, run_mean, run_var, tracked);
    return LK_OK;
}

lk_status lk_bn_forward(lk_device *d, const float *x, const float *mean, const float *rstd,
                        const float *w, const float *b, float *y, int n, int c, int inner)
{
    NEED(x && mean && rstd && w && b && y && n > 0 && c > 0 && inner > 0, "bn_forward: bad arguments");
    RUN(d, bn_forward, x, mean, rstd, w, b, y, n, c, inner);
    return LK_OK;
}

lk_status lk_bn_backward(lk_device *d, const float *x, const float *dy, const float *mean,
                         const float *rstd, const float *w, const float *gsums, float *dx, int n,
                         int c, int inner)
{
    NEED(x && dy && mean && rstd && w && gsums && dx && n > 0 && c > 0 && inner > 0,
         "bn_backward: bad arguments");
    RUN(d, bn_backward, x, dy, mean, rstd, w, gsums, dx, n, c, inner);
    return LK_OK;
}

lk_status lk_randn(lk_device *d, float *out, size_t n, uint64_t seed, uint64_t key, uint64_t first)
{
    NEED(out || !n, "randn: null buffer");
    if (n) RUN(d, randn, out, n, seed, key, first);
    return LK_OK;
}

lk_status lk_affine(lk_device *d, float *x, float a, float b, size_t n)
{
    NEED(x || !n, "affine: null buffer");
    if (n) RUN(d, affine, x, a, b, n);
    return LK_OK;
}

lk_status lk_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                        float *s1, float *s2, uint16_t *w16, size_t n)
{
    NEED(w && g, "optim_update: null buffer");
    NEED(isfinite(hp->lr) && hp->lr >= 0.0f, "optim_update: learning rate %g is not valid", (double)hp->lr);
    int need1 = hp->kind != LK_OPT_SGD;
    int need2 = hp->kind == LK_OPT_ADAM || hp->kind == LK_OPT_ADAMW || hp->kind == LK_OPT_RMSPROP;
    NEED((!need1 || s1) && (!need2 || s2), "optim_update: optimizer state missing");
    NEED(hp->step >= 1, "optim_update: step must start at 1");
    if (n) RUN(d, optim_update, hp, w, g, s1, s2, w16, n);
    return LK_OK;
}

lk_status lk_cast_bf16(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r)
{
    NEED((x && y && r) || !n, "cast_bf16: null buffer");
    if (n) RUN(d, cast_bf16, x, y, n, r);
    return LK_OK;
}

lk_status lk_cast_bf16_rne(lk_device *d, const float *x, uint16_t *y, size_t n)
{
    return lk_cast_bf16(d, x, y, n, &(lk_round){0, 0, 0, 0, NULL});
}

lk_status lk_widen_bf16(lk_device *d, const uint16_t *x, float *y, size_t n)
{
    NEED((x && y) || !n, "widen_bf16: null buffer");
    if (n) RUN(d, widen_bf16, x, y, n);
    return LK_OK;
}

lk_status lk_pack16(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n)
{
    NEED((x && y) || !n, "pack16: null buffer");
    NEED(t == LK_BF16 || t == LK_F16, "pack16: not a 16-bit type");
    if (n) RUN(d, pack16, t, x, scale, y, n);
    return LK_OK;
}

lk_status lk_unpack16(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n)
{
    NEED((x && y) || !n, "unpack16: null buffer");
    NEED(t == LK_BF16 || t == LK_F16, "unpack16: not a 16-bit type");
    if (n) RUN(d, unpack16, t, x, scale, y, n);
    return LK_OK;
}

lk_status lk_orthonormalize(lk_device *d, float *p, int n, int r, int count)
{
    NEED(p || !count, "orthonormalize: null buffer");
    NEED(n > 0 && r > 0 && r <= n && count >= 0, "orthonormalize: needs 0 < r <= n");
    if (count) RUN(d, orthonormalize, p, n, r, count);
    return LK_OK;
}

lk_status lk_sumsq(lk_device *d, const float *x, size_t n, float *out)
{
    NEED(x && out, "sumsq: null buffer");
    RUN(d, sumsq, x, n, out);
    return LK_OK;
}

lk_status lk_guard_op(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long step, float *loss_acc,
                      float samples)
{
    NEED(g && loss_acc, "guard: null buffer");
    NEED(phase >= LK_GUARD_BEGIN && phase <= LK_GUARD_DECIDE && step >= 0, "guard: phase %d, step %ld", phase, step);
    RUN(d, guard, g, phase, c, (long long)step, loss_acc, samples);
    return LK_OK;
}

lk_status lk_scale(lk_device *d, float *x, float a, size_t n)
{
    NEED(x || !n, "scale: null buffer");
    if (n) RUN(d, scale, x, a, n);
    return LK_OK;
}

lk_status lk_axpy(lk_device *d, float a, const float *x, float *y, size_t n)
{
    NEED((x && y) || !n, "axpy: null buffer");
    if (n) RUN(d, axpy, a, x, y, n);
    return LK_OK;
}

lk_status lk_ghost_norm(lk_device *d, const float *x, const float *dy, int n, int in, int out, int bias, float *sq)
{
    NEED(n >= 0 && in > 0 && out > 0, "ghost_norm: bad sizes");
    NEED((x && dy && sq) || !n, "ghost_norm: null buffer");
    if (n) RUN(d, ghost_norm, x, dy, n, in, out, bias, sq);
    return LK_OK;
}
