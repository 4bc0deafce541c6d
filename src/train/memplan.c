/* memplan.c - the memory plan's arithmetic and the process's measured memory. */
#include "memplan.h"

#include <stdlib.h>
#include <string.h>

#include "../comm/bucket.h"
#include "../comm/powersgd.h"
#include "../comm/zero.h"
#include "../comm/shm.h"

static const char *const kind_names[LK_MEM_KINDS] = {
    "params", "grads", "optimizer", "activations", "workspace", "comm", "data", "runtime"};

const char *lk_mem_kind_name(lk_mem_kind k) { return kind_names[k]; }

/* a /proc file's "Key:   123 kB" line, in bytes (0: not there) */
static double proc_kb(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0.0;
    char line[256];
    double v = 0.0;
    const size_t len = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, len) && line[len] == ':') {
            v = strtod(line + len + 1, NULL) * 1024.0;
            break;
        }
    fclose(f);
    return v;
}

double lk_mem_rss(void) { return proc_kb("/proc/self/status", "VmRSS"); }
double lk_mem_rss_peak(void) { return proc_kb("/proc/self/status", "VmHWM"); }
double lk_mem_available(void) { return proc_kb("/proc/meminfo", "MemAvailable"); }

double lk_mem_data_bytes(const lk_dataset *train, double loaded, int batch)
{
    const double per = (double)lk_dataset_sample_numel(train) * sizeof(float);
    return loaded + (double)train->n * sizeof(int32_t) +
           (double)batch * (per + (double)lk_dataset_ylen(train) * 2 * sizeof(int32_t));
}

/* Stage 2's staging floats, each network's buckets': the lanes, and the pinned regions in
 * *pinned. */
static double staging_floats(const lk_mem_inputs *in, const lk_model *m, size_t split, double *pinned)
{
    size_t p0 = 0, p1 = 0;
    double f = (double)lk_buckets_stage_floats(m, in->bucket_bytes, 0, split, &p0);
    if (split < m->nparams) f += (double)lk_buckets_stage_floats(m, in->bucket_bytes, split, m->nparams, &p1);
    *pinned = (double)(p0 + p1);
    return f;
}

static void compute(const lk_mem_inputs *in, const lk_model *m, size_t split, lk_mem_plan *p)
{
    memset(p, 0, sizeof *p);
    lk_device *d = m->dev;
    lk_shard sh;
    const int stage = lk_zero_shard(&sh, m->nparams, in->zero, in->world, in->rank);
    const double F = sizeof(float), n = (double)m->nparams, slice = (double)(sh.hi - sh.lo);
    const int nl = in->local_world > 0 ? in->local_world : 1;
    const int shm = in->shm && in->world > 1 && nl >= 2 && d->host_addressable;
    size_t held = 0, used = 0, total = 0;
    if (d->ops->mem_info) d->ops->mem_info(d, &held, &used, &total);

    double dev[LK_MEM_KINDS] = {0}, host[LK_MEM_KINDS] = {0};
    /* the float32 master, and the bf16 working copy of a mixed-precision model */
    dev[LK_MEM_PARAMS] = (double)(m->nparams + m->nbuffers) * F + (m->params16 ? n * 2.0 : 0.0);
    dev[LK_MEM_OPTIM] = lk_optim_state_count(in->optim) * (stage ? slice : n) * F;
    /* the gradients the layers write (all of them, or stage 2's lanes), the slice and the
     * pinned buckets' region */
    double pinned = 0.0;
    const double written = (stage == 2 ? staging_floats(in, m, split, &pinned) : n) * F;
    if (stage == 2) dev[LK_MEM_GRADS] = (slice + pinned) * F;
    if (shm) { /* in the host's region: its own, and its share of every other's */
        p->shared = nl * written;
        host[LK_MEM_GRADS] += written * (1.0 + (double)(nl - 1) / nl);
    } else {
        dev[LK_MEM_GRADS] += written;
    }
    dev[LK_MEM_ACT] = (double)m->act_bytes;
    dev[LK_MEM_WORKSPACE] = (double)m->ws_bytes + (double)held;
    if (shm) { /* the region's slots (its staged calls) */
        const size_t piece = lk_shm_piece_for(nl, LK_SHM_SLOTS_MAX);
        const double slots = (double)lk_shm_region_bytes(nl, piece, 0);
        host[LK_MEM_COMM] += slots;
        p->shared += slots;
    }
    if (!d->host_addressable && in->world > 1) host[LK_MEM_COMM] += n * F; /* pinned staging */
    if (in->wire != LK_F32 && in->world > 1) { /* the 16-bit wire buffer, and (MPI on CPU ranks) the
                                                   exchange's: every rank's copy of its parts */
        dev[LK_MEM_COMM] += n * 2.0;
        if (d->host_addressable) host[LK_MEM_COMM] += n * 2.0;
    }
    if (in->powersgd_rank > 0 && in->world > 1) /* residuals, P, Q, the uncompressed staging */
        dev[LK_MEM_COMM] += (double)lk_powersgd_state_floats(m, 0, m->nparams, in->powersgd_rank) * F;
    host[LK_MEM_DATA] = in->data_bytes;
    host[LK_MEM_RUNTIME] = in->runtime_bytes;
    for (int k = 0; k < LK_MEM_KINDS; k++) {
        if (d->host_addressable) host[k] += dev[k], dev[k] = 0.0;
        p->host[k] = host[k];
        p->dev[k] = dev[k];
        p->host_rank += host[k];
        p->dev_rank += dev[k];
    }
    if (d->host_addressable) p->host_rank = LK_MAX(p->host_rank, in->peak_before);
    /* the host: every local rank's private memory, the shared region once (the ranks'
     * slices differ by at most a cache line: this rank's stands for each) */
    const double own_shared = shm ? written * (1.0 + (double)(nl - 1) / nl) : 0.0;
    const double slots = p->shared - (shm ? nl * written : 0.0);
    p->host_total = nl * (p->host_rank - own_shared - slots) + p->shared;
    p->host_avail = lk_mem_available();
    p->dev_avail = total ? (double)(total - used) : 0.0;
    p->local_world = nl;
    p->fits = (p->host_avail <= 0.0 || p->host_total <= p->host_avail) &&
              (!total || p->dev_rank <= p->dev_avail);
}

lk_status lk_mem_plan_make(const lk_mem_inputs *in, lk_device *dev, lk_mem_plan *out)
{
    lk_model *m = NULL;
    lk_status st = lk_model_create(&m, dev, &in->sample);
    if (st == LK_OK) st = lk_spec_build(in->model, m, in->nclasses, in->arch);
    if (st == LK_OK) st = lk_model_set_recompute(m, in->recompute);
    const lk_zoo_entry *z = lk_spec_entry(in->model);
    if (st == LK_OK) st = lk_zoo_set_precision(m, z, in->precision, NULL);
    if (st == LK_OK) st = lk_model_build_ex(m, in->batch, LK_BUILD_DRY);
    if (st == LK_OK) {
        size_t split = m->nparams; /* a GAN: the discriminator's [0, split), the generator's after */
        if (z->target == LK_TARGET_REAL && lk_spec_gan_split(m) > 0) split = lk_spec_gan_d_params(m);
        compute(in, m, split, out);
    }
    lk_model_destroy(m);
    return st;
}

static double gb(double b) { return b / 1e9; }

void lk_mem_plan_line(const lk_mem_plan *p, char *buf, size_t len)
{
    const int gpu = p->dev_rank > 0.0;
    size_t at = (size_t)snprintf(buf, len, "memory plan per rank%s:", gpu ? " (GPU)" : "");
    for (int k = 0; k < LK_MEM_KINDS && at < len; k++) {
        const double v = gpu ? p->dev[k] : p->host[k];
        if (v > 0.0 || !gpu) at += (size_t)snprintf(buf + at, len - at, " %s %.2f,", kind_names[k], gb(v));
    }
    if (at < len)
        at += (size_t)snprintf(buf + at, len - at, " = %.2f GB", gb(gpu ? p->dev_rank : p->host_rank));
    if (gpu && at < len)
        at += (size_t)snprintf(buf + at, len - at, " of %.2f GB free; host %.2f GB a rank", gb(p->dev_avail),
                               gb(p->host_rank));
    if (at < len)
        snprintf(buf + at, len - at, "; the host: %d rank%s %.2f GB of %.2f GB available (%s)", p->local_world,
                 p->local_world == 1 ? "" : "s", gb(p->host_total), gb(p->host_avail),
                 p->fits ? "fits" : "does not fit");
}

void lk_mem_plan_print(const lk_mem_plan *p, FILE *out)
{
    const int gpu = p->dev_rank > 0.0;
    fprintf(out, "# memory per rank, GB%s\n", gpu ? " (GPU | host)" : "");
    for (int k = 0; k < LK_MEM_KINDS; k++) {
        if (gpu) fprintf(out, "  %-12s %9.3f | %9.3f\n", kind_names[k], gb(p->dev[k]), gb(p->host[k]));
        else fprintf(out, "  %-12s %9.3f\n", kind_names[k], gb(p->host[k]));
    }
    if (gpu) fprintf(out, "  %-12s %9.3f | %9.3f\n", "total", gb(p->dev_rank), gb(p->host_rank));
    else fprintf(out, "  %-12s %9.3f\n", "total", gb(p->host_rank));
    if (p->shared > 0.0) fprintf(out, "  (of which shared memory: %.3f, mapped by every rank of the host)\n", gb(p->shared));
    fprintf(out, "# the host: %d rank%s, %.3f GB (shared memory once) of %.3f GB available", p->local_world,
            p->local_world == 1 ? "" : "s", gb(p->host_total), gb(p->host_avail));
    if (gpu) fprintf(out, "; each GPU: %.3f GB of %.3f GB free", gb(p->dev_rank), gb(p->dev_avail));
    fprintf(out, ": %s\n", p->fits ? "fits" : "does NOT fit");
}
