/*
 * http.c - libmicrohttpd glue: starting the daemon in external-epoll mode,
 * routing, the API key, request ids, the small endpoints (/healthz, /readyz,
 * /metrics; the model routes are model_http.c's), one place that queues
 * responses, and the completion callback that counts and logs every request.
 *
 * Checks run in this order, each answering at once with its status: HTTP
 * framing 400/501 (then the connection closes), unknown path 404 (on the
 * admin listener everything but the health endpoints), a CORS preflight
 * 204 (cors.c), method 405, API key 401; then the route's own handler.
 * The embedded files (static.h: the playground, /openapi.json) need no key:
 * they are the same public bytes for everyone, and the page asks for the
 * key itself.
 *
 * Framing: a request that two parsers could read differently is refused,
 * never guessed at. libmicrohttpd 0.9.75 takes the first of several
 * Content-Length headers, reads a body of unknown length until the peer
 * closes for any Transfer-Encoding other than "chunked", and accepts a
 * Content-Length beside "chunked"; all three are visible to the handler
 * before any of the body is read, so they are refused here, as are control
 * bytes in the target (see listen.c) and in header names and values. What
 * libmicrohttpd decides before any handler runs is documented in
 * docs/api.md ("HTTP framing") and left to the reverse proxy.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/auth.h"
#include "server/log.h"
#include "server/server.h"
#include "server/static.h"

static const struct route {
    const char *path;
    srv_route route;
    int post; /* POST only; otherwise GET and HEAD */
    int health;
} routes[] = {
    {"/generate", SRV_ROUTE_GENERATE, 1, 0}, {"/v1/models", SRV_ROUTE_MODELS, 0, 0},
    {"/healthz", SRV_ROUTE_HEALTHZ, 0, 1},   {"/readyz", SRV_ROUTE_READYZ, 0, 1},
    {"/metrics", SRV_ROUTE_METRICS, 0, 1},
};

/* Routes matched by more than one path: the path is their metrics label. */
#define MODEL_PREFIX "/v1/models/"
#define RELOAD_SUFFIX "/reload"
static const struct route model_route = {MODEL_PREFIX "{name}", SRV_ROUTE_MODEL, 0, 0};
static const struct route reload_route = {MODEL_PREFIX "{name}" RELOAD_SUFFIX, SRV_ROUTE_RELOAD, 1,
                                          0};
static const struct route asset_route = {"/static", SRV_ROUTE_ASSET, 0, 0};

/* The route of url, and for /v1/models/{name}[/reload] the name into name
 * (cut to fit: a name that long matches no model). The reload route exists
 * only where model administration is on. */
static const struct route *find_route(const srv_server *s, const char *url, char *name, size_t len)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) return &routes[i];
    size_t p = strlen(MODEL_PREFIX), n = strlen(url), r = strlen(RELOAD_SUFFIX);
    if (!strncmp(url, MODEL_PREFIX, p) && n > p) {
        const char *rest = url + p;
        if (s->model_admin && n > p + r && !strcmp(url + n - r, RELOAD_SUFFIX) &&
            !memchr(rest, '/', n - p - r)) {
            snprintf(name, len, "%.*s", (int)(n - p - r), rest);
            return &reload_route;
        }
        snprintf(name, len, "%s", rest);
        return &model_route;
    }
    return srv__asset_find(url) ? &asset_route : NULL;
}

/* The methods a route takes: GET and HEAD, or POST; the model routes also
 * take POST (load) and DELETE (unload) where model administration is on,
 * though a CORS preflight (admin 0) never offers those to a browser page:
 * administering models is an operator's, not a web application's. */
static const char *route_methods(const srv_server *s, const struct route *r, int cors, int admin)
{
    if (r->route == SRV_ROUTE_RELOAD) return admin ? "POST" : cors ? "OPTIONS" : "";
    if (admin && s->model_admin && r->route == SRV_ROUTE_MODELS)
        return cors ? "GET, HEAD, POST, OPTIONS" : "GET, HEAD, POST";
    if (admin && s->model_admin && r->route == SRV_ROUTE_MODEL)
        return cors ? "GET, HEAD, DELETE, OPTIONS" : "GET, HEAD, DELETE";
    if (r->post) return cors ? "POST, OPTIONS" : "POST";
    return cors ? "GET, HEAD, OPTIONS" : "GET, HEAD";
}

/* Whether `methods` (as route_methods gives them) lists method. */
static int takes(const char *methods, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = methods; (p = strstr(p, method)); p += n)
        if ((p == methods || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

static void add_common_headers(srv_conn *c, struct MHD_Response *r, const char *content_type)
{
    if (content_type) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, "X-Request-Id", c->request_id);
    srv__cors_headers(c, r);
    /* While draining, keep-alive connections would keep clients pinned to a
     * replica that is going away. */
    if (c->srv->draining || c->close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
}

enum MHD_Result srv__http_reply(srv_conn *c, int status, char *body, size_t len,
                                const char *content_type)
{
    return srv__http_reply_headers(c, status, body, len, content_type, NULL);
}

static enum MHD_Result queue(srv_conn *c, struct MHD_Response *r, int status,
                             const char *content_type, const char *const *extra)
{
    add_common_headers(c, r, content_type);
    for (int i = 0; extra && extra[i]; i += 2)
        MHD_add_response_header(r, extra[i], extra[i + 1]);
    enum MHD_Result rc = MHD_queue_response(c->mhd, (unsigned)status, r);
    MHD_destroy_response(r);
    c->status = status;
    c->phase = SRV_PH_REPLIED;
    return rc;
}

enum MHD_Result srv__http_reply_headers(srv_conn *c, int status, char *body, size_t len,
                                        const char *content_type, const char *const *extra)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    return queue(c, r, status, content_type, extra);
}

enum MHD_Result srv__http_reply_static(srv_conn *c, int status, const void *body, size_t len,
                                       const char *content_type, const char *const *extra)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
    return r ? queue(c, r, status, content_type, extra) : MHD_NO;
}

static char *render_or_null(proto_buf *b, size_t *len)
{
    if (b->oom) {
        proto_buf_free(b);
        return NULL;
    }
    return proto_buf_steal(b, len);
}

enum MHD_Result srv__http_error(srv_conn *c, const proto_error *e)
{
    proto_buf b;
    proto_buf_init(&b);
    proto_render_error(&b, e);
    size_t len = 0;
    char *body = render_or_null(&b, &len);
    int status = proto_err_status(e->err);
    char retry[24];
    const char *extra[5] = {NULL};
    if (status == 429 || status == 503) {
        /* Computed from the queued work and the measured rate where the
         * refusal knows them; the setting otherwise. */
        long long after = c->retry_after_s > 0 ? c->retry_after_s : c->srv->cfg->retry_after_s;
        snprintf(retry, sizeof retry, "%lld", after);
        extra[0] = MHD_HTTP_HEADER_RETRY_AFTER;
        extra[1] = retry;
    } else if (status == 401) {
        extra[0] = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
        extra[1] = "Bearer";
    } else if (status == 405) {
        extra[0] = MHD_HTTP_HEADER_ALLOW;
        extra[1] = c->allow ? c->allow : "GET, HEAD";
    }
    if (!c->outcome) c->outcome = proto_err_code(e->err);
    return srv__http_reply_headers(c, status, body, len, "application/json", extra);
}

static int authorized(srv_conn *c, const struct route *r)
{
    const cfg_settings *cfg = c->srv->cfg;
    if (cfg->n_api_keys == 0 || (r->health && !cfg->auth_health)) return 1;
    const char *given = srv__auth_presented(
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "X-Api-Key"));
    return srv__auth_check(cfg->api_keys, cfg->n_api_keys, given);
}

/* A client's id is kept if it is short and made of characters that are safe
 * in headers and logs; otherwise a fresh one is made. */
static void request_id(srv_conn *c)
{
    const char *h = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = h ? strlen(h) : 0;
    int ok = n >= 1 && n <= SRV_REQUEST_ID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             ch == '-' || ch == '_' || ch == '.' || ch == ':';
    }
    if (ok) {
        memcpy(c->request_id, h, n + 1);
        return;
    }
    /* splitmix64 over a random seed and a counter: unique within the
     * process, unpredictable across processes. */
    srv_server *s = c->srv;
    uint64_t z = s->id_seed + 0x9e3779b97f4a7c15ULL * ++s->id_counter;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    snprintf(c->request_id, sizeof c->request_id, "%016llx%08llx", (unsigned long long)z,
             (unsigned long long)(s->id_counter & 0xffffffffULL));
}

static enum MHD_Result fail_oom(srv_conn *c)
{
    proto_error e;
    proto_error_set(&e, PROTO_E_INTERNAL, NULL, "out of memory");
    return srv__http_error(c, &e);
}

enum MHD_Result srv__http_reply_buf(srv_conn *c, int status, proto_buf *b, const char *ctype)
{
    size_t len = 0;
    char *body = render_or_null(b, &len);
    return body ? srv__http_reply(c, status, body, len, ctype) : fail_oom(c);
}

/* An embedded file, revalidated by its ETag (304 when unchanged). Pages
 * carry the Content-Security-Policy; everything is kept from sniffing. */
static enum MHD_Result handle_asset(srv_conn *c)
{
    const srv_asset *a = c->asset;
    const srv_embedded *f = srv__asset_file(a);
    if (!f) {
        proto_error e;
        proto_error_set(&e, PROTO_E_NOT_FOUND, NULL, "%s was not built into this binary", a->url);
        return srv__http_error(c, &e);
    }
    const char *extra[11] = {MHD_HTTP_HEADER_ETAG,          f->etag,
                             MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache",
                             "X-Content-Type-Options",      "nosniff"};
    if (a->page) {
        const char *page[] = {"Content-Security-Policy", SRV_PAGE_CSP, "Referrer-Policy",
                              "no-referrer"};
        memcpy(extra + 6, page, sizeof page);
    }
    const char *inm =
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && strstr(inm, f->etag))
        return srv__http_reply_static(c, MHD_HTTP_NOT_MODIFIED, "", 0, NULL, extra);
    return srv__http_reply_static(c, 200, f->data, f->len, a->type, extra);
}

static enum MHD_Result handle_simple(srv_conn *c)
{
    srv_server *s = c->srv;
    proto_buf b;
    proto_buf_init(&b);
    switch (c->route) {
    case SRV_ROUTE_HEALTHZ:
        proto_render_status(&b, "ok", NULL);
        return srv__http_reply_buf(c, 200, &b, "application/json");
    case SRV_ROUTE_READYZ:
        if (s->ready) {
            proto_render_status(&b, "ready", NULL);
            return srv__http_reply_buf(c, 200, &b, "application/json");
        }
        proto_render_status(&b, s->draining ? "draining" : "loading",
                            s->draining ? "the server is shutting down"
                                        : "models are still loading");
        return srv__http_reply_buf(c, 503, &b, "application/json");
    case SRV_ROUTE_METRICS:
        srv__stats_refresh(s);
        srv__registry_render(s->metrics.reg, &b);
        return srv__http_reply_buf(c, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
    case SRV_ROUTE_MODELS:
        return srv__models_list(c);
    case SRV_ROUTE_MODEL:
        return srv__models_show(c);
    case SRV_ROUTE_ASSET:
        return handle_asset(c);
    case SRV_ROUTE_PREFLIGHT:
        return srv__cors_preflight(c, c->allow);
    default:
        return MHD_NO;
    }
}

/* The peer's address and User-Agent, kept for the access log. The agent
 * is cut to fit and anything but printable ASCII becomes '?', so the log
 * line stays one valid JSON line whatever a client sends. */
static void client_of(srv_conn *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->client,
                  sizeof c->client);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->client,
                  sizeof c->client);
    const char *ua =
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
    size_t n = 0;
    for (; ua && ua[n] && n + 1 < sizeof c->user_agent; n++)
        c->user_agent[n] = ua[n] >= 0x20 && ua[n] < 0x7f ? ua[n] : '?';
    c->user_agent[n] = '\0';
}

static srv_conn *conn_new(srv_listener *l, struct MHD_Connection *mc, const char *url,
                          const char *method)
{
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = l->srv;
    c->listener = l;
    c->sock = srv__sock_of(mc);
    c->mhd = mc;
    c->arrival = srv__now_ns();
    snprintf(c->method, sizeof c->method, "%s", method);
    snprintf(c->path, sizeof c->path, "%s", url);
    proto_buf_init(&c->out);
    request_id(c);
    c->cors_origin =
        srv__cors_allow(c->srv->cfg, MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Origin"));
    client_of(c);
    return c;
}

/* Counts one header's occurrences and checks its bytes. */
struct framing {
    int content_length, transfer_encoding, control;
    const char *te;
    char bad[64]; /* name of the first header with a control byte */
};

static int has_control(const char *p, size_t n, int allow_tab)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && !(allow_tab && ch == '\t')) || ch == 0x7f) return 1;
    }
    return 0;
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size)
{
    struct framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) f->content_length++;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        f->transfer_encoding++;
        f->te = value;
    }
    if (!f->control &&
        (has_control(key, key_size, 0) ||
         (value && (strlen(value) != value_size || has_control(value, value_size, 1))))) {
        f->control = 1;
        snprintf(f->bad, sizeof f->bad, "%.*s", (int)(key_size < 48 ? key_size : 48), key);
    }
    return MHD_YES;
}

/* Refuses a request whose framing or target two parsers could read
 * differently. Returns PROTO_OK or fills e (the connection then closes). */
static proto_err check_framing(srv_conn *c, proto_error *e)
{
    struct framing f = {0};
    MHD_get_connection_values_n(c->mhd, MHD_HEADER_KIND, count_header, &f);
    if (c->sock && c->sock->bad_target)
        return proto_error_set(e, PROTO_E_BAD_REQUEST, NULL,
                               "the request target holds a control character (raw or %%-escaped)");
    if (f.control)
        return proto_error_set(e, PROTO_E_BAD_REQUEST, NULL,
                               "header '%s' holds a control character", f.bad);
    if (f.content_length > 1)
        return proto_error_set(e, PROTO_E_BAD_REQUEST, NULL,
                               "%d Content-Length headers; send exactly one", f.content_length);
    if (f.transfer_encoding > 1)
        return proto_error_set(e, PROTO_E_BAD_REQUEST, NULL,
                               "%d Transfer-Encoding headers; send at most one",
                               f.transfer_encoding);
    if (f.transfer_encoding && f.content_length)
        return proto_error_set(e, PROTO_E_BAD_REQUEST, NULL,
                               "Content-Length and Transfer-Encoding together; send one of them");
    if (f.transfer_encoding && strcasecmp(f.te, "chunked") != 0)
        return proto_error_set(e, PROTO_E_NOT_IMPLEMENTED, NULL,
                               "Transfer-Encoding '%.64s' is not supported; only 'chunked' is",
                               f.te);
    return PROTO_OK;
}

static const struct route *find_listener_route(const srv_listener *l, const char *url, char *name,
                                               size_t len)
{
    const struct route *r = find_route(l->srv, url, name, len);
    return r && (!l->admin || r->health) ? r : NULL;
}

static int is_admin(srv_route r)
{
    return r == SRV_ROUTE_LOAD || r == SRV_ROUTE_UNLOAD || r == SRV_ROUTE_RELOAD;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    srv_listener *l = cls;
    srv_conn *c = *con_cls;
    if (c) {
        if (!*upload_size) srv__sock_request_complete(c->sock);
        if (c->route == SRV_ROUTE_GENERATE) return srv__generate(c, upload, upload_size);
        if (is_admin(c->route)) return srv__admin(c, upload, upload_size);
        if (*upload_size) { /* a body on a GET: read and ignore it */
            *upload_size = 0;
            return MHD_YES;
        }
        return c->phase == SRV_PH_REPLIED ? MHD_YES : handle_simple(c);
    }
    c = conn_new(l, mc, url, method);
    if (!c) return MHD_NO;
    *con_cls = c;
    srv__sock_request_begins(c->sock, c);
    proto_error e;
    if (check_framing(c, &e) != PROTO_OK) {
        c->endpoint = "other";
        c->close = 1;
        return srv__http_error(c, &e);
    }
    const struct route *r = find_listener_route(l, url, c->model_name, sizeof c->model_name);
    c->endpoint = r ? r->path : "other";
    if (!r) {
        proto_error_set(&e, PROTO_E_NOT_FOUND, NULL, "no such path: %s", c->path);
        return srv__http_error(c, &e);
    }
    if (r->route == SRV_ROUTE_ASSET) {
        c->asset = srv__asset_find(url);
        c->endpoint = c->asset->url;
    }
    int cors = c->srv->cfg->cors_allow_origin[0] != '\0';
    if (cors && !strcmp(method, MHD_HTTP_METHOD_OPTIONS) &&
        MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Access-Control-Request-Method")) {
        c->route = SRV_ROUTE_PREFLIGHT; /* answered once the request is complete, as below */
        c->allow = route_methods(c->srv, r, 1, 0);
        return MHD_YES;
    }
    const char *methods = route_methods(c->srv, r, 0, 1);
    if (!takes(methods, method)) {
        c->allow = route_methods(c->srv, r, cors, 1);
        proto_error_set(&e, PROTO_E_METHOD_NOT_ALLOWED, NULL, "%s does not take %s", r->path,
                        c->method);
        return srv__http_error(c, &e);
    }
    if (r->route != SRV_ROUTE_ASSET && !authorized(c, r)) {
        proto_error_set(&e, PROTO_E_UNAUTHORIZED, NULL,
                        "a valid API key is required (Authorization: Bearer KEY)");
        return srv__http_error(c, &e);
    }
    /* Only now: a route's handler runs once its request passed the checks.
     * The model routes' writing methods are the model endpoints (model_http.c). */
    c->route = r->route;
    if (r->route == SRV_ROUTE_MODELS && !strcmp(method, MHD_HTTP_METHOD_POST))
        c->route = SRV_ROUTE_LOAD;
    if (r->route == SRV_ROUTE_MODEL && !strcmp(method, MHD_HTTP_METHOD_DELETE))
        c->route = SRV_ROUTE_UNLOAD;
    if (r->route == SRV_ROUTE_GENERATE) return srv__generate(c, upload, upload_size);
    if (is_admin(c->route)) return srv__admin(c, upload, upload_size);
    /* Answered once the request is complete: a response queued before that
     * makes libmicrohttpd close the connection instead of keeping it. */
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    srv_listener *l = cls;
    srv_server *s = l->srv;
    srv_conn *c = *con_cls;
    srv__sock_request_ended(srv__sock_of(mc));
    if (!c) return;
    *con_cls = NULL;
    srv_access a = {.request_id = c->request_id,
                    .method = c->method,
                    .path = c->path,
                    .client = c->client[0] ? c->client : NULL,
                    .user_agent = c->user_agent[0] ? c->user_agent : NULL};
    if (c->route == SRV_ROUTE_MODEL && srv__model_find(s, c->model_name)) a.model = c->model_name;
    if (is_admin(c->route)) srv__admin_completed(c);
    if (c->model && !a.model) a.model = c->model->name;
    if (c->route == SRV_ROUTE_GENERATE) srv__generate_completed(c, toe, &a);
    /* No status queued: the client left before any answer (499, as proxies
     * log it). */
    a.status = c->status ? c->status : proto_err_status(PROTO_E_CANCELLED);
    if (!a.outcome)
        a.outcome = c->outcome ? c->outcome
                               : (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "ok" : "cancelled");
    a.total_ms = (double)(srv__now_ns() - c->arrival) / 1e6;
    srv__stats_request(s, c->endpoint, a.status);
    if (s->access_fd >= 0) srv__access_log(s->access_fd, &a);
    proto_buf_free(&c->out);
    free(c->body);
    srv__model_unref(c->model);
    free(c);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (srv__log_level < SRV_LOG_DEBUG) return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    srv__log(SRV_LOG_DEBUG, "http: %s", msg);
}

/* One listener's libmicrohttpd daemon: external epoll (the loop polls its
 * epoll fd), no listening socket (listen.c accepts and adds connections),
 * strict request parsing (a Host header on HTTP/1.1, no space in the
 * target). */
static int start_mhd(srv_server *s, srv_listener *l)
{
    const cfg_settings *cfg = s->cfg;
    unsigned flags =
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    /* libmicrohttpd's own limit sits above the listener's, which refuses
     * first and with an answer. */
    l->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, l, MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
        MHD_OPTION_NOTIFY_CONNECTION, srv__listen_notify, l, MHD_OPTION_URI_LOG_CALLBACK,
        srv__listen_uri_seen, l, MHD_OPTION_CONNECTION_LIMIT, (unsigned)l->max_conns + 16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout_s, MHD_OPTION_STRICT_FOR_CLIENT,
        (int)1, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
    if (!l->mhd) {
        SRV_LOG(SRV_LOG_ERROR, "%s listener: cannot start libmicrohttpd", l->name);
        return -1;
    }
    uv_timer_init(&s->loop, &l->mhd_timer);
    l->mhd_timer.data = l;
    l->timer_init = 1;
    return 0;
}

int srv__http_start(srv_server *s)
{
    const cfg_settings *cfg = s->cfg;
    char err[320];
    if (srv__cors_check(cfg->cors_allow_origin, err, sizeof err) < 0) {
        SRV_LOG(SRV_LOG_ERROR, "%s", err);
        return -1;
    }
    if (srv__listen_stats_init(s) < 0) {
        SRV_LOG(SRV_LOG_ERROR, "out of memory for the listeners");
        return -1;
    }
    srv_listener *l = &s->listeners[0];
    s->n_listeners = 1;
    if (srv__listen_open(s, l, "main", 0, cfg->host, (int)cfg->port, (int)cfg->max_connections) <
            0 ||
        start_mhd(s, l) < 0)
        return -1;
    if (cfg->admin_port >= 0) {
        l = &s->listeners[1];
        s->n_listeners = 2;
        const char *host = cfg->admin_host[0] ? cfg->admin_host : cfg->host;
        int max =
            (int)(cfg->admin_max_connections < cfg->max_connections ? cfg->admin_max_connections
                                                                    : cfg->max_connections);
        if (srv__listen_open(s, l, "admin", 1, host, (int)cfg->admin_port, max) < 0 ||
            start_mhd(s, l) < 0)
            return -1;
    }
    return 0;
}

void srv__http_stop(srv_server *s)
{
    /* MHD must not be stopped with suspended connections: let each one
     * answer (its job has ended by now) before closing. */
    for (srv_conn *c = s->conns; c; c = c->next)
        if (c->suspended) {
            c->suspended = 0;
            MHD_resume_connection(c->mhd);
        }
    for (int i = 0; i < s->n_listeners; i++) {
        srv_listener *l = &s->listeners[i];
        srv__listen_stop_accepting(l);
        if (!l->mhd) continue;
        for (int k = 0; k < 4; k++)
            MHD_run(l->mhd);
        if (l->polling) uv_poll_stop(&l->mhd_poll);
        if (l->timer_init) uv_timer_stop(&l->mhd_timer);
        MHD_stop_daemon(l->mhd);
        l->mhd = NULL;
    }
}
