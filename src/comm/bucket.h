/* bucket.h - gradient buckets: contiguous slices of the flat gradient buffer whose
 * all-reduce starts as soon as their last layer's backward is done.
 *
 * Parameters are laid out in reverse layer order, so backward finalises gradients
 * from offset 0 upwards; a bucket is [begin, end) on layer boundaries, closed once
 * it holds at least bucket_bytes. The model's on_grad_ready hook feeds
 * lk_buckets_grad_ready().
 *
 * Two ways to make MPI move the all-reduces along while backward goes on
 * (--comm-progress):
 *   layers  the hook itself starts ready buckets and tests the requests in flight,
 *           between layers, on the training thread (nothing competes with compute
 *           for the core, but MPI only moves at layer boundaries);
 *   thread  a comm thread owns every bucket call: the hook only posts how far the
 *           gradients are final, and the thread runs each ready bucket's blocking
 *           all-reduce (the library's tuned algorithm, progressing on its own, also
 *           in the middle of a long layer). Needs MPI at MPI_THREAD_SERIALIZED (the
 *           training thread makes no MPI call while a step's buckets are in flight).
 *           The default (auto) where MPI allows it and the gradients are not NCCL's;
 *           bench/overlap.sh measures both, with the comm thread's all-reduce
 *           through MPI or lockstep's shared memory. With NCCL, starting a bucket
 *           only queues work on a stream, so auto is `layers`. */
#ifndef LK_BUCKET_H
#define LK_BUCKET_H

#include <pthread.h>

#include "../core/model.h"
#include "comm.h"

typedef struct {
    size_t begin, end;
    int done;
    double t_start, t_done; /* this step's all-reduce in flight (lk_now; t_done when seen done) */
} lk_bucket;

/* AUTO: THREAD where the communicator allows a second thread, else LAYERS */
typedef enum { LK_PROGRESS_AUTO = 0, LK_PROGRESS_LAYERS, LK_PROGRESS_THREAD } lk_progress_mode;

/* AUTO made concrete for c: the comm thread where the library allows a second thread. */
lk_progress_mode lk_progress_resolve(const lk_comm *c, lk_progress_mode mode);

typedef struct {
    lk_comm *comm;
    float *grads;
    int n;
    lk_bucket *b;
    size_t ready;        /* gradients [0, ready) are final in this backward */
    int next;            /* first bucket not started */
    int active;          /* this backward communicates (last micro-batch) */
    lk_status status;    /* first error seen in the hook */
    /* The last step's communication: comm_ms, the time the step waited for it (exposed),
     * span_ms, from the first all-reduce's start to the last one's completion. On the
     * host clock: the time finish blocked, and from starting the first bucket to seeing
     * the last one done. Under NCCL (the host never blocks) the GPU's instead (`timer`,
     * see lk_comm_timer in comm.h): how long the compute stream stood still between the
     * end of backward and the end of the all-reduces, and from the first bucket's
     * gradients being final to the last all-reduce's end, for the newest step the GPU
     * has passed (normally the previous one; 0 before any). */
    double comm_ms;
    double span_ms;
    lk_comm_timer *timer; /* NCCL's all-reduces timed on the GPU, else NULL */
    /* LK_PROGRESS_THREAD (running exactly when mode says so): the comm thread and
     * what it shares with the training thread (active, ready, finishing, complete,
     * stop under mu) */
    lk_progress_mode mode;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    int finishing, complete, stop;
    char thread_error[512]; /* the comm thread's error message */
} lk_buckets;

/* Plans buckets for m's layout and hooks them into m->on_grad_ready; with
 * LK_PROGRESS_THREAD also starts the comm thread. */
lk_status lk_buckets_create(lk_buckets **out, lk_comm *c, lk_model *m, size_t bucket_bytes,
                            lk_progress_mode mode);
/* The buckets of [lo, hi) for bucket_bytes into b (at most cap, lk_buckets_cap(m) is
 * enough); returns how many. What lk_buckets_create uses, and `lockstep plan`. */
int lk_buckets_plan(const lk_model *m, size_t bucket_bytes, size_t lo, size_t hi, lk_bucket *b, int cap);
int lk_buckets_cap(const lk_model *m);
/* The same over the parameters [lo, hi) only (on layer boundaries): one network of
 * several in a model (a GAN's generator or discriminator); the hook ignores the others. */
lk_status lk_buckets_create_range(lk_buckets **out, lk_comm *c, lk_model *m, size_t bucket_bytes,
                                  lk_progress_mode mode, size_t lo, size_t hi);
void lk_buckets_destroy(lk_buckets *b);
/* Arms the buckets before a backward; inactive means no communication at all. */
void lk_buckets_begin(lk_buckets *b, int active);
/* The model hook: gradients of [offset, offset + count) are final. */
void lk_buckets_grad_ready(void *user, size_t offset, size_t count);
/* Starts what is left, waits for every bucket; the sums are then in m->grads. */
lk_status lk_buckets_finish(lk_buckets *b);
/* Share of the last step's communication that overlapped backward (0..1). */
double lk_buckets_hidden_share(const lk_buckets *b);

#endif
