/* optim.c - schedules, clipping and the optimizer step over the flat buffers. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "model.h"
#include "ops.h"

static const char *const optim_names[] = {
    [LK_OPT_SGD] = "sgd",   [LK_OPT_MOMENTUM] = "momentum", [LK_OPT_NESTEROV] = "nesterov",
    [LK_OPT_ADAM] = "adam", [LK_OPT_ADAMW] = "adamw",       [LK_OPT_RMSPROP] = "rmsprop",
    [LK_OPT_ADAGRAD] = "adagrad",
};
static const char *const sched_names[] = {
    [LK_SCHED_CONSTANT] = "constant", [LK_SCHED_STEP] = "step", [LK_SCHED_COSINE] = "cosine"};

const char *lk_optim_name(lk_optim_kind kind) { return optim_names[kind]; }
const char *lk_schedule_name(lk_schedule s) { return sched_names[s]; }

lk_status lk_optim_parse(const char *name, lk_optim_kind *out)
{
    for (int i = 0; i <= LK_OPT_ADAGRAD; i++)
        if (!strcmp(name, optim_names[i])) {
            *out = (lk_optim_kind)i;
            return LK_OK;
        }
    return LK_ERR(LK_ERR_ARG,
                  "unknown --optim '%s' (expected sgd, momentum, nesterov, adam, adamw, rmsprop, "
                  "adagrad)",
                  name);
}

lk_status lk_schedule_parse(const char *name, lk_schedule *out)
{
    for (int i = 0; i <= LK_SCHED_COSINE; i++)
        if (!strcmp(name, sched_names[i])) {
            *out = (lk_schedule)i;
            return LK_OK;
        }
    return LK_ERR(LK_ERR_ARG, "unknown --schedule '%s' (expected constant, step or cosine)", name);
}

lk_status lk_decay_parse(const char *name, lk_decay *out)
{
    if (!strcmp(name, "all")) *out = LK_DECAY_ALL;
    else if (!strcmp(name, "matrices")) *out = LK_DECAY_MATRICES;
    else return LK_ERR(LK_ERR_ARG, "--decay: expected all or matrices, got '%s'", name);
    return LK_OK;
}

const char *lk_decay_name(int d) { return d == LK_DECAY_MATRICES ? "matrices" : "all"; }

lk_optim_config lk_optim_defaults(lk_optim_kind kind)
{
    lk_optim_config c = {0};
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.alpha = 0.99f;
    c.gamma = 0.1f;
    c.decay = LK_DECAY_DEFAULT;
    switch (kind) {
    case LK_OPT_SGD: c.lr = 0.01f; break;
    case LK_OPT_MOMENTUM:
    case LK_OPT_NESTEROV: c.lr = 0.01f, c.momentum = 0.9f; break;
    case LK_OPT_ADAM: c.lr = 1e-3f, c.eps = 1e-8f; break;
    case LK_OPT_ADAMW: c.lr = 1e-3f, c.eps = 1e-8f, c.weight_decay = 0.01f; break;
    case LK_OPT_RMSPROP: c.lr = 0.01f, c.eps = 1e-8f; break;
    case LK_OPT_ADAGRAD: c.lr = 0.01f, c.eps = 1e-10f; break;
    }
    return c;
}

float lk_optim_lr_at(const lk_optim_config *c, long step)
{
    if (c->warmup > 0 && step < c->warmup) return c->lr * (float)(step + 1) / (float)c->warmup;
    long t = step - (c->warmup > 0 ? c->warmup : 0);
    switch (c->schedule) {
    case LK_SCHED_CONSTANT: break;
    case LK_SCHED_STEP:
        if (c->step_size > 0) return c->lr * powf(c->gamma, (float)(t / c->step_size));
        break;
    case LK_SCHED_COSINE: {
        long span = c->total_steps - (c->warmup > 0 ? c->warmup : 0);
        if (span <= 0) break;
        double frac = t >= span ? 1.0 : (double)t / (double)span;
        return (float)(0.5 * c->lr * (1.0 + cos(M_PI * frac)));
    }
    }
    return c->lr;
}

int lk_optim_state_count(lk_optim_kind kind)
{
    switch (kind) {
    case LK_OPT_SGD: return 0;
    case LK_OPT_MOMENTUM:
    case LK_OPT_NESTEROV:
    case LK_OPT_ADAGRAD: return 1;
    case LK_OPT_ADAM:
    case LK_OPT_ADAMW:
    case LK_OPT_RMSPROP: return 2;
    }
    return 0;
}

lk_status lk_optim_create(lk_optim **out, lk_device *dev, const lk_optim_config *cfg, size_t n)
{
    return lk_optim_create_slice(out, dev, cfg, n, 0, n);
}

lk_status lk_optim_create_slice(lk_optim **out, lk_device *dev, const lk_optim_config *cfg, size_t n,
                                size_t lo, size_t hi)
{
    *out = NULL;
    if (!(cfg->lr >= 0.0f) || !isfinite(cfg->lr))
        return LK_ERR(LK_ERR_ARG, "--lr must be a non-negative number (got %g)", (double)cfg->lr);
    if (cfg->weight_decay < 0.0f || cfg->l1 < 0.0f || cfg->clip_norm < 0.0f)
        return LK_ERR(LK_ERR_ARG, "--weight-decay, --l1 and --clip must not be negative");
    if (cfg->momentum < 0.0f || cfg->momentum >= 1.0f)
        return LK_ERR(LK_ERR_ARG, "--momentum must be in [0, 1) (got %g)", (double)cfg->momentum);
    lk_optim *o = lk_calloc(1, sizeof *o);
    if (!o) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the optimizer");
    o->cfg = *cfg;
    o->dev = dev;
    o->n = n;
    o->scratch = lk_dev_alloc(dev, sizeof(float));
    lk_status st = o->scratch ? lk_optim_shard(o, lo, hi)
                              : LK_ERR(LK_ERR_NOMEM, "cannot allocate the optimizer's scratch");
    if (st != LK_OK) {
        lk_optim_destroy(o);
        return st;
    }
    *out = o;
    return LK_OK;
}

lk_status lk_optim_shard(lk_optim *o, size_t lo, size_t hi)
{
    if (lo > hi || hi > o->n)
        return LK_ERR(LK_ERR_ARG, "optimizer slice [%zu, %zu) of %zu parameters", lo, hi, o->n);
    if ((o->s1 || o->s2) && lo == o->lo && hi == o->hi) return LK_OK; /* it has that slice */
    lk_dev_free(o->dev, o->s1);
    lk_dev_free(o->dev, o->s2);
    o->s1 = o->s2 = NULL;
    o->lo = lo, o->hi = hi;
    const int ns = lk_optim_state_count(o->cfg.kind);
    const size_t bytes = LK_MAX(hi - lo, 1) * sizeof(float);
    o->s1 = ns >= 1 ? lk_dev_alloc(o->dev, bytes) : NULL;
    o->s2 = ns >= 2 ? lk_dev_alloc(o->dev, bytes) : NULL;
    if ((ns >= 1 && !o->s1) || (ns >= 2 && !o->s2))
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate optimizer state for %zu parameters (%.1f MB)",
                      hi - lo, (double)ns * (double)bytes / 1e6);
    if (o->s1) lk_zero(o->dev, o->s1, bytes);
    if (o->s2) lk_zero(o->dev, o->s2, bytes);
    return LK_OK;
}

void lk_optim_destroy(lk_optim *o)
{
    if (!o) return;
    lk_dev_free(o->dev, o->s1);
    lk_dev_free(o->dev, o->s2);
    lk_dev_free(o->dev, o->scratch);
    lk_free(o->decayed);
    lk_free(o->frozen);
    lk_free(o);
}

lk_status lk_optim_decay_model(lk_optim *o, const lk_model *m)
{
    if (o->cfg.decay != LK_DECAY_MATRICES) return LK_OK;
    if (m->nparams != o->n)
        return LK_ERR(LK_ERR_ARG, "decay groups: the model has %zu parameters, the optimizer %zu",
                      m->nparams, o->n);
    lk_free(o->decayed);
    o->decayed = NULL;
    return lk_model_decay_ranges(m, &o->decayed, &o->ndecayed);
}

lk_status lk_optim_freeze(lk_optim *o, const size_t *ranges, int n)
{
    lk_free(o->frozen);
    o->frozen = NULL;
    o->nfrozen = 0;
    if (n <= 0) return LK_OK;
    o->frozen = lk_malloc((size_t)n * 2 * sizeof *o->frozen);
    if (!o->frozen) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the frozen ranges");
    memcpy(o->frozen, ranges, (size_t)n * 2 * sizeof *o->frozen);
    o->nfrozen = n;
    return LK_OK;
}

/* The fused update over [lo, hi) (within the state's slice), weight decay and L1 where the
 * tensors take them; g[i - g_from] is parameter i's gradient. */
static lk_status update_part(lk_optim *o, lk_optim_hparams *hp, float *w, const float *g, size_t g_from,
                             size_t lo, size_t hi)
{
#define RUN_PART(a, b, wd, l1_)                                                                   \
    do {                                                                                         \
        hp->weight_decay = (wd), hp->l1 = (l1_);                                                 \
        hp->round.first = (a);                                                                   \
        LK_CHECK(lk_optim_update(o->dev, hp, w + (a), g + ((a) - g_from),                          \
                                 o->s1 ? o->s1 + ((a) - o->lo) : NULL,                            \
                                 o->s2 ? o->s2 + ((a) - o->lo) : NULL,                            \
                                 o->w16 ? o->w16 + (a) : NULL, (b) - (a)));                       \
    } while (0)
    const float wd = hp->weight_decay, l1 = hp->l1;
    if (o->cfg.decay != LK_DECAY_MATRICES || (wd == 0.0f && l1 == 0.0f)) {
        RUN_PART(lo, hi, wd, l1);
        return LK_OK;
    }
    size_t at = lo; /* [at, next decayed range) does not decay */
    for (int r = 0; r < o->ndecayed && at < hi; r++) {
        const size_t a = LK_MAX(o->decayed[2 * r], lo), b = LK_MIN(o->decayed[2 * r + 1], hi);
        if (a >= b) continue;
        if (at < a) RUN_PART(at, a, 0.0f, 0.0f);
        RUN_PART(a, b, wd, l1);
        at = b;
    }
    if (at < hi) RUN_PART(at, hi, 0.0f, 0.0f);
    hp->weight_decay = wd, hp->l1 = l1;
    return LK_OK;
#undef RUN_PART
}

/* The next piece of [*at, hi) that is not frozen, as [*a, *b); 0 when there is none. */
static int next_free(const lk_optim *o, size_t *at, size_t hi, size_t *a, size_t *b)
{
    for (int r = 0; r < o->nfrozen && *at < hi; r++) {
        const size_t flo = o->frozen[2 * r], fhi = o->frozen[2 * r + 1];
        if (fhi <= *at) continue;
        if (flo > *at) { /* free up to this frozen range */
            *a = *at, *b = LK_MIN(flo, hi), *at = LK_MIN(fhi, hi);
            return 1;
        }
        *at = LK_MIN(fhi, hi); /* inside it: skip it */
    }
    if (*at >= hi) return 0;
    *a = *at, *b = hi, *at = hi;
    return 1;
}

/* ... over what of [lo, hi) is not frozen */
static lk_status update(lk_optim *o, lk_optim_hparams *hp, float *w, const float *g, size_t g_from,
                        size_t lo, size_t hi)
{
    size_t a, b;
    for (size_t at = lo; next_free(o, &at, hi, &a, &b);) LK_CHECK(update_part(o, hp, w, g, g_from, a, b));
    return LK_OK;
}

lk_status lk_optim_step(lk_optim *o, float *w, const float *g, float grad_scale)
{
    return lk_optim_step_part(o, w, g, grad_scale, 0, o->n, 1);
}

lk_status lk_optim_step_part(lk_optim *o, float *w, const float *g, float grad_scale, size_t lo,
                             size_t hi, int last)
{
    return lk_optim_step_range(o, w, g, 0, grad_scale, lo, hi, last);
}

void lk_optim_set_working(lk_optim *o, uint16_t *w16, const lk_round *r)
{
    o->w16 = w16;
    if (r) o->round = *r;
}

lk_status lk_optim_step_range(lk_optim *o, float *w, const float *g, size_t g_from, float grad_scale,
                              size_t lo, size_t hi, int last)
{
    const lk_optim_config *c = &o->cfg;
    if (lo >= hi || hi > o->n)
        return LK_ERR(LK_ERR_ARG, "optimizer step over [%zu, %zu) of %zu parameters", lo, hi, o->n);
    const size_t a = LK_MAX(lo, o->lo), b = LK_MAX(a, LK_MIN(hi, o->hi)); /* this rank's part */
    if (a < b && g_from > a)
        return LK_ERR(LK_ERR_ARG, "optimizer step: gradients from %zu do not cover %zu", g_from, a);
    if (c->clip_norm > 0.0f) {
        double sq = 0.0;
        size_t pa, pb; /* (the norm of what steps: frozen parameters left out) */
        for (size_t at = a; next_free(o, &at, b, &pa, &pb);) {
            LK_CHECK(lk_sumsq(o->dev, g + (pa - g_from), pb - pa, o->scratch));
            sq += (double)lk_read_scalar(o->dev, o->scratch);
        }
        if (o->sum) LK_CHECK(o->sum(o->sum_user, &sq, 1)); /* every rank's slice */
        float norm = (float)sqrt(sq) * fabsf(grad_scale);
        o->last_grad_norm = norm;
        if (!isfinite(norm) && !o->skip) /* (with the step check, its verdict drops the step) */
            return LK_ERR(LK_ERR_STATE, "gradient norm is not finite at step %ld (diverged: lower --lr?)",
                          o->step + 1);
        if (norm > c->clip_norm) grad_scale *= c->clip_norm / norm;
    }
    lk_optim_hparams hp = {
        .kind = c->kind, .lr = lk_optim_lr_at(c, o->step), .momentum = c->momentum,
        .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps, .alpha = c->alpha,
        .weight_decay = c->weight_decay, .l1 = c->l1, .grad_scale = grad_scale,
        .step = o->step + 1, .round = {o->round.stochastic, o->round.seed, (uint64_t)(o->step + 1), 0, o->skip},
        .skip = o->skip,
    };
    if (a < b) LK_CHECK(update(o, &hp, w, g, g_from, a, b)); /* (and the working copy, if any) */
    o->last_lr = hp.lr;
    if (last) o->step++;
    return LK_OK;
}
