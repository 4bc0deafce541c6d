/* comm.h - everything between ranks: the lk_comm vtable and its backends.
 *
 * Backends: "local" (a world of one process, no MPI) and "mpi" (host buffers).
 * "auto" picks "mpi" when the process was started by mpirun/srun, else "local".
 * Collectives on float buffers; every call reports failures as lk_status with a
 * message naming the operation and the rank. Asynchronous all-reduces use fixed
 * request slots (0 .. LK_COMM_MAX_SLOTS-1) so nothing is allocated per step. */
#ifndef LK_COMM_H
#define LK_COMM_H

#include "../core/half.h"
#include "../core/common.h"
#include "../core/device.h"

#define LK_COMM_MAX_SLOTS 256

typedef enum { LK_REDUCE_SUM = 0, LK_REDUCE_AVG, LK_REDUCE_MAX, LK_REDUCE_MIN } lk_reduce_op;

typedef struct lk_comm lk_comm;
typedef struct lk_nccl lk_nccl;

/* What a phase of a computation over the host's gradient buffers sees (lk_comm_phases: every
 * rank on one host, lockstep's shared memory): every process's buffer at the call's offset
 * (process q's at grads + q * stride), and scratch every process reads and writes - the
 * shared output (`shared`, piece floats) and a slot per process (q's at slots + q *
 * slot_stride, piece floats); what a phase writes the others see in the next phase. A
 * phase sets *last (on every rank alike) to end the call after it. */
typedef struct {
    float *grads;
    size_t stride;
    int me, nlocal;
    float *shared;
    size_t piece;
    float *slots;
    size_t slot_stride;
} lk_host_view;
typedef lk_status (*lk_host_phase_fn)(void *user, int phase, const lk_host_view *v, int *last);

typedef struct {
    const char *name;
    /* in-place all-reduce of n floats, started now, finished by wait(slot) */
    lk_status (*allreduce_start)(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot);
    /* drives the request on (MPI progress); *done = 1 once it completed */
    lk_status (*test)(lk_comm *c, int slot, int *done);
    lk_status (*wait)(lk_comm *c, int slot);
    /* blocking collectives */
    lk_status (*allreduce)(lk_comm *c, float *buf, size_t n, lk_reduce_op op);
    lk_status (*allreduce_f64)(lk_comm *c, double *buf, int n, lk_reduce_op op);
    lk_status (*broadcast)(lk_comm *c, void *buf, size_t bytes, int root);
    /* In-place reduce-scatter (ZeRO): buf holds counts[r] floats for each rank r, back to
     * back in rank order (zeros allowed); afterwards this rank's part of buf holds the
     * reduction over every rank of those positions, the other parts are undefined.
     * counts is read during the call only. Started now, finished by wait(slot). */
    lk_status (*reduce_scatter_start)(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op,
                                      int slot);
    /* In-place all-gather: afterwards every rank's buf holds rank r's part from rank r. */
    lk_status (*allgather_start)(lk_comm *c, float *buf, const size_t *counts, int slot);
    /* the same, blocking (through shared memory where use_shm set it up) */
    lk_status (*reduce_scatter)(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op);
    lk_status (*allgather)(lk_comm *c, float *buf, const size_t *counts);
    /* 16-bit sums (t: LK_BF16 or LK_F16; --grad-dtype bf16, --grad-compress bf16|fp16): buf
     * holds counts[r] values of type t for each rank r, back to back in rank order;
     * afterwards this rank's part holds the sum over every rank of those positions, added in
     * float32 in rank order and rounded once to nearest even
     * (every rank's part exchanged, then each rank adds its own), and with gather every
     * rank's buf holds every part (an all-reduce: half the bytes of a float32 one). counts
     * is read during the call only. Started now and finished by wait(slot); or blocking.
     * (MPI: the all-gathers go through a communicator of their own, each started in the
     * order the all-reduces were, from test or wait, once its sums are added: ranks must
     * start a communicator's collectives in one order, and exchanges complete at
     * different times on different ranks.) */
    lk_status (*sum16_start)(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather, int slot);
    lk_status (*sum16)(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather);
    /* The same sum of float values in place, blocking, where the backend can do it without
     * a 16-bit buffer (NULL where none can; see lk_comm_sum16_floats): in_place says whether
     * buf[0, n) is such a place. */
    int (*sum16_in_place)(const lk_comm *c, const float *buf, size_t n);
    lk_status (*sum16_floats)(lk_comm *c, lk_dtype t, float *buf, const size_t *counts, int gather, float scale);
    /* A computation in phases over the gradient buffers of a job on one host, in place
     * (lk_comm_phases; NULL where the backend has none): phases_room, the scratch's piece
     * floats where buf[0, n) is such a place, else 0. */
    size_t (*phases_room)(const lk_comm *c, const float *buf, size_t n);
    lk_status (*phases)(lk_comm *c, float *buf, size_t n, unsigned long long tag, int nphases, lk_host_phase_fn fn,
                        void *user);
    /* recv = world blocks of `bytes` bytes, block r from rank r */
    lk_status (*allgather_bytes)(lk_comm *c, const void *send, void *recv, size_t bytes);
    lk_status (*barrier)(lk_comm *c);
    /* see lk_comm_use_shm */
    lk_status (*use_shm)(lk_comm *c, int on, size_t grad_floats, float **grads);
    /* ends every rank of the job now (after a fatal error on this one) */
    void (*abort)(lk_comm *c, int code);
    void (*close)(lk_comm *c);
} lk_comm_vt;

/* What a rank is doing, for the report when another rank waits for it in vain (the trainer
 * says; the shared-memory collectives publish it beside their call numbers). */
typedef enum {
    LK_DOING_SETUP = 0, LK_DOING_FORWARD, LK_DOING_BACKWARD, LK_DOING_REDUCE, LK_DOING_CHECK,
    LK_DOING_UPDATE, LK_DOING_EVAL, LK_DOING_SAVE, LK_DOING_AVERAGE, LK_DOING_COUNT
} lk_doing;
typedef struct {
    volatile long step;  /* optimizer steps taken */
    volatile int what;   /* lk_doing */
    volatile int bucket; /* the comm thread's bucket (-1: none) */
} lk_comm_activity;
const char *lk_doing_name(int what);

struct lk_comm {
    const lk_comm_vt *vt;
    lk_comm_activity doing;      /* this rank's, as last said */
    volatile long long *board;   /* its place on the shared-memory board (shm.h), or NULL */
    int rank, world;
    int local_rank, local_world; /* ranks on this host */
    char host[64];
    char library[128];           /* e.g. "Open MPI v4.1.4" */
    int threads_ok;              /* calls may come from a second thread, one at a time */
    int shm;                     /* blocking all-reduces go through shared memory (shm.h) */
    char shm_note[256];          /* how same-host ranks all-reduce, or why not in shared memory */
    double timeout_s;            /* longest wait for another rank in lockstep's own waits */
    int mpi_deadline;            /* MPI's collectives have it too (a watchdog: mpi_watch.h) */
    lk_device *dev;              /* buffers of this device go through `stage` (use_device) */
    void *stage;
    size_t stage_bytes;
    lk_nccl *nccl;               /* all-reduces of dev's buffers through NCCL (use_nccl) */
    unsigned char slot_nccl[LK_COMM_MAX_SLOTS]; /* the request in a slot is NCCL's */
    void *impl;
};

static inline void lk_comm_doing(lk_comm *c, long step, lk_doing what)
{
    c->doing.step = step;
    c->doing.what = (int)what;
    if (c->board) c->board[2] = step, c->board[3] = (long long)what; /* (seen by the host's others) */
}

/* Opens a backend by name ("auto", "local", "mpi"); argc/argv may be NULL. */
lk_status lk_comm_open(lk_comm **out, const char *backend, int *argc, char ***argv);
/* Finalises (MPI_Finalize) and frees. */
void lk_comm_close(lk_comm *c);
/* Ends the whole job with status code, every rank (MPI_Abort): for one rank's failure that
 * the others cannot know of. A world of one: nothing (the caller returns code). */
void lk_comm_abort(lk_comm *c, int code);
/* 1 when this process was started by a parallel launcher (mpirun, srun). */
int lk_comm_launched(void);

lk_status lk_comm_local_open(lk_comm *c);
lk_status lk_comm_mpi_open(lk_comm *c, int *argc, char ***argv);

#define LK_COMM_TIMEOUT_S 300.0

/* Convenience wrappers with argument checks. lk_comm_allreduce is the blocking
 * in-place all-reduce (MPI_Allreduce: the library's tuned algorithms; or lockstep's
 * shared-memory one between same-host ranks after lk_comm_use_shm). */
lk_status lk_comm_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op);
lk_status lk_comm_allreduce_start(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot);
lk_status lk_comm_wait(lk_comm *c, int slot);
lk_status lk_comm_test(lk_comm *c, int slot, int *done);
lk_status lk_comm_allreduce_f64(lk_comm *c, double *buf, int n, lk_reduce_op op);
lk_status lk_comm_broadcast(lk_comm *c, void *buf, size_t bytes, int root);
/* The in-place reduce-scatter and all-gather of the vtable (see there), checked, for host
 * buffers, device buffers through NCCL (on its stream) or the staging buffer. */
lk_status lk_comm_reduce_scatter_start(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op,
                                       int slot);
lk_status lk_comm_allgather_start(lk_comm *c, float *buf, const size_t *counts, int slot);
lk_status lk_comm_reduce_scatter(lk_comm *c, float *buf, const size_t *counts, lk_reduce_op op);
lk_status lk_comm_allgather(lk_comm *c, float *buf, const size_t *counts);
lk_status lk_comm_allgather_bytes(lk_comm *c, const void *send, void *recv, size_t bytes);
/* The 16-bit sums of the vtable (see there), checked, for host buffers, device buffers
 * through NCCL (ncclBfloat16, ncclFloat16: NCCL's own order of additions) or the staging
 * buffer. */
lk_status lk_comm_sum16_start(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather, int slot);
lk_status lk_comm_sum16(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather);
/* The 16-bit sum of float values, in place and blocking: each rank's buf times scale rounded
 * to t, summed as lk_comm_sum16 does, the sums widened and times 1 / scale back in buf
 * (every part with gather, else this rank's) - bitwise rounding into a 16-bit buffer,
 * lk_comm_sum16 and widening back, without the buffer or its copies. Only where
 * lk_comm_sum16_in_place says so: the ranks of one host with buf in lockstep's shared
 * gradient buffer (lk_comm_use_shm), one pass over it. */
int lk_comm_sum16_in_place(const lk_comm *c, const float *buf, size_t n);
lk_status lk_comm_sum16_floats(lk_comm *c, lk_dtype t, float *buf, const size_t *counts, int gather, float scale);
/* a 16-bit element of type t (LK_BF16, LK_F16) to float32, and back to nearest even (hot
 * loops test t outside: inlined, each loop is one type's) */
static inline float lk_wire16_to_f32(lk_dtype t, uint16_t h) { return t == LK_F16 ? lk_f16_to_f32(h) : lk_bf16_to_f32(h); }
static inline uint16_t lk_wire16_rne(lk_dtype t, float f) { return t == LK_F16 ? lk_f16_rne(f) : lk_bf16_rne(f); }
/* counts of n values split evenly over the ranks (an all-reduce's parts for sum16) */
void lk_comm_even_counts(const lk_comm *c, size_t n, size_t *counts);
lk_status lk_comm_barrier(lk_comm *c);
/* Lets all-reduces and broadcasts take buffers in dev's memory (a GPU's, which MPI
 * cannot read): they are copied through `bytes` of pinned host memory, the largest
 * such buffer. dev NULL releases it (before dev is closed). Local, not collective. */
lk_status lk_comm_use_device(lk_comm *c, lk_device *dev, size_t bytes);
/* How GPU replicas all-reduce (--gpu-comm): NCCL where it can (built, one rank per
 * GPU), NCCL or an error, or the staging buffer through the library. */
typedef enum { LK_GPU_COMM_AUTO = 0, LK_GPU_COMM_NCCL, LK_GPU_COMM_MPI } lk_gpu_comm;
/* Collective, after lk_comm_use_device: with a CUDA device, all-reduces of its buffers
 * go through NCCL on a stream of their own, bootstrapped over this communicator, or
 * through the staging buffer - as `how` asks and the job allows (NCCL refuses two
 * ranks on one GPU: AUTO then stages, NCCL is an error naming them). c->nccl says
 * which. Nothing changes for a CPU device. */
lk_status lk_comm_use_nccl(lk_comm *c, lk_gpu_comm how);
int lk_comm_have_nccl(void);   /* built with NCCL */
/* The failure the NCCL watchdog found (an error, or an all-reduce older than the
 * timeout), else LK_OK: to be read where the host has waited for the device. */
lk_status lk_comm_status(lk_comm *c);
const char *lk_nccl_version(void);

/* How long a step waited for its all-reduces, as the GPU saw it, where the host cannot
 * tell (NCCL: starting and waiting only queue work on streams). For one set of buckets:
 * first() when the step's first all-reduce starts, wait() once every one has started and
 * the compute stream is about to wait for them, end() after that. end() gives, for the
 * newest step the GPU has passed (normally the previous one; read with event queries,
 * never waiting; 0 before any), `exposed`: the time the compute stream stood still
 * between the end of backward and the end of the last all-reduce (0 when communication
 * was hidden), and `span`: from the first bucket's gradients being final to the last
 * all-reduce's end. create() gives NULL (and every call is then a no-op) unless buf's
 * all-reduces go through NCCL; the timer records on NCCL's streams as they are then, so
 * destroy it before lk_comm_use_device or lk_comm_use_nccl close them. */
typedef struct lk_comm_timer lk_comm_timer;
lk_status lk_comm_timer_create(lk_comm *c, const void *buf, lk_comm_timer **out);
void lk_comm_timer_destroy(lk_comm_timer *t);
lk_status lk_comm_timer_first(lk_comm_timer *t);
lk_status lk_comm_timer_wait(lk_comm_timer *t);
lk_status lk_comm_timer_end(lk_comm_timer *t, double *exposed_ms, double *span_ms);

/* comm_nccl.c (built with CUDA and NCCL), used by comm.c */
lk_status lk_nccl_open(lk_comm *c, lk_device *dev);
void lk_nccl_close(lk_comm *c);
lk_status lk_nccl_allreduce_start(lk_comm *c, float *buf, size_t n, lk_reduce_op op, int slot);
lk_status lk_nccl_test(lk_comm *c, int slot, int *done);
lk_status lk_nccl_wait(lk_comm *c, int slot);
lk_status lk_nccl_allreduce(lk_comm *c, float *buf, size_t n, lk_reduce_op op);
/* in place, as the vtable's; kind 0 reduce-scatter, 1 all-gather (op unused) */
lk_status lk_nccl_shard_start(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op,
                              int slot);
lk_status lk_nccl_shard(lk_comm *c, int kind, float *buf, const size_t *counts, lk_reduce_op op);
lk_status lk_nccl_sum16_start(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather, int slot);
lk_status lk_nccl_sum16(lk_comm *c, lk_dtype t, uint16_t *buf, const size_t *counts, int gather);
lk_status lk_nccl_status(lk_comm *c);
lk_status lk_nccl_timer_create(lk_comm *c, lk_comm_timer **out);
void lk_nccl_timer_destroy(lk_comm_timer *t);
lk_status lk_nccl_timer_first(lk_comm_timer *t);
lk_status lk_nccl_timer_wait(lk_comm_timer *t);
lk_status lk_nccl_timer_end(lk_comm_timer *t, double *exposed_ms, double *span_ms);

/* Collective over every rank, same arguments everywhere. With on, ranks sharing a host
 * all-reduce (lk_comm_allreduce) through shared memory where the job allows it (two or
 * more ranks on every host, the same number on each); c->shm says whether it does and
 * c->shm_note how. With grads, *grads receives a buffer of grad_floats floats in that
 * shared memory (or NULL): all-reduces of ranges of it run in place, without copies.
 * It stays valid until the next call or lk_comm_close. */
lk_status lk_comm_use_shm(lk_comm *c, int on, size_t grad_floats, float **grads);
/* Every rank on one host, in lockstep's shared memory, with buf[0, n) in its gradient buffer
 * (lk_comm_use_shm): the floats of scratch a phase of lk_comm_phases may use in the shared
 * output and in each slot (the view's piece); else 0, and lk_comm_phases refuses. */
size_t lk_comm_phases_room(const lk_comm *c, const float *buf, size_t n);
/* Blocking: phases 0 .. nphases - 1 of fn over every rank's buf[0, n) in place (rank = local
 * rank; fewer where a phase says it is the last), a barrier after each; tag (the same on
 * every rank) names the computation, a call that differs on some rank is an error on all.
 * PowerSGD on one host (bucket_psgd.c). */
lk_status lk_comm_phases(lk_comm *c, float *buf, size_t n, unsigned long long tag, int nphases,
                         lk_host_phase_fn fn, void *user);

#endif
