/*
 * linear.c - a Linear layer's tile in the model's precision (linear.h).
 */
#include <cblas.h>

#include "engine/linear.h"
#include "engine/qgemm.h"

/*
 * int8: each thread's scratch starts with a tag naming the rows it last
 * quantized. qkv, fc1 and the head have several column blocks per row
 * tile, and a thread usually runs them one after another: the later ones
 * reuse the quantized rows instead of reading a again. A tile's rows are
 * the same when the forward call, the layer, the matrix, a and the row
 * count are (a does not change within one tile phase, forward.c); the
 * quantized values are the same either way, so reuse changes no bit.
 */
typedef struct qtag {
    unsigned long serial;
    const float *a;
    int mat, layer, rows;
} qtag;
_Static_assert(sizeof(qtag) <= ENG__QTAG, "the tag fits its slot");

static void int8_tile(eng_workspace *ws, const eng__linear *t)
{
    const eng_model *m = ws->m;
    unsigned char *scratch = ws->qscratch + (size_t)t->thread * ws->qscratch_stride;
    qtag *tag = (qtag *)(void *)scratch;
    qtag now = {.serial = ws->serial, .a = t->a, .mat = t->mat, .layer = t->layer, .rows = t->rows};
    int same = tag->serial == now.serial && tag->a == now.a && tag->mat == now.mat &&
               tag->layer == now.layer && tag->rows == now.rows;
    int i = t->mat == ENG__MAT_HEAD ? m->hp.depth * 4 : t->layer * 4 + t->mat;
    eng__qtile q = {.q = &m->q8[i],
                    .rows = t->rows,
                    .col0 = t->col0,
                    .cols = t->cols,
                    .a = t->a,
                    .lda = t->lda,
                    .c = t->c,
                    .ldc = t->ldc,
                    .scratch = scratch + ENG__QTAG,
                    .quantized = same};
    eng__qgemm(&q);
    *tag = now;
}

void eng__linear_tile(eng_workspace *ws, const eng__linear *t)
{
    switch (ws->m->precision) {
    case ENG_PRECISION_INT8:
        int8_tile(ws, t);
        break;
    case ENG_PRECISION_F32:
    default:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->rows, t->cols, t->k, 1.0f, t->a,
                    (int)t->lda, t->w + (size_t)t->col0 * t->k, t->k, 1.0f, t->c, (int)t->ldc);
        break;
    }
}
