/*
 * test_log.c - the log's bounded buffer (logbuf.c) over a pipe: lines leave
 * whole and in order across the ring's wrap-around, a reader that stops
 * reading makes lines drop (counted) instead of blocking the producer,
 * concurrent producers never tear or reorder each other's lines, and stop
 * is bounded in time even when the reader never reads again; then log.c on
 * top of it (stderr through the buffer, direct writes before start).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/log.h"
#include "server/logbuf.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A pipe whose kernel buffer is one page, so that it fills fast. */
static void small_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    assert_true(fcntl(fds[1], F_SETPIPE_SZ, 4096) >= 4096);
}

/* Reads until `want` lines arrived (or the time runs out); returns the
 * bytes read into buf (NUL-terminated). */
static size_t read_lines(int fd, char *buf, size_t cap, int want, double timeout_s)
{
    size_t n = 0;
    int lines = 0;
    double end = now_s() + timeout_s;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (lines < want && now_s() < end && n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                lines += buf[n + (size_t)i] == '\n';
            n += (size_t)r;
        } else {
            usleep(1000);
        }
    }
    buf[n] = '\0';
    return n;
}

/* One read without waiting: what the pipe holds now. */
static size_t read_now(int fd, char *buf, size_t cap)
{
    fcntl(fd, F_SETFL, O_NONBLOCK);
    ssize_t r = read(fd, buf, cap);
    return r > 0 ? (size_t)r : 0;
}

/* Lines "line NNNNN ...\n" of a fixed 40 bytes, so that a small ring wraps
 * at every possible offset. */
static size_t make_line(char *out, int i)
{
    int n = snprintf(out, 64, "line %05d %s", i, "abcdefghijklmnopqrstuvwxyz12");
    out[n] = '\n';
    return (size_t)n + 1;
}

static void test_order_and_wrap_around(void **state)
{
    int fds[2];
    small_pipe(fds);
    /* 100 bytes: two lines fit, and their start moves by 40 mod 100 each time. */
    srv_logbuf *b = srv__logbuf_start(fds[1], 100);
    assert_non_null(b);
    static char got[64 * 1024];
    size_t off = 0;
    for (int i = 0; i < 500; i++) {
        char l[64];
        size_t len = make_line(l, i);
        /* The ring holds two lines: wait for room rather than drop, to see
         * every line through every wrap offset. */
        while (srv__logbuf_stats(b).bytes_queued + len > 100)
            off += read_now(fds[0], got + off, sizeof got - off - 1);
        assert_int_equal(srv__logbuf_push(b, l, len), 0);
    }
    srv_logbuf_stats st;
    off += read_lines(fds[0], got + off, sizeof got - off, 500 - (int)(off / 40), 5.0);
    srv__logbuf_stop(b, 1000, &st);
    assert_int_equal(st.lines_written, 500);
    assert_int_equal(st.lines_dropped, 0);
    assert_int_equal(st.bytes_written, 500 * 40);
    assert_int_equal(off, 500 * 40);
    for (int i = 0; i < 500; i++) {
        char l[64];
        make_line(l, i);
        assert_memory_equal(got + (size_t)i * 40, l, 40);
    }
    close(fds[0]);
    close(fds[1]);
}

static void test_full_buffer_drops_and_counts(void **state)
{
    int fds[2];
    small_pipe(fds);
    srv_logbuf *b = srv__logbuf_start(fds[1], 1000);
    assert_non_null(b);
    /* Nobody reads: the pipe takes 4096 bytes, the ring 1000, the rest drops.
     * Each push returns at once: the producer never waits for the pipe. */
    int queued = 0, dropped = 0;
    double t0 = now_s();
    for (int i = 0; i < 1000; i++) {
        char l[64];
        size_t len = make_line(l, i);
        if (srv__logbuf_push(b, l, len) == 0) {
            queued++;
        } else {
            dropped++;
        }
        if (i == 200) usleep(50000); /* let the writer fill the pipe */
    }
    assert_true(now_s() - t0 < 2.0);
    assert_true(dropped > 0);
    /* At least the ring's worth, and what the writer moved into the pipe
     * (a blocking write of up to PIPE_BUF bytes waits for room for all). */
    assert_true(queued > 1000 / 40);
    srv_logbuf_stats st = srv__logbuf_stats(b);
    assert_int_equal(st.lines_dropped, (uint64_t)dropped);

    /* Draining the pipe lets every accepted line out, whole and in order. */
    static char got[64 * 1024];
    size_t n = read_lines(fds[0], got, sizeof got, queued, 5.0);
    assert_int_equal(n, (size_t)queued * 40);
    int prev = -1;
    for (int k = 0; k < queued; k++) {
        int id;
        assert_int_equal(sscanf(got + (size_t)k * 40, "line %05d", &id), 1);
        assert_true(id > prev);
        assert_int_equal(got[(size_t)k * 40 + 39], '\n');
        prev = id;
    }
    /* ...and new lines arrive again. */
    char l[64];
    assert_int_equal(srv__logbuf_push(b, l, make_line(l, 4242)), 0);
    assert_int_equal(read_lines(fds[0], got, sizeof got, 1, 5.0), 40);
    assert_memory_equal(got, l, 40);
    srv__logbuf_stop(b, 1000, &st);
    assert_int_equal(st.lines_written, (uint64_t)queued + 1);
    assert_int_equal(st.lines_dropped, (uint64_t)dropped);
    close(fds[0]);
    close(fds[1]);
}

enum { PRODUCERS = 4, PER_PRODUCER = 3000 };

struct producer {
    srv_logbuf *b;
    int id, queued;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        char l[96];
        /* Lengths vary so that lines straddle the ring's end at odd places. */
        int n = snprintf(l, sizeof l, "p%d %06d %.*s|", p->id, i, i % 37,
                         "................"
                         "....................."
                         "..........");
        l[n++] = '\n';
        if (srv__logbuf_push(p->b, l, (size_t)n) == 0) p->queued++;
    }
    return NULL;
}

struct reader {
    int fd;
    char *buf;
    size_t cap, n;
    volatile int stop;
};

static void *consume(void *arg)
{
    struct reader *r = arg;
    while (r->n + 1 < r->cap) {
        ssize_t got = read(r->fd, r->buf + r->n, r->cap - 1 - r->n);
        if (got <= 0) break;
        r->n += (size_t)got;
    }
    r->buf[r->n] = '\0';
    return NULL;
}

static void test_concurrent_producers(void **state)
{
    int fds[2];
    small_pipe(fds);
    srv_logbuf *b = srv__logbuf_start(fds[1], 2048);
    assert_non_null(b);
    struct reader r = {.fd = fds[0], .cap = 1 << 20};
    r.buf = malloc(r.cap);
    assert_non_null(r.buf);
    pthread_t rt, pt[PRODUCERS];
    struct producer p[PRODUCERS];
    assert_int_equal(pthread_create(&rt, NULL, consume, &r), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){.b = b, .id = i};
        assert_int_equal(pthread_create(&pt[i], NULL, produce, &p[i]), 0);
    }
    int queued = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(pt[i], NULL);
        queued += p[i].queued;
    }
    srv_logbuf_stats st;
    srv__logbuf_stop(b, 5000, &st);
    close(fds[1]); /* the reader sees EOF once everything is read */
    pthread_join(rt, NULL);
    assert_int_equal(st.lines_written, (uint64_t)queued);
    assert_int_equal(st.lines_written + st.lines_dropped, PRODUCERS * PER_PRODUCER);

    /* Every line is whole, and each producer's lines keep their order. */
    int last[PRODUCERS] = {-1, -1, -1, -1}, lines = 0;
    for (char *line = r.buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        int id, seq, dots = 0;
        assert_int_equal(sscanf(line, "p%d %d ", &id, &seq), 2);
        assert_true(id >= 0 && id < PRODUCERS);
        assert_true(seq > last[id]);
        last[id] = seq;
        char *sp = strchr(strchr(line, ' ') + 1, ' ') + 1;
        while (sp[dots] == '.')
            dots++;
        assert_int_equal(dots, seq % 37);
        assert_ptr_equal(sp + dots + 1, nl);
        assert_int_equal(sp[dots], '|');
        lines++;
    }
    assert_int_equal(lines, queued);
    free(r.buf);
    close(fds[0]);
}

static void test_stop_is_bounded_with_a_stuck_reader(void **state)
{
    int fds[2];
    small_pipe(fds);
    srv_logbuf *b = srv__logbuf_start(fds[1], 8192);
    assert_non_null(b);
    int queued = 0;
    for (int i = 0; i < 400; i++) {
        char l[64];
        queued += srv__logbuf_push(b, l, make_line(l, i)) == 0;
        if (i == 150) usleep(50000);
    }
    srv_logbuf_stats st;
    double t0 = now_s();
    srv__logbuf_stop(b, 200, &st); /* the writer is blocked in write(2) */
    double took = now_s() - t0;
    assert_true(took >= 0.19 && took < 1.5);
    assert_true(st.lines_written <= 4096 / 40 + 1);
    /* Nothing is lost uncounted: every line is written or dropped. */
    assert_int_equal(st.lines_written + st.lines_dropped, 400);
    assert_true((int)st.lines_written < queued);
    /* The writer left blocked ends once the pipe's reader closes (EPIPE)
     * and frees the buffer: the leak checker of a sanitizer build holds it
     * to that. The write end stays open: nothing orders closing it after
     * that last write(2) of a detached thread. */
    close(fds[0]);
    usleep(100000);
}

static void test_log_through_the_buffer(void **state)
{
    int fds[2], saved = dup(STDERR_FILENO);
    small_pipe(fds);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
    srv_level old = srv__log_level;
    srv__log_level = SRV_LOG_INFO;

    /* Before the writer starts, a line is written directly. */
    srv__log(SRV_LOG_ERROR, "early %d", 1);
    static char got[64 * 1024];
    read_lines(fds[0], got, sizeof got, 1, 2.0);
    assert_non_null(strstr(got, "\"level\":\"error\",\"msg\":\"early 1\"}\n"));

    assert_int_equal(srv__log_start(4096, -1), 0);
    for (int i = 0; i < 1000; i++)
        SRV_LOG(SRV_LOG_INFO, "message %d with \"quotes\"", i);
    SRV_LOG(SRV_LOG_DEBUG, "not let through");
    srv_log_counts c = srv__log_counts(SRV_LOG_STDERR);
    assert_true(c.dropped > 0); /* nobody read: 4 KiB of pipe, 4 KiB of buffer */
    size_t n = read_lines(fds[0], got, sizeof got, 1000 - (int)c.dropped, 5.0);
    srv__log_stop(1000);
    c = srv__log_counts(SRV_LOG_STDERR);
    assert_int_equal(c.written + c.dropped, 1000);
    int lines = 0;
    for (char *p = got; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, (int)c.written);
    assert_non_null(strstr(got, "\"msg\":\"message 0 with \\\"quotes\\\"\"}\n"));
    assert_null(strstr(got, "not let through"));
    assert_true(n > 0);

    /* After stop, lines are written directly again. */
    srv__log(SRV_LOG_WARN, "late");
    read_lines(fds[0], got, sizeof got, 1, 2.0);
    assert_non_null(strstr(got, "\"msg\":\"late\"}\n"));
    srv__log_level = old;
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon does: a closed pipe is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_wrap_around),
        cmocka_unit_test(test_full_buffer_drops_and_counts),
        cmocka_unit_test(test_concurrent_producers),
        cmocka_unit_test(test_stop_is_bounded_with_a_stuck_reader),
        cmocka_unit_test(test_log_through_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
