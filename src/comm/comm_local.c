/* comm_local.c - the world of one: every collective is a copy or nothing. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

static lk_status local_allreduce_start(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot)
{
    (void)c, (void)buf, (void)n, (void)op, (void)slot;
    return LK_OK;
}
static lk_status local_test(lk_comm *c, int slot, int *done)
{
    (void)c, (void)slot;
    *done = 1;
    return LK_OK;
}
static lk_status local_wait(lk_comm *c, int slot)
{
    (void)c, (void)slot;
    return LK_OK;
}
static lk_status local_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op)
{
    (void)c, (void)buf, (void)n, (void)op;
    return LK_OK;
}
static lk_status local_allreduce_f64(lk_comm *c, double *buf, int n, lk_reduce_op op)
{
    (void)c, (void)buf, (void)n, (void)op;
    return LK_OK;
}
static lk_status local_broadcast(lk_comm *c, void *buf, size_t bytes, int root)
{
    (void)c, (void)buf, (void)bytes, (void)root;
    return LK_OK;
}
/* a world of one: its part is the whole buffer, already reduced and gathered */
static lk_status local_reduce_scatter_start(lk_comm *c, float *buf, const size_t *counts,
                                            lk_reduce_op op, int slot)
{
    (void)c, (void)buf, (void)counts, (void)op, (void)slot;
    return LK_OK;
}
static lk_status local_allgather_start(lk_comm *c, float *buf, const size_t *counts, int slot)
{
    (void)c, (void)buf, (void)counts, (void)slot;
    return LK_OK;
}
static lk_status local_reduce_scatter(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op)
{
    (void)c, (void)buf, (void)counts, (void)op;
    return LK_OK;
}
static lk_status local_allgather(lk_comm *c, float *buf, const size_t *counts)
{
    (void)c, (void)buf, (void)counts;
    return LK_OK;
}
/* a world of one: its part is already the sum (rounded when it was cast to 16 bits) */
static lk_status local_sum16(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather)
{
    (void)c, (void)t, (void)buf, (void)counts, (void)gather;
    return LK_OK;
}

static lk_status local_sum16_start(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather,
                                   int slot)
{
    (void)slot;
    return local_sum16(c, t, buf, counts, gather);
}

static lk_status local_allgather_bytes(lk_comm *c, const void *send, void *recv, size_t bytes)
{
    (void)c;
    if (bytes) memmove(recv, send, bytes);
    return LK_OK;
}
static lk_status local_barrier(lk_comm *c)
{
    (void)c;
    return LK_OK;
}
static lk_status local_use_shm(lk_comm *c, int on, size_t grad_floats, float **grads)
{
    (void)on;
    (void)grad_floats;
    if (grads) *grads = NULL;
    c->shm = 0;
    snprintf(c->shm_note, sizeof c->shm_note, "one process");
    return LK_OK;
}

static void local_abort(lk_comm *c, int code)
{
    (void)c, (void)code; /* no other rank to stop: the caller exits with the error */
}
static void local_close(lk_comm *c) { (void)c; }

static const lk_comm_vt local_vt = {
    .name = "local",
    .allreduce_start = local_allreduce_start,
    .allreduce = local_allreduce,
    .test = local_test,
    .wait = local_wait,
    .allreduce_f64 = local_allreduce_f64,
    .broadcast = local_broadcast,
    .reduce_scatter_start = local_reduce_scatter_start,
    .allgather_start = local_allgather_start,
    .reduce_scatter = local_reduce_scatter,
    .allgather = local_allgather,
    .sum16_start = local_sum16_start,
    .sum16 = local_sum16,
    .allgather_bytes = local_allgather_bytes,
    .barrier = local_barrier,
    .use_shm = local_use_shm,
    .abort = local_abort,
    .close = local_close,
};

lk_status lk_comm_local_open(lk_comm *c)
{
    memset(c, 0, sizeof *c); /* also when it lives on the caller's stack */
    c->timeout_s = LK_COMM_TIMEOUT_S;
    c->vt = &local_vt;
    c->rank = c->local_rank = 0;
    c->world = c->local_world = 1;
    c->threads_ok = 1;
    if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "localhost");
    c->host[sizeof c->host - 1] = 0;
    snprintf(c->library, sizeof c->library, "none (single process)");
    return LK_OK;
}
