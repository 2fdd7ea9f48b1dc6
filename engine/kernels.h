/*
 * kernels.h - the per-cell kernels of the forward pass (MODEL.md section 3):
 * LayerNorm, GELU, bias adds, the embedding gather, the 2D rotary embedding
 * and the local attention.
 *
 * Internal to the engine. Each fast kernel has a plain scalar reference
 * beside it (suffix _ref) that follows MODEL.md literally; the fast one must
 * agree with it within the tolerance tests/engine/test_kernels.c states.
 * Every kernel is a pure function of its arguments: a cell's result never
 * depends on other cells of the batch or on the thread that computes it.
 *
 * The fast kernels exist once per instruction set (eng__kernel_set, built
 * from one body by kernels_scalar.c, kernels_avx2.c, kernels_avx512.c) and
 * give the same bits on each: no multiply-add is fused and every sum is
 * taken in the same order. The eng__ functions below run the set of
 * eng__isa() (isa.h), chosen once per process, so HEPTAPOD_ISA forces a
 * path; eng__kernels_at() reaches each set directly.
 */
#ifndef HEPTAPOD_ENG_KERNELS_H
#define HEPTAPOD_ENG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/isa.h"

/* The x86-64 instruction-set variants are built (GCC or Clang on x86-64). */
#if defined(__x86_64__) && defined(__GNUC__)
#define ENG__X86_KERNELS 1
#else
#define ENG__X86_KERNELS 0
#endif

/* --- LayerNorm, GELU, bias (kernels.c) ------------------------------------- */

/**
 * y = LN(x; w, b) over n floats: mean and biased variance, then
 * (x - mean) / sqrt(var + eps) * w + b. x and y must not overlap.
 */
void eng__layernorm(const float *restrict x, float *restrict y, const float *restrict w,
                    const float *restrict b, int n, float eps);
/** h += bias, then y = LN(h; w, b), in one pass over h for the bias and the
 *  mean. h and y must not overlap. Same bits as eng__add_bias then
 *  eng__layernorm. */
void eng__bias_layernorm(float *restrict h, const float *restrict bias, float *restrict y,
                         const float *restrict w, const float *restrict b, int n, float eps);
/** The same by the definition, accumulating in double. */
void eng__layernorm_ref(const float *x, float *y, const float *w, const float *b, int n, float eps);

/**
 * x = GELU(x) in place over n floats, GELU(t) = 0.5 t (1 + erf(t / sqrt 2)).
 * erf is a rational approximation (eng__erf) within 4e-7 of erff.
 */
void eng__gelu(float *x, int n);
/** The same with libm's erff. */
void eng__gelu_ref(float *x, int n);

/** erf(x), branch-free so that loops over it vectorise; |error| < 4e-7. */
float eng__erf(float x);

/** x += b over n floats. */
void eng__add_bias(float *restrict x, const float *restrict b, int n);

/** exp(x) for x <= 0 (softmax weights); relative error < 2e-7, and
 *  x < -87 yields a value below 2e-38 instead of underflowing. */
float eng__exp_neg(float x);

/* --- embedding (kernels.c) ---------------------------------------------------- */

/** h[c] = tok_emb[tokens[c]] for c < n, each row dim floats. Tokens must be
 *  valid ids (the caller checks). */
void eng__embed(float *restrict h, const float *restrict tok_emb, const int32_t *tokens, int n,
                int dim);

/* --- 2D rotary embedding (kernels.c) ------------------------------------------ */

/**
 * Fills the rope tables for positions 0..positions-1: cos_t and sin_t are
 * [positions][head_dim / 4] (m = head_dim / 2, m / 2 frequencies
 * w_j = base^(-2j/m)), computed in double precision and rounded once.
 */
void eng__rope_tables(float *cos_t, float *sin_t, int positions, int head_dim, float base);

/** Rotates one head vector t[head_dim] in place for the cell (y, x)
 *  (MODEL.md 3.1) with tables from eng__rope_tables. */
void eng__rope(float *restrict t, int head_dim, int y, int x, const float *restrict cos_t,
               const float *restrict sin_t);
/** dst = src rotated as eng__rope does, in one pass (dst may equal src; the
 *  qkv epilogue reads the projection and writes the head-major copy). */
void eng__rope_store(float *dst, const float *src, int head_dim, int y, int x,
                     const float *restrict cos_t, const float *restrict sin_t);
/** The same computing every cos and sin directly (double precision). */
void eng__rope_ref(float *t, int head_dim, int y, int x, float base);

/* --- local attention (attention.c) -------------------------------------------- */

/**
 * One head of one grid. q, k, v point at the grid's first cell; cell c
 * (row-major, c = y * width + x) has its head vector at q + c * ld (same for
 * k, v), and its output goes to out + c * ldo. radius is ENG_WINDOW_GLOBAL
 * for the whole grid (dilation then ignored).
 */
typedef struct eng__attn {
    const float *q, *k, *v;
    size_t ld;
    float *out;
    size_t ldo;
    int height, width, head_dim;
    int radius, dilation;
} eng__attn;

/**
 * Attention output of the cells [begin, end) of the grid in a (MODEL.md 3.2):
 * walks each cell's clipped, dilated window in blocks of at most 64 keys
 * with an online softmax (running max, running sum, rescaled accumulator),
 * so no score buffer larger than one block exists. out rows are written
 * only for those cells.
 */
void eng__attention(const eng__attn *a, int begin, int end);

/**
 * The reference: all scores of a cell into scores[] (height * width floats),
 * then a two-pass softmax and the weighted sum, in plain loops.
 */
void eng__attention_ref(const eng__attn *a, int begin, int end, float *scores);

/* --- the kernels of one instruction set ---------------------------------------- */

/** The fast kernels for one instruction set; each member has the contract
 *  of the eng__ function of the same name above. */
typedef struct eng__kernel_set {
    const char *isa; /* "scalar", "avx2", "avx512" */
    void (*layernorm)(const float *restrict x, float *restrict y, const float *restrict w,
                      const float *restrict b, int n, float eps);
    void (*bias_layernorm)(float *restrict h, const float *restrict bias, float *restrict y,
                           const float *restrict w, const float *restrict b, int n, float eps);
    void (*gelu)(float *x, int n);
    void (*add_bias)(float *restrict x, const float *restrict b, int n);
    void (*rope_store)(float *dst, const float *src, int head_dim, int y, int x,
                       const float *restrict cos_t, const float *restrict sin_t);
    void (*attention)(const eng__attn *a, int begin, int end);
} eng__kernel_set;

/** The set for one level, or NULL when this CPU (or this build) lacks it.
 *  Ignores HEPTAPOD_ISA: tests use it to run every path in one process. */
const eng__kernel_set *eng__kernels_at(eng__isa_level level);

/** The set of eng__isa(): the best this CPU has, capped by HEPTAPOD_ISA;
 *  decided once. */
const eng__kernel_set *eng__kernels(void);

#endif
