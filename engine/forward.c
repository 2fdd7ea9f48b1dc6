/*
 * forward.c - the batched forward pass (MODEL.md section 3).
 *
 * The grids of a batch lie one after another in the workspace's cell rows.
 * The embedding phase also takes block 0's first LayerNorm (h -> u); then
 * each block is four tile phases and attention on the pool:
 *
 *   qkv:  big = bias + u Wqkv^T; q, k roped; all three copied head-major
 *   attention over (head, cell) into u
 *   proj: h += u Wproj^T + bias; u = LN2(h)
 *   fc1:  big = GELU(bias + u Wfc1^T)
 *   fc2:  h += big Wfc2^T + bias; u = next LN1(h), or the final LN
 *
 * and the head is one more tile phase: logits = bias + u Whead^T.
 *
 * The Linear layers are tiled (workspace.h): each tile is one sgemm with
 * OpenBLAS held to one thread, and the pool spreads the tiles. A single
 * sgemm over all cells would be simpler, but OpenBLAS 0.3.21's Haswell
 * kernel rounds a cell's row differently depending on where the row falls
 * in the call: first or second half of a 12-row panel, a remainder panel of
 * 8 or 4, and the rows each thread takes (measured: a grid's logits change
 * with the grids before it and with the thread count). A tile's geometry
 * depends only on its grid, so every cell's result is reproducible;
 * tests/engine/test_forward.c checks it bit for bit. Each tile's epilogue
 * (GELU, rope, residual bias) runs while its block is still in cache.
 */
#include <cblas.h>
#include <string.h>
#include <time.h>

#include "engine/kernels.h"
#include "engine/linear.h"
#include "engine/seed.h"
#include "engine/workspace.h"

/* What every phase of one call reads. */
typedef struct pass {
    eng_workspace *ws;
    const eng_model *m;
    const eng_grid *grids;
    int cells; /* in the batch */
    const eng_layer *layer;
} pass;

/* One Linear layer over all tiles (gemm_task). */
typedef struct gemm {
    const pass *ps;
    int mat;
    const float *a;
    size_t lda;
    const float *w; /* [out, k] */
    int k;
    const float *bias; /* [out] */
    float *c;
    size_t ldc;
    const float *norm_w, *norm_b; /* proj, fc2: the LayerNorm that reads h next */
} gemm;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void eng__ws_run(eng_workspace *ws, int phase, int n, eng_task_fn fn, void *arg)
{
    eng__profile *prof = ws->profile;
    double t0 = prof ? now() : 0.0;
    eng__pool_run(ws->pool, n, fn, arg);
    if (prof) prof->seconds[phase] += now() - t0;
}

/* Row and column of batch cell c within its grid. */
static void cell_pos(const pass *ps, int c, int *y, int *x)
{
    int g = ps->ws->cell_grid[c];
    int local = c - ps->ws->grid_start[g], w = ps->grids[g].width;
    *y = local / w;
    *x = local % w;
}

/* h = tok_emb[tokens], then u = LN1(h) of block 0. */
static void embed_task(void *arg, int begin, int end, int thread)
{
    const pass *ps = arg;
    const eng_hparams *hp = &ps->m->hp;
    const eng_layer *l0 = &ps->m->layers[0];
    size_t d = (size_t)hp->dim;
    for (int c = begin; c < end; c++) {
        int g = ps->ws->cell_grid[c];
        const int32_t *tok = ps->grids[g].tokens + (c - ps->ws->grid_start[g]);
        float *h = ps->ws->h + c * d;
        eng__embed(h, ps->m->tok_emb, tok, 1, hp->dim);
        if (ps->m->pos_emb) { /* the optional absolute position table */
            int y, x;
            cell_pos(ps, c, &y, &x);
            const float *p = ps->m->pos_emb + ((size_t)y * (size_t)hp->max_width + (size_t)x) * d;
            for (size_t i = 0; i < d; i++)
                h[i] += p[i];
        }
        eng__layernorm(h, ps->ws->u + c * d, l0->norm1_w, l0->norm1_b, hp->dim, hp->norm_eps);
    }
}

/* Stores each head vector of the block head-major, where attention reads
 * them contiguously: q and k roped on the way (one pass), v copied. */
static void qkv_epilogue(const pass *ps, int row0, int rows, int col0, int col1)
{
    const eng_hparams *hp = &ps->m->hp;
    eng_workspace *ws = ps->ws;
    int dh = hp->head_dim, d = hp->dim;
    for (int r = row0; r < row0 + rows; r++) {
        int y, x;
        cell_pos(ps, r, &y, &x);
        const float *src = ws->big + (size_t)r * ws->big_ld;
        for (int col = col0; col < col1; col += dh) {
            int part = col / d, head = (col % d) / dh; /* part 0 q, 1 k, 2 v */
            float *dst = ws->qkvh + ((size_t)(part * hp->heads + head) * ws->max_cells + r) * dh;
            if (part < 2)
                eng__rope_store(dst, src + col, dh, y, x, ws->rope_cos, ws->rope_sin);
            else
                memcpy(dst, src + col, (size_t)dh * sizeof *dst);
        }
    }
}

/*
 * One tile: c[rows, col0..col0+cols) += a w^T, all with beta = 1. Layers
 * that write a fresh block (qkv, fc1, head) first fill it with the bias,
 * which spares OpenBLAS its zeroing pass and the epilogue a bias pass. The
 * residual layers (proj, fc2) add into h, whose tiles span whole rows (one
 * column block): their epilogue adds the bias and runs the LayerNorm that
 * comes next into u, while the rows are in cache. Those u rows are this
 * tile's own (for proj, the attention output it has just consumed), so no
 * other tile reads them.
 */
static void gemm_task(void *arg, int begin, int end, int thread)
{
    const gemm *g = arg;
    const pass *ps = g->ps;
    const eng_hparams *hp = &ps->m->hp;
    const eng__colsplit *cs = &ps->ws->cols[g->mat];
    int residual = g->mat == ENG__MAT_PROJ || g->mat == ENG__MAT_FC2;
    for (int i = begin; i < end; i++) {
        int tile = i / cs->n, blk = i % cs->n;
        int row0 = ps->ws->tile_start[tile], rows = ps->ws->tile_start[tile + 1] - row0;
        int col0 = cs->start[blk], cols = cs->start[blk + 1] - col0;
        float *c = g->c + (size_t)row0 * g->ldc + col0;
        if (!residual)
            for (int r = 0; r < rows; r++)
                memcpy(c + (size_t)r * g->ldc, g->bias + col0, (size_t)cols * sizeof *c);
        eng__linear t = {.mat = g->mat,
                         .layer = (int)(ps->layer - ps->m->layers),
                         .rows = rows,
                         .cols = cols,
                         .k = g->k,
                         .col0 = col0,
                         .a = g->a + (size_t)row0 * g->lda,
                         .lda = g->lda,
                         .w = g->w,
                         .c = c,
                         .ldc = g->ldc,
                         .thread = thread};
        eng__linear_tile(ps->ws, &t);
        if (g->mat == ENG__MAT_QKV) {
            qkv_epilogue(ps, row0, rows, col0, col0 + cols);
        } else if (g->mat == ENG__MAT_FC1) {
            for (int r = 0; r < rows; r++)
                eng__gelu(c + (size_t)r * g->ldc, cols);
        } else if (residual) {
            for (int r = row0; r < row0 + rows; r++) {
                float *h = g->c + (size_t)r * g->ldc;
                eng__bias_layernorm(h, g->bias, ps->ws->u + (size_t)r * hp->dim, g->norm_w,
                                    g->norm_b, hp->dim, hp->norm_eps);
            }
        }
    }
}

static void run_gemm(const pass *ps, int phase, gemm *g)
{
    eng__ws_run(ps->ws, phase, ps->ws->n_tiles * ps->ws->cols[g->mat].n, gemm_task, g);
}

/* Attention of (head, cell) pairs, head-major: i = head * cells + cell. */
static void attention_task(void *arg, int begin, int end, int thread)
{
    const pass *ps = arg;
    const eng_workspace *ws = ps->ws;
    const eng_hparams *hp = &ps->m->hp;
    int layer = (int)(ps->layer - ps->m->layers);
    size_t dh = (size_t)hp->head_dim, plane = (size_t)ws->max_cells * dh;
    for (int i = begin; i < end;) {
        int head = i / ps->cells, c = i % ps->cells;
        int g = ws->cell_grid[c], first = ws->grid_start[g];
        int stop = ws->grid_start[g + 1];
        if (stop > end - head * ps->cells) stop = end - head * ps->cells;
        const float *q = ws->qkvh + (size_t)head * plane + (size_t)first * dh;
        eng__attn a = {
            .q = q,
            .k = q + (size_t)hp->heads * plane,
            .v = q + 2 * (size_t)hp->heads * plane,
            .ld = dh,
            .out = ws->u + (size_t)first * hp->dim + (size_t)head * dh,
            .ldo = (size_t)hp->dim,
            .height = ps->grids[g].height,
            .width = ps->grids[g].width,
            .head_dim = hp->head_dim,
            .radius = hp->window[layer],
            .dilation = hp->dilation[layer],
        };
        eng__attention(&a, c - first, stop - first);
        i += stop - c;
    }
}

int eng__ws_layout(eng_workspace *ws, const eng_grid *grids, int n, int square, int *cells_out)
{
    const eng_hparams *hp = &ws->m->hp;
    long cells = 0;
    for (int g = 0; g < n; g++) {
        const eng_grid *gr = &grids[g];
        if (gr->height < 1 || gr->height > hp->max_height || gr->width < 1 ||
            gr->width > hp->max_width || (square && gr->height != gr->width) || !gr->tokens)
            return ENG_EINVAL;
        cells += (long)gr->height * gr->width;
        if (cells > ws->max_cells) return ENG_ECAPACITY;
    }
    int c = 0, tiles = 0;
    for (int g = 0; g < n; g++) {
        int gc = grids[g].height * grids[g].width;
        for (int i = 0; i < gc; i++)
            if (grids[g].tokens[i] < 0 || grids[g].tokens[i] >= hp->vocab_size) return ENG_EINVAL;
        ws->grid_start[g] = c;
        for (int i = 0; i < gc; i++)
            ws->cell_grid[c + i] = g;
        int parts = (gc + ENG__TILE_ROWS - 1) / ENG__TILE_ROWS;
        if (parts < 2 && gc >= ENG__TILE_ROWS / 2) parts = 2;
        for (int p = 0; p < parts; p++)
            ws->tile_start[tiles++] = c + (int)((long)gc * p / parts);
        c += gc;
    }
    ws->grid_start[n] = c;
    ws->tile_start[tiles] = c;
    ws->n_tiles = tiles;
    *cells_out = c;
    return ENG_OK;
}

int eng_forward(eng_workspace *ws, const eng_grid *grids, int n, const float **logits)
{
    if (!ws || !logits || n < 0 || (n > 0 && !grids)) return ENG_EINVAL;
    if (ws->m->arch == ENG__ARCH_SEED) return eng__seed_forward(ws, grids, n, logits);
    int cells;
    int rc = eng__ws_layout(ws, grids, n, 0, &cells);
    if (rc != ENG_OK) return rc;
    *logits = ws->logits;
    if (cells == 0) return ENG_OK;
    ws->serial++;

    const eng_model *m = ws->m;
    const eng_hparams *hp = &m->hp;
    size_t d = (size_t)hp->dim;
    /* Process-wide in OpenBLAS: every call sets it, since tiles must run
     * single-threaded for their results to be reproducible. */
    openblas_set_num_threads(1);
    if (ws->profile) ws->profile->calls++;

    pass ps = {.ws = ws, .m = m, .grids = grids, .cells = cells, .layer = m->layers};
    eng__ws_run(ws, ENG__PH_EMBED, cells, embed_task, &ps);
    for (int l = 0; l < hp->depth; l++) {
        const eng_layer *ly = &m->layers[l];
        /* The LayerNorm after this block: the next block's norm1, or the final one. */
        const float *next_w = l + 1 < hp->depth ? m->layers[l + 1].norm1_w : m->norm_w;
        const float *next_b = l + 1 < hp->depth ? m->layers[l + 1].norm1_b : m->norm_b;
        ps.layer = ly;
        gemm qkv = {.ps = &ps,
                    .mat = ENG__MAT_QKV,
                    .a = ws->u,
                    .lda = d,
                    .w = ly->qkv_w,
                    .k = hp->dim,
                    .bias = ly->qkv_b,
                    .c = ws->big,
                    .ldc = ws->big_ld};
        run_gemm(&ps, ENG__PH_QKV, &qkv);
        eng__ws_run(ws, ENG__PH_ATTENTION, hp->heads * cells, attention_task, &ps);
        gemm proj = {.ps = &ps,
                     .mat = ENG__MAT_PROJ,
                     .a = ws->u,
                     .lda = d,
                     .w = ly->proj_w,
                     .k = hp->dim,
                     .bias = ly->proj_b,
                     .c = ws->h,
                     .ldc = d,
                     .norm_w = ly->norm2_w,
                     .norm_b = ly->norm2_b};
        run_gemm(&ps, ENG__PH_PROJ, &proj);
        gemm fc1 = {.ps = &ps,
                    .mat = ENG__MAT_FC1,
                    .a = ws->u,
                    .lda = d,
                    .w = ly->fc1_w,
                    .k = hp->dim,
                    .bias = ly->fc1_b,
                    .c = ws->big,
                    .ldc = ws->big_ld};
        run_gemm(&ps, ENG__PH_FC1, &fc1);
        gemm fc2 = {.ps = &ps,
                    .mat = ENG__MAT_FC2,
                    .a = ws->big,
                    .lda = ws->big_ld,
                    .w = ly->fc2_w,
                    .k = hp->mlp_hidden,
                    .bias = ly->fc2_b,
                    .c = ws->h,
                    .ldc = d,
                    .norm_w = next_w,
                    .norm_b = next_b};
        run_gemm(&ps, ENG__PH_FC2, &fc2);
    }
    gemm head = {.ps = &ps,
                 .mat = ENG__MAT_HEAD,
                 .a = ws->u,
                 .lda = d,
                 .w = m->head_w,
                 .k = hp->dim,
                 .bias = m->head_b,
                 .c = ws->logits,
                 .ldc = (size_t)hp->vocab_size};
    run_gemm(&ps, ENG__PH_HEAD, &head);
    return ENG_OK;
}
