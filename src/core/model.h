/* model.h - a chain of layers with ONE parameter buffer, ONE gradient buffer and
 * ONE activation arena.
 *
 * Parameters are laid out in REVERSE layer order: the last layer's tensors sit at
 * offset 0, so during backward the gradients become final from offset 0 upwards
 * and each layer's slice is contiguous. After each layer's backward the model calls
 * on_grad_ready(user, offset, count) with that slice (the gradient bucketer hooks
 * in here). Nothing is allocated after lk_model_build(). */
#ifndef LK_MODEL_H
#define LK_MODEL_H

#include "arena.h"
#include "layer.h"

typedef void (*lk_grad_ready_fn)(void *user, size_t offset, size_t count);

/* What backward computes again instead of keeping from forward (lk_model_set_recompute):
 * nothing; the outputs of cheap layers (element-wise activations, layer norm: each runs
 * forward again just before the layer after it needs its output in backward); or whole
 * residual blocks (only each block's input is kept: the block's layers run forward again
 * when backward reaches its end). Same kernels on the same values: the gradients are
 * bitwise those without. */
typedef enum { LK_RECOMPUTE_NONE = 0, LK_RECOMPUTE_ACT, LK_RECOMPUTE_BLOCK } lk_recompute;
lk_status lk_recompute_parse(const char *name, lk_recompute *out);
const char *lk_recompute_name(lk_recompute r);

typedef struct lk_model {
    lk_device *dev;
    lk_shape in_shape;        /* per sample */
    int nlayers, cap;
    lk_layer **layers;
    int max_batch;            /* set by build */
    size_t nparams;           /* trainable floats in params/grads (tensors 16-float aligned):
                                 what the optimizer and the all-reduce see */
    size_t nbuffers;          /* floats of buffers (running statistics) after them in params */
    float *params, *grads;    /* device; params holds nparams + nbuffers floats */
    lk_dtype compute;         /* the precision of the products (lk_model_set_precision) */
    uint16_t *params16;       /* bf16: the working copy of the nparams trainable floats the
                                 products read (the optimizer's step rewrites what it updates;
                                 lk_model_refresh_working the rest); NULL in float32, and where
                                 none is kept (lk_model_keeps_working_copy) */
    lk_round round;           /* how the working copy is rounded (key, first set per refresh) */
    int output_bf16;          /* the caller reads the output as stored, and its loss writes the
                                 gradient so (lk_model_set_output_bf16) */
    int working_stale;        /* params changed outside an optimizer step: the next forward
                                 refreshes the working copy first */
    int grads_borrowed;       /* grads belong to the caller of lk_model_borrow_grads */
    lk_arena arena;           /* activations, saved state, workspace */
    size_t act_bytes;         /* of the arena: activations, saved state, gradient buffers */
    size_t ws_bytes;          /* of the arena: the layers' shared workspace */
    int dry;                  /* built by LK_BUILD_DRY: sizes only, no memory behind them */
    lk_recompute recompute;   /* set before the build */
    unsigned char *recomp;    /* per layer: 0 kept, 1 its output recomputed, 2 in a recomputed block */
    float *aux_scratch;       /* where a recomputed forward's own loss terms go (not counted twice) */
    void *reserved[4];        /* address space standing in for memory that is not there */
    size_t reserved_bytes[4]; /* (PROT_NONE: a touch faults): see lk_model_build_ex */
    float **act;              /* act[0] input, act[i+1] output of layer i (max_batch), stored as
                                 lk_model_act_type says (bf16 between layers that take it) */
    float *dbuf[2];           /* ping-pong input gradients */
    float *dout;              /* gradient of the loss w.r.t. the output (filled by the loss; the
                                 output's own memory when the last layer's backward does not
                                 read it: fill it only once the output has been read; bf16
                                 where the output is) */
    void *workspace;
    uint64_t seed;            /* keys dropout masks */
    float *aux_loss;          /* device scalar: the layers' own loss terms of the last forward */
    int has_aux;              /* some layer has one (own_loss): else aux_loss stays 0 */
    float loss_scale;         /* the factor the loss put on dout (1 unless the caller sets it) */
    long sample_base;         /* see lk_ctx (0 unless the caller sets it) */
    lk_grad_ready_fn on_grad_ready;
    /* called before a layer's backward writes the gradients [offset, offset + count) (its
     * own, and those of the layer it writes into); same user as on_grad_ready */
    lk_grad_ready_fn before_grads;
    void *grad_ready_user;
    int grads_transient;      /* gradients live only until their bucket is reduced (ZeRO-2,
                                 lk_model_place_grads): every backward replaces them */
    lk_status (*sync_sum)(void *user, float *buf, size_t n); /* see lk_ctx (NULL: none) */
    void *sync_user;
    int input_grad;           /* set before the build: backward also computes the gradient with
                                 respect to its lowest layer's input (the model's, or with
                                 lk_model_backward_range layer lo's), into din (attributions) */
    float *din;               /* after such a backward: [batch, that input's shape] (NULL before) */
    int backward_eval;        /* backward follows an evaluation-mode forward (batch norm's
                                 running statistics, no dropout): attributions of a trained model */
    float *sample_sq;         /* DP-SGD: when set (device, a float per sample), backward first adds
                                 each sample's squared gradient norm of every layer to it
                                 (layer.h's sample_sqnorms; lk_model_direct_norms must hold) */
} lk_model;

lk_status lk_model_create(lk_model **out, lk_device *dev, const lk_shape *in_sample);
/* Appends a layer (the model owns it from now on, also on failure). Checks that
 * the layer accepts the current output shape. A NULL layer is reported as the
 * constructor's error. */
lk_status lk_model_add(lk_model *m, lk_layer *l);
/* Moves the gradients into buf (nparams floats of host memory the caller keeps alive
 * for the model's life, e.g. shared memory all-reduced in place); zeroes it. Only for
 * models whose device memory is host memory. */
lk_status lk_model_borrow_grads(lk_model *m, float *buf);
/* Re-points the gradients of every parameter for which at(user, offset) gives a place
 * (its gradients then go there: bucket staging under ZeRO-2); NULL keeps the current one.
 * Call it for every network of the model, then lk_model_drop_grads. */
lk_status lk_model_place_grads(lk_model *m, float *(*at)(void *user, size_t offset), void *user);
/* Frees the full gradient buffer (m->grads becomes NULL) once every parameter's gradients
 * have been placed elsewhere, and makes every backward replace them (grads_transient). */
lk_status lk_model_drop_grads(lk_model *m);
/* How lk_model_build_ex builds: everything; everything but the gradient buffer (the
 * caller then calls lk_model_alloc_grads, lk_model_borrow_grads, or places them and
 * drops the buffer: lk_model_place_grads), which is then only reserved address space;
 * or nothing but sizes and plans (a memory plan: params, grads and the arena are reserved
 * address space, never touched, and the device's primitives are planned as for a run). */
typedef enum { LK_BUILD_FULL = 0, LK_BUILD_NO_GRADS, LK_BUILD_DRY } lk_build;
lk_status lk_model_build_ex(lk_model *m, int max_batch, lk_build how);
/* The gradient buffer of a LK_BUILD_NO_GRADS model, zeroed. */
lk_status lk_model_alloc_grads(lk_model *m);
/* Before the build: the type matrix products and convolutions take their inputs in
 * (LK_F32, or LK_BF16: mixed precision, the float32 parameters staying the master copy
 * with a bf16 working copy beside them, rounded as r says; r NULL: to nearest even). */
lk_status lk_model_set_precision(lk_model *m, lk_dtype compute, const lk_round *r);
lk_status lk_precision_parse(const char *name, lk_dtype *out);
/* Before the build: the caller takes a bf16 model's output as it is stored (out->type: bf16
 * where the last layer writes bf16 and backward takes its gradient so - a GPT's tied head,
 * whose logits are the largest activation), and fills dout in the same type (a
 * cross-entropy over bf16 logits writes its gradient over them). Without it, and in a
 * float32 model, the output is float32. */
lk_status lk_model_set_output_bf16(lk_model *m);
/* Whether a bf16 model keeps a working copy of its weights: not where the device emulates
 * bf16 products (lk_device.bf16_emulated) and rounds to nearest even - those products round
 * the float32 operands they read anyway, so reading the masters gives the copy's values
 * without its 2 bytes a parameter; a stochastic rounding's draws need the copy. */
int lk_model_keeps_working_copy(const lk_model *m);
/* Rounds the parameters [lo, hi) into the working copy (keyed by step when stochastic);
 * nothing in float32; skip: a device flag that leaves it as it is (guard_rule.h; NULL: never).
 * lk_model_params_changed: the whole copy, at the next forward. */
lk_status lk_model_refresh_working(lk_model *m, size_t lo, size_t hi, long step, const float *skip);
void lk_model_params_changed(lk_model *m);
/* Before the build: the layers' per-sample gradient norms will be asked for (sample_sq), so
 * their workspace counts. */
void lk_model_set_sample_norms(lk_model *m);
/* 1 when every layer with parameters computes its per-sample gradient norms itself (layer.h's
 * sample_sqnorms): a batch's norms then come out of one backward; else 0, and *why (why may be
 * NULL) is the first layer that does not. */
int lk_model_direct_norms(const lk_model *m, const lk_layer **why);
/* Before the build: what backward recomputes (see lk_recompute). */
lk_status lk_model_set_recompute(lk_model *m, lk_recompute r);
/* Plans and allocates params, grads and the arena for batches up to max_batch. */
lk_status lk_model_build(lk_model *m, int max_batch);
/* Initialises every parameter from (seed, tensor id) and zeroes the gradients. */
lk_status lk_model_init(lk_model *m, lk_init_kind kind, uint64_t seed);
void lk_model_destroy(lk_model *m);

/* How act[i] is stored (after the build): float32, or bf16 between layers of a bf16 model
 * that write and read it so (layer.h's reads_bf16/writes_bf16). The input is always
 * float32, the output unless lk_model_set_output_bf16. */
lk_dtype lk_model_act_type(const lk_model *m, int i);

/* Per-sample output shape and its element count. */
lk_shape lk_model_out_shape(const lk_model *m);
/* How many values of the output's last axis are meaningful: all of it, or fewer when the
 * last layer pads it (a head over a padded vocabulary: logits [T, Vp] of which V count). */
int lk_model_out_valid(const lk_model *m);
/* Device buffer for up to max_batch inputs (copy the batch here). */
float *lk_model_input(lk_model *m);
/* Runs all layers on `batch` samples; returns the output view. */
lk_status lk_model_forward(lk_model *m, int batch, int training, long step, lk_tensor *out);
/* Back-propagates m->dout (filled by lk_loss) through every layer, accumulating
 * into m->grads and calling on_grad_ready after each layer with parameters. */
lk_status lk_model_backward(lk_model *m, int batch, long step);
/* The same, with the choice: LK_GRADS_REPLACE makes this backward's gradients
 * replace m->grads (the first micro-batch of a step: no zero_grad pass needed),
 * LK_GRADS_ADD adds them. Padding between tensors stays zero either way. */
typedef enum { LK_GRADS_ADD = 0, LK_GRADS_REPLACE = 1 } lk_grads_mode;
lk_status lk_model_backward_ex(lk_model *m, int batch, long step, lk_grads_mode mode);
/* Parts of the chain (a GAN: the generator's layers, then the discriminator's):
 * forward runs layers [lo, hi) on act[lo] (fill it first) and returns act[hi];
 * backward runs layers [lo, nlayers) from dout, with no input gradient for layer lo. */
lk_status lk_model_forward_range(lk_model *m, int lo, int hi, int batch, int training, long step,
                                 lk_tensor *out);
lk_status lk_model_backward_range(lk_model *m, int lo, int batch, long step, lk_grads_mode mode);
void lk_model_zero_grad(lk_model *m);

/* Parameter enumeration in PyTorch order (first layer first, weight before bias)
 * with PyTorch's nn.Sequential names ("1.weight"). */
int lk_model_param_count(const lk_model *m);
const lk_param *lk_model_param(const lk_model *m, int i, char *name, size_t name_size);
/* FLOPs per sample of layers [lo, hi)'s forward (their matrix products and convolutions),
 * and of a training step (forward + backward, backward counted as twice forward, as
 * PaLM's and llm.c's 6N per token do): lk_model_flops(m, 0, nlayers) * 3. */
double lk_model_flops(const lk_model *m, int lo, int hi);
/* The parts of the flat buffer holding matrices and embeddings (tensors of 2 or more
 * dimensions), as sorted [lo, hi) pairs, adjacent ones merged (alignment padding goes
 * with its tensor): what GPT-2's recipe decays. *out (lk_free) holds 2 * *n offsets. */
lk_status lk_model_decay_ranges(const lk_model *m, size_t **out, int *n);
/* The parts of the flat buffer holding the parameters whose names ("3.weight": the layer's
 * index and the tensor's name, as in checkpoints) match one of the comma-separated shell
 * patterns (fnmatch), as sorted [lo, hi) pairs, adjacent ones merged; *matched counts the
 * tensors. An error names a pattern that matches none. */
lk_status lk_model_name_ranges(const lk_model *m, const char *patterns, size_t **out, int *n, int *matched);
/* Number of trainable floats (without alignment padding). */
size_t lk_model_trainable(const lk_model *m);
/* Human-readable summary into buf. */
void lk_model_describe(const lk_model *m, char *buf, size_t size);

#endif
