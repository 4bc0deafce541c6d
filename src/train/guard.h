/* guard.h - every step's check of the loss and the gradient (--nan-policy, --max-skips,
 * --skip-spikes), the same decision on every rank.
 *
 * After the gradients' reduction each rank adds up the squares of what it steps on (the
 * whole reduced gradient, or with ZeRO and between local SGD's averages its part) and its
 * step's loss; one all-reduce of three doubles (sum of squares, loss x samples, samples)
 * gives every rank the same numbers, NaN and infinity carried by the sums, so every rank
 * decides alike. Not finite: stop names the step and the first layer, in backward order,
 * whose gradient is not finite on that rank; skip leaves parameters and optimizer state as
 * they were (the optimizer's step counter still advances, with the data), counts it, and
 * stops after --max-skips in a row. --skip-spikes Z also skips a step whose mean loss is
 * more than Z standard deviations above the mean of the last LK_GUARD_WINDOW steps taken
 * (OLMo's rule), once LK_GUARD_MIN of them are known. On a GPU the host reads the sum of
 * squares each step: a wait on the device the step did not have before. */
#ifndef LK_GUARD_H
#define LK_GUARD_H

#include "../comm/comm.h"
#include "../core/model.h"

#define LK_GUARD_WINDOW 100
#define LK_GUARD_MIN 20

typedef enum { LK_NAN_STOP = 0, LK_NAN_SKIP } lk_nan_policy;

typedef struct {
    lk_nan_policy policy;
    long max_skips;      /* skips in a row before stopping */
    double spike_z;      /* 0: no spike rule */
    long in_a_row, skipped; /* skips: now in a row, and in all */
    int loud;            /* say each skip on stderr (rank 0) */
    double recent[LK_GUARD_WINDOW];
    int nrecent, next;
} lk_guard;

lk_status lk_nan_policy_parse(const char *s, lk_nan_policy *out);
void lk_guard_init(lk_guard *g, lk_nan_policy policy, long max_skips, double spike_z, int loud);
/* The step's verdict from the sum of squares of what the ranks step on and the step's mean
 * loss over every rank (both agreed: the same on every rank): *skip, or an error for
 * --nan-policy stop and for too many skips in a row. */
lk_status lk_guard_decide(lk_guard *g, const lk_model *m, long step, double sumsq, double loss, int *skip);

#endif
