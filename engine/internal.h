/*
 * internal.h - what the engine's own files share and nothing outside calls.
 */
#ifndef HEPTAPOD_ENG_INTERNAL_H
#define HEPTAPOD_ENG_INTERNAL_H

#include "eng.h"

/* Weights of one block; every pointer is into the mapping or into
 * eng_model.owned, never separately allocated. Shapes as PyTorch stores them. */
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

struct eng_model {
    eng_hparams hp;          /* hp.window / hp.dilation point at the arrays below */
    int *window;             /* [L] */
    int *dilation;           /* [L] */
    const float *tok_emb;    /* [V, D] */
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
};

/* Writes "fmt..." into err (if non-NULL) and returns code. */
int eng__fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
