/*
 * sched.c - queue, admission and batch membership of one model's worker.
 *
 * Under one mutex: two circular doubly linked lists, the queue (arrival
 * order, for the batch-fill wait and the gauges) and the active set
 * (admission order); each queued node is also on its client's FIFO; the
 * clients with queued requests sit in a hash table (by key) and on a ring
 * (the round-robin turn). A client's record lives exactly as long as it has
 * queued requests, so records are bounded by the queue's hard cap. The
 * worker takes one turn per refinement iteration, so requests join and
 * leave only between iterations. The rules are in sched.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/sched.h"

/* Weight of a full batch in the rate's moving average. */
#define RATE_ALPHA 0.25
/* Full batches' worth of passes before the rate counts as measured. */
#define RATE_WARM 2.0
/* Largest settings the sums below are sized for (config/config.h's maxima):
 * 2 x max_queue requests, each at most 2^24 cells x 2^17 iterations, and
 * the fair-share products, all stay far inside int64_t. */
#define MAX_QUEUE_LIMIT 1000000
#define MAX_WORK_LIMIT ((int64_t)1 << 40)

/** A client with queued requests. */
typedef struct srv_qclient {
    uint64_t key;
    struct srv_qclient *hnext;         /* hash chain */
    struct srv_qclient *rprev, *rnext; /* the ring */
    srv_qnode *head, *tail;            /* its FIFO (cnext/cprev) */
    int queued;
    int64_t work, charge;
} srv_qclient;

int64_t srv__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- lists ------------------------------------------------------------------ */

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

/* ---- clients: table and ring -------------------------------------------------- */

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static srv_qclient **bucket_of(srv_sched *s, uint64_t key)
{
    return &s->clients.bucket[mix(key) & s->clients.mask];
}

static srv_qclient *client_find(srv_sched *s, uint64_t key)
{
    srv_qclient *c = *bucket_of(s, key);
    while (c && c->key != key)
        c = c->hnext;
    return c;
}

/* A new client joins the table and the ring just behind the turn: it
 * waits for one request of each client already waiting. */
static srv_qclient *client_add(srv_sched *s, uint64_t key)
{
    srv_qclient *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->key = key;
    srv_qclient **b = bucket_of(s, key);
    c->hnext = *b;
    *b = c;
    if (!s->turn) {
        c->rprev = c->rnext = c;
        s->turn = c;
    } else {
        c->rnext = s->turn;
        c->rprev = s->turn->rprev;
        c->rprev->rnext = c;
        s->turn->rprev = c;
    }
    s->st.clients++;
    return c;
}

/* A client whose last queued request left: out of the ring (passing the
 * turn on if it was its) and the table. */
static void client_remove(srv_sched *s, srv_qclient *c)
{
    if (c->rnext == c) {
        s->turn = NULL;
    } else {
        if (s->turn == c) s->turn = c->rnext;
        c->rprev->rnext = c->rnext;
        c->rnext->rprev = c->rprev;
    }
    srv_qclient **p = bucket_of(s, c->key);
    while (*p != c)
        p = &(*p)->hnext;
    *p = c->hnext;
    s->st.clients--;
    free(c);
}

/* ---- queue membership --------------------------------------------------------- */

static void enqueue(srv_sched *s, srv_qclient *c, srv_qnode *n)
{
    list_push(&s->queue, n);
    n->cl = c;
    n->cnext = NULL;
    n->cprev = c->tail;
    if (c->tail)
        c->tail->cnext = n;
    else
        c->head = n;
    c->tail = n;
    c->queued++;
    c->work += n->work;
    c->charge += n->charge;
    n->state = SRV_Q_QUEUED;
    s->st.queued++;
    s->st.queued_cells += n->cells;
    s->st.queued_work += n->work;
    s->queued_charge += n->charge;
}

/* Takes a queued node off the queue and its client's FIFO (state is the
 * caller's to set). */
static void dequeue(srv_sched *s, srv_qnode *n)
{
    srv_qclient *c = n->cl;
    list_unlink(n);
    if (n->cprev)
        n->cprev->cnext = n->cnext;
    else
        c->head = n->cnext;
    if (n->cnext)
        n->cnext->cprev = n->cprev;
    else
        c->tail = n->cprev;
    n->cprev = n->cnext = NULL;
    n->cl = NULL;
    c->queued--;
    c->work -= n->work;
    c->charge -= n->charge;
    s->st.queued--;
    s->st.queued_cells -= n->cells;
    s->st.queued_work -= n->work;
    s->queued_charge -= n->charge;
    if (c->queued == 0) client_remove(s, c);
}

/* ---- life cycle ---------------------------------------------------------------- */

int srv__sched_init(srv_sched *s, const srv_sched_limits *lim)
{
    if (lim->max_queue < 1 || lim->max_queue > MAX_QUEUE_LIMIT || lim->max_queue_work < 0 ||
        lim->max_queue_work > MAX_WORK_LIMIT || lim->max_batch_cells < 1 ||
        lim->max_batch_grids < 0 || lim->batch_wait_ns < 0)
        return -1;
    memset(s, 0, sizeof *s);
    /* About one chain per client the hard cap allows, within reason. */
    uint64_t nb = 16;
    while (nb < 2 * (uint64_t)lim->max_queue && nb < 65536)
        nb *= 2;
    s->clients.bucket = calloc(nb, sizeof *s->clients.bucket);
    if (!s->clients.bucket) return -1;
    s->clients.mask = nb - 1;
    s->lim = *lim;
    list_init(&s->queue);
    list_init(&s->active);
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
    for (uint64_t i = 0; s->clients.bucket && i <= s->clients.mask; i++)
        for (srv_qclient *c = s->clients.bucket[i], *next; c; c = next) {
            next = c->hnext;
            free(c);
        }
    free(s->clients.bucket);
    s->clients.bucket = NULL;
    s->turn = NULL;
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

/* ---- admission to the queue ------------------------------------------------------ */

/* The measured rate, or 0 while warming up. Under the lock. */
static double rate_now(const srv_sched *s)
{
    return s->rate.weight >= RATE_WARM ? s->rate.rate : 0;
}

static int retry_seconds(double s)
{
    if (!(s < SRV_SCHED_RETRY_MAX)) return SRV_SCHED_RETRY_MAX; /* also NaN */
    int r = (int)ceil(s);
    return r < 1 ? 1 : r;
}

/* The bounds on count and work, with the fair share over them. c is the
 * client's record (NULL: nothing queued), clients the number of clients
 * with queued requests, its own counted. Under the lock. */
static int check_bounds(const srv_sched *s, const srv_qclient *c, int64_t charge, int clients)
{
    int64_t maxq = s->lim.max_queue, maxw = s->lim.max_queue_work;
    int over_count = s->st.queued >= maxq;
    int over_work = maxw > 0 && s->queued_charge + charge > maxw;
    if (!over_count && !over_work) return SRV_SCHED_OK;
    /* A client's first request is within its share by definition. */
    int under_share = !c || ((c->queued + 1) * (int64_t)clients <= maxq &&
                             (maxw == 0 || (c->charge + charge) * clients <= maxw));
    int cap_count = s->st.queued >= 2 * maxq;
    int cap_work = maxw > 0 && s->queued_charge + charge > 2 * maxw;
    if (under_share && !cap_count && !cap_work) return SRV_SCHED_OK;
    if (cap_count || cap_work) return cap_count ? SRV_SCHED_FULL : SRV_SCHED_WORK;
    if (clients > 1) return SRV_SCHED_SHARE;
    return over_count ? SRV_SCHED_FULL : SRV_SCHED_WORK;
}

/* Work round-robin admits before a new request of client c: all of c's
 * queued work, and from each other client as many requests as c will have
 * queued once this one is in (at that client's average). Under the lock. */
static double work_ahead(const srv_sched *s, const srv_qclient *c)
{
    int64_t k = (c ? c->queued : 0) + 1;
    double ahead = c ? (double)c->work : 0;
    const srv_qclient *o = s->turn;
    if (!o) return ahead;
    do {
        if (o != c) ahead += o->queued <= k ? (double)o->work : (double)o->work * k / o->queued;
        o = o->rnext;
    } while (o != s->turn);
    return ahead;
}

/* The seconds a refusal's Retry-After stands for: the time the measured
 * rate needs to work off what stands in the way (0: not measured, or a
 * retry cannot help). */
static double retry_for(int rc, const srv_admission *a)
{
    if (a->rate <= 0) return 0;
    switch (rc) {
    case SRV_SCHED_FULL:
    case SRV_SCHED_WORK:
        return (double)a->queued_work / a->rate;
    case SRV_SCHED_SHARE:
        return (double)a->client_work * a->clients / a->rate;
    case SRV_SCHED_LATE:
        return a->wait_s + a->need_s - a->deadline_s;
    default:
        return 0;
    }
}

/* The decision, without side effects. Under the lock. */
static int decide(srv_sched *s, const srv_qnode *n, const srv_qclient *c, srv_admission *a)
{
    a->work = n->work;
    a->queued = s->st.queued;
    a->queued_work = s->st.queued_work;
    a->clients = s->st.clients + (c ? 0 : 1);
    a->client_queued = c ? c->queued : 0;
    a->client_work = c ? c->work : 0;
    a->rate = rate_now(s);
    int timed = n->deadline > 0 && a->rate > 0;
    if (n->deadline > 0) {
        int64_t left = n->deadline - s->clock();
        a->deadline_s = left > 0 ? (double)left / 1e9 : 0;
    }
    if (timed) {
        a->need_s = (double)n->work / a->rate;
        if (a->need_s > a->deadline_s) return SRV_SCHED_TOO_SLOW;
    }
    int rc = check_bounds(s, c, n->charge, a->clients);
    if (rc != SRV_SCHED_OK) return rc;
    if (timed) {
        a->wait_s = work_ahead(s, c) / a->rate;
        if (a->wait_s + a->need_s > a->deadline_s) return SRV_SCHED_LATE;
    }
    return SRV_SCHED_OK;
}

int srv__sched_submit(srv_sched *s, srv_qnode *n, srv_admission *a)
{
    srv_admission scratch;
    if (!a) a = &scratch;
    memset(a, 0, sizeof *a);
    int iterations = n->iterations > 0 ? n->iterations : 1;
    n->work = (int64_t)n->cells * iterations;
    int64_t maxw = s->lim.max_queue_work;
    n->charge = maxw > 0 && n->work > maxw ? maxw : n->work;
    pthread_mutex_lock(&s->mu);
    srv_qclient *c = client_find(s, n->client);
    int rc = s->closed ? SRV_SCHED_CLOSED : decide(s, n, c, a);
    if (rc == SRV_SCHED_OK && !c && !(c = client_add(s, n->client))) rc = SRV_SCHED_NOMEM;
    if (rc == SRV_SCHED_OK) {
        atomic_store(&n->cancelled, 0);
        n->enqueued_ns = s->clock();
        enqueue(s, c, n);
        pthread_cond_signal(&s->cv);
    } else {
        a->retry_s = retry_for(rc, a);
        a->retry_after_s = a->retry_s > 0 ? retry_seconds(a->retry_s) : 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- the worker's side ------------------------------------------------------------ */

int srv__sched_cancel(srv_sched *s, srv_qnode *n)
{
    int removed = 0;
    pthread_mutex_lock(&s->mu);
    if (n->state == SRV_Q_QUEUED) {
        dequeue(s, n);
        n->state = SRV_Q_NONE;
        removed = 1;
    } else if (n->state == SRV_Q_ACTIVE) {
        atomic_store(&n->cancelled, 1);
        /* An idle worker may be waiting for a batch to fill: let it drop n. */
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return removed;
}

static void deactivate(srv_sched *s, srv_qnode *n)
{
    list_unlink(n);
    n->state = SRV_Q_NONE;
    s->st.active--;
    s->st.active_cells -= n->cells;
}

void srv__sched_retire(srv_sched *s, srv_qnode *n)
{
    pthread_mutex_lock(&s->mu);
    if (n->state == SRV_Q_ACTIVE) deactivate(s, n);
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
    st.rate = rate_now(s);
    pthread_mutex_unlock(&s->mu);
    return st;
}

void srv__sched_observe(srv_sched *s, long cells, double seconds)
{
    if (cells <= 0 || !(seconds > 0)) return;
    double w = (double)cells / s->lim.max_batch_cells;
    if (w > 1) w = 1;
    double x = (double)cells / seconds;
    pthread_mutex_lock(&s->mu);
    srv_rate *r = &s->rate;
    if (r->passes++ > 0) { /* the worker's first pass pays one-time costs */
        if (r->weight > 0 && x < r->rate / 2) x = r->rate / 2; /* a stall, not a trend */
        /* Warming up: the weighted mean of the passes so far; then a moving
         * average in which a full batch counts RATE_ALPHA. */
        double alpha = r->weight < RATE_WARM ? w / (r->weight + w) : RATE_ALPHA * w;
        r->rate += alpha * (x - r->rate);
        r->weight = r->weight + w < RATE_WARM ? r->weight + w : RATE_WARM;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Moves cancelled active nodes into t->dropped. Under the lock. */
static void drop_cancelled(srv_sched *s, srv_turn *t)
{
    srv_qnode *n = s->active.next;
    while (n != &s->active) {
        srv_qnode *next = n->next;
        if (atomic_load(&n->cancelled) && t->n_dropped < t->cap) {
            deactivate(s, n);
            t->dropped[t->n_dropped++] = n;
        }
        n = next;
    }
}

/* Whether n may join the active set now. */
static int fits(const srv_sched *s, const srv_qnode *n)
{
    if (s->st.active == 0) return 1; /* anything runs alone, even a grid above the budget */
    if (s->lim.max_batch_grids > 0 && s->st.active >= s->lim.max_batch_grids) return 0;
    return s->st.active_cells + n->cells <= s->lim.max_batch_cells;
}

/* Round-robin admission: the head of the client whose turn it is joins,
 * and the turn passes on; the first that does not fit stops admission.
 * Returns the number admitted. Under the lock. */
static int admit(srv_sched *s)
{
    int joined = 0;
    while (s->turn) {
        srv_qclient *c = s->turn;
        srv_qnode *n = c->head;
        if (!fits(s, n)) break;
        srv_qclient *next = c->rnext;
        int last = c->queued == 1;
        dequeue(s, n); /* a client left empty passes the turn as it goes */
        if (!last) s->turn = next;
        n->state = SRV_Q_ACTIVE;
        list_push(&s->active, n);
        s->st.active++;
        s->st.active_cells += n->cells;
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
