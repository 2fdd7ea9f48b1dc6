/*
 * sched.c - queue, admission and batch membership of one model's worker.
 *
 * Two circular doubly linked lists under one mutex: the queue (arrival
 * order) and the active set (admission order). The worker takes one turn per
 * refinement iteration, so requests join and leave only between iterations.
 */
#include <errno.h>
#include <time.h>

#include "server/sched.h"

int64_t srv__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void list_init(srv_qnode *head)
{
    head->prev = head->next = head;
}

static int list_empty(const srv_qnode *head)
{
    return head->next == head;
}

static void list_push(srv_qnode *head, srv_qnode *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static void list_unlink(srv_qnode *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

int srv__sched_init(srv_sched *s, const srv_sched_limits *lim)
{
    if (lim->max_queue < 1 || lim->max_batch_cells < 1 || lim->max_batch_grids < 0 ||
        lim->batch_wait_ns < 0)
        return -1;
    s->lim = *lim;
    list_init(&s->queue);
    list_init(&s->active);
    s->st = (srv_sched_stats){0};
    s->closed = 0;
    s->clock = srv__now_ns;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* Timed waits use the same monotonic clock as enqueued_ns. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    return 0;
}

void srv__sched_destroy(srv_sched *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

int srv__sched_turn_cap(const srv_sched_limits *lim)
{
    /* Every grid has at least one cell; an oversized grid runs alone. */
    int cap = lim->max_batch_cells;
    if (lim->max_batch_grids > 0 && lim->max_batch_grids < cap) cap = lim->max_batch_grids;
    return cap;
}

int srv__sched_submit(srv_sched *s, srv_qnode *n)
{
    int rc = SRV_SCHED_OK;
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        rc = SRV_SCHED_CLOSED;
    } else if (s->st.queued >= s->lim.max_queue) {
        rc = SRV_SCHED_FULL;
    } else {
        atomic_store(&n->cancelled, 0);
        n->enqueued_ns = s->clock();
        n->state = SRV_Q_QUEUED;
        list_push(&s->queue, n);
        s->st.queued++;
        s->st.queued_cells += n->cells;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int srv__sched_cancel(srv_sched *s, srv_qnode *n)
{
    int removed = 0;
    pthread_mutex_lock(&s->mu);
    if (n->state == SRV_Q_QUEUED) {
        list_unlink(n);
        n->state = SRV_Q_NONE;
        s->st.queued--;
        s->st.queued_cells -= n->cells;
        removed = 1;
    } else if (n->state == SRV_Q_ACTIVE) {
        atomic_store(&n->cancelled, 1);
        /* An idle worker may be waiting for a batch to fill: let it drop n. */
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return removed;
}

void srv__sched_retire(srv_sched *s, srv_qnode *n)
{
    pthread_mutex_lock(&s->mu);
    if (n->state == SRV_Q_ACTIVE) {
        list_unlink(n);
        n->state = SRV_Q_NONE;
        s->st.active--;
        s->st.active_cells -= n->cells;
    }
    pthread_mutex_unlock(&s->mu);
}

void srv__sched_close(srv_sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

srv_sched_stats srv__sched_stats(srv_sched *s)
{
    pthread_mutex_lock(&s->mu);
    srv_sched_stats st = s->st;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* Moves cancelled active nodes into t->dropped. Under the lock. */
static void drop_cancelled(srv_sched *s, srv_turn *t)
{
    srv_qnode *n = s->active.next;
    while (n != &s->active) {
        srv_qnode *next = n->next;
        if (atomic_load(&n->cancelled) && t->n_dropped < t->cap) {
            list_unlink(n);
            n->state = SRV_Q_NONE;
            s->st.active--;
            s->st.active_cells -= n->cells;
            t->dropped[t->n_dropped++] = n;
        }
        n = next;
    }
}

/* Whether the queue head may join the active set now. */
static int head_fits(const srv_sched *s, const srv_qnode *head)
{
    if (s->st.active == 0) return 1; /* anything runs alone, even a grid above the budget */
    if (s->lim.max_batch_grids > 0 && s->st.active >= s->lim.max_batch_grids) return 0;
    return s->st.active_cells + head->cells <= s->lim.max_batch_cells;
}

/* FIFO admission, stopping at the first node that does not fit. Returns the
 * number admitted. Under the lock. */
static int admit(srv_sched *s)
{
    int joined = 0;
    while (!list_empty(&s->queue)) {
        srv_qnode *head = s->queue.next;
        if (!head_fits(s, head)) break;
        list_unlink(head);
        s->st.queued--;
        s->st.queued_cells -= head->cells;
        head->state = SRV_Q_ACTIVE;
        list_push(&s->active, head);
        s->st.active++;
        s->st.active_cells += head->cells;
        joined++;
    }
    return joined;
}

/* An idle worker holds back while the queue could still fill the batch and
 * the oldest queued node has waited less than batch_wait_ns. Returns the
 * deadline to wait for, or 0 to start now. Under the lock. */
static int64_t hold_until(const srv_sched *s)
{
    if (s->lim.batch_wait_ns <= 0 || s->st.active > 0 || list_empty(&s->queue) || s->closed)
        return 0;
    if (s->st.queued_cells >= s->lim.max_batch_cells) return 0;
    if (s->lim.max_batch_grids > 0 && s->st.queued >= s->lim.max_batch_grids) return 0;
    int64_t until = s->queue.next->enqueued_ns + s->lim.batch_wait_ns;
    return until > s->clock() ? until : 0;
}

static void timed_wait(srv_sched *s, int64_t until_ns)
{
    struct timespec ts = {.tv_sec = until_ns / 1000000000, .tv_nsec = until_ns % 1000000000};
    int rc = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    (void)rc; /* timeouts and wake-ups are both re-examined by the caller */
}

int srv__sched_next(srv_sched *s, srv_turn *t, int wait)
{
    t->n_batch = t->n_joined = t->n_dropped = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        drop_cancelled(s, t);
        int64_t until = hold_until(s);
        if (until == 0) t->n_joined = admit(s);
        if (s->st.active > 0) break;
        if (s->closed && list_empty(&s->queue)) {
            pthread_mutex_unlock(&s->mu);
            return t->n_dropped > 0 ? SRV_SCHED_EMPTY : SRV_SCHED_DONE;
        }
        /* Dropped nodes go back to the caller at once rather than waiting
         * for the next request to arrive. */
        if (!wait || t->n_dropped > 0) {
            pthread_mutex_unlock(&s->mu);
            return SRV_SCHED_EMPTY;
        }
        if (until)
            timed_wait(s, until);
        else
            pthread_cond_wait(&s->cv, &s->mu);
    }
    for (srv_qnode *n = s->active.next; n != &s->active && t->n_batch < t->cap; n = n->next)
        t->batch[t->n_batch++] = n;
    pthread_mutex_unlock(&s->mu);
    return t->n_batch;
}
