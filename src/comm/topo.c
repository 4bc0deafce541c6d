/* topo.c - rank binding with hwloc. Without GPUs, local rank l of L on a host with C
 * cores gets cores [l*C/L, (l+1)*C/L), so ranks never share a core and their
 * BLAS/OpenMP threads (one per core) stay on it. With GPUs, local rank l drives GPU
 * l mod G and gets its share of the cores nearest that GPU (the CPU set of the GPU's
 * first non-I/O ancestor, e.g. its NUMA node or package), split evenly among the
 * local ranks whose GPUs sit in the same place. Every rank computes the whole plan
 * from the same inputs, so no communication is needed. */
#include "topo.h"

#include <hwloc.h>
#include <stdio.h>
#include <string.h>

#include "../core/device.h"

/* ORs share `idx` of `n` (contiguous, even) of the cores inside `domain` into set;
 * returns the number of cores in that share (0 when there are fewer cores than n) */
static int share(hwloc_topology_t t, hwloc_obj_type_t unit, hwloc_const_cpuset_t domain, int idx,
                 int n, hwloc_cpuset_t set)
{
    int k = hwloc_get_nbobjs_inside_cpuset_by_type(t, domain, unit);
    if (k < n || n <= 0) return 0;
    int lo = (int)((long)idx * k / n), hi = (int)((long)(idx + 1) * k / n);
    for (int i = lo; i < hi; i++)
        hwloc_bitmap_or(set, set, hwloc_get_obj_inside_cpuset_by_type(t, domain, unit, (unsigned)i)->cpuset);
    return hi - lo;
}

/* the CPU set nearest GPU `ordinal` (NULL if hwloc cannot place it) */
static hwloc_const_cpuset_t gpu_domain(hwloc_topology_t t, int ordinal)
{
    char bus[32];
    if (lk_cuda_pci_bus_id(ordinal, bus, (int)sizeof bus) != 0) return NULL;
    hwloc_obj_t pci = hwloc_get_pcidev_by_busidstring(t, bus);
    hwloc_obj_t near = pci ? hwloc_get_non_io_ancestor_obj(t, pci) : NULL;
    return near ? near->cpuset : NULL;
}

lk_status lk_topo_bind(const lk_comm *c, int bind, int gpus, lk_topo_binding *out)
{
    memset(out, 0, sizeof *out);
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0)
        return LK_ERR(LK_ERR_DEVICE, "rank %d: hwloc cannot read the topology of %s", c->rank, c->host);
    if (gpus > 0) hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return LK_ERR(LK_ERR_DEVICE, "rank %d: hwloc cannot read the topology of %s", c->rank, c->host);
    }
    lk_status s = LK_OK;
    hwloc_bitmap_t set = hwloc_bitmap_alloc(), nodes = hwloc_bitmap_alloc();
    hwloc_obj_type_t unit = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(t);
    const int C = hwloc_get_nbobjs_by_type(t, unit);
    out->host_cores = C;
    const int L = c->local_world, l = c->local_rank;
    /* the domain this rank draws its cores from, and its place among the ranks there */
    hwloc_const_cpuset_t domain = all;
    int idx = l, n = L;
    if (gpus > 0) {
        const int g = l % gpus;
        hwloc_const_cpuset_t mine = gpu_domain(t, g);
        char bus[32] = "";
        lk_cuda_pci_bus_id(g, bus, (int)sizeof bus);
        snprintf(out->gpu, sizeof out->gpu, "cuda:%d (%.31s)", g, bus);
        if (mine) {
            domain = mine;
            idx = n = 0;
            for (int i = 0; i < L; i++) {
                hwloc_const_cpuset_t other = gpu_domain(t, i % gpus);
                if (other && hwloc_bitmap_isequal(other, mine)) {
                    if (i < l) idx++;
                    n++;
                }
            }
        } else {
            snprintf(out->gpu, sizeof out->gpu, "cuda:%d (%.31s, locality unknown to hwloc)", g, bus);
        }
    }
    if (!set || !nodes || C <= 0) {
        s = LK_ERR(LK_ERR_DEVICE, "rank %d: hwloc found no cores on %s", c->rank, c->host);
    } else if ((out->ncores = share(t, unit, domain, idx, n, set)) == 0) {
        /* oversubscribed: every rank runs anywhere, one thread each */
        hwloc_bitmap_copy(set, all);
        out->ncores = 1;
        snprintf(out->note, sizeof out->note, "not bound: %d ranks on %d cores%s of %s", n,
                 hwloc_get_nbobjs_inside_cpuset_by_type(t, domain, unit),
                 domain == all ? "" : " near their GPU", c->host);
    } else if (!bind) {
        snprintf(out->note, sizeof out->note, "not bound (--bind none)");
    } else if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_PROCESS) == 0) {
        out->bound = 1;
    } else {
        snprintf(out->note, sizeof out->note, "binding refused by the system");
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
