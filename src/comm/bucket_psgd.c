/* bucket_psgd.c - PowerSGD as a bucket's reduction (--grad-compress powersgd:R).
 *
 * A bucket's tensors split into the matrices PowerSGD compresses (powersgd.h) and the rest
 * (vectors, small matrices), which travel uncompressed. A final bucket runs up to three
 * all-reduces (SUM, float32) one after another in its request slot, each starting as the
 * one before it completes, so they overlap backward as plain buckets do:
 *   0  the uncompressed tensors, packed into one buffer (then unpacked into the gradients)
 *   1  P of its matrices (after the residuals are added and P = M Q)
 *   2  Q (after P is orthonormalised and Q = M^T P); then M = P Q^T and the residuals
 * (a phase with nothing to send is skipped). */
#include "bucket.h"

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
};

void lk_buckets_psgd_close(lk_buckets *b)
{
    lk_buckets_psgd *p = b->psgd;
    if (!p) return;
    lk_powersgd_destroy(p->s);
    lk_dev_free(b->model ? b->model->dev : NULL, p->ubuf);
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
    int nt = 0;
    for (int i = 0; i < m->nlayers; i++) nt += m->layers[i]->nparams;
    p->k0 = lk_calloc((size_t)b->n + 1, sizeof *p->k0);
    p->u_first = lk_calloc((size_t)b->n + 1, sizeof *p->u_first);
    p->u_at = lk_calloc((size_t)b->n + 1, sizeof *p->u_at);
    p->u_off = lk_calloc((size_t)LK_MAX(nt, 1), sizeof *p->u_off);
    p->u_len = lk_calloc((size_t)LK_MAX(nt, 1), sizeof *p->u_len);
    if (!p->k0 || !p->u_first || !p->u_at || !p->u_off || !p->u_len)
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
        lk_copy_on_device(b->model->dev, pack ? (void *)at : (void *)g, pack ? (const void *)g : (const void *)at,
                          p->u_len[u] * sizeof(float));
    }
}

/* the first phase from k->phase on with something to send: prepared, and its collective
 * started in slot (run when slot < 0); *more 0 when none is left */
static lk_status launch(lk_buckets *b, int i, int slot, int *more)
{
    lk_bucket *k = &b->b[i];
    lk_buckets_psgd *p = b->psgd;
    const int k0 = p->k0[i], k1 = p->k0[i + 1];
    if (k->phase == 0 && p->u_at[i + 1] == p->u_at[i]) k->phase = 1;
    if (k->phase >= 1 && k0 == k1) k->phase = 3;
    *more = k->phase < 3;
    float *buf = NULL;
    size_t at = 0, n = 0;
    if (k->phase == 0) {
        move_u(b, i, 1);
        buf = p->ubuf + p->u_at[i], n = p->u_at[i + 1] - p->u_at[i];
    } else if (k->phase == 1) {
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
    if (k->phase == 2) LK_CHECK(lk_powersgd_expand(p->s, b->grads, p->k0[i], p->k0[i + 1]));
    if (k->phase >= 2) {
        k->phase = 3;
        return LK_OK;
    }
    k->phase++;
    return launch(b, i, slot, more);
}

const lk_bucket_reduction lk_reduction_powersgd = {"powersgd", psgd_start, psgd_arrived};
