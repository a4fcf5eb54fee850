/*
 * metrics.h - a registry of counters, gauges and histograms rendered in the
 * Prometheus text format.
 *
 * Metrics are registered at start-up (before threads run) and updated from
 * any thread with relaxed atomics; rendering reads them without locks.
 */
#ifndef TALLY_CORE_METRICS_H
#define TALLY_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define METRICS_MAX 128
#define METRIC_HIST_BUCKETS 16

struct metric;

/*
 * A name may end in constant labels, e.g. "tally_clients{kind=\"ws\"}": metrics
 * sharing the part before the brace form one family (same type and HELP).
 */
/** Registers a counter (only grows). name and help must be string literals. */
struct metric *metrics_counter(const char *name, const char *help);
/** Registers a gauge (set, add, sub). */
struct metric *metrics_gauge(const char *name, const char *help);
/**
 * Registers a histogram with upper bounds (ascending, at most
 * METRIC_HIST_BUCKETS, in the unit of observed values, rendered divided by
 * scale: e.g. observe microseconds, scale 1e6, render seconds).
 */
struct metric *metrics_histogram(const char *name, const char *help, const double *bounds,
                                 unsigned n_bounds, double scale);

/** Adds v (counters: v >= 0). Any thread. */
void metric_add(struct metric *m, int64_t v);
/** Sets a gauge. Any thread. */
void metric_set(struct metric *m, int64_t v);
/** Records one observation in a histogram. Any thread. */
void metric_observe(struct metric *m, double v);
/** The current value; for a histogram, its observation count. */
int64_t metric_value(const struct metric *m);

/** Appends every metric in Prometheus text format 0.0.4 to out. */
void metrics_render(struct buf *out);
/** Forgets every registration (tests only). */
void metrics_reset(void);

#endif
