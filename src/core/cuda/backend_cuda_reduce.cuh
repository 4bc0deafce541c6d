/* backend_cuda_reduce.cuh - block-wide reductions the CUDA kernels share (each
 * translation unit its own copy: no relocatable device code). A reduction over a buffer
 * writes per-block partial sums in double (lk_cuda.partial, lk_cuda_reduce_blocks blocks)
 * and lk_cuda_finish_sum adds them in a fixed order. */
#ifndef LK_BACKEND_CUDA_REDUCE_CUH
#define LK_BACKEND_CUDA_REDUCE_CUH

#include "backend_cuda.h"

static __device__ double block_sum(double v)
{
    __shared__ double warp_sums[LK_CUDA_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) warp_sums[wid] = v;
    __syncthreads();
    v = threadIdx.x < blockDim.x / 32 ? warp_sums[threadIdx.x] : 0.0;
    if (wid == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads(); /* warp_sums may be reused by the next call */
    return v;         /* valid in thread 0 */
}

static __device__ float block_max(float v)
{
    __shared__ float warp_max[LK_CUDA_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) warp_max[wid] = v;
    __syncthreads();
    v = threadIdx.x < blockDim.x / 32 ? warp_max[threadIdx.x] : -INFINITY;
    if (wid == 0)
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    __shared__ float result;
    if (threadIdx.x == 0) result = v;
    __syncthreads();
    v = result;
    __syncthreads();
    return v; /* valid in every thread */
}

#endif
