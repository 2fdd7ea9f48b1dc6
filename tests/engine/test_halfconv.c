/*
 * test_halfconv.c - F16 and BF16 to float32: chosen values (zeros,
 * subnormals, the largest finite, infinities, NaNs) and every one of the
 * 65536 bit patterns of each format against an independent arithmetic
 * reference; the array versions read little-endian bytes at any alignment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "engine/halfconv.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The binary16 value by its definition, in double arithmetic. */
static double f16_reference(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0x1f)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* bfloat16 by its definition: sign, 8-bit exponent (bias 127), 7-bit fraction. */
static double bf16_reference(uint16_t b)
{
    int s = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    double v;
    if (e == 0xff)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -133);
    else
        v = ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static void test_f16_chosen_values(void **state)
{
    static const struct {
        uint16_t h;
        float f;
    } cases[] = {
        {0x0000, 0.0f},        {0x3c00, 1.0f},      {0xc000, -2.0f},
        {0x3555, 0x1.554p-2f}, {0x7bff, 65504.0f},  {0x0400, 0x1p-14f},     /* smallest normal */
        {0x0001, 0x1p-24f},    {0x8001, -0x1p-24f}, {0x03ff, 0x1.ff8p-15f}, /* subnormals */
        {0x0200, 0x1p-15f},    {0x7c00, INFINITY},  {0xfc00, -INFINITY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f = eng__f16_to_f32(cases[i].h);
        if (bits(f) != bits(cases[i].f))
            fail_msg("f16 0x%04x -> %a, expected %a", cases[i].h, (double)f, (double)cases[i].f);
    }
    assert_true(signbit(eng__f16_to_f32(0x8000)) && eng__f16_to_f32(0x8000) == 0.0f);
    assert_true(isnan(eng__f16_to_f32(0x7e00)));
    assert_true(isnan(eng__f16_to_f32(0xfc01)));
    assert_int_equal(bits(eng__f16_to_f32(0x7e00)), 0x7fc00000u); /* quiet NaN stays itself */
    assert_int_equal(bits(eng__f16_to_f32(0xfe01)), 0xffc02000u); /* sign and payload kept */
}

static void test_f16_every_pattern(void **state)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = eng__f16_to_f32((uint16_t)h);
        double r = f16_reference((uint16_t)h);
        if (isnan(r) ? !isnan(f) : ((double)f != r || !signbit(f) != !signbit(r)))
            fail_msg("f16 0x%04x -> %a, expected %a", (unsigned)h, (double)f, r);
    }
}

static void test_bf16_chosen_values(void **state)
{
    static const struct {
        uint16_t b;
        float f;
    } cases[] = {
        {0x3f80, 1.0f},      {0xc040, -3.0f},     {0x7f7f, 0x1.fep127f}, /* largest finite */
        {0x0080, 0x1p-126f}, {0x0001, 0x1p-133f}, {0x8040, -0x1p-127f},  /* subnormals */
        {0x7f80, INFINITY},  {0xff80, -INFINITY}, {0x0000, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f = eng__bf16_to_f32(cases[i].b);
        if (bits(f) != bits(cases[i].f))
            fail_msg("bf16 0x%04x -> %a, expected %a", cases[i].b, (double)f, (double)cases[i].f);
    }
    assert_true(signbit(eng__bf16_to_f32(0x8000)));
    assert_true(isnan(eng__bf16_to_f32(0x7fc0)));
    assert_true(isnan(eng__bf16_to_f32(0xff81)));
}

static void test_bf16_every_pattern(void **state)
{
    for (uint32_t b = 0; b < 0x10000; b++) {
        float f = eng__bf16_to_f32((uint16_t)b);
        double r = bf16_reference((uint16_t)b);
        if (isnan(r) ? !isnan(f) : ((double)f != r || !signbit(f) != !signbit(r)))
            fail_msg("bf16 0x%04x -> %a, expected %a", (unsigned)b, (double)f, r);
    }
}

/* The array forms read little-endian pairs from an odd address. */
static void test_arrays_little_endian_unaligned(void **state)
{
    unsigned char buf[1 + 8];
    const uint16_t h[4] = {0x3c00, 0x0001, 0xfc00, 0x7bff};
    const uint16_t b[4] = {0x3f80, 0x0001, 0xff80, 0xc040};
    float out[4];
    for (int i = 0; i < 4; i++)
        buf[1 + 2 * i] = (unsigned char)h[i], buf[2 + 2 * i] = (unsigned char)(h[i] >> 8);
    eng__f16_to_f32_n(buf + 1, out, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(bits(out[i]), bits(eng__f16_to_f32(h[i])));
    assert_true(out[0] == 1.0f && out[1] == 0x1p-24f && out[2] == -INFINITY && out[3] == 65504.0f);
    for (int i = 0; i < 4; i++)
        buf[1 + 2 * i] = (unsigned char)b[i], buf[2 + 2 * i] = (unsigned char)(b[i] >> 8);
    eng__bf16_to_f32_n(buf + 1, out, 4);
    assert_true(out[0] == 1.0f && out[1] == 0x1p-133f && out[2] == -INFINITY && out[3] == -3.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_chosen_values),
        cmocka_unit_test(test_f16_every_pattern),
        cmocka_unit_test(test_bf16_chosen_values),
        cmocka_unit_test(test_bf16_every_pattern),
        cmocka_unit_test(test_arrays_little_endian_unaligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
