/* optim.h - optimizers over the flat parameter buffer: learning-rate schedule,
 * optional global-norm clipping, then ONE fused update pass (lk_optim_update). */
#ifndef LK_OPTIM_H
#define LK_OPTIM_H

#include "device.h"

typedef enum { LK_SCHED_CONSTANT = 0, LK_SCHED_STEP, LK_SCHED_COSINE } lk_schedule;

typedef struct {
    lk_optim_kind kind;
    float lr;
    float momentum;      /* momentum/nesterov (default 0.9); RMSprop momentum (0) */
    float beta1, beta2;  /* Adam/AdamW (0.9, 0.999) */
    float eps;           /* Adam 1e-8, RMSprop 1e-8, AdaGrad 1e-10 */
    float alpha;         /* RMSprop smoothing (0.99) */
    float weight_decay;  /* L2 (decoupled for AdamW) */
    float l1;
    float clip_norm;     /* 0: no clipping */
    lk_schedule schedule;
    long warmup;         /* linear warm-up steps from lr/warmup to lr */
    long total_steps;    /* cosine decays to 0 at total_steps */
    long step_size;      /* step schedule: multiply by gamma every step_size steps */
    float gamma;
    int decay;           /* lk_decay: which tensors weight_decay applies to */
} lk_optim_config;

/* Which tensors weight decay (and L1) apply to: all of them (torch.optim's default), or
 * matrices and embeddings only, not biases and norms (GPT-2's recipe: nanoGPT's and
 * llm.c's parameter groups). DEFAULT: the model's choice (the trainer resolves it). */
typedef enum { LK_DECAY_DEFAULT = -1, LK_DECAY_ALL = 0, LK_DECAY_MATRICES = 1 } lk_decay;
lk_status lk_decay_parse(const char *name, lk_decay *out);
const char *lk_decay_name(int d);

/* Defaults for a kind (PyTorch's), lr included. */
lk_optim_config lk_optim_defaults(lk_optim_kind kind);
lk_status lk_optim_parse(const char *name, lk_optim_kind *out);
const char *lk_optim_name(lk_optim_kind kind);
lk_status lk_schedule_parse(const char *name, lk_schedule *out);
const char *lk_schedule_name(lk_schedule s);
/* Learning rate used for 0-based step `step`. */
float lk_optim_lr_at(const lk_optim_config *c, long step);

typedef struct {
    lk_optim_config cfg;
    lk_device *dev;
    size_t n;
    size_t lo, hi;       /* the parameters [lo, hi) this optimizer updates and keeps state for:
                          * all n, or one rank's slice (ZeRO, lk_optim_shard) */
    float *s1, *s2;      /* state of [lo, hi), device: momentum buffer | Adam exp_avg, exp_avg_sq |
                          * RMSprop square_avg, momentum buffer | AdaGrad sum */
    /* Clipping by global norm over slices: sums v[0..n) over every rank in place (NULL: this
     * optimizer sees every parameter). */
    lk_status (*sum)(void *user, double *v, int n);
    void *sum_user;
    float *scratch;      /* device scalar for the gradient norm */
    long step;           /* steps taken */
    float last_lr;
    float last_grad_norm; /* only measured when clipping */
    uint16_t *w16;       /* the bf16 working copy of the buffer (NULL: none), which every step
                          * rewrites over what it updated (lk_optim_set_working) */
    lk_round round;      /* how (key and first are set per step: the step number, the offset) */
    size_t *decayed;     /* with LK_DECAY_MATRICES: sorted [lo, hi) pairs of the flat buffer
                          * that decay; the rest does not (NULL: everything decays) */
    int ndecayed;
    size_t *frozen;      /* --freeze: sorted [lo, hi) pairs of the flat buffer no step changes */
    int nfrozen;
    const float *skip;   /* the step check's verdict in device memory (guard_rule.h): a step
                          * it drops changes nothing but the step counter (NULL: no check) */
} lk_optim;

lk_status lk_optim_create(lk_optim **out, lk_device *dev, const lk_optim_config *cfg, size_t n);
/* The same with state for the parameters [lo, hi) only (lk_optim_shard from the start). */
lk_status lk_optim_create_slice(lk_optim **out, lk_device *dev, const lk_optim_config *cfg, size_t n,
                                size_t lo, size_t hi);
void lk_optim_destroy(lk_optim *o);
/* Keeps state for [lo, hi) only (zeroed; before any step or load): steps then update that
 * slice, and clipping sums the squares of every rank's slice through o->sum. */
lk_status lk_optim_shard(lk_optim *o, size_t lo, size_t hi);
/* One step: w -= update(g * grad_scale). Reports a non-finite gradient norm when clipping. */
lk_status lk_optim_step(lk_optim *o, float *w, const float *g, float grad_scale);
/* The same step over the parameters [lo, hi) only (a GAN's networks each take theirs,
 * with their own clipping norm); the step count advances when `last` is set. */
lk_status lk_optim_step_part(lk_optim *o, float *w, const float *g, float grad_scale, size_t lo,
                             size_t hi, int last);
/* The general form: w is the flat buffer, g[i - g_from] the gradient of parameter i (a
 * slice's own gradient buffer under ZeRO-2); [lo, hi) is cut to the optimizer's slice
 * (which may leave nothing on this rank: it still takes part in the norm's sum). */
lk_status lk_optim_step_range(lk_optim *o, float *w, const float *g, size_t g_from, float grad_scale,
                              size_t lo, size_t hi, int last);
/* Mixed precision: after each update, the parameters it updated are rounded into w16 (a
 * bf16 buffer with the flat buffer's offsets) as r says, keyed by the step number and
 * each parameter's offset so every rank rounds every parameter alike. NULL: none. */
void lk_optim_set_working(lk_optim *o, uint16_t *w16, const lk_round *r);
/* With cfg.decay LK_DECAY_MATRICES, decay and L1 apply to m's tensors of 2 or more
 * dimensions only (lk_model_decay_ranges); with LK_DECAY_ALL nothing changes. */
struct lk_model;
lk_status lk_optim_decay_model(lk_optim *o, const struct lk_model *m);
/* Keeps the parameters in n sorted [lo, hi) pairs as they are (copied): no update, no
 * weight decay, no state change (fine-tuning's --freeze). */
lk_status lk_optim_freeze(lk_optim *o, const size_t *ranges, int n);
/* Number of state buffers the kind uses (0, 1 or 2), e.g. for checkpoints. */
int lk_optim_state_count(lk_optim_kind kind);

#endif
