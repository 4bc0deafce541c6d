/* convert.h - `lockstep convert`: GPT-2 weights between llm.c's checkpoint format and
 * lockstep's checkpoint directories.
 *
 * llm.c's gpt2_124M.bin (train_gpt2.c, version 3; version 5, of its bf16 runs, is read too,
 * widened): a header of 256 int32 - magic 20240326,
 * version 3, max context, vocabulary, layers, heads, width, the vocabulary padded to a
 * multiple of 128 - then float32 tensors in its order: wte (padded rows), wpe, and for
 * every layer at once ln_1 weights, ln_1 biases, c_attn weights (3C x C, PyTorch's Linear
 * layout, as lockstep's), c_attn biases, c_proj, ln_2, the MLP's c_fc and c_proj, then
 * ln_f. In: the lockstep model is the GPT-2 preset with those sizes (gpt2, -medium, -large,
 * -xl) or else gpt with them, tanh GELU (llm.c's); a directory with model.safetensors and
 * config.json (no optimizer state: --init-from, eval and sample take it). Out: a gpt or
 * gpt2* checkpoint with the tanh GELU; the padded rows are zeros, so a file lockstep read
 * is written back byte for byte. Hugging Face's GPT-2 model.safetensors comes in the same
 * way. */
#ifndef LK_CONVERT_H
#define LK_CONVERT_H

#include <stdio.h>

#include "../core/common.h"

lk_status lk_convert_from_llmc(const char *bin, const char *dir, FILE *log);
lk_status lk_convert_to_llmc(const char *dir, const char *bin, FILE *log);
/* Hugging Face's GPT-2 model.safetensors (names wte.weight, h.N.attn.c_attn.weight, ...,
 * ln_f.bias, with or without "transformer."; the Conv1D weights stored in x out,
 * transposed here). heads: 0 takes GPT-2's for the sizes (the weights do not hold it). */
lk_status lk_convert_from_hf(const char *path, int heads, const char *dir, FILE *log);

#endif
