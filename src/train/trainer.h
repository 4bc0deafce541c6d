/* trainer.h - the training loop: sharded batches, forward, loss, backward,
 * optimizer step, validation, metrics and checkpoints. */
#ifndef LK_TRAINER_H
#define LK_TRAINER_H

#include "../comm/comm.h"
#include "../core/layer.h"
#include "../core/optim.h"
#include "../models/zoo.h"
#include "private_training.h"

typedef struct {
    const char *model;        /* a built-in model's name (NULL: --resume's checkpoint's model, else cnn) */
    const char *model_file;   /* --model-file: a spec file instead (NULL: none) */
    const lk_spec *spec;      /* the model; lk_train sets it from the three above where it is NULL */
    lk_arch arch;             /* its sizes: --layers --heads --dim --ctx (0: defaults) */
    const char *data;         /* --data SPEC */
    int epochs;               /* used when steps == 0 */
    long steps;               /* total optimizer steps (0: epochs decide) */
    int batch;                /* per rank */
    lk_optim_config optim;
    lk_init_kind init;
    uint64_t seed;
    const char *device;
    int threads;
    const char *save_dir;     /* NULL: no checkpoint */
    long save_every;          /* also a checkpoint every N steps, as save_dir/step-N (0: epochs only) */
    int keep;                 /* step checkpoints: keep the newest K (0: all) */
    const char *resume_dir;   /* NULL: fresh start (a checkpoint, or a directory of step ones) */
    int force_resume;         /* resume although the schedule or the data changed */
    const char *init_from;    /* start from this checkpoint's weights, with a fresh optimizer and
                                 schedule (fine-tuning; NULL: the model's initialisation) */
    int new_head;             /* --init-from but the head (the last layer with weights), which starts
                                 fresh for the data's classes */
    const char *freeze;       /* parameters no step changes: comma-separated name patterns (NULL: none) */
    int nan_policy;           /* lk_nan_policy: a non-finite loss or gradient stops (0) or is skipped */
    long max_skips;           /* skipped steps in a row before stopping */
    double skip_spikes;       /* skip a step whose loss is Z deviations above the recent mean (0: off) */
    const char *metrics_path; /* NULL: no JSON lines */
    long eval_every;          /* also validate every N steps (0: at epoch ends only) */
    long log_every;           /* metrics/log line every N steps */
    int train_limit;          /* use only the first N training samples (0: all) */
    int val_limit;            /* use only the first N validation samples (0: all) */
    int progress;             /* -1 auto (bar on a terminal), 0 plain lines, 1 bar */
    int quiet;
    lk_comm *comm;            /* the ranks (NULL: a world of one) */
    int accum;                /* micro-batches per optimizer step */
    double bucket_mb;         /* gradient bucket size */
    int comm_progress;        /* lk_progress_mode: who drives the all-reduces during backward */
    int shm;                  /* same-host ranks all-reduce through shared memory (comm thread) */
    int gpu_comm;             /* lk_gpu_comm: how GPU replicas all-reduce */
    double comm_timeout;      /* seconds lockstep's own waits allow another rank */
    long check_every;         /* compare replica checksums every N steps (0: at the end only) */
    int bind;                 /* bind each rank to its share of the host's cores (hwloc) */
    int sync_bn;              /* batch norm statistics over the global batch (SyncBatchNorm) */
    double peak_tflops;       /* the peak per rank MFU divides by (0: measured or known, peak.h) */
    int zero;                 /* ZeRO stage: 0 none, 1 optimizer state, 2 also gradients (zero.h) */
    int recompute;            /* lk_recompute: what backward computes again instead of keeping */
    int precision;            /* lk_dtype of the products: LK_F32, or LK_BF16 (mixed precision) */
    int stochastic_round;     /* bf16: the weights' working copy rounded stochastically */
    int grad_dtype;           /* lk_dtype the gradient buckets travel as (LK_F32; LK_BF16, LK_F16:
                                 --grad-compress, --grad-dtype bf16) */
    int powersgd_rank;        /* --grad-compress powersgd:R (0: off) */
    long compress_start;      /* steps of plain all-reduces before compressing */
    long local_steps;         /* local SGD: average every K steps of each rank's own (0: off) */
    long local_start;         /* ... after this many data-parallel steps (average.h) */
    lk_dp_opts dp;            /* DP-SGD: --dp-clip --dp-noise --dp-epsilon --dp-delta --dp-sampling
                                 (clip 0: off; dpsgd.h) */
    lk_fed_opts fed;          /* the ranks as federated clients: --partition --fedavg
                                 --client-fraction --local-epochs --dp-level (fedavg.h) */
} lk_train_opts;

/* Defaults: (cnn), fashion-mnist, 1 epoch, batch 64, momentum lr 0.01 ... */
lk_train_opts lk_train_defaults(void);

typedef struct {
    double val_loss, val_acc;
    double samples_per_s, step_ms_median;
    double flops_per_s, mfu; /* model FLOP/s over the timed steps, and that over the peak */
    double peak_host_bytes;  /* this rank's peak resident memory (VmHWM) */
    double peak_dev_bytes;   /* its GPU's memory in use at the highest seen (0: not a GPU) */
    double peak_host_all;    /* every rank's peak resident memory added up */
    long steps;
    double epsilon;          /* DP-SGD: the privacy spent, at opts.dp.delta (NaN: not private) */
} lk_train_result;

lk_status lk_train(const lk_train_opts *o, lk_train_result *res);
/* The model o names: --model-file's spec, the built-in --model, or (neither given) the one
 * --resume's checkpoint holds, else cnn. */
lk_status lk_train_open_spec(const lk_train_opts *o, lk_spec **out);

/* Evaluates a saved checkpoint on a dataset split ("test" unless the spec says). */
typedef struct {
    double loss, acc;
    int n;
} lk_eval_result;
lk_status lk_eval_checkpoint(const char *ckpt_dir, const char *data_spec, const char *device,
                             int threads, int batch, lk_eval_result *res);

#endif
