/*
 * log.h - the daemon's log: one JSON object per line on stderr, gated by a
 * level, and the access log (one line per HTTP request, at level info).
 */
#ifndef HEPTAPOD_SRV_LOG_H
#define HEPTAPOD_SRV_LOG_H

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

/** Writes {"time","level","msg"} as one line with one write(2). */
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
 * destination and is not gated by the level). */
void srv__access_log(int fd, const srv_access *a);

#endif
