/* trainer.c - the training loop. Everything it needs is allocated before the
 * first step; a step is gather -> copy -> forward -> loss -> backward -> update. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "../data/dataset.h"
#include "../models/zoo.h"
#include "ckptdir.h"
#include "metrics.h"
#include "replica.h"

lk_train_opts lk_train_defaults(void)
{
    lk_train_opts o;
    memset(&o, 0, sizeof o);
    o.model = "cnn";
    o.data = "fashion-mnist";
    o.epochs = 1;
    o.batch = 64;
    o.optim = lk_optim_defaults(LK_OPT_MOMENTUM);
    o.init = LK_INIT_DEFAULT;
    o.device = "auto";
    o.log_every = 50;
    o.progress = -1;
    return o;
}

static lk_status check_labels(const lk_model *m, const lk_dataset *d)
{
    lk_shape os = lk_model_out_shape(m);
    if (os.ndim != 1 || os.d[0] != d->nclasses)
        return LK_ERR(LK_ERR_SHAPE, "model output has %zu values per sample but %s has %d classes",
                      lk_shape_numel(&os), d->name, d->nclasses);
    return LK_OK;
}

/* Mean loss and accuracy over the whole of d, in eval mode. */
static lk_status evaluate(lk_replica *r, const lk_dataset *d, double *loss, double *acc)
{
    lk_model *m = r->model;
    double loss_sum = 0.0, correct = 0.0;
    int feats = (int)lk_shape_numel(&m->layers[m->nlayers - 1]->out);
    for (int start = 0, n = 0; start < d->n; start += n) {
        lk_tensor out;
        LK_CHECK(lk_replica_infer(r, d, start, &n, &out));
        lk_loss_args la = {.out = out.data, .labels = r->labels, .batch = n, .features = feats};
        LK_CHECK(lk_loss(r->dev, r->loss, &la, &r->scalars[0], NULL, 1.0f));
        LK_CHECK(lk_count_correct(r->dev, out.data, r->labels, n, feats, &r->scalars[1]));
        float s[2];
        lk_copy_to_host(r->dev, s, r->scalars, sizeof s);
        loss_sum += (double)s[0] * n;
        correct += s[1];
    }
    *loss = loss_sum / d->n;
    *acc = correct / d->n;
    return LK_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill_run_config(lk_run_config *rc, const lk_train_opts *o, const lk_dataset *d,
                            const lk_optim *opt, int epoch)
{
    memset(rc, 0, sizeof *rc);
    snprintf(rc->model, sizeof rc->model, "%s", o->model);
    snprintf(rc->data, sizeof rc->data, "%s", o->data);
    rc->in_shape = d->sample;
    rc->nclasses = d->nclasses;
    for (int i = 0; i < d->nclasses && i < 16; i++)
        snprintf(rc->class_names[i], sizeof rc->class_names[i], "%s",
                 d->class_names ? d->class_names[i] : "");
    rc->epoch = epoch;
    rc->step = opt->step;
    rc->seed = o->seed;
    rc->batch = o->batch;
    rc->world = 1;
    rc->optim = opt->cfg;
}

typedef struct {
    lk_dataset train, val;
    lk_replica r;
    lk_optim *opt;
    lk_sampler sampler;
    lk_metrics metrics;
    double *step_ms;
} run_state;

static void run_free(run_state *s)
{
    lk_dataset_free(&s->train);
    lk_dataset_free(&s->val);
    lk_optim_destroy(s->opt);
    lk_replica_free(&s->r);
    lk_sampler_free(&s->sampler);
    lk_metrics_close(&s->metrics);
    lk_free(s->step_ms);
}

static lk_status open_data(const lk_train_opts *o, run_state *s)
{
    LK_CHECK(lk_data_open(o->data, "train", &s->train));
    LK_CHECK(lk_data_open(o->data, "test", &s->val));
    if (o->train_limit > 0 && o->train_limit < s->train.n) lk_dataset_truncate(&s->train, o->train_limit);
    if (o->val_limit > 0 && o->val_limit < s->val.n) lk_dataset_truncate(&s->val, o->val_limit);
    return LK_OK;
}

/* Restores weights, optimizer state and position from a checkpoint directory. */
static lk_status resume(const lk_train_opts *o, run_state *s, int *epoch, long *step)
{
    lk_run_config rc;
    char path[600];
    LK_CHECK(lk_ckptdir_load_config(o->resume_dir, &rc));
    if (strcmp(rc.model, o->model))
        return LK_ERR(LK_ERR_ARG, "--resume %s holds model '%s' but --model is '%s'", o->resume_dir,
                      rc.model, o->model);
    if (rc.optim.kind != s->opt->cfg.kind)
        return LK_ERR(LK_ERR_ARG, "--resume %s was trained with --optim %s, not %s", o->resume_dir,
                      lk_optim_name(rc.optim.kind), lk_optim_name(s->opt->cfg.kind));
    LK_CHECK(lk_checkpoint_load_weights(lk_ckptdir_path(o->resume_dir, "model.safetensors", path, sizeof path),
                                        s->r.model));
    LK_CHECK(lk_checkpoint_load_optim(lk_ckptdir_path(o->resume_dir, "optim.safetensors", path, sizeof path),
                                      s->r.model, s->opt));
    *epoch = rc.epoch;
    *step = s->opt->step;
    return LK_OK;
}

static lk_status train_run(const lk_train_opts *o, run_state *s, lk_train_result *res)
{
    double t_start = lk_now();
    LK_CHECK(open_data(o, s));
    LK_CHECK(lk_replica_open(&s->r, o->device, o->threads, o->model, &s->train.sample,
                          s->train.nclasses, o->batch, o->init, o->seed));
    lk_model *m = s->r.model;
    LK_CHECK(check_labels(m, &s->train));
    LK_CHECK(lk_sampler_init(&s->sampler, s->train.n, o->batch, 0, 1, o->seed, 1));
    if (s->sampler.steps < 1)
        return LK_ERR(LK_ERR_ARG, "--batch %d: no full step fits in %d training samples", o->batch,
                      s->train.n);

    long total = o->steps > 0 ? o->steps : (long)o->epochs * s->sampler.steps;
    int epochs = (int)((total + s->sampler.steps - 1) / s->sampler.steps);
    lk_optim_config oc = o->optim;
    oc.total_steps = total;
    LK_CHECK(lk_optim_create(&s->opt, s->r.dev, &oc, m->nparams));
    int epoch0 = 0;
    long step = 0;
    if (o->resume_dir) LK_CHECK(resume(o, s, &epoch0, &step));
    LK_CHECK(lk_metrics_open(&s->metrics, o->metrics_path));
    s->step_ms = lk_malloc((size_t)LK_MAX(total, 1) * sizeof(double));
    if (!s->step_ms) return LK_ERR(LK_ERR_NOMEM, "cannot allocate step timers");

    lk_progress prog;
    lk_progress_init(&prog, o->progress, o->quiet);
    char desc[4096];
    lk_model_describe(m, desc, sizeof desc);
    lk_progress_line(&prog, "model %s on %s (%d thread%s), %d training / %d validation samples\n%s",
                     o->model, s->r.dev->name, s->r.dev->threads, s->r.dev->threads == 1 ? "" : "s",
                     s->train.n, s->val.n, desc);
    if (o->resume_dir)
        lk_progress_line(&prog, "resumed from %s at epoch %d, step %ld", o->resume_dir, epoch0, step);

    const int feats = s->train.nclasses;
    const long first_step = step;
    double val_loss = NAN, val_acc = NAN;
    int epoch = epoch0;
    long timed = 0;
    while (step < total) {
        lk_sampler_set_epoch(&s->sampler, epoch);
        double log_t0 = lk_now(), log_samples = 0;
        long log_n = 0;
        lk_zero(s->r.dev, &s->r.scalars[2], sizeof(float));
        for (int i = 0; i < s->sampler.steps && step < total; i++) {
            double t0 = lk_now();
            int n = lk_sampler_batch(&s->sampler, i, s->r.idx);
            lk_replica_load_batch(&s->r, &s->train, s->r.idx, n);
            lk_tensor out;
            LK_CHECK(lk_model_forward(m, n, 1, step, &out));
            lk_loss_args la = {.out = out.data, .labels = s->r.labels, .batch = n, .features = feats};
            LK_CHECK(lk_loss(s->r.dev, s->r.loss, &la, &s->r.scalars[0], m->dout, 1.0f));
            LK_CHECK(lk_axpy(s->r.dev, 1.0f, &s->r.scalars[0], &s->r.scalars[2], 1));
            LK_CHECK(lk_model_backward_ex(m, n, step, LK_GRADS_REPLACE));
            LK_CHECK(lk_optim_step(s->opt, m->params, m->grads, 1.0f));
            step++;
            s->step_ms[timed++] = (lk_now() - t0) * 1e3;
            log_samples += n;
            log_n++;
            int last = i + 1 == s->sampler.steps || step == total;
            if (log_n == o->log_every || last) {
                double loss = lk_read_scalar(s->r.dev, &s->r.scalars[2]) / (double)log_n;
                if (!isfinite(loss))
                    return LK_ERR(LK_ERR_STATE, "training loss is %g at step %ld (diverged: lower --lr?)",
                                  loss, step);
                double dt = lk_now() - log_t0;
                lk_step_record rec = {step, epoch + 1, loss, s->opt->last_lr, log_samples / dt,
                                      dt * 1e3 / (double)log_n, 0.0};
                LK_CHECK(lk_metrics_step(&s->metrics, &rec));
                lk_progress_step(&prog, epoch + 1, epochs, i + 1, s->sampler.steps, loss,
                                 rec.samples_per_s, 1);
                lk_zero(s->r.dev, &s->r.scalars[2], sizeof(float));
                log_t0 = lk_now();
                log_samples = 0;
                log_n = 0;
            }
            if ((o->eval_every > 0 && step % o->eval_every == 0) || last) {
                LK_CHECK(evaluate(&s->r, &s->val, &val_loss, &val_acc));
                LK_CHECK(lk_metrics_eval(&s->metrics, step, epoch + 1, val_loss, val_acc));
                lk_progress_line(&prog, "epoch %d step %ld: val_loss %.4f val_acc %.4f", epoch + 1,
                                 step, val_loss, val_acc);
                log_t0 = lk_now(); /* keep evaluation out of the throughput */
            }
        }
        epoch++;
        if (o->save_dir) {
            lk_run_config rc;
            fill_run_config(&rc, o, &s->train, s->opt, epoch);
            LK_CHECK(lk_ckptdir_save(o->save_dir, &rc, m, s->opt));
        }
    }

    /* throughput over the steps after warm-up (the first 10%, at most 20 steps) */
    long warm = LK_MIN(20, timed / 10);
    double sum = 0.0;
    for (long i = warm; i < timed; i++) sum += s->step_ms[i];
    long nt = timed - warm;
    qsort(s->step_ms + warm, (size_t)nt, sizeof(double), cmp_double);
    res->step_ms_median = nt > 0 ? s->step_ms[warm + nt / 2] : NAN;
    res->samples_per_s = nt > 0 && sum > 0 ? (double)o->batch * nt / (sum * 1e-3) : NAN;
    res->val_loss = val_loss;
    res->val_acc = val_acc;
    res->steps = step - first_step;
    lk_summary_record sr = {res->samples_per_s, res->step_ms_median, val_loss, val_acc,
                            lk_now() - t_start, step, warm, epochs, 1, o->batch, s->r.dev->name,
                            o->model};
    LK_CHECK(lk_metrics_summary(&s->metrics, &sr));
    lk_progress_line(&prog, "done: %ld steps, %.0f samples/s (median step %.3f ms), val_acc %.4f",
                     res->steps, res->samples_per_s, res->step_ms_median, val_acc);
    return LK_OK;
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
    if (!lk_zoo_find(o->model)) return lk_zoo_build(o->model, NULL, 0); /* names the known ones */
    lk_status st = train_run(o, &s, res);
    run_free(&s);
    return st;
}

lk_status lk_eval_checkpoint(const char *dir, const char *data_spec, const char *device,
                             int threads, int batch, lk_eval_result *res)
{
    lk_run_config rc;
    char path[600];
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    lk_dataset d;
    memset(&d, 0, sizeof d);
    LK_CHECK(lk_data_open(data_spec ? data_spec : rc.data, "test", &d));
    lk_replica r;
    memset(&r, 0, sizeof r);
    lk_status st = LK_OK;
    char a[64], b[64];
    if (!lk_shape_equal(&d.sample, &rc.in_shape))
        st = LK_ERR(LK_ERR_SHAPE, "checkpoint %s expects samples %s but %s has %s", dir,
                    lk_shape_str(&rc.in_shape, a, sizeof a), d.source,
                    lk_shape_str(&d.sample, b, sizeof b));
    else if (d.nclasses != rc.nclasses)
        st = LK_ERR(LK_ERR_SHAPE, "checkpoint %s has %d classes but %s has %d", dir, rc.nclasses,
                    d.source, d.nclasses);
    if (st == LK_OK)
        st = lk_replica_open(&r, device, threads, rc.model, &rc.in_shape, rc.nclasses, batch,
                          LK_INIT_DEFAULT, 0);
    if (st == LK_OK)
        st = lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                        r.model);
    if (st == LK_OK) st = evaluate(&r, &d, &res->loss, &res->acc);
    res->n = d.n;
    lk_replica_free(&r);
    lk_dataset_free(&d);
    return st;
}
