/*
 * test_bgemm.c - the bf16 kernels (engine/bgemm.c, bgemm_avx2.c,
 * bgemm_avx512.c):
 *   - rounding to bf16 (nearest even, NaN kept, overflow to infinity) and
 *     the packed weight layout;
 *   - every vector kernel this CPU has against the scalar reference: the
 *     AVX2 kernel bit for bit, the AVX-512 one within
 *     |got - ref| <= 2 k 2^-24 sum_i |a_i w_i| (the worst case of summing
 *     the same exact products in another order), and the reference itself
 *     against a double sum of the rounded values within half of that;
 *   - an output does not depend on the tile's other rows or columns, nothing
 *     outside the tile is written, and a NaN input stays in its row.
 * The bf16 model (loading, forward pass) is test_forward_bf16.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bgemm.h"

#include "tests/engine/test_rand.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float bf(float x)
{
    return from_bits((uint32_t)eng__bf16_round(x) << 16);
}

static void *aligned(size_t bytes)
{
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 64, bytes ? bytes : 64), 0);
    return p;
}

/* --- rounding and packing ----------------------------------------------------- */

static void test_round(void **state)
{
    (void)state;
    assert_int_equal(eng__bf16_round(1.0f), 0x3f80);
    assert_int_equal(eng__bf16_round(-2.0f), 0xc000);
    assert_int_equal(eng__bf16_round(-0.0f), 0x8000);
    /* Ties go to even, either way; anything above a tie rounds up. */
    assert_int_equal(eng__bf16_round(from_bits(0x3f808000u)), 0x3f80);
    assert_int_equal(eng__bf16_round(from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(eng__bf16_round(from_bits(0x3f808001u)), 0x3f81);
    assert_int_equal(eng__bf16_round(from_bits(0x3f807fffu)), 0x3f80);
    /* Overflow gives infinity; infinities and subnormals round like any value. */
    assert_int_equal(eng__bf16_round(from_bits(0x7f7fffffu)), 0x7f80);
    assert_int_equal(eng__bf16_round(-INFINITY), 0xff80);
    assert_int_equal(eng__bf16_round(from_bits(0x00018000u)), 0x0002);
    /* NaN stays NaN, quiet, sign kept, even when its payload is in the low half. */
    assert_int_equal(eng__bf16_round(from_bits(0x7f800001u)), 0x7fc0);
    assert_int_equal(eng__bf16_round(from_bits(0xffa00000u)), 0xffe0);
    assert_int_equal(eng__bf16_round(from_bits(0x7fffffffu)), 0x7fff);
}

static void test_pack_layout(void **state)
{
    (void)state;
    enum { OUT = 18, K = 5 };
    float w[OUT * K];
    for (int i = 0; i < OUT * K; i++)
        w[i] = (float)(i + 1) * 0.5f;
    size_t bytes = eng__bgemm_packed_bytes(OUT, K);
    assert_int_equal(bytes, 2 * 3 * 16 * 4); /* two groups, three pairs */
    uint32_t *p = aligned(bytes);
    eng__bgemm_pack(p, w, OUT, K);
    for (int g = 0; g < 2; g++)
        for (int pr = 0; pr < 3; pr++)
            for (int lane = 0; lane < 16; lane++) {
                int n = 16 * g + lane;
                uint32_t word = p[(g * 3 + pr) * 16 + lane];
                uint32_t lo = n < OUT ? eng__bf16_round(w[n * K + 2 * pr]) : 0;
                uint32_t hi =
                    n < OUT && 2 * pr + 1 < K ? eng__bf16_round(w[n * K + 2 * pr + 1]) : 0;
                assert_int_equal(word, lo | hi << 16);
            }
    free(p);
}

/* --- kernels against the reference --------------------------------------------- */

/* A tile of `rows` x `cols` at col0 of a weight [out, k]; c has one guard
 * column on each side of a row and the group before col0, so that writes
 * outside the tile show. */
typedef struct problem {
    int rows, cols, k, col0, out;
    float *a, *w, *c0; /* a [rows][k], w [out][k], c0 [rows][ldc] the initial outputs */
    uint32_t *packed, *scratch;
    size_t ldc, pad; /* the tile's column 0 is at c + pad */
} problem;

static void problem_init(problem *pb, int rows, int cols, int k, int col0, float scale)
{
    pb->rows = rows, pb->cols = cols, pb->k = k, pb->col0 = col0, pb->out = col0 + cols + 3;
    pb->pad = 16 + (size_t)col0 % 16;
    pb->ldc = pb->pad + (size_t)cols + 16;
    pb->a = malloc(sizeof(float) * rows * k);
    pb->w = malloc(sizeof(float) * pb->out * k);
    pb->c0 = malloc(sizeof(float) * rows * pb->ldc);
    assert_true(pb->a && pb->w && pb->c0);
    for (int i = 0; i < rows * k; i++)
        pb->a[i] = scale * gauss();
    for (int i = 0; i < pb->out * k; i++)
        pb->w[i] = 0.05f * gauss();
    for (size_t i = 0; i < (size_t)rows * pb->ldc; i++)
        pb->c0[i] = gauss();
    pb->packed = aligned(eng__bgemm_packed_bytes(pb->out, k));
    eng__bgemm_pack(pb->packed, pb->w, pb->out, k);
    pb->scratch = aligned(eng__bgemm_scratch_bytes(rows, k));
}

static void problem_free(problem *pb)
{
    free(pb->a);
    free(pb->w);
    free(pb->c0);
    free(pb->packed);
    free(pb->scratch);
}

/* Runs rows [r0, r0 + rows) x columns [j0, j0 + cols) of the problem's
 * tile with kernel isa on c (a copy of c0 the caller made). */
static void run_part(const problem *pb, float *c, int r0, int rows, int j0, int cols,
                     eng__isa_level isa)
{
    eng__bgemm g = {.rows = rows,
                    .cols = cols,
                    .k = pb->k,
                    .col0 = pb->col0 + j0,
                    .a = pb->a + (size_t)r0 * pb->k,
                    .lda = (size_t)pb->k,
                    .w = pb->packed,
                    .c = c + (size_t)r0 * pb->ldc + pb->pad + j0,
                    .ldc = pb->ldc,
                    .scratch = pb->scratch};
    eng__bgemm_run(&g, isa);
}

static float *run_isa(const problem *pb, eng__isa_level isa)
{
    size_t n = (size_t)pb->rows * pb->ldc;
    float *c = malloc(sizeof(float) * n);
    assert_non_null(c);
    memcpy(c, pb->c0, sizeof(float) * n);
    run_part(pb, c, 0, pb->rows, 0, pb->cols, isa);
    return c;
}

/* |a w| summed over the rounded values of row r and column j of the tile. */
static double abs_sum(const problem *pb, int r, int j, double *exact)
{
    double s = 0.0, e = 0.0;
    for (int i = 0; i < pb->k; i++) {
        double p = (double)bf(pb->a[(size_t)r * pb->k + i]) *
                   (double)bf(pb->w[(size_t)(pb->col0 + j) * pb->k + i]);
        s += fabs(p);
        e += p;
    }
    *exact = e;
    return s;
}

/* Checks the reference against double sums, each vector kernel this CPU
 * has against the reference, and that nothing outside the tile changed.
 * Returns the largest |fast - ref| / bound seen. */
static double check_problem(const problem *pb)
{
    float *ref = run_isa(pb, ENG__ISA_SCALAR);
    double worst = 0.0;
    for (int r = 0; r < pb->rows; r++)
        for (size_t x = 0; x < pb->ldc; x++) {
            size_t i = (size_t)r * pb->ldc + x;
            int j = (int)x - (int)pb->pad;
            if (j < 0 || j >= pb->cols) {
                assert_memory_equal(&ref[i], &pb->c0[i], sizeof(float));
                continue;
            }
            double exact, s = abs_sum(pb, r, j, &exact);
            double bound = pb->k * 0x1.0p-24 * s + 0x1.0p-24 * fabs(pb->c0[i] + exact) + 1e-30;
            if (fabs((double)ref[i] - (pb->c0[i] + exact)) > bound)
                fail_msg("reference: row %d col %d: %.9g, exact %.9g", r, j, ref[i],
                         pb->c0[i] + exact);
        }
    for (int isa = ENG__ISA_AVX2; isa <= (int)eng__isa(); isa++) {
        float *got = run_isa(pb, (eng__isa_level)isa);
        if (isa == ENG__ISA_AVX2) {
            assert_memory_equal(got, ref, sizeof(float) * pb->rows * pb->ldc);
        } else {
            for (int r = 0; r < pb->rows; r++)
                for (size_t x = 0; x < pb->ldc; x++) {
                    size_t i = (size_t)r * pb->ldc + x;
                    int j = (int)x - (int)pb->pad;
                    if (j < 0 || j >= pb->cols) {
                        assert_memory_equal(&got[i], &pb->c0[i], sizeof(float));
                        continue;
                    }
                    double exact, s = abs_sum(pb, r, j, &exact);
                    double bound = 2 * pb->k * 0x1.0p-24 * s + 0x1.0p-23 * fabs(ref[i]) + 1e-30;
                    double e = fabs((double)got[i] - ref[i]);
                    if (e > bound)
                        fail_msg("isa %d: %dx%d k %d col0 %d: row %d col %d: %.9g, reference "
                                 "%.9g (bound %.3g)",
                                 isa, pb->rows, pb->cols, pb->k, pb->col0, r, j, got[i], ref[i],
                                 bound);
                    worst = e / bound > worst ? e / bound : worst;
                }
        }
        free(got);
    }
    free(ref);
    return worst;
}

static void test_kernels_match_reference(void **state)
{
    (void)state;
    /* rows, cols, k, col0: tails of every register block, k odd, k past
     * one block of ENG__BGEMM_KC pairs, tiles starting inside a group. */
    static const int shapes[][4] = {
        {1, 1, 1, 0},     {6, 64, 256, 0},     {7, 65, 3, 5},       {13, 100, 33, 16},
        {2, 17, 300, 12}, {25, 130, 257, 252}, {6, 256, 1024, 256}, {5, 48, 2, 40},
        {12, 31, 511, 1}, {3, 200, 64, 100},
    };
    double worst = 0.0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        problem pb;
        problem_init(&pb, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
                     i % 2 ? 1.0f : 30.0f);
        double w = check_problem(&pb);
        worst = w > worst ? w : worst;
        problem_free(&pb);
    }
    print_message("kernels up to %s: largest |fast - reference| %.3g of its bound\n",
                  eng_isa_name(), worst);
}

/* A row's outputs are the same bits in any tile that holds it, and a
 * column's in any column range. */
static void test_rows_and_columns_independent(void **state)
{
    (void)state;
    problem pb;
    problem_init(&pb, 19, 150, 290, 12, 1.0f);
    size_t n = (size_t)pb.rows * pb.ldc;
    for (int isa = ENG__ISA_SCALAR; isa <= (int)eng__isa(); isa++) {
        float *whole = run_isa(&pb, (eng__isa_level)isa);
        float *parts = malloc(sizeof(float) * n);
        assert_non_null(parts);
        memcpy(parts, pb.c0, sizeof(float) * n);
        /* Rows one by one and in odd blocks, columns split at odd places. */
        static const int rcut[] = {0, 1, 8, 9, 19}, ccut[] = {0, 3, 20, 84, 149, 150};
        for (int a = 0; a + 1 < 5; a++)
            for (int b = 0; b + 1 < 6; b++)
                run_part(&pb, parts, rcut[a], rcut[a + 1] - rcut[a], ccut[b], ccut[b + 1] - ccut[b],
                         (eng__isa_level)isa);
        assert_memory_equal(whole, parts, sizeof(float) * n);
        free(whole);
        free(parts);
    }
    problem_free(&pb);
}

/* NaN and infinity pass through rounding: a NaN activation makes its row
 * NaN and leaves the other rows finite. */
static void test_nan_stays_in_its_row(void **state)
{
    (void)state;
    problem pb;
    problem_init(&pb, 8, 40, 20, 0, 1.0f);
    pb.a[3 * pb.k + 7] = NAN;
    for (int isa = ENG__ISA_SCALAR; isa <= (int)eng__isa(); isa++) {
        float *c = run_isa(&pb, (eng__isa_level)isa);
        for (int r = 0; r < pb.rows; r++)
            for (int j = 0; j < pb.cols; j++)
                assert_true(r == 3 ? isnan(c[r * pb.ldc + pb.pad + j])
                                   : isfinite(c[r * pb.ldc + pb.pad + j]));
        free(c);
    }
    problem_free(&pb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round),
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_kernels_match_reference),
        cmocka_unit_test(test_rows_and_columns_independent),
        cmocka_unit_test(test_nan_stays_in_its_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
