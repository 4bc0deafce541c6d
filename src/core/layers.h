/* layers.h - constructors of the built-in layers. Each returns NULL with an error
 * message (lk_error_message) when its arguments are invalid. */
#ifndef LK_LAYERS_H
#define LK_LAYERS_H

#include "layer.h"

lk_layer *lk_linear(int in_features, int out_features, int bias);
lk_layer *lk_conv2d(int in_channels, int out_channels, int kernel, int stride, int padding,
                    int bias);
lk_layer *lk_maxpool2d(int kernel, int stride, int padding);
lk_layer *lk_avgpool2d(int kernel, int stride, int padding);
lk_layer *lk_flatten(void);
/* Views the input as `dims` (same number of elements). */
lk_layer *lk_reshape(int ndim, const int *dims);
lk_layer *lk_activation(lk_act act, float alpha); /* alpha: LeakyReLU slope */
lk_layer *lk_dropout(float p);
/* Recurrent layers as torch.nn.LSTM / GRU (batch_first): input [T, input] per sample;
 * `layers` stacked cells (1..4); output [T, hidden] with sequences, else the last
 * layer's hidden state at the last step [hidden]. Parameters weight_ih_l<k>,
 * weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> with PyTorch's shapes and gate order. */
typedef enum { LK_RNN_LSTM = 0, LK_RNN_GRU } lk_rnn_cell;
lk_layer *lk_rnn(lk_rnn_cell cell, int input, int hidden, int layers, int sequences);
/* Layer norm over the last axis (torch.nn.LayerNorm(dim, eps)). */
lk_layer *lk_layernorm(int dim, float eps);
/* Batch norm over channels ([C] or [C, H, W]), torch.nn.BatchNorm1d/2d(C, eps, momentum);
 * synchronised over ranks when the model has a sync_sum hook (SyncBatchNorm). */
lk_layer *lk_batchnorm(int channels, float eps, float momentum);
/* Token embedding: [T] ids (floats) -> [T, dim], with learned positions when asked. */
/* pad_to > 1 pads the vocabulary to a multiple of it (see embedding.c); 0 or 1: none */
lk_layer *lk_embedding(int vocab, int dim, int positions, int pad_to);
/* Logits [..., vocab] = x weight^T with an embedding layer's weight (tied head). */
lk_layer *lk_tied_head(lk_layer *embedding);
/* Causal multi-head self-attention over [T, dim] (GPT-2's, with c_attn and c_proj). */
lk_layer *lk_attention(int dim, int heads);
/* y = x + f(x), f = the layers added between the two; end keeps the shape. */
lk_layer *lk_residual_begin(void);
lk_layer *lk_residual_end(lk_layer *begin);
/* The VAE's sampling layer: [2*zdim] (mu, logvar) -> z [zdim]; its KL term is the
 * layer's own loss (ctx->aux_loss). The noise of a step: lk_rng_normal(seed,
 * LK_RNG_NOISE, lk_reparam_key(layer, step), sample * zdim + j). */
lk_layer *lk_reparam(int zdim);
uint64_t lk_reparam_key(const lk_layer *l, long step);
int lk_layer_is_reparam(const lk_layer *l);

/* Losses (not layers: they end the chain). The mean over the batch, like PyTorch's
 * default reduction; dout = d(loss)/d(out) * scale when dout != NULL. */
typedef enum { LK_LOSS_XENT = 0, LK_LOSS_MSE, LK_LOSS_BCE_LOGITS } lk_loss_kind;
typedef struct {
    const void *out;        /* model output [batch, ...], stored as type says */
    const int32_t *labels;  /* class labels (XENT) */
    const float *targets;   /* targets with out's shape (MSE, BCE) */
    int batch;
    int features;           /* out elements per sample (XENT: the classes) */
    int ld;                 /* XENT: values from one row of out to the next (>= features: a
                               padded vocabulary); 0: features */
    lk_dtype type;          /* how out is stored: LK_F32, or LK_BF16 (XENT only: a bf16
                               model's logits; dout is then bf16 too) */
} lk_loss_args;
lk_status lk_loss(lk_device *d, lk_loss_kind kind, const lk_loss_args *a, float *loss,
                  void *dout, float scale);
const char *lk_loss_name(lk_loss_kind kind);

#endif
