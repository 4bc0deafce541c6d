/* test_optim.c - every optimizer against a double-precision re-implementation of
 * PyTorch's torch.optim update rules, clipping, LR schedules and argument checks. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "core/optim.h"

#define N 6
#define STEPS 3

/* w0 includes 0 so sign(w) = 0 is exercised for L1 */
static const float W0[N] = {0.5f, -1.2f, 0.0f, 2.0f, -0.3f, 0.8f};
static const float G[STEPS][N] = {
    {0.3f, -0.7f, 0.2f, 0.0f, 1.5f, -0.05f},
    {-0.4f, -0.2f, 0.9f, 0.6f, 0.1f, 0.0f},
    {0.25f, 0.5f, -1.1f, -0.3f, 0.0f, 0.7f},
};

static double sgn(double x) { return (x > 0) - (x < 0); }

/* torch.optim, one step t (1-based) in double: SGD(momentum, nesterov), Adam, AdamW,
 * RMSprop(momentum), Adagrad. Coupled L2 (weight_decay) and L1 are added to the
 * gradient, except AdamW whose decay is decoupled: w *= 1 - lr*wd. */
static void ref_step(const lk_optim_config *c, long t, double lr, double gscale, const float *graw,
                     double *w, double *s1, double *s2)
{
    const double wd = c->weight_decay, mu = c->momentum, eps = c->eps;
    for (int i = 0; i < N; i++) {
        double g = graw[i] * gscale;
        if (c->kind != LK_OPT_ADAMW) g += wd * w[i];
        g += c->l1 * sgn(w[i]);
        switch (c->kind) {
        case LK_OPT_SGD: w[i] -= lr * g; break;
        case LK_OPT_MOMENTUM:
        case LK_OPT_NESTEROV:
            s1[i] = t == 1 ? g : mu * s1[i] + g; /* PyTorch's buffer starts as the gradient */
            w[i] -= lr * (c->kind == LK_OPT_NESTEROV ? g + mu * s1[i] : s1[i]);
            break;
        case LK_OPT_ADAM:
        case LK_OPT_ADAMW: {
            if (c->kind == LK_OPT_ADAMW) w[i] *= 1.0 - lr * wd;
            s1[i] = c->beta1 * s1[i] + (1.0 - c->beta1) * g;
            s2[i] = c->beta2 * s2[i] + (1.0 - c->beta2) * g * g;
            double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
            w[i] -= lr / bc1 * s1[i] / (sqrt(s2[i]) / sqrt(bc2) + eps);
            break;
        }
        case LK_OPT_RMSPROP: {
            s1[i] = c->alpha * s1[i] + (1.0 - c->alpha) * g * g;
            double avg = sqrt(s1[i]) + eps;
            if (mu > 0) {
                s2[i] = mu * s2[i] + g / avg;
                w[i] -= lr * s2[i];
            } else {
                w[i] -= lr * g / avg;
            }
            break;
        }
        case LK_OPT_ADAGRAD:
            s1[i] += g * g;
            w[i] -= lr * g / (sqrt(s1[i]) + eps);
            break;
        }
    }
}

/* Runs STEPS steps of lk_optim_step and of the reference; compares every weight. */
static void check_optim(const char *label, lk_optim_config c, float gscale)
{
    lk_device *d = tu_cpu();
    float *w = lk_dev_alloc(d, N * sizeof(float)), *g = lk_dev_alloc(d, N * sizeof(float));
    memcpy(w, W0, sizeof W0);
    double rw[N], s1[N] = {0}, s2[N] = {0}, worst = 0.0;
    for (int i = 0; i < N; i++) rw[i] = W0[i];
    lk_optim *o;
    TU_OK(lk_optim_create(&o, d, &c, N));
    char bad[160] = "";
    for (int t = 1; t <= STEPS && !bad[0]; t++) {
        lk_copy_to_device(d, g, G[t - 1], sizeof G[0]);
        if (lk_optim_step(o, w, g, gscale) != LK_OK) {
            snprintf(bad, sizeof bad, "%s step %d: %s", label, t, lk_error_message());
            break;
        }
        ref_step(&c, t, c.lr, gscale, G[t - 1], rw, s1, s2);
        for (int i = 0; i < N; i++) {
            /* 1e-6 relative; below |w| = 0.1 it becomes 1e-7 absolute (float32
             * rounding of O(1) intermediate terms) */
            double tol = 1e-6 * fmax(fabs(rw[i]), 0.1), err = fabs(w[i] - rw[i]);
            worst = fmax(worst, err / tol);
            if (!(err <= tol) && !bad[0])
                snprintf(bad, sizeof bad, "%s step %d w[%d] = %.9g, reference %.9g", label, t, i,
                         (double)w[i], rw[i]);
        }
    }
    long steps = o->step;
    lk_optim_destroy(o); /* before any assertion, so a failure leaks nothing */
    lk_dev_free(d, w);
    lk_dev_free(d, g);
    if (bad[0]) fail_msg("%s", bad);
    print_message("  %-32s worst err/tol %.3g\n", label, worst);
    assert_int_equal(steps, STEPS);
    /* the weights must actually move (so a no-op optimizer cannot pass) */
    assert_true(fabs(rw[1] - W0[1]) > 1e-3);
}

static lk_optim_config cfg(lk_optim_kind kind, float lr, float wd, float l1)
{
    lk_optim_config c = lk_optim_defaults(kind);
    c.lr = lr;
    c.weight_decay = wd;
    c.l1 = l1;
    return c;
}

static void test_sgd(void **state)
{
    (void)state;
    check_optim("sgd", cfg(LK_OPT_SGD, 0.1f, 0.0f, 0.0f), 1.0f);
    check_optim("sgd wd l1 grad_scale", cfg(LK_OPT_SGD, 0.1f, 0.05f, 0.01f), 0.5f);
}

static void test_momentum_nesterov(void **state)
{
    (void)state;
    check_optim("momentum", cfg(LK_OPT_MOMENTUM, 0.1f, 0.0f, 0.0f), 1.0f);
    check_optim("momentum wd", cfg(LK_OPT_MOMENTUM, 0.1f, 0.05f, 0.0f), 1.0f);
    check_optim("nesterov", cfg(LK_OPT_NESTEROV, 0.1f, 0.0f, 0.0f), 1.0f);
    lk_optim_config c = cfg(LK_OPT_NESTEROV, 0.05f, 0.05f, 0.02f);
    c.momentum = 0.5f;
    check_optim("nesterov mu=0.5 wd l1", c, 2.0f);
}

static void test_adam(void **state)
{
    (void)state;
    check_optim("adam", cfg(LK_OPT_ADAM, 0.1f, 0.0f, 0.0f), 1.0f);
    check_optim("adam coupled wd", cfg(LK_OPT_ADAM, 0.1f, 0.1f, 0.0f), 1.0f);
    lk_optim_config c = cfg(LK_OPT_ADAM, 0.1f, 0.0f, 0.01f);
    c.eps = 0.1f; /* large enough that where eps enters the denominator matters */
    c.beta1 = 0.8f;
    c.beta2 = 0.9f;
    check_optim("adam eps=0.1 betas l1", c, 1.0f);
}

static void test_adamw(void **state)
{
    (void)state;
    check_optim("adamw decoupled wd", cfg(LK_OPT_ADAMW, 0.1f, 0.1f, 0.0f), 1.0f);
    lk_optim_config c;
    c = cfg(LK_OPT_ADAMW, 0.05f, 0.5f, 0.01f);
    c.eps = 0.1f;
    check_optim("adamw eps=0.1 l1 grad_scale", c, 0.5f);
}

static void test_rmsprop_adagrad(void **state)
{
    (void)state;
    check_optim("rmsprop", cfg(LK_OPT_RMSPROP, 0.01f, 0.0f, 0.0f), 1.0f);
    lk_optim_config c = cfg(LK_OPT_RMSPROP, 0.01f, 0.05f, 0.0f);
    c.momentum = 0.9f;
    c.eps = 0.1f;
    c.alpha = 0.9f;
    check_optim("rmsprop momentum eps=0.1 wd", c, 1.0f);
    check_optim("adagrad", cfg(LK_OPT_ADAGRAD, 0.1f, 0.0f, 0.0f), 1.0f);
    c = cfg(LK_OPT_ADAGRAD, 0.1f, 0.05f, 0.01f);
    c.eps = 0.1f;
    check_optim("adagrad eps=0.1 wd l1", c, 1.0f);
}

/* With a constant gradient Adam's bias-corrected step is exactly lr (eps = 0):
 * m/bc1 = g and sqrt(v/bc2) = |g|. PyTorch computes bc1/bc2 in double; in float32
 * 1 - beta2^t cancels (beta2 = 0.999) and the step is off by ~3e-6, which must not be. */
static void test_adam_bias_correction(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    float *w = lk_dev_alloc(d, sizeof(float)), *g = lk_dev_alloc(d, sizeof(float));
    *w = 0.0f;
    *g = 1.0f;
    lk_optim_config c = cfg(LK_OPT_ADAM, 1.0f, 0.0f, 0.0f);
    c.eps = 0.0f;
    lk_optim *o;
    TU_OK(lk_optim_create(&o, d, &c, 1));
    double worst = 0.0;
    for (int t = 1; t <= 10; t++) {
        float before = *w;
        TU_OK(lk_optim_step(o, w, g, 1.0f));
        double stepped = (double)before - (double)*w; /* exact: both are small floats */
        worst = fmax(worst, fabs(stepped - 1.0));
    }
    lk_optim_destroy(o);
    lk_dev_free(d, w);
    lk_dev_free(d, g);
    print_message("  adam constant-gradient step: worst |step - lr| = %.3g\n", worst);
    assert_true(worst <= 1e-6);
}

/* PyTorch's defaults and the number of state buffers each rule keeps. */
static void test_defaults(void **state)
{
    (void)state;
    lk_optim_config c = lk_optim_defaults(LK_OPT_ADAM);
    assert_true(c.lr == 1e-3f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
    assert_true(c.weight_decay == 0.0f && c.clip_norm == 0.0f && c.l1 == 0.0f);
    c = lk_optim_defaults(LK_OPT_ADAMW);
    assert_true(c.lr == 1e-3f && c.weight_decay == 0.01f);
    c = lk_optim_defaults(LK_OPT_RMSPROP);
    assert_true(c.alpha == 0.99f && c.eps == 1e-8f && c.momentum == 0.0f);
    c = lk_optim_defaults(LK_OPT_ADAGRAD);
    assert_true(c.eps == 1e-10f);
    c = lk_optim_defaults(LK_OPT_MOMENTUM);
    assert_true(c.momentum == 0.9f);
    assert_int_equal(lk_optim_state_count(LK_OPT_SGD), 0);
    assert_int_equal(lk_optim_state_count(LK_OPT_MOMENTUM), 1);
    assert_int_equal(lk_optim_state_count(LK_OPT_NESTEROV), 1);
    assert_int_equal(lk_optim_state_count(LK_OPT_ADAGRAD), 1);
    assert_int_equal(lk_optim_state_count(LK_OPT_ADAM), 2);
    assert_int_equal(lk_optim_state_count(LK_OPT_ADAMW), 2);
    assert_int_equal(lk_optim_state_count(LK_OPT_RMSPROP), 2);
}

/* SGD with lr 1 from w = 0, so w = -(applied gradient). g = (3, 4, 0...): norm 5. */
static void clip_case(float clip, float gscale, float want0, float want1)
{
    lk_device *d = tu_cpu();
    float *w = lk_dev_alloc(d, N * sizeof(float)), *g = lk_dev_alloc(d, N * sizeof(float));
    memset(w, 0, N * sizeof(float));
    memset(g, 0, N * sizeof(float));
    g[0] = 3.0f;
    g[1] = 4.0f;
    lk_optim_config c = cfg(LK_OPT_SGD, 1.0f, 0.0f, 0.0f);
    c.clip_norm = clip;
    lk_optim *o;
    TU_OK(lk_optim_create(&o, d, &c, N));
    TU_OK(lk_optim_step(o, w, g, gscale));
    if (fabsf(w[0] - want0) > 1e-6f || fabsf(w[1] - want1) > 1e-6f)
        fail_msg("clip %g scale %g: w = (%g, %g), expected (%g, %g)", (double)clip,
                 (double)gscale, (double)w[0], (double)w[1], (double)want0, (double)want1);
    for (int i = 2; i < N; i++) assert_true(w[i] == 0.0f);
    assert_true(fabsf(o->last_grad_norm - 5.0f * gscale) < 1e-5f);
    lk_optim_destroy(o);
    lk_dev_free(d, w);
    lk_dev_free(d, g);
}

static void test_clipping(void **state)
{
    (void)state;
    clip_case(1.0f, 1.0f, -0.6f, -0.8f);  /* norm 5 > 1: scaled to unit norm */
    clip_case(10.0f, 1.0f, -3.0f, -4.0f); /* norm 5 < 10: untouched */
    clip_case(5.0f, 1.0f, -3.0f, -4.0f);  /* at the threshold: untouched */
    clip_case(4.0f, 1.0f, -2.4f, -3.2f);  /* just above it: scaled by 4/5 */
    clip_case(1.0f, 2.0f, -0.6f, -0.8f);  /* the norm is of the scaled gradient (10) */
    clip_case(20.0f, 2.0f, -6.0f, -8.0f);
}

/* A non-finite gradient with clipping on is an error and leaves w untouched. */
static void test_clipping_nonfinite(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    float *w = lk_dev_alloc(d, N * sizeof(float)), *g = lk_dev_alloc(d, N * sizeof(float));
    const float bad[2] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        memcpy(w, W0, sizeof W0);
        memcpy(g, G[0], sizeof G[0]);
        g[3] = bad[k];
        lk_optim_config c = cfg(LK_OPT_ADAM, 0.1f, 0.0f, 0.0f);
        c.clip_norm = 1.0f;
        lk_optim *o;
        TU_OK(lk_optim_create(&o, d, &c, N));
        TU_FAILS_WITH(lk_optim_step(o, w, g, 1.0f), LK_ERR_STATE, "not finite");
        assert_memory_equal(w, W0, sizeof W0);
        assert_int_equal(o->step, 0);
        lk_optim_destroy(o);
    }
    lk_dev_free(d, w);
    lk_dev_free(d, g);
}

/* ---------------- schedules ---------------- */

static void expect_lr(const lk_optim_config *c, long step, double want)
{
    double got = lk_optim_lr_at(c, step);
    if (!(fabs(got - want) <= 1e-6 * fmax(fabs(want), 1e-3)))
        fail_msg("%s schedule (warmup %ld): lr at step %ld = %.9g, expected %.9g",
                 lk_schedule_name(c->schedule), c->warmup, step, got, want);
}

static void test_schedules(void **state)
{
    (void)state;
    const double lr = 0.2, pi = 3.14159265358979323846;
    lk_optim_config c = cfg(LK_OPT_SGD, (float)lr, 0.0f, 0.0f);
    c.schedule = LK_SCHED_CONSTANT;
    long steps[] = {0, 1, 5, 99, 1000000};
    for (int i = 0; i < 5; i++) expect_lr(&c, steps[i], lr);

    /* linear warm-up from lr/warmup (step 0) to lr (step warmup-1), then the schedule */
    c.warmup = 4;
    for (long s = 0; s < 4; s++) expect_lr(&c, s, lr * (double)(s + 1) / 4.0);
    expect_lr(&c, 4, lr);
    expect_lr(&c, 500, lr);

    c.schedule = LK_SCHED_STEP;
    c.step_size = 10;
    c.gamma = 0.5f;
    c.warmup = 0;
    long ss[] = {0, 9, 10, 19, 20, 25, 39, 40, 95};
    for (int i = 0; i < 9; i++) expect_lr(&c, ss[i], lr * pow(0.5, (double)(ss[i] / 10)));
    c.warmup = 5; /* the step count restarts after warm-up */
    expect_lr(&c, 0, lr / 5);
    expect_lr(&c, 4, lr);
    for (int i = 0; i < 9; i++) expect_lr(&c, ss[i] + 5, lr * pow(0.5, (double)(ss[i] / 10)));

    c.schedule = LK_SCHED_COSINE;
    c.warmup = 0;
    c.total_steps = 100;
    for (long s = 0; s <= 100; s += 5) expect_lr(&c, s, 0.5 * lr * (1.0 + cos(pi * s / 100.0)));
    expect_lr(&c, 50, lr / 2);
    expect_lr(&c, 100, 0.0);
    expect_lr(&c, 150, 0.0); /* stays at 0 past the end */
    c.warmup = 10;
    c.total_steps = 110;
    for (long s = 0; s < 10; s++) expect_lr(&c, s, lr * (double)(s + 1) / 10.0);
    for (long s = 10; s <= 110; s += 7)
        expect_lr(&c, s, 0.5 * lr * (1.0 + cos(pi * (double)(s - 10) / 100.0)));
    expect_lr(&c, 60, lr / 2);
    expect_lr(&c, 200, 0.0);
}

/* lk_optim_step uses the schedule at its own 0-based step and reports it. */
static void test_step_uses_schedule(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    float *w = lk_dev_alloc(d, sizeof(float)), *g = lk_dev_alloc(d, sizeof(float));
    *w = 0.0f;
    *g = 1.0f;
    lk_optim_config c = cfg(LK_OPT_SGD, 1.0f, 0.0f, 0.0f);
    c.warmup = 2;
    lk_optim *o;
    TU_OK(lk_optim_create(&o, d, &c, 1));
    const float want_lr[3] = {0.5f, 1.0f, 1.0f}, want_w[3] = {-0.5f, -1.5f, -2.5f};
    for (int t = 0; t < 3; t++) {
        TU_OK(lk_optim_step(o, w, g, 1.0f));
        assert_true(o->last_lr == want_lr[t]);
        assert_true(*w == want_w[t]);
    }
    lk_optim_destroy(o);
    lk_dev_free(d, w);
    lk_dev_free(d, g);
}

/* ---------------- names and argument checks ---------------- */

static void test_parse(void **state)
{
    (void)state;
    for (int k = LK_OPT_SGD; k <= LK_OPT_ADAGRAD; k++) {
        lk_optim_kind got;
        TU_OK(lk_optim_parse(lk_optim_name((lk_optim_kind)k), &got));
        assert_int_equal(got, k);
    }
    const char *names[] = {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"};
    for (int k = 0; k < 7; k++) assert_string_equal(lk_optim_name((lk_optim_kind)k), names[k]);
    lk_optim_kind kind = LK_OPT_ADAM;
    TU_FAILS_WITH(lk_optim_parse("adamax", &kind), LK_ERR_ARG, "adamax");
    TU_FAILS_WITH(lk_optim_parse("", &kind), LK_ERR_ARG, "sgd"); /* lists the known names */
    TU_FAILS_WITH(lk_optim_parse("SGD", &kind), LK_ERR_ARG, "SGD");
    assert_int_equal(kind, LK_OPT_ADAM); /* untouched on failure */

    lk_schedule s;
    TU_OK(lk_schedule_parse("cosine", &s));
    assert_int_equal(s, LK_SCHED_COSINE);
    TU_OK(lk_schedule_parse("step", &s));
    assert_int_equal(s, LK_SCHED_STEP);
    TU_OK(lk_schedule_parse("constant", &s));
    assert_int_equal(s, LK_SCHED_CONSTANT);
    TU_FAILS_WITH(lk_schedule_parse("linear", &s), LK_ERR_ARG, "linear");
}

static void test_create_rejects(void **state)
{
    (void)state;
    lk_optim *o = (lk_optim *)&o; /* not NULL: create must clear it on failure */
    lk_optim_config c = cfg(LK_OPT_SGD, -0.1f, 0.0f, 0.0f);
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--lr");
    assert_null(o);
    c.lr = NAN;
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--lr");
    c.lr = INFINITY;
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--lr");
    c = cfg(LK_OPT_ADAMW, 0.1f, -0.01f, 0.0f);
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--weight-decay");
    c = cfg(LK_OPT_SGD, 0.1f, 0.0f, -1.0f);
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--l1");
    c = cfg(LK_OPT_SGD, 0.1f, 0.0f, 0.0f);
    c.clip_norm = -1.0f;
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--clip");
    c = cfg(LK_OPT_MOMENTUM, 0.1f, 0.0f, 0.0f);
    c.momentum = 1.0f;
    TU_FAILS_WITH(lk_optim_create(&o, tu_cpu(), &c, N), LK_ERR_ARG, "--momentum");
    /* lr 0 is legal (e.g. a frozen evaluation run) */
    c = cfg(LK_OPT_ADAM, 0.0f, 0.0f, 0.0f);
    TU_OK(lk_optim_create(&o, tu_cpu(), &c, N));
    assert_non_null(o);
    lk_optim_destroy(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_momentum_nesterov),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_adam_bias_correction),
        cmocka_unit_test(test_rmsprop_adagrad),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_clipping_nonfinite),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_step_uses_schedule),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_create_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
