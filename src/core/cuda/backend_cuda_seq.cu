/* backend_cuda_seq.cu - the sequence entries on the GPU: the axis swap between
 * batch-major and time-major layouts, and the element-wise parts of the LSTM and GRU
 * cells (a thread per hidden unit of a row; the products around them are cuBLAS's). */
#include "backend_cuda.h"

#define GRID_STRIDE(i, n)                                                                 \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);               \
         i += (size_t)gridDim.x * blockDim.x)

__global__ void k_transpose(const float *x, float *y, int a, int b, int inner, size_t total)
{
    GRID_STRIDE(e, total) {
        /* e indexes y as [o][j][i][k] */
        size_t k = e % (size_t)inner, r = e / (size_t)inner;
        size_t i = r % (size_t)a;
        r /= (size_t)a;
        size_t j = r % (size_t)b, o = r / (size_t)b;
        y[e] = x[((o * a + i) * b + j) * inner + k];
    }
}

void lk_cuda_transpose(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)outer * a * b * inner;
    if (!total) return;
    k_transpose<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(x, y, a, b, inner, total);
    LK_LAUNCHED(g);
}

__global__ void k_lstm_forward(int h, size_t total, float *g, const float *c_prev, float *c,
                               float *hout)
{
    GRID_STRIDE(e, total) {
        size_t r = e / (size_t)h, j = e % (size_t)h;
        float *gi = g + r * 4 * h;
        float i = lk_d_sigmoid(gi[j]), f = lk_d_sigmoid(gi[h + j]), gv = tanhf(gi[2 * h + j]),
              o = lk_d_sigmoid(gi[3 * h + j]);
        float cv = f * c_prev[e] + i * gv;
        gi[j] = i, gi[h + j] = f, gi[2 * h + j] = gv, gi[3 * h + j] = o;
        c[e] = cv;
        hout[e] = o * tanhf(cv);
    }
}

void lk_cuda_lstm_cell_forward(lk_device *d, int n, int h, float *gt, const float *c_prev, float *c,
                               float *hout)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * h;
    k_lstm_forward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(h, total, gt, c_prev,
                                                                                c, hout);
    LK_LAUNCHED(g);
}

__global__ void k_lstm_backward(int h, size_t total, const float *g, const float *c_prev,
                                const float *c, const float *dh, const float *dh_out, float *dc,
                                float *dg)
{
    GRID_STRIDE(e, total) {
        size_t r = e / (size_t)h, j = e % (size_t)h;
        const float *gi = g + r * 4 * h;
        float *di = dg + r * 4 * h;
        float dhv = dh[e] + (dh_out ? dh_out[e] : 0.0f);
        float tc = tanhf(c[e]);
        float i = gi[j], f = gi[h + j], gv = gi[2 * h + j], o = gi[3 * h + j];
        float dcv = dc[e] + dhv * o * (1.0f - tc * tc);
        di[3 * h + j] = dhv * tc * o * (1.0f - o);
        di[j] = dcv * gv * i * (1.0f - i);
        di[h + j] = dcv * c_prev[e] * f * (1.0f - f);
        di[2 * h + j] = dcv * i * (1.0f - gv * gv);
        dc[e] = dcv * f;
    }
}

void lk_cuda_lstm_cell_backward(lk_device *d, int n, int h, const float *gt, const float *c_prev,
                                const float *c, const float *dh, const float *dh_out, float *dc,
                                float *dg)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * h;
    k_lstm_backward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(
        h, total, gt, c_prev, c, dh, dh_out, dc, dg);
    LK_LAUNCHED(g);
}

__global__ void k_gru_forward(int h, size_t total, float *gx, const float *gh, const float *h_prev,
                              float *hout, float *ghn)
{
    GRID_STRIDE(e, total) {
        size_t r = e / (size_t)h, j = e % (size_t)h;
        float *x = gx + r * 3 * h;
        const float *hh = gh + r * 3 * h;
        float rv = lk_d_sigmoid(x[j] + hh[j]), zv = lk_d_sigmoid(x[h + j] + hh[h + j]);
        float nv = tanhf(x[2 * h + j] + rv * hh[2 * h + j]);
        x[j] = rv, x[h + j] = zv, x[2 * h + j] = nv;
        ghn[e] = hh[2 * h + j];
        hout[e] = (1.0f - zv) * nv + zv * h_prev[e];
    }
}

void lk_cuda_gru_cell_forward(lk_device *d, int n, int h, float *gx, const float *gh,
                              const float *h_prev, float *hout, float *ghn)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * h;
    k_gru_forward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(h, total, gx, gh,
                                                                               h_prev, hout, ghn);
    LK_LAUNCHED(g);
}

__global__ void k_gru_backward(int h, size_t total, const float *g, const float *ghn,
                               const float *h_prev, float *dh, const float *dh_out, float *dgx,
                               float *dgh)
{
    GRID_STRIDE(e, total) {
        size_t r = e / (size_t)h, j = e % (size_t)h;
        const float *gr = g + r * 3 * h;
        float *x = dgx + r * 3 * h, *hh = dgh + r * 3 * h;
        float dhv = dh[e] + (dh_out ? dh_out[e] : 0.0f);
        float rv = gr[j], zv = gr[h + j], nv = gr[2 * h + j];
        float dan = dhv * (1.0f - zv) * (1.0f - nv * nv);
        float daz = dhv * (h_prev[e] - nv) * zv * (1.0f - zv);
        float dar = dan * ghn[e] * rv * (1.0f - rv);
        x[j] = hh[j] = dar;
        x[h + j] = hh[h + j] = daz;
        x[2 * h + j] = dan;
        hh[2 * h + j] = dan * rv;
        dh[e] = dhv * zv;
    }
}

void lk_cuda_gru_cell_backward(lk_device *d, int n, int h, const float *gt, const float *ghn,
                               const float *h_prev, float *dh, const float *dh_out, float *dgx,
                               float *dgh)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * h;
    k_gru_backward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(
        h, total, gt, ghn, h_prev, dh, dh_out, dgx, dgh);
    LK_LAUNCHED(g);
}

/* ---- attention ---- */

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v; /* in every lane */
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#define WARPS_PER_BLOCK (LK_CUDA_THREADS / 32)

static unsigned row_blocks(int rows) { return (unsigned)((rows + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK); }

/* a warp per row */
__global__ void k_softmax_causal(float *s, int rows, int t, float scale)
{
    const int r = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= rows) return;
    float *row = s + (size_t)r * t;
    const int keys = r % t + 1;
    float mx = -INFINITY;
    for (int j = lane; j < keys; j += 32) mx = fmaxf(mx, row[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < keys; j += 32) {
        float e = expf(scale * (row[j] - mx));
        row[j] = e;
        sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < t; j += 32) row[j] = j < keys ? row[j] * inv : 0.0f;
}

void lk_cuda_softmax_causal_forward(lk_device *d, float *s, int rows, int t, float scale)
{
    lk_cuda *g = lk_cuda_of(d);
    k_softmax_causal<<<row_blocks(rows), LK_CUDA_THREADS, 0, g->stream>>>(s, rows, t, scale);
    LK_LAUNCHED(g);
}

__global__ void k_softmax_causal_backward(const float *p, float *dp, int rows, int t, float scale)
{
    const int r = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *pr = p + (size_t)r * t;
    float *gr = dp + (size_t)r * t;
    const int keys = r % t + 1;
    float dot = 0.0f;
    for (int j = lane; j < keys; j += 32) dot += pr[j] * gr[j];
    dot = warp_sum(dot);
    for (int j = lane; j < t; j += 32) gr[j] = j < keys ? scale * pr[j] * (gr[j] - dot) : 0.0f;
}

void lk_cuda_softmax_causal_backward(lk_device *d, const float *p, float *dp, int rows, int t,
                                     float scale)
{
    lk_cuda *g = lk_cuda_of(d);
    k_softmax_causal_backward<<<row_blocks(rows), LK_CUDA_THREADS, 0, g->stream>>>(p, dp, rows, t,
                                                                                   scale);
    LK_LAUNCHED(g);
}

/* ---- embeddings ---- */

__global__ void k_embed_forward(const float *idx, const float *w, float *y, size_t total, int dim)
{
    GRID_STRIDE(e, total) y[e] = w[(size_t)idx[e / dim] * dim + e % dim];
}

void lk_cuda_embed_forward(lk_device *d, const float *idx, const float *w, float *y, int n, int dim)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * dim;
    k_embed_forward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(idx, w, y, total, dim);
    LK_LAUNCHED(g);
}

/* rows of the same token meet in dw: atomics (the order of the additions varies) */
__global__ void k_embed_backward(const float *idx, const float *dy, float *dw, size_t total, int dim)
{
    GRID_STRIDE(e, total) atomicAdd(&dw[(size_t)idx[e / dim] * dim + e % dim], dy[e]);
}

void lk_cuda_embed_backward(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                            int dim)
{
    lk_cuda *g = lk_cuda_of(d);
    size_t total = (size_t)n * dim;
    k_embed_backward<<<lk_cuda_blocks(g, total), LK_CUDA_THREADS, 0, g->stream>>>(idx, dy, dw, total,
                                                                                  dim);
    LK_LAUNCHED(g);
}
