/* rdp.h - the privacy accountant of DP-SGD: Rényi differential privacy (RDP) of the sampled
 * Gaussian mechanism (Mironov, Talwar and Zhang, 2019) - each step adds Gaussian noise of
 * standard deviation sigma (times the clipping norm) to a sum over a batch that holds each
 * sample with probability q (Poisson sampling) - composed over steps by adding the RDP of
 * each order, and turned into (epsilon, delta)-DP at the best order (the conversion of
 * Balle et al., 2020, which Opacus uses: tighter than epsilon = RDP + log(1/delta)/(a - 1)).
 *
 * Orders: 1.1, 1.2 ... 10.9 and 12, 13 ... 63, the usual ones. Integer orders sum the
 * binomial expansion; fractional ones the two-sided series of the paper's section 3.3,
 * both in log space. */
#ifndef LK_RDP_H
#define LK_RDP_H

#include "../core/common.h"

#define LK_RDP_NORDERS (99 + 52)

/* The i-th order the accountant keeps (0 <= i < LK_RDP_NORDERS). */
double lk_rdp_order(int i);

/* RDP at order alpha (> 1) of one step of the sampled Gaussian mechanism with sampling
 * rate q in [0, 1] and noise multiplier sigma (> 0; 0: infinity). */
double lk_rdp_sgm(double q, double sigma, double alpha);

/* (epsilon, delta)-DP from RDP values rdp[i] at orders[i]: the smallest over the orders,
 * its order into *best (may be NULL). Infinity where every order's is. */
double lk_rdp_epsilon(const double *orders, const double *rdp, int n, double delta, double *best);

/* A run's account: the RDP spent at each order (lk_rdp_order). */
typedef struct {
    double rdp[LK_RDP_NORDERS];
} lk_rdp;

/* steps more steps at rate q and noise sigma. */
void lk_rdp_add(lk_rdp *a, double q, double sigma, long steps);
/* The account's epsilon at delta (and its order). */
double lk_rdp_spent(const lk_rdp *a, double delta, double *best_order);

/* The smallest noise multiplier (to 0.1%) for which steps steps at rate q spend at most
 * epsilon at delta; an error where no sigma up to 1000 does. */
lk_status lk_rdp_sigma_for(double q, long steps, double epsilon, double delta, double *sigma);

#endif
