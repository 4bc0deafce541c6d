/* test_powersgd.c - PowerSGD's arithmetic on one rank (powersgd.h): which tensors it
 * compresses and where their P and Q lie; a gradient of rank <= r comes back exactly (its
 * dependent columns of P zeroed, not normalised noise); error feedback loses nothing - over
 * any number of steps the approximations sent plus the residual left are the gradients'
 * sum - and the residual stays bounded; the first Q is the generator's, the same for the
 * same seed. (Several ranks: tests/mpi/test_powersgd_ranks.c.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/powersgd.h"
#include "core/layers.h"
#include "core/ops.h"
#include "core/rng.h"
#include "testutil.h"

static lk_model *mlp(void) { return tu_linear_stack((const int[]){20, 300, 200, 7}, 4, 1u); }

static void test_layout(void **state)
{
    (void)state;
    lk_model *m = mlp();
    lk_powersgd *s;
    TU_OK(lk_powersgd_create(&s, m, 0, m->nparams, 4, 5, 1));
    /* 300 x 20 and 200 x 300 weights; not 7 x 200 ((7 + 200) 4 > 7 x 200 / 2), no bias */
    assert_int_equal(s->nmat, 2);
    const lk_param *w1 = &m->layers[0]->params[0], *w2 = &m->layers[2]->params[0];
    int k;
    assert_true(lk_powersgd_find(s, w2->offset, &k) && k == 0); /* reverse layer order */
    assert_true(lk_powersgd_find(s, w1->offset, &k) && k == 1);
    assert_false(lk_powersgd_find(s, m->layers[0]->params[1].offset, &k));
    assert_int_equal(s->mat[0].n, 200);
    assert_int_equal(s->mat[0].m, 300);
    size_t at, n;
    lk_powersgd_range(s, 0, 0, 2, &at, &n);
    assert_true(at == 0 && n == (200 + 300) * 4);
    lk_powersgd_range(s, 1, 1, 2, &at, &n);
    assert_true(at == 300 * 4 && n == 20 * 4);
    /* the first Q: the generator's, the same for the same seed, another for another */
    lk_powersgd *t, *u;
    TU_OK(lk_powersgd_create(&t, m, 0, m->nparams, 4, 5, 1));
    TU_OK(lk_powersgd_create(&u, m, 0, m->nparams, 4, 6, 1));
    assert_memory_equal(s->q, t->q, s->q_floats * sizeof(float));
    assert_true(memcmp(s->q, u->q, s->q_floats * sizeof(float)) != 0);
    assert_true(s->q[0] == lk_rng_normal(5, LK_RNG_NOISE, LK_PSGD_KEY, 0));
    lk_powersgd *bad;
    TU_FAILS_WITH(lk_powersgd_create(&bad, m, 0, m->nparams, 0, 6, 1), LK_ERR_ARG, "rank");
    assert_null(bad);
    lk_powersgd_destroy(s), lk_powersgd_destroy(t), lk_powersgd_destroy(u);
    lk_model_destroy(m);
}

/* matrix k's gradient: a sum of `rank` outer products a_j b_j^T (0: full rank, random) */
static void fill(const lk_psgd_mat *x, float *g, int rank, uint64_t seed)
{
    for (int i = 0; i < x->n; i++)
        for (int j = 0; j < x->m; j++) {
            double v = 0.0;
            if (!rank) v = 2.0 * lk_rng_uniform(seed, LK_RNG_TEST, 1, (uint64_t)i * x->m + j) - 1.0;
            for (int q = 0; q < rank; q++)
                v += (lk_rng_uniform(seed, LK_RNG_TEST, 2 + q, (uint64_t)i) - 0.5) *
                     (lk_rng_uniform(seed, LK_RNG_TEST, 100 + q, (uint64_t)j) - 0.5);
            g[(size_t)i * x->m + j] = (float)v;
        }
}

static double maxabs(const float *x, size_t n)
{
    double a = 0.0;
    for (size_t i = 0; i < n; i++) a = fmax(a, fabs(x[i]));
    return a;
}

static void step(lk_powersgd *s, float *g)
{
    TU_OK(lk_powersgd_project(s, g, 0, s->nmat));
    TU_OK(lk_powersgd_back(s, g, 0, s->nmat)); /* (one rank: no all-reduces between) */
    TU_OK(lk_powersgd_expand(s, g, 0, s->nmat));
}

/* with the first Q (random): a gradient of rank <= r is in P's span, so sent exactly (a
 * warm-started Q spans the last gradient's row space: a new gradient's takes more steps) */
static void test_low_rank_exact(void **state)
{
    (void)state;
    lk_model *m = mlp();
    for (int rank = 1; rank <= 4; rank++) {
        lk_powersgd *s;
        TU_OK(lk_powersgd_create(&s, m, 0, m->nparams, 4, 5, 1));
        for (int k = 0; k < s->nmat; k++) fill(&s->mat[k], m->grads + s->mat[k].offset, rank, 7);
        float *want = malloc(m->nparams * sizeof *want);
        memcpy(want, m->grads, m->nparams * sizeof *want);
        step(s, m->grads);
        for (int k = 0; k < s->nmat; k++) {
            const lk_psgd_mat *x = &s->mat[k];
            const size_t nm = (size_t)x->n * x->m;
            const double scale = maxabs(want + x->offset, nm);
            for (size_t i = 0; i < nm; i++)
                if (fabs(m->grads[x->offset + i] - want[x->offset + i]) > 1e-4 * scale)
                    fail_msg("rank-%d gradient, matrix %d [%zu]: %g, was %g", rank, k, i,
                             (double)m->grads[x->offset + i], (double)want[x->offset + i]);
            assert_true(maxabs(s->e + x->e_at, nm) <= 1e-4 * scale);
        }
        free(want);
        lk_powersgd_destroy(s);
    }
    printf("gradients of rank 1 to 4 at rank 4: sent exactly (within 1e-4), nothing left over\n");
    lk_model_destroy(m);
}

static void test_error_feedback(void **state)
{
    (void)state;
    lk_model *m = mlp();
    lk_powersgd *s;
    TU_OK(lk_powersgd_create(&s, m, 0, m->nparams, 2, 5, 1));
    const size_t n = m->nparams;
    lk_zero(m->dev, m->grads, n * sizeof(float));
    double *sent = calloc(n, sizeof *sent), *truth = calloc(n, sizeof *truth);
    for (int cst = 0; cst < 2; cst++) { /* fresh full-rank gradients each step; one of rank 3 */
        memset(sent, 0, n * sizeof *sent), memset(truth, 0, n * sizeof *truth);
        lk_zero(m->dev, s->e, s->e_floats * sizeof(float));
        double scale = 0.0, resid = 0.0;
        const int T = 12;
        for (int t = 0; t < T; t++) {
            for (int k = 0; k < s->nmat; k++) fill(&s->mat[k], m->grads + s->mat[k].offset, cst ? 3 : 0, cst ? 9 : 9 + t);
            for (size_t i = 0; i < n; i++) truth[i] += m->grads[i];
            scale = fmax(scale, maxabs(m->grads, n));
            step(s, m->grads);
            for (size_t i = 0; i < n; i++) sent[i] += m->grads[i];
            resid = fmax(resid, maxabs(s->e, s->e_floats));
        }
        for (int k = 0; k < s->nmat; k++) {
            const lk_psgd_mat *x = &s->mat[k];
            for (size_t i = 0; i < (size_t)x->n * x->m; i++) {
                const double got = sent[x->offset + i] + s->e[x->e_at + i], want = truth[x->offset + i];
                if (fabs(got - want) > 1e-4 * T * scale)
                    fail_msg("%s: matrix %d [%zu]: sent + residual %g, the gradients' sum %g",
                             cst ? "constant" : "fresh", k, i, got, want);
            }
        }
        /* the same rank-3 gradient each step: what rank 2 leaves out piles up in the residual
         * until it is sent, so the residual stays within a few gradients (fresh random
         * full-rank ones, which no rank-2 subspace holds, make it a random walk) */
        if (cst && resid > 4.0 * scale) fail_msg("residual %g against gradients of %g", resid, scale);
        printf("%s gradients, 12 steps at rank 2: sent + residual = the gradients' sum (1e-4), residual "
               "at most %.2f of a gradient\n", cst ? "the same" : "fresh", resid / scale);
    }
    free(sent), free(truth);
    lk_powersgd_destroy(s);
    lk_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_low_rank_exact),
        cmocka_unit_test(test_error_feedback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
