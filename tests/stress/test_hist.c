/*
 * test_hist.c - the load generator's log-linear histogram against known
 * distributions: exact below the first power of two, within one sub-bucket
 * (1/32) above it, merging equal to recording once, max exact.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "stress/hist.h"

static struct hist h, h2;

/* The relative error a sub-bucket allows: 1/HIST_SUB above the linear range. */
static void assert_close(uint64_t got, uint64_t want)
{
    uint64_t tol = want / HIST_SUB + 1;
    if (got + tol < want || got > want + tol)
        fail_msg("quantile %llu, expected %llu +- %llu", (unsigned long long)got,
                 (unsigned long long)want, (unsigned long long)tol);
}

static void test_empty(void **state)
{
    (void)state;
    hist_init(&h);
    assert_int_equal(hist_quantile(&h, 0.5), 0);
    assert_int_equal(h.n, 0);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    hist_init(&h);
    for (uint64_t v = 0; v < HIST_SUB; v++)
        hist_add(&h, v);
    assert_int_equal(hist_quantile(&h, 0.0), 0);
    assert_int_equal(hist_quantile(&h, 0.5), HIST_SUB / 2);
    assert_int_equal(hist_quantile(&h, 1.0), HIST_SUB - 1);
    assert_int_equal(h.max, HIST_SUB - 1);
    assert_int_equal(h.min, 0);
}

/* 1..100000 ns uniformly: quantile q is q * 100000 within a sub-bucket. */
static void test_uniform(void **state)
{
    (void)state;
    hist_init(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        hist_add(&h, v);
    assert_close(hist_quantile(&h, 0.50), 50000);
    assert_close(hist_quantile(&h, 0.90), 90000);
    assert_close(hist_quantile(&h, 0.99), 99000);
    assert_close(hist_quantile(&h, 0.999), 99900);
    assert_int_equal(hist_quantile(&h, 1.0), 100000); /* capped at the exact max */
}

/* Two clusters: 99% at 1 ms, 1% at 1 s. p50 and p98 see the first, p99.5 the second. */
static void test_bimodal(void **state)
{
    (void)state;
    hist_init(&h);
    for (int i = 0; i < 9900; i++)
        hist_add(&h, 1000000);
    for (int i = 0; i < 100; i++)
        hist_add(&h, 1000000000);
    assert_close(hist_quantile(&h, 0.50), 1000000);
    assert_close(hist_quantile(&h, 0.98), 1000000);
    assert_close(hist_quantile(&h, 0.995), 1000000000);
    assert_int_equal(h.max, 1000000000);
}

/* Recording in two histograms and merging equals recording in one. */
static void test_merge(void **state)
{
    (void)state;
    static struct hist one;
    hist_init(&h);
    hist_init(&h2);
    hist_init(&one);
    srand(7);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = (uint64_t)rand() % 5000000;
        hist_add(i % 2 ? &h : &h2, v);
        hist_add(&one, v);
    }
    hist_merge(&h, &h2);
    assert_int_equal(h.n, one.n);
    assert_int_equal(h.max, one.max);
    assert_int_equal(h.min, one.min);
    for (double q = 0.0; q <= 1.0; q += 0.05)
        assert_int_equal(hist_quantile(&h, q), hist_quantile(&one, q));
}

/* Huge values land in the last bucket instead of overflowing the table. */
static void test_huge(void **state)
{
    (void)state;
    hist_init(&h);
    hist_add(&h, UINT64_MAX);
    hist_add(&h, 1);
    assert_int_equal(h.n, 2);
    assert_int_equal(hist_quantile(&h, 1.0), UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),   cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_uniform), cmocka_unit_test(test_bimodal),
        cmocka_unit_test(test_merge),   cmocka_unit_test(test_huge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
