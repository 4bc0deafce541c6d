/* test_guard.c - every step's check (core/guard_rule.h on the device, train/guard.c on the
 * host): a non-finite gradient or loss stops naming the step and the first layer in
 * backward order whose gradient is not finite, and freezes every later step's update; or
 * is skipped and counted, up to --max-skips in a row; the spike rule skips a loss more than
 * Z standard deviations above the recent mean, once enough steps are known, and keeps
 * skipped steps out of that mean; a dropped step's loss leaves the log's sum; the verdict
 * gates the optimizer's pass and the bf16 working copy's refresh. */
#include <math.h>
#include <string.h>

#include "core/layers.h"
#include "core/model.h"
#include "core/ops.h"
#include "testutil.h"
#include "train/guard.h"

/* one step through the device's phases: its loss (1 sample) and the sum of squares */
static int step_is_dropped(lk_guard *g, float *acc, long step, double sumsq, double loss)
{
    lk_device *d = g->dev;
    TU_OK(lk_guard_op(d, g->state, LK_GUARD_BEGIN, g->cfg, step, acc, 0.0f));
    *acc += (float)loss;
    g->state->in[0] = (float)sumsq; /* (the CPU: host memory) */
    TU_OK(lk_guard_op(d, g->state, LK_GUARD_PREPARE, g->cfg, step, acc, 1.0f));
    TU_OK(lk_guard_op(d, g->state, LK_GUARD_DECIDE, g->cfg, step, acc, 0.0f));
    return g->state->skip != 0.0f;
}

static void test_stop_names_layer(void **state)
{
    (void)state;
    lk_model *m = tu_linear_stack((const int[]){5, 7, 3}, 3, 1u); /* linear, tanh, linear */
    TU_OK(lk_model_alloc_grads(m));
    memset(m->grads, 0, m->nparams * sizeof *m->grads);
    const lk_param *w0 = &m->layers[0]->params[0];
    m->grads[w0->offset + 3] = NAN; /* the first linear: last in backward order */
    lk_guard g;
    TU_OK(lk_guard_open(&g, m->dev, LK_NAN_STOP, 10, 0.0, 0));
    float acc = 0.0f;
    assert_false(step_is_dropped(&g, &acc, 0, 1.0, 2.0));
    TU_OK(lk_guard_read(&g, m, 1));
    assert_true(step_is_dropped(&g, &acc, 6, NAN, 2.0));
    assert_true(acc == 2.0f); /* (the stopped step's loss left the sum) */
    TU_FAILS_WITH(lk_guard_read(&g, m, 7), LK_ERR_STATE,
                  "step 7: not finite: loss 2, gradient's sum of squares nan; first in backward order in layer 0 (linear)");
    /* read later: every later step is dropped too, and the layer is looked for in the
     * gradient then */
    assert_true(step_is_dropped(&g, &acc, 7, 1.0, 1.0));
    const lk_param *w2 = &m->layers[2]->params[0];
    m->grads[w2->offset] = INFINITY; /* now the last linear is met first */
    TU_FAILS_WITH(lk_guard_read(&g, m, 9), LK_ERR_STATE,
                  "step 7: not finite: loss 2, gradient's sum of squares nan; first in backward order in layer 2 "
                  "(linear), in the gradient of step 9 (read then; the parameters unchanged since)");
    lk_guard_close(&g);
    TU_OK(lk_guard_open(&g, m->dev, LK_NAN_STOP, 10, 0.0, 0));
    memset(m->grads, 0, m->nparams * sizeof *m->grads); /* another rank's, or the loss */
    assert_true(step_is_dropped(&g, &acc, 8, 3.0, NAN));
    TU_FAILS_WITH(lk_guard_read(&g, m, 9), LK_ERR_STATE, "not in this rank's gradient");
    lk_guard_close(&g);
    lk_model_destroy(m);
}

static void test_skip_counts(void **state)
{
    (void)state;
    lk_guard g;
    TU_OK(lk_guard_open(&g, tu_cpu(), LK_NAN_SKIP, 2, 0.0, 0));
    float acc = 10.0f;
    assert_true(step_is_dropped(&g, &acc, 0, NAN, 1.0));
    assert_true(step_is_dropped(&g, &acc, 1, 1.0, INFINITY));
    assert_true(acc == 10.0f);
    assert_false(step_is_dropped(&g, &acc, 2, 1.0, 1.0)); /* a good step ends the run of skips */
    assert_true(acc == 11.0f);
    assert_true(step_is_dropped(&g, &acc, 3, NAN, 1.0));
    assert_true(step_is_dropped(&g, &acc, 4, NAN, 1.0));
    TU_OK(lk_guard_read(&g, NULL, 5));
    assert_int_equal(lk_guard_skipped(&g), 4);
    assert_true(g.seen.dropped == 4.0);
    assert_int_equal(g.seen.last_step, 5);
    assert_true(step_is_dropped(&g, &acc, 5, NAN, 1.0));
    TU_FAILS_WITH(lk_guard_read(&g, NULL, 6), LK_ERR_STATE,
                  "step 6: 3 steps skipped in a row (a gradient not finite), more than --max-skips 2");
    assert_true(step_is_dropped(&g, &acc, 6, 1.0, 1.0)); /* stopped: nothing more is taken */
    lk_guard_close(&g);
}

static void test_spikes(void **state)
{
    (void)state;
    lk_guard g;
    TU_OK(lk_guard_open(&g, tu_cpu(), LK_NAN_STOP, 3, 4.0, 0));
    float acc = 0.0f;
    /* too few steps known: even a large loss is taken */
    for (int i = 0; i < LK_GUARD_MIN - 1; i++) assert_false(step_is_dropped(&g, &acc, i, 1.0, 1.0 + 0.01 * sin(i)));
    assert_false(step_is_dropped(&g, &acc, 19, 1.0, 1.02));
    assert_true(step_is_dropped(&g, &acc, 20, 1.0, 1.5)); /* far above mean 1 +- 0.01 */
    assert_true(step_is_dropped(&g, &acc, 21, 1.0, 1.5)); /* the spike did not enter the mean */
    assert_false(step_is_dropped(&g, &acc, 22, 1.0, 1.01));
    TU_OK(lk_guard_read(&g, NULL, 23));
    assert_int_equal(lk_guard_skipped(&g), 2);
    assert_int_equal(g.seen.nrecent, LK_GUARD_MIN + 1);
    assert_int_equal(g.seen.last_kind, LK_GUARD_SPIKE);
    lk_guard_close(&g);
    lk_nan_policy p;
    TU_OK(lk_nan_policy_parse("skip", &p));
    assert_int_equal(p, LK_NAN_SKIP);
    TU_FAILS_WITH(lk_nan_policy_parse("ignore", &p), LK_ERR_ARG, "not stop or skip");
}

/* the verdict gates the optimizer's fused pass (weights, state, bf16 copy) and a refresh
 * of the working copy; a kept step runs as without a check */
static void test_gate(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    enum { N = 37 };
    for (int kind = LK_OPT_SGD; kind <= LK_OPT_ADAGRAD; kind++) {
        for (int stochastic = 0; stochastic < 2; stochastic++) {
            float w[2][N], g[N], s1[2][N], s2[2][N];
            uint16_t w16[2][N];
            for (int i = 0; i < N; i++) {
                w[0][i] = w[1][i] = 0.1f * (float)(i - 18);
                g[i] = 0.03f * (float)((i * 7) % 11) - 0.1f;
                s1[0][i] = s1[1][i] = 0.01f * (float)i, s2[0][i] = s2[1][i] = 0.02f * (float)i;
                w16[0][i] = w16[1][i] = (uint16_t)i;
            }
            float flag = 1.0f;
            lk_optim_hparams hp = {(lk_optim_kind)kind, 0.1f, 0.9f, 0.9f, 0.999f, 1e-8f, 0.99f, 0.01f, 0.001f, 0.5f,
                                   3, {stochastic, 9, 3, 0, &flag}, &flag};
            TU_OK(lk_optim_update(d, &hp, w[0], g, s1[0], s2[0], w16[0], N));
            for (int i = 0; i < N; i++)
                assert_true(w[0][i] == w[1][i] && s1[0][i] == s1[1][i] && s2[0][i] == s2[1][i] && w16[0][i] == i);
            TU_OK(lk_cast_bf16(d, w[0], w16[0], N, &hp.round));
            for (int i = 0; i < N; i++) assert_int_equal(w16[0][i], i);
            flag = 0.0f; /* kept: the same as no check at all */
            TU_OK(lk_optim_update(d, &hp, w[0], g, s1[0], s2[0], w16[0], N));
            hp.skip = hp.round.skip = NULL;
            TU_OK(lk_optim_update(d, &hp, w[1], g, s1[1], s2[1], w16[1], N));
            assert_memory_equal(w[0], w[1], sizeof w[0]);
            assert_memory_equal(s1[0], s1[1], sizeof s1[0]);
            assert_memory_equal(w16[0], w16[1], sizeof w16[0]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_names_layer),
        cmocka_unit_test(test_skip_counts),
        cmocka_unit_test(test_spikes),
        cmocka_unit_test(test_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
