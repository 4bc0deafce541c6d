/* embedding.c - token embeddings and the head that shares their weight.
 *
 * lk_embedding: input [T] token ids (stored as floats, exact below 2^24) per sample,
 * output [T, dim] = weight[token] (+ pos[t] with learned positions, GPT-2's wte + wpe).
 * Both tables start N(0, 0.02^2) whatever --init says.
 *
 * lk_tied_head: logits [T, vocab] = x weight^T with the embedding's own weight (GPT-2's
 * tied lm_head). It has no parameters of its own: its gradient goes into the
 * embedding's. It runs first in backward, so it takes ctx->replace_grads and the
 * embedding then always adds.
 *
 * A padded vocabulary (pad_to > 1): the weight is stored with Vp = vocab rounded up to
 * pad_to rows (pad_rows of zeros after its vocab rows, never saved) and the head writes
 * [T, Vp] logits of which the first vocab count (out_valid): its products then have
 * aligned sizes and leading dimensions. The loss reads the vocab columns and writes a
 * zero gradient into the others, so the padding rows' gradient is zero and they stay
 * zero. */
#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    int vocab, dim, positions;
    int rows; /* vocab rounded up to the padding */
    int tied; /* a head writes into the weight's gradient before backward gets here */
} embedding;

static lk_status embedding_setup(lk_layer *l)
{
    embedding *s = (embedding *)l;
    if (l->in.ndim != 1) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (embedding): expects [T] token ids per sample, got %s",
                      l->index, lk_shape_str(&l->in, b, sizeof b));
    }
    int T = l->in.d[0];
    l->out = lk_shape_make(2, (int[]){T, s->dim});
    lk_param *w = lk_layer_add_param(l, "weight", 2, (int[]){s->vocab, s->dim}, s->dim, s->vocab, 0);
    w->fixed = LK_PINIT_NORMAL;
    w->fixed_std = 0.02f;
    w->pad_rows = s->rows - s->vocab;
    if (s->positions) {
        lk_param *p = lk_layer_add_param(l, "pos", 2, (int[]){T, s->dim}, s->dim, T, 0);
        p->fixed = LK_PINIT_NORMAL;
        p->fixed_std = 0.02f;
    }
    return LK_OK;
}

static lk_status embedding_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    embedding *s = (embedding *)l;
    int B = x->shape.d[0], T = l->in.d[0];
    LK_CHECK(lk_embed_forward(c->dev, x->data, l->params[0].w, y->data, B * T, s->dim));
    if (s->positions) LK_CHECK(lk_bias_add(c->dev, y->data, l->params[1].w, B, T * s->dim, 1));
    return LK_OK;
}

static lk_status embedding_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x,
                                    const lk_tensor *y, const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    (void)dx; /* token ids have no gradient */
    embedding *s = (embedding *)l;
    int B = x->shape.d[0], T = l->in.d[0];
    const int replace = c->replace_grads && !s->tied;
    if (replace) lk_zero(c->dev, l->params[0].g, (size_t)s->rows * s->dim * sizeof(float));
    LK_CHECK(lk_embed_backward(c->dev, x->data, dy->data, l->params[0].g, B * T, s->dim));
    if (s->positions)
        LK_CHECK(lk_bias_grad(c->dev, l->params[1].g, dy->data, B, T * s->dim, 1,
                              c->replace_grads ? 0.0f : 1.0f));
    return LK_OK;
}

static const lk_layer_vt embedding_vt = {
    .type = "embedding",
    .setup = embedding_setup,
    .forward = embedding_forward,
    .backward = embedding_backward,
};

lk_layer *lk_embedding(int vocab, int dim, int positions, int pad_to)
{
    if (vocab <= 0 || dim <= 0 || vocab > (1 << 24) || pad_to < 0 || pad_to > 4096) {
        LK_ERR(LK_ERR_ARG, "embedding: vocabulary 1..2^24, a positive dim and padding 0..4096 "
                           "(vocab=%d dim=%d pad_to=%d)", vocab, dim, pad_to);
        return NULL;
    }
    embedding *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &embedding_vt;
    s->vocab = vocab;
    s->rows = pad_to > 1 ? (vocab + pad_to - 1) / pad_to * pad_to : vocab;
    s->dim = dim;
    s->positions = positions != 0;
    return &s->base;
}

/* ---- the tied head ---- */

typedef struct {
    lk_layer base;
    embedding *emb;
} tied_head;

static lk_status tied_setup(lk_layer *l)
{
    tied_head *s = (tied_head *)l;
    int dim = s->emb->dim;
    if (l->in.ndim < 1 || l->in.d[l->in.ndim - 1] != dim) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (tied head): expects input [..., %d] per sample, got %s",
                      l->index, dim, lk_shape_str(&l->in, b, sizeof b));
    }
    l->out = l->in;
    l->out.d[l->in.ndim - 1] = s->emb->rows;
    l->out_valid = s->emb->rows != s->emb->vocab ? s->emb->vocab : 0;
    return LK_OK;
}

static lk_status tied_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    tied_head *s = (tied_head *)l;
    int rows = (int)(lk_tensor_numel(x) / (size_t)s->emb->dim), V = s->emb->rows, C = s->emb->dim;
    return lk_gemm_ex(c->dev, l->compute, 0, 1, rows, V, C, 1.0f, lk_tensor_in(x), C,
                      lk_layer_weights(l, &s->emb->base.params[0]), C, 0.0f, y->data, V);
}

static lk_status tied_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                               const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    tied_head *s = (tied_head *)l;
    /* over every stored row: the padding's logits had a zero gradient, so do their rows */
    int rows = (int)(lk_tensor_numel(x) / (size_t)s->emb->dim), V = s->emb->rows, C = s->emb->dim;
    const lk_param *w = &s->emb->base.params[0];
    LK_CHECK(lk_gemm_ex(c->dev, l->compute, 1, 0, V, C, rows, 1.0f, lk_in_f32(dy->data), V,
                        lk_tensor_in(x), C, c->replace_grads ? 0.0f : 1.0f, w->g, C));
    if (dx->data)
        LK_CHECK(lk_gemm_ex(c->dev, l->compute, 0, 0, rows, C, V, 1.0f, lk_in_f32(dy->data), V,
                            lk_layer_weights(l, w), C, 0.0f, dx->data, C));
    return LK_OK;
}

static double tied_flops(const lk_layer *l)
{
    const tied_head *s = (const tied_head *)l;
    return 2.0 * (double)lk_shape_numel(&l->in) * s->emb->vocab; /* rows x dim x vocab (the
                                                                    model's, not the padding) */
}

static const lk_layer_vt tied_vt = {
    .type = "tied_head",
    .y_unused = 1,
    .reads_bf16 = 1,
    .flops = tied_flops,
    .setup = tied_setup,
    .forward = tied_forward,
    .backward = tied_backward,
};

lk_layer *lk_tied_head(lk_layer *emb)
{
    if (!emb || emb->vt != &embedding_vt) {
        LK_ERR(LK_ERR_ARG, "tied head: needs an embedding layer to share the weight of");
        return NULL;
    }
    tied_head *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = &tied_vt;
    s->emb = (embedding *)emb;
    s->emb->tied = 1;
    s->base.grads_into = emb;
    return &s->base;
}
