/* average.h - local SGD (--local-steps K [--local-start N]): after N data-parallel steps each
 * rank steps its own optimizer on its own gradients (the buckets stay idle), and every K
 * steps the ranks average their parameters, buffers (batch norm's statistics) and optimizer
 * state - post-local SGD (Lin et al., 2020; PyTorch's PeriodicModelAverager averages the
 * parameters only: lockstep averages the optimizer state too, so after an average the
 * replicas agree in full and the replica check holds). An average is also forced before an
 * evaluation, a checkpoint and the end of the run, so those always see averaged parameters.
 *
 * A local step's gradient: each rank's loss is scaled to the global batch (the ranks' sum is
 * the step's mean gradient), so its own is 1/world of its batch's mean: the optimizer takes
 * it times world (lk_averager_grad_scale). With K = 1 and plain or momentum SGD (linear in
 * the gradient) the run is data-parallel SGD's up to float rounding. */
#ifndef LK_AVERAGE_H
#define LK_AVERAGE_H

#include "../core/model.h"
#include "../core/optim.h"
#include "comm.h"

typedef struct lk_averager lk_averager;
struct lk_averager {
    lk_comm *comm;
    lk_model *model;
    lk_optim *opt;
    long k;          /* average every k local steps (0: local SGD off) */
    long start;      /* steps of plain data parallelism first */
    long last;       /* steps done at the last average (or at start) */
    long averages;   /* averages taken */
    float local_scale; /* a local step's gradient factor (lk_averager_grad_scale): world, or
                          1 where each rank's loss is its own batch's mean (federated clients) */
    /* How the replicas are combined (NULL: the mean of parameters, buffers and optimizer
     * state): federated averaging's weighted mean, or its clipped and noised update. */
    lk_status (*combine)(void *user, lk_averager *a, long done); /* (done: steps taken) */
    void *combine_user;
};

/* k 0: off (every step data-parallel). opt keeps state for every parameter (no ZeRO). done:
 * the steps already taken (a resumed run's: its checkpoint holds averaged parameters). */
lk_status lk_averager_init(lk_averager *a, lk_comm *c, lk_model *m, lk_optim *opt, long k, long start,
                           long done);
/* 1 when the step after `done` steps runs locally (no gradient all-reduce). */
int lk_averager_local(const lk_averager *a, long done);
/* What the optimizer multiplies the step's gradient by: world for a local step, else 1. */
float lk_averager_grad_scale(const lk_averager *a, long done);
/* Without --sync-bn each rank's running statistics (the model's buffers) follow its own
 * batches: before they are used (evaluation) or saved, every rank takes their mean. */
lk_status lk_average_buffers(lk_comm *c, lk_model *m);
/* After a step (`done` steps now): averages when the local steps since the last average
 * reach k, or, with force, when there were any; *averaged (may be NULL) says whether. */
lk_status lk_averager_after(lk_averager *a, long done, int force, int *averaged);

#endif
