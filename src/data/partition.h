/* partition.h - a training set dealt to ranks as federated clients (--partition), the
 * way federated-learning experiments make clients' data differ:
 *
 *   iid            a seeded permutation cut into `world` parts of (nearly) equal size
 *   classes:K      each client holds the samples of K classes, dealt so every class lands
 *                  on some client (round by round each client takes, of the classes it has
 *                  not, one held by the fewest clients so far, ties in a seeded order); a
 *                  class's samples are split evenly among the clients holding it
 *   dirichlet:A    each class's samples split among the clients in proportions drawn from
 *                  a symmetric Dirichlet(A) (small A: few clients per class)
 *
 * Every rank computes the same deal from the seed (the counter-based generator, purpose
 * LK_RNG_PARTITION), so no rank sends another its indices. --partition and --fedavg
 * (train/fedavg.h) deal with it. */
#ifndef LK_PARTITION_H
#define LK_PARTITION_H

#include "dataset.h"

typedef enum { LK_PART_IID = 0, LK_PART_CLASSES, LK_PART_DIRICHLET } lk_part_kind;

typedef struct {
    lk_part_kind kind;
    int classes;  /* classes:K */
    double alpha; /* dirichlet:A */
} lk_partition_spec;

/* "iid", "classes:K" (K >= 1) or "dirichlet:A" (A > 0). */
lk_status lk_partition_parse(const char *text, lk_partition_spec *out);

/* Client `rank`'s samples of d (of `world` clients): *idx (lk_malloc'ed, ascending) and *n.
 * Errors name what cannot be dealt: more clients than samples, K classes of a set with
 * fewer, too few slots to cover every class (world x K < classes), a client left empty. */
lk_status lk_partition(const lk_dataset *d, const lk_partition_spec *p, int world, uint64_t seed, int rank,
                       int32_t **idx, int *n);

#endif
