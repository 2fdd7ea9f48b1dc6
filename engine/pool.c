/*
 * pool.c - the workspace's fixed set of threads (internal.h).
 *
 * Threads are created once and sleep on a condition variable between jobs.
 * A job is published under the mutex with a new generation number; each
 * worker runs its own chunk of [0, n) and the last one to finish signals the
 * caller, which has meanwhile run chunk 0 itself. Chunk t of T is
 * [n * t / T, n * (t + 1) / T): it depends only on n and T, never on timing.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/internal.h"

typedef struct worker {
    eng_pool *pool;
    int index; /* 1..threads-1; the caller is thread 0 */
    pthread_t tid;
} worker;

struct eng_pool {
    int threads;
    worker *workers; /* [threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new job or stop */
    pthread_cond_t done; /* the last worker finished */
    /* The job, written under mu by eng__pool_run. */
    eng_task_fn fn;
    void *arg;
    int n;
    unsigned long generation;
    int running; /* workers still on the current job */
    int stop;
};

static void chunk(int n, int threads, int t, int *begin, int *end)
{
    *begin = (int)((int64_t)n * t / threads);
    *end = (int)((int64_t)n * (t + 1) / threads);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    eng_pool *p = w->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        eng_task_fn fn = p->fn;
        void *fn_arg = p->arg;
        int begin, end;
        chunk(p->n, p->threads, w->index, &begin, &end);
        pthread_mutex_unlock(&p->mu);

        if (begin < end) fn(fn_arg, begin, end, w->index);

        pthread_mutex_lock(&p->mu);
        if (--p->running == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

eng_pool *eng__pool_create(int threads)
{
    if (threads < 1) return NULL;
    eng_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0 || pthread_cond_init(&p->done, NULL) != 0) {
        /* Destroying a condition variable that failed to initialise is
         * undefined, and the pool cannot be used without both: give up. */
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    p->workers = calloc((size_t)threads, sizeof *p->workers);
    if (!p->workers) {
        eng__pool_free(p);
        return NULL;
    }
    for (int i = 1; i < threads; i++) {
        worker *w = &p->workers[i - 1];
        w->pool = p;
        w->index = i;
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            p->threads = i; /* eng__pool_free joins the ones that started */
            eng__pool_free(p);
            return NULL;
        }
    }
    return p;
}

void eng__pool_free(eng_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->workers)
        for (int i = 1; i < p->threads; i++)
            pthread_join(p->workers[i - 1].tid, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int eng__pool_threads(const eng_pool *p)
{
    return p->threads;
}

void eng__pool_run(eng_pool *p, int n, eng_task_fn fn, void *arg)
{
    if (n <= 0) return;
    if (p->threads == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->running = p->threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    int begin, end;
    chunk(n, p->threads, 0, &begin, &end);
    if (begin < end) fn(arg, begin, end, 0);

    pthread_mutex_lock(&p->mu);
    while (p->running > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
