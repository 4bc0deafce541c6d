/* ops.h - the public op API. Each call checks its arguments and dispatches through
 * dev->ops. Layers and the optimizer use only these (never a backend directly). */
#ifndef LK_OPS_H
#define LK_OPS_H

#include "tensor.h"

/* memory */
void *lk_dev_alloc(lk_device *d, size_t bytes);
void lk_dev_free(lk_device *d, void *p);
void lk_copy_to_device(lk_device *d, void *dst, const void *src, size_t bytes);
void lk_copy_to_host(lk_device *d, void *dst, const void *src, size_t bytes);
void lk_copy_on_device(lk_device *d, void *dst, const void *src, size_t bytes);
void lk_zero(lk_device *d, void *p, size_t bytes);
void lk_sync(lk_device *d);
/* The first failure of the device's asynchronous work so far (LK_OK on the CPU). */
lk_status lk_device_status(lk_device *d);
/* Reads one device float (a metric read: synchronises). */
float lk_read_scalar(lk_device *d, const float *p);

/* An operand of a product: where it is and how it is stored. */
typedef struct {
    const void *p;
    lk_dtype type;
} lk_in;
static inline lk_in lk_in_f32(const float *p) { return (lk_in){p, LK_F32}; }

/* The products g describes (lk_gemm_desc in device.h). */
lk_status lk_matmul(lk_device *d, const lk_gemm_desc *g, const void *a, const void *b, float *c);
/* float32 products; and products in `compute` of operands stored as they say. */
lk_status lk_gemm(lk_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
lk_status lk_gemm_ex(lk_device *d, lk_dtype compute, int ta, int tb, int m, int n, int k,
                     float alpha, lk_in a, int lda, lk_in b, int ldb, float beta, float *c, int ldc);
lk_status lk_gemm_batched_ex(lk_device *d, lk_dtype compute, int ta, int tb, int m, int n, int k,
                             float alpha, lk_in a, int lda, long sa, lk_in b, int ldb, long sb,
                             float beta, float *c, int ldc, long sc, int count);
lk_status lk_bias_add(lk_device *d, float *y, const float *b, int outer, int c, int inner);
lk_status lk_bias_grad(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                       float beta);

lk_status lk_act_forward(lk_device *d, lk_act act, float alpha, const lk_tensor *x, lk_tensor *y);
lk_status lk_act_backward(lk_device *d, lk_act act, float alpha, const lk_tensor *x,
                          const lk_tensor *y, const lk_tensor *dy, lk_tensor *dx);
const char *lk_act_name(lk_act act);
/* 1 when act's backward reads its output y (sigmoid, tanh), 0 when its input x (the
 * others; the identity reads neither) */
int lk_act_reads_output(lk_act act);

/* Fills oh/ow from the rest; errors name the shapes when the kernel does not fit. */
lk_status lk_conv2d_desc_init(lk_conv2d_desc *cd);
lk_status lk_pool2d_desc_init(lk_pool2d_desc *pd);
size_t lk_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd);
size_t lk_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd);
/* w is bf16 when cd->compute is LK_BF16 (the working copy), else float32. */
lk_status lk_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *b, float *y, void *saved, void *ws);
lk_status lk_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x,
                             const void *w, const float *dy, float *dx, float *dw, float *db,
                             float beta, void *saved, void *ws);
lk_status lk_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                            int32_t *argmax);
lk_status lk_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                             const int32_t *argmax, float *dx);

lk_status lk_dropout_forward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                             const lk_tensor *x, lk_tensor *y);
lk_status lk_dropout_backward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                              const lk_tensor *dy, lk_tensor *dx);

/* logits (and dlogits, which may be them) stored as t says */
lk_status lk_softmax_xent(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                          int c, int ld, float *loss, void *dlogits, float scale);
lk_status lk_mse(lk_device *d, const float *pred, const float *target, size_t n, float *loss,
                 float *dpred, float scale);
lk_status lk_bce_logits(lk_device *d, const float *logits, const float *target, size_t n,
                        float *loss, float *dlogits, float scale);
lk_status lk_count_correct(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                           int c, int ld, float *correct);

/* Sequences: see the vtable entries in device.h. */
lk_status lk_transpose(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner);
lk_status lk_lstm_cell_forward(lk_device *d, int n, int h, float *g, const float *c_prev, float *c,
                               float *hout);
lk_status lk_lstm_cell_backward(lk_device *d, int n, int h, const float *g, const float *c_prev,
                                const float *c, const float *dh, const float *dh_out, float *dc,
                                float *dg);
lk_status lk_gru_cell_forward(lk_device *d, int n, int h, float *gx, const float *gh,
                              const float *h_prev, float *hout, float *ghn);
lk_status lk_gru_cell_backward(lk_device *d, int n, int h, const float *g, const float *ghn,
                               const float *h_prev, float *dh, const float *dh_out, float *dgx,
                               float *dgh);

/* Attention, normalisation and embeddings: see the vtable entries in device.h. */
lk_status lk_gemm_batched(lk_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
                          const float *a, int lda, long stride_a, const float *b, int ldb,
                          long stride_b, float beta, float *c, int ldc, long stride_c, int count);
lk_status lk_softmax_causal_forward(lk_device *d, float *s, int rows, int t, float scale);
lk_status lk_softmax_causal_backward(lk_device *d, const float *p, float *dp, int rows, int t,
                                     float scale);
lk_status lk_layernorm_forward(lk_device *d, const float *x, const float *w, const float *b,
                               float *y, float *mean, float *rstd, int rows, int dim, float eps);
lk_status lk_layernorm_backward(lk_device *d, const float *x, const float *w, const float *mean,
                                const float *rstd, const float *dy, float *dx, float *dw,
                                float *db, int rows, int dim, float beta);
lk_status lk_embed_forward(lk_device *d, const float *idx, const float *w, float *y, int n, int dim);
lk_status lk_embed_backward(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                            int dim);

/* The VAE's reparameterisation and KL term: see device.h. */
lk_status lk_reparam_forward(lk_device *d, const float *ml, float *z, int n, int zdim, int noise,
                             uint64_t seed, uint64_t key, uint64_t first, float *kl);
lk_status lk_reparam_backward(lk_device *d, const float *ml, const float *dz, float *dml, int n,
                              int zdim, uint64_t seed, uint64_t key, uint64_t first, float kl_scale);

/* Batch norm: see device.h. */
lk_status lk_bn_sums(lk_device *d, const float *x, const float *dy, const float *mean,
                     const float *rstd, int n, int c, int inner, float *out);
lk_status lk_bn_stats(lk_device *d, const float *sums, int c, float eps, float momentum, float *mean,
                      float *rstd, float *run_mean, float *run_var, float *tracked);
lk_status lk_bn_forward(lk_device *d, const float *x, const float *mean, const float *rstd,
                        const float *w, const float *b, float *y, int n, int c, int inner);
lk_status lk_bn_backward(lk_device *d, const float *x, const float *dy, const float *mean,
                         const float *rstd, const float *w, const float *gsums, float *dx, int n,
                         int c, int inner);

lk_status lk_randn(lk_device *d, float *out, size_t n, uint64_t seed, uint64_t key, uint64_t first);
lk_status lk_affine(lk_device *d, float *x, float a, float b, size_t n);

lk_status lk_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                        float *s1, float *s2, uint16_t *w16, size_t n);
/* y = bf16(x), rounded as r says; _rne: to nearest even (activations, wire buffers) */
lk_status lk_cast_bf16(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r);
lk_status lk_cast_bf16_rne(lk_device *d, const float *x, uint16_t *y, size_t n);
/* y = float32(x) */
lk_status lk_widen_bf16(lk_device *d, const uint16_t *x, float *y, size_t n);
/* the 16-bit gradient wire (t LK_BF16 or LK_F16): y = x * scale rounded to nearest even;
 * y = float32(x) * scale */
lk_status lk_pack16(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n);
lk_status lk_unpack16(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n);
lk_status lk_sumsq(lk_device *d, const float *x, size_t n, float *out);
/* a phase of the step check on g, in d's memory (guard_rule.h); loss_acc: d's loss sum */
lk_status lk_guard_op(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long step, float *loss_acc,
                      float samples);
lk_status lk_scale(lk_device *d, float *x, float a, size_t n);
/* the columns of count n x r row-major matrices made orthonormal (device.h) */
lk_status lk_orthonormalize(lk_device *d, float *p, int n, int r, int count);
lk_status lk_axpy(lk_device *d, float a, const float *x, float *y, size_t n);
/* sq[i] += (|x_i|^2 + bias) * |dy_i|^2 (device.h: a linear layer's per-sample gradient norms) */
lk_status lk_ghost_norm(lk_device *d, const float *x, const float *dy, int n, int in, int out, int bias, float *sq);

#endif
