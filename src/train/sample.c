/* sample.c - generation from checkpoints: autoregressive text from gpt, images from
 * the gan's generator and the vae's decoder, reconstructions from the autoencoder. */
#include "sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/checkpoint.h"
#include "../core/ops.h"
#include "../core/rng.h"
#include "../data/bpe.h"
#include "ckptdir.h"
#include "gan.h"
#include "png.h"
#include "replica.h"

#define VAE_SAMPLE_KEY 0xfff4 /* the LK_RNG_NOISE key of the vae's sampled codes */

lk_sample_opts lk_sample_defaults(void)
{
    lk_sample_opts o;
    memset(&o, 0, sizeof o);
    o.device = "auto";
    o.tokens = 200;
    o.top_k = 40;
    o.count = 64;
    o.temperature = 0.8;
    return o;
}

/* the prompt as tokens: bytes for a byte-level model; for a GPT-2 one "ids:a,b,c", or text
 * through GPT-2's tokenizer (bpe: end-of-text, then the text's tokens, as documents begin
 * in llm.c's shards) */
static lk_status prompt_tokens(const char *p, int vocab, const lk_bpe *bpe, int32_t *tok, int cap, int *n)
{
    *n = 0;
    if (vocab == 256) {
        for (const unsigned char *c = (const unsigned char *)(p ? p : ""); *c && *n < cap; c++)
            tok[(*n)++] = *c;
        if (!*n) tok[(*n)++] = '\n';
        return LK_OK;
    }
    if (!p || !*p) {
        tok[(*n)++] = LK_BPE_EOT;
        return LK_OK;
    }
    if (strncmp(p, "ids:", 4) && bpe) {
        int32_t *ids = NULL;
        size_t k = 0, room = 0;
        LK_CHECK(lk_bpe_encode(bpe, p, strlen(p), &ids, &k, &room));
        tok[(*n)++] = LK_BPE_EOT;
        lk_status st = k + 1 > (size_t)cap ? LK_ERR(LK_ERR_ARG, "--prompt: %zu tokens, more than %d", k, cap - 1) : LK_OK;
        for (size_t i = 0; st == LK_OK && i < k; i++) tok[(*n)++] = ids[i] < vocab ? ids[i] : 0;
        lk_free(ids);
        return st;
    }
    for (const char *c = p + 4; *c && *n < cap;) {
        char *end;
        errno = 0;
        long v = strtol(c, &end, 10);
        if (end == c || errno || v < 0 || v >= vocab)
            return LK_ERR(LK_ERR_ARG, "--prompt %s: '%.20s' is not a token id below %d", p, c, vocab);
        tok[(*n)++] = (int32_t)v;
        c = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return LK_ERR(LK_ERR_ARG, "--prompt %s: ids are separated by commas", p);
    }
    return LK_OK;
}

lk_status lk_prompt_open(const char *prompt, int vocab, const char *tokenizer, lk_bpe **bpe, int32_t *tok, int cap,
                         int *n)
{
    /* a GPT-2 model reads and writes text through GPT-2's tokenizer, ids with an ids: prompt
     * (or where the tokenizer's files are missing and no text prompt needs them) */
    *bpe = NULL, *n = 0;
    const int ids_prompt = prompt && !strncmp(prompt, "ids:", 4);
    if (vocab == LK_GPT2_VOCAB && !ids_prompt && lk_bpe_open(bpe, tokenizer) != LK_OK && prompt && *prompt) {
        char why[1400];
        snprintf(why, sizeof why, "%s", lk_error_message());
        return LK_ERR(LK_ERR_ARG, "--prompt: %s; or give token ids as ids:1,2,3", why);
    }
    return prompt_tokens(prompt, vocab, *bpe, tok, cap, n);
}

/* the next token from logits: temperature, the top k, then a draw (greedy at T = 0) */
static int32_t pick(float *logits, int vocab, const lk_sample_opts *o, long draw, float *scratch)
{
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (o->temperature <= 0.0) return best;
    float cut = -INFINITY;
    if (o->top_k > 0 && o->top_k < vocab) { /* the k-th largest logit */
        memcpy(scratch, logits, (size_t)vocab * sizeof *scratch);
        for (int k = 0; k < o->top_k; k++) {
            int m = k;
            for (int i = k + 1; i < vocab; i++)
                if (scratch[i] > scratch[m]) m = i;
            float t = scratch[k];
            scratch[k] = scratch[m], scratch[m] = t;
        }
        cut = scratch[o->top_k - 1];
    }
    double total = 0.0;
    for (int i = 0; i < vocab; i++) {
        logits[i] = logits[i] >= cut ? (float)exp((logits[i] - logits[best]) / o->temperature) : 0.0f;
        total += logits[i];
    }
    double u = lk_rng_uniform(o->seed, LK_RNG_SAMPLE, (uint64_t)draw, 0) * total, acc = 0.0;
    for (int i = 0; i < vocab; i++) {
        acc += logits[i];
        if (logits[i] > 0.0f && u < acc) return i;
    }
    return best;
}

static lk_status sample_text(const lk_sample_opts *o, lk_replica *r, int vocab, FILE *text)
{
    lk_model *m = r->model;
    const lk_shape os = lk_model_out_shape(m);
    const int ctx = m->in_shape.d[0], cap = 4096 + o->tokens, row = os.d[os.ndim - 1]; /* >= vocab */
    int32_t *tok = lk_malloc((size_t)cap * sizeof *tok);
    float *x = lk_malloc((size_t)ctx * sizeof *x), *logits = lk_malloc((size_t)vocab * 2 * sizeof *logits);
    lk_status st = tok && x && logits ? LK_OK : LK_ERR(LK_ERR_NOMEM, "sample: out of memory");
    int n = 0;
    lk_bpe *bpe = NULL;
    if (st == LK_OK) st = lk_prompt_open(o->prompt, vocab, o->tokenizer, &bpe, tok, 4096, &n);
    if (st == LK_OK && (vocab == 256 || bpe) && o->prompt) fputs(o->prompt, text);
    for (int k = 0; st == LK_OK && k < o->tokens; k++) {
        const int len = LK_MIN(n, ctx), from = n - len; /* the last ctx tokens */
        for (int i = 0; i < ctx; i++) x[i] = i < len ? (float)tok[from + i] : 0.0f;
        lk_copy_to_device(r->dev, lk_model_input(m), x, (size_t)ctx * sizeof *x);
        lk_tensor out;
        st = lk_model_forward(m, 1, 0, 0, &out);
        if (st != LK_OK) break;
        lk_copy_to_host(r->dev, logits, out.data + (size_t)(len - 1) * row, (size_t)vocab * sizeof *logits);
        st = lk_device_status(r->dev);
        if (st != LK_OK) break;
        int32_t t = pick(logits, vocab, o, k, logits + vocab);
        tok[n++] = t;
        size_t plen = 0;
        const char *piece = bpe ? lk_bpe_token(bpe, t, &plen) : NULL;
        if (vocab == 256) fputc(t, text);
        else if (piece) fwrite(piece, 1, plen, text);
        else fprintf(text, "%s%d", k ? " " : "", t);
        fflush(text);
    }
    if (st == LK_OK) fputc('\n', text);
    lk_free(tok);
    lk_free(x);
    lk_free(logits);
    lk_bpe_free(bpe);
    return st;
}

/* The index of a VAE's sampling layer; nlayers where there is none. */
static int reparam_at(const lk_model *m)
{
    int k = 0;
    while (k < m->nlayers && !lk_layer_is_reparam(m->layers[k])) k++;
    return k;
}

/* images [count][h][w] (host, [0, 1]) of a model that makes them */
static lk_status make_images(const lk_sample_opts *o, const lk_run_config *rc, lk_replica *r,
                             float *img, int per)
{
    lk_model *m = r->model;
    const int B = m->max_batch;
    const int k = reparam_at(m); /* a variational autoencoder's sampling layer */
    if (r->zoo->target == LK_TARGET_REAL) {
        lk_gan g;
        LK_CHECK(lk_gan_init(&g, r));
        lk_status st = lk_gan_generate(&g, o->count, o->seed, img);
        lk_gan_free(&g);
        return st;
    }
    if (k < m->nlayers) { /* a VAE: the decoder on z ~ N(0, 1) */
        const int z = m->layers[k]->out.d[0];
        for (int start = 0, n = 0; start < o->count; start += n) {
            n = LK_MIN(B, o->count - start);
            LK_CHECK(lk_randn(r->dev, m->act[k + 1], (size_t)n * z, o->seed, VAE_SAMPLE_KEY,
                              (uint64_t)start * z));
            lk_tensor out;
            LK_CHECK(lk_model_forward_range(m, k + 1, m->nlayers, n, 0, 0, &out));
            LK_CHECK(lk_act_forward(r->dev, LK_ACT_SIGMOID, 0, &out, &out)); /* logits to pixels */
            lk_copy_to_host(r->dev, img + (size_t)start * per, out.data, (size_t)n * per * sizeof *img);
            LK_CHECK(lk_device_status(r->dev));
        }
        return LK_OK;
    }
    /* the autoencoder: rows of test images, each followed by a row of their reconstructions */
    lk_dataset d;
    LK_CHECK(lk_data_open(rc->data, "test", 0, &d));
    lk_status st = d.n >= o->count ? LK_OK
                                   : LK_ERR(LK_ERR_ARG, "--count %d: %s has %d test images", o->count,
                                            rc->data, d.n);
    const int cols = LK_MIN(o->count, 16);
    for (int start = 0, n = 0; st == LK_OK && start < o->count; start += n) {
        lk_tensor out;
        st = lk_replica_infer(r, &d, start, &n, &out); /* n: as many as the batch holds */
        if (st != LK_OK) break;
        n = LK_MIN(n, LK_MIN(cols, o->count - start)); /* one row's worth */
        float *row = img + (size_t)(start / cols) * 2 * cols * per; /* inputs, then outputs */
        lk_copy_to_host(r->dev, row, lk_model_input(m), (size_t)n * per * sizeof *img);
        lk_copy_to_host(r->dev, row + (size_t)cols * per, out.data, (size_t)n * per * sizeof *img);
        st = lk_device_status(r->dev);
    }
    lk_dataset_free(&d);
    return st;
}

static lk_status sample_with(const lk_sample_opts *o, const char *dir, const lk_run_config *rc, const lk_spec *spec,
                             int is_text, FILE *text)
{
    char path[600];
    lk_replica r;
    memset(&r, 0, sizeof r);
    lk_status st = lk_replica_open(&r, &(lk_replica_spec){o->device, o->threads, spec, rc->arch, rc->in_shape,
                                                          rc->nclasses, 1, is_text ? 1 : LK_MIN(o->count, 64),
                                                          LK_INIT_DEFAULT, 0, LK_BUILD_FULL, LK_RECOMPUTE_NONE, NULL, NULL, LK_F32, 0, 0});
    if (st == LK_OK)
        st = lk_checkpoint_load_weights(lk_ckptdir_path(dir, "model.safetensors", path, sizeof path),
                                        r.model);
    if (st == LK_OK && is_text) st = sample_text(o, &r, rc->nclasses, text);
    if (st == LK_OK && !is_text) {
        const int h = rc->in_shape.d[1], w = rc->in_shape.d[2], per = h * w;
        const int ae = r.zoo->target == LK_TARGET_INPUT && reparam_at(r.model) == r.model->nlayers, cols = ae ? LK_MIN(o->count, 16) : (int)ceil(sqrt(o->count));
        const int slots = ae ? 2 * cols * ((o->count + cols - 1) / cols) : o->count;
        float *img = lk_calloc((size_t)slots * per, sizeof *img);
        st = img ? make_images(o, rc, &r, img, per) : LK_ERR(LK_ERR_NOMEM, "sample: out of memory");
        if (st == LK_OK) st = lk_png_write_grid(o->out, img, slots, h, w, cols);
        if (st == LK_OK) fprintf(text, "wrote %s (%d image%s of %dx%d%s)\n", o->out, o->count,
                                 o->count == 1 ? "" : "s", h, w, ae ? ", above their reconstructions" : "");
        lk_free(img);
    }
    lk_replica_free(&r);
    return st;
}

lk_status lk_sample(const lk_sample_opts *o, FILE *text)
{
    lk_run_config rc;
    char dir[600];
    LK_CHECK(lk_ckptdir_resolve(o->checkpoint, dir, sizeof dir)); /* (step checkpoints: the latest) */
    LK_CHECK(lk_ckptdir_load_config(dir, &rc));
    lk_spec *spec;
    LK_CHECK(lk_ckptdir_open_spec(dir, &rc, &spec));
    const lk_zoo_entry *z = lk_spec_entry(spec);
    const int is_text = z->tokens && z->target == LK_TARGET_LABELS, is_image = z->target != LK_TARGET_LABELS;
    lk_status st = LK_OK;
    if (!is_text && !is_image)
        st = LK_ERR(LK_ERR_ARG, "checkpoint %s holds a %s, which generates nothing: use lockstep predict", dir,
                    rc.model);
    else if (is_image && !o->out)
        st = LK_ERR(LK_ERR_ARG, "sample: --out FILE.png is required for model %s", rc.model);
    else if (o->count < 1 || o->count > 4096)
        st = LK_ERR(LK_ERR_ARG, "--count must be 1..4096 (got %d)", o->count);
    else if (is_image && (rc.in_shape.ndim != 3 || rc.in_shape.d[0] != 1))
        st = LK_ERR(LK_ERR_SHAPE, "sample: PNGs are grayscale; %s was trained on images of %d channels", rc.model,
                    rc.in_shape.ndim == 3 ? rc.in_shape.d[0] : 0);
    if (st == LK_OK) st = sample_with(o, dir, &rc, spec, is_text, text);
    lk_spec_free(spec);
    return st;
}
