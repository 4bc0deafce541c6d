/* backend_cpu_norm.c - normalisation layers' arithmetic on the CPU: layer norm over
 * the last axis, row by row, and batch norm per channel (statistics in double). */
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

void lk_cpu_bn_sums(lk_device *d, const float *x, const float *dy, const float *mean,
                    const float *rstd, int n, int c, int inner, float *out)
{
    (void)d;
    LK_CPU_FOR((long)n * c * inner > LK_CPU_PAR_MIN, j, c, {
        double s0 = 0.0, s1 = 0.0;
        for (int o = 0; o < n; o++) {
            const float *xp = x + ((size_t)o * c + j) * inner;
            if (!dy) {
                for (int i = 0; i < inner; i++) s0 += xp[i], s1 += (double)xp[i] * xp[i];
            } else {
                const float *g = dy + ((size_t)o * c + j) * inner, m = mean[j], r = rstd[j];
                for (int i = 0; i < inner; i++) s0 += g[i], s1 += (double)g[i] * (xp[i] - m) * r;
            }
        }
        out[j] = (float)s0;
        out[c + j] = (float)s1;
    });
    out[2 * c] = (float)((double)n * inner);
}

void lk_cpu_bn_stats(lk_device *d, const float *sums, int c, float eps, float momentum,
                     float *mean, float *rstd, float *run_mean, float *run_var, float *tracked)
{
    (void)d;
    if (!sums) { /* evaluation: the running statistics */
        for (int j = 0; j < c; j++) {
            mean[j] = run_mean[j];
            rstd[j] = (float)(1.0 / sqrt((double)run_var[j] + eps));
        }
        return;
    }
    const double cnt = sums[2 * c];
    for (int j = 0; j < c; j++) {
        double m = sums[j] / cnt, v = fmax(sums[c + j] / cnt - m * m, 0.0);
        mean[j] = (float)m;
        rstd[j] = (float)(1.0 / sqrt(v + eps));
        if (run_mean) {
            run_mean[j] = (float)((1.0 - momentum) * run_mean[j] + momentum * m);
            run_var[j] = (float)((1.0 - momentum) * run_var[j] + momentum * v * cnt / fmax(cnt - 1.0, 1.0));
        }
    }
    if (run_mean) *tracked += 1.0f;
}

void lk_cpu_bn_forward(lk_device *d, const float *x, const float *mean, const float *rstd,
                       const float *w, const float *b, float *y, int n, int c, int inner)
{
    (void)d;
    LK_CPU_FOR((long)n * c * inner > LK_CPU_PAR_MIN, r, (long)n * c, {
        const int j = (int)(r % c);
        const float sc = rstd[j] * w[j], sh = b[j] - mean[j] * sc;
        const float *xp = x + (size_t)r * inner;
        float *yp = y + (size_t)r * inner;
        _Pragma("omp simd")
        for (int i = 0; i < inner; i++) yp[i] = xp[i] * sc + sh;
    });
}

void lk_cpu_bn_backward(lk_device *d, const float *x, const float *dy, const float *mean,
                        const float *rstd, const float *w, const float *gsums, float *dx, int n,
                        int c, int inner)
{
    (void)d;
    const float cnt = gsums[2 * c];
    LK_CPU_FOR((long)n * c * inner > LK_CPU_PAR_MIN, r, (long)n * c, {
        const int j = (int)(r % c);
        const float m = mean[j], rs = rstd[j], k = w[j] * rs;
        const float mdy = gsums[j] / cnt, mdx = gsums[c + j] / cnt;
        const float *xp = x + (size_t)r * inner, *g = dy + (size_t)r * inner;
        float *o = dx + (size_t)r * inner;
        _Pragma("omp simd")
        for (int i = 0; i < inner; i++) o[i] = k * (g[i] - mdy - (xp[i] - m) * rs * mdx);
    });
}
