/*
 * generate.c - generation by iterative refinement (MODEL.md section 5): the
 * per-grid state and one iteration for a batch of states.
 *
 * A step is three phases: gather the unfinished states with open cells into
 * one batched forward pass; sample every uncommitted cell of every state in
 * parallel over the batch's cells (each cell reads only its own logits and
 * its own counter-based draw); then, per state, commit the most confident
 * cells and re-mask the rest as the cosine schedule says.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/sample.h"
#include "engine/seed.h"

int eng_gen_init(eng_gen *g, const eng_model *m, int height, int width, const int32_t *given,
                 int iterations, const eng_sampling *s, char *err, size_t errlen)
{
    if (m && m->arch == ENG__ARCH_SEED)
        return eng__seed_gen_init(g, m, height, width, given, iterations, s, err, errlen);
    if (!g) return eng__fail(err, errlen, ENG_EINVAL, "no generation state");
    memset(g, 0, sizeof *g);
    if (!m || !s)
        return eng__fail(err, errlen, ENG_EINVAL, "generation needs a model and sampling settings");
    const eng_hparams *hp = eng_model_hparams(m);
    if (height < 1 || height > hp->max_height)
        return eng__fail(err, errlen, ENG_ERANGE, "height %d is outside 1..%d", height,
                         hp->max_height);
    if (width < 1 || width > hp->max_width)
        return eng__fail(err, errlen, ENG_ERANGE, "width %d is outside 1..%d", width,
                         hp->max_width);
    if (iterations < 1)
        return eng__fail(err, errlen, ENG_ERANGE, "iterations %d is below 1", iterations);
    if (!isfinite(s->temperature) || s->temperature < 0.0f)
        return eng__fail(err, errlen, ENG_ERANGE, "temperature %g is not a finite value >= 0",
                         (double)s->temperature);
    if (s->top_k < 0) return eng__fail(err, errlen, ENG_ERANGE, "top_k %d is negative", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return eng__fail(err, errlen, ENG_ERANGE, "top_p %g is outside (0, 1]", (double)s->top_p);
    if (!(s->remask_noise >= 0.0f && s->remask_noise <= ENG_MAX_REMASK_NOISE))
        return eng__fail(err, errlen, ENG_ERANGE, "remask_noise %g is outside 0..%g",
                         (double)s->remask_noise, (double)ENG_MAX_REMASK_NOISE);

    int cells = height * width, n_open = 0;
    for (int c = 0; c < cells; c++) {
        int32_t id = given ? given[c] : ENG_OPEN;
        if (id == ENG_OPEN)
            n_open++;
        else if (id < 0 || id >= hp->vocab_size)
            return eng__fail(err, errlen, ENG_ERANGE,
                             "given token %d at (%d,%d) is outside the vocabulary (%d)", (int)id,
                             c / width, c % width, hp->vocab_size);
        else if (id == hp->mask_token)
            return eng__fail(err, errlen, ENG_ERANGE,
                             "the mask token %d cannot be given (at (%d,%d))", (int)id, c / width,
                             c % width);
    }

    g->tokens = malloc((size_t)cells * sizeof *g->tokens);
    g->cell = malloc((size_t)cells * sizeof *g->cell);
    g->conf = malloc((size_t)cells * sizeof *g->conf);
    g->order = malloc((size_t)cells * sizeof *g->order);
    if (s->remask_noise > 0.0f) g->key = malloc((size_t)cells * sizeof *g->key);
    if (!g->tokens || !g->cell || !g->conf || !g->order || (s->remask_noise > 0.0f && !g->key)) {
        eng_gen_close(g);
        return eng__fail(err, errlen, ENG_ENOMEM, "no memory for a %dx%d grid", height, width);
    }
    for (int c = 0; c < cells; c++) {
        int open = !given || given[c] == ENG_OPEN;
        g->tokens[c] = open ? hp->mask_token : given[c];
        g->cell[c] = open ? ENG_CELL_OPEN : ENG_CELL_GIVEN;
        g->conf[c] = 0.0f;
    }
    g->height = height;
    g->width = width;
    g->iterations = iterations;
    g->n_open = n_open;
    g->n_masked = n_open;
    g->sampling = *s;
    return ENG_OK;
}

void eng_gen_close(eng_gen *g)
{
    if (!g) return;
    free(g->tokens);
    free(g->cell);
    free(g->conf);
    free(g->order);
    free(g->key);
    memset(g, 0, sizeof *g);
}

int eng_gen_done(const eng_gen *g)
{
    return g->iter >= g->iterations;
}

/* A state takes part in the forward pass if it has work and cells to refine;
 * one without open cells only counts its iterations. */
static int in_batch(const eng_gen *g)
{
    return !eng_gen_done(g) && g->n_open > 0;
}

typedef struct step_job {
    eng_workspace *ws;
    eng_gen *const *gens;
    int n;
    const float *logits; /* [batch cells, vocab] */
    int vocab, mask;
} step_job;

/* Samples the batch cells [begin, end): batch cell b is cell b - base of the
 * state whose cells start at base, in the order the forward pass got them. */
static void sample_cells(void *arg, int begin, int end, int thread)
{
    const step_job *job = arg;
    void *scratch = eng__ws_scratch(job->ws, thread);
    int base = 0;
    for (int i = 0; i < job->n && base < end; i++) {
        eng_gen *g = job->gens[i];
        if (!in_batch(g)) continue;
        int cells = g->height * g->width;
        int lo = begin > base ? begin - base : 0;
        int hi = end - base < cells ? end - base : cells;
        uint32_t t = (uint32_t)g->iter + 1;
        int drawn = g->sampling.temperature > 0.0f;
        /* The annealed noise scale of the re-mask keys: nu * (1 - t/K). */
        double scale = g->key ? (double)g->sampling.remask_noise *
                                    (1.0 - (double)t / (double)g->iterations)
                              : 0.0;
        for (int c = lo; c < hi; c++) {
            if (g->cell[c] != ENG_CELL_OPEN) continue;
            const float *z = job->logits + (size_t)(base + c) * (size_t)job->vocab;
            double u = drawn ? eng__uniform(g->sampling.seed, t, (uint32_t)c) : 0.0;
            int s = eng__sample(z, job->vocab, job->mask, &g->sampling, u, scratch);
            g->tokens[c] = s;
            g->conf[c] = eng__confidence(z, job->vocab, job->mask, s);
            if (g->key) {
                /* A NaN cell (conf -1) or an underflow ranks below every other. */
                double lc = g->conf[c] > 0.0f ? log((double)g->conf[c]) : -INFINITY;
                g->key[c] = (float)(lc + scale * eng__gumbel(g->sampling.seed, t, (uint32_t)c));
            }
        }
        base += cells;
    }
}

/* Ends iteration iter + 1 of g: every uncommitted cell holds a fresh sample;
 * commit the most confident, re-mask the n_keep_masked least confident
 * (ranked by the noisy keys instead when remask_noise > 0). */
static void finish_iteration(eng_gen *g, int mask)
{
    int t = g->iter + 1;
    if (g->n_open > 0) {
        int cells = g->height * g->width, m = 0;
        for (int c = 0; c < cells; c++)
            if (g->cell[c] == ENG_CELL_OPEN) g->order[m++] = c;
        int keep = eng__keep_masked(g->n_open, t, g->iterations);
        if (keep > m) keep = m;
        eng__sort_worst_first(g->key ? g->key : g->conf, g->order, m);
        for (int j = 0; j < keep; j++)
            g->tokens[g->order[j]] = mask;
        for (int j = keep; j < m; j++)
            g->cell[g->order[j]] = ENG_CELL_COMMITTED;
        g->n_masked = keep;
    }
    g->iter = t;
}

int eng_step(eng_workspace *ws, eng_gen *const *gens, int n)
{
    if (eng__ws_model(ws)->arch == ENG__ARCH_SEED) return eng__seed_step(ws, gens, n);
    const eng_hparams *hp = eng_model_hparams(eng__ws_model(ws));
    eng_grid *grids = eng__ws_grids(ws);
    int max_cells = eng_workspace_max_cells(ws), batch = 0, cells = 0;
    for (int i = 0; i < n; i++) {
        const eng_gen *g = gens[i];
        if (!in_batch(g)) continue;
        int c = g->height * g->width;
        if (c > max_cells - cells) return ENG_ECAPACITY;
        grids[batch++] = (eng_grid){.height = g->height, .width = g->width, .tokens = g->tokens};
        cells += c;
    }
    if (batch > 0) {
        const float *logits;
        int rc = eng_forward(ws, grids, batch, &logits);
        if (rc != ENG_OK) return rc;
        step_job job = {.ws = ws,
                        .gens = gens,
                        .n = n,
                        .logits = logits,
                        .vocab = hp->vocab_size,
                        .mask = hp->mask_token};
        eng__pool_run(eng__ws_pool(ws), cells, sample_cells, &job);
    }
    for (int i = 0; i < n; i++)
        if (!eng_gen_done(gens[i])) finish_iteration(gens[i], hp->mask_token);
    return ENG_OK;
}
