/* test_memplan.c - the memory plan's arithmetic by hand, on the mlp (784-128-10): its
 * flat buffer is 100352 + 128 + 1280 + 16 floats (the 10 biases padded to a line), its
 * arena at batch 4 the input, three outputs, two input-gradient buffers, the loss
 * gradient and two scalars, each rounded to 64 bytes; every kind for --zero 0, 1 and 2
 * on 2 ranks, Adam, with the gradients in the rank's memory and in shared memory; and
 * in bf16, where the parameters gain their working copy and the hidden activations halve. */
#include <math.h>
#include <string.h>

#include "comm/powersgd.h"
#include "comm/shm.h"
#include "core/model.h"
#include "testutil.h"
#include "train/memplan.h"

enum { NPARAMS = 100352 + 128 + 1280 + 16 };

static lk_mem_plan plan_in(int zero, int rank, int shm, lk_dtype precision)
{
    const lk_mem_inputs in = {tu_builtin("mlp"), NULL, {3, {1, 28, 28}}, 10, 4, LK_RECOMPUTE_NONE, precision,
                              LK_OPT_ADAM, zero, 2, rank, 2, 1 << 20, shm, 1000.0, 2000.0, 0.0, LK_F32, 0};
    lk_mem_plan p;
    TU_OK(lk_mem_plan_make(&in, tu_cpu(), &p));
    return p;
}

static lk_mem_plan plan(int zero, int rank, int shm) { return plan_in(zero, rank, shm, LK_F32); }

static void near(double got, double want, const char *what)
{
    if (fabs(got - want) > 0.5) fail_msg("%s: %.0f bytes, by hand %.0f", what, got, want);
}

static void test_by_hand(void **state)
{
    (void)state;
    const double F = 4, n = NPARAMS;
    /* the arena at batch 4: input 12544, outputs 2048 + 2048 + 160 -> 192, two dx buffers
     * of the largest input (12544), dout 192, two scalars of 64 */
    const double act = 12544 + 2048 + 2048 + 192 + 2 * 12544 + 192 + 64 + 64;
    /* slices: ceil(101776 / 2) = 50888, rounded up to 16 floats: 50896; rank 1 50880 */
    const double s0 = 50896, s1 = NPARAMS - 50896;
    for (int zero = 0; zero <= 2; zero++)
        for (int rank = 0; rank < 2; rank++) {
            lk_mem_plan p = plan(zero, rank, 0);
            const double slice = zero ? (rank ? s1 : s0) : n;
            near(p.host[LK_MEM_PARAMS], n * F, "params");
            near(p.host[LK_MEM_OPTIM], 2 * slice * F, "optimizer");
            /* one bucket: zero 2 keeps one lane of it and the slice */
            near(p.host[LK_MEM_GRADS], zero == 2 ? (slice + n) * F : n * F, "gradients");
            near(p.host[LK_MEM_ACT], act, "activations");
            assert_true(p.host[LK_MEM_WORKSPACE] >= 0.0);
            near(p.host[LK_MEM_COMM], 0, "communication");
            near(p.host[LK_MEM_DATA], 1000, "data");
            near(p.host[LK_MEM_RUNTIME], 2000, "runtime");
            double sum = 0;
            for (int k = 0; k < LK_MEM_KINDS; k++) sum += p.host[k];
            near(p.host_rank, sum, "the rank's total");
            near(p.host_total, 2 * p.host_rank, "the host's total");
            near(p.dev_rank, 0, "GPU memory");
            assert_true(p.fits);
        }
    /* through shared memory: each rank's gradients in the region, where it touches its own
     * and half of the other's (the sums of its half); the region and its slots counted once */
    lk_mem_plan p = plan(0, 0, 1);
    const double slots = (double)lk_shm_region_bytes(2, lk_shm_piece_for(2, LK_SHM_SLOTS_MAX), 0);
    near(p.host[LK_MEM_GRADS], 1.5 * n * F, "gradients in shared memory");
    near(p.host[LK_MEM_COMM], slots, "shared-memory slots");
    near(p.shared, 2 * n * F + slots, "shared memory");
    near(p.host_total, 2 * (p.host_rank - 1.5 * n * F - slots) + p.shared, "the host's total");
    /* bf16: the working copy beside the master (2 bytes a parameter); the hidden layer's
     * outputs (linear, then ReLU: 512 values each) stored in bf16; the rest as fp32's but
     * the products' rounded operands, held by the backend (workspace) */
    const double act16 = act - 2 * (2048 - 1024);
    for (int zero = 0; zero <= 2; zero++) {
        lk_mem_plan f = plan(zero, 0, 0), b = plan_in(zero, 0, 0, LK_BF16);
        /* (a CPU whose bf16 products are emulated keeps no copy: they round the masters as
         * they read them - lk_model_keeps_working_copy) */
        near(b.host[LK_MEM_PARAMS], n * F + (tu_cpu()->bf16_emulated ? 0 : n * 2), "params with the bf16 working copy");
        near(b.host[LK_MEM_OPTIM], f.host[LK_MEM_OPTIM], "optimizer (bf16)");
        near(b.host[LK_MEM_GRADS], f.host[LK_MEM_GRADS], "gradients (bf16)");
        near(b.host[LK_MEM_ACT], act16, "activations (bf16)");
        assert_true(b.host[LK_MEM_WORKSPACE] >= f.host[LK_MEM_WORKSPACE] - 0.5);
    }
}

/* A plan that cannot fit says so (a batch whose activations no host holds). */
/* PowerSGD's state: every trainable float once (residuals, the uncompressed staging) and
 * each compressed matrix's P and Q, in the comm line */
static void test_powersgd(void **state)
{
    (void)state;
    lk_mem_inputs in = {tu_builtin("mlp"), NULL, {3, {1, 28, 28}}, 10, 4, LK_RECOMPUTE_NONE, LK_F32,
                        LK_OPT_ADAM, 0, 2, 0, 2, 1 << 20, 0, 1000.0, 2000.0, 0.0, LK_F32, 0};
    lk_mem_plan a, b;
    TU_OK(lk_mem_plan_make(&in, tu_cpu(), &a));
    in.powersgd_rank = 4;
    TU_OK(lk_mem_plan_make(&in, tu_cpu(), &b));
    const tu_zoo_spec sp = {"mlp", {3, {1, 28, 28}}, 10, {0}, 4};
    struct lk_model *m = tu_zoo_model(&sp, LK_RECOMPUTE_NONE, LK_F32, LK_BUILD_DRY);
    /* mlp: 784 -> 128 -> 10: its trainable floats (unpadded) and, at rank 4, the P and Q of
     * both weights (10 x 128's 552 values are under half its 1280) */
    const size_t want = 100352 + 128 + 1280 + 10 + (128 + 784) * 4 + (10 + 128) * 4;
    assert_int_equal(lk_powersgd_state_floats(m, 0, m->nparams, 4), want);
    const double d = (b.host[LK_MEM_COMM] + b.dev[LK_MEM_COMM]) - (a.host[LK_MEM_COMM] + a.dev[LK_MEM_COMM]);
    assert_true(fabs(d - (double)want * 4.0) < 1.0);
    lk_model_destroy(m);
}

static void test_does_not_fit(void **state)
{
    (void)state;
    const lk_mem_inputs in = {tu_builtin("mlp"), NULL, {3, {1, 28, 28}}, 10, 1 << 27, LK_RECOMPUTE_NONE, LK_F32,
                              LK_OPT_ADAM, 0, 1, 0, 1, 1 << 20, 0, 0.0, 0.0, 0.0, LK_F32, 0};
    lk_mem_plan p;
    TU_OK(lk_mem_plan_make(&in, tu_cpu(), &p));
    assert_true(p.host[LK_MEM_ACT] > 1e12);
    assert_false(p.fits);
    char line[600];
    lk_mem_plan_line(&p, line, sizeof line);
    assert_non_null(strstr(line, "does not fit"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_hand),
        cmocka_unit_test(test_powersgd),
        cmocka_unit_test(test_does_not_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
