/* test_half.c - float32 <-> fp16 (IEEE binary16) conversions of the fp16 gradient wire,
 * both of them (the integer one, _soft, and the one the build uses: F16C's where it targets
 * x86-64-v3): every fp16 value comes back exactly, rounding to nearest even at every
 * midpoint, the overflow and underflow edges, NaN, and (where the compiler has _Float16) a
 * million values against the compiler's own conversion. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/half.h"
#include "core/rng.h"
#include "testutil.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

typedef struct {
    const char *name;
    uint16_t (*rne)(float);
    float (*to_f32)(uint16_t);
} impl;

static uint16_t soft_rne(float f) { return lk_f16_rne_soft(f); }
static float soft_f32(uint16_t h) { return lk_f16_to_f32_soft(h); }
static uint16_t used_rne(float f) { return lk_f16_rne(f); }
static float used_f32(uint16_t h) { return lk_f16_to_f32(h); }
static const impl IMPLS[2] = {{"integer", soft_rne, soft_f32}, {"the build's", used_rne, used_f32}};

static void round_trip(const impl *I)
{
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaNs: below */
        const float f = I->to_f32((uint16_t)h);
        if (I->rne(f) != h) fail_msg("fp16 0x%04x -> %g -> 0x%04x", h, (double)f, I->rne(f));
        /* the midpoint to the next value up (same sign) rounds to the even one of the two */
        const uint32_t next = h + 1;
        if ((h & 0x7fffu) >= 0x7c00u - 1 || (next & 0x7fffu) == 0) continue;
        const double mid = ((double)f + (double)I->to_f32((uint16_t)next)) / 2.0;
        const uint16_t even = (h & 1u) ? (uint16_t)next : (uint16_t)h;
        if (I->rne((float)mid) != even)
            fail_msg("midpoint of 0x%04x and 0x%04x: 0x%04x", h, next, I->rne((float)mid));
    }
}

static void edges(const impl *I)
{
    assert_int_equal(I->rne(1.0f), 0x3c00);
    assert_int_equal(I->rne(-2.0f), 0xc000);
    assert_int_equal(I->rne(65504.0f), 0x7bff);
    assert_int_equal(I->rne(65519.99f), 0x7bff);
    assert_int_equal(I->rne(65520.0f), 0x7c00); /* the tie past the top: to infinity */
    assert_int_equal(I->rne(-1e6f), 0xfc00);
    assert_int_equal(I->rne(INFINITY), 0x7c00);
    assert_int_equal(I->rne(ldexpf(1.0f, -14)), 0x0400); /* smallest normal */
    assert_int_equal(I->rne(ldexpf(1.0f, -24)), 0x0001); /* smallest subnormal */
    assert_int_equal(I->rne(ldexpf(1.0f, -25)), 0x0000); /* its half: a tie to even */
    assert_int_equal(I->rne(ldexpf(1.5f, -25)), 0x0001);
    assert_int_equal(I->rne(ldexpf(3.0f, -25)), 0x0002); /* 1.5 units: a tie, to even 2 */
    assert_int_equal(I->rne(-ldexpf(1.0f, -30)), 0x8000);
    assert_int_equal(I->rne(from_bits(0x387fffffu)), 0x0400); /* just below 2^-14 rounds up */
    const uint16_t nan = I->rne(NAN);
    assert_true((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff));
    assert_true(isnan(I->to_f32(I->rne(from_bits(0x7f800001u))))); /* bits rounding would lose */
    assert_true(isinf(I->to_f32(0x7c00)) && I->to_f32(0xfc00) < 0);
}

static void against_compiler(const impl *I)
{
#ifdef __FLT16_MAX__
    for (uint64_t i = 0; i < 1000000; i++) {
        /* values spread over fp16's range and beyond: a random float32 bit pattern's sign and
         * mantissa, exponent between 2^-30 and 2^17 */
        const uint32_t r = lk_rng_u32(9, LK_RNG_TEST, 1, i);
        const uint32_t e = 97u + lk_rng_u32(9, LK_RNG_TEST, 2, i) % 48u;
        const float f = from_bits((r & 0x807fffffu) | (e << 23));
        const _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, sizeof want);
        if (I->rne(f) != want) fail_msg("%a: 0x%04x, the compiler's 0x%04x", (double)f, I->rne(f), want);
        if (I->to_f32(want) != (float)h) fail_msg("0x%04x widened: %a", want, (double)I->to_f32(want));
    }
    printf("%s: a million float32 values rounded to fp16 as the compiler's _Float16 does\n", I->name);
#else
    printf("no _Float16 in this compiler: the comparison is skipped (the other cases hold)\n");
#endif
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) round_trip(&IMPLS[i]);
}

static void test_edges(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) edges(&IMPLS[i]);
}

static void test_against_compiler(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) against_compiler(&IMPLS[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_against_compiler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
