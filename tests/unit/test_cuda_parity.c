/* test_cuda_parity.c - every entry of the backend vtable (lk_backend, device.h) on the
 * CPU and on CUDA with the same inputs, compared within stated tolerances, as ggml's
 * test-backend-ops does: one case per entry, listed in ENTRIES below.
 *
 * Coverage is checked mechanically before anything runs, and without a GPU: every
 * member of lk_backend after `name` is a function pointer (static assertions on its
 * layout), and every pointer-sized slot from `alloc` to the end of the struct must be
 * named by exactly one row of ENTRIES - a case (case_<entry>), or an exemption with its
 * reason. An entry added to device.h without a row makes this test fail, naming the
 * slot. The rows also check that the CPU fills every entry that is not optional.
 *
 * Tolerances, each relative to the largest magnitude of the CPU's result tensor
 * (scalars: to max(1, |value|)):
 *   exact        copies, memset, dropout masks (the same Philox numbers), argmax,
 *                counts, transposes, embedding lookups
 *   1e-6         pooling, bias_add, sum of squares, scale, axpy, embedding gradients,
 *                latent codes, the affine map
 *   1e-5         activations, bias gradients, losses and their gradients, optimizer,
 *                LSTM and GRU cells, causal softmax, layer norm, batch norm, the VAE's
 *                sampling
 *   1e-4         matrix products (batched too) and convolutions (other summation orders)
 *   1e-3         the same in bf16 (bf16 inputs both devices round alike, float32 sums; the
 *                CUDA convolution's outputs and gradients come through bf16: 1e-2)
 *   1e-2         the cross-entropy's gradient over bf16 logits (rounded to bf16 from
 *                each device's exp); its loss 1e-5
 *   exact        the bf16 working copy's rounding, to nearest even and stochastic
 *
 * Without a GPU (or without a CUDA build) the coverage check still runs; the test then
 * says why it cannot compare and exits 77, which ctest reports as skipped. A visible GPU
 * that cannot be opened is a failure. tests/run-gpu.sh runs it on a GPU machine.
 * LK_PARITY_SELFTEST=1 runs every case with a second CPU device in the GPU's place (a
 * check of the cases themselves, e.g. under ASan; it proves nothing about CUDA). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops.h"
#include "core/bf16.h"
#include "core/rng.h"
#include "comm/comm.h"
#include "testutil.h"

static lk_device *CPU, *GPU;

/* ---- helpers ---- */

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
/* after the test changed the CPU's copy: the same contents on the GPU */
static void pair_push(pair *p) { lk_copy_to_device(GPU, p->g, p->c, p->n * sizeof(float)); }
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

/* byte for byte: `bytes` of the CPU's memory at c and the GPU's at g */
static void same_bytes(const char *what, const void *c, const void *g, size_t bytes)
{
    unsigned char *h = malloc(bytes + 1);
    lk_copy_to_host(GPU, h, g, bytes);
    TU_OK(lk_device_status(GPU));
    const unsigned char *cc = c;
    for (size_t i = 0; i < bytes; i++)
        if (h[i] != cc[i]) fail_msg("%s: byte %zu: cuda 0x%02x, cpu 0x%02x", what, i, h[i], cc[i]);
    free(h);
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

/* n labels in [0, c), on the CPU (lc) and the GPU (*lg, to lk_dev_free) */
static int32_t *labels(int n, int c, int32_t **lg)
{
    int32_t *lc = malloc((size_t)n * sizeof *lc);
    for (int r = 0; r < n; r++) lc[r] = (int32_t)(lk_rng_u32(3, LK_RNG_TEST, 0, (uint64_t)r) % (uint32_t)c);
    *lg = lk_dev_alloc(GPU, (size_t)n * sizeof **lg);
    assert_non_null(*lg);
    lk_copy_to_device(GPU, *lg, lc, (size_t)n * sizeof *lc);
    return lc;
}

/* the GPU really is one (not the self-test's second CPU) */
static int real_gpu(void) { return GPU->kind == LK_DEV_CUDA; }

/* ---- memory ---- */

static void case_copy_h2d(void **state)
{
    (void)state;
    const size_t n = 1003, off = 5, len = 997; /* an odd length at an odd offset */
    pair p = pair_rand(n, 1);
    float *h = host_rand(len, 2);
    CPU->ops->copy_h2d(CPU, p.c + off, h, len * sizeof *h);
    GPU->ops->copy_h2d(GPU, p.g + off, h, len * sizeof *h);
    memset(h, 0, len * sizeof *h); /* the caller may reuse its buffer at once */
    same("copy_h2d", &p, 0.0);
    free(h);
    pair_free(&p);
}

static void case_copy_d2h(void **state)
{
    (void)state;
    const size_t n = 1003, off = 3, len = 501;
    pair p = pair_rand(n, 3);
    float *hc = calloc(len, sizeof *hc), *hg = calloc(len, sizeof *hg);
    CPU->ops->copy_d2h(CPU, hc, p.c + off, len * sizeof *hc);
    GPU->ops->copy_d2h(GPU, hg, p.g + off, len * sizeof *hg);
    TU_OK(lk_device_status(GPU));
    assert_memory_equal(hc, p.c + off, len * sizeof *hc);
    assert_memory_equal(hg, hc, len * sizeof *hg);
    free(hc), free(hg);
    pair_free(&p);
}

static void case_copy_d2d(void **state)
{
    (void)state;
    const size_t n = 2048;
    pair p = pair_rand(n, 4), q = pair_rand(n, 5);
    /* within a buffer (disjoint ranges) and from one buffer to another */
    CPU->ops->copy_d2d(CPU, p.c + 1100, p.c + 7, 900 * sizeof(float));
    GPU->ops->copy_d2d(GPU, p.g + 1100, p.g + 7, 900 * sizeof(float));
    CPU->ops->copy_d2d(CPU, q.c + 1, p.c + 2, 2000 * sizeof(float));
    GPU->ops->copy_d2d(GPU, q.g + 1, p.g + 2, 2000 * sizeof(float));
    same("copy_d2d within a buffer", &p, 0.0);
    same("copy_d2d between buffers", &q, 0.0);
    pair_free(&p), pair_free(&q);
}

static void case_memset0(void **state)
{
    (void)state;
    const size_t n = 1000, off = 7 * sizeof(float), bytes = 333 * sizeof(float) + 2;
    pair p = pair_rand(n, 6);
    CPU->ops->memset0(CPU, (char *)p.c + off, bytes);
    GPU->ops->memset0(GPU, (char *)p.g + off, bytes);
    same_bytes("memset0", p.c, p.g, n * sizeof(float));
    for (size_t i = 0; i < bytes; i++) assert_int_equal(((unsigned char *)p.c)[off + i], 0);
    pair_free(&p);
}

static void case_sync(void **state)
{
    (void)state;
    /* a queue of work, then sync: it returns with everything done and nothing failed */
    const size_t n = 1 << 20;
    pair p = pair_rand(n, 7);
    for (int i = 0; i < 20; i++) {
        CPU->ops->scale(CPU, p.c, 1.01f, n);
        GPU->ops->scale(GPU, p.g, 1.01f, n);
    }
    CPU->ops->sync(CPU);
    GPU->ops->sync(GPU);
    TU_OK(CPU->ops->status(CPU));
    TU_OK(GPU->ops->status(GPU));
    same("scale x20, then sync", &p, 1e-6);
    pair_free(&p);
}

/* staging memory: pinned on a GPU. A round trip through it is exact. */
static void case_host_alloc(void **state)
{
    (void)state;
    const size_t n = 4099;
    float *hc = CPU->ops->host_alloc(CPU, n * sizeof(float)),
          *hg = GPU->ops->host_alloc(GPU, n * sizeof(float));
    assert_non_null(hc);
    assert_non_null(hg);
    float *src = host_rand(n, 8);
    memcpy(hc, src, n * sizeof *src);
    memcpy(hg, src, n * sizeof *src);
    pair p = pair_rand(n, 9);
    CPU->ops->copy_h2d(CPU, p.c, hc, n * sizeof(float));
    GPU->ops->copy_h2d(GPU, p.g, hg, n * sizeof(float)); /* from pinned: the DMA reads later */
    memset(hg, 0, n * sizeof(float));                    /* ... but the copy has waited */
    same("host_alloc -> device", &p, 0.0);
    GPU->ops->copy_d2h(GPU, hg, p.g, n * sizeof(float));
    TU_OK(lk_device_status(GPU));
    assert_memory_equal(hg, src, n * sizeof *src);
    CPU->ops->host_free(CPU, hc);
    GPU->ops->host_free(GPU, hg);
    free(src);
    pair_free(&p);
}

static void case_host_free(void **state)
{
    (void)state;
    /* allocate and release staging buffers of several sizes: nothing fails, nothing
     * stays behind (ASan sees the CPU's; the GPU's status says whether cudaFreeHost failed) */
    for (size_t bytes = 4; bytes <= (1u << 24); bytes *= 16) {
        void *hc = CPU->ops->host_alloc(CPU, bytes), *hg = GPU->ops->host_alloc(GPU, bytes);
        assert_non_null(hc);
        assert_non_null(hg);
        memset(hc, 1, bytes);
        memset(hg, 1, bytes);
        CPU->ops->host_free(CPU, hc);
        GPU->ops->host_free(GPU, hg);
    }
    TU_OK(CPU->ops->status(CPU));
    TU_OK(GPU->ops->status(GPU));
}

static void case_owns(void **state)
{
    (void)state;
    float local = 0.0f;
    float *dc = lk_dev_alloc(CPU, 4096), *dg = lk_dev_alloc(GPU, 4096), *heap = malloc(64);
    void *pinned = GPU->ops->host_alloc(GPU, 64);
    assert_non_null(dc);
    assert_non_null(dg);
    assert_non_null(pinned);
    /* the host addresses all of a CPU's memory */
    assert_int_equal(CPU->ops->owns(CPU, dc), 0);
    assert_int_equal(CPU->ops->owns(CPU, heap), 0);
    assert_int_equal(CPU->ops->owns(CPU, &local), 0);
    /* a GPU owns its allocations (inside them too), not host memory, pinned or not */
    const int want = real_gpu();
    assert_int_equal(GPU->ops->owns(GPU, dg), want);
    assert_int_equal(GPU->ops->owns(GPU, dg + 100), want);
    assert_int_equal(GPU->ops->owns(GPU, heap), 0);
    assert_int_equal(GPU->ops->owns(GPU, &local), 0);
    assert_int_equal(GPU->ops->owns(GPU, pinned), 0);
    TU_OK(GPU->ops->status(GPU)); /* asking about host memory is no failure */
    GPU->ops->host_free(GPU, pinned);
    lk_dev_free(CPU, dc);
    lk_dev_free(GPU, dg);
    free(heap);
}

/* ---- dense algebra, bias, activations ---- */

/* A bf16 copy of a pair's values on both devices (rounded to nearest even on the CPU). */
typedef struct {
    uint16_t *c, *g;
} pair16;

static pair16 pair16_of(const pair *p)
{
    pair16 q = {lk_dev_alloc(CPU, p->n * 2 + 2), lk_dev_alloc(GPU, p->n * 2 + 2)};
    assert_true(q.c && q.g);
    for (size_t i = 0; i < p->n; i++) q.c[i] = lk_bf16_rne(p->c[i]);
    lk_copy_to_device(GPU, q.g, q.c, p->n * 2);
    return q;
}

static void pair16_free(pair16 *q) { lk_dev_free(CPU, q->c), lk_dev_free(GPU, q->g); }

/* Both devices run the product g; B given in bf16 (a weight's working copy) when b16. */
static void matmul_both(const lk_gemm_desc *g, const pair *a, const pair *b, const pair16 *b16,
                        pair *c)
{
    CPU->ops->matmul(CPU, g, a->c, b16 ? (const void *)b16->c : b->c, c->c);
    GPU->ops->matmul(GPU, g, a->g, b16 ? (const void *)b16->g : b->g, c->g);
}

/* fp32 and bf16 products (bf16 inputs, float32 accumulation: both devices round the same
 * inputs the same way, so only the summation order differs: 1e-3 of the scale) */
static void case_matmul(void **state)
{
    (void)state;
    const int m = 37, n = 29, k = 53;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    pair a = pair_rand((size_t)m * k, 10), b = pair_rand((size_t)k * n, 11),
                         c = pair_rand((size_t)m * n, 12);
                    const int lda = ta ? m : k, ldb = tb ? k : n;
                    const lk_dtype t = bf16 ? LK_BF16 : LK_F32;
                    lk_gemm_desc g = {ta, tb, m, n, k, lda, ldb, n, 1, 0, 0, 0, 0.5f, (float)beta,
                                      t, LK_F32, LK_F32};
                    matmul_both(&g, &a, &b, NULL, &c);
                    same(bf16 ? "matmul bf16 (fp32 operands)" : "matmul", &c, bf16 ? 1e-3 : 1e-4);
                    if (bf16) { /* B stored in bf16, as a layer's weights */
                        pair16 b16 = pair16_of(&b);
                        g.b_type = LK_BF16;
                        matmul_both(&g, &a, &b, &b16, &c);
                        same("matmul bf16 (B in bf16)", &c, 1e-3);
                        pair16_free(&b16);
                    }
                    pair_free(&a), pair_free(&b), pair_free(&c);
                }
    /* every head of a sequence at once (attention): strided views of one buffer */
    enum { T = 37, hd = 16, H = 3 };
    const int ld = 3 * H * hd;
    const long tt = (long)T * T;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        const lk_dtype t = bf16 ? LK_BF16 : LK_F32;
        const double tol = bf16 ? 1e-3 : 1e-4;
        pair q = pair_rand((size_t)T * ld, 60), sc = pair_rand((size_t)H * tt, 61),
             o = pair_rand((size_t)T * H * hd, 62);
        lk_gemm_desc g1 = {0, 1, T, T, hd, ld, ld, T, H, hd, hd, tt, 1.0f, 0.0f, t, LK_F32, LK_F32};
        CPU->ops->matmul(CPU, &g1, q.c, q.c + H * hd, sc.c);
        GPU->ops->matmul(GPU, &g1, q.g, q.g + H * hd, sc.g);
        same("matmul batched (a b^T)", &sc, tol);
        lk_gemm_desc g2 = {1, 0, T, hd, T, T, ld, H * hd, H, tt, hd, hd, 0.5f, 1.0f, t, LK_F32, LK_F32};
        matmul_both(&g2, &sc, &q, NULL, &o); /* p^T dy, accumulating (attention's dv) */
        same("matmul batched (a^T b, beta 1)", &o, tol);
        pair_free(&q), pair_free(&sc), pair_free(&o);
    }
}

/* PowerSGD's orthonormalisation: three 301 x 4 matrices (one with a zero column, one
 * with two equal ones, each then replaced by a unit vector made orthogonal): the same
 * columns within 1e-5, and orthonormal (P^T P = I) */
static void case_orthonormalize(void **state)
{
    (void)state;
    enum { N = 301, R = 4, C = 3 };
    pair p = pair_rand((size_t)N * R * C, 19);
    for (int i = 0; i < N; i++) {
        p.c[(size_t)N * R + (size_t)i * R + 2] = 0.0f;                                  /* matrix 1, column 2 */
        p.c[(size_t)2 * N * R + (size_t)i * R + 3] = p.c[(size_t)2 * N * R + (size_t)i * R + 1]; /* matrix 2 */
    }
    pair_push(&p);
    CPU->ops->orthonormalize(CPU, p.c, N, R, C);
    GPU->ops->orthonormalize(GPU, p.g, N, R, C);
    same("orthonormalize", &p, 1e-5);
    for (int c = 0; c < C; c++)
        for (int j = 0; j < R; j++)
            for (int k = 0; k <= j; k++) {
                double dot = 0.0;
                for (int i = 0; i < N; i++)
                    dot += (double)p.c[(size_t)c * N * R + (size_t)i * R + j] * p.c[(size_t)c * N * R + (size_t)i * R + k];
                const double want = j == k ? 1.0 : 0.0;
                if (fabs(dot - want) > 1e-4) fail_msg("matrix %d columns %d, %d: %g, want %g", c, j, k, dot, want);
            }
    pair_free(&p);
}

/* the 16-bit gradient wire, bf16 and fp16, scaled (values beyond fp16's range but not
 * after the scaling, and below its normals): bitwise both ways */
static void case_pack16(void **state)
{
    (void)state;
    pair x = pair_rand(5001, 16);
    for (size_t i = 0; i < x.n; i++) x.c[i] *= (i % 3 == 0) ? 9e4f : (i % 3 == 1) ? 1e-6f : 1.0f;
    pair_push(&x);
    uint16_t *c = lk_dev_alloc(CPU, x.n * 2), *g = lk_dev_alloc(GPU, x.n * 2);
    assert_true(c && g);
    for (int t = LK_BF16; t <= LK_F16; t++) {
        CPU->ops->pack16(CPU, (lk_dtype)t, x.c, 0.5f, c, x.n);
        GPU->ops->pack16(GPU, (lk_dtype)t, x.g, 0.5f, g, x.n);
        same_bytes(t == LK_F16 ? "pack16 (fp16)" : "pack16 (bf16)", c, g, x.n * 2);
        for (size_t i = 0; i < x.n; i++) assert_true(c[i] == lk_wire16_rne((lk_dtype)t, x.c[i] * 0.5f));
    }
    lk_dev_free(CPU, c), lk_dev_free(GPU, g);
    pair_free(&x);
}

static void case_unpack16(void **state)
{
    (void)state;
    pair x = pair_rand(5001, 17), y = pair_rand(5001, 18);
    pair16 h = pair16_of(&x); /* bf16 bit patterns of values below 1: finite fp16 ones too */
    for (int t = LK_BF16; t <= LK_F16; t++) {
        CPU->ops->unpack16(CPU, (lk_dtype)t, h.c, 3.0f, y.c, y.n);
        GPU->ops->unpack16(GPU, (lk_dtype)t, h.g, 3.0f, y.g, y.n);
        same_bytes(t == LK_F16 ? "unpack16 (fp16)" : "unpack16 (bf16)", y.c, y.g, y.n * sizeof(float));
        for (size_t i = 0; i < y.n; i++) {
            const float want = lk_wire16_to_f32((lk_dtype)t, h.c[i]) * 3.0f;
            assert_true(y.c[i] == want);
        }
    }
    pair16_free(&h);
    pair_free(&x), pair_free(&y);
}

/* bf16 gradients back to float32: exact */
static void case_widen_bf16(void **state)
{
    (void)state;
    pair x = pair_rand(777, 14), y = pair_rand(777, 15);
    pair16 h = pair16_of(&x);
    CPU->ops->widen_bf16(CPU, h.c, y.c, y.n);
    GPU->ops->widen_bf16(GPU, h.g, y.g, y.n);
    same("widen_bf16", &y, 0.0);
    for (size_t i = 0; i < y.n; i++) assert_true(y.c[i] == lk_bf16_to_f32(h.c[i]));
    pair16_free(&h);
    pair_free(&x), pair_free(&y);
}

/* The working copy: to nearest even and stochastically, bit for bit the same (the same
 * counter-based draws), with an offset `first` that is not a multiple of four. */
static void case_cast_bf16(void **state)
{
    (void)state;
    const size_t n = 1000;
    pair x = pair_rand(n, 13);
    x.c[0] = INFINITY, x.c[1] = -INFINITY, x.c[2] = NAN, x.c[3] = 0.0f, x.c[4] = -0.0f;
    x.c[5] = 3.0e38f, x.c[6] = 1.0e-40f; /* near the top; a denormal */
    pair_push(&x);
    uint16_t *c = lk_dev_alloc(CPU, n * 2), *g = lk_dev_alloc(GPU, n * 2);
    for (int st = 0; st < 2; st++) {
        const lk_round r = {st, 7, 42, 1003, NULL};
        CPU->ops->cast_bf16(CPU, x.c, c, n, &r);
        GPU->ops->cast_bf16(GPU, x.g, g, n, &r);
        same_bytes(st ? "cast_bf16 (stochastic)" : "cast_bf16 (nearest even)", c, g, n * 2);
    }
    lk_dev_free(CPU, c), lk_dev_free(GPU, g);
    pair_free(&x);
}

static const int BIAS_SHAPES[][3] = {{64, 10, 1}, {3, 8, 49}, {1, 5, 1000}};

static void case_bias_add(void **state)
{
    (void)state;
    for (int s = 0; s < 3; s++) {
        int o = BIAS_SHAPES[s][0], c = BIAS_SHAPES[s][1], in = BIAS_SHAPES[s][2];
        pair y = pair_rand((size_t)o * c * in, 13), b = pair_rand((size_t)c, 14);
        CPU->ops->bias_add(CPU, y.c, b.c, o, c, in);
        GPU->ops->bias_add(GPU, y.g, b.g, o, c, in);
        same("bias_add", &y, 1e-6);
        pair_free(&y), pair_free(&b);
    }
}

static void case_bias_grad(void **state)
{
    (void)state;
    for (int s = 0; s < 3; s++) {
        int o = BIAS_SHAPES[s][0], c = BIAS_SHAPES[s][1], in = BIAS_SHAPES[s][2];
        pair dy = pair_rand((size_t)o * c * in, 15), db = pair_rand((size_t)c, 16);
        for (int beta = 0; beta < 2; beta++) {
            CPU->ops->bias_grad(CPU, db.c, dy.c, o, c, in, (float)beta);
            GPU->ops->bias_grad(GPU, db.g, dy.g, o, c, in, (float)beta);
            same("bias_grad", &db, 1e-5);
        }
        pair_free(&dy), pair_free(&db);
    }
}

/* x (scaled to reach the saturated tails) and y = f(x) on both devices */
static void act_inputs(lk_act act, size_t n, pair *x, pair *y)
{
    *x = pair_rand(n, 17);
    *y = pair_rand(n, 18);
    for (size_t i = 0; i < n; i++) x->c[i] *= 4.0f;
    pair_push(x);
    CPU->ops->act_forward(CPU, act, 0.1f, x->c, y->c, n);
    GPU->ops->act_forward(GPU, act, 0.1f, x->g, y->g, n);
}

static void case_act_forward(void **state)
{
    (void)state;
    const size_t n = 10007;
    for (int act = LK_ACT_IDENTITY; act < LK_ACT_COUNT; act++) {
        pair x, y;
        act_inputs((lk_act)act, n, &x, &y);
        same("act_forward", &y, 1e-5);
        pair_free(&x), pair_free(&y);
    }
}

static void case_act_backward(void **state)
{
    (void)state;
    const size_t n = 10007;
    for (int act = LK_ACT_IDENTITY; act < LK_ACT_COUNT; act++) {
        pair x, y, dy = pair_rand(n, 19), dx = pair_rand(n, 20);
        act_inputs((lk_act)act, n, &x, &y);
        pair_push(&y); /* the same y on both: backward alone is compared */
        CPU->ops->act_backward(CPU, (lk_act)act, 0.1f, x.c, y.c, dy.c, dx.c, n);
        GPU->ops->act_backward(GPU, (lk_act)act, 0.1f, x.g, y.g, dy.g, dx.g, n);
        same("act_backward", &dx, 1e-5);
        pair_free(&x), pair_free(&y), pair_free(&dy), pair_free(&dx);
    }
}

/* ---- convolution and pooling ---- */

/* n c h w k kh kw stride pad */
static const int CONVS[][9] = {{4, 3, 12, 11, 8, 3, 3, 1, 1}, {2, 5, 9, 9, 4, 5, 5, 2, 2},
                               {3, 16, 7, 7, 6, 1, 1, 1, 0}, {2, 8, 10, 10, 16, 3, 3, 1, 0}};
#define NCONVS ((int)(sizeof CONVS / sizeof *CONVS))

static lk_conv2d_desc conv_desc_in(int t, int n, lk_dtype compute)
{
    const int *p = CONVS[t];
    lk_conv2d_desc cd = {n ? n : p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[7], p[8], p[8], 0, 0,
                         compute, 0};
    TU_OK(lk_conv2d_desc_init(&cd));
    return cd;
}

static lk_conv2d_desc conv_desc(int t, int n) { return conv_desc_in(t, n, LK_F32); }

static void case_conv2d_saved(void **state)
{
    (void)state;
    for (int t = 0; t < NCONVS; t++) {
        lk_conv2d_desc cd = conv_desc(t, 0), one = conv_desc(t, 1);
        lk_device *devs[2] = {CPU, GPU};
        for (int k = 0; k < 2; k++) {
            lk_device *d = devs[k];
            size_t s = d->ops->conv2d_saved(d, &cd);
            /* a layer keeps the block it got for its largest batch: a shorter one fits */
            assert_true(d->ops->conv2d_saved(d, &one) <= s);
            assert_int_equal(d->ops->conv2d_saved(d, &cd), s); /* the same answer again */
        }
        if (real_gpu()) assert_int_equal(GPU->ops->conv2d_saved(GPU, &cd), 0); /* cuDNN keeps nothing */
    }
    TU_OK(lk_device_status(GPU));
}

static void case_conv2d_workspace(void **state)
{
    (void)state;
    for (int t = 0; t < NCONVS; t++) {
        lk_conv2d_desc cd = conv_desc(t, 0), one = conv_desc(t, 1);
        lk_device *devs[2] = {CPU, GPU};
        for (int k = 0; k < 2; k++) {
            lk_device *d = devs[k];
            size_t w = d->ops->conv2d_workspace(d, &cd);
            /* the shared workspace is sized at the planned batch: a shorter one fits */
            assert_true(d->ops->conv2d_workspace(d, &one) <= w);
            assert_int_equal(d->ops->conv2d_workspace(d, &cd), w);
        }
    }
    TU_OK(lk_device_status(GPU));
}

/* a convolution's buffers on both devices, sized by what each backend asks for */
typedef struct {
    lk_conv2d_desc cd;
    pair x, w, b, y, dy, dx, dw, db;
    pair16 w16;        /* the weights' bf16 copy (bf16 cases) */
    const void *wc, *wg; /* the weights each device's convolution reads */
    void *cs, *cw, *gs, *gw;
} conv_case;

static void conv_open(conv_case *v, int t, lk_dtype compute)
{
    v->cd = conv_desc_in(t, 0, compute);
    const lk_conv2d_desc *cd = &v->cd;
    size_t xn = (size_t)cd->n * cd->c * cd->h * cd->w, wn = (size_t)cd->k * cd->c * cd->kh * cd->kw,
           yn = (size_t)cd->n * cd->k * cd->oh * cd->ow;
    v->x = pair_rand(xn, 21), v->w = pair_rand(wn, 22), v->b = pair_rand((size_t)cd->k, 23);
    v->y = pair_rand(yn, 24), v->dy = pair_rand(yn, 25), v->dx = pair_rand(xn, 26);
    v->dw = pair_rand(wn, 27), v->db = pair_rand((size_t)cd->k, 28);
    v->w16 = pair16_of(&v->w);
    v->wc = compute == LK_BF16 ? (const void *)v->w16.c : v->w.c;
    v->wg = compute == LK_BF16 ? (const void *)v->w16.g : v->w.g;
    v->cs = lk_dev_alloc(CPU, CPU->ops->conv2d_saved(CPU, cd) + 1);
    v->cw = lk_dev_alloc(CPU, CPU->ops->conv2d_workspace(CPU, cd) + 1);
    v->gs = lk_dev_alloc(GPU, GPU->ops->conv2d_saved(GPU, cd) + 1);
    v->gw = lk_dev_alloc(GPU, GPU->ops->conv2d_workspace(GPU, cd) + 1);
    assert_true(v->cs && v->cw && v->gs && v->gw);
}

static void conv_forward(conv_case *v, const lk_conv2d_desc *cd, int bias)
{
    CPU->ops->conv2d_forward(CPU, cd, v->x.c, v->wc, bias ? v->b.c : NULL, v->y.c, v->cs, v->cw);
    GPU->ops->conv2d_forward(GPU, cd, v->x.g, v->wg, bias ? v->b.g : NULL, v->y.g, v->gs, v->gw);
}

static void conv_close(conv_case *v)
{
    lk_dev_free(CPU, v->cs), lk_dev_free(CPU, v->cw);
    lk_dev_free(GPU, v->gs), lk_dev_free(GPU, v->gw);
    pair_free(&v->x), pair_free(&v->w), pair_free(&v->b), pair_free(&v->y), pair_free(&v->dy);
    pair_free(&v->dx), pair_free(&v->dw), pair_free(&v->db);
    pair16_free(&v->w16);
}

/* in bf16 the CPU's primitives write float32 while cuDNN's BFLOAT16 configuration writes
 * bf16 (rounded once more): 1e-2 */
static double conv_tol(lk_dtype t) { return t == LK_BF16 ? 1e-2 : 1e-4; }

static void case_conv2d_forward(void **state)
{
    (void)state;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int t = 0; t < NCONVS; t++) {
            const lk_dtype ct = bf16 ? LK_BF16 : LK_F32;
            conv_case v;
            conv_open(&v, t, ct);
            conv_forward(&v, &v.cd, 1);
            same(bf16 ? "conv2d_forward bf16" : "conv2d_forward", &v.y, conv_tol(ct));
            /* a shorter batch than planned, no bias */
            lk_conv2d_desc one = conv_desc_in(t, 1, ct);
            conv_forward(&v, &one, 0);
            same("conv2d_forward, batch 1, no bias", &v.y, conv_tol(ct));
            conv_close(&v);
        }
}

static void case_conv2d_backward(void **state)
{
    (void)state;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int t = 0; t < NCONVS; t++) {
            const lk_dtype ct = bf16 ? LK_BF16 : LK_F32;
            const double tol = conv_tol(ct);
            conv_case v;
            conv_open(&v, t, ct);
            conv_forward(&v, &v.cd, 1); /* what backward may keep from forward (`saved`) */
            for (int beta = 0; beta < 2; beta++) {
                CPU->ops->conv2d_backward(CPU, &v.cd, v.x.c, v.wc, v.dy.c, v.dx.c, v.dw.c, v.db.c,
                                          (float)beta, v.cs, v.cw);
                GPU->ops->conv2d_backward(GPU, &v.cd, v.x.g, v.wg, v.dy.g, v.dx.g, v.dw.g, v.db.g,
                                          (float)beta, v.gs, v.gw);
                same("conv2d_backward dx", &v.dx, tol);
                same("conv2d_backward dw", &v.dw, tol);
                same("conv2d_backward db", &v.db, tol);
            }
            /* a shorter batch, no bias, no dx (the first layer) */
            lk_conv2d_desc one = conv_desc_in(t, 1, ct);
            conv_forward(&v, &one, 0);
            CPU->ops->conv2d_backward(CPU, &one, v.x.c, v.wc, v.dy.c, NULL, v.dw.c, NULL, 0.0f, v.cs,
                                      v.cw);
            GPU->ops->conv2d_backward(GPU, &one, v.x.g, v.wg, v.dy.g, NULL, v.dw.g, NULL, 0.0f, v.gs,
                                      v.gw);
            same("conv2d_backward dw, batch 1", &v.dw, tol);
            conv_close(&v);
        }
}

/* kh stride pad is_max */
static const int POOLS[][4] = {{2, 2, 0, 1}, {3, 2, 1, 1}, {3, 1, 1, 0}, {2, 2, 0, 0}};

typedef struct {
    lk_pool2d_desc pd;
    size_t xn, yn;
    pair x, y;
    int32_t *ac, *ag;
} pool_case;

/* inputs with ties (first-max wins on both) and the forward pass on both devices */
static void pool_open(pool_case *v, int t)
{
    lk_pool2d_desc pd = {3, 4, 9, 8, POOLS[t][0], POOLS[t][0], POOLS[t][1], POOLS[t][1],
                         POOLS[t][2], POOLS[t][2], 0, 0, POOLS[t][3]};
    TU_OK(lk_pool2d_desc_init(&pd));
    v->pd = pd;
    v->xn = (size_t)pd.n * pd.c * pd.h * pd.w, v->yn = (size_t)pd.n * pd.c * pd.oh * pd.ow;
    float *hx = host_rand(v->xn, 29);
    for (size_t i = 0; i < v->xn; i += 7) hx[i] = hx[i + 1 < v->xn ? i + 1 : i];
    v->x = pair_of(hx, v->xn), v->y = pair_rand(v->yn, 30);
    free(hx);
    v->ac = malloc(v->yn * sizeof *v->ac);
    v->ag = lk_dev_alloc(GPU, v->yn * sizeof *v->ag);
    assert_non_null(v->ag);
    CPU->ops->pool2d_forward(CPU, &v->pd, v->x.c, v->y.c, v->ac);
    GPU->ops->pool2d_forward(GPU, &v->pd, v->x.g, v->y.g, v->ag);
}

static void pool_close(pool_case *v)
{
    free(v->ac);
    lk_dev_free(GPU, v->ag);
    pair_free(&v->x), pair_free(&v->y);
}

static void case_pool2d_forward(void **state)
{
    (void)state;
    for (int t = 0; t < 4; t++) {
        pool_case v;
        pool_open(&v, t);
        same("pool2d_forward", &v.y, 1e-6);
        if (v.pd.is_max) same_bytes("pool2d_forward argmax", v.ac, v.ag, v.yn * sizeof *v.ac);
        pool_close(&v);
    }
}

static void case_pool2d_backward(void **state)
{
    (void)state;
    for (int t = 0; t < 4; t++) {
        pool_case v;
        pool_open(&v, t);
        /* backward from the same argmax on both (forward's is compared in its own case) */
        if (v.pd.is_max) lk_copy_to_device(GPU, v.ag, v.ac, v.yn * sizeof *v.ac);
        pair dy = pair_rand(v.yn, 31), dx = pair_rand(v.xn, 32);
        CPU->ops->pool2d_backward(CPU, &v.pd, dy.c, v.ac, dx.c);
        GPU->ops->pool2d_backward(GPU, &v.pd, dy.g, v.ag, dx.g);
        same("pool2d_backward", &dx, 1e-6);
        pair_free(&dy), pair_free(&dx);
        pool_close(&v);
    }
}

/* ---- dropout and losses ---- */

static void case_dropout_forward(void **state)
{
    (void)state;
    const size_t n = 100003;
    pair x = pair_rand(n, 33), y = pair_rand(n, 34);
    CPU->ops->dropout_forward(CPU, 0.3f, 7, 12345, 999, x.c, y.c, n);
    GPU->ops->dropout_forward(GPU, 0.3f, 7, 12345, 999, x.g, y.g, n);
    same("dropout_forward", &y, 0.0); /* the same mask, bit for bit */
    pair_free(&x), pair_free(&y);
}

static void case_dropout_backward(void **state)
{
    (void)state;
    const size_t n = 100003;
    pair dy = pair_rand(n, 35), dx = pair_rand(n, 36);
    CPU->ops->dropout_backward(CPU, 0.3f, 7, 12345, 1u << 20, dy.c, dx.c, n);
    GPU->ops->dropout_backward(GPU, 0.3f, 7, 12345, 1u << 20, dy.g, dx.g, n);
    same("dropout_backward", &dx, 0.0);
    pair_free(&dy), pair_free(&dx);
}

static const int LOSS_SIZES[][2] = {{64, 10}, {3, 1000}, {300, 7}};

/* logits (scaled past the usual range) and a gradient buffer on both devices */
static void loss_inputs(int s, pair *z, pair *dz)
{
    size_t nc = (size_t)LOSS_SIZES[s][0] * LOSS_SIZES[s][1];
    *z = pair_rand(nc, 37);
    *dz = pair_rand(nc, 38);
    for (size_t i = 0; i < nc; i++) z->c[i] *= 8.0f;
    pair_push(z);
}

/* n bf16 values of the CPU's and the GPU's, widened: within tol of the CPU's largest */
static void same16(const char *what, const uint16_t *c, const uint16_t *g, size_t n, double tol)
{
    pair p = {malloc(n * sizeof(float) + 4), lk_dev_alloc(GPU, n * sizeof(float) + 4), n};
    assert_true(p.c && p.g);
    for (size_t i = 0; i < n; i++) p.c[i] = lk_bf16_to_f32(c[i]);
    GPU->ops->widen_bf16(GPU, g, p.g, n);
    same(what, &p, tol);
    free(p.c);
    lk_dev_free(GPU, p.g);
}

/* rows of ld values, of which the first cls classes: the whole row, then a padded one; the
 * logits in float32, then in bf16 (a bf16 model's: the gradient written over them, rounded
 * once more on each device: 1e-2) */
static void case_softmax_xent(void **state)
{
    (void)state;
    for (int s = 0; s < 3; s++)
        for (int pad = 0; pad < 2; pad++) {
            const int n = LOSS_SIZES[s][0], ld = LOSS_SIZES[s][1], cls = pad ? ld - 3 : ld;
            if (cls < 2) continue;
            pair z, dz;
            loss_inputs(s, &z, &dz);
            int32_t *lg, *lc = labels(n, cls, &lg);
            float *gs = lk_dev_alloc(GPU, sizeof(float)), cl = 0.0f;
            CPU->ops->softmax_xent(CPU, LK_F32, z.c, lc, n, cls, ld, &cl, dz.c, 0.5f);
            GPU->ops->softmax_xent(GPU, LK_F32, z.g, lg, n, cls, ld, gs, dz.g, 0.5f);
            close_to("softmax_xent loss", cl, gpu_scalar(gs), 1e-5);
            same("softmax_xent dlogits (0 in the padding)", &dz, 1e-5);
            for (int r = 0; pad && r < n; r++) /* the CPU's padding gradient is 0 */
                for (int j = cls; j < ld; j++) assert_true(dz.c[(size_t)r * ld + j] == 0.0f);
            CPU->ops->softmax_xent(CPU, LK_F32, z.c, lc, n, cls, ld, &cl, NULL, 1.0f); /* loss only */
            GPU->ops->softmax_xent(GPU, LK_F32, z.g, lg, n, cls, ld, gs, NULL, 1.0f);
            close_to("softmax_xent loss, no gradient", cl, gpu_scalar(gs), 1e-5);
            pair16 z16 = pair16_of(&z);
            CPU->ops->softmax_xent(CPU, LK_BF16, z16.c, lc, n, cls, ld, &cl, NULL, 1.0f);
            GPU->ops->softmax_xent(GPU, LK_BF16, z16.g, lg, n, cls, ld, gs, NULL, 1.0f);
            close_to("softmax_xent loss, bf16 logits", cl, gpu_scalar(gs), 1e-5);
            CPU->ops->softmax_xent(CPU, LK_BF16, z16.c, lc, n, cls, ld, &cl, z16.c, 0.5f); /* in place */
            GPU->ops->softmax_xent(GPU, LK_BF16, z16.g, lg, n, cls, ld, gs, z16.g, 0.5f);
            close_to("softmax_xent loss, bf16 logits and gradient", cl, gpu_scalar(gs), 1e-5);
            same16("softmax_xent dlogits in bf16 over the logits", z16.c, z16.g, (size_t)n * ld, 1e-2);
            for (int r = 0; pad && r < n; r++)
                for (int j = cls; j < ld; j++) assert_true(z16.c[(size_t)r * ld + j] == 0);
            pair16_free(&z16);
            free(lc);
            lk_dev_free(GPU, lg), lk_dev_free(GPU, gs);
            pair_free(&z), pair_free(&dz);
        }
}

static void case_mse(void **state)
{
    (void)state;
    for (int s = 0; s < 3; s++) {
        size_t nc = (size_t)LOSS_SIZES[s][0] * LOSS_SIZES[s][1];
        pair z, dz, t = pair_rand(nc, 39);
        loss_inputs(s, &z, &dz);
        float *gs = lk_dev_alloc(GPU, sizeof(float)), cl = 0.0f;
        CPU->ops->mse(CPU, z.c, t.c, nc, &cl, dz.c, 2.0f);
        GPU->ops->mse(GPU, z.g, t.g, nc, gs, dz.g, 2.0f);
        close_to("mse loss", cl, gpu_scalar(gs), 1e-5);
        same("mse dpred", &dz, 1e-5);
        CPU->ops->mse(CPU, z.c, t.c, nc, &cl, NULL, 1.0f);
        GPU->ops->mse(GPU, z.g, t.g, nc, gs, NULL, 1.0f);
        close_to("mse loss, no gradient", cl, gpu_scalar(gs), 1e-5);
        lk_dev_free(GPU, gs);
        pair_free(&z), pair_free(&dz), pair_free(&t);
    }
}

static void case_bce_logits(void **state)
{
    (void)state;
    for (int s = 0; s < 3; s++) {
        size_t nc = (size_t)LOSS_SIZES[s][0] * LOSS_SIZES[s][1];
        pair z, dz, t = pair_rand(nc, 40);
        loss_inputs(s, &z, &dz);
        for (size_t i = 0; i < nc; i++) t.c[i] = t.c[i] > 0.0f; /* 0/1 targets */
        pair_push(&t);
        float *gs = lk_dev_alloc(GPU, sizeof(float)), cl = 0.0f;
        CPU->ops->bce_logits(CPU, z.c, t.c, nc, &cl, dz.c, 1.0f);
        GPU->ops->bce_logits(GPU, z.g, t.g, nc, gs, dz.g, 1.0f);
        close_to("bce_logits loss", cl, gpu_scalar(gs), 1e-5);
        same("bce_logits dlogits", &dz, 1e-5);
        CPU->ops->bce_logits(CPU, z.c, t.c, nc, &cl, NULL, 1.0f);
        GPU->ops->bce_logits(GPU, z.g, t.g, nc, gs, NULL, 1.0f);
        close_to("bce_logits loss, no gradient", cl, gpu_scalar(gs), 1e-5);
        lk_dev_free(GPU, gs);
        pair_free(&z), pair_free(&dz), pair_free(&t);
    }
}

static void case_count_correct(void **state)
{
    (void)state;
    for (int s = 0; s < 3; s++) {
        /* rows of c floats of which c - 1 classes: a padding logit (large) never counts */
        int n = LOSS_SIZES[s][0], c = LOSS_SIZES[s][1], cls = c > 2 ? c - 1 : c;
        pair z, dz;
        loss_inputs(s, &z, &dz);
        int32_t *lg, *lc = labels(n, cls, &lg);
        /* make about half the rows right, so the count is neither 0 nor n */
        for (int r = 0; r < n; r += 2) z.c[(size_t)r * c + lc[r]] = 100.0f;
        for (int r = 1; cls < c && r < n; r += 2) z.c[(size_t)r * c + cls] = 1000.0f;
        pair_push(&z);
        float *gs = lk_dev_alloc(GPU, sizeof(float)), cc = 0.0f;
        CPU->ops->count_correct(CPU, LK_F32, z.c, lc, n, cls, c, &cc);
        GPU->ops->count_correct(GPU, LK_F32, z.g, lg, n, cls, c, gs);
        assert_true(cc >= (float)((n + 1) / 2));
        close_to("count_correct", cc, gpu_scalar(gs), 0.0);
        pair16 z16 = pair16_of(&z);
        CPU->ops->count_correct(CPU, LK_BF16, z16.c, lc, n, cls, c, &cc);
        GPU->ops->count_correct(GPU, LK_BF16, z16.g, lg, n, cls, c, gs);
        assert_true(cc >= (float)((n + 1) / 2));
        close_to("count_correct, bf16 logits", cc, gpu_scalar(gs), 0.0);
        pair16_free(&z16);
        free(lc);
        lk_dev_free(GPU, lg), lk_dev_free(GPU, gs);
        pair_free(&z), pair_free(&dz);
    }
}

/* ---- sequences ---- */

static void case_transpose(void **state)
{
    (void)state;
    const int shapes[][4] = {{3, 5, 7, 4}, {1, 33, 17, 1}, {2, 1, 9, 64}};
    for (int s = 0; s < 3; s++) {
        const int *q = shapes[s];
        size_t n = (size_t)q[0] * q[1] * q[2] * q[3];
        pair x = pair_rand(n, 41), y = pair_rand(n, 42);
        CPU->ops->transpose(CPU, x.c, y.c, q[0], q[1], q[2], q[3]);
        GPU->ops->transpose(GPU, x.g, y.g, q[0], q[1], q[2], q[3]);
        same("transpose", &y, 0.0);
        pair_free(&x), pair_free(&y);
    }
}

enum { CELL_N = 37, CELL_H = 29 }; /* rows x hidden: not multiples of a warp */
#define CELL_NH ((size_t)CELL_N * CELL_H)

/* LSTM state: pre-activations g (into the saturated tails), c_prev, and forward's c, h */
typedef struct {
    pair g, cp, c, ho;
} lstm_case;

static void lstm_open(lstm_case *v)
{
    v->g = pair_rand(4 * CELL_NH, 43), v->cp = pair_rand(CELL_NH, 44);
    v->c = pair_rand(CELL_NH, 45), v->ho = pair_rand(CELL_NH, 46);
    for (size_t i = 0; i < 4 * CELL_NH; i++) v->g.c[i] *= 3.0f;
    pair_push(&v->g);
    CPU->ops->lstm_cell_forward(CPU, CELL_N, CELL_H, v->g.c, v->cp.c, v->c.c, v->ho.c);
    GPU->ops->lstm_cell_forward(GPU, CELL_N, CELL_H, v->g.g, v->cp.g, v->c.g, v->ho.g);
}

static void lstm_close(lstm_case *v)
{
    pair_free(&v->g), pair_free(&v->cp), pair_free(&v->c), pair_free(&v->ho);
}

static void case_lstm_cell_forward(void **state)
{
    (void)state;
    lstm_case v;
    lstm_open(&v);
    same("lstm_cell_forward gates", &v.g, 1e-5);
    same("lstm_cell_forward c", &v.c, 1e-5);
    same("lstm_cell_forward h", &v.ho, 1e-5);
    lstm_close(&v);
}

static void case_lstm_cell_backward(void **state)
{
    (void)state;
    for (int with_out = 0; with_out < 2; with_out++) {
        lstm_case v;
        lstm_open(&v);
        pair_push(&v.g), pair_push(&v.c); /* backward alone is compared */
        pair dh = pair_rand(CELL_NH, 47), dho = pair_rand(CELL_NH, 48), dc = pair_rand(CELL_NH, 49),
             dg = pair_rand(4 * CELL_NH, 50);
        CPU->ops->lstm_cell_backward(CPU, CELL_N, CELL_H, v.g.c, v.cp.c, v.c.c, dh.c,
                                     with_out ? dho.c : NULL, dc.c, dg.c);
        GPU->ops->lstm_cell_backward(GPU, CELL_N, CELL_H, v.g.g, v.cp.g, v.c.g, dh.g,
                                     with_out ? dho.g : NULL, dc.g, dg.g);
        same("lstm_cell_backward dg", &dg, 1e-5);
        same("lstm_cell_backward dc", &dc, 1e-5);
        pair_free(&dh), pair_free(&dho), pair_free(&dc), pair_free(&dg);
        lstm_close(&v);
    }
}

/* GRU state: gx (overwritten by the activations), gh, h_prev, and forward's h, ghn */
typedef struct {
    pair gx, gh, hp, ho, ghn;
} gru_case;

static void gru_open(gru_case *v)
{
    v->gx = pair_rand(3 * CELL_NH, 51), v->gh = pair_rand(3 * CELL_NH, 52);
    v->hp = pair_rand(CELL_NH, 53), v->ho = pair_rand(CELL_NH, 54), v->ghn = pair_rand(CELL_NH, 55);
    for (size_t i = 0; i < 3 * CELL_NH; i++) v->gx.c[i] *= 3.0f;
    pair_push(&v->gx);
    CPU->ops->gru_cell_forward(CPU, CELL_N, CELL_H, v->gx.c, v->gh.c, v->hp.c, v->ho.c, v->ghn.c);
    GPU->ops->gru_cell_forward(GPU, CELL_N, CELL_H, v->gx.g, v->gh.g, v->hp.g, v->ho.g, v->ghn.g);
}

static void gru_close(gru_case *v)
{
    pair_free(&v->gx), pair_free(&v->gh), pair_free(&v->hp), pair_free(&v->ho), pair_free(&v->ghn);
}

static void case_gru_cell_forward(void **state)
{
    (void)state;
    gru_case v;
    gru_open(&v);
    same("gru_cell_forward gates", &v.gx, 1e-5);
    same("gru_cell_forward h", &v.ho, 1e-5);
    same("gru_cell_forward ghn", &v.ghn, 1e-5);
    gru_close(&v);
}

static void case_gru_cell_backward(void **state)
{
    (void)state;
    for (int with_out = 0; with_out < 2; with_out++) {
        gru_case v;
        gru_open(&v);
        pair_push(&v.gx), pair_push(&v.ghn);
        pair dh = pair_rand(CELL_NH, 56), dho = pair_rand(CELL_NH, 57),
             dgx = pair_rand(3 * CELL_NH, 58), dgh = pair_rand(3 * CELL_NH, 59);
        CPU->ops->gru_cell_backward(CPU, CELL_N, CELL_H, v.gx.c, v.ghn.c, v.hp.c, dh.c,
                                    with_out ? dho.c : NULL, dgx.c, dgh.c);
        GPU->ops->gru_cell_backward(GPU, CELL_N, CELL_H, v.gx.g, v.ghn.g, v.hp.g, dh.g,
                                    with_out ? dho.g : NULL, dgx.g, dgh.g);
        same("gru_cell_backward dgx", &dgx, 1e-5);
        same("gru_cell_backward dgh", &dgh, 1e-5);
        same("gru_cell_backward dh", &dh, 1e-5);
        pair_free(&dh), pair_free(&dho), pair_free(&dgx), pair_free(&dgh);
        gru_close(&v);
    }
}

/* ---- attention, layer norm, embeddings ---- */

enum { ATT_T = 37, ATT_HD = 16, ATT_H = 3 };
#define ATT_TT ((long)ATT_T * ATT_T)

static void case_softmax_causal_forward(void **state)
{
    (void)state;
    pair s = pair_rand((size_t)ATT_H * ATT_TT, 63);
    for (size_t i = 0; i < s.n; i++) s.c[i] *= 10.0f;
    pair_push(&s);
    CPU->ops->softmax_causal_forward(CPU, s.c, ATT_H * ATT_T, ATT_T, 0.25f);
    GPU->ops->softmax_causal_forward(GPU, s.g, ATT_H * ATT_T, ATT_T, 0.25f);
    same("softmax_causal_forward", &s, 1e-5);
    pair_free(&s);
}

static void case_softmax_causal_backward(void **state)
{
    (void)state;
    pair p = pair_rand((size_t)ATT_H * ATT_TT, 64), dp = pair_rand((size_t)ATT_H * ATT_TT, 65);
    CPU->ops->softmax_causal_forward(CPU, p.c, ATT_H * ATT_T, ATT_T, 0.25f); /* a real p */
    pair_push(&p);
    CPU->ops->softmax_causal_backward(CPU, p.c, dp.c, ATT_H * ATT_T, ATT_T, 0.25f);
    GPU->ops->softmax_causal_backward(GPU, p.g, dp.g, ATT_H * ATT_T, ATT_T, 0.25f);
    same("softmax_causal_backward", &dp, 1e-5);
    pair_free(&p), pair_free(&dp);
}

enum { LN_ROWS = 45, LN_DIM = 70 };

typedef struct {
    pair x, w, b, y, mean, rstd;
} ln_case;

static void ln_open(ln_case *v)
{
    size_t nd = (size_t)LN_ROWS * LN_DIM;
    v->x = pair_rand(nd, 66), v->w = pair_rand(LN_DIM, 67), v->b = pair_rand(LN_DIM, 68);
    v->y = pair_rand(nd, 69), v->mean = pair_rand(LN_ROWS, 70), v->rstd = pair_rand(LN_ROWS, 71);
    for (size_t i = 0; i < nd; i++) v->x.c[i] = 3.0f * v->x.c[i] + (float)((i / LN_DIM) % 5); /* rows' means differ */
    pair_push(&v->x);
    CPU->ops->layernorm_forward(CPU, v->x.c, v->w.c, v->b.c, v->y.c, v->mean.c, v->rstd.c, LN_ROWS,
                                LN_DIM, 1e-5f);
    GPU->ops->layernorm_forward(GPU, v->x.g, v->w.g, v->b.g, v->y.g, v->mean.g, v->rstd.g, LN_ROWS,
                                LN_DIM, 1e-5f);
}

static void ln_close(ln_case *v)
{
    pair_free(&v->x), pair_free(&v->w), pair_free(&v->b), pair_free(&v->y), pair_free(&v->mean);
    pair_free(&v->rstd);
}

static void case_layernorm_forward(void **state)
{
    (void)state;
    ln_case v;
    ln_open(&v);
    same("layernorm_forward y", &v.y, 1e-5);
    same("layernorm_forward mean", &v.mean, 1e-5);
    same("layernorm_forward rstd", &v.rstd, 1e-5);
    ln_close(&v);
}

static void case_layernorm_backward(void **state)
{
    (void)state;
    ln_case v;
    ln_open(&v);
    pair_push(&v.mean), pair_push(&v.rstd);
    size_t nd = (size_t)LN_ROWS * LN_DIM;
    pair dy = pair_rand(nd, 72), dx = pair_rand(nd, 73), dw = pair_rand(LN_DIM, 74),
         db = pair_rand(LN_DIM, 75);
    for (int beta = 0; beta < 2; beta++) {
        CPU->ops->layernorm_backward(CPU, v.x.c, v.w.c, v.mean.c, v.rstd.c, dy.c, dx.c, dw.c, db.c,
                                     LN_ROWS, LN_DIM, (float)beta);
        GPU->ops->layernorm_backward(GPU, v.x.g, v.w.g, v.mean.g, v.rstd.g, dy.g, dx.g, dw.g, db.g,
                                     LN_ROWS, LN_DIM, (float)beta);
        same("layernorm_backward dx", &dx, 1e-5);
        same("layernorm_backward dw", &dw, 1e-5);
        same("layernorm_backward db", &db, 1e-5);
    }
    pair_free(&dy), pair_free(&dx), pair_free(&dw), pair_free(&db);
    ln_close(&v);
}

enum { EMB_N = 50, EMB_V = 11, EMB_DIM = 70 };

/* token ids that repeat, so backward adds rows into the same place */
static pair emb_ids(void)
{
    float ids[EMB_N];
    for (int i = 0; i < EMB_N; i++) ids[i] = (float)((i * 7) % EMB_V);
    return pair_of(ids, EMB_N);
}

static void case_embed_forward(void **state)
{
    (void)state;
    pair idx = emb_ids(), table = pair_rand((size_t)EMB_V * EMB_DIM, 76),
         out = pair_rand((size_t)EMB_N * EMB_DIM, 77);
    CPU->ops->embed_forward(CPU, idx.c, table.c, out.c, EMB_N, EMB_DIM);
    GPU->ops->embed_forward(GPU, idx.g, table.g, out.g, EMB_N, EMB_DIM);
    same("embed_forward", &out, 0.0);
    pair_free(&idx), pair_free(&table), pair_free(&out);
}

static void case_embed_backward(void **state)
{
    (void)state;
    pair idx = emb_ids(), dy = pair_rand((size_t)EMB_N * EMB_DIM, 78),
         dw = pair_rand((size_t)EMB_V * EMB_DIM, 79);
    CPU->ops->embed_backward(CPU, idx.c, dy.c, dw.c, EMB_N, EMB_DIM);
    GPU->ops->embed_backward(GPU, idx.g, dy.g, dw.g, EMB_N, EMB_DIM);
    same("embed_backward", &dw, 1e-6);
    pair_free(&idx), pair_free(&dy), pair_free(&dw);
}

/* ---- the VAE, the GAN ---- */

enum { VAE_ROWS = 45, VAE_Z = 20 };

static void case_reparam_forward(void **state)
{
    (void)state;
    pair ml = pair_rand((size_t)VAE_ROWS * 2 * VAE_Z, 80), z = pair_rand((size_t)VAE_ROWS * VAE_Z, 81);
    float *gs = lk_dev_alloc(GPU, sizeof(float)), ckl = 0.0f;
    for (int noise = 0; noise < 2; noise++) { /* training draws; evaluation takes mu */
        CPU->ops->reparam_forward(CPU, ml.c, z.c, VAE_ROWS, VAE_Z, noise, 5, 77, 40, &ckl);
        GPU->ops->reparam_forward(GPU, ml.g, z.g, VAE_ROWS, VAE_Z, noise, 5, 77, 40, gs);
        same("reparam_forward z", &z, 1e-5);
        close_to("reparam_forward kl", ckl, gpu_scalar(gs), 1e-5);
    }
    lk_dev_free(GPU, gs);
    pair_free(&ml), pair_free(&z);
}

static void case_reparam_backward(void **state)
{
    (void)state;
    pair ml = pair_rand((size_t)VAE_ROWS * 2 * VAE_Z, 82), dz = pair_rand((size_t)VAE_ROWS * VAE_Z, 83),
         dml = pair_rand((size_t)VAE_ROWS * 2 * VAE_Z, 84);
    CPU->ops->reparam_backward(CPU, ml.c, dz.c, dml.c, VAE_ROWS, VAE_Z, 5, 77, 40, 0.1f);
    GPU->ops->reparam_backward(GPU, ml.g, dz.g, dml.g, VAE_ROWS, VAE_Z, 5, 77, 40, 0.1f);
    same("reparam_backward", &dml, 1e-5);
    pair_free(&ml), pair_free(&dz), pair_free(&dml);
}

static void case_randn(void **state)
{
    (void)state;
    const size_t n = 10001;
    pair z = pair_rand(n, 85);
    CPU->ops->randn(CPU, z.c, n, 5, 9, 1000);
    GPU->ops->randn(GPU, z.g, n, 5, 9, 1000);
    same("randn", &z, 1e-6);
    pair_free(&z);
}

static void case_affine(void **state)
{
    (void)state;
    const size_t n = 10001;
    pair x = pair_rand(n, 86);
    CPU->ops->affine(CPU, x.c, 2.0f, -1.0f, n);
    GPU->ops->affine(GPU, x.g, 2.0f, -1.0f, n);
    same("affine", &x, 1e-6);
    pair_free(&x);
}

/* ---- batch norm ---- */

/* x [n][c][inner]: a 2-d batch (BatchNorm2d) and one of vectors (BatchNorm1d) */
static const int BN_SHAPES[][3] = {{6, 5, 49}, {64, 10, 1}};

/* x with per-channel means away from 0, positive rstd, and the CPU's sums of x */
typedef struct {
    int n, c, inner;
    pair x, mean, rstd, sums;
} bn_case;

static void bn_open(bn_case *v, int s)
{
    v->n = BN_SHAPES[s][0], v->c = BN_SHAPES[s][1], v->inner = BN_SHAPES[s][2];
    size_t nx = (size_t)v->n * v->c * v->inner;
    v->x = pair_rand(nx, 87), v->mean = pair_rand((size_t)v->c, 88), v->rstd = pair_rand((size_t)v->c, 89);
    v->sums = pair_rand(2 * (size_t)v->c + 1, 90);
    for (size_t i = 0; i < nx; i++) v->x.c[i] = 2.0f * v->x.c[i] + (float)((i / (size_t)v->inner) % (size_t)v->c);
    for (int j = 0; j < v->c; j++) v->rstd.c[j] = 0.5f + fabsf(v->rstd.c[j]);
    pair_push(&v->x), pair_push(&v->rstd);
    CPU->ops->bn_sums(CPU, v->x.c, NULL, NULL, NULL, v->n, v->c, v->inner, v->sums.c);
    pair_push(&v->sums);
}

static void bn_close(bn_case *v)
{
    pair_free(&v->x), pair_free(&v->mean), pair_free(&v->rstd), pair_free(&v->sums);
}

static void case_bn_sums(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++) {
        bn_case v;
        bn_open(&v, s);
        pair out = pair_rand(2 * (size_t)v.c + 1, 91), dy = pair_rand(v.x.n, 92);
        /* forward: sums of x and x^2, and the count */
        GPU->ops->bn_sums(GPU, v.x.g, NULL, NULL, NULL, v.n, v.c, v.inner, out.g);
        memcpy(out.c, v.sums.c, out.n * sizeof(float));
        same("bn_sums of x", &out, 1e-5);
        /* backward: sums of dy and dy * xhat */
        CPU->ops->bn_sums(CPU, v.x.c, dy.c, v.mean.c, v.rstd.c, v.n, v.c, v.inner, out.c);
        GPU->ops->bn_sums(GPU, v.x.g, dy.g, v.mean.g, v.rstd.g, v.n, v.c, v.inner, out.g);
        same("bn_sums of dy", &out, 1e-5);
        assert_true(out.c[2 * v.c] == (float)(v.n * v.inner));
        pair_free(&out), pair_free(&dy);
        bn_close(&v);
    }
}

static void case_bn_stats(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++) {
        bn_case v;
        bn_open(&v, s);
        size_t c = (size_t)v.c;
        pair rm = pair_rand(c, 93), rv = pair_rand(c, 94), tr = pair_rand(1, 95);
        for (size_t j = 0; j < c; j++) rv.c[j] = 0.1f + fabsf(rv.c[j]);
        tr.c[0] = 3.0f;
        pair_push(&rv), pair_push(&tr);
        /* training: batch statistics from the same sums, running statistics updated */
        CPU->ops->bn_stats(CPU, v.sums.c, v.c, 1e-5f, 0.1f, v.mean.c, v.rstd.c, rm.c, rv.c, tr.c);
        GPU->ops->bn_stats(GPU, v.sums.g, v.c, 1e-5f, 0.1f, v.mean.g, v.rstd.g, rm.g, rv.g, tr.g);
        same("bn_stats mean", &v.mean, 1e-5);
        same("bn_stats rstd", &v.rstd, 1e-5);
        same("bn_stats running mean", &rm, 1e-5);
        same("bn_stats running var", &rv, 1e-5);
        same("bn_stats num_batches_tracked", &tr, 0.0);
        /* without running statistics (a replica that does not keep them) */
        CPU->ops->bn_stats(CPU, v.sums.c, v.c, 1e-3f, 0.1f, v.mean.c, v.rstd.c, NULL, NULL, NULL);
        GPU->ops->bn_stats(GPU, v.sums.g, v.c, 1e-3f, 0.1f, v.mean.g, v.rstd.g, NULL, NULL, NULL);
        same("bn_stats mean, no running statistics", &v.mean, 1e-5);
        same("bn_stats rstd, no running statistics", &v.rstd, 1e-5);
        /* evaluation: from the running statistics */
        CPU->ops->bn_stats(CPU, NULL, v.c, 1e-5f, 0.1f, v.mean.c, v.rstd.c, rm.c, rv.c, tr.c);
        GPU->ops->bn_stats(GPU, NULL, v.c, 1e-5f, 0.1f, v.mean.g, v.rstd.g, rm.g, rv.g, tr.g);
        same("bn_stats mean, evaluation", &v.mean, 1e-5);
        same("bn_stats rstd, evaluation", &v.rstd, 1e-5);
        same("bn_stats num_batches_tracked, evaluation", &tr, 0.0);
        pair_free(&rm), pair_free(&rv), pair_free(&tr);
        bn_close(&v);
    }
}

static void case_bn_forward(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++) {
        bn_case v;
        bn_open(&v, s);
        size_t c = (size_t)v.c;
        pair w = pair_rand(c, 96), b = pair_rand(c, 97), y = pair_rand(v.x.n, 98);
        CPU->ops->bn_forward(CPU, v.x.c, v.mean.c, v.rstd.c, w.c, b.c, y.c, v.n, v.c, v.inner);
        GPU->ops->bn_forward(GPU, v.x.g, v.mean.g, v.rstd.g, w.g, b.g, y.g, v.n, v.c, v.inner);
        same("bn_forward", &y, 1e-5);
        pair_free(&w), pair_free(&b), pair_free(&y);
        bn_close(&v);
    }
}

static void case_bn_backward(void **state)
{
    (void)state;
    for (int s = 0; s < 2; s++) {
        bn_case v;
        bn_open(&v, s);
        size_t c = (size_t)v.c;
        pair w = pair_rand(c, 99), dy = pair_rand(v.x.n, 100), dx = pair_rand(v.x.n, 101),
             gs = pair_rand(2 * c + 1, 102);
        /* the batch's own statistics and the sums of its gradient, the same on both */
        CPU->ops->bn_stats(CPU, v.sums.c, v.c, 1e-5f, 0.1f, v.mean.c, v.rstd.c, NULL, NULL, NULL);
        CPU->ops->bn_sums(CPU, v.x.c, dy.c, v.mean.c, v.rstd.c, v.n, v.c, v.inner, gs.c);
        pair_push(&v.mean), pair_push(&v.rstd), pair_push(&gs);
        CPU->ops->bn_backward(CPU, v.x.c, dy.c, v.mean.c, v.rstd.c, w.c, gs.c, dx.c, v.n, v.c, v.inner);
        GPU->ops->bn_backward(GPU, v.x.g, dy.g, v.mean.g, v.rstd.g, w.g, gs.g, dx.g, v.n, v.c, v.inner);
        same("bn_backward", &dx, 1e-5);
        pair_free(&w), pair_free(&dy), pair_free(&dx), pair_free(&gs);
        bn_close(&v);
    }
}

/* ---- the optimizer and the flat-buffer helpers ---- */

static void case_optim_update(void **state)
{
    (void)state;
    const size_t n = 50021;
    for (int kind = LK_OPT_SGD; kind <= LK_OPT_ADAGRAD; kind++) {
        pair w = pair_rand(n, 103), g = pair_rand(n, 104), s1 = pair_rand(n, 105), s2 = pair_rand(n, 106);
        /* second moments and sums of squares are not negative */
        const int s1_squares = kind == LK_OPT_RMSPROP || kind == LK_OPT_ADAGRAD;
        for (size_t i = 0; i < n; i++) {
            s2.c[i] = fabsf(s2.c[i]);
            if (s1_squares) s1.c[i] = fabsf(s1.c[i]);
        }
        pair_push(&s1), pair_push(&s2);
        lk_optim_hparams hp = {(lk_optim_kind)kind, 0.01f, 0.9f, 0.9f, 0.999f, 1e-8f, 0.99f,
                               0.01f, 1e-4f, 0.5f, 3, {0, 0, 0, 0, NULL}, NULL};
        /* the last step also writes the bf16 working copy: to nearest even for the odd kinds,
         * stochastically for the even ones (keyed: step 5, from element 1000) */
        uint16_t *c16 = lk_dev_alloc(CPU, n * 2), *g16 = lk_dev_alloc(GPU, n * 2), *h16 = malloc(n * 2);
        for (int step = 0; step < 3; step++, hp.step++) {
            const int last = step == 2;
            hp.round = (lk_round){kind % 2 == 0, 9, 5, 1000, NULL};
            CPU->ops->optim_update(CPU, &hp, w.c, g.c, s1.c, s2.c, last ? c16 : NULL, n);
            GPU->ops->optim_update(GPU, &hp, w.g, g.g, s1.g, s2.g, last ? g16 : NULL, n);
        }
        same("optim_update w", &w, 1e-5);
        same("optim_update s1", &s1, 1e-5);
        same("optim_update s2", &s2, 1e-5);
        /* each device's copy is its own weights' rounding, bit for bit */
        float *gw = malloc(n * sizeof *gw);
        lk_copy_to_host(GPU, gw, w.g, n * sizeof *gw);
        lk_copy_to_host(GPU, h16, g16, n * 2);
        TU_OK(lk_device_status(GPU));
        for (size_t i = 0; i < n; i++) {
            const uint16_t ec = lk_bf16_round(w.c[i], kind % 2 == 0, 9, 5, 1000 + i);
            const uint16_t eg = lk_bf16_round(gw[i], kind % 2 == 0, 9, 5, 1000 + i);
            if (c16[i] != ec || h16[i] != eg)
                fail_msg("optim_update's working copy [%zu]: cpu %#x (want %#x), cuda %#x (want %#x)", i,
                         c16[i], ec, h16[i], eg);
        }
        free(gw), free(h16);
        lk_dev_free(CPU, c16), lk_dev_free(GPU, g16);
        pair_free(&w), pair_free(&g), pair_free(&s1), pair_free(&s2);
    }
}

/* the step check's rule over a run of steps (kept, spikes, skips, a stop), the state
 * compared bit for bit (the same code on both); its verdict gates the optimizer's pass */
static void case_guard(void **state)
{
    (void)state;
    const lk_guard_cfg cfg = {LK_NAN_SKIP, 3, 3.0};
    lk_guard_state *cs = calloc(1, sizeof *cs), *gs = lk_dev_alloc(GPU, sizeof *gs), *back = malloc(sizeof *back);
    float cacc = 0.0f, *gacc = lk_dev_alloc(GPU, sizeof(float));
    lk_zero(GPU, gs, sizeof *gs);
    lk_zero(GPU, gacc, sizeof(float));
    for (long step = 0; step < 60; step++) {
        const float loss = step == 30 || step == 31 ? 9.0f : 1.0f + 0.01f * (float)(step % 7);
        const float sumsq = step == 40 ? NAN : step >= 50 ? INFINITY : 2.0f; /* a skip; then 4 in a row: stop */
        CPU->ops->guard(CPU, cs, LK_GUARD_BEGIN, cfg, step, &cacc, 0.0f);
        GPU->ops->guard(GPU, gs, LK_GUARD_BEGIN, cfg, step, gacc, 0.0f);
        cacc += loss * 4.0f;
        lk_copy_to_device(GPU, gacc, &cacc, sizeof cacc);
        cs->in[0] = sumsq;
        lk_copy_to_device(GPU, &gs->in[0], &sumsq, sizeof sumsq);
        CPU->ops->guard(CPU, cs, LK_GUARD_PREPARE, cfg, step, &cacc, 4.0f);
        GPU->ops->guard(GPU, gs, LK_GUARD_PREPARE, cfg, step, gacc, 4.0f);
        CPU->ops->guard(CPU, cs, LK_GUARD_DECIDE, cfg, step, &cacc, 0.0f);
        GPU->ops->guard(GPU, gs, LK_GUARD_DECIDE, cfg, step, gacc, 0.0f);
        lk_copy_to_host(GPU, back, gs, sizeof *back);
        TU_OK(lk_device_status(GPU));
        if (memcmp(cs, back, sizeof *cs)) fail_msg("guard: the state differs after step %ld", step);
    }
    assert_int_equal(cs->skipped, 2 + 1 + 4);
    assert_int_equal(cs->stopped, 54);
    /* a dropped step's pass changes nothing on the GPU either */
    pair w = pair_rand(1000, 120), g = pair_rand(1000, 121), s1 = pair_rand(1000, 122);
    lk_optim_hparams hp = {LK_OPT_MOMENTUM, 0.1f, 0.9f, 0.9f, 0.999f, 1e-8f, 0.99f, 0.0f, 0.0f, 1.0f, 1,
                           {0, 0, 0, 0, &gs->skip}, &gs->skip};
    GPU->ops->optim_update(GPU, &hp, w.g, g.g, s1.g, NULL, NULL, 1000);
    same("optim_update dropped: w", &w, 0.0);
    same("optim_update dropped: s1", &s1, 0.0);
    pair_free(&w), pair_free(&g), pair_free(&s1);
    lk_dev_free(GPU, gs), lk_dev_free(GPU, gacc);
    free(cs), free(back);
}

static void case_sumsq(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 1000, 50021, 1u << 20};
    for (int s = 0; s < 4; s++) {
        pair x = pair_rand(sizes[s], 107);
        float *gs = lk_dev_alloc(GPU, sizeof(float)), cs = 0.0f;
        CPU->ops->sumsq(CPU, x.c, sizes[s], &cs);
        GPU->ops->sumsq(GPU, x.g, sizes[s], gs);
        close_to("sumsq", cs, gpu_scalar(gs), 1e-6);
        lk_dev_free(GPU, gs);
        pair_free(&x);
    }
}

static void case_scale(void **state)
{
    (void)state;
    const size_t n = 50021;
    pair x = pair_rand(n, 108);
    CPU->ops->scale(CPU, x.c, 3.0f, n);
    GPU->ops->scale(GPU, x.g, 3.0f, n);
    same("scale", &x, 1e-6);
    pair_free(&x);
}

static void case_axpy(void **state)
{
    (void)state;
    const size_t n = 50021;
    pair x = pair_rand(n, 109), y = pair_rand(n, 110);
    CPU->ops->axpy(CPU, -0.25f, x.c, y.c, n);
    GPU->ops->axpy(GPU, -0.25f, x.g, y.g, n);
    same("axpy", &y, 1e-6);
    pair_free(&x), pair_free(&y);
}

static void case_ghost_norm(void **state)
{
    (void)state;
    const int n = 37, in = 300, out = 1100; /* (more than a block's threads on one side) */
    pair x = pair_rand((size_t)n * in, 111), dy = pair_rand((size_t)n * out, 112), sq = pair_rand(n, 113);
    for (int bias = 0; bias < 2; bias++) {
        CPU->ops->ghost_norm(CPU, x.c, dy.c, n, in, out, bias, sq.c);
        GPU->ops->ghost_norm(GPU, x.g, dy.g, n, in, out, bias, sq.g);
        same("ghost_norm", &sq, 1e-5);
    }
    pair_free(&x), pair_free(&dy), pair_free(&sq);
}

/* ---- the table: one row per entry of lk_backend ---- */

typedef void (*entry_fn)(void);
#define FN_BYTES sizeof(entry_fn)

/* every member after `name` is a function pointer: the entries fill the rest exactly */
_Static_assert(offsetof(lk_backend, alloc) == sizeof(const char *),
               "lk_backend: `name`, then the entries");
_Static_assert((sizeof(lk_backend) - offsetof(lk_backend, alloc)) % FN_BYTES == 0,
               "lk_backend: every member after `name` is a function pointer");

typedef struct {
    size_t offset;        /* of the entry in lk_backend */
    const char *entry;
    void (*run)(void **state); /* the case, or NULL for an exemption */
    const char *exempt;   /* why the entry has no case of its own */
    int optional;         /* a backend may leave it NULL */
} entry_row;

/* the entry's offset; does not compile unless the member is pointer-sized */
#define SLOT(e) \
    (offsetof(lk_backend, e) + 0 * sizeof(char[sizeof(((lk_backend *)0)->e) == FN_BYTES ? 1 : -1]))
#define CASE(e) {SLOT(e), #e, case_##e, NULL, 0}
#define EXEMPT(e, optional, why) {SLOT(e), #e, NULL, why, optional}

static const entry_row ENTRIES[] = {
    EXEMPT(alloc, 0, "memory of every case comes from it (pair_of, lk_dev_alloc)"),
    EXEMPT(free, 0, "every case gives its memory back through it (pair_free, lk_dev_free)"),
    CASE(copy_h2d),
    CASE(copy_d2h),
    CASE(copy_d2d),
    CASE(memset0),
    CASE(sync),
    CASE(host_alloc),
    CASE(host_free),
    CASE(owns),
    CASE(matmul),
    EXEMPT(gemm_plan, 1,
           "a planning hook that computes nothing to compare (the CPU creates its primitives, CUDA "
           "grows its bf16 operand buffer); exercised by every model build (test_model)"),
    EXEMPT(mem_info, 1,
           "reports sizes, nothing to compare; the memory plan's test (test_memplan) reads the "
           "CPU's, and tests/run-gpu.sh's training runs the GPU's"),
    CASE(bias_add),
    CASE(bias_grad),
    CASE(act_forward),
    CASE(act_backward),
    CASE(conv2d_saved),
    CASE(conv2d_workspace),
    CASE(conv2d_forward),
    CASE(conv2d_backward),
    CASE(pool2d_forward),
    CASE(pool2d_backward),
    CASE(dropout_forward),
    CASE(dropout_backward),
    CASE(softmax_xent),
    CASE(mse),
    CASE(bce_logits),
    CASE(count_correct),
    CASE(transpose),
    CASE(lstm_cell_forward),
    CASE(lstm_cell_backward),
    CASE(gru_cell_forward),
    CASE(gru_cell_backward),
    CASE(softmax_causal_forward),
    CASE(softmax_causal_backward),
    CASE(layernorm_forward),
    CASE(layernorm_backward),
    CASE(embed_forward),
    CASE(embed_backward),
    CASE(reparam_forward),
    CASE(reparam_backward),
    CASE(bn_sums),
    CASE(bn_stats),
    CASE(bn_forward),
    CASE(bn_backward),
    CASE(randn),
    CASE(affine),
    CASE(optim_update),
    CASE(sumsq),
    CASE(guard),
    CASE(orthonormalize),
    CASE(cast_bf16),
    CASE(widen_bf16),
    CASE(pack16),
    CASE(unpack16),
    CASE(scale),
    CASE(axpy),
    CASE(ghost_norm),
    EXEMPT(status, 0, "every comparison reads it first and fails on anything but LK_OK (same, "
                      "same_bytes, gpu_scalar)"),
};
#define NROWS ((int)(sizeof ENTRIES / sizeof *ENTRIES))

static entry_fn slot_of(const lk_backend *b, size_t offset)
{
    entry_fn f;
    memcpy(&f, (const char *)b + offset, sizeof f);
    return f;
}

/* The name of the row at `offset`, or NULL */
static const char *row_name(size_t offset)
{
    for (int r = 0; r < NROWS; r++)
        if (ENTRIES[r].offset == offset) return ENTRIES[r].entry;
    return NULL;
}

/* Every slot of lk_backend after `name` has exactly one row, every row exactly one of
 * a case and a reason, and the CPU fills every entry that is not optional. Needs no
 * GPU. Returns the number of problems, each printed. */
static int check_coverage(const lk_backend *cpu)
{
    int bad = 0;
    const char *before = "name";
    for (size_t off = offsetof(lk_backend, alloc); off < sizeof(lk_backend); off += FN_BYTES) {
        int rows = 0;
        for (int r = 0; r < NROWS; r++) rows += ENTRIES[r].offset == off;
        const char *name = row_name(off);
        if (rows == 0) {
            const char *after = NULL;
            for (size_t o = off + FN_BYTES; o < sizeof(lk_backend) && !after; o += FN_BYTES) after = row_name(o);
            printf("FAIL: lk_backend entry %zu (byte %zu, after `%s`%s%s%s) has no row in the parity "
                   "table: add a case (case_<entry>) or an exemption with its reason\n",
                   (off - offsetof(lk_backend, alloc)) / FN_BYTES, off, before,
                   after ? ", before `" : "", after ? after : "", after ? "`" : "");
            bad++;
            before = "(the entry without a row)";
            continue;
        }
        if (rows > 1) {
            printf("FAIL: lk_backend entry `%s` has %d rows in the parity table\n", name, rows);
            bad++;
        }
        before = name;
    }
    for (int r = 0; r < NROWS; r++) {
        const entry_row *e = &ENTRIES[r];
        if (!e->run == !e->exempt) {
            printf("FAIL: the row of `%s` needs exactly one of a case and an exemption's reason\n", e->entry);
            bad++;
        }
        if (!e->optional && !slot_of(cpu, e->offset)) {
            printf("FAIL: the CPU backend leaves `%s` NULL\n", e->entry);
            bad++;
        }
    }
    return bad;
}

int main(void)
{
    CPU = tu_cpu();
    int bad = check_coverage(CPU->ops);
    int ncases = 0;
    for (int r = 0; r < NROWS; r++) ncases += ENTRIES[r].run != NULL;
    if (bad) {
        printf("FAIL: %d problem%s with the parity table's coverage of lk_backend\n", bad, bad == 1 ? "" : "s");
        return 1;
    }
    printf("coverage: all %d entries of lk_backend have a row: %d cases, %d exempt\n", NROWS, ncases,
           NROWS - ncases);

    const char *self = getenv("LK_PARITY_SELFTEST");
    lk_device *gpu = NULL;
    if (self && self[0] && strcmp(self, "0")) {
        if (lk_device_open(&gpu, "cpu", 1) != LK_OK) {
            printf("FAIL: cannot open a second CPU device: %s\n", lk_error_message());
            return 1;
        }
        printf("LK_PARITY_SELFTEST: a second CPU device in the GPU's place (checks the cases, not CUDA)\n");
    } else {
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
    }
    GPU = gpu;
    printf("CPU/CUDA parity on %s\n", GPU->name);
    /* every entry with a case exists on this backend; an optional one without a case
     * must still be missing there (else it computes something and needs a case) */
    for (int r = 0; r < NROWS; r++) {
        const entry_row *e = &ENTRIES[r];
        if (e->run && !slot_of(GPU->ops, e->offset)) {
            printf("FAIL: %s leaves `%s` NULL\n", GPU->name, e->entry);
            bad++;
        }
        if (!e->run && e->optional && real_gpu() && slot_of(GPU->ops, e->offset)) {
            printf("FAIL: %s now implements the optional `%s`: give it a case\n", GPU->name, e->entry);
            bad++;
        }
    }
    if (bad) {
        lk_device_close(GPU);
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)ncases, sizeof *tests);
    int k = 0;
    for (int r = 0; r < NROWS; r++)
        if (ENTRIES[r].run) tests[k++] = (struct CMUnitTest){ENTRIES[r].entry, ENTRIES[r].run, NULL, NULL, NULL};
    int failed = _cmocka_run_group_tests("cuda_parity", tests, (size_t)ncases, NULL, NULL);
    free(tests);
    lk_device_close(GPU);
    return failed ? 1 : 0;
}
