/* bucket.c - gradient bucketing with all-reduces overlapped with backward. */
#include "bucket.h"

lk_status lk_buckets_create(lk_buckets **out, lk_comm *c, lk_model *m, size_t bucket_bytes)
{
    *out = NULL;
    if (bucket_bytes < sizeof(float))
        return LK_ERR(LK_ERR_ARG, "--bucket-mb must be positive");
    int cap = 0;
    for (int i = 0; i < m->nlayers; i++) cap += m->layers[i]->param_count > 0;
    if (cap > LK_COMM_MAX_SLOTS) cap = LK_COMM_MAX_SLOTS;
    lk_buckets *b = lk_calloc(1, sizeof *b);
    if (b) b->b = lk_calloc((size_t)LK_MAX(cap, 1), sizeof *b->b);
    if (!b || !b->b) {
        lk_free(b);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate gradient buckets");
    }
    b->comm = c;
    b->grads = m->grads;
    /* walk the layers from the last (offset 0) to the first, closing a bucket
     * once it holds bucket_bytes; the final bucket always ends at nparams */
    size_t begin = 0, limit = bucket_bytes / sizeof(float);
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const lk_layer *l = m->layers[i];
        if (!l->param_count) continue;
        size_t end = l->param_offset + l->param_count;
        if (end - begin >= limit && b->n < cap - 1) {
            b->b[b->n++] = (lk_bucket){begin, end, 0, 0};
            begin = end;
        }
    }
    if (begin < m->nparams || b->n == 0) b->b[b->n++] = (lk_bucket){begin, m->nparams, 0, 0};
    m->on_grad_ready = lk_buckets_grad_ready;
    m->grad_ready_user = b;
    *out = b;
    return LK_OK;
}

void lk_buckets_destroy(lk_buckets *b)
{
    if (!b) return;
    lk_free(b->b);
    lk_free(b);
}

void lk_buckets_begin(lk_buckets *b, int active)
{
    b->ready = 0;
    b->next = 0;
    b->active = active;
    b->status = LK_OK;
    b->t_first_start = b->t_last_done = 0.0;
    for (int i = 0; i < b->n; i++) b->b[i].started = b->b[i].done = 0;
}

static void start(lk_buckets *b, int i)
{
    lk_bucket *k = &b->b[i];
    if (b->status != LK_OK) return;
    if (i == 0) b->t_first_start = lk_now();
    b->status = lk_comm_allreduce_start(b->comm, b->grads + k->begin, k->end - k->begin,
                                        LK_REDUCE_SUM, i);
    k->started = 1;
}

/* Gives MPI a chance to move the requests in flight along. */
static void progress(lk_buckets *b)
{
    for (int i = 0; i < b->next && b->status == LK_OK; i++) {
        if (b->b[i].done) continue;
        int done = 0;
        b->status = lk_comm_test(b->comm, i, &done);
        if (done) {
            b->b[i].done = 1;
            b->t_last_done = lk_now();
        }
    }
}

void lk_buckets_grad_ready(void *user, size_t offset, size_t count)
{
    lk_buckets *b = user;
    if (!b->active) return;
    if (offset + count > b->ready) b->ready = offset + count;
    progress(b);
    while (b->next < b->n && b->b[b->next].end <= b->ready) start(b, b->next++);
}

lk_status lk_buckets_finish(lk_buckets *b)
{
    b->comm_ms = b->span_ms = 0.0;
    if (!b->active) return LK_OK;
    while (b->next < b->n) start(b, b->next++);
    double t0 = lk_now();
    for (int i = 0; i < b->n && b->status == LK_OK; i++) {
        if (b->b[i].done) continue;
        b->status = lk_comm_wait(b->comm, i);
        b->b[i].done = 1;
        b->t_last_done = lk_now();
    }
    double t1 = lk_now();
    b->comm_ms = (t1 - t0) * 1e3;
    b->span_ms = b->t_last_done > b->t_first_start ? (b->t_last_done - b->t_first_start) * 1e3 : 0;
    return b->status;
}

double lk_buckets_hidden_share(const lk_buckets *b)
{
    if (b->span_ms <= 0.0) return 0.0;
    double h = 1.0 - b->comm_ms / b->span_ms;
    return h < 0.0 ? 0.0 : h > 1.0 ? 1.0 : h;
}
