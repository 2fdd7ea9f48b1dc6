/*
 * loop.c - the event-loop thread: libuv drives libmicrohttpd (external
 * polling on MHD's epoll fd plus a timer for MHD's own timeouts), signals
 * start the drain (SIGTERM, SIGINT) or reload the models (SIGHUP), workers
 * and loaders wake the loop through one uv_async, and a tick handles
 * deadlines, gone clients, keep-alives, unloaded models and the end of the
 * drain.
 */
#include <signal.h>
#include <stdlib.h>

#include "server/log.h"
#include "server/server.h"

/* How often the tick runs: the granularity of deadlines and of noticing a
 * client that left while its request was suspended. */
#define TICK_MS 100
/* After the drain timeout cancels everything, how long connections may
 * take to deliver their last bytes before the loop stops regardless. */
#define FORCED_GRACE_NS 2000000000LL

static void on_mhd_timer(uv_timer_t *t);

static void kick_one(srv_listener *l)
{
    if (!l->mhd) return;
    MHD_run(l->mhd);
    MHD_UNSIGNED_LONG_LONG to;
    /* MHD_NO: no timeout pending; the epoll fd alone will wake us. */
    if (MHD_get_timeout(l->mhd, &to) == MHD_YES)
        uv_timer_start(&l->mhd_timer, on_mhd_timer, (uint64_t)to, 0);
    else
        uv_timer_stop(&l->mhd_timer);
}

void srv__loop_kick(srv_server *s)
{
    for (int i = 0; i < s->n_listeners; i++)
        kick_one(&s->listeners[i]);
}

static void on_mhd_timer(uv_timer_t *t)
{
    kick_one(t->data);
}

static void on_mhd_poll(uv_poll_t *p, int status, int events)
{
    kick_one(p->data);
}

void srv__mail_post(srv_server *s, srv_job *j)
{
    pthread_mutex_lock(&s->mail_mu);
    if (!j->mailed) {
        j->mailed = 1;
        srv__job_ref(j);
        j->mail_next = s->mail_head;
        s->mail_head = j;
    }
    pthread_mutex_unlock(&s->mail_mu);
}

void srv__mail_wake(srv_server *s)
{
    /* Workers may end before the loop exists (a failed start) or after it
     * closed: nothing to wake then. */
    if (atomic_load(&s->wake_ready)) uv_async_send(&s->wake);
}

static void stop(srv_server *s, int code)
{
    if (s->stopping) return;
    s->stopping = 1;
    s->exit_code = code;
    uv_stop(&s->loop);
}

/* Loads that ended, models to free, readiness (model.c). A model of the
 * settings whose first load failed stops the daemon. */
static void check_models(srv_server *s)
{
    if (s->stopping) return; /* a failure was reported once already */
    if (srv__models_poll(s) < 0) stop(s, 1);
}

static void on_wake(uv_async_t *a)
{
    srv_server *s = a->data;
    pthread_mutex_lock(&s->mail_mu);
    srv_job *j = s->mail_head;
    s->mail_head = NULL;
    for (srv_job *k = j; k; k = k->mail_next)
        k->mailed = 0;
    pthread_mutex_unlock(&s->mail_mu);
    while (j) {
        srv_job *next = j->mail_next;
        if (j->conn) srv__conn_wake(j->conn);
        srv__job_unref(j);
        j = next;
    }
    check_models(s);
    srv__loop_kick(s);
}

void srv__begin_drain(srv_server *s)
{
    if (s->draining) return;
    s->draining = 1;
    s->ready = 0;
    int64_t timeout = s->cfg->drain_timeout_s * 1000000000LL;
    s->drain_deadline = srv__now_ns() + timeout;
    for (int i = 0; i < s->n_models; i++)
        srv__sched_close(&s->models[i]->sched);
    SRV_LOG(SRV_LOG_INFO, "draining: %d request%s in flight, up to %lld s", s->n_inflight,
            s->n_inflight == 1 ? "" : "s", (long long)s->cfg->drain_timeout_s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv_server *s = h->data;
    if (s->draining) {
        /* A second signal: the operator does not want to wait. */
        SRV_LOG(SRV_LOG_WARN, "signal %d again: stopping now", signum);
        srv__generate_cancel_all(s, SRV_END_SHUTDOWN);
        s->forced = 1;
        s->forced_at = srv__now_ns() - FORCED_GRACE_NS;
        return;
    }
    SRV_LOG(SRV_LOG_INFO, "signal %d: readiness off, finishing requests in flight", signum);
    srv__begin_drain(s);
}

/* SIGHUP: every model reloads from its path; requests in flight finish on
 * the weights they started with. */
static void on_hangup(uv_signal_t *h, int signum)
{
    srv_server *s = h->data;
    if (s->draining) return;
    SRV_LOG(SRV_LOG_INFO, "signal %d: reloading the models", signum);
    srv__models_reload_all(s);
}

static void on_tick(uv_timer_t *t)
{
    srv_server *s = t->data;
    int64_t now = srv__now_ns();
    check_models(s); /* unloaded models whose last connection just ended */
    srv__generate_tick(s, now);
    srv__listen_tick(s, now);
    if (s->draining) {
        if (!s->forced && now >= s->drain_deadline && s->n_inflight > 0) {
            SRV_LOG(SRV_LOG_WARN, "drain timeout: cancelling %d request%s", s->n_inflight,
                    s->n_inflight == 1 ? "" : "s");
            srv__generate_cancel_all(s, SRV_END_SHUTDOWN);
            s->forced = 1;
            s->forced_at = now;
        }
        if (s->n_inflight == 0) {
            SRV_LOG(SRV_LOG_INFO, "drained");
            stop(s, 0);
        } else if (s->forced && now - s->forced_at >= FORCED_GRACE_NS) {
            stop(s, 0);
        }
    }
    srv__loop_kick(s);
}

int srv__loop_init(srv_server *s)
{
    if (uv_loop_init(&s->loop) != 0) return -1;
    signal(SIGPIPE, SIG_IGN); /* a gone client must be an error code, not a death */
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    atomic_store(&s->wake_ready, 1);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_init(&s->loop, &s->sighup);
    s->sighup.data = s;
    uv_signal_start(&s->sighup, on_hangup, SIGHUP);
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    pthread_mutex_init(&s->mail_mu, NULL);
    return 0;
}

int srv__loop_attach_mhd(srv_server *s)
{
    for (int i = 0; i < s->n_listeners; i++) {
        srv_listener *l = &s->listeners[i];
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info) return -1;
        if (uv_poll_init(&s->loop, &l->mhd_poll, info->epoll_fd) != 0) return -1;
        l->mhd_poll.data = l;
        l->polling = 1;
        uv_poll_start(&l->mhd_poll, UV_READABLE, on_mhd_poll);
    }
    srv__loop_kick(s);
    return 0;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, close_cb);
}

int srv__loop_run(srv_server *s)
{
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return s->exit_code;
}

void srv__loop_drain_mail(srv_server *s)
{
    on_wake(&s->wake);
}

void srv__loop_close(srv_server *s)
{
    atomic_store(&s->wake_ready, 0);
    uv_walk(&s->loop, close_walk, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    pthread_mutex_destroy(&s->mail_mu);
}
