/*
 * http.h - a resumable HTTP/1.1 request parser over llhttp. It does no I/O
 * and allocates nothing per byte.
 *
 * Invariants:
 *  - http_parser_feed() returns DONE once per request and then stops: the
 *    bytes after it (a pipelined request, or the first frames after an
 *    Upgrade head) are left to the caller, who calls http_parser_next() and
 *    feeds them again.
 *  - Splitting the input at any byte gives the same results as feeding it
 *    whole.
 *  - A request head (request line, headers, final empty line) is at most
 *    HTTP_HEAD_BYTES_MAX bytes, a decoded body at most HTTP_BODY_BYTES_MAX.
 *    Both are checked before the bytes are buffered.
 *  - A parser between requests holds no request buffers, so idle keep-alive
 *    connections cost only the parser itself.
 *  - Line endings, header syntax and framing are strict (llhttp's defaults):
 *    bare LF, obs-fold and conflicting framing headers are rejected.
 *
 * Threading: a parser belongs to one connection and is used by the thread
 * that owns that connection only.
 */
#ifndef TALLY_NET_HTTP_H
#define TALLY_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_BYTES_MAX 8192  /* request line + headers; more → 431 */
#define HTTP_BODY_BYTES_MAX 65536 /* decoded body; more → 413 */

/** The methods the router tells apart; everything else is HTTP_OTHER. */
enum http_method { HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_OTHER };

/** What http_parser_feed() made of the bytes. */
enum http_parse {
    HTTP_PARSE_AGAIN,            /* all input consumed, request not complete yet */
    HTTP_PARSE_DONE,             /* one request complete; *consumed bytes used; the rest is the next request (pipelining) */
    HTTP_PARSE_E_HEAD_TOO_LARGE, /* 431 */
    HTTP_PARSE_E_BODY_TOO_LARGE, /* 413 */
    HTTP_PARSE_E_BAD,            /* 400 */
};

/**
 * One parsed request. Every pointer points into the parser and is valid from
 * DONE until http_parser_next() or http_parser_destroy(). Of a header sent
 * more than once, the first value is kept. Header values are NUL-terminated
 * with surrounding spaces and tabs removed; NULL means the header is absent.
 */
struct http_req {
    enum http_method method;
    const char *path; size_t path_len;   /* without the query, not decoded */
    const char *query; size_t query_len; /* after '?', may be empty */
    const char *authorization;
    const char *idempotency_key;
    const char *host;
    const char *content_type;
    const char *upgrade, *connection;
    const char *ws_key, *ws_version, *ws_protocol; /* Sec-WebSocket-Key/-Version/-Protocol */
    const char *last_event_id;
    const char *accept_encoding;
    const char *if_none_match;
    const char *expect; /* Expect, e.g. "100-continue" */
    const char *body; size_t body_len; /* body bytes (chunked decoded); NUL-terminated; "" when none */
    bool keep_alive;                   /* llhttp_should_keep_alive */
    bool is_upgrade;                   /* Connection: upgrade + Upgrade header present */
};

struct http_parser;

/** Allocates a parser ready for a first request; the caller owns it. */
struct http_parser *http_parser_create(void);
/** Frees the parser and any request it holds. NULL is allowed. */
void http_parser_destroy(struct http_parser *p);

/**
 * Feeds bytes. Returns DONE after exactly one complete request (*consumed
 * tells how many of the bytes it used), AGAIN when it used them all and
 * needs more, or an error. Errors are final: later calls return the same
 * error. Must not be called between DONE and http_parser_next(). For an
 * Upgrade request DONE comes right after its head (and body, if it has one)
 * with is_upgrade set; the bytes after it belong to the new protocol.
 */
enum http_parse http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                 size_t *consumed);

/** The request completed by the last DONE; only valid until http_parser_next(). */
const struct http_req *http_parser_req(const struct http_parser *p);

/** Forgets the finished request and gets ready for the next one on the same connection. */
void http_parser_next(struct http_parser *p);

/**
 * True when no byte of a next request has been seen (for the head timeout
 * and for freeing the parsers of idle connections).
 */
bool http_parser_idle(const struct http_parser *p);

/**
 * true once per request when its head asked for "Expect: 100-continue" and
 * its body has not been read yet: the caller answers "100 Continue" so the
 * client sends the body without waiting for its own timeout (RFC 9110 10.1.1).
 */
bool http_parser_take_continue(struct http_parser *p);

/** Bytes this parser holds, itself included (for memory accounting). */
size_t http_parser_mem(const struct http_parser *p);

#endif
