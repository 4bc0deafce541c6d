/* test_cuda_parity.c - every backend entry, forward and backward, on the CPU and on
 * CUDA with the same inputs, compared within stated tolerances:
 *   exact        dropout masks (the same Philox numbers), argmax, counts, transposes,
 *                embedding lookups
 *   1e-6         pooling, bias_add, sum of squares, scale, axpy, embedding gradients
 *   1e-5         activations, bias gradients, losses and their gradients, optimizer,
 *                LSTM and GRU cells, causal softmax, layer norm, the VAE's sampling
 *   1e-4         matrix products (batched too) and convolutions (other summation orders)
 * each relative to the largest magnitude of the CPU's result tensor (scalars: to
 * max(1, |value|)).
 * Without a GPU (or without a CUDA build) the test says why and exits 77, which
 * ctest reports as skipped. tests/run-gpu.sh runs it on a GPU machine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "core/rng.h"
#include "testutil.h"

static lk_device *CPU, *GPU;

/* random floats in [-1, 1) from the test stream */
static float *host_rand(size_t n, uint64_t a)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * lk_rng_uniform(99, LK_RNG_TEST, a, i) - 1.0f;
    return p;
}

/* a buffer on both devices with the same contents */
typedef struct {
    float *c, *g;
    size_t n;
} pair;

static pair pair_of(const float *host, size_t n)
{
    pair p = {lk_dev_alloc(CPU, n * sizeof(float) + 4), lk_dev_alloc(GPU, n * sizeof(float) + 4), n};
    assert_non_null(p.c);
    assert_non_null(p.g);
    memcpy(p.c, host, n * sizeof(float));
    lk_copy_to_device(GPU, p.g, host, n * sizeof(float));
    return p;
}
static pair pair_rand(size_t n, uint64_t a)
{
    float *h = host_rand(n, a);
    pair p = pair_of(h, n);
    free(h);
    return p;
}
static void pair_free(pair *p)
{
    lk_dev_free(CPU, p->c);
    lk_dev_free(GPU, p->g);
}

/* |gpu - cpu| <= tol * max|cpu| element by element: relative to the tensor's largest
 * magnitude, so small outputs (a softmax gradient ~1/n) are held to the same standard */
static void same(const char *what, const pair *p, double tol)
{
    float *h = malloc(p->n * sizeof *h + 4);
    lk_copy_to_host(GPU, h, p->g, p->n * sizeof *h);
    TU_OK(lk_device_status(GPU));
    double scale = 1e-30;
    for (size_t i = 0; i < p->n; i++) scale = fmax(scale, fabs(p->c[i]));
    for (size_t i = 0; i < p->n; i++)
        if (!(fabs((double)h[i] - p->c[i]) <= tol * scale))
            fail_msg("%s: [%zu] cuda %.9g, cpu %.9g (tolerance %g x %g)", what, i, (double)h[i],
                     (double)p->c[i], tol, scale);
    free(h);
}

static void test_gemm(void **state)
{
    (void)state;
    const int m = 37, n = 29, k = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            pair a = pair_rand((size_t)m * k, 1), b = pair_rand((size_t)k * n, 2),
                 c = pair_rand((size_t)m * n, 3);
            int lda = ta ? m : k, ldb = tb ? k : n;
            CPU->ops->gemm(CPU, ta, tb, m, n, k, 0.5f, a.c, lda, b.c, ldb, 1.0f, c.c, n);
            GPU->ops->gemm(GPU, ta, tb, m, n, k, 0.5f, a.g, lda, b.g, ldb, 1.0f, c.g, n);
            same("gemm", &c, 1e-4);
            pair_free(&a), pair_free(&b), pair_free(&c);
        }
}

static void test_bias(void **state)
{
    (void)state;
    const int shapes[][3] = {{64, 10, 1}, {3, 8, 49}, {1, 5, 1000}};
    for (int s = 0; s < 3; s++) {
        int o = shapes[s][0], c = shapes[s][1], in = shapes[s][2];
        size_t n = (size_t)o * c * in;
        pair y = pair_rand(n, 4), b = pair_rand((size_t)c, 5), db = pair_rand((size_t)c, 6);
        CPU->ops->bias_add(CPU, y.c, b.c, o, c, in);
        GPU->ops->bias_add(GPU, y.g, b.g, o, c, in);
        same("bias_add", &y, 1e-6);
        for (int beta = 0; beta < 2; beta++) {
            CPU->ops->bias_grad(CPU, db.c, y.c, o, c, in, (float)beta);
            GPU->ops->bias_grad(GPU, db.g, y.g, o, c, in, (float)beta);
            same("bias_grad", &db, 1e-5);
        }
        pair_free(&y), pair_free(&b), pair_free(&db);
    }
}

static void test_activations(void **state)
{
    (void)state;
    const size_t n = 10007;
    for (int act = LK_ACT_IDENTITY; act <= LK_ACT_GELU; act++) {
        pair x = pair_rand(n, 7), y = pair_rand(n, 8), dy = pair_rand(n, 9), dx = pair_rand(n, 10);
        for (size_t i = 0; i < n; i++) x.c[i] *= 4.0f; /* reach the saturated tails */
        lk_copy_to_device(GPU, x.g, x.c, n * sizeof(float));
        CPU->ops->act_forward(CPU, (lk_act)act, 0.1f, x.c, y.c, n);
        GPU->ops->act_forward(GPU, (lk_act)act, 0.1f, x.g, y.g, n);
        same("act_forward", &y, 1e-5);
        CPU->ops->act_backward(CPU, (lk_act)act, 0.1f, x.c, y.c, dy.c, dx.c, n);
        GPU->ops->act_backward(GPU, (lk_act)act, 0.1f, x.g, y.g, dy.g, dx.g, n);
        same("act_backward", &dx, 1e-5);
        pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    }
}

static void test_conv(void **state)
{
    (void)state;
    /* n c h w k kh kw stride pad */
    const int cases[][9] = {{4, 3, 12, 11, 8, 3, 3, 1, 1}, {2, 5, 9, 9, 4, 5, 5, 2, 2},
                            {3, 16, 7, 7, 6, 1, 1, 1, 0}, {2, 8, 10, 10, 16, 3, 3, 1, 0}};
    for (int t = 0; t < 4; t++) {
        const int *p = cases[t];
        lk_conv2d_desc cd = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[7], p[8], p[8], 0, 0};
        TU_OK(lk_conv2d_desc_init(&cd));
        size_t xn = (size_t)cd.n * cd.c * cd.h * cd.w, wn = (size_t)cd.k * cd.c * cd.kh * cd.kw,
               yn = (size_t)cd.n * cd.k * cd.oh * cd.ow;
        pair x = pair_rand(xn, 11), w = pair_rand(wn, 12), b = pair_rand((size_t)cd.k, 13),
             y = pair_rand(yn, 14), dy = pair_rand(yn, 15), dx = pair_rand(xn, 16),
             dw = pair_rand(wn, 17), db = pair_rand((size_t)cd.k, 18);
        void *cs = malloc(CPU->ops->conv2d_saved(CPU, &cd) + 1),
             *cw = malloc(CPU->ops->conv2d_workspace(CPU, &cd) + 1);
        void *gw = lk_dev_alloc(GPU, GPU->ops->conv2d_workspace(GPU, &cd) + 1);
        assert_int_equal(GPU->ops->conv2d_saved(GPU, &cd), 0);
        CPU->ops->conv2d_forward(CPU, &cd, x.c, w.c, b.c, y.c, cs, cw);
        GPU->ops->conv2d_forward(GPU, &cd, x.g, w.g, b.g, y.g, NULL, gw);
        same("conv2d_forward", &y, 1e-4);
        for (int beta = 0; beta < 2; beta++) {
            CPU->ops->conv2d_backward(CPU, &cd, x.c, w.c, dy.c, dx.c, dw.c, db.c, (float)beta, cs, cw);
            GPU->ops->conv2d_backward(GPU, &cd, x.g, w.g, dy.g, dx.g, dw.g, db.g, (float)beta, NULL, gw);
            same("conv2d_backward dx", &dx, 1e-4);
            same("conv2d_backward dw", &dw, 1e-4);
            same("conv2d_backward db", &db, 1e-4);
        }
        /* a shorter batch than planned, no bias, no dx (the first layer) */
        cd.n = 1;
        TU_OK(lk_conv2d_desc_init(&cd));
        CPU->ops->conv2d_forward(CPU, &cd, x.c, w.c, NULL, y.c, cs, cw);
        GPU->ops->conv2d_forward(GPU, &cd, x.g, w.g, NULL, y.g, NULL, gw);
        same("conv2d_forward, batch 1", &y, 1e-4);
        CPU->ops->conv2d_backward(CPU, &cd, x.c, w.c, dy.c, NULL, dw.c, NULL, 0.0f, cs, cw);
        GPU->ops->conv2d_backward(GPU, &cd, x.g, w.g, dy.g, NULL, dw.g, NULL, 0.0f, NULL, gw);
        same("conv2d_backward dw, batch 1", &dw, 1e-4);
        free(cs), free(cw);
        lk_dev_free(GPU, gw);
        pair_free(&x), pair_free(&w), pair_free(&b), pair_free(&y), pair_free(&dy), pair_free(&dx);
        pair_free(&dw), pair_free(&db);
    }
}

static void test_pool(void **state)
{
    (void)state;
    /* kh stride pad is_max */
    const int cases[][4] = {{2, 2, 0, 1}, {3, 2, 1, 1}, {3, 1, 1, 0}, {2, 2, 0, 0}};
    for (int t = 0; t < 4; t++) {
        lk_pool2d_desc pd = {3, 4, 9, 8, cases[t][0], cases[t][0], cases[t][1], cases[t][1],
                             cases[t][2], cases[t][2], 0, 0, cases[t][3]};
        TU_OK(lk_pool2d_desc_init(&pd));
        size_t xn = (size_t)pd.n * pd.c * pd.h * pd.w, yn = (size_t)pd.n * pd.c * pd.oh * pd.ow;
        float *hx = host_rand(xn, 19);
        for (size_t i = 0; i < xn; i += 7) hx[i] = hx[i + 1 < xn ? i + 1 : i]; /* ties */
        pair x = pair_of(hx, xn), y = pair_rand(yn, 20), dy = pair_rand(yn, 21), dx = pair_rand(xn, 22);
        int32_t *ac = malloc(yn * sizeof *ac), *ag = lk_dev_alloc(GPU, yn * sizeof *ag);
        CPU->ops->pool2d_forward(CPU, &pd, x.c, y.c, ac);
        GPU->ops->pool2d_forward(GPU, &pd, x.g, y.g, ag);
        same("pool2d_forward", &y, 1e-6);
        if (pd.is_max) {
            int32_t *h = malloc(yn * sizeof *h);
            lk_copy_to_host(GPU, h, ag, yn * sizeof *h);
            assert_memory_equal(h, ac, yn * sizeof *h);
            free(h);
        }
        CPU->ops->pool2d_backward(CPU, &pd, dy.c, ac, dx.c);
        GPU->ops->pool2d_backward(GPU, &pd, dy.g, ag, dx.g);
        same("pool2d_backward", &dx, 1e-6);
        free(hx), free(ac);
        lk_dev_free(GPU, ag);
        pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    }
}

static void test_dropout(void **state)
{
    (void)state;
    const size_t n = 100003;
    pair x = pair_rand(n, 23), y = pair_rand(n, 24);
    CPU->ops->dropout_forward(CPU, 0.3f, 7, 12345, 999, x.c, y.c, n);
    GPU->ops->dropout_forward(GPU, 0.3f, 7, 12345, 999, x.g, y.g, n);
    same("dropout_forward", &y, 0.0); /* the same mask, bit for bit */
    CPU->ops->dropout_backward(CPU, 0.3f, 7, 12345, 999, x.c, y.c, n);
    GPU->ops->dropout_backward(GPU, 0.3f, 7, 12345, 999, x.g, y.g, n);
    same("dropout_backward", &y, 0.0);
    pair_free(&x), pair_free(&y);
}

/* the device scalar written by a loss or reduction */
static float gpu_scalar(const float *p)
{
    float v = lk_read_scalar(GPU, p);
    TU_OK(lk_device_status(GPU));
    return v;
}

static void close_to(const char *what, double cpu, double gpu, double tol)
{
    if (!(fabs(cpu - gpu) <= tol * fmax(1.0, fabs(cpu))))
        fail_msg("%s: cuda %.9g, cpu %.9g", what, gpu, cpu);
}

static void test_losses(void **state)
{
    (void)state;
    const int sizes[][2] = {{64, 10}, {3, 1000}, {300, 7}};
    for (int s = 0; s < 3; s++) {
        int n = sizes[s][0], c = sizes[s][1];
        size_t nc = (size_t)n * c;
        pair z = pair_rand(nc, 25), dz = pair_rand(nc, 26), t = pair_rand(nc, 27);
        for (size_t i = 0; i < nc; i++) z.c[i] *= 8.0f;
        lk_copy_to_device(GPU, z.g, z.c, nc * sizeof(float));
        int32_t *lc = malloc((size_t)n * sizeof *lc), *lg = lk_dev_alloc(GPU, (size_t)n * sizeof *lg);
        for (int r = 0; r < n; r++) lc[r] = (int32_t)(lk_rng_u32(3, LK_RNG_TEST, 0, (uint64_t)r) % (uint32_t)c);
        lk_copy_to_device(GPU, lg, lc, (size_t)n * sizeof *lc);
        float *gs = lk_dev_alloc(GPU, sizeof(float)), cl = 0.0f;
        CPU->ops->softmax_xent(CPU, z.c, lc, n, c, &cl, dz.c, 0.5f);
        GPU->ops->softmax_xent(GPU, z.g, lg, n, c, gs, dz.g, 0.5f);
        close_to("softmax_xent loss", cl, gpu_scalar(gs), 1e-5);
        same("softmax_xent dlogits", &dz, 1e-5);
        CPU->ops->count_correct(CPU, z.c, lc, n, c, &cl);
        GPU->ops->count_correct(GPU, z.g, lg, n, c, gs);
        close_to("count_correct", cl, gpu_scalar(gs), 0.0);
        CPU->ops->mse(CPU, z.c, t.c, nc, &cl, dz.c, 2.0f);
        GPU->ops->mse(GPU, z.g, t.g, nc, gs, dz.g, 2.0f);
        close_to("mse loss", cl, gpu_scalar(gs), 1e-5);
        same("mse dpred", &dz, 1e-5);
        for (size_t i = 0; i < nc; i++) t.c[i] = t.c[i] > 0.0f; /* 0/1 targets */
        lk_copy_to_device(GPU, t.g, t.c, nc * sizeof(float));
        CPU->ops->bce_logits(CPU, z.c, t.c, nc, &cl, dz.c, 1.0f);
        GPU->ops->bce_logits(GPU, z.g, t.g, nc, gs, dz.g, 1.0f);
        close_to("bce_logits loss", cl, gpu_scalar(gs), 1e-5);
        same("bce_logits dlogits", &dz, 1e-5);
        free(lc);
        lk_dev_free(GPU, lg);
        lk_dev_free(GPU, gs);
        pair_free(&z), pair_free(&dz), pair_free(&t);
    }
}

static void test_optim_and_helpers(void **state)
{
    (void)state;
    const size_t n = 50021;
    for (int kind = LK_OPT_SGD; kind <= LK_OPT_ADAGRAD; kind++) {
        pair w = pair_rand(n, 28), g = pair_rand(n, 29), s1 = pair_rand(n, 30), s2 = pair_rand(n, 31);
        /* second moments and sums of squares are not negative */
        const int s1_squares = kind == LK_OPT_RMSPROP || kind == LK_OPT_ADAGRAD;
        for (size_t i = 0; i < n; i++) {
            s2.c[i] = fabsf(s2.c[i]);
            if (s1_squares) s1.c[i] = fabsf(s1.c[i]);
        }
        lk_copy_to_device(GPU, s1.g, s1.c, n * sizeof(float));
        lk_copy_to_device(GPU, s2.g, s2.c, n * sizeof(float));
        lk_optim_hparams hp = {(lk_optim_kind)kind, 0.01f, 0.9f, 0.9f, 0.999f, 1e-8f, 0.99f,
                               0.01f, 1e-4f, 0.5f, 3};
        for (int step = 0; step < 3; step++, hp.step++) {
            CPU->ops->optim_update(CPU, &hp, w.c, g.c, s1.c, s2.c, n);
            GPU->ops->optim_update(GPU, &hp, w.g, g.g, s1.g, s2.g, n);
        }
        same("optim_update w", &w, 1e-5);
        same("optim_update s1", &s1, 1e-5);
        same("optim_update s2", &s2, 1e-5);
        pair_free(&w), pair_free(&g), pair_free(&s1), pair_free(&s2);
    }
    pair x = pair_rand(n, 32), y = pair_rand(n, 33);
    float *gs = lk_dev_alloc(GPU, sizeof(float)), cs = 0.0f;
    CPU->ops->sumsq(CPU, x.c, n, &cs);
    GPU->ops->sumsq(GPU, x.g, n, gs);
    close_to("sumsq", cs, gpu_scalar(gs), 1e-6);
    CPU->ops->axpy(CPU, -0.25f, x.c, y.c, n);
    GPU->ops->axpy(GPU, -0.25f, x.g, y.g, n);
    same("axpy", &y, 1e-6);
    CPU->ops->scale(CPU, y.c, 3.0f, n);
    GPU->ops->scale(GPU, y.g, 3.0f, n);
    same("scale", &y, 1e-6);
    lk_dev_free(GPU, gs);
    pair_free(&x), pair_free(&y);
}

static void test_sequences(void **state)
{
    (void)state;
    const int n = 37, h = 29; /* rows x hidden: not multiples of a warp */
    pair x = pair_rand((size_t)3 * 5 * 7 * 4, 40), y = pair_rand((size_t)3 * 5 * 7 * 4, 41);
    CPU->ops->transpose(CPU, x.c, y.c, 3, 5, 7, 4);
    GPU->ops->transpose(GPU, x.g, y.g, 3, 5, 7, 4);
    same("transpose", &y, 0.0);
    pair_free(&x), pair_free(&y);
    for (int with_out = 0; with_out < 2; with_out++) {
        size_t nh = (size_t)n * h;
        pair g = pair_rand(4 * nh, 42), cp = pair_rand(nh, 43), c = pair_rand(nh, 44),
             ho = pair_rand(nh, 45), dh = pair_rand(nh, 46), dho = pair_rand(nh, 47),
             dc = pair_rand(nh, 48), dg = pair_rand(4 * nh, 49);
        for (size_t i = 0; i < 4 * nh; i++) g.c[i] *= 3.0f; /* into the saturated tails */
        lk_copy_to_device(GPU, g.g, g.c, 4 * nh * sizeof(float));
        CPU->ops->lstm_cell_forward(CPU, n, h, g.c, cp.c, c.c, ho.c);
        GPU->ops->lstm_cell_forward(GPU, n, h, g.g, cp.g, c.g, ho.g);
        same("lstm_cell_forward gates", &g, 1e-5);
        same("lstm_cell_forward c", &c, 1e-5);
        same("lstm_cell_forward h", &ho, 1e-5);
        CPU->ops->lstm_cell_backward(CPU, n, h, g.c, cp.c, c.c, dh.c, with_out ? dho.c : NULL, dc.c, dg.c);
        GPU->ops->lstm_cell_backward(GPU, n, h, g.g, cp.g, c.g, dh.g, with_out ? dho.g : NULL, dc.g, dg.g);
        same("lstm_cell_backward dg", &dg, 1e-5);
        same("lstm_cell_backward dc", &dc, 1e-5);
        pair_free(&g), pair_free(&dg);

        pair gx = pair_rand(3 * nh, 50), gh = pair_rand(3 * nh, 51), ghn = pair_rand(nh, 52),
             dgx = pair_rand(3 * nh, 53), dgh = pair_rand(3 * nh, 54);
        CPU->ops->gru_cell_forward(CPU, n, h, gx.c, gh.c, cp.c, ho.c, ghn.c);
        GPU->ops->gru_cell_forward(GPU, n, h, gx.g, gh.g, cp.g, ho.g, ghn.g);
        same("gru_cell_forward gates", &gx, 1e-5);
        same("gru_cell_forward h", &ho, 1e-5);
        same("gru_cell_forward ghn", &ghn, 1e-5);
        CPU->ops->gru_cell_backward(CPU, n, h, gx.c, ghn.c, cp.c, dh.c, with_out ? dho.c : NULL, dgx.c, dgh.c);
        GPU->ops->gru_cell_backward(GPU, n, h, gx.g, ghn.g, cp.g, dh.g, with_out ? dho.g : NULL, dgx.g, dgh.g);
        same("gru_cell_backward dgx", &dgx, 1e-5);
        same("gru_cell_backward dgh", &dgh, 1e-5);
        same("gru_cell_backward dh", &dh, 1e-5);
        pair_free(&gx), pair_free(&gh), pair_free(&ghn), pair_free(&dgx), pair_free(&dgh);
        pair_free(&cp), pair_free(&c), pair_free(&ho), pair_free(&dh), pair_free(&dho), pair_free(&dc);
    }
}

/* attention, layer norm, embeddings and the VAE's sampling */
static void test_transformer_ops(void **state)
{
    (void)state;
    const int T = 37, hd = 16, H = 3;
    const long tt = (long)T * T;
    pair q = pair_rand((size_t)T * 3 * H * hd, 60), sc = pair_rand((size_t)H * tt, 61);
    CPU->ops->gemm_batched(CPU, 0, 1, T, T, hd, 1.0f, q.c, 3 * H * hd, hd, q.c + H * hd, 3 * H * hd,
                           hd, 0.0f, sc.c, T, tt, H);
    GPU->ops->gemm_batched(GPU, 0, 1, T, T, hd, 1.0f, q.g, 3 * H * hd, hd, q.g + H * hd, 3 * H * hd,
                           hd, 0.0f, sc.g, T, tt, H);
    same("gemm_batched", &sc, 1e-4);
    pair dp = pair_rand((size_t)H * tt, 62);
    CPU->ops->softmax_causal_forward(CPU, sc.c, H * T, T, 0.25f);
    GPU->ops->softmax_causal_forward(GPU, sc.g, H * T, T, 0.25f);
    same("softmax_causal_forward", &sc, 1e-5);
    CPU->ops->softmax_causal_backward(CPU, sc.c, dp.c, H * T, T, 0.25f);
    GPU->ops->softmax_causal_backward(GPU, sc.g, dp.g, H * T, T, 0.25f);
    same("softmax_causal_backward", &dp, 1e-5);
    pair_free(&q), pair_free(&sc), pair_free(&dp);

    const int rows = 45, dim = 70;
    size_t nd = (size_t)rows * dim;
    pair x = pair_rand(nd, 63), w = pair_rand(dim, 64), b = pair_rand(dim, 65), y = pair_rand(nd, 66),
         mean = pair_rand(rows, 67), rstd = pair_rand(rows, 68), dy = pair_rand(nd, 69),
         dx = pair_rand(nd, 70), dw = pair_rand(dim, 71), db = pair_rand(dim, 72);
    CPU->ops->layernorm_forward(CPU, x.c, w.c, b.c, y.c, mean.c, rstd.c, rows, dim, 1e-5f);
    GPU->ops->layernorm_forward(GPU, x.g, w.g, b.g, y.g, mean.g, rstd.g, rows, dim, 1e-5f);
    same("layernorm_forward y", &y, 1e-5);
    same("layernorm_forward rstd", &rstd, 1e-5);
    for (int beta = 0; beta < 2; beta++) {
        CPU->ops->layernorm_backward(CPU, x.c, w.c, mean.c, rstd.c, dy.c, dx.c, dw.c, db.c, rows, dim, (float)beta);
        GPU->ops->layernorm_backward(GPU, x.g, w.g, mean.g, rstd.g, dy.g, dx.g, dw.g, db.g, rows, dim, (float)beta);
        same("layernorm_backward dx", &dx, 1e-5);
        same("layernorm_backward dw", &dw, 1e-5);
        same("layernorm_backward db", &db, 1e-5);
    }
    /* embeddings: tokens repeat, so backward adds rows into the same place */
    const int n = 50, V = 11;
    float *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (float)((i * 7) % V);
    pair idx = pair_of(ids, n), table = pair_rand((size_t)V * dim, 73), out = pair_rand((size_t)n * dim, 74),
         gt = pair_rand((size_t)V * dim, 75);
    CPU->ops->embed_forward(CPU, idx.c, table.c, out.c, n, dim);
    GPU->ops->embed_forward(GPU, idx.g, table.g, out.g, n, dim);
    same("embed_forward", &out, 0.0);
    CPU->ops->embed_backward(CPU, idx.c, out.c, gt.c, n, dim);
    GPU->ops->embed_backward(GPU, idx.g, out.g, gt.g, n, dim);
    same("embed_backward", &gt, 1e-6);
    free(ids);
    pair_free(&idx), pair_free(&table), pair_free(&out), pair_free(&gt);

    /* the VAE: the same Philox draws, the KL and its gradient */
    const int Z = 20;
    pair ml = pair_rand((size_t)rows * 2 * Z, 76), z = pair_rand((size_t)rows * Z, 77),
         dz = pair_rand((size_t)rows * Z, 78), dml = pair_rand((size_t)rows * 2 * Z, 79);
    float *gs = lk_dev_alloc(GPU, sizeof(float)), ckl = 0.0f;
    CPU->ops->reparam_forward(CPU, ml.c, z.c, rows, Z, 1, 5, 77, 40, &ckl);
    GPU->ops->reparam_forward(GPU, ml.g, z.g, rows, Z, 1, 5, 77, 40, gs);
    same("reparam_forward z", &z, 1e-5);
    close_to("reparam_forward kl", ckl, gpu_scalar(gs), 1e-5);
    CPU->ops->reparam_backward(CPU, ml.c, dz.c, dml.c, rows, Z, 5, 77, 40, 0.1f);
    GPU->ops->reparam_backward(GPU, ml.g, dz.g, dml.g, rows, Z, 5, 77, 40, 0.1f);
    same("reparam_backward", &dml, 1e-5);
    /* latent codes and the affine map */
    CPU->ops->randn(CPU, z.c, (size_t)rows * Z, 5, 9, 1000);
    GPU->ops->randn(GPU, z.g, (size_t)rows * Z, 5, 9, 1000);
    same("randn", &z, 1e-6);
    CPU->ops->affine(CPU, z.c, 2.0f, -1.0f, (size_t)rows * Z);
    GPU->ops->affine(GPU, z.g, 2.0f, -1.0f, (size_t)rows * Z);
    same("affine", &z, 1e-6);
    lk_dev_free(GPU, gs);
    pair_free(&ml), pair_free(&z), pair_free(&dz), pair_free(&dml);
    pair_free(&x), pair_free(&w), pair_free(&b), pair_free(&y), pair_free(&mean), pair_free(&rstd);
    pair_free(&dy), pair_free(&dx), pair_free(&dw), pair_free(&db);
}

int main(void)
{
    lk_device *gpu = NULL;
    if (lk_cuda_device_count() == 0) {
        printf("SKIP: CPU/CUDA parity needs a GPU: %s\n",
#if LK_HAVE_CUDA
               "no GPU visible (or no driver)"
#else
               "this build has no CUDA backend (LK_CUDA=OFF or no nvcc)"
#endif
        );
        return 77;
    }
    /* a GPU is there: a backend that cannot open it is a failure, not a skip */
    if (lk_device_open(&gpu, "cuda", 1) != LK_OK) {
        printf("FAIL: cannot open cuda:0: %s\n", lk_error_message());
        return 1;
    }
    GPU = gpu;
    CPU = tu_cpu();
    printf("CPU/CUDA parity on %s\n", GPU->name);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),        cmocka_unit_test(test_bias),
        cmocka_unit_test(test_activations), cmocka_unit_test(test_conv),
        cmocka_unit_test(test_pool),        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_losses),      cmocka_unit_test(test_optim_and_helpers),
        cmocka_unit_test(test_sequences),   cmocka_unit_test(test_transformer_ops),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    lk_device_close(GPU);
    return failed ? 1 : 0;
}
