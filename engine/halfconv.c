/*
 * halfconv.c - F16 and BF16 to float32 (halfconv.h), by building the float32
 * bit pattern: no rounding is ever involved because both formats are subsets
 * of float32.
 */
#include <string.h>

#include "engine/halfconv.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float eng__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0x1f) /* inf (mant == 0) or NaN: keep the payload in the top mantissa bits */
        return from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return from_bits(sign); /* signed zero */
    /* Subnormal, mant * 2^-24: shift the leading one up to the implicit bit
     * position; each shift lowers the exponent by one. The result is a
     * normal float32 because 2^-24 is far above float32's normal range floor. */
    uint32_t e = 113; /* float32 biased exponent of 2^-14, the f16 subnormal scale */
    while (!(mant & 0x400u)) {
        mant <<= 1;
        e--;
    }
    return from_bits(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

float eng__bf16_to_f32(uint16_t b)
{
    return from_bits((uint32_t)b << 16);
}

void eng__f16_to_f32_n(const unsigned char *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = eng__f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
}

void eng__bf16_to_f32_n(const unsigned char *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = eng__bf16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
}
