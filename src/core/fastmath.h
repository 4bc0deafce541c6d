/* fastmath.h - exp, the logistic function and tanh for the CPU backend's loops, written
 * so that GCC vectorises them (glibc's expf/tanhf are scalar calls, and tanhf goes
 * through expm1f: most of an LSTM step's time). Accurate to a few float ulps.
 *   lk_expneg   e^x for x <= 0: Cody-Waite range reduction and Cephes' degree-6
 *               polynomial; below -87 it returns e^-87 (~1.6e-38) instead of going
 *               subnormal. Only a lower clamp: GCC does not vectorise a loop that
 *               clamps on both sides.
 *   lk_sigmf    1 / (1 + e^-x), from e^-|x| (no overflow on either side)
 *   lk_tanhf    Cephes' odd polynomial for |x| < 0.625, else (1 - t) / (1 + t) with
 *               t = e^-2|x|
 *   lk_erff     Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), for GELU */
#ifndef LK_FASTMATH_H
#define LK_FASTMATH_H

#include <math.h>
#include <stdint.h>

static inline float lk_expneg(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    union { /* 2^n; unsigned, so a NaN input (n becomes INT_MIN) shifts without UB */
        uint32_t i;
        float f;
    } s = {(uint32_t)((int32_t)n + 127) << 23};
    return p * s.f;
}

static inline float lk_sigmf(float x)
{
    float t = lk_expneg(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + t) : t / (1.0f + t);
}

static inline float lk_tanhf(float x)
{
    float a = fabsf(x), z = x * x;
    float small = fmaf(fmaf(fmaf(fmaf(fmaf(-5.70498872745e-3f, z, 2.06390887954e-2f), z,
                                      -5.37397155531e-2f), z, 1.33314422036e-1f), z,
                             -3.33332819422e-1f), z * x, x);
    float t = lk_expneg(-2.0f * a);
    float big = copysignf((1.0f - t) / (1.0f + t), x);
    return a < 0.625f ? small : big;
}

/* erf(x) given e = exp(-x^2) (GELU's gradient needs that exponential too) */
static inline float lk_erff_e(float x, float e)
{
    float a = fabsf(x), t = 1.0f / fmaf(0.3275911f, a, 1.0f);
    float p = fmaf(fmaf(fmaf(fmaf(1.061405429f, t, -1.453152027f), t, 1.421413741f), t,
                        -0.284496736f), t, 0.254829592f) * t;
    return copysignf(1.0f - p * e, x);
}

static inline float lk_erff(float x) { return lk_erff_e(x, lk_expneg(-x * x)); }

#endif
