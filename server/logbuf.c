/*
 * logbuf.c - a byte ring of whole log lines and the thread that drains it.
 *
 * Producers copy a line into the free part of the ring under the lock, or
 * drop it if it does not fit: they never wait for the descriptor. The
 * writer takes the oldest contiguous run of bytes, releases the lock and
 * writes it; producers only ever fill the free part, so the run stays
 * unchanged while it is written without the lock. A line is queued whole
 * and leaves in order, so lines never tear or interleave (a pipe keeps a
 * write of up to PIPE_BUF bytes whole; a longer run may go out in parts,
 * but nobody else writes between them through this buffer).
 *
 * Stopping waits, bounded, for the ring to empty. A writer still inside
 * write(2) after that may be stuck for good (a reader that never reads), and
 * nothing can safely pull it out of there (cancelling or signalling it
 * would reach into the whole process), so it is left behind: stop returns,
 * and the writer frees the buffer itself if its write ever returns.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/logbuf.h"

struct srv_logbuf {
    int fd;
    size_t cap;
    char *ring;  /* [cap] */
    size_t head; /* oldest queued byte */
    size_t used; /* bytes queued from head, wrapping at cap */

    pthread_mutex_t mu;
    pthread_cond_t more;    /* the writer waits for lines or quit */
    pthread_cond_t drained; /* srv__logbuf_stop waits for an empty ring */
    int writer_waiting;
    int writing;   /* the writer is in write(2), without the lock */
    int quit;      /* srv__logbuf_stop was called */
    int abandoned; /* ...and returned while the writer was in write(2) */
    pthread_t thread;

    srv_logbuf_stats st; /* guarded by mu */
};

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    for (const char *end = p + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        lines++;
    return lines;
}

/* The queued bytes [from, from + n) of the ring, which may wrap. */
static uint64_t count_ring_lines(const srv_logbuf *b, size_t from, size_t n)
{
    size_t first = n < b->cap - from ? n : b->cap - from;
    return count_lines(b->ring + from, first) + count_lines(b->ring, n - first);
}

/* One write(2) of the run. Returns the bytes written, or -1 when the
 * descriptor refuses them for good. */
static ssize_t write_run(int fd, const char *p, size_t n)
{
    ssize_t w;
    for (;;) {
        w = write(fd, p, n);
        if (w >= 0 || errno == EINTR) {
            if (w >= 0) break;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) break;
        /* A non-blocking descriptor (set so by whoever shares it): wait here,
         * in this thread, rather than spin. */
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, -1);
    }
    return w;
}

static void destroy(srv_logbuf *b)
{
    pthread_cond_destroy(&b->drained);
    pthread_cond_destroy(&b->more);
    pthread_mutex_destroy(&b->mu);
    free(b->ring);
    free(b);
}

static void *writer_main(void *arg)
{
    srv_logbuf *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->used == 0 && !b->quit) {
            pthread_cond_broadcast(&b->drained);
            b->writer_waiting = 1;
            pthread_cond_wait(&b->more, &b->mu);
            b->writer_waiting = 0;
        }
        if (b->quit) break;
        size_t from = b->head;
        size_t n = b->used < b->cap - from ? b->used : b->cap - from;
        b->writing = 1;
        pthread_mutex_unlock(&b->mu);
        ssize_t w = write_run(b->fd, b->ring + from, n);
        pthread_mutex_lock(&b->mu);
        b->writing = 0;
        /* A refused run is dropped whole: nowhere is left to report it. */
        size_t done = w < 0 ? n : (size_t)w;
        uint64_t lines = count_lines(b->ring + from, done);
        if (w < 0) {
            b->st.lines_dropped += lines;
        } else {
            b->st.lines_written += lines;
            b->st.bytes_written += done;
        }
        b->head = (from + done) % b->cap;
        b->used -= done;
    }
    int abandoned = b->abandoned;
    pthread_cond_broadcast(&b->drained);
    pthread_mutex_unlock(&b->mu);
    if (abandoned) destroy(b); /* stop returned long ago: the buffer is ours */
    return NULL;
}

srv_logbuf *srv__logbuf_start(int fd, size_t capacity)
{
    if (capacity < 64) return NULL;
    srv_logbuf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->fd = fd;
    b->cap = capacity;
    b->ring = malloc(capacity);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->more, NULL);
    pthread_cond_init(&b->drained, &ca);
    pthread_condattr_destroy(&ca);
    if (!b->ring || pthread_create(&b->thread, NULL, writer_main, b) != 0) {
        destroy(b);
        return NULL;
    }
    return b;
}

int srv__logbuf_push(srv_logbuf *b, const char *line, size_t len)
{
    pthread_mutex_lock(&b->mu);
    if (len == 0 || len > b->cap - b->used) {
        b->st.lines_dropped++;
        pthread_mutex_unlock(&b->mu);
        return -1;
    }
    size_t tail = (b->head + b->used) % b->cap;
    size_t first = len < b->cap - tail ? len : b->cap - tail;
    memcpy(b->ring + tail, line, first);
    memcpy(b->ring, line + first, len - first);
    b->used += len;
    if (b->writer_waiting) pthread_cond_signal(&b->more);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

srv_logbuf_stats srv__logbuf_stats(srv_logbuf *b)
{
    pthread_mutex_lock(&b->mu);
    srv_logbuf_stats st = b->st;
    st.bytes_queued = b->used;
    pthread_mutex_unlock(&b->mu);
    return st;
}

void srv__logbuf_stop(srv_logbuf *b, int timeout_ms, srv_logbuf_stats *final)
{
    if (!b) return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&b->mu);
    while (b->used > 0 && pthread_cond_timedwait(&b->drained, &b->mu, &until) != ETIMEDOUT)
        ;
    b->quit = 1;
    pthread_cond_signal(&b->more);
    /* Whatever is still queued is not written by us: counted as dropped. */
    b->st.lines_dropped += count_ring_lines(b, b->head, b->used);
    b->st.bytes_queued = 0;
    if (final) *final = b->st;
    if (b->writing) {
        /* Possibly stuck for good in write(2): leave it the buffer, which
         * it may free as soon as the lock is released. */
        pthread_t writer = b->thread;
        b->abandoned = 1;
        pthread_mutex_unlock(&b->mu);
        pthread_detach(writer);
        return;
    }
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    destroy(b);
}
