/* backend_cuda_norm.cu - normalisation on the GPU. Layer norm: a warp per row for the
 * statistics, the output and dx; a thread per column for dw and db, adding the rows in
 * order. Batch norm: a block per channel for its sums (double). Deterministic: no
 * atomics. */
#include "backend_cuda.h"

#define WARPS (LK_CUDA_THREADS / 32)

__device__ __forceinline__ float lane_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void k_layernorm_forward(const float *x, const float *w, const float *b, float *y,
                                    float *mean, float *rstd, int rows, int dim, float eps)
{
    const int r = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + (size_t)r * dim;
    float s = 0.0f;
    for (int j = lane; j < dim; j += 32) s += xr[j];
    const float m = lane_sum(s) / (float)dim;
    float v = 0.0f;
    for (int j = lane; j < dim; j += 32) v += (xr[j] - m) * (xr[j] - m);
    const float rs = rsqrtf(lane_sum(v) / (float)dim + eps);
    float *yr = y + (size_t)r * dim;
    for (int j = lane; j < dim; j += 32) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
    if (lane == 0) mean[r] = m, rstd[r] = rs;
}

void lk_cuda_layernorm_forward(lk_device *d, const float *x, const float *w, const float *b,
                               float *y, float *mean, float *rstd, int rows, int dim, float eps)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned blocks = (unsigned)((rows + WARPS - 1) / WARPS);
    k_layernorm_forward<<<blocks, LK_CUDA_THREADS, 0, g->stream>>>(x, w, b, y, mean, rstd, rows, dim, eps);
    LK_LAUNCHED(g);
}

__global__ void k_layernorm_dx(const float *x, const float *w, const float *mean, const float *rstd,
                               const float *dy, float *dx, int rows, int dim)
{
    const int r = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
    const float m = mean[r], rs = rstd[r];
    float a = 0.0f, c = 0.0f;
    for (int j = lane; j < dim; j += 32) {
        float gw = g[j] * w[j];
        a += gw;
        c += gw * (xr[j] - m) * rs;
    }
    a = lane_sum(a) / (float)dim;
    c = lane_sum(c) / (float)dim;
    float *o = dx + (size_t)r * dim;
    for (int j = lane; j < dim; j += 32) o[j] = rs * (g[j] * w[j] - a - (xr[j] - m) * rs * c);
}

__global__ void k_layernorm_dparams(const float *x, const float *mean, const float *rstd,
                                    const float *dy, float *dw, float *db, int rows, int dim,
                                    float beta)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    float sw = 0.0f, sb = 0.0f;
    for (int r = 0; r < rows; r++) {
        float g = dy[(size_t)r * dim + j];
        sw += g * (x[(size_t)r * dim + j] - mean[r]) * rstd[r];
        sb += g;
    }
    dw[j] = (beta != 0.0f ? dw[j] : 0.0f) + sw;
    db[j] = (beta != 0.0f ? db[j] : 0.0f) + sb;
}

void lk_cuda_layernorm_backward(lk_device *d, const float *x, const float *w, const float *mean,
                                const float *rstd, const float *dy, float *dx, float *dw,
                                float *db, int rows, int dim, float beta)
{
    lk_cuda *g = lk_cuda_of(d);
    k_layernorm_dparams<<<(unsigned)((dim + LK_CUDA_THREADS - 1) / LK_CUDA_THREADS), LK_CUDA_THREADS,
                          0, g->stream>>>(x, mean, rstd, dy, dw, db, rows, dim, beta);
    LK_LAUNCHED(g);
    if (!dx) return;
    unsigned blocks = (unsigned)((rows + WARPS - 1) / WARPS);
    k_layernorm_dx<<<blocks, LK_CUDA_THREADS, 0, g->stream>>>(x, w, mean, rstd, dy, dx, rows, dim);
    LK_LAUNCHED(g);
}

/* ---- batch norm: a block per channel for the sums (double, a fixed order) ---- */

__device__ double block_total(double v)
{
    __shared__ double part[WARPS];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x < WARPS ? part[threadIdx.x] : 0.0;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads();
    return v; /* in thread 0 */
}

__global__ void k_bn_sums(const float *x, const float *dy, const float *mean, const float *rstd,
                          int n, int c, int inner, float *out)
{
    const int j = blockIdx.x;
    const size_t per = (size_t)n * inner;
    double s0 = 0.0, s1 = 0.0;
    const float m = dy ? mean[j] : 0.0f, r = dy ? rstd[j] : 0.0f;
    for (size_t t = threadIdx.x; t < per; t += blockDim.x) {
        size_t o = t / inner, i = t % inner, e = (o * c + j) * inner + i;
        if (!dy) s0 += x[e], s1 += (double)x[e] * x[e];
        else s0 += dy[e], s1 += (double)dy[e] * (x[e] - m) * r;
    }
    s0 = block_total(s0);
    s1 = block_total(s1);
    if (threadIdx.x == 0) {
        out[j] = (float)s0;
        out[c + j] = (float)s1;
        if (j == 0) out[2 * c] = (float)per;
    }
}

void lk_cuda_bn_sums(lk_device *d, const float *x, const float *dy, const float *mean,
                     const float *rstd, int n, int c, int inner, float *out)
{
    lk_cuda *g = lk_cuda_of(d);
    k_bn_sums<<<c, LK_CUDA_THREADS, 0, g->stream>>>(x, dy, mean, rstd, n, c, inner, out);
    LK_LAUNCHED(g);
}

__global__ void k_bn_stats(const float *sums, int c, float eps, float momentum, float *mean,
                           float *rstd, float *run_mean, float *run_var, float *tracked)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= c) return;
    if (!sums) {
        mean[j] = run_mean[j];
        rstd[j] = (float)(1.0 / sqrt((double)run_var[j] + eps));
        return;
    }
    const double cnt = sums[2 * c];
    double m = sums[j] / cnt, v = fmax(sums[c + j] / cnt - m * m, 0.0);
    mean[j] = (float)m;
    rstd[j] = (float)(1.0 / sqrt(v + eps));
    if (run_mean) {
        run_mean[j] = (float)((1.0 - momentum) * run_mean[j] + momentum * m);
        run_var[j] = (float)((1.0 - momentum) * run_var[j] + momentum * v * cnt / fmax(cnt - 1.0, 1.0));
        if (j == 0) *tracked += 1.0f;
    }
}

void lk_cuda_bn_stats(lk_device *d, const float *sums, int c, float eps, float momentum,
                      float *mean, float *rstd, float *run_mean, float *run_var, float *tracked)
{
    lk_cuda *g = lk_cuda_of(d);
    k_bn_stats<<<(unsigned)((c + LK_CUDA_THREADS - 1) / LK_CUDA_THREADS), LK_CUDA_THREADS, 0,
                 g->stream>>>(sums, c, eps, momentum, mean, rstd, run_mean, run_var, tracked);
    LK_LAUNCHED(g);
}

__global__ void k_bn_forward(const float *x, const float *mean, const float *rstd, const float *w,
                             const float *b, float *y, int c, int inner, size_t total)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        int j = (int)((e / inner) % c);
        float sc = rstd[j] * w[j];
        y[e] = x[e] * sc + (b[j] - mean[j] * sc);
    }
}

void lk_cuda_bn_forward(lk_device *d, const float *x, const float *mean, const float *rstd,
                        const float *w, const float *b, float *y, int n, int c, int inner)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * c * inner;
    k_bn_forward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(x, mean, rstd, w, b, y,
                                                                              c, inner, total);
    LK_LAUNCHED(g);
}

__global__ void k_bn_backward(const float *x, const float *dy, const float *mean, const float *rstd,
                              const float *w, const float *gsums, float *dx, int c, int inner,
                              size_t total)
{
    const float cnt = gsums[2 * c];
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        int j = (int)((e / inner) % c);
        float rs = rstd[j];
        dx[e] = w[j] * rs * (dy[e] - gsums[j] / cnt - (x[e] - mean[j]) * rs * (gsums[c + j] / cnt));
    }
}

void lk_cuda_bn_backward(lk_device *d, const float *x, const float *dy, const float *mean,
                         const float *rstd, const float *w, const float *gsums, float *dx, int n,
                         int c, int inner)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * c * inner;
    k_bn_backward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(
        x, dy, mean, rstd, w, gsums, dx, c, inner, total);
    LK_LAUNCHED(g);
}
