/*
 * generate.c - generation by iterative refinement (MODEL.md section 5): the
 * per-grid state and one iteration for a batch of states.
 *
 * A step is three phases: gather the unfinished states with open cells into
 * one batched forward pass; sample every uncommitted cell of every state in
 * parallel over the batch's cells (each cell reads only its own logits and
 * its own counter-based draw), scoring it for the state's order and, when
 * re-opening is on, scoring the committed cells too; then, per state, commit
 * the best-ranked cells, re-mask the rest as the cosine schedule says, and
 * re-open the least probable share of the committed cells.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "engine/sample.h"
#include "engine/seed.h"

/* The open cells are ranked by g->key rather than g->conf. */
static int needs_key(const eng_sampling *s)
{
    return s->order == ENG_ORDER_MARGIN ||
           (s->order == ENG_ORDER_CONFIDENCE && s->remask_noise > 0.0f);
}

int eng__check_sampling(const eng_sampling *s, char *err, size_t errlen)
{
    if (!isfinite(s->temperature) || s->temperature < 0.0f)
        return eng__fail(err, errlen, ENG_ERANGE, "temperature %g is not a finite value >= 0",
                         (double)s->temperature);
    if (s->top_k < 0) return eng__fail(err, errlen, ENG_ERANGE, "top_k %d is negative", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return eng__fail(err, errlen, ENG_ERANGE, "top_p %g is outside (0, 1]", (double)s->top_p);
    if (!(s->remask_noise >= 0.0f && s->remask_noise <= ENG_MAX_REMASK_NOISE))
        return eng__fail(err, errlen, ENG_ERANGE, "remask_noise %g is outside 0..%g",
                         (double)s->remask_noise, (double)ENG_MAX_REMASK_NOISE);
    return ENG_OK;
}

int eng__scan_given(const eng_hparams *hp, const int32_t *given, int height, int width,
                    int allow_mask, int *n_open, char *err, size_t errlen)
{
    int cells = height * width;
    *n_open = 0;
    for (int c = 0; c < cells; c++) {
        int32_t id = given ? given[c] : ENG_OPEN;
        if (id == ENG_OPEN)
            ++*n_open;
        else if (id < 0 || id >= hp->vocab_size)
            return eng__fail(err, errlen, ENG_ERANGE,
                             "given token %d at (%d,%d) is outside the vocabulary (%d)", (int)id,
                             c / width, c % width, hp->vocab_size);
        else if (id == hp->mask_token && !allow_mask)
            return eng__fail(err, errlen, ENG_ERANGE,
                             "the mask token %d cannot be given (at (%d,%d))", (int)id, c / width,
                             c % width);
    }
    return ENG_OK;
}

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
    int rc = eng__check_sampling(s, err, errlen);
    if (rc != ENG_OK) return rc;
    if (!eng_order_name((int)s->order))
        return eng__fail(err, errlen, ENG_ERANGE,
                         "order %d is not one of confidence (0), margin (1), raster (2)",
                         (int)s->order);
    if (!(s->remask >= 0.0f && s->remask < 1.0f))
        return eng__fail(err, errlen, ENG_ERANGE, "remask %g is outside [0, 1)", (double)s->remask);

    int cells = height * width, n_open = 0;
    if ((rc = eng__scan_given(hp, given, height, width, 0, &n_open, err, errlen)) != ENG_OK)
        return rc;

    g->tokens = malloc((size_t)cells * sizeof *g->tokens);
    g->cell = malloc((size_t)cells * sizeof *g->cell);
    g->conf = malloc((size_t)cells * sizeof *g->conf);
    g->order = malloc((size_t)cells * sizeof *g->order);
    if (needs_key(s)) g->key = malloc((size_t)cells * sizeof *g->key);
    if (!g->tokens || !g->cell || !g->conf || !g->order || (needs_key(s) && !g->key)) {
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
int eng__gen_in_batch(const eng_gen *g)
{
    return !eng_gen_done(g) && g->n_open > 0;
}

int eng__gen_forward(eng_workspace *ws, eng_gen *const *gens, int n, int *cells_out,
                     const float **logits)
{
    eng_grid *grids = eng__ws_grids(ws);
    int max_cells = eng_workspace_max_cells(ws), batch = 0, cells = 0;
    for (int i = 0; i < n; i++) {
        const eng_gen *g = gens[i];
        if (!eng__gen_in_batch(g)) continue;
        int c = g->height * g->width;
        if (c > max_cells - cells) return ENG_ECAPACITY;
        grids[batch++] = (eng_grid){.height = g->height, .width = g->width, .tokens = g->tokens};
        cells += c;
    }
    *cells_out = cells;
    return batch > 0 ? eng_forward(ws, grids, batch, logits) : ENG_OK;
}

typedef struct step_job {
    eng_workspace *ws;
    eng_gen *const *gens;
    int n;
    const float *logits; /* [batch cells, vocab] */
    int vocab, mask;
} step_job;

/* Re-opening scores the committed cells in this iteration (every one but
 * the last). */
static int reopens(const eng_gen *g, int t)
{
    return g->sampling.remask > 0.0f && t < g->iterations;
}

/* The commit key of an open cell from its score (conf or margin): the score
 * itself, or with noise log(score) + scale * Gumbel, where a NaN cell
 * (score -1) or an underflow ranks below every other. */
static float commit_key(const eng_gen *g, float score, double scale, uint32_t t, int c)
{
    if (scale <= 0.0) return score;
    double ls = score > 0.0f ? log((double)score) : -INFINITY;
    return (float)(ls + scale * eng__gumbel(g->sampling.seed, t, (uint32_t)c));
}

/* Samples the batch cells [begin, end): batch cell b is cell b - base of the
 * state whose cells start at base, in the order the forward pass got them. */
static void sample_cells(void *arg, int begin, int end, int thread)
{
    const step_job *job = arg;
    void *scratch = eng__ws_scratch(job->ws, thread);
    int base = 0;
    for (int i = 0; i < job->n && base < end; i++) {
        eng_gen *g = job->gens[i];
        if (!eng__gen_in_batch(g)) continue;
        int cells = g->height * g->width;
        int lo = begin > base ? begin - base : 0;
        int hi = end - base < cells ? end - base : cells;
        uint32_t t = (uint32_t)g->iter + 1;
        int drawn = g->sampling.temperature > 0.0f;
        int margin = g->sampling.order == ENG_ORDER_MARGIN;
        int score_committed = reopens(g, (int)t);
        /* The annealed noise scale of the commit keys: nu * (1 - t/K); the
         * raster order has no key to perturb. */
        double scale =
            g->key && g->sampling.remask_noise > 0.0f
                ? (double)g->sampling.remask_noise * (1.0 - (double)t / (double)g->iterations)
                : 0.0;
        for (int c = lo; c < hi; c++) {
            const float *z = job->logits + (size_t)(base + c) * (size_t)job->vocab;
            if (g->cell[c] == ENG_CELL_COMMITTED) {
                if (score_committed)
                    g->conf[c] = eng__confidence(z, job->vocab, job->mask, g->tokens[c]);
                continue;
            }
            if (g->cell[c] != ENG_CELL_OPEN) continue;
            double u = drawn ? eng__uniform(g->sampling.seed, t, (uint32_t)c) : 0.0;
            int s = eng__sample(z, job->vocab, job->mask, &g->sampling, u, scratch);
            g->tokens[c] = s;
            g->conf[c] = eng__confidence(z, job->vocab, job->mask, s);
            if (g->key) {
                float score = margin ? eng__margin(z, job->vocab, job->mask) : g->conf[c];
                g->key[c] = commit_key(g, score, scale, t, c);
            }
        }
        base += cells;
    }
}

/* Re-opens floor(remask * C) of the C committed cells, the least probable
 * under this iteration's forward pass first (equal: the higher index). */
static void reopen(eng_gen *g, int mask)
{
    int cells = g->height * g->width, n = 0;
    for (int c = 0; c < cells; c++)
        if (g->cell[c] == ENG_CELL_COMMITTED) g->order[n++] = c;
    int r = (int)floor((double)g->sampling.remask * (double)n);
    if (r <= 0) return;
    eng__sort_worst_first(g->conf, g->order, n);
    for (int j = 0; j < r; j++) {
        g->tokens[g->order[j]] = mask;
        g->cell[g->order[j]] = ENG_CELL_OPEN;
    }
    g->n_reopened = r;
    g->n_masked += r;
}

/* Ends iteration iter + 1 of g: every uncommitted cell holds a fresh sample;
 * commit the best-ranked for the order, re-mask the n_keep_masked others,
 * then re-open the least probable committed cells if asked to. */
static void finish_iteration(eng_gen *g, int mask)
{
    int t = g->iter + 1;
    g->n_reopened = 0;
    if (g->n_open > 0) {
        int cells = g->height * g->width, m = 0;
        if (g->sampling.order == ENG_ORDER_RASTER) {
            /* Worst first is the last open cell first: the first open cells
             * in row-major order are committed. */
            for (int c = cells - 1; c >= 0; c--)
                if (g->cell[c] == ENG_CELL_OPEN) g->order[m++] = c;
        } else {
            for (int c = 0; c < cells; c++)
                if (g->cell[c] == ENG_CELL_OPEN) g->order[m++] = c;
        }
        int keep = g->sampling.order == ENG_ORDER_RASTER
                       ? eng__keep_masked_linear(g->n_open, t, g->iterations)
                       : eng__keep_masked(g->n_open, t, g->iterations);
        if (keep > m) keep = m;
        if (g->sampling.order != ENG_ORDER_RASTER)
            eng__sort_worst_first(g->key ? g->key : g->conf, g->order, m);
        for (int j = 0; j < keep; j++)
            g->tokens[g->order[j]] = mask;
        for (int j = keep; j < m; j++)
            g->cell[g->order[j]] = ENG_CELL_COMMITTED;
        g->n_masked = keep;
        if (reopens(g, t)) reopen(g, mask);
    }
    g->iter = t;
}

int eng_step(eng_workspace *ws, eng_gen *const *gens, int n)
{
    if (eng__ws_model(ws)->arch == ENG__ARCH_SEED) return eng__seed_step(ws, gens, n);
    const eng_hparams *hp = eng_model_hparams(eng__ws_model(ws));
    const float *logits;
    int cells;
    int rc = eng__gen_forward(ws, gens, n, &cells, &logits);
    if (rc != ENG_OK) return rc;
    if (cells > 0) {
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
