/* zoo_ref.h - the zoo as it was written in C before it became specs (src/models/specs),
 * kept as the reference test_spec.c builds every built-in spec against: the same layers,
 * shapes, parameters and initialisation, so bitwise the same weights and steps.
 * Included by test_spec.c only. */
#include <math.h>
#include <string.h>

#include "core/layers.h"
#include "core/model.h"
#include "models/spec.h"

static lk_status build_mlp(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)arch;
    int in = (int)lk_shape_numel(&m->in_shape);
    LK_CHECK(lk_model_add(m, lk_flatten()));
    LK_CHECK(lk_model_add(m, lk_linear(in, 128, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(128, nclasses, 1));
}

static lk_status build_mlp_wide(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)arch;
    int in = (int)lk_shape_numel(&m->in_shape);
    LK_CHECK(lk_model_add(m, lk_flatten()));
    LK_CHECK(lk_model_add(m, lk_linear(in, 1024, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_linear(1024, 1024, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(1024, nclasses, 1));
}

static lk_status build_cnn(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)arch;
    const lk_shape *s = &m->in_shape;
    if (s->ndim != 3)
        return LK_ERR(LK_ERR_SHAPE, "model cnn needs image input [C, H, W]");
    int c = s->d[0];
    LK_CHECK(lk_model_add(m, lk_conv2d(c, 32, 3, 1, 1, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_maxpool2d(2, 2, 0)));
    LK_CHECK(lk_model_add(m, lk_conv2d(32, 64, 3, 1, 1, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_maxpool2d(2, 2, 0)));
    LK_CHECK(lk_model_add(m, lk_flatten()));
    int flat = (int)lk_shape_numel(&m->layers[m->nlayers - 1]->out); /* 3136 on 28x28 */
    LK_CHECK(lk_model_add(m, lk_linear(flat, 128, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(128, nclasses, 1));
}

/* cnn with batch norm after each convolution (BatchNorm2d) and the hidden linear layer
 * (BatchNorm1d): Conv, BN, ReLU, MaxPool x2, Linear, BN, ReLU, Linear. */
static lk_status build_cnn_bn(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)arch;
    const lk_shape *s = &m->in_shape;
    if (s->ndim != 3) return LK_ERR(LK_ERR_SHAPE, "model cnn-bn needs image input [C, H, W]");
    int c = s->d[0];
    const int ch[2] = {32, 64};
    for (int i = 0; i < 2; i++) {
        LK_CHECK(lk_model_add(m, lk_conv2d(i ? ch[0] : c, ch[i], 3, 1, 1, 0))); /* BN has the bias */
        LK_CHECK(lk_model_add(m, lk_batchnorm(ch[i], 1e-5f, 0.1f)));
        LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
        LK_CHECK(lk_model_add(m, lk_maxpool2d(2, 2, 0)));
    }
    LK_CHECK(lk_model_add(m, lk_flatten()));
    int flat = (int)lk_shape_numel(&m->layers[m->nlayers - 1]->out);
    LK_CHECK(lk_model_add(m, lk_linear(flat, 128, 0)));
    LK_CHECK(lk_model_add(m, lk_batchnorm(128, 1e-5f, 0.1f)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(128, nclasses, 1));
}

/* Images read row by row: [C, H, W] as H steps of C*W values, a 2-layer recurrent
 * network of 128 units, and a classifier on the last step's hidden state. */
static lk_status build_rnn(lk_model *m, int nclasses, lk_rnn_cell cell)
{
    const lk_shape *s = &m->in_shape;
    if (s->ndim < 2)
        return LK_ERR(LK_ERR_SHAPE, "model %s needs image or sequence input ([C, H, W] or [T, F])",
                      cell == LK_RNN_LSTM ? "lstm" : "gru");
    int steps = s->d[s->ndim - 2], width = (int)(lk_shape_numel(s) / (size_t)steps);
    LK_CHECK(lk_model_add(m, lk_reshape(2, (int[]){steps, width})));
    LK_CHECK(lk_model_add(m, lk_rnn(cell, width, 128, 2, 0)));
    return lk_model_add(m, lk_linear(128, nclasses, 1));
}

static lk_status build_lstm(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)arch;
    return build_rnn(m, nclasses, LK_RNN_LSTM);
}
static lk_status build_gru(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)arch;
    return build_rnn(m, nclasses, LK_RNN_GRU);
}

/* GPT-2's sizes (the OpenAI checkpoints'): layers, heads, dim, context */
typedef struct {
    const char *name;
    lk_arch arch;
} gpt_preset;
static const gpt_preset presets[] = {
    {"gpt", {4, 4, 256, 128, LK_GELU_ERF}},
    {"gpt2", {12, 12, 768, 1024, LK_GELU_TANH}},
    {"gpt2-medium", {24, 16, 1024, 1024, LK_GELU_TANH}},
    {"gpt2-large", {36, 20, 1280, 1024, LK_GELU_TANH}},
    {"gpt2-xl", {48, 25, 1600, 1024, LK_GELU_TANH}},
};

static lk_status ref_arch_for(const char *model, const lk_arch *given, lk_arch *out)
{
    const lk_arch none = {0, 0, 0, 0, LK_GELU_DEFAULT};
    if (!given) given = &none;
    const gpt_preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(model, presets[i].name)) p = &presets[i];
    if (!p) { /* token windows for other models (an mlp on text) keep the gpt's default */
        *out = *given;
        if (out->ctx <= 0) out->ctx = presets[0].arch.ctx;
        return LK_OK;
    }
    *out = p->arch;
    if (given->gelu != LK_GELU_DEFAULT) out->gelu = given->gelu;
    if (p == presets) { /* the small gpt: every size is the user's to choose */
        if (given->layers > 0) out->layers = given->layers;
        if (given->heads > 0) out->heads = given->heads;
        if (given->dim > 0) out->dim = given->dim;
        if (given->ctx > 0) out->ctx = given->ctx;
        return LK_OK;
    }
    const int g[3] = {given->layers, given->heads, given->dim}, want[3] = {out->layers, out->heads, out->dim};
    const char *const flag[3] = {"--layers", "--heads", "--dim"};
    for (int i = 0; i < 3; i++)
        if (g[i] > 0 && g[i] != want[i])
            return LK_ERR(LK_ERR_ARG, "%s %d: model %s has %d (its shape is GPT-2's; use --model gpt for "
                                      "other sizes)", flag[i], g[i], model, want[i]);
    if (given->ctx > out->ctx)
        return LK_ERR(LK_ERR_ARG, "--ctx %d: model %s's context is at most %d", given->ctx, model, out->ctx);
    if (given->ctx > 0) out->ctx = given->ctx;
    return LK_OK;
}

/* GPT-2's initialisation: every weight N(0, 0.02^2), biases 0 (the norms keep their ones
 * and zeros); `proj` holds the residual projections, N(0, (0.02 / sqrt(2 layers))^2). */
static void gpt2_init(lk_layer *l, float std)
{
    for (int j = 0; j < l->nparams; j++) {
        lk_param *p = &l->params[j];
        p->fixed = p->is_bias ? LK_PINIT_ZEROS : LK_PINIT_NORMAL;
        p->fixed_std = std;
    }
}

/* GPT-2's decoder: token + learned position embeddings, `layers` pre-LayerNorm blocks
 *   x = x + attn(ln_1(x));  x = x + fc2(gelu(fc1(ln_2(x))))   (MLP 4x wide)
 * a final LayerNorm and the head tied to the token embedding. Input: [ctx] token ids.
 * The presets (gpt2*) also take GPT-2's initialisation; the small gpt keeps --init. */
static lk_status build_transformer(lk_model *m, int vocab, const char *name, const lk_arch *given,
                                   int gpt2)
{
    const lk_shape *s = &m->in_shape;
    lk_arch a;
    LK_CHECK(ref_arch_for(name, given, &a));
    if (s->ndim != 1 || s->d[0] != a.ctx)
        return LK_ERR(LK_ERR_SHAPE, "model %s needs token windows of --ctx %d (text:FILE or tokens:PATTERN data)",
                      name, a.ctx);
    if (a.dim % a.heads)
        return LK_ERR(LK_ERR_ARG, "%s: --dim %d is not a multiple of --heads %d", name, a.dim, a.heads);
    const int C = a.dim;
    const lk_act gelu = a.gelu == LK_GELU_TANH ? LK_ACT_GELU_TANH : LK_ACT_GELU;
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)a.layers);
    /* A large vocabulary is padded to a multiple of 128 (GPT-2's 50257 to 50304): the head's
     * weight-gradient product then reads the logits' gradient at an aligned stride (on
     * this AVX-512 CPU that product is 26% faster at 2048 tokens, 10% at 256, the head's
     * other products no slower; a whole GPT-2 step about 1% faster at 8 x 256, the same at
     * 4 x 64), and on GPUs aligned sizes are what cuBLAS's fast kernels want (llm.c pads
     * so too). The padding is never predicted, saved or counted in the model's FLOPs. */
    const int pad = vocab >= 4096 ? 128 : 0;
    lk_layer *emb = lk_embedding(vocab, C, 1, pad), *l;
    LK_CHECK(lk_model_add(m, emb));
    for (int i = 0; i < a.layers; i++) {
        lk_layer *r1 = lk_residual_begin(), *r2;
        LK_CHECK(lk_model_add(m, r1));
        LK_CHECK(lk_model_add(m, lk_layernorm(C, 1e-5f)));
        LK_CHECK(lk_model_add(m, l = lk_attention(C, a.heads)));
        if (gpt2) gpt2_init(l, std), l->params[2].fixed_std = proj_std; /* c_proj.weight */
        LK_CHECK(lk_model_add(m, lk_residual_end(r1)));
        LK_CHECK(lk_model_add(m, r2 = lk_residual_begin()));
        LK_CHECK(lk_model_add(m, lk_layernorm(C, 1e-5f)));
        LK_CHECK(lk_model_add(m, l = lk_linear(C, 4 * C, 1)));
        if (gpt2) gpt2_init(l, std);
        LK_CHECK(lk_model_add(m, lk_activation(gelu, 0)));
        LK_CHECK(lk_model_add(m, l = lk_linear(4 * C, C, 1)));
        if (gpt2) gpt2_init(l, proj_std);
        LK_CHECK(lk_model_add(m, lk_residual_end(r2)));
    }
    LK_CHECK(lk_model_add(m, lk_layernorm(C, 1e-5f)));
    return lk_model_add(m, lk_tied_head(emb));
}

static lk_status build_gpt(lk_model *m, int vocab, const lk_arch *arch)
{
    return build_transformer(m, vocab, "gpt", arch, 0);
}
#define GPT2_BUILDER(fn, name)                                          \
    static lk_status fn(lk_model *m, int vocab, const lk_arch *arch) \
    {                                                                   \
        return build_transformer(m, vocab, name, arch, 1);             \
    }
GPT2_BUILDER(build_gpt2, "gpt2")
GPT2_BUILDER(build_gpt2_medium, "gpt2-medium")
GPT2_BUILDER(build_gpt2_large, "gpt2-large")
GPT2_BUILDER(build_gpt2_xl, "gpt2-xl")

/* 784-256-64-256-784 with ReLU and a sigmoid output, trained on MSE to its input. */
static lk_status build_autoencoder(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)nclasses, (void)arch;
    int in = (int)lk_shape_numel(&m->in_shape);
    LK_CHECK(lk_model_add(m, lk_flatten()));
    const int widths[] = {256, 64, 256};
    int prev = in;
    for (int i = 0; i < 3; i++) {
        LK_CHECK(lk_model_add(m, lk_linear(prev, widths[i], 1)));
        LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
        prev = widths[i];
    }
    LK_CHECK(lk_model_add(m, lk_linear(prev, in, 1)));
    return lk_model_add(m, lk_activation(LK_ACT_SIGMOID, 0));
}

/* The VAE of PyTorch's example: 784-400-(mu, logvar: 2x20), z = mu + sigma * eps,
 * 20-400-784 logits; loss BCE (summed over pixels) + KL, averaged over the batch. */
static lk_status build_vae(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)nclasses, (void)arch;
    int in = (int)lk_shape_numel(&m->in_shape);
    LK_CHECK(lk_model_add(m, lk_flatten()));
    LK_CHECK(lk_model_add(m, lk_linear(in, 400, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_linear(400, 40, 1)));
    LK_CHECK(lk_model_add(m, lk_reparam(20)));
    LK_CHECK(lk_model_add(m, lk_linear(20, 400, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(400, in, 1));
}

/* A GAN as one chain: the generator G z(64)-256-512-784 (ReLU, tanh output, images in
 * [-1, 1]) followed by the discriminator D 784-512-256-1 (LeakyReLU 0.2) whose output is
 * a logit. The model's input becomes z; the data's samples are what D sees as real. */
static lk_status build_gan(lk_model *m, int nclasses, const lk_arch *arch)
{
    (void)nclasses, (void)arch;
    int image = (int)lk_shape_numel(&m->in_shape), z = LK_GAN_LATENT;
    if (m->nlayers) return LK_ERR(LK_ERR_STATE, "gan: the model must be empty");
    m->in_shape = lk_shape_make(1, &z);
    LK_CHECK(lk_model_add(m, lk_linear(z, 256, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_linear(256, 512, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_linear(512, image, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_TANH, 0))); /* LK_GAN_G_LAYERS end here */
    lk_layer *d = lk_linear(image, 512, 1);
    LK_CHECK(lk_model_add(m, d));
    d->input_f32 = 1; /* the trainer writes the real images there (float32) */
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_LEAKY_RELU, 0.2f)));
    LK_CHECK(lk_model_add(m, lk_linear(512, 256, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_LEAKY_RELU, 0.2f)));
    return lk_model_add(m, lk_linear(256, 1, 1));
}

typedef struct {
    const char *name;
    lk_status (*build)(lk_model *m, int nclasses, const lk_arch *arch);
} ref_row;
static const ref_row refs[] = {
    {"mlp", build_mlp}, {"mlp-wide", build_mlp_wide}, {"cnn", build_cnn}, {"cnn-bn", build_cnn_bn},
    {"lstm", build_lstm}, {"gru", build_gru}, {"gpt", build_gpt}, {"gpt2", build_gpt2},
    {"gpt2-medium", build_gpt2_medium}, {"gpt2-large", build_gpt2_large}, {"gpt2-xl", build_gpt2_xl},
    {"autoencoder", build_autoencoder}, {"vae", build_vae}, {"gan", build_gan},
};
