/* backend_cuda_loss.cu - the losses (softmax cross-entropy over float32 or bf16 logits,
 * MSE, BCE with logits) and the classifier's count of right answers: each row's or
 * block's part in double, then added in a fixed order (backend_cuda_reduce.cuh). */
#include "backend_cuda.h"
#include "backend_cuda_reduce.cuh"

extern "C" {
#include "../bf16.h"
}

/* a logit or its gradient, as stored: float32, or bf16 (computed in float32, rounded to
 * nearest even) */
__device__ __forceinline__ float logit_at(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float logit_at(const uint16_t *p, size_t i) { return lk_bf16_to_f32(p[i]); }
__device__ __forceinline__ void logit_put(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void logit_put(uint16_t *p, size_t i, float v) { p[i] = lk_bf16_rne(v); }

/* rows r = blockIdx.x, += gridDim.x; the block shares a row's classes */
template <typename T>
__global__ void k_softmax_xent(const T *logits, const int32_t *labels, int n, int c, int ld, T *dlogits,
                               float g, double *partial)
{
    double total = 0.0;
    for (int r = blockIdx.x; r < n; r += gridDim.x) {
        const size_t row = (size_t)r * ld;
        float mx = -INFINITY;
        for (int j = threadIdx.x; j < c; j += blockDim.x) mx = fmaxf(mx, logit_at(logits, row + j));
        mx = block_max(mx);
        const float zy = logit_at(logits, row + labels[r]); /* read before any dz is written (dz may alias z) */
        double s = 0.0;
        for (int j = threadIdx.x; j < c; j += blockDim.x) s += (double)expf(logit_at(logits, row + j) - mx);
        s = block_sum(s);
        __shared__ float sum;
        if (threadIdx.x == 0) sum = (float)s;
        __syncthreads();
        const float tot = sum;
        __syncthreads();
        const int y = labels[r];
        if (threadIdx.x == 0) total += (double)(logf(tot) - (zy - mx));
        if (dlogits) {
            const float inv = 1.0f / tot;
            for (int j = threadIdx.x; j < c; j += blockDim.x)
                logit_put(dlogits, row + j, expf(logit_at(logits, row + j) - mx) * inv * g - (j == y ? g : 0.0f));
            for (int j = c + threadIdx.x; j < ld; j += blockDim.x) logit_put(dlogits, row + j, 0.0f); /* padding */
        }
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

void lk_cuda_softmax_xent(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                            int c, int ld, float *loss, void *dlogits, float scale)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned nb = n < LK_CUDA_REDUCE_BLOCKS ? (unsigned)n : LK_CUDA_REDUCE_BLOCKS;
    if (!nb) nb = 1;
    const float gs = scale / (float)n;
    if (t == LK_BF16)
        k_softmax_xent<<<nb, LK_CUDA_THREADS, 0, g->stream>>>((const uint16_t *)logits, labels, n, c, ld,
                                                              (uint16_t *)dlogits, gs, g->partial);
    else
        k_softmax_xent<<<nb, LK_CUDA_THREADS, 0, g->stream>>>((const float *)logits, labels, n, c, ld,
                                                              (float *)dlogits, gs, g->partial);
    LK_LAUNCHED(g);
    lk_cuda_finish_sum(g, nb, (double)n, loss);
}

__global__ void k_mse(const float *p, const float *t, size_t n, float *dp, float gscale,
                      double *partial)
{
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float e = p[i] - t[i];
        s += (double)e * e;
        if (dp) dp[i] = gscale * e;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

void lk_cuda_mse(lk_device *d, const float *p, const float *t, size_t n, float *loss, float *dp,
                   float scale)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned nb = lk_cuda_reduce_blocks(g, n);
    k_mse<<<nb, LK_CUDA_THREADS, 0, g->stream>>>(p, t, n, dp, 2.0f * scale / (float)n, g->partial);
    LK_LAUNCHED(g);
    lk_cuda_finish_sum(g, nb, (double)n, loss);
}

__global__ void k_bce_logits(const float *z, const float *t, size_t n, float *dz, float gscale,
                             double *partial)
{
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float x = z[i];
        s += (double)(fmaxf(x, 0.0f) - x * t[i] + log1pf(expf(-fabsf(x))));
        if (dz) dz[i] = gscale * (lk_d_sigmoid(x) - t[i]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

void lk_cuda_bce_logits(lk_device *d, const float *z, const float *t, size_t n, float *loss,
                          float *dz, float scale)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned nb = lk_cuda_reduce_blocks(g, n);
    k_bce_logits<<<nb, LK_CUDA_THREADS, 0, g->stream>>>(z, t, n, dz, scale / (float)n, g->partial);
    LK_LAUNCHED(g);
    lk_cuda_finish_sum(g, nb, (double)n, loss);
}

/* a thread per row: the first largest logit, as the CPU */
template <typename T>
__global__ void k_count_correct(const T *logits, const int32_t *labels, int n, int c, int ld, double *partial)
{
    double hits = 0.0;
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < n; r += gridDim.x * blockDim.x) {
        const size_t row = (size_t)r * ld;
        int best = 0;
        float top = logit_at(logits, row);
        for (int j = 1; j < c; j++) {
            const float z = logit_at(logits, row + j);
            if (z > top) best = j, top = z;
        }
        hits += best == labels[r];
    }
    hits = block_sum(hits);
    if (threadIdx.x == 0) partial[blockIdx.x] = hits;
}

void lk_cuda_count_correct(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n,
                             int c, int ld, float *correct)
{
    lk_cuda *g = lk_cuda_of(d);
    unsigned nb = lk_cuda_reduce_blocks(g, (size_t)n);
    if (t == LK_BF16)
        k_count_correct<<<nb, LK_CUDA_THREADS, 0, g->stream>>>((const uint16_t *)logits, labels, n, c, ld,
                                                               g->partial);
    else
        k_count_correct<<<nb, LK_CUDA_THREADS, 0, g->stream>>>((const float *)logits, labels, n, c, ld,
                                                               g->partial);
    LK_LAUNCHED(g);
    lk_cuda_finish_sum(g, nb, 1.0, correct);
}
