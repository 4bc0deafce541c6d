/* backend_cpu_winograd.c - 3x3 stride-1 convolution as Winograd F(2x2, 3x3).
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2015). Each 2x2
 * output tile is Y = A^T [ (G g G^T) . (B^T d B) ] A over the 4x4 input tile d
 * (origin 2*ty - pad_h, 2*tx - pad_w). With the 4x4 transform positions xi made
 * the outer index, the sums over input channels become 16 independent gemms:
 *
 *   forward          M[xi][k][t]  = U[xi][k][c] x V[xi][c][t]        U = G g G^T, V = B^T d B
 *   backward filter  dU[xi][k][c] = dM[xi][k][t] x V[xi][c][t]^T     dM = A dY A^T
 *   backward data    dV[xi][c][t] = U[xi][k][c]^T x dM[xi][k][t]     dd = B dV B^T (overlap-add)
 *
 * and dg = G^T dU G. Backward is the exact adjoint of the forward computation, so
 * one transform of dy serves both gradients. 2.25x fewer multiplies than im2col.
 *
 * The batch goes in chunks of images (t = tiles of the chunk's images) sized so the
 * chunk's V and M stay in cache between the transforms and the gemms. U and V of
 * every chunk are kept in the layer's saved block for backward; M, dM, dV and the
 * accumulated dU live in the workspace. The transforms run over one (image,
 * channel) plane at a time, vectorised across its tiles. */
#include <cblas.h>
#include <string.h>

#include "backend_cpu.h"

#define TB 64                         /* tiles per block in the transforms */
#define WINO_CHUNK_FLOATS (256L * 1024) /* V + M (or dM + dV) floats of one chunk */
#define WINO_ALIGN 16                 /* floats: sub-buffers start on 64 bytes */

typedef struct {
    int C, K, H, W, OH, OW, ph, pw;
    int th, tw, tpi; /* tile rows, tile columns, tiles per image */
} wgeo;

static wgeo geo(const lk_conv2d_desc *cd)
{
    wgeo g = {cd->c, cd->k, cd->h, cd->w, cd->oh, cd->ow, cd->pad_h, cd->pad_w, 0, 0, 0};
    g.th = (cd->oh + 1) / 2;
    g.tw = (cd->ow + 1) / 2;
    g.tpi = g.th * g.tw;
    return g;
}

static size_t up(size_t floats) { return LK_ALIGN_UP(floats, WINO_ALIGN); }

int lk_cpu_wino_applies(const lk_conv2d_desc *cd)
{
    /* below 8 input channels the gemms are too thin to win over im2col (cnn's
     * first layer has 1) */
    return cd->kh == 3 && cd->kw == 3 && cd->stride_h == 1 && cd->stride_w == 1 &&
           (cd->pad_h == 0 || cd->pad_h == 1) && (cd->pad_w == 0 || cd->pad_w == 1) &&
           cd->c >= 8;
}

static int wino_chunk(const lk_conv2d_desc *cd)
{
    const wgeo g = geo(cd);
    long nb = WINO_CHUNK_FLOATS / (16L * (g.C + g.K) * g.tpi);
    return (int)LK_MAX(1, LK_MIN(nb, cd->n > 0 ? cd->n : 1));
}

size_t lk_cpu_wino_saved(const lk_conv2d_desc *cd)
{
    const wgeo g = geo(cd);
    return (up(16 * (size_t)g.K * g.C) + 16 * (size_t)g.C * g.tpi * (size_t)cd->n) * sizeof(float);
}

/* [dU 16*K*C][M or dM 16*K*t][dV 16*C*t] for one chunk of t tiles */
size_t lk_cpu_wino_workspace(const lk_conv2d_desc *cd)
{
    const wgeo g = geo(cd);
    const size_t t = (size_t)g.tpi * wino_chunk(cd);
    return (up(16 * (size_t)g.K * g.C) + up(16 * (size_t)g.K * t) + 16 * (size_t)g.C * t) *
           sizeof(float);
}

/* ---------------- filter transforms ---------------- */

/* U[xi][k][c] = (G g G^T)[xi] for every filter g = w[k][c] */
static void filter_transform(const wgeo *g, const float *w, float *u)
{
    const size_t kc = (size_t)g->K * g->C;
    for (size_t f = 0; f < kc; f++) {
        const float *s = w + 9 * f;
        float p[4][3]; /* G g */
        for (int b = 0; b < 3; b++) {
            const float g0 = s[b], g1 = s[3 + b], g2 = s[6 + b];
            p[0][b] = g0;
            p[1][b] = 0.5f * (g0 + g1 + g2);
            p[2][b] = 0.5f * (g0 - g1 + g2);
            p[3][b] = g2;
        }
        for (int i = 0; i < 4; i++) { /* (G g) G^T */
            const float g0 = p[i][0], g1 = p[i][1], g2 = p[i][2];
            u[(size_t)(4 * i + 0) * kc + f] = g0;
            u[(size_t)(4 * i + 1) * kc + f] = 0.5f * (g0 + g1 + g2);
            u[(size_t)(4 * i + 2) * kc + f] = 0.5f * (g0 - g1 + g2);
            u[(size_t)(4 * i + 3) * kc + f] = g2;
        }
    }
}

/* dw[k][c] = beta * dw + G^T dU[.][k][c] G (beta 0 replaces, even a stale NaN) */
static void filter_adjoint(const wgeo *g, const float *du, float *dw, float beta)
{
    const size_t kc = (size_t)g->K * g->C;
    for (size_t f = 0; f < kc; f++) {
        float q[4][3]; /* dU G */
        for (int i = 0; i < 4; i++) {
            const float u0 = du[(size_t)(4 * i + 0) * kc + f], u1 = du[(size_t)(4 * i + 1) * kc + f];
            const float u2 = du[(size_t)(4 * i + 2) * kc + f], u3 = du[(size_t)(4 * i + 3) * kc + f];
            q[i][0] = u0 + 0.5f * (u1 + u2);
            q[i][1] = 0.5f * (u1 - u2);
            q[i][2] = 0.5f * (u1 + u2) + u3;
        }
        float *d = dw + 9 * f;
        for (int b = 0; b < 3; b++) { /* G^T (dU G) */
            const float r[3] = {q[0][b] + 0.5f * (q[1][b] + q[2][b]), 0.5f * (q[1][b] - q[2][b]),
                                0.5f * (q[1][b] + q[2][b]) + q[3][b]};
            for (int a = 0; a < 3; a++) d[3 * a + b] = beta != 0.0f ? d[3 * a + b] + r[a] : r[a];
        }
    }
}

/* ---------------- data transforms (one plane at a time) ----------------
 *
 * A plane's tiles go in blocks of TB consecutive tile indices (row-major over the
 * tile grid, so a block may span several short tile rows or part of a long one).
 * Per block: gather the tiles' 4x4 (or 2x2) patches into small arrays on the stack,
 * one per patch position; transform across the block's tiles with every array
 * contiguous (this is the part that vectorises); scatter the result. */

static inline float at(const float *row, int w, int c) { return c >= 0 && c < w ? row[c] : 0.0f; }

/* a[q], b[q], c[q], d[q] = row[c0 + 2q + 0..3] for q < len: 0 outside [0, w), and
 * everywhere when the row is outside the plane (row == NULL) */
static void gather4(const float *row, int w, int c0, int len, float *a, float *b, float *c,
                    float *d)
{
    if (!row) {
        for (int q = 0; q < len; q++) a[q] = b[q] = c[q] = d[q] = 0.0f;
        return;
    }
    /* q in [lo, hi): all four columns inside the row */
    const int lo = LK_MIN(len, c0 < 0 ? (1 - c0) / 2 : 0);
    const int hi = LK_MAX(lo, LK_MIN(len, w - 4 - c0 >= 0 ? (w - 4 - c0) / 2 + 1 : 0));
    for (int q = 0; q < len; q++) {
        if (q == lo) q = hi; /* skip the interior */
        if (q >= len) break;
        const int col = c0 + 2 * q;
        a[q] = at(row, w, col);
        b[q] = at(row, w, col + 1);
        c[q] = at(row, w, col + 2);
        d[q] = at(row, w, col + 3);
    }
    const float *s = row + c0;
    for (int q = lo; q < hi; q++) {
        a[q] = s[2 * q];
        b[q] = s[2 * q + 1];
        c[q] = s[2 * q + 2];
        d[q] = s[2 * q + 3];
    }
}

/* v[xi * vs + tile] = (B^T d B)[xi] for the tiles of one input plane */
static void input_transform(const wgeo *g, const float *x, float *v, size_t vs)
{
    float d[16][TB]; /* d[4i+j][s]: row i, column j of tile s's input patch */
    for (int t0 = 0; t0 < g->tpi; t0 += TB) {
        const int nb = LK_MIN(TB, g->tpi - t0);
        for (int s = 0, len; s < nb; s += len) {
            const int ty = (t0 + s) / g->tw, tx0 = (t0 + s) % g->tw;
            len = LK_MIN(nb - s, g->tw - tx0);
            for (int i = 0; i < 4; i++) {
                const int r = 2 * ty - g->ph + i;
                gather4(r >= 0 && r < g->H ? x + (size_t)r * g->W : NULL, g->W, 2 * tx0 - g->pw,
                        len, d[4 * i] + s, d[4 * i + 1] + s, d[4 * i + 2] + s, d[4 * i + 3] + s);
            }
        }
        float *dst = v + t0;
#pragma omp simd /* the 16 output rows never overlap (vs >= tiles per image) */
        for (int s = 0; s < nb; s++) {
            float t[4][4];
            for (int b = 0; b < 4; b++) { /* B^T d */
                t[0][b] = d[b][s] - d[8 + b][s];
                t[1][b] = d[4 + b][s] + d[8 + b][s];
                t[2][b] = d[8 + b][s] - d[4 + b][s];
                t[3][b] = d[4 + b][s] - d[12 + b][s];
            }
            for (int i = 0; i < 4; i++) { /* (B^T d) B */
                dst[(size_t)(4 * i + 0) * vs + s] = t[i][0] - t[i][2];
                dst[(size_t)(4 * i + 1) * vs + s] = t[i][1] + t[i][2];
                dst[(size_t)(4 * i + 2) * vs + s] = t[i][2] - t[i][1];
                dst[(size_t)(4 * i + 3) * vs + s] = t[i][1] - t[i][3];
            }
        }
    }
}

/* y plane = A^T M A (+ bias) from m[xi * ms + tile] */
static void output_transform(const wgeo *g, const float *m, size_t ms, float bias, float *y)
{
    float o[4][TB]; /* o[2a+b][s]: output (a, b) of tile s */
    for (int t0 = 0; t0 < g->tpi; t0 += TB) {
        const int nb = LK_MIN(TB, g->tpi - t0);
        const float *src = m + t0;
#pragma omp simd
        for (int s = 0; s < nb; s++) {
            float r[2][4]; /* A^T M */
            for (int b = 0; b < 4; b++) {
                const float m0 = src[(size_t)b * ms + s], m1 = src[(size_t)(4 + b) * ms + s];
                const float m2 = src[(size_t)(8 + b) * ms + s], m3 = src[(size_t)(12 + b) * ms + s];
                r[0][b] = m0 + m1 + m2;
                r[1][b] = m1 - m2 - m3;
            }
            for (int a = 0; a < 2; a++) { /* (A^T M) A */
                o[2 * a][s] = r[a][0] + r[a][1] + r[a][2] + bias;
                o[2 * a + 1][s] = r[a][1] - r[a][2] - r[a][3] + bias;
            }
        }
        for (int s = 0, len; s < nb; s += len) {
            const int ty = (t0 + s) / g->tw, tx0 = (t0 + s) % g->tw;
            len = LK_MIN(nb - s, g->tw - tx0);
            const int full = LK_MIN(len, (g->OW - 2 * tx0) / 2); /* tiles with both columns */
            for (int a = 0; a < 2 && 2 * ty + a < g->OH; a++) {
                float *row = y + (size_t)(2 * ty + a) * g->OW + 2 * tx0;
                const float *p0 = o[2 * a] + s, *p1 = o[2 * a + 1] + s;
                for (int q = 0; q < full; q++) {
                    row[2 * q] = p0[q];
                    row[2 * q + 1] = p1[q];
                }
                if (full < len) row[2 * full] = p0[full]; /* odd width: the last tile's left column */
            }
        }
    }
}

/* dm[xi * ms + tile] = (A dY A^T)[xi] for the tiles of one output-gradient plane */
static void output_adjoint(const wgeo *g, const float *dy, float *dm, size_t ms)
{
    float e[4][TB]; /* e[2a+b][s]: dY (a, b) of tile s, 0 past the edge */
    for (int t0 = 0; t0 < g->tpi; t0 += TB) {
        const int nb = LK_MIN(TB, g->tpi - t0);
        for (int s = 0, len; s < nb; s += len) {
            const int ty = (t0 + s) / g->tw, tx0 = (t0 + s) % g->tw;
            len = LK_MIN(nb - s, g->tw - tx0);
            const int full = LK_MIN(len, (g->OW - 2 * tx0) / 2);
            for (int a = 0; a < 2; a++) {
                float *p0 = e[2 * a] + s, *p1 = e[2 * a + 1] + s;
                if (2 * ty + a >= g->OH) {
                    for (int q = 0; q < len; q++) p0[q] = p1[q] = 0.0f;
                    continue;
                }
                const float *row = dy + (size_t)(2 * ty + a) * g->OW + 2 * tx0;
                for (int q = 0; q < full; q++) {
                    p0[q] = row[2 * q];
                    p1[q] = row[2 * q + 1];
                }
                if (full < len) {
                    p0[full] = row[2 * full];
                    p1[full] = 0.0f;
                }
            }
        }
        float *dst = dm + t0;
#pragma omp simd
        for (int s = 0; s < nb; s++) {
            const float a0 = e[0][s], b0 = e[1][s], a1 = e[2][s], b1 = e[3][s];
            const float ra[4] = {a0, a0 + a1, a0 - a1, -a1}; /* A dY: column 0 */
            const float rb[4] = {b0, b0 + b1, b0 - b1, -b1}; /* and column 1 */
            for (int i = 0; i < 4; i++) { /* (A dY) A^T */
                dst[(size_t)(4 * i + 0) * ms + s] = ra[i];
                dst[(size_t)(4 * i + 1) * ms + s] = ra[i] + rb[i];
                dst[(size_t)(4 * i + 2) * ms + s] = ra[i] - rb[i];
                dst[(size_t)(4 * i + 3) * ms + s] = -rb[i];
            }
        }
    }
}

/* dx plane = sum over tiles of B dV B^T, overlapping tiles added (the adjoint of
 * input_transform; what falls on the padding is dropped) */
static void input_adjoint(const wgeo *g, const float *dv, size_t vs, float *dx)
{
    float p[16][TB]; /* p[4a+b][s]: (a, b) of tile s's B dV B^T */
    memset(dx, 0, (size_t)g->H * g->W * sizeof(float));
    for (int t0 = 0; t0 < g->tpi; t0 += TB) {
        const int nb = LK_MIN(TB, g->tpi - t0);
        const float *src = dv + t0;
#pragma omp simd
        for (int s = 0; s < nb; s++) {
            float h[4][4]; /* dV B^T */
            for (int i = 0; i < 4; i++) {
                const float v0 = src[(size_t)(4 * i + 0) * vs + s];
                const float v1 = src[(size_t)(4 * i + 1) * vs + s];
                const float v2 = src[(size_t)(4 * i + 2) * vs + s];
                const float v3 = src[(size_t)(4 * i + 3) * vs + s];
                h[i][0] = v0;
                h[i][1] = v1 - v2 + v3;
                h[i][2] = v1 + v2 - v0;
                h[i][3] = -v3;
            }
            for (int b = 0; b < 4; b++) { /* B (dV B^T) */
                p[b][s] = h[0][b];
                p[4 + b][s] = h[1][b] - h[2][b] + h[3][b];
                p[8 + b][s] = h[1][b] + h[2][b] - h[0][b];
                p[12 + b][s] = -h[3][b];
            }
        }
        for (int s = 0, len; s < nb; s += len) {
            const int ty = (t0 + s) / g->tw, tx0 = (t0 + s) % g->tw;
            len = LK_MIN(nb - s, g->tw - tx0);
            const int c0 = 2 * tx0 - g->pw; /* column of the segment's first tile */
            const int lo = LK_MIN(len, c0 < 0 ? (1 - c0) / 2 : 0);
            const int hi = LK_MAX(lo, LK_MIN(len, g->W - 4 - c0 >= 0 ? (g->W - 4 - c0) / 2 + 1 : 0));
            for (int a = 0; a < 4; a++) {
                const int r = 2 * ty - g->ph + a;
                if (r < 0 || r >= g->H) continue;
                float *row = dx + (size_t)r * g->W;
                const float *p0 = p[4 * a] + s, *p1 = p[4 * a + 1] + s;
                const float *p2 = p[4 * a + 2] + s, *p3 = p[4 * a + 3] + s;
                for (int q = 0; q < len; q++) {
                    if (q == lo) q = hi; /* the interior below */
                    if (q >= len) break;
                    const float val[4] = {p0[q], p1[q], p2[q], p3[q]};
                    for (int j = 0; j < 4; j++) {
                        const int col = c0 + 2 * q + j;
                        if (col >= 0 && col < g->W) row[col] += val[j];
                    }
                }
                float *o = row + c0;
                for (int q = lo; q < hi; q++) {
                    o[2 * q] += p0[q];
                    o[2 * q + 1] += p1[q];
                    o[2 * q + 2] += p2[q];
                    o[2 * q + 3] += p3[q];
                }
            }
        }
    }
}

/* ---------------- the passes ---------------- */

void lk_cpu_wino_forward(const lk_conv2d_desc *cd, const float *x, const float *w, const float *b,
                         float *y, void *saved, void *ws)
{
    const wgeo g = geo(cd);
    const int nb = wino_chunk(cd);
    const size_t kc = (size_t)g.K * g.C, hw = (size_t)g.H * g.W, ohw = (size_t)g.OH * g.OW;
    float *u = saved, *vall = u + up(16 * kc);
    float *m = (float *)ws + up(16 * kc);
    filter_transform(&g, w, u);
    for (int n0 = 0; n0 < cd->n; n0 += nb) {
        const int cnt = LK_MIN(nb, cd->n - n0);
        const size_t t = (size_t)cnt * g.tpi;
        float *v = vall + (size_t)n0 * g.tpi * 16 * g.C;
        const long planes = (long)cnt * g.C;
        LK_CPU_FOR(planes * (long)hw * 4 > LK_CPU_PAR_MIN, pl, planes, {
            const int n = (int)(pl / g.C), c = (int)(pl % g.C);
            input_transform(&g, x + ((size_t)(n0 + n) * g.C + c) * hw,
                            v + (size_t)c * t + (size_t)n * g.tpi, (size_t)g.C * t);
        });
        for (int xi = 0; xi < 16; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.K, (int)t, g.C, 1.0f,
                        u + xi * kc, g.C, v + xi * g.C * t, (int)t, 0.0f, m + xi * g.K * t, (int)t);
        const long oplanes = (long)cnt * g.K;
        LK_CPU_FOR(oplanes * (long)ohw * 4 > LK_CPU_PAR_MIN, pl, oplanes, {
            const int n = (int)(pl / g.K), k = (int)(pl % g.K);
            output_transform(&g, m + (size_t)k * t + (size_t)n * g.tpi, (size_t)g.K * t,
                             b ? b[k] : 0.0f, y + ((size_t)(n0 + n) * g.K + k) * ohw);
        });
    }
}

void lk_cpu_wino_backward(const lk_conv2d_desc *cd, const float *dy, float *dx, float *dw,
                          float beta, void *saved, void *ws)
{
    const wgeo g = geo(cd);
    const int nb = wino_chunk(cd);
    const size_t kc = (size_t)g.K * g.C, hw = (size_t)g.H * g.W, ohw = (size_t)g.OH * g.OW;
    const float *u = saved, *vall = u + up(16 * kc);
    float *du = ws, *dm = du + up(16 * kc);
    for (int n0 = 0; n0 < cd->n; n0 += nb) {
        const int cnt = LK_MIN(nb, cd->n - n0);
        const size_t t = (size_t)cnt * g.tpi;
        const float *v = vall + (size_t)n0 * g.tpi * 16 * g.C;
        float *dv = dm + up(16 * (size_t)g.K * t);
        const long oplanes = (long)cnt * g.K;
        LK_CPU_FOR(oplanes * (long)ohw * 4 > LK_CPU_PAR_MIN, pl, oplanes, {
            const int n = (int)(pl / g.K), k = (int)(pl % g.K);
            output_adjoint(&g, dy + ((size_t)(n0 + n) * g.K + k) * ohw,
                           dm + (size_t)k * t + (size_t)n * g.tpi, (size_t)g.K * t);
        });
        for (int xi = 0; xi < 16; xi++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.K, g.C, (int)t, 1.0f,
                        dm + xi * g.K * t, (int)t, v + xi * g.C * t, (int)t, n0 ? 1.0f : 0.0f,
                        du + xi * kc, g.C);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.C, (int)t, g.K, 1.0f,
                            u + xi * kc, g.C, dm + xi * g.K * t, (int)t, 0.0f, dv + xi * g.C * t,
                            (int)t);
        }
        if (!dx) continue;
        const long planes = (long)cnt * g.C;
        LK_CPU_FOR(planes * (long)hw * 4 > LK_CPU_PAR_MIN, pl, planes, {
            const int n = (int)(pl / g.C), c = (int)(pl % g.C);
            input_adjoint(&g, dv + (size_t)c * t + (size_t)n * g.tpi, (size_t)g.C * t,
                          dx + ((size_t)(n0 + n) * g.C + c) * hw);
        });
    }
    filter_adjoint(&g, du, dw, beta);
}
