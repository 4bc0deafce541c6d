/* test_rng.c - the counter-based generator: Philox4x32-10 known answers,
 * reproducibility, independence of streams, and the distributions. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#define DRAWS 100000

/* Random123's kat_vectors for philox4x32_10 (counter, key -> output). */
static void test_philox_known_answers(void **state)
{
    (void)state;
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
         {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
         {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t k = 0; k < sizeof kat / sizeof *kat; k++) {
        uint32_t ctr[4], key[2];
        memcpy(ctr, kat[k].ctr, sizeof ctr);
        memcpy(key, kat[k].key, sizeof key); /* lk_philox4x32 advances the key in place */
        lk_philox4x32(ctr, key);
        for (int i = 0; i < 4; i++)
            if (ctr[i] != kat[k].out[i])
                fail_msg("vector %zu word %d: got 0x%08x, expected 0x%08x", k, i, ctr[i],
                         kat[k].out[i]);
    }
}

/* Pure functions: the same arguments always give the same numbers, and u32 is the
 * (index & 3)-th word of block index >> 2 (the layout the CUDA kernels rely on). */
static void test_reproducible(void **state)
{
    (void)state;
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t seed = 0x123456789abcdefull, a = i * 7919u;
        assert_int_equal(lk_rng_u32(seed, LK_RNG_INIT, a, i), lk_rng_u32(seed, LK_RNG_INIT, a, i));
        float u = lk_rng_uniform(seed, LK_RNG_DROPOUT, a, i);
        assert_true(u == lk_rng_uniform(seed, LK_RNG_DROPOUT, a, i));
        float n = lk_rng_normal(seed, LK_RNG_TEST, a, i);
        assert_true(n == lk_rng_normal(seed, LK_RNG_TEST, a, i));
        assert_int_equal(lk_rng_below(seed, LK_RNG_SHUFFLE, a, i, 1000),
                         lk_rng_below(seed, LK_RNG_SHUFFLE, a, i, 1000));
        uint32_t w[4];
        lk_rng_block(seed, LK_RNG_INIT, a, i >> 2, w);
        assert_int_equal(lk_rng_u32(seed, LK_RNG_INIT, a, i), w[i & 3]);
    }
    /* the documented key/counter layout, pinned so that initialisation and dropout
     * masks (and so saved runs) do not silently change: key = (seed lo, seed hi ^
     * stream * 0x85EBCA6B), counter = (block lo, block hi, a lo, a hi) */
    const uint64_t seed = 0x0000002a0000002bull, a = 0x0000000500000006ull, block = 0x700000009ull;
    uint32_t w[4], ctr[4] = {9, 7, 6, 5}, key[2] = {0x2bu, 0x2au ^ (LK_RNG_INIT * 0x85EBCA6Bu)};
    lk_rng_block(seed, LK_RNG_INIT, a, block, w);
    lk_philox4x32(ctr, key);
    assert_memory_equal(w, ctr, sizeof w);
}

/* Fraction of positions where two generators agree (expected ~2^-32 for u32). */
static int agreements(uint64_t s1, uint32_t st1, uint64_t a1, uint64_t s2, uint32_t st2,
                      uint64_t a2, uint64_t index_offset)
{
    int same = 0;
    for (uint64_t i = 0; i < 4096; i++)
        same += lk_rng_u32(s1, st1, a1, i) == lk_rng_u32(s2, st2, a2, i + index_offset);
    return same;
}

static void test_independent(void **state)
{
    (void)state;
    const uint64_t s = 1234;
    assert_true(agreements(s, LK_RNG_INIT, 5, s, LK_RNG_INIT, 5, 0) == 4096); /* sanity */
    assert_true(agreements(s, LK_RNG_INIT, 5, s, LK_RNG_DROPOUT, 5, 0) <= 1);  /* stream */
    assert_true(agreements(s, LK_RNG_INIT, 5, s, LK_RNG_INIT, 6, 0) <= 1);     /* a */
    assert_true(agreements(s, LK_RNG_INIT, 5, s + 1, LK_RNG_INIT, 5, 0) <= 1); /* seed */
    assert_true(agreements(s, LK_RNG_INIT, 5, s, LK_RNG_INIT, 5, 1) <= 1);     /* index */
    /* the high halves of seed and a take part too */
    assert_true(agreements(s, LK_RNG_INIT, 5, s | (1ull << 40), LK_RNG_INIT, 5, 0) <= 1);
    assert_true(agreements(s, LK_RNG_INIT, 5, s, LK_RNG_INIT, 5 | (1ull << 40), 0) <= 1);
    /* dropout keys are (step << 16) | layer: neighbouring steps and layers differ */
    assert_true(agreements(s, LK_RNG_DROPOUT, (7ull << 16) | 2, s, LK_RNG_DROPOUT, (8ull << 16) | 2,
                           0) <= 1);
    assert_true(agreements(s, LK_RNG_DROPOUT, (7ull << 16) | 2, s, LK_RNG_DROPOUT, (7ull << 16) | 3,
                           0) <= 1);
    /* far-apart indices (block counter high word) */
    assert_true(agreements(s, LK_RNG_TEST, 0, s, LK_RNG_TEST, 0, 1ull << 34) <= 1);
    /* normals of neighbouring indices are different numbers */
    int same = 0;
    for (uint64_t i = 0; i < 4096; i++)
        same += lk_rng_normal(s, LK_RNG_TEST, 0, i) == lk_rng_normal(s, LK_RNG_TEST, 0, i + 1);
    assert_true(same <= 1);
}

static void test_uniform(void **state)
{
    (void)state;
    double sum = 0.0, sq = 0.0, lag = 0.0, prev = 0.5;
    int bins[10] = {0};
    for (uint64_t i = 0; i < DRAWS; i++) {
        float u = lk_rng_uniform(99, LK_RNG_TEST, 3, i);
        if (!(u >= 0.0f && u < 1.0f)) fail_msg("uniform draw %llu = %.9g outside [0, 1)",
                                               (unsigned long long)i, (double)u);
        sum += u;
        sq += (double)u * u;
        lag += (u - 0.5) * (prev - 0.5);
        prev = u;
        bins[(int)(u * 10.0f)]++;
    }
    double mean = sum / DRAWS, var = sq / DRAWS - mean * mean;
    print_message("  uniform: mean %.5f var %.5f (1/12 = %.5f)\n", mean, var, 1.0 / 12.0);
    /* sd of the mean is 0.00091, of the variance ~0.00024: bounds are ~5 sd */
    assert_true(fabs(mean - 0.5) < 0.005);
    assert_true(fabs(var - 1.0 / 12.0) < 0.0015);
    assert_true(fabs(lag / DRAWS) < 0.0015); /* lag-1 covariance, sd ~0.00026 */
    for (int b = 0; b < 10; b++) assert_true(abs(bins[b] - DRAWS / 10) < 600); /* sd ~95 */
    /* every bit of u32 is a fair coin */
    for (int bit = 0; bit < 32; bit++) {
        int ones = 0;
        for (uint64_t i = 0; i < 20000; i++) ones += (lk_rng_u32(7, LK_RNG_TEST, 0, i) >> bit) & 1;
        if (abs(ones - 10000) > 500) fail_msg("bit %d set %d times in 20000", bit, ones); /* 7 sd */
    }
}

static void test_normal(void **state)
{
    (void)state;
    double sum = 0.0, sq = 0.0, cube = 0.0, quad = 0.0;
    int within1 = 0;
    for (uint64_t i = 0; i < DRAWS; i++) {
        double x = lk_rng_normal(5, LK_RNG_TEST, 11, i);
        if (!isfinite(x)) fail_msg("normal draw %llu is not finite", (unsigned long long)i);
        sum += x;
        sq += x * x;
        cube += x * x * x;
        quad += x * x * x * x;
        within1 += fabs(x) < 1.0;
    }
    double mean = sum / DRAWS, var = sq / DRAWS - mean * mean;
    print_message("  normal: mean %.5f var %.5f skew %.4f kurt %.4f P(|x|<1) %.4f\n", mean, var,
                  cube / DRAWS, quad / DRAWS, (double)within1 / DRAWS);
    assert_true(fabs(mean) < 0.02);       /* sd 0.0032 */
    assert_true(fabs(var - 1.0) < 0.03);  /* sd 0.0045 */
    assert_true(fabs(cube / DRAWS) < 0.06); /* sd ~0.008 */
    assert_true(fabs(quad / DRAWS - 3.0) < 0.2);
    assert_true(fabs((double)within1 / DRAWS - 0.6827) < 0.01);
}

static void test_below(void **state)
{
    (void)state;
    const uint32_t ns[] = {1, 2, 3, 7, 10, 1000, 0x80000001u, 0xffffffffu};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
        for (uint64_t i = 0; i < 20000; i++) {
            uint32_t v = lk_rng_below(17, LK_RNG_SHUFFLE, k, i, ns[k]);
            if (v >= ns[k]) fail_msg("lk_rng_below(n=%u) = %u", ns[k], v);
        }
    /* roughly uniform over 10 buckets: chi-square with 9 dof, loose bound (p ~ 1e-6) */
    int counts[10] = {0};
    for (uint64_t i = 0; i < DRAWS; i++) counts[lk_rng_below(17, LK_RNG_SHUFFLE, 1, i, 10)]++;
    double chi2 = 0.0, e = DRAWS / 10.0;
    for (int b = 0; b < 10; b++) chi2 += (counts[b] - e) * (counts[b] - e) / e;
    print_message("  below(10): chi-square %.2f (9 dof)\n", chi2);
    assert_true(chi2 < 45.0);
    /* large n: both halves of the range are reached */
    int high = 0;
    for (uint64_t i = 0; i < 10000; i++)
        high += lk_rng_below(3, LK_RNG_TEST, 0, i, 0xffffffffu) >= 0x80000000u;
    assert_true(abs(high - 5000) < 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_independent),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_normal),
        cmocka_unit_test(test_below),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
