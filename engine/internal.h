/*
 * internal.h - what the engine's own files share and nothing outside calls.
 */
#ifndef HEPTAPOD_ENG_INTERNAL_H
#define HEPTAPOD_ENG_INTERNAL_H

#include "eng.h"

/* Weights of one block; every pointer is into the mapping or into
 * eng_model.owned, never separately allocated. Shapes as PyTorch stores them.
 * A nonlinear-transformer-0.0.3 block (seed.c) has one LayerNorm, held in
 * norm1_w / norm1_b (norm.gamma, norm.beta), and its MLP in fc1 / fc2
 * (mlp.0, mlp.2); its other pointers are NULL. */
typedef struct eng_layer {
    const float *norm1_w, *norm1_b; /* [D] */
    const float *qkv_w;             /* [3D, D] */
    const float *qkv_b;             /* [3D] */
    const float *proj_w;            /* [D, D] */
    const float *proj_b;            /* [D] */
    const float *norm2_w, *norm2_b; /* [D] */
    const float *fc1_w;             /* [F, D] */
    const float *fc1_b;             /* [F] */
    const float *fc2_w;             /* [D, F] */
    const float *fc2_b;             /* [D] */
} eng_layer;

typedef struct eng_meta_entry {
    char *key, *value;
} eng_meta_entry;

/* Architectures a checkpoint's `arch` names (MODEL.md sections 3 and 7). */
typedef enum eng__arch { ENG__ARCH_V1 = 0, ENG__ARCH_SEED = 1 } eng__arch;
#define ENG__ARCH_SEED_NAME ENG_ARCH_SEED

struct eng_model {
    eng_hparams hp;          /* hp.window / hp.dilation point at the arrays below */
    eng__arch arch;
    int seed_window;         /* seed arch: radius of the model-level attention */
    int seed_top_k;          /* seed arch: top_k of a request that sets none (0: none) */
    const float *pos_freq;   /* seed arch: [D/2] rotary_emb.inv_freq */
    eng_precision precision;
    int *window;             /* [L] */
    int *dilation;           /* [L] */
    const float *tok_emb;    /* [V, D] */
    const float *pos_emb;    /* [max_height, max_width, D], or NULL (optional) */
    eng_layer *layers;       /* [L] */
    const float *norm_w, *norm_b; /* [D] */
    const float *head_w;     /* [V, D] */
    const float *head_b;     /* [V] */
    char *path;
    eng_meta_entry *meta;    /* [n_meta] */
    int n_meta;
    void *map;               /* the mmap of the file */
    size_t map_len;
    float *owned;            /* converted tensors (F16/BF16/misaligned), one block */
    size_t owned_bytes;      /* its size */
    void *bf16;              /* precision bf16: the Linear weights packed (bgemm.h), one block */
    size_t bf16_bytes;       /* its size */
    struct eng__qmat *q8;    /* int8: [depth * 4 + 1] qkv, proj, fc1, fc2 of each block,
                                then the head (qgemm.h); NULL at other precisions */
    void *q8_mem;            /* their packed weights, scales and sums, one block */
    size_t q8_bytes;         /* q8_mem's size plus q8's */
};

/* --- int8 weights (engine/q8model.c) ----------------------------------------
 * Quantizes every Linear weight of m into m->q8 (qgemm.h). Returns ENG_OK,
 * or an error code with a message (without the path) in msg. eng__q8_free
 * releases what it made (safe on a model without). */
int eng__q8_build(eng_model *m, char *msg, size_t msglen);
void eng__q8_free(eng_model *m);

/* --- thread pool (engine/pool.c) ---------------------------------------------
 * A fixed set of threads owned by a workspace. eng__pool_run splits [0, n) into
 * contiguous chunks, one per thread (the calling thread takes part), calls
 * fn(arg, begin, end, thread) for each and returns when all are done. The
 * split depends only on n and the thread count. */
typedef struct eng_pool eng_pool;
typedef void (*eng_task_fn)(void *arg, int begin, int end, int thread);
eng_pool *eng__pool_create(int threads);
void eng__pool_free(eng_pool *p);
int eng__pool_threads(const eng_pool *p);
void eng__pool_run(eng_pool *p, int n, eng_task_fn fn, void *arg);

/* --- workspace internals used by generation (engine/workspace.c) -----------
 * eng_step needs, without allocating: the pool, an eng_grid array of
 * max_cells entries, and per-thread scratch of at least
 * 4 * vocab_size * sizeof(float) bytes, 64-byte aligned. */
eng_pool *eng__ws_pool(eng_workspace *ws);
const eng_model *eng__ws_model(const eng_workspace *ws);
eng_grid *eng__ws_grids(eng_workspace *ws);
void *eng__ws_scratch(eng_workspace *ws, int thread);

/* --- shared by both architectures' eng_step (engine/generate.c) ------------
 * eng__gen_in_batch: the state has an iteration to run and cells to fill.
 * eng__gen_forward: one batched forward pass over those states, in order;
 * *cells is their cell count (0: nothing ran, *logits untouched).
 * ENG_ECAPACITY if they exceed the workspace. */
int eng__gen_in_batch(const eng_gen *g);
int eng__gen_forward(eng_workspace *ws, eng_gen *const *gens, int n, int *cells,
                     const float **logits);

/* What every architecture's eng_gen_init checks (engine/generate.c):
 * eng__check_sampling the settings both use (temperature, top_k, top_p,
 * remask_noise); eng__scan_given the given ids of a height x width grid (NULL:
 * all open), each ENG_OPEN or inside the vocabulary, the mask token only if
 * allow_mask, counting the open cells into *n_open. ENG_OK or ENG_ERANGE with
 * a message in err. */
int eng__check_sampling(const eng_sampling *s, char *err, size_t errlen);
int eng__scan_given(const eng_hparams *hp, const int32_t *given, int height, int width,
                    int allow_mask, int *n_open, char *err, size_t errlen);

/* Writes "fmt..." into err (if non-NULL) and returns code. */
int eng__fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
