/* test_powersgd_ranks.c - PowerSGD's arithmetic (powersgd.h) with its two all-reduces
 * between, under mpirun -np 2 and 3 (and as a world of one), each rank with gradients of
 * its own: every rank ends with the same approximation, bit for bit; the ranks' residuals
 * and the approximation add up to the ranks' summed gradients, step after step (error
 * feedback loses nothing across ranks either); and when the summed gradient's rank is at
 * most r (every rank's a_i b^T with b shared) the first step sends it exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/powersgd.h"
#include "core/layers.h"
#include "core/ops.h"
#include "core/rng.h"
#include "testutil.h"

static lk_comm *C;

static lk_model *mlp(void) { return tu_linear_stack((const int[]){20, 300, 200}, 3, 1u); }

/* rank r's gradient of matrix x at step t: full rank, or (outer) r's a times a shared b */
static void fill(const lk_psgd_mat *x, float *g, int t, int outer)
{
    for (int i = 0; i < x->n; i++)
        for (int j = 0; j < x->m; j++) {
            const uint64_t key = (uint64_t)t * 64 + (uint64_t)C->rank;
            g[(size_t)i * x->m + j] =
                outer ? (float)((lk_rng_uniform(3, LK_RNG_TEST, key, (uint64_t)i) - 0.5) *
                                (lk_rng_uniform(3, LK_RNG_TEST, 1000 + (uint64_t)t, (uint64_t)j) - 0.5))
                      : (float)(2.0 * lk_rng_uniform(4, LK_RNG_TEST, key, (uint64_t)i * x->m + j) - 1.0);
        }
}

/* one step: project, all-reduce P, back, all-reduce Q, expand */
static void step(lk_powersgd *s, float *g)
{
    size_t at, n;
    TU_OK(lk_powersgd_project(s, g, 0, s->nmat));
    lk_powersgd_range(s, 0, 0, s->nmat, &at, &n);
    TU_OK(lk_comm_allreduce(C, s->p + at, n, LK_REDUCE_SUM));
    TU_OK(lk_powersgd_back(s, g, 0, s->nmat));
    lk_powersgd_range(s, 1, 0, s->nmat, &at, &n);
    TU_OK(lk_comm_allreduce(C, s->q + at, n, LK_REDUCE_SUM));
    TU_OK(lk_powersgd_expand(s, g, 0, s->nmat));
}

static uint64_t fnv(const void *p, size_t bytes)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < bytes; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

static double maxabs(const float *x, size_t n)
{
    double a = 0.0;
    for (size_t i = 0; i < n; i++) a = fmax(a, fabs(x[i]));
    return a;
}

static void check(int outer, int steps, double tol)
{
    lk_model *m = mlp();
    lk_powersgd *s;
    TU_OK(lk_powersgd_create(&s, m, 0, m->nparams, 4, 11, C->world));
    assert_int_equal(s->nmat, 2);
    const size_t n = m->nparams;
    float *truth = calloc(n, sizeof *truth), *sent = calloc(n, sizeof *sent), *e = malloc(n * sizeof *e);
    for (int t = 0; t < steps; t++) {
        lk_zero(m->dev, m->grads, n * sizeof(float));
        for (int k = 0; k < s->nmat; k++) fill(&s->mat[k], m->grads + s->mat[k].offset, t, outer);
        memcpy(e, m->grads, n * sizeof *e);
        TU_OK(lk_comm_allreduce(C, e, n, LK_REDUCE_SUM)); /* the ranks' summed gradient */
        for (size_t i = 0; i < n; i++) truth[i] += e[i];
        step(s, m->grads);
        for (size_t i = 0; i < n; i++) sent[i] += m->grads[i];
        /* the same approximation on every rank, bit for bit */
        uint64_t h = fnv(m->grads, n * sizeof(float)), all[64];
        TU_OK(lk_comm_allgather_bytes(C, &h, all, sizeof h));
        for (int r = 0; r < C->world; r++)
            if (all[r] != h) fail_msg("step %d: rank %d's approximation differs from rank %d's", t, C->rank, r);
    }
    /* sent + every rank's residual = the gradients summed over ranks and steps */
    memset(e, 0, n * sizeof *e);
    for (int k = 0; k < s->nmat; k++)
        memcpy(e + s->mat[k].offset, s->e + s->mat[k].e_at, (size_t)s->mat[k].n * s->mat[k].m * sizeof *e);
    TU_OK(lk_comm_allreduce(C, e, n, LK_REDUCE_SUM));
    const double scale = maxabs(truth, n);
    for (int k = 0; k < s->nmat; k++) {
        const lk_psgd_mat *x = &s->mat[k];
        for (size_t i = x->offset; i < x->offset + (size_t)x->n * x->m; i++)
            if (fabs(sent[i] + e[i] - truth[i]) > tol * scale)
                fail_msg("rank %d, %s, matrix %d [%zu]: sent %g + residuals %g, the gradients' sum %g", C->rank,
                         outer ? "outer products" : "full rank", k, i - x->offset, (double)sent[i], (double)e[i],
                         (double)truth[i]);
    }
    if (outer) /* the first step sent it all */
        assert_true(maxabs(e, n) <= tol * scale);
    free(truth), free(sent), free(e);
    lk_powersgd_destroy(s);
    lk_model_destroy(m);
}

static void test_ranks(void **state)
{
    (void)state;
    check(1, 1, 1e-4);
    check(0, 6, 1e-4);
    if (C->rank == 0)
        printf("%d ranks: the same approximation everywhere; sent + residuals = the summed gradients\n", C->world);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks),
    };
    return tu_mpi_main(&argc, &argv, &C, tests, sizeof tests / sizeof *tests);
}
