/* comm_mpi.c - the MPI backend (host buffers). Errors come back as codes
 * (MPI_ERRORS_RETURN) and are turned into messages naming the call and the rank. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/half.h"
#include "comm.h"
#include "mpi_watch.h"
#include "shm.h"

/* A 16-bit sum in flight (sum16_start): the parts' exchange, then this rank's sum, then
 * (an all-reduce) the all-gather of the sums. */
typedef struct {
    lk_dtype type; /* of the values: LK_BF16, LK_F16 */
    int phase;    /* 0 none; 1 the exchange in flight; 2 added, the all-gather not started
                     (not its turn yet); 3 the all-gather in flight */
    int gather;
    unsigned long seq; /* an all-reduce's place in the order of all-gathers */
    uint16_t *buf;
    uint16_t *rx; /* every rank's copy of this rank's part, rank after rank */
    size_t rx_cap;
} sum16_slot;

typedef struct {
    MPI_Comm world, node;
    MPI_Comm cross;                    /* ranks of the same local rank on every host */
    MPI_Comm gathers;                  /* 16-bit all-reduces' all-gathers, in their own order */
    unsigned long gather_seq, gather_turn; /* the next all-reduce's number; the next to gather */
    void *region;                      /* the host's shared memory (use_shm) */
    size_t region_bytes;
    lk_shm shm;
    int initialised_here;
    MPI_Request req[LK_COMM_MAX_SLOTS];
    float *avg_buf[LK_COMM_MAX_SLOTS]; /* AVG: scaled by 1/world when the sum arrives */
    size_t avg_n[LK_COMM_MAX_SLOTS];
    float *move_to[LK_COMM_MAX_SLOTS]; /* reduce-scatter: its part moves here from the start */
    unsigned char avg_scale[LK_COMM_MAX_SLOTS]; /* ... and is an average */
    int *counts, *displs;              /* world entries per slot (+1: blocking calls), v-collectives */
    int *a2a;                          /* 4 x world per slot (+1): a 16-bit sum's exchange */
    sum16_slot s16[LK_COMM_MAX_SLOTS + 1];
    lk_mpi_watch *watch;               /* the collectives' deadline (NULL: none, see open) */
    long slot_call[LK_COMM_MAX_SLOTS]; /* a slot's collective: its number ... */
    const char *slot_what[LK_COMM_MAX_SLOTS]; /* ... and kind, for the watchdog */
} mpi_impl;

static lk_status mpi_fail(const lk_comm *c, const char *call, int rc)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return LK_ERR(LK_ERR_COMM, "rank %d: %s failed: %s", c->rank, call, msg);
}
#define MPI_TRY(c, call)                                  \
    do {                                                  \
        int rc_ = (call);                                 \
        if (rc_ != MPI_SUCCESS) return mpi_fail(c, #call, rc_); \
    } while (0)

/* A blocking collective: numbered, and watched while it blocks (mpi_watch.h). */
#define MPI_BLOCKING(c, what, call)                                      \
    do {                                                                 \
        lk_mpi_watch *w_ = ((mpi_impl *)(c)->impl)->watch;               \
        lk_mpi_watch_block(w_, lk_mpi_watch_number(w_), what);           \
        int rc_ = (call);                                                \
        lk_mpi_watch_unblock(w_);                                        \
        if (rc_ != MPI_SUCCESS) return mpi_fail(c, #call, rc_);          \
    } while (0)
/* A wait for the collective a slot started (numbered then: note_start). */
#define MPI_WAITING(c, slot, call)                                                    \
    do {                                                                              \
        mpi_impl *m_ = (c)->impl;                                                     \
        lk_mpi_watch_block(m_->watch, m_->slot_call[slot], m_->slot_what[slot]);      \
        int rc_ = (call);                                                             \
        lk_mpi_watch_unblock(m_->watch);                                              \
        if (rc_ != MPI_SUCCESS) return mpi_fail(c, #call, rc_);                       \
    } while (0)

static void note_start(mpi_impl *m, int slot, const char *what)
{
    m->slot_call[slot] = lk_mpi_watch_number(m->watch);
    m->slot_what[slot] = what;
}

static MPI_Op mpi_op(lk_reduce_op op)
{
    switch (op) {
    case LK_REDUCE_MAX: return MPI_MAX;
    case LK_REDUCE_MIN: return MPI_MIN;
    case LK_REDUCE_SUM:
    case LK_REDUCE_AVG: break;
    }
    return MPI_SUM;
}

/* AVG is a SUM scaled by 1/world once it has arrived */
static void scale_avg(const lk_comm *c, float *buf, size_t n)
{
    const float s = 1.0f / (float)c->world;
    for (size_t i = 0; i < n; i++) buf[i] *= s;
}

/* An in-place MPI reduce-scatter leaves this rank's n floats at the buffer's start: they
 * go to their place in it, scaled for an average. */
static void place_part(const lk_comm *c, float *buf, float *part, size_t n, int avg)
{
    if (!n) return;
    if (part != buf) memmove(part, buf, n * sizeof(float));
    if (avg) scale_avg(c, part, n);
}

static void finish_avg(lk_comm *c, mpi_impl *m, int slot)
{
    if (m->move_to[slot]) { /* a reduce-scatter's part */
        place_part(c, m->avg_buf[slot], m->move_to[slot], m->avg_n[slot], m->avg_scale[slot]);
        m->avg_buf[slot] = m->move_to[slot] = NULL;
        return;
    }
    if (!m->avg_buf[slot]) return;
    scale_avg(c, m->avg_buf[slot], m->avg_n[slot]);
    m->avg_buf[slot] = NULL;
}

static lk_status check_count(const lk_comm *c, size_t n)
{
    if (n > INT_MAX)
        return LK_ERR(LK_ERR_ARG, "rank %d: all-reduce of %zu floats exceeds one MPI message",
                      c->rank, n);
    return LK_OK;
}

static lk_status mpi_allreduce_start(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot)
{
    mpi_impl *m = c->impl;
    if (m->req[slot] != MPI_REQUEST_NULL)
        return LK_ERR(LK_ERR_STATE, "rank %d: request slot %d is still in flight", c->rank, slot);
    LK_CHECK(check_count(c, n));
    m->avg_buf[slot] = op == LK_REDUCE_AVG && n ? buf : NULL;
    m->avg_n[slot] = n;
    m->move_to[slot] = NULL;
    if (!n) return LK_OK;
    note_start(m, slot, "all-reduce");
    MPI_TRY(c, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, mpi_op(op), m->world,
                              &m->req[slot]));
    return LK_OK;
}

static lk_status sum16_next(lk_comm *c, int slot, int *done);
static lk_status sum16_turn(lk_comm *c, int slot);

static lk_status mpi_test(lk_comm *c, int slot, int *done)
{
    mpi_impl *m = c->impl;
    *done = 1;
    if (m->req[slot] != MPI_REQUEST_NULL) MPI_TRY(c, MPI_Test(&m->req[slot], done, MPI_STATUS_IGNORE));
    if (*done && m->s16[slot].phase) return sum16_next(c, slot, done);
    if (*done) finish_avg(c, m, slot);
    return LK_OK;
}

static lk_status mpi_wait(lk_comm *c, int slot)
{
    mpi_impl *m = c->impl;
    for (int done = 0; !done;) {
        if (m->s16[slot].phase == 2) LK_CHECK(sum16_turn(c, slot)); /* the earlier ones first */
        if (m->req[slot] != MPI_REQUEST_NULL) MPI_WAITING(c, slot, MPI_Wait(&m->req[slot], MPI_STATUS_IGNORE));
        done = 1;
        if (m->s16[slot].phase) LK_CHECK(sum16_next(c, slot, &done));
    }
    finish_avg(c, m, slot);
    return LK_OK;
}

/* the shared-memory all-reduce's step between hosts */
static lk_status cross_allreduce(void *user, float *chunk, size_t n, lk_reduce_op op)
{
    lk_comm *c = user;
    mpi_impl *m = c->impl;
    LK_CHECK(check_count(c, n));
    MPI_BLOCKING(c, "all-reduce between hosts", MPI_Allreduce(MPI_IN_PLACE, chunk, (int)n, MPI_FLOAT, mpi_op(op), m->cross));
    return LK_OK;
}

static lk_status shm_failed(lk_comm *c, lk_status st)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", lk_error_message());
    return LK_ERR(st, "on host %s, %s", c->host, msg);
}

static lk_status shm_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op)
{
    mpi_impl *m = c->impl;
    m->shm.timeout_s = c->timeout_s;
    lk_status st = lk_shm_allreduce(&m->shm, buf, n, op, 1.0f / (float)c->world,
                                    m->cross != MPI_COMM_NULL ? cross_allreduce : NULL, c);
    return st == LK_OK ? LK_OK : shm_failed(c, st);
}

static lk_status mpi_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op)
{
    mpi_impl *m = c->impl;
    if (c->shm) return shm_allreduce(c, buf, n, op);
    LK_CHECK(check_count(c, n));
    if (!n) return LK_OK;
    MPI_BLOCKING(c, "all-reduce", MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, mpi_op(op), m->world));
    if (op == LK_REDUCE_AVG) scale_avg(c, buf, n);
    return LK_OK;
}

static lk_status mpi_allreduce_f64(lk_comm *c, double *buf, int n, lk_reduce_op op)
{
    mpi_impl *m = c->impl;
    if (!n) return LK_OK;
    MPI_BLOCKING(c, "all-reduce", MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, mpi_op(op), m->world));
    if (op == LK_REDUCE_AVG)
        for (int i = 0; i < n; i++) buf[i] /= c->world;
    return LK_OK;
}

static lk_status mpi_broadcast(lk_comm *c, void *buf, size_t bytes, int root)
{
    mpi_impl *m = c->impl;
    for (size_t off = 0; off < bytes; off += (size_t)INT_MAX / 2) { /* big buffers in pieces */
        int len = (int)LK_MIN(bytes - off, (size_t)INT_MAX / 2);
        MPI_BLOCKING(c, "broadcast", MPI_Bcast((char *)buf + off, len, MPI_BYTE, root, m->world));
    }
    return LK_OK;
}

/* the slot's int counts and displacements (MPI's), checked */
static lk_status fill_parts(lk_comm *c, int slot, const size_t *counts, int **cnt, int **dsp)
{
    mpi_impl *m = c->impl;
    *cnt = m->counts + (size_t)slot * (size_t)c->world;
    *dsp = m->displs + (size_t)slot * (size_t)c->world;
    size_t off = 0;
    for (int r = 0; r < c->world; r++) {
        if (counts[r] > INT_MAX || off > INT_MAX)
            return LK_ERR(LK_ERR_ARG, "rank %d: a part of %zu floats at %zu exceeds one MPI message",
                          c->rank, counts[r], off);
        (*cnt)[r] = (int)counts[r];
        (*dsp)[r] = (int)off;
        off += counts[r];
    }
    return LK_OK;
}

/* after an in-place MPI reduce-scatter: where this rank's part goes, and an average's scale */
static void note_part(lk_comm *c, int slot, float *buf, const int *dsp, const int *cnt, lk_reduce_op op)
{
    mpi_impl *m = c->impl;
    m->avg_buf[slot] = buf;
    m->avg_n[slot] = (size_t)cnt[c->rank];
    m->avg_scale[slot] = op == LK_REDUCE_AVG;
    m->move_to[slot] = buf + dsp[c->rank];
}

static int one_host_shm(const lk_comm *c)
{
    const mpi_impl *m = c->impl;
    return c->shm && m->cross == MPI_COMM_NULL;
}

/* a free slot, and its MPI counts and displacements */
static lk_status start_parts(lk_comm *c, int slot, const size_t *counts, int **cnt, int **dsp)
{
    mpi_impl *m = c->impl;
    if (m->req[slot] != MPI_REQUEST_NULL)
        return LK_ERR(LK_ERR_STATE, "rank %d: request slot %d is still in flight", c->rank, slot);
    return fill_parts(c, slot, counts, cnt, dsp);
}

static lk_status mpi_reduce_scatter_start(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op,
                                          int slot)
{
    mpi_impl *m = c->impl;
    int *cnt = NULL, *dsp = NULL;
    LK_CHECK(start_parts(c, slot, counts, &cnt, &dsp));
    float dummy = 0.0f;
    note_start(m, slot, "reduce-scatter");
    MPI_TRY(c, MPI_Ireduce_scatter(MPI_IN_PLACE, buf ? buf : &dummy, cnt, MPI_FLOAT, mpi_op(op), m->world,
                                   &m->req[slot]));
    note_part(c, slot, buf ? buf : &dummy, dsp, cnt, op);
    return LK_OK;
}

static lk_status mpi_allgather_start(lk_comm *c, float *buf, const size_t *counts, int slot)
{
    mpi_impl *m = c->impl;
    int *cnt = NULL, *dsp = NULL;
    LK_CHECK(start_parts(c, slot, counts, &cnt, &dsp));
    float dummy = 0.0f;
    note_start(m, slot, "all-gather");
    MPI_TRY(c, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf ? buf : &dummy, cnt, dsp, MPI_FLOAT,
                               m->world, &m->req[slot]));
    return LK_OK;
}

static lk_status mpi_reduce_scatter(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op)
{
    mpi_impl *m = c->impl;
    if (one_host_shm(c)) {
        m->shm.timeout_s = c->timeout_s;
        lk_status st = lk_shm_reduce_scatter(&m->shm, buf, counts, op, 1.0f / (float)c->world);
        return st == LK_OK ? LK_OK : shm_failed(c, st);
    }
    const int slot = LK_COMM_MAX_SLOTS; /* the blocking calls' own counts */
    int *cnt = NULL, *dsp = NULL;
    LK_CHECK(fill_parts(c, slot, counts, &cnt, &dsp));
    float dummy = 0.0f;
    MPI_BLOCKING(c, "reduce-scatter", MPI_Reduce_scatter(MPI_IN_PLACE, buf ? buf : &dummy, cnt, MPI_FLOAT, mpi_op(op), m->world));
    if (buf) place_part(c, buf, buf + dsp[c->rank], (size_t)cnt[c->rank], op == LK_REDUCE_AVG);
    return LK_OK;
}

static lk_status mpi_allgather(lk_comm *c, float *buf, const size_t *counts)
{
    mpi_impl *m = c->impl;
    if (one_host_shm(c)) {
        m->shm.timeout_s = c->timeout_s;
        lk_status st = lk_shm_allgather(&m->shm, buf, counts);
        return st == LK_OK ? LK_OK : shm_failed(c, st);
    }
    int *cnt = NULL, *dsp = NULL;
    LK_CHECK(fill_parts(c, LK_COMM_MAX_SLOTS, counts, &cnt, &dsp));
    float dummy = 0.0f;
    MPI_BLOCKING(c, "all-gather", MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf ? buf : &dummy, cnt,
                                                 dsp, MPI_FLOAT, m->world));
    return LK_OK;
}

/* ---- 16-bit sums: every rank's copy of each part to the part's owner (MPI_Alltoallv of
 * uint16), the owner adds them in float32 in rank order and rounds once, then (an
 * all-reduce) every owner's sum to every rank (MPI_Allgatherv in place): the bytes of a
 * float32 reduce-scatter + all-gather, halved ---- */

/* the slot's exchange: send counts and displacements (the parts), receive counts and
 * displacements (this rank's part from each rank, one after another); rx big enough */
static lk_status sum16_plan(lk_comm *c, int slot, const size_t *counts, int **a2a)
{
    mpi_impl *m = c->impl;
    int *cnt = NULL, *dsp = NULL;
    LK_CHECK(fill_parts(c, slot, counts, &cnt, &dsp));
    const int w = c->world, mine = cnt[c->rank];
    int *a = m->a2a + (size_t)slot * 4 * (size_t)w;
    if ((size_t)mine * (size_t)w > INT_MAX)
        return LK_ERR(LK_ERR_ARG, "rank %d: a 16-bit part of %d values x %d ranks exceeds one MPI message",
                      c->rank, mine, w);
    for (int r = 0; r < w; r++) {
        a[r] = cnt[r], a[w + r] = dsp[r];
        a[2 * w + r] = mine, a[3 * w + r] = r * mine;
    }
    sum16_slot *s = &m->s16[slot];
    const size_t need = (size_t)mine * (size_t)w;
    if (need > s->rx_cap) { /* once per slot and size: a step allocates nothing after the first */
        uint16_t *rx = lk_malloc(need * sizeof *rx);
        if (!rx) return LK_ERR(LK_ERR_NOMEM, "rank %d: cannot allocate %zu bytes for a 16-bit sum", c->rank,
                               need * sizeof *rx);
        lk_free(s->rx);
        s->rx = rx;
        s->rx_cap = need;
    }
    *a2a = a;
    return LK_OK;
}

/* this rank's part: the ranks' copies added in float32 in rank order, rounded once */
static void sum16_add(lk_comm *c, int slot)
{
    mpi_impl *m = c->impl;
    const int w = c->world;
    const int *cnt = m->counts + (size_t)slot * (size_t)w, *dsp = m->displs + (size_t)slot * (size_t)w;
    const sum16_slot *s = &m->s16[slot];
    const size_t n = (size_t)cnt[c->rank];
    uint16_t *own = s->buf + dsp[c->rank];
#define SUM16(T)                                                                       \
    for (size_t i = 0; i < n; i++) {                                                   \
        float acc = 0.0f;                                                              \
        for (int r = 0; r < w; r++) acc += lk_wire16_to_f32(T, s->rx[(size_t)r * n + i]); \
        own[i] = lk_wire16_rne(T, acc);                                                \
    }
    if (s->type == LK_F16) SUM16(LK_F16) else SUM16(LK_BF16)
#undef SUM16
}

static lk_status mpi_sum16_start(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather, int slot)
{
    mpi_impl *m = c->impl;
    if (m->req[slot] != MPI_REQUEST_NULL || m->s16[slot].phase)
        return LK_ERR(LK_ERR_STATE, "rank %d: request slot %d is still in flight", c->rank, slot);
    int *a = NULL;
    LK_CHECK(sum16_plan(c, slot, counts, &a));
    sum16_slot *s = &m->s16[slot];
    static uint16_t dummy;
    s->type = t;
    s->buf = buf ? buf : &dummy;
    s->gather = gather;
    if (gather) s->seq = m->gather_seq++;
    const int w = c->world;
    note_start(m, slot, gather ? "16-bit all-reduce" : "16-bit reduce-scatter"); /* (its all-gather too) */
    MPI_TRY(c, MPI_Ialltoallv(s->buf, a, a + w, MPI_UINT16_T, s->rx ? s->rx : &dummy, a + 2 * w, a + 3 * w,
                              MPI_UINT16_T, m->world, &m->req[slot]));
    s->phase = 1;
    return LK_OK;
}

/* Ranks must start the collectives of a communicator in one order, and when an exchange
 * completes differs between ranks: the all-gathers go through a communicator of their own
 * (`gathers`), each started in the order the all-reduces were (its turn), as soon as its
 * sums are added and the one before it has started - from test as from wait. */
static lk_status start_gather(lk_comm *c, int slot)
{
    mpi_impl *m = c->impl;
    sum16_slot *s = &m->s16[slot];
    const size_t at = (size_t)slot * (size_t)c->world;
    s->phase = 3;
    m->gather_turn++;
    MPI_TRY(c, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->buf, m->counts + at, m->displs + at,
                               MPI_UINT16_T, m->gathers, &m->req[slot]));
    return LK_OK;
}

/* the slot whose all-gather is next, or -1 */
static int turn_slot(const mpi_impl *m)
{
    for (int k = 0; k < LK_COMM_MAX_SLOTS; k++)
        if (m->s16[k].phase && m->s16[k].phase < 3 && m->s16[k].gather && m->s16[k].seq == m->gather_turn)
            return k;
    return -1;
}

/* Starts every all-gather whose turn has come and whose sums are added. */
static lk_status gathers_due(lk_comm *c)
{
    mpi_impl *m = c->impl;
    for (int k = turn_slot(m); k >= 0 && m->s16[k].phase == 2; k = turn_slot(m)) LK_CHECK(start_gather(c, k));
    return LK_OK;
}

/* Until slot's all-gather has started: the earlier all-reduces' exchanges waited for (every
 * rank started them), added and gathered, in their order. */
static lk_status sum16_turn(lk_comm *c, int slot)
{
    mpi_impl *m = c->impl;
    while (m->s16[slot].phase == 2) {
        const int k = turn_slot(m);
        if (k < 0) return LK_ERR(LK_ERR_STATE, "rank %d: a 16-bit all-reduce lost its place", c->rank);
        if (m->s16[k].phase == 1) {
            if (m->req[k] != MPI_REQUEST_NULL) MPI_WAITING(c, k, MPI_Wait(&m->req[k], MPI_STATUS_IGNORE));
            sum16_add(c, k);
            m->s16[k].phase = 2;
        }
        LK_CHECK(start_gather(c, k));
    }
    return LK_OK;
}

/* The slot's request completed: the next phase; *done once there is none. */
static lk_status sum16_next(lk_comm *c, int slot, int *done)
{
    mpi_impl *m = c->impl;
    sum16_slot *s = &m->s16[slot];
    *done = 1;
    if (s->phase == 1) {
        sum16_add(c, slot);
        s->phase = s->gather ? 2 : 0;
    }
    if (s->phase == 2) {
        LK_CHECK(gathers_due(c));
        *done = 0;
        return LK_OK;
    }
    s->phase = 0;
    return gathers_due(c); /* (an all-gather that finished may let none start; harmless) */
}

static lk_status mpi_sum16(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather)
{
    mpi_impl *m = c->impl;
    if (one_host_shm(c)) { /* lockstep's shared memory: the same sums, rank order being local order */
        m->shm.timeout_s = c->timeout_s;
        lk_status st = lk_shm_sum16(&m->shm, t, buf, counts, gather);
        return st == LK_OK ? LK_OK : shm_failed(c, st);
    }
    const int slot = LK_COMM_MAX_SLOTS, w = c->world; /* the blocking calls' entries */
    int *a = NULL;
    LK_CHECK(sum16_plan(c, slot, counts, &a));
    sum16_slot *s = &m->s16[slot];
    static uint16_t dummy;
    s->type = t;
    s->buf = buf ? buf : &dummy;
    const long call = lk_mpi_watch_number(m->watch); /* (one number: the exchange and its all-gather) */
    const char *what = gather ? "16-bit all-reduce" : "16-bit reduce-scatter";
    lk_mpi_watch_block(m->watch, call, what);
    int rc = MPI_Alltoallv(s->buf, a, a + w, MPI_UINT16_T, s->rx ? s->rx : &dummy, a + 2 * w, a + 3 * w,
                           MPI_UINT16_T, m->world);
    lk_mpi_watch_unblock(m->watch);
    if (rc != MPI_SUCCESS) return mpi_fail(c, "MPI_Alltoallv", rc);
    sum16_add(c, slot);
    const size_t at = (size_t)slot * (size_t)w;
    if (!gather) return LK_OK;
    lk_mpi_watch_block(m->watch, call, what);
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->buf, m->counts + at, m->displs + at, MPI_UINT16_T,
                        m->gathers);
    lk_mpi_watch_unblock(m->watch);
    return rc == MPI_SUCCESS ? LK_OK : mpi_fail(c, "MPI_Allgatherv", rc);
}

static int mpi_sum16_in_place(const lk_comm *c, const float *buf, size_t n)
{
    const mpi_impl *m = c->impl;
    return one_host_shm(c) && lk_shm_holds(&m->shm, buf, n);
}

static lk_status mpi_sum16_floats(lk_comm *c, lk_dtype t, float *buf, const size_t *counts, int gather, float scale)
{
    mpi_impl *m = c->impl;
    m->shm.timeout_s = c->timeout_s;
    lk_status st = lk_shm_sum16_floats(&m->shm, t, buf, counts, gather, scale);
    return st == LK_OK ? LK_OK : shm_failed(c, st);
}

static size_t mpi_phases_room(const lk_comm *c, const float *buf, size_t n)
{
    const mpi_impl *m = c->impl;
    return one_host_shm(c) && lk_shm_holds(&m->shm, buf, n) ? m->shm.piece : 0;
}

static lk_status mpi_phases(lk_comm *c, float *buf, size_t n, unsigned long long tag, int nphases,
                            lk_host_phase_fn fn, void *user)
{
    mpi_impl *m = c->impl;
    m->shm.timeout_s = c->timeout_s;
    lk_status st = lk_shm_phases(&m->shm, buf, n, tag, nphases, fn, user);
    return st == LK_OK ? LK_OK : shm_failed(c, st);
}

static lk_status mpi_allgather_bytes(lk_comm *c, const void *send, void *recv, size_t bytes)
{
    mpi_impl *m = c->impl;
    if (bytes > INT_MAX) return LK_ERR(LK_ERR_ARG, "allgather of %zu bytes is too large", bytes);
    MPI_BLOCKING(c, "all-gather", MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, m->world));
    return LK_OK;
}

static lk_status mpi_barrier(lk_comm *c)
{
    mpi_impl *m = c->impl;
    MPI_BLOCKING(c, "barrier", MPI_Barrier(m->world));
    return LK_OK;
}

static void unmap_shm(lk_comm *c)
{
    mpi_impl *m = c->impl;
    c->shm = 0;
    c->board = NULL;
    lk_shm_map_close(m->region, m->region_bytes);
    m->region = NULL;
    if (m->cross != MPI_COMM_NULL) MPI_Comm_free(&m->cross);
}

/* Local rank 0 creates the host's region, the others map it by name, and the name is
 * removed at once (nothing is left behind, whatever happens later). Every rank of the
 * job learns whether it worked everywhere; m->region stays NULL if not, with `why`. */
static lk_status map_region(lk_comm *c, size_t bytes, char *why, size_t why_len)
{
    mpi_impl *m = c->impl;
    static int serial;
    char name[64] = "";
    int ok = 1;
    if (c->local_rank == 0) {
        snprintf(name, sizeof name, "/lockstep-%ld-%d", (long)getpid(), serial++);
        if (lk_shm_map_create(name, bytes, &m->region) != LK_OK) {
            ok = 0;
            name[0] = 0;
            snprintf(why, why_len, "%s", lk_error_message());
        }
    }
    MPI_BLOCKING(c, "broadcast on the host", MPI_Bcast(name, (int)sizeof name, MPI_CHAR, 0, m->node));
    if (c->local_rank != 0 && name[0] && lk_shm_map_open(name, bytes, &m->region) != LK_OK) {
        ok = 0;
        snprintf(why, why_len, "%s", lk_error_message());
    }
    MPI_BLOCKING(c, "barrier on the host", MPI_Barrier(m->node));
    if (c->local_rank == 0 && name[0]) lk_shm_map_unlink(name);
    int all = ok;
    MPI_BLOCKING(c, "all-reduce", MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, m->world));
    m->region_bytes = bytes;
    if (!all) {
        lk_shm_map_close(m->region, bytes);
        m->region = NULL;
        if (ok) snprintf(why, why_len, "failed on another rank");
    }
    return LK_OK;
}

/* One region per host, with every rank's gradient buffer in it when there is room;
 * on several hosts, the ranks of each local rank form a cross-host communicator. */
static lk_status mpi_use_shm(lk_comm *c, int on, size_t grad_floats, float **grads)
{
    mpi_impl *m = c->impl;
    if (grads) *grads = NULL;
    unmap_shm(c);
    if (!on) {
        snprintf(c->shm_note, sizeof c->shm_note, "%.60s (--shm off)", c->library);
        return LK_OK;
    }
    int lw[2] = {c->local_world, -c->local_world};
    MPI_BLOCKING(c, "all-reduce", MPI_Allreduce(MPI_IN_PLACE, lw, 2, MPI_INT, MPI_MIN, m->world));
    if (lw[0] < 2 || lw[0] != -lw[1]) {
        snprintf(c->shm_note, sizeof c->shm_note, "%.60s (%s)", c->library,
                 lw[0] < 2 ? "one rank on a host" : "hosts run different numbers of ranks");
        return LK_OK;
    }
    const int nl = c->local_world;
    const size_t piece = lk_shm_piece_for(nl, LK_SHM_SLOTS_MAX);
    char why[200] = "";
    if (!grads) grad_floats = 0;
    LK_CHECK(map_region(c, lk_shm_region_bytes(nl, piece, grad_floats), why, sizeof why));
    if (!m->region && grad_floats) { /* no room for the gradients: staged copies only */
        grad_floats = 0;
        LK_CHECK(map_region(c, lk_shm_region_bytes(nl, piece, 0), why, sizeof why));
    }
    if (!m->region) {
        snprintf(c->shm_note, sizeof c->shm_note, "%.60s (no shared memory: %.120s)", c->library, why);
        return LK_OK;
    }
    if (c->local_world < c->world)
        MPI_BLOCKING(c, "communicator split", MPI_Comm_split(m->world, c->local_rank, c->rank, &m->cross));
    lk_shm_attach(&m->shm, m->region, c->local_rank, nl, piece, grad_floats, c->timeout_s);
    m->shm.doing = &c->doing;
    m->shm.rank = c->rank;
    c->board = lk_shm_board(&m->shm);
    if (grads) *grads = lk_shm_grads(&m->shm);
    c->shm = 1;
    snprintf(c->shm_note, sizeof c->shm_note, "shared memory between the %d ranks of %s%.60s%s, %s",
             nl, c->local_world < c->world ? "each host, " : "the host",
             c->local_world < c->world ? c->library : "",
             c->local_world < c->world ? " across hosts" : "",
             grad_floats ? "gradients in place" : "gradients copied through it");
    return LK_OK;
}

static void mpi_abort(lk_comm *c, int code)
{
    mpi_impl *m = c->impl;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(m->world, code ? code : 1);
}

static void mpi_close(lk_comm *c)
{
    mpi_impl *m = c->impl;
    if (!m) return;
    for (int i = 0; i < LK_COMM_MAX_SLOTS; i++)
        if (m->req[i] != MPI_REQUEST_NULL) MPI_Wait(&m->req[i], MPI_STATUS_IGNORE);
    lk_mpi_watch_close(m->watch);
    m->watch = NULL;
    unmap_shm(c);
    if (m->node != MPI_COMM_NULL) MPI_Comm_free(&m->node);
    if (m->gathers != MPI_COMM_NULL) MPI_Comm_free(&m->gathers);
    if (m->world != MPI_COMM_NULL) MPI_Comm_free(&m->world);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (m->initialised_here && !finalized) MPI_Finalize();
    lk_free(m->counts);
    lk_free(m->displs);
    lk_free(m->a2a);
    for (int i = 0; i <= LK_COMM_MAX_SLOTS; i++) lk_free(m->s16[i].rx);
    lk_free(m);
    c->impl = NULL;
}

static const lk_comm_vt mpi_vt = {
    .name = "mpi",
    .allreduce_start = mpi_allreduce_start,
    .allreduce = mpi_allreduce,
    .test = mpi_test,
    .wait = mpi_wait,
    .allreduce_f64 = mpi_allreduce_f64,
    .broadcast = mpi_broadcast,
    .reduce_scatter_start = mpi_reduce_scatter_start,
    .allgather_start = mpi_allgather_start,
    .reduce_scatter = mpi_reduce_scatter,
    .allgather = mpi_allgather,
    .sum16_start = mpi_sum16_start,
    .sum16 = mpi_sum16,
    .sum16_in_place = mpi_sum16_in_place,
    .sum16_floats = mpi_sum16_floats,
    .phases_room = mpi_phases_room,
    .phases = mpi_phases,
    .allgather_bytes = mpi_allgather_bytes,
    .barrier = mpi_barrier,
    .use_shm = mpi_use_shm,
    .abort = mpi_abort,
    .close = mpi_close,
};

lk_status lk_comm_mpi_open(lk_comm *c, int *argc, char ***argv)
{
    mpi_impl *m = lk_calloc(1, sizeof *m);
    if (!m) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the MPI backend");
    m->world = m->node = m->cross = m->gathers = MPI_COMM_NULL;
    for (int i = 0; i < LK_COMM_MAX_SLOTS; i++) m->req[i] = MPI_REQUEST_NULL;
    c->vt = &mpi_vt;
    c->impl = m;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        /* Open MPI's non-blocking all-reduce (libnbc) picks a binomial reduce + bcast
         * for fewer than 4 ranks or in-place buffers, which moves the whole buffer
         * through one rank: 2.5x slower than MPI_Allreduce for gradient-sized
         * messages here. Reduce-scatter + all-gather (Rabenseifner) needs log2(p)
         * rounds and matches the blocking call. A value set by the user wins. */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
        /* lockstep's own calls come from one thread at a time (the training thread, or
         * the comm thread of --comm-progress thread while a step's buckets are in
         * flight); MULTIPLE is for the watchdog (mpi_watch.h), which runs beside them */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
            lk_free(m);
            return LK_ERR(LK_ERR_COMM, "MPI_Init_thread failed");
        }
        m->initialised_here = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    c->threads_ok = provided >= MPI_THREAD_SERIALIZED;
    MPI_Comm_dup(MPI_COMM_WORLD, &m->world);
    MPI_Comm_dup(MPI_COMM_WORLD, &m->gathers);
    MPI_Comm_set_errhandler(m->gathers, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(m->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->world, &c->rank);
    MPI_Comm_size(m->world, &c->world);
    MPI_Comm_split_type(m->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &m->node);
    MPI_Comm_rank(m->node, &c->local_rank);
    MPI_Comm_size(m->node, &c->local_world);
    int len = 0;
    char name[MPI_MAX_PROCESSOR_NAME];
    MPI_Get_processor_name(name, &len);
    snprintf(c->host, sizeof c->host, "%.63s", name);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Get_library_version(lib, &len);
    lib[strcspn(lib, ",\n")] = 0; /* "Open MPI v4.1.4" */
    snprintf(c->library, sizeof c->library, "%.127s", lib);
    const size_t parts = (size_t)(LK_COMM_MAX_SLOTS + 1) * (size_t)c->world;
    m->counts = lk_calloc(parts, sizeof *m->counts);
    m->displs = lk_calloc(parts, sizeof *m->displs);
    m->a2a = lk_calloc(4 * parts, sizeof *m->a2a);
    if (!m->counts || !m->displs || !m->a2a) {
        mpi_close(c);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate MPI bookkeeping");
    }
    int all_multiple = provided >= MPI_THREAD_MULTIPLE;
    MPI_Allreduce(MPI_IN_PLACE, &all_multiple, 1, MPI_INT, MPI_MIN, m->world);
    c->mpi_deadline = c->world > 1 && all_multiple; /* (else MPI's collectives wait without one) */
    if (c->mpi_deadline) {
        lk_status st = lk_mpi_watch_open(&m->watch, c, m->world);
        if (st != LK_OK) {
            mpi_close(c);
            return st;
        }
    }
    return LK_OK;
}
