/* zero.c - the sharded optimizer step and the parameters' all-gather. */
#include "zero.h"

#include "../core/ops.h"

lk_status lk_zero_sum(void *user, double *v, int n)
{
    lk_zero_state *z = user;
    return lk_comm_allreduce_f64(z->comm, v, n, LK_REDUCE_SUM);
}

int lk_zero_shard(lk_shard *s, size_t n, int stage, int world, int rank)
{
    const int on = stage > 0 && world > 1;
    lk_shard_init(s, n, on ? world : 1, on ? rank : 0);
    return on ? stage : 0;
}

lk_status lk_zero_create(lk_zero_state **out, lk_comm *c, lk_model *m, int stage, size_t bucket_bytes)
{
    *out = NULL;
    if (stage < 0 || stage > 2) return LK_ERR(LK_ERR_ARG, "--zero %d: expected 0, 1 or 2", stage);
    lk_zero_state *z = lk_calloc(1, sizeof *z);
    if (!z) return LK_ERR(LK_ERR_NOMEM, "cannot allocate ZeRO's state");
    z->comm = c;
    z->m = m;
    z->stage = lk_zero_shard(&z->shard, m->nparams, stage, c->world, c->rank);
    z->bucket_bytes = bucket_bytes;
    z->npb_cap = lk_buckets_cap(m);
    z->pb = lk_calloc((size_t)z->npb_cap, sizeof *z->pb);
    z->counts = lk_calloc((size_t)c->world, sizeof *z->counts);
    lk_status st = z->pb && z->counts ? LK_OK : LK_ERR(LK_ERR_NOMEM, "cannot allocate ZeRO's state");
    if (st == LK_OK && z->stage == 2) {
        const size_t bytes = LK_MAX(z->shard.hi - z->shard.lo, 1) * sizeof(float);
        z->slice = lk_dev_alloc(m->dev, bytes);
        if (!z->slice)
            st = LK_ERR(LK_ERR_NOMEM, "cannot allocate this rank's %.1f MB of gradients on %s",
                        (double)bytes / 1e6, m->dev->name);
        else lk_zero(m->dev, z->slice, bytes);
    }
    if (st != LK_OK) {
        lk_zero_destroy(z);
        return st;
    }
    *out = z;
    return LK_OK;
}

lk_status lk_zero_bind(lk_zero_state *z, lk_optim *o)
{
    if (o->n != z->m->nparams)
        return LK_ERR(LK_ERR_ARG, "ZeRO: the optimizer has %zu parameters, the model %zu", o->n, z->m->nparams);
    LK_CHECK(lk_optim_shard(o, z->shard.lo, z->shard.hi));
    o->sum = z->stage ? lk_zero_sum : NULL;
    o->sum_user = z;
    return LK_OK;
}

void lk_zero_destroy(lk_zero_state *z)
{
    if (!z) return;
    if (z->slice) lk_dev_free(z->m->dev, z->slice);
    lk_free(z->pb);
    lk_free(z->counts);
    lk_free(z);
}

/* Every rank's part of the parameters [lo, hi) to every rank, in the gradient buckets'
 * pieces, all in flight at once on request slots: the library's (MPI's own shared-memory
 * transport between the ranks of a host reads each part once, straight from its owner;
 * lockstep's shared memory would copy every part in and out of its slots), or NCCL's. */
static lk_status gather_params(lk_zero_state *z, size_t lo, size_t hi)
{
    lk_comm *c = z->comm;
    float *w = z->m->params;
    const int n = lk_buckets_plan(z->m, z->bucket_bytes, lo, hi, z->pb, z->npb_cap);
    for (int i = 0; i < n; i++) {
        lk_shard_counts(&z->shard, z->pb[i].begin, z->pb[i].end, z->counts);
        LK_CHECK(lk_comm_allgather_start(c, w + z->pb[i].begin, z->counts, i));
    }
    for (int i = 0; i < n; i++) LK_CHECK(lk_comm_wait(c, i));
    return LK_OK;
}

lk_status lk_zero_step(lk_zero_state *z, lk_optim *o, float grad_scale, size_t lo, size_t hi, int last)
{
    const lk_model *m = z->m;
    if (z->stage == 2) LK_CHECK(lk_optim_step_range(o, m->params, z->slice, z->shard.lo, grad_scale, lo, hi, last));
    else LK_CHECK(lk_optim_step_range(o, m->params, m->grads, 0, grad_scale, lo, hi, last));
    if (!z->stage) return LK_OK;
    LK_CHECK(gather_params(z, lo, hi));
    if (!m->params16) return LK_OK;
    /* the bf16 working copy of what other ranks updated, keyed by the step their optimizers
     * rounded theirs with (so every rank holds the same copy) */
    const long key = o->step + (last ? 0 : 1);
    size_t a, b;
    lk_shard_mine(&z->shard, lo, hi, &a, &b);
    if (b <= a) return lk_model_refresh_working(z->m, lo, hi, key, o->skip);
    LK_CHECK(lk_model_refresh_working(z->m, lo, a, key, o->skip));
    return lk_model_refresh_working(z->m, b, hi, key, o->skip);
}

void lk_zero_step_grads(const lk_zero_state *z, const float **g, size_t *n)
{
    const size_t mine = z->shard.hi - z->shard.lo;
    if (z->stage == 2) *g = z->slice, *n = mine;
    else if (z->stage == 1) *g = z->m->grads + z->shard.lo, *n = mine;
    else *g = z->m->grads, *n = z->m->nparams;
}

lk_status lk_zero_gather_state(void *user, int state, size_t offset, size_t n, float *host)
{
    lk_zero_gather *g = user;
    lk_zero_state *z = g->z;
    const lk_optim *o = g->o;
    const float *s = state == 0 ? o->s1 : o->s2;
    size_t a, b;
    lk_shard_mine(&z->shard, offset, offset + n, &a, &b);
    if (b > a) {
        lk_copy_to_host(o->dev, host + (a - offset), s + (a - o->lo), (b - a) * sizeof(float));
        lk_sync(o->dev);
        LK_CHECK(lk_device_status(o->dev));
    }
    lk_shard_counts(&z->shard, offset, offset + n, z->counts);
    return lk_comm_allgather(z->comm, host, z->counts);
}
