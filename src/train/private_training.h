/* private_training.h - the trainer's options for private and federated training (lk_train_opts's
 * dp and fed): DP-SGD (dpsgd.h) and the ranks as federated clients (fedavg.h). */
#ifndef LK_PRIVATE_TRAINING_H
#define LK_PRIVATE_TRAINING_H

typedef enum { LK_DP_POISSON = 0, LK_DP_SHUFFLE } lk_dp_sampling;

typedef struct {
    double clip;    /* --dp-clip C (0: DP-SGD off) */
    double noise;   /* --dp-noise SIGMA (0: solved from epsilon) */
    double epsilon; /* --dp-epsilon E: the budget the noise is solved for (0: none) */
    double delta;   /* --dp-delta D (0: 1e-5) */
    int sampling;   /* lk_dp_sampling */
} lk_dp_opts;

typedef struct {
    const char *partition; /* --partition SPEC (NULL: every rank samples the whole set) */
    int fedavg;            /* --fedavg */
    double fraction;       /* --client-fraction F (0: 1) */
    double local_epochs;   /* --local-epochs E (0: --local-steps decides) */
    int dp_client;         /* --dp-level client */
} lk_fed_opts;

#endif
