/* plan_options.c - `lockstep plan`'s comparison of the ways to send less per step
 * (--grad-compress bf16|fp16|powersgd:R, --local-steps K) against float32 buckets, on the
 * links and ranks of the projection (plan.h's model):
 *   none        every bucket in one float32 all-reduce
 *   bf16/fp16   half its bytes, plus the conversions into the wire and back (measured); on
 *               one host through lockstep's shared memory float32's pass, the roundings
 *               in it (no wire buffer: its time is float32's, within 5% measured)
 *   powersgd:R  its uncompressed tensors, then P, then Q, one all-reduce after another,
 *               plus PowerSGD's arithmetic on its matrices (measured at rank R); on one
 *               host through lockstep's shared memory its host stages: float32's pass
 *               and the arithmetic of 1/n of the rows (measured on all of them, / n)
 *   local K     no gradient all-reduce; parameters, buffers and optimizer state averaged
 *               every K steps (that all-reduce's time / K a step, after the step)
 * Each bucket's all-reduces start as soon as it is final, as in the projection. Only
 * throughput is compared: PowerSGD and local SGD change what is trained (see the README's
 * accuracy figures); bf16 and fp16 round the sums. So the option to use is the fastest only
 * where it is predicted at least LK_PLAN_MARGIN x float32's samples/s (the predictions'
 * error on the emulated hosts reached 30% for one option, most are within 15%); else
 * float32 buckets. */
#include "plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../comm/powersgd.h"
#include "../core/ops.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the median of 5 timings of fn on the device (ms) */
#define TIMED(dev, out, ...)                                                \
    do {                                                                    \
        double t_[5];                                                       \
        for (int r_ = 0; r_ < 5 && st == LK_OK; r_++) {                     \
            lk_sync(dev);                                                   \
            const double t0_ = lk_now();                                    \
            __VA_ARGS__;                                                    \
            lk_sync(dev);                                                   \
            t_[r_] = (lk_now() - t0_) * 1e3;                                \
        }                                                                   \
        qsort(t_, 5, sizeof *t_, cmp_double);                               \
        (out) = t_[2];                                                      \
    } while (0)

/* the host stages of matrices [k0, k1) as one process of one doing every row (ms) */
static lk_status time_host(lk_powersgd *s, int k0, int k1, float *grads, size_t base, lk_device *d, double *ms)
{
    lk_psgd_host h = {.base = base};
    size_t np;
    lk_powersgd_range(s, 0, k0, k1, &h.p_base, &np);
    lk_powersgd_range(s, 1, k0, k1, &h.q_base, &h.q_n);
    float *scratch = lk_malloc((np + 2 * h.q_n + 1) * sizeof(float));
    if (!scratch) return LK_ERR(LK_ERR_NOMEM, "plan: cannot allocate PowerSGD's host scratch");
    const lk_host_view v = {grads + base, 0, 0, 1, scratch, np, scratch + np, 2 * h.q_n};
    lk_status st = LK_OK;
    TIMED(d, *ms, for (int phase = 0, last = 0; !last && st == LK_OK; phase++)
                      st = lk_powersgd_host_phase(s, k0, k1, &h, phase, &v, &last));
    lk_free(scratch);
    return st;
}

lk_status lk_plan_measure_options(lk_model *m, const lk_optim *opt, const size_t *begin, const size_t *end,
                                  int nbk, int psgd_rank, lk_plan_measure *pm)
{
    lk_device *d = m->dev;
    pm->psgd_rank = psgd_rank;
    pm->state_bytes = ((double)m->nparams * (1 + lk_optim_state_count(opt->cfg.kind)) + (double)m->nbuffers) * 4.0;
    size_t most = 1;
    for (int k = 0; k < nbk; k++) most = LK_MAX(most, end[k] - begin[k]);
    lk_powersgd *s = NULL;
    uint16_t *wire = lk_dev_alloc(d, most * sizeof(uint16_t));
    lk_status st = wire ? lk_powersgd_create(&s, m, 0, m->nparams, psgd_rank, 1, 2)
                        : LK_ERR(LK_ERR_NOMEM, "plan: cannot allocate a 16-bit wire of %zu values", most);
    int k0 = 0;
    for (int k = 0; k < nbk && st == LK_OK; k++) {
        float *g = m->grads + begin[k];
        const size_t n = end[k] - begin[k];
        TIMED(d, pm->pack16_ms[k], st = lk_pack16(d, LK_F16, g, 0.5f, wire, n);
              if (st == LK_OK) st = lk_unpack16(d, LK_F16, wire, 2.0f, g, n));
        int k1 = k0;
        while (k1 < s->nmat && s->mat[k1].offset < end[k]) k1++;
        size_t at, p, q, in_matrices = 0;
        lk_powersgd_range(s, 0, k0, k1, &at, &p);
        lk_powersgd_range(s, 1, k0, k1, &at, &q);
        for (int j = k0; j < k1; j++) in_matrices += (size_t)s->mat[j].n * (size_t)s->mat[j].m;
        pm->psgd_bytes[k][0] = (double)(n - in_matrices) * 4.0; /* (alignment gaps counted: a few floats) */
        pm->psgd_bytes[k][1] = (double)p * 4.0, pm->psgd_bytes[k][2] = (double)q * 4.0;
        pm->psgd_ms[k] = 0.0;
        if (k1 > k0)
            TIMED(d, pm->psgd_ms[k], st = lk_powersgd_project(s, m->grads, k0, k1);
                  if (st == LK_OK) st = lk_powersgd_back(s, m->grads, k0, k1);
                  if (st == LK_OK) st = lk_powersgd_expand(s, m->grads, k0, k1));
        pm->psgd_host_ms[k] = 0.0;
        if (k1 > k0 && st == LK_OK && d->host_addressable)
            st = time_host(s, k0, k1, m->grads, begin[k], d, &pm->psgd_host_ms[k]);
        k0 = k1;
    }
    if (st == LK_OK) st = lk_device_status(d);
    lk_powersgd_destroy(s);
    lk_dev_free(d, wire);
    return st;
}

#define LK_PLAN_MARGIN 1.10

void lk_plan_print_options(const lk_plan_measure *pm, int n, double alpha, double beta, double cpu_share,
                           double comm_rate, long local_steps, int shm16, FILE *out)
{
    lk_plan_measure *v = lk_malloc(sizeof *v);
    if (!v) return;
    const long K = local_steps > 0 ? local_steps : 8;
    enum { NONE, WIRE16, PSGD, LOCAL, NOPT };
    char name[NOPT][48];
    double bytes[NOPT] = {0}, step[NOPT], extra[NOPT] = {0};
    snprintf(name[NONE], sizeof name[NONE], "none (float32)");
    snprintf(name[WIRE16], sizeof name[WIRE16], shm16 ? "bf16, fp16 (in shared memory)" : "bf16, fp16");
    snprintf(name[PSGD], sizeof name[PSGD], "powersgd:%d", pm->psgd_rank);
    snprintf(name[LOCAL], sizeof name[LOCAL], "--local-steps %ld", K);
    for (int o = NONE; o <= PSGD; o++) {
        *v = *pm;
        for (int k = 0; k < v->nbuckets; k++) {
            const int wire = o == WIRE16 && !shm16; /* (in shared memory: float32's pass) */
            const int host = o == PSGD && shm16 && pm->psgd_host_ms[k] > 0.0; /* (the host stages) */
            v->nphases[k] = o == NONE || (o == WIRE16 && !wire) || host ? 0 : wire ? 1 : 3;
            v->extra_ms[k] = wire   ? pm->pack16_ms[k]
                             : host ? pm->psgd_host_ms[k] / n
                             : o == PSGD ? pm->psgd_ms[k] : 0.0;
            if (wire) v->phase_bytes[k][0] = pm->bucket_bytes[k] / 2.0;
            for (int p = 0; p < 3 && o == PSGD && !host; p++) v->phase_bytes[k][p] = pm->psgd_bytes[k][p];
            for (int p = 0; p < (v->nphases[k] ? v->nphases[k] : 1); p++)
                bytes[o] += v->nphases[k] ? v->phase_bytes[k][p] : v->bucket_bytes[k];
            extra[o] += v->extra_ms[k];
        }
        step[o] = lk_plan_project(v, n, alpha, beta, cpu_share, comm_rate, 0.0).step_ms;
    }
    bytes[LOCAL] = pm->state_bytes / (double)K;
    step[LOCAL] = pm->fwd_ms + pm->bwd_ms + pm->opt_ms + lk_plan_allreduce_s(pm->state_bytes, n, alpha, beta, NULL) * 1e3 / (double)K;
    int best = NONE;
    for (int o = 0; o < NOPT; o++)
        if (step[o] < step[best]) best = o;
    fprintf(out, "# ways to send less on %d ranks (each step's bytes sent per rank's all-reduces; compression's own\n"
                 "# compute measured here; throughput only: PowerSGD and local SGD change what is trained)\n", n);
    fprintf(out, "# %-30s %12s %12s %10s %12s\n", "option", "MB/step", "compute_ms", "step_ms", "samples/s");
    for (int o = 0; o < NOPT; o++)
        fprintf(out, "  %-30s %12.3f %12.3f %10.3f %12.1f\n", name[o], bytes[o] / 1048576.0, extra[o], step[o],
                n * pm->batch / (step[o] * 1e-3));
    const double gain = step[NONE] / step[best];
    fprintf(out, "# fastest here: %s (%.2fx float32 buckets' samples/s)\n", name[best], gain);
    if (best == NONE || gain >= LK_PLAN_MARGIN)
        fprintf(out, "# to use here: %s\n", name[best]);
    else
        fprintf(out, "# to use here: none (float32): %s gains under %.0f%%, within the predictions' error, and "
                     "changes what is trained\n", name[best], (LK_PLAN_MARGIN - 1) * 100);
    lk_free(v);
}
