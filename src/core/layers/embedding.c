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

/* bf16 logits are computed 2^22 values (16 MB) at a time in float32 in the workspace and
 * rounded into the output (a whole GPT-2 batch's would be 0.8 GB of float32 at 4 x 1024) */
#define HEAD_STAGE_VALUES (1L << 22)

static int head_rows(const lk_layer *l, int batch) { return batch * (int)(lk_shape_numel(&l->in) / (size_t)((const tied_head *)l)->emb->dim); }

static int stage_rows(const tied_head *s, int rows) { return (int)LK_MAX(1L, LK_MIN((long)rows, HEAD_STAGE_VALUES / s->emb->rows)); }

static size_t tied_workspace(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    const tied_head *s = (const tied_head *)l;
    return lk_layer_staging(l->out_type, (size_t)stage_rows(s, head_rows(l, batch)) * s->emb->rows);
}

static lk_status tied_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    tied_head *s = (tied_head *)l;
    const int rows = head_rows(l, x->shape.d[0]), V = s->emb->rows, C = s->emb->dim;
    const lk_in w = lk_layer_weights(l, &s->emb->base.params[0]);
    if (y->type != LK_BF16)
        return lk_gemm_ex(c->dev, l->compute, 0, 1, rows, V, C, 1.0f, lk_tensor_in(x), C, w, C, 0.0f, y->data, V);
    const int chunk = stage_rows(s, rows);
    const size_t xs = lk_dtype_size(x->type);
    for (int r = 0; r < rows; r += chunk) {
        const int n = LK_MIN(chunk, rows - r);
        const lk_in xr = {(const char *)x->data + (size_t)r * C * xs, x->type};
        LK_CHECK(lk_gemm_ex(c->dev, l->compute, 0, 1, n, V, C, 1.0f, xr, C, w, C, 0.0f, c->workspace, V));
        LK_CHECK(lk_cast_bf16_rne(c->dev, c->workspace, (uint16_t *)y->data + (size_t)r * V, (size_t)n * V));
    }
    return LK_OK;
}

/* Rows of a float32 logits' gradient a bf16 backward takes at a time: the backend rounds
 * it into bf16 operand memory as a product reads it, and a whole GPT-2 batch's (4 x 1024
 * tokens x 50304) would take 412 MB of it; in chunks of 2^24 values (32 MB) it takes what
 * a chunk does. Float32 products, and a gradient already in bf16 (bf16 logits), are read as
 * they are, in one piece; so is it where bf16 products are emulated (lk_device's
 * bf16_emulated), which widen the weights again for every chunk (gpt2 at 4 x 256 without
 * AMX: 0.90x fp32's tokens/s in 4 chunks, 0.92x whole). */
#define HEAD_CHUNK_VALUES (1L << 24)

static lk_status tied_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                               const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    tied_head *s = (tied_head *)l;
    /* over every stored row: the padding's logits had a zero gradient, so do their rows */
    const int rows = head_rows(l, x->shape.d[0]), V = s->emb->rows, C = s->emb->dim;
    const lk_param *w = &s->emb->base.params[0];
    const int chunk = l->compute == LK_BF16 && dy->type == LK_F32 && !c->dev->bf16_emulated
                          ? (int)LK_MAX(1L, LK_MIN((long)rows, HEAD_CHUNK_VALUES / V))
                          : rows;
    const size_t xs = lk_dtype_size(x->type), gs = lk_dtype_size(dy->type);
    for (int r = 0; r < rows; r += chunk) {
        const int n = LK_MIN(chunk, rows - r);
        const lk_in g = {(const char *)dy->data + (size_t)r * V * gs, dy->type};
        const lk_in xr = {(const char *)x->data + (size_t)r * C * xs, x->type};
        LK_CHECK(lk_gemm_ex(c->dev, l->compute, 1, 0, V, C, n, 1.0f, g, V, xr, C,
                            r == 0 && c->replace_grads ? 0.0f : 1.0f, w->g, C));
        if (dx->data)
            LK_CHECK(lk_gemm_ex(c->dev, l->compute, 0, 0, n, C, V, 1.0f, g, V, lk_layer_weights(l, w), C, 0.0f,
                                dx->data + (size_t)r * C, C));
    }
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
    .writes_bf16 = 1, /* as the last layer: where the caller takes bf16 logits */
    .dy_bf16 = 1,
    .workspace_bytes = tied_workspace,
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
