/* backend_cpu_seq.c - the CPU's sequence entries: the axis swap between batch-major
 * and time-major layouts, and the element-wise parts of the LSTM and GRU cells (the
 * matrix products around them are the layer's gemm calls). */
#include <string.h>

#include "backend_cpu.h"
#include "fastmath.h"
#include "rng.h"

void lk_cpu_transpose(lk_device *d, const float *x, float *y, int outer, int a, int b, int inner)
{
    (void)d;
    const size_t plane = (size_t)a * b * inner, row = (size_t)inner * sizeof(float);
    LK_CPU_FOR((long)outer * a * b * inner > LK_CPU_PAR_MIN, r, (long)outer * b, {
        const long o = r / b, j = r % b;
        const float *src = x + (size_t)o * plane + (size_t)j * inner;
        float *dst = y + (size_t)o * plane + (size_t)j * a * inner;
        for (int i = 0; i < a; i++) memcpy(dst + (size_t)i * inner, src + (size_t)i * b * inner, row);
    });
}

void lk_cpu_lstm_cell_forward(lk_device *d, int n, int h, float *g, const float *c_prev, float *c,
                              float *hout)
{
    (void)d;
    LK_CPU_FOR((long)n * h > LK_CPU_PAR_MIN / 8, r, n, {
        float *gi = g + (size_t)r * 4 * h, *gf = gi + h, *gg = gf + h, *go = gg + h;
        const float *cp = c_prev + (size_t)r * h;
        float *cr = c + (size_t)r * h, *hr = hout + (size_t)r * h;
        _Pragma("omp simd")
        for (int j = 0; j < h; j++) {
            float i = lk_sigmf(gi[j]), f = lk_sigmf(gf[j]), gv = lk_tanhf(gg[j]),
                  o = lk_sigmf(go[j]);
            float cv = f * cp[j] + i * gv;
            gi[j] = i, gf[j] = f, gg[j] = gv, go[j] = o;
            cr[j] = cv;
            hr[j] = o * lk_tanhf(cv);
        }
    });
}

void lk_cpu_lstm_cell_backward(lk_device *d, int n, int h, const float *g, const float *c_prev,
                               const float *c, const float *dh, const float *dh_out, float *dc,
                               float *dg)
{
    (void)d;
    LK_CPU_FOR((long)n * h > LK_CPU_PAR_MIN / 8, r, n, {
        const float *gi = g + (size_t)r * 4 * h, *gf = gi + h, *gg = gf + h, *go = gg + h;
        const size_t o_ = (size_t)r * h;
        float *di = dg + (size_t)r * 4 * h, *df = di + h, *dgg = df + h, *dout = dgg + h;
        _Pragma("omp simd")
        for (int j = 0; j < h; j++) {
            float dhv = dh[o_ + j] + (dh_out ? dh_out[o_ + j] : 0.0f);
            float tc = lk_tanhf(c[o_ + j]);
            float i = gi[j], f = gf[j], gv = gg[j], o = go[j];
            float dcv = dc[o_ + j] + dhv * o * (1.0f - tc * tc);
            dout[j] = dhv * tc * o * (1.0f - o);
            di[j] = dcv * gv * i * (1.0f - i);
            df[j] = dcv * c_prev[o_ + j] * f * (1.0f - f);
            dgg[j] = dcv * i * (1.0f - gv * gv);
            dc[o_ + j] = dcv * f;
        }
    });
}

void lk_cpu_gru_cell_forward(lk_device *d, int n, int h, float *gx, const float *gh,
                             const float *h_prev, float *hout, float *ghn)
{
    (void)d;
    LK_CPU_FOR((long)n * h > LK_CPU_PAR_MIN / 8, r, n, {
        float *xr = gx + (size_t)r * 3 * h, *xz = xr + h, *xn = xz + h;
        const float *hr = gh + (size_t)r * 3 * h, *hz = hr + h, *hn = hz + h;
        const size_t o_ = (size_t)r * h;
        _Pragma("omp simd")
        for (int j = 0; j < h; j++) {
            float rv = lk_sigmf(xr[j] + hr[j]), zv = lk_sigmf(xz[j] + hz[j]);
            float nv = lk_tanhf(xn[j] + rv * hn[j]);
            xr[j] = rv, xz[j] = zv, xn[j] = nv;
            ghn[o_ + j] = hn[j];
            hout[o_ + j] = (1.0f - zv) * nv + zv * h_prev[o_ + j];
        }
    });
}

void lk_cpu_gru_cell_backward(lk_device *d, int n, int h, const float *g, const float *ghn,
                              const float *h_prev, float *dh, const float *dh_out, float *dgx,
                              float *dgh)
{
    (void)d;
    LK_CPU_FOR((long)n * h > LK_CPU_PAR_MIN / 8, r, n, {
        const float *gr = g + (size_t)r * 3 * h, *gz = gr + h, *gn = gz + h;
        float *xr = dgx + (size_t)r * 3 * h, *xz = xr + h, *xn = xz + h;
        float *hr = dgh + (size_t)r * 3 * h, *hz = hr + h, *hn = hz + h;
        const size_t o_ = (size_t)r * h;
        _Pragma("omp simd")
        for (int j = 0; j < h; j++) {
            float dhv = dh[o_ + j] + (dh_out ? dh_out[o_ + j] : 0.0f);
            float rv = gr[j], zv = gz[j], nv = gn[j];
            float dan = dhv * (1.0f - zv) * (1.0f - nv * nv);
            float daz = dhv * (h_prev[o_ + j] - nv) * zv * (1.0f - zv);
            float dar = dan * ghn[o_ + j] * rv * (1.0f - rv);
            xr[j] = hr[j] = dar;
            xz[j] = hz[j] = daz;
            xn[j] = dan;
            hn[j] = dan * rv;
            dh[o_ + j] = dhv * zv;
        }
    });
}

void lk_cpu_softmax_causal_forward(lk_device *d, float *s, int rows, int t, float scale)
{
    (void)d;
    LK_CPU_FOR((long)rows * t > LK_CPU_PAR_MIN / 4, r, rows, {
        float *row = s + (size_t)r * t;
        const int keys = (int)(r % t) + 1;
        float mx = row[0];
        for (int j = 1; j < keys; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        _Pragma("omp simd reduction(+ : sum)")
        for (int j = 0; j < keys; j++) {
            float e = lk_expneg(scale * (row[j] - mx));
            row[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
        _Pragma("omp simd")
        for (int j = 0; j < keys; j++) row[j] *= inv;
        for (int j = keys; j < t; j++) row[j] = 0.0f;
    });
}

void lk_cpu_softmax_causal_backward(lk_device *d, const float *p, float *dp, int rows, int t,
                                    float scale)
{
    (void)d;
    LK_CPU_FOR((long)rows * t > LK_CPU_PAR_MIN / 4, r, rows, {
        const float *pr = p + (size_t)r * t;
        float *g = dp + (size_t)r * t;
        const int keys = (int)(r % t) + 1;
        float dot = 0.0f;
        _Pragma("omp simd reduction(+ : dot)")
        for (int j = 0; j < keys; j++) dot += pr[j] * g[j];
        _Pragma("omp simd")
        for (int j = 0; j < keys; j++) g[j] = scale * pr[j] * (g[j] - dot);
        for (int j = keys; j < t; j++) g[j] = 0.0f;
    });
}

void lk_cpu_embed_forward(lk_device *d, const float *idx, const float *w, float *y, int n, int dim)
{
    (void)d;
    LK_CPU_FOR((long)n * dim > LK_CPU_PAR_MIN, i, n,
               memcpy(y + (size_t)i * dim, w + (size_t)idx[i] * dim, (size_t)dim * sizeof(float)););
}

void lk_cpu_embed_backward(lk_device *d, const float *idx, const float *dy, float *dw, int n,
                           int dim)
{
    (void)d;
    for (int i = 0; i < n; i++) { /* serial: rows of the same token add into one place */
        float *row = dw + (size_t)idx[i] * dim;
        const float *g = dy + (size_t)i * dim;
        _Pragma("omp simd")
        for (int j = 0; j < dim; j++) row[j] += g[j];
    }
}

/* ---- the VAE's reparameterisation (its eps are regenerated, never stored) ---- */

void lk_cpu_reparam_forward(lk_device *d, const float *ml, float *z, int n, int zdim, int noise,
                            uint64_t seed, uint64_t key, uint64_t first, float *kl)
{
    (void)d;
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        const float *mu = ml + (size_t)r * 2 * zdim, *lv = mu + zdim;
        float *zr = z + (size_t)r * zdim;
        for (int j = 0; j < zdim; j++) {
            float e = noise ? lk_rng_normal(seed, LK_RNG_NOISE, key, first + (uint64_t)r * zdim + j) : 0.0f;
            zr[j] = mu[j] + expf(0.5f * lv[j]) * e;
            total += -0.5 * (1.0 + lv[j] - (double)mu[j] * mu[j] - exp((double)lv[j]));
        }
    }
    *kl = (float)(total / n);
}

void lk_cpu_reparam_backward(lk_device *d, const float *ml, const float *dz, float *dml, int n,
                             int zdim, uint64_t seed, uint64_t key, uint64_t first, float kl_scale)
{
    (void)d;
    for (int r = 0; r < n; r++) {
        const float *mu = ml + (size_t)r * 2 * zdim, *lv = mu + zdim, *g = dz + (size_t)r * zdim;
        float *dmu = dml + (size_t)r * 2 * zdim, *dlv = dmu + zdim;
        for (int j = 0; j < zdim; j++) {
            float e = lk_rng_normal(seed, LK_RNG_NOISE, key, first + (uint64_t)r * zdim + j);
            float sd = expf(0.5f * lv[j]);
            dmu[j] = g[j] + kl_scale * mu[j];
            dlv[j] = g[j] * e * 0.5f * sd + kl_scale * 0.5f * (sd * sd - 1.0f);
        }
    }
}
