/* guard.c - every step's check of the loss and the gradient: the host's side (guard.h). */
#include "guard.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ops.h"

lk_status lk_nan_policy_parse(const char *s, lk_nan_policy *out)
{
    if (!strcmp(s, "stop")) *out = LK_NAN_STOP;
    else if (!strcmp(s, "skip")) *out = LK_NAN_SKIP;
    else return LK_ERR(LK_ERR_ARG, "--nan-policy: '%s' is not stop or skip", s);
    return LK_OK;
}

lk_status lk_guard_open(lk_guard *g, lk_device *dev, lk_nan_policy policy, long max_skips, double spike_z,
                        int loud)
{
    memset(g, 0, sizeof *g);
    g->cfg = (lk_guard_cfg){(int)policy, max_skips, spike_z};
    g->dev = dev;
    g->loud = loud;
    const char *defer = getenv("LK_GUARD_DEFER");
    g->every_step = dev->host_addressable && !(defer && *defer && strcmp(defer, "0"));
    g->state = lk_dev_alloc(dev, sizeof *g->state);
    if (!g->state) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the step check's state on %s", dev->name);
    lk_zero(dev, g->state, sizeof *g->state);
    return LK_OK;
}

void lk_guard_close(lk_guard *g)
{
    if (g->state) lk_dev_free(g->dev, g->state);
    g->state = NULL;
}

lk_status lk_guard_begin(lk_guard *g, float *loss_acc, long step)
{
    return lk_guard_op(g->dev, g->state, LK_GUARD_BEGIN, g->cfg, step, loss_acc, 0.0f);
}

lk_status lk_guard_check(lk_guard *g, lk_comm *c, const float *grad, size_t n, const double *host_sumsq,
                         float *loss_acc, double samples, long step)
{
    lk_device *d = g->dev;
    lk_guard_state *gs = g->state;
    if (host_sumsq && d->host_addressable) gs->in[0] = (float)*host_sumsq;
    else LK_CHECK(lk_sumsq(d, grad, n, &gs->in[0]));
    LK_CHECK(lk_guard_op(d, gs, LK_GUARD_PREPARE, g->cfg, step, loss_acc, (float)samples));
    if (c && c->world > 1) {
        /* (host memory: lockstep's shared memory between the ranks of a host, a few us; a
         * GPU's: NCCL's, the compute stream waiting for it, the host not) */
        if (d->host_addressable) LK_CHECK(lk_comm_allreduce(c, gs->in, 3, LK_REDUCE_SUM));
        else {
            LK_CHECK(lk_comm_allreduce_start(c, gs->in, 3, LK_REDUCE_SUM, 0));
            LK_CHECK(lk_comm_wait(c, 0));
        }
    }
    return lk_guard_op(d, gs, LK_GUARD_DECIDE, g->cfg, step, loss_acc, 0.0f);
}

/* the first layer, in backward order, with a gradient that is not finite (-1: none found);
 * the sums of squares go through the state's first float (the run ends here) */
static int first_bad_layer(lk_guard *g, const lk_model *m, double *what)
{
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const lk_layer *l = m->layers[i];
        for (int j = 0; j < l->nparams; j++) {
            const lk_param *p = &l->params[j];
            if (p->buffer || !m->grads) continue;
            if (lk_sumsq(m->dev, m->grads + p->offset, lk_param_storage(p), &g->state->in[0]) != LK_OK) return -1;
            const float s = lk_read_scalar(m->dev, &g->state->in[0]);
            if (!isfinite(s)) {
                *what = s;
                return i;
            }
        }
    }
    return -1;
}

/* the skips since the last read, on stderr */
static void tell(lk_guard *g)
{
    const lk_guard_state *s = &g->seen;
    const long long fresh = s->skipped - g->told;
    g->told = s->skipped;
    if (!g->loud || fresh <= 0) return;
    char more[96] = "";
    if (fresh > 1) snprintf(more, sizeof more, " (and %lld steps before it since the last report)", fresh - 1);
    if (s->last_kind == LK_GUARD_SPIKE)
        fprintf(stderr, "lockstep: step %lld skipped%s: loss %.4g is %.1f standard deviations above the last %d "
                        "steps' mean %.4g (--skip-spikes %g)\n", s->last_step, more, s->loss,
                s->sd > 0 ? (s->loss - s->mean) / s->sd : INFINITY, s->nrecent, s->mean, g->cfg.spike_z);
    else
        fprintf(stderr, "lockstep: step %lld skipped%s: not finite (loss %g, gradient's sum of squares %g; "
                        "--nan-policy skip, %lld in a row)\n", s->last_step, more, s->loss, s->sumsq, s->in_a_row);
}

lk_status lk_guard_read(lk_guard *g, const lk_model *m, long step)
{
    lk_copy_to_host(g->dev, &g->seen, g->state, sizeof g->seen);
    LK_CHECK(lk_device_status(g->dev));
    tell(g);
    const lk_guard_state *s = &g->seen;
    if (!s->stopped) return LK_OK;
    if (s->stop_kind == LK_GUARD_TOO_MANY)
        return LK_ERR(LK_ERR_STATE, "step %lld: %lld steps skipped in a row (%s), more than --max-skips %lld",
                      s->stopped, s->in_a_row, s->last_kind == LK_GUARD_SPIKE ? "a loss spike" : "a gradient not finite",
                      g->cfg.max_skips);
    double what = s->sumsq;
    const int at = first_bad_layer(g, m, &what);
    char where[240], then[96] = "";
    if (s->stopped != step) /* (read later: the gradient is a later step's, from the same parameters) */
        snprintf(then, sizeof then, " of step %ld (read then; the parameters unchanged since)", step);
    if (at >= 0)
        snprintf(where, sizeof where, "first in backward order in layer %d (%s)%s%s: sum of squares %g", at,
                 m->layers[at]->vt->type, then[0] ? ", in the gradient" : "", then, what);
    else
        snprintf(where, sizeof where, "not in this rank's gradient%s: another rank's, or the loss", then);
    return LK_ERR(LK_ERR_STATE, "step %lld: not finite: loss %g, gradient's sum of squares %g; %s "
                                "(--nan-policy stop; skip drops such steps)", s->stopped, s->loss, s->sumsq, where);
}
