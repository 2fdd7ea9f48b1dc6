/*
 * seed.h - the second architecture, nonlinear-transformer-0.0.3 (MODEL.md
 * section 7): the forward pass of the seed package's NonLinearTransformer
 * (seed.c) and its raster-order generation (seed_gen.c). Internal to the
 * engine: eng_forward, eng_gen_init and eng_step hand a model of this arch
 * over to these, with the same contracts as theirs (eng.h).
 */
#ifndef HEPTAPOD_ENG_SEED_H
#define HEPTAPOD_ENG_SEED_H

#include "engine/internal.h"

/**
 * eng_forward for a model with arch ENG__ARCH_SEED. Grids must also be
 * square (the package cannot run others): ENG_EINVAL otherwise.
 */
int eng__seed_forward(eng_workspace *ws, const eng_grid *grids, int n, const float **logits);

/**
 * eng_gen_init for a model with arch ENG__ARCH_SEED: refuses what
 * eng_gen_init refuses, and non-square grids; `iterations` is checked (>= 1)
 * but not used, since the seed arch fills one open cell per step: the state
 * runs max(1, N_open) iterations. Given cells may hold the mask token (for
 * this arch only the filler of cells not reached yet). A request top_k of 0
 * takes the checkpoint's `top_k`.
 */
int eng__seed_gen_init(eng_gen *g, const eng_model *m, int height, int width, const int32_t *given,
                       int iterations, const eng_sampling *s, char *err, size_t errlen);

/**
 * eng_step for a model with arch ENG__ARCH_SEED: one batched forward pass,
 * then each unfinished state draws its first open cell in row-major order
 * (every token a candidate) and commits it.
 */
int eng__seed_step(eng_workspace *ws, eng_gen *const *gens, int n);

#endif
