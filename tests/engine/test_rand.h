/*
 * test_rand.h - deterministic test data for the engine's tests: one LCG
 * stream per test file, uniform doubles in [0, 1) and Box-Muller normals.
 * A file picks its stream by defining TEST_RAND_SEED before including this
 * (after cmocka.h: random_floats asserts its allocation).
 */
#ifndef HEPTAPOD_TEST_RAND_H
#define HEPTAPOD_TEST_RAND_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

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

/* n normals times scale, malloc'd (one float for n == 0, so never NULL). */
static inline float *random_floats(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = gauss() * scale;
    return p;
}

#endif
