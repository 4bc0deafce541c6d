/* test_conv_paths.c - the CPU convolution paths (oneDNN's Winograd F(4x4,3x3) for 3x3
 * stride-1 layers with >= 16 input and output channels, its direct convolution
 * otherwise; blocked or plain layouts with the reorders around them) against a direct
 * convolution in double, through the ops API: forward, dx, dw and db, in replace and
 * accumulate modes, with batches smaller than the one the sizes were computed for.
 *
 * Tolerance: every element must satisfy |got - ref| <= TOL * (|ref| + rms(ref)). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_cpu.h"
#include "core/ops.h"
#include "testutil.h"

#define TOL 2e-5

#include "alloc_count.h"

typedef struct {
    int c, k, h, w, pad, n, nmax; /* run with n images; sizes computed for nmax */
} cfg;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float urand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *rand_buf(size_t n)
{
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

static float *nan_buf(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* got vs ref (times `mult`), elementwise within TOL * (|ref| + rms(ref)) */
static void expect_close(const char *what, const cfg *c, const float *got, const double *ref,
                         size_t n, double mult)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += ref[i] * ref[i] * mult * mult;
    const double rms = sqrt(ss / (double)n);
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double r = ref[i] * mult, e = fabs((double)got[i] - r) / (fabs(r) + rms);
        if (!(e <= worst)) { /* NaN counts as the worst */
            worst = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    if (!(worst <= TOL))
        fail_msg("%s: c=%d k=%d %dx%d pad %d n=%d/%d: element %zu is %g, expected %g "
                 "(relative error %g)",
                 what, c->c, c->k, c->h, c->w, c->pad, c->n, c->nmax, at, (double)got[at],
                 ref[at] * mult, worst);
}

static void check_on(lk_device *dev, const cfg *c, int with_bias, int with_dx)
{
    lk_conv2d_desc cd = {.n = c->nmax, .c = c->c, .h = c->h, .w = c->w, .k = c->k, .kh = 3,
                         .kw = 3, .stride_h = 1, .stride_w = 1, .pad_h = c->pad, .pad_w = c->pad};
    TU_OK(lk_conv2d_desc_init(&cd));
    const size_t saved_b = lk_conv2d_saved(dev, &cd), ws_b = lk_conv2d_workspace(dev, &cd);
    cd.n = c->n;
    const int oh = cd.oh, ow = cd.ow;
    const size_t nx = (size_t)c->n * c->c * c->h * c->w, ny = (size_t)c->n * c->k * oh * ow;
    const size_t nw = (size_t)c->k * c->c * 9;
    float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf((size_t)c->k), *dy = rand_buf(ny);
    float *y = nan_buf(ny), *dx = nan_buf(nx), *dw = nan_buf(nw), *db = nan_buf((size_t)c->k);
    float *saved = nan_buf(saved_b / sizeof(float)), *ws = nan_buf(ws_b / sizeof(float) + 1);
    double *ry = calloc(ny, sizeof(double)), *rdx = calloc(nx, sizeof(double));
    double *rdw = calloc(nw, sizeof(double)), *rdb = calloc((size_t)c->k, sizeof(double));
    assert_true(ry && rdx && rdw && rdb);

    for (int n = 0; n < c->n; n++)
        for (int k = 0; k < c->k; k++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    const size_t yi = (((size_t)n * c->k + k) * oh + i) * ow + j;
                    double s = with_bias ? b[k] : 0.0;
                    const double g = dy[yi];
                    rdb[k] += g;
                    for (int ci = 0; ci < c->c; ci++)
                        for (int ki = 0; ki < 3; ki++) {
                            const int ih = i - c->pad + ki;
                            if (ih < 0 || ih >= c->h) continue;
                            for (int kj = 0; kj < 3; kj++) {
                                const int iw = j - c->pad + kj;
                                if (iw < 0 || iw >= c->w) continue;
                                const size_t xi = (((size_t)n * c->c + ci) * c->h + ih) * c->w + iw;
                                const size_t wi = (((size_t)k * c->c + ci) * 3 + ki) * 3 + kj;
                                s += (double)x[xi] * w[wi];
                                rdx[xi] += g * w[wi];
                                rdw[wi] += g * x[xi];
                            }
                        }
                    ry[yi] = s;
                }

    TU_OK(lk_conv2d_forward(dev, &cd, x, w, with_bias ? b : NULL, y, saved, ws));
    expect_close("y", c, y, ry, ny, 1.0);
    /* replace mode: stale NaN in dx, dw, db must go; then accumulate onto it */
    TU_OK(lk_conv2d_backward(dev, &cd, x, w, dy, with_dx ? dx : NULL, dw, db, 0.0f, saved, ws));
    if (with_dx) expect_close("dx", c, dx, rdx, nx, 1.0);
    expect_close("dw", c, dw, rdw, nw, 1.0);
    expect_close("db", c, db, rdb, (size_t)c->k, 1.0);
    for (size_t i = 0; i < ws_b / sizeof(float); i++) ws[i] = NAN; /* scratch is anyone's */
    /* again: now without a heap allocation (but oneDNN's argument maps) on one thread */
    for (size_t i = 0; i < ny; i++) y[i] = NAN;
    alloc_count_start();
    lk_status s1 = lk_conv2d_forward(dev, &cd, x, w, with_bias ? b : NULL, y, saved, ws);
    lk_status s2 =
        lk_conv2d_backward(dev, &cd, x, w, dy, with_dx ? dx : NULL, dw, db, 1.0f, saved, ws);
    alloc_counts ac = alloc_count_stop();
    TU_OK(s1);
    TU_OK(s2);
    TU_OK(lk_device_status(dev));
    /* (an OpenMP team may allocate; for a kernel larger than its padded 1x1 image oneDNN
     * has only a gemm-based backward-weights, which allocates inside its execute) */
    const int degenerate = c->h == 1 && c->w == 1;
    if (dev->threads == 1 && !degenerate && !alloc_counts_clean(ac))
        fail_msg("c=%d k=%d %dx%d pad %d n=%d: %ld heap allocations in a forward and a backward "
                 "(and %ld in oneDNN's execute, the largest %zu bytes, %ld freed there)",
                 c->c, c->k, c->h, c->w, c->pad, c->n, ac.outside, ac.in_allocs, ac.in_largest,
                 ac.in_frees);
    expect_close("y (second)", c, y, ry, ny, 1.0);
    if (with_dx) expect_close("dx (second)", c, dx, rdx, nx, 1.0);
    expect_close("dw (accumulated)", c, dw, rdw, nw, 2.0);
    expect_close("db (accumulated)", c, db, rdb, (size_t)c->k, 2.0);

    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
    free(saved), free(ws), free(ry), free(rdx), free(rdw), free(rdb);
}

static void check(const cfg *c, int with_bias, int with_dx) { check_on(tu_cpu(), c, with_bias, with_dx); }

static void test_large_channel_shapes(void **state)
{
    (void)state;
    static const cfg cfgs[] = {
        {8, 16, 5, 5, 1, 3, 3},      {8, 16, 5, 5, 0, 1, 1},    {8, 64, 7, 7, 1, 64, 64},
        {32, 16, 7, 7, 0, 3, 3},     {32, 64, 14, 14, 1, 64, 64}, /* cnn's second conv */
        {8, 16, 28, 28, 1, 64, 64},  {32, 64, 28, 28, 0, 3, 3}, {8, 64, 14, 14, 0, 1, 1},
        {32, 16, 28, 28, 1, 1, 1},   {8, 16, 14, 14, 1, 3, 3},  {32, 64, 5, 5, 0, 64, 64},
        {8, 16, 9, 6, 1, 3, 3},      {8, 16, 6, 11, 0, 3, 3},   /* non-square, odd outputs */
        {8, 16, 3, 3, 0, 2, 2},      {8, 16, 1, 1, 1, 2, 2},    /* a single (partial) tile */
        {8, 16, 5, 141, 1, 2, 2},    /* rows of more tiles than one block of them */
        {8, 16, 6, 134, 0, 3, 3},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check(&cfgs[i], 1, 1);
}

static void test_partial_batches(void **state)
{
    (void)state;
    /* sizes for 64 images, run with fewer: chunks must line up between the passes */
    static const cfg cfgs[] = {
        {32, 64, 14, 14, 1, 5, 64}, {8, 16, 28, 28, 1, 1, 64}, {8, 16, 7, 7, 0, 37, 64},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check(&cfgs[i], 1, 1);
}

static void test_no_bias_no_dx(void **state)
{
    (void)state;
    const cfg c = {8, 16, 7, 7, 1, 3, 3};
    check(&c, 0, 0);
    check(&c, 0, 1);
    check(&c, 1, 0);
}

static void test_small_channel_shapes(void **state)
{
    (void)state;
    /* few input channels: plain NCHW input, direct convolution */
    static const cfg cfgs[] = {
        {1, 32, 28, 28, 1, 3, 64}, /* cnn's first conv */
        {4, 16, 7, 7, 0, 3, 3},
        {4, 16, 5, 5, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check(&cfgs[i], 1, 1);
}

/* The transforms split planes between threads; each thread's vector overhang must
 * stay inside its own planes. (Runs last: it leaves OpenMP at 2 threads.) */
static void test_two_threads(void **state)
{
    (void)state;
    lk_device *dev;
    TU_OK(lk_device_open(&dev, "cpu", 2));
    static const cfg cfgs[] = {
        {32, 64, 14, 14, 1, 64, 64}, {8, 16, 5, 5, 1, 37, 64}, {8, 16, 9, 6, 0, 3, 3},
        {16, 16, 28, 28, 1, 8, 8},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check_on(dev, &cfgs[i], 1, 1);
    lk_device_close(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_channel_shapes),
        cmocka_unit_test(test_partial_batches),
        cmocka_unit_test(test_no_bias_no_dx),
        cmocka_unit_test(test_small_channel_shapes),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
