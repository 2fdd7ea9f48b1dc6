/*
 * engine_bench.c - speed of the forward pass (make bench).
 *
 *   build/bench/engine_bench [--threads N] [--seconds S] [--no-ref] [--precision P]
 *   build/bench/engine_bench --matrix ...   (precisions side by side, below)
 *   build/bench/engine_bench --write-checkpoint PATH   (the model only)
 *
 * Writes a random checkpoint (V 257, D 256, L 6, 8 heads, r 3, F 1024,
 * weights N(0, 0.02), LayerNorm weights 1 + N(0, 0.02)) to a temporary file,
 * loads it with eng_model_load and times eng_forward on 32x32 grids (batch 1
 * and 8) and 16x16 grids (batch 1 and 16): cells/s, GFLOP/s and where the
 * time goes (the workspace's phase profile), then the median latency of a
 * 1x1 grid on the same threads and on one. For scale it times a 2048^3
 * sgemm on the same number of threads and, when /usr/bin/python3 has torch,
 * the PyTorch reference (tools/bench_ref.py) on the same checkpoint at 32x32
 * batch 1, on the same threads and on one.
 *
 * FLOPs count 2 per multiply-add: the Linear layers (2 * in * out per cell)
 * and attention (per head and attended neighbour a head_dim dot product and
 * a head_dim weighted sum: 4 * D per neighbour per cell, windows clipped at
 * the borders as the model clips them). LayerNorm, GELU, rope and the softmax
 * exponentials are not counted, so GFLOP/s slightly understates the work.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/eng.h"
#include "engine/workspace.h"

enum { V = 257, D = 256, L = 6, HEADS = 8, R = 3, F = 1024, MAXSIDE = 64 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static double rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static float gauss(void)
{
    double u = rnd() + 1e-300, v = rnd();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* --- a tiny safetensors writer ----------------------------------------------- */

typedef struct tensor {
    char name[64];
    int ndim, shape[2];
    float mean; /* values: mean + N(0, 0.02) */
} tensor;

static int n_tensors;
static tensor tensors[8 + 12 * L];

static void add(const char *name, int rows, int cols, float mean)
{
    tensor *t = &tensors[n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->mean = mean;
}

static size_t count(const tensor *t)
{
    return (size_t)t->shape[0] * (t->ndim == 2 ? (size_t)t->shape[1] : 1);
}

/* Writes the checkpoint to `path`, or to a new temporary file whose name
 * goes to path when keep is 0; returns 0 on success. */
static int write_checkpoint(char *path, size_t pathlen, int keep)
{
    char name[64];
    n_tensors = 0;
    add("tok_emb.weight", V, D, 0.0f);
    for (int l = 0; l < L; l++) {
        static const struct {
            const char *suffix;
            int rows, cols;
            float mean;
        } parts[] = {
            {"norm1.weight", D, 0, 1},        {"norm1.bias", D, 0, 0},
            {"attn.qkv.weight", 3 * D, D, 0}, {"attn.qkv.bias", 3 * D, 0, 0},
            {"attn.proj.weight", D, D, 0},    {"attn.proj.bias", D, 0, 0},
            {"norm2.weight", D, 0, 1},        {"norm2.bias", D, 0, 0},
            {"mlp.fc1.weight", F, D, 0},      {"mlp.fc1.bias", F, 0, 0},
            {"mlp.fc2.weight", D, F, 0},      {"mlp.fc2.bias", D, 0, 0},
        };
        for (size_t p = 0; p < sizeof parts / sizeof *parts; p++) {
            snprintf(name, sizeof name, "blocks.%d.%s", l, parts[p].suffix);
            add(name, parts[p].rows, parts[p].cols, parts[p].mean);
        }
    }
    add("norm.weight", D, 0, 1.0f);
    add("norm.bias", D, 0, 0.0f);
    add("head.weight", V, D, 0.0f);
    add("head.bias", V, 0, 0.0f);

    size_t cap = 64 + (size_t)n_tensors * 160 + 1024, len = 0, offset = 0;
    char *hdr = malloc(cap);
    if (!hdr) return -1;
    len += (size_t)snprintf(hdr + len, cap - len,
                            "{\"__metadata__\":{\"format\":\"heptapod\",\"arch\":\"heptapod-v1\","
                            "\"vocab_size\":\"%d\",\"dim\":\"%d\",\"depth\":\"%d\","
                            "\"heads\":\"%d\",\"window\":\"%d\",\"mlp_hidden\":\"%d\","
                            "\"mask_token\":\"%d\",\"tokenizer\":\"byte\","
                            "\"max_height\":\"%d\",\"max_width\":\"%d\"}",
                            V, D, L, HEADS, R, F, V - 1, MAXSIDE, MAXSIDE);
    for (int i = 0; i < n_tensors; i++) {
        const tensor *t = &tensors[i];
        size_t bytes = count(t) * sizeof(float);
        if (t->ndim == 2)
            len += (size_t)snprintf(hdr + len, cap - len,
                                    ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                                    "\"data_offsets\":[%zu,%zu]}",
                                    t->name, t->shape[0], t->shape[1], offset, offset + bytes);
        else
            len += (size_t)snprintf(hdr + len, cap - len,
                                    ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],"
                                    "\"data_offsets\":[%zu,%zu]}",
                                    t->name, t->shape[0], offset, offset + bytes);
        offset += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8 != 0) /* spaces keep the tensors 8-byte aligned */
        hdr[len++] = ' ';

    FILE *f;
    if (keep) {
        f = fopen(path, "wb");
    } else {
        snprintf(path, pathlen, "/tmp/heptapod-bench-XXXXXX");
        int fd = mkstemp(path);
        f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    }
    if (!f) {
        free(hdr);
        return -1;
    }
    unsigned char n8[8];
    for (int i = 0; i < 8; i++)
        n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fwrite(n8, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len;
    for (int i = 0; i < n_tensors && ok; i++) {
        size_t n = count(&tensors[i]);
        for (size_t j = 0; j < n && ok; j++) {
            float x = tensors[i].mean + 0.02f * gauss();
            ok = fwrite(&x, sizeof x, 1, f) == 1; /* little-endian host */
        }
    }
    ok = fclose(f) == 0 && ok;
    free(hdr);
    return ok ? 0 : -1;
}

/* --- measurements ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n), which it sorts. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double sgemm_gflops(int threads)
{
    int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
    float *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0.0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)rnd() - 0.5f;
        b[i] = (float)rnd() - 0.5f;
    }
    openblas_set_num_threads(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    enum { REPS = 5 };
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    double dt = median(t, REPS);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / dt / 1e9;
}

/* Positions p + d*i (i in [-r, r]) inside [0, n): a window's extent along
 * one axis, clipped at the borders as the model clips it (MODEL.md 3.2). */
static long axis_reach(int n, int p, int r, int d)
{
    if (r == ENG_WINDOW_GLOBAL) return n;
    long k = 0;
    for (int i = -r; i <= r; i++)
        k += p + d * i >= 0 && p + d * i < n;
    return k;
}

/* Multiply-adds x 2 of one forward on an h x w grid of any model: the Linear
 * layers, and per layer, head and attended neighbour a head_dim dot product
 * and a head_dim weighted sum (4 * D per neighbour per cell). */
static double model_flops(const eng_hparams *hp, int h, int w)
{
    double d = hp->dim, f = hp->mlp_hidden, v = hp->vocab_size;
    double per_cell = hp->depth * (2.0 * d * 3 * d + 2.0 * d * d + 4.0 * d * f) + 2.0 * d * v;
    double attn = 0.0;
    for (int l = 0; l < hp->depth; l++) {
        long ny = 0, nx = 0;
        for (int y = 0; y < h; y++)
            ny += axis_reach(h, y, hp->window[l], hp->dilation[l]);
        for (int x = 0; x < w; x++)
            nx += axis_reach(w, x, hp->window[l], hp->dilation[l]);
        attn += 4.0 * d * (double)ny * (double)nx; /* windows are separable */
    }
    return per_cell * h * w + attn;
}

static double forward_flops(const eng_model *m, int h, int w, int batch)
{
    return batch * model_flops(eng_model_hparams(m), h, w);
}

typedef struct result {
    double cells_per_s, gflops, attention_share;
    eng__profile prof;
    double seconds_per_forward;
} result;

static int run_config(const eng_model *m, int threads, int h, int w, int batch, double seconds,
                      result *res)
{
    char err[256];
    eng_workspace *ws = eng_workspace_create(m, h * w * batch, threads, err, sizeof err);
    if (!ws) {
        fprintf(stderr, "engine_bench: %s\n", err);
        return -1;
    }
    eng_grid grids[64];
    int32_t *tok = malloc(sizeof(int32_t) * h * w * batch);
    if (!tok) {
        eng_workspace_free(ws);
        return -1;
    }
    for (int i = 0; i < h * w * batch; i++)
        tok[i] = (int32_t)(rnd() * (V - 1));
    for (int b = 0; b < batch; b++)
        grids[b] = (eng_grid){.height = h, .width = w, .tokens = tok + (size_t)b * h * w};
    const float *z;
    int rc = eng_forward(ws, grids, batch, &z); /* warm-up: pages, caches */
    memset(&res->prof, 0, sizeof res->prof);
    eng__ws_set_profile(ws, &res->prof);
    int iters = 0;
    double t0 = now(), el = 0.0;
    while (rc == ENG_OK && (iters < 3 || el < seconds)) {
        rc = eng_forward(ws, grids, batch, &z);
        iters++;
        el = now() - t0;
    }
    eng_workspace_free(ws);
    free(tok);
    if (rc != ENG_OK) {
        fprintf(stderr, "engine_bench: eng_forward: %s\n", eng_strerror(rc));
        return -1;
    }
    res->seconds_per_forward = el / iters;
    res->cells_per_s = (double)h * w * batch / res->seconds_per_forward;
    res->gflops = forward_flops(m, h, w, batch) / res->seconds_per_forward / 1e9;
    double total = 0.0;
    for (int p = 0; p < ENG__PHASES; p++)
        total += res->prof.seconds[p];
    res->attention_share = total > 0 ? res->prof.seconds[ENG__PH_ATTENTION] / el : 0.0;
    return 0;
}

/* cells/s of the PyTorch reference, or 0 if it cannot run here. */
static double reference_cells_per_s(const char *ckpt, int threads)
{
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("reference: /usr/bin/python3 cannot import torch; skipped\n");
        return 0.0;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tools/bench_ref.py --model %s --height 32 --width 32 "
             "--batch 1 --threads %d --seconds 5",
             ckpt, threads);
    FILE *p = popen(cmd, "r");
    if (!p) return 0.0;
    char line[512];
    double cps = 0.0;
    while (fgets(line, sizeof line, p)) {
        const char *s = strstr(line, "cells_per_s=");
        if (strncmp(line, "ref ", 4) == 0 && s) cps = atof(s + strlen("cells_per_s="));
    }
    if (pclose(p) != 0 || cps <= 0.0) {
        printf("reference: %s failed\n", cmd);
        return 0.0;
    }
    return cps;
}

/*
 * engine/reference at 32x32 x 1, on `threads` threads and on one. Each
 * engine figure is taken right after the reference's run, so that both see
 * the same load. The one-thread ratio is the steadier one on a shared
 * machine: with two threads and a busy CPU, the reference's OpenMP threads
 * wait on each other and its figure falls far more than the engine's.
 */
static void compare_with_reference(const eng_model *m, const char *ckpt, int threads,
                                   double seconds)
{
    int counts[2] = {threads, 1};
    for (int i = 0; i < (threads == 1 ? 1 : 2); i++) {
        double ref = reference_cells_per_s(ckpt, counts[i]);
        result now;
        if (ref <= 0.0 || run_config(m, counts[i], 32, 32, 1, seconds, &now) != 0) return;
        printf("reference at 32x32 x 1, %d thread%s: %.0f cells/s; engine right after: %.0f "
               "cells/s; engine/reference = %.1fx (target >= 10x)\n",
               counts[i], counts[i] == 1 ? "" : "s", ref, now.cells_per_s, now.cells_per_s / ref);
    }
}

/*
 * The latency of one 1x1 grid (a forward that is all fixed costs: a few
 * dozen pool phases of a handful of rows each), as the median of many
 * back-to-back forwards, on `threads` threads and on one. The difference is
 * what the pool's hand-offs cost.
 */
static double median_1x1_ms(const eng_model *m, int threads, double seconds)
{
    char err[256];
    eng_workspace *ws = eng_workspace_create(m, 1, threads, err, sizeof err);
    if (!ws) return -1.0;
    enum { MAX_RUNS = 20000 };
    static double t[MAX_RUNS];
    int32_t tok = 'a';
    eng_grid g = {.height = 1, .width = 1, .tokens = &tok};
    const float *z;
    int n = 0, rc = eng_forward(ws, &g, 1, &z);
    for (double t0 = now(); rc == ENG_OK && n < MAX_RUNS && (n < 50 || now() - t0 < seconds);) {
        double a = now();
        rc = eng_forward(ws, &g, 1, &z);
        t[n++] = now() - a;
    }
    eng_workspace_free(ws);
    if (rc != ENG_OK) return -1.0;
    for (int i = 1; i < n; i++) /* insertion sort: n is small and mostly ordered */
        for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    return t[n / 2] * 1e3;
}

static void bench_1x1(const eng_model *m, int threads, double seconds)
{
    double many = median_1x1_ms(m, threads, seconds / 2), one = median_1x1_ms(m, 1, seconds / 2);
    printf("1x1 x 1 median latency: %.3f ms on %d threads, %.3f ms on 1\n", many, threads, one);
}

static const char *phase_names[ENG__PHASES] = {"embed+ln", "qkv+rope", "attention", "proj+ln",
                                               "fc1+gelu", "fc2+ln",   "head"};

/* --- precisions side by side (make bench) --------------------------------------- */

/*
 * engine_bench --matrix [--case PATH:HxW]... [--precisions f32,bf16,int8]
 *              [--threads-list 1,2] [--repeats 5] [--seconds 0.4]
 *
 * For each case (a checkpoint and a grid size; PATH "random" is the model
 * above), each precision and each thread count: cells/s and GFLOP/s (GOP/s
 * for int8: the same multiply-adds, counted alike), as machine-readable
 * lines that bench/report.py turns into the table of `make bench`:
 *
 *   eng case=random:32x32 precision=f32 threads=2 status=ok cells_per_s=...
 *   eng case=random:32x32 precision=int8 threads=2 status=n/a message=...
 *
 * The repeats are interleaved (every configuration once, then all again) so
 * that a change in the machine's load falls on all of them alike; a figure
 * is the median of its repeats, each at least `seconds` of forwards.
 */
enum { MAX_CASES = 4, MAX_LIST = 4, MAX_REPEATS = 31 };

typedef struct mcase {
    char path[512];
    int h, w;
    char desc[64]; /* "D256-L6-h8-r3-F1024-V257", once a model loaded */
} mcase;

/* One (case, precision, threads) of the matrix. */
typedef struct mcell {
    eng_workspace *ws; /* NULL when it cannot run: msg says why */
    char msg[256];
    double t[MAX_REPEATS]; /* seconds per forward, one per repeat */
    eng__profile prof;
} mcell;

/* "PATH:HxW" -> c; 0 on success. */
static int parse_case(const char *s, mcase *c)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof c->path) return -1;
    char tail;
    if (sscanf(colon + 1, "%dx%d%c", &c->h, &c->w, &tail) != 2 || c->h < 1 || c->w < 1) return -1;
    snprintf(c->path, sizeof c->path, "%.*s", (int)(colon - s), s);
    return 0;
}

/* A comma list: precision names (precisions != 0) or thread counts >= 1.
 * Returns the number of entries, or -1. */
static int parse_list(const char *s, int precisions, int *out)
{
    int n = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int v = precisions ? eng_precision_parse(tok) : atoi(tok);
        if (n == MAX_LIST || (precisions ? v < 0 : v < 1)) return -1;
        out[n++] = v;
    }
    return n > 0 ? n : -1;
}

/* Forwards on one grid for at least `seconds` (and twice at least); the
 * seconds per forward go to *t. */
static int time_chunk(eng_workspace *ws, const eng_grid *g, double seconds, double *t)
{
    const float *z;
    int n = 0, rc = ENG_OK;
    double t0 = now(), el = 0.0;
    while (rc == ENG_OK && (n < 2 || el < seconds)) {
        rc = eng_forward(ws, g, 1, &z);
        n++;
        el = now() - t0;
    }
    *t = el / n;
    return rc;
}

static void print_cell(const mcase *c, int prec, int threads, mcell *x, int repeats, double flops,
                       double sgemm)
{
    printf("eng case=%s:%dx%d model=%s precision=%s threads=%d ", c->path, c->h, c->w,
           c->desc[0] ? c->desc : "?", eng_precision_name(prec), threads);
    if (!x->ws) {
        printf("status=n/a message=%s\n", x->msg);
        return;
    }
    double lo = x->t[0], hi = x->t[0];
    for (int r = 1; r < repeats; r++) {
        lo = x->t[r] < lo ? x->t[r] : lo;
        hi = x->t[r] > hi ? x->t[r] : hi;
    }
    double t = median(x->t, repeats), total = 0.0;
    printf("status=ok ms=%.3f cells_per_s=%.1f gflops=%.2f sgemm_gflops=%.1f pct_sgemm=%.1f "
           "spread_pct=%.1f phases=",
           1e3 * t, c->h * c->w / t, flops / t / 1e9, sgemm, 100.0 * flops / t / 1e9 / sgemm,
           100.0 * (hi - lo) / t);
    for (int p = 0; p < ENG__PHASES; p++)
        total += x->prof.seconds[p];
    for (int p = 0; p < ENG__PHASES; p++)
        printf("%s%s:%.1f", p ? "," : "", phase_names[p],
               total > 0 ? 100.0 * x->prof.seconds[p] / total : 0.0);
    printf("\n");
}

/* One case: every precision's model loaded (or its refusal kept), a
 * workspace per thread count, the interleaved repeats, the lines. */
static int run_case(mcase *c, const char *random_path, const int *precs, int n_prec, const int *thr,
                    int n_thr, const double *sgemm, int repeats, double seconds)
{
    const char *path = strcmp(c->path, "random") == 0 ? random_path : c->path;
    eng_model *models[MAX_LIST] = {0};
    mcell cells[MAX_LIST][MAX_LIST];
    memset(cells, 0, sizeof cells);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)c->h * (size_t)c->w);
    if (!tok) return -1;
    double flops = 0.0;
    eng_grid g = {.height = c->h, .width = c->w, .tokens = tok};
    int have_tokens = 0;
    for (int p = 0; p < n_prec; p++) {
        eng_load_opts o = ENG_LOAD_OPTS_INIT;
        o.precision = precs[p];
        char why[256] = "";
        models[p] = eng_model_load_opts(path, &o, why, sizeof why);
        size_t skip = strlen(path); /* "PATH: fault" -> "fault" */
        if (!models[p] && strncmp(why, path, skip) == 0 && strncmp(why + skip, ": ", 2) == 0)
            memmove(why, why + skip + 2, strlen(why + skip + 2) + 1);
        const eng_hparams *hp = models[p] ? eng_model_hparams(models[p]) : NULL;
        if (hp && (c->h > hp->max_height || c->w > hp->max_width))
            snprintf(why, sizeof why, "%dx%d is larger than the model allows", c->h, c->w);
        if (hp && !have_tokens) { /* the same tokens for every precision */
            for (int k = 0; k < c->h * c->w; k++)
                tok[k] = (int32_t)(rnd() * (hp->vocab_size - 1));
            flops = model_flops(hp, c->h, c->w);
            have_tokens = 1;
            char r[16] = "global";
            if (hp->window[0] != ENG_WINDOW_GLOBAL) snprintf(r, sizeof r, "%d", hp->window[0]);
            snprintf(c->desc, sizeof c->desc, "D%d-L%d-h%d-r%s-F%d-V%d", hp->dim, hp->depth,
                     hp->heads, r, hp->mlp_hidden, hp->vocab_size);
        }
        for (int t = 0; t < n_thr; t++) {
            mcell *x = &cells[p][t];
            char err[256];
            const float *z;
            snprintf(err, sizeof err, "%s", why);
            if (hp && !why[0])
                x->ws = eng_workspace_create(models[p], c->h * c->w, thr[t], err, sizeof err);
            if (x->ws && eng_forward(x->ws, &g, 1, &z) != ENG_OK) { /* warm-up */
                snprintf(err, sizeof err, "eng_forward failed");
                eng_workspace_free(x->ws);
                x->ws = NULL;
            }
            if (x->ws) eng__ws_set_profile(x->ws, &x->prof);
            snprintf(x->msg, sizeof x->msg, "%s", err[0] ? err : "cannot run");
        }
    }
    int rc = 0;
    for (int r = 0; r < repeats && rc == 0; r++)
        for (int p = 0; p < n_prec && rc == 0; p++)
            for (int t = 0; t < n_thr && rc == 0; t++)
                if (cells[p][t].ws) rc = time_chunk(cells[p][t].ws, &g, seconds, &cells[p][t].t[r]);
    for (int p = 0; p < n_prec; p++)
        for (int t = 0; t < n_thr; t++) {
            if (rc == 0) print_cell(c, precs[p], thr[t], &cells[p][t], repeats, flops, sgemm[t]);
            eng_workspace_free(cells[p][t].ws);
        }
    for (int p = 0; p < n_prec; p++)
        eng_model_free(models[p]);
    free(tok);
    if (rc != 0) fprintf(stderr, "engine_bench: eng_forward: %s\n", eng_strerror(rc));
    return rc == 0 ? 0 : -1;
}

static int run_matrix(mcase *cases, int n_cases, const char *random_path, const int *precs,
                      int n_prec, const int *thr, int n_thr, int repeats, double seconds)
{
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("kernel corename=%s OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s isa=%s\n",
           openblas_get_corename(), coretype ? coretype : "(unset)", l2 ? l2 : "(unset)",
           eng_isa_name());
    double sgemm[MAX_LIST];
    for (int t = 0; t < n_thr; t++) {
        sgemm[t] = sgemm_gflops(thr[t]);
        printf("sgemm threads=%d gflops=%.1f\n", thr[t], sgemm[t]);
    }
    fflush(stdout);
    for (int c = 0; c < n_cases; c++) {
        if (run_case(&cases[c], random_path, precs, n_prec, thr, n_thr, sgemm, repeats, seconds))
            return 1;
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 2, with_ref = 1, matrix = 0, repeats = 5, n_cases = 0, n_prec = 3, n_thr = 2;
    int precision = ENG_PRECISION_F32, precs[MAX_LIST] = {0, 1, 2}, thr[MAX_LIST] = {1, 2};
    double seconds = 0.0;
    char ckpt[512], err[256];
    mcase cases[MAX_CASES];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--write-checkpoint") == 0 && i + 1 < argc) {
            snprintf(ckpt, sizeof ckpt, "%s", argv[i + 1]);
            if (write_checkpoint(ckpt, sizeof ckpt, 1) != 0) {
                fprintf(stderr, "engine_bench: cannot write %s\n", ckpt);
                return 1;
            }
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(argv[i], "--threads") == 0 && v)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && v)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--no-ref") == 0)
            with_ref = 0;
        else if (strcmp(argv[i], "--precision") == 0 && v)
            bad = (precision = eng_precision_parse(argv[++i])) < 0;
        else if (strcmp(argv[i], "--matrix") == 0)
            matrix = 1;
        else if (strcmp(argv[i], "--case") == 0 && v)
            bad = n_cases == MAX_CASES || parse_case(argv[++i], &cases[n_cases++]) != 0;
        else if (strcmp(argv[i], "--precisions") == 0 && v)
            bad = (n_prec = parse_list(argv[++i], 1, precs)) < 0;
        else if (strcmp(argv[i], "--threads-list") == 0 && v)
            bad = (n_thr = parse_list(argv[++i], 0, thr)) < 0;
        else if (strcmp(argv[i], "--repeats") == 0 && v)
            bad = (repeats = atoi(argv[++i])) < 1 || repeats > MAX_REPEATS;
        else
            bad = 1;
        if (bad) {
            fprintf(stderr,
                    "usage: %s [--threads N] [--seconds S] [--no-ref] [--precision P]\n"
                    "       %s --matrix [--case PATH:HxW]... [--precisions f32,bf16,int8]\n"
                    "                   [--threads-list 1,2] [--repeats N] [--seconds S]\n"
                    "       %s --write-checkpoint PATH\n",
                    argv[0], argv[0], argv[0]);
            return 2;
        }
    }
    if (seconds == 0.0) seconds = matrix ? 0.4 : 3.0;
    if (threads < 1 || seconds <= 0) {
        fprintf(stderr, "engine_bench: threads must be >= 1 and seconds > 0\n");
        return 2;
    }

    if (write_checkpoint(ckpt, sizeof ckpt, 0) != 0) {
        fprintf(stderr, "engine_bench: cannot write a checkpoint in /tmp\n");
        return 1;
    }
    if (matrix) {
        if (n_cases == 0) parse_case("random:32x32", &cases[n_cases++]);
        int rc = run_matrix(cases, n_cases, ckpt, precs, n_prec, thr, n_thr, repeats, seconds);
        unlink(ckpt);
        return rc;
    }
    eng_load_opts opts = ENG_LOAD_OPTS_INIT;
    opts.precision = precision;
    eng_model *m = eng_model_load_opts(ckpt, &opts, err, sizeof err);
    if (!m) {
        fprintf(stderr, "engine_bench: %s\n", err);
        unlink(ckpt);
        return 1;
    }
    printf("model: V=%d D=%d L=%d heads=%d r=%d F=%d, random N(0, 0.02); threads=%d; %s\n", V, D, L,
           HEADS, R, F, threads, eng_precision_name(precision));

    double sgemm = sgemm_gflops(threads);
    printf("sgemm 2048x2048x2048: %.1f GFLOP/s\n", sgemm);

    /* The last line is not a target: many small grids, where each grid's
     * own tiles (forward.c) are short and OpenBLAS packs weights per tile. */
    static const int configs[][3] = {
        {32, 32, 1}, {32, 32, 8}, {16, 16, 1}, {16, 16, 16}, {4, 4, 64}};
    enum { N_CONFIGS = sizeof configs / sizeof *configs };
    result res[N_CONFIGS];
    int status = 0;
    printf("%-13s %10s %10s %9s %8s  %s\n", "grid x batch", "ms/fwd", "cells/s", "GFLOP/s",
           "attn %", "time by phase (%)");
    for (int c = 0; c < N_CONFIGS; c++) {
        int h = configs[c][0], w = configs[c][1], b = configs[c][2];
        if (run_config(m, threads, h, w, b, seconds, &res[c]) != 0) {
            status = 1;
            break;
        }
        printf("%2dx%-2d x %-4d %10.2f %10.0f %9.1f %8.1f ", h, w, b,
               res[c].seconds_per_forward * 1e3, res[c].cells_per_s, res[c].gflops,
               100.0 * res[c].attention_share);
        double total = 0.0;
        for (int p = 0; p < ENG__PHASES; p++)
            total += res[c].prof.seconds[p];
        for (int p = 0; p < ENG__PHASES; p++)
            printf(" %s %.1f", phase_names[p], 100.0 * res[c].prof.seconds[p] / total);
        printf("\n");
    }
    if (status == 0) {
        printf("forward / sgemm GFLOP/s at 32x32 x 1: %.0f%% (target >= 50%%)\n",
               100.0 * res[0].gflops / sgemm);
        printf("attention share at 32x32 x 1: %.1f%% (target <= 20%%)\n",
               100.0 * res[0].attention_share);
        bench_1x1(m, threads, seconds);
        if (with_ref) compare_with_reference(m, ckpt, threads, seconds);
    }
    eng_model_free(m);
    unlink(ckpt);
    return status;
}
