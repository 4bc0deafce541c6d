/* tokenize.c - text files into llm.c token shards with GPT-2's tokenizer (tokenize.h). */
#include "tokenize.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/checkpoint.h"
#include "../data/bpe.h"
#include "../data/dataset.h"

typedef struct {
    uint16_t *tok;
    size_t n, cap;
    long shards;      /* written so far by this rank */
    double total;     /* tokens */
    const char *name; /* "train", "val" */
} shard_buf;

static lk_status flush(const lk_tokenize_opts *o, const lk_comm *c, shard_buf *s)
{
    if (!s->n) return LK_OK;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s_%06ld.bin", o->out, s->name, s->shards * c->world + c->rank);
    LK_CHECK(lk_tokens_write_shard(path, s->tok, s->n));
    s->shards++;
    s->n = 0;
    return LK_OK;
}

/* one document: end-of-text, then its tokens (llm.c's layout: the separator first) */
static lk_status add_doc(const lk_tokenize_opts *o, const lk_comm *c, const lk_bpe *b, shard_buf *s,
                         const char *text, size_t len, int32_t **ids, size_t *cap)
{
    size_t n = 0;
    LK_CHECK(lk_bpe_encode(b, text, len, ids, &n, cap));
    for (size_t i = 0; i <= n; i++) {
        if (s->n == s->cap) {
            const size_t grow = s->cap ? LK_MIN(2 * s->cap, o->shard_tokens) : LK_MIN((size_t)1 << 16, o->shard_tokens);
            uint16_t *t = lk_realloc(s->tok, grow * sizeof *t);
            if (!t) return LK_ERR(LK_ERR_NOMEM, "tokenize: cannot hold %zu tokens", grow);
            s->tok = t, s->cap = grow;
        }
        s->tok[s->n++] = (uint16_t)(i ? (*ids)[i - 1] : lk_bpe_eot(b));
        s->total++;
        if (s->n == o->shard_tokens) LK_CHECK(flush(o, c, s));
    }
    return LK_OK;
}

/* the end of the document starting at text[at] (split: by file, line or blank line) */
static size_t doc_end(const char *text, size_t len, size_t at, lk_doc_split split)
{
    if (split == LK_SPLIT_FILE) return len;
    for (size_t i = at; i < len; i++) {
        if (text[i] != '\n') continue;
        if (split == LK_SPLIT_LINE) return i;
        if (i + 1 < len && text[i + 1] == '\n') return i; /* (a blank line ends a paragraph) */
    }
    return len;
}

lk_status lk_tokenize(lk_comm *c, const lk_tokenize_opts *o, char *const *files, int nfiles, FILE *log)
{
    if (!nfiles) return LK_ERR(LK_ERR_ARG, "tokenize: no input files");
    if (mkdir(o->out, 0755) && errno != EEXIST)
        return LK_ERR(LK_ERR_IO, "tokenize: cannot create --out %s: %s", o->out, strerror(errno));
    lk_bpe *b = NULL;
    LK_CHECK(lk_bpe_open(&b, o->tokenizer));
    if (lk_bpe_vocab(b) > 65536 || lk_bpe_eot(b) < 0) {
        const int v = lk_bpe_vocab(b);
        lk_bpe_free(b);
        return v > 65536 ? LK_ERR(LK_ERR_FORMAT, "tokenize: a vocabulary of %d does not fit llm.c's 16-bit shards", v)
                         : LK_ERR(LK_ERR_FORMAT, "tokenize: the vocabulary has no <|endoftext|> to separate documents");
    }
    shard_buf sb[2] = {{.name = "train"}, {.name = "val"}};
    int32_t *ids = NULL;
    size_t cap = 0;
    double docs = 0.0, bytes = 0.0;
    lk_status st = LK_OK;
    /* the files are dealt out to the ranks; which documents validate depends on the file
     * and the document's place in it only, not on the number of ranks */
    for (int f = c->rank; f < nfiles && st == LK_OK; f += c->world) {
        void *raw = NULL;
        size_t len = 0;
        st = lk_read_file(files[f], &raw, &len);
        const char *text = raw;
        long d = 0;
        for (size_t at = 0; st == LK_OK && at < len; d++) {
            const size_t end = doc_end(text, len, at, o->split);
            const long place = o->split == LK_SPLIT_FILE ? f : d;
            shard_buf *s = &sb[o->val_every > 0 && place % o->val_every == o->val_every - 1];
            if (end > at || o->split == LK_SPLIT_FILE) st = add_doc(o, c, b, s, text + at, end - at, &ids, &cap);
            docs += 1.0;
            at = end + (o->split == LK_SPLIT_BLANK ? 2 : 1);
            while (o->split == LK_SPLIT_BLANK && at < len && text[at] == '\n') at++;
        }
        bytes += (double)len;
        lk_free(raw);
    }
    for (int k = 0; k < 2 && st == LK_OK; k++) st = flush(o, c, &sb[k]);
    lk_free(ids);
    lk_free(sb[0].tok);
    lk_free(sb[1].tok);
    lk_bpe_free(b);
    LK_CHECK(st);
    double sums[5] = {sb[0].total, sb[1].total, docs, bytes, (double)(sb[0].shards + sb[1].shards)};
    if (c->world > 1) LK_CHECK(lk_comm_allreduce_f64(c, sums, 5, LK_REDUCE_SUM));
    if (c->rank == 0 && log)
        fprintf(log, "tokenize: %d file%s, %.0f documents, %.0f bytes -> %.0f training and %.0f validation tokens "
                     "(GPT-2's, %.2f bytes a token) in %.0f shard%s in %s (train with --data 'tokens:%s/*.bin')\n",
                nfiles, nfiles == 1 ? "" : "s", sums[2], sums[3], sums[0], sums[1],
                sums[0] + sums[1] > 0 ? sums[3] / (sums[0] + sums[1]) : 0.0, sums[4], sums[4] == 1 ? "" : "s", o->out,
                o->out);
    return LK_OK;
}

lk_status lk_detokenize(const char *tokenizer, char *const *shards, int nshards, FILE *out)
{
    lk_bpe *b = NULL;
    LK_CHECK(lk_bpe_open(&b, tokenizer));
    const int32_t eot = lk_bpe_eot(b);
    lk_status st = LK_OK;
    for (int f = 0; f < nshards && st == LK_OK; f++) {
        uint16_t *tok = NULL;
        long n = 0;
        st = lk_tokens_read_shard(shards[f], &tok, &n);
        for (long i = 0; i < n && st == LK_OK; i++) {
            size_t len = 0;
            const char *t = tok[i] == eot ? "" : lk_bpe_token(b, tok[i], &len);
            if (!t) st = LK_ERR(LK_ERR_FORMAT, "%s: token %ld is %u, not in the tokenizer's vocabulary", shards[f], i,
                                (unsigned)tok[i]);
            else if (len && fwrite(t, 1, len, out) != len) st = LK_ERR(LK_ERR_IO, "detokenize: cannot write the text");
        }
        lk_free(tok);
    }
    lk_bpe_free(b);
    return st;
}
