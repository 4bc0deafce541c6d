/* bucket_psgd.c - PowerSGD as a bucket's reduction (--grad-compress powersgd:R).
 *
 * A bucket's tensors split into the matrices PowerSGD compresses (powersgd.h) and the rest
 * (vectors, small matrices), which travel uncompressed. A final bucket runs up to three
 * all-reduces (SUM, float32) one after another in its request slot, each starting as the
 * one before it completes, so they overlap backward as plain buckets do:
 *   0  the uncompressed tensors, packed into one buffer (then unpacked into the gradients)
 *   1  P of its matrices (after the residuals are added and P = M Q)
 *   2  Q (after P is orthonormalised and Q = M^T P); then M = P Q^T and the residuals
 * (a phase with nothing to send is skipped). On the comm thread the stages run on a helper
 * device of the CPU (lk_device_open_helper): the model's device, its primitives and scratch,
 * belong to backward on the training thread meanwhile.
 *
 * Where every rank is on one host and the bucket lies in lockstep's shared gradient buffers
 * (lk_comm_phases_room; the comm thread's blocking calls), the bucket is one call of two
 * phases (rarely three) instead (powersgd.h's host stages): the uncompressed tensors summed
 * in place in the first, beside the projection. */
#include "bucket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "powersgd.h"

struct lk_buckets_psgd {
    lk_powersgd *s;
    int *k0;        /* bucket i's matrices: [k0[i], k0[i + 1]) */
    size_t *u_off;  /* the uncompressed tensors: offsets and floats, in flat order */
    size_t *u_len;
    int *u_first;   /* bucket i's: [u_first[i], u_first[i + 1]) */
    size_t *u_at;   /* bucket i's packed values in ubuf, and (i + 1) the end */
    float *ubuf;    /* device */
    unsigned char *spread; /* bucket i's residuals may hold values outside this process's rows
                              (a checkpoint's, the per-rank stages'): gathered before the host
                              stages */
    lk_device *helper; /* the comm thread's device for the stages (NULL between layers) */
};

void lk_buckets_psgd_close(lk_buckets *b)
{
    lk_buckets_psgd *p = b->psgd;
    if (!p) return;
    lk_powersgd_destroy(p->s);
    lk_device_close(p->helper);
    lk_dev_free(b->model ? b->model->dev : NULL, p->ubuf);
    lk_free(p->spread);
    lk_free(p->k0), lk_free(p->u_off), lk_free(p->u_len), lk_free(p->u_first), lk_free(p->u_at);
    lk_free(p);
    b->psgd = NULL;
}

lk_status lk_buckets_psgd_open(lk_buckets *b, lk_model *m, int rank, uint64_t seed)
{
    lk_buckets_psgd *p = lk_calloc(1, sizeof *p);
    if (!p) return LK_ERR(LK_ERR_NOMEM, "cannot allocate PowerSGD's buckets");
    b->psgd = p;
    b->model = m; /* (lk_buckets_open sets it at its end; the close above needs it sooner) */
    LK_CHECK(lk_powersgd_create(&p->s, m, b->lo, b->hi, rank, seed, b->comm->world));
    if (b->mode == LK_PROGRESS_THREAD) {
        if (m->dev->kind != LK_DEV_CPU)
            return LK_ERR(LK_ERR_ARG, "--grad-compress powersgd on %s runs its arithmetic between layers, "
                                      "not on a comm thread: use --comm-progress layers (or auto)", m->dev->name);
        LK_CHECK(lk_device_open_helper(&p->helper, m->dev));
        p->s->math = p->helper;
    }
    int nt = 0;
    for (int i = 0; i < m->nlayers; i++) nt += m->layers[i]->nparams;
    p->k0 = lk_calloc((size_t)b->n + 1, sizeof *p->k0);
    p->u_first = lk_calloc((size_t)b->n + 1, sizeof *p->u_first);
    p->u_at = lk_calloc((size_t)b->n + 1, sizeof *p->u_at);
    p->u_off = lk_calloc((size_t)LK_MAX(nt, 1), sizeof *p->u_off);
    p->u_len = lk_calloc((size_t)LK_MAX(nt, 1), sizeof *p->u_len);
    p->spread = lk_calloc((size_t)b->n + 1, 1);
    if (!p->spread || !p->k0 || !p->u_first || !p->u_at || !p->u_off || !p->u_len)
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate PowerSGD's buckets");
    /* the uncompressed tensors in flat order (a simple insertion sort: a few hundred) */
    int nu = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *t = &m->layers[i]->params[j];
            int k;
            if (t->buffer || t->offset < b->lo || t->offset >= b->hi || lk_powersgd_find(p->s, t->offset, &k)) continue;
            int at = nu++;
            while (at > 0 && p->u_off[at - 1] > t->offset) p->u_off[at] = p->u_off[at - 1], p->u_len[at] = p->u_len[at - 1], at--;
            p->u_off[at] = t->offset, p->u_len[at] = lk_param_storage(t);
        }
    int k = 0, u = 0;
    for (int i = 0; i < b->n; i++) {
        p->k0[i] = k, p->u_first[i] = u;
        while (k < p->s->nmat && p->s->mat[k].offset < b->b[i].end) k++;
        size_t floats = 0;
        for (; u < nu && p->u_off[u] < b->b[i].end; u++) floats += p->u_len[u];
        p->u_at[i + 1] = p->u_at[i] + floats;
    }
    p->k0[b->n] = k, p->u_first[b->n] = u;
    p->ubuf = lk_dev_alloc(m->dev, LK_MAX(p->u_at[b->n], 1) * sizeof(float));
    if (!p->ubuf)
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate %.1f MB for PowerSGD's uncompressed tensors on %s",
                      (double)p->u_at[b->n] * 4e-6, m->dev->name);
    return LK_OK;
}

/* the bucket's uncompressed tensors between the gradients and ubuf */
static void move_u(lk_buckets *b, int i, int pack)
{
    const lk_buckets_psgd *p = b->psgd;
    float *at = p->ubuf + p->u_at[i];
    for (int u = p->u_first[i]; u < p->u_first[i + 1]; at += p->u_len[u], u++) {
        float *g = b->grads + p->u_off[u];
        lk_copy_on_device(p->s->math, pack ? (void *)at : (void *)g, pack ? (const void *)g : (const void *)at,
                          p->u_len[u] * sizeof(float));
    }
}

/* ---- on one host: the bucket in two or three phases over the shared gradient buffers ---- */

typedef struct {
    lk_buckets *b;
    int i;
    lk_psgd_host h;
} host_call;

/* process v->me's part of [off, off + len) of the buffers at the call's start, summed into
 * every buffer */
static void host_sum(const lk_host_view *v, size_t off, size_t len)
{
    const size_t lo = len * (size_t)v->me / (size_t)v->nlocal, hi = len * (size_t)(v->me + 1) / (size_t)v->nlocal;
    float *acc = v->grads + off;
    for (int q = 1; q < v->nlocal; q++) {
        const float *g = v->grads + (size_t)q * v->stride + off;
        for (size_t j = lo; j < hi; j++) acc[j] += g[j];
    }
    for (int q = 1; q < v->nlocal; q++)
        memcpy(v->grads + (size_t)q * v->stride + off + lo, acc + lo, (hi - lo) * sizeof(float));
}

static lk_status host_phase(void *user, int phase, const lk_host_view *v, int *last)
{
    host_call *c = user;
    lk_buckets_psgd *p = c->b->psgd;
    const int i = c->i;
    if (phase == 0) /* the uncompressed tensors summed */
        for (int u = p->u_first[i]; u < p->u_first[i + 1]; u++) host_sum(v, p->u_off[u] - c->h.base, p->u_len[u]);
    if (phase == 1) /* and their sums of squares, from this process's buffer */
        for (int u = p->u_first[i]; u < p->u_first[i + 1]; u++) {
            const float *x = v->grads + (size_t)v->me * v->stride + (p->u_off[u] - c->h.base);
            for (size_t j = 0; j < p->u_len[u]; j++) c->h.sumsq += (double)x[j] * x[j];
        }
    LK_CHECK(lk_powersgd_host_phase(p->s, p->k0[i], p->k0[i + 1], &c->h, phase, v, last));
    return p->helper ? lk_device_status(p->helper) : LK_OK;
}

int lk_buckets_psgd_on_host(const lk_buckets *b)
{
    return b->psgd && b->mode == LK_PROGRESS_THREAD && b->hi > b->lo &&
           lk_comm_phases_room(b->comm, b->grads + b->lo, b->hi - b->lo) > 0;
}

/* bucket i through the host stages, when it can go that way (1) */
static int host_run(lk_buckets *b, int i, lk_status *st)
{
    lk_buckets_psgd *p = b->psgd;
    const lk_bucket *k = &b->b[i];
    host_call c = {b, i, {.base = k->begin}};
    size_t np;
    lk_powersgd_range(p->s, 0, p->k0[i], p->k0[i + 1], &c.h.p_base, &np);
    lk_powersgd_range(p->s, 1, p->k0[i], p->k0[i + 1], &c.h.q_base, &c.h.q_n);
    const size_t room = lk_comm_phases_room(b->comm, b->grads + k->begin, k->end - k->begin);
    if (!room || np > room || 2 * c.h.q_n > room) return 0;
    if (p->spread[i])
        for (int m = p->k0[i]; m < p->k0[i + 1]; m++)
            lk_powersgd_host_gather(p->s, b->grads, m, b->comm->local_rank, b->comm->local_world);
    p->spread[i] = 0;
    *st = lk_comm_phases(b->comm, b->grads + k->begin, k->end - k->begin, LK_PSGD_KEY | (uint64_t)p->s->r, 3,
                             host_phase, &c);
    b->b[i].sumsq = c.h.sumsq, b->b[i].sumsq_set = 1;
    return 1;
}

/* the first phase from k->phase on with something to send: prepared, and its collective
 * started in slot (run when slot < 0); *more 0 when none is left */
static lk_status launch(lk_buckets *b, int i, int slot, int *more)
{
    lk_bucket *k = &b->b[i];
    lk_buckets_psgd *p = b->psgd;
    const int k0 = p->k0[i], k1 = p->k0[i + 1];
    lk_status st;
    if (slot < 0 && k->phase == 0 && k0 < k1 && host_run(b, i, &st)) {
        k->phase = 3, *more = 0;
        return st;
    }
    if (k->phase == 0 && p->u_at[i + 1] == p->u_at[i]) k->phase = 1;
    if (k->phase >= 1 && k0 == k1) k->phase = 3;
    *more = k->phase < 3;
    float *buf = NULL;
    size_t at = 0, n = 0;
    if (k->phase == 0) {
        move_u(b, i, 1);
        buf = p->ubuf + p->u_at[i], n = p->u_at[i + 1] - p->u_at[i];
    } else if (k->phase == 1) {
        lk_powersgd_host_settle(p->s, k0, k1);
        LK_CHECK(lk_powersgd_project(p->s, b->grads, k0, k1));
        lk_powersgd_range(p->s, 0, k0, k1, &at, &n);
        buf = p->s->p + at;
    } else if (k->phase == 2) {
        LK_CHECK(lk_powersgd_back(p->s, b->grads, k0, k1));
        lk_powersgd_range(p->s, 1, k0, k1, &at, &n);
        buf = p->s->q + at;
    } else {
        return LK_OK;
    }
    if (p->helper) LK_CHECK(lk_device_status(p->helper)); /* (the trainer checks the model's only) */
    return slot < 0 ? lk_comm_allreduce(b->comm, buf, n, LK_REDUCE_SUM)
                    : lk_comm_allreduce_start(b->comm, buf, n, LK_REDUCE_SUM, slot);
}

static lk_status psgd_start(lk_buckets *b, int i, int slot)
{
    int more;
    return launch(b, i, slot, &more);
}

static lk_status psgd_arrived(lk_buckets *b, int i, int slot, int *more)
{
    lk_bucket *k = &b->b[i];
    lk_buckets_psgd *p = b->psgd;
    *more = 0;
    if (k->phase == 0) move_u(b, i, 0);
    if (k->phase == 2) {
        LK_CHECK(lk_powersgd_expand(p->s, b->grads, p->k0[i], p->k0[i + 1]));
        p->spread[i] = 1;
    }
    if (p->helper) LK_CHECK(lk_device_status(p->helper));
    if (k->phase >= 2) {
        k->phase = 3;
        return LK_OK;
    }
    k->phase++;
    return launch(b, i, slot, more);
}

const lk_bucket_reduction lk_reduction_powersgd = {psgd_start, psgd_arrived};

/* ---- the state in checkpoints: per rank, resumable on the same world size ---- */

static void psgd_path(char *buf, size_t size, const char *dir, int rank, int world)
{
    snprintf(buf, size, "%s/powersgd-%d-of-%d.safetensors", dir, rank, world);
}

lk_status lk_buckets_psgd_save(lk_buckets *const *sets, int nsets, const char *dir, long step)
{
    lk_st_tensor t[8];
    char names[8][32], stepbuf[32];
    float *host[8] = {0};
    int n = 0;
    lk_status st = LK_OK;
    for (int k = 0; k < nsets && k < 4 && st == LK_OK; k++) {
        if (!sets[k] || !sets[k]->psgd) continue;
        lk_powersgd *p = sets[k]->psgd->s;
        lk_powersgd_host_settle(p, 0, p->nmat);
        for (int which = 0; which < 2 && st == LK_OK; which++) {
            const size_t floats = LK_MAX(which ? p->q_floats : p->e_floats, 1);
            host[n] = lk_malloc(floats * sizeof(float));
            if (!host[n]) {
                st = LK_ERR(LK_ERR_NOMEM, "cannot stage PowerSGD's state for the checkpoint");
                break;
            }
            lk_copy_to_host(p->dev, host[n], which ? p->q : p->e, floats * sizeof(float));
            snprintf(names[n], sizeof names[n], "%d.%s", k, which ? "q" : "residual");
            t[n] = (lk_st_tensor){names[n], 1, {(int64_t)floats}, host[n]};
            n++;
        }
    }
    if (st == LK_OK && n) st = lk_device_status(sets[0]->model->dev);
    char path[600];
    const lk_comm *c = sets[0]->comm;
    psgd_path(path, sizeof path, dir, c->rank, c->world);
    snprintf(stepbuf, sizeof stepbuf, "%ld", step);
    const char *keys[] = {"step"}, *vals[] = {stepbuf};
    if (st == LK_OK && n) st = lk_safetensors_write(path, t, n, keys, vals, 1);
    for (int i = 0; i < n; i++) lk_free(host[i]);
    return st;
}

lk_status lk_buckets_psgd_load(lk_buckets *const *sets, int nsets, const char *dir, long step, char *why,
                               size_t why_size)
{
    char path[600];
    const lk_comm *c = sets[0]->comm;
    psgd_path(path, sizeof path, dir, c->rank, c->world);
    if (access(path, F_OK) != 0) {
        snprintf(why, why_size, "restart from zero: %s holds none saved by %d ranks", dir, c->world);
        return LK_OK;
    }
    lk_safetensors *f;
    LK_CHECK(lk_safetensors_read(path, &f));
    const char *saved = lk_safetensors_meta(f, "step");
    if (!saved || strtol(saved, NULL, 10) != step) {
        snprintf(why, why_size, "restart from zero: %s is of step %s, the checkpoint's %ld", path,
                 saved ? saved : "(none)", step);
        lk_safetensors_free(f);
        return LK_OK;
    }
    for (int pass = 0; pass < 2; pass++) /* every tensor checked, then every one loaded */
        for (int k = 0; k < nsets; k++) {
            if (!sets[k] || !sets[k]->psgd) continue;
            lk_powersgd *p = sets[k]->psgd->s;
            for (int which = 0; which < 2; which++) {
                char name[32];
                snprintf(name, sizeof name, "%d.%s", k, which ? "q" : "residual");
                const lk_st_entry *e = lk_safetensors_find(f, name);
                const size_t floats = LK_MAX(which ? p->q_floats : p->e_floats, 1);
                if (pass) {
                    lk_copy_to_device(p->dev, which ? p->q : p->e, e->data, floats * sizeof(float));
                } else if (!e || strcmp(e->dtype, "F32") || e->ndim != 1 || (size_t)e->shape[0] != floats) {
                    snprintf(why, why_size, "restart from zero: %s's %s is not this run's (another rank R?)",
                             path, name);
                    lk_safetensors_free(f);
                    return LK_OK;
                }
            }
        }
    lk_safetensors_free(f);
    for (int k = 0; k < nsets; k++)
        if (sets[k] && sets[k]->psgd) { /* (a saved residual owes nothing: settled before it was written) */
            memset(sets[k]->psgd->spread, 1, (size_t)sets[k]->n + 1);
            memset(sets[k]->psgd->s->owed, 0, (size_t)LK_MAX(sets[k]->psgd->s->nmat, 1));
        }
    snprintf(why, why_size, "resumed from %s", path);
    return lk_device_status(sets[0]->model->dev);
}
