/* test_powersgd_ranks.c - PowerSGD's arithmetic (powersgd.h) with its two all-reduces
 * between, under mpirun -np 2 and 3 (and as a world of one), each rank with gradients of
 * its own: every rank ends with the same approximation, bit for bit; the ranks' residuals
 * and the approximation add up to the ranks' summed gradients, step after step (error
 * feedback loses nothing across ranks either); and when the summed gradient's rank is at
 * most r (every rank's a_i b^T with b shared) the first step sends it exactly. The same for
 * the host stages (every rank on this host, in lockstep's shared gradient buffers: the
 * gradients summed first, one residual split by rows) - which also match the per-rank
 * stages' approximation, mixed with them step by step, and give its sum of squares. */
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

/* ---- the host stages ---- */

typedef struct {
    lk_powersgd *s;
    lk_psgd_host h;
    int thirds;
} host_call;

static lk_status host_phase(void *user, int phase, const lk_host_view *v, int *last)
{
    host_call *c = user;
    LK_CHECK(lk_powersgd_host_phase(c->s, 0, c->s->nmat, &c->h, phase, v, last));
    c->thirds += phase == 2;
    return LK_OK;
}

/* one step of the host stages over g (the shared gradient buffer: every tensor a matrix),
 * after the per-rank stages' (spread) as bucket_psgd.c does; returns the sum of squares
 * they found */
static double host_step(lk_powersgd *s, float *g, size_t n, int spread, int *thirds)
{
    host_call c = {.s = s};
    size_t np;
    lk_powersgd_range(s, 0, 0, s->nmat, &c.h.p_base, &np);
    lk_powersgd_range(s, 1, 0, s->nmat, &c.h.q_base, &c.h.q_n);
    const size_t room = lk_comm_phases_room(C, g, n);
    assert_true(room >= np && room >= 2 * c.h.q_n);
    for (int k = 0; spread && k < s->nmat; k++) lk_powersgd_host_gather(s, g, k, C->rank, C->world); /* (per-rank e) */
    TU_OK(lk_comm_phases(C, g, n, 7, 3, host_phase, &c));
    *thirds += c.thirds;
    return c.h.sumsq;
}

/* The host stages (mode 1), or the per-rank ones (0), or the two by turns (2) - step t's
 * through the host when mode is 1 or t is odd: the same approximation on every rank, bit
 * for bit; sent + residuals = the summed gradients; within tol of the per-rank stages'
 * approximation from the same start (run beside them on copies); the sum of squares of
 * what they sent. */
static void check_host(int outer, int steps, int mode, double tol)
{
    lk_model *m = mlp();
    lk_powersgd *s, *ref;
    TU_OK(lk_powersgd_create(&s, m, 0, m->nparams, 4, 11, C->world));
    TU_OK(lk_powersgd_create(&ref, m, 0, m->nparams, 4, 11, C->world));
    const size_t n = m->nparams;
    float *g = NULL;
    TU_OK(lk_comm_use_shm(C, 1, n, &g));
    float *truth = calloc(n, sizeof *truth), *sent = calloc(n, sizeof *sent), *e = malloc(n * sizeof *e);
    float *r = malloc(n * sizeof *r);
    int thirds = 0;
    for (int t = 0; t < steps; t++) {
        memset(g, 0, n * sizeof *g);
        for (int k = 0; k < s->nmat; k++) fill(&s->mat[k], g + s->mat[k].offset, t, outer);
        memcpy(r, g, n * sizeof *r);
        memcpy(e, g, n * sizeof *e);
        TU_OK(lk_comm_allreduce(C, e, n, LK_REDUCE_SUM));
        for (size_t i = 0; i < n; i++) truth[i] += e[i];
        TU_OK(lk_comm_barrier(C)); /* (every rank's g filled before the host stages read it) */
        double sq = 0.0;
        const int host = mode == 1 || (mode == 2 && t % 2);
        if (host) {
            sq = host_step(s, g, n, mode == 2, &thirds);
        } else {
            lk_powersgd_host_settle(s, 0, s->nmat);
            memcpy(e, g, n * sizeof *e);
            step(s, e);
            TU_OK(lk_comm_barrier(C)); /* (every rank read its g before any writes it) */
            memcpy(g, e, n * sizeof *g);
        }
        for (size_t i = 0; i < n; i++) sent[i] += g[i];
        uint64_t h = fnv(g, n * sizeof(float)), all[64];
        TU_OK(lk_comm_allgather_bytes(C, &h, all, sizeof h));
        for (int q = 0; q < C->world; q++)
            if (all[q] != h)
                fail_msg("host stages, step %d: rank %d's approximation differs from rank %d's", t, C->rank, q);
        if (host) {
            double direct = 0.0;
            for (size_t i = 0; i < n; i++) direct += (double)g[i] * g[i];
            if (fabs(sq - direct) > 1e-5 * direct)
                fail_msg("step %d: sum of squares %.9g, of the values %.9g", t, sq, direct);
        }
        if (mode == 1 && t == 0) { /* beside the per-rank stages from the same start */
            step(ref, r);
            const double scale = maxabs(r, n);
            for (size_t i = 0; i < n; i++)
                if (fabs(g[i] - r[i]) > tol * scale)
                    fail_msg("%s, [%zu]: host stages %g, per-rank %g", outer ? "outer" : "full rank", i, (double)g[i],
                             (double)r[i]);
        }
        TU_OK(lk_comm_barrier(C)); /* all read before the buffers are refilled */
    }
    lk_powersgd_host_settle(s, 0, s->nmat);
    memset(e, 0, n * sizeof *e);
    for (int k = 0; k < s->nmat; k++)
        memcpy(e + s->mat[k].offset, s->e + s->mat[k].e_at, (size_t)s->mat[k].n * s->mat[k].m * sizeof *e);
    TU_OK(lk_comm_allreduce(C, e, n, LK_REDUCE_SUM));
    const double scale = maxabs(truth, n);
    for (size_t i = 0; i < n; i++)
        if (fabs(sent[i] + e[i] - truth[i]) > tol * scale)
            fail_msg("host stages, mode %d, rank %d, [%zu]: sent %g + residuals %g, the gradients' sum %g", mode,
                     C->rank, i, (double)sent[i], (double)e[i], (double)truth[i]);
    if (outer) { /* the summed gradient's rank is below r: P's columns degenerate, the third phase */
        assert_true(thirds > 0);
        assert_true(maxabs(e, n) <= tol * scale);
    } else if (mode == 1) {
        assert_int_equal(thirds, 0);
    }
    TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
    free(truth), free(sent), free(e), free(r);
    lk_powersgd_destroy(s);
    lk_powersgd_destroy(ref);
    lk_model_destroy(m);
}

static void test_host(void **state)
{
    (void)state;
    float *g = NULL;
    TU_OK(lk_comm_use_shm(C, 1, 64, &g));
    const int shm = C->shm;
    if (!shm) assert_int_equal(lk_comm_phases_room(C, g, 64), 0); /* one rank: nothing shared */
    TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
    if (!shm) {
        printf("host stages: skipped (no shared memory in a world of one)\n");
        return;
    }
    check_host(1, 1, 1, 1e-4);
    check_host(0, 6, 1, 1e-4);
    check_host(0, 6, 2, 1e-4);
    check_host(1, 3, 2, 1e-4);
    if (C->rank == 0) printf("%d ranks, host stages: the same approximation everywhere, as the per-rank stages'; "
                             "sent + residuals = the summed gradients\n", C->world);
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
        cmocka_unit_test(test_host),
    };
    return tu_mpi_main(&argc, &argv, &C, tests, sizeof tests / sizeof *tests);
}
