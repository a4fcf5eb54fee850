/*
 * test_apireq.c - from request to struct api_req: each op's valid bodies,
 * every invalid field with the field named in the message, limits at and
 * one over, tokens from header and query, the Idempotency-Key header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "net/apireq.h"
#include "core/base.h"
#include "core/buf.h"

/* ---- helpers ------------------------------------------------------------ */

static struct http_req req_of(enum http_method m, const char *body)
{
    struct http_req hr = {.method = m, .path = "/", .path_len = 1, .query = "", .body = "",
                          .keep_alive = true};
    if (body != NULL) {
        hr.body = body;
        hr.body_len = strlen(body);
    }
    return hr;
}

static struct route_match route_of(enum api_op op)
{
    struct route_match rm = {.kind = ROUTE_API, .op = op};
    return rm;
}

static struct api_req *build_ok(const struct http_req *hr, enum api_op op)
{
    struct route_match rm = route_of(op);
    struct api_req *req = (struct api_req *)(uintptr_t)1;
    struct buf err = BUF_INIT;
    int status = apireq_build(hr, &rm, &req, &err);
    if (status != 0)
        fail_msg("op %d: status %d: %s", (int)op, status, err.data ? err.data : "");
    assert_int_equal(err.len, 0);
    assert_non_null(req);
    assert_int_equal(req->op, op);
    buf_free(&err);
    return req;
}

/* Expects 400 with an invalid_request body whose message contains `want`. */
static void build_bad(const struct http_req *hr, enum api_op op, const char *want)
{
    struct route_match rm = route_of(op);
    struct api_req *req = (struct api_req *)(uintptr_t)1;
    struct buf err = BUF_INIT;
    assert_int_equal(apireq_build(hr, &rm, &req, &err), 400);
    assert_null(req);
    json_error_t jerr;
    json_t *j = json_loadb(err.data, err.len, 0, &jerr);
    assert_non_null(j);
    const char *code = NULL;
    const char *msg = NULL;
    assert_int_equal(json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &code, "message", &msg), 0);
    assert_string_equal(code, "invalid_request");
    if (strstr(msg, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\" (body %s)", msg, want, hr->body);
    json_decref(j);
    buf_free(&err);
}

static void bad_body(enum api_op op, const char *body, const char *want)
{
    struct http_req hr = req_of(HTTP_POST, body);
    hr.idempotency_key = "key";
    build_bad(&hr, op, want);
}

static struct api_req *ok_body(enum api_op op, const char *body)
{
    struct http_req hr = req_of(HTTP_POST, body);
    hr.idempotency_key = "key";
    return build_ok(&hr, op);
}

/* A JSON string literal of n copies of unit. */
static char *json_repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = xmalloc(n * u + 3);
    s[0] = '"';
    for (size_t i = 0; i < n; i++)
        memcpy(s + 1 + i * u, unit, u);
    strcpy(s + 1 + n * u, "\"");
    return s;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    return s;
}

/* ---- common parts ------------------------------------------------------- */

static void test_route_fields_and_error_body(void **state)
{
    (void)state;
    struct http_req hr = req_of(HTTP_GET, NULL);
    struct route_match rm = {.kind = ROUTE_API, .op = API_RESULTS, .poll_id = 42};
    struct api_req *req = NULL;
    struct buf err = BUF_INIT;
    assert_int_equal(apireq_build(&hr, &rm, &req, &err), 0);
    assert_int_equal(req->poll_id, 42);
    assert_string_equal(req->code, "");
    assert_string_equal(req->token, "");
    assert_string_equal(req->host, "");
    api_req_free(req);

    rm = (struct route_match){.kind = ROUTE_API, .op = API_SESSION_GET, .code = "K7QX2M"};
    assert_int_equal(apireq_build(&hr, &rm, &req, &err), 0);
    assert_string_equal(req->code, "K7QX2M");
    assert_int_equal(req->poll_id, 0);
    api_req_free(req);

    /* The exact error body. */
    hr = req_of(HTTP_POST, "{}");
    rm = route_of(API_SESSION_CREATE);
    assert_int_equal(apireq_build(&hr, &rm, &req, &err), 400);
    assert_string_equal(err.data, "{\"error\":{\"code\":\"invalid_request\",\"message\":"
                                  "\"field 'title' must be a string of 1 to 200 bytes\"}}");
    buf_free(&err);
}

static void test_host(void **state)
{
    (void)state;
    struct http_req hr = req_of(HTTP_GET, NULL);
    hr.host = "Polls.Example.org:8080";
    struct api_req *req = build_ok(&hr, API_QR_SVG);
    assert_string_equal(req->host, "Polls.Example.org:8080");
    api_req_free(req);

    hr.host = "[::1]:80";
    req = build_ok(&hr, API_QR_SVG);
    assert_string_equal(req->host, "[::1]:80");
    api_req_free(req);

    char long_host[API_HOST_MAX + 20];
    memset(long_host, 'h', sizeof(long_host) - 1);
    long_host[sizeof(long_host) - 1] = '\0';
    hr.host = long_host;
    req = build_ok(&hr, API_QR_SVG);
    assert_int_equal(strlen(req->host), API_HOST_MAX);
    api_req_free(req);

    static const char *const bad[] = {"a<b", "x\"y", "a b", "a/b", "evil.org/\"><script>"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        hr.host = bad[i];
        req = build_ok(&hr, API_QR_SVG);
        assert_string_equal(req->host, "");
        api_req_free(req);
    }
}

/* ---- tokens ------------------------------------------------------------- */

static void expect_token(const char *auth, const char *query, const char *want)
{
    struct http_req hr = req_of(HTTP_GET, NULL);
    hr.authorization = auth;
    hr.query = query;
    hr.query_len = strlen(query);
    char token[API_TOKEN_MAX + 1];
    bool found = apireq_token(&hr, token);
    if (strcmp(token, want) != 0)
        fail_msg("auth [%s] query [%s]: token [%s], want [%s]", auth ? auth : "(null)", query,
                 token, want);
    assert_int_equal(found, want[0] != '\0');
    struct api_req *req = build_ok(&hr, API_SESSION_GET);
    assert_string_equal(req->token, want);
    api_req_free(req);
}

static void test_tokens(void **state)
{
    (void)state;
    char t64[API_TOKEN_MAX + 1];
    memset(t64, 'T', API_TOKEN_MAX);
    t64[API_TOKEN_MAX] = '\0';
    char *h64 = fmt("Bearer %s", t64);
    char *h65 = fmt("Bearer %sX", t64);
    char *q64 = fmt("token=%s", t64);
    char *q65 = fmt("a=1&token=%sX", t64);

    expect_token("Bearer abc-_.~+/=", "", "abc-_.~+/=");
    expect_token("bearer   abc", "", "abc");
    expect_token("BEARER\tabc", "", "abc");
    expect_token(h64, "", t64);
    expect_token(h65, "", "");
    expect_token("Bearer", "", "");
    expect_token("Bearer ", "", "");
    expect_token("Bearerabc", "", "");
    expect_token("Bearer a b", "", "");
    expect_token("Bearer a\x01", "", "");
    expect_token("Basic dXNlcjpwYXNz", "token=fromquery", ""); /* the header wins */
    expect_token("Bearer hdr", "token=fromquery", "hdr");
    expect_token(NULL, "token=abc", "abc");
    expect_token(NULL, "since=4&token=ab%2Fc%3d&x", "ab/c=");
    expect_token(NULL, "xtoken=no&token=yes&token=second", "yes");
    expect_token(NULL, "tokens=no", "");
    expect_token(NULL, "token=", "");
    expect_token(NULL, "token", "");
    expect_token(NULL, q64, t64);
    expect_token(NULL, q65, "");
    expect_token(NULL, "token=%G1", "");
    expect_token(NULL, "token=ab%2", "");
    expect_token(NULL, "token=ab%00cd", "");
    expect_token(NULL, "token=a%20b", "");
    expect_token(NULL, "token=%C3%A9", "");
    expect_token(NULL, "", "");
    free(h64);
    free(h65);
    free(q64);
    free(q65);
}

static void test_query_param(void **state)
{
    (void)state;
    char out[8];
    size_t n = 99;
    const char *q = "since=12&x=%41%42&empty=&long=123456789";
    assert_int_equal(apireq_query_param(q, strlen(q), "since", out, sizeof(out), &n), 0);
    assert_string_equal(out, "12");
    assert_int_equal(n, 2);
    assert_int_equal(apireq_query_param(q, strlen(q), "x", out, sizeof(out), &n), 0);
    assert_string_equal(out, "AB");
    assert_int_equal(apireq_query_param(q, strlen(q), "empty", out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(apireq_query_param(q, strlen(q), "long", out, sizeof(out), &n), -E2BIG);
    assert_int_equal(apireq_query_param(q, strlen(q), "nope", out, sizeof(out), &n), -ENOENT);
    assert_int_equal(apireq_query_param(q, 5, "since", out, sizeof(out), &n), -ENOENT);
    assert_int_equal(apireq_query_param("a=%zz", 5, "a", out, sizeof(out), &n), -EINVAL);
    /* Exactly out_size - 1 bytes fit. */
    assert_int_equal(apireq_query_param("a=1234567", 9, "a", out, sizeof(out), &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(apireq_query_param("a=12345678", 10, "a", out, sizeof(out), &n), -E2BIG);
}

/* ---- bodies ------------------------------------------------------------- */

static void test_body_syntax(void **state)
{
    (void)state;
    static const enum api_op ops[] = {API_SESSION_CREATE, API_POLL_CREATE, API_VOTE, API_JOIN};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        bad_body(ops[i], "{", "body is not valid JSON");
        bad_body(ops[i], "{\"title\":\"a\",\"title\":\"b\"}", "body is not valid JSON");
        bad_body(ops[i], "{} x", "body is not valid JSON");
        bad_body(ops[i], "{\"name\":\"\xff\"}", "body is not valid JSON");
        bad_body(ops[i], "{\"name\":\"a\\u0000b\"}", "body is not valid JSON");
        bad_body(ops[i], "   ", "body is not valid JSON");
        bad_body(ops[i], "[]", "body must be a JSON object");
        bad_body(ops[i], "[{\"title\":\"x\"}]", "body must be a JSON object");
    }
    bad_body(API_SESSION_CREATE, "", "body is required");
    bad_body(API_POLL_CREATE, "", "body is required");
    bad_body(API_VOTE, "", "body is required");
}

static void test_session_create(void **state)
{
    (void)state;
    struct api_req *req = ok_body(API_SESSION_CREATE, "{\"title\":\"Town hall \\u00e9\",\"x\":1}");
    assert_string_equal(req->text, "Town hall \xc3\xa9");
    api_req_free(req);

    char *t200 = json_repeat("\xc3\xa9", API_TITLE_MAX / 2); /* 200 bytes, 100 characters */
    char *b = fmt("{\"title\":%s}", t200);
    req = ok_body(API_SESSION_CREATE, b);
    assert_int_equal(strlen(req->text), API_TITLE_MAX);
    api_req_free(req);
    free(b);
    free(t200);

    char *t201 = json_repeat("a", API_TITLE_MAX + 1);
    b = fmt("{\"title\":%s}", t201);
    bad_body(API_SESSION_CREATE, b, "field 'title'");
    free(b);
    free(t201);

    bad_body(API_SESSION_CREATE, "{}", "field 'title' must be a string of 1 to 200 bytes");
    bad_body(API_SESSION_CREATE, "{\"title\":\"\"}", "field 'title'");
    bad_body(API_SESSION_CREATE, "{\"title\":null}", "field 'title'");
    bad_body(API_SESSION_CREATE, "{\"title\":5}", "field 'title'");
    bad_body(API_SESSION_CREATE, "{\"title\":[\"a\"]}", "field 'title'");
}

static void test_join(void **state)
{
    (void)state;
    struct api_req *req = ok_body(API_JOIN, NULL);
    assert_null(req->text);
    api_req_free(req);
    req = ok_body(API_JOIN, "{}");
    assert_null(req->text);
    api_req_free(req);
    req = ok_body(API_JOIN, "{\"name\":null}");
    assert_null(req->text);
    api_req_free(req);
    req = ok_body(API_JOIN, "{\"name\":\"\"}");
    assert_null(req->text);
    api_req_free(req);
    req = ok_body(API_JOIN, "{\"name\":\"Ann\"}");
    assert_string_equal(req->text, "Ann");
    api_req_free(req);

    char *n64 = json_repeat("n", API_NAME_MAX);
    char *b = fmt("{\"name\":%s}", n64);
    req = ok_body(API_JOIN, b);
    assert_int_equal(strlen(req->text), API_NAME_MAX);
    api_req_free(req);
    free(b);
    free(n64);

    char *n65 = json_repeat("n", API_NAME_MAX + 1);
    b = fmt("{\"name\":%s}", n65);
    bad_body(API_JOIN, b, "field 'name' must be a string of at most 64 bytes");
    free(b);
    free(n65);
    bad_body(API_JOIN, "{\"name\":7}", "field 'name'");
    bad_body(API_JOIN, "{\"name\":{}}", "field 'name'");
}

static void test_poll_create_valid(void **state)
{
    (void)state;
    struct api_req *req =
        ok_body(API_POLL_CREATE, "{\"question\":\"Q?\",\"kind\":\"single\",\"options\":[\"a\",\"b\"]}");
    assert_string_equal(req->poll.question, "Q?");
    assert_int_equal(req->poll.kind, POLL_SINGLE);
    assert_int_equal(req->poll.n_options, 2);
    assert_string_equal(req->poll.options[0], "a");
    assert_string_equal(req->poll.options[1], "b");
    assert_int_equal(req->poll.max_choices, 1);
    api_req_free(req);

    req = ok_body(API_POLL_CREATE, "{\"question\":\"Q\",\"kind\":\"single\",\"options\":[\"a\",\"b\"],"
                                   "\"max_choices\":1}");
    assert_int_equal(req->poll.max_choices, 1);
    api_req_free(req);

    req = ok_body(API_POLL_CREATE, "{\"question\":\"Rate\",\"kind\":\"rating\","
                                   "\"options\":[\"1\",\"2\",\"3\",\"4\",\"5\"],\"max_choices\":null}");
    assert_int_equal(req->poll.kind, POLL_RATING);
    assert_int_equal(req->poll.n_options, 5);
    assert_int_equal(req->poll.max_choices, 1);
    api_req_free(req);

    req = ok_body(API_POLL_CREATE,
                  "{\"question\":\"Q\",\"kind\":\"multi\",\"options\":[\"a\",\"b\",\"c\"]}");
    assert_int_equal(req->poll.kind, POLL_MULTI);
    assert_int_equal(req->poll.max_choices, 3); /* defaults to every option */
    api_req_free(req);

    req = ok_body(API_POLL_CREATE, "{\"question\":\"Q\",\"kind\":\"multi\","
                                   "\"options\":[\"a\",\"b\",\"c\"],\"max_choices\":2}");
    assert_int_equal(req->poll.max_choices, 2);
    api_req_free(req);

    /* Limits exactly at the maximum: 500-byte question, 32 options of 200 bytes. */
    char *q = json_repeat("q", API_QUESTION_MAX);
    char *opt = json_repeat("o", API_OPTION_MAX);
    struct buf b = BUF_INIT;
    buf_printf(&b, "{\"question\":%s,\"kind\":\"multi\",\"options\":[", q);
    for (int i = 0; i < API_OPTIONS_MAX; i++)
        buf_printf(&b, "%s%s", i ? "," : "", opt);
    buf_printf(&b, "],\"max_choices\":%d}", API_OPTIONS_MAX);
    req = ok_body(API_POLL_CREATE, b.data);
    assert_int_equal(strlen(req->poll.question), API_QUESTION_MAX);
    assert_int_equal(req->poll.n_options, API_OPTIONS_MAX);
    assert_int_equal(strlen(req->poll.options[API_OPTIONS_MAX - 1]), API_OPTION_MAX);
    assert_int_equal(req->poll.max_choices, API_OPTIONS_MAX);
    api_req_free(req);
    buf_free(&b);
    free(q);
    free(opt);
}

static void test_poll_create_invalid(void **state)
{
    (void)state;
    char *q501 = json_repeat("q", API_QUESTION_MAX + 1);
    char *b = fmt("{\"question\":%s,\"kind\":\"single\",\"options\":[\"a\",\"b\"]}", q501);
    bad_body(API_POLL_CREATE, b, "field 'question' must be a string of 1 to 500 bytes");
    free(b);
    free(q501);
    bad_body(API_POLL_CREATE, "{\"kind\":\"single\",\"options\":[\"a\",\"b\"]}", "field 'question'");
    bad_body(API_POLL_CREATE, "{\"question\":\"\",\"kind\":\"single\",\"options\":[\"a\",\"b\"]}",
             "field 'question'");
    bad_body(API_POLL_CREATE, "{\"question\":1,\"kind\":\"single\",\"options\":[\"a\",\"b\"]}",
             "field 'question'");

    static const char *const kinds[] = {"\"poll\"", "\"Single\"", "1", "null", "[\"single\"]", "\"\""};
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
        b = fmt("{\"question\":\"Q\",\"kind\":%s,\"options\":[\"a\",\"b\"]}", kinds[i]);
        bad_body(API_POLL_CREATE, b, "field 'kind' must be one of single, multi, rating");
        free(b);
    }
    bad_body(API_POLL_CREATE, "{\"question\":\"Q\",\"options\":[\"a\",\"b\"]}", "field 'kind'");

    const char *arr_msg = "field 'options' must be an array of 2 to 32 strings";
    static const char *const opts[] = {
        "[]", "[\"a\"]", "\"a,b\"", "null", "{\"a\":1}", "[\"a\",2]", "[\"a\",null]", "[\"a\",[\"b\"]]",
    };
    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        b = fmt("{\"question\":\"Q\",\"kind\":\"single\",\"options\":%s}", opts[i]);
        bad_body(API_POLL_CREATE, b, arr_msg);
        free(b);
    }
    bad_body(API_POLL_CREATE, "{\"question\":\"Q\",\"kind\":\"single\"}", arr_msg);
    /* 33 options. */
    struct buf ob = BUF_INIT;
    buf_append_str(&ob, "{\"question\":\"Q\",\"kind\":\"single\",\"options\":[");
    for (int i = 0; i <= API_OPTIONS_MAX; i++)
        buf_printf(&ob, "%s\"o%d\"", i ? "," : "", i);
    buf_append_str(&ob, "]}");
    bad_body(API_POLL_CREATE, ob.data, arr_msg);
    buf_free(&ob);
    /* An option of 0 or 201 bytes is named by its index. */
    bad_body(API_POLL_CREATE, "{\"question\":\"Q\",\"kind\":\"single\",\"options\":[\"a\",\"\"]}",
             "field 'options[1]' must be a string of 1 to 200 bytes");
    char *o201 = json_repeat("o", API_OPTION_MAX + 1);
    b = fmt("{\"question\":\"Q\",\"kind\":\"single\",\"options\":[%s,\"b\"]}", o201);
    bad_body(API_POLL_CREATE, b, "field 'options[0]'");
    free(b);
    free(o201);

    /* max_choices. */
    static const struct {
        const char *kind, *max, *want;
    } mc[] = {
        {"single", "2", "field 'max_choices' must be 1 for kind 'single'"},
        {"single", "0", "field 'max_choices' must be 1 for kind 'single'"},
        {"rating", "2", "field 'max_choices' must be 1 for kind 'rating'"},
        {"rating", "\"1\"", "field 'max_choices'"},
        {"multi", "0", "field 'max_choices' must be an integer from 1 to 3"},
        {"multi", "4", "field 'max_choices' must be an integer from 1 to 3"},
        {"multi", "-1", "field 'max_choices'"},
        {"multi", "2.0", "field 'max_choices'"},
        {"multi", "\"2\"", "field 'max_choices'"},
        {"multi", "true", "field 'max_choices'"},
    };
    for (size_t i = 0; i < ARRAY_LEN(mc); i++) {
        b = fmt("{\"question\":\"Q\",\"kind\":\"%s\",\"options\":[\"a\",\"b\",\"c\"],"
                "\"max_choices\":%s}",
                mc[i].kind, mc[i].max);
        bad_body(API_POLL_CREATE, b, mc[i].want);
        free(b);
    }
}

static void test_vote(void **state)
{
    (void)state;
    struct http_req hr = req_of(HTTP_POST, "{\"choice\":[0]}");
    hr.idempotency_key = "vote-1";
    struct api_req *req = build_ok(&hr, API_VOTE);
    assert_string_equal(req->idem_key, "vote-1");
    assert_int_equal(req->n_choices, 1);
    assert_int_equal(req->choices[0], 0);
    api_req_free(req);

    req = ok_body(API_VOTE, "{\"choice\":[31,2,2]}"); /* duplicates are the actor's to refuse */
    assert_int_equal(req->n_choices, 3);
    assert_int_equal(req->choices[0], 31);
    assert_int_equal(req->choices[2], 2);
    api_req_free(req);

    /* 32 entries is the maximum, 33 one too many. */
    struct buf b = BUF_INIT;
    buf_append_str(&b, "{\"choice\":[");
    for (int i = 0; i < API_CHOICES_MAX; i++)
        buf_printf(&b, "%s%d", i ? "," : "", i);
    buf_append_str(&b, "]}");
    req = ok_body(API_VOTE, b.data);
    assert_int_equal(req->n_choices, API_CHOICES_MAX);
    assert_int_equal(req->choices[API_CHOICES_MAX - 1], API_CHOICES_MAX - 1);
    api_req_free(req);
    b.len -= 2;
    buf_append_str(&b, ",0]}");
    bad_body(API_VOTE, b.data, "field 'choice' must have at most 32 entries");
    buf_free(&b);

    const char *arr_msg = "field 'choice' must be a non-empty array of option indexes";
    static const char *const bad[] = {"[]", "0", "null", "\"0\"", "[\"0\"]", "[0.5]", "[1.0]",
                                      "[true]", "[null]", "[[0]]", "{}"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char *body = fmt("{\"choice\":%s}", bad[i]);
        bad_body(API_VOTE, body, arr_msg);
        free(body);
    }
    bad_body(API_VOTE, "{}", arr_msg);
    bad_body(API_VOTE, "{\"choices\":[0]}", arr_msg);
    bad_body(API_VOTE, "{\"choice\":[-1]}", "field 'choice' must hold option indexes from 0 to 31");
    bad_body(API_VOTE, "{\"choice\":[0,32]}", "field 'choice' must hold option indexes from 0 to 31");
    bad_body(API_VOTE, "{\"choice\":[4294967296]}", "field 'choice'");
}

static void test_idempotency_key(void **state)
{
    (void)state;
    struct http_req hr = req_of(HTTP_POST, "{\"choice\":[1]}");
    build_bad(&hr, API_VOTE, "header 'Idempotency-Key' is required");
    /* The header is checked before the body. */
    struct http_req hr_bad = req_of(HTTP_POST, "nonsense");
    build_bad(&hr_bad, API_VOTE, "header 'Idempotency-Key' is required");

    char k128[API_IDEM_KEY_MAX + 2];
    memset(k128, '~', API_IDEM_KEY_MAX);
    k128[0] = ' ';
    k128[API_IDEM_KEY_MAX] = '\0';
    hr.idempotency_key = k128;
    struct api_req *req = build_ok(&hr, API_VOTE);
    assert_string_equal(req->idem_key, k128);
    api_req_free(req);

    const char *msg = "header 'Idempotency-Key' must be 1 to 128 printable ASCII characters";
    k128[API_IDEM_KEY_MAX] = 'x';
    k128[API_IDEM_KEY_MAX + 1] = '\0';
    build_bad(&hr, API_VOTE, msg);
    static const char *const bad[] = {"", "a\x01", "tab\there", "caf\xc3\xa9", "del\x7f"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        hr.idempotency_key = bad[i];
        build_bad(&hr, API_VOTE, msg);
    }
    /* Other ops do not need it and do not copy it. */
    hr = req_of(HTTP_POST, "{\"title\":\"t\"}");
    hr.idempotency_key = "k";
    req = build_ok(&hr, API_SESSION_CREATE);
    assert_string_equal(req->idem_key, "");
    api_req_free(req);
}

static void test_ignored_bodies(void **state)
{
    (void)state;
    static const enum api_op ops[] = {API_SESSION_GET, API_POLL_OPEN,  API_POLL_CLOSE,
                                      API_RESULTS,     API_SESSION_CLOSE, API_EXPORT_CSV,
                                      API_QR_SVG};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        struct api_req *req = ok_body(ops[i], "not json at all");
        assert_null(req->text);
        api_req_free(req);
        req = ok_body(ops[i], NULL);
        api_req_free(req);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_fields_and_error_body),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_body_syntax),
        cmocka_unit_test(test_session_create),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_poll_create_valid),
        cmocka_unit_test(test_poll_create_invalid),
        cmocka_unit_test(test_vote),
        cmocka_unit_test(test_idempotency_key),
        cmocka_unit_test(test_ignored_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
