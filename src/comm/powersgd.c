/* powersgd.c - PowerSGD's compression arithmetic (see powersgd.h). */
#include "powersgd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/rng.h"

static int cmp_offset(const void *a, const void *b)
{
    const lk_psgd_mat *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* tensor p as a matrix worth compressing at rank r (1), or not (0) */
static int as_matrix(const lk_param *p, int r, int *n, int *m)
{
    if (p->buffer || p->shape.ndim < 2) return 0;
    const size_t numel = lk_shape_numel(&p->shape), cols = numel / (size_t)p->shape.d[0];
    const size_t rows = lk_param_storage(p) / cols; /* padding rows included: zero gradients */
    if ((rows + cols) * (size_t)r * 2 > rows * cols || rows > (size_t)1 << 30 || cols > (size_t)1 << 30) return 0;
    *n = (int)rows, *m = (int)cols;
    return 1;
}

size_t lk_powersgd_state_floats(const lk_model *m, size_t lo, size_t hi, int r)
{
    size_t floats = 0;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            int n, c;
            if (p->buffer || p->offset < lo || p->offset >= hi) continue;
            floats += lk_param_storage(p);
            if (as_matrix(p, r, &n, &c)) floats += ((size_t)n + (size_t)c) * (size_t)r;
        }
    return floats;
}

void lk_powersgd_destroy(lk_powersgd *s)
{
    if (!s) return;
    lk_dev_free(s->dev, s->p);
    lk_dev_free(s->dev, s->q);
    lk_dev_free(s->dev, s->e);
    lk_free(s->qt);
    lk_free(s->owed);
    lk_free(s->again);
    lk_free(s->mat);
    lk_free(s);
}

lk_status lk_powersgd_create(lk_powersgd **out, const lk_model *m, size_t lo, size_t hi, int r,
                             uint64_t seed, int world)
{
    *out = NULL;
    if (r < 1) return LK_ERR(LK_ERR_ARG, "powersgd: the rank must be at least 1 (got %d)", r);
    lk_powersgd *s = lk_calloc(1, sizeof *s);
    int cap = 0;
    for (int i = 0; i < m->nlayers; i++) cap += m->layers[i]->nparams;
    if (s) s->mat = lk_calloc((size_t)LK_MAX(cap, 1), sizeof *s->mat);
    if (!s || !s->mat) {
        lk_powersgd_destroy(s);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate PowerSGD's matrices");
    }
    s->dev = s->math = m->dev, s->r = r, s->world = world;
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < m->layers[i]->nparams; j++) {
            const lk_param *p = &m->layers[i]->params[j];
            int n, c;
            if (p->offset < lo || p->offset >= hi || !as_matrix(p, r, &n, &c)) continue;
            s->mat[s->nmat++] = (lk_psgd_mat){p->offset, n, c, 0, 0, 0};
        }
    qsort(s->mat, (size_t)s->nmat, sizeof *s->mat, cmp_offset);
    for (int k = 0; k < s->nmat; k++) {
        lk_psgd_mat *x = &s->mat[k];
        x->p_at = s->p_floats, x->q_at = s->q_floats, x->e_at = s->e_floats;
        s->p_floats += (size_t)x->n * (size_t)r;
        s->q_floats += (size_t)x->m * (size_t)r;
        s->e_floats += (size_t)x->n * (size_t)x->m;
    }
    const size_t F = sizeof(float);
    size_t widest = 1;
    for (int k = 0; k < s->nmat; k++) widest = LK_MAX(widest, (size_t)s->mat[k].m);
    s->qt = lk_malloc(2 * widest * (size_t)r * F);
    s->owed = lk_calloc((size_t)LK_MAX(s->nmat, 1), 1);
    s->again = lk_calloc((size_t)LK_MAX(s->nmat, 1), sizeof *s->again);
    s->p = lk_dev_alloc(s->dev, LK_MAX(s->p_floats, 1) * F);
    s->q = lk_dev_alloc(s->dev, LK_MAX(s->q_floats, 1) * F);
    s->e = lk_dev_alloc(s->dev, LK_MAX(s->e_floats, 1) * F);
    if (!s->p || !s->q || !s->e || !s->qt || !s->owed || !s->again) {
        const double mb = (double)(s->p_floats + s->q_floats + s->e_floats) * F / 1e6;
        lk_powersgd_destroy(s);
        return LK_ERR(LK_ERR_NOMEM, "cannot allocate PowerSGD's state (%.1f MB) on %s", mb, m->dev->name);
    }
    lk_zero(s->dev, s->e, LK_MAX(s->e_floats, 1) * F);
    lk_status st = LK_OK;
    for (int k = 0; k < s->nmat && st == LK_OK; k++)
        st = lk_randn(s->dev, s->q + s->mat[k].q_at, (size_t)s->mat[k].m * (size_t)r, seed,
                      LK_PSGD_KEY | (uint64_t)k, 0);
    if (st != LK_OK) {
        lk_powersgd_destroy(s);
        return st;
    }
    *out = s;
    return LK_OK;
}

int lk_powersgd_find(const lk_powersgd *s, size_t offset, int *k)
{
    int lo = 0, hi = s->nmat - 1;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        if (s->mat[mid].offset == offset) {
            *k = mid;
            return 1;
        }
        if (s->mat[mid].offset < offset) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

void lk_powersgd_range(const lk_powersgd *s, int which, int k0, int k1, size_t *at, size_t *n)
{
    *at = *n = 0;
    if (k0 >= k1) return;
    const lk_psgd_mat *a = &s->mat[k0], *b = &s->mat[k1 - 1];
    const size_t r = (size_t)s->r;
    *at = which ? a->q_at : a->p_at;
    *n = (which ? b->q_at + (size_t)b->m * r : b->p_at + (size_t)b->n * r) - *at;
}

lk_status lk_powersgd_project(lk_powersgd *s, float *grads, int k0, int k1)
{
    for (int k = k0; k < k1; k++) {
        const lk_psgd_mat *x = &s->mat[k];
        float *M = grads + x->offset;
        LK_CHECK(lk_axpy(s->math, 1.0f, s->e + x->e_at, M, (size_t)x->n * (size_t)x->m));
        LK_CHECK(lk_gemm(s->math, 0, 0, x->n, s->r, x->m, 1.0f, M, x->m, s->q + x->q_at, s->r, 0.0f,
                         s->p + x->p_at, s->r));
    }
    return LK_OK;
}

lk_status lk_powersgd_back(lk_powersgd *s, const float *grads, int k0, int k1)
{
    for (int k = k0; k < k1; k++) {
        const lk_psgd_mat *x = &s->mat[k];
        LK_CHECK(lk_orthonormalize(s->math, s->p + x->p_at, x->n, s->r, 1));
        LK_CHECK(lk_gemm(s->math, 1, 0, x->m, s->r, x->n, 1.0f, grads + x->offset, x->m, s->p + x->p_at, s->r,
                         0.0f, s->q + x->q_at, s->r));
    }
    return LK_OK;
}

lk_status lk_powersgd_expand(lk_powersgd *s, float *grads, int k0, int k1)
{
    for (int k = k0; k < k1; k++) {
        const lk_psgd_mat *x = &s->mat[k];
        float *M = grads + x->offset, *e = s->e + x->e_at;
        const size_t nm = (size_t)x->n * (size_t)x->m;
        lk_copy_on_device(s->math, e, M, nm * sizeof(float));
        LK_CHECK(lk_gemm(s->math, 0, 1, x->n, x->m, s->r, 1.0f, s->p + x->p_at, s->r, s->q + x->q_at, s->r, 0.0f,
                         M, x->m));
        LK_CHECK(lk_axpy(s->math, -1.0f / (float)s->world, M, e, nm));
    }
    return LK_OK;
}

/* ---- on one host (powersgd.h) ----
 * Host memory (the shared gradient buffers are), with loops of their own instead of gemm
 * calls: products with r columns are a few operations per value read, as fast as the
 * passes over memory they ride on when fused into them, and the rows go in blocks that
 * stay in cache between a block's steps. Q is read transposed (qt, r x m), so that every
 * inner loop runs along a row (vectorised). */

/* process v->me's rows of an n-row matrix */
static void host_rows(int n, const lk_host_view *v, int *lo, int *hi)
{
    *lo = (int)((long long)n * v->me / v->nlocal);
    *hi = (int)((long long)n * (v->me + 1) / v->nlocal);
}

/* rows a block: 64 KiB of a matrix */
static int block_rows(int m) { return LK_MAX(1, 16384 / LK_MAX(m, 1)); }

/* qt (r x m) = q (m x r) transposed */
static void transpose(const float *q, size_t m, size_t r, float *qt)
{
    for (size_t j = 0; j < m; j++)
        for (size_t c = 0; c < r; c++) qt[c * m + j] = q[j * r + c];
}

/* p[c] = sum_j x[j] qt[c][j], c < r: four columns at a time, eight lanes each (independent
 * vector sums: a single one would wait on its own additions), added at the end */
static void row_times(const float *x, const float *qt, size_t m, size_t r, float *p)
{
    enum { L = 8, C = 4 };
    for (size_t c0 = 0; c0 < r; c0 += C) {
        const size_t nc = LK_MIN((size_t)C, r - c0);
        float acc[C][L] = {{0}};
        size_t j = 0;
        if (nc == C) {
            const float *y0 = qt + c0 * m, *y1 = y0 + m, *y2 = y1 + m, *y3 = y2 + m;
            for (; j + L <= m; j += L)
                for (int l = 0; l < L; l++) {
                    const float v = x[j + l];
                    acc[0][l] = fmaf(v, y0[j + l], acc[0][l]);
                    acc[1][l] = fmaf(v, y1[j + l], acc[1][l]);
                    acc[2][l] = fmaf(v, y2[j + l], acc[2][l]);
                    acc[3][l] = fmaf(v, y3[j + l], acc[3][l]);
                }
        }
        for (size_t c = 0; c < nc; c++) {
            const float *y = qt + (c0 + c) * m;
            float t = 0.0f;
            for (size_t i = j; i < m; i++) t = fmaf(x[i], y[i], t);
            for (int l = 0; l < L; l++) t += acc[c][l];
            p[c0 + c] = t;
        }
    }
}

/* a[j] (+)= sum_c p[c] qt[c][j]: a row of P Q^T (times sign, added when add) */
static void approx_row(float *a, const float *p, const float *qt, size_t m, size_t r, float sign, int add)
{
    size_t c = 0;
    for (; c + 4 <= r; c += 4) { /* four columns a pass over the row */
        const float w0 = sign * p[c], w1 = sign * p[c + 1], w2 = sign * p[c + 2], w3 = sign * p[c + 3];
        const float *y0 = qt + c * m, *y1 = y0 + m, *y2 = y1 + m, *y3 = y2 + m;
        if (c == 0 && !add)
            for (size_t j = 0; j < m; j++) a[j] = fmaf(w3, y3[j], fmaf(w2, y2[j], fmaf(w1, y1[j], w0 * y0[j])));
        else
            for (size_t j = 0; j < m; j++)
                a[j] = fmaf(w3, y3[j], fmaf(w2, y2[j], fmaf(w1, y1[j], fmaf(w0, y0[j], a[j]))));
    }
    if (c == 0 && !add && r > 0) {
        const float w = sign * p[0];
        for (size_t j = 0; j < m; j++) a[j] = w * qt[j];
        c = 1;
    }
    for (; c < r; c++) {
        const float w = sign * p[c], *y = qt + c * m;
        for (size_t j = 0; j < m; j++) a[j] = fmaf(w, y[j], a[j]);
    }
}

void lk_powersgd_host_settle(lk_powersgd *s, int k0, int k1)
{
    const size_t r = (size_t)s->r;
    for (int k = k0; k < k1; k++) {
        if (!s->owed[k]) continue;
        const lk_psgd_mat *x = &s->mat[k];
        const size_t m = (size_t)x->m;
        const lk_host_view v = {.me = s->owed_me, .nlocal = s->owed_nlocal};
        int lo, hi;
        host_rows(x->n, &v, &lo, &hi);
        transpose(s->q + x->q_at, m, r, s->qt);
        for (int i = lo; i < hi; i++)
            approx_row(s->e + x->e_at + (size_t)i * m, s->p + x->p_at + (size_t)i * r, s->qt, m, r, -1.0f, 1);
        s->owed[k] = 0;
    }
}

void lk_powersgd_host_gather(lk_powersgd *s, float *grads, int k, int me, int nlocal)
{
    lk_powersgd_host_settle(s, k, k + 1);
    const lk_psgd_mat *x = &s->mat[k];
    const lk_host_view v = {.me = me, .nlocal = nlocal};
    int lo, hi;
    host_rows(x->n, &v, &lo, &hi);
    const size_t m = (size_t)x->m;
    for (int part = 0; part < 2; part++) { /* rows [0, lo) and [hi, n): their nonzero values moved */
        const size_t from = part ? (size_t)hi * m : 0, to = part ? (size_t)x->n * m : (size_t)lo * m;
        float *e = s->e + x->e_at, *g = grads + x->offset;
        for (size_t j = from; j < to; j++)
            if (e[j] != 0.0f) g[j] += e[j], e[j] = 0.0f;
    }
}

/* acc[c][j] += sum_i p[i][c] e[i][j] over rows i < rows of e (m floats each) and p (r): four
 * rows a pass over acc */
static void add_rows_t(float *acc, const float *e, const float *p, int rows, size_t m, size_t r)
{
    int i = 0;
    for (; i + 4 <= rows; i += 4) {
        const float *e0 = e + (size_t)i * m, *e1 = e0 + m, *e2 = e1 + m, *e3 = e2 + m, *w = p + (size_t)i * r;
        for (size_t c = 0; c < r; c++) {
            const float w0 = w[c], w1 = w[r + c], w2 = w[2 * r + c], w3 = w[3 * r + c];
            float *y = acc + c * m;
            for (size_t j = 0; j < m; j++)
                y[j] = fmaf(w3, e3[j], fmaf(w2, e2[j], fmaf(w1, e1[j], fmaf(w0, e0[j], y[j]))));
        }
    }
    for (; i < rows; i++)
        for (size_t c = 0; c < r; c++) {
            const float w = p[(size_t)i * r + c], *x = e + (size_t)i * m;
            float *y = acc + c * m;
            for (size_t j = 0; j < m; j++) y[j] = fmaf(w, x[j], y[j]);
        }
}

/* out (m x r) = acc (r x m) transposed */
static void untranspose(const float *acc, size_t m, size_t r, float *out)
{
    for (size_t j = 0; j < m; j++)
        for (size_t c = 0; c < r; c++) out[j * r + c] = acc[c * m + j];
}

static lk_status host_project(lk_powersgd *s, int k, const lk_host_view *v, size_t base, size_t p_base,
                              size_t q_base)
{
    const lk_psgd_mat *x = &s->mat[k];
    const size_t m = (size_t)x->m, r = (size_t)s->r;
    int lo, hi;
    host_rows(x->n, v, &lo, &hi);
    float *qt = s->qt, *acc = s->qt + m * r;
    transpose(s->q + x->q_at, m, r, qt);
    memset(acc, 0, m * r * sizeof(float));
    float *p = v->shared + (x->p_at - p_base);
    const int owed = s->owed[k] && s->owed_me == v->me && s->owed_nlocal == v->nlocal;
    if (s->owed[k] && !owed) lk_powersgd_host_settle(s, k, k + 1); /* (rows cut otherwise: not seen) */
    const int step = block_rows(x->m);
    for (int i0 = lo; i0 < hi; i0 += step) { /* long runs over memory, then rows in cache */
        const int rows = LK_MIN(step, hi - i0);
        float *e = s->e + x->e_at + (size_t)i0 * m;
        const size_t at = x->offset - base + (size_t)i0 * m, len = (size_t)rows * m;
        for (int i = 0; owed && i < rows; i++) /* last step's M^ first: as settled, the same bits */
            approx_row(e + (size_t)i * m, s->p + x->p_at + (size_t)(i0 + i) * r, qt, m, r, -1.0f, 1);
        for (int q = 0; q < v->nlocal; q++) {
            const float *g = v->grads + (size_t)q * v->stride + at;
            for (size_t j = 0; j < len; j++) e[j] += g[j];
        }
        for (int i = 0; i < rows; i++) row_times(e + (size_t)i * m, qt, m, r, p + (size_t)(i0 + i) * r);
        add_rows_t(acc, e, p + (size_t)i0 * r, rows, m, r);
    }
    untranspose(acc, m, r, v->slots + (size_t)v->me * v->slot_stride + (x->q_at - q_base));
    s->owed[k] = 0;
    return LK_OK;
}

/* Q = (sum of the slots' parts at `at`), m x r, in process order */
static void sum_parts(const lk_host_view *v, size_t at, size_t mr, float *q)
{
    memcpy(q, v->slots + at, mr * sizeof(float));
    for (int o = 1; o < v->nlocal; o++) {
        const float *part = v->slots + (size_t)o * v->slot_stride + at;
        for (size_t j = 0; j < mr; j++) q[j] += part[j];
    }
}

/* M^ = P Q^T: this process's rows into every process's buffer; E owes them. Its sum of
 * squares (the same on every process) added to *sumsq: |P Q^T|^2 = sum over c, d of
 * (P^T P)_cd (Q^T Q)_cd, (n + m) r^2 operations instead of a pass over every n m value. */
static void expand_rows(lk_powersgd *s, int k, const lk_host_view *v, size_t base, double *sumsq)
{
    const lk_psgd_mat *x = &s->mat[k];
    const size_t m = (size_t)x->m, r = (size_t)s->r;
    const float *P = s->p + x->p_at, *Q = s->q + x->q_at;
    for (size_t c = 0; c < r; c++)
        for (size_t d = 0; d < r; d++) {
            double pp = 0.0, qq = 0.0;
            for (int i = 0; i < x->n; i++) pp += (double)P[(size_t)i * r + c] * P[(size_t)i * r + d];
            for (size_t j = 0; j < m; j++) qq += (double)Q[j * r + c] * Q[j * r + d];
            *sumsq += pp * qq;
        }
    transpose(s->q + x->q_at, m, r, s->qt);
    int lo, hi;
    host_rows(x->n, v, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const size_t at = x->offset - base + (size_t)i * m;
        float *a = v->grads + (size_t)v->me * v->stride + at;
        approx_row(a, s->p + x->p_at + (size_t)i * r, s->qt, m, r, 1.0f, 0);
        for (int o = 0; o < v->nlocal; o++)
            if (o != v->me) memcpy(v->grads + (size_t)o * v->stride + at, a, m * sizeof(float));
    }
    s->owed[k] = 1, s->owed_me = v->me, s->owed_nlocal = v->nlocal; /* E -= M^ in the next projection */
}

static lk_status host_finish(lk_powersgd *s, int k, const lk_host_view *v, size_t base, size_t p_base,
                             size_t q_base, size_t q_n, int *again, double *sumsq)
{
    const lk_psgd_mat *x = &s->mat[k];
    const size_t m = (size_t)x->m, r = (size_t)s->r;
    const float *p0 = v->shared + (x->p_at - p_base);
    float *p = s->p + x->p_at;
    memcpy(p, p0, (size_t)x->n * r * sizeof(float));
    LK_CHECK(lk_orthonormalize(s->math, p, x->n, s->r, 1));
    /* R = P^^T P0 (upper triangular: P0 = P R); Q = E^T P = (E^T P0) R^-1 where R is well conditioned */
    double R[LK_PSGD_HOST_R][LK_PSGD_HOST_R] = {{0}};
    int good = r <= LK_PSGD_HOST_R;
    for (size_t j = 0; good && j < r; j++) {
        double col = 0.0;
        for (int i = 0; i < x->n; i++) col += (double)p0[(size_t)i * r + j] * p0[(size_t)i * r + j];
        for (size_t c = 0; c <= j; c++) {
            double d = 0.0;
            for (int i = 0; i < x->n; i++) d += (double)p[(size_t)i * r + c] * p0[(size_t)i * r + j];
            R[c][j] = d;
        }
        good = isfinite(col) && R[j][j] > 1e-2 * sqrt(col);
    }
    *again = !good;
    if (!good) { /* this process's rows of E^T P, for host_expand */
        int lo, hi;
        host_rows(x->n, v, &lo, &hi);
        float *acc = s->qt + m * r;
        memset(acc, 0, m * r * sizeof(float));
        add_rows_t(acc, s->e + x->e_at + (size_t)lo * m, p + (size_t)lo * r, hi - lo, m, r);
        untranspose(acc, m, r, v->slots + (size_t)v->me * v->slot_stride + q_n + (x->q_at - q_base));
        return LK_OK;
    }
    float *q = s->q + x->q_at;
    sum_parts(v, x->q_at - q_base, m * r, q);
    for (size_t i = 0; i < m; i++) { /* q_i R = a_i, forward */
        float *row = q + i * r;
        for (size_t j = 0; j < r; j++) {
            double t = row[j];
            for (size_t c = 0; c < j; c++) t -= (double)row[c] * R[c][j];
            row[j] = (float)(t / R[j][j]);
        }
    }
    expand_rows(s, k, v, base, sumsq);
    return LK_OK;
}

static lk_status host_expand(lk_powersgd *s, int k, const lk_host_view *v, size_t base, size_t q_base,
                             size_t q_n, double *sumsq)
{
    const lk_psgd_mat *x = &s->mat[k];
    sum_parts(v, q_n + (x->q_at - q_base), (size_t)x->m * (size_t)s->r, s->q + x->q_at);
    expand_rows(s, k, v, base, sumsq);
    return LK_OK;
}

lk_status lk_powersgd_host_phase(lk_powersgd *s, int k0, int k1, lk_psgd_host *h, int phase, const lk_host_view *v,
                                 int *last)
{
    int again = 0;
    for (int k = k0; k < k1; k++) {
        if (phase == 0) {
            LK_CHECK(host_project(s, k, v, h->base, h->p_base, h->q_base));
        } else if (phase == 1) {
            LK_CHECK(host_finish(s, k, v, h->base, h->p_base, h->q_base, h->q_n, &s->again[k], &h->sumsq));
            again |= s->again[k];
        } else if (s->again[k]) {
            LK_CHECK(host_expand(s, k, v, h->base, h->q_base, h->q_n, &h->sumsq));
        }
    }
    *last = phase >= 2 || (phase == 1 && !again);
    return LK_OK;
}
