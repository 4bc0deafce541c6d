/* bucket.c - gradient bucketing with all-reduces overlapped with backward. */
#include "bucket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/bf16.h"
#include "../core/ops.h"
#include "zero.h"

static void *comm_thread(void *arg);
static void zero_gaps(lk_buckets *b, int i);
static float *data(const lk_buckets *b, int i);
static const lk_bucket_reduction *choose_reduction(const lk_buckets *b);

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
            b[n++] = (lk_bucket){.begin = begin, .end = end, .prev = -1};
            begin = end;
        }
    }
    if (begin < hi || n == 0) b[n++] = (lk_bucket){.begin = begin, .end = hi, .prev = -1};
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
    const lk_buckets_opts o = {bucket_bytes, mode, lo, hi, NULL, NULL, LK_F32, 0, 0};
    return lk_buckets_open(out, c, m, &o);
}

#define LANES 3 /* stage 2: buckets written or in flight at once */

/* A bucket that some layer outside it writes into before the bucket's own layers run
 * (the embedding a head is tied to): it keeps its staging for the whole backward. */
static int pinned(const lk_model *m, const lk_bucket *k)
{
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *t = m->layers[i]->grads_into;
        if (t && t->param_count && t->param_offset >= k->begin && t->param_offset < k->end) return 1;
    }
    return 0;
}

/* Stage 2's staging: LANES lanes the size of the largest bucket that is not pinned, taken
 * in turn (returns their floats), and a place for each pinned bucket in a region of its
 * own (*pinned_floats); sets each bucket's at (in its region), prev and pinned. */
static size_t lay_out_stage(const lk_model *m, lk_bucket *b, int n, size_t *pinned_floats)
{
    size_t lane = 0, at = 0;
    int lanes = 0; /* LANES, or fewer where there are fewer buckets to take them */
    for (int i = 0; i < n; i++) {
        b[i].pinned = pinned(m, &b[i]);
        if (b[i].pinned) continue;
        lane = LK_MAX(lane, LK_ALIGN_UP(b[i].end - b[i].begin, 16));
        lanes = LK_MIN(lanes + 1, LANES);
    }
    int last[LANES], k = 0;
    for (int j = 0; j < LANES; j++) last[j] = -1;
    for (int i = 0; i < n; i++) {
        if (b[i].pinned) {
            b[i].at = at;
            b[i].prev = -1;
            at += LK_ALIGN_UP(b[i].end - b[i].begin, 16);
            continue;
        }
        b[i].at = (size_t)(k % lanes) * lane;
        b[i].prev = last[k % lanes];
        last[k % lanes] = i;
        k++;
    }
    *pinned_floats = at;
    return (size_t)lanes * lane;
}

size_t lk_buckets_stage_floats(const lk_model *m, size_t bucket_bytes, size_t lo, size_t hi, size_t *pinned)
{
    const int cap = lk_buckets_cap(m);
    lk_bucket *b = lk_calloc((size_t)cap, sizeof *b);
    *pinned = 0;
    if (!b) return 0;
    size_t floats = lay_out_stage(m, b, lk_buckets_plan(m, bucket_bytes, lo, hi, b, cap), pinned);
    lk_free(b);
    return floats;
}

static int cmp_range(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Each bucket's stretches that no tensor covers (alignment padding), which no layer writes:
 * zeroed before a step (a reduce-scatter may leave partial results anywhere in a rank's
 * buffer outside its part: MPI's in place does), and in stage 2's staging each time the
 * bucket takes its place, so that padding adds nothing to the clipping norm. */
static lk_status find_gaps(lk_buckets *b, const lk_model *m)
{
    int np = 0;
    for (int i = 0; i < m->nlayers; i++) np += m->layers[i]->nparams;
    size_t *t = lk_malloc((size_t)LK_MAX(np, 1) * 2 * sizeof *t);
    b->gaps = lk_malloc(((size_t)np + (size_t)b->n) * 2 * sizeof *b->gaps);
    b->gap_at = lk_calloc((size_t)b->n + 1, sizeof *b->gap_at);
    if (!t || !b->gaps || !b->gap_at) {
        lk_free(t);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate the buckets' gaps");
    }
    int nt = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            if (p->buffer) continue;
            t[2 * nt] = p->offset;
            t[2 * nt + 1] = p->offset + lk_param_storage(p);
            nt++;
        }
    qsort(t, (size_t)nt, 2 * sizeof *t, cmp_range);
    int ng = 0, ti = 0;
    for (int k = 0; k < b->n; k++) {
        b->gap_at[k] = ng;
        size_t at = b->b[k].begin;
        while (ti < nt && t[2 * ti + 1] <= at) ti++;
        for (; ti < nt && t[2 * ti] < b->b[k].end; ti++) {
            if (t[2 * ti] > at) b->gaps[2 * ng] = at, b->gaps[2 * ng + 1] = t[2 * ti], ng++;
            at = LK_MAX(at, t[2 * ti + 1]);
        }
        if (at < b->b[k].end) b->gaps[2 * ng] = at, b->gaps[2 * ng + 1] = b->b[k].end, ng++;
    } /* (buckets end on layer boundaries: no tensor runs on into the next) */
    b->gap_at[b->n] = ng;
    lk_free(t);
    return LK_OK;
}

/* the bucket holding parameter `offset` (in [b->lo, b->hi)) */
static int bucket_of(const lk_buckets *b, size_t offset)
{
    int lo = 0, hi = b->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b->b[mid].begin <= offset) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static float *grad_at(void *user, size_t offset)
{
    lk_buckets *b = user;
    if (offset < b->lo || offset >= b->hi) return NULL;
    const int i = bucket_of(b, offset);
    return data(b, i) + (offset - b->b[i].begin);
}

/* The sharded stages: parts per rank, and stage 2's staging with the gradients moved in. */
static lk_status setup_shards(lk_buckets *b, lk_model *m, float *stage)
{
    const int world = b->comm->world;
    b->counts = lk_calloc((size_t)b->n * (size_t)world, sizeof *b->counts);
    if (!b->counts) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the buckets' parts");
    for (int i = 0; i < b->n; i++)
        lk_shard_counts(&b->zero->shard, b->b[i].begin, b->b[i].end, b->counts + (size_t)i * world);
    LK_CHECK(find_gaps(b, m));
    if (b->stage < 2) return LK_OK;
    size_t pinned = 0;
    const size_t floats = lay_out_stage(m, b->b, b->n, &pinned);
    b->stage_buf = stage;
    if (!stage && floats) {
        b->stage_buf = lk_dev_alloc(m->dev, floats * sizeof(float));
        b->stage_owned = 1;
    }
    if (pinned) b->pinned_buf = lk_dev_alloc(m->dev, pinned * sizeof(float));
    if ((floats && !b->stage_buf) || (pinned && !b->pinned_buf))
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate %.1f MB of gradient staging on %s",
                      (double)(floats + pinned) * 4e-6, m->dev->name);
    if (floats) lk_zero(m->dev, b->stage_buf, floats * sizeof(float));
    if (pinned) lk_zero(m->dev, b->pinned_buf, pinned * sizeof(float));
    return lk_model_place_grads(m, grad_at, b);
}

/* where bucket i's data is reduced: the gradient buffer, or its staging (a pinned
 * bucket's region, or the lanes) */
static float *data(const lk_buckets *b, int i)
{
    if (b->stage < 2) return b->grads + b->b[i].begin;
    return (b->b[i].pinned ? b->pinned_buf : b->stage_buf) + b->b[i].at;
}

static const size_t *parts(const lk_buckets *b, int i)
{
    return b->counts + (size_t)i * (size_t)b->comm->world;
}

/* A 16-bit wire: its buffer, and stage 0's even parts (the ranks' shares of each sum). */
static lk_status setup_wire(lk_buckets *b, lk_model *m)
{
    const int world = b->comm->world;
    b->wire_buf = lk_dev_alloc(m->dev, (b->hi - b->lo) * sizeof(uint16_t));
    if (!b->wire_buf)
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate %.1f MB for the 16-bit gradient wire on %s",
                      (double)(b->hi - b->lo) * 2e-6, m->dev->name);
    if (b->stage) return LK_OK; /* the shards' parts */
    b->counts = lk_calloc((size_t)b->n * (size_t)world, sizeof *b->counts);
    if (!b->counts) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the buckets' parts");
    for (int i = 0; i < b->n; i++)
        lk_comm_even_counts(b->comm, b->b[i].end - b->b[i].begin, b->counts + (size_t)i * world);
    return LK_OK;
}

static void free_buckets(lk_buckets *b, lk_model *m)
{
    lk_buckets_psgd_close(b);
    lk_dev_free(m->dev, b->wire_buf);
    if (b->stage_owned) lk_dev_free(m->dev, b->stage_buf);
    lk_dev_free(m->dev, b->pinned_buf);
    lk_free(b->counts);
    lk_free(b->gaps);
    lk_free(b->gap_at);
    lk_free(b->b);
    lk_free(b);
}

lk_status lk_buckets_open(lk_buckets **out, lk_comm *c, lk_model *m, const lk_buckets_opts *o)
{
    *out = NULL;
    const size_t lo = o->lo, hi = o->hi ? o->hi : m->nparams, bucket_bytes = o->bucket_bytes;
    lk_progress_mode mode = o->mode;
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
    b->lo = lo, b->hi = hi;
    b->n = lk_buckets_plan(m, bucket_bytes, lo, hi, b->b, cap);
    b->mode = mode;
    b->zero = o->zero;
    b->stage = o->zero ? o->zero->stage : 0;
    b->wire = o->wire;
    b->wire_scale = 1.0f / (float)c->world;
    b->reduce = b->plain = choose_reduction(b);
    lk_status st = b->stage ? setup_shards(b, m, o->stage) : LK_OK;
    if (st == LK_OK && b->wire != LK_F32) st = setup_wire(b, m);
    if (st == LK_OK && o->powersgd_rank > 0) {
        if (b->stage || b->wire != LK_F32)
            st = LK_ERR(LK_ERR_ARG, "--grad-compress powersgd sends approximations of whole gradients: "
                                    "not with --zero's reduce-scatters (use --zero 0)");
        else
            st = lk_buckets_psgd_open(b, m, o->powersgd_rank, o->seed);
        b->reduce = b->psgd ? &lk_reduction_powersgd : b->plain;
    }
    if (st == LK_OK && mode == LK_PROGRESS_LAYERS) /* NCCL's all-reduces: only the GPU sees the waits */
        st = lk_comm_timer_create(c, data(b, 0), &b->timer);
    if (st != LK_OK) {
        free_buckets(b, m);
        return st;
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
            lk_comm_timer_destroy(b->timer);
            free_buckets(b, m);
            return LK_ERR(LK_ERR_COMM, "cannot start the comm thread: %s", strerror(rc));
        }
    }
    m->on_grad_ready = lk_buckets_grad_ready;
    m->before_grads = b->stage == 2 ? lk_buckets_before_grads : NULL;
    m->grad_ready_user = b;
    b->model = m;
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
    free_buckets(b, b->model);
}

void lk_buckets_begin(lk_buckets *b, int first, int last)
{
    /* the comm thread, if any, is idle here: the last active step's finish waited
     * for it, and an inactive step never arms it */
    if (b->mode == LK_PROGRESS_THREAD) pthread_mutex_lock(&b->mu);
    b->ready = 0;
    b->next = 0;
    b->active = last || b->stage == 2;
    b->last_active = last;
    b->accumulate = b->stage == 2 && !first;
    if (first) b->comm_ms = b->span_ms = 0.0; /* a step's backwards add up */
    b->status = LK_OK;
    for (int i = 0; i < b->n; i++) {
        lk_bucket *k = &b->b[i];
        k->done = k->touched = k->final = 0;
        k->t_start = k->t_done = 0.0;
    }
    b->finishing = b->complete = 0;
    if (b->mode == LK_PROGRESS_THREAD) pthread_mutex_unlock(&b->mu);
    for (int i = 0; first && b->stage == 1 && i < b->n; i++) zero_gaps(b, i);
}

/* this rank's part of bucket i: where it starts in the bucket, how long */
static size_t my_part(const lk_buckets *b, int i, size_t *mine)
{
    const size_t *cnt = parts(b, i);
    size_t off = 0;
    for (int r = 0; r < b->comm->rank; r++) off += cnt[r];
    *mine = cnt[b->comm->rank];
    return off;
}

/* ---- how a final bucket is reduced: a strategy chosen once, at open (b->reduce) ---- */

/* Float32 <-> 16 bits of bucket values, scaled: in host memory by a plain loop (the comm
 * thread may run it: no OpenMP team of its own beside the training thread's), else on the
 * device. */
static lk_status to_wire(lk_buckets *b, const float *x, uint16_t *y, size_t n)
{
    lk_device *d = b->model->dev;
    const float s = b->wire_scale;
    if (!d->host_addressable) return lk_pack16(d, b->wire, x, s, y, n);
    if (b->wire == LK_F16)
        for (size_t j = 0; j < n; j++) y[j] = lk_wire16_rne(LK_F16, x[j] * s);
    else
        for (size_t j = 0; j < n; j++) y[j] = lk_wire16_rne(LK_BF16, x[j] * s);
    return LK_OK;
}

static lk_status from_wire(lk_buckets *b, const uint16_t *x, float *y, size_t n)
{
    lk_device *d = b->model->dev;
    const float s = 1.0f / b->wire_scale;
    if (!d->host_addressable) return lk_unpack16(d, b->wire, x, s, y, n);
    if (b->wire == LK_F16)
        for (size_t j = 0; j < n; j++) y[j] = lk_wire16_to_f32(LK_F16, x[j]) * s;
    else
        for (size_t j = 0; j < n; j++) y[j] = lk_wire16_to_f32(LK_BF16, x[j]) * s;
    return LK_OK;
}

static lk_status arrived_in_place(lk_buckets *b, int i, int slot, int *more)
{
    (void)b, (void)i, (void)slot;
    *more = 0;
    return LK_OK;
}

/* stage 0, float32: the bucket all-reduced in place */
static lk_status start_allreduce(lk_buckets *b, int i, int slot)
{
    const lk_bucket *k = &b->b[i];
    return slot < 0 ? lk_comm_allreduce(b->comm, data(b, i), k->end - k->begin, LK_REDUCE_SUM)
                    : lk_comm_allreduce_start(b->comm, data(b, i), k->end - k->begin, LK_REDUCE_SUM, slot);
}

/* stages 1 and 2, float32: reduce-scattered in place (each rank keeps its part's sums) */
static lk_status start_reduce_scatter(lk_buckets *b, int i, int slot)
{
    return slot < 0 ? lk_comm_reduce_scatter(b->comm, data(b, i), parts(b, i), LK_REDUCE_SUM)
                    : lk_comm_reduce_scatter_start(b->comm, data(b, i), parts(b, i), LK_REDUCE_SUM, slot);
}

/* a 16-bit wire: the bucket scaled by 1/world and rounded into the wire buffer, summed there
 * (every rank's part added in float32, rounded once; stage 0 all-gathers the sums); on the
 * comm thread of one host, where the bucket lies in lockstep's shared memory, the same sums
 * in place in one pass (phase 1: nothing to convert back) */
static lk_status start_sum16(lk_buckets *b, int i, int slot)
{
    lk_bucket *k = &b->b[i];
    if (slot < 0 && lk_comm_sum16_in_place(b->comm, data(b, i), k->end - k->begin)) {
        k->phase = 1;
        return lk_comm_sum16_floats(b->comm, b->wire, data(b, i), parts(b, i), !b->stage, b->wire_scale);
    }
    uint16_t *w = b->wire_buf + (k->begin - b->lo);
    LK_CHECK(to_wire(b, data(b, i), w, k->end - k->begin));
    return slot < 0 ? lk_comm_sum16(b->comm, b->wire, w, parts(b, i), !b->stage)
                    : lk_comm_sum16_start(b->comm, b->wire, w, parts(b, i), !b->stage, slot);
}

/* ... and the sums back to float32 in the bucket's place, times world (stage 0 all of
 * them, else this rank's part) */
static lk_status arrived_sum16(lk_buckets *b, int i, int slot, int *more)
{
    (void)slot;
    *more = 0;
    const lk_bucket *k = &b->b[i];
    if (k->phase == 1) return LK_OK; /* summed in place */
    const uint16_t *w = b->wire_buf + (k->begin - b->lo);
    if (!b->stage) return from_wire(b, w, data(b, i), k->end - k->begin);
    size_t mine;
    const size_t off = my_part(b, i, &mine);
    return from_wire(b, w + off, data(b, i) + off, mine);
}

static const lk_bucket_reduction reductions[] = {
    {start_allreduce, arrived_in_place},     /* stage 0 */
    {start_reduce_scatter, arrived_in_place}, /* stages 1, 2 */
    {start_sum16, arrived_sum16},             /* a 16-bit wire */
};

static const lk_bucket_reduction *choose_reduction(const lk_buckets *b)
{
    if (b->wire != LK_F32) return &reductions[2];
    return &reductions[b->stage ? 1 : 0];
}

/* bucket i's reduced values (all of them, or this rank's part at stage 1), squared and
 * added while they are in cache - a plain loop, safe on the comm thread */
static void note_sumsq(lk_buckets *b, int i)
{
    lk_bucket *k = &b->b[i];
    if (k->sumsq_set) { /* (from its reduction) */
        k->sumsq_set = 0;
        return;
    }
    k->sumsq = 0.0;
    if (!b->model->dev->host_addressable || b->stage == 2) return;
    size_t mine = k->end - k->begin, off = 0;
    if (b->stage == 1) off = my_part(b, i, &mine);
    const float *x = data(b, i) + off;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t j = 0; j < mine; j++) s += (double)x[j] * x[j];
    k->sumsq = s;
}

int lk_buckets_sumsq(const lk_buckets *b, double *out)
{
    if (!b->model->dev->host_addressable || b->stage == 2 || !b->last_active) return 0;
    double s = 0.0;
    for (int i = 0; i < b->n; i++) s += b->b[i].sumsq;
    *out = s;
    return 1;
}

/* bucket i's collective, started (slot i) or blocking (slot < 0, every one of its
 * collectives run and their sums put in place) */
static lk_status collective(lk_buckets *b, int i, int slot)
{
    b->b[i].phase = 0;
    lk_status st = b->reduce->start(b, i, slot);
    for (int more = slot < 0; st == LK_OK && slot < 0 && more;) st = b->reduce->arrived(b, i, -1, &more);
    if (st == LK_OK && slot < 0) note_sumsq(b, i);
    return st;
}

/* slot i's collective is done: its sums put in place; *more when the next one started */
static lk_status arrived(lk_buckets *b, int i, int *more) { return b->reduce->arrived(b, i, i, more); }

/* Waits for every collective of bucket i (slot i), putting each one's sums in place. */
static lk_status wait_all(lk_buckets *b, int i)
{
    lk_status st = LK_OK;
    for (int more = 1; st == LK_OK && more;) {
        st = lk_comm_wait(b->comm, i);
        if (st == LK_OK) st = arrived(b, i, &more);
    }
    return st;
}

void lk_buckets_compress(lk_buckets *b, int on) { b->reduce = on && b->psgd ? &lk_reduction_powersgd : b->plain; }

static void start(lk_buckets *b, int i)
{
    lk_bucket *k = &b->b[i];
    if (b->status != LK_OK) return;
    k->t_start = lk_now();
    if (i == 0) b->status = lk_comm_timer_first(b->timer); /* the step's first bucket is final */
    if (b->status == LK_OK) b->status = collective(b, i, i);
}

/* Gives MPI a chance to move the requests in flight along. */
static void progress(lk_buckets *b)
{
    for (int i = 0; i < b->next && b->status == LK_OK; i++) {
        if (b->b[i].done) continue;
        int done = 0, more = 0;
        b->status = lk_comm_test(b->comm, i, &done);
        if (done && b->status == LK_OK) b->status = arrived(b, i, &more);
        if (done && !more) {
            b->b[i].done = 1;
            b->b[i].t_done = lk_now();
            note_sumsq(b, i);
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
    lk_device_helper_thread(); /* (the 16-bit conversions, PowerSGD's stages: on this thread alone) */
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        const int armed = b->active && !b->complete; /* an active step not handed back */
        if (armed && b->next < b->n && (b->finishing || b->b[b->next].end <= b->ready)) {
            int i = b->next++;
            lk_bucket *k = &b->b[i];
            pthread_mutex_unlock(&b->mu);
            b->comm->doing.bucket = i; /* (a timeout's report says which) */
            double t0 = lk_now();
            lk_status st = collective(b, i, -1);
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
            pthread_cond_broadcast(&b->idle); /* stage 2 may wait for a lane */
            continue;
        }
        if (armed && b->finishing && b->next == b->n) { /* every bucket summed: hand back */
            b->comm->doing.bucket = -1;
            b->complete = 1;
            pthread_cond_broadcast(&b->idle);
            continue;
        }
        pthread_cond_wait(&b->wake, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Stage 2: waits for bucket i's reduce-scatter and moves this rank's part of it into the
 * slice (adds it, after the step's first backward); its lane is then free. */
static void finalize(lk_buckets *b, int i)
{
    lk_bucket *k = &b->b[i];
    if (k->final || b->status != LK_OK) return;
    if (b->mode == LK_PROGRESS_THREAD) {
        pthread_mutex_lock(&b->mu);
        while (!k->done && b->status == LK_OK) pthread_cond_wait(&b->idle, &b->mu);
        pthread_mutex_unlock(&b->mu);
        if (b->status != LK_OK) return;
    } else if (!k->done) { /* started: its layers' hook has run */
        b->status = wait_all(b, i);
        k->done = 1;
        k->t_done = lk_now();
        if (b->status != LK_OK) return;
        note_sumsq(b, i);
    }
    size_t mine;
    const size_t off = my_part(b, i, &mine);
    k->final = 1;
    if (!mine) return;
    lk_device *d = b->model->dev;
    float *src = data(b, i) + off, *dst = b->zero->slice + (k->begin + off - b->zero->shard.lo);
    if (b->accumulate) b->status = lk_axpy(d, 1.0f, src, dst, mine);
    else lk_copy_on_device(d, dst, src, mine * sizeof(float));
}

static void zero_gaps(lk_buckets *b, int i)
{
    float *d = data(b, i);
    for (int g = b->gap_at[i]; g < b->gap_at[i + 1]; g++)
        lk_zero(b->model->dev, d + (b->gaps[2 * g] - b->b[i].begin),
                (b->gaps[2 * g + 1] - b->gaps[2 * g]) * sizeof(float));
}

void lk_buckets_before_grads(void *user, size_t offset, size_t count)
{
    lk_buckets *b = user;
    (void)count;
    if (!b->active || b->stage != 2 || offset < b->lo || offset >= b->hi) return;
    const int i = bucket_of(b, offset);
    lk_bucket *k = &b->b[i];
    if (k->touched || b->status != LK_OK) return;
    if (k->prev >= 0) finalize(b, k->prev); /* the lane's last bucket is done with it */
    zero_gaps(b, i);
    k->touched = 1;
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
            b->status = wait_all(b, i);
            b->b[i].done = 1;
            b->b[i].t_done = lk_now();
            note_sumsq(b, i);
        }
        if (b->status == LK_OK) b->status = lk_comm_timer_end(b->timer, &gpu_exposed, &gpu_span);
    }
    if (b->mode == LK_PROGRESS_THREAD && b->status != LK_OK)
        b->status = LK_ERR(b->status, "%s", b->thread_error);
    for (int i = 0; b->stage == 2 && i < b->n; i++) finalize(b, i);
    double t1 = lk_now();
    double comm = (t1 - t0) * 1e3;
    double first = b->n ? b->b[0].t_start : 0.0, last = 0.0; /* one after another: first start, last done */
    for (int i = 0; i < b->n; i++) last = LK_MAX(last, b->b[i].t_done);
    double span = first > 0.0 && last > first ? (last - first) * 1e3 : 0;
    if (b->timer) { /* NCCL: the host only queued the waits; the GPU's clock instead */
        comm = gpu_exposed;
        span = gpu_span;
    }
    b->comm_ms += comm;
    b->span_ms += span;
    return b->status;
}

double lk_buckets_hidden_share(const lk_buckets *b)
{
    if (b->span_ms <= 0.0) return 0.0;
    double h = 1.0 - b->comm_ms / b->span_ms;
    return h < 0.0 ? 0.0 : h > 1.0 ? 1.0 : h;
}
