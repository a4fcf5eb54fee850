/*
 * test_outcome.c - the decision table for a batch whose connection broke:
 * every combination of where it broke, what txid_status said, attempts and
 * time left, checked against the rule "acknowledge only what is known to be
 * committed, run again only what is known not to be"; and the witness row
 * that must confirm "committed".
 */
#include "store/outcome.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

static enum outcome_action decide(bool sent, bool wrote, bool reachable, enum outcome_check c, unsigned attempts,
                                  bool time_left)
{
    struct outcome_input in = {
        .commit_sent = sent,
        .wrote = wrote,
        .reachable = reachable,
        .check = c,
        .attempts = attempts,
        .time_left = time_left,
    };

    return outcome_decide(&in);
}

static void test_parse(void **state)
{
    (void)state;
    assert_int_equal(outcome_parse("committed"), OUTCOME_COMMITTED);
    assert_int_equal(outcome_parse("aborted"), OUTCOME_ABORTED);
    assert_int_equal(outcome_parse("in progress"), OUTCOME_IN_PROGRESS);
    assert_int_equal(outcome_parse(NULL), OUTCOME_FORGOTTEN);
    /* Anything else decides nothing. */
    assert_int_equal(outcome_parse(""), OUTCOME_UNREACHABLE);
    assert_int_equal(outcome_parse("Committed"), OUTCOME_UNREACHABLE);
    assert_int_equal(outcome_parse("committed "), OUTCOME_UNREACHABLE);
    assert_string_equal(outcome_check_name(OUTCOME_COMMITTED), "committed");
    assert_string_equal(outcome_check_name(OUTCOME_IN_PROGRESS), "in progress");
}

/* Before COMMIT left, or in a read-only batch, nothing can have committed. */
static void test_not_sent(void **state)
{
    (void)state;
    for (int c = OUTCOME_CHECK_NONE; c <= OUTCOME_UNREACHABLE; c++) {
        assert_int_equal(decide(false, true, true, c, 1, true), OUTCOME_RETRY);
        assert_int_equal(decide(true, false, true, c, 1, true), OUTCOME_RETRY);
        /* No database to run it on: fail now, the client retries with its key. */
        assert_int_equal(decide(false, true, false, c, 1, true), OUTCOME_FAIL);
        assert_int_equal(decide(false, true, true, c, OUTCOME_ATTEMPTS_MAX, true), OUTCOME_FAIL);
        assert_int_equal(decide(false, true, true, c, OUTCOME_ATTEMPTS_MAX - 1, false), OUTCOME_RETRY);
    }
}

/* COMMIT was sent: only the database's answer decides. */
static void test_sent(void **state)
{
    (void)state;
    for (unsigned a = 1; a <= OUTCOME_ATTEMPTS_MAX + 1; a++) {
        for (int t = 0; t <= 1; t++) {
            /* Committed is acknowledged whatever the attempt or the clock. */
            assert_int_equal(decide(true, true, true, OUTCOME_COMMITTED, a, t), OUTCOME_ACK);
            /* Never run again while the first run may still commit. */
            assert_int_equal(decide(true, true, true, OUTCOME_IN_PROGRESS, a, t),
                             t ? OUTCOME_RECHECK : OUTCOME_FAIL);
            assert_int_equal(decide(true, true, false, OUTCOME_UNREACHABLE, a, t),
                             t ? OUTCOME_RECHECK : OUTCOME_FAIL);
            /* Forgotten: never guess, never acknowledge. */
            assert_int_equal(decide(true, true, true, OUTCOME_FORGOTTEN, a, t), OUTCOME_FAIL);
            assert_int_equal(decide(true, true, true, OUTCOME_ABORTED, a, t),
                             a < OUTCOME_ATTEMPTS_MAX ? OUTCOME_RETRY : OUTCOME_FAIL);
        }
    }
}

/* No input ever turns into an acknowledgement except a committed check
 * after COMMIT was sent by a writing batch. */
static void test_ack_only_when_committed(void **state)
{
    (void)state;
    for (int sent = 0; sent <= 1; sent++)
        for (int wrote = 0; wrote <= 1; wrote++)
            for (int r = 0; r <= 1; r++)
                for (int c = OUTCOME_CHECK_NONE; c <= OUTCOME_UNREACHABLE; c++)
                    for (unsigned a = 1; a <= OUTCOME_ATTEMPTS_MAX + 1; a++)
                        for (int t = 0; t <= 1; t++) {
                            enum outcome_action act = decide(sent, wrote, r, c, a, t);
                            bool known_committed = sent && wrote && c == OUTCOME_COMMITTED;
                            bool known_not = !sent || !wrote || c == OUTCOME_ABORTED;

                            assert_int_equal(act == OUTCOME_ACK, known_committed);
                            if (act == OUTCOME_RETRY) {
                                assert_true(known_not);
                                assert_true(r);
                                assert_true(a < OUTCOME_ATTEMPTS_MAX);
                            }
                            if (act == OUTCOME_RECHECK)
                                assert_true(t && sent && wrote);
                        }
}

/* "committed" stands only with our row as proof; without it the id may
 * have been handed out again after a crash. */
static void test_refine(void **state)
{
    (void)state;
    assert_int_equal(outcome_refine(OUTCOME_COMMITTED, OUTCOME_WITNESS_FOUND), OUTCOME_COMMITTED);
    assert_int_equal(outcome_refine(OUTCOME_COMMITTED, OUTCOME_WITNESS_ABSENT), OUTCOME_ABORTED);
    assert_int_equal(outcome_refine(OUTCOME_COMMITTED, OUTCOME_WITNESS_NONE), OUTCOME_FORGOTTEN);
    /* Other answers are not changed by a witness. */
    for (int c = OUTCOME_CHECK_NONE; c <= OUTCOME_UNREACHABLE; c++) {
        if (c == OUTCOME_COMMITTED)
            continue;
        for (int w = OUTCOME_WITNESS_NONE; w <= OUTCOME_WITNESS_ABSENT; w++)
            assert_int_equal(outcome_refine(c, w), c);
    }
    /* And a refined answer never acknowledges without proof. */
    for (int w = OUTCOME_WITNESS_NONE; w <= OUTCOME_WITNESS_ABSENT; w++)
        assert_int_equal(decide(true, true, true, outcome_refine(OUTCOME_COMMITTED, w), 1, true) == OUTCOME_ACK,
                         w == OUTCOME_WITNESS_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_not_sent),
        cmocka_unit_test(test_sent),
        cmocka_unit_test(test_ack_only_when_committed),
        cmocka_unit_test(test_refine),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
