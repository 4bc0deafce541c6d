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
 *           only queues work on a stream, so auto is `layers`.
 *
 * What a final bucket's hook does depends on the sharding (zero.h): stage 0 all-reduces it
 * (sums); stage 1 reduce-scatters it in place in the gradient buffer (each rank keeps the
 * sum of its slice of it); stage 2 has no full gradient buffer: the layers write into
 * staging, a few lanes the size of the largest bucket that buckets take in turn (a bucket
 * some earlier layer writes into before its own layers run, the embedding a head is tied
 * to, keeps a place of its own), and the hook reduce-scatters the bucket there and copies
 * (a later micro-batch: adds) this rank's part into the slice; a bucket waits, before its
 * layers write, for the reduce-scatter of the one that used its lane before it.
 *
 * How a final bucket is reduced is a strategy chosen once, at open (lk_bucket_reduction):
 * stage 0 all-reduces it in place, stages 1 and 2 reduce-scatter it; with a 16-bit wire
 * (--grad-compress bf16|fp16, --grad-dtype bf16) it is scaled by 1/world and rounded to
 * nearest even into a wire buffer, summed there (lk_comm_sum16: every rank's part added in
 * float32 and rounded once; half the bytes; what a sum of ranks' gradients would overflow
 * in fp16 their average does not), and the sums (stage 0: all of them; stages 1, 2: this
 * rank's part) come back to float32, times world, in the bucket's place. */
#ifndef LK_BUCKET_H
#define LK_BUCKET_H

#include <pthread.h>

#include "../core/model.h"
#include "comm.h"

typedef struct lk_zero_state lk_zero_state;
typedef struct lk_buckets lk_buckets;

/* A bucket's reduction: start (bucket i's first collective started in request slot `slot`,
 * or run when slot < 0) and arrived (that collective's sums are in: put them where the step
 * reads them; a reduction of several collectives - PowerSGD's - then starts (runs) the next
 * in the same slot and sets *more, and arrived is called again when it is done). */
typedef struct {
    lk_status (*start)(lk_buckets *b, int i, int slot);
    lk_status (*arrived)(lk_buckets *b, int i, int slot, int *more);
} lk_bucket_reduction;

typedef struct lk_buckets_psgd lk_buckets_psgd;

typedef struct {
    size_t begin, end;
    int done;
    double t_start, t_done; /* this step's all-reduce in flight (lk_now; t_done when seen done) */
    double sumsq;           /* the sum of squares of what it reduced (host memory: see lk_buckets_sumsq) */
    int sumsq_set;          /* its reduction found sumsq itself (PowerSGD on one host) */
    /* ZeRO-2 */
    size_t at;              /* its place in the staging (its lane, or the pinned region) */
    int prev;               /* the bucket that used its lane before it (-1: none) */
    int touched, final;     /* this backward: its staging readied, its part in the slice */
    int pinned;             /* written before its own layers run: a place of its own */
    int phase;              /* a reduction of several collectives: the one in flight */
} lk_bucket;

/* AUTO: THREAD where the communicator allows a second thread, else LAYERS */
typedef enum { LK_PROGRESS_AUTO = 0, LK_PROGRESS_LAYERS, LK_PROGRESS_THREAD } lk_progress_mode;

/* AUTO made concrete for c: the comm thread where the library allows a second thread. */
lk_progress_mode lk_progress_resolve(const lk_comm *c, lk_progress_mode mode);

struct lk_buckets {
    lk_comm *comm;
    lk_model *model;
    float *grads;
    int n;
    lk_bucket *b;
    size_t lo, hi;       /* the parameters these buckets cover */
    lk_zero_state *zero; /* the sharding (NULL: none, all-reduce) */
    int stage;           /* its stage: 0 all-reduce, 1 reduce-scatter in place, 2 through staging */
    size_t *counts;      /* stages 1, 2 (and a bf16 wire): each bucket's parts per rank (n x world) */
    float *stage_buf;    /* stage 2: the lanes, and whether they are this set's own allocation */
    int stage_owned;
    float *pinned_buf;   /* stage 2: the pinned buckets' region (the set's own: device memory) */
    size_t *gaps;        /* stage 2: per bucket, the alignment gaps between its tensors ([lo, hi)
                            pairs from gap_at[i] to gap_at[i + 1]), zeroed when it takes its place */
    int *gap_at;
    int accumulate;      /* stage 2: this backward adds its part to the slice (not the first) */
    size_t ready;        /* gradients [0, ready) are final in this backward */
    int next;            /* first bucket not started */
    int active;          /* this backward communicates (last micro-batch) */
    int last_active;     /* the step's last backward did (and so each bucket has its sumsq) */
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
    const lk_bucket_reduction *reduce; /* this step's: plain (chosen at open), or compressed */
    const lk_bucket_reduction *plain;
    lk_buckets_psgd *psgd;   /* --grad-compress powersgd:R: its state (NULL: none) */
    lk_dtype wire;       /* what the buckets travel as: LK_F32, or LK_BF16 / LK_F16 through wire_buf */
    float wire_scale;    /* 16-bit: the values on the wire are the gradients times this (1/world) */
    uint16_t *wire_buf;  /* 16-bit: [lo, hi) scaled and rounded, on the model's device */
    /* LK_PROGRESS_THREAD (running exactly when mode says so): the comm thread and
     * what it shares with the training thread (active, ready, finishing, complete,
     * stop under mu) */
    lk_progress_mode mode;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    int finishing, complete, stop;
    char thread_error[512]; /* the comm thread's error message */
};

typedef struct {
    size_t bucket_bytes;
    lk_progress_mode mode;
    size_t lo, hi;       /* the parameters covered (hi 0: all) */
    lk_zero_state *zero; /* NULL or stage 0: all-reduce */
    float *stage;        /* stage 2: the lanes, lk_buckets_stage_floats floats of host memory
                            the caller keeps (shared memory, summed in place), or NULL:
                            allocated on the model's device (the pinned region always is:
                            in shared memory each rank would also touch its share of every
                            other rank's, for the whole backward) */
    lk_dtype wire;       /* LK_F32 (0), or LK_BF16, LK_F16: the buckets travel and are summed in 16 bits */
    int powersgd_rank;   /* > 0: PowerSGD at that rank (stage 0, a float32 wire; bucket_psgd.c) */
    uint64_t seed;       /* PowerSGD: its first Qs' */
} lk_buckets_opts;

/* Plans buckets for m's layout and hooks them into m's on_grad_ready and before_grads;
 * with LK_PROGRESS_THREAD also starts the comm thread. Stage 2 also moves the gradients
 * of the parameters it covers into its staging (lk_model_place_grads). */
lk_status lk_buckets_open(lk_buckets **out, lk_comm *c, lk_model *m, const lk_buckets_opts *o);
/* Floats of stage 2's lanes for buckets of bucket_bytes over [lo, hi), and in *pinned
 * those of its pinned region. */
size_t lk_buckets_stage_floats(const lk_model *m, size_t bucket_bytes, size_t lo, size_t hi, size_t *pinned);
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
/* Arms the buckets before a backward, the first and/or the last of a step (micro-batches,
 * a GAN's two passes through its discriminator): the last one communicates (the others
 * only add up gradients), except under stage 2, where each one does. */
void lk_buckets_begin(lk_buckets *b, int first, int last);
/* The model hooks: gradients of [offset, offset + count) are final; are about to be written. */
void lk_buckets_grad_ready(void *user, size_t offset, size_t count);
void lk_buckets_before_grads(void *user, size_t offset, size_t count);
/* Starts what is left, waits for every bucket; the sums are then in m->grads (stage 1:
 * this rank's slice of them; stage 2: in the slice). Call it after every backward (only
 * the communicating ones do anything); comm_ms and span_ms add up over a step's. */
lk_status lk_buckets_finish(lk_buckets *b);
/* The sum of squares of what this rank steps on (every gradient at stage 0, its part at
 * stage 1), added up as each bucket's reduction completed - on the comm thread beside
 * backward, the values still in cache: 1 and *out, where the gradients are host memory and
 * this step's buckets communicated at stages 0 and 1; else 0 (lk_sumsq after the step). */
int lk_buckets_sumsq(const lk_buckets *b, double *out);
/* PowerSGD (opened with powersgd_rank): whether the next steps compress (else plain
 * all-reduces: --compress-start's first steps; the residuals wait untouched). */
void lk_buckets_compress(lk_buckets *b, int on);
/* bucket_psgd.c: PowerSGD's state for b's buckets, its reduction, and its release. */
lk_status lk_buckets_psgd_open(lk_buckets *b, lk_model *m, int rank, uint64_t seed);
void lk_buckets_psgd_close(lk_buckets *b);
/* 1 when b's PowerSGD buckets run the host stages (powersgd.h): the comm thread of ranks on
 * one host, in lockstep's shared gradient buffers */
int lk_buckets_psgd_on_host(const lk_buckets *b);
extern const lk_bucket_reduction lk_reduction_powersgd;
/* PowerSGD's state in a checkpoint directory: this rank's residuals and Qs of the sets
 * (a GAN's two; NULL entries skipped) in dir/powersgd-RANK-of-WORLD.safetensors with the
 * step; every rank writes its own. load restores them when that file is there and of the
 * step (why: "resumed ...", or why they restart from zero - another world size, another
 * step, another rank R). */
lk_status lk_buckets_psgd_save(lk_buckets *const *sets, int nsets, const char *dir, long step);
lk_status lk_buckets_psgd_load(lk_buckets *const *sets, int nsets, const char *dir, long step, char *why,
                               size_t why_size);
/* Share of the last step's communication that overlapped backward (0..1). */
double lk_buckets_hidden_share(const lk_buckets *b);

#endif
