/*
 * sched.h - the queue and the batch of one model's worker: admission under a
 * cells-per-batch budget, iteration-level joining and leaving, cancellation.
 *
 * Knows nothing of HTTP, JSON or the engine: a request is an srv_qnode with a
 * cell count, embedded in whatever the caller schedules. Every function is
 * thread-safe (one mutex per scheduler); the worker calls srv__sched_next
 * once per iteration, any thread may submit or cancel.
 *
 * Admission is FIFO and stops at the first queued request that does not fit
 * the budget, so a large grid at the head is never overtaken: the active
 * requests drain until it fits (no starvation, at the price of a partly
 * empty batch meanwhile). A request larger than the whole budget runs alone.
 */
#ifndef HEPTAPOD_SRV_SCHED_H
#define HEPTAPOD_SRV_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/** Where a node is; changed only under the scheduler's lock. */
typedef enum srv_qstate {
    SRV_Q_NONE = 0, /* not (or no longer) held by the scheduler */
    SRV_Q_QUEUED,
    SRV_Q_ACTIVE
} srv_qstate;

/**
 * A schedulable request. The owner sets `cells` (>= 1) and zeroes the rest
 * before srv__sched_submit; links and state belong to the scheduler.
 * `cancelled` may be set by any thread (through srv__sched_cancel).
 */
typedef struct srv_qnode {
    struct srv_qnode *prev, *next; /* queue or active list */
    int cells;
    srv_qstate state;
    int64_t enqueued_ns; /* when it was submitted (the scheduler's clock) */
    atomic_int cancelled;
} srv_qnode;

/** Limits of one scheduler (settings, see server/main.c). */
typedef struct srv_sched_limits {
    int max_queue;         /* requests waiting, not counting active ones; >= 1 */
    int max_batch_cells;   /* cells in one forward pass; >= 1 */
    int max_batch_grids;   /* grids in one forward pass; 0: only the cell budget */
    int64_t batch_wait_ns; /* longest an idle worker waits for a batch to fill; 0: none */
} srv_sched_limits;

/** Counts at one instant, for gauges. */
typedef struct srv_sched_stats {
    int queued, active;
    int queued_cells, active_cells;
} srv_sched_stats;

typedef struct srv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_sched_limits lim;
    srv_qnode queue, active; /* circular lists around these sentinels */
    srv_sched_stats st;
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
    SRV_SCHED_FULL = -1,   /* the queue holds max_queue requests */
    SRV_SCHED_CLOSED = -2, /* closed for new work (draining) */
    SRV_SCHED_EMPTY = -3,  /* srv__sched_next without waiting: nothing to step */
    SRV_SCHED_DONE = -4    /* closed and nothing left: the worker may exit */
};

/** Initialises s with a copy of lim. Returns 0, or -1 if lim is invalid. */
int srv__sched_init(srv_sched *s, const srv_sched_limits *lim);
/** Releases the lock and condition. Nodes still held are not touched. */
void srv__sched_destroy(srv_sched *s);

/**
 * How many entries the arrays of an srv_turn need for these limits: the
 * largest possible active set.
 */
int srv__sched_turn_cap(const srv_sched_limits *lim);

/**
 * Queues n (n->cells set, n not held). Returns SRV_SCHED_OK (the scheduler
 * now holds n until it hands it back through a turn or srv__sched_cancel),
 * SRV_SCHED_FULL or SRV_SCHED_CLOSED (n untouched).
 */
int srv__sched_submit(srv_sched *s, srv_qnode *n);

/**
 * Cancels n wherever it is. A queued node is unlinked at once and 1 is
 * returned: the scheduler no longer holds it. An active node is only
 * flagged: the worker's next srv__sched_next drops it before the next
 * iteration, and 0 is returned. A node not held returns 0.
 */
int srv__sched_cancel(srv_sched *s, srv_qnode *n);

/**
 * The worker's turn. Takes cancelled nodes out of the active set (into
 * t->dropped: the caller releases them), admits queued nodes in FIFO order
 * while they fit the budget (stopping at the first that does not), then
 * lists the active set in t->batch. With `wait`, blocks until there is a
 * batch to step; an idle worker also waits up to batch_wait_ns from the
 * oldest queued node's arrival for the batch to fill. Returns the batch
 * size (>= 1), SRV_SCHED_EMPTY (only without `wait`: nothing to step now,
 * but dropped nodes may still be listed) or SRV_SCHED_DONE (closed, empty).
 */
int srv__sched_next(srv_sched *s, srv_turn *t, int wait);

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

/** Counts of queued and active nodes and their cells. */
srv_sched_stats srv__sched_stats(srv_sched *s);

/** CLOCK_MONOTONIC in nanoseconds. */
int64_t srv__now_ns(void);

#endif
