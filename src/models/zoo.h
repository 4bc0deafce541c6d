/* zoo.h - the model zoo: the built-in specs (src/models/specs, spec.h), by name. */
#ifndef LK_ZOO_H
#define LK_ZOO_H

#include "spec.h"

/* Adds the built-in model's layers to m (created for the dataset's sample shape);
 * nclasses sizes the classifier head (the vocabulary of a language model); arch may be
 * NULL (defaults). Unknown names list the known ones. */
lk_status lk_zoo_build(const char *name, lk_model *m, int nclasses, const lk_arch *arch);
/* The sizes the built-in model is built with (lk_spec_arch). */
lk_status lk_arch_for(const char *model, const lk_arch *given, lk_arch *out);
/* The model's precision (lk_model_set_precision) as the trainer runs it: a cross-entropy
 * model's loss then reads its logits as stored (bf16 where the last layer writes them so,
 * lk_model_set_output_bf16) - where the device's bf16 products are its own: where they are
 * emulated (lk_device.bf16_emulated) the tied head's bf16 logits, computed in chunks of rows,
 * would widen its weights once a chunk (gpt2 at 4 x 256 without AMX: 0.85x float32's
 * tokens/s against 0.93x with float32 logits), so the logits stay float32 there. */
lk_status lk_zoo_set_precision(lk_model *m, const lk_zoo_entry *z, lk_dtype precision, const lk_round *r);

#endif
