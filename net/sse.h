/*
 * sse.h - Server-Sent Events framing (text/event-stream, WHATWG HTML 9.2)
 * without I/O: the response head, events, heartbeats, and the parsing of the
 * sequence a client resumes from.
 *
 * Invariants:
 *  - An event's data is one line of compact JSON, so it is written as a
 *    single "data:" line; a line break inside it is a programmer error.
 *  - The stream head has no Content-Length: the stream ends when the
 *    connection does.
 *
 * Threading: pure functions; any thread, on buffers the caller owns.
 */
#ifndef TALLY_NET_SSE_H
#define TALLY_NET_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SSE_SEQ_MAX (INT64_C(1) << 53) /* sequences stay exact as JSON numbers */

/**
 * Appends one event: "event: TYPE\n", "id: SEQ\n" when seq > 0 (sequenced
 * types only), "data: JSON\n", then the empty line that dispatches it.
 * type is a message type (no line break); json is compact (no line break).
 */
void sse_event(struct buf *out, const char *type, int64_t seq, const char *json, size_t json_len);

/**
 * Appends the response head of an event stream: 200, Content-Type:
 * text/event-stream, Cache-Control: no-store, Connection: keep-alive,
 * X-Accel-Buffering: no (a proxy must not hold events back); no
 * Content-Length.
 */
void sse_head(struct buf *out);

/** Appends a comment line as a heartbeat, ": ping\n\n"; clients ignore it. */
void sse_heartbeat(struct buf *out);

/**
 * Parses a Last-Event-ID header or a since= value: decimal digits only
 * (no sign, no spaces; leading zeros allowed), 0 to SSE_SEQ_MAX. Returns
 * false when s is empty or malformed or the value is out of range; *out is
 * written only on success.
 */
bool sse_parse_seq(const char *s, size_t len, int64_t *out);

#endif
