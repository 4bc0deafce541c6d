/* bench_comm.h - `lockstep bench comm`: the all-reduce of the job's communicator over
 * message sizes, timed like nccl-tests: per size the time of one in-place float32 SUM
 * all-reduce (the slowest rank's mean over the timed iterations), the algorithm
 * bandwidth (bytes / time) and the bus bandwidth (algbw x 2(n-1)/n: what each rank's
 * link carries in a ring, comparable across rank counts), and the elements a checked
 * all-reduce got wrong. */
#ifndef LK_BENCH_COMM_H
#define LK_BENCH_COMM_H

#include <stdio.h>

#include "../comm/comm.h"

typedef struct {
    size_t min_bytes, max_bytes; /* sizes double from min to max (4 B .. 256 MiB) */
    int iters;                   /* timed iterations per size (0: about 64 MiB of traffic, 5..1000) */
    int warmup;                  /* untimed iterations first */
    int barrier;                 /* 1: a barrier before each, each timed alone (as OSU's osu_allreduce);
                                  * 0: back to back, timed together (as nccl-tests) */
    const char *device;          /* where the buffer lives: auto, cpu, cuda[:N] */
    int shm;                     /* same-host ranks through shared memory (auto) or MPI */
    int gpu_comm;                /* lk_gpu_comm for device buffers */
    double timeout_s;
    const char *csv;             /* also write the rows here (rank 0), NULL: no */
} lk_bench_comm_opts;

lk_bench_comm_opts lk_bench_comm_defaults(void);

/* One row per size. */
typedef struct {
    size_t bytes;
    double time_us, algbw, busbw; /* GB/s (1e9 bytes) */
    long wrong;
} lk_bench_comm_row;

/* Runs the sweep on every rank (collective); rank 0 prints the table to out. rows
 * (may be NULL) receives up to max_rows results; *nrows how many. */
lk_status lk_bench_comm(lk_comm *c, const lk_bench_comm_opts *o, FILE *out, lk_bench_comm_row *rows,
                        int max_rows, int *nrows);

#endif
