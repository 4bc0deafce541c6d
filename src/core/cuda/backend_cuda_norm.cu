/* backend_cuda_norm.cu - layer norm on the GPU: a warp per row for the statistics,
 * the output and dx; a thread per column for dw and db, adding the rows in order
 * (deterministic, no atomics). */
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
