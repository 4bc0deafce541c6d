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
    /* the gemms' inner dimension is c: at batch 64, 1 thread, im2col is 2.5x faster
     * at c = 1 or 2 (cnn's first layer has 1), even at c = 4, and 1.3-2x slower from
     * c = 8 on */
    return cd->kh == 3 && cd->kw == 3 && cd->stride_h == 1 && cd->stride_w == 1 &&
           (cd->pad_h == 0 || cd->pad_h == 1) && (cd->pad_w == 0 || cd->pad_w == 1) &&
           cd->c >= 8;
}

/* images per chunk (a smaller batch than the sizes were computed for gets smaller
 * chunks, or as many of the same size) */
static int wino_chunk(const lk_conv2d_desc *cd)
{
    const wgeo g = geo(cd);
    long nb = WINO_CHUNK_FLOATS / (16L * (g.C + g.K) * g.tpi);
    return (int)LK_MAX(1, LK_MIN(nb, cd->n > 0 ? cd->n : 1));
}

/* Row stride of a chunk's V, M, dM and dV: its tile count rounded up to 16, and the
 * forward gemm runs over the padding too (its extra columns are never read).
 * OpenBLAS's AVX-512 small-matrix kernel for that gemm (0.3.21) mallocs a scratch
 * copy on every call whose column count leaves 1..8 over a multiple of 16, and a
 * training step must not allocate (tests/unit/test_model.c). */
static size_t chunk_ld(const wgeo *g, int images) { return LK_ALIGN_UP((size_t)images * g->tpi, 16); }

/* [U 16*K*C][V of chunk 0][V of chunk 1]..., each V slot 16*C*ld floats */
size_t lk_cpu_wino_saved(const lk_conv2d_desc *cd)
{
    const wgeo g = geo(cd);
    const int nb = wino_chunk(cd), chunks = (cd->n + nb - 1) / nb;
    return (up(16 * (size_t)g.K * g.C) + (size_t)chunks * 16 * g.C * chunk_ld(&g, nb)) *
           sizeof(float);
}

/* [dU 16*K*C][M or dM 16*K*ld][dV 16*C*ld] for one chunk */
size_t lk_cpu_wino_workspace(const lk_conv2d_desc *cd)
{
    const wgeo g = geo(cd);
    const size_t ld = chunk_ld(&g, wino_chunk(cd));
    return (up(16 * (size_t)g.K * g.C) + 16 * (size_t)(g.K + g.C) * ld) * sizeof(float);
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
 * A plane's tiles go in blocks of at most TB consecutive tile indices (row-major
 * over the tile grid, so a block may span several short tile rows or part of a long
 * one). The arithmetic runs across a block's tiles on arrays that are contiguous in
 * the tile index (on the stack, or the rows of V, M, dM, dV), which vectorises; only
 * the gathers from and scatters to image rows go row piece by row piece. */

#define ROUND8(n) (((n) + 7) & ~7)

/* Loops over a row piece run in whole vectors of 8 where the overhang stays inside
 * the plane ([.., end)): reads past the piece are harmless, and writes past it land
 * on elements that a later piece of the same plane writes again. Planes are never
 * shared between threads. */

/* pr[k] = row[c0 + k] for k < n (pr holds n + 8): 0 outside [0, w), and everywhere
 * when the row is outside the plane (row == NULL) */
static void load_row(const float *row, int w, int c0, int n, const float *end, float *pr)
{
    const int lo = row ? LK_MIN(n, LK_MAX(0, -c0)) : n, hi = row ? LK_MAX(lo, LK_MIN(n, w - c0)) : n;
    for (int k = 0; k < lo; k++) pr[k] = 0.0f;
    if (hi > lo && end - row >= c0 + lo + ROUND8(n - lo))
        for (int k = lo; k < lo + ROUND8(n - lo); k++) pr[k] = row[c0 + k];
    else
        for (int k = lo; k < hi; k++) pr[k] = row[c0 + k];
    for (int k = hi; k < n; k++) pr[k] = 0.0f;
}

/* The input transform and its adjoint go over rectangles of tiles with consecutive
 * indices: as many whole tile rows as fit in TB tiles, or pieces of TB tiles of one
 * long row. Each padded input row of a rectangle is transformed along its columns
 * once (it serves two tile rows), then the rows are combined across the rectangle's
 * tiles, contiguous in both the scratch and V. */
#define RECT_LOOP(g, ty0, tx0, nr, nt)                                                 \
    for (int ty0 = 0, R_ = (g)->tw <= TB ? TB / (g)->tw : 1; ty0 < (g)->th; ty0 += R_) \
        for (int tx0 = 0, nr = LK_MIN(R_, (g)->th - ty0), nt; tx0 < (g)->tw; tx0 += nt)  \
            if ((nt = LK_MIN(TB, (g)->tw - tx0)) > 0)

/* v[xi * vs + tile] = (B^T d B)[xi] for the tiles of one input plane */
static void input_transform(const wgeo *g, const float *x, float *v, size_t vs)
{
    float h[2][4][2 * TB + 8]; /* h[r & 1][j][(r/2)*nt + q]: (d B)[.][j] of tile q, padded row r */
    float pr[2 * TB + 24];
    const float *end = x + (size_t)g->H * g->W;
    RECT_LOOP(g, ty0, tx0, nr, nt) {
        const int len8 = ROUND8(nt); /* whole vectors: the overhang is overwritten next row */
        for (int rl = 0; rl < 2 * nr + 2; rl++) {
            const int r = 2 * ty0 - g->ph + rl;
            load_row(r >= 0 && r < g->H ? x + (size_t)r * g->W : NULL, g->W, 2 * tx0 - g->pw,
                     2 * len8 + 2, end, pr);
            const int off = (rl >> 1) * nt;
            float *h0 = h[rl & 1][0] + off, *h1 = h[rl & 1][1] + off;
            float *h2 = h[rl & 1][2] + off, *h3 = h[rl & 1][3] + off;
            for (int q = 0; q < len8; q++) {
                const float d0 = pr[2 * q], d1 = pr[2 * q + 1], d2 = pr[2 * q + 2], d3 = pr[2 * q + 3];
                h0[q] = d0 - d2;
                h1[q] = d1 + d2;
                h2[q] = d2 - d1;
                h3[q] = d1 - d3;
            }
        }
        float *dst = v + (size_t)ty0 * g->tw + tx0;
        const int ns = nr * nt;
        for (int j = 0; j < 4; j++) { /* B^T (d B): padded rows 2ty .. 2ty+3 */
            const float *e = h[0][j], *o = h[1][j];
#pragma omp simd /* the output rows never overlap (vs >= tiles per image) */
            for (int s = 0; s < ns; s++) {
                const float a = e[s], b = o[s], c = e[s + nt], d = o[s + nt];
                dst[(size_t)j * vs + s] = a - c;
                dst[(size_t)(4 + j) * vs + s] = b + c;
                dst[(size_t)(8 + j) * vs + s] = c - b;
                dst[(size_t)(12 + j) * vs + s] = b - d;
            }
        }
    }
}

/* y plane = A^T M A (+ bias) from m[xi * ms + tile] */
static void output_transform(const wgeo *g, const float *m, size_t ms, float bias, float *y)
{
    float o[4][TB + 8]; /* o[2a+b][s]: output (a, b) of tile s */
    const float *end = y + (size_t)g->OH * g->OW;
    for (int t0 = 0; t0 < g->tpi; t0 += TB) {
        const int nb = LK_MIN(TB, g->tpi - t0);
        for (int s = nb; s < nb + 8; s++) o[0][s] = o[1][s] = o[2][s] = o[3][s] = 0.0f;
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
                /* (not for the tail of a row split between blocks: its overhang
                 * would land on the next row, which the head already wrote) */
                if (end - row >= 2 * ROUND8(len) && (tx0 == 0 || tx0 + len < g->tw)) {
                    for (int q = 0; q < ROUND8(len); q++) {
                        row[2 * q] = p0[q];
                        row[2 * q + 1] = p1[q];
                    }
                    continue;
                }
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
    float e[4][TB + 8]; /* e[2a+b][s]: dY (a, b) of tile s, 0 past the edge */
    const float *end = dy + (size_t)g->OH * g->OW;
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
                if (end - row >= 2 * ROUND8(len)) {
                    for (int q = 0; q < ROUND8(len); q++) {
                        p0[q] = row[2 * q];
                        p1[q] = row[2 * q + 1];
                    }
                    if (full < len) p1[full] = 0.0f; /* odd width: past the edge */
                    continue;
                }
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

/* dx plane = sum over tiles of B dV B^T, overlapping tiles added: the adjoint of
 * input_transform, step by step (what falls on the padding is dropped) */
static void input_adjoint(const wgeo *g, const float *dv, size_t vs, float *dx)
{
    float h[2][4][2 * TB + 8]; /* the gradient of input_transform's h */
    float down[2][4][TB];      /* the parts for padded rows 2ty+2, 2ty+3 */
    float pr[2 * TB + 24];
    const float *end = dx + (size_t)g->H * g->W;
    memset(dx, 0, (size_t)g->H * g->W * sizeof(float));
    RECT_LOOP(g, ty0, tx0, nr, nt) {
        const float *src = dv + (size_t)ty0 * g->tw + tx0;
        const int ns = nr * nt;
        for (int j = 0; j < 4; j++) {
            float *e = h[0][j], *o = h[1][j], *e2 = down[0][j], *o2 = down[1][j];
#pragma omp simd
            for (int s = 0; s < ns; s++) {
                const float v0 = src[(size_t)j * vs + s], v1 = src[(size_t)(4 + j) * vs + s];
                const float v2 = src[(size_t)(8 + j) * vs + s], v3 = src[(size_t)(12 + j) * vs + s];
                e[s] = v0;
                o[s] = v1 - v2 + v3;
                e2[s] = v1 + v2 - v0;
                o2[s] = -v3;
            }
            for (int s = ns; s < ns + nt + 8; s++) e[s] = o[s] = 0.0f; /* + vector overhang */
            for (int s = 0; s < ns; s++) { /* one tile row down: nt further on */
                e[s + nt] += e2[s];
                o[s + nt] += o2[s];
            }
        }
        const int c0 = 2 * tx0 - g->pw, n = 2 * nt + 2;
        const int lo = LK_MIN(n, LK_MAX(0, -c0)), hi = LK_MAX(lo, LK_MIN(n, g->W - c0));
        for (int rl = 0; rl < 2 * nr + 2; rl++) {
            const int r = 2 * ty0 - g->ph + rl;
            if (r < 0 || r >= g->H) continue;
            const int off = (rl >> 1) * nt;
            const float *g0 = h[rl & 1][0] + off, *g1 = h[rl & 1][1] + off;
            const float *g2 = h[rl & 1][2] + off, *g3 = h[rl & 1][3] + off;
            /* column 2q: tile q's d0 and tile q-1's d2; column 2q+1: d1 and d3 */
            pr[0] = g0[0];
            pr[1] = g1[0] - g2[0] + g3[0];
            for (int q = 1; q < 1 + ROUND8(nt - 1); q++) { /* h is initialised that far */
                pr[2 * q] = g0[q] + g1[q - 1] + g2[q - 1] - g0[q - 1];
                pr[2 * q + 1] = g1[q] - g2[q] + g3[q] - g3[q - 1];
            }
            pr[2 * nt] = g1[nt - 1] + g2[nt - 1] - g0[nt - 1];
            pr[2 * nt + 1] = -g3[nt - 1];
            float *row = dx + (size_t)r * g->W; /* pr[k] goes to column c0 + k */
            if (hi > lo && end - row >= c0 + lo + ROUND8(hi - lo)) { /* adding 0 past the row */
                for (int k = hi; k < lo + ROUND8(hi - lo); k++) pr[k] = 0.0f;
                for (int k = lo; k < lo + ROUND8(hi - lo); k++) row[c0 + k] += pr[k];
                continue;
            }
            for (int k = lo; k < hi; k++) row[c0 + k] += pr[k];
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
    const size_t slot = 16 * (size_t)g.C * chunk_ld(&g, nb);
    float *u = saved, *m = (float *)ws + up(16 * kc);
    filter_transform(&g, w, u);
    for (int n0 = 0; n0 < cd->n; n0 += nb) {
        const int cnt = LK_MIN(nb, cd->n - n0);
        const size_t ld = chunk_ld(&g, cnt);
        float *v = u + up(16 * kc) + (size_t)(n0 / nb) * slot;
        const long planes = (long)cnt * g.C;
        LK_CPU_FOR(planes * (long)hw * 4 > LK_CPU_PAR_MIN, pl, planes, {
            const int n = (int)(pl / g.C), c = (int)(pl % g.C);
            input_transform(&g, x + ((size_t)(n0 + n) * g.C + c) * hw,
                            v + c * ld + (size_t)n * g.tpi, g.C * ld);
        });
        for (int xi = 0; xi < 16; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.K, (int)ld, g.C, 1.0f,
                        u + xi * kc, g.C, v + xi * g.C * ld, (int)ld, 0.0f, m + xi * g.K * ld,
                        (int)ld);
        const long oplanes = (long)cnt * g.K;
        LK_CPU_FOR(oplanes * (long)ohw * 4 > LK_CPU_PAR_MIN, pl, oplanes, {
            const int n = (int)(pl / g.K), k = (int)(pl % g.K);
            output_transform(&g, m + k * ld + (size_t)n * g.tpi, g.K * ld, b ? b[k] : 0.0f,
                             y + ((size_t)(n0 + n) * g.K + k) * ohw);
        });
    }
}

void lk_cpu_wino_backward(const lk_conv2d_desc *cd, const float *dy, float *dx, float *dw,
                          float beta, void *saved, void *ws)
{
    const wgeo g = geo(cd);
    const int nb = wino_chunk(cd);
    const size_t kc = (size_t)g.K * g.C, hw = (size_t)g.H * g.W, ohw = (size_t)g.OH * g.OW;
    const size_t slot = 16 * (size_t)g.C * chunk_ld(&g, nb);
    const float *u = saved;
    float *du = ws, *dm = du + up(16 * kc);
    for (int n0 = 0; n0 < cd->n; n0 += nb) {
        const int cnt = LK_MIN(nb, cd->n - n0), t = cnt * g.tpi;
        const size_t ld = chunk_ld(&g, cnt);
        const float *v = u + up(16 * kc) + (size_t)(n0 / nb) * slot;
        float *dv = dm + 16 * g.K * ld;
        const long oplanes = (long)cnt * g.K;
        LK_CPU_FOR(oplanes * (long)ohw * 4 > LK_CPU_PAR_MIN, pl, oplanes, {
            const int n = (int)(pl / g.K), k = (int)(pl % g.K);
            output_adjoint(&g, dy + ((size_t)(n0 + n) * g.K + k) * ohw,
                           dm + k * ld + (size_t)n * g.tpi, g.K * ld);
        });
        for (int xi = 0; xi < 16; xi++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.K, g.C, t, 1.0f,
                        dm + xi * g.K * ld, (int)ld, v + xi * g.C * ld, (int)ld,
                        n0 ? 1.0f : 0.0f, du + xi * kc, g.C);
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.C, t, g.K, 1.0f,
                            u + xi * kc, g.C, dm + xi * g.K * ld, (int)ld, 0.0f,
                            dv + xi * g.C * ld, (int)ld);
        }
        if (!dx) continue;
        const long planes = (long)cnt * g.C;
        LK_CPU_FOR(planes * (long)hw * 4 > LK_CPU_PAR_MIN, pl, planes, {
            const int n = (int)(pl / g.C), c = (int)(pl % g.C);
            input_adjoint(&g, dv + c * ld + (size_t)n * g.tpi, g.C * ld,
                          dx + ((size_t)(n0 + n) * g.C + c) * hw);
        });
    }
    filter_adjoint(&g, du, dw, beta);
}
