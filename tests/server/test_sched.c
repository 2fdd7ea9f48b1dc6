/*
 * test_sched.c - the scheduler without sockets or an engine: admission under
 * the cell budget, joining and leaving between iterations, cancellation in
 * the queue and in the batch, no starvation of a large grid, queue limits,
 * closing, and the batch-fill wait (on a fake clock).
 */
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

static fixture *setup_limits(int max_queue, int cells, int grids, int64_t wait_ns)
{
    fixture *f = calloc(1, sizeof *f);
    srv_sched_limits lim = {.max_queue = max_queue,
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
    x->left = iterations;
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
}

static void test_admission_under_budget(void **state)
{
    fixture *f = setup_limits(8, 100, 0, 0);
    fake a, b, c;
    init_fake(&a, 1, 40, 5);
    init_fake(&b, 2, 40, 5);
    init_fake(&c, 3, 40, 5);
    assert_int_equal(srv__sched_submit(&f->s, &a.q), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &b.q), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &c.q), SRV_SCHED_OK);
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
    srv__sched_submit(&f->s, &a.q);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    step(f);
    /* b arrives during a's first iteration and joins before its second. */
    srv__sched_submit(&f->s, &b.q);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    assert_int_equal(f->t.n_joined, 1);
    assert_ptr_equal(f->t.batch[1], &b.q);
    /* c (50) does not fit beside a and b (80); a finishes at this step. */
    srv__sched_submit(&f->s, &c.q);
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
    srv__sched_submit(&f->s, &a.q);
    srv__sched_submit(&f->s, &b.q);
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
    srv__sched_submit(&f->s, &a.q);
    srv__sched_submit(&f->s, &b.q);
    srv__sched_submit(&f->s, &c.q);
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
            assert_int_equal(srv__sched_submit(&f->s, &small[next_small].q), SRV_SCHED_OK);
            next_small++;
        }
        if (turn == 5) {
            srv__sched_submit(&f->s, &big.q);
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
    assert_int_equal(srv__sched_submit(&f->s, &a.q), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &b.q), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &c.q), SRV_SCHED_FULL);
    assert_int_equal(c.q.state, SRV_Q_NONE);
    /* Admission frees a queue slot: active requests do not count. */
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 1);
    assert_int_equal(srv__sched_submit(&f->s, &c.q), SRV_SCHED_OK);
    assert_int_equal(srv__sched_submit(&f->s, &d.q), SRV_SCHED_FULL);
    teardown(f);
}

static void test_oversized_runs_alone(void **state)
{
    fixture *f = setup_limits(8, 16, 0, 0);
    fake a, big, b;
    init_fake(&a, 1, 4, 1);
    init_fake(&big, 2, 100, 2);
    init_fake(&b, 3, 4, 1);
    srv__sched_submit(&f->s, &a.q);
    srv__sched_submit(&f->s, &big.q);
    srv__sched_submit(&f->s, &b.q);
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
        srv__sched_submit(&f->s, &x[i].q);
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
    srv__sched_submit(&f->s, &a.q);
    srv__sched_submit(&f->s, &b.q);
    srv__sched_close(&f->s);
    assert_int_equal(srv__sched_submit(&f->s, &late.q), SRV_SCHED_CLOSED);
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
    srv__sched_submit(&f->s, &a.q);
    /* Idle worker, batch not full, a has waited less than 5000 ns. */
    fake_now += 1000;
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    srv__sched_submit(&f->s, &b.q);
    fake_now += 3999;
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    /* The oldest request's wait runs out: start with what is there. */
    fake_now += 1;
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    /* With a batch running, new requests join without any wait. */
    srv__sched_submit(&f->s, &c.q);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 3);
    teardown(f);
}

static void test_batch_wait_ends_when_full(void **state)
{
    fixture *f = setup_limits(8, 20, 0, 1000000);
    fake a, b;
    init_fake(&a, 1, 10, 1);
    init_fake(&b, 2, 10, 1);
    srv__sched_submit(&f->s, &a.q);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), SRV_SCHED_EMPTY);
    srv__sched_submit(&f->s, &b.q);
    assert_int_equal(srv__sched_next(&f->s, &f->t, 0), 2);
    teardown(f);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
