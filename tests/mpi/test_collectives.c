/* test_collectives.c - every collective of the MPI backend against a serial
 * reference, under mpirun -np 2 and -np 3 (also run as a world of one). Lengths
 * include 0, 1, odd and uneven-per-rank; the reference is what the sum (max, min)
 * over ranks of each rank's known contribution must be. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bucket.h"
#include "comm/comm.h"
#include "core/layers.h"
#include "core/ops.h"
#include "testutil.h"

static lk_comm *C;

/* what rank r contributes at index i: distinct per rank, exact in float */
static float contrib(int r, size_t i) { return (float)((r + 1) * 1000 + (long)(i % 997)) * 0.25f; }

static void check_allreduce(void)
{
    const size_t lens[] = {0, 1, 7, 1000, 100003, 600011};
    const lk_reduce_op ops[] = {LK_REDUCE_SUM, LK_REDUCE_AVG, LK_REDUCE_MAX, LK_REDUCE_MIN};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
        for (size_t oi = 0; oi < 4; oi++) {
            size_t n = lens[li];
            float *buf = malloc((n ? n : 1) * sizeof *buf);
            for (size_t i = 0; i < n; i++) buf[i] = contrib(C->rank, i);
            TU_OK(lk_comm_allreduce(C, buf, n, ops[oi]));
            for (size_t i = 0; i < n; i++) {
                double want = ops[oi] == LK_REDUCE_MIN ? 1e30 : ops[oi] == LK_REDUCE_MAX ? -1e30 : 0;
                for (int r = 0; r < C->world; r++) {
                    double v = contrib(r, i);
                    if (ops[oi] == LK_REDUCE_MAX) want = fmax(want, v);
                    else if (ops[oi] == LK_REDUCE_MIN) want = fmin(want, v);
                    else want += v;
                }
                if (ops[oi] == LK_REDUCE_AVG) want /= C->world;
                if (fabs(buf[i] - want) > 1e-6 * fabs(want))
                    fail_msg("rank %d: op %zu n %zu: [%zu] = %g, expected %g", C->rank, oi, n, i,
                             (double)buf[i], want);
            }
            free(buf);
        }
}

static void test_allreduce(void **state)
{
    (void)state;
    check_allreduce();
}

/* Same-host ranks through shared memory: copied through it (any buffer), and in place
 * in the gradient buffer it hands out. Under mpirun every rank is on this host. */
static void test_allreduce_shm(void **state)
{
    (void)state;
    enum { G = 70001 };
    float *g = NULL;
    TU_OK(lk_comm_use_shm(C, 1, G, &g));
    assert_int_equal(C->shm, C->world > 1);
    assert_true(C->shm ? g != NULL : g == NULL);
    printf("rank %d: %s\n", C->rank, C->shm_note);
    check_allreduce();
    if (g) {
        const size_t ranges[][2] = {{0, G}, {3, 40000}, {40000, G}, {17, 17}};
        for (int r = 0; r < 4; r++) {
            for (size_t i = 0; i < G; i++) g[i] = contrib(C->rank, i);
            size_t lo = ranges[r][0], n = ranges[r][1] - lo;
            TU_OK(lk_comm_allreduce(C, g + lo, n, LK_REDUCE_AVG));
            for (size_t i = 0; i < G; i++) {
                double want = contrib(C->rank, i);
                if (i >= lo && i < lo + n) {
                    want = 0;
                    for (int q = 0; q < C->world; q++) want += contrib(q, i);
                    want /= C->world;
                }
                if (fabs(g[i] - want) > 1e-6 * fabs(want))
                    fail_msg("rank %d: range %d: g[%zu] = %g, expected %g", C->rank, r, i,
                             (double)g[i], want);
            }
            TU_OK(lk_comm_barrier(C)); /* all checked before the buffers are refilled */
        }
        /* a length that differs between ranks is an error on every rank, not a hang */
        if (C->world > 1) {
            lk_status st = lk_comm_allreduce(C, g, C->rank ? 10 : 11, LK_REDUCE_SUM);
            assert_int_equal(st, LK_ERR_COMM);
            assert_non_null(strstr(lk_error_message(), "differ"));
        }
    }
    TU_OK(lk_comm_use_shm(C, 0, 0, NULL)); /* back to MPI, and the region goes */
    assert_int_equal(C->shm, 0);
    check_allreduce();
}

/* several requests in flight at once, driven by test() before wait() */
static void test_async_slots(void **state)
{
    (void)state;
    enum { SLOTS = 5, N = 4099 };
    static float buf[SLOTS][N];
    for (int s = 0; s < SLOTS; s++)
        for (size_t i = 0; i < N; i++) buf[s][i] = contrib(C->rank, i + (size_t)s);
    for (int s = 0; s < SLOTS; s++) TU_OK(lk_comm_allreduce_start(C, buf[s], N, LK_REDUCE_SUM, s));
    int done = 0;
    TU_OK(lk_comm_test(C, SLOTS - 1, &done));
    for (int s = SLOTS - 1; s >= 0; s--) TU_OK(lk_comm_wait(C, s));
    for (int s = 0; s < SLOTS; s++)
        for (size_t i = 0; i < N; i++) {
            double want = 0;
            for (int r = 0; r < C->world; r++) want += contrib(r, i + (size_t)s);
            assert_true(fabs(buf[s][i] - want) <= 1e-6 * want);
        }
    /* a slot cannot be reused while in flight */
    TU_OK(lk_comm_allreduce_start(C, buf[0], N, LK_REDUCE_SUM, 0));
    if (C->world > 1) TU_FAILS_WITH(lk_comm_allreduce_start(C, buf[1], N, LK_REDUCE_SUM, 0),
                                    LK_ERR_STATE, "still in flight");
    TU_OK(lk_comm_wait(C, 0));
    TU_FAILS_WITH(lk_comm_wait(C, LK_COMM_MAX_SLOTS), LK_ERR_ARG, "slot");
}

static void test_broadcast(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 5, 1 << 20};
    for (int root = 0; root < C->world; root += LK_MAX(1, C->world - 1))
        for (size_t si = 0; si < 3; si++) {
            size_t n = sizes[si];
            unsigned char *b = malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(C->rank == root ? i * 7 + 3 : 0xEE);
            TU_OK(lk_comm_broadcast(C, b, n, root));
            for (size_t i = 0; i < n; i++) assert_int_equal(b[i], (unsigned char)(i * 7 + 3));
            free(b);
            if (C->world == 1) break;
        }
    TU_FAILS_WITH(lk_comm_broadcast(C, NULL, 0, C->world), LK_ERR_ARG, "root");
}

/* uneven parts, one of them empty, some longer than a shared-memory piece */
static size_t count_of(int r, size_t scale) { return r == 1 ? 0 : (3 * (size_t)r + 2) * scale + (size_t)r; }

/* In-place reduce-scatter (blocking, or async on a slot) of parts scaled by `scale`, in
 * buf (which may be the shared-memory gradient buffer): this rank's part is the sum (or
 * the average) of every rank's contribution there. */
static void check_reduce_scatter(float *buf, size_t scale, int async, lk_reduce_op op)
{
    size_t counts[64], total = 0, off = 0;
    for (int r = 0; r < C->world; r++) total += counts[r] = count_of(r, scale);
    for (int r = 0; r < C->rank; r++) off += counts[r];
    for (size_t i = 0; i < total; i++) buf[i] = contrib(C->rank, i);
    if (async) {
        TU_OK(lk_comm_reduce_scatter_start(C, buf, counts, op, 3));
        TU_OK(lk_comm_wait(C, 3));
    } else {
        TU_OK(lk_comm_reduce_scatter(C, buf, counts, op));
    }
    for (size_t i = off; i < off + counts[C->rank]; i++) {
        double want = 0;
        for (int r = 0; r < C->world; r++) want += contrib(r, i);
        if (op == LK_REDUCE_AVG) want /= C->world;
        if (fabs(buf[i] - want) > 1e-6 * want)
            fail_msg("rank %d: reduce-scatter (scale %zu, async %d) at %zu: %g, want %g", C->rank,
                     scale, async, i, (double)buf[i], want);
    }
}

static void check_allgather(float *buf, size_t scale, int async)
{
    size_t counts[64], total = 0, off = 0;
    for (int r = 0; r < C->world; r++) total += counts[r] = count_of(r, scale);
    for (int r = 0; r < C->rank; r++) off += counts[r];
    for (size_t i = 0; i < total; i++) buf[i] = i >= off && i < off + counts[C->rank] ? contrib(C->rank, i) : -1.0f;
    if (async) {
        TU_OK(lk_comm_allgather_start(C, buf, counts, 5));
        TU_OK(lk_comm_wait(C, 5));
    } else {
        TU_OK(lk_comm_allgather(C, buf, counts));
    }
    off = 0;
    for (int r = 0; r < C->world; off += counts[r], r++)
        for (size_t i = off; i < off + counts[r]; i++)
            if (buf[i] != contrib(r, i))
                fail_msg("rank %d: all-gather (scale %zu, async %d) at %zu: %g from rank %d, want %g",
                         C->rank, scale, async, i, (double)buf[i], r, (double)contrib(r, i));
}

static void test_reduce_scatter(void **state)
{
    (void)state;
    const size_t scales[] = {1, 1000, 70001};
    float *buf = malloc(64 * 3 * 70003 * sizeof *buf);
    for (size_t k = 0; k < 3; k++)
        for (int async = 0; async < 2; async++) {
            check_reduce_scatter(buf, scales[k], async, LK_REDUCE_SUM);
            check_reduce_scatter(buf, scales[k], async, LK_REDUCE_AVG);
        }
    TU_FAILS_WITH(lk_comm_reduce_scatter(C, buf, NULL, LK_REDUCE_SUM), LK_ERR_ARG, "counts");
    free(buf);
}

static void test_allgather(void **state)
{
    (void)state;
    const size_t scales[] = {1, 1000, 70001};
    float *buf = malloc(64 * 3 * 70003 * sizeof *buf);
    for (size_t k = 0; k < 3; k++)
        for (int async = 0; async < 2; async++) check_allgather(buf, scales[k], async);
    free(buf);
    long mine = 1000 + C->rank, all[64];
    TU_OK(lk_comm_allgather_bytes(C, &mine, all, sizeof mine));
    for (int r = 0; r < C->world; r++) assert_int_equal(all[r], 1000 + r);
}

/* The same through shared memory: in place in the gradient buffers, and staged. */
static void test_shard_shm(void **state)
{
    (void)state;
    const size_t G = 64 * 3 * 70003;
    float *g = NULL;
    TU_OK(lk_comm_use_shm(C, 1, G, &g));
    float *own = malloc(G * sizeof *own);
    const size_t scales[] = {1, 70001};
    for (size_t k = 0; k < 2; k++) {
        if (g) { /* a range of the gradient buffers at an offset: summed in place */
            check_reduce_scatter(g + 48, scales[k], 0, LK_REDUCE_SUM);
            check_reduce_scatter(g, scales[k], 0, LK_REDUCE_AVG);
        }
        check_reduce_scatter(own, scales[k], 0, LK_REDUCE_SUM);
        check_reduce_scatter(own, scales[k], 0, LK_REDUCE_AVG);
        check_allgather(own, scales[k], 0);
    }
    free(own);
    TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
}

static void test_f64_and_barrier(void **state)
{
    (void)state;
    double v[3] = {C->rank + 0.5, 1.0, -(double)C->rank};
    TU_OK(lk_comm_allreduce_f64(C, v, 3, LK_REDUCE_SUM));
    double w = C->world;
    assert_true(fabs(v[0] - (w * (w - 1) / 2 + 0.5 * w)) < 1e-12);
    assert_true(v[1] == w);
    TU_OK(lk_comm_barrier(C));
}

/* Device buffers (a GPU's, which MPI cannot read) go through the pinned staging
 * buffer. A "device" here is the CPU backend that claims one malloc'd block as memory
 * the host cannot address, so the staging path runs without a GPU. */

/* buf[i] == scale * sum over ranks of contrib(r, i), to 1e-6 relative */
static void check_sum_over_ranks(const char *what, const float *buf, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) {
        double want = 0;
        for (int r = 0; r < C->world; r++) want += contrib(r, i);
        want *= scale;
        if (fabs(buf[i] - want) > 1e-6 * want)
            fail_msg("rank %d: %s [%zu] %g != %g", C->rank, what, i, (double)buf[i], want);
    }
}

static void test_device_buffers(void **state)
{
    (void)state;
    enum { N = 1000 };
    static lk_backend fake_ops;
    lk_device fake;
    float *dev = calloc(2 * N, sizeof *dev);
    tu_fake_device(&fake, &fake_ops, dev, 2 * N * sizeof *dev);
    TU_OK(lk_comm_use_device(C, &fake, N * sizeof(float)));
    for (size_t i = 0; i < N; i++) dev[i] = contrib(C->rank, i);
    TU_OK(lk_comm_allreduce(C, dev, N, LK_REDUCE_SUM));
    check_sum_over_ranks("sum", dev, N, 1.0);
    for (size_t i = 0; i < N; i++) dev[i] = contrib(C->rank, i);
    TU_OK(lk_comm_allreduce_start(C, dev, N, LK_REDUCE_AVG, 3)); /* done at once */
    TU_OK(lk_comm_wait(C, 3));
    check_sum_over_ranks("avg", dev, N, 1.0 / C->world);
    for (size_t i = 0; i < N; i++) dev[i] = C->rank == C->world - 1 ? (float)i : -1.0f;
    TU_OK(lk_comm_broadcast(C, dev, N * sizeof(float), C->world - 1));
    for (size_t i = 0; i < N; i++) assert_true(dev[i] == (float)i);
    /* larger than the staging buffer: an error naming it, on every rank alike */
    TU_FAILS_WITH(lk_comm_allreduce(C, dev, 2 * N, LK_REDUCE_SUM), LK_ERR_ARG, "staging buffer");
    /* host buffers still go straight to the library */
    float host[3] = {1, 2, 3};
    TU_OK(lk_comm_allreduce(C, host, 3, LK_REDUCE_SUM));
    assert_true(host[2] == 3.0f * C->world);
    TU_OK(lk_comm_use_device(C, NULL, 0));
    free(dev);
}

/* NCCL with one rank on a GPU (two ranks cannot share a GPU in NCCL): an all-reduce
 * queued on NCCL's stream, waited for by the compute stream, and the blocking form. */
static void test_nccl_one_rank(void **state)
{
    (void)state;
    if (!lk_comm_have_nccl() || lk_cuda_device_count() == 0 || C->world != 1) {
        printf("skipped: NCCL with one rank needs a build with NCCL, a GPU and a world of 1 "
               "(%s, %d GPUs, world %d)\n", lk_nccl_version(), lk_cuda_device_count(), C->world);
        skip();
    }
    enum { N = 100003 };
    lk_device *gpu;
    TU_OK(lk_device_open(&gpu, "cuda", 1));
    float *h = malloc(N * sizeof *h), *d = lk_dev_alloc(gpu, N * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < N; i++) h[i] = contrib(0, i);
    lk_copy_to_device(gpu, d, h, N * sizeof *h);
    TU_OK(lk_comm_use_device(C, gpu, N * sizeof(float)));
    TU_OK(lk_comm_use_nccl(C, 1));
    TU_OK(lk_comm_allreduce_start(C, d, N, LK_REDUCE_SUM, 0));
    TU_OK(lk_comm_wait(C, 0));
    TU_OK(lk_comm_allreduce(C, d, N, LK_REDUCE_AVG));
    lk_copy_to_host(gpu, h, d, N * sizeof *h);
    TU_OK(lk_device_status(gpu));
    for (size_t i = 0; i < N; i++) assert_true(h[i] == contrib(0, i)); /* one rank: unchanged */
    TU_OK(lk_comm_use_device(C, NULL, 0)); /* closes NCCL too */
    lk_dev_free(gpu, d);
    free(h);
    lk_device_close(gpu);
}

/* The bucketer on a real model: several buckets, gradients reported in backward
 * order by lk_model_backward, and the result is the sum over ranks, in several
 * steps (active, inactive, active again) for either way of driving progress. */
static void check_buckets(lk_progress_mode mode, int shm)
{
    lk_model *m = tu_linear_stack((const int[]){20, 300, 200, 5}, 4, 3u);
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 11));
    if (shm) { /* the gradients move into shared memory and are summed in place */
        float *g = NULL;
        TU_OK(lk_comm_use_shm(C, 1, m->nparams, &g));
        if (g) TU_OK(lk_model_borrow_grads(m, g));
        assert_true(C->world == 1 || (C->shm && m->grads == g));
    }
    lk_buckets *b;
    TU_OK(lk_buckets_create(&b, C, m, 64 * 1024, mode)); /* 16k floats: more than one bucket */
    assert_true(b->n >= 2);
    if (mode == LK_PROGRESS_AUTO) /* Open MPI and the local world allow the comm thread */
        assert_int_equal(b->mode, C->threads_ok ? LK_PROGRESS_THREAD : LK_PROGRESS_LAYERS);
    else
        assert_int_equal(b->mode, mode);
    assert_true(C->threads_ok);
    assert_int_equal(b->b[0].begin, 0);
    for (int i = 1; i < b->n; i++) assert_int_equal(b->b[i].begin, b->b[i - 1].end);
    assert_int_equal(b->b[b->n - 1].end, m->nparams);

    /* each rank's input differs, so its gradients do */
    float *x = lk_model_input(m);
    for (int i = 0; i < 4 * 20; i++) x[i] = contrib(C->rank, (size_t)i) * 1e-3f;
    lk_tensor out;
    TU_OK(lk_model_forward(m, 4, 1, 0, &out));
    for (int i = 0; i < 4 * 5; i++) m->dout[i] = 0.1f * (float)(i % 3);
    /* reference: every rank's gradients, computed serially by re-running each input */
    size_t n = m->nparams;
    double *want = calloc(n, sizeof *want);
    for (int r = 0; r < C->world; r++) {
        for (int i = 0; i < 4 * 20; i++) x[i] = contrib(r, (size_t)i) * 1e-3f;
        TU_OK(lk_model_forward(m, 4, 1, 0, &out));
        for (int i = 0; i < 4 * 5; i++) m->dout[i] = 0.1f * (float)(i % 3);
        m->on_grad_ready = NULL;
        TU_OK(lk_model_backward_ex(m, 4, 0, LK_GRADS_REPLACE));
        for (size_t k = 0; k < n; k++) want[k] += m->grads[k];
    }
    for (int i = 0; i < 4 * 20; i++) x[i] = contrib(C->rank, (size_t)i) * 1e-3f;
    TU_OK(lk_model_forward(m, 4, 1, 0, &out));
    for (int i = 0; i < 4 * 5; i++) m->dout[i] = 0.1f * (float)(i % 3);
    m->on_grad_ready = lk_buckets_grad_ready;
    for (int step = 0; step < 3; step++) {
        lk_buckets_begin(b, 1, 1);
        TU_OK(lk_model_backward_ex(m, 4, 0, LK_GRADS_REPLACE));
        TU_OK(lk_buckets_finish(b));
        for (size_t k = 0; k < n; k++)
            if (fabs(m->grads[k] - want[k]) > 1e-5 * (fabs(want[k]) + 1e-3))
                fail_msg("rank %d, step %d: grad[%zu] = %g, expected %g", C->rank, step, k,
                         (double)m->grads[k], want[k]);
        assert_true(b->span_ms >= 0.0 && b->comm_ms >= 0.0);
        double h = lk_buckets_hidden_share(b);
        assert_true(h >= 0.0 && h <= 1.0);
        /* the sum of squares the buckets added up as they arrived (the step's check) */
        double ss = 0.0, direct = 0.0;
        assert_true(lk_buckets_sumsq(b, &ss));
        for (size_t k = 0; k < n; k++) direct += (double)m->grads[k] * m->grads[k];
        assert_true(fabs(ss - direct) <= 1e-9 * direct && direct > 0.0);
        /* inactive: no communication, gradients stay local (and no sum of squares) */
        lk_buckets_begin(b, 1, 0);
        TU_OK(lk_model_backward_ex(m, 4, 0, LK_GRADS_REPLACE));
        TU_OK(lk_buckets_finish(b));
        assert_true(b->comm_ms == 0.0);
        assert_false(lk_buckets_sumsq(b, &ss));
        TU_OK(lk_model_forward(m, 4, 1, 0, &out)); /* the same input again */
        for (int i = 0; i < 4 * 5; i++) m->dout[i] = 0.1f * (float)(i % 3);
    }
    free(want);
    lk_buckets_destroy(b);
    lk_model_destroy(m);
    if (shm) TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
}

static void test_buckets_between_layers(void **state)
{
    (void)state;
    check_buckets(LK_PROGRESS_LAYERS, 0);
}

static void test_buckets_comm_thread(void **state)
{
    (void)state;
    check_buckets(LK_PROGRESS_THREAD, 0);
}

static void test_buckets_comm_thread_shm(void **state)
{
    (void)state;
    check_buckets(LK_PROGRESS_THREAD, 1);
}

static void test_buckets_auto(void **state)
{
    (void)state;
    check_buckets(LK_PROGRESS_AUTO, 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce),   cmocka_unit_test(test_async_slots),
        cmocka_unit_test(test_broadcast),   cmocka_unit_test(test_reduce_scatter),
        cmocka_unit_test(test_allgather),   cmocka_unit_test(test_f64_and_barrier),
        cmocka_unit_test(test_buckets_between_layers),
        cmocka_unit_test(test_buckets_comm_thread), cmocka_unit_test(test_buckets_auto),
        cmocka_unit_test(test_allreduce_shm), cmocka_unit_test(test_shard_shm), cmocka_unit_test(test_buckets_comm_thread_shm),
        cmocka_unit_test(test_device_buffers), cmocka_unit_test(test_nccl_one_rank),
    };
    return tu_mpi_main(&argc, &argv, &C, tests, sizeof tests / sizeof *tests);
}
