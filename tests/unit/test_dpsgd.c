/* test_dpsgd.c - DP-SGD's pieces (train/dpsgd.h): per-sample gradient norms from the layers
 * (linear over flat inputs and over sequences) and from a backward per sample, both against a
 * loop of single-sample backward passes; clipping bounding every sample's contribution to
 * C / E (and leaving smaller ones as they are); the noise identical for identical (seed,
 * step), different across steps, of the stated standard deviation, and a ZeRO slice's the
 * same numbers as the whole buffer's; Poisson batches of the expected size, the same on
 * every rank, the ranks' shares disjoint and covering the selection; the refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers.h"
#include "core/ops.h"
#include "core/rng.h"
#include "testutil.h"
#include "train/dpsgd.h"

static double sumsq(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static void fill(float *x, size_t n, uint64_t key)
{
    for (size_t i = 0; i < n; i++) x[i] = lk_rng_uniform(5, LK_RNG_TEST, key, i) - 0.5f;
}

/* a linear - tanh - linear model on per-sample input `in` (flat [6] or a sequence [3, 6]):
 * the norms one backward gives against one backward per sample */
static void check_linear_norms(const lk_shape *in)
{
    const int B = 5;
    lk_model *m;
    TU_OK(lk_model_create(&m, tu_cpu(), in));
    TU_OK(lk_model_add(m, lk_linear(6, 5, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_TANH, 0.0f)));
    TU_OK(lk_model_add(m, lk_linear(5, 3, 0)));
    lk_model_set_sample_norms(m);
    TU_OK(lk_model_build(m, B));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 1));
    assert_true(lk_model_direct_norms(m, NULL));
    const size_t xs = lk_shape_numel(in), ys = xs / 6 * 3;
    float x[5 * 18], dy[5 * 9], sq[5];
    fill(x, B * xs, 1);
    fill(dy, B * ys, 2);
    lk_tensor out;
    memcpy(lk_model_input(m), x, sizeof(float) * B * xs);
    TU_OK(lk_model_forward(m, B, 1, 0, &out));
    memcpy(m->dout, dy, sizeof(float) * B * ys);
    memset(sq, 0, sizeof sq);
    m->sample_sq = sq;
    TU_OK(lk_model_backward_ex(m, B, 0, LK_GRADS_REPLACE));
    m->sample_sq = NULL;
    for (int i = 0; i < B; i++) { /* each sample alone */
        memcpy(lk_model_input(m), x + i * xs, sizeof(float) * xs);
        TU_OK(lk_model_forward(m, 1, 1, 0, &out));
        memcpy(m->dout, dy + i * ys, sizeof(float) * ys);
        TU_OK(lk_model_backward_ex(m, 1, 0, LK_GRADS_REPLACE));
        const double want = sumsq(m->grads, m->nparams);
        if (fabs(sq[i] - want) > 1e-5 * want + 1e-9)
            fail_msg("input %zu floats: sample %d's squared norm %.8g, a backward of its own gives %.8g", xs, i,
                     sq[i], want);
    }
    lk_model_destroy(m);
}

static void test_linear_norms(void **state)
{
    (void)state;
    const lk_shape flat = {1, {6}}, seq = {2, {3, 6}};
    check_linear_norms(&flat);
    check_linear_norms(&seq);
}

/* n images of 1 x 8 x 8 in 3 classes */
static lk_dataset images(int n)
{
    lk_dataset d;
    memset(&d, 0, sizeof d);
    d.n = n, d.nclasses = 3, d.sample = (lk_shape){3, {1, 8, 8}};
    d.x = malloc((size_t)n * 64);
    d.y = malloc((size_t)n * sizeof *d.y);
    for (int i = 0; i < n * 64; i++) d.x[i] = (uint8_t)(lk_rng_u32(3, LK_RNG_TEST, 0, (uint64_t)i) & 255);
    for (int i = 0; i < n; i++) d.y[i] = i % 3;
    return d;
}

static void open_replica(lk_replica *r, const char *model, int batch)
{
    memset(r, 0, sizeof *r);
    TU_OK(lk_replica_open(r, &(lk_replica_spec){"cpu", 1, tu_builtin(model), {0}, {3, {1, 8, 8}}, 3, 1, batch,
                                                LK_INIT_DEFAULT, 4, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL,
                                                LK_F32, 0, 1}));
}

/* norms both ways; then each sample's clipped contribution on its own: min(|g_i|, C) / E along
 * g_i; and the chunk's sum the sum of them */
static void check_clipping(const char *model, int direct)
{
    const int B = 6;
    lk_dataset d = images(40);
    lk_replica r;
    open_replica(&r, model, B);
    lk_model *m = r.model;
    lk_dp dp;
    const lk_dp_opts o = {0.05, 1.0, 0, 0, LK_DP_SHUFFLE};
    TU_OK(lk_dp_init(&dp, &o, m, d.n, 8, 10, 0, m->nparams, 1));
    assert_int_equal(dp.direct, direct);
    lk_sampler smp;
    TU_OK(lk_sampler_init(&smp, d.n, B, 0, 1, 9, 1));
    long global;
    TU_OK(lk_dp_plan_step(&dp, &smp, 2, 1, 2, 9, d.n, B, &global));
    assert_int_equal(dp.nchunks, 1);
    assert_int_equal(global, B);
    TU_OK(lk_dp_norms(&dp, &r, &d, 0, 2));
    float norms[6];
    memcpy(norms, dp.sq_host, sizeof norms);
    dp.direct = 0; /* (from the layers:) a backward per sample gives the same norms */
    TU_OK(lk_dp_norms(&dp, &r, &d, 0, 2));
    dp.direct = direct;
    for (int i = 0; i < B; i++)
        if (fabs(norms[i] - dp.sq_host[i]) > 1e-4 * norms[i])
            fail_msg("%s: sample %d's squared norm %.7g from the layers, %.7g from its own backward", model, i,
                     norms[i], dp.sq_host[i]);
    /* C between the smallest and the largest norm: some samples clipped, some not */
    float lo = INFINITY, hi = 0;
    for (int i = 0; i < B; i++) lo = fminf(lo, sqrtf(norms[i])), hi = fmaxf(hi, sqrtf(norms[i]));
    dp.o.clip = 0.5 * (lo + hi);
    int clipped = 0, kept = 0;
    for (int i = 0; i < B; i++) clipped += sqrt(norms[i]) > dp.o.clip, kept += sqrt(norms[i]) < dp.o.clip;
    assert_true(clipped > 0 && kept > 0); /* (the bound is tested both ways) */
    /* the chunk's clipped sum, then each sample's own contribution */
    float *sum = malloc(m->nparams * sizeof(float)), *one = malloc(m->nparams * sizeof(float));
    double seen = dp.seen;
    TU_OK(lk_dp_clipped_backward(&dp, &r, &d, 0, 2, LK_GRADS_REPLACE));
    memcpy(sum, m->grads, m->nparams * sizeof(float));
    assert_true(dp.seen == seen + B);
    const lk_dp_chunk whole = dp.chunks[0];
    memset(one, 0, m->nparams * sizeof(float));
    for (int i = 0; i < B; i++) {
        dp.chunks[0] = (lk_dp_chunk){whole.idx + i, 1, whole.base + i, 0};
        dp.sq_host[0] = norms[i];
        TU_OK(lk_dp_clipped_backward(&dp, &r, &d, 0, 2, LK_GRADS_REPLACE));
        const double got = sqrt(sumsq(m->grads, m->nparams)) * dp.expected;
        const double want = fmin(sqrt(norms[i]), dp.o.clip);
        if (fabs(got - want) > 1e-4 * want)
            fail_msg("%s: sample %d's contribution has norm %.7g x E, expected min(|g|, C) = %.7g", model, i, got,
                     want);
        for (size_t k = 0; k < m->nparams; k++) one[k] += m->grads[k];
    }
    double diff = 0;
    for (size_t k = 0; k < m->nparams; k++) diff = fmax(diff, fabs(one[k] - sum[k]));
    if (diff > 1e-6) fail_msg("%s: the chunk's clipped sum differs from its samples' by %g", model, diff);
    free(sum);
    free(one);
    lk_sampler_free(&smp);
    lk_dp_free(&dp, r.dev);
    lk_replica_free(&r);
    lk_dataset_free(&d);
}

static void test_clipping(void **state)
{
    (void)state;
    check_clipping("mlp", 1); /* linear layers: the norms from one backward */
    check_clipping("cnn", 0); /* convolutions: a backward per sample */
}

static void test_noise(void **state)
{
    (void)state;
    lk_dataset d = images(40);
    lk_replica r;
    open_replica(&r, "mlp", 4);
    lk_model *m = r.model;
    lk_dp dp;
    const lk_dp_opts o = {2.0, 1.5, 0, 0, LK_DP_POISSON};
    TU_OK(lk_dp_init(&dp, &o, m, d.n, 10, 10, 0, m->nparams, 1));
    const size_t n = m->nparams;
    float *a = calloc(n, sizeof(float)), *b = calloc(n, sizeof(float)), *c = calloc(n, sizeof(float));
    TU_OK(lk_dp_add_noise(&dp, m, a, 0, n, 7, 1));
    TU_OK(lk_dp_add_noise(&dp, m, b, 0, n, 7, 1));
    assert_memory_equal(a, b, n * sizeof(float)); /* every rank draws the same */
    TU_OK(lk_dp_add_noise(&dp, m, c, 0, n, 8, 1));
    assert_memory_not_equal(a, c, n * sizeof(float)); /* each step its own */
    /* the std: sigma C / E over the parameters (padding untouched) */
    double s2 = 0, s1 = 0;
    size_t cnt = 0, nonzero = 0;
    for (size_t k = 0; k < n; k++) nonzero += a[k] != 0.0f;
    assert_int_equal(nonzero, lk_model_trainable(m));
    for (size_t k = 0; k < n; k++)
        if (a[k] != 0.0f) s1 += a[k], s2 += (double)a[k] * a[k], cnt++;
    const double mean = s1 / cnt, sd = sqrt(s2 / cnt - mean * mean), want = 1.5 * 2.0 / 10.0;
    if (fabs(sd - want) > 0.02 * want || fabs(mean) > 0.02 * want)
        fail_msg("noise mean %g std %g over %zu values, expected 0 and %g", mean, sd, cnt, want);
    /* a ZeRO slice [lo, hi): the same numbers as the whole buffer's */
    const size_t lo = n / 3, hi = 2 * n / 3;
    memset(c, 0, n * sizeof(float));
    TU_OK(lk_dp_add_noise(&dp, m, c + lo, lo, hi, 7, 1));
    assert_memory_equal(c + lo, a + lo, (hi - lo) * sizeof(float));
    free(a), free(b), free(c);
    lk_dp_free(&dp, r.dev);
    lk_replica_free(&r);
    lk_dataset_free(&d);
}

static void test_poisson(void **state)
{
    (void)state;
    lk_dataset d = images(1000);
    lk_replica r;
    open_replica(&r, "mlp", 16);
    lk_dp dp[3];
    const lk_dp_opts o = {1.0, 1.0, 0, 0, LK_DP_POISSON};
    lk_sampler smp[3];
    for (int k = 0; k < 3; k++) {
        TU_OK(lk_dp_init(&dp[k], &o, r.model, d.n, 60, 100, 0, r.model->nparams, 1));
        TU_OK(lk_sampler_init(&smp[k], d.n, 20, k, 3, 1, 1));
    }
    assert_true(fabs(dp[0].q - 0.06) < 1e-12);
    double total = 0;
    const int steps = 200;
    for (long step = 0; step < steps; step++) {
        long g[3];
        int seen[1000] = {0}, got = 0;
        for (int k = 0; k < 3; k++) {
            TU_OK(lk_dp_plan_step(&dp[k], &smp[k], 0, 1, step, 11, d.n, 16, &g[k]));
            for (int c = 0; c < dp[k].nchunks; c++) {
                const lk_dp_chunk *ch = &dp[k].chunks[c];
                assert_true(ch->n <= 16);
                if (ch->dummy) continue;
                for (int i = 0; i < ch->n; i++) {
                    if (seen[ch->idx[i]]++) fail_msg("step %ld: sample %d on two ranks", step, ch->idx[i]);
                    if (ch->base + i != got + i) fail_msg("step %ld: positions out of order", step);
                }
                got += ch->n;
            }
        }
        assert_true(g[0] == g[1] && g[1] == g[2]); /* every rank draws the same batch */
        assert_int_equal(got, g[0]);
        total += (double)g[0];
    }
    /* the expected batch q N = 60, the mean of 200 within 4 standard errors */
    const double mean = total / steps, se = sqrt(60 * 0.94 / steps);
    if (fabs(mean - 60) > 4 * se) fail_msg("Poisson batches average %g, expected 60", mean);
    for (int k = 0; k < 3; k++) lk_dp_free(&dp[k], r.dev), lk_sampler_free(&smp[k]);
    lk_replica_free(&r);
    lk_dataset_free(&d);
}

static void test_refusals(void **state)
{
    (void)state;
    lk_replica r;
    memset(&r, 0, sizeof r);
    TU_OK(lk_replica_open(&r, &(lk_replica_spec){"cpu", 1, tu_builtin("cnn-bn"), {0}, {3, {1, 28, 28}}, 10, 1, 4,
                                                 LK_INIT_DEFAULT, 4, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL,
                                                 LK_F32, 0, 1}));
    lk_dp dp;
    lk_dp_opts o = {1.0, 1.0, 0, 0, LK_DP_POISSON};
    TU_FAILS_WITH(lk_dp_init(&dp, &o, r.model, 100, 10, 10, 0, r.model->nparams, 1), LK_ERR_ARG, "batchnorm");
    lk_dp_free(&dp, r.dev);
    o.epsilon = 3; /* both the noise and a budget */
    TU_FAILS_WITH(lk_dp_init(&dp, &o, r.model, 100, 10, 10, 0, r.model->nparams, 1), LK_ERR_ARG, "give one");
    o = (lk_dp_opts){0, 1.0, 0, 0, LK_DP_POISSON}; /* noise without a clipping norm */
    TU_FAILS_WITH(lk_dp_init(&dp, &o, r.model, 100, 10, 10, 0, r.model->nparams, 1), LK_ERR_ARG, "--dp-clip");
    o = (lk_dp_opts){1.0, 0, 0, 0, LK_DP_POISSON};
    TU_FAILS_WITH(lk_dp_init(&dp, &o, r.model, 100, 10, 10, 0, r.model->nparams, 1), LK_ERR_ARG, "--dp-epsilon");
    int s;
    TU_FAILS_WITH(lk_dp_sampling_parse("random", &s), LK_ERR_ARG, "poisson or shuffle");
    lk_replica_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_norms), cmocka_unit_test(test_clipping), cmocka_unit_test(test_noise),
        cmocka_unit_test(test_poisson), cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
