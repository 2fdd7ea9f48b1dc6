/*
 * halfconv.h - 16-bit float formats of safetensors checkpoints to float32.
 * Every F16 and BF16 value is exactly representable in float32, so these
 * conversions are exact: subnormals keep their value, infinities their
 * sign, NaNs stay NaN (payload and sign kept).
 */
#ifndef HEPTAPOD_ENG_HALFCONV_H
#define HEPTAPOD_ENG_HALFCONV_H

#include <stddef.h>
#include <stdint.h>

/** The float32 value of IEEE 754 binary16 bits h. */
float eng__f16_to_f32(uint16_t h);
/** The float32 value of bfloat16 bits b (the high half of a float32). */
float eng__bf16_to_f32(uint16_t b);

/**
 * Converts n little-endian 16-bit values at src (any alignment) into dst.
 * src and dst must not overlap.
 */
void eng__f16_to_f32_n(const unsigned char *src, float *dst, size_t n);
void eng__bf16_to_f32_n(const unsigned char *src, float *dst, size_t n);

#endif
