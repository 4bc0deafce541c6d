/* test_precision.c - bf16 mixed precision (--precision bf16).
 *
 * Rounding: float32 -> bf16 to nearest even (ties, NaN, infinities, overflow) and
 * stochastically (unbiased, keyed by the element's global index so a buffer rounded in
 * pieces equals one rounded at once).
 *
 * Layers: every zoo family built twice from the same initialisation, fp32 and bf16; one
 * training-mode forward and backward of a made-up loss; every layer's output and every
 * parameter's gradient of the bf16 model within bf16's tolerance of the fp32 one, stated
 * as |bf16 - fp32| <= 1e-2 x the tensor's largest |fp32| (bf16 keeps 8 bits: one rounding
 * is 2^-9 relative; a product of k rounded terms errs ~sqrt(k) 2^-9 of its scale). Layers
 * without products (activations, norms, pooling, ...) compute in float32 either way.
 *
 * The optimizer: given the same gradients, the float32 master weights of a bf16 model's
 * step are bitwise those of a float32 step (the working copy is written beside them) and
 * the copy is the rounded master, over a whole step or a step taken in two ranges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/model.h"
#include "core/ops.h"
#include "core/optim.h"
#include "core/rng.h"
#include "models/zoo.h"
#include "testutil.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_round_nearest_even(void **state)
{
    (void)state;
    assert_int_equal(lk_bf16_rne(1.0f), 0x3f80);
    assert_int_equal(lk_bf16_rne(from_bits(0x3f808000u)), 0x3f80); /* tie, even below */
    assert_int_equal(lk_bf16_rne(from_bits(0x3f818000u)), 0x3f82); /* tie, even above */
    assert_int_equal(lk_bf16_rne(from_bits(0x3f808001u)), 0x3f81); /* above the tie */
    assert_int_equal(lk_bf16_rne(-2.5f), 0xc020);
    assert_int_equal(lk_bf16_rne(INFINITY), 0x7f80);
    assert_int_equal(lk_bf16_rne(-INFINITY), 0xff80);
    assert_int_equal(lk_bf16_rne(from_bits(0x7f7fffffu)), 0x7f80); /* rounds past the top */
    const uint16_t nan = lk_bf16_rne(NAN);
    assert_true((nan & 0x7f80) == 0x7f80 && (nan & 0x7f)); /* still a NaN */
    assert_true(isnan(lk_bf16_to_f32(lk_bf16_rne(from_bits(0x7f800001u))))); /* a NaN whose bits
                                                                              rounding would lose */
    for (int i = -1000; i <= 1000; i++) { /* values bf16 holds come back exactly */
        const float v = lk_bf16_to_f32((uint16_t)(0x3f80 + i));
        assert_true(lk_bf16_rne(v) == (uint16_t)(0x3f80 + i));
    }
}

/* Stochastic rounding: between the two neighbours, up with the right frequency, the mean
 * of many draws at the value; the same draws on the same keys; and a buffer rounded in
 * pieces (any offsets) equals the buffer rounded at once. */
static void test_round_stochastic(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    const size_t n = 40000;
    float *x = malloc(n * sizeof *x);
    uint16_t *a = malloc(n * 2), *b = malloc(n * 2);
    const float v = from_bits(0x3f804000u); /* 1 + 2^-9: a quarter of the way up */
    for (size_t i = 0; i < n; i++) x[i] = v;
    TU_OK(lk_cast_bf16(d, x, a, n, &(lk_round){1, 3, 17, 0, NULL}));
    double sum = 0, up = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(a[i] == 0x3f80 || a[i] == 0x3f81);
        up += a[i] == 0x3f81;
        sum += lk_bf16_to_f32(a[i]);
    }
    const double frac = up / (double)n; /* 0.25, binomial sd 0.0022 */
    if (fabs(frac - 0.25) > 0.012) fail_msg("rounded up %.4f of the time, not 0.25", frac);
    if (fabs(sum / (double)n - (double)v) > 1e-4) fail_msg("mean %.7f, value %.7f", sum / (double)n, (double)v);
    for (size_t i = 0; i < n; i++) x[i] = (float)sin((double)i) * 3.0f;
    TU_OK(lk_cast_bf16(d, x, a, n, &(lk_round){1, 3, 17, 1000, NULL}));
    const size_t cuts[] = {0, 1, 5, 4099, 17001, n};
    for (int c = 0; c + 1 < 6; c++)
        TU_OK(lk_cast_bf16(d, x + cuts[c], b + cuts[c], cuts[c + 1] - cuts[c],
                           &(lk_round){1, 3, 17, 1000 + cuts[c], NULL}));
    assert_memory_equal(a, b, n * 2);
    int differ = 0, step = 0;
    TU_OK(lk_cast_bf16(d, x, b, n, &(lk_round){1, 3, 18, 1000, NULL})); /* another step's draws */
    for (size_t i = 0; i < n; i++) {
        differ += a[i] != b[i];
        step |= abs((int)a[i] - (int)b[i]) > 1; /* never more than one ulp apart */
        const uint16_t e = lk_bf16_round(x[i], 1, 3, 17, 1000 + i); /* the kernel's rule */
        if (a[i] != e) fail_msg("element %zu: %#x, the rule says %#x", i, a[i], e);
    }
    assert_true(differ > 1000 && !step);
    free(x), free(a), free(b);
}

/* |b - a| <= tol * max|a| over n values; returns the worst ratio to that bound */
static double within(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double scale = 1e-30, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
    for (size_t i = 0; i < n; i++) {
        const double r = fabs((double)b[i] - a[i]) / (tol * scale);
        if (!(r <= 1.0)) fail_msg("%s: [%zu] bf16 %.7g, fp32 %.7g (tolerance %g x %g)", what, i,
                                  (double)b[i], (double)a[i], tol, scale);
        worst = fmax(worst, r);
    }
    return worst;
}

/* ---- one layer at a time ---- */

typedef lk_layer *(*make_fn)(void);
static lk_layer *make_linear(void) { return lk_linear(24, 16, 1); }
static lk_layer *make_conv(void) { return lk_conv2d(3, 8, 3, 1, 1, 1); }
static lk_layer *make_conv_blocked(void) { return lk_conv2d(16, 16, 3, 2, 1, 0); } /* >= 16 channels */
static lk_layer *make_attention(void) { return lk_attention(32, 4); }
static lk_layer *make_lstm(void) { return lk_rnn(LK_RNN_LSTM, 12, 16, 2, 1); }
static lk_layer *make_gru(void) { return lk_rnn(LK_RNN_GRU, 12, 16, 1, 0); }
static lk_layer *make_layernorm(void) { return lk_layernorm(32, 1e-5f); }
static lk_layer *make_gelu(void) { return lk_activation(LK_ACT_GELU, 0); }
static lk_layer *make_tanh(void) { return lk_activation(LK_ACT_TANH, 0); } /* backward reads y */
static lk_layer *make_batchnorm(void) { return lk_batchnorm(8, 1e-5f, 0.1f); }
static lk_layer *make_maxpool(void) { return lk_maxpool2d(2, 2, 0); }

typedef struct {
    const char *name;
    make_fn make;
    lk_shape in;
    int products; /* 0: computes in float32 either way (bitwise the same) */
} layer_case;

/* [linear with identity weights, the layer, identity] in the precision. The input is
 * bf16-exact, so the front product passes it on unchanged in either precision (stored in
 * bf16 where the layer reads it so), and the front layer's parameters make backward compute
 * the layer's input gradient (into dbuf[1]); the identity behind reads the layer's output as
 * it is stored (bf16 where the layer writes it so) and widens it into the model's output. */
static lk_model *one_layer(const layer_case *lc, lk_dtype t, int batch)
{
    lk_model *m;
    const int n = lc->in.d[lc->in.ndim - 1];
    TU_OK(lk_model_create(&m, tu_cpu(), &lc->in));
    TU_OK(lk_model_add(m, lk_linear(n, n, 1)));
    TU_OK(lk_model_add(m, lc->make()));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_IDENTITY, 0)));
    TU_OK(lk_model_set_precision(m, t, NULL));
    TU_OK(lk_model_build(m, batch));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 5));
    lk_layer *front = m->layers[0];
    for (int i = 0; i < n * n; i++) front->params[0].w[i] = i % (n + 1) ? 0.0f : 1.0f;
    for (int i = 0; i < n; i++) front->params[1].w[i] = 0.0f;
    lk_model_params_changed(m);
    return m;
}

static void check_layer(const layer_case *lc)
{
    const int batch = 4;
    lk_model *ms[2] = {one_layer(lc, LK_F32, batch), one_layer(lc, LK_BF16, batch)};
    const lk_layer *la = ms[0]->layers[1], *lb = ms[1]->layers[1];
    /* the layer's input and output are stored in bf16 where it takes them so */
    assert_int_equal(lb->in_type, lb->vt->reads_bf16 ? LK_BF16 : LK_F32);
    assert_int_equal(lb->out_type, lb->vt->writes_bf16 ? LK_BF16 : LK_F32);
    assert_int_equal(la->in_type, LK_F32);
    assert_int_equal(la->out_type, LK_F32);
    /* products, or values rounded into bf16 storage: within tolerance; else bitwise */
    const int tol = lc->products || lb->out_type == LK_BF16;
    const size_t nin = lk_shape_numel(&lc->in) * batch;
    const size_t nout = lk_shape_numel(&la->out) * batch;
    lk_tensor out[2];
    for (int k = 0; k < 2; k++) {
        float *x = lk_model_input(ms[k]);
        for (size_t i = 0; i < nin; i++)
            x[i] = lk_bf16_to_f32(lk_bf16_rne(2.0f * lk_rng_uniform(1, LK_RNG_TEST, 1, i) - 1.0f));
        TU_OK(lk_model_forward(ms[k], batch, 1, 0, &out[k]));
    }
    char what[96];
    double w;
    snprintf(what, sizeof what, "%s forward", lc->name);
    if (tol) w = within(what, out[0].data, out[1].data, nout, 1e-2);
    else assert_memory_equal(out[0].data, out[1].data, nout * sizeof(float)), w = 0;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < nout; i++) ms[k]->dout[i] = 0.2f * lk_rng_uniform(1, LK_RNG_TEST, 2, i) - 0.1f;
        memset(ms[k]->dbuf[1], 0xff, nin * sizeof(float)); /* NaN unless backward writes it */
        if (ms[k]->workspace) memset(ms[k]->workspace, 0xff, ms[k]->ws_bytes); /* backward keeps nothing there */
        TU_OK(lk_model_backward_ex(ms[k], batch, 0, LK_GRADS_REPLACE));
    }
    snprintf(what, sizeof what, "%s input gradient", lc->name);
    if (tol) w = fmax(w, within(what, ms[0]->dbuf[1], ms[1]->dbuf[1], nin, 1e-2));
    else assert_memory_equal(ms[0]->dbuf[1], ms[1]->dbuf[1], nin * sizeof(float));
    for (size_t i = 0; i < nin; i++)
        if (!isfinite(ms[0]->dbuf[1][i])) fail_msg("%s: input gradient [%zu] not written", lc->name, i);
    for (int j = 0; j < la->nparams; j++) {
        if (!la->params[j].g) continue;
        const size_t n = lk_shape_numel(&la->params[j].shape);
        snprintf(what, sizeof what, "%s gradient %s", lc->name, la->params[j].name);
        if (tol) w = fmax(w, within(what, la->params[j].g, lb->params[j].g, n, 1e-2));
        else assert_memory_equal(la->params[j].g, lb->params[j].g, n * sizeof(float));
    }
    printf("%-14s %s%s\n", lc->name,
           tol ? "forward, input and parameter gradients within 1e-2 of scale" : "bitwise fp32's",
           lb->in_type == LK_BF16 || lb->out_type == LK_BF16 ? " (bf16 activations)" : "");
    if (tol) printf("%-14s (worst: %.2f of the tolerance)\n", "", w);
    lk_model_destroy(ms[0]);
    lk_model_destroy(ms[1]);
}

/* The tied head reads the embedding's working copy and a layer norm's output (bf16 in a
 * bf16 model): logits and the embedding's gradient. T x batch x V above 2^24: a bf16
 * backward takes a float32 gradient in two chunks of rows; with bf16 logits (out16: the
 * caller takes them so) forward writes them 2^22 values at a time and backward reads a bf16
 * gradient (the same values rounded). */
static void check_tied_head(int T, int V, int C, int batch, int out16)
{
    lk_model *ms[2];
    lk_tensor out[2];
    const lk_shape in = {1, {T}};
    for (int k = 0; k < 2; k++) {
        TU_OK(lk_model_create(&ms[k], tu_cpu(), &in));
        lk_layer *e = lk_embedding(V, C, T, 0);
        TU_OK(lk_model_add(ms[k], e));
        TU_OK(lk_model_add(ms[k], lk_layernorm(C, 1e-5f)));
        TU_OK(lk_model_add(ms[k], lk_tied_head(e)));
        TU_OK(lk_model_set_precision(ms[k], k ? LK_BF16 : LK_F32, NULL));
        if (out16) TU_OK(lk_model_set_output_bf16(ms[k])); /* (no effect in float32) */
        TU_OK(lk_model_build(ms[k], batch));
        assert_int_equal(ms[k]->layers[2]->in_type, k ? LK_BF16 : LK_F32);
        assert_int_equal(lk_model_act_type(ms[k], 3), k && out16 ? LK_BF16 : LK_F32);
        TU_OK(lk_model_init(ms[k], LK_INIT_DEFAULT, 5));
        float *x = lk_model_input(ms[k]);
        for (int i = 0; i < T * batch; i++) x[i] = (float)((i * 7) % V);
        TU_OK(lk_model_forward(ms[k], batch, 1, 0, &out[k]));
    }
    const size_t nout = (size_t)T * batch * V;
    float *logits = malloc(nout * sizeof *logits);
    for (size_t i = 0; i < nout; i++)
        logits[i] = out16 ? lk_bf16_to_f32(((const uint16_t *)out[1].data)[i]) : out[1].data[i];
    double w = within("tied head forward", out[0].data, logits, nout, 1e-2);
    free(logits);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < nout; i++) {
            const float g = 0.2f * lk_rng_uniform(1, LK_RNG_TEST, 2, i) - 0.1f;
            if (lk_model_act_type(ms[k], 3) == LK_BF16) ((uint16_t *)ms[k]->dout)[i] = lk_bf16_rne(g);
            else ms[k]->dout[i] = g;
        }
    for (int k = 0; k < 2; k++) TU_OK(lk_model_backward_ex(ms[k], batch, 0, LK_GRADS_REPLACE));
    w = fmax(w, within("tied head: embedding gradient", ms[0]->layers[0]->params[0].g,
                       ms[1]->layers[0]->params[0].g, (size_t)V * C, 1e-2));
    printf("%-14s forward and the embedding's gradient within 1e-2 of scale (worst %.2f; %d x %d logits%s)\n",
           "tied head", w, T * batch, V, out16 ? " in bf16" : "");
    lk_model_destroy(ms[0]);
    lk_model_destroy(ms[1]);
}

static void test_layers(void **state)
{
    (void)state;
    const layer_case cases[] = {
        {"linear", make_linear, {1, {24}}, 1},
        {"conv2d", make_conv, {3, {3, 10, 10}}, 1},
        {"conv2d 16ch s2", make_conv_blocked, {3, {16, 8, 8}}, 1},
        {"attention", make_attention, {2, {16, 32}}, 1},
        {"lstm x2", make_lstm, {2, {10, 12}}, 1},
        {"gru", make_gru, {2, {10, 12}}, 1},
        {"layernorm", make_layernorm, {2, {16, 32}}, 0},
        {"gelu", make_gelu, {1, {40}}, 0},
        {"tanh", make_tanh, {1, {40}}, 0},
        {"batchnorm", make_batchnorm, {3, {8, 5, 5}}, 0},
        {"maxpool", make_maxpool, {3, {2, 6, 6}}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_layer(&cases[i]);
    check_tied_head(16, 50, 32, 3, 0);
    check_tied_head(1050, 4100, 16, 4, 0);
    check_tied_head(16, 50, 32, 3, 1);
    check_tied_head(1050, 4100, 16, 4, 1);
}

/* ---- whole models ---- */

typedef struct {
    tu_zoo_spec z;
    double fwd_tol;  /* every layer's output */
    double grad_tol; /* gradients after every layer's rounding (0: forward only) */
    int min_bf16;    /* activations the bf16 model stores in bf16, at least */
} spec;

static lk_model *build(const spec *sp, lk_dtype t) { return tu_zoo_model(&sp->z, LK_RECOMPUTE_NONE, t, LK_BUILD_FULL); }

static int tokens(const spec *sp) { return !strncmp(sp->z.name, "gpt", 3); }

/* The gradient of cross-entropy over each row's classes against made-up labels, at the
 * fp32 model's output, into dout (both models' backward passes start from it). */
static void loss_grad(const spec *sp, lk_model *m, const lk_tensor *out, float *dout)
{
    const size_t n = lk_tensor_numel(out);
    float *o = malloc(n * sizeof *o);
    memcpy(o, out->data, n * sizeof *o);
    const int valid = lk_model_out_valid(m);
    const size_t ld = tokens(sp) ? (size_t)m->layers[m->nlayers - 1]->out.d[1] : n / (size_t)sp->z.batch;
    const size_t rows = n / ld;
    for (size_t r = 0; r < rows; r++) {
        const float *z = o + r * ld;
        float mx = z[0], sum = 0;
        for (int c = 0; c < valid; c++) mx = fmaxf(mx, z[c]);
        for (int c = 0; c < valid; c++) sum += expf(z[c] - mx);
        for (size_t c = 0; c < ld; c++)
            dout[r * ld + c] = (int)c < valid ? (expf(z[c] - mx) / sum - (c == (r * 7) % (size_t)valid)) / (float)rows
                                              : 0.0f;
    }
    free(o);
}

/* Every layer's output within 1e-2 of its scale after every earlier layer's rounding; the
 * gradients of a cross-entropy within grad_tol. (Convolutional nets' first weight
 * gradients sum thousands of mostly cancelling terms, and a bias before batch norm has a
 * gradient that is zero but for rounding: their whole-model gradients are held by the
 * layer cases above and by training to the stated accuracy, tests/e2e/precision.sh.) */
static void check_model(const spec *sp)
{
    lk_model *a = build(sp, LK_F32), *b = build(sp, LK_BF16);
    assert_int_equal(a->nparams, b->nparams);
    assert_null(a->params16);
    /* a working copy but where the products are emulated (they round the masters as read) */
    assert_int_equal(b->params16 != NULL, !tu_cpu()->bf16_emulated);
    assert_memory_equal(a->params, b->params, a->nparams * sizeof(float)); /* the same masters */
    const size_t in = lk_shape_numel(&sp->z.sample) * (size_t)sp->z.batch;
    lk_model *ms[2] = {a, b};
    lk_tensor out[2];
    for (int k = 0; k < 2; k++) {
        float *x = lk_model_input(ms[k]);
        for (size_t i = 0; i < in; i++)
            x[i] = tokens(sp) ? (float)((i * 7) % (size_t)sp->z.classes) : (float)((i * 37) % 101) / 101.0f;
        TU_OK(lk_model_forward(ms[k], sp->z.batch, 1, 0, &out[k]));
    }
    /* the working copy is the rounded master once forward ran (refreshed after init) */
    for (size_t i = 0; b->params16 && i < b->nparams; i++)
        if (b->params16[i] != lk_bf16_rne(b->params[i])) fail_msg("%s: working copy [%zu] stale", sp->z.name, i);
    double worst = 0;
    char what[96];
    int stored16 = 0;
    for (int l = 0; l < a->nlayers; l++) {
        if (a->layers[l]->vt->alias) continue;
        const size_t n = lk_shape_numel(&a->layers[l]->out) * (size_t)sp->z.batch;
        snprintf(what, sizeof what, "%s layer %d (%s) output", sp->z.name, l, a->layers[l]->vt->type);
        assert_int_equal(lk_model_act_type(a, l + 1), LK_F32);
        const float *yb = b->act[l + 1];
        float *wide = NULL;
        if (lk_model_act_type(b, l + 1) == LK_BF16) { /* stored in bf16: widened to compare */
            stored16++;
            wide = malloc(n * sizeof *wide);
            for (size_t i = 0; i < n; i++) wide[i] = lk_bf16_to_f32(((const uint16_t *)yb)[i]);
            yb = wide;
        }
        worst = fmax(worst, within(what, a->act[l + 1], yb, n, sp->fwd_tol));
        free(wide);
    }
    assert_int_equal(lk_model_act_type(b, b->nlayers), LK_F32); /* the output the loss reads */
    assert_true(stored16 >= sp->min_bf16);
    double gworst = 0;
    if (sp->grad_tol > 0) {
        loss_grad(sp, a, &out[0], b->dout);
        loss_grad(sp, a, &out[0], a->dout); /* (a's output may live where its dout goes) */
        for (int k = 0; k < 2; k++) TU_OK(lk_model_backward_ex(ms[k], sp->z.batch, 0, LK_GRADS_REPLACE));
        const int np = lk_model_param_count(a);
        for (int i = 0; i < np; i++) {
            char name[64];
            const lk_param *pa = lk_model_param(a, i, name, sizeof name), *pb = lk_model_param(b, i, NULL, 0);
            if (!pa->g) continue; /* a buffer */
            snprintf(what, sizeof what, "%s gradient %s", sp->z.name, name);
            gworst = fmax(gworst, within(what, pa->g, pb->g, lk_shape_numel(&pa->shape), sp->grad_tol));
        }
    }
    printf("%-12s %d activations in bf16; layer outputs within %.2f of %g", sp->z.name, stored16, worst,
           sp->fwd_tol);
    if (sp->grad_tol > 0) printf(", gradients within %.2f of %g", gworst, sp->grad_tol);
    printf("\n");
    lk_model_destroy(a);
    lk_model_destroy(b);
}

static void test_models(void **state)
{
    (void)state;
    const lk_shape img = {3, {1, 28, 28}}, seq = {2, {28, 28}};
    const spec specs[] = {
        {{"mlp", img, 10, {0}, 8}, 1e-2, 1e-2, 2},
        {{"cnn", img, 10, {0}, 4}, 1e-2, 0, 2},
        /* batch statistics of 16 samples: a small spread divides the rounding */
        {{"cnn-bn", img, 10, {0}, 16}, 5e-2, 0, 1},
        {{"lstm", seq, 10, {0}, 4}, 1e-2, 1e-2, 0},
        {{"gru", seq, 10, {0}, 4}, 1e-2, 1e-2, 0},
        {{"gpt", {1, {32}}, 61, {3, 2, 32, 32, LK_GELU_DEFAULT}, 3}, 1e-2, 3e-2, 19},
        {{"autoencoder", img, 10, {0}, 4}, 1e-2, 0, 7},
        {{"vae", img, 10, {0}, 4}, 1e-2, 0, 4},
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) check_model(&specs[i]);
}

/* The optimizer's step: float32 masters bitwise those of a float32 step, the copy their
 * rounding (whole, or over two ranges: the keys are global offsets), every kind. */
static void test_optimizer_step(void **state)
{
    (void)state;
    lk_device *d = tu_cpu();
    const size_t n = 5000, cut = 1234;
    float *w0 = malloc(n * sizeof(float)), *w1 = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    uint16_t *c1 = malloc(n * 2), *c2 = malloc(n * 2);
    const lk_optim_kind kinds[] = {LK_OPT_SGD, LK_OPT_MOMENTUM, LK_OPT_ADAMW, LK_OPT_RMSPROP, LK_OPT_ADAGRAD};
    for (int st = 0; st < 2; st++)
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
            lk_optim_config cfg = lk_optim_defaults(kinds[k]);
            cfg.weight_decay = 0.01f;
            lk_optim *f, *h, *p;
            TU_OK(lk_optim_create(&f, d, &cfg, n));
            TU_OK(lk_optim_create(&h, d, &cfg, n));
            TU_OK(lk_optim_create(&p, d, &cfg, n));
            const lk_round r = {st, 99, 0, 0, NULL};
            lk_optim_set_working(h, c1, &r);
            lk_optim_set_working(p, c2, &r);
            float *w2 = malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) w0[i] = w1[i] = w2[i] = (float)cos((double)i) * 0.3f;
            for (int s = 0; s < 3; s++) {
                for (size_t i = 0; i < n; i++) g[i] = (float)sin((double)(i * 3 + (size_t)s)) * 0.1f;
                TU_OK(lk_optim_step(f, w0, g, 1.0f));
                TU_OK(lk_optim_step(h, w1, g, 1.0f));
                TU_OK(lk_optim_step_part(p, w2, g, 1.0f, 0, cut, 0)); /* two ranges, one step */
                TU_OK(lk_optim_step_part(p, w2, g, 1.0f, cut, n, 1));
                assert_memory_equal(w0, w1, n * sizeof(float));
                assert_memory_equal(w0, w2, n * sizeof(float));
                assert_memory_equal(c1, c2, n * 2);
                for (size_t i = 0; i < n; i++) {
                    const uint16_t e = lk_bf16_round(w1[i], st, 99, (uint64_t)s + 1, i);
                    if (c1[i] != e) fail_msg("%s step %d: copy [%zu] %#x, rounded master %#x",
                                             lk_optim_name(kinds[k]), s + 1, i, c1[i], e);
                }
            }
            free(w2);
            lk_optim_destroy(f), lk_optim_destroy(h), lk_optim_destroy(p);
        }
    free(w0), free(w1), free(g), free(c1), free(c2);
}

/* A bf16 gpt whose caller takes bf16 logits (lk_model_set_output_bf16, as the trainer's
 * cross-entropy does): the output is bf16, the cross-entropy writes its gradient over it,
 * and the loss and the gradients are those of the same model with float32 logits within
 * bf16 tolerance. */
static void test_bf16_logits(void **state)
{
    (void)state;
    const tu_zoo_spec z = {"gpt", {1, {32}}, 61, {2, 2, 32, 32, LK_GELU_DEFAULT}, 3};
    lk_model *ms[2];
    float loss[2];
    int32_t labels[32 * 3];
    for (int i = 0; i < 32 * 3; i++) labels[i] = (i * 5) % 61;
    for (int k = 0; k < 2; k++) {
        TU_OK(lk_model_create(&ms[k], tu_cpu(), &z.sample));
        TU_OK(lk_zoo_build(z.name, ms[k], z.classes, &z.arch));
        TU_OK(lk_model_set_precision(ms[k], LK_BF16, NULL));
        if (k) TU_OK(lk_model_set_output_bf16(ms[k]));
        TU_OK(lk_model_build(ms[k], z.batch));
        TU_OK(lk_model_init(ms[k], LK_INIT_DEFAULT, 11));
        lk_model *m = ms[k];
        const int n = m->nlayers;
        assert_int_equal(lk_model_act_type(m, n), k ? LK_BF16 : LK_F32);
        float *x = lk_model_input(m);
        for (int i = 0; i < 32 * 3; i++) x[i] = (float)((i * 7) % 61);
        lk_tensor out;
        TU_OK(lk_model_forward(m, z.batch, 1, 0, &out));
        assert_int_equal(out.type, lk_model_act_type(m, n));
        const int ld = m->layers[n - 1]->out.d[1];
        lk_loss_args la = {out.data, labels, NULL, 32 * 3, lk_model_out_valid(m), ld, out.type};
        TU_OK(lk_loss(tu_cpu(), LK_LOSS_XENT, &la, &loss[k], m->dout, 1.0f));
        TU_OK(lk_model_backward_ex(m, z.batch, 0, LK_GRADS_REPLACE));
    }
    if (!(fabs(loss[1] - loss[0]) <= 1e-3 * fabs(loss[0]))) fail_msg("loss %.7g with bf16 logits, %.7g", loss[1], loss[0]);
    const double w = within("gradients with bf16 logits", ms[0]->grads, ms[1]->grads, ms[0]->nparams, 1e-2);
    printf("bf16 logits: loss %.6f (float32 logits %.6f), gradients within %.2f of 1e-2\n", loss[1], loss[0], w);
    lk_model_destroy(ms[0]);
    lk_model_destroy(ms[1]);
}

static void test_set_precision(void **state)
{
    (void)state;
    lk_dtype t;
    TU_OK(lk_precision_parse("bf16", &t));
    assert_int_equal(t, LK_BF16);
    TU_FAILS_WITH(lk_precision_parse("fp16", &t), LK_ERR_ARG, "fp32, bf16");
    const spec mlp = {{"mlp", {3, {1, 28, 28}}, 10, {0}, 2}, 0, 0, 0};
    lk_model *m = build(&mlp, LK_BF16);
    TU_FAILS_WITH(lk_model_set_precision(m, LK_F32, NULL), LK_ERR_STATE, "before");
    for (int l = 0; l < m->nlayers; l++) assert_int_equal(m->layers[l]->compute, LK_BF16);
    /* a load or broadcast writes the masters: the next forward refreshes the copy */
    m->params[0] = 0.123456f;
    lk_model_params_changed(m);
    lk_tensor out;
    TU_OK(lk_model_forward(m, 2, 0, 0, &out));
    if (m->params16) assert_int_equal(m->params16[0], lk_bf16_rne(0.123456f));
    lk_model_destroy(m);
    /* stochastic rounding keeps a copy everywhere: its draws are not the masters' to redo */
    const lk_round sr = {1, 7, 0, 0, NULL};
    TU_OK(lk_model_create(&m, tu_cpu(), &mlp.z.sample));
    TU_OK(lk_zoo_build("mlp", m, 10, &mlp.z.arch));
    TU_OK(lk_model_set_precision(m, LK_BF16, &sr));
    TU_OK(lk_model_build(m, 2));
    assert_non_null(m->params16);
    assert_true(lk_model_keeps_working_copy(m));
    lk_model_destroy(m);
    /* the GAN: the generator's hidden activations in bf16, but the discriminator's input,
     * which the trainer fills with real images, float32 */
    const spec gan = {{"gan", {3, {1, 28, 28}}, 10, {0}, 2}, 0, 0, 0};
    m = build(&gan, LK_BF16);
    assert_int_equal(lk_model_act_type(m, 1), LK_BF16);
    assert_int_equal(lk_model_act_type(m, LK_GAN_G_LAYERS), LK_F32);
    assert_int_equal(lk_model_act_type(m, LK_GAN_G_LAYERS + 1), LK_BF16);
    lk_model_destroy(m);
    /* as the trainer sets it: a gpt's logits in bf16 where the device's bf16 products are
     * its own (with AMX here; test_precision_emulated: float32) */
    const tu_zoo_spec g = {"gpt", {1, {32}}, 61, {1, 2, 32, 32, LK_GELU_DEFAULT}, 2};
    TU_OK(lk_model_create(&m, tu_cpu(), &g.sample));
    TU_OK(lk_zoo_build(g.name, m, g.classes, &g.arch));
    TU_OK(lk_zoo_set_precision(m, lk_spec_entry(tu_builtin("gpt")), LK_BF16, NULL));
    TU_OK(lk_model_build_ex(m, g.batch, LK_BUILD_DRY));
    assert_int_equal(lk_model_act_type(m, m->nlayers), tu_cpu()->bf16_emulated ? LK_F32 : LK_BF16);
    printf("bf16 products %s: the trainer's gpt logits in %s\n", tu_cpu()->bf16_emulated ? "emulated" : "native",
           tu_cpu()->bf16_emulated ? "float32" : "bf16");
    lk_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_nearest_even),
        cmocka_unit_test(test_round_stochastic),
        cmocka_unit_test(test_layers),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_optimizer_step),
        cmocka_unit_test(test_bf16_logits),
        cmocka_unit_test(test_set_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
