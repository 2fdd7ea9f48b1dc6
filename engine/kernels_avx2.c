/*
 * kernels_avx2.c - the fast kernels (kernels_impl.h, attention_impl.h)
 * compiled for AVX2 (256-bit vectors; FMA deliberately not enabled).
 */
#include "engine/kernels.h"

#if ENG__X86_KERNELS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC target("avx2")
#endif
#define ENG__VW 8
#define ENG__KSET eng__kernels_avx2
#define ENG__KSET_ISA "avx2"
#include "engine/kernels_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
