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
 * Where the all-reduce is the computing cores' own work too (CPU ranks over TCP, whose
 * copies and protocol run on those cores; hosts emulated on one machine), overlap is
 * not free: with --shared-cores, the share of the fitted all-reduce time that the wire
 * does not explain, share = 1 - beta_link / beta_fitted (beta_link from --link-gbps),
 * is taken as the cores', and backward beside an all-reduce runs at 1 - share of its
 * speed (a wire-bound all-reduce, share 0, hides for free; a CPU-bound one, share ~1,
 * does not hide at all). */
#ifndef LK_PLAN_H
#define LK_PLAN_H

#include <stdio.h>

#include "trainer.h"

#define LK_PLAN_MAX_BUCKETS 256

typedef struct {
    double fwd_ms, bwd_ms, opt_ms;        /* medians of the measured steps */
    int nbuckets;
    double bucket_bytes[LK_PLAN_MAX_BUCKETS];
    double ready_ms[LK_PLAN_MAX_BUCKETS]; /* from the start of backward */
    int batch;
} lk_plan_measure;

typedef struct {
    int ranks;
    double step_ms, comm_ms, exposed_ms, hidden, samples_per_s, efficiency;
    int ring_buckets, tree_buckets;       /* which algorithm each bucket took */
} lk_plan_row;

/* The cost of one all-reduce of `bytes` over n ranks; *tree = 1 when the tree is cheaper. */
double lk_plan_allreduce_s(double bytes, int n, double alpha, double beta, int *tree);
/* The projected step on n ranks. */
lk_plan_row lk_plan_project(const lk_plan_measure *m, int n, double alpha, double beta,
                            double cpu_share, double step1_ms);
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
    int shared_cores;      /* the all-reduce's own work (its time beyond the link's) runs on
                              the cores that compute (CPU ranks over TCP, emulated hosts) */
    lk_comm *comm;         /* the launch: with N ranks, all N measure at once on this host
                              (each step the slowest rank's times); rank 0 prints */
} lk_plan_opts;

/* Measures (every rank of o->comm at once) and prints, on rank 0, the projection for
 * 1, 2, 4 ... ranks and `ranks`. */
lk_status lk_plan(const lk_plan_opts *o, FILE *out);

#endif
