/* shm.h - all-reduce between the processes of one host through shared memory.
 *
 * One region per host (lk_shm_region_bytes) is mapped by every process and starts
 * zeroed. It may hold each process's gradient buffer (lk_shm.grads): an all-reduce of
 * a range of it is done in place, with no copies: after a barrier, process i sums
 * sub-chunk i of the range over every process's buffer, an optional cross-host hook
 * all-reduces that sub-chunk with the processes of the same local rank on the other
 * hosts, process i writes the result into every buffer, and a second barrier ends the
 * call. Any other buffer goes piece by piece through per-process slots: each copies
 * its piece into its slot, barrier, process i sums sub-chunk i over the slots into the
 * shared output (and the hook), barrier, each copies the piece back. The next call's
 * first barrier keeps slots and output from being reused before everyone is done.
 *
 * A process that waits for a slower one polls for a while (250 us where the host has a
 * core for each process, else a few microseconds) and then sleeps on a futex: its core
 * goes back to the training thread instead of being burnt polling. A wait longer
 * than the timeout, or a failure on another process of the host, ends the call on
 * every process with an error instead of a hang, which names the processes that did not
 * arrive and what each was doing: every call is numbered, and each process publishes its
 * call's number and its activity (comm.h's lk_comm_activity) on a board in the region.
 *
 * Every process of the host must make the same calls in the same order, one at a time;
 * a call whose range, length or operation differs on some process is reported as an
 * error on all of them. The region is a POSIX shared-memory object (lk_shm_map_*);
 * comm_mpi.c creates it and supplies the cross-host hook. */
#ifndef LK_SHM_H
#define LK_SHM_H

#include "comm.h"

/* all-reduces chunk[0..n) in place among the processes of one local rank on every host */
typedef lk_status (*lk_shm_cross_fn)(void *user, float *chunk, size_t n, lk_reduce_op op);

typedef struct lk_shm_ctl lk_shm_ctl;

typedef struct {
    lk_shm_ctl *ctl;         /* barrier state, in the region */
    unsigned long long *sig; /* two words of call signature per process */
    volatile long long *board; /* per process: call number, rank, step, activity, bucket */
    const lk_comm_activity *doing; /* this process's activity (NULL: not known) */
    int rank;                /* this process's rank in the job (for the report) */
    long long calls;         /* this process's calls so far */
    float *out;              /* piece floats: the summed piece */
    float *slots;            /* nlocal x piece floats: each process's copy of its piece */
    float *grads;            /* nlocal x grad_floats (padded): the gradient buffers */
    int me, nlocal;
    size_t piece;            /* floats per piece */
    size_t grad_floats;      /* 0: no gradient buffers in the region */
    double timeout_s;
    double spin_s;           /* how long a wait polls before it sleeps (beyond SPINS polls) */
} lk_shm;

#define LK_SHM_SLOTS_MAX ((size_t)32 << 20) /* staging slots per host, whatever the ranks */

/* The region's size for nlocal processes, pieces of `piece` floats and gradient
 * buffers of grad_floats each (0 for none). */
size_t lk_shm_region_bytes(int nlocal, size_t piece, size_t grad_floats);
/* The piece length that keeps the slots and output within max_bytes (<= 1 MiB a slot). */
size_t lk_shm_piece_for(int nlocal, size_t max_bytes);
/* Points s at a region (page aligned, zeroed before the first call on any process). */
void lk_shm_attach(lk_shm *s, void *region, int me, int nlocal, size_t piece, size_t grad_floats,
                   double timeout_s);
/* This process's place on the board (call number, rank, step, activity, bucket). */
volatile long long *lk_shm_board(const lk_shm *s);
/* This process's gradient buffer in the region (NULL without one). */
float *lk_shm_grads(const lk_shm *s);

/* A POSIX shared-memory object of `bytes`, mapped: create reserves its memory (a full
 * /dev/shm is an error here, not a SIGBUS later), open maps an existing one. */
lk_status lk_shm_map_create(const char *name, size_t bytes, void **addr);
lk_status lk_shm_map_open(const char *name, size_t bytes, void **addr);
void lk_shm_map_unlink(const char *name);
void lk_shm_map_close(void *addr, size_t bytes);

/* In-place all-reduce of buf[0..n) over the host (and, with cross, over every host).
 * AVG sums and then multiplies by avg_scale (1 / number of processes in all). */
lk_status lk_shm_allreduce(lk_shm *s, float *buf, size_t n, lk_reduce_op op, float avg_scale,
                           lk_shm_cross_fn cross, void *user);

/* In-place reduce-scatter and all-gather over the processes of ONE host (local rank =
 * rank), as comm.h's (counts[q] floats for process q, back to back). A reduce-scatter of
 * a range of the gradient buffers is done in place: after a barrier process i sums
 * sub-chunk i of the range over every buffer into the owners' buffers, and a second
 * barrier ends it. Any other buffer, and every all-gather, goes piece by piece through
 * the shared output: two barriers a piece. */
lk_status lk_shm_reduce_scatter(lk_shm *s, float *buf, const size_t *counts, lk_reduce_op op,
                                float avg_scale);
lk_status lk_shm_allgather(lk_shm *s, float *buf, const size_t *counts);

/* comm.h's 16-bit sum over the processes of ONE host (local rank = rank): every process's
 * values added in float32 in local-rank order and rounded once, bitwise the MPI path's;
 * with gather every process gets every part, else its own (counts[me] values at its
 * offset). Through the slots: two barriers a piece of 2 x piece values. */
lk_status lk_shm_sum16(lk_shm *s, lk_dtype t, uint16_t *buf, const size_t *counts, int gather);
/* 1 when buf[0, n) lies in this process's gradient buffer in the region */
int lk_shm_holds(const lk_shm *s, const float *buf, size_t n);
/* The same sum of float values held in the gradient buffers (lk_shm_holds), in place, in one
 * pass: each process's buf times scale rounded to t, added, the sum rounded and times
 * 1 / scale written back - bitwise the values of rounding into a 16-bit buffer,
 * lk_shm_sum16 and widening back. After a barrier process i does sub-chunk i over every
 * buffer; a second barrier ends it. */
lk_status lk_shm_sum16_floats(lk_shm *s, lk_dtype t, float *buf, const size_t *counts, int gather, float scale);

/* A computation over the host's gradient buffers in place, in phases with a barrier after
 * each (comm.h's lk_host_view and lk_host_phase_fn say what a phase sees). tag, the same on
 * every process, stands for what the call does (checked beside the range, as the other
 * calls' signatures are). A phase's error ends the call on every process. */
lk_status lk_shm_phases(lk_shm *s, float *buf, size_t n, unsigned long long tag, int nphases,
                        lk_host_phase_fn fn, void *user);

#endif
