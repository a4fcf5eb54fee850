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

#include "core/buf.h"

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

#endif
