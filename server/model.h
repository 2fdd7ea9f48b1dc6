/*
 * model.h - a served model and its life: the weights it serves now, the
 * loads that replace them, unloading, and the worker that runs its batches.
 *
 * A model's weights (srv_weights: one eng_model and the workspace that
 * runs it) are reference counted. The model holds one reference to its
 * current weights; each job holds one to the weights it was admitted on,
 * and the worker steps every job with its own job's weights. A reload loads
 * new weights on a loader thread (never the event loop), then swaps the
 * model's pointer: jobs already admitted, queued or running, finish on the
 * weights they started with, new ones get the new weights, and the old
 * weights are freed by whoever drops their last reference (the loader if
 * no job held them, else the thread releasing the last such job). While
 * both are in use the worker runs one forward pass per set of weights per
 * iteration. A load that fails changes nothing that serves: the old
 * weights stay, the model's state turns `failed` and its error is kept.
 *
 * Threads: the loop thread owns the model list, every model's path and
 * precision, the loader's start and join, and the HTTP request waiting on
 * a load. The loader and the loop meet under srv_model.mu (current
 * weights, state, error, generation) and through srv_model.loaded plus the
 * mailbox's wake-up. An unloaded model leaves the list at once (new
 * requests get 404) and is freed by the loop once its worker, its loader
 * and every job and connection holding it are gone (srv_model.refs).
 */
#ifndef HEPTAPOD_SRV_MODEL_H
#define HEPTAPOD_SRV_MODEL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/eng.h"
#include "server/metrics.h"
#include "server/sched.h"

typedef struct srv_server srv_server;
typedef struct srv_conn srv_conn;
typedef struct srv_model srv_model;

/** One loaded checkpoint and the workspace that runs it. */
typedef struct srv_weights {
    atomic_int refs;
    eng_model *model;
    eng_workspace *ws;           /* one batch of max_batch_cells; used by the worker only */
    long generation;             /* the model's successful loads when these were made */
    srv_series *forward_seconds; /* the forward histogram of the model at this precision */
} srv_weights;

void srv__weights_ref(srv_weights *w);
/** Drops one reference; the last frees the workspace (joining its threads)
 * and the model. NULL is a no-op. */
void srv__weights_unref(srv_weights *w);

/** State of a model's last load (the `state` of /v1/models and metrics). */
enum { SRV_MODEL_LOADING = 0, SRV_MODEL_READY, SRV_MODEL_FAILED, SRV_MODEL_STATES };

/** Why admission refused a request (the `reason` label of the refusals). */
typedef enum srv_refused {
    SRV_REFUSED_QUEUE_FULL = 0, /* max_queue requests queued */
    SRV_REFUSED_QUEUE_WORK,     /* max_queue_cell_iterations queued */
    SRV_REFUSED_CLIENT_SHARE,   /* its client holds its fair share */
    SRV_REFUSED_DEADLINE,       /* it cannot finish before its deadline */
    SRV_REFUSED_N
} srv_refused;

/* Endings of a job, as server.h's srv_end counts them. */
#define SRV__ENDINGS 6

/** Metric series one model's worker updates, resolved once at start. */
typedef struct srv_model_metrics {
    srv_series *queue_seconds, *first_iteration_seconds, *request_seconds;
    srv_series *batch_grids, *batch_cells;
    srv_series *iterations, *cells, *forward_passes;
    srv_series *queue_depth, *active, *queue_cells, *active_cells;
    srv_series *queue_work, *rate;       /* gauges: cell-iterations queued, per second */
    srv_series *outcome[SRV__ENDINGS];   /* generations by ending */
    srv_series *refused[SRV_REFUSED_N];  /* admission refusals by reason */
    srv_series *loads[2];                /* loads by result: [0] failure, [1] success */
    srv_series *state[SRV_MODEL_STATES]; /* loop thread: 1 for the current state */
    srv_series *info;                    /* loop thread: model_info of the current weights */
} srv_model_metrics;

/** A load in progress: what the loader reads and what it reports. */
typedef struct srv_load {
    char *path;    /* taken over by the model if the load succeeds */
    int precision; /* eng_precision or ENG_PRECISION_DEFAULT */
    int ok;
    char error[512];
    double seconds;
} srv_load;

struct srv_model {
    srv_server *srv;
    char name[128];  /* what requests name in "model" */
    char *path;      /* loop thread: the checkpoint the next reload reads */
    int precision;   /* loop thread: what the next reload asks for */
    int from_config; /* listed at start: readiness waits for it, a failed first load stops */
    atomic_int refs; /* the list, each job and each connection naming it */

    pthread_mutex_t mu; /* guards the four fields below */
    srv_weights *cur;   /* what new requests run on; NULL before the first load */
    int state;          /* SRV_MODEL_* of the last load */
    char error[512];    /* why the last load failed; "" after a success */
    long generation;    /* successful loads */

    /* Loop thread: the loader (one at a time). */
    pthread_t loader;
    int loading;       /* a loader was started and is not joined yet */
    atomic_int loaded; /* the loader's last act: its result is ready */
    srv_load load;
    srv_conn *waiter; /* the request answered when the load ends; NULL: none */
    long loads_ok, loads_failed;

    srv_sched sched;
    pthread_t thread;
    int thread_started;
    atomic_int worker_done; /* the worker returned */
    int unloaded;           /* loop thread: out of the list, waiting to be freed */
    srv_model *retired_next;
    srv_model_metrics m;
};

/**
 * A model named `name` serving path at precision (ENG_PRECISION_DEFAULT:
 * the checkpoint's): its scheduler, metric series and worker, not loaded
 * yet. Appended to the server's list. Returns it, or NULL with a message.
 */
srv_model *srv__model_create(srv_server *s, const char *name, const char *path, int precision,
                             int from_config, char *err, size_t errlen);
/** The model named name in the list, or NULL. */
srv_model *srv__model_find(srv_server *s, const char *name);
void srv__model_ref(srv_model *m);
void srv__model_unref(srv_model *m);

/** The weights new requests run on, with a reference the caller drops;
 * NULL before the first load succeeded. Any thread. */
srv_weights *srv__model_weights(srv_model *m);
/** A consistent copy of the state, generation and error (error may be NULL). */
int srv__model_state(srv_model *m, long *generation, char *error, size_t len);

/**
 * Loop thread: starts loading path (NULL: the model's) at precision
 * (eng_precision, or ENG_PRECISION_DEFAULT: the checkpoint's; m->precision
 * keeps the model's setting) on a loader thread; waiter (may be NULL) is
 * resumed when it ends. If the load succeeds, path and precision become
 * the model's. Returns 0, 1 if a load of m is already running, or -1 if no
 * thread could start.
 */
int srv__model_load_start(srv_model *m, const char *path, int precision, srv_conn *waiter);
/**
 * Loop thread: joins loaders that finished, records their results
 * (metrics, path, log) and resumes their waiters; frees unloaded models
 * that nothing holds any more; recomputes readiness. A first load that
 * failed for a model of the settings stops the daemon (returns -1).
 */
int srv__models_poll(srv_server *s);
/** Loop thread: takes m out of the list and closes its queue; what it
 * holds finishes and it is freed later (srv__models_poll). */
void srv__model_unload(srv_model *m);
/** Loop thread: reloads every model from its path (SIGHUP). */
void srv__models_reload_all(srv_server *s);
/** At shutdown, after the loop stopped and every job was cancelled: waits
 * for the loaders (answering their waiters) and the workers. */
void srv__models_stop(srv_server *s);
/** Frees every model, listed or unloaded (after the connections ended). */
void srv__models_close(srv_server *s);

/** Starts m's worker: it serves m->sched until it is closed and empty.
 * Returns 0 or -1. */
int srv__worker_start(srv_model *m);

#endif
