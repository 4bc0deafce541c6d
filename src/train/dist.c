/* dist.c - start-up agreement, parameter broadcast and replica checks. */
#include "dist.h"

#include <stdio.h>
#include <string.h>

#include "../core/ops.h"

uint64_t lk_fnv1a(const void *data, size_t bytes, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void lk_agree_add(lk_agreement *a, const char *name, const void *data, size_t bytes)
{
    if (a->n >= LK_AGREE_MAX) {
        a->overflow = 1;
        return;
    }
    a->name[a->n] = name;
    a->hash[a->n++] = lk_fnv1a(data, bytes, LK_FNV_INIT);
}

void lk_agree_add_str(lk_agreement *a, const char *name, const char *s)
{
    lk_agree_add(a, name, s ? s : "", s ? strlen(s) : 0);
}

void lk_agree_add_model(lk_agreement *a, const lk_model *m)
{
    uint64_t h = lk_fnv1a(&m->nparams, sizeof m->nparams, LK_FNV_INIT);
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        h = lk_fnv1a(l->vt->type, strlen(l->vt->type), h);
        h = lk_fnv1a(&l->out, sizeof l->out, h);
        h = lk_fnv1a(&l->param_offset, sizeof l->param_offset, h);
        h = lk_fnv1a(&l->param_count, sizeof l->param_count, h);
    }
    if (a->n < LK_AGREE_MAX) {
        a->name[a->n] = "model layout";
        a->hash[a->n++] = h;
    }
}

lk_status lk_agree_check(lk_comm *c, const lk_agreement *a)
{
    if (a->overflow)
        return LK_ERR(LK_ERR_STATE, "the start-up agreement holds %d entries: raise LK_AGREE_MAX (dist.h)",
                      LK_AGREE_MAX);
    if (c->world == 1) return LK_OK;
    size_t bytes = LK_AGREE_MAX * sizeof(uint64_t);
    uint64_t *all = lk_calloc((size_t)c->world, bytes);
    if (!all) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the start-up agreement");
    uint64_t mine[LK_AGREE_MAX] = {0};
    memcpy(mine, a->hash, (size_t)a->n * sizeof(uint64_t));
    lk_status s = lk_comm_allgather_bytes(c, mine, all, bytes);
    char what[512] = "";
    int first_bad = -1;
    for (int r = 1; r < c->world && s == LK_OK; r++)
        for (int f = 0; f < a->n; f++)
            if (all[(size_t)r * LK_AGREE_MAX + f] != all[f]) {
                if (first_bad < 0) first_bad = r;
                if (r == first_bad && !strstr(what, a->name[f])) {
                    size_t len = strlen(what);
                    snprintf(what + len, sizeof what - len, "%s%s", len ? ", " : "", a->name[f]);
                }
            }
    lk_free(all);
    LK_CHECK(s);
    if (first_bad >= 0)
        return LK_ERR(LK_ERR_ARG,
                      "ranks disagree at start-up: rank %d differs from rank 0 in %s (every rank "
                      "must run the same command on the same data)",
                      first_bad, what);
    return LK_OK;
}

static float *host_view(const lk_model *m, float *scratch)
{
    if (m->dev->host_addressable) return m->params;
    lk_copy_to_host(m->dev, scratch, m->params, m->nparams * sizeof(float));
    return scratch;
}

lk_status lk_dist_broadcast_params(lk_comm *c, lk_model *m, float *host_scratch)
{
    if (c->world == 1) return LK_OK;
    float *p = host_view(m, host_scratch);
    LK_CHECK(lk_comm_broadcast(c, p, m->nparams * sizeof(float), 0));
    if (!m->dev->host_addressable) lk_copy_to_device(m->dev, m->params, p, m->nparams * sizeof(float));
    lk_model_params_changed(m);
    return LK_OK;
}

lk_status lk_dist_check_replicas(lk_comm *c, const lk_model *m, long step, float *host_scratch)
{
    if (c->world == 1) return LK_OK;
    uint64_t mine = lk_fnv1a(host_view(m, host_scratch), m->nparams * sizeof(float), LK_FNV_INIT);
    uint64_t *all = lk_calloc((size_t)c->world, sizeof *all);
    if (!all) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the replica check");
    lk_status s = lk_comm_allgather_bytes(c, &mine, all, sizeof mine);
    char bad[256] = "";
    for (int r = 1; r < c->world && s == LK_OK; r++)
        if (all[r] != all[0]) {
            size_t len = strlen(bad);
            snprintf(bad + len, sizeof bad - len, "%s%d", len ? ", " : "", r);
        }
    lk_free(all);
    LK_CHECK(s);
    if (bad[0])
        return LK_ERR(LK_ERR_STATE,
                      "replicas diverged at step %ld: the parameters of rank(s) %s differ from "
                      "rank 0's",
                      step, bad);
    return LK_OK;
}
