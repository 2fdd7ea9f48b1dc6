/*
 * workspace.c - every buffer a forward pass needs, allocated once for a
 * maximum number of cells, and the thread pool that runs in them.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/qgemm.h"
#include "engine/workspace.h"

#define ALIGN 64

static void *alloc_aligned(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = ALIGN;
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    return posix_memalign(&p, ALIGN, bytes) == 0 ? p : NULL;
}

/* bytes = a * b * c * size, or 0 on overflow (the caller then fails). */
static size_t product(size_t a, size_t b, size_t c, size_t size)
{
    size_t r = size;
    size_t f[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        if (f[i] != 0 && r > SIZE_MAX / f[i]) return 0;
        r *= f[i];
    }
    return r;
}

/* Columns [0, out) in ceil(out / width) near-equal blocks whose boundaries
 * are multiples of `unit` (whole heads for qkv, 16 otherwise, the widest
 * row of OpenBLAS's x86 kernels). */
static int split_columns(eng__colsplit *s, int out, int unit, int width)
{
    int units = (out + unit - 1) / unit;
    int per = width / unit > 0 ? width / unit : 1;
    s->n = (units + per - 1) / per;
    s->start = malloc((size_t)(s->n + 1) * sizeof *s->start);
    if (!s->start) return -1;
    for (int b = 0; b <= s->n; b++) {
        int u = (int)((long)units * b / s->n);
        s->start[b] = u * unit < out ? u * unit : out;
    }
    return 0;
}

/* Sizes of the buffers of a workspace; 0 where a product overflows. */
typedef struct ws_sizes {
    size_t big_ld, scratch_stride, qscratch_stride;
    size_t d, big, qkv, v, rope, idx, grids, scratch, qscratch;
} ws_sizes;

static ws_sizes plan(const eng_model *m, int max_cells, int threads)
{
    const eng_hparams *hp = &m->hp;
    ws_sizes z;
    size_t cells = (size_t)max_cells, d = (size_t)hp->dim, f = (size_t)hp->mlp_hidden;
    size_t v = (size_t)hp->vocab_size;
    size_t positions = (size_t)(hp->max_height > hp->max_width ? hp->max_height : hp->max_width);
    z.big_ld = 3 * d > f ? 3 * d : f;
    /* Generation samples in the scratch (4 V floats); whole cache lines so
     * that threads never share one. */
    z.scratch_stride = (product(4, v, 1, sizeof(float)) + ALIGN - 1) / ALIGN * ALIGN;
    z.d = product(cells, d, 1, sizeof(float));
    z.big = product(cells, z.big_ld, 1, sizeof(float));
    z.qkv = product(3, cells, d, sizeof(float));
    z.v = product(cells, v, 1, sizeof(float));
    z.rope = product(positions, (size_t)hp->head_dim / 4, 1, sizeof(float));
    z.idx = product(cells + 1, 1, 1, sizeof(int32_t));
    z.grids = product(cells, 1, 1, sizeof(eng_grid));
    z.scratch = product(z.scratch_stride, (size_t)threads, 1, 1);
    /* int8: each thread quantizes the rows of its tile (at most
     * ENG__TILE_ROWS, forward.c) over the widest input, max(D, F). */
    z.qscratch_stride = 0;
    if (m->precision == ENG_PRECISION_INT8) {
        int rows = max_cells < ENG__TILE_ROWS ? max_cells : ENG__TILE_ROWS;
        int k = hp->dim > hp->mlp_hidden ? hp->dim : hp->mlp_hidden;
        z.qscratch_stride = ENG__QTAG + eng__qscratch_bytes(rows, k);
    }
    z.qscratch = product(z.qscratch_stride, (size_t)threads, 1, 1);
    return z;
}

/* Their sum (rounded up as alloc_aligned does), or SIZE_MAX on overflow. A
 * zero size is an overflow in product(), but for the rope tables, which are
 * empty when a head has nothing to rotate. */
static size_t plan_total(const ws_sizes *z)
{
    if (!z->d || !z->big || !z->qkv || !z->v || !z->idx || !z->grids || !z->scratch)
        return SIZE_MAX;
    if (z->qscratch_stride && !z->qscratch) return SIZE_MAX;
    const size_t parts[] = {z->d,   z->d,   z->big, z->qkv,   z->v,       z->rope,    z->rope,
                            z->idx, z->idx, z->idx, z->grids, z->scratch, z->qscratch};
    size_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i] > SIZE_MAX - ALIGN) return SIZE_MAX;
        size_t p = (parts[i] + ALIGN - 1) / ALIGN * ALIGN;
        if (total > SIZE_MAX - p) return SIZE_MAX;
        total += p;
    }
    return total;
}

size_t eng_workspace_bytes(const eng_model *m, int max_cells, int threads)
{
    if (!m || max_cells < 1 || threads < 1) return SIZE_MAX;
    ws_sizes z = plan(m, max_cells, threads);
    return plan_total(&z);
}

eng_workspace *eng_workspace_create(const eng_model *m, int max_cells, int threads, char *err,
                                    size_t errlen)
{
    if (!m) {
        eng__fail(err, errlen, ENG_EINVAL, "workspace needs a model");
        return NULL;
    }
    if (max_cells < 1) {
        eng__fail(err, errlen, ENG_ERANGE, "max_cells %d is below 1", max_cells);
        return NULL;
    }
    if (threads < 1 || threads > 1024) {
        eng__fail(err, errlen, ENG_ERANGE, "threads %d is outside 1..1024", threads);
        return NULL;
    }
    const eng_hparams *hp = &m->hp;
    /* Attention counts (head, cell) pairs in an int. */
    if ((long long)max_cells * hp->heads > INT_MAX) {
        eng__fail(err, errlen, ENG_ERANGE, "max_cells %d is too large for %d heads", max_cells,
                  hp->heads);
        return NULL;
    }
    size_t cells = (size_t)max_cells;
    size_t positions = (size_t)(hp->max_height > hp->max_width ? hp->max_height : hp->max_width);
    ws_sizes z = plan(m, max_cells, threads);

    eng_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) {
        eng__fail(err, errlen, ENG_ENOMEM, "no memory for a workspace");
        return NULL;
    }
    ws->m = m;
    ws->max_cells = max_cells;
    ws->threads = threads;
    ws->big_ld = z.big_ld;
    ws->scratch_stride = z.scratch_stride;
    ws->qscratch_stride = z.qscratch_stride;

    size_t sz_d = z.d, sz_big = z.big, sz_qkv = z.qkv, sz_v = z.v, sz_rope = z.rope;
    size_t sz_idx = z.idx, sz_scratch = z.scratch;
    if (!sz_d || !sz_big || !sz_qkv || !sz_v || !sz_scratch || !z.grids ||
        (z.qscratch_stride && !z.qscratch)) {
        eng__fail(err, errlen, ENG_ENOMEM, "a workspace of %d cells is too large", max_cells);
        eng_workspace_free(ws);
        return NULL;
    }
    ws->h = alloc_aligned(sz_d);
    ws->u = alloc_aligned(sz_d);
    ws->big = alloc_aligned(sz_big);
    ws->qkvh = alloc_aligned(sz_qkv);
    ws->logits = alloc_aligned(sz_v);
    ws->rope_cos = alloc_aligned(sz_rope);
    ws->rope_sin = alloc_aligned(sz_rope);
    ws->cell_grid = alloc_aligned(sz_idx);
    ws->grid_start = alloc_aligned(sz_idx);
    ws->tile_start = alloc_aligned(sz_idx);
    ws->grids = calloc(cells, sizeof *ws->grids);
    ws->scratch = alloc_aligned(sz_scratch);
    if (z.qscratch) ws->qscratch = alloc_aligned(z.qscratch);
    int ok = ws->h && ws->u && ws->big && ws->qkvh && ws->logits && ws->rope_cos && ws->rope_sin &&
             ws->cell_grid && ws->grid_start && ws->tile_start && ws->grids && ws->scratch &&
             (ws->qscratch || !z.qscratch);
    ok = ok &&
         split_columns(&ws->cols[ENG__MAT_QKV], 3 * hp->dim, hp->head_dim, ENG__TILE_COLS) == 0 &&
         split_columns(&ws->cols[ENG__MAT_PROJ], hp->dim, hp->dim, hp->dim) == 0 &&
         split_columns(&ws->cols[ENG__MAT_FC1], hp->mlp_hidden, 16, ENG__TILE_COLS) == 0 &&
         split_columns(&ws->cols[ENG__MAT_FC2], hp->dim, hp->dim, hp->dim) == 0 &&
         split_columns(&ws->cols[ENG__MAT_HEAD], hp->vocab_size, 16, ENG__TILE_COLS) == 0;
    if (!ok) {
        eng__fail(err, errlen, ENG_ENOMEM, "no memory for a workspace of %d cells", max_cells);
        eng_workspace_free(ws);
        return NULL;
    }
    eng__rope_tables(ws->rope_cos, ws->rope_sin, (int)positions, hp->head_dim, hp->rope_base);
    /* int8 tags of serial 0: no rows cached (eng_forward counts from 1). */
    for (int t = 0; ws->qscratch && t < threads; t++)
        memset(ws->qscratch + (size_t)t * ws->qscratch_stride, 0, ENG__QTAG);

    ws->pool = eng__pool_create(threads);
    if (!ws->pool) {
        eng__fail(err, errlen, ENG_ENOMEM, "cannot start %d threads", threads);
        eng_workspace_free(ws);
        return NULL;
    }
    return ws;
}

void eng_workspace_free(eng_workspace *ws)
{
    if (!ws) return;
    eng__pool_free(ws->pool);
    free(ws->h);
    free(ws->u);
    free(ws->big);
    free(ws->qkvh);
    free(ws->logits);
    free(ws->rope_cos);
    free(ws->rope_sin);
    free(ws->cell_grid);
    free(ws->grid_start);
    free(ws->tile_start);
    free(ws->grids);
    free(ws->scratch);
    free(ws->qscratch);
    for (int i = 0; i < ENG__MATS; i++)
        free(ws->cols[i].start);
    free(ws);
}

int eng_workspace_max_cells(const eng_workspace *ws)
{
    return ws->max_cells;
}

int eng_workspace_threads(const eng_workspace *ws)
{
    return ws->threads;
}

eng_pool *eng__ws_pool(eng_workspace *ws)
{
    return ws->pool;
}

const eng_model *eng__ws_model(const eng_workspace *ws)
{
    return ws->m;
}

eng_grid *eng__ws_grids(eng_workspace *ws)
{
    return ws->grids;
}

void *eng__ws_scratch(eng_workspace *ws, int thread)
{
    return ws->scratch + (size_t)thread * ws->scratch_stride;
}

void eng__ws_set_profile(eng_workspace *ws, eng__profile *p)
{
    ws->profile = p;
}
