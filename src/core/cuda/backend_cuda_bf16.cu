/* backend_cuda_bf16.cu - matrix products (float32 and bf16 on the tensor cores) and the
 * conversions between float32 and bf16.
 *
 * A bf16 product rounds each float32 operand to bf16 (nearest even) into the device's
 * cast buffer, then runs cublasGemmStridedBatchedEx with bf16 inputs, float32 output and
 * float32 accumulation (CUBLAS_COMPUTE_32F). The cast buffer is grown while the model
 * plans (gemm_plan sees every product first), so a step allocates nothing; a product
 * first met during a step grows it then, once. */
#include "backend_cuda.h"

#include <stdio.h>

extern "C" {
#include "../half.h"
}

__global__ void k_round_bf16(const float *x, uint16_t *y, size_t n, lk_round r)
{
    if (r.skip && *r.skip != 0.0f) return; /* (the step check dropped the step) */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = lk_bf16_round(x[i], r.stochastic, r.seed, r.key, r.first + i);
}

__global__ void k_widen_bf16(const uint16_t *x, float *y, size_t n, float beta)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = beta != 0.0f ? y[i] + lk_bf16_to_f32(x[i]) : lk_bf16_to_f32(x[i]);
}

void lk_cuda_cast_bf16(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_round_bf16<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(x, y, n, *r);
    LK_LAUNCHED(g);
}

void lk_cuda_widen(lk_device *d, const uint16_t *x, float *y, size_t n)
{
    lk_cuda_widen_bf16(lk_cuda_of(d), x, y, n, 0.0f);
}

/* the 16-bit gradient wire: scaled and rounded to nearest even (f16: fp16, else bf16) */
__global__ void k_pack16(int f16, const float *x, float s, uint16_t *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = f16 ? lk_f16_rne(x[i] * s) : lk_bf16_rne(x[i] * s);
}

__global__ void k_unpack16(int f16, const uint16_t *x, float s, float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = (f16 ? lk_f16_to_f32(x[i]) : lk_bf16_to_f32(x[i])) * s;
}

void lk_cuda_pack16(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_pack16<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(t == LK_F16, x, scale, y, n);
    LK_LAUNCHED(g);
}

void lk_cuda_unpack16(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n)
{
    lk_cuda *g = lk_cuda_of(d);
    if (!n) return;
    k_unpack16<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(t == LK_F16, x, scale, y, n);
    LK_LAUNCHED(g);
}

void lk_cuda_round_bf16(lk_cuda *g, const float *x, uint16_t *y, size_t n)
{
    const lk_round rne = {0, 0, 0, 0, NULL};
    if (!n) return;
    k_round_bf16<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(x, y, n, rne);
    LK_LAUNCHED(g);
}

void lk_cuda_widen_bf16(lk_cuda *g, const uint16_t *x, float *y, size_t n, float beta)
{
    if (!n) return;
    k_widen_bf16<<<lk_cuda_blocks(g, n), LK_CUDA_THREADS, 0, g->stream>>>(x, y, n, beta);
    LK_LAUNCHED(g);
}

/* ---- matrix products ---- */

/* bf16 elements of the cast buffer p needs: its float32 operands' spans, A's first
 * (each rounded up to 128 elements: 256-byte aligned) */
static size_t cast_need(const lk_gemm_desc *p, size_t *b_at)
{
    size_t a = p->compute == LK_BF16 && p->a_type == LK_F32 ? LK_ALIGN_UP(lk_gemm_span_a(p), 128) : 0;
    size_t b = p->compute == LK_BF16 && p->b_type == LK_F32 ? lk_gemm_span_b(p) : 0;
    *b_at = a;
    return a + b;
}

static int grow_cast(lk_cuda *g, size_t elems)
{
    if (elems <= g->cast_elems) return 1;
    void *p = NULL;
    if (cudaMalloc(&p, elems * sizeof(uint16_t)) != cudaSuccess) {
        cudaGetLastError();
        char what[96];
        snprintf(what, sizeof what, "%zu bytes for bf16 operands", elems * sizeof(uint16_t));
        lk_cuda_fail(g, __FILE__, __LINE__, "cudaMalloc", what);
        return 0;
    }
    if (g->cast) cudaFree(g->cast);
    g->cast = (uint16_t *)p;
    g->cast_elems = elems;
    return 1;
}

lk_status lk_cuda_gemm_plan(lk_device *d, const lk_gemm_desc *p)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t b_at;
    const size_t need = cast_need(p, &b_at);
    if (d->sizing) {
        if (need > g->cast_planned) g->cast_planned = need;
        return LK_OK;
    }
    if (!grow_cast(g, need))
        return LK_ERR(LK_ERR_NOMEM, "cuda: cannot allocate %zu bytes for a bf16 product's operands",
                      need * sizeof(uint16_t));
    return LK_OK;
}

/* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T */
void lk_cuda_matmul(lk_device *d, const lk_gemm_desc *p, const void *a, const void *b, float *c)
{
    lk_cuda *g = lk_cuda_of(d);
    const cublasOperation_t oa = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t ob = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (p->compute == LK_F32) {
        const float *fa = (const float *)a, *fb = (const float *)b;
        if (p->count == 1)
            LK_CUBLAS(g, cublasSgemm(g->cublas, ob, oa, p->n, p->m, p->k, &p->alpha, fb, p->ldb, fa,
                                     p->lda, &p->beta, c, p->ldc));
        else
            LK_CUBLAS(g, cublasSgemmStridedBatched(g->cublas, ob, oa, p->n, p->m, p->k, &p->alpha, fb,
                                                   p->ldb, p->stride_b, fa, p->lda, p->stride_a,
                                                   &p->beta, c, p->ldc, p->stride_c, p->count));
        return;
    }
    size_t b_at;
    if (!grow_cast(g, cast_need(p, &b_at))) return;
    if (p->a_type == LK_F32) { /* rounded over its span, gaps and all, so lda and strides hold */
        lk_cuda_round_bf16(g, (const float *)a, g->cast, lk_gemm_span_a(p));
        a = g->cast;
    }
    if (p->b_type == LK_F32) {
        lk_cuda_round_bf16(g, (const float *)b, g->cast + b_at, lk_gemm_span_b(p));
        b = g->cast + b_at;
    }
    LK_CUBLAS(g, cublasGemmStridedBatchedEx(g->cublas, ob, oa, p->n, p->m, p->k, &p->alpha, b,
                                            CUDA_R_16BF, p->ldb, p->stride_b, a, CUDA_R_16BF, p->lda,
                                            p->stride_a, &p->beta, c, CUDA_R_32F, p->ldc, p->stride_c,
                                            p->count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
