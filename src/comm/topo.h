/* topo.h - hardware topology (hwloc): which cores each rank on a host gets. */
#ifndef LK_TOPO_H
#define LK_TOPO_H

#include "comm.h"

typedef struct {
    int bound;            /* the process was bound to `cores` */
    int ncores;           /* cores given to this rank */
    int host_cores;       /* cores on the host */
    char cores[128];      /* hwloc list of the PUs, e.g. "0-3" */
    char numa[64];        /* NUMA nodes of those cores, e.g. "0" */
    char gpu[96];         /* the GPU this rank drives, "cuda:1 (0000:3b:00.0)"; "" for a CPU job */
    char note[160];       /* why not bound, when not */
} lk_topo_binding;

/* Splits this host's cores evenly among its local ranks (local rank l gets the l-th
 * contiguous share) and binds the process there when `bind` is set and there are at
 * least as many cores as local ranks. With gpus > 0 (the GPUs visible to a GPU job),
 * local rank l drives GPU l mod gpus and shares the cores nearest it with the other
 * ranks whose GPUs are as near. Call before any thread is created. */
lk_status lk_topo_bind(const lk_comm *c, int bind, int gpus, lk_topo_binding *out);

#endif
