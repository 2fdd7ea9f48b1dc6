/*
 * log.h - the daemon's log: one JSON object per line on stderr, gated by a
 * level, and the access log (one line per HTTP request, at level info).
 * While the daemon runs, neither ever blocks the caller (log.c).
 */
#ifndef HEPTAPOD_SRV_LOG_H
#define HEPTAPOD_SRV_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum srv_level {
    SRV_LOG_OFF = -1,
    SRV_LOG_ERROR = 0,
    SRV_LOG_WARN,
    SRV_LOG_INFO,
    SRV_LOG_DEBUG
} srv_level;

/* The process-wide threshold: one process, one log. */
extern srv_level srv__log_level;

/** Logs at `level` if the threshold lets it through; arguments are not
 * evaluated otherwise. */
#define SRV_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if ((int)(level) <= (int)srv__log_level) srv__log((level), __VA_ARGS__);                   \
    } while (0)

/** Writes {"time","level","msg"} as one line: queued whole once
 * srv__log_start ran (or dropped and counted if the buffer is full),
 * written with one write(2) before that. */
void srv__log(srv_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** "error", "warn", "info", "debug" or "off" to a level; -2 if unknown. */
int srv__log_level_parse(const char *name);

/** One finished HTTP request. Strings may be NULL (rendered as null). */
typedef struct srv_access {
    const char *request_id;
    const char *method, *path;
    const char *client, *user_agent; /* peer address, User-Agent header */
    int status;
    const char *model;
    const char *outcome; /* "ok", "error", "cancelled", "deadline", ... */
    long cells;          /* cells of the grid; 0 when none */
    int iterations;      /* iterations run */
    double queued_ms, total_ms;
} srv_access;

/** Writes the access-log line to fd (the access log has its own
 * destination and is not gated by the level); through the buffer of fd
 * when srv__log_start gave it one, like srv__log. */
void srv__access_log(int fd, const srv_access *a);

/** The log's destinations, for their counters. */
typedef enum srv_log_sink {
    SRV_LOG_STDERR = 0, /* srv__log, and the access log when it is "-" */
    SRV_LOG_ACCESS,     /* the access-log file */
    SRV_LOG_SINKS
} srv_log_sink;

/**
 * Starts the writer threads: from now on stderr's lines, and access_fd's
 * when it is a file of its own (> 2; borrowed, closed by the caller after
 * srv__log_stop), each go through a buffer of `bytes` bytes (>= 64) drained
 * by a thread of its own. Call once, before the threads that log start.
 * Returns 0, or -1 (nothing started: lines keep being written directly).
 */
int srv__log_start(size_t bytes, int access_fd);

/**
 * Flushes each buffer for at most timeout_ms (a reader that does not read
 * cannot hold up the exit), stops the writers and goes back to direct
 * writes. Call once no other thread logs or reads the counters. Harmless
 * when nothing was started.
 */
void srv__log_stop(int timeout_ms);

/** Lines of one destination written and dropped since srv__log_start
 * (kept after srv__log_stop); zeros when nothing was started. */
typedef struct srv_log_counts {
    uint64_t written, dropped;
} srv_log_counts;
srv_log_counts srv__log_counts(srv_log_sink sink);

#endif
