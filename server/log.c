/*
 * log.c - JSON-lines logging. Each line is formatted into one buffer and
 * handed over whole, so lines from different threads never interleave.
 *
 * Once srv__log_start ran, a line goes to a bounded buffer (logbuf.c) whose
 * own thread does the blocking write(2): the event loop and the workers
 * never wait for stderr or the access-log file, and a line that finds the
 * buffer full is dropped and counted. Before that (startup errors) and
 * after srv__log_stop, lines are written directly, as there is then no
 * loop to block.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"
#include "server/logbuf.h"

srv_level srv__log_level = SRV_LOG_INFO;

/* The process's two log destinations: one process, one log. Set before the
 * threads that log start and cleared after they stopped; atomic so that a
 * reader on another thread sees either NULL or a started buffer. */
static _Atomic(srv_logbuf *) sinks[SRV_LOG_SINKS];
static int sink_fd[SRV_LOG_SINKS] = {STDERR_FILENO, -1};
/* Counters of stopped buffers, so that a late scrape still reads them. */
static srv_logbuf_stats final_stats[SRV_LOG_SINKS];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int srv__log_level_parse(const char *name)
{
    if (!name) return -2;
    if (!strcmp(name, "off")) return SRV_LOG_OFF;
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, level_names[i])) return i;
    return -2;
}

typedef struct line {
    char buf[2048];
    size_t len;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof l->buf - 2 - l->len; /* keep space for "}\n" */
    if (n > room) n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_raw(line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void putf(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line *l, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string, or null. Control bytes are escaped; other bytes pass. */
static void put_str(line *l, const char *s)
{
    if (!s) {
        puts_raw(l, "null");
        return;
    }
    puts_raw(l, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(l, e, 2);
        } else if (c < 0x20) {
            putf(l, "\\u%04x", c);
        } else {
            put(l, s, 1);
        }
    }
    puts_raw(l, "\"");
}

static void begin(line *l, const char *level)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    l->len = 0;
    putf(l, "{\"time\":\"%s.%03dZ\",\"level\":\"%s\"", ts, (int)(tv.tv_usec / 1000), level);
}

/* The buffer in front of fd, if one runs. */
static srv_logbuf *sink_for(int fd)
{
    for (int i = 0; i < SRV_LOG_SINKS; i++)
        if (sink_fd[i] == fd) return atomic_load(&sinks[i]);
    return NULL;
}

static void finish(line *l, int fd)
{
    memcpy(l->buf + l->len, "}\n", 2);
    l->len += 2;
    srv_logbuf *b = sink_for(fd);
    if (b) {
        srv__logbuf_push(b, l->buf, l->len); /* a drop is counted there */
        return;
    }
    ssize_t w = write(fd, l->buf, l->len);
    (void)w; /* nowhere left to report a failing log */
}

int srv__log_start(size_t bytes, int access_fd)
{
    srv_logbuf *err = srv__logbuf_start(STDERR_FILENO, bytes);
    if (!err) return -1;
    memset(final_stats, 0, sizeof final_stats);
    atomic_store(&sinks[SRV_LOG_STDERR], err);
    if (access_fd > STDERR_FILENO) {
        srv_logbuf *acc = srv__logbuf_start(access_fd, bytes);
        if (!acc) {
            srv__log_stop(0);
            return -1;
        }
        sink_fd[SRV_LOG_ACCESS] = access_fd;
        atomic_store(&sinks[SRV_LOG_ACCESS], acc);
    }
    return 0;
}

void srv__log_stop(int timeout_ms)
{
    for (int i = 0; i < SRV_LOG_SINKS; i++) {
        srv_logbuf *b = atomic_exchange(&sinks[i], NULL);
        if (b) srv__logbuf_stop(b, timeout_ms, &final_stats[i]);
    }
    sink_fd[SRV_LOG_ACCESS] = -1;
}

srv_log_counts srv__log_counts(srv_log_sink sink)
{
    srv_log_counts c = {0, 0};
    if (sink < 0 || sink >= SRV_LOG_SINKS) return c;
    srv_logbuf *b = atomic_load(&sinks[sink]);
    srv_logbuf_stats st = b ? srv__logbuf_stats(b) : final_stats[sink];
    c.written = st.lines_written;
    c.dropped = st.lines_dropped;
    return c;
}

void srv__log(srv_level level, const char *fmt, ...)
{
    if (level < SRV_LOG_ERROR || level > SRV_LOG_DEBUG) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    line l;
    begin(&l, level_names[level]);
    puts_raw(&l, ",\"msg\":");
    put_str(&l, msg);
    finish(&l, STDERR_FILENO);
}

void srv__access_log(int fd, const srv_access *a)
{
    line l;
    begin(&l, "info");
    puts_raw(&l, ",\"msg\":\"access\",\"request_id\":");
    put_str(&l, a->request_id);
    puts_raw(&l, ",\"method\":");
    put_str(&l, a->method);
    puts_raw(&l, ",\"path\":");
    put_str(&l, a->path);
    puts_raw(&l, ",\"client\":");
    put_str(&l, a->client);
    puts_raw(&l, ",\"user_agent\":");
    put_str(&l, a->user_agent);
    putf(&l, ",\"status\":%d,\"model\":", a->status);
    put_str(&l, a->model);
    puts_raw(&l, ",\"outcome\":");
    put_str(&l, a->outcome);
    putf(&l, ",\"cells\":%ld,\"iterations\":%d,\"queued_ms\":%.3f,\"total_ms\":%.3f", a->cells,
         a->iterations, a->queued_ms, a->total_ms);
    finish(&l, fd);
}
