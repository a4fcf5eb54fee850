/*
 * test_metrics.c - the registry and its Prometheus text rendering: exact
 * output for a counter, a gauge, a histogram (cumulative buckets, bounds at
 * the edge, scale) and a labelled family; concurrent updates are exact.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/metrics.h"

static int reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static void expect_render(const char *want)
{
    struct buf b = BUF_INIT;
    metrics_render(&b);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_empty(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    metrics_render(&b);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_counter_and_gauge(void **state)
{
    (void)state;
    struct metric *c = metrics_counter("tally_votes_total", "Votes accepted.");
    struct metric *g = metrics_gauge("tally_connections", "Open client connections.");
    metric_add(c, 3);
    metric_add(c, 0);
    metric_add(c, 39);
    metric_set(g, 10);
    metric_add(g, -12);
    assert_int_equal(metric_value(c), 42);
    assert_int_equal(metric_value(g), -2);
    expect_render("# HELP tally_votes_total Votes accepted.\n"
                  "# TYPE tally_votes_total counter\n"
                  "tally_votes_total 42\n"
                  "# HELP tally_connections Open client connections.\n"
                  "# TYPE tally_connections gauge\n"
                  "tally_connections -2\n");
}

static void test_histogram(void **state)
{
    (void)state;
    /* Observed in microseconds, rendered in seconds. */
    static const double bounds[] = {1000, 5000, 25000};
    struct metric *h =
        metrics_histogram("tally_fanout_seconds", "Fan-out latency.", bounds, 3, 1e6);
    metric_observe(h, 0);      /* first bucket */
    metric_observe(h, 1000);   /* exactly on a bound: le is inclusive */
    metric_observe(h, 1000.5); /* just above: second bucket */
    metric_observe(h, 25000);
    metric_observe(h, 30000);  /* above every bound: only +Inf */
    assert_int_equal(metric_value(h), 5);
    expect_render("# HELP tally_fanout_seconds Fan-out latency.\n"
                  "# TYPE tally_fanout_seconds histogram\n"
                  "tally_fanout_seconds_bucket{le=\"0.001\"} 2\n"
                  "tally_fanout_seconds_bucket{le=\"0.005\"} 3\n"
                  "tally_fanout_seconds_bucket{le=\"0.025\"} 4\n"
                  "tally_fanout_seconds_bucket{le=\"+Inf\"} 5\n"
                  "tally_fanout_seconds_sum 0.0570005\n"
                  "tally_fanout_seconds_count 5\n");
}

static void test_labelled_family(void **state)
{
    (void)state;
    struct metric *ws = metrics_gauge("tally_clients{kind=\"ws\"}", "Clients by transport.");
    struct metric *other = metrics_counter("tally_errors_total", "Errors.");
    struct metric *sse = metrics_gauge("tally_clients{kind=\"sse\"}", "Clients by transport.");
    static const double bounds[] = {1, 2};
    struct metric *h = metrics_histogram("tally_batch{store=\"pg\"}", "Batch size.", bounds, 2, 1);
    metric_set(ws, 7);
    metric_set(sse, 2);
    metric_add(other, 1);
    metric_observe(h, 2);
    expect_render("# HELP tally_clients Clients by transport.\n"
                  "# TYPE tally_clients gauge\n"
                  "tally_clients{kind=\"ws\"} 7\n"
                  "tally_clients{kind=\"sse\"} 2\n"
                  "# HELP tally_errors_total Errors.\n"
                  "# TYPE tally_errors_total counter\n"
                  "tally_errors_total 1\n"
                  "# HELP tally_batch Batch size.\n"
                  "# TYPE tally_batch histogram\n"
                  "tally_batch_bucket{store=\"pg\",le=\"1\"} 0\n"
                  "tally_batch_bucket{store=\"pg\",le=\"2\"} 1\n"
                  "tally_batch_bucket{store=\"pg\",le=\"+Inf\"} 1\n"
                  "tally_batch_sum{store=\"pg\"} 2\n"
                  "tally_batch_count{store=\"pg\"} 1\n");
}

static void test_help_escaping(void **state)
{
    (void)state;
    metrics_counter("x_total", "a\\b\nc");
    expect_render("# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total 0\n");
}

static void test_capacity(void **state)
{
    (void)state;
    static char names[METRICS_MAX][16];
    for (int i = 0; i < METRICS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "m%d", i);
        assert_non_null(metrics_gauge(names[i], "h"));
    }
    struct buf b = BUF_INIT;
    metrics_render(&b);
    assert_non_null(strstr(b.data, "\nm127 0\n"));
    buf_free(&b);
}

#define THREADS 4
#define ADDS 100000

static struct metric *shared_counter, *shared_hist;

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < ADDS; i++) {
        metric_add(shared_counter, 1);
        metric_observe(shared_hist, 0.5);
    }
    return NULL;
}

static void test_concurrent_updates_exact(void **state)
{
    (void)state;
    static const double bounds[] = {1};
    shared_counter = metrics_counter("c_total", "c");
    shared_hist = metrics_histogram("h", "h", bounds, 1, 1);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, adder, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(metric_value(shared_counter), THREADS * ADDS);
    assert_int_equal(metric_value(shared_hist), THREADS * ADDS);
    struct buf b = BUF_INIT;
    metrics_render(&b);
    assert_non_null(strstr(b.data, "\nh_sum 200000\n")); /* 400000 x 0.5, exact in binary */
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty, reset),
        cmocka_unit_test_setup(test_counter_and_gauge, reset),
        cmocka_unit_test_setup(test_histogram, reset),
        cmocka_unit_test_setup(test_labelled_family, reset),
        cmocka_unit_test_setup(test_help_escaping, reset),
        cmocka_unit_test_setup(test_capacity, reset),
        cmocka_unit_test_setup(test_concurrent_updates_exact, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
