/* backend_cpu.c - the CPU backend's vtable and its element-wise work: OpenMP loops
 * that only fork threads when the work is large enough to pay for it, so 1-thread runs
 * carry no OpenMP overhead. Matrix products and convolutions go through oneDNN
 * (backend_cpu_dnnl.c, backend_cpu_conv.c), which runs on the same OpenMP pool. */
#include "backend_cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "fastmath.h"
#include "rng.h"

static void *cpu_alloc(lk_device *d, size_t bytes)
{
    (void)d;
    return aligned_alloc(64, LK_ALIGN_UP(bytes ? bytes : 1, 64));
}
static void cpu_free(lk_device *d, void *p)
{
    (void)d;
    free(p);
}
static void cpu_copy(lk_device *d, void *dst, const void *src, size_t bytes)
{
    (void)d;
    memmove(dst, src, bytes);
}
static void cpu_memset0(lk_device *d, void *p, size_t bytes)
{
    (void)d;
    memset(p, 0, bytes);
}
static void cpu_sync(lk_device *d) { (void)d; }
static int cpu_owns(lk_device *d, const void *p)
{
    (void)d, (void)p;
    return 0; /* the host addresses all of it */
}

static void cpu_bias_add(lk_device *d, float *y, const float *b, int outer, int c, int inner)
{
    (void)d;
    if (inner == 1) { /* linear layers: add b to every row of [outer, c] */
        for (int o = 0; o < outer; o++) {
            float *row = y + (size_t)o * c;
            for (int j = 0; j < c; j++) row[j] += b[j];
        }
        return;
    }
    long rows = (long)outer * c;
    LK_CPU_FOR(rows * inner > LK_CPU_PAR_MIN, r, rows, {
        float bv = b[r % c];
        float *yr = y + r * inner;
        for (int i = 0; i < inner; i++) yr[i] += bv;
    });
}

void lk_cpu_bias_grad(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                      float beta)
{
    (void)d;
    if (beta == 0.0f) memset(db, 0, (size_t)c * sizeof *db);
    if (inner == 1) { /* linear layers: column sums of [outer, c] */
        for (int o = 0; o < outer; o++) {
            const float *row = dy + (size_t)o * c;
            for (int j = 0; j < c; j++) db[j] += row[j];
        }
        return;
    }
    LK_CPU_FOR((long)outer * c * inner > LK_CPU_PAR_MIN, j, c, {
        float s = 0.0f;
        for (int o = 0; o < outer; o++) {
            const float *p = dy + ((size_t)o * c + j) * inner;
            _Pragma("omp simd reduction(+ : s)")
            for (int i = 0; i < inner; i++) s += p[i];
        }
        db[j] += s;
    });
}

static inline float gelu(float x) { return 0.5f * x * (1.0f + lk_erff(x * 0.70710678118654752f)); }
static inline float gelu_grad(float x)
{
    const float e = lk_expneg(-0.5f * x * x); /* the normal density's and erf's exponential */
    const float cdf = 0.5f * (1.0f + lk_erff_e(x * 0.70710678118654752f, e));
    return cdf + x * 0.39894228040143268f * e;
}

/* GPT-2's: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Beyond |x| = 10 the tanh is
 * +-1 in float: the cube is taken of x clamped there, so no huge x overflows it. */
static inline float gelu_tanh_t(float x)
{
    const float c = x > 10.0f ? 10.0f : x < -10.0f ? -10.0f : x;
    return lk_tanhf(0.79788456080286536f * (c + 0.044715f * c * c * c));
}
static inline float gelu_tanh(float x) { return 0.5f * x * (1.0f + gelu_tanh_t(x)); }
static inline float gelu_tanh_grad(float x)
{
    const float c = x > 10.0f ? 10.0f : x < -10.0f ? -10.0f : x, t = gelu_tanh_t(x);
    return 0.5f * (1.0f + t) +
           0.5f * c * (1.0f - t * t) * 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * c * c);
}

static void cpu_act_forward(lk_device *d, lk_act act, float alpha, const float *x, float *y, size_t n)
{
    (void)d;
    long ln = (long)n;
    switch (act) {
    case LK_ACT_IDENTITY:
        if (x != y) memmove(y, x, n * sizeof *x);
        break;
    case LK_ACT_RELU:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = x[i] > 0.0f ? x[i] : 0.0f;);
        break;
    case LK_ACT_LEAKY_RELU:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];);
        break;
    case LK_ACT_SIGMOID:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN / 8, i, ln, y[i] = lk_sigmf(x[i]););
        break;
    case LK_ACT_TANH:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN / 8, i, ln, y[i] = lk_tanhf(x[i]););
        break;
    case LK_ACT_GELU:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN / 8, i, ln, y[i] = gelu(x[i]););
        break;
    case LK_ACT_GELU_TANH:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN / 8, i, ln, y[i] = gelu_tanh(x[i]););
        break;
    case LK_ACT_COUNT: break;
    }
}

static void cpu_act_backward(lk_device *d, lk_act act, float alpha, const float *x, const float *y,
                             const float *dy, float *dx, size_t n)
{
    (void)d;
    long ln = (long)n;
    switch (act) {
    case LK_ACT_IDENTITY:
        if (dx != dy) memmove(dx, dy, n * sizeof *dy);
        break;
    case LK_ACT_RELU:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;);
        break;
    case LK_ACT_LEAKY_RELU:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];);
        break;
    case LK_ACT_SIGMOID:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, dx[i] = dy[i] * y[i] * (1.0f - y[i]););
        break;
    case LK_ACT_TANH:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, dx[i] = dy[i] * (1.0f - y[i] * y[i]););
        break;
    case LK_ACT_GELU:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN / 8, i, ln, dx[i] = dy[i] * gelu_grad(x[i]););
        break;
    case LK_ACT_GELU_TANH:
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN / 8, i, ln, dx[i] = dy[i] * gelu_tanh_grad(x[i]););
        break;
    case LK_ACT_COUNT: break;
    }
}

static void cpu_dropout_forward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                                const float *x, float *y, size_t n)
{
    (void)d;
    float keep = 1.0f / (1.0f - p);
    long ln = (long)n;
    LK_CPU_FOR(ln > LK_CPU_PAR_MIN / 8, i, ln,
        y[i] = lk_rng_uniform(seed, LK_RNG_DROPOUT, a, first + (uint64_t)i) >= p ? x[i] * keep : 0.0f;);
}

static void cpu_dropout_backward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                                 const float *dy, float *dx, size_t n)
{
    cpu_dropout_forward(d, p, seed, a, first, dy, dx, n); /* the same mask and scale */
}

/* One row of the cross-entropy: its loss, and with dz its gradient times g (0 in its
 * padding up to ld). exp is taken once per logit (kept in dz), vectorised; a GPT-2 head has
 * 50257 of them per token. */
static double xent_row(const float *z, int label, int c, int ld, float *dz, float g)
{
    const float zy = z[label]; /* before dz (which may be z) is written */
    float mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < c; j++) mx = z[j] > mx ? z[j] : mx;
    float sum = 0.0f;
    if (dz) {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < c; j++) {
            const float e = lk_expneg(z[j] - mx);
            dz[j] = e;
            sum += e;
        }
        const float k = g / sum;
#pragma omp simd
        for (int j = 0; j < c; j++) dz[j] *= k;
        dz[label] -= g;
        for (int j = c; j < ld; j++) dz[j] = 0.0f;
    } else {
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < c; j++) sum += lk_expneg(z[j] - mx);
    }
    return (double)(logf(sum) - (zy - mx));
}

/* The same over bf16 logits (a bf16 model's): computed in float32 from the widened values,
 * the gradient rounded to nearest even in place of them (exp taken twice: no float32 row). */
static double xent_row16(const uint16_t *z, int label, int c, int ld, uint16_t *dz, float g)
{
    const float zy = lk_bf16_to_f32(z[label]);
    float mx = lk_bf16_to_f32(z[0]), sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < c; j++) mx = fmaxf(mx, lk_bf16_to_f32(z[j]));
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < c; j++) sum += lk_expneg(lk_bf16_to_f32(z[j]) - mx);
    if (dz) {
        const float k = g / sum;
#pragma omp simd
        for (int j = 0; j < c; j++)
            dz[j] = lk_bf16_rne(lk_expneg(lk_bf16_to_f32(z[j]) - mx) * k - (j == label ? g : 0.0f));
        for (int j = c; j < ld; j++) dz[j] = 0;
    }
    return (double)(logf(sum) - (zy - mx));
}

static void cpu_softmax_xent(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                             int c, int ld, float *loss, void *dlogits, float scale)
{
    (void)d;
    double total = 0.0;
    const float g = scale / (float)n;
#define ROW(r)                                                                                          \
    (t == LK_BF16 ? xent_row16((const uint16_t *)logits + (size_t)(r) * ld, labels[r], c, ld,            \
                               dlogits ? (uint16_t *)dlogits + (size_t)(r) * ld : NULL, g)             \
                  : xent_row((const float *)logits + (size_t)(r) * ld, labels[r], c, ld,               \
                             dlogits ? (float *)dlogits + (size_t)(r) * ld : NULL, g))
    if ((long)n * ld > LK_CPU_PAR_MIN && lk_cpu_multithreaded()) {
#pragma omp parallel for reduction(+ : total) schedule(static)
        for (int r = 0; r < n; r++) total += ROW(r);
    } else {
        for (int r = 0; r < n; r++) total += ROW(r);
    }
#undef ROW
    *loss = (float)(total / n);
}

static void cpu_mse(lk_device *d, const float *p, const float *t, size_t n, float *loss, float *dp,
                    float scale)
{
    (void)d;
    double total = 0.0;
    float g = 2.0f * scale / (float)n;
    for (size_t i = 0; i < n; i++) {
        float e = p[i] - t[i];
        total += (double)e * e;
        if (dp) dp[i] = g * e;
    }
    *loss = (float)(total / (double)n);
}

static void cpu_bce_logits(lk_device *d, const float *z, const float *t, size_t n, float *loss,
                           float *dz, float scale)
{
    (void)d;
    double total = 0.0;
    float g = scale / (float)n;
    for (size_t i = 0; i < n; i++) {
        float x = z[i];
        total += (double)(fmaxf(x, 0.0f) - x * t[i] + log1pf(expf(-fabsf(x))));
        if (dz) dz[i] = g * (lk_sigmf(x) - t[i]);
    }
    *loss = (float)(total / (double)n);
}

static void cpu_count_correct(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                              int c, int ld, float *correct)
{
    (void)d;
    int hits = 0;
    for (int r = 0; r < n; r++) {
        const size_t row = (size_t)r * ld;
#define Z(j) (t == LK_BF16 ? lk_bf16_to_f32(((const uint16_t *)logits)[row + (j)]) : ((const float *)logits)[row + (j)])
        int best = 0;
        for (int j = 1; j < c; j++)
            if (Z(j) > Z(best)) best = j;
#undef Z
        hits += best == labels[r];
    }
    *correct = (float)hits;
}

/* one matrix's columns in turn (device.h's rule); the dot products serial, in double (the
 * same bits on every rank whatever its threads); the matrices of a call in parallel */
static double col_dot(const float *p, int n, int r, int j, int k)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)p[(size_t)i * r + j] * p[(size_t)i * r + k];
    return s;
}

static void orthonormalize_one(float *p, int n, int r)
{
    for (int j = 0; j < r; j++) {
        double sq0 = col_dot(p, n, r, j, j);
        for (int tries = 0;; tries++) {
            for (int k = 0; k < j; k++) {
                const float f = (float)col_dot(p, n, r, k, j);
                for (int i = 0; i < n; i++) p[(size_t)i * r + j] -= f * p[(size_t)i * r + k];
            }
            const double sq = col_dot(p, n, r, j, j);
            if ((sq > 0.0 && sqrt(sq) > 1e-4 * sqrt(sq0)) || tries >= n) {
                const float inv = sq > 0.0 ? (float)(1.0 / sqrt(sq)) : 0.0f;
                for (int i = 0; i < n; i++) p[(size_t)i * r + j] *= inv;
                break;
            }
            for (int i = 0; i < n; i++) p[(size_t)i * r + j] = i == (j + tries) % n ? 1.0f : 0.0f;
            sq0 = 1.0;
        }
    }
}

static void cpu_orthonormalize(lk_device *d, float *p, int n, int r, int count)
{
    (void)d;
    LK_CPU_FOR((long)count * n * r > LK_CPU_PAR_MIN && count > 1, c, count,
               orthonormalize_one(p + (size_t)c * n * r, n, r););
}

static void cpu_sumsq(lk_device *d, const float *x, size_t n, float *out)
{
    (void)d;
    double s = 0.0;
    long ln = (long)n;
    if (ln > LK_CPU_PAR_MIN && lk_cpu_multithreaded()) {
#pragma omp parallel for reduction(+ : s) schedule(static)
        for (long i = 0; i < ln; i++) s += (double)x[i] * x[i];
    } else {
#pragma omp simd reduction(+ : s)
        for (long i = 0; i < ln; i++) s += (double)x[i] * x[i];
    }
    *out = (float)s;
}

static void cpu_scale(lk_device *d, float *x, float a, size_t n)
{
    (void)d;
    LK_CPU_FOR_SIMD((long)n > LK_CPU_PAR_MIN, i, (long)n, x[i] *= a;);
}

static void cpu_axpy(lk_device *d, float a, const float *x, float *y, size_t n)
{
    (void)d;
    LK_CPU_FOR_SIMD((long)n > LK_CPU_PAR_MIN, i, (long)n, y[i] += a * x[i];);
}

static void cpu_ghost_norm(lk_device *d, const float *x, const float *dy, int n, int in, int out, int bias,
                           float *sq)
{
    (void)d;
    LK_CPU_FOR((long)n * (in + out) > LK_CPU_PAR_MIN, i, (long)n, {
        double sx = bias, sg = 0.0;
        for (int j = 0; j < in; j++) sx += (double)x[(size_t)i * in + j] * x[(size_t)i * in + j];
        for (int j = 0; j < out; j++) sg += (double)dy[(size_t)i * out + j] * dy[(size_t)i * out + j];
        sq[i] += (float)(sx * sg);
    });
}

static void cpu_randn(lk_device *d, float *out, size_t n, uint64_t seed, uint64_t key, uint64_t first)
{
    (void)d;
    LK_CPU_FOR((long)n > LK_CPU_PAR_MIN / 8, i, (long)n,
               out[i] = lk_rng_normal(seed, LK_RNG_NOISE, key, first + (uint64_t)i););
}

static void cpu_affine(lk_device *d, float *x, float a, float b, size_t n)
{
    (void)d;
    LK_CPU_FOR_SIMD((long)n > LK_CPU_PAR_MIN, i, (long)n, x[i] = a * x[i] + b;);
}

static const lk_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy_h2d = cpu_copy,
    .copy_d2h = cpu_copy,
    .copy_d2d = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .owns = cpu_owns,
    .matmul = lk_cpu_matmul,
    .gemm_plan = lk_cpu_gemm_plan,
    .mem_info = lk_cpu_mem_info,
    .bias_add = cpu_bias_add,
    .bias_grad = lk_cpu_bias_grad,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .conv2d_saved = lk_cpu_conv2d_saved,
    .conv2d_workspace = lk_cpu_conv2d_workspace,
    .conv2d_forward = lk_cpu_conv2d_forward,
    .conv2d_backward = lk_cpu_conv2d_backward,
    .pool2d_forward = lk_cpu_pool2d_forward,
    .pool2d_backward = lk_cpu_pool2d_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .softmax_xent = cpu_softmax_xent,
    .mse = cpu_mse,
    .bce_logits = cpu_bce_logits,
    .count_correct = cpu_count_correct,
    .optim_update = lk_cpu_optim_update,
    .sumsq = cpu_sumsq,
    .cast_bf16 = lk_cpu_cast_bf16,
    .guard = lk_cpu_guard,
    .widen_bf16 = lk_cpu_widen_bf16,
    .pack16 = lk_cpu_pack16,
    .unpack16 = lk_cpu_unpack16,
    .orthonormalize = cpu_orthonormalize,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .ghost_norm = cpu_ghost_norm,
    .transpose = lk_cpu_transpose,
    .lstm_cell_forward = lk_cpu_lstm_cell_forward,
    .lstm_cell_backward = lk_cpu_lstm_cell_backward,
    .gru_cell_forward = lk_cpu_gru_cell_forward,
    .gru_cell_backward = lk_cpu_gru_cell_backward,
    .softmax_causal_forward = lk_cpu_softmax_causal_forward,
    .softmax_causal_backward = lk_cpu_softmax_causal_backward,
    .layernorm_forward = lk_cpu_layernorm_forward,
    .layernorm_backward = lk_cpu_layernorm_backward,
    .embed_forward = lk_cpu_embed_forward,
    .embed_backward = lk_cpu_embed_backward,
    .reparam_forward = lk_cpu_reparam_forward,
    .reparam_backward = lk_cpu_reparam_backward,
    .bn_sums = lk_cpu_bn_sums,
    .bn_stats = lk_cpu_bn_stats,
    .bn_forward = lk_cpu_bn_forward,
    .bn_backward = lk_cpu_bn_backward,
    .randn = cpu_randn,
    .affine = cpu_affine,
    .status = lk_cpu_status,
};

int lk_cpu_multithreaded(void) { return omp_get_max_threads() > 1; }

lk_status lk_backend_cpu_open(lk_device *d, int threads)
{
    if (threads <= 0) threads = omp_get_max_threads();
    /* one OpenMP pool: our loops and oneDNN's primitives (created for this count) */
    omp_set_num_threads(threads);
    d->kind = LK_DEV_CPU;
    d->ordinal = 0;
    d->threads = threads;
    d->host_addressable = 1;
    d->ops = &cpu_backend;
    snprintf(d->name, sizeof d->name, "cpu");
    LK_CHECK(lk_cpu_dnnl_open(d));
    d->bf16_emulated = lk_cpu_bf16_emulated(lk_cpu_of(d));
    return LK_OK;
}

lk_status lk_backend_cpu_open_helper(lk_device *d)
{
    const int keep = omp_get_max_threads(); /* (open sets the calling thread's count) */
    lk_status st = lk_backend_cpu_open(d, 1);
    omp_set_num_threads(keep);
    return st;
}

void lk_device_helper_thread(void) { omp_set_num_threads(1); }

void lk_backend_cpu_close(lk_device *d) { lk_cpu_dnnl_close(d); }
