/* gradcheck.h - central finite-difference gradient checks (header-only).
 *
 * The scalar objective is L = sum(out * R) for a fixed random R, so dL/dout = R is
 * what backward receives, plus the layers' own loss terms (the VAE's KL: aux_loss). The numeric gradient perturbs one float at a time by
 * +-eps, evaluates L in double precision and divides by the perturbation actually
 * stored in float. A value passes when
 *     |numeric - analytic| <= GC_RTOL * max(|numeric|, |analytic|, GC_FLOOR).
 * Everything runs on tu_cpu(), where device memory is host memory, so the checks
 * read and perturb parameters and activations in place. */
#ifndef LK_GRADCHECK_H
#define LK_GRADCHECK_H

#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers.h"
#include "core/model.h"
#include "core/ops.h"
#include "core/rng.h"

#define GC_SEED 20240607u
#define GC_EPS 1e-2   /* float32: large enough that rounding noise stays far below tol */
#define GC_RTOL 1e-2  /* relative tolerance ... */
#define GC_FLOOR 1e-2 /* ... of at least this magnitude (so 1e-4 absolute near zero) */
#define GC_SENTINEL 1234.5f /* written into dx first: backward must overwrite it */
/* static, and quiet when a test file uses only some of the helpers */
#define GC_API static __attribute__((unused))

/* |got - want| <= tol, in double, NaN fails. */
#define GC_NEAR(got, want, tol)                                                          \
    do {                                                                                 \
        double gc_g_ = (double)(got), gc_w_ = (double)(want);                            \
        if (!(fabs(gc_g_ - gc_w_) <= (double)(tol)))                                     \
            fail_msg("%s = %.9g, expected %.9g (tolerance %g)", #got, gc_g_, gc_w_,      \
                     (double)(tol));                                                     \
    } while (0)

typedef struct {
    int checked, failed;
    double worst; /* largest |err| / tolerance seen (< 1 passes) */
} gc_report;

/* Records one comparison; prints the first few failures. NaN fails. */
GC_API void gc_compare(gc_report *r, const char *what, size_t i, double num, double ana)
{
    double scale = fmax(fmax(fabs(num), fabs(ana)), GC_FLOOR);
    double ratio = fabs(num - ana) / (GC_RTOL * scale);
    r->checked++;
    if (ratio > r->worst || isnan(ratio)) r->worst = ratio;
    if (!(ratio <= 1.0)) {
        if (r->failed < 6)
            print_message("    %s[%zu]: numeric %.7g analytic %.7g\n", what, i, num, ana);
        r->failed++;
    }
}

/* got[i] must match ref[i] within tol * (1 + |ref|) (float32 forward, double ref). */
GC_API void gc_expect_close(const char *what, const float *got, const double *ref, size_t n,
                            double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - ref[i]) <= tol * (1.0 + fabs(ref[i]))))
            fail_msg("%s[%zu] = %.8g, reference %.8g", what, i, (double)got[i], ref[i]);
}

/* N(0,1) values keyed by `a`; with min_abs > 0 values closer than that to zero are
 * redrawn so ReLU-like kinks lie well outside +-eps. */
GC_API void gc_fill_normal(float *x, size_t n, uint64_t a, float min_abs)
{
    for (size_t i = 0; i < n; i++) {
        float v = 0.0f;
        for (uint64_t k = 0; k < 64; k++) {
            v = lk_rng_normal(GC_SEED, LK_RNG_TEST, a ^ (k << 40), i);
            if (fabsf(v) >= min_abs) break;
        }
        x[i] = v;
    }
}

/* A random permutation of evenly spaced values (spacing `step`, centred on 0): all
 * distinct, so max-pooling windows have no ties even after a +-eps nudge. */
GC_API void gc_fill_distinct(float *x, size_t n, uint64_t a, float step)
{
    for (size_t i = 0; i < n; i++) x[i] = ((float)i - (float)n / 2.0f) * step;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = lk_rng_below(GC_SEED, LK_RNG_TEST, a, i, (uint32_t)(i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* d objective / d *v by central differences; *v is restored bit-exactly. */
GC_API double gc_numeric(double (*objective)(void *), void *ctx, float *v, double eps)
{
    float v0 = *v, hi = (float)(v0 + eps), lo = (float)(v0 - eps);
    *v = hi;
    double lp = objective(ctx);
    *v = lo;
    double lm = objective(ctx);
    *v = v0;
    return (lp - lm) / ((double)hi - (double)lo);
}

/* floats of a layer's trainable parameters (buffers have no gradient) */
GC_API size_t gc_param_numel(const lk_layer *l)
{
    size_t n = 0;
    for (int j = 0; j < l->nparams; j++)
        if (!l->params[j].buffer) n += lk_shape_numel(&l->params[j].shape);
    return n;
}

/* ---- one layer, called through its vtable with our own x, y, dy, dx ---- */

typedef struct {
    lk_model *m;
    lk_layer *l;
    int batch, training, replace_grads;
    long step;
    size_t nx, ny;
    float *x, *y, *dy, *dx; /* dy is R */
} gc_layer;

/* Builds a one-layer model for `in` so params, saved state and workspace exist.
 * The model is built for batch + 1 so every check also runs a partial batch. */
GC_API void gc_layer_open(gc_layer *g, int ndim, const int *in, lk_layer *layer, int batch)
{
    memset(g, 0, sizeof *g);
    lk_shape s = lk_shape_make(ndim, in);
    TU_OK(lk_model_create(&g->m, tu_cpu(), &s));
    TU_OK(lk_model_add(g->m, layer));
    TU_OK(lk_model_build(g->m, batch + 1));
    TU_OK(lk_model_init(g->m, LK_INIT_DEFAULT, GC_SEED));
    g->l = g->m->layers[0];
    g->batch = batch;
    g->training = 1;
    g->step = 3;
    g->nx = (size_t)batch * lk_shape_numel(&g->l->in);
    g->ny = (size_t)batch * lk_shape_numel(&g->l->out);
    g->x = lk_dev_alloc(tu_cpu(), g->nx * sizeof(float));
    g->dx = lk_dev_alloc(tu_cpu(), g->nx * sizeof(float));
    g->y = lk_dev_alloc(tu_cpu(), g->ny * sizeof(float));
    g->dy = lk_dev_alloc(tu_cpu(), g->ny * sizeof(float));
    assert_true(g->x && g->dx && g->y && g->dy);
    gc_fill_normal(g->x, g->nx, 1, 0.0f);
    gc_fill_normal(g->dy, g->ny, 2, 0.0f);
}

GC_API void gc_layer_close(gc_layer *g)
{
    lk_dev_free(tu_cpu(), g->x);
    lk_dev_free(tu_cpu(), g->dx);
    lk_dev_free(tu_cpu(), g->y);
    lk_dev_free(tu_cpu(), g->dy);
    lk_model_destroy(g->m);
}

GC_API lk_ctx gc_ctx(const gc_layer *g)
{
    lk_ctx c = {.dev = tu_cpu(), .training = g->training, .seed = g->m->seed, .step = g->step,
                .workspace = g->m->workspace, .replace_grads = g->replace_grads,
                .aux_loss = g->m->aux_loss, .loss_scale = 1.0f};
    return c;
}

GC_API lk_status gc_forward(gc_layer *g)
{
    lk_ctx c = gc_ctx(g);
    *g->m->aux_loss = 0.0f;
    lk_tensor x = lk_tensor_batch(c.dev, g->x, g->batch, &g->l->in);
    lk_tensor y = lk_tensor_batch(c.dev, g->y, g->batch, &g->l->out);
    return g->l->vt->forward(g->l, &c, &x, &y);
}

/* backward with dy = R into dx (pre-filled with a sentinel) and the param grads. */
GC_API lk_status gc_backward(gc_layer *g)
{
    lk_ctx c = gc_ctx(g);
    for (size_t i = 0; i < g->nx; i++) g->dx[i] = GC_SENTINEL;
    lk_tensor x = lk_tensor_batch(c.dev, g->x, g->batch, &g->l->in);
    lk_tensor y = lk_tensor_batch(c.dev, g->y, g->batch, &g->l->out);
    lk_tensor dy = lk_tensor_batch(c.dev, g->dy, g->batch, &g->l->out);
    lk_tensor dx = lk_tensor_batch(c.dev, g->dx, g->batch, &g->l->in);
    return g->l->vt->backward(g->l, &c, &x, &y, &dy, &dx);
}

GC_API double gc_layer_objective(void *ctx)
{
    gc_layer *g = ctx;
    TU_OK(gc_forward(g));
    double s = *g->m->aux_loss; /* a layer's own loss term (the VAE's KL), 0 for most */
    for (size_t i = 0; i < g->ny; i++) s += (double)g->y[i] * g->dy[i];
    return s;
}

#define GC_ALL (-1)
/* Checks every parameter gradient and dx_samples input gradients (GC_ALL: every
 * one; fewer: random distinct-ish positions, for large inputs). Returns the
 * number of mismatches. */
GC_API int gc_layer_check(gc_layer *g, const char *name, int dx_samples, double eps)
{
    gc_report r = {0, 0, 0.0};
    size_t np = gc_param_numel(g->l);
    float *ana_p = malloc((np + 1) * sizeof(float)), *ana_x = malloc(g->nx * sizeof(float));
    assert_true(ana_p && ana_x);
    lk_model_zero_grad(g->m);
    TU_OK(gc_forward(g));
    TU_OK(gc_backward(g));
    memcpy(ana_x, g->dx, g->nx * sizeof(float));
    for (int j = 0, off = 0; j < g->l->nparams; j++) {
        if (g->l->params[j].buffer) continue;
        size_t n = lk_shape_numel(&g->l->params[j].shape);
        memcpy(ana_p + off, g->l->params[j].g, n * sizeof(float));
        off += (int)n;
    }
    char what[64];
    for (int j = 0, off = 0; j < g->l->nparams; j++) {
        lk_param *p = &g->l->params[j];
        if (p->buffer) continue;
        size_t n = lk_shape_numel(&p->shape);
        snprintf(what, sizeof what, "%s.%s", name, p->name);
        for (size_t e = 0; e < n; e++)
            gc_compare(&r, what, e, gc_numeric(gc_layer_objective, g, &p->w[e], eps),
                       ana_p[off + e]);
        off += (int)n;
    }
    snprintf(what, sizeof what, "%s.dx", name);
    size_t nd = dx_samples == GC_ALL || (size_t)dx_samples > g->nx ? g->nx : (size_t)dx_samples;
    for (size_t k = 0; k < nd; k++) {
        size_t e = nd == g->nx ? k : lk_rng_below(GC_SEED, LK_RNG_TEST, 99, k, (uint32_t)g->nx);
        gc_compare(&r, what, e, gc_numeric(gc_layer_objective, g, &g->x[e], eps), ana_x[e]);
    }
    print_message("  gradcheck %-22s %5d values, worst err/tol %.3g\n", name, r.checked, r.worst);
    free(ana_p);
    free(ana_x);
    return r.failed;
}

/* Copies the layer's parameter gradients into out (gc_param_numel floats). */
GC_API void gc_grads_get(const gc_layer *g, float *out)
{
    for (int j = 0; j < g->l->nparams; j++) {
        if (g->l->params[j].buffer) continue;
        size_t n = lk_shape_numel(&g->l->params[j].shape);
        memcpy(out, g->l->params[j].g, n * sizeof(float));
        out += n;
    }
}

/* Every parameter gradient equals factor * want (within float rounding); else
 * describes the first mismatch in bad (when it is still empty). */
GC_API void gc_grads_expect(const gc_layer *g, const float *want, float factor, const char *why,
                            char *bad, size_t bad_size)
{
    for (int j = 0; j < g->l->nparams; j++) {
        if (g->l->params[j].buffer) continue;
        const float *gr = g->l->params[j].g;
        for (size_t e = 0; e < lk_shape_numel(&g->l->params[j].shape); e++, want++)
            if (!(fabsf(gr[e] - factor * *want) <= 1e-5f * (1.0f + fabsf(gr[e]))) && !bad[0])
                snprintf(bad, bad_size, "%s: %s grad[%zu] = %g, expected %g", why,
                         g->l->params[j].name, e, (double)gr[e], (double)(factor * *want));
    }
}

/* backward ACCUMULATES parameter gradients by default and OVERWRITES them with
 * ctx->replace_grads (whatever they held: `stale` is written there first); dx is
 * always overwritten: two passes after one forward give 2x the gradients, or 1x
 * when replacing, and the same dx. Closes the layer, then reports (no leak on
 * failure). */
GC_API void gc_layer_check_grad_modes_and_close(gc_layer *g, float stale)
{
    size_t np = gc_param_numel(g->l);
    float *once = malloc((np + g->nx + 1) * sizeof(float));
    char bad[200] = "";
    assert_non_null(once);
    g->replace_grads = 0;
    lk_model_zero_grad(g->m);
    TU_OK(gc_forward(g));
    TU_OK(gc_backward(g));
    gc_grads_get(g, once);
    memcpy(once + np, g->dx, g->nx * sizeof(float));
    TU_OK(gc_backward(g));
    gc_grads_expect(g, once, 2.0f, "accumulate (second backward)", bad, sizeof bad);
    for (size_t e = 0; e < g->nx && !bad[0]; e++)
        if (g->dx[e] != once[np + e])
            snprintf(bad, sizeof bad, "dx[%zu] changed on a second backward (%g vs %g): it "
                     "must be overwritten", e, (double)g->dx[e], (double)once[np + e]);
    /* replace: the stale values must not leak in */
    g->replace_grads = 1;
    for (int j = 0; j < g->l->nparams; j++)
        for (size_t e = 0; !g->l->params[j].buffer && e < lk_shape_numel(&g->l->params[j].shape); e++)
            g->l->params[j].g[e] = stale;
    TU_OK(gc_backward(g));
    gc_grads_expect(g, once, 1.0f, isnan(stale) ? "replace over NaN" : "replace over stale", bad,
                    sizeof bad);
    TU_OK(gc_backward(g));
    gc_grads_expect(g, once, 1.0f, "replace (second backward)", bad, sizeof bad);
    free(once);
    gc_layer_close(g);
    if (bad[0]) fail_msg("%s", bad);
}

/* ---- a whole model through lk_model_forward / lk_model_backward ---- */

typedef struct {
    lk_model *m;
    int batch, training;
    long step;
    float *r;
    size_t ny;
} gc_model;

GC_API double gc_model_objective(void *ctx)
{
    gc_model *g = ctx;
    lk_tensor out;
    TU_OK(lk_model_forward(g->m, g->batch, g->training, g->step, &out));
    double s = *g->m->aux_loss;
    for (size_t i = 0; i < g->ny; i++) s += (double)out.data[i] * g->r[i];
    return s;
}

/* Checks every parameter gradient of a built model on the input already in
 * lk_model_input(m) (token ids, say). Returns the mismatch count. */
GC_API int gc_model_check_on_input(lk_model *m, const char *name, int batch, int training,
                                   long step, double eps)
{
    gc_model g = {m, batch, training, step, NULL, 0};
    lk_shape os = lk_model_out_shape(m);
    g.ny = (size_t)batch * lk_shape_numel(&os);
    g.r = malloc(g.ny * sizeof(float));
    float *ana = malloc((m->nparams + 1) * sizeof(float));
    assert_true(g.r && ana);
    gc_fill_normal(g.r, g.ny, 4, 0.0f);
    lk_model_zero_grad(m);
    lk_tensor out;
    TU_OK(lk_model_forward(m, batch, training, step, &out));
    memcpy(m->dout, g.r, g.ny * sizeof(float));
    TU_OK(lk_model_backward(m, batch, step));
    memcpy(ana, m->grads, m->nparams * sizeof(float));
    gc_report r = {0, 0, 0.0};
    char what[64];
    for (int i = 0; i < lk_model_param_count(m); i++) {
        char pname[32];
        const lk_param *p = lk_model_param(m, i, pname, sizeof pname);
        if (p->buffer) continue;
        snprintf(what, sizeof what, "%s:%s", name, pname);
        for (size_t e = 0; e < lk_shape_numel(&p->shape); e++)
            gc_compare(&r, what, e, gc_numeric(gc_model_objective, &g, &p->w[e], eps),
                       ana[p->offset + e]);
    }
    print_message("  gradcheck %-22s %5d values, worst err/tol %.3g\n", name, r.checked, r.worst);
    free(g.r);
    free(ana);
    return r.failed;
}

/* The same on N(0,1) inputs. */
GC_API int gc_model_check(lk_model *m, const char *name, int batch, int training, long step,
                          double eps)
{
    gc_fill_normal(lk_model_input(m), (size_t)batch * lk_shape_numel(&m->in_shape), 3, 0.0f);
    return gc_model_check_on_input(m, name, batch, training, step, eps);
}

#endif
