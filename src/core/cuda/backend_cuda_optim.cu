/* backend_cuda_optim.cu - one fused kernel per optimizer over the flat buffers, with
 * the CPU's (and PyTorch's) update rules; the bias corrections are computed on the
 * host in double, as there. */
#include "backend_cuda.h"

#include <math.h>

extern "C" {
#include "../bf16.h"
}

typedef struct {
    int kind;
    float lr, gs, wd, l1, mom, b1, b2, eps, alpha, step, bc2_sqrt, decay;
} optim_args;

/* with w16, each new weight is also rounded into the bf16 working copy, as r says; skip
 * (a device flag, or NULL): the step check dropped the step, nothing changes */
__global__ void k_optim(optim_args a, float *w, const float *g, float *s1, float *s2, uint16_t *w16,
                        lk_round r, const float *skip, size_t n)
{
    if (skip && *skip != 0.0f) return;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float wi = w[i];
        /* the gradient the rule sees: scaled, plus L1 and coupled L2 terms */
        const float gi = g[i] * a.gs + a.wd * wi + a.l1 * (float)((wi > 0.0f) - (wi < 0.0f));
        switch (a.kind) {
        case LK_OPT_SGD: w[i] = wi - a.lr * gi; break;
        case LK_OPT_MOMENTUM: {
            const float b = a.mom * s1[i] + gi;
            s1[i] = b;
            w[i] = wi - a.lr * b;
            break;
        }
        case LK_OPT_NESTEROV: {
            const float b = a.mom * s1[i] + gi;
            s1[i] = b;
            w[i] = wi - a.lr * (gi + a.mom * b);
            break;
        }
        case LK_OPT_ADAM:
        case LK_OPT_ADAMW: {
            const float m = a.b1 * s1[i] + (1.0f - a.b1) * gi;
            const float v = a.b2 * s2[i] + (1.0f - a.b2) * gi * gi;
            s1[i] = m;
            s2[i] = v;
            w[i] = wi * a.decay - a.step * m / (sqrtf(v) / a.bc2_sqrt + a.eps);
            break;
        }
        case LK_OPT_RMSPROP: {
            const float v = a.alpha * s1[i] + (1.0f - a.alpha) * gi * gi;
            s1[i] = v;
            const float u = gi / (sqrtf(v) + a.eps) + a.mom * s2[i]; /* mom = 0: plain RMSprop */
            s2[i] = u;
            w[i] = wi - a.lr * u;
            break;
        }
        case LK_OPT_ADAGRAD: {
            const float s = s1[i] + gi * gi;
            s1[i] = s;
            w[i] = wi - a.lr * gi / (sqrtf(s) + a.eps);
            break;
        }
        }
        if (w16) w16[i] = lk_bf16_round(w[i], r.stochastic, r.seed, r.key, r.first + i);
    }
}

/* the step check's phase (guard_rule.h): one thread, on the stream, so the verdict is in
 * device memory before the optimizer's kernel reads it, and the host never waits */
__global__ void k_guard(lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc, float samples)
{
    lk_guard_apply(g, phase, c, step, loss_acc, samples);
}

void lk_cuda_guard(lk_device *d, lk_guard_state *g, int phase, lk_guard_cfg c, long long step, float *loss_acc,
                   float samples)
{
    lk_cuda *cu = lk_cuda_of(d);
    k_guard<<<1, 1, 0, cu->stream>>>(g, phase, c, step, loss_acc, samples);
    LK_LAUNCHED(cu);
}

void lk_cuda_optim_update(lk_device *d, const lk_optim_hparams *hp, float *w, const float *g,
                          float *s1, float *s2, uint16_t *w16, size_t n)
{
    lk_cuda *c = lk_cuda_of(d);
    if (!n) return;
    optim_args a;
    a.kind = (int)hp->kind;
    a.lr = hp->lr;
    a.gs = hp->grad_scale;
    a.wd = hp->kind == LK_OPT_ADAMW ? 0.0f : hp->weight_decay;
    a.l1 = hp->l1;
    a.mom = hp->momentum;
    a.b1 = hp->beta1;
    a.b2 = hp->beta2;
    a.eps = hp->eps;
    a.alpha = hp->alpha;
    a.step = 0.0f;
    a.bc2_sqrt = 1.0f;
    a.decay = 1.0f;
    if (hp->kind == LK_OPT_ADAM || hp->kind == LK_OPT_ADAMW) {
        const double bc1 = 1.0 - pow((double)hp->beta1, (double)hp->step);
        a.bc2_sqrt = (float)sqrt(1.0 - pow((double)hp->beta2, (double)hp->step));
        a.step = hp->lr / (float)bc1;
        if (hp->kind == LK_OPT_ADAMW) a.decay = 1.0f - hp->lr * hp->weight_decay;
    }
    k_optim<<<lk_cuda_blocks(c, n), LK_CUDA_THREADS, 0, c->stream>>>(a, w, g, s1, s2, w16, hp->round, hp->skip, n);
    LK_LAUNCHED(c);
}
