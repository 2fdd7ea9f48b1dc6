/*
 * model_http.c - the model routes, on the loop thread: list the models
 * (GET /v1/models), show one (GET /v1/models/{name}), and the model
 * endpoints: load a model (POST /v1/models), unload one
 * (DELETE /v1/models/{name}) and reload one (POST /v1/models/{name}/reload).
 * The last three exist where model administration is on (the model_admin
 * setting) and take the API key like every route.
 *
 * A load or reload answers when it ended: the connection is suspended
 * while the loader runs (model.c) and resumed by srv__admin_wake. What
 * the daemon serves never waits for it; the model endpoints only read
 * their own small JSON body.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Largest body the model endpoints read: {path, name, precision}. */
#define BODY_MAX 65536

static enum MHD_Result fail(srv_conn *c, proto_err err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result fail(srv_conn *c, proto_err err, const char *field, const char *fmt, ...)
{
    char msg[PROTO_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    proto_error e;
    proto_error_set(&e, err, field, "%s", msg);
    return srv__http_error(c, &e);
}

static void suspend(srv_conn *c)
{
    MHD_suspend_connection(c->mhd);
    c->suspended = 1;
}

void srv__admin_wake(srv_conn *c)
{
    if (!c->suspended) return;
    c->suspended = 0;
    MHD_resume_connection(c->mhd);
}

void srv__admin_completed(srv_conn *c)
{
    if (c->model && c->model->waiter == c) c->model->waiter = NULL;
}

/* A model as /v1/models shows it, from weights w it holds a reference to;
 * kv holds room for 2 * their metadata count (keys, then values), which
 * the result borrows, as it borrows err (the last load's error). */
static proto_model_info model_info(srv_server *s, srv_model *m, srv_weights *w, const char **kv,
                                   char *err, size_t len)
{
    int nm = eng_model_meta_count(w->model);
    for (int k = 0; k < nm; k++)
        eng_model_meta_at(w->model, k, &kv[k], &kv[nm + k]);
    long generation = 0;
    int st = srv__model_state(m, &generation, err, len);
    static const char *const states[SRV_MODEL_STATES] = {"loading", "ready", "failed"};
    return (proto_model_info){.name = m->name,
                              .path = eng_model_path(w->model),
                              .is_default = m == s->models[0],
                              .precision = eng_precision_name(eng_model_precision(w->model)),
                              .isa = eng_isa_name(),
                              .state = states[st],
                              .last_error = err[0] ? err : NULL,
                              .generation = generation,
                              .hp = eng_model_hparams(w->model),
                              .n_meta = nm,
                              .meta_keys = kv,
                              .meta_values = kv + nm};
}

/* Errors of the last loads, one buffer per model listed. */
typedef char srv_errbuf[512];

enum MHD_Result srv__models_list(srv_conn *c)
{
    srv_server *s = c->srv;
    int n = 0, total = 0;
    size_t cap = (size_t)s->n_models + 1;
    proto_model_info *info = calloc(cap, sizeof *info);
    srv_model **ms = calloc(cap, sizeof *ms);
    srv_weights **ws = calloc(cap, sizeof *ws);
    srv_errbuf *errs = calloc(cap, sizeof *errs);
    /* Listed once they serve: their hyper-parameters are known then. The
     * weights are held until the body is rendered. */
    for (int i = 0; ws && ms && i < s->n_models; i++)
        if ((ws[n] = srv__model_weights(s->models[i]))) {
            ms[n] = s->models[i];
            total += 2 * eng_model_meta_count(ws[n++]->model);
        }
    const char **meta = calloc((size_t)total + 1, sizeof *meta); /* per model: keys, values */
    enum MHD_Result rc;
    if (!info || !ms || !ws || !errs || !meta) {
        rc = fail(c, PROTO_E_INTERNAL, NULL, "out of memory");
    } else {
        const char **next = meta;
        for (int k = 0; k < n; k++) {
            info[k] = model_info(s, ms[k], ws[k], next, errs[k], sizeof errs[k]);
            next += 2 * eng_model_meta_count(ws[k]->model);
        }
        proto_buf b;
        proto_buf_init(&b);
        proto_render_models(&b, info, n, &s->limits);
        rc = srv__http_reply_buf(c, 200, &b, "application/json");
    }
    for (int k = 0; ws && k < n; k++)
        srv__weights_unref(ws[k]);
    free(info);
    free(ms);
    free(ws);
    free(errs);
    free(meta);
    return rc;
}

enum MHD_Result srv__http_model(srv_conn *c, srv_model *m, int status)
{
    srv_weights *w = srv__model_weights(m);
    if (!w) {
        return fail(c, PROTO_E_UNAVAILABLE, NULL, "model '%s' is %s", m->name,
                    srv__model_state(m, NULL, NULL, 0) == SRV_MODEL_LOADING
                        ? "still loading"
                        : "not loaded: it failed to load");
    }
    const char **kv = calloc((size_t)2 * eng_model_meta_count(w->model) + 1, sizeof *kv);
    char err[512];
    if (!kv) {
        srv__weights_unref(w);
        return fail(c, PROTO_E_INTERNAL, NULL, "out of memory");
    }
    proto_model_info info = model_info(c->srv, m, w, kv, err, sizeof err);
    proto_buf b;
    proto_buf_init(&b);
    proto_render_model(&b, &info, &c->srv->limits);
    free(kv);
    srv__weights_unref(w);
    return srv__http_reply_buf(c, status, &b, "application/json");
}

enum MHD_Result srv__models_show(srv_conn *c)
{
    srv_model *m = srv__model_find(c->srv, c->model_name);
    if (!m) {
        return fail(c, PROTO_E_NOT_FOUND, NULL, "no model named '%.128s' (see /v1/models)",
                    c->model_name);
    }
    return srv__http_model(c, m, 200);
}

/* Keeps the body, up to BODY_MAX; the rest is read and dropped, and the
 * request refused once complete. */
static void append_body(srv_conn *c, const char *data, size_t n)
{
    if (c->body_too_large || c->body_len + n > BODY_MAX) {
        c->body_too_large = 1;
        return;
    }
    if (c->body_len + n + 1 > c->body_cap) {
        char *p = realloc(c->body, BODY_MAX + 1);
        if (!p) {
            c->body_too_large = 1;
            return;
        }
        c->body = p;
        c->body_cap = BODY_MAX + 1;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
}

/* What a body may say: {"path", "name", "precision"}, all strings. */
typedef struct admin_body {
    json_t *root;
    const char *path, *name, *precision_name;
    int precision; /* ENG_PRECISION_DEFAULT when not given */
} admin_body;

/* Parses c's body (empty: {}) allowing the keys in `allowed` ("path,name").
 * Returns 0, or -1 after queueing the refusal. */
static int parse_body(srv_conn *c, const char *allowed, admin_body *out)
{
    memset(out, 0, sizeof *out);
    out->precision = ENG_PRECISION_DEFAULT;
    if (c->body_len == 0) return 0;
    proto_error e;
    const char *ct =
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (proto_check_content_type(ct, &e) != PROTO_OK) return srv__http_error(c, &e), -1;
    json_error_t jerr;
    out->root = json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!out->root) {
        proto_error_set(&e, PROTO_E_INVALID_JSON, NULL, "invalid JSON at column %d: %s",
                        jerr.column, jerr.text);
        return srv__http_error(c, &e), -1;
    }
    if (!json_is_object(out->root)) {
        fail(c, PROTO_E_INVALID_TYPE, NULL, "the body must be a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(out->root, key, v)
    {
        size_t n = strlen(key);
        const char *p = strstr(allowed, key);
        if (!n || !p || (p > allowed && p[-1] != ',') || (p[n] != ',' && p[n] != '\0')) {
            fail(c, PROTO_E_INVALID_FIELD, key, "unknown field '%.64s' (this endpoint takes %s)",
                 key, allowed);
            return -1;
        }
        if (!json_is_string(v) || !json_string_length(v)) {
            fail(c, PROTO_E_INVALID_TYPE, key, "'%s' must be a non-empty string", key);
            return -1;
        }
        if (!strcmp(key, "path")) out->path = json_string_value(v);
        if (!strcmp(key, "name")) out->name = json_string_value(v);
        if (!strcmp(key, "precision")) out->precision_name = json_string_value(v);
    }
    if (out->name && !cfg_model_name_ok(out->name)) {
        fail(c, PROTO_E_INVALID_FIELD, "name",
             "invalid name '%.128s' (letters, digits, '.', '_', '-'; at most 127)", out->name);
        return -1;
    }
    if (out->precision_name && (out->precision = eng_precision_parse(out->precision_name)) == -1) {
        fail(c, PROTO_E_INVALID_FIELD, "precision", "unknown precision '%.64s' (%s)",
             out->precision_name, "f32, bf16 or int8");
        return -1;
    }
    return 0;
}

/* Waits for the load the connection started. */
static enum MHD_Result wait_for_load(srv_conn *c, srv_model *m, const char *path, int precision)
{
    int rc = srv__model_load_start(m, path, precision, c);
    if (rc == 1)
        return fail(c, PROTO_E_CONFLICT, NULL,
                    "model '%s' is loading already; retry once that load ended", m->name);
    if (rc < 0) return fail(c, PROTO_E_INTERNAL, NULL, "cannot start a loader");
    c->phase = SRV_PH_WAIT;
    suspend(c);
    return MHD_YES;
}

/* POST /v1/models {"path", "name"?, "precision"?}. */
static enum MHD_Result load(srv_conn *c, admin_body *b)
{
    srv_server *s = c->srv;
    if (!b->path) return fail(c, PROTO_E_INVALID_FIELD, "path", "'path' is required");
    char name[128], err[512];
    if (b->name)
        snprintf(name, sizeof name, "%s", b->name);
    else
        srv__model_name_of(name, sizeof name, b->path);
    if (!cfg_model_name_ok(name))
        return fail(c, PROTO_E_INVALID_FIELD, "name",
                    "the file name '%.128s' is not a model name; give one in 'name'", name);
    if (srv__model_find(s, name))
        return fail(c, PROTO_E_CONFLICT, "name",
                    "a model named '%s' is loaded already (POST /v1/models/%s/reload replaces "
                    "its weights)",
                    name, name);
    srv_model *m = srv__model_create(s, name, b->path, b->precision, 0, err, sizeof err);
    if (!m) return fail(c, PROTO_E_INTERNAL, NULL, "%s", err);
    c->model = m;
    srv__model_ref(m);
    enum MHD_Result rc = wait_for_load(c, m, NULL, m->precision);
    if (c->phase != SRV_PH_WAIT) srv__model_unload(m);
    return rc;
}

/* POST /v1/models/{name}/reload {"path"?, "precision"?}. */
static enum MHD_Result reload(srv_conn *c, srv_model *m, admin_body *b)
{
    return wait_for_load(c, m, b->path, b->precision_name ? b->precision : m->precision);
}

/* DELETE /v1/models/{name}. The default model stays: requests that name no
 * model need one, and it is the one every client can count on. */
static enum MHD_Result unload(srv_conn *c, srv_model *m)
{
    srv_server *s = c->srv;
    if (m == s->models[0])
        return fail(c, PROTO_E_CONFLICT, NULL,
                    "model '%s' is the default model and cannot be unloaded (reload it, or make "
                    "another the default with the first --model and restart)",
                    m->name);
    if (m->loading)
        return fail(c, PROTO_E_CONFLICT, NULL,
                    "model '%s' is loading; unload it once that load ended", m->name);
    srv_sched_stats st = srv__sched_stats(&m->sched);
    srv__model_unload(m);
    char detail[256];
    int n = st.queued + st.active;
    snprintf(detail, sizeof detail, "model '%s' is unloaded; %d request%s in flight finish%s on it",
             m->name, n, n == 1 ? "" : "s", n == 1 ? "es" : "");
    proto_buf out;
    proto_buf_init(&out);
    proto_render_status(&out, "unloaded", detail);
    size_t len = 0;
    char *body = proto_buf_steal(&out, &len);
    if (!body) return fail(c, PROTO_E_INTERNAL, NULL, "out of memory");
    return srv__http_reply(c, 200, body, len, "application/json");
}

/* The load ended: answer with the model, or why it failed. */
static enum MHD_Result answer(srv_conn *c)
{
    srv_model *m = c->model;
    if (!c->load_done) {
        suspend(c); /* woken early: keep waiting */
        return MHD_YES;
    }
    if (c->load_ok) return srv__http_model(c, m, c->route == SRV_ROUTE_LOAD ? 201 : 200);
    if (c->route == SRV_ROUTE_LOAD) {
        srv__model_unload(m);
        return fail(c, PROTO_E_LOAD_FAILED, NULL, "cannot load model '%s': %s", m->name,
                    c->load_error);
    }
    long gen = 0;
    srv__model_state(m, &gen, NULL, 0);
    if (gen == 0)
        return fail(c, PROTO_E_LOAD_FAILED, NULL, "cannot load model '%s': %s", m->name,
                    c->load_error);
    return fail(c, PROTO_E_LOAD_FAILED, NULL,
                "reload of model '%s' failed; generation %ld keeps serving: %s", m->name, gen,
                c->load_error);
}

/* The whole body is in: act on it. */
static enum MHD_Result act(srv_conn *c)
{
    srv_server *s = c->srv;
    if (s->draining) return fail(c, PROTO_E_UNAVAILABLE, NULL, "the server is shutting down");
    srv_model *m = NULL;
    if (c->route != SRV_ROUTE_LOAD) {
        m = srv__model_find(s, c->model_name);
        if (!m)
            return fail(c, PROTO_E_NOT_FOUND, NULL, "no model named '%.128s' (see /v1/models)",
                        c->model_name);
        c->model = m;
        srv__model_ref(m);
    }
    admin_body b;
    const char *allowed = c->route == SRV_ROUTE_LOAD     ? "path,name,precision"
                          : c->route == SRV_ROUTE_RELOAD ? "path,precision"
                                                         : "";
    if (parse_body(c, allowed, &b) < 0) {
        json_decref(b.root);
        return MHD_YES;
    }
    enum MHD_Result rc;
    if (c->route == SRV_ROUTE_LOAD)
        rc = load(c, &b);
    else if (c->route == SRV_ROUTE_RELOAD)
        rc = reload(c, m, &b);
    else
        rc = unload(c, m);
    json_decref(b.root);
    return rc;
}

enum MHD_Result srv__admin(srv_conn *c, const char *upload, size_t *upload_size)
{
    switch (c->phase) {
    case SRV_PH_BODY:
        if (!c->headers_seen) {
            c->headers_seen = 1;
            return MHD_YES;
        }
        if (*upload_size) {
            append_body(c, upload, *upload_size);
            *upload_size = 0;
            return MHD_YES;
        }
        if (c->body_too_large)
            return fail(c, PROTO_E_PAYLOAD_TOO_LARGE, NULL,
                        "the body is above the limit of %d bytes", BODY_MAX);
        return act(c);
    case SRV_PH_WAIT:
        return answer(c);
    default:
        if (*upload_size) *upload_size = 0;
        return MHD_YES;
    }
}
