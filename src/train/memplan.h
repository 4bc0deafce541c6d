/* memplan.h - the memory plan: the bytes a training rank holds, by kind, before it holds
 * them, and whether the host (and the GPU) can hold every rank's.
 *
 * The model is built dry (lk_model_build_ex LK_BUILD_DRY: its layout, its arena's sizes and
 * the backend's planned buffers, with no memory behind them), so the plan is the run's own
 * arithmetic, not an estimate kept beside it:
 *   parameters    (trainable + buffers) x 4
 *   gradients     --zero 0/1: every parameter's; 2: this rank's slice and the buckets'
 *                 staging (bucket.h); through shared memory (the comm thread on one host)
 *                 they live in the host's region, where a rank touches its own buffer and
 *                 its share (1/N) of the others' (the all-reduce's sums)
 *   optimizer     state buffers (0-2) x every parameter, or (--zero 1, 2) the slice
 *   activations   the arena: layer outputs, what backward keeps, the gradient buffers
 *   workspace     the layers' shared scratch and the backend's own (oneDNN's scratchpad
 *                 and packed operands)
 *   communication shared memory's slots, a GPU's pinned staging buffer
 *   data          the training and validation sets in memory, a batch's host buffers
 *   runtime       the process before data and model (libraries, MPI, the CPU engine),
 *                 measured
 * Host memory is what resident-set size counts (RSS: shared pages a rank touches are
 * its too); the host's total counts the shared region once. On a GPU, parameters,
 * gradients, optimizer state, activations and workspace are the device's. */
#ifndef LK_MEMPLAN_H
#define LK_MEMPLAN_H

#include <stdio.h>

#include "../core/model.h"
#include "../core/optim.h"
#include "../data/dataset.h"
#include "../models/zoo.h"

typedef enum {
    LK_MEM_PARAMS = 0, LK_MEM_GRADS, LK_MEM_OPTIM, LK_MEM_ACT, LK_MEM_WORKSPACE, LK_MEM_COMM,
    LK_MEM_DATA, LK_MEM_RUNTIME, LK_MEM_KINDS
} lk_mem_kind;

typedef struct {
    const lk_spec *model;  /* the model, its sizes, the data's sample shape and classes */
    const lk_arch *arch;
    lk_shape sample;
    int nclasses;
    int batch;             /* per rank */
    lk_recompute recompute;
    lk_dtype precision;    /* of the products (a bf16 model keeps a working copy besides) */
    lk_optim_kind optim;
    int zero;              /* 0, 1, 2 */
    int world, rank;       /* the job, and the rank planned */
    int local_world;       /* ranks on this host (every host runs as many) */
    size_t bucket_bytes;
    int shm;               /* gradients through shared memory (CPU, comm thread, >= 2 ranks a host) */
    double data_bytes;     /* datasets and batch buffers in host memory */
    double runtime_bytes;  /* the process before data and model */
    double peak_before;    /* its resident peak so far (transients: the CPU's peak measurement):
                              the rank's host total is at least that */
    lk_dtype wire;         /* what gradient buckets travel as (--grad-dtype) */
    int powersgd_rank;     /* --grad-compress powersgd:R (0: none): its state, per rank */
} lk_mem_inputs;

typedef struct {
    double host[LK_MEM_KINDS]; /* this rank's resident host memory by kind */
    double dev[LK_MEM_KINDS];  /* this rank's GPU memory by kind (0 on the CPU) */
    double host_rank, dev_rank;/* their sums */
    double shared;             /* of the host bytes, shared memory mapped by every local rank */
    double host_total;         /* every rank of the host (the shared region once) */
    double host_avail;         /* the host's available memory when planned (MemAvailable) */
    double dev_avail;          /* the GPU's free memory (0: not a GPU) */
    int local_world;
    int fits;                  /* host_total <= host_avail, and the GPU's share fits it */
} lk_mem_plan;

/* The plan of in->rank, from the model built dry on dev (which gives its free memory and
 * its backend's buffers, and keeps the primitives it plans for the real build). */
lk_status lk_mem_plan_make(const lk_mem_inputs *in, lk_device *dev, lk_mem_plan *out);
const char *lk_mem_kind_name(lk_mem_kind k);
/* One line: "memory per rank: params 3.10 GB, grads ... = 8.52 GB; host: 2 ranks 17.0 GB of
 * 23.4 GB available (fits)". */
void lk_mem_plan_line(const lk_mem_plan *p, char *buf, size_t len);
/* A table by kind, for `lockstep plan --memory`. */
void lk_mem_plan_print(const lk_mem_plan *p, FILE *out);
/* The data's bytes: the datasets as loaded (measured: `loaded`), the sampler's order of
 * train's samples and a batch's host buffers. */
double lk_mem_data_bytes(const lk_dataset *train, double loaded, int batch);
/* This process's resident memory now and at its peak (VmRSS, VmHWM), and the host's
 * available memory (MemAvailable), in bytes; 0 where /proc does not say. */
double lk_mem_rss(void);
double lk_mem_rss_peak(void);
double lk_mem_available(void);

#endif
