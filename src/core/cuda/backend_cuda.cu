/* backend_cuda.cu - the CUDA backend: cuBLAS for matrix products, our kernels for
 * element-wise work, activations, dropout (the CPU's Philox, so masks agree) and
 * reductions. Convolution and pooling live in backend_cuda_conv.cu, the optimizer in
 * backend_cuda_optim.cu, the losses in backend_cuda_loss.cu. Everything runs on the device's one stream; reductions
 * write per-block partial sums in double and a one-block kernel adds them in a fixed
 * order, so results do not depend on scheduling. */
#include "backend_cuda.h"
#include "backend_cuda_reduce.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bf16.h"
#include "../rng.h"

void lk_cuda_fail(lk_cuda *g, const char *file, int line, const char *call, const char *what)
{
    /* the training thread and the comm thread (staged copies) may both fail: the
     * first to claim the slot writes the message */
    if (__atomic_exchange_n(&g->error_claimed, 1, __ATOMIC_ACQ_REL)) return;
    const char *base = strrchr(file, '/');
    snprintf(g->error, sizeof g->error, "cuda:%d: %s failed: %s (%s:%d)", g->ordinal, call, what,
             base ? base + 1 : file, line);
}

/* ---- memory ---- */

/* the current device is per host thread: copies may come from the comm thread */
static void on_device(lk_cuda *g)
{
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != g->ordinal) LK_CU(g, cudaSetDevice(g->ordinal));
}

static void *cu_alloc(lk_device *d, size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* an out-of-memory is reported as NULL, not kept as sticky */
        return NULL;
    }
    (void)d;
    return p;
}
static void cu_free(lk_device *d, void *p) { LK_CU(lk_cuda_of(d), cudaFree(p)); }
static void cu_copy_h2d(lk_device *d, void *dst, const void *src, size_t bytes)
{
    lk_cuda *g = lk_cuda_of(d);
    on_device(g);
    LK_CU(g, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->stream));
    /* The caller may reuse the host buffer at once. From pageable memory (a step's
     * batch) cudaMemcpyAsync has already copied it out when it returns: no wait, so a
     * step does not synchronise; from pinned memory the DMA reads it later: wait. */
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, src) != cudaSuccess) cudaGetLastError();
    else if (a.type == cudaMemoryTypeHost) LK_CU(g, cudaStreamSynchronize(g->stream));
}
static void cu_copy_d2h(lk_device *d, void *dst, const void *src, size_t bytes)
{
    lk_cuda *g = lk_cuda_of(d);
    on_device(g);
    LK_CU(g, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
    LK_CU(g, cudaStreamSynchronize(g->stream));
}
static void cu_copy_d2d(lk_device *d, void *dst, const void *src, size_t bytes)
{
    lk_cuda *g = lk_cuda_of(d);
    LK_CU(g, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g->stream));
}
static void cu_memset0(lk_device *d, void *p, size_t bytes)
{
    lk_cuda *g = lk_cuda_of(d);
    LK_CU(g, cudaMemsetAsync(p, 0, bytes, g->stream));
}
static void cu_sync(lk_device *d)
{
    lk_cuda *g = lk_cuda_of(d);
    LK_CU(g, cudaStreamSynchronize(g->stream));
}

static void *cu_host_alloc(lk_device *d, size_t bytes)
{
    void *p = NULL;
    (void)d;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}
static void cu_host_free(lk_device *d, void *p) { LK_CU(lk_cuda_of(d), cudaFreeHost(p)); }
static int cu_owns(lk_device *d, const void *p)
{
    cudaPointerAttributes a;
    (void)d;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeDevice;
}

/* ---- reductions: per-block double partials, then one block adds them in order ---- */

/* out = (sum of partial[0..nb)) / denom, by one block in a fixed order */
__global__ void k_finish_sum(const double *partial, int nb, double denom, float *out)
{
    double v = 0.0;
    for (int i = threadIdx.x; i < nb; i += blockDim.x) v += partial[i];
    v = block_sum(v);
    if (threadIdx.x == 0) *out = (float)(v / denom);
}

unsigned lk_cuda_reduce_blocks(const lk_cuda *g, size_t n)
{
    unsigned b = lk_cuda_blocks(g, n);
    return b > LK_CUDA_REDUCE_BLOCKS ? LK_CUDA_REDUCE_BLOCKS : b;
}

void lk_cuda_finish_sum(lk_cuda *g, unsigned nb, double denom, float *out)
{
    k_finish_sum<<<1, LK_CUDA_THREADS, 0, g->stream>>>(g->partial, (int)nb, denom, out);
    LK_LAUNCHED(g);
}

/* ---- bias ---- */

__global__ void k_bias_add(float *y, const float *b, size_t total, int c, int inner)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += b[(i / (size_t)inner) % (size_t)c];
}

void lk_cuda_bias_add(lk_device *d, float *y, const float *b, int outer, int c, int inner)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)outer * c * inner;
    if (!total) return;
    k_bias_add<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(y, b, total, c, inner);
    LK_LAUNCHED(g);
}

/* one block per channel */
__global__ void k_bias_grad(float *db, const float *dy, int outer, int c, int inner, float beta)
{
    const int j = blockIdx.x;
    const size_t per = (size_t)outer * inner;
    double s = 0.0;
    for (size_t t = threadIdx.x; t < per; t += blockDim.x) {
        size_t o = t / (size_t)inner, i = t % (size_t)inner;
        s += dy[(o * c + j) * (size_t)inner + i];
    }
    s = block_sum(s);
    if (threadIdx.x == 0) db[j] = (beta != 0.0f ? db[j] : 0.0f) + (float)s;
}

void lk_cuda_bias_grad(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                       float beta)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!c) return;
    k_bias_grad<<<c, LK_CUDA_THREADS, 0, g->stream>>>(db, dy, outer, c, inner, beta);
    LK_LAUNCHED(g);
}

/* ---- activations ---- */

__global__ void k_act_forward(int act, float alpha, const float *x, float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        switch (act) {
        case LK_ACT_RELU: v = v > 0.0f ? v : 0.0f; break;
        case LK_ACT_LEAKY_RELU: v = v > 0.0f ? v : alpha * v; break;
        case LK_ACT_SIGMOID: v = lk_d_sigmoid(v); break;
        case LK_ACT_TANH: v = tanhf(v); break;
        case LK_ACT_GELU: v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case LK_ACT_GELU_TANH: { /* the cube of x clamped to +-10, as on the CPU */
            float c = fminf(fmaxf(v, -10.0f), 10.0f);
            v = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (c + 0.044715f * c * c * c)));
            break;
        }
        default: break;
        }
        y[i] = v;
    }
}

__global__ void k_act_backward(int act, float alpha, const float *x, const float *y,
                               const float *dy, float *dx, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = dy[i];
        switch (act) {
        case LK_ACT_RELU: g = x[i] > 0.0f ? g : 0.0f; break;
        case LK_ACT_LEAKY_RELU: g = x[i] > 0.0f ? g : alpha * g; break;
        case LK_ACT_SIGMOID: g = g * y[i] * (1.0f - y[i]); break;
        case LK_ACT_TANH: g = g * (1.0f - y[i] * y[i]); break;
        case LK_ACT_GELU: {
            float v = x[i];
            float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
            g = g * (cdf + v * pdf);
            break;
        }
        case LK_ACT_GELU_TANH: {
            float c = fminf(fmaxf(x[i], -10.0f), 10.0f);
            float t = tanhf(0.79788456080286536f * (c + 0.044715f * c * c * c));
            g = g * (0.5f * (1.0f + t) + 0.5f * c * (1.0f - t * t) * 0.79788456080286536f *
                                             (1.0f + 3.0f * 0.044715f * c * c));
            break;
        }
        default: break;
        }
        dx[i] = g;
    }
}

static void cu_act_forward(lk_device *d, lk_act act, float alpha, const float *x, float *y, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n || (act == LK_ACT_IDENTITY && x == y)) return;
    k_act_forward<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>((int)act, alpha, x, y, n);
    LK_LAUNCHED(g);
}

static void cu_act_backward(lk_device *d, lk_act act, float alpha, const float *x, const float *y,
                            const float *dy, float *dx, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n || (act == LK_ACT_IDENTITY && dx == dy)) return;
    k_act_backward<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>((int)act, alpha, x, y,
                                                                            dy, dx, n);
    LK_LAUNCHED(g);
}

/* ---- dropout: the CPU's counter-based mask ---- */

__global__ void k_dropout(float p, uint64_t seed, uint64_t a, uint64_t first, const float *x, float *y,
                          size_t n)
{
    const float keep = 1.0f / (1.0f - p);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = lk_rng_uniform(seed, LK_RNG_DROPOUT, a, first + (uint64_t)i) >= p ? x[i] * keep : 0.0f;
}

static void cu_dropout_forward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                               const float *x, float *y, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_dropout<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(p, seed, a, first, x, y, n);
    LK_LAUNCHED(g);
}

static void cu_dropout_backward(lk_device *d, float p, uint64_t seed, uint64_t a, uint64_t first,
                                const float *dy, float *dx, size_t n)
{
    cu_dropout_forward(d, p, seed, a, first, dy, dx, n); /* the same mask and scale */
}

/* ---- the VAE's reparameterisation and KL term (eps regenerated from Philox) ---- */

__global__ void k_reparam_forward(const float *ml, float *z, int n, int zdim, int noise,
                                  uint64_t seed, uint64_t key, uint64_t first, double *partial)
{
    double kl = 0.0;
    const size_t total = (size_t)n * zdim;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / zdim, j = e % zdim;
        float mu = ml[r * 2 * zdim + j], lv = ml[r * 2 * zdim + zdim + j];
        float eps = noise ? lk_rng_normal(seed, LK_RNG_NOISE, key, first + e) : 0.0f;
        z[e] = mu + expf(0.5f * lv) * eps;
        kl += -0.5 * (1.0 + lv - (double)mu * mu - exp((double)lv));
    }
    kl = block_sum(kl);
    if (threadIdx.x == 0) partial[blockIdx.x] = kl;
}

static void cu_reparam_forward(lk_device *d, const float *ml, float *z, int n, int zdim, int noise,
                               uint64_t seed, uint64_t key, uint64_t first, float *kl)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned nb = lk_cuda_reduce_blocks(g, (size_t)n * zdim);
    k_reparam_forward<<<nb, LK_CUDA_THREADS, 0, g->stream>>>(ml, z, n, zdim, noise, seed, key, first,
                                                             g->partial);
    LK_LAUNCHED(g);
    lk_cuda_finish_sum(g, nb, (double)n, kl);
}

__global__ void k_reparam_backward(const float *ml, const float *dz, float *dml, int n, int zdim,
                                   uint64_t seed, uint64_t key, uint64_t first, float kl_scale)
{
    const size_t total = (size_t)n * zdim;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / zdim, j = e % zdim, m = r * 2 * zdim + j;
        float mu = ml[m], lv = ml[m + zdim], sd = expf(0.5f * lv);
        float eps = lk_rng_normal(seed, LK_RNG_NOISE, key, first + e);
        dml[m] = dz[e] + kl_scale * mu;
        dml[m + zdim] = dz[e] * eps * 0.5f * sd + kl_scale * 0.5f * (sd * sd - 1.0f);
    }
}

static void cu_reparam_backward(lk_device *d, const float *ml, const float *dz, float *dml, int n,
                                int zdim, uint64_t seed, uint64_t key, uint64_t first, float kl_scale)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * zdim;
    k_reparam_backward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(
        ml, dz, dml, n, zdim, seed, key, first, kl_scale);
    LK_LAUNCHED(g);
}

/* ---- flat-buffer helpers ---- */

__global__ void k_sumsq(const float *x, size_t n, double *partial)
{
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

static void cu_sumsq(lk_device *d, const float *x, size_t n, float *out)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned nb = lk_cuda_reduce_blocks(g, n);
    k_sumsq<<<nb, LK_CUDA_THREADS, 0, g->stream>>>(x, n, g->partial);
    LK_LAUNCHED(g);
    lk_cuda_finish_sum(g, nb, 1.0, out);
}

/* one block per matrix: Gram-Schmidt over its r columns (device.h's rule, as the CPU's),
 * each dot product a block sum in double broadcast through shared memory */
__device__ double col_dot(const float *q, int n, int r, int j, int k)
{
    __shared__ double result;
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += (double)q[(size_t)i * r + j] * q[(size_t)i * r + k];
    s = block_sum(s);
    if (threadIdx.x == 0) result = s;
    __syncthreads();
    s = result;
    __syncthreads();
    return s;
}

__global__ void k_orthonormalize(float *p, int n, int r)
{
    float *q = p + (size_t)blockIdx.x * n * r;
    for (int j = 0; j < r; j++) {
        double sq0 = col_dot(q, n, r, j, j);
        for (int tries = 0;; tries++) {
            for (int k = 0; k < j; k++) {
                const float f = (float)col_dot(q, n, r, k, j);
                for (int i = threadIdx.x; i < n; i += blockDim.x) q[(size_t)i * r + j] -= f * q[(size_t)i * r + k];
                __syncthreads();
            }
            const double sq = col_dot(q, n, r, j, j);
            if ((sq > 0.0 && sqrt(sq) > 1e-4 * sqrt(sq0)) || tries >= n) {
                const float inv = sq > 0.0 ? (float)(1.0 / sqrt(sq)) : 0.0f;
                for (int i = threadIdx.x; i < n; i += blockDim.x) q[(size_t)i * r + j] *= inv;
                __syncthreads();
                break;
            }
            for (int i = threadIdx.x; i < n; i += blockDim.x) q[(size_t)i * r + j] = i == (j + tries) % n ? 1.0f : 0.0f;
            __syncthreads();
            sq0 = 1.0;
        }
    }
}

static void cu_orthonormalize(lk_device *d, float *p, int n, int r, int count)
{
    lk_cuda *g = lk_cuda_of(d);
    k_orthonormalize<<<count, LK_CUDA_THREADS, 0, g->stream>>>(p, n, r);
    LK_LAUNCHED(g);
}

__global__ void k_scale(float *x, float a, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= a;
}

static void cu_scale(lk_device *d, float *x, float a, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_scale<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(x, a, n);
    LK_LAUNCHED(g);
}

__global__ void k_axpy(float a, const float *x, float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += a * x[i];
}

static void cu_axpy(lk_device *d, float a, const float *x, float *y, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_axpy<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(a, x, y, n);
    LK_LAUNCHED(g);
}

/* one block per sample: both sums of squares as block sums in double */
__global__ void k_ghost_norm(const float *x, const float *dy, int in, int out, int bias, float *sq)
{
    const size_t i = blockIdx.x;
    double sx = 0.0, sg = 0.0;
    for (int j = threadIdx.x; j < in; j += blockDim.x) sx += (double)x[i * in + j] * x[i * in + j];
    for (int j = threadIdx.x; j < out; j += blockDim.x) sg += (double)dy[i * out + j] * dy[i * out + j];
    sx = block_sum(sx);
    sg = block_sum(sg);
    if (threadIdx.x == 0) sq[i] += (float)((sx + bias) * sg);
}

static void cu_ghost_norm(lk_device *d, const float *x, const float *dy, int n, int in, int out, int bias,
                          float *sq)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_ghost_norm<<<n, LK_CUDA_THREADS, 0, g->stream>>>(x, dy, in, out, bias, sq);
    LK_LAUNCHED(g);
}

__global__ void k_randn(float *out, size_t n, uint64_t seed, uint64_t key, uint64_t first)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = lk_rng_normal(seed, LK_RNG_NOISE, key, first + i);
}

static void cu_randn(lk_device *d, float *out, size_t n, uint64_t seed, uint64_t key, uint64_t first)
{
    lk_cuda *g = lk_cuda_of(d);
    k_randn<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(out, n, seed, key, first);
    LK_LAUNCHED(g);
}

__global__ void k_affine(float *x, float a, float b, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = a * x[i] + b;
}

static void cu_affine(lk_device *d, float *x, float a, float b, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    k_affine<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(x, a, b, n);
    LK_LAUNCHED(g);
}

static lk_status cu_status(lk_device *d)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!g->error[0]) LK_CU(g, cudaGetLastError());
    return g->error[0] ? LK_ERR(LK_ERR_DEVICE, "%s", g->error) : LK_OK;
}

/* cuBLAS and cuDNN keep their workspaces inside what the device reports as used; held: the
 * bf16 products' operand buffer */
static void cu_mem_info(lk_device *d, size_t *held, size_t *used, size_t *total)
{
    size_t fr = 0, all = 0;
    const lk_cuda *g = lk_cuda_of(d);
    *held = (g->cast_elems > g->cast_planned ? g->cast_elems : g->cast_planned) * sizeof(uint16_t);
    LK_CU(lk_cuda_of(d), cudaMemGetInfo(&fr, &all));
    *used = all - fr;
    *total = all;
}

/* Designated, so that no two entries with the same signature can be swapped silently;
 * -Wextra (missing-field-initializers) fails the build when an entry is left out. */
static const lk_backend cuda_backend = {
    .name = "cuda",
    .alloc = cu_alloc,
    .free = cu_free,
    .copy_h2d = cu_copy_h2d,
    .copy_d2h = cu_copy_d2h,
    .copy_d2d = cu_copy_d2d,
    .memset0 = cu_memset0,
    .sync = cu_sync,
    .host_alloc = cu_host_alloc,
    .host_free = cu_host_free,
    .owns = cu_owns,
    .matmul = lk_cuda_matmul,
    .gemm_plan = lk_cuda_gemm_plan, /* the bf16 operands' buffer */
    .mem_info = cu_mem_info,
    .bias_add = lk_cuda_bias_add,
    .bias_grad = lk_cuda_bias_grad,
    .act_forward = cu_act_forward,
    .act_backward = cu_act_backward,
    .conv2d_saved = lk_cuda_conv2d_saved,
    .conv2d_workspace = lk_cuda_conv2d_workspace,
    .conv2d_forward = lk_cuda_conv2d_forward,
    .conv2d_backward = lk_cuda_conv2d_backward,
    .pool2d_forward = lk_cuda_pool2d_forward,
    .pool2d_backward = lk_cuda_pool2d_backward,
    .dropout_forward = cu_dropout_forward,
    .dropout_backward = cu_dropout_backward,
    .softmax_xent = lk_cuda_softmax_xent,
    .mse = lk_cuda_mse,
    .bce_logits = lk_cuda_bce_logits,
    .count_correct = lk_cuda_count_correct,
    .transpose = lk_cuda_transpose,
    .lstm_cell_forward = lk_cuda_lstm_cell_forward,
    .lstm_cell_backward = lk_cuda_lstm_cell_backward,
    .gru_cell_forward = lk_cuda_gru_cell_forward,
    .gru_cell_backward = lk_cuda_gru_cell_backward,
    .softmax_causal_forward = lk_cuda_softmax_causal_forward,
    .softmax_causal_backward = lk_cuda_softmax_causal_backward,
    .layernorm_forward = lk_cuda_layernorm_forward,
    .layernorm_backward = lk_cuda_layernorm_backward,
    .embed_forward = lk_cuda_embed_forward,
    .embed_backward = lk_cuda_embed_backward,
    .reparam_forward = cu_reparam_forward,
    .reparam_backward = cu_reparam_backward,
    .bn_sums = lk_cuda_bn_sums,
    .bn_stats = lk_cuda_bn_stats,
    .bn_forward = lk_cuda_bn_forward,
    .bn_backward = lk_cuda_bn_backward,
    .randn = cu_randn,
    .affine = cu_affine,
    .optim_update = lk_cuda_optim_update,
    .sumsq = cu_sumsq,
    .guard = lk_cuda_guard,
    .cast_bf16 = lk_cuda_cast_bf16,
    .widen_bf16 = lk_cuda_widen,
    .pack16 = lk_cuda_pack16,
    .unpack16 = lk_cuda_unpack16,
    .orthonormalize = cu_orthonormalize,
    .scale = cu_scale,
    .axpy = cu_axpy,
    .ghost_norm = cu_ghost_norm,
    .status = cu_status,
};

/* ---- opening and closing ---- */

#define OPEN_TRY(what, call, errstr)                                                      \
    do {                                                                                  \
        if ((call)) {                                                                     \
            lk_status st_ = LK_ERR(LK_ERR_DEVICE, "cuda:%d: %s failed: %s", ordinal, what, \
                                   (errstr));                                             \
            lk_backend_cuda_close(d);                                                     \
            return st_;                                                                   \
        }                                                                                 \
    } while (0)

extern "C" int lk_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void *lk_cuda_stream(lk_device *d) { return (void *)lk_cuda_of(d)->stream; }

extern "C" const char *lk_cuda_describe(void)
{
    static char buf[200];
    int rt = 0, drv = 0, n = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    size_t dnn = cudnnGetVersion();
    cudaError_t e = cudaGetDeviceCount(&n);
    cudaGetLastError();
    snprintf(buf, sizeof buf, "CUDA runtime %d.%d, driver %s, cuDNN %zu.%zu.%zu: %d GPU%s visible%s%s",
             rt / 1000, rt % 1000 / 10, drv ? "present" : "missing", dnn / 10000, dnn % 10000 / 100,
             dnn % 100, e == cudaSuccess ? n : 0, (e == cudaSuccess ? n : 0) == 1 ? "" : "s",
             e == cudaSuccess ? "" : " - ", e == cudaSuccess ? "" : cudaGetErrorString(e));
    return buf;
}

extern "C" int lk_cuda_pci_bus_id(int ordinal, char *buf, int len)
{
    if (cudaDeviceGetPCIBusId(buf, len, ordinal) != cudaSuccess) {
        cudaGetLastError();
        if (len > 0) buf[0] = 0;
        return -1;
    }
    return 0;
}

extern "C" lk_status lk_backend_cuda_open(lk_device *d, int ordinal, int threads)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        return LK_ERR(LK_ERR_DEVICE, "no usable GPU: cudaGetDeviceCount failed: %s",
                      cudaGetErrorString(e));
    if (ordinal < 0 || ordinal >= count)
        return LK_ERR(LK_ERR_DEVICE, "device cuda:%d does not exist (%d GPU%s visible%s)", ordinal,
                      count, count == 1 ? "" : "s",
                      getenv("CUDA_VISIBLE_DEVICES") ? ", CUDA_VISIBLE_DEVICES is set" : "");
    lk_cuda *g = (lk_cuda *)lk_calloc(1, sizeof *g);
    if (!g) return LK_ERR(LK_ERR_NOMEM, "cannot allocate the CUDA backend");
    g->ordinal = ordinal;
    d->impl = g;
    d->kind = LK_DEV_CUDA;
    d->ordinal = ordinal;
    d->threads = threads > 0 ? threads : 1;
    d->host_addressable = 0;
    d->ops = &cuda_backend;
    OPEN_TRY("cudaSetDevice", (e = cudaSetDevice(ordinal)) != cudaSuccess, cudaGetErrorString(e));
    cudaDeviceProp prop;
    OPEN_TRY("cudaGetDeviceProperties", (e = cudaGetDeviceProperties(&prop, ordinal)) != cudaSuccess,
             cudaGetErrorString(e));
    g->sms = prop.multiProcessorCount;
    snprintf(d->name, sizeof d->name, "cuda:%d (%.40s)", ordinal, prop.name);
    OPEN_TRY("cudaStreamCreateWithFlags",
             (e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking)) != cudaSuccess,
             cudaGetErrorString(e));
    cublasStatus_t cb;
    OPEN_TRY("cublasCreate", (cb = cublasCreate(&g->cublas)) != CUBLAS_STATUS_SUCCESS,
             cublasGetStatusString(cb));
    OPEN_TRY("cublasSetStream", (cb = cublasSetStream(g->cublas, g->stream)) != CUBLAS_STATUS_SUCCESS,
             cublasGetStatusString(cb));
    /* float32 products (the default math mode: no TF32, unlike cuDNN's default) */
    OPEN_TRY("cublasSetMathMode",
             (cb = cublasSetMathMode(g->cublas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS,
             cublasGetStatusString(cb));
    cudnnStatus_t cd;
    OPEN_TRY("cudnnCreate", (cd = cudnnCreate(&g->cudnn)) != CUDNN_STATUS_SUCCESS, cudnnGetErrorString(cd));
    OPEN_TRY("cudnnSetStream", (cd = cudnnSetStream(g->cudnn, g->stream)) != CUDNN_STATUS_SUCCESS,
             cudnnGetErrorString(cd));
    OPEN_TRY("cudnnCreateTensorDescriptor",
             (cd = cudnnCreateTensorDescriptor(&g->x_desc)) != CUDNN_STATUS_SUCCESS ||
                 (cd = cudnnCreateTensorDescriptor(&g->y_desc)) != CUDNN_STATUS_SUCCESS,
             cudnnGetErrorString(cd));
    OPEN_TRY("cudnnCreateFilterDescriptor",
             (cd = cudnnCreateFilterDescriptor(&g->w_desc)) != CUDNN_STATUS_SUCCESS,
             cudnnGetErrorString(cd));
    OPEN_TRY("cudnnCreateConvolutionDescriptor",
             (cd = cudnnCreateConvolutionDescriptor(&g->conv_desc)) != CUDNN_STATUS_SUCCESS,
             cudnnGetErrorString(cd));
    OPEN_TRY("cudaMalloc (reduction partials)",
             (e = cudaMalloc((void **)&g->partial, LK_CUDA_REDUCE_BLOCKS * sizeof(double))) != cudaSuccess,
             cudaGetErrorString(e));
    return LK_OK;
}

extern "C" void lk_backend_cuda_close(lk_device *d)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!g) return;
    if (g->stream) cudaStreamSynchronize(g->stream);
    if (g->partial) cudaFree(g->partial);
    if (g->cast) cudaFree(g->cast);
    if (g->conv_desc) cudnnDestroyConvolutionDescriptor(g->conv_desc);
    if (g->w_desc) cudnnDestroyFilterDescriptor(g->w_desc);
    if (g->y_desc) cudnnDestroyTensorDescriptor(g->y_desc);
    if (g->x_desc) cudnnDestroyTensorDescriptor(g->x_desc);
    if (g->cudnn) cudnnDestroy(g->cudnn);
    if (g->cublas) cublasDestroy(g->cublas);
    if (g->stream) cudaStreamDestroy(g->stream);
    lk_free(g);
    d->impl = NULL;
}
