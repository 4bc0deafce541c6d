/* test_sum16.c - the 16-bit sums of the gradient wire (lk_comm_sum16: --grad-compress
 * bf16|fp16, --grad-dtype bf16) under mpirun -np 2 and 3 (and as a world of one), in bf16
 * and in fp16: every rank's part is the float32 sum in rank order of every rank's 16-bit
 * values, rounded once to nearest even - bit for bit the serial reference each rank
 * computes from the values it knows the others hold - with uneven parts (one empty),
 * blocking, started and waited, started and polled, several slots in flight at once, with
 * and without the all-gather, for a device buffer through the staging buffer, and through
 * lockstep's shared memory (bitwise the same sums; a type that differs between ranks is an
 * error on every rank), and float values summed so in place in the shared gradient buffer
 * (lk_comm_sum16_floats: bitwise rounding, summing and widening, NaN, infinities, zeros'
 * signs and fp16's overflow included). Then the
 * bucketer with a 16-bit wire: the gradients scaled by 1/world, summed, scaled back,
 * whichever way the buckets are driven; and gradients whose sum overflows fp16 (but not
 * their average) arrive finite. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bucket.h"
#include "comm/comm.h"
#include "core/half.h"
#include "core/layers.h"
#include "core/ops.h"
#include "testutil.h"

static lk_comm *C;
static lk_dtype T = LK_BF16; /* the type under test */

/* rank r's value at i: spread over magnitudes so the sums round (within fp16's range: its
 * sums stay below 2^15) */
static uint16_t value(int r, size_t i)
{
    const float f = (float)((long)((i * 7919 + (size_t)r * 104729) % 20011) - 10005) *
                    ldexpf(1.0f, (int)(i % 13) - 16 + r);
    return lk_wire16_rne(T, f);
}

static uint16_t want(size_t i)
{
    float acc = 0.0f;
    for (int r = 0; r < C->world; r++) acc += lk_wire16_to_f32(T, value(r, i));
    return lk_wire16_rne(T, acc);
}

static size_t count_of(int r, size_t scale) { return r == 1 ? 0 : (2 * (size_t)r + 3) * scale + (size_t)r; }

/* mode 0 blocking, 1 start + wait, 2 start + test until done (then wait: a no-op) */
static void check(uint16_t *buf, size_t scale, int gather, int mode, int slot)
{
    size_t counts[64], total = 0, off = 0;
    for (int r = 0; r < C->world; r++) total += counts[r] = count_of(r, scale);
    for (int r = 0; r < C->rank; r++) off += counts[r];
    for (size_t i = 0; i < total; i++) buf[i] = value(C->rank, i);
    if (mode == 0) {
        TU_OK(lk_comm_sum16(C, T, buf, counts, gather));
    } else {
        TU_OK(lk_comm_sum16_start(C, T, buf, counts, gather, slot));
        for (int done = 0; mode == 2 && !done;) TU_OK(lk_comm_test(C, slot, &done));
        TU_OK(lk_comm_wait(C, slot));
    }
    const size_t lo = gather ? 0 : off, hi = gather ? total : off + counts[C->rank];
    for (size_t i = lo; i < hi; i++)
        if (buf[i] != want(i))
            fail_msg("rank %d: %s sum (scale %zu, gather %d, mode %d) at %zu: %#x, want %#x", C->rank,
                     lk_dtype_name(T), scale, gather, mode, i, buf[i], want(i));
}

static void test_sums(void **state)
{
    (void)state;
    const size_t scales[] = {1, 1000, 70001};
    uint16_t *buf = malloc(64 * 4 * 70003 * sizeof *buf);
    for (size_t k = 0; k < 3; k++)
        for (int gather = 0; gather < 2; gather++)
            for (int mode = 0; mode < 3; mode++) check(buf, scales[k], gather, mode, 7);
    free(buf);
    TU_FAILS_WITH(lk_comm_sum16(C, LK_F32, NULL, NULL, 1), LK_ERR_ARG, "16-bit sum of fp32");
}

/* the blocking sums through lockstep's shared memory (mpirun puts every rank on this host),
 * over several of its pieces */
static void test_sums_shm(void **state)
{
    (void)state;
    const size_t scales[] = {1, 1000, 70001, 200001};
    uint16_t *buf = malloc(64 * 4 * 200003 * sizeof *buf);
    TU_OK(lk_comm_use_shm(C, 1, 0, NULL));
    assert_int_equal(C->shm, C->world > 1);
    for (size_t k = 0; k < 4; k++)
        for (int gather = 0; gather < 2; gather++) check(buf, scales[k], gather, 0, 0);
    if (C->world > 1) { /* the types differ: an error on every rank, not a hang */
        size_t counts[64];
        lk_comm_even_counts(C, 100, counts);
        lk_status st = lk_comm_sum16(C, C->rank ? LK_F16 : LK_BF16, buf, counts, 1);
        assert_int_equal(st, LK_ERR_COMM);
        assert_non_null(strstr(lk_error_message(), "16-bit sums differ"));
    }
    TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
    free(buf);
}

/* rank r's float value at i, with the awkward ones among them */
static float fvalue(int r, size_t i)
{
    switch ((i * 31 + (size_t)r) % 97) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -0.0f;
    case 3: return 1e5f;                  /* beyond fp16 (scaled by 1/2: 5e4, their sum not) */
    case 4: return 3.0e-8f;               /* below fp16's normals */
    case 5: return 1.0f + 0x1p-8f;        /* a tie for bf16 */
    default: return sinf((float)(i * 7 + (size_t)r * 13)) * ldexpf(1.0f, (int)(i % 29) - 14);
    }
}

/* what to_wire, sum16 and from_wire give at i (rank order, from zero, rounded once) */
static float fwant(size_t i, float scale)
{
    float acc = 0.0f;
    for (int r = 0; r < C->world; r++) acc += lk_wire16_to_f32(T, lk_wire16_rne(T, fvalue(r, i) * scale));
    return lk_wire16_to_f32(T, lk_wire16_rne(T, acc)) * (1.0f / scale);
}

static int same(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

static void test_floats_in_place(void **state)
{
    (void)state;
    enum { G = 300007 };
    float *g = NULL;
    TU_OK(lk_comm_use_shm(C, 1, G, &g));
    if (!C->shm) { /* one rank: no shared memory, nothing in place */
        assert_false(lk_comm_sum16_in_place(C, g, 10));
        TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
        return;
    }
    assert_true(lk_comm_sum16_in_place(C, g + 5, G - 5));
    assert_false(lk_comm_sum16_in_place(C, g + 5, G)); /* past its end */
    const float scale = 1.0f / (float)C->world;
    const size_t ranges[][2] = {{0, G}, {3, 1000}, {1001, G - 2}};
    for (int r = 0; r < 3; r++)
        for (int gather = 0; gather < 2; gather++) {
            const size_t lo = ranges[r][0], n = ranges[r][1] - lo;
            for (size_t i = 0; i < G; i++) g[i] = fvalue(C->rank, i);
            size_t counts[64], off = 0;
            lk_comm_even_counts(C, n, counts);
            for (int q = 0; q < C->rank; q++) off += counts[q];
            TU_OK(lk_comm_sum16_floats(C, T, g + lo, counts, gather, scale));
            for (size_t i = 0; i < G; i++) {
                const int summed = i >= lo && i < lo + n && (gather || (i >= lo + off && i < lo + off + counts[C->rank]));
                const float want = summed ? fwant(i, scale) : fvalue(C->rank, i);
                if (!same(g[i], want) && (summed || i < lo || i >= lo + n)) /* (others' parts: undefined) */
                    fail_msg("rank %d: %s floats in place, range %d, gather %d, at %zu: %a, want %a", C->rank,
                             lk_dtype_name(T), r, gather, i, (double)g[i], (double)want);
            }
            TU_OK(lk_comm_barrier(C)); /* all checked before the buffers are refilled */
        }
    float elsewhere[8] = {0};
    size_t counts[64];
    lk_comm_even_counts(C, 8, counts);
    TU_FAILS_WITH(lk_comm_sum16_floats(C, T, elsewhere, counts, 1, scale), LK_ERR_ARG, "in place");
    TU_OK(lk_comm_use_shm(C, 0, 0, NULL));
}

/* three sums in flight at once on their own slots, waited for in another order */
static void test_slots(void **state)
{
    (void)state;
    enum { N = 5003 };
    uint16_t *b[3];
    size_t counts[3][64];
    for (int s = 0; s < 3; s++) {
        b[s] = malloc(N * sizeof **b);
        for (size_t i = 0; i < N; i++) b[s][i] = value(C->rank, i + (size_t)s * N);
        lk_comm_even_counts(C, N, counts[s]);
        TU_OK(lk_comm_sum16_start(C, T, b[s], counts[s], s != 1, 10 + s));
    }
    for (int s = 2; s >= 0; s--) TU_OK(lk_comm_wait(C, 10 + s));
    for (int s = 0; s < 3; s++) {
        size_t off = 0;
        for (int r = 0; r < C->rank; r++) off += counts[s][r];
        const size_t lo = s != 1 ? 0 : off, hi = s != 1 ? N : off + counts[s][C->rank];
        for (size_t i = lo; i < hi; i++) assert_int_equal(b[s][i], want(i + (size_t)s * N));
        free(b[s]);
    }
    TU_FAILS_WITH(lk_comm_sum16(C, T, b[0], NULL, 1), LK_ERR_ARG, "counts");
}

/* a device buffer goes through the staging buffer (a CPU device that claims it cannot
 * read its memory) */
static void test_device_buffer(void **state)
{
    (void)state;
    enum { N = 3001 };
    static lk_backend fake_ops;
    lk_device fake;
    uint16_t *dev = calloc(N, sizeof *dev);
    tu_fake_device(&fake, &fake_ops, dev, N * sizeof *dev);
    TU_OK(lk_comm_use_device(C, &fake, N * sizeof(float)));
    size_t counts[64];
    lk_comm_even_counts(C, N, counts);
    for (int gather = 0; gather < 2; gather++) {
        for (size_t i = 0; i < N; i++) dev[i] = value(C->rank, i);
        TU_OK(lk_comm_sum16_start(C, T, dev, counts, gather, 3)); /* done at once */
        TU_OK(lk_comm_wait(C, 3));
        size_t off = 0;
        for (int r = 0; r < C->rank; r++) off += counts[r];
        const size_t lo = gather ? 0 : off, hi = gather ? N : off + counts[C->rank];
        for (size_t i = lo; i < hi; i++) assert_int_equal(dev[i], want(i));
    }
    TU_OK(lk_comm_use_device(C, NULL, 0));
    free(dev);
}

/* The bucketer with a 16-bit wire on a model: after backward, each gradient is world times
 * the 16-bit sum of every rank's gradient rounded after scaling by 1/world (here every rank
 * computes the same), between layers and on the comm thread alike; `big` (0: none) scales
 * the output gradient to make the largest gradient that (40000: their sum overflows fp16,
 * their average does not). */
static void check_buckets(lk_progress_mode mode, float big)
{
    lk_model *m = tu_linear_stack((const int[]){20, 300, 200, 7}, 4, 1u);
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 3));
    lk_buckets *b;
    const lk_buckets_opts o = {4096, mode, 0, 0, NULL, NULL, T, 0, 0};
    if (mode == LK_PROGRESS_THREAD && !C->threads_ok) {
        lk_model_destroy(m);
        return;
    }
    TU_OK(lk_buckets_open(&b, C, m, &o));
    assert_true(b->n > 2);
    float *x = lk_model_input(m);
    for (int i = 0; i < 4 * 20; i++) x[i] = (float)sin(0.3 * i);
    float *ref = malloc(m->nparams * sizeof *ref);
    if (big > 0.0f) { /* the largest gradient made `big` (gradients are linear in dout) */
        lk_tensor out;
        TU_OK(lk_model_forward(m, 4, 1, 0, &out));
        for (size_t i = 0; i < lk_tensor_numel(&out); i++) m->dout[i] = out.data[i] * 0.1f;
        m->on_grad_ready = NULL;
        TU_OK(lk_model_backward_ex(m, 4, 0, LK_GRADS_REPLACE));
        float gmax = 0.0f;
        for (size_t i = 0; i < m->nparams; i++) gmax = fmaxf(gmax, fabsf(m->grads[i]));
        big /= gmax;
    } else {
        big = 1.0f;
    }
    for (int step = 0; step < 2; step++) {
        lk_tensor out;
        TU_OK(lk_model_forward(m, 4, 1, step, &out));
        for (size_t i = 0; i < lk_tensor_numel(&out); i++) m->dout[i] = out.data[i] * 0.1f * big;
        lk_buckets_begin(b, 1, 1);
        m->on_grad_ready = NULL; /* the serial reference first: gradients alone */
        TU_OK(lk_model_backward_ex(m, 4, step, LK_GRADS_REPLACE));
        const float scale = 1.0f / (float)C->world;
        float gmax = 0.0f;
        for (size_t i = 0; i < m->nparams; i++) {
            float acc = 0.0f;
            for (int r = 0; r < C->world; r++) acc += lk_wire16_to_f32(T, lk_wire16_rne(T, m->grads[i] * scale));
            ref[i] = lk_wire16_to_f32(T, lk_wire16_rne(T, acc)) * (float)C->world;
            gmax = fmaxf(gmax, fabsf(m->grads[i]));
        }
        /* the case the scaling is for: world x the largest gradient beyond fp16, it not */
        if (big != 1.0f) assert_true(gmax < 65504.0f && (C->world == 1 || gmax * (float)C->world > 65504.0f));
        m->on_grad_ready = lk_buckets_grad_ready;
        TU_OK(lk_model_backward_ex(m, 4, step, LK_GRADS_REPLACE));
        TU_OK(lk_buckets_finish(b));
        for (size_t i = 0; i < m->nparams; i++)
            if (m->grads[i] != ref[i] || !isfinite(m->grads[i]))
                fail_msg("rank %d mode %d: gradient %zu is %g, the %s sum %g", C->rank, (int)mode, i,
                         (double)m->grads[i], lk_dtype_name(T), (double)ref[i]);
    }
    free(ref);
    lk_buckets_destroy(b);
    lk_model_destroy(m);
}

static void test_buckets(void **state)
{
    (void)state;
    check_buckets(LK_PROGRESS_LAYERS, 0.0f);
    check_buckets(LK_PROGRESS_THREAD, 0.0f);
}

/* fp16: gradients of about 40000 on every rank, whose sum (80000 on 2 ranks) fp16 cannot
 * hold: the wire carries their average */
static void test_overflow(void **state)
{
    (void)state;
    if (T != LK_F16) return;
    check_buckets(LK_PROGRESS_LAYERS, 4e4f);
}

static int use_bf16(void **state)
{
    (void)state;
    T = LK_BF16;
    return 0;
}

static int use_f16(void **state)
{
    (void)state;
    T = LK_F16;
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sums, use_bf16),
        cmocka_unit_test_setup(test_sums_shm, use_bf16),
        cmocka_unit_test_setup(test_floats_in_place, use_bf16),
        cmocka_unit_test_setup(test_slots, use_bf16),
        cmocka_unit_test_setup(test_device_buffer, use_bf16),
        cmocka_unit_test_setup(test_buckets, use_bf16),
        cmocka_unit_test_setup(test_sums, use_f16),
        cmocka_unit_test_setup(test_sums_shm, use_f16),
        cmocka_unit_test_setup(test_floats_in_place, use_f16),
        cmocka_unit_test_setup(test_slots, use_f16),
        cmocka_unit_test_setup(test_device_buffer, use_f16),
        cmocka_unit_test_setup(test_buckets, use_f16),
        cmocka_unit_test_setup(test_overflow, use_f16),
    };
    return tu_mpi_main(&argc, &argv, &C, tests, sizeof tests / sizeof *tests);
}
