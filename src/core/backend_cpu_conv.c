/* backend_cpu_conv.c - convolution as im2col + sgemm, and pooling.
 *
 * 3x3 stride-1 layers with at least 8 input channels go to Winograd F(2x2, 3x3)
 * instead (backend_cpu_winograd.c, chosen from the descriptor alone by
 * lk_cpu_wino_applies); everything else comes here.
 *
 * The batch is processed in chunks of nb images sized so that one chunk's im2col
 * matrix (K x nb*P floats, K = C*kh*kw, P = OH*OW) stays in cache: each chunk is
 * one gemm large enough to run at full speed, and the intermediate products
 * (the output before its NCHW transpose, the column gradient before col2im) are
 * consumed while still in cache instead of round-tripping through memory. The
 * im2col matrices of all chunks are kept in the layer's saved block, so backward
 * reuses them instead of rebuilding them. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "backend_cpu.h"

#define CONV_CHUNK_FLOATS (256L * 1024) /* ~1 MiB of im2col matrix per chunk */

static size_t conv_k(const lk_conv2d_desc *cd) { return (size_t)cd->c * cd->kh * cd->kw; }
static size_t conv_p(const lk_conv2d_desc *cd) { return (size_t)cd->oh * cd->ow; }

static int conv_chunk(const lk_conv2d_desc *cd)
{
    long nb = CONV_CHUNK_FLOATS / (long)(conv_k(cd) * conv_p(cd));
    return (int)LK_MAX(1, LK_MIN(nb, cd->n > 0 ? cd->n : 1));
}

size_t lk_cpu_conv2d_saved(lk_device *d, const lk_conv2d_desc *cd)
{
    (void)d;
    if (lk_cpu_wino_applies(cd)) return lk_cpu_wino_saved(cd);
    return conv_k(cd) * conv_p(cd) * (size_t)cd->n * sizeof(float);
}

size_t lk_cpu_conv2d_workspace(lk_device *d, const lk_conv2d_desc *cd)
{
    (void)d;
    if (lk_cpu_wino_applies(cd)) return lk_cpu_wino_workspace(cd);
    /* one chunk of dcol [K][nb*P] */
    return conv_k(cd) * conv_p(cd) * (size_t)conv_chunk(cd) * sizeof(float);
}

/* col[K][cnt*P] for images n0 .. n0+cnt-1 */
static void im2col(const lk_conv2d_desc *cd, const float *x, int n0, int cnt, float *col)
{
    const int P = (int)conv_p(cd);
    const long K = (long)conv_k(cd);
    const size_t NP = (size_t)cnt * P;
    LK_CPU_FOR(K * (long)NP > LK_CPU_PAR_MIN, rn, K * cnt, {
        const long r = rn / cnt;
        const int n = (int)(rn % cnt);
        int c = (int)(r / (cd->kh * cd->kw));
        int ki = (int)(r / cd->kw % cd->kh), kj = (int)(r % cd->kw);
        const float *plane = x + ((size_t)(n0 + n) * cd->c + c) * cd->h * cd->w;
        float *out = col + (size_t)r * NP + (size_t)n * P;
        for (int oh = 0; oh < cd->oh; oh++) {
            int ih = oh * cd->stride_h - cd->pad_h + ki;
            float *orow = out + (size_t)oh * cd->ow;
            if (ih < 0 || ih >= cd->h) {
                memset(orow, 0, (size_t)cd->ow * sizeof(float));
                continue;
            }
            const float *irow = plane + (size_t)ih * cd->w;
            if (cd->stride_w == 1) {
                int off = kj - cd->pad_w; /* iw = ow + off */
                int lo = off < 0 ? -off : 0;
                int hi = cd->w - off < cd->ow ? cd->w - off : cd->ow;
                if (hi < lo) hi = lo;
                for (int ow = 0; ow < lo; ow++) orow[ow] = 0.0f;
                for (int ow = lo; ow < hi; ow++) orow[ow] = irow[ow + off]; /* short rows: no memcpy call */
                for (int ow = hi; ow < cd->ow; ow++) orow[ow] = 0.0f;
            } else {
                for (int ow = 0; ow < cd->ow; ow++) {
                    int iw = ow * cd->stride_w - cd->pad_w + kj;
                    orow[ow] = iw >= 0 && iw < cd->w ? irow[iw] : 0.0f;
                }
            }
        }
    });
}

/* dx (images n0 .. n0+cnt-1) = col2im(dcol), the adjoint of im2col. Parallel over
 * (n, c) planes so that no two threads add into the same element. */
static void col2im(const lk_conv2d_desc *cd, const float *dcol, int n0, int cnt, float *dx)
{
    const int P = (int)conv_p(cd);
    const size_t NP = (size_t)cnt * P;
    const long planes = (long)cnt * cd->c;
    const size_t hw = (size_t)cd->h * cd->w;
    float *base = dx + (size_t)n0 * cd->c * hw;
    memset(base, 0, (size_t)planes * hw * sizeof(float));
    LK_CPU_FOR(planes * (long)hw * cd->kh * cd->kw > LK_CPU_PAR_MIN, pl, planes, {
        int n = (int)(pl / cd->c), c = (int)(pl % cd->c);
        float *plane = base + (size_t)pl * hw;
        for (int ki = 0; ki < cd->kh; ki++)
            for (int kj = 0; kj < cd->kw; kj++) {
                size_t r = ((size_t)c * cd->kh + ki) * cd->kw + kj;
                const float *src = dcol + r * NP + (size_t)n * P;
                for (int oh = 0; oh < cd->oh; oh++) {
                    int ih = oh * cd->stride_h - cd->pad_h + ki;
                    if (ih < 0 || ih >= cd->h) continue;
                    float *irow = plane + (size_t)ih * cd->w;
                    const float *srow = src + (size_t)oh * cd->ow;
                    if (cd->stride_w == 1) { /* contiguous: iw = ow + off */
                        int off = kj - cd->pad_w;
                        int lo = off < 0 ? -off : 0;
                        int hi = LK_MIN(cd->ow, cd->w - off);
                        for (int ow = lo; ow < hi; ow++) irow[ow + off] += srow[ow];
                        continue;
                    }
                    for (int ow = 0; ow < cd->ow; ow++) {
                        int iw = ow * cd->stride_w - cd->pad_w + kj;
                        if (iw >= 0 && iw < cd->w) irow[iw] += srow[ow];
                    }
                }
            }
    });
}

void lk_cpu_conv2d_forward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const float *w,
                           const float *b, float *y, void *saved, void *ws)
{
    (void)d;
    if (lk_cpu_wino_applies(cd)) {
        lk_cpu_wino_forward(cd, x, w, b, y, saved, ws);
        return;
    }
    const int K = (int)conv_k(cd), P = (int)conv_p(cd), nb = conv_chunk(cd);
    for (int n0 = 0; n0 < cd->n; n0 += nb) {
        const int cnt = LK_MIN(nb, cd->n - n0), NP = cnt * P;
        float *col = (float *)saved + (size_t)n0 * P * K;
        im2col(cd, x, n0, cnt, col);
        /* one gemm per image straight into its NCHW output: no transpose pass */
        for (int n = 0; n < cnt; n++) {
            float *yn = y + (size_t)(n0 + n) * cd->k * P;
            if (b)
                for (int k = 0; k < cd->k; k++)
                    for (int p = 0; p < P; p++) yn[(size_t)k * P + p] = b[k];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cd->k, P, K, 1.0f, w, K,
                        col + (size_t)n * P, NP, b ? 1.0f : 0.0f, yn, P);
        }
    }
}

/* db = beta * db + the sums of one image's output-gradient planes */
static void bias_grad(const lk_conv2d_desc *cd, const float *dyn, float *db, float beta)
{
    const int P = (int)conv_p(cd);
    for (int k = 0; k < cd->k; k++) {
        const float *row = dyn + (size_t)k * P;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < P; i++) s += row[i];
        db[k] = beta != 0.0f ? db[k] + s : s; /* replace: even a stale NaN goes */
    }
}

void lk_cpu_conv2d_backward(lk_device *d, const lk_conv2d_desc *cd, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float beta,
                            void *saved, void *ws)
{
    (void)d;
    (void)x; /* its im2col matrices (or Winograd transforms) are in `saved` */
    if (lk_cpu_wino_applies(cd)) {
        if (db)
            for (int n = 0; n < cd->n; n++)
                bias_grad(cd, dy + (size_t)n * cd->k * conv_p(cd), db, n == 0 ? beta : 1.0f);
        lk_cpu_wino_backward(cd, dy, dx, dw, beta, saved, ws);
        return;
    }
    const int K = (int)conv_k(cd), P = (int)conv_p(cd), nb = conv_chunk(cd);
    float *dcol = ws;
    for (int n0 = 0; n0 < cd->n; n0 += nb) {
        const int cnt = LK_MIN(nb, cd->n - n0), NP = cnt * P;
        const float *col = (const float *)saved + (size_t)n0 * P * K;
        for (int n = 0; n < cnt; n++) {
            const float *dyn = dy + (size_t)(n0 + n) * cd->k * P;
            const float bn = n0 + n == 0 ? beta : 1.0f; /* later images add to the first */
            if (db) bias_grad(cd, dyn, db, bn);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cd->k, K, P, 1.0f, dyn, P,
                        col + (size_t)n * P, NP, bn, dw, K);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, cd->k, 1.0f, w, K, dyn, P,
                            0.0f, dcol + (size_t)n * P, NP);
        }
        if (dx) col2im(cd, dcol, n0, cnt, dx);
    }
}

/* The common 2x2/2 max pooling without the generic window loops. Ties keep the
 * first element in row-major order, as the generic path does. */
static void maxpool_2x2(const lk_pool2d_desc *pd, const float *x, float *y, int32_t *argmax)
{
    const long planes = (long)pd->n * pd->c;
    const int W = pd->w, OW = pd->ow, OH = pd->oh;
    LK_CPU_FOR(planes * pd->h * W > LK_CPU_PAR_MIN, pl, planes, {
        const float *in = x + (size_t)pl * pd->h * W;
        float *out = y + (size_t)pl * OH * OW;
        int32_t *am = argmax + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = in + (size_t)(2 * oh) * W, *r1 = r0 + W;
            float *o = out + (size_t)oh * OW;
            int32_t *a = am + (size_t)oh * OW;
            const int b0 = 2 * oh * W, b1 = b0 + W;
            /* max first, then the first position holding it: a select chain that
             * vectorises, with the same ties-to-first rule as the generic path */
            for (int ow = 0; ow < OW; ow++) {
                const int i = 2 * ow;
                const float v0 = r0[i], v1 = r0[i + 1], v2 = r1[i], v3 = r1[i + 1];
                const float m01 = v1 > v0 ? v1 : v0, m23 = v3 > v2 ? v3 : v2;
                const float m = m23 > m01 ? m23 : m01; /* (not fmaxf: a libm call) */
                o[ow] = m;
                a[ow] = v0 == m ? b0 + i : v1 == m ? b0 + i + 1 : v2 == m ? b1 + i : b1 + i + 1;
            }
        }
    });
}

void lk_cpu_pool2d_forward(lk_device *d, const lk_pool2d_desc *pd, const float *x, float *y,
                           int32_t *argmax)
{
    (void)d;
    const long planes = (long)pd->n * pd->c;
    const float inv = 1.0f / (float)(pd->kh * pd->kw);
    if (pd->is_max && pd->kh == 2 && pd->kw == 2 && pd->stride_h == 2 && pd->stride_w == 2 &&
        pd->pad_h == 0 && pd->pad_w == 0) {
        maxpool_2x2(pd, x, y, argmax);
        return;
    }
    LK_CPU_FOR(planes * pd->h * pd->w > LK_CPU_PAR_MIN, pl, planes, {
        const float *in = x + (size_t)pl * pd->h * pd->w;
        float *out = y + (size_t)pl * pd->oh * pd->ow;
        int32_t *am = argmax ? argmax + (size_t)pl * pd->oh * pd->ow : NULL;
        for (int oh = 0; oh < pd->oh; oh++)
            for (int ow = 0; ow < pd->ow; ow++) {
                int h0 = oh * pd->stride_h - pd->pad_h, w0 = ow * pd->stride_w - pd->pad_w;
                float best = -INFINITY, sum = 0.0f;
                int besti = -1;
                for (int i = h0; i < h0 + pd->kh; i++) {
                    if (i < 0 || i >= pd->h) continue;
                    for (int j = w0; j < w0 + pd->kw; j++) {
                        if (j < 0 || j >= pd->w) continue;
                        float v = in[i * pd->w + j];
                        sum += v;
                        if (v > best || besti < 0) {
                            best = v;
                            besti = i * pd->w + j;
                        }
                    }
                }
                size_t o = (size_t)oh * pd->ow + ow;
                if (pd->is_max) {
                    out[o] = best;
                    am[o] = besti;
                } else {
                    out[o] = sum * inv; /* count_include_pad, as PyTorch's default */
                }
            }
    });
}

void lk_cpu_pool2d_backward(lk_device *d, const lk_pool2d_desc *pd, const float *dy,
                            const int32_t *argmax, float *dx)
{
    (void)d;
    const long planes = (long)pd->n * pd->c;
    const float inv = 1.0f / (float)(pd->kh * pd->kw);
    LK_CPU_FOR(planes * pd->h * pd->w > LK_CPU_PAR_MIN, pl, planes, {
        float *in = dx + (size_t)pl * pd->h * pd->w;
        const float *g = dy + (size_t)pl * pd->oh * pd->ow;
        memset(in, 0, (size_t)pd->h * pd->w * sizeof(float));
        if (pd->is_max) {
            const int32_t *am = argmax + (size_t)pl * pd->oh * pd->ow;
            for (int o = 0; o < pd->oh * pd->ow; o++) in[am[o]] += g[o];
            continue;
        }
        for (int oh = 0; oh < pd->oh; oh++)
            for (int ow = 0; ow < pd->ow; ow++) {
                int h0 = oh * pd->stride_h - pd->pad_h, w0 = ow * pd->stride_w - pd->pad_w;
                float v = g[oh * pd->ow + ow] * inv;
                for (int i = h0; i < h0 + pd->kh; i++) {
                    if (i < 0 || i >= pd->h) continue;
                    for (int j = w0; j < w0 + pd->kw; j++)
                        if (j >= 0 && j < pd->w) in[i * pd->w + j] += v;
                }
            }
    });
}
