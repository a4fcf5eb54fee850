/*
 * wire.h - message encodings shared by the actors (which encode each
 * broadcast once) and the network threads (acks, errors, control frames).
 *
 * A message is built as a jansson object {"type":..,"seq":..,"data":..} and
 * turned into each wire format: a WebSocket text frame of JSON, a WebSocket
 * binary frame of MessagePack (the same map), or an SSE event.
 */
#ifndef TALLY_ACTORS_WIRE_H
#define TALLY_ACTORS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "actors/stream.h"
#include "core/buf.h"
#include "core/rbuf.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

#define WIRE_WS_HEADER_MAX 10

/**
 * Writes the header of one unmasked, final server frame carrying len payload
 * bytes; returns the header's length (2, 4 or 10).
 */
size_t wire_ws_header(uint8_t out[WIRE_WS_HEADER_MAX], enum ws_opcode op, uint64_t len);
/** Appends a complete unmasked final frame (header + payload) to out. */
void wire_ws_frame(struct buf *out, enum ws_opcode op, const void *payload, size_t len);

/* ---- messages ---- */

/*
 * Nested arrays and maps a MessagePack value may have (the outermost counts
 * as 1). Tally's own messages nest 5 deep (message, data, polls, poll,
 * options); a client's vote 2.
 */
#define WIRE_DEPTH_MAX 16

/**
 * The message object {"type":type,"seq":seq,"data":data}; "seq" only when
 * seq > 0. Takes a new reference to data (the caller keeps its own); type is
 * ASCII without newlines. Any thread.
 */
json_t *wire_msg_json(const char *type, int64_t seq, json_t *data);
/**
 * Appends one message to out in fmt, framed as it goes on the wire: a
 * WebSocket text frame of the compact JSON, a binary frame of the same map in
 * MessagePack, or an SSE event "event: T\nid: N\ndata: JSON\n\n" (the id line
 * only when seq > 0). data is borrowed. Any thread.
 */
void wire_msg_append(struct buf *out, enum stream_fmt fmt, const char *type, int64_t seq,
                     json_t *data);
/**
 * The same message in every format at once: the object is built once, dumped
 * to JSON once (shared by the WebSocket and SSE forms) and packed once.
 * out[f] receives a new rbuf with one reference for each format f. data is
 * borrowed. Any thread.
 */
void wire_msg_encode(const char *type, int64_t seq, json_t *data,
                     struct rbuf *out[STREAM_FMT_COUNT]);

/**
 * Appends j to out as MessagePack: objects as maps with str keys (in the
 * object's order), arrays, strings as str, integers as the smallest int
 * format, reals as float64, true/false/null. Returns 0, or -EINVAL (out left
 * as it was) when j nests deeper than WIRE_DEPTH_MAX. Any thread.
 */
int wire_json_to_msgpack(const json_t *j, struct buf *out);
/**
 * Decodes exactly one MessagePack value that fills p[0..n) into *out (a new
 * reference). Maps need str keys, unique within the map; strings and keys
 * must be UTF-8 without NUL (as JSON text from a client would be); integers
 * must fit int64; floats must be finite; bin, ext and the never-used byte are
 * refused, and so is nesting deeper than WIRE_DEPTH_MAX. Returns 0, or -EINVAL
 * with *out NULL. Any thread.
 */
int wire_msgpack_to_json(const void *p, size_t n, json_t **out);

#endif
