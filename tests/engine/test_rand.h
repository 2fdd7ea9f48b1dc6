/*
 * test_rand.h - deterministic test data for the engine's tests: one LCG
 * stream per test file, uniform doubles in [0, 1) and Box-Muller normals.
 * A file picks its stream by defining TEST_RAND_SEED before including this.
 */
#ifndef HEPTAPOD_TEST_RAND_H
#define HEPTAPOD_TEST_RAND_H

#include <math.h>
#include <stdint.h>

#ifndef TEST_RAND_SEED
#define TEST_RAND_SEED 0x9e3779b97f4a7c15ull
#endif

static uint64_t rng_state = TEST_RAND_SEED;

static inline double rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

static inline float gauss(void)
{
    double u = rnd() + 1e-300, v = rnd();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

#endif
