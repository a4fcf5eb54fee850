/*
 * wsc.h - the client side of RFC 6455 for the load generator: the upgrade
 * request, the check of the server's 101 (status, Upgrade, and
 * Sec-WebSocket-Accept against the key we sent), parsing of the server's
 * unmasked frames, and building of masked client frames.
 *
 * No I/O and no allocation: the caller owns every buffer. Pure functions,
 * callable from any thread. Server frames are never fragmented by tallyd and
 * carry at most WSC_PAYLOAD_MAX bytes here; a larger one is reported as
 * WSC_BAD so the caller can drop the connection instead of buffering it.
 */
#ifndef TALLY_STRESS_WSC_H
#define TALLY_STRESS_WSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WSC_KEY_CHARS 24     /* base64 of 16 random bytes */
#define WSC_ACCEPT_CHARS 28  /* base64 of a SHA-1 digest */
#define WSC_HEAD_MAX 4096    /* a 101 answer longer than this is malformed */
#define WSC_PAYLOAD_MAX 65536
#define WSC_CLIENT_HEADER_MAX 14 /* 2 + 8 (length) + 4 (mask) */

enum wsc_opcode {
    WSC_OP_CONT = 0x0,
    WSC_OP_TEXT = 0x1,
    WSC_OP_BINARY = 0x2,
    WSC_OP_CLOSE = 0x8,
    WSC_OP_PING = 0x9,
    WSC_OP_PONG = 0xA,
};

enum wsc_parse {
    WSC_OK,    /* a complete item was parsed */
    WSC_AGAIN, /* more bytes are needed */
    WSC_BAD,   /* malformed: drop the connection */
};

struct wsc_frame {
    bool fin;
    enum wsc_opcode opcode;
    const uint8_t *payload; /* points into the caller's buffer */
    size_t payload_len;
    size_t frame_len; /* header + payload: how much to consume */
};

/** Writes a fresh random key (WSC_KEY_CHARS chars + NUL) into key. */
void wsc_key_make(char key[WSC_KEY_CHARS + 1]);

/** Writes the Sec-WebSocket-Accept value the server must send for key. */
void wsc_accept_compute(const char *key, char accept[WSC_ACCEPT_CHARS + 1]);

/**
 * Formats the upgrade request for path (which carries the query, token
 * included) with subprotocol proto. Returns its length, or -ENOSPC when it
 * does not fit in cap.
 */
int wsc_request_format(char *out, size_t cap, const char *host, uint16_t port, const char *path,
                       const char *key, const char *proto);

/**
 * Checks the server's answer at the start of buf: WSC_AGAIN until the head is
 * complete, WSC_OK when it is a 101 with the right Sec-WebSocket-Accept (then
 * *head_len is the bytes to consume; frames may follow), WSC_BAD otherwise.
 */
enum wsc_parse wsc_response_check(const char *buf, size_t len, const char *key, size_t *head_len);

/** Parses one server frame at the start of buf. Masked server frames are WSC_BAD. */
enum wsc_parse wsc_frame_parse(const uint8_t *buf, size_t len, struct wsc_frame *f);

/**
 * Builds a final, masked client frame of opcode with payload into out.
 * Returns its length, or -ENOSPC when cap is too small.
 */
int wsc_frame_build(uint8_t *out, size_t cap, enum wsc_opcode opcode, const void *payload,
                    size_t len, uint32_t mask);

#endif
