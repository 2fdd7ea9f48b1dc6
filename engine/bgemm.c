/*
 * bgemm.c - the bf16 Linear layers (bgemm.h): rounding, weight packing at
 * load, the scalar reference kernel and the choice of kernel per tile.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/bgemm.h"
#include "engine/workspace.h"

uint16_t eng__bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, make it quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Adding 0x7fff rounds halves down, and the kept lowest bit breaks
     * ties to even; a carry into the exponent is the right result, up to
     * infinity. */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float bf16_value(uint32_t bits16)
{
    uint32_t u = bits16 << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

size_t eng__bgemm_packed_bytes(int out, int k)
{
    size_t groups = ((size_t)out + 15) / 16, kp = ((size_t)k + 1) / 2;
    return groups * kp * 16 * sizeof(uint32_t);
}

void eng__bgemm_pack(uint32_t *dst, const float *w, int out, int k)
{
    int groups = (out + 15) / 16, kp = (k + 1) / 2;
    for (int g = 0; g < groups; g++)
        for (int p = 0; p < kp; p++)
            for (int lane = 0; lane < 16; lane++) {
                int n = 16 * g + lane, i = 2 * p;
                uint32_t lo = 0, hi = 0;
                if (n < out) {
                    lo = eng__bf16_round(w[(size_t)n * k + i]);
                    if (i + 1 < k) hi = eng__bf16_round(w[(size_t)n * k + i + 1]);
                }
                *dst++ = lo | hi << 16;
            }
}

size_t eng__bgemm_scratch_bytes(int rows, int k)
{
    return (size_t)rows * eng__bgemm_lds(k) * sizeof(uint32_t);
}

/* Row r of a rounded into scratch row r: kp pairs, the last one padded
 * with a zero when k is odd. */
static void convert_rows(const eng__bgemm *g)
{
    size_t lds = eng__bgemm_lds(g->k);
    for (int r = 0; r < g->rows; r++) {
        const float *a = g->a + (size_t)r * g->lda;
        uint16_t *s = (uint16_t *)(g->scratch + (size_t)r * lds);
        for (int i = 0; i < g->k; i++)
            s[i] = eng__bf16_round(a[i]);
        if (g->k % 2) s[g->k] = 0;
    }
}

/*
 * The reference: for each row and each group of 16 columns, the 16 sums
 * run over the pairs in order, low product then high product, in float32;
 * then each valid column's sum is added to c.
 */
static void bgemm_scalar(const eng__bgemm *g)
{
    int kp = (g->k + 1) / 2, col1 = g->col0 + g->cols;
    size_t lds = eng__bgemm_lds(g->k);
    convert_rows(g);
    for (int r = 0; r < g->rows; r++) {
        const uint32_t *a = g->scratch + (size_t)r * lds;
        float *c = g->c + (size_t)r * g->ldc;
        for (int grp = g->col0 / 16; grp * 16 < col1; grp++) {
            const uint32_t *w = g->w + (size_t)grp * kp * 16;
            float acc[16] = {0};
            for (int p = 0; p < kp; p++) {
                float a0 = bf16_value(a[p] & 0xffffu), a1 = bf16_value(a[p] >> 16);
                for (int lane = 0; lane < 16; lane++) {
                    uint32_t wp = w[(size_t)p * 16 + lane];
                    acc[lane] += a0 * bf16_value(wp & 0xffffu);
                    acc[lane] += a1 * bf16_value(wp >> 16);
                }
            }
            for (int lane = 0; lane < 16; lane++) {
                int n = grp * 16 + lane;
                if (n >= g->col0 && n < col1) c[n - g->col0] += acc[lane];
            }
        }
    }
}

void eng__bgemm_run(const eng__bgemm *g, eng__isa_level isa)
{
    if (g->rows <= 0 || g->cols <= 0) return;
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= ENG__ISA_AVX512) {
        eng__bgemm_avx512(g);
        return;
    }
    if (isa >= ENG__ISA_AVX2) {
        eng__bgemm_avx2(g);
        return;
    }
#endif
    bgemm_scalar(g);
}

/* --- the model's packed weights ---------------------------------------------- */

/* Shapes [out, k] of a block's Linear layers, in ENG__MAT_* order. */
static void shapes(const eng_hparams *hp, int out[4], int k[4])
{
    out[ENG__MAT_QKV] = 3 * hp->dim, k[ENG__MAT_QKV] = hp->dim;
    out[ENG__MAT_PROJ] = hp->dim, k[ENG__MAT_PROJ] = hp->dim;
    out[ENG__MAT_FC1] = hp->mlp_hidden, k[ENG__MAT_FC1] = hp->dim;
    out[ENG__MAT_FC2] = hp->dim, k[ENG__MAT_FC2] = hp->mlp_hidden;
}

/* Offset in bytes of a block's packed weights in m->bf16, and of the head
 * after the last block (layer == depth). */
static size_t offset(const eng_hparams *hp, int mat, int layer)
{
    int out[4], k[4];
    shapes(hp, out, k);
    size_t per_layer = 0, off = 0;
    for (int j = 0; j < 4; j++) {
        if (j == mat) off = per_layer;
        per_layer += eng__bgemm_packed_bytes(out[j], k[j]);
    }
    return per_layer * (size_t)layer + (mat == ENG__MAT_HEAD ? 0 : off);
}

/* The packed weight of a Linear layer inside the block of packed weights. */
static uint32_t *weight_at(void *block, const eng_hparams *hp, int mat, int layer)
{
    size_t off = offset(hp, mat, mat == ENG__MAT_HEAD ? hp->depth : layer);
    return (uint32_t *)(void *)((unsigned char *)block + off);
}

const uint32_t *eng__bgemm_weight(const eng_model *m, int mat, int layer)
{
    return weight_at(m->bf16, &m->hp, mat, layer);
}

int eng__bgemm_prepare(eng_model *m)
{
    const eng_hparams *hp = &m->hp;
    /* Every weight is in the file as at least 2 bytes a value, and packs
     * into at most 4 bytes a pair (plus padding to 16 rows): no overflow. */
    size_t bytes =
        offset(hp, ENG__MAT_HEAD, hp->depth) + eng__bgemm_packed_bytes(hp->vocab_size, hp->dim);
    void *block = NULL;
    if (posix_memalign(&block, 64, bytes ? bytes : 64) != 0) return ENG_ENOMEM;
    int out[4], k[4];
    shapes(hp, out, k);
    for (int l = 0; l < hp->depth; l++) {
        const eng_layer *ly = &m->layers[l];
        const float *w[4] = {ly->qkv_w, ly->proj_w, ly->fc1_w, ly->fc2_w};
        for (int j = 0; j < 4; j++)
            eng__bgemm_pack(weight_at(block, hp, j, l), w[j], out[j], k[j]);
    }
    eng__bgemm_pack(weight_at(block, hp, ENG__MAT_HEAD, 0), m->head_w, hp->vocab_size, hp->dim);
    free(m->bf16);
    m->bf16 = block;
    m->bf16_bytes = bytes;
    return ENG_OK;
}
