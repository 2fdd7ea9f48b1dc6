/*
 * offline_gen.c - the engine's own batched generation throughput, without
 * HTTP: the yardstick the load test holds the daemon against. Runs batches
 * of `batch` grids through every iteration with eng_step, as a saturated
 * worker would, for about `seconds`, and prints
 *
 *   batch=16 grids=480 seconds=3.01 grids_per_s=159.5 ms_per_step=6.27
 *   ms_per_grid_alone=...
 *
 *   offline_gen --model PATH [--height 16] [--width 16] [--iterations 8]
 *               [--batch 16] [--threads 2] [--seconds 3] [--temperature 1.0]
 *
 * ms_per_step is one batched iteration; each batch starts from fresh states
 * (eng_gen_init included, as the daemon pays it per request too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/eng.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: offline_gen --model PATH [--height H] [--width W] [--iterations K] "
                    "[--batch B] [--threads T] [--seconds S] [--temperature T]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int height = 16, width = 16, iterations = 8, batch = 16, threads = 2;
    double seconds = 3, temperature = 1.0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--model"))
            path = v;
        else if (!strcmp(k, "--height"))
            height = atoi(v);
        else if (!strcmp(k, "--width"))
            width = atoi(v);
        else if (!strcmp(k, "--iterations"))
            iterations = atoi(v);
        else if (!strcmp(k, "--batch"))
            batch = atoi(v);
        else if (!strcmp(k, "--threads"))
            threads = atoi(v);
        else if (!strcmp(k, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(k, "--temperature"))
            temperature = atof(v);
        else
            usage();
    }
    if (!path || batch < 1 || iterations < 1) usage();
    char err[512];
    eng_model *m = eng_model_load(path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "offline_gen: %s\n", err);
        return 1;
    }
    eng_workspace *ws = eng_workspace_create(m, batch * height * width, threads, err, sizeof err);
    if (!ws) {
        fprintf(stderr, "offline_gen: %s\n", err);
        return 1;
    }
    eng_gen *gens = calloc((size_t)batch, sizeof *gens);
    eng_gen **ptrs = calloc((size_t)batch, sizeof *ptrs);
    if (!gens || !ptrs) return 1;
    long grids = 0, steps = 0;
    uint64_t seed = 1;
    double t0 = now_s(), step_time = 0, elapsed = 0;
    while (elapsed < seconds || grids == 0) {
        for (int b = 0; b < batch; b++) {
            eng_sampling s = {.temperature = (float)temperature, .top_p = 1.0f, .seed = seed++};
            if (eng_gen_init(&gens[b], m, height, width, NULL, iterations, &s, err, sizeof err)) {
                fprintf(stderr, "offline_gen: %s\n", err);
                return 1;
            }
            ptrs[b] = &gens[b];
        }
        for (int k = 0; k < iterations; k++) {
            double s0 = now_s();
            int rc = eng_step(ws, ptrs, batch);
            step_time += now_s() - s0;
            steps++;
            if (rc != ENG_OK) {
                fprintf(stderr, "offline_gen: %s\n", eng_strerror(rc));
                return 1;
            }
        }
        for (int b = 0; b < batch; b++)
            eng_gen_close(&gens[b]);
        grids += batch;
        elapsed = now_s() - t0;
    }
    printf("batch=%d grids=%ld seconds=%.2f grids_per_s=%.1f ms_per_step=%.4f "
           "ms_per_grid=%.4f\n",
           batch, grids, elapsed, (double)grids / elapsed, 1e3 * step_time / (double)steps,
           1e3 * elapsed / (double)grids);
    free(gens);
    free(ptrs);
    eng_workspace_free(ws);
    eng_model_free(m);
    return 0;
}
