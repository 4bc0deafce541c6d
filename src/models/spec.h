/* spec.h - models as data: a JSON spec lists a model's layers and their settings, its loss
 * and its sizes; the zoo's models are built-in specs on the same path as users' files
 * (--model-file). docs/model-spec.md describes the format.
 *
 * A spec is parsed once (lk_spec_parse: the format is checked, nothing built) and built
 * into any number of models (lk_spec_build: shapes inferred from the model's input, an
 * error naming the layer - its place in the file and its text - and the shapes that do
 * not fit). Its text goes into checkpoints (model.json), so eval, predict, sample,
 * resume and export need no file. */
#ifndef LK_SPEC_H
#define LK_SPEC_H

#include "../core/layers.h"
#include "../core/model.h"

/* What a model's loss compares its output with. */
typedef enum {
    LK_TARGET_LABELS = 0, /* class labels (one per sample, or one per token of a window) */
    LK_TARGET_INPUT,      /* the input itself (autoencoders): targets = the pixels */
    LK_TARGET_REAL,       /* a GAN: the generator's layers, then the discriminator's, whose
                             logit says real (1) or generated (0) */
} lk_target;

/* The built-in GAN's latent size (its spec's "latent"). */
#define LK_GAN_LATENT 64
#define LK_GAN_G_LAYERS 6 /* the built-in GAN's generator layers */

typedef struct {
    const char *name;
    const char *summary;
    lk_loss_kind loss;
    lk_target target;
    int loss_sum;         /* the loss is summed over a sample's outputs (then averaged over
                             the batch), as the VAE's BCE + KL; else the mean over outputs */
    int decay_matrices;   /* weight decay on matrices and embeddings only by default (GPT-2's
                             recipe, nanoGPT's and llm.c's grouping); else on every tensor */
    int tokens;           /* it reads token windows (an embedding first): sample prints text */
    lk_init_kind init;    /* the spec's "init" scheme: what --init default means for it */
} lk_zoo_entry;

typedef enum { LK_GELU_DEFAULT = 0, LK_GELU_ERF, LK_GELU_TANH } lk_gelu;

/* The sizes flags may set (--layers --heads --dim --ctx --gelu) where the spec has vars of
 * those names; 0 keeps the spec's value. ctx is the token window, so it is also what token
 * data are cut into (a spec without a ctx var: the gpt's default, 128, or --ctx). */
typedef struct {
    int layers, heads, dim, ctx;
    lk_gelu gelu;
} lk_arch;
const char *lk_gelu_name(lk_gelu g);

typedef struct lk_spec lk_spec;

/* Parses and checks a spec; origin names it in messages (a file name, "built-in gpt"). */
lk_status lk_spec_parse(const char *text, const char *origin, lk_spec **out);
/* A spec file (at most 4 MB). */
lk_status lk_spec_load(const char *path, lk_spec **out);
/* A built-in model by name; an unknown name lists the known ones. */
lk_status lk_spec_builtin(const char *name, lk_spec **out);
/* file when not NULL, else the built-in `model`. */
lk_status lk_spec_open(const char *model, const char *file, lk_spec **out);
void lk_spec_free(lk_spec *s);

const lk_zoo_entry *lk_spec_entry(const lk_spec *s);
const char *lk_spec_name(const lk_spec *s);
/* The spec as JSON (pretty-printed): what checkpoints keep and `lockstep models` prints. */
const char *lk_spec_text(const lk_spec *s);
/* 1 for a spec of the built-in models (its text is the built-in one). */
int lk_spec_is_builtin(const lk_spec *s);

/* The sizes the spec is built with: its vars, where `given` (may be NULL) sets the ones
 * the flags name. A size the spec lists as "fixed" may not change (its ctx may shorten);
 * a flag for a size the spec has not is an error naming it. */
lk_status lk_spec_arch(const lk_spec *s, const lk_arch *given, lk_arch *out);
/* Adds the spec's layers to m (created for the data's sample shape). nclasses sizes the
 * classifier head (a language model's vocabulary); arch as lk_spec_arch's `given`. */
lk_status lk_spec_build(const lk_spec *s, lk_model *m, int nclasses, const lk_arch *arch);

/* A GAN built from a spec: the index of its discriminator's first layer (the layers
 * before it are the generator's); 0 where there is no discriminator. */
int lk_spec_gan_split(const lk_model *m);
/* ... and the discriminator's parameters: [0, this) of the flat buffer (parameters go in
 * reverse layer order), the generator's after them. */
size_t lk_spec_gan_d_params(const lk_model *m);

/* The built-in models (names and one-line summaries). */
int lk_zoo_count(void);
const char *lk_zoo_name(int i);
const char *lk_zoo_text(int i);

#endif
