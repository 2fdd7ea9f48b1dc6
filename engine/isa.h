/*
 * isa.h - which instruction set the engine's own kernels may use, decided
 * once per process. Internal to the engine.
 */
#ifndef HEPTAPOD_ENG_ISA_H
#define HEPTAPOD_ENG_ISA_H

/* Ordered: a level includes every level below it. */
typedef enum eng__isa_level {
    ENG__ISA_SCALAR = 0, /* baseline x86-64 (or any other CPU) */
    ENG__ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    ENG__ISA_AVX512 = 2, /* AVX-512 F/BW/DQ/VL + VNNI + BF16 */
} eng__isa_level;

/** The best level this CPU has, capped by HEPTAPOD_ISA; read once. */
eng__isa_level eng__isa(void);

#endif
