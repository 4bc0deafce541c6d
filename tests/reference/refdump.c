/* refdump.c - what lockstep computes for one zoo model, written out for its PyTorch
 * twin to recompute (tests/reference/check.py):
 *
 *   lk_refdump MODEL OUT.safetensors [--steps K] [--optim NAME] [--lr X] [--batch B]
 *              [--seed S] [--data SPEC] [--init NAME] [--weight-decay X]
 *              [--layers N --heads N --dim N --ctx N] [--weights-every K]
 *              [--precision fp32|bf16]
 *
 * OUT holds, for the training samples [0, B) of SPEC (default fashion-mnist):
 *   input, labels          the batch as the model saw it (labels as floats; for the
 *                          steps: step<s>.input, step<s>.labels)
 *   init.<param>           the initial weights (PyTorch names and shapes)
 *   out, loss              the training-mode forward and its loss
 *   grad.<param>           d(loss)/d(param) from lockstep's backward
 *   noise.<layer>          the N(0,1) draws of a sampling layer (the VAE's; the same in
 *                          every forward here)
 * and for each of K optimizer steps s = 1..K on the batches [s*B, (s+1)*B):
 *   step<s>.loss           the loss before the update
 *   step<s>.<param>        the weights after it (every K-th step and the last with
 *                          --weights-every K: long runs, big models)
 * A GAN instead writes for each step s its reals (step<s>.input), the latent codes of its
 * two halves (step<s>.z_d, step<s>.z_g), both losses (step<s>.loss_d: real + fake,
 * step<s>.loss_g) and the weights after it.
 * __metadata__ says the model, optimizer, learning rate, batch and steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/checkpoint.h"
#include "core/ops.h"
#include "core/rng.h"
#include "models/zoo.h"
#include "train/gan.h"
#include "train/replica.h"

#define MAX_TENSORS 4096

typedef struct {
    lk_st_tensor t[MAX_TENSORS];
    char *names[MAX_TENSORS];
    float *bufs[MAX_TENSORS];
    int n;
} dump;

static lk_status add(dump *d, const char *name, int ndim, const int64_t *shape, const float *data,
                     lk_device *dev)
{
    if (d->n == MAX_TENSORS) return LK_ERR(LK_ERR_ARG, "too many tensors to dump");
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *copy = malloc((n ? n : 1) * sizeof *copy);
    char *nm = strdup(name);
    if (!copy || !nm) return LK_ERR(LK_ERR_NOMEM, "out of memory");
    if (dev) lk_copy_to_host(dev, copy, data, n * sizeof *copy);
    else memcpy(copy, data, n * sizeof *copy);
    lk_st_tensor *t = &d->t[d->n];
    t->name = nm;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = copy;
    d->names[d->n] = nm;
    d->bufs[d->n++] = copy;
    return LK_OK;
}

/* every parameter (or its gradient) under prefix */
static lk_status add_params(dump *d, const lk_model *m, const char *prefix, int grads)
{
    for (int i = 0; i < lk_model_param_count(m); i++) {
        char pname[64], name[96];
        const lk_param *p = lk_model_param(m, i, pname, sizeof pname);
        if (grads && p->buffer) continue; /* running statistics have no gradient */
        snprintf(name, sizeof name, "%s%s", prefix, pname);
        int64_t shape[LK_MAX_DIMS];
        for (int k = 0; k < p->shape.ndim; k++) shape[k] = p->shape.d[k];
        LK_CHECK(add(d, name, p->shape.ndim, shape, grads ? p->g : p->w, m->dev));
    }
    return LK_OK;
}

static lk_status scalar(dump *d, const char *name, const float *dev_value, lk_device *dev)
{
    int64_t one = 1;
    return add(d, name, 1, &one, dev_value, dev);
}

/* the batch just run: "input"/"labels" (step 0) or "step<s>.input"/"step<s>.labels" */
static lk_status add_batch(dump *d, const lk_replica *r, int step)
{
    const lk_model *m = r->model;
    const int B = m->max_batch;
    char name[32], prefix[16] = "";
    if (step) snprintf(prefix, sizeof prefix, "step%d.", step);
    int64_t shape[LK_MAX_DIMS + 1] = {B};
    for (int k = 0; k < m->in_shape.ndim; k++) shape[k + 1] = m->in_shape.d[k];
    snprintf(name, sizeof name, "%sinput", prefix);
    LK_CHECK(add(d, name, m->in_shape.ndim + 1, shape, m->act[0], m->dev));
    const size_t nl = (size_t)B * r->ylen;
    float *labels = malloc(nl * sizeof *labels);
    int32_t *host = malloc(nl * sizeof *host);
    if (!labels || !host) return LK_ERR(LK_ERR_NOMEM, "out of memory");
    lk_copy_to_host(m->dev, host, r->labels, nl * sizeof *host);
    for (size_t i = 0; i < nl; i++) labels[i] = (float)host[i];
    int64_t lshape[2] = {B, r->ylen};
    snprintf(name, sizeof name, "%slabels", prefix);
    lk_status st = add(d, name, r->ylen > 1 ? 2 : 1, lshape, labels, NULL);
    free(labels);
    free(host);
    return st;
}

/* the N(0,1) draws of every sampling layer at step 0 (every forward here runs step 0):
 * "noise.<layer index>" [B, zdim] */
static lk_status add_noise(dump *d, const lk_model *m, int B)
{
    for (int i = 0; i < m->nlayers; i++) {
        const lk_layer *l = m->layers[i];
        if (!lk_layer_is_reparam(l)) continue;
        const int z = l->out.d[0];
        float *eps = malloc((size_t)B * z * sizeof *eps);
        if (!eps) return LK_ERR(LK_ERR_NOMEM, "out of memory");
        for (size_t e = 0; e < (size_t)B * z; e++)
            eps[e] = lk_rng_normal(m->seed, LK_RNG_NOISE, lk_reparam_key(l, 0), e);
        char name[32];
        snprintf(name, sizeof name, "noise.%d", i);
        int64_t shape[2] = {B, z};
        lk_status st = add(d, name, 2, shape, eps, NULL);
        free(eps);
        LK_CHECK(st);
    }
    return LK_OK;
}

typedef struct {
    const char *model, *out, *data, *optim, *init;
    lk_arch arch;
    int steps, batch;
    int every; /* weights after every k-th step (and the last) */
    float lr, wd;
    int lr_set;
    uint64_t seed;
    lk_decay decay;
    lk_dtype precision;
} args;

/* forward + loss (+ backward) of samples [first, first + B); with d, the output is added
 * as "out" before the loss (which may write its gradient over it) */
static lk_status run_batch(lk_replica *r, const lk_dataset *ds, int first, int B, int backward,
                           lk_tensor *out, dump *d)
{
    for (int i = 0; i < B; i++) r->idx[i] = first + i;
    lk_replica_load_batch(r, ds, r->idx, B);
    LK_CHECK(lk_model_forward(r->model, B, 1, 0, out));
    if (d) {
        int64_t oshape[LK_MAX_DIMS + 1] = {B};
        for (int k = 1; k < out->shape.ndim; k++) oshape[k] = out->shape.d[k];
        if (out->type == LK_BF16) { /* a bf16 model's logits: dumped widened */
            const size_t n = lk_tensor_numel(out);
            uint16_t *h = malloc(n * sizeof *h + 2);
            float *f = malloc(n * sizeof *f + 4);
            if (!h || !f) return free(h), free(f), LK_ERR(LK_ERR_NOMEM, "out of memory");
            lk_copy_to_host(r->dev, h, out->data, n * sizeof *h);
            for (size_t i = 0; i < n; i++) f[i] = lk_bf16_to_f32(h[i]);
            const lk_status st = add(d, "out", out->shape.ndim, oshape, f, NULL);
            free(h), free(f);
            LK_CHECK(st);
        } else {
            LK_CHECK(add(d, "out", out->shape.ndim, oshape, out->data, r->dev));
        }
    }
    LK_CHECK(lk_replica_loss(r, out, B, backward, 1.0f, 0));
    if (backward) LK_CHECK(lk_model_backward_ex(r->model, B, 0, LK_GRADS_REPLACE));
    return LK_OK;
}

/* the latent codes of a GAN step: "step<s>.z_d" and "step<s>.z_g" [B, 64] */
static lk_status add_latents(dump *d, const lk_model *m, int B, int s, long step)
{
    float *z = malloc((size_t)B * LK_GAN_LATENT * sizeof *z);
    if (!z) return LK_ERR(LK_ERR_NOMEM, "out of memory");
    lk_status st = LK_OK;
    for (int half = 0; half < 2 && st == LK_OK; half++) {
        for (size_t e = 0; e < (size_t)B * LK_GAN_LATENT; e++)
            z[e] = lk_rng_normal(m->seed, LK_RNG_NOISE, lk_gan_z_key(step, half), e);
        char name[32];
        snprintf(name, sizeof name, "step%d.z_%c", s, half ? 'g' : 'd');
        st = add(d, name, 2, (int64_t[]){B, LK_GAN_LATENT}, z, NULL);
    }
    free(z);
    return st;
}

/* A GAN: each step is lk_gan_step on the real samples [(s-1)B, sB); the losses before the
 * updates, the latent codes and the weights after. */
static lk_status run_gan(const args *a, dump *d, lk_replica *r, const lk_dataset *ds, lk_optim *opt)
{
    lk_gan g;
    LK_CHECK(lk_gan_init(&g, r));
    lk_status st = LK_OK;
    const int B = a->batch;
    for (int s = 1; st == LK_OK && s <= a->steps; s++) {
        for (int i = 0; i < B; i++) r->idx[i] = (s - 1) * B + i;
        lk_gan_batch b = {r->idx, B, 0, 1.0f, 1.0f, s - 1, 0};
        lk_zero(r->dev, g.loss, 3 * sizeof(float));
        st = lk_gan_step(&g, opt, ds, &b);
        char name[32];
        if (st == LK_OK) st = add_latents(d, r->model, B, s, s - 1);
        /* the reals, as gathered ([0, 1]), through D's input buffer */
        float *reals = r->model->act[g.split];
        lk_replica_load_into(r, ds, r->idx, B, reals);
        snprintf(name, sizeof name, "step%d.input", s);
        if (st == LK_OK) st = add(d, name, 2, (int64_t[]){B, g.image}, reals, r->dev);
        snprintf(name, sizeof name, "step%d.loss_d", s);
        if (st == LK_OK) st = scalar(d, name, &g.loss[1], r->dev);
        snprintf(name, sizeof name, "step%d.loss_g", s);
        if (st == LK_OK) st = scalar(d, name, &g.loss[2], r->dev);
        snprintf(name, sizeof name, "step%d.", s);
        if (st == LK_OK) st = add_params(d, r->model, name, 0);
    }
    lk_gan_free(&g);
    return st;
}

static lk_status run(const args *a, dump *d)
{
    lk_dataset ds;
    memset(&ds, 0, sizeof ds);
    lk_replica r;
    memset(&r, 0, sizeof r);
    lk_optim *opt = NULL;
    lk_arch arch;
    lk_spec *spec = NULL; /* a built-in model, or a spec file (NAME.json) */
    const size_t len = strlen(a->model);
    lk_status st = len > 5 && !strcmp(a->model + len - 5, ".json") ? lk_spec_load(a->model, &spec)
                                                                    : lk_spec_builtin(a->model, &spec);
    if (st == LK_OK) st = lk_spec_arch(spec, &a->arch, &arch);
    if (st == LK_OK) st = lk_data_open(a->data, "train", arch.ctx, &ds);
    if (st == LK_OK && ds.n < (a->steps + 1) * a->batch)
        st = LK_ERR(LK_ERR_ARG, "%s has %d samples, fewer than %d", a->data, ds.n,
                    (a->steps + 1) * a->batch);
    lk_init_kind init = LK_INIT_DEFAULT;
    if (st == LK_OK) st = lk_init_parse(a->init, &init);
    if (st == LK_OK)
        st = lk_replica_open(&r, &(lk_replica_spec){"cpu", 1, spec, a->arch, ds.sample, ds.nclasses,
                                                    lk_dataset_ylen(&ds), a->batch, init, a->seed, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL,
                                                    a->precision, 0, 0});
    lk_model *m = r.model;
    const int B = a->batch;
    const int gan = st == LK_OK && r.zoo->target == LK_TARGET_REAL;
    if (st == LK_OK && gan) st = add_params(d, m, "init.", 0);
    if (st == LK_OK && !gan) {
        lk_tensor out;
        st = add_params(d, m, "init.", 0);
        if (st == LK_OK) st = run_batch(&r, &ds, 0, B, 1, &out, d);
        if (st == LK_OK) st = add_batch(d, &r, 0);
        if (st == LK_OK) st = scalar(d, "loss", &r.scalars[0], r.dev);
        if (st == LK_OK) st = add_params(d, m, "grad.", 1);
        if (st == LK_OK) st = add_noise(d, m, B);
    }
    lk_optim_kind kind = LK_OPT_SGD;
    if (st == LK_OK) st = lk_optim_parse(a->optim, &kind);
    lk_optim_config oc = lk_optim_defaults(kind);
    if (a->lr_set) oc.lr = a->lr;
    oc.weight_decay = a->wd;
    oc.total_steps = a->steps;
    oc.decay = a->decay;
    if (st == LK_OK) st = lk_optim_create(&opt, r.dev, &oc, m->nparams);
    if (st == LK_OK) lk_optim_set_working(opt, m->params16, &m->round);
    if (st == LK_OK) st = lk_optim_decay_model(opt, m);
    if (st == LK_OK && gan) st = run_gan(a, d, &r, &ds, opt);
    for (int s = 1; !gan && st == LK_OK && s <= a->steps; s++) {
        lk_tensor out;
        char name[32];
        st = run_batch(&r, &ds, s * B, B, 1, &out, NULL);
        if (st == LK_OK) st = add_batch(d, &r, s);
        snprintf(name, sizeof name, "step%d.loss", s);
        if (st == LK_OK) st = scalar(d, name, &r.scalars[0], r.dev);
        if (st == LK_OK) st = lk_optim_step(opt, m->params, m->grads, 1.0f);
        snprintf(name, sizeof name, "step%d.", s);
        if (st == LK_OK && (s % a->every == 0 || s == a->steps)) st = add_params(d, m, name, 0);
    }
    if (st == LK_OK) {
        char lr[32], batch[16], steps[16], seed[24];
        snprintf(lr, sizeof lr, "%.9g", (double)oc.lr);
        snprintf(batch, sizeof batch, "%d", B);
        snprintf(steps, sizeof steps, "%d", a->steps);
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->seed);
        const char *keys[] = {"model", "optimizer", "lr", "batch", "steps", "seed", "weight_decay"};
        char wd[32];
        snprintf(wd, sizeof wd, "%.9g", (double)oc.weight_decay);
        const char *vals[] = {a->model, lk_optim_name(kind), lr, batch, steps, seed, wd};
        st = lk_safetensors_write(a->out, d->t, d->n, keys, vals, 7);
    }
    lk_optim_destroy(opt);
    lk_replica_free(&r);
    lk_dataset_free(&ds);
    lk_spec_free(spec);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lk_refdump MODEL OUT.safetensors [--steps K] [--optim NAME] "
                        "[--lr X] [--batch B] [--seed S] [--data SPEC] [--init NAME] "
                        "[--weight-decay X] [--layers N --heads N --dim N --ctx N] "
                        "[--gelu erf|tanh] [--decay all|matrices] [--weights-every K]\n");
        return 2;
    }
    args a = {argv[1], argv[2], "fashion-mnist", "sgd", "default", {0, 0, 0, 0, LK_GELU_DEFAULT}, 3, 8, 1,
              0.0f, 0.0f, 0, 0, LK_DECAY_ALL, LK_F32};
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *f = argv[i], *v = argv[i + 1];
        if (!strcmp(f, "--steps")) a.steps = atoi(v);
        else if (!strcmp(f, "--optim")) a.optim = v;
        else if (!strcmp(f, "--lr")) a.lr = strtof(v, NULL), a.lr_set = 1;
        else if (!strcmp(f, "--batch")) a.batch = atoi(v);
        else if (!strcmp(f, "--seed")) a.seed = strtoull(v, NULL, 10);
        else if (!strcmp(f, "--data")) a.data = v;
        else if (!strcmp(f, "--init")) a.init = v;
        else if (!strcmp(f, "--weight-decay")) a.wd = strtof(v, NULL);
        else if (!strcmp(f, "--layers")) a.arch.layers = atoi(v);
        else if (!strcmp(f, "--heads")) a.arch.heads = atoi(v);
        else if (!strcmp(f, "--dim")) a.arch.dim = atoi(v);
        else if (!strcmp(f, "--ctx")) a.arch.ctx = atoi(v);
        else if (!strcmp(f, "--weights-every")) a.every = atoi(v);
        else if (!strcmp(f, "--gelu") && (!strcmp(v, "erf") || !strcmp(v, "tanh")))
            a.arch.gelu = strcmp(v, "tanh") ? LK_GELU_ERF : LK_GELU_TANH;
        else if (!strcmp(f, "--decay") && lk_decay_parse(v, &a.decay) == LK_OK) continue;
        else if (!strcmp(f, "--precision") && lk_precision_parse(v, &a.precision) == LK_OK) continue;
        else {
            fprintf(stderr, "lk_refdump: unknown flag %s\n", f);
            return 2;
        }
    }
    if (a.batch < 1 || a.batch > 4096 || a.steps < 0 || a.every < 1) {
        fprintf(stderr, "lk_refdump: --batch 1..4096, --steps >= 0, --weights-every >= 1\n");
        return 2;
    }
    dump *d = calloc(1, sizeof *d);
    if (!d) return 1;
    lk_status st = run(&a, d);
    for (int i = 0; i < d->n; i++) free(d->names[i]), free(d->bufs[i]);
    free(d);
    if (st != LK_OK) {
        fprintf(stderr, "lk_refdump: %s\n", lk_error_message());
        return 1;
    }
    return 0;
}
