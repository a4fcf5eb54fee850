/*
 * test_hvotes.c - the answer parser of the io_uring voters: an answer is
 * complete only with its whole head and Content-Length body, whatever the
 * split of the reads; bytes after it are not part of it; what tallyd never
 * sends (another protocol, chunked bodies, a bad length) is refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "stress/hvotes.h"

static const char vote_ok[] = "HTTP/1.1 201 Created\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: 28\r\n"
                              "Connection: keep-alive\r\n"
                              "\r\n"
                              "{\"vote\":{\"poll_id\":1,\"a\":1}}";

static enum hvotes_parse parse(const char *s, size_t len, struct hvotes_answer *a)
{
    memset(a, 0x5a, sizeof(*a));
    return hvotes_parse_answer(s, len, a);
}

/* Every prefix asks for more; the whole answer is OK with its exact length. */
static void test_split_reads(void **state)
{
    (void)state;
    size_t n = strlen(vote_ok);
    struct hvotes_answer a;
    for (size_t k = 0; k < n; k++)
        assert_int_equal(parse(vote_ok, k, &a), HVOTES_PARSE_AGAIN);
    assert_int_equal(parse(vote_ok, n, &a), HVOTES_PARSE_OK);
    assert_int_equal(a.status, 201);
    assert_int_equal(a.len, n);
    assert_false(a.close);
}

/* Bytes after the body belong to no answer of this request. */
static void test_trailing_bytes(void **state)
{
    (void)state;
    char buf[512];
    size_t n = strlen(vote_ok);
    memcpy(buf, vote_ok, n);
    memcpy(buf + n, "HTTP/1.1 2", 10);
    struct hvotes_answer a;
    assert_int_equal(parse(buf, n + 10, &a), HVOTES_PARSE_OK);
    assert_int_equal(a.len, n);
}

/* Other statuses, no body, header names in any case, Connection: close. */
static void test_status_and_headers(void **state)
{
    (void)state;
    struct hvotes_answer a;
    const char *s = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n"
                    "CONNECTION:  Close \r\nRetry-After: 1\r\n\r\n{}";
    assert_int_equal(parse(s, strlen(s), &a), HVOTES_PARSE_OK);
    assert_int_equal(a.status, 429);
    assert_int_equal(a.len, strlen(s));
    assert_true(a.close);
    s = "HTTP/1.1 204\r\n\r\n";
    assert_int_equal(parse(s, strlen(s), &a), HVOTES_PARSE_OK);
    assert_int_equal(a.status, 204);
    assert_int_equal(a.len, strlen(s));
    s = "HTTP/1.0 503 Busy\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse(s, strlen(s), &a), HVOTES_PARSE_OK);
    assert_int_equal(a.status, 503);
}

static void test_refused(void **state)
{
    (void)state;
    struct hvotes_answer a;
    static const char *const bad[] = {
        "HTTX",                                                   /* early: wrong protocol */
        "SSH-2.0-x\r\n\r\n",                                      /* not HTTP */
        "HTTP/1.1 20 OK\r\n\r\n",                                 /* two-digit status */
        "HTTP/1.1 2O1 Created\r\n\r\n",                           /* not a number */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",  /* not Content-Length */
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",          /* bad length */
        "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",         /* bad length */
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", /* too long */
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",               /* bad header line */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], strlen(bad[i]), &a), HVOTES_PARSE_E_BAD);
    /* A prefix of a valid status line is not refused yet. */
    assert_int_equal(parse("HTT", 3, &a), HVOTES_PARSE_AGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_reads),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_status_and_headers),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
