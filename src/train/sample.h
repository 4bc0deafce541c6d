/* sample.h - `lockstep sample`: what a generative checkpoint makes.
 *   gpt          text from a prompt (byte-level models: the prompt and the output are
 *                text; GPT-2-token models: text through GPT-2's tokenizer, or
 *                "ids:1,2,3" in and token ids out), with
 *                temperature and top-k, --tokens new tokens, reproducible by --seed
 *   gan, vae     a PNG grid of --count generated images
 *   autoencoder  a PNG of --count test images (rows) above their reconstructions */
#ifndef LK_SAMPLE_H
#define LK_SAMPLE_H

#include <stdio.h>

#include "../core/common.h"

typedef struct {
    const char *checkpoint, *device, *prompt, *out;
    const char *tokenizer; /* GPT-2's tokenizer files' directory (NULL: data/bpe.h's default) */
    int threads, tokens, top_k, count;
    double temperature;
    uint64_t seed;
} lk_sample_opts;

lk_sample_opts lk_sample_defaults(void);
/* A prompt as up to cap tokens of a model of `vocab`: bytes for a byte-level model; for a
 * GPT-2-vocabulary one "ids:1,2,3", or text through GPT-2's tokenizer (opened from
 * `tokenizer` into *bpe, NULL where not needed: free with lk_bpe_free) after an end-of-text,
 * as documents begin in llm.c's shards. */
struct lk_bpe;
lk_status lk_prompt_open(const char *prompt, int vocab, const char *tokenizer, struct lk_bpe **bpe, int32_t *tok,
                         int cap, int *n);
/* Text goes to `text`; images to o->out (required for the image models). */
lk_status lk_sample(const lk_sample_opts *o, FILE *text);

#endif
