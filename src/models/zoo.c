/* zoo.c - the reference models, layer for layer the PyTorch nn.Sequential
 * definitions in DESIGN.md, so parameter names ("1.weight") line up. */
#include "zoo.h"

#include <string.h>

static lk_status build_mlp(lk_model *m, int nclasses)
{
    int in = (int)lk_shape_numel(&m->in_shape);
    LK_CHECK(lk_model_add(m, lk_flatten()));
    LK_CHECK(lk_model_add(m, lk_linear(in, 128, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(128, nclasses, 1));
}

static lk_status build_mlp_wide(lk_model *m, int nclasses)
{
    int in = (int)lk_shape_numel(&m->in_shape);
    LK_CHECK(lk_model_add(m, lk_flatten()));
    LK_CHECK(lk_model_add(m, lk_linear(in, 1024, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    LK_CHECK(lk_model_add(m, lk_linear(1024, 1024, 1)));
    LK_CHECK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    return lk_model_add(m, lk_linear(1024, nclasses, 1));
}

static lk_status build_cnn(lk_model *m, int nclasses)
{
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

static lk_status build_lstm(lk_model *m, int nclasses) { return build_rnn(m, nclasses, LK_RNN_LSTM); }
static lk_status build_gru(lk_model *m, int nclasses) { return build_rnn(m, nclasses, LK_RNN_GRU); }

typedef struct {
    lk_zoo_entry e;
    lk_status (*build)(lk_model *m, int nclasses);
} zoo_row;

static const zoo_row zoo[] = {
    {{"mlp", "flatten, Linear(784,128), ReLU, Linear(128,10)", LK_LOSS_XENT}, build_mlp},
    {{"mlp-wide", "784-1024-1024-10 with ReLU", LK_LOSS_XENT}, build_mlp_wide},
    {{"cnn", "2x [Conv3x3, ReLU, MaxPool2] (32, 64 ch), Linear(3136,128), ReLU, Linear(128,10)",
      LK_LOSS_XENT},
     build_cnn},
    {{"lstm", "2-layer LSTM(28->128) over the 28 image rows, last hidden state, Linear(128,10)",
      LK_LOSS_XENT},
     build_lstm},
    {{"gru", "2-layer GRU(28->128) over the 28 image rows, last hidden state, Linear(128,10)",
      LK_LOSS_XENT},
     build_gru},
};
#define ZOO_N ((int)(sizeof zoo / sizeof *zoo))

int lk_zoo_count(void) { return ZOO_N; }
const lk_zoo_entry *lk_zoo_at(int i) { return i >= 0 && i < ZOO_N ? &zoo[i].e : NULL; }

const lk_zoo_entry *lk_zoo_find(const char *name)
{
    for (int i = 0; i < ZOO_N; i++)
        if (!strcmp(zoo[i].e.name, name)) return &zoo[i].e;
    return NULL;
}

lk_status lk_zoo_build(const char *name, lk_model *m, int nclasses)
{
    for (int i = 0; i < ZOO_N; i++)
        if (!strcmp(zoo[i].e.name, name)) return zoo[i].build(m, nclasses);
    char known[256] = "";
    for (int i = 0; i < ZOO_N; i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, zoo[i].e.name, sizeof known - strlen(known) - 1);
    }
    return LK_ERR(LK_ERR_ARG, "unknown --model '%s' (known: %s)", name, known);
}
