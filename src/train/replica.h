/* replica.h - one model replica: its device, model and the buffers a step uses. */
#ifndef LK_REPLICA_H
#define LK_REPLICA_H

#include "../core/layers.h"
#include "../core/model.h"
#include "../data/dataset.h"
#include "../models/zoo.h"

/* What a replica is built from. */
typedef struct {
    const char *device;    /* "auto", "cpu", "cuda:N" */
    int threads;
    const lk_spec *model;  /* what to build (it outlives the replica: r->zoo is its entry) */
    lk_arch arch;          /* its sizes (0: defaults) */
    lk_shape sample;       /* per-sample input shape */
    int nclasses;          /* classes, or the vocabulary */
    int ylen;              /* labels per sample (1; a language model: its window) */
    int batch;             /* the largest batch */
    lk_init_kind init;
    uint64_t seed;
    lk_build build;        /* FULL; NO_GRADS: the caller provides the gradients (the trainer) */
    lk_recompute recompute; /* what backward computes again (model.h) */
    /* called once the device is open, before the model is built (NULL: none): the
     * trainer's memory plan, which may refuse the run */
    lk_status (*check)(void *user, lk_device *dev);
    void *check_user;
    lk_dtype precision;    /* of the products: fp32, or bf16 with a working copy (model.h) */
    int stochastic_round;  /* the working copy rounded stochastically (else to nearest even) */
    int sample_norms;      /* DP-SGD will ask for per-sample gradient norms (dpsgd.h) */
} lk_replica_spec;

typedef struct {
    lk_device *dev;
    lk_model *model;
    const lk_zoo_entry *zoo; /* the model's entry: loss, target */
    int ylen;              /* labels per sample */
    int32_t *labels;       /* device, max_batch * ylen */
    float *scalars;        /* device: [0] batch loss, [1] correct, [2] loss sum */
    float *x_host;         /* staging for one batch */
    int32_t *y_host, *idx;
} lk_replica;

/* Opens the device, builds the spec's model for the spec's sample and classes at its
 * batch, initialises it and allocates every buffer a step needs. */
lk_status lk_replica_open(lk_replica *r, const lk_replica_spec *spec);
void lk_replica_free(lk_replica *r);
/* The loss of the n samples just run (out: the forward's output) into scalars[0]: the
 * model's loss against its labels or its input, plus the layers' own terms (the VAE's
 * KL); out as stored (a bf16 cross-entropy model's logits are bf16: lk_zoo_set_precision);
 * with grad, d(loss)/d(out) * scale into the model's dout (and scale noted for
 * those terms). With correct, also the number of right predictions into scalars[1]
 * (classifiers only). */
lk_status lk_replica_loss(lk_replica *r, const lk_tensor *out, int n, int grad, float scale,
                          int correct);
/* 1 when the model predicts classes (an accuracy means something). */
static inline int lk_replica_classifies(const lk_replica *r) { return r->zoo->target == LK_TARGET_LABELS; }
/* Copies samples idx[0..n) of d into the model input and label buffers. */
void lk_replica_load_batch(lk_replica *r, const lk_dataset *d, const int32_t *idx, int n);
/* The same into device buffer dst (another layer's input), labels into r->labels. */
void lk_replica_load_into(lk_replica *r, const lk_dataset *d, const int32_t *idx, int n, float *dst);
/* Inference on samples [start, start + *n) of d, *n = min(max_batch, d->n - start):
 * loads them in order and runs the model in eval mode; out is the output view. */
lk_status lk_replica_infer(lk_replica *r, const lk_dataset *d, int start, int *n, lk_tensor *out);

#endif
