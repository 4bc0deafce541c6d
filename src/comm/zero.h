/* zero.h - ZeRO: optimizer state (stage 1) and gradients (stage 2) sharded over the ranks.
 *
 * Every rank owns one contiguous slice of the flat parameter buffer (shard.h). Stage 0 is
 * plain data parallelism: buckets are all-reduced, every rank updates every parameter.
 * Stage 1: buckets are reduce-scattered in place (each rank ends up with the sum of its
 * slice of them: the same volume on the wire as the reduce half of an all-reduce), the
 * optimizer keeps state for the slice only and updates it, and the parameters are
 * all-gathered bucket by bucket (the all-reduce's other half). Stage 2 also drops the
 * full gradient buffer: the layers write into bucket staging (bucket.h) and each bucket
 * leaves only this rank's part, in `slice`; every backward then reduces, and a step's
 * later micro-batches add their part into the slice (gradient accumulation costs one
 * reduce-scatter per micro-batch instead of one per step).
 *
 * The trainer and the GAN take every optimizer step through lk_zero_step, whatever the
 * stage; clipping by global norm sums the slices' squares over the ranks (lk_zero_sum). */
#ifndef LK_ZERO_H
#define LK_ZERO_H

#include "../core/model.h"
#include "../core/optim.h"
#include "bucket.h"
#include "shard.h"

struct lk_zero_state {
    lk_comm *comm;
    lk_model *m;
    int stage;            /* 0, 1, 2 */
    lk_shard shard;       /* over m->nparams */
    float *slice;         /* stage 2: this rank's reduced gradients of [shard.lo, shard.hi), device */
    size_t bucket_bytes;  /* the all-gathers' pieces: the gradient buckets' */
    lk_bucket *pb;        /* scratch for the all-gather's buckets */
    int npb_cap;
    size_t *counts;       /* world entries */
};

/* The slice a rank owns of n parameters under --zero `stage` (all of them at stage 0, or
 * in a world of one); returns the stage in effect (0 in a world of one). */
int lk_zero_shard(lk_shard *s, size_t n, int stage, int world, int rank);
/* ZeRO's state for m on c (stage 2: this rank's gradient slice); the optimizer comes next,
 * with state for z->shard only (lk_optim_create_slice), and is bound with lk_zero_bind. */
lk_status lk_zero_create(lk_zero_state **out, lk_comm *c, lk_model *m, int stage, size_t bucket_bytes);
/* Gives o the slice's state (lk_optim_shard: nothing to do when it has it) and, sharded, the
 * clipping norm's sum over the ranks. */
lk_status lk_zero_bind(lk_zero_state *z, lk_optim *o);
void lk_zero_destroy(lk_zero_state *z);
/* One optimizer step over the parameters [lo, hi) (the whole model, or one network of a
 * GAN): this rank's part of them from its reduced gradients, then (stages 1, 2) every
 * rank's updated part all-gathered. grad_scale as lk_optim_step's. */
lk_status lk_zero_step(lk_zero_state *z, lk_optim *o, float grad_scale, size_t lo, size_t hi, int last);
/* What this rank's optimizer steps on: every gradient at stage 0, its slice's at stages
 * 1 and 2 (in the gradient buffer, or stage 2's slice) - n floats from *g. */
void lk_zero_step_grads(const lk_zero_state *z, const float **g, size_t *n);
/* lk_optim's `sum` hook: v summed over z's communicator. */
lk_status lk_zero_sum(void *z, double *v, int n);
/* The checkpoint's gather (lk_ckpt_gather_fn): optimizer state `state` of parameters
 * [offset, offset + n) from every rank's slice into host (a collective). user: an
 * lk_zero_gather, the sharding and its optimizer. */
typedef struct {
    lk_zero_state *z;
    const lk_optim *o;
} lk_zero_gather;
lk_status lk_zero_gather_state(void *user, int state, size_t offset, size_t n, float *host);

#endif
