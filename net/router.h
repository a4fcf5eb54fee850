/*
 * router.h - maps a method and a request path to what handles it.
 *
 * Routes (HEAD is treated like GET everywhere):
 *   GET  /healthz, /readyz, /metrics
 *   POST /api/v1/sessions                          API_SESSION_CREATE
 *   GET  /api/v1/sessions/{code}                   API_SESSION_GET
 *   POST /api/v1/sessions/{code}/participants      API_JOIN
 *   POST /api/v1/sessions/{code}/polls             API_POLL_CREATE
 *   POST /api/v1/sessions/{code}/close             API_SESSION_CLOSE
 *   GET  /api/v1/sessions/{code}/export.csv        API_EXPORT_CSV
 *   GET  /api/v1/sessions/{code}/qr.svg            API_QR_SVG
 *   GET  /api/v1/sessions/{code}/ws                ROUTE_WS
 *   GET  /api/v1/sessions/{code}/events            ROUTE_SSE
 *   POST /api/v1/polls/{id}/open                   API_POLL_OPEN
 *   POST /api/v1/polls/{id}/close                  API_POLL_CLOSE
 *   POST /api/v1/polls/{id}/votes                  API_VOTE
 *   GET  /api/v1/polls/{id}/results                API_RESULTS
 *   GET  /, /j/{page}, /present/{page}, /screen/{page}, /assets/{file}  ROUTE_STATIC
 *
 * A {code} is exactly API_CODE_LEN characters of the join alphabet (A-Z and
 * 2-9 without 0 O 1 I L), any case; it is returned upper-cased. An {id} is a
 * decimal 1..2^53 without sign or leading zeros. An {file} is one or more
 * segments of [A-Za-z0-9._-] none of which starts with '.', so no path under
 * /assets/ can climb out of it. A {page} is any one segment of 1..64 bytes:
 * the page's script explains a mistyped code; code is filled when it is one. Anything else, a trailing slash included, is
 * ROUTE_NOT_FOUND; a known path with another method is
 * ROUTE_METHOD_NOT_ALLOWED. The path is matched as sent (not decoded).
 *
 * Threading: pure functions over constant tables; any thread.
 */
#ifndef TALLY_NET_ROUTER_H
#define TALLY_NET_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actors/api.h"
#include "net/http.h"

/** What handles a request. */
enum route_kind {
    ROUTE_NOT_FOUND,
    ROUTE_METHOD_NOT_ALLOWED,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,
    ROUTE_API,
    ROUTE_WS,
    ROUTE_SSE,
    ROUTE_STATIC
};

/** The largest poll id a path may carry (2^53, what a JSON number holds exactly). */
#define ROUTER_PAGE_SEGMENT_MAX 64 /* /j/{page}: longer is not a mistyped code */
#define ROUTE_POLL_ID_MAX ((int64_t)1 << 53)

/** The outcome of router_match(). Fields not listed for a kind are zero, "" or NULL. */
struct route_match {
    enum route_kind kind;
    enum api_op op;              /* ROUTE_API; API_OP_COUNT for other kinds */
    char code[API_CODE_LEN + 1]; /* upper-cased join code, or ""; API/WS/SSE and /j, /present, /screen */
    int64_t poll_id;             /* > 0 for /polls/{id}/... */
    const char *allow;           /* ROUTE_METHOD_NOT_ALLOWED: value for the Allow header, e.g. "POST" */
};

/** Routes one request; fills *out and returns out->kind. path need not be NUL-terminated. */
enum route_kind router_match(enum http_method m, const char *path, size_t path_len,
                             struct route_match *out);

/** True when c is a character of the join alphabet (either case). */
bool router_code_char(char c);

#endif
