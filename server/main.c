/*
 * main.c - `heptapod serve`: settings, then the daemon's life in order:
 * listen (so /healthz answers while models load), load every model on its
 * own worker, serve, and on SIGTERM/SIGINT drain and shut down cleanly.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/auth.h"
#include "server/server.h"

/* A model's name, unless its entry names it, is its file name without the
 * directory and the .safetensors extension: what requests put in "model". */
void srv__model_name_of(char *out, size_t len, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, len, "%s", base);
    size_t n = strlen(out);
    const char *ext = ".safetensors";
    size_t e = strlen(ext);
    if (n > e && !strcmp(out + n - e, ext)) out[n - e] = '\0';
}

static int open_access_log(const char *path)
{
    if (!path[0]) return -1;
    if (!strcmp(path, "-")) return STDERR_FILENO;
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* The models of the settings, each with its scheduler and worker, not
 * loaded yet. An entry's precision and name are checked here, before the
 * daemon listens, with a message quoting the entry. */
static int setup_models(srv_server *s)
{
    const cfg_settings *cfg = s->cfg;
    for (int i = 0; i < cfg->n_model; i++) {
        cfg_model_spec spec;
        char err[512], name[128];
        if (cfg_model_parse(cfg->model[i], &spec, err, sizeof err)) {
            fprintf(stderr, "heptapod serve: %s\n", err);
            return -1;
        }
        int precision = ENG_PRECISION_DEFAULT;
        if (spec.precision && (precision = eng_precision_parse(spec.precision)) < 0) {
            fprintf(stderr,
                    "heptapod serve: model entry '%s': unknown precision '%s' (f32, bf16 or "
                    "int8)\n",
                    cfg->model[i], spec.precision);
            cfg_model_spec_free(&spec);
            return -1;
        }
        if (spec.name)
            snprintf(name, sizeof name, "%s", spec.name);
        else
            srv__model_name_of(name, sizeof name, spec.path);
        srv_model *other = srv__model_find(s, name);
        if (other) {
            fprintf(stderr,
                    "heptapod serve: two models are named '%s' (%s and %s); name one with "
                    "PATH:name=NAME\n",
                    name, other->path, spec.path);
            cfg_model_spec_free(&spec);
            return -1;
        }
        srv_model *m = srv__model_create(s, name, spec.path, precision, 1, err, sizeof err);
        cfg_model_spec_free(&spec);
        if (!m) {
            fprintf(stderr, "heptapod serve: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static void teardown(srv_server *s)
{
    srv__models_stop(s); /* nothing to wait for unless the start failed midway */
    srv__models_close(s);
    srv__registry_free(s->metrics.reg);
    srv__listen_free(s);
    srv__log_stop(1000); /* last: flush what is left, bounded in time */
    if (s->access_fd > STDERR_FILENO) close(s->access_fd);
}

/* After the loop stopped: nothing may still run or hold a job. Workers exit
 * once their scheduler is closed and empty; connections end last. */
static void shut_down(srv_server *s)
{
    srv__generate_cancel_all(s, SRV_END_SHUTDOWN);
    srv__models_stop(s);
    srv__loop_drain_mail(s);
    srv__http_stop(s);
    srv__loop_drain_mail(s);
    srv__loop_close(s);
    for (int i = 0; i < s->n_listeners; i++)
        srv__listen_close(&s->listeners[i]);
}

/* Connections are descriptors: take the hard limit the administrator
 * allows before max_connections is sized from it. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int cli_serve(int argc, char **argv)
{
    cfg_settings cfg;
    char err[512];
    raise_nofile();
    int rc = cfg_load(&cfg, argc, argv, err, sizeof err);
    if (rc == CFG_HELP) {
        cfg_print_help(stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "heptapod serve: %s\n", err);
        return 2;
    }
    int level = srv__log_level_parse(cfg.log_level);
    srv__log_level = level >= SRV_LOG_OFF ? (srv_level)level : SRV_LOG_INFO;
    cfg_hide_secrets(argc, argv); /* wipe --api-key from /proc/PID/cmdline */
    srv__auth_announce(&cfg);

    srv_server s;
    memset(&s, 0, sizeof s);
    s.cfg = &cfg;
    s.reserve_fd = -1;
    s.model_admin =
        !strcmp(cfg.model_admin, "on") || (!strcmp(cfg.model_admin, "auto") && cfg.n_api_keys > 0);
    s.limits = (proto_limits){.max_iterations = (int)cfg.max_iterations,
                              .max_cells = cfg.max_batch_cells,
                              .max_deadline_ms = cfg.max_deadline_ms};
    if (getrandom(&s.id_seed, sizeof s.id_seed, 0) != sizeof s.id_seed)
        s.id_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    s.access_fd = open_access_log(cfg.access_log);
    if (cfg.access_log[0] && s.access_fd < 0) {
        fprintf(stderr, "heptapod serve: cannot open the access log %s\n", cfg.access_log);
        cfg_free(&cfg);
        return 2;
    }
    if (srv__log_start((size_t)cfg.log_buffer_bytes, s.access_fd) < 0)
        SRV_LOG(SRV_LOG_WARN, "no log writer thread: logging writes directly");
    int ok = srv__stats_init(&s) == 0;
    if (!ok) fprintf(stderr, "heptapod serve: out of memory for the metrics\n");
    if (!ok || setup_models(&s) < 0) {
        teardown(&s);
        cfg_free(&cfg);
        return 2;
    }
    if (srv__loop_init(&s) < 0 || srv__http_start(&s) < 0 || srv__loop_attach_mhd(&s) < 0) {
        SRV_LOG(SRV_LOG_ERROR, "cannot start the server");
        srv__http_stop(&s);
        srv__loop_close(&s);
        for (int i = 0; i < s.n_listeners; i++)
            srv__listen_close(&s.listeners[i]);
        teardown(&s);
        cfg_free(&cfg);
        return 1;
    }
    SRV_LOG(SRV_LOG_INFO,
            "listening on http://%s%s%s:%d (heptapod %s, %d model%s, %lld threads each, "
            "%lld connections)",
            strchr(cfg.host, ':') ? "[" : "", cfg.host, strchr(cfg.host, ':') ? "]" : "",
            s.listeners[0].port, SRV_VERSION, s.n_models, s.n_models == 1 ? "" : "s",
            (long long)cfg.threads, (long long)cfg.max_connections);
    if (s.n_listeners > 1) {
        const char *h = cfg.admin_host[0] ? cfg.admin_host : cfg.host;
        SRV_LOG(SRV_LOG_INFO, "admin listening on http://%s%s%s:%d (/healthz, /readyz, /metrics)",
                strchr(h, ':') ? "[" : "", h, strchr(h, ':') ? "]" : "", s.listeners[1].port);
    }
    if (s.model_admin)
        SRV_LOG(SRV_LOG_INFO, "model administration on: POST /v1/models, POST "
                              "/v1/models/NAME/reload, DELETE /v1/models/NAME (with the API key)");
    rc = 0;
    for (int i = 0; i < s.n_models && rc == 0; i++)
        if (srv__model_load_start(s.models[i], NULL, s.models[i]->precision, NULL) != 0) {
            SRV_LOG(SRV_LOG_ERROR, "cannot start loading model %s", s.models[i]->name);
            rc = 1;
        }
    if (rc == 0) rc = srv__loop_run(&s);
    shut_down(&s);
    SRV_LOG(SRV_LOG_INFO, "stopped (exit code %d)", rc);
    teardown(&s);
    cfg_free(&cfg);
    return rc;
}
