/*
 * model.c - models at run time: creating one, loading its weights on a
 * loader thread, swapping them in, unloading, and freeing what nothing
 * holds any more. The rules are in model.h.
 *
 * A load, first or not, runs the same way: the loop starts a loader thread
 * with the path and precision to load; the loader maps the checkpoint,
 * checks the memory and makes the workspace, then under the model's lock
 * either swaps the new weights in (state `ready`) or records the error
 * (state `failed`, the old weights untouched), and wakes the loop. The loop
 * joins it (srv__models_poll), keeps the path and precision that worked,
 * counts and logs the result, and answers the request that asked for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/log.h"
#include "server/server.h"

/* ---- weights ---------------------------------------------------------------- */

void srv__weights_ref(srv_weights *w)
{
    atomic_fetch_add(&w->refs, 1);
}

void srv__weights_unref(srv_weights *w)
{
    if (!w || atomic_fetch_sub(&w->refs, 1) != 1) return;
    eng_workspace_free(w->ws);
    eng_model_free(w->model);
    free(w);
}

/* "7.9 GiB", "512.0 MiB": sizes in messages. */
static void fmt_bytes(char *out, size_t len, double bytes)
{
    if (bytes >= 1073741824.0)
        snprintf(out, len, "%.1f GiB", bytes / 1073741824.0);
    else
        snprintf(out, len, "%.1f MiB", bytes / 1048576.0);
}

/* Refuses, before allocating, a workspace that with the weights (and the
 * weights still serving, which a reload keeps until it succeeds) would not
 * fit in the memory the process may use: allocation would likely succeed
 * (memory is overcommitted) and the first large batch then meet the OOM
 * killer instead of a message. */
static int check_memory(srv_model *m, const eng_model *em, int cells, int threads, char *err,
                        size_t len)
{
    const char *source = NULL;
    int64_t limit = cfg_memory_limit(&cfg_host_default, &source);
    size_t ws = eng_workspace_bytes(em, cells, threads);
    double weights = (double)eng_model_bytes(em), old = 0;
    if (limit <= 0) return 0; /* unknown: nothing to check against */
    srv_weights *cur = srv__model_weights(m);
    if (cur) {
        size_t b = eng_workspace_bytes(cur->model, cells, threads);
        old = (double)eng_model_bytes(cur->model) + (b != SIZE_MAX ? (double)b : 0);
        srv__weights_unref(cur);
    }
    if (ws != SIZE_MAX && (double)ws + weights + old <= (double)limit) return 0;
    char need[32] = "more than 16 EiB", have[32], w[32], o[64] = "";
    if (ws != SIZE_MAX) fmt_bytes(need, sizeof need, (double)ws);
    fmt_bytes(w, sizeof w, weights);
    fmt_bytes(have, sizeof have, (double)limit);
    if (old > 0) {
        char ob[32];
        fmt_bytes(ob, sizeof ob, old);
        snprintf(o, sizeof o, ", and %s still serving", ob);
    }
    snprintf(err, len,
             "max_batch_cells %d needs a workspace of %s for model %s (plus %s of weights%s); the "
             "memory limit is %s (%s); lower --max-batch-cells",
             cells, need, m->name, w, o, have, source);
    return -1;
}

/* Loader thread: new weights from ld's path, or NULL with ld->error set. */
static srv_weights *weights_load(srv_model *m, srv_load *ld)
{
    const cfg_settings *cfg = m->srv->cfg;
    eng_load_opts opts = ENG_LOAD_OPTS_INIT;
    opts.precision = ld->precision;
    srv_weights *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(ld->error, sizeof ld->error, "out of memory");
        return NULL;
    }
    atomic_init(&w->refs, 1);
    w->model = eng_model_load_opts(ld->path, &opts, ld->error, sizeof ld->error);
    /* One request never exceeds the budget (proto's max_cells), so the
     * workspace holds exactly one full batch. */
    int cells = (int)cfg->max_batch_cells, threads = (int)cfg->threads;
    if (w->model && check_memory(m, w->model, cells, threads, ld->error, sizeof ld->error) == 0)
        w->ws = eng_workspace_create(w->model, cells, threads, ld->error, sizeof ld->error);
    if (!w->ws) {
        srv__weights_unref(w);
        return NULL;
    }
    w->forward_seconds =
        srv__stats_forward(m->srv, m->name, eng_precision_name(eng_model_precision(w->model)));
    return w;
}

static void *loader_main(void *arg)
{
    srv_model *m = arg;
    srv_load *ld = &m->load;
    int64_t t0 = srv__now_ns();
    srv_weights *w = weights_load(m, ld), *old = NULL;
    ld->seconds = (double)(srv__now_ns() - t0) / 1e9;
    pthread_mutex_lock(&m->mu);
    if (w) {
        old = m->cur;
        m->cur = w;
        w->generation = ++m->generation;
        m->state = SRV_MODEL_READY;
        m->error[0] = '\0';
    } else {
        m->state = SRV_MODEL_FAILED;
        snprintf(m->error, sizeof m->error, "%s", ld->error);
    }
    pthread_mutex_unlock(&m->mu);
    ld->ok = w != NULL;
    /* Freed now unless jobs still run on them: then by the last of those. */
    srv__weights_unref(old);
    atomic_store(&m->loaded, 1);
    srv__mail_wake(m->srv);
    return NULL;
}

/* ---- the list ------------------------------------------------------------------- */

srv_model *srv__model_find(srv_server *s, const char *name)
{
    for (int i = 0; i < s->n_models; i++)
        if (!strcmp(s->models[i]->name, name)) return s->models[i];
    return NULL;
}

void srv__model_ref(srv_model *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void srv__model_unref(srv_model *m)
{
    /* Freed by the loop (srv__models_poll) once unloaded and at zero. */
    if (m) atomic_fetch_sub(&m->refs, 1);
}

srv_weights *srv__model_weights(srv_model *m)
{
    pthread_mutex_lock(&m->mu);
    srv_weights *w = m->cur;
    if (w) srv__weights_ref(w);
    pthread_mutex_unlock(&m->mu);
    return w;
}

int srv__model_state(srv_model *m, long *generation, char *error, size_t len)
{
    pthread_mutex_lock(&m->mu);
    int st = m->state;
    if (generation) *generation = m->generation;
    if (error && len) snprintf(error, len, "%s", m->error);
    pthread_mutex_unlock(&m->mu);
    return st;
}

static void model_free(srv_model *m)
{
    srv__sched_destroy(&m->sched);
    srv__weights_unref(m->cur);
    pthread_mutex_destroy(&m->mu);
    free(m->load.path);
    free(m->path);
    free(m);
}

srv_model *srv__model_create(srv_server *s, const char *name, const char *path, int precision,
                             int from_config, char *err, size_t errlen)
{
    const cfg_settings *cfg = s->cfg;
    if (s->n_models == s->cap_models) {
        int cap = s->cap_models ? 2 * s->cap_models : 4;
        srv_model **list = realloc(s->models, (size_t)cap * sizeof *list);
        if (!list) goto oom;
        s->models = list;
        s->cap_models = cap;
    }
    srv_model *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    if (!(m->path = strdup(path))) {
        free(m);
        goto oom;
    }
    m->srv = s;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->precision = precision;
    m->from_config = from_config;
    atomic_init(&m->refs, 1); /* the list's */
    atomic_init(&m->loaded, 0);
    atomic_init(&m->worker_done, 0);
    pthread_mutex_init(&m->mu, NULL);
    m->state = SRV_MODEL_LOADING;
    srv_sched_limits lim = {.max_queue = (int)cfg->max_queue,
                            .max_queue_work = cfg->max_queue_cell_iterations,
                            .max_batch_cells = (int)cfg->max_batch_cells,
                            .max_batch_grids = 0,
                            .batch_wait_ns = cfg->max_batch_wait_ms * 1000000};
    if (srv__sched_init(&m->sched, &lim) < 0) {
        snprintf(err, errlen, "invalid queue or batch limits");
        pthread_mutex_destroy(&m->mu);
        free(m->path);
        free(m);
        return NULL;
    }
    srv__stats_model(s, m);
    if (srv__worker_start(m) < 0) {
        snprintf(err, errlen, "cannot start the worker of model %s", name);
        model_free(m);
        return NULL;
    }
    s->models[s->n_models++] = m;
    return m;
oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

/* ---- loads ------------------------------------------------------------------------ */

int srv__model_load_start(srv_model *m, const char *path, int precision, srv_conn *waiter)
{
    if (m->loading) return 1;
    srv_load *ld = &m->load;
    free(ld->path);
    memset(ld, 0, sizeof *ld);
    ld->path = strdup(path ? path : m->path);
    ld->precision = precision;
    if (!ld->path) return -1;
    pthread_mutex_lock(&m->mu);
    int before = m->state;
    m->state = SRV_MODEL_LOADING;
    pthread_mutex_unlock(&m->mu);
    atomic_store(&m->loaded, 0);
    if (pthread_create(&m->loader, NULL, loader_main, m) != 0) {
        pthread_mutex_lock(&m->mu);
        m->state = before;
        pthread_mutex_unlock(&m->mu);
        return -1;
    }
    m->loading = 1;
    m->waiter = waiter;
    return 0;
}

/* The loader of m ended: join it and act on its result. */
static void load_finished(srv_server *s, srv_model *m)
{
    pthread_join(m->loader, NULL);
    m->loading = 0;
    atomic_store(&m->loaded, 0);
    srv_load *ld = &m->load;
    const char *prec = NULL;
    if (ld->ok) {
        /* The path and precision that worked are what the next reload reads. */
        free(m->path);
        m->path = ld->path;
        ld->path = NULL;
        m->precision = ld->precision;
        m->loads_ok++;
        srv_weights *w = srv__model_weights(m);
        prec = w ? eng_precision_name(eng_model_precision(w->model)) : "?";
        if (!m->unloaded) srv__stats_model_info(s, m, w);
        SRV_LOG(SRV_LOG_INFO,
                "model %s loaded from %s in %.3f s (generation %ld, %s, %s kernels, %d threads, "
                "%d cells per batch)",
                m->name, m->path, ld->seconds, w ? w->generation : 0, prec, eng_isa_name(),
                w ? eng_workspace_threads(w->ws) : 0, w ? eng_workspace_max_cells(w->ws) : 0);
        srv__weights_unref(w);
    } else {
        m->loads_failed++;
        long gen = 0;
        srv__model_state(m, &gen, NULL, 0);
        SRV_LOG(gen > 0 ? SRV_LOG_WARN : SRV_LOG_ERROR, "cannot load model %s: %s%s", m->name,
                ld->error, gen > 0 ? " (the weights loaded before keep serving)" : "");
    }
    srv__metric_add(m->m.loads[ld->ok ? 1 : 0], 1);
    srv_conn *c = m->waiter;
    m->waiter = NULL;
    if (c) {
        c->load_done = 1;
        c->load_ok = ld->ok;
        snprintf(c->load_error, sizeof c->load_error, "%s", ld->ok ? "" : ld->error);
        srv__admin_wake(c);
    }
}

/* ---- unloading -------------------------------------------------------------------- */

void srv__model_unload(srv_model *m)
{
    srv_server *s = m->srv;
    int i = 0;
    while (i < s->n_models && s->models[i] != m)
        i++;
    if (i == s->n_models) return;
    memmove(&s->models[i], &s->models[i + 1], (size_t)(s->n_models - i - 1) * sizeof *s->models);
    s->n_models--;
    m->unloaded = 1;
    m->retired_next = s->retired;
    s->retired = m;
    srv__stats_model_gone(s, m);
    srv_sched_stats st = srv__sched_stats(&m->sched);
    srv__sched_close(&m->sched); /* queued and active requests still finish */
    srv__model_unref(m);         /* the list's */
    SRV_LOG(SRV_LOG_INFO, "model %s unloaded (%d request%s in flight finish on it)", m->name,
            st.queued + st.active, st.queued + st.active == 1 ? "" : "s");
}

/* Frees the unloaded models that nothing holds any more. */
static void reap(srv_server *s)
{
    for (srv_model **p = &s->retired; *p;) {
        srv_model *m = *p;
        if (m->loading || !atomic_load(&m->worker_done) || atomic_load(&m->refs) > 0) {
            p = &m->retired_next;
            continue;
        }
        *p = m->retired_next;
        if (m->thread_started) pthread_join(m->thread, NULL);
        model_free(m);
    }
}

/* ---- the loop's side ---------------------------------------------------------------- */

int srv__models_poll(srv_server *s)
{
    for (int i = 0; i < s->n_models; i++) {
        srv_model *m = s->models[i];
        if (m->loading && atomic_load(&m->loaded)) load_finished(s, m);
    }
    for (srv_model *m = s->retired; m; m = m->retired_next)
        if (m->loading && atomic_load(&m->loaded)) load_finished(s, m);
    reap(s);
    /* Readiness follows the models of the settings: ready once each has
     * served, never again after a drain began. Models loaded over HTTP do
     * not take a serving replica out of rotation while they load. */
    int ready = 1;
    for (int i = 0; i < s->n_models; i++) {
        srv_model *m = s->models[i];
        long gen = 0;
        int st = srv__model_state(m, &gen, NULL, 0);
        if (!m->from_config || gen > 0) continue;
        if (st == SRV_MODEL_FAILED && !m->loading) return -1; /* logged by load_finished */
        ready = 0;
    }
    int now = ready && !s->draining;
    if (now && !s->ready)
        SRV_LOG(SRV_LOG_INFO, "ready: %d model%s loaded", s->n_models, s->n_models == 1 ? "" : "s");
    s->ready = now;
    return 0;
}

void srv__models_reload_all(srv_server *s)
{
    int started = 0, busy = 0;
    for (int i = 0; i < s->n_models; i++) {
        srv_model *m = s->models[i];
        int rc = srv__model_load_start(m, NULL, m->precision, NULL);
        started += rc == 0;
        busy += rc == 1;
        if (rc < 0) SRV_LOG(SRV_LOG_ERROR, "model %s: cannot start a loader", s->models[i]->name);
    }
    SRV_LOG(SRV_LOG_INFO, "reloading %d model%s from their paths%s", started,
            started == 1 ? "" : "s", busy ? " (some were loading already)" : "");
}

static void stop_one(srv_server *s, srv_model *m)
{
    if (m->loading) load_finished(s, m);
    srv__sched_close(&m->sched);
    if (m->thread_started) pthread_join(m->thread, NULL);
    m->thread_started = 0;
}

void srv__models_stop(srv_server *s)
{
    /* Loaders first (their waiters get an answer before libmicrohttpd
     * stops), then the workers, which exit once their closed queues are
     * empty (the caller cancelled what was in flight). */
    for (int i = 0; i < s->n_models; i++)
        stop_one(s, s->models[i]);
    for (srv_model *m = s->retired; m; m = m->retired_next)
        stop_one(s, m);
}

void srv__models_close(srv_server *s)
{
    for (int i = 0; i < s->n_models; i++)
        model_free(s->models[i]);
    while (s->retired) {
        srv_model *m = s->retired;
        s->retired = m->retired_next;
        model_free(m);
    }
    free(s->models);
    s->models = NULL;
    s->n_models = s->cap_models = 0;
}
