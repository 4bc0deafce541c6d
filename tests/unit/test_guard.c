/* test_guard.c - every step's check (train/guard.c): a non-finite gradient or loss stops
 * naming the step and the first layer in backward order whose gradient is not finite, or
 * is skipped and counted, up to --max-skips in a row; the spike rule skips a loss more
 * than Z standard deviations above the recent mean, once enough steps are known, and
 * keeps skipped steps out of that mean. */
#include <math.h>
#include <string.h>

#include "core/layers.h"
#include "core/model.h"
#include "testutil.h"
#include "train/guard.h"

static void test_stop_names_layer(void **state)
{
    (void)state;
    lk_model *m = tu_linear_stack((const int[]){5, 7, 3}, 3, 1u); /* linear, tanh, linear */
    TU_OK(lk_model_alloc_grads(m));
    memset(m->grads, 0, m->nparams * sizeof *m->grads);
    const lk_param *w0 = &m->layers[0]->params[0];
    m->grads[w0->offset + 3] = NAN; /* the first linear: last in backward order */
    lk_guard g;
    lk_guard_init(&g, LK_NAN_STOP, 10, 0.0, 0);
    int skip = 1;
    TU_OK(lk_guard_decide(&g, m, 0, 1.0, 2.0, &skip));
    assert_int_equal(skip, 0);
    TU_FAILS_WITH(lk_guard_decide(&g, m, 6, NAN, 2.0, &skip), LK_ERR_STATE,
                  "step 7: not finite: loss 2, gradient's sum of squares nan; first in backward order in layer 0 (linear)");
    const lk_param *w2 = &m->layers[2]->params[0];
    m->grads[w2->offset] = INFINITY; /* now the last linear is met first */
    TU_FAILS_WITH(lk_guard_decide(&g, m, 6, INFINITY, 2.0, &skip), LK_ERR_STATE, "in layer 2 (linear)");
    memset(m->grads, 0, m->nparams * sizeof *m->grads); /* another rank's, or the loss */
    TU_FAILS_WITH(lk_guard_decide(&g, m, 8, 3.0, NAN, &skip), LK_ERR_STATE, "not in this rank's gradient");
    lk_model_destroy(m);
}

static void test_skip_counts(void **state)
{
    (void)state;
    lk_guard g;
    lk_guard_init(&g, LK_NAN_SKIP, 2, 0.0, 0);
    int skip = 0;
    TU_OK(lk_guard_decide(&g, NULL, 0, NAN, 1.0, &skip));
    assert_int_equal(skip, 1);
    TU_OK(lk_guard_decide(&g, NULL, 1, 1.0, INFINITY, &skip));
    assert_int_equal(skip, 1);
    TU_OK(lk_guard_decide(&g, NULL, 2, 1.0, 1.0, &skip)); /* a good step ends the run of skips */
    assert_int_equal(skip, 0);
    TU_OK(lk_guard_decide(&g, NULL, 3, NAN, 1.0, &skip));
    TU_OK(lk_guard_decide(&g, NULL, 4, NAN, 1.0, &skip));
    assert_int_equal(g.skipped, 4);
    TU_FAILS_WITH(lk_guard_decide(&g, NULL, 5, NAN, 1.0, &skip), LK_ERR_STATE,
                  "step 6: 3 steps skipped in a row (a gradient not finite), more than --max-skips 2");
}

static void test_spikes(void **state)
{
    (void)state;
    lk_guard g;
    lk_guard_init(&g, LK_NAN_STOP, 3, 4.0, 0);
    int skip = 0;
    /* too few steps known: even a large loss is taken */
    for (int i = 0; i < LK_GUARD_MIN - 1; i++) {
        TU_OK(lk_guard_decide(&g, NULL, i, 1.0, 1.0 + 0.01 * sin(i), &skip));
        assert_int_equal(skip, 0);
    }
    TU_OK(lk_guard_decide(&g, NULL, 19, 1.0, 1.02, &skip));
    assert_int_equal(skip, 0);
    TU_OK(lk_guard_decide(&g, NULL, 20, 1.0, 1.5, &skip)); /* far above mean 1 +- 0.01 */
    assert_int_equal(skip, 1);
    TU_OK(lk_guard_decide(&g, NULL, 21, 1.0, 1.5, &skip)); /* the spike did not enter the mean */
    assert_int_equal(skip, 1);
    TU_OK(lk_guard_decide(&g, NULL, 22, 1.0, 1.01, &skip));
    assert_int_equal(skip, 0);
    assert_int_equal(g.skipped, 2);
    assert_int_equal(g.nrecent, LK_GUARD_MIN + 1);
    lk_nan_policy p;
    TU_OK(lk_nan_policy_parse("skip", &p));
    assert_int_equal(p, LK_NAN_SKIP);
    TU_FAILS_WITH(lk_nan_policy_parse("ignore", &p), LK_ERR_ARG, "not stop or skip");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_names_layer),
        cmocka_unit_test(test_skip_counts),
        cmocka_unit_test(test_spikes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
