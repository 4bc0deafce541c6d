/* backend_cuda_conv.cu - convolution through cuDNN and pooling with our kernels.
 *
 * The descriptors are set per call (host-only work, no allocation), since the batch
 * of a step may be shorter than the one the model was built for. The algorithms are
 * fixed and deterministic (implicit precomputed GEMM forward, ALGO_1 for both
 * backward passes); the workspace asked for at build time, for the largest batch,
 * must cover every call, and a call that would need more fails (status) instead. Math is
 * full float32 (CUDNN_FMA_MATH: no TF32), as on the CPU. In bf16 (cd->compute) cuDNN's
 * BFLOAT16 configuration (every tensor bf16, float32 accumulation, tensor cores): the
 * input is rounded into `saved` (kept for the weight gradient), the output gradient into
 * the workspace, and the outputs and gradients come back to float32 from bf16 buffers in
 * the workspace after cuDNN's own part of it.
 * Pooling gathers: each input element sums what the output windows covering it send
 * back, so no atomics and the same result on every run; max pooling keeps the first
 * largest element of a window, as the CPU. */
#include "backend_cuda.h"

#include <stdio.h>

static const cudnnConvolutionFwdAlgo_t FWD_ALGO = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
static const cudnnConvolutionBwdDataAlgo_t BWD_DATA_ALGO = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
static const cudnnConvolutionBwdFilterAlgo_t BWD_FILTER_ALGO = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;

static void set_descriptors(lk_cuda *g, const lk_conv2d_desc *cd)
{
    const cudnnDataType_t t = cd->compute == LK_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    LK_CUDNN(g, cudnnSetTensor4dDescriptor(g->x_desc, CUDNN_TENSOR_NCHW, t, cd->n, cd->c, cd->h, cd->w));
    LK_CUDNN(g, cudnnSetTensor4dDescriptor(g->y_desc, CUDNN_TENSOR_NCHW, t, cd->n, cd->k, cd->oh, cd->ow));
    LK_CUDNN(g, cudnnSetFilter4dDescriptor(g->w_desc, t, CUDNN_TENSOR_NCHW, cd->k, cd->c, cd->kh, cd->kw));
    /* cross-correlation, as PyTorch's Conv2d */
    LK_CUDNN(g, cudnnSetConvolution2dDescriptor(g->conv_desc, cd->pad_h, cd->pad_w, cd->stride_h,
                                                cd->stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    LK_CUDNN(g, cudnnSetConvolutionMathType(g->conv_desc, cd->compute == LK_BF16 ? CUDNN_TENSOR_OP_MATH
                                                                                : CUDNN_FMA_MATH));
}

static size_t numel_x(const lk_conv2d_desc *cd) { return (size_t)cd->n * cd->c * cd->h * cd->w; }
static size_t numel_y(const lk_conv2d_desc *cd) { return (size_t)cd->n * cd->k * cd->oh * cd->ow; }
static size_t numel_w(const lk_conv2d_desc *cd) { return (size_t)cd->k * cd->c * cd->kh * cd->kw; }
static size_t al(size_t bytes) { return LK_ALIGN_UP(bytes, 256); }

size_t lk_cuda_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd)
{
    (void)d; /* cuDNN keeps nothing between forward and backward; bf16 keeps the rounded input */
    return cd->compute == LK_BF16 ? al(numel_x(cd) * sizeof(uint16_t)) : 0;
}

/* bf16 buffers after cuDNN's workspace (of cudnn_ws bytes): output or output gradient,
 * input gradient, weight gradient */
typedef struct {
    uint16_t *y, *dx, *dw;
} bf16_bufs;

static size_t bf16_bytes(const lk_conv2d_desc *cd)
{
    return al(numel_y(cd) * sizeof(uint16_t)) + al(numel_x(cd) * sizeof(uint16_t)) +
           al(numel_w(cd) * sizeof(uint16_t));
}

static bf16_bufs bf16_layout(const lk_conv2d_desc *cd, char *ws, size_t cudnn_ws)
{
    bf16_bufs b;
    b.y = (uint16_t *)(ws + cudnn_ws);
    b.dx = b.y + al(numel_y(cd) * sizeof(uint16_t)) / sizeof(uint16_t);
    b.dw = b.dx + al(numel_x(cd) * sizeof(uint16_t)) / sizeof(uint16_t);
    return b;
}

/* the workspace cd's algorithms need; sets the descriptors for cd */
static size_t query_workspace(lk_cuda *g, const lk_conv2d_desc *cd)
{
    set_descriptors(g, cd);
    size_t f = 0, bd = 0, bf = 0;
    LK_CUDNN(g, cudnnGetConvolutionForwardWorkspaceSize(g->cudnn, g->x_desc, g->w_desc, g->conv_desc,
                                                        g->y_desc, FWD_ALGO, &f));
    LK_CUDNN(g, cudnnGetConvolutionBackwardDataWorkspaceSize(g->cudnn, g->w_desc, g->y_desc,
                                                             g->conv_desc, g->x_desc, BWD_DATA_ALGO,
                                                             &bd));
    LK_CUDNN(g, cudnnGetConvolutionBackwardFilterWorkspaceSize(g->cudnn, g->x_desc, g->y_desc,
                                                               g->conv_desc, g->w_desc,
                                                               BWD_FILTER_ALGO, &bf));
    size_t m = f > bd ? f : bd;
    m = m > bf ? m : bf;
    return cd->compute == LK_BF16 ? al(m) + bf16_bytes(cd) : m;
}

/* asked at plan time, for the largest batch: the shared workspace is the largest
 * answer, which later calls check against */
size_t lk_cuda_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!cd->n) return 0;
    size_t need = query_workspace(g, cd);
    if (need > g->conv_ws_planned) g->conv_ws_planned = need;
    return need;
}

/* this call's workspace (descriptors set for cd); 0 and a failure when it exceeds
 * what was planned, instead of letting cuDNN write past the buffer */
static size_t call_workspace(lk_device *d, const lk_conv2d_desc *cd, int *ok)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t need = query_workspace(g, cd);
    *ok = need <= g->conv_ws_planned;
    if (!*ok) {
        char what[160];
        snprintf(what, sizeof what, "batch %d needs %zu workspace bytes, %zu were planned", cd->n,
                 need, g->conv_ws_planned);
        lk_cuda_fail(g, __FILE__, __LINE__, "cuDNN convolution", what);
    }
    return need;
}

void lk_cuda_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *b, float *y, void *saved, void *ws)
{
    lk_cuda *g = lk_cuda_of(d);
    int ok;
    size_t wsb = call_workspace(d, cd, &ok); /* also sets the descriptors for cd */
    if (!ok) return;
    const float one = 1.0f, zero = 0.0f;
    if (cd->compute == LK_BF16) {
        const size_t cudnn_ws = wsb - bf16_bytes(cd); /* cuDNN's own part */
        bf16_bufs t = bf16_layout(cd, (char *)ws, cudnn_ws);
        lk_cuda_round_bf16(g, x, (uint16_t *)saved, numel_x(cd));
        LK_CUDNN(g, cudnnConvolutionForward(g->cudnn, &one, g->x_desc, saved, g->w_desc, w,
                                            g->conv_desc, FWD_ALGO, ws, cudnn_ws, &zero, g->y_desc,
                                            t.y));
        lk_cuda_widen_bf16(g, t.y, y, numel_y(cd), 0.0f);
    } else {
        LK_CUDNN(g, cudnnConvolutionForward(g->cudnn, &one, g->x_desc, x, g->w_desc, w, g->conv_desc,
                                            FWD_ALGO, ws, wsb, &zero, g->y_desc, y));
    }
    if (b) lk_cuda_bias_add(d, y, b, cd->n, cd->k, cd->oh * cd->ow);
}

void lk_cuda_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                             const float *dy, float *dx, float *dw, float *db, float beta,
                             void *saved, void *ws)
{
    lk_cuda *g = lk_cuda_of(d);
    int ok;
    size_t wsb = call_workspace(d, cd, &ok);
    if (!ok) return;
    const float one = 1.0f, zero = 0.0f;
    if (cd->compute == LK_BF16) { /* x was rounded into saved by forward */
        const size_t cudnn_ws = wsb - bf16_bytes(cd);
        bf16_bufs t = bf16_layout(cd, (char *)ws, cudnn_ws);
        lk_cuda_round_bf16(g, dy, t.y, numel_y(cd));
        if (dx) {
            LK_CUDNN(g, cudnnConvolutionBackwardData(g->cudnn, &one, g->w_desc, w, g->y_desc, t.y,
                                                     g->conv_desc, BWD_DATA_ALGO, ws, cudnn_ws, &zero,
                                                     g->x_desc, t.dx));
            lk_cuda_widen_bf16(g, t.dx, dx, numel_x(cd), 0.0f);
        }
        LK_CUDNN(g, cudnnConvolutionBackwardFilter(g->cudnn, &one, g->x_desc, saved, g->y_desc, t.y,
                                                   g->conv_desc, BWD_FILTER_ALGO, ws, cudnn_ws, &zero,
                                                   g->w_desc, t.dw));
        lk_cuda_widen_bf16(g, t.dw, dw, numel_w(cd), beta);
    } else {
        if (dx)
            LK_CUDNN(g, cudnnConvolutionBackwardData(g->cudnn, &one, g->w_desc, w, g->y_desc, dy,
                                                     g->conv_desc, BWD_DATA_ALGO, ws, wsb, &zero,
                                                     g->x_desc, dx));
        LK_CUDNN(g, cudnnConvolutionBackwardFilter(g->cudnn, &one, g->x_desc, x, g->y_desc, dy,
                                                   g->conv_desc, BWD_FILTER_ALGO, ws, wsb, &beta,
                                                   g->w_desc, dw));
    }
    if (db) lk_cuda_bias_grad(d, db, dy, cd->n, cd->k, cd->oh * cd->ow, beta);
}

/* ---- pooling ---- */

__global__ void k_pool_forward(lk_pool2d_desc pd, const float *x, float *y, int32_t *argmax,
                               size_t total)
{
    const float inv = 1.0f / (float)(pd.kh * pd.kw);
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        const int ow = (int)(t % pd.ow), oh = (int)((t / pd.ow) % pd.oh);
        const size_t plane = t / ((size_t)pd.ow * pd.oh);
        const float *in = x + plane * pd.h * pd.w;
        const int h0 = oh * pd.stride_h - pd.pad_h, w0 = ow * pd.stride_w - pd.pad_w;
        float best = -INFINITY, sum = 0.0f;
        int besti = -1;
        for (int i = h0; i < h0 + pd.kh; i++) {
            if (i < 0 || i >= pd.h) continue;
            for (int j = w0; j < w0 + pd.kw; j++) {
                if (j < 0 || j >= pd.w) continue;
                const float v = in[i * pd.w + j];
                sum += v;
                if (v > best || besti < 0) {
                    best = v;
                    besti = i * pd.w + j;
                }
            }
        }
        if (pd.is_max) {
            y[t] = best;
            argmax[t] = besti;
        } else {
            y[t] = sum * inv; /* count_include_pad, as PyTorch's default */
        }
    }
}

void lk_cuda_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                            int32_t *argmax)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)pd->n * pd->c * pd->oh * pd->ow;
    if (!total) return;
    k_pool_forward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(*pd, x, y, argmax,
                                                                                total);
    LK_LAUNCHED(g);
}

/* each input element gathers from the windows that contain it */
__global__ void k_pool_backward(lk_pool2d_desc pd, const float *dy, const int32_t *argmax,
                                float *dx, size_t total)
{
    const float inv = 1.0f / (float)(pd.kh * pd.kw);
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(t % pd.w), i = (int)((t / pd.w) % pd.h);
        const size_t plane = t / ((size_t)pd.w * pd.h);
        const float *g = dy + plane * pd.oh * pd.ow;
        const int32_t *am = pd.is_max ? argmax + plane * pd.oh * pd.ow : NULL;
        /* windows oh with oh*s - pad <= i < oh*s - pad + kh */
        const int hi = i + pd.pad_h, wi = j + pd.pad_w;
        int oh_lo = hi - pd.kh + 1 > 0 ? (hi - pd.kh + 1 + pd.stride_h - 1) / pd.stride_h : 0;
        int oh_hi = hi / pd.stride_h;
        int ow_lo = wi - pd.kw + 1 > 0 ? (wi - pd.kw + 1 + pd.stride_w - 1) / pd.stride_w : 0;
        int ow_hi = wi / pd.stride_w;
        if (oh_hi >= pd.oh) oh_hi = pd.oh - 1;
        if (ow_hi >= pd.ow) ow_hi = pd.ow - 1;
        const int self = i * pd.w + j;
        float s = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; oh++)
            for (int ow = ow_lo; ow <= ow_hi; ow++) {
                const int o = oh * pd.ow + ow;
                if (pd.is_max) {
                    if (am[o] == self) s += g[o];
                } else {
                    s += g[o] * inv;
                }
            }
        dx[t] = s;
    }
}

void lk_cuda_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                             const int32_t *argmax, float *dx)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)pd->n * pd->c * pd->h * pd->w;
    if (!total) return;
    k_pool_backward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(*pd, dy, argmax, dx,
                                                                                 total);
    LK_LAUNCHED(g);
}
