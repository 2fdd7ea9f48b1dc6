/*
 * bgemm.h - the bf16 precision's Linear layers: weights rounded to bfloat16
 * once at load and packed for the kernels, activations rounded per row
 * inside each tile, products accumulated in float32 (MODEL.md 6.2).
 * Internal to the engine.
 *
 * Packed weights: a weight [out, k] is cut into groups of 16 output rows
 * ("lanes") and its k inputs into pairs; group g holds, pair after pair,
 * 16 uint32 words, word (p, lane) = bf16(w[16g + lane][2p]) in its low half
 * and bf16(w[16g + lane][2p + 1]) in its high half, zeros past `out` or k.
 * One pair of 16 lanes is one 64-byte vector, the operand of AVX512_BF16's
 * vdpbf16ps, and a group is read front to back by every kernel.
 *
 * A tile runs in three steps: its rows of activations are rounded to bf16
 * into per-thread scratch (a row of k values is kp = ceil(k / 2) pairs,
 * zero padded), the packed weights of its columns are multiplied in, and
 * the float32 sums are added to the outputs. Every kernel (scalar, AVX2,
 * AVX-512) computes an output from its own row and column only, and in an
 * order that depends on k alone, so a result never depends on the tile's
 * other rows, on where the tile starts or on the thread.
 */
#ifndef HEPTAPOD_ENG_BGEMM_H
#define HEPTAPOD_ENG_BGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "engine/internal.h"
#include "engine/isa.h"

/** bfloat16 bits of x, rounded to nearest even; NaN stays NaN (quiet,
 *  sign kept), overflow gives infinity as IEEE rounding does. */
uint16_t eng__bf16_round(float x);

/** Bytes of a packed [out, k] weight (a multiple of 64). */
size_t eng__bgemm_packed_bytes(int out, int k);

/** Packs the float32 weight w [out, k] into dst (eng__bgemm_packed_bytes,
 *  64-byte aligned), rounding every value with eng__bf16_round. */
void eng__bgemm_pack(uint32_t *dst, const float *w, int out, int k);

/** Bytes of the per-thread scratch a tile of up to `rows` rows of k inputs
 *  needs (a multiple of 64). */
size_t eng__bgemm_scratch_bytes(int rows, int k);

/* One tile: c[r][j] += sum_i bf16(a[r][i]) * bf16(w[col0 + j][i]) for r in
 * [0, rows), j in [0, cols), the weight packed whole by eng__bgemm_pack. */
typedef struct eng__bgemm {
    int rows, cols, k, col0;
    const float *a; /* [rows][lda] */
    size_t lda;
    const uint32_t *w; /* packed [out, k], out >= col0 + cols */
    float *c;          /* [rows][ldc], the tile's first output at c[0]; the
                        * kernels form the address c - col0 % 16 (lane 0
                        * of the first group), which must lie in the same
                        * array, but never touch what is outside the tile */
    size_t ldc;
    uint32_t *scratch; /* eng__bgemm_scratch_bytes(rows, k), 64-byte aligned */
} eng__bgemm;

/**
 * Runs the tile with the kernel of instruction set `isa` (at most what the
 * CPU has: eng__isa()). ENG__ISA_SCALAR is the reference: each output's
 * products summed in pair order in float32, then added to c. The AVX2 and
 * AVX-512 kernels sum the same exact products (a bf16 product is exact in
 * float32) in blocks of ENG__BGEMM_KC pairs, each block's sum added to c,
 * so they differ from the reference by float32 rounding of the sums only:
 * tests/engine/test_bgemm.c holds them to it.
 */
void eng__bgemm_run(const eng__bgemm *g, eng__isa_level isa);

/* Pairs of k summed before each addition to c in the vector kernels: a
 * block of 16 lanes x KC pairs of weights is 32 KB, in L1 while every row
 * of the tile passes over it. */
#define ENG__BGEMM_KC 128

/* Pairs per converted row in the scratch: kp rounded up to whole 64-byte
 * lines. */
static inline size_t eng__bgemm_lds(int k)
{
    return ((size_t)(k + 1) / 2 + 15) / 16 * 16;
}

/* The vector kernels (bgemm_avx512.c, bgemm_avx2.c), each with its own
 * rounding of the rows: same contract as eng__bgemm_run. Only called on
 * CPUs that have the instruction set. */
void eng__bgemm_avx512(const eng__bgemm *g);
void eng__bgemm_avx2(const eng__bgemm *g);

/** Packs every Linear weight of m (qkv, proj, fc1, fc2 of each block, and
 *  the head) into one owned block, m->bf16. ENG_OK or ENG_ENOMEM. */
int eng__bgemm_prepare(eng_model *m);
/** The packed weight of Linear layer `mat` (ENG__MAT_* of workspace.h) of
 *  block `layer` (ignored for the head). */
const uint32_t *eng__bgemm_weight(const eng_model *m, int mat, int layer);

#endif
