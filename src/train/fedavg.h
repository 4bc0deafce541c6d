/* fedavg.h - the ranks as federated clients.
 *
 * --partition SPEC deals the training set to the ranks (data/partition.h: iid, classes:K,
 * dirichlet:A), each rank keeping only its shard and going round it with a sampler of its own
 * (its own shuffles; a client's t-th step is its sampler's t-th, over epochs). Alone, that is
 * data-parallel training over non-IID shards (FedSGD: every step each client's batch
 * gradient, summed over the clients' batches and divided by their total).
 *
 * --fedavg (McMahan et al., 2017): each round, every client sampled for it (--client-fraction
 * F: max(1, round(F N)) of the N clients, the same draw on every rank, keyed by the round)
 * runs --local-steps K steps of its own optimizer on its own batches (or --local-epochs E:
 * K = ceil(E x mean shard / batch), so a client holding the mean shard sees it E times; a
 * smaller one more often, a larger one less), then the parameters and buffers become the mean
 * of the sampled clients' weighted by their shard sizes - local SGD's averaging (comm/average.h)
 * with this combination. The optimizer state is averaged the same way. Clients not sampled sit
 * the round out: no batch, no step (their optimizer's step count advances with the round, so
 * learning-rate schedules stay in step), weight 0. A round is an "epoch" of the log:
 * evaluation and checkpoints at each round's end, on the averaged model.
 *
 * --dp-level client with --dp-clip C and --dp-noise SIGMA (or --dp-epsilon E): DP-FedAvg
 * (McMahan et al., 2018). Each sampled client's update (its parameters minus the round's start)
 * is clipped to norm C; the updates are summed, Gaussian noise N(0, SIGMA^2 C^2) (drawn the same
 * on every rank, keyed by the round) added, the sum divided by the clients per round and added
 * to the round's start. Weights are equal (a shard's size would leak through them); each
 * client's optimizer state is its own and starts afresh every round (it is never shared). The
 * accountant counts a round as one step at rate clients-per-round / N. */
#ifndef LK_FEDAVG_H
#define LK_FEDAVG_H

#include "../comm/average.h"
#include "../comm/comm.h"
#include "../data/partition.h"
#include "dpsgd.h"
#include "private_training.h"

/* "sample" | "client" */
lk_status lk_dp_level_parse(const char *name, int *client);

typedef struct {
    int on, fedavg, dp_client;
    int rank, world, batch;
    int *sizes;          /* every client's shard size */
    long total;          /* their sum */
    int per_round;       /* clients sampled each round */
    long k;              /* local steps per round */
    uint64_t seed;
    int32_t *order;      /* scratch: the round's draw (world entries) */
    lk_dp *dp;           /* client-level DP: the run's (clip, sigma, account) */
    float *start;        /* client-level DP: the round's starting parameters (device) */
    long round_started;  /* the round whose start `start` holds (-1: none) */
    lk_model *model;
    lk_comm *comm;
} lk_fed;

/* Deals train to the ranks (when o->partition is set, or --fedavg) and replaces it by this
 * rank's shard; every client's size is exchanged over c; with --fedavg the clients per round
 * and the steps per round (local_steps, or o->local_epochs). Errors name the option. */
lk_status lk_fed_deal(lk_fed *f, const lk_fed_opts *o, lk_comm *c, uint64_t seed, int batch, long local_steps,
                      lk_dataset *train);
/* A line per client: its shard's size and classes (into buf; every rank takes part). */
lk_status lk_fed_describe(const lk_fed *f, const lk_dataset *mine, char *buf, size_t size);
/* Federated averaging's set-up once the model, optimizer and DP state exist: the averager's
 * round and combination (weighted mean, or client-level DP's clipped noisy one). */
lk_status lk_fed_setup(lk_fed *f, const lk_fed_opts *o, lk_averager *avg, lk_model *m, lk_dp *dp);
void lk_fed_free(lk_fed *f, lk_device *dev);
/* Whether this rank is sampled for the round of step `step` (always without --fedavg). */
int lk_fed_active(lk_fed *f, long step);
/* Samples over every client's batch of step t (data-parallel over shards: what the summed
 * gradient is divided by). */
long lk_fed_group(const lk_fed *f, long t);
/* Client-level DP: called before each step (it keeps the round's start). */
lk_status lk_fed_before_step(lk_fed *f, long step);

#endif
