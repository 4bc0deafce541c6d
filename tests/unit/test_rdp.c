/* test_rdp.c - the DP-SGD accountant against published values and independent computations:
 * Opacus's documented example (q 0.01, sigma 1, 300 steps, orders 2 5 10 20 100: epsilon
 * 2.39 at order 5, delta 1e-5), TF Privacy's MNIST tutorial (batch 256 of 60000, sigma 1.1,
 * 60 epochs of 235 steps: epsilon 3.01 at order 9 with the conversion it used then,
 * RDP + log(1/delta)/(a - 1)), Abadi et al. 2016's MNIST setting (lots of 600 of 60000, sigma 4,
 * 10000 steps, delta 1e-5: "epsilon ~ 1.26 using the moments accountant", that same
 * conversion); every integer order against the binomial closed form in long
 * double, fractional ones against a numerical integration of the Rényi divergence itself;
 * q = 1 is the Gaussian mechanism, a/(2 sigma^2); and the noise solver. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "train/rdp.h"

static void near_rel(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol * fabs(want))) fail_msg("%s: %.6g, expected %.6g (within %g)", what, got, want, tol);
}

static void test_published(void **state)
{
    (void)state;
    const double ord[5] = {2, 5, 10, 20, 100};
    double rdp[5], best;
    for (int i = 0; i < 5; i++) rdp[i] = 300 * lk_rdp_sgm(0.01, 1.0, ord[i]);
    near_rel(lk_rdp_epsilon(ord, rdp, 5, 1e-5, &best), 2.39, 0.005, "Opacus's example");
    assert_true(best == 5.0);
    /* TF Privacy's tutorial: the RDP the same, the conversion of its day */
    const double q = 256.0 / 60000.0;
    double eps_old = INFINITY, at = 0;
    for (int a = 2; a <= 63; a++) {
        const double e = 60 * 235 * lk_rdp_sgm(q, 1.1, a) + log(1e5) / (a - 1.0);
        if (e < eps_old) eps_old = e, at = a;
    }
    near_rel(eps_old, 3.01, 0.005, "TF Privacy's MNIST tutorial");
    assert_true(at == 9.0);
    /* Abadi et al.: the paper's 1.26 with its conversion over the accountant's orders; the
     * improved conversion (what lockstep reports) below it */
    lk_rdp acct;
    memset(&acct, 0, sizeof acct);
    lk_rdp_add(&acct, 0.01, 4.0, 10000);
    double eps_abadi = INFINITY;
    for (int i = 0; i < LK_RDP_NORDERS; i++)
        eps_abadi = fmin(eps_abadi, acct.rdp[i] + log(1e5) / (lk_rdp_order(i) - 1.0));
    near_rel(eps_abadi, 1.26, 0.005, "Abadi et al.'s MNIST setting");
    const double eps_now = lk_rdp_spent(&acct, 1e-5, NULL);
    assert_true(eps_now < eps_abadi && eps_now > 0.9);
}

/* log of sum_i C(a, i) (1-q)^(a-i) q^i e^((i^2 - i) / 2 s^2), summed directly in long double */
static double closed_form(double q, double s, int a)
{
    long double sum = 0, c = 1;
    for (int i = 0; i <= a; i++) {
        if (i) c = c * (a - i + 1) / i;
        sum += c * powl(1 - q, a - i) * powl(q, i) * expl(((long double)i * i - i) / (2.0L * s * s));
    }
    return (double)(logl(sum) / (a - 1));
}

/* the RDP at order a from its definition: log E_{z ~ N(0, s^2)}[((1-q) + q e^((2z - 1)/2s^2))^a] / (a - 1),
 * Simpson's rule over [-30 s, 30 s + 1] */
static double integrated(double q, double s, double a)
{
    const int n = 60000;
    const double lo = -30 * s, hi = 30 * s + 1, h = (hi - lo) / n;
    long double sum = 0;
    for (int k = 0; k <= n; k++) {
        const double z = lo + k * h;
        const long double f = expl(-(long double)z * z / (2.0L * s * s)) / (s * sqrtl(2.0L * M_PI)) *
                              powl((1 - q) + q * expl((2.0L * z - 1) / (2.0L * s * s)), a);
        sum += (k == 0 || k == n ? 1 : k % 2 ? 4 : 2) * f;
    }
    return (double)(logl(sum * h / 3) / (a - 1));
}

static void test_orders(void **state)
{
    (void)state;
    const double qs[3] = {0.001, 0.01, 0.2}, sigmas[3] = {0.7, 1.1, 4.0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            for (int a = 2; a <= 63; a += 7) {
                char what[96];
                snprintf(what, sizeof what, "order %d, q %g, sigma %g", a, qs[i], sigmas[j]);
                near_rel(lk_rdp_sgm(qs[i], sigmas[j], a), closed_form(qs[i], sigmas[j], a), 1e-9, what);
            }
            const double fracs[4] = {1.1, 1.5, 3.7, 10.9};
            for (int k = 0; k < 4; k++) {
                char what[96];
                snprintf(what, sizeof what, "order %g, q %g, sigma %g", fracs[k], qs[i], sigmas[j]);
                near_rel(lk_rdp_sgm(qs[i], sigmas[j], fracs[k]), integrated(qs[i], sigmas[j], fracs[k]), 1e-5, what);
            }
            double prev = 0; /* nondecreasing in the order, through fractional and integer ones */
            for (int k = 0; k < LK_RDP_NORDERS; k++) {
                const double r = lk_rdp_sgm(qs[i], sigmas[j], lk_rdp_order(k));
                if (!(r >= prev * (1 - 1e-9))) fail_msg("RDP falls at order %g", lk_rdp_order(k));
                prev = r;
            }
        }
    near_rel(lk_rdp_sgm(1.0, 2.0, 7.5), 7.5 / 8.0, 1e-12, "the Gaussian mechanism");
    assert_true(lk_rdp_sgm(0.0, 1.0, 3) == 0.0);
    assert_true(isinf(lk_rdp_sgm(0.1, 0.0, 3)));
}

static void test_account_and_solver(void **state)
{
    (void)state;
    const double q = 256.0 / 60000.0;
    lk_rdp a = {{0}}, b = {{0}};
    lk_rdp_add(&a, q, 1.1, 5000);
    lk_rdp_add(&a, q, 1.1, 9100); /* composition: steps add */
    lk_rdp_add(&b, q, 1.1, 14100);
    double oa, ob;
    near_rel(lk_rdp_spent(&a, 1e-5, &oa), lk_rdp_spent(&b, 1e-5, &ob), 1e-12, "composition");
    /* the improved conversion is below TF's old 3.01, and well above nothing */
    const double e = lk_rdp_spent(&b, 1e-5, NULL);
    assert_true(e > 2.4 && e < 3.01);
    double sigma;
    TU_OK(lk_rdp_sigma_for(q, 14100, 3.0, 1e-5, &sigma));
    lk_rdp c = {{0}};
    lk_rdp_add(&c, q, sigma, 14100);
    const double spent = lk_rdp_spent(&c, 1e-5, NULL);
    assert_true(spent <= 3.0 && spent > 2.98); /* the smallest sigma, to 0.1% */
    TU_FAILS_WITH(lk_rdp_sigma_for(1.0, 1000000, 1e-3, 1e-5, &sigma), LK_ERR_ARG, "no noise multiplier");
    TU_FAILS_WITH(lk_rdp_sigma_for(0.0, 10, 1.0, 1e-5, &sigma), LK_ERR_ARG, "sampling rate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published),
        cmocka_unit_test(test_orders),
        cmocka_unit_test(test_account_and_solver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
