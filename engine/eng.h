/*
 * eng.h - the HeptaPod grid transformer engine: checkpoints, the batched
 * forward pass and one refinement iteration of generation (MODEL.md).
 *
 * Nothing here knows about HTTP or JSON. Every function that can fail returns
 * an eng_err (0 or a negative code) or NULL, and writes a one-line message
 * into a caller-supplied buffer where one is taken.
 */
#ifndef HEPTAPOD_ENG_H
#define HEPTAPOD_ENG_H

#include <stddef.h>
#include <stdint.h>

/* Error codes: one table, yielding both the enum and the message. */
#define ENG_ERRORS(X)                                   \
    X(EIO, "cannot read the file")                      \
    X(EFORMAT, "malformed checkpoint")                  \
    X(ENOMEM, "out of memory")                          \
    X(EINVAL, "invalid argument")                       \
    X(ERANGE, "value out of range")                     \
    X(ECAPACITY, "batch larger than the workspace")

enum eng__err_index {
#define X(name, msg) ENG__I_##name,
    ENG_ERRORS(X)
#undef X
};

typedef enum eng_err {
    ENG_OK = 0,
#define X(name, msg) ENG_##name = -(ENG__I_##name + 1),
    ENG_ERRORS(X)
#undef X
} eng_err;

/** Static message for an error code ("unknown error" for anything else). */
const char *eng_strerror(int err);

/* A window radius of ENG_WINDOW_GLOBAL means the whole grid (MODEL.md 3.2). */
#define ENG_WINDOW_GLOBAL (-1)

typedef enum eng_tokenizer { ENG_TOKENIZER_NONE = 0, ENG_TOKENIZER_BYTE = 1 } eng_tokenizer;

/** Hyper-parameters of a loaded model (MODEL.md section 2). Owned by the model. */
typedef struct eng_hparams {
    int vocab_size;     /* V */
    int dim;            /* D */
    int depth;          /* L */
    int heads;
    int head_dim;       /* D / heads */
    int mlp_hidden;     /* F */
    int max_height, max_width;
    int mask_token;
    eng_tokenizer tokenizer;
    float rope_base;
    float norm_eps;
    const int *window;   /* [depth] radius, or ENG_WINDOW_GLOBAL */
    const int *dilation; /* [depth] >= 1 */
} eng_hparams;

typedef struct eng_model eng_model;

/*
 * Arithmetic of the Linear layers (MODEL.md section 6). f32 is the contract
 * itself; bf16 and int8 trade exactness for speed. Attention, norms and
 * softmax stay f32 in every precision.
 */
typedef enum eng_precision {
    ENG_PRECISION_F32 = 0,
    ENG_PRECISION_BF16 = 1,
    ENG_PRECISION_INT8 = 2,
} eng_precision;

/* eng_load_opts.precision: the checkpoint's `precision` metadata, else f32. */
#define ENG_PRECISION_DEFAULT (-1)

/** "f32", "bf16" or "int8"; NULL for anything else. */
const char *eng_precision_name(int precision);
/** The eng_precision named s, or -1. */
int eng_precision_parse(const char *s);

/** Options of eng_model_load_opts; zero-initialised fields are not the
 *  defaults, so start from ENG_LOAD_OPTS_INIT. */
typedef struct eng_load_opts {
    int precision; /* eng_precision or ENG_PRECISION_DEFAULT */
} eng_load_opts;
#define ENG_LOAD_OPTS_INIT {.precision = ENG_PRECISION_DEFAULT}

/**
 * The instruction set the engine's own kernels use: the best this CPU has,
 * capped by the environment variable HEPTAPOD_ISA (`scalar`, `avx2` or
 * `avx512`), read once. "scalar", "avx2" or "avx512".
 */
const char *eng_isa_name(void);

/**
 * Maps and validates a safetensors checkpoint. F32 tensors are used in place
 * where aligned; F16/BF16 (or misaligned F32) are converted once here.
 * Returns NULL on failure with "PATH: fault" written into err (errlen bytes).
 * The model is immutable after load and may be shared by threads.
 */
eng_model *eng_model_load(const char *path, char *err, size_t errlen);
/** eng_model_load with options (NULL: the defaults). */
eng_model *eng_model_load_opts(const char *path, const eng_load_opts *opts, char *err,
                               size_t errlen);
void eng_model_free(eng_model *m);
/** The precision the model runs at. */
eng_precision eng_model_precision(const eng_model *m);
const eng_hparams *eng_model_hparams(const eng_model *m);
/** The path the model was loaded from (owned by the model). */
const char *eng_model_path(const eng_model *m);
/** Memory the model holds: the mapped file plus the tensors converted or
 *  quantized at load. */
size_t eng_model_bytes(const eng_model *m);
/** Metadata value for key, or NULL. Owned by the model. */
const char *eng_model_meta(const eng_model *m, const char *key);
/** Number of metadata entries, and the i-th key/value (owned by the model). */
int eng_model_meta_count(const eng_model *m);
void eng_model_meta_at(const eng_model *m, int i, const char **key, const char **value);

/** One grid for eng_forward: tokens [height*width], row-major, borrowed. */
typedef struct eng_grid {
    int height, width;
    const int32_t *tokens;
} eng_grid;

typedef struct eng_workspace eng_workspace;

/**
 * Allocates every buffer a forward pass over at most max_cells cells (summed
 * over the grids of one batch) needs, and a pool of `threads` threads (>= 1)
 * that the engine's own loops and BLAS use. One workspace serves one caller
 * thread at a time. Returns NULL with a message on failure.
 */
eng_workspace *eng_workspace_create(const eng_model *m, int max_cells, int threads,
                                    char *err, size_t errlen);
void eng_workspace_free(eng_workspace *ws);
/**
 * The bytes eng_workspace_create(m, max_cells, threads) allocates for its
 * buffers (the threads' stacks aside), without allocating: to check a
 * setting against the memory there is before trying. SIZE_MAX when the size
 * overflows or an argument is out of range.
 */
size_t eng_workspace_bytes(const eng_model *m, int max_cells, int threads);
int eng_workspace_max_cells(const eng_workspace *ws);
int eng_workspace_threads(const eng_workspace *ws);

/**
 * Runs the model on n grids in one pass; grids never see each other. On
 * success *logits points into the workspace: the cells of grid 0 row-major,
 * then grid 1, ..., each with vocab_size floats; valid until the next call.
 * Returns ENG_ECAPACITY if the cells exceed the workspace, ENG_EINVAL for a
 * grid larger than the model allows or a token outside the vocabulary.
 * Never allocates.
 */
int eng_forward(eng_workspace *ws, const eng_grid *grids, int n, const float **logits);

/*
 * The order in which an iteration commits the sampled cells (MODEL.md 5):
 * the most confident (the model's probability of the sampled token), the
 * largest top-1 minus top-2 probability margin, or the first open cells in
 * row-major order.
 */
typedef enum eng_order {
    ENG_ORDER_CONFIDENCE = 0,
    ENG_ORDER_MARGIN = 1,
    ENG_ORDER_RASTER = 2,
} eng_order;

/** "confidence", "margin" or "raster"; NULL for anything else. */
const char *eng_order_name(int order);
/** The eng_order named s, or -1 (also for NULL). */
int eng_order_parse(const char *s);

/** Sampling settings of one generation (MODEL.md section 5). A zeroed struct
 *  with top_p 1 is greedy, confidence order, no noise, no re-opening. */
typedef struct eng_sampling {
    float temperature; /* >= 0; 0 is greedy */
    int top_k;         /* 0: no top-k filter */
    float top_p;       /* in (0, 1]; 1: no top-p filter */
    uint64_t seed;
    float remask_noise; /* >= 0; 0: re-mask strictly by the order's score (MODEL.md 5) */
    eng_order order;    /* which open cells an iteration commits */
    float remask;       /* in [0, 1): share of the committed cells re-opened in each
                         * iteration but the last; 0: none */
} eng_sampling;

/* Largest eng_sampling.remask_noise eng_gen_init accepts. */
#define ENG_MAX_REMASK_NOISE 100.0f

/* Value for an open cell in the `given` array of eng_gen_init. */
#define ENG_OPEN (-1)

typedef enum eng_cell { ENG_CELL_OPEN = 0, ENG_CELL_GIVEN = 1, ENG_CELL_COMMITTED = 2 } eng_cell;

/**
 * The state of one grid being generated. Carries everything its iterations
 * depend on, so states of different sizes and progress share a batch and
 * each one's result does not depend on the others or the thread count:
 * the random draw for a cell at iteration t depends only on (seed, t, cell).
 * Fields are read-only to callers.
 */
typedef struct eng_gen {
    int height, width;
    int iterations;      /* K */
    int iter;            /* iterations done, 0..K */
    int n_open;          /* open cells at the start (N_open) */
    int n_masked;        /* cells holding the mask token now */
    eng_sampling sampling;
    int32_t *tokens;     /* [height*width] the grid after the last iteration */
    uint8_t *cell;       /* [height*width] eng_cell */
    float *conf;         /* [height*width] scratch: P_c of the cell's token in the last
                          * forward pass (open cells; committed ones too when
                          * sampling.remask > 0) */
    int32_t *order;      /* [height*width] scratch for re-masking and re-opening */
    float *key;          /* [height*width] scratch: the commit keys of open cells when
                          * they are not conf (margin order or remask_noise > 0);
                          * NULL otherwise */
    int n_reopened;      /* committed cells re-opened by the last iteration */
} eng_gen;

/**
 * Initialises g for a height x width grid. `given` holds a token id for each
 * fixed cell and ENG_OPEN for open ones (NULL: all open). Refuses with
 * ENG_ERANGE and a message naming the value: sizes outside 1..max, given ids
 * outside the vocabulary or equal to the mask token, iterations < 1, a
 * negative or non-finite temperature, top_k < 0, top_p outside (0, 1],
 * remask_noise negative, non-finite or above ENG_MAX_REMASK_NOISE, an order
 * that is not an eng_order, remask outside [0, 1) or NaN.
 * On failure g holds nothing to free.
 */
int eng_gen_init(eng_gen *g, const eng_model *m, int height, int width,
                 const int32_t *given, int iterations, const eng_sampling *s,
                 char *err, size_t errlen);
void eng_gen_close(eng_gen *g);
/** Nonzero once all iterations are done. */
int eng_gen_done(const eng_gen *g);

/**
 * Runs one refinement iteration (MODEL.md section 5) for each of the n states
 * in one batched forward pass. States already done are skipped. Returns
 * ENG_ECAPACITY if their cells exceed the workspace.
 */
int eng_step(eng_workspace *ws, eng_gen *const *gens, int n);

#endif
