/* zoo.h - the model zoo: a name -> a builder that composes layers. */
#ifndef LK_ZOO_H
#define LK_ZOO_H

#include "../core/layers.h"
#include "../core/model.h"

/* What a model's loss compares its output with. */
typedef enum {
    LK_TARGET_LABELS = 0, /* class labels (one per sample, or one per token of a window) */
    LK_TARGET_INPUT,      /* the input itself (autoencoders): targets = the pixels */
    LK_TARGET_REAL,       /* a GAN: the generator's layers, then the discriminator's, whose
                             logit says real (1) or generated (0) */
} lk_target;

/* The GAN's sizes: the latent code z, and how many of its layers are the generator's. */
#define LK_GAN_LATENT 64
#define LK_GAN_G_LAYERS 6

typedef struct {
    const char *name;
    const char *summary;
    lk_loss_kind loss;
    lk_target target;
    int loss_sum;         /* the loss is summed over a sample's outputs (then averaged over
                             the batch), as the VAE's BCE + KL; else the mean over outputs */
} lk_zoo_entry;

/* Sizes of the models that take them (gpt: --layers --heads --dim --ctx); 0 keeps the
 * default. ctx is the token window, so it is also what token data are cut into. */
typedef struct {
    int layers, heads, dim, ctx;
} lk_arch;
/* The defaults filled in (the small gpt: 4 layers, 4 heads, dim 256, ctx 128). */
lk_arch lk_arch_resolve(const lk_arch *a);

/* Adds the named model's layers to m (created for the dataset's sample shape).
 * nclasses sizes the classifier head (the vocabulary of a language model); arch may be
 * NULL (defaults). Unknown names list the known ones. */
lk_status lk_zoo_build(const char *name, lk_model *m, int nclasses, const lk_arch *arch);
const lk_zoo_entry *lk_zoo_find(const char *name);
int lk_zoo_count(void);
const lk_zoo_entry *lk_zoo_at(int i);

#endif
