/* powersgd.h - PowerSGD gradient compression (Vogels, Karimireddy and Jaggi, 2019), the
 * arithmetic: what a bucket's reduction runs between its two all-reduces.
 *
 * Each compressed gradient tensor is a matrix M of n rows (its first dimension, padding
 * rows included) by m (the rest, as PyTorch's hook reshapes it). With rank r:
 *   project  M += e (this rank's error feedback: what earlier steps did not send), then
 *            P = M Q                                       (n x r; all-reduce P: SUM)
 *   back     P orthonormalised (its columns), Q = M^T P     (m x r; all-reduce Q: SUM)
 *   expand   M^ = P Q^T, e = M - M^ / world, M = M^
 * With every rank's M summed by the all-reduces, M^ approximates the ranks' summed
 * gradient (lockstep's gradients are sums: each rank's loss is scaled to the global batch),
 * the same on every rank, and the ranks' residuals add up to what it missed. Q starts from
 * the counter-based generator (lk_randn keyed LK_PSGD_KEY | matrix: the same on every rank)
 * and each step starts from the last step's all-reduced Q (warm start: one power iteration
 * a step). A tensor is compressed when it has two or more dimensions and its P and Q,
 * (n + m) r values, are at most half its n m; the others go uncompressed.
 *
 * P and Q of consecutive matrices lie back to back, so a bucket's are one contiguous range
 * each (lk_powersgd_range) for its two all-reduces. */
#ifndef LK_POWERSGD_H
#define LK_POWERSGD_H

#include "../core/model.h"

#define LK_PSGD_KEY ((uint64_t)1 << 62) /* lk_randn's keys of the first Qs (apart from the
                                           latents' (step << 16) | layer) */

typedef struct {
    size_t offset;           /* the tensor's first float in the flat gradient buffer */
    int n, m;                /* as a matrix: n rows of m */
    size_t p_at, q_at, e_at; /* its P, Q and residual in p, q and e */
} lk_psgd_mat;

typedef struct lk_powersgd {
    lk_device *dev;  /* where the state lives */
    lk_device *math; /* where the stages run: dev, or a helper device of it (the comm thread's) */
    int r;           /* the rank of the approximation */
    int world;
    int nmat;        /* compressed matrices, in flat-buffer order */
    lk_psgd_mat *mat;
    float *p, *q, *e; /* device: every matrix's P, Q and residual, back to back */
    size_t p_floats, q_floats, e_floats;
} lk_powersgd;

/* The matrices of m's trainable tensors in [lo, hi) worth compressing at rank r, their
 * state allocated on m's device (residuals zero, Q drawn from seed). */
lk_status lk_powersgd_create(lk_powersgd **out, const lk_model *m, size_t lo, size_t hi, int r,
                             uint64_t seed, int world);
void lk_powersgd_destroy(lk_powersgd *s);
/* Floats of the state PowerSGD at rank r keeps for m's [lo, hi) on a rank, the buckets'
 * staging of the uncompressed tensors included: every trainable float once (a residual or
 * a staged value) and each matrix's P and Q (the memory plan's). */
size_t lk_powersgd_state_floats(const lk_model *m, size_t lo, size_t hi, int r);
/* 1 when the tensor at flat offset `offset` is compressed (its index in *k). */
int lk_powersgd_find(const lk_powersgd *s, size_t offset, int *k);
/* The P (which 0) or Q (1) floats of matrices [k0, k1): from *at, *n of them. */
void lk_powersgd_range(const lk_powersgd *s, int which, int k0, int k1, size_t *at, size_t *n);
/* The three stages (above) for matrices [k0, k1) of the gradient buffer grads. */
lk_status lk_powersgd_project(lk_powersgd *s, float *grads, int k0, int k1);
lk_status lk_powersgd_back(lk_powersgd *s, const float *grads, int k0, int k1);
lk_status lk_powersgd_expand(lk_powersgd *s, float *grads, int k0, int k1);

#endif
