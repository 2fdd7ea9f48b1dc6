/*
 * job.c - a generation request's life between the loop and a worker:
 * reference counting, the ending (first one wins), and the outbox of grids
 * the worker publishes for streaming responses.
 */
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

srv_job *srv__job_create(srv_model *m, srv_weights *w, proto_request *req, int64_t arrival,
                         proto_error *err)
{
    srv_job *j = calloc(1, sizeof *j);
    if (!j) {
        proto_error_set(err, PROTO_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    char msg[PROTO_MSG_MAX];
    int rc = eng_gen_init(&j->gen, w->model, req->height, req->width, req->given, req->iterations,
                          &req->sampling, msg, sizeof msg);
    if (rc != ENG_OK) {
        /* proto validated against the same hparams, so only memory or an
         * engine rule proto does not know about ends up here. */
        proto_error_set(err, rc == ENG_ENOMEM ? PROTO_E_INTERNAL : PROTO_E_OUT_OF_RANGE, NULL, "%s",
                        msg);
        free(j);
        return NULL;
    }
    j->req = *req;
    memset(req, 0, sizeof *req);
    atomic_init(&j->refs, 1);
    j->model = m;
    srv__model_ref(m);
    j->w = w;
    srv__weights_ref(w);
    j->q.cells = j->gen.height * j->gen.width;
    j->t.arrival = arrival;
    pthread_mutex_init(&j->mu, NULL);
    return j;
}

void srv__job_ref(srv_job *j)
{
    atomic_fetch_add(&j->refs, 1);
}

void srv__job_unref(srv_job *j)
{
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    srv_frame *f = j->frames;
    while (f) {
        srv_frame *next = f->next;
        free(f);
        f = next;
    }
    eng_gen_close(&j->gen);
    proto_request_free(&j->req);
    pthread_mutex_destroy(&j->mu);
    /* The last job on weights a reload replaced frees them here. */
    srv__weights_unref(j->w);
    srv__model_unref(j->model);
    free(j);
}

int srv__job_end(srv_job *j, srv_end why)
{
    pthread_mutex_lock(&j->mu);
    int first = j->end == SRV_END_NONE;
    if (first) {
        j->end = why;
        if (!j->t.finished) j->t.finished = srv__now_ns();
    }
    pthread_mutex_unlock(&j->mu);
    return first;
}

srv_end srv__job_state(srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    srv_end e = j->end;
    pthread_mutex_unlock(&j->mu);
    return e;
}

srv_frame *srv__job_take_frames(srv_job *j)
{
    pthread_mutex_lock(&j->mu);
    srv_frame *f = j->frames;
    j->frames = j->frames_tail = NULL;
    pthread_mutex_unlock(&j->mu);
    return f;
}

int srv__job_publish(srv_job *j)
{
    size_t cells = (size_t)j->q.cells;
    /* Allocated outside the lock; dropped if the job ended meanwhile. */
    srv_frame *f = malloc(sizeof *f + cells * sizeof(int32_t));
    if (!f) return -1;
    f->next = NULL;
    f->iteration = j->gen.iter;
    f->open = j->gen.n_masked;
    memcpy(f->tokens, j->gen.tokens, cells * sizeof(int32_t));
    pthread_mutex_lock(&j->mu);
    if (j->end != SRV_END_NONE) {
        pthread_mutex_unlock(&j->mu);
        free(f);
        return 0;
    }
    if (j->frames_tail)
        j->frames_tail->next = f;
    else
        j->frames = f;
    j->frames_tail = f;
    pthread_mutex_unlock(&j->mu);
    return 0;
}

void srv__job_times(srv_job *j, srv_times *t, int *iterations_run)
{
    pthread_mutex_lock(&j->mu);
    *t = j->t;
    if (iterations_run) *iterations_run = j->iterations_run;
    pthread_mutex_unlock(&j->mu);
}

void srv__job_cancel(srv_job *j, srv_end why)
{
    srv__job_end(j, why);
    /* Queued: unlinked now and the scheduler's reference is ours to drop.
     * Active: flagged; the worker drops it before its next iteration. */
    if (srv__sched_cancel(&j->model->sched, &j->q)) {
        srv_model_metrics *mm = &j->model->m;
        srv__metric_add(mm->outcome[srv__job_state(j)], 1);
        srv__job_unref(j);
    }
}
