/* backend_cpu_optim.c - one fused pass per optimizer over the flat buffers, with
 * PyTorch's update rules (torch.optim, default flags). */
#include <math.h>

#include "backend_cpu.h"
#include "half.h"

/* The rules' loops, each with one store of the new weight: STORE(i, v) writes w[i] (and
 * its bf16 rounding to nearest even into w16 when the pass keeps the working copy: the
 * same loop, while w[i] is in a register). */
#define RULES(STORE)                                                                           \
    switch (hp->kind) {                                                                        \
    case LK_OPT_SGD:                                                                           \
        LK_CPU_FOR_SIMD(par, i, ln, STORE(i, w[i] - lr * GRAD(i)););                           \
        break;                                                                                 \
    case LK_OPT_MOMENTUM:                                                                      \
        LK_CPU_FOR_SIMD(par, i, ln, {                                                          \
            float b = mom * s1[i] + GRAD(i);                                                   \
            s1[i] = b;                                                                         \
            STORE(i, w[i] - lr * b);                                                           \
        });                                                                                    \
        break;                                                                                 \
    case LK_OPT_NESTEROV:                                                                      \
        LK_CPU_FOR_SIMD(par, i, ln, {                                                          \
            float gi = GRAD(i);                                                                \
            float b = mom * s1[i] + gi;                                                        \
            s1[i] = b;                                                                         \
            STORE(i, w[i] - lr * (gi + mom * b));                                              \
        });                                                                                    \
        break;                                                                                 \
    case LK_OPT_ADAM:                                                                          \
    case LK_OPT_ADAMW:                                                                         \
        LK_CPU_FOR_SIMD(par, i, ln, {                                                          \
            float gi = GRAD(i);                                                                \
            float m = b1 * s1[i] + (1.0f - b1) * gi;                                           \
            float v = b2 * s2[i] + (1.0f - b2) * gi * gi;                                      \
            s1[i] = m;                                                                         \
            s2[i] = v;                                                                         \
            STORE(i, w[i] * decay - step * m / (sqrtf(v) * inv_bc2_sqrt + eps));               \
        });                                                                                    \
        break;                                                                                 \
    case LK_OPT_RMSPROP:                                                                       \
        LK_CPU_FOR_SIMD(par, i, ln, {                                                          \
            float gi = GRAD(i);                                                                \
            float v = alpha * s1[i] + (1.0f - alpha) * gi * gi;                                \
            s1[i] = v;                                                                         \
            float u = gi / (sqrtf(v) + eps) + mom * s2[i]; /* mom = 0: plain RMSprop */        \
            s2[i] = u;                                                                         \
            STORE(i, w[i] - lr * u);                                                           \
        });                                                                                    \
        break;                                                                                 \
    case LK_OPT_ADAGRAD:                                                                       \
        LK_CPU_FOR_SIMD(par, i, ln, {                                                          \
            float gi = GRAD(i);                                                                \
            float sum = s1[i] + gi * gi;                                                       \
            s1[i] = sum;                                                                       \
            STORE(i, w[i] - lr * gi / (sqrtf(sum) + eps));                                     \
        });                                                                                    \
        break;                                                                                 \
    }

void lk_cpu_guard(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc,
                  float samples)
{
    (void)d;
    lk_guard_apply(g, phase, c, step, loss_acc, samples);
}

void lk_cpu_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                         float *s1, float *s2, uint16_t *w16, size_t n)
{
    if (hp->skip && *hp->skip != 0.0f) return; /* the step check dropped the step */
    const long ln = (long)n;
    const float lr = hp->lr, gs = hp->grad_scale, l1 = hp->l1, mom = hp->momentum;
    const float wd = hp->kind == LK_OPT_ADAMW ? 0.0f : hp->weight_decay;
    const int par = ln > LK_CPU_PAR_MIN;
    /* Adam: in double, as PyTorch (1 - 0.999^t in float loses ~4 digits); PyTorch divides by
     * sqrt(bias correction 2): one division less here (a multiply by its inverse, within an
     * ulp) in a loop that is near memory speed */
    const int adam = hp->kind == LK_OPT_ADAM || hp->kind == LK_OPT_ADAMW;
    const float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps, alpha = hp->alpha;
    const float step = adam ? lr / (float)(1.0 - pow(b1, (double)hp->step)) : 0.0f;
    const float inv_bc2_sqrt = adam ? (float)(1.0 / sqrt(1.0 - pow(b2, (double)hp->step))) : 1.0f;
    const float decay = hp->kind == LK_OPT_ADAMW ? 1.0f - lr * hp->weight_decay : 1.0f;
/* the gradient the rule sees: scaled, plus L1 and coupled L2 terms (branch-free so every
 * loop vectorises; the extra terms are free in a memory-bound loop) */
#define GRAD(i) (g[i] * gs + wd * w[i] + l1 * (float)((w[i] > 0.0f) - (w[i] < 0.0f)))
#define PLAIN(i, v) w[i] = (v)
#define WITH_COPY(i, v)                    \
    do {                                   \
        const float nw_ = (v);             \
        w[i] = nw_;                        \
        w16[i] = lk_bf16_rne(nw_);         \
    } while (0)
    if (w16 && !hp->round.stochastic) {
        RULES(WITH_COPY)
    } else {
        RULES(PLAIN)
        if (w16) lk_cpu_cast_bf16(d, w, w16, n, &hp->round); /* its own pass: the draws come in
                                                                blocks of four */
    }
#undef GRAD
#undef PLAIN
#undef WITH_COPY
}
#undef RULES

void lk_cpu_widen_bf16(lk_device *d, const uint16_t *x, float *y, size_t n)
{
    (void)d;
    LK_CPU_FOR_SIMD((long)n > LK_CPU_PAR_MIN, i, (long)n, y[i] = lk_bf16_to_f32(x[i]););
}

void lk_cpu_pack16(lk_device *d, lk_dtype t, const float *x, float scale, uint16_t *y, size_t n)
{
    (void)d;
    const long ln = (long)n;
    if (t == LK_F16) LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = lk_f16_rne(x[i] * scale););
    else LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = lk_bf16_rne(x[i] * scale););
}

void lk_cpu_unpack16(lk_device *d, lk_dtype t, const uint16_t *x, float scale, float *y, size_t n)
{
    (void)d;
    const long ln = (long)n;
    if (t == LK_F16) LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = lk_f16_to_f32(x[i]) * scale;);
    else LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = lk_bf16_to_f32(x[i]) * scale;);
}

/* The bf16 working copy: round to nearest even, or stochastically from the counter-based
 * stream (one block of four draws per four elements). */
void lk_cpu_cast_bf16(lk_device *d, const float *x, uint16_t *y, size_t n, const lk_round *r)
{
    (void)d;
    const long ln = (long)n;
    if (r->skip && *r->skip != 0.0f) return;
    if (!r->stochastic) {
        LK_CPU_FOR_SIMD(ln > LK_CPU_PAR_MIN, i, ln, y[i] = lk_bf16_rne(x[i]););
        return;
    }
    const uint64_t first = r->first, seed = r->seed, key = r->key;
    /* blocks of four elements at global indices 4j.. share one Philox block */
    const long b0 = (long)(first >> 2), b1 = (long)((first + n + 3) >> 2);
    LK_CPU_FOR(ln > LK_CPU_PAR_MIN / 8, j, b1 - b0, {
        uint32_t w[4];
        lk_rng_block(seed, LK_RNG_ROUND, key, (uint64_t)(b0 + j), w);
        for (int q = 0; q < 4; q++) {
            const uint64_t gi = ((uint64_t)(b0 + j) << 2) + (uint64_t)q;
            if (gi < first || gi >= first + n) continue;
            y[gi - first] = lk_bf16_sr(x[gi - first], w[q]);
        }
    });
}
