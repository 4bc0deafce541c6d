/* test_recompute.c - --recompute act and block give the loss and every gradient of
 * --recompute none bitwise (the same kernels on the same values, in the same order), over
 * two steps with replacing and adding backwards, in fp32 and bf16; keep fewer activations
 * (block: only the residual blocks' inputs, one block's worth shared); leave models without
 * blocks or cheap layers as they are; and a model built dry (sizes only) has the same sizes
 * as a real one, with nothing behind its pointers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/ops.h"
#include "models/zoo.h"
#include "testutil.h"

typedef tu_zoo_spec spec;

static lk_model *build_in(const spec *sp, lk_recompute r, lk_build how, lk_dtype t) { return tu_zoo_model(sp, r, t, how); }
static lk_model *build(const spec *sp, lk_recompute r, lk_build how) { return build_in(sp, r, how, LK_F32); }

/* two steps (the second's backward adds to the first's gradients) of a made-up loss: dout
 * a fixed function of the output; returns the gradients and the outputs, host copies */
static void run(lk_model *m, const spec *sp, float *grads, float *outs)
{
    const size_t in = lk_shape_numel(&sp->sample) * (size_t)sp->batch;
    float *x = lk_model_input(m);
    for (int step = 0; step < 2; step++) {
        for (size_t i = 0; i < in; i++)
            x[i] = sp->classes > 0 && sp->sample.ndim == 1 && !strncmp(sp->name, "gpt", 3)
                       ? (float)((i * 7 + (size_t)step * 3) % (size_t)sp->classes) /* token ids */
                       : (float)((i * 37 + (size_t)step) % 101) / 101.0f;
        lk_tensor out;
        TU_OK(lk_model_forward(m, sp->batch, 1, step, &out));
        const size_t n = lk_tensor_numel(&out);
        memcpy(outs + (size_t)step * n, out.data, n * sizeof(float));
        for (size_t i = 0; i < n; i++) m->dout[i] = out.data[i] * 0.01f - (float)(i % 5) * 0.003f;
        TU_OK(lk_model_backward_ex(m, sp->batch, step, step == 0 ? LK_GRADS_REPLACE : LK_GRADS_ADD));
    }
    memcpy(grads, m->grads, m->nparams * sizeof(float));
}

static void check_same_in(const spec *sp, lk_recompute r, double max_ratio, lk_dtype t)
{
    lk_model *a = build_in(sp, LK_RECOMPUTE_NONE, LK_BUILD_FULL, t), *b = build_in(sp, r, LK_BUILD_FULL, t);
    assert_int_equal(a->nparams, b->nparams);
    lk_shape os = lk_model_out_shape(a);
    const size_t nout = lk_shape_numel(&os) * (size_t)sp->batch * 2;
    float *ga = malloc(a->nparams * sizeof(float)), *gb = malloc(a->nparams * sizeof(float));
    float *oa = malloc(nout * sizeof(float)), *ob = malloc(nout * sizeof(float));
    run(a, sp, ga, oa);
    run(b, sp, gb, ob);
    if (memcmp(oa, ob, nout * sizeof(float)))
        fail_msg("%s --recompute %s: the outputs differ from none's", sp->name, lk_recompute_name(r));
    for (size_t i = 0; i < a->nparams; i++)
        if (memcmp(&ga[i], &gb[i], sizeof(float)))
            fail_msg("%s --recompute %s: gradient %zu is %.9g, none's %.9g", sp->name, lk_recompute_name(r), i,
                     (double)gb[i], (double)ga[i]);
    const double ratio = (double)b->act_bytes / (double)a->act_bytes;
    printf("%s%s --recompute %s: activations %.2f MB -> %.2f MB (%.2f)\n", sp->name, t == LK_BF16 ? " bf16" : "",
           lk_recompute_name(r), a->act_bytes / 1e6, b->act_bytes / 1e6, ratio);
    if (ratio > max_ratio)
        fail_msg("%s --recompute %s keeps %.2f of the activations, more than %.2f", sp->name,
                 lk_recompute_name(r), ratio, max_ratio);
    free(ga), free(gb), free(oa), free(ob);
    lk_model_destroy(a);
    lk_model_destroy(b);
}

static void check_same(const spec *sp, lk_recompute r, double max_ratio) { check_same_in(sp, r, max_ratio, LK_F32); }

static const spec GPT = {"gpt", {1, {32}}, 61, {3, 2, 32, 32, LK_GELU_DEFAULT}, 3};

static void test_gpt(void **state)
{
    (void)state;
    check_same(&GPT, LK_RECOMPUTE_ACT, 0.85);
    check_same(&GPT, LK_RECOMPUTE_BLOCK, 0.6);
    /* bf16: the recomputed outputs are stored (and rounded) as the kept ones */
    check_same_in(&GPT, LK_RECOMPUTE_ACT, 0.9, LK_BF16);
    check_same_in(&GPT, LK_RECOMPUTE_BLOCK, 0.55, LK_BF16);
}

static void test_other_models(void **state)
{
    (void)state;
    const spec mlp = {"mlp", {3, {1, 28, 28}}, 10, {0}, 4};
    const spec cnn = {"cnn-bn", {3, {1, 28, 28}}, 10, {0}, 3};
    const spec vae = {"vae", {3, {1, 28, 28}}, 10, {0}, 3};
    check_same(&mlp, LK_RECOMPUTE_ACT, 1.0);
    check_same(&mlp, LK_RECOMPUTE_BLOCK, 1.0); /* no blocks: nothing changes */
    check_same(&cnn, LK_RECOMPUTE_ACT, 1.0);
    check_same(&vae, LK_RECOMPUTE_ACT, 1.0);
}

/* A dry build has a real build's sizes; its memory is address space a touch would fault
 * on, so the plan's forward and backward touched nothing. */
static void test_dry_build(void **state)
{
    (void)state;
    for (int r = 0; r < 3; r++) {
        lk_model *a = build(&GPT, (lk_recompute)r, LK_BUILD_FULL), *d = build(&GPT, (lk_recompute)r, LK_BUILD_DRY);
        assert_int_equal(a->nparams, d->nparams);
        assert_int_equal(a->act_bytes, d->act_bytes);
        assert_int_equal(a->ws_bytes, d->ws_bytes);
        assert_true(d->dry && d->params && d->grads);
        TU_FAILS_WITH(lk_model_init(d, LK_INIT_DEFAULT, 1), LK_ERR_STATE, "built");
        lk_model_destroy(a);
        lk_model_destroy(d);
    }
    lk_model *m;
    TU_OK(lk_model_create(&m, tu_cpu(), &GPT.sample));
    TU_OK(lk_zoo_build(GPT.name, m, GPT.classes, &GPT.arch));
    TU_OK(lk_model_build(m, 2));
    TU_FAILS_WITH(lk_model_set_recompute(m, LK_RECOMPUTE_BLOCK), LK_ERR_STATE, "before");
    lk_model_destroy(m);
    lk_recompute r;
    TU_OK(lk_recompute_parse("block", &r));
    assert_int_equal(r, LK_RECOMPUTE_BLOCK);
    TU_FAILS_WITH(lk_recompute_parse("all", &r), LK_ERR_ARG, "none, act or block");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt),
        cmocka_unit_test(test_other_models),
        cmocka_unit_test(test_dry_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
