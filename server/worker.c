/*
 * worker.c - one thread per model: one batched refinement iteration per
 * turn for every active request of the model.
 *
 * A turn: the scheduler drops cancelled requests and admits queued ones
 * (sched.c), eng_step runs one iteration over the active set in one
 * forward pass per set of weights (one, except while a reload's old and
 * new weights both have requests: model.h), whose cells and time feed the
 * scheduler's measured rate, each request gets its new grid (streaming
 * ones a frame), finished ones retire, and one uv_async wakes the loop for
 * all of them. Loading is not the worker's: a loader thread (model.c)
 * makes the weights. Nothing here touches a connection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* One forward pass over jobs[0..n), which share the weights w. Returns 0,
 * or -1 if the engine refused (the jobs have then ended as failed). */
static int step(srv_model *m, srv_weights *w, srv_job **jobs, eng_gen **gens, int n)
{
    int64_t start = srv__now_ns();
    long cells = 0;
    for (int i = 0; i < n; i++) {
        gens[i] = &jobs[i]->gen;
        if (!eng_gen_done(gens[i]) && gens[i]->n_open > 0) cells += jobs[i]->q.cells;
    }
    int rc = eng_step(w->ws, gens, n);
    int64_t end = srv__now_ns();
    if (rc != ENG_OK) {
        SRV_LOG(SRV_LOG_ERROR, "model %s: a batch of %d grids failed: %s", m->name, n,
                eng_strerror(rc));
        for (int i = 0; i < n; i++) {
            srv__sched_retire(&m->sched, &jobs[i]->q);
            leave(m, jobs[i], SRV_END_FAILED);
        }
        return -1;
    }
    srv__metric_observe(w->forward_seconds, seconds(end - start));
    srv__metric_observe(m->m.batch_grids, n);
    srv__metric_observe(m->m.batch_cells, (double)cells);
    srv__metric_add(m->m.forward_passes, 1);
    srv__metric_add(m->m.iterations, n);
    srv__metric_add(m->m.cells, (double)cells);
    /* The rate admission estimates with: cells stepped per second. */
    srv__sched_observe(&m->sched, cells, seconds(end - start));
    deliver(m, jobs, n, end);
    return 0;
}

static void *worker_main(void *arg)
{
    srv_model *m = arg;
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
        int64_t now = srv__now_ns();
        for (int i = 0; i < n; i++) {
            jobs[i] = (srv_job *)batch[i];
            if (i >= n - t.n_joined) joined(m, jobs[i], now);
        }
        /* Group the batch by weights (a stable partition: almost always
         * one group) and run one pass per group. */
        for (int done = 0; done < n;) {
            srv_weights *w = jobs[done]->w;
            int k = done + 1;
            for (int i = k; i < n; i++)
                if (jobs[i]->w == w) {
                    srv_job *x = jobs[i];
                    memmove(&jobs[k + 1], &jobs[k], (size_t)(i - k) * sizeof *jobs);
                    jobs[k++] = x;
                }
            step(m, w, jobs + done, gens + done, k - done);
            done = k;
        }
        srv__mail_wake(m->srv);
    }
    free(batch);
    free(dropped);
    free(jobs);
    free(gens);
    srv_server *s = m->srv; /* m may be freed as soon as worker_done is seen */
    atomic_store(&m->worker_done, 1);
    srv__mail_wake(s);
    return NULL;
}

int srv__worker_start(srv_model *m)
{
    if (pthread_create(&m->thread, NULL, worker_main, m) != 0) return -1;
    m->thread_started = 1;
    return 0;
}
