/*
 * linear.c - a Linear layer's tile in the model's precision (linear.h).
 */
#include <cblas.h>

#include "engine/linear.h"
#include "engine/qgemm.h"

void eng__linear_tile(eng_workspace *ws, const eng__linear *t)
{
    switch (ws->m->precision) {
    case ENG_PRECISION_INT8: {
        const eng_model *m = ws->m;
        int i = t->mat == ENG__MAT_HEAD ? m->hp.depth * 4 : t->layer * 4 + t->mat;
        eng__qtile q = {.q = &m->q8[i],
                        .rows = t->rows,
                        .col0 = t->col0,
                        .cols = t->cols,
                        .a = t->a,
                        .lda = t->lda,
                        .c = t->c,
                        .ldc = t->ldc,
                        .scratch = ws->qscratch + (size_t)t->thread * ws->qscratch_stride};
        eng__qgemm(&q);
        break;
    }
    case ENG_PRECISION_F32:
    default:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->rows, t->cols, t->k, 1.0f, t->a,
                    (int)t->lda, t->w + (size_t)t->col0 * t->k, t->k, 1.0f, t->c, (int)t->ldc);
        break;
    }
}
