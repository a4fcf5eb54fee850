/*
 * test_pace.c - results pacing: the hold follows saturation, a held results
 * is replaced by a newer one, released when its hold is over or before its
 * session's next message, a poll's first results under a hold waits one
 * hold too, and nothing is held below saturation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/pace.h"

static struct stream_msg *results(int64_t session_id, int64_t poll_id)
{
    struct stream_msg *m = stream_msg_new(STREAM_RESULTS, session_id);
    m->poll_id = poll_id;
    return m;
}

static void test_hold_follows_saturation(void **state)
{
    (void)state;
    assert_int_equal(pace_next_hold_ms(0, 0.5), 0);
    assert_int_equal(pace_next_hold_ms(0, 0.8), 0); /* between the bands: unchanged */
    assert_int_equal(pace_next_hold_ms(0, 0.95), PACE_HOLD_MS_MIN);
    assert_int_equal(pace_next_hold_ms(PACE_HOLD_MS_MIN, 0.95), 2 * PACE_HOLD_MS_MIN);
    uint32_t h = PACE_HOLD_MS_MIN;
    for (int i = 0; i < 20; i++)
        h = pace_next_hold_ms(h, 1.0);
    assert_int_equal(h, PACE_HOLD_MS_MAX); /* capped */
    assert_int_equal(pace_next_hold_ms(h, 0.8), h);
    assert_int_equal(pace_next_hold_ms(h, 0.1), h / 2);
    assert_int_equal(pace_next_hold_ms(PACE_HOLD_MS_MIN, 0.1), PACE_HOLD_MS_MIN / 2);
    assert_int_equal(pace_next_hold_ms(PACE_HOLD_MS_MIN / 2, 0.1), 0); /* back to none */
}

static void test_no_hold_no_holding(void **state)
{
    (void)state;
    struct pace *p = pace_create();
    struct stream_msg *m = results(1, 10);
    assert_false(pace_offer(p, m, 0, 1000));
    assert_true(pace_idle(p));
    stream_msg_unref(m);
    pace_destroy(p);
}

static void test_held_then_replaced_then_due(void **state)
{
    (void)state;
    struct pace *p = pace_create();
    struct stream_msg *a = results(1, 10), *b = results(1, 10), *c = results(1, 10);
    assert_true(pace_offer(p, a, 200, 1000));  /* the first waits one hold too */
    assert_true(pace_offer(p, b, 200, 1050));  /* replaces a (a is dropped) */
    assert_true(pace_offer(p, c, 200, 1100));  /* replaces b */
    assert_null(pace_take_due(p, 200, 1199));  /* not yet */
    assert_false(pace_has_due(p, 200, 1199));  /* an idle ring needs no turn yet */
    assert_true(pace_has_due(p, 200, 1200));   /* now it does, traffic or not */
    assert_true(pace_has_due(p, 0, 1100));     /* the hold ended: everything goes */
    assert_ptr_equal(pace_take_due(p, 200, 1200), c);
    stream_msg_unref(c);
    assert_null(pace_take_due(p, 200, 1200));
    assert_false(pace_has_due(p, 200, 5000)); /* nothing held */
    /* Sent at 1200: the next offer within the hold is kept again. */
    struct stream_msg *d = results(1, 10);
    assert_true(pace_offer(p, d, 200, 1300));
    /* An offer after the hold goes out itself and drops the older one. */
    struct stream_msg *e = results(1, 10);
    assert_false(pace_offer(p, e, 200, 1400));
    stream_msg_unref(e);
    assert_null(pace_take_due(p, 200, 5000));
    assert_false(pace_idle(p));
    assert_null(pace_take_due(p, 200, 1400 + PACE_IDLE_MS + 1)); /* quiet: forgotten */
    assert_true(pace_idle(p));
    pace_destroy(p);
}

static void test_session_release_before_its_events(void **state)
{
    (void)state;
    struct pace *p = pace_create();
    struct stream_msg *x1 = results(1, 10), *y1 = results(2, 20);
    assert_true(pace_offer(p, x1, 1000, 0));
    assert_true(pace_offer(p, y1, 1000, 0));
    struct stream_msg *x2 = results(1, 10), *y2 = results(2, 20), *x3 = results(1, 11);
    assert_true(pace_offer(p, x2, 1000, 10)); /* x1 dropped */
    assert_true(pace_offer(p, y2, 1000, 10)); /* y1 dropped */
    assert_true(pace_offer(p, x3, 1000, 10)); /* another poll of session 1 */
    /* Session 1's next message (say poll.closed) must come after its held
     * results, of both its polls (newest first in the pacer's list). */
    assert_ptr_equal(pace_take_session(p, 1, 20), x3);
    stream_msg_unref(x3);
    assert_ptr_equal(pace_take_session(p, 1, 20), x2);
    stream_msg_unref(x2);
    assert_null(pace_take_session(p, 1, 20));
    /* Session 2's stays held until its own hold is over, or the hold ends. */
    assert_null(pace_take_due(p, 1000, 500));
    assert_ptr_equal(pace_take_due(p, 0, 500), y2);
    stream_msg_unref(y2);
    assert_null(pace_take_due(p, 0, 500));
    assert_true(pace_idle(p)); /* hold 0: everything forgotten */
    pace_destroy(p);
}

static void test_bounded_and_destroy_drops(void **state)
{
    (void)state;
    struct pace *p = pace_create();
    for (int64_t i = 1; i <= PACE_POLLS_MAX; i++)
        assert_true(pace_offer(p, results(1, i), 500, 0)); /* each held */
    struct stream_msg *over = results(1, PACE_POLLS_MAX + 1);
    assert_false(pace_offer(p, over, 500, 0));
    assert_false(pace_offer(p, over, 500, 1)); /* not tracked: never held */
    stream_msg_unref(over);
    struct stream_msg *held = results(1, 3);
    assert_true(pace_offer(p, held, 500, 1));
    pace_destroy(p); /* drops all held; ASan reports a leak otherwise */
}

static void test_due_time_is_remembered(void **state)
{
    (void)state;
    struct pace *p = pace_create();
    struct stream_msg *a = results(1, 10), *b = results(1, 11);
    assert_true(pace_offer(p, a, 300, 1000)); /* due at 1300 */
    assert_true(pace_offer(p, b, 300, 1100)); /* due at 1400 */
    assert_null(pace_take_due(p, 300, 1299));
    assert_ptr_equal(pace_take_due(p, 300, 1300), a); /* sent at 1300 */
    stream_msg_unref(a);
    assert_ptr_equal(pace_take_due(p, 300, 1400), b); /* sent at 1400 */
    stream_msg_unref(b);
    struct stream_msg *a2 = results(1, 10), *b2 = results(1, 11);
    assert_true(pace_offer(p, b2, 300, 1450)); /* due at 1700 */
    assert_true(pace_offer(p, a2, 300, 1500)); /* due at 1600: the earlier one */
    assert_null(pace_take_due(p, 300, 1599));
    assert_ptr_equal(pace_take_due(p, 300, 1600), a2);
    stream_msg_unref(a2);
    assert_null(pace_take_due(p, 300, 1699)); /* b2 is still waiting */
    assert_ptr_equal(pace_take_due(p, 300, 1700), b2);
    stream_msg_unref(b2);
    assert_null(pace_take_session(p, 1, 1700));
    pace_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_follows_saturation),
        cmocka_unit_test(test_no_hold_no_holding),
        cmocka_unit_test(test_held_then_replaced_then_due),
        cmocka_unit_test(test_session_release_before_its_events),
        cmocka_unit_test(test_bounded_and_destroy_drops),
        cmocka_unit_test(test_due_time_is_remembered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
