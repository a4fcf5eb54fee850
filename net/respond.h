/*
 * respond.h - writes complete HTTP/1.1 responses into a buffer.
 *
 * Every response carries Content-Type, Content-Length (left out only for 204
 * and 304, which have no body), Connection and Cache-Control; Retry-After
 * when asked. Nothing here does I/O: the caller sends the buffer.
 *
 * Threading: pure functions; any thread, on buffers the caller owns.
 */
#ifndef TALLY_NET_RESPOND_H
#define TALLY_NET_RESPOND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/**
 * Appends a complete response: status line with reason phrase, Content-Type
 * (NULL → "application/json"), Content-Length, "Connection: keep-alive" or
 * "close", Retry-After when retry_after_s > 0, "Cache-Control: no-store",
 * then the body. For HEAD requests pass head_only: the body is left out but
 * Content-Length still tells its size.
 */
void respond_write(struct buf *out, int status, const char *content_type, const char *body,
                   size_t body_len, bool keep_alive, uint32_t retry_after_s, bool head_only);

/**
 * respond_write() with extra header lines, each "Name: value\r\n", written
 * after the standard ones (extra_headers NULL or "" for none). When they hold
 * a Cache-Control line, it replaces "Cache-Control: no-store" (for static
 * files); use it also for Allow on 405, ETag, Sec-WebSocket-* and the like.
 */
void respond_write_ex(struct buf *out, int status, const char *content_type,
                      const char *extra_headers, const char *body, size_t body_len,
                      bool keep_alive, uint32_t retry_after_s, bool head_only);

/**
 * Appends a full error response with body
 * {"error":{"code":code,"message":message}} (both JSON-escaped).
 */
void respond_error(struct buf *out, int status, const char *code, const char *message,
                   bool keep_alive, uint32_t retry_after_s);

/** Appends the JSON error body alone: {"error":{"code":code,"message":message}}. */
void respond_error_body(struct buf *out, const char *code, const char *message);

/** The reason phrase of a status ("Not Found"); "Unknown" for codes not used here. */
const char *respond_reason(int status);

#endif
