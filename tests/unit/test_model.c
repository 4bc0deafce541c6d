/* test_model.c - the model's contracts: reverse parameter layout, on_grad_ready
 * order and slices, PyTorch parameter names, shape and batch errors, and that a
 * training step makes no heap allocation at all. */
#include "testutil.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers.h"
#include "core/model.h"
#include "core/ops.h"
#include "core/optim.h"
#include "core/rng.h"
#include "models/zoo.h"

#include "alloc_count.h" /* the counting allocator */

/* ---------- helpers ---------- */

static lk_model *model_for(int ndim, const int *in)
{
    lk_model *m;
    lk_shape s = lk_shape_make(ndim, in);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    return m;
}

/* 8 -> linear 5 -> relu -> linear 4 -> linear 3: params in layers 0, 2 and 3. */
static lk_model *three_linear(int build_batch)
{
    int in = 8;
    lk_model *m = model_for(1, &in);
    TU_OK(lk_model_add(m, lk_linear(8, 5, 1)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_RELU, 0)));
    TU_OK(lk_model_add(m, lk_linear(5, 4, 1)));
    TU_OK(lk_model_add(m, lk_linear(4, 3, 1)));
    TU_OK(lk_model_build(m, build_batch));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 77));
    return m;
}

static void fill_input(lk_model *m, int batch, uint64_t a)
{
    float *x = lk_model_input(m);
    size_t n = (size_t)batch * lk_shape_numel(&m->in_shape);
    for (size_t i = 0; i < n; i++) x[i] = lk_rng_normal(1, LK_RNG_TEST, a, i);
}

/* ---------- layout ---------- */

static void test_reverse_layout(void **state)
{
    (void)state;
    lk_model *m = three_linear(2);
    /* last layer first, each tensor rounded up to 16 floats:
     * 3.weight 12 -> [0,16) 3.bias 3 -> [16,32) 2.weight 20 -> [32,64) 2.bias 4 -> [64,80)
     * 0.weight 40 -> [80,128) 0.bias 5 -> [128,144) */
    const size_t want_off[4][2] = {{80, 128}, {0, 0}, {32, 64}, {0, 16}};
    const size_t want_slice[4][2] = {{80, 64}, {0, 0}, {32, 48}, {0, 32}};
    assert_int_equal(m->nparams, 144);
    assert_int_equal(lk_model_trainable(m), 40 + 5 + 20 + 4 + 12 + 3);
    size_t prev = (size_t)-1;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const lk_layer *l = m->layers[i];
        if (!l->nparams) {
            assert_int_equal(l->param_count, 0);
            continue;
        }
        assert_int_equal(l->param_offset, want_slice[i][0]);
        assert_int_equal(l->param_count, want_slice[i][1]);
        /* offsets increase toward the first layer */
        assert_true(prev == (size_t)-1 || l->param_offset > prev);
        prev = l->param_offset;
        for (int j = 0; j < l->nparams; j++) {
            const lk_param *p = &l->params[j];
            assert_int_equal(p->offset, want_off[i][j]);
            assert_int_equal(p->offset % 16, 0);
            assert_ptr_equal(p->w, m->params + p->offset);
            assert_ptr_equal(p->g, m->grads + p->offset);
            assert_int_equal((uintptr_t)p->w % 64, 0);
            assert_int_equal((uintptr_t)p->g % 64, 0);
            /* inside the layer's slice */
            assert_true(p->offset >= l->param_offset &&
                        p->offset + lk_shape_numel(&p->shape) <= l->param_offset + l->param_count);
        }
    }
    /* alignment padding is zero, so checksums and norms see only real values */
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            size_t end = p->offset + lk_shape_numel(&p->shape);
            for (size_t k = end; k < LK_ALIGN_UP(end, 16); k++) assert_true(m->params[k] == 0.0f);
        }
    lk_model_destroy(m);
}

/* ---------- on_grad_ready ---------- */

typedef struct {
    lk_model *m;
    int calls;
    size_t off[16], cnt[16];
    float *snap;          /* grads of each slice as they were when announced */
    int later_nonzero;    /* a slice above the announced one already had gradients */
} ready_log;

static void on_ready(void *user, size_t offset, size_t count)
{
    ready_log *r = user;
    if (r->calls < 16) {
        r->off[r->calls] = offset;
        r->cnt[r->calls] = count;
    }
    r->calls++;
    memcpy(r->snap + offset, r->m->grads + offset, count * sizeof(float));
    for (size_t k = offset + count; k < r->m->nparams; k++)
        if (r->m->grads[k] != 0.0f) r->later_nonzero = 1;
}

/* forward + backward on fixed input and dout */
static void run_backward_mode(lk_model *m, int batch, lk_grads_mode mode)
{
    lk_tensor out;
    fill_input(m, batch, 5);
    TU_OK(lk_model_forward(m, batch, 1, 0, &out));
    lk_shape os = lk_model_out_shape(m);
    size_t n = (size_t)batch * lk_shape_numel(&os);
    for (size_t i = 0; i < n; i++) m->dout[i] = lk_rng_normal(2, LK_RNG_TEST, 6, i);
    TU_OK(lk_model_backward_ex(m, batch, 0, mode));
}

static void run_backward(lk_model *m, int batch) { run_backward_mode(m, batch, LK_GRADS_ADD); }

/* Called once per layer with parameters, last layer first, with slices that start at
 * 0, follow each other and end at nparams; each slice is final when announced. */
static void check_ready(lk_model *m, int nparam_layers)
{
    ready_log r = {.m = m};
    r.snap = calloc(m->nparams, sizeof(float));
    m->on_grad_ready = on_ready;
    m->grad_ready_user = &r;
    lk_model_zero_grad(m);
    run_backward(m, 2);
    assert_int_equal(r.calls, nparam_layers);
    size_t next = 0;
    int k = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        if (!m->layers[i]->nparams) continue;
        assert_int_equal(r.off[k], next);
        assert_int_equal(r.off[k], m->layers[i]->param_offset);
        assert_int_equal(r.cnt[k], m->layers[i]->param_count);
        next = r.off[k] + r.cnt[k];
        k++;
    }
    assert_int_equal(next, m->nparams);
    assert_int_equal(r.later_nonzero, 0); /* backward order really is offset order */
    /* nothing changed after its announcement: a bucket may be all-reduced at once */
    assert_memory_equal(r.snap, m->grads, m->nparams * sizeof(float));
    int any = 0;
    for (size_t i = 0; i < m->nparams; i++) any |= m->grads[i] != 0.0f;
    assert_true(any);
    /* once per layer per backward */
    run_backward(m, 2);
    assert_int_equal(r.calls, 2 * nparam_layers);
    m->on_grad_ready = NULL;
    free(r.snap);
}

static void test_grad_ready(void **state)
{
    (void)state;
    lk_model *m = three_linear(4);
    check_ready(m, 3);
    lk_model_destroy(m);

    /* parameter-free layers first and in between: they are never announced */
    int in[3] = {2, 6, 6};
    m = model_for(3, in);
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_TANH, 0)));
    TU_OK(lk_model_add(m, lk_conv2d(2, 3, 3, 1, 1, 1)));
    TU_OK(lk_model_add(m, lk_maxpool2d(2, 2, 0)));
    TU_OK(lk_model_add(m, lk_conv2d(3, 4, 3, 1, 0, 0)));
    TU_OK(lk_model_add(m, lk_flatten()));
    TU_OK(lk_model_add(m, lk_dropout(0.5f)));
    TU_OK(lk_model_add(m, lk_linear(4, 2, 1)));
    TU_OK(lk_model_build(m, 2));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 3));
    check_ready(m, 3);
    lk_model_destroy(m);
}

/* LK_GRADS_REPLACE overwrites every gradient (no zero_grad needed) and leaves the
 * alignment padding zero; LK_GRADS_ADD adds. */
static void test_backward_replace(void **state)
{
    (void)state;
    lk_model *m = three_linear(2);
    lk_model_zero_grad(m);
    run_backward(m, 2);
    float *ref = malloc(m->nparams * sizeof(float));
    memcpy(ref, m->grads, m->nparams * sizeof(float));
    for (int i = 0; i < lk_model_param_count(m); i++) { /* stale values, padding untouched */
        const lk_param *p = lk_model_param(m, i, NULL, 0);
        for (size_t e = 0; e < lk_shape_numel(&p->shape); e++) p->g[e] = 777.0f;
    }
    ready_log r = {.m = m, .snap = calloc(m->nparams, sizeof(float))};
    m->on_grad_ready = on_ready;
    m->grad_ready_user = &r;
    run_backward_mode(m, 2, LK_GRADS_REPLACE);
    m->on_grad_ready = NULL;
    free(r.snap);
    assert_int_equal(r.calls, 3); /* still announced once per layer */
    assert_memory_equal(m->grads, ref, m->nparams * sizeof(float)); /* padding included */
    run_backward_mode(m, 2, LK_GRADS_ADD);
    for (size_t i = 0; i < m->nparams; i++)
        assert_true(fabsf(m->grads[i] - 2.0f * ref[i]) <= 1e-6f);
    free(ref);
    lk_model_destroy(m);
}

/* ---------- names ---------- */

static void expect_param(const lk_model *m, int i, const char *name, int ndim, const int *shape)
{
    char got[32];
    const lk_param *p = lk_model_param(m, i, got, sizeof got);
    assert_non_null(p);
    assert_string_equal(got, name);
    lk_shape want = lk_shape_make(ndim, shape);
    assert_true(lk_shape_equal(&p->shape, &want));
}

static void test_param_names(void **state)
{
    (void)state;
    int in[3] = {1, 28, 28};
    lk_model *m = model_for(3, in);
    TU_OK(lk_zoo_build("mlp", m, 10, NULL));
    TU_OK(lk_model_build(m, 1));
    assert_int_equal(lk_model_param_count(m), 4);
    /* nn.Sequential(Flatten(), Linear(784,128), ReLU(), Linear(128,10)) */
    expect_param(m, 0, "1.weight", 2, (int[]){128, 784});
    expect_param(m, 1, "1.bias", 1, (int[]){128});
    expect_param(m, 2, "3.weight", 2, (int[]){10, 128});
    expect_param(m, 3, "3.bias", 1, (int[]){10});
    assert_null(lk_model_param(m, 4, NULL, 0));
    assert_int_equal(lk_model_trainable(m), 101770);
    lk_model_destroy(m);

    m = model_for(3, in);
    TU_OK(lk_zoo_build("cnn", m, 10, NULL));
    TU_OK(lk_model_build(m, 1));
    assert_int_equal(lk_model_param_count(m), 8);
    expect_param(m, 0, "0.weight", 4, (int[]){32, 1, 3, 3});
    expect_param(m, 1, "0.bias", 1, (int[]){32});
    expect_param(m, 2, "3.weight", 4, (int[]){64, 32, 3, 3});
    expect_param(m, 3, "3.bias", 1, (int[]){64});
    expect_param(m, 4, "7.weight", 2, (int[]){128, 3136});
    expect_param(m, 5, "7.bias", 1, (int[]){128});
    expect_param(m, 6, "9.weight", 2, (int[]){10, 128});
    expect_param(m, 7, "9.bias", 1, (int[]){10});
    assert_int_equal(lk_model_trainable(m), 421642); /* PyTorch's count for this net */
    /* without bias only the weight exists, and indices stay Sequential's */
    lk_model_destroy(m);
    int f = 6;
    m = model_for(1, &f);
    TU_OK(lk_model_add(m, lk_linear(6, 4, 0)));
    TU_OK(lk_model_add(m, lk_activation(LK_ACT_GELU, 0)));
    TU_OK(lk_model_add(m, lk_linear(4, 2, 1)));
    TU_OK(lk_model_build(m, 1));
    expect_param(m, 0, "0.weight", 2, (int[]){4, 6});
    expect_param(m, 1, "2.weight", 2, (int[]){2, 4});
    expect_param(m, 2, "2.bias", 1, (int[]){2});
    assert_null(lk_model_param(m, 3, NULL, 0));
    lk_model_destroy(m);
}

/* A negative index is out of range like one past the end. (Registered last: the
 * sanitizer build aborts the binary on the out-of-bounds read this used to do.) */
static void test_param_negative_index(void **state)
{
    (void)state;
    int f = 6;
    lk_model *m = model_for(1, &f);
    TU_OK(lk_model_add(m, lk_linear(6, 4, 1)));
    TU_OK(lk_model_build(m, 1));
    char name[32] = "untouched";
    const lk_param *p = lk_model_param(m, -1, name, sizeof name);
    lk_model_destroy(m);
    assert_null(p);
}

/* ---------- errors ---------- */

static void test_add_shape_errors(void **state)
{
    (void)state;
    int in = 10;
    lk_model *m = model_for(1, &in);
    TU_OK(lk_model_add(m, lk_linear(10, 5, 1)));
    TU_FAILS_WITH(lk_model_add(m, lk_linear(6, 3, 1)), LK_ERR_SHAPE, "layer 1");
    assert_non_null(strstr(lk_error_message(), "[6]"));  /* what it expects */
    assert_non_null(strstr(lk_error_message(), "[5]"));  /* what it got */
    assert_int_equal(m->nlayers, 1);                    /* the bad layer was not added */
    TU_FAILS_WITH(lk_model_add(m, lk_conv2d(1, 2, 3, 1, 1, 1)), LK_ERR_SHAPE, "layer 1");
    assert_non_null(strstr(lk_error_message(), "[5]"));
    TU_FAILS_WITH(lk_model_add(m, lk_maxpool2d(2, 2, 0)), LK_ERR_SHAPE, "layer 1");
    /* a constructor's error is reported with the position it was meant for */
    TU_FAILS_WITH(lk_model_add(m, lk_linear(0, 3, 1)), LK_ERR_ARG, "layer 1");
    assert_non_null(strstr(lk_error_message(), "linear"));
    /* the model is still usable */
    TU_OK(lk_model_add(m, lk_linear(5, 2, 1)));
    TU_OK(lk_model_build(m, 2));
    TU_FAILS_WITH(lk_model_add(m, lk_linear(2, 2, 1)), LK_ERR_STATE, "built");
    lk_model_destroy(m);

    int img[3] = {3, 4, 4};
    m = model_for(3, img);
    TU_FAILS_WITH(lk_model_add(m, lk_conv2d(1, 8, 3, 1, 1, 1)), LK_ERR_SHAPE, "layer 0");
    assert_non_null(strstr(lk_error_message(), "[3, 4, 4]"));
    TU_FAILS_WITH(lk_model_add(m, lk_conv2d(3, 8, 7, 1, 1, 1)), LK_ERR_ARG, "layer 0");
    assert_non_null(strstr(lk_error_message(), "7x7")); /* kernel larger than the input */
    TU_FAILS_WITH(lk_model_add(m, lk_linear(48, 2, 1)), LK_ERR_SHAPE, "[3, 4, 4]");
    lk_model_destroy(m);
}

static void test_batch_errors(void **state)
{
    (void)state;
    int in = 8;
    lk_model *m = model_for(1, &in);
    lk_tensor out;
    TU_FAILS_WITH(lk_model_build(m, 4), LK_ERR_ARG, "no layers");
    TU_OK(lk_model_add(m, lk_linear(8, 3, 1)));
    TU_FAILS_WITH(lk_model_forward(m, 1, 0, 0, &out), LK_ERR_STATE, "not built");
    TU_FAILS_WITH(lk_model_init(m, LK_INIT_DEFAULT, 1), LK_ERR_STATE, "built");
    TU_FAILS_WITH(lk_model_build(m, 0), LK_ERR_ARG, "batch");
    TU_OK(lk_model_build(m, 4));
    TU_FAILS_WITH(lk_model_build(m, 4), LK_ERR_STATE, "already built");
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 1));
    TU_FAILS_WITH(lk_model_forward(m, 5, 1, 0, &out), LK_ERR_ARG, "5");
    assert_non_null(strstr(lk_error_message(), "4"));
    TU_FAILS_WITH(lk_model_forward(m, 0, 1, 0, &out), LK_ERR_ARG, "batch");
    TU_FAILS_WITH(lk_model_backward(m, 5, 0), LK_ERR_ARG, "batch");
    TU_OK(lk_model_forward(m, 4, 1, 0, &out)); /* the limit itself is fine */
    assert_int_equal(out.shape.d[0], 4);
    assert_int_equal(out.shape.d[1], 3);
    TU_OK(lk_model_backward(m, 4, 0));
    lk_model_destroy(m);
}

/* Same seed, same parameters; another seed, other parameters; PyTorch's default
 * bound U(+-1/sqrt(fan_in)) for weights and biases. */
static void test_init(void **state)
{
    (void)state;
    lk_model *a = three_linear(1), *b = three_linear(1);
    assert_memory_equal(a->params, b->params, a->nparams * sizeof(float));
    TU_OK(lk_model_init(b, LK_INIT_DEFAULT, 78));
    assert_memory_not_equal(a->params, b->params, a->nparams * sizeof(float));
    for (int i = 0; i < lk_model_param_count(a); i++) {
        const lk_param *p = lk_model_param(a, i, NULL, 0);
        float bound = 1.0f / sqrtf((float)p->fan_in);
        size_t n = lk_shape_numel(&p->shape);
        for (size_t e = 0; e < n; e++) assert_true(fabsf(p->w[e]) <= bound);
        for (size_t e = 0; e < n; e++) assert_true(p->g[e] == 0.0f);
    }
    /* the two weight tensors of equal shape do not share numbers */
    assert_true(a->layers[0]->params[0].w[0] != a->layers[2]->params[0].w[0]);
    lk_model_destroy(a);
    lk_model_destroy(b);
}

/* ---------- no heap allocation in the training loop ---------- */

typedef struct {
    lk_model *m;
    lk_optim *o;
    int batch, rows; /* rows: the loss's (batch x tokens for gpt) */
    size_t nx;       /* input floats of a batch */
    float *host_x, *loss;
    int32_t *labels;
    long step;
    int replace; /* the trainer's way: LK_GRADS_REPLACE, no zero_grad pass */
} trainer;

static void trainer_open(trainer *t, const char *zoo, int batch, lk_optim_config oc)
{
    /* images of 28 x 28, or for gpt windows of 8 tokens of a vocabulary of 10 */
    const int gpt = !strcmp(zoo, "gpt"), in[3] = {1, 28, 28}, ctx = 8;
    const lk_arch arch = {2, 2, 16, ctx, LK_GELU_DEFAULT};
    memset(t, 0, sizeof *t);
    t->batch = batch;
    t->rows = gpt ? batch * ctx : batch;
    t->m = gpt ? model_for(1, &ctx) : model_for(3, in);
    TU_OK(lk_zoo_build(zoo, t->m, 10, gpt ? &arch : NULL));
    TU_OK(lk_model_build(t->m, batch));
    TU_OK(lk_model_init(t->m, LK_INIT_DEFAULT, 11));
    TU_OK(lk_optim_create(&t->o, tu_cpu(), &oc, t->m->nparams));
    t->nx = (size_t)batch * lk_shape_numel(&t->m->in_shape);
    t->host_x = malloc(t->nx * sizeof(float));
    int32_t host_labels[64 * 8];
    for (size_t i = 0; i < t->nx; i++)
        t->host_x[i] = gpt ? (float)lk_rng_below(4, LK_RNG_TEST, 0, i, 10)
                           : lk_rng_uniform(4, LK_RNG_TEST, 0, i);
    for (int i = 0; i < t->rows; i++)
        host_labels[i] = (int32_t)lk_rng_below(4, LK_RNG_TEST, 1, i, 10);
    t->labels = lk_dev_alloc(tu_cpu(), (size_t)t->rows * sizeof(int32_t));
    t->loss = lk_dev_alloc(tu_cpu(), sizeof(float));
    lk_copy_to_device(tu_cpu(), t->labels, host_labels, (size_t)t->rows * sizeof(int32_t));
}

/* One step exactly as the trainer does it; returns the first failure, or LK_OK. */
static lk_status train_step(trainer *t, float *loss_out)
{
    lk_device *d = tu_cpu();
    lk_tensor out;
    lk_copy_to_device(d, lk_model_input(t->m), t->host_x, t->nx * sizeof(float));
    if (!t->replace) lk_model_zero_grad(t->m);
    LK_CHECK(lk_model_forward(t->m, t->batch, 1, t->step, &out));
    lk_loss_args a = {out.data, t->labels, NULL, t->rows, 10, 0, LK_F32};
    LK_CHECK(lk_loss(d, LK_LOSS_XENT, &a, t->loss, t->m->dout, 1.0f));
    LK_CHECK(lk_model_backward_ex(t->m, t->batch, t->step,
                                  t->replace ? LK_GRADS_REPLACE : LK_GRADS_ADD));
    LK_CHECK(lk_optim_step(t->o, t->m->params, t->m->grads, 1.0f));
    *loss_out = lk_read_scalar(d, t->loss);
    t->step++;
    return LK_OK;
}

static void trainer_close(trainer *t)
{
    lk_dev_free(tu_cpu(), t->labels);
    lk_dev_free(tu_cpu(), t->loss);
    free(t->host_x);
    lk_optim_destroy(t->o);
    lk_model_destroy(t->m);
}

static void test_no_heap_allocation(void **state)
{
    (void)state;
#if ALLOC_COUNTED
    /* the counter sees allocations made inside the library */
    alloc_count_start();
    void *probe = lk_malloc(16);
    lk_free(probe);
    assert_int_equal(alloc_count_stop().outside, 2);
#endif
    const char *models[4] = {"cnn", "mlp", "gpt", "lstm"};
    for (int k = 0; k < 4; k++) {
        lk_optim_config oc = lk_optim_defaults(k == 2 ? LK_OPT_ADAMW : LK_OPT_MOMENTUM);
        oc.lr = k == 2 ? 1e-3f : 0.05f;
        oc.weight_decay = 1e-4f;
        oc.clip_norm = k == 0 ? 5.0f : 0.0f; /* the clipping path reads a device scalar */
        trainer t;
        trainer_open(&t, models[k], 16, oc);
        t.replace = k != 1; /* as the trainer does it; mlp with zero_grad + add */
        float first = 0.0f, last = 0.0f;
        /* no warm-up: the model's plan created every primitive the steps need */
        lk_status st = LK_OK;
        alloc_count_start();
        for (int s = 0; s < 5 && st == LK_OK; s++) st = train_step(&t, s ? &last : &first);
        alloc_counts c = alloc_count_stop();
        TU_OK(st);
        print_message("  %s: loss %.4f -> %.4f; in 5 steps %ld allocations + frees, and %ld "
                      "small blocks (<= %zu bytes) in oneDNN's execute, %ld freed there%s\n",
                      models[k], (double)first, (double)last, c.outside, c.in_allocs, c.in_largest,
                      c.in_frees, ALLOC_COUNTED ? "" : " (not counted)");
        assert_true(alloc_counts_clean(c));
        /* and the steps did train (same batch each time, so the loss falls) */
        assert_true(isfinite(last) && last < first);
        trainer_close(&t);
    }
#if !ALLOC_COUNTED
    /* the steps above still ran under ASan/UBSan; only the counting is off */
    print_message("  allocation counting skipped: ASan interposes malloc itself (the plain "
                  "build counts)\n");
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse_layout),
        cmocka_unit_test(test_grad_ready),
        cmocka_unit_test(test_backward_replace),
        cmocka_unit_test(test_param_names),
        cmocka_unit_test(test_add_shape_errors),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_no_heap_allocation),
        cmocka_unit_test(test_param_negative_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
