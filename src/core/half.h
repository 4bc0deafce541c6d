/* half.h - float32 <-> IEEE binary16 (fp16) conversions, the same on the host and in CUDA
 * kernels: 5 exponent bits (largest finite 65504, subnormals down to 2^-24), 10 of mantissa.
 * The gradient wire of --grad-compress fp16 (comm: sums of 16-bit parts). */
#ifndef LK_HALF_H
#define LK_HALF_H

#include "bf16.h"

/* Round to nearest, ties to even: beyond 65504 (from 65520 on) to infinity, below 2^-14 to
 * a subnormal, below 2^-25 (and at it, a tie to even) to zero; a NaN stays a (quiet) NaN.
 * _soft: in integer arithmetic (CUDA kernels, and CPUs without F16C); lk_f16_rne and
 * lk_f16_to_f32 use the CPU's F16C conversions where the build targets them (x86-64-v3:
 * the same values, 3-4x faster here). */
LK_HD uint16_t lk_f16_rne_soft(float f)
{
    lk_f32_bits v;
    v.f = f;
    const uint32_t sign = (v.u >> 16) & 0x8000u, a = v.u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* a normal half: the exponent rebiased (127 - 15), 13 bits dropped */
        const uint32_t m = a - 0x38000000u;
        return (uint16_t)(sign | ((m + 0xfffu + ((m >> 13) & 1u)) >> 13));
    }
    const uint32_t e = a >> 23; /* a subnormal half: k units of 2^-24, k = mantissa >> (126 - e) */
    if (e < 102) return (uint16_t)sign;
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
    const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    uint32_t k = mant >> shift;
    k += rem > half || (rem == half && (k & 1u));
    return (uint16_t)(sign | k);
}

LK_HD float lk_f16_to_f32_soft(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    lk_f32_bits v;
    if (e == 0x1fu) {
        v.u = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        v.u = sign | ((e + 112u) << 23) | (m << 13);
    } else { /* zero or subnormal: m x 2^-24 */
        v.f = (float)m * 5.9604644775390625e-8f;
        v.u |= sign;
    }
    return v.f;
}

#if defined(__F16C__) && !defined(__CUDACC__)
#include <immintrin.h>
static inline uint16_t lk_f16_rne(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
static inline float lk_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
#else
LK_HD uint16_t lk_f16_rne(float f) { return lk_f16_rne_soft(f); }
LK_HD float lk_f16_to_f32(uint16_t h) { return lk_f16_to_f32_soft(h); }
#endif

#endif
