/*
 * test_router.c - every route of the contract, join codes, poll ids, 405s
 * and the paths that must not match.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "net/router.h"
#include "core/base.h"

static enum route_kind route(enum http_method m, const char *path, struct route_match *rm)
{
    memset(rm, 0x5a, sizeof(*rm)); /* the router must set every field */
    enum route_kind k = router_match(m, path, strlen(path), rm);
    assert_int_equal(k, rm->kind);
    return k;
}

#define LONG64 "0123456789012345678901234567890123456789012345678901234567890123"

static void expect(enum http_method m, const char *path, enum route_kind kind, enum api_op op,
                   const char *code, int64_t poll_id)
{
    struct route_match rm;
    if (route(m, path, &rm) != kind)
        fail_msg("%s: kind %d, want %d", path, (int)rm.kind, (int)kind);
    assert_int_equal(rm.op, op);
    assert_string_equal(rm.code, code);
    assert_int_equal(rm.poll_id, poll_id);
    assert_null(rm.allow);
}

static void expect_not_found(enum http_method m, const char *path)
{
    struct route_match rm;
    if (route(m, path, &rm) != ROUTE_NOT_FOUND)
        fail_msg("%s: kind %d, want not found", path, (int)rm.kind);
    assert_int_equal(rm.op, API_OP_COUNT);
    assert_string_equal(rm.code, "");
    assert_int_equal(rm.poll_id, 0);
    assert_null(rm.allow);
}

static void expect_405(enum http_method m, const char *path, const char *allow)
{
    struct route_match rm;
    if (route(m, path, &rm) != ROUTE_METHOD_NOT_ALLOWED)
        fail_msg("%s: kind %d, want 405", path, (int)rm.kind);
    assert_string_equal(rm.allow, allow);
    assert_string_equal(rm.code, "");
    assert_int_equal(rm.poll_id, 0);
}

static void test_contract_routes(void **state)
{
    (void)state;
    const int64_t none = 0;
    expect(HTTP_POST, "/api/v1/sessions", ROUTE_API, API_SESSION_CREATE, "", none);
    expect(HTTP_GET, "/api/v1/sessions/K7QX2M", ROUTE_API, API_SESSION_GET, "K7QX2M", none);
    expect(HTTP_POST, "/api/v1/sessions/K7QX2M/participants", ROUTE_API, API_JOIN, "K7QX2M",
           none);
    expect(HTTP_POST, "/api/v1/sessions/K7QX2M/polls", ROUTE_API, API_POLL_CREATE, "K7QX2M",
           none);
    expect(HTTP_POST, "/api/v1/polls/12/open", ROUTE_API, API_POLL_OPEN, "", 12);
    expect(HTTP_POST, "/api/v1/polls/12/close", ROUTE_API, API_POLL_CLOSE, "", 12);
    expect(HTTP_POST, "/api/v1/polls/7/votes", ROUTE_API, API_VOTE, "", 7);
    expect(HTTP_GET, "/api/v1/polls/9007199254740992/results", ROUTE_API, API_RESULTS, "",
           9007199254740992LL);
    expect(HTTP_POST, "/api/v1/sessions/K7QX2M/close", ROUTE_API, API_SESSION_CLOSE, "K7QX2M",
           none);
    expect(HTTP_GET, "/api/v1/sessions/K7QX2M/export.csv", ROUTE_API, API_EXPORT_CSV, "K7QX2M",
           none);
    expect(HTTP_GET, "/api/v1/sessions/K7QX2M/qr.svg", ROUTE_API, API_QR_SVG, "K7QX2M", none);
    expect(HTTP_GET, "/api/v1/sessions/K7QX2M/ws", ROUTE_WS, API_OP_COUNT, "K7QX2M", none);
    expect(HTTP_GET, "/api/v1/sessions/K7QX2M/events", ROUTE_SSE, API_OP_COUNT, "K7QX2M", none);
    expect(HTTP_GET, "/healthz", ROUTE_HEALTHZ, API_OP_COUNT, "", none);
    expect(HTTP_GET, "/readyz", ROUTE_READYZ, API_OP_COUNT, "", none);
    expect(HTTP_GET, "/metrics", ROUTE_METRICS, API_OP_COUNT, "", none);
}

static void test_head_like_get(void **state)
{
    (void)state;
    expect(HTTP_HEAD, "/healthz", ROUTE_HEALTHZ, API_OP_COUNT, "", 0);
    expect(HTTP_HEAD, "/api/v1/sessions/K7QX2M", ROUTE_API, API_SESSION_GET, "K7QX2M", 0);
    expect(HTTP_HEAD, "/api/v1/polls/3/results", ROUTE_API, API_RESULTS, "", 3);
    expect(HTTP_HEAD, "/", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect_405(HTTP_HEAD, "/api/v1/sessions", "POST");
}

static void test_static_routes(void **state)
{
    (void)state;
    expect(HTTP_GET, "/", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect(HTTP_GET, "/j/k7qx2m", ROUTE_STATIC, API_OP_COUNT, "K7QX2M", 0);
    expect(HTTP_GET, "/present/K7QX2M", ROUTE_STATIC, API_OP_COUNT, "K7QX2M", 0);
    expect(HTTP_GET, "/screen/K7QX2M", ROUTE_STATIC, API_OP_COUNT, "K7QX2M", 0);
    expect(HTTP_GET, "/assets/app.js", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect(HTTP_GET, "/assets/img/logo-2.svg", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect(HTTP_GET, "/assets/a_b.c.css", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect_not_found(HTTP_GET, "/assets/");
    expect_not_found(HTTP_GET, "/assets");
    expect_not_found(HTTP_GET, "/assets/../etc/passwd");
    expect_not_found(HTTP_GET, "/assets/img/../../x");
    expect_not_found(HTTP_GET, "/assets/.hidden");
    expect_not_found(HTTP_GET, "/assets/img//x.js");
    expect_not_found(HTTP_GET, "/assets/img/");
    expect_not_found(HTTP_GET, "/assets/a%2e%2e");
    expect_not_found(HTTP_GET, "/assets/a b");
    /* A mistyped code still gets the page, which explains it; no code is filled. */
    expect(HTTP_GET, "/j/K7QX2", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect(HTTP_GET, "/present/K7QX20", ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect(HTTP_GET, "/j/" LONG64, ROUTE_STATIC, API_OP_COUNT, "", 0);
    expect_not_found(HTTP_GET, "/j/" LONG64 "x");
    expect_not_found(HTTP_GET, "/j/");
    expect_not_found(HTTP_GET, "/j/K7QX2M/x");
    expect_405(HTTP_POST, "/", "GET, HEAD");
    expect_405(HTTP_POST, "/assets/app.js", "GET, HEAD");
}

static void test_codes(void **state)
{
    (void)state;
    /* Every letter and digit of the alphabet, any case, comes back upper-cased. */
    expect(HTTP_GET, "/api/v1/sessions/abcdef", ROUTE_API, API_SESSION_GET, "ABCDEF", 0);
    expect(HTTP_GET, "/api/v1/sessions/GHJKMN", ROUTE_API, API_SESSION_GET, "GHJKMN", 0);
    expect(HTTP_GET, "/api/v1/sessions/pqrstu", ROUTE_API, API_SESSION_GET, "PQRSTU", 0);
    expect(HTTP_GET, "/api/v1/sessions/VwXyZ2", ROUTE_API, API_SESSION_GET, "VWXYZ2", 0);
    expect(HTTP_GET, "/api/v1/sessions/345678", ROUTE_API, API_SESSION_GET, "345678", 0);
    expect(HTTP_GET, "/api/v1/sessions/99999A/ws", ROUTE_WS, API_OP_COUNT, "99999A", 0);

    static const char *const bad[] = {
        "K7QX2",   "K7QX2MM", "",        "K7QX20",  "K7QXOM",  "K7QX1M",  "K7QXIM", "K7QXLM",
        "k7qxom",  "k7qxim",  "k7qxlm",  "K7QX2-",  "K7QX2%4D", "K7 X2M", "K7QX2M.",
    };
    char path[64];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(path, sizeof(path), "/api/v1/sessions/%s", bad[i]);
        expect_not_found(HTTP_GET, path);
        snprintf(path, sizeof(path), "/api/v1/sessions/%s/polls", bad[i]);
        expect_not_found(HTTP_POST, path);
        snprintf(path, sizeof(path), "/api/v1/sessions/%s/ws", bad[i]);
        expect_not_found(HTTP_GET, path);
    }
    for (char c = 0x21; c < 0x7f; c++) {
        char code[7] = "K7QX2M";
        code[5] = c;
        snprintf(path, sizeof(path), "/api/v1/sessions/%s", code);
        struct route_match rm;
        bool want = (c >= '2' && c <= '9') ||
                    (((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) && strchr("OoIiLl", c) == NULL);
        assert_int_equal(router_code_char(c), want);
        assert_int_equal(route(HTTP_GET, path, &rm) == ROUTE_API, want);
    }
}

static void test_poll_ids(void **state)
{
    (void)state;
    expect(HTTP_POST, "/api/v1/polls/1/open", ROUTE_API, API_POLL_OPEN, "", 1);
    expect(HTTP_POST, "/api/v1/polls/10/open", ROUTE_API, API_POLL_OPEN, "", 10);
    expect(HTTP_POST, "/api/v1/polls/9007199254740991/votes", ROUTE_API, API_VOTE, "",
           9007199254740991LL);
    static const char *const bad[] = {
        "0",  "00", "01", "-1", "+1", "1a", "a",  "",  "1.0", "9007199254740993",
        "99999999999999999999", "1e3", " 1", "0x10",
    };
    char path[96];
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(path, sizeof(path), "/api/v1/polls/%s/votes", bad[i]);
        expect_not_found(HTTP_POST, path);
        snprintf(path, sizeof(path), "/api/v1/polls/%s/results", bad[i]);
        expect_not_found(HTTP_GET, path);
    }
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    expect_405(HTTP_GET, "/api/v1/sessions", "POST");
    expect_405(HTTP_OTHER, "/api/v1/sessions", "POST");
    expect_405(HTTP_POST, "/api/v1/sessions/K7QX2M", "GET, HEAD");
    expect_405(HTTP_GET, "/api/v1/sessions/K7QX2M/participants", "POST");
    expect_405(HTTP_GET, "/api/v1/sessions/K7QX2M/polls", "POST");
    expect_405(HTTP_GET, "/api/v1/sessions/K7QX2M/close", "POST");
    expect_405(HTTP_POST, "/api/v1/sessions/K7QX2M/export.csv", "GET, HEAD");
    expect_405(HTTP_POST, "/api/v1/sessions/K7QX2M/qr.svg", "GET, HEAD");
    expect_405(HTTP_POST, "/api/v1/sessions/K7QX2M/ws", "GET, HEAD");
    expect_405(HTTP_POST, "/api/v1/sessions/K7QX2M/events", "GET, HEAD");
    expect_405(HTTP_GET, "/api/v1/polls/5/open", "POST");
    expect_405(HTTP_HEAD, "/api/v1/polls/5/close", "POST");
    expect_405(HTTP_GET, "/api/v1/polls/5/votes", "POST");
    expect_405(HTTP_POST, "/api/v1/polls/5/results", "GET, HEAD");
    expect_405(HTTP_POST, "/healthz", "GET, HEAD");
    expect_405(HTTP_OTHER, "/readyz", "GET, HEAD");
    expect_405(HTTP_POST, "/metrics", "GET, HEAD");
    /* A bad code or id is not a known path, whatever the method. */
    expect_not_found(HTTP_POST, "/api/v1/sessions/K7QX0M");
    expect_not_found(HTTP_GET, "/api/v1/polls/0/open");
}

static void test_not_found(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "",
        "/api/v1/sessions/",
        "/api/v1/sessions/K7QX2M/",
        "/api/v1/sessions/K7QX2M/polls/",
        "/api/v1/polls/12/votes/",
        "/healthz/",
        "/api/v1/session",
        "/api/v1/sessionsX",
        "/API/v1/sessions",
        "/api/v2/sessions",
        "/api/v1/sessions/K7QX2M/unknown",
        "/api/v1/sessions/K7QX2M/ws/x",
        "/api/v1/polls/12",
        "/api/v1/polls",
        "/api/v1/polls/12/vote",
        "//healthz",
        "/healthzz",
        "*",
        "http://example.org/healthz",
        "/j/K7QX2M/",
        "/present",
    };
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        expect_not_found(HTTP_GET, paths[i]);
        expect_not_found(HTTP_POST, paths[i]);
    }
    /* The length bounds the path, not a NUL. */
    struct route_match rm;
    assert_int_equal(router_match(HTTP_GET, "/healthzXYZ", 8, &rm), ROUTE_HEALTHZ);
    assert_int_equal(router_match(HTTP_GET, "/healthz", 7, &rm), ROUTE_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contract_routes), cmocka_unit_test(test_head_like_get),
        cmocka_unit_test(test_static_routes),   cmocka_unit_test(test_codes),
        cmocka_unit_test(test_poll_ids),        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_not_found),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
