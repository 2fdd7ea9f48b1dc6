/*
 * kernels_avx512.c - the fast kernels (kernels_impl.h, attention_impl.h)
 * compiled for AVX-512 F/VL/BW/DQ (512-bit vectors; FMA never contracted).
 */
#include "engine/kernels.h"

#if ENG__X86_KERNELS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq"))),        \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq")
#endif
#define ENG__VW 16
#define ENG__KSET eng__kernels_avx512
#define ENG__KSET_ISA "avx512"
#include "engine/kernels_impl.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
