/* rnn.c - multi-layer LSTM and GRU over a sequence, as torch.nn.LSTM / torch.nn.GRU
 * with batch_first=True: input [T, I] per sample, output the last layer's hidden state
 * at every step [T, H] or at the last step only [H].
 *
 * Inside, sequences are time-major ([T][B][.]) so that one step's rows are contiguous:
 * each layer does its input products for all steps in one gemm, then T small gemms
 * for the recurrence, and in backward the weight gradients of all steps in one gemm
 * each. Full backpropagation through time; the states of every step are kept in the
 * layer's saved block from forward to backward. */
#include <math.h>
#include <stdio.h>

#include "../layers.h"
#include "../ops.h"

typedef struct {
    lk_layer base;
    lk_rnn_cell cell;
    int input, hidden, layers, sequences;
    int T, G; /* steps (from the input shape), gates per cell (4 LSTM, 3 GRU) */
} rnn;

/* Offsets (floats) into the saved block and the workspace for a batch of B. */
typedef struct {
    float *xt;        /* [T][B][I] the input, time-major */
    float *hs[4];     /* per layer [T+1][B][H]: slot 0 is h_0 = 0, slot t+1 is h_t */
    float *gates[4];  /* per layer [T][B][G*H]: activated gates of every step */
    float *cs[4];     /* LSTM, per layer [T+1][B][H]: cell states, slot 0 = 0 */
    float *ghn[4];    /* GRU, per layer [T][B][H]: W_hn h + b_hn of every step */
    /* workspace */
    float *dg;        /* [T][B][G*H] pre-activation gradients (LSTM gates, GRU input part) */
    float *dgh;       /* GRU [T][B][G*H] hidden pre-activation gradients; forward: gh [B][G*H] */
    float *dh, *dc;   /* [B][H] */
    float *seq[2];    /* [T][B][max(H, I)] gradients of sequences between layers */
} rnn_plan;

static size_t seq_width(const rnn *s) { return (size_t)LK_MAX(s->hidden, s->input); }

static size_t saved_floats(const rnn *s, int B, rnn_plan *p, float *base)
{
    const size_t T = (size_t)s->T, H = (size_t)s->hidden, GH = (size_t)s->G * H;
    size_t off = 0;
#define TAKE(ptr, n) ((ptr) = base ? base + off : NULL, off += (n))
    TAKE(p->xt, T * B * s->input);
    for (int k = 0; k < s->layers; k++) {
        TAKE(p->hs[k], (T + 1) * B * H);
        TAKE(p->gates[k], T * B * GH);
        if (s->cell == LK_RNN_LSTM) TAKE(p->cs[k], (T + 1) * B * H);
        else TAKE(p->ghn[k], T * B * H);
    }
    return off;
}

static size_t work_floats(const rnn *s, int B, rnn_plan *p, float *base)
{
    const size_t T = (size_t)s->T, H = (size_t)s->hidden, GH = (size_t)s->G * H;
    size_t off = 0;
    TAKE(p->dg, T * B * GH);
    TAKE(p->dgh, s->cell == LK_RNN_GRU ? T * B * GH : 0);
    TAKE(p->dh, (size_t)B * H);
    TAKE(p->dc, (size_t)B * H);
    TAKE(p->seq[0], T * B * seq_width(s));
    TAKE(p->seq[1], T * B * seq_width(s));
#undef TAKE
    return off;
}

static void plan(const rnn *s, int B, const lk_layer *l, const lk_ctx *c, rnn_plan *p)
{
    saved_floats(s, B, p, l->saved);
    work_floats(s, B, p, c->workspace);
}

static size_t rnn_saved_bytes(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    rnn_plan p;
    return saved_floats((const rnn *)l, batch, &p, NULL) * sizeof(float);
}

static size_t rnn_workspace_bytes(const lk_layer *l, lk_device *d, int batch)
{
    (void)d;
    rnn_plan p;
    return work_floats((const rnn *)l, batch, &p, NULL) * sizeof(float);
}

static const char *cell_name(lk_rnn_cell c) { return c == LK_RNN_LSTM ? "lstm" : "gru"; }

static lk_status rnn_setup(lk_layer *l)
{
    rnn *s = (rnn *)l;
    if (l->in.ndim != 2 || l->in.d[1] != s->input) {
        char b[64];
        return LK_ERR(LK_ERR_SHAPE, "layer %d (%s %d->%d): expects a sequence [T, %d] per sample, got %s",
                      l->index, cell_name(s->cell), s->input, s->hidden, s->input,
                      lk_shape_str(&l->in, b, sizeof b));
    }
    s->T = l->in.d[0];
    int H = s->hidden, GH = s->G * H;
    l->out = s->sequences ? lk_shape_make(2, (int[]){s->T, H}) : lk_shape_make(1, &H);
    for (int k = 0; k < s->layers; k++) {
        int in = k ? H : s->input;
        char name[LK_PARAM_NAME];
        static const char *const kinds[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
        for (int j = 0; j < 4; j++) {
            snprintf(name, sizeof name, "%s_l%d", kinds[j], k);
            int shape[2] = {GH, j == 0 ? in : H};
            lk_param *p = lk_layer_add_param(l, name, j < 2 ? 2 : 1, shape, j == 0 ? in : H, GH, j >= 2);
            p->default_bound = 1.0f / sqrtf((float)H); /* torch.nn.LSTM/GRU: every tensor */
        }
    }
    return LK_OK;
}

static lk_status rnn_forward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, lk_tensor *y)
{
    rnn *s = (rnn *)l;
    lk_device *d = c->dev;
    const int B = x->shape.d[0], T = s->T, H = s->hidden, GH = s->G * H, TB = T * B;
    rnn_plan p;
    plan(s, B, l, c, &p);
    LK_CHECK(lk_transpose(d, x->data, p.xt, 1, B, T, s->input));
    const float *in = p.xt;
    int in_w = s->input;
    for (int k = 0; k < s->layers; k++) {
        const lk_param *w = &l->params[4 * k];
        float *hs = p.hs[k], *g = p.gates[k];
        LK_CHECK(lk_gemm_ex(d, l->compute, 0, 1, TB, GH, in_w, 1.0f, lk_in_f32(in), in_w,
                            lk_layer_weights(l, &w[0]), in_w, 0.0f, g, GH));
        LK_CHECK(lk_bias_add(d, g, w[2].w, TB, GH, 1));
        lk_zero(d, hs, (size_t)B * H * sizeof(float));
        if (s->cell == LK_RNN_LSTM) {
            LK_CHECK(lk_bias_add(d, g, w[3].w, TB, GH, 1));
            lk_zero(d, p.cs[k], (size_t)B * H * sizeof(float));
            for (int t = 0; t < T; t++) {
                float *gt = g + (size_t)t * B * GH;
                const size_t o = (size_t)t * B * H, o1 = o + (size_t)B * H;
                LK_CHECK(lk_gemm_ex(d, l->compute, 0, 1, B, GH, H, 1.0f, lk_in_f32(hs + o), H,
                                    lk_layer_weights(l, &w[1]), H, 1.0f, gt, GH));
                LK_CHECK(lk_lstm_cell_forward(d, B, H, gt, p.cs[k] + o, p.cs[k] + o1, hs + o1));
            }
        } else {
            float *gh = p.dgh; /* backward's buffer, free during forward */
            for (int t = 0; t < T; t++) {
                const size_t o = (size_t)t * B * H, o1 = o + (size_t)B * H;
                LK_CHECK(lk_gemm_ex(d, l->compute, 0, 1, B, GH, H, 1.0f, lk_in_f32(hs + o), H,
                                    lk_layer_weights(l, &w[1]), H, 0.0f, gh, GH));
                LK_CHECK(lk_bias_add(d, gh, w[3].w, B, GH, 1));
                LK_CHECK(lk_gru_cell_forward(d, B, H, g + (size_t)t * B * GH, gh, hs + o, hs + o1,
                                             p.ghn[k] + o));
            }
        }
        in = hs + (size_t)B * H;
        in_w = H;
    }
    const float *top = p.hs[s->layers - 1];
    if (s->sequences) return lk_transpose(d, top + (size_t)B * H, y->data, 1, T, B, H);
    lk_copy_on_device(d, y->data, top + (size_t)T * B * H, (size_t)B * H * sizeof(float));
    return LK_OK;
}

static lk_status rnn_backward(lk_layer *l, const lk_ctx *c, const lk_tensor *x, const lk_tensor *y,
                              const lk_tensor *dy, lk_tensor *dx)
{
    (void)y;
    rnn *s = (rnn *)l;
    lk_device *d = c->dev;
    const int B = x->shape.d[0], T = s->T, H = s->hidden, GH = s->G * H, TB = T * B;
    const float beta = c->replace_grads ? 0.0f : 1.0f;
    const int lstm = s->cell == LK_RNN_LSTM;
    rnn_plan p;
    plan(s, B, l, c, &p);
    /* the gradient reaching the top layer's outputs: every step, or the last one */
    const float *dout = NULL;
    int cur = 0;
    if (s->sequences) {
        LK_CHECK(lk_transpose(d, dy->data, p.seq[0], 1, B, T, H));
        dout = p.seq[0];
    }
    for (int k = s->layers - 1; k >= 0; k--) {
        const lk_param *w = &l->params[4 * k];
        const float *hs = p.hs[k], *g = p.gates[k];
        const float *in = k ? p.hs[k - 1] + (size_t)B * H : p.xt;
        const int in_w = k ? H : s->input;
        float *dgx = p.dg, *dgh = lstm ? p.dg : p.dgh;
        lk_zero(d, p.dh, (size_t)B * H * sizeof(float));
        if (lstm) lk_zero(d, p.dc, (size_t)B * H * sizeof(float));
        for (int t = T - 1; t >= 0; t--) {
            const size_t o = (size_t)t * B * H, og = (size_t)t * B * GH;
            const float *dho = dout ? dout + o : t == T - 1 ? dy->data : NULL;
            if (lstm) {
                LK_CHECK(lk_lstm_cell_backward(d, B, H, g + og, p.cs[k] + o, p.cs[k] + o + (size_t)B * H,
                                               p.dh, dho, p.dc, dgx + og));
                if (t)
                    LK_CHECK(lk_gemm_ex(d, l->compute, 0, 0, B, H, GH, 1.0f, lk_in_f32(dgx + og),
                                        GH, lk_layer_weights(l, &w[1]), H, 0.0f, p.dh, H));
            } else {
                LK_CHECK(lk_gru_cell_backward(d, B, H, g + og, p.ghn[k] + o, hs + o, p.dh, dho,
                                              dgx + og, dgh + og));
                if (t)
                    LK_CHECK(lk_gemm_ex(d, l->compute, 0, 0, B, H, GH, 1.0f, lk_in_f32(dgh + og),
                                        GH, lk_layer_weights(l, &w[1]), H, 1.0f, p.dh, H));
            }
        }
        /* every step's weight gradients at once; hs slots 0..T-1 are the h_{t-1} */
        LK_CHECK(lk_gemm_ex(d, l->compute, 1, 0, GH, H, TB, 1.0f, lk_in_f32(dgh), GH, lk_in_f32(hs),
                            H, beta, w[1].g, H));
        LK_CHECK(lk_gemm_ex(d, l->compute, 1, 0, GH, in_w, TB, 1.0f, lk_in_f32(dgx), GH,
                            lk_in_f32(in), in_w, beta, w[0].g, in_w));
        LK_CHECK(lk_bias_grad(d, w[2].g, dgx, TB, GH, 1, beta));
        LK_CHECK(lk_bias_grad(d, w[3].g, dgh, TB, GH, 1, beta));
        if (k == 0 && !dx->data) break;
        float *din = p.seq[cur ^ 1]; /* the gradient of this layer's input sequence */
        LK_CHECK(lk_gemm_ex(d, l->compute, 0, 0, TB, in_w, GH, 1.0f, lk_in_f32(dgx), GH,
                            lk_layer_weights(l, &w[0]), in_w, 0.0f, din, in_w));
        dout = din;
        cur ^= 1;
    }
    if (dx->data) LK_CHECK(lk_transpose(d, dout, dx->data, 1, T, B, s->input));
    return LK_OK;
}

/* every step of every layer: the gates' products with the input and the hidden state */
static double rnn_flops(const lk_layer *l)
{
    const rnn *s = (const rnn *)l;
    double f = 0.0;
    for (int k = 0; k < s->layers; k++) {
        const double in = k ? s->hidden : s->input;
        f += 2.0 * s->T * (in + s->hidden) * s->G * s->hidden;
    }
    return f;
}

static const lk_layer_vt lstm_vt = {
    .type = "lstm",
    .flops = rnn_flops,
    .setup = rnn_setup,
    .saved_bytes = rnn_saved_bytes,
    .workspace_bytes = rnn_workspace_bytes,
    .forward = rnn_forward,
    .backward = rnn_backward,
};

static const lk_layer_vt gru_vt = {
    .type = "gru",
    .flops = rnn_flops,
    .setup = rnn_setup,
    .saved_bytes = rnn_saved_bytes,
    .workspace_bytes = rnn_workspace_bytes,
    .forward = rnn_forward,
    .backward = rnn_backward,
};

lk_layer *lk_rnn(lk_rnn_cell cell, int input, int hidden, int layers, int sequences)
{
    if (cell != LK_RNN_LSTM && cell != LK_RNN_GRU) {
        LK_ERR(LK_ERR_ARG, "rnn: unknown cell %d", (int)cell);
        return NULL;
    }
    if (input <= 0 || hidden <= 0 || layers < 1 || layers > 4) {
        LK_ERR(LK_ERR_ARG, "%s: input and hidden sizes must be positive and layers 1..4 "
               "(input=%d hidden=%d layers=%d)", cell_name(cell), input, hidden, layers);
        return NULL;
    }
    rnn *s = lk_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base.vt = cell == LK_RNN_LSTM ? &lstm_vt : &gru_vt;
    s->cell = cell;
    s->input = input;
    s->hidden = hidden;
    s->layers = layers;
    s->sequences = sequences != 0;
    s->G = cell == LK_RNN_LSTM ? 4 : 3;
    return &s->base;
}
