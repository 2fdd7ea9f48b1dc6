/*
 * loadgen.c - a closed-loop load generator for `heptapod serve`: C client
 * threads, each with one keep-alive HTTP/1.1 connection, each sending the
 * next POST /generate as soon as the previous answer arrived. After a warm-up
 * it counts the answers that complete inside the measuring window and prints
 * one line:
 *
 *   concurrency=16 requests=812 errors=0 seconds=5.00 grids_per_s=162.4
 *   p50_ms=97.8 p99_ms=130.2 mean_ms=98.5
 *
 *   loadgen --port N [--host 127.0.0.1] [--concurrency 16] [--seconds 5]
 *           [--warmup 1] [--height 16] [--width 16] [--iterations 8]
 *           [--temperature 1.0]
 *
 * Every request has its own seed. A non-200 answer counts as an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct options {
    const char *host;
    int port, concurrency, height, width, iterations;
    double seconds, warmup, temperature;
} options;

typedef struct client {
    const options *opt;
    int id;
    int64_t start_ns, end_ns; /* the measuring window */
    double *lat_ms;           /* latencies inside the window */
    size_t n, cap;
    long errors;
    char buf[1 << 16];
} client;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int dial(const options *o)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    inet_pton(AF_INET, o->host, &a.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response; returns its status, or -1 if the connection failed.
 * *keep is cleared when the server will close the connection. */
static int read_response(client *c, int fd, int *keep)
{
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof c->buf - 1) return -1;
        ssize_t r = recv(fd, c->buf + have, sizeof c->buf - 1 - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        have += (size_t)r;
        c->buf[have] = '\0';
        end = strstr(c->buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1) return -1;
    size_t head = (size_t)(end + 4 - c->buf);
    long length = -1;
    *keep = 1;
    for (char *line = strstr(c->buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        if (!strncasecmp(line + 2, "Content-Length:", 15))
            length = strtol(line + 17, NULL, 10);
        else if (!strncasecmp(line + 2, "Connection: close", 17))
            *keep = 0;
    }
    if (length < 0) return -1; /* the daemon always sends a length for JSON answers */
    size_t body = have - head;
    while (body < (size_t)length) {
        ssize_t r = recv(fd, c->buf, sizeof c->buf, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        body += (size_t)r;
    }
    return status;
}

static void record(client *c, double ms)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        double *p = realloc(c->lat_ms, c->cap * sizeof *p);
        if (!p) {
            perror("loadgen");
            exit(1);
        }
        c->lat_ms = p;
    }
    c->lat_ms[c->n++] = ms;
}

static void *client_main(void *arg)
{
    client *c = arg;
    const options *o = c->opt;
    char body[256], req[512];
    uint64_t seed = (uint64_t)c->id * 1000003u;
    int fd = -1;
    while (now_ns() < c->end_ns) {
        if (fd < 0 && (fd = dial(o)) < 0) {
            c->errors++;
            usleep(10000);
            continue;
        }
        int blen = snprintf(body, sizeof body,
                            "{\"height\":%d,\"width\":%d,\"iterations\":%d,\"seed\":%llu,"
                            "\"temperature\":%g}",
                            o->height, o->width, o->iterations, (unsigned long long)++seed,
                            o->temperature);
        int rlen = snprintf(req, sizeof req,
                            "POST /generate HTTP/1.1\r\nHost: %s:%d\r\n"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                            o->host, o->port, blen, body);
        int64_t t0 = now_ns();
        int keep = 0;
        int status = send_all(fd, req, (size_t)rlen) < 0 ? -1 : read_response(c, fd, &keep);
        int64_t t1 = now_ns();
        if (status < 0 || !keep) {
            close(fd);
            fd = -1;
        }
        /* Answers completed inside the window: the throughput of a steady
         * state, whatever the latency (requests cut at the end are lost). */
        if (t1 >= c->start_ns && t1 <= c->end_ns) {
            if (status == 200)
                record(c, (double)(t1 - t0) / 1e6);
            else
                c->errors++;
        }
    }
    if (fd >= 0) close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *v, size_t n, double p)
{
    if (n == 0) return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --port N [--host H] [--concurrency C] [--seconds S] "
                    "[--warmup S] [--height H] [--width W] [--iterations K] [--temperature T]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o = {.host = "127.0.0.1",
                 .concurrency = 16,
                 .height = 16,
                 .width = 16,
                 .iterations = 8,
                 .seconds = 5,
                 .warmup = 1,
                 .temperature = 1.0};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--host"))
            o.host = v;
        else if (!strcmp(k, "--port"))
            o.port = atoi(v);
        else if (!strcmp(k, "--concurrency"))
            o.concurrency = atoi(v);
        else if (!strcmp(k, "--seconds"))
            o.seconds = atof(v);
        else if (!strcmp(k, "--warmup"))
            o.warmup = atof(v);
        else if (!strcmp(k, "--height"))
            o.height = atoi(v);
        else if (!strcmp(k, "--width"))
            o.width = atoi(v);
        else if (!strcmp(k, "--iterations"))
            o.iterations = atoi(v);
        else if (!strcmp(k, "--temperature"))
            o.temperature = atof(v);
        else
            usage();
    }
    if (o.port <= 0 || o.concurrency < 1 || o.seconds <= 0) usage();
    client *cs = calloc((size_t)o.concurrency, sizeof *cs);
    pthread_t *th = calloc((size_t)o.concurrency, sizeof *th);
    if (!cs || !th) return 1;
    int64_t start = now_ns() + (int64_t)(o.warmup * 1e9);
    int64_t end = start + (int64_t)(o.seconds * 1e9);
    for (int i = 0; i < o.concurrency; i++) {
        cs[i] = (client){.opt = &o, .id = i + 1, .start_ns = start, .end_ns = end};
        if (pthread_create(&th[i], NULL, client_main, &cs[i]) != 0) {
            perror("loadgen: pthread_create");
            return 1;
        }
    }
    size_t n = 0;
    long errors = 0;
    for (int i = 0; i < o.concurrency; i++) {
        pthread_join(th[i], NULL);
        n += cs[i].n;
        errors += cs[i].errors;
    }
    double *all = malloc((n ? n : 1) * sizeof *all);
    size_t k = 0;
    double sum = 0;
    for (int i = 0; i < o.concurrency; i++) {
        for (size_t j = 0; j < cs[i].n; j++) {
            all[k++] = cs[i].lat_ms[j];
            sum += cs[i].lat_ms[j];
        }
        free(cs[i].lat_ms);
    }
    qsort(all, n, sizeof *all, cmp_double);
    printf("concurrency=%d requests=%zu errors=%ld seconds=%.2f grids_per_s=%.1f p50_ms=%.3f "
           "p99_ms=%.3f mean_ms=%.3f\n",
           o.concurrency, n, errors, o.seconds, (double)n / o.seconds, percentile(all, n, 0.50),
           percentile(all, n, 0.99), n ? sum / (double)n : 0.0);
    free(all);
    free(cs);
    free(th);
    return n > 0 && errors == 0 ? 0 : 1;
}
