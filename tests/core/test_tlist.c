/*
 * test_tlist.c - fixed-duration timeout lists: arm, re-arm, disarm, expiry
 * order and the exact deadline boundary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/tlist.h"

static void test_empty(void **state)
{
    (void)state;
    struct tlist l;
    tlist_init(&l, 100);
    assert_null(tlist_pop_expired(&l, 0));
    assert_null(tlist_pop_expired(&l, UINT64_MAX));

    struct tlist_node n;
    tlist_node_init(&n);
    assert_false(tlist_armed(&n));
    tlist_disarm(&n); /* safe on an unarmed node */
    assert_false(tlist_armed(&n));
}

static void test_deadline_boundary(void **state)
{
    (void)state;
    struct tlist l;
    struct tlist_node n;
    tlist_init(&l, 100);
    tlist_node_init(&n);
    tlist_arm(&l, &n, 1000);
    assert_true(tlist_armed(&n));
    assert_null(tlist_pop_expired(&l, 1099)); /* one ms early */
    assert_ptr_equal(tlist_pop_expired(&l, 1100), &n); /* exactly due */
    assert_false(tlist_armed(&n));
    assert_null(tlist_pop_expired(&l, 5000));
}

static void test_order_and_rearm(void **state)
{
    (void)state;
    struct tlist l;
    struct tlist_node n[4];
    tlist_init(&l, 10);
    for (int i = 0; i < 4; i++) {
        tlist_node_init(&n[i]);
        tlist_arm(&l, &n[i], (uint64_t)i); /* deadlines 10, 11, 12, 13 */
    }
    /* Re-arming n[0] at t=5 moves it to the tail with deadline 15. */
    tlist_arm(&l, &n[0], 5);
    assert_ptr_equal(tlist_pop_expired(&l, 13), &n[1]);
    assert_ptr_equal(tlist_pop_expired(&l, 13), &n[2]);
    assert_ptr_equal(tlist_pop_expired(&l, 13), &n[3]);
    assert_null(tlist_pop_expired(&l, 14));
    assert_ptr_equal(tlist_pop_expired(&l, 15), &n[0]);
    assert_null(tlist_pop_expired(&l, 100));
}

static void test_disarm_middle_head_tail(void **state)
{
    (void)state;
    struct tlist l;
    struct tlist_node n[5];
    tlist_init(&l, 1);
    for (int i = 0; i < 5; i++) {
        tlist_node_init(&n[i]);
        tlist_arm(&l, &n[i], 0);
    }
    tlist_disarm(&n[2]);
    tlist_disarm(&n[0]);
    tlist_disarm(&n[4]);
    tlist_disarm(&n[4]); /* twice is harmless */
    assert_false(tlist_armed(&n[0]));
    assert_true(tlist_armed(&n[1]));
    assert_ptr_equal(tlist_pop_expired(&l, 1), &n[1]);
    assert_ptr_equal(tlist_pop_expired(&l, 1), &n[3]);
    assert_null(tlist_pop_expired(&l, 1));
}

static void test_time_going_backwards_keeps_order(void **state)
{
    (void)state;
    struct tlist l;
    struct tlist_node a, b;
    tlist_init(&l, 100);
    tlist_node_init(&a);
    tlist_node_init(&b);
    tlist_arm(&l, &a, 500);
    tlist_arm(&l, &b, 400); /* a stale now: b may not fire before a */
    assert_null(tlist_pop_expired(&l, 599));
    assert_ptr_equal(tlist_pop_expired(&l, 600), &a);
    assert_ptr_equal(tlist_pop_expired(&l, 600), &b);
}

static void test_zero_duration(void **state)
{
    (void)state;
    struct tlist l;
    struct tlist_node n;
    tlist_init(&l, 0);
    tlist_node_init(&n);
    tlist_arm(&l, &n, 42);
    assert_null(tlist_pop_expired(&l, 41));
    assert_ptr_equal(tlist_pop_expired(&l, 42), &n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_deadline_boundary),
        cmocka_unit_test(test_order_and_rearm),
        cmocka_unit_test(test_disarm_middle_head_tail),
        cmocka_unit_test(test_time_going_backwards_keeps_order),
        cmocka_unit_test(test_zero_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
