/* backend_cpu_norm.c - normalisation layers' arithmetic on the CPU: layer norm over
 * the last axis, row by row (statistics in double). */
#include <math.h>
#include <string.h>

#include "backend_cpu.h"

void lk_cpu_layernorm_forward(lk_device *d, const float *x, const float *w, const float *b,
                              float *y, float *mean, float *rstd, int rows, int dim, float eps)
{
    (void)d;
    LK_CPU_FOR((long)rows * dim > LK_CPU_PAR_MIN, r, rows, {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double s = 0.0;
        for (int j = 0; j < dim; j++) s += xr[j];
        const double mu = s / dim;
        double v = 0.0;
        for (int j = 0; j < dim; j++) v += (xr[j] - mu) * (xr[j] - mu);
        const float m = (float)mu, rs = (float)(1.0 / sqrt(v / dim + (double)eps));
        _Pragma("omp simd")
        for (int j = 0; j < dim; j++) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
        mean[r] = m;
        rstd[r] = rs;
    });
}

void lk_cpu_layernorm_backward(lk_device *d, const float *x, const float *w, const float *mean,
                               const float *rstd, const float *dy, float *dx, float *dw,
                               float *db, int rows, int dim, float beta)
{
    (void)d;
    if (beta == 0.0f) {
        memset(dw, 0, (size_t)dim * sizeof *dw);
        memset(db, 0, (size_t)dim * sizeof *db);
    }
    /* parameter gradients: serial over rows (they all add into dw, db) */
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
        const float m = mean[r], rs = rstd[r];
        _Pragma("omp simd")
        for (int j = 0; j < dim; j++) {
            dw[j] += g[j] * (xr[j] - m) * rs;
            db[j] += g[j];
        }
    }
    if (!dx) return;
    /* dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)) */
    LK_CPU_FOR((long)rows * dim > LK_CPU_PAR_MIN, r, rows, {
        const float *xr = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
        float *o = dx + (size_t)r * dim;
        const float m = mean[r], rs = rstd[r];
        float a = 0.0f, c = 0.0f;
        _Pragma("omp simd reduction(+ : a, c)")
        for (int j = 0; j < dim; j++) {
            float gw = g[j] * w[j];
            a += gw;
            c += gw * (xr[j] - m) * rs;
        }
        a /= (float)dim;
        c /= (float)dim;
        _Pragma("omp simd")
        for (int j = 0; j < dim; j++) o[j] = rs * (g[j] * w[j] - a - (xr[j] - m) * rs * c);
    });
}
