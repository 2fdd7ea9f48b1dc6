/*
 * seed_gen.c - generation for nonlinear-transformer-0.0.3 (MODEL.md
 * section 7.4), after the seed package's Autoregressive2DWrapper.generate:
 * one open cell per step, in row-major (raster) order, each step a full
 * forward pass over the grid as it stands (cells not reached yet hold the
 * mask token, the package's pad value), the cell drawn from its logits
 * under top_k and temperature and committed at once.
 *
 * The draw uses the project's counter-based uniform number for (seed, step,
 * cell), so a state's grids depend on nothing else in the batch and not on
 * the thread count; it is not torch's random stream.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sample.h"
#include "engine/seed.h"

int eng__seed_gen_init(eng_gen *g, const eng_model *m, int height, int width, const int32_t *given,
                       int iterations, const eng_sampling *s, char *err, size_t errlen)
{
    if (!g) return eng__fail(err, errlen, ENG_EINVAL, "no generation state");
    memset(g, 0, sizeof *g);
    if (!m || !s)
        return eng__fail(err, errlen, ENG_EINVAL, "generation needs a model and sampling settings");
    const eng_hparams *hp = &m->hp;
    if (height < 1 || height > hp->max_height)
        return eng__fail(err, errlen, ENG_ERANGE, "height %d is outside 1..%d", height,
                         hp->max_height);
    if (width < 1 || width > hp->max_width)
        return eng__fail(err, errlen, ENG_ERANGE, "width %d is outside 1..%d", width,
                         hp->max_width);
    if (height != width)
        return eng__fail(err, errlen, ENG_ERANGE,
                         "a %dx%d grid is not square: the %s architecture runs square grids only",
                         height, width, ENG__ARCH_SEED_NAME);
    if (iterations < 1)
        return eng__fail(err, errlen, ENG_ERANGE, "iterations %d is below 1", iterations);
    int rc = eng__check_sampling(s, err, errlen);
    if (rc != ENG_OK) return rc;

    int cells = height * width, n_open = 0;
    if ((rc = eng__scan_given(hp, given, height, width, 1, &n_open, err, errlen)) != ENG_OK)
        return rc;
    g->tokens = malloc((size_t)cells * sizeof *g->tokens);
    g->cell = malloc((size_t)cells * sizeof *g->cell);
    g->conf = malloc((size_t)cells * sizeof *g->conf);
    if (!g->tokens || !g->cell || !g->conf) {
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
    g->iterations = n_open > 0 ? n_open : 1; /* a grid with nothing open still reports once */
    g->n_open = n_open;
    g->n_masked = n_open;
    g->sampling = *s;
    if (g->sampling.top_k == 0) g->sampling.top_k = m->seed_top_k;
    return ENG_OK;
}

int eng__seed_step(eng_workspace *ws, eng_gen *const *gens, int n)
{
    const eng_hparams *hp = eng_model_hparams(eng__ws_model(ws));
    const float *logits;
    int cells;
    int rc = eng__gen_forward(ws, gens, n, &cells, &logits);
    if (rc != ENG_OK) return rc;
    if (cells > 0) {
        /* One cell per state: too little work to spread over the pool. */
        void *scratch = eng__ws_scratch(ws, 0);
        size_t v = (size_t)hp->vocab_size;
        int base = 0;
        for (int i = 0; i < n; i++) {
            eng_gen *g = gens[i];
            if (!eng__gen_in_batch(g)) continue;
            int c = 0, all = g->height * g->width;
            while (c < all && g->cell[c] != ENG_CELL_OPEN)
                c++;
            if (c < all) {
                const float *z = logits + (size_t)(base + c) * v;
                uint32_t t = (uint32_t)g->iter + 1;
                double u = g->sampling.temperature > 0.0f
                               ? eng__uniform(g->sampling.seed, t, (uint32_t)c)
                               : 0.0;
                /* No mask (-1): the package may draw any token, its pad value too. */
                int s = eng__sample(z, hp->vocab_size, -1, &g->sampling, u, scratch);
                g->tokens[c] = s;
                g->cell[c] = ENG_CELL_COMMITTED;
                g->conf[c] = eng__confidence(z, hp->vocab_size, -1, s);
                g->n_masked--;
            }
            base += all;
        }
    }
    for (int i = 0; i < n; i++)
        if (!eng_gen_done(gens[i])) gens[i]->iter++;
    return ENG_OK;
}
