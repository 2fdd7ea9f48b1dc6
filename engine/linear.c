/*
 * linear.c - a Linear layer's tile in the model's precision (linear.h).
 */
#include <cblas.h>

#include "engine/bgemm.h"
#include "engine/linear.h"

/* The widest k of the model's Linear layers: D, or F for fc2. */
static int max_k(const eng_hparams *hp)
{
    return hp->mlp_hidden > hp->dim ? hp->mlp_hidden : hp->dim;
}

size_t eng__linear_scratch_bytes(const eng_model *m, int rows)
{
    switch (m->precision) {
    case ENG_PRECISION_BF16:
        return eng__bgemm_scratch_bytes(rows, max_k(&m->hp));
    case ENG_PRECISION_F32:
    default:
        return 0;
    }
}

/* bf16: weights packed at load, rows rounded into the thread's scratch. */
static void tile_bf16(eng_workspace *ws, const eng__linear *t)
{
    eng__bgemm g = {.rows = t->rows,
                    .cols = t->cols,
                    .k = t->k,
                    .col0 = t->col0,
                    .a = t->a,
                    .lda = t->lda,
                    .w = eng__bgemm_weight(ws->m, t->mat, t->layer),
                    .c = t->c,
                    .ldc = t->ldc,
                    .scratch =
                        (uint32_t *)(void *)(ws->lin_scratch + (size_t)t->thread * ws->lin_stride)};
    eng__bgemm_run(&g, eng__isa());
}

void eng__linear_tile(eng_workspace *ws, const eng__linear *t)
{
    switch (ws->m->precision) {
    case ENG_PRECISION_BF16:
        tile_bf16(ws, t);
        break;
    case ENG_PRECISION_F32:
    default:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t->rows, t->cols, t->k, 1.0f, t->a,
                    (int)t->lda, t->w + (size_t)t->col0 * t->k, t->k, 1.0f, t->c, (int)t->ldc);
        break;
    }
}
