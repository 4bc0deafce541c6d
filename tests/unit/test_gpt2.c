/* test_gpt2.c - the GPT-2 presets: their sizes and what --ctx/--layers may change, the
 * parameter count of GPT-2 124M (124,439,808, the published one), GPT-2's initialisation
 * (N(0, 0.02^2), residual projections 0.02 / sqrt(2 layers), zero biases, unit norms),
 * the tensors GPT-2's recipe decays, the vocabulary padded to 50304 (not counted), and
 * the FLOPs per token (6N + 12 L C T, with the model's 50257). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/ops.h"
#include "models/zoo.h"
#include "testutil.h"

static void test_arch(void **state)
{
    (void)state;
    lk_arch a;
    TU_OK(lk_arch_for("gpt2", NULL, &a));
    assert_true(a.layers == 12 && a.heads == 12 && a.dim == 768 && a.ctx == 1024 && a.gelu == LK_GELU_TANH);
    TU_OK(lk_arch_for("gpt2-medium", NULL, &a));
    assert_true(a.layers == 24 && a.heads == 16 && a.dim == 1024 && a.ctx == 1024);
    TU_OK(lk_arch_for("gpt2-large", NULL, &a));
    assert_true(a.layers == 36 && a.heads == 20 && a.dim == 1280);
    TU_OK(lk_arch_for("gpt2-xl", NULL, &a));
    assert_true(a.layers == 48 && a.heads == 25 && a.dim == 1600);
    /* a preset's context may shorten and its GELU change; its shape may not */
    TU_OK(lk_arch_for("gpt2", &(lk_arch){0, 0, 0, 64, LK_GELU_ERF}, &a));
    assert_true(a.ctx == 64 && a.gelu == LK_GELU_ERF && a.dim == 768);
    TU_OK(lk_arch_for("gpt2", &(lk_arch){12, 12, 768, 0, LK_GELU_DEFAULT}, &a)); /* the same sizes */
    TU_FAILS_WITH(lk_arch_for("gpt2", &(lk_arch){0, 0, 0, 2048, LK_GELU_DEFAULT}, &a), LK_ERR_ARG,
                  "context is at most 1024");
    TU_FAILS_WITH(lk_arch_for("gpt2-medium", &(lk_arch){0, 0, 512, 0, LK_GELU_DEFAULT}, &a), LK_ERR_ARG,
                  "--dim 512");
    /* the small gpt takes every size, and keeps the exact GELU */
    TU_OK(lk_arch_for("gpt", &(lk_arch){2, 2, 64, 32, LK_GELU_DEFAULT}, &a));
    assert_true(a.layers == 2 && a.dim == 64 && a.ctx == 32 && a.gelu == LK_GELU_ERF);
    TU_OK(lk_arch_for("cnn", NULL, &a)); /* no sizes: text windows keep the default */
    assert_int_equal(a.ctx, 128);
}

static lk_model *build(const char *name, int vocab, int ctx)
{
    lk_model *m;
    lk_shape s = lk_shape_make(1, &ctx);
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    TU_OK(lk_zoo_build(name, m, vocab, &(lk_arch){0, 0, 0, ctx, LK_GELU_DEFAULT}));
    TU_OK(lk_model_build(m, 1));
    return m;
}

static void test_parameter_count_and_flops(void **state)
{
    (void)state;
    /* GPT-2 124M as published (the head tied to the token embedding) */
    lk_model *m = build("gpt2", 50257, 1024);
    assert_int_equal(lk_model_trainable(m), 124439808);
    /* the vocabulary padded to 50304 rows (never counted, saved or predicted) */
    const lk_param *wte = lk_model_param(m, 0, NULL, 0);
    assert_true(wte->shape.d[0] == 50257 && wte->pad_rows == 47);
    assert_true(lk_model_out_shape(m).d[1] == 50304 && lk_model_out_valid(m) == 50257);
    /* FLOPs per token: 6 N + 12 L C T, N the parameters of the products: every weight
     * matrix, the token embedding once (as the head), not positions, biases or norms */
    const double L = 12, C = 768, T = 1024, V = 50257;
    const double n = L * (C * 3 * C + C * C + C * 4 * C + 4 * C * C) + V * C;
    const double want = 3.0 * lk_model_flops(m, 0, m->nlayers) / T;
    assert_true(fabs(want - (6.0 * n + 12.0 * L * C * T)) < 1e-6 * want);
    /* GELU in the tanh form */
    int tanh_gelus = 0;
    for (int i = 0; i < m->nlayers; i++) tanh_gelus += !strcmp(m->layers[i]->vt->type, "gelu_tanh");
    assert_int_equal(tanh_gelus, 12);
    lk_model_destroy(m);
    /* a shorter context has fewer positions */
    m = build("gpt2", 50257, 64);
    assert_int_equal(lk_model_trainable(m), 124439808 - (1024 - 64) * 768);
    lk_model_destroy(m);
}

/* mean and standard deviation of a tensor's values */
static void moments(lk_model *m, const lk_param *p, double *mean, double *sd)
{
    size_t n = lk_shape_numel(&p->shape);
    float *h = malloc(n * sizeof *h);
    lk_copy_to_host(m->dev, h, p->w, n * sizeof *h);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += h[i], s2 += (double)h[i] * h[i];
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
    free(h);
}

static void test_init_and_decay(void **state)
{
    (void)state;
    lk_model *m = build("gpt2", 512, 32);
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 5)); /* --init is ignored by the presets */
    const double proj = 0.02 / sqrt(24.0);
    int checked = 0;
    for (int i = 0; i < lk_model_param_count(m); i++) {
        char name[64];
        const lk_param *p = lk_model_param(m, i, name, sizeof name);
        double mean, sd;
        moments(m, p, &mean, &sd);
        const char *dot = strchr(name, '.') + 1;
        const int layer = atoi(name);
        const int mlp_proj = layer > 0 && !strcmp(m->layers[layer - 1]->vt->type, "gelu_tanh");
        double want_sd;
        if (!strcmp(dot, "c_proj.weight") || (mlp_proj && !strcmp(dot, "weight"))) want_sd = proj;
        else if (p->is_bias || !strcmp(m->layers[layer]->vt->type, "layernorm")) want_sd = 0.0;
        else want_sd = 0.02;
        if (want_sd > 0) {
            assert_true(fabs(mean) < 0.1 * want_sd);
            if (fabs(sd - want_sd) > 0.05 * want_sd)
                fail_msg("%s: standard deviation %g, expected %g", name, sd, want_sd);
        } else {
            /* biases 0, norms' weights 1 and biases 0 */
            const double want = !p->is_bias && !strcmp(m->layers[layer]->vt->type, "layernorm") ? 1.0 : 0.0;
            assert_true(sd == 0.0 && mean == want);
        }
        checked++;
    }
    assert_int_equal(checked, lk_model_param_count(m));
    /* GPT-2's recipe decays matrices and embeddings: exactly the 2-D tensors */
    size_t *r;
    int nr;
    TU_OK(lk_model_decay_ranges(m, &r, &nr));
    size_t decayed = 0, matrices = 0;
    for (int k = 0; k < nr; k++) decayed += r[2 * k + 1] - r[2 * k];
    for (int i = 0; i < lk_model_param_count(m); i++) {
        const lk_param *p = lk_model_param(m, i, NULL, 0);
        int inside = 0;
        for (int k = 0; k < nr; k++) inside |= p->offset >= r[2 * k] && p->offset < r[2 * k + 1];
        assert_int_equal(inside, p->shape.ndim >= 2);
        if (p->shape.ndim >= 2) matrices += (lk_param_storage(p) + 15) / 16 * 16;
    }
    assert_int_equal(decayed, matrices);
    lk_free(r);
    lk_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arch),
        cmocka_unit_test(test_parameter_count_and_flops),
        cmocka_unit_test(test_init_and_decay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
