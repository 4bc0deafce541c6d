/* test_spec.c - model specs: every built-in spec builds the zoo's C models of before
 * (zoo_ref.h) layer for layer, with bitwise the same initial weights, forward, backward and
 * optimizer step; expressions, bases and sizes; and bad specs refused naming the layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/optim.h"
#include "core/rng.h"
#include "models/zoo.h"
#include "testutil.h"
#include "train/ckptdir.h"
#include "zoo_ref.h"

typedef struct {
    const char *name;
    lk_shape sample;
    int classes;
    lk_arch arch;
    int run; /* 0: compare the built layers only (the GPT-2 presets' hundreds of millions of floats) */
} zoo_case;

static const zoo_case cases[] = {
    {"mlp", {3, {1, 28, 28}}, 10, {0}, 1},
    {"mlp-wide", {3, {1, 28, 28}}, 10, {0}, 1},
    {"cnn", {3, {1, 28, 28}}, 10, {0}, 1},
    {"cnn-bn", {3, {3, 32, 32}}, 10, {0}, 1},
    {"lstm", {3, {1, 28, 28}}, 10, {0}, 1},
    {"gru", {2, {12, 5}}, 7, {0}, 1},
    {"gpt", {1, {16}}, 50, {2, 2, 32, 16, LK_GELU_DEFAULT}, 1},
    {"gpt", {1, {128}}, 300, {0}, 1},
    {"gpt2", {1, {64}}, 50257, {0, 0, 0, 64, LK_GELU_DEFAULT}, 0},
    {"gpt2-medium", {1, {1024}}, 50257, {0}, 0},
    {"gpt2-large", {1, {32}}, 50257, {0, 0, 0, 32, LK_GELU_ERF}, 0},
    {"gpt2-xl", {1, {1024}}, 50257, {0}, 0},
    {"autoencoder", {3, {1, 28, 28}}, 10, {0}, 1},
    {"vae", {3, {1, 28, 28}}, 10, {0}, 1},
    {"gan", {3, {1, 28, 28}}, 10, {0}, 1},
};

static lk_model *empty_model(const lk_shape *sample)
{
    lk_model *m;
    TU_OK(lk_model_create(&m, tu_cpu(), sample));
    return m;
}

static void same_layers(const lk_model *a, const lk_model *b, const char *name)
{
    char s1[64], s2[64];
    if (a->nlayers != b->nlayers) fail_msg("%s: %d layers, the reference %d", name, a->nlayers, b->nlayers);
    if (!lk_shape_equal(&a->in_shape, &b->in_shape)) fail_msg("%s: the input differs", name);
    for (int i = 0; i < a->nlayers; i++) {
        const lk_layer *x = a->layers[i], *y = b->layers[i];
        if (x->vt != y->vt || !lk_shape_equal(&x->out, &y->out) || x->nparams != y->nparams ||
            x->block_begin != y->block_begin || x->input_f32 != y->input_f32 || x->out_valid != y->out_valid ||
            (x->grads_into ? x->grads_into->index : -1) != (y->grads_into ? y->grads_into->index : -1))
            fail_msg("%s: layer %d: %s %s, the reference %s %s", name, i, x->vt->type,
                     lk_shape_str(&x->out, s1, sizeof s1), y->vt->type, lk_shape_str(&y->out, s2, sizeof s2));
        for (int j = 0; j < x->nparams; j++) {
            const lk_param *p = &x->params[j], *q = &y->params[j];
            if (strcmp(p->name, q->name) || !lk_shape_equal(&p->shape, &q->shape) || p->fan_in != q->fan_in ||
                p->fan_out != q->fan_out || p->is_bias != q->is_bias || p->buffer != q->buffer ||
                p->fixed != q->fixed || p->fixed_std != q->fixed_std || p->default_bound != q->default_bound ||
                p->pad_rows != q->pad_rows)
                fail_msg("%s: layer %d's %s differs from the reference's", name, i, p->name);
        }
    }
}

/* Forward with the same input, a fixed output gradient, backward, one AdamW step: every
 * buffer the same bits. */
static void same_step(lk_model *a, lk_model *b, const zoo_case *c)
{
    lk_device *d = tu_cpu();
    const int B = 3;
    lk_model *m[2] = {a, b};
    float *out[2] = {NULL, NULL}, *params[2] = {NULL, NULL};
    const size_t nx = (size_t)B * lk_shape_numel(&a->in_shape);
    float *x = malloc(nx * sizeof *x);
    for (size_t i = 0; i < nx; i++)
        x[i] = c->sample.ndim == 1 ? (float)lk_rng_below(5, LK_RNG_TEST, 0, i, (uint64_t)c->classes)
                                   : lk_rng_uniform(5, LK_RNG_TEST, 0, i);
    size_t nout = 0;
    for (int k = 0; k < 2; k++) {
        TU_OK(lk_model_build(m[k], B));
        TU_OK(lk_model_init(m[k], LK_INIT_DEFAULT, 11));
    }
    assert_int_equal(a->nparams, b->nparams);
    assert_int_equal(a->nbuffers, b->nbuffers);
    const size_t np = a->nparams + a->nbuffers;
    if (memcmp(a->params, b->params, np * sizeof(float))) fail_msg("%s: initial weights differ", c->name);
    for (int k = 0; k < 2; k++) {
        lk_tensor y;
        lk_copy_to_device(d, lk_model_input(m[k]), x, nx * sizeof *x);
        TU_OK(lk_model_forward(m[k], B, 1, 0, &y));
        nout = lk_tensor_numel(&y);
        out[k] = malloc(nout * sizeof(float));
        lk_copy_to_host(d, out[k], y.data, nout * sizeof(float));
        float *g = malloc(nout * sizeof(float));
        for (size_t i = 0; i < nout; i++) g[i] = lk_rng_uniform(6, LK_RNG_TEST, 0, i) - 0.5f;
        lk_copy_to_device(d, m[k]->dout, g, nout * sizeof(float));
        free(g);
        TU_OK(lk_model_backward_ex(m[k], B, 0, LK_GRADS_REPLACE));
        lk_optim_config oc = lk_optim_defaults(LK_OPT_ADAMW);
        lk_optim *o;
        TU_OK(lk_optim_create(&o, d, &oc, m[k]->nparams));
        TU_OK(lk_optim_step(o, m[k]->params, m[k]->grads, 1.0f));
        lk_optim_destroy(o);
        params[k] = m[k]->params;
    }
    if (memcmp(out[0], out[1], nout * sizeof(float))) fail_msg("%s: outputs differ", c->name);
    if (memcmp(a->grads, b->grads, a->nparams * sizeof(float))) fail_msg("%s: gradients differ", c->name);
    if (memcmp(params[0], params[1], np * sizeof(float))) fail_msg("%s: the step's weights differ", c->name);
    free(out[0]);
    free(out[1]);
    free(x);
}

static void test_builtin_specs_are_the_zoo(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const zoo_case *c = &cases[i];
        lk_model *a = empty_model(&c->sample), *b = empty_model(&c->sample);
        TU_OK(lk_zoo_build(c->name, a, c->classes, &c->arch));
        const ref_row *r = NULL;
        for (size_t k = 0; k < sizeof refs / sizeof *refs; k++)
            if (!strcmp(refs[k].name, c->name)) r = &refs[k];
        assert_non_null(r);
        TU_OK(r->build(b, c->classes, &c->arch));
        same_layers(a, b, c->name);
        if (c->run) same_step(a, b, c);
        lk_model_destroy(a);
        lk_model_destroy(b);
    }
    /* every built-in spec is covered, and printed back it parses to the same spec */
    for (int i = 0; i < lk_zoo_count(); i++) {
        int found = 0;
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) found |= !strcmp(cases[k].name, lk_zoo_name(i));
        if (!found) fail_msg("built-in %s has no case", lk_zoo_name(i));
        const lk_spec *s = tu_builtin(lk_zoo_name(i));
        assert_string_equal(lk_spec_name(s), lk_zoo_name(i));
        assert_true(lk_spec_is_builtin(s));
        lk_spec *again;
        TU_OK(lk_spec_parse(lk_spec_text(s), "printed", &again));
        assert_string_equal(lk_spec_text(again), lk_spec_text(s));
        assert_true(lk_spec_is_builtin(again));
        lk_spec_free(again);
    }
}

static void test_sizes_and_bases(void **state)
{
    (void)state;
    lk_arch a;
    TU_OK(lk_arch_for("gpt2-medium", NULL, &a)); /* its base is gpt2: the vars over gpt2's */
    assert_int_equal(a.layers, 24), assert_int_equal(a.heads, 16), assert_int_equal(a.dim, 1024);
    assert_int_equal(a.ctx, 1024), assert_int_equal(a.gelu, LK_GELU_TANH);
    TU_FAILS_WITH(lk_arch_for("cnn", &(lk_arch){2, 0, 0, 0, LK_GELU_DEFAULT}, &a), LK_ERR_ARG,
                  "--layers 2: model cnn has no size 'layers'");
    TU_FAILS_WITH(lk_arch_for("mlp", &(lk_arch){0, 0, 0, 0, LK_GELU_TANH}, &a), LK_ERR_ARG, "--gelu");
    TU_OK(lk_arch_for("mlp", &(lk_arch){0, 0, 0, 32, LK_GELU_DEFAULT}, &a)); /* token windows for any model */
    assert_int_equal(a.ctx, 32);
    /* a user's spec over a base, with expressions: sizes from vars, classes, shape(i), sqrt */
    const char *text = "{\"name\": \"wide-gpt\", \"base\": \"gpt\", \"vars\": {\"dim\": 64, \"heads\": 2, "
                       "\"layers\": 1, \"ctx\": 8}}";
    lk_spec *s;
    TU_OK(lk_spec_parse(text, "wide-gpt.json", &s));
    assert_false(lk_spec_is_builtin(s));
    assert_true(lk_spec_entry(s)->tokens);
    lk_model *m = empty_model(&(lk_shape){1, {8}});
    TU_OK(lk_spec_build(s, m, 11, NULL));
    assert_int_equal(m->layers[0]->params[0].shape.d[1], 64); /* wte [11, 64] */
    lk_model_destroy(m);
    m = empty_model(&(lk_shape){1, {8}});
    TU_FAILS_WITH(lk_spec_build(s, m, 11, &(lk_arch){0, 0, 0, 16, LK_GELU_DEFAULT}), LK_ERR_SHAPE,
                  "needs token windows of --ctx 16");
    lk_model_destroy(m);
    lk_spec_free(s);
    text = "{\"name\": \"e\", \"vars\": {\"h\": \"2 * base\", \"base\": 24, \"sd\": \"0.02 / sqrt(2 * 12)\"}, "
           "\"layers\": [{\"type\": \"reshape\", \"shape\": [\"shape(-2)\", -1]},"
           " {\"type\": \"linear\", \"out\": \"h + classes - 3\", \"init\": {\"std\": \"sd\"}}]}";
    TU_OK(lk_spec_parse(text, "e.json", &s));
    m = empty_model(&(lk_shape){3, {1, 6, 4}});
    TU_OK(lk_spec_build(s, m, 5, NULL));
    assert_int_equal(m->layers[0]->out.d[0], 6), assert_int_equal(m->layers[0]->out.d[1], 4);
    assert_int_equal(m->layers[1]->out.d[1], 50);
    assert_true(m->layers[1]->params[0].fixed_std == 0.02f / sqrtf(24.0f)); /* float arithmetic, as C's */
    assert_int_equal(m->layers[1]->params[1].fixed, LK_PINIT_ZEROS);
    lk_model_destroy(m);
    lk_spec_free(s);
}

/* A spec's error: the code, and every needle in the message. */
static void bad(const char *text, const lk_shape *sample, lk_status code, const char *n1, const char *n2)
{
    lk_spec *s = NULL;
    lk_status st = lk_spec_parse(text, "net.json", &s);
    lk_model *m = NULL;
    if (st == LK_OK) {
        m = empty_model(sample);
        st = lk_spec_build(s, m, 10, NULL);
    }
    const char *msg = lk_error_message();
    if (st != code) fail_msg("%s: status %d, expected %d (%s)", text, st, code, msg);
    if (!strstr(msg, n1) || (n2 && !strstr(msg, n2)))
        fail_msg("%s: the message '%s' lacks '%s' or '%s'", text, msg, n1, n2 ? n2 : "");
    lk_model_destroy(m);
    lk_spec_free(s);
}

static void test_bad_specs(void **state)
{
    (void)state;
    const lk_shape img = {3, {1, 28, 28}}, flat = {1, {784}};
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"flatten\"}, {\"type\": \"dense\", \"out\": 3}]}", &img,
        LK_ERR_ARG, "layers[1] ({\"type\":\"dense\",\"out\":3}): unknown layer type 'dense'", "known: linear");
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"flatten\"}, {\"type\": \"conv2d\", \"out\": 8, \"kernel\": 3}]}",
        &img, LK_ERR_SHAPE, "layers[1]", "conv2d takes images [C, H, W]; its input is [784]");
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"linear\"}]}", &flat, LK_ERR_ARG, "layers[0]",
        "missing field \"out\"");
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"linear\", \"out\": 4, \"size\": 3}]}", &flat, LK_ERR_ARG,
        "a linear layer has no field \"size\"", NULL);
    bad("{\"layers\": [{\"type\": \"linear\", \"out\": 4}]}", &flat, LK_ERR_ARG, "missing field \"name\"", NULL);
    bad("{\"name\": \"n\"}", &flat, LK_ERR_ARG, "missing field \"layers\"", NULL);
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"linear\", \"out\": 4}", &flat, LK_ERR_FORMAT, "not valid JSON",
        NULL);
    bad("{\"name\": \"n\", \"blocks\": {\"a\": [{\"type\": \"block\", \"name\": \"b\"}], \"b\": [{\"type\": "
        "\"residual\", \"layers\": [{\"type\": \"block\", \"name\": \"a\"}]}]}, \"layers\": [{\"type\": \"block\", "
        "\"name\": \"a\"}]}",
        &flat, LK_ERR_ARG, "block 'a' contains itself", NULL);
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"residual\", \"layers\": [{\"type\": \"linear\", \"out\": 3}]}]}",
        &flat, LK_ERR_SHAPE, "layers[0]", "its input is [3]");
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"linear\", \"out\": \"2 * width\"}]}", &flat, LK_ERR_ARG,
        "\"out\": unknown name 'width'", NULL);
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"linear\", \"out\": \"classes / 3\"}]}", &flat, LK_ERR_ARG,
        "is 3.33333: a whole number", NULL);
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"tied_head\"}]}", &flat, LK_ERR_ARG,
        "a tied head needs an embedding before it", NULL);
    bad("{\"name\": \"n\", \"layers\": [{\"type\": \"repeat\", \"times\": 100000, \"layers\": [{\"type\": \"repeat\", "
        "\"times\": 100000, \"layers\": []}]}]}",
        &flat, LK_ERR_ARG, "more than 1000000 layers expanded", NULL);
    bad("{\"name\": \"g\", \"latent\": 8, \"generator\": [{\"type\": \"linear\", \"out\": 100}], \"discriminator\": "
        "[{\"type\": \"linear\", \"out\": 1}], \"loss\": \"bce_logits\"}",
        &img, LK_ERR_SHAPE, "the generator makes [100], the data's samples are [1, 28, 28]", NULL);
    bad("{\"name\": \"n\", \"loss\": \"mse\", \"layers\": [{\"type\": \"flatten\"}]}", &flat, LK_ERR_ARG,
        "target labels needs loss cross_entropy", NULL);
    bad("{\"name\": \"n\", \"init\": \"glorot\", \"layers\": [{\"type\": \"flatten\"}]}", &flat, LK_ERR_ARG,
        "\"init\" is a scheme of --init's", NULL);
    bad("{\"name\": \"n\", \"base\": \"resnet\", \"layers\": []}", &flat, LK_ERR_ARG, "\"base\" names a built-in",
        NULL);
    bad("{\"name\": \"n\", \"vars\": {\"a\": \"2 * b\", \"b\": \"a + 1\"}, \"layers\": [{\"type\": \"linear\", "
        "\"out\": \"a\"}]}",
        &flat, LK_ERR_ARG, "var 'a' needs itself (a cycle)", NULL);
    bad("{\"name\": \"n\", \"vars\": {\"input\": 3}, \"layers\": [{\"type\": \"flatten\"}]}", &flat, LK_ERR_ARG,
        "var 'input' is a reserved name", NULL);
    char text[4096], deep[160];
    memset(deep, '(', 70), deep[70] = '1', memset(deep + 71, ')', 70), deep[141] = 0;
    snprintf(text, sizeof text, "{\"name\": \"n\", \"layers\": [{\"type\": \"linear\", \"out\": \"%s\"}]}", deep);
    bad(text, &flat, LK_ERR_ARG, "nested more than 64 deep", NULL);
    int k = snprintf(text, sizeof text, "{\"name\": \"n\", \"layers\": [{\"type\": \"block\", \"name\": \"b0\"}], "
                                        "\"blocks\": {");
    for (int i = 0; i < 40; i++)
        k += snprintf(text + k, sizeof text - (size_t)k, "%s\"b%d\": [{\"type\": \"block\", \"name\": \"b%d\"}]",
                      i ? ", " : "", i, i + 1);
    snprintf(text + k, sizeof text - (size_t)k, ", \"b40\": [{\"type\": \"flatten\"}]}}");
    bad(text, &flat, LK_ERR_ARG, "nested deeper than 32", NULL);
    TU_FAILS_WITH(lk_spec_builtin("resnet", &(lk_spec *){NULL}), LK_ERR_ARG, "unknown --model 'resnet'");
    TU_FAILS_WITH(lk_spec_load("/nonexistent/net.json", &(lk_spec *){NULL}), LK_ERR_IO, "/nonexistent/net.json");
}

/* A checkpoint keeps the spec (model.json), and one without it reads the built-in model. */
static void test_checkpoint_keeps_the_spec(void **state)
{
    (void)state;
    const char *text = "{\"name\": \"tiny\", \"layers\": [{\"type\": \"flatten\"}, {\"type\": \"linear\", "
                       "\"out\": \"classes\"}]}";
    lk_spec *s, *back;
    TU_OK(lk_spec_parse(text, "tiny.json", &s));
    lk_model *m = empty_model(&(lk_shape){1, {6}});
    TU_OK(lk_spec_build(s, m, 3, NULL));
    TU_OK(lk_model_build(m, 2));
    lk_run_config rc = {0};
    snprintf(rc.model, sizeof rc.model, "tiny");
    rc.in_shape = m->in_shape, rc.nclasses = 3, rc.batch = rc.world = rc.accum = 1;
    rc.optim = lk_optim_defaults(LK_OPT_SGD);
    rc.spec = s;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ckpt", tu_tmpdir());
    TU_OK(lk_ckptdir_save(dir, &rc, m, NULL, 1, NULL, NULL));
    lk_run_config got;
    TU_OK(lk_ckptdir_load_config(dir, &got));
    TU_OK(lk_ckptdir_open_spec(dir, &got, &back));
    assert_string_equal(lk_spec_text(back), lk_spec_text(s));
    lk_spec_free(back);
    char path[700];
    snprintf(path, sizeof path, "%s/model.json", dir);
    remove(path);
    snprintf(got.model, sizeof got.model, "mlp"); /* (an older checkpoint: the built-in model by name) */
    TU_OK(lk_ckptdir_open_spec(dir, &got, &back));
    assert_true(lk_spec_is_builtin(back));
    lk_spec_free(back);
    const char *other = "{\"name\": \"other\", \"layers\": [{\"type\": \"flatten\"}]}";
    tu_write("ckpt/model.json", other, strlen(other));
    TU_FAILS_WITH(lk_ckptdir_open_spec(dir, &got, &back), LK_ERR_FORMAT, "model 'other', but config.json says 'mlp'");
    lk_model_destroy(m);
    lk_spec_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_specs_are_the_zoo),
        cmocka_unit_test(test_sizes_and_bases),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_checkpoint_keeps_the_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
