/* rng.h - counter-based random numbers (Philox4x32-10).
 *
 * Every random number is a pure function of (seed, stream, a, index): there is no
 * generator state to carry or to keep in sync. Initialisation, dropout masks and
 * shuffling therefore agree on every rank and every device. The functions are
 * header-only and marked LK_HD so CUDA kernels use exactly the same code. */
#ifndef LK_RNG_H
#define LK_RNG_H

#include <stdint.h>
#include <math.h>

#if defined(__CUDACC__)
#define LK_HD __host__ __device__ __forceinline__
#else
#define LK_HD static inline
#endif

/* Streams: one per purpose, so e.g. dropout never reuses init numbers. */
enum {
    LK_RNG_INIT = 1,    /* a = parameter tensor id,    index = element */
    LK_RNG_DROPOUT = 2, /* a = (step << 16) | layer,   index = element */
    LK_RNG_SHUFFLE = 3, /* a = epoch,                  index = swap position */
    LK_RNG_SAMPLE = 4,  /* a = generation step,        index = draw */
    LK_RNG_TEST = 5,    /* tests and synthetic data */
    LK_RNG_NOISE = 6,   /* a = (step << 16) | layer,   index = element (VAE, GAN latents) */
    LK_RNG_ROUND = 7,   /* a = step,                   index = element (stochastic rounding) */
    LK_RNG_PARTITION = 8, /* a = what is dealt (partition.c), index = draw */
    LK_RNG_POISSON = 9,   /* a = step,                   index = sample (DP-SGD's batches) */
    LK_RNG_CLIENTS = 10,  /* a = round,                  index = swap position (federated clients) */
};

LK_HD void lk_philox4x32(uint32_t ctr[4], uint32_t key[2])
{
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t c0 = hi1 ^ ctr[1] ^ key[0];
        uint32_t c2 = hi0 ^ ctr[3] ^ key[1];
        ctr[0] = c0;
        ctr[1] = lo1;
        ctr[2] = c2;
        ctr[3] = lo0;
        key[0] += 0x9E3779B9u;
        key[1] += 0xBB67AE85u;
    }
}

/* Four 32-bit words for counter block `block` of (seed, stream, a). */
LK_HD void lk_rng_block(uint64_t seed, uint32_t stream, uint64_t a, uint64_t block, uint32_t out[4])
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32) ^ (stream * 0x85EBCA6Bu)};
    out[0] = (uint32_t)block;
    out[1] = (uint32_t)(block >> 32);
    out[2] = (uint32_t)a;
    out[3] = (uint32_t)(a >> 32);
    lk_philox4x32(out, key);
}

LK_HD uint32_t lk_rng_u32(uint64_t seed, uint32_t stream, uint64_t a, uint64_t index)
{
    uint32_t w[4];
    lk_rng_block(seed, stream, a, index >> 2, w);
    return w[index & 3];
}

/* Uniform in [0, 1) with 24 random bits. */
LK_HD float lk_rng_uniform(uint64_t seed, uint32_t stream, uint64_t a, uint64_t index)
{
    return (float)(lk_rng_u32(seed, stream, a, index) >> 8) * (1.0f / 16777216.0f);
}

/* Standard normal by Box-Muller over one counter block. */
LK_HD float lk_rng_normal(uint64_t seed, uint32_t stream, uint64_t a, uint64_t index)
{
    uint32_t w[4];
    lk_rng_block(seed, stream, a, index, w);
    float u1 = ((float)(w[0] >> 8) + 1.0f) * (1.0f / 16777217.0f); /* (0, 1] */
    float u2 = (float)(w[1] >> 8) * (1.0f / 16777216.0f);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

/* Uniform integer in [0, n) (n > 0), by 64-bit multiply-shift. */
LK_HD uint32_t lk_rng_below(uint64_t seed, uint32_t stream, uint64_t a, uint64_t index, uint32_t n)
{
    return (uint32_t)(((uint64_t)lk_rng_u32(seed, stream, a, index) * n) >> 32);
}

#endif
