/* trainer_setup.c - everything a training run builds before its first step: the data,
 * the replica and its memory plan, the optimizer, the start-up agreement, resuming and
 * saving checkpoints, and how gradients travel between ranks. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "../models/zoo.h"
#include "ckptdir.h"
#include "dist.h"
#include "run.h"

/* The model's output fits what its loss compares it with: the labels, or the input. */
static lk_status check_output(const lk_replica *r, const lk_dataset *d)
{
    lk_shape os = lk_model_out_shape(r->model);
    char b[64], c[64];
    if (r->zoo->target == LK_TARGET_INPUT) {
        if (lk_shape_numel(&os) != lk_dataset_sample_numel(d))
            return LK_ERR(LK_ERR_SHAPE, "model output %s per sample cannot reconstruct %s samples %s",
                          lk_shape_str(&os, b, sizeof b), d->name, lk_shape_str(&d->sample, c, sizeof c));
        return LK_OK;
    }
    const size_t want = (size_t)lk_dataset_ylen(d) * d->nclasses;
    const size_t got = lk_shape_numel(&os) / (size_t)os.d[os.ndim - 1] * lk_model_out_valid(r->model);
    if (got != want)
        return LK_ERR(LK_ERR_SHAPE, "model output %s per sample does not fit %s: %d label%s of %d classes",
                      lk_shape_str(&os, b, sizeof b), d->name, lk_dataset_ylen(d),
                      lk_dataset_ylen(d) == 1 ? "" : "s", d->nclasses);
    return LK_OK;
}

static void fill_run_config(lk_run_config *rc, const lk_train_opts *o, const lk_dataset *d,
                            const lk_optim *opt, int epoch, long epoch_step, long n_train)
{
    memset(rc, 0, sizeof *rc);
    snprintf(rc->model, sizeof rc->model, "%s", o->model);
    if (lk_spec_arch(o->spec, &o->arch, &rc->arch) != LK_OK) rc->arch = o->arch; /* (checked at start) */
    rc->spec = o->spec;
    snprintf(rc->data, sizeof rc->data, "%s", o->data);
    rc->in_shape = d->sample;
    rc->nclasses = d->nclasses;
    for (int i = 0; i < d->nclasses && i < 16; i++)
        snprintf(rc->class_names[i], sizeof rc->class_names[i], "%s",
                 d->class_names ? d->class_names[i] : "");
    rc->epoch = epoch;
    rc->epoch_step = epoch_step;
    rc->step = opt->step;
    rc->seed = o->seed;
    rc->batch = o->batch;
    rc->world = o->comm ? o->comm->world : 1;
    rc->accum = o->accum;
    rc->train_samples = n_train;
    rc->optim = opt->cfg;
}

/* (LK_INJECT_FAULT=savekill: in the middle of writing a checkpoint) */
static void kill_self(void) { raise(SIGKILL); }

/* Fault injection for the tests of failure handling (a NaN into rank RANK's gradient of
 * step STEP, counted from 1, after its reduction: "nan"); after optimizer step STEP,
 * rank RANK returns an error ("error"), dies ("kill"), perturbs its parameters so
 * the replicas diverge ("diverge") or stops without dying ("stall"); or dies while
 * writing step STEP's checkpoint, its weights and optimizer state written and its
 * config.json not ("savekill"). */
static lk_status parse_fault(run_state *s)
{
    const char *spec = getenv("LK_INJECT_FAULT");
    s->fault.step = -1;
    if (!spec || !*spec) return LK_OK;
    /* LK_INJECT_FAULT_ONCE=FILE: only while FILE does not exist (the fault creates it), so
     * a restarted run is spared */
    const char *once = getenv("LK_INJECT_FAULT_ONCE");
    if (once && *once && access(once, F_OK) == 0) return LK_OK;
    snprintf(s->fault.once, sizeof s->fault.once, "%s", once ? once : "");
    if (sscanf(spec, "%15[a-z]:%d:%ld", s->fault.kind, &s->fault.rank, &s->fault.step) != 3 ||
        (strcmp(s->fault.kind, "error") && strcmp(s->fault.kind, "kill") && strcmp(s->fault.kind, "diverge") &&
         strcmp(s->fault.kind, "stall") && strcmp(s->fault.kind, "savekill") && strcmp(s->fault.kind, "nan")))
        return LK_ERR(LK_ERR_ARG, "LK_INJECT_FAULT='%s': expected error|kill|diverge|stall|savekill|nan:RANK:STEP",
                      spec);
    return LK_OK;
}

void lk_trainer_free(run_state *s)
{
    lk_dataset_free(&s->train);
    lk_dataset_free(&s->val);
    lk_optim_destroy(s->opt);
    lk_buckets_destroy(s->buckets);
    lk_buckets_destroy(s->gan.bd);
    lk_buckets_destroy(s->gan.bg);
    lk_zero_destroy(s->zero);
    lk_gan_free(&s->gan);
    lk_dp_free(&s->dp, s->r.dev);
    lk_fed_free(&s->fed, s->r.dev);
    if (s->comm) lk_comm_use_device(s->comm, NULL, 0); /* before the device closes */
    lk_guard_close(&s->guard);
    lk_replica_free(&s->r);
    lk_sampler_free(&s->sampler);
    lk_metrics_close(&s->metrics);
    lk_free(s->step_ms);
    lk_free(s->host_params);
    lk_comm_close(s->own_comm);
}

static lk_status open_data(const lk_train_opts *o, run_state *s)
{
    lk_arch arch; /* token data come in windows of its context */
    LK_CHECK(lk_spec_arch(o->spec, &o->arch, &arch));
    LK_CHECK(lk_data_open(o->data, "train", arch.ctx, &s->train));
    LK_CHECK(lk_data_open(o->data, "test", arch.ctx, &s->val));
    if (s->val.nclasses > s->train.nclasses) /* (a set whose classes its labels tell) */
        return LK_ERR(LK_ERR_SHAPE, "%s: the test split has %d classes, the training split %d", o->data,
                      s->val.nclasses, s->train.nclasses);
    if (o->train_limit > 0 && o->train_limit < s->train.n) lk_dataset_truncate(&s->train, o->train_limit);
    if (o->val_limit > 0 && o->val_limit < s->val.n) lk_dataset_truncate(&s->val, o->val_limit);
    return LK_OK;
}

/* What a resume would change in the run's batches or learning rates, into why ("" if
 * nothing): the data, the global batch, the seed, or the schedule (its length only where
 * the rates depend on it). */
static void resume_changes(const lk_run_config *rc, const lk_train_opts *o, const run_state *s, char *why,
                           size_t size)
{
    const int world = s->comm->world;
    const long saved_global = (long)rc->batch * rc->world * rc->accum, global = (long)o->batch * world * o->accum;
    const lk_optim_config *a = &rc->optim, *b = &s->opt->cfg;
    const int by_length = b->schedule == LK_SCHED_COSINE;
    size_t len = 0;
    why[0] = 0;
#define CHANGED(cond, ...)                                                        \
    if ((cond) && len < size) len += (size_t)snprintf(why + len, size - len, __VA_ARGS__)
    CHANGED(strcmp(rc->data, o->data), "; --data %s, not %s", o->data, rc->data);
    const long n_train = s->fed.on ? s->fed.total : s->train.n; /* (every client's, with --partition) */
    CHANGED(rc->train_samples && rc->train_samples != n_train, "; %ld training samples, not %ld", n_train,
            rc->train_samples);
    CHANGED(saved_global != global, "; a global batch of %ld (--batch %d x %d ranks x --accum %d), not %ld",
            global, o->batch, world, o->accum, saved_global);
    CHANGED(rc->seed != o->seed, "; --seed %llu, not %llu", (unsigned long long)o->seed,
            (unsigned long long)rc->seed);
    CHANGED(a->schedule != b->schedule || a->lr != b->lr || a->warmup != b->warmup ||
                a->step_size != b->step_size || a->gamma != b->gamma,
            "; the learning rates (--lr --schedule --warmup --step-size --gamma)");
    CHANGED(by_length && a->total_steps != b->total_steps, "; %ld steps in all, not %ld (the %s schedule's length)",
            b->total_steps, a->total_steps, lk_schedule_name(b->schedule));
#undef CHANGED
    if (why[0]) memmove(why, why + 2, strlen(why + 2) + 1);
}

/* The checkpoint in dir holds the run's model: its name, and its spec where it keeps one. */
static lk_status same_model(const lk_train_opts *o, const char *dir, const lk_run_config *rc, const char *flag)
{
    if (strcmp(rc->model, o->model))
        return LK_ERR(LK_ERR_ARG, "%s %s holds model '%s' but the run's is '%s' (--model, --model-file)", flag, dir,
                      rc->model, o->model);
    lk_spec *saved;
    LK_CHECK(lk_ckptdir_open_spec(dir, rc, &saved));
    const int same = !strcmp(lk_spec_text(saved), lk_spec_text(o->spec));
    lk_spec_free(saved);
    if (!same)
        return LK_ERR(LK_ERR_ARG, "%s %s holds a model '%s' whose spec (its model.json) differs from the run's", flag,
                      dir, rc->model);
    return LK_OK;
}

/* Restores weights, optimizer state and position (epoch, and the step in it) from a
 * checkpoint directory, or a directory of step checkpoints' latest. */
static lk_status resume(const lk_train_opts *o, run_state *s, int *epoch, long *step)
{
    lk_run_config rc;
    char path[600];
    LK_CHECK(lk_ckptdir_resolve(o->resume_dir, s->resumed_from, sizeof s->resumed_from));
    const char *dir = s->resumed_from;
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    LK_CHECK(same_model(o, dir, &rc, "--resume"));
    if (rc.optim.kind != s->opt->cfg.kind)
        return LK_ERR(LK_ERR_ARG, "--resume %s was trained with --optim %s, not %s", dir,
                      lk_optim_name(rc.optim.kind), lk_optim_name(s->opt->cfg.kind));
    if (rc.optim.decay != s->opt->cfg.decay)
        return LK_ERR(LK_ERR_ARG, "--resume %s was trained with --decay %s, not %s", dir,
                      lk_decay_name(rc.optim.decay), lk_decay_name(s->opt->cfg.decay));
    LK_CHECK(lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                        s->r.model));
    LK_CHECK(lk_checkpoint_load_optim(lk_ckptdir_path(dir, "optim.safetensors", path, sizeof path),
                                      s->r.model, s->opt));
    char why[600];
    resume_changes(&rc, o, s, why, sizeof why);
    if (why[0] && !o->force_resume)
        return LK_ERR(LK_ERR_ARG, "--resume %s: this run would not continue it: %s (--force-resume continues "
                                  "anyway)", dir, why);
    *epoch = rc.epoch;
    *step = s->opt->step;
    /* the sampler's place: where it stopped in that epoch, if the epochs are the same steps */
    s->epoch_step = !why[0] && rc.epoch_step < s->steps_per_epoch ? rc.epoch_step : 0;
    if (why[0] && rc.epoch_step) *epoch += 1; /* (forced: from the next epoch's start) */
    return LK_OK;
}

/* --new-head: the model's head, the last layer with weights of its own, which keeps its
 * fresh initialisation (-1 with an error where the output comes from a tied head). */
static int head_layer(const lk_model *m)
{
    int head = -1;
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        if (l->grads_into) {
            LK_ERR(LK_ERR_ARG, "--new-head: the model's output comes from layer %d (%s), tied to layer %d's "
                               "weights: there is no head of its own to replace", i, l->vt->type, l->grads_into->index);
            return -1;
        }
        for (int j = 0; j < l->nparams; j++)
            if (!l->params[j].buffer) head = i;
    }
    if (head < 0) LK_ERR(LK_ERR_ARG, "--new-head: the model has no weights");
    return head;
}

/* --init-from: the weights of a checkpoint of the same model (names and shapes checked
 * one by one), nothing else of its run: step 0, a fresh optimizer and schedule; with
 * --new-head all but the head's, which starts fresh for the data's classes. */
static lk_status init_from(const lk_train_opts *o, run_state *s)
{
    char dir[600], path[700];
    lk_run_config rc;
    LK_CHECK(lk_ckptdir_resolve(o->init_from, dir, sizeof dir));
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    LK_CHECK(same_model(o, dir, &rc, "--init-from"));
    const int head = o->new_head ? head_layer(s->r.model) : -1;
    if (o->new_head && head < 0) return LK_ERR_ARG;
    if (!o->new_head && rc.nclasses != s->train.nclasses)
        return LK_ERR(LK_ERR_SHAPE, "--init-from %s was trained for %d classes, %s has %d (--new-head replaces "
                                    "the model's head)", dir, rc.nclasses, o->data, s->train.nclasses);
    s->new_head = head;
    lk_status st = lk_checkpoint_load_weights_but(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                                  s->r.model, head);
    if (st != LK_OK) {
        char why[700];
        snprintf(why, sizeof why, "%s", lk_error_message());
        return LK_ERR(st, "--init-from %s: %s", dir, why);
    }
    lk_model_params_changed(s->r.model); /* (a bf16 working copy is rounded again) */
    snprintf(s->resumed_from, sizeof s->resumed_from, "%s", dir);
    return LK_OK;
}

/* --freeze: the matching parameters leave the optimizer, and the buckets reduce only the
 * span of the layers with a parameter that trains (a frozen prefix or suffix of the flat
 * buffer - a backbone - travels no more). */
static lk_status freeze(const lk_train_opts *o, run_state *s)
{
    lk_model *m = s->r.model;
    s->grad_lo = 0, s->grad_hi = m->nparams;
    if (!o->freeze) return LK_OK;
    /* (ZeRO-2 keeps only the reduced span's gradients, but backward writes the frozen layers'
     * too; the GAN's two networks and PowerSGD's matrices have spans of their own) */
    if (s->gan.r || o->zero == 2 || o->powersgd_rank)
        return LK_ERR(LK_ERR_ARG, "--freeze is not for the gan, --zero 2 or --grad-compress powersgd yet");
    size_t *r = NULL;
    int n = 0, matched = 0;
    lk_status st = lk_model_name_ranges(m, o->freeze, &r, &n, &matched);
    if (st != LK_OK) {
        char why[400];
        snprintf(why, sizeof why, "%s", lk_error_message());
        return LK_ERR(st, "--freeze: %s", why);
    }
    size_t lo = m->nparams, hi = 0, kept = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        int trains = 0;
        for (int j = 0; j < l->nparams; j++) {
            const lk_param *p = &l->params[j];
            int in = 0;
            for (int k = 0; k < n && !in; k++) in = r[2 * k] <= p->offset && p->offset < r[2 * k + 1];
            if (!in && !p->buffer) trains = 1, kept += lk_shape_numel(&p->shape);
        }
        if (trains && l->param_count)
            lo = LK_MIN(lo, l->param_offset), hi = LK_MAX(hi, l->param_offset + l->param_count);
    }
    if (!kept) st = LK_ERR(LK_ERR_ARG, "--freeze %s: every parameter is frozen, nothing would train", o->freeze);
    if (st == LK_OK) st = lk_optim_freeze(s->opt, r, n);
    lk_free(r);
    LK_CHECK(st);
    s->grad_lo = lo, s->grad_hi = hi;
    s->frozen_tensors = matched, s->kept = kept;
    return LK_OK;
}

/* Everything that must agree across ranks, fingerprinted for lk_agree_check. */
static lk_status agree(const lk_train_opts *o, run_state *s)
{
    lk_agreement a = {0};
    lk_agree_add_str(&a, "--model", o->model);
    lk_agree_add_str(&a, "the model's spec", lk_spec_text(o->spec));
    lk_agree_add_model(&a, s->r.model);
    lk_agree_add_str(&a, "--data", o->data);
    const long ntrain = s->fed.on ? s->fed.total : s->train.n; /* (a client holds its shard) */
    lk_agree_add(&a, "training samples", &ntrain, sizeof ntrain);
    lk_agree_add(&a, "validation samples", &s->val.n, sizeof s->val.n);
    lk_agree_add(&a, "--batch", &o->batch, sizeof o->batch);
    lk_agree_add(&a, "--accum", &o->accum, sizeof o->accum);
    lk_agree_add(&a, "--local-steps", &o->local_steps, sizeof o->local_steps);
    lk_agree_add(&a, "--dp-clip", &o->dp.clip, sizeof o->dp.clip);
    lk_agree_add(&a, "--dp-noise", &o->dp.noise, sizeof o->dp.noise);
    lk_agree_add(&a, "--dp-epsilon", &o->dp.epsilon, sizeof o->dp.epsilon);
    lk_agree_add(&a, "--dp-delta", &o->dp.delta, sizeof o->dp.delta);
    lk_agree_add(&a, "--dp-sampling", &o->dp.sampling, sizeof o->dp.sampling);
    lk_agree_add_str(&a, "--partition", o->fed.partition ? o->fed.partition : "");
    lk_agree_add(&a, "--fedavg", &o->fed.fedavg, sizeof o->fed.fedavg);
    lk_agree_add(&a, "--client-fraction", &o->fed.fraction, sizeof o->fed.fraction);
    lk_agree_add(&a, "--local-epochs", &o->fed.local_epochs, sizeof o->fed.local_epochs);
    lk_agree_add(&a, "--dp-level", &o->fed.dp_client, sizeof o->fed.dp_client);
    lk_agree_add(&a, "--grad-compress powersgd", &o->powersgd_rank, sizeof o->powersgd_rank);
    lk_agree_add(&a, "--compress-start", &o->compress_start, sizeof o->compress_start);
    lk_agree_add(&a, "--local-start", &o->local_start, sizeof o->local_start);
    lk_agree_add(&a, "--epochs/--steps", &s->total, sizeof s->total);
    lk_agree_add(&a, "--seed", &o->seed, sizeof o->seed);
    lk_agree_add(&a, "--init", &o->init, sizeof o->init);
    lk_agree_add(&a, "--bucket-mb", &o->bucket_mb, sizeof o->bucket_mb);
    lk_agree_add(&a, "--comm-progress", &o->comm_progress, sizeof o->comm_progress);
    lk_agree_add(&a, "--shm", &o->shm, sizeof o->shm);
    lk_agree_add(&a, "--gpu-comm", &o->gpu_comm, sizeof o->gpu_comm);
    lk_agree_add(&a, "--sync-bn", &o->sync_bn, sizeof o->sync_bn);
    lk_agree_add(&a, "--zero", &o->zero, sizeof o->zero);
    lk_agree_add(&a, "--recompute", &o->recompute, sizeof o->recompute);
    lk_agree_add(&a, "--precision", &o->precision, sizeof o->precision);
    lk_agree_add(&a, "--stochastic-round", &o->stochastic_round, sizeof o->stochastic_round);
    lk_agree_add(&a, "--grad-compress", &o->grad_dtype, sizeof o->grad_dtype);
    lk_agree_add(&a, "--nan-policy", &o->nan_policy, sizeof o->nan_policy);
    lk_agree_add(&a, "--max-skips", &o->max_skips, sizeof o->max_skips);
    lk_agree_add(&a, "--skip-spikes", &o->skip_spikes, sizeof o->skip_spikes);
    lk_agree_add_str(&a, "--freeze", o->freeze ? o->freeze : "");
    const lk_optim_config *c = &s->opt->cfg;
    lk_agree_add(&a, "--optim", &c->kind, sizeof c->kind);
    float hyper[] = {c->lr, c->momentum, c->beta1, c->beta2, c->eps, c->alpha, c->weight_decay,
                     c->l1, c->clip_norm, c->gamma};
    lk_agree_add(&a, "optimizer hyperparameters", hyper, sizeof hyper);
    long sched[] = {c->schedule, c->warmup, c->total_steps, c->step_size};
    lk_agree_add(&a, "--schedule/--warmup/--step-size", sched, sizeof sched);
    lk_agree_add(&a, "optimizer step (--resume)", &s->opt->step, sizeof s->opt->step);
    return lk_agree_check(s->comm, &a);
}

/* A checkpoint, written by rank 0: the same files whatever the sharding (a sharded
 * optimizer state is gathered tensor by tensor from every rank's slice, so every rank
 * takes part). */
lk_status lk_trainer_save(const lk_train_opts *o, run_state *s)
{
    lk_comm_doing(s->comm, s->step, LK_DOING_SAVE);
    LK_CHECK(lk_averager_after(&s->avg, s->step, 1, NULL)); /* local SGD: averaged parameters */
    if (!o->sync_bn) LK_CHECK(lk_average_buffers(s->comm, s->r.model));
    lk_run_config rc;
    fill_run_config(&rc, o, &s->train, s->opt, s->epoch, s->epoch_step, s->fed.on ? s->fed.total : s->train.n);
    const int stepped = o->save_every > 0 || o->keep > 0;
    char dir[600];
    if (stepped) lk_ckptdir_step(o->save_dir, s->step, dir, sizeof dir);
    else snprintf(dir, sizeof dir, "%s", o->save_dir);
    if (!strcmp(s->fault.kind, "savekill") && s->fault.step == s->step && s->fault.rank == s->comm->rank) {
        lk_fault_fired(s);
        lk_ckptdir_before_config = kill_self; /* (LK_INJECT_FAULT: dies with weights and state written) */
    }
    lk_zero_gather g = {s->zero, s->opt};
    const int sharded = s->zero->stage > 0;
    /* (DP-SGD's account before the config: a checkpoint never claims less than was spent) */
    if (s->comm->rank == 0) LK_CHECK(lk_dp_save(&s->dp, dir));
    if (s->comm->rank == 0 || sharded)
        LK_CHECK(lk_ckptdir_save(dir, &rc, s->r.model, s->opt, s->comm->rank == 0,
                                 sharded ? lk_zero_gather_state : NULL, &g));
    lk_buckets *sets[2];
    lk_run_bucket_sets(s, sets);
    const int psgd = sets[0] && sets[0]->psgd;
    /* PowerSGD's residuals and Q: every rank its own file, once rank 0 made the directory;
     * a step checkpoint is published once every rank's files are in it (a rank failing
     * fails at the barrier's next collective, on every rank) */
    if (psgd || stepped) LK_CHECK(lk_comm_barrier(s->comm));
    if (psgd) LK_CHECK(lk_buckets_psgd_save(sets, 2, dir, s->step));
    if (psgd && stepped) LK_CHECK(lk_comm_barrier(s->comm));
    if (stepped && s->comm->rank == 0) LK_CHECK(lk_ckptdir_publish(o->save_dir, s->step, o->keep));
    return LK_OK;
}

/* SyncBatchNorm's hook: sums a layer's statistics over every rank. */
static lk_status sync_sum(void *user, float *buf, size_t n)
{
    return lk_comm_allreduce((lk_comm *)user, buf, n, LK_REDUCE_SUM);
}

/* How the gradients travel between ranks: GPU buffers through NCCL or a pinned staging
 * buffer, same-host ranks in shared memory (the comm thread's blocking all-reduce, the
 * gradients moved there to be summed in place), then the buckets; the optimizer state
 * (--resume) is rank 0's. */
static lk_status setup_comm(const lk_train_opts *o, run_state *s)
{
    lk_comm *c = s->comm;
    lk_model *m = s->r.model;
    c->timeout_s = o->comm_timeout; /* before NCCL and shared memory take it */
    LK_CHECK(lk_comm_use_device(c, s->r.dev, m->nparams * sizeof(float)));
    LK_CHECK(lk_comm_use_nccl(c, (lk_gpu_comm)o->gpu_comm));
    lk_progress_mode mode = (lk_progress_mode)o->comm_progress;
    if (o->sync_bn) { /* its all-reduces come from the training thread, in forward and backward */
        if (mode == LK_PROGRESS_THREAD)
            return LK_ERR(LK_ERR_ARG, "--sync-bn sums statistics on the training thread during backward: "
                                      "use --comm-progress layers (or auto), not thread");
        mode = LK_PROGRESS_LAYERS;
        m->sync_sum = sync_sum;
        m->sync_user = c;
    }
    /* PowerSGD's arithmetic on a comm thread needs a helper device: a CPU's */
    if (mode == LK_PROGRESS_AUTO && o->powersgd_rank && s->r.dev->kind != LK_DEV_CPU) mode = LK_PROGRESS_LAYERS;
    mode = lk_progress_resolve(c, mode);
    const size_t bytes = (size_t)(o->bucket_mb * 1048576.0);
    const int stage = s->zero->stage;
    /* the gradients the layers write: the whole buffer, or (stage 2) each network's staging */
    const size_t lo[2] = {s->gan.r ? 0 : s->grad_lo, s->gan.r ? s->gan.d_end : 0};
    const size_t hi[2] = {s->gan.r ? s->gan.d_end : s->grad_hi, s->gan.r ? m->nparams : 0};
    size_t stage_floats[2] = {0, 0}, pinned = 0;
    for (int k = 0; stage == 2 && k < 2; k++)
        if (hi[k] > lo[k]) stage_floats[k] = lk_buckets_stage_floats(m, bytes, lo[k], hi[k], &pinned);
    const size_t grad_floats = stage == 2 ? stage_floats[0] + stage_floats[1] : m->nparams;
    float *shared = NULL;
    /* (16-bit buckets are summed in shared memory on one host, through the library across
     * hosts, where a host's partial sums would be rounded twice; PowerSGD's float32
     * all-reduces of P, Q and the packed tensors take lockstep's staging slots) */
    const int shm_fits = o->grad_dtype == LK_F32 || c->local_world == c->world;
    LK_CHECK(lk_comm_use_shm(c, o->shm && mode == LK_PROGRESS_THREAD && shm_fits,
                             grad_floats,
                             s->r.dev->host_addressable ? &shared : NULL));
    if (shared && stage < 2) LK_CHECK(lk_model_borrow_grads(m, shared));
    else if (stage < 2) LK_CHECK(lk_model_alloc_grads(m));
    lk_buckets **sets[2] = {s->gan.r ? &s->gan.bd : &s->buckets, &s->gan.bg};
    for (int k = 0; k < 2; k++) {
        if (hi[k] <= lo[k]) continue;
        const lk_buckets_opts bo = {bytes, mode, lo[k], hi[k], s->zero,
                                    shared && stage == 2 ? shared + (k ? stage_floats[0] : 0) : NULL,
                                    (lk_dtype)o->grad_dtype, o->powersgd_rank, o->seed};
        LK_CHECK(lk_buckets_open(sets[k], c, m, &bo));
    }
    if (stage == 2) LK_CHECK(lk_model_drop_grads(m)); /* every gradient now lives in staging */
    if (stage) return LK_OK; /* each rank's optimizer state is its own slice's */
    size_t n = m->nparams * sizeof(float);
    if (s->opt->s1) LK_CHECK(lk_comm_broadcast(c, s->opt->s1, n, 0));
    if (s->opt->s2) LK_CHECK(lk_comm_broadcast(c, s->opt->s2, n, 0));
    return LK_OK;
}

/* The replica's check, once its device is open: the memory plan, from the model built dry
 * on that device; printed, and a run that does not fit (on any rank) refused now. */
static lk_status plan_memory(void *user, lk_device *dev)
{
    run_state *s = user;
    const lk_train_opts *o = s->opts;
    lk_comm *c = s->comm;
    /* the peak MFU divides by (a CPU measures its products), then what the process holds
     * that the plan does not model */
    LK_CHECK(lk_peak_find(dev, (lk_dtype)o->precision, o->peak_tflops, &s->own_peak));
    size_t held = 0, used = 0, total = 0; /* the backend's buffers are the plan's workspace */
    if (dev->ops->mem_info) dev->ops->mem_info(dev, &held, &used, &total);
    s->runtime_bytes = LK_MAX(0.0, lk_mem_rss() - s->data_bytes - (double)held);
    lk_progress_mode mode = o->sync_bn ? LK_PROGRESS_LAYERS : lk_progress_resolve(c, o->comm_progress);
    const lk_mem_inputs in = {o->spec, &o->arch, s->train.sample, s->train.nclasses, o->batch,
                              (lk_recompute)o->recompute, (lk_dtype)o->precision, o->optim.kind, o->zero, c->world, c->rank, c->local_world,
                              (size_t)(o->bucket_mb * 1048576.0),
                              o->shm && mode == LK_PROGRESS_THREAD && dev->host_addressable,
                              lk_mem_data_bytes(&s->train, s->data_bytes, o->batch), s->runtime_bytes, lk_mem_rss_peak(),
                              (lk_dtype)o->grad_dtype, o->powersgd_rank};
    LK_CHECK(lk_mem_plan_make(&in, dev, &s->plan));
    char line[600];
    lk_mem_plan_line(&s->plan, line, sizeof line);
    lk_progress_line(s->prog, "%s", line);
    double refuse = !s->plan.fits; /* every rank's verdict: all stop, or none */
    LK_CHECK(lk_comm_allreduce_f64(c, &refuse, 1, LK_REDUCE_MAX));
    if (refuse > 0.0)
        return LK_ERR(LK_ERR_NOMEM, "the run does not fit: %s%s (lower --batch, add ranks with --zero 1 "
                      "or 2, or --recompute)", s->plan.fits ? "on another host; here " : "", line);
    return LK_OK;
}

/* The ranks as federated clients (fedavg.h): what it cannot combine with, the averager's
 * rounds, and a line per client. */
static lk_status setup_fed(const lk_train_opts *o, run_state *s)
{
    lk_fed *f = &s->fed;
    if (!f->on) return LK_OK;
    if (s->gan.r) return LK_ERR(LK_ERR_ARG, "--partition/--fedavg: the gan's alternating networks are not clients");
    if (f->fedavg && s->zero->stage)
        return LK_ERR(LK_ERR_ARG, "--fedavg: each client steps every parameter on its own, which --zero's sharded "
                                  "optimizer cannot (use --zero 0)");
    if (f->fedavg && ((o->eval_every % f->k) || (o->save_every % f->k)))
        return LK_ERR(LK_ERR_ARG, "--fedavg: --eval-every and --save-every must be whole rounds (multiples of the "
                                  "%ld local steps a round)", f->k);
    LK_CHECK(lk_fed_setup(f, &o->fed, &s->avg, s->r.model, &s->dp));
    char *lines = lk_malloc(8192);
    if (!lines) return LK_ERR(LK_ERR_NOMEM, "out of memory");
    lk_status st = lk_fed_describe(f, &s->train, lines, 8192);
    if (st == LK_OK && f->fedavg)
        lk_progress_line(s->prog, "federated averaging: %d clients (--partition %s), %d a round, %ld local steps a "
                                  "round (an epoch of the log is a round), %s\n%s", f->world,
                         o->fed.partition ? o->fed.partition : "iid", f->per_round, f->k,
                         o->fed.dp_client ? "clipped updates, equal weights" : "weighted by shard size", lines);
    else if (st == LK_OK)
        lk_progress_line(s->prog, "data-parallel over the clients' shards (--partition %s): each rank's batches from "
                                  "its own\n%s", o->fed.partition, lines);
    lk_free(lines);
    return st;
}

/* DP-SGD (dpsgd.h): what it cannot combine with, its state, and a resumed run's account. */
static lk_status setup_dp(const lk_train_opts *o, run_state *s)
{
    const lk_dp_opts *d = &o->dp;
    if (d->clip > 0) {
        const char *no = s->gan.r ? "the gan (its two networks' steps)"
                         : o->zero == 2 ? "--zero 2 (the norms' pass needs the full gradient buffer ZeRO-2 "
                                          "drops: use --zero 1)"
                         : o->powersgd_rank || o->grad_dtype != LK_F32
                             ? "--grad-compress (the noise is calibrated to the exact clipped sum)"
                         : o->local_steps ? "--local-steps (each rank's own steps would each need their noise)"
                         : o->precision != LK_F32 ? "--precision bf16 (per-sample norms over float32 activations)"
                                                  : NULL;
        if (no && !o->fed.dp_client) return LK_ERR(LK_ERR_ARG, "DP-SGD (--dp-clip) does not combine with %s", no);
        if (s->fed.on && !o->fed.dp_client)
            return LK_ERR(LK_ERR_ARG, "DP-SGD's per-sample clipping draws Poisson batches from the whole training "
                                      "set, not a client's shard: with --partition/--fedavg use --dp-level client");
    }
    const int world = s->comm->world;
    if (o->fed.dp_client) { /* a round is a step, a client a sample (fedavg.h) */
        if (!s->fed.fedavg) return LK_ERR(LK_ERR_ARG, "--dp-level client is federated averaging's: give --fedavg");
        LK_CHECK(lk_dp_init(&s->dp, d, s->r.model, world, s->fed.per_round, (s->total + s->fed.k - 1) / s->fed.k,
                            s->grad_lo, s->grad_hi, s->comm->rank != 0));
    } else
        LK_CHECK(lk_dp_init(&s->dp, d, s->r.model, s->train.n, (long)o->batch * o->accum * world, s->total,
                            s->grad_lo, s->grad_hi, s->comm->rank != 0));
    if (!s->dp.on) return LK_OK;
    if (o->resume_dir) LK_CHECK(lk_dp_load(&s->dp, s->resumed_from, s->step));
    char budget[96] = "given";
    if (d->epsilon > 0) snprintf(budget, sizeof budget, "solved for epsilon %g at delta %g over %ld %s", d->epsilon,
                                 s->dp.delta, o->fed.dp_client ? (s->total + s->fed.k - 1) / s->fed.k : s->total,
                                 o->fed.dp_client ? "rounds" : "steps");
    if (o->fed.dp_client)
        lk_progress_line(s->prog, "DP-FedAvg: each client's update in a round clipped to norm %g, Gaussian noise "
                                  "sigma %.4g (%s) added to their sum, divided by the %d clients per round; "
                                  "sampling rate q = %.5g a round",
                         d->clip, s->dp.sigma, budget, s->fed.per_round, s->dp.q);
    else
        lk_progress_line(s->prog, "DP-SGD: per-sample gradients clipped to norm %g (norms %s), Gaussian noise sigma "
                                  "%.4g (%s) added to the global sum, divided by the expected batch %.0f; %s "
                                  "sampling at rate q = %.5g",
                         d->clip, s->dp.direct ? "from the layers in one backward" : "from a backward per sample",
                         s->dp.sigma, budget, s->dp.expected, d->sampling == LK_DP_POISSON ? "Poisson" : "shuffled",
                         s->dp.q);
    if (s->dp.accounted)
        lk_progress_line(s->prog, "DP-SGD: the checkpoint's account: %ld steps, epsilon %.4g so far", s->dp.accounted,
                         lk_dp_epsilon(&s->dp));
    return LK_OK;
}

lk_status lk_trainer_setup(const lk_train_opts *o, run_state *s, lk_progress *prog)
{
    s->comm = o->comm;
    if (!s->comm) {
        LK_CHECK(lk_comm_open(&s->own_comm, "local", NULL, NULL));
        s->comm = s->own_comm;
    }
    const int rank = s->comm->rank, world = s->comm->world;
    s->opts = o;
    s->prog = prog;
    LK_CHECK(parse_fault(s));
    if (lk_spec_entry(o->spec)->target == LK_TARGET_REAL && o->skip_spikes > 0)
        return LK_ERR(LK_ERR_ARG, "--skip-spikes is not for the gan: its two losses pull against each other, "
                                  "a rise in one is no spike (--nan-policy stop and skip are)");
    if (o->powersgd_rank > 0 && (o->nan_policy == LK_NAN_SKIP || o->skip_spikes > 0))
        return LK_ERR(LK_ERR_ARG, "--nan-policy skip and --skip-spikes with --grad-compress powersgd: its error "
                                  "feedback would keep a skipped step's gradient (use --nan-policy stop)");
    if (o->resume_dir && o->init_from)
        return LK_ERR(LK_ERR_ARG, "--resume continues a run and --init-from starts a new one from its weights: "
                                  "give one of them");
    if (o->new_head && !o->init_from)
        return LK_ERR(LK_ERR_ARG, "--new-head replaces the head of --init-from's model: give --init-from DIR");
    if ((o->save_every > 0 || o->keep > 0) && !o->save_dir)
        return LK_ERR(LK_ERR_ARG, "--save-every and --keep need --save DIR (where the step checkpoints go)");
    /* under mpirun stdout is a pseudo-terminal even when the job's output goes to a
     * file: plain lines there unless a bar is asked for */
    int mode = o->progress < 0 && lk_comm_launched() ? 0 : o->progress;
    lk_progress_init(prog, mode, o->quiet || rank != 0);
    /* the device (one GPU per local rank), then each rank its own cores - near its
     * GPU - before any thread exists; a thread per core */
    char dev[32];
    LK_CHECK(lk_device_resolve(o->device, s->comm->local_rank, dev, sizeof dev));
    int gpus = strcmp(dev, "cpu") && strncmp(o->device, "cuda:", 5) ? lk_cuda_device_count() : 0;
    LK_CHECK(lk_topo_bind(s->comm, o->bind, gpus, &s->binding));
    const double before_data = lk_mem_rss();
    LK_CHECK(open_data(o, s));
    LK_CHECK(lk_fed_deal(&s->fed, &o->fed, s->comm, o->seed, o->batch, o->local_steps, &s->train));
    s->data_bytes = LK_MAX(0.0, lk_mem_rss() - before_data);
    int threads = o->threads > 0 ? o->threads : s->binding.ncores;
    LK_CHECK(lk_replica_open(&s->r, &(lk_replica_spec){dev, threads, o->spec, o->arch,
                                                      s->train.sample, s->train.nclasses,
                                                      lk_dataset_ylen(&s->train), o->batch,
                                                      o->init, o->seed, LK_BUILD_NO_GRADS,
                                                      (lk_recompute)o->recompute, plan_memory, s,
                                                      (lk_dtype)o->precision, o->stochastic_round,
                                                      o->dp.clip > 0}));
    lk_model *m = s->r.model;
    if (s->r.zoo->target == LK_TARGET_REAL) {
        if (o->accum != 1) return LK_ERR(LK_ERR_ARG, "--accum: model %s alternates its own steps; use 1", o->model);
        if (o->recompute)
            return LK_ERR(LK_ERR_ARG, "--recompute: model %s loads real images between its networks, "
                                      "where a recomputed output would go; use none", o->model);
        LK_CHECK(lk_gan_init(&s->gan, &s->r));
    } else {
        LK_CHECK(check_output(&s->r, &s->train));
    }
    if (s->fed.on) { /* a client: its own shard, its own shuffles (client 0's those of one rank) */
        LK_CHECK(lk_sampler_init(&s->sampler, s->train.n, o->batch, 0, 1, o->seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)rank), 1));
        if (o->accum != 1) return LK_ERR(LK_ERR_ARG, "--accum %d with --partition: a client's step is one batch", o->accum);
        s->steps_per_epoch = s->fed.fedavg ? (int)s->fed.k /* (an epoch of the log is a round) */
                                           : (int)LK_MAX(1, ((s->fed.total + world - 1) / world + o->batch - 1) / o->batch);
    } else {
        LK_CHECK(lk_sampler_init(&s->sampler, s->train.n, o->batch, rank, world, o->seed, 1));
        if (s->sampler.steps < 1)
            return LK_ERR(LK_ERR_ARG, "--batch %d x %d ranks: no step fits in %d training samples",
                          o->batch, world, s->train.n);
        s->steps_per_epoch = (s->sampler.steps + o->accum - 1) / o->accum;
    }
    s->total = o->steps > 0 ? o->steps : (long)o->epochs * s->steps_per_epoch;
    s->epochs = (int)((s->total + s->steps_per_epoch - 1) / s->steps_per_epoch);
    lk_optim_config oc = o->optim;
    oc.total_steps = s->total;
    if (oc.decay == LK_DECAY_DEFAULT) oc.decay = s->r.zoo->decay_matrices ? LK_DECAY_MATRICES : LK_DECAY_ALL;
    LK_CHECK(lk_zero_create(&s->zero, s->comm, m, o->zero, (size_t)(o->bucket_mb * 1048576.0)));
    /* the optimizer's state is made for this rank's slice from the start */
    LK_CHECK(lk_optim_create_slice(&s->opt, s->r.dev, &oc, m->nparams, s->zero->shard.lo, s->zero->shard.hi));
    LK_CHECK(lk_zero_bind(s->zero, s->opt));
    LK_CHECK(lk_optim_decay_model(s->opt, m));
    lk_optim_set_working(s->opt, m->params16, &m->round); /* the step rewrites the bf16 copy */
    s->gan.zero = s->zero;
    if (o->resume_dir) LK_CHECK(resume(o, s, &s->epoch, &s->step));
    if (o->init_from) LK_CHECK(init_from(o, s));
    LK_CHECK(freeze(o, s));
    LK_CHECK(lk_averager_init(&s->avg, s->comm, m, s->opt, s->fed.fedavg ? 0 : o->local_steps, o->local_start,
                              s->step));
    LK_CHECK(setup_dp(o, s));
    LK_CHECK(setup_fed(o, s));
    LK_CHECK(agree(o, s));
    LK_CHECK(lk_guard_open(&s->guard, s->r.dev, (lk_nan_policy)o->nan_policy, o->max_skips, o->skip_spikes,
                           rank == 0));
    if (s->opt) s->opt->skip = &s->guard.state->skip; /* (the optimizer's pass reads the verdict) */
    if (s->gan.r) s->gan.guard = &s->guard, s->gan.comm = s->comm;
    if (!s->r.dev->host_addressable) { /* broadcasts and replica checks read the parameters here */
        s->host_params = lk_malloc(m->nparams * sizeof(float));
        if (!s->host_params) return LK_ERR(LK_ERR_NOMEM, "cannot allocate a host copy of the parameters");
    }
    LK_CHECK(lk_dist_broadcast_params(s->comm, m, s->host_params));
    if (world > 1) LK_CHECK(setup_comm(o, s));
    else LK_CHECK(lk_model_alloc_grads(m));
    lk_buckets *psgd[2];
    lk_run_bucket_sets(s, psgd);
    char why[700] = "";
    if (o->resume_dir && psgd[0] && psgd[0]->psgd)
        LK_CHECK(lk_buckets_psgd_load(psgd, 2, s->resumed_from, s->step, why, sizeof why));
    /* model FLOPs per sample, and the peak they are measured against (every rank's) */
    s->flops_sample = s->gan.r ? lk_gan_flops(&s->gan) : 3.0 * lk_model_flops(m, 0, m->nlayers);
    s->peak = s->own_peak.flops; /* (own_peak: found before the model was built) */
    LK_CHECK(lk_comm_allreduce_f64(s->comm, &s->peak, 1, LK_REDUCE_SUM));
    if (rank == 0) LK_CHECK(lk_metrics_open(&s->metrics, o->metrics_path));
    s->step_ms = lk_malloc((size_t)LK_MAX(s->total, 1) * sizeof(double));
    if (!s->step_ms) return LK_ERR(LK_ERR_NOMEM, "cannot allocate step timers");

    /* a line per layer (gpt2-xl has 582) */
    const size_t desc_len = (size_t)m->nlayers * 96 + 128;
    char *desc = lk_malloc(desc_len);
    if (!desc) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the model description");
    lk_model_describe(m, desc, desc_len);
    lk_progress_line(prog,
                     "model %s on %d rank%s x %s (%d thread%s), batch %d x %d ranks x %d accum, "
                     "%d training / %d validation samples\n%s",
                     o->model, world, world == 1 ? "" : "s", s->r.dev->name, s->r.dev->threads,
                     s->r.dev->threads == 1 ? "" : "s", o->batch, world, o->accum, s->train.n,
                     s->val.n, desc);
    lk_free(desc);
    lk_progress_line(prog, "rank 0 on %s: cores %s (NUMA %s)%s%s", s->comm->host,
                     s->binding.cores, s->binding.numa, s->binding.bound ? ", bound" : "; ",
                     s->binding.bound ? "" : s->binding.note);
    lk_progress_line(prog, "model FLOPs %.4g GFLOP per sample (forward + backward); peak %.4g "
                     "TFLOP/s (rank 0: %s)%s",
                     s->flops_sample * 1e-9, s->peak * 1e-12, s->own_peak.source,
                     world > 1 ? ", summed over the ranks" : "");
    const lk_buckets *any = s->buckets ? s->buckets : s->gan.bd;
    if (any)
        lk_progress_line(prog, "gradient %s: %s, %d bucket%s of <= %.2f MB%s, progressed %s",
                         s->zero->stage ? "reduce-scatter" : "all-reduce",
                         s->comm->nccl                        ? lk_nccl_version()
                         : s->comm->shm && o->grad_dtype != LK_F32 ? "shared memory between the ranks of the host"
                         : s->comm->shm                       ? s->comm->shm_note
                                                              : s->comm->library,
                         any->n + (s->gan.bg ? s->gan.bg->n : 0),
                         any->n + (s->gan.bg ? s->gan.bg->n : 0) == 1 ? "" : "s",
                         o->bucket_mb, s->gan.bg ? " (the discriminator's and the generator's)" : "",
                         s->comm->nccl ? "on its own CUDA stream"
                         : any->mode == LK_PROGRESS_THREAD ? "by a comm thread"
                                                           : "between layers");
    if (world > 1 && !strcmp(s->comm->vt->name, "mpi") && !s->comm->mpi_deadline)
        lk_progress_line(prog, "warning: this MPI library does not provide MPI_THREAD_MULTIPLE, so MPI's own "
                         "collectives have no --comm-timeout: a rank that stalls holds the others");
    if (s->zero->stage)
        lk_progress_line(prog, "--zero %d: rank 0 owns parameters [%zu, %zu) of %zu (optimizer state%s kept "
                         "for them only; the parameters all-gathered after each step)", s->zero->stage, s->zero->shard.lo,
                         s->zero->shard.hi, m->nparams, s->zero->stage == 2 ? " and gradients" : "");
    if (o->recompute)
        lk_progress_line(prog, "--recompute %s: activations %.2f GB (the plan's)",
                         lk_recompute_name((lk_recompute)o->recompute), s->plan.host[LK_MEM_ACT] / 1e9 +
                         s->plan.dev[LK_MEM_ACT] / 1e9);
    if (o->precision == LK_BF16) {
        char how[160] = "cuBLAS and cuDNN on the tensor cores";
        if (s->r.dev->kind == LK_DEV_CPU) {
            lk_cpu_math_info mi;
            lk_backend_cpu_math_info(&mi);
            if (mi.bf16_onednn) snprintf(how, sizeof how, "oneDNN %s", mi.bf16_kernel);
            else snprintf(how, sizeof how, "float32 products of bf16-rounded operands, the same values");
            if (!mi.bf16_native && rank == 0)
                fprintf(stderr, "warning: --precision bf16: this CPU has no bf16 instructions (AVX-512 "
                                "BF16 or AMX): bf16 products run as float32 products of bf16-rounded "
                                "operands (the same values, float32's speed)\n");
        }
        lk_progress_line(prog, "--precision bf16: products and convolutions in bf16 (%s), float32 "
                               "masters and optimizer state, %s",
                         how, !m->params16 ? "which the products round to nearest even as they read them"
                              : o->stochastic_round ? "a bf16 working copy rounded stochastically"
                                                    : "a bf16 working copy rounded to nearest even");
    }
    if (o->local_steps && world > 1 && !s->fed.fedavg)
        lk_progress_line(prog, "--local-steps %ld: after %ld data-parallel steps each rank steps on its own "
                               "gradients; parameters and optimizer state averaged every %ld steps",
                         o->local_steps, o->local_start, o->local_steps);
    if (o->powersgd_rank && world > 1)
        lk_progress_line(prog, "--grad-compress powersgd:%d: matrices sent as rank-%d P and Q with error feedback "
                               "(after %ld plain steps), the other tensors uncompressed%s%s%s",
                         o->powersgd_rank, o->powersgd_rank, o->compress_start,
                         psgd[0] && lk_buckets_psgd_on_host(psgd[0])
                             ? "; this host's ranks sum them in shared memory first, one residual split by rows"
                             : "",
                         why[0] ? "; residuals and Q " : "", why);
    if (o->grad_dtype != LK_F32 && world > 1)
        lk_progress_line(prog, "--grad-compress %s: gradient buckets travel as %s, scaled by 1/%d, each "
                               "rank's part summed in float32 and rounded once (%s)",
                         lk_dtype_name((lk_dtype)o->grad_dtype), lk_dtype_name((lk_dtype)o->grad_dtype), world,
                         s->r.dev->kind == LK_DEV_CUDA && s->comm->nccl
                             ? (o->grad_dtype == LK_F16 ? "NCCL's ncclFloat16" : "NCCL's ncclBfloat16")
                         : s->comm->shm ? "lockstep's shared memory: each rank adds a slice of every rank's values"
                                        : "MPI: exchange, add, all-gather");
    if (o->init_from)
        lk_progress_line(prog, "weights from %s (--init-from: a fresh optimizer and schedule)", s->resumed_from);
    if (o->new_head)
        lk_progress_line(prog, "--new-head: layer %d (%s) starts afresh for %d classes", s->new_head,
                         m->layers[s->new_head]->vt->type, s->train.nclasses);
    if (o->freeze)
        lk_progress_line(prog, "--freeze %s: %d tensors kept as they are, %zu parameters train; gradients "
                         "[%zu, %zu) of %zu reduced", o->freeze, s->frozen_tensors, s->kept, s->grad_lo, s->grad_hi,
                         m->nparams);
    if (o->resume_dir)
        lk_progress_line(prog, "resumed from %s at epoch %d, step %ld%s", s->resumed_from, s->epoch,
                         s->step, s->epoch_step ? " (inside the epoch: its sampler continues)" : "");
    return LK_OK;
}
