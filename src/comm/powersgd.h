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
 * each (lk_powersgd_range) for its two all-reduces.
 *
 * On one host (every rank's gradient buffer in lockstep's shared memory) the same result
 * costs less: P = sum_q M_q Q and Q = sum_q M_q^T P are products of the summed matrix, and
 * the residuals enter them only through their sum, so the host sums the gradients first and
 * keeps one residual E = sum_q e_q, each process a share of every matrix's rows (its rows of
 * E; zero elsewhere in its e, so that the per-rank files of a checkpoint still add up to
 * it). In two phases of lk_comm_phases (bucket_psgd.c), for process me's rows:
 *   host_project  E += sum_q G_q (the host's summed gradient plus the residual), P = E Q
 *                 into the shared output (each row of P is one process's: nothing to sum),
 *                 and in the same pass this process's part of E^T P into its slot
 *   host_finish   P copied and orthonormalised (every process alike: P = P^ R), and
 *                 Q = E^T P^ = (E^T P) R^-1 from the slots' sum (in process order: the same
 *                 on all); M^ = P^ Q^T into every process's gradient buffer. E -= M^ is left
 *                 to the next projection, which recomputes those rows of M^ from P^ and Q as
 *                 it passes over E anyway (lk_powersgd_host_settle does it where E is wanted
 *                 sooner: a checkpoint, the per-rank stages).
 * Where R is not well conditioned (a column of P lost 99% of its length to the ones before
 * it, or was zero) or r > LK_PSGD_HOST_R, host_finish puts this process's part of E^T P^
 * itself in the slots instead and a third phase sums them and expands: the
 * per-rank stages' arithmetic. Per process, over its rows: the gradients summed as a plain
 * all-reduce does, E read and written once, no gemm calls, one barrier more than a plain
 * all-reduce. A residual with values outside this process's rows (a checkpoint's, or the
 * per-rank stages' of the same buckets) is first added into its own gradients
 * (lk_powersgd_host_gather). */
#ifndef LK_POWERSGD_H
#define LK_POWERSGD_H

#include "../core/model.h"
#include "comm.h"

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
    float *qt;        /* host: the host stages' scratch, twice the widest matrix's m x r */
    unsigned char *owed; /* per matrix: its rows of E still owe - P Q^T (host stages) */
    int owed_me, owed_nlocal; /* whose rows: process owed_me of owed_nlocal */
    int *again;       /* per matrix: its host stages need the third phase this step */
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

/* The host stages (above): phase `phase` (0, 1, then 2 where *last was not set) of matrices
 * [k0, k1) for process v->me, over the view of lk_comm_phases (bucket_psgd.c's call); h
 * says where: the view's buffers start at flat offset base, the matrices' P and Q ranges
 * at p_base and q_base (lk_powersgd_range), q_n long (the slots hold E^T P at [0, q_n),
 * E^T P^ at [q_n, 2 q_n)). The expanding phase adds the sum of squares of M^ to h->sumsq,
 * found from P and Q (the same on every process). */
#define LK_PSGD_HOST_R 32
typedef struct {
    size_t base, p_base, q_base, q_n;
    double sumsq;
} lk_psgd_host;
lk_status lk_powersgd_host_phase(lk_powersgd *s, int k0, int k1, lk_psgd_host *h, int phase, const lk_host_view *v,
                                 int *last);
/* What E owes settled (before E is read: a checkpoint, the per-rank stages); and matrix
 * k's residual outside the rows of process me of nlocal moved into grads, before the host
 * stages (a checkpoint's, the per-rank stages': its own rows stay, so that a residual of
 * the host stages' shape goes on bit for bit). */
void lk_powersgd_host_gather(lk_powersgd *s, float *grads, int k, int me, int nlocal);
void lk_powersgd_host_settle(lk_powersgd *s, int k0, int k1);

#endif
