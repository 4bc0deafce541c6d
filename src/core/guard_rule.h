/* guard_rule.h - the step check's rule (--nan-policy, --max-skips, --skip-spikes) and its
 * state, which live in the model's device memory: the device applies the rule (a one-thread
 * kernel on CUDA; plain C on the CPU - this header is both) and the optimizer's pass reads
 * the verdict (`skip`) there, so a GPU checks and gates every step without the host waiting
 * for it. The host reads the state where it waits anyway (train/guard.h).
 *
 * A step: BEGIN keeps the log's loss sum; after backward in[0] gets the sum of squares of
 * what this rank steps on and PREPARE puts the step's loss sum and samples beside it; the
 * three are all-reduced (every rank then holds the same numbers, NaN and infinity carried
 * by the sums); DECIDE applies the rule, alike on every rank. */
#ifndef LK_GUARD_RULE_H
#define LK_GUARD_RULE_H

#include "rng.h" /* LK_HD */

#define LK_GUARD_WINDOW 100 /* --skip-spikes: the steps taken that the mean and deviation cover */
#define LK_GUARD_MIN 20     /* ... and how many must be known first */

typedef enum { LK_NAN_STOP = 0, LK_NAN_SKIP } lk_nan_policy;
enum { LK_GUARD_BEGIN = 0, LK_GUARD_PREPARE, LK_GUARD_DECIDE };
enum { LK_GUARD_NONFINITE = 1, LK_GUARD_SPIKE, LK_GUARD_TOO_MANY };

typedef struct {
    int policy;          /* lk_nan_policy */
    long long max_skips; /* skips in a row before stopping */
    double spike_z;      /* 0: no spike rule */
} lk_guard_cfg;

typedef struct {
    float in[3];       /* sum of squares, the step's loss sum, its samples: all-reduced */
    float skip;        /* the verdict: nonzero drops this step's update */
    float loss_before; /* the log's loss sum before the step (a skipped step's loss leaves it) */
    float pad_;
    long long in_a_row, skipped; /* skips now in a row, and in all */
    double dropped;              /* the samples of the steps dropped, every rank's */
    long long stopped;           /* the step (1-based) the run stops at, 0: none; every later
                                    step's update is dropped too */
    int stop_kind;               /* LK_GUARD_NONFINITE or LK_GUARD_TOO_MANY */
    int last_kind;               /* the last skip's: LK_GUARD_NONFINITE or LK_GUARD_SPIKE */
    long long last_step;         /* the last skip's step (1-based) */
    double loss, sumsq;          /* the last skip's or the stop's */
    double mean, sd;             /* ... and the window's, for a spike */
    double recent[LK_GUARD_WINDOW];
    int nrecent, next;
} lk_guard_state;

/* One phase of the step's check (see above); step: the optimizer steps taken before it. */
LK_HD void lk_guard_apply(lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc,
                          float samples)
{
    if (phase == LK_GUARD_BEGIN) {
        g->loss_before = *loss_acc;
        return;
    }
    if (phase == LK_GUARD_PREPARE) {
        g->in[1] = *loss_acc - g->loss_before;
        g->in[2] = samples;
        return;
    }
    g->skip = 1.0f;
    if (g->stopped) return; /* (the host has not read it yet: nothing more changes) */
    const double sumsq = g->in[0], loss = (double)g->in[1] / (double)g->in[2];
    const int bad = !isfinite(sumsq) || !isfinite(loss);
    int spike = 0;
    double mean = 0.0, sd = 0.0;
    if (!bad && c.spike_z > 0.0 && g->nrecent >= LK_GUARD_MIN) {
        for (int i = 0; i < g->nrecent; i++) mean += g->recent[i];
        mean /= g->nrecent;
        for (int i = 0; i < g->nrecent; i++) sd += (g->recent[i] - mean) * (g->recent[i] - mean);
        sd = sqrt(sd / g->nrecent);
        spike = sd > 0.0 && loss > mean + c.spike_z * sd; /* (a flat window flags nothing) */
    }
    if (!bad && !spike) {
        g->in_a_row = 0;
        g->skip = 0.0f;
        if (c.spike_z > 0.0) { /* the window holds steps taken */
            g->recent[g->next] = loss;
            g->next = (g->next + 1) % LK_GUARD_WINDOW;
            if (g->nrecent < LK_GUARD_WINDOW) g->nrecent++;
        }
        return;
    }
    g->loss = loss;
    g->sumsq = sumsq;
    g->mean = mean;
    g->sd = sd;
    *loss_acc = g->loss_before; /* nothing learnt from it: the log's sums without it */
    g->dropped += g->in[2];
    if (bad && c.policy == LK_NAN_STOP) {
        g->stopped = step + 1;
        g->stop_kind = LK_GUARD_NONFINITE;
        return;
    }
    g->skipped++;
    g->last_kind = bad ? LK_GUARD_NONFINITE : LK_GUARD_SPIKE;
    g->last_step = step + 1;
    if (++g->in_a_row > c.max_skips) {
        g->stopped = step + 1;
        g->stop_kind = LK_GUARD_TOO_MANY;
    }
}

#endif
