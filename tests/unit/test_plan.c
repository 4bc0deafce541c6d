/* test_plan.c - the projection's arithmetic by hand: ring and tree all-reduce costs and
 * the choice between them, the bucket timeline (overlap with backward, serial
 * all-reduces, what is exposed), efficiency; the fit of a bench-comm CSV. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "train/plan.h"

#define NEAR(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol) * (1 + fabs((double)(b))))

static void test_allreduce_cost(void **state)
{
    (void)state;
    const double a = 10e-6, b = 1.0 / 1e9; /* 10 us, 1 GB/s */
    int tree = -1;
    NEAR(lk_plan_allreduce_s(1e6, 1, a, b, &tree), 0.0, 1e-12);
    /* 2 ranks, 1 MB: ring 2a + S b = 1.02 ms; tree 2 (a + S b) = 2.02 ms */
    NEAR(lk_plan_allreduce_s(1e6, 2, a, b, &tree), 2 * a + 1e6 * b, 1e-9);
    assert_int_equal(tree, 0);
    /* 64 ranks, 4 bytes: ring 126 a = 1.26 ms; tree 12 (a + 4b) = 0.12 ms: the tree wins */
    NEAR(lk_plan_allreduce_s(4, 64, a, b, &tree), 12 * (a + 4 * b), 1e-9);
    assert_int_equal(tree, 1);
    /* 64 ranks, 100 MB: the ring's 2(n-1)/n S b is far below the tree's 12 S b */
    NEAR(lk_plan_allreduce_s(1e8, 64, a, b, &tree), 126 * a + 2.0 * 63 / 64 * 1e8 * b, 1e-9);
    assert_int_equal(tree, 0);
}

static void test_timeline(void **state)
{
    (void)state;
    /* forward 10 ms, backward 20 ms, optimizer 1 ms; two buckets of 1 MB final at 5 ms
     * and at the end of backward; links of 1 GB/s, no latency */
    lk_plan_measure m;
    memset(&m, 0, sizeof m);
    m.fwd_ms = 10, m.bwd_ms = 20, m.opt_ms = 1, m.batch = 32, m.nbuckets = 2;
    m.bucket_bytes[0] = m.bucket_bytes[1] = 1e6;
    m.ready_ms[0] = 5, m.ready_ms[1] = 20;
    lk_plan_row one = lk_plan_project(&m, 1, 0.0, 1e-9, 0.0, 1.0, 0.0);
    NEAR(one.step_ms, 31, 1e-12);
    assert_true(isnan(one.hidden));
    /* 2 ranks: each all-reduce 1 ms; the first hides under backward, the second ends at
     * 21 ms: 1 ms exposed of 2 ms */
    lk_plan_row two = lk_plan_project(&m, 2, 0.0, 1e-9, 0.0, 1.0, one.step_ms);
    NEAR(two.comm_ms, 2, 1e-9);
    NEAR(two.exposed_ms, 1, 1e-9);
    NEAR(two.hidden, 0.5, 1e-9);
    NEAR(two.step_ms, 32, 1e-9);
    NEAR(two.efficiency, 31.0 / 32.0, 1e-9);
    NEAR(two.samples_per_s, 2 * 32 / 0.032, 1e-9);
    /* a slow link: the first all-reduce (10 ms, 5..15) delays the second (20..30) */
    lk_plan_row slow = lk_plan_project(&m, 2, 0.0, 1e-8, 0.0, 1.0, one.step_ms);
    NEAR(slow.exposed_ms, 10, 1e-9);
    m.ready_ms[0] = 5, m.bucket_bytes[0] = 2e6; /* 20 ms: 5..25, then 25..35 */
    lk_plan_row queued = lk_plan_project(&m, 2, 0.0, 1e-8, 0.0, 1.0, one.step_ms);
    NEAR(queued.exposed_ms, 15, 1e-9);
    /* the all-reduce is half the cores' work: backward beside it runs at half speed */
    m.bucket_bytes[0] = 1e6; /* 10 ms from 5 to 15: 5 ms of backward done by 15 */
    lk_plan_row shared = lk_plan_project(&m, 2, 0.0, 1e-8, 0.5, 1.0, one.step_ms);
    /* backward's other 10 ms end at 25, the second all-reduce 25..35 */
    NEAR(shared.exposed_ms, 15, 1e-9);
    NEAR(shared.comm_ms, 20, 1e-9);
    NEAR(shared.hidden, 0.25, 1e-9);
    /* all of it the cores' work: nothing hides (5 + 10 + 15 + 10 = 40 of backward) */
    lk_plan_row serial = lk_plan_project(&m, 2, 0.0, 1e-8, 1.0, 1.0, one.step_ms);
    NEAR(serial.exposed_ms, 20, 1e-9);
    NEAR(serial.hidden, 0.0, 1e-9);
    NEAR(lk_plan_project(&m, 1, 0.0, 1e-8, 1.0, 1.0, 0.0).step_ms, 31, 1e-12); /* one rank: no all-reduce */
    /* the all-reduce at half speed beside backward, backward at full: the first (10 ms of
     * it alone, from 5) has done 7.5 ms of it when backward ends at 20, its other 2.5 ms
     * end at 22.5; the second 10 ms then end at 32.5 */
    lk_plan_row starved = lk_plan_project(&m, 2, 0.0, 1e-8, 0.0, 0.5, one.step_ms);
    NEAR(starved.exposed_ms, 12.5, 1e-9);
    NEAR(starved.comm_ms, 27.5, 1e-9);
    /* both halved: the first takes 20 ms (5..25), backward does 10 ms of work beside it and
     * its last 5 alone (25..30); the second 30..40 */
    NEAR(lk_plan_project(&m, 2, 0.0, 1e-8, 0.5, 0.5, one.step_ms).exposed_ms, 20, 1e-9);
}

/* the speed of the all-reduces beside backward, from what a measured step saw */
static void test_comm_rate(void **state)
{
    (void)state;
    /* the model has 10 ms; they took 15, 10 of them beside backward: those 10 did 5 ms of
     * the work, the 5 after backward the rest */
    NEAR(lk_plan_comm_rate(15, 10, 10), 0.5, 1e-12);
    NEAR(lk_plan_comm_rate(10, 10, 10), 1.0, 1e-12);  /* as fast as alone */
    NEAR(lk_plan_comm_rate(8, 10, 10), 1.0, 1e-12);   /* faster than the model: at most alone's */
    NEAR(lk_plan_comm_rate(40, 10, 10), 0.01, 1e-12); /* all but stopped */
    NEAR(lk_plan_comm_rate(15, 10, 0), 1.0, 1e-12);   /* nothing beside backward to measure */
    /* the round trip: the starved timeline above took 27.5 ms (15 of them beside
     * backward, 5..20) for 20 ms alone */
    NEAR(lk_plan_comm_rate(27.5, 20, 15), 0.5, 1e-12);
}

static void test_fit(void **state)
{
    (void)state;
    /* rows made with the ring formula for 4 ranks, alpha 5 us, 2 GB/s */
    const double a = 5e-6, b = 0.5e-9;
    char text[4096] = "bytes,count,iters,time_us,algbw_gbs,busbw_gbs,wrong,ranks\n";
    for (double s = 1024; s <= 1 << 22; s *= 2) {
        double t = 6 * a + 1.5 * s * b;
        char row[200];
        snprintf(row, sizeof row, "%.0f,%.0f,5,%.6f,%.6f,%.6f,0,4\n", s, s / 4, t * 1e6, s / t / 1e9, s / t / 1e9 * 1.5);
        strcat(text, row);
    }
    const char *path = tu_write("comm.csv", text, strlen(text));
    double fa = 0, fb = 0;
    int ranks = 0;
    TU_OK(lk_plan_fit_csv(path, 0, INFINITY, &fa, &fb, &ranks));
    assert_int_equal(ranks, 4);
    NEAR(fa, a, 1e-6);
    NEAR(fb, b, 1e-6);
    /* only the sizes around the buckets: a slower regime above 64 KiB is what counts */
    char regimes[4096] = "bytes,count,iters,time_us,algbw_gbs,busbw_gbs,wrong,ranks\n";
    for (double s = 1024; s <= 1 << 22; s *= 2) {
        double t = s <= 65536 ? 6 * a + 1.5 * s * b : 6 * 2 * a + 1.5 * s * 2 * b;
        char row[200];
        snprintf(row, sizeof row, "%.0f,%.0f,5,%.6f,1,1,0,4\n", s, s / 4, t * 1e6);
        strcat(regimes, row);
    }
    const char *two = tu_write("regimes.csv", regimes, strlen(regimes));
    TU_OK(lk_plan_fit_csv(two, 131072, 1 << 22, &fa, &fb, &ranks));
    NEAR(fa, 2 * a, 1e-6);
    NEAR(fb, 2 * b, 1e-6);
    TU_OK(lk_plan_fit_csv(two, 1e9, 2e9, &fa, &fb, &ranks)); /* no size there: all of them */
    assert_true(fb > b && fb < 2 * b);
    const char *rows = "bytes,count,iters,time_us,algbw_gbs,busbw_gbs,wrong,ranks\n"
                       "1024,256,5,1.0,1,1,3,2\n2048,512,5,2.0,1,1,0,2\n";
    const char *bad = tu_write("bad.csv", rows, strlen(rows));
    TU_FAILS_WITH(lk_plan_fit_csv(bad, 0, INFINITY, &fa, &fb, &ranks), LK_ERR_FORMAT, "elements wrong");
    TU_FAILS_WITH(lk_plan_fit_csv("/no/such.csv", 0, INFINITY, &fa, &fb, &ranks), LK_ERR_IO, "/no/such.csv");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce_cost),
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_comm_rate),
        cmocka_unit_test(test_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
