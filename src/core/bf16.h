/* bf16.h - float32 <-> bf16 conversions, the same on the host and in CUDA kernels.
 *
 * bf16 is the upper 16 bits of a float32: its exponent range, 8 bits of mantissa. */
#ifndef LK_BF16_H
#define LK_BF16_H

#include "rng.h"

typedef union {
    float f;
    uint32_t u;
} lk_f32_bits;

LK_HD float lk_bf16_to_f32(uint16_t h)
{
    lk_f32_bits v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

/* Round to nearest, ties to even; a NaN stays a (quiet) NaN. */
LK_HD uint16_t lk_bf16_rne(float f)
{
    lk_f32_bits v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

/* Stochastic rounding with 16 random bits r: up with probability (the dropped bits) /
 * 2^16, so the expected value is f. Infinities and NaNs round to nearest. */
LK_HD uint16_t lk_bf16_sr(float f, uint32_t r)
{
    lk_f32_bits v;
    v.f = f;
    if ((v.u & 0x7f800000u) == 0x7f800000u) return lk_bf16_rne(f);
    return (uint16_t)((v.u + (r & 0xffffu)) >> 16);
}

/* Element i of a cast as r says (see lk_round in device.h). */
LK_HD uint16_t lk_bf16_round(float f, int stochastic, uint64_t seed, uint64_t key, uint64_t index)
{
    return stochastic ? lk_bf16_sr(f, lk_rng_u32(seed, LK_RNG_ROUND, key, index)) : lk_bf16_rne(f);
}

#endif
