/* dist.h - what keeps replicas in lockstep: the start-up agreement (every rank
 * runs the same model, data and hyperparameters, and starts from rank 0's
 * parameters) and the periodic replica check. */
#ifndef LK_DIST_H
#define LK_DIST_H

#include "../comm/comm.h"
#include "../core/model.h"

#define LK_AGREE_MAX 64

/* Named fingerprints of everything that must be equal on all ranks. */
typedef struct {
    int n;
    int overflow; /* more than LK_AGREE_MAX were added: lk_agree_check refuses (a bug) */
    const char *name[LK_AGREE_MAX];
    uint64_t hash[LK_AGREE_MAX];
} lk_agreement;

uint64_t lk_fnv1a(const void *data, size_t bytes, uint64_t h);
#define LK_FNV_INIT 1469598103934665603ULL
void lk_agree_add(lk_agreement *a, const char *name, const void *data, size_t bytes);
void lk_agree_add_str(lk_agreement *a, const char *name, const char *s);
/* Fingerprint of the model's layer types, shapes and parameter layout. */
void lk_agree_add_model(lk_agreement *a, const lk_model *m);
/* Compares every rank's fingerprints with rank 0's; on a difference every rank
 * returns an error naming the ranks and what differs (and refuses an agreement that
 * could not hold every entry rather than skip some). */
lk_status lk_agree_check(lk_comm *c, const lk_agreement *a);

/* Copies rank 0's parameters to every rank (host_scratch: nparams floats when the
 * device memory is not host-addressable, else unused). */
lk_status lk_dist_broadcast_params(lk_comm *c, lk_model *m, float *host_scratch);
/* Checksums the parameters and compares across ranks: they must agree bitwise. */
lk_status lk_dist_check_replicas(lk_comm *c, const lk_model *m, long step, float *host_scratch);

#endif
