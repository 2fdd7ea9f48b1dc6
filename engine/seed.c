/*
 * seed.c - the forward pass of nonlinear-transformer-0.0.3 (MODEL.md
 * section 7), the seed package's NonLinearTransformer, quirks included.
 *
 * Per block l, over every cell of the batch (LN_l is the block's one
 * LayerNorm, used twice; attention is single-head with q = k = v):
 *
 *   u  = LN_l(h)                          (embed, or the previous post phase)
 *   x1 = h + attn(u, window_l); t = LN_l(x1)        block attention phase
 *   big = GELU(t W1^T + b1)                                       fc1 tiles
 *   t = big W2^T + b2; h = h + (x1 + t)    fc2 tiles (the double residual)
 *   x1 = attn(h, model_window)                 model-level attention phase
 *   h += x1; then u = LN_{l+1}(h), or h += pos after the last block    post
 *
 * and logits = h Wout^T + bout in head tiles. Attention reads every cell of
 * its window, so each attention is a phase of its own before anything
 * overwrites what it reads. The Linear layers run as forward.c's do: tiles
 * of one grid's rows (workspace.h), each a single-threaded sgemm, so a
 * cell's result never depends on the rest of the batch or the thread count.
 * Buffers are the workspace's own: x1 and t are the first two planes of
 * qkvh, which a one-head model sizes at 3 x max_cells x D.
 */
#include <cblas.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/seed.h"
#include "engine/workspace.h"

/* What every phase of one call reads. */
typedef struct spass {
    eng_workspace *ws;
    const eng_model *m;
    const eng_grid *grids;
    int layer;
    float *x1, *t; /* [max_cells, D] each */
} spass;

/* One Linear layer over all tiles: c = bias + a w^T, then an epilogue. */
typedef struct sgemm {
    const spass *ps;
    int mat; /* ENG__MAT_FC1, _FC2 or _HEAD: its column split */
    const float *a;
    size_t lda;
    const float *w; /* [out, k] */
    int k;
    const float *bias; /* [out] */
    float *c;
    size_t ldc;
} sgemm;

static const eng_layer *layer_of(const spass *ps)
{
    return &ps->m->layers[ps->layer];
}

/* h = embedding[tokens], u = LN_0(h). */
static void embed_task(void *arg, int begin, int end, int thread)
{
    const spass *ps = arg;
    const eng_hparams *hp = &ps->m->hp;
    const eng_layer *l0 = &ps->m->layers[0];
    size_t d = (size_t)hp->dim;
    for (int c = begin; c < end; c++) {
        int g = ps->ws->cell_grid[c];
        const int32_t *tok = ps->grids[g].tokens + (c - ps->ws->grid_start[g]);
        float *h = ps->ws->h + c * d;
        eng__embed(h, ps->m->tok_emb, tok, 1, hp->dim);
        eng__layernorm(h, ps->ws->u + c * d, l0->norm1_w, l0->norm1_b, hp->dim, hp->norm_eps);
    }
}

/*
 * Single-head attention with q = k = v = x over the cells [begin, end) into
 * out, a grid at a time: the package's Local2DAttention, whose scale
 * dim^-1/2 is eng__attention's 1/sqrt(head_dim) with one head of width D.
 * Then `after` (if any) runs on each of those cells, whose out rows are final.
 */
static void attend_cells(const spass *ps, const float *x, float *out, int radius, int begin,
                         int end, void (*after)(const spass *, int))
{
    const eng_workspace *ws = ps->ws;
    size_t d = (size_t)ps->m->hp.dim;
    for (int c = begin; c < end;) {
        int g = ws->cell_grid[c], first = ws->grid_start[g];
        int stop = ws->grid_start[g + 1] < end ? ws->grid_start[g + 1] : end;
        eng__attn a = {.q = x + (size_t)first * d,
                       .k = x + (size_t)first * d,
                       .v = x + (size_t)first * d,
                       .ld = d,
                       .out = out + (size_t)first * d,
                       .ldo = d,
                       .height = ps->grids[g].height,
                       .width = ps->grids[g].width,
                       .head_dim = (int)d,
                       .radius = radius,
                       .dilation = 1};
        eng__attention(&a, c - first, stop - first);
        for (int i = c; after && i < stop; i++)
            after(ps, i);
        c = stop;
    }
}

/* x1 = h + attention; t = LN_l(x1), the block's norm a second time. */
static void after_block_attn(const spass *ps, int c)
{
    const eng_hparams *hp = &ps->m->hp;
    size_t d = (size_t)hp->dim;
    float *x1 = ps->x1 + c * d;
    const float *h = ps->ws->h + c * d;
    for (size_t i = 0; i < d; i++)
        x1[i] = h[i] + x1[i];
    eng__layernorm(x1, ps->t + c * d, layer_of(ps)->norm1_w, layer_of(ps)->norm1_b, hp->dim,
                   hp->norm_eps);
}

static void block_attn_task(void *arg, int begin, int end, int thread)
{
    const spass *ps = arg;
    attend_cells(ps, ps->ws->u, ps->x1, ps->m->hp.window[ps->layer], begin, end, after_block_attn);
}

/* x1 = attention over h itself (no norm), radius model_window. */
static void model_attn_task(void *arg, int begin, int end, int thread)
{
    const spass *ps = arg;
    attend_cells(ps, ps->ws->h, ps->x1, ps->m->seed_window, begin, end, NULL);
}

/*
 * h += x1 (the model-level attention); then the next block's u = LN(h), or,
 * after the last block, the package's "rotary" frequencies added as values:
 * its table is [H, D] (row frequencies then column ones, equal on a square
 * grid) and broadcasts over the last two axes [W, D], so the cell (y, x)
 * gets x * inv_freq[j mod D/2] in float32, one product as torch forms it.
 */
static void post_task(void *arg, int begin, int end, int thread)
{
    const spass *ps = arg;
    const eng_model *m = ps->m;
    const eng_hparams *hp = &m->hp;
    size_t d = (size_t)hp->dim, half = d / 2;
    int last = ps->layer + 1 == hp->depth;
    for (int c = begin; c < end; c++) {
        float *h = ps->ws->h + c * d;
        const float *a = ps->x1 + c * d;
        for (size_t i = 0; i < d; i++)
            h[i] += a[i];
        if (!last) {
            const eng_layer *nx = &m->layers[ps->layer + 1];
            eng__layernorm(h, ps->ws->u + c * d, nx->norm1_w, nx->norm1_b, hp->dim, hp->norm_eps);
            continue;
        }
        int g = ps->ws->cell_grid[c];
        float x = (float)((c - ps->ws->grid_start[g]) % ps->grids[g].width);
        for (size_t i = 0; i < d; i++)
            h[i] += x * m->pos_freq[i < half ? i : i - half];
    }
}

/* One tile per task index: c = bias, c += a w^T, then the layer's epilogue. */
static void gemm_task(void *arg, int begin, int end, int thread)
{
    const sgemm *g = arg;
    const spass *ps = g->ps;
    const eng_workspace *ws = ps->ws;
    const eng__colsplit *cs = &ws->cols[g->mat];
    size_t d = (size_t)ps->m->hp.dim;
    for (int i = begin; i < end; i++) {
        int tile = i / cs->n, blk = i % cs->n;
        int row0 = ws->tile_start[tile], rows = ws->tile_start[tile + 1] - row0;
        int col0 = cs->start[blk], cols = cs->start[blk + 1] - col0;
        float *c = g->c + (size_t)row0 * g->ldc + col0;
        for (int r = 0; r < rows; r++)
            memcpy(c + (size_t)r * g->ldc, g->bias + col0, (size_t)cols * sizeof *c);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, g->k, 1.0f,
                    g->a + (size_t)row0 * g->lda, (int)g->lda, g->w + (size_t)col0 * g->k, g->k,
                    1.0f, c, (int)g->ldc);
        if (g->mat == ENG__MAT_FC1) {
            for (int r = 0; r < rows; r++)
                eng__gelu(c + (size_t)r * g->ldc, cols);
        } else if (g->mat == ENG__MAT_FC2) {
            /* The block's output x1 + mlp is added to its input again. */
            for (int r = row0; r < row0 + rows; r++) {
                float *t = ps->t + r * d, *h = ws->h + r * d;
                const float *x1 = ps->x1 + r * d;
                for (size_t j = 0; j < d; j++)
                    h[j] = h[j] + (x1[j] + t[j]);
            }
        }
    }
}

static void run_gemm(const spass *ps, int phase, sgemm *g)
{
    eng__ws_run(ps->ws, phase, ps->ws->n_tiles * ps->ws->cols[g->mat].n, gemm_task, g);
}

int eng__seed_forward(eng_workspace *ws, const eng_grid *grids, int n, const float **logits)
{
    if (!ws || !logits || n < 0 || (n > 0 && !grids)) return ENG_EINVAL;
    int cells;
    int rc = eng__ws_layout(ws, grids, n, 1, &cells); /* square grids only */
    if (rc != ENG_OK) return rc;
    *logits = ws->logits;
    if (cells == 0) return ENG_OK;

    const eng_model *m = ws->m;
    const eng_hparams *hp = &m->hp;
    size_t d = (size_t)hp->dim;
    openblas_set_num_threads(1); /* tiles run single-threaded: see forward.c */
    if (ws->profile) ws->profile->calls++;

    spass ps = {.ws = ws,
                .m = m,
                .grids = grids,
                .layer = 0,
                .x1 = ws->qkvh,
                .t = ws->qkvh + (size_t)ws->max_cells * d};
    eng__ws_run(ws, ENG__PH_EMBED, cells, embed_task, &ps);
    for (int l = 0; l < hp->depth; l++) {
        const eng_layer *ly = &m->layers[l];
        ps.layer = l;
        eng__ws_run(ws, ENG__PH_ATTENTION, cells, block_attn_task, &ps);
        sgemm fc1 = {.ps = &ps,
                     .mat = ENG__MAT_FC1,
                     .a = ps.t,
                     .lda = d,
                     .w = ly->fc1_w,
                     .k = hp->dim,
                     .bias = ly->fc1_b,
                     .c = ws->big,
                     .ldc = ws->big_ld};
        run_gemm(&ps, ENG__PH_FC1, &fc1);
        sgemm fc2 = {.ps = &ps,
                     .mat = ENG__MAT_FC2,
                     .a = ws->big,
                     .lda = ws->big_ld,
                     .w = ly->fc2_w,
                     .k = hp->mlp_hidden,
                     .bias = ly->fc2_b,
                     .c = ps.t,
                     .ldc = d};
        run_gemm(&ps, ENG__PH_FC2, &fc2);
        eng__ws_run(ws, ENG__PH_ATTENTION, cells, model_attn_task, &ps);
        eng__ws_run(ws, ENG__PH_PROJ, cells, post_task, &ps);
    }
    sgemm head = {.ps = &ps,
                  .mat = ENG__MAT_HEAD,
                  .a = ws->h,
                  .lda = d,
                  .w = m->head_w,
                  .k = hp->dim,
                  .bias = m->head_b,
                  .c = ws->logits,
                  .ldc = (size_t)hp->vocab_size};
    run_gemm(&ps, ENG__PH_HEAD, &head);
    return ENG_OK;
}
