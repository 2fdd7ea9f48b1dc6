/*
 * config.h - every setting of `heptapod serve`, in one table.
 *
 * Each setting comes, in increasing precedence, from its default, the JSON
 * config file (--config / HEPTAPOD_CONFIG), its HEPTAPOD_* environment
 * variable, then its command-line flag. Flags take `--name value` or
 * `--name=value`; a flag is spelt with '-' between words (--max-queue), and
 * the '_' spelling (--max_queue) is accepted too. Booleans are true/false/1/0
 * (also yes/no/on/off); durations are integers with the unit in the name
 * (_ms, _s). `model` is a list: the flag repeats, the environment variable
 * takes a comma-separated list, the file takes a string or an array of
 * strings; the first model is the default one, and a higher-precedence
 * source replaces the whole list. Each entry is a path with optional
 * options after a last ':' (cfg_model_parse): `models/a.safetensors:
 * precision=int8,name=a`. In HEPTAPOD_MODEL's comma list an item shaped
 * like an option (`name=a`: a lower-case key and '=') continues the option
 * list of the entry before it, if that entry has one.
 *
 * An invalid setting is refused with a message that names the source and the
 * setting, e.g. "HEPTAPOD_PORT: 70000 is above the maximum 65535",
 * "--threads: 'x' is not an integer", "heptapod.json: unknown setting 'prot'".
 * Environment variables starting HEPTAPOD_ that are not settings are ignored
 * (the test harness and deployments set others, e.g. HEPTAPOD_BIN); unknown
 * keys in the file and unknown flags are refused.
 */
#ifndef HEPTAPOD_CONFIG_H
#define HEPTAPOD_CONFIG_H

#include <stdint.h>
#include <stdio.h>

typedef enum cfg_type {
    CFG_STRING, /* char *, never NULL after cfg_load ("" when empty) */
    CFG_INT,    /* int64_t within [min, max] */
    CFG_BOOL,   /* int, 0 or 1 */
    CFG_ENUM,   /* char *, one of the '|'-separated choices */
    CFG_LIST    /* char ** with a count: the `model` paths */
} cfg_type;

/*
 * The table: X(name, type, default, min, max, choices, help).
 * Env name is "HEPTAPOD_" + upper-case name, flag "--" + name with '-' for '_'.
 * Defaults are strings, parsed like any other source. min/max bound a
 * CFG_INT's value and a CFG_STRING's length (max 0: no limit).
 * threads = 0 means "automatic": cfg_load replaces it by
 * max(1, CPUs / number of models), so that workers x threads <= CPUs, where
 * CPUs is what the process may use (cfg_cpu_count: the online cores, capped
 * by the affinity mask and the cgroup's CPU quota), not the node's size.
 *
 * API keys: api_key is a comma-separated list (spaces around a key are
 * trimmed; an empty entry is refused) that follows the precedence above
 * like any setting, so HEPTAPOD_API_KEY replaces the file's list and
 * --api-key replaces both; the keys of api_key_file (one per line, blank
 * lines and '#' comments skipped, surrounding whitespace and CR trimmed) are
 * added to that list. A request may present any of the resulting keys. A
 * key is visible ASCII without spaces or commas. Prefer api_key_file or
 * HEPTAPOD_API_KEY: a flag is visible to every local user in
 * /proc/PID/cmdline until cfg_hide_secrets wipes it.
 */
#define CFG_SETTINGS(X)                                                                            \
    X(config, CFG_STRING, "", 0, 0, NULL, "path of a JSON file of settings (empty: none)")         \
    X(host, CFG_STRING, "127.0.0.1", 1, 0, NULL, "address to listen on")                           \
    X(port, CFG_INT, "8080", 0, 65535, NULL, "TCP port to listen on (0: any free port)")           \
    X(model, CFG_LIST, "models/default.safetensors,models/sudoku.safetensors", 0, 0, NULL,         \
      "checkpoint to serve, PATH[:precision=f32|bf16|int8][,name=NAME]; repeat for more; the "     \
      "first is the default model")                                                                \
    X(model_admin, CFG_ENUM, "auto", 0, 0, "auto|on|off",                                          \
      "load, unload and reload models over HTTP (auto: only when an API key is required)")         \
    X(threads, CFG_INT, "0", 0, 1024, NULL,                                                        \
      "engine threads per model worker (0: cores / models, at least 1)")                           \
    X(max_queue, CFG_INT, "64", 1, 1000000, NULL,                                                  \
      "requests waiting per model before new ones get 429 with Retry-After")                       \
    X(max_batch_cells, CFG_INT, "4096", 1, 16777216, NULL,                                         \
      "cells of all grids in one batched forward pass; bounds one request's cells too")            \
    X(max_batch_wait_ms, CFG_INT, "0", 0, 10000, NULL,                                             \
      "longest wait for more requests before an idle worker starts a batch")                       \
    X(max_body_bytes, CFG_INT, "1048576", 64, 1073741824, NULL,                                    \
      "largest request body accepted (413 above)")                                                 \
    X(max_iterations, CFG_INT, "64", 1, 100000, NULL, "most refinement iterations per request")    \
    X(default_deadline_ms, CFG_INT, "120000", 0, 86400000, NULL,                                   \
      "deadline of requests that name none (0: none); 504 when it passes")                         \
    X(max_deadline_ms, CFG_INT, "0", 0, 86400000, NULL,                                            \
      "largest deadline_ms a request may ask for (0: no limit)")                                   \
    X(drain_timeout_s, CFG_INT, "30", 0, 3600, NULL,                                               \
      "on SIGTERM, how long in-flight requests may finish before exit")                            \
    X(retry_after_s, CFG_INT, "1", 1, 3600, NULL, "Retry-After seconds sent with 429 and 503")     \
    X(max_connections, CFG_INT, "0", 0, 1000000, NULL,                                             \
      "concurrent HTTP connections (0: sized from RLIMIT_NOFILE); more are refused with 503")      \
    X(max_connections_per_client, CFG_INT, "64", 0, 1000000, NULL,                                 \
      "concurrent connections from one client address (0: no limit); more get 429")                \
    X(header_timeout_ms, CFG_INT, "10000", 100, 3600000, NULL,                                     \
      "longest wait for a request's headers, from accept or the previous response (408)")          \
    X(body_timeout_ms, CFG_INT, "30000", 100, 3600000, NULL,                                       \
      "longest time to receive a request body once its headers are in (408)")                      \
    X(idle_timeout_s, CFG_INT, "60", 1, 3600, NULL,                                                \
      "close a connection that neither sends nor accepts bytes for this long")                     \
    X(admin_host, CFG_STRING, "", 0, 0, NULL,                                                      \
      "address of the admin listener (empty: the same as host)")                                   \
    X(admin_port, CFG_INT, "-1", -1, 65535, NULL,                                                  \
      "port of the admin listener for /healthz, /readyz, /metrics (-1: none; 0: any free port)")   \
    X(admin_max_connections, CFG_INT, "64", 1, 1000000, NULL,                                      \
      "concurrent connections of the admin listener")                                              \
    X(max_queue_cell_iterations, CFG_INT, "4194304", 1, 1099511627776, NULL,                       \
      "work waiting per model (height x width x iterations summed) before new requests get 429")   \
    X(client_header, CFG_STRING, "", 0, 0, NULL,                                                   \
      "request header naming the client for fair sharing, e.g. X-Forwarded-For behind a proxy "    \
      "(empty: the API key, else the peer address)")                                               \
    X(api_key, CFG_STRING, "", 0, 0, NULL,                                                         \
      "comma-separated keys; if set, requests need 'Authorization: Bearer KEY' or "                \
      "'X-Api-Key: KEY' (prefer api_key_file: a flag is visible to local users)")                  \
    X(api_key_file, CFG_STRING, "", 0, 0, NULL,                                                    \
      "file holding API keys, one per line ('#' comments), added to api_key")                      \
    X(auth_health, CFG_BOOL, "false", 0, 0, NULL,                                                  \
      "whether /healthz, /readyz, /metrics need the key")                                          \
    X(cors_allow_origin, CFG_STRING, "", 0, 4096, NULL,                                            \
      "origins allowed to call the API from a browser: '*' or a comma-separated list of "          \
      "scheme://host[:port] (empty: no CORS headers)")                                             \
    X(cors_max_age_s, CFG_INT, "600", 0, 86400, NULL,                                              \
      "how long a browser may cache a CORS preflight answer (Access-Control-Max-Age)")             \
    X(log_level, CFG_ENUM, "info", 0, 0, "debug|info|warn|error",                                  \
      "least severe log level written")                                                            \
    X(access_log, CFG_STRING, "-", 0, 0, NULL,                                                     \
      "access log path, '-' for stderr (empty: no access log)")                                    \
    X(sse_keepalive_ms, CFG_INT, "10000", 10, 600000, NULL,                                        \
      "SSE keep-alive comment interval on idle streams")                                           \
    X(log_buffer_bytes, CFG_INT, "1048576", 4096, 1073741824, NULL,                                \
      "log lines waiting for stderr; when full, lines are dropped and counted")

/** One row of the table, for tools that walk it (help, dumps, tests). */
typedef struct cfg_setting {
    const char *name;
    cfg_type type;
    const char *def;     /* default, as text */
    int64_t min, max;    /* CFG_INT value bounds; CFG_STRING length bounds */
    const char *choices; /* CFG_ENUM: "a|b|c"; otherwise NULL */
    const char *help;
    const char *env;  /* "HEPTAPOD_PORT" */
    const char *flag; /* "--port" */
} cfg_setting;

/** The table as an array of cfg_count() rows, in table order. Static storage. */
const cfg_setting *cfg_table(void);
/** Number of settings in the table. */
int cfg_count(void);

/** Where a setting's value came from. */
typedef enum cfg_source { CFG_SRC_DEFAULT, CFG_SRC_FILE, CFG_SRC_ENV, CFG_SRC_FLAG } cfg_source;

/**
 * The loaded settings, one typed field per table row, plus each one's
 * source. Owned by the caller: fill with cfg_load, release with cfg_free.
 */
typedef struct cfg_settings {
    char *config;
    char *host;
    int64_t port;
    char **model; /* [n_model], n_model >= 1 */
    int n_model;
    char *model_admin; /* "auto", "on" or "off" */
    int64_t threads;   /* resolved: >= 1 after cfg_load */
    int64_t max_queue;
    int64_t max_batch_cells;
    int64_t max_batch_wait_ms;
    int64_t max_body_bytes;
    int64_t max_iterations;
    int64_t default_deadline_ms;
    int64_t max_deadline_ms;
    int64_t drain_timeout_s;
    int64_t retry_after_s;
    int64_t max_connections; /* resolved: >= 1 after cfg_load */
    int64_t max_connections_per_client;
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t idle_timeout_s;
    char *admin_host;
    int64_t admin_port;
    int64_t admin_max_connections;
    int64_t max_queue_cell_iterations;
    char *client_header;
    char *api_key; /* "" when no key is required */
    char *api_key_file;
    int auth_health;
    char *cors_allow_origin; /* "" when CORS is off */
    int64_t cors_max_age_s;
    char *log_level; /* "debug", "info", "warn" or "error" */
    char *access_log;
    int64_t sse_keepalive_ms;
    int64_t log_buffer_bytes;
    /* Resolved by cfg_load, not settings of their own: */
    char **api_keys; /* [n_api_keys] every accepted key (api_key, then api_key_file's) */
    int n_api_keys;  /* 0: no key is required */
    cfg_source source[48]; /* [cfg_count()] in table order */
} cfg_settings;

/** cfg_load's results besides 0: help was asked for, or a setting was refused. */
#define CFG_HELP 1
#define CFG_ERROR (-1)

/**
 * Loads settings into *s (which it first zeroes): defaults, then the file
 * named by --config or HEPTAPOD_CONFIG (flag first), then HEPTAPOD_*
 * variables (via getenv), then the flags in argv[1..argc-1] (argv[0], the
 * subcommand name, is skipped). Returns 0; CFG_HELP if --help or -h is among
 * the flags (nothing else is checked then; print cfg_print_help); or
 * CFG_ERROR with a one-line message naming the source and the setting in
 * err (errlen bytes). On CFG_HELP and CFG_ERROR *s holds nothing to free,
 * though cfg_free is harmless.
 */
int cfg_load(cfg_settings *s, int argc, char **argv, char *err, size_t errlen);

/**
 * Wipes the values of --api-key flags inside argv (the memory that
 * /proc/PID/cmdline shows to every local user), after a successful
 * cfg_load over the same arguments. argv's strings must be writable.
 */
void cfg_hide_secrets(int argc, char **argv);

/** Releases what s owns (wiping the keys first) and zeroes it. Safe on a
 * zeroed struct. */
void cfg_free(cfg_settings *s);

/**
 * Writes the usage of `heptapod serve`: each setting with its flag, env
 * name, type, default, bounds or choices, and help line.
 */
void cfg_print_help(FILE *f);

/**
 * Writes the effective settings, one "name = value (source)" per line, with
 * api_key shown as "(set)" or "(empty)" and never in clear: for a startup
 * log line or `--help`-adjacent debugging.
 */
void cfg_print(FILE *f, const cfg_settings *s);

/* ---- model entries (model.c) ---- */

/** A `model` entry taken apart; every string owned (cfg_model_spec_free). */
typedef struct cfg_model_spec {
    char *path;      /* the checkpoint */
    char *name;      /* NULL: the file name without directory and .safetensors */
    char *precision; /* NULL: the checkpoint's own (its `precision` metadata, else f32) */
} cfg_model_spec;

/**
 * Takes "PATH[:key=value[,key=value]]" apart (keys: precision, name). The
 * suffix after the last ':' is an option list only if its first item is
 * `precision=` or `name=`; otherwise the whole entry is the path, so paths
 * holding ':' need no quoting. Precision values are checked by whoever
 * loads (the engine knows which it has); names by cfg_model_name_ok.
 * Returns 0, or CFG_ERROR with a message quoting the entry (out then holds
 * nothing to free).
 */
int cfg_model_parse(const char *entry, cfg_model_spec *out, char *err, size_t errlen);
void cfg_model_spec_free(cfg_model_spec *s);
/** 1 if name is 1..127 bytes of [A-Za-z0-9._-] (not "." or ".."), else 0. */
int cfg_model_name_ok(const char *name);

/* ---- the machine as the process sees it (host.c) ---- */

/** Where the host's limits are read; tests point these at fixture files. */
typedef struct cfg_host_paths {
    const char *proc_cgroup; /* "/proc/self/cgroup": its "0::/PATH" line */
    const char *cgroup_root; /* "/sys/fs/cgroup": the cgroup v2 mount */
    const char *meminfo;     /* "/proc/meminfo" */
} cfg_host_paths;

/** The real paths above. */
extern const cfg_host_paths cfg_host_default;

/** The process's cgroup v2 directory (cgroup_root + PATH) into out.
 * Returns 0, or -1 if there is no v2 entry or it does not fit. */
int cfg_cgroup_dir(const cfg_host_paths *p, char *out, size_t len);

/** CPUs of one cpu.max file ("QUOTA PERIOD"): ceil(QUOTA / PERIOD), so
 * "150000 100000" is 2; 0 for "max", a missing or malformed file. */
int cfg_cpu_quota(const char *cpu_max);

/** Bytes of one memory.max file; 0 for "max", a missing or malformed file. */
int64_t cfg_memory_max(const char *memory_max);

/**
 * CPUs the process may use: the online cores, capped by its affinity mask
 * (sched_getaffinity) and by the smallest cpu.max quota of its cgroup and
 * the cgroup's ancestors. At least 1.
 */
int cfg_cpu_count(const cfg_host_paths *p);

/**
 * Bytes of memory the process may use: the smallest memory.max of its
 * cgroup and its ancestors if below MemTotal, else MemTotal; 0 if neither
 * is known. *source (if not NULL) gets a static name of where the figure
 * came from, for messages: "cgroup memory.max" or "MemTotal ...".
 */
int64_t cfg_memory_limit(const cfg_host_paths *p, const char **source);

/** Name of a source: "default", "file", "env" or "flag". */
const char *cfg_source_name(cfg_source src);

#endif
