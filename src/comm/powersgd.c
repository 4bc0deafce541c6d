/* powersgd.c - PowerSGD's compression arithmetic (see powersgd.h). */
#include "powersgd.h"

#include <stdlib.h>

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
    s->p = lk_dev_alloc(s->dev, LK_MAX(s->p_floats, 1) * F);
    s->q = lk_dev_alloc(s->dev, LK_MAX(s->q_floats, 1) * F);
    s->e = lk_dev_alloc(s->dev, LK_MAX(s->e_floats, 1) * F);
    if (!s->p || !s->q || !s->e) {
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
