/*
 * qgemm.h - the int8 Linear layers (MODEL.md section 6.1): weights quantized
 * once at load per output channel, activations per row inside each tile,
 * exact int32 products, then one fixed f32 dequantization. Internal to the
 * engine.
 *
 * Three kernels compute the same integers and apply the same f32 formula:
 * a scalar reference (qgemm.c), AVX2 (qgemm_avx2.c) and AVX-512 VNNI
 * (qgemm_avx512.c), chosen by eng__isa(). Their outputs agree bit for bit;
 * tests/engine/test_qgemm.c holds them to it.
 *
 * Packed weight layout: the output columns in panels of 16 (the last one
 * padded with zero columns), k padded with zeros to a multiple of 4, and per
 * panel, per group of 4 k, the 16 columns' 4 bytes each:
 *   w[(panel * kgroups + g) * 64 + col * 4 + j] = q(col 16 panel + col, k 4 g + j)
 * so a kernel reads one panel as one linear stream of 64-byte vectors.
 */
#ifndef HEPTAPOD_ENG_QGEMM_H
#define HEPTAPOD_ENG_QGEMM_H

#include <stddef.h>
#include <stdint.h>

/* Largest k the int8 path takes: products stay exact in int32 (and the
 * AVX-512 kernel's offset sums, 255 * 127 * k, below 2^31). */
#define ENG__Q8_MAX_K 65536

/* Rows of activations whose max |a| is below this quantize to zeros (their
 * scale is 0); so do weight rows, whose scale is then 1. */
#define ENG__Q8_TINY 0x1p-100f

/** One Linear weight [out, k] in int8. */
typedef struct eng__qmat {
    int out, k;          /* the f32 weight's shape */
    int kgroups;         /* ceil(k / 4) */
    int panels;          /* ceil(out / 16) */
    const int8_t *w;     /* [panels][kgroups][16][4], 64-byte aligned */
    const float *scale;  /* [panels * 16] per output column; 0 in the padding */
    const int32_t *corr; /* [panels * 16] 128 * sum_k q(col, k), for the u8 kernel */
} eng__qmat;

/** Bytes eng__qmat_pack needs for a [out, k] weight (multiple of 64). */
size_t eng__qmat_bytes(int out, int k);

/**
 * Quantizes w [out, k] (row stride k) into q, its arrays carved from mem
 * (eng__qmat_bytes(out, k) bytes, 64-byte aligned). Returns 0, or -1 with
 * *bad_row set when a row holds inf or NaN (nothing to quantize it to).
 * k must be in 1..ENG__Q8_MAX_K.
 */
int eng__qmat_pack(eng__qmat *q, const float *w, int out, int k, void *mem, int *bad_row);

/** Per-thread scratch a tile of up to `rows` rows over up to `k` inputs
 *  needs (multiple of 64). */
size_t eng__qscratch_bytes(int rows, int k);

/**
 * One tile: c[r][j] += dequant(a row r, weight column col0 + j) for r <
 * rows, j < cols, with c's row stride ldc and a's lda; c points at column
 * col0 of rows that start at c - col0 (the kernels address whole panels of
 * 16 columns, masked to the tile's). scratch: 64-byte aligned,
 * eng__qscratch_bytes(rows, q->k) bytes, where the kernel leaves the rows
 * quantized. Each output depends only on its row of a and the weights.
 */
typedef struct eng__qtile {
    const eng__qmat *q;
    int rows, col0, cols;
    const float *a;
    size_t lda;
    float *c;
    size_t ldc;
    void *scratch;
    int quantized; /* 1: scratch already holds a's rows as this same kernel
                      quantizes them (an earlier tile over the same rows) */
} eng__qtile;

/* The kernels; eng__qgemm picks one by eng__isa(). */
void eng__qgemm(const eng__qtile *t);
void eng__qgemm_scalar(const eng__qtile *t);
void eng__qgemm_avx2(const eng__qtile *t);
void eng__qgemm_avx512(const eng__qtile *t);

/* --- what the kernels share (qgemm.c) ------------------------------------- */

/* The quantization of one activation row from amax_bits, the largest
 * (bits of |a| & 0x7fffffff) over the row as an unsigned integer (integer
 * order is float order for finite values, and inf and NaN sort last, so
 * every kernel finds the same). Sets *scale, the row's dequantization
 * factor max|a| / 127, and returns inv = 127 / max|a|, the factor each a is
 * multiplied by before rounding; inv is 0 when the row quantizes to zeros
 * (max|a| below ENG__Q8_TINY: scale 0; inf or NaN in the row: scale NaN, so
 * that its outputs are NaN). */
float eng__q8_row_params(uint32_t amax_bits, float *scale);

/* q(a) = a * inv rounded to nearest even, clamped to [-127, 127]; the
 * reference the SIMD row quantizers follow (cvtps2dq rounds the same way
 * under the default MXCSR). */
int eng__q8_quantize(float a, float inv);

#endif
