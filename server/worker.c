/*
 * worker.c - one thread per model: load the checkpoint, then one batched
 * refinement iteration per turn for every active request of the model.
 *
 * A turn: the scheduler drops cancelled requests and admits queued ones
 * (sched.c), eng_step runs one iteration over the whole active set in one
 * forward pass, whose cells and time feed the scheduler's measured rate,
 * each request gets its new grid (streaming ones a frame), finished ones
 * retire, and one uv_async wakes the loop for all of them.
 * Nothing here touches a connection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/log.h"
#include "server/server.h"

static double seconds(int64_t ns)
{
    return (double)ns / 1e9;
}

/* Releases a job the scheduler handed back, counting how it ended. */
static void leave(srv_model *m, srv_job *j, srv_end why)
{
    srv__job_end(j, why);
    srv__metric_add(m->m.outcome[srv__job_state(j)], 1);
    srv__mail_post(m->srv, j);
    srv__job_unref(j);
}

static void joined(srv_model *m, srv_job *j, int64_t now)
{
    pthread_mutex_lock(&j->mu);
    j->t.started = now;
    pthread_mutex_unlock(&j->mu);
    srv__metric_observe(m->m.queue_seconds, seconds(now - j->t.arrival));
}

/* After the step: publish each grid, retire the finished. */
static void deliver(srv_model *m, srv_job **jobs, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        srv_job *j = jobs[i];
        int first;
        pthread_mutex_lock(&j->mu);
        j->iterations_run = j->gen.iter;
        first = j->t.first == 0;
        if (first) j->t.first = now;
        pthread_mutex_unlock(&j->mu);
        if (first) srv__metric_observe(m->m.first_iteration_seconds, seconds(now - j->t.arrival));
        if (j->req.stream && srv__job_publish(j) < 0)
            SRV_LOG(SRV_LOG_ERROR, "model %s: no memory for a frame", m->name);
        if (eng_gen_done(&j->gen)) {
            srv__sched_retire(&m->sched, &j->q);
            leave(m, j, SRV_END_DONE);
        } else if (j->req.stream) {
            srv__mail_post(m->srv, j); /* a JSON answer waits for the end */
        }
    }
}

/* "7.9 GiB", "512.0 MiB": sizes in messages. */
static void fmt_bytes(char *out, size_t len, double bytes)
{
    if (bytes >= 1073741824.0)
        snprintf(out, len, "%.1f GiB", bytes / 1073741824.0);
    else
        snprintf(out, len, "%.1f MiB", bytes / 1048576.0);
}

/* Refuses, before allocating, a workspace that with the weights would not
 * fit in the memory the process may use: allocation would likely succeed
 * (memory is overcommitted) and the first large batch then meet the OOM
 * killer instead of a message. */
static int check_memory(srv_model *m, int cells, int threads)
{
    const char *source = NULL;
    int64_t limit = cfg_memory_limit(&cfg_host_default, &source);
    size_t ws = eng_workspace_bytes(m->model, cells, threads);
    size_t weights = eng_model_bytes(m->model);
    if (limit <= 0) return 0; /* unknown: nothing to check against */
    if (ws != SIZE_MAX && (double)ws + (double)weights <= (double)limit) return 0;
    char need[32] = "more than 16 EiB", have[32], w[32];
    if (ws != SIZE_MAX) fmt_bytes(need, sizeof need, (double)ws);
    fmt_bytes(w, sizeof w, (double)weights);
    fmt_bytes(have, sizeof have, (double)limit);
    snprintf(m->error, sizeof m->error,
             "max_batch_cells %d needs a workspace of %s for model %s (plus %s of weights); the "
             "memory limit is %s (%s); lower --max-batch-cells",
             cells, need, m->name, w, have, source);
    return -1;
}

static int load(srv_model *m)
{
    const cfg_settings *cfg = m->srv->cfg;
    m->model = eng_model_load(m->path, m->error, sizeof m->error);
    if (!m->model) return -1;
    /* One request never exceeds the budget (proto's max_cells), so the
     * workspace holds exactly one full batch. */
    int cells = (int)cfg->max_batch_cells;
    if (check_memory(m, cells, (int)cfg->threads) < 0) return -1;
    m->ws = eng_workspace_create(m->model, cells, (int)cfg->threads, m->error, sizeof m->error);
    return m->ws ? 0 : -1;
}

static void *worker_main(void *arg)
{
    srv_model *m = arg;
    int64_t t0 = srv__now_ns();
    if (load(m) < 0) {
        atomic_store(&m->state, SRV_MODEL_FAILED);
        srv__mail_wake(m->srv);
        return NULL;
    }
    SRV_LOG(SRV_LOG_INFO, "model %s loaded from %s in %.3f s (%d threads, %d cells per batch)",
            m->name, m->path, seconds(srv__now_ns() - t0), eng_workspace_threads(m->ws),
            eng_workspace_max_cells(m->ws));
    atomic_store(&m->state, SRV_MODEL_READY);
    srv__mail_wake(m->srv);

    int cap = srv__sched_turn_cap(&m->sched.lim);
    srv_qnode **batch = calloc((size_t)cap, sizeof *batch);
    srv_qnode **dropped = calloc((size_t)cap, sizeof *dropped);
    srv_job **jobs = calloc((size_t)cap, sizeof *jobs);
    eng_gen **gens = calloc((size_t)cap, sizeof *gens);
    if (!batch || !dropped || !jobs || !gens) {
        SRV_LOG(SRV_LOG_ERROR, "model %s: no memory for the worker", m->name);
        abort();
    }
    srv_turn t = {.cap = cap, .batch = batch, .dropped = dropped};
    for (;;) {
        int n = srv__sched_next(&m->sched, &t, 1);
        for (int i = 0; i < t.n_dropped; i++)
            leave(m, (srv_job *)t.dropped[i], SRV_END_CANCELLED);
        if (n == SRV_SCHED_DONE) break;
        if (n <= 0) {
            srv__mail_wake(m->srv);
            continue;
        }
        int64_t start = srv__now_ns();
        long cells = 0;
        for (int i = 0; i < n; i++) {
            jobs[i] = (srv_job *)batch[i];
            gens[i] = &jobs[i]->gen;
            if (i >= n - t.n_joined) joined(m, jobs[i], start);
            if (!eng_gen_done(gens[i]) && gens[i]->n_open > 0) cells += jobs[i]->q.cells;
        }
        int rc = eng_step(m->ws, gens, n);
        int64_t end = srv__now_ns();
        if (rc != ENG_OK) {
            SRV_LOG(SRV_LOG_ERROR, "model %s: a batch of %d grids failed: %s", m->name, n,
                    eng_strerror(rc));
            for (int i = 0; i < n; i++) {
                srv__sched_retire(&m->sched, &jobs[i]->q);
                leave(m, jobs[i], SRV_END_FAILED);
            }
            srv__mail_wake(m->srv);
            continue;
        }
        srv__metric_observe(m->m.forward_seconds, seconds(end - start));
        srv__metric_observe(m->m.batch_grids, n);
        srv__metric_observe(m->m.batch_cells, (double)cells);
        srv__metric_add(m->m.forward_passes, 1);
        srv__metric_add(m->m.iterations, n);
        srv__metric_add(m->m.cells, (double)cells);
        /* The rate admission estimates with: cells stepped per second. */
        srv__sched_observe(&m->sched, cells, seconds(end - start));
        deliver(m, jobs, n, end);
        srv__mail_wake(m->srv);
    }
    free(batch);
    free(dropped);
    free(jobs);
    free(gens);
    return NULL;
}

int srv__worker_start(srv_model *m)
{
    atomic_store(&m->state, SRV_MODEL_LOADING);
    if (pthread_create(&m->thread, NULL, worker_main, m) != 0) return -1;
    m->thread_started = 1;
    return 0;
}

void srv__worker_join(srv_model *m)
{
    if (m->thread_started) {
        pthread_join(m->thread, NULL);
        m->thread_started = 0;
    }
    eng_workspace_free(m->ws);
    m->ws = NULL;
    eng_model_free(m->model);
    m->model = NULL;
}
