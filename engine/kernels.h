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
 */
#ifndef HEPTAPOD_ENG_KERNELS_H
#define HEPTAPOD_ENG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* --- LayerNorm, GELU, bias (kernels.c) ------------------------------------- */

/**
 * y = LN(x; w, b) over n floats: mean and biased variance, then
 * (x - mean) / sqrt(var + eps) * w + b. x and y must not overlap.
 */
void eng__layernorm(const float *restrict x, float *restrict y, const float *restrict w,
                    const float *restrict b, int n, float eps);
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

#endif
