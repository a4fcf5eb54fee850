/*
 * test_ws.c - the WebSocket handshake, the client frame parser (every rule
 * of RFC 6455 section 5 it enforces, each length encoding, the size limit
 * exactly at and one past it), close frames and the UTF-8 validator.
 *
 * Every frame stream is fed three ways, whole, byte by byte and in
 * pseudo-random pieces, and the three must give the same events.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/ws.h"
#include "actors/wire.h"
#include "core/base.h"
#include "core/buf.h"
#include "net/http.h"

/* ---- building client frames ----------------------------------------------- */

static const uint8_t MASK[4] = {0x37, 0xFA, 0x21, 0x3D}; /* RFC 6455 5.7 */

/*
 * Appends a client frame: wire_ws_header() gives the server form, which is
 * then made what a client sends (FIN as asked, RSV bits, MASK bit, key, and
 * the masked payload).
 */
static void frame_ex(struct buf *b, enum ws_opcode op, bool fin, uint8_t rsv, const void *payload,
                     size_t len, const uint8_t *mask)
{
    uint8_t h[WIRE_WS_HEADER_MAX];
    size_t hl = wire_ws_header(h, op, len);
    if (!fin)
        h[0] &= 0x7F;
    h[0] |= rsv;
    if (mask)
        h[1] |= 0x80;
    buf_append(b, h, hl);
    if (mask)
        buf_append(b, mask, 4);
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)(src[i] ^ (mask ? mask[i & 3] : 0));
        buf_append(b, &c, 1);
    }
}

static void frame(struct buf *b, enum ws_opcode op, bool fin, const void *payload, size_t len)
{
    frame_ex(b, op, fin, 0, payload, len, MASK);
}

static void frame_str(struct buf *b, enum ws_opcode op, bool fin, const char *s)
{
    frame(b, op, fin, s, strlen(s));
}

/* A close frame from the client: code (when code_len is 2) and reason. */
static void close_from_client(struct buf *b, uint16_t code, const void *reason, size_t reason_len)
{
    uint8_t payload[WS_CONTROL_BYTES_MAX];
    assert_true(reason_len <= sizeof(payload) - 2);
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason_len)
        memcpy(payload + 2, reason, reason_len);
    frame(b, WS_OP_CLOSE, true, payload, 2 + reason_len);
}

/* A masked frame header with a raw length field (for non-minimal encodings). */
static void raw_head(struct buf *b, uint8_t b0, uint8_t len7, const uint8_t *ext, size_t ext_len)
{
    uint8_t h[2] = {b0, (uint8_t)(0x80 | len7)};
    buf_append(b, h, 2);
    if (ext_len)
        buf_append(b, ext, ext_len);
    buf_append(b, MASK, 4);
}

static uint8_t *pattern(size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)('a' + i % 26);
    return p;
}

/* ---- running the parser --------------------------------------------------- */

#define RECS_MAX 32

struct rec {
    enum ws_event ev;
    enum ws_opcode op;
    uint16_t code;
    size_t len;
    uint8_t data[WS_MESSAGE_BYTES_MAX];
};

struct run {
    struct rec recs[RECS_MAX];
    size_t n;
    size_t used; /* bytes consumed in all */
};

static void record(struct ws_parser *p, enum ws_event ev, struct run *r)
{
    assert_true(r->n < RECS_MAX);
    struct rec *rec = &r->recs[r->n++];
    const uint8_t *payload = NULL;
    rec->ev = ev;
    rec->len = 0;
    if (ev == WS_EV_MESSAGE) {
        rec->op = ws_parser_message(p, &payload, &rec->len);
    } else if (ev == WS_EV_PING || ev == WS_EV_PONG || ev == WS_EV_CLOSE) {
        ws_parser_control(p, &payload, &rec->len);
        if (ev == WS_EV_CLOSE)
            rec->code = ws_parser_close_code(p);
    } else if (ev == WS_EV_ERROR) {
        rec->code = ws_parser_error_code(p);
        const char *reason = ws_parser_error_reason(p);
        assert_non_null(reason);
        assert_true(strlen(reason) > 0 && strlen(reason) <= WS_CONTROL_BYTES_MAX - 2);
    }
    assert_true(rec->len <= WS_MESSAGE_BYTES_MAX);
    if (rec->len)
        memcpy(rec->data, payload, rec->len);
}

static uint32_t lcg_next(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

/*
 * Feeds d as a network would deliver it: pieces of `piece` bytes (0 for
 * pseudo-random sizes), each fed until the parser has used it, keeping the
 * unused rest as a caller must.
 */
static void run_pieces(const uint8_t *d, size_t n, size_t piece, struct run *r)
{
    struct ws_parser *p = ws_parser_create();
    uint32_t seed = 7;
    size_t pos = 0, have = 0;
    memset(r, 0, sizeof(*r));
    for (;;) {
        size_t used = 0;
        enum ws_event ev = ws_parser_feed(p, d + pos, have - pos, &used);
        assert_true(used <= have - pos);
        pos += used;
        if (ev == WS_EV_AGAIN) {
            assert_int_equal(pos, have);
            if (have == n)
                break;
            size_t step = piece ? piece : 1 + lcg_next(&seed) % 300;
            have = have + step > n ? n : have + step;
            continue;
        }
        record(p, ev, r);
        if (ev == WS_EV_CLOSE || ev == WS_EV_ERROR) {
            /* finished: the same event again, nothing used */
            size_t again = 1;
            assert_int_equal(ws_parser_feed(p, d + pos, n - pos, &again), ev);
            assert_int_equal(again, 0);
            break;
        }
    }
    r->used = pos;
    ws_parser_destroy(p);
}

/*
 * Same events and payloads. The bytes used agree too, except when the run
 * ends in an error: a piece may be used past the byte that is refused.
 */
static void assert_runs_equal(const struct run *a, const struct run *b)
{
    assert_int_equal(a->n, b->n);
    if (a->n == 0 || a->recs[a->n - 1].ev != WS_EV_ERROR)
        assert_int_equal(a->used, b->used);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->recs[i].ev, b->recs[i].ev);
        assert_int_equal(a->recs[i].op, b->recs[i].op);
        assert_int_equal(a->recs[i].code, b->recs[i].code);
        assert_int_equal(a->recs[i].len, b->recs[i].len);
        assert_memory_equal(a->recs[i].data, b->recs[i].data, a->recs[i].len);
    }
}

/* Runs the stream whole, byte by byte and in random pieces; returns the whole run. */
static struct run *run_all(const struct buf *b)
{
    struct run *whole = calloc(1, sizeof(*whole));
    struct run *other = calloc(1, sizeof(*other));
    assert_non_null(whole);
    assert_non_null(other);
    const uint8_t *d = (const uint8_t *)b->data;
    run_pieces(d, b->len, b->len ? b->len : 1, whole);
    run_pieces(d, b->len, 1, other);
    assert_runs_equal(whole, other);
    run_pieces(d, b->len, 0, other);
    assert_runs_equal(whole, other);
    free(other);
    return whole;
}

static void assert_message(const struct rec *rec, enum ws_opcode op, const void *want, size_t len)
{
    assert_int_equal(rec->ev, WS_EV_MESSAGE);
    assert_int_equal(rec->op, op);
    assert_int_equal(rec->len, len);
    if (len)
        assert_memory_equal(rec->data, want, len);
}

/* Asserts the stream ends in one error with code after `before` other events. */
static void expect_error(struct buf *b, size_t before, uint16_t code)
{
    struct run *r = run_all(b);
    assert_int_equal(r->n, before + 1);
    assert_int_equal(r->recs[before].ev, WS_EV_ERROR);
    assert_int_equal(r->recs[before].code, code);
    free(r);
    buf_free(b);
}

/* ---- handshake ------------------------------------------------------------ */

static struct http_req rfc_request(void)
{
    struct http_req r;
    memset(&r, 0, sizeof(r));
    r.method = HTTP_GET;
    r.path = "/api/v1/sessions/K7QX2M/ws";
    r.path_len = strlen(r.path);
    r.query = "";
    r.upgrade = "websocket";
    r.connection = "Upgrade";
    r.ws_key = "dGhlIHNhbXBsZSBub25jZQ==";
    r.ws_version = "13";
    r.is_upgrade = true;
    r.keep_alive = true;
    return r;
}

static enum ws_handshake check(const struct http_req *r, enum ws_proto *proto, bool *echo)
{
    *proto = WS_PROTO_MSGPACK; /* the call must write both */
    *echo = true;
    return ws_handshake_check(r, proto, echo);
}

static void assert_answer(const char *key, enum ws_proto proto, bool echo, const char *want)
{
    struct buf b = BUF_INIT;
    ws_handshake_answer(&b, key, proto, echo);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_free(&b);
}

static void test_handshake_rfc_example(void **state)
{
    (void)state;
    struct http_req r = rfc_request();
    enum ws_proto proto;
    bool echo;
    assert_int_equal(check(&r, &proto, &echo), WS_HS_OK);
    assert_int_equal(proto, WS_PROTO_JSON);
    assert_false(echo);
    assert_answer(r.ws_key, proto, echo,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                  "\r\n");
    /* a second key, so the accept is computed and not a constant */
    assert_answer("AAAAAAAAAAAAAAAAAAAAAA==", WS_PROTO_MSGPACK, true,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: ICX+Yqv66kxgM0FcWaLWlFLwTAI=\r\n"
                  "Sec-WebSocket-Protocol: tally.v1.msgpack\r\n"
                  "\r\n");
}

/* The handshake as the HTTP parser hands it over, headers spelled loosely. */
static void test_handshake_through_http_parser(void **state)
{
    (void)state;
    static const char request[] = "GET /api/v1/sessions/K7QX2M/ws?since=3 HTTP/1.1\r\n"
                                  "Host: server.example.com\r\n"
                                  "upgrade: WebSocket\r\n"
                                  "CONNECTION: keep-alive, Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Protocol: chat, tally.v1.json\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "\r\n";
    struct http_parser *hp = http_parser_create();
    size_t used = 0;
    assert_int_equal(http_parser_feed(hp, request, strlen(request), &used), HTTP_PARSE_DONE);
    assert_int_equal(used, strlen(request));
    const struct http_req *r = http_parser_req(hp);
    assert_true(r->is_upgrade);
    enum ws_proto proto;
    bool echo;
    assert_int_equal(check(r, &proto, &echo), WS_HS_OK);
    assert_int_equal(proto, WS_PROTO_JSON);
    assert_true(echo);
    assert_answer(r->ws_key, proto, echo,
                  "HTTP/1.1 101 Switching Protocols\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                  "Sec-WebSocket-Protocol: tally.v1.json\r\n"
                  "\r\n");
    http_parser_destroy(hp);
}

static void test_handshake_subprotocols(void **state)
{
    (void)state;
    static const struct {
        const char *offered;
        enum ws_handshake want;
        enum ws_proto proto;
        bool echo;
    } cases[] = {
        {NULL, WS_HS_OK, WS_PROTO_JSON, false},
        {"", WS_HS_OK, WS_PROTO_JSON, false},
        {" , ,", WS_HS_OK, WS_PROTO_JSON, false},
        {"tally.v1.json", WS_HS_OK, WS_PROTO_JSON, true},
        {"tally.v1.msgpack", WS_HS_OK, WS_PROTO_MSGPACK, true},
        {"tally.v1.msgpack, tally.v1.json", WS_HS_OK, WS_PROTO_MSGPACK, true},
        {"tally.v1.json,tally.v1.msgpack", WS_HS_OK, WS_PROTO_JSON, true},
        {"chat, superchat ,\ttally.v1.msgpack\t", WS_HS_OK, WS_PROTO_MSGPACK, true},
        {"chat", WS_HS_BAD, WS_PROTO_JSON, false},
        {"chat, superchat", WS_HS_BAD, WS_PROTO_JSON, false},
        {"TALLY.V1.JSON", WS_HS_BAD, WS_PROTO_JSON, false}, /* names compare exactly */
        {"tally.v1.json2", WS_HS_BAD, WS_PROTO_JSON, false},
        {"tally.v1", WS_HS_BAD, WS_PROTO_JSON, false},
        {"tally.v1.msgpack;q=1", WS_HS_BAD, WS_PROTO_JSON, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct http_req r = rfc_request();
        r.ws_protocol = cases[i].offered;
        enum ws_proto proto;
        bool echo;
        assert_int_equal(check(&r, &proto, &echo), cases[i].want);
        assert_int_equal(proto, cases[i].proto);
        assert_int_equal(echo, cases[i].echo);
    }
    assert_string_equal(ws_proto_name(WS_PROTO_JSON), "tally.v1.json");
    assert_string_equal(ws_proto_name(WS_PROTO_MSGPACK), "tally.v1.msgpack");
}

static void test_handshake_header_lists(void **state)
{
    (void)state;
    static const struct {
        const char *upgrade, *connection;
        enum ws_handshake want;
    } cases[] = {
        {"websocket", "Upgrade", WS_HS_OK},
        {"WebSocket", "upgrade", WS_HS_OK},
        {"WEBSOCKET", "UPGRADE", WS_HS_OK},
        {"websocket", "keep-alive, Upgrade", WS_HS_OK},
        {"websocket", ",, upgrade\t,", WS_HS_OK},
        {"h2c, websocket", "Upgrade", WS_HS_OK},
        {NULL, "Upgrade", WS_HS_NOT_UPGRADE},
        {"", "Upgrade", WS_HS_NOT_UPGRADE},
        {"h2c", "Upgrade", WS_HS_NOT_UPGRADE},
        {"websockets", "Upgrade", WS_HS_NOT_UPGRADE},
        {"web socket", "Upgrade", WS_HS_NOT_UPGRADE},
        {"websocket", NULL, WS_HS_BAD},
        {"websocket", "", WS_HS_BAD},
        {"websocket", "keep-alive", WS_HS_BAD},
        {"websocket", "upgrades", WS_HS_BAD},
        {"websocket", "keep-alive upgrade", WS_HS_BAD},
        {"websocket", "close", WS_HS_BAD},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct http_req r = rfc_request();
        r.upgrade = cases[i].upgrade;
        r.connection = cases[i].connection;
        enum ws_proto proto;
        bool echo;
        assert_int_equal(check(&r, &proto, &echo), cases[i].want);
        assert_int_equal(proto, WS_PROTO_JSON);
        assert_false(echo);
    }
}

static void test_handshake_method_version(void **state)
{
    (void)state;
    enum ws_proto proto;
    bool echo;
    static const enum http_method methods[] = {HTTP_POST, HTTP_HEAD, HTTP_OTHER};
    for (size_t i = 0; i < ARRAY_LEN(methods); i++) {
        struct http_req r = rfc_request();
        r.method = methods[i];
        assert_int_equal(check(&r, &proto, &echo), WS_HS_BAD);
    }
    /* a POST that does not ask for websocket is an ordinary request */
    struct http_req plain = rfc_request();
    plain.method = HTTP_POST;
    plain.upgrade = NULL;
    assert_int_equal(check(&plain, &proto, &echo), WS_HS_NOT_UPGRADE);

    static const char *const versions[] = {NULL, "", "8", "12", "14", "013", "13, 8", "13a"};
    for (size_t i = 0; i < ARRAY_LEN(versions); i++) {
        struct http_req r = rfc_request();
        r.ws_version = versions[i];
        assert_int_equal(check(&r, &proto, &echo), WS_HS_BAD_VERSION);
        assert_false(echo);
    }
    /* the version is judged first: a draft client with no key learns it */
    struct http_req old = rfc_request();
    old.ws_version = NULL;
    old.ws_key = NULL;
    assert_int_equal(check(&old, &proto, &echo), WS_HS_BAD_VERSION);
    assert_string_equal(WS_VERSION_HEADER, "Sec-WebSocket-Version: 13\r\n");
}

static void test_handshake_keys(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        enum ws_handshake want;
    } cases[] = {
        {"dGhlIHNhbXBsZSBub25jZQ==", WS_HS_OK},
        {"AAAAAAAAAAAAAAAAAAAAAA==", WS_HS_OK},
        {"/////////////////////w==", WS_HS_OK}, /* 16 bytes of 0xFF */
        {"x3JJHMbDL1EzLkh9GBhXDw==", WS_HS_OK}, /* RFC 6455 1.2 */
        {NULL, WS_HS_BAD},
        {"", WS_HS_BAD},
        {"dGhlIHNhbXBsZSBub25j", WS_HS_BAD},      /* 15 bytes */
        {"dGhlIHNhbXBsZSBub25jZQA=", WS_HS_BAD},  /* 17 bytes */
        {"dGhlIHNhbXBsZSBub25jZQAA", WS_HS_BAD},  /* 18 bytes */
        {"dGhlIHNhbXBsZSBub25jZQ=", WS_HS_BAD},   /* 23 characters */
        {"dGhlIHNhbXBsZSBub25jZQ===", WS_HS_BAD}, /* 25 characters */
        {"dGhlIHNhbXBsZSBub25jZR==", WS_HS_BAD},  /* stray bits after the 16 bytes */
        {"dGhlIHNhbXBsZSBub25jZf==", WS_HS_BAD},
        {"dGhlIHNhbXBsZSBub25j!Q==", WS_HS_BAD},  /* not base64 */
        {"dGhlIHNhbXBsZSBub25j-Q==", WS_HS_BAD},  /* the URL alphabet is not base64 */
        {"dGhlIHNhbXBsZSBub25j Q==", WS_HS_BAD},
        {"dGhlIHNhbXBsZSBub25jZQ=A", WS_HS_BAD},
        {"====dGhlIHNhbXBsZSBub25j", WS_HS_BAD},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct http_req r = rfc_request();
        r.ws_key = cases[i].key;
        enum ws_proto proto;
        bool echo;
        assert_int_equal(check(&r, &proto, &echo), cases[i].want);
    }
}

/* ---- frames ---------------------------------------------------------------- */

/* RFC 6455 5.7: a masked "Hello" and a masked pong "Hello", byte for byte. */
static void test_rfc_examples(void **state)
{
    (void)state;
    static const uint8_t text[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct buf b = BUF_INIT;
    buf_append(&b, text, sizeof(text));
    buf_append(&b, pong, sizeof(pong));
    struct buf built = BUF_INIT;
    frame_str(&built, WS_OP_TEXT, true, "Hello");
    assert_int_equal(built.len, sizeof(text));
    assert_memory_equal(built.data, text, sizeof(text)); /* the helper builds real frames */
    buf_free(&built);

    struct run *r = run_all(&b);
    assert_int_equal(r->n, 2);
    assert_message(&r->recs[0], WS_OP_TEXT, "Hello", 5);
    assert_int_equal(r->recs[1].ev, WS_EV_PONG);
    assert_int_equal(r->recs[1].len, 5);
    assert_memory_equal(r->recs[1].data, "Hello", 5);
    assert_int_equal(r->used, b.len);
    free(r);
    buf_free(&b);
}

/* Each event is reported with the bytes of its own frame only. */
static void test_consumed_per_frame(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    frame_str(&b, WS_OP_TEXT, true, "one");
    size_t first = b.len;
    frame_str(&b, WS_OP_PING, true, "");
    size_t second = b.len;
    frame_str(&b, WS_OP_BINARY, true, "three");
    struct ws_parser *p = ws_parser_create();
    const uint8_t *d = (const uint8_t *)b.data;
    size_t used = 0;
    assert_int_equal(ws_parser_feed(p, d, b.len, &used), WS_EV_MESSAGE);
    assert_int_equal(used, first);
    assert_int_equal(ws_parser_feed(p, d + first, b.len - first, &used), WS_EV_PING);
    assert_int_equal(used, second - first);
    assert_int_equal(ws_parser_feed(p, d + second, b.len - second, &used), WS_EV_MESSAGE);
    assert_int_equal(used, b.len - second);
    const uint8_t *payload;
    size_t len;
    assert_int_equal(ws_parser_message(p, &payload, &len), WS_OP_BINARY);
    assert_int_equal(len, 5);
    assert_memory_equal(payload, "three", 5);
    assert_int_equal(ws_parser_feed(p, d, 0, &used), WS_EV_AGAIN);
    assert_int_equal(used, 0);
    ws_parser_destroy(p);
    buf_free(&b);
}

/* 7-bit, 16-bit and 64-bit lengths at each boundary the 4 KiB limit leaves. */
static void test_length_encodings(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        size_t head; /* header bytes with the mask key */
    } cases[] = {{0, 6}, {1, 6}, {125, 6}, {126, 8}, {127, 8}, {4095, 8}, {4096, 8}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        for (int op = WS_OP_TEXT; op <= WS_OP_BINARY; op++) {
            uint8_t *data = pattern(cases[i].len);
            struct buf b = BUF_INIT;
            frame(&b, (enum ws_opcode)op, true, data, cases[i].len);
            assert_int_equal(b.len, cases[i].head + cases[i].len);
            struct run *r = run_all(&b);
            assert_int_equal(r->n, 1);
            assert_message(&r->recs[0], (enum ws_opcode)op, data, cases[i].len);
            free(r);
            free(data);
            buf_free(&b);
        }
    }
}

/* Lengths over the limit in each encoding: 1009 from the header alone. */
static void test_length_over_limit_from_header(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        size_t len_bytes; /* header bytes up to the end of the length */
    } cases[] = {{4097, 4}, {65535, 4}, {65536, 10}, {UINT64_C(1) << 32, 10},
                 {(UINT64_C(1) << 63) - 1, 10}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t h[WIRE_WS_HEADER_MAX];
        size_t hl = wire_ws_header(h, WS_OP_BINARY, cases[i].len);
        assert_int_equal(hl, cases[i].len_bytes);
        h[1] |= 0x80;
        struct ws_parser *p = ws_parser_create();
        size_t used = 99;
        /* no mask key, no payload: the length is enough */
        assert_int_equal(ws_parser_feed(p, h, hl, &used), WS_EV_ERROR);
        assert_int_equal(used, hl);
        assert_int_equal(ws_parser_error_code(p), WS_CLOSE_TOO_BIG);
        struct ws_parser *fresh = ws_parser_create();
        assert_int_equal(ws_parser_mem(p), ws_parser_mem(fresh)); /* nothing was buffered */
        ws_parser_destroy(fresh);
        ws_parser_destroy(p);

        struct buf b = BUF_INIT;
        buf_append(&b, h, hl);
        buf_append(&b, MASK, 4);
        expect_error(&b, 0, WS_CLOSE_TOO_BIG);
    }
}

static void test_length_malformed(void **state)
{
    (void)state;
    static const uint8_t len16_125[] = {0x00, 0x7D};
    static const uint8_t len16_0[] = {0x00, 0x00};
    static const uint8_t len64_65535[] = {0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const uint8_t len64_5[] = {0, 0, 0, 0, 0, 0, 0, 5};
    static const uint8_t len64_top[] = {0x80, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t len64_all[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    static const struct {
        uint8_t len7;
        const uint8_t *ext;
        size_t ext_len;
    } cases[] = {
        {126, len16_125, 2},  {126, len16_0, 2},    {127, len64_65535, 8},
        {127, len64_5, 8},    {127, len64_top, 8},  {127, len64_all, 8},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct buf b = BUF_INIT;
        raw_head(&b, 0x82, cases[i].len7, cases[i].ext, cases[i].ext_len);
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    }
}

static void test_masking(void **state)
{
    (void)state;
    static const uint8_t masks[][4] = {
        {0, 0, 0, 0}, {0xFF, 0xFF, 0xFF, 0xFF}, {0x01, 0x02, 0x03, 0x04}, {0xA5, 0x00, 0x5A, 0xFF}};
    uint8_t *data = pattern(300);
    for (size_t m = 0; m < ARRAY_LEN(masks); m++) {
        /* lengths that end at every offset of the 4-byte key */
        for (size_t len = 0; len < 9; len++) {
            struct buf b = BUF_INIT;
            frame_ex(&b, WS_OP_BINARY, true, 0, data, len, masks[m]);
            frame_ex(&b, WS_OP_BINARY, true, 0, data, 300, masks[(m + 1) % ARRAY_LEN(masks)]);
            struct run *r = run_all(&b);
            assert_int_equal(r->n, 2);
            assert_message(&r->recs[0], WS_OP_BINARY, data, len);
            assert_message(&r->recs[1], WS_OP_BINARY, data, 300);
            free(r);
            buf_free(&b);
        }
    }
    /* fragments with different keys: the key restarts with each frame */
    struct buf b = BUF_INIT;
    frame_ex(&b, WS_OP_TEXT, false, 0, data, 3, masks[2]);
    frame_ex(&b, WS_OP_CONT, false, 0, data + 3, 5, masks[3]);
    frame_ex(&b, WS_OP_CONT, true, 0, data + 8, 200, masks[1]);
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 1);
    assert_message(&r->recs[0], WS_OP_TEXT, data, 208);
    free(r);
    buf_free(&b);
    free(data);
}

static void test_unmasked(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    frame_ex(&b, WS_OP_TEXT, true, 0, "hi", 2, NULL);
    expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    /* refused from the first two bytes */
    static const uint8_t two[] = {0x81, 0x05};
    struct ws_parser *p = ws_parser_create();
    size_t used = 0;
    assert_int_equal(ws_parser_feed(p, two, 1, &used), WS_EV_AGAIN);
    assert_int_equal(used, 1);
    assert_int_equal(ws_parser_feed(p, two + 1, 1, &used), WS_EV_ERROR);
    assert_int_equal(ws_parser_error_code(p), WS_CLOSE_PROTOCOL);
    ws_parser_destroy(p);
    /* unmasked control frames too, in the middle of a stream */
    b = (struct buf)BUF_INIT;
    frame_str(&b, WS_OP_TEXT, true, "ok");
    frame_ex(&b, WS_OP_PING, true, 0, "", 0, NULL);
    expect_error(&b, 1, WS_CLOSE_PROTOCOL);
}

static void test_reserved_bits(void **state)
{
    (void)state;
    static const uint8_t rsv[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < ARRAY_LEN(rsv); i++) {
        struct buf b = BUF_INIT;
        frame_ex(&b, WS_OP_TEXT, true, rsv[i], "x", 1, MASK);
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
        b = (struct buf)BUF_INIT;
        frame_ex(&b, WS_OP_PING, true, rsv[i], "", 0, MASK);
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    }
}

static void test_unknown_opcodes(void **state)
{
    (void)state;
    static const uint8_t ops[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        struct buf b = BUF_INIT;
        frame(&b, (enum ws_opcode)ops[i], true, "", 0);
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
        /* also after a valid frame and inside a fragmented message */
        b = (struct buf)BUF_INIT;
        frame_str(&b, WS_OP_TEXT, false, "a");
        frame(&b, (enum ws_opcode)ops[i], true, "zz", 2);
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    }
}

static void test_control_frame_rules(void **state)
{
    (void)state;
    static const enum ws_opcode ctl[] = {WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE};
    uint8_t *data = pattern(126);
    for (size_t i = 0; i < ARRAY_LEN(ctl); i++) {
        struct buf b = BUF_INIT;
        frame(&b, ctl[i], false, "", 0); /* no FIN */
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
        b = (struct buf)BUF_INIT;
        frame(&b, ctl[i], true, data, 126); /* over 125 */
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    }
    /* 125 is allowed: a ping of 125 is echoed whole */
    struct buf b = BUF_INIT;
    frame(&b, WS_OP_PING, true, data, 125);
    frame(&b, WS_OP_PONG, true, data, 0);
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->recs[0].ev, WS_EV_PING);
    assert_int_equal(r->recs[0].len, 125);
    assert_memory_equal(r->recs[0].data, data, 125);
    assert_int_equal(r->recs[1].ev, WS_EV_PONG);
    assert_int_equal(r->recs[1].len, 0);
    free(r);
    buf_free(&b);
    free(data);
}

static void test_fragmentation_order(void **state)
{
    (void)state;
    /* continuation with no message */
    struct buf b = BUF_INIT;
    frame_str(&b, WS_OP_CONT, true, "x");
    expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    /* continuation after a complete message */
    b = (struct buf)BUF_INIT;
    frame_str(&b, WS_OP_TEXT, true, "done");
    frame_str(&b, WS_OP_CONT, true, "x");
    expect_error(&b, 1, WS_CLOSE_PROTOCOL);
    /* a new text or binary frame while a message is fragmented */
    for (int op = WS_OP_TEXT; op <= WS_OP_BINARY; op++) {
        b = (struct buf)BUF_INIT;
        frame_str(&b, WS_OP_BINARY, false, "part");
        frame_str(&b, (enum ws_opcode)op, true, "new");
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
        b = (struct buf)BUF_INIT;
        frame_str(&b, WS_OP_TEXT, false, "part");
        frame_str(&b, WS_OP_PING, true, "between");
        frame_str(&b, (enum ws_opcode)op, false, "new");
        expect_error(&b, 1, WS_CLOSE_PROTOCOL);
    }
}

static void test_fragments_with_control_between(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    frame_str(&b, WS_OP_TEXT, false, "Hel");
    frame_str(&b, WS_OP_PING, true, "p1");
    frame_str(&b, WS_OP_CONT, false, "lo ");
    frame_str(&b, WS_OP_PONG, true, "");
    frame_str(&b, WS_OP_CONT, false, "");
    frame_str(&b, WS_OP_PING, true, "p2");
    frame_str(&b, WS_OP_CONT, true, "world");
    frame(&b, WS_OP_BINARY, false, "\x00\xFF", 2);
    frame_str(&b, WS_OP_CONT, true, "");
    frame_str(&b, WS_OP_TEXT, true, "after");
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 6);
    assert_int_equal(r->recs[0].ev, WS_EV_PING);
    assert_int_equal(r->recs[0].len, 2);
    assert_memory_equal(r->recs[0].data, "p1", 2);
    assert_int_equal(r->recs[1].ev, WS_EV_PONG);
    assert_int_equal(r->recs[2].ev, WS_EV_PING);
    assert_memory_equal(r->recs[2].data, "p2", 2);
    assert_message(&r->recs[3], WS_OP_TEXT, "Hello world", 11);
    assert_message(&r->recs[4], WS_OP_BINARY, "\x00\xFF", 2);
    assert_message(&r->recs[5], WS_OP_TEXT, "after", 5);
    assert_int_equal(r->used, b.len);
    free(r);
    buf_free(&b);
}

/* ---- close frames from the client ----------------------------------------- */

static void test_close_codes(void **state)
{
    (void)state;
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                    1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        assert_true(ws_close_code_valid(good[i]));
        struct buf b = BUF_INIT;
        close_from_client(&b, good[i], "bye", 3);
        struct run *r = run_all(&b);
        assert_int_equal(r->n, 1);
        assert_int_equal(r->recs[0].ev, WS_EV_CLOSE);
        assert_int_equal(r->recs[0].code, good[i]);
        assert_int_equal(r->recs[0].len, 5);
        assert_memory_equal(r->recs[0].data + 2, "bye", 3);
        free(r);
        buf_free(&b);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_false(ws_close_code_valid(bad[i]));
        struct buf b = BUF_INIT;
        close_from_client(&b, bad[i], NULL, 0);
        expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    }
}

static void test_close_payloads(void **state)
{
    (void)state;
    /* no payload: 1005 */
    struct buf b = BUF_INIT;
    frame(&b, WS_OP_CLOSE, true, "", 0);
    frame_str(&b, WS_OP_TEXT, true, "ignored after the close");
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].ev, WS_EV_CLOSE);
    assert_int_equal(r->recs[0].code, WS_CLOSE_NO_STATUS);
    assert_int_equal(r->recs[0].len, 0);
    free(r);
    buf_free(&b);
    /* one byte */
    b = (struct buf)BUF_INIT;
    frame(&b, WS_OP_CLOSE, true, "\x03", 1);
    expect_error(&b, 0, WS_CLOSE_PROTOCOL);
    /* the longest reason, 123 bytes of valid UTF-8 (2-byte characters and an 'a') */
    char reason[124];
    reason[0] = 'a';
    for (size_t i = 1; i < 123; i += 2)
        memcpy(reason + i, "\xC3\xA9", 2);
    b = (struct buf)BUF_INIT;
    close_from_client(&b, 1000, reason, 123);
    r = run_all(&b);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].ev, WS_EV_CLOSE);
    assert_int_equal(r->recs[0].len, 125);
    free(r);
    buf_free(&b);
    /* invalid UTF-8 in the reason, and a reason cut inside a character */
    static const char *const bad_reasons[] = {"\xFF", "ok\xC0\xAF", "\xED\xA0\x80", "abc\xE2\x82"};
    for (size_t i = 0; i < ARRAY_LEN(bad_reasons); i++) {
        b = (struct buf)BUF_INIT;
        close_from_client(&b, 1000, bad_reasons[i], strlen(bad_reasons[i]));
        expect_error(&b, 0, WS_CLOSE_INVALID_DATA);
    }
}

/* The close in the middle of a fragmented message ends it; the message is not delivered. */
static void test_close_inside_message(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    frame_str(&b, WS_OP_TEXT, false, "half");
    close_from_client(&b, 1001, NULL, 0);
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->recs[0].ev, WS_EV_CLOSE);
    assert_int_equal(r->recs[0].code, 1001);
    free(r);
    buf_free(&b);
}

/* ---- UTF-8 in text messages ------------------------------------------------ */

static void test_text_utf8(void **state)
{
    (void)state;
    /* invalid in one frame */
    struct buf b = BUF_INIT;
    frame_str(&b, WS_OP_TEXT, true, "caf\xC3\xA9 \xC0\x80");
    expect_error(&b, 0, WS_CLOSE_INVALID_DATA);
    /* invalid across fragments: a sequence started in one is broken in the next */
    b = (struct buf)BUF_INIT;
    frame_str(&b, WS_OP_TEXT, false, "euro \xE2\x82");
    frame_str(&b, WS_OP_CONT, true, "(");
    expect_error(&b, 0, WS_CLOSE_INVALID_DATA);
    /* the message ends inside a character */
    b = (struct buf)BUF_INIT;
    frame_str(&b, WS_OP_TEXT, false, "ok");
    frame_str(&b, WS_OP_CONT, true, "\xF0\x9F\x98");
    expect_error(&b, 0, WS_CLOSE_INVALID_DATA);
    /* a valid character split over three fragments with a ping inside */
    b = (struct buf)BUF_INIT;
    frame_str(&b, WS_OP_TEXT, false, "\xF0\x9F");
    frame_str(&b, WS_OP_PING, true, "");
    frame_str(&b, WS_OP_CONT, false, "\x98");
    frame_str(&b, WS_OP_CONT, true, "\x80!");
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->recs[0].ev, WS_EV_PING);
    assert_message(&r->recs[1], WS_OP_TEXT, "\xF0\x9F\x98\x80!", 5);
    free(r);
    buf_free(&b);
    /* binary messages are not text: any bytes */
    b = (struct buf)BUF_INIT;
    frame_str(&b, WS_OP_BINARY, true, "\xFF\xC0\x80\xED\xA0\x80");
    r = run_all(&b);
    assert_int_equal(r->n, 1);
    assert_message(&r->recs[0], WS_OP_BINARY, "\xFF\xC0\x80\xED\xA0\x80", 6);
    free(r);
    buf_free(&b);
}

/* An invalid byte is refused when it arrives, before the rest of the frame. */
static void test_text_utf8_fails_fast(void **state)
{
    (void)state;
    uint8_t *data = pattern(1000);
    data[10] = 0xFE;
    struct buf b = BUF_INIT;
    frame(&b, WS_OP_TEXT, false, data, 1000);
    struct ws_parser *p = ws_parser_create();
    size_t used = 0;
    const uint8_t *d = (const uint8_t *)b.data;
    assert_int_equal(ws_parser_feed(p, d, 8 + 10, &used), WS_EV_AGAIN);
    assert_int_equal(ws_parser_feed(p, d + 18, 1, &used), WS_EV_ERROR);
    assert_int_equal(used, 1);
    assert_int_equal(ws_parser_error_code(p), WS_CLOSE_INVALID_DATA);
    ws_parser_destroy(p);
    buf_free(&b);
    free(data);
}

/* ---- the message size limit ------------------------------------------------ */

static void test_limit_single_frame(void **state)
{
    (void)state;
    uint8_t *data = pattern(WS_MESSAGE_BYTES_MAX + 1);
    struct buf b = BUF_INIT;
    frame(&b, WS_OP_TEXT, true, data, WS_MESSAGE_BYTES_MAX);
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 1);
    assert_message(&r->recs[0], WS_OP_TEXT, data, WS_MESSAGE_BYTES_MAX);
    free(r);
    buf_free(&b);

    b = (struct buf)BUF_INIT;
    frame(&b, WS_OP_TEXT, true, data, WS_MESSAGE_BYTES_MAX + 1);
    expect_error(&b, 0, WS_CLOSE_TOO_BIG);
    free(data);
}

static void test_limit_fragments(void **state)
{
    (void)state;
    uint8_t *data = pattern(WS_MESSAGE_BYTES_MAX + 1);
    /* exactly 4096 in three fragments, a ping between them */
    struct buf b = BUF_INIT;
    frame(&b, WS_OP_BINARY, false, data, 100);
    frame(&b, WS_OP_PING, true, "", 0);
    frame(&b, WS_OP_CONT, false, data + 100, 2000);
    frame(&b, WS_OP_CONT, true, data + 2100, WS_MESSAGE_BYTES_MAX - 2100);
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 2);
    assert_message(&r->recs[1], WS_OP_BINARY, data, WS_MESSAGE_BYTES_MAX);
    free(r);
    buf_free(&b);
    /* 4097: refused at the header of the fragment that goes over */
    b = (struct buf)BUF_INIT;
    frame(&b, WS_OP_TEXT, false, data, 2048);
    frame(&b, WS_OP_PING, true, "", 0);
    frame(&b, WS_OP_CONT, true, data + 2048, WS_MESSAGE_BYTES_MAX + 1 - 2048);
    expect_error(&b, 1, WS_CLOSE_TOO_BIG);
    /* 4096 of fragments and then one more byte in an empty-then-1 tail */
    b = (struct buf)BUF_INIT;
    frame(&b, WS_OP_TEXT, false, data, WS_MESSAGE_BYTES_MAX);
    frame(&b, WS_OP_CONT, false, data, 0);
    frame(&b, WS_OP_CONT, true, data, 1);
    expect_error(&b, 0, WS_CLOSE_TOO_BIG);

    /* the refusal needs only the header: no payload byte is buffered */
    b = (struct buf)BUF_INIT;
    frame(&b, WS_OP_TEXT, false, data, 4000);
    size_t first = b.len;
    frame(&b, WS_OP_CONT, true, data, 97);
    struct ws_parser *p = ws_parser_create();
    size_t used = 0;
    assert_int_equal(ws_parser_feed(p, (const uint8_t *)b.data, first + 2, &used), WS_EV_ERROR);
    assert_int_equal(used, first + 2);
    assert_int_equal(ws_parser_error_code(p), WS_CLOSE_TOO_BIG);
    ws_parser_destroy(p);
    buf_free(&b);
    free(data);
}

/* Small messages stay inside the parser; a large one holds a buffer only while it is held. */
static void test_memory(void **state)
{
    (void)state;
    struct ws_parser *p = ws_parser_create();
    size_t idle = ws_parser_mem(p);
    assert_true(idle >= WS_SMALL_MESSAGE_BYTES + WS_CONTROL_BYTES_MAX);
    uint8_t *data = pattern(WS_MESSAGE_BYTES_MAX);
    struct buf b = BUF_INIT;
    frame(&b, WS_OP_TEXT, true, data, WS_SMALL_MESSAGE_BYTES);
    size_t small_end = b.len;
    /* a small first fragment, then the message grows past the inline space */
    frame(&b, WS_OP_TEXT, false, data, 100);
    size_t frag_end = b.len;
    frame(&b, WS_OP_CONT, true, data + 100, 1000);
    const uint8_t *d = (const uint8_t *)b.data;
    size_t used = 0;
    const uint8_t *payload;
    size_t len;

    assert_int_equal(ws_parser_feed(p, d, b.len, &used), WS_EV_MESSAGE);
    assert_int_equal(used, small_end);
    assert_int_equal(ws_parser_mem(p), idle);
    assert_int_equal(ws_parser_message(p, &payload, &len), WS_OP_TEXT);
    assert_int_equal(len, WS_SMALL_MESSAGE_BYTES);

    assert_int_equal(ws_parser_feed(p, d + small_end, frag_end - small_end, &used), WS_EV_AGAIN);
    assert_int_equal(ws_parser_mem(p), idle);
    assert_int_equal(ws_parser_feed(p, d + frag_end, 20, &used), WS_EV_AGAIN);
    assert_int_equal(ws_parser_mem(p), idle + WS_MESSAGE_BYTES_MAX);
    assert_int_equal(ws_parser_feed(p, d + frag_end + 20, b.len - frag_end - 20, &used),
                     WS_EV_MESSAGE);
    assert_int_equal(ws_parser_message(p, &payload, &len), WS_OP_TEXT);
    assert_int_equal(len, 1100);
    assert_memory_equal(payload, data, 1100);
    assert_int_equal(ws_parser_mem(p), idle + WS_MESSAGE_BYTES_MAX);
    /* the next feed releases it */
    assert_int_equal(ws_parser_feed(p, d, 0, &used), WS_EV_AGAIN);
    assert_int_equal(ws_parser_mem(p), idle);

    /* one byte over the inline space in one frame takes the heap buffer */
    struct buf big = BUF_INIT;
    frame(&big, WS_OP_BINARY, true, data, WS_SMALL_MESSAGE_BYTES + 1);
    assert_int_equal(ws_parser_feed(p, (const uint8_t *)big.data, big.len, &used), WS_EV_MESSAGE);
    assert_int_equal(ws_parser_mem(p), idle + WS_MESSAGE_BYTES_MAX);
    assert_int_equal(ws_parser_message(p, &payload, &len), WS_OP_BINARY);
    assert_int_equal(len, WS_SMALL_MESSAGE_BYTES + 1);
    assert_memory_equal(payload, data, len);
    buf_free(&big);
    ws_parser_destroy(p);
    ws_parser_destroy(NULL);
    buf_free(&b);
    free(data);
}

/* A long mixed stream: whole, byte by byte and in random pieces agree. */
static void test_split_anywhere(void **state)
{
    (void)state;
    uint8_t *data = pattern(WS_MESSAGE_BYTES_MAX);
    struct buf b = BUF_INIT;
    frame_str(&b, WS_OP_TEXT, true, "{\"type\":\"vote\",\"id\":\"k1\",\"poll_id\":1,\"choice\":[2]}");
    frame(&b, WS_OP_BINARY, true, data, 126);
    frame_str(&b, WS_OP_PING, true, "are you there");
    frame_str(&b, WS_OP_TEXT, false, "\xE2\x82");
    frame_str(&b, WS_OP_PONG, true, "x");
    frame_str(&b, WS_OP_CONT, true, "\xAC = euro");
    frame(&b, WS_OP_BINARY, false, data, 3000);
    frame(&b, WS_OP_CONT, true, data + 3000, WS_MESSAGE_BYTES_MAX - 3000);
    frame(&b, WS_OP_TEXT, true, data, 0);
    close_from_client(&b, 1000, "done", 4);
    struct run *r = run_all(&b);
    assert_int_equal(r->n, 8);
    assert_int_equal(r->recs[0].ev, WS_EV_MESSAGE);
    assert_message(&r->recs[1], WS_OP_BINARY, data, 126);
    assert_int_equal(r->recs[2].ev, WS_EV_PING);
    assert_int_equal(r->recs[3].ev, WS_EV_PONG);
    assert_message(&r->recs[4], WS_OP_TEXT, "\xE2\x82\xAC = euro", 10);
    assert_message(&r->recs[5], WS_OP_BINARY, data, WS_MESSAGE_BYTES_MAX);
    assert_message(&r->recs[6], WS_OP_TEXT, "", 0);
    assert_int_equal(r->recs[7].ev, WS_EV_CLOSE);
    assert_int_equal(r->recs[7].code, 1000);
    assert_int_equal(r->used, b.len);
    free(r);
    buf_free(&b);
    free(data);
}

static void test_finished_after_error(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    frame_ex(&b, WS_OP_TEXT, true, 0x40, "x", 1, MASK);
    frame_str(&b, WS_OP_TEXT, true, "never read");
    struct ws_parser *p = ws_parser_create();
    size_t used = 0;
    const uint8_t *d = (const uint8_t *)b.data;
    assert_int_equal(ws_parser_feed(p, d, b.len, &used), WS_EV_ERROR);
    assert_int_equal(used, 2);
    assert_int_equal(ws_parser_error_code(p), WS_CLOSE_PROTOCOL);
    assert_string_equal(ws_parser_error_reason(p), "reserved bits set");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ws_parser_feed(p, d + 2, b.len - 2, &used), WS_EV_ERROR);
        assert_int_equal(used, 0);
    }
    assert_int_equal(ws_parser_error_code(p), WS_CLOSE_PROTOCOL);
    ws_parser_destroy(p);
    buf_free(&b);
}

/* ---- close frames from the server ------------------------------------------ */

static void assert_bytes(struct buf *b, const void *want, size_t len)
{
    assert_int_equal(b->len, len);
    assert_memory_equal(b->data, want, len);
    buf_free(b);
}

static void test_close_frame_bytes(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    ws_close_frame(&b, 1000, NULL);
    assert_bytes(&b, "\x88\x02\x03\xE8", 4);
    ws_close_frame(&b, 1000, "");
    assert_bytes(&b, "\x88\x02\x03\xE8", 4);
    ws_close_frame(&b, WS_CLOSE_GOING_AWAY, "shutting down");
    assert_bytes(&b, "\x88\x0F\x03\xE9shutting down", 17);
    ws_close_frame(&b, WS_CLOSE_TOO_BIG, "message too big");
    assert_bytes(&b, "\x88\x11\x03\xF1message too big", 19);
    ws_close_frame(&b, 4999, "x");
    assert_bytes(&b, "\x88\x03\x13\x87x", 5);
    /* the echo of a close without code has no payload */
    ws_close_frame(&b, WS_CLOSE_NO_STATUS, "ignored");
    assert_bytes(&b, "\x88\x00", 2);
}

static void test_close_frame_truncation(void **state)
{
    (void)state;
    char reason[301];
    memset(reason, 'r', 300);
    reason[300] = '\0';
    struct buf b = BUF_INIT;
    ws_close_frame(&b, WS_CLOSE_TRY_AGAIN, reason);
    assert_int_equal(b.len, 2 + 125);
    assert_int_equal((uint8_t)b.data[1], 125);
    assert_int_equal((uint8_t)b.data[2], 1013 >> 8);
    assert_int_equal((uint8_t)b.data[3], 1013 & 0xFF);
    assert_memory_equal(b.data + 4, reason, 123);
    buf_free(&b);
    /* exactly 123 bytes fit untouched */
    reason[123] = '\0';
    ws_close_frame(&b, 1000, reason);
    assert_int_equal(b.len, 2 + 125);
    buf_free(&b);
    /* "aa" + 2-byte characters: byte 123 is inside one, so the cut is at 122 */
    size_t n = 0;
    reason[n++] = 'a';
    reason[n++] = 'a';
    while (n + 2 <= 300) {
        memcpy(reason + n, "\xC3\xA9", 2);
        n += 2;
    }
    reason[n] = '\0';
    ws_close_frame(&b, 1000, reason);
    assert_int_equal(b.len, 2 + 2 + 122);
    assert_int_equal((uint8_t)b.data[1], 124);
    uint32_t st = WS_UTF8_START;
    assert_true(ws_utf8_valid(&st, (const uint8_t *)b.data + 4, 122));
    assert_true(ws_utf8_complete(st));
    buf_free(&b);
    /* a 4-byte character across the cut goes whole */
    memset(reason, 'b', 121);
    memcpy(reason + 121, "\xF0\x9F\x98\x80", 4);
    reason[125] = '\0';
    ws_close_frame(&b, 1000, reason);
    assert_int_equal(b.len, 2 + 2 + 121);
    buf_free(&b);
}

/* ---- the UTF-8 validator ---------------------------------------------------- */

struct utf8_case {
    const char *s;
    size_t len;
};

#define U8(lit) {lit, sizeof(lit) - 1}

static const struct utf8_case utf8_good[] = {
    U8(""),
    U8("plain ASCII \x01\x7F"),
    U8("\x00"),
    U8("\xC2\x80"),             /* U+0080 */
    U8("\xDF\xBF"),             /* U+07FF */
    U8("\xE0\xA0\x80"),         /* U+0800 */
    U8("\xED\x9F\xBF"),         /* U+D7FF, below the surrogates */
    U8("\xEE\x80\x80"),         /* U+E000, above them */
    U8("\xEF\xBF\xBD"),         /* U+FFFD */
    U8("\xEF\xBF\xBF"),         /* U+FFFF, a noncharacter but valid */
    U8("\xF0\x90\x80\x80"),     /* U+10000 */
    U8("\xF4\x8F\xBF\xBF"),     /* U+10FFFF */
    U8("\xF3\xBF\xBF\xBF"),
    U8("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"), /* "kosme" */
    U8("a\xC3\xA9" "b\xE2\x82\xAC" "c\xF0\x9F\x98\x80" "d"),
};

static const struct utf8_case utf8_bad[] = {
    U8("\x80"), U8("\xBF"), U8("a\x80" "b"),           /* stray continuation */
    U8("\xC0\x80"), U8("\xC1\xBF"),                      /* overlong 2-byte */
    U8("\xE0\x80\x80"), U8("\xE0\x9F\xBF"),              /* overlong 3-byte */
    U8("\xF0\x80\x80\x80"), U8("\xF0\x8F\xBF\xBF"),      /* overlong 4-byte */
    U8("\xED\xA0\x80"), U8("\xED\xAD\xBF"), U8("\xED\xBF\xBF"), /* surrogates */
    U8("\xED\xA0\x80\xED\xB0\x80"),                      /* a surrogate pair */
    U8("\xF4\x90\x80\x80"), U8("\xF7\xBF\xBF\xBF"),      /* above U+10FFFF */
    U8("\xF5"), U8("\xF8\x88\x80\x80\x80"), U8("\xFC\x84\x80\x80\x80\x80"),
    U8("\xFE"), U8("\xFF"),
    U8("\xC2" "a"), U8("\xE2\x82" "a"), U8("\xF0\x9F\x98" "a"), /* truncated, then ASCII */
    U8("\xC2\xC2\x80"), U8("\xE2\x82\xE2\x82\xAC"),
};

static const struct utf8_case utf8_unfinished[] = {
    U8("\xC2"), U8("\xE2"), U8("\xE2\x82"), U8("\xF0"), U8("\xF0\x9F"), U8("\xF0\x9F\x98"),
    U8("ok\xF4\x8F\xBF"),
};

static void test_utf8_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(utf8_good); i++) {
        const uint8_t *s = (const uint8_t *)utf8_good[i].s;
        size_t n = utf8_good[i].len;
        uint32_t st = WS_UTF8_START;
        assert_true(ws_utf8_valid(&st, s, n));
        assert_true(ws_utf8_complete(st));
        /* split at every position, as fragments would */
        for (size_t cut = 0; cut <= n; cut++) {
            st = WS_UTF8_START;
            assert_true(ws_utf8_valid(&st, s, cut));
            assert_true(ws_utf8_valid(&st, s + cut, n - cut));
            assert_true(ws_utf8_complete(st));
        }
        /* and one byte at a time */
        st = WS_UTF8_START;
        for (size_t k = 0; k < n; k++)
            assert_true(ws_utf8_valid(&st, s + k, 1));
        assert_true(ws_utf8_complete(st));
    }
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(utf8_bad); i++) {
        const uint8_t *s = (const uint8_t *)utf8_bad[i].s;
        size_t n = utf8_bad[i].len;
        uint32_t st = WS_UTF8_START;
        assert_false(ws_utf8_valid(&st, s, n));
        /* sticky: nothing makes it valid again */
        assert_false(ws_utf8_valid(&st, (const uint8_t *)"ok", 2));
        assert_false(ws_utf8_valid(&st, (const uint8_t *)"", 0));
        assert_false(ws_utf8_complete(st));
        /* byte at a time: refused at some byte */
        st = WS_UTF8_START;
        bool ok = true;
        for (size_t k = 0; k < n && ok; k++)
            ok = ws_utf8_valid(&st, s + k, 1);
        assert_false(ok);
    }
    for (size_t i = 0; i < ARRAY_LEN(utf8_unfinished); i++) {
        uint32_t st = WS_UTF8_START;
        assert_true(ws_utf8_valid(&st, (const uint8_t *)utf8_unfinished[i].s,
                                  utf8_unfinished[i].len));
        assert_false(ws_utf8_complete(st));
    }
}

/* Every code point's encoding is accepted; every lead byte with each continuation is judged right. */
static void test_utf8_exhaustive(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t e[4];
        size_t n;
        if (cp < 0x80) {
            e[0] = (uint8_t)cp;
            n = 1;
        } else if (cp < 0x800) {
            e[0] = (uint8_t)(0xC0 | cp >> 6);
            e[1] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            e[0] = (uint8_t)(0xE0 | cp >> 12);
            e[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            e[2] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            e[0] = (uint8_t)(0xF0 | cp >> 18);
            e[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            e[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            e[3] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 4;
        }
        uint32_t st = WS_UTF8_START;
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        bool ok = ws_utf8_valid(&st, e, n) && ws_utf8_complete(st);
        if (ok == surrogate)
            fail_msg("U+%04X judged %s", (unsigned)cp, ok ? "valid" : "invalid");
    }
    /* overlong forms of every code point below each length's minimum */
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        uint8_t e[3] = {0xE0, (uint8_t)(0x80 | cp >> 6), (uint8_t)(0x80 | (cp & 0x3F))};
        uint32_t st = WS_UTF8_START;
        assert_false(ws_utf8_valid(&st, e, 3));
    }
    for (uint32_t cp = 0; cp < 0x80; cp++) {
        uint8_t e[2] = {(uint8_t)(0xC0 | cp >> 6), (uint8_t)(0x80 | (cp & 0x3F))};
        uint32_t st = WS_UTF8_START;
        assert_false(ws_utf8_valid(&st, e, 2));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_rfc_example),
        cmocka_unit_test(test_handshake_through_http_parser),
        cmocka_unit_test(test_handshake_subprotocols),
        cmocka_unit_test(test_handshake_header_lists),
        cmocka_unit_test(test_handshake_method_version),
        cmocka_unit_test(test_handshake_keys),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_consumed_per_frame),
        cmocka_unit_test(test_length_encodings),
        cmocka_unit_test(test_length_over_limit_from_header),
        cmocka_unit_test(test_length_malformed),
        cmocka_unit_test(test_masking),
        cmocka_unit_test(test_unmasked),
        cmocka_unit_test(test_reserved_bits),
        cmocka_unit_test(test_unknown_opcodes),
        cmocka_unit_test(test_control_frame_rules),
        cmocka_unit_test(test_fragmentation_order),
        cmocka_unit_test(test_fragments_with_control_between),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_close_payloads),
        cmocka_unit_test(test_close_inside_message),
        cmocka_unit_test(test_text_utf8),
        cmocka_unit_test(test_text_utf8_fails_fast),
        cmocka_unit_test(test_limit_single_frame),
        cmocka_unit_test(test_limit_fragments),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_split_anywhere),
        cmocka_unit_test(test_finished_after_error),
        cmocka_unit_test(test_close_frame_bytes),
        cmocka_unit_test(test_close_frame_truncation),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
