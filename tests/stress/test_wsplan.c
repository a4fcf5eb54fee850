/*
 * test_wsplan.c - the wsvotes plan: every participant's connection on its
 * client's engine thread, index and owner inverse to each other over the
 * whole range, every (participant, poll) pair voted once and in order, and
 * the spacing that keeps a participant under 10 votes a second.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "stress/wsplan.h"

static void test_check(void **state)
{
    (void)state;
    struct wsplan p = {.clients = 64, .ppc = 64, .polls = 10, .threads = 2};
    assert_int_equal(wsplan_check(&p), 0);
    p.clients = 63; /* a client's connections could not share one thread */
    assert_int_equal(wsplan_check(&p), -EINVAL);
    p.clients = 64;
    p.ppc = 0;
    assert_int_equal(wsplan_check(&p), -EINVAL);
    p.ppc = 64;
    p.polls = 0;
    assert_int_equal(wsplan_check(&p), -EINVAL);
    p.polls = 1;
    p.threads = 0;
    assert_int_equal(wsplan_check(&p), -EINVAL);
}

/* A bijection of 0..clients*ppc-1 that keeps each client on thread k % threads. */
static void check_layout(uint32_t clients, uint32_t ppc, uint32_t threads)
{
    struct wsplan p = {.clients = clients, .ppc = ppc, .polls = 1, .threads = threads};
    uint32_t n = clients * ppc;
    uint8_t *seen = calloc(n, 1);
    assert_non_null(seen);
    for (uint32_t k = 0; k < clients; k++) {
        for (uint32_t j = 0; j < ppc; j++) {
            uint32_t i = wsplan_index(&p, k, j), k2, j2;
            assert_true(i < n);
            assert_int_equal(seen[i], 0);
            seen[i] = 1;
            assert_int_equal(i % threads, k % threads);
            wsplan_owner(&p, i, &k2, &j2);
            assert_int_equal(k2, k);
            assert_int_equal(j2, j);
        }
    }
    free(seen);
}

static void test_layout(void **state)
{
    (void)state;
    check_layout(64, 64, 2);
    check_layout(512, 8, 2);
    check_layout(6, 5, 3);
    check_layout(1, 7, 1);
    check_layout(8, 1, 4);
}

static void test_advance(void **state)
{
    (void)state;
    const struct wsplan p = {.clients = 2, .ppc = 3, .polls = 2, .threads = 2};
    struct wsplan_cursor c = {0, 0};
    uint32_t parts[6], polls[6], n = 0;
    do {
        assert_true(n < 6);
        parts[n] = c.part;
        polls[n] = c.poll;
        n++;
    } while (wsplan_advance(&p, &c));
    assert_int_equal(n, 6); /* 3 participants x 2 polls, each pair once */
    const uint32_t want_parts[6] = {0, 1, 2, 0, 1, 2}, want_polls[6] = {0, 0, 0, 1, 1, 1};
    for (unsigned i = 0; i < 6; i++) {
        assert_int_equal(parts[i], want_parts[i]);
        assert_int_equal(polls[i], want_polls[i]);
    }
    assert_false(wsplan_has_next(&p, &c));
    assert_false(wsplan_advance(&p, &c)); /* stays done */
    assert_int_equal(c.poll, 2);
}

static void test_spaced(void **state)
{
    (void)state;
    assert_true(wsplan_spaced(0, 5));
    assert_false(wsplan_spaced(1000, 1000 + WSPLAN_GAP_NS - 1));
    assert_true(wsplan_spaced(1000, 1000 + WSPLAN_GAP_NS));
    /* Spaced votes never exceed 10 in any second. */
    assert_true(WSPLAN_GAP_NS * 10 > 1000000000ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_advance),
        cmocka_unit_test(test_spaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
