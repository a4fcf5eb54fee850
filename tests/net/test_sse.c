/*
 * test_sse.c - the exact bytes of the event stream and the bounds of the
 * sequence a client resumes from.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "net/sse.h"
#include "core/base.h"
#include "core/buf.h"

static void assert_buf(struct buf *b, const char *want)
{
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    buf_free(b);
}

static void test_event_sequenced(void **state)
{
    (void)state;
    static const char json[] = "{\"type\":\"poll.opened\",\"seq\":7,\"data\":{\"id\":3}}";
    struct buf b = BUF_INIT;
    sse_event(&b, "poll.opened", 7, json, strlen(json));
    assert_buf(&b, "event: poll.opened\n"
                   "id: 7\n"
                   "data: {\"type\":\"poll.opened\",\"seq\":7,\"data\":{\"id\":3}}\n"
                   "\n");
    sse_event(&b, "session.closed", SSE_SEQ_MAX, "{}", 2);
    assert_buf(&b, "event: session.closed\nid: 9007199254740992\ndata: {}\n\n");
    sse_event(&b, "poll.created", 1, "{}", 2);
    assert_buf(&b, "event: poll.created\nid: 1\ndata: {}\n\n");
}

static void test_event_unsequenced(void **state)
{
    (void)state;
    static const char json[] = "{\"type\":\"results\",\"data\":{\"poll_id\":1,\"counts\":[2,0]}}";
    struct buf b = BUF_INIT;
    sse_event(&b, "results", 0, json, strlen(json));
    assert_buf(&b, "event: results\n"
                   "data: {\"type\":\"results\",\"data\":{\"poll_id\":1,\"counts\":[2,0]}}\n"
                   "\n");
    /* only json_len bytes are written, the data needs no NUL */
    sse_event(&b, "hello", 0, "{\"a\":1}XYZ", 7);
    assert_buf(&b, "event: hello\ndata: {\"a\":1}\n\n");
}

/* Events append: a stream is the concatenation of its parts. */
static void test_stream_appends(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    sse_head(&b);
    sse_event(&b, "hello", 0, "{}", 2);
    sse_heartbeat(&b);
    sse_event(&b, "poll.closed", 12, "[1]", 3);
    assert_buf(&b, "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/event-stream\r\n"
                   "Cache-Control: no-store\r\n"
                   "Connection: keep-alive\r\n"
                   "X-Accel-Buffering: no\r\n"
                   "\r\n"
                   "event: hello\ndata: {}\n\n"
                   ": ping\n\n"
                   "event: poll.closed\nid: 12\ndata: [1]\n\n");
}

static void test_head_and_heartbeat(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    sse_head(&b);
    assert_null(strstr(b.data, "Content-Length"));
    assert_buf(&b, "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/event-stream\r\n"
                   "Cache-Control: no-store\r\n"
                   "Connection: keep-alive\r\n"
                   "X-Accel-Buffering: no\r\n"
                   "\r\n");
    sse_heartbeat(&b);
    assert_buf(&b, ": ping\n\n");
}

static void test_parse_seq_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t want;
    } cases[] = {
        {"0", 0},
        {"1", 1},
        {"42", 42},
        {"007", 7},
        {"000000000000000000000000000000000000000042", 42}, /* zeros do not overflow */
        {"4294967296", INT64_C(4294967296)},
        {"9007199254740991", SSE_SEQ_MAX - 1},
        {"9007199254740992", SSE_SEQ_MAX},
        {"09007199254740992", SSE_SEQ_MAX},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int64_t v = -1;
        assert_true(sse_parse_seq(cases[i].s, strlen(cases[i].s), &v));
        assert_int_equal(v, cases[i].want);
    }
    /* only len bytes are read: a since= value inside a query string */
    static const char query[] = "since=1234&token=abc";
    int64_t v = -1;
    assert_true(sse_parse_seq(query + 6, 4, &v));
    assert_int_equal(v, 1234);
    assert_true(sse_parse_seq(query + 6, 1, &v));
    assert_int_equal(v, 1);
}

static void test_parse_seq_invalid(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1a",
        "a1",
        "0x10",
        "1.5",
        "1e3",
        "9007199254740993",            /* 2^53 + 1 */
        "9999999999999999",
        "9223372036854775807",         /* INT64_MAX */
        "9223372036854775808",         /* past INT64_MAX */
        "18446744073709551616",        /* past UINT64_MAX */
        "99999999999999999999999999999999999999",
        "１",                          /* a full-width digit */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int64_t v = -7;
        assert_false(sse_parse_seq(cases[i], strlen(cases[i]), &v));
        assert_int_equal(v, -7); /* untouched on failure */
    }
    int64_t v = -7;
    assert_false(sse_parse_seq(NULL, 0, &v));
    assert_false(sse_parse_seq("12\0" "3", 4, &v)); /* an embedded NUL is not a digit */
    assert_int_equal(v, -7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_sequenced),
        cmocka_unit_test(test_event_unsequenced),
        cmocka_unit_test(test_stream_appends),
        cmocka_unit_test(test_head_and_heartbeat),
        cmocka_unit_test(test_parse_seq_valid),
        cmocka_unit_test(test_parse_seq_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
