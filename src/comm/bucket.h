/* bucket.h - gradient buckets: contiguous slices of the flat gradient buffer whose
 * all-reduce starts as soon as their last layer's backward is done.
 *
 * Parameters are laid out in reverse layer order, so backward finalises gradients
 * from offset 0 upwards; a bucket is [begin, end) on layer boundaries, closed once
 * it holds at least bucket_bytes. The model's on_grad_ready hook feeds
 * lk_buckets_grad_ready(); between layers it also tests the requests in flight,
 * which is what makes MPI progress them while backward goes on. */
#ifndef LK_BUCKET_H
#define LK_BUCKET_H

#include "../core/model.h"
#include "comm.h"

typedef struct {
    size_t begin, end;
    int started, done;
} lk_bucket;

typedef struct {
    lk_comm *comm;
    float *grads;
    int n;
    lk_bucket *b;
    size_t ready;        /* gradients [0, ready) are final in this backward */
    int next;            /* first bucket not started */
    int active;          /* this backward communicates (last micro-batch) */
    lk_status status;    /* first error seen in the hook */
    double t_first_start, t_last_done;
    double comm_ms;      /* last step: time blocked waiting in finish (exposed) */
    double span_ms;      /* last step: first start to last completion */
} lk_buckets;

/* Plans buckets for m's layout and hooks them into m->on_grad_ready. */
lk_status lk_buckets_create(lk_buckets **out, lk_comm *c, lk_model *m, size_t bucket_bytes);
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
