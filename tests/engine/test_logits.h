/*
 * test_logits.h - for the engine's batch and thread independence tests: the
 * logits grid `at` of a batch gets, copied out of a workspace of its own.
 * Include after cmocka.h and engine/eng.h.
 */
#ifndef HEPTAPOD_TEST_LOGITS_H
#define HEPTAPOD_TEST_LOGITS_H

#include <stdlib.h>
#include <string.h>

/* Grid `at` of grids's logits from one forward pass over all n grids on
 * `threads` threads; the workspace has a few cells to spare, so that it is not
 * sized to the batch. The caller frees the copy. */
static float *logits_of(const eng_model *m, const eng_grid *grids, int n, int at, int threads)
{
    int cells = 0, before = 0;
    for (int g = 0; g < n; g++) {
        if (g < at) before += grids[g].height * grids[g].width;
        cells += grids[g].height * grids[g].width;
    }
    int v = eng_model_hparams(m)->vocab_size;
    size_t bytes = sizeof(float) * (size_t)grids[at].height * grids[at].width * v;
    char msg[256];
    eng_workspace *ws = eng_workspace_create(m, cells + 7, threads, msg, sizeof msg);
    if (!ws) fail_msg("workspace: %s", msg);
    const float *z;
    assert_int_equal(eng_forward(ws, grids, n, &z), ENG_OK);
    float *copy = malloc(bytes);
    assert_non_null(copy);
    memcpy(copy, z + (size_t)before * v, bytes);
    eng_workspace_free(ws);
    return copy;
}

#endif
