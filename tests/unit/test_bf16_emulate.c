/* test_bf16_emulate.c - bf16 products where lockstep emulates them (float32 products of
 * bf16-rounded operands; CPUs without AMX), and weights read as float32 masters.
 *
 * - An emulated product whose operands exceed its buffer runs in blocks along n, m or k:
 *   every split, both transposes of each operand, bf16 and float32 operands, padded leading
 *   dimensions, alpha and beta, against the sum in double of the rounded operands.
 * - A bf16 product or convolution reading float32 weights (a model without a working copy)
 *   gives bitwise what it gives reading them rounded to bf16, emulated and with oneDNN's
 *   bf16 kernels alike. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_cpu.h"
#include "core/bf16.h"
#include "core/ops.h"
#include "core/rng.h"
#include "testutil.h"

static lk_device *open_cpu(const char *bf16)
{
    setenv("LK_BF16", bf16, 1);
    lk_device *d;
    TU_OK(lk_device_open(&d, "cpu", 1));
    unsetenv("LK_BF16");
    return d;
}

static float val(uint64_t i, uint64_t which) { return 2.0f * lk_rng_uniform(3, LK_RNG_TEST, which, i) - 1.0f; }

/* A stored operand of r x c (leading dimension c + 3), float32 or bf16; f: its values
 * as a product reads them (bf16-rounded). */
typedef struct {
    void *p;
    float *f;
    lk_dtype t;
    int ld;
} mat;

static mat make(int r, int c, lk_dtype t, uint64_t which)
{
    mat x = {NULL, NULL, t, c + 3};
    const size_t n = (size_t)r * (size_t)x.ld;
    x.p = malloc(n * lk_dtype_size(t));
    x.f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        const float v = val(i, which);
        if (t == LK_BF16) ((uint16_t *)x.p)[i] = lk_bf16_rne(v);
        else ((float *)x.p)[i] = v;
        x.f[i] = lk_bf16_to_f32(lk_bf16_rne(v));
    }
    return x;
}

static void unmake(mat *x)
{
    free(x->p);
    free(x->f);
}

/* op(X)[i][j] of a stored matrix */
static double at(const mat *x, int trans, int i, int j) { return trans ? x->f[(size_t)j * x->ld + i] : x->f[(size_t)i * x->ld + j]; }

typedef struct {
    const char *split;
    int m, n, k;
} shape;

static void check_product(lk_device *d, const shape *s, int ta, int tb, lk_dtype at_, lk_dtype bt, float beta)
{
    const int m = s->m, n = s->n, k = s->k;
    mat A = make(ta ? k : m, ta ? m : k, at_, 1), B = make(tb ? n : k, tb ? k : n, bt, 2);
    const int ldc = n + 5;
    float *c = malloc((size_t)m * ldc * sizeof *c), *c0 = malloc((size_t)m * ldc * sizeof *c0);
    for (size_t i = 0; i < (size_t)m * ldc; i++) c[i] = c0[i] = val(i, 3);
    const float alpha = 0.5f;
    TU_OK(lk_gemm_ex(d, LK_BF16, ta, tb, m, n, k, alpha, (lk_in){A.p, at_}, A.ld, (lk_in){B.p, bt}, B.ld, beta, c,
                     ldc));
    TU_OK(lk_device_status(d));
    double worst = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            const double got = c[(size_t)i * ldc + j];
            if (j >= n) { /* the gap between C's rows is not written */
                if (got != c0[(size_t)i * ldc + j]) fail_msg("%s: C's padding [%d][%d] written", s->split, i, j);
                continue;
            }
            double sum = beta * c0[(size_t)i * ldc + j], mag = fabs(sum);
            for (int q = 0; q < k; q++) {
                const double t = alpha * at(&A, ta, i, q) * at(&B, tb, q, j);
                sum += t, mag += fabs(t);
            }
            const double err = fabs(got - sum) / (mag + 1e-30);
            worst = fmax(worst, err);
            if (err > 1e-5)
                fail_msg("split %s (%c%c, A %s, B %s, beta %g): C[%d][%d] = %.7g, expected %.7g", s->split,
                         ta ? 'T' : 'N', tb ? 'T' : 'N', lk_dtype_name(at_), lk_dtype_name(bt), (double)beta, i, j, got,
                         sum);
        }
    unmake(&A);
    unmake(&B);
    free(c);
    free(c0);
}

static void test_blocked_products(void **state)
{
    (void)state;
    lk_device *d = open_cpu("emulate");
    assert_true(d->bf16_emulated);
    /* a 4096-value buffer: each shape's operands are several times that */
    const size_t was = lk_cpu_emulation_block(4096);
    const shape shapes[] = {
        {"n (A fits)", 8, 600, 40},
        {"m (B fits)", 600, 8, 40},
        {"k (neither fits)", 90, 70, 300},
        {"k (k beyond half the buffer)", 6, 5, 3000},
        {"none (both fit)", 9, 11, 13},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int t = 0; t < 4; t++) {
            const lk_dtype at_ = t == 1 || t == 3 ? LK_BF16 : LK_F32, bt = t >= 2 ? LK_BF16 : LK_F32;
            check_product(d, &shapes[i], t & 1, t >> 1, at_, bt, 0.0f);
            check_product(d, &shapes[i], !(t & 1), t >> 1, at_, bt, 1.0f);
        }
    printf("emulated bf16 products in blocks along n, m and k: within 1e-5 of the sums of the rounded "
           "operands\n");
    lk_cpu_emulation_block(was);
    lk_device_close(d);
}

/* a bf16 product of float32 weights, against the same weights rounded first */
static void check_f32_weights_gemm(lk_device *d)
{
    const int m = 33, n = 70, k = 65;
    mat X = make(m, k, LK_F32, 4), W = make(n, k, LK_F32, 5);
    uint16_t *w16 = malloc((size_t)n * W.ld * sizeof *w16);
    for (size_t i = 0; i < (size_t)n * W.ld; i++) w16[i] = lk_bf16_rne(((float *)W.p)[i]);
    float *c[2];
    for (int v = 0; v < 2; v++) {
        c[v] = calloc((size_t)m * n, sizeof(float));
        const lk_in w = v ? (lk_in){w16, LK_BF16} : lk_in_f32(W.p);
        TU_OK(lk_gemm_ex(d, LK_BF16, 0, 1, m, n, k, 1.0f, lk_in_f32(X.p), X.ld, w, W.ld, 0.0f, c[v], n));
    }
    assert_memory_equal(c[0], c[1], (size_t)m * n * sizeof(float));
    for (int v = 0; v < 2; v++) free(c[v]);
    free(w16);
    unmake(&X);
    unmake(&W);
}

/* ... and a bf16 convolution's forward and backward */
static void check_f32_weights_conv(lk_device *d)
{
    lk_conv2d_desc cd[2];
    for (int v = 0; v < 2; v++) {
        cd[v] = (lk_conv2d_desc){.n = 2, .c = 16, .h = 7, .w = 7, .k = 16, .kh = 3, .kw = 3, .stride_h = 1,
                                 .stride_w = 1, .pad_h = 1, .pad_w = 1, .compute = LK_BF16, .f32_weights = !v};
        TU_OK(lk_conv2d_desc_init(&cd[v]));
    }
    const size_t nx = 2 * 16 * 7 * 7, nw = 16 * 16 * 9, ny = 2 * 16 * (size_t)cd[0].oh * cd[0].ow;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *dy = malloc(ny * sizeof *dy);
    uint16_t *w16 = malloc(nw * sizeof *w16);
    for (size_t i = 0; i < nx; i++) x[i] = val(i, 6);
    for (size_t i = 0; i < nw; i++) w[i] = val(i, 7), w16[i] = lk_bf16_rne(w[i]);
    for (size_t i = 0; i < ny; i++) dy[i] = val(i, 8);
    float *y[2], *dx[2], *dw[2];
    for (int v = 0; v < 2; v++) {
        void *saved = calloc(1, lk_conv2d_saved(d, &cd[v]) + 64), *ws = calloc(1, lk_conv2d_workspace(d, &cd[v]) + 64);
        y[v] = calloc(ny, sizeof(float)), dx[v] = calloc(nx, sizeof(float)), dw[v] = calloc(nw, sizeof(float));
        const void *wv = v ? (const void *)w16 : (const void *)w;
        TU_OK(lk_conv2d_forward(d, &cd[v], x, wv, NULL, y[v], saved, ws));
        TU_OK(lk_conv2d_backward(d, &cd[v], x, wv, dy, dx[v], dw[v], NULL, 0.0f, saved, ws));
        TU_OK(lk_device_status(d));
        free(saved);
        free(ws);
    }
    assert_memory_equal(y[0], y[1], ny * sizeof(float));
    assert_memory_equal(dx[0], dx[1], nx * sizeof(float));
    assert_memory_equal(dw[0], dw[1], nw * sizeof(float));
    for (int v = 0; v < 2; v++) free(y[v]), free(dx[v]), free(dw[v]);
    free(x), free(w), free(w16), free(dy);
}

static void test_f32_weights(void **state)
{
    (void)state;
    const char *modes[] = {"emulate", "native"};
    for (int i = 0; i < 2; i++) {
        lk_device *d = open_cpu(modes[i]);
        check_f32_weights_gemm(d);
        check_f32_weights_conv(d);
        printf("bf16 products %s: float32 weights read rounded give bitwise the bf16 copy's products and "
               "convolutions\n", d->bf16_emulated ? "emulated" : "with oneDNN's bf16 kernels");
        lk_device_close(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_products),
        cmocka_unit_test(test_f32_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
