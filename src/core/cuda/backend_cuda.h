/* backend_cuda.h - what the CUDA backend's files share: the device state, the error
 * checks and the launch geometry. Built only when nvcc is found (LK_CUDA). */
#ifndef LK_BACKEND_CUDA_H
#define LK_BACKEND_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "../device.h"
}

/* One per opened device. Every kernel, copy and library call goes to `stream`; the
 * vtable entries cannot fail, so the first failure is kept ("sticky") with the file,
 * line and call, and reported by the status entry (read at the trainer's sync points). */
typedef struct {
    int ordinal;
    cudaStream_t stream;
    cublasHandle_t cublas;
    cudnnHandle_t cudnn;
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv_desc;
    double *partial;   /* device: per-block partial sums of the reductions */
    int sms;           /* multiprocessors, for grid sizes */
    size_t conv_ws_planned; /* the largest convolution workspace asked for at plan time */
    uint16_t *cast;    /* bf16 products: their float32 operands rounded (backend_cuda_bf16.cu) */
    size_t cast_elems, cast_planned; /* its size; what a dry plan found it needs */
    int error_claimed; /* set once by the first failure (atomically) */
    char error[320];   /* the first failure, "" while none */
} lk_cuda;

static inline lk_cuda *lk_cuda_of(lk_device *d) { return (lk_cuda *)d->impl; }

/* Keeps the first failure (later ones are usually its consequences). */
void lk_cuda_fail(lk_cuda *g, const char *file, int line, const char *call, const char *what);

#define LK_CU(g, call)                                                                   \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) lk_cuda_fail((g), __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)
#define LK_CUBLAS(g, call)                                                               \
    do {                                                                                 \
        cublasStatus_t e_ = (call);                                                      \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                 \
            lk_cuda_fail((g), __FILE__, __LINE__, #call, cublasGetStatusString(e_));     \
    } while (0)
#define LK_CUDNN(g, call)                                                                \
    do {                                                                                 \
        cudnnStatus_t e_ = (call);                                                       \
        if (e_ != CUDNN_STATUS_SUCCESS)                                                  \
            lk_cuda_fail((g), __FILE__, __LINE__, #call, cudnnGetErrorString(e_));       \
    } while (0)
/* after a kernel launch: a bad configuration shows up here, a fault at the next sync */
#define LK_LAUNCHED(g) LK_CU((g), cudaGetLastError())

#define LK_CUDA_THREADS 256
#define LK_CUDA_REDUCE_BLOCKS 256 /* partial sums per reduction (lk_cuda.partial) */

/* blocks for a grid-stride loop over n elements */
static inline unsigned lk_cuda_blocks(const lk_cuda *g, size_t n)
{
    size_t b = (n + LK_CUDA_THREADS - 1) / LK_CUDA_THREADS;
    size_t cap = (size_t)g->sms * 8;
    if (b > cap) b = cap;
    return (unsigned)(b ? b : 1);
}

/* the files' parts of the vtable */
size_t lk_cuda_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd);
size_t lk_cuda_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd);
void lk_cuda_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                            const float *b, float *y, void *saved, void *ws);
void lk_cuda_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const void *w,
                             const float *dy, float *dx, float *dw, float *db, float beta,
                             void *saved, void *ws);
void lk_cuda_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                            int32_t *argmax);
void lk_cuda_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                             const int32_t *argmax, float *dx);
void lk_cuda_guard(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc,
                   float samples);
void lk_cuda_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                          float *s1, float *s2, uint16_t *w16, size_t n);
/* reductions: blocks for one over n values, and their partials added into out / denom */
unsigned lk_cuda_reduce_blocks(const lk_cuda *g, size_t n);
void lk_cuda_finish_sum(lk_cuda *g, unsigned nb, double denom, float *out);
/* losses (backend_cuda_loss.cu) */
void lk_cuda_softmax_xent(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n, int c,
                          int ld, float *loss, void *dlogits, float scale);
void lk_cuda_mse(lk_device *d, const float *pred, const float *target, size_t n, float *loss, float *dpred,
                 float scale);
void lk_cuda_bce_logits(lk_device *d, const float *logits, const float *target, size_t n, float *loss,
                        float *dlogits, float scale);
void lk_cuda_count_correct(lk_device *d, lk_dtype t, const void *logits, const int32_t *labels, int n, int c,
                           int ld, float *correct);
/* products and bf16 conversions (backend_cuda_bf16.cu) */
void lk_cuda_matmul(lk_device *d, const lk_gemm_desc *p, const void *a, const void *b, float *c);
lk_status lk_cuda_gemm_plan(lk_device *d, const lk_gemm_desc *p);
void lk_cuda_cast_bf16(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r);
void lk_cuda_widen(lk_device *d, const uint16_t *x, float *y, size_t n);
void lk_cuda_pack16(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n);
void lk_cuda_unpack16(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n);
void lk_cuda_round_bf16(lk_cuda *g, const float *x, uint16_t *y, size_t n); /* nearest even */
void lk_cuda_widen_bf16(lk_cuda *g, const uint16_t *x, float *y, size_t n, float beta); /* y = beta y + x */
/* bias gradient db[c] = beta*db[c] + sum over outer and inner (shared with conv) */
void lk_cuda_bias_grad(lk_device *d, float *db, const float *dy, int outer, int c, int inner,
                       float beta);
void lk_cuda_bias_add(lk_device *d, float *y, const float *b, int outer, int c, int inner);
/* sequences (backend_cuda_seq.cu) */
void lk_cuda_transpose(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner);
void lk_cuda_lstm_cell_forward(lk_device *d, int n, int h, float *g, const float *c_prev, float *c,
                               float *hout);
void lk_cuda_lstm_cell_backward(lk_device *d, int n, int h, const float *g, const float *c_prev,
                                const float *c, const float *dh, const float *dh_out, float *dc,
                                float *dg);
void lk_cuda_gru_cell_forward(lk_device *d, int n, int h, float *gx, const float *gh,
                              const float *h_prev, float *hout, float *ghn);
void lk_cuda_gru_cell_backward(lk_device *d, int n, int h, const float *g, const float *ghn,
                               const float *h_prev, float *dh, const float *dh_out, float *dgx,
                               float *dgh);
void lk_cuda_softmax_causal_forward(lk_device *d, float *s, int rows, int t, float scale);
void lk_cuda_softmax_causal_backward(lk_device *d, const float *p, float *dp, int rows, int t,
                                     float scale);
void lk_cuda_embed_forward(lk_device *d, const float *idx, const float *w, float *y, int n, int dim);
void lk_cuda_embed_backward(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                            int dim);
/* normalisation (backend_cuda_norm.cu) */
void lk_cuda_layernorm_forward(lk_device *d, const float *x, const float *w, const float *b,
                               float *y, float *mean, float *rstd, int rows, int dim, float eps);
void lk_cuda_layernorm_backward(lk_device *d, const float *x, const float *w, const float *mean,
                                const float *rstd, const float *dy, float *dx, float *dw,
                                float *db, int rows, int dim, float beta);
void lk_cuda_bn_sums(lk_device *d, const float *x, const float *dy, const float *mean,
                     const float *rstd, int n, int c, int inner, float *out);
void lk_cuda_bn_stats(lk_device *d, const float *sums, int c, float eps, float momentum,
                      float *mean, float *rstd, float *run_mean, float *run_var, float *tracked);
void lk_cuda_bn_forward(lk_device *d, const float *x, const float *mean, const float *rstd,
                        const float *w, const float *b, float *y, int n, int c, int inner);
void lk_cuda_bn_backward(lk_device *d, const float *x, const float *dy, const float *mean,
                         const float *rstd, const float *w, const float *gsums, float *dx, int n,
                         int c, int inner);
/* the logistic function, without overflow for large |x| */
__device__ __forceinline__ float lk_d_sigmoid(float x)
{
    return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}

#endif
