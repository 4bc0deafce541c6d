/* topo.c - rank binding with hwloc. Local rank l of L on a host with C cores gets
 * cores [l*C/L, (l+1)*C/L), so ranks never share a core and their BLAS/OpenMP
 * threads (one per core) stay on it. */
#include "topo.h"

#include <hwloc.h>
#include <stdio.h>
#include <string.h>

lk_status lk_topo_bind(const lk_comm *c, int bind, lk_topo_binding *out)
{
    memset(out, 0, sizeof *out);
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0 || hwloc_topology_load(t) != 0)
        return LK_ERR(LK_ERR_DEVICE, "rank %d: hwloc cannot read the topology of %s", c->rank, c->host);
    lk_status s = LK_OK;
    hwloc_bitmap_t set = hwloc_bitmap_alloc(), nodes = hwloc_bitmap_alloc();
    int C = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    if (C <= 0) C = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    hwloc_obj_type_t unit = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
    out->host_cores = C;
    const int L = c->local_world, l = c->local_rank;
    if (!set || !nodes || C <= 0) {
        s = LK_ERR(LK_ERR_DEVICE, "rank %d: hwloc found no cores on %s", c->rank, c->host);
    } else if (L > C) {
        /* oversubscribed: every rank runs anywhere, one thread each */
        hwloc_bitmap_copy(set, hwloc_topology_get_topology_cpuset(t));
        out->ncores = 1;
        snprintf(out->note, sizeof out->note, "not bound: %d ranks on %d cores of %s", L, C, c->host);
    } else {
        int lo = (int)((long)l * C / L), hi = (int)((long)(l + 1) * C / L);
        for (int i = lo; i < hi; i++) hwloc_bitmap_or(set, set, hwloc_get_obj_by_type(t, unit, (unsigned)i)->cpuset);
        out->ncores = hi - lo;
        if (bind) {
            if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_PROCESS) == 0)
                out->bound = 1;
            else
                snprintf(out->note, sizeof out->note, "binding refused by the system");
        } else {
            snprintf(out->note, sizeof out->note, "not bound (--bind none)");
        }
    }
    if (s == LK_OK) {
        hwloc_bitmap_list_snprintf(out->cores, sizeof out->cores, set);
        hwloc_cpuset_to_nodeset(t, set, nodes);
        hwloc_bitmap_list_snprintf(out->numa, sizeof out->numa, nodes);
    }
    hwloc_bitmap_free(set);
    hwloc_bitmap_free(nodes);
    hwloc_topology_destroy(t);
    return s;
}
