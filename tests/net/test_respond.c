/*
 * test_respond.c - the exact bytes of responses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "net/respond.h"
#include "core/base.h"
#include "core/buf.h"

/* Checks the shape of a response's Date line (RFC 9110 IMF-fixdate), then
 * drops it so the rest can be compared byte for byte. Bodies alone have none. */
static void strip_date(struct buf *b)
{
    char *d = strstr(b->data, "\r\nDate: ");
    if (strncmp(b->data, "HTTP/1.1 ", 9) != 0 && strncmp(b->data, "XHTTP/1.1 ", 10) != 0)
        return;
    assert_non_null(d);
    d += 2;
    char *end = strstr(d, "\r\n");
    assert_non_null(end);
    assert_int_equal(end - d, (long)strlen("Date: Sun, 22 Nov 2026 07:31:23 GMT"));
    assert_memory_equal(end - 4, " GMT", 4);
    end += 2;
    memmove(d, end, (size_t)(b->data + b->len - end) + 1);
    b->len -= (size_t)(end - d);
}

static void assert_buf(struct buf *b, const char *want)
{
    strip_date(b);
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    buf_free(b);
}

static void test_write_json(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    respond_write(&b, 200, NULL, "{\"a\":1}", 7, true, 0, false);
    assert_buf(&b, "HTTP/1.1 200 OK\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: 7\r\n"
                   "Connection: keep-alive\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n"
                   "{\"a\":1}");
}

static void test_write_close_retry_type(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    respond_write(&b, 503, "text/plain", "busy", 4, false, 5, false);
    assert_buf(&b, "HTTP/1.1 503 Service Unavailable\r\n"
                   "Content-Type: text/plain\r\n"
                   "Content-Length: 4\r\n"
                   "Connection: close\r\n"
                   "Retry-After: 5\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n"
                   "busy");
}

static void test_head_only(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    respond_write(&b, 200, "text/csv", "a,b\n", 4, true, 0, true);
    assert_buf(&b, "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/csv\r\n"
                   "Content-Length: 4\r\n"
                   "Connection: keep-alive\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n");
}

static void test_no_body_statuses(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    respond_write(&b, 204, NULL, NULL, 0, true, 0, false);
    assert_buf(&b, "HTTP/1.1 204 No Content\r\n"
                   "Content-Type: application/json\r\n"
                   "Connection: keep-alive\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n");
    respond_write(&b, 200, NULL, "", 0, true, 0, false);
    assert_buf(&b, "HTTP/1.1 200 OK\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: 0\r\n"
                   "Connection: keep-alive\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n");
}

static void test_write_ex(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    respond_write_ex(&b, 200, "text/html; charset=utf-8",
                     "cache-control: public, max-age=60\r\nETag: \"x\"\r\n", "<p>", 3, true, 0,
                     false);
    assert_buf(&b, "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/html; charset=utf-8\r\n"
                   "Content-Length: 3\r\n"
                   "Connection: keep-alive\r\n"
                   "cache-control: public, max-age=60\r\n"
                   "ETag: \"x\"\r\n"
                   "\r\n"
                   "<p>");
    respond_write_ex(&b, 405, NULL, "Allow: POST\r\n", "{}", 2, false, 0, false);
    assert_buf(&b, "HTTP/1.1 405 Method Not Allowed\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: 2\r\n"
                   "Connection: close\r\n"
                   "Cache-Control: no-store\r\n"
                   "Allow: POST\r\n"
                   "\r\n"
                   "{}");
    /* Appends: what is already in the buffer stays. */
    buf_append_str(&b, "X");
    respond_write_ex(&b, 304, "text/css", "", NULL, 0, true, 0, false);
    assert_buf(&b, "XHTTP/1.1 304 Not Modified\r\n"
                   "Content-Type: text/css\r\n"
                   "Connection: keep-alive\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n");
}

static void test_error(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    respond_error(&b, 429, "rate_limited", "slow \"down\"\n\\", true, 12);
    const char *body = "{\"error\":{\"code\":\"rate_limited\",\"message\":\"slow \\\"down\\\"\\n\\\\\"}}";
    char want[512];
    snprintf(want, sizeof(want),
             "HTTP/1.1 429 Too Many Requests\r\n"
             "Content-Type: application/json\r\n"
             "Content-Length: %zu\r\n"
             "Connection: keep-alive\r\n"
             "Retry-After: 12\r\n"
             "Cache-Control: no-store\r\n"
             "\r\n%s",
             strlen(body), body);
    assert_buf(&b, want);

    respond_error(&b, 404, "not_found", "no such path", false, 0);
    assert_buf(&b, "HTTP/1.1 404 Not Found\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: 55\r\n"
                   "Connection: close\r\n"
                   "Cache-Control: no-store\r\n"
                   "\r\n"
                   "{\"error\":{\"code\":\"not_found\",\"message\":\"no such path\"}}");

    respond_error_body(&b, "c", "m\x01");
    assert_buf(&b, "{\"error\":{\"code\":\"c\",\"message\":\"m\\u0001\"}}");
}

static void test_reasons(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        {200, "OK"},
        {201, "Created"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Content Too Large"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
        {101, "Switching Protocols"},
        {418, "Unknown"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        assert_string_equal(respond_reason(cases[i].status), cases[i].reason);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_json),      cmocka_unit_test(test_write_close_retry_type),
        cmocka_unit_test(test_head_only),       cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_write_ex),        cmocka_unit_test(test_error),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
