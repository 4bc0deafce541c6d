/* gan.c - the GAN's alternating steps over the one chain of G then D. */
#include "gan.h"

#include <math.h>
#include <string.h>

#include "../core/ops.h"

/* purposes of the latent codes of a step (the layer field of LK_RNG_NOISE keys) */
enum { Z_FOR_D = 0xfff0, Z_FOR_G = 0xfff1, Z_EVAL = 0xfff2, Z_SAMPLE = 0xfff3 };

static uint64_t z_key(long step, int purpose) { return ((uint64_t)step << 16) | (uint64_t)purpose; }

uint64_t lk_gan_z_key(long step, int for_g) { return z_key(step, for_g ? Z_FOR_G : Z_FOR_D); }

lk_status lk_gan_init(lk_gan *g, lk_replica *r)
{
    memset(g, 0, sizeof *g);
    lk_model *m = r->model;
    g->r = r;
    g->split = lk_spec_gan_split(m);
    if (g->split <= 0) return LK_ERR(LK_ERR_STATE, "gan: no discriminator after the generator");
    g->d_end = lk_spec_gan_d_params(m);
    g->image = (int)lk_shape_numel(&m->layers[g->split]->in);
    const size_t B = (size_t)m->max_batch * sizeof(float);
    g->ones = lk_dev_alloc(r->dev, B);
    g->zeros = lk_dev_alloc(r->dev, B);
    g->loss = lk_dev_alloc(r->dev, 3 * sizeof(float));
    if (!g->ones || !g->zeros || !g->loss) return LK_ERR(LK_ERR_NOMEM, "gan: cannot allocate targets");
    lk_zero(r->dev, g->zeros, B);
    lk_zero(r->dev, g->ones, B);
    LK_CHECK(lk_affine(r->dev, g->ones, 0.0f, 1.0f, (size_t)m->max_batch));
    lk_zero(r->dev, g->loss, 3 * sizeof(float));
    return LK_OK;
}

void lk_gan_free(lk_gan *g)
{
    if (g->r && g->r->dev) {
        lk_dev_free(g->r->dev, g->ones);
        lk_dev_free(g->r->dev, g->zeros);
        lk_dev_free(g->r->dev, g->loss);
    }
    memset(g, 0, sizeof *g);
}

/* real images [0, 1] -> D's input in [-1, 1], the generator's range */
static lk_status load_reals(lk_gan *g, const lk_dataset *d, const int32_t *idx, int n)
{
    lk_model *m = g->r->model;
    float *dst = m->act[g->split];
    lk_replica_load_into(g->r, d, idx, n, dst);
    return lk_affine(g->r->dev, dst, 2.0f, -1.0f, (size_t)n * g->image);
}

/* z for n samples at global positions base.. into the model input */
static lk_status latents(lk_gan *g, int n, uint64_t seed, uint64_t key, long base)
{
    const size_t z = lk_shape_numel(&g->r->model->in_shape);
    return lk_randn(g->r->dev, lk_model_input(g->r->model), (size_t)n * z, seed, key, (uint64_t)base * z);
}

/* BCE of D's logits against a target; with dout, the gradient times scale; adds n x the
 * loss to *acc when acc is given */
static lk_status bce(lk_gan *g, const lk_tensor *out, int n, const float *target, float scale,
                     int grad, float *acc)
{
    lk_device *d = g->r->dev;
    LK_CHECK(lk_bce_logits(d, out->data, target, (size_t)n, &g->loss[0], grad ? g->r->model->dout : NULL,
                           scale));
    return acc ? lk_axpy(d, (float)n, &g->loss[0], acc, 1) : LK_OK;
}

static void arm(lk_gan *g, lk_buckets *b, int first, int last, int local)
{
    if (!b) return;
    g->r->model->grad_ready_user = b;
    lk_buckets_begin(b, first, last && !local);
}

/* one network's optimizer step: the trainer's way (ZeRO's), or, for a GAN stepped on its
 * own (no zero: one process, lk_refdump), every parameter of the range */
static lk_status step(lk_gan *g, lk_optim *opt, float scale, size_t lo, size_t hi, int last)
{
    if (g->zero) return lk_zero_step(g->zero, opt, scale, lo, hi, last);
    const lk_model *m = g->r->model;
    return lk_optim_step_part(opt, m->params, m->grads, scale, lo, hi, last);
}

/* The check of one network's update (guard.h): what this rank steps on of [lo, hi) (its
 * ZeRO slice's part, or all of it; its sum of squares as the network's buckets added it up
 * where they could) and the network's loss since begin */
static lk_status check(lk_gan *g, lk_buckets *bk, size_t lo, size_t hi, float *loss_acc, const lk_gan_batch *b)
{
    if (!g->guard) return LK_OK;
    const lk_model *m = g->r->model;
    const float *all = m->grads;
    size_t cnt = m->nparams, off = 0;
    if (g->zero) {
        lk_zero_step_grads(g->zero, &all, &cnt);
        off = g->zero->stage ? g->zero->shard.lo : 0;
    }
    const size_t a = LK_MAX(lo, off), e = LK_MIN(hi, off + cnt);
    const float *p = all + (a - off);
    int injected = 0;
    if (g->nan_at == b->step + 1 && e > a) { /* (the injected fault: D's, or G's where this rank's
                                                 ZeRO slice holds none of D's) */
        LK_CHECK(lk_scale(g->r->dev, (float *)p, NAN, 1));
        g->nan_at = 0;
        injected = 1;
    }
    double ss = 0.0;
    const int have = !injected && bk && lk_buckets_sumsq(bk, &ss);
    LK_CHECK(lk_guard_check(g->guard, g->comm, p, e > a ? e - a : 0, have ? &ss : NULL, loss_acc, b->n, b->step));
    /* (read at once where that is free: G's backward runs through D and would overwrite a
     * stopped D's gradient before the step's end) */
    return g->guard->every_step ? lk_guard_read(g->guard, m, b->step + 1) : LK_OK;
}

lk_status lk_gan_step(lk_gan *g, lk_optim *opt, const lk_dataset *d, const lk_gan_batch *b)
{
    lk_model *m = g->r->model;
    const int L = m->nlayers, n = b->n;
    lk_tensor out;
    m->sample_base = b->base;
    if (g->guard) LK_CHECK(lk_guard_begin(g->guard, &g->loss[1], b->step));
    /* D: reals are real, fakes are fake (the generator is not trained here) */
    LK_CHECK(load_reals(g, d, b->idx, n));
    LK_CHECK(lk_model_forward_range(m, g->split, L, n, 1, b->step, &out));
    LK_CHECK(bce(g, &out, n, g->ones, b->scale, 1, &g->loss[1]));
    arm(g, g->bd, 1, 0, b->local);
    LK_CHECK(lk_model_backward_range(m, g->split, n, b->step, LK_GRADS_REPLACE));
    if (g->bd) LK_CHECK(lk_buckets_finish(g->bd)); /* only ZeRO-2 reduces this one */
    LK_CHECK(latents(g, n, m->seed, z_key(b->step, Z_FOR_D), b->base));
    LK_CHECK(lk_model_forward_range(m, 0, L, n, 1, b->step, &out));
    LK_CHECK(bce(g, &out, n, g->zeros, b->scale, 1, &g->loss[1]));
    arm(g, g->bd, 0, 1, b->local); /* the discriminator's gradients are complete after this backward */
    LK_CHECK(lk_model_backward_range(m, g->split, n, b->step, LK_GRADS_ADD));
    if (g->bd) LK_CHECK(lk_buckets_finish(g->bd));
    LK_CHECK(check(g, g->bd, 0, g->d_end, &g->loss[1], b));
    LK_CHECK(step(g, opt, b->grad_scale, 0, g->d_end, 0));
    /* G: make D call its images real, through the updated D */
    if (g->guard) LK_CHECK(lk_guard_begin(g->guard, &g->loss[2], b->step));
    LK_CHECK(latents(g, n, m->seed, z_key(b->step, Z_FOR_G), b->base));
    LK_CHECK(lk_model_forward_range(m, 0, L, n, 1, b->step, &out));
    LK_CHECK(bce(g, &out, n, g->ones, b->scale, 1, &g->loss[2]));
    arm(g, g->bg, 1, 1, b->local);
    LK_CHECK(lk_model_backward_range(m, 0, n, b->step, LK_GRADS_REPLACE));
    if (g->bg) LK_CHECK(lk_buckets_finish(g->bg));
    LK_CHECK(check(g, g->bg, g->d_end, m->nparams, &g->loss[2], b));
    return step(g, opt, b->grad_scale, g->d_end, m->nparams, 1);
}

/* adds the batch's D loss (mean BCE x n) and its right calls (sign of the logit) */
static lk_status judge(lk_gan *g, const lk_tensor *out, int n, int real, double *loss_sum,
                       double *correct, float *host)
{
    LK_CHECK(bce(g, out, n, real ? g->ones : g->zeros, 1.0f, 0, NULL));
    float l;
    lk_copy_to_host(g->r->dev, &l, &g->loss[0], sizeof l);
    lk_copy_to_host(g->r->dev, host, out->data, (size_t)n * sizeof *host);
    LK_CHECK(lk_device_status(g->r->dev));
    *loss_sum += (double)l * n;
    for (int i = 0; i < n; i++) *correct += real ? host[i] > 0.0f : host[i] < 0.0f;
    return LK_OK;
}

lk_status lk_gan_eval(lk_gan *g, const lk_dataset *d, long first, double *loss_sum,
                      double *correct, double *count)
{
    lk_model *m = g->r->model;
    float *host = lk_malloc((size_t)m->max_batch * sizeof *host);
    if (!host) return LK_ERR(LK_ERR_NOMEM, "gan: cannot allocate the evaluation buffer");
    lk_status st = LK_OK;
    for (int start = 0, n = 0; st == LK_OK && start < d->n; start += n) {
        n = LK_MIN(m->max_batch, d->n - start);
        for (int i = 0; i < n; i++) g->r->idx[i] = start + i;
        lk_tensor out;
        st = load_reals(g, d, g->r->idx, n);
        if (st == LK_OK) st = lk_model_forward_range(m, g->split, m->nlayers, n, 0, 0, &out);
        if (st == LK_OK) st = judge(g, &out, n, 1, loss_sum, correct, host);
        if (st == LK_OK) st = latents(g, n, m->seed, z_key(0, Z_EVAL), first + start);
        if (st == LK_OK) st = lk_model_forward_range(m, 0, m->nlayers, n, 0, 0, &out);
        if (st == LK_OK) st = judge(g, &out, n, 0, loss_sum, correct, host);
        *count += 2.0 * n;
    }
    lk_free(host);
    return st;
}

double lk_gan_flops(const lk_gan *g)
{
    const lk_model *m = g->r->model;
    const double gf = lk_model_flops(m, 0, g->split), df = lk_model_flops(m, g->split, m->nlayers);
    return 4.0 * gf + 9.0 * df;
}

lk_status lk_gan_generate(lk_gan *g, int n, uint64_t seed, float *host)
{
    lk_model *m = g->r->model;
    for (int start = 0, k = 0; start < n; start += k) {
        k = LK_MIN(m->max_batch, n - start);
        lk_tensor out;
        LK_CHECK(latents(g, k, seed, z_key(0, Z_SAMPLE), start));
        LK_CHECK(lk_model_forward_range(m, 0, g->split, k, 0, 0, &out));
        float *dst = host + (size_t)start * g->image;
        lk_copy_to_host(g->r->dev, dst, out.data, (size_t)k * g->image * sizeof *dst);
        LK_CHECK(lk_device_status(g->r->dev));
        for (size_t i = 0; i < (size_t)k * g->image; i++) dst[i] = 0.5f * (dst[i] + 1.0f);
    }
    return LK_OK;
}
