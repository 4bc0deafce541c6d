/* trainer.c - the training loop. Everything it needs is allocated before the
 * first step; a step is gather -> copy -> forward -> loss -> backward -> update. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "../models/zoo.h"
#include "ckptdir.h"
#include "dist.h"
#include "run.h"

lk_train_opts lk_train_defaults(void)
{
    lk_train_opts o;
    memset(&o, 0, sizeof o);
    o.data = "fashion-mnist";
    o.epochs = 1;
    o.batch = 64;
    o.optim = lk_optim_defaults(LK_OPT_MOMENTUM);
    o.init = LK_INIT_DEFAULT;
    o.device = "auto";
    o.log_every = 50;
    o.progress = -1;
    o.accum = 1;
    o.bucket_mb = 1.0;
    o.comm_progress = LK_PROGRESS_AUTO;
    o.shm = 1;
    o.comm_timeout = LK_COMM_TIMEOUT_S;
    o.check_every = 100;
    o.max_skips = 10;
    o.bind = 1;
    return o;
}

/* Mean loss and accuracy over the whole of d, in eval mode: each rank evaluates
 * its own contiguous shard and the sums are added up over the ranks. */
static lk_status evaluate(lk_replica *r, lk_gan *gan, lk_comm *c, const lk_dataset *d, double *loss,
                          double *acc)
{
    double sums[3] = {0.0, 0.0, 0.0}; /* loss * n, correct (per label), n */
    int lo = (int)((long)d->n * c->rank / c->world), hi = (int)((long)d->n * (c->rank + 1) / c->world);
    lk_dataset shard = lk_dataset_view(d, lo, hi);
    if (gan) { /* the discriminator's loss (real + generated) and how often it is right */
        LK_CHECK(lk_gan_eval(gan, &shard, lo, &sums[0], &sums[1], &sums[2]));
        LK_CHECK(lk_comm_allreduce_f64(c, sums, 3, LK_REDUCE_SUM));
        *loss = sums[0] / (sums[2] / 2.0);
        *acc = sums[1] / sums[2];
        return LK_OK;
    }
    const int classifies = lk_replica_classifies(r);
    for (int start = 0, n = 0; start < shard.n; start += n) {
        lk_tensor out;
        LK_CHECK(lk_replica_infer(r, &shard, start, &n, &out));
        LK_CHECK(lk_replica_loss(r, &out, n, 0, 1.0f, 1));
        float v[2] = {0.0f, 0.0f};
        lk_copy_to_host(r->dev, v, r->scalars, (classifies ? 2 : 1) * sizeof(float));
        LK_CHECK(lk_device_status(r->dev));
        LK_CHECK(lk_comm_status(c));
        sums[0] += (double)v[0] * n;
        sums[1] += v[1] / r->ylen;
        sums[2] += n;
    }
    LK_CHECK(lk_comm_allreduce_f64(c, sums, 3, LK_REDUCE_SUM));
    *loss = sums[0] / sums[2];
    *acc = classifies ? sums[1] / sums[2] : NAN;
    return LK_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static lk_status inject_fault(run_state *s)
{
    if (s->fault.step != s->step || s->fault.rank != s->comm->rank) return LK_OK;
    if (!strcmp(s->fault.kind, "savekill") || !strcmp(s->fault.kind, "nan")) return LK_OK; /* (elsewhere) */
    lk_fault_fired(s);
    if (!strcmp(s->fault.kind, "kill")) raise(SIGKILL);
    if (!strcmp(s->fault.kind, "stall")) /* alive but never arriving */
        for (;;) pause();
    if (!strcmp(s->fault.kind, "error"))
        return LK_ERR(LK_ERR_STATE, "injected fault after step %ld (LK_INJECT_FAULT)", s->step);
    if (!strcmp(s->fault.kind, "diverge")) return lk_scale(s->r.dev, s->r.model->params, 1.0001f, 1);
    return LK_OK;
}

/* The step check (guard.h), on the device: the sum of squares of what this rank steps on
 * (as the buckets added it up where they could) and its loss; LK_INJECT_FAULT=nan puts a
 * NaN into this rank's gradient first. */
static lk_status check_step(run_state *s, double samples)
{
    const float *g;
    size_t n;
    lk_zero_step_grads(s->zero, &g, &n);
    int injected = 0;
    if (!strcmp(s->fault.kind, "nan") && s->fault.step == s->step + 1 && s->fault.rank == s->comm->rank && n) {
        lk_fault_fired(s);
        LK_CHECK(lk_scale(s->r.dev, (float *)g, NAN, 1)); /* (the flat buffer's first: the last layer's) */
        injected = 1;
    }
    double ss = 0.0;
    const int have = !injected && s->buckets && lk_buckets_sumsq(s->buckets, &ss);
    return lk_guard_check(&s->guard, s->comm, g, n, have ? &ss : NULL, &s->r.scalars[2], samples, s->step);
}

/* --grad-compress powersgd: plain all-reduces before --compress-start, compressed after */
static void compress_from_start(run_state *s)
{
    lk_buckets *sets[2];
    lk_run_bucket_sets(s, sets);
    for (int k = 0; k < 2; k++)
        if (sets[k]) lk_buckets_compress(sets[k], s->step >= s->opts->compress_start);
}

/* One optimizer step: `accum` micro-batches starting at sampler step `first`, the
 * gradients of the last one all-reduced bucket by bucket during its backward.
 * Each micro-batch's loss is scaled so that the summed gradient is the mean over
 * every sample of the step, whatever the (tail) batch sizes per rank: each sample's
 * gradient is 1/(the step's samples) of its loss's, as one rank with the whole batch
 * would compute it (the same values for a bf16 product to round), and the ranks' sum
 * is the step's gradient. */
static lk_status train_step(run_state *s, int first, int count, double *samples)
{
    compress_from_start(s);
    lk_model *m = s->r.model;
    double group = 0.0;
    for (int i = 0; i < count; i++) group += lk_sampler_global_count(&s->sampler, first + i);
    if (s->fed.on && !s->fed.fedavg) group = (double)lk_fed_group(&s->fed, s->step); /* (every client's batch) */
    long before = 0; /* samples of the step's earlier micro-batches, over all ranks */
    double local = 0.0; /* this rank's samples of the step */
    /* (the log's loss sum before the step: a dropped step leaves it so) */
    LK_CHECK(lk_guard_begin(&s->guard, &s->r.scalars[2], s->step));
    for (int i = 0; i < count; i++) {
        int n = lk_sampler_batch(&s->sampler, first + i, s->r.idx);
        m->sample_base = before + lk_sampler_first(&s->sampler, first + i) + (long)s->fed.rank * s->opts->batch;
        before += lk_sampler_global_count(&s->sampler, first + i);
        lk_replica_load_batch(&s->r, &s->train, s->r.idx, n);
        lk_tensor out;
        lk_comm_doing(s->comm, s->step, LK_DOING_FORWARD);
        LK_CHECK(lk_model_forward(m, n, 1, s->step, &out));
        LK_CHECK(lk_replica_loss(&s->r, &out, n, 1, (float)(n / group), 0));
        local += n;
        LK_CHECK(lk_axpy(s->r.dev, (float)n, &s->r.scalars[0], &s->r.scalars[2], 1));
        if (s->buckets) lk_buckets_begin(s->buckets, i == 0, i + 1 == count && !lk_averager_local(&s->avg, s->step));
        lk_comm_doing(s->comm, s->step, LK_DOING_BACKWARD);
        LK_CHECK(lk_model_backward_ex(m, n, s->step, i == 0 ? LK_GRADS_REPLACE : LK_GRADS_ADD));
        lk_comm_doing(s->comm, s->step, LK_DOING_REDUCE);
        if (s->buckets) LK_CHECK(lk_buckets_finish(s->buckets));
    }
    lk_comm_doing(s->comm, s->step, LK_DOING_CHECK);
    LK_CHECK(check_step(s, local));
    lk_comm_doing(s->comm, s->step, LK_DOING_UPDATE);
    /* (a step the check dropped changes nothing here but the counters) */
    LK_CHECK(lk_zero_step(s->zero, s->opt, lk_averager_grad_scale(&s->avg, s->step), 0, m->nparams, 1));
    *samples += local;
    s->step++;
    if (s->guard.every_step) LK_CHECK(lk_guard_read(&s->guard, m, s->step));
    return inject_fault(s);
}

/* A federated client not sampled for this round (fedavg.h): no batch, no update; it takes part
 * in the step check's agreement (with nothing to add) and its optimizer's count moves on. */
static lk_status idle_step(run_state *s)
{
    LK_CHECK(lk_guard_begin(&s->guard, &s->r.scalars[2], s->step));
    LK_CHECK(lk_guard_check(&s->guard, s->comm, s->r.model->grads, 0, NULL, &s->r.scalars[2], 0.0, s->step));
    s->opt->step++;
    s->step++;
    if (s->guard.every_step) LK_CHECK(lk_guard_read(&s->guard, s->r.model, s->step));
    return LK_OK;
}

/* A DP-SGD step (dpsgd.h): its chunks' per-sample norms, then their clipped gradients through
 * the buckets, the step's noise on the reduced sum, the check and the update. */
static lk_status dp_train_step(run_state *s, int first, int count, double *samples)
{
    lk_dp *dp = &s->dp;
    lk_model *m = s->r.model;
    long global;
    LK_CHECK(lk_dp_plan_step(dp, &s->sampler, first, count, s->step, s->opts->seed, s->train.n, m->max_batch,
                             &global));
    LK_CHECK(lk_guard_begin(&s->guard, &s->r.scalars[2], s->step));
    lk_comm_doing(s->comm, s->step, LK_DOING_FORWARD);
    for (int k = 0; k < dp->nchunks; k++) LK_CHECK(lk_dp_norms(dp, &s->r, &s->train, k, s->step));
    double local = 0.0;
    for (int k = 0; k < dp->nchunks; k++) {
        const lk_dp_chunk *c = &dp->chunks[k];
        if (s->buckets) lk_buckets_begin(s->buckets, k == 0, k + 1 == dp->nchunks);
        lk_comm_doing(s->comm, s->step, LK_DOING_BACKWARD);
        LK_CHECK(lk_dp_clipped_backward(dp, &s->r, &s->train, k, s->step, k == 0 ? LK_GRADS_REPLACE : LK_GRADS_ADD));
        if (!c->dummy) {
            local += c->n;
            LK_CHECK(lk_axpy(s->r.dev, (float)c->n, &s->r.scalars[0], &s->r.scalars[2], 1));
        }
        lk_comm_doing(s->comm, s->step, LK_DOING_REDUCE);
        if (s->buckets) LK_CHECK(lk_buckets_finish(s->buckets));
    }
    const float *g;
    size_t n;
    lk_zero_step_grads(s->zero, &g, &n);
    const size_t g_lo = (size_t)(g - m->grads);
    LK_CHECK(lk_dp_add_noise(dp, m, (float *)g, g_lo, g_lo + n, s->step, s->opts->seed));
    lk_comm_doing(s->comm, s->step, LK_DOING_CHECK);
    LK_CHECK(check_step(s, local));
    lk_comm_doing(s->comm, s->step, LK_DOING_UPDATE);
    LK_CHECK(lk_zero_step(s->zero, s->opt, 1.0f, 0, m->nparams, 1));
    lk_dp_stepped(dp);
    *samples += local;
    s->step++;
    if (s->guard.every_step) LK_CHECK(lk_guard_read(&s->guard, m, s->step));
    return inject_fault(s);
}

/* A GAN's iteration on sampler step i: the discriminator's step, then the generator's. */
static lk_status gan_train_step(run_state *s, int i, double *samples)
{
    int n = lk_sampler_batch(&s->sampler, i, s->r.idx);
    lk_gan_batch b = {s->r.idx, n, lk_sampler_first(&s->sampler, i),
                      (float)n / (float)lk_sampler_global_count(&s->sampler, i),
                      lk_averager_grad_scale(&s->avg, s->step), s->step, lk_averager_local(&s->avg, s->step)};
    compress_from_start(s);
    if (!strcmp(s->fault.kind, "nan") && s->fault.step == s->step + 1 && s->fault.rank == s->comm->rank) {
        lk_fault_fired(s);
        s->gan.nan_at = s->step + 1; /* (into the discriminator's gradient) */
    }
    LK_CHECK(lk_gan_step(&s->gan, s->opt, &s->train, &b));
    *samples += n;
    s->step++;
    if (s->guard.every_step) LK_CHECK(lk_guard_read(&s->guard, s->r.model, s->step));
    return inject_fault(s);
}

/* the GPU's memory in use, at its highest so far (nothing is allocated inside a step, so
 * after one it stays put) */
static void note_device_memory(run_state *s)
{
    lk_device *d = s->r.dev;
    size_t held = 0, used = 0, total = 0;
    if (d->ops->mem_info) d->ops->mem_info(d, &held, &used, &total);
    s->peak_dev = LK_MAX(s->peak_dev, (double)used);
}

/* where a step's losses add up (n x the batch mean): the model's, and a GAN's generator's */
static float *loss_sum(run_state *s) { return s->gan.r ? &s->gan.loss[1] : &s->r.scalars[2]; }
static void zero_losses(run_state *s)
{
    lk_zero(s->r.dev, loss_sum(s), (s->gan.r ? 2 : 1) * sizeof(float));
}

/* the communication of the last step: time blocked in the final waits, share hidden */
static void comm_stats(const run_state *s, double *ms, double *hidden)
{
    lk_buckets *b[2];
    lk_run_bucket_sets(s, b);
    for (int k = 0; k < 2; k++) {
        if (!b[k]) continue;
        *ms += b[k]->comm_ms;
        *hidden += lk_buckets_hidden_share(b[k]) / (s->gan.bg ? 2.0 : 1.0);
    }
}

static lk_status train_run(const lk_train_opts *o, run_state *s, lk_train_result *res)
{
    double t_start = lk_now();
    lk_progress prog;
    LK_CHECK(lk_trainer_setup(o, s, &prog));
    lk_comm *c = s->comm;
    const long first_step = s->step;
    double val_loss = NAN, val_acc = NAN;
    long timed = 0;
    double log_dropped = 0.0; /* the samples of dropped steps, as of the last log line */
    while (s->step < s->total) {
        if (!s->fed.on) lk_sampler_set_epoch(&s->sampler, s->epoch); /* (a client's goes round: cycle) */
        const int epoch_steps = s->fed.on ? s->steps_per_epoch : s->sampler.steps;
        double log_t0 = lk_now(), log_comm = 0.0, log_hidden = 0.0;
        double log_local = 0.0; /* samples of this rank */
        long log_n = 0;
        zero_losses(s);
        /* (a resumed run starts where its checkpoint's sampler stopped in the epoch) */
        for (int i = (int)(s->epoch_step * o->accum); i < epoch_steps && s->step < s->total; i += o->accum) {
            double t0 = lk_now();
            int count = LK_MIN(o->accum, epoch_steps - i);
            if (s->fed.on) LK_CHECK(lk_fed_before_step(&s->fed, s->step));
            if (s->gan.r) LK_CHECK(gan_train_step(s, i, &log_local));
            else if (s->dp.on && !s->fed.dp_client) LK_CHECK(dp_train_step(s, i, count, &log_local));
            else if (!lk_fed_active(&s->fed, s->step)) LK_CHECK(idle_step(s));
            else LK_CHECK(train_step(s, s->fed.on ? lk_sampler_cycle(&s->sampler, s->step) : i, count, &log_local));
            const double ta = lk_now(); /* local SGD's average: part of the step, its communication */
            int averaged = 0;
            if (o->local_steps) lk_comm_doing(c, s->step, LK_DOING_AVERAGE);
            LK_CHECK(lk_averager_after(&s->avg, s->step, 0, &averaged));
            const double t1 = lk_now();
            s->epoch_step++;
            s->step_ms[timed++] = (t1 - t0) * 1e3;
            comm_stats(s, &log_comm, &log_hidden);
            log_comm += (t1 - ta) * 1e3;
            log_n++;
            int last = i + o->accum >= epoch_steps || s->step == s->total;
            /* (local SGD: the replicas agree right after an average) */
            if (o->check_every > 0 && (lk_averager_local(&s->avg, s->step - 1) ? averaged : s->step % o->check_every == 0))
                LK_CHECK(lk_dist_check_replicas(c, s->r.model, s->step, s->host_params));
            if (log_n == o->log_every || last) {
                /* mean loss over every sample of every rank since the last line */
                float sums[2] = {0.0f, 0.0f};
                lk_copy_to_host(s->r.dev, sums, loss_sum(s), (s->gan.r ? 2 : 1) * sizeof(float));
                LK_CHECK(lk_guard_read(&s->guard, s->r.model, s->step)); /* (the host waits here anyway) */
                double red[3] = {sums[0], log_local, sums[1]};
                LK_CHECK(lk_device_status(s->r.dev)); /* a GPU's failures surface here */
                note_device_memory(s);
                LK_CHECK(lk_comm_status(c));          /* and NCCL's, before MPI waits */
                LK_CHECK(lk_comm_allreduce_f64(c, red, 3, LK_REDUCE_SUM));
                /* (every rank's, as red[1]; a GAN's D and G updates are dropped one by one:
                 * the loss of one left its sum, the samples stay in the count) */
                if (!s->gan.r) red[1] -= s->guard.seen.dropped - log_dropped;
                log_dropped = s->guard.seen.dropped;
                /* (a window of skipped steps only has no loss: NaN, and no error) */
                double loss = red[1] > 0 ? red[0] / red[1] : NAN, loss_g = s->gan.r ? red[2] / red[1] : NAN;
                if (!isfinite(loss) && red[1] > 0)
                    return LK_ERR(LK_ERR_STATE, "training loss is %g at step %ld (diverged: lower --lr?)",
                                  loss, s->step);
                double dt = lk_now() - log_t0;
                const double flops = s->flops_sample * red[1] / dt;
                lk_step_record rec = {s->step, s->epoch + 1, loss, s->opt->last_lr, red[1] / dt,
                                      dt * 1e3 / (double)log_n, log_comm / (double)log_n,
                                      log_hidden / (double)log_n, loss_g, flops, flops / s->peak,
                                      lk_guard_skipped(&s->guard)};
                LK_CHECK(lk_metrics_step(&s->metrics, &rec));
                lk_progress_step(&prog, &(lk_progress_rec){s->epoch + 1, s->epochs, i / o->accum + 1,
                                                           s->steps_per_epoch, loss, loss_g,
                                                           rec.samples_per_s, flops, rec.mfu},
                                 1);
                zero_losses(s);
                log_t0 = lk_now();
                log_local = log_comm = log_hidden = 0.0;
                log_n = 0;
            }
            if ((o->eval_every > 0 && s->step % o->eval_every == 0) || last) {
                lk_comm_doing(c, s->step, LK_DOING_EVAL);
                LK_CHECK(lk_guard_read(&s->guard, s->r.model, s->step));
                LK_CHECK(lk_averager_after(&s->avg, s->step, 1, NULL));
                if (!o->sync_bn) LK_CHECK(lk_average_buffers(c, s->r.model));
                LK_CHECK(evaluate(&s->r, s->gan.r ? &s->gan : NULL, c, &s->val, &val_loss, &val_acc));
                const double eps = lk_dp_epsilon(&s->dp);
                LK_CHECK(lk_metrics_eval(&s->metrics, s->step, s->epoch + 1, val_loss, val_acc, eps, s->dp.delta));
                char acc[32] = "", priv[64] = "";
                if (!isnan(val_acc)) snprintf(acc, sizeof acc, " val_acc %.4f", val_acc);
                if (!isnan(eps)) snprintf(priv, sizeof priv, " epsilon %.4g (delta %g)", eps, s->dp.delta);
                lk_progress_line(&prog, "%s %d step %ld: val_loss %.4f%s%s", s->fed.fedavg ? "round" : "epoch",
                                 s->epoch + 1, s->step, val_loss, acc, priv);
                log_t0 = lk_now(); /* keep evaluation out of the throughput */
            }
            /* a step checkpoint (the epoch's and the run's last are saved below) */
            if (o->save_dir && o->save_every > 0 && s->step % o->save_every == 0 && !last) {
                LK_CHECK(lk_guard_read(&s->guard, s->r.model, s->step)); /* (not a stopped run's) */
                LK_CHECK(lk_trainer_save(o, s));
            }
        }
        if (s->epoch_step == s->steps_per_epoch) { /* (else the run ended inside the epoch) */
            s->epoch++;
            s->epoch_step = 0;
        }
        if (o->save_dir) LK_CHECK(lk_trainer_save(o, s)); /* a collective: every rank */
    }
    LK_CHECK(lk_averager_after(&s->avg, s->step, 1, NULL));
    LK_CHECK(lk_dist_check_replicas(c, s->r.model, s->step, s->host_params));

    /* throughput over the steps after warm-up (the first 10%, at most 20 steps) */
    long warm = LK_MIN(20, timed / 10);
    double sum = 0.0;
    for (long i = warm; i < timed; i++) sum += s->step_ms[i];
    long nt = timed - warm;
    qsort(s->step_ms + warm, (size_t)nt, sizeof(double), cmp_double);
    const double per_step = (double)o->batch * o->accum * c->world;
    res->step_ms_median = nt > 0 ? s->step_ms[warm + nt / 2] : NAN;
    res->samples_per_s = nt > 0 && sum > 0 ? per_step * nt / (sum * 1e-3) : NAN;
    res->val_loss = val_loss;
    res->val_acc = val_acc;
    res->steps = s->step - first_step;
    res->flops_per_s = s->flops_sample * res->samples_per_s;
    res->mfu = res->flops_per_s / s->peak;
    const double tokens = s->r.ylen > 1 ? res->samples_per_s * s->r.ylen : NAN;
    note_device_memory(s);
    res->peak_host_bytes = lk_mem_rss_peak();
    res->peak_dev_bytes = s->peak_dev;
    double mem[2] = {res->peak_host_bytes, s->plan.host_rank}; /* every rank's, added up */
    LK_CHECK(lk_comm_allreduce_f64(c, mem, 2, LK_REDUCE_SUM));
    res->peak_host_all = mem[0];
    lk_summary_record sr = {res->samples_per_s, res->step_ms_median, val_loss, val_acc,
                            lk_now() - t_start, s->step, warm, s->epochs, c->world, o->batch,
                            s->r.dev->name, o->model, tokens, s->flops_sample, res->flops_per_s,
                            s->peak, res->mfu, s->own_peak.source, res->peak_host_bytes,
                            res->peak_dev_bytes, s->plan.host_rank, s->plan.dev_rank, mem[0], mem[1],
                            (double)s->r.model->nparams, lk_dtype_name((lk_dtype)o->precision),
                            lk_guard_skipped(&s->guard), lk_dp_epsilon(&s->dp), s->dp.delta,
                            s->dp.sigma, s->dp.q, s->dp.accounted};
    res->epsilon = sr.epsilon;
    LK_CHECK(lk_metrics_summary(&s->metrics, &sr));
    char acc[32] = "", tok[48] = "", skipped[48] = "";
    if (lk_guard_skipped(&s->guard))
        snprintf(skipped, sizeof skipped, " (%ld steps skipped)", lk_guard_skipped(&s->guard));
    if (!isnan(val_acc)) snprintf(acc, sizeof acc, ", val_acc %.4f", val_acc);
    if (isfinite(tokens)) snprintf(tok, sizeof tok, ", %.0f tokens/s", tokens);
    lk_progress_line(&prog,
                     "done: %ld steps, %.0f samples/s%s (median step %.3f ms), %.4g TFLOP/s, mfu "
                     "%.3f, val_loss %.4f%s%s",
                     res->steps, res->samples_per_s, tok, res->step_ms_median,
                     res->flops_per_s * 1e-12, res->mfu, val_loss, acc, skipped);
    if (s->dp.on) {
        double clipped[2] = {s->dp.clipped, s->dp.seen};
        LK_CHECK(lk_comm_allreduce_f64(c, clipped, 2, LK_REDUCE_SUM));
        lk_progress_line(&prog, "privacy: epsilon %.4g at delta %g after %ld DP-SGD steps (sigma %.4g, q %.5g); %.1f%% "
                         "of the per-sample gradients were clipped to norm %g", res->epsilon, s->dp.delta,
                         s->dp.accounted, s->dp.sigma, s->dp.q, 100.0 * clipped[0] / LK_MAX(clipped[1], 1.0),
                         s->dp.o.clip);
    }
    if (s->plan.dev_rank > 0.0)
        lk_progress_line(&prog, "memory: peak GPU %.2f GB on rank 0 (plan %.2f GB), peak resident host %.2f GB "
                         "(plan %.2f GB)", res->peak_dev_bytes / 1e9, s->plan.dev_rank / 1e9,
                         res->peak_host_bytes / 1e9, s->plan.host_rank / 1e9);
    else
        lk_progress_line(&prog, "memory: peak resident %.2f GB on rank 0 (plan %.2f GB)",
                         res->peak_host_bytes / 1e9, s->plan.host_rank / 1e9);
    if (c->world > 1)
        lk_progress_line(&prog, "memory: every rank's peak resident added up %.2f GB (plans %.2f GB)", mem[0] / 1e9,
                         mem[1] / 1e9);
    return LK_OK;
}

lk_status lk_train_open_spec(const lk_train_opts *o, lk_spec **out)
{
    *out = NULL;
    if (o->model && o->model_file)
        return LK_ERR(LK_ERR_ARG, "--model %s and --model-file %s: one or the other", o->model, o->model_file);
    if (o->model_file) return lk_spec_load(o->model_file, out);
    if (o->model || !o->resume_dir) return lk_spec_builtin(o->model ? o->model : "cnn", out);
    char dir[600]; /* the model --resume's checkpoint holds */
    lk_run_config rc;
    LK_CHECK(lk_ckptdir_resolve(o->resume_dir, dir, sizeof dir));
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    return lk_ckptdir_open_spec(dir, &rc, out);
}

lk_status lk_train(const lk_train_opts *o, lk_train_result *res)
{
    run_state s;
    memset(&s, 0, sizeof s);
    memset(res, 0, sizeof *res);
    if (o->batch < 1) return LK_ERR(LK_ERR_ARG, "--batch must be at least 1 (got %d)", o->batch);
    if (o->steps <= 0 && o->epochs < 1)
        return LK_ERR(LK_ERR_ARG, "--epochs must be at least 1 (got %d)", o->epochs);
    if (o->log_every < 1) return LK_ERR(LK_ERR_ARG, "--log-every must be at least 1");
    if (o->accum < 1) return LK_ERR(LK_ERR_ARG, "--accum must be at least 1 (got %d)", o->accum);
    if (!(o->bucket_mb > 0)) return LK_ERR(LK_ERR_ARG, "--bucket-mb must be positive");
    if (!(o->comm_timeout > 0)) return LK_ERR(LK_ERR_ARG, "--comm-timeout must be positive");
    lk_spec *own = NULL;
    lk_train_opts oo = *o;
    if (!oo.spec) {
        LK_CHECK(lk_train_open_spec(o, &own));
        oo.spec = own;
    }
    oo.model = lk_spec_name(oo.spec);
    lk_status st = train_run(&oo, &s, res);
    lk_trainer_free(&s);
    lk_spec_free(own);
    return st;
}

lk_status lk_eval_checkpoint(const char *named, const char *data_spec, const char *device,
                             int threads, int batch, lk_eval_result *res)
{
    lk_run_config rc;
    char path[600], dir[600];
    LK_CHECK(lk_ckptdir_resolve(named, dir, sizeof dir)); /* (a directory of step checkpoints: its latest) */
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    lk_dataset d;
    memset(&d, 0, sizeof d);
    lk_arch arch;
    lk_spec *spec;
    LK_CHECK(lk_ckptdir_open_spec(dir, &rc, &spec));
    lk_status st = lk_spec_arch(spec, &rc.arch, &arch);
    if (st == LK_OK) st = lk_data_open(data_spec ? data_spec : rc.data, "test", arch.ctx, &d);
    if (st != LK_OK) {
        lk_spec_free(spec);
        return st;
    }
    lk_replica r;
    memset(&r, 0, sizeof r);
    char a[64], b[64];
    if (!lk_shape_equal(&d.sample, &rc.in_shape))
        st = LK_ERR(LK_ERR_SHAPE, "checkpoint %s expects samples %s but %s has %s", dir,
                    lk_shape_str(&rc.in_shape, a, sizeof a), d.source,
                    lk_shape_str(&d.sample, b, sizeof b));
    else if (d.nclasses > rc.nclasses || (lk_dataset_ylen(&d) > 1 && d.nclasses != rc.nclasses))
        st = LK_ERR(LK_ERR_SHAPE, "checkpoint %s has %d classes but %s has %d", dir, rc.nclasses,
                    d.source, d.nclasses);
    if (st == LK_OK)
        st = lk_replica_open(&r, &(lk_replica_spec){device, threads, spec, rc.arch, rc.in_shape,
                                                    rc.nclasses, lk_dataset_ylen(&d), batch,
                                                    LK_INIT_DEFAULT, 0, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL, LK_F32, 0, 0});
    if (st == LK_OK)
        st = lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                        r.model);
    lk_comm local;
    lk_gan gan;
    memset(&gan, 0, sizeof gan);
    if (st == LK_OK) st = lk_comm_local_open(&local);
    if (st == LK_OK && r.zoo->target == LK_TARGET_REAL) st = lk_gan_init(&gan, &r);
    if (st == LK_OK) st = evaluate(&r, gan.r ? &gan : NULL, &local, &d, &res->loss, &res->acc);
    res->n = d.n;
    lk_gan_free(&gan);
    lk_replica_free(&r);
    lk_dataset_free(&d);
    lk_spec_free(spec);
    return st;
}
