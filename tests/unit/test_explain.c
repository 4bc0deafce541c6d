/* test_explain.c - attributions (train/explain.h) on `mlp`, `cnn` and `cnn-bn` (batch norm
 * in evaluation mode, whose backward then treats the running statistics as constants):
 * the input gradient against central finite differences of the logit (away from kinks);
 * integrated gradients' completeness within 1% (64 steps; 256 for cnn-bn); occlusion against the logit of the
 * occluded image computed directly; saliency the gradient's magnitude. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/zoo.h"
#include "testutil.h"
#include "train/explain.h"

#define D 784

/* the model, built for attributions; batch norm's running statistics made non-trivial */
static lk_model *attr_model(const char *name)
{
    lk_model *m;
    const lk_shape s = {3, {1, 28, 28}};
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    TU_OK(lk_zoo_build(name, m, 10, NULL));
    m->input_grad = m->backward_eval = 1;
    TU_OK(lk_model_build(m, 8));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 3));
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            lk_param *p = &m->layers[i]->params[j];
            if (!p->buffer || strncmp(p->name, "running_", 8)) continue;
            const int var = !strcmp(p->name, "running_var");
            for (size_t k = 0; k < lk_shape_numel(&p->shape); k++) /* (host memory: the CPU device) */
                p->w[k] = var ? 0.5f + lk_rng_uniform(9, LK_RNG_TEST, (uint64_t)i, k) : 0.1f * (float)k / 64.0f;
        }
    return m;
}

static void image(float *x, uint64_t key)
{
    for (int i = 0; i < D; i++) x[i] = lk_rng_uniform(7, LK_RNG_TEST, key, (uint64_t)i);
}

static double logit(lk_model *m, const float *x, int t)
{
    double f;
    TU_OK(lk_attr_scores(m, x, 1, t, &f, NULL));
    return f;
}

static void test_gradient_against_differences(void **state)
{
    (void)state;
    const char *models[3] = {"mlp", "cnn", "cnn-bn"};
    for (int k = 0; k < 3; k++) {
        lk_model *m = attr_model(models[k]);
        float x[D], g[D], sal[D], xp[D];
        image(x, 1);
        double f;
        TU_OK(lk_attr_scores(m, x, 1, 4, &f, g));
        TU_OK(lk_attr_saliency(m, x, 4, sal, NULL));
        float top = 0.0f;
        for (int i = 0; i < D; i++) {
            top = fmaxf(top, fabsf(g[i]));
            if (sal[i] != fabsf(g[i])) fail_msg("%s: saliency is not the gradient's magnitude at %d", models[k], i);
        }
        const double h = 1e-3;
        int checked = 0;
        for (int i = 0; i < D; i += 13) {
            memcpy(xp, x, sizeof xp);
            const double f0 = logit(m, xp, 4);
            xp[i] = x[i] + (float)h;
            const double up = logit(m, xp, 4);
            xp[i] = x[i] - (float)h;
            const double down = logit(m, xp, 4), fd = (up - down) / (2 * h);
            /* (a ReLU or a max-pool switching inside [x - h, x + h]: the one-sided slopes differ) */
            if (fabs((up - f0) - (f0 - down)) / h > 1e-2 * top) continue;
            checked++;
            if (fabs(fd - g[i]) > 1e-2 * top)
                fail_msg("%s: d logit / d x[%d] %.6g, finite differences %.6g (largest %.3g)", models[k], i, g[i], fd,
                         top);
        }
        if (checked < 40) fail_msg("%s: only %d pixels away from a kink", models[k], checked);
        lk_model_destroy(m);
    }
}

static void test_ig_completeness(void **state)
{
    (void)state;
    /* mlp and cnn at 64 points; cnn-bn (batch norm's evaluation backward) at 256: a fresh
     * model's logits move little, so its kinks weigh more than a trained one's */
    const char *models[3] = {"mlp", "cnn", "cnn-bn"};
    const int steps[3] = {64, 64, 256};
    for (int k = 0; k < 3; k++) {
        lk_model *m = attr_model(models[k]);
        for (int img = 0; img < 3; img++) {
            float x[D], base[D], attr[D];
            image(x, 10 + (uint64_t)img);
            memset(base, 0, sizeof base);
            int t = 0; /* the class whose logit moves most from the baseline */
            double best = -1;
            for (int c = 0; c < 10; c++) {
                const double d = fabs(logit(m, x, c) - logit(m, base, c));
                if (d > best) best = d, t = c;
            }
            double fx, fb, sum = 0;
            TU_OK(lk_attr_ig(m, x, base, t, steps[k], attr, &fx, &fb));
            for (int i = 0; i < D; i++) sum += attr[i];
            const double gap = fabs(sum - (fx - fb)) / fabs(fx - fb);
            if (!(gap < 0.01))
                fail_msg("%s image %d class %d: sum %.6g, f(x) - f(x') %.6g: gap %.3f%%", models[k], img, t, sum,
                         fx - fb, 100 * gap);
        }
        lk_model_destroy(m);
    }
}

static void test_occlusion_direct(void **state)
{
    (void)state;
    lk_model *m = attr_model("cnn");
    float x[D], base[D], attr[D], occluded[D];
    image(x, 20);
    for (int i = 0; i < D; i++) base[i] = 0.25f;
    TU_OK(lk_attr_occlusion(m, x, base, 2, 7, 7, attr, NULL)); /* windows that tile the image */
    const double fx = logit(m, x, 2);
    for (int wy = 0; wy < 4; wy++)
        for (int wx = 0; wx < 4; wx++) {
            memcpy(occluded, x, sizeof occluded);
            for (int y = wy * 7; y < wy * 7 + 7; y++)
                for (int xx = wx * 7; xx < wx * 7 + 7; xx++) occluded[y * 28 + xx] = 0.25f;
            const double want = fx - logit(m, occluded, 2);
            const float got = attr[(wy * 7 + 3) * 28 + wx * 7 + 3];
            if (fabs(got - want) > 1e-5 * (1 + fabs(want)))
                fail_msg("window (%d, %d): %.6g, directly %.6g", wy, wx, got, want);
        }
    TU_FAILS_WITH(lk_attr_occlusion(m, x, base, 2, 29, 1, attr, NULL), LK_ERR_ARG, "--window 29");
    TU_FAILS_WITH(lk_attr_scores(m, x, 1, 10, &(double){0}, NULL), LK_ERR_ARG, "--target 10");
    lk_model_destroy(m);
}

/* a fresh gpt (vocabulary 50, window 16): the next token's logit attributed to 11 prompt
 * tokens adds up to f(x) - f(positions alone) within 1% at 64 points */
static void test_tokens_completeness(void **state)
{
    (void)state;
    lk_model *m;
    const lk_shape s = {1, {16}};
    TU_OK(lk_model_create(&m, tu_cpu(), &s));
    TU_OK(lk_zoo_build("gpt", m, 50, &(lk_arch){2, 2, 32, 16, LK_GELU_DEFAULT}));
    m->input_grad = m->backward_eval = 1;
    TU_OK(lk_model_build(m, 4));
    TU_OK(lk_model_init(m, LK_INIT_DEFAULT, 5));
    float ids[16] = {0}, attr[16];
    for (int i = 0; i < 11; i++) ids[i] = (float)lk_rng_below(3, LK_RNG_TEST, 0, (uint64_t)i, 50);
    for (int t = 0; t < 50; t += 7) {
        double fx, fb, sum = 0;
        TU_OK(lk_attr_tokens(m, ids, 11, t, 64, attr, &fx, &fb));
        for (int i = 0; i < 11; i++) sum += attr[i];
        if (!(fabs(sum - (fx - fb)) <= 0.01 * fabs(fx - fb) + 1e-6))
            fail_msg("token %d: sum %.6g, f(x) - f(x') %.6g", t, sum, fx - fb);
    }
    TU_FAILS_WITH(lk_attr_tokens(m, ids, 17, 0, 64, attr, NULL, NULL), LK_ERR_ARG, "17 prompt tokens");
    lk_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_against_differences),
        cmocka_unit_test(test_ig_completeness),
        cmocka_unit_test(test_occlusion_direct),
        cmocka_unit_test(test_tokens_completeness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
