/* comm_nccl.c - NCCL for the all-reduces of device buffers (built with CUDA and
 * LK_NCCL). The job's communicator stays MPI: it bootstraps NCCL (rank 0's
 * ncclUniqueId is broadcast over it) and carries every host-buffer collective.
 *
 * All-reduces run on a stream of their own. Starting one records an event on the
 * device's compute stream (everything backward has queued so far, the bucket's last
 * layer included) and makes the comm stream wait for it, so NCCL overlaps the rest of
 * backward; waiting makes the compute stream wait for the all-reduce's own event - the
 * host never blocks. The communicator is non-blocking (NCCL's fault-tolerance mode):
 * set-up and enqueueing return at once and are polled with a deadline by the thread
 * that called them, so a peer that never connects cannot hold a call forever. A
 * watchdog thread polls ncclCommGetAsyncError and the age of every all-reduce in
 * flight; on an error or after the timeout it aborts the communicator (which releases
 * the streams) and the next call on the training thread returns the error, so every
 * rank ends with a message instead of hanging. The watchdog never touches the
 * communicator while the training thread is inside an NCCL call (`in_call`, under
 * `mu`); that thread then enforces the deadline itself.
 *
 * Since the host never waits for an all-reduce, host clocks cannot say how long a step
 * waited for communication; lk_comm_timer reads it off the GPU instead (CUDA events with
 * timing, read once the GPU has passed them, never waited for). */
#include <cuda_runtime.h>
#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "comm.h"

#define SLOTS LK_COMM_MAX_SLOTS
#define BLOCKING_SLOT (SLOTS - 1) /* the blocking all-reduce's own slot */
#define POLL_NS 20000000L         /* the watchdog looks every 20 ms */

struct lk_nccl {
    ncclComm_t comm;
    cudaStream_t stream;  /* the all-reduces' */
    cudaStream_t compute; /* the device's */
    cudaEvent_t ready[SLOTS], done[SLOTS];
    double started[SLOTS]; /* host time of each all-reduce in flight, 0 when none */
    int ordinal, rank;
    double timeout_s;
    pthread_t watchdog;
    pthread_mutex_t mu; /* started[], comm, in_call (the watchdog may abort comm) */
    int stop, thread_started;
    int in_call;        /* the training thread is inside an NCCL call */
    _Atomic int failed;
    char error[320];
};

static lk_status nccl_fail(const char *file, int line, const char *call, ncclResult_t r)
{
    return lk_error_set(LK_ERR_COMM, file, line, "%s failed: %s", call, ncclGetErrorString(r));
}
#define CUDA_TRY(call)                                                                \
    do {                                                                              \
        cudaError_t e_ = (call);                                                      \
        if (e_ != cudaSuccess)                                                        \
            return lk_error_set(LK_ERR_COMM, __FILE__, __LINE__, "%s failed: %s", #call, \
                                cudaGetErrorString(e_));                              \
    } while (0)

/* called with mu held: the first failure wins; the communicator is aborted once */
static void give_up(lk_nccl *g, const char *what)
{
    if (!atomic_load(&g->failed)) {
        snprintf(g->error, sizeof g->error, "rank %d: NCCL all-reduce on cuda:%d: %s", g->rank,
                 g->ordinal, what);
        atomic_store(&g->failed, 1);
    }
    if (g->comm) {
        ncclCommAbort(g->comm);
        g->comm = NULL;
    }
}

static void *watchdog(void *arg)
{
    lk_nccl *g = arg;
    cudaSetDevice(g->ordinal);
    for (;;) {
        struct timespec nap = {0, POLL_NS};
        nanosleep(&nap, NULL);
        pthread_mutex_lock(&g->mu);
        if (g->stop) {
            pthread_mutex_unlock(&g->mu);
            return NULL;
        }
        if (g->in_call) { /* the caller polls with its own deadline */
            pthread_mutex_unlock(&g->mu);
            continue;
        }
        if (g->comm) {
            ncclResult_t async = ncclSuccess;
            ncclResult_t r = ncclCommGetAsyncError(g->comm, &async);
            if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
                char what[200];
                snprintf(what, sizeof what, "asynchronous error: %s",
                         ncclGetErrorString(r != ncclSuccess ? r : async));
                give_up(g, what);
            }
        }
        const double now = lk_now();
        for (int s = 0; s < SLOTS && g->comm; s++) {
            if (g->started[s] == 0.0) continue;
            cudaError_t q = cudaEventQuery(g->done[s]);
            if (q == cudaSuccess) {
                g->started[s] = 0.0;
            } else if (q != cudaErrorNotReady) {
                char what[200];
                snprintf(what, sizeof what, "cudaEventQuery failed: %s", cudaGetErrorString(q));
                give_up(g, what);
            } else if (now - g->started[s] > g->timeout_s) {
                char what[200];
                snprintf(what, sizeof what,
                         "bucket %d did not complete within %.0f s (--comm-timeout): another rank "
                         "is gone or stuck",
                         s, g->timeout_s);
                give_up(g, what);
            }
        }
        pthread_mutex_unlock(&g->mu);
    }
}

static lk_status failed(const lk_nccl *g) { return LK_ERR(LK_ERR_COMM, "%s", g->error); }

static ncclRedOp_t nccl_op(lk_reduce_op op)
{
    switch (op) {
    case LK_REDUCE_AVG: return ncclAvg;
    case LK_REDUCE_MAX: return ncclMax;
    case LK_REDUCE_MIN: return ncclMin;
    case LK_REDUCE_SUM: break;
    }
    return ncclSum;
}

/* Polls a non-blocking communicator until its last call has been carried out (or its
 * set-up is done); aborts it at the deadline. Called by the thread that made the call,
 * with in_call set, so the watchdog keeps out. */
static ncclResult_t settle(lk_nccl *g, const char *what)
{
    const double deadline = lk_now() + g->timeout_s;
    ncclResult_t st = ncclInProgress;
    while (st == ncclInProgress) {
        ncclResult_t r = ncclCommGetAsyncError(g->comm, &st);
        if (r != ncclSuccess) return r;
        if (st == ncclInProgress && lk_now() > deadline) {
            char msg[200];
            snprintf(msg, sizeof msg, "%s did not complete within %.0f s (--comm-timeout)", what,
                     g->timeout_s);
            pthread_mutex_lock(&g->mu);
            give_up(g, msg);
            pthread_mutex_unlock(&g->mu);
            return ncclSystemError;
        }
    }
    return st;
}

/* one collective: kind -1 all-reduce of n values; 0 reduce-scatter, 1 all-gather in place
 * (a reduce to, or a broadcast from, each owner of a part: NCCL's own reduce-scatter and
 * all-gather need equal parts); of floats, or 16-bit values (bf16, fp16: the gradient wire) */
typedef struct {
    int kind;
    void *buf;
    size_t n;
    const size_t *counts;
    lk_reduce_op op;
    int world;
    lk_dtype type; /* LK_F32, or the 16-bit LK_BF16, LK_F16 */
} nccl_call;

static ncclResult_t issue(const nccl_call *k, ncclComm_t comm, cudaStream_t st)
{
    const ncclDataType_t t = k->type == LK_BF16 ? ncclBfloat16 : k->type == LK_F16 ? ncclFloat16 : ncclFloat;
    const size_t esz = lk_dtype_size(k->type);
    if (k->kind < 0) return ncclAllReduce(k->buf, k->buf, k->n, t, nccl_op(k->op), comm, st);
    ncclResult_t r = ncclGroupStart();
    size_t off = 0;
    for (int q = 0; q < k->world && r == ncclSuccess; off += k->counts[q], q++) {
        if (!k->counts[q]) continue;
        char *p = (char *)k->buf + off * esz;
        r = k->kind == 0 ? ncclReduce(p, p, k->counts[q], t, nccl_op(k->op), q, comm, st)
                         : ncclBroadcast(p, p, k->counts[q], t, q, comm, st);
    }
    ncclResult_t e = ncclGroupEnd();
    return r != ncclSuccess ? r : e;
}

static lk_status enqueue(lk_comm *c, const nccl_call *k, int slot)
{
    static const char *const what[] = {"an all-reduce", "a reduce-scatter", "an all-gather"};
    lk_nccl *g = c->nccl;
    if (atomic_load(&g->failed)) return failed(g);
    CUDA_TRY(cudaEventRecord(g->ready[slot], g->compute));
    CUDA_TRY(cudaStreamWaitEvent(g->stream, g->ready[slot], 0));
    pthread_mutex_lock(&g->mu);
    ncclComm_t comm = g->comm;
    g->in_call = comm != NULL;
    pthread_mutex_unlock(&g->mu);
    if (!comm) return failed(g);
    ncclResult_t r = issue(k, comm, g->stream);
    char msg[64];
    snprintf(msg, sizeof msg, "enqueueing %s", what[k->kind + 1]);
    if (r == ncclInProgress) r = settle(g, msg);
    cudaError_t e = r == ncclSuccess ? cudaEventRecord(g->done[slot], g->stream) : cudaSuccess;
    pthread_mutex_lock(&g->mu);
    g->in_call = 0;
    if (r == ncclSuccess && e == cudaSuccess) g->started[slot] = lk_now();
    pthread_mutex_unlock(&g->mu);
    if (atomic_load(&g->failed)) return failed(g);
    if (r != ncclSuccess) return nccl_fail(__FILE__, __LINE__, k->kind < 0 ? "ncclAllReduce" : "ncclGroupEnd", r);
    CUDA_TRY(e);
    return LK_OK;
}

lk_status lk_nccl_allreduce_start(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot)
{
    const nccl_call k = {-1, buf, n, NULL, op, c->world, LK_F32};
    return enqueue(c, &k, slot);
}

lk_status lk_nccl_shard_start(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op,
                              int slot)
{
    const nccl_call k = {kind ? 1 : 0, buf, 0, counts, op, c->world, LK_F32};
    return enqueue(c, &k, slot);
}

/* 16-bit: an all-reduce (gather) or a reduce to each part's owner, in NCCL's bf16 or fp16 */
lk_status lk_nccl_sum16_start(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather, int slot)
{
    size_t n = 0;
    for (int r = 0; r < c->world; r++) n += counts[r];
    const nccl_call k = {gather ? -1 : 0, buf, n, counts, LK_REDUCE_SUM, c->world, t};
    return enqueue(c, &k, slot);
}

lk_status lk_nccl_status(lk_comm *c)
{
    lk_nccl *g = c->nccl;
    return atomic_load(&g->failed) ? failed(g) : LK_OK;
}

lk_status lk_nccl_test(lk_comm *c, int slot, int *done)
{
    lk_nccl *g = c->nccl;
    if (atomic_load(&g->failed)) return failed(g);
    cudaError_t q = cudaEventQuery(g->done[slot]);
    *done = q == cudaSuccess;
    if (q != cudaSuccess && q != cudaErrorNotReady) CUDA_TRY(q);
    return LK_OK;
}

lk_status lk_nccl_wait(lk_comm *c, int slot)
{
    lk_nccl *g = c->nccl;
    if (atomic_load(&g->failed)) return failed(g);
    /* the compute stream waits; the host does not */
    CUDA_TRY(cudaStreamWaitEvent(g->compute, g->done[slot], 0));
    return LK_OK;
}

/* waits on the host for the blocking slot's collective, then orders compute after it */
static lk_status finish_blocking(lk_comm *c)
{
    lk_nccl *g = c->nccl;
    /* an abort by the watchdog completes the event too */
    CUDA_TRY(cudaEventSynchronize(g->done[BLOCKING_SLOT]));
    if (atomic_load(&g->failed)) return failed(g);
    return lk_nccl_wait(c, BLOCKING_SLOT);
}

lk_status lk_nccl_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op)
{
    LK_CHECK(lk_nccl_allreduce_start(c, buf, n, op, BLOCKING_SLOT));
    return finish_blocking(c);
}

lk_status lk_nccl_shard(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op)
{
    LK_CHECK(lk_nccl_shard_start(c, kind, buf, counts, op, BLOCKING_SLOT));
    return finish_blocking(c);
}

lk_status lk_nccl_sum16(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather)
{
    LK_CHECK(lk_nccl_sum16_start(c, t, buf, counts, gather, BLOCKING_SLOT));
    return finish_blocking(c);
}

/* ---- GPU timing of a bucket set's communication ---- */

#define TIMER_STEPS 8 /* steps whose events may be in flight; an older one is dropped */

struct lk_comm_timer {
    cudaStream_t compute, comm;
    /* per step: on the compute stream, `first` where the first bucket starts (its gradients
     * are final), `wait` where the waits for the all-reduces begin (backward is all queued
     * before it) and `end` after them; on the comm stream `done` after the last all-reduce */
    cudaEvent_t first[TIMER_STEPS], wait[TIMER_STEPS], done[TIMER_STEPS], end[TIMER_STEPS];
    long seq[TIMER_STEPS]; /* the step (1, 2, ...) whose events are in the slot, 0: none */
    long steps, latest;    /* steps begun; the newest step read */
    int cur;               /* the slot of the step being recorded, -1 between steps */
    double exposed_ms, span_ms; /* of step `latest` */
};

void lk_nccl_timer_destroy(lk_comm_timer *t)
{
    if (!t) return;
    for (int s = 0; s < TIMER_STEPS; s++) {
        if (t->first[s]) cudaEventDestroy(t->first[s]);
        if (t->wait[s]) cudaEventDestroy(t->wait[s]);
        if (t->done[s]) cudaEventDestroy(t->done[s]);
        if (t->end[s]) cudaEventDestroy(t->end[s]);
    }
    lk_free(t);
}

static lk_status timer_events(lk_comm_timer *t, int ordinal)
{
    CUDA_TRY(cudaSetDevice(ordinal));
    for (int s = 0; s < TIMER_STEPS; s++) {
        CUDA_TRY(cudaEventCreate(&t->first[s])); /* with timing */
        CUDA_TRY(cudaEventCreate(&t->wait[s]));
        CUDA_TRY(cudaEventCreate(&t->done[s]));
        CUDA_TRY(cudaEventCreate(&t->end[s]));
    }
    return LK_OK;
}

lk_status lk_nccl_timer_create(lk_comm *c, lk_comm_timer **out)
{
    lk_nccl *g = c->nccl;
    *out = NULL;
    lk_comm_timer *t = lk_calloc(1, sizeof *t);
    if (!t) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the all-reduce timer");
    t->compute = g->compute;
    t->comm = g->stream;
    t->cur = -1;
    lk_status s = timer_events(t, g->ordinal);
    if (s != LK_OK) {
        lk_nccl_timer_destroy(t);
        return s;
    }
    *out = t;
    return LK_OK;
}

lk_status lk_nccl_timer_first(lk_comm_timer *t)
{
    t->cur = (int)(t->steps++ % TIMER_STEPS);
    t->seq[t->cur] = 0; /* a step TIMER_STEPS back the GPU has not passed yet: dropped */
    CUDA_TRY(cudaEventRecord(t->first[t->cur], t->compute));
    return LK_OK;
}

lk_status lk_nccl_timer_wait(lk_comm_timer *t)
{
    if (t->cur < 0) return LK_OK; /* no bucket started this step */
    CUDA_TRY(cudaEventRecord(t->wait[t->cur], t->compute));
    CUDA_TRY(cudaEventRecord(t->done[t->cur], t->comm)); /* after every all-reduce queued */
    return LK_OK;
}

/* 1 when the GPU has passed e, 0 when not yet */
static lk_status passed(cudaEvent_t e, int *yes)
{
    cudaError_t q = cudaEventQuery(e);
    *yes = q == cudaSuccess;
    if (q != cudaSuccess && q != cudaErrorNotReady) CUDA_TRY(q);
    return LK_OK;
}

lk_status lk_nccl_timer_end(lk_comm_timer *t, double *exposed_ms, double *span_ms)
{
    if (t->cur >= 0) {
        CUDA_TRY(cudaEventRecord(t->end[t->cur], t->compute));
        t->seq[t->cur] = t->steps;
        t->cur = -1;
    }
    /* read every step the GPU has passed (queries, no waiting); keep the newest */
    for (int s = 0; s < TIMER_STEPS; s++) {
        if (!t->seq[s]) continue;
        int end = 0, done = 0;
        LK_CHECK(passed(t->end[s], &end));
        if (end) LK_CHECK(passed(t->done[s], &done));
        if (!end || !done) continue; /* first and wait come before end on its stream */
        float exposed = 0.0f, span = 0.0f;
        CUDA_TRY(cudaEventElapsedTime(&exposed, t->wait[s], t->end[s]));
        CUDA_TRY(cudaEventElapsedTime(&span, t->first[s], t->done[s]));
        if (t->seq[s] > t->latest) {
            t->latest = t->seq[s];
            t->exposed_ms = exposed;
            t->span_ms = span;
        }
        t->seq[s] = 0;
    }
    *exposed_ms = t->exposed_ms;
    *span_ms = t->span_ms;
    return LK_OK;
}

void lk_nccl_close(lk_comm *c)
{
    lk_nccl *g = c->nccl;
    if (!g) return;
    if (g->thread_started) {
        pthread_mutex_lock(&g->mu);
        g->stop = 1;
        pthread_mutex_unlock(&g->mu);
        pthread_join(g->watchdog, NULL);
    }
    /* an all-reduce still waiting for a peer would block a synchronise or destroy
     * for ever: abort instead (also after a failure) */
    int pending = atomic_load(&g->failed);
    for (int s = 0; s < SLOTS && !pending; s++)
        pending = g->started[s] != 0.0 && cudaEventQuery(g->done[s]) == cudaErrorNotReady;
    if (g->comm && pending) {
        ncclCommAbort(g->comm);
        g->comm = NULL;
    }
    if (g->stream && !pending) cudaStreamSynchronize(g->stream);
    if (g->comm) ncclCommDestroy(g->comm);
    for (int s = 0; s < SLOTS; s++) {
        if (g->ready[s]) cudaEventDestroy(g->ready[s]);
        if (g->done[s]) cudaEventDestroy(g->done[s]);
    }
    if (g->stream) cudaStreamDestroy(g->stream);
    pthread_mutex_destroy(&g->mu);
    lk_free(g);
    c->nccl = NULL;
}

static lk_status setup(lk_comm *c, lk_device *dev, lk_nccl *g)
{
    CUDA_TRY(cudaSetDevice(dev->ordinal));
    CUDA_TRY(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
    for (int s = 0; s < SLOTS; s++) {
        CUDA_TRY(cudaEventCreateWithFlags(&g->ready[s], cudaEventDisableTiming));
        CUDA_TRY(cudaEventCreateWithFlags(&g->done[s], cudaEventDisableTiming));
    }
    /* rank 0's id, with whether it got one, so no rank waits for a broadcast that
     * never comes */
    struct {
        int ok;
        ncclUniqueId id;
    } boot;
    memset(&boot, 0, sizeof boot);
    ncclResult_t idr = ncclSuccess;
    if (c->rank == 0) boot.ok = (idr = ncclGetUniqueId(&boot.id)) == ncclSuccess;
    LK_CHECK(lk_comm_broadcast(c, &boot, sizeof boot, 0)); /* a host buffer: over MPI */
    if (c->rank == 0 && !boot.ok) return nccl_fail(__FILE__, __LINE__, "ncclGetUniqueId", idr);
    if (!boot.ok) return LK_ERR(LK_ERR_COMM, "rank 0 could not create the NCCL id");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; /* polled with a deadline (settle) */
    ncclResult_t r = ncclCommInitRankConfig(&g->comm, c->world, boot.id, c->rank, &config);
    if (r != ncclSuccess && r != ncclInProgress)
        return nccl_fail(__FILE__, __LINE__, "ncclCommInitRankConfig", r);
    g->in_call = 1; /* no watchdog yet; settle may abort on the deadline */
    r = settle(g, "NCCL set-up (ncclCommInitRankConfig)");
    g->in_call = 0;
    if (atomic_load(&g->failed)) return failed(g);
    if (r != ncclSuccess) return nccl_fail(__FILE__, __LINE__, "ncclCommInitRankConfig", r);
    int rc = pthread_create(&g->watchdog, NULL, watchdog, g);
    if (rc) return LK_ERR(LK_ERR_COMM, "cannot start the NCCL watchdog: %s", strerror(rc));
    g->thread_started = 1;
    return LK_OK;
}

lk_status lk_nccl_open(lk_comm *c, lk_device *dev)
{
    lk_nccl *g = lk_calloc(1, sizeof *g);
    if (!g) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the NCCL state");
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        lk_free(g);
        return LK_ERR(LK_ERR_COMM, "cannot create the NCCL watchdog's mutex");
    }
    g->ordinal = dev->ordinal;
    g->rank = c->rank;
    g->timeout_s = c->timeout_s;
    g->compute = (cudaStream_t)lk_cuda_stream(dev);
    c->nccl = g;
    lk_status s = setup(c, dev, g);
    if (s != LK_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", lk_error_message());
        lk_nccl_close(c);
        return LK_ERR(s, "rank %d: NCCL set-up on cuda:%d: %s", c->rank, dev->ordinal, msg);
    }
    return LK_OK;
}

const char *lk_nccl_version(void)
{
    static char buf[32];
    int v = 0;
    ncclGetVersion(&v);
    snprintf(buf, sizeof buf, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    return buf;
}
