/*
 * test_track.c - the load generator's bookkeeping: fields read from the
 * server's messages, seq gaps and repeats, the vote spread, which vote a
 * results message is charged to, and the capacity finder's stepping and
 * stop rule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "stress/track.h"

#define MSG(s) (const uint8_t *)(s), strlen(s)

static void test_msg_type(void **state)
{
    (void)state;
    char t[TRACK_TYPE_MAX];
    assert_int_equal(track_msg_type(MSG("{\"type\":\"poll.opened\",\"seq\":3}"), t, sizeof(t)), 11);
    assert_string_equal(t, "poll.opened");
    assert_true(track_msg_is(MSG("{\"type\":\"ack\",\"data\":{}}"), "ack"));
    assert_false(track_msg_is(MSG("{\"type\":\"ack\",\"data\":{}}"), "ac"));
    /* Absent, not a string, unterminated, or too long for the buffer. */
    assert_int_equal(track_msg_type(MSG("{\"seq\":3}"), t, sizeof(t)), -1);
    assert_int_equal(track_msg_type(MSG("{\"type\":3}"), t, sizeof(t)), -1);
    assert_int_equal(track_msg_type(MSG("{\"type\":\"resul"), t, sizeof(t)), -1);
    assert_int_equal(track_msg_type(MSG("{\"type\":\"results\"}"), t, 4), -1);
    assert_int_equal(track_msg_type(MSG("{\"type\":\"results\"}"), t, 8), 7);
}

static void test_msg_u64(void **state)
{
    (void)state;
    uint64_t v = 0;
    const char *m =
        "{\"type\":\"results\",\"data\":{\"poll_id\":42,\"counts\":[1,2],\"version\":1234}}";
    assert_true(track_msg_u64(MSG(m), "version", &v));
    assert_int_equal(v, 1234);
    assert_true(track_msg_u64(MSG(m), "poll_id", &v));
    assert_int_equal(v, 42);
    assert_false(track_msg_u64(MSG(m), "seq", &v));
    assert_false(track_msg_u64(MSG("{\"seq\":null}"), "seq", &v));
    assert_false(track_msg_u64(MSG("{\"seq\":-1}"), "seq", &v));
    /* The key must be whole: "id" does not match "poll_id". */
    assert_false(track_msg_u64(MSG("{\"poll_id\":7}"), "id", &v));
    /* A number cut at the end of the buffer is read as far as it goes. */
    assert_true(track_msg_u64((const uint8_t *)"{\"seq\":123", 9, "seq", &v));
    assert_int_equal(v, 12);
    /* Overflow is refused. */
    assert_false(track_msg_u64(MSG("{\"seq\":99999999999999999999999}"), "seq", &v));
}

static void test_seq(void **state)
{
    (void)state;
    struct track_seq s;
    track_seq_init(&s, 5);
    assert_true(track_seq_see(&s, 6));
    assert_true(track_seq_see(&s, 7));
    assert_false(track_seq_see(&s, 10)); /* 8 and 9 missing */
    assert_int_equal(s.gaps, 2);
    assert_false(track_seq_see(&s, 10)); /* repeated */
    assert_false(track_seq_see(&s, 3));  /* older than the resume point */
    assert_int_equal(s.dups, 2);
    assert_true(track_seq_see(&s, 11));
    assert_int_equal(s.last, 11);
    assert_int_equal(s.gaps, 2);
}

static void test_spread(void **state)
{
    (void)state;
    const uint64_t t0 = 1000, w = 2000000000ull;
    assert_int_equal(track_spread_due(t0, w, 0, 4), t0);
    assert_int_equal(track_spread_due(t0, w, 1, 4), t0 + w / 4);
    assert_int_equal(track_spread_due(t0, w, 3, 4), t0 + 3 * (w / 4));
    /* Monotonic, within the window, and exact for long windows and many votes. */
    const uint64_t big = 600ull * 1000000000ull, n = 400000;
    uint64_t prev = 0;
    for (uint64_t i = 0; i < n; i += 997) {
        uint64_t d = track_spread_due(0, big, i, n);
        assert_true(d >= prev && d < big);
        prev = d;
    }
    assert_int_equal(track_spread_due(0, big, n - 1, n), big - big / n);
    assert_int_equal(track_spread_due(t0, 0, 5, 9), t0); /* no window: all at once */
}

static void test_sample(void **state)
{
    (void)state;
    /* Every newly reflected version is reachable and nothing outside the range is. */
    int hit[5] = {0};
    uint64_t rng = 88172645463325252ull;
    for (int i = 0; i < 1000; i++) {
        uint64_t k = track_sample_version(10, 14, track_rand(&rng));
        assert_true(k >= 11 && k <= 14);
        hit[k - 10]++;
    }
    for (int k = 1; k <= 4; k++)
        assert_true(hit[k] > 150); /* about 250 each */
    assert_int_equal(track_sample_version(3, 4, 12345), 4);
    assert_int_equal(track_sample_version(0, 1, 7), 1);
    assert_int_equal(track_sample_version(5, 5, 7), 5); /* nothing new: no vote */
}

static void test_step_rule(void **state)
{
    (void)state;
    const struct track_limits l = {.p95_ms = 100, .error_rate = 0.001};
    assert_true(track_step_passes(&l, 99.9, 0, 10));
    assert_true(track_step_passes(&l, 100, 0.001, 10));
    assert_false(track_step_passes(&l, 100.1, 0, 10));
    assert_false(track_step_passes(&l, 50, 0.0011, 10));
    assert_false(track_step_passes(&l, 0, 0, 0)); /* nothing measured */
}

static void test_next_n(void **state)
{
    (void)state;
    assert_int_equal(track_next_n(1000, 0, 150, 100000), 1500);
    assert_int_equal(track_next_n(1000, 2500, 150, 100000), 3500);
    assert_int_equal(track_next_n(90000, 0, 150, 100000), 100000); /* capped */
    assert_int_equal(track_next_n(100000, 0, 150, 100000), 0);     /* done */
    assert_int_equal(track_next_n(1, 0, 101, 10), 2);              /* always grows */
    /* A whole search ends. */
    unsigned steps = 0;
    for (uint32_t n = 2000; n; n = track_next_n(n, 0, 150, 100000))
        steps++;
    assert_int_equal(steps,
                     11); /* 2000 3000 4500 6750 10125 15187 22780 34170 51255 76882 100000 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_type), cmocka_unit_test(test_msg_u64),
        cmocka_unit_test(test_seq),      cmocka_unit_test(test_spread),
        cmocka_unit_test(test_sample),   cmocka_unit_test(test_step_rule),
        cmocka_unit_test(test_next_n),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
