/*
 * mpjson.h - the load generator's bridge to the tally.v1.msgpack
 * subprotocol: a server message (one MessagePack map) written as the
 * compact JSON the json subprotocol would have sent, keys in the map's
 * order, so every scenario reads one format; and a client message given as
 * JSON packed as MessagePack.
 *
 * No allocation beyond libraries' own; pure, callable from any thread.
 */
#ifndef TALLY_STRESS_MPJSON_H
#define TALLY_STRESS_MPJSON_H

#include <stddef.h>
#include <stdint.h>

#define MPJSON_DEPTH_MAX 16 /* deeper nesting is refused */

/**
 * Writes the MessagePack value at the start of mp (len bytes) as compact
 * JSON into out (cap bytes, NUL-terminated). Returns the JSON length,
 * -ENOSPC when it does not fit, or -EINVAL for malformed or unsupported
 * input (binary and extension types, nesting past MPJSON_DEPTH_MAX).
 */
int mpjson_to_json(const uint8_t *mp, size_t len, char *out, size_t cap);

/**
 * Packs the JSON text json (len bytes) as MessagePack into out (cap
 * bytes). Returns the packed length, -ENOSPC when it does not fit, or
 * -EINVAL when json is not valid JSON.
 */
int mpjson_from_json(const char *json, size_t len, uint8_t *out, size_t cap);

#endif
