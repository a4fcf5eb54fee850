/*
 * test_http.c - the request parser: results independent of how the bytes
 * are split, exact head and body limits, malformed input, upgrades, memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"
#include "core/base.h"

#define DUMP_MAX (HTTP_BODY_BYTES_MAX * 2 + 16384)

/* ---- helpers ------------------------------------------------------------ */

static void dump_str(char *out, size_t *len, const char *name, const char *v)
{
    *len += (size_t)snprintf(out + *len, DUMP_MAX - *len, "%s=%s%s%s\n", name, v ? "[" : "",
                             v ? v : "(null)", v ? "]" : "");
}

/* Writes every field of a request as text, so two parses compare with strcmp. */
static void dump_req(const struct http_req *r, char *out, size_t *len)
{
    *len += (size_t)snprintf(out + *len, DUMP_MAX - *len,
                             "method=%d path=[%.*s] query=[%.*s] ka=%d up=%d body_len=%zu\n",
                             (int)r->method, (int)r->path_len, r->path, (int)r->query_len,
                             r->query, r->keep_alive, r->is_upgrade, r->body_len);
    dump_str(out, len, "authorization", r->authorization);
    dump_str(out, len, "idempotency_key", r->idempotency_key);
    dump_str(out, len, "host", r->host);
    dump_str(out, len, "content_type", r->content_type);
    dump_str(out, len, "upgrade", r->upgrade);
    dump_str(out, len, "connection", r->connection);
    dump_str(out, len, "ws_key", r->ws_key);
    dump_str(out, len, "ws_version", r->ws_version);
    dump_str(out, len, "ws_protocol", r->ws_protocol);
    dump_str(out, len, "last_event_id", r->last_event_id);
    dump_str(out, len, "accept_encoding", r->accept_encoding);
    assert_non_null(r->body);
    assert_int_equal(r->body[r->body_len], '\0');
    assert_true(*len + r->body_len + 2 < DUMP_MAX);
    memcpy(out + *len, r->body, r->body_len);
    *len += r->body_len;
    out[(*len)++] = '\n';
    out[*len] = '\0';
}

/*
 * Feeds in[0..len) in pieces that end at the given cut positions, like reads
 * from a socket, handling every DONE as a server would. Returns the dump of
 * all requests followed by the final status; *tail gets how many input bytes
 * were never consumed (only nonzero after an upgrade or error).
 */
static char *parse_cuts(const char *in, size_t len, const size_t *cuts, size_t n_cuts,
                        size_t *tail)
{
    char *out = xmalloc(DUMP_MAX);
    size_t olen = 0;
    out[0] = '\0';
    struct http_parser *p = http_parser_create();
    enum http_parse r = HTTP_PARSE_AGAIN;
    size_t start = 0;
    size_t left = 0;
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t end = c < n_cuts ? cuts[c] : len;
        size_t off = start;
        while (off < end) {
            size_t used = 0;
            r = http_parser_feed(p, in + off, end - off, &used);
            assert_true(used <= end - off);
            off += used;
            if (r == HTTP_PARSE_DONE) {
                const struct http_req *hr = http_parser_req(p);
                dump_req(hr, out, &olen);
                if (hr->is_upgrade) {
                    left = len - off;
                    goto out_done;
                }
                http_parser_next(p);
                assert_true(http_parser_idle(p));
                continue;
            }
            if (r != HTTP_PARSE_AGAIN)
                goto out_done; /* where an error stops is not part of the contract */
            assert_int_equal(off, end);
        }
        start = end;
    }
out_done:
    olen += (size_t)snprintf(out + olen, DUMP_MAX - olen, "status=%d\n", (int)r);
    http_parser_destroy(p);
    if (tail)
        *tail = left;
    return out;
}

static char *parse_whole(const char *in, size_t len, size_t *tail)
{
    return parse_cuts(in, len, NULL, 0, tail);
}

/* Whole, split in two at every position, and one byte at a time: all equal. */
static char *check_all_splits(const char *in, size_t len)
{
    size_t tail_whole = 0;
    char *whole = parse_whole(in, len, &tail_whole);
    for (size_t i = 1; i < len; i++) {
        size_t tail = 0;
        char *two = parse_cuts(in, len, &i, 1, &tail);
        if (strcmp(whole, two) != 0)
            fail_msg("split at %zu differs:\n%s\n---\n%s", i, whole, two);
        assert_int_equal(tail, tail_whole);
        free(two);
    }
    size_t *cuts = xmalloc(len * sizeof(*cuts));
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    size_t tail = 0;
    char *bytes = parse_cuts(in, len, cuts, len ? len - 1 : 0, &tail);
    assert_string_equal(whole, bytes);
    assert_int_equal(tail, tail_whole);
    free(bytes);
    free(cuts);
    return whole;
}

/* Parses exactly one request given whole and checks it is DONE with all bytes used. */
static struct http_parser *parse_one(const char *in)
{
    struct http_parser *p = http_parser_create();
    size_t used = 0;
    assert_int_equal(http_parser_feed(p, in, strlen(in), &used), HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(in));
    return p;
}

static enum http_parse feed_all(struct http_parser *p, const char *in, size_t len)
{
    size_t used = 0;
    return http_parser_feed(p, in, len, &used);
}

/* ---- split independence ------------------------------------------------- */

static void test_get_no_body(void **state)
{
    (void)state;
    const char *in = "GET /api/v1/sessions/K7QX2M?token=abc%20d&x=1 HTTP/1.1\r\n"
                     "Host: example.org:8080\r\n"
                     "authorization: Bearer tok123\r\n"
                     "Accept-Encoding: gzip, br\r\n"
                     "X-Other: ignored\r\n"
                     "Last-Event-ID: 42\r\n"
                     "\r\n";
    char *d = check_all_splits(in, strlen(in));
    free(d);

    struct http_parser *p = parse_one(in);
    const struct http_req *r = http_parser_req(p);
    assert_int_equal(r->method, HTTP_GET);
    assert_int_equal(r->path_len, strlen("/api/v1/sessions/K7QX2M"));
    assert_memory_equal(r->path, "/api/v1/sessions/K7QX2M", r->path_len);
    assert_int_equal(r->query_len, strlen("token=abc%20d&x=1"));
    assert_memory_equal(r->query, "token=abc%20d&x=1", r->query_len);
    assert_string_equal(r->host, "example.org:8080");
    assert_string_equal(r->authorization, "Bearer tok123");
    assert_string_equal(r->accept_encoding, "gzip, br");
    assert_string_equal(r->last_event_id, "42");
    assert_null(r->idempotency_key);
    assert_null(r->content_type);
    assert_null(r->upgrade);
    assert_null(r->ws_key);
    assert_int_equal(r->body_len, 0);
    assert_string_equal(r->body, "");
    assert_true(r->keep_alive);
    assert_false(r->is_upgrade);
    http_parser_destroy(p);
}

static void test_post_content_length(void **state)
{
    (void)state;
    const char *in = "POST /api/v1/polls/12/votes HTTP/1.1\r\n"
                     "Host: h\r\n"
                     "Content-Type: application/json\r\n"
                     "Idempotency-Key: k-1\r\n"
                     "Content-Length: 14\r\n"
                     "\r\n"
                     "{\"choice\":[0]}";
    free(check_all_splits(in, strlen(in)));
    struct http_parser *p = parse_one(in);
    const struct http_req *r = http_parser_req(p);
    assert_int_equal(r->method, HTTP_POST);
    assert_int_equal(r->query_len, 0);
    assert_non_null(r->query);
    assert_string_equal(r->content_type, "application/json");
    assert_string_equal(r->idempotency_key, "k-1");
    assert_int_equal(r->body_len, 14);
    assert_string_equal(r->body, "{\"choice\":[0]}");
    http_parser_destroy(p);
}

static void test_post_chunked(void **state)
{
    (void)state;
    const char *in = "POST /api/v1/sessions HTTP/1.1\r\n"
                     "Host: h\r\n"
                     "Transfer-Encoding: chunked\r\n"
                     "\r\n"
                     "5\r\n{\"tit\r\n"
                     "9;ext=1\r\nle\":\"abc\"\r\n"
                     "1\r\n}\r\n"
                     "0\r\n"
                     "X-Trailer: t\r\n"
                     "\r\n";
    free(check_all_splits(in, strlen(in)));
    struct http_parser *p = parse_one(in);
    const struct http_req *r = http_parser_req(p);
    assert_int_equal(r->body_len, 15);
    assert_string_equal(r->body, "{\"title\":\"abc\"}");
    http_parser_destroy(p);
}

static void test_pipelined_three(void **state)
{
    (void)state;
    const char *in = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
                     "POST /api/v1/sessions HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc"
                     "HEAD /readyz HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n";
    char *d = check_all_splits(in, strlen(in));
    /* Three requests in order, then the input ran out. */
    const char *h1 = strstr(d, "host=[a]");
    const char *h2 = strstr(d, "host=[b]");
    const char *h3 = strstr(d, "host=[c]");
    assert_non_null(h1);
    assert_non_null(h2);
    assert_non_null(h3);
    assert_true(h1 < h2 && h2 < h3);
    assert_non_null(strstr(d, "status=1\n")); /* the input ends with the last request */
    free(d);

    struct http_parser *p = http_parser_create();
    size_t used = 0;
    size_t len = strlen(in);
    size_t first = strlen("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(http_parser_feed(p, in, len, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, first);
    assert_int_equal(http_parser_req(p)->method, HTTP_GET);
    http_parser_next(p);
    size_t used2 = 0;
    assert_int_equal(http_parser_feed(p, in + used, len - used, &used2), HTTP_PARSE_DONE);
    assert_string_equal(http_parser_req(p)->body, "abc");
    http_parser_next(p);
    size_t used3 = 0;
    assert_int_equal(http_parser_feed(p, in + used + used2, len - used - used2, &used3),
                     HTTP_PARSE_DONE);
    assert_int_equal(used + used2 + used3, len);
    assert_int_equal(http_parser_req(p)->method, HTTP_HEAD);
    assert_false(http_parser_req(p)->keep_alive);
    http_parser_destroy(p);
}

static void test_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"POST /x HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        free(check_all_splits(cases[i].in, strlen(cases[i].in)));
        struct http_parser *p = parse_one(cases[i].in);
        assert_int_equal(http_parser_req(p)->keep_alive, cases[i].keep_alive);
        http_parser_destroy(p);
    }
}

static void test_methods(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        enum http_method m;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", HTTP_GET},
        {"HEAD / HTTP/1.1\r\n\r\n", HTTP_HEAD},
        {"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", HTTP_POST},
        {"PUT / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", HTTP_OTHER},
        {"DELETE / HTTP/1.1\r\n\r\n", HTTP_OTHER},
        {"OPTIONS * HTTP/1.1\r\n\r\n", HTTP_OTHER},
        {"\r\n\r\nGET / HTTP/1.1\r\n\r\n", HTTP_GET}, /* empty lines before a request are skipped */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct http_parser *p = parse_one(cases[i].in);
        assert_int_equal(http_parser_req(p)->method, cases[i].m);
        http_parser_destroy(p);
    }
}

static void test_header_details(void **state)
{
    (void)state;
    const char *in = "GET /ws?a HTTP/1.1\r\n"
                     "HOST:   first  \t\r\n"
                     "Host: second\r\n"
                     "X-Empty:\r\n"
                     "Idempotency-Key:\r\n"
                     "sec-websocket-protocol: tally.v1.json, tally.v1.msgpack\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "X-A-Header-Name-Longer-Than-Any-We-Keep-At-All: v\r\n"
                     "\r\n";
    free(check_all_splits(in, strlen(in)));
    struct http_parser *p = parse_one(in);
    const struct http_req *r = http_parser_req(p);
    assert_string_equal(r->host, "first");
    assert_string_equal(r->idempotency_key, "");
    assert_string_equal(r->ws_protocol, "tally.v1.json, tally.v1.msgpack");
    assert_string_equal(r->ws_version, "13");
    assert_int_equal(r->path_len, 3);
    assert_int_equal(r->query_len, 1);
    assert_memory_equal(r->query, "a", 1);
    http_parser_destroy(p);
}

static void test_header_value_split(void **state)
{
    (void)state;
    struct http_parser *p = http_parser_create();
    assert_int_equal(feed_all(p, "GET / HTTP/1.1\r\nAuthoriz", 24), HTTP_PARSE_AGAIN);
    assert_int_equal(feed_all(p, "ation: Bea", 10), HTTP_PARSE_AGAIN);
    assert_int_equal(feed_all(p, "rer a", 5), HTTP_PARSE_AGAIN);
    assert_int_equal(feed_all(p, "bc\r", 3), HTTP_PARSE_AGAIN);
    assert_int_equal(feed_all(p, "\n\r\n", 3), HTTP_PARSE_DONE);
    assert_string_equal(http_parser_req(p)->authorization, "Bearer abc");
    http_parser_destroy(p);
}

/* ---- limits ------------------------------------------------------------- */

/* A GET whose head is exactly n bytes, padded with an uninteresting header. */
static char *head_of(size_t n)
{
    const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    assert_true(n > fixed);
    char *s = xmalloc(n + 1);
    strcpy(s, pre);
    memset(s + strlen(pre), 'a', n - fixed);
    strcpy(s + n - strlen(post), post);
    assert_int_equal(strlen(s), n);
    return s;
}

static void test_head_limit(void **state)
{
    (void)state;
    char *ok = head_of(HTTP_HEAD_BYTES_MAX);
    char *d = check_all_splits(ok, HTTP_HEAD_BYTES_MAX);
    assert_non_null(strstr(d, "status=1\n"));
    assert_non_null(strstr(d, "host=[h]"));
    free(d);
    free(ok);

    char *big = head_of(HTTP_HEAD_BYTES_MAX + 1);
    d = check_all_splits(big, HTTP_HEAD_BYTES_MAX + 1);
    assert_string_equal(d, "status=2\n");
    free(d);
    free(big);

    /* A long URL counts too, and a long kept header value. */
    char *url = xmalloc(HTTP_HEAD_BYTES_MAX + 64);
    int n = snprintf(url, 32, "GET /");
    memset(url + n, 'u', HTTP_HEAD_BYTES_MAX);
    strcpy(url + n + HTTP_HEAD_BYTES_MAX, " HTTP/1.1\r\n\r\n");
    struct http_parser *p = http_parser_create();
    assert_int_equal(feed_all(p, url, strlen(url)), HTTP_PARSE_E_HEAD_TOO_LARGE);
    /* Errors are final. */
    assert_int_equal(feed_all(p, "\r\n", 2), HTTP_PARSE_E_HEAD_TOO_LARGE);
    http_parser_destroy(p);
    free(url);

    /* The limit counts the head only: a body right after a full head is fine. */
    const char *pre = "POST / HTTP/1.1\r\nContent-Length: 4\r\nAuthorization: ";
    size_t fill = HTTP_HEAD_BYTES_MAX - strlen(pre) - 4;
    char *s = xmalloc(HTTP_HEAD_BYTES_MAX + 8);
    strcpy(s, pre);
    memset(s + strlen(pre), 't', fill);
    strcpy(s + strlen(pre) + fill, "\r\n\r\nbody");
    assert_int_equal(strlen(s), HTTP_HEAD_BYTES_MAX + 4);
    d = check_all_splits(s, strlen(s));
    assert_non_null(strstr(d, "status=1\n"));
    free(d);
    p = parse_one(s);
    assert_int_equal(strlen(http_parser_req(p)->authorization), fill);
    assert_string_equal(http_parser_req(p)->body, "body");
    http_parser_destroy(p);
    free(s);
}

static char *post_with_body(size_t body_len, bool chunked)
{
    char *s = xmalloc(body_len * 2 + 512);
    size_t n;
    if (!chunked) {
        n = (size_t)sprintf(s, "POST /b HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body_len);
        memset(s + n, 'b', body_len);
        n += body_len;
    } else {
        n = (size_t)sprintf(s, "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        size_t left = body_len;
        while (left > 0) {
            size_t c = left > 10000 ? 10000 : left;
            n += (size_t)sprintf(s + n, "%zx\r\n", c);
            memset(s + n, 'b', c);
            n += c;
            n += (size_t)sprintf(s + n, "\r\n");
            left -= c;
        }
        n += (size_t)sprintf(s + n, "0\r\n\r\n");
    }
    s[n] = '\0';
    return s;
}

static void test_body_limit(void **state)
{
    (void)state;
    for (int chunked = 0; chunked < 2; chunked++) {
        char *ok = post_with_body(HTTP_BODY_BYTES_MAX, chunked);
        struct http_parser *p = parse_one(ok);
        assert_int_equal(http_parser_req(p)->body_len, HTTP_BODY_BYTES_MAX);
        assert_int_equal(http_parser_req(p)->body[HTTP_BODY_BYTES_MAX - 1], 'b');
        http_parser_destroy(p);
        /* One byte at a time gives the same body. */
        p = http_parser_create();
        size_t len = strlen(ok);
        enum http_parse r = HTTP_PARSE_AGAIN;
        for (size_t i = 0; i < len; i++) {
            r = feed_all(p, ok + i, 1);
            assert_int_equal(r, i + 1 == len ? HTTP_PARSE_DONE : HTTP_PARSE_AGAIN);
        }
        assert_int_equal(http_parser_req(p)->body_len, HTTP_BODY_BYTES_MAX);
        http_parser_destroy(p);
        free(ok);

        char *big = post_with_body(HTTP_BODY_BYTES_MAX + 1, chunked);
        p = http_parser_create();
        assert_int_equal(feed_all(p, big, strlen(big)), HTTP_PARSE_E_BODY_TOO_LARGE);
        http_parser_destroy(p);
        free(big);
    }
    /* Content-Length over the limit is refused with the head, before any body. */
    struct http_parser *p = http_parser_create();
    const char *h = "POST /b HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
    assert_int_equal(feed_all(p, h, strlen(h)), HTTP_PARSE_E_BODY_TOO_LARGE);
    http_parser_destroy(p);
    p = http_parser_create();
    h = "POST /b HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n";
    assert_int_not_equal(feed_all(p, h, strlen(h)), HTTP_PARSE_DONE);
    http_parser_destroy(p);
    /* Exactly at the limit the head alone is not an error. */
    p = http_parser_create();
    h = "POST /b HTTP/1.1\r\nContent-Length: 65536\r\n\r\n";
    assert_int_equal(feed_all(p, h, strlen(h)), HTTP_PARSE_AGAIN);
    http_parser_destroy(p);
}

/* A chunked request that never ends cannot stream forever on framing alone. */
static void test_wire_limit(void **state)
{
    (void)state;
    struct http_parser *p = http_parser_create();
    const char *h = "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(feed_all(p, h, strlen(h)), HTTP_PARSE_AGAIN);
    enum http_parse r = HTTP_PARSE_AGAIN;
    const char *ext = "1;e=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\nx\r\n";
    for (int i = 0; i < 20000 && r == HTTP_PARSE_AGAIN; i++)
        r = feed_all(p, ext, strlen(ext));
    assert_int_equal(r, HTTP_PARSE_E_BODY_TOO_LARGE);
    http_parser_destroy(p);
}

/* ---- malformed ---------------------------------------------------------- */

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET\r\n\r\n",
        "GET / HTTP/1.1 extra\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nBad\x01: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\n\n",
        "GET / HTTP/1.1\r\nHost: h\n\r\n",
        "GET / HTTP/1.0\r\nHost: h\r\n\tfolded\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        "GET / HTTP/1.1\r\n: novalue\r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
        "GET / FTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        "\x01\x02\x03",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char *d = check_all_splits(bad[i], strlen(bad[i]));
        if (strcmp(d, "status=4\n") != 0)
            fail_msg("case %zu: %s", i, d);
        free(d);
    }
}

/* ---- upgrade ------------------------------------------------------------ */

static void test_upgrade(void **state)
{
    (void)state;
    const char *head = "GET /api/v1/sessions/K7QX2M/ws?token=t HTTP/1.1\r\n"
                       "Host: h\r\n"
                       "Connection: keep-alive, Upgrade\r\n"
                       "Upgrade: websocket\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Protocol: tally.v1.json\r\n"
                       "\r\n";
    const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    size_t hlen = strlen(head);
    char in[1024];
    memcpy(in, head, hlen);
    memcpy(in + hlen, frame, sizeof(frame) - 1);
    size_t len = hlen + sizeof(frame) - 1;

    char *d = check_all_splits(in, len);
    assert_non_null(strstr(d, "up=1"));
    free(d);
    size_t tail = 0;
    d = parse_whole(in, len, &tail);
    assert_int_equal(tail, sizeof(frame) - 1);
    free(d);

    struct http_parser *p = http_parser_create();
    size_t used = 0;
    assert_int_equal(http_parser_feed(p, in, len, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, hlen);
    const struct http_req *r = http_parser_req(p);
    assert_true(r->is_upgrade);
    assert_string_equal(r->upgrade, "websocket");
    assert_string_equal(r->connection, "keep-alive, Upgrade");
    assert_string_equal(r->ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_string_equal(r->ws_version, "13");
    assert_string_equal(r->ws_protocol, "tally.v1.json");
    http_parser_destroy(p);

    /* Upgrade without Connection: upgrade is an ordinary request. */
    p = parse_one("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    assert_false(http_parser_req(p)->is_upgrade);
    http_parser_destroy(p);
}

/* ---- state and memory --------------------------------------------------- */

/* Expect: 100-continue is reported once, after the head, while the body is
 * still to come; not without a body, and not when the body came with the head. */
static void test_expect_continue(void **state)
{
    (void)state;
    const char *head = "POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
                       "Content-Length: 2\r\n\r\n";
    struct http_parser *p = http_parser_create();
    size_t used = 0;
    assert_int_equal(http_parser_feed(p, head, strlen(head), &used), HTTP_PARSE_AGAIN);
    assert_true(http_parser_take_continue(p));
    assert_false(http_parser_take_continue(p)); /* once */
    assert_int_equal(http_parser_feed(p, "{}", 2, &used), HTTP_PARSE_DONE);
    assert_string_equal(http_parser_req(p)->expect, "100-Continue");
    http_parser_next(p);

    const char *nobody = "GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n";
    assert_int_equal(http_parser_feed(p, nobody, strlen(nobody), &used), HTTP_PARSE_DONE);
    assert_false(http_parser_take_continue(p));
    http_parser_next(p);

    char whole[256];
    snprintf(whole, sizeof(whole), "%s{}", head);
    assert_int_equal(http_parser_feed(p, whole, strlen(whole), &used), HTTP_PARSE_DONE);
    assert_false(http_parser_take_continue(p)); /* the body is here already */
    http_parser_next(p);
    const char *partial = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    assert_int_equal(http_parser_feed(p, partial, strlen(partial), &used), HTTP_PARSE_AGAIN);
    assert_false(http_parser_take_continue(p)); /* nothing left over from the last request */
    http_parser_destroy(p);
}

static void test_idle_and_mem(void **state)
{
    (void)state;
    struct http_parser *p = http_parser_create();
    size_t idle_mem = http_parser_mem(p);
    assert_true(idle_mem <= 256);
    assert_true(http_parser_idle(p));
    assert_int_equal(feed_all(p, "P", 1), HTTP_PARSE_AGAIN);
    assert_false(http_parser_idle(p));
    char *req = post_with_body(60000, false);
    assert_int_equal(feed_all(p, req + 1, strlen(req) - 1), HTTP_PARSE_DONE);
    assert_false(http_parser_idle(p));
    assert_true(http_parser_mem(p) > 60000);
    http_parser_next(p);
    assert_true(http_parser_idle(p));
    assert_int_equal(http_parser_mem(p), idle_mem);
    /* The parser is reusable after next(). */
    assert_int_equal(feed_all(p, req, strlen(req)), HTTP_PARSE_DONE);
    assert_int_equal(http_parser_req(p)->body_len, 60000);
    http_parser_next(p);
    free(req);
    http_parser_destroy(p);
    http_parser_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_no_body),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_pipelined_three),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_header_details),
        cmocka_unit_test(test_header_value_split),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_wire_limit),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_idle_and_mem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
