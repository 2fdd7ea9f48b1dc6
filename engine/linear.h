/*
 * linear.h - one tile of a Linear layer in the model's precision. forward.c
 * cuts every Linear layer into tiles (workspace.h) and calls this for each;
 * what arithmetic runs (OpenBLAS sgemm, bf16 or int8 kernels) is decided
 * here by the model's precision. Internal to the engine.
 */
#ifndef HEPTAPOD_ENG_LINEAR_H
#define HEPTAPOD_ENG_LINEAR_H

#include <stddef.h>

#include "engine/workspace.h"

/* Which weight a tile multiplies by: ENG__MAT_* of workspace.h, and the
 * block (ignored for ENG__MAT_HEAD). */
typedef struct eng__linear {
    int mat, layer;
    int rows, cols, k; /* the tile: rows x cols outputs, k inputs */
    int col0;          /* its first output column (row of the weight) */
    const float *a;    /* rows x k activations, row stride lda */
    size_t lda;
    const float *w;    /* the f32 weight [out, k] of this layer, whole */
    float *c;          /* rows x cols outputs, row stride ldc: c += a w[col0..]^T */
    size_t ldc;
    int thread;        /* the pool thread running the tile (its scratch) */
} eng__linear;

/** c += a w^T over one tile, in the precision of ws's model. Each output
 *  depends only on its own row of a and the weights, never on the tile's
 *  other rows or the thread. */
void eng__linear_tile(eng_workspace *ws, const eng__linear *t);

#endif
