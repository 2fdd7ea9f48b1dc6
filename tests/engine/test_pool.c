/*
 * test_pool.c - the workspace's thread pool (engine/pool.c): every index of
 * [0, n) runs exactly once, each thread number gets one contiguous chunk
 * that depends only on n and the thread count, the workers take part (the
 * caller runs a chunk its worker has not started), and the
 * pool survives many back-to-back jobs, and jobs with pauses between them
 * long enough for its threads to go from spinning to sleeping. An idle pool
 * sleeps: its threads spin only briefly after a job.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"

#define MAXN 5000
#define MAXT 8

typedef struct record {
    int hits[MAXN];
    int begin[MAXT], end[MAXT], calls[MAXT];
    pthread_t who[MAXT];
} record;

static void note(void *arg, int begin, int end, int thread)
{
    record *r = arg;
    for (int i = begin; i < end; i++)
        r->hits[i]++; /* chunks are disjoint, so no two threads share an index */
    r->begin[thread] = begin;
    r->end[thread] = end;
    r->calls[thread]++;
    r->who[thread] = pthread_self();
}

static void test_every_index_once_in_fixed_chunks(void **state)
{
    (void)state;
    static record r;
    int ns[] = {1, 2, 3, 7, 64, 1000, MAXN};
    for (int threads = 1; threads <= MAXT; threads++) {
        eng_pool *p = eng__pool_create(threads);
        assert_non_null(p);
        assert_int_equal(eng__pool_threads(p), threads);
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            int n = ns[k];
            memset(&r, 0, sizeof r);
            eng__pool_run(p, n, note, &r);
            for (int i = 0; i < n; i++)
                assert_int_equal(r.hits[i], 1);
            /* Thread t's chunk is [n t / T, n (t + 1) / T), nothing else. */
            for (int t = 0; t < threads; t++) {
                int b = (int)((long)n * t / threads), e = (int)((long)n * (t + 1) / threads);
                assert_int_equal(r.calls[t], b < e ? 1 : 0);
                if (b < e) {
                    assert_int_equal(r.begin[t], b);
                    assert_int_equal(r.end[t], e);
                }
            }
        }
        eng__pool_free(p);
    }
}

/* Like note, and the caller's own chunk takes a millisecond, so the
 * workers have time to claim theirs. */
static void note_slowly(void *arg, int begin, int end, int thread)
{
    if (thread == 0) {
        struct timespec t = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&t, NULL);
    }
    note(arg, begin, end, thread);
}

/*
 * The caller runs chunk 0; a chunk t > 0 runs with thread number t, on
 * worker t or, when that worker has not started it yet, on the caller:
 * over many jobs every worker takes part, and no chunk ever runs on
 * another worker.
 */
static void test_chunks_run_on_their_worker_or_the_caller(void **state)
{
    (void)state;
    static record r;
    eng_pool *p = eng__pool_create(4);
    assert_non_null(p);
    pthread_t seen[4];
    int on_worker[4] = {0};
    memset(seen, 0, sizeof seen);
    for (int job = 0; job < 100; job++) {
        memset(&r, 0, sizeof r);
        eng__pool_run(p, 4, note_slowly, &r);
        assert_true(pthread_equal(r.who[0], pthread_self()));
        for (int t = 1; t < 4; t++) {
            assert_int_equal(r.calls[t], 1);
            if (pthread_equal(r.who[t], pthread_self())) continue;
            if (on_worker[t]++) assert_true(pthread_equal(r.who[t], seen[t]));
            seen[t] = r.who[t];
            for (int u = 1; u < t; u++)
                if (!pthread_equal(r.who[u], pthread_self()))
                    assert_false(pthread_equal(r.who[u], r.who[t]));
        }
    }
    for (int t = 1; t < 4; t++)
        assert_true(on_worker[t] > 0);
    eng__pool_free(p);
}

static void add_one(void *arg, int begin, int end, int thread)
{
    int *v = arg;
    for (int i = begin; i < end; i++)
        v[i]++;
}

static void test_many_jobs_in_a_row(void **state)
{
    (void)state;
    eng_pool *p = eng__pool_create(3);
    assert_non_null(p);
    int v[100] = {0};
    for (int j = 0; j < 5000; j++)
        eng__pool_run(p, 1 + j % 100, add_one, v);
    /* index i runs in job j whenever i < 1 + j % 100 */
    for (int i = 0; i < 100; i++)
        assert_int_equal(v[i], 50 * (100 - i));
    eng__pool_run(p, 0, add_one, v); /* an empty job is a no-op */
    eng__pool_free(p);
}

static void pause_us(long us)
{
    struct timespec t = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

/* Pauses of 0 to 400 us between jobs: some find the threads spinning, some
 * asleep, some in between. */
static void test_jobs_between_sleeps(void **state)
{
    (void)state;
    static const long pauses[] = {0, 30, 0, 120, 5, 400, 0, 60};
    for (int threads = 2; threads <= 4; threads++) {
        eng_pool *p = eng__pool_create(threads);
        assert_non_null(p);
        int v[64] = {0};
        for (int j = 0; j < 400; j++) {
            eng__pool_run(p, 64, add_one, v);
            pause_us(pauses[j % 8]);
        }
        for (int i = 0; i < 64; i++)
            assert_int_equal(v[i], 400);
        eng__pool_free(p);
    }
}

/* A job of one index runs on the caller, under the last chunk's thread
 * number, as the chunk rule assigns it. */
static void test_single_index_job(void **state)
{
    (void)state;
    static record r;
    eng_pool *p = eng__pool_create(3);
    assert_non_null(p);
    memset(&r, 0, sizeof r);
    eng__pool_run(p, 1, note, &r);
    assert_int_equal(r.hits[0], 1);
    assert_int_equal(r.calls[2], 1);
    assert_int_equal(r.calls[0] + r.calls[1], 0);
    eng__pool_free(p);
}

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* After a job the threads spin for a fraction of a millisecond, then sleep:
 * over 300 ms of idleness the process uses far less than a core. */
static void test_idle_pool_sleeps(void **state)
{
    (void)state;
    eng_pool *p = eng__pool_create(4);
    assert_non_null(p);
    int v[8] = {0};
    eng__pool_run(p, 8, add_one, v);
    double c0 = cpu_seconds();
    pause_us(300000);
    double used = cpu_seconds() - c0;
    print_message("idle pool of 4 threads: %.2f ms of CPU in 300 ms\n", used * 1e3);
    assert_true(used < 0.05);
    eng__pool_free(p);
}

static void test_create_refuses_no_threads(void **state)
{
    (void)state;
    assert_null(eng__pool_create(0));
    eng__pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_index_once_in_fixed_chunks),
        cmocka_unit_test(test_chunks_run_on_their_worker_or_the_caller),
        cmocka_unit_test(test_many_jobs_in_a_row),
        cmocka_unit_test(test_jobs_between_sleeps),
        cmocka_unit_test(test_single_index_job),
        cmocka_unit_test(test_idle_pool_sleeps),
        cmocka_unit_test(test_create_refuses_no_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
