/*
 * ws.c - see ws.h.
 *
 * The frame parser is a small resumable state machine (HEAD → PAYLOAD →
 * HEAD ...), with DONE once a close or an error is reached. Header bytes are
 * collected one at a time into `head` (at most 14) and judged at the first
 * moment they can be: after 2 bytes, after the extended length, after the
 * mask key. Payload bytes are unmasked while they are copied into the
 * control buffer or the message buffer, which never holds more than
 * WS_MESSAGE_BYTES_MAX because the size is checked on each frame header.
 *
 * A delivered message stays in place until the next feed, which is when its
 * heap buffer (if it needed one) is released.
 */
#include "net/ws.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "core/base.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 1.3 */
#define WS_SHA1_BYTES 20
#define WS_HEAD_BYTES_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WS_CLOSE_REASON_BYTES_MAX (WS_CONTROL_BYTES_MAX - 2)

static_assert(WS_SMALL_MESSAGE_BYTES <= WS_MESSAGE_BYTES_MAX, "small messages are messages");
static_assert(WS_KEY_CHARS == 4 * ((16 + 2) / 3), "key: base64 of 16 bytes");
static_assert(WS_ACCEPT_CHARS == 4 * ((WS_SHA1_BYTES + 2) / 3), "accept: base64 of SHA-1");

/* ---- handshake ----------------------------------------------------------- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Steps to the next element of a comma-separated header list (RFC 9110
 * 5.6.1): skips empty elements and the spaces around each. Returns false at
 * the end of the list.
 */
static bool list_next(const char **cursor, const char **elem, size_t *elem_len)
{
    const char *s = *cursor;
    while (is_ows(*s) || *s == ',')
        s++;
    if (*s == '\0')
        return false;
    const char *start = s;
    while (*s != '\0' && *s != ',')
        s++;
    const char *end = s;
    while (end > start && is_ows(end[-1]))
        end--;
    *cursor = s;
    *elem = start;
    *elem_len = (size_t)(end - start);
    return true;
}

/* True when the list holds token, case-insensitively and as a whole element. */
static bool list_has_token(const char *list, const char *token)
{
    size_t token_len = strlen(token);
    const char *elem;
    size_t elem_len;
    TALLY_ASSERT(token_len > 0);
    while (list_next(&list, &elem, &elem_len)) {
        if (elem_len == token_len && strncasecmp(elem, token, token_len) == 0)
            return true;
    }
    return false;
}

/* The value of a base64 character, or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * True when key is the canonical base64 of exactly 16 bytes: 22 characters
 * of the alphabet, "==", and the 4 bits the last character carries beyond
 * the 128 zero (RFC 4648 3.5), so one nonce has one spelling.
 */
static bool key_valid(const char *key)
{
    if (key == NULL || strlen(key) != WS_KEY_CHARS)
        return false;
    for (size_t i = 0; i < WS_KEY_CHARS - 2; i++) {
        if (b64_value(key[i]) < 0)
            return false;
    }
    if ((b64_value(key[WS_KEY_CHARS - 3]) & 0x0F) != 0)
        return false;
    return key[WS_KEY_CHARS - 2] == '=' && key[WS_KEY_CHARS - 1] == '=';
}

const char *ws_proto_name(enum ws_proto proto)
{
    switch (proto) {
    case WS_PROTO_JSON: return "tally.v1.json";
    case WS_PROTO_MSGPACK: return "tally.v1.msgpack";
    }
    TALLY_ASSERT(!"unknown subprotocol");
    return NULL;
}

/*
 * Picks the first supported entry of the client's list. Returns false when
 * the list names protocols and none is ours; an absent or empty list leaves
 * the default (JSON, not echoed).
 */
static bool pick_proto(const char *offered, enum ws_proto *proto, bool *proto_echo)
{
    static const enum ws_proto ours[] = {WS_PROTO_JSON, WS_PROTO_MSGPACK};
    const char *elem;
    size_t elem_len;
    bool any = false;
    if (offered == NULL)
        return true;
    while (list_next(&offered, &elem, &elem_len)) {
        any = true;
        for (size_t i = 0; i < ARRAY_LEN(ours); i++) {
            const char *name = ws_proto_name(ours[i]);
            if (elem_len == strlen(name) && memcmp(elem, name, elem_len) == 0) {
                *proto = ours[i];
                *proto_echo = true;
                return true;
            }
        }
    }
    return !any;
}

enum ws_handshake ws_handshake_check(const struct http_req *req, enum ws_proto *proto,
                                     bool *proto_echo)
{
    TALLY_ASSERT(req != NULL);
    TALLY_ASSERT(proto != NULL && proto_echo != NULL);
    *proto = WS_PROTO_JSON;
    *proto_echo = false;
    if (req->upgrade == NULL || !list_has_token(req->upgrade, "websocket"))
        return WS_HS_NOT_UPGRADE;
    if (req->method != HTTP_GET)
        return WS_HS_BAD;
    if (req->connection == NULL || !list_has_token(req->connection, "upgrade"))
        return WS_HS_BAD;
    /* Checked before the key: a client of an older draft (hixie-76 sends no
     * version and no Sec-WebSocket-Key) learns which version we speak. */
    if (req->ws_version == NULL || strcmp(req->ws_version, "13") != 0)
        return WS_HS_BAD_VERSION;
    if (!key_valid(req->ws_key))
        return WS_HS_BAD;
    if (!pick_proto(req->ws_protocol, proto, proto_echo)) {
        *proto = WS_PROTO_JSON;
        *proto_echo = false;
        return WS_HS_BAD;
    }
    return WS_HS_OK;
}

void ws_handshake_answer(struct buf *out, const char *key, enum ws_proto proto, bool proto_echo)
{
    TALLY_ASSERT(out != NULL);
    TALLY_ASSERT(key_valid(key));
    char input[WS_KEY_CHARS + sizeof(WS_GUID)];
    memcpy(input, key, WS_KEY_CHARS);
    memcpy(input + WS_KEY_CHARS, WS_GUID, sizeof(WS_GUID));
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    /* SHA-1 of a fixed-size input fails only when libcrypto itself is
     * broken (no default provider): not something a client can cause. */
    int ok = EVP_Digest(input, WS_KEY_CHARS + sizeof(WS_GUID) - 1, digest, &digest_len,
                        EVP_sha1(), NULL);
    TALLY_ASSERT(ok == 1);
    TALLY_ASSERT(digest_len == WS_SHA1_BYTES);
    unsigned char accept[WS_ACCEPT_CHARS + 1];
    int accept_len = EVP_EncodeBlock(accept, digest, WS_SHA1_BYTES);
    TALLY_ASSERT(accept_len == WS_ACCEPT_CHARS);
    buf_printf(out,
               "HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n",
               (const char *)accept);
    if (proto_echo)
        buf_printf(out, "Sec-WebSocket-Protocol: %s\r\n", ws_proto_name(proto));
    buf_append(out, "\r\n", 2);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/*
 * State: bits 0-1 the continuation bytes still expected; bits 8-15 and
 * 16-23 the lowest and highest value allowed for the next one (narrower than
 * 0x80-0xBF right after E0, ED, F0 and F4, which is how overlong forms,
 * surrogates and code points above U+10FFFF are refused). WS_UTF8_REJECT
 * is sticky.
 */
#define WS_UTF8_REJECT 0xFFFFFFFFu

static uint32_t utf8_expect(uint32_t need, uint32_t lo, uint32_t hi)
{
    return need | lo << 8 | hi << 16;
}

/* The state after the lead byte c, WS_UTF8_REJECT when c cannot start one. */
static uint32_t utf8_lead(uint8_t c)
{
    if (c >= 0xC2 && c <= 0xDF)
        return utf8_expect(1, 0x80, 0xBF);
    if (c == 0xE0)
        return utf8_expect(2, 0xA0, 0xBF); /* below A0: overlong */
    if (c == 0xED)
        return utf8_expect(2, 0x80, 0x9F); /* above 9F: surrogates */
    if (c >= 0xE1 && c <= 0xEF)
        return utf8_expect(2, 0x80, 0xBF);
    if (c == 0xF0)
        return utf8_expect(3, 0x90, 0xBF); /* below 90: overlong */
    if (c >= 0xF1 && c <= 0xF3)
        return utf8_expect(3, 0x80, 0xBF);
    if (c == 0xF4)
        return utf8_expect(3, 0x80, 0x8F); /* above 8F: beyond U+10FFFF */
    return WS_UTF8_REJECT;             /* 80-BF stray continuation, C0 C1 F5-FF */
}

bool ws_utf8_valid(uint32_t *state, const uint8_t *s, size_t n)
{
    TALLY_ASSERT(state != NULL);
    TALLY_ASSERT(s != NULL || n == 0);
    uint32_t st = *state;
    for (size_t i = 0; i < n && st != WS_UTF8_REJECT; i++) {
        uint8_t c = s[i];
        if (st == 0) {
            if (c >= 0x80)
                st = utf8_lead(c);
            continue;
        }
        uint32_t lo = (st >> 8) & 0xFF, hi = (st >> 16) & 0xFF;
        if (c < lo || c > hi)
            st = WS_UTF8_REJECT;
        else if ((st & 3) == 1)
            st = 0;
        else
            st = utf8_expect((st & 3) - 1, 0x80, 0xBF);
    }
    *state = st;
    return st != WS_UTF8_REJECT;
}

bool ws_utf8_complete(uint32_t state)
{
    return state == WS_UTF8_START;
}

/* ---- close frames --------------------------------------------------------- */

bool ws_close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

void ws_close_frame(struct buf *out, uint16_t code, const char *reason)
{
    TALLY_ASSERT(out != NULL);
    if (code == WS_CLOSE_NO_STATUS) {
        wire_ws_frame(out, WS_OP_CLOSE, NULL, 0);
        return;
    }
    TALLY_ASSERT(ws_close_code_valid(code));
    uint8_t payload[WS_CONTROL_BYTES_MAX];
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    size_t n = reason ? strlen(reason) : 0;
    if (n > WS_CLOSE_REASON_BYTES_MAX) {
        /* Cut before a continuation byte never splits a character: the peer
         * fails the connection on a reason that is not valid UTF-8. */
        n = WS_CLOSE_REASON_BYTES_MAX;
        while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(payload + 2, reason, n);
    wire_ws_frame(out, WS_OP_CLOSE, payload, 2 + n);
}

/* ---- frame parser --------------------------------------------------------- */

enum ws_pstate { WS_S_HEAD, WS_S_PAYLOAD, WS_S_DONE };

struct ws_parser {
    enum ws_pstate state;
    enum ws_event last;  /* the event the last feed returned */
    enum ws_event final; /* WS_EV_CLOSE or WS_EV_ERROR once DONE */

    /* the frame being read */
    uint8_t head[WS_HEAD_BYTES_MAX];
    uint8_t head_len, head_need; /* head_need is 2 until the first 2 bytes are judged */
    bool fin;
    enum ws_opcode op;
    size_t frame_len, frame_pos; /* frame_len ≤ WS_MESSAGE_BYTES_MAX once accepted */

    /* the message being assembled; msg_op is WS_OP_CONT when none is */
    enum ws_opcode msg_op;
    size_t msg_len;
    uint32_t msg_utf8;
    bool msg_delivered; /* returned as WS_EV_MESSAGE; released by the next feed */
    uint8_t *msg_heap;  /* WS_MESSAGE_BYTES_MAX bytes, only while a large message is held */
    uint8_t msg_small[WS_SMALL_MESSAGE_BYTES];

    uint8_t ctrl[WS_CONTROL_BYTES_MAX];
    size_t ctrl_len;

    uint16_t close_code, error_code;
    const char *error_reason;
};

static_assert(WS_HEAD_BYTES_MAX <= UINT8_MAX, "head_len is a uint8_t");

struct ws_parser *ws_parser_create(void)
{
    struct ws_parser *p = xcalloc(1, sizeof(*p));
    p->state = WS_S_HEAD;
    p->head_need = 2;
    p->msg_op = WS_OP_CONT;
    p->last = WS_EV_AGAIN;
    return p;
}

void ws_parser_destroy(struct ws_parser *p)
{
    if (p == NULL)
        return;
    free(p->msg_heap);
    free(p);
}

size_t ws_parser_mem(const struct ws_parser *p)
{
    TALLY_ASSERT(p != NULL);
    return sizeof(*p) + (p->msg_heap ? WS_MESSAGE_BYTES_MAX : 0);
}

static bool op_is_control(enum ws_opcode op)
{
    return ((unsigned)op & 0x8u) != 0;
}

static uint8_t *msg_buf(struct ws_parser *p)
{
    return p->msg_heap ? p->msg_heap : p->msg_small;
}

static void msg_release(struct ws_parser *p)
{
    p->msg_delivered = false;
    p->msg_op = WS_OP_CONT;
    p->msg_len = 0;
    p->msg_utf8 = WS_UTF8_START;
    free(p->msg_heap);
    p->msg_heap = NULL;
}

static enum ws_event fail(struct ws_parser *p, uint16_t code, const char *reason)
{
    TALLY_ASSERT(code == WS_CLOSE_PROTOCOL || code == WS_CLOSE_INVALID_DATA ||
                 code == WS_CLOSE_TOO_BIG);
    p->error_code = code;
    p->error_reason = reason;
    return WS_EV_ERROR;
}

/* Judges the first two header bytes; sets head_need to the header's size. */
static enum ws_event head_judge_first(struct ws_parser *p)
{
    uint8_t b0 = p->head[0], b1 = p->head[1];
    unsigned len7 = b1 & 0x7Fu;
    p->fin = (b0 & 0x80u) != 0;
    p->op = (enum ws_opcode)(b0 & 0x0Fu);
    if (b0 & 0x70u)
        return fail(p, WS_CLOSE_PROTOCOL, "reserved bits set");
    switch (p->op) {
    case WS_OP_CONT: case WS_OP_TEXT: case WS_OP_BINARY:
    case WS_OP_CLOSE: case WS_OP_PING: case WS_OP_PONG:
        break;
    default:
        return fail(p, WS_CLOSE_PROTOCOL, "unknown opcode");
    }
    if ((b1 & 0x80u) == 0)
        return fail(p, WS_CLOSE_PROTOCOL, "unmasked frame");
    if (op_is_control(p->op)) {
        if (!p->fin)
            return fail(p, WS_CLOSE_PROTOCOL, "fragmented control frame");
        if (len7 > WS_CONTROL_BYTES_MAX)
            return fail(p, WS_CLOSE_PROTOCOL, "control frame too long");
        if (p->op == WS_OP_CLOSE && len7 == 1)
            return fail(p, WS_CLOSE_PROTOCOL, "close payload of 1 byte");
    } else if (p->op == WS_OP_CONT && p->msg_op == WS_OP_CONT) {
        return fail(p, WS_CLOSE_PROTOCOL, "continuation without a message");
    } else if (p->op != WS_OP_CONT && p->msg_op != WS_OP_CONT) {
        return fail(p, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
    }
    unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    p->head_need = (uint8_t)(2 + ext + 4);
    return WS_EV_AGAIN;
}

/* Judges the payload length once its last byte is in. */
static enum ws_event head_judge_length(struct ws_parser *p)
{
    unsigned len7 = p->head[1] & 0x7Fu;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)p->head[2] << 8 | p->head[3];
        if (len < 126)
            return fail(p, WS_CLOSE_PROTOCOL, "length not in its shortest form");
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p->head[2 + i];
        if (len >> 63)
            return fail(p, WS_CLOSE_PROTOCOL, "length with the top bit set");
        if (len <= 0xFFFF)
            return fail(p, WS_CLOSE_PROTOCOL, "length not in its shortest form");
    }
    TALLY_ASSERT(p->msg_len <= WS_MESSAGE_BYTES_MAX);
    if (!op_is_control(p->op) && len > WS_MESSAGE_BYTES_MAX - p->msg_len)
        return fail(p, WS_CLOSE_TOO_BIG, "message too big");
    p->frame_len = (size_t)len;
    return WS_EV_AGAIN;
}

/* The header is complete: get the destination of the payload ready. */
static void payload_begin(struct ws_parser *p)
{
    p->frame_pos = 0;
    p->state = WS_S_PAYLOAD;
    if (op_is_control(p->op)) {
        TALLY_ASSERT(p->frame_len <= WS_CONTROL_BYTES_MAX);
        p->ctrl_len = p->frame_len;
        return;
    }
    if (p->op != WS_OP_CONT) {
        TALLY_ASSERT(p->msg_len == 0);
        p->msg_op = p->op;
        p->msg_utf8 = WS_UTF8_START;
    }
    size_t need = p->msg_len + p->frame_len;
    TALLY_ASSERT(need <= WS_MESSAGE_BYTES_MAX);
    if (need > WS_SMALL_MESSAGE_BYTES && p->msg_heap == NULL) {
        /* one allocation per large message, never per frame */
        p->msg_heap = xmalloc(WS_MESSAGE_BYTES_MAX);
        memcpy(p->msg_heap, p->msg_small, p->msg_len);
    }
}

/* Takes one header byte. Returns WS_EV_ERROR or WS_EV_AGAIN. */
static enum ws_event head_byte(struct ws_parser *p, uint8_t b)
{
    TALLY_ASSERT(p->head_len < p->head_need);
    p->head[p->head_len++] = b;
    enum ws_event ev = WS_EV_AGAIN;
    if (p->head_len == 2)
        ev = head_judge_first(p);
    /* the length is complete 4 bytes before the end (the mask key follows) */
    if (ev == WS_EV_AGAIN && p->head_len == p->head_need - 4)
        ev = head_judge_length(p);
    if (ev == WS_EV_AGAIN && p->head_len == p->head_need)
        payload_begin(p);
    return ev;
}

/* Unmasks n payload bytes into their place; text is validated as it comes. */
static enum ws_event payload_bytes(struct ws_parser *p, const uint8_t *src, size_t n)
{
    TALLY_ASSERT(n <= p->frame_len - p->frame_pos);
    const uint8_t *mask = p->head + p->head_len - 4;
    bool control = op_is_control(p->op);
    uint8_t *dst = control ? p->ctrl + p->frame_pos : msg_buf(p) + p->msg_len + p->frame_pos;
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ mask[(p->frame_pos + i) & 3];
    p->frame_pos += n;
    if (!control && p->msg_op == WS_OP_TEXT && !ws_utf8_valid(&p->msg_utf8, dst, n))
        return fail(p, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text");
    return WS_EV_AGAIN;
}

static enum ws_event close_judge(struct ws_parser *p)
{
    TALLY_ASSERT(p->ctrl_len != 1); /* refused by the header */
    if (p->ctrl_len == 0) {
        p->close_code = WS_CLOSE_NO_STATUS;
        return WS_EV_CLOSE;
    }
    uint16_t code = (uint16_t)(p->ctrl[0] << 8 | p->ctrl[1]);
    if (!ws_close_code_valid(code))
        return fail(p, WS_CLOSE_PROTOCOL, "invalid close code");
    uint32_t utf8 = WS_UTF8_START;
    if (!ws_utf8_valid(&utf8, p->ctrl + 2, p->ctrl_len - 2) || !ws_utf8_complete(utf8))
        return fail(p, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in close reason");
    p->close_code = code;
    return WS_EV_CLOSE;
}

/* The frame's payload is complete: what it means. */
static enum ws_event frame_end(struct ws_parser *p)
{
    TALLY_ASSERT(p->frame_pos == p->frame_len);
    p->state = WS_S_HEAD;
    p->head_len = 0;
    p->head_need = 2;
    switch (p->op) {
    case WS_OP_PING: return WS_EV_PING;
    case WS_OP_PONG: return WS_EV_PONG;
    case WS_OP_CLOSE: return close_judge(p);
    default: break;
    }
    p->msg_len += p->frame_len;
    TALLY_ASSERT(p->msg_len <= WS_MESSAGE_BYTES_MAX);
    if (!p->fin)
        return WS_EV_AGAIN;
    if (p->msg_op == WS_OP_TEXT && !ws_utf8_complete(p->msg_utf8))
        return fail(p, WS_CLOSE_INVALID_DATA, "text ends inside a character");
    p->msg_delivered = true;
    return WS_EV_MESSAGE;
}

enum ws_event ws_parser_feed(struct ws_parser *p, const uint8_t *data, size_t len,
                             size_t *consumed)
{
    TALLY_ASSERT(p != NULL && consumed != NULL);
    TALLY_ASSERT(data != NULL || len == 0);
    if (p->state == WS_S_DONE) {
        *consumed = 0;
        return p->last = p->final;
    }
    if (p->msg_delivered)
        msg_release(p);
    size_t i = 0;
    enum ws_event ev = WS_EV_AGAIN;
    while (ev == WS_EV_AGAIN) {
        if (p->state == WS_S_HEAD) {
            if (i == len)
                break;
            ev = head_byte(p, data[i++]);
        } else if (p->frame_pos == p->frame_len) {
            ev = frame_end(p);
        } else {
            if (i == len)
                break;
            size_t n = p->frame_len - p->frame_pos;
            if (n > len - i)
                n = len - i;
            ev = payload_bytes(p, data + i, n);
            i += n;
        }
    }
    *consumed = i;
    if (ev == WS_EV_CLOSE || ev == WS_EV_ERROR) {
        p->state = WS_S_DONE;
        p->final = ev;
        msg_release(p);
    }
    return p->last = ev;
}

enum ws_opcode ws_parser_message(const struct ws_parser *p, const uint8_t **payload, size_t *len)
{
    TALLY_ASSERT(p != NULL && payload != NULL && len != NULL);
    TALLY_ASSERT(p->last == WS_EV_MESSAGE && p->msg_delivered);
    *payload = p->msg_heap ? p->msg_heap : p->msg_small;
    *len = p->msg_len;
    return p->msg_op;
}

void ws_parser_control(const struct ws_parser *p, const uint8_t **payload, size_t *len)
{
    TALLY_ASSERT(p != NULL && payload != NULL && len != NULL);
    TALLY_ASSERT(p->last == WS_EV_PING || p->last == WS_EV_PONG || p->last == WS_EV_CLOSE);
    *payload = p->ctrl;
    *len = p->ctrl_len;
}

uint16_t ws_parser_close_code(const struct ws_parser *p)
{
    TALLY_ASSERT(p != NULL);
    TALLY_ASSERT(p->state == WS_S_DONE && p->final == WS_EV_CLOSE);
    return p->close_code;
}

uint16_t ws_parser_error_code(const struct ws_parser *p)
{
    TALLY_ASSERT(p != NULL);
    TALLY_ASSERT(p->state == WS_S_DONE && p->final == WS_EV_ERROR);
    return p->error_code;
}

const char *ws_parser_error_reason(const struct ws_parser *p)
{
    TALLY_ASSERT(p != NULL);
    TALLY_ASSERT(p->state == WS_S_DONE && p->final == WS_EV_ERROR);
    return p->error_reason;
}
