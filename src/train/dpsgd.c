/* dpsgd.c - DP-SGD's batches, per-sample clipping, noise and account (dpsgd.h). */
#include "dpsgd.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/rng.h"
#include "../core/checkpoint.h"
#include "ckptdir.h"

#define DP_DEFAULT_DELTA 1e-5
#define DP_NORM_EPS 1e-6 /* Opacus's: C / (|g| + 1e-6) */

lk_status lk_dp_sampling_parse(const char *name, int *out)
{
    if (!strcmp(name, "poisson")) *out = LK_DP_POISSON;
    else if (!strcmp(name, "shuffle")) *out = LK_DP_SHUFFLE;
    else return LK_ERR(LK_ERR_ARG, "--dp-sampling: expected poisson or shuffle, got '%s'", name);
    return LK_OK;
}

/* A layer whose gradient for one sample depends on the others, or that adds a loss of its
 * own the per-sample scaling would not reach: named. */
static lk_status check_layers(const lk_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        if (l->vt->stateful)
            return LK_ERR(LK_ERR_ARG, "DP-SGD: layer %d (%s) mixes the samples of a batch (its statistics), so no "
                                      "sample's gradient is its own to clip: use layer norm instead",
                          i, l->vt->type);
        if (l->vt->own_loss)
            return LK_ERR(LK_ERR_ARG, "DP-SGD: layer %d (%s) adds a loss term of its own, which per-sample "
                                      "clipping does not reach",
                          i, l->vt->type);
    }
    return LK_OK;
}

lk_status lk_dp_init(lk_dp *dp, const lk_dp_opts *o, lk_model *m, int n, long global_batch, long total,
                     size_t lo, size_t hi, int quiet_rank)
{
    memset(dp, 0, sizeof *dp);
    dp->o = *o;
    if (o->clip == 0.0) {
        if (o->noise > 0 || o->epsilon > 0 || o->delta > 0)
            return LK_ERR(LK_ERR_ARG, "--dp-noise, --dp-epsilon and --dp-delta need --dp-clip C (DP-SGD's "
                                      "per-sample clipping norm)");
        return LK_OK;
    }
    if (!(o->clip > 0) || !isfinite(o->clip)) return LK_ERR(LK_ERR_ARG, "--dp-clip must be positive (got %g)", o->clip);
    if (o->noise > 0 && o->epsilon > 0)
        return LK_ERR(LK_ERR_ARG, "--dp-noise %g and --dp-epsilon %g: give one (the noise is solved from the "
                                  "budget)", o->noise, o->epsilon);
    if (!(o->noise > 0) && !(o->epsilon > 0))
        return LK_ERR(LK_ERR_ARG, "--dp-clip needs --dp-noise SIGMA or --dp-epsilon E (with --dp-delta D)");
    dp->delta = o->delta > 0 ? o->delta : DP_DEFAULT_DELTA;
    if (!(dp->delta < 1)) return LK_ERR(LK_ERR_ARG, "--dp-delta must be in (0, 1) (got %g)", dp->delta);
    if (dp->delta > 1.0 / n && !quiet_rank)
        fprintf(stderr, "lockstep: warning: --dp-delta %g is above 1/N = %g for the %d training samples: "
                        "such a delta allows leaking a sample outright\n", dp->delta, 1.0 / n, n);
    LK_CHECK(check_layers(m));
    dp->on = 1;
    dp->q = LK_MIN(1.0, (double)global_batch / n);
    dp->expected = (double)global_batch;
    dp->sigma = o->noise;
    if (o->epsilon > 0) LK_CHECK(lk_rdp_sigma_for(dp->q, total, o->epsilon, dp->delta, &dp->sigma));
    if (o->sampling == LK_DP_SHUFFLE && !quiet_rank)
        fprintf(stderr, "lockstep: warning: --dp-sampling shuffle: the accountant assumes Poisson sampling, so "
                        "the epsilon reported is heuristic, not a guarantee\n");
    dp->direct = lk_model_direct_norms(m, NULL);
    dp->lo = lo;
    dp->hi = hi;
    size_t big = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++)
            if (!m->layers[i]->params[j].buffer) big = LK_MAX(big, lk_shape_numel(&m->layers[i]->params[j].shape));
    dp->sq = lk_dev_alloc(m->dev, (size_t)m->max_batch * sizeof(float));
    dp->noise = lk_dev_alloc(m->dev, LK_MAX(big, 1) * sizeof(float));
    if (!dp->sq || !dp->noise) return LK_ERR(LK_ERR_NOMEM, "DP-SGD: cannot allocate its device buffers");
    return LK_OK;
}

static lk_status grow(void **p, int *cap, int need, size_t elem, const char *what)
{
    if (need <= *cap) return LK_OK;
    int c = LK_MAX(need, *cap * 2);
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return LK_ERR(LK_ERR_NOMEM, "DP-SGD: cannot allocate %d %s", c, what);
    *p = q;
    *cap = c;
    return LK_OK;
}

static lk_status add_chunk(lk_dp *dp, const int32_t *idx, int n, long base, int dummy)
{
    LK_CHECK(grow((void **)&dp->chunks, &dp->chunks_cap, dp->nchunks + 1, sizeof *dp->chunks, "chunks"));
    dp->chunks[dp->nchunks++] = (lk_dp_chunk){idx, n, base, dummy};
    return LK_OK;
}

lk_status lk_dp_plan_step(lk_dp *dp, const lk_sampler *smp, int first, int count, long step, uint64_t seed,
                          int n_train, int max_batch, long *global)
{
    dp->nchunks = 0;
    if (dp->o.sampling == LK_DP_POISSON) {
        LK_CHECK(grow((void **)&dp->sel, &dp->nsel_cap, n_train, sizeof *dp->sel, "indices"));
        int g = 0;
        for (int i = 0; i < n_train; i++)
            if (lk_rng_u32(seed, LK_RNG_POISSON, (uint64_t)step, (uint64_t)i) * 0x1p-32 < dp->q) dp->sel[g++] = i;
        *global = g;
        const int lo = (int)((long long)g * smp->rank / smp->world), hi = (int)((long long)g * (smp->rank + 1) / smp->world);
        for (int at = lo; at < hi; at += max_batch)
            LK_CHECK(add_chunk(dp, dp->sel + at, LK_MIN(max_batch, hi - at), at, 0));
    } else {
        LK_CHECK(grow((void **)&dp->sel, &dp->nsel_cap, max_batch * count, sizeof *dp->sel, "indices"));
        long before = 0;
        int off = 0;
        for (int i = 0; i < count; i++) {
            int n = lk_sampler_batch(smp, first + i, dp->sel + off);
            if (n) LK_CHECK(add_chunk(dp, dp->sel + off, n, before + lk_sampler_first(smp, first + i), 0));
            off += n;
            before += lk_sampler_global_count(smp, first + i);
        }
        *global = before;
    }
    if (!dp->nchunks) { /* (every rank takes part in the all-reduce: a row of weight 0) */
        static const int32_t zero = 0;
        LK_CHECK(add_chunk(dp, &zero, 1, 0, 1));
    }
    int total = 0;
    for (int k = 0; k < dp->nchunks; k++) total += dp->chunks[k].n;
    float *p = realloc(dp->sq_host, (size_t)LK_MAX(total, 1) * sizeof(float));
    if (!p) return LK_ERR(LK_ERR_NOMEM, "DP-SGD: cannot allocate %d norms", total);
    dp->sq_host = p;
    return LK_OK;
}

/* where chunk k's norms start in sq_host */
static int chunk_off(const lk_dp *dp, int k)
{
    int off = 0;
    for (int j = 0; j < k; j++) off += dp->chunks[j].n;
    return off;
}

lk_status lk_dp_norms(lk_dp *dp, lk_replica *r, const lk_dataset *d, int k, long step)
{
    const lk_dp_chunk *c = &dp->chunks[k];
    float *out = dp->sq_host + chunk_off(dp, k);
    if (c->dummy) {
        out[0] = 0.0f;
        return LK_OK;
    }
    lk_model *m = r->model;
    lk_grad_ready_fn ready = m->on_grad_ready, before = m->before_grads; /* (no bucket sees this pass) */
    m->on_grad_ready = m->before_grads = NULL;
    lk_status st = LK_OK;
    lk_tensor y;
    if (dp->direct) { /* one forward and backward: the layers add their samples' norms */
        m->sample_base = c->base;
        lk_replica_load_batch(r, d, c->idx, c->n);
        st = lk_model_forward(m, c->n, 1, step, &y);
        if (st == LK_OK) st = lk_replica_loss(r, &y, c->n, 1, (float)c->n, 0); /* (rows: each sample's own) */
        lk_zero(m->dev, dp->sq, (size_t)c->n * sizeof(float));
        m->sample_sq = dp->sq;
        if (st == LK_OK) st = lk_model_backward_ex(m, c->n, step, LK_GRADS_REPLACE);
        m->sample_sq = NULL;
    } else { /* each sample alone: the norm of its gradient */
        for (int i = 0; i < c->n && st == LK_OK; i++) {
            m->sample_base = c->base + i;
            lk_replica_load_batch(r, d, c->idx + i, 1);
            st = lk_model_forward(m, 1, 1, step, &y);
            if (st == LK_OK) st = lk_replica_loss(r, &y, 1, 1, 1.0f, 0);
            if (st == LK_OK) st = lk_model_backward_ex(m, 1, step, LK_GRADS_REPLACE);
            if (st == LK_OK) st = lk_sumsq(m->dev, m->grads + dp->lo, dp->hi - dp->lo, dp->sq + i);
        }
    }
    m->on_grad_ready = ready;
    m->before_grads = before;
    LK_CHECK(st);
    lk_copy_to_host(m->dev, out, dp->sq, (size_t)c->n * sizeof(float));
    return lk_device_status(m->dev);
}

lk_status lk_dp_clipped_backward(lk_dp *dp, lk_replica *r, const lk_dataset *d, int k, long step,
                                 lk_grads_mode mode)
{
    const lk_dp_chunk *c = &dp->chunks[k];
    const float *sq = dp->sq_host + chunk_off(dp, k);
    lk_model *m = r->model;
    m->sample_base = c->base;
    lk_replica_load_batch(r, d, c->idx, c->n);
    lk_tensor y;
    LK_CHECK(lk_model_forward(m, c->n, 1, step, &y));
    /* (the loss's rows: each sample's gradient over the expected global batch) */
    LK_CHECK(lk_replica_loss(r, &y, c->n, 1, (float)(c->n / dp->expected), 0));
    lk_shape os = lk_model_out_shape(m);
    const size_t row = lk_shape_numel(&os);
    for (int i = 0; i < c->n; i++) {
        double norm = sqrt((double)sq[i]);
        double f = c->dummy ? 0.0 : LK_MIN(1.0, dp->o.clip / (norm + DP_NORM_EPS));
        if (!isfinite(norm)) /* (a non-finite gradient: left for the step check to name) */
            f = 1.0;
        if (!c->dummy) {
            dp->seen += 1;
            dp->clipped += f < 1.0;
        }
        if (f != 1.0) LK_CHECK(lk_scale(m->dev, m->dout + (size_t)i * row, (float)f, row));
    }
    return lk_model_backward_ex(m, c->n, step, mode);
}

lk_status lk_dp_add_noise(lk_dp *dp, lk_model *m, float *g, size_t g_lo, size_t g_hi, long step, uint64_t seed)
{
    if (!dp->on || dp->sigma <= 0) return LK_OK;
    const float std = (float)(dp->sigma * dp->o.clip / dp->expected);
    const uint64_t key = ((uint64_t)step << 16) | 0xFFFFu; /* (no layer's latent key: those are < 0xFFFF) */
    const size_t lo = LK_MAX(g_lo, dp->lo), hi = LK_MIN(g_hi, dp->hi);
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            if (p->buffer) continue;
            /* (the tensor's own elements: not the alignment padding, nor a padded vocabulary's rows) */
            size_t a = LK_MAX(p->offset, lo), b = LK_MIN(p->offset + lk_shape_numel(&p->shape), hi);
            if (a >= b) continue;
            LK_CHECK(lk_randn(m->dev, dp->noise, b - a, seed, key, a));
            LK_CHECK(lk_axpy(m->dev, std, dp->noise, g + (a - g_lo), b - a));
        }
    return LK_OK;
}

double lk_dp_epsilon(lk_dp *dp)
{
    if (!dp->on) return NAN;
    if (dp->pending) {
        lk_rdp_add(&dp->acct, dp->q, dp->sigma, dp->pending);
        dp->accounted += dp->pending;
        dp->pending = 0;
    }
    return lk_rdp_spent(&dp->acct, dp->delta, NULL);
}

lk_status lk_dp_save(lk_dp *dp, const char *dir)
{
    if (!dp->on) return LK_OK;
    const double eps = lk_dp_epsilon(dp);
    cJSON *j = cJSON_CreateObject(), *rdp = cJSON_AddArrayToObject(j, "rdp"), *ord = cJSON_AddArrayToObject(j, "orders");
    cJSON_AddNumberToObject(j, "steps", (double)dp->accounted);
    cJSON_AddNumberToObject(j, "delta", dp->delta);
    cJSON_AddNumberToObject(j, "sigma", dp->sigma);
    cJSON_AddNumberToObject(j, "q", dp->q);
    cJSON_AddNumberToObject(j, "clip", dp->o.clip);
    cJSON_AddNumberToObject(j, "epsilon", isfinite(eps) ? eps : -1.0);
    for (int i = 0; i < LK_RDP_NORDERS; i++) {
        cJSON_AddItemToArray(ord, cJSON_CreateNumber(lk_rdp_order(i)));
        cJSON_AddItemToArray(rdp, cJSON_CreateNumber(isfinite(dp->acct.rdp[i]) ? dp->acct.rdp[i] : -1.0));
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return LK_ERR(LK_ERR_NOMEM, "DP-SGD: cannot format the privacy account");
    char path[700];
    LK_CHECK(lk_make_dirs(dir));
    lk_ckptdir_path(dir, "privacy.json", path, sizeof path);
    lk_status st = lk_write_file_atomic(path, text, strlen(text));
    free(text);
    LK_CHECK(st);
    return LK_OK;
}

lk_status lk_dp_load(lk_dp *dp, const char *dir, long steps_done)
{
    if (!dp->on) return LK_OK;
    char path[700];
    lk_ckptdir_path(dir, "privacy.json", path, sizeof path);
    size_t len = 0;
    void *text = NULL;
    if (lk_read_file(path, &text, &len) != LK_OK)
        return LK_ERR(LK_ERR_IO, "DP-SGD: checkpoint %s has no privacy account (%s): its %ld steps were not "
                                 "private, so a private run cannot continue it (start afresh, or --init-from "
                                 "for public pre-training)", dir, path, steps_done);
    cJSON *j = cJSON_ParseWithLength(text, len);
    lk_free(text);
    const cJSON *steps = cJSON_GetObjectItem(j, "steps"), *rdp = cJSON_GetObjectItem(j, "rdp");
    const cJSON *ord = cJSON_GetObjectItem(j, "orders");
    int ok = cJSON_IsNumber(steps) && cJSON_IsArray(rdp) && cJSON_IsArray(ord) &&
             cJSON_GetArraySize(rdp) == LK_RDP_NORDERS && cJSON_GetArraySize(ord) == LK_RDP_NORDERS &&
             steps->valuedouble >= 0;
    for (int i = 0; ok && i < LK_RDP_NORDERS; i++) {
        const cJSON *v = cJSON_GetArrayItem(rdp, i), *a = cJSON_GetArrayItem(ord, i);
        ok = cJSON_IsNumber(v) && cJSON_IsNumber(a) && fabs(a->valuedouble - lk_rdp_order(i)) < 1e-9;
        if (ok) dp->acct.rdp[i] = v->valuedouble < 0 ? INFINITY : v->valuedouble;
    }
    if (ok) dp->accounted = (long)steps->valuedouble;
    cJSON_Delete(j);
    if (!ok) return LK_ERR(LK_ERR_FORMAT, "DP-SGD: %s is not a privacy account lockstep wrote", path);
    dp->pending = 0;
    return LK_OK;
}

void lk_dp_free(lk_dp *dp, lk_device *dev)
{
    if (dev) {
        lk_dev_free(dev, dp->sq);
        lk_dev_free(dev, dp->noise);
    }
    free(dp->sel);
    free(dp->chunks);
    free(dp->sq_host);
    memset(dp, 0, sizeof *dp);
}
