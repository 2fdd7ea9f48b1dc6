/*
 * fuzz_checkpoint.c - libFuzzer driver for eng_model_load: any bytes are a
 * candidate checkpoint file. The loader must either refuse them with a
 * "PATH: fault" message or return a model whose every weight can be read;
 * ASan and UBSan watch both paths. The bytes go to a memfd, opened by its
 * /proc path, so the real open/fstat/mmap path runs without touching disk.
 *
 * `make fuzz` builds it with clang (-fsanitize=fuzzer,address,undefined) and
 * runs it with fuzz/checkpoint.dict on a copy of fuzz/corpus/checkpoint; the
 * committed seeds come from `python3 fuzz/make_corpus.py fuzz/corpus/checkpoint`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sums every weight so that each pointer the loader handed out is read in full. */
static float touch(const float *w, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i++)
        s += w[i];
    return s;
}

static void read_all(const eng_model *m)
{
    const eng_hparams *hp = eng_model_hparams(m);
    size_t V = (size_t)hp->vocab_size, D = (size_t)hp->dim, F = (size_t)hp->mlp_hidden;
    volatile float sink = touch(m->tok_emb, V * D) + touch(m->norm_w, D) + touch(m->norm_b, D) +
                          touch(m->head_w, V * D) + touch(m->head_b, V);
    for (int l = 0; l < hp->depth; l++) {
        const eng_layer *y = &m->layers[l];
        sink += touch(y->norm1_w, D) + touch(y->norm1_b, D) + touch(y->qkv_w, 3 * D * D) +
                touch(y->qkv_b, 3 * D) + touch(y->proj_w, D * D) + touch(y->proj_b, D) +
                touch(y->norm2_w, D) + touch(y->norm2_b, D) + touch(y->fc1_w, F * D) +
                touch(y->fc1_b, F) + touch(y->fc2_w, D * F) + touch(y->fc2_b, D);
        if (hp->window[l] < ENG_WINDOW_GLOBAL || hp->dilation[l] < 1) abort();
    }
    for (int i = 0; i < eng_model_meta_count(m); i++) {
        const char *k, *v;
        eng_model_meta_at(m, i, &k, &v);
        if (eng_model_meta(m, k) != v) abort();
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    char err[512];
    if (fd < 0) {
        fd = memfd_create("checkpoint", MFD_CLOEXEC);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (m) {
        read_all(m);
        eng_model_free(m);
    } else if (strncmp(err, path, strlen(path)) != 0 || strncmp(err + strlen(path), ": ", 2) != 0) {
        abort(); /* every refusal names the file */
    }
    return 0;
}
