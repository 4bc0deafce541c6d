/* test_layers.c - every layer's forward against a direct double-precision reference,
 * and its backward (input AND parameter gradients) against central finite
 * differences; losses against reference values and their numeric gradients. */
#include "core/bf16.h"
#include "gradcheck.h"

/* The harness itself must reject wrong gradients, or every check below is vacuous. */
static void test_gradcheck_detects_errors(void **state)
{
    (void)state;
    gc_report r = {0, 0, 0.0};
    gc_compare(&r, "ok", 0, 1.0, 1.005);      /* 0.5% off: inside the 1% tolerance */
    gc_compare(&r, "ok", 1, 0.0, 5e-5);       /* tiny absolute difference near zero */
    assert_int_equal(r.failed, 0);
    print_message("  (the four mismatches printed next are expected)\n");
    gc_compare(&r, "bad", 2, 1.0, 1.03);      /* 3% off */
    gc_compare(&r, "bad", 3, 0.0, 1e-3);      /* above the 1e-4 absolute floor */
    gc_compare(&r, "bad", 4, 1.0, NAN);
    gc_compare(&r, "bad", 5, 1.0, -1.0);      /* sign error */
    assert_int_equal(r.failed, 4);

    /* a layer whose analytic gradient is deliberately corrupted is caught */
    gc_layer g;
    int in = 3;
    gc_layer_open(&g, 1, &in, lk_linear(3, 2, 1), 2);
    gc_report r2 = {0, 0, 0.0};
    lk_model_zero_grad(g.m);
    TU_OK(gc_forward(&g));
    TU_OK(gc_backward(&g));
    float *w = g.l->params[0].w;
    double num = gc_numeric(gc_layer_objective, &g, &w[1], GC_EPS);
    gc_compare(&r2, "w(corrupted)", 1, num, g.l->params[0].g[1] * 1.05);
    assert_int_equal(r2.failed, 1);
    gc_layer_close(&g);
}

/* ---------------- linear ---------------- */

static void check_linear(int in, int out, int bias, int batch)
{
    gc_layer g;
    gc_layer_open(&g, 1, &in, lk_linear(in, out, bias), batch);
    assert_int_equal(g.l->nparams, bias ? 2 : 1);
    TU_OK(gc_forward(&g));
    double *ref = malloc(g.ny * sizeof(double));
    const float *w = g.l->params[0].w, *b = bias ? g.l->params[1].w : NULL;
    for (int n = 0; n < batch; n++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += (double)g.x[n * in + i] * w[o * in + i];
            ref[n * out + o] = s;
        }
    gc_expect_close("linear y", g.y, ref, g.ny, 1e-5);
    free(ref);
    assert_int_equal(gc_layer_check(&g, bias ? "linear" : "linear(nobias)", GC_ALL, GC_EPS), 0);
    gc_layer_check_grad_modes_and_close(&g, 777.0f);
}

static void test_linear(void **state)
{
    (void)state;
    check_linear(7, 5, 1, 3);
    check_linear(4, 6, 0, 2);
    check_linear(1, 1, 1, 1);
}

/* ---------------- conv2d ---------------- */

typedef struct {
    int cin, cout, h, w, k, stride, pad, bias, batch;
} conv_cfg;

static void conv_ref(const conv_cfg *c, int oh, int ow, const float *x, const float *w,
                     const float *b, double *y)
{
    for (int n = 0; n < c->batch; n++)
        for (int o = 0; o < c->cout; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double s = b ? b[o] : 0.0;
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ki = 0; ki < c->k; ki++)
                            for (int kj = 0; kj < c->k; kj++) {
                                int ih = i * c->stride - c->pad + ki;
                                int iw = j * c->stride - c->pad + kj;
                                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                s += (double)x[((n * c->cin + ci) * c->h + ih) * c->w + iw] *
                                     w[((o * c->cin + ci) * c->k + ki) * c->k + kj];
                            }
                    y[((n * c->cout + o) * oh + i) * ow + j] = s;
                }
}

static void test_conv2d(void **state)
{
    (void)state;
    static const conv_cfg cfgs[] = {
        {2, 3, 5, 5, 3, 1, 1, 1, 2}, /* 3x3 pad 1 stride 1, batch 2 */
        {2, 2, 7, 7, 3, 2, 0, 1, 2}, /* 3x3 pad 0 stride 2 */
        {1, 2, 6, 6, 5, 1, 2, 1, 1}, /* 5x5 pad 2 */
        {3, 4, 4, 4, 1, 1, 0, 1, 2}, /* kernel 1 */
        {3, 2, 6, 5, 3, 2, 1, 0, 3}, /* non-square input, stride 2, no bias, batch 3 */
        {2, 3, 4, 6, 2, 2, 0, 1, 2}, /* even kernel */
        /* large enough (18 x 1024 floats of im2col per image, batch 24) that a
         * backend working through the batch in chunks needs several */
        {2, 3, 32, 32, 3, 1, 1, 1, 24},
    };
    for (size_t t = 0; t < sizeof cfgs / sizeof *cfgs; t++) {
        const conv_cfg *c = &cfgs[t];
        int in[3] = {c->cin, c->h, c->w};
        gc_layer g;
        gc_layer_open(&g, 3, in, lk_conv2d(c->cin, c->cout, c->k, c->stride, c->pad, c->bias),
                      c->batch);
        int oh = (c->h + 2 * c->pad - c->k) / c->stride + 1;
        int ow = (c->w + 2 * c->pad - c->k) / c->stride + 1;
        assert_int_equal(g.l->out.ndim, 3);
        assert_true(g.l->out.d[0] == c->cout && g.l->out.d[1] == oh && g.l->out.d[2] == ow);
        TU_OK(gc_forward(&g));
        double *ref = malloc(g.ny * sizeof(double));
        conv_ref(c, oh, ow, g.x, g.l->params[0].w, c->bias ? g.l->params[1].w : NULL, ref);
        gc_expect_close("conv2d y", g.y, ref, g.ny, 1e-5);
        free(ref);
        char name[48];
        snprintf(name, sizeof name, "conv%d/s%d/p%d/%d->%d/%dx%dx%d", c->k, c->stride, c->pad,
                 c->cin, c->cout, c->batch, c->h, c->w);
        /* every parameter; every input, or 300 sampled ones of a large input */
        int dx_samples = g.nx > 2000 ? 300 : GC_ALL;
        assert_int_equal(gc_layer_check(&g, name, dx_samples, GC_EPS), 0);
        gc_layer_check_grad_modes_and_close(&g, 777.0f);
    }
}

/* Replacing gradients must not read the old ones at all: after a diverged step
 * they may be NaN or Inf, and 0 * NaN is still NaN. */
static void test_replace_grads_over_nan(void **state)
{
    (void)state;
    int lin = 5;
    gc_layer g;
    gc_layer_open(&g, 1, &lin, lk_linear(5, 3, 1), 2);
    gc_layer_check_grad_modes_and_close(&g, NAN);
    static const int shapes[2][4] = {{2, 5, 5, 2}, {2, 32, 32, 24}}; /* c, h, w, batch */
    for (int t = 0; t < 2; t++) {
        gc_layer_open(&g, 3, shapes[t], lk_conv2d(2, 3, 3, 1, 1, 1), shapes[t][3]);
        gc_layer_check_grad_modes_and_close(&g, NAN);
    }
}

/* ---------------- pooling ---------------- */

typedef struct {
    int c, h, w, k, stride, pad, batch;
} pool_cfg;

static void pool_ref(const pool_cfg *p, int is_max, int oh, int ow, const float *x, double *y)
{
    for (int pl = 0; pl < p->batch * p->c; pl++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double best = -INFINITY, sum = 0.0;
                for (int a = i * p->stride - p->pad; a < i * p->stride - p->pad + p->k; a++)
                    for (int b = j * p->stride - p->pad; b < j * p->stride - p->pad + p->k; b++) {
                        if (a < 0 || a >= p->h || b < 0 || b >= p->w) continue;
                        double v = x[(pl * p->h + a) * p->w + b];
                        best = fmax(best, v);
                        sum += v;
                    }
                /* average pooling counts the padding, as PyTorch's default */
                y[(pl * oh + i) * ow + j] = is_max ? best : sum / (p->k * p->k);
            }
}

static void check_pool(int is_max)
{
    static const pool_cfg cfgs[] = {
        {2, 4, 4, 2, 2, 0, 2}, /* 2x2 stride 2 */
        {2, 5, 5, 3, 2, 1, 2}, /* 3x3 stride 2 pad 1: overlapping windows and padding */
        {1, 5, 7, 3, 2, 1, 1}, /* non-square */
    };
    for (size_t t = 0; t < sizeof cfgs / sizeof *cfgs; t++) {
        const pool_cfg *p = &cfgs[t];
        int in[3] = {p->c, p->h, p->w};
        gc_layer g;
        lk_layer *l = is_max ? lk_maxpool2d(p->k, p->stride, p->pad)
                             : lk_avgpool2d(p->k, p->stride, p->pad);
        gc_layer_open(&g, 3, in, l, p->batch);
        /* spacing 0.1 > 2 eps: the max of each window stays the max under a nudge */
        gc_fill_distinct(g.x, g.nx, 7 + t, 0.1f);
        int oh = (p->h + 2 * p->pad - p->k) / p->stride + 1;
        int ow = (p->w + 2 * p->pad - p->k) / p->stride + 1;
        assert_true(g.l->out.d[0] == p->c && g.l->out.d[1] == oh && g.l->out.d[2] == ow);
        TU_OK(gc_forward(&g));
        double *ref = malloc(g.ny * sizeof(double));
        pool_ref(p, is_max, oh, ow, g.x, ref);
        gc_expect_close(is_max ? "maxpool y" : "avgpool y", g.y, ref, g.ny, 1e-6);
        free(ref);
        char name[48];
        snprintf(name, sizeof name, "%s%d/s%d/p%d/%dx%d", is_max ? "maxpool" : "avgpool", p->k,
                 p->stride, p->pad, p->h, p->w);
        assert_int_equal(gc_layer_check(&g, name, GC_ALL, GC_EPS), 0);
        gc_layer_check_grad_modes_and_close(&g, 777.0f);
    }
}

static void test_maxpool2d(void **state)
{
    (void)state;
    check_pool(1);
}

/* Ties go to the first element of the window in row-major order (PyTorch's
 * `val > maxval` scan), on the 2x2/2 fast path and the generic path alike. */
static void test_maxpool_ties(void **state)
{
    (void)state;
    static const pool_cfg cfgs[] = {{2, 4, 6, 2, 2, 0, 2}, {1, 5, 5, 3, 2, 1, 2}};
    for (size_t t = 0; t < 2; t++) {
        const pool_cfg *p = &cfgs[t];
        int in[3] = {p->c, p->h, p->w};
        gc_layer g;
        gc_layer_open(&g, 3, in, lk_maxpool2d(p->k, p->stride, p->pad), p->batch);
        for (size_t i = 0; i < g.nx; i++) g.x[i] = 0.5f; /* every window is one big tie */
        TU_OK(gc_forward(&g));
        TU_OK(gc_backward(&g));
        int oh = g.l->out.d[1], ow = g.l->out.d[2];
        double *want = calloc(g.nx, sizeof(double));
        for (int pl = 0; pl < p->batch * p->c; pl++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    /* first in-bounds element of the window */
                    int a = LK_MAX(i * p->stride - p->pad, 0);
                    int b = LK_MAX(j * p->stride - p->pad, 0);
                    want[(pl * p->h + a) * p->w + b] += g.dy[(pl * oh + i) * ow + j];
                }
        gc_expect_close("maxpool tie dx", g.dx, want, g.nx, 1e-6);
        free(want);
        gc_layer_close(&g);
    }
}

static void test_avgpool2d(void **state)
{
    (void)state;
    check_pool(0);
}

/* ---------------- activations ---------------- */

static double act_ref(lk_act act, double alpha, double x)
{
    switch (act) {
    case LK_ACT_IDENTITY: return x;
    case LK_ACT_RELU: return x > 0 ? x : 0;
    case LK_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case LK_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case LK_ACT_TANH: return tanh(x);
    case LK_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case LK_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case LK_ACT_COUNT: break;
    }
    return NAN;
}

static void test_activations(void **state)
{
    (void)state;
    static const struct {
        lk_act act;
        float alpha;
    } acts[] = {{LK_ACT_RELU, 0.0f},    {LK_ACT_LEAKY_RELU, 0.1f}, {LK_ACT_SIGMOID, 0.0f},
                {LK_ACT_TANH, 0.0f},    {LK_ACT_GELU, 0.0f},       {LK_ACT_IDENTITY, 0.0f},
                {LK_ACT_GELU_TANH, 0.0f}};
    for (size_t t = 0; t < sizeof acts / sizeof *acts; t++) {
        int in[3] = {2, 3, 4}; /* any shape: element-wise */
        gc_layer g;
        gc_layer_open(&g, 3, in, lk_activation(acts[t].act, acts[t].alpha), 2);
        assert_true(lk_shape_equal(&g.l->out, &g.l->in));
        /* inputs stay 0.05 away from ReLU's kink (5x eps), scaled to reach saturation */
        gc_fill_normal(g.x, g.nx, 11 + t, 0.05f);
        for (size_t i = 0; i < g.nx; i++) g.x[i] *= 2.0f;
        TU_OK(gc_forward(&g));
        double *ref = malloc(g.ny * sizeof(double));
        for (size_t i = 0; i < g.ny; i++) ref[i] = act_ref(acts[t].act, acts[t].alpha, g.x[i]);
        gc_expect_close(lk_act_name(acts[t].act), g.y, ref, g.ny, 1e-5);
        free(ref);
        assert_int_equal(gc_layer_check(&g, lk_act_name(acts[t].act), GC_ALL, GC_EPS), 0);
        gc_layer_check_grad_modes_and_close(&g, 777.0f);
    }
}

/* Saturated inputs must give finite, saturated values and gradients. */
static void test_activation_extremes(void **state)
{
    (void)state;
    static const float xs[8] = {-1000.0f, -100.0f, -20.0f, -1e-6f, 1e-6f, 20.0f, 100.0f, 1000.0f};
    const lk_act acts[] = {LK_ACT_SIGMOID, LK_ACT_TANH, LK_ACT_GELU, LK_ACT_GELU_TANH,
                           LK_ACT_LEAKY_RELU};
    for (size_t t = 0; t < sizeof acts / sizeof *acts; t++) {
        int in = 8;
        gc_layer g;
        gc_layer_open(&g, 1, &in, lk_activation(acts[t], 0.2f), 1);
        memcpy(g.x, xs, sizeof xs);
        for (int i = 0; i < 8; i++) g.dy[i] = 1.0f;
        TU_OK(gc_forward(&g));
        TU_OK(gc_backward(&g));
        for (int i = 0; i < 8; i++) {
            double ref = act_ref(acts[t], 0.2, xs[i]);
            if (!isfinite(g.y[i]) || !isfinite(g.dx[i]) ||
                fabs(g.y[i] - ref) > 1e-5 * (1.0 + fabs(ref)))
                fail_msg("%s(%g) = %g (reference %g), gradient %g", lk_act_name(acts[t]),
                         (double)xs[i], (double)g.y[i], ref, (double)g.dx[i]);
        }
        gc_layer_close(&g);
    }
}

/* ---------------- dropout ---------------- */

static void test_dropout_forward(void **state)
{
    (void)state;
    const float p = 0.3f;
    int in = 5000;
    gc_layer g;
    gc_layer_open(&g, 1, &in, lk_dropout(p), 2);
    gc_fill_normal(g.x, g.nx, 21, 0.01f); /* no zeros in x, so y == 0 means dropped */
    g.step = 7;
    TU_OK(gc_forward(&g));
    size_t dropped = 0, differs = 0;
    uint64_t a = ((uint64_t)g.step << 16) | (uint64_t)g.l->index; /* rng.h's dropout key */
    for (size_t i = 0; i < g.ny; i++) {
        int keep = lk_rng_uniform(g.m->seed, LK_RNG_DROPOUT, a, i) >= p;
        if (g.y[i] == 0.0f) {
            dropped++;
        } else if (fabsf(g.y[i] - g.x[i] / (1.0f - p)) > 1e-6f * fabsf(g.y[i])) {
            fail_msg("kept y[%zu] = %g, expected x / (1 - p) = %g", i, (double)g.y[i],
                     (double)(g.x[i] / (1.0f - p)));
        }
        differs += keep != (g.y[i] != 0.0f);
    }
    double frac = (double)dropped / (double)g.ny; /* binomial sd ~0.0046 */
    print_message("  dropout p=0.3: dropped %.4f of %zu\n", frac, g.ny);
    assert_true(fabs(frac - p) < 0.02);
    /* the mask is the documented function of (seed, step, layer, element) */
    assert_int_equal(differs, 0);

    /* another step draws another mask */
    float *y7 = malloc(g.ny * sizeof(float));
    memcpy(y7, g.y, g.ny * sizeof(float));
    g.step = 8;
    TU_OK(gc_forward(&g));
    size_t changed = 0;
    for (size_t i = 0; i < g.ny; i++) changed += (y7[i] == 0.0f) != (g.y[i] == 0.0f);
    assert_true(changed > g.ny / 10);
    free(y7);

    /* evaluation mode is the identity, forward and backward */
    g.training = 0;
    TU_OK(gc_forward(&g));
    assert_memory_equal(g.y, g.x, g.nx * sizeof(float));
    TU_OK(gc_backward(&g));
    assert_memory_equal(g.dx, g.dy, g.nx * sizeof(float));
    gc_layer_close(&g);

    /* p = 0 is the identity even in training */
    gc_layer_open(&g, 1, &in, lk_dropout(0.0f), 1);
    TU_OK(gc_forward(&g));
    assert_memory_equal(g.y, g.x, g.nx * sizeof(float));
    gc_layer_close(&g);

    assert_null(lk_dropout(1.0f));
    assert_null(lk_dropout(-0.1f));
}

/* With a fixed step the mask is fixed, so dropout is linear and checkable. */
static void test_dropout_gradcheck(void **state)
{
    (void)state;
    int in[3] = {3, 4, 5};
    gc_layer g;
    gc_layer_open(&g, 3, in, lk_dropout(0.5f), 3);
    g.step = 42;
    assert_int_equal(gc_layer_check(&g, "dropout(0.5)", GC_ALL, GC_EPS), 0);
    gc_layer_check_grad_modes_and_close(&g, 777.0f);
}

/* ---------------- whole models (flatten, chains) ---------------- */

static lk_model *new_model(int ndim, const int *in)
{
    lk_model *m;
    lk_shape s = lk_shape_make(ndim, in);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    return m;
}

/* flatten is an alias: conv -> flatten -> linear checks that dy reaches the conv
 * through it, and the conv's weight gradient depends on the linear's dx. */
static void test_flatten_in_model(void **state)
{
    (void)state;
    int in[3] = {2, 4, 3};
    lk_model *m = new_model(3, in);
    TU_OK(lk_model_add(m, lk_conv2d(2, 3, 3, 1, 1, 1)));
    TU_OK(lk_model_add(m, lk_flatten()));
    TU_OK(lk_model_add(m, lk_linear(36, 5, 1)));
    assert_int_equal(m->layers[1]->out.ndim, 1);
    assert_int_equal(m->layers[1]->out.d[0], 36);
    TU_OK(lk_model_build(m, 3));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 5));
    assert_ptr_equal(m->act[2], m->act[1]); /* no copy */
    assert_int_equal(gc_model_check(m, "conv-flatten-linear", 2, 1, 0, GC_EPS), 0);
    lk_model_destroy(m);

    /* flatten first: the zoo mlp's shape, smaller */
    m = new_model(3, in);
    TU_OK(lk_model_add(m, lk_flatten()));
    TU_OK(lk_model_add(m, lk_linear(24, 4, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_TANH, 0)));
    TU_OK(lk_model_add(m, lk_linear(4, 3, 1)));
    TU_OK(lk_model_build(m, 2));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 6));
    assert_int_equal(gc_model_check(m, "flatten-mlp", 2, 1, 0, GC_EPS), 0);
    lk_model_destroy(m);
}

/* Chains through lk_model_backward: the first layer's gradients depend on every
 * later layer's dx (smooth activations, so no kinks inside +-eps). */
static void test_model_chains(void **state)
{
    (void)state;
    int in1 = 6;
    lk_model *m = new_model(1, &in1);
    TU_OK(lk_model_add(m, lk_linear(6, 8, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_SIGMOID, 0)));
    TU_OK(lk_model_add(m, lk_dropout(0.25f)));
    TU_OK(lk_model_add(m, lk_linear(8, 5, 0)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_GELU, 0)));
    TU_OK(lk_model_add(m, lk_linear(5, 3, 1)));
    TU_OK(lk_model_build(m, 4));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 8));
    assert_int_equal(gc_model_check(m, "mlp+dropout(train)", 4, 1, 9, GC_EPS), 0);
    assert_int_equal(gc_model_check(m, "mlp partial batch", 3, 1, 10, GC_EPS), 0);
    lk_model_destroy(m);

    int in3[3] = {1, 6, 6};
    m = new_model(3, in3);
    TU_OK(lk_model_add(m, lk_conv2d(1, 2, 3, 1, 1, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_TANH, 0)));
    TU_OK(lk_model_add(m, lk_avgpool2d(2, 2, 0)));
    TU_OK(lk_model_add(m, lk_conv2d(2, 3, 3, 1, 0, 1)));
    TU_OK(lk_model_add(m, lk_flatten()));
    TU_OK(lk_model_add(m, lk_linear(3, 2, 1)));
    TU_OK(lk_model_build(m, 2));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 9));
    assert_int_equal(gc_model_check(m, "cnn(avgpool)", 2, 1, 0, GC_EPS), 0);
    lk_model_destroy(m);
}

/* ---------------- batch norm ---------------- */

static void test_batchnorm(void **state)
{
    (void)state;
    const int cfg[][4] = {{1, 5, 0, 0}, {3, 3, 4, 2}}; /* ndim, C, H, W */
    for (int t = 0; t < 2; t++) {
        int ndim = cfg[t][0], C = cfg[t][1], in[3] = {C, cfg[t][2], cfg[t][3]};
        const int B = 4;
        gc_layer g;
        gc_layer_open(&g, ndim, in, lk_batchnorm(C, 1e-5f, 0.1f), B);
        assert_int_equal(g.l->nparams, 5);
        assert_string_equal(g.l->params[4].name, "num_batches_tracked");
        for (int j = 0; j < C; j++) g.l->params[0].w[j] = 1.0f + 0.3f * j, g.l->params[1].w[j] = 0.1f * j;
        int inner = (int)(lk_shape_numel(&g.l->in) / (size_t)C);
        TU_OK(gc_forward(&g));
        double *want = malloc(g.ny * sizeof *want);
        for (int j = 0; j < C; j++) {
            double m = 0, v = 0, cnt = (double)B * inner;
            for (int o = 0; o < B; o++)
                for (int i = 0; i < inner; i++) m += g.x[(o * C + j) * inner + i];
            m /= cnt;
            for (int o = 0; o < B; o++)
                for (int i = 0; i < inner; i++) v += pow(g.x[(o * C + j) * inner + i] - m, 2);
            for (int o = 0; o < B; o++)
                for (int i = 0; i < inner; i++) {
                    size_t e = (size_t)(o * C + j) * inner + i;
                    want[e] = (g.x[e] - m) / sqrt(v / cnt + 1e-5) * g.l->params[0].w[j] + g.l->params[1].w[j];
                }
            /* one forward moved the running statistics by momentum, the variance unbiased */
            GC_NEAR(g.l->params[2].w[j], 0.1 * m, 1e-6);
            GC_NEAR(g.l->params[3].w[j], 0.9 + 0.1 * v / (cnt - 1), 1e-6);
        }
        GC_NEAR(g.l->params[4].w[0], 1.0, 0.0);
        gc_expect_close("batchnorm y", g.y, want, g.ny, 1e-5);
        free(want);
        assert_int_equal(gc_layer_check(&g, ndim == 1 ? "batchnorm1d" : "batchnorm2d", GC_ALL, GC_EPS), 0);
        /* evaluation normalises with the running statistics, and leaves them alone */
        g.training = 0;
        for (int j = 0; j < C; j++) g.l->params[2].w[j] = 0.5f, g.l->params[3].w[j] = 4.0f;
        TU_OK(gc_forward(&g));
        for (size_t e = 0; e < g.ny; e++) {
            int j = (int)((e / inner) % C);
            double y = (g.x[e] - 0.5) / sqrt(4.0 + 1e-5) * g.l->params[0].w[j] + g.l->params[1].w[j];
            GC_NEAR(g.y[e], y, 1e-5);
        }
        assert_true(g.l->params[2].w[0] == 0.5f && g.l->params[3].w[0] == 4.0f);
        g.training = 1;
        gc_layer_check_grad_modes_and_close(&g, NAN);
    }
    assert_null(lk_batchnorm(0, 1e-5f, 0.1f));
    assert_null(lk_batchnorm(3, 1e-5f, 1.5f));
}

/* ---------------- losses ---------------- */

typedef struct {
    lk_loss_kind kind;
    lk_loss_args a;
    float *loss; /* device scalar */
} loss_obj;

static double loss_value(void *ctx)
{
    loss_obj *o = ctx;
    TU_OK(lk_loss(tu_cpu(), o->kind, &o->a, o->loss, NULL, 1.0f));
    return lk_read_scalar(tu_cpu(), o->loss);
}

/* Direct double-precision references, batch means like PyTorch. */
static double ref_loss(lk_loss_kind kind, const float *z, const int32_t *lab, const float *t, int B,
                       int C)
{
    double total = 0.0;
    for (int n = 0; n < B; n++)
        for (int j = 0; j < C; j++) {
            double x = z[n * C + j];
            if (kind == LK_LOSS_XENT) {
                if (j) continue; /* once per row */
                double mx = -INFINITY, s = 0.0;
                for (int k = 0; k < C; k++) mx = fmax(mx, z[n * C + k]);
                for (int k = 0; k < C; k++) s += exp(z[n * C + k] - mx);
                total += mx + log(s) - z[n * C + lab[n]];
            } else if (kind == LK_LOSS_MSE) {
                total += (x - t[n * C + j]) * (x - t[n * C + j]) / C;
            } else {
                total += (fmax(x, 0.0) - x * t[n * C + j] + log1p(exp(-fabs(x)))) / C;
            }
        }
    return total / B;
}

/* Loss value vs reference, dout vs numeric gradient, and dout's scale factor. */
static void check_loss(lk_loss_kind kind, float *z, const int32_t *lab, const float *t, int B,
                       int C)
{
    lk_device *d = tu_cpu();
    size_t n = (size_t)B * C;
    float *dout = lk_dev_alloc(d, n * sizeof(float)), *loss = lk_dev_alloc(d, sizeof(float));
    float *half = malloc(n * sizeof(float));
    loss_obj o = {kind, {z, lab, t, B, C, 0, LK_F32}, loss};
    TU_OK(lk_loss(d, kind, &o.a, loss, dout, 1.0f));
    double ref = ref_loss(kind, z, lab, t, B, C), got = lk_read_scalar(d, loss);
    if (!(fabs(got - ref) <= 1e-5 * (1.0 + fabs(ref))))
        fail_msg("%s = %.8g, reference %.8g", lk_loss_name(kind), got, ref);
    gc_report r = {0, 0, 0.0};
    for (size_t i = 0; i < n; i++)
        gc_compare(&r, lk_loss_name(kind), i, gc_numeric(loss_value, &o, &z[i], GC_EPS), dout[i]);
    print_message("  gradcheck %-22s %5d values, worst err/tol %.3g\n", lk_loss_name(kind),
                  r.checked, r.worst);
    assert_int_equal(r.failed, 0);
    /* scale multiplies the gradient (loss scaling, accumulation) but not the loss */
    TU_OK(lk_loss(d, kind, &o.a, loss, half, 0.25f));
    GC_NEAR(lk_read_scalar(d, loss), got, 1e-6 * (1.0 + fabs(got)));
    for (size_t i = 0; i < n; i++) GC_NEAR(half[i], 0.25 * dout[i], 1e-6 * fabs(dout[i]) + 1e-9);
    free(half);
    lk_dev_free(d, dout);
    lk_dev_free(d, loss);
}

static void test_losses(void **state)
{
    (void)state;
    enum { B = 4, C = 5 };
    float z[B * C], t[B * C];
    int32_t lab[B] = {0, 4, 2, 2};
    gc_fill_normal(z, B * C, 31, 0.0f);
    check_loss(LK_LOSS_XENT, z, lab, NULL, B, C);
    gc_fill_normal(t, B * C, 32, 0.0f);
    check_loss(LK_LOSS_MSE, z, NULL, t, B, C);
    for (int i = 0; i < B * C; i++) t[i] = (float)(i % 3) * 0.5f; /* 0, 0.5 and 1 */
    for (int i = 0; i < B * C; i++) z[i] *= 3.0f;
    check_loss(LK_LOSS_BCE_LOGITS, z, NULL, t, B, C);
}

/* Huge logits must neither overflow nor produce NaN (log-sum-exp, stable BCE). */
static void test_losses_extreme(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    float z[6] = {1000.0f, 0.0f, -1000.0f, -1000.0f, 1000.0f, 999.0f}, dz[6], loss;
    int32_t lab[2] = {2, 2}; /* row 0 picks -1000 (loss 2000); row 1 picks 999 */
    lk_loss_args a = {z, lab, NULL, 2, 3, 0, LK_F32};
    TU_OK(lk_loss(d, LK_LOSS_XENT, &a, &loss, dz, 1.0f));
    double ref = ref_loss(LK_LOSS_XENT, z, lab, NULL, 2, 3);
    assert_true(isfinite(loss));
    GC_NEAR(loss, ref, 1e-5 * ref); /* (2000 + 1.3133) / 2 */
    /* softmax - onehot, over the batch of 2 */
    double e1 = 1.0 / (1.0 + exp(1.0));
    double want[6] = {0.5, 0.0, -0.5, 0.0, (1.0 - e1) / 2, e1 / 2 - 0.5};
    for (int i = 0; i < 6; i++) {
        assert_true(isfinite(dz[i]));
        GC_NEAR(dz[i], want[i], 1e-6);
    }

    float bz[4] = {1000.0f, -1000.0f, 1000.0f, -1000.0f}, bt[4] = {0.0f, 1.0f, 1.0f, 0.0f};
    lk_loss_args b = {bz, NULL, bt, 1, 4, 0, LK_F32};
    TU_OK(lk_loss(d, LK_LOSS_BCE_LOGITS, &b, &loss, dz, 1.0f));
    assert_true(isfinite(loss));
    GC_NEAR(loss, 500.0, 1e-3); /* (1000 + 1000 + 0 + 0) / 4 */
    const float bwant[4] = {0.25f, -0.25f, 0.0f, 0.0f};
    for (int i = 0; i < 4; i++) GC_NEAR(dz[i], bwant[i], 1e-6);

    float mz[2] = {1e4f, -1e4f}, mt[2] = {0.0f, 0.0f};
    lk_loss_args c = {mz, NULL, mt, 2, 1, 0, LK_F32};
    TU_OK(lk_loss(d, LK_LOSS_MSE, &c, &loss, dz, 1.0f));
    GC_NEAR(loss, 1e8, 1.0);
    GC_NEAR(dz[0], 1e4, 1e-2); /* 2 (p - t) / n */
    GC_NEAR(dz[1], -1e4, 1e-2);
}

/* Cross-entropy over bf16 logits (a bf16 model's, padded rows): the loss of the widened
 * values, and the gradient written over the logits, each value float32's rounded to
 * nearest even (the CPU's exp is the same in both); count_correct alike. */
static void test_xent_bf16(void **state)
{
    (void)state;
    enum { N = 5, C = 37, LD = 40 };
    lk_device *d = tu_cpu();
    float z[N * LD], dz[N * LD], loss32, loss16, hits32, hits16;
    uint16_t z16[N * LD];
    int32_t lab[N];
    for (int i = 0; i < N * LD; i++) {
        z16[i] = lk_bf16_rne(12.0f * lk_rng_uniform(3, LK_RNG_TEST, 1, (uint64_t)i) - 6.0f);
        z[i] = lk_bf16_to_f32(z16[i]);
    }
    for (int r = 0; r < N; r++) lab[r] = (r * 11) % C;
    TU_OK(lk_count_correct(d, LK_F32, z, lab, N, C, LD, &hits32));
    TU_OK(lk_count_correct(d, LK_BF16, z16, lab, N, C, LD, &hits16));
    assert_true(hits32 == hits16);
    TU_OK(lk_softmax_xent(d, LK_F32, z, lab, N, C, LD, &loss32, dz, 0.5f));
    TU_OK(lk_softmax_xent(d, LK_BF16, z16, lab, N, C, LD, &loss16, z16, 0.5f)); /* in place */
    GC_NEAR(loss16, loss32, 1e-6);
    for (int i = 0; i < N * LD; i++)
        if (z16[i] != lk_bf16_rne(dz[i]))
            fail_msg("bf16 dlogits [%d] 0x%04x, float32's rounded 0x%04x", i, z16[i], lk_bf16_rne(dz[i]));
    for (int i = 0; i < N * LD; i++) z16[i] = lk_bf16_rne(z[i]); /* the logits again */
    lk_loss_args a = {z16, lab, NULL, N, C, LD, LK_BF16};
    TU_OK(lk_loss(d, LK_LOSS_XENT, &a, &loss16, NULL, 1.0f));
    GC_NEAR(loss16, loss32, 1e-6);
    TU_FAILS_WITH(lk_loss(d, LK_LOSS_MSE, &a, &loss16, NULL, 1.0f), LK_ERR_ARG, "not bf16");
}

static void test_loss_errors(void **state)
{
    (void)state;
    float z[2] = {0}, loss;
    int32_t lab[1] = {0};
    lk_loss_args a = {z, lab, z, 0, 2, 0, LK_F32};
    TU_FAILS_WITH(lk_loss(tu_cpu(), LK_LOSS_XENT, &a, &loss, NULL, 1.0f), LK_ERR_ARG, "batch");
    a.batch = 1;
    a.features = 0;
    TU_FAILS_WITH(lk_loss(tu_cpu(), LK_LOSS_MSE, &a, &loss, NULL, 1.0f), LK_ERR_ARG, "mse");
    a.features = 2;
    a.targets = NULL; /* MSE and BCE need targets */
    assert_int_not_equal(lk_loss(tu_cpu(), LK_LOSS_BCE_LOGITS, &a, &loss, NULL, 1.0f), LK_OK);
}

/* Constructors reject bad configurations with a message. */
static void test_layer_constructor_errors(void **state)
{
    (void)state;
    assert_null(lk_linear(0, 3, 1));
    assert_non_null(strstr(lk_error_message(), "linear"));
    assert_null(lk_conv2d(1, 2, 3, 0, 0, 1));
    assert_non_null(strstr(lk_error_message(), "conv2d"));
    assert_null(lk_maxpool2d(2, 2, 2)); /* padding over half the kernel */
    assert_null(lk_activation((lk_act)99, 0.0f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_detects_errors),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_replace_grads_over_nan),
        cmocka_unit_test(test_maxpool2d),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_avgpool2d),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_activation_extremes),
        cmocka_unit_test(test_dropout_forward),
        cmocka_unit_test(test_dropout_gradcheck),
        cmocka_unit_test(test_flatten_in_model),
        cmocka_unit_test(test_model_chains),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_losses),
        cmocka_unit_test(test_losses_extreme),
        cmocka_unit_test(test_xent_bf16),
        cmocka_unit_test(test_loss_errors),
        cmocka_unit_test(test_layer_constructor_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
