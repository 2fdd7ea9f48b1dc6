/*
 * pool.c - the workspace's fixed set of threads (internal.h).
 *
 * Threads are created once. A job is published by storing its fields and
 * then a new generation number. Chunk t of T is [n * t / T, n * (t + 1) / T):
 * it depends only on n and T, never on timing, and it always runs with
 * thread number t (whose scratch it may use). The caller runs chunk 0;
 * chunk t > 0 runs on worker t, unless the caller, done with its own, finds
 * it not yet started and runs it itself: whoever first claims a chunk (a
 * compare-and-swap of its claim to the job's generation) runs it, so a
 * worker that the OS has not scheduled yet never holds the job up. A chunk
 * is the same arithmetic wherever it runs, so results do not change.
 * `running` counts the chunks t > 0 not yet finished.
 *
 * Both waits are hybrid. A forward pass is a few dozen short phases back to
 * back, and waking a thread from a condition variable costs tens of
 * microseconds, so a waiter first spins (with the CPU's pause hint) for up
 * to SPIN_NS, which covers the gap between two phases (yielding the CPU
 * after PAUSE_NS, in case the machine is oversubscribed); only then does it
 * sleep on the condition variable, so an idle pool burns no CPU. Whoever
 * ends a wait checks whether the other side went to sleep (`sleepers`,
 * `caller_sleeps`) and only then takes the mutex to signal. Each side writes
 * its own flag and then reads the other's with sequentially consistent
 * atomics, so at least one of the two sees the other and no wake-up is lost.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "engine/internal.h"

/* How long a waiter spins before it sleeps, and the part of it without
 * yielding the CPU. */
#define SPIN_NS 100000L
#define PAUSE_NS 20000L

typedef struct worker {
    eng_pool *pool;
    int index; /* 1..threads-1; the caller is thread 0 */
    pthread_t tid;
    atomic_ulong claim; /* the last generation whose chunk `index` was claimed */
} worker;

struct eng_pool {
    int threads;
    worker *workers; /* [threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* a new job or stop, for sleeping workers */
    pthread_cond_t done; /* the last worker finished, for a sleeping caller */
    /* The job: written by eng__pool_run before it bumps generation, read
     * by whoever has claimed one of its chunks (so the job is not over). */
    eng_task_fn fn;
    void *arg;
    int n;
    atomic_ulong generation;
    atomic_int running; /* chunks 1..threads-1 not finished */
    atomic_int stop;
    atomic_int sleepers;      /* workers asleep (or about to be) on wake */
    atomic_int caller_sleeps; /* the caller is asleep (or about to be) on done */
};

static void chunk(int n, int threads, int t, int *begin, int *end)
{
    *begin = (int)((int64_t)n * t / threads);
    *end = (int)((int64_t)n * (t + 1) / threads);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/*
 * Waits until done(p, arg) or SPIN_NS have passed; returns done's last
 * value. The first PAUSE_NS are pure spinning; after that each round also
 * yields the CPU, which lets the thread being waited for run when the
 * machine has more runnable threads than cores.
 */
static int spin_until(eng_pool *p, int (*done)(eng_pool *, unsigned long), unsigned long arg)
{
    long start = 0;
    for (int i = 0;; i++) {
        if (done(p, arg)) return 1;
        cpu_relax();
        if ((i & 63) == 63) { /* read the clock now and then, not per pause */
            long t = now_ns();
            if (!start) start = t;
            if (t - start > SPIN_NS) return done(p, arg);
            if (t - start > PAUSE_NS) sched_yield();
        }
    }
}

static int job_ready(eng_pool *p, unsigned long seen)
{
    return atomic_load(&p->generation) != seen || atomic_load(&p->stop);
}

static int job_done(eng_pool *p, unsigned long unused)
{
    (void)unused;
    return atomic_load(&p->running) == 0;
}

/* Claims chunk w->index of job gen; 0 if someone already has. */
static int claim(worker *w, unsigned long gen)
{
    unsigned long old = atomic_load(&w->claim);
    while (old < gen)
        if (atomic_compare_exchange_weak(&w->claim, &old, gen)) return 1;
    return 0;
}

/* Runs the claimed chunk w->index and counts it finished. */
static void run_chunk(eng_pool *p, worker *w)
{
    int begin, end;
    chunk(p->n, p->threads, w->index, &begin, &end);
    if (begin < end) p->fn(p->arg, begin, end, w->index);
    if (atomic_fetch_sub(&p->running, 1) == 1 && atomic_load(&p->caller_sleeps)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    eng_pool *p = w->pool;
    unsigned long seen = 0;
    for (;;) {
        if (!spin_until(p, job_ready, seen)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (!job_ready(p, seen))
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load(&p->generation);
        if (claim(w, seen)) run_chunk(p, w);
    }
    return NULL;
}

eng_pool *eng__pool_create(int threads)
{
    if (threads < 1) return NULL;
    eng_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_sleeps, 0);
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
        atomic_init(&w->claim, 0);
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
    atomic_store(&p->stop, 1);
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
    /* One thread, or one index (which falls in the last chunk): nothing to
     * share, so no one is woken. The chunk keeps its thread number, whose
     * scratch no other thread touches meanwhile. */
    if (p->threads == 1 || n == 1) {
        fn(arg, 0, n, p->threads - 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store(&p->running, p->threads - 1);
    unsigned long gen = atomic_fetch_add(&p->generation, 1) + 1;
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }

    int begin, end;
    chunk(n, p->threads, 0, &begin, &end);
    if (begin < end) fn(arg, begin, end, 0);
    /* The chunks no worker has started yet, last first (worker 1 is the
     * likeliest to be on its way). */
    for (int t = p->threads - 1; t >= 1 && atomic_load(&p->running) > 0; t--)
        if (claim(&p->workers[t - 1], gen)) run_chunk(p, &p->workers[t - 1]);

    if (!spin_until(p, job_done, 0)) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeps, 1);
        while (atomic_load(&p->running) != 0)
            pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeps, 0);
        pthread_mutex_unlock(&p->mu);
    }
}
