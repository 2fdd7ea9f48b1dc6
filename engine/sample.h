/*
 * sample.h - the per-cell kernels of one refinement iteration (MODEL.md
 * section 5): the counter-based random draw, the greedy and filtered samplers,
 * the model's confidence, the re-masking schedule and the re-mask selection.
 *
 * Internal to the engine. Every kernel is a pure function of its arguments, so
 * a cell's result depends only on its logits and (seed, iteration, cell).
 */
#ifndef HEPTAPOD_ENG_SAMPLE_H
#define HEPTAPOD_ENG_SAMPLE_H

#include <stdint.h>

#include "eng.h"

/** Bytes of scratch eng__sample and eng__sample_ref need for vocab_size v. */
#define ENG__SAMPLE_SCRATCH(v) (2 * (size_t)(v) * sizeof(float))

/**
 * The uniform number in [0, 1) drawn for `cell` (row-major index) at
 * iteration t (1-based) of a generation seeded with `seed`. A stateless hash
 * of the three, so no draw depends on any other.
 */
double eng__uniform(uint64_t seed, uint32_t t, uint32_t cell);

/**
 * The standard Gumbel variable -log(-log(u')) for `cell` at iteration t, with
 * u' uniform in (0, 1) from the same hash as eng__uniform but a separate
 * stream, so it is independent of the sampling draw of the same cell.
 */
double eng__gumbel(uint64_t seed, uint32_t t, uint32_t cell);

/** Index of the largest z[v] with v != mask; ties go to the lower id. */
int eng__argmax(const float *z, int v, int mask);

/**
 * The model's own probability of token s: softmax(z)[s] with the mask's logit
 * taken as -inf (no temperature, no filter). NaN logits yield -1 so that such
 * a cell sorts below every real confidence.
 */
float eng__confidence(const float *z, int v, int mask, int s);

/**
 * The margin of the model's distribution: P[a] - P[b] with P as in
 * eng__confidence, a the argmax and b the most probable other token (P[b] = 0
 * when the mask and a are the only ids). Computed as (1 - exp(z[b] - z[a])) /
 * sum, so equal top logits give exactly 0. NaN logits yield -1.
 */
float eng__margin(const float *z, int v, int mask);

/**
 * Draws a token from z (v logits) under s with the uniform number u in [0, 1).
 * temperature 0 is eng__argmax. Otherwise: weights exp((z - max) / T) with the
 * mask excluded; keep the top_k heaviest (0: all; ties by lower id); then the
 * shortest prefix of them, heaviest first, whose share of the kept weight
 * reaches top_p; then walk the kept tokens in increasing id order and return
 * the first at which the cumulative weight exceeds u times their total.
 * "Heaviest" ranks by logit, then lower id. scratch holds ENG__SAMPLE_SCRATCH(v)
 * bytes, suitably aligned for float. Never returns the mask; mask < 0
 * excludes no token.
 */
int eng__sample(const float *z, int v, int mask, const eng_sampling *s, double u, void *scratch);

/** The same draw by the plain definition (full insertion sort): the test
 *  reference of eng__sample, which must agree with it exactly. */
int eng__sample_ref(const float *z, int v, int mask, const eng_sampling *s, double u,
                    void *scratch);

/**
 * How many uncommitted cells stay masked after iteration t of K with n_open
 * open cells: floor(n_open * cos(pi/2 * t/K)) in double precision, 0 at t >= K.
 */
int eng__keep_masked(int n_open, int t, int k);

/**
 * The same for the raster order's linear schedule: floor(n_open * (k - t) / k)
 * in exact integer arithmetic, 0 at t >= k; with k == n_open one cell is
 * committed per iteration.
 */
int eng__keep_masked_linear(int n_open, int t, int k);

/**
 * Sorts the m indices in idx[] from the worst-ranked to the best, where a
 * higher key ranks better and, among equal keys, the lower index: a strict
 * total order, so the result is unique. Heapsort in place: no allocation,
 * O(m log m). For re-masking, idx holds the uncommitted cells and key their
 * conf: the first `keep` (lowest conf, the higher index among equals) are
 * re-masked and the rest committed.
 */
void eng__sort_worst_first(const float *key, int32_t *idx, int m);

#endif
