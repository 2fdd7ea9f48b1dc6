/*
 * listen.c - the daemon's listening sockets and what happens to a connection
 * before and around libmicrohttpd.
 *
 * The daemon accepts connections itself and hands each one to its
 * listener's libmicrohttpd daemon (MHD_USE_NO_LISTEN_SOCKET +
 * MHD_add_connection). Owning accept is what lets it refuse at once: a
 * connection above max_connections gets a canned 503, one above its address's
 * max_connections_per_client a canned 429, and both are closed in the same
 * turn, instead of waiting in the kernel's backlog where a load balancer
 * cannot tell a full replica from a dead one.
 *
 * Every accepted connection has an srv_sock, created and destroyed by
 * libmicrohttpd's connection notifications, that tracks which phase its
 * current request is in:
 *
 *   HEADERS  waiting for a request's headers: since the accept, or since the
 *            previous response ended (keep-alive). Bounded by header_timeout_ms.
 *   BODY     headers in, body arriving. Bounded by body_timeout_ms.
 *   BUSY     the request is complete; the daemon is answering it (no bound
 *            here: deadlines and the idle timeout cover that part).
 *
 * libmicrohttpd's own timeout restarts on every byte, so a client sending a
 * byte every few seconds would hold a slot for ever; these bounds are totals.
 * The tick enforces them: a connection past its bound gets a 408 written
 * straight to its socket (no response has started in those phases, so the
 * bytes cannot interleave with libmicrohttpd's) and the socket is shut down,
 * which libmicrohttpd sees as the peer leaving. An idle keep-alive connection
 * that has not started a new request is closed without a 408.
 *
 * Descriptor exhaustion: max_connections is sized below RLIMIT_NOFILE, and
 * one descriptor is held in reserve so that even at EMFILE a connection can
 * be accepted, told 503 and closed rather than left to spin the loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/log.h"
#include "server/server.h"

/* Connections accepted per readiness event, so that one busy listener
 * cannot hold the loop for long. */
#define ACCEPT_BATCH 64
/* Buckets of the per-address table; chains stay short up to hundreds of
 * thousands of connections. */
#define CLIENT_BUCKETS 4096

struct srv_client {
    unsigned char addr[16]; /* an IPv6 /64, or IPv4 mapped into ::ffff:0:0/96 */
    int count;
    srv_client *next;
};

/* ---- per-address counts ------------------------------------------------------ */

/* The bucket of an address key (srv__addr_key): seeded, so that a client
 * choosing its addresses (IPv6) cannot aim them all at one bucket. */
static size_t addr_hash(const srv_listener *l, const unsigned char key[16])
{
    return (size_t)(srv__key_hash(l->hash_seed, 'c', key, 16) % CLIENT_BUCKETS);
}

static srv_client *client_find(const srv_listener *l, const unsigned char key[16])
{
    for (srv_client *c = l->clients[addr_hash(l, key)]; c; c = c->next)
        if (!memcmp(c->addr, key, 16)) return c;
    return NULL;
}

static srv_client *client_acquire(srv_listener *l, const unsigned char key[16])
{
    srv_client *c = client_find(l, key);
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return NULL;
        memcpy(c->addr, key, 16);
        size_t b = addr_hash(l, key);
        c->next = l->clients[b];
        l->clients[b] = c;
    }
    c->count++;
    return c;
}

static void client_release(srv_listener *l, srv_client *c)
{
    if (!c || --c->count > 0) return;
    srv_client **p = &l->clients[addr_hash(l, c->addr)];
    while (*p && *p != c)
        p = &(*p)->next;
    if (*p) *p = c->next;
    free(c);
}

/* ---- canned answers --------------------------------------------------------- */

/* A complete HTTP/1.1 response with a JSON error body, closing the
 * connection. Returns a malloc'd string or NULL. */
static char *canned(proto_err err, const char *msg, int64_t retry_after)
{
    proto_error e;
    proto_error_set(&e, err, NULL, "%s", msg);
    proto_buf body, out;
    proto_buf_init(&body);
    proto_buf_init(&out);
    proto_render_error(&body, &e);
    int status = proto_err_status(err);
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    proto_buf_printf(&out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n",
                     status, reason, body.len);
    if (retry_after > 0) proto_buf_printf(&out, "Retry-After: %lld\r\n", (long long)retry_after);
    proto_buf_puts(&out, "\r\n");
    proto_buf_append(&out, body.data ? body.data : "", body.len);
    proto_buf_free(&body);
    if (out.oom) {
        proto_buf_free(&out);
        return NULL;
    }
    return proto_buf_steal(&out, NULL);
}

/* ---- lingering closes ------------------------------------------------------- */

/*
 * A refused client may still be sending its request when the refusal is
 * written. Closing the socket then would reset the connection, and a reset
 * can destroy the answer before the client reads it. So the write side is
 * shut, and what the client still sends is read away until it closes its
 * side or LINGER_NS pass; at most LINGER_MAX sockets linger at once, fewer
 * if the descriptor limit leaves less room beside max_connections (beyond
 * that they are closed at once: under a flood, the descriptors matter more).
 */
#define LINGER_NS 2000000000LL
#define LINGER_MAX 256

struct srv_linger {
    uv_poll_t poll;
    srv_server *srv;
    int fd;
    int64_t until;
    srv_linger *prev, *next;
};

static void linger_unlink(srv_server *s, srv_linger *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        s->lingers = g->next;
    if (g->next) g->next->prev = g->prev;
    s->n_lingers--;
}

static void linger_closed(uv_handle_t *h)
{
    srv_linger *g = h->data;
    close(g->fd);
    free(g);
}

static void linger_end(srv_server *s, srv_linger *g)
{
    linger_unlink(s, g);
    uv_close((uv_handle_t *)&g->poll, linger_closed);
}

/* Writes a canned answer (NULL: nothing) without blocking: it is small and
 * the socket's buffer is empty, so a short or failed write only means the
 * peer is gone. */
static void send_now(int fd, const char *text)
{
    if (!text) return;
    ssize_t w = send(fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
}

/* Reads away what arrived; 1 once the peer closed or failed. */
static int drain_input(int fd)
{
    char sink[4096];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0) return 1;
        if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
    return 0;
}

static void on_linger(uv_poll_t *p, int status, int events)
{
    srv_linger *g = p->data;
    if (status < 0 || drain_input(g->fd)) linger_end(g->srv, g);
}

/* Writes text (best effort, never blocking), shuts the write side and
 * lingers if `linger` and there is room, else closes at once. */
static void answer_and_close(srv_server *s, int fd, const char *text, int linger)
{
    drain_input(fd);
    send_now(fd, text);
    shutdown(fd, SHUT_WR);
    srv_linger *g = linger && s->n_lingers < s->max_lingers ? calloc(1, sizeof *g) : NULL;
    if (!g || uv_poll_init(&s->loop, &g->poll, fd) != 0) {
        free(g);
        close(fd);
        return;
    }
    g->fd = fd;
    g->srv = s;
    g->poll.data = g;
    g->until = srv__now_ns() + LINGER_NS;
    g->next = s->lingers;
    if (s->lingers) s->lingers->prev = g;
    s->lingers = g;
    s->n_lingers++;
    uv_poll_start(&g->poll, UV_READABLE | UV_DISCONNECT, on_linger);
}

/* Lingering sockets hold descriptors beside the connections: half of what
 * the descriptor limit leaves beyond both listeners' budgets and a few for
 * everything else, at most LINGER_MAX. */
static int linger_budget(const cfg_settings *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    int64_t n = rl.rlim_cur == RLIM_INFINITY ? (int64_t)1 << 30 : (int64_t)rl.rlim_cur;
    int64_t used = cfg->max_connections + (cfg->admin_port >= 0 ? cfg->admin_max_connections : 0);
    int64_t spare = (n - used - 32) / 2;
    return spare < 0 ? 0 : spare > LINGER_MAX ? LINGER_MAX : (int)spare;
}

static void linger_tick(srv_server *s, int64_t now)
{
    srv_linger *g = s->lingers;
    while (g) {
        srv_linger *next = g->next;
        if (now >= g->until) linger_end(s, g);
        g = next;
    }
}

/* ---- accept ------------------------------------------------------------------ */

static void refuse(srv_listener *l, int fd, int per_client, int linger)
{
    srv__metric_add(per_client ? l->m_refused_client : l->m_refused_limit, 1);
    answer_and_close(l->srv, fd, per_client ? l->refuse_client : l->refuse_limit, linger);
}

static void admit(srv_listener *l, int fd, const struct sockaddr *sa, socklen_t len)
{
    if (l->n_conns >= l->max_conns) {
        refuse(l, fd, 0, 1);
        return;
    }
    unsigned char key[16];
    srv__addr_key(sa, key);
    const srv_client *c = client_find(l, key);
    if (l->per_client > 0 && c && c->count >= l->per_client) {
        refuse(l, fd, 1, 1);
        return;
    }
    /* srv__listen_notify (STARTED) runs inside MHD_add_connection and takes
     * the address from here. On failure libmicrohttpd closed fd. */
    memcpy(l->pending_key, key, 16);
    if (MHD_add_connection(l->mhd, fd, sa, len) != MHD_YES)
        SRV_LOG(SRV_LOG_WARN, "%s listener: a connection could not be added: %s", l->name,
                strerror(errno));
}

/* At EMFILE the pending connection would keep the listener readable and
 * the loop spinning: free the reserve descriptor, take the connection,
 * refuse it (closing at once: its descriptor is the reserve's), and take
 * the reserve back. Without a reserve, accepting pauses until the tick. */
static int shed_one(srv_listener *l)
{
    srv_server *s = l->srv;
    if (s->reserve_fd < 0) return -1;
    close(s->reserve_fd);
    s->reserve_fd = -1;
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) refuse(l, fd, 0, 0);
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int64_t now = srv__now_ns();
    if (now - s->emfile_logged >= 1000000000LL) { /* once a second at most */
        s->emfile_logged = now;
        SRV_LOG(SRV_LOG_WARN, "%s listener: out of descriptors; refusing connections", l->name);
    }
    return fd >= 0 && s->reserve_fd >= 0 ? 0 : -1;
}

static void pause_accepting(srv_listener *l)
{
    if (!l->accepting) return;
    uv_poll_stop(&l->accept_poll);
    l->accepting = 0;
    l->paused = 1;
}

static void on_accept(uv_poll_t *p, int status, int events)
{
    srv_listener *l = p->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(l, fd, (struct sockaddr *)&ss, len);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
            if (shed_one(l) == 0) continue;
            pause_accepting(l);
        }
        break; /* EAGAIN, or nothing more can be done this turn */
    }
    srv__loop_kick(l->srv);
}

/* ---- connection life ------------------------------------------------------------ */

void srv__listen_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    srv_listener *l = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_sock *k = calloc(1, sizeof *k);
        srv_client *c = client_acquire(l, l->pending_key);
        if (!k || !c) {
            /* No memory: libmicrohttpd will still run the connection; it
             * is simply not tracked (no timeouts, no per-address count). */
            free(k);
            client_release(l, c);
            *socket_context = NULL;
            return;
        }
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->listener = l;
        k->mhd = mc;
        k->fd = ci ? ci->connect_fd : -1;
        k->client = c;
        k->phase = SRV_SOCK_HEADERS;
        k->since = srv__now_ns();
        k->next = l->socks;
        if (l->socks) l->socks->prev = k;
        l->socks = k;
        l->n_conns++;
        srv__metric_set(l->m_conns, l->n_conns);
        *socket_context = k;
        return;
    }
    srv_sock *k = *socket_context;
    if (!k) return;
    *socket_context = NULL;
    if (k->prev)
        k->prev->next = k->next;
    else
        l->socks = k->next;
    if (k->next) k->next->prev = k->prev;
    client_release(l, k->client);
    l->n_conns--;
    srv__metric_set(l->m_conns, l->n_conns);
    free(k);
}

srv_sock *srv__sock_of(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* A request target holds a control byte, raw or %-escaped ("%00", "%0a",
 * "%7f"): a path that means one thing to a proxy and another here. */
static int target_has_control(const char *uri)
{
    for (const unsigned char *p = (const unsigned char *)uri; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) return 1;
        if (*p == '%' && p[1] && p[2]) {
            char hex[3] = {(char)p[1], (char)p[2], 0};
            char *end;
            long v = strtol(hex, &end, 16);
            if (!*end && (v < 0x20 || v == 0x7f)) return 1;
        }
    }
    return 0;
}

void *srv__listen_uri_seen(void *cls, const char *uri, struct MHD_Connection *mc)
{
    srv_sock *k = srv__sock_of(mc);
    if (k) {
        k->line_seen = 1;
        k->bad_target = target_has_control(uri);
    }
    return NULL; /* the request's context stays NULL until the handler runs */
}

void srv__sock_request_begins(srv_sock *k, srv_conn *c)
{
    if (!k) return;
    k->phase = SRV_SOCK_BODY;
    k->since = srv__now_ns();
    k->conn = c;
}

void srv__sock_request_complete(srv_sock *k)
{
    if (k && k->phase == SRV_SOCK_BODY) k->phase = SRV_SOCK_BUSY;
}

void srv__sock_request_ended(srv_sock *k)
{
    if (!k || k->phase == SRV_SOCK_CLOSING) return;
    k->phase = SRV_SOCK_HEADERS;
    k->since = srv__now_ns();
    k->requests++;
    k->line_seen = k->bad_target = 0;
    k->conn = NULL;
}

/* ---- the tick: total time bounds --------------------------------------------- */

void srv__sock_abort(srv_sock *k, const char *text)
{
    if (!k || k->phase == SRV_SOCK_CLOSING) return;
    if (k->fd >= 0) send_now(k->fd, text);
    /* libmicrohttpd sees end of input on its next read and closes the
     * connection, which ends the request and frees k. */
    if (k->fd >= 0) shutdown(k->fd, SHUT_RDWR);
    k->phase = SRV_SOCK_CLOSING;
}

static void expire(srv_listener *l, srv_sock *k)
{
    int body = k->phase == SRV_SOCK_BODY;
    srv__metric_add(body ? l->m_timeout_body : l->m_timeout_headers, 1);
    /* A keep-alive connection that has not begun another request is
     * simply idle: close it quietly. */
    int quiet = !body && k->requests > 0 && !k->line_seen;
    if (k->conn) {
        k->conn->status = proto_err_status(PROTO_E_REQUEST_TIMEOUT);
        k->conn->outcome = proto_err_code(PROTO_E_REQUEST_TIMEOUT);
    }
    srv__sock_abort(k, quiet ? NULL : body ? l->srv->timeout_body : l->srv->timeout_headers);
}

void srv__listen_tick(srv_server *s, int64_t now)
{
    linger_tick(s, now);
    if (s->reserve_fd < 0) s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < s->n_listeners; i++) {
        srv_listener *l = &s->listeners[i];
        if (l->paused && l->fd >= 0) {
            l->paused = 0;
            l->accepting = 1;
            uv_poll_start(&l->accept_poll, UV_READABLE, on_accept);
        }
    }
    int64_t head = s->cfg->header_timeout_ms * 1000000, body = s->cfg->body_timeout_ms * 1000000;
    for (int i = 0; i < s->n_listeners; i++) {
        srv_listener *l = &s->listeners[i];
        for (srv_sock *k = l->socks; k; k = k->next) {
            if ((k->phase == SRV_SOCK_HEADERS && now - k->since >= head) ||
                (k->phase == SRV_SOCK_BODY && now - k->since >= body))
                expire(l, k);
        }
    }
}

/* ---- sockets -------------------------------------------------------------------- */

static int listen_socket(const char *host, int port, int *bound_port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof *v6;
    } else {
        snprintf(err, errlen, "%s is not a numeric IPv4 or IPv6 address", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound_port = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

static int stats(srv_listener *l)
{
    srv_metrics *x = &l->srv->metrics;
    const char *name[] = {l->name}, *limit[] = {l->name, "limit"},
               *client[] = {l->name, "per_client"}, *hd[] = {l->name, "headers"},
               *bd[] = {l->name, "body"};
    l->m_conns = srv__series(x->connections, name);
    l->m_refused_limit = srv__series(x->connections_refused, limit);
    l->m_refused_client = srv__series(x->connections_refused, client);
    l->m_timeout_headers = srv__series(x->request_timeouts, hd);
    l->m_timeout_body = srv__series(x->request_timeouts, bd);
    return l->m_conns && l->m_refused_limit && l->m_refused_client && l->m_timeout_headers &&
                   l->m_timeout_body
               ? 0
               : -1;
}

int srv__listen_stats_init(srv_server *s)
{
    srv_metrics *x = &s->metrics;
    x->connections = srv__family_add(x->reg, SRV_GAUGE, "heptapod_connections",
                                     "Open HTTP connections, by listener.", "listener", NULL, 0);
    x->connections_refused =
        srv__family_add(x->reg, SRV_COUNTER, "heptapod_connections_refused_total",
                        "Connections refused at accept: above max_connections (limit) or above "
                        "max_connections_per_client (per_client).",
                        "listener,reason", NULL, 0);
    x->request_timeouts =
        srv__family_add(x->reg, SRV_COUNTER, "heptapod_request_timeouts_total",
                        "Connections closed because a request's headers or body took longer than "
                        "header_timeout_ms or body_timeout_ms.",
                        "listener,phase", NULL, 0);
    s->timeout_headers = canned(PROTO_E_REQUEST_TIMEOUT,
                                "the request headers did not arrive within header_timeout_ms", 0);
    s->timeout_body = canned(PROTO_E_REQUEST_TIMEOUT,
                             "the request body did not arrive within body_timeout_ms", 0);
    char msg[96];
    snprintf(msg, sizeof msg, "the body is above the limit of %lld bytes (max_body_bytes)",
             (long long)s->cfg->max_body_bytes);
    s->too_large = canned(PROTO_E_PAYLOAD_TOO_LARGE, msg, 0);
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->max_lingers = linger_budget(s->cfg);
    return x->connections && x->connections_refused && x->request_timeouts && s->timeout_headers &&
                   s->timeout_body
               ? 0
               : -1;
}

int srv__listen_open(srv_server *s, srv_listener *l, const char *name, int admin, const char *host,
                     int port, int max_conns)
{
    char err[256];
    memset(l, 0, sizeof *l);
    l->srv = s;
    l->name = name;
    l->admin = admin;
    l->fd = -1;
    l->max_conns = max_conns;
    l->per_client = (int)s->cfg->max_connections_per_client;
    l->hash_seed = s->id_seed;
    l->clients = calloc(CLIENT_BUCKETS, sizeof *l->clients);
    l->refuse_limit =
        canned(PROTO_E_UNAVAILABLE, "the server is at its connection limit (max_connections)",
               s->cfg->retry_after_s);
    l->refuse_client = canned(PROTO_E_OVERLOADED,
                              "too many connections from this address (max_connections_per_client)",
                              s->cfg->retry_after_s);
    if (!l->clients || !l->refuse_limit || !l->refuse_client || stats(l) < 0) {
        SRV_LOG(SRV_LOG_ERROR, "%s listener: out of memory", name);
        return -1;
    }
    l->fd = listen_socket(host, port, &l->port, err, sizeof err);
    if (l->fd < 0) {
        SRV_LOG(SRV_LOG_ERROR, "%s listener: %s", name, err);
        return -1;
    }
    if (uv_poll_init(&s->loop, &l->accept_poll, l->fd) != 0) {
        SRV_LOG(SRV_LOG_ERROR, "%s listener: cannot watch the socket", name);
        return -1;
    }
    l->accept_poll.data = l;
    l->accepting = 1;
    uv_poll_start(&l->accept_poll, UV_READABLE, on_accept);
    return 0;
}

void srv__listen_stop_accepting(srv_listener *l)
{
    if (l->accepting) uv_poll_stop(&l->accept_poll);
    l->accepting = l->paused = 0;
}

void srv__listen_close(srv_listener *l)
{
    srv__listen_stop_accepting(l);
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    if (l->clients) {
        for (int b = 0; b < CLIENT_BUCKETS; b++)
            while (l->clients[b]) {
                srv_client *c = l->clients[b];
                l->clients[b] = c->next;
                free(c);
            }
        free(l->clients);
        l->clients = NULL;
    }
    free(l->refuse_limit);
    free(l->refuse_client);
    l->refuse_limit = l->refuse_client = NULL;
}

void srv__listen_free(srv_server *s)
{
    /* Lingering sockets whose handles the loop's final walk closed. */
    while (s->lingers) {
        srv_linger *g = s->lingers;
        linger_unlink(s, g);
        close(g->fd);
        free(g);
    }
    free(s->timeout_headers);
    free(s->timeout_body);
    free(s->too_large);
    s->timeout_headers = s->timeout_body = s->too_large = NULL;
    if (s->reserve_fd >= 0) close(s->reserve_fd);
    s->reserve_fd = -1;
}
