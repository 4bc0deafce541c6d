/* tokens.c - token streams for language models, cut into windows of ctx tokens:
 * sample i is tokens [i*ctx, i*ctx + ctx), its labels the same window shifted by one
 * (the next token at every position). Windows do not overlap; the sampler shuffles
 * them like images.
 *
 *   text:FILE       the bytes of FILE (vocabulary 256); the first 90% train, the last
 *                   10% validate
 *   tokens:PATTERN  llm.c token shards (glob PATTERN): a header of 256 int32 (magic
 *                   20240520, version 1, token count), then the tokens as uint16, GPT-2's
 *                   vocabulary of 50257. Shards whose file name contains "val" validate,
 *                   the others train; without such a shard, the last 10% of the training
 *                   tokens validate. */
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/checkpoint.h"
#include "bpe.h"
#include "dataset.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER 1024

static lk_status windows(lk_dataset *d, uint16_t *tok, long ntok, int ctx, const char *what)
{
    if (ntok < (long)ctx + 1) {
        lk_free(tok);
        return LK_ERR(LK_ERR_FORMAT, "%s: %ld tokens, fewer than one window of --ctx %d plus one",
                      what, ntok, ctx);
    }
    d->tok = tok;
    d->ntok = ntok;
    d->ylen = ctx;
    d->n = (int)LK_MIN((ntok - 1) / ctx, (long)INT32_MAX);
    d->sample = lk_shape_make(1, &ctx);
    return LK_OK;
}

/* the split's part [lo, hi) of n tokens: train the first 90%, test the rest */
static void split_range(long n, int train, long *lo, long *hi)
{
    long cut = n - n / 10;
    *lo = train ? 0 : cut;
    *hi = train ? cut : n;
}

static lk_status open_text(const char *path, int train, int ctx, lk_dataset *d)
{
    void *raw;
    size_t bytes;
    LK_CHECK(lk_read_file(path, &raw, &bytes));
    long lo, hi;
    split_range((long)bytes, train, &lo, &hi);
    uint16_t *tok = lk_malloc((size_t)LK_MAX(hi - lo, 1) * sizeof *tok);
    if (!tok) {
        lk_free(raw);
        return LK_ERR(LK_ERR_NOMEM, "text %s: cannot hold %ld tokens", path, hi - lo);
    }
    for (long i = lo; i < hi; i++) tok[i - lo] = ((const uint8_t *)raw)[i];
    lk_free(raw);
    snprintf(d->name, sizeof d->name, "text");
    snprintf(d->source, sizeof d->source, "%s", path);
    d->nclasses = 256;
    char what[600];
    snprintf(what, sizeof what, "text %s (%s split, %s 10%%)", path, train ? "train" : "test",
             train ? "all but the last" : "the last");
    return windows(d, tok, hi - lo, ctx, what);
}

/* Appends shard `path` to *tok (growing it); checks the header, the length and every token. */
static lk_status read_shard(const char *path, uint16_t **tok, long *ntok)
{
    void *raw;
    size_t bytes;
    LK_CHECK(lk_read_file(path, &raw, &bytes));
    const int32_t *h = raw;
    lk_status st = LK_OK;
    long count = bytes >= SHARD_HEADER ? h[2] : -1;
    if (bytes < SHARD_HEADER)
        st = LK_ERR(LK_ERR_FORMAT, "token shard %s: %zu bytes, shorter than its 1024-byte header", path, bytes);
    else if (h[0] != SHARD_MAGIC)
        st = LK_ERR(LK_ERR_FORMAT, "token shard %s: magic %d, expected %d (llm.c's format)", path, h[0],
                    SHARD_MAGIC);
    else if (h[1] != SHARD_VERSION)
        st = LK_ERR(LK_ERR_FORMAT, "token shard %s: version %d, expected %d", path, h[1], SHARD_VERSION);
    else if (count < 0 || bytes != SHARD_HEADER + 2 * (size_t)count)
        st = LK_ERR(LK_ERR_FORMAT, "token shard %s: the header says %ld tokens (%ld bytes) but the file has %zu bytes%s",
                    path, count, SHARD_HEADER + 2 * count, bytes,
                    bytes < SHARD_HEADER + 2 * (size_t)LK_MAX(count, 0) ? " (truncated)" : "");
    uint16_t *grown = NULL;
    if (st == LK_OK) {
        grown = lk_malloc((size_t)(*ntok + count + 1) * sizeof *grown);
        if (!grown) st = LK_ERR(LK_ERR_NOMEM, "token shard %s: cannot hold %ld tokens", path, *ntok + count);
    }
    if (st == LK_OK) {
        if (*ntok) memcpy(grown, *tok, (size_t)*ntok * sizeof *grown);
        const uint16_t *src = (const uint16_t *)((const char *)raw + SHARD_HEADER);
        for (long i = 0; i < count && st == LK_OK; i++) {
            if (src[i] >= LK_GPT2_VOCAB)
                st = LK_ERR(LK_ERR_FORMAT, "token shard %s: token %ld is %u, outside GPT-2's vocabulary of %d",
                            path, i, (unsigned)src[i], LK_GPT2_VOCAB);
            grown[*ntok + i] = src[i];
        }
    }
    lk_free(raw);
    if (st != LK_OK) {
        lk_free(grown);
        return st;
    }
    lk_free(*tok);
    *tok = grown;
    *ntok += count;
    return LK_OK;
}

lk_status lk_tokens_read_shard(const char *path, uint16_t **tok, long *ntok)
{
    *tok = NULL;
    *ntok = 0;
    return read_shard(path, tok, ntok);
}

lk_status lk_tokens_write_shard(const char *path, const uint16_t *tok, size_t n)
{
    if (n > INT32_MAX) return LK_ERR(LK_ERR_ARG, "token shard %s: %zu tokens, more than a shard holds", path, n);
    char *buf = lk_calloc(SHARD_HEADER + 2 * n + 1, 1);
    if (!buf) return LK_ERR(LK_ERR_NOMEM, "token shard %s: cannot hold %zu tokens", path, n);
    int32_t *h = (int32_t *)buf;
    h[0] = SHARD_MAGIC, h[1] = SHARD_VERSION, h[2] = (int32_t)n;
    if (n) memcpy(buf + SHARD_HEADER, tok, 2 * n);
    lk_status st = lk_write_file_atomic(path, buf, SHARD_HEADER + 2 * n);
    lk_free(buf);
    return st;
}

static int is_val(const char *path)
{
    const char *base = strrchr(path, '/');
    return strstr(base ? base + 1 : path, "val") != NULL;
}

static lk_status open_shards(const char *pattern, int train, int ctx, lk_dataset *d)
{
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        return LK_ERR(LK_ERR_IO, "tokens:%s: no file matches", pattern);
    }
    if (rc != 0) {
        globfree(&g);
        return LK_ERR(LK_ERR_IO, "tokens:%s: cannot list the files (glob error %d)", pattern, rc);
    }
    int nval = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) nval += is_val(g.gl_pathv[i]);
    /* with validation shards each split reads its own; without, both read all and cut */
    const int want_val = !train && nval > 0;
    uint16_t *tok = NULL;
    long ntok = 0;
    lk_status st = LK_OK;
    int used = 0;
    for (size_t i = 0; i < g.gl_pathc && st == LK_OK; i++) {
        if (nval > 0 && is_val(g.gl_pathv[i]) != want_val) continue;
        st = read_shard(g.gl_pathv[i], &tok, &ntok);
        used++;
    }
    globfree(&g);
    if (st == LK_OK && used == 0)
        st = LK_ERR(LK_ERR_IO, "tokens:%s: every shard is a validation shard (\"val\" in its name): none to train on",
                    pattern);
    if (st != LK_OK) {
        lk_free(tok);
        return st;
    }
    if (nval == 0) { /* the last 10% validate */
        long lo, hi;
        split_range(ntok, train, &lo, &hi);
        if (lo) memmove(tok, tok + lo, (size_t)(hi - lo) * sizeof *tok);
        ntok = hi - lo;
    }
    snprintf(d->name, sizeof d->name, "tokens");
    snprintf(d->source, sizeof d->source, "%s", pattern);
    d->nclasses = LK_GPT2_VOCAB;
    char what[600];
    snprintf(what, sizeof what, "tokens:%s (%s split)", pattern, train ? "train" : "validation");
    return windows(d, tok, ntok, ctx, what);
}

lk_status lk_tokens_open(const char *kind, const char *arg, int train, int ctx, lk_dataset *out)
{
    if (ctx < 1) return LK_ERR(LK_ERR_ARG, "%s:%s needs a context length (--ctx) of at least 1", kind, arg);
    if (!strcmp(kind, "text")) return open_text(arg, train, ctx, out);
    return open_shards(arg, train, ctx, out);
}
