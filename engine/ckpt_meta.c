/*
 * ckpt_meta.c - the checkpoint's __metadata__: copied into the model, then
 * read as the hyper-parameters of MODEL.md section 2 and checked against
 * their constraints.
 *
 * Required keys (heptapod-v1): format, arch, vocab_size, dim, depth, heads, window,
 * mask_token, max_height, max_width. max_height and max_width are required
 * because a server must know the largest grid it may accept. Optional keys
 * and their defaults: dilation 1, mlp_hidden 4*dim, rope_base 10000,
 * norm_eps 1e-5, tokenizer none (absent, the ids are opaque: nothing may
 * read them as bytes unless the checkpoint says so).
 *
 * The arch nonlinear-transformer-0.0.3 (MODEL.md section 7) has keys of its
 * own: seed_meta.
 *
 * Besides section 2's constraints, every integer has a sanity ceiling far
 * above any real model (LIM_* below), so that sizes derived from them
 * (3*dim, vocab*dim, (2r+1)^2 neighbours, height*width cells) stay within
 * int and size_t everywhere downstream.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"

#define LIM_VOCAB (1L << 24)
#define LIM_DIM (1L << 16)
#define LIM_DEPTH 1024L
#define LIM_HIDDEN (1L << 20)
#define LIM_GRID (1L << 15)   /* max_height, max_width */
#define LIM_RADIUS (1L << 14) /* window radius and dilation */

typedef struct mctx {
    eng_model *m;
    char *msg;
    size_t msglen;
} mctx;

static int mfail(mctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int mfail(mctx *c, int code, const char *fmt, ...)
{
    if (c->msg && c->msglen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg, c->msglen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *eng__ckpt_safe(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    if (n == 0) return buf;
    for (; s[i] && i + 1 < n; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[i] = 0;
    if (s[i] && n >= 4) memcpy(buf + n - 4, "...", 4);
    return buf;
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const eng_meta_entry *)a)->key, ((const eng_meta_entry *)b)->key);
}

static int copy_meta(mctx *c, const eng__jnode *meta)
{
    eng_model *m = c->m;
    char q[100];
    if (!meta) return mfail(c, ENG_EFORMAT, "missing __metadata__");
    if (meta->type != ENG__JOBJECT) return mfail(c, ENG_EFORMAT, "__metadata__ is not an object");
    m->meta = calloc(meta->len ? meta->len : 1, sizeof *m->meta);
    if (!m->meta) return mfail(c, ENG_ENOMEM, "out of memory");
    for (const eng__jnode *e = meta->child; e; e = e->next) {
        if (e->type != ENG__JSTRING)
            return mfail(c, ENG_EFORMAT, "__metadata__ value of %s is not a string",
                         eng__ckpt_safe(e->key, q, sizeof q));
        if (strlen(e->key) != e->key_len || strlen(e->str) != e->len)
            return mfail(c, ENG_EFORMAT, "__metadata__ entry %s holds a NUL byte",
                         eng__ckpt_safe(e->key, q, sizeof q));
        eng_meta_entry *me = &m->meta[m->n_meta];
        me->key = strdup(e->key);
        me->value = strdup(e->str);
        m->n_meta++; /* counted now so that eng_model_free frees a half-made pair too */
        if (!me->key || !me->value) return mfail(c, ENG_ENOMEM, "out of memory");
    }
    /* Sorted for eng_model_meta's binary search; neighbours reveal duplicates. */
    qsort(m->meta, (size_t)m->n_meta, sizeof *m->meta, cmp_meta);
    for (int i = 1; i < m->n_meta; i++)
        if (strcmp(m->meta[i - 1].key, m->meta[i].key) == 0)
            return mfail(c, ENG_EFORMAT, "duplicate __metadata__ key %s",
                         eng__ckpt_safe(m->meta[i].key, q, sizeof q));
    return ENG_OK;
}

/* Strict decimal integer: optional '-', digits, nothing else. Returns 0,
 * -1 if s is not such an integer, -2 if it does not fit in a long. */
static int parse_long(const char *s, long *out)
{
    const char *p = s + (*s == '-');
    if (*p < '0' || *p > '9') return -1;
    for (const char *d = p; *d; d++)
        if (*d < '0' || *d > '9') return -1;
    errno = 0;
    char *end;
    *out = strtol(s, &end, 10);
    return errno == ERANGE ? -2 : 0;
}

/* Reads key as an integer in [lo, hi]; def is used when the key is absent
 * and has_def is set, otherwise absence is an error. */
static int get_int(mctx *c, const char *key, long lo, long hi, int has_def, long def, int *out)
{
    const char *v = eng_model_meta(c->m, key);
    char q[100];
    long x;
    if (!v) {
        if (!has_def) return mfail(c, ENG_EFORMAT, "missing metadata %s", key);
        *out = (int)def;
        return ENG_OK;
    }
    int rc = parse_long(v, &x);
    if (rc == -1)
        return mfail(c, ENG_EFORMAT, "metadata %s = \"%s\" is not an integer", key,
                     eng__ckpt_safe(v, q, sizeof q));
    if (rc == -2 || x < lo || x > hi)
        return mfail(c, ENG_ERANGE, "metadata %s = %s is out of range [%ld, %ld]", key,
                     eng__ckpt_safe(v, q, sizeof q), lo, hi);
    *out = (int)x;
    return ENG_OK;
}

/* A finite decimal number such as "10000", "1e-05" or "0.5" (no hex, inf, nan,
 * no spaces), as a float; rc as parse_long. */
static int parse_float(const char *s, float *out)
{
    if (!*s || strspn(s, "0123456789+-.eE") != strlen(s)) return -1;
    errno = 0;
    char *end;
    double d = strtod(s, &end);
    if (*end) return -1;
    if (!isfinite(d) || !isfinite((float)d)) return -2;
    *out = (float)d;
    return 0;
}

/* Reads key as a float above lo (strictly), default def when absent. */
static int get_float(mctx *c, const char *key, float lo, float def, float *out)
{
    const char *v = eng_model_meta(c->m, key);
    char q[100];
    if (!v) {
        *out = def;
        return ENG_OK;
    }
    int rc = parse_float(v, out);
    if (rc == -1)
        return mfail(c, ENG_EFORMAT, "metadata %s = \"%s\" is not a number", key,
                     eng__ckpt_safe(v, q, sizeof q));
    /* Checked after rounding to float: that is the value the engine uses. */
    if (rc == -2 || !(*out > lo))
        return mfail(c, ENG_ERANGE, "metadata %s = %s must be a finite number > %g", key,
                     eng__ckpt_safe(v, q, sizeof q), (double)lo);
    return ENG_OK;
}

/* A per-block list: one entry for every block or a comma list of depth
 * entries, each an integer in [lo, hi] or (if allow_global) "global".
 * Spaces around entries are allowed. */
static int get_list(mctx *c, const char *key, int allow_global, long lo, long hi, int has_def,
                    long def, int *out)
{
    const char *v = eng_model_meta(c->m, key);
    int depth = c->m->hp.depth, n = 1;
    char q[100], entry[64];
    if (!v) {
        if (!has_def) return mfail(c, ENG_EFORMAT, "missing metadata %s", key);
        for (int l = 0; l < depth; l++)
            out[l] = (int)def;
        return ENG_OK;
    }
    for (const char *p = v; *p; p++)
        n += *p == ',';
    if (n != 1 && n != depth)
        return mfail(c, ENG_EFORMAT,
                     "metadata %s = \"%s\" has %d entries, expected 1 or depth = %d", key,
                     eng__ckpt_safe(v, q, sizeof q), n, depth);
    const char *p = v;
    for (int i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        long x = 0;
        int rc = -1;
        if ((size_t)(e - s) < sizeof entry) {
            memcpy(entry, s, (size_t)(e - s));
            entry[e - s] = 0;
            if (allow_global && strcmp(entry, "global") == 0) {
                x = ENG_WINDOW_GLOBAL;
                rc = 0;
            } else {
                rc = parse_long(entry, &x);
                if (rc == 0 && (x < lo || x > hi)) rc = -2;
            }
        }
        if (rc == -1)
            return mfail(c, ENG_EFORMAT, "metadata %s = \"%s\": entry %d is not an integer%s", key,
                         eng__ckpt_safe(v, q, sizeof q), i, allow_global ? " or 'global'" : "");
        if (rc == -2)
            return mfail(c, ENG_ERANGE, "metadata %s = \"%s\": entry %d is out of range [%ld, %ld]",
                         key, eng__ckpt_safe(v, q, sizeof q), i, lo, hi);
        out[i] = (int)x;
        p += len + (p[len] == ',');
    }
    for (int l = n; l < depth; l++) /* a single entry applies to every block */
        out[l] = out[0];
    return ENG_OK;
}

static int check_text(mctx *c, const char *key, const char *want)
{
    const char *v = eng_model_meta(c->m, key);
    char q[100];
    if (!v) return mfail(c, ENG_EFORMAT, "missing metadata %s", key);
    if (strcmp(v, want) != 0)
        return mfail(c, ENG_EFORMAT, "metadata %s = \"%s\", expected \"%s\"", key,
                     eng__ckpt_safe(v, q, sizeof q), want);
    return ENG_OK;
}

/* tokenizer: byte, or none when absent. */
static int get_tokenizer(mctx *c)
{
    const char *tok = eng_model_meta(c->m, "tokenizer");
    char q[100];
    if (!tok || strcmp(tok, "none") == 0)
        c->m->hp.tokenizer = ENG_TOKENIZER_NONE;
    else if (strcmp(tok, "byte") == 0)
        c->m->hp.tokenizer = ENG_TOKENIZER_BYTE;
    else
        return mfail(c, ENG_EFORMAT, "metadata tokenizer = \"%s\" is not byte or none",
                     eng__ckpt_safe(tok, q, sizeof q));
    return ENG_OK;
}

/*
 * The hyper-parameters of a nonlinear-transformer-0.0.3 checkpoint (MODEL.md
 * section 7), cast into eng_hparams: one head of width D, an MLP of 4D (the
 * package fixes both), `window` the blocks' attention radius (default 1, the
 * package's block default), `model_window` the radius of the attention after
 * every block (default 3), no dilation. mask_token (default 0, the package's
 * pad value) fills the cells generation has not reached yet; top_k (default
 * 0, none) is the filter of a request that sets none, the importer writing
 * the package's own default.
 */
static int seed_meta(mctx *c)
{
    eng_model *m = c->m;
    eng_hparams *hp = &m->hp;
    int rc;
    if ((rc = get_int(c, "vocab_size", 2, LIM_VOCAB, 0, 0, &hp->vocab_size)) ||
        (rc = get_int(c, "dim", 2, LIM_DIM, 0, 0, &hp->dim)) ||
        (rc = get_int(c, "depth", 1, LIM_DEPTH, 0, 0, &hp->depth)))
        return rc;
    /* The package concatenates two tables of ceil(D/2) frequencies into D. */
    if (hp->dim % 2 != 0)
        return mfail(c, ENG_ERANGE, "metadata dim = %d is odd: %s needs an even width", hp->dim,
                     ENG__ARCH_SEED_NAME);
    hp->heads = 1;
    hp->head_dim = hp->dim;
    hp->mlp_hidden = 4 * hp->dim;
    hp->rope_base = 10000.0f;
    if ((rc = get_int(c, "mask_token", 0, hp->vocab_size - 1L, 1, 0, &hp->mask_token)) ||
        (rc = get_int(c, "max_height", 1, LIM_GRID, 0, 0, &hp->max_height)) ||
        (rc = get_int(c, "max_width", 1, LIM_GRID, 0, 0, &hp->max_width)) ||
        (rc = get_int(c, "model_window", 0, LIM_RADIUS, 1, 3, &m->seed_window)) ||
        (rc = get_int(c, "top_k", 0, hp->vocab_size, 1, 0, &m->seed_top_k)) ||
        (rc = get_float(c, "norm_eps", 0.0f, 1e-5f, &hp->norm_eps)))
        return rc;
    m->window = malloc((size_t)hp->depth * sizeof *m->window);
    m->dilation = malloc((size_t)hp->depth * sizeof *m->dilation);
    if (!m->window || !m->dilation) return mfail(c, ENG_ENOMEM, "out of memory");
    hp->window = m->window;
    hp->dilation = m->dilation;
    for (int l = 0; l < hp->depth; l++)
        m->dilation[l] = 1;
    if ((rc = get_list(c, "window", 0, 0, LIM_RADIUS, 1, 1, m->window))) return rc;
    return get_tokenizer(c);
}

int eng__ckpt_meta(eng_model *m, const eng__jnode *meta, char *msg, size_t msglen)
{
    mctx c = {m, msg, msglen};
    eng_hparams *hp = &m->hp;
    int rc;

    if ((rc = copy_meta(&c, meta)) || (rc = check_text(&c, "format", "heptapod"))) return rc;
    const char *arch = eng_model_meta(m, "arch");
    if (arch && strcmp(arch, ENG__ARCH_SEED_NAME) == 0) {
        m->arch = ENG__ARCH_SEED;
        return seed_meta(&c);
    }
    m->arch = ENG__ARCH_V1;
    if ((rc = check_text(&c, "arch", "heptapod-v1")) ||
        (rc = get_int(&c, "vocab_size", 2, LIM_VOCAB, 0, 0, &hp->vocab_size)) ||
        (rc = get_int(&c, "dim", 1, LIM_DIM, 0, 0, &hp->dim)) ||
        (rc = get_int(&c, "depth", 1, LIM_DEPTH, 0, 0, &hp->depth)) ||
        (rc = get_int(&c, "heads", 1, LIM_DIM, 0, 0, &hp->heads)))
        return rc;
    if (hp->dim % hp->heads != 0)
        return mfail(&c, ENG_ERANGE, "metadata dim = %d is not divisible by heads = %d", hp->dim,
                     hp->heads);
    hp->head_dim = hp->dim / hp->heads;
    if (hp->head_dim % 4 != 0)
        return mfail(&c, ENG_ERANGE,
                     "metadata head_dim = dim / heads = %d / %d = %d is not divisible by 4",
                     hp->dim, hp->heads, hp->head_dim);
    if ((rc = get_int(&c, "mlp_hidden", 1, LIM_HIDDEN, 1, 4L * hp->dim, &hp->mlp_hidden)) ||
        (rc = get_int(&c, "mask_token", 0, hp->vocab_size - 1L, 0, 0, &hp->mask_token)) ||
        (rc = get_int(&c, "max_height", 1, LIM_GRID, 0, 0, &hp->max_height)) ||
        (rc = get_int(&c, "max_width", 1, LIM_GRID, 0, 0, &hp->max_width)) ||
        (rc = get_float(&c, "rope_base", 1.0f, 10000.0f, &hp->rope_base)) ||
        (rc = get_float(&c, "norm_eps", 0.0f, 1e-5f, &hp->norm_eps)))
        return rc;

    m->window = malloc((size_t)hp->depth * sizeof *m->window);
    m->dilation = malloc((size_t)hp->depth * sizeof *m->dilation);
    if (!m->window || !m->dilation) return mfail(&c, ENG_ENOMEM, "out of memory");
    hp->window = m->window;
    hp->dilation = m->dilation;
    if ((rc = get_list(&c, "window", 1, 0, LIM_RADIUS, 0, 0, m->window)) ||
        (rc = get_list(&c, "dilation", 0, 1, LIM_RADIUS, 1, 1, m->dilation)))
        return rc;

    return get_tokenizer(&c);
}
