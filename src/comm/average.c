/* average.c - local SGD's periodic averaging of parameters and optimizer state. */
#include "average.h"

lk_status lk_averager_init(lk_averager *a, lk_comm *c, lk_model *m, lk_optim *opt, long k, long start,
                           long done)
{
    *a = (lk_averager){c, m, opt, k, start, LK_MAX(start, done), 0, (float)c->world, NULL, NULL};
    if (k < 0) return LK_ERR(LK_ERR_ARG, "--local-steps must be at least 1 (got %ld)", k);
    if (start < 0) return LK_ERR(LK_ERR_ARG, "--local-start must be at least 0 (got %ld)", start);
    if (k && (opt->lo != 0 || opt->hi != m->nparams))
        return LK_ERR(LK_ERR_ARG, "--local-steps: each rank steps every parameter on its own, which "
                                  "--zero's sharded optimizer cannot (use --zero 0)");
    return LK_OK;
}

lk_status lk_average_buffers(lk_comm *c, lk_model *m)
{
    if (c->world == 1 || !m->nbuffers) return LK_OK;
    return lk_comm_allreduce(c, m->params + m->nparams, m->nbuffers, LK_REDUCE_AVG);
}

int lk_averager_local(const lk_averager *a, long done)
{
    return a->k > 0 && a->comm->world > 1 && done >= a->start;
}

float lk_averager_grad_scale(const lk_averager *a, long done)
{
    return lk_averager_local(a, done) ? a->local_scale : 1.0f;
}

lk_status lk_averager_after(lk_averager *a, long done, int force, int *averaged)
{
    if (averaged) *averaged = 0;
    if (!a->k || a->comm->world == 1 || done <= a->start) return LK_OK;
    const long local = done - LK_MAX(a->last, a->start);
    if (local <= 0 || (local < a->k && !force)) return LK_OK;
    lk_model *m = a->model;
    if (a->combine) LK_CHECK(a->combine(a->combine_user, a, done));
    else {
        LK_CHECK(lk_comm_allreduce(a->comm, m->params, m->nparams + m->nbuffers, LK_REDUCE_AVG));
        const size_t n = m->nparams;
        if (a->opt->s1) LK_CHECK(lk_comm_allreduce(a->comm, a->opt->s1, n, LK_REDUCE_AVG));
        if (a->opt->s2) LK_CHECK(lk_comm_allreduce(a->comm, a->opt->s2, n, LK_REDUCE_AVG));
    }
    lk_model_params_changed(m); /* a bf16 working copy follows at the next forward */
    a->last = done;
    a->averages++;
    if (averaged) *averaged = 1;
    return LK_OK;
}
