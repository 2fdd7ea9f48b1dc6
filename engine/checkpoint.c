/*
 * checkpoint.c - eng_model_load: maps a safetensors checkpoint (MODEL.md
 * section 4) and binds its tensors to the model, refusing anything that is
 * not exactly a heptapod-v1 checkpoint, or a nonlinear-transformer-0.0.3
 * one (MODEL.md section 7: the same file rules, the seed package's tensor
 * names, chosen by the metadata's arch).
 *
 * The checks run from the outside in, each trusting only what the previous
 * ones established: the file and its 8-byte header length; the header as
 * JSON; each entry on its own (dtype, shape, data_offsets and their byte
 * length); the entries together (inside the data, no overlap, no gap, so
 * that every byte of the file belongs to exactly one tensor); the metadata
 * (ckpt_meta.c); finally the names and shapes the metadata implies. Only
 * then are bytes of the data region touched. Every failure goes through
 * lfail, which writes "PATH: fault", and the single exit frees what exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/bgemm.h"
#include "engine/checkpoint.h"
#include "engine/halfconv.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "F32 tensors are used in place: the engine needs a little-endian host"
#endif

/* Headers hold names, shapes and a few metadata strings: kilobytes. The
 * ceiling (safetensors' own) keeps a hostile header from making the parser
 * allocate gigabytes of nodes. */
#define MAX_HEADER (100u << 20)

enum dtype { DT_F32, DT_F16, DT_BF16 };
static const struct {
    const char *name;
    unsigned size;
} dtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}};

/* Symbolic dimensions of the expected shapes (MODEL.md sections 4 and 7). */
enum { S_NONE, S_V, S_D, S_3D, S_F, S_HALF_D };

typedef struct expect {
    const char *name;
    size_t off; /* of the const float * in eng_model or eng_layer */
    unsigned char shape[2];
} expect;

/* clang-format off */
#define GLOBAL_T(name, field, a, b) {name, offsetof(eng_model, field), {a, b}}
static const expect global_tensors[] = {
    GLOBAL_T("tok_emb.weight", tok_emb, S_V, S_D), GLOBAL_T("norm.weight", norm_w, S_D, S_NONE),
    GLOBAL_T("norm.bias", norm_b, S_D, S_NONE),    GLOBAL_T("head.weight", head_w, S_V, S_D),
    GLOBAL_T("head.bias", head_b, S_V, S_NONE),
};
#define LAYER_T(name, field, a, b) {name, offsetof(eng_layer, field), {a, b}}
static const expect layer_tensors[] = {
    LAYER_T("norm1.weight", norm1_w, S_D, S_NONE),  LAYER_T("norm1.bias", norm1_b, S_D, S_NONE),
    LAYER_T("attn.qkv.weight", qkv_w, S_3D, S_D),   LAYER_T("attn.qkv.bias", qkv_b, S_3D, S_NONE),
    LAYER_T("attn.proj.weight", proj_w, S_D, S_D),  LAYER_T("attn.proj.bias", proj_b, S_D, S_NONE),
    LAYER_T("norm2.weight", norm2_w, S_D, S_NONE),  LAYER_T("norm2.bias", norm2_b, S_D, S_NONE),
    LAYER_T("mlp.fc1.weight", fc1_w, S_F, S_D),     LAYER_T("mlp.fc1.bias", fc1_b, S_F, S_NONE),
    LAYER_T("mlp.fc2.weight", fc2_w, S_D, S_F),     LAYER_T("mlp.fc2.bias", fc2_b, S_D, S_NONE),
};
/* nonlinear-transformer-0.0.3 (MODEL.md section 7): the package's own names. */
static const expect seed_global_tensors[] = {
    GLOBAL_T("embedding.weight", tok_emb, S_V, S_D),
    GLOBAL_T("rotary_emb.inv_freq", pos_freq, S_HALF_D, S_NONE),
    GLOBAL_T("to_logits.weight", head_w, S_V, S_D), GLOBAL_T("to_logits.bias", head_b, S_V, S_NONE),
};
static const expect seed_layer_tensors[] = {
    LAYER_T("norm.gamma", norm1_w, S_D, S_NONE),   LAYER_T("norm.beta", norm1_b, S_D, S_NONE),
    LAYER_T("mlp.0.weight", fc1_w, S_F, S_D),      LAYER_T("mlp.0.bias", fc1_b, S_F, S_NONE),
    LAYER_T("mlp.2.weight", fc2_w, S_D, S_F),      LAYER_T("mlp.2.bias", fc2_b, S_D, S_NONE),
};
/* clang-format on */
#define COUNT(a) (sizeof a / sizeof a[0])

/* The tensors of one architecture: the global ones, then each block's. */
typedef struct tensor_set {
    const expect *global, *layer;
    size_t n_global, n_layer;
} tensor_set;
static const tensor_set tensor_sets[] = {
    [ENG__ARCH_V1] = {global_tensors, layer_tensors, COUNT(global_tensors), COUNT(layer_tensors)},
    [ENG__ARCH_SEED] = {seed_global_tensors, seed_layer_tensors, COUNT(seed_global_tensors),
                        COUNT(seed_layer_tensors)},
};

typedef struct tensor {
    const char *name;
    const eng__jnode *shape; /* array of non-negative integers */
    enum dtype dtype;
    uint64_t nelem, begin, end; /* end - begin == nelem * dtype size */
} tensor;

typedef struct loader {
    const char *path;
    char *err;
    size_t errlen;
    eng_model *m;
    eng__jdoc *doc;
    tensor *t;
    size_t n_t;
    const tensor_set *ts;      /* the tensors of the checkpoint's arch */
    tensor **slot;             /* [n_global + n_layer * depth] entry of each expected tensor */
    tensor *pos;               /* heptapod-v1's optional position table, or NULL */
    const unsigned char *data; /* the data region: after the header, to the end of the file */
    uint64_t data_len;
} loader;

static int lfail(loader *ld, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int lfail(loader *ld, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return eng__fail(ld->err, ld->errlen, code, "%s: %s", ld->path, msg);
}

/* "[a, b, c]" of a shape array, cut short if long. */
static const char *shape_str(const eng__jnode *shape, char *buf, size_t n)
{
    size_t used = 0;
    int w = snprintf(buf, n, "[");
    used = w > 0 ? (size_t)w : 0;
    for (const eng__jnode *d = shape->child; d && used < n; d = d->next) {
        w = snprintf(buf + used, n - used, "%s%s", d == shape->child ? "" : ", ", d->str);
        used += w > 0 ? (size_t)w : 0;
    }
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

static int map_file(loader *ld)
{
    eng_model *m = ld->m;
    struct stat st;
    int fd = open(ld->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lfail(ld, ENG_EIO, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int rc = lfail(ld, ENG_EIO, "not a regular file");
        close(fd);
        return rc;
    }
    if (st.st_size < 8) {
        close(fd);
        return lfail(ld, ENG_EFORMAT, "file of %lld bytes is too short for a safetensors header",
                     (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return lfail(ld, ENG_ENOMEM, "file too large to map");
    }
    /* Read-only and private: the model never writes, and nothing here checks
     * the file again, so it must not be rewritten in place while loaded (a
     * file truncated under a mapping faults on access, as with any mmap). */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) return lfail(ld, ENG_EIO, "cannot map: %s", strerror(mmap_errno));
    m->map = map;
    m->map_len = (size_t)st.st_size;
    return ENG_OK;
}

/* The header length, the header as a JSON object, and the data region. */
static int read_header(loader *ld)
{
    const unsigned char *p = ld->m->map;
    uint64_t size = ld->m->map_len, n = 0;
    char msg[256];
    for (int i = 7; i >= 0; i--)
        n = n << 8 | p[i];
    if (n > size - 8)
        return lfail(ld, ENG_EFORMAT,
                     "header length %llu runs past the end of the file (%llu bytes): truncated",
                     (unsigned long long)n, (unsigned long long)size);
    if (n > MAX_HEADER)
        return lfail(ld, ENG_EFORMAT, "header length %llu is too large (limit %u bytes)",
                     (unsigned long long)n, MAX_HEADER);
    int rc = eng__json_parse((const char *)p + 8, (size_t)n, &ld->doc, msg, sizeof msg);
    if (rc == ENG_ENOMEM) return lfail(ld, rc, "out of memory");
    if (rc != ENG_OK) return lfail(ld, rc, "header is not valid JSON: %s", msg);
    if (eng__json_root(ld->doc)->type != ENG__JOBJECT)
        return lfail(ld, ENG_EFORMAT, "header is not a JSON object");
    ld->data = p + 8 + n;
    ld->data_len = size - 8 - n;
    return ENG_OK;
}

/* One header entry on its own: its fields, their types and their sizes. */
static int check_entry(loader *ld, const eng__jnode *e, tensor *t)
{
    char q[100], sh[128];
    const char *name = eng__ckpt_safe(e->key, q, sizeof q);
    if (strlen(e->key) != e->key_len)
        return lfail(ld, ENG_EFORMAT, "tensor name %s holds a NUL byte", name);
    if (e->type != ENG__JOBJECT)
        return lfail(ld, ENG_EFORMAT, "tensor %s: entry is not an object", name);
    const eng__jnode *dt = eng__json_get(e, "dtype"), *shape = eng__json_get(e, "shape"),
                     *off = eng__json_get(e, "data_offsets");
    if (!dt || !shape || !off)
        return lfail(ld, ENG_EFORMAT, "tensor %s: missing %s", name,
                     !dt      ? "dtype"
                     : !shape ? "shape"
                              : "data_offsets");
    if (dt->type != ENG__JSTRING)
        return lfail(ld, ENG_EFORMAT, "tensor %s: dtype is not a string", name);
    size_t k = 0;
    while (k < sizeof dtypes / sizeof dtypes[0] && strcmp(dt->str, dtypes[k].name) != 0)
        k++;
    if (k == sizeof dtypes / sizeof dtypes[0] || strlen(dt->str) != dt->len)
        return lfail(ld, ENG_EFORMAT, "tensor %s: unsupported dtype %s (F32, F16 or BF16 only)",
                     name, eng__ckpt_safe(dt->str, sh, sizeof sh));
    if (shape->type != ENG__JARRAY)
        return lfail(ld, ENG_EFORMAT, "tensor %s: shape is not an array", name);
    uint64_t nelem = 1, bytes, dim;
    for (const eng__jnode *d = shape->child; d; d = d->next) {
        if (eng__json_u64(d, &dim) != 0)
            return lfail(ld, ENG_EFORMAT, "tensor %s: shape is not a list of non-negative integers",
                         name);
        if (__builtin_mul_overflow(nelem, dim, &nelem))
            return lfail(ld, ENG_EFORMAT, "tensor %s: shape %s is too large", name,
                         shape_str(shape, sh, sizeof sh));
    }
    if (__builtin_mul_overflow(nelem, (uint64_t)dtypes[k].size, &bytes))
        return lfail(ld, ENG_EFORMAT, "tensor %s: shape %s is too large", name,
                     shape_str(shape, sh, sizeof sh));
    const eng__jnode *b = off->type == ENG__JARRAY && off->len == 2 ? off->child : NULL;
    if (!b || eng__json_u64(b, &t->begin) != 0 || eng__json_u64(b->next, &t->end) != 0 ||
        t->begin > t->end)
        return lfail(ld, ENG_EFORMAT,
                     "tensor %s: data_offsets is not [begin, end] with begin <= end", name);
    if (t->end - t->begin != bytes)
        return lfail(ld, ENG_EFORMAT,
                     "tensor %s: data_offsets span %llu bytes, but shape %s of %s needs %llu: "
                     "length mismatch",
                     name, (unsigned long long)(t->end - t->begin), shape_str(shape, sh, sizeof sh),
                     dtypes[k].name, (unsigned long long)bytes);
    t->name = e->key;
    t->shape = shape;
    t->dtype = (enum dtype)k;
    t->nelem = nelem;
    return ENG_OK;
}

static int cmp_offsets(const void *a, const void *b)
{
    const tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Every entry on its own, then together: sorted by begin, the tensors must
 * tile [0, data_len) exactly. */
static int check_entries(loader *ld)
{
    const eng__jnode *root = eng__json_root(ld->doc);
    char q[100], q2[100];
    int rc, seen_meta = 0;
    ld->t = calloc(root->len ? root->len : 1, sizeof *ld->t);
    if (!ld->t) return lfail(ld, ENG_ENOMEM, "out of memory");
    for (const eng__jnode *e = root->child; e; e = e->next) {
        if (strcmp(e->key, "__metadata__") == 0 && e->key_len == 12) {
            if (seen_meta++) return lfail(ld, ENG_EFORMAT, "duplicate __metadata__");
            continue;
        }
        if ((rc = check_entry(ld, e, &ld->t[ld->n_t])) != ENG_OK) return rc;
        ld->n_t++;
    }
    for (size_t i = 0; i < ld->n_t; i++)
        if (ld->t[i].end > ld->data_len)
            return lfail(ld, ENG_EFORMAT,
                         "tensor %s: data_offsets [%llu, %llu] run past the end of the data "
                         "(%llu bytes): file truncated",
                         eng__ckpt_safe(ld->t[i].name, q, sizeof q),
                         (unsigned long long)ld->t[i].begin, (unsigned long long)ld->t[i].end,
                         (unsigned long long)ld->data_len);
    qsort(ld->t, ld->n_t, sizeof *ld->t, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < ld->n_t; i++) {
        const tensor *t = &ld->t[i];
        if (t->begin < pos)
            return lfail(ld, ENG_EFORMAT, "tensors %s and %s overlap",
                         eng__ckpt_safe(ld->t[i - 1].name, q, sizeof q),
                         eng__ckpt_safe(t->name, q2, sizeof q2));
        if (t->begin > pos)
            return lfail(ld, ENG_EFORMAT, "gap of %llu unused bytes before tensor %s",
                         (unsigned long long)(t->begin - pos),
                         eng__ckpt_safe(t->name, q, sizeof q));
        pos = t->end;
    }
    if (pos < ld->data_len)
        return lfail(ld, ENG_EFORMAT, "gap of %llu unused bytes at the end of the file",
                     (unsigned long long)(ld->data_len - pos));
    return ENG_OK;
}

/* The expected tensor at slot index k: its table entry, and its block (-1 if global). */
static const expect *slot_expect(const tensor_set *ts, size_t k, int *layer)
{
    if (k < ts->n_global) {
        *layer = -1;
        return &ts->global[k];
    }
    *layer = (int)((k - ts->n_global) / ts->n_layer);
    return &ts->layer[(k - ts->n_global) % ts->n_layer];
}

static void slot_name(const tensor_set *ts, size_t k, char *buf, size_t n)
{
    int layer;
    const expect *x = slot_expect(ts, k, &layer);
    if (layer < 0)
        snprintf(buf, n, "%s", x->name);
    else
        snprintf(buf, n, "blocks.%d.%s", layer, x->name);
}

/* The slot of a tensor name, or -1 for a name the model does not have. */
static long name_slot(const tensor_set *ts, const char *name, int depth)
{
    for (size_t k = 0; k < ts->n_global; k++)
        if (strcmp(name, ts->global[k].name) == 0) return (long)k;
    if (strncmp(name, "blocks.", 7) != 0) return -1;
    const char *p = name + 7;
    long l = 0;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return -1; /* no digits, or a leading zero: "blocks.01" is not block 1 */
    for (; *p >= '0' && *p <= '9'; p++)
        if ((l = l * 10 + (*p - '0')) >= depth) return -1;
    if (*p++ != '.') return -1;
    for (size_t k = 0; k < ts->n_layer; k++)
        if (strcmp(p, ts->layer[k].name) == 0)
            return (long)(ts->n_global + (size_t)l * ts->n_layer + k);
    return -1;
}

/* The optional position table (MODEL.md section 4): its presence turns it on,
 * and its shape must be [max_height, max_width, D]. */
#define POS_EMB "pos_emb.weight"

static int bind_pos_emb(loader *ld, tensor *t)
{
    const eng_hparams *hp = &ld->m->hp;
    const uint64_t want[3] = {(uint64_t)hp->max_height, (uint64_t)hp->max_width,
                              (uint64_t)hp->dim};
    char got[128];
    if (ld->pos) return lfail(ld, ENG_EFORMAT, "duplicate tensor " POS_EMB);
    int ok = t->shape->len == 3;
    const eng__jnode *d = t->shape->child;
    for (size_t j = 0; ok && j < 3; j++, d = d->next) {
        uint64_t v;
        ok = eng__json_u64(d, &v) == 0 && v == want[j];
    }
    if (!ok)
        return lfail(ld, ENG_EFORMAT,
                     "tensor " POS_EMB ": wrong shape %s, expected [%d, %d, %d] "
                     "(max_height, max_width, dim)",
                     shape_str(t->shape, got, sizeof got), hp->max_height, hp->max_width,
                     hp->dim);
    ld->pos = t;
    return ENG_OK;
}

/* Matches every entry to an expected tensor and checks its shape. */
static int bind_names(loader *ld)
{
    const eng_hparams *hp = &ld->m->hp;
    const tensor_set *ts = ld->ts = &tensor_sets[ld->m->arch];
    const uint64_t dims[] = {[S_V] = (uint64_t)hp->vocab_size,
                             [S_D] = (uint64_t)hp->dim,
                             [S_3D] = 3 * (uint64_t)hp->dim,
                             [S_F] = (uint64_t)hp->mlp_hidden,
                             [S_HALF_D] = (uint64_t)hp->dim / 2};
    size_t n_slots = ts->n_global + ts->n_layer * (size_t)hp->depth;
    char q[100], got[128];
    ld->slot = calloc(n_slots, sizeof *ld->slot);
    if (!ld->slot) return lfail(ld, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < ld->n_t; i++) {
        tensor *t = &ld->t[i];
        if (ld->m->arch == ENG__ARCH_V1 && strcmp(t->name, POS_EMB) == 0) {
            int rc = bind_pos_emb(ld, t);
            if (rc) return rc;
            continue;
        }
        long k = name_slot(ts, t->name, hp->depth);
        if (k < 0)
            return lfail(ld, ENG_EFORMAT, "unexpected tensor %s",
                         eng__ckpt_safe(t->name, q, sizeof q));
        if (ld->slot[k])
            return lfail(ld, ENG_EFORMAT, "duplicate tensor %s",
                         eng__ckpt_safe(t->name, q, sizeof q));
        ld->slot[k] = t;
        int layer;
        const expect *x = slot_expect(ts, (size_t)k, &layer);
        size_t ndim = x->shape[1] == S_NONE ? 1 : 2;
        int ok = t->shape->len == ndim;
        const eng__jnode *d = t->shape->child;
        for (size_t j = 0; ok && j < ndim; j++, d = d->next) {
            uint64_t v;
            ok = eng__json_u64(d, &v) == 0 && v == dims[x->shape[j]];
        }
        if (!ok) {
            char want[64];
            if (ndim == 1)
                snprintf(want, sizeof want, "[%llu]", (unsigned long long)dims[x->shape[0]]);
            else
                snprintf(want, sizeof want, "[%llu, %llu]", (unsigned long long)dims[x->shape[0]],
                         (unsigned long long)dims[x->shape[1]]);
            return lfail(ld, ENG_EFORMAT, "tensor %s: wrong shape %s, expected %s",
                         eng__ckpt_safe(t->name, q, sizeof q), shape_str(t->shape, got, sizeof got),
                         want);
        }
    }
    for (size_t k = 0; k < n_slots; k++)
        if (!ld->slot[k]) {
            slot_name(ts, k, q, sizeof q);
            return lfail(ld, ENG_EFORMAT, "missing tensor %s", q);
        }
    return ENG_OK;
}

static int in_place(const loader *ld, const tensor *t)
{
    return t->dtype == DT_F32 && ((uintptr_t)(ld->data + t->begin)) % sizeof(float) == 0;
}

/* Points every weight at its floats: into the mapping for aligned F32,
 * into one owned block, converted once, for everything else. */
static int bind_weights(loader *ld)
{
    eng_model *m = ld->m;
    size_t n_slots = ld->ts->n_global + ld->ts->n_layer * (size_t)m->hp.depth, owned = 0;
    m->layers = calloc((size_t)m->hp.depth, sizeof *m->layers);
    if (!m->layers) return lfail(ld, ENG_ENOMEM, "out of memory");
    for (size_t k = 0; k <= n_slots; k++) {
        const tensor *t = k < n_slots ? ld->slot[k] : ld->pos; /* the table last */
        if (t && !in_place(ld, t))
            owned += (size_t)t->nelem; /* bounded by the file size: no overflow */
    }
    if (owned) {
        void *block;
        if (owned > SIZE_MAX / sizeof(float) || posix_memalign(&block, 64, owned * sizeof(float)))
            return lfail(ld, ENG_ENOMEM, "out of memory for %zu converted weights", owned);
        m->owned = block;
        m->owned_bytes = owned * sizeof(float);
    }
    float *next = m->owned;
    for (size_t k = 0; k <= n_slots; k++) {
        const tensor *t = k < n_slots ? ld->slot[k] : ld->pos;
        if (!t) break; /* no position table */
        const unsigned char *src = ld->data + t->begin;
        const float *w = (const float *)(const void *)src;
        if (!in_place(ld, t)) {
            if (t->dtype == DT_F32)
                memcpy(next, src, (size_t)t->nelem * sizeof(float));
            else if (t->dtype == DT_F16)
                eng__f16_to_f32_n(src, next, (size_t)t->nelem);
            else
                eng__bf16_to_f32_n(src, next, (size_t)t->nelem);
            w = next;
            next += t->nelem;
        }
        if (k == n_slots) {
            m->pos_emb = w;
            break;
        }
        int layer;
        const expect *x = slot_expect(ld->ts, k, &layer);
        char *base = layer < 0 ? (char *)m : (char *)&m->layers[layer];
        memcpy(base + x->off, &w, sizeof w);
    }
    return ENG_OK;
}

const char *eng_precision_name(int precision)
{
    static const char *const names[] = {"f32", "bf16", "int8"};
    return precision >= 0 && precision <= ENG_PRECISION_INT8 ? names[precision] : NULL;
}

int eng_precision_parse(const char *s)
{
    for (int p = 0; s && p <= ENG_PRECISION_INT8; p++)
        if (!strcmp(s, eng_precision_name(p))) return p;
    return -1;
}

/* The precision asked for, else the checkpoint's `precision`, else f32. */
static int choose_precision(loader *ld, const eng_load_opts *opts)
{
    int p = opts ? opts->precision : ENG_PRECISION_DEFAULT;
    if (p == ENG_PRECISION_DEFAULT) {
        const char *meta = eng_model_meta(ld->m, "precision");
        p = meta ? eng_precision_parse(meta) : ENG_PRECISION_F32;
        if (p < 0) return lfail(ld, ENG_EFORMAT, "metadata precision '%s': not f32, bf16 or int8", meta);
    } else if (!eng_precision_name(p)) {
        return lfail(ld, ENG_EINVAL, "precision %d: not f32, bf16 or int8", p);
    }
    ld->m->precision = (eng_precision)p;
    if (p != ENG_PRECISION_F32 && ld->m->arch == ENG__ARCH_SEED)
        return lfail(ld, ENG_EINVAL, "precision %s: the %s architecture runs in f32 only",
                     eng_precision_name(p), ENG__ARCH_SEED_NAME);
    if (p == ENG_PRECISION_INT8) {
        char msg[256];
        int rc = eng__q8_build(ld->m, msg, sizeof msg);
        return rc == ENG_OK ? ENG_OK : lfail(ld, rc, "%s", msg);
    }
    if (p == ENG_PRECISION_BF16)
        return eng__bgemm_prepare(ld->m) == ENG_OK
                   ? ENG_OK
                   : lfail(ld, ENG_ENOMEM, "out of memory for the bf16 weights");
    if (p != ENG_PRECISION_F32)
        return lfail(ld, ENG_EINVAL, "precision %s is not built into this engine", eng_precision_name(p));
    return ENG_OK;
}

eng_precision eng_model_precision(const eng_model *m)
{
    return m->precision;
}

eng_model *eng_model_load(const char *path, char *err, size_t errlen)
{
    return eng_model_load_opts(path, NULL, err, errlen);
}

eng_model *eng_model_load_opts(const char *path, const eng_load_opts *opts, char *err, size_t errlen)
{
    loader ld = {.path = path ? path : "(null)", .err = err, .errlen = errlen};
    char msg[512];
    int rc;

    if (!path)
        rc = lfail(&ld, ENG_EINVAL, "no checkpoint path");
    else if (!(ld.m = calloc(1, sizeof *ld.m)) || !(ld.m->path = strdup(path)))
        rc = lfail(&ld, ENG_ENOMEM, "out of memory");
    else if ((rc = map_file(&ld)) || (rc = read_header(&ld)) || (rc = check_entries(&ld)))
        ;
    else if ((rc = eng__ckpt_meta(ld.m, eng__json_get(eng__json_root(ld.doc), "__metadata__"), msg,
                                  sizeof msg)))
        lfail(&ld, rc, "%s", msg);
    else if ((rc = bind_names(&ld)) == ENG_OK && (rc = bind_weights(&ld)) == ENG_OK)
        rc = choose_precision(&ld, opts);

    eng__json_free(ld.doc);
    free(ld.t);
    free(ld.slot);
    if (rc != ENG_OK) {
        eng_model_free(ld.m);
        return NULL;
    }
    return ld.m;
}

void eng_model_free(eng_model *m)
{
    if (!m) return;
    if (m->map) munmap(m->map, m->map_len);
    for (int i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->meta);
    free(m->owned);
    free(m->bf16);
    eng__q8_free(m);
    free(m->layers);
    free(m->window);
    free(m->dilation);
    free(m->path);
    free(m);
}

const eng_hparams *eng_model_hparams(const eng_model *m)
{
    return &m->hp;
}

const char *eng_model_path(const eng_model *m)
{
    return m->path;
}

size_t eng_model_bytes(const eng_model *m)
{
    return m->map_len + m->owned_bytes + m->bf16_bytes + m->q8_bytes;
}

const char *eng_model_arch(const eng_model *m)
{
    return m->arch == ENG__ARCH_SEED ? ENG_ARCH_SEED : ENG_ARCH_V1;
}

static int cmp_key(const void *key, const void *entry)
{
    return strcmp(key, ((const eng_meta_entry *)entry)->key);
}

const char *eng_model_meta(const eng_model *m, const char *key)
{
    const eng_meta_entry *e =
        m->n_meta ? bsearch(key, m->meta, (size_t)m->n_meta, sizeof *m->meta, cmp_key) : NULL;
    return e ? e->value : NULL;
}

int eng_model_meta_count(const eng_model *m)
{
    return m->n_meta;
}

void eng_model_meta_at(const eng_model *m, int i, const char **key, const char **value)
{
    int ok = i >= 0 && i < m->n_meta;
    if (key) *key = ok ? m->meta[i].key : NULL;
    if (value) *value = ok ? m->meta[i].value : NULL;
}
