/* comm.c - choosing a backend, and the checked wrappers. */
#include "comm.h"

#include "../core/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lk_comm_launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
                                       "SLURM_STEP_NUM_TASKS", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

lk_status lk_comm_open(lk_comm **out, const char *backend, int *argc, char ***argv)
{
    *out = NULL;
    if (!backend || !strcmp(backend, "auto")) backend = lk_comm_launched() ? "mpi" : "local";
    lk_comm *c = lk_calloc(1, sizeof *c);
    if (!c) return LK_ERR(LK_ERR_NOMEM, "cannot allocate a communicator");
    c->timeout_s = LK_COMM_TIMEOUT_S;
    c->doing.bucket = -1;
    lk_status s;
    if (!strcmp(backend, "local"))
        s = lk_comm_local_open(c);
    else if (!strcmp(backend, "mpi"))
        s = lk_comm_mpi_open(c, argc, argv);
    else
        s = LK_ERR(LK_ERR_ARG, "unknown --comm '%s' (expected auto, local or mpi)", backend);
    if (s != LK_OK) {
        lk_free(c);
        return s;
    }
    *out = c;
    return LK_OK;
}

void lk_comm_abort(lk_comm *c, int code)
{
    if (c && c->world > 1) c->vt->abort(c, code);
}

void lk_comm_close(lk_comm *c)
{
    if (!c) return;
    c->vt->close(c);
    lk_free(c);
}

static lk_status check_slot(const lk_comm *c, int slot)
{
    if (slot < 0 || slot >= LK_COMM_MAX_SLOTS)
        return LK_ERR(LK_ERR_ARG, "rank %d: request slot %d outside 0..%d", c->rank, slot,
                      LK_COMM_MAX_SLOTS - 1);
    return LK_OK;
}

/* 1 when buf is memory of the use_device device that the host cannot read: NCCL's,
 * or it goes through the staging buffer */
static int on_device(const lk_comm *c, const void *buf)
{
    return c->dev && buf && c->dev->ops->owns(c->dev, buf);
}

static lk_status check_stage(const lk_comm *c, const char *op, size_t bytes)
{
    if (bytes > c->stage_bytes)
        return LK_ERR(LK_ERR_ARG, "rank %d: %s of %zu bytes of %s memory exceeds the %zu-byte staging "
                      "buffer", c->rank, op, bytes, c->dev->name, c->stage_bytes);
    return LK_OK;
}

/* device -> host, the collective on the host copy, host -> device */
static lk_status allreduce_staged(lk_comm *c, float *buf, size_t n, lk_reduce_op op)
{
    LK_CHECK(check_stage(c, "all-reduce", n * sizeof(float)));
    lk_copy_to_host(c->dev, c->stage, buf, n * sizeof(float));
    LK_CHECK(lk_device_status(c->dev));
    LK_CHECK(c->vt->allreduce(c, c->stage, n, op));
    lk_copy_to_device(c->dev, buf, c->stage, n * sizeof(float));
    return lk_device_status(c->dev);
}

#if LK_HAVE_NCCL
int lk_comm_have_nccl(void) { return 1; }
#else
int lk_comm_have_nccl(void) { return 0; }
const char *lk_nccl_version(void) { return "not built"; }
#endif

lk_status lk_comm_status(lk_comm *c)
{
#if LK_HAVE_NCCL
    if (c->nccl) return lk_nccl_status(c);
#else
    (void)c;
#endif
    return LK_OK;
}

#if LK_HAVE_NCCL
lk_status lk_comm_timer_create(lk_comm *c, const void *buf, lk_comm_timer **out)
{
    *out = NULL;
    return c->nccl && on_device(c, buf) ? lk_nccl_timer_create(c, out) : LK_OK;
}
void lk_comm_timer_destroy(lk_comm_timer *t) { lk_nccl_timer_destroy(t); }
lk_status lk_comm_timer_first(lk_comm_timer *t) { return t ? lk_nccl_timer_first(t) : LK_OK; }
lk_status lk_comm_timer_wait(lk_comm_timer *t) { return t ? lk_nccl_timer_wait(t) : LK_OK; }
lk_status lk_comm_timer_end(lk_comm_timer *t, double *exposed_ms, double *span_ms)
{
    if (t) return lk_nccl_timer_end(t, exposed_ms, span_ms);
    *exposed_ms = *span_ms = 0.0;
    return LK_OK;
}
#else
lk_status lk_comm_timer_create(lk_comm *c, const void *buf, lk_comm_timer **out)
{
    (void)c, (void)buf;
    *out = NULL;
    return LK_OK;
}
void lk_comm_timer_destroy(lk_comm_timer *t) { (void)t; }
lk_status lk_comm_timer_first(lk_comm_timer *t)
{
    (void)t;
    return LK_OK;
}
lk_status lk_comm_timer_wait(lk_comm_timer *t)
{
    (void)t;
    return LK_OK;
}
lk_status lk_comm_timer_end(lk_comm_timer *t, double *exposed_ms, double *span_ms)
{
    (void)t;
    *exposed_ms = *span_ms = 0.0;
    return LK_OK;
}
#endif

#if LK_HAVE_NCCL
/* Collective: *shared = 1 when some GPU drives more than one rank of the job, naming
 * two such ranks in `who`. */
static lk_status gpu_shared(lk_comm *c, int *shared, char *who, size_t len)
{
    enum { KEY = 128 };
    char key[KEY] = "", bus[32] = "";
    lk_cuda_pci_bus_id(c->dev->ordinal, bus, (int)sizeof bus);
    snprintf(key, sizeof key, "%.63s/%.31s", c->host, bus);
    char *all = lk_calloc((size_t)c->world, KEY);
    if (!all) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the GPU list");
    lk_status st = lk_comm_allgather_bytes(c, key, all, KEY);
    *shared = 0;
    for (int r = 0; st == LK_OK && r < c->world && !*shared; r++)
        for (int q = r + 1; q < c->world && !*shared; q++)
            if (!strcmp(all + (size_t)r * KEY, all + (size_t)q * KEY)) {
                *shared = 1;
                snprintf(who, len, "ranks %d and %d share GPU %s", r, q, all + (size_t)r * KEY);
            }
    lk_free(all);
    return st;
}
#endif

lk_status lk_comm_use_nccl(lk_comm *c, lk_gpu_comm how)
{
#if LK_HAVE_NCCL
    if (c->nccl) lk_nccl_close(c);
    if (how == LK_GPU_COMM_MPI || !c->dev || c->dev->kind != LK_DEV_CUDA) return LK_OK;
    int shared = 0;
    char who[200] = "";
    LK_CHECK(gpu_shared(c, &shared, who, sizeof who));
    if (shared && how == LK_GPU_COMM_NCCL)
        return LK_ERR(LK_ERR_ARG, "--gpu-comm nccl: %s, which NCCL does not allow; use --gpu-comm "
                      "mpi or one rank per GPU", who);
    return shared ? LK_OK : lk_nccl_open(c, c->dev);
#else
    if (how == LK_GPU_COMM_NCCL && c->dev && c->dev->kind == LK_DEV_CUDA)
        return LK_ERR(LK_ERR_COMM, "rank %d: --gpu-comm nccl: this build of lockstep has no NCCL "
                      "backend", c->rank);
    return LK_OK;
#endif
}

lk_status lk_comm_use_device(lk_comm *c, lk_device *dev, size_t bytes)
{
#if LK_HAVE_NCCL
    if (c->nccl) lk_nccl_close(c);
#endif
    if (c->stage) c->dev->ops->host_free(c->dev, c->stage);
    c->dev = NULL;
    c->stage = NULL;
    c->stage_bytes = 0;
    if (!dev || dev->host_addressable) return LK_OK;
    c->stage = dev->ops->host_alloc(dev, bytes);
    if (!c->stage)
        return LK_ERR(LK_ERR_NOMEM, "rank %d: cannot allocate %zu bytes of pinned memory to stage %s "
                      "buffers", c->rank, bytes, dev->name);
    c->dev = dev;
    c->stage_bytes = bytes;
    return LK_OK;
}

lk_status lk_comm_allreduce_start(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot)
{
    LK_CHECK(check_slot(c, slot));
    if (n && !buf) return LK_ERR(LK_ERR_ARG, "allreduce: null buffer");
    c->slot_nccl[slot] = 0;
#if LK_HAVE_NCCL
    if (c->nccl && on_device(c, buf)) {
        c->slot_nccl[slot] = 1;
        return lk_nccl_allreduce_start(c, buf, n, op, slot);
    }
#endif
    /* a device buffer is summed now, through the staging buffer: its request is done */
    if (on_device(c, buf)) return allreduce_staged(c, buf, n, op);
    return c->vt->allreduce_start(c, buf, n, op, slot);
}

lk_status lk_comm_wait(lk_comm *c, int slot)
{
    LK_CHECK(check_slot(c, slot));
#if LK_HAVE_NCCL
    if (c->slot_nccl[slot]) return lk_nccl_wait(c, slot);
#endif
    return c->vt->wait(c, slot);
}

lk_status lk_comm_test(lk_comm *c, int slot, int *done)
{
    LK_CHECK(check_slot(c, slot));
#if LK_HAVE_NCCL
    if (c->slot_nccl[slot]) return lk_nccl_test(c, slot, done);
#endif
    return c->vt->test(c, slot, done);
}

lk_status lk_comm_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op)
{
    if (n && !buf) return LK_ERR(LK_ERR_ARG, "allreduce: null buffer");
#if LK_HAVE_NCCL
    if (c->nccl && on_device(c, buf)) return lk_nccl_allreduce(c, buf, n, op);
#endif
    if (on_device(c, buf)) return allreduce_staged(c, buf, n, op);
    return c->vt->allreduce(c, buf, n, op);
}

lk_status lk_comm_allreduce_f64(lk_comm *c, double *buf, int n, lk_reduce_op op)
{
    if (n < 0 || (n && !buf)) return LK_ERR(LK_ERR_ARG, "allreduce_f64: bad arguments");
    return c->vt->allreduce_f64(c, buf, n, op);
}

lk_status lk_comm_broadcast(lk_comm *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->world)
        return LK_ERR(LK_ERR_ARG, "broadcast: root %d outside 0..%d", root, c->world - 1);
    if (bytes && !buf) return LK_ERR(LK_ERR_ARG, "broadcast: null buffer");
    if (on_device(c, buf)) {
        LK_CHECK(check_stage(c, "broadcast", bytes));
        if (c->rank == root) lk_copy_to_host(c->dev, c->stage, buf, bytes);
        LK_CHECK(lk_device_status(c->dev));
        LK_CHECK(c->vt->broadcast(c, c->stage, bytes, root));
        lk_copy_to_device(c->dev, buf, c->stage, bytes);
        return lk_device_status(c->dev);
    }
    return c->vt->broadcast(c, buf, bytes, root);
}

/* the whole buffer of a reduce-scatter or all-gather, and where this rank's part starts */
static lk_status check_parts(const lk_comm *c, const char *op, const void *buf, const size_t *counts,
                             size_t *total, size_t *mine)
{
    if (!counts) return LK_ERR(LK_ERR_ARG, "rank %d: %s: counts missing", c->rank, op);
    *total = *mine = 0;
    for (int r = 0; r < c->world; r++) {
        if (r == c->rank) *mine = *total;
        *total += counts[r];
    }
    if (*total && !buf) return LK_ERR(LK_ERR_ARG, "rank %d: %s: null buffer", c->rank, op);
    return LK_OK;
}

/* kind 0 reduce-scatter, 1 all-gather, of a device buffer through the staging buffer, now */
static lk_status shard_staged(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op,
                              size_t total, size_t mine)
{
    const size_t bytes = total * sizeof(float);
    LK_CHECK(check_stage(c, kind ? "all-gather" : "reduce-scatter", bytes));
    if (kind) lk_copy_to_host(c->dev, (float *)c->stage + mine, buf + mine, counts[c->rank] * sizeof(float));
    else lk_copy_to_host(c->dev, c->stage, buf, bytes);
    LK_CHECK(lk_device_status(c->dev));
    LK_CHECK(kind ? c->vt->allgather(c, c->stage, counts) : c->vt->reduce_scatter(c, c->stage, counts, op));
    if (kind) lk_copy_to_device(c->dev, buf, c->stage, bytes);
    else lk_copy_to_device(c->dev, buf + mine, (float *)c->stage + mine, counts[c->rank] * sizeof(float));
    return lk_device_status(c->dev);
}

static lk_status shard_start(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op,
                             int slot)
{
    size_t total = 0, mine = 0;
    LK_CHECK(check_slot(c, slot));
    LK_CHECK(check_parts(c, kind ? "all-gather" : "reduce-scatter", buf, counts, &total, &mine));
    c->slot_nccl[slot] = 0;
#if LK_HAVE_NCCL
    if (c->nccl && on_device(c, buf)) {
        c->slot_nccl[slot] = 1;
        return lk_nccl_shard_start(c, kind, buf, counts, op, slot);
    }
#endif
    if (on_device(c, buf)) return shard_staged(c, kind, buf, counts, op, total, mine);
    return kind ? c->vt->allgather_start(c, buf, counts, slot)
                : c->vt->reduce_scatter_start(c, buf, counts, op, slot);
}

static lk_status shard_now(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op)
{
    size_t total = 0, mine = 0;
    LK_CHECK(check_parts(c, kind ? "all-gather" : "reduce-scatter", buf, counts, &total, &mine));
#if LK_HAVE_NCCL
    if (c->nccl && on_device(c, buf)) return lk_nccl_shard(c, kind, buf, counts, op);
#endif
    if (on_device(c, buf)) return shard_staged(c, kind, buf, counts, op, total, mine);
    return kind ? c->vt->allgather(c, buf, counts) : c->vt->reduce_scatter(c, buf, counts, op);
}

lk_status lk_comm_reduce_scatter_start(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op,
                                       int slot)
{
    return shard_start(c, 0, buf, counts, op, slot);
}

lk_status lk_comm_allgather_start(lk_comm *c, float *buf, const size_t *counts, int slot)
{
    return shard_start(c, 1, buf, counts, LK_REDUCE_SUM, slot);
}

lk_status lk_comm_reduce_scatter(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op)
{
    return shard_now(c, 0, buf, counts, op);
}

lk_status lk_comm_allgather(lk_comm *c, float *buf, const size_t *counts)
{
    return shard_now(c, 1, buf, counts, LK_REDUCE_SUM);
}

lk_status lk_comm_allgather_bytes(lk_comm *c, const void *send, void *recv, size_t bytes)
{
    return c->vt->allgather_bytes(c, send, recv, bytes);
}

lk_status lk_comm_barrier(lk_comm *c) { return c->vt->barrier(c); }

void lk_comm_even_counts(const lk_comm *c, size_t n, size_t *counts)
{
    const size_t per = (n + (size_t)c->world - 1) / (size_t)c->world;
    for (int r = 0; r < c->world; r++) {
        const size_t lo = LK_MIN(n, per * (size_t)r);
        counts[r] = LK_MIN(n, lo + per) - lo;
    }
}

/* a device buffer's 16-bit sum through the staging buffer, now */
static lk_status sum16_staged(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather,
                              size_t total, size_t mine)
{
    const size_t bytes = total * sizeof(uint16_t);
    LK_CHECK(check_stage(c, "16-bit sum", bytes));
    lk_copy_to_host(c->dev, c->stage, buf, bytes);
    LK_CHECK(lk_device_status(c->dev));
    LK_CHECK(c->vt->sum16(c, t, c->stage, counts, gather));
    if (gather) lk_copy_to_device(c->dev, buf, c->stage, bytes);
    else lk_copy_to_device(c->dev, buf + mine, (uint16_t *)c->stage + mine, counts[c->rank] * sizeof(uint16_t));
    return lk_device_status(c->dev);
}

static lk_status check_type16(lk_dtype t)
{
    if (t != LK_BF16 && t != LK_F16) return LK_ERR(LK_ERR_ARG, "a 16-bit sum of %s values", lk_dtype_name(t));
    return LK_OK;
}

lk_status lk_comm_sum16_start(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather, int slot)
{
    size_t total = 0, mine = 0;
    LK_CHECK(check_type16(t));
    LK_CHECK(check_slot(c, slot));
    LK_CHECK(check_parts(c, "16-bit sum", buf, counts, &total, &mine));
    c->slot_nccl[slot] = 0;
#if LK_HAVE_NCCL
    if (c->nccl && on_device(c, buf)) {
        c->slot_nccl[slot] = 1;
        return lk_nccl_sum16_start(c, t, buf, counts, gather, slot);
    }
#endif
    if (on_device(c, buf)) return sum16_staged(c, t, buf, counts, gather, total, mine);
    return c->vt->sum16_start(c, t, buf, counts, gather, slot);
}

lk_status lk_comm_sum16(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather)
{
    size_t total = 0, mine = 0;
    LK_CHECK(check_type16(t));
    LK_CHECK(check_parts(c, "16-bit sum", buf, counts, &total, &mine));
#if LK_HAVE_NCCL
    if (c->nccl && on_device(c, buf)) return lk_nccl_sum16(c, t, buf, counts, gather);
#endif
    if (on_device(c, buf)) return sum16_staged(c, t, buf, counts, gather, total, mine);
    return c->vt->sum16(c, t, buf, counts, gather);
}

int lk_comm_sum16_in_place(const lk_comm *c, const float *buf, size_t n)
{
    return c->vt->sum16_in_place && c->vt->sum16_in_place(c, buf, n);
}

lk_status lk_comm_sum16_floats(lk_comm *c, lk_dtype t, float *buf, const size_t *counts, int gather, float scale)
{
    size_t total = 0, mine = 0;
    LK_CHECK(check_type16(t));
    LK_CHECK(check_parts(c, "16-bit sum", buf, counts, &total, &mine));
    if (!lk_comm_sum16_in_place(c, buf, total))
        return LK_ERR(LK_ERR_ARG, "rank %d: a 16-bit sum of %zu floats in place where %s cannot do one", c->rank,
                      total, c->vt->name);
    return c->vt->sum16_floats(c, t, buf, counts, gather, scale);
}

lk_status lk_comm_use_shm(lk_comm *c, int on, size_t grad_floats, float **grads)
{
    return c->vt->use_shm(c, on, grad_floats, grads);
}

size_t lk_comm_phases_room(const lk_comm *c, const float *buf, size_t n)
{
    return c->vt->phases_room ? c->vt->phases_room(c, buf, n) : 0;
}

lk_status lk_comm_phases(lk_comm *c, float *buf, size_t n, unsigned long long tag, int nphases,
                         lk_host_phase_fn fn, void *user)
{
    if (!lk_comm_phases_room(c, buf, n))
        return LK_ERR(LK_ERR_ARG, "rank %d: a computation in phases over %zu floats in place where %s cannot do one",
                      c->rank, n, c->vt->name);
    return c->vt->phases(c, buf, n, tag, nphases, fn, user);
}

const char *lk_doing_name(int what)
{
    static const char *const names[LK_DOING_COUNT] = {
        "setting up", "forward", "backward", "reducing gradients", "checking the step", "updating",
        "evaluating", "saving a checkpoint", "averaging (local SGD)"};
    return what >= 0 && what < LK_DOING_COUNT ? names[what] : "?";
}
