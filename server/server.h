/*
 * server.h - what the files of server/ share: the daemon, its models and
 * workers, the requests in flight, and the functions one file offers the
 * others. Nothing outside server/ includes this (the room's public entry
 * is cli_serve in cli/cli.h).
 *
 * Threads: the event-loop thread owns libmicrohttpd, every connection and
 * every srv_conn; each model's worker thread owns its workspace and steps
 * the eng_gen of its active jobs. They meet in three places only: the
 * scheduler (sched.h), a job's outbox (srv_job.mu) and the mailbox that
 * wakes the loop (srv_server.mail_mu + uv_async).
 */
#ifndef HEPTAPOD_SRV_SERVER_H
#define HEPTAPOD_SRV_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <microhttpd.h>
#include <uv.h>

#include "config/config.h"
#include "engine/eng.h"
#include "proto/proto.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model.h"
#include "server/sched.h"

#define SRV_VERSION "0.1.0"
/* Longest X-Request-Id kept from a client; longer or odd ones are replaced. */
#define SRV_REQUEST_ID_MAX 128

typedef struct srv_job srv_job;
typedef struct srv_listener srv_listener;
typedef struct srv_sock srv_sock;
typedef struct srv_client srv_client;
typedef struct srv_linger srv_linger;

/* ---- jobs (job.c) --------------------------------------------------------- */

/** How a job ended; SRV_END_NONE while it runs. The first ending wins. */
typedef enum srv_end {
    SRV_END_NONE = 0,
    SRV_END_DONE,      /* every iteration ran */
    SRV_END_CANCELLED, /* the client went away */
    SRV_END_DEADLINE,  /* its deadline passed */
    SRV_END_SHUTDOWN,  /* the drain timeout passed */
    SRV_END_FAILED     /* the engine refused the batch */
} srv_end;

/** One published grid of a streaming job: the tokens after `iteration`. */
typedef struct srv_frame {
    struct srv_frame *next;
    int iteration;
    int open; /* cells still holding the mask token */
    int32_t tokens[];
} srv_frame;

/** Per-request timestamps (srv__now_ns); 0 until they happen. */
typedef struct srv_times {
    int64_t arrival;  /* request headers seen */
    int64_t started;  /* joined a batch (its first iteration began) */
    int64_t first;    /* its first grid was ready */
    int64_t finished; /* its last iteration ended */
} srv_times;

/**
 * A generation request from admission to its response's end. Reference
 * counted: the connection holds one, the scheduler/worker one while it is
 * queued or active, the mailbox one while it is posted. Freed (with its
 * request, generation state and frames) when the last is released.
 */
struct srv_job {
    srv_qnode q; /* the scheduler's view; cells = height * width */
    atomic_int refs;
    srv_model *model;  /* one reference held */
    srv_weights *w;    /* the weights it runs on, one reference held */
    proto_request req; /* validated; read-only once submitted */
    eng_gen gen;       /* the worker's while the job runs; the loop reads it after DONE */
    int64_t deadline;  /* absolute srv__now_ns, 0: none */
    srv_conn *conn;    /* loop thread only; NULL once the connection ended */

    pthread_mutex_t mu; /* guards everything below */
    srv_frame *frames, *frames_tail;
    int iterations_run;
    srv_end end;
    srv_times t;
    int mailed; /* on the mailbox (guarded by srv_server.mail_mu instead) */
    srv_job *mail_next;
};

/** A job for a validated request (taken over: *req is zeroed) on model m
 * and its weights w (each gets a reference of the job's), holding one
 * reference. eng_gen_init failures return NULL with err set. */
srv_job *srv__job_create(srv_model *m, srv_weights *w, proto_request *req, int64_t arrival,
                         proto_error *err);
void srv__job_ref(srv_job *j);
void srv__job_unref(srv_job *j);
/** Sets the ending if none is set yet; returns 1 if this call set it. */
int srv__job_end(srv_job *j, srv_end why);
/** The ending now (locks). */
srv_end srv__job_state(srv_job *j);
/** Detaches the published frames (oldest first) for the loop to render. */
srv_frame *srv__job_take_frames(srv_job *j);
/** Worker side: copies the current grid into a new frame (streaming jobs),
 * unless the job already ended. Returns 0 or -1 without memory. */
int srv__job_publish(srv_job *j);
/** Copies the timestamps and iterations run (locks). */
void srv__job_times(srv_job *j, srv_times *t, int *iterations_run);
/** Ends j for `why`, takes it out of its scheduler and wakes its worker. */
void srv__job_cancel(srv_job *j, srv_end why);

/* ---- models and workers: model.h (model.c, worker.c) ------------------------ */

_Static_assert(SRV__ENDINGS == SRV_END_FAILED + 1, "model.h counts the endings of srv_end");

/* ---- the daemon ------------------------------------------------------------ */

/** Families of the registry that code outside worker.c updates. */
typedef struct srv_metrics {
    srv_registry *reg;
    srv_family *http_requests, *model_info, *model_state, *model_loads;
    srv_series *process[6];
    srv_family *queue_seconds, *first_iteration_seconds, *request_seconds, *forward_seconds,
        *batch_grids, *batch_cells, *iterations, *cells, *forward_passes, *queue_depth, *active,
        *queue_cells, *active_cells, *outcomes, *queue_work, *rate, *refusals;
    srv_series *ready_now, *draining_now;
    srv_family *connections, *connections_refused, *request_timeouts; /* listen.c */
    srv_series *log_lines[SRV_LOG_SINKS][2]; /* stats.c: [sink][written, dropped] */
} srv_metrics;

/** A model's default name: its file name without the directory and the
 * .safetensors extension (main.c). */
void srv__model_name_of(char *out, size_t len, const char *path);

/* ---- client.c --------------------------------------------------------------- */

/** The key a client address is counted by: IPv4 mapped into
 * ::ffff:0:0/96, an IPv6 address by its /64 (one client holds a whole /64),
 * zeroes for anything else. */
void srv__addr_key(const struct sockaddr *sa, unsigned char key[16]);
/** A seeded 64-bit hash of n bytes of one kind ('a' address, 'k' key, ...). */
uint64_t srv__key_hash(uint64_t seed, char kind, const void *p, size_t n);
/** Who a request is from, for fair sharing: the client_header's last
 * address if that setting names one and it is present, else the API key
 * where keys are required, else the peer address (srv__addr_key). */
uint64_t srv__client_key(srv_conn *c);

/* ---- listeners (listen.c) ----------------------------------------------------- */

/** Where the current request of a connection is (see listen.c). */
typedef enum srv_sock_phase {
    SRV_SOCK_HEADERS = 0, /* waiting for headers: bounded by header_timeout_ms */
    SRV_SOCK_BODY,        /* receiving the body: bounded by body_timeout_ms */
    SRV_SOCK_BUSY,        /* complete; being answered */
    SRV_SOCK_CLOSING      /* timed out; the socket is shut down */
} srv_sock_phase;

/** One accepted connection (libmicrohttpd's socket context). Loop thread. */
struct srv_sock {
    srv_listener *listener;
    struct MHD_Connection *mhd;
    int fd;
    srv_client *client; /* its address's count */
    srv_sock_phase phase;
    int64_t since;  /* start of the phase (srv__now_ns) */
    int requests;   /* requests finished on this connection */
    int line_seen;  /* the current request's line has arrived */
    int bad_target; /* ... and its target holds a control byte */
    srv_conn *conn; /* the current request, once the handler saw it */
    srv_sock *prev, *next;
};

/** A listening socket with its own libmicrohttpd daemon and budget. */
struct srv_listener {
    srv_server *srv;
    const char *name; /* "main" or "admin": metric label, logs */
    int admin;        /* serves /healthz, /readyz, /metrics only */
    int fd, port;
    uv_poll_t accept_poll;
    int accepting, paused; /* paused: out of descriptors until the next tick */
    struct MHD_Daemon *mhd;
    uv_poll_t mhd_poll;
    int polling; /* mhd_poll is initialised */
    uv_timer_t mhd_timer;
    int timer_init;
    int max_conns, per_client, n_conns;
    srv_sock *socks;
    srv_client **clients; /* per-address counts, hashed */
    uint64_t hash_seed;
    unsigned char pending_key[16];      /* address of the connection being added */
    char *refuse_limit, *refuse_client; /* canned 503 and 429 */
    srv_series *m_conns, *m_refused_limit, *m_refused_client, *m_timeout_headers, *m_timeout_body;
};

/** Registers the connection metrics and prepares the canned 408s. */
int srv__listen_stats_init(srv_server *s);
/** Binds host:port (port 0: any) and starts accepting into l->mhd, which the
 * caller starts right after. Returns 0, or -1 with a logged reason. */
int srv__listen_open(srv_server *s, srv_listener *l, const char *name, int admin, const char *host,
                     int port, int max_conns);
/** Stops accepting (the socket stays open until srv__listen_close). */
void srv__listen_stop_accepting(srv_listener *l);
/** Closes the socket and frees l's tables (after the loop closed). */
void srv__listen_close(srv_listener *l);
/** Frees what srv__listen_stats_init made. */
void srv__listen_free(srv_server *s);
/** libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback (cls: the listener). */
void srv__listen_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
/** libmicrohttpd's MHD_OPTION_URI_LOG_CALLBACK: the request line arrived. */
void *srv__listen_uri_seen(void *cls, const char *uri, struct MHD_Connection *mc);
/** The connection's srv_sock, or NULL if it is not tracked. */
srv_sock *srv__sock_of(struct MHD_Connection *mc);
/** Ends k's request from outside libmicrohttpd: writes text (a canned
 * response; NULL: none) straight to the socket and shuts it down. Only
 * before a response has started (headers or body phase). */
void srv__sock_abort(srv_sock *k, const char *text);
/** The handler saw a request's headers / its whole body / its end. */
void srv__sock_request_begins(srv_sock *k, srv_conn *c);
void srv__sock_request_complete(srv_sock *k);
void srv__sock_request_ended(srv_sock *k);
/** Enforces header_timeout_ms and body_timeout_ms (from the tick). */
void srv__listen_tick(srv_server *s, int64_t now);

struct srv_server {
    cfg_settings *cfg;
    srv_model **models; /* loop thread; [0] is the default model */
    int n_models, cap_models;
    srv_model *retired; /* unloaded, freed once nothing holds them */
    int model_admin;    /* the load/unload/reload endpoints answer */
    srv_metrics metrics;
    proto_limits limits;

    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint, sighup;
    uv_async_t wake;
    atomic_int wake_ready;     /* wake is initialised and not closed */
    srv_listener listeners[2]; /* main, then admin if admin_port >= 0 */
    int n_listeners;
    int reserve_fd;                       /* held for refusing at EMFILE */
    char *timeout_headers, *timeout_body; /* canned 408s */
    char *too_large;                      /* canned 413 */
    srv_linger *lingers;                  /* refused sockets read until closed */
    int n_lingers, max_lingers;
    int64_t emfile_logged; /* last "out of descriptors" warning */
    int access_fd;         /* -1: no access log */

    pthread_mutex_t mail_mu;
    srv_job *mail_head;

    int ready;    /* every model of the settings loaded, not draining */
    int draining; /* SIGTERM/SIGINT seen */
    int64_t drain_deadline;
    int forced; /* the drain timeout passed: jobs cancelled */
    int64_t forced_at;
    int exit_code;
    int stopping;    /* uv loop is being stopped */
    srv_conn *conns; /* live requests with a job, for the tick */
    int n_inflight;
    uint64_t id_seed, id_counter;
};

/* ---- loop.c ----------------------------------------------------------------- */

/** Sets up the loop, signals, the wake-up and the tick. Returns 0 or -1. */
int srv__loop_init(srv_server *s);
/** Watches each listener's libmicrohttpd epoll fd from the loop. Returns 0 or -1. */
int srv__loop_attach_mhd(srv_server *s);
/** Runs every libmicrohttpd daemon now and re-arms its timer (after
 * resuming connections, accepting, or a tick). */
void srv__loop_kick(srv_server *s);
/** Runs the loop until the daemon stops. Returns the exit code. */
int srv__loop_run(srv_server *s);
/** After the loop stopped: delivers and releases what is left on the mailbox. */
void srv__loop_drain_mail(srv_server *s);
/** Closes every handle and the loop (after srv__http_stop). */
void srv__loop_close(srv_server *s);
/** Worker side: queues j on the mailbox (once, taking a reference); the
 * loop sees it after the next srv__mail_wake. */
void srv__mail_post(srv_server *s, srv_job *j);
/** Wakes the loop without a job (a model changed state). */
void srv__mail_wake(srv_server *s);
/** Starts draining: readiness off, queues closed, deadline armed. */
void srv__begin_drain(srv_server *s);

/* ---- http.c ------------------------------------------------------------------- */

/** Opens the main listener (and the admin one if admin_port >= 0), each
 * with its libmicrohttpd daemon (external epoll, suspend/resume, no listen
 * socket of its own). Returns 0, or -1 with a logged reason. */
int srv__http_start(srv_server *s);
/** Resumes every suspended connection and stops libmicrohttpd. */
void srv__http_stop(srv_server *s);
/** Queues a JSON error response with the error's status (and Retry-After
 * for 429/503, WWW-Authenticate for 401, Allow for 405). */
enum MHD_Result srv__http_error(srv_conn *c, const proto_error *e);
/** Queues a body (malloc'd, taken; NULL: empty) with status and content
 * type, plus the request id (and Connection: close while draining). */
enum MHD_Result srv__http_reply(srv_conn *c, int status, char *body, size_t len,
                                const char *content_type);
/** The same with extra headers: NULL-terminated name, value pairs. */
enum MHD_Result srv__http_reply_headers(srv_conn *c, int status, char *body, size_t len,
                                        const char *content_type, const char *const *extra);

/** Queues the /v1/models/{name} body of m with status (503 if m has no
 * weights yet; model_http.c). */
enum MHD_Result srv__http_model(srv_conn *c, srv_model *m, int status);
/** Queues the rendered b (taken; 500 if it ran out of memory). */
enum MHD_Result srv__http_reply_buf(srv_conn *c, int status, proto_buf *b, const char *ctype);

/** Queues bytes of static storage (never freed) with status, type and
 * extra headers as srv__http_reply_headers. */
enum MHD_Result srv__http_reply_static(srv_conn *c, int status, const void *body, size_t len,
                                       const char *content_type, const char *const *extra);

/* ---- cors.c ------------------------------------------------------------------------ */

/** Checks a cors_allow_origin value at start. Returns 0, or -1 with a
 * message naming the setting and the bad entry in err. */
int srv__cors_check(const char *list, char *err, size_t len);
/** The Access-Control-Allow-Origin value for a request from `origin` (its
 * Origin header, or NULL): "*", origin itself, or NULL when CORS is off or
 * the origin is not allowed. The result may point into origin. */
const char *srv__cors_allow(const cfg_settings *cfg, const char *origin);
/** Adds the CORS headers of c (from c->cors_origin) to a response. */
void srv__cors_headers(const srv_conn *c, struct MHD_Response *r);
/** Answers a preflight of a route taking `methods` (e.g. "POST, OPTIONS"):
 * 204 with Allow and, for an allowed origin, the Access-Control-* headers. */
enum MHD_Result srv__cors_preflight(srv_conn *c, const char *methods);

/* ---- generate.c ----------------------------------------------------------------- */

/** POST /generate, called by the access handler for every call of the
 * request (headers, body chunks, end, and again after each resume). */
enum MHD_Result srv__generate(srv_conn *c, const char *upload, size_t *upload_size);
/** The connection ended (code from MHD): cancels unfinished work, fills the
 * request's part of the access-log record and releases the job. */
void srv__generate_completed(srv_conn *c, enum MHD_RequestTerminationCode toe, srv_access *a);
/** Loop side: the job's worker published something; resume if suspended. */
void srv__conn_wake(srv_conn *c);
/** The periodic tick: deadlines, gone clients, SSE keep-alives. */
void srv__generate_tick(srv_server *s, int64_t now);
/** Cancels every job in flight (drain timeout) and wakes its connection. */
void srv__generate_cancel_all(srv_server *s, srv_end why);

/* ---- stats.c ------------------------------------------------------------------------ */

/** Registers every metric family and the build info. Returns 0 or -1. */
int srv__stats_init(srv_server *s);
/** Resolves m's series (before its worker starts). */
void srv__stats_model(srv_server *s, srv_model *m);
/** Replaces m's model_info series by one for weights w (NULL: removes it). */
void srv__stats_model_info(srv_server *s, srv_model *m, srv_weights *w);
/** The forward histogram's series of a model at a precision (any thread). */
srv_series *srv__stats_forward(srv_server *s, const char *model, const char *precision);
/** Removes m's model_state and model_info series (m was unloaded). */
void srv__stats_model_gone(srv_server *s, srv_model *m);
/** Refreshes gauges read at scrape time (process, queues). */
void srv__stats_refresh(srv_server *s);
/** Counts one finished HTTP request. */
void srv__stats_request(srv_server *s, const char *endpoint, int status);

/* ---- the connection state of one HTTP request ------------------------------ */

typedef enum srv_route {
    SRV_ROUTE_NONE = 0,
    SRV_ROUTE_GENERATE,
    SRV_ROUTE_MODELS,
    SRV_ROUTE_HEALTHZ,
    SRV_ROUTE_READYZ,
    SRV_ROUTE_METRICS,
    SRV_ROUTE_MODEL,    /* GET /v1/models/{name} */
    SRV_ROUTE_LOAD,     /* POST /v1/models (model_http.c) */
    SRV_ROUTE_UNLOAD,   /* DELETE /v1/models/{name} */
    SRV_ROUTE_RELOAD,   /* POST /v1/models/{name}/reload */
    SRV_ROUTE_ASSET,    /* an embedded file (static.h) */
    SRV_ROUTE_PREFLIGHT /* a CORS preflight of any route */
} srv_route;

/** Phase of a POST /generate on its connection. */
typedef enum srv_phase {
    SRV_PH_BODY = 0, /* receiving the body */
    SRV_PH_WAIT,     /* JSON: suspended until the job ends */
    SRV_PH_STREAM,   /* SSE: the response is queued */
    SRV_PH_REPLIED   /* a response is queued */
} srv_phase;

struct srv_conn {
    srv_server *srv;
    srv_listener *listener;
    srv_sock *sock; /* NULL if untracked */
    struct MHD_Connection *mhd;
    srv_route route;
    const char *endpoint; /* metrics label */
    char method[16];
    char path[64];
    char request_id[SRV_REQUEST_ID_MAX + 1];
    int64_t arrival;
    int status;          /* queued status, for the log and metrics */
    const char *outcome; /* for the access log */
    const char *allow;   /* Allow header of a 405 */
    int draining;        /* answer with Connection: close */
    int close;           /* refused framing: answer with Connection: close */
    int aborted;         /* answered on the socket directly (srv__sock_abort) */
    int retry_after_s;   /* Retry-After of a 429/503 if > 0, else the setting */

    /* the playground, CORS and the access log */
    const struct srv_asset *asset; /* SRV_ROUTE_ASSET */
    const char *cors_origin;       /* Access-Control-Allow-Origin to send, NULL: none */
    char client[48];               /* peer address, for the access log */
    char user_agent[128];          /* User-Agent, printable ASCII, cut to fit */

    /* POST /generate */
    srv_phase phase;
    int headers_seen;
    char *body;
    size_t body_len, body_cap;
    int body_too_large;
    srv_model *model; /* one reference held (generate.c, model_http.c) */
    srv_job *job;     /* one reference held */
    int suspended;
    int keepalive_due;
    int64_t last_write; /* SSE: last bytes handed to MHD */
    proto_buf out;      /* SSE bytes rendered, not yet handed to MHD */
    size_t out_off;
    int final_rendered;    /* SSE: done or error event is in `out` */
    srv_conn *prev, *next; /* srv_server.conns while a job is attached */

    /* the model endpoints (model_http.c) */
    char model_name[128]; /* the {name} of the path */
    int load_done;        /* the load it waits for ended (set by model.c) */
    int load_ok;
    char load_error[512];
};

/* ---- model_http.c ------------------------------------------------------------------ */

/** GET /v1/models: every model that serves, with its weights' details. */
enum MHD_Result srv__models_list(srv_conn *c);
/** GET /v1/models/{name} (c->model_name): 404, 503 while it has no weights. */
enum MHD_Result srv__models_show(srv_conn *c);
/** The model endpoints (SRV_ROUTE_LOAD, _UNLOAD, _RELOAD), called by the
 * access handler for every call of the request as srv__generate is. */
enum MHD_Result srv__admin(srv_conn *c, const char *upload, size_t *upload_size);
/** The connection ended: stops waiting for a load. */
void srv__admin_completed(srv_conn *c);
/** Loop side: the load c waits for ended; resumes it to answer. */
void srv__admin_wake(srv_conn *c);

#endif
