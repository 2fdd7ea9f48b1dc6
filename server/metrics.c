/*
 * metrics.c - the Prometheus registry and its text exposition.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

struct srv_series {
    srv_family *fam;
    char *values[SRV_MAX_LABELS];
    double value;                             /* counter, gauge */
    double sum;                               /* histogram */
    unsigned long long count;                 /* histogram */
    unsigned long long hits[SRV_MAX_BUCKETS]; /* histogram: per bucket, not cumulative */
};

struct srv_family {
    pthread_mutex_t mu;
    srv_mtype type;
    char *name, *help;
    int n_labels;
    char *labels[SRV_MAX_LABELS];
    int n_buckets;
    double buckets[SRV_MAX_BUCKETS];
    srv_series **series;
    int n_series, cap_series;
};

struct srv_registry {
    pthread_mutex_t mu;
    srv_family **fams;
    int n, cap;
};

srv_registry *srv__registry_create(void)
{
    srv_registry *r = calloc(1, sizeof *r);
    if (r) pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void series_free(srv_series *s, int n_labels)
{
    for (int i = 0; i < n_labels; i++)
        free(s->values[i]);
    free(s);
}

static void family_free(srv_family *f)
{
    for (int i = 0; i < f->n_series; i++)
        series_free(f->series[i], f->n_labels);
    for (int i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    free(f->series);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void srv__registry_free(srv_registry *r)
{
    if (!r) return;
    for (int i = 0; i < r->n; i++)
        family_free(r->fams[i]);
    free(r->fams);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Splits "a,b" into f->labels. Returns 0 or -1. */
static int parse_labels(srv_family *f, const char *labels)
{
    if (!labels || !*labels) return 0;
    const char *p = labels;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || f->n_labels == SRV_MAX_LABELS) return -1;
        f->labels[f->n_labels] = strndup(p, len);
        if (!f->labels[f->n_labels]) return -1;
        f->n_labels++;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

srv_family *srv__family_add(srv_registry *r, srv_mtype type, const char *name, const char *help,
                            const char *labels, const double *buckets, int n_buckets)
{
    if (!r || !name || !help || n_buckets < 0 || n_buckets > SRV_MAX_BUCKETS) return NULL;
    if (type == SRV_HISTOGRAM && n_buckets == 0) return NULL;
    for (int i = 0; i < n_buckets; i++)
        if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) return NULL;
    srv_family *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    pthread_mutex_init(&f->mu, NULL);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    if (type == SRV_HISTOGRAM) {
        f->n_buckets = n_buckets;
        memcpy(f->buckets, buckets, (size_t)n_buckets * sizeof *buckets);
    }
    if (!f->name || !f->help || parse_labels(f, labels) < 0) goto fail;
    pthread_mutex_lock(&r->mu);
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        srv_family **fams = realloc(r->fams, (size_t)cap * sizeof *fams);
        if (!fams) {
            pthread_mutex_unlock(&r->mu);
            goto fail;
        }
        r->fams = fams;
        r->cap = cap;
    }
    r->fams[r->n++] = f;
    pthread_mutex_unlock(&r->mu);
    return f;
fail:
    family_free(f);
    return NULL;
}

srv_series *srv__series(srv_family *f, const char *const *values)
{
    if (!f) return NULL;
    srv_series *s = NULL;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_series && !s; i++) {
        int same = 1;
        for (int j = 0; j < f->n_labels && same; j++)
            same = !strcmp(f->series[i]->values[j], values[j] ? values[j] : "");
        if (same) s = f->series[i];
    }
    if (s) goto out;
    if (f->n_series == f->cap_series) {
        int cap = f->cap_series ? 2 * f->cap_series : 8;
        srv_series **v = realloc(f->series, (size_t)cap * sizeof *v);
        if (!v) goto out;
        f->series = v;
        f->cap_series = cap;
    }
    s = calloc(1, sizeof *s);
    if (!s) goto out;
    s->fam = f;
    for (int j = 0; j < f->n_labels; j++) {
        s->values[j] = strdup(values[j] ? values[j] : "");
        if (!s->values[j]) {
            series_free(s, j);
            s = NULL;
            goto out;
        }
    }
    f->series[f->n_series++] = s;
out:
    pthread_mutex_unlock(&f->mu);
    return s;
}

void srv__series_remove(srv_series *s)
{
    if (!s) return;
    srv_family *f = s->fam;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_series; i++)
        if (f->series[i] == s) {
            /* Creation order is rendering order: keep the others' order. */
            memmove(&f->series[i], &f->series[i + 1],
                    (size_t)(f->n_series - i - 1) * sizeof *f->series);
            f->n_series--;
            series_free(s, f->n_labels);
            break;
        }
    pthread_mutex_unlock(&f->mu);
}

void srv__metric_add(srv_series *s, double v)
{
    if (!s) return;
    pthread_mutex_lock(&s->fam->mu);
    s->value += v;
    pthread_mutex_unlock(&s->fam->mu);
}

void srv__metric_set(srv_series *s, double v)
{
    if (!s) return;
    pthread_mutex_lock(&s->fam->mu);
    s->value = v;
    pthread_mutex_unlock(&s->fam->mu);
}

void srv__metric_observe(srv_series *s, double v)
{
    if (!s) return;
    srv_family *f = s->fam;
    int b = 0;
    while (b < f->n_buckets && v > f->buckets[b])
        b++;
    pthread_mutex_lock(&f->mu);
    if (b < f->n_buckets) s->hits[b]++;
    s->count++;
    s->sum += v;
    pthread_mutex_unlock(&f->mu);
}

double srv__metric_value(srv_series *s)
{
    if (!s) return 0;
    pthread_mutex_lock(&s->fam->mu);
    double v = s->fam->type == SRV_HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&s->fam->mu);
    return v;
}

void srv__fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Whole numbers as integers ("10", not "1e+01"); the rest in the
     * shortest precision that reads back to the same double. */
    if (v == (double)(long long)v && fabs(v) < 1e15) {
        snprintf(buf, len, "%lld", (long long)v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Label values escape backslash, double quote and newline; HELP text
 * escapes backslash and newline. */
static void put_escaped(proto_buf *out, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            proto_buf_puts(out, "\\\\");
        else if (*s == '\n')
            proto_buf_puts(out, "\\n");
        else if (*s == '"' && quote)
            proto_buf_puts(out, "\\\"");
        else
            proto_buf_append(out, s, 1);
    }
}

/* name{labels[,le="x"]} value\n */
static void put_sample(proto_buf *out, const srv_family *f, const srv_series *s, const char *suffix,
                       const char *le, double v)
{
    char num[40];
    proto_buf_puts(out, f->name);
    proto_buf_puts(out, suffix);
    if (f->n_labels > 0 || le) {
        proto_buf_puts(out, "{");
        for (int j = 0; j < f->n_labels; j++) {
            proto_buf_printf(out, "%s%s=\"", j ? "," : "", f->labels[j]);
            put_escaped(out, s->values[j], 1);
            proto_buf_puts(out, "\"");
        }
        if (le) proto_buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
        proto_buf_puts(out, "}");
    }
    srv__fmt_double(num, sizeof num, v);
    proto_buf_printf(out, " %s\n", num);
}

static void render_family(srv_family *f, proto_buf *out)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    proto_buf_printf(out, "# HELP %s ", f->name);
    put_escaped(out, f->help, 0);
    proto_buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_series; i++) {
        const srv_series *s = f->series[i];
        if (f->type != SRV_HISTOGRAM) {
            put_sample(out, f, s, "", NULL, s->value);
            continue;
        }
        unsigned long long cum = 0;
        char le[40];
        for (int b = 0; b < f->n_buckets; b++) {
            cum += s->hits[b];
            srv__fmt_double(le, sizeof le, f->buckets[b]);
            put_sample(out, f, s, "_bucket", le, (double)cum);
        }
        put_sample(out, f, s, "_bucket", "+Inf", (double)s->count);
        put_sample(out, f, s, "_sum", NULL, s->sum);
        put_sample(out, f, s, "_count", NULL, (double)s->count);
    }
    pthread_mutex_unlock(&f->mu);
}

int srv__registry_render(srv_registry *r, proto_buf *out)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        render_family(r->fams[i], out);
    pthread_mutex_unlock(&r->mu);
    return out->oom ? -1 : 0;
}
