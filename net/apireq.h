/*
 * apireq.h - turns a parsed HTTP request and its route into a struct api_req,
 * checking its shape: JSON types, string sizes, array lengths, index ranges
 * that need no session state. What needs state (tokens, poll options, poll
 * state) is the actors' to check.
 *
 * Error messages name the field or header at fault and never echo its value,
 * so no token or client text reaches an answer or a log from here.
 *
 * Threading: pure functions; any thread.
 */
#ifndef TALLY_NET_APIREQ_H
#define TALLY_NET_APIREQ_H

#include <stdbool.h>
#include <stddef.h>

#include "actors/api.h"
#include "core/buf.h"
#include "net/http.h"
#include "net/router.h"

/**
 * Builds the request for a ROUTE_API match. On success returns 0 and sets
 * *out to a request from api_req_new() that the caller owns. On a client
 * error returns the HTTP status (always 400: 401 and 403 are decided by the
 * actors), sets *out to NULL and appends the complete JSON error body
 * {"error":{"code":"invalid_request","message":"..."}} to err_body.
 *
 * Filled: code and poll_id from the route; token (see apireq_token); Host
 * (cut to API_HOST_MAX, "" when it holds anything but host and port
 * characters); for API_VOTE the Idempotency-Key header (required, 1 to
 * API_IDEM_KEY_MAX printable ASCII bytes); and the body fields of
 * API_SESSION_CREATE, API_JOIN (text NULL when no name or an empty one),
 * API_POLL_CREATE and API_VOTE. Other routes ignore the body. Unknown JSON
 * members are ignored; duplicate members make the body invalid.
 */
int apireq_build(const struct http_req *hr, const struct route_match *rm, struct api_req **out,
                 struct buf *err_body);

/**
 * The request's token: "Authorization: Bearer T" (scheme in any case) or,
 * only when there is no Authorization header, the percent-decoded `token`
 * query parameter (for EventSource and WebSocket, which cannot send
 * headers). A token that is malformed, longer than API_TOKEN_MAX or not
 * printable ASCII yields "" and false: to the actors that is a missing token
 * (401), the same answer an unknown one gets.
 */
bool apireq_token(const struct http_req *hr, char token[API_TOKEN_MAX + 1]);

/**
 * Finds the first `name=value` in a query string and copies the
 * percent-decoded value into out, NUL-terminated, its length in *out_len
 * ('+' is kept as is). Returns 0, -ENOENT when the parameter is absent,
 * -EINVAL when its encoding is bad or it decodes to a NUL, -E2BIG when it
 * does not fit in out_size - 1 bytes.
 */
int apireq_query_param(const char *query, size_t query_len, const char *name, char *out,
                       size_t out_size, size_t *out_len);

#endif
