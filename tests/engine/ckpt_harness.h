/*
 * ckpt_harness.h - what the checkpoint tests share: a small safetensors
 * writer that builds a valid tiny heptapod-v1 checkpoint from a spec, which
 * a test may then bend (metadata, tensors, offsets, padding, truncation) to
 * craft one precise fault, and the cmocka harness that writes, loads and
 * checks the refusal message. Include after <cmocka.h>; everything is
 * static, and a test file need not use all of it.
 */
#ifndef HEPTAPOD_TEST_CKPT_HARNESS_H
#define HEPTAPOD_TEST_CKPT_HARNESS_H

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"

#define W_FN static __attribute__((unused))

#define W_MAXT 64
#define W_MAXM 32

typedef struct wtensor {
    char name[64];
    char dtype[16];
    int ndim;
    uint64_t shape[4];
    const char *raw;                /* if set, emitted verbatim as the entry's value */
    size_t gap_before;              /* zero bytes put before this tensor's data */
    int64_t begin_delta, end_delta; /* added to the header's data_offsets only */
    uint64_t begin, end;            /* where the writer put the data */
} wtensor;

typedef struct wspec {
    int V, D, L, F;
    const char *key[W_MAXM], *val[W_MAXM];
    int n_meta;
    int no_meta;          /* leave out __metadata__ */
    const char *meta_raw; /* if set, the __metadata__ value verbatim */
    wtensor t[W_MAXT];
    int n_t;
    const char *raw_header; /* if set, the whole header verbatim */
    size_t data_align;      /* the data region starts at 8 + N = data_align (mod 8) */
    int override_len;       /* write header_len instead of the real header length */
    uint64_t header_len;
    size_t trailing; /* zero bytes appended to the file */
    size_t truncate; /* bytes cut from the end of the file */
} wspec;

typedef struct wbuf {
    char *s;
    size_t n, cap;
} wbuf;

W_FN void wb_put(wbuf *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void wb_printf(wbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
W_FN void wb_printf(wbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) abort();
    wb_put(b, tmp, (size_t)n);
}

/* The value of element j of the i-th tensor of a spec: k/8 with |k| <= 128,
 * exact in F32, F16 and BF16 alike. */
W_FN float w_value(int i, uint64_t j)
{
    return (float)((int)((i * 37u + j * 11u) % 256u) - 128) / 8.0f;
}

W_FN uint32_t w_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* binary16 bits of f; f must be zero or a normal float exact in binary16. */
W_FN uint16_t w_f16(float f)
{
    uint32_t u = w_bits(f), sign = (u >> 16) & 0x8000u;
    if ((u & 0x7fffffffu) == 0) return (uint16_t)sign;
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    if (e < 1 || e > 30 || (u & 0x1fffu)) abort();
    return (uint16_t)(sign | (uint32_t)e << 10 | ((u >> 13) & 0x3ffu));
}

W_FN void w_add(wspec *s, const char *dtype, const char *name, int ndim, uint64_t a, uint64_t b)
{
    wtensor *t = &s->t[s->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    t->shape[0] = a;
    t->shape[1] = b;
}

W_FN void w_set(wspec *s, const char *key, const char *val)
{
    for (int i = 0; i < s->n_meta; i++)
        if (strcmp(s->key[i], key) == 0) {
            if (val) {
                s->val[i] = val;
            } else { /* remove */
                s->key[i] = s->key[s->n_meta - 1];
                s->val[i] = s->val[--s->n_meta];
            }
            return;
        }
    if (val) {
        s->key[s->n_meta] = key;
        s->val[s->n_meta++] = val;
    }
}

W_FN wtensor *w_find(wspec *s, const char *name)
{
    for (int i = 0; i < s->n_t; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    abort();
}

W_FN void w_remove(wspec *s, const char *name)
{
    wtensor *t = w_find(s, name);
    memmove(t, t + 1, (size_t)(&s->t[s->n_t] - (t + 1)) * sizeof *t);
    s->n_t--;
}

/* A valid checkpoint: V = 7, D = 8, two heads, L blocks, F = 12, every tensor of dtype. */
W_FN void w_init(wspec *s, int L, const char *dtype)
{
    static char depth[8];
    memset(s, 0, sizeof *s);
    s->V = 7, s->D = 8, s->L = L, s->F = 12;
    snprintf(depth, sizeof depth, "%d", L);
    const char *meta[][2] = {
        {"format", "heptapod"}, {"arch", "heptapod-v1"},
        {"vocab_size", "7"},    {"dim", "8"},
        {"depth", depth},       {"heads", "2"},
        {"window", "1"},        {"dilation", "1"},
        {"mlp_hidden", "12"},   {"rope_base", "10000"},
        {"norm_eps", "1e-05"},  {"mask_token", "6"},
        {"tokenizer", "byte"},  {"max_height", "16"},
        {"max_width", "24"},    {"trained_on", "unit test"},
    };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        w_set(s, meta[i][0], meta[i][1]);
    uint64_t V = 7, D = 8, F = 12;
    w_add(s, dtype, "tok_emb.weight", 2, V, D);
    for (int l = 0; l < L; l++) {
        char n[64];
#define W_LAYER(suffix, nd, a, b)                                                                  \
    (snprintf(n, sizeof n, "blocks.%d.%s", l, suffix), w_add(s, dtype, n, nd, a, b))
        W_LAYER("norm1.weight", 1, D, 0);
        W_LAYER("norm1.bias", 1, D, 0);
        W_LAYER("attn.qkv.weight", 2, 3 * D, D);
        W_LAYER("attn.qkv.bias", 1, 3 * D, 0);
        W_LAYER("attn.proj.weight", 2, D, D);
        W_LAYER("attn.proj.bias", 1, D, 0);
        W_LAYER("norm2.weight", 1, D, 0);
        W_LAYER("norm2.bias", 1, D, 0);
        W_LAYER("mlp.fc1.weight", 2, F, D);
        W_LAYER("mlp.fc1.bias", 1, F, 0);
        W_LAYER("mlp.fc2.weight", 2, D, F);
        W_LAYER("mlp.fc2.bias", 1, D, 0);
#undef W_LAYER
    }
    w_add(s, dtype, "norm.weight", 1, D, 0);
    w_add(s, dtype, "norm.bias", 1, D, 0);
    w_add(s, dtype, "head.weight", 2, V, D);
    w_add(s, dtype, "head.bias", 1, V, 0);
}

W_FN uint64_t w_nelem(const wtensor *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

W_FN size_t w_esize(const char *dtype)
{
    return strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0 ? 2 : 4;
}

/* Writes the checkpoint of spec s to path (tensor offsets are stored back into s). */
W_FN void w_write(wspec *s, const char *path)
{
    wbuf data = {0}, head = {0};
    for (int i = 0; i < s->n_t; i++) {
        wtensor *t = &s->t[i];
        static const char zeros[64];
        if (t->gap_before > sizeof zeros) abort();
        wb_put(&data, zeros, t->gap_before);
        t->begin = data.n;
        for (uint64_t j = 0; j < w_nelem(t); j++) {
            float v = w_value(i, j);
            uint32_t u = w_bits(v);
            uint16_t h = strcmp(t->dtype, "F16") == 0 ? w_f16(v) : (uint16_t)(u >> 16);
            unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                  (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
            unsigned char b2[2] = {(unsigned char)h, (unsigned char)(h >> 8)};
            if (w_esize(t->dtype) == 2)
                wb_put(&data, b2, 2);
            else
                wb_put(&data, b, 4);
        }
        t->end = data.n;
    }
    if (s->raw_header) {
        wb_printf(&head, "%s", s->raw_header);
    } else {
        wb_printf(&head, "{");
        const char *sep = "";
        if (!s->no_meta) {
            wb_printf(&head, "\"__metadata__\":");
            if (s->meta_raw) {
                wb_printf(&head, "%s", s->meta_raw);
            } else {
                wb_printf(&head, "{");
                for (int i = 0; i < s->n_meta; i++)
                    wb_printf(&head, "%s\"%s\":\"%s\"", i ? "," : "", s->key[i], s->val[i]);
                wb_printf(&head, "}");
            }
            sep = ",";
        }
        for (int i = 0; i < s->n_t; i++) {
            const wtensor *t = &s->t[i];
            wb_printf(&head, "%s\"%s\":", sep, t->name);
            sep = ",";
            if (t->raw) {
                wb_printf(&head, "%s", t->raw);
                continue;
            }
            wb_printf(&head, "{\"dtype\":\"%s\",\"shape\":[", t->dtype);
            for (int d = 0; d < t->ndim; d++)
                wb_printf(&head, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
            wb_printf(&head, "],\"data_offsets\":[%lld,%lld]}",
                      (long long)t->begin + t->begin_delta, (long long)t->end + t->end_delta);
        }
        wb_printf(&head, "}");
    }
    while ((8 + head.n) % 8 != s->data_align % 8) /* safetensors pads with spaces */
        wb_put(&head, " ", 1);
    uint64_t n = s->override_len ? s->header_len : head.n;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    wbuf file = {0};
    wb_put(&file, len, 8);
    wb_put(&file, head.s, head.n);
    if (data.n) wb_put(&file, data.s, data.n);
    for (size_t i = 0; i < s->trailing; i++)
        wb_put(&file, "", 1);
    size_t total = file.n >= s->truncate ? file.n - s->truncate : 0;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(file.s, 1, total, f) != total || fclose(f) != 0) abort();
    free(data.s);
    free(head.s);
    free(file.s);
}

static char tmpdir[] = "/tmp/heptapod-ckpt-XXXXXX";
static char path[256];
static char err[512];

/* --- the cmocka harness ----------------------------------------------------- */

W_FN int group_setup(void **state)
{
    return mkdtemp(tmpdir) ? 0 : -1;
}

W_FN int group_teardown(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    return rmdir(tmpdir);
}

/* Writes s to a fresh file and loads it; the file is unlinked at once (the
 * mapping keeps it alive). */
W_FN eng_model *write_load(wspec *s)
{
    static int counter;
    snprintf(path, sizeof path, "%s/c%03d.safetensors", tmpdir, counter++);
    w_write(s, path);
    err[0] = 0;
    eng_model *m = eng_model_load(path, err, sizeof err);
    unlink(path);
    return m;
}

W_FN eng_model *load_ok(wspec *s)
{
    eng_model *m = write_load(s);
    if (!m) fail_msg("unexpected refusal: %s", err);
    return m;
}

/* The load must fail with "PATH: ..." holding every given word. */
W_FN void check_refusal(const char *first, ...)
{
    size_t n = strlen(path);
    if (strncmp(err, path, n) != 0 || strncmp(err + n, ": ", 2) != 0)
        fail_msg("message does not start with the path: \"%s\"", err);
    va_list ap;
    va_start(ap, first);
    for (const char *w = first; w; w = va_arg(ap, const char *))
        if (!strstr(err + n, w)) fail_msg("message \"%s\" lacks \"%s\"", err, w);
    va_end(ap);
}

#define EXPECT_REFUSED(spec, ...)                                                                  \
    do {                                                                                           \
        eng_model *m_ = write_load(spec);                                                          \
        if (m_) {                                                                                  \
            eng_model_free(m_);                                                                    \
            fail_msg("a broken file was accepted");                                                \
        }                                                                                          \
        check_refusal(__VA_ARGS__, (char *)NULL);                                                  \
    } while (0)

/* Refusal of the default checkpoint with metadata key set to val (NULL: removed). */
W_FN void refuse_meta(const char *key, const char *val, const char *w1, const char *w2)
{
    wspec s;
    w_init(&s, 2, "F32");
    w_set(&s, key, val);
    EXPECT_REFUSED(&s, w1, w2);
}

#endif
