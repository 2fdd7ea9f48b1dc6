/*
 * linear.c - a Linear layer's tile in the model's precision (linear.h).
 */
#include <cblas.h>

#include "engine/linear.h"

void eng__linear_tile(eng_workspace *ws, const eng__linear *t)
{
    switch (ws->m->precision) {
    case ENG_PRECISION_F32:
    default:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->rows, t->cols, t->k, 1.0f, t->a,
                    (int)t->lda, t->w + (size_t)t->col0 * t->k, t->k, 1.0f, t->c, (int)t->ldc);
        break;
    }
}
