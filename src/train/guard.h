/* guard.h - every step's check of the loss and the gradient (--nan-policy, --max-skips,
 * --skip-spikes), the same decision on every rank, made where the numbers are.
 *
 * After the gradients' reduction each rank adds up the squares of what it steps on (the
 * whole reduced gradient, or with ZeRO and between local SGD's averages its part) and its
 * step's loss; one all-reduce of three floats (sum of squares, loss x samples, samples)
 * gives every rank the same numbers, NaN and infinity carried by the sums, so every rank
 * decides alike. The rule (core/guard_rule.h) runs on the model's device and leaves its
 * verdict there; the optimizer's pass (and ZeRO's refresh of the bf16 working copy) reads
 * it and changes nothing on a dropped step, so on a GPU the check costs no wait: the
 * all-reduce is NCCL's, queued like a bucket's. Not finite: stop freezes the parameters
 * from that step on, and the error names the step and the first layer, in backward order,
 * whose gradient is not finite; skip leaves parameters and optimizer state as they were
 * (the optimizer's step counter still advances, with the data), counts it, and stops after
 * --max-skips in a row. --skip-spikes Z also skips a step whose mean loss is more than Z
 * standard deviations above the mean of the last LK_GUARD_WINDOW steps taken (OLMo's
 * rule), once LK_GUARD_MIN of them are known.
 *
 * The host learns the outcome by reading the state: after every step where the device is
 * the host's memory (nothing to wait for), else where the host waits anyway - each log
 * line, evaluation, checkpoint and the end (LK_GUARD_DEFER=1 makes the CPU read there too,
 * for the tests). A stop read later than its step still names it; the layer is then found
 * in the gradient of the step read (the parameters unchanged since). */
#ifndef LK_GUARD_H
#define LK_GUARD_H

#include "../comm/comm.h"
#include "../core/model.h"

typedef struct {
    lk_guard_cfg cfg;
    lk_device *dev;
    lk_guard_state *state; /* in dev's memory */
    lk_guard_state seen;   /* as last read */
    long long told;        /* the skips already said */
    int loud;              /* say each skip on stderr (rank 0) */
    int every_step;        /* read after every step */
} lk_guard;

lk_status lk_nan_policy_parse(const char *s, lk_nan_policy *out);
lk_status lk_guard_open(lk_guard *g, lk_device *dev, lk_nan_policy policy, long max_skips, double spike_z,
                        int loud);
void lk_guard_close(lk_guard *g);
/* A step's check, on the device: begin before the step's losses are added to loss_acc;
 * check once its gradient is reduced: the sum of squares of grad[0..n) (or *host_sumsq
 * where the caller has it, host memory only), the loss added since begin and this rank's
 * samples, agreed over c, then the rule. The optimizer's pass reads the verdict. */
lk_status lk_guard_begin(lk_guard *g, float *loss_acc, long step);
lk_status lk_guard_check(lk_guard *g, lk_comm *c, const float *grad, size_t n, const double *host_sumsq,
                         float *loss_acc, double samples, long step);
/* Reads the state (a wait for the device): says the skips since the last read and returns
 * the stop's error, if any. step: the optimizer steps taken; m: its gradient is that step's. */
lk_status lk_guard_read(lk_guard *g, const lk_model *m, long step);
static inline long lk_guard_skipped(const lk_guard *g) { return (long)g->seen.skipped; }

#endif
