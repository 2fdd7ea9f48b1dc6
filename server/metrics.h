/*
 * metrics.h - a small Prometheus registry: counters, gauges and histograms
 * with explicit buckets, optional labels, and the text exposition format
 * 0.0.4.
 *
 * A family is registered once at start; its series (one per combination of
 * label values) are made on first use and live as long as the registry, so
 * a hot path resolves its series once and then only updates it. Updates
 * and rendering are thread-safe (one mutex per family); no update allocates.
 */
#ifndef HEPTAPOD_SRV_METRICS_H
#define HEPTAPOD_SRV_METRICS_H

#include "proto/proto.h"

typedef enum srv_mtype { SRV_COUNTER, SRV_GAUGE, SRV_HISTOGRAM } srv_mtype;

typedef struct srv_registry srv_registry;
typedef struct srv_family srv_family;
typedef struct srv_series srv_series;

/** Most labels a family may have. */
#define SRV_MAX_LABELS 12
/** Most buckets a histogram may have (+Inf is implicit). */
#define SRV_MAX_BUCKETS 32

/** An empty registry, or NULL without memory. */
srv_registry *srv__registry_create(void);
/** Frees the registry with all its families and series. */
void srv__registry_free(srv_registry *r);

/**
 * Registers a family. `labels` is a comma-separated list of label names
 * ("" or NULL: none); `buckets` (histograms only) are n strictly increasing
 * finite upper bounds. Names are the caller's (static strings are fine: they
 * are copied). Returns the family (owned by r), or NULL on a bad argument or
 * without memory.
 */
srv_family *srv__family_add(srv_registry *r, srv_mtype type, const char *name, const char *help,
                            const char *labels, const double *buckets, int n_buckets);

/**
 * The series for these label values (as many as the family has labels;
 * NULL when it has none), made on first use. Values are copied. Returns
 * NULL only without memory.
 */
srv_series *srv__series(srv_family *f, const char *const *values);

/**
 * Takes s out of its family and frees it: a series whose labels no longer
 * describe anything (a model unloaded, weights replaced). Only when no
 * other thread can still use the pointer. NULL is a no-op.
 */
void srv__series_remove(srv_series *s);

/** Adds v (>= 0) to a counter, or v (any sign) to a gauge. NULL s is a no-op. */
void srv__metric_add(srv_series *s, double v);
/** Sets a gauge. NULL s is a no-op. */
void srv__metric_set(srv_series *s, double v);
/** Records one observation in a histogram. NULL s is a no-op. */
void srv__metric_observe(srv_series *s, double v);
/** Current value of a counter or gauge, or the count of a histogram. */
double srv__metric_value(srv_series *s);

/**
 * Appends every family in registration order, series in creation order, as
 * Prometheus text 0.0.4 (HELP, TYPE, samples; histograms with cumulative
 * _bucket{le}, _sum and _count). Families with labels but no series yet
 * render HELP and TYPE only. Returns 0, or -1 on oom.
 */
int srv__registry_render(srv_registry *r, proto_buf *out);

/**
 * Writes v as Prometheus expects it (shortest round-trip form, "+Inf",
 * "-Inf", "NaN") into buf (>= 32 bytes).
 */
void srv__fmt_double(char *buf, size_t len, double v);

#endif
