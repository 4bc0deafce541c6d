/* gan.h - the GAN's training step: a discriminator step, then a generator step, each
 * network with its own part of the optimizer and its own gradient buckets.
 *
 * The zoo builds the GAN as one chain (model.h): the generator's layers [0, split)
 * map z to an image, the discriminator's [split, nlayers) map an image to a logit.
 * With parameters laid out in reverse layer order, D's are [0, d_end) and G's
 * [d_end, nparams): each is one contiguous slice for its buckets and optimizer part.
 * Latent codes come from the counter-based generator keyed by (seed, step, purpose)
 * and the sample's position in the global batch, so N ranks x B match 1 x N*B. */
#ifndef LK_GAN_H
#define LK_GAN_H

#include "../comm/bucket.h"
#include "../comm/zero.h"
#include "../core/optim.h"
#include "guard.h"
#include "replica.h"

typedef struct {
    lk_replica *r;
    int split;             /* the discriminator's first layer */
    size_t d_end;          /* D's parameters [0, d_end), G's [d_end, nparams) */
    int image;             /* floats per image */
    float *ones, *zeros;   /* device: BCE targets, max_batch each */
    float *loss;           /* device scalars: [0] one BCE, [1] D's loss sum, [2] G's loss sum */
    lk_buckets *bd, *bg;   /* the networks' gradient buckets (NULL in a world of one) */
    lk_zero_state *zero;   /* how each network's optimizer step runs (the trainer's; NULL: all
                              of its parameters here) */
    lk_guard *guard;       /* each network's update checked before it is taken (guard.h; the
                              optimizer's skip is the guard's verdict); NULL: none */
    lk_comm *comm;         /* ... agreed over it */
    long nan_at;           /* (LK_INJECT_FAULT=nan: a NaN into the gradient at this step) */
} lk_gan;

lk_status lk_gan_init(lk_gan *g, lk_replica *r);
void lk_gan_free(lk_gan *g);

typedef struct {
    const int32_t *idx;   /* this rank's real samples of the step */
    int n;
    long base;            /* their position in the global batch */
    float scale;          /* loss scale: n / global samples (each sample 1/global of the mean) */
    float grad_scale;     /* on the summed gradients (1: the losses are scaled to the global batch) */
    long step;            /* optimizer step, keys the latent codes */
    int local;            /* local SGD: the ranks' gradients are not summed (average.h) */
} lk_gan_batch;

/* The key of the latent codes of a step's discriminator (for_g 0) or generator (1) half:
 * z[i][j] = lk_rng_normal(model seed, LK_RNG_NOISE, key, (base + i) * latent + j), latent the
 * generator's input size (LK_GAN_LATENT for the built-in gan). */
uint64_t lk_gan_z_key(long step, int for_g);

/* One iteration: D on the real batch (target 1) and on as many generated images
 * (target 0), D's optimizer part; then G through D (target 1, the non-saturating loss),
 * G's part. Adds n * D's loss and n * G's loss to g->loss[1] and [2]. With a guard, each
 * network's update is checked first (its reduced gradient and loss): two verdicts an
 * iteration, each counted on its own. */
lk_status lk_gan_step(lk_gan *g, lk_optim *opt, const lk_dataset *d, const lk_gan_batch *b);

/* D's loss (real + generated) and accuracy over d: reals should score > 0, fakes < 0.
 * first: the position of d's first sample in the whole evaluation (keys the fakes). */
lk_status lk_gan_eval(lk_gan *g, const lk_dataset *d, long first, double *loss_sum,
                      double *correct, double *count);

/* Model FLOPs of one sample's iteration: with g and d the two networks' forward FLOPs,
 * D on a real (3d), G and D on a fake with backward through D (g + 3d), then G through D
 * with backward through both (3g + 3d): 4g + 9d. */
double lk_gan_flops(const lk_gan *g);

/* n images from the generator (latents keyed by seed) into host memory, in [0, 1]. */
lk_status lk_gan_generate(lk_gan *g, int n, uint64_t seed, float *host);

#endif
