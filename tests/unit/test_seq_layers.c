/* test_seq_layers.c - the sequence and transformer layers: LSTM, GRU, layer norm,
 * embeddings and the tied head, causal attention and residual blocks. Forward against
 * direct double-precision implementations of PyTorch's definitions, backward (input and
 * every parameter) against central finite differences, the gradient modes, the ops they
 * are built on (axis swap, vectorised exp/tanh), reshape, and constructor errors. */
#include "gradcheck.h"

#include "core/fastmath.h"
#include "core/rng.h"

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* One layer of PyTorch's LSTM (gates i, f, g, o) or GRU (r, z, n) over x [B][T][I]
 * (batch_first), all in double; y [B][T][H]. */
static void rnn_ref(lk_rnn_cell cell, int B, int T, int I, int H, const double *x, const float *wih,
                    const float *whh, const float *bih, const float *bhh, double *y)
{
    const int G = cell == LK_RNN_LSTM ? 4 : 3;
    double *h = calloc((size_t)H, sizeof *h), *c = calloc((size_t)H, sizeof *c);
    double *gx = malloc((size_t)G * H * sizeof *gx), *gh = malloc((size_t)G * H * sizeof *gh);
    for (int b = 0; b < B; b++) {
        memset(h, 0, (size_t)H * sizeof *h);
        memset(c, 0, (size_t)H * sizeof *c);
        for (int t = 0; t < T; t++) {
            const double *xt = x + ((size_t)b * T + t) * I;
            for (int r = 0; r < G * H; r++) {
                double sx = bih[r], sh = bhh[r];
                for (int i = 0; i < I; i++) sx += wih[(size_t)r * I + i] * xt[i];
                for (int j = 0; j < H; j++) sh += whh[(size_t)r * H + j] * h[j];
                gx[r] = sx;
                gh[r] = sh;
            }
            double *yt = y + ((size_t)b * T + t) * H;
            for (int j = 0; j < H; j++) {
                if (cell == LK_RNN_LSTM) {
                    double ig = sig(gx[j] + gh[j]), fg = sig(gx[H + j] + gh[H + j]);
                    double gg = tanh(gx[2 * H + j] + gh[2 * H + j]), og = sig(gx[3 * H + j] + gh[3 * H + j]);
                    c[j] = fg * c[j] + ig * gg;
                    yt[j] = og * tanh(c[j]);
                } else {
                    double rg = sig(gx[j] + gh[j]), zg = sig(gx[H + j] + gh[H + j]);
                    double ng = tanh(gx[2 * H + j] + rg * gh[2 * H + j]);
                    yt[j] = (1.0 - zg) * ng + zg * h[j];
                }
            }
            for (int j = 0; j < H; j++) h[j] = yt[j];
        }
    }
    free(h), free(c), free(gx), free(gh);
}

typedef struct {
    lk_rnn_cell cell;
    int I, H, T, layers, sequences, batch;
} rnn_cfg;

static void check_rnn(const rnn_cfg *c)
{
    int in[2] = {c->T, c->I};
    gc_layer g;
    gc_layer_open(&g, 2, in, lk_rnn(c->cell, c->I, c->H, c->layers, c->sequences), c->batch);
    assert_int_equal(g.l->nparams, 4 * c->layers);
    char top[LK_PARAM_NAME];
    snprintf(top, sizeof top, "weight_hh_l%d", c->layers - 1);
    assert_string_equal(g.l->params[4 * (c->layers - 1) + 1].name, top);
    if (c->sequences) assert_true(g.l->out.ndim == 2 && g.l->out.d[0] == c->T && g.l->out.d[1] == c->H);
    else assert_true(g.l->out.ndim == 1 && g.l->out.d[0] == c->H);
    TU_OK(gc_forward(&g));

    /* the reference, layer by layer */
    const int B = c->batch, T = c->T, H = c->H;
    size_t seq = (size_t)B * T * LK_MAX(c->I, H);
    double *cur = malloc(seq * sizeof *cur), *next = malloc(seq * sizeof *next);
    for (size_t i = 0; i < g.nx; i++) cur[i] = g.x[i];
    for (int k = 0; k < c->layers; k++) {
        const lk_param *p = &g.l->params[4 * k];
        rnn_ref(c->cell, B, T, k ? H : c->I, H, cur, p[0].w, p[1].w, p[2].w, p[3].w, next);
        double *t = cur;
        cur = next, next = t;
    }
    double *want = malloc(g.ny * sizeof *want);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int j = 0; j < H; j++) {
                double v = cur[((size_t)b * T + t) * H + j];
                if (c->sequences) want[((size_t)b * T + t) * H + j] = v;
                else if (t == T - 1) want[(size_t)b * H + j] = v;
            }
    gc_expect_close(c->cell == LK_RNN_LSTM ? "lstm y" : "gru y", g.y, want, g.ny, 1e-5);
    free(cur), free(next), free(want);

    char name[48];
    snprintf(name, sizeof name, "%s(L%d,T%d%s)", c->cell == LK_RNN_LSTM ? "lstm" : "gru",
             c->layers, c->T, c->sequences ? ",seq" : "");
    assert_int_equal(gc_layer_check(&g, name, GC_ALL, GC_EPS), 0);
    gc_layer_check_grad_modes_and_close(&g, NAN);
}

static void test_rnn(void **state)
{
    (void)state;
    static const rnn_cfg cfgs[] = {
        {LK_RNN_LSTM, 3, 4, 5, 1, 0, 2}, /* last step only */
        {LK_RNN_LSTM, 3, 4, 4, 2, 1, 3}, /* stacked, every step */
        {LK_RNN_LSTM, 2, 5, 3, 2, 0, 2}, /* hidden wider than the input */
        {LK_RNN_LSTM, 2, 3, 1, 1, 1, 1}, /* one step */
        {LK_RNN_GRU, 3, 4, 5, 1, 0, 2},
        {LK_RNN_GRU, 3, 4, 4, 2, 1, 3},
        {LK_RNN_GRU, 2, 5, 3, 3, 0, 2},
        {LK_RNN_GRU, 2, 3, 1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check_rnn(&cfgs[i]);
}

/* The recurrent gradient is what BPTT adds: a long sequence whose loss reads only
 * the last step must still move the first step's input. */
static void test_rnn_long_dependency(void **state)
{
    (void)state;
    int in[2] = {12, 2};
    for (int cell = 0; cell < 2; cell++) {
        gc_layer g;
        gc_layer_open(&g, 2, in, lk_rnn((lk_rnn_cell)cell, 2, 3, 1, 0), 1);
        TU_OK(gc_forward(&g));
        TU_OK(gc_backward(&g));
        double num = gc_numeric(gc_layer_objective, &g, &g.x[0], GC_EPS);
        assert_true(fabs(g.dx[0]) > 1e-6);
        gc_report r = {0, 0, 0.0};
        gc_compare(&r, "dx[t=0]", 0, num, g.dx[0]);
        assert_int_equal(r.failed, 0);
        gc_layer_close(&g);
    }
}

/* The CPU's vectorisable exp/sigmoid/tanh against the C library in double, over the
 * whole range a network feeds them, the extremes included. */
static void test_fastmath(void **state)
{
    (void)state;
    double worst_e = 0, worst_s = 0, worst_t = 0, worst_erf = 0;
    for (int i = -200000; i <= 200000; i++) {
        float x = (float)i * 5e-4f; /* [-100, 100] */
        if (x <= 0.0f && x >= -87.0f)
            worst_e = fmax(worst_e, fabs(lk_expneg(x) - exp((double)x)) / exp((double)x));
        double s = 1.0 / (1.0 + exp(-(double)x));
        worst_s = fmax(worst_s, fabs(lk_sigmf(x) - s) / fmax(s, 1e-30));
        double t = tanh((double)x);
        worst_t = fmax(worst_t, fabs(lk_tanhf(x) - t) / fmax(fabs(t), 1e-30));
        worst_erf = fmax(worst_erf, fabs(lk_erff(x) - erf((double)x))); /* absolute */
    }
    print_message("  fastmath: worst relative error exp %.2g, sigmoid %.2g, tanh %.2g; "
                  "absolute error erf %.2g\n", worst_e, worst_s, worst_t, worst_erf);
    assert_true(worst_e < 1e-6 && worst_t < 1e-6);
    assert_true(worst_erf < 5e-7);
    assert_true(worst_s < 1e-6); /* relative down to 1e-30, absolute below */
    assert_true(lk_expneg(-1000.0f) > 0.0f && lk_expneg(-1000.0f) < 1e-37f);
    assert_true(lk_sigmf(-1000.0f) >= 0.0f && lk_sigmf(1000.0f) == 1.0f);
    assert_true(lk_tanhf(1000.0f) == 1.0f && lk_tanhf(-1000.0f) == -1.0f && lk_tanhf(0.0f) == 0.0f);
    assert_true(isnan(lk_tanhf(NAN)) && isnan(lk_sigmf(NAN)));
}

static void test_transpose(void **state)
{
    (void)state;
    const int outer = 2, a = 3, b = 4, inner = 5;
    size_t n = (size_t)outer * a * b * inner;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    for (size_t i = 0; i < n; i++) x[i] = (float)i;
    TU_OK(lk_transpose(tu_cpu(), x, y, outer, a, b, inner));
    for (int o = 0; o < outer; o++)
        for (int i = 0; i < a; i++)
            for (int j = 0; j < b; j++)
                for (int k = 0; k < inner; k++)
                    assert_true(y[(((size_t)o * b + j) * a + i) * inner + k] ==
                                x[(((size_t)o * a + i) * b + j) * inner + k]);
    TU_OK(lk_transpose(tu_cpu(), y, z, outer, b, a, inner)); /* and back */
    assert_memory_equal(x, z, n * sizeof *x);
    assert_int_equal(lk_transpose(tu_cpu(), x, x, 1, 2, 2, 1), LK_ERR_ARG); /* in place */
    free(x), free(y), free(z);
}

/* reshape is an alias like flatten: [1, 4, 3] images read as 4 steps of 3 by an LSTM,
 * whose gradients must flow back through it into a linear layer before it. */
static void test_reshape_in_model(void **state)
{
    (void)state;
    int in = 6;
    lk_model *m;
    lk_shape s = lk_shape_make(1, &in);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    TU_OK(lk_model_add(m, lk_linear(6, 12, 1)));
    TU_OK(lk_model_add(m, lk_reshape(3, (int[]){1, 4, 3})));
    TU_OK(lk_model_add(m, lk_reshape(2, (int[]){4, 3})));
    TU_OK(lk_model_add(m, lk_rnn(LK_RNN_LSTM, 3, 4, 1, 0)));
    TU_OK(lk_model_add(m, lk_linear(4, 2, 1)));
    assert_int_equal(lk_model_add(m, lk_reshape(2, (int[]){3, 3})), LK_ERR_SHAPE);
    assert_non_null(strstr(lk_error_message(), "cannot view [2] as [3, 3]"));
    TU_OK(lk_model_build(m, 3));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 4));
    assert_ptr_equal(m->act[2], m->act[1]);
    assert_ptr_equal(m->act[3], m->act[1]);
    assert_int_equal(gc_model_check(m, "linear-reshape-lstm", 3, 1, 0, GC_EPS), 0);
    lk_model_destroy(m);
}

/* PyTorch's default init of recurrent layers: U(+-1/sqrt(hidden)) for every tensor,
 * biases included, whatever the input width. */
static void test_rnn_init(void **state)
{
    (void)state;
    int in[2] = {3, 50};
    gc_layer g;
    gc_layer_open(&g, 2, in, lk_rnn(LK_RNN_GRU, 50, 16, 2, 0), 1);
    for (int j = 0; j < g.l->nparams; j++) {
        const lk_param *p = &g.l->params[j];
        float mx = 0.0f;
        for (size_t e = 0; e < lk_shape_numel(&p->shape); e++) mx = fmaxf(mx, fabsf(p->w[e]));
        assert_true(mx <= 0.25f);  /* 1/sqrt(16) */
        assert_true(mx > 0.2f);    /* and not 1/sqrt(50) = 0.14 */
    }
    gc_layer_close(&g);
}

/* ---------------- layer norm ---------------- */

static void test_layernorm(void **state)
{
    (void)state;
    const int shapes[][3] = {{1, 7, 0}, {2, 3, 5}}; /* ndim, dims */
    for (int t = 0; t < 2; t++) {
        int ndim = shapes[t][0], in[2] = {shapes[t][1], shapes[t][2]};
        int dim = in[ndim - 1];
        gc_layer g;
        gc_layer_open(&g, ndim, in, lk_layernorm(dim, 1e-5f), 3);
        for (int j = 0; j < dim; j++) { /* not the identity affine map */
            g.l->params[0].w[j] = 0.5f + 0.1f * (float)j;
            g.l->params[1].w[j] = 0.2f - 0.05f * (float)j;
        }
        TU_OK(gc_forward(&g));
        size_t rows = g.nx / (size_t)dim;
        double *want = malloc(g.ny * sizeof *want);
        for (size_t r = 0; r < rows; r++) {
            const float *x = g.x + r * dim;
            double m = 0, v = 0;
            for (int j = 0; j < dim; j++) m += x[j];
            m /= dim;
            for (int j = 0; j < dim; j++) v += (x[j] - m) * (x[j] - m);
            v /= dim;
            for (int j = 0; j < dim; j++)
                want[r * dim + j] = (x[j] - m) / sqrt(v + 1e-5) * g.l->params[0].w[j] + g.l->params[1].w[j];
        }
        gc_expect_close("layernorm y", g.y, want, g.ny, 1e-5);
        free(want);
        assert_int_equal(gc_layer_check(&g, ndim == 1 ? "layernorm" : "layernorm(rows)", GC_ALL, GC_EPS), 0);
        gc_layer_check_grad_modes_and_close(&g, NAN);
    }
    /* weight 1, bias 0 whatever the scheme */
    int dim = 4;
    gc_layer g;
    gc_layer_open(&g, 1, &dim, lk_layernorm(4, 1e-5f), 1);
    TU_OK(lk_model_init(g.m, LK_INIT_HE_NORMAL, 3));
    for (int j = 0; j < 4; j++) assert_true(g.l->params[0].w[j] == 1.0f && g.l->params[1].w[j] == 0.0f);
    gc_layer_close(&g);
}

/* ---------------- embeddings and the tied head ---------------- */

static lk_model *token_model(int T, int B, uint64_t seed)
{
    lk_model *m;
    lk_shape s = lk_shape_make(1, &T);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    (void)B;
    (void)seed;
    return m;
}

static void fill_tokens(lk_model *m, int n, int vocab)
{
    float *x = lk_model_input(m);
    for (int i = 0; i < n; i++) x[i] = (float)((i * 7 + 3) % vocab); /* repeats: rows add up */
}

static void test_embedding(void **state)
{
    (void)state;
    const int T = 5, V = 6, C = 4, B = 3;
    for (int pos = 0; pos < 2; pos++) {
        lk_model *m = token_model(T, B, 0);
        TU_OK(lk_model_add(m, lk_embedding(V, C, pos, 0)));
        TU_OK(lk_model_add(m, lk_linear(C, 3, 1)));
        TU_OK(lk_model_build(m, B));
        TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 11));
        const lk_layer *e = m->layers[0];
        assert_int_equal(e->nparams, pos ? 2 : 1);
        fill_tokens(m, B * T, V);
        lk_tensor out;
        TU_OK(lk_model_forward(m, B, 1, 0, &out));
        const float *x = lk_model_input(m), *w = e->params[0].w, *y = m->act[1];
        for (int i = 0; i < B * T; i++)
            for (int j = 0; j < C; j++) {
                float want = w[(int)x[i] * C + j] + (pos ? e->params[1].w[(i % T) * C + j] : 0.0f);
                assert_true(fabsf(y[i * C + j] - want) <= 1e-6f);
            }
        assert_int_equal(gc_model_check_on_input(m, pos ? "embedding+pos" : "embedding", B, 1, 0, GC_EPS), 0);
        /* N(0, 0.02^2) whatever the scheme */
        double sq = 0;
        for (int i = 0; i < V * C; i++) sq += (double)w[i] * w[i];
        assert_true(sqrt(sq / (V * C)) < 0.05);
        lk_model_destroy(m);
    }
}

/* A padded vocabulary (V = 7 stored as 16 rows): the head's logits are [T, 16] of which 7
 * count, the cross-entropy over them (rows 16 apart) matches the unpadded model's loss and
 * gradients exactly, the padding's gradient is 0 (so AdamW leaves it 0), and the weight
 * is exported as [7, C]. */
static void test_padded_vocabulary(void **state)
{
    (void)state;
    const int T = 3, V = 7, C = 4, B = 2;
    lk_model *m[2];
    for (int k = 0; k < 2; k++) {
        m[k] = token_model(T, B, 0);
        TU_OK(lk_model_add(m[k], lk_embedding(V, C, 1, k ? 16 : 0)));
        TU_OK(lk_model_add(m[k], lk_tied_head(m[k]->layers[0])));
        TU_OK(lk_model_build(m[k], B));
        TU_OK(lk_model_init(m[k], LK_INIT_DEFAULT, 13));
        fill_tokens(m[k], B * T, V);
    }
    assert_int_equal(lk_model_out_shape(m[1]).d[1], 16);
    assert_int_equal(lk_model_out_valid(m[1]), V);
    assert_int_equal(lk_model_out_valid(m[0]), V);
    const lk_param *w0 = lk_model_param(m[0], 0, NULL, 0), *w1 = lk_model_param(m[1], 0, NULL, 0);
    assert_true(w1->shape.d[0] == V && w1->pad_rows == 9 && lk_param_storage(w1) == 16u * C);
    assert_int_equal(lk_model_trainable(m[1]), lk_model_trainable(m[0]));
    for (int i = 0; i < 9 * C; i++) assert_true(w1->w[V * C + i] == 0.0f); /* never initialised */
    memcpy(w1->w, w0->w, (size_t)V * C * sizeof(float)); /* the same weights */
    int32_t *lab = lk_dev_alloc(tu_cpu(), (size_t)B * T * sizeof *lab);
    for (int i = 0; i < B * T; i++) lab[i] = (i * 5 + 2) % V;
    float loss[2];
    for (int k = 0; k < 2; k++) {
        lk_tensor out;
        TU_OK(lk_model_forward(m[k], B, 1, 0, &out));
        const int ld = lk_model_out_shape(m[k]).d[1];
        for (int r = 0; k && r < B * T; r++) /* the padding's logits are x . 0 */
            for (int j = V; j < ld; j++) assert_true(out.data[r * ld + j] == 0.0f);
        lk_loss_args a = {out.data, lab, NULL, B * T, V, ld, LK_F32};
        float *l = lk_dev_alloc(tu_cpu(), sizeof(float));
        TU_OK(lk_loss(tu_cpu(), LK_LOSS_XENT, &a, l, m[k]->dout, 1.0f));
        loss[k] = *l;
        lk_dev_free(tu_cpu(), l);
        TU_OK(lk_model_backward_ex(m[k], B, 0, LK_GRADS_REPLACE));
    }
    assert_true(fabsf(loss[0] - loss[1]) <= 1e-6f * fabsf(loss[0]));
    for (int i = 0; i < V * C; i++) assert_true(fabsf(w0->g[i] - w1->g[i]) <= 1e-6f);
    for (int i = 0; i < 9 * C; i++) assert_true(w1->g[V * C + i] == 0.0f);
    const lk_param *p0 = lk_model_param(m[0], 1, NULL, 0), *p1 = lk_model_param(m[1], 1, NULL, 0);
    for (int i = 0; i < T * C; i++) assert_true(fabsf(p0->g[i] - p1->g[i]) <= 1e-6f); /* positions */
    lk_dev_free(tu_cpu(), lab);
    lk_model_destroy(m[0]);
    lk_model_destroy(m[1]);
}

/* GPT's tail: the head reuses the embedding's weight, so that weight's gradient is the
 * sum of both uses; also over several micro-batches (accumulate) and after a stale
 * value (replace). */
static void test_tied_head(void **state)
{
    (void)state;
    const int T = 4, V = 7, C = 6, B = 2;
    lk_model *m = token_model(T, B, 0);
    TU_OK(lk_model_add(m, lk_embedding(V, C, 1, 0)));
    lk_layer *emb = m->layers[0];
    TU_OK(lk_model_add(m, lk_layernorm(C, 1e-5f)));
    TU_OK(lk_model_add(m, lk_tied_head(emb)));
    assert_true(m->layers[2]->out.ndim == 2 && m->layers[2]->out.d[1] == V);
    assert_int_equal(m->layers[2]->nparams, 0);
    TU_OK(lk_model_build(m, B));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 12));
    /* N(0,1) tables instead of N(0, 0.02^2): the layer norm of rows that small is far
     * from linear over the +-eps of the finite differences */
    gc_fill_normal(emb->params[0].w, (size_t)V * C, 6, 0.0f);
    gc_fill_normal(emb->params[1].w, (size_t)T * C, 7, 0.0f);
    fill_tokens(m, B * T, V);
    assert_int_equal(gc_model_check_on_input(m, "embedding-ln-tied", B, 1, 0, GC_EPS), 0);
    /* replace after a stale value, then accumulate: 1x then 2x */
    size_t n = m->nparams;
    float *once = malloc(n * sizeof *once);
    lk_tensor out;
    TU_OK(lk_model_forward(m, B, 1, 0, &out));
    gc_fill_normal(m->dout, (size_t)B * T * V, 5, 0.0f);
    TU_OK(lk_model_backward_ex(m, B, 0, LK_GRADS_REPLACE));
    memcpy(once, m->grads, n * sizeof *once);
    for (int i = 0; i < lk_model_param_count(m); i++) { /* a stale value in every tensor */
        const lk_param *p = lk_model_param(m, i, NULL, 0);
        for (size_t e = 0; e < lk_shape_numel(&p->shape); e++) p->g[e] = 99.0f;
    }
    TU_OK(lk_model_backward_ex(m, B, 0, LK_GRADS_REPLACE));
    for (size_t i = 0; i < n; i++) assert_true(fabsf(m->grads[i] - once[i]) <= 1e-6f * (1 + fabsf(once[i])));
    TU_OK(lk_model_backward_ex(m, B, 0, LK_GRADS_ADD));
    for (size_t i = 0; i < n; i++) assert_true(fabsf(m->grads[i] - 2 * once[i]) <= 1e-5f * (1 + fabsf(once[i])));
    free(once);
    lk_model_destroy(m);
    assert_null(lk_tied_head(NULL));
}

/* ---------------- attention ---------------- */

/* GPT-2's attention in double: qkv, causal softmax per head, output projection */
static void attention_ref(const lk_layer *l, int B, int T, int C, int H, const float *x, double *y)
{
    const float *wa = l->params[0].w, *ba = l->params[1].w, *wp = l->params[2].w, *bp = l->params[3].w;
    const int hd = C / H;
    double *qkv = malloc((size_t)T * 3 * C * sizeof *qkv), *att = malloc((size_t)T * C * sizeof *att);
    double *p = malloc((size_t)T * sizeof *p);
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * T * C;
        for (int t = 0; t < T; t++)
            for (int o = 0; o < 3 * C; o++) {
                double s = ba[o];
                for (int i = 0; i < C; i++) s += (double)wa[o * C + i] * xb[t * C + i];
                qkv[t * 3 * C + o] = s;
            }
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int e = 0; e < hd; e++) s += qkv[i * 3 * C + h * hd + e] * qkv[j * 3 * C + C + h * hd + e];
                    p[j] = s / sqrt((double)hd);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= i; j++) sum += p[j] = exp(p[j] - mx);
                for (int e = 0; e < hd; e++) {
                    double s = 0;
                    for (int j = 0; j <= i; j++) s += p[j] / sum * qkv[j * 3 * C + 2 * C + h * hd + e];
                    att[i * C + h * hd + e] = s;
                }
            }
        for (int t = 0; t < T; t++)
            for (int o = 0; o < C; o++) {
                double s = bp[o];
                for (int i = 0; i < C; i++) s += (double)wp[o * C + i] * att[t * C + i];
                y[((size_t)b * T + t) * C + o] = s;
            }
    }
    free(qkv), free(att), free(p);
}

static void test_attention(void **state)
{
    (void)state;
    const int cfg[][4] = {{4, 6, 2, 2}, {5, 4, 1, 3}, {1, 8, 4, 1}}; /* T C H B */
    for (int t = 0; t < 3; t++) {
        int T = cfg[t][0], C = cfg[t][1], H = cfg[t][2], B = cfg[t][3];
        int in[2] = {T, C};
        gc_layer g;
        gc_layer_open(&g, 2, in, lk_attention(C, H), B);
        assert_string_equal(g.l->params[0].name, "c_attn.weight");
        TU_OK(gc_forward(&g));
        double *want = malloc(g.ny * sizeof *want);
        attention_ref(g.l, B, T, C, H, g.x, want);
        gc_expect_close("attention y", g.y, want, g.ny, 1e-5);
        free(want);
        char name[40];
        snprintf(name, sizeof name, "attention(T%d,C%d,H%d)", T, C, H);
        assert_int_equal(gc_layer_check(&g, name, GC_ALL, GC_EPS), 0);
        gc_layer_check_grad_modes_and_close(&g, NAN);
    }
    /* causality: the output at step 0 does not depend on later steps */
    int in[2] = {4, 4};
    gc_layer g;
    gc_layer_open(&g, 2, in, lk_attention(4, 2), 1);
    TU_OK(gc_forward(&g));
    float y0[4];
    memcpy(y0, g.y, sizeof y0);
    for (int i = 4; i < 16; i++) g.x[i] += 1.0f;
    TU_OK(gc_forward(&g));
    assert_memory_equal(y0, g.y, sizeof y0);
    gc_layer_close(&g);
}

/* ---------------- residual blocks ---------------- */

static void test_residual(void **state)
{
    (void)state;
    int in[2] = {3, 4};
    lk_model *m;
    lk_shape s = lk_shape_make(2, in);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    TU_OK(lk_model_add(m, lk_linear(4, 4, 1)));
    lk_layer *outer = lk_residual_begin();
    TU_OK(lk_model_add(m, outer));
    TU_OK(lk_model_add(m, lk_layernorm(4, 1e-5f)));
    lk_layer *inner = lk_residual_begin();
    TU_OK(lk_model_add(m, inner));
    TU_OK(lk_model_add(m, lk_linear(4, 4, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_GELU, 0)));
    TU_OK(lk_model_add(m, lk_residual_end(inner))); /* nested */
    TU_OK(lk_model_add(m, lk_attention(4, 2)));
    TU_OK(lk_model_add(m, lk_residual_end(outer)));
    lk_layer *empty = lk_residual_begin();
    TU_OK(lk_model_add(m, empty));
    TU_OK(lk_model_add(m, lk_residual_end(empty))); /* y = 2x */
    TU_OK(lk_model_add(m, lk_linear(4, 2, 1)));
    assert_null(lk_residual_end(outer)); /* one end per begin */
    TU_OK(lk_model_build(m, 3));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 13));
    assert_ptr_equal(m->act[2], m->act[1]); /* begin is an alias */
    assert_int_equal(gc_model_check(m, "residual blocks", 3, 1, 0, GC_EPS), 0);
    assert_int_equal(gc_model_check(m, "residual partial batch", 2, 1, 0, GC_EPS), 0);
    lk_model_destroy(m);

    /* an end whose block changes the shape, or without its begin */
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    lk_layer *b = lk_residual_begin();
    TU_OK(lk_model_add(m, b));
    TU_OK(lk_model_add(m, lk_linear(4, 5, 1)));
    assert_int_equal(lk_model_add(m, lk_residual_end(b)), LK_ERR_SHAPE);
    assert_non_null(strstr(lk_error_message(), "must keep the shape"));
    lk_layer *lone = lk_residual_begin();
    assert_int_equal(lk_model_add(m, lk_residual_end(lone)), LK_ERR_ARG);
    lk_layer_destroy(lone);
    lk_model_destroy(m);
}

/* ---------------- the VAE's sampling layer ---------------- */

static void test_reparam(void **state)
{
    (void)state;
    const int Z = 3, B = 4;
    int in = 2 * Z;
    gc_layer g;
    gc_layer_open(&g, 1, &in, lk_reparam(Z), B);
    for (size_t i = 0; i < g.nx; i++) g.x[i] *= 0.5f; /* moderate log-variances */
    TU_OK(gc_forward(&g));
    double kl = 0.0;
    for (int r = 0; r < B; r++)
        for (int j = 0; j < Z; j++) {
            double mu = g.x[r * 2 * Z + j], lv = g.x[r * 2 * Z + Z + j];
            double eps = lk_rng_normal(g.m->seed, LK_RNG_NOISE, lk_reparam_key(g.l, g.step), (uint64_t)r * Z + j);
            double want = mu + exp(0.5 * lv) * eps;
            assert_true(fabs(g.y[r * Z + j] - want) <= 1e-5 * (1 + fabs(want)));
            kl += -0.5 * (1 + lv - mu * mu - exp(lv));
        }
    assert_true(fabs(*g.m->aux_loss - kl / B) <= 1e-5 * (1 + kl / B));
    /* the gradient of y . R + KL (the objective includes the layer's own term) */
    assert_int_equal(gc_layer_check(&g, "reparam(+KL)", GC_ALL, GC_EPS), 0);
    /* evaluation: z = mu, the KL still reported */
    g.training = 0;
    TU_OK(gc_forward(&g));
    for (int r = 0; r < B; r++)
        for (int j = 0; j < Z; j++) assert_true(g.y[r * Z + j] == g.x[r * 2 * Z + j]);
    assert_true(fabs(*g.m->aux_loss - kl / B) <= 1e-5 * (1 + kl / B));
    gc_layer_close(&g);
    assert_null(lk_reparam(0));
}

static void test_seq_constructor_errors(void **state)
{
    (void)state;
    assert_null(lk_rnn(LK_RNN_LSTM, 0, 4, 1, 0));
    assert_non_null(strstr(lk_error_message(), "lstm"));
    assert_null(lk_rnn(LK_RNN_GRU, 3, 4, 5, 0));
    assert_non_null(strstr(lk_error_message(), "layers 1..4"));
    assert_null(lk_rnn((lk_rnn_cell)7, 3, 4, 1, 0));
    assert_null(lk_reshape(0, NULL));
    assert_null(lk_reshape(2, (int[]){3, -1}));
    assert_null(lk_attention(6, 4));
    assert_non_null(strstr(lk_error_message(), "multiple of heads"));
    assert_null(lk_layernorm(0, 1e-5f));
    assert_null(lk_embedding(0, 4, 1, 0));

    /* a recurrent layer on an input that is not [T, input] */
    int in[2] = {5, 4};
    lk_model *m;
    lk_shape s = lk_shape_make(2, in);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    assert_int_equal(lk_model_add(m, lk_rnn(LK_RNN_LSTM, 3, 4, 1, 0)), LK_ERR_SHAPE);
    assert_non_null(strstr(lk_error_message(), "expects a sequence [T, 3] per sample, got [5, 4]"));
    lk_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fastmath),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_rnn),
        cmocka_unit_test(test_rnn_long_dependency),
        cmocka_unit_test(test_reshape_in_model),
        cmocka_unit_test(test_rnn_init),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_tied_head),
        cmocka_unit_test(test_padded_vocabulary),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_reparam),
        cmocka_unit_test(test_seq_constructor_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
