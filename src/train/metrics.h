/* metrics.h - JSON-lines metrics (--metrics FILE) and the console progress view. */
#ifndef LK_METRICS_H
#define LK_METRICS_H

#include <stdio.h>

#include "../core/common.h"

typedef struct {
    FILE *f;
    char path[512];
} lk_metrics;

/* Opens (truncates) path; a NULL path makes every write a no-op. */
lk_status lk_metrics_open(lk_metrics *m, const char *path);
void lk_metrics_close(lk_metrics *m);
typedef struct {
    long step;
    int epoch;
    double loss, lr, samples_per_s, step_ms, comm_ms;
    double hidden_share; /* share of communication overlapped with backward */
    double loss_g;       /* a GAN's generator loss (loss is the discriminator's); NaN: none */
    double flops_per_s;  /* model FLOP/s of the job (peak.h) */
    double mfu;          /* flops_per_s over the job's peak */
    long skipped;        /* steps skipped so far (--nan-policy skip, --skip-spikes) */
} lk_step_record;
lk_status lk_metrics_step(lk_metrics *m, const lk_step_record *r);
/* epsilon: DP-SGD's privacy spent so far at delta (NaN: not a private run) */
lk_status lk_metrics_eval(lk_metrics *m, long step, int epoch, double val_loss, double val_acc, double epsilon,
                          double delta);
typedef struct {
    double samples_per_s, step_ms_median, val_loss, val_acc, wall_s;
    long steps, warmup_steps;
    int epochs, world, batch;
    const char *device, *model;
    double tokens_per_s;  /* language models (NaN: none) */
    double flops_per_sample, flops_per_s, peak_flops, mfu;
    const char *peak_source;
    /* memory of rank 0: its peak resident host memory and GPU memory (0: none), and the
     * plan's for them (memplan.h) */
    double peak_host_bytes, peak_dev_bytes, plan_host_bytes, plan_dev_bytes;
    double peak_host_all, plan_host_all; /* every rank's added up */
    double params;        /* floats of the flat parameter buffer (trainable, padded) */
    const char *precision; /* "fp32", "bf16" */
    long skipped;          /* steps skipped (--nan-policy skip, --skip-spikes) */
    double epsilon, delta; /* DP-SGD's privacy spent (epsilon NaN: not a private run) ... */
    double dp_sigma, dp_q; /* ... at this noise and sampling rate ... */
    long dp_steps;         /* ... over this many steps */
} lk_summary_record;
lk_status lk_metrics_summary(lk_metrics *m, const lk_summary_record *r);

/* Console: a redrawn bar on a terminal, plain lines otherwise. */
typedef struct {
    int bar;        /* 1: terminal bar */
    int quiet;
    double last_draw;
} lk_progress;
void lk_progress_init(lk_progress *p, int mode /* -1 auto, 0 lines, 1 bar */, int quiet);
typedef struct {
    int epoch, epochs, step, steps;
    double loss, loss_g; /* loss_g NaN: none */
    double samples_per_s, flops_per_s, mfu;
} lk_progress_rec;
void lk_progress_step(lk_progress *p, const lk_progress_rec *r, int force);
void lk_progress_line(lk_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
