/*
 * q8model.c - the int8 copy of a model's Linear weights, made once at load
 * (MODEL.md section 6.1): every weight quantized per output channel and
 * packed for the kernels (qgemm.h), all in one aligned block. The f32
 * weights stay mapped; the embedding, norms and biases keep using them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/qgemm.h"
#include "engine/workspace.h"

/* The weight of Linear i (qkv, proj, fc1, fc2 of each block, then the head),
 * its shape and its tensor name for messages. */
static const float *linear_of(const eng_model *m, int i, int *out, int *k, char *name, size_t n)
{
    const eng_hparams *hp = &m->hp;
    int d = hp->dim, f = hp->mlp_hidden;
    if (i == hp->depth * 4) {
        *out = hp->vocab_size;
        *k = d;
        snprintf(name, n, "head.weight");
        return m->head_w;
    }
    const eng_layer *l = &m->layers[i / 4];
    static const char *const names[] = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
    snprintf(name, n, "blocks.%d.%s.weight", i / 4, names[i % 4]);
    switch (i % 4) {
    case ENG__MAT_QKV:
        *out = 3 * d, *k = d;
        return l->qkv_w;
    case ENG__MAT_PROJ:
        *out = d, *k = d;
        return l->proj_w;
    case ENG__MAT_FC1:
        *out = f, *k = d;
        return l->fc1_w;
    default:
        *out = d, *k = f;
        return l->fc2_w;
    }
}

int eng__q8_build(eng_model *m, char *msg, size_t msglen)
{
    int n = m->hp.depth * 4 + 1, out, k;
    if (n < 1) n = 1; /* depth >= 1 (ckpt_meta.c); the compiler cannot know */
    char name[96];
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        linear_of(m, i, &out, &k, name, sizeof name);
        if (k > ENG__Q8_MAX_K) {
            snprintf(msg, msglen, "int8: %s has %d inputs, more than the %d the int8 kernels take",
                     name, k, ENG__Q8_MAX_K);
            return ENG_ERANGE;
        }
        bytes += eng__qmat_bytes(out, k); /* each well below the mapped tensor's size */
    }
    void *mem = NULL;
    m->q8 = calloc((size_t)n, sizeof *m->q8);
    if (!m->q8 || posix_memalign(&mem, 64, bytes ? bytes : 64) != 0) {
        snprintf(msg, msglen, "int8: no memory for %zu bytes of quantized weights", bytes);
        return ENG_ENOMEM;
    }
    m->q8_mem = mem;
    m->q8_bytes = bytes + (size_t)n * sizeof *m->q8;
    unsigned char *next = mem;
    for (int i = 0; i < n; i++) {
        const float *w = linear_of(m, i, &out, &k, name, sizeof name);
        int bad;
        if (eng__qmat_pack(&m->q8[i], w, out, k, next, &bad) != 0) {
            snprintf(msg, msglen, "int8: %s row %d holds inf or NaN: cannot quantize it", name,
                     bad);
            return ENG_EFORMAT;
        }
        next += eng__qmat_bytes(out, k);
    }
    return ENG_OK;
}

void eng__q8_free(eng_model *m)
{
    free(m->q8);
    free(m->q8_mem);
    m->q8 = NULL;
    m->q8_mem = NULL;
    m->q8_bytes = 0;
}
