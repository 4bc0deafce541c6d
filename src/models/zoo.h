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
    int decay_matrices;   /* weight decay on matrices and embeddings only by default (GPT-2's
                             recipe, nanoGPT's and llm.c's grouping); else on every tensor */
} lk_zoo_entry;

typedef enum { LK_GELU_DEFAULT = 0, LK_GELU_ERF, LK_GELU_TANH } lk_gelu;

/* Sizes of the models that take them (gpt: --layers --heads --dim --ctx, --gelu); 0
 * keeps the model's default. ctx is the token window, so it is also what token data
 * are cut into. */
typedef struct {
    int layers, heads, dim, ctx;
    lk_gelu gelu;
} lk_arch;
/* The sizes the named model is built with: the small gpt's defaults (4 layers, 4 heads,
 * dim 256, ctx 128, exact GELU) or a GPT-2 preset's (gpt2: 12, 12, 768, 1024; -medium
 * 24, 16, 1024; -large 36, 20, 1280; -xl 48, 25, 1600; tanh GELU), where `given` (may be
 * NULL) may shorten a preset's context and choose the GELU but not change its shape.
 * Models without these sizes get `given` back. */
lk_status lk_arch_for(const char *model, const lk_arch *given, lk_arch *out);
const char *lk_gelu_name(lk_gelu g);

/* Adds the named model's layers to m (created for the dataset's sample shape).
 * nclasses sizes the classifier head (the vocabulary of a language model); arch may be
 * NULL (defaults). Unknown names list the known ones. */
lk_status lk_zoo_build(const char *name, lk_model *m, int nclasses, const lk_arch *arch);
/* The model's precision (lk_model_set_precision) as the trainer runs it: a cross-entropy
 * model's loss then reads its logits as stored (bf16 where the last layer writes them so,
 * lk_model_set_output_bf16) - where the device's bf16 products are its own: where they are
 * emulated (lk_device.bf16_emulated) the tied head's bf16 logits, computed in chunks of rows,
 * would widen its weights once a chunk (gpt2 at 4 x 256 without AMX: 0.85x float32's
 * tokens/s against 0.93x with float32 logits), so the logits stay float32 there. */
lk_status lk_zoo_set_precision(lk_model *m, const lk_zoo_entry *z, lk_dtype precision, const lk_round *r);
const lk_zoo_entry *lk_zoo_find(const char *name);
int lk_zoo_count(void);
const lk_zoo_entry *lk_zoo_at(int i);

#endif
