/* dpsgd.h - differentially private SGD (Abadi et al., 2016), data-parallel.
 *
 * Each step: every sample's gradient is clipped to norm C, the clipped gradients are summed
 * (over the ranks by the usual bucketed all-reduce), Gaussian noise N(0, sigma^2 C^2) is added
 * once to that global sum and the result divided by the expected global batch. The noise is
 * drawn from the counter-based generator keyed by (seed, step, parameter element), so every
 * rank adds the same numbers without sending them, and a rank stepping on a ZeRO slice draws
 * that slice's part of the same noise.
 *
 * Per-sample norms, then the clipped sum, in two passes over each chunk of samples:
 *   1. the norms. Where every layer with parameters computes them itself (a linear layer:
 *      |x_i|^2 |dy_i|^2 on flat inputs, the per-sample gradient formed one sample at a time
 *      over sequences; layer.h's sample_sqnorms), one forward and backward of the chunk
 *      gives them all; otherwise each sample runs forward and backward alone and its norm is
 *      that of the gradient buffer (any layer, any device: the per-sample gradients
 *      materialised one at a time).
 *   2. forward again (the same step and sample positions: the same dropout masks), the loss's
 *      gradient row of sample i scaled by min(1, C / (|g_i| + 1e-6)) / E, backward with the
 *      buckets: the gradient of the clipped sum, all-reduced as it is produced.
 * Layers that mix samples (batch norm) or add loss terms of their own (the VAE's KL) are
 * refused: a sample's gradient would not be its own.
 *
 * Batches: Poisson sampling (each of the N training samples in a step's global batch with
 * probability q = B x accum x world / N, independently, drawn identically on every rank; the
 * ranks take consecutive shares of the selection), the sampling the accountant's guarantee
 * assumes; or the shuffled epochs of the usual sampler (the guarantee is then heuristic: a
 * warning says so). The accountant (rdp.h) adds each step at (q, sigma) and reports epsilon at
 * delta; checkpoints carry its account (privacy.json) so a resumed run keeps counting. */
#ifndef LK_DPSGD_H
#define LK_DPSGD_H

#include "../core/model.h"
#include "../data/dataset.h"
#include "rdp.h"
#include "replica.h"
#include "private_training.h"

/* "poisson" | "shuffle" */
lk_status lk_dp_sampling_parse(const char *name, int *out);

/* One chunk of a step's samples on this rank: at most the model's batch. */
typedef struct {
    const int32_t *idx;
    int n;
    long base;     /* the position of its first sample in the step's global batch */
    int dummy;     /* no sample: one row of weight 0 (a rank Poisson gave nothing still
                      takes part in the all-reduce) */
} lk_dp_chunk;

typedef struct {
    lk_dp_opts o;
    int on;
    double sigma, q, delta;
    double expected;   /* the global batch the noisy sum is divided by */
    int direct;        /* the norms from the layers (one backward), else a backward per sample */
    lk_rdp acct;       /* spent so far */
    long accounted;    /* steps in acct */
    long pending;      /* steps taken since, at (q, sigma) */
    size_t lo, hi;     /* the gradients clipped, noised and measured (all, or --freeze's span) */
    float *sq;         /* device, max_batch: the chunk's squared norms */
    float *sq_host;    /* every sample of the step (host) */
    float *noise;      /* device scratch: the largest parameter tensor */
    int32_t *sel;      /* the step's selection (Poisson: global; shuffle: this rank's) */
    int nsel_cap;
    lk_dp_chunk *chunks;
    int nchunks, chunks_cap;
    double clipped, seen; /* samples whose gradient was clipped, and all (since the last log) */
} lk_dp;

/* Checks the model can be trained privately, solves sigma for the planned `total` steps when
 * a budget is given, and allocates. n: the training set's size; global_batch: B x accum x
 * world; lo, hi: the gradients that train. */
lk_status lk_dp_init(lk_dp *dp, const lk_dp_opts *o, lk_model *m, int n, long global_batch, long total,
                     size_t lo, size_t hi, int quiet_rank);
void lk_dp_free(lk_dp *dp, lk_device *dev);

/* The step's chunks on this rank: Poisson's share of the step's selection (step-keyed), or
 * (shuffle) the sampler's `count` micro-batches from sampler step `first`. *global: the
 * step's samples over every rank. */
lk_status lk_dp_plan_step(lk_dp *dp, const lk_sampler *smp, int first, int count, long step, uint64_t seed,
                          int n_train, int max_batch, long *global);

/* Pass 1 for chunk k: its samples' squared gradient norms into sq_host. The model's
 * gradient buffer is overwritten (its bucket hooks are kept out). */
lk_status lk_dp_norms(lk_dp *dp, lk_replica *r, const lk_dataset *d, int k, long step);
/* Pass 2 for chunk k: forward, the loss with each sample's row scaled by its clipping factor
 * over the expected batch, backward (mode: the step's first chunk replaces the gradients).
 * A dummy chunk's row is scaled by 0. */
lk_status lk_dp_clipped_backward(lk_dp *dp, lk_replica *r, const lk_dataset *d, int k, long step,
                                 lk_grads_mode mode);
/* The noise of step `step` added to the reduced gradient this rank steps on: g holds the
 * flat buffer's [g_lo, g_hi) (every gradient, or a ZeRO slice). */
lk_status lk_dp_add_noise(lk_dp *dp, lk_model *m, float *g, size_t g_lo, size_t g_hi, long step, uint64_t seed);
/* A step was taken. */
static inline void lk_dp_stepped(lk_dp *dp) { dp->pending += dp->on; }
/* epsilon spent so far at dp->delta (NaN when off). */
double lk_dp_epsilon(lk_dp *dp);
/* The account into DIR/privacy.json (rank 0, before the checkpoint's config: a checkpoint never
 * claims less than was spent), and back; a private run cannot resume a checkpoint without one. */
lk_status lk_dp_save(lk_dp *dp, const char *dir);
lk_status lk_dp_load(lk_dp *dp, const char *dir, long steps_done);

#endif
