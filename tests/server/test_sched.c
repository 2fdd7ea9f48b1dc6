/*
 * test_sched.c - the scheduler without sockets or an engine: admission under
 * the cell budget, joining and leaving between iterations, cancellation in
 * the queue and in the batch, no starvation of a large grid, queue limits,
 * closing, and the batch-fill wait (on a fake clock); then admission by
 * work: the work bound, fair shares and the hard cap, round-robin between
 * clients (with no starvation of a large grid), the measured rate, refusals
 * on deadline and the computed Retry-After.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/sched.h"

/* A fake request: a node plus the iterations it still needs. */
typedef struct fake {
    srv_qnode q;
    int id;
    int left;
} fake;

typedef struct fixture {
    srv_sched s;
    srv_turn t;
    srv_qnode *batch[64], *dropped[64];
} fixture;

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

static fixture *setup_work(int max_queue, int64_t max_work, int cells, int grids,
                           int64_t wait_ns)
{
    fixture *f = calloc(1, sizeof *f);
    srv_sched_limits lim = {.max_queue = max_queue,
                            .max_queue_work = max_work,
                            .max_batch_cells = cells,
                            .max_batch_grids = grids,
                            .batch_wait_ns = wait_ns};
    assert_int_equal(srv__sched_init(&f->s, &lim), 0);
    f->s.clock = fake_clock;
    fake_now = 1000;
    f->t.cap = 64;
    f->t.batch = f->batch;
    f->t.dropped = f->dropped;
    return f;
}

/* Bounded by count only, as before admission by work. */
static fixture *setup_limits(int max_queue, int cells, int grids, int64_t wait_ns)
{
    return setup_work(max_queue, 0, cells, grids, wait_ns);
}

static void teardown(fixture *f)
{
    srv__sched_destroy(&f->s);
    free(f);
}

static void init_fake(fake *x, int id, int cells, int iterations)
{
    memset(x, 0, sizeof *x);
    x->id = id;
    x->q.cells = cells;
    x->q.iterations = iterations;
    x->left = iterations;
}

/* The same for a given client. */
static void init_client(fake *x, int id, uint64_t client, int cells, int iterations)
{
    init_fake(x, id, cells, iterations);
    x->q.client = client;
}

static int in_batch(const fixture *f, const fake *x)
{
    for (int i = 0; i < f->t.n_batch; i++)
        if (f->t.batch[i] == &x->q) return 1;
    return 0;
}

/* One iteration for every grid in the batch; finished ones retire. */
static void step(fixture *f)
{
    for (int i = 0; i < f->t.n_batch; i++) {
        fake *x = (fake *)f->t.batch[i];
        if (--x->left == 0) srv__sched_retire(&f->s, &x->q);
    }
}

static void test_invalid_limits(void **state)
{
    srv_sched s;
    srv_sched_limits lim = {.max_queue = 0, .max_batch_cells = 10};
    assert_int_equal(srv__sched_init(&s, &lim), -1);
    lim = (srv_sched_limits){.max_queue = 1, .max_batch_cells = 0};
    assert_int_equal(srv__sched_init(&s, &lim), -1);
    lim = (srv_sched_limits){.max_queue = 1, .max_queue_work = -1, .max_batch_cells = 1};
    assert_int_equal(srv__sched_init(&s, &lim), -1);
    lim = (srv_sched_limits){.max_queue = 2000000, .max_batch_cells = 1};
    assert_int_equal(srv__sched_init(&s, &lim), -1);
}

static void test_admission_under_budget(void **state)
{
    fixture *f = setup_limits(8, 100, 0, 0);
    fake a, b, c;
    init_fake(&a, 1, 40, 5);
    init_fake(&b, 2, 40, 5);
    init_fake(&c, 3, 40, 5);
    assert_int_equal(srv__sched_submit(&f->s, &a.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &b.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    assert_int_equal(f->t.n_joined, 2);
    assert_ptr_equal(f->t.batch[0], &a.q);
    assert_ptr_equal(f->t.batch[1], &b.q);
    srv_sched_stats st = srv__sched_stats(&f->s);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.active_cells, 80);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.queued_cells, 40);
    assert_int_equal(c.q.state, SRV_Q_QUEUED);
    teardown(f);
}

static void test_join_and_leave_between_iterations(void **state)
{
    fixture *f = setup_limits(8, 100, 0, 0);
    fake a, b, c;
    init_fake(&a, 1, 50, 2);
    init_fake(&b, 2, 30, 4);
    init_fake(&c, 3, 50, 3);
    srv__sched_submit(&f->s, &a.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    step(f);
    /* b arrives during a's first iteration and joins before its second. */
    srv__sched_submit(&f->s, &b.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    assert_int_equal(f->t.n_joined, 1);
    assert_ptr_equal(f->t.batch[1], &b.q);
    /* c (50) does not fit beside a and b (80); a finishes at this step. */
    srv__sched_submit(&f->s, &c.q, NULL);
    step(f);
    assert_int_equal(a.q.state, SRV_Q_NONE);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    assert_true(in_batch(f, &b) && in_batch(f, &c) && !in_batch(f, &a));
    assert_int_equal(f->t.n_joined, 1);
    teardown(f);
}

static void test_cancel_queued(void **state)
{
    fixture *f = setup_limits(8, 10, 0, 0);
    fake a, b;
    init_fake(&a, 1, 10, 3);
    init_fake(&b, 2, 10, 3);
    srv__sched_submit(&f->s, &a.q, NULL);
    srv__sched_submit(&f->s, &b.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_int_equal(srv__sched_cancel(&f->s, &b.q), 1);
    assert_int_equal(b.q.state, SRV_Q_NONE);
    assert_int_equal(srv__sched_stats(&f->s).queued, 0);
    /* Cancelling twice is harmless and no longer reports a removal. */
    assert_int_equal(srv__sched_cancel(&f->s, &b.q), 0);
    step(f);
    step(f);
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    assert_int_equal(f->t.n_dropped, 0);
    teardown(f);
}

static void test_cancel_active(void **state)
{
    fixture *f = setup_limits(8, 100, 0, 0);
    fake a, b, c;
    init_fake(&a, 1, 60, 9);
    init_fake(&b, 2, 40, 9);
    init_fake(&c, 3, 60, 9);
    srv__sched_submit(&f->s, &a.q, NULL);
    srv__sched_submit(&f->s, &b.q, NULL);
    srv__sched_submit(&f->s, &c.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    step(f);
    /* Active: only flagged; the next turn drops it and c takes its place. */
    assert_int_equal(srv__sched_cancel(&f->s, &a.q), 0);
    assert_int_equal(a.q.state, SRV_Q_ACTIVE);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    assert_int_equal(f->t.n_dropped, 1);
    assert_ptr_equal(f->t.dropped[0], &a.q);
    assert_int_equal(a.q.state, SRV_Q_NONE);
    assert_true(in_batch(f, &b) && in_batch(f, &c) && !in_batch(f, &a));
    /* Cancelling the whole batch leaves nothing to step, and the dropped
     * nodes still come back at once. */
    srv__sched_cancel(&f->s, &b.q);
    srv__sched_cancel(&f->s, &c.q);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 1), SRV_SCHED_EMPTY);
    assert_int_equal(f->t.n_dropped, 2);
    assert_int_equal(srv__sched_stats(&f->s).active, 0);
    teardown(f);
}

/* A 64-cell grid arrives behind small ones while a new 8-cell request keeps
 * arriving every iteration. It must start within the lifetime of the small
 * requests already active, and no request submitted after it may start
 * before it does. */
static void test_no_starvation(void **state)
{
    enum { SMALL = 40, K = 4 };
    fixture *f = setup_limits(64, 64, 0, 0);
    fake small[SMALL], big;
    int next_small = 0, big_turn = -1, submitted_after_big = -1;
    init_fake(&big, 99, 64, K);
    for (int turn = 0; turn < 30; turn++) {
        if (next_small < SMALL) {
            init_fake(&small[next_small], next_small, 8, K);
            assert_int_equal(srv__sched_submit(&f->s, &small[next_small].q, NULL), SRV_SCHED_OK);
            next_small++;
        }
        if (turn == 5) {
            srv__sched_submit(&f->s, &big.q, NULL);
            submitted_after_big = next_small;
        }
        assert_true(srv__sched_next(&f->s, &f->t, 0) >= 1);
        if (in_batch(f, &big) && big_turn < 0) {
            big_turn = turn;
            assert_int_equal(f->t.n_batch, 1); /* it needs the whole budget */
        }
        if (big_turn < 0 && submitted_after_big >= 0)
            for (int i = submitted_after_big; i < next_small; i++)
                assert_false(in_batch(f, &small[i]));
        step(f);
    }
    assert_true(big_turn >= 0);
    assert_true(big_turn <= 5 + K);
    assert_int_equal(big.left, 0);
    /* The small ones queued behind it ran afterwards. */
    assert_int_equal(small[submitted_after_big].left, 0);
    teardown(f);
}

static void test_queue_full(void **state)
{
    fixture *f = setup_limits(2, 10, 0, 0);
    fake a, b, c, d;
    init_fake(&a, 1, 10, 2);
    init_fake(&b, 2, 10, 2);
    init_fake(&c, 3, 10, 2);
    init_fake(&d, 4, 10, 2);
    assert_int_equal(srv__sched_submit(&f->s, &a.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &b.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, NULL), SRV_SCHED_FULL);
    assert_int_equal(c.q.state, SRV_Q_NONE);
    /* Admission frees a queue slot: active requests do not count. */
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &d.q, NULL), SRV_SCHED_FULL);
    teardown(f);
}

static void test_oversized_runs_alone(void **state)
{
    fixture *f = setup_limits(8, 16, 0, 0);
    fake a, big, b;
    init_fake(&a, 1, 4, 1);
    init_fake(&big, 2, 100, 2);
    init_fake(&b, 3, 4, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    srv__sched_submit(&f->s, &big.q, NULL);
    srv__sched_submit(&f->s, &b.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_true(in_batch(f, &a));
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_true(in_batch(f, &big));
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_true(in_batch(f, &big));
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_true(in_batch(f, &b));
    teardown(f);
}

static void test_max_batch_grids(void **state)
{
    fixture *f = setup_limits(8, 1000, 2, 0);
    fake x[3];
    for (int i = 0; i < 3; i++) {
        init_fake(&x[i], i, 1, 3);
        srv__sched_submit(&f->s, &x[i].q, NULL);
    }
    assert_int_equal(srv__sched_turn_cap(&f->s.lim), 2);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    assert_false(in_batch(f, &x[2]));
    teardown(f);
}

static void test_close_drains_then_done(void **state)
{
    fixture *f = setup_limits(8, 10, 0, 0);
    fake a, b, late;
    init_fake(&a, 1, 10, 1);
    init_fake(&b, 2, 10, 1);
    init_fake(&late, 3, 1, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    srv__sched_submit(&f->s, &b.q, NULL);
    srv__sched_close(&f->s);
    assert_int_equal(srv__sched_submit(&f->s, &late.q, NULL), SRV_SCHED_CLOSED);
    /* Work accepted before closing still runs to the end. */
    assert_int_equal(srv__sched_next(&f->s, &f->t, 1), 1);
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 1), 1);
    assert_true(in_batch(f, &b));
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 1), SRV_SCHED_DONE);
    teardown(f);
}

static void test_batch_wait(void **state)
{
    fixture *f = setup_limits(8, 30, 0, 5000);
    fake a, b, c;
    init_fake(&a, 1, 10, 1);
    init_fake(&b, 2, 10, 1);
    init_fake(&c, 3, 10, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    /* Idle worker, batch not full, a has waited less than 5000 ns. */
    fake_now += 1000;
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    srv__sched_submit(&f->s, &b.q, NULL);
    fake_now += 3999;
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    /* The oldest request's wait runs out: start with what is there. */
    fake_now += 1;
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    /* With a batch running, new requests join without any wait. */
    srv__sched_submit(&f->s, &c.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 3);
    teardown(f);
}

static void test_batch_wait_ends_when_full(void **state)
{
    fixture *f = setup_limits(8, 20, 0, 1000000);
    fake a, b;
    init_fake(&a, 1, 10, 1);
    init_fake(&b, 2, 10, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    srv__sched_submit(&f->s, &b.q, NULL);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    teardown(f);
}

/* ---- admission by work -------------------------------------------------------- */

/* Warms the rate up: a first pass (not counted), then two full batches. */
static void warm(fixture *f, double rate)
{
    int cells = f->s.lim.max_batch_cells;
    for (int i = 0; i < 3; i++)
        srv__sched_observe(&f->s, cells, cells / rate);
    assert_true(fabs(srv__sched_stats(&f->s).rate - rate) < rate * 1e-9);
}

static void test_work_bound(void **state)
{
    fixture *f = setup_work(8, 100, 10, 0, 0);
    fake a, b, c;
    init_fake(&a, 1, 10, 4); /* 40 cell-iterations each */
    init_fake(&b, 2, 10, 4);
    init_fake(&c, 3, 10, 4);
    srv_admission v;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &b.q, &v), SRV_SCHED_OK);
    assert_int_equal(srv__sched_stats(&f->s).queued_work, 80);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, &v), SRV_SCHED_WORK);
    assert_int_equal(c.q.state, SRV_Q_NONE);
    assert_int_equal(v.work, 40);
    assert_int_equal(v.queued_work, 80);
    assert_int_equal(v.retry_after_s, 0); /* no rate yet: the caller's constant */
    /* Work that joins the batch leaves the queue's bound. */
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_int_equal(srv__sched_stats(&f->s).queued_work, 40);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, NULL), SRV_SCHED_OK);
    /* Cancelling a queued request gives its work back. */
    assert_int_equal(srv__sched_cancel(&f->s, &c.q), 1);
    assert_int_equal(srv__sched_stats(&f->s).queued_work, 40);
    teardown(f);
}

/* A request above the whole work bound waits alone in an empty queue. */
static void test_oversized_work_waits_alone(void **state)
{
    fixture *f = setup_work(8, 100, 100, 0, 0);
    fake big, small, other;
    init_client(&big, 1, 7, 50, 10); /* 500 cell-iterations */
    init_client(&small, 2, 7, 1, 1);
    init_client(&other, 3, 8, 1, 1);
    assert_int_equal(srv__sched_submit(&f->s, &big.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_stats(&f->s).queued_work, 500);
    assert_int_equal(srv__sched_submit(&f->s, &small.q, NULL), SRV_SCHED_WORK);
    /* Another client's first request still gets in (its fair share). */
    assert_int_equal(srv__sched_submit(&f->s, &other.q, NULL), SRV_SCHED_OK);
    teardown(f);
}

/* One client fills the queue; a client with nothing queued still gets in,
 * up to its fair share; the flooding client is refused for its share; the
 * hard cap of twice the bound stops everyone. */
static void test_fair_share_and_hard_cap(void **state)
{
    fixture *f = setup_work(4, 0, 1, 0, 0);
    fake a[5], b[3], c, d, e;
    for (int i = 0; i < 5; i++)
        init_client(&a[i], i, 1, 1, 1);
    for (int i = 0; i < 3; i++)
        init_client(&b[i], 10 + i, 2, 1, 1);
    init_client(&c, 20, 3, 1, 1);
    init_client(&d, 21, 4, 1, 1);
    init_client(&e, 22, 5, 1, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(srv__sched_submit(&f->s, &a[i].q, NULL), SRV_SCHED_OK);
    /* Alone, a client may use the whole queue and no more. */
    assert_int_equal(srv__sched_submit(&f->s, &a[4].q, NULL), SRV_SCHED_FULL);
    srv_admission v;
    assert_int_equal(srv__sched_submit(&f->s, &b[0].q, &v), SRV_SCHED_OK);
    assert_int_equal(v.clients, 2);
    assert_int_equal(srv__sched_submit(&f->s, &b[1].q, NULL), SRV_SCHED_OK); /* 2 of 4 / 2 */
    assert_int_equal(srv__sched_submit(&f->s, &b[2].q, &v), SRV_SCHED_SHARE); /* 3 of 4 / 2 */
    assert_int_equal(v.client_queued, 2);
    assert_int_equal(srv__sched_submit(&f->s, &a[4].q, &v), SRV_SCHED_SHARE);
    assert_int_equal(v.client_queued, 4);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &d.q, NULL), SRV_SCHED_OK);
    srv_sched_stats st = srv__sched_stats(&f->s);
    assert_int_equal(st.queued, 8);
    assert_int_equal(st.clients, 4);
    assert_int_equal(srv__sched_submit(&f->s, &e.q, NULL), SRV_SCHED_FULL);
    teardown(f);
}

static void test_fair_share_of_work(void **state)
{
    fixture *f = setup_work(100, 100, 1000, 0, 0);
    fake a[3], b[2];
    for (int i = 0; i < 3; i++)
        init_client(&a[i], i, 1, 10, 5); /* 50 cell-iterations */
    for (int i = 0; i < 2; i++)
        init_client(&b[i], 10 + i, 2, 10, 5);
    assert_int_equal(srv__sched_submit(&f->s, &a[0].q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &a[1].q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &a[2].q, NULL), SRV_SCHED_WORK);
    assert_int_equal(srv__sched_submit(&f->s, &b[0].q, NULL), SRV_SCHED_OK);
    /* b holds 50 of a share of 100 / 2: the next one would pass the cap. */
    assert_int_equal(srv__sched_submit(&f->s, &b[1].q, NULL), SRV_SCHED_SHARE);
    assert_int_equal(srv__sched_submit(&f->s, &a[2].q, NULL), SRV_SCHED_SHARE);
    /* New clients get in up to twice the work bound, then nobody does. */
    fake c, d;
    init_client(&c, 20, 3, 10, 5);
    init_client(&d, 21, 4, 10, 5);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_stats(&f->s).queued_work, 200);
    assert_int_equal(srv__sched_submit(&f->s, &d.q, NULL), SRV_SCHED_WORK);
    teardown(f);
}

/* Client A queues many one-at-a-time requests, then client B sends one:
 * B's starts after at most one more of A's. */
static void test_round_robin(void **state)
{
    enum { N = 10 };
    fixture *f = setup_limits(64, 10, 0, 0);
    fake a[N], b;
    for (int i = 0; i < N; i++) {
        init_client(&a[i], i, 1, 10, 1);
        srv__sched_submit(&f->s, &a[i].q, NULL);
    }
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_ptr_equal(f->t.batch[0], &a[0].q);
    init_client(&b, 99, 2, 10, 1);
    assert_int_equal(srv__sched_submit(&f->s, &b.q, NULL), SRV_SCHED_OK);
    int order[N + 1], n = 0;
    for (;;) {
        step(f);
        if (srv__sched_next(&f->s, &f->t, 0) < 1) break;
        order[n++] = ((fake *)f->t.batch[0])->id;
    }
    assert_int_equal(n, N);
    assert_int_equal(order[0], 1);  /* the one more of A's */
    assert_int_equal(order[1], 99); /* B */
    for (int i = 2; i < N; i++)
        assert_int_equal(order[i], i); /* A's backlog, in its own order */
    teardown(f);
}

/* Three clients' backlogs interleave one request each per round; a new
 * client joins behind the turn. */
static void test_round_robin_three_clients(void **state)
{
    fixture *f = setup_limits(64, 1, 0, 0);
    fake x[9];
    for (int i = 0; i < 9; i++) {
        init_client(&x[i], i, (uint64_t)(i / 3) + 1, 1, 1); /* ids 0-2: A, 3-5: B, 6-8: C */
        srv__sched_submit(&f->s, &x[i].q, NULL);
    }
    assert_int_equal(srv__sched_stats(&f->s).clients, 3);
    static const int want[9] = {0, 3, 6, 1, 4, 7, 2, 5, 8};
    for (int i = 0; i < 9; i++) {
        assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
        assert_int_equal(((fake *)f->t.batch[0])->id, want[i]);
        step(f);
    }
    assert_int_equal(srv__sched_stats(&f->s).clients, 0);
    teardown(f);
}

/* Client A keeps sending small grids; client B sends one that needs the
 * whole budget. When its turn comes nobody overtakes it: it starts once
 * A's active grids drain, and at most one of A's requests sent after it
 * starts before it. */
static void test_no_starvation_round_robin(void **state)
{
    enum { SMALL = 40, K = 4 };
    fixture *f = setup_limits(64, 64, 0, 0);
    fake small[SMALL], big;
    int next_small = 0, big_turn = -1, after_big = -1, overtook = 0;
    init_client(&big, 99, 2, 64, K);
    for (int turn = 0; turn < 30; turn++) {
        if (next_small < SMALL) {
            init_client(&small[next_small], next_small, 1, 8, K);
            assert_int_equal(srv__sched_submit(&f->s, &small[next_small].q, NULL), SRV_SCHED_OK);
            next_small++;
        }
        if (turn == 5) {
            assert_int_equal(srv__sched_submit(&f->s, &big.q, NULL), SRV_SCHED_OK);
            after_big = next_small;
        }
        assert_true(srv__sched_next(&f->s, &f->t, 0) >= 1);
        if (big_turn < 0 && in_batch(f, &big)) {
            big_turn = turn;
            assert_int_equal(f->t.n_batch, 1);
        }
        if (big_turn < 0 && after_big >= 0)
            for (int i = after_big; i < next_small; i++)
                if (in_batch(f, &small[i]) && small[i].left == K) overtook++;
        step(f);
    }
    assert_true(big_turn >= 0);
    assert_true(big_turn <= 5 + K + 1);
    assert_true(overtook <= 1);
    assert_int_equal(big.left, 0);
    teardown(f);
}

/* Cancelling the only queued request of the client whose turn it is passes
 * the turn on and frees the client. */
static void test_cancel_passes_turn(void **state)
{
    fixture *f = setup_limits(8, 1, 0, 0);
    fake a, b1, b2;
    init_client(&a, 1, 1, 1, 1);
    init_client(&b1, 2, 2, 1, 1);
    init_client(&b2, 3, 2, 1, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    srv__sched_submit(&f->s, &b1.q, NULL);
    srv__sched_submit(&f->s, &b2.q, NULL);
    assert_int_equal(srv__sched_stats(&f->s).clients, 2);
    assert_int_equal(srv__sched_cancel(&f->s, &a.q), 1);
    assert_int_equal(srv__sched_stats(&f->s).clients, 1);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_ptr_equal(f->t.batch[0], &b1.q);
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_ptr_equal(f->t.batch[0], &b2.q);
    step(f);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    srv_sched_stats st = srv__sched_stats(&f->s);
    assert_int_equal(st.clients, 0);
    assert_int_equal(st.queued_work, 0);
    teardown(f);
}

/* The rate: the first pass does not count; then the weighted mean of the
 * passes until two full batches' worth; then a moving average in which a
 * pass weighs its share of a full batch and a stall counts as half the
 * estimate at worst. */
static void test_rate_measurement(void **state)
{
    fixture *f = setup_limits(8, 1000, 0, 0);
    srv__sched_observe(&f->s, 1000, 1.0); /* the first pass: one-time costs */
    srv__sched_observe(&f->s, 500, 0.01); /* 50,000/s, half a batch */
    assert_true(srv__sched_stats(&f->s).rate == 0); /* still warming up */
    srv__sched_observe(&f->s, 1000, 0.0125); /* 80,000/s */
    assert_true(srv__sched_stats(&f->s).rate == 0);
    srv__sched_observe(&f->s, 500, 500.0 / 70000);
    double r = srv__sched_stats(&f->s).rate; /* (0.5 x 50k + 80k + 0.5 x 70k) / 2 */
    assert_true(fabs(r - 70000) < 1e-6);
    /* A one-cell pass at a tenth of the rate barely moves it... */
    srv__sched_observe(&f->s, 1, 1.0 / 7000);
    r = srv__sched_stats(&f->s).rate;
    assert_true(r < 70000 && r > 69990);
    /* ...a full batch that stalled moves it down by an eighth... */
    srv__sched_observe(&f->s, 1000, 1.0);
    double r2 = srv__sched_stats(&f->s).rate;
    assert_true(fabs(r2 - r * 0.875) < 1e-6);
    /* ...and a full fast one up by a quarter of the difference. */
    srv__sched_observe(&f->s, 1000, 1000.0 / 100000);
    double r3 = srv__sched_stats(&f->s).rate;
    assert_true(fabs(r3 - (r2 + 0.25 * (100000 - r2))) < 1e-6);
    /* Passes without cells or time are ignored. */
    srv__sched_observe(&f->s, 0, 1.0);
    srv__sched_observe(&f->s, 1000, 0.0);
    assert_true(srv__sched_stats(&f->s).rate == r3);
    teardown(f);
}

/* Before any measurement nothing is refused on its deadline. */
static void test_cold_start_no_rate_refusal(void **state)
{
    fixture *f = setup_limits(8, 10, 0, 0);
    fake a;
    init_fake(&a, 1, 10, 1000);
    a.q.deadline = fake_now + 1; /* a nanosecond */
    srv_admission v;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_OK);
    assert_true(v.rate == 0);
    teardown(f);
}

static void test_refuse_too_slow(void **state)
{
    fixture *f = setup_limits(8, 1000, 0, 0);
    warm(f, 1000);
    fake a;
    init_fake(&a, 1, 10, 100); /* 1000 cell-iterations: 1 s */
    a.q.deadline = fake_now + 500000000;
    srv_admission v;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_TOO_SLOW);
    assert_int_equal(a.q.state, SRV_Q_NONE);
    assert_true(fabs(v.need_s - 1.0) < 1e-9);
    assert_true(fabs(v.deadline_s - 0.5) < 1e-9);
    assert_true(v.rate == 1000);
    assert_int_equal(v.retry_after_s, 0); /* a retry cannot help */
    /* A deadline already passed is refused too; none at all is not. */
    a.q.deadline = fake_now - 1;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_TOO_SLOW);
    assert_true(v.deadline_s == 0);
    a.q.deadline = 0;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_OK);
    teardown(f);
}

/* Fits alone, not behind the queued work, counted the way round-robin
 * orders it: client A's own backlog is all ahead of A, one request of it
 * is ahead of B. */
static void test_refuse_late_behind_queue(void **state)
{
    fixture *f = setup_limits(16, 10, 0, 0);
    warm(f, 1000);
    fake q[3], a, b;
    for (int i = 0; i < 3; i++) {
        init_client(&q[i], i, 1, 10, 50); /* 500 cell-iterations: 0.5 s */
        assert_int_equal(srv__sched_submit(&f->s, &q[i].q, NULL), SRV_SCHED_OK);
    }
    init_client(&a, 10, 1, 10, 50);
    init_client(&b, 11, 2, 10, 50);
    a.q.deadline = b.q.deadline = fake_now + 1200000000; /* 1.2 s */
    srv_admission v;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_LATE);
    assert_true(fabs(v.wait_s - 1.5) < 1e-9);
    assert_true(fabs(v.need_s - 0.5) < 1e-9);
    assert_int_equal(v.retry_after_s, 1); /* 2.0 s of work, 1.2 s allowed: 0.8 s */
    assert_int_equal(srv__sched_submit(&f->s, &b.q, &v), SRV_SCHED_OK);
    assert_true(fabs(v.wait_s - 0.5) < 1e-9);
    a.q.deadline = fake_now + 600000000;
    assert_int_equal(srv__sched_submit(&f->s, &a.q, &v), SRV_SCHED_LATE);
    assert_int_equal(v.retry_after_s, 2); /* 2.5 s of work, 0.6 s allowed: 1.9 s */
    teardown(f);
}

/* Retry-After: the constant (0) before a measurement; afterwards the time
 * to work off what stands in the way, within [1, SRV_SCHED_RETRY_MAX]. */
static void test_retry_after(void **state)
{
    fixture *f = setup_limits(2, 10, 0, 0);
    fake a, b, c, d;
    init_client(&a, 1, 1, 10, 100); /* 1000 cell-iterations */
    init_client(&b, 2, 1, 10, 200); /* 2000 */
    init_client(&c, 3, 1, 1, 1);
    init_client(&d, 4, 2, 1, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    srv__sched_submit(&f->s, &b.q, NULL);
    srv_admission v;
    assert_int_equal(srv__sched_submit(&f->s, &c.q, &v), SRV_SCHED_FULL);
    assert_int_equal(v.retry_after_s, 0);
    warm(f, 1000);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, &v), SRV_SCHED_FULL);
    assert_int_equal(v.retry_after_s, 3); /* 3000 cell-iterations at 1000/s */
    /* Client 2 gets in; client 1 now gets its round-robin half of the rate. */
    assert_int_equal(srv__sched_submit(&f->s, &d.q, NULL), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, &v), SRV_SCHED_SHARE);
    assert_int_equal(v.retry_after_s, 6);
    teardown(f);
    f = setup_limits(1, 10, 0, 0);
    warm(f, 0.001);
    init_client(&a, 1, 1, 10, 100);
    init_client(&c, 3, 1, 1, 1);
    srv__sched_submit(&f->s, &a.q, NULL);
    assert_int_equal(srv__sched_submit(&f->s, &c.q, &v), SRV_SCHED_FULL);
    assert_int_equal(v.retry_after_s, SRV_SCHED_RETRY_MAX);
    teardown(f);
}

/* ---- two threads ------------------------------------------------------------- */

typedef struct worker_arg {
    srv_sched *s;
    int finished, dropped;
} worker_arg;

/* A worker like worker.c's: one turn per iteration, one pass observed. */
static void *worker(void *p)
{
    worker_arg *w = p;
    srv_qnode *batch[64], *dropped[64];
    srv_turn t = {.cap = 64, .batch = batch, .dropped = dropped};
    for (;;) {
        int n = srv__sched_next(w->s, &t, 1);
        w->dropped += t.n_dropped;
        if (n == SRV_SCHED_DONE) break;
        long cells = 0;
        for (int i = 0; i < n; i++) {
            fake *x = (fake *)batch[i];
            cells += x->q.cells;
            if (--x->left == 0) {
                srv__sched_retire(w->s, &x->q);
                w->finished++;
            }
        }
        if (n > 0) srv__sched_observe(w->s, cells, 1e-6 * (double)cells);
    }
    return NULL;
}

/* Submissions, cancellations and stats from one thread while a worker
 * thread runs turns: every node ends exactly once, and the counts come back
 * to zero (run under SANITIZER=thread for the data races). */
static void test_threads(void **state)
{
    enum { N = 600 };
    srv_sched s;
    srv_sched_limits lim = {.max_queue = N, .max_queue_work = 1000, .max_batch_cells = 16};
    assert_int_equal(srv__sched_init(&s, &lim), 0);
    fake *x = calloc(N, sizeof *x);
    worker_arg w = {.s = &s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, worker, &w), 0);
    int queued = 0, refused = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        init_client(&x[i], i, (uint64_t)(i % 3), 1 + i % 8, 1 + i % 5);
        x[i].q.deadline = i % 2 ? srv__now_ns() + 1000000000 : 0;
        if (srv__sched_submit(&s, &x[i].q, NULL) == SRV_SCHED_OK)
            queued++;
        else
            refused++;
        if (i % 7 == 0 && srv__sched_cancel(&s, &x[i].q)) cancelled++;
        srv_sched_stats st = srv__sched_stats(&s);
        assert_true(st.queued >= 0 && st.queued <= 2 * N && st.queued_work >= 0);
    }
    srv__sched_close(&s);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* Active nodes flagged by a cancel were dropped by the worker instead. */
    assert_int_equal(w.finished + w.dropped + cancelled, queued);
    srv_sched_stats st = srv__sched_stats(&s);
    assert_int_equal(st.queued + st.active + st.clients, 0);
    assert_int_equal(st.queued_work, 0);
    assert_true(st.rate > 0);
    (void)refused;
    free(x);
    srv__sched_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_limits),
        cmocka_unit_test(test_admission_under_budget),
        cmocka_unit_test(test_join_and_leave_between_iterations),
        cmocka_unit_test(test_cancel_queued),
        cmocka_unit_test(test_cancel_active),
        cmocka_unit_test(test_no_starvation),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_oversized_runs_alone),
        cmocka_unit_test(test_max_batch_grids),
        cmocka_unit_test(test_close_drains_then_done),
        cmocka_unit_test(test_batch_wait),
        cmocka_unit_test(test_batch_wait_ends_when_full),
        cmocka_unit_test(test_work_bound),
        cmocka_unit_test(test_oversized_work_waits_alone),
        cmocka_unit_test(test_fair_share_and_hard_cap),
        cmocka_unit_test(test_fair_share_of_work),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_round_robin_three_clients),
        cmocka_unit_test(test_no_starvation_round_robin),
        cmocka_unit_test(test_cancel_passes_turn),
        cmocka_unit_test(test_rate_measurement),
        cmocka_unit_test(test_cold_start_no_rate_refusal),
        cmocka_unit_test(test_refuse_too_slow),
        cmocka_unit_test(test_refuse_late_behind_queue),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
