/*
 * logbuf.h - a bounded buffer of log lines in front of one file descriptor,
 * drained by a writer thread of its own, so that a thread that logs never
 * waits for the descriptor: when the reader of a pipe stops reading, lines
 * are dropped and counted instead of the event loop blocking in write(2).
 */
#ifndef HEPTAPOD_SRV_LOGBUF_H
#define HEPTAPOD_SRV_LOGBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_logbuf srv_logbuf;

/** What a buffer did with the lines it was given. */
typedef struct srv_logbuf_stats {
    uint64_t lines_written; /* whole lines handed to write(2) */
    uint64_t lines_dropped; /* refused when full, lost to a write error or at stop */
    uint64_t bytes_written;
    size_t bytes_queued; /* waiting in the buffer now */
} srv_logbuf_stats;

/**
 * A buffer of `capacity` bytes (>= 64) whose writer thread writes to fd
 * (borrowed: the caller closes it after srv__logbuf_stop). Returns NULL
 * without memory or when the thread cannot start.
 */
srv_logbuf *srv__logbuf_start(int fd, size_t capacity);

/**
 * Queues one line of len bytes, which must end in '\n', whole or not at all:
 * a line that does not fit in the free space is dropped and counted, never
 * cut. Lines leave in the order they were queued. Thread-safe; waits only
 * for the buffer's lock, held for a copy, never for the descriptor.
 * Returns 0 if queued, -1 if dropped.
 */
int srv__logbuf_push(srv_logbuf *b, const char *line, size_t len);

/** The counters so far (thread-safe). */
srv_logbuf_stats srv__logbuf_stats(srv_logbuf *b);

/**
 * Lets the writer flush what is queued for at most timeout_ms, then stops
 * it and frees b, so a stuck reader cannot hold up the exit: a writer
 * still blocked in write(2) by then is left behind and frees b itself if
 * that write ever returns (the descriptor must stay valid or be closed, not
 * reused for other data; a closed pipe only ends the write with EPIPE).
 * Lines left unwritten count as dropped in *final (when not NULL), which
 * gets the last counters. No other thread may push once this is called.
 * NULL b is a no-op.
 */
void srv__logbuf_stop(srv_logbuf *b, int timeout_ms, srv_logbuf_stats *final);

#endif
