/* bucket.c - gradient bucketing with all-reduces overlapped with backward. */
#include "bucket.h"

#include <stdio.h>
#include <string.h>

static void *comm_thread(void *arg);

lk_progress_mode lk_progress_resolve(const lk_comm *c, lk_progress_mode mode)
{
    if (mode != LK_PROGRESS_AUTO) return mode;
    /* NCCL needs no thread: its all-reduces are queued on a stream of their own */
    return c->threads_ok && !c->nccl ? LK_PROGRESS_THREAD : LK_PROGRESS_LAYERS;
}

lk_status lk_buckets_create(lk_buckets **out, lk_comm *c, lk_model *m, size_t bucket_bytes,
                            lk_progress_mode mode)
{
    return lk_buckets_create_range(out, c, m, bucket_bytes, mode, 0, m->nparams);
}

int lk_buckets_plan(const lk_model *m, size_t bucket_bytes, size_t lo, size_t hi, lk_bucket *b, int cap)
{
    /* walk the layers from the last (offset 0) to the first, closing a bucket
     * once it holds bucket_bytes; the final bucket always ends at hi */
    int n = 0;
    size_t begin = lo, limit = bucket_bytes / sizeof(float);
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const lk_layer *l = m->layers[i];
        if (!l->param_count || l->param_offset < lo || l->param_offset >= hi) continue;
        size_t end = l->param_offset + l->param_count;
        if (end - begin >= limit && n < cap - 1) {
            b[n++] = (lk_bucket){begin, end, 0, 0.0, 0.0};
            begin = end;
        }
    }
    if (begin < hi || n == 0) b[n++] = (lk_bucket){begin, hi, 0, 0.0, 0.0};
    return n;
}

int lk_buckets_cap(const lk_model *m)
{
    int cap = 0;
    for (int i = 0; i < m->nlayers; i++) cap += m->layers[i]->param_count > 0;
    if (cap > LK_COMM_MAX_SLOTS - 1) cap = LK_COMM_MAX_SLOTS - 1; /* the last: blocking calls */
    return LK_MAX(cap, 1);
}

lk_status lk_buckets_create_range(lk_buckets **out, lk_comm *c, lk_model *m, size_t bucket_bytes,
                                  lk_progress_mode mode, size_t lo, size_t hi)
{
    *out = NULL;
    if (lo >= hi || hi > m->nparams)
        return LK_ERR(LK_ERR_ARG, "gradient buckets over [%zu, %zu) of %zu parameters", lo, hi, m->nparams);
    if (bucket_bytes < sizeof(float))
        return LK_ERR(LK_ERR_ARG, "--bucket-mb must be positive");
    mode = lk_progress_resolve(c, mode);
    if (mode == LK_PROGRESS_THREAD && !c->threads_ok)
        return LK_ERR(LK_ERR_COMM,
                      "--comm-progress thread: %s does not allow MPI calls from a second thread "
                      "(MPI_THREAD_SERIALIZED not provided); use --comm-progress layers",
                      c->library[0] ? c->library : c->vt->name);
    const int cap = lk_buckets_cap(m);
    lk_buckets *b = lk_calloc(1, sizeof *b);
    if (b) b->b = lk_calloc((size_t)cap, sizeof *b->b);
    if (!b || !b->b) {
        lk_free(b);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate gradient buckets");
    }
    b->comm = c;
    b->grads = m->grads;
    b->n = lk_buckets_plan(m, bucket_bytes, lo, hi, b->b, cap);
    b->mode = mode;
    if (mode == LK_PROGRESS_LAYERS) { /* NCCL's all-reduces: only the GPU sees the waits */
        lk_status st = lk_comm_timer_create(c, b->grads + lo, &b->timer);
        if (st != LK_OK) {
            lk_free(b->b);
            lk_free(b);
            return st;
        }
    }
    if (mode == LK_PROGRESS_THREAD) {
        int rc = pthread_mutex_init(&b->mu, NULL);
        if (!rc && (rc = pthread_cond_init(&b->wake, NULL)) != 0) pthread_mutex_destroy(&b->mu);
        if (!rc && (rc = pthread_cond_init(&b->idle, NULL)) != 0) {
            pthread_cond_destroy(&b->wake);
            pthread_mutex_destroy(&b->mu);
        }
        if (!rc && (rc = pthread_create(&b->thread, NULL, comm_thread, b)) != 0) {
            pthread_cond_destroy(&b->idle);
            pthread_cond_destroy(&b->wake);
            pthread_mutex_destroy(&b->mu);
        }
        if (rc) {
            lk_free(b->b);
            lk_free(b);
            return LK_ERR(LK_ERR_COMM, "cannot start the comm thread: %s", strerror(rc));
        }
    }
    m->on_grad_ready = lk_buckets_grad_ready;
    m->grad_ready_user = b;
    *out = b;
    return LK_OK;
}

void lk_buckets_destroy(lk_buckets *b)
{
    if (!b) return;
    if (b->mode == LK_PROGRESS_THREAD) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_signal(&b->wake);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
        pthread_cond_destroy(&b->idle);
        pthread_cond_destroy(&b->wake);
        pthread_mutex_destroy(&b->mu);
    }
    lk_comm_timer_destroy(b->timer);
    lk_free(b->b);
    lk_free(b);
}

void lk_buckets_begin(lk_buckets *b, int active)
{
    /* the comm thread, if any, is idle here: the last active step's finish waited
     * for it, and an inactive step never arms it */
    if (b->mode == LK_PROGRESS_THREAD) pthread_mutex_lock(&b->mu);
    b->ready = 0;
    b->next = 0;
    b->active = active;
    b->status = LK_OK;
    for (int i = 0; i < b->n; i++) b->b[i].done = 0, b->b[i].t_start = b->b[i].t_done = 0.0;
    b->finishing = b->complete = 0;
    if (b->mode == LK_PROGRESS_THREAD) pthread_mutex_unlock(&b->mu);
}

static void start(lk_buckets *b, int i)
{
    lk_bucket *k = &b->b[i];
    if (b->status != LK_OK) return;
    k->t_start = lk_now();
    if (i == 0) b->status = lk_comm_timer_first(b->timer); /* the step's first bucket is final */
    if (b->status == LK_OK)
        b->status = lk_comm_allreduce_start(b->comm, b->grads + k->begin, k->end - k->begin,
                                            LK_REDUCE_SUM, i);
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
            b->b[i].t_done = lk_now();
        }
    }
}

static void start_ready(lk_buckets *b, size_t ready)
{
    while (b->next < b->n && b->b[b->next].end <= ready) start(b, b->next++);
}

/* The comm thread: between begin and finish of an active step it is the only
 * thread calling MPI. It all-reduces each bucket as soon as the training thread has
 * posted that its gradients are final, and sleeps on `wake` otherwise. */
static void *comm_thread(void *arg)
{
    lk_buckets *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        const int armed = b->active && !b->complete; /* an active step not handed back */
        if (armed && b->next < b->n && (b->finishing || b->b[b->next].end <= b->ready)) {
            int i = b->next++;
            lk_bucket *k = &b->b[i];
            pthread_mutex_unlock(&b->mu);
            double t0 = lk_now();
            lk_status st = lk_comm_allreduce(b->comm, b->grads + k->begin, k->end - k->begin,
                                             LK_REDUCE_SUM);
            double t1 = lk_now();
            if (st != LK_OK) /* the message is this thread's; keep it for finish */
                snprintf(b->thread_error, sizeof b->thread_error, "%s", lk_error_message());
            pthread_mutex_lock(&b->mu);
            k->t_start = t0, k->t_done = t1;
            k->done = 1;
            if (st != LK_OK) {
                b->status = st;
                b->next = b->n; /* nothing more to do this step */
            }
            continue;
        }
        if (armed && b->finishing && b->next == b->n) { /* every bucket summed: hand back */
            b->complete = 1;
            pthread_cond_signal(&b->idle);
            continue;
        }
        pthread_cond_wait(&b->wake, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

void lk_buckets_grad_ready(void *user, size_t offset, size_t count)
{
    lk_buckets *b = user;
    if (!b->active) return;
    if (b->mode == LK_PROGRESS_THREAD) {
        pthread_mutex_lock(&b->mu);
        if (offset + count > b->ready) b->ready = offset + count;
        pthread_cond_signal(&b->wake);
        pthread_mutex_unlock(&b->mu);
        return;
    }
    if (offset + count > b->ready) b->ready = offset + count;
    progress(b);
    start_ready(b, b->ready);
}

lk_status lk_buckets_finish(lk_buckets *b)
{
    b->comm_ms = b->span_ms = 0.0;
    if (!b->active) return LK_OK;
    double t0 = lk_now(), gpu_exposed = 0.0, gpu_span = 0.0;
    if (b->mode == LK_PROGRESS_THREAD) {
        pthread_mutex_lock(&b->mu);
        b->finishing = 1;
        pthread_cond_signal(&b->wake);
        while (!b->complete) pthread_cond_wait(&b->idle, &b->mu);
        pthread_mutex_unlock(&b->mu);
    } else {
        start_ready(b, (size_t)-1);
        if (b->status == LK_OK) b->status = lk_comm_timer_wait(b->timer);
        for (int i = 0; i < b->n && b->status == LK_OK; i++) {
            if (b->b[i].done) continue;
            b->status = lk_comm_wait(b->comm, i);
            b->b[i].done = 1;
            b->b[i].t_done = lk_now();
        }
        if (b->status == LK_OK) b->status = lk_comm_timer_end(b->timer, &gpu_exposed, &gpu_span);
    }
    double t1 = lk_now();
    if (b->mode == LK_PROGRESS_THREAD && b->status != LK_OK)
        b->status = LK_ERR(b->status, "%s", b->thread_error);
    b->comm_ms = (t1 - t0) * 1e3;
    double first = b->n ? b->b[0].t_start : 0.0, last = 0.0; /* one after another: first start, last done */
    for (int i = 0; i < b->n; i++) last = LK_MAX(last, b->b[i].t_done);
    b->span_ms = first > 0.0 && last > first ? (last - first) * 1e3 : 0;
    if (b->timer) { /* NCCL: the host only queued the waits; the GPU's clock instead */
        b->comm_ms = gpu_exposed;
        b->span_ms = gpu_span;
    }
    return b->status;
}

double lk_buckets_hidden_share(const lk_buckets *b)
{
    if (b->span_ms <= 0.0) return 0.0;
    double h = 1.0 - b->comm_ms / b->span_ms;
    return h < 0.0 ? 0.0 : h > 1.0 ? 1.0 : h;
}
