/*
 * sched.h - the queue and the batch of one model's worker: admission to the
 * queue by count, work, fair share and deadline; admission from the queue
 * to the batch round-robin between clients under a cells-per-batch budget;
 * iteration-level joining and leaving; cancellation; the measured rate.
 *
 * Knows nothing of HTTP, JSON or the engine: a request is an srv_qnode with
 * a cell count, an iteration count, a client key and a deadline, embedded in
 * whatever the caller schedules. Every function is thread-safe (one mutex
 * per scheduler); the worker calls srv__sched_next once per iteration and
 * srv__sched_observe once per forward pass, any thread may submit, cancel
 * or read the stats.
 *
 * Work. A request's work is cells x iterations (cell-iterations): what it
 * costs the worker. The worker reports each forward pass (cells stepped,
 * seconds); the rate is a moving average of the passes' cells per second in
 * which each pass weighs its share of a full batch (cells / max_batch_cells,
 * a full batch moving it by a quarter), so a stream of one-cell passes,
 * dominated by fixed costs, does not drag down the rate a full batch
 * achieves. Refusing work that would have finished costs more than
 * admitting work that will not (the deadline still ends it), so the
 * estimate leans high: the worker's first pass (one-time costs) is not
 * counted, and a pass slower than half the estimate counts as half (a
 * stall moves it down by an eighth at most; a lasting slowdown still
 * brings it down within a few passes). The rate counts as measured once
 * passes worth two full batches were counted; before that (cold start)
 * nothing is refused on rate and Retry-After is the caller's constant.
 *
 * Into the queue (srv__sched_submit), in this order:
 *  1. Deadline, alone: a request whose own work at the measured rate takes
 *     longer than the time left to its deadline can never finish:
 *     SRV_SCHED_TOO_SLOW (the caller answers 422, or 504 if no time is
 *     left at all).
 *  2. Bounds: while the queue stays within max_queue requests and
 *     max_queue_work cell-iterations, every request is admitted. Past
 *     either bound, a request is still admitted if its client has nothing
 *     queued yet, or if with it its client holds no more than its fair
 *     share of both bounds (the bound divided by the number of clients with
 *     queued requests, its own counted): a client with nothing queued
 *     always gets in, and the client that filled the queue is the one
 *     refused (SRV_SCHED_SHARE when other clients are queued too, else
 *     SRV_SCHED_FULL / SRV_SCHED_WORK). Admission past the bounds stops at
 *     twice each bound, a hard cap for everyone, so memory stays bounded by
 *     2 x max_queue requests. A lone client can use the whole queue. A
 *     request whose own work is above max_queue_work counts as
 *     max_queue_work against the bounds: it can wait alone in an empty
 *     queue, as a grid above the batch budget runs alone.
 *  3. Deadline, behind the queue: the work ahead of it (its client's queued
 *     work, plus from each other client as many requests as round-robin
 *     puts before it, at that client's average) and its own work, at the
 *     measured rate, must fit before its deadline, else SRV_SCHED_LATE (the
 *     caller answers 429). The work already in the batch is left out: the
 *     estimate errs towards admitting, and the deadline (504) still ends a
 *     request the batch delays more.
 * Each refusal fills an srv_admission with the figures for its message and
 * a Retry-After computed from the rate: the time to work off the queued
 * work (FULL, WORK), the client's own queued work at its round-robin share
 * of the rate (SHARE), or the work ahead beyond what the deadline allows
 * (LATE); at least 1 s, at most SRV_SCHED_RETRY_MAX.
 *
 * Into the batch (srv__sched_next): each client has its own FIFO queue, and
 * the clients with queued requests form a ring with a turn. Admission takes
 * the head of the client whose turn it is, then passes the turn on; a
 * client new to the ring joins just behind the turn, so it waits for one
 * request of each client already waiting and no longer: one client's
 * backlog cannot starve another's single request. No starvation of large
 * grids: when the request whose turn it is does not fit the cell or grid
 * budget, admission stops (nobody overtakes it) until the active requests
 * drain enough for it; it waits for at most one request of each other
 * client plus the batch's drain. A request larger than the whole budget
 * runs alone.
 */
#ifndef HEPTAPOD_SRV_SCHED_H
#define HEPTAPOD_SRV_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/** Longest Retry-After the scheduler computes, in seconds. */
#define SRV_SCHED_RETRY_MAX 3600

/** Where a node is; changed only under the scheduler's lock. */
typedef enum srv_qstate {
    SRV_Q_NONE = 0, /* not (or no longer) held by the scheduler */
    SRV_Q_QUEUED,
    SRV_Q_ACTIVE
} srv_qstate;

struct srv_qclient;

/**
 * A schedulable request. The owner sets `cells` (>= 1), `iterations`
 * (>= 1; 0 counts as 1), `client` (any key; requests with equal keys share
 * one FIFO and one fair share) and `deadline` (absolute, on the scheduler's
 * clock; 0: none), zeroes the rest, then calls srv__sched_submit; links,
 * state and work belong to the scheduler. `cancelled` may be set by any
 * thread (through srv__sched_cancel).
 */
typedef struct srv_qnode {
    struct srv_qnode *prev, *next;   /* arrival-order queue or active list */
    struct srv_qnode *cprev, *cnext; /* its client's FIFO while queued */
    struct srv_qclient *cl;          /* its client while queued */
    int cells;
    int iterations;
    uint64_t client;
    int64_t deadline;
    int64_t work;   /* cells x iterations, set at submission */
    int64_t charge; /* work counted against the bounds: min(work, max_queue_work) */
    srv_qstate state;
    int64_t enqueued_ns; /* when it was submitted (the scheduler's clock) */
    atomic_int cancelled;
} srv_qnode;

/** Limits of one scheduler (settings, see server/main.c). */
typedef struct srv_sched_limits {
    int max_queue;          /* requests waiting, not counting active ones; >= 1 */
    int64_t max_queue_work; /* cell-iterations waiting; 0: no bound on work */
    int max_batch_cells;    /* cells in one forward pass; >= 1 */
    int max_batch_grids;    /* grids in one forward pass; 0: only the cell budget */
    int64_t batch_wait_ns;  /* longest an idle worker waits for a batch to fill; 0: none */
} srv_sched_limits;

/** Counts at one instant, for gauges. */
typedef struct srv_sched_stats {
    int queued, active;
    int queued_cells, active_cells;
    int64_t queued_work; /* cell-iterations of the queued requests */
    int clients;         /* clients with queued requests */
    double rate;         /* measured cell-iterations per second; 0: not yet */
} srv_sched_stats;

/** The measured rate (see the header comment). Under the scheduler's lock. */
typedef struct srv_rate {
    double rate;   /* cell-iterations per second */
    double weight; /* full batches' worth of passes counted, up to the warm-up's */
    long passes;   /* passes seen, the first (not counted) included */
} srv_rate;

/** Clients hashed by key; a fixed table of chains. */
typedef struct srv_qclients {
    struct srv_qclient **bucket; /* [mask + 1] */
    uint64_t mask;
} srv_qclients;

typedef struct srv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_sched_limits lim;
    srv_qnode queue, active; /* circular lists around these sentinels */
    srv_qclients clients;
    struct srv_qclient *turn; /* the ring of clients with queued requests; NULL: none */
    int64_t queued_charge;
    srv_sched_stats st;
    srv_rate rate;
    int closed;
    int64_t (*clock)(void); /* monotonic ns; replaceable by tests */
} srv_sched;

/** One turn of the worker: what srv__sched_next hands back. */
typedef struct srv_turn {
    int cap;           /* capacity of both arrays: srv__sched_turn_cap() */
    srv_qnode **batch; /* [n_batch] the active set to step now, oldest first */
    int n_batch;
    int n_joined;        /* the last n_joined of batch were admitted this turn */
    srv_qnode **dropped; /* [n_dropped] cancelled nodes taken out of the batch */
    int n_dropped;
} srv_turn;

enum {
    SRV_SCHED_OK = 0,
    SRV_SCHED_FULL = -1,   /* max_queue requests are queued */
    SRV_SCHED_CLOSED = -2, /* closed for new work (draining) */
    SRV_SCHED_EMPTY = -3,  /* srv__sched_next without waiting: nothing to step */
    SRV_SCHED_DONE = -4,   /* closed and nothing left: the worker may exit */
    SRV_SCHED_WORK = -5,   /* max_queue_work cell-iterations are queued */
    SRV_SCHED_SHARE = -6,  /* over a bound, and the client holds its fair share */
    SRV_SCHED_TOO_SLOW = -7, /* its own work takes longer than its deadline */
    SRV_SCHED_LATE = -8,     /* it would fit alone, not behind the queued work */
    SRV_SCHED_NOMEM = -9     /* no memory for a new client's record */
};

/**
 * What srv__sched_submit saw, for the caller's message and Retry-After.
 * Times are in seconds; zeros where they do not apply.
 */
typedef struct srv_admission {
    int64_t work;        /* the request's cell-iterations */
    int queued;          /* requests queued before it */
    int64_t queued_work; /* cell-iterations queued before it */
    int clients;         /* clients with queued requests, its own counted */
    int client_queued;   /* requests its client had queued */
    int64_t client_work; /* cell-iterations its client had queued */
    double rate;         /* measured cell-iterations/s; 0: not measured yet */
    double need_s;       /* its own work at the rate */
    double wait_s;       /* the work ahead of it at the rate */
    double deadline_s;   /* time left to its deadline; 0: none */
    double retry_s;      /* the time to work off what stands in the way, at the rate */
    int retry_after_s;   /* retry_s rounded up into 1..SRV_SCHED_RETRY_MAX; 0: no
                          * measurement (use a constant) or a retry cannot help */
} srv_admission;

/**
 * Initialises s with a copy of lim. Returns 0, or -1 if lim is invalid or
 * without memory.
 */
int srv__sched_init(srv_sched *s, const srv_sched_limits *lim);
/** Releases the lock, condition and client table. Nodes still held are not
 * touched. */
void srv__sched_destroy(srv_sched *s);

/**
 * How many entries the arrays of an srv_turn need for these limits: the
 * largest possible active set.
 */
int srv__sched_turn_cap(const srv_sched_limits *lim);

/**
 * Queues n (n->cells, iterations, client, deadline set; n not held) by the
 * rules of the header comment. Returns SRV_SCHED_OK (the scheduler now holds
 * n until it hands it back through a turn or srv__sched_cancel), or
 * SRV_SCHED_CLOSED, SRV_SCHED_TOO_SLOW, SRV_SCHED_FULL, SRV_SCHED_WORK,
 * SRV_SCHED_SHARE, SRV_SCHED_LATE or SRV_SCHED_NOMEM (n not held). If a is
 * not NULL it receives the figures behind the decision.
 */
int srv__sched_submit(srv_sched *s, srv_qnode *n, srv_admission *a);

/**
 * Cancels n wherever it is. A queued node is unlinked at once and 1 is
 * returned: the scheduler no longer holds it. An active node is only
 * flagged: the worker's next srv__sched_next drops it before the next
 * iteration, and 0 is returned. A node not held returns 0.
 */
int srv__sched_cancel(srv_sched *s, srv_qnode *n);

/**
 * The worker's turn. Takes cancelled nodes out of the active set (into
 * t->dropped: the caller releases them), admits queued nodes round-robin
 * between clients while they fit the budget (stopping at the first that
 * does not), then lists the active set in t->batch. With `wait`, blocks
 * until there is a batch to step; an idle worker also waits up to
 * batch_wait_ns from the oldest queued node's arrival for the batch to fill.
 * Returns the batch size (>= 1), SRV_SCHED_EMPTY (only without `wait`:
 * nothing to step now, but dropped nodes may still be listed) or
 * SRV_SCHED_DONE (closed, empty).
 */
int srv__sched_next(srv_sched *s, srv_turn *t, int wait);

/**
 * The worker ran one forward pass over `cells` cells in `seconds`: updates
 * the measured rate. Passes with no cells or no measurable time are ignored.
 */
void srv__sched_observe(srv_sched *s, long cells, double seconds);

/**
 * Takes a finished node out of the active set (the worker calls this once
 * its generation is done); the scheduler no longer holds it.
 */
void srv__sched_retire(srv_sched *s, srv_qnode *n);

/**
 * Closes s for new submissions (they get SRV_SCHED_CLOSED); queued and
 * active nodes still run. Wakes the worker so it can return SRV_SCHED_DONE
 * once everything is finished.
 */
void srv__sched_close(srv_sched *s);

/** Counts of queued and active nodes, their cells and work, and the rate. */
srv_sched_stats srv__sched_stats(srv_sched *s);

/** CLOCK_MONOTONIC in nanoseconds. */
int64_t srv__now_ns(void);

#endif
