/*
 * kernels_scalar.c - the fast kernels (kernels_impl.h, attention_impl.h)
 * compiled for the target's baseline instruction set (SSE2 on x86-64): the
 * path every CPU runs, and the one HEPTAPOD_ISA=scalar forces.
 */
#define ENG__VW 4
#define ENG__KSET eng__kernels_scalar
#define ENG__KSET_ISA "scalar"
#include "engine/kernels_impl.h"
