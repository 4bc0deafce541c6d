/* mpi_watch.h - a deadline for MPI's own collectives, and the report of who did not arrive.
 *
 * A blocking MPI call cannot time out, so a rank that stops without dying (a stalled GPU,
 * a deadlock, a rank stuck in another collective) would hold every other rank forever. A
 * watchdog thread per rank (it needs MPI_THREAD_MULTIPLE) watches the call this rank is
 * blocked in; past --comm-timeout it asks every other rank over a communicator of its own
 * what it is doing (each rank's watchdog answers, whatever its other threads do), sends
 * the verdict to every rank that answered, each prints it, and the job is aborted with
 * status 3 (launch/run.sh restarts on it). Every collective is numbered per rank, so the
 * verdict names the ranks that did not arrive at the call the others wait in. */
#ifndef LK_MPI_WATCH_H
#define LK_MPI_WATCH_H

#include <mpi.h>

#include "comm.h"

typedef struct lk_mpi_watch lk_mpi_watch;

/* Starts the watchdog of c's rank (a communicator duplicated from world, a thread). */
lk_status lk_mpi_watch_open(lk_mpi_watch **out, lk_comm *c, MPI_Comm world);
/* Stops the thread and frees (before MPI_Finalize; NULL is fine). */
void lk_mpi_watch_close(lk_mpi_watch *w);

/* The next collective's number (every rank numbers its collectives alike). */
long lk_mpi_watch_number(lk_mpi_watch *w);
/* This rank now blocks until collective `call` (a number from lk_mpi_watch_number) completes;
 * `what` names it ("all-reduce"); a static string. */
void lk_mpi_watch_block(lk_mpi_watch *w, long call, const char *what);
/* ... and no longer. */
void lk_mpi_watch_unblock(lk_mpi_watch *w);

#endif
