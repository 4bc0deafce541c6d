/* tokenize.h - `lockstep tokenize`: text files into llm.c token shards with GPT-2's
 * tokenizer (data/bpe.h), for `--data tokens:` with a glob of the directory's .bin files.
 *
 * Every document is end-of-text (50256) followed by its tokens, as llm.c's data scripts
 * write them. A document is a file, a line or a paragraph (--split). The documents whose
 * place (the file's index with --split file, else the document's in its file) is
 * K-1, 2K-1, ... (--val-every K) go to validation shards (val_*.bin), the rest to training
 * shards (train_*.bin), at most --shard-tokens tokens each. Under mpirun the files are
 * dealt out to the ranks (file i to rank i mod world), each writing its own shards; which
 * document validates does not depend on the number of ranks. */
#ifndef LK_TOKENIZE_H
#define LK_TOKENIZE_H

#include <stdio.h>

#include "../comm/comm.h"

typedef enum { LK_SPLIT_FILE = 0, LK_SPLIT_LINE, LK_SPLIT_BLANK } lk_doc_split;

typedef struct {
    const char *out;       /* the shards' directory (made if missing) */
    const char *tokenizer; /* GPT-2's files' directory (NULL: bpe.h's default) */
    lk_doc_split split;
    long val_every;        /* 0: no validation shards */
    size_t shard_tokens;
} lk_tokenize_opts;

lk_status lk_tokenize(lk_comm *c, const lk_tokenize_opts *o, char *const *files, int nfiles, FILE *log);
/* The text of llm.c shards (end-of-text tokens left out) to out: what tokenize read. */
lk_status lk_detokenize(const char *tokenizer, char *const *shards, int nshards, FILE *out);

#endif
