/* run.h - the state of a training run, shared by trainer.c (the loop) and
 * trainer_setup.c (building it: data, replica, optimizer, communication, memory plan,
 * checkpoints). Internal to src/train. */
#ifndef LK_RUN_H
#define LK_RUN_H

#include <stdio.h>
#include "../comm/average.h"
#include "../comm/bucket.h"
#include "../comm/topo.h"
#include "../comm/zero.h"
#include "../data/dataset.h"
#include "dpsgd.h"
#include "fedavg.h"
#include "gan.h"
#include "guard.h"
#include "memplan.h"
#include "metrics.h"
#include "peak.h"
#include "replica.h"
#include "trainer.h"

typedef struct {
    lk_dataset train, val;
    lk_replica r;
    lk_optim *opt;
    lk_sampler sampler;
    lk_metrics metrics;
    double *step_ms;
    lk_comm *comm, *own_comm;
    lk_buckets *buckets;
    lk_zero_state *zero; /* how the optimizer steps: every parameter, or this rank's slice */
    lk_averager avg;     /* local SGD's averaging (k 0: off) */
    lk_gan gan;         /* a GAN's state; gan.r is NULL for other models */
    lk_dp dp;           /* DP-SGD's state (dp.on 0: off) */
    lk_fed fed;         /* the ranks as federated clients (fed.on 0: not) */
    float *host_params; /* host copy of the parameters (broadcast, replica checks) */
    long total, step;   /* optimizer steps: the run's and the current one */
    int epoch, epochs, steps_per_epoch;
    long epoch_step;    /* optimizer steps taken in the epoch being trained */
    size_t grad_lo, grad_hi; /* the gradients the buckets reduce: all, or (--freeze) the span of
                                the layers that train */
    int new_head;            /* --new-head: the layer that starts afresh (head_layer) */
    int frozen_tensors;      /* --freeze: tensors kept as they are, and the parameters that train */
    size_t kept;
    char resumed_from[600]; /* the checkpoint --resume named (its latest step one) */
    lk_guard guard;     /* every step's check of the loss and the gradient */
    lk_topo_binding binding;
    double flops_sample; /* model FLOPs of one sample's training step (forward + backward) */
    double peak;         /* the job's peak FLOP/s: every rank's summed */
    double runtime_bytes; /* resident before the model, the data and the backend's buffers aside */
    double data_bytes;    /* resident growth while the datasets loaded */
    lk_mem_plan plan;    /* this rank's memory plan */
    double peak_dev;     /* the GPU's memory in use, at its highest seen (after steps) */
    const lk_train_opts *opts;
    lk_progress *prog;
    lk_peak own_peak;    /* this rank's, and where it comes from */
    struct {            /* LK_INJECT_FAULT=KIND:RANK:STEP, for testing failure handling */
        char kind[16];
        int rank;
        long step;
        char once[512];  /* LK_INJECT_FAULT_ONCE: created as the fault fires ("": none) */
    } fault;
} run_state;

/* The run's gradient bucket sets: the model's, or a GAN's discriminator's and generator's
 * (NULL where there is none: one rank, or no GAN). */
static inline void lk_run_bucket_sets(const run_state *s, lk_buckets *sets[2])
{
    sets[0] = s->buckets ? s->buckets : s->gan.bd;
    sets[1] = s->gan.bg;
}

/* An injected fault is about to happen: LK_INJECT_FAULT_ONCE's file is created. */
static inline void lk_fault_fired(const run_state *s)
{
    if (!s->fault.once[0]) return;
    FILE *f = fopen(s->fault.once, "w");
    if (f) fclose(f);
}

/* Builds everything the run needs before its first step (lk_trainer_free undoes it). */
lk_status lk_trainer_setup(const lk_train_opts *o, run_state *s, lk_progress *prog);
void lk_trainer_free(run_state *s);
/* A checkpoint into o->save_dir, or (--save-every, --keep) a step one under it published
 * as its latest (a collective: every rank calls it). */
lk_status lk_trainer_save(const lk_train_opts *o, run_state *s);

#endif
