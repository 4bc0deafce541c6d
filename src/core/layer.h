/* layer.h - the layer vtable and parameter specs.
 *
 * A layer is written once, against ops.h only. Lifecycle:
 *   1. a constructor (layers.h) records the configuration;
 *   2. setup() receives the per-sample input shape in l->in, sets l->out and
 *      declares parameters in l->params (shapes, fans, names);
 *   3. the model lays all parameters out in one flat buffer and fills each
 *      lk_param's w/g pointers, and hands each layer its saved-state block;
 *   4. forward/backward run on batch views of arena memory.
 * backward ACCUMULATES parameter gradients (so micro-batches can add up) unless
 * ctx->replace_grads is set, when it overwrites them (which spares a zero_grad
 * pass); it always OVERWRITES dx; dx->data is NULL when dx is not needed. */
#ifndef LK_LAYER_H
#define LK_LAYER_H

#include "ops.h"

typedef enum {
    LK_INIT_DEFAULT = 0, /* PyTorch's Linear/Conv2d default: U(+-1/sqrt(fan_in)) for W and b */
    LK_INIT_NORMAL,      /* N(0, 0.01^2) weights (std set by lk_init_std), zero bias */
    LK_INIT_UNIFORM,     /* U(-0.05, 0.05) weights, zero bias */
    LK_INIT_XAVIER_UNIFORM,
    LK_INIT_XAVIER_NORMAL,
    LK_INIT_HE_UNIFORM,
    LK_INIT_HE_NORMAL,
} lk_init_kind;

#define LK_PARAM_NAME 24

/* Initialisations a parameter keeps whatever --init says (norms, embeddings). */
typedef enum { LK_PINIT_SCHEME = 0, LK_PINIT_ZEROS, LK_PINIT_ONES, LK_PINIT_NORMAL } lk_pinit;
#define LK_LAYER_MAX_PARAMS 16 /* a 4-layer LSTM has 16 tensors */

typedef struct {
    char name[LK_PARAM_NAME]; /* "weight", "bias" */
    lk_shape shape;
    int fan_in, fan_out;
    int is_bias;
    int buffer;          /* state, not trained (batch norm's running statistics): after the
                            trainable parameters in the flat buffer, no gradient (g NULL) */
    float default_bound; /* PyTorch's default init draws U(+-default_bound); 0: 1/sqrt(fan_in) */
    lk_pinit fixed;      /* LK_PINIT_SCHEME: follow the model's scheme */
    float fixed_std;     /* LK_PINIT_NORMAL: N(0, fixed_std^2) */
    int pad_rows;        /* rows of zeros after the tensor's shape[0] rows in its storage (a
                            padded vocabulary): never initialised, saved or loaded; their
                            gradient is zero, so they stay zero (lk_param_storage) */
    size_t offset;   /* in floats, into the model's flat buffers */
    float *w, *g;    /* device pointers: params + offset, grads + offset */
    uint16_t *w16;   /* the bf16 working copy (params16 + offset) of a bf16 model that keeps
                        one; NULL else */
} lk_param;

/* What a layer sees of the step it runs in. */
typedef struct {
    lk_device *dev;
    int training;       /* 1 in training (dropout active) */
    uint64_t seed;      /* run seed */
    long step;          /* global step, keys dropout masks */
    long sample_base;   /* the position of this batch's first sample in the step's global
                           batch: random draws per sample use it, so N ranks x B draw as
                           1 rank x N*B does */
    void *workspace;    /* shared scratch of the largest workspace_bytes() */
    int replace_grads;  /* backward: 1 = parameter gradients overwrite, 0 = accumulate */
    float *aux_loss;    /* device scalar: layers with loss terms of their own (the VAE's KL)
                           add their batch mean to it in forward (zeroed first) */
    float loss_scale;   /* backward: the factor on the loss gradient in dout; such terms
                           scale their gradients alike */
    /* Sums buf (device, n floats) over every rank in place, for layers that normalise
     * over the global batch (SyncBatchNorm); NULL when there is no one to sum with. */
    lk_status (*sync_sum)(void *user, float *buf, size_t n);
    void *sync_user;
} lk_ctx;

typedef struct lk_layer lk_layer;

typedef struct {
    const char *type;
    lk_status (*setup)(lk_layer *l);
    /* bytes this layer keeps from forward to backward (e.g. argmax), per batch */
    size_t (*saved_bytes)(const lk_layer *l, lk_device *d, int batch);
    /* bytes of shared scratch used during one call, per batch */
    size_t (*workspace_bytes)(const lk_layer *l, lk_device *d, int batch);
    lk_status (*forward)(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y);
    lk_status (*backward)(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                          const lk_tensor *dy, lk_tensor *dx);
    /* 1 when the output is the input reinterpreted (flatten): no memory, dx = dy.
     * An alias may still have forward (x and y share data) and backward (called with
     * dy == dx: it may change the gradient in place); NULL ones are skipped. */
    int alias;
    /* 1 when forward adds a loss term of its own to ctx->aux_loss (the VAE's KL) */
    int own_loss;
    /* 1 when the output is cheap to compute again from the input (and what forward saves,
     * which it writes again alike): element-wise activations, layer norm. --recompute act
     * keeps no copy of it and runs forward again before backward needs it. */
    int cheap;
    /* 1 when backward never reads the output y (a linear layer, a tied head): as the
     * model's last layer, the loss then writes its gradient over the output, and the model
     * keeps no separate buffer for it (a GPT-2 head's logits: 0.8 GB at 4 x 1024 tokens) */
    int y_unused;
    /* 1 when forward changes state or talks to other ranks (batch norm's running
     * statistics, SyncBatchNorm): it is never run again to recompute (--recompute block
     * keeps a residual block holding one). */
    int stateful;
    /* Activations in bf16 (a bf16 model, lk_model_build): forward and backward take an input
     * stored in bf16 (reads_bf16) / forward writes its output in bf16 when l->out_type says
     * so (writes_bf16), computing in float32 between. The model stores an activation in
     * bf16 where its producer writes and its consumer reads bf16 (see lk_model's act_type):
     * the matrix products read it as it is, element-wise layers widen it into workspace
     * (lk_layer_f32 and lk_layer_store below). Gradients stay float32. */
    int reads_bf16, writes_bf16;
    /* 1 when backward takes its output's gradient dy in bf16 too: as a model's last layer
     * (y_unused, writes_bf16), the output is then bf16 where the caller asks for it
     * (lk_model_set_output_bf16), and the loss writes its gradient over it in bf16 */
    int dy_bf16;
    /* Forward FLOPs per sample of the layer's matrix products and convolutions (2 per
     * multiply-add; element-wise work is not counted), after setup. NULL: none. The
     * model counts backward as twice forward (see lk_model_flops). */
    double (*flops)(const lk_layer *l);
    /* DP-SGD (src/train/dpsgd.h): adds each sample's squared gradient norm over the layer's
     * parameters to sq[batch] (device), from its input x and its output's gradient dy, without
     * touching the gradients (the model calls it just before backward when lk_model.sample_sq
     * is set). Its workspace is in workspace_bytes where l->sample_norms. NULL: the layer has no
     * such shortcut (the norms then come from one backward per sample). */
    lk_status (*sample_sqnorms)(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *dy,
                                float *sq);
} lk_layer_vt;

struct lk_layer {
    const lk_layer_vt *vt;
    int index;                 /* position in the model; PyTorch Sequential index */
    lk_shape in, out;          /* per sample */
    int nparams;
    lk_param params[LK_LAYER_MAX_PARAMS];
    size_t param_offset;       /* the layer's contiguous slice of the flat buffers */
    size_t param_count;
    void *saved;               /* saved_bytes(max_batch) of arena memory, or NULL */
    int out_valid;             /* the output's last axis holds this many values, then padding
                                  (a head over a padded vocabulary); 0: all of it */
    lk_layer *grads_into;      /* backward also writes this (earlier) layer's parameter
                                  gradients (a head tied to an embedding); NULL: none */
    int block_begin;           /* 1 + the index of the layer that opens the residual block this
                                  layer closes (residual_add); 0: it closes none */
    lk_dtype compute;          /* the type its matrix products and convolutions take their inputs
                                  in (the model's precision, set before the build): LK_BF16
                                  reads the weights' bf16 working copy (lk_layer_weights) */
    lk_dtype in_type, out_type; /* how its input and output are stored (set by the build) */
    int input_f32;             /* the caller writes this layer's input itself (a GAN's
                                  discriminator): it stays float32 */
    int sample_norms;          /* set before the build: sample_sqnorms will be called (its
                                  workspace counts) */
};

/* An activation as a product's operand: as it is stored. */
static inline lk_in lk_tensor_in(const lk_tensor *t) { return (lk_in){t->data, t->type}; }
/* Workspace bytes to stage a bf16 activation of n values in float32 (0 for a float32 one). */
static inline size_t lk_layer_staging(lk_dtype t, size_t n) { return t == LK_BF16 ? n * sizeof(float) : 0; }
/* t's values in float32 into *out: t itself, or t widened into buf (lk_layer_staging bytes). */
lk_status lk_layer_f32(lk_device *d, const lk_tensor *t, float *buf, const float **out);
/* Where forward computes its output in float32: y itself, or buf when y is stored in bf16
 * (lk_layer_store then rounds it into y, to nearest even). */
static inline float *lk_layer_f32_out(const lk_tensor *y, float *buf) { return y->type == LK_BF16 ? buf : y->data; }
lk_status lk_layer_store(lk_device *d, const lk_tensor *y, const float *buf);

/* The weights a layer's products read: the bf16 working copy when it computes in bf16 and
 * the model keeps one (lk_model_keeps_working_copy), else the float32 master (which a bf16
 * product rounds to nearest even as it reads it). */
static inline lk_in lk_layer_weights(const lk_layer *l, const lk_param *p)
{
    return l->compute == LK_BF16 && p->w16 ? (lk_in){p->w16, LK_BF16} : lk_in_f32(p->w);
}

/* Floats of a parameter's storage: its shape's, and the padding rows after them. */
size_t lk_param_storage(const lk_param *p);

/* Declares a parameter during setup(). */
lk_param *lk_layer_add_param(lk_layer *l, const char *name, int ndim, const int *shape,
                             int fan_in, int fan_out, int is_bias);
/* Declares a buffer (saved and loaded with the weights, never trained) starting at 0 or 1. */
lk_param *lk_layer_add_buffer(lk_layer *l, const char *name, int ndim, const int *shape,
                              lk_pinit init);
/* Fills every parameter of the layer on `dev` from the counter-based RNG, keyed by
 * (seed, layer index, parameter number) so each tensor gets its own numbers.
 * host_scratch holds the largest parameter tensor (unused where the device's memory is
 * host memory: the values go straight in). */
lk_status lk_layer_init_params(lk_layer *l, lk_device *dev, lk_init_kind kind, uint64_t seed,
                               float *host_scratch);
lk_status lk_init_parse(const char *name, lk_init_kind *out);
void lk_layer_destroy(lk_layer *l);

#endif
