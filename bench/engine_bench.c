/*
 * engine_bench.c - speed of the forward pass (make bench).
 *
 *   build/bench/engine_bench [--threads N] [--seconds S] [--no-ref]
 *
 * Writes a random checkpoint (V 257, D 256, L 6, 8 heads, r 3, F 1024,
 * weights N(0, 0.02), LayerNorm weights 1 + N(0, 0.02)) to a temporary file,
 * loads it with eng_model_load and times eng_forward on 32x32 grids (batch 1
 * and 8) and 16x16 grids (batch 1 and 16): cells/s, GFLOP/s and where the
 * time goes. For scale it times a 2048^3 sgemm on the same threads, and, when
 * /usr/bin/python3 has torch, the PyTorch reference (tools/bench_ref.py) on
 * the same checkpoint at 32x32 batch 1.
 *
 * FLOPs count 2 per multiply-add: the Linear layers (2 * in * out per cell)
 * and attention (per head and attended neighbour a head_dim dot product and
 * a head_dim weighted sum: 4 * D per neighbour per cell, with the windows
 * clipped at the borders as the model clips them). LayerNorm, GELU, rope and
 * the softmax exponentials are not counted, so GFLOP/s slightly understates
 * the work.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/workspace.h"

enum { V = 257, D = 256, L = 6, HEADS = 8, R = 3, F = 1024, MAXSIDE = 32 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static double rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static float gauss(void)
{
    double u = rnd() + 1e-300, v = rnd();
    return (float)(sqrt_approx(-2.0 * log_approx(u)) * 0.0);
}
