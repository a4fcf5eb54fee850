/*
 * metrics.c - a fixed registry of counters, gauges and histograms.
 *
 * The table never moves: entries are filled under metrics_lock and published
 * by a release store of metrics_count, so renderers and updaters read them
 * without a lock. Values are relaxed atomics: each number is exact, a render
 * taken during updates is simply a mix of slightly different instants.
 *
 * A name may carry constant labels, "tally_conns{kind=\"ws\"}": metrics with
 * the same base name form one family, rendered together under a single HELP
 * and TYPE. Histograms keep one count per bucket and render them cumulatively;
 * _count is the +Inf bucket so the two always agree.
 */
#include "core/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"

enum metric_kind { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric {
    const char *name;
    const char *help;
    enum metric_kind kind;
    size_t base_len; /* name up to the '{' of its labels */
    _Atomic int64_t value;
    /* histograms */
    unsigned n_bounds;
    double bounds[METRIC_HIST_BUCKETS];
    double scale;
    _Atomic uint64_t buckets[METRIC_HIST_BUCKETS + 1]; /* the last one is +Inf */
    _Atomic uint64_t sum_bits;                         /* a double, updated by CAS */
};

static struct metric metrics_table[METRICS_MAX];
static atomic_uint metrics_count;
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const metric_type_names[] = {
    [METRIC_COUNTER] = "counter",
    [METRIC_GAUGE] = "gauge",
    [METRIC_HISTOGRAM] = "histogram",
};

static bool name_char_ok(char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':')
        return true;
    return !first && c >= '0' && c <= '9';
}

/* Length of the base name; asserts the Prometheus name syntax. */
static size_t metric_base_len(const char *name)
{
    size_t n = 0;
    while (name[n] != '\0' && name[n] != '{') {
        TALLY_ASSERT(name_char_ok(name[n], n == 0));
        n++;
    }
    TALLY_ASSERT(n > 0);
    if (name[n] == '{')
        TALLY_ASSERT(name[strlen(name) - 1] == '}');
    return n;
}

struct metric_hist_spec {
    const double *bounds;
    unsigned n_bounds;
    double scale;
};

/* Fills the next entry and publishes it, all under the lock, so that two
 * threads registering at once get distinct entries and renderers only ever
 * see complete ones. */
static struct metric *metric_register(const char *name, const char *help, enum metric_kind kind,
                                      const struct metric_hist_spec *hist)
{
    TALLY_ASSERT(name != NULL && help != NULL);
    TALLY_ASSERT((kind == METRIC_HISTOGRAM) == (hist != NULL));
    size_t base_len = metric_base_len(name);

    pthread_mutex_lock(&metrics_lock);
    unsigned n = atomic_load_explicit(&metrics_count, memory_order_relaxed);
    TALLY_ASSERT(n < METRICS_MAX);
    for (unsigned i = 0; i < n; i++) {
        TALLY_ASSERT(strcmp(metrics_table[i].name, name) != 0); /* registered twice */
        if (metrics_table[i].base_len == base_len &&
            strncmp(metrics_table[i].name, name, base_len) == 0)
            TALLY_ASSERT(metrics_table[i].kind == kind); /* one family, one type */
    }
    struct metric *m = &metrics_table[n];
    memset(m, 0, sizeof(*m));
    m->name = name;
    m->help = help;
    m->kind = kind;
    m->base_len = base_len;
    m->scale = 1.0;
    if (hist != NULL) {
        memcpy(m->bounds, hist->bounds, hist->n_bounds * sizeof(*hist->bounds));
        m->n_bounds = hist->n_bounds;
        m->scale = hist->scale;
    }
    atomic_store_explicit(&metrics_count, n + 1, memory_order_release);
    pthread_mutex_unlock(&metrics_lock);
    return m;
}

struct metric *metrics_counter(const char *name, const char *help)
{
    return metric_register(name, help, METRIC_COUNTER, NULL);
}

struct metric *metrics_gauge(const char *name, const char *help)
{
    return metric_register(name, help, METRIC_GAUGE, NULL);
}

struct metric *metrics_histogram(const char *name, const char *help, const double *bounds,
                                 unsigned n_bounds, double scale)
{
    TALLY_ASSERT(n_bounds >= 1 && n_bounds <= METRIC_HIST_BUCKETS);
    TALLY_ASSERT(scale > 0);
    TALLY_ASSERT(bounds != NULL);
    for (unsigned i = 1; i < n_bounds; i++)
        TALLY_ASSERT(bounds[i - 1] < bounds[i]);

    struct metric_hist_spec spec = {bounds, n_bounds, scale};
    return metric_register(name, help, METRIC_HISTOGRAM, &spec);
}

void metric_add(struct metric *m, int64_t v)
{
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(m->kind != METRIC_HISTOGRAM);
    TALLY_ASSERT(m->kind != METRIC_COUNTER || v >= 0); /* counters only grow */
    atomic_fetch_add_explicit(&m->value, v, memory_order_relaxed);
}

void metric_set(struct metric *m, int64_t v)
{
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(m->kind == METRIC_GAUGE);
    atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

void metric_observe(struct metric *m, double v)
{
    TALLY_ASSERT(m != NULL);
    TALLY_ASSERT(m->kind == METRIC_HISTOGRAM);
    unsigned b = 0;
    while (b < m->n_bounds && v > m->bounds[b])
        b++;
    atomic_fetch_add_explicit(&m->buckets[b], 1, memory_order_relaxed);

    uint64_t old_bits = atomic_load_explicit(&m->sum_bits, memory_order_relaxed);
    uint64_t new_bits;
    do {
        double sum;
        memcpy(&sum, &old_bits, sizeof(sum));
        sum += v;
        memcpy(&new_bits, &sum, sizeof(sum));
    } while (!atomic_compare_exchange_weak_explicit(&m->sum_bits, &old_bits, new_bits,
                                                    memory_order_relaxed, memory_order_relaxed));
}

static uint64_t hist_count(const struct metric *m)
{
    uint64_t total = 0;
    for (unsigned b = 0; b <= m->n_bounds; b++)
        total += atomic_load_explicit(&m->buckets[b], memory_order_relaxed);
    return total;
}

int64_t metric_value(const struct metric *m)
{
    TALLY_ASSERT(m != NULL);
    if (m->kind == METRIC_HISTOGRAM)
        return (int64_t)hist_count(m);
    return atomic_load_explicit(&m->value, memory_order_relaxed);
}

/* ---- rendering ---------------------------------------------------------- */

/* The shortest of %.15g / %.17g that reads back as v; Prometheus spellings of inf/nan. */
static void fmt_double(char *out, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, len, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, len, "%.17g", v);
    }
}

/* HELP text escaping per the text format: backslash and newline. */
static void render_help(struct buf *out, const struct metric *m)
{
    buf_printf(out, "# HELP %.*s ", (int)m->base_len, m->name);
    for (const char *p = m->help; *p != '\0'; p++) {
        if (*p == '\\')
            buf_append_str(out, "\\\\");
        else if (*p == '\n')
            buf_append_str(out, "\\n");
        else
            buf_append(out, p, 1);
    }
    buf_printf(out, "\n# TYPE %.*s %s\n", (int)m->base_len, m->name, metric_type_names[m->kind]);
}

static void render_histogram(struct buf *out, const struct metric *m)
{
    const char *base = m->name;
    int blen = (int)m->base_len;
    const char *labels = m->name + m->base_len; /* "" or "{...}" */
    int inner_len = labels[0] == '{' ? (int)strlen(labels) - 2 : 0;
    const char *sep = inner_len > 0 ? "," : "";
    char num[40];
    uint64_t cum = 0;

    for (unsigned b = 0; b <= m->n_bounds; b++) {
        cum += atomic_load_explicit(&m->buckets[b], memory_order_relaxed);
        if (b < m->n_bounds)
            fmt_double(num, sizeof(num), m->bounds[b] / m->scale);
        else
            snprintf(num, sizeof(num), "+Inf");
        buf_printf(out, "%.*s_bucket{%.*s%sle=\"%s\"} %llu\n", blen, base, inner_len,
                   labels + 1, sep, num, (unsigned long long)cum);
    }
    uint64_t bits = atomic_load_explicit(&m->sum_bits, memory_order_relaxed);
    double sum;
    memcpy(&sum, &bits, sizeof(sum));
    fmt_double(num, sizeof(num), sum / m->scale);
    buf_printf(out, "%.*s_sum%s %s\n", blen, base, labels, num);
    buf_printf(out, "%.*s_count%s %llu\n", blen, base, labels, (unsigned long long)cum);
}

static bool same_family(const struct metric *a, const struct metric *b)
{
    return a->base_len == b->base_len && strncmp(a->name, b->name, a->base_len) == 0;
}

void metrics_render(struct buf *out)
{
    TALLY_ASSERT(out != NULL);
    unsigned n = atomic_load_explicit(&metrics_count, memory_order_acquire);

    for (unsigned i = 0; i < n; i++) {
        const struct metric *m = &metrics_table[i];
        bool seen = false;
        for (unsigned j = 0; j < i && !seen; j++)
            seen = same_family(&metrics_table[j], m);
        if (seen)
            continue; /* rendered with the first member of its family */
        render_help(out, m);
        for (unsigned j = i; j < n; j++) {
            const struct metric *s = &metrics_table[j];
            if (!same_family(s, m))
                continue;
            if (s->kind == METRIC_HISTOGRAM)
                render_histogram(out, s);
            else
                buf_printf(out, "%s %lld\n", s->name,
                           (long long)atomic_load_explicit(&s->value, memory_order_relaxed));
        }
    }
}

void metrics_reset(void)
{
    pthread_mutex_lock(&metrics_lock);
    atomic_store_explicit(&metrics_count, 0, memory_order_release);
    memset(metrics_table, 0, sizeof(metrics_table));
    pthread_mutex_unlock(&metrics_lock);
}
