/*
 * generate.c - POST /generate on the loop thread: the body, parsing and
 * validation, admission to the model's queue, and the answer: one JSON body
 * once the job ends (the connection is suspended meanwhile), or a stream of
 * Server-Sent Events fed from the job's frames.
 *
 * The first byte fixes the status. A JSON answer waits for the job's end,
 * so every failure is a status (504, 503, 500). An SSE answer starts at
 * once with 200 (so keep-alive comments can flow while queued); failures
 * after that are an `error` event that ends the stream.
 *
 * Suspended connections are invisible to libmicrohttpd, so the tick below
 * watches them: deadlines, a peer that closed its socket (a non-consuming
 * peek), and SSE keep-alive comments, whose failed write also ends a stream
 * whose client vanished without closing.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "server/server.h"

#define SSE_BLOCK 32768

static double ms_between(int64_t a, int64_t b)
{
    return a && b > a ? (double)(b - a) / 1e6 : 0.0;
}

static void attach(srv_conn *c, srv_job *j)
{
    srv_server *s = c->srv;
    c->job = j;
    j->conn = c;
    c->next = s->conns;
    c->prev = NULL;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_inflight++;
}

static void detach(srv_conn *c)
{
    srv_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n_inflight--;
    c->job->conn = NULL;
    srv__job_unref(c->job);
    c->job = NULL;
}

static void suspend(srv_conn *c)
{
    MHD_suspend_connection(c->mhd);
    c->suspended = 1;
}

static void resume(srv_conn *c)
{
    if (!c->suspended) return;
    c->suspended = 0;
    MHD_resume_connection(c->mhd);
}

static enum MHD_Result fail(srv_conn *c, proto_err err, const char *fmt, const char *arg)
{
    proto_error e;
    proto_error_set(&e, err, NULL, fmt, arg);
    return srv__http_error(c, &e);
}

static proto_timings timings(srv_job *j)
{
    srv_times t;
    srv__job_times(j, &t, NULL);
    int64_t now = srv__now_ns();
    return (proto_timings){.queued_ms = ms_between(t.arrival, t.started ? t.started : now),
                           .compute_ms = ms_between(t.started, t.finished),
                           .total_ms = ms_between(t.arrival, now),
                           .first_iteration_ms = ms_between(t.arrival, t.first)};
}

/* The error an ended, unfinished job answers with. */
static proto_err end_error(srv_end e)
{
    switch (e) {
    case SRV_END_DEADLINE:
        return PROTO_E_DEADLINE_EXCEEDED;
    case SRV_END_SHUTDOWN:
        return PROTO_E_UNAVAILABLE;
    case SRV_END_CANCELLED:
        return PROTO_E_CANCELLED;
    default:
        return PROTO_E_INTERNAL;
    }
}

static const char *end_message(srv_end e)
{
    switch (e) {
    case SRV_END_DEADLINE:
        return "the deadline passed before the grid was finished";
    case SRV_END_SHUTDOWN:
        return "the server is shutting down";
    case SRV_END_CANCELLED:
        return "the request was cancelled";
    default:
        return "the engine could not run the batch";
    }
}

/* ---- SSE -------------------------------------------------------------------- */

/* Renders whatever the job published since the last call: iteration events,
 * then, once it ended, the done or error event. Frames and the ending are
 * taken under one lock, so no frame can slip in after the final event. */
static void sse_fill(srv_conn *c)
{
    srv_job *j = c->job;
    pthread_mutex_lock(&j->mu);
    srv_frame *f = j->frames;
    j->frames = j->frames_tail = NULL;
    srv_end end = j->end;
    int run = j->iterations_run;
    pthread_mutex_unlock(&j->mu);
    while (f) {
        srv_frame *next = f->next;
        proto_grid g = {.iteration = f->iteration, .open = f->open, .tokens = f->tokens};
        proto_render_sse_iteration(&c->out, &j->req, &g);
        free(f);
        f = next;
    }
    if (end == SRV_END_NONE || end == SRV_END_CANCELLED) return;
    if (end == SRV_END_DONE) {
        proto_timings t = timings(j);
        proto_render_sse_done(&c->out, &j->req, c->request_id, j->model->name, run, &t);
        c->outcome = "ok";
    } else {
        proto_error e;
        proto_error_set(&e, end_error(end), NULL, "%s", end_message(end));
        proto_render_sse_error(&c->out, &e);
        c->outcome = proto_err_code(e.err);
    }
    c->final_rendered = 1;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    srv_conn *c = cls;
    if (!c->job) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (c->out_off == c->out.len && !c->final_rendered) {
        proto_buf_reset(&c->out);
        c->out_off = 0;
        sse_fill(c);
        if (c->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (c->out_off < c->out.len) {
        size_t n = c->out.len - c->out_off;
        if (n > max) n = max;
        memcpy(buf, c->out.data + c->out_off, n);
        c->out_off += n;
        c->last_write = srv__now_ns();
        return (ssize_t)n;
    }
    if (c->final_rendered) return MHD_CONTENT_READER_END_OF_STREAM;
    if (srv__job_state(c->job) == SRV_END_CANCELLED) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (c->keepalive_due && max >= sizeof PROTO_SSE_KEEPALIVE - 1) {
        c->keepalive_due = 0;
        c->last_write = srv__now_ns();
        memcpy(buf, PROTO_SSE_KEEPALIVE, sizeof PROTO_SSE_KEEPALIVE - 1);
        return (ssize_t)(sizeof PROTO_SSE_KEEPALIVE - 1);
    }
    /* Nothing due: sleep until the worker publishes (srv__conn_wake) or
     * the tick wants a keep-alive. */
    suspend(c);
    return 0;
}

static enum MHD_Result start_stream(srv_conn *c)
{
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, c, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* proxies: do not buffer */
    MHD_add_response_header(r, "X-Request-Id", c->request_id);
    srv__cors_headers(c, r);
    enum MHD_Result rc = MHD_queue_response(c->mhd, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    c->status = MHD_HTTP_OK;
    c->phase = SRV_PH_STREAM;
    c->last_write = srv__now_ns();
    return rc;
}

/* ---- JSON ------------------------------------------------------------------- */

static enum MHD_Result answer_json(srv_conn *c)
{
    srv_job *j = c->job;
    srv_end end = srv__job_state(j);
    if (end == SRV_END_NONE) {
        suspend(c); /* woken early (a tick): keep waiting */
        return MHD_YES;
    }
    if (end == SRV_END_CANCELLED) return MHD_NO; /* the client is gone: close */
    if (end != SRV_END_DONE) return fail(c, end_error(end), "%s", end_message(end));
    /* DONE was set by the worker after its last write to gen, under j->mu,
     * which srv__job_state took: gen is safe to read. */
    proto_timings t = timings(j);
    proto_grid g = {.iteration = j->gen.iter, .open = j->gen.n_masked, .tokens = j->gen.tokens};
    proto_buf b;
    proto_buf_init(&b);
    proto_render_result(&b, &j->req, c->request_id, j->model->name, &g, &t);
    if (b.oom) {
        proto_buf_free(&b);
        return fail(c, PROTO_E_INTERNAL, "%s", "out of memory");
    }
    size_t len = 0;
    char *body = proto_buf_steal(&b, &len);
    c->outcome = "ok";
    return srv__http_reply(c, MHD_HTTP_OK, body, len, "application/json");
}

/* ---- admission -------------------------------------------------------------- */

static srv_model *find_model(srv_server *s, const char *name)
{
    return name ? srv__model_find(s, name) : s->models[0];
}

/* An integer with thousands separators, for messages ("25,000"). */
static const char *grouped(char *buf, size_t len, double v)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v < 0 ? 0 : v < 9e18 ? v : 9e18);
    size_t n = strlen(digits), o = 0;
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Answers a refusal of the scheduler with its status, a message giving the
 * figures behind it, the computed Retry-After, and counts it by reason. */
static enum MHD_Result refuse(srv_conn *c, srv_model *m, int rc, const srv_admission *a)
{
    const cfg_settings *cfg = c->srv->cfg;
    proto_error e;
    char w[32], q[32], r[32], b[32];
    int why = -1;
    switch (rc) {
    case SRV_SCHED_FULL:
        why = SRV_REFUSED_QUEUE_FULL;
        proto_error_set(&e, PROTO_E_OVERLOADED, NULL,
                        "the queue of model '%s' is full: %d requests wait (max_queue %lld)",
                        m->name, a->queued, (long long)cfg->max_queue);
        break;
    case SRV_SCHED_WORK:
        why = SRV_REFUSED_QUEUE_WORK;
        proto_error_set(&e, PROTO_E_OVERLOADED, NULL,
                        "the queue of model '%s' is full of work: %s cell-iterations wait, this "
                        "request adds %s (max_queue_cell_iterations %s)",
                        m->name, grouped(q, sizeof q, (double)a->queued_work),
                        grouped(w, sizeof w, (double)a->work),
                        grouped(b, sizeof b, (double)cfg->max_queue_cell_iterations));
        break;
    case SRV_SCHED_SHARE:
        why = SRV_REFUSED_CLIENT_SHARE;
        proto_error_set(&e, PROTO_E_OVERLOADED, NULL,
                        "the queue of model '%s' is full and this client already has %d requests "
                        "(%s cell-iterations) waiting, its fair share with %d clients waiting",
                        m->name, a->client_queued, grouped(w, sizeof w, (double)a->client_work),
                        a->clients);
        break;
    case SRV_SCHED_TOO_SLOW:
        why = SRV_REFUSED_DEADLINE;
        if (a->deadline_s <= 0) { /* it passed while the body came in */
            proto_error_set(&e, PROTO_E_DEADLINE_EXCEEDED, NULL,
                            "the deadline passed before the request could be queued");
            break;
        }
        proto_error_set(&e, PROTO_E_OUT_OF_RANGE, NULL,
                        "%s cell-iterations need about %.1f s at the measured %s "
                        "cell-iterations/s, above the %.1f s left before its deadline",
                        grouped(w, sizeof w, (double)a->work), a->need_s,
                        grouped(r, sizeof r, a->rate), a->deadline_s);
        break;
    case SRV_SCHED_LATE:
        why = SRV_REFUSED_DEADLINE;
        proto_error_set(&e, PROTO_E_OVERLOADED, NULL,
                        "behind the work queued ahead of it this request would finish in about "
                        "%.1f s (%.1f s waiting, %.1f s its own) at the measured %s "
                        "cell-iterations/s, after the %.1f s left before its deadline",
                        a->wait_s + a->need_s, a->wait_s, a->need_s, grouped(r, sizeof r, a->rate),
                        a->deadline_s);
        break;
    case SRV_SCHED_CLOSED:
        proto_error_set(&e, PROTO_E_UNAVAILABLE, NULL, "the server is shutting down");
        break;
    default:
        proto_error_set(&e, PROTO_E_INTERNAL, NULL, "out of memory");
        break;
    }
    size_t len = strlen(e.message);
    if (a->retry_s > 0 && rc != SRV_SCHED_LATE && len < sizeof e.message)
        snprintf(e.message + len, sizeof e.message - len,
                 "; about %.1f s of work at the measured %s cell-iterations/s", a->retry_s,
                 grouped(r, sizeof r, a->rate));
    if (why >= 0) srv__metric_add(m->m.refused[why], 1);
    c->retry_after_s = a->retry_after_s;
    return srv__http_error(c, &e);
}

/* The whole body is in: parse, validate, queue, and start answering. */
static enum MHD_Result submit(srv_conn *c)
{
    srv_server *s = c->srv;
    proto_request req;
    proto_error e;
    if (proto_parse_generate(c->body ? c->body : "", c->body_len, &req, &e) != PROTO_OK) {
        proto_request_free(&req);
        return srv__http_error(c, &e);
    }
    free(c->body);
    c->body = NULL;
    srv_model *m = find_model(s, req.model);
    if (!m) {
        proto_error_set(&e, PROTO_E_NOT_FOUND, "model", "unknown model '%s' (see /v1/models)",
                        req.model);
        proto_request_free(&req);
        return srv__http_error(c, &e);
    }
    c->model = m;
    srv__model_ref(m);
    /* The weights serving now: the request runs on them to its end, even
     * if a reload swaps in others meanwhile. */
    srv_weights *w = srv__model_weights(m);
    if (!w) {
        proto_request_free(&req);
        return fail(c, PROTO_E_UNAVAILABLE, "model '%s' is still loading", m->name);
    }
    /* The server's limits, with the defaults this model suggests. */
    proto_limits lim = s->limits;
    lim.default_remask_noise = proto_meta_remask_noise(eng_model_meta(w->model, "remask_noise"));
    lim.default_order = proto_meta_order(eng_model_meta(w->model, "order"));
    lim.default_remask = proto_meta_remask(eng_model_meta(w->model, "remask"));
    if (proto_validate_generate(&req, eng_model_hparams(w->model), &lim, &e) != PROTO_OK) {
        proto_request_free(&req);
        srv__weights_unref(w);
        return srv__http_error(c, &e);
    }
    srv_job *j = srv__job_create(m, w, &req, c->arrival, &e);
    srv__weights_unref(w);
    proto_request_free(&req);
    if (!j) return srv__http_error(c, &e);
    int64_t ms = j->req.deadline_ms ? j->req.deadline_ms : s->cfg->default_deadline_ms;
    /* Checked, not wrapped: a deadline past what the clock can hold is none. */
    j->deadline =
        ms > 0 && ms <= (INT64_MAX - c->arrival) / 1000000 ? c->arrival + ms * 1000000 : 0;
    j->q.iterations = j->req.iterations;
    j->q.client = srv__client_key(c);
    j->q.deadline = j->deadline;
    srv__job_ref(j); /* the scheduler's */
    srv_admission a;
    int rc = srv__sched_submit(&m->sched, &j->q, &a);
    if (rc != SRV_SCHED_OK) {
        srv__job_unref(j);
        srv__job_unref(j);
        return refuse(c, m, rc, &a);
    }
    attach(c, j);
    if (j->req.stream) return start_stream(c);
    c->phase = SRV_PH_WAIT;
    suspend(c);
    return MHD_YES;
}

/* The request's headers: refusals that need no body. */
static enum MHD_Result check_headers(srv_conn *c)
{
    srv_server *s = c->srv;
    proto_error e;
    if (s->draining) return fail(c, PROTO_E_UNAVAILABLE, "%s", "the server is shutting down");
    const char *ct =
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (proto_check_content_type(ct, &e) != PROTO_OK) return srv__http_error(c, &e);
    const char *cl =
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->cfg->max_body_bytes) {
        proto_error_set(&e, PROTO_E_PAYLOAD_TOO_LARGE, NULL,
                        "the body of %s bytes is above the limit of %lld", cl,
                        (long long)s->cfg->max_body_bytes);
        return srv__http_error(c, &e);
    }
    return MHD_YES;
}

static void append_body(srv_conn *c, const char *data, size_t n)
{
    size_t max = (size_t)c->srv->cfg->max_body_bytes;
    if (c->body_too_large || c->body_len + n > max) {
        /* Only a chunked body gets here (a Content-Length above the limit
         * was refused with the headers). libmicrohttpd cannot answer in the
         * middle of an upload, and reading the rest would let the client
         * decide how long this lasts: the 413 goes straight to the socket,
         * which is then shut (see srv__sock_abort). Without a tracked
         * socket, the rest is read and dropped and 413 answered at the end. */
        if (!c->body_too_large && c->sock) {
            srv__sock_abort(c->sock, c->srv->too_large);
            c->status = proto_err_status(PROTO_E_PAYLOAD_TOO_LARGE);
            c->outcome = proto_err_code(PROTO_E_PAYLOAD_TOO_LARGE);
            c->aborted = 1;
        }
        c->body_too_large = 1;
        free(c->body);
        c->body = NULL;
        c->body_len = 0;
        return;
    }
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 1024;
        while (cap < c->body_len + n + 1)
            cap *= 2;
        char *p = realloc(c->body, cap);
        if (!p) {
            c->body_too_large = 1;
            return;
        }
        c->body = p;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
}

enum MHD_Result srv__generate(srv_conn *c, const char *upload, size_t *upload_size)
{
    switch (c->phase) {
    case SRV_PH_BODY:
        if (!c->headers_seen) {
            c->headers_seen = 1;
            return check_headers(c);
        }
        if (*upload_size) {
            append_body(c, upload, *upload_size);
            *upload_size = 0;
            return MHD_YES;
        }
        if (c->aborted) return MHD_NO; /* answered on the socket already */
        if (c->body_too_large) {
            proto_error e;
            c->close = 1;
            proto_error_set(&e, PROTO_E_PAYLOAD_TOO_LARGE, NULL,
                            "the body is above the limit of %lld bytes",
                            (long long)c->srv->cfg->max_body_bytes);
            return srv__http_error(c, &e);
        }
        return submit(c);
    case SRV_PH_WAIT:
        return answer_json(c);
    default:
        return MHD_YES;
    }
}

/* ---- the loop's side -------------------------------------------------------- */

void srv__conn_wake(srv_conn *c)
{
    /* A JSON answer only needs the ending; iterations need not wake it. */
    if (!c->suspended || (c->phase == SRV_PH_WAIT && srv__job_state(c->job) == SRV_END_NONE))
        return;
    resume(c);
}

/* Whether the peer closed its end: a peek reads nothing away, and sees EOF
 * or a reset on a socket libmicrohttpd is not watching. */
static int peer_gone(srv_conn *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

void srv__generate_tick(srv_server *s, int64_t now)
{
    int64_t keepalive = s->cfg->sse_keepalive_ms * 1000000;
    for (srv_conn *c = s->conns; c; c = c->next) {
        srv_job *j = c->job;
        srv_end end = srv__job_state(j);
        if (end == SRV_END_NONE && j->deadline && now >= j->deadline) {
            srv__job_cancel(j, SRV_END_DEADLINE);
            resume(c);
            continue;
        }
        if (!c->suspended) continue;
        if (peer_gone(c)) {
            srv__job_cancel(j, SRV_END_CANCELLED);
            resume(c);
        } else if (c->phase == SRV_PH_STREAM && now - c->last_write >= keepalive) {
            c->keepalive_due = 1;
            resume(c);
        }
    }
}

void srv__generate_cancel_all(srv_server *s, srv_end why)
{
    for (srv_conn *c = s->conns; c; c = c->next) {
        srv__job_cancel(c->job, why);
        resume(c);
    }
}

void srv__generate_completed(srv_conn *c, enum MHD_RequestTerminationCode toe, srv_access *a)
{
    if (c->model) a->model = c->model->name;
    srv_job *j = c->job;
    if (!j) return;
    /* Whatever the reason the connection ended, unfinished work stops:
     * dropped from the queue now, or from the batch before its next
     * iteration. */
    if (srv__job_state(j) == SRV_END_NONE) srv__job_cancel(j, SRV_END_CANCELLED);
    srv_times t;
    int run = 0;
    srv__job_times(j, &t, &run);
    int64_t now = srv__now_ns();
    a->cells = j->q.cells;
    a->iterations = run;
    a->queued_ms = ms_between(t.arrival, t.started ? t.started : now);
    srv_end end = srv__job_state(j);
    if (end == SRV_END_CANCELLED || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        a->outcome = "cancelled";
    else
        a->outcome = c->outcome;
    srv__metric_observe(c->model->m.request_seconds, (double)(now - t.arrival) / 1e9);
    detach(c);
}
