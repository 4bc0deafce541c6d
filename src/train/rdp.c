/* rdp.c - the RDP accountant of the sampled Gaussian mechanism (rdp.h). */
#include "rdp.h"

#include <math.h>

double lk_rdp_order(int i) { return i < 99 ? 1.0 + (i + 1) / 10.0 : 12.0 + (i - 99); }

/* A signed sum kept as sign and log of its magnitude. */
typedef struct {
    int sign; /* 0: the sum is 0 */
    double log;
} lsum;

static void lsum_add(lsum *s, int sign, double logt)
{
    if (logt == -INFINITY || !sign) return;
    if (!s->sign) {
        s->sign = sign, s->log = logt;
        return;
    }
    const double hi = fmax(s->log, logt), lo = fmin(s->log, logt);
    const int hi_sign = s->log >= logt ? s->sign : sign;
    if (s->sign == sign) {
        s->log = hi + log1p(exp(lo - hi));
    } else {
        const double d = -expm1(lo - hi); /* 1 - e^(lo - hi) */
        if (d <= 0.0) s->sign = 0;
        else s->sign = hi_sign, s->log = hi + log(d);
    }
}

/* log(erfc(x)), also where erfc underflows (its asymptotic series) */
static double log_erfc(double x)
{
    if (x < 20.0) return log(erfc(x));
    const double r = 1.0 / (x * x);
    return -x * x - log(x) - 0.5 * log(M_PI) + log1p(-0.5 * r + 0.75 * r * r - 1.875 * r * r * r);
}

/* log A at an integer order: sum over i of C(a, i) (1 - q)^(a - i) q^i e^((i^2 - i) / 2 sigma^2) */
static double log_a_int(double q, double sigma, int a)
{
    lsum s = {0, 0.0};
    const double lq = log(q), l1q = log1p(-q), s2 = 2.0 * sigma * sigma;
    for (int i = 0; i <= a; i++) {
        const double lc = lgamma(a + 1.0) - lgamma(i + 1.0) - lgamma(a - i + 1.0);
        lsum_add(&s, 1, lc + i * lq + (a - i) * l1q + ((double)i * i - i) / s2);
    }
    return s.log;
}

/* log A at a fractional order: the two series over i of the generalised binomial C(a, i),
 * split where the two Gaussians' densities cross (z0), until their terms are below e^-30 */
static double log_a_frac(double q, double sigma, double a)
{
    lsum s0 = {0, 0.0}, s1 = {0, 0.0};
    const double lq = log(q), l1q = log1p(-q), s2 = 2.0 * sigma * sigma, r2s = M_SQRT2 * sigma;
    const double z0 = sigma * sigma * log(1.0 / q - 1.0) + 0.5;
    double lc = 0.0; /* log |C(a, i)| */
    int sign = 1;
    for (int i = 0; i < 100000; i++) {
        if (i > 0) {
            const double f = a - i + 1.0; /* C(a, i) = C(a, i - 1) (a - i + 1) / i */
            if (f == 0.0) break;           /* (an integer a: the terms end) */
            lc += log(fabs(f)) - log((double)i);
            if (f < 0) sign = -sign;
        }
        const double j = a - i;
        const double t0 = lc + i * lq + j * l1q + ((double)i * i - i) / s2 + log(0.5) + log_erfc((i - z0) / r2s);
        const double t1 = lc + j * lq + i * l1q + (j * j - j) / s2 + log(0.5) + log_erfc((z0 - j) / r2s);
        lsum_add(&s0, sign, t0);
        lsum_add(&s1, sign, t1);
        if (fmax(t0, t1) < -30.0 && i > a) break;
    }
    lsum s = s0;
    lsum_add(&s, s1.sign, s1.log);
    return s.sign > 0 ? s.log : -INFINITY; /* (the sum is a positive quantity; rounding aside) */
}

double lk_rdp_sgm(double q, double sigma, double alpha)
{
    if (q <= 0.0) return 0.0;
    if (!(sigma > 0.0)) return INFINITY;
    if (q >= 1.0) return alpha / (2.0 * sigma * sigma); /* the Gaussian mechanism itself */
    const double la = alpha == floor(alpha) && alpha <= 1e6 ? log_a_int(q, sigma, (int)alpha)
                                                            : log_a_frac(q, sigma, alpha);
    return fmax(0.0, la / (alpha - 1.0));
}

double lk_rdp_epsilon(const double *ord, const double *rdp, int n, double delta, double *best)
{
    double eps = INFINITY, at = NAN;
    for (int i = 0; i < n; i++) {
        const double a = ord[i];
        const double e = rdp[i] - (log(delta) + log(a)) / (a - 1.0) + log((a - 1.0) / a);
        if (e < eps) eps = e, at = a;
    }
    if (best) *best = at;
    return fmax(0.0, eps);
}

void lk_rdp_add(lk_rdp *a, double q, double sigma, long steps)
{
    for (int i = 0; i < LK_RDP_NORDERS; i++) a->rdp[i] += (double)steps * lk_rdp_sgm(q, sigma, lk_rdp_order(i));
}

double lk_rdp_spent(const lk_rdp *a, double delta, double *best_order)
{
    double o[LK_RDP_NORDERS];
    for (int i = 0; i < LK_RDP_NORDERS; i++) o[i] = lk_rdp_order(i);
    return lk_rdp_epsilon(o, a->rdp, LK_RDP_NORDERS, delta, best_order);
}

static double spent_for(double q, double sigma, long steps, double delta)
{
    lk_rdp a = {{0}};
    lk_rdp_add(&a, q, sigma, steps);
    return lk_rdp_spent(&a, delta, NULL);
}

lk_status lk_rdp_sigma_for(double q, long steps, double epsilon, double delta, double *sigma)
{
    if (!(q > 0.0 && q <= 1.0) || steps < 1 || !(epsilon > 0.0) || !(delta > 0.0 && delta < 1.0))
        return LK_ERR(LK_ERR_ARG, "DP-SGD: the sampling rate (%g) must be in (0, 1], the steps (%ld) at least 1, "
                                  "epsilon (%g) positive and delta (%g) in (0, 1)", q, steps, epsilon, delta);
    double lo = 0.01, hi = 1000.0;
    if (spent_for(q, hi, steps, delta) > epsilon)
        return LK_ERR(LK_ERR_ARG, "DP-SGD: no noise multiplier up to %g keeps %ld steps at sampling rate %g within "
                                  "epsilon %g at delta %g", hi, steps, q, epsilon, delta);
    while (hi - lo > 1e-3 * hi) { /* epsilon falls as sigma grows */
        const double mid = sqrt(lo * hi);
        if (spent_for(q, mid, steps, delta) > epsilon) lo = mid;
        else hi = mid;
    }
    *sigma = hi;
    return LK_OK;
}
