/* guard.c - every step's check of the loss and the gradient (guard.h). */
#include "guard.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/ops.h"

lk_status lk_nan_policy_parse(const char *s, lk_nan_policy *out)
{
    if (!strcmp(s, "stop")) *out = LK_NAN_STOP;
    else if (!strcmp(s, "skip")) *out = LK_NAN_SKIP;
    else return LK_ERR(LK_ERR_ARG, "--nan-policy: '%s' is not stop or skip", s);
    return LK_OK;
}

void lk_guard_init(lk_guard *g, lk_nan_policy policy, long max_skips, double spike_z, int loud)
{
    memset(g, 0, sizeof *g);
    g->loud = loud;
    g->policy = policy;
    g->max_skips = max_skips;
    g->spike_z = spike_z;
}

/* the first layer, in backward order, with a gradient that is not finite (-1: none found) */
static int first_bad_layer(const lk_model *m, double *what)
{
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const lk_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            const lk_param *p = &l->params[j];
            if (p->buffer || !m->grads) continue;
            float s = 0.0f;
            if (lk_sumsq(m->dev, m->grads + p->offset, lk_param_storage(p), &s) != LK_OK) return -1;
            if (!isfinite(s)) {
                *what = s;
                return i;
            }
        }
    }
    return -1;
}

lk_status lk_guard_decide(lk_guard *g, const lk_model *m, long step, double sumsq, double loss, int *skip)
{
    *skip = 0;
    const int bad = !isfinite(sumsq) || !isfinite(loss);
    int spike = 0;
    double mean = 0.0, sd = 0.0;
    if (!bad && g->spike_z > 0.0 && g->nrecent >= LK_GUARD_MIN) {
        for (int i = 0; i < g->nrecent; i++) mean += g->recent[i];
        mean /= g->nrecent;
        for (int i = 0; i < g->nrecent; i++) sd += (g->recent[i] - mean) * (g->recent[i] - mean);
        sd = sqrt(sd / g->nrecent);
        spike = sd > 0.0 && loss > mean + g->spike_z * sd; /* (a flat window flags nothing) */
    }
    if (!bad && !spike) {
        g->in_a_row = 0;
        if (g->spike_z > 0.0) { /* the window holds steps taken */
            g->recent[g->next] = loss;
            g->next = (g->next + 1) % LK_GUARD_WINDOW;
            if (g->nrecent < LK_GUARD_WINDOW) g->nrecent++;
        }
        return LK_OK;
    }
    if (bad && g->policy == LK_NAN_STOP) {
        double what = sumsq;
        const int at = first_bad_layer(m, &what);
        char where[160] = "not in this rank's gradient: another rank's, or the loss";
        if (at >= 0)
            snprintf(where, sizeof where, "first in backward order in layer %d (%s): sum of squares %g", at,
                     m->layers[at]->vt->type, what);
        return LK_ERR(LK_ERR_STATE, "step %ld: not finite: loss %g, gradient's sum of squares %g; %s "
                                    "(--nan-policy stop; skip drops such steps)", step + 1, loss, sumsq, where);
    }
    g->skipped++;
    if (++g->in_a_row > g->max_skips)
        return LK_ERR(LK_ERR_STATE, "step %ld: %ld steps skipped in a row (%s), more than --max-skips %ld",
                      step + 1, g->in_a_row, bad ? "a gradient not finite" : "a loss spike", g->max_skips);
    *skip = 1;
    if (g->loud && spike)
        fprintf(stderr, "lockstep: step %ld skipped: loss %.4g is %.1f standard deviations above the last %d "
                        "steps' mean %.4g (--skip-spikes %g)\n", step + 1, loss, sd > 0 ? (loss - mean) / sd : INFINITY,
                g->nrecent, mean, g->spike_z);
    else if (g->loud)
        fprintf(stderr, "lockstep: step %ld skipped: not finite (loss %g, gradient's sum of squares %g; "
                        "--nan-policy skip, %ld in a row)\n", step + 1, loss, sumsq, g->in_a_row);
    return LK_OK;
}
