/*
 * ws.h - the WebSocket protocol (RFC 6455) without I/O: the opening
 * handshake, an incremental parser for client frames, close frames and an
 * incremental UTF-8 validator.
 *
 * Invariants:
 *  - Frames are checked as soon as the bytes that decide are seen: the first
 *    two header bytes (RSV bits, opcode, mask bit, control frame rules,
 *    fragmentation order), then the length, before any payload byte. A
 *    message that would grow past WS_MESSAGE_BYTES_MAX is refused by the
 *    header that announces it, so nothing beyond the limit is buffered.
 *  - Text is validated as it is unmasked, across fragments, so an invalid
 *    byte ends the connection without waiting for the rest of the message.
 *  - A parser holds at most one message of WS_MESSAGE_BYTES_MAX. Messages up
 *    to WS_SMALL_MESSAGE_BYTES (the usual vote) live inside the parser;
 *    larger ones get a heap buffer for the time the message is in progress,
 *    freed again once it is delivered (an idle parser holds no heap memory).
 *    No frame allocates anything.
 *  - Splitting the input at any byte gives the same events and payloads as
 *    feeding it whole.
 *  - After WS_EV_CLOSE or WS_EV_ERROR the parser is finished: further feeds
 *    consume nothing and return that event again.
 *
 * Server frames are built with wire_ws_header()/wire_ws_frame()
 * (actors/wire.h): unmasked and final.
 *
 * Threading: a parser belongs to one connection and is used by the thread
 * that owns that connection only; the other functions are pure.
 */
#ifndef TALLY_NET_WS_H
#define TALLY_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/wire.h"
#include "core/buf.h"
#include "net/http.h"

#define WS_MESSAGE_BYTES_MAX 4096   /* a message (all fragments) over this → close 1009 */
#define WS_CONTROL_BYTES_MAX 125    /* RFC 6455 5.5: control payloads */
#define WS_SMALL_MESSAGE_BYTES 128  /* messages up to this are kept inside the parser */
#define WS_KEY_CHARS 24             /* Sec-WebSocket-Key: base64 of 16 bytes */
#define WS_ACCEPT_CHARS 28          /* Sec-WebSocket-Accept: base64 of a SHA-1 */

/** Extra header line of a 426 answer to a WS_HS_BAD_VERSION handshake. */
#define WS_VERSION_HEADER "Sec-WebSocket-Version: 13\r\n"

/** Close codes the server sends (RFC 6455 7.4.1). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: a close frame without a code */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TRY_AGAIN = 1013,
};

/** What ws_handshake_check() made of a request. */
enum ws_handshake {
    WS_HS_NOT_UPGRADE, /* no "Upgrade: websocket": an ordinary request */
    WS_HS_OK,          /* answer with ws_handshake_answer() */
    WS_HS_BAD,         /* 400 */
    WS_HS_BAD_VERSION, /* 426 with WS_VERSION_HEADER */
};

/** The negotiated subprotocol: the encoding of messages in both directions. */
enum ws_proto { WS_PROTO_JSON, WS_PROTO_MSGPACK };

/**
 * Checks a parsed request for a WebSocket opening handshake: GET,
 * "Upgrade: websocket" (case-insensitive token of the list),
 * Connection holding the token "upgrade" (comma-separated, case-insensitive),
 * Sec-WebSocket-Version: 13 (absent or another value → WS_HS_BAD_VERSION)
 * and a Sec-WebSocket-Key that is the canonical base64 of exactly 16 bytes.
 * A request without the websocket Upgrade token is WS_HS_NOT_UPGRADE;
 * once it asks for websocket, any other flaw is WS_HS_BAD.
 *
 * Subprotocol: the first entry of the client's Sec-WebSocket-Protocol list
 * that we support ("tally.v1.json" or "tally.v1.msgpack", compared exactly)
 * is chosen and *proto_echo set; with no list (or an empty one) the answer
 * is JSON without a Sec-WebSocket-Protocol header; a list of only unknown
 * names is WS_HS_BAD. Only the first Sec-WebSocket-Protocol header line is
 * seen (http.h keeps the first value of a repeated header).
 *
 * *proto and *proto_echo are always written (JSON, false unless WS_HS_OK).
 */
enum ws_handshake ws_handshake_check(const struct http_req *req, enum ws_proto *proto,
                                     bool *proto_echo);

/**
 * Appends the complete "101 Switching Protocols" answer: Upgrade,
 * Connection, Sec-WebSocket-Accept = base64(SHA-1(key + RFC 6455 GUID)), and
 * Sec-WebSocket-Protocol when proto_echo. key must have passed
 * ws_handshake_check().
 */
void ws_handshake_answer(struct buf *out, const char *key, enum ws_proto proto, bool proto_echo);

/** The subprotocol's name as sent in Sec-WebSocket-Protocol. */
const char *ws_proto_name(enum ws_proto proto);

/** What ws_parser_feed() completed. */
enum ws_event {
    WS_EV_AGAIN,   /* need more bytes */
    WS_EV_MESSAGE, /* a complete text or binary message: ws_parser_message() */
    WS_EV_PING,    /* answer with a pong carrying ws_parser_control() payload */
    WS_EV_PONG,
    WS_EV_CLOSE, /* peer's close: ws_parser_close_code() (1005 when no code); answer with a close echoing the code, then close */
    WS_EV_ERROR, /* protocol error: close with ws_parser_error_code(): 1002, 1007 or 1009 */
};

struct ws_parser;

/** Allocates a parser for client→server frames; the caller owns it. */
struct ws_parser *ws_parser_create(void);
/** Frees the parser and any message it holds. NULL is allowed. */
void ws_parser_destroy(struct ws_parser *p);

/**
 * Consumes bytes until one event is complete and returns it; *consumed
 * tells how many bytes were used (all of them with WS_EV_AGAIN). Call again
 * with the rest. The payload of the previous event stays valid until this
 * call.
 */
enum ws_event ws_parser_feed(struct ws_parser *p, const uint8_t *data, size_t len,
                             size_t *consumed);

/**
 * After WS_EV_MESSAGE: returns WS_OP_TEXT or WS_OP_BINARY and sets the
 * unmasked payload (all fragments joined; text is valid UTF-8) and its
 * length. Valid until the next feed.
 */
enum ws_opcode ws_parser_message(const struct ws_parser *p, const uint8_t **payload, size_t *len);

/**
 * After WS_EV_PING, WS_EV_PONG or WS_EV_CLOSE: the unmasked control payload
 * (for a close: the 2-byte code and the reason, or nothing). Valid until the
 * next feed (for a close: until the parser is destroyed).
 */
void ws_parser_control(const struct ws_parser *p, const uint8_t **payload, size_t *len);

/** After WS_EV_CLOSE: the peer's close code, 1005 when its close frame had none. */
uint16_t ws_parser_close_code(const struct ws_parser *p);

/** After WS_EV_ERROR: the close code to send, 1002, 1007 or 1009. */
uint16_t ws_parser_error_code(const struct ws_parser *p);

/** After WS_EV_ERROR: a short static text for the close frame's reason. */
const char *ws_parser_error_reason(const struct ws_parser *p);

/** Bytes this parser holds, itself included (for memory accounting). */
size_t ws_parser_mem(const struct ws_parser *p);

/**
 * True for the close codes an endpoint may put in a close frame:
 * 1000-1003, 1007-1014 and 3000-4999 (RFC 6455 7.4, IANA registry).
 */
bool ws_close_code_valid(uint16_t code);

/**
 * Appends a close frame with code and reason (NULL for none). The reason is
 * cut to fit the 125-byte control payload, at a UTF-8 character boundary.
 * WS_CLOSE_NO_STATUS (1005) gives a close frame without payload, the echo of
 * a peer's close that had no code; any other code must be ws_close_code_valid().
 */
void ws_close_frame(struct buf *out, uint16_t code, const char *reason);

/** The state of ws_utf8_valid() before the first byte. */
#define WS_UTF8_START 0u

/**
 * Validates UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF). Incremental: *state (start at WS_UTF8_START) carries a sequence
 * split across calls, as across fragments. Returns false at the first
 * invalid byte, and from then on for the same state.
 */
bool ws_utf8_valid(uint32_t *state, const uint8_t *s, size_t n);

/** True when the bytes validated so far end on a character boundary. */
bool ws_utf8_complete(uint32_t state);

#endif
