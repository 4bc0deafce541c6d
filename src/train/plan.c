/* plan.c - measure one rank's step and bucket timeline, then project N ranks. */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../comm/bucket.h"
#include "../core/ops.h"
#include "../data/dataset.h"
#include "memplan.h"
#include "replica.h"

double lk_plan_allreduce_s(double bytes, int n, double alpha, double beta, int *tree)
{
    if (tree) *tree = 0;
    if (n <= 1) return 0.0;
    double ring = 2.0 * (n - 1) * alpha + 2.0 * (n - 1) / n * bytes * beta;
    double hops = 2.0 * ceil(log2((double)n));
    double t = hops * (alpha + bytes * beta);
    if (t < ring) {
        if (tree) *tree = 1;
        return t;
    }
    return ring;
}

lk_plan_row lk_plan_project(const lk_plan_measure *m, int n, double alpha, double beta, double cpu_share,
                            double comm_rate, double step1_ms)
{
    lk_plan_row r;
    memset(&r, 0, sizeof r);
    r.ranks = n;
    /* from the start of backward: t wall time, w compute done (ms of backward alone) */
    const double W = m->bwd_ms, slowed = 1.0 - LK_MIN(LK_MAX(cpu_share, 0.0), 1.0);
    const double rate = LK_MIN(LK_MAX(comm_rate, 0.01), 1.0);
    double t = 0.0, w = 0.0;
    for (int i = 0; i < m->nbuckets && n > 1; i++) {
        if (w < m->ready_ms[i]) t += m->ready_ms[i] - w, w = m->ready_ms[i]; /* computing, nothing in flight */
        int tree = 0;
        double d = m->extra_ms[i]; /* ms of it alone: its all-reduces, and compression's compute */
        if (!m->nphases[i]) d += lk_plan_allreduce_s(m->bucket_bytes[i], n, alpha, beta, &tree) * 1e3;
        for (int p = 0; p < m->nphases[i]; p++) {
            int tr = 0;
            d += m->phase_bytes[i][p] > 0.0 ? lk_plan_allreduce_s(m->phase_bytes[i][p], n, alpha, beta, &tr) * 1e3 : 0.0;
            tree |= tr;
        }
        const double t_start = t;
        if (w < W) { /* beside backward: backward at `slowed`, the all-reduce at `rate` */
            const double tb = slowed > 0.0 ? (W - w) / slowed : INFINITY, tc = d / rate;
            if (tc <= tb) t += tc, w += tc * slowed, d = 0.0;
            else t += tb, w = W, d -= tb * rate;
        }
        t += d; /* the rest of it alone */
        r.comm_ms += t - t_start;
        r.tree_buckets += tree;
        r.ring_buckets += !tree;
    }
    if (w < W) t += W - w;
    r.exposed_ms = LK_MAX(0.0, t - W);
    r.hidden = r.comm_ms > 0.0 ? LK_MAX(0.0, 1.0 - r.exposed_ms / r.comm_ms) : NAN;
    r.step_ms = m->fwd_ms + m->bwd_ms + r.exposed_ms + m->opt_ms;
    r.samples_per_s = n * m->batch / (r.step_ms * 1e-3);
    r.efficiency = (step1_ms > 0.0 ? step1_ms : r.step_ms) / r.step_ms;
    return r;
}

/* least squares of the relative error: t_i ~ a + b s_i, weights 1/t_i^2 */
static void fit_line(const double *s, const double *t, int n, double *a, double *b)
{
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++) {
        const double w = 1.0 / (t[i] * t[i]);
        sw += w, sx += w * s[i], sy += w * t[i], sxx += w * s[i] * s[i], sxy += w * s[i] * t[i];
    }
    const double d = sw * sxx - sx * sx;
    *b = d != 0.0 ? (sw * sxy - sx * sy) / d : 0.0;
    *a = (sy - *b * sx) / sw;
    if (*b < 0.0) *b = 0.0, *a = sy / sw;
    if (*a < 0.0) { /* through the origin */
        *a = 0.0;
        *b = sxx > 0.0 ? sxy / sxx : 0.0;
    }
}

lk_status lk_plan_fit_csv(const char *path, double lo, double hi, double *alpha, double *beta, int *ranks)
{
    FILE *f = fopen(path, "r");
    if (!f) return LK_ERR(LK_ERR_IO, "--comm-csv %s: %s", path, strerror(errno));
    char line[512];
    enum { FIT_MAX = 64 };
    double size[FIT_MAX], t[FIT_MAX];
    int n = 0, world = 0;
    lk_status st = LK_OK;
    if (!fgets(line, sizeof line, f) || !strstr(line, "bytes,count,iters,time_us"))
        st = LK_ERR(LK_ERR_FORMAT, "--comm-csv %s: not a `lockstep bench comm --csv` file", path);
    while (st == LK_OK && fgets(line, sizeof line, f)) {
        double bytes, us, alg, bus;
        long count, iters, wrong;
        int w;
        if (sscanf(line, "%lf,%ld,%ld,%lf,%lf,%lf,%ld,%d", &bytes, &count, &iters, &us, &alg, &bus, &wrong, &w) != 8 ||
            !(us > 0)) {
            st = LK_ERR(LK_ERR_FORMAT, "--comm-csv %s: cannot read the row '%.60s'", path, line);
            break;
        }
        if (wrong) st = LK_ERR(LK_ERR_FORMAT, "--comm-csv %s: the sweep got %ld elements wrong at %.0f bytes",
                               path, wrong, bytes);
        else if (n == FIT_MAX) st = LK_ERR(LK_ERR_FORMAT, "--comm-csv %s: more than %d sizes", path, FIT_MAX);
        else world = w, size[n] = bytes, t[n++] = us * 1e-6;
    }
    fclose(f);
    LK_CHECK(st);
    if (n < 2 || world < 2)
        return LK_ERR(LK_ERR_FORMAT, "--comm-csv %s: needs at least 2 sizes measured on 2 or more ranks", path);
    int m = 0; /* the sizes in [lo, hi], where there are 2 */
    for (int i = 0; i < n; i++) m += size[i] >= lo && size[i] <= hi;
    if (m >= 2)
        for (int i = 0, k = 0; i < n; i++)
            if (size[i] >= lo && size[i] <= hi) size[k] = size[i], t[k++] = t[i];
    double icept, slope;
    fit_line(size, t, m >= 2 ? m : n, &icept, &slope);
    /* the ring: t = 2(w-1) alpha + 2(w-1)/w S beta */
    *alpha = icept / (2.0 * (world - 1));
    *beta = slope * world / (2.0 * (world - 1));
    *ranks = world;
    return LK_OK;
}

/* the bucketer's view of backward: when each layer's gradients became final (and, in
 * the steps that all-reduce beside backward, the buckets it feeds) */
typedef struct {
    double t0;
    int n;
    size_t ready[LK_PLAN_MAX_BUCKETS * 4];
    double at[LK_PLAN_MAX_BUCKETS * 4];
    lk_buckets *feed;
} timeline;

static void on_ready(void *user, size_t offset, size_t count)
{
    timeline *t = user;
    if (t->n < (int)(sizeof t->ready / sizeof *t->ready)) {
        t->ready[t->n] = offset + count;
        t->at[t->n++] = (lk_now() - t->t0) * 1e3;
    }
    if (t->feed) lk_buckets_grad_ready(t->feed, offset, count);
}

double lk_plan_comm_rate(double comm_beside_ms, double comm_alone_ms, double overlap_ms)
{
    if (!(overlap_ms > 1e-3)) return 1.0;
    /* comm_alone = rate x overlap + (comm_beside - overlap): the part beside backward went at rate */
    return LK_MIN(LK_MAX(1.0 - (comm_beside_ms - comm_alone_ms) / overlap_ms, 0.01), 1.0);
}

/* the ms of backward [t1, t2] during which one of the step's all-reduces was in flight
 * (they run one after another) */
static double overlap_ms(const lk_buckets *bs, double t1, double t2)
{
    double ms = 0.0;
    for (int k = 0; k < bs->n; k++) {
        const double a = LK_MAX(bs->b[k].t_start, t1), z = LK_MIN(bs->b[k].t_done, t2);
        if (z > a) ms += (z - a) * 1e3;
    }
    return ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static lk_status measure(const lk_plan_opts *o, lk_plan_measure *pm, char *desc, size_t desc_size)
{
    const lk_train_opts *t = &o->train;
    lk_dataset d;
    memset(&d, 0, sizeof d);
    lk_replica r;
    memset(&r, 0, sizeof r);
    lk_optim *opt = NULL;
    timeline *tl = lk_calloc(1, sizeof *tl);
    const int K = o->steps, W = 3;
    lk_comm *together = o->comm && o->comm->world > 1 ? o->comm : NULL; /* ranks measuring at once */
    double *f = lk_calloc((size_t)K, sizeof *f), *b = lk_calloc((size_t)K, sizeof *b),
           *u = lk_calloc((size_t)K, sizeof *u), *ready = lk_calloc((size_t)K * LK_PLAN_MAX_BUCKETS, sizeof *ready),
           *bb = lk_calloc((size_t)K, sizeof *bb), *ov = lk_calloc((size_t)K, sizeof *ov),
           *cb = lk_calloc((size_t)K, sizeof *cb), *ca = lk_calloc((size_t)K, sizeof *ca);
    lk_bucket *bk = NULL;
    int nbk = 0;
    lk_buckets *feed = NULL;
    lk_status st = tl && f && b && u && ready && bb && ov && cb && ca ? LK_OK : LK_ERR(LK_ERR_NOMEM, "plan: out of memory");
    lk_arch arch;
    if (st == LK_OK) st = lk_spec_arch(t->spec, &t->arch, &arch);
    if (st == LK_OK) st = lk_data_open(t->data, "train", arch.ctx, &d);
    if (st == LK_OK && d.n < t->batch) st = LK_ERR(LK_ERR_ARG, "plan: %s has %d samples, fewer than --batch %d", t->data, d.n, t->batch);
    if (st == LK_OK)
        st = lk_replica_open(&r, &(lk_replica_spec){"cpu", t->threads > 0 ? t->threads : 1, t->spec, t->arch,
                                                    d.sample, d.nclasses, lk_dataset_ylen(&d), t->batch,
                                                    t->init, t->seed, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL,
                                                    (lk_dtype)t->precision, t->stochastic_round, 0});
    if (st == LK_OK && r.zoo->target == LK_TARGET_REAL)
        st = LK_ERR(LK_ERR_ARG, "plan: the gan's alternating steps are not modelled; plan a single network");
    if (st == LK_OK) st = lk_optim_create(&opt, r.dev, &t->optim, r.model->nparams);
    if (st == LK_OK) lk_optim_set_working(opt, r.model->params16, &r.model->round);
    lk_model *m = r.model;
    if (st == LK_OK) {
        const int cap = lk_buckets_cap(m);
        bk = lk_calloc((size_t)cap, sizeof *bk);
        if (!bk) st = LK_ERR(LK_ERR_NOMEM, "plan: out of memory");
        else nbk = lk_buckets_plan(m, (size_t)(t->bucket_mb * 1048576.0), 0, m->nparams, bk, cap);
        if (nbk > LK_PLAN_MAX_BUCKETS) { /* the last one modelled takes the rest */
            bk[LK_PLAN_MAX_BUCKETS - 1].end = bk[nbk - 1].end;
            nbk = LK_PLAN_MAX_BUCKETS;
        }
        pm->nbuckets = nbk;
        m->on_grad_ready = on_ready;
        m->grad_ready_user = tl;
    }
    /* --shared-cores with ranks measuring together: each step alone is followed by one whose
     * buckets all-reduce over the job's communicator beside backward, as training's do, and
     * one whose buckets all-reduce after backward, alone (the three kinds interleaved, so
     * that the machine's drift is the same in all) */
    const int beside = o->shared_cores && together, kinds = beside ? 3 : 1;
    if (st == LK_OK && beside) {
        st = lk_comm_use_device(together, r.dev, m->nparams * sizeof(float));
        if (st == LK_OK)
            st = lk_buckets_create(&feed, together, m, (size_t)(t->bucket_mb * 1048576.0), LK_PROGRESS_AUTO);
        m->on_grad_ready = on_ready; /* the buckets hooked themselves: the timeline feeds them */
        m->grad_ready_user = tl;
    }
    for (int s = 0; st == LK_OK && s < (W + K) * kinds; s++) {
        const int kind = s % kinds, step = s / kinds, with = kind == 1; /* with: all-reduces beside */
        if (together) st = lk_comm_barrier(together); /* the ranks' steps at once */
        if (st != LK_OK) break;
        double t0 = lk_now(); /* the step as training times it: from loading its batch, scattered as
                               * the sampler's shuffle leaves it */
        const long long stride = d.n % 7919 ? 7919 : 1;
        for (int i = 0; i < t->batch; i++) r.idx[i] = (int)(((long long)step * t->batch + i) * stride % d.n);
        lk_replica_load_batch(&r, &d, r.idx, t->batch);
        lk_tensor out;
        st = lk_model_forward(m, t->batch, 1, step, &out);
        if (st == LK_OK) st = lk_replica_loss(&r, &out, t->batch, 1, 1.0f, 0);
        lk_sync(r.dev);
        double t1 = lk_now();
        tl->n = 0;
        tl->t0 = t1;
        tl->feed = with ? feed : NULL;
        if (feed) lk_buckets_begin(feed, 1, with);
        if (st == LK_OK) st = lk_model_backward_ex(m, t->batch, step, LK_GRADS_REPLACE);
        double t2 = lk_now();
        if (feed) {
            lk_status fs = lk_buckets_finish(feed);
            if (st == LK_OK) st = fs;
        }
        double ta = lk_now();
        for (int k = 0; k < pm->nbuckets && kind == 2 && st == LK_OK; k++) /* after backward, alone */
            st = lk_comm_allreduce(together, m->grads + bk[k].begin, bk[k].end - bk[k].begin, LK_REDUCE_SUM);
        const double after_ms = (lk_now() - ta) * 1e3;
        const float scale = kind ? 1.0f / (float)together->world : 1.0f; /* summed over the ranks */
        if (st == LK_OK) st = lk_optim_step(opt, m->params, m->grads, scale);
        lk_sync(r.dev);
        double t3 = lk_now();
        if (step < W || st != LK_OK) continue;
        if (kind == 2) {
            ca[step - W] = after_ms;
            continue;
        }
        if (with) {
            bb[step - W] = (t2 - t1) * 1e3, ov[step - W] = overlap_ms(feed, t1, t2);
            for (int k = 0; k < feed->n; k++) cb[step - W] += (feed->b[k].t_done - feed->b[k].t_start) * 1e3;
            continue;
        }
        f[step - W] = (t1 - t0) * 1e3, b[step - W] = (t2 - t1) * 1e3, u[step - W] = (t3 - t2) * 1e3;
        for (int k = 0; k < pm->nbuckets; k++) { /* the first callback that completes bucket k */
            double at = b[step - W];
            for (int e = 0; e < tl->n; e++)
                if (tl->ready[e] >= bk[k].end) {
                    at = tl->at[e];
                    break;
                }
            ready[(size_t)k * K + (step - W)] = at;
        }
    }
    if (st == LK_OK && together) { /* a step waits for the slowest rank */
        st = lk_comm_allreduce_f64(together, f, K, LK_REDUCE_MAX);
        if (st == LK_OK) st = lk_comm_allreduce_f64(together, b, K, LK_REDUCE_MAX);
        if (st == LK_OK) st = lk_comm_allreduce_f64(together, u, K, LK_REDUCE_MAX);
        if (st == LK_OK && pm->nbuckets)
            st = lk_comm_allreduce_f64(together, ready, K * pm->nbuckets, LK_REDUCE_MAX);
        if (st == LK_OK && beside) st = lk_comm_allreduce_f64(together, bb, K, LK_REDUCE_MAX);
        if (st == LK_OK && beside) st = lk_comm_allreduce_f64(together, ov, K, LK_REDUCE_MAX);
        if (st == LK_OK && beside) st = lk_comm_allreduce_f64(together, cb, K, LK_REDUCE_MAX);
        if (st == LK_OK && beside) st = lk_comm_allreduce_f64(together, ca, K, LK_REDUCE_MAX);
    }
    if (st == LK_OK) {
        size_t *be = lk_calloc((size_t)LK_MAX(pm->nbuckets, 1) * 2, sizeof *be);
        for (int k = 0; be && k < pm->nbuckets; k++) be[k] = bk[k].begin, be[pm->nbuckets + k] = bk[k].end;
        st = be ? lk_plan_measure_options(m, opt, be, be + pm->nbuckets, pm->nbuckets,
                                          t->powersgd_rank > 0 ? t->powersgd_rank : 4, pm)
                : LK_ERR(LK_ERR_NOMEM, "plan: out of memory");
        lk_free(be);
    }
    if (st == LK_OK && together) /* the slowest rank's arithmetic */
        st = lk_comm_allreduce_f64(together, pm->psgd_ms, pm->nbuckets, LK_REDUCE_MAX);
    if (st == LK_OK && together) st = lk_comm_allreduce_f64(together, pm->pack16_ms, pm->nbuckets, LK_REDUCE_MAX);
    if (st == LK_OK) {
        pm->fwd_ms = median(f, K), pm->bwd_ms = median(b, K), pm->opt_ms = median(u, K);
        if (beside) {
            pm->bwd_beside_ms = median(bb, K), pm->overlap_ms = median(ov, K), pm->comm_beside_ms = median(cb, K);
            pm->comm_after_ms = median(ca, K);
        }
        pm->batch = t->batch;
        for (int k = 0; k < pm->nbuckets; k++) {
            pm->bucket_bytes[k] = (double)(bk[k].end - bk[k].begin) * sizeof(float);
            pm->ready_ms[k] = median(ready + (size_t)k * K, K);
        }
        snprintf(desc, desc_size, "%s, batch %d per rank, %s (%d thread%s), %.2f MB of gradients in %d bucket%s of <= %g MB",
                 t->model, t->batch, r.dev->name, r.dev->threads, r.dev->threads == 1 ? "" : "s",
                 m->nparams * 4.0 / 1048576.0, pm->nbuckets, pm->nbuckets == 1 ? "" : "s", t->bucket_mb);
        if (together) {
            size_t len = strlen(desc);
            snprintf(desc + len, desc_size - len, "; %d ranks measuring at once, each step the slowest's",
                     together->world);
        }
    }
    lk_buckets_destroy(feed);
    if (beside) lk_comm_use_device(together, NULL, 0);
    lk_free(bk);
    lk_free(tl), lk_free(f), lk_free(b), lk_free(u), lk_free(ready), lk_free(bb), lk_free(ov), lk_free(cb), lk_free(ca);
    lk_optim_destroy(opt);
    lk_replica_free(&r);
    lk_dataset_free(&d);
    return st;
}

/* fn with o's model opened (where the caller has not: o->train.spec NULL) */
static lk_status with_spec(const lk_plan_opts *o, FILE *out, lk_status (*fn)(const lk_plan_opts *, FILE *))
{
    if (o->train.spec) return fn(o, out);
    lk_plan_opts p = *o;
    lk_spec *s;
    LK_CHECK(lk_train_open_spec(&o->train, &s));
    p.train.spec = s;
    p.train.model = lk_spec_name(s);
    lk_status st = fn(&p, out);
    lk_spec_free(s);
    return st;
}

static lk_status plan_memory(const lk_plan_opts *o, FILE *out);
static lk_status plan_time(const lk_plan_opts *o, FILE *out);
lk_status lk_plan(const lk_plan_opts *o, FILE *out) { return with_spec(o, out, plan_time); }
lk_status lk_plan_memory(const lk_plan_opts *o, FILE *out) { return with_spec(o, out, plan_memory); }

static lk_status plan_time(const lk_plan_opts *o, FILE *out)
{
    if (o->ranks < 1 || o->ranks > 1 << 20) return LK_ERR(LK_ERR_ARG, "--ranks must be 1..2^20 (got %d)", o->ranks);
    if (!(o->link_gbps > 0) || !(o->latency_us >= 0)) return LK_ERR(LK_ERR_ARG, "--link-gbps > 0 and --latency-us >= 0");
    if (o->steps < 1) return LK_ERR(LK_ERR_ARG, "--steps must be at least 1");
    double alpha = o->latency_us * 1e-6, beta = 8.0 / (o->link_gbps * 1e9);
    int fitted = 0;
    const int together = o->comm && o->comm->world > 1;
    if (o->shared_cores && !together && !o->comm_csv)
        return LK_ERR(LK_ERR_ARG, "--shared-cores on one rank needs --comm-csv (the sweep's time beyond the "
                                  "link's is the cores'), or run plan under mpirun to measure it");
    if (o->comm_csv) LK_CHECK(lk_plan_fit_csv(o->comm_csv, 0.0, INFINITY, &alpha, &beta, &fitted)); /* readable? */
    lk_plan_measure pm;
    memset(&pm, 0, sizeof pm);
    char desc[400];
    LK_CHECK(measure(o, &pm, desc, sizeof desc));
    if (o->comm && o->comm->rank != 0) return LK_OK;
    double lo = 0.0, hi = 0.0; /* the sweep's sizes from a quarter of the smallest bucket to 4x the largest */
    for (int k = 0; k < pm.nbuckets; k++) {
        lo = k == 0 ? pm.bucket_bytes[k] : LK_MIN(lo, pm.bucket_bytes[k]);
        hi = LK_MAX(hi, pm.bucket_bytes[k]);
    }
    if (o->comm_csv) LK_CHECK(lk_plan_fit_csv(o->comm_csv, lo / 4, hi * 4, &alpha, &beta, &fitted));
    /* shared cores: measured, the all-reduces beside backward run slower than alone (the
     * compute keeps the cores, the comm thread waits for one); on one rank, estimated, the
     * part of their fitted time the wire does not explain is the cores', taken from backward */
    const double wire = 8.0 / (o->link_gbps * 1e9);
    const int beside = o->shared_cores && together; /* what measure() saw it measure */
    const double share = o->shared_cores && !beside ? LK_MAX(0.0, 1.0 - wire / beta) : 0.0;
    double model_ms = 0.0; /* the measured steps' all-reduces as the model has them */
    for (int k = 0; k < pm.nbuckets && beside; k++)
        model_ms += lk_plan_allreduce_s(pm.bucket_bytes[k], o->comm->world, alpha, beta, NULL) * 1e3;
    const double rate = beside ? lk_plan_comm_rate(pm.comm_beside_ms, pm.comm_after_ms, pm.overlap_ms) : 1.0;
    /* the level of the job's all-reduces in a step is what the measured steps saw (the
     * sweep's back-to-back ones, on a quiet machine, are not a step's); the sweep gives
     * the rest, how they grow with size and ranks */
    const double scale = beside && model_ms > 0.0 && pm.comm_after_ms > 0.0 ? pm.comm_after_ms / model_ms : 1.0;
    fprintf(out, "# lockstep plan: %s\n", desc);
    fprintf(out, "# measured (median of %d steps): forward (from loading the batch) %.3f ms, backward %.3f ms, "
                 "optimizer %.3f ms\n",
            o->steps, pm.fwd_ms, pm.bwd_ms, pm.opt_ms);
    for (int k = 0; k < pm.nbuckets; k++)
        fprintf(out, "#   bucket %d: %.3f MB, final %.3f ms into backward\n", k, pm.bucket_bytes[k] / 1048576.0,
                pm.ready_ms[k]);
    if (fitted)
        fprintf(out, "# all-reduce: alpha %.2f us a hop, %.3f GB/s a link, fitted to %s (%d ranks; sizes %.0f KB to "
                     "%.0f KB)\n", alpha * 1e6, 1e-9 / beta, o->comm_csv, fitted, lo / 4 / 1024, hi * 4 / 1024);
    else
        fprintf(out, "# all-reduce: alpha %.2f us a hop, %.3f GB/s a link (%g Gbit/s)\n", alpha * 1e6, 1e-9 / beta,
                o->link_gbps);
    if (beside)
        fprintf(out, "# shared cores: measured, the job's all-reduces took %.3f ms a step after backward, where the "
                     "model has %.3f ms: its times x %.3f; %.3f ms beside backward (%.3f ms of it during backward): "
                     "beside backward they run at %.0f%% (backward took %.3f ms beside them, %.3f ms alone)\n",
                pm.comm_after_ms, model_ms, scale, pm.comm_beside_ms, pm.overlap_ms, 100 * rate, pm.bwd_beside_ms,
                pm.bwd_ms);
    else if (o->shared_cores)
        fprintf(out, "# shared cores: %.0f%% of each all-reduce is work of the computing cores (beyond the %g Gbit/s "
                     "wire's %.3f GB/s): backward beside it runs at %.0f%%\n",
                100 * share, o->link_gbps, 1e-9 / wire, 100 * (1 - share));
    fprintf(out, "# %6s %10s %10s %11s %7s %12s %10s  %s\n", "ranks", "step_ms", "comm_ms", "exposed_ms", "hidden",
            "samples/s", "efficiency", "buckets ring/tree");
    alpha *= scale, beta *= scale;
    lk_plan_row one = lk_plan_project(&pm, 1, alpha, beta, share, rate, 0.0);
    for (int n = 1;; n = n * 2 > o->ranks && n < o->ranks ? o->ranks : n * 2) {
        lk_plan_row r = lk_plan_project(&pm, n, alpha, beta, share, rate, one.step_ms);
        char hid[16] = "-";
        if (!isnan(r.hidden)) snprintf(hid, sizeof hid, "%.3f", r.hidden);
        fprintf(out, "  %6d %10.3f %10.3f %11.3f %7s %12.1f %10.3f  %d/%d\n", n, r.step_ms, r.comm_ms, r.exposed_ms,
                hid, r.samples_per_s, r.efficiency, r.ring_buckets, r.tree_buckets);
        if (n >= o->ranks) break;
    }
    /* measured on one host with every projected rank on it: 16-bit sums in shared memory */
    const int shm16 = together && o->train.shm && o->comm->local_world == o->comm->world &&
                      o->ranks <= o->comm->world;
    if (o->ranks > 1)
        lk_plan_print_options(&pm, o->ranks, alpha, beta, share, rate, o->train.local_steps, shm16, out);
    return LK_OK;
}

static lk_status plan_memory(const lk_plan_opts *o, FILE *out)
{
    const lk_train_opts *t = &o->train;
    if (o->ranks < 1 || o->ranks > 1 << 20) return LK_ERR(LK_ERR_ARG, "--ranks must be 1..2^20 (got %d)", o->ranks);
    const double runtime = lk_mem_rss(); /* this process stands for a rank's libraries */
    lk_arch arch;
    LK_CHECK(lk_spec_arch(t->spec, &t->arch, &arch));
    lk_dataset d[2];
    memset(d, 0, sizeof d);
    lk_device *dev = NULL;
    lk_status st = lk_data_open(t->data, "train", arch.ctx, &d[0]);
    if (st == LK_OK) st = lk_data_open(t->data, "test", arch.ctx, &d[1]);
    const double data = lk_mem_rss() - runtime;
    if (st == LK_OK) st = lk_device_open(&dev, t->device, t->threads);
    lk_mem_plan p;
    if (st == LK_OK) {
        const lk_mem_inputs in = {t->spec, &t->arch, d[0].sample, d[0].nclasses, t->batch,
                                  (lk_recompute)t->recompute, (lk_dtype)t->precision, t->optim.kind,
                                  t->zero, o->ranks, 0, o->ranks, (size_t)(t->bucket_mb * 1048576.0),
                                  t->shm && t->comm_progress != LK_PROGRESS_LAYERS && !t->sync_bn,
                                  lk_mem_data_bytes(&d[0], data, t->batch),
                                  LK_MAX(0.0, lk_mem_rss() - data), 0.0, LK_F32, 0};
        st = lk_mem_plan_make(&in, dev, &p);
    }
    if (st == LK_OK) {
        fprintf(out, "# model %s, batch %d a rank, %s, %d rank%s on this host, --zero %d, --recompute %s, "
                     "--precision %s%s\n",
                t->model, t->batch, lk_optim_name(t->optim.kind), o->ranks, o->ranks == 1 ? "" : "s", t->zero,
                lk_recompute_name((lk_recompute)t->recompute), lk_dtype_name((lk_dtype)t->precision),
                t->shm ? "" : ", --shm off");
        lk_mem_plan_print(&p, out);
    }
    lk_device_close(dev);
    lk_dataset_free(&d[0]);
    lk_dataset_free(&d[1]);
    return st;
}
