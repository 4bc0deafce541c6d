/* fedavg.c - the ranks as federated clients: the deal, the rounds, the combination (fedavg.h). */
#include "fedavg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/rng.h"

lk_status lk_dp_level_parse(const char *name, int *client)
{
    if (!strcmp(name, "sample")) *client = 0;
    else if (!strcmp(name, "client")) *client = 1;
    else return LK_ERR(LK_ERR_ARG, "--dp-level: expected sample or client, got '%s'", name);
    return LK_OK;
}

lk_status lk_fed_deal(lk_fed *f, const lk_fed_opts *o, lk_comm *c, uint64_t seed, int batch, long local_steps,
                      lk_dataset *train)
{
    memset(f, 0, sizeof *f);
    f->round_started = -1;
    const char *spec = o->partition ? o->partition : o->fedavg ? "iid" : NULL;
    if (!o->fedavg && (o->fraction > 0 || o->local_epochs > 0))
        return LK_ERR(LK_ERR_ARG, "--client-fraction and --local-epochs are federated averaging's: give --fedavg");
    if (!spec) return LK_OK;
    f->on = 1, f->fedavg = o->fedavg, f->rank = c->rank, f->world = c->world, f->batch = batch, f->seed = seed;
    lk_partition_spec p;
    LK_CHECK(lk_partition_parse(spec, &p));
    int32_t *idx;
    int n;
    LK_CHECK(lk_partition(train, &p, c->world, seed, c->rank, &idx, &n));
    lk_dataset mine;
    lk_status st = lk_dataset_subset(train, idx, n, &mine);
    lk_free(idx);
    LK_CHECK(st);
    lk_dataset_free(train);
    *train = mine;
    f->sizes = lk_calloc((size_t)c->world, sizeof *f->sizes);
    f->order = lk_calloc((size_t)c->world, sizeof *f->order);
    double *all = lk_calloc((size_t)c->world, sizeof *all);
    if (!f->sizes || !f->order || !all) {
        lk_free(all);
        return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    }
    all[c->rank] = n;
    st = lk_comm_allreduce_f64(c, all, c->world, LK_REDUCE_SUM);
    for (int r = 0; r < c->world; r++) f->sizes[r] = (int)all[r], f->total += f->sizes[r];
    lk_free(all);
    LK_CHECK(st);
    if (!f->fedavg) return LK_OK;
    if (o->fraction < 0 || o->fraction > 1)
        return LK_ERR(LK_ERR_ARG, "--client-fraction must be in (0, 1] (got %g)", o->fraction);
    if (o->local_epochs > 0 && local_steps)
        return LK_ERR(LK_ERR_ARG, "--local-steps %ld and --local-epochs %g: give one", local_steps, o->local_epochs);
    if (o->local_epochs <= 0 && !local_steps)
        return LK_ERR(LK_ERR_ARG, "--fedavg: give the clients' work per round, --local-steps K or --local-epochs E");
    f->per_round = o->fraction > 0 ? LK_MAX(1, (int)lround(o->fraction * f->world)) : f->world;
    f->k = local_steps;
    if (o->local_epochs > 0) f->k = LK_MAX(1, (long)ceil(o->local_epochs * ((double)f->total / f->world) / f->batch));
    return LK_OK;
}

lk_status lk_fed_describe(const lk_fed *f, const lk_dataset *mine, char *buf, size_t size)
{
    buf[0] = 0;
    if (!f->on) return LK_OK;
    const int C = mine->nclasses, W = f->world;
    double *h = lk_calloc((size_t)W * C, sizeof *h);
    if (!h) return LK_ERR(LK_ERR_NOMEM, "--partition: out of memory");
    for (int i = 0; i < mine->n; i++) h[(size_t)f->rank * C + mine->y[i]] += 1;
    lk_status st = lk_comm_allreduce_f64(f->comm, h, W * C, LK_REDUCE_SUM);
    size_t at = 0;
    for (int r = 0; st == LK_OK && r < W && at < size; r++) {
        at += (size_t)snprintf(buf + at, size - at, "client %d: %d samples, classes", r, f->sizes[r]);
        for (int k = 0; k < C && at < size; k++)
            if (h[(size_t)r * C + k] > 0) at += (size_t)snprintf(buf + at, size - at, " %d (%.0f)", k, h[(size_t)r * C + k]);
        if (at < size && r + 1 < W) at += (size_t)snprintf(buf + at, size - at, "\n");
    }
    lk_free(h);
    return st;
}

static int drawn(lk_fed *f, long round, int client)
{
    if (f->per_round >= f->world) return 1;
    for (int r = 0; r < f->world; r++) f->order[r] = r;
    lk_shuffle(f->order, f->world, f->seed, LK_RNG_CLIENTS, (uint64_t)round);
    for (int i = 0; i < f->per_round; i++)
        if (f->order[i] == client) return 1;
    return 0;
}

int lk_fed_active(lk_fed *f, long step)
{
    return !f->fedavg || drawn(f, step / f->k, f->rank);
}

long lk_fed_group(const lk_fed *f, long t)
{
    long g = 0;
    for (int r = 0; r < f->world; r++) {
        const int n = f->sizes[r], full = n / f->batch, steps = full + (n % f->batch > 0);
        g += t % steps < full ? f->batch : n % f->batch;
    }
    return g;
}

/* The round that ended with step `done` (an average forced inside a round - the run's end -
 * closes it early). */
static long ended(const lk_fed *f, long done) { return (done - 1) / f->k; }

/* The sampled clients' mean weighted by their shards: each rank's parameters, buffers and
 * optimizer state times its weight, summed. */
static lk_status combine_weighted(void *user, lk_averager *a, long done)
{
    lk_fed *f = user;
    lk_model *m = a->model;
    const long round = ended(f, done);
    double all = 0;
    for (int r = 0; r < f->world; r++)
        if (drawn(f, round, r)) all += f->sizes[r];
    const float w = drawn(f, round, f->rank) ? (float)(f->sizes[f->rank] / all) : 0.0f;
    float *bufs[3] = {m->params, a->opt->s1, a->opt->s2};
    const size_t len[3] = {m->nparams + m->nbuffers, m->nparams, m->nparams};
    for (int i = 0; i < 3; i++) {
        if (!bufs[i]) continue;
        LK_CHECK(lk_scale(m->dev, bufs[i], w, len[i]));
        LK_CHECK(lk_comm_allreduce(a->comm, bufs[i], len[i], LK_REDUCE_SUM));
    }
    return LK_OK;
}

/* Client-level DP: start + (sum of the sampled clients' updates clipped to C, plus noise) / m. */
#define FED_NORM_EPS 1e-6 /* (DP-SGD's: C / (|update| + 1e-6)) */

static lk_status combine_private(void *user, lk_averager *a, long done)
{
    lk_fed *f = user;
    lk_model *m = a->model;
    lk_dp *dp = f->dp;
    const long round = ended(f, done);
    const size_t n = m->nparams;
    if (f->round_started != round)
        return LK_ERR(LK_ERR_STATE, "--dp-level client: round %ld's start was not kept", round);
    LK_CHECK(lk_axpy(m->dev, -1.0f, f->start, m->params, n)); /* the update */
    LK_CHECK(lk_sumsq(m->dev, m->params + dp->lo, dp->hi - dp->lo, dp->sq));
    const double norm = sqrt((double)lk_read_scalar(m->dev, dp->sq));
    LK_CHECK(lk_device_status(m->dev));
    const double c = drawn(f, round, f->rank) ? LK_MIN(1.0, dp->o.clip / (norm + FED_NORM_EPS)) : 0.0;
    if (c > 0) dp->seen += 1, dp->clipped += c < 1.0;
    LK_CHECK(lk_scale(m->dev, m->params, (float)c, n));
    LK_CHECK(lk_comm_allreduce(a->comm, m->params, n, LK_REDUCE_SUM));
    LK_CHECK(lk_scale(m->dev, m->params, (float)(1.0 / dp->expected), n));
    LK_CHECK(lk_dp_add_noise(dp, m, m->params, 0, n, round, f->seed)); /* (sigma C / m) */
    LK_CHECK(lk_axpy(m->dev, 1.0f, f->start, m->params, n));
    if (a->opt->s1) lk_zero(m->dev, a->opt->s1, n * sizeof(float)); /* (each client's own, afresh) */
    if (a->opt->s2) lk_zero(m->dev, a->opt->s2, n * sizeof(float));
    lk_dp_stepped(dp);
    return LK_OK;
}

lk_status lk_fed_setup(lk_fed *f, const lk_fed_opts *o, lk_averager *avg, lk_model *m, lk_dp *dp)
{
    f->model = m, f->comm = avg->comm;
    if (o->dp_client && !o->fedavg) return LK_ERR(LK_ERR_ARG, "--dp-level client is federated averaging's: give --fedavg");
    if (!f->fedavg) return LK_OK;
    avg->k = f->k, avg->start = 0;
    avg->local_scale = 1.0f; /* (each client's loss is its own batch's mean) */
    avg->combine_user = f;
    avg->combine = combine_weighted;
    f->dp_client = o->dp_client;
    if (o->dp_client) {
        if (!dp->on) return LK_ERR(LK_ERR_ARG, "--dp-level client needs --dp-clip C and --dp-noise or --dp-epsilon");
        f->dp = dp;
        f->start = lk_dev_alloc(m->dev, m->nparams * sizeof(float));
        if (!f->start) return LK_ERR(LK_ERR_NOMEM, "--dp-level client: cannot allocate the round's start");
        avg->combine = combine_private;
    }
    return LK_OK;
}

lk_status lk_fed_before_step(lk_fed *f, long step)
{
    if (!f->dp_client || step % f->k) return LK_OK;
    lk_copy_on_device(f->model->dev, f->start, f->model->params, f->model->nparams * sizeof(float));
    f->round_started = step / f->k;
    return LK_OK;
}

void lk_fed_free(lk_fed *f, lk_device *dev)
{
    if (dev && f->start) lk_dev_free(dev, f->start);
    lk_free(f->sizes);
    lk_free(f->order);
    memset(f, 0, sizeof *f);
}
