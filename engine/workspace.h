/*
 * workspace.h - the workspace's layout, shared by workspace.c (which sizes
 * and allocates it) and forward.c (which runs in it). Internal to the engine;
 * the benchmark reads the phase profile.
 */
#ifndef HEPTAPOD_ENG_WORKSPACE_H
#define HEPTAPOD_ENG_WORKSPACE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/internal.h"

/*
 * The projections run as tiles: rows of one grid times a block of output
 * columns, each tile one single-threaded sgemm. OpenBLAS rounds a row
 * differently depending on where it falls in its kernel's panels, and those
 * panels follow the call's row count and thread split; a tile's geometry
 * depends only on its grid and the model, so a cell's result never depends
 * on the rest of the batch or on the thread count (see forward.c).
 *
 * A grid of n cells is cut into ceil(n / ENG__TILE_ROWS) tiles of near-equal
 * size, and into two at least if n >= ENG__TILE_ROWS / 2 (so that a lone
 * small grid still keeps two threads busy); the output columns of qkv, fc1
 * and the head into blocks of about ENG__TILE_COLS (whole heads for qkv),
 * those of proj and fc2 not at all, since their tiles end in a LayerNorm of
 * whole rows. Each tile packs its weight block and its rows once, so larger
 * tiles pack less.
 */
#ifndef ENG__TILE_ROWS
#define ENG__TILE_ROWS 256
#endif
#ifndef ENG__TILE_COLS
#define ENG__TILE_COLS 256
#endif

/* Bytes at the head of each thread's int8 scratch for its tag (linear.c). */
#define ENG__QTAG 64

/* The Linear layers, for their column blocks. */
enum { ENG__MAT_QKV, ENG__MAT_PROJ, ENG__MAT_FC1, ENG__MAT_FC2, ENG__MAT_HEAD, ENG__MATS };

typedef struct eng__colsplit {
    int n;      /* blocks */
    int *start; /* [n + 1] first column of each block, then the width */
} eng__colsplit;

/* Phases of the forward pass, for the optional profile. */
enum {
    ENG__PH_EMBED,     /* embedding gather + first LayerNorm */
    ENG__PH_QKV,       /* qkv sgemm + bias, rope, head-major copy */
    ENG__PH_ATTENTION, /* local attention */
    ENG__PH_PROJ,      /* proj sgemm + bias + LayerNorm */
    ENG__PH_FC1,       /* fc1 sgemm + bias + GELU */
    ENG__PH_FC2,       /* fc2 sgemm + bias + LayerNorm */
    ENG__PH_HEAD,      /* logits sgemm + bias */
    ENG__PHASES
};

/** Wall-clock seconds spent per phase, summed over eng_forward calls. */
typedef struct eng__profile {
    double seconds[ENG__PHASES];
    long calls;
} eng__profile;

struct eng_workspace {
    const eng_model *m;
    int max_cells, threads;
    eng_pool *pool;

    float *h;                   /* [max_cells, D] residual stream */
    float *u;                   /* [max_cells, D] LayerNorm output, then attention output */
    float *big;                 /* [max_cells, big_ld] qkv projection, then MLP hidden */
    size_t big_ld;              /* max(3D, F) */
    float *qkvh;                /* [3][heads][max_cells][dh] roped q, roped k, v, head-major */
    float *logits;              /* [max_cells, V] */
    float *rope_cos, *rope_sin; /* [positions][dh / 4], positions = max(max_h, max_w) */

    /* The current batch, laid out by eng_forward. */
    int32_t *cell_grid;  /* [max_cells] grid of each batch cell */
    int32_t *grid_start; /* [max_cells + 1] first batch cell of each grid */
    int32_t *tile_start; /* [max_cells + 1] first batch cell of each row tile */
    int n_tiles;
    eng__colsplit cols[ENG__MATS];

    eng_grid *grids;        /* [max_cells] for eng_step (eng__ws_grids) */
    unsigned char *scratch; /* [threads][scratch_stride], 64-byte aligned */
    size_t scratch_stride;
    unsigned char *qscratch; /* int8: [threads][qscratch_stride] a tag of ENG__QTAG bytes, then
                                the last tile's rows quantized (linear.c); bf16: the
                                tile's rows rounded (bgemm.h); f32: NULL */
    size_t qscratch_stride;
    unsigned long serial; /* eng_forward calls so far: dates the rows in qscratch */

    eng__profile *profile; /* NULL unless eng__ws_set_profile set one */
};

/**
 * Checks a batch against ws's model (sizes within its limits, square if
 * `square`, ids in the vocabulary, cells within the workspace) and lays it
 * out: grid_start, cell_grid and the row tiles, whose geometry depends only
 * on each grid (so a cell's result never depends on its batch-mates). Both
 * architectures' forward passes start here. ENG_EINVAL or ENG_ECAPACITY.
 */
int eng__ws_layout(eng_workspace *ws, const eng_grid *grids, int n, int square, int *cells_out);

/** Runs fn over [0, n) on ws's pool (eng__pool_run), adding its wall time to
 *  the profile's `phase` when one is set (eng__ws_set_profile). */
void eng__ws_run(eng_workspace *ws, int phase, int n, eng_task_fn fn, void *arg);

/** Times every following eng_forward on ws into p (NULL: stop timing).
 *  p is borrowed and must outlive its use. */
void eng__ws_set_profile(eng_workspace *ws, eng__profile *p);

#endif
