/* plan.h - `lockstep plan`: what a data-parallel step would cost on N ranks.
 *
 * Measured here, on one rank: the forward, backward and optimizer times of a step and,
 * during backward, when each gradient bucket becomes final. Modelled: an all-reduce of
 * S bytes over N ranks on links of latency alpha (s, one hop) and inverse bandwidth beta
 * (s/byte) costs
 *     ring  2(N-1) alpha + 2(N-1)/N S beta
 *     tree  2 ceil(log2 N) (alpha + S beta)      (reduce up a binary tree, broadcast down)
 * and the cheaper is used (the tree wins for small messages on many ranks). Buckets are
 * all-reduced one after another, each as soon as it is final and the previous one is
 * done, while backward goes on; the step ends when both backward and the last bucket are
 * done, then the optimizer runs:
 *     step(N) = forward + max(backward, end of the last all-reduce) + optimizer
 * samples/s = N x batch / step(N), efficiency = step(1) / step(N) (weak scaling).
 * alpha and beta come from the link (--latency-us, --link-gbps), or are fitted to a
 * `lockstep bench comm --csv` sweep of the real network (least squares of the relative
 * error, over the sweep's sizes from a quarter of the smallest bucket to 4x the largest).
 *
 * Run under mpirun with K ranks on one host, every rank measures at once and each step
 * counts the slowest rank's times: the compute as it runs when K ranks share the host's
 * cores, memory and PCIe (K = ranks per node; on an emulated cluster, every host), with
 * the wait for the slowest rank in it.
 *
 * Where the all-reduce needs the cores that compute (CPU ranks over TCP, whose copies,
 * protocol and progress run on those cores; hosts emulated on one machine), overlap is
 * not free, and --shared-cores models it:
 *   under mpirun (2 or more ranks), measured: each step alone is followed by one whose
 *   buckets all-reduce over the job's communicator beside backward, as training's do,
 *   and one whose buckets all-reduce after backward, alone. The latter's time
 *   (comm_after) sets the level of the alpha-beta model: alpha and beta are scaled by
 *   comm_after / comm_model (comm_model: the same all-reduces on the measuring ranks in
 *   the model fitted to the sweep, whose back-to-back all-reduces on an otherwise idle
 *   machine are not those of a step, which start after compute, with the links idle
 *   and the ranks in step). Where the ranks' compute fills the cores, the compute keeps
 *   them and the comm thread waits for one at every step of its all-reduce: backward
 *   runs as fast as alone, the all-reduces slower. Beside backward they run at
 *       rate = 1 - (comm_beside - comm_after) / overlap
 *   of their speed alone (comm_beside: their time in a step beside backward, each start
 *   to done; overlap: the part of it during backward), and after backward at full
 *   speed. Run plan on the ranks and network it projects (a few nodes of the cluster;
 *   the emulated hosts), so that the all-reduces it measures are theirs; at N = those
 *   ranks the projection then rebuilds the measured step from its parts.
 *   on one rank, estimated: the share of the fitted all-reduce time that the wire does
 *   not explain, share = 1 - beta_link / beta_fitted (beta_link from --link-gbps), is
 *   taken as the cores', and backward beside an all-reduce runs at 1 - share of its
 *   speed (a wire-bound all-reduce, share 0, hides for free; a CPU-bound one, share ~1,
 *   does not hide at all). */
#ifndef LK_PLAN_H
#define LK_PLAN_H

#include <stdio.h>

#include "../core/model.h"
#include "../core/optim.h"
#include "trainer.h"

#define LK_PLAN_MAX_BUCKETS 256

typedef struct {
    double fwd_ms, bwd_ms, opt_ms;        /* medians of the measured steps */
    int nbuckets;
    double bucket_bytes[LK_PLAN_MAX_BUCKETS];
    double ready_ms[LK_PLAN_MAX_BUCKETS]; /* from the start of backward */
    int batch;
    /* with --shared-cores under mpirun, the steps with the all-reduces beside backward: */
    double bwd_beside_ms, overlap_ms;     /* that backward, and how long one was in flight in it */
    double comm_beside_ms;                /* the step's all-reduces, each start to done, summed */
    double comm_after_ms;                 /* the same all-reduced after backward, alone */
    /* what each bucket sends under another option (plan_options.c; nphases 0: bucket_bytes
     * in one all-reduce): its all-reduces' bytes, one after another, and the compute added
     * to them (compression: ms on this rank) */
    int nphases[LK_PLAN_MAX_BUCKETS];
    double phase_bytes[LK_PLAN_MAX_BUCKETS][3];
    double extra_ms[LK_PLAN_MAX_BUCKETS];
    /* measured for the options (plan_options.c) */
    double pack16_ms[LK_PLAN_MAX_BUCKETS];   /* a bucket into the 16-bit wire and back */
    double psgd_ms[LK_PLAN_MAX_BUCKETS];     /* PowerSGD's arithmetic on the bucket at rank R */
    double psgd_host_ms[LK_PLAN_MAX_BUCKETS]; /* its host stages' (powersgd.h), every row one process's */
    double psgd_bytes[LK_PLAN_MAX_BUCKETS][3]; /* its uncompressed tensors, P, Q */
    int psgd_rank;
    double state_bytes;                   /* parameters, buffers, optimizer state: local SGD's average */
} lk_plan_measure;

typedef struct {
    int ranks;
    double step_ms, comm_ms, exposed_ms, hidden, samples_per_s, efficiency;
    int ring_buckets, tree_buckets;       /* which algorithm each bucket took */
} lk_plan_row;

/* The cost of one all-reduce of `bytes` over n ranks; *tree = 1 when the tree is cheaper. */
double lk_plan_allreduce_s(double bytes, int n, double alpha, double beta, int *tree);
/* How fast the all-reduces went beside backward, measured: they took comm_beside_ms where
 * the model has comm_alone_ms, overlap_ms of it beside backward, the rest alone: the part
 * beside ran at 1 - (beside - alone) / overlap of the speed alone (clamped to 0.01..1;
 * 1 when nothing overlapped). */
double lk_plan_comm_rate(double comm_beside_ms, double comm_alone_ms, double overlap_ms);
/* The projected step on n ranks; beside backward, backward runs at 1 - cpu_share and an
 * all-reduce at comm_rate of their speeds alone. */
lk_plan_row lk_plan_project(const lk_plan_measure *m, int n, double alpha, double beta,
                            double cpu_share, double comm_rate, double step1_ms);
/* Fits alpha and beta to the rows of a bench-comm CSV measured on `ranks` ranks (those of
 * lo..hi bytes where there are 2, else all): least squares of the relative error of
 * time against size, through the ring formula. */
lk_status lk_plan_fit_csv(const char *path, double lo, double hi, double *alpha, double *beta, int *ranks);

typedef struct {
    lk_train_opts train;   /* model, data, batch, threads, bucket size, optimizer */
    int ranks;             /* project up to this many */
    double link_gbps, latency_us;
    const char *comm_csv;  /* fit alpha, beta to this sweep instead */
    int steps;             /* measured steps after 3 of warm-up */
    int shared_cores;      /* the all-reduces need the cores that compute (CPU ranks over
                              TCP, emulated hosts): measured under mpirun, else estimated */
    lk_comm *comm;         /* the launch: with N ranks, all N measure at once on this host
                              (each step the slowest rank's times); rank 0 prints */
} lk_plan_opts;

/* The communication options on n ranks (--grad-compress none, bf16, fp16, powersgd:R;
 * --local-steps K), each step's bytes and predicted step, the fastest, and the one to use
 * (plan_options.c): measure_options times the compression arithmetic on m's gradients in
 * buckets bk. shm16: the n ranks share one host and lockstep's shared memory, where 16-bit
 * sums are float32's pass over the gradient buffers with the roundings in it, and PowerSGD
 * runs its host stages: float32's pass with the arithmetic of 1/n of the rows in it. */
lk_status lk_plan_measure_options(lk_model *m, const lk_optim *opt, const size_t *begin, const size_t *end,
                                  int nbk, int psgd_rank, lk_plan_measure *pm);
void lk_plan_print_options(const lk_plan_measure *pm, int n, double alpha, double beta, double cpu_share,
                           double comm_rate, long local_steps, int shm16, FILE *out);
/* Measures (every rank of o->comm at once) and prints, on rank 0, the projection for
 * 1, 2, 4 ... ranks and `ranks`, and the communication options at `ranks`. */
lk_status lk_plan(const lk_plan_opts *o, FILE *out);
/* `lockstep plan --memory`: the memory plan (memplan.h) of a rank of a run of o->train on
 * o->ranks ranks, all on this host (o->train.zero, shm, optimizer, batch ...), printed by
 * kind with the host's verdict; nothing is allocated for the model. */
lk_status lk_plan_memory(const lk_plan_opts *o, FILE *out);

#endif
