/*
 * stats.c - the daemon's metrics: which families exist, their buckets, the
 * series each model's worker updates, and the gauges read at scrape time.
 * Names follow Prometheus conventions: base units (seconds, bytes), counters
 * end in _total, one family per quantity with labels for the breakdown.
 */
#include <stdio.h>
#include <string.h>

#include "server/procstat.h"
#include "server/server.h"

/* Request-level latencies: from a millisecond to two minutes. */
static const double request_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,      2.5,   5,    10,    30,   60,  120};
/* One batched iteration: from 50 us to 10 s. */
static const double forward_buckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                         0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                         0.5,     1,      2.5,     10};
static const double grid_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double cell_buckets[] = {1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};

static const char *const outcome_names[SRV_END_FAILED + 1] = {
    [SRV_END_NONE] = NULL,
    [SRV_END_DONE] = "completed",
    [SRV_END_CANCELLED] = "cancelled",
    [SRV_END_DEADLINE] = "deadline_exceeded",
    [SRV_END_SHUTDOWN] = "shutdown",
    [SRV_END_FAILED] = "failed",
};

static const char *const refused_names[SRV_REFUSED_N] = {
    [SRV_REFUSED_QUEUE_FULL] = "queue_full",
    [SRV_REFUSED_QUEUE_WORK] = "queue_work",
    [SRV_REFUSED_CLIENT_SHARE] = "client_share",
    [SRV_REFUSED_DEADLINE] = "deadline",
};

static const char *const state_names[SRV_MODEL_STATES] = {
    [SRV_MODEL_LOADING] = "loading", [SRV_MODEL_READY] = "ready", [SRV_MODEL_FAILED] = "failed"};

#define N(a) ((int)(sizeof a / sizeof a[0]))

/* The log's lines (log.c), by destination, read from its counters at
 * scrape time: drops show a stderr or file that cannot keep up. */
static int stats_log_init(srv_server *s)
{
    srv_registry *r = s->metrics.reg;
    srv_family *f[2] = {
        srv__family_add(r, SRV_COUNTER, "heptapod_log_lines_written_total",
                        "Log lines written, by destination (stderr, access_log file).", "log", NULL,
                        0),
        srv__family_add(r, SRV_COUNTER, "heptapod_log_lines_dropped_total",
                        "Log lines dropped because their destination could not take them in "
                        "time (buffer full, write error), by destination.",
                        "log", NULL, 0)};
    static const char *const sink_names[SRV_LOG_SINKS] = {"stderr", "access_log"};
    for (int k = 0; k < SRV_LOG_SINKS; k++) {
        /* The access-log file's series exist only when it has one. */
        if (k == SRV_LOG_ACCESS && s->access_fd <= 2) continue;
        const char *v[] = {sink_names[k]};
        for (int i = 0; i < 2; i++)
            if (!(s->metrics.log_lines[k][i] = srv__series(f[i], v))) return -1;
    }
    return 0;
}

static void stats_log_refresh(srv_server *s)
{
    for (int k = 0; k < SRV_LOG_SINKS; k++) {
        srv_log_counts c = srv__log_counts((srv_log_sink)k);
        srv__metric_set(s->metrics.log_lines[k][0], (double)c.written);
        srv__metric_set(s->metrics.log_lines[k][1], (double)c.dropped);
    }
}

int srv__stats_init(srv_server *s)
{
    srv_metrics *x = &s->metrics;
    srv_registry *r = x->reg = srv__registry_create();
    if (!r) return -1;
    x->http_requests = srv__family_add(r, SRV_COUNTER, "heptapod_http_requests_total",
                                       "HTTP requests answered, by endpoint and status.",
                                       "endpoint,status", NULL, 0);
    x->request_seconds =
        srv__family_add(r, SRV_HISTOGRAM, "heptapod_request_duration_seconds",
                        "POST /generate from the request's arrival until its response ended.",
                        "model", request_buckets, N(request_buckets));
    x->queue_seconds = srv__family_add(r, SRV_HISTOGRAM, "heptapod_queue_duration_seconds",
                                       "Time from a request's arrival until it joined a batch.",
                                       "model", request_buckets, N(request_buckets));
    x->first_iteration_seconds =
        srv__family_add(r, SRV_HISTOGRAM, "heptapod_time_to_first_iteration_seconds",
                        "Time from a request's arrival until its first refined grid was ready.",
                        "model", request_buckets, N(request_buckets));
    x->forward_seconds = srv__family_add(
        r, SRV_HISTOGRAM, "heptapod_forward_duration_seconds",
        "One batched refinement iteration (forward pass and sampling) of a worker, by the "
        "precision of the weights it ran.",
        "model,precision", forward_buckets, N(forward_buckets));
    x->batch_grids = srv__family_add(r, SRV_HISTOGRAM, "heptapod_batch_grids",
                                     "Grids stepped together in one batched iteration.", "model",
                                     grid_buckets, N(grid_buckets));
    x->batch_cells = srv__family_add(r, SRV_HISTOGRAM, "heptapod_batch_cells",
                                     "Cells run through the model in one batched iteration.",
                                     "model", cell_buckets, N(cell_buckets));
    x->forward_passes = srv__family_add(r, SRV_COUNTER, "heptapod_forward_passes_total",
                                        "Batched iterations run.", "model", NULL, 0);
    x->iterations =
        srv__family_add(r, SRV_COUNTER, "heptapod_iterations_total",
                        "Refinement iterations run, one per grid per batch.", "model", NULL, 0);
    x->cells =
        srv__family_add(r, SRV_COUNTER, "heptapod_cells_computed_total",
                        "Cells run through the model (grids with open cells).", "model", NULL, 0);
    x->outcomes = srv__family_add(r, SRV_COUNTER, "heptapod_generations_total",
                                  "Generations that left the queue or batch, by how they ended.",
                                  "model,outcome", NULL, 0);
    x->queue_depth = srv__family_add(r, SRV_GAUGE, "heptapod_queue_depth",
                                     "Requests waiting to join a batch.", "model", NULL, 0);
    x->queue_cells =
        srv__family_add(r, SRV_GAUGE, "heptapod_queue_cells",
                        "Cells of the requests waiting to join a batch.", "model", NULL, 0);
    x->queue_work = srv__family_add(
        r, SRV_GAUGE, "heptapod_queue_cell_iterations",
        "Work of the requests waiting to join a batch (height x width x iterations).", "model",
        NULL, 0);
    x->rate = srv__family_add(r, SRV_GAUGE, "heptapod_cell_iterations_per_second",
                              "Measured rate of a worker, averaged over recent forward passes "
                              "(0 until measured).",
                              "model", NULL, 0);
    x->refusals = srv__family_add(r, SRV_COUNTER, "heptapod_admission_refusals_total",
                                  "Requests refused admission to the queue, by reason.",
                                  "model,reason", NULL, 0);
    x->active = srv__family_add(r, SRV_GAUGE, "heptapod_active_requests",
                                "Requests in the batch of a worker.", "model", NULL, 0);
    x->active_cells =
        srv__family_add(r, SRV_GAUGE, "heptapod_active_cells",
                        "Cells of the requests in the batch of a worker.", "model", NULL, 0);
    x->model_info = srv__family_add(
        r, SRV_GAUGE, "heptapod_model_info",
        "A model's weights serving now (always 1), their settings as labels (isa: the "
        "instruction set of the engine's kernels).",
        "model,path,vocab_size,dim,depth,heads,tokenizer,max_height,max_width,threads,precision,"
        "isa",
        NULL, 0);
    x->model_state = srv__family_add(r, SRV_GAUGE, "heptapod_model_state",
                                     "1 for the state of a model's last load (loading, ready, "
                                     "failed), 0 for the others.",
                                     "model,state", NULL, 0);
    x->model_loads = srv__family_add(r, SRV_COUNTER, "heptapod_model_loads_total",
                                     "Loads of a model's weights (start, reload, SIGHUP), by "
                                     "result.",
                                     "model,result", NULL, 0);
    srv_family *ready = srv__family_add(r, SRV_GAUGE, "heptapod_ready",
                                        "1 when every model of the settings has loaded and "
                                        "the server is not draining.",
                                        NULL, NULL, 0);
    srv_family *draining =
        srv__family_add(r, SRV_GAUGE, "heptapod_draining",
                        "1 once SIGTERM or SIGINT started the drain.", NULL, NULL, 0);
    srv_family *build =
        srv__family_add(r, SRV_GAUGE, "heptapod_build_info", "Build of the server (always 1).",
                        "version,libmicrohttpd,libuv,compiler", NULL, 0);
    static const struct {
        srv_mtype type;
        const char *name, *help;
    } proc[6] = {
        {SRV_COUNTER, "process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds."},
        {SRV_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes."},
        {SRV_GAUGE, "process_virtual_memory_bytes", "Virtual memory size in bytes."},
        {SRV_GAUGE, "process_start_time_seconds",
         "Start time of the process since unix epoch in seconds."},
        {SRV_GAUGE, "process_open_fds", "Number of open file descriptors."},
        {SRV_GAUGE, "process_max_fds", "Maximum number of open file descriptors."},
    };
    for (int i = 0; i < 6; i++)
        x->process[i] = srv__series(
            srv__family_add(r, proc[i].type, proc[i].name, proc[i].help, NULL, NULL, 0), NULL);
    x->ready_now = srv__series(ready, NULL);
    x->draining_now = srv__series(draining, NULL);
    const char *bv[] = {SRV_VERSION, MHD_get_version(), uv_version_string(),
#ifdef __VERSION__
                        __VERSION__
#else
                        "unknown"
#endif
    };
    srv__metric_set(srv__series(build, bv), 1);
    if (stats_log_init(s) < 0) return -1;
    return x->http_requests && x->outcomes && x->model_info && x->model_state && x->model_loads &&
                   build && x->ready_now && x->queue_work && x->rate && x->refusals &&
                   x->draining_now && x->process[5]
               ? 0
               : -1;
}

void srv__stats_model(srv_server *s, srv_model *m)
{
    srv_metrics *x = &s->metrics;
    srv_model_metrics *mm = &m->m;
    const char *v[] = {m->name, NULL};
    mm->request_seconds = srv__series(x->request_seconds, v);
    mm->queue_seconds = srv__series(x->queue_seconds, v);
    mm->first_iteration_seconds = srv__series(x->first_iteration_seconds, v);
    mm->batch_grids = srv__series(x->batch_grids, v);
    mm->batch_cells = srv__series(x->batch_cells, v);
    mm->forward_passes = srv__series(x->forward_passes, v);
    mm->iterations = srv__series(x->iterations, v);
    mm->cells = srv__series(x->cells, v);
    mm->queue_depth = srv__series(x->queue_depth, v);
    mm->queue_cells = srv__series(x->queue_cells, v);
    mm->active = srv__series(x->active, v);
    mm->active_cells = srv__series(x->active_cells, v);
    mm->queue_work = srv__series(x->queue_work, v);
    mm->rate = srv__series(x->rate, v);
    for (int e = SRV_END_DONE; e <= SRV_END_FAILED; e++) {
        v[1] = outcome_names[e];
        mm->outcome[e] = srv__series(x->outcomes, v);
    }
    for (int r = 0; r < SRV_REFUSED_N; r++) {
        v[1] = refused_names[r];
        mm->refused[r] = srv__series(x->refusals, v);
    }
    v[1] = "failure";
    mm->loads[0] = srv__series(x->model_loads, v);
    v[1] = "success";
    mm->loads[1] = srv__series(x->model_loads, v);
    for (int k = 0; k < SRV_MODEL_STATES; k++) {
        v[1] = state_names[k];
        mm->state[k] = srv__series(x->model_state, v);
    }
}

void srv__stats_model_info(srv_server *s, srv_model *m, srv_weights *w)
{
    srv__series_remove(m->m.info);
    m->m.info = NULL;
    if (!w) return;
    const eng_hparams *hp = eng_model_hparams(w->model);
    char nums[6][24];
    snprintf(nums[0], 24, "%d", hp->vocab_size);
    snprintf(nums[1], 24, "%d", hp->dim);
    snprintf(nums[2], 24, "%d", hp->depth);
    snprintf(nums[3], 24, "%d", hp->heads);
    snprintf(nums[4], 24, "%d", hp->max_height);
    snprintf(nums[5], 24, "%d", hp->max_width);
    char threads[24];
    snprintf(threads, sizeof threads, "%d", eng_workspace_threads(w->ws));
    const char *v[] = {m->name,
                       eng_model_path(w->model),
                       nums[0],
                       nums[1],
                       nums[2],
                       nums[3],
                       hp->tokenizer == ENG_TOKENIZER_BYTE ? "byte" : "none",
                       nums[4],
                       nums[5],
                       threads,
                       eng_precision_name(eng_model_precision(w->model)),
                       eng_isa_name()};
    m->m.info = srv__series(s->metrics.model_info, v);
    srv__metric_set(m->m.info, 1);
}

srv_series *srv__stats_forward(srv_server *s, const char *model, const char *precision)
{
    const char *v[] = {model, precision};
    return srv__series(s->metrics.forward_seconds, v);
}

void srv__stats_model_gone(srv_server *s, srv_model *m)
{
    srv__stats_model_info(s, m, NULL);
    for (int k = 0; k < SRV_MODEL_STATES; k++) {
        srv__series_remove(m->m.state[k]);
        m->m.state[k] = NULL;
    }
}

void srv__stats_refresh(srv_server *s)
{
    srv_metrics *x = &s->metrics;
    srv_procstat p = srv__procstat_read();
    double vals[6] = {p.cpu_seconds, p.resident_bytes, p.virtual_bytes,
                      p.start_time,  p.open_fds,       p.max_fds};
    for (int i = 0; i < 6; i++)
        if (vals[i] >= 0) srv__metric_set(x->process[i], vals[i]);
    srv__metric_set(x->ready_now, s->ready);
    srv__metric_set(x->draining_now, s->draining);
    stats_log_refresh(s);
    for (int i = 0; i < s->n_models; i++) {
        srv_model *m = s->models[i];
        int state = srv__model_state(m, NULL, NULL, 0);
        for (int k = 0; k < SRV_MODEL_STATES; k++)
            srv__metric_set(m->m.state[k], k == state);
        srv_sched_stats st = srv__sched_stats(&m->sched);
        srv__metric_set(m->m.queue_depth, st.queued);
        srv__metric_set(m->m.queue_cells, st.queued_cells);
        srv__metric_set(m->m.active, st.active);
        srv__metric_set(m->m.active_cells, st.active_cells);
        srv__metric_set(m->m.queue_work, (double)st.queued_work);
        srv__metric_set(m->m.rate, st.rate);
    }
}

void srv__stats_request(srv_server *s, const char *endpoint, int status)
{
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    const char *v[] = {endpoint, code};
    srv__metric_add(srv__series(s->metrics.http_requests, v), 1);
}
